import { describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import { Arena, getBackend, type TensorSpec } from "@tinyllama/kernels";
import { AdamW, clipFactor, gradNorm, planRuns } from "@tinyllama/optimizer";
import { mulberry32, randn, relErr } from "@tinyllama/testing";
import { readSafetensors } from "./safetensors.ts";

const fx = readSafetensors(resolve(import.meta.dir, "../../../test/fixtures/adamw.safetensors"));
const get = (k: string) => {
  const t = fx.get(k);
  if (!t) throw new Error(`fixture has no '${k}'`);
  return t;
};
const NAMES = ["embed", "norm", "proj", "head", "final_norm"];
const SPECS: TensorSpec[] = NAMES.map((name) => ({ name, shape: get(`init.${name}`).shape }));
const STEPS = get("lr").data.length;

function setup() {
  const be = getBackend();
  const params = new Arena(be, SPECS), grads = new Arena(be, SPECS);
  for (const n of NAMES) params.get(n).write(get(`init.${n}`).data);
  return { params, grads, opt: new AdamW(params, grads, { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 }) };
}

function loadGrads(grads: Arena, t: number) {
  grads.zero();
  for (const n of NAMES) grads.get(n).write(get(`grad.${t}.${n}`).data);
}

describe("AdamW vs torch.optim.AdamW (test/fixtures/adamw.safetensors)", () => {
  for (const clip of [false, true])
    test(clip ? "with clip_grad_norm_(1.0)" : "without clipping", () => {
      const { params, grads, opt } = setup();
      const maxNorm = get("max_norm").data[0]!;
      let clipped = 0;
      for (let t = 1; t <= STEPS; t++) {
        loadGrads(grads, t);
        let scale = 1;
        if (clip) {
          const norm = gradNorm(grads);
          expect(Math.abs(norm - get("clip.norm").data[t - 1]!) / norm).toBeLessThan(1e-6);
          scale = clipFactor(norm, maxNorm);
          if (scale < 1) clipped++;
        }
        opt.step(get("lr").data[t - 1]!, scale);
        expect(opt.stepCount).toBe(t);
        for (const n of NAMES) expect(relErr(params.get(n).read(), get(`${clip ? "clip" : "noclip"}.${t}.${n}`).data)).toBeLessThan(1e-6);
      }
      if (clip) expect(clipped).toBeGreaterThan(0);
      if (clip) expect(clipped).toBeLessThan(STEPS);
      opt.free();
    });

  test("the 1-D gains really are excluded from weight decay (a decayed gain misses the fixture)", () => {
    const { params, grads } = setup();
    const opt = new AdamW(params, grads, { lr: 1e-3, decay: () => true });
    for (let t = 1; t <= STEPS; t++) {
      loadGrads(grads, t);
      opt.step(get("lr").data[t - 1]!);
    }
    expect(relErr(params.get("norm").read(), get(`noclip.${STEPS}.norm`).data)).toBeGreaterThan(1e-6);
    expect(relErr(params.get("proj").read(), get(`noclip.${STEPS}.proj`).data)).toBeLessThan(1e-6);
  });
});

describe("AdamW runs and state", () => {
  test("adjacent same-decay tensors merge into one run covering their padding", () => {
    const { params } = setup();
    const runs = planRuns(params);
    expect(runs.map((r) => [r.decay, r.names])).toEqual([
      [true, ["embed"]],
      [false, ["norm"]],
      [true, ["proj", "head"]],
      [false, ["final_norm"]],
    ]);
    // contiguous cover of the whole arena
    expect(runs[0]!.start).toBe(0);
    for (let i = 1; i < runs.length; i++) expect(runs[i]!.start).toBe(runs[i - 1]!.end);
    expect(runs[runs.length - 1]!.end * 4).toBe(params.buffer.bytes);
    const custom = planRuns(params, (name) => name !== "head");
    expect(custom.map((r) => r.names)).toEqual([["embed", "norm", "proj"], ["head"], ["final_norm"]]);
  });

  test("padding stays zero and m/v start at zero", () => {
    const { params, grads, opt } = setup();
    expect(opt.state().m.every((x) => x === 0)).toBe(true);
    loadGrads(grads, 1);
    opt.step(1e-3);
    const flat = params.flat().read() as Float32Array;
    const normEnd = params.offsets.get("norm")! / 4 + 24;
    const projStart = params.offsets.get("proj")! / 4;
    expect(projStart).toBeGreaterThan(normEnd); // the fixture layout really has padding here
    for (let i = normEnd; i < projStart; i++) expect(flat[i]).toBe(0);
    expect(opt.stateBytes).toBe(2 * params.buffer.bytes);
  });

  test("state()/loadState() resumes bit-identically", () => {
    const a = setup();
    for (let t = 1; t <= 2; t++) {
      loadGrads(a.grads, t);
      a.opt.step(get("lr").data[t - 1]!);
    }
    const saved = a.opt.state();
    const savedParams = a.params.flat().read() as Float32Array;
    for (let t = 3; t <= STEPS; t++) {
      loadGrads(a.grads, t);
      a.opt.step(get("lr").data[t - 1]!);
    }
    const b = setup();
    b.params.flat().write(savedParams);
    b.opt.loadState(saved);
    expect(b.opt.stepCount).toBe(2);
    for (let t = 3; t <= STEPS; t++) {
      loadGrads(b.grads, t);
      b.opt.step(get("lr").data[t - 1]!);
    }
    expect(Buffer.from((b.params.flat().read() as Float32Array).buffer).equals(Buffer.from((a.params.flat().read() as Float32Array).buffer))).toBe(true);
  });

  test("misuse gives clear errors", () => {
    const be = getBackend();
    const { params, grads, opt } = setup();
    const other = new Arena(be, [...SPECS.slice(0, 4), { name: "final_norm", shape: [25] }]);
    expect(() => new AdamW(params, other, { lr: 1 })).toThrow(/tensor #4 differs: params 'final_norm' \[24\] f32, grads 'final_norm' \[25\]/);
    expect(() => new AdamW(params, new Arena(be, SPECS.slice(1)), { lr: 1 })).toThrow(/params have 5 tensors but grads have 4/);
    expect(() => new AdamW(params, params, { lr: 1 })).toThrow(/same arena/);
    const bf = [{ name: "w", shape: [4, 4], dtype: "bf16" as const }];
    expect(() => new AdamW(new Arena(be, bf), new Arena(be, bf), { lr: 1 })).toThrow(/'w' is bf16; only f32/);
    expect(() => new AdamW(params, grads, { lr: 1, beta1: 1 })).toThrow(/'beta1' must be a finite number in \[0, 1\)/);
    expect(() => new AdamW(params, grads, { lr: -1 })).toThrow(/'lr'/);
    expect(() => opt.step(NaN)).toThrow(/'lr'/);
    expect(() => opt.step(1e-3, Infinity)).toThrow(/gradScale must be finite/);
    expect(opt.stepCount).toBe(0);
    const s = opt.state();
    expect(() => opt.loadState({ ...s, m: s.m.subarray(1) })).toThrow(/'m' has \d+ elements but this optimizer's arena holds \d+/);
    expect(() => opt.loadState({ ...s, v: new Float64Array(s.v.length) as unknown as Float32Array })).toThrow(/'v' must be a Float32Array, got Float64Array/);
    expect(() => opt.loadState({ ...s, step: -1 })).toThrow(/step must be an integer >= 0/);
    expect(() => new AdamW(params, grads, { lr: 1, decay: (() => 1) as unknown as () => boolean })).toThrow(/must return a boolean/);
    opt.free();
    expect(() => opt.step(1e-3)).toThrow(/freed/);
  });
});

describe("gradNorm and clipFactor", () => {
  test("gradNorm equals a float64 norm over every tensor", () => {
    const be = getBackend();
    const specs: TensorSpec[] = [{ name: "a", shape: [300, 301] }, { name: "b", shape: [7] }, { name: "c", shape: [1000, 70] }];
    const grads = new Arena(be, specs);
    let ss = 0;
    const rng = mulberry32(5);
    for (const s of specs) {
      const x = randn(s.shape.reduce((p, d) => p * d, 1), rng);
      for (const v of x) ss += v * v;
      grads.get(s.name).write(x);
    }
    expect(Math.abs(gradNorm(grads) - Math.sqrt(ss)) / Math.sqrt(ss)).toBeLessThan(1e-13);
  });
  test("clipFactor follows clip_grad_norm_", () => {
    expect(clipFactor(0.5, 1)).toBe(1);
    expect(clipFactor(4, 1)).toBe(1 / (4 + 1e-6));
    expect(clipFactor(Infinity, 1)).toBe(0);
    expect(clipFactor(NaN, 1)).toBeNaN();
    expect(() => clipFactor(1, 0)).toThrow(/maxNorm must be a finite number > 0/);
    expect(() => clipFactor(-1, 1)).toThrow(/norm must be >= 0/);
  });
});
