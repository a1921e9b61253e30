/**
 * Cross-package: @tinyllama/model's parameter and gradient arenas drive @tinyllama/optimizer's
 * AdamW (runs planned over the HF-named layout, 2-D tensors decayed, RMSNorm gains not) with
 * global-norm clipping, as the trainer will. Checks that the pieces fit and that training through
 * them learns and is bit-for-bit repeatable.
 */
import { describe, expect, test } from "bun:test";
import { getPreset } from "@tinyllama/config";
import { Model } from "@tinyllama/model";
import { AdamW, clipFactor, gradNorm } from "@tinyllama/optimizer";
import { mulberry32 } from "@tinyllama/testing";

function run(steps: number): { losses: number[]; params: Buffer } {
  const cfg = getPreset("micro");
  const B = 2, T = 32;
  const rng = mulberry32(21);
  const seq = Int32Array.from({ length: B * (T + 1) }, () => Math.floor(rng() * cfg.vocabSize));
  const tokens = new Int32Array(B * T), targets = new Int32Array(B * T);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++) {
      tokens[b * T + t] = seq[b * (T + 1) + t]!;
      targets[b * T + t] = seq[b * (T + 1) + t + 1]!;
    }
  const model = Model.create(cfg, { B, T, seed: 5 });
  const opt = new AdamW(model.params, model.grads!, { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
  try {
    // weight decay exactly on the matrices: every run is homogeneous and norm gains are excluded
    for (const r of opt.runs) for (const n of r.names) expect(r.decay).toBe(!n.endsWith("norm.weight"));
    const losses: number[] = [];
    for (let s = 0; s < steps; s++) {
      model.zeroGrad();
      losses.push(model.forward(tokens, targets));
      model.backward();
      opt.step(3e-3, clipFactor(gradNorm(model.grads!), 1.0));
    }
    losses.push(model.forward(tokens, targets));
    return { losses, params: Buffer.from(model.params.flat().read().buffer) };
  } finally {
    opt.m.free();
    opt.v.free();
    model.free();
  }
}

describe("Model + AdamW", () => {
  test("30 clipped AdamW steps on one micro batch learn it, and two runs are bit-identical", () => {
    const a = run(30), b = run(30);
    expect(a.losses[a.losses.length - 1]!).toBeLessThan(0.5 * a.losses[0]!);
    expect(a.losses).toEqual(b.losses);
    expect(a.params.equals(b.params)).toBe(true);
  }, 300_000);
});
