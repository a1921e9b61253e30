/** Picks the communicator for how this process was started. */
import { DistributedError, type Communicator, type CommunicatorOptions } from "./communicator.ts";
import { LocalCommunicator } from "./local.ts";
import { MpiCommunicator, mpiLaunchInfo } from "./mpi.ts";
import { NcclCommunicator, type NcclOptions } from "./nccl.ts";

export type CommunicatorChoice = "auto" | "local" | "mpi" | "nccl";

export interface CreateCommunicatorOptions extends CommunicatorOptions, Pick<NcclOptions, "bootstrap" | "idFile" | "device"> {
  /** "auto" (default, or TINYLLAMA_COMM): MPI (or NCCL when `tensors` is "cuda") when launched with world size > 1, else local. */
  kind?: CommunicatorChoice;
  /** Where the gradients live: "cuda" makes auto pick NCCL instead of MPI. Default "cpu". */
  tensors?: "cpu" | "cuda";
}

/**
 * The communicator for this process: under `mpirun -np N` (N > 1) an MpiCommunicator (an
 * NcclCommunicator when `tensors: "cuda"`), otherwise a LocalCommunicator.
 */
export function createCommunicator(opts: CreateCommunicatorOptions = {}): Communicator {
  const kind = opts.kind ?? (process.env.TINYLLAMA_COMM as CommunicatorChoice | undefined) ?? "auto";
  if (!["auto", "local", "mpi", "nccl"].includes(kind)) throw new DistributedError(`TINYLLAMA_COMM must be auto, local, mpi or nccl; got '${kind}'`);
  if (opts.tensors !== undefined && opts.tensors !== "cpu" && opts.tensors !== "cuda")
    throw new DistributedError(`createCommunicator: tensors must be "cpu" or "cuda", got '${String(opts.tensors)}'`);
  if (kind === "local") return new LocalCommunicator(opts);
  if (kind === "mpi") return MpiCommunicator.open(opts);
  if (kind === "nccl") return NcclCommunicator.open(opts);
  const launch = mpiLaunchInfo();
  // PMIx without a size in the environment: ask MPI (a 1-rank world then behaves like local).
  if (launch && (launch.worldSize === null || launch.worldSize > 1))
    return opts.tensors === "cuda" ? NcclCommunicator.open(opts) : MpiCommunicator.open(opts);
  return new LocalCommunicator(opts);
}
