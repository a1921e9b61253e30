import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromHfConfig, parameterShapes } from "@tinyllama/config";
import { bf16ToF32, CheckpointError, f32ToBf16, loadHfCheckpoint, readSafetensors, saveHfCheckpoint, writeSafetensors } from "../src/index.ts";

const FIX = join(import.meta.dir, "../../../test/fixtures");
const tmp = mkdtempSync(join(tmpdir(), "ckpt-hf-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const bytes = (p: string): Uint8Array => new Uint8Array(readFileSync(p));
let n = 0;
const freshDir = (): string => {
  const d = join(tmp, `d${n++}`);
  mkdirSync(d);
  return d;
};

describe("loadHfCheckpoint", () => {
  const f32 = loadHfCheckpoint(join(FIX, "ckpt_hf_f32"));
  test("reads config.json through fromHfConfig and every weight in parameterShapes order", () => {
    expect(f32.config).toMatchObject({ vocabSize: 64, dim: 16, hiddenDim: 40, nLayers: 2, nHeads: 4, nKvHeads: 2, tieEmbeddings: false, bosId: 1, eosId: 2 });
    expect(f32.dtype).toBe("float32");
    expect([...f32.tensors.keys()]).toEqual(parameterShapes(f32.config).map((p) => p.name));
    const raw = readSafetensors(join(FIX, "ckpt_hf_f32/model.safetensors"));
    for (const [name, t] of f32.tensors) expect(t).toEqual(raw.get(name)!.data as Float32Array);
  });
  test("bf16 directory: dtype bfloat16, values are PyTorch's bf16 of the f32 weights, widened exactly", () => {
    const bf = loadHfCheckpoint(join(FIX, "ckpt_hf_bf16"));
    expect(bf.dtype).toBe("bfloat16");
    for (const [name, t] of bf.tensors) expect(t).toEqual(bf16ToF32(f32ToBf16(f32.tensors.get(name)!)));
  });
  test("sharded directory (model.safetensors.index.json) loads the same weights", () => {
    const sh = loadHfCheckpoint(join(FIX, "ckpt_hf_sharded"));
    expect([...sh.tensors.keys()]).toEqual([...f32.tensors.keys()]);
    for (const [name, t] of sh.tensors) expect(t).toEqual(f32.tensors.get(name)!);
  });

  // A copy of the f32 fixture whose model.safetensors we rewrite to break it in one way.
  const broken = (edit: (tensors: { name: string; shape: readonly number[]; data: Float32Array }[]) => void): string => {
    const d = freshDir();
    copyFileSync(join(FIX, "ckpt_hf_f32/config.json"), join(d, "config.json"));
    const tensors = readSafetensors(join(FIX, "ckpt_hf_f32/model.safetensors")).tensors.map((t) => ({ name: t.name, shape: t.shape, data: t.toFloat32() }));
    edit(tensors);
    writeSafetensors(join(d, "model.safetensors"), tensors);
    return d;
  };
  test("a shape mismatch names the tensor, the expected and the found shape", () => {
    const d = broken((ts) => {
      const i = ts.findIndex((t) => t.name === "model.layers.1.self_attn.k_proj.weight");
      ts[i] = { name: ts[i]!.name, shape: [16, 16], data: new Float32Array(256) };
    });
    expect(() => loadHfCheckpoint(d)).toThrow(new CheckpointError(
      `${d}: weights do not match config.json (V=64 C=16 H=40 L=2 NH=4 NKV=2):\n  model.layers.1.self_attn.k_proj.weight: expected shape [8, 16] from config.json, found [16, 16]`,
    ));
  });
  test("missing and unexpected tensors are listed together in one error", () => {
    const d = broken((ts) => {
      ts.splice(ts.findIndex((t) => t.name === "lm_head.weight"), 1);
      ts.splice(ts.findIndex((t) => t.name === "model.layers.0.mlp.up_proj.weight"), 1);
      ts.push({ name: "model.layers.2.mlp.up_proj.weight", shape: [1], data: new Float32Array(1) });
    });
    expect(() => loadHfCheckpoint(d)).toThrow(
      /missing tensors \(2\): model\.layers\.0\.mlp\.up_proj\.weight, lm_head\.weight\n  unexpected tensors \(1\): model\.layers\.2\.mlp\.up_proj\.weight$/,
    );
  });
  test("rotary_emb.inv_freq buffers are ignored, as Hugging Face does", () => {
    const d = broken((ts) => ts.push({ name: "model.layers.0.self_attn.rotary_emb.inv_freq", shape: [2], data: new Float32Array(2) }));
    expect([...loadHfCheckpoint(d).tensors.keys()]).toEqual([...f32.tensors.keys()]);
  });
  test("a missing directory, config or weights file says which", () => {
    expect(() => loadHfCheckpoint(join(tmp, "nope"))).toThrow(/nope: not a directory/);
    const d = freshDir();
    expect(() => loadHfCheckpoint(d)).toThrow(/config\.json: cannot read/);
    copyFileSync(join(FIX, "ckpt_hf_f32/config.json"), join(d, "config.json"));
    expect(() => loadHfCheckpoint(d)).toThrow(/no model\.safetensors or model\.safetensors\.index\.json/);
  });
});

describe("saveHfCheckpoint", () => {
  for (const [fixture, dtype] of [["ckpt_hf_f32", "float32"], ["ckpt_hf_bf16", "bfloat16"], ["ckpt_hf_sharded", "float32"]] as const) {
    test(`${fixture}: saved as ${dtype}, model.safetensors is byte-identical to the PyTorch-written file`, () => {
      const ck = loadHfCheckpoint(join(FIX, fixture));
      const d = freshDir();
      saveHfCheckpoint(d, { config: ck.config, tensors: ck.tensors, dtype });
      const ref = fixture === "ckpt_hf_sharded" ? "ckpt_hf_f32" : fixture;
      expect(bytes(join(d, "model.safetensors"))).toEqual(bytes(join(FIX, ref, "model.safetensors")));
    });
  }
  test("writes config.json (toHfConfig, torch_dtype), generation_config.json and copies tokenizer files", () => {
    const ck = loadHfCheckpoint(join(FIX, "ckpt_hf_f32"));
    const d = freshDir();
    const tokFile = join(tmp, "tokenizer.json");
    writeFileSync(tokFile, '{"model":{}}');
    saveHfCheckpoint(d, { config: ck.config, tensors: ck.tensors, dtype: "bfloat16", tokenizerFiles: [tokFile] });
    const cfg = JSON.parse(readFileSync(join(d, "config.json"), "utf8")) as Record<string, unknown>;
    expect(cfg.torch_dtype).toBe("bfloat16");
    expect(fromHfConfig(cfg)).toEqual(ck.config);
    expect(JSON.parse(readFileSync(join(d, "generation_config.json"), "utf8"))).toEqual({ _from_model_config: true, bos_token_id: 1, eos_token_id: 2 });
    expect(readFileSync(join(d, "tokenizer.json"), "utf8")).toBe('{"model":{}}');
    const back = loadHfCheckpoint(d);
    expect(back.dtype).toBe("bfloat16");
    for (const [name, t] of back.tensors) expect(t).toEqual(bf16ToF32(f32ToBf16(ck.tensors.get(name)!)));
    expect(bytes(join(d, "model.safetensors"))).toEqual(bytes(join(FIX, "ckpt_hf_bf16/model.safetensors")));
  });
  test("refuses tensors that do not match the config, listing every problem, and writes nothing", () => {
    const ck = loadHfCheckpoint(join(FIX, "ckpt_hf_f32"));
    const tensors = new Map(ck.tensors);
    tensors.delete("model.norm.weight");
    tensors.set("model.layers.0.input_layernorm.weight", new Float32Array(3));
    tensors.set("extra.weight", new Float32Array(1));
    const d = freshDir();
    expect(() => saveHfCheckpoint(d, { config: ck.config, tensors })).toThrow(
      /missing tensors \(1\): model\.norm\.weight\n  unexpected tensors \(1\): extra\.weight\n  model\.layers\.0\.input_layernorm\.weight: expected 16 values for shape \[16\], got 3/,
    );
    expect(() => readFileSync(join(d, "config.json"))).toThrow();
  });
});
