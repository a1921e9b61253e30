/**
 * Matmul (the Linear layer) against OpenBLAS cblas_sgemm, same thread count, same process.
 *
 *   bun run bench matmul                                   # every shape
 *   bun packages/kernels/bench/matmul.bench.ts 15M         # rows whose preset/layer/op contains "15M"
 *   BENCH_ROUNDS=3 BENCH_THREADS=2 bun run bench matmul    # fewer rounds, explicit thread count
 *   BENCH_QUICK=1 bun run bench matmul                     # 3 rounds, 15M and decode rows only
 *
 * Shapes are the Linear layers of the 15M preset (N = B*T = 8*256 = 2048) and of TinyLlama 1.1B
 * (N = 512 to keep the run short), each as forward, dinp (dout @ W, NN) and dweight (dout^T @ inp, TN),
 * plus decode (N = 1) forward rows against cblas_sgemv. "ours ms" and both GFLOP/s are medians of
 * interleaved calls (tools/bench/harness.ts explains why); ratio = our GFLOP/s / OpenBLAS GFLOP/s from
 * those medians; best/best = the same from each side's fastest call, which is what an idle machine
 * would show when other jobs share the cores. OPENBLAS_LIB=none runs ours only.
 */
import { getBackend, matmulBackward, matmulForward, type Tensor } from "@tinyllama/kernels";
import {
  benchQuick, benchWaitPolicy, cpuModel, geomean, interleaved, markdownTable, peerMissing, reportRows, type BenchRow,
} from "../../../tools/bench/harness.ts";
import { CblasNoTrans, CblasTrans, OPENBLAS_MISSING, loadOpenBlas } from "../../../tools/bench/openblas.ts";

interface Layer {
  preset: string;
  name: string;
  N: number;
  C: number;
  OC: number;
}

const P15 = { dim: 288, hidden: 768, kv: 96, vocab: 32000, N: 2048 };
const P11 = { dim: 2048, hidden: 5632, kv: 256, vocab: 32000, N: 512 };

const layers = (preset: string, p: typeof P15, N: number): Layer[] => [
  { preset, name: "q, o", N, C: p.dim, OC: p.dim },
  { preset, name: "k, v", N, C: p.dim, OC: p.kv },
  { preset, name: "gate, up", N, C: p.dim, OC: p.hidden },
  { preset, name: "down", N, C: p.hidden, OC: p.dim },
  { preset, name: "lm head", N, C: p.dim, OC: p.vocab },
];

type Op = "forward" | "dinp" | "dweight" | "decode";
const TRAINING: Op[] = ["forward", "dinp", "dweight"];
const DECODE: Layer[] = [
  { preset: "15M", name: "lm head", N: 1, C: P15.dim, OC: P15.vocab },
  { preset: "1.1B", name: "q, o", N: 1, C: P11.dim, OC: P11.dim },
  { preset: "1.1B", name: "gate, up", N: 1, C: P11.dim, OC: P11.hidden },
  { preset: "1.1B", name: "lm head", N: 1, C: P11.dim, OC: P11.vocab },
];

const filters = process.argv.slice(2).map((a) => a.toLowerCase());
const cases: { layer: Layer; op: Op }[] = [
  ...layers("15M", P15, P15.N).flatMap((layer) => TRAINING.map((op) => ({ layer, op }))),
  ...layers("1.1B", P11, P11.N).flatMap((layer) => TRAINING.map((op) => ({ layer, op }))),
  ...DECODE.map((layer) => ({ layer, op: "decode" as Op })),
].filter(({ layer, op }) => filters.length === 0 || filters.some((f) => `${layer.preset} ${layer.name} ${op}`.toLowerCase().includes(f)))
  // Quick: the 1.1B training products take most of the full run's minutes.
  .filter(({ layer, op }) => !benchQuick() || layer.preset !== "1.1B" || op === "decode");

const waitPolicy = benchWaitPolicy(); // before getBackend() loads libgomp
const be = getBackend();
const threads = Number(process.env.BENCH_THREADS ?? 2);
be.threads = threads;
const blas = loadOpenBlas();
if (blas) blas.threads = threads;

console.log(`date: ${new Date().toISOString()}`);
console.log(`cpu: ${cpuModel()}, threads: ${threads}, OpenMP wait policy: ${waitPolicy}`);
console.log(`ours: ${be.buildInfo}`);
console.log(blas ? `peer: ${blas.config} (core ${blas.corename}) from ${blas.path}` : OPENBLAS_MISSING);
const blasMissing = blas ? undefined : peerMissing("OpenBLAS", "apt-get install libopenblas0-pthread (or OPENBLAS_LIB names no loadable file)");
const peerName = blas ? `OpenBLAS ${blas.config.split(" ")[1] ?? ""} (${blas.corename}), ${threads} threads` : "OpenBLAS";
console.log("");

/** Fills with a cheap deterministic pattern in [-1, 1): randn over 65M floats would dominate the run. */
function fill(t: Tensor, seed: number): Tensor {
  const a = t.data() as Float32Array;
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < a.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    a[i] = ((s >>> 0) / 4294967296) * 2 - 1;
  }
  return t;
}

function relDiff(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    num += d * d;
    den += b[i]! * b[i]!;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

const rows: string[][] = [];
const scoreRows: BenchRow[] = [];
const ratios = new Map<string, { median: number[]; best: number[] }>();
const problems: string[] = [];

for (const { layer, op } of cases) {
  const { N, C, OC } = layer;
  const inp = fill(be.tensor([N, C]), 1), weight = fill(be.tensor([OC, C]), 2), dout = fill(be.tensor([N, OC]), 3);
  // Separate outputs for ours and the peer, so one can be checked against the other.
  const shapeOf = op === "dinp" ? [N, C] : op === "dweight" ? [OC, C] : [N, OC];
  const outOurs = be.tensor(shapeOf), outPeer = be.tensor(shapeOf);
  const [i, w, d, o1, o2] = [inp.ptr(), weight.ptr(), dout.ptr(), outOurs.ptr(), outPeer.ptr()];

  let ours: () => void;
  let peer: (() => void) | null = null;
  let gemmShape: string; // M x N x K of the product as a GEMM
  switch (op) {
    case "forward":
    case "decode":
      ours = () => matmulForward(outOurs, inp, weight);
      if (blas)
        peer = op === "decode"
          ? () => blas.sgemv(CblasNoTrans, OC, C, 1, w, C, i, 0, o2)
          : () => blas.sgemm(CblasNoTrans, CblasTrans, N, OC, C, 1, i, C, w, C, 0, o2, OC);
      gemmShape = `${N}x${OC}x${C}`;
      break;
    case "dinp":
      ours = () => matmulBackward({ dinp: outOurs }, dout, inp, weight);
      if (blas) peer = () => blas.sgemm(CblasNoTrans, CblasNoTrans, N, C, OC, 1, d, OC, w, C, 1, o2, C);
      gemmShape = `${N}x${C}x${OC}`;
      break;
    case "dweight":
      ours = () => matmulBackward({ dweight: outOurs }, dout, inp, weight);
      if (blas) peer = () => blas.sgemm(CblasTrans, CblasNoTrans, OC, C, N, 1, d, OC, i, C, 1, o2, C);
      gemmShape = `${OC}x${C}x${N}`;
      break;
  }

  // One call each from zero, then compare: a benchmark of a wrong kernel is worthless.
  ours();
  if (peer) {
    peer();
    const diff = relDiff(outOurs.read(), outPeer.read());
    if (!(diff < 1e-5)) problems.push(`${layer.preset} ${layer.name} ${op}: ours and OpenBLAS differ, rel ${diff.toExponential(2)}`);
  }

  const t = interleaved(ours, peer);
  const flops = 2 * N * C * OC;
  const gf = (s: number): number => flops / s / 1e9;
  const ratio = t.peer === null ? null : t.peer / t.ours;
  const bestRatio = t.peerBest === null ? null : t.peerBest / t.oursBest;
  if (ratio !== null && bestRatio !== null) {
    const key = `${layer.preset} ${op === "decode" ? "decode" : "training"}`;
    const r = ratios.get(key) ?? { median: [], best: [] };
    r.median.push(ratio);
    r.best.push(bestRatio);
    ratios.set(key, r);
  }
  const row = [
    layer.preset, layer.name, op, gemmShape,
    (t.ours * 1e3).toFixed(3), gf(t.ours).toFixed(1),
    t.peer === null ? "-" : gf(t.peer).toFixed(1),
    ratio === null ? "-" : `${ratio.toFixed(2)}x`,
    bestRatio === null ? "-" : `${bestRatio.toFixed(2)}x`,
  ];
  rows.push(row);
  scoreRows.push({
    component: "matmul",
    case: `${layer.preset} ${layer.name} ${op} ${gemmShape}`,
    unit: "GFLOP/s",
    ours: gf(t.ours),
    peer: t.peer === null ? null : gf(t.peer),
    peerName: op === "decode" ? `${peerName}, cblas_sgemv` : `${peerName}, cblas_sgemm`,
    higherIsBetter: true,
    target: 1.0,
    gflops: gf(t.ours),
    // A matrix-vector product streams the weights once: memory-bound, so its bandwidth is the figure to compare.
    ...(op === "decode" ? { gbs: (4 * OC * C) / t.ours / 1e9 } : {}),
    ...(bestRatio === null ? {} : { note: `best/best ${bestRatio.toFixed(2)}x` }),
    ...(blasMissing ? { peerMissing: blasMissing } : {}),
  });
  process.stderr.write(`  ${row.join("  ")}\n`); // progress; the table goes to stdout at the end

  for (const tensor of [inp, weight, dout, outOurs, outPeer]) tensor.buffer.free();
}

console.log(markdownTable(
  ["preset", "layer", "op", "GEMM MxNxK", "ours ms", "ours GFLOP/s", "OpenBLAS GFLOP/s", "ratio", "best/best"],
  rows,
));
if (ratios.size > 0) {
  console.log("");
  for (const [key, { median: rs, best }] of ratios)
    console.log(
      `${key}: ratio of medians geomean ${geomean(rs).toFixed(2)}x (min ${Math.min(...rs).toFixed(2)}x), ` +
        `best/best geomean ${geomean(best).toFixed(2)}x (min ${Math.min(...best).toFixed(2)}x) over ${rs.length} rows`,
    );
}
reportRows(scoreRows);
for (const p of problems) console.error(`WARNING ${p}`);
if (problems.length) process.exit(1);
