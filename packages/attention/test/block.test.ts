import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { resolve } from "node:path";
import { AttentionBlock, createRope, freeRope, PARAM_NAMES, type AttentionConfig } from "@tinyllama/attention";
import { Arena, getBackend, ShapeError, type TensorSpec } from "@tinyllama/kernels";
import { mulberry32, randn, readSafetensors, relErr, type FixtureTensor } from "@tinyllama/testing";

// The first test may compile the kernel library: far beyond bun's 5 s default on a busy machine.
setDefaultTimeout(300_000);

const FIXTURES = resolve(import.meta.dir, "../../../test/fixtures");

function loadFixture(name: string) {
  const f = readSafetensors(`${FIXTURES}/attention_${name}.safetensors`);
  const get = (n: string): FixtureTensor => {
    const t = f.get(n);
    if (!t) throw new Error(`fixture attention_${name} has no tensor '${n}'`);
    return t;
  };
  const [B, T, C] = get("x").shape as [number, number, number];
  const [, , NH, HD] = get("att").shape as [number, number, number, number];
  const NKV = get("k_proj.weight").shape[0]! / HD;
  return { get, B, T, C, NH, NKV, HD };
}

describe("AttentionBlock vs PyTorch fixtures", () => {
  for (const [name, maxSeqLen, ropeTheta] of [["gqa", 80, 10000], ["mha", 40, 1e6]] as const) {
    test(`${name}: forward < 1e-5, gradients < 1e-4`, () => {
      const be = getBackend();
      const fx = loadFixture(name);
      const cfg: AttentionConfig = { dim: fx.C, nHeads: fx.NH, nKvHeads: fx.NKV, maxSeqLen, ropeTheta };
      const blk = AttentionBlock.create(be, cfg, fx.B, fx.T, 1, (s: TensorSpec) => fx.get(s.name).data as Float32Array);
      const x = be.fromArray(fx.get("x").data as Float32Array, [fx.B, fx.T, fx.C]);
      const out = be.tensor([fx.B, fx.T, fx.C]);
      blk.forward(out, x);
      expect(relErr(out.read(), fx.get("out").data)).toBeLessThan(1e-5);
      expect(relErr(blk.act("att").read(), fx.get("att").data)).toBeLessThan(1e-5);
      expect(relErr(blk.act("lse").read(), fx.get("lse").data)).toBeLessThan(1e-5);
      // gradients accumulate: start dx and the weight grads from 1 and subtract it afterwards
      const dx = be.fromArray(new Float32Array(x.numel).fill(1), x.shape);
      for (const p of PARAM_NAMES) blk.grad(p).write(new Float32Array(blk.grad(p).numel).fill(1));
      blk.backward(dx, be.fromArray(fx.get("dout").data as Float32Array, out.shape));
      expect(relErr(dx.read().map((v) => v - 1), fx.get("dx").data)).toBeLessThan(1e-4);
      for (const p of PARAM_NAMES) expect(relErr(blk.grad(p).read().map((v) => v - 1), fx.get(`grad.${p}`).data)).toBeLessThan(1e-4);
      blk.free();
    });
  }
});

const CFG: AttentionConfig = { dim: 48, nHeads: 6, nKvHeads: 2, maxSeqLen: 128, ropeTheta: 10000 };

describe("AttentionBlock", () => {
  test("causal: changing a future token leaves earlier outputs bit-identical", () => {
    const be = getBackend();
    const B = 2, T = 100, C = CFG.dim, t0 = 77;
    const blk = AttentionBlock.create(be, CFG, B, T, 5);
    const xs = randn(B * T * C, mulberry32(1), 1);
    const out = be.tensor([B, T, C]), x = be.fromArray(xs, [B, T, C]);
    blk.forward(out, x);
    const a = out.read();
    for (let b = 0; b < B; b++) for (let i = t0 * C; i < T * C; i++) xs[b * T * C + i] = -xs[b * T * C + i]! * 2;
    x.write(xs);
    blk.forward(out, x);
    const c = out.read();
    for (let b = 0; b < B; b++) {
      const lo = b * T * C, mid = lo + t0 * C, hi = lo + T * C;
      expect(c.subarray(lo, mid)).toEqual(a.subarray(lo, mid));
      expect(relErr(c.subarray(mid, hi), a.subarray(mid, hi))).toBeGreaterThan(1e-2);
    }
    blk.free();
  });

  test("works over a model's arenas (prefixed names, shared scratch and rope) exactly like standalone", () => {
    const be = getBackend();
    const B = 1, T = 70, C = CFG.dim, L = 2;
    const std = AttentionBlock.create(be, CFG, B, T, 9);
    // a "model" with two layers: one parameter arena, one saved-activation arena, one shared scratch, one rope
    const pspecs = AttentionBlock.parameterSpecs(CFG);
    const prefixed = (l: number, specs: TensorSpec[]) => specs.map((s) => ({ ...s, name: `layers.${l}.self_attn.${s.name}` }));
    const params = new Arena(be, [0, 1].flatMap((l) => prefixed(l, pspecs)));
    const grads = new Arena(be, [0, 1].flatMap((l) => prefixed(l, pspecs)));
    const saved = new Arena(be, [0, 1].flatMap((l) => prefixed(l, AttentionBlock.savedSpecs(CFG, B, T))));
    const scratch = new Arena(be, AttentionBlock.scratchSpecs(CFG, B, T));
    const rope = createRope(be, CFG);
    const scratchNames = new Set(AttentionBlock.scratchSpecs(CFG, B, T).map((s) => s.name));
    const layers = [0, 1].map((l) => {
      const pre = `layers.${l}.self_attn.`;
      return new AttentionBlock(CFG, B, T, {
        params: (n) => params.get(pre + n),
        grads: (n) => grads.get(pre + n),
        acts: (n) => (scratchNames.has(n) ? scratch.get(n) : saved.get(pre + n)),
        rope,
      });
    });
    for (let l = 0; l < L; l++) for (const p of PARAM_NAMES) layers[l]!.param(p).write(std.param(p).read());
    const x = be.fromArray(randn(B * T * C, mulberry32(2)), [B, T, C]), dout = be.fromArray(randn(B * T * C, mulberry32(3)), [B, T, C]);
    const o0 = be.tensor([B, T, C]), o1 = be.tensor([B, T, C]), oS = be.tensor([B, T, C]);
    layers[0]!.forward(o0, x);
    layers[1]!.forward(o1, x);
    std.forward(oS, x);
    const dx0 = be.tensor([B, T, C]), dx1 = be.tensor([B, T, C]), dxS = be.tensor([B, T, C]);
    layers[1]!.backward(dx1, dout);
    layers[0]!.backward(dx0, dout); // layer 0's saved activations survived layer 1's use of the shared scratch
    std.backward(dxS, dout);
    expect(o0.read()).toEqual(oS.read());
    expect(o1.read()).toEqual(oS.read());
    expect(dx0.read()).toEqual(dxS.read());
    expect(dx1.read()).toEqual(dxS.read());
    for (const p of PARAM_NAMES) {
      expect(layers[0]!.grad(p).read()).toEqual(std.grad(p).read());
      expect(layers[1]!.grad(p).read()).toEqual(std.grad(p).read());
    }
    for (const a of [params, grads, saved, scratch]) a.free();
    freeRope(rope);
    std.free();
  });

  test("misuse throws a ShapeError, never crashes", () => {
    const be = getBackend();
    const B = 1, T = 8, C = CFG.dim;
    expect(() => AttentionBlock.parameterSpecs({ ...CFG, nKvHeads: 4 })).toThrow(/nHeads=6 must be a multiple of nKvHeads=4/);
    expect(() => AttentionBlock.parameterSpecs({ ...CFG, dim: 50 })).toThrow(/multiple of nHeads/);
    expect(() => AttentionBlock.parameterSpecs({ ...CFG, dim: 42 })).toThrow(/even/);
    expect(() => AttentionBlock.create(be, CFG, B, 129)).toThrow(/maxSeqLen/);
    expect(() => AttentionBlock.create(be, CFG, 0, T)).toThrow(ShapeError);
    const blk = AttentionBlock.create(be, CFG, B, T);
    const x = be.tensor([B, T, C]), out = be.tensor([B, T, C]);
    expect(() => blk.backward(be.tensor([B, T, C]), out)).toThrow(/forward\(\) before backward/);
    expect(() => blk.forward(out, be.tensor([B, T + 1, C]))).toThrow(/AttentionBlock.forward: 'x' must have shape \(B, T, C\) = \[1, 8, 48\], got \[1, 9, 48\]/);
    expect(() => blk.forward(be.tensor([B, T, C + 1]), x)).toThrow(/'out'/);
    expect(() => blk.forward(x, x)).toThrow(/overlaps/);
    expect(() => blk.forward(out, be.tensor([B, T, C], "i32"))).toThrow(/f32/);
    blk.forward(out, x);
    expect(() => blk.backward(be.tensor([B, T, C]), be.tensor([B, T, 1]))).toThrow(/'dout'/);
    // model-side misuse: a lookup with the wrong shape, a missing name, no gradients
    const acts = new Arena(be, AttentionBlock.activationSpecs(CFG, B, T));
    const params = new Arena(be, AttentionBlock.parameterSpecs(CFG));
    const wrongAct = new Arena(be, AttentionBlock.activationSpecs(CFG, B, T + 1));
    expect(() => new AttentionBlock(CFG, B, T, { params: (n) => params.get(n), grads: null, acts: (n) => wrongAct.get(n), rope: blk.rope })).toThrow(
      /acts\('q'\) must have shape \[1, 8, 6, 8\], got \[1, 9, 6, 8\]/,
    );
    expect(() => new AttentionBlock(CFG, B, T, { params: (n) => params.get("x" + n), grads: null, acts: (n) => acts.get(n), rope: blk.rope })).toThrow(/no tensor named/);
    expect(() => new AttentionBlock({ ...CFG, maxSeqLen: 64 }, B, T, { params: (n) => params.get(n), grads: null, acts: (n) => acts.get(n), rope: blk.rope })).toThrow(/rope.cos/);
    const inf = new AttentionBlock(CFG, B, T, { params: (n) => params.get(n), grads: null, acts: (n) => acts.get(n), rope: blk.rope });
    inf.forward(out, x);
    expect(() => inf.backward(be.tensor([B, T, C]), out)).toThrow(/without gradients/);
    // inference-only blocks need no backward scratch; training blocks do
    const savedOnly = new Arena(be, AttentionBlock.savedSpecs(CFG, B, T));
    expect(() => new AttentionBlock(CFG, B, T, { params: (n) => params.get(n), grads: null, acts: (n) => savedOnly.get(n), rope: blk.rope })).not.toThrow();
    expect(() => new AttentionBlock(CFG, B, T, { params: (n) => params.get(n), grads: (n) => params.get(n), acts: (n) => savedOnly.get(n), rope: blk.rope })).toThrow(/acts\('datt'\)/);
    savedOnly.free();
    // freed memory
    acts.free();
    expect(() => inf.forward(out, x)).toThrow(/freed/);
    blk.free();
    expect(() => blk.forward(out, x)).toThrow(/freed/);
    expect(() => blk.backward(be.tensor([B, T, C]), out)).toThrow(/freed/);
    params.free();
    wrongAct.free();
  });
});
