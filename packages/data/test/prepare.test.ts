import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DataLoader, documentsOf, findInputs, isValDocument, prepare, readShard, type InputFile, type PrepareMeta, type PrepareProgress } from "@tinyllama/data";
import { EOS, byteTokenizer, decodeBytes } from "./byte-tokenizer.ts";

const dir = mkdtempSync(join(tmpdir(), "tl-prepare-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const WORKER_TOKENIZER = { module: join(import.meta.dir, "byte-tokenizer.ts") };

// Corpus: a directory with a .txt of paragraphs (CRLF, blank lines holding spaces, non-ASCII),
// a .jsonl, a nested .txt and an ignored file.
const corpus = join(dir, "corpus");
mkdirSync(join(corpus, "sub"), { recursive: true });
writeFileSync(join(corpus, "a.txt"), "First paragraph,\nsecond line.\n\nZweiter Absatz: äöü ✓\r\n  \r\nthird\n\n\n\n");
writeFileSync(join(corpus, "b.jsonl"), ['{"text":"doc one"}', "", '{"text":"doc\\ntwo","meta":1}', '{"text":""}', '{"text":"three"}'].join("\n"));
writeFileSync(join(corpus, "sub", "c.txt"), "nested");
writeFileSync(join(corpus, "notes.md"), "ignored");
const EXPECTED_DOCS = ["First paragraph,\nsecond line.", "Zweiter Absatz: äöü ✓", "third", "doc one", "doc\ntwo", "three", "nested"];

/** Splits a shard's ids back into documents at EOS. */
function docsOf(ids: ArrayLike<number>): string[] {
  const out: string[] = [];
  let cur: number[] = [];
  for (const t of Array.from(ids)) {
    if (t === EOS) {
      out.push(decodeBytes(cur));
      cur = [];
    } else cur.push(t);
  }
  expect(cur.length).toBe(0); // every document ends with EOS
  return out;
}

function readSplit(out: string, split: string): number[] {
  return readdirSync(out)
    .filter((n) => n.startsWith(`${split}_`))
    .sort()
    .flatMap((n) => Array.from(readShard(join(out, n)).tokens));
}

describe("documents", () => {
  test("inputs are found recursively in path order; .txt paragraphs and .jsonl lines are documents", () => {
    const files = findInputs([corpus]);
    expect(files.map((f) => f.path.slice(corpus.length + 1))).toEqual(["a.txt", "b.jsonl", "sub/c.txt"]);
    expect(files.flatMap((f) => [...documentsOf(f, "paragraph")].map((d) => d.text))).toEqual(EXPECTED_DOCS);
    expect([...documentsOf(files[0]!, "file")].map((d) => d.text)).toEqual([readFileSync(join(corpus, "a.txt"), "utf8")]);
    // every input byte is accounted to some document (progress reaches 100%)
    const bytes = files.flatMap((f) => [...documentsOf(f, "paragraph")]).reduce((n, d) => n + d.bytes, 0);
    expect(bytes).toBe(files.reduce((n, f) => n + f.bytes, 0));
  });

  test("every read-chunk size gives the same documents (separators, CRLF and UTF-8 split anywhere)", () => {
    const edge = join(dir, "edge");
    mkdirSync(edge, { recursive: true });
    const txt = "a\n\nb é\r\n \t\r\n\n✓ c\nd\n\n\n\ne\n  \n";
    const jsonl = '{"text":"x ✓"}\r\n\n{"text":"y\\nz"}\n{"text":"é"}';
    writeFileSync(join(edge, "t.txt"), txt);
    writeFileSync(join(edge, "j.jsonl"), jsonl);
    const [t, j] = findInputs([join(edge, "t.txt"), join(edge, "j.jsonl")]) as [InputFile, InputFile];
    const wantT = ["a", "b é", "✓ c\nd", "e"], wantJ = ["x ✓", "y\nz", "é"];
    expect([...documentsOf(t, "paragraph")].map((d) => d.text)).toEqual(wantT);
    for (let chunk = 1; chunk <= 40; chunk++) {
      const dt = [...documentsOf(t, "paragraph", chunk)], dj = [...documentsOf(j, "paragraph", chunk)];
      expect(dt.map((d) => d.text)).toEqual(wantT);
      expect(dj.map((d) => d.text)).toEqual(wantJ);
      expect(dt.reduce((n, d) => n + d.bytes, 0)).toBe(t.bytes);
      expect(dj.reduce((n, d) => n + d.bytes, 0)).toBe(j.bytes);
      expect([...documentsOf(t, "file", chunk)].map((d) => d.text)).toEqual([txt]);
    }
  });

  test("a large corpus read in the default 4 MB chunks matches small-chunk reads", () => {
    const big = join(dir, "big");
    mkdirSync(big);
    const paras: string[] = [];
    let size = 0;
    for (let i = 0; size < 4.5e6; i++) {
      const p = `p${i} ` + "x".repeat((i * 7919) % 3000) + (i % 5 === 0 ? "\nline two é" : "");
      paras.push(p);
      size += p.length + 2;
    }
    writeFileSync(join(big, "big.txt"), paras.join("\n\n"));
    const f = findInputs([join(big, "big.txt")])[0]!;
    expect([...documentsOf(f, "paragraph")].map((d) => d.text)).toEqual(paras);
    expect([...documentsOf(f, "paragraph", 4093)].map((d) => d.text)).toEqual(paras);
  });

  test("val split: document 1 first, then one every 1/f, ceil((n-1) f) in all", () => {
    const val = (n: number, f: number) => Array.from({ length: n }, (_, i) => i).filter((i) => isValDocument(i, f));
    expect(val(10, 0.5)).toEqual([1, 3, 5, 7, 9]);
    expect(val(250, 0.01)).toEqual([1, 101, 201]);
    expect(val(1, 0.5)).toEqual([]);
    expect(val(100, 0)).toEqual([]);
  });

  test("errors name the file and line", () => {
    const bad = join(dir, "bad");
    mkdirSync(bad);
    writeFileSync(join(bad, "x.jsonl"), '{"text":"ok"}\n{"txt":"no"}\n');
    expect(() => [...documentsOf(findInputs([join(bad, "x.jsonl")])[0]!, "paragraph")]).toThrow(/x.jsonl:2: a .jsonl line must be an object with a string 'text' field/);
    writeFileSync(join(bad, "y.jsonl"), '{"text":"ok"}\n{oops\n');
    expect(() => [...documentsOf(findInputs([join(bad, "y.jsonl")])[0]!, "paragraph")]).toThrow(/y.jsonl:2: not valid JSON/);
    expect(() => findInputs([join(dir, "nope")])).toThrow(/input '.*nope' does not exist/);
    expect(() => findInputs([join(corpus, "notes.md")])).toThrow(/neither .txt nor .jsonl/);
    expect(() => findInputs([])).toThrow(/at least one file/);
  });
});

describe("prepare", () => {
  let inThread: PrepareMeta;
  const outA = join(dir, "outA"), outB = join(dir, "outB");

  test("in-thread: documents joined with EOS, split by index, shards rolled at shardTokens", async () => {
    const progress: PrepareProgress[] = [];
    inThread = await prepare({ inputs: [corpus], out: outA, tokenizer: byteTokenizer(), valFraction: 0.3, shardTokens: 16, onProgress: (p) => progress.push(p) });
    const valIdx = EXPECTED_DOCS.map((_, i) => i).filter((i) => isValDocument(i, 0.3));
    expect(valIdx).toEqual([1, 4]);
    expect(docsOf(readSplit(outA, "train"))).toEqual(EXPECTED_DOCS.filter((_, i) => !valIdx.includes(i)));
    expect(docsOf(readSplit(outA, "val"))).toEqual(EXPECTED_DOCS.filter((_, i) => valIdx.includes(i)));
    const tokens = (docs: string[]) => docs.reduce((n, d) => n + new TextEncoder().encode(d).length + 1, 0);
    expect(inThread.train.tokens).toBe(tokens(EXPECTED_DOCS.filter((_, i) => !valIdx.includes(i))));
    expect(inThread.val.documents).toBe(2);
    expect(inThread.train.shards.length).toBe(Math.ceil(inThread.train.tokens / 16));
    expect(inThread.train.shards[0]).toBe("train_000.bin");
    for (const s of inThread.train.shards.slice(0, -1)) expect(readShard(join(outA, s)).tokens.length).toBe(16);
    const meta = JSON.parse(readFileSync(join(outA, "meta.json"), "utf8"));
    expect(meta).toEqual(JSON.parse(JSON.stringify(inThread)));
    expect(meta).toMatchObject({ format: "TLSHARD", version: 1, tokenizer: "bytes-259", vocabSize: 259, eosId: 2, dtype: "uint16", bosPrepended: false });
    expect(progress.at(-1)).toMatchObject({ done: true, documents: 7, bytesDone: progress.at(-1)!.bytesTotal });
    expect(readdirSync(outA).some((n) => n.endsWith(".tmp"))).toBe(false);
    // and the loader reads the result
    const l = new DataLoader({ path: outA, B: 2, T: 8, mode: "sequential" });
    expect(l.totalTokens).toBe(inThread.train.tokens);
  });

  test("worker threads write byte-identical output", async () => {
    const meta = await prepare({ inputs: [corpus], out: outB, tokenizer: WORKER_TOKENIZER, threads: 2, valFraction: 0.3, shardTokens: 16 });
    expect(meta).toEqual({ ...inThread });
    for (const n of readdirSync(outA)) expect(readFileSync(join(outB, n)).equals(readFileSync(join(outA, n)))).toBe(true);
  });

  test("worker threads on a corpus of many batches match in-thread output", async () => {
    const many = join(dir, "many");
    mkdirSync(many);
    const lines = Array.from({ length: 20000 }, (_, i) => JSON.stringify({ text: `document ${i} ` + "abc".repeat(i % 50) }));
    writeFileSync(join(many, "m.jsonl"), lines.join("\n"));
    const a = await prepare({ inputs: [many], out: join(dir, "manyA"), tokenizer: byteTokenizer(), shardTokens: 100_000 });
    const b = await prepare({ inputs: [many], out: join(dir, "manyB"), tokenizer: WORKER_TOKENIZER, threads: 2, shardTokens: 100_000 });
    expect(b).toEqual(a);
    expect(a.val.documents).toBe(Math.ceil(19999 * 0.01));
    for (const n of readdirSync(join(dir, "manyA"))) expect(readFileSync(join(dir, "manyB", n)).equals(readFileSync(join(dir, "manyA", n)))).toBe(true);
  });

  test("a vocabulary over 65536 writes uint32 shards; bos prepends BOS", async () => {
    const out = join(dir, "out32");
    const meta = await prepare({ inputs: [join(corpus, "sub", "c.txt")], out, tokenizer: { module: WORKER_TOKENIZER.module, options: { vocabSize: 70000 } }, threads: 1, valFraction: 0, bos: true });
    expect(meta.dtype).toBe("uint32");
    const s = readShard(join(out, "train_000.bin"));
    expect(s.dtype).toBe("uint32");
    expect(Array.from(s.tokens)).toEqual([1, ...Array.from(new TextEncoder().encode("nested"), (b) => b + 3), EOS]);
    expect(meta.val).toEqual({ documents: 0, tokens: 0, shards: [] });
  });

  test("an existing output is refused unless overwrite; overwrite replaces stale shards", async () => {
    await expect(prepare({ inputs: [corpus], out: outA, tokenizer: byteTokenizer() })).rejects.toThrow(/already holds .*pass overwrite \(--force\)/);
    const meta = await prepare({ inputs: [corpus], out: outA, tokenizer: byteTokenizer(), overwrite: true, valFraction: 0 });
    expect(meta.train.shards).toEqual(["train_000.bin"]);
    expect(readdirSync(outA).sort()).toEqual(["meta.json", "train_000.bin"]);
  });

  test("tokenizer failures (in a worker or in-thread) reject and leave no shards", async () => {
    const out = join(dir, "fail");
    await expect(prepare({ inputs: [corpus], out, tokenizer: { module: WORKER_TOKENIZER.module, options: { failOn: "three" } }, threads: 2 })).rejects.toThrow(/tokenizer worker \d: refusing to encode 'three'/);
    expect(readdirSync(out)).toEqual([]);
    await expect(prepare({ inputs: [corpus], out, tokenizer: { module: WORKER_TOKENIZER.module, options: { outOfRange: true } }, threads: 1 })).rejects.toThrow(/a.txt \(document 0\): token 0 is 259, outside the vocabulary \[0, 259\)/);
    expect(readdirSync(out)).toEqual([]);
    await expect(prepare({ inputs: [corpus], out, tokenizer: { module: WORKER_TOKENIZER.module, export: "nope" }, threads: 1 })).rejects.toThrow(/has no exported function 'nope'/);
    await expect(prepare({ inputs: [corpus], out, tokenizer: { ...byteTokenizer(), eosId: 300 } })).rejects.toThrow(/eosId 300 is outside the vocabulary/);
  });

  test("bad options and empty inputs are clear errors", async () => {
    const blank = join(dir, "blank");
    mkdirSync(blank);
    writeFileSync(join(blank, "empty.txt"), "\n\n  \n");
    await expect(prepare({ inputs: [blank], out: join(dir, "o1"), tokenizer: byteTokenizer() })).rejects.toThrow(/hold no documents/);
    await expect(prepare({ inputs: [corpus], out: join(dir, "o2"), tokenizer: byteTokenizer(), valFraction: 1 })).rejects.toThrow(/valFraction must be in \[0, 1\)/);
    await expect(prepare({ inputs: [corpus], out: join(dir, "o3"), tokenizer: byteTokenizer(), shardTokens: 0 })).rejects.toThrow(/shardTokens must be a positive integer/);
    await expect(prepare({ inputs: [corpus], out: join(dir, "o4"), tokenizer: { ...byteTokenizer(), bosId: undefined }, bos: true })).rejects.toThrow(/no bosId/);
  });
});
