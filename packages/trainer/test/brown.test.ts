import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { detokenizeBrown, materializeBrown } from "@tinyllama/trainer";

describe("Brown corpus", () => {
  test("tags are stripped and punctuation re-attached", () => {
    expect(detokenizeBrown("\tThe/at jury/nn said/vbd ``/`` no/at ''/'' ,/, it's/pps+bez fine/jj ./.\n")).toBe('The jury said "no", it\'s fine.\n');
  });
  test("materialises 500 plain-text documents once", () => {
    const out = join(mkdtempSync(join(tmpdir(), "tl-brown-")), "brown");
    materializeBrown(out);
    const files = readdirSync(out).filter((f) => f.endsWith(".txt"));
    expect(files.length).toBe(500);
    const text = readFileSync(join(out, "ca01.txt"), "utf8");
    expect(text.startsWith("The Fulton County Grand Jury said Friday")).toBe(true);
    expect(text).not.toMatch(/\/(nn|at|vbd)\b/);
  });
});
