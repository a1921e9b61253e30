/**
 * Run by dataparallel.bench.ts: one training job (a single process, or every rank under mpirun)
 * that takes one optimizer step each time the bench writes the next command file, and answers (rank
 * 0, on stdout) with one JSON line of timings. The
 * step is the trainer's (tools/train.ts + train()): rank placement, accumulateGradients, the mean
 * loss and the stop flag agreed over ranks, replicated AdamW after the bucketed gradient all-reduce.
 *
 *   bun dataparallel_worker.ts --cmd DIR --data tokens.bin --batch B [--seq 256] [--config tinyllama-15m]
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { defaultTrainConfig, getPreset, parseTrainConfig, tokensPerStep, type PresetName } from "@tinyllama/config";
import { Model } from "@tinyllama/model";
import { AdamW } from "@tinyllama/optimizer";
import { DataLoader, splitWindows } from "@tinyllama/data";
import { createCommunicator, placeRank } from "@tinyllama/distributed";
import { accumulateGradients, replicatedOptimizer, trainBackend, trainPrecision } from "../src/loop.ts";

const { values: a } = parseArgs({ options: { cmd: { type: "string" }, data: { type: "string" }, batch: { type: "string" }, seq: { type: "string" }, config: { type: "string" } } });
const comm = createCommunicator();
const placement = comm.worldSize > 1 ? placeRank() : { threads: undefined };
const cfg = getPreset((a.config ?? "tinyllama-15m") as PresetName);
const tc = parseTrainConfig({ ...defaultTrainConfig(cfg, { steps: 1000 }), batch: Number(a.batch ?? 8), seq: Number(a.seq ?? 256), warmup: 0 }, cfg);
const backend = trainBackend(tc, placement.threads);
const model = Model.create(cfg, { backend, B: tc.batch, T: tc.seq, seed: tc.seed, training: true, precision: trainPrecision(tc, backend) });
const adam = new AdamW(model.params, model.grads!, { lr: tc.lr, beta1: tc.beta1, beta2: tc.beta2, eps: tc.eps, weightDecay: tc.weightDecay });
const optimizer = replicatedOptimizer(adam, comm, model);
const loader = new DataLoader({ path: a.data!, split: "train", B: tc.batch, T: tc.seq, mode: tc.sample, seed: tc.seed, rank: comm.rank, worldSize: comm.worldSize });
const windows = new Int32Array(tc.batch * (tc.seq + 1));
const next = () => splitWindows(loader.next(windows), tc.batch, tc.seq);
if (comm.worldSize > 1) comm.broadcast(model.params.flat(), 0);

const say = (o: object) => comm.rank === 0 && process.stdout.write(JSON.stringify(o) + "\n");
say({ ready: true, ranks: comm.worldSize, threads: backend.threads, tokensPerStep: tokensPerStep(tc) * comm.worldSize, gradAccum: tc.gradAccum });

// Commands arrive as files cmd/0, cmd/1, ... ("step" or "quit") that every rank polls, sleeping in
// between, so a job waiting for its turn takes no CPU from the one stepping (an MPI collective would
// be a wait policy of its own, and the thing under test).
for (let n = 0; ; n++) {
  const file = join(a.cmd!, String(n));
  while (!existsSync(file)) Bun.sleepSync(1);
  if (readFileSync(file, "utf8").trim() !== "step") break;
  const t0 = performance.now();
  let loss = accumulateGradients(model, next, tc.gradAccum);
  const t1 = performance.now();
  if (comm.worldSize > 1) loss = comm.allReduceScalar(loss, "mean");
  const t2 = performance.now();
  optimizer.step(tc.lr, tc.gradClip, tc.gradAccum);
  if (comm.worldSize > 1) comm.allReduceScalar(0, "max"); // the loop's stop-flag agreement
  const t3 = performance.now();
  say({ s: (t3 - t0) / 1000, compute: (t1 - t0) / 1000, wait: (t2 - t1) / 1000, optim: (t3 - t2) / 1000, loss });
}
optimizer.free();
model.free();
comm.close();
