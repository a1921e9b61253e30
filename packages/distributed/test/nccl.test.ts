/**
 * NCCL: the shim must compile everywhere (no NCCL or CUDA headers needed) and fail with a clear
 * message where NCCL cannot run; the functional test needs >= 2 GPUs and mpirun, and is skipped
 * with a line saying so elsewhere.
 */
import { dlopen, FFIType } from "bun:ffi";
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findCCompiler, kernelsDir } from "@tinyllama/kernels";
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

/**
 * The real nccl_shim.c against stand-ins for libnccl.so.2 and libcuda.so.1 (test/mock/*.c: host
 * memory, a mirrored world of 2 ranks), in a child process whose loader path holds the stand-ins.
 * This runs every NcclCommunicator code path (loading, file bootstrap, buckets, uniform and uneven
 * sharding, scalars, timeout + ncclCommAbort) on machines without a GPU; only NCCL itself is fake.
 */
describe("NcclCommunicator against stand-in libnccl / libcuda", () => {
  const dir = mkdtempSync(join(tmpdir(), "tl-nccl-mock-"));
  const cudaDir = join(dir, "cuda"), ncclDir = join(dir, "venv", "lib", "python3.11", "site-packages", "nvidia", "nccl", "lib");
  const cc = findCCompiler();
  const build = (src: string, out: string) => {
    mkdirSync(join(out, ".."), { recursive: true });
    const p = Bun.spawnSync([cc, "-O1", "-fPIC", "-shared", "-o", out, join(import.meta.dir, "mock", src)], { stderr: "pipe" });
    if (p.exitCode !== 0) throw new Error(p.stderr.toString());
  };
  build("mock_cuda.c", join(cudaDir, "libcuda.so.1"));
  build("mock_nccl.c", join(ncclDir, "libnccl.so.2"));
  buildNcclShim();
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const run = (args: string[], env: Record<string, string>) => {
    const idFile = join(dir, `id-${Math.random().toString(36).slice(2)}`);
    const p = Bun.spawnSync([process.execPath, join(import.meta.dir, "workers", "nccl_mock.ts"), ...args], {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, LD_LIBRARY_PATH: cudaDir, TINYLLAMA_RANK: "0", TINYLLAMA_WORLD_SIZE: "2", TINYLLAMA_NCCL_ID_FILE: idFile, NCCL_LIB: "", VIRTUAL_ENV: "", CONDA_PREFIX: "", ...env },
      timeout: 60_000,
    });
    return { code: p.exitCode, out: p.stdout.toString() + p.stderr.toString() };
  };

  test("every collective, with NCCL found in a virtualenv's site-packages/nvidia/nccl/lib", () => {
    const r = run([], { VIRTUAL_ENV: join(dir, "venv") });
    if (r.code !== 0) console.log(r.out);
    expect(r.code).toBe(0);
    expect(r.out).toContain("nccl mock ok");
    expect(r.out).toContain("mock: ncclCommInitRank nranks=2 rank=0"); // the unique id survived the file bootstrap
    // 3000 floats in 4096-byte buckets: 1024 + 1024 + 952; mean is ncclAvg (4) on f32 (7), on stream 0
    expect(r.out).toContain("mock: ncclAllReduce count=952 dtype=7 op=0 inplace=1 stream=(nil)");
    expect(r.out).toContain("mock: ncclAllReduce count=1024 dtype=7 op=4 inplace=1");
    // uniform shards: one NCCL call each; uneven (17 = 16 + 1): grouped per-root calls
    expect(r.out).toContain("mock: ncclReduceScatter recvcount=2048 dtype=7 op=0 inplace=1");
    expect(r.out).toContain("mock: ncclAllGather sendcount=2048 dtype=7 inplace=1");
    expect(r.out).toMatch(/ncclGroupStart\nmock: ncclReduce count=16 dtype=7 op=0 root=0 inplace=1 stream=\(nil\)\nmock: ncclReduce count=1 dtype=7 op=0 root=1 inplace=1 stream=\(nil\)\nmock: ncclGroupEnd/);
    expect(r.out).toMatch(/ncclBroadcast count=64 dtype=1 root=0 inplace=1[^\n]*\nmock: ncclBroadcast count=4 dtype=1 root=1/);
    expect(r.out).toContain("mock: ncclAllReduce count=1 dtype=8 op=2"); // scalar max in f64
    expect(r.out).toContain("mock: ncclCommDestroy");
  });

  test("a collective that never completes: the timeout message, ncclCommAbort, exit code 1", () => {
    const t0 = performance.now();
    const r = run(["hang"], { NCCL_LIB: ncclDir, MOCK_CUDA_HANG: "1", TINYLLAMA_COLLECTIVE_TIMEOUT_S: "1" });
    expect(r.code).toBe(1);
    expect(r.out).toContain("rank 0: collective allreduce timed out after 1 s; another rank probably died");
    expect(r.out).toContain("mock: ncclCommAbort");
    expect(r.out).not.toContain("the hung collective returned");
    expect(performance.now() - t0).toBeLessThan(30_000);
  });

  test("no libnccl anywhere: the error lists where it looked and what to install", () => {
    const r = run([], { HOME: dir });
    expect(r.code).not.toBe(0);
    expect(r.out).toContain("NCCL (libnccl.so.2) was not found (tried libnccl.so.2");
    expect(r.out).toContain("pip install nvidia-nccl-cu12");
  });
});
