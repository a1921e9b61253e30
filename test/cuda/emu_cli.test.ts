/**
 * `bun run train` and `bun run generate` on the CUDA backend as a user runs them
 * (TINYLLAMA_DEVICE=cuda), with the CUDA sources on the CPU emulator standing in for the GPU
 * (TINYLLAMA_CUDA_EMULATOR): the TypeScript side of a GPU run (bf16 default, checkpoints read back
 * from the device, exact resume, the Hugging Face export, sampling and decoding with fp32 and bf16
 * weights) runs here, where it would otherwise wait for a GPU session. ~1 minute, most of it the
 * emulated sampling at the end of the second run.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { syntheticTokens } from "@tinyllama/testing";
import { buildEmulatedCudaLibrary } from "./emu.ts";
import { parityTarget } from "./harness.ts";

const ROOT = resolve(import.meta.dir, "../..");
let dir = "", data = "", env: Record<string, string | undefined> = {};

beforeAll(() => {
  if (parityTarget === null) return;
  dir = mkdtempSync(join(tmpdir(), "tl-emu-cli-"));
  data = join(dir, "synth.bin");
  writeFileSync(data, syntheticTokens(20_000));
  env = { ...process.env, TINYLLAMA_DEVICE: "cuda", TINYLLAMA_CUDA_EMULATOR: buildEmulatedCudaLibrary(), TINYLLAMA_QUIET: "1" };
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function run(tool: string, args: string[]): { code: number; out: string; err: string } {
  const p = Bun.spawnSync([process.execPath, join(ROOT, "tools", tool), ...args], { env, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? -1, out: p.stdout.toString(), err: p.stderr.toString() };
}
const trainRows = (out: string) =>
  readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((r) => r.type === "train").map((r) => [r.step, r.loss, r.grad_norm]);

// On a GPU machine the real backend is the point; there these runs belong to tools/gpu/check.sh's own checks.
describe.skipIf(parityTarget !== "emu")("bun run train / generate on the CUDA backend (CPU emulator)", () => {
  // a constant schedule: a cosine one depends on --steps, which the stopped run (4) and the resumed one (6) differ in
  test("bf16 by default; a run stopped at step 4 and resumed matches an uninterrupted 6-step run bit for bit", () => {
    const base = ["--config", "micro", "--batch", "2", "--seq", "32", "--lr", "3e-3", "--schedule", "constant", "--warmup", "2", "--save-every", "2", "--eval-every", "0", "--seed", "5", "--data", data];
    const a = join(dir, "a"), b = join(dir, "b");
    const full = run("train.ts", [...base, "--steps", "6", "--out", a]);
    expect(full.err).toContain("cuda backend, bf16 mixed precision");
    expect(full.code).toBe(0);
    expect(run("train.ts", [...base, "--steps", "4", "--out", b]).code).toBe(0);
    const resumed = run("train.ts", [...base, "--steps", "6", "--out", b, "--resume"]);
    expect(resumed.code).toBe(0);
    expect(resumed.err).toContain("resumed from");
    const rows = trainRows(a);
    expect(rows.length).toBe(6);
    expect(trainRows(b)).toEqual(rows);
    expect(Buffer.compare(readFileSync(join(b, "checkpoints", "step-00000006", "params.bin")), readFileSync(join(a, "checkpoints", "step-00000006", "params.bin")))).toBe(0);
  }, 300_000);

  test("a Llama-2-vocabulary model trained on CUDA samples, exports, and decodes the same greedy tokens on CUDA (fp32 and bf16 weights) and on the CPU", () => {
    const cfg = join(dir, "tiny32k.json");
    writeFileSync(cfg, JSON.stringify({ vocabSize: 32000, dim: 64, hiddenDim: 176, nLayers: 1, nHeads: 4, nKvHeads: 2, maxSeqLen: 64, ropeTheta: 10000, normEps: 1e-5, tieEmbeddings: false, bosId: 1, eosId: 2 }));
    const out = join(dir, "v32k");
    const t = run("train.ts", ["--config", cfg, "--batch", "2", "--seq", "32", "--steps", "2", "--save-every", "2", "--eval-every", "0", "--data", data, "--out", out]);
    expect(t.code).toBe(0);
    expect(t.out).toContain("samples (temperature 0.8, top-k 40):");
    const gen = (dtype: string, device: string) => {
      const saved = env.TINYLLAMA_DEVICE;
      env.TINYLLAMA_DEVICE = device;
      try {
        const r = run("generate.ts", ["--model", out, "--prompt-ids", "1,450,432", "--max-new-tokens", "4", "--temperature", "0", "--dtype", dtype, "--json"]);
        expect(r.code).toBe(0);
        return (JSON.parse(r.out.trim().split("\n").at(-1)!) as { ids: number[] }).ids;
      } finally {
        env.TINYLLAMA_DEVICE = saved;
      }
    };
    const cpu = gen("f32", "cpu");
    expect(cpu.length).toBe(4);
    expect(gen("f32", "cuda")).toEqual(cpu);
    expect(gen("bf16", "cuda")).toEqual(gen("bf16", "cpu"));
  }, 300_000);
});
