/**
 * planPlacement: each rank of a one-machine job gets its share of the cores, whatever OpenMPI's
 * binding default would have given it; explicit choices of the user are kept.
 */
import { describe, expect, test } from "bun:test";
import { countCpuList, placementInput, planPlacement, type PlacementInput } from "@tinyllama/distributed";

const base: PlacementInput = { localRanks: 2, affinityCpus: 1, launcherCpus: 16, requestedThreads: undefined, explicitBinding: false, openmpi: true };

describe("planPlacement", () => {
  test("mpirun -np 2 on 16 cores: OpenMPI's default one-core binding is lifted and each rank runs 8 threads", () => {
    const p = planPlacement(base);
    expect(p.threads).toBe(8);
    expect(p.unbind).toBe(true);
    expect(p.reason).toContain("lifted");
  });

  test("mpirun -np 2 on 2 cores: one thread per rank; the one-core binding already is the share", () => {
    expect(planPlacement({ ...base, launcherCpus: 2 })).toMatchObject({ threads: 1, unbind: false });
  });

  test("--bind-to none (every rank sees every core): the cores are divided, not oversubscribed", () => {
    expect(planPlacement({ ...base, affinityCpus: 16 })).toMatchObject({ threads: 8, unbind: false });
    expect(planPlacement({ ...base, affinityCpus: 2, launcherCpus: 2 })).toMatchObject({ threads: 1, unbind: false });
    expect(planPlacement({ ...base, localRanks: 3, affinityCpus: 16 })).toMatchObject({ threads: 5, unbind: false });
  });

  test("more ranks than cores: still at least one thread each", () => {
    expect(planPlacement({ ...base, localRanks: 3, affinityCpus: 2, launcherCpus: 2 })).toMatchObject({ threads: 1, unbind: false });
  });

  test("np 4 bound to one of 2 sockets (8 of 16 CPUs): 2 ranks share a socket, 4 threads each", () => {
    expect(planPlacement({ ...base, localRanks: 4, affinityCpus: 8 })).toMatchObject({ threads: 4, unbind: false });
  });

  test("an explicit --bind-to or --map-by ...:PE=n is kept; the rank uses the cores it was given", () => {
    expect(planPlacement({ ...base, explicitBinding: true })).toMatchObject({ threads: 1, unbind: false });
    expect(planPlacement({ ...base, localRanks: 4, affinityCpus: 4, explicitBinding: true })).toMatchObject({ threads: 4, unbind: false });
  });

  test("requested threads win; a default one-core binding is still lifted so they have cores to run on", () => {
    expect(planPlacement({ ...base, requestedThreads: 3 })).toMatchObject({ threads: 3, unbind: true });
    expect(planPlacement({ ...base, requestedThreads: 1, launcherCpus: 2 })).toMatchObject({ threads: 1, unbind: false });
  });

  test("one rank on this machine, or a launcher other than OpenMPI: the binding is left alone", () => {
    expect(planPlacement({ ...base, localRanks: 1 })).toMatchObject({ threads: undefined, unbind: false });
    expect(planPlacement({ ...base, localRanks: null })).toMatchObject({ threads: undefined, unbind: false });
    expect(planPlacement({ ...base, openmpi: false })).toMatchObject({ threads: 1, unbind: false });
  });
});

test("countCpuList counts Linux CPU lists", () => {
  expect(countCpuList("0")).toBe(1);
  expect(countCpuList("0-3,8,10-11")).toBe(7);
  expect(countCpuList("0-1\n")).toBe(2);
  expect(countCpuList("")).toBe(0);
});

test("placementInput reads the launch from the environment: thread requests and explicit bindings", () => {
  const env = { OMPI_COMM_WORLD_SIZE: "4", OMPI_COMM_WORLD_LOCAL_SIZE: "2" };
  expect(placementInput(undefined, env)).toMatchObject({ localRanks: 2, openmpi: true, explicitBinding: false, requestedThreads: undefined });
  expect(placementInput(undefined, { ...env, OMP_NUM_THREADS: "3" }).requestedThreads).toBe(3);
  expect(placementInput(undefined, { ...env, OMP_NUM_THREADS: "3", TINYLLAMA_THREADS: "2" }).requestedThreads).toBe(2);
  expect(placementInput(5, { ...env, TINYLLAMA_THREADS: "2" }).requestedThreads).toBe(5);
  expect(placementInput(undefined, { ...env, OMPI_MCA_hwloc_base_binding_policy: "none" }).explicitBinding).toBe(true);
  expect(placementInput(undefined, { ...env, OMPI_MCA_rmaps_base_mapping_policy: "slot:PE=4" }).explicitBinding).toBe(true);
  expect(placementInput(undefined, { ...env, OMPI_MCA_rmaps_base_mapping_policy: "socket" }).explicitBinding).toBe(false);
  expect(placementInput(undefined, { MPI_LOCALNRANKS: "3" })).toMatchObject({ localRanks: 3, openmpi: false });
  expect(placementInput(undefined, {}).localRanks).toBeNull();
});

// widenAffinity is what lifts OpenMPI's one-core binding; on this box a real mpirun never needs it
// (2 cores / 2 ranks = the binding), so it is checked on a process pinned with taskset.
const TASKSET = Bun.which("taskset");
const CPUS = navigator.hardwareConcurrency;
test.skipIf(!TASKSET || CPUS < 2 || process.platform !== "linux")("widenAffinity: every thread of a process pinned to CPU 0 may afterwards run on all of them", () => {
  const script = `
    import { readdirSync, readFileSync } from "node:fs";
    import { countCpuList, widenAffinity } from "@tinyllama/distributed";
    const masks = () => readdirSync("/proc/self/task").map((t) => countCpuList(readFileSync("/proc/self/task/" + t + "/status", "utf8").match(/Cpus_allowed_list:\\s*(\\S+)/)[1]));
    const before = masks();
    const ok = widenAffinity("0-${CPUS - 1}");
    console.log(JSON.stringify({ before, ok, after: masks() }));`;
  const p = Bun.spawnSync([TASKSET!, "-c", "0", process.execPath, "-e", script], { cwd: import.meta.dir, stderr: "pipe" });
  expect(p.stderr.toString()).toBe("");
  const r = JSON.parse(p.stdout.toString()) as { before: number[]; ok: boolean; after: number[] };
  expect(r.before.length).toBeGreaterThan(1); // Bun's own threads are there too
  expect(r.before.every((n) => n === 1)).toBe(true);
  expect(r.ok).toBe(true);
  expect(r.after.every((n) => n === CPUS)).toBe(true);
});
