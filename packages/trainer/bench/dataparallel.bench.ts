/**
 * Data-parallel throughput on one machine: the 15M preset, 8 x 256 tokens per micro-batch and the
 * preset's default 2 micro-batches (gradient accumulation) per optimizer step, i.e. 4096 tokens, as
 * 1 process x all cores (batch 8) and as `mpirun -np 2` (batch 4 per rank, gradients all-reduced),
 * the ranks started the way a user starts them (no thread settings: the trainer's rank placement
 * chooses them). Both jobs stay up and take turns, one step at a time (A B B A ...), so a burst of
 * someone else's work on this shared machine lands on both alike; the first step of each is
 * discarded. Prints median tokens/s of each, the ratio, and where the 2-process step's time went.
 *
 *   bun packages/trainer/bench/dataparallel.bench.ts [steps]     (default 10 timed steps each)
 */
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { benchQuick, median, reportRows, type BenchRow } from "../../../tools/bench/harness.ts";

const STEPS = Number(process.argv[2] ?? (benchQuick() ? 4 : 10));
const WORKER = join(import.meta.dir, "dataparallel_worker.ts");
const dir = mkdtempSync(join(tmpdir(), "tl-dp-bench-"));
const data = join(dir, "tokens.bin");
const tokens = new Uint16Array(400_000);
for (let i = 0, x = 12345; i < tokens.length; i++) tokens[i] = (x = (x * 1103515245 + 12345) >>> 0) % 32000;
writeFileSync(data, tokens);

const cores = availableParallelism();
const base: Record<string, string | undefined> = { ...process.env, TINYLLAMA_QUIET: "1", OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? "passive" };
// The user's view: no thread variables for the ranks (the trainer divides the cores between them).
delete base.TINYLLAMA_THREADS;
delete base.OMP_NUM_THREADS;

interface StepTiming {
  s: number;
  compute: number;
  wait: number;
  optim: number;
}

/** A training job that steps when told (see dataparallel_worker.ts). */
class Job {
  readonly proc;
  readonly #lines: AsyncIterator<string>;
  readonly #cmd: string;
  #n = 0;
  constructor(
    readonly name: string,
    cmd: string[],
    env: Record<string, string | undefined>,
  ) {
    this.#cmd = mkdtempSync(join(dir, "cmd-"));
    this.proc = Bun.spawn([...cmd, "--cmd", this.#cmd], { env, stdout: "pipe", stderr: "pipe" });
    this.#lines = lineReader(this.proc.stdout);
  }
  /** Written whole, then renamed into place: the ranks never see a half-written command. */
  #send(cmd: "step" | "quit"): void {
    const file = join(this.#cmd, String(this.#n++));
    writeFileSync(`${file}.tmp`, cmd);
    renameSync(`${file}.tmp`, file);
  }
  async #read(): Promise<Record<string, unknown>> {
    const r = await this.#lines.next();
    if (r.done) throw new Error(`${this.name} ended early:\n${await new Response(this.proc.stderr).text()}`);
    return JSON.parse(r.value) as Record<string, unknown>;
  }
  async ready(): Promise<{ threads: number; tokensPerStep: number; gradAccum: number }> {
    return (await this.#read()) as unknown as { threads: number; tokensPerStep: number; gradAccum: number };
  }
  async step(): Promise<StepTiming> {
    this.#send("step");
    return (await this.#read()) as unknown as StepTiming;
  }
  async quit(): Promise<void> {
    this.#send("quit");
    await this.proc.exited;
  }
}

async function* lineReader(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const dec = new TextDecoder();
  const reader = stream.getReader();
  let buf = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.startsWith("{")) yield line;
    }
  }
}

const bun = process.execPath;
const common = ["--data", data, "--seq", "256"];
const single = new Job("1 process", [bun, WORKER, ...common, "--batch", "8"], { ...base, TINYLLAMA_THREADS: String(cores) });
const mpirun = Bun.which("mpirun");
const ranks = mpirun
  ? new Job("mpirun -np 2", [mpirun, "-np", "2", ...(process.getuid?.() === 0 ? ["--allow-run-as-root"] : []), bun, WORKER, ...common, "--batch", "4"], base)
  : null;

const singleInfo = await single.ready();
const rankInfo = ranks ? await ranks.ready() : null;
const singleThreads = singleInfo.threads, rankThreads = rankInfo?.threads ?? 0;
if (rankInfo && rankInfo.tokensPerStep !== singleInfo.tokensPerStep) throw new Error(`the jobs disagree on tokens per step: ${singleInfo.tokensPerStep} vs ${rankInfo.tokensPerStep}`);
const load0 = loadavg()[0]!;
const a: StepTiming[] = [], b: StepTiming[] = [];
for (let i = 0; i <= STEPS; i++) {
  // A B, then B A: neither job always runs right after the other
  const order = i % 2 === 0 ? [single, ranks] : [ranks, single];
  for (const job of order) {
    if (!job) continue;
    const t = await job.step();
    if (i > 0) (job === single ? a : b).push(t);
  }
}
const load1 = loadavg()[0]!;
await single.quit();
await ranks?.quit();
rmSync(dir, { recursive: true, force: true });

const tokensPerStep = singleInfo.tokensPerStep;
const shape = `8 x 256 tokens x ${singleInfo.gradAccum} micro-batches (${tokensPerStep} tokens) per step`;
const tps = (ts: StepTiming[]) => tokensPerStep / median(ts.map((t) => t.s));
const ms = (ts: StepTiming[], k: keyof StepTiming) => (median(ts.map((t) => t[k])) * 1000).toFixed(0);
const oneProc = tps(a);
const twoProc = ranks ? tps(b) : null;

console.log(`data parallel, 15M preset, ${shape}, ${STEPS} steps each, taking turns; load ${load0.toFixed(2)} -> ${load1.toFixed(2)}`);
console.log(`| layout | tokens/s | step ms (median) | forward+backward ms | waiting for the other rank ms | all-reduce + AdamW ms |`);
console.log("|---|---:|---:|---:|---:|---:|");
console.log(`| 1 process x ${singleThreads} threads | ${oneProc.toFixed(0)} | ${ms(a, "s")} | ${ms(a, "compute")} | - | ${ms(a, "optim")} |`);
if (ranks) console.log(`| 2 processes x ${rankThreads} thread(s) (mpirun -np 2, no thread settings) | ${twoProc!.toFixed(0)} | ${ms(b, "s")} | ${ms(b, "compute")} | ${ms(b, "wait")} | ${ms(b, "optim")} |`);
else console.log("| 2 processes (mpirun -np 2) | skipped: mpirun not found (apt-get install openmpi-bin libopenmpi-dev) | | | | |");
console.log(`\nstep seconds, in order: 1 process ${a.map((t) => t.s.toFixed(2)).join(" ")}${ranks ? `; 2 processes ${b.map((t) => t.s.toFixed(2)).join(" ")}` : ""}`);
if (twoProc !== null) console.log(`\nratio 2 processes / 1 process: ${(twoProc / oneProc).toFixed(2)}`);

const row = { component: "data parallel", unit: "tok/s", peer: null, peerName: null, higherIsBetter: true } as const;
const rows: BenchRow[] = [{ ...row, case: `15M 8x256x${singleInfo.gradAccum} tokens/step, 1 process x ${singleThreads} threads (${STEPS} steps, taking turns)`, ours: oneProc }];
if (twoProc !== null)
  rows.push({ ...row, case: `15M 8x256x${singleInfo.gradAccum} tokens/step, 2 processes, mpirun (${STEPS} steps, taking turns)`, ours: twoProc, note: `${(twoProc / oneProc).toFixed(2)}x 1 process; ${rankThreads} thread(s) per rank` });
reportRows(rows);
