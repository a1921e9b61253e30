/**
 * One TypeScript interface over both kernel libraries. Model code asks for `getBackend()` and
 * never learns whether its tensors live in host or GPU memory.
 */
import { CString, dlopen, ptr as addressOf, type Library, type Pointer } from "bun:ffi";
import { existsSync } from "node:fs";
import { buildCpuLibrary, buildCudaLibrary, type CpuBuildOptions } from "./build.ts";
import { KernelError, ShapeError, fmtShape } from "./errors.ts";
import { symbols, type KernelSymbols } from "./symbols.ts";
import { Profiler, profiledSymbols } from "./profile.ts";
import { DTYPE_BYTES, DeviceBuffer, Tensor, checkShape, numelOf, type DType } from "./tensor.ts";

export type DeviceKind = "cpu" | "cuda";
export type Lib = Library<KernelSymbols>["symbols"];

type HostArray = Float32Array | Int32Array | Uint16Array | Uint8Array | Float64Array | BigUint64Array;

export class Backend {
  readonly #lib: Library<KernelSymbols>;
  constructor(
    readonly kind: DeviceKind,
    readonly libraryPath: string,
  ) {
    this.#lib = dlopen(libraryPath, symbols);
  }

  #profiled: Lib | null = null;
  #profiler: Profiler | null = null;

  /** The raw FFI functions. Prefer the shape-checked wrappers in ops/. */
  get lib(): Lib {
    return this.#profiled ?? this.#lib.symbols;
  }

  /** Starts timing every kernel call (see Profiler); code that cached `lib` before is not seen. */
  startProfile(): Profiler {
    this.#profiler = new Profiler();
    const raw = this.#lib.symbols;
    this.#profiled = profiledSymbols(raw, this.#profiler, this.kind === "cuda" ? () => raw.tl_sync() : undefined);
    return this.#profiler;
  }

  /** Stops profiling and returns what was collected. */
  stopProfile(): Profiler | null {
    const p = this.#profiler;
    this.#profiled = null;
    this.#profiler = null;
    return p;
  }

  /** Throws a KernelError with the library's message when rc is not TL_OK. */
  check(op: string, rc: number): void {
    if (rc !== 0) throw new KernelError(op, rc, `${this.lib.tl_error_string(rc)}: ${this.lib.tl_last_error()}`);
  }

  get buildInfo(): string {
    const out = new BigUint64Array(1);
    this.check("tl_build_info", this.lib.tl_build_info(addressOf(out)));
    return new CString(Number(out[0]) as Pointer).toString();
  }

  get threads(): number {
    const out = new Int32Array(1);
    this.check("tl_get_num_threads", this.lib.tl_get_num_threads(addressOf(out)));
    return out[0]!;
  }
  set threads(n: number) {
    if (!Number.isInteger(n) || n < 1) throw new ShapeError(`threads: expected a positive integer, got ${n}`);
    this.check("tl_set_num_threads", this.lib.tl_set_num_threads(n));
  }

  allocRaw(bytes: number): DeviceBuffer {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new ShapeError(`alloc: bad size ${bytes}`);
    const out = new BigUint64Array(1);
    this.check("tl_alloc", this.lib.tl_alloc(addressOf(out), bytes));
    return new DeviceBuffer(this, Number(out[0]), bytes);
  }
  freeRaw(address: number): void {
    this.check("tl_free", this.lib.tl_free(address as Pointer));
  }
  zeroRaw(buf: DeviceBuffer, bytes: number): void {
    this.check("tl_zero", this.lib.tl_zero(buf.address("zero") as Pointer, bytes));
  }

  /** A tensor with its own buffer, zero-filled. Free it with `t.buffer.free()`. */
  tensor<D extends DType = "f32">(shape: readonly number[], dtype: D = "f32" as D): Tensor<D> {
    checkShape(shape, "tensor");
    const buf = this.allocRaw(numelOf(shape) * DTYPE_BYTES[dtype]);
    return new Tensor(buf, 0, shape, dtype);
  }

  /** A tensor holding a copy of `data`. */
  fromArray(data: Float32Array | Int32Array, shape: readonly number[] = [data.length]): Tensor {
    const t = this.tensor(shape, data instanceof Int32Array ? "i32" : "f32");
    return t.write(data);
  }

  upload(dst: Tensor, src: HostArray): void {
    if (src.byteLength !== dst.bytes)
      throw new ShapeError(`upload: tensor ${fmtShape(dst.shape)} ${dst.dtype} is ${dst.bytes} bytes, host data is ${src.byteLength}`);
    if (src.byteLength === 0) return;
    this.check("tl_upload", this.lib.tl_upload(dst.ptr("upload"), addressOf(src), src.byteLength));
  }
  download(dst: HostArray, src: Tensor): void {
    if (dst.byteLength !== src.bytes)
      throw new ShapeError(`download: tensor ${fmtShape(src.shape)} ${src.dtype} is ${src.bytes} bytes, host array is ${dst.byteLength}`);
    if (dst.byteLength === 0) return;
    this.check("tl_download", this.lib.tl_download(addressOf(dst), src.ptr("download"), src.bytes));
  }
  copy(dst: Tensor, src: Tensor): void {
    if (dst.bytes !== src.bytes || dst.dtype !== src.dtype)
      throw new ShapeError(`copy: ${dst} and ${src} differ in size or dtype`);
    if (dst.bytes === 0) return;
    this.check("tl_copy", this.lib.tl_copy(dst.ptr("copy"), src.ptr("copy"), src.bytes));
  }
  zero(t: Tensor): void {
    if (t.bytes === 0) return;
    this.check("tl_zero", this.lib.tl_zero(t.ptr("zero"), t.bytes));
  }
  sync(): void {
    this.check("tl_sync", this.lib.tl_sync());
  }
}

let cudaReason: string | null | undefined;
/**
 * Why the CUDA library cannot be used here, or null if it can: there must be an NVIDIA GPU
 * (/dev/nvidia0, or `nvidia-smi -L` lists one), the library must build (nvcc; the first call
 * compiles it, minutes) and its runtime must reach the GPU. Computed once per process.
 */
export function cudaUnavailableReason(): string | null {
  cudaReason ??= probeCuda();
  return cudaReason === "" ? null : cudaReason;
}

function probeCuda(): string {
  if (!existsSync("/dev/nvidia0")) {
    const smi = Bun.which("nvidia-smi") ? Bun.spawnSync(["nvidia-smi", "-L"], { stdout: "pipe", stderr: "pipe" }) : null;
    if (!smi || smi.exitCode !== 0 || !/GPU \d/.test(smi.stdout.toString()))
      return "no NVIDIA GPU found (/dev/nvidia0 is absent and `nvidia-smi -L` lists none)";
  }
  let lib: string;
  try {
    lib = buildCudaLibrary();
  } catch (e) {
    return `the CUDA kernel library could not be built: ${(e as Error).message}`;
  }
  // The runtime can still fail (driver older than the CUDA runtime, GPU hidden): ask it once.
  // The handle stays open on purpose: unloading a library with a static CUDA runtime is not worth the risk.
  const probe = dlopen(lib, { tl_sync: { args: [], returns: "i32" }, tl_last_error: { args: [], returns: "cstring" } });
  if (probe.symbols.tl_sync() !== 0) return `the CUDA runtime cannot use the GPU: ${probe.symbols.tl_last_error()}`;
  return "";
}

export interface BackendOptions extends CpuBuildOptions {
  device?: "auto" | DeviceKind;
  threads?: number;
}

/**
 * Opens a backend. `device` defaults to TINYLLAMA_DEVICE, then "auto" (cuda if usable, else cpu).
 * TINYLLAMA_CUDA_EMULATOR=<library> makes device "cuda" open that library (the CPU emulator build of
 * kernels/cuda, for tests) without looking for a GPU.
 */
export function openBackend(opts: BackendOptions = {}): Backend {
  const requested = opts.device ?? (process.env.TINYLLAMA_DEVICE as BackendOptions["device"]) ?? "auto";
  if (requested !== "auto" && requested !== "cpu" && requested !== "cuda")
    throw new Error(`TINYLLAMA_DEVICE must be one of cpu, cuda, auto; got '${requested}'`);
  // Tests: run the CUDA code path on the CPU emulator of the CUDA sources (test/cuda/emu.ts builds the
  // library), so the whole TypeScript side of a CUDA run (trainer, checkpoints, sampling) is exercised here.
  const emulator = requested === "cuda" ? process.env.TINYLLAMA_CUDA_EMULATOR : undefined;
  let kind: DeviceKind = "cpu";
  if (emulator) kind = "cuda";
  else if (requested !== "cpu") {
    const why = cudaUnavailableReason();
    if (why === null) kind = "cuda";
    else if (requested === "cuda") throw new Error(`device 'cuda' was requested but ${why}; use --device cpu`);
    else notice(`tinyllama: CUDA backend unavailable (${why}); using the CPU backend`);
  }
  const backend = new Backend(kind, emulator || (kind === "cuda" ? buildCudaLibrary() : buildCpuLibrary(opts)));
  const threads = opts.threads ?? envThreads();
  if (threads !== undefined) backend.threads = threads;
  return backend;
}

function envThreads(): number | undefined {
  const s = process.env.TINYLLAMA_THREADS;
  if (s === undefined || s === "") return undefined;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new Error(`TINYLLAMA_THREADS must be a positive integer, got '${s}'`);
  return n;
}

let noticed = false;
function notice(msg: string): void {
  if (noticed || process.env.TINYLLAMA_QUIET) return;
  noticed = true;
  process.stderr.write(msg + "\n");
}

let current: Backend | undefined;
/** The process-wide backend, opened on first use. */
export function getBackend(): Backend {
  current ??= openBackend();
  return current;
}
