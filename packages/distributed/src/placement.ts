/**
 * How many kernel threads each rank of a one-machine data-parallel job runs, and on which cores.
 *
 * `mpirun -np N bun run train` starts N copies of the trainer; left alone, each would size its
 * OpenMP pool from the CPUs it may run on, and OpenMPI decides those: for N <= 2 it binds every
 * rank to ONE core (so 2 ranks on a 16-core box use 2 cores), for N > 2 to a whole socket (so every
 * rank starts one thread per core and N ranks oversubscribe the socket N times), and under
 * `--bind-to none` every rank sees every core (the same N-fold oversubscription). None of these is
 * what a user means. The plan below gives each rank an equal share of the cores (cores / ranks on
 * this node, at least 1) and, when OpenMPI's *default* binding would confine that share to one
 * core, lifts the binding so the rank's threads can use the cores the launcher had. Anything the
 * user chose (--threads, TINYLLAMA_THREADS, OMP_NUM_THREADS, mpirun --bind-to / --map-by ...:PE=n)
 * is respected.
 */
import { dlopen, FFIType } from "bun:ffi";
import { readdirSync, readFileSync } from "node:fs";

/** What the plan needs to know about the process and its launch (all read from the OS and environment). */
export interface PlacementInput {
  /** Ranks of this job on this machine (OMPI_COMM_WORLD_LOCAL_SIZE, MPI_LOCALNRANKS), null when unknown. */
  localRanks: number | null;
  /** CPUs this process may run on now (its affinity mask). */
  affinityCpus: number;
  /** CPUs the launcher itself may run on (mpirun's affinity): what the ranks share between them. */
  launcherCpus: number;
  /** Threads the user asked for: --threads, else TINYLLAMA_THREADS, else OMP_NUM_THREADS (undefined: none). */
  requestedThreads?: number;
  /** The launcher was told how to bind or map ranks (mpirun --bind-to, --map-by ...:PE=n, --cpus-per-proc). */
  explicitBinding: boolean;
  /** Launched by OpenMPI's mpirun (whose default binding is the one this plan may lift). */
  openmpi: boolean;
}

export interface Placement {
  /** Kernel threads for this rank; undefined: leave the runtime's default (single process). */
  threads: number | undefined;
  /** Widen this process's affinity to the launcher's CPUs (OpenMPI's default one-core binding). */
  unbind: boolean;
  /** One line for the log: what was chosen and why. */
  reason: string;
}

/** The per-rank thread count and binding for a launch; pure, so every case is testable. */
export function planPlacement(p: PlacementInput): Placement {
  const L = p.localRanks;
  const multi = L !== null && L > 1;
  const unbind = multi && p.openmpi && !p.explicitBinding && p.affinityCpus < p.launcherCpus && Math.floor(p.launcherCpus / L) > p.affinityCpus;
  if (p.requestedThreads !== undefined)
    return { threads: p.requestedThreads, unbind, reason: `${p.requestedThreads} thread(s) per rank, as requested` };
  if (!multi) return { threads: undefined, unbind: false, reason: "one rank on this machine: the kernels' default thread count" };
  const cpus = unbind ? p.launcherCpus : p.affinityCpus;
  // A mask that covers the launcher's CPUs is shared by every local rank; a narrower one (bound to a
  // socket or a set of cores) by the ranks that fit the same share of them.
  const sharers = cpus >= p.launcherCpus ? L : Math.max(1, Math.round((L * cpus) / p.launcherCpus));
  const threads = Math.max(1, Math.floor(cpus / sharers));
  const how = unbind
    ? `OpenMPI's default binding (one core per rank) lifted: ${L} ranks share ${cpus} CPUs`
    : `${sharers} rank(s) share the ${cpus} CPU(s) this rank may use`;
  return { threads, unbind, reason: `${threads} thread(s) per rank (${how})` };
}

function envInt(env: Record<string, string | undefined>, name: string): number | null {
  const s = env[name];
  if (s === undefined || s.trim() === "") return null;
  const n = Number(s);
  return Number.isInteger(n) && n > 0 ? n : null;
}

/** Counts the CPUs of a Cpus_allowed_list such as "0-3,8,10-11". */
export function countCpuList(list: string): number {
  let n = 0;
  for (const part of list.trim().split(",")) {
    if (part === "") continue;
    const [a, b] = part.split("-").map(Number);
    if (!Number.isInteger(a)) continue;
    n += b !== undefined && Number.isInteger(b) ? b - a! + 1 : 1;
  }
  return n;
}

function statusField(pid: number | "self", field: string): string | null {
  try {
    const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith(`${field}:`));
    return line === undefined ? null : line.slice(field.length + 1).trim();
  } catch {
    return null;
  }
}

const LAUNCHERS = new Set(["mpirun", "mpiexec", "orterun", "orted", "prterun", "prted", "hydra_pmi_proxy", "srun", "slurmstepd"]);

/**
 * The affinity list of the nearest ancestor that is the MPI launcher (mpirun, orted, ...): the
 * CPUs the job may use on this machine. Everything between it and us (npx, sh, bun run) inherited
 * the rank's binding, so the direct parent does not tell. Null when not found (no /proc, other OS).
 */
export function launcherCpuList(): string | null {
  let pid = Number(statusField("self", "PPid"));
  for (let hop = 0; hop < 16 && Number.isInteger(pid) && pid > 1; hop++) {
    const name = statusField(pid, "Name");
    if (name !== null && LAUNCHERS.has(name)) return statusField(pid, "Cpus_allowed_list");
    pid = Number(statusField(pid, "PPid"));
  }
  return null;
}

/** Reads the placement input from this process's environment and /proc. */
export function placementInput(requestedThreads?: number, env: Record<string, string | undefined> = process.env): PlacementInput {
  const requested = requestedThreads ?? envInt(env, "TINYLLAMA_THREADS") ?? envInt(env, "OMP_NUM_THREADS") ?? undefined;
  const own = statusField("self", "Cpus_allowed_list");
  const affinityCpus = own !== null ? countCpuList(own) : navigator.hardwareConcurrency;
  const launcher = launcherCpuList();
  const launcherCpus = launcher !== null ? countCpuList(launcher) : affinityCpus;
  const mapping = env.OMPI_MCA_rmaps_base_mapping_policy ?? "";
  return {
    localRanks: envInt(env, "OMPI_COMM_WORLD_LOCAL_SIZE") ?? envInt(env, "MPI_LOCALNRANKS") ?? null,
    affinityCpus,
    launcherCpus: Math.max(launcherCpus, affinityCpus),
    requestedThreads: requested,
    explicitBinding: (env.OMPI_MCA_hwloc_base_binding_policy ?? "") !== "" || /PE=|pe=/.test(mapping) || (env.OMPI_MCA_rmaps_base_cpus_per_rank ?? "") !== "",
    openmpi: env.OMPI_COMM_WORLD_SIZE !== undefined,
  };
}

/** Parses "0-3,8" into CPU indices. */
function cpuIndices(list: string): number[] {
  const out: number[] = [];
  for (const part of list.trim().split(",")) {
    const [a, b] = part.split("-").map(Number);
    if (!Number.isInteger(a)) continue;
    for (let c = a!; c <= (b !== undefined && Number.isInteger(b) ? b : a!); c++) out.push(c);
  }
  return out;
}

/**
 * Sets the affinity of every thread of this process (Bun's own threads included; OpenMP's, started
 * later, inherit it) to the launcher's CPUs. Linux only; returns false when it could not.
 */
export function widenAffinity(list: string | null = launcherCpuList()): boolean {
  if (list === null || process.platform !== "linux") return false;
  const cpus = cpuIndices(list);
  if (cpus.length === 0) return false;
  const mask = new Uint8Array(Math.max(128, (Math.max(...cpus) >> 3) + 1));
  for (const c of cpus) mask[c >> 3]! |= 1 << (c & 7);
  let libc;
  try {
    libc = dlopen("libc.so.6", { sched_setaffinity: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 } });
  } catch {
    return false;
  }
  let ok = true;
  try {
    for (const tid of readdirSync("/proc/self/task")) if (libc.symbols.sched_setaffinity(Number(tid), mask.length, mask) !== 0) ok = false;
  } finally {
    libc.close();
  }
  return ok;
}

/**
 * Plans and applies this rank's placement: widens its affinity when the plan says so, and returns
 * the plan (the caller sets the kernels' thread count to `threads` before the first kernel runs).
 */
export function placeRank(requestedThreads?: number): Placement {
  const plan = planPlacement(placementInput(requestedThreads));
  if (!plan.unbind || widenAffinity()) return plan;
  // Still bound to one core: more threads there would only take turns on it.
  const own = countCpuList(statusField("self", "Cpus_allowed_list") ?? "") || 1;
  const threads = plan.threads === undefined ? undefined : Math.min(plan.threads, own);
  return { threads, unbind: false, reason: `${threads ?? "default"} thread(s) per rank (could not lift OpenMPI's binding to ${own} CPU(s))` };
}
