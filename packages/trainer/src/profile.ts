/**
 * `bun run train --profile`: one warm-up step, then a few training steps with every kernel call
 * timed, printed as a per-op table (time per step, share, GFLOP/s) so the next optimisation is
 * chosen from data. Writes nothing.
 */
import { flopsPerToken, tokensPerStep, type ModelConfig, type TrainConfig } from "@tinyllama/config";
import type { Backend } from "@tinyllama/kernels";
import { Model } from "@tinyllama/model";
import { AdamW } from "@tinyllama/optimizer";
import { DataLoader, splitWindows } from "@tinyllama/data";
import { LocalCommunicator } from "@tinyllama/distributed";
import { accumulateGradients, replicatedOptimizer, trainBackend, trainPrecision } from "./loop.ts";

export function profileTraining(opts: { model: ModelConfig; train: TrainConfig; data: string; steps?: number; backend?: Backend }): string {
  const { model: cfg, train: tc } = opts;
  const steps = opts.steps ?? 3;
  const backend = opts.backend ?? trainBackend(tc);
  const precision = trainPrecision(tc, backend);
  const model = Model.create(cfg, { backend, B: tc.batch, T: tc.seq, seed: tc.seed, precision });
  const adam = new AdamW(model.params, model.grads!, { lr: tc.lr, beta1: tc.beta1, beta2: tc.beta2, eps: tc.eps, weightDecay: tc.weightDecay });
  const optimizer = replicatedOptimizer(adam, new LocalCommunicator(), model);
  const loader = new DataLoader({ path: opts.data, split: "train", B: tc.batch, T: tc.seq, mode: tc.sample, seed: tc.seed });
  const windows = new Int32Array(tc.batch * (tc.seq + 1));
  const next = () => splitWindows(loader.next(windows), tc.batch, tc.seq);
  const step = () => {
    accumulateGradients(model, next, tc.gradAccum);
    optimizer.step(tc.lr, tc.gradClip, tc.gradAccum);
  };
  try {
    step(); // warm-up: page faults, packing buffers, caches
    const profiler = backend.startProfile();
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) step();
    const wall = (performance.now() - t0) / 1000;
    backend.stopProfile();
    const tokens = tokensPerStep(tc);
    const gflops = (flopsPerToken(cfg, tc.seq) * tokens * steps) / wall / 1e9;
    return [
      `profile: ${steps} steps of ${tc.batch} x ${tc.seq} x ${tc.gradAccum} tokens on ${backend.kind} (${precision}, ${backend.threads} threads): ${((wall / steps) * 1000).toFixed(1)} ms/step, ${((tokens * steps) / wall).toFixed(0)} tok/s, ${gflops.toFixed(1)} GFLOP/s of model FLOPs`,
      "",
      profiler.table(steps, wall),
    ].join("\n");
  } finally {
    backend.stopProfile();
    optimizer.free();
    model.free();
  }
}
