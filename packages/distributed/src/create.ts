/** Picks the communicator for how this process was started. */
import { DistributedError, type Communicator, type CommunicatorOptions } from "./communicator.ts";
import { LocalCommunicator } from "./local.ts";
import { MpiCommunicator, mpiLaunchInfo } from "./mpi.ts";

export interface CreateCommunicatorOptions extends CommunicatorOptions {
  /** "auto" (default, or TINYLLAMA_COMM): MPI when launched with world size > 1, else local. */
  kind?: "auto" | "local" | "mpi";
}

/**
 * The communicator for this process: under `mpirun -np N` (N > 1) an MpiCommunicator, otherwise a
 * LocalCommunicator. GPU jobs construct an NcclCommunicator explicitly (it needs a device).
 */
export function createCommunicator(opts: CreateCommunicatorOptions = {}): Communicator {
  const kind = opts.kind ?? (process.env.TINYLLAMA_COMM as CreateCommunicatorOptions["kind"]) ?? "auto";
  if (kind !== "auto" && kind !== "local" && kind !== "mpi") throw new DistributedError(`TINYLLAMA_COMM must be auto, local or mpi; got '${kind}'`);
  if (kind === "local") return new LocalCommunicator(opts);
  if (kind === "mpi") return MpiCommunicator.open(opts);
  const launch = mpiLaunchInfo();
  // PMIx without a size in the environment: ask MPI (a 1-rank world then behaves like local).
  if (launch && (launch.worldSize === null || launch.worldSize > 1)) return MpiCommunicator.open(opts);
  return new LocalCommunicator(opts);
}
