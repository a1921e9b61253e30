/**
 * Data-parallel training under `mpirun -np 2` (one thread per rank) against one process on the
 * two ranks' batches combined, with and without ZeRO-1; resume across world sizes; a killed rank.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { getPreset } from "@tinyllama/config";
import { WindowLoader, openTokenFile, splitWindows } from "@tinyllama/data";
import { Model } from "@tinyllama/model";
import { AdamW, clipFactor, cosineSchedule, gradNorm } from "@tinyllama/optimizer";
import { relErr, syntheticTokens } from "@tinyllama/testing";
import { latestSnapshot } from "@tinyllama/trainer";

const MPIRUN = Bun.which("mpirun");
const ROOT = resolve(import.meta.dir, "..");
const TRAIN = join(ROOT, "tools", "train.ts");
const ENV = { ...process.env, TINYLLAMA_THREADS: "1", OMP_NUM_THREADS: "1", TINYLLAMA_QUIET: "1", TINYLLAMA_COLLECTIVE_TIMEOUT_S: "60" };
if (!MPIRUN) console.log("SKIP distributed training tests: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)");

const STEPS = 20, B = 2, T = 32, LR = 3e-3, MIN_LR = 3e-4, WARMUP = 2, SEED = 7;
const FLAGS = ["--config", "micro", "--batch", String(B), "--seq", String(T), "--lr", String(LR), "--min-lr", String(MIN_LR), "--warmup", String(WARMUP), "--grad-clip", "1", "--eval-every", "0", "--seed", String(SEED), "--keep-last", "0"];
let dir = "", data = "";

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tl-ddp-"));
  data = join(dir, "synth.bin");
  writeFileSync(data, syntheticTokens(40_000));
});

function spawnMpi(np: number, args: string[]) {
  const cmd = [MPIRUN!, "-np", String(np), "--oversubscribe"];
  if (process.getuid?.() === 0) cmd.push("--allow-run-as-root");
  return Bun.spawn([...cmd, process.execPath, TRAIN, ...args], { env: ENV, stdout: "pipe", stderr: "pipe" });
}

async function mpiTrain(np: number, args: string[]): Promise<{ code: number; err: string }> {
  const p = spawnMpi(np, args);
  const [err, out] = await Promise.all([new Response(p.stderr).text(), new Response(p.stdout).text()]);
  return { code: await p.exited, err: err + out };
}

const losses = (out: string) =>
  readFileSync(join(out, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l))
    .filter((r) => r.type === "train")
    .map((r) => r.loss as number);

/** One process, the two ranks' micro-batches concatenated into one batch of 2B, the trainer's recipe. */
function combinedReference(): number[] {
  const cfg = getPreset("micro");
  const model = Model.create(cfg, { B: 2 * B, T, seed: SEED });
  const adam = new AdamW(model.params, model.grads!, { lr: LR, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
  const tokens = openTokenFile(data).tokens;
  const ranks = [0, 1].map((rank) => new WindowLoader([tokens], { B, T, mode: "random", seed: SEED, rank, worldSize: 2 }));
  const schedule = cosineSchedule({ lr: LR, minLr: MIN_LR, warmup: WARMUP, total: STEPS });
  const out: number[] = [];
  const windows = new Int32Array(2 * B * (T + 1));
  for (let step = 0; step < STEPS; step++) {
    windows.set(ranks[0]!.next(), 0);
    windows.set(ranks[1]!.next(), B * (T + 1));
    const { inputs, targets } = splitWindows(windows, 2 * B, T);
    model.zeroGrad();
    out.push(model.forward(inputs, targets));
    model.backward();
    const norm = gradNorm(model.grads!);
    adam.step(schedule(step), clipFactor(norm, 1));
  }
  model.free();
  return out;
}

describe.skipIf(!MPIRUN)("mpirun -np 2 bun run train", () => {
  let reference: number[] = [];
  beforeAll(() => {
    reference = combinedReference();
  });

  for (const zero of [false, true]) {
    test(`loss curve equals one process on the combined batches (${zero ? "ZeRO-1" : "replicated AdamW"})`, async () => {
      const out = join(dir, zero ? "zero" : "ddp");
      const r = await mpiTrain(2, [...FLAGS, "--steps", String(STEPS), "--data", data, "--out", out, ...(zero ? ["--zero"] : [])]);
      expect(r.code, r.err).toBe(0);
      const got = losses(out);
      expect(got.length).toBe(STEPS);
      expect(relErr(got, reference)).toBeLessThan(1e-5);
      expect(got.at(-1)!).toBeLessThan(got[0]!);
    });
  }

  test("a checkpoint written by 2 ranks resumes in 1 process, and one from 1 process on 2 ranks", async () => {
    const out = join(dir, "resume");
    const constant = [...FLAGS, "--schedule", "constant", "--save-every", "5", "--data", data, "--out", out];
    const two = await mpiTrain(2, [...constant, "--steps", "10"]);
    expect(two.code, two.err).toBe(0);
    // one process with twice the micro-batch sees as many tokens per step as the two ranks did
    const one = Bun.spawnSync([process.execPath, TRAIN, ...constant, "--batch", String(2 * B), "--steps", "15", "--resume"], { env: ENV, stderr: "pipe" });
    expect(one.exitCode, one.stderr.toString()).toBe(0);
    expect(one.stderr.toString()).toMatch(/resumed from .*step-00000010 at step 10/);
    const back = await mpiTrain(2, [...constant, "--steps", "20", "--resume"]);
    expect(back.code, back.err).toBe(0);
    expect(back.err).toMatch(/resumed from .*step-00000015 at step 15/);
    const l = losses(out);
    expect(l.length).toBe(20);
    expect(l.every(Number.isFinite)).toBe(true);
    expect(l.at(-1)!).toBeLessThan(l[0]!);
  });

  test("an error on one rank only (its --data is not a token file) ends the whole job within seconds, with that rank's message", async () => {
    const bad = join(dir, "odd.bin");
    writeFileSync(bad, "abc"); // 3 bytes: not a uint16 token file
    const out = join(dir, "one-bad-rank");
    const cmd = [MPIRUN!, "--oversubscribe"];
    if (process.getuid?.() === 0) cmd.push("--allow-run-as-root");
    const rank = (d: string) => ["-np", "1", process.execPath, TRAIN, ...FLAGS, "--steps", "1000", "--data", d, "--out", out];
    const t0 = Date.now();
    // MPMD: rank 0 gets good data, rank 1 the bad file; rank 1 fails after MPI is up, while rank 0 waits in a collective
    const p = Bun.spawn([...cmd, ...rank(data), ":", ...rank(bad)], { env: ENV, stdout: "pipe", stderr: "pipe" });
    const timer = setTimeout(() => p.kill("SIGKILL"), 90_000);
    const [err, so] = await Promise.all([new Response(p.stderr).text(), new Response(p.stdout).text()]);
    const code = await p.exited;
    clearTimeout(timer);
    expect(code).not.toBe(0);
    expect((Date.now() - t0) / 1000).toBeLessThan(45); // well under the 60 s collective timeout set in ENV
    expect(err + so).toMatch(/train \(rank 1\): .*odd\.bin/);
  });

  test("killing one rank mid-run ends the job within a bounded time, with a message, the last checkpoint intact", async () => {
    const out = join(dir, "killed");
    const p = spawnMpi(2, [...FLAGS, "--steps", "100000", "--save-every", "3", "--data", data, "--out", out]);
    const errText = new Response(p.stderr).text();
    const deadline = Date.now() + 120_000;
    while (!(existsSync(join(out, "checkpoints")) && readdirSync(join(out, "checkpoints")).some((n) => n.startsWith("step-"))) && Date.now() < deadline) await Bun.sleep(50);
    // the ranks are the bun processes whose parent is this mpirun (orted on other launchers)
    const ps = Bun.spawnSync(["pgrep", "-f", `${TRAIN} --config micro`]).stdout.toString().trim().split("\n").map(Number).filter((n) => n && n !== p.pid);
    expect(ps.length).toBeGreaterThanOrEqual(2);
    const killedAt = Date.now();
    process.kill(ps.at(-1)!, "SIGKILL");
    const timer = setTimeout(() => p.kill("SIGKILL"), 90_000);
    const code = await p.exited;
    clearTimeout(timer);
    const took = (Date.now() - killedAt) / 1000;
    expect(code).not.toBe(0);
    expect(took).toBeLessThan(60);
    const err = await errText;
    expect(err).toMatch(/signal 9|killed|exited|timed out|aborted/i);
    const last = latestSnapshot(join(out, "checkpoints"));
    expect(last).not.toBeNull();
  });
});
