/**
 * Run under `mpirun -np N` on a machine with >= N GPUs: NcclCommunicator's collectives on device
 * memory against values computed locally (like collectives.ts for MPI). Prints "rank R: nccl ok".
 */
import { mulberry32, randn } from "@tinyllama/testing";
import { DeviceF32, NcclCommunicator, shardPlan } from "@tinyllama/distributed";
import { check, rel } from "./check.ts";

const comm = NcclCommunicator.open({ bootstrap: "mpi", bucketBytes: 4096 });
const { rank, worldSize: W } = comm;
const input = (seed: number, r: number, n: number) => randn(n, mulberry32(seed * 1000 + r));
function expected(seed: number, n: number, op: "sum" | "mean"): Float64Array {
  const acc = new Float64Array(n);
  for (let r = 0; r < W; r++) input(seed, r, n).forEach((v, i) => (acc[i]! += v));
  return op === "sum" ? acc : acc.map((v) => v / W);
}
const close = (got: Float32Array, want: ArrayLike<number>, what: string) => {
  check(rel(got, want) < 1e-6, `${what}: relative error ${rel(got, want)}`);
  console.log(`rank ${rank}: nccl ${what} ok`);
};

for (const n of [10_007, 4096 * W, 17]) {
  for (const op of ["sum", "mean"] as const) {
    const d = DeviceF32.alloc(n).write(input(1, rank, n));
    comm.allReduce(d, op);
    close(d.read(), expected(1, n, op), `allReduce ${op} n=${n}`);
    d.free();
  }
  const plan = shardPlan(n, W), mine = plan.shards[rank]!;
  const g = DeviceF32.alloc(n).write(input(2, rank, n));
  const own = g.slice(mine.start, mine.end);
  comm.reduceScatter(g, own, "mean"); // in place (uniform -> ncclReduceScatter, else grouped ncclReduce)
  const want = expected(2, n, "mean");
  close(own.read(), want.slice(mine.start, mine.end), `reduceScatter in place n=${n} (uniform ${plan.uniform})`);
  comm.allGather(own, g);
  close(g.read(), want, `allGather in place n=${n}`);
  g.free();
}
for (let root = 0; root < W; root++) {
  const d = DeviceF32.alloc(1000).write(input(3, rank, 1000));
  comm.broadcast(d, root);
  close(d.read(), input(3, root, 1000), `broadcast root ${root}`);
  d.free();
}
check(comm.allReduceScalar(rank + 1, "sum") === (W * (W + 1)) / 2, "allReduceScalar sum");
check(comm.allReduceScalar(rank, "max") === W - 1, "allReduceScalar max");
comm.barrier();
comm.close();
console.log(`rank ${rank}: nccl ok`);
