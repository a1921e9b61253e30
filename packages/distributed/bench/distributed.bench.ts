/**
 * `bun packages/distributed/bench/distributed.bench.ts [np]`: launches allreduce_worker.ts under
 * `mpirun -np np` (default 2, one thread each) and prints its table: our bucketed, deadline-polled
 * all-reduce against a plain blocking MPI_Allreduce in the same run.
 */
import { join } from "node:path";
import { buildMpiShim } from "@tinyllama/distributed";
import { peerMissing } from "../../../tools/bench/harness.ts";

const mpirun = Bun.which("mpirun");
if (!mpirun) {
  // No row: without MPI there is neither our all-reduce nor the peer to measure.
  peerMissing("OpenMPI", "mpirun not found, nothing to measure (apt-get install openmpi-bin libopenmpi-dev)");
  process.exit(0);
}
buildMpiShim();
const np = process.argv[2] ?? "2";
const cmd = [mpirun, "-np", np, "--oversubscribe", ...(process.getuid?.() === 0 ? ["--allow-run-as-root"] : [])];
cmd.push(process.execPath, join(import.meta.dir, "allreduce_worker.ts"));
const p = Bun.spawnSync(cmd, { stdout: "inherit", stderr: "inherit", env: { ...process.env, TINYLLAMA_THREADS: "1", OMP_NUM_THREADS: "1" } });
process.exit(p.exitCode ?? 1);
