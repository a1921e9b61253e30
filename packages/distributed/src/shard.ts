/**
 * ZeRO-1 sharding of a flat arena: each rank owns one contiguous range of the parameters,
 * gradients and optimizer state. Boundaries fall on 64-byte multiples, so a shard of a 64-byte
 * aligned arena starts 64-byte aligned (SIMD kernels, cache lines, NCCL's alignment preference).
 */
import { ShapeError, Tensor } from "@tinyllama/kernels";
import { DistributedError } from "./communicator.ts";

/** One rank's range [start, end) of a flat buffer, in elements. */
export interface Shard {
  readonly rank: number;
  readonly start: number;
  readonly end: number;
  readonly count: number;
}

export interface ShardPlan {
  readonly numel: number;
  readonly worldSize: number;
  /** Elements per 64-byte block: shard boundaries are multiples of this. */
  readonly alignElems: number;
  readonly shards: readonly Shard[];
  /** shards[r].count for every r (what MPI's reduce-scatter and all-gather take). */
  readonly counts: Int32Array;
  /** Every shard has the same count (NCCL can then use one ncclReduceScatter / ncclAllGather). */
  readonly uniform: boolean;
}

/**
 * Splits numel elements of elemBytes each into worldSize contiguous shards: the buffer is cut into
 * 64-byte blocks (the last may be partial) and the blocks are dealt out as evenly as possible, the
 * first `blocks % worldSize` ranks taking one more. Shards differ by at most one block; a rank gets
 * an empty shard only when there are fewer blocks than ranks.
 */
export function shardPlan(numel: number, worldSize: number, elemBytes = 4, alignBytes = 64): ShardPlan {
  if (!Number.isSafeInteger(numel) || numel < 0) throw new DistributedError(`shardPlan: numel must be an integer >= 0, got ${numel}`);
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new DistributedError(`shardPlan: worldSize must be an integer >= 1, got ${worldSize}`);
  if (!Number.isInteger(elemBytes) || elemBytes < 1 || alignBytes % elemBytes !== 0)
    throw new DistributedError(`shardPlan: alignBytes (${alignBytes}) must be a multiple of elemBytes (${elemBytes})`);
  const alignElems = alignBytes / elemBytes;
  const blocks = Math.ceil(numel / alignElems);
  const base = Math.floor(blocks / worldSize), extra = blocks % worldSize;
  const shards: Shard[] = [];
  const counts = new Int32Array(worldSize);
  let block = 0;
  for (let r = 0; r < worldSize; r++) {
    const nb = base + (r < extra ? 1 : 0);
    const start = Math.min(block * alignElems, numel);
    const end = Math.min((block + nb) * alignElems, numel);
    block += nb;
    if (end - start > 0x7fffffff) throw new DistributedError(`shardPlan: a shard of ${end - start} elements exceeds MPI's int count; use more ranks`);
    shards.push({ rank: r, start, end, count: end - start });
    counts[r] = end - start;
  }
  return { numel, worldSize, alignElems, shards, counts, uniform: counts.every((c) => c === counts[0]) };
}

/** This rank's shard of a flat buffer of numel f32 elements. */
export function shardOf(numel: number, worldSize: number, rank: number): Shard {
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) throw new DistributedError(`shardOf: rank ${rank} is outside [0, ${worldSize})`);
  return shardPlan(numel, worldSize).shards[rank]!;
}

/** Elements [start, end) of a flat (1-D) tensor, as a tensor over the same memory. */
export function sliceFlat(t: Tensor, start: number, end: number): Tensor {
  if (t.shape.length !== 1) throw new ShapeError(`sliceFlat: expected a flat 1-D tensor, got shape [${t.shape.join(", ")}]; use arena.flat()`);
  return t.rows(start, end - start);
}

/** A contiguous range of a flat arena that one fused optimizer call steps (e.g. @tinyllama/optimizer's AdamWRun). */
export interface FlatRun {
  readonly start: number;
  readonly end: number;
}

/**
 * The parts of `runs` inside `shard`, each with `localStart`/`localEnd` relative to the shard: the
 * optimizer steps params/grads at [start, end) and its shard-sized moment buffers at
 * [localStart, localEnd). Runs that straddle a boundary are cut (AdamW is elementwise, so cutting
 * changes nothing); runs outside the shard are dropped.
 */
export function shardRuns<R extends FlatRun>(runs: readonly R[], shard: Shard): (R & { localStart: number; localEnd: number })[] {
  const out: (R & { localStart: number; localEnd: number })[] = [];
  for (const r of runs) {
    const start = Math.max(r.start, shard.start), end = Math.min(r.end, shard.end);
    if (end <= start) continue;
    out.push({ ...r, start, end, localStart: start - shard.start, localEnd: end - shard.start });
  }
  return out;
}

/** Contiguous chunks of at most bucketBytes (rounded down to whole 64-byte blocks) covering [0, numel). */
export function bucketRanges(numel: number, bucketBytes: number, elemBytes = 4): { start: number; end: number }[] {
  const per = Math.max(64, Math.floor(bucketBytes / 64) * 64) / elemBytes;
  const out: { start: number; end: number }[] = [];
  for (let s = 0; s < numel; s += per) out.push({ start: s, end: Math.min(s + per, numel) });
  return out;
}
