/**
 * Decode and prefill speed at batch 1, ours (InferenceSession: batched prefill, matrix-vector decode
 * with attention_decode) next to llama.cpp (node-llama-cpp 3.21.1, CPU) on the same random weights
 * exported by @tinyllama/checkpoint as an F32 GGUF, both with the same thread count, in one script.
 * Also the resident memory (RSS) each adds while loaded and generating.
 *
 *   ./node_modules/.bin/bun packages/generate/bench/decode.bench.ts [presets] [--threads N] [--rounds R]
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
import { benchWaitPolicy } from "../../../tools/bench/harness.ts";
import { InferenceSession, argmax } from "../src/index.ts";

const args = process.argv.slice(2);
const flag = (name: string, dflt: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const THREADS = flag("threads", 2);
const ROUNDS = flag("rounds", 3);
const presets = (args.find((a) => !a.startsWith("--") && !/^\d+$/.test(a)) ?? "tinyllama-15m,tinyllama-1.1b").split(",");
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
console.log(`threads ${THREADS} (both); OpenMP waits: ${waitPolicy}; ours: ${be.buildInfo}; llama.cpp: node-llama-cpp 3.21.1 CPU, F32 GGUF, f16 KV cache (its default)`);
console.log("tok/s over wall time and over process CPU time (user+sys, all threads; robust when the machine is oversubscribed)");
console.log("model            side       prefill  pre(cpu)    decode  dec(cpu)  RSS added");

try {
  for (const name of presets) {
    const cfg: ModelConfig = getPreset(name);
    const big = cfg.dim >= 2048;
    const P = 32, steps = big ? 16 : 128, maxT = P + steps + 8;
    const rounds = big ? Math.min(ROUNDS, 2) : ROUNDS;
    const prompt = promptOf(P, cfg.vocabSize);
    const gguf = join(dir, `${name}.gguf`);

    Bun.gc(true);
    const base = rssMB();
    const model = Model.create(cfg, { backend: be, B: 1, T: 1, training: false, init: false });
    randomize(model);
    writeGguf(gguf, { config: cfg, tensors: new Map(model.parameters.map((p) => [p.name, p.tensor.data()])), tokenizer: vocab(cfg.vocabSize), dtype: "F32", name });
    const session = InferenceSession.create(model, { maxT });
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
    session.free();
    model.free();
    await (lmodel as LModel | null)?.dispose();
    rmSync(gguf, { force: true });

    const sum = (runs: Run[]) => ({
      p: median(runs.map((r) => r.prefillTps)), d: median(runs.map((r) => r.decodeTps)),
      pc: median(runs.map((r) => r.prefillCpuTps)), dc: median(runs.map((r) => r.decodeCpuTps)), m: Math.max(...runs.map((r) => r.rssMB)),
    });
    const o = sum(ourRuns), t = sum(theirRuns);
    const same = ourRuns[0]!.ids.filter((x, i) => x === theirRuns[0]!.ids[i]).length;
    const line = (side: string, x: typeof o): string =>
      `${name.padEnd(16)} ${side.padEnd(10)} ${x.p.toFixed(1).padStart(9)} ${x.pc.toFixed(1).padStart(9)} ${x.d.toFixed(2).padStart(9)} ${x.dc.toFixed(2).padStart(9)} ${x.m.toFixed(0).padStart(7)} MB`;
    console.log(line("ours", o));
    console.log(line("llama.cpp", t));
    console.log(`${"".padEnd(16)} ratio ours/llama.cpp: decode ${(o.d / t.d).toFixed(2)}x wall, ${(o.dc / t.dc).toFixed(2)}x cpu; prefill ${(o.p / t.p).toFixed(2)}x wall, ${(o.pc / t.pc).toFixed(2)}x cpu`);
    console.log(`${"".padEnd(16)} (${rounds} round(s), median; prompt ${P}, ${steps} decode steps; greedy ids agree on ${same}/${steps + 1})`);
  }
} finally {
  await llama.dispose();
  rmSync(dir, { recursive: true, force: true });
}
