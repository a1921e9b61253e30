/**
 * Run by distributed.bench.ts under `mpirun -np N`: times MpiCommunicator.allReduce (non-blocking
 * MPI_Iallreduce per bucket, polled against the deadline) against one blocking MPI_Allreduce over
 * the same buffer, alternating the two so machine noise hits both alike. Rank 0 prints a table.
 */
import { MpiCommunicator } from "@tinyllama/distributed";
import { benchQuick, reportRows, type BenchRow } from "../../../tools/bench/harness.ts";

const comm = MpiCommunicator.open();
const W = comm.worldSize;
const quick = benchQuick(); // 1 and 16 MiB buffers, 4 MiB buckets, best of 3
const sizesMB = (process.env.BENCH_SIZES_MB ?? (quick ? "1,16" : "1,16,64")).split(",").map(Number);
const bucketsMB = (process.env.BENCH_BUCKETS_MB ?? (quick ? "4" : "16,4")).split(",").map(Number);
const reps = Number(process.env.BENCH_REPS ?? (quick ? 3 : 5));
const scoreRows: BenchRow[] = [];

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
    scoreRows.push({
      component: "distributed",
      case: `all-reduce mean f32 ${mb} MiB over ${W} ranks, ${bmb} MiB buckets (bus bandwidth, best of ${reps})`,
      unit: "GB/s",
      ours: busBw(ours),
      peer: busBw(peer),
      peerName: "MPI_Allreduce, blocking, one call (OpenMPI, shared memory)",
      higherIsBetter: true,
      note: `MPI_Allreduce per bucket ${busBw(peerBucketed).toFixed(2)} GB/s`,
    });
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
  reportRows(scoreRows);
}
comm.close();
