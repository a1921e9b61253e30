/**
 * Under mpirun: plans and applies this rank's placement as the trainer does, then reports the
 * kernels' thread count and the CPUs this rank may use (placement test in mpi.test.ts).
 */
import { readFileSync } from "node:fs";
import { openBackend } from "@tinyllama/kernels";
import { countCpuList, launcherCpuList, MpiCommunicator, placeRank } from "@tinyllama/distributed";

const comm = MpiCommunicator.open();
const before = ownCpus();
const plan = placeRank();
const backend = openBackend({ device: "cpu" });
if (plan.threads !== undefined) backend.threads = plan.threads;
const launcher = launcherCpuList();
comm.barrier();
console.log(
  `rank ${comm.rank}: placement threads=${backend.threads} cpus-before=${before} cpus-after=${ownCpus()} launcher-cpus=${launcher === null ? "unknown" : countCpuList(launcher)} ranks=${comm.worldSize} unbind=${plan.unbind} (${plan.reason})`,
);
comm.close();

function ownCpus(): number {
  const line = readFileSync("/proc/self/status", "utf8").split("\n").find((l) => l.startsWith("Cpus_allowed_list:"))!;
  return countCpuList(line.slice("Cpus_allowed_list:".length));
}
