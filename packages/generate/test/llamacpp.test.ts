// The same greedy continuation from llama.cpp (node-llama-cpp 3.21.1, CPU, 1 thread) on the F32 GGUF
// that @tinyllama/checkpoint exports from the PyTorch-written fixture checkpoint.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ggufVocab, loadHfCheckpoint, writeGguf } from "@tinyllama/checkpoint";
import { Tokenizer } from "@tinyllama/tokenizer";
import { InferenceSession, generate, loadModel } from "../src/index.ts";

const FIX = join(import.meta.dir, "../../../test/fixtures");
const DIR = join(FIX, "gen_tiny_f32");
const expected = JSON.parse(readFileSync(join(FIX, "gen_expected.json"), "utf8")) as { prompt: number[]; greedy: number[] };
const tmp = mkdtempSync(join(tmpdir(), "gen-gguf-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

type NodeLlamaCpp = typeof import("node-llama-cpp");
let nlc: NodeLlamaCpp | undefined;
try {
  nlc = await import("node-llama-cpp");
} catch (e) {
  console.log(`SKIP llama.cpp greedy parity: node-llama-cpp is not installed (${String(e).split("\n")[0]}); run npm install`);
}

describe.if(nlc !== undefined)("llama.cpp greedy parity", () => {
  test("llama.cpp, PyTorch and our KV-cache session produce the same 50 greedy tokens", async () => {
    const ck = loadHfCheckpoint(DIR);
    const path = join(tmp, "gen-tiny-f32.gguf");
    writeGguf(path, { config: ck.config, tensors: ck.tensors, tokenizer: ggufVocab(Tokenizer.fromFile(DIR)), dtype: "F32", name: "gen-tiny" });
    const llama = await nlc!.getLlama({ gpu: false, build: "never", logLevel: nlc!.LlamaLogLevel.error });
    const lmodel = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
    const theirs: number[] = [];
    try {
      const context = await lmodel.createContext({ contextSize: 128, threads: 1, batchSize: 64 });
      for await (const tok of context.getSequence().evaluate(expected.prompt as never[], { temperature: 0 })) {
        theirs.push(Number(tok));
        if (theirs.length === expected.greedy.length) break;
      }
      await context.dispose();
    } finally {
      await lmodel.dispose();
      await llama.dispose();
    }
    const { model } = loadModel(DIR);
    try {
      using s = InferenceSession.create(model);
      const ours = generate(s, expected.prompt, { maxNewTokens: expected.greedy.length }).ids;
      expect(theirs).toEqual(expected.greedy);
      expect(ours).toEqual(theirs);
    } finally {
      model.free();
    }
  }, 120_000);
});
