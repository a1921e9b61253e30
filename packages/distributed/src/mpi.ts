/**
 * OpenMPI through bun:ffi, via our shim kernels/dist/mpi_shim.c (built with mpicc on first use).
 * Works on host memory: CPU-backend tensors and typed arrays. One per process (MPI_Init runs once).
 */
import { dlopen, FFIType, type Library, type Pointer } from "bun:ffi";
import { join } from "node:path";
import { buildSharedLibrary, kernelsDir } from "@tinyllama/kernels";
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
import { bucketRanges } from "./shard.ts";

const { ptr, i32, i64, f64, cstring } = FFIType;
const mpiSymbols = {
  tl_mpi_init: { args: [ptr, ptr], returns: i32 },
  tl_mpi_allreduce_f32: { args: [ptr, i64, i32, f64], returns: i32 },
  tl_mpi_allreduce_blocking_f32: { args: [ptr, i64, i32], returns: i32 },
  tl_mpi_allreduce_f64: { args: [ptr, i64, i32, f64], returns: i32 },
  tl_mpi_bcast: { args: [ptr, i64, i32, f64], returns: i32 },
  tl_mpi_barrier: { args: [f64], returns: i32 },
  tl_mpi_reduce_scatter_f32: { args: [ptr, ptr, ptr, i32, f64], returns: i32 },
  tl_mpi_allgather_f32: { args: [ptr, ptr, ptr, f64], returns: i32 },
  tl_mpi_finalize: { args: [], returns: i32 },
  tl_mpi_abort: { args: [i32], returns: i32 },
  tl_mpi_last_error: { args: [], returns: cstring },
} as const;
type MpiLib = Library<typeof mpiSymbols>["symbols"];

const TL_MPI_TIMEOUT = 2;

export const MPI_INSTALL_HINT =
  "install OpenMPI's launcher and development files: 'apt-get install openmpi-bin libopenmpi-dev' on Debian/Ubuntu " +
  "(or set MPICC to an MPI C compiler wrapper)";

/** Compiles (or finds cached) the MPI shim and returns its path; throws saying what to install when MPI is missing. */
export function buildMpiShim(): string {
  const mpicc = process.env.MPICC ?? "mpicc";
  if (!Bun.which(mpicc)) throw new DistributedError(`the MPI compiler wrapper '${mpicc}' was not found: ${MPI_INSTALL_HINT}`);
  try {
    return buildSharedLibrary({
      name: "mpi",
      compiler: mpicc,
      sources: [join(kernelsDir(), "dist", "mpi_shim.c")],
      flags: ["-O2", "-fPIC", "-shared", "-std=gnu11", "-Wall", "-Wextra"],
      libs: ["-ldl"],
    });
  } catch (e) {
    const msg = (e as Error).message;
    const hint = /mpi\.h|-lmpi|cannot find/.test(msg) ? `\n(the MPI headers or library are missing: ${MPI_INSTALL_HINT})` : "";
    throw new DistributedError(`${msg}${hint}`);
  }
}

/** What the launcher (mpirun, srun) told this process, or null when it was started alone. */
export interface LaunchInfo {
  rank: number | null;
  worldSize: number | null;
  launcher: string;
}

function envInt(name: string): number | null {
  const s = process.env[name];
  if (s === undefined || s === "") return null;
  const n = Number(s);
  return Number.isInteger(n) && n >= 0 ? n : null;
}

/** Detects an MPI launch from the environment: OpenMPI (OMPI_COMM_WORLD_*), PMIx (PMIX_RANK), PMI (PMI_RANK/PMI_SIZE). */
export function mpiLaunchInfo(): LaunchInfo | null {
  const ompiSize = envInt("OMPI_COMM_WORLD_SIZE");
  if (ompiSize !== null) return { rank: envInt("OMPI_COMM_WORLD_RANK"), worldSize: ompiSize, launcher: "mpirun (OpenMPI)" };
  const pmiSize = envInt("PMI_SIZE");
  if (pmiSize !== null) return { rank: envInt("PMI_RANK"), worldSize: pmiSize, launcher: "PMI" };
  if (envInt("PMIX_RANK") !== null) return { rank: envInt("PMIX_RANK"), worldSize: null, launcher: "PMIx" };
  return null;
}

/** MPI itself: initialised once per process, shared by every MpiCommunicator object. */
interface MpiWorld {
  lib: MpiLib;
  rank: number;
  size: number;
  finalised: boolean;
}
let world: MpiWorld | null = null;

export class MpiCommunicator implements Communicator {
  readonly kind = "mpi" as const;
  readonly rank: number;
  readonly worldSize: number;
  readonly bucketBytes: number;
  readonly timeoutS: number;
  readonly #world: MpiWorld;
  readonly #lib: MpiLib;
  /** Reused for allReduceScalar, so a scalar costs no allocation. */
  readonly #scalar = new Float64Array(1);

  private constructor(w: MpiWorld, opts: CommunicatorOptions) {
    this.#world = w;
    this.#lib = w.lib;
    this.rank = w.rank;
    this.worldSize = w.size;
    ({ bucketBytes: this.bucketBytes, timeoutS: this.timeoutS } = resolveOptions(opts));
  }

  /**
   * A communicator over MPI_COMM_WORLD, initialising MPI on the first call. Later calls share the
   * same MPI world with their own options (e.g. another bucket size); close() on any of them
   * finalises MPI for all.
   */
  static open(opts: CommunicatorOptions = {}): MpiCommunicator {
    if (world?.finalised) throw new DistributedError("MPI was finalised by close(); MPI cannot be initialised twice in one process");
    if (!world) {
      const lib = dlopen(buildMpiShim(), mpiSymbols).symbols;
      const rank = new Int32Array(1), size = new Int32Array(1);
      const rc = lib.tl_mpi_init(rank, size);
      if (rc !== 0) throw new DistributedError(`MPI initialisation failed: ${lib.tl_mpi_last_error()}`);
      world = { lib, rank: rank[0]!, size: size[0]!, finalised: false };
    }
    return new MpiCommunicator(world, opts);
  }

  /** Throws on errors; on a timeout, prints why on stderr and aborts the whole job (every rank). */
  #check(collective: string, rc: number): void {
    if (rc === 0) return;
    if (rc === TL_MPI_TIMEOUT) {
      process.stderr.write(`${timeoutMessage(this.rank, collective, this.timeoutS)}\n`);
      this.#lib.tl_mpi_abort(1);
    }
    throw new DistributedError(`rank ${this.rank}: ${collective}: ${this.#lib.tl_mpi_last_error()}`);
  }

  #open(op: string): void {
    if (this.#world.finalised) throw new DistributedError(`${op}: the MPI communicator was closed`);
  }

  allReduce(buf: F32Buffer, op: ReduceOp = "sum"): void {
    this.#open("allReduce");
    const code = reduceOpCode("allReduce", op);
    const s = f32Span("allReduce", "buf", buf, "host");
    for (const b of bucketRanges(s.numel, this.bucketBytes))
      this.#check("allreduce", this.#lib.tl_mpi_allreduce_f32((s.address + b.start * 4) as Pointer, b.end - b.start, code, this.timeoutS));
  }

  /**
   * Plain blocking MPI_Allreduce over the whole buffer: no buckets, no deadline. The benchmark's
   * peer for allReduce(); training code should not use it (a dead peer hangs it forever).
   */
  allReduceBlocking(buf: F32Buffer, op: ReduceOp = "sum"): void {
    this.#open("allReduceBlocking");
    const code = reduceOpCode("allReduceBlocking", op);
    const s = f32Span("allReduceBlocking", "buf", buf, "host");
    this.#check("allreduce_blocking", this.#lib.tl_mpi_allreduce_blocking_f32(addr(s), s.numel, code));
  }

  broadcast(buf: AnyBuffer, root = 0): void {
    this.#open("broadcast");
    checkRoot("broadcast", root, this.worldSize);
    const s = byteSpan("broadcast", "buf", buf, "host");
    for (const b of bucketRanges(s.bytes, this.bucketBytes, 1))
      this.#check("broadcast", this.#lib.tl_mpi_bcast((s.address + b.start) as Pointer, b.end - b.start, root, this.timeoutS));
  }

  barrier(): void {
    this.#open("barrier");
    this.#check("barrier", this.#lib.tl_mpi_barrier(this.timeoutS));
  }

  reduceScatter(buf: F32Buffer, out: F32Buffer, op: ReduceOp = "sum"): void {
    this.#open("reduceScatter");
    const code = reduceOpCode("reduceScatter", op);
    const full = f32Span("reduceScatter", "buf", buf, "host");
    const part = f32Span("reduceScatter", "out", out, "host");
    const c = shardedCall("reduceScatter", "buf", full, "out", part, this.worldSize, this.rank);
    this.#check("reduce_scatter", this.#lib.tl_mpi_reduce_scatter_f32(addr(full), addr(part), c.plan.counts, code, this.timeoutS));
  }

  allGather(shard: F32Buffer, out: F32Buffer): void {
    this.#open("allGather");
    const full = f32Span("allGather", "out", out, "host");
    const part = f32Span("allGather", "shard", shard, "host");
    const c = shardedCall("allGather", "out", full, "shard", part, this.worldSize, this.rank);
    this.#check("allgather", this.#lib.tl_mpi_allgather_f32(addr(part), addr(full), c.plan.counts, this.timeoutS));
  }

  allReduceScalar(x: number, op: ScalarOp = "sum"): number {
    this.#open("allReduceScalar");
    const code = scalarOpCode("allReduceScalar", op);
    this.#scalar[0] = checkScalar("allReduceScalar", x);
    this.#check("allreduce_scalar", this.#lib.tl_mpi_allreduce_f64(this.#scalar, 1, code, this.timeoutS));
    return this.#scalar[0]!;
  }

  /** MPI_Finalize. Every rank must call it (OpenMPI treats a rank that exits without it as a failure). */
  close(): void {
    if (this.#world.finalised) return;
    this.#world.finalised = true;
    const rc = this.#lib.tl_mpi_finalize();
    if (rc !== 0) throw new DistributedError(`rank ${this.rank}: MPI_Finalize: ${this.#lib.tl_mpi_last_error()}`);
  }

  /** Ends every rank of the job now with `code` (MPI_Abort); for fatal errors on one rank. */
  abort(code = 1): never {
    this.#lib.tl_mpi_abort(code);
    process.exit(code);
  }
}

function addr(s: Span): Pointer | null {
  return s.bytes === 0 ? null : (s.address as Pointer);
}
