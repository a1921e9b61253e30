// The two CLIs: bun run tokenize, bun run train-tokenizer.
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { Tokenizer } from "@tinyllama/tokenizer";
import { corpusSentences } from "./helpers.ts";

const root = new URL("../../../", import.meta.url).pathname;
const bun = process.execPath;
const run = (...args: string[]): { code: number | null; out: string; err: string } => {
  const r = spawnSync(bun, args, { cwd: root, encoding: "utf8" });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

test("tokenize prints ids, pieces and counts for --text and --file", async () => {
  const llama = await Tokenizer.llama2();
  const r = run("tools/tokenize.ts", "--tokenizer", "llama2", "--text", "Hello world");
  expect(r.code).toBe(0);
  expect(r.out).toContain(`ids:    ${JSON.stringify(Array.from(llama.encode("Hello world")))}`);
  expect(r.out).toContain('pieces: ["<s>","▁Hello","▁world"]');
  expect(r.out).toMatch(/tokens: 3 +characters: 11/);
  const dir = mkdtempSync(`${tmpdir()}/tok-cli-`);
  writeFileSync(`${dir}/in.txt`, "a\nb");
  const f = run("tools/tokenize.ts", "--tokenizer", "packages/tokenizer/test/fixtures/spm-bpe4096.model", "--file", `${dir}/in.txt`, "--ids-only", "--no-bos");
  expect(f.code).toBe(0);
  const spm = Tokenizer.fromFile(`${root}packages/tokenizer/test/fixtures/spm-bpe4096.model`);
  expect(f.out.trim()).toBe(Array.from(spm.encode("a\nb", { bos: false })).join(" "));
  const bad = run("tools/tokenize.ts", "--tokenizer", "/nonexistent", "--text", "x");
  expect(bad.code).toBe(2);
  expect(bad.err).toContain("/nonexistent");
}, 60_000);

test("train-tokenizer writes a tokenizer.json that loads and round-trips", () => {
  const dir = mkdtempSync(`${tmpdir()}/tok-train-`);
  writeFileSync(`${dir}/a.txt`, corpusSentences().slice(0, 3000).map((s) => s.replace(/\n/g, " ")).join("\n"));
  const r = run("tools/train-tokenizer.ts", "--input", `${dir}/a.txt`, "--vocab-size", "500", "--out", `${dir}/out`);
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  expect(r.out).toContain("(500 pieces)");
  const tok = Tokenizer.fromFile(`${dir}/out`);
  expect(tok.vocabSize).toBe(500);
  expect(tok.decode(tok.encode("Hello there, world!"))).toBe("Hello there, world!");
  expect(run("tools/train-tokenizer.ts", "--vocab-size", "500").code).toBe(2);
}, 60_000);
