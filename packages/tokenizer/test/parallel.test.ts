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
