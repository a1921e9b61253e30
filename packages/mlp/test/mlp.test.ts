import { describe, expect, test } from "bun:test";
import { Arena, ShapeError, getBackend } from "@tinyllama/kernels";
import { MlpBlock, gaussian, mlpInitStd } from "@tinyllama/mlp";
import { readSafetensors, relErr } from "@tinyllama/testing";
import { join } from "node:path";

const FIXTURES = join(import.meta.dir, "../../../test/fixtures");
const NAMES = ["gate_proj.weight", "up_proj.weight", "down_proj.weight"] as const;

describe("MlpBlock", () => {
  test("forward and backward match the PyTorch fixture (float64 reference)", () => {
    const f = readSafetensors(join(FIXTURES, "mlp_block.safetensors"));
    const get = (n: string) => f.get(n)!.data as Float32Array;
    const [B, T, C] = f.get("x")!.shape as [number, number, number];
    const H = f.get("gate_proj.weight")!.shape[0]!;
    const be = getBackend();
    const mlp = MlpBlock.create(be, { dim: C, hiddenDim: H }, B, T);
    try {
      for (const n of NAMES) mlp.param(n).write(get(n));
      const x = be.fromArray(get("x"), [B, T, C]), out = be.tensor([B, T, C]);
      mlp.forward(out, x);
      expect(relErr(out.read(), get("out"))).toBeLessThan(1e-5);
      const dx = be.tensor([B, T, C]);
      mlp.backward(dx, be.fromArray(get("dout"), [B, T, C]));
      expect(relErr(dx.read(), get("dx"))).toBeLessThan(1e-4);
      for (const n of NAMES) expect(relErr(mlp.grad(n).read(), get(`grad.${n}`))).toBeLessThan(1e-4);
      // backward accumulates: a second call doubles every gradient
      mlp.backward(dx, be.fromArray(get("dout"), [B, T, C]));
      expect(relErr(dx.read(), get("dx").map((v) => 2 * v))).toBeLessThan(1e-4);
      for (const n of NAMES) expect(relErr(mlp.grad(n).read(), get(`grad.${n}`).map((v) => 2 * v))).toBeLessThan(1e-4);
    } finally {
      mlp.free();
    }
  }, 120_000);

  test("create() draws TinyLlama's initialisation, deterministically from the seed", () => {
    const be = getBackend();
    const cfg = { dim: 64, hiddenDim: 176, nLayers: 4 };
    const a = MlpBlock.create(be, cfg, 1, 2, 5), b = MlpBlock.create(be, cfg, 1, 2, 5), c = MlpBlock.create(be, cfg, 1, 2, 6);
    try {
      for (const n of NAMES) {
        const w = a.param(n).read() as Float32Array;
        expect(w).toEqual(b.param(n).read());
        expect(w).not.toEqual(c.param(n).read());
        const std = Math.sqrt(w.reduce((s, v) => s + v * v, 0) / w.length);
        expect(Math.abs(std / mlpInitStd(cfg, n) - 1)).toBeLessThan(0.03);
      }
      expect(mlpInitStd(cfg, "down_proj.weight")).toBeCloseTo(1 / 8 / 4, 12);
      expect(mlpInitStd(cfg, "gate_proj.weight")).toBeCloseTo(Math.sqrt(2 / 320), 12);
    } finally {
      a.free(), b.free(), c.free();
    }
  }, 120_000);

  test("gaussian() is a standard normal (mean, variance, tails)", () => {
    const x = gaussian(200_001, 1, 42);
    let m = 0, v = 0, tail = 0;
    for (const s of x) (m += s), (v += s * s), (tail += Math.abs(s) > 3 ? 1 : 0);
    m /= x.length;
    v = v / x.length - m * m;
    expect(Math.abs(m)).toBeLessThan(0.01);
    expect(Math.abs(v - 1)).toBeLessThan(0.01);
    expect(Math.abs(tail / x.length - 0.0027)).toBeLessThan(0.0006);
  }, 120_000);

  test("misuse is a clear Error", () => {
    const be = getBackend();
    const cfg = { dim: 8, hiddenDim: 12 };
    const mlp = MlpBlock.create(be, cfg, 2, 3);
    try {
      const x = be.tensor([2, 3, 8]), out = be.tensor([2, 3, 8]);
      expect(() => mlp.backward(be.tensor([2, 3, 8]), out)).toThrow(/call forward\(\) before backward\(\)/);
      expect(() => mlp.forward(be.tensor([2, 4, 8]), x)).toThrow(/'out' must have shape \(B, T, C\) = \[2, 3, 8\]/);
      expect(() => mlp.forward(x, x)).toThrow(/overlaps/);
      expect(() => MlpBlock.create(be, { dim: 8, hiddenDim: 0 }, 1, 1)).toThrow(/hiddenDim must be a positive integer/);
      // a block over arenas without gradients cannot train
      const params = new Arena(be, MlpBlock.parameterSpecs(cfg)), acts = new Arena(be, MlpBlock.activationSpecs(cfg, 2, 3));
      const infer = new MlpBlock(cfg, 2, 3, { params: (n) => params.get(n), grads: null, acts: (n) => acts.get(n) });
      infer.forward(out, x);
      expect(() => infer.backward(be.tensor([2, 3, 8]), out)).toThrow(/without gradients/);
      // wrong arena: a tensor of the wrong shape is named
      const wrong = new Arena(be, MlpBlock.activationSpecs({ dim: 8, hiddenDim: 13 }, 2, 3));
      expect(() => new MlpBlock(cfg, 2, 3, { params: (n) => params.get(n), grads: null, acts: (n) => wrong.get(n) })).toThrow(ShapeError);
      params.free(), acts.free(), wrong.free();
    } finally {
      mlp.free();
    }
  }, 120_000);
});
