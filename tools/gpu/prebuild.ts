/**
 * Builds the libraries a GPU machine may not be able to build itself (no nvcc, no C compiler)
 * and copies them into the folder given as the first argument (default .device/prebuilt):
 *   libtinyllama_cuda.so   sm_80 + sm_90 + compute_90 PTX, CUDA runtime linked statically
 *   libtinyllama_cpu.so    -march=x86-64-v3 (AVX2), so it runs on any recent x86 host
 * tools/gpu/check.sh uses them through TINYLLAMA_CUDA_LIB / TINYLLAMA_CPU_LIB only when it cannot build.
 */
import { copyFileSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { buildCpuLibrary, buildCudaLibrary } from "@tinyllama/kernels";

const out = resolve(process.argv[2] ?? ".device/prebuilt");
mkdirSync(out, { recursive: true });
const cpu = buildCpuLibrary({ arch: "x86-64-v3" });
copyFileSync(cpu, join(out, "libtinyllama_cpu.so"));
console.log(`prebuilt cpu  (x86-64-v3): ${cpu}`);
const cuda = buildCudaLibrary({ onCompile: (f) => console.log(`  nvcc ${f}`) });
copyFileSync(cuda, join(out, "libtinyllama_cuda.so"));
console.log(`prebuilt cuda: ${cuda}`);
