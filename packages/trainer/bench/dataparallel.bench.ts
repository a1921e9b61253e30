/**
 * Data-parallel throughput on one machine: the 15M-style preset trained for a few steps as
 * 2 processes × 1 thread (mpirun -np 2, 4 sequences each) and as 1 process × 2 threads (8 sequences),
 * the same 8 × 256 tokens per step. Prints median tokens/s of the timed steps and the ratio.
 *
 *   bun packages/trainer/bench/dataparallel.bench.ts [steps]
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { reportRows, type BenchRow } from "../../../tools/bench/harness.ts";

const STEPS = Number(process.argv[2] ?? 8);
const ROOT = resolve(import.meta.dir, "../../..");
const TRAIN = join(ROOT, "tools", "train.ts");
const dir = mkdtempSync(join(tmpdir(), "tl-dp-bench-"));
const data = join(dir, "tokens.bin");
const tokens = new Uint16Array(400_000);
for (let i = 0, x = 12345; i < tokens.length; i++) tokens[i] = (x = (x * 1103515245 + 12345) >>> 0) % 32000;
writeFileSync(data, tokens);

const common = ["--config", "tinyllama-15m", "--seq", "256", "--steps", String(STEPS), "--eval-every", "0", "--save-every", "0", "--keep-last", "1", "--data", data];
const env = { ...process.env, TINYLLAMA_QUIET: "1", OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? "passive" };

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function tokensPerS(out: string): number {
  const rows = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((r) => r.type === "train");
  return median(rows.slice(1).map((r) => r.tokens_per_s as number)); // the first step warms caches
}

function run(cmd: string[], extraEnv: Record<string, string>): void {
  const p = Bun.spawnSync(cmd, { env: { ...env, ...extraEnv }, stdout: "ignore", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed:\n${p.stderr.toString()}`);
}

const mpirun = Bun.which("mpirun");
const threads = join(dir, "threads");
run([process.execPath, TRAIN, ...common, "--batch", "8", "--out", threads], { TINYLLAMA_THREADS: "2", OMP_NUM_THREADS: "2" });
const oneByTwo = tokensPerS(threads);
let twoByOne: number | null = null;
if (mpirun) {
  const ranks = join(dir, "ranks");
  const root = process.getuid?.() === 0 ? ["--allow-run-as-root"] : [];
  run([mpirun, "-np", "2", "--oversubscribe", ...root, process.execPath, TRAIN, ...common, "--batch", "4", "--out", ranks], { TINYLLAMA_THREADS: "1", OMP_NUM_THREADS: "1" });
  twoByOne = tokensPerS(ranks);
}

console.log(`| layout (15M preset, 8 x 256 tokens per step, ${STEPS} steps) | tokens/s |`);
console.log("|---|---:|");
console.log(`| 1 process x 2 threads | ${oneByTwo.toFixed(0)} |`);
console.log(`| 2 processes x 1 thread (mpirun, gradients all-reduced) | ${twoByOne === null ? "skipped: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)" : twoByOne.toFixed(0)} |`);
if (twoByOne !== null) console.log(`\nratio 2x1 / 1x2: ${(twoByOne / oneByTwo).toFixed(2)}`);

const base = { component: "data parallel", unit: "tok/s", peer: null, peerName: null, higherIsBetter: true } as const;
const rows: BenchRow[] = [{ ...base, case: `15M 8x256 tokens/step, 1 process x 2 threads (${STEPS} steps)`, ours: oneByTwo }];
if (twoByOne !== null)
  rows.push({ ...base, case: `15M 8x256 tokens/step, 2 processes x 1 thread, mpirun (${STEPS} steps)`, ours: twoByOne, note: `${(twoByOne / oneByTwo).toFixed(2)}x 1 process x 2 threads` });
reportRows(rows);
