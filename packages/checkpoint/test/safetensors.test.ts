import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mulberry32, randn } from "@tinyllama/testing";
import {
  bf16ToF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  parseSafetensors,
  readSafetensors,
  SafetensorsError,
  safetensorsHeader,
  writeSafetensors,
} from "../src/index.ts";

const FIX = join(import.meta.dir, "../../../test/fixtures");
const tmp = mkdtempSync(join(tmpdir(), "ckpt-st-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const bytesOf = (path: string): Uint8Array => new Uint8Array(readFileSync(path));
const bitsOf = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length);

describe("PyTorch-written files", () => {
  const f32 = readSafetensors(join(FIX, "ckpt_pt_f32.safetensors"));
  for (const tag of ["bf16", "f16"] as const) {
    const file = readSafetensors(join(FIX, `ckpt_pt_${tag}.safetensors`));
    test(`${tag}: our f32 -> ${tag} rounding matches PyTorch's bit for bit (ties, overflow, subnormals)`, () => {
      let nans = 0;
      for (const t of file.tensors) {
        const src = f32.get(t.name)!.data as Float32Array;
        const ours = tag === "bf16" ? f32ToBf16(src) : f32ToF16(src);
        const theirs = t.data as Uint16Array;
        expect(t.dtype).toBe(tag === "bf16" ? "BF16" : "F16");
        // NaN bits differ between PyTorch's own code paths (0x7fc0 scalar, 0xffff AVX2 for bf16): only NaN-ness is compared.
        const isNan = (h: number): boolean => (tag === "bf16" ? (h & 0x7fff) > 0x7f80 : (h & 0x7fff) > 0x7c00);
        for (let i = 0; i < src.length; i++) if (Number.isNaN(src[i])) (nans++, expect([isNan(ours[i]!), isNan(theirs[i]!)]).toEqual([true, true]));
        const keep = (a: Uint16Array): number[] => Array.from(a).filter((_, i) => !Number.isNaN(src[i]));
        expect(keep(ours)).toEqual(keep(theirs));
      }
      expect(nans).toBe(1);
    });
    test(`${tag}: widening to f32 is exact (narrowing it again gives the same bits)`, () => {
      for (const t of file.tensors) {
        const wide = t.toFloat32();
        const back = tag === "bf16" ? f32ToBf16(wide) : f32ToF16(wide);
        expect(Array.from(back)).toEqual(Array.from(t.data as Uint16Array));
      }
    });
    test(`${tag}: values read back are PyTorch's (special values spot-checked)`, () => {
      const s = file.get("special")!.toFloat32();
      expect(s[0]).toBe(0);
      expect(Object.is(s[1], -0)).toBe(true);
      expect(s[4]).toBe(Infinity);
      expect(s[5]).toBe(-Infinity);
      expect(Number.isNaN(s[6])).toBe(true);
      if (tag === "f16") {
        expect(s[7]).toBe(65504); // max f16
        expect(s[8]).toBe(65504); // 65519 rounds down
        expect(s[9]).toBe(Infinity); // 65520 is the tie that rounds to inf
        expect(s[13]).toBe(2 ** -24); // smallest subnormal
        expect(s[14]).toBe(0); // 2^-25 ties to even (0)
        expect(s[15]).toBe(2 ** -24); // 3*2^-26 rounds up
      }
    });
    test(`${tag}: writing what was read reproduces the file byte for byte`, () => {
      const out = join(tmp, `rt_${tag}.safetensors`);
      writeSafetensors(out, file.tensors.map((t) => ({ name: t.name, shape: t.shape, dtype: t.dtype as "BF16", data: t.toFloat32() })), { ...file.metadata });
      expect(bytesOf(out)).toEqual(bytesOf(join(FIX, `ckpt_pt_${tag}.safetensors`)));
    });
  }
  test("f32: rewrite is byte-identical and views are zero-copy", () => {
    const out = join(tmp, "rt_f32.safetensors");
    writeSafetensors(out, f32.tensors.map((t) => ({ name: t.name, shape: t.shape, dtype: "F32", data: t.toFloat32() })), { ...f32.metadata });
    expect(bytesOf(out)).toEqual(bytesOf(join(FIX, "ckpt_pt_f32.safetensors")));
    expect(f32.tensors.every((t) => t.zeroCopy)).toBe(true);
    expect(f32.get("scalar")!.shape).toEqual([]);
    expect(Array.from(f32.get("scalar")!.data)).toEqual([2.5]);
    expect(f32.get("empty")!.shape).toEqual([0, 4]);
    expect(f32.get("empty")!.data.length).toBe(0);
    expect(f32.metadata).toEqual({ format: "pt" });
  });
  test("mixed dtypes: misaligned tensors are copied, I32 is readable, order is the file's", () => {
    const m = readSafetensors(join(FIX, "ckpt_pt_mixed.safetensors"));
    expect(m.tensors.map((t) => t.name)).toEqual(["c_f32", "ids", "b_bf16", "a_f16"]);
    expect(Array.from(m.get("ids")!.data)).toEqual([-3, -2, -1, 0, 1, 2, 3]);
    expect(() => m.get("ids")!.toFloat32()).toThrow(/I32/);
    expect(m.metadata).toEqual({});
    const out = join(tmp, "rt_mixed.safetensors");
    writeSafetensors(
      out,
      m.tensors.filter((t) => t.dtype !== "I32").map((t) => ({ name: t.name, shape: t.shape, dtype: t.dtype as "F16", data: t.data as Uint16Array })),
    );
    const back = readSafetensors(out);
    for (const t of back.tensors) expect(Array.from(t.toFloat32())).toEqual(Array.from(m.get(t.name)!.toFloat32()));
  });
});

describe("round trips", () => {
  const rng = mulberry32(7);
  const a = randn(6 * 5, rng, 2);
  const b = randn(11, rng, 1e-3);
  for (const dtype of ["F32", "BF16", "F16"] as const) {
    test(`${dtype}: write then read returns the rounded values, shapes, names, order and metadata`, () => {
      const path = join(tmp, `rt_${dtype}.safetensors`);
      writeSafetensors(path, [
        { name: "z.first", shape: [6, 5], dtype, data: a },
        { name: "a.second", shape: [11], dtype, data: b },
      ], { note: "hello" });
      const f = readSafetensors(path);
      expect(f.tensors.map((t) => [t.name, t.dtype, t.shape])).toEqual([["z.first", dtype, [6, 5]], ["a.second", dtype, [11]]]);
      expect(f.metadata).toEqual({ note: "hello" });
      const round = (x: Float32Array): Float32Array => (dtype === "F32" ? x : dtype === "BF16" ? bf16ToF32(f32ToBf16(x)) : f16ToF32(f32ToF16(x)));
      expect(Array.from(bitsOf(f.get("z.first")!.toFloat32()))).toEqual(Array.from(bitsOf(round(a))));
      expect(Array.from(bitsOf(f.get("a.second")!.toFloat32()))).toEqual(Array.from(bitsOf(round(b))));
      if (dtype !== "F32") expect(f.get("z.first")!.toFloat32()).not.toEqual(a); // it really was narrowed
      expect(f.tensors.every((t) => t.zeroCopy)).toBe(true);
      // Header: padded with spaces to 8 bytes, as the reference writer does.
      const raw = bytesOf(path);
      const n = Number(new DataView(raw.buffer).getBigUint64(0, true));
      expect(n % 8).toBe(0);
      expect(new TextDecoder().decode(raw.subarray(8, 8 + n))).toMatch(/^\{"__metadata__":\{"note":"hello"\},"z.first":\{"dtype":"[A-Z0-9]+","shape":\[6,5\],"data_offsets":\[0,\d+\]\}.*\} *$/);
      // No temp file is left behind.
      expect(readdirSync(tmp).filter((x) => x.includes(".tmp-"))).toEqual([]);
    });
  }
  test("misaligned F32 data (after an odd-sized F16 tensor) is copied and still correct", () => {
    const path = join(tmp, "misaligned.safetensors");
    writeSafetensors(path, [
      { name: "h", shape: [3], dtype: "F16", data: new Float32Array([1, 2, 3]) },
      { name: "f", shape: [2], dtype: "F32", data: new Float32Array([4.5, -6.25]) },
    ]);
    const f = readSafetensors(path);
    expect(f.get("f")!.zeroCopy).toBe(false);
    expect(Array.from(f.get("f")!.toFloat32())).toEqual([4.5, -6.25]);
    expect(Array.from(f.get("h")!.toFloat32())).toEqual([1, 2, 3]);
  });
  test("writing over an existing file replaces it atomically (old readers keep their mapping)", () => {
    const path = join(tmp, "replace.safetensors");
    writeSafetensors(path, [{ name: "x", shape: [2], data: new Float32Array([1, 2]) }]);
    const old = readSafetensors(path);
    writeSafetensors(path, [{ name: "x", shape: [3], data: new Float32Array([7, 8, 9]) }]);
    expect(Array.from(old.get("x")!.data)).toEqual([1, 2]);
    expect(Array.from(readSafetensors(path).get("x")!.data)).toEqual([7, 8, 9]);
  });
  test("writer rejects bad input before touching the disk", () => {
    const path = join(tmp, "never.safetensors");
    expect(() => writeSafetensors(path, [{ name: "x", shape: [2, 2], data: new Float32Array(3) }])).toThrow(/"x" has shape \[2, 2\] \(4 elements\) but 3 values/);
    expect(() => writeSafetensors(path, [{ name: "x", shape: [1], data: new Float32Array(1) }, { name: "x", shape: [1], data: new Float32Array(1) }])).toThrow(/appears twice/);
    expect(() => writeSafetensors(path, [{ name: "x", shape: [1], dtype: "F32", data: new Uint16Array(1) }])).toThrow(/Float32Array/);
    expect(() => writeSafetensors(path, [{ name: "x", shape: [1], dtype: "I8" as "F32", data: new Float32Array(1) }])).toThrow(/write F32, BF16 or F16/);
    expect(readdirSync(tmp).filter((x) => x.startsWith("never"))).toEqual([]);
  });
});

describe("truncated and corrupt files", () => {
  const good = bytesOf(join(FIX, "ckpt_pt_f32.safetensors"));
  const write = (name: string, bytes: Uint8Array): string => {
    const p = join(tmp, name);
    writeFileSync(p, bytes);
    return p;
  };
  const withHeader = (json: string, data: Uint8Array = new Uint8Array(0)): Uint8Array => {
    const h = new TextEncoder().encode(json);
    const out = new Uint8Array(8 + h.length + data.length);
    new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
    out.set(h, 8);
    out.set(data, 8 + h.length);
    return out;
  };

  test("a file cut short in its data is reported with the file name and expected/actual sizes", () => {
    const p = write("cut.safetensors", good.subarray(0, good.length - 10));
    expect(() => readSafetensors(p)).toThrow(new SafetensorsError(`${p}: truncated: the header describes ${good.length} bytes of file, the file has ${good.length - 10}`));
  });
  test("a file cut inside its header, empty, or shorter than 8 bytes", () => {
    const p = write("cut_header.safetensors", good.subarray(0, 40));
    expect(() => readSafetensors(p)).toThrow(/cut_header\.safetensors: truncated: the header alone needs \d+ bytes, the file has 40/);
    const e = write("empty.safetensors", new Uint8Array(0));
    expect(() => readSafetensors(e)).toThrow(/empty\.safetensors: truncated: .* this one has 0/);
    const s = write("short.safetensors", new Uint8Array(5));
    expect(() => readSafetensors(s)).toThrow(/this one has 5/);
  });
  test("a missing file names the path", () => {
    expect(() => readSafetensors(join(tmp, "nope.safetensors"))).toThrow(/nope\.safetensors: cannot open/);
  });
  test("garbage header length, invalid JSON, non-object header", () => {
    const big = new Uint8Array(16);
    new DataView(big.buffer).setBigUint64(0, 1n << 40n, true);
    expect(() => parseSafetensors(big, "big")).toThrow(/big: header length .* larger than/);
    expect(() => parseSafetensors(withHeader("{not json"), "bad")).toThrow(/bad: header is not valid UTF-8 JSON/);
    expect(() => parseSafetensors(withHeader("[1,2]"), "arr")).toThrow(/arr: header must be a JSON object/);
  });
  test("wrong byte size, overlap, gap, trailing bytes, bad offsets, bad dtypes", () => {
    const d16 = new Uint8Array(16);
    expect(() => parseSafetensors(withHeader('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}', d16), "f"))
      .toThrow(/tensor "a": F32 \[3\] needs 12 bytes but data_offsets \[0, 16\] span 16/);
    expect(() => parseSafetensors(withHeader('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', new Uint8Array(12)), "f"))
      .toThrow(/tensors "a" \[0, 8\] and "b" \[4, 12\] overlap/);
    expect(() => parseSafetensors(withHeader('{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', new Uint8Array(12)), "f")).toThrow(/gap of 4 bytes before tensor "a"/);
    expect(() => parseSafetensors(withHeader('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', d16), "f")).toThrow(/8 bytes after the last tensor/);
    expect(() => parseSafetensors(withHeader('{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}', d16), "f")).toThrow(/data_offsets must be \[begin, end\]/);
    expect(() => parseSafetensors(withHeader('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}'), "f")).toThrow(/shape must be an array of non-negative integers/);
    expect(() => parseSafetensors(withHeader('{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}', new Uint8Array(1)), "f")).toThrow(/unknown dtype "Q4"/);
    expect(() => parseSafetensors(withHeader('{"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}', d16), "f"))
      .toThrow(/tensor "a" has dtype F64, which is not supported \(supported: F32, BF16, F16/);
    expect(() => parseSafetensors(withHeader('{"__metadata__":{"x":1}}'), "f")).toThrow(/__metadata__\.x must be a string/);
  });
  test("header of a written file is exactly what safetensorsHeader computes", () => {
    const h = safetensorsHeader([{ name: "w", shape: [2], dtype: "BF16" }]);
    const json = '{"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}';
    expect(new TextDecoder().decode(h.subarray(8))).toBe(json + " ".repeat((8 - (json.length % 8)) % 8));
  });
});

describe("sharded checkpoints", () => {
  test("index.json: every tensor from its shard, same values as the single-file checkpoint", () => {
    const sharded = readSafetensors(join(FIX, "ckpt_hf_sharded/model.safetensors.index.json"));
    const single = readSafetensors(join(FIX, "ckpt_hf_f32/model.safetensors"));
    expect(sharded.tensors.length).toBe(single.tensors.length);
    for (const t of single.tensors) expect(sharded.get(t.name)!.toFloat32()).toEqual(t.toFloat32());
    expect(sharded.metadata.total_size).toBe(String(single.tensors.reduce((n, t) => n + t.data.byteLength, 0)));
  });
  test("an index that disagrees with its shards lists every problem", () => {
    const dir = mkdtempSync(join(tmp, "shards-"));
    writeSafetensors(join(dir, "s1.safetensors"), [
      { name: "a", shape: [1], data: new Float32Array([1]) },
      { name: "stray", shape: [1], data: new Float32Array([2]) },
    ]);
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: { a: "s1.safetensors", b: "s1.safetensors" } }));
    expect(() => readSafetensors(join(dir, "model.safetensors.index.json"))).toThrow(
      /index and shards disagree:\n  "stray" is in s1\.safetensors but not in weight_map\n  "b" is mapped to s1\.safetensors but that file does not contain it/,
    );
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: { a: "../s1.safetensors" } }));
    expect(() => readSafetensors(join(dir, "model.safetensors.index.json"))).toThrow(/must be a file name in the same directory/);
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weights: {} }));
    expect(() => readSafetensors(join(dir, "model.safetensors.index.json"))).toThrow(/missing "weight_map"/);
  });
});
