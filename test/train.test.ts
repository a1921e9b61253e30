/**
 * The trainer end to end, through `bun run train` as a user runs it: exact resume after kill -9,
 * NaN stop with the last good checkpoint intact, corrupted checkpoints skipped, one-line errors.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, readdirSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { readSnapshot } from "@tinyllama/trainer";
import { syntheticTokens } from "@tinyllama/testing";

const ROOT = resolve(import.meta.dir, "..");
const TRAIN = join(ROOT, "tools", "train.ts");
const ENV = { ...process.env, TINYLLAMA_THREADS: "2", TINYLLAMA_QUIET: "1" };
let dir = "";
let data = "";

/** A learnable token stream as a raw uint16 .bin, the llama2.c format. */
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tl-train-"));
  data = join(dir, "synth.bin");
  writeFileSync(data, syntheticTokens(50_000));
});

const BASE = ["--config", "micro", "--batch", "2", "--seq", "32", "--steps", "12", "--lr", "3e-3", "--warmup", "2", "--save-every", "2", "--eval-every", "0", "--keep-last", "0", "--seed", "7"];

function run(args: string[]): { code: number; out: string; err: string } {
  const p = Bun.spawnSync([process.execPath, TRAIN, ...args], { env: ENV, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? -1, out: p.stdout.toString(), err: p.stderr.toString() };
}

const trainRows = (out: string) =>
  readFileSync(join(out, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l))
    .filter((r) => r.type === "train")
    .map((r) => [r.step, r.loss, r.lr, r.grad_norm]);

const finalParams = (out: string) => readFileSync(join(out, "checkpoints", "step-00000012", "params.bin"));

describe("bun run train", () => {
  test("kill -9 mid-run then --resume is bit-identical to an uninterrupted run", async () => {
    const a = join(dir, "uninterrupted");
    const r = run([...BASE, "--data", data, "--out", a]);
    expect(r.code).toBe(0);
    const rowsA = trainRows(a);
    expect(rowsA.length).toBe(12);
    expect(rowsA.at(-1)![1]).toBeLessThan(rowsA[0]![1]);

    const b = join(dir, "killed");
    const child = Bun.spawn([process.execPath, TRAIN, ...BASE, "--data", data, "--out", b], { env: ENV, stdout: "ignore", stderr: "ignore" });
    // Wait for the first checkpoint, then kill at a random moment within the next few steps.
    const deadline = Date.now() + 120_000;
    while (!(existsSync(join(b, "checkpoints")) && readdirSync(join(b, "checkpoints")).some((n) => n.startsWith("step-"))) && Date.now() < deadline) await Bun.sleep(20);
    await Bun.sleep(Math.floor(Math.random() * 400));
    child.kill(9);
    await child.exited;
    const done = readdirSync(join(b, "checkpoints")).filter((n) => n.startsWith("step-"));
    expect(done.length).toBeGreaterThan(0);

    const resumed = run([...BASE, "--data", data, "--out", b, "--resume"]);
    expect(resumed.code).toBe(0);
    expect(resumed.err).toMatch(/resumed from .*step-\d+ at step \d+|no valid checkpoint/);
    expect(trainRows(b)).toEqual(rowsA);
    expect(Buffer.compare(finalParams(b), finalParams(a))).toBe(0);
  });

  test("a corrupted newest checkpoint is skipped for the previous one, with a message", () => {
    const c = join(dir, "corrupt");
    const six = [...BASE, "--steps", "6", "--data", data, "--out", c];
    expect(run(six).code).toBe(0);
    const rows = trainRows(c);
    const params = readFileSync(join(c, "checkpoints", "step-00000006", "params.bin"));
    truncateSync(join(c, "checkpoints", "step-00000006", "params.bin"), 100);
    const r = run([...six, "--resume"]);
    expect(r.code).toBe(0);
    expect(r.err).toContain("skipping checkpoint");
    expect(r.err).toMatch(/resumed from .*step-00000004/);
    expect(trainRows(c)).toEqual(rows);
    expect(Buffer.compare(readFileSync(join(c, "checkpoints", "step-00000006", "params.bin")), params)).toBe(0);
  });

  test("a NaN loss stops the run with a clear message and leaves the last good checkpoint intact", () => {
    const out = join(dir, "nan");
    const r = run(["--config", "micro", "--batch", "2", "--seq", "32", "--steps", "40", "--lr", "1e6", "--warmup", "0", "--schedule", "constant", "--grad-clip", "0", "--save-every", "1", "--eval-every", "0", "--data", data, "--out", out]);
    expect(r.code).toBe(3);
    expect(r.err).toMatch(/loss is (NaN|Infinity|-Infinity) at step \d+: stopping/);
    // lr 1e6 from step 0 blows the weights up after the first update: step 1 is the last good one
    const snaps = readdirSync(join(out, "checkpoints")).filter((n) => n.startsWith("step-")).sort();
    expect(snaps.length).toBeGreaterThan(0);
    const last = readSnapshot(join(out, "checkpoints", snaps.at(-1)!));
    const stopped = Number(/at step (\d+)/.exec(r.err)![1]);
    expect(last.step).toBe(stopped - 1);
    expect(r.err).toContain(`last good checkpoint (step ${last.step}) is intact`);
  });

  test("bad input gets one-line errors, not stack traces", () => {
    const cases: [string[], RegExp][] = [
      [["--bogus"], /Unknown option '--bogus'/],
      [["--config", "nope"], /neither a preset .* nor an existing config file/],
      [["--config", "micro", "--data", join(dir, "missing.bin")], /does not exist/],
      [["--config", "micro", "--steps", "-3", "--data", data], /steps/],
      [["--config", "micro", "--seq", "4096", "--data", data], /seq \(4096\) must be <= the model's maxSeqLen/],
      [["--config", "micro", "--lr", "fast", "--data", data], /--lr expects a number/],
    ];
    for (const [args, re] of cases) {
      const r = run([...args, "--out", join(dir, "bad")]);
      expect(r.code).not.toBe(0);
      expect(r.err).toMatch(re);
      expect(r.err).not.toMatch(/^\s+at /m);
    }
    const empty = join(dir, "empty.bin");
    writeFileSync(empty, new Uint8Array(0));
    const r = run(["--config", "micro", "--data", empty, "--out", join(dir, "bad2")]);
    expect(r.code).not.toBe(0);
    expect(r.err.trim().split("\n").length).toBeLessThanOrEqual(2);
  });

  test("--profile prints where the time goes, per kernel, and writes nothing", () => {
    const out = join(dir, "profile");
    const r = run(["--config", "micro", "--batch", "2", "--seq", "32", "--data", data, "--out", out, "--profile"]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/profile: 3 steps of 2 x 32 x 1 tokens/);
    expect(r.out).toMatch(/\| matmul_forward \| \d+ \| [\d.]+ \| [\d.]+% \| [\d.]+ \|/);
    expect(r.out).toMatch(/\| attention_backward \|/);
    expect(r.out).toMatch(/\| all kernels \|/);
    expect(existsSync(out)).toBe(false);
  });

  test("--dry-run plans tinyllama-1.1b without allocating it", () => {
    const r = run(["--config", "tinyllama-1.1b", "--dry-run"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("1,100,048,384");
    expect(r.out).toMatch(/memory\s+params 4\.10 GiB \| grads 4\.10 GiB \| AdamW state 8\.20 GiB/);
    expect(r.out).toMatch(/GFLOP per token/);
  });

  test("--precision bf16 trains like fp32 (within 2%), checkpoints the fp32 masters, and a bad value is a one-line error", () => {
    const f = join(dir, "prec-fp32"), h = join(dir, "prec-bf16");
    const rf = run([...BASE, "--data", data, "--out", f, "--precision", "fp32"]);
    const rh = run([...BASE, "--data", data, "--out", h, "--precision", "bf16"]);
    expect(rf.code).toBe(0);
    expect(rh.code).toBe(0);
    expect(rh.err).toContain("bf16 mixed precision (fp32 master weights and optimizer state)");
    const lf = trainRows(f), lh = trainRows(h);
    expect(lh.length).toBe(12);
    for (let i = 0; i < lf.length; i++) expect(Math.abs(lh[i]![1] - lf[i]![1]) / lf[i]![1]).toBeLessThan(0.02);
    expect(lh.map((r) => r[1])).not.toEqual(lf.map((r) => r[1]));
    // the checkpoint holds fp32 masters: same size as the fp32 run's, close to its values, not bf16-rounded
    const pf = new Float32Array(new Uint8Array(finalParams(f)).buffer), ph = new Float32Array(new Uint8Array(finalParams(h)).buffer);
    expect(ph.length).toBe(pf.length);
    let num = 0, den = 0, notBf16 = 0;
    for (let i = 0; i < pf.length; i++) {
      num += (ph[i]! - pf[i]!) ** 2;
      den += pf[i]! ** 2;
      if (new Uint32Array(ph.buffer, i * 4, 1)[0]! & 0xffff) notBf16++;
    }
    expect(Math.sqrt(num / den)).toBeLessThan(1e-2);
    expect(notBf16).toBeGreaterThan(pf.length / 2);
    const bad = run([...BASE, "--data", data, "--out", join(dir, "prec-bad"), "--precision", "fp16"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('train.precision: must be one of "auto", "fp32", "bf16" (got "fp16")');
    expect(bad.err.trim().split("\n").length).toBe(1);
  }, 300_000);
});
