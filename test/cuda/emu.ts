/**
 * Builds kernels/cuda/*.cu for the CPU CUDA emulator (kernels/cuda/emu): each launch
 * `k<<<grid, block[, smem]>>>(args)` becomes `tl_emu_launch(tl_emu_cfg(grid, block[, smem]), k, args)`
 * and `extern __shared__` becomes the emulator's per-block buffer; everything else is the real
 * source, compiled by g++ against the emulator's small cuda_runtime.h. Cached by source hash.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { findCCompiler, kernelsDir } from "@tinyllama/kernels";

export function translateCuda(src: string): string {
  let out = src.replace(/extern\s+__shared__\s+float\s+(\w+)\s*\[\s*\]\s*;/g, "float *$1 = (float *)tl_emu_dyn_smem();");
  out = out.replace(/([A-Za-z_]\w*(?:<[^<>;]*>)?)\s*<<<([\s\S]*?)>>>\s*\(/g, (_m, name: string, cfg: string) => `tl_emu_launch(tl_emu_cfg(${cfg}), ${name}, `);
  if (/>>>\s*\(/.test(out)) throw new Error("cuda-emu: a kernel launch was not translated");
  return out;
}

/** Path of the emulated CUDA library (same ABI as libtinyllama_cuda.so), building it if needed. */
export function buildEmulatedCudaLibrary(): string {
  const kdir = kernelsDir();
  const cudaDir = join(kdir, "cuda"), emuDir = join(cudaDir, "emu");
  const files = [
    ...readdirSync(cudaDir).filter((f) => /\.(cu|cuh|h)$/.test(f)).map((f) => join(cudaDir, f)),
    ...readdirSync(join(emuDir, "include")).map((f) => join(emuDir, "include", f)),
    join(emuDir, "cuda_emu.cpp"),
    join(kdir, "include", "tinyllama.h"),
  ].sort();
  const cxx = process.env.CXX ?? (Bun.which("g++") ? "g++" : findCCompiler());
  const h = createHash("sha256").update(cxx);
  for (const f of files) h.update(f.slice(kdir.length)).update(readFileSync(f));
  const out = join(process.env.TINYLLAMA_BUILD_DIR ?? join(kdir, "build"), `cuda-emu-${h.digest("hex").slice(0, 16)}`);
  const lib = join(out, "libtinyllama_cuda_emu.so");
  if (existsSync(lib)) return lib;

  const srcDir = join(out, "src", "cuda");
  mkdirSync(join(out, "src", "include"), { recursive: true });
  mkdirSync(srcDir, { recursive: true });
  writeFileSync(join(out, "src", "include", "tinyllama.h"), readFileSync(join(kdir, "include", "tinyllama.h")));
  const units: string[] = [];
  for (const f of readdirSync(cudaDir)) {
    if (!/\.(cu|cuh|h)$/.test(f)) continue;
    const text = readFileSync(join(cudaDir, f), "utf8");
    if (f.endsWith(".cuh") || f.endsWith(".h")) writeFileSync(join(srcDir, f), translateCuda(text));
    else if (f.endsWith(".cu")) {
      const unit = join(srcDir, f.replace(/\.cu$/, ".cpp"));
      writeFileSync(unit, translateCuda(text));
      units.push(unit);
    }
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
