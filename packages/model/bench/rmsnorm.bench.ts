/**
 * RMSNorm forward + backward (dinp and dweight) at the 15M and 1.1B shapes, in GB/s of compulsory
 * traffic (fwd: read x, write out; bwd: read dout and x, read+write dinp), beside PyTorch eager
 * (the HF formula, autograd) at the same thread count, interleaved.
 *
 *   bun packages/model/bench/rmsnorm.bench.ts
 */
import { getBackend, rmsnormBackward, rmsnormForward } from "@tinyllama/kernels";
import { benchWaitPolicy, cpuModel, reportRows, type BenchRow } from "../../../tools/bench/harness.ts";
import { interleavedWithPeer, ratioLine, startTorchPeer, torchScoreRow, type PairTiming } from "../../../tools/bench/torch_peer.ts";

const threads = Number(process.env.BENCH_THREADS ?? 2);
const waitPolicy = benchWaitPolicy(); // before getBackend() loads libgomp; the PyTorch child gets the same
const be = getBackend();
be.threads = threads;
console.log(`date: ${new Date().toISOString()}\ncpu: ${cpuModel()}, threads: ${threads}, OpenMP wait policy: ${waitPolicy}\nours: ${be.buildInfo}`);
const peer = await startTorchPeer(threads);
const scoreRows: BenchRow[] = [];
const scoreRow = (what: string, t: PairTiming, work: number): BenchRow =>
  torchScoreRow(peer, threads, t, { component: "rmsnorm", case: what, unit: "GB/s", bytes: work });

const shapes = [
  { name: "15M (B*T=2048, C=288)", N: 2048, C: 288 },
  { name: "1.1B (B*T=4096, C=2048)", N: 4096, C: 2048 },
];
for (const { name, N, C } of shapes) {
  const x = be.tensor([N, C]), w = be.tensor([C]), out = be.tensor([N, C]), rstd = be.tensor([N]);
  const dout = be.tensor([N, C]), dinp = be.tensor([N, C]), dw = be.tensor([C]);
  x.data().forEach((_, i, a) => (a[i] = Math.sin(i)));
  w.data().fill(1);
  dout.data().forEach((_, i, a) => (a[i] = Math.cos(i)));
  const ours = () => {
    rmsnormForward(out, rstd, x, w, 1e-5);
    rmsnormBackward({ dinp, dweight: dw }, dout, x, w, rstd);
  };
  const t = await interleavedWithPeer(ours, peer, "rmsnorm", { N, C }, { reps: 5 });
  const bytes = 4 * (2 * N * C + 4 * N * C);
  const gbs = (sec: number) => `${(bytes / sec / 1e9).toFixed(1)} GB/s (${(sec * 1e3).toFixed(2)} ms)`;
  console.log(`\nrmsnorm fwd+bwd ${name}\n  ours:    ${gbs(t.ours)}`);
  if (t.peer !== null) console.log(`  pytorch: ${gbs(t.peer)}`);
  console.log(ratioLine(t));
  scoreRows.push(scoreRow(`RMSNorm fwd+bwd, ${name}`, t, bytes));
  for (const b of [x, w, out, rstd, dout, dinp, dw]) b.buffer.free();
}
reportRows(scoreRows);
peer?.close();
