import { describe, expect, test } from "bun:test";
import type { ModelConfig } from "@tinyllama/config";
import { openBackend, type Backend } from "@tinyllama/kernels";
import { Model } from "@tinyllama/model";
import { readSafetensors, relErr, type FixtureTensor } from "@tinyllama/testing";
import { join } from "node:path";
import { readFileSync } from "node:fs";

const FIXTURES = join(import.meta.dir, "../../../test/fixtures");

function load(name: string) {
  const path = join(FIXTURES, `model_${name}.safetensors`);
  const f = readSafetensors(path);
  // the config and batch shape travel in the safetensors metadata
  const n = Number(new DataView(readFileSync(path).buffer).getBigUint64(0, true));
  const meta = JSON.parse(readFileSync(path).subarray(8, 8 + n).toString())["__metadata__"] as Record<string, string>;
  const cfg = JSON.parse(meta.config!) as ModelConfig;
  const B = Number(meta.B), T = Number(meta.T);
  const get = (k: string): FixtureTensor => {
    const t = f.get(k);
    if (!t) throw new Error(`fixture ${name} has no '${k}'`);
    return t;
  };
  return { cfg, B, T, get };
}

function loaded(name: string, opts: { training?: boolean; logitsChunk?: number; backend?: Backend } = {}) {
  const fx = load(name);
  const model = Model.create(fx.cfg, { B: fx.B, T: fx.T, init: false, ...opts });
  for (const { name: pname, tensor } of model.parameters) tensor.write(fx.get(pname).data);
  return { fx, model };
}

describe("Model matches the PyTorch reference (tools/reference/model_fixtures.py)", () => {
  for (const name of ["gqa", "ragged"]) {
    test(`${name}: logits, loss and every parameter gradient`, () => {
      const { fx, model } = loaded(name);
      try {
        const tokens = fx.get("tokens").data as Int32Array, targets = fx.get("targets").data as Int32Array;
        model.forward(tokens);
        expect(relErr(model.logits().read(), fx.get("logits").data)).toBeLessThan(1e-5);
        model.zeroGrad();
        const loss = model.forward(tokens, targets);
        expect(Math.abs(loss - fx.get("loss").data[0]!) / fx.get("loss").data[0]!).toBeLessThan(1e-5);
        model.backward();
        expect(model.parameters.length).toBe(2 + 9 * fx.cfg.nLayers + 1);
        for (const { name: pname } of model.parameters) {
          const err = relErr(model.grad(pname).read(), fx.get(`grad.${pname}`).data);
          if (!(err < 1e-4)) throw new Error(`gradient of ${pname}: relative error ${err}`);
        }
      } finally {
        model.free();
      }
    }, 120_000);
  }

  test("the portable (x86-64, no AVX-512) kernel build matches too", () => {
    const { fx, model } = loaded("gqa", { backend: openBackend({ device: "cpu", arch: "x86-64" }) });
    try {
      const tokens = fx.get("tokens").data as Int32Array, targets = fx.get("targets").data as Int32Array;
      model.forward(tokens);
      expect(relErr(model.logits().read(), fx.get("logits").data)).toBeLessThan(1e-5);
      const loss = model.forward(tokens, targets);
      expect(Math.abs(loss - fx.get("loss").data[0]!) / fx.get("loss").data[0]!).toBeLessThan(1e-5);
      model.backward();
      for (const { name: pname } of model.parameters)
        expect(relErr(model.grad(pname).read(), fx.get(`grad.${pname}`).data)).toBeLessThan(1e-4);
    } finally {
      model.free();
    }
  }, 300_000);

  test("chunked logits (5 rows at a time) give the same loss and gradients", () => {
    const { fx, model } = loaded("ragged", { logitsChunk: 5 });
    try {
      const loss = model.forward(fx.get("tokens").data as Int32Array, fx.get("targets").data as Int32Array);
      expect(Math.abs(loss - fx.get("loss").data[0]!) / fx.get("loss").data[0]!).toBeLessThan(1e-5);
      model.backward();
      for (const { name: pname } of model.parameters)
        expect(relErr(model.grad(pname).read(), fx.get(`grad.${pname}`).data)).toBeLessThan(1e-4);
      expect(() => model.logits()).toThrow(/no logits/);
      expect(() => model.forward(fx.get("tokens").data as Int32Array)).toThrow(/logitsChunk/);
    } finally {
      model.free();
    }
    const infer = loaded("ragged", { logitsChunk: 4, training: false }).model;
    try {
      const loss = infer.forward(load("ragged").get("tokens").data as Int32Array, load("ragged").get("targets").data as Int32Array);
      expect(Math.abs(loss - load("ragged").get("loss").data[0]!) / loss).toBeLessThan(1e-5);
      // inference models carry no backward scratch (dln; dres and the blocks' scratch would be in the pool)
      expect(infer.acts.has("scratch.dln")).toBe(false);
      const shape = { B: infer.B, T: infer.T, logitsChunk: 4 };
      expect(Model.plan(infer.cfg, { ...shape, training: false }).acts).toBeLessThan(Model.plan(infer.cfg, shape).acts);
    } finally {
      infer.free();
    }
  }, 120_000);

  test("an inference model (training: false) gives loss and logits together", () => {
    const { fx, model } = loaded("gqa", { training: false });
    try {
      const loss = model.forward(fx.get("tokens").data as Int32Array, fx.get("targets").data as Int32Array);
      expect(Math.abs(loss - fx.get("loss").data[0]!) / fx.get("loss").data[0]!).toBeLessThan(1e-5);
      expect(relErr(model.logits().read(), fx.get("logits").data)).toBeLessThan(1e-5);
      expect(model.grads).toBeNull();
      expect(() => model.backward()).toThrow(/training: false/);
    } finally {
      model.free();
    }
  }, 120_000);
});
