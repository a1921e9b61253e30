/**
 * Decode and prefill speed at batch 1, ours (InferenceSession: batched prefill, matrix-vector decode
 * with attention_decode) next to llama.cpp (node-llama-cpp 3.21.1, CPU) on the same random weights
 * exported by @tinyllama/checkpoint as GGUF, both with the same thread count, in one script:
 *   f32   our fp32 Model           vs llama.cpp on the F32 GGUF export
 *   bf16  our InferenceWeights     vs llama.cpp on the F16 GGUF export (16-bit weights on both sides;
 *         (bf16 Linear layers,        llama.cpp also keeps the embedding in F16, we keep it in fp32)
 *          fp32 embedding/norms)
 * Also the resident memory (RSS) each adds while loaded and generating.
 *
 *   ./node_modules/.bin/bun packages/generate/bench/decode.bench.ts [presets] [--dtype f32,bf16] [--threads N] [--rounds R]
 *   presets: comma-separated, default tinyllama-15m,tinyllama-1.1b
 *
 * Greedy decoding (argmax) on both sides, rounds interleaved (ours, llama.cpp, ours, ...) so both see
 * the same machine load. The 1.1B model is 4.4 GB in f32 on each side (~9 GB resident together), so
 * its runs are short: 32-token prompt, 16 new tokens, 2 rounds.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getPreset, type ModelConfig } from "@tinyllama/config";
import { writeGguf, type GgufTokenizer } from "@tinyllama/checkpoint";
import { openBackend } from "@tinyllama/kernels";
import { Model } from "@tinyllama/model";
import { mulberry32, randn } from "@tinyllama/testing";
import { benchWaitPolicy, reportRows, type BenchRow } from "../../../tools/bench/harness.ts";
import { InferenceSession, InferenceWeights, argmax, type DecoderWeights, type WeightDtype } from "../src/index.ts";

const args = process.argv.slice(2);
const flag = (name: string, dflt: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const THREADS = flag("threads", 2);
const ROUNDS = flag("rounds", 3);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const presets = (args.find((a, i) => !a.startsWith("--") && !args[i - 1]?.startsWith("--")) ?? "tinyllama-15m,tinyllama-1.1b").split(",");
const DTYPES = (opt("dtype") ?? "f32,bf16").split(",") as WeightDtype[];
for (const d of DTYPES) if (d !== "f32" && d !== "bf16") throw new Error(`--dtype takes f32 and/or bf16, got '${d}'`);
const rssMB = (): number => process.memoryUsage().rss / 2 ** 20;
const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const waitPolicy = benchWaitPolicy(); // the team's policy (passive OpenMP waits), before libgomp loads
const be = openBackend({ device: "cpu", threads: THREADS });

/** Random weights fast: a 1M-value normal block tiled over each tensor (speed does not depend on values). */
function randomize(model: Model): void {
  const block = randn(1 << 20, mulberry32(1), 1);
  for (const { name, tensor } of model.parameters) {
    const d = tensor.data();
    if (name.endsWith("norm.weight")) {
      d.fill(1);
      continue;
    }
    const std = name.includes("embed") ? 1 : 1 / Math.sqrt(tensor.shape[1]!);
    const off = (name.length * 7919) % 4096; // shift per tensor so layers differ
    for (let i = 0; i < d.length; i += block.length - off) {
      const n = Math.min(block.length - off, d.length - i);
      d.set(block.subarray(off, off + n), i);
    }
    for (let i = 0; i < d.length; i++) d[i]! *= std;
  }
}

/** A synthetic vocabulary (llama.cpp needs one in the file; generation here is by ids). */
function vocab(V: number): GgufTokenizer {
  const tokens = ["<unk>", "<s>", "</s>", ...Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`)];
  for (let i = tokens.length; i < V; i++) tokens.push(`\u2581t${i}`);
  const types = tokens.map((_, i) => (i === 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1));
  return { tokens, scores: tokens.map((_, i) => -i), types, bosId: 1, eosId: 2, unkId: 0, addBos: true, addEos: false };
}

interface Run {
  prefillTps: number;
  decodeTps: number;
  /** the same rates over process CPU time (all threads): robust on a shared, oversubscribed machine */
  prefillCpuTps: number;
  decodeCpuTps: number;
  rssMB: number;
  ids: number[];
}

const promptOf = (P: number, V: number): number[] => Array.from({ length: P }, (_, i) => (i === 0 ? 1 : 259 + ((i * 7919) % (V - 259))));

function ours(session: InferenceSession, prompt: number[], steps: number): Omit<Run, "rssMB"> {
  const c0 = cpuMs(), t0 = performance.now();
  let id = argmax(session.prefill(prompt).data());
  const c1 = cpuMs(), t1 = performance.now();
  const ids = [id];
  for (let i = 0; i < steps; i++) {
    id = argmax(session.step([id]).data());
    ids.push(id);
  }
  const c2 = cpuMs(), t2 = performance.now();
  return rates(prompt.length, steps, [t0, t1, t2], [c0, c1, c2], ids);
}

function rates(P: number, steps: number, t: number[], c: number[], ids: number[]): Omit<Run, "rssMB"> {
  const per = (n: number, ms: number): number => n / (ms / 1000);
  return { prefillTps: per(P, t[1]! - t[0]!), decodeTps: per(steps, t[2]! - t[1]!), prefillCpuTps: per(P, c[1]! - c[0]!), decodeCpuTps: per(steps, c[2]! - c[1]!), ids };
}

type NodeLlamaCpp = typeof import("node-llama-cpp");
type Llama = Awaited<ReturnType<NodeLlamaCpp["getLlama"]>>;
type LModel = Awaited<ReturnType<Llama["loadModel"]>>;

async function theirs(lmodel: LModel, prompt: number[], steps: number, maxT: number): Promise<Omit<Run, "rssMB">> {
  const ctx = await lmodel.createContext({ contextSize: maxT, threads: THREADS, batchSize: 512, flashAttention: false });
  try {
    const seq = ctx.getSequence();
    // Prefill: all but the last prompt token without sampling, then the last one yields the first new token.
    const c0 = cpuMs(), t0 = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, -1) as never[]);
    const ids: number[] = [];
    const gen = seq.evaluate(prompt.slice(-1) as never[], { temperature: 0 });
    let r = await gen.next();
    const c1 = cpuMs(), t1 = performance.now();
    ids.push(Number(r.value));
    for (let i = 0; i < steps; i++) {
      r = await gen.next();
      ids.push(Number(r.value));
    }
    const c2 = cpuMs(), t2 = performance.now();
    await gen.return();
    return rates(prompt.length, steps, [t0, t1, t2], [c0, c1, c2], ids);
  } finally {
    await ctx.dispose();
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

const nlc: NodeLlamaCpp = await import("node-llama-cpp");
const llama = await nlc.getLlama({ gpu: false, build: "never", logLevel: nlc.LlamaLogLevel.error });
const dir = mkdtempSync(join(tmpdir(), "decode-bench-"));
// As node-llama-cpp reports its bundled build (repository @ tag).
const release = `${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}`;
const peerName = (gguf: string): string =>
  `llama.cpp ${release} (node-llama-cpp 3.21.1, CPU), ${gguf} GGUF, ${THREADS} threads, f16 KV cache, batch 512, no flash attention, no mmap`;
console.log(`threads ${THREADS} (both); OpenMP waits: ${waitPolicy}; ours: ${be.buildInfo}; llama.cpp ${release}: node-llama-cpp 3.21.1 CPU, f16 KV cache (its default)`);
console.log("tok/s over wall time and over process CPU time (user+sys, all threads; robust when the machine is oversubscribed)");
console.log("model            weights  side       prefill  pre(cpu)    decode  dec(cpu)  RSS added");

const rows: BenchRow[] = [];
const short = (name: string): string => name.replace(/^tinyllama-/, "").toUpperCase();

/** Interleaved rounds of ours (a session over `weights`) and llama.cpp (on `gguf`); prints and records the rows. */
async function compare(name: string, cfg: ModelConfig, dtype: WeightDtype, weights: DecoderWeights, gguf: string, ggufType: string, base: number): Promise<void> {
  const big = cfg.dim >= 2048;
  const P = 32, steps = big ? 16 : 128, maxT = P + steps + 8;
  const rounds = big ? Math.min(ROUNDS, 2) : ROUNDS;
  const prompt = promptOf(P, cfg.vocabSize);
  const session = InferenceSession.create(weights, { maxT });
  const ourRuns: Run[] = [];
  const theirRuns: Run[] = [];
  let lmodel: LModel | null = null;
  let theirBase = 0;
  const runTheirs = async (): Promise<void> => {
    if (!lmodel) {
      theirBase = rssMB();
      // Weights read into memory (no mmap), like ours: nothing can be paged back out to the file mid-run.
      lmodel = await llama.loadModel({ modelPath: gguf, gpuLayers: 0, useMmap: false });
    }
    const r = await theirs(lmodel, prompt, steps, maxT);
    theirRuns.push({ ...r, rssMB: rssMB() - theirBase });
  };
  try {
    // Interleaved rounds: both sides see the same machine load. Ours' RSS is read before llama.cpp loads.
    // Small models get one unrecorded warm-up round each first (JIT, first-touch page faults, thread pools).
    let ourRss = 0;
    if (!big) {
      ours(session, prompt, steps);
      ourRss = rssMB() - base;
      await runTheirs();
      theirRuns.length = 0;
    }
    for (let k = 0; k < rounds; k++) {
      const r = ours(session, prompt, steps);
      if (k === 0 && big) ourRss = rssMB() - base;
      ourRuns.push({ ...r, rssMB: ourRss });
      await runTheirs();
    }
  } finally {
    session.free();
    await (lmodel as LModel | null)?.dispose();
  }

  const sum = (runs: Run[]) => ({
    p: median(runs.map((r) => r.prefillTps)), d: median(runs.map((r) => r.decodeTps)),
    pc: median(runs.map((r) => r.prefillCpuTps)), dc: median(runs.map((r) => r.decodeCpuTps)), m: Math.max(...runs.map((r) => r.rssMB)),
  });
  const o = sum(ourRuns), t = sum(theirRuns);
  const same = ourRuns[0]!.ids.filter((x, i) => x === theirRuns[0]!.ids[i]).length;
  const line = (side: string, x: typeof o): string =>
    `${name.padEnd(16)} ${dtype.padEnd(8)} ${side.padEnd(10)} ${x.p.toFixed(1).padStart(9)} ${x.pc.toFixed(1).padStart(9)} ${x.d.toFixed(2).padStart(9)} ${x.dc.toFixed(2).padStart(9)} ${x.m.toFixed(0).padStart(7)} MB`;
  console.log(line("ours", o));
  console.log(line(`llama.cpp`, t));
  console.log(`${"".padEnd(25)} ratio ours/llama.cpp (${ggufType} GGUF): decode ${(o.d / t.d).toFixed(2)}x wall, ${(o.dc / t.dc).toFixed(2)}x cpu; prefill ${(o.p / t.p).toFixed(2)}x wall, ${(o.pc / t.pc).toFixed(2)}x cpu; RSS ${(o.m / t.m).toFixed(2)}x`);
  console.log(`${"".padEnd(25)} (${rounds} round(s), median; prompt ${P}, ${steps} decode steps; greedy ids agree on ${same}/${steps + 1})`);
  const what = `${short(name)}, ${dtype === "bf16" ? "bf16 weights vs F16 GGUF" : "f32 weights vs F32 GGUF"}`;
  const note = `median of ${rounds} interleaved rounds; prompt ${P}, ${steps} decode steps; cpu-time ratio decode ${(o.dc / t.dc).toFixed(2)}x`;
  const peer = peerName(ggufType);
  rows.push(
    { component: "decode", case: `${what}, decode`, unit: "tok/s", ours: o.d, peer: t.d, peerName: peer, higherIsBetter: true, target: 1.0, note },
    { component: "decode", case: `${what}, prefill ${P} tokens`, unit: "tok/s", ours: o.p, peer: t.p, peerName: peer, higherIsBetter: true, note: `cpu-time ratio ${(o.pc / t.pc).toFixed(2)}x` },
    { component: "decode", case: `${what}, resident memory added`, unit: "MiB RSS", ours: o.m, peer: t.m, peerName: peer, higherIsBetter: false, note: "weights + KV cache + scratch, while generating" },
  );
}

try {
  for (const name of presets) {
    const cfg: ModelConfig = getPreset(name);
    Bun.gc(true);
    const base = rssMB();
    const model = Model.create(cfg, { backend: be, B: 1, T: 1, training: false, init: false });
    let live: Model | null = model;
    try {
      randomize(model);
      const tensors = new Map(model.parameters.map((p) => [p.name, p.tensor.data()]));
      const gguf = (t: "F32" | "F16"): string => {
        const path = join(dir, `${name}-${t}.gguf`);
        writeGguf(path, { config: cfg, tensors, tokenizer: vocab(cfg.vocabSize), dtype: t, name });
        return path;
      };
      if (DTYPES.includes("f32")) {
        const path = gguf("F32");
        await compare(name, cfg, "f32", model, path, "F32", base);
        rmSync(path, { force: true });
      }
      if (DTYPES.includes("bf16")) {
        const path = gguf("F16");
        // The bf16 weights replace the fp32 model: freed before timing, so RSS shows bf16 storage alone.
        const weights = InferenceWeights.fromModel(model, "bf16");
        model.free();
        live = null;
        Bun.gc(true);
        try {
          await compare(name, cfg, "bf16", weights, path, "F16", base);
        } finally {
          weights.free();
          rmSync(path, { force: true });
        }
      }
    } finally {
      live?.free();
    }
  }
  reportRows(rows);
} finally {
  await llama.dispose();
  rmSync(dir, { recursive: true, force: true });
}
