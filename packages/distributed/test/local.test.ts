/** LocalCommunicator (world size 1) and createCommunicator's choice. */
import { afterEach, describe, expect, test } from "bun:test";
import { Arena, openBackend } from "@tinyllama/kernels";
import { AdamW, clipFactor, gradNorm } from "@tinyllama/optimizer";
import { mulberry32, randn } from "@tinyllama/testing";
import { ZeroAdamW, createCommunicator, DistributedError, LocalCommunicator, mpiLaunchInfo, resolveOptions, timeoutMessage } from "@tinyllama/distributed";

const be = openBackend({ device: "cpu", threads: 1 });

describe("LocalCommunicator", () => {
  test("collectives are identities; reduce-scatter / all-gather copy when not in place", () => {
    const c = new LocalCommunicator();
    expect([c.kind, c.rank, c.worldSize]).toEqual(["local", 0, 1]);
    const a = Float32Array.from([1, 2, 3]);
    c.allReduce(a, "sum");
    c.allReduce(a, "mean");
    c.broadcast(a, 0);
    c.barrier();
    expect([...a]).toEqual([1, 2, 3]);
    const out = be.tensor([3]);
    c.reduceScatter(a, out, "mean");
    expect([...(out.read() as Float32Array)]).toEqual([1, 2, 3]);
    const back = new Float32Array(3);
    c.allGather(out, back);
    expect([...back]).toEqual([1, 2, 3]);
    const t = be.fromArray(Float32Array.from([4, 5]));
    c.reduceScatter(t, t); // in place: untouched
    c.allGather(t, t);
    expect([...(t.read() as Float32Array)]).toEqual([4, 5]);
    expect(c.allReduceScalar(2.5, "max")).toBe(2.5);
    expect(c.allReduceScalar(Number.NaN)).toBeNaN(); // a NaN loss must reach the caller
  });

  test("validates like the MPI communicator", () => {
    const c = new LocalCommunicator();
    expect(() => c.broadcast(new Float32Array(2), 1)).toThrow(/root 1 is outside \[0, 1\)/);
    expect(() => c.reduceScatter(new Float32Array(4), new Float32Array(3))).toThrow(/holds 3 floats but rank 0's shard of 4 floats over 1 ranks is 4/);
    expect(() => c.allReduce(new Int32Array(2) as unknown as Float32Array)).toThrow(/must be a Tensor or a Float32Array, got Int32Array/);
    expect(() => c.allReduce(new Float32Array(2), "avg" as "sum")).toThrow(DistributedError);
    expect(() => c.allReduceScalar("1" as unknown as number)).toThrow(/expected a number, got string/);
    expect(() => c.allReduceScalar(1, "prod" as "sum")).toThrow(/op must be one of sum, mean, max, min/);
    c.close();
    expect(() => c.barrier()).toThrow(/closed/);
  });
});

describe("options and selection", () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const k of ["OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "TINYLLAMA_COMM", "TINYLLAMA_BUCKET_MB", "TINYLLAMA_COLLECTIVE_TIMEOUT_S"])
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
  });

  test("defaults: 16 MiB buckets, 300 s timeout; environment and options override", () => {
    delete process.env.TINYLLAMA_BUCKET_MB;
    delete process.env.TINYLLAMA_COLLECTIVE_TIMEOUT_S;
    expect(resolveOptions()).toEqual({ bucketBytes: 16 << 20, timeoutS: 300 });
    process.env.TINYLLAMA_BUCKET_MB = "25";
    process.env.TINYLLAMA_COLLECTIVE_TIMEOUT_S = "0";
    expect(resolveOptions()).toEqual({ bucketBytes: 25 << 20, timeoutS: 0 });
    expect(resolveOptions({ bucketBytes: 4096, timeoutS: 5 })).toEqual({ bucketBytes: 4096, timeoutS: 5 });
    process.env.TINYLLAMA_COLLECTIVE_TIMEOUT_S = "soon";
    expect(() => resolveOptions()).toThrow(/TINYLLAMA_COLLECTIVE_TIMEOUT_S must be a number of seconds/);
    expect(() => resolveOptions({ bucketBytes: 10, timeoutS: 1 })).toThrow(/bucketBytes must be an integer >= 64/);
    expect(timeoutMessage(3, "allreduce", 300)).toStartWith("rank 3: collective allreduce timed out after 300 s; another rank probably died");
  });

  test("launch detection from the environment", () => {
    for (const k of ["OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_SIZE", "PMI_RANK", "PMIX_RANK"]) delete process.env[k];
    expect(mpiLaunchInfo()).toBeNull();
    process.env.PMIX_RANK = "2";
    expect(mpiLaunchInfo()).toEqual({ rank: 2, worldSize: null, launcher: "PMIx" });
    process.env.OMPI_COMM_WORLD_SIZE = "4";
    process.env.OMPI_COMM_WORLD_RANK = "2";
    expect(mpiLaunchInfo()).toEqual({ rank: 2, worldSize: 4, launcher: "mpirun (OpenMPI)" });
  });

  test("createCommunicator: local when not launched by mpirun, or when world size is 1", () => {
    for (const k of ["OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "TINYLLAMA_COMM"]) delete process.env[k];
    expect(createCommunicator().kind).toBe("local");
    process.env.OMPI_COMM_WORLD_SIZE = "1";
    expect(createCommunicator({ bucketBytes: 1024 }).bucketBytes).toBe(1024);
    expect(createCommunicator().kind).toBe("local");
    expect(createCommunicator({ tensors: "cuda" }).kind).toBe("local"); // one GPU: nothing to talk to
    expect(() => createCommunicator({ tensors: "gpu" as "cuda" })).toThrow(/tensors must be "cpu" or "cuda"/);
    process.env.TINYLLAMA_COMM = "gloo";
    expect(() => createCommunicator()).toThrow(/TINYLLAMA_COMM must be auto, local, mpi or nccl/);
  });
});

describe("ZeroAdamW with one rank", () => {
  test("is AdamW: same parameters after clipped steps, full-size moments, the norm returned", () => {
    const specs = [{ name: "w", shape: [9, 7] }, { name: "g", shape: [7] }];
    const mk = () => new Arena(be, specs);
    const [p1, g1, p2, g2] = [mk(), mk(), mk(), mk()];
    const init = randn(p1.flat().numel, mulberry32(3));
    p1.flat().write(init);
    p2.flat().write(init);
    const ref = new AdamW(p1, g1, { lr: 0.01 });
    const z = new ZeroAdamW(new LocalCommunicator(), p2, g2, { lr: 0.01 });
    expect(z.stateBytes).toBe(8 * p2.flat().numel);
    for (let s = 1; s <= 3; s++) {
      const g = randn(g1.flat().numel, mulberry32(10 + s));
      g1.flat().write(g);
      g2.flat().write(g);
      const norm = gradNorm(g1);
      ref.step(0.01, clipFactor(norm, 0.5));
      expect(z.step(0.01, { maxGradNorm: 0.5 })).toBe(norm);
      expect([...(p2.flat().read() as Float32Array)]).toEqual([...(p1.flat().read() as Float32Array)]);
    }
    g2.flat().write(new Float32Array(g2.flat().numel).fill(Number.NaN));
    const before = p2.flat().read() as Float32Array;
    expect(z.step(0.01, { maxGradNorm: 1 })).toBeNaN(); // skipped: parameters untouched, step count unchanged
    expect([...(p2.flat().read() as Float32Array)]).toEqual([...before]);
    expect(z.stepCount).toBe(3);
    z.free();
    ref.free();
    for (const a of [p1, g1, p2, g2]) a.free();
  });
});
