// The browser entry must bundle with esbuild for platform "browser" (no node:*, no bun:*).
import { expect, test } from "bun:test";
import { build } from "esbuild";

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
