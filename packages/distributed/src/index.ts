/**
 * @tinyllama/distributed: data-parallel communicators. `createCommunicator()` returns an
 * MpiCommunicator under mpirun (world size > 1), an NcclCommunicator for GPU tensors when asked,
 * else a LocalCommunicator.
 */
export {
  DEFAULT_BUCKET_BYTES,
  DEFAULT_TIMEOUT_S,
  DistributedError,
  resolveOptions,
  timeoutMessage,
  type AnyBuffer,
  type Communicator,
  type CommunicatorKind,
  type CommunicatorOptions,
  type F32Buffer,
  type ReduceOp,
  type ScalarOp,
} from "./communicator.ts";
export { LocalCommunicator } from "./local.ts";
export { MpiCommunicator, buildMpiShim, mpiLaunchInfo, MPI_INSTALL_HINT, type LaunchInfo } from "./mpi.ts";
export { bucketRanges, shardOf, shardPlan, shardRuns, sliceFlat, type FlatRun, type Shard, type ShardPlan } from "./shard.ts";
export { createCommunicator, type CommunicatorChoice, type CreateCommunicatorOptions } from "./create.ts";
export { NcclCommunicator, DeviceF32, buildNcclShim, ncclDeviceCount, ncclShim, isDeviceTensor, type NcclOptions } from "./nccl.ts";
export { ZeroAdamW, type ZeroAdamWState, type ZeroStepOptions } from "./zero.ts";
export { countCpuList, launcherCpuList, placeRank, placementInput, planPlacement, widenAffinity, type Placement, type PlacementInput } from "./placement.ts";
