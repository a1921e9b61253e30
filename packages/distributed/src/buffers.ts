/** Turns the buffers collectives accept into raw addresses, after checking everything C cannot. */
import { ptr as addressOf } from "bun:ffi";
import { Tensor } from "@tinyllama/kernels";
import { DistributedError, type AnyBuffer, type F32Buffer } from "./communicator.ts";
import { shardPlan, type ShardPlan } from "./shard.ts";

/** Where a communicator needs its buffers: host memory (Local, MPI) or GPU memory (NCCL). */
export type Residence = "host" | "device" | "any";

export interface Span {
  /** Address of the first byte (0 for an empty buffer). */
  readonly address: number;
  readonly bytes: number;
  /** Elements of the buffer's own type (floats for F32Buffer). */
  readonly numel: number;
  /** Keeps a typed array's memory alive while C uses the address. */
  readonly owner: AnyBuffer;
}

function describe(buf: unknown): string {
  if (buf === null) return "null";
  if (typeof buf !== "object") return typeof buf;
  return (buf as object).constructor?.name ?? "object";
}

function tensorSpan(op: string, name: string, t: Tensor, where: Residence, f32: boolean): Span {
  if (f32 && t.dtype !== "f32") throw new DistributedError(`${op}: '${name}' must be an f32 tensor, got ${t.dtype}`);
  const kind = t.backend.kind;
  if (where === "host" && kind !== "cpu")
    throw new DistributedError(`${op}: '${name}' lives on the ${kind} backend; this communicator works on host memory (use NCCL for GPU tensors)`);
  if (where === "device" && kind !== "cuda")
    throw new DistributedError(`${op}: '${name}' lives on the ${kind} backend; NCCL needs GPU (cuda) tensors`);
  return { address: t.numel === 0 ? 0 : Number(t.ptr(op)), bytes: t.bytes, numel: t.numel, owner: t };
}

/** An f32 buffer (Tensor or Float32Array) as a span; throws a DistributedError naming the op on misuse. */
export function f32Span(op: string, name: string, buf: F32Buffer, where: Residence): Span {
  if (buf instanceof Tensor) return tensorSpan(op, name, buf, where, true);
  if (buf instanceof Float32Array) {
    if (where === "device") throw new DistributedError(`${op}: '${name}' is a Float32Array (host memory); NCCL needs GPU (cuda) tensors`);
    return { address: buf.length === 0 ? 0 : Number(addressOf(buf)), bytes: buf.byteLength, numel: buf.length, owner: buf };
  }
  throw new DistributedError(`${op}: '${name}' must be a Tensor or a Float32Array, got ${describe(buf)}`);
}

/** Any buffer as bytes (broadcast). */
export function byteSpan(op: string, name: string, buf: AnyBuffer, where: Residence): Span {
  if (buf instanceof Tensor) return tensorSpan(op, name, buf, where, false);
  if (ArrayBuffer.isView(buf) && !(buf instanceof DataView)) {
    if (where === "device") throw new DistributedError(`${op}: '${name}' is a ${describe(buf)} (host memory); NCCL needs GPU (cuda) tensors`);
    return { address: buf.byteLength === 0 ? 0 : Number(addressOf(buf)), bytes: buf.byteLength, numel: buf.byteLength, owner: buf };
  }
  throw new DistributedError(`${op}: '${name}' must be a Tensor or a typed array, got ${describe(buf)}`);
}

/** How the second buffer of a reduce-scatter / all-gather relates to the full one. */
export interface ShardedCall {
  full: Span;
  part: Span;
  plan: ShardPlan;
  /** `part` is exactly this rank's range of `full`. */
  inPlace: boolean;
}

/**
 * Checks a (full buffer, this rank's shard) pair: the shard has this rank's count, and it either is
 * this rank's exact range of the full buffer or does not overlap it at all.
 */
export function shardedCall(op: string, fullName: string, full: Span, partName: string, part: Span, worldSize: number, rank: number): ShardedCall {
  const plan = shardPlan(full.numel, worldSize);
  const mine = plan.shards[rank]!;
  if (part.numel !== mine.count)
    throw new DistributedError(
      `${op}: '${partName}' holds ${part.numel} floats but rank ${rank}'s shard of ${full.numel} floats over ${worldSize} ranks is ${mine.count} ` +
        `(elements [${mine.start}, ${mine.end}); see shardPlan)`,
    );
  const inPlace = part.numel > 0 && full.numel > 0 && part.address === full.address + mine.start * 4;
  const overlap = part.bytes > 0 && full.bytes > 0 && part.address < full.address + full.bytes && full.address < part.address + part.bytes;
  if (overlap && !inPlace)
    throw new DistributedError(`${op}: '${partName}' overlaps '${fullName}' but is not rank ${rank}'s range [${mine.start}, ${mine.end}) of it`);
  return { full, part, plan, inPlace };
}

export function checkRoot(op: string, root: number, worldSize: number): void {
  if (!Number.isInteger(root) || root < 0 || root >= worldSize) throw new DistributedError(`${op}: root ${root} is outside [0, ${worldSize})`);
}

const REDUCE_OPS = ["sum", "mean"] as const;
const SCALAR_OPS = ["sum", "mean", "max", "min"] as const;

export function reduceOpCode(op: string, value: unknown): number {
  const i = (REDUCE_OPS as readonly unknown[]).indexOf(value);
  if (i < 0) throw new DistributedError(`${op}: op must be 'sum' or 'mean', got ${String(value)}`);
  return i;
}

/** 0 sum, 1 mean, 2 max, 3 min (the shims' numbering). */
export function scalarOpCode(op: string, value: unknown): number {
  const i = (SCALAR_OPS as readonly unknown[]).indexOf(value);
  if (i < 0) throw new DistributedError(`${op}: op must be one of ${SCALAR_OPS.join(", ")}, got ${String(value)}`);
  return i;
}

export function checkScalar(op: string, x: unknown): number {
  if (typeof x !== "number") throw new DistributedError(`${op}: expected a number, got ${describe(x)}`);
  return x;
}
