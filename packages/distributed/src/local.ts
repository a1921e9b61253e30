/** World size 1: every collective is the identity (a copy when output and input differ). */
import { Tensor } from "@tinyllama/kernels";
import { checkRoot, checkScalar, byteSpan, f32Span, reduceOpCode, scalarOpCode, shardedCall } from "./buffers.ts";
import { DistributedError, resolveOptions, type AnyBuffer, type Communicator, type CommunicatorOptions, type F32Buffer, type ReduceOp, type ScalarOp } from "./communicator.ts";

function copyF32(dst: F32Buffer, src: F32Buffer): void {
  if (dst instanceof Tensor && src instanceof Tensor) dst.backend.copy(dst, src);
  else if (dst instanceof Tensor) dst.write(src as Float32Array);
  else dst.set(src instanceof Tensor ? (src.read() as Float32Array) : src);
}

export class LocalCommunicator implements Communicator {
  readonly kind = "local" as const;
  readonly rank = 0;
  readonly worldSize = 1;
  readonly bucketBytes: number;
  readonly timeoutS: number;
  #closed = false;

  constructor(opts: CommunicatorOptions = {}) {
    ({ bucketBytes: this.bucketBytes, timeoutS: this.timeoutS } = resolveOptions(opts));
  }

  #open(op: string): void {
    if (this.#closed) throw new DistributedError(`${op}: the communicator was closed`);
  }

  allReduce(buf: F32Buffer, op: ReduceOp = "sum"): void {
    this.#open("allReduce");
    reduceOpCode("allReduce", op);
    f32Span("allReduce", "buf", buf, "any");
  }
  broadcast(buf: AnyBuffer, root = 0): void {
    this.#open("broadcast");
    checkRoot("broadcast", root, 1);
    byteSpan("broadcast", "buf", buf, "any");
  }
  barrier(): void {
    this.#open("barrier");
  }
  reduceScatter(buf: F32Buffer, out: F32Buffer, op: ReduceOp = "sum"): void {
    this.#open("reduceScatter");
    reduceOpCode("reduceScatter", op);
    const c = shardedCall("reduceScatter", "buf", f32Span("reduceScatter", "buf", buf, "any"), "out", f32Span("reduceScatter", "out", out, "any"), 1, 0);
    if (!c.inPlace && c.full.numel > 0) copyF32(out, buf);
  }
  allGather(shard: F32Buffer, out: F32Buffer): void {
    this.#open("allGather");
    const c = shardedCall("allGather", "out", f32Span("allGather", "out", out, "any"), "shard", f32Span("allGather", "shard", shard, "any"), 1, 0);
    if (!c.inPlace && c.full.numel > 0) copyF32(out, shard);
  }
  allReduceScalar(x: number, op: ScalarOp = "sum"): number {
    this.#open("allReduceScalar");
    scalarOpCode("allReduceScalar", op);
    return checkScalar("allReduceScalar", x);
  }
  close(): void {
    this.#closed = true;
  }
}
