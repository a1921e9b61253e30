import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveModelDir } from "@tinyllama/generate";

describe("resolveModelDir", () => {
  test("a Hugging Face directory is itself; a finished run directory is its hf/ export", () => {
    const root = mkdtempSync(join(tmpdir(), "tl-load-"));
    const hfDir = join(root, "plain");
    mkdirSync(hfDir);
    writeFileSync(join(hfDir, "config.json"), "{}");
    expect(resolveModelDir(hfDir)).toBe(hfDir);
    const run = join(root, "run");
    mkdirSync(join(run, "hf"), { recursive: true });
    writeFileSync(join(run, "run.json"), "{}");
    writeFileSync(join(run, "hf", "config.json"), "{}");
    expect(resolveModelDir(run)).toBe(join(run, "hf"));
  });
  test("an unfinished run directory says so instead of reading run.json as a model config", () => {
    const run = mkdtempSync(join(tmpdir(), "tl-load-"));
    writeFileSync(join(run, "run.json"), "{}");
    expect(() => resolveModelDir(run)).toThrow(/training run without a final export/);
    expect(() => resolveModelDir(join(run, "missing"))).toThrow(/does not exist/);
  });
});
