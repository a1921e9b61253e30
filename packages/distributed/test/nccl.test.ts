/**
 * NCCL: the shim must compile everywhere (no NCCL or CUDA headers needed) and fail with a clear
 * message where NCCL cannot run; the functional test needs >= 2 GPUs and mpirun, and is skipped
 * with a line saying so elsewhere.
 */
import { dlopen, FFIType } from "bun:ffi";
import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { kernelsDir } from "@tinyllama/kernels";
import { buildNcclShim, DistributedError, NcclCommunicator, ncclDeviceCount } from "@tinyllama/distributed";
import { MPIRUN, mpirun } from "./mpirun.ts";

test("nccl_shim.c compiles with the system C compiler, without NCCL or CUDA headers, and exports the ABI", () => {
  const src = readFileSync(join(kernelsDir(), "dist", "nccl_shim.c"), "utf8");
  expect(src).not.toMatch(/#include\s*[<"](nccl|cuda|cuda_runtime)\.h[>"]/);
  const path = buildNcclShim();
  expect(existsSync(path)).toBe(true);
  // dlopen resolves every symbol or throws
  const { symbols, close } = dlopen(path, {
    tl_nccl_load: { args: [], returns: FFIType.i32 },
    tl_nccl_last_error: { args: [], returns: FFIType.cstring },
    tl_nccl_get_unique_id: { args: [FFIType.ptr], returns: FFIType.i32 },
    tl_nccl_init: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    tl_nccl_allreduce: { args: [FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.i32, FFIType.f64], returns: FFIType.i32 },
    tl_nccl_bcast: { args: [FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.f64], returns: FFIType.i32 },
    tl_nccl_reduce_scatter: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.i32, FFIType.f64], returns: FFIType.i32 },
    tl_nccl_allgather: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.f64], returns: FFIType.i32 },
    tl_nccl_destroy: { args: [], returns: FFIType.i32 },
    tl_nccl_abort: { args: [], returns: FFIType.i32 },
  });
  // Collectives before init are a state error, not a crash.
  expect(symbols.tl_nccl_allreduce(null, 4, 7, 0, 1)).toBe(4);
  expect(String(symbols.tl_nccl_last_error())).toContain("no NCCL communicator");
  expect(symbols.tl_nccl_destroy()).toBe(0);
  close();
});

const noGpu = !existsSync("/dev/nvidia0") && !existsSync("/dev/nvidiactl");
test.skipIf(!noGpu)("without a GPU driver, NcclCommunicator.open() says what is missing", () => {
  expect(() => NcclCommunicator.open()).toThrow(DistributedError);
  expect(() => ncclDeviceCount()).toThrow(/libcuda\.so\.1\) could not be loaded.*NCCL needs an NVIDIA GPU and its driver/);
});

function gpuCount(): { n: number; why: string } {
  if (noGpu) return { n: 0, why: "no NVIDIA GPU (/dev/nvidia0 is absent)" };
  try {
    return { n: ncclDeviceCount(), why: "" };
  } catch (e) {
    return { n: 0, why: (e as Error).message };
  }
}
const gpus = gpuCount();
const runnable = gpus.n >= 2 && !!MPIRUN;
if (!runnable)
  console.log(`SKIP distributed/nccl functional test: needs >= 2 GPUs and mpirun (found ${gpus.n} GPU(s)${gpus.why ? `: ${gpus.why}` : ""}${MPIRUN ? "" : "; no mpirun"})`);

test.skipIf(!runnable)("NCCL collectives on 2 GPUs match the locally computed results", async () => {
  const r = await mpirun("nccl.ts", [], { np: 2 });
  if (r.code !== 0) console.log(r.out);
  expect(r.code).toBe(0);
  expect(r.out).toContain("rank 0: nccl ok");
  expect(r.out).toContain("rank 1: nccl ok");
}, 300_000);
