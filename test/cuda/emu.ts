/**
 * Builds kernels/cuda/*.cu for the CPU CUDA emulator (kernels/cuda/emu): each launch
 * `k<<<grid, block[, smem]>>>(args)` becomes `tl_emu_launch(tl_emu_cfg(grid, block[, smem]), k, args)`
 * and `extern __shared__` becomes the emulator's per-block buffer; everything else is the real
 * source, compiled by g++ against the emulator's small cuda_runtime.h. Cached by source hash.
 * Test-only .cu fixtures (test/cuda/*.cu) are built the same way into their own library.
 */
import { dlopen, FFIType } from "bun:ffi";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { findCCompiler, kernelsDir } from "@tinyllama/kernels";

export function translateCuda(src: string): string {
  let out = src.replace(/extern\s+__shared__\s+float\s+(\w+)\s*\[\s*\]\s*;/g, "float *$1 = (float *)tl_emu_dyn_smem();");
  out = out.replace(/([A-Za-z_]\w*(?:<[^<>;]*>)?)\s*<<<([\s\S]*?)>>>\s*\(/g, (_m, name: string, cfg: string) => `tl_emu_launch(tl_emu_cfg(${cfg}), ${name}, `);
  if (/>>>\s*\(/.test(out)) throw new Error("cuda-emu: a kernel launch was not translated");
  return out;
}

/** A source file and where its translation goes under the build's src/ (.cu files become .cpp units). */
type Source = { from: string; to: string };

/** Translates `sources`, compiles the .cu ones with the emulator runtime into `libName`; cached by hash. */
function buildEmulated(prefix: string, libName: string, sources: Source[]): string {
  const kdir = kernelsDir();
  const emuDir = join(kdir, "cuda", "emu");
  const runtime = [...readdirSync(join(emuDir, "include")).map((f) => join(emuDir, "include", f)), join(emuDir, "cuda_emu.cpp")].sort();
  const cxx = process.env.CXX ?? (Bun.which("g++") ? "g++" : findCCompiler());
  const h = createHash("sha256").update(cxx);
  for (const f of runtime) h.update(f.slice(kdir.length)).update(readFileSync(f));
  for (const s of [...sources].sort((a, b) => (a.to < b.to ? -1 : 1))) h.update(s.to).update(readFileSync(s.from));
  const out = join(process.env.TINYLLAMA_BUILD_DIR ?? join(kdir, "build"), `${prefix}-${h.digest("hex").slice(0, 16)}`);
  const lib = join(out, libName);
  if (existsSync(lib)) return lib;

  const units: string[] = [];
  for (const s of sources) {
    const dst = join(out, "src", s.to.replace(/\.cu$/, ".cpp"));
    mkdirSync(dirname(dst), { recursive: true });
    writeFileSync(dst, translateCuda(readFileSync(s.from, "utf8")));
    if (s.to.endsWith(".cu")) units.push(dst);
  }
  const tmp = `${lib}.${process.pid}.tmp`;
  const cmd = [cxx, "-std=c++17", "-O1", "-g", "-fPIC", "-shared", "-w", "-DTL_CUDA_EMU", "-I", join(emuDir, "include"), "-o", tmp, ...units.sort(), join(emuDir, "cuda_emu.cpp"), "-ldl"];
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) {
    rmSync(tmp, { force: true });
    throw new Error(`building the CUDA emulator library failed:\n${cmd.join(" ")}\n${p.stdout}${p.stderr}`);
  }
  renameSync(tmp, lib);
  return lib;
}

/**
 * Path of the emulated CUDA library (same ABI as libtinyllama_cuda.so), building it if needed;
 * TINYLLAMA_CUDA_EMU_LIB names one built elsewhere (e.g. from mutated sources) instead.
 */
export function buildEmulatedCudaLibrary(): string {
  if (process.env.TINYLLAMA_CUDA_EMU_LIB) return process.env.TINYLLAMA_CUDA_EMU_LIB;
  const kdir = kernelsDir();
  const cudaDir = join(kdir, "cuda");
  const sources = readdirSync(cudaDir)
    .filter((f) => /\.(cu|cuh|h)$/.test(f))
    .map((f) => ({ from: join(cudaDir, f), to: join("cuda", f) }));
  // the kernels include "../include/tinyllama.h"
  sources.push({ from: join(kdir, "include", "tinyllama.h"), to: join("include", "tinyllama.h") });
  return buildEmulated("cuda-emu", "libtinyllama_cuda_emu.so", sources);
}

/** Path of a library built from one self-contained test fixture (e.g. test/cuda/race.cu) on the emulator. */
export function buildEmulatedFixture(cuFile: string): string {
  const name = basename(cuFile).replace(/\.cu$/, "");
  return buildEmulated(`cuda-emu-${name}`, `lib${name}.so`, [{ from: cuFile, to: basename(cuFile) }]);
}

/** The order the emulator runs threads and blocks in (kernels/cuda/emu/README.md). */
export type EmuSchedule = "forward" | "reverse" | "shuffle" | `shuffle:${number}` | "ahead" | `ahead:${number}`;

const setters = new Map<string, (spec: Buffer) => number>();
/**
 * Sets the schedule of an emulator library (this process; it overrides TL_EMU_SCHEDULE).
 * Every library has its own emulator, so this affects only launches through `lib`.
 */
export function setEmuSchedule(lib: string, spec: EmuSchedule): void {
  let set = setters.get(lib);
  if (!set) {
    const { symbols } = dlopen(lib, { tl_emu_set_schedule: { args: [FFIType.ptr], returns: FFIType.i32 } });
    set = (s: Buffer) => symbols.tl_emu_set_schedule(s);
    setters.set(lib, set);
  }
  if (set(Buffer.from(`${spec}\0`)) !== 0) throw new Error(`cuda-emu: bad schedule "${spec}" (forward, reverse, shuffle or shuffle:<seed>)`);
}

/** The schedule TL_EMU_SCHEDULE asks for (what tests restore after switching), default forward. */
export function envEmuSchedule(): EmuSchedule {
  return (process.env.TL_EMU_SCHEDULE || "forward") as EmuSchedule;
}
