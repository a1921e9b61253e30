/**
 * The machine's ceilings, which the scoreboard's "of ceiling" column divides by (`bun run bench` runs
 * this file first):
 *  - matmul: GFLOP/s of our best kernel (tl_matmul_forward) on a large square GEMM, the fastest call;
 *    OpenBLAS cblas_sgemm on the same product beside it;
 *  - memory bandwidth: GB/s (bytes read + bytes written) of a large copy, the fastest of one thread
 *    (tl_copy, i.e. memmove; TypedArray.set) and of one copy split over $BENCH_THREADS worker threads.
 *
 *   bun packages/kernels/bench/ceiling.bench.ts        # 2048^3 GEMM, 256 MB copy
 *   BENCH_QUICK=1 bun packages/kernels/bench/ceiling.bench.ts   # same sizes, fewer rounds
 *
 * Why the fastest call and not the median: a ceiling is what the machine can do; on a shared machine
 * the median includes other people's jobs. Fractions of it are therefore conservative.
 */
import { Worker } from "node:worker_threads";
import { getBackend, matmulForward, type Tensor } from "@tinyllama/kernels";
import { benchQuick, benchWaitPolicy, cpuModel, interleaved, loadAverage, peerMissing, reportRows, type BenchRow } from "../../../tools/bench/harness.ts";
import { CblasTrans, CblasNoTrans, OPENBLAS_MISSING, loadOpenBlas } from "../../../tools/bench/openblas.ts";

const quick = benchQuick();
const threads = Number(process.env.BENCH_THREADS ?? 2);
const waitPolicy = benchWaitPolicy(); // before getBackend() loads libgomp
const be = getBackend();
be.threads = threads;
const blas = loadOpenBlas();
if (blas) blas.threads = threads;

console.log(`date: ${new Date().toISOString()}, load average ${loadAverage().join(" ")}`);
console.log(`cpu: ${cpuModel()}, threads: ${threads}, OpenMP wait policy: ${waitPolicy}`);
console.log(`ours: ${be.buildInfo}`);
console.log(blas ? `peer: ${blas.config} (core ${blas.corename})` : OPENBLAS_MISSING);

function fill(t: Tensor, seed: number): Tensor {
  const a = t.data() as Float32Array;
  let s = seed >>> 0 || 1;
  for (let i = 0; i < a.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2147483648 - 1;
  }
  return t;
}

const rows: BenchRow[] = [];

// 1. matmul: out (N,OC) = inp (N,C) @ W^T (OC,C), square
{
  const S = 2048;
  const inp = fill(be.tensor([S, S]), 1), w = fill(be.tensor([S, S]), 2), out = be.tensor([S, S]), out2 = be.tensor([S, S]);
  const [i, wp, o2] = [inp.ptr(), w.ptr(), out2.ptr()];
  const peer = blas ? () => blas.sgemm(CblasNoTrans, CblasTrans, S, S, S, 1, i, S, wp, S, 0, o2, S) : null;
  const t = interleaved(() => matmulForward(out, inp, w), peer, { rounds: quick ? 3 : 5, blockMs: 200, maxCallsPerBlock: 5 });
  const gf = (s: number): number => (2 * S * S * S) / s / 1e9;
  const best = gf(t.oursBest), med = gf(t.ours);
  const peerBest = t.peerBest === null ? null : gf(t.peerBest);
  console.log(`\nmatmul ${S}x${S}x${S}: ours best ${best.toFixed(1)} GFLOP/s (median ${med.toFixed(1)})` +
    (peerBest === null ? "" : `, OpenBLAS best ${peerBest.toFixed(1)} GFLOP/s (median ${gf(t.peer!).toFixed(1)})`));
  rows.push({
    component: "ceiling",
    case: `matmul ${S}x${S}x${S}, fastest call`,
    unit: "GFLOP/s",
    ours: best,
    peer: peerBest,
    peerName: blas ? `OpenBLAS ${blas.config.split(" ")[1] ?? ""} cblas_sgemm (${blas.corename}), ${threads} threads` : "OpenBLAS cblas_sgemm",
    higherIsBetter: true,
    gflops: best,
    note: `median ${med.toFixed(1)} GFLOP/s; every "% FLOP" is of this row's ours`,
    ...(blas ? {} : { peerMissing: peerMissing("OpenBLAS", "apt-get install libopenblas0-pthread") }),
  });
  for (const x of [inp, w, out, out2]) x.buffer.free();
}

// 2. memory bandwidth: a copy far larger than any cache, counted as bytes read + bytes written
const MB = 256; // quick too: a smaller copy would partly run in cache and lower every "% BW"
const bytes = MB << 20;
{
  const src = be.tensor([bytes / 4]), dst = be.tensor([bytes / 4]);
  (src.data() as Float32Array).fill(1);
  (dst.data() as Float32Array).fill(0); // fault the pages in before timing
  const a = src.data() as Float32Array, b = dst.data() as Float32Array;
  const t = interleaved(() => be.copy(dst, src), () => b.set(a), { rounds: quick ? 3 : 5, blockMs: 200, maxCallsPerBlock: 5, settleMs: { ours: 5, peer: 5 } });
  const gbs = (s: number): number => (2 * bytes) / s / 1e9;
  console.log(`copy ${MB} MB, 1 thread: tl_copy best ${gbs(t.oursBest).toFixed(1)} GB/s (median ${gbs(t.ours).toFixed(1)}), ` +
    `TypedArray.set best ${gbs(t.peerBest!).toFixed(1)} GB/s (median ${gbs(t.peer!).toFixed(1)})`);
  rows.push({
    component: "ceiling",
    case: `copy ${MB} MB, 1 thread: tl_copy (memmove), fastest call`,
    unit: "GB/s",
    ours: gbs(t.oursBest),
    peer: gbs(t.peerBest!),
    peerName: "Float32Array.set, same buffers",
    higherIsBetter: true,
    gbs: Math.max(gbs(t.oursBest), gbs(t.peerBest!)),
    note: "GB/s = (read + written bytes) / time; ceiling = the fastest copy of this row and the next",
  });
  src.buffer.free();
  dst.buffer.free();
}

// The same copy split over worker threads, each copying its slice of one SharedArrayBuffer pair: one
// thread rarely saturates a socket's memory controllers.
if (threads > 1) {
  const src = new Float32Array(new SharedArrayBuffer(bytes)).fill(1);
  const dst = new Float32Array(new SharedArrayBuffer(bytes)).fill(0);
  const code = `const { parentPort, workerData } = require("node:worker_threads");
const { src, dst, lo, hi } = workerData;
const a = new Float32Array(src).subarray(lo, hi), b = new Float32Array(dst).subarray(lo, hi);
parentPort.on("message", () => { b.set(a); parentPort.postMessage(0); });`;
  const n = src.length, per = Math.ceil(n / threads);
  const workers = Array.from({ length: threads }, (_, k) =>
    new Worker(code, { eval: true, workerData: { src: src.buffer, dst: dst.buffer, lo: k * per, hi: Math.min(n, (k + 1) * per) } }));
  const once = (): Promise<unknown[]> => Promise.all(workers.map((w) => new Promise((r) => { w.once("message", r); w.postMessage(0); })));
  await once();
  const samples: number[] = [];
  for (let i = 0; i < (quick ? 6 : 15); i++) {
    const t0 = Bun.nanoseconds();
    await once();
    samples.push((Bun.nanoseconds() - t0) * 1e-9);
  }
  await Promise.all(workers.map((w) => w.terminate()));
  samples.sort((x, y) => x - y);
  const gbs = (s: number): number => (2 * bytes) / s / 1e9;
  const best = gbs(samples[0]!), med = gbs(samples[samples.length >> 1]!);
  console.log(`copy ${MB} MB, ${threads} worker threads (TypedArray.set of a slice each): best ${best.toFixed(1)} GB/s (median ${med.toFixed(1)})`);
  rows.push({
    component: "ceiling",
    case: `copy ${MB} MB, ${threads} worker threads (TypedArray.set of a slice each), fastest call`,
    unit: "GB/s",
    ours: best,
    peer: null,
    peerName: null,
    higherIsBetter: true,
    gbs: best,
    note: `median ${med.toFixed(1)} GB/s`,
  });
}
reportRows(rows);
