/**
 * Fine-tuning from a Hugging Face checkpoint matches PyTorch: `bun tools/train.ts --init` on exactly T+1
 * tokens (so every step sees the same window), B=1, constant lr, against the same AdamW steps in
 * PyTorch (tools/reference/init_train_fixture.py writes test/fixtures/init_train/).
 */
import { expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const FIXTURE = join(ROOT, "test", "fixtures", "init_train");
const ENV = { ...process.env, TINYLLAMA_THREADS: "2", TINYLLAMA_QUIET: "1" };

interface Expected {
  args: { batch: number; seq: number; steps: number; lr: number; weight_decay: number; grad_clip: number };
  loss: number[];
  grad_norm: number[];
}

test("5 AdamW steps from an HF checkpoint: per-step loss and pre-clip grad norm match PyTorch (rel err < 1e-4)", () => {
  const exp = JSON.parse(readFileSync(join(FIXTURE, "expected.json"), "utf8")) as Expected;
  const a = exp.args;
  const out = mkdtempSync(join(tmpdir(), "tl-train-init-"));
  try {
    const p = Bun.spawnSync(
      [
        process.execPath, join(ROOT, "tools", "train.ts"),
        "--init", FIXTURE, "--data", join(FIXTURE, "tokens.bin"),
        "--batch", String(a.batch), "--seq", String(a.seq), "--sample", "sequential",
        "--schedule", "constant", "--warmup", "0", "--lr", String(a.lr), "--weight-decay", String(a.weight_decay),
        "--grad-clip", String(a.grad_clip), "--steps", String(a.steps), "--eval-every", "0", "--out", join(out, "run"),
      ],
      { env: ENV, stdout: "pipe", stderr: "pipe" },
    );
    if (p.exitCode !== 0) console.error(p.stderr.toString());
    expect(p.exitCode).toBe(0);
    const rows = readFileSync(join(out, "run", "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; step: number; loss: number; lr: number; grad_norm: number })
      .filter((r) => r.type === "train");
    expect(rows.map((r) => r.step)).toEqual([1, 2, 3, 4, 5]);
    expect(rows.map((r) => r.lr)).toEqual(rows.map(() => a.lr)); // constant from step 0: no warmup ramp

    const rel = (x: number, y: number) => Math.abs(x - y) / Math.abs(y);
    const lossErr = rows.map((r, i) => rel(r.loss, exp.loss[i]!));
    const normErr = rows.map((r, i) => rel(r.grad_norm, exp.grad_norm[i]!));
    console.log(`train --init vs PyTorch over ${rows.length} steps: max rel err loss ${Math.max(...lossErr).toExponential(2)}, grad norm ${Math.max(...normErr).toExponential(2)}`);
    expect(Math.max(...lossErr)).toBeLessThan(1e-4);
    expect(Math.max(...normErr)).toBeLessThan(1e-4);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}, 120_000);
