/**
 * Run by distributed.bench.ts under `mpirun -np N`: times MpiCommunicator.allReduce (non-blocking
 * MPI_Iallreduce per bucket, polled against the deadline) against one blocking MPI_Allreduce over
 * the same buffer, alternating the two so machine noise hits both alike. Rank 0 prints a table.
 */
import { MpiCommunicator } from "@tinyllama/distributed";

const comm = MpiCommunicator.open();
const W = comm.worldSize;
const sizesMB = (process.env.BENCH_SIZES_MB ?? "1,16,64").split(",").map(Number);
const bucketsMB = (process.env.BENCH_BUCKETS_MB ?? "16,4").split(",").map(Number);
const reps = Number(process.env.BENCH_REPS ?? 5);

function best(f: () => void): number {
  let t = Infinity;
  for (let i = 0; i < reps; i++) {
    comm.barrier();
    const t0 = performance.now();
    f();
    t = Math.min(t, (performance.now() - t0) / 1000);
  }
  return t;
}

const rows: string[] = [];
for (const mb of sizesMB) {
  const buf = new Float32Array((mb << 20) / 4).fill(1 / W);
  const bytes = buf.byteLength;
  comm.allReduceBlocking(buf, "mean"); // warm up both paths
  for (const bmb of bucketsMB) {
    const c = MpiCommunicator.open({ bucketBytes: bmb << 20 });
    c.allReduce(buf, "mean");
    const ours = best(() => c.allReduce(buf, "mean"));
    const peer = best(() => comm.allReduceBlocking(buf, "mean"));
    const per = (bmb << 20) / 4;
    const peerBucketed = best(() => {
      for (let s = 0; s < buf.length; s += per) comm.allReduceBlocking(buf.subarray(s, Math.min(s + per, buf.length)), "mean");
    });
    const busBw = (t: number) => ((2 * (W - 1)) / W) * (bytes / t) / 1e9; // ring all-reduce bus bandwidth
    rows.push(
      `| ${mb} MiB | ${bmb} MiB | ${(ours * 1e3).toFixed(2)} ms | ${busBw(ours).toFixed(2)} GB/s | ${(peer * 1e3).toFixed(2)} ms | ${busBw(peer).toFixed(2)} GB/s | ${(peer / ours).toFixed(2)} | ${(peerBucketed * 1e3).toFixed(2)} ms | ${(peerBucketed / ours).toFixed(2)} |`,
    );
  }
}
if (comm.rank === 0) {
  console.log(`all-reduce (mean, f32) over ${W} ranks, best of ${reps}; bus bandwidth = 2(N-1)/N x bytes / time`);
  console.log("| buffer | bucket | allReduce (ours) | bus BW | MPI_Allreduce (blocking, 1 call) | bus BW | speed ratio ours/peer | MPI_Allreduce per bucket (blocking) | speed ratio ours/that |");
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) console.log(r);
}
comm.close();
