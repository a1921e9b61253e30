// The scoreboard logic of `bun run bench` (tools/bench/scoreboard.ts) on synthetic rows: ratio
// direction, target met/missed, fraction of ceiling, merging one file's run into stored results,
// and BENCHMARKS.md keeping its hand-written notes.
import { describe, expect, test } from "bun:test";
import { rowRatio, type BenchRow } from "../tools/bench/harness.ts";
import {
  CEILING_FILE,
  NOTES_BEGIN,
  NOTES_END,
  ceilingCell,
  ceilingLine,
  ceilingsOf,
  emptyResults,
  extractNotes,
  fmtNum,
  mergeRun,
  parseResults,
  parseRowLines,
  recordInvocation,
  renderBenchmarksMd,
  scoreboardCells,
  targetCell,
  targetStatus,
  type Results,
  type RunRecord,
  type StoredRow,
} from "../tools/bench/scoreboard.ts";

const row = (over: Partial<BenchRow> = {}): BenchRow => ({
  component: "matmul",
  case: "15M q forward",
  unit: "GFLOP/s",
  ours: 200,
  peer: 100,
  peerName: "OpenBLAS",
  higherIsBetter: true,
  ...over,
});

const run = (file: string, date: string, over: Partial<RunRecord> = {}): RunRecord => ({
  file,
  command: `npx bun run bench ${file}`,
  date,
  seconds: 12,
  commit: "abc1234",
  cpu: "Test CPU",
  threads: 2,
  load: { before: [1, 1, 1], after: [2, 2, 2] },
  exitCode: 0,
  quick: false,
  args: [],
  rows: 0,
  output: "table",
  ...over,
});

const MATMUL = "packages/kernels/bench/matmul.bench.ts";
const TOK = "packages/tokenizer/bench/tokenizer.bench.ts";

describe("ratio and target", () => {
  test("higher is better: ours / peer", () => {
    expect(rowRatio(row({ ours: 300, peer: 100 }))).toBe(3);
    expect(rowRatio(row({ ours: 50, peer: 100 }))).toBe(0.5);
  });

  test("lower is better (times, memory): peer / ours, so > 1 still means we win", () => {
    expect(rowRatio(row({ unit: "ms", higherIsBetter: false, ours: 10, peer: 40 }))).toBe(4);
    expect(rowRatio(row({ unit: "ms", higherIsBetter: false, ours: 40, peer: 10 }))).toBe(0.25);
  });

  test("no peer or a non-positive figure gives no ratio", () => {
    expect(rowRatio(row({ peer: null }))).toBeNull();
    expect(rowRatio(row({ peer: 0 }))).toBeNull();
  });

  test("target met, missed by how much, or not judged without a peer", () => {
    expect(targetStatus(row({ ours: 310, peer: 100, target: 3 })).status).toBe("met");
    expect(targetStatus(row({ ours: 300, peer: 100, target: 3 })).status).toBe("met"); // exactly on target
    const miss = targetStatus(row({ ours: 240, peer: 100, target: 3 }));
    expect(miss.status).toBe("missed");
    expect(miss.shortfall).toBeCloseTo(0.2, 12);
    expect(targetCell(row({ ours: 240, peer: 100, target: 3 }))).toBe("≥ 3x MISSED by 0.60x (20%)");
    expect(targetCell(row({ ours: 310, peer: 100, target: 3 }))).toBe("≥ 3x met");
    expect(targetCell(row({ peer: null, target: 3 }))).toBe("≥ 3x, no peer");
    expect(targetCell(row())).toBe("-");
  });

  test("a lower-is-better row meets its target by being faster, not slower", () => {
    // spm_train takes 6 s, ours 3 s: 2x faster, target 0.5 (ours may take up to twice the time)
    expect(targetStatus(row({ unit: "s", higherIsBetter: false, ours: 3, peer: 6, target: 0.5 })).status).toBe("met");
    expect(targetStatus(row({ unit: "s", higherIsBetter: false, ours: 13, peer: 6, target: 0.5 })).status).toBe("missed");
  });
});

describe("ceilings", () => {
  const stored = (r: Partial<StoredRow>): StoredRow => ({ ...row(), file: CEILING_FILE, date: "2026-11-29T10:00:00.000Z", ...r });
  const rows = [
    stored({ component: "ceiling", case: "matmul", gflops: 300 }),
    stored({ component: "ceiling", case: "copy 1t", unit: "GB/s", gbs: 25 }),
    stored({ component: "ceiling", case: "copy 2t", unit: "GB/s", gbs: 50 }),
    stored({ component: "matmul", file: MATMUL, gflops: 150 }), // not a ceiling row: ignored
  ];

  test("the largest gflops and gbs among the ceiling rows", () => {
    const c = ceilingsOf(rows);
    expect(c.gflops).toBe(300);
    expect(c.gbs).toBe(50);
  });

  test("a row faster than the measured ceiling raises it (a loaded minute for the ceiling bench), so no fraction exceeds 100%", () => {
    const quiet = stored({ component: "matmul", case: "15M q forward", file: MATMUL, gflops: 360, date: "2026-11-29T11:00:00.000Z" });
    const c = ceilingsOf([...rows, quiet]);
    expect(c.gflops).toBe(360);
    expect(c.gflopsFrom).toBe(quiet);
    expect(c.gbs).toBe(50);
    expect(ceilingCell(quiet, c)).toBe("100% FLOP");
    expect(ceilingLine(c, [...rows, quiet])).toBe(
      "Ceilings: matmul 360 GFLOP/s (matmul / 15M q forward, 2026-11-29 11:00 UTC; the ceiling bench measured 300 GFLOP/s); " +
        "memory 50.0 GB/s (ceiling bench, 2026-11-29 10:00 UTC).",
    );
    expect(ceilingLine(ceilingsOf([]), [])).toBe("Ceilings: matmul not measured; memory not measured.");
  });

  test("a row's fraction of each ceiling it has a rate for", () => {
    const c = ceilingsOf(rows);
    expect(ceilingCell(row({ gflops: 150 }), c)).toBe("50% FLOP");
    expect(ceilingCell(row({ gbs: 40 }), c)).toBe("80% BW");
    expect(ceilingCell(row({ gflops: 30, gbs: 5 }), c)).toBe("10% FLOP, 10% BW");
    expect(ceilingCell(row(), c)).toBe("-");
    expect(ceilingCell(row({ gflops: 150 }), ceilingsOf([]))).toBe("-"); // no ceiling measured yet
  });
});

describe("merging a run into the results", () => {
  const d1 = "2026-11-28T09:00:00.000Z", d2 = "2026-11-29T11:00:00.000Z";
  const base = (): Results => {
    let r = emptyResults();
    r = mergeRun(r, run(MATMUL, d1, { rows: 2 }), [row({ case: "a" }), row({ case: "b" })]);
    r = mergeRun(r, run(TOK, d1, { rows: 1 }), [row({ component: "tokenizer", case: "encode", unit: "MB/s" })]);
    return r;
  };

  test("a full run replaces that file's rows only; other files keep their rows and dates", () => {
    const r = mergeRun(base(), run(TOK, d2, { rows: 1 }), [row({ component: "tokenizer", case: "encode2", unit: "MB/s", ours: 9 })]);
    expect(r.rows.filter((x) => x.file === MATMUL).map((x) => [x.case, x.date])).toEqual([["a", d1], ["b", d1]]);
    expect(r.rows.filter((x) => x.file === TOK).map((x) => [x.case, x.date, x.ours])).toEqual([["encode2", d2, 9]]);
    expect(r.runs.map((x) => [x.file, x.date])).toEqual([[MATMUL, d1], [TOK, d2]]);
  });

  test("a partial run (arguments after --) replaces only the rows it measured", () => {
    const r = mergeRun(base(), run(MATMUL, d2, { args: ["15M"], rows: 1 }), [row({ case: "b", ours: 999 })]);
    const m = r.rows.filter((x) => x.file === MATMUL);
    expect(m.map((x) => [x.case, x.date, x.ours])).toEqual([["a", d1, 200], ["b", d2, 999]]);
  });

  test("one case against two peers is two rows", () => {
    const r = mergeRun(base(), run(TOK, d2, { rows: 2 }), [
      row({ component: "tokenizer", case: "encode", peerName: "HF tokenizers" }),
      row({ component: "tokenizer", case: "encode", peerName: "llama-tokenizer-js" }),
    ]);
    expect(r.rows.filter((x) => x.file === TOK).map((x) => x.peerName)).toEqual(["HF tokenizers", "llama-tokenizer-js"]);
    const again = mergeRun(r, run(TOK, d2, { args: ["x"] }), [row({ component: "tokenizer", case: "encode", peerName: "HF tokenizers", ours: 7 })]);
    expect(again.rows.filter((x) => x.file === TOK).map((x) => [x.peerName, x.ours])).toEqual([["HF tokenizers", 7], ["llama-tokenizer-js", 200]]);
  });

  test("a partial run keeps the output of the file's last full run, for the rows it did not rerun", () => {
    const full = mergeRun(emptyResults(), run(MATMUL, d1, { rows: 2, output: "FULL TABLE" }), [row({ case: "a" }), row({ case: "b" })]);
    const once = mergeRun(full, run(MATMUL, d2, { args: ["b"], rows: 1, output: "ONLY B" }), [row({ case: "b" })]);
    const twice = mergeRun(once, run(MATMUL, d2, { args: ["a"], rows: 1, output: "ONLY A" }), [row({ case: "a" })]);
    for (const r of [once, twice]) expect(r.runs[0]!.earlier).toEqual({ date: d1, command: `npx bun run bench ${MATMUL}`, commit: "abc1234", output: "FULL TABLE" });
    const md = renderBenchmarksMd(twice, "x");
    expect(md).toContain("ONLY A");
    expect(md).toContain("FULL TABLE");
    expect(md).toContain("ok; partial, other rows from 2026-11-28 09:00");
    // a full run again drops the earlier output
    expect(mergeRun(twice, run(MATMUL, d2, { rows: 2 }), [row({ case: "a" }), row({ case: "b" })]).runs[0]!.earlier).toBeUndefined();
  });

  test("a quick run is partial and marks its rows", () => {
    const r = mergeRun(base(), run(MATMUL, d2, { quick: true }), [row({ case: "a", ours: 1 })]);
    const m = r.rows.filter((x) => x.file === MATMUL);
    expect(m.map((x) => [x.case, !!x.quick])).toEqual([["a", true], ["b", false]]);
  });

  test("a failed run that reported nothing keeps the old rows but records the failure", () => {
    const r = mergeRun(base(), run(MATMUL, d2, { exitCode: 1 }), []);
    expect(r.rows.filter((x) => x.file === MATMUL).map((x) => x.date)).toEqual([d1, d1]);
    expect(r.runs.find((x) => x.file === MATMUL)!.exitCode).toBe(1);
  });

  test("the ceiling file sorts first, whatever order files ran in", () => {
    const r = mergeRun(base(), run(CEILING_FILE, d2), [row({ component: "ceiling", case: "matmul", gflops: 300 })]);
    expect(r.rows[0]!.file).toBe(CEILING_FILE);
    expect(r.runs[0]!.file).toBe(CEILING_FILE);
  });

  test("results survive a JSON round trip", () => {
    const r = base();
    expect(parseResults(JSON.stringify(r))).toEqual(r);
    expect(() => parseResults(JSON.stringify({ rows: [] }))).toThrow(/version-1/);
  });
});

describe("rows from $BENCH_ROWS", () => {
  test("valid lines are kept, invalid ones reported", () => {
    const good = JSON.stringify(row());
    const { rows, errors } = parseRowLines(
      [good, "not json", JSON.stringify({ ...row(), ours: "fast" }), JSON.stringify({ ...row(), higherIsBetter: undefined }), ""].join("\n"),
    );
    expect(rows).toEqual([row()]);
    expect(errors.length).toBe(3);
    expect(errors[1]).toContain("ours must be a finite number");
  });
});

describe("BENCHMARKS.md", () => {
  const results = (): Results => {
    let r = emptyResults();
    r = mergeRun(r, run(CEILING_FILE, "2026-11-29T10:00:00.000Z"), [row({ component: "ceiling", case: "matmul 2048^3", ours: 300, peer: null, peerName: null, gflops: 300 })]);
    r = mergeRun(r, run(MATMUL, "2026-11-29T10:05:00.000Z", { output: "| big | table |" }), [
      row({ case: "15M lm head | forward", ours: 150, peer: 100, target: 1, gflops: 150 }),
      row({ case: "decode", ours: 5, peer: 10, target: 1, peerName: "OpenBLAS sgemv" }),
    ]);
    r = mergeRun(r, run(TOK, "2026-11-28T08:00:00.000Z"), [
      row({ component: "tokenizer", case: "encode vs SentencePiece", unit: "MB/s", peer: null, peerName: "SentencePiece", peerMissing: "python3-sentencepiece not installed", target: 0.5 }),
    ]);
    return r;
  };

  test("the scoreboard row has ratio, target verdict, ceiling fraction and date", () => {
    const r = results();
    const cells = scoreboardCells(r.rows.find((x) => x.case.startsWith("15M"))!, ceilingsOf(r.rows));
    expect(cells).toEqual([
      "matmul", "15M lm head \\| forward", "GFLOP/s", "150", "100", "OpenBLAS", "1.50x", "≥ 1x met", "50% FLOP", "2026-11-29 10:05", "",
    ]);
  });

  test("generated: run metadata, every row, misses, missing peers, commands, outputs", () => {
    const md = renderBenchmarksMd({ ...results(), last: null }, extractNotes(null));
    expect(md).toContain("| matmul    | decode");
    expect(md).toContain("MISSED by 0.50x (50%)");
    expect(md).toContain("Targets: 1 met, 1 missed, 1 without a peer in the last run.");
    expect(md).toContain("- python3-sentencepiece not installed");
    expect(md).toContain("`npx bun run bench packages/kernels/bench/matmul.bench.ts`");
    expect(md).toContain("| big | table |");
    expect(md).toContain("Ceilings: matmul 300 GFLOP/s (ceiling bench, 2026-11-29 10:00 UTC)");
    expect(md).toContain("Missed: matmul / decode: 0.50x against 1x.");
  });

  test("the run metadata says when the last run did not finish", () => {
    const last = { date: "2026-11-29T10:00:00.000Z", command: "npx bun run bench", seconds: 600, commit: "abc1234", cpu: "Test CPU",
      cores: 2, threads: 2, load: { before: [9.1, 8, 7], after: [3, 4, 5] }, files: [CEILING_FILE, MATMUL, TOK] };
    const partial = renderBenchmarksMd({ ...results(), last: { ...last, completed: 2 } }, "x");
    expect(partial).toContain("2 of 3 bench files done (still running, or interrupted)");
    expect(partial).toContain("- Machine: Test CPU, 2 cores, 2 threads per benchmark");
    expect(partial).toContain("9.10 / 8.00 / 7.00 before");
    const done = renderBenchmarksMd({ ...results(), last: { ...last, completed: 3 } }, "x");
    expect(done).toContain("10.0 min, 3 bench files");
  });

  test("the last full run stays in the header after a run of one component", () => {
    const full = { date: "2026-11-29T10:00:00.000Z", command: "npx bun run bench", seconds: 2400, commit: "abc1234", cpu: "Test CPU",
      cores: 2, threads: 2, load: { before: [9, 8, 7], after: [3, 4, 5] }, files: [CEILING_FILE, MATMUL, TOK] };
    const one = { ...full, date: "2026-11-29T11:00:00.000Z", command: "npx bun run bench matmul", seconds: 300, files: [MATMUL] };
    let r = recordInvocation(results(), full, true);
    r = recordInvocation(r, one, false);
    expect(r.last).toBe(one);
    expect(r.lastFull).toBe(full);
    const md = renderBenchmarksMd(r, "x");
    expect(md).toContain("- Last full run: 2026-11-29 10:00 UTC, `npx bun run bench`, 40.0 min, 3 bench files");
    expect(md).toContain("- Latest run since: 2026-11-29 11:00 UTC, `npx bun run bench matmul`, 5.0 min, 1 bench file");
    expect(parseResults(JSON.stringify(r)).lastFull).toEqual(full);
  });

  test("hand-written notes survive regeneration verbatim", () => {
    const notes = "\n## Methodology\n\nWhy medians | and `passive` waits.\n\n";
    const first = renderBenchmarksMd(results(), notes);
    expect(first).toContain(NOTES_BEGIN);
    expect(first).toContain(NOTES_END);
    expect(extractNotes(first)).toBe("\n## Methodology\n\nWhy medians | and `passive` waits.\n\n");
    // regenerate from the regenerated file: stable, nothing doubled
    const second = renderBenchmarksMd(results(), extractNotes(first));
    expect(second).toBe(first);
    expect(second.split("## Methodology").length).toBe(2);
  });

  test("a hand-curated file without markers becomes the notes; a generated one without markers is refused", () => {
    const curated = "# Benchmarks\n\n## matmul\n\nprose\n";
    expect(extractNotes(curated)).toContain("## matmul\n\nprose");
    const generated = renderBenchmarksMd(results(), "\nx\n");
    const stripped = generated.replace(NOTES_BEGIN, "").replace(NOTES_END, "");
    expect(() => extractNotes(stripped)).toThrow(/NOTES markers/);
    expect(() => extractNotes(generated.replace(NOTES_END, ""))).toThrow(/marker/);
  });
});

test("figures print with about three significant digits", () => {
  expect([fmtNum(12345.6), fmtNum(123.4), fmtNum(12.34), fmtNum(1.234), fmtNum(0.01234), fmtNum(0)]).toEqual(["12346", "123", "12.3", "1.23", "0.0123", "0"]);
});
