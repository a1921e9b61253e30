/**
 * Which missing barriers would the emulator tests notice, and under which TL_EMU_SCHEDULE?
 * Deletes each `__syncthreads();` / `__syncwarp();` of the named kernels/cuda files, one at a time,
 * builds the emulated CUDA library from the mutated sources (only the changed units recompile) and
 * runs that op's tests of parity.test.ts + emu.test.ts under each order. A barrier no order
 * misses is checked; one every order misses is either redundant or beyond the emulator's reach
 * (kernels/cuda/emu/README.md). Needs g++; a few minutes per file on 2 cores.
 *
 *   bun test/cuda/barrier_mutations.ts [file.cu|file.cuh ...] [--orders forward,ahead] [-t test-regex]
 *
 * Without files: every kernels/cuda file with a barrier. Without -t: the tests named for the file
 * below, or all of parity.test.ts + emu.test.ts for a file not listed.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { kernelsDir } from "@tinyllama/kernels";
import { buildEmulatedCudaLibrary } from "./emu.ts";

const TESTS: Record<string, string> = {
  "common.cuh": "rmsnorm|cross-entropy|causal GQA|head dim 160|GQA, ragged T",
  "rmsnorm.cu": "rmsnorm",
  "crossentropy.cu": "cross-entropy",
  "matmul.cu": "matmul forward/backward \\(fp32|matmul dbias",
  "optimizer.cu": "sumsq",
  "attention.cu": "causal GQA|head dim 160|GQA, ragged T",
  "attention_tc.cu": "bf16 attention",
  "attention_fa2.cu": "bf16 attention",
};
const BARRIER = /__sync(threads|warp)\(\);/;

const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i < 0 ? undefined : argv.splice(i, 2)[1];
};
const orders = (opt("--orders") ?? "forward,reverse,shuffle,ahead").split(",");
const testRegex = opt("-t");
const cudaDir = join(kernelsDir(), "cuda"), emuDir = join(cudaDir, "emu");
const files = argv.length ? argv.map((f) => basename(f)) : readdirSync(cudaDir).filter((f) => /\.cuh?$/.test(f) && BARRIER.test(readFileSync(join(cudaDir, f), "utf8"))).sort();

const run = (cmd: string[], env: Record<string, string> = {}) => {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  return { code: p.exitCode, out: p.stdout.toString() + p.stderr.toString() };
};
const FLAGS = ["-std=c++17", "-O1", "-fPIC", "-w", "-DTL_CUDA_EMU", "-I", join(emuDir, "include")];
const compile = (src: string, obj: string) => {
  const r = run(["g++", ...FLAGS, "-c", src, "-o", obj]);
  if (r.code !== 0) throw new Error(`g++ failed on ${src}:\n${r.out}`);
};

// the translated sources of the unmutated library, and their objects
const src = join(dirname(buildEmulatedCudaLibrary()), "src");
const work = mkdtempSync(join(tmpdir(), "tl-barrier-mutations-"));
const units = readdirSync(join(src, "cuda")).filter((f) => f.endsWith(".cpp")).sort();
const obj = (dir: string, u: string) => join(dir, u.replace(/\.cpp$/, ".o"));
mkdirSync(join(work, "base"));
for (const u of units) compile(join(src, "cuda", u), obj(join(work, "base"), u));
compile(join(emuDir, "cuda_emu.cpp"), join(work, "base", "cuda_emu.o"));

const tally: Record<string, number> = Object.fromEntries(orders.map((o) => [o, 0]));
let total = 0, anyOrder = 0;
const tests = [join(import.meta.dir, "parity.test.ts"), join(import.meta.dir, "emu.test.ts")];
for (const file of files) {
  const translated = file.replace(/\.cu$/, ".cpp");
  const lines = readFileSync(join(src, "cuda", translated), "utf8").split("\n");
  const re = testRegex ?? TESTS[file];
  lines.forEach((line, idx) => {
    if (!BARRIER.test(line)) return;
    const dir = join(work, `${file}-${idx + 1}`);
    cpSync(src, join(dir, "src"), { recursive: true });
    writeFileSync(join(dir, "src", "cuda", translated), lines.map((l, j) => (j === idx ? l.replace(BARRIER, "/* deleted */") : l)).join("\n"));
    const changed = file.endsWith(".cuh") ? units : [translated];
    for (const u of changed) compile(join(dir, "src", "cuda", u), obj(dir, u));
    const lib = join(dir, "lib.so");
    const link = run(["g++", "-shared", "-o", lib, ...units.map((u) => obj(changed.includes(u) ? dir : join(work, "base"), u)), join(work, "base", "cuda_emu.o"), "-ldl"]);
    if (link.code !== 0) throw new Error(`linking failed:\n${link.out}`);
    const results = orders.map((o) => {
      const r = run([process.execPath, "test", "--timeout", "300000", ...tests, ...(re ? ["-t", re] : [])], { TINYLLAMA_CUDA_EMU_LIB: lib, TL_EMU_SCHEDULE: o });
      const failed = /^\(fail\)/m.test(r.out);
      if (!failed && !/^\(pass\)/m.test(r.out)) throw new Error(`no test ran for ${file} (-t ${re}):\n${r.out.slice(-2000)}`);
      if (failed) tally[o]!++;
      return `${o} ${failed ? "FAIL" : "pass"}`;
    });
    total++;
    if (results.some((r) => r.endsWith("FAIL"))) anyOrder++;
    console.log(`${file}:${idx + 1}  ${line.trim().slice(0, 60)}\n    ${results.join(", ")}`);
    rmSync(dir, { recursive: true, force: true });
  });
}
rmSync(work, { recursive: true, force: true });
console.log(`\n${total} barriers deleted one at a time; the tests fail under ${orders.map((o) => `${o}: ${tally[o]}`).join(", ")}; under any of these: ${anyOrder}`);
