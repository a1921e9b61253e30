/**
 * Run under `mpirun -np 2`: one rank fails while the other is in (or entering) an all-reduce.
 * argv[2] (the mode) picks how rank 1 fails:
 *   exit  rank 1 exits with code FAULT_EXIT_CODE (default 3) without MPI_Finalize, mid-training
 *   hang  rank 1 stops calling MPI (sleeps 120 s): only our collective timeout can end the job
 *   loop  both ranks all-reduce in a loop for up to 60 s after printing "rank R pid P ready";
 *         the test kills rank 1 with SIGKILL from outside
 */
import { MpiCommunicator } from "@tinyllama/distributed";

const mode = process.argv[2];
const comm = MpiCommunicator.open({ bucketBytes: 1 << 16 });
const grads = new Float32Array(1 << 18).fill(1);
comm.allReduce(grads, "sum"); // one collective that succeeds, so the failure is mid-training
console.log(`rank ${comm.rank} pid ${process.pid} ready`);

if (mode === "exit") {
  if (comm.rank === 1) {
    console.log(`rank 1: exiting with code ${process.env.FAULT_EXIT_CODE ?? 3} without finalising`);
    process.exit(Number(process.env.FAULT_EXIT_CODE ?? 3));
  }
  Bun.sleepSync(500);
  comm.allReduce(grads, "sum");
} else if (mode === "hang") {
  if (comm.rank === 1) {
    console.log("rank 1: hanging outside MPI");
    Bun.sleepSync(120_000);
  }
  comm.allReduce(grads, "sum");
} else if (mode === "loop") {
  const until = Date.now() + 60_000;
  while (Date.now() < until) comm.allReduce(grads, "mean");
} else throw new Error(`unknown mode '${mode}'`);
console.log(`rank ${comm.rank}: the collective completed, which it must not`);
comm.close();
