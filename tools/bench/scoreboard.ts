/**
 * The project's benchmark scoreboard: the pure part of `bun run bench` (tools/bench.ts), kept free of
 * I/O so it can be tested with synthetic rows (test/bench-scoreboard.test.ts).
 *
 * Data flow: every benchmark reports `BenchRow`s with reportRows() (tools/bench/harness.ts);
 * tools/bench.ts runs each bench file, collects its rows and records the run (`RunRecord`), and
 * mergeRun() folds them into the results file (bench-results.json, committed), replacing only that
 * file's rows. renderBenchmarksMd() then writes BENCHMARKS.md from all stored rows, so rows of
 * components that were not rerun keep their last figures and their own date.
 */
import { markdownTable, rowRatio, type BenchRow } from "./harness.ts";

/** A BenchRow as stored: which bench file produced it, and when. */
export interface StoredRow extends BenchRow {
  /** Bench file, relative to the repository root: "packages/kernels/bench/matmul.bench.ts". */
  file: string;
  /** ISO date of the run that measured it. */
  date: string;
  /** Measured with BENCH_QUICK set (fewer rounds / cases): indicative only. */
  quick?: boolean;
}

/** One run of one bench file. */
export interface RunRecord {
  file: string;
  /** The exact command that reruns this file alone (environment variables that matter included). */
  command: string;
  /** ISO date of the start. */
  date: string;
  /** Wall-clock seconds the bench took. */
  seconds: number;
  /** `git rev-parse --short HEAD`, with "+dirty" when the worktree had changes. */
  commit: string;
  cpu: string;
  /** Thread count the benchmarks were asked for ($BENCH_THREADS, else $TINYLLAMA_THREADS, else cores). */
  threads: number;
  /** 1/5/15-minute load averages before and after the run. */
  load: { before: number[]; after: number[] };
  /** Exit code; null when it was killed (timeout, signal). */
  exitCode: number | null;
  quick: boolean;
  /** Arguments after `--` (a subset of the bench's cases), [] for a full run. */
  args: string[];
  /** Rows the run reported. */
  rows: number;
  /** Its stdout (the bench's own detailed tables), possibly shortened from the front. */
  output: string;
  /** For a partial run: the latest full run of the same file, whose rows it did not rerun. */
  earlier?: { date: string; command: string; commit: string; output: string };
}

/** One `bun run bench [...]` invocation. */
export interface Invocation {
  date: string;
  command: string;
  seconds: number;
  commit: string;
  cpu: string;
  cores: number;
  threads: number;
  load: { before: number[]; after: number[] };
  files: string[];
  /** How many of `files` had finished when the results were last written (absent: all). */
  completed?: number;
}

export interface Results {
  version: 1;
  /** The latest invocation that wrote this file. */
  last: Invocation | null;
  /** The latest invocation that ran every bench file (no component filter, no `--` arguments). */
  lastFull?: Invocation | null;
  /** The latest run of each bench file. */
  runs: RunRecord[];
  rows: StoredRow[];
}

export function emptyResults(): Results {
  return { version: 1, last: null, lastFull: null, runs: [], rows: [] };
}

/** The bench file every `bun run bench` runs first: it measures the ceilings. */
export const CEILING_FILE = "packages/kernels/bench/ceiling.bench.ts";
/** Component name of the ceiling rows. */
export const CEILING_COMPONENT = "ceiling";

/** Parses bench-results.json, with errors that say what to do. */
export function parseResults(text: string): Results {
  const r = JSON.parse(text) as Partial<Results>;
  if (r.version !== 1 || !Array.isArray(r.runs) || !Array.isArray(r.rows))
    throw new Error("bench-results.json: not a version-1 results file (expected {version: 1, runs: [], rows: []}); move it away to start afresh");
  return { version: 1, last: r.last ?? null, lastFull: r.lastFull ?? null, runs: r.runs, rows: r.rows };
}

/**
 * Reads the JSON lines a bench wrote to $BENCH_ROWS. A line that is not a valid BenchRow is skipped
 * and reported in `errors` (the bench's own table is still printed; the scoreboard just lacks it).
 */
export function parseRowLines(text: string): { rows: BenchRow[]; errors: string[] } {
  const rows: BenchRow[] = [], errors: string[] = [];
  for (const [i, line] of text.split("\n").entries()) {
    if (!line.trim()) continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      errors.push(`line ${i + 1}: not JSON: ${line.slice(0, 80)}`);
      continue;
    }
    const problem = rowProblem(v);
    if (problem) errors.push(`line ${i + 1}: ${problem}: ${line.slice(0, 120)}`);
    else rows.push(v as BenchRow);
  }
  return { rows, errors };
}

function rowProblem(v: unknown): string | null {
  if (typeof v !== "object" || v === null) return "not an object";
  const r = v as Record<string, unknown>;
  for (const k of ["component", "case", "unit"]) if (typeof r[k] !== "string" || !r[k]) return `${k} must be a non-empty string`;
  if (typeof r.ours !== "number" || !Number.isFinite(r.ours)) return "ours must be a finite number";
  if (r.peer !== null && (typeof r.peer !== "number" || !Number.isFinite(r.peer))) return "peer must be a finite number or null";
  if (r.peerName !== null && typeof r.peerName !== "string") return "peerName must be a string or null";
  if (typeof r.higherIsBetter !== "boolean") return "higherIsBetter must be a boolean";
  for (const k of ["target", "gflops", "gbs"])
    if (r[k] !== undefined && (typeof r[k] !== "number" || !Number.isFinite(r[k]))) return `${k} must be a finite number when given`;
  for (const k of ["note", "peerMissing"]) if (r[k] !== undefined && typeof r[k] !== "string") return `${k} must be a string when given`;
  return null;
}

/** A row's identity across runs: one case may be measured against several peers. */
const rowKey = (r: StoredRow): string => [r.file, r.component, r.case, r.peerName ?? ""].join("\u0000");

/**
 * Folds one bench file's run into the results. A full run (no `--` arguments, not quick, and at least
 * one row reported) replaces every stored row of that file, so renamed or removed cases disappear.
 * A partial run (a subset of cases, a quick run, or a failed run) replaces only the rows it measured
 * and keeps the file's other rows with their own dates. Rows of other files are never touched.
 */
export function mergeRun(results: Results, run: RunRecord, rows: readonly BenchRow[]): Results {
  const fresh: StoredRow[] = rows.map((r) => ({ ...r, file: run.file, date: run.date, ...(run.quick ? { quick: true } : {}) }));
  const partial = run.args.length > 0 || run.quick || run.exitCode !== 0 || fresh.length === 0;
  let kept = partial ? [...results.rows] : results.rows.filter((r) => r.file !== run.file);
  const index = new Map(kept.map((r, i) => [rowKey(r), i]));
  kept = [...kept];
  for (const r of fresh) {
    const i = index.get(rowKey(r));
    if (i === undefined) {
      index.set(rowKey(r), kept.length);
      kept.push(r);
    } else kept[i] = r;
  }
  const old = results.runs.find((x) => x.file === run.file);
  const isFull = (r: RunRecord): boolean => r.args.length === 0 && !r.quick && r.exitCode === 0 && r.rows > 0;
  if (partial && old) {
    const earlier = isFull(old) ? { date: old.date, command: old.command, commit: old.commit, output: old.output } : old.earlier;
    if (earlier) run = { ...run, earlier };
  }
  const runs = results.runs.filter((x) => x.file !== run.file);
  runs.push(run);
  return { ...results, runs: sortRuns(runs), rows: sortRows(kept) };
}

/** Records the invocation that just wrote the results; `full`: it ran every bench file without arguments. */
export function recordInvocation(results: Results, inv: Invocation, full: boolean): Results {
  return { ...results, last: inv, lastFull: full ? inv : results.lastFull ?? null };
}

/** The ceiling bench first, then bench files in path order. */
export function fileRank(a: string, b: string): number {
  if (a === b) return 0;
  if (a === CEILING_FILE) return -1;
  if (b === CEILING_FILE) return 1;
  return a < b ? -1 : 1;
}
const sortRuns = (runs: RunRecord[]): RunRecord[] => [...runs].sort((a, b) => fileRank(a.file, b.file));
/** Stable: rows of one file keep the order the bench reported them in. */
const sortRows = (rows: StoredRow[]): StoredRow[] => [...rows].sort((a, b) => fileRank(a.file, b.file));

/**
 * The machine's ceilings: the largest `gflops` and `gbs` among the ceiling bench's rows, raised to
 * any other row's figure that exceeds them. Why raise: on a shared machine the ceiling bench can run
 * in a loaded minute and another bench in a quiet one; a ceiling below an achieved rate would print
 * fractions over 100%, so the ceiling is the best this machine was seen to do in the stored results.
 * `gflopsFrom` / `gbsFrom` say which row set it.
 */
export interface Ceilings {
  gflops: number | null;
  gbs: number | null;
  gflopsFrom: StoredRow | null;
  gbsFrom: StoredRow | null;
}

export function ceilingsOf(rows: readonly StoredRow[]): Ceilings {
  const best = (k: "gflops" | "gbs"): StoredRow | null => {
    let top: StoredRow | null = null;
    for (const r of rows) {
      const x = r[k];
      if (typeof x !== "number" || !(x > 0)) continue;
      // ceiling rows first: another row replaces them only when strictly faster
      const isCeiling = r.component === CEILING_COMPONENT, topIsCeiling = top?.component === CEILING_COMPONENT;
      if (top === null || x > top[k]! || (isCeiling && !topIsCeiling && x === top[k]!)) top = r;
    }
    return top;
  };
  const f = best("gflops"), g = best("gbs");
  return { gflops: f?.gflops ?? null, gbs: g?.gbs ?? null, gflopsFrom: f, gbsFrom: g };
}

/** "matmul 305 GFLOP/s (ceiling bench, 2026-11-29 10:45)" or "... (raised by matmul / 15M q forward, ...)". */
export function ceilingLine(c: Ceilings, rows: readonly StoredRow[]): string {
  const measured = (k: "gflops" | "gbs"): number | null => {
    const xs = rows.filter((r) => r.component === CEILING_COMPONENT).map((r) => r[k]).filter((x): x is number => typeof x === "number");
    return xs.length ? Math.max(...xs) : null;
  };
  const one = (name: string, unit: string, k: "gflops" | "gbs", value: number | null, from: StoredRow | null): string => {
    if (value === null || from === null) return `${name} not measured`;
    const when = `${shortDate(from.date)} UTC`;
    if (from.component === CEILING_COMPONENT) return `${name} ${fmtNum(value)} ${unit} (ceiling bench, ${when})`;
    const m = measured(k);
    return `${name} ${fmtNum(value)} ${unit} (${from.component} / ${from.case}, ${when}; the ceiling bench measured ${m === null ? "none" : `${fmtNum(m)} ${unit}`})`;
  };
  return `Ceilings: ${one("matmul", "GFLOP/s", "gflops", c.gflops, c.gflopsFrom)}; ${one("memory", "GB/s", "gbs", c.gbs, c.gbsFrom)}.`;
}

/** A figure with about three significant digits, no exponent: 0.0123, 1.23, 12.3, 123, 12345. */
export function fmtNum(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  if (a === 0) return "0";
  return x.toPrecision(3);
}

export type TargetStatus = "met" | "missed" | "no peer" | "no target";

/** Whether a row meets its target ratio, and by how much it misses (as a fraction of the target). */
export function targetStatus(row: BenchRow): { status: TargetStatus; shortfall: number | null } {
  if (row.target === undefined) return { status: "no target", shortfall: null };
  const ratio = rowRatio(row);
  if (ratio === null) return { status: "no peer", shortfall: null };
  return ratio >= row.target ? { status: "met", shortfall: null } : { status: "missed", shortfall: 1 - ratio / row.target };
}

/** "≥ 3.0x met", "≥ 3.0x MISSED by 0.42x (14%)", "≥ 3.0x, no peer", or "-". */
export function targetCell(row: BenchRow): string {
  const { status, shortfall } = targetStatus(row);
  if (status === "no target") return "-";
  const t = `≥ ${row.target}x`;
  if (status === "no peer") return `${t}, no peer`;
  if (status === "met") return `${t} met`;
  const ratio = rowRatio(row)!;
  return `${t} MISSED by ${(row.target! - ratio).toFixed(2)}x (${(shortfall! * 100).toFixed(0)}%)`;
}

/** "83% FLOP", "45% BW", both joined, or "-" (no gflops/gbs, or no ceiling measured). */
export function ceilingCell(row: BenchRow, c: Ceilings): string {
  const parts: string[] = [];
  if (row.gflops !== undefined && c.gflops) parts.push(`${((row.gflops / c.gflops) * 100).toFixed(0)}% FLOP`);
  if (row.gbs !== undefined && c.gbs) parts.push(`${((row.gbs / c.gbs) * 100).toFixed(0)}% BW`);
  return parts.length ? parts.join(", ") : "-";
}

/** "2026-11-29 12:10" (UTC) from an ISO date. */
export function shortDate(iso: string): string {
  return iso.slice(0, 16).replace("T", " ");
}

/** Markdown cells may not contain a raw pipe or a line break. */
const cell = (s: string): string => s.replace(/\|/g, "\\|").replace(/\s*\n\s*/g, " ");

export const SCOREBOARD_HEADER = ["component", "case", "unit", "ours", "peer", "peer is", "ratio", "target", "of ceiling", "measured", "note"] as const;

/** One scoreboard line: ratio >1 means ours is better in the row's own direction (faster, smaller). */
export function scoreboardCells(row: StoredRow, c: Ceilings): string[] {
  const ratio = rowRatio(row);
  const note = [row.note, row.peerMissing ? `PEER MISSING: ${row.peerMissing}` : undefined].filter(Boolean).join("; ");
  return [
    row.component,
    row.case,
    row.unit + (row.higherIsBetter ? "" : " (lower is better)"),
    fmtNum(row.ours),
    row.peer === null ? "-" : fmtNum(row.peer),
    row.peerName ?? "-",
    ratio === null ? "-" : `${ratio.toFixed(2)}x`,
    targetCell(row),
    ceilingCell(row, c),
    shortDate(row.date) + (row.quick ? " (quick)" : ""),
    note || "",
  ].map(cell);
}

export function scoreboardTable(rows: readonly StoredRow[]): string {
  const c = ceilingsOf(rows);
  return markdownTable([...SCOREBOARD_HEADER], rows.map((r) => scoreboardCells(r, c)));
}

/** Counts for the summary line under the table. */
export function targetSummary(rows: readonly BenchRow[]): { met: number; missed: number; noPeer: number } {
  const s = rows.map((r) => targetStatus(r).status);
  return { met: s.filter((x) => x === "met").length, missed: s.filter((x) => x === "missed").length, noPeer: s.filter((x) => x === "no peer").length };
}

// ---- BENCHMARKS.md -------------------------------------------------------------------------------

export const GENERATED_MARK = "<!-- Generated by `bun run bench` (tools/bench.ts) from bench-results.json.";
export const NOTES_BEGIN = "<!-- BEGIN NOTES: hand-written; `bun run bench` keeps everything between these two markers verbatim -->";
export const NOTES_END = "<!-- END NOTES -->";
const DEFAULT_NOTES = "\n## Notes\n\n(Methodology, peers' settings and caveats go here; `bun run bench` keeps this section as it is.)\n\n";

/**
 * The hand-written part of an existing BENCHMARKS.md: the text between the NOTES markers. A file
 * without markers that was not generated (the hand-curated file from before the generator) is kept
 * whole as the notes, so the first `bun run bench` loses nothing. A generated file whose markers were
 * removed is an error rather than a guess.
 */
export function extractNotes(md: string | null): string {
  if (md === null || md.trim() === "") return DEFAULT_NOTES;
  const b = md.indexOf("<!-- BEGIN NOTES"), e = md.indexOf("<!-- END NOTES");
  if (b >= 0 && e > b) return md.slice(md.indexOf("-->", b) + 3, e);
  if (b >= 0 || e >= 0)
    throw new Error("BENCHMARKS.md: one NOTES marker is missing or they are out of order; restore `<!-- BEGIN NOTES ... -->` and `<!-- END NOTES -->` around the hand-written notes");
  if (md.includes("<!-- Generated by `bun run bench`"))
    throw new Error("BENCHMARKS.md was generated but has no NOTES markers; restore them around the hand-written notes (or delete the file to start afresh)");
  return `\n${md.trim()}\n\n`;
}

/** Notes as stored between the markers: one blank line on each side, otherwise untouched. */
export function normalizeNotes(notes: string): string {
  return `\n${notes.replace(/^\n+/, "").trimEnd()}\n\n`;
}

const fmtLoad = (l: readonly number[]): string => (l.length ? l.map((x) => x.toFixed(2)).join(" / ") : "?");
const fmtSeconds = (s: number): string => (s >= 90 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(0)} s`);

/** The whole BENCHMARKS.md: generated scoreboard and run table, the preserved notes, generated raw outputs. */
export function renderBenchmarksMd(results: Results, notes: string): string {
  const { rows, runs, last } = results;
  const c = ceilingsOf(rows);
  const out: string[] = [];
  out.push("# Benchmarks", "");
  out.push(
    `${GENERATED_MARK} Everything outside the NOTES markers is rewritten by every run; edit the notes, or the benches. -->`,
    "",
  );
  out.push(
    "One table for the whole project: each row is a benchmark's headline figure next to its peer measured in the same run",
    "(same process or process tree, interleaved), the ratio (> 1 means ours is better: faster, or smaller where lower is",
    "better), the target ratio from issue 7 and whether it is met, and, where the row has a FLOP or byte rate, its",
    "fraction of this machine's ceilings (our best matmul GFLOP/s on a large square GEMM, the fastest large copy's GB/s).",
    "Absolute figures drift with the machine's load; the ratios, measured side by side, are what we quote.",
    "`npx bun run bench` reruns everything (the last full run's time is below; `BENCH_QUICK=1` for a shorter smoke run),",
    "`npx bun run bench <component>` reruns one file and keeps every other row, with its own date, from bench-results.json.",
    "",
  );
  const invocation = (label: string, inv: Invocation): string[] => [
    `- ${label}: ${shortDate(inv.date)} UTC, \`${inv.command}\`, ${fmtSeconds(inv.seconds)}, ` +
      (inv.completed !== undefined && inv.completed < inv.files.length
        ? `${inv.completed} of ${inv.files.length} bench files done (still running, or interrupted)`
        : `${inv.files.length} bench file${inv.files.length === 1 ? "" : "s"}`) +
      `; load average (1 / 5 / 15 min) ${fmtLoad(inv.load.before)} before, ${fmtLoad(inv.load.after)} after; commit ${inv.commit}`,
  ];
  const full = results.lastFull ?? null;
  if (last) out.push(`- Machine: ${last.cpu}, ${last.cores} cores, ${last.threads} threads per benchmark`);
  if (full) out.push(...invocation("Last full run", full));
  if (last && (!full || last.date !== full.date)) out.push(...invocation(full ? "Latest run since" : "Latest run", last));
  if (last || full) out.push("");
  out.push("## Scoreboard", "");
  out.push(
    ceilingLine(c, rows) + " The \"of ceiling\" column divides each row's GFLOP/s or GB/s by these: the ceiling bench's" +
      " fastest large GEMM and copy (`npx bun run bench ceiling`), raised to any row that did better, so no row exceeds 100%.",
    "",
  );
  out.push(rows.length ? scoreboardTable(rows) : "(no rows yet: run `npx bun run bench`)", "");
  const s = targetSummary(rows);
  const missed = rows.filter((r) => targetStatus(r).status === "missed");
  out.push(`Targets: ${s.met} met, ${s.missed} missed${s.noPeer ? `, ${s.noPeer} without a peer in the last run` : ""}.` +
    (missed.length ? ` Missed: ${missed.map((r) => `${r.component} / ${r.case}: ${rowRatio(r)!.toFixed(2)}x against ${r.target}x`).join("; ")}.` : ""), "");
  const missing = rows.filter((r) => r.peerMissing);
  if (missing.length) {
    out.push("Peers missing in the last run (install them, see README.md, Benchmarks):", "");
    for (const m of [...new Set(missing.map((r) => r.peerMissing!))]) out.push(`- ${m}`);
    out.push("");
  }

  out.push("## Runs", "");
  out.push("The latest run of each bench file; its command reruns only that file. Load averages are 1 / 5 / 15 min.", "");
  out.push(markdownTable(
    ["bench file", "command", "date (UTC)", "commit", "load before", "load after", "time", "rows", "status"],
    runs.map((r) => [
      `\`${r.file}\``,
      `\`${r.command}\``,
      shortDate(r.date) + (r.quick ? " (quick)" : ""),
      r.commit + (last && r.cpu !== last.cpu ? ` on ${r.cpu}` : ""),
      fmtLoad(r.load.before),
      fmtLoad(r.load.after),
      fmtSeconds(r.seconds),
      String(r.rows),
      (r.exitCode === 0 ? "ok" : r.exitCode === null ? "killed" : `FAILED (exit ${r.exitCode})`) +
        (r.earlier ? `; partial, other rows from ${shortDate(r.earlier.date)}` : ""),
    ].map(cell)),
  ), "");

  out.push(NOTES_BEGIN + normalizeNotes(notes) + NOTES_END, "");

  out.push("## Output of each benchmark's latest run", "");
  out.push("What each bench printed (its own detailed tables), verbatim.", "");
  for (const r of runs) {
    out.push("<details>", `<summary><code>${r.file}</code>: ${shortDate(r.date)} UTC, load ${fmtLoad(r.load.before)}</summary>`, "");
    out.push("```text", `$ ${r.command}`, r.output.replace(/```/g, "'''").trimEnd(), "```", "");
    if (r.earlier)
      out.push(`Rows this run did not measure are from the full run of ${shortDate(r.earlier.date)} UTC (commit ${r.earlier.commit}):`, "",
        "```text", `$ ${r.earlier.command}`, r.earlier.output.replace(/```/g, "'''").trimEnd(), "```", "");
    out.push("</details>", "");
  }
  return out.join("\n");
}
