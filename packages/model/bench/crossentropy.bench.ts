/**
 * The fused softmax cross-entropy (loss + dlogits written in place over the logits) at the LM head's
 * shape, B*T=2048 rows of V=32000, in GB/s (read the logits, write dlogits), beside PyTorch eager
 * F.cross_entropy forward + backward at the same thread count, interleaved.
 *
 *   bun packages/model/bench/crossentropy.bench.ts
 */
import { crossEntropy, getBackend } from "@tinyllama/kernels";
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
  torchScoreRow(peer, threads, t, { component: "crossentropy", case: what, unit: "GB/s", bytes: work });

const N = 2048, V = 32000;
const logits = be.tensor([N, V]), losses = be.tensor([N]), targets = be.tensor([N], "i32");
const src = new Float32Array(N * V);
for (let i = 0; i < src.length; i++) src[i] = Math.sin(i * 0.37) * 4;
logits.write(src);
targets.data().forEach((_, i, a) => (a[i] = (i * 7919) % V));
// in place: after the first call the buffer holds dlogits, which are as good an input as any for timing
const ours = () => crossEntropy(losses, logits, logits, targets, { gradScale: 1 / N });
const t = await interleavedWithPeer(ours, peer, "crossentropy", { N, V }, { reps: 3 });
const bytes = 2 * 4 * N * V;
const gbs = (sec: number) => `${(bytes / sec / 1e9).toFixed(1)} GB/s (${(sec * 1e3).toFixed(1)} ms, ${((N * V) / sec / 1e9).toFixed(2)} Gexp/s)`;
console.log(`\ncrossentropy fwd+bwd N=${N} V=${V}\n  ours:    ${gbs(t.ours)}`);
if (t.peer !== null) console.log(`  pytorch: ${gbs(t.peer)}`);
console.log(ratioLine(t));
scoreRows.push(scoreRow(`cross-entropy loss + dlogits in place, N=${N} V=${V}`, t, bytes));
reportRows(scoreRows);
peer?.close();
for (const b of [logits, losses, targets]) b.buffer.free();
