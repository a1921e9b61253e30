/**
 * NCCL for GPU tensors, one process per GPU, through our shim kernels/dist/nccl_shim.c (compiled
 * with the system C compiler, no NCCL/CUDA headers; libnccl.so.2 and libcuda.so.1 are dlopen()ed
 * at run time). The ncclUniqueId is made on rank 0 and sent to the others over MPI (under mpirun)
 * or through a file on a shared filesystem (TINYLLAMA_NCCL_ID_FILE, with RANK / WORLD_SIZE).
 */
import { dlopen, FFIType, type Library, type Pointer } from "bun:ffi";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildSharedLibrary, findCCompiler, kernelsDir, Tensor } from "@tinyllama/kernels";
import { byteSpan, checkRoot, checkScalar, f32Span, reduceOpCode, scalarOpCode, shardedCall, type Span } from "./buffers.ts";
import {
  DistributedError,
  resolveOptions,
  timeoutMessage,
  type AnyBuffer,
  type Communicator,
  type CommunicatorOptions,
  type F32Buffer,
  type ReduceOp,
  type ScalarOp,
} from "./communicator.ts";
import { MpiCommunicator } from "./mpi.ts";
import { bucketRanges } from "./shard.ts";

const { ptr, i32, u64, f64, cstring } = FFIType;
const ncclSymbols = {
  tl_nccl_load: { args: [], returns: i32 },
  tl_nccl_last_error: { args: [], returns: cstring },
  tl_nccl_version: { args: [ptr, ptr], returns: i32 },
  tl_nccl_device_count: { args: [ptr], returns: i32 },
  tl_nccl_get_unique_id: { args: [ptr], returns: i32 },
  tl_nccl_init: { args: [i32, ptr, i32, i32], returns: i32 },
  tl_nccl_allreduce: { args: [ptr, u64, i32, i32, f64], returns: i32 },
  tl_nccl_bcast: { args: [ptr, u64, i32, f64], returns: i32 },
  tl_nccl_reduce_scatter: { args: [ptr, ptr, ptr, i32, f64], returns: i32 },
  tl_nccl_allgather: { args: [ptr, ptr, ptr, f64], returns: i32 },
  tl_nccl_allreduce_scalar: { args: [ptr, i32, f64], returns: i32 },
  tl_nccl_barrier: { args: [f64], returns: i32 },
  tl_nccl_destroy: { args: [], returns: i32 },
  tl_nccl_abort: { args: [], returns: i32 },
  tl_nccl_dev_alloc: { args: [ptr, u64], returns: i32 },
  tl_nccl_dev_free: { args: [u64], returns: i32 },
  tl_nccl_upload: { args: [u64, ptr, u64], returns: i32 },
  tl_nccl_download: { args: [ptr, u64, u64], returns: i32 },
} as const;
export type NcclLib = Library<typeof ncclSymbols>["symbols"];

const TL_NCCL_TIMEOUT = 2;
const NCCL_FLOAT32 = 7;
const UNIQUE_ID_BYTES = 128;

/** Compiles (or finds cached) the NCCL shim with the system C compiler; needs no NCCL or CUDA headers. */
export function buildNcclShim(): string {
  return buildSharedLibrary({
    name: "nccl",
    compiler: findCCompiler(),
    sources: [join(kernelsDir(), "dist", "nccl_shim.c")],
    flags: ["-O2", "-fPIC", "-shared", "-std=gnu11", "-Wall", "-Wextra"],
    libs: ["-ldl"],
  });
}

let lib: NcclLib | null = null;
/** The loaded shim (NCCL and the CUDA driver are loaded by its first call that needs them). */
export function ncclShim(): NcclLib {
  lib ??= dlopen(buildNcclShim(), ncclSymbols).symbols;
  return lib;
}

function must(l: NcclLib, what: string, rc: number): void {
  if (rc !== 0) throw new DistributedError(`${what}: ${l.tl_nccl_last_error()}`);
}

/** Number of CUDA devices, or a DistributedError saying why NCCL cannot run here (no driver, no libnccl). */
export function ncclDeviceCount(): number {
  const l = ncclShim();
  const n = new Int32Array(1);
  must(l, "NCCL", l.tl_nccl_device_count(n));
  return n[0]!;
}

/**
 * Raw f32 device memory from the CUDA driver, for tests and tools that have no CUDA backend at hand
 * (the trainer passes its CUDA-backend tensors instead).
 */
export class DeviceF32 {
  #address: number;
  readonly #owned: boolean;
  private constructor(
    readonly numel: number,
    address: number,
    owned: boolean,
  ) {
    this.#address = address;
    this.#owned = owned;
  }
  /** numel floats of device memory on the current device (uninitialised). */
  static alloc(numel: number): DeviceF32 {
    if (!Number.isSafeInteger(numel) || numel < 0) throw new DistributedError(`DeviceF32.alloc: bad size ${numel}`);
    const l = ncclShim();
    const out = new BigUint64Array(1);
    must(l, "cuMemAlloc", l.tl_nccl_dev_alloc(out, numel * 4));
    return new DeviceF32(numel, Number(out[0]), true);
  }
  get address(): number {
    if (!this.#address) throw new DistributedError("DeviceF32 was already freed");
    return this.#address;
  }
  /** Elements [start, end) as a borrowed view (not separately freed). */
  slice(start: number, end: number): DeviceF32 {
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start || end > this.numel)
      throw new DistributedError(`DeviceF32.slice: [${start}, ${end}) is outside [0, ${this.numel})`);
    return new DeviceF32(end - start, this.address + start * 4, false);
  }
  write(src: Float32Array): this {
    if (src.length !== this.numel) throw new DistributedError(`DeviceF32.write: ${src.length} floats for a buffer of ${this.numel}`);
    const l = ncclShim();
    must(l, "cuMemcpyHtoD", l.tl_nccl_upload(this.address, src, src.byteLength));
    return this;
  }
  read(): Float32Array {
    const out = new Float32Array(this.numel);
    const l = ncclShim();
    must(l, "cuMemcpyDtoH", l.tl_nccl_download(out, this.address, out.byteLength));
    return out;
  }
  free(): void {
    if (!this.#owned) throw new DistributedError("DeviceF32.free: this is a slice; free the buffer it came from");
    if (!this.#address) return;
    must(ncclShim(), "cuMemFree", ncclShim().tl_nccl_dev_free(this.#address));
    this.#address = 0;
  }
}

export interface NcclOptions extends CommunicatorOptions {
  /**
   * How ranks exchange the ncclUniqueId: "mpi" (default under mpirun: broadcast from rank 0) or
   * "file" (rank 0 writes `idFile`, the others wait for it; rank and world size from
   * TINYLLAMA_RANK/RANK and TINYLLAMA_WORLD_SIZE/WORLD_SIZE).
   */
  bootstrap?: "mpi" | "file";
  /** For bootstrap "file": a path every rank can read (default TINYLLAMA_NCCL_ID_FILE). */
  idFile?: string;
  /** The GPU ordinal (default: the node-local rank modulo the number of GPUs). */
  device?: number;
}

function envRank(names: string[]): number | null {
  for (const n of names) {
    const v = process.env[n];
    if (v !== undefined && v !== "" && Number.isInteger(Number(v)) && Number(v) >= 0) return Number(v);
  }
  return null;
}

function deviceSpan(op: string, name: string, buf: F32Buffer | DeviceF32): Span {
  if (buf instanceof DeviceF32) return { address: buf.numel === 0 ? 0 : buf.address, bytes: buf.numel * 4, numel: buf.numel, owner: new Float32Array(0) };
  return f32Span(op, name, buf, "device");
}

export class NcclCommunicator implements Communicator {
  readonly kind = "nccl" as const;
  readonly rank: number;
  readonly worldSize: number;
  readonly device: number;
  readonly bucketBytes: number;
  readonly timeoutS: number;
  readonly #lib: NcclLib;
  readonly #mpi: MpiCommunicator | null;
  #closed = false;
  readonly #scalar = new Float64Array(1);

  private constructor(l: NcclLib, rank: number, worldSize: number, device: number, mpi: MpiCommunicator | null, opts: CommunicatorOptions) {
    this.#lib = l;
    this.rank = rank;
    this.worldSize = worldSize;
    this.device = device;
    this.#mpi = mpi;
    ({ bucketBytes: this.bucketBytes, timeoutS: this.timeoutS } = resolveOptions(opts));
  }

  /** Loads NCCL, exchanges the unique id and joins the communicator (collective: every rank calls it). */
  static open(opts: NcclOptions = {}): NcclCommunicator {
    const l = ncclShim();
    const { timeoutS } = resolveOptions(opts);
    must(l, "NCCL", l.tl_nccl_load());
    const count = ncclDeviceCount();
    if (count < 1) throw new DistributedError("NCCL: no CUDA device is visible (check CUDA_VISIBLE_DEVICES)");
    const bootstrap = opts.bootstrap ?? (process.env.TINYLLAMA_NCCL_ID_FILE && !process.env.OMPI_COMM_WORLD_SIZE ? "file" : "mpi");
    const id = new Uint8Array(UNIQUE_ID_BYTES);
    let rank: number, size: number, mpi: MpiCommunicator | null = null;
    if (bootstrap === "mpi") {
      mpi = MpiCommunicator.open(opts);
      ({ rank, worldSize: size } = mpi);
      if (rank === 0) must(l, "ncclGetUniqueId", l.tl_nccl_get_unique_id(id));
      mpi.broadcast(id, 0);
    } else {
      const r = envRank(["TINYLLAMA_RANK", "RANK"]), w = envRank(["TINYLLAMA_WORLD_SIZE", "WORLD_SIZE"]);
      const file = opts.idFile ?? process.env.TINYLLAMA_NCCL_ID_FILE;
      if (r === null || w === null || !file)
        throw new DistributedError("NCCL file bootstrap needs TINYLLAMA_RANK (or RANK), TINYLLAMA_WORLD_SIZE (or WORLD_SIZE) and TINYLLAMA_NCCL_ID_FILE");
      rank = r;
      size = w;
      if (rank === 0) {
        must(l, "ncclGetUniqueId", l.tl_nccl_get_unique_id(id));
        writeFileSync(`${file}.tmp${process.pid}`, Buffer.from(id).toString("hex"));
        renameSync(`${file}.tmp${process.pid}`, file); // readers never see half an id
      } else {
        const deadline = Date.now() + (timeoutS > 0 ? timeoutS * 1000 : Infinity);
        while (!existsSync(file)) {
          if (Date.now() > deadline) throw new DistributedError(`rank ${rank}: no NCCL id in ${file} after ${timeoutS} s; is rank 0 running?`);
          Bun.sleepSync(50);
        }
        id.set(Buffer.from(readFileSync(file, "utf8").trim(), "hex"));
      }
    }
    const local = envRank(["OMPI_COMM_WORLD_LOCAL_RANK", "LOCAL_RANK", "SLURM_LOCALID"]) ?? 0;
    const device = opts.device ?? local % count;
    must(l, `rank ${rank}: ncclCommInitRank`, l.tl_nccl_init(size, id, rank, device));
    return new NcclCommunicator(l, rank, size, device, mpi, opts);
  }

  #check(collective: string, rc: number): void {
    if (rc === 0) return;
    if (rc === TL_NCCL_TIMEOUT) {
      process.stderr.write(`${timeoutMessage(this.rank, collective, this.timeoutS)}\n`);
      this.#lib.tl_nccl_abort();
      if (this.#mpi) this.#mpi.abort(1);
      process.exit(1);
    }
    throw new DistributedError(`rank ${this.rank}: ${collective}: ${this.#lib.tl_nccl_last_error()}`);
  }

  #open(op: string): void {
    if (this.#closed) throw new DistributedError(`${op}: the NCCL communicator was closed`);
  }

  allReduce(buf: F32Buffer | DeviceF32, op: ReduceOp = "sum"): void {
    this.#open("allReduce");
    const code = reduceOpCode("allReduce", op);
    const s = deviceSpan("allReduce", "buf", buf);
    for (const b of bucketRanges(s.numel, this.bucketBytes))
      this.#check("allreduce", this.#lib.tl_nccl_allreduce((s.address + b.start * 4) as Pointer, b.end - b.start, NCCL_FLOAT32, code, this.timeoutS));
  }

  broadcast(buf: AnyBuffer | DeviceF32, root = 0): void {
    this.#open("broadcast");
    checkRoot("broadcast", root, this.worldSize);
    const s = buf instanceof DeviceF32 ? deviceSpan("broadcast", "buf", buf) : byteSpan("broadcast", "buf", buf, "device");
    for (const b of bucketRanges(s.bytes, this.bucketBytes, 1))
      this.#check("broadcast", this.#lib.tl_nccl_bcast((s.address + b.start) as Pointer, b.end - b.start, root, this.timeoutS));
  }

  barrier(): void {
    this.#open("barrier");
    this.#check("barrier", this.#lib.tl_nccl_barrier(this.timeoutS));
  }

  reduceScatter(buf: F32Buffer | DeviceF32, out: F32Buffer | DeviceF32, op: ReduceOp = "sum"): void {
    this.#open("reduceScatter");
    const code = reduceOpCode("reduceScatter", op);
    const full = deviceSpan("reduceScatter", "buf", buf), part = deviceSpan("reduceScatter", "out", out);
    const c = shardedCall("reduceScatter", "buf", full, "out", part, this.worldSize, this.rank);
    this.#check("reduce_scatter", this.#lib.tl_nccl_reduce_scatter(addr(full), addr(part), c.plan.counts, code, this.timeoutS));
  }

  allGather(shard: F32Buffer | DeviceF32, out: F32Buffer | DeviceF32): void {
    this.#open("allGather");
    const full = deviceSpan("allGather", "out", out), part = deviceSpan("allGather", "shard", shard);
    const c = shardedCall("allGather", "out", full, "shard", part, this.worldSize, this.rank);
    this.#check("allgather", this.#lib.tl_nccl_allgather(addr(part), addr(full), c.plan.counts, this.timeoutS));
  }

  allReduceScalar(x: number, op: ScalarOp = "sum"): number {
    this.#open("allReduceScalar");
    const code = scalarOpCode("allReduceScalar", op);
    this.#scalar[0] = checkScalar("allReduceScalar", x);
    this.#check("allreduce_scalar", this.#lib.tl_nccl_allreduce_scalar(this.#scalar, code, this.timeoutS));
    return this.#scalar[0]!;
  }

  /** ncclCommDestroy, then MPI_Finalize when MPI bootstrapped the communicator. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const rc = this.#lib.tl_nccl_destroy();
    this.#mpi?.close();
    if (rc !== 0) throw new DistributedError(`rank ${this.rank}: ncclCommDestroy: ${this.#lib.tl_nccl_last_error()}`);
  }
}

function addr(s: Span): Pointer | null {
  return s.bytes === 0 ? null : (s.address as Pointer);
}

/** True when `t` can be used by an NcclCommunicator without copying (a CUDA-backend tensor). */
export function isDeviceTensor(t: unknown): boolean {
  return t instanceof Tensor && t.backend.kind === "cuda";
}
