import { describe, expect, test } from "bun:test";
import { getPreset, type ModelConfig } from "@tinyllama/config";
import { ShapeError, getBackend } from "@tinyllama/kernels";
import { Model, defaultLogitsRows, parameterSpecs, type ModelOptions } from "@tinyllama/model";
import { mulberry32 } from "@tinyllama/testing";

function batch(n: number, V: number, seed: number): Int32Array {
  const rng = mulberry32(seed);
  return Int32Array.from({ length: n }, () => Math.floor(rng() * V));
}

/** One forward + backward of a fresh model: the loss and every gradient's bytes. */
function lossAndGrads(cfg: ModelConfig, opts: ModelOptions, tokens: Int32Array, targets: Int32Array): { loss: number; grads: Buffer } {
  const m = Model.create(cfg, opts);
  try {
    const loss = m.forward(tokens, targets);
    m.backward();
    return { loss, grads: Buffer.from((m.grads!.flat().read() as Float32Array).buffer) };
  } finally {
    m.free();
  }
}

describe("Model training", () => {
  test("50 steps of plain SGD on one micro batch drive the loss below a tenth of its start", () => {
    const cfg = getPreset("micro");
    const B = 4, T = 32;
    const model = Model.create(cfg, { B, T, seed: 3 });
    try {
      // next-token prediction on a fixed random sequence: memorisable, so the loss can go to ~0
      const seq = batch(B * (T + 1), cfg.vocabSize, 9);
      const tokens = new Int32Array(B * T), targets = new Int32Array(B * T);
      for (let b = 0; b < B; b++)
        for (let t = 0; t < T; t++) {
          tokens[b * T + t] = seq[b * (T + 1) + t]!;
          targets[b * T + t] = seq[b * (T + 1) + t + 1]!;
        }
      // plain SGD over the flat arenas (same layout, so element i of one is element i of the other)
      const p = model.params.flat().data() as Float32Array, g = model.grads!.flat().data() as Float32Array;
      const lr = 1;
      const losses: number[] = [];
      for (let step = 0; step < 50; step++) {
        model.zeroGrad();
        losses.push(model.forward(tokens, targets));
        model.backward();
        for (let i = 0; i < p.length; i++) p[i]! -= lr * g[i]!;
      }
      const first = losses[0]!, last = model.forward(tokens, targets);
      expect(first).toBeGreaterThan(0.9 * Math.log(cfg.vocabSize)); // starts near uniform
      expect(last).toBeLessThan(first / 10);
    } finally {
      model.free();
    }
  }, 120_000);

  test("two runs from the same seed are bit-identical (loss and every gradient)", () => {
    const cfg = getPreset("micro");
    const B = 2, T = 24;
    const tokens = batch(B * T, cfg.vocabSize, 1), targets = batch(B * T, cfg.vocabSize, 2);
    targets[5] = -100;
    const run = () => lossAndGrads(cfg, { B, T, seed: 7 }, tokens, targets);
    const a = run(), b = run();
    expect(a.loss).toBe(b.loss);
    expect(a.grads.equals(b.grads)).toBe(true);
    expect(a.grads.some((v) => v !== 0)).toBe(true);
  }, 120_000);

  test("1, 2 and 3 threads give bit-identical loss and gradients (every kernel reduces in a fixed order)", () => {
    // big enough (B*T*C = 32768) that every kernel, rmsnorm and embedding included, runs its threaded path
    const cfg = { ...getPreset("micro"), dim: 128, hiddenDim: 344 };
    const B = 4, T = 64;
    const tokens = batch(B * T, cfg.vocabSize, 3), targets = batch(B * T, cfg.vocabSize, 4);
    const be = getBackend();
    const before = be.threads;
    const out: { loss: number; grads: Buffer }[] = [];
    try {
      for (const th of [1, 2, 3]) {
        be.threads = th;
        out.push(lossAndGrads(cfg, { B, T, seed: 2 }, tokens, targets));
      }
    } finally {
      be.threads = before;
    }
    for (const o of out.slice(1)) {
      expect(o.loss).toBe(out[0]!.loss);
      expect(o.grads.equals(out[0]!.grads)).toBe(true);
    }
  }, 120_000);

  test("logits in chunks of 256 rows (the matmul's K block; the training default is 512) give bit-identical loss and gradients", () => {
    // 512 rows: two chunks. 256 is the CPU matmul's K block, so the LM head's weight gradient adds the
    // same partial sums in the same order either way; this fails if that stops being true.
    const cfg = { ...getPreset("micro"), dim: 96, hiddenDim: 256 };
    const B = 8, T = 64;
    const tokens = batch(B * T, cfg.vocabSize, 5), targets = batch(B * T, cfg.vocabSize, 6);
    targets[300] = -100;
    const run = (logitsChunk: number) => lossAndGrads(cfg, { B, T, seed: 4, logitsChunk }, tokens, targets);
    const whole = run(B * T), chunked = run(256);
    expect(chunked.loss).toBe(whole.loss);
    expect(chunked.grads.equals(whole.grads)).toBe(true);
    expect(whole.grads.some((v) => v !== 0)).toBe(true);
  }, 120_000);

  test("initialisation follows TinyLlama (std per tensor kind, gains 1) and the seed", () => {
    const cfg = { ...getPreset("micro"), nLayers: 3 };
    const a = Model.create(cfg, { B: 1, T: 4, seed: 11, training: false });
    const b = Model.create(cfg, { B: 1, T: 4, seed: 12, training: false });
    try {
      const C = cfg.dim;
      for (const { name, tensor } of a.parameters) {
        const w = tensor.read();
        if (name.endsWith("norm.weight")) {
          expect(w.every((v) => v === 1)).toBe(true);
          continue;
        }
        const want = /(o_proj|down_proj)\.weight$/.test(name) ? 1 / Math.sqrt(C) / 3 : Math.sqrt(2 / (5 * C));
        let s = 0, m = 0;
        for (const v of w) (s += v * v), (m += v);
        const std = Math.sqrt(s / w.length);
        if (Math.abs(std / want - 1) > 0.05) throw new Error(`${name}: std ${std}, want ${want}`);
        expect(Math.abs(m / w.length)).toBeLessThan(0.2 * want);
        expect(w).not.toEqual(b.param(name).read());
      }
    } finally {
      a.free(), b.free();
    }
  }, 120_000);

  test("the 1.1B layout has TinyLlama's 1,100,048,384 parameters in HF order (no allocation)", () => {
    const specs = parameterSpecs(getPreset("tinyllama-1.1b"));
    expect(specs.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0)).toBe(1_100_048_384);
    expect(specs.slice(0, 3).map((s) => s.name)).toEqual(["model.embed_tokens.weight", "model.layers.0.input_layernorm.weight", "model.layers.0.self_attn.q_proj.weight"]);
    expect(specs.slice(-2).map((s) => s.name)).toEqual(["model.norm.weight", "lm_head.weight"]);
  }, 120_000);

  test("Model.plan sizes the arenas without allocating (and agrees with create)", () => {
    const cfg = getPreset("micro");
    const plan = Model.plan(cfg, { B: 2, T: 16 });
    const m = Model.create(cfg, { B: 2, T: 16 });
    try {
      expect(plan).toEqual({ params: m.params.buffer.bytes, paramsBf16: 0, grads: m.grads!.buffer.bytes, acts: m.acts.buffer.bytes, logitsRows: 32, precision: "fp32" });
    } finally {
      m.free();
    }
    // bf16: a half-size copy of the parameter arena, and the bf16 activations
    const planB = Model.plan(cfg, { B: 2, T: 16, precision: "bf16" });
    const mb = Model.create(cfg, { B: 2, T: 16, precision: "bf16" });
    try {
      expect(planB).toEqual({ params: mb.params.buffer.bytes, paramsBf16: mb.paramsBf16!.buffer.bytes, grads: mb.grads!.buffer.bytes, acts: mb.acts.buffer.bytes, logitsRows: 32, precision: "bf16" });
      expect(planB.paramsBf16).toBe(planB.params / 2);
      expect(planB.acts).toBeGreaterThan(plan.acts);
    } finally {
      mb.free();
    }
    // 1.1B at B=8, T=2048: the (16384, 32000) logits would be 2 GiB, so they are chunked by default
    const big = Model.plan(getPreset("tinyllama-1.1b"), { B: 8, T: 2048 });
    expect(big.params).toBeGreaterThanOrEqual(4 * 1_100_048_384);
    expect(big.logitsRows).toBe(512); // training: 512-row chunks (62.5 MiB at V = 32000)
    // on CUDA: 4096-row chunks once the logits pass 1 GiB (the LM head's dweight GEMM wants a long K); 15M stays whole
    expect(defaultLogitsRows(getPreset("tinyllama-1.1b"), 8, 2048, true, "cuda")).toBe(4096);
    expect(defaultLogitsRows(getPreset("tinyllama-15m"), 8, 256, true, "cuda")).toBe(2048);
    expect(Model.plan(getPreset("tinyllama-1.1b"), { B: 8, T: 2048, training: false }).logitsRows).toBe(Math.floor((256 << 20) / (32000 * 4)));
    // 15M at B=8, T=256: 250 MiB of logits is chunked when training, kept whole for inference
    expect(Model.plan(getPreset("tinyllama-15m"), { B: 8, T: 256 }).logitsRows).toBe(512);
    expect(Model.plan(getPreset("tinyllama-15m"), { B: 8, T: 256, training: false }).logitsRows).toBe(2048);
    expect(Model.plan(getPreset("tinyllama-15m"), { B: 8, T: 256, logitsChunk: 2048 }).logitsRows).toBe(2048);
    expect(Model.plan(getPreset("tinyllama-1.1b"), { B: 1, T: 2048, training: false }).grads).toBe(0);
  }, 120_000);

  test("a batch whose targets are all ignored has loss 0 and zero gradients", () => {
    const cfg = getPreset("micro");
    const m = Model.create(cfg, { B: 1, T: 6 });
    try {
      expect(m.forward(batch(6, cfg.vocabSize, 1), new Int32Array(6).fill(-100))).toBe(0);
      expect(m.counted).toBe(0);
      m.backward();
      expect(m.grads!.flat().read().every((v) => v === 0)).toBe(true);
    } finally {
      m.free();
    }
  }, 120_000);

  test("gradients accumulate across backward calls; zeroGrad resets them", () => {
    const cfg = getPreset("micro");
    const m = Model.create(cfg, { B: 1, T: 8 });
    try {
      const tok = batch(8, cfg.vocabSize, 4), tgt = batch(8, cfg.vocabSize, 5);
      m.forward(tok, tgt);
      m.backward();
      const once = m.grad("model.layers.1.mlp.up_proj.weight").read();
      m.forward(tok, tgt);
      m.backward();
      const twice = m.grad("model.layers.1.mlp.up_proj.weight").read();
      for (let i = 0; i < once.length; i += 97) expect(twice[i]).toBeCloseTo(2 * once[i]!, 6);
      m.zeroGrad();
      expect(m.grads!.flat().read().every((v) => v === 0)).toBe(true);
    } finally {
      m.free();
    }
  }, 120_000);
});

describe("Model misuse is a clear Error, never a crash", () => {
  const cfg = getPreset("micro");
  const B = 2, T = 8;

  test("token and target ids out of range name the id and its position", () => {
    const m = Model.create(cfg, { B, T });
    try {
      const tok = batch(B * T, cfg.vocabSize, 1);
      tok[11] = cfg.vocabSize;
      expect(() => m.forward(tok)).toThrow(/tokens\[1, 3\] = 512 is outside the vocabulary \[0, 512\)/);
      tok[11] = -1;
      expect(() => m.forward(tok)).toThrow(/tokens\[1, 3\] = -1/);
      tok[11] = 0;
      const tgt = batch(B * T, cfg.vocabSize, 2);
      tgt[2] = -5;
      expect(() => m.forward(tok, tgt)).toThrow(/targets\[0, 2\] = -5 .* not the ignore index -100/);
      tgt[2] = -100; // the ignore index is fine
      expect(Number.isFinite(m.forward(tok, tgt))).toBe(true);
    } finally {
      m.free();
    }
  }, 120_000);

  test("T above maxSeqLen, bad B/T, tied embeddings are rejected at create", () => {
    expect(() => Model.create(cfg, { B: 1, T: cfg.maxSeqLen + 1 })).toThrow(/T=65 exceeds the config's maxSeqLen=64/);
    expect(() => Model.create(cfg, { B: 0, T: 4 })).toThrow(/B must be a positive integer/);
    expect(() => Model.create(cfg, { B: 1, T: 2.5 })).toThrow(/T must be a positive integer/);
    expect(() => Model.create({ ...cfg, tieEmbeddings: true }, { B: 1, T: 4 })).toThrow(/tied embeddings/);
    expect(() => Model.create({ ...cfg, nHeads: 5 }, { B: 1, T: 4 })).toThrow(/nHeads/);
  }, 120_000);

  test("batch shapes that disagree with each other or with the model's (B, T)", () => {
    const be = getBackend();
    const m = Model.create(cfg, { B, T });
    try {
      const tok = batch(B * T, cfg.vocabSize, 1);
      expect(() => m.forward(tok.subarray(0, 15))).toThrow(/15 ids but this model was created for B\*T = 2\*8 = 16/);
      expect(() => m.forward(tok, batch(B * T + 1, cfg.vocabSize, 1))).toThrow(/targets has 17 ids/);
      expect(() => m.forward(be.fromArray(tok, [B * T]))).toThrow(/tokens \[16\] does not match the model's batch shape \(B, T\) = \[2, 8\]/);
      expect(() => m.forward(be.fromArray(tok, [4, 4]))).toThrow(/\[4, 4\] does not match/);
      expect(() => m.forward(be.fromArray(new Float32Array(16), [2, 8]))).toThrow(/must be an i32 tensor/);
      // an i32 tensor of the right shape works like the Int32Array
      const t1 = m.forward(be.fromArray(tok, [B, T]), be.fromArray(tok, [B, T]));
      expect(m.forward(tok, tok)).toBe(t1);
    } finally {
      m.free();
    }
  }, 120_000);

  test("backward without a forward with targets; use after free", () => {
    const m = Model.create(cfg, { B, T });
    const tok = batch(B * T, cfg.vocabSize, 1);
    expect(() => m.backward()).toThrow(/call forward\(tokens, targets\) first/);
    m.forward(tok);
    expect(() => m.backward()).toThrow(/call forward\(tokens, targets\) first/);
    expect(m.logits().shape).toEqual([B, T, cfg.vocabSize]);
    m.forward(tok, tok);
    expect(() => m.logits()).toThrow(/no logits to read/);
    // a rejected forward invalidates nothing it did not touch, but never leaves a stale backward
    const bad = tok.slice();
    bad[0] = 99999;
    expect(() => m.forward(bad, tok)).toThrow(ShapeError);
    m.backward(); // the previous valid forward is still the one backward uses
    expect(() => m.param("nope")).toThrow(/no parameter 'nope'/);
    m.free();
    expect(() => m.forward(tok, tok)).toThrow(/freed/);
    expect(() => m.backward()).toThrow(/freed/);
    expect(() => m.param("lm_head.weight")).toThrow(/freed/);
    m.free(); // idempotent
  }, 120_000);
});
