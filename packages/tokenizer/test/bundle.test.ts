// The main entry must bundle with esbuild for browsers (no node:*, no bun:*), and run on Node.
import { expect, test } from "bun:test";
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { Tokenizer } from "@tinyllama/tokenizer";

test("src/index.ts bundles for the browser", async () => {
  const result = await build({
    entryPoints: [new URL("../src/index.ts", import.meta.url).pathname],
    bundle: true,
    platform: "browser",
    format: "esm",
    write: false,
    logLevel: "silent",
  });
  expect(result.errors).toEqual([]);
  const code = result.outputFiles[0].text;
  expect(code).not.toMatch(/from\s*["'](node|bun):/);
  expect(code).not.toMatch(/require\(["'](node:)?(fs|path|worker_threads)["']\)/);
  expect(code).toContain("tokenizer.json:"); // the loaders made it in
}, 60_000);

test("the same code runs on Node (esbuild bundle for platform node) and gives the same ids", async () => {
  const node = Bun.which("node");
  if (!node) {
    console.log("skipped: node is not installed");
    return;
  }
  const dir = mkdtempSync(`${tmpdir()}/tok-node-`);
  const entry = `${dir}/main.ts`;
  const src = new URL("../src/index.ts", import.meta.url).pathname;
  writeFileSync(entry, `import { Tokenizer } from ${JSON.stringify(src)};
const tok = await Tokenizer.llama2();
const ids = tok.encode(process.argv[2]);
console.log(JSON.stringify({ ids: Array.from(ids), text: tok.decode(ids) }));`);
  await build({ entryPoints: [entry], bundle: true, platform: "node", format: "esm", outfile: `${dir}/main.mjs`, logLevel: "silent" });
  const text = "Hello from Node: 日本語, 😀 and </s>!";
  const r = spawnSync(node, [`${dir}/main.mjs`, text], { encoding: "utf8" });
  expect(r.stderr).toBe("");
  const got = JSON.parse(r.stdout) as { ids: number[]; text: string };
  const tok = await Tokenizer.llama2();
  expect(got.ids).toEqual(Array.from(tok.encode(text)));
  expect(got.text).toBe(tok.decode(tok.encode(text)));
}, 60_000);
