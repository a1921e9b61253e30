/**
 * bf16 mixed precision on the CPU backend (the same TypeScript runs on CUDA, where bf16 is the
 * default): one step against the fp32 step at bf16 tolerance, the bf16 weight copies, and a
 * 50-step AdamW run whose loss curve stays within 2% of the fp32 run (issue 8's test).
 */
import { describe, expect, test } from "bun:test";
import { getPreset, type ModelConfig } from "@tinyllama/config";
import { ShapeError, bf16ToNumber, numberToBf16 } from "@tinyllama/kernels";
import { Model } from "@tinyllama/model";
import { AdamW, clipFactor, gradNorm } from "@tinyllama/optimizer";
import { mulberry32, relErr, syntheticTokens } from "@tinyllama/testing";

function batch(n: number, V: number, seed: number): Int32Array {
  const rng = mulberry32(seed);
  return Int32Array.from({ length: n }, () => Math.floor(rng() * V));
}

/** A small model with every shape the kernels distinguish: GQA, two layers, C != H, V != C. */
const SMALL: ModelConfig = { ...getPreset("micro"), dim: 96, hiddenDim: 256, nHeads: 6, nKvHeads: 2, vocabSize: 384 };

describe("bf16 mixed precision", () => {
  test("fp32 is the default on the CPU; a bad precision is a clear error", () => {
    const m = Model.create(getPreset("micro"), { B: 1, T: 4 });
    try {
      expect(m.precision).toBe("fp32");
      expect(m.paramsBf16).toBeNull();
    } finally {
      m.free();
    }
    expect(() => Model.create(getPreset("micro"), { B: 1, T: 4, precision: "fp16" as "bf16" })).toThrow(/precision must be "fp32" or "bf16", got "fp16"/);
    expect(() => Model.plan(getPreset("micro"), { B: 1, T: 4, precision: "tf32" as "bf16" })).toThrow(ShapeError);
  });

  test("one step: loss and the gradients within 1e-2 of the fp32 step (bf16 tolerance), and not equal to it", () => {
    const B = 2, T = 32;
    const tokens = batch(B * T, SMALL.vocabSize, 1), targets = batch(B * T, SMALL.vocabSize, 2);
    targets[7] = -100;
    const step = (precision: "fp32" | "bf16") => {
      const m = Model.create(SMALL, { B, T, seed: 11, precision });
      try {
        m.zeroGrad();
        const loss = m.forward(tokens, targets);
        m.backward();
        const grads = new Map(m.parameters.map((p) => [p.name, m.grad(p.name).read() as Float32Array]));
        return { loss, grads, all: m.grads!.flat().read() as Float32Array };
      } finally {
        m.free();
      }
    };
    const f = step("fp32"), h = step("bf16");
    expect(Math.abs(h.loss - f.loss) / f.loss).toBeLessThan(1e-2);
    // ‖g_bf16 − g_fp32‖/‖g_fp32‖ over all gradients (measured 8.3e-3)
    expect(relErr(h.all, f.all)).toBeLessThan(1e-2);
    // Per tensor the worst is layer 1's q/k (1.35e-2 measured): at initialisation attention is
    // near uniform and dq/dk are small differences of large terms, which amplify input rounding.
    let worst = 0;
    for (const [name, g] of f.grads) {
      const e = relErr(h.grads.get(name)!, g);
      worst = Math.max(worst, e);
      expect({ name, under2e2: e < 2e-2 }).toEqual({ name, under2e2: true });
    }
    // the bf16 path really ran: rounding shows in the loss and the gradients
    expect(h.loss).not.toBe(f.loss);
    expect(worst).toBeGreaterThan(1e-4);
  }, 120_000);

  test("chunked logits (LM head backward inside forward) give the same bf16 step as the whole buffer", () => {
    const B = 2, T = 16;
    const tokens = batch(B * T, SMALL.vocabSize, 3), targets = batch(B * T, SMALL.vocabSize, 4);
    const run = (logitsChunk?: number) => {
      const m = Model.create(SMALL, { B, T, seed: 5, precision: "bf16", logitsChunk });
      try {
        const loss = m.forward(tokens, targets);
        m.backward();
        return { loss, g: m.grads!.flat().read() as Float32Array };
      } finally {
        m.free();
      }
    };
    const whole = run(), chunked = run(5);
    expect(chunked.loss).toBeCloseTo(whole.loss, 6);
    expect(relErr(chunked.g, whole.g)).toBeLessThan(1e-6);
  }, 120_000);

  test("the bf16 copies follow the masters: initialisation, direct writes, and AdamW steps", () => {
    const B = 1, T = 8;
    const m = Model.create(SMALL, { B, T, seed: 2, precision: "bf16" });
    try {
      const rounded = (x: Float32Array) => Array.from(x, (v) => numberToBf16(v));
      const name = "model.layers.1.mlp.down_proj.weight";
      expect(Array.from(m.paramsBf16!.get(name).read())).toEqual(rounded(m.param(name).read() as Float32Array));
      // a direct write to a master (a checkpoint load) reaches the bf16 copy before the next forward
      const w = m.param(name);
      w.write(new Float32Array(w.numel).fill(0.75));
      const tokens = batch(B * T, SMALL.vocabSize, 6), targets = batch(B * T, SMALL.vocabSize, 7);
      m.forward(tokens, targets);
      expect(bf16ToNumber((m.paramsBf16!.get(name).read() as Uint16Array)[3]!)).toBe(0.75);
      // AdamW finds the copy by itself (Arena.shadow registers it) and refreshes it every step
      const opt = new AdamW(m.params, m.grads!, { lr: 1e-2 });
      try {
        expect(opt.paramsBf16).toBe(m.paramsBf16);
        m.zeroGrad();
        m.forward(tokens, targets);
        m.backward();
        opt.step();
        const all = m.params.flat().read() as Float32Array;
        expect(Array.from(m.paramsBf16!.flat("bf16").read())).toEqual(rounded(all));
        expect((m.param(name).read() as Float32Array)[3]).not.toBe(0.75);
      } finally {
        opt.free();
      }
      // a copy that is not a shadow of these params is rejected before anything is allocated
      const f32 = Model.create(getPreset("micro"), { B, T, precision: "bf16", training: false });
      try {
        expect(() => new AdamW(m.params, m.grads!, { lr: 1e-2, paramsBf16: f32.paramsBf16 })).toThrow(/not a bf16 copy of params/);
      } finally {
        f32.free();
      }
    } finally {
      m.free();
    }
  }, 120_000);

  test("50 AdamW steps: the bf16 loss curve stays within 2% of the fp32 curve", () => {
    const cfg = getPreset("micro");
    const B = 4, T = 32, steps = 50;
    const stream = syntheticTokens(steps * B * (T + 1) + 1);
    const curve = (precision: "fp32" | "bf16") => {
      const m = Model.create(cfg, { B, T, seed: 3, precision });
      const opt = new AdamW(m.params, m.grads!, { lr: 5e-3, weightDecay: 0.1 });
      try {
        const tokens = new Int32Array(B * T), targets = new Int32Array(B * T);
        const losses: number[] = [];
        for (let s = 0; s < steps; s++) {
          for (let b = 0; b < B; b++)
            for (let t = 0; t < T; t++) {
              const i = (s * B + b) * (T + 1) + t;
              tokens[b * T + t] = stream[i]!;
              targets[b * T + t] = stream[i + 1]!;
            }
          m.zeroGrad();
          losses.push(m.forward(tokens, targets));
          m.backward();
          opt.step(5e-3, clipFactor(gradNorm(m.grads!), 1));
        }
        return losses;
      } finally {
        opt.free();
        m.free();
      }
    };
    const f = curve("fp32"), h = curve("bf16");
    expect(f[steps - 1]!).toBeLessThan(0.75 * f[0]!); // it learns: the comparison is not between two flat lines
    // every step's loss within 2% (measured 0.6%; at lr 1e-2 this tiny model turns unstable and
    // both curves wander apart by ~3%, so the lr is part of what this test fixes)
    const worst = Math.max(...f.map((l, i) => Math.abs(h[i]! - l) / l));
    expect(worst).toBeLessThan(0.02);
    expect(h).not.toEqual(f);
  }, 300_000);

});
