/**
 * Run under `mpirun -np 2` (or more; N must divide by the world size): data-parallel gradients equal
 * single-process gradients. The model is two linear layers (the matmul kernel) with a mean-squared
 * error loss, L = 1/(2N) sum_n |y_n - t_n|^2, y = (x W1^T + b1) W2^T + b2. Rank 0 broadcasts the
 * parameters; each rank computes gradients of the mean loss over its N/W rows; the gradient arena is
 * all-reduced (mean). Rank 0 then also runs the whole batch alone and compares every tensor of the
 * arena (relative error < 1e-5), the loss, and the ZeRO-1 path (reduce-scatter + all-gather).
 */
import { Arena, Tensor, matmulBackward, matmulForward, openBackend, type Backend } from "@tinyllama/kernels";
import { mulberry32, randn, relErr } from "@tinyllama/testing";
import { MpiCommunicator, shardOf, sliceFlat } from "@tinyllama/distributed";
import { check } from "./check.ts";

const N = 64, C = 48, H = 40, O = 24;
const comm = MpiCommunicator.open();
const { rank, worldSize: W } = comm;
check(N % W === 0, `batch ${N} divides by world size ${W}`);
const be = openBackend({ device: "cpu", threads: 1 });
const specs = [
  { name: "w1", shape: [H, C] },
  { name: "b1", shape: [H] },
  { name: "w2", shape: [O, H] },
  { name: "b2", shape: [O] },
];

// Parameters: rank 0's random init wins, whatever the others start with.
const params = new Arena(be, specs);
const prng = mulberry32(rank === 0 ? 7 : 1000 + rank);
for (const s of specs) params.get(s.name).write(randn(params.get(s.name).numel, prng, 0.2));
comm.broadcast(params.flat(), 0);

// The global batch, the same on every rank; each takes rows [rank*N/W, (rank+1)*N/W).
const drng = mulberry32(42);
const X = randn(N * C, drng), T = randn(N * O, drng);

/** Gradients of the mean loss over `rows` rows of (x, t), accumulated into `grads`; returns the loss. */
function gradients(grads: Arena, x: Float32Array, t: Float32Array, rows: number, b: Backend): number {
  const xt = b.fromArray(x, [rows, C]);
  const h = b.tensor([rows, H]), y = b.tensor([rows, O]), dh = b.tensor([rows, H]);
  matmulForward(h, xt, params.get("w1"), params.get("b1"));
  matmulForward(y, h, params.get("w2"), params.get("b2"));
  const yv = y.read() as Float32Array;
  const dy = new Float32Array(rows * O);
  let loss = 0;
  for (let i = 0; i < yv.length; i++) {
    const d = yv[i]! - t[i]!;
    loss += (d * d) / (2 * rows);
    dy[i] = d / rows;
  }
  const dyt = b.fromArray(dy, [rows, O]);
  matmulBackward({ dinp: dh, dweight: grads.get("w2"), dbias: grads.get("b2") }, dyt, h, params.get("w2"));
  matmulBackward({ dweight: grads.get("w1"), dbias: grads.get("b1") }, dh, xt, params.get("w1"));
  for (const tt of [xt, h, y, dh, dyt] as Tensor[]) tt.buffer.free();
  return loss;
}

const rows = N / W, r0 = rank * rows;
const grads = new Arena(be, specs);
grads.zero();
const localLoss = gradients(grads, X.subarray(r0 * C, (r0 + rows) * C), T.subarray(r0 * O, (r0 + rows) * O), rows, be);
const localGrads = grads.flat().read() as Float32Array;
comm.allReduce(grads.flat(), "mean");
const loss = comm.allReduceScalar(localLoss, "mean");

// ZeRO-1: the same gradients through reduce-scatter (in place into this rank's shard) + all-gather.
const zero = new Arena(be, specs);
zero.flat().write(localGrads);
const mine = shardOf(zero.flat().numel, W, rank);
const own = sliceFlat(zero.flat(), mine.start, mine.end);
comm.reduceScatter(zero.flat(), own, "mean");
comm.allGather(own, zero.flat());

if (rank === 0) {
  const full = new Arena(be, specs);
  full.zero();
  const fullLoss = gradients(full, X, T, N, be);
  for (const s of specs) {
    const e = relErr(grads.get(s.name).read(), full.get(s.name).read());
    console.log(`grad ${s.name}: relative error ${e.toExponential(2)} (data-parallel mean over ${W} ranks vs one process)`);
    check(e < 1e-5, `grad ${s.name}: relative error ${e} >= 1e-5`);
    const z = relErr(zero.get(s.name).read(), full.get(s.name).read());
    check(z < 1e-5, `ZeRO-1 grad ${s.name}: relative error ${z} >= 1e-5`);
    // the check can fail: a rank's own half-batch gradient is far from the full-batch one
    check(relErr(localGrads.subarray(full.offsets.get(s.name)! / 4, full.offsets.get(s.name)! / 4 + full.get(s.name).numel), full.get(s.name).read()) > 1e-3, `local ${s.name} differs from the full batch`);
  }
  const le = Math.abs(loss - fullLoss) / Math.abs(fullLoss);
  console.log(`loss: ${loss} vs ${fullLoss} (relative error ${le.toExponential(2)})`);
  check(le < 1e-6, `loss relative error ${le}`);
  console.log("equivalence ok");
}
comm.close();
