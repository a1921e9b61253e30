import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadHfCheckpoint, readGguf } from "../src/index.ts";

const ROOT = join(import.meta.dir, "../../..");
const FIX = join(ROOT, "test/fixtures");
const tmp = mkdtempSync(join(tmpdir(), "ckpt-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function convert(...args: string[]): { code: number; out: string; err: string } {
  const p = Bun.spawnSync([process.execPath, join(ROOT, "tools/convert.ts"), ...args], { cwd: ROOT });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

describe("bun run convert", () => {
  test("--to hf --dtype bf16 writes a directory whose weights are byte-identical to PyTorch's bf16 file", () => {
    const out = join(tmp, "hf");
    const r = convert("--model", join(FIX, "ckpt_hf_f32"), "--to", "hf", "--dtype", "bf16", "--out", out);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/wrote .*model\.safetensors \(Hugging Face bfloat16/);
    expect(new Uint8Array(readFileSync(join(out, "model.safetensors")))).toEqual(new Uint8Array(readFileSync(join(FIX, "ckpt_hf_bf16/model.safetensors"))));
    expect(loadHfCheckpoint(out).dtype).toBe("bfloat16");
  });
  test("--to gguf --dtype f16 writes a llama GGUF with the directory's vocabulary", () => {
    const out = join(tmp, "m.gguf");
    const r = convert("--model", join(FIX, "ckpt_gguf_tiny"), "--to", "gguf", "--dtype", "f16", "--out", out);
    expect(r.code).toBe(0);
    const g = readGguf(out);
    expect(g.metadata.get("general.architecture")).toBe("llama");
    expect(g.metadata.get("general.name")).toBe("ckpt_gguf_tiny");
    expect(g.metadata.get("general.file_type")).toBe(1);
    expect((g.metadata.get("tokenizer.ggml.tokens") as string[]).length).toBe(512);
    expect(g.tensors.length).toBe(21);
  });
  test("usage errors exit 2 with the usage text; data errors exit 1 naming the problem", () => {
    const a = convert("--model", join(FIX, "ckpt_hf_f32"), "--to", "onnx", "--out", join(tmp, "x"));
    expect([a.code, a.err.split("\n")[0]]).toEqual([2, 'convert: --to must be gguf or hf, got "onnx"']);
    expect(a.err).toContain("usage: bun run convert");
    expect(convert("--to", "gguf").err).toStartWith("convert: missing --model, --out");
    expect(convert("--model", "x", "--to", "gguf", "--out", "y", "--dtype", "bf16").code).toBe(2);
    expect(convert("--bogus").code).toBe(2);
    const b = convert("--model", join(FIX, "ckpt_hf_f32"), "--to", "gguf", "--out", join(tmp, "x.gguf"));
    expect(b.code).toBe(1);
    expect(b.err).toMatch(/ckpt_hf_f32: no tokenizer\.json, tokenizer\.model or tokenizer_gguf\.json/);
    const c = convert("--model", join(tmp, "missing"), "--to", "hf", "--out", join(tmp, "y"));
    expect([c.code, c.err]).toEqual([1, `convert: ${join(tmp, "missing")}: not a directory\n`]);
  });
});
