/**
 * Run alone (no mpirun) against test/mock's stand-in libnccl.so.2 / libcuda.so.1 (LD_LIBRARY_PATH,
 * NCCL_LIB), as rank 0 of a mirrored world of 2 (file bootstrap): every collective of
 * NcclCommunicator goes through the real nccl_shim.c, and results are checked against the mirror
 * world's arithmetic (sum = 2x, mean = x). argv[2] "hang" makes the stream never finish instead.
 */
import { mulberry32, randn } from "@tinyllama/testing";
import { DeviceF32, NcclCommunicator, shardPlan } from "@tinyllama/distributed";
import { check, sameBits } from "./check.ts";

const comm = NcclCommunicator.open({ bootstrap: "file", bucketBytes: 4096 });
check(comm.rank === 0 && comm.worldSize === 2 && comm.device === 0, `rank ${comm.rank} of ${comm.worldSize} on device ${comm.device}`);
const x = (n: number, seed = 1) => randn(n, mulberry32(seed));

if (process.argv[2] === "hang") {
  comm.allReduce(DeviceF32.alloc(16).write(x(16)), "sum");
  throw new Error("the hung collective returned");
}

const n = 3000; // 12000 bytes: three 4096-byte buckets
const d = DeviceF32.alloc(n).write(x(n));
comm.allReduce(d, "sum");
sameBits(d.read(), x(n).map((v) => 2 * v), "allReduce sum");
d.write(x(n));
comm.allReduce(d, "mean");
sameBits(d.read(), x(n), "allReduce mean");
console.log("allReduce ok");

for (const size of [4096, 17]) {
  const plan = shardPlan(size, 2), mine = plan.shards[0]!;
  const g = DeviceF32.alloc(size).write(x(size, 2));
  comm.reduceScatter(g, g.slice(mine.start, mine.end), "sum");
  const got = g.read();
  sameBits(got.subarray(mine.start, mine.end), x(size, 2).subarray(mine.start, mine.end).map((v) => 2 * v), `reduceScatter n=${size}`);
  // the mirrored world's other shard equals ours before the step: restore the full buffer, then all-gather
  g.write(x(size, 2));
  comm.allGather(g.slice(mine.start, mine.end), g);
  sameBits(g.read(), x(size, 2), `allGather n=${size}`);
  const sep = DeviceF32.alloc(mine.count);
  comm.reduceScatter(DeviceF32.alloc(size).write(x(size, 3)), sep, "mean");
  sameBits(sep.read(), x(size, 3).subarray(mine.start, mine.end), `reduceScatter into a separate shard n=${size}`);
  console.log(`sharded n=${size} (uniform ${plan.uniform}) ok`);
}

const b = DeviceF32.alloc(100).write(x(100, 4));
comm.broadcast(b, 1);
comm.broadcast(b, 0);
sameBits(b.read(), x(100, 4), "broadcast");
check(comm.allReduceScalar(3, "sum") === 6, "allReduceScalar sum in the mirror world");
check(comm.allReduceScalar(3, "max") === 3, "allReduceScalar max");
comm.barrier();
try {
  comm.allReduce(new Float32Array(4));
  throw new Error("a host array was accepted");
} catch (e) {
  check(/Float32Array \(host memory\); NCCL needs GPU/.test((e as Error).message), `host array rejected: ${(e as Error).message}`);
}
comm.close();
console.log("nccl mock ok");
