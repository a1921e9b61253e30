/**
 * Training throughput scaling tables: tokens/s against sequence length T (256...2048, the 15M
 * preset's shapes with a 2048 context), against model size (micro, 15M, 42M, 110M presets), and
 * 1 thread against 2. Each point is a profiled run of a few steps after a warm-up
 * (profileTraining), the same measurement as `bun run train --profile`.
 *
 *   bun packages/trainer/bench/scaling.bench.ts [steps]
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultTrainConfig, getPreset, parameterCount, type ModelConfig } from "@tinyllama/config";
import { getBackend } from "@tinyllama/kernels";
import { profileTraining } from "@tinyllama/trainer";
import { reportRows, type BenchRow } from "../../../tools/bench/harness.ts";

const STEPS = Number(process.argv[2] ?? 2);
const be = getBackend();
const dir = mkdtempSync(join(tmpdir(), "tl-scaling-"));
/** Random tokens below `vocab` as a raw uint16 file (throughput does not depend on their values). */
function dataFor(vocab: number): string {
  const path = join(dir, `tokens-${vocab}.bin`);
  const toks = new Uint16Array(2_000_000);
  for (let i = 0, x = 7; i < toks.length; i++) toks[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) % vocab;
  writeFileSync(path, toks);
  return path;
}

function tokPerS(cfg: ModelConfig, B: number, T: number): { tps: number; gflops: number } {
  const tc = defaultTrainConfig(cfg, { batch: B, seq: T, gradAccum: 1, steps: 10, warmup: 0 });
  const text = profileTraining({ model: cfg, train: tc, data: dataFor(cfg.vocabSize), steps: STEPS, backend: be });
  const m = /([\d.]+) tok\/s, ([\d.]+) GFLOP\/s/.exec(text)!;
  return { tps: Number(m[1]), gflops: Number(m[2]) };
}

const row = (cells: (string | number)[]) => console.log(`| ${cells.join(" | ")} |`);
/** Scoreboard rows (no peer: these are our own tokens/s against T, size and threads). */
const rows: BenchRow[] = [];
const scoreRow = (c: string, r: { tps: number; gflops: number }, note?: string) =>
  rows.push({ component: "training scaling", case: c, unit: "tok/s", ours: r.tps, peer: null, peerName: null, higherIsBetter: true, gflops: r.gflops, ...(note ? { note } : {}) });
be.threads = 2;

console.log(`\n### tokens/s against T (15M shapes, context 2048, ${be.threads} threads, B x T = 2048 tokens per step)\n`);
row(["T", "B", "tokens/s", "GFLOP/s"]);
row(["---:", "---:", "---:", "---:"]);
const long = { ...getPreset("tinyllama-15m"), maxSeqLen: 2048 };
for (const T of [256, 512, 1024, 2048]) {
  const r = tokPerS(long, 2048 / T, T);
  row([T, 2048 / T, r.tps.toFixed(0), r.gflops.toFixed(1)]);
  scoreRow(`15M shapes T=${T} B=${2048 / T}, ${be.threads} threads`, r);
}

console.log(`\n### tokens/s against model size (T = 256, B = 8, ${be.threads} threads)\n`);
row(["preset", "parameters", "tokens/s", "GFLOP/s"]);
row(["---", "---:", "---:", "---:"]);
for (const name of ["micro", "tinyllama-15m", "tinyllama-42m", "tinyllama-110m"] as const) {
  const cfg = getPreset(name);
  const T = Math.min(256, cfg.maxSeqLen);
  const r = tokPerS(cfg, 8, T);
  row([name, (parameterCount(cfg) / 1e6).toFixed(1) + "M", r.tps.toFixed(0), r.gflops.toFixed(1)]);
  scoreRow(`${name} (${(parameterCount(cfg) / 1e6).toFixed(1)}M params) B=8 T=${T}, ${be.threads} threads`, r);
}

console.log("\n### 1 thread against 2 (15M preset, B = 8, T = 256)\n");
row(["threads", "tokens/s", "GFLOP/s", "speed-up"]);
row(["---:", "---:", "---:", "---:"]);
be.threads = 1;
const one = tokPerS(getPreset("tinyllama-15m"), 8, 256);
be.threads = 2;
const two = tokPerS(getPreset("tinyllama-15m"), 8, 256);
row([1, one.tps.toFixed(0), one.gflops.toFixed(1), "1.00x"]);
row([2, two.tps.toFixed(0), two.gflops.toFixed(1), `${(two.tps / one.tps).toFixed(2)}x`]);
scoreRow("15M B=8 T=256, 1 thread", one);
scoreRow("15M B=8 T=256, 2 threads", two, `${(two.tps / one.tps).toFixed(2)}x the 1-thread rate`);
reportRows(rows);
