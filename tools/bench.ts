/**
 * `bun run bench [component...] [-- args]`: the project's scoreboard.
 *
 * Runs packages/<pkg>/bench/*.bench.ts one after another, each in its own process (so one
 * benchmark's thread pools and caches do not colour the next), the ceiling bench
 * (packages/kernels/bench/ceiling.bench.ts) first. Each child's stdout is shown live and kept; the
 * scoreboard rows it reports with reportRows() (tools/bench/harness.ts) arrive through the file named
 * by $BENCH_ROWS. After each file the results are merged into bench-results.json (only that file's
 * rows change) and BENCHMARKS.md is rewritten from it; at the end one table of every row is printed.
 *
 *   bun run bench                      # everything (ceiling first)
 *   bun run bench matmul tokenizer     # files whose name or package contains an argument
 *   bun run bench matmul.bench -- 15M  # arguments after `--` go to every chosen file (a partial run)
 *   BENCH_QUICK=1 bun run bench        # fewer rounds and cases: a smoke run of the whole suite
 *   bun run bench --no-write matmul    # print, but leave bench-results.json and BENCHMARKS.md alone
 *   bun run bench --ceiling matmul     # remeasure the ceilings too (a filtered run reuses the stored ones)
 *   bun run bench --list               # the bench files and the filter that selects each alone
 *   bun run bench --render             # rewrite BENCHMARKS.md from bench-results.json, run nothing
 *
 * Environment: BENCH_THREADS (default 2), BENCH_ROUNDS, BENCH_QUICK, BENCH_TIMEOUT_S (per file,
 * default 3600), OMP_WAIT_POLICY (see harness.ts). Exits non-zero when a benchmark fails or when
 * nothing matched.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { cpuModel, loadAverage } from "./bench/harness.ts";
import {
  CEILING_FILE,
  ceilingsOf,
  emptyResults,
  extractNotes,
  mergeRun,
  parseResults,
  parseRowLines,
  recordInvocation,
  renderBenchmarksMd,
  scoreboardTable,
  targetSummary,
  type Invocation,
  type Results,
  type RunRecord,
} from "./bench/scoreboard.ts";

const root = resolve(import.meta.dir, "..");
const RESULTS = join(root, "bench-results.json");
const MARKDOWN = join(root, "BENCHMARKS.md");
const argv = process.argv.slice(2);
const dash = argv.indexOf("--");
const own = dash < 0 ? argv : argv.slice(0, dash);
const flags = new Set(own.filter((a) => a.startsWith("--")));
for (const f of flags)
  if (!["--no-write", "--ceiling", "--list", "--render"].includes(f)) {
    console.error(`bench: unknown flag ${f} (known: --no-write, --ceiling, --list, --render; arguments for the benches go after --)`);
    process.exit(1);
  }
const filters = own.filter((a) => !a.startsWith("--")).map((a) => a.toLowerCase());
const passOn = dash < 0 ? [] : argv.slice(dash + 1); // `bun run bench matmul -- 15M` hands "15M" to the file
const write = !flags.has("--no-write");

function benchFiles(): string[] {
  const pkgs = join(root, "packages");
  const out: string[] = [];
  for (const pkg of readdirSync(pkgs).sort()) {
    const dir = join(pkgs, pkg, "bench");
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir).sort()) if (f.endsWith(".bench.ts")) out.push(`packages/${pkg}/bench/${f}`);
  }
  return out.sort((a, b) => (a === CEILING_FILE ? -1 : b === CEILING_FILE ? 1 : a < b ? -1 : 1));
}

/** A filter argument matches a file when the package name or the file name contains it. */
const matches = (file: string, f: string): boolean => {
  const [, pkg = "", , name = ""] = file.toLowerCase().split("/");
  return pkg.includes(f) || name.includes(f) || file.toLowerCase() === f;
};

/** The shortest filter that selects `file` alone: "matmul", else "matmul.bench", else the path. */
function uniqueFilter(file: string, all: readonly string[]): string {
  const stem = file.split("/").pop()!.replace(/\.bench\.ts$/, "");
  for (const f of [stem, `${stem}.bench`]) if (all.filter((x) => matches(x, f.toLowerCase())).length === 1) return f;
  return file;
}

/** The environment variables that change what a bench measures, as a command prefix. */
function envPrefix(): string {
  const names = ["BENCH_QUICK", "BENCH_ROUNDS", "BENCH_THREADS", "BENCH_SETTLE_MS", "OMP_WAIT_POLICY", "TINYLLAMA_THREADS", "OPENBLAS_LIB"];
  return names.filter((n) => process.env[n] !== undefined).map((n) => `${n}=${process.env[n] || "''"} `).join("");
}

function gitCommit(): string {
  const head = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], { cwd: root, stdout: "pipe", stderr: "ignore" });
  if (head.exitCode !== 0) return "unknown";
  // bench-results.json and BENCHMARKS.md are this tool's own output: changes there are not "dirty".
  const st = Bun.spawnSync(["git", "status", "--porcelain", "--", ".", ":!bench-results.json", ":!BENCHMARKS.md"], { cwd: root, stdout: "pipe", stderr: "ignore" });
  return head.stdout.toString().trim() + (st.stdout.toString().trim() ? "+dirty" : "");
}

function loadResults(): Results {
  if (!existsSync(RESULTS)) return emptyResults();
  return parseResults(readFileSync(RESULTS, "utf8"));
}

const stripAnsi = (s: string): string => s.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "");
const MAX_OUTPUT = 24_000;

/** Runs one bench file with stdout shown live and captured, its rows collected through $BENCH_ROWS. */
async function runFile(file: string, args: string[], all: readonly string[], commit: string, threads: number) {
  const dir = mkdtempSync(join(tmpdir(), "tl-bench-rows-"));
  const rowsFile = join(dir, "rows.jsonl");
  writeFileSync(rowsFile, "");
  const date = new Date().toISOString();
  const before = loadAverage();
  const t0 = performance.now();
  const proc = Bun.spawn([process.execPath, join(root, file), ...args], {
    cwd: root,
    stdout: "pipe",
    stderr: "inherit",
    stdin: "ignore",
    env: { ...process.env, BENCH_ROWS: rowsFile },
  });
  const timeoutS = Number(process.env.BENCH_TIMEOUT_S ?? 3600);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    console.error(`bench: ${file} ran over ${timeoutS} s (BENCH_TIMEOUT_S); killing it`);
    proc.kill();
  }, timeoutS * 1000);
  let output = "";
  const decoder = new TextDecoder();
  const reader = proc.stdout.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    process.stdout.write(value);
    output += decoder.decode(value, { stream: true });
    if (output.length > 2 * MAX_OUTPUT) output = output.slice(-MAX_OUTPUT);
  }
  const code = await proc.exited;
  clearTimeout(timer);
  const { rows, errors } = parseRowLines(readFileSync(rowsFile, "utf8"));
  rmSync(dir, { recursive: true, force: true });
  for (const e of errors) console.error(`bench: ${file}: invalid row skipped, ${e}`);
  output = stripAnsi(output).trim();
  if (output.length > MAX_OUTPUT) output = `[... first ${output.length - MAX_OUTPUT} characters left out ...]\n${output.slice(-MAX_OUTPUT)}`;
  const filter = uniqueFilter(file, all);
  const run: RunRecord = {
    file,
    command: `${envPrefix()}npx bun run bench ${filter}${args.length ? ` -- ${args.join(" ")}` : ""}`,
    date,
    seconds: (performance.now() - t0) / 1000,
    commit,
    cpu: cpuModel(),
    threads,
    load: { before, after: loadAverage() },
    exitCode: timedOut ? null : code,
    quick: !!process.env.BENCH_QUICK && process.env.BENCH_QUICK !== "0",
    args,
    rows: rows.length,
    output,
  };
  return { run, rows };
}

// ---------------------------------------------------------------------------------------------------

/** BENCHMARKS.md from the results, with the notes as they are in the file now (they may be edited during a long run). */
function writeMarkdown(results: Results): void {
  writeFileSync(MARKDOWN, renderBenchmarksMd(results, extractNotes(existsSync(MARKDOWN) ? readFileSync(MARKDOWN, "utf8") : null)));
}

const all = benchFiles();
if (flags.has("--render")) {
  writeMarkdown(loadResults());
  console.log(`wrote ${MARKDOWN} from ${RESULTS}`);
  process.exit(0);
}
if (flags.has("--list")) {
  for (const f of all) console.log(`${uniqueFilter(f, all).padEnd(20)} ${f}`);
  process.exit(0);
}
const chosen = filters.length === 0 ? all : all.filter((f) => filters.some((x) => matches(f, x)));
if (chosen.length === 0) {
  console.error(filters.length ? `no benchmark matches ${filters.join(", ")}; available:` : "no benchmarks found; expected packages/*/bench/*.bench.ts");
  for (const f of all) console.error(`  ${uniqueFilter(f, all).padEnd(20)} ${f}`);
  process.exit(1);
}

let results = loadResults();
// Refuse to start a long run that could not write its notes back (a generated file without markers).
if (write && existsSync(MARKDOWN)) extractNotes(readFileSync(MARKDOWN, "utf8"));
// The "% of ceiling" column needs ceilings: a filtered run reuses the stored ones unless asked.
const plan: { file: string; args: string[] }[] = chosen.map((file) => ({ file, args: file === CEILING_FILE ? [] : passOn }));
if (!chosen.includes(CEILING_FILE) && all.includes(CEILING_FILE) && (flags.has("--ceiling") || ceilingsOf(results.rows).gflops === null))
  plan.unshift({ file: CEILING_FILE, args: [] });

const commit = gitCommit();
const threads = Number(process.env.BENCH_THREADS ?? process.env.TINYLLAMA_THREADS ?? cpus().length);
const started = new Date().toISOString();
const loadBefore = loadAverage();
const t0 = performance.now();
console.log(`bench: ${plan.length} file${plan.length === 1 ? "" : "s"}, ${cpuModel()}, ${threads} threads, load average ${loadBefore.join(" ")}, commit ${commit}`);

let failed = 0, completed = 0;
for (const { file, args } of plan) {
  console.log(`\n## ${file}\n`);
  const { run, rows } = await runFile(file, args, all, commit, threads);
  if (run.exitCode !== 0) {
    failed++;
    console.error(`bench: ${file} ${run.exitCode === null ? "was killed" : `exited with code ${run.exitCode}`}`);
  }
  console.log(`\nbench: ${file}: ${rows.length} scoreboard row${rows.length === 1 ? "" : "s"}, ${run.seconds.toFixed(0)} s, load ${run.load.after.join(" ")}`);
  results = mergeRun(results, run, rows);
  completed++;
  const last: Invocation = {
    date: started,
    command: `${envPrefix()}npx bun run bench${own.length ? ` ${own.join(" ")}` : ""}${passOn.length ? ` -- ${passOn.join(" ")}` : ""}`,
    seconds: (performance.now() - t0) / 1000,
    commit,
    cpu: cpuModel(),
    cores: cpus().length,
    threads,
    load: { before: loadBefore, after: loadAverage() },
    files: plan.map((p) => p.file),
    completed,
  };
  results = recordInvocation(results, last, filters.length === 0 && passOn.length === 0);
  // Written after every file, so an interrupted suite keeps what it finished.
  if (write) {
    writeFileSync(RESULTS, JSON.stringify(results, null, 1) + "\n");
    writeMarkdown(results);
  }
}

console.log(`\n# Scoreboard (${plan.length} file${plan.length === 1 ? "" : "s"} run now; other rows from their last run, dated)\n`);
console.log(results.rows.length ? scoreboardTable(results.rows) : "(no scoreboard rows: no bench reported any with reportRows())");
const s = targetSummary(results.rows);
console.log(`\ntargets: ${s.met} met, ${s.missed} missed, ${s.noPeer} without a peer`);
for (const m of new Set(results.rows.filter((r) => r.peerMissing).map((r) => r.peerMissing!))) console.log(`PEER MISSING: ${m}`);
console.log(`total ${((performance.now() - t0) / 1000).toFixed(0)} s, load average ${loadAverage().join(" ")}` +
  (write ? `; wrote ${relative(process.cwd(), RESULTS) || RESULTS} and ${relative(process.cwd(), MARKDOWN) || MARKDOWN}` : " (--no-write: files untouched)"));
process.exit(failed ? 1 : 0);
