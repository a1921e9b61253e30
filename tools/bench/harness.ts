/**
 * Side-by-side timing for component benchmarks: ours and a peer, interleaved in one process.
 *
 * Why not mitata's batch loop: the machine is shared and both candidates own thread pools. Timing
 * one candidate for a second and then the other lets a burst of someone else's build land on one
 * side only, and a pool that is still spinning from the previous candidate steals cores from the
 * next. So we alternate short blocks (ours, peer, peer, ours, ...), start every block with one
 * untimed call that absorbs the hand-over, time each call separately, and quote medians. The ratio
 * of the two medians is what we report; absolute GFLOP/s drift with the machine's load.
 */
import { CString, FFIType, dlopen } from "bun:ffi";
import { appendFileSync, readFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";

/**
 * Sets a variable in the C environment, where a dlopened library's getenv() sees it (in Bun, writing
 * process.env does not reach it). Returns false where libc cannot be opened.
 */
export function setCEnv(name: string, value: string): boolean {
  try {
    const libc = dlopen(process.platform === "darwin" ? "libSystem.B.dylib" : "libc.so.6", {
      setenv: { args: [FFIType.cstring, FFIType.cstring, FFIType.i32], returns: FFIType.i32 },
    });
    const rc = libc.symbols.setenv(Buffer.from(`${name}\0`), Buffer.from(`${value}\0`), 1);
    libc.close();
    return rc === 0;
  } catch {
    return false;
  }
}

/**
 * The OpenMP wait policy for a benchmark process: $OMP_WAIT_POLICY when set, else "passive", put into
 * the C environment before the kernel library (and with it libgomp) is loaded. Why: on a machine
 * with more runnable jobs than cores, libgomp's default (spin ~300k iterations before sleeping) lets
 * a thread that waits at a barrier burn the time slice its partner needs on the same core, and a
 * 0.5 ms matmul took 16-24 ms (scheduler ticks); passive waiting took 0.6-0.8 ms in the same minutes.
 * `OMP_WAIT_POLICY= bun run bench` (empty) keeps libgomp's default. Call before getBackend().
 */
export function benchWaitPolicy(): string {
  const given = process.env.OMP_WAIT_POLICY;
  if (given !== undefined) return given ? `${given} (from OMP_WAIT_POLICY)` : "libgomp default (OMP_WAIT_POLICY is empty)";
  return setCEnv("OMP_WAIT_POLICY", "passive") ? "passive (set by the benchmark; OMP_WAIT_POLICY overrides)" : "libgomp default";
}

export interface TimingOptions {
  /** Blocks per candidate (default $BENCH_ROUNDS or 7). */
  rounds?: number;
  /** Timed calls per block are chosen so a block lasts about this long (default 40 ms). */
  blockMs?: number;
  /** Upper bound on timed calls per block (default 25). */
  maxCallsPerBlock?: number;
  /** Pause after each block of ours / of the peer, so its pool's idle spinning ends before the other
   * candidate runs. OpenBLAS's pthreads spin for 2^28 TSC cycles (~0.1 s) after each call; libgomp's
   * for well under a millisecond. Defaults 5 ms / 150 ms ($BENCH_SETTLE_MS sets both). */
  settleMs?: { ours: number; peer: number };
}

export interface Timing {
  /** Median seconds per call. */
  ours: number;
  peer: number | null;
  /** Fastest call, seconds: closest to the uncontended machine when others' jobs share the cores. */
  oursBest: number;
  peerBest: number | null;
  /** Every timed call, in seconds. */
  oursSamples: number[];
  peerSamples: number[];
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function timeOnce(f: () => void): number {
  const t0 = Bun.nanoseconds();
  f();
  return (Bun.nanoseconds() - t0) * 1e-9;
}

/** Times `ours` and `peer` (null: ours only) in alternating blocks and returns the medians. */
export function interleaved(ours: () => void, peer: (() => void) | null, opts: TimingOptions = {}): Timing {
  const rounds = opts.rounds ?? Number(process.env.BENCH_ROUNDS ?? (benchQuick() ? 3 : 7));
  const blockMs = opts.blockMs ?? 40;
  const maxCalls = opts.maxCallsPerBlock ?? 25;
  const envSettle = process.env.BENCH_SETTLE_MS === undefined ? null : Number(process.env.BENCH_SETTLE_MS);
  const settle = opts.settleMs ?? (envSettle === null ? { ours: 5, peer: 150 } : { ours: envSettle, peer: envSettle });
  // Warm-up: first calls pay for page faults, packing-buffer growth and thread-pool start.
  const est = { ours: Math.min(timeOnce(ours), timeOnce(ours)), peer: peer ? Math.min(timeOnce(peer), timeOnce(peer)) : 0 };
  if (peer && settle.peer > 0) Bun.sleepSync(settle.peer);
  const calls = (s: number): number => Math.max(1, Math.min(maxCalls, Math.ceil(blockMs / 1000 / Math.max(s, 1e-6))));
  const block = (f: () => void, est: number, out: number[], settleMs: number): void => {
    if (est < 0.1) f(); // untimed: absorbs the hand-over; skipped where one call is long anyway
    for (let i = calls(est); i > 0; i--) out.push(timeOnce(f));
    if (settleMs > 0) Bun.sleepSync(settleMs);
  };
  const oursSamples: number[] = [], peerSamples: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const oursFirst = r % 2 === 0;
    if (oursFirst) block(ours, est.ours, oursSamples, settle.ours);
    if (peer) block(peer, est.peer, peerSamples, settle.peer);
    if (!oursFirst) block(ours, est.ours, oursSamples, settle.ours);
  }
  return {
    ours: median(oursSamples),
    peer: peer ? median(peerSamples) : null,
    oursBest: Math.min(...oursSamples),
    peerBest: peer ? Math.min(...peerSamples) : null,
    oursSamples,
    peerSamples,
  };
}

/** CPU model name from /proc/cpuinfo (or Node's view of it elsewhere). */
export function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (m) return m[1]!.trim();
  } catch {
    /* not Linux */
  }
  return cpus()[0]?.model ?? "unknown CPU";
}

/** A GitHub-flavoured markdown table; numeric-looking columns are right-aligned. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const width = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => /^[-+]?[\d.,]+[x%]?$|^-$/.test(r[i] ?? "")));
  const line = (cells: readonly string[]): string =>
    `| ${cells.map((c, i) => (numeric[i] ? c.padStart(width[i]!) : c.padEnd(width[i]!))).join(" | ")} |`;
  const rule = `|${width.map((w, i) => (numeric[i] ? "-".repeat(w + 1) + ":" : "-".repeat(w + 2))).join("|")}|`;
  return [line(header), rule, ...rows.map(line)].join("\n");
}

/** Geometric mean (the right average for ratios). */
export function geomean(xs: readonly number[]): number {
  return xs.length === 0 ? NaN : Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length);
}

/**
 * One row of the project's scoreboard. Every benchmark prints its own detailed table as before and,
 * in addition, reports its headline rows with reportRows(); `bun run bench` collects them from all
 * benchmarks of a run into one table and rewrites BENCHMARKS.md from them.
 */
export interface BenchRow {
  /** Component, as `bun run bench <component>` names it: "matmul", "training step", "decode", ... */
  component: string;
  /** What was measured, short and specific: "15M lm head forward 2048x32000x288", "1.1B shapes, bf16 weights". */
  case: string;
  /** Unit of `ours` and `peer`: "GFLOP/s", "tok/s", "MB/s", "ms", "MiB peak RSS", ... */
  unit: string;
  /** Our figure (median of the interleaved samples, unless `note` says otherwise). */
  ours: number;
  /** The peer's figure from the same run, or null when there is no peer (or it was unavailable). */
  peer: number | null;
  /** Who the peer is, with version and settings where they matter: "PyTorch 1.13.0 eager, 2 threads". */
  peerName: string | null;
  /** true for rates (bigger wins), false for times and memory (smaller wins). Sets how the ratio is taken. */
  higherIsBetter: boolean;
  /** Target ratio (ours over peer, in the winning direction), e.g. 3.0 for "≥ 3.0x PyTorch". */
  target?: number;
  /** Our achieved GFLOP/s (model FLOPs) or GB/s where the row has one: `bun run bench` divides it by
   * the machine's ceiling (our best matmul GFLOP/s, a large copy's GB/s) for the "of ceiling" column. */
  gflops?: number;
  gbs?: number;
  /** Anything a reader needs to trust the number (e.g. "best/best 1.9x", "CPU-time ratio 7.0x"). */
  note?: string;
  /** Why `peer` is null although the row has a peer: what is missing and how to install it, e.g.
   * "python3-torch not installed: apt-get install python3-torch". Printed by `bun run bench`. */
  peerMissing?: string;
}

/** ours/peer as a "how many times better are we" number: >1 means we win, whatever the unit's direction. */
export function rowRatio(row: BenchRow): number | null {
  if (row.peer === null || !(row.peer > 0) || !(row.ours > 0)) return null;
  return row.higherIsBetter ? row.ours / row.peer : row.peer / row.ours;
}

/**
 * Reports scoreboard rows: appended as JSON lines to the file named by $BENCH_ROWS (set by
 * `bun run bench`); when a benchmark runs on its own (no $BENCH_ROWS) this does nothing, since the
 * benchmark has already printed its own table. Call it once at the end (or once per row); rows are
 * identified across runs by component, case and peerName, so keep those stable between runs.
 *
 *   reportRows([{ component: "training step", case: "15M preset, B=8 T=256", unit: "tok/s",
 *     ours: 2628, peer: 394, peerName: "PyTorch 1.13 eager, 2 threads", higherIsBetter: true,
 *     target: 3.0, gflops: 243, note: "CPU-time ratio 7.0x" }]);
 *   // peer missing: peer: null, peerMissing: peerMissing("PyTorch", "apt-get install python3-torch")
 */
export function reportRows(rows: readonly BenchRow[]): void {
  const file = process.env.BENCH_ROWS;
  if (!file || rows.length === 0) return;
  appendFileSync(file, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
}

/**
 * True when $BENCH_QUICK is set (and not "0"): benchmarks then run fewer rounds and their smaller
 * cases only, so `BENCH_QUICK=1 bun run bench` checks the whole suite end to end in minutes. Quick
 * rows are marked as such in BENCHMARKS.md; quote full runs.
 */
export function benchQuick(): boolean {
  const q = process.env.BENCH_QUICK;
  return q !== undefined && q !== "" && q !== "0";
}

/** The 1, 5 and 15 minute load averages ([] where the OS does not say): quote them next to any number. */
export function loadAverage(): number[] {
  try {
    return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
  } catch {
    const l = loadavg();
    return l.every((x) => x === 0) ? [] : l;
  }
}

/**
 * Prints the line a benchmark shows when a peer is missing, and returns the reason for the row's
 * `peerMissing`, so the console and BENCHMARKS.md say the same thing.
 */
export function peerMissing(peer: string, why: string): string {
  const reason = `${peer} unavailable: ${why}`;
  console.log(`PEER MISSING: ${reason}`);
  return reason;
}
