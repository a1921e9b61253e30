// The worker-thread entry gives the same ids as the single-threaded tokenizer.
import { expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { Tokenizer } from "@tinyllama/tokenizer";
import { ParallelTokenizer, encodeFileParallel } from "@tinyllama/tokenizer/parallel";
import { corpusSentences } from "./helpers.ts";

test("ParallelTokenizer.encodeBatch and encodeFileParallel equal encode()", async () => {
  const tok = await Tokenizer.llama2();
  const texts = corpusSentences().slice(0, 5000).map((s) => s.replace(/\n/g, " "));
  const pool = await ParallelTokenizer.create(tok, 2);
  const got = await pool.encodeBatch(texts);
  await pool.close();
  expect(got.length).toBe(texts.length);
  texts.forEach((t, i) => expect(Array.from(got[i])).toEqual(Array.from(tok.encode(t))));
  const dir = mkdtempSync(`${tmpdir()}/tok-`);
  writeFileSync(`${dir}/in.txt`, texts.join("\n"));
  const fromFile = await encodeFileParallel(tok, `${dir}/in.txt`, { bos: false });
  texts.forEach((t, i) => expect(Array.from(fromFile[i])).toEqual(Array.from(tok.encode(t, { bos: false }))));
}, 60_000);

test("encodeFile gives exactly the lines of text.split(\"\\n\"), wherever the byte shares fall", async () => {
  const tok = await Tokenizer.llama2();
  const dir = mkdtempSync(`${tmpdir()}/tok-lines-`);
  const files = ["", "\n", "\n\n", "a", "a\n", "ab\ncd", "ab\ncd\n", "\n\nx\n\n", "日本\n😀😀\n\nz", "x\n".repeat(7), "long line ".repeat(50) + "\nb"];
  for (const threads of [1, 2, 3, 5]) {
    const pool = await ParallelTokenizer.create(tok, threads);
    for (const [k, text] of files.entries()) {
      const path = `${dir}/f${k}.txt`;
      writeFileSync(path, text);
      const got = (await pool.encodeFile(path, { bos: false })).map((ids) => Array.from(ids));
      expect({ text, threads, got }).toEqual({ text, threads, got: text.split("\n").map((l) => Array.from(tok.encode(l, { bos: false }))) });
    }
    await pool.close();
  }
}, 60_000);
