/**
 * Resident memory for benchmarks: the current and peak resident set of this process, fresh child
 * processes that report theirs, and a growth-exponent fit.
 *
 * Why fresh processes: a process's peak RSS (VmHWM) never goes down, and both runtimes keep freed
 * memory in their allocators, so a peak measured in a process that already ran something else
 * measures that too. Each side of a memory comparison runs the same work in its own new process and
 * reports (a) its RSS once the bare runtime is up (Bun with the kernel library loaded; python with
 * torch imported) and (b) its whole-process peak at the end; the tables show the total and the
 * part above that baseline.
 */
import { readFileSync } from "node:fs";

export interface ProcMemory {
  /** Resident set now, KiB (VmRSS). */
  rssKiB: number;
  /** Peak resident set of the process so far, KiB (VmHWM = getrusage ru_maxrss on Linux). */
  peakKiB: number;
}

/** This process's current and peak RSS: /proc/self/status on Linux, else process.resourceUsage(). */
export function procMemory(): ProcMemory {
  try {
    const s = readFileSync("/proc/self/status", "utf8");
    const kib = (key: string): number => {
      const m = new RegExp(`^${key}:\\s*(\\d+) kB`, "m").exec(s);
      if (!m) throw new Error(`no ${key}`);
      return Number(m[1]);
    };
    return { rssKiB: kib("VmRSS"), peakKiB: kib("VmHWM") };
  } catch {
    // Not Linux: ru_maxrss (KiB in Node's convention) and the current RSS in bytes.
    return { rssKiB: Math.round(process.memoryUsage().rss / 1024), peakKiB: process.resourceUsage().maxRSS };
  }
}

/** What a memory child prints as its last stdout line (JSON). */
export interface RssReport {
  /** RSS once the bare runtime is up, before the measured work allocates anything, KiB. */
  baselineKiB: number;
  /** Whole-process peak RSS at the end, KiB. */
  peakKiB: number;
  /** Extra facts the child wants shown (arena bytes, loss, ...). */
  [extra: string]: unknown;
}

/**
 * Runs `cmd` as a fresh process and parses the JSON object on the last line of its stdout. Returns
 * the reason as a string when the child cannot run or fails (the bench then prints it instead of a
 * number, never a made-up figure).
 */
export function runRssChild(cmd: string[], env: Record<string, string | undefined> = {}): RssReport | string {
  let p;
  try {
    p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  } catch (e) {
    return `could not start ${cmd[0]}: ${(e as Error).message}`;
  }
  if (p.exitCode !== 0) {
    const err = p.stderr.toString().trim().split("\n").slice(-3).join(" | ");
    return `${cmd.slice(0, 3).join(" ")} ... exited with ${p.exitCode}${err ? `: ${err}` : ""}`;
  }
  const lines = p.stdout.toString().trim().split("\n");
  try {
    const r = JSON.parse(lines[lines.length - 1]!) as RssReport;
    if (!(r.peakKiB > 0) || !(r.baselineKiB > 0)) return `child printed no RSS figures: ${lines[lines.length - 1]}`;
    return r;
  } catch {
    return `child printed no JSON: ${lines.slice(-2).join(" | ")}`;
  }
}

/**
 * Least-squares slope of log(y) against log(x): the exponent p of y ~ x^p (1 = linear growth,
 * 2 = quadratic). NaN with fewer than two usable points.
 */
export function growthExponent(xs: readonly number[], ys: readonly number[]): number {
  const pts = xs.map((x, i) => [x, ys[i]!] as const).filter(([x, y]) => x > 0 && y > 0);
  if (pts.length < 2) return NaN;
  const lx = pts.map(([x]) => Math.log(x)), ly = pts.map(([, y]) => Math.log(y));
  const mx = lx.reduce((a, b) => a + b, 0) / lx.length, my = ly.reduce((a, b) => a + b, 0) / ly.length;
  let num = 0, den = 0;
  for (let i = 0; i < lx.length; i++) {
    num += (lx[i]! - mx) * (ly[i]! - my);
    den += (lx[i]! - mx) ** 2;
  }
  return den > 0 ? num / den : NaN;
}

export const mib = (kib: number): string => (kib / 1024).toFixed(1);
