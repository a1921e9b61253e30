/**
 * The SwiGLU block (gate/up Linear, fused silu*up, down Linear) forward + backward in GFLOP/s
 * (18*N*C*H FLOPs: 3 matmuls, 2 FLOPs/MAC forward, 4 backward), at the 15M shape and one 1.1B
 * layer at a short sequence, beside PyTorch eager (tools/reference/llama.py's MLP, autograd) at the
 * same thread count, interleaved.
 *
 *   bun packages/mlp/bench/mlp.bench.ts
 */
import { getBackend } from "@tinyllama/kernels";
import { MlpBlock } from "@tinyllama/mlp";
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
  torchScoreRow(peer, threads, t, { component: "mlp", case: what, unit: "GFLOP/s", flops: work });
const filters = process.argv.slice(2).map((s) => s.toLowerCase());

const shapes = [
  { name: "15M", B: 8, T: 256, dim: 288, hiddenDim: 768 },
  { name: "1.1B", B: 1, T: 256, dim: 2048, hiddenDim: 5632 },
].filter((s) => filters.length === 0 || filters.some((f) => s.name.toLowerCase().includes(f)));
for (const { name, B, T, dim, hiddenDim } of shapes) {
  const mlp = MlpBlock.create(be, { dim, hiddenDim, nLayers: 1 }, B, T, 1);
  const x = be.tensor([B, T, dim]), out = be.tensor([B, T, dim]), dout = be.tensor([B, T, dim]), dx = be.tensor([B, T, dim]);
  x.data().forEach((_, i, a) => (a[i] = Math.sin(i)));
  dout.data().forEach((_, i, a) => (a[i] = Math.cos(i)));
  const ours = () => {
    mlp.forward(out, x);
    mlp.backward(dx, dout);
  };
  const t = await interleavedWithPeer(ours, peer, "mlp", { B, T, dim, hiddenDim }, { reps: name === "15M" ? 3 : 1 });
  const flops = 18 * B * T * dim * hiddenDim;
  const gf = (sec: number) => `${(flops / sec / 1e9).toFixed(1)} GFLOP/s (${(sec * 1e3).toFixed(1)} ms)`;
  console.log(`\nSwiGLU block fwd+bwd ${name} (B=${B} T=${T} C=${dim} H=${hiddenDim})\n  ours:    ${gf(t.ours)}`);
  if (t.peer !== null) console.log(`  pytorch: ${gf(t.peer)}`);
  console.log(ratioLine(t));
  scoreRows.push(scoreRow(`SwiGLU block fwd+bwd, ${name} (B=${B} T=${T} C=${dim} H=${hiddenDim})`, t, flops));
  mlp.free();
  for (const b of [x, out, dout, dx]) b.buffer.free();
}
reportRows(scoreRows);
peer?.close();
