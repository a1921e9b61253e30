/**
 * The data-parallel communicator: what every rank of a training job calls to combine gradients,
 * share parameters and agree on scalars. Implementations: LocalCommunicator (one process, no-ops),
 * MpiCommunicator (OpenMPI, host memory), NcclCommunicator (NCCL, GPU memory).
 */
import type { Tensor } from "@tinyllama/kernels";

/** Reductions over f32 buffers. `mean` is the sum times 1/worldSize. */
export type ReduceOp = "sum" | "mean";
/** Reductions over scalars (losses, squared norms, flags). */
export type ScalarOp = "sum" | "mean" | "max" | "min";

/**
 * A flat f32 buffer: a Tensor (host memory for MPI and Local, device memory for NCCL) or a
 * Float32Array (host memory). Collectives treat it as `numel` contiguous floats.
 */
export type F32Buffer = Tensor | Float32Array;
/** broadcast() copies bytes, so any dtype works (token ids, seeds, parameters). */
export type AnyBuffer = Tensor | Float32Array | Int32Array | Uint32Array | Uint16Array | Uint8Array | Float64Array;

export type CommunicatorKind = "local" | "mpi" | "nccl";

export interface Communicator {
  readonly kind: CommunicatorKind;
  /** This process's index in [0, worldSize). */
  readonly rank: number;
  readonly worldSize: number;
  /** allReduce() and broadcast() split buffers into chunks of at most this many bytes. */
  readonly bucketBytes: number;
  /** Seconds a collective may wait for the other ranks before the job is aborted (0: forever). */
  readonly timeoutS: number;

  /** In place: buf = op over all ranks of buf, in buckets of `bucketBytes`. */
  allReduce(buf: F32Buffer, op?: ReduceOp): void;
  /** In place: every rank's buf becomes root's buf (parameters at start, so all ranks begin identical). */
  broadcast(buf: AnyBuffer, root?: number): void;
  /** Returns when every rank has called barrier(). */
  barrier(): void;
  /**
   * ZeRO-1 gradient step: `out` (this rank's shard, `shardPlan(buf.length, worldSize).shards[rank].count`
   * floats) = op over ranks of buf's shard range. `out` may be that exact range of `buf` (in place);
   * then buf's other ranges keep unspecified contents.
   */
  reduceScatter(buf: F32Buffer, out: F32Buffer, op?: ReduceOp): void;
  /**
   * ZeRO-1 parameter step: out = the ranks' shards concatenated in rank order. `shard` may be this
   * rank's own range of `out` (in place), which is how updated parameters are redistributed.
   */
  allGather(shard: F32Buffer, out: F32Buffer): void;
  /** op over ranks of x, computed in float64. */
  allReduceScalar(x: number, op?: ScalarOp): number;
  /** Releases the communicator (MPI_Finalize, ncclCommDestroy). Required before a clean exit. */
  close(): void;
}

export interface CommunicatorOptions {
  /** Bucket size for allReduce()/broadcast() (default TINYLLAMA_BUCKET_MB or 16 MiB). */
  bucketBytes?: number;
  /** Collective timeout in seconds (default TINYLLAMA_COLLECTIVE_TIMEOUT_S or 300; 0 disables it). */
  timeoutS?: number;
}

export class DistributedError extends Error {
  override name = "DistributedError";
}

export const DEFAULT_BUCKET_BYTES = 16 << 20;
export const DEFAULT_TIMEOUT_S = 300;

function envNumber(name: string, what: string): number | undefined {
  const s = process.env[name];
  if (s === undefined || s === "") return undefined;
  const n = Number(s);
  if (!Number.isFinite(n) || n < 0) throw new DistributedError(`${name} must be ${what}, got '${s}'`);
  return n;
}

/** Fills in defaults from options, then environment, then constants; validates. */
export function resolveOptions(opts: CommunicatorOptions = {}): Required<CommunicatorOptions> {
  const mb = envNumber("TINYLLAMA_BUCKET_MB", "a positive number of MiB");
  const bucketBytes = opts.bucketBytes ?? (mb !== undefined ? Math.floor(mb * (1 << 20)) : DEFAULT_BUCKET_BYTES);
  if (!Number.isSafeInteger(bucketBytes) || bucketBytes < 64)
    throw new DistributedError(`bucketBytes must be an integer >= 64, got ${bucketBytes}`);
  const timeoutS = opts.timeoutS ?? envNumber("TINYLLAMA_COLLECTIVE_TIMEOUT_S", "a number of seconds >= 0 (0 waits forever)") ?? DEFAULT_TIMEOUT_S;
  if (!Number.isFinite(timeoutS) || timeoutS < 0) throw new DistributedError(`timeoutS must be a number >= 0, got ${timeoutS}`);
  return { bucketBytes, timeoutS };
}

/** The text every rank prints when a collective times out, before the job is aborted. */
export function timeoutMessage(rank: number, collective: string, timeoutS: number): string {
  return (
    `rank ${rank}: collective ${collective} timed out after ${timeoutS} s; another rank probably died or hangs. ` +
    `Aborting the job (raise TINYLLAMA_COLLECTIVE_TIMEOUT_S if a step legitimately takes longer).`
  );
}
