/**
 * Run under `mpirun -np N`: exercises every collective of MpiCommunicator and compares with the
 * values each rank computes locally from every rank's (seeded, reproducible) inputs. Prints
 * "rank R: <check> ok" lines and, at the end, "rank R: all collectives ok".
 */
import { openBackend } from "@tinyllama/kernels";
import { mulberry32, randn } from "@tinyllama/testing";
import { DistributedError, MpiCommunicator, shardPlan, sliceFlat } from "@tinyllama/distributed";
import { check, rel, sameBits, throws } from "./check.ts";

const comm = MpiCommunicator.open();
const { rank, worldSize: W } = comm;
const log = (what: string) => console.log(`rank ${rank}: ${what} ok`);
check(W === Number(process.env.OMPI_COMM_WORLD_SIZE), `worldSize ${W} matches OMPI_COMM_WORLD_SIZE`);
check(rank === Number(process.env.OMPI_COMM_WORLD_RANK), `rank ${rank} matches OMPI_COMM_WORLD_RANK`);
// Two ranks: a+b is one rounding, so results must match bit for bit; more ranks may sum in another order.
const exact = W === 2;

/** Rank r's input for test `seed`: the same on every rank, so each can compute the expected result. */
const input = (seed: number, r: number, n: number) => randn(n, mulberry32(seed * 1000 + r));

function expectedReduce(seed: number, n: number, op: "sum" | "mean"): Float32Array {
  const out = new Float32Array(n);
  if (exact) {
    const a = input(seed, 0, n), b = input(seed, 1, n);
    for (let i = 0; i < n; i++) out[i] = op === "sum" ? a[i]! + b[i]! : Math.fround(a[i]! + b[i]!) * 0.5;
    return out;
  }
  const acc = new Float64Array(n);
  for (let r = 0; r < W; r++) input(seed, r, n).forEach((v, i) => (acc[i]! += v));
  acc.forEach((v, i) => (out[i] = op === "sum" ? v : v / W));
  return out;
}

function compare(got: Float32Array, want: Float32Array, what: string): void {
  if (exact) sameBits(got, want, what);
  else check(rel(got, want) < 1e-6, `${what}: relative error ${rel(got, want)}`);
  log(what);
}

// --- allReduce over a Float32Array, sum and mean, numel not a multiple of a 64-byte block
const N = 10_007;
for (const op of ["sum", "mean"] as const) {
  const a = input(1, rank, N);
  comm.allReduce(a, op);
  compare(a, expectedReduce(1, N, op), `allReduce ${op} Float32Array`);
}

// --- allReduce over a CPU-backend Tensor (a gradient arena's flat view)
const be = openBackend({ device: "cpu", threads: 1 });
const t = be.fromArray(input(2, rank, N));
comm.allReduce(t, "mean");
compare(t.read() as Float32Array, expectedReduce(2, N, "mean"), "allReduce mean Tensor");

// --- bucketed (64-byte and 4 KiB buckets, so many and a partial last one) equals one bucket
const whole = MpiCommunicator.open({ bucketBytes: 1 << 30 });
for (const bucketBytes of [64, 4096]) {
  const bucketed = MpiCommunicator.open({ bucketBytes });
  const a = input(3, rank, N), b = input(3, rank, N);
  bucketed.allReduce(a, "sum");
  whole.allReduce(b, "sum");
  sameBits(a, b, `allReduce in ${bucketBytes}-byte buckets vs one bucket`);
  log(`bucketed allReduce (${bucketBytes}-byte buckets) == unbucketed`);
}

// --- broadcast from every root: f32 tensor (bucketed at 64 bytes), Int32Array, empty
for (let root = 0; root < W; root++) {
  const small = MpiCommunicator.open({ bucketBytes: 64 });
  const p = be.fromArray(input(4, rank, 1000));
  small.broadcast(p, root);
  sameBits(p.read() as Float32Array, input(4, root, 1000), `broadcast f32 tensor from root ${root}`);
  const ids = Int32Array.from({ length: 33 }, (_, i) => i * (rank + 1));
  comm.broadcast(ids, root);
  check(ids.every((v, i) => v === i * (root + 1)), `broadcast Int32Array from root ${root}`);
  comm.broadcast(new Uint8Array(0), root);
  log(`broadcast from root ${root}`);
}
throws(() => comm.broadcast(new Float32Array(4), W), /root 2 is outside|root \d+ is outside/, "broadcast with a bad root");

// --- barrier
comm.barrier();
log("barrier");

// --- allReduceScalar
check(comm.allReduceScalar(rank + 1, "sum") === (W * (W + 1)) / 2, "allReduceScalar sum");
check(comm.allReduceScalar(rank + 1, "mean") === (W + 1) / 2, "allReduceScalar mean");
check(comm.allReduceScalar(rank * 10 - 3, "max") === (W - 1) * 10 - 3, "allReduceScalar max");
check(comm.allReduceScalar(rank * 10 - 3, "min") === -3, "allReduceScalar min");
check(comm.allReduceScalar(0.1 * (rank + 1)) === [0.1, 0.2, 0.3, 0.4].slice(0, W).reduce((s, x) => s + x, 0) || !exact, "allReduceScalar in float64");
log("allReduceScalar sum/mean/max/min");

// --- ZeRO-1: reduce-scatter then all-gather reconstructs the all-reduce (uneven sizes too)
for (const n of [N, 4096, 17, 1]) {
  const plan = shardPlan(n, W);
  const mine = plan.shards[rank]!;
  const want = expectedReduce(5, n, "mean");
  // separate output buffers
  const g = input(5, rank, n);
  const shard = new Float32Array(mine.count);
  comm.reduceScatter(g, shard, "mean");
  compare(shard, want.slice(mine.start, mine.end), `reduceScatter mean (n=${n}) into a separate shard`);
  const gathered = new Float32Array(n);
  comm.allGather(shard, gathered);
  compare(gathered, want, `allGather (n=${n}) from a separate shard`);
  // in place on a tensor, the way ZeRO-1 uses a gradient arena: reduce-scatter into the own range, all-gather back
  const gt = be.fromArray(input(5, rank, n));
  const own = sliceFlat(gt, mine.start, mine.end);
  comm.reduceScatter(gt, own, "mean");
  compare(own.read() as Float32Array, want.slice(mine.start, mine.end), `reduceScatter mean (n=${n}) in place`);
  comm.allGather(own, gt);
  compare(gt.read() as Float32Array, want, `reduceScatter + allGather in place (n=${n}) == allReduce mean`);
}
{
  const g = input(6, rank, N);
  const shard = new Float32Array(shardPlan(N, W).shards[rank]!.count);
  comm.reduceScatter(g, shard, "sum");
  const sum = expectedReduce(6, N, "sum");
  const mine = shardPlan(N, W).shards[rank]!;
  compare(shard, sum.slice(mine.start, mine.end), "reduceScatter sum");
}

// --- misuse is an Error on every rank (checked before any rank enters MPI, so none hangs)
throws(() => comm.reduceScatter(new Float32Array(100), new Float32Array(7)), /holds 7 floats but rank \d+'s shard/, "reduceScatter with a wrong shard size");
{
  const buf = new Float32Array(64);
  const mine = shardPlan(64, W).shards[rank]!;
  const wrong = buf.subarray((mine.start + 1) % 64, ((mine.start + 1) % 64) + mine.count);
  if (wrong.length === mine.count) throws(() => comm.allGather(wrong, buf), /overlaps 'out' but is not rank/, "allGather with a misplaced overlapping shard");
}
throws(() => comm.allReduce(new Float64Array(4) as unknown as Float32Array), /must be a Tensor or a Float32Array, got Float64Array/, "allReduce of a Float64Array");
throws(() => comm.allReduce(be.tensor([4], "i32")), /must be an f32 tensor, got i32/, "allReduce of an i32 tensor");
throws(() => comm.allReduce(new Float32Array(4), "max" as "sum"), /op must be 'sum' or 'mean'/, "allReduce with op max");
const freed = be.tensor([8]);
freed.buffer.free();
throws(() => comm.allReduce(freed), /already freed/, "allReduce of a freed tensor");
check(new DistributedError("x") instanceof Error, "DistributedError is an Error");
log("misuse errors");

comm.barrier();
comm.close();
throws(() => comm.barrier(), /closed/, "barrier after close");
throws(() => MpiCommunicator.open(), /cannot be initialised twice/, "open after close");
console.log(`rank ${rank}: all collectives ok`);
