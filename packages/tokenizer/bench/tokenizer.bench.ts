// Tokenizer benchmark: encode MB/s of ours vs @huggingface/tokenizers, llama-tokenizer-js and SentencePiece
// (C++ via python3-sentencepiece), measured side by side on the nlp-corpus text, and BPE training time vs
// spm_train. Ratios are what we quote; absolute numbers drift with machine load.
//
//   bun packages/tokenizer/bench/tokenizer.bench.ts [--sentences N] [--no-train]
//   BENCH_QUICK=1: the first 20000 sentences (about a fifth), unless --sentences says otherwise.
import { Tokenizer as HFTokenizer } from "@huggingface/tokenizers";
import lt from "llama-tokenizer-js";
import corpus from "nlp-corpus";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { Worker } from "node:worker_threads";
import { Tokenizer, trainBpe } from "@tinyllama/tokenizer";
import { ParallelTokenizer } from "@tinyllama/tokenizer/parallel";
import { benchQuick, peerMissing, reportRows, type BenchRow } from "../../../tools/bench/harness.ts";

const args = process.argv.slice(2);
const arg = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const all = corpus.all();
const sentences = all.slice(0, Number(arg("--sentences") ?? (benchQuick() ? 20000 : all.length)));
const warm = sentences.slice(0, 1000);
const bytes = sentences.reduce((n, s) => n + Buffer.byteLength(s), 0);
const MB = bytes / 1e6;
const root = new URL("../../../", import.meta.url).pathname;
const spmModel = new URL("../test/fixtures/spm-bpe4096.model", import.meta.url).pathname;
const python = "/usr/bin/python3";
const hasSpm = spawnSync(python, ["-c", "import sentencepiece"]).status === 0;
const SKIP_SPM = "skipped: install python3-sentencepiece (apt-get install python3-sentencepiece) for the SentencePiece peer";
const spmMissing = hasSpm ? undefined : peerMissing("SentencePiece", "python3-sentencepiece not installed (apt-get install python3-sentencepiece sentencepiece)");
const scoreRows: BenchRow[] = [];
const corpusName = `nlp-corpus ${sentences.length} sentences, ${MB.toFixed(1)} MB`;

console.log(`tokenizer bench: ${sentences.length} nlp-corpus sentences, ${MB.toFixed(2)} MB, ${navigator.hardwareConcurrency} cores`);

// How much parallelism the machine really gives us right now (shared machines often give less than 2 cores):
// the same pure-CPU job on two workers at once, against the time of one job.
async function concurrencyProbe(): Promise<number> {
  const code = `const { parentPort } = require("node:worker_threads");
parentPort.on("message", (n) => { let h = 0; for (let i = 0; i < n; i++) h = Math.imul(h ^ i, 16777619); parentPort.postMessage(h); });`;
  const ws = [new Worker(code, { eval: true }), new Worker(code, { eval: true })];
  const job = (w: Worker, n: number): Promise<unknown> => new Promise((r) => { w.once("message", r); w.postMessage(n); });
  await Promise.all(ws.map((w) => job(w, 1e6)));
  let t0 = performance.now();
  await job(ws[0], 2e8);
  const one = performance.now() - t0;
  t0 = performance.now();
  await Promise.all(ws.map((w) => job(w, 2e8)));
  const two = performance.now() - t0;
  await Promise.all(ws.map((w) => w.terminate()));
  return (2 * one) / two;
}
const cores = await concurrencyProbe();
console.log(`effective parallelism now: ${cores.toFixed(2)} (two workers doing one CPU job each vs one job alone; 2.0 = two free cores)`);

/** MB/s of one timed pass over all sentences, after a warm-up pass over the first 1000. */
function throughput(encode: (s: string) => ArrayLike<number>): { mbs: number; tokens: number } {
  for (const s of warm) encode(s);
  const t0 = performance.now();
  let tokens = 0;
  for (const s of sentences) tokens += encode(s).length;
  return { mbs: MB / ((performance.now() - t0) / 1000), tokens };
}

// The corpus as a file, one sentence per line (inner line breaks as spaces), for the multi-core file encoder.
const benchDir = mkdtempSync(`${tmpdir()}/tokbench-`);
const corpusFile = `${benchDir}/corpus.txt`;
writeFileSync(corpusFile, sentences.map((s) => s.replace(/[\r\n]+/g, " ")).join("\n"));
const warmFile = `${benchDir}/warm.txt`;
writeFileSync(warmFile, warm.map((s) => s.replace(/[\r\n]+/g, " ")).join("\n"));

/** MB/s of ParallelTokenizer.encodeFile with 2 workers (each reads and encodes its share of the file). */
async function parallelThroughput(tok: Tokenizer, options: { bos?: boolean } = {}): Promise<number> {
  const pool = await ParallelTokenizer.create(tok, 2);
  await pool.encodeFile(warmFile, options);
  const t0 = performance.now();
  await pool.encodeFile(corpusFile, options);
  const mbs = MB / ((performance.now() - t0) / 1000);
  await pool.close();
  return mbs;
}

function row(name: string, mbs: number, ref?: number, target?: number): void {
  const ratio = ref === undefined ? "" : `${(ref / mbs).toFixed(1)}x`;
  const goal = target === undefined || ref === undefined ? "" : `target >= ${target}x: ${ref / mbs >= target ? "met" : "MISSED"}`;
  console.log(`  ${name.padEnd(44)} ${mbs.toFixed(2).padStart(8)} MB/s  ${ratio.padStart(7)}  ${goal}`);
}

// 1. Llama 2 vocabulary
const llama = await Tokenizer.llama2();
const ours1 = throughput((s) => llama.encode(s));
const ours2 = await parallelThroughput(llama);
const hf = new HFTokenizer(JSON.parse(JSON.stringify(llama.toJSON())), llama.toConfigJSON());
const hfR = throughput((s) => hf.encode(s).ids);
const ltR = throughput((s) => lt.encode(s, true));
console.log("\nencode, Llama 2 vocabulary (32000), ours / peer in the ratio column:");
row("ours, 1 thread", ours1.mbs);
row("ours, encodeFile on 2 worker threads", ours2);
row("@huggingface/tokenizers 0.2.0 (our tokenizer.json)", hfR.mbs, ours1.mbs, 10);
row("llama-tokenizer-js 1.2.2", ltR.mbs, ours1.mbs, 5);
scoreRows.push(
  { component: "tokenizer", case: `encode, Llama 2 vocab, 1 thread (${corpusName})`, unit: "MB/s", ours: ours1.mbs, peer: hfR.mbs,
    peerName: "@huggingface/tokenizers 0.2.0 (our tokenizer.json)", higherIsBetter: true, target: 10 },
  { component: "tokenizer", case: `encode, Llama 2 vocab, 1 thread (${corpusName})`, unit: "MB/s", ours: ours1.mbs, peer: ltR.mbs,
    peerName: "llama-tokenizer-js 1.2.2", higherIsBetter: true, target: 5 },
);
if (hfR.tokens !== ours1.tokens || ltR.tokens !== ours1.tokens) console.log(`  WARNING: token counts differ: ours ${ours1.tokens}, hf ${hfR.tokens}, lt ${ltR.tokens}`);

// 2. a 4096-piece BPE model trained by spm_train, vs SentencePiece's C++ encoder (batch call)
const spmTok = Tokenizer.fromFile(spmModel);
const s1 = throughput((s) => spmTok.encode(s, { bos: false }));
const s2 = await parallelThroughput(spmTok, { bos: false });
console.log("\nencode, 4096-piece BPE model trained by spm_train:");
row("ours, 1 thread", s1.mbs);
row("ours, encodeFile on 2 worker threads", s2);
const dir = benchDir;
if (hasSpm) {
  writeFileSync(`${dir}/corpus.jsonl`, sentences.map((s) => JSON.stringify(s)).join("\n") + "\n");
  for (const threads of [1, 2]) {
    const r = spawnSync(python, [`${root}tools/bench/tokenizer_spm.py`, "encode", spmModel, `${dir}/corpus.jsonl`, String(threads)], { encoding: "utf8" });
    if (r.status !== 0) {
      console.log(`  SentencePiece failed: ${r.stderr}`);
      scoreRows.push({ component: "tokenizer", case: `encode, 4096-piece BPE, ${threads} thread${threads > 1 ? "s" : ""} each`, unit: "MB/s",
        ours: threads === 1 ? s1.mbs : s2, peer: null, peerName: "SentencePiece C++ (python3-sentencepiece), batch encode", higherIsBetter: true,
        target: 0.5, peerMissing: `SentencePiece failed: ${r.stderr.trim().split("\n").pop()}` });
      continue;
    }
    const res = JSON.parse(r.stdout) as { seconds: number; bytes: number; tokens: number };
    const mbs = res.bytes / 1e6 / res.seconds;
    const ours = threads === 1 ? s1.mbs : s2;
    row(`SentencePiece C++ batch encode, ${threads} thread${threads > 1 ? "s" : ""} (vs ours ${threads})`, mbs, ours, 0.5);
    scoreRows.push({
      component: "tokenizer", case: `encode, 4096-piece BPE, ${threads} thread${threads > 1 ? "s" : ""} each (${corpusName})`, unit: "MB/s",
      ours, peer: mbs, peerName: `SentencePiece C++ (python3-sentencepiece), batch encode, num_threads=${threads}`, higherIsBetter: true, target: 0.5,
      ...(threads > 1 ? { note: "ours: ParallelTokenizer.encodeFile on 2 worker threads" } : {}),
    });
    if (res.tokens !== s1.tokens) console.log(`  WARNING: token counts differ: ours ${s1.tokens}, SentencePiece ${res.tokens}`);
  }
} else {
  console.log(`  SentencePiece: ${SKIP_SPM}`);
  for (const threads of [1, 2])
    scoreRows.push({ component: "tokenizer", case: `encode, 4096-piece BPE, ${threads} thread${threads > 1 ? "s" : ""} each (${corpusName})`, unit: "MB/s",
      ours: threads === 1 ? s1.mbs : s2, peer: null, peerName: "SentencePiece C++ (python3-sentencepiece), batch encode", higherIsBetter: true,
      target: 0.5, peerMissing: spmMissing! });
}

// 3. training a 4096-piece vocabulary on the corpus text
if (!args.includes("--no-train")) {
  console.log("\ntrain, 4096-piece BPE on the corpus text (compression = UTF-8 bytes per token on the same text):");
  const lines = sentences.map((s) => s.replace(/[\r\n]+/g, " "));
  const t0 = performance.now();
  const trained = trainBpe(lines, { vocabSize: 4096 });
  const oursS = (performance.now() - t0) / 1000;
  const compression = (t: Tokenizer): number => bytes / sentences.reduce((n, s) => n + t.encode(s, { bos: false }).length, 0);
  console.log(`  ours trainBpe                                 ${oursS.toFixed(2).padStart(7)} s   ${compression(trained).toFixed(4)} bytes/token`);
  if (hasSpm) {
    writeFileSync(`${dir}/corpus.txt`, lines.join("\n") + "\n");
    const r = spawnSync(python, [`${root}tools/bench/tokenizer_spm.py`, "train", `${dir}/corpus.txt`, "4096", `${dir}/spm`], { encoding: "utf8" });
    if (r.status === 0) {
      const spmS = (JSON.parse(r.stdout) as { seconds: number }).seconds;
      const spmTrained = Tokenizer.fromFile(`${dir}/spm.model`);
      console.log(`  spm_train --model_type=bpe (2 threads)        ${spmS.toFixed(2).padStart(7)} s   ${compression(spmTrained).toFixed(4)} bytes/token`);
      console.log(`  ours / spm_train time: ${(oursS / spmS).toFixed(2)}x  (target <= 2x: ${oursS / spmS <= 2 ? "met" : "MISSED"})`);
      scoreRows.push({ component: "tokenizer", case: `train a 4096-piece BPE vocabulary (${corpusName})`, unit: "s", ours: oursS, peer: spmS,
        peerName: "spm_train --model_type=bpe, num_threads=2 (python3-sentencepiece)", higherIsBetter: false, target: 0.5,
        note: `target: at most 2x spm_train's time; bytes/token ${compression(trained).toFixed(4)} ours, ${compression(spmTrained).toFixed(4)} spm_train` });
    } else {
      console.log(`  spm_train failed: ${r.stderr}`);
      scoreRows.push({ component: "tokenizer", case: `train a 4096-piece BPE vocabulary (${corpusName})`, unit: "s", ours: oursS, peer: null,
        peerName: "spm_train --model_type=bpe", higherIsBetter: false, target: 0.5, peerMissing: `spm_train failed: ${r.stderr.trim().split("\n").pop()}` });
    }
  } else {
    console.log(`  spm_train: ${SKIP_SPM}`);
    scoreRows.push({ component: "tokenizer", case: `train a 4096-piece BPE vocabulary (${corpusName})`, unit: "s", ours: oursS, peer: null,
      peerName: "spm_train --model_type=bpe", higherIsBetter: false, target: 0.5, peerMissing: spmMissing! });
  }
}
reportRows(scoreRows);
