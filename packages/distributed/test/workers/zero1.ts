/**
 * Run under `mpirun -np N`: ZeRO-1 AdamW (each rank keeps m and v for its shard only) against
 * replicated AdamW (@tinyllama/optimizer's AdamW on all-reduced gradients), 3 steps with gradient
 * clipping active and weight decay on the 2-D tensors only. This is the recipe the README gives the
 * optimizer: shardRuns(planRuns(params), shard), shard-sized moments, a global norm from the shards;
 * and the same through the packaged ZeroAdamW class, whose state must also round-trip.
 */
import { Arena, Tensor, adamwStep, openBackend, sumsq } from "@tinyllama/kernels";
import { mulberry32, randn, relErr } from "@tinyllama/testing";
import { AdamW, clipFactor, defaultDecay, gradNorm, planRuns } from "@tinyllama/optimizer";
import { MpiCommunicator, ZeroAdamW, shardOf, shardRuns, sliceFlat } from "@tinyllama/distributed";
import { check } from "./check.ts";

const comm = MpiCommunicator.open();
const { rank, worldSize: W } = comm;
const be = openBackend({ device: "cpu", threads: 1 });
const specs = [
  { name: "wte", shape: [37, 24] },
  { name: "norm", shape: [24] },
  { name: "w1", shape: [40, 24] },
  { name: "b1", shape: [40] },
  { name: "head", shape: [37, 40] },
];
const hp = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
const maxNorm = 0.5;

// Both copies start from rank 0's weights.
const init = new Arena(be, specs);
for (const s of specs) init.get(s.name).write(randn(init.get(s.name).numel, mulberry32(rank === 0 ? 11 : 99), 0.3));
comm.broadcast(init.flat(), 0);
const initial = init.flat().read() as Float32Array;

// Replicated: every rank all-reduces and runs the full AdamW.
const pRep = new Arena(be, specs), gRep = new Arena(be, specs);
pRep.flat().write(initial);
const adam = new AdamW(pRep, gRep, hp);

// ZeRO-1: moments for this rank's shard only.
const pZ = new Arena(be, specs), gZ = new Arena(be, specs);
pZ.flat().write(initial);
const n = pZ.flat().numel;
const mine = shardOf(n, W, rank);
const m = be.tensor([mine.count]), v = be.tensor([mine.count]);
const runs = shardRuns(planRuns(pZ, defaultDecay), mine);
const at = (t: Tensor, a: number, b: number) => sliceFlat(t, a, b);
check(m.numel < n || W === 1, `ZeRO-1 moments hold ${m.numel} of ${n} floats`);

// The packaged version of the same recipe.
const pC = new Arena(be, specs), gC = new Arena(be, specs);
pC.flat().write(initial);
const zopt = new ZeroAdamW(comm, pC, gC, hp);
check(zopt.stateBytes === 8 * mine.count, `ZeroAdamW holds ${zopt.stateBytes} bytes of moments`);

for (let step = 1; step <= 3; step++) {
  // this rank's gradients: random, different per rank and step (padding stays zero, as after a backward)
  const local = new Arena(be, specs);
  local.zero();
  for (const s of specs) local.get(s.name).write(randn(local.get(s.name).numel, mulberry32(step * 100 + rank), 1));
  const g = local.flat().read() as Float32Array;
  local.free();

  gRep.flat().write(g);
  comm.allReduce(gRep.flat(), "mean");
  adam.step(hp.lr, clipFactor(gradNorm(gRep), maxNorm));

  gZ.flat().write(g);
  const gShard = at(gZ.flat(), mine.start, mine.end);
  comm.reduceScatter(gZ.flat(), gShard, "mean");
  const norm = Math.sqrt(comm.allReduceScalar(mine.count > 0 ? sumsq(gShard) : 0, "sum"));
  const scale = clipFactor(norm, maxNorm);
  check(scale < 1, `clipping is active (factor ${scale})`);
  for (const r of runs)
    adamwStep(at(pZ.flat(), r.start, r.end), at(gZ.flat(), r.start, r.end), at(m, r.localStart, r.localEnd), at(v, r.localStart, r.localEnd), {
      ...hp,
      weightDecay: (r as { decay: boolean }).decay ? hp.weightDecay : 0,
      gradScale: scale,
      step,
    });
  comm.allGather(at(pZ.flat(), mine.start, mine.end), pZ.flat());

  gC.flat().write(g);
  const cnorm = zopt.step(hp.lr, { maxGradNorm: maxNorm });
  check(Math.abs(cnorm - norm) <= 1e-12 * norm, `ZeroAdamW norm ${cnorm} vs ${norm}`);
  const ec = relErr(pC.flat().read(), pRep.flat().read());
  check(ec < 1e-6, `step ${step}: ZeroAdamW relative error ${ec}`);

  const e = relErr(pZ.flat().read(), pRep.flat().read());
  console.log(`rank ${rank}: step ${step}: ZeRO-1 vs replicated AdamW parameters, relative error ${e.toExponential(2)}`);
  check(e < 1e-6, `step ${step}: relative error ${e}`);
  check(relErr(pZ.flat().read(), initial) > 1e-3, "the parameters moved");
}
// every rank ends with the same parameters, bit for bit
const mineP = pZ.flat().read() as Float32Array, root = Float32Array.from(mineP);
comm.broadcast(root, 0);
check(mineP.every((x, i) => Object.is(x, root[i])), "all ranks hold identical parameters");
// checkpoint round trip: a fresh optimizer resumes with the same moments and step count
const again = new ZeroAdamW(comm, pC, gC, hp);
again.loadState(zopt.state());
check(again.stepCount === 3 && relErr(again.m.read(), zopt.m.read()) === 0 && relErr(again.v.read(), zopt.v.read()) === 0, "ZeroAdamW state round trip");
let threw = false;
try {
  again.loadState({ ...zopt.state(), shard: { start: 0, end: n } });
} catch (e) {
  threw = /resume with the same world size/.test((e as Error).message);
}
check(threw || W === 1, "loadState refuses another rank's shard");
console.log(`rank ${rank}: zero1 ok (moments ${m.numel} of ${n} floats)`);
comm.close();
