import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dir, "../../..");
const dir = mkdtempSync(join(tmpdir(), "tl-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cli(args: string[], env: Record<string, string> = {}) {
  const p = Bun.spawnSync([process.execPath, join(root, "tools/prepare.ts"), ...args], { cwd: root, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

let tokenizerInstalled = true;
try {
  Bun.resolveSync("@tinyllama/tokenizer", root);
} catch {
  tokenizerInstalled = false;
}

describe("tools/prepare.ts", () => {
  test("usage errors exit 2 with the usage text", () => {
    const r = cli(["--input", dir]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("--out is required");
    expect(r.err).toContain("usage: bun run prepare");
    expect(cli(["--bogus"]).err).toContain("unknown argument '--bogus'");
    expect(cli(["--input", dir, "--out", dir, "--val-fraction", "x"]).err).toContain("--val-fraction needs a number");
  });
  test("stays silent when npm runs it as the install-time 'prepare' lifecycle script", () => {
    const r = cli([], { npm_command: "install" });
    expect([r.code, r.err]).toEqual([0, ""]);
  });
  test.skipIf(tokenizerInstalled)("without @tinyllama/tokenizer installed, says so clearly", () => {
    writeFileSync(join(dir, "a.txt"), "hello");
    const r = cli(["--input", join(dir, "a.txt"), "--out", join(dir, "out")]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("@tinyllama/tokenizer is not installed in this checkout");
  });
  test.skipIf(!tokenizerInstalled)("with @tinyllama/tokenizer: Llama 2 ids, EOS after each document, meta.json", () => {
    writeFileSync(join(dir, "a.txt"), "Hello world, this is a test.\n\nSecond paragraph here.");
    const out = join(dir, "out-llama");
    const r = cli(["--input", join(dir, "a.txt"), "--out", out, "--val-fraction", "0", "--threads", "2"]);
    expect(r.code).toBe(0);
    const meta = JSON.parse(readFileSync(join(out, "meta.json"), "utf8"));
    expect(meta).toMatchObject({ tokenizer: "llama2", vocabSize: 32000, eosId: 2, dtype: "uint16", train: { documents: 2 } });
    const ids = Array.from(new Uint16Array(readFileSync(join(out, "train_000.bin")).buffer.slice(32)));
    // sentencepiece ids of "▁Hello ▁world , ▁this ▁is ▁a ▁test ." then </s>
    expect(ids.slice(0, 9)).toEqual([15043, 3186, 29892, 445, 338, 263, 1243, 29889, 2]);
    expect(ids.at(-1)).toBe(2);
  });
});
