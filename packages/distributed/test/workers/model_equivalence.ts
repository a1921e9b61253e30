/**
 * Run under `mpirun -np 2`: the TinyLlama model (micro preset: 2 layers, dim 64, GQA 4/2 heads,
 * vocab 512) trained data-parallel equals one process. Rank 0 broadcasts its parameters (rank 1
 * starts from another seed); each rank runs forward + backward on its B/2 sequences of a B=4, T=32
 * batch; the gradient arena is all-reduced (mean) and the loss averaged. Rank 0 then runs the whole
 * batch alone and compares every parameter's gradient (relative error < 1e-5) and the loss.
 */
import { getPreset } from "@tinyllama/config";
import { openBackend } from "@tinyllama/kernels";
import { Model } from "@tinyllama/model";
import { mulberry32, relErr } from "@tinyllama/testing";
import { MpiCommunicator } from "@tinyllama/distributed";
import { check } from "./check.ts";

const comm = MpiCommunicator.open();
const { rank, worldSize: W } = comm;
const cfg = getPreset("micro");
const B = 4, T = 32;
check(B % W === 0, `B=${B} divides by ${W} ranks`);
const be = openBackend({ device: "cpu", threads: 1 });

// The global batch (every target counted, so each rank's mean loss has the same denominator).
const rng = mulberry32(5);
const tokens = Int32Array.from({ length: B * T }, () => Math.floor(rng() * cfg.vocabSize));
const targets = Int32Array.from({ length: B * T }, () => Math.floor(rng() * cfg.vocabSize));

const b = B / W;
const model = Model.create(cfg, { backend: be, B: b, T, seed: rank === 0 ? 1 : 2 });
comm.broadcast(model.params.flat(), 0);
model.zeroGrad();
const rows = (a: Int32Array) => a.slice(rank * b * T, (rank + 1) * b * T);
const localLoss = model.forward(rows(tokens), rows(targets));
model.backward();
const local = model.grads!.flat().read() as Float32Array;
comm.allReduce(model.grads!.flat(), "mean");
const loss = comm.allReduceScalar(localLoss, "mean");

if (rank === 0) {
  const full = Model.create(cfg, { backend: be, B, T, init: false });
  full.params.flat().write(model.params.flat().read() as Float32Array);
  full.zeroGrad();
  const fullLoss = full.forward(tokens, targets);
  full.backward();
  let worst = 0;
  for (const { name } of full.parameters) {
    const e = relErr(model.grad(name).read(), full.grad(name).read());
    worst = Math.max(worst, e);
    check(e < 1e-5, `grad ${name}: relative error ${e}`);
  }
  // the comparison can fail: one rank's half-batch gradient is far from the full-batch one
  check(relErr(local, full.grads!.flat().read()) > 1e-2, "a rank's local gradient differs from the full batch's");
  const le = Math.abs(loss - fullLoss) / fullLoss;
  check(le < 1e-6, `loss ${loss} vs ${fullLoss}`);
  console.log(`model micro: ${full.parameters.length} gradients, worst relative error ${worst.toExponential(2)}; loss ${loss} vs ${fullLoss} (${le.toExponential(2)})`);
  console.log("model equivalence ok");
  full.free();
}
model.free();
comm.close();
