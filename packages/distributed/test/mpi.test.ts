/**
 * MpiCommunicator under `mpirun -np 2` (each rank one thread): every collective against values
 * computed locally, data-parallel gradients against one process, and what happens when a rank
 * dies or hangs. Skipped, with a line saying so, where mpirun is not installed.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { buildCpuLibrary } from "@tinyllama/kernels";
import { buildMpiShim, DistributedError } from "@tinyllama/distributed";
import { MPIRUN, mpirun } from "./mpirun.ts";

if (!MPIRUN) console.log("SKIP distributed/mpi tests: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)");

describe.skipIf(!MPIRUN)("MpiCommunicator under mpirun -np 2", () => {
  beforeAll(() => {
    // Build once here, so the two ranks find both libraries cached instead of compiling them twice.
    buildMpiShim();
    buildCpuLibrary();
  });

  test("every collective matches the locally computed result", async () => {
    const r = await mpirun("collectives.ts");
    if (r.code !== 0) console.log(r.out);
    expect(r.code).toBe(0);
    expect(r.out).toContain("rank 0: all collectives ok");
    expect(r.out).toContain("rank 1: all collectives ok");
    expect(r.out).toContain("rank 1: bucketed allReduce (64-byte buckets) == unbucketed ok");
    expect(r.out).toContain("rank 0: reduceScatter + allGather in place (n=10007) == allReduce mean ok");
  }, 200_000);

  test("3 ranks: uneven shards and a reduction order that is no longer one rounding (relative error < 1e-6)", async () => {
    const r = await mpirun("collectives.ts", [], { np: 3 });
    if (r.code !== 0) console.log(r.out);
    expect(r.code).toBe(0);
    for (const k of [0, 1, 2]) expect(r.out).toContain(`rank ${k}: all collectives ok`);
  }, 200_000);

  test("2 ranks on half a batch each, all-reduced (mean), equal one process on the whole batch", async () => {
    const r = await mpirun("equivalence.ts");
    if (r.code !== 0) console.log(r.out);
    expect(r.code).toBe(0);
    expect(r.out).toContain("equivalence ok");
    for (const name of ["w1", "b1", "w2", "b2"]) expect(r.out).toMatch(new RegExp(`grad ${name}: relative error \\d\\.\\d+e-(\\d+)`));
  }, 200_000);

  test("the TinyLlama model (micro preset) on 2 ranks x 2 sequences, all-reduced, equals one process on 4", async () => {
    const r = await mpirun("model_equivalence.ts");
    if (r.code !== 0) console.log(r.out);
    expect(r.code).toBe(0);
    expect(r.out).toContain("model equivalence ok");
    expect(r.out).toMatch(/model micro: 21 gradients, worst relative error \d\.\d+e-\d+/);
  }, 200_000);

  // The box's cores divided between the ranks, whatever mpirun's binding: default (one core per rank
  // for -np 2, lifted when a rank's share is larger) or --bind-to none (each rank used to start one
  // thread per core of the machine: 2 ranks x 2 threads on this 2-core box).
  for (const [label, mpirunArgs] of [["default binding", []], ["--bind-to none", ["--bind-to", "none"]]] as const) {
    test(`placement, ${label}: each rank runs its share of the cores (cores / ranks, at least 1) and may run on that many`, async () => {
      const r = await mpirun("placement.ts", [], { mpirunArgs: [...mpirunArgs], env: { TINYLLAMA_THREADS: "", OMP_NUM_THREADS: "" } });
      if (r.code !== 0) console.log(r.out);
      expect(r.code).toBe(0);
      const lines = [...r.out.matchAll(/rank (\d): placement threads=(\d+) cpus-before=(\d+) cpus-after=(\d+) launcher-cpus=(\d+) ranks=2 unbind=(true|false)/g)];
      expect(lines.length).toBe(2);
      for (const [, , threads, before, after, launcher, unbind] of lines) {
        const share = Math.max(1, Math.floor(Number(launcher) / 2));
        expect(Number(threads)).toBe(share);
        expect(Number(after)).toBeGreaterThanOrEqual(share);
        // lifted exactly when the binding left the rank fewer CPUs than its share
        expect(unbind).toBe(String(Number(before) < share));
        if (unbind === "true") expect(Number(after)).toBe(Number(launcher));
      }
    }, 200_000);
  }

  test("ZeRO-1 AdamW (moments for the own shard only) equals replicated AdamW on all-reduced gradients", async () => {
    const r = await mpirun("zero1.ts");
    if (r.code !== 0) console.log(r.out);
    expect(r.code).toBe(0);
    expect(r.out).toContain("rank 0: zero1 ok (moments 1712 of 3424 floats)");
    expect(r.out).toContain("rank 1: zero1 ok (moments 1712 of 3424 floats)");
    expect(r.out).toContain("rank 1: step 3: ZeRO-1 vs replicated AdamW parameters");
  }, 200_000);

  test("a rank that exits mid-training (no MPI_Finalize) ends the job with a message and its exit code", async () => {
    const r = await mpirun("fault.ts", ["exit"]);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain("rank 1: exiting with code 3 without finalising");
    expect(r.out).toMatch(/exited with non-zero status|returned\s+a non-zero exit code/);
    expect(r.out).not.toContain("the collective completed");
    expect(r.seconds).toBeLessThan(60);
  }, 200_000);

  test("a rank that exits with code 0 but without MPI_Finalize still fails the job", async () => {
    const r = await mpirun("fault.ts", ["exit"], { env: { FAULT_EXIT_CODE: "0" } });
    expect(r.code).not.toBe(0);
    expect(r.out).toContain("exiting improperly");
    expect(r.out).not.toContain("the collective completed");
    expect(r.seconds).toBeLessThan(60);
  }, 200_000);

  test("a rank killed with SIGKILL from outside mid-all-reduce ends the job within seconds", async () => {
    let killed = 0;
    const r = await mpirun("fault.ts", ["loop"], {
      onOutput: (out) => {
        const m = /rank 1 pid (\d+) ready/.exec(out);
        if (m && !killed && out.includes("rank 0 pid")) {
          killed = Number(m[1]);
          process.kill(killed, "SIGKILL");
        }
      },
    });
    expect(killed).toBeGreaterThan(0);
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/rank 1 with PID \d+ on node \S+ exited on signal 9/);
    expect(r.out).not.toContain("the collective completed");
    // The loop would run 60 s; OpenMPI notices the dead rank and kills the job long before.
    expect(r.seconds).toBeLessThan(40);
  }, 200_000);

  test("a rank that hangs outside MPI: the others time out, say why, and abort the job", async () => {
    const r = await mpirun("fault.ts", ["hang"], { env: { TINYLLAMA_COLLECTIVE_TIMEOUT_S: "3" } });
    expect(r.code).not.toBe(0);
    expect(r.out).toContain("rank 0: collective allreduce timed out after 3 s; another rank probably died");
    // OpenMPI usually adds "MPI_ABORT was invoked on rank 0", but its help-text relay sometimes fails
    // ("ORTE_ERROR_LOG: Data unpack would read past end of buffer"), so only our own line is required.
    expect(r.out).not.toContain("the collective completed");
    // rank 1 would sleep 120 s: MPI_Abort must have killed it
    expect(r.seconds).toBeLessThan(60);
  }, 200_000);
});

test("a missing mpicc is an error naming the packages to install", () => {
  const saved = process.env.MPICC;
  process.env.MPICC = "/nonexistent/mpicc";
  try {
    expect(() => buildMpiShim()).toThrow(DistributedError);
    expect(() => buildMpiShim()).toThrow(/'\/nonexistent\/mpicc' was not found: install .*apt-get install openmpi-bin libopenmpi-dev/);
  } finally {
    if (saved === undefined) delete process.env.MPICC;
    else process.env.MPICC = saved;
  }
});
