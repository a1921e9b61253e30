import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync, appendFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HEADER_BYTES, decodeHeader, encodeHeader, openTokenFile, readShard, writeShard, dtypeForVocab } from "@tinyllama/data";

const dir = mkdtempSync(join(tmpdir(), "tl-format-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("TLSHARD header", () => {
  test("is 32 bytes laid out as documented", () => {
    const h = encodeHeader({ dtype: "uint16", count: 2 ** 40 + 5, vocabSize: 32000 });
    expect(h.length).toBe(32);
    expect(new TextDecoder().decode(h.subarray(0, 7))).toBe("TLSHARD");
    expect(h[7]).toBe(0);
    const dv = new DataView(h.buffer);
    expect(dv.getUint32(8, true)).toBe(1);
    expect(dv.getUint32(12, true)).toBe(2);
    expect(dv.getBigUint64(16, true)).toBe(2n ** 40n + 5n);
    expect(dv.getUint32(24, true)).toBe(32000);
    expect(dv.getUint32(28, true)).toBe(0);
    expect(decodeHeader(h, 32 + (2 ** 40 + 5) * 2, "x")).toEqual({ version: 1, dtype: "uint16", count: 2 ** 40 + 5, vocabSize: 32000 });
  });
  test("dtype follows the vocabulary: uint16 up to 65536", () => {
    expect(dtypeForVocab(32000)).toBe("uint16");
    expect(dtypeForVocab(65536)).toBe("uint16");
    expect(dtypeForVocab(65537)).toBe("uint32");
    expect(() => dtypeForVocab(0)).toThrow(/vocabSize/);
  });
  test("bad version and dtype are named", () => {
    const h = encodeHeader({ dtype: "uint16", count: 0, vocabSize: 10 });
    new DataView(h.buffer).setUint32(8, 2, true);
    expect(() => decodeHeader(h, 32, "f.bin")).toThrow(/f.bin: TLSHARD version 2 is not supported/);
    const h2 = encodeHeader({ dtype: "uint16", count: 0, vocabSize: 10 });
    new DataView(h2.buffer).setUint32(12, 3, true);
    expect(() => decodeHeader(h2, 32, "f.bin")).toThrow(/unknown token dtype code 3/);
  });
});

describe("writeShard / readShard", () => {
  test("round-trip uint16 with a zero-copy view", () => {
    const p = join(dir, "a.bin");
    const ids = Array.from({ length: 1000 }, (_, i) => (i * 7919) % 32000);
    writeShard(p, ids, { vocabSize: 32000 });
    expect(readFileSync(p).length).toBe(HEADER_BYTES + 2000);
    const s = readShard(p);
    expect(s.dtype).toBe("uint16");
    expect(s.vocabSize).toBe(32000);
    expect(s.tokens).toBeInstanceOf(Uint16Array);
    expect(Array.from(s.tokens)).toEqual(ids);
    expect(s.tokens.byteOffset).toBe(HEADER_BYTES); // a view into the mapping, not a copy
    expect(existsSync(p + ".tmp")).toBe(false);
  });
  test("round-trip uint32 for a large vocabulary", () => {
    const p = join(dir, "b.bin");
    const ids = new Int32Array([0, 65536, 99999, 7]);
    writeShard(p, ids, { vocabSize: 100000 });
    const s = readShard(p);
    expect(s.dtype).toBe("uint32");
    expect(Array.from(s.tokens)).toEqual(Array.from(ids));
  });
  test("an empty shard is valid", () => {
    const p = join(dir, "empty.bin");
    writeShard(p, [], { vocabSize: 10 });
    expect(readShard(p).tokens.length).toBe(0);
  });
  test("ids outside the vocabulary are refused and leave no file", () => {
    const p = join(dir, "bad.bin");
    expect(() => writeShard(p, [1, 2, 10], { vocabSize: 10 })).toThrow(/token 2 is 10, outside the vocabulary \[0, 10\)/);
    expect(() => writeShard(p, [1, -1], { vocabSize: 10 })).toThrow(/token 1 is -1/);
    expect(() => writeShard(p, [1.5], { vocabSize: 10 })).toThrow(/token 0 is 1.5/);
    expect(existsSync(p)).toBe(false);
    expect(existsSync(p + ".tmp")).toBe(false);
  });
  test("a truncated file is an error naming the file, expected and actual size", () => {
    const p = join(dir, "trunc.bin");
    writeShard(p, new Int32Array(100).fill(3), { vocabSize: 10 });
    truncateSync(p, HEADER_BYTES + 150);
    expect(() => readShard(p)).toThrow(`${p}: truncated shard: the header promises 100 uint16 tokens, so expected 232 bytes, but the file has 182`);
    truncateSync(p, 20);
    expect(() => readShard(p)).toThrow(/truncated TLSHARD header: expected at least 32 bytes, file has 20/);
  });
  test("trailing bytes are an error too", () => {
    const p = join(dir, "long.bin");
    writeShard(p, [1, 2, 3], { vocabSize: 10 });
    appendFileSync(p, new Uint8Array(4));
    expect(() => readShard(p)).toThrow(/promises 3 uint16 tokens \(38 bytes\) but the file has 42 bytes/);
  });
  test("missing file, bad magic", () => {
    expect(() => readShard(join(dir, "nope.bin"))).toThrow(/does not exist/);
    const p = join(dir, "raw.bin");
    writeFileSync(p, new Uint8Array(new Uint16Array([5, 6, 7]).buffer));
    expect(() => readShard(p)).toThrow(/not a TLSHARD file \(bad magic\)/);
  });
});

describe("openTokenFile", () => {
  test("reads a headerless uint16 file (nanoGPT / llama2.c) as raw tokens", () => {
    const p = join(dir, "nanogpt.bin");
    writeFileSync(p, new Uint8Array(new Uint16Array([50256, 1, 2, 65535]).buffer));
    const s = openTokenFile(p);
    expect(s.format).toBe("raw-uint16");
    expect(Array.from(s.tokens)).toEqual([50256, 1, 2, 65535]);
  });
  test("a raw file of odd size is an error", () => {
    const p = join(dir, "odd.bin");
    writeFileSync(p, new Uint8Array(5));
    expect(() => openTokenFile(p)).toThrow(/size \(5 bytes\) is odd/);
  });
  test("TLSHARD files are detected by their magic", () => {
    const p = join(dir, "c.bin");
    writeShard(p, [4, 5], { vocabSize: 6 });
    expect(openTokenFile(p).format).toBe("tlshard");
  });
});
