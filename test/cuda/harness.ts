/**
 * Shared by the CUDA tests: the whole kernel ABI as a bun:ffi table (tinyllama.h, including the
 * bf16 section), both backends opened side by side, and the one "skipped" line on machines
 * without a usable GPU. Ops are called through tables opened per test with only the symbols that
 * test needs, so a library that lacks an unrelated op (a branch not merged yet) fails only the
 * tests of that op, with the missing symbol's name.
 */
import { dlopen, FFIType } from "bun:ffi";
import { Backend, buildCpuLibrary, cudaUnavailableReason, openBackend, symbols, type Tensor } from "@tinyllama/kernels";
import { buildEmulatedCudaLibrary, envEmuSchedule, setEmuSchedule, type EmuSchedule } from "./emu.ts";

/** Every function of kernels/include/tinyllama.h: the runtime's own FFI table, now that every op
 * family is merged. abi.test.ts checks that it covers the header and that the CUDA library exports it. */
export const ABI = symbols;

export type AbiName = keyof typeof ABI;

/** Why the CUDA tests cannot run here, or null. Computing it builds the CUDA library on a GPU machine. */
export const gpuReason: string | null = cudaUnavailableReason();
export const noGpu = gpuReason !== null;
if (noGpu) console.log(`skipped: no CUDA GPU (${gpuReason})`);

type Fn = (...args: (number | null | bigint)[]) => number;
export type Ops = Record<AbiName, Fn>;

const tables = new Map<string, unknown>();
/** The named ABI functions of a backend's library (opened once per backend and name set). */
export function opsOf(be: Backend, names: readonly AbiName[]): Ops {
  const key = `${be.libraryPath}|${names.join(",")}`;
  let t = tables.get(key);
  if (!t) {
    const subset = Object.fromEntries(names.map((n) => [n, ABI[n]]));
    try {
      t = dlopen(be.libraryPath, subset).symbols;
    } catch (e) {
      throw new Error(`the ${be.kind} library ${be.libraryPath} lacks one of ${names.join(", ")}: ${(e as Error).message}`);
    }
    tables.set(key, t);
  }
  return t as Ops;
}

/**
 * What the parity tests compare with the CPU library: the GPU when there is one; otherwise the
 * same .cu sources on the CPU emulator (kernels/cuda/emu; needs g++; its matmuls run a reference
 * kernel in place of cuBLASLt), skipping what the CPU library does not implement yet; null when
 * neither is possible.
 */
export const parityTarget: "gpu" | "emu" | null = !noGpu ? "gpu" : process.env.CXX || Bun.which("g++") ? "emu" : null;
if (parityTarget === "emu") console.log("parity: comparing the CUDA sources on the CPU emulator instead (no cuBLASLt there: matmuls run a reference kernel)");

let pair: { cpu: Backend; cuda: Backend } | undefined;
/** The CPU backend and the CUDA one (the GPU, or the emulator when parityTarget is "emu"), opened once. */
export function backends(): { cpu: Backend; cuda: Backend } {
  pair ??= {
    cpu: openBackend({ device: "cpu" }),
    cuda: parityTarget === "gpu" ? openBackend({ device: "cuda" }) : new Backend("cuda", buildEmulatedCudaLibrary()),
  };
  return pair;
}

/**
 * Runs `fn` with the emulated CUDA library's threads and blocks in another order (kernels/cuda/emu/README.md:
 * a missing barrier shows up as a wrong result), then restores the order TL_EMU_SCHEDULE asked for.
 */
export function underEmuSchedule(spec: EmuSchedule, fn: () => void): void {
  const lib = backends().cuda.libraryPath;
  setEmuSchedule(lib, spec);
  try {
    fn();
  } finally {
    setEmuSchedule(lib, envEmuSchedule());
  }
}

const cpuMissing = new Map<string, string | null>();
/**
 * Whether a parity test can run: the CPU library must already have its ops (other branches add
 * them; a missing CUDA op still fails), and gpuOnly tests (cuBLASLt, repeatability) need the GPU.
 * Prints one line for each test skipped for a missing CPU op.
 */
export function parityReady(what: string, names: readonly AbiName[], gpuOnly = false): boolean {
  if (parityTarget === null) return false;
  if (gpuOnly && parityTarget !== "gpu") return false;
  const key = names.join(",");
  if (!cpuMissing.has(key)) {
    let missing: string | null = null;
    const lib = buildCpuLibrary();
    for (const n of names)
      try {
        dlopen(lib, { [n]: ABI[n] });
      } catch {
        missing = n;
        break;
      }
    cpuMissing.set(key, missing);
  }
  const missing = cpuMissing.get(key);
  if (missing) console.log(`skipped: ${what} (the CPU library has no ${missing} yet)`);
  return !missing;
}

export type Host = Float32Array | Int32Array | Uint16Array;

/** A tensor on `be` holding a copy of `data`. */
export function put(be: Backend, data: Host, shape: readonly number[] = [data.length]): Tensor {
  const dtype = data instanceof Float32Array ? "f32" : data instanceof Int32Array ? "i32" : "bf16";
  return be.tensor(shape, dtype).write(data);
}

/**
 * Runs `body` once on each backend (it creates its tensors with `put`, calls the op through
 * `ops`, and returns the tensors to compare) and returns both results as host arrays.
 */
export function onBoth(names: readonly AbiName[], body: (be: Backend, ops: Ops) => Record<string, Tensor>): {
  cpu: Record<string, Host>;
  cuda: Record<string, Host>;
} {
  const { cpu, cuda } = backends();
  const run = (be: Backend) => {
    const out = body(be, opsOf(be, names));
    be.sync();
    const host: Record<string, Host> = {};
    for (const [k, t] of Object.entries(out)) host[k] = t.read() as Host;
    return host;
  };
  return { cpu: run(cpu), cuda: run(cuda) };
}

/** Throws with the library's message unless rc is 0. */
export function ok(be: Backend, op: string, rc: number): void {
  be.check(op, rc);
}

/**
 * Sets (or with null, unsets) an environment variable in the C library's environment, where the
 * kernels' getenv reads it: Bun's process.env does not reach the process environment after start.
 */
export function setNativeEnv(name: string, value: string | null): void {
  const libc = dlopen(process.platform === "darwin" ? "libc.dylib" : "libc.so.6", {
    setenv: { args: [FFIType.cstring, FFIType.cstring, FFIType.i32], returns: FFIType.i32 },
    unsetenv: { args: [FFIType.cstring], returns: FFIType.i32 },
  });
  const c = (s: string) => Buffer.from(`${s}\0`);
  const rc = value === null ? libc.symbols.unsetenv(c(name)) : libc.symbols.setenv(c(name), c(value), 1);
  libc.close();
  if (rc !== 0) throw new Error(`setNativeEnv(${name}): the C library refused (rc ${rc})`);
}
