/**
 * The training loop. One optimizer step = gradAccum micro-batches of B×T tokens: forward,
 * backward (gradients accumulate in the arena), then the global gradient norm, clipping folded into
 * AdamW's grad scale, and one fused AdamW step over the parameter arena. Everything the next step
 * depends on (weights, AdamW moments, step, data position and RNG) is in each checkpoint, so a
 * resumed run is bit-identical to an uninterrupted one.
 */
import { existsSync, mkdirSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parameterCount, flopsPerToken, tokensPerStep, type ModelConfig, type TrainConfig } from "@tinyllama/config";
import { getBackend, type Backend } from "@tinyllama/kernels";
import { Model } from "@tinyllama/model";
import { AdamW, clipFactor, constantSchedule, cosineSchedule, gradNorm } from "@tinyllama/optimizer";
import { DataLoader, corpusFiles, splitWindows, type LoaderState } from "@tinyllama/data";
import { MetricsLog, type TrainRow } from "./metrics.ts";
import { Progress, fmtDuration } from "./progress.ts";
import { renderReport } from "./report.ts";
import { latestSnapshot, listSnapshots, writeSnapshot } from "./snapshot.ts";

export interface TrainOptions {
  model: ModelConfig;
  modelName: string;
  train: TrainConfig;
  /**
   * Prepared token data: a shard directory (its train_NNN.bin shards, and val_NNN.bin for eval when
   * present), one shard, or a raw uint16 token file (no eval).
   */
  data: string;
  out: string;
  resume?: boolean;
  /** Initial weights by Hugging Face name (from --init); default: TinyLlama's initialisation. */
  init?: ReadonlyMap<string, Float32Array>;
  backend?: Backend;
  /** Called at the end with the trained model, e.g. to print samples or export it. */
  onFinish?: (model: Model) => void | Promise<void>;
  /** Stop (as if interrupted) after this many optimizer steps of this invocation; for tests. */
  stopAfter?: number;
  log?: (msg: string) => void;
}

export interface TrainResult {
  step: number;
  finalLoss: number;
  finalValLoss: number | null;
  tokens: number;
  seconds: number;
  interrupted: boolean;
  stoppedOnNaN: boolean;
}

interface RunState {
  step: number;
  tokens: number;
  elapsed: number;
  loader: LoaderState;
  model: ModelConfig;
  train: TrainConfig;
}

const enc = new TextEncoder();

export async function train(opts: TrainOptions): Promise<TrainResult> {
  const { model: cfg, train: tc, out } = opts;
  const log = opts.log ?? ((m: string) => process.stderr.write(m + "\n"));
  const backend = opts.backend ?? getBackend();
  const ckptDir = join(out, "checkpoints");
  mkdirSync(out, { recursive: true });
  if (!opts.resume && listSnapshots(ckptDir).length > 0)
    throw new Error(`${out} already holds checkpoints: pass --resume to continue that run, or choose another --out`);

  const model = Model.create(cfg, { backend, B: tc.batch, T: tc.seq, seed: tc.seed, training: true });
  const optimizer = new AdamW(model.params, model.grads!, { lr: tc.lr, beta1: tc.beta1, beta2: tc.beta2, eps: tc.eps, weightDecay: tc.weightDecay });
  const loader = new DataLoader({ path: opts.data, split: "train", B: tc.batch, T: tc.seq, mode: tc.sample, seed: tc.seed });
  const hasVal = hasSplit(opts.data, "val");
  const schedule = tc.schedule === "cosine" ? cosineSchedule({ lr: tc.lr, minLr: tc.minLr, warmup: tc.warmup, total: tc.steps }) : warmupThen(constantSchedule(tc.lr), tc.lr, tc.warmup);
  const inputs = new Int32Array(tc.batch * tc.seq), targets = new Int32Array(tc.batch * tc.seq);
  const windows = new Int32Array(tc.batch * (tc.seq + 1));
  const nextBatch = (l: DataLoader) => splitWindows(l.next(windows), tc.batch, tc.seq, inputs, targets);
  const metrics = new MetricsLog(join(out, "metrics.jsonl"));

  let step = 0, tokens = 0, elapsed = 0;
  const resumed = opts.resume ? latestSnapshot(ckptDir, log) : null;
  if (resumed) {
    const state = JSON.parse(new TextDecoder().decode(resumed.files.get("state.json"))) as RunState;
    if (JSON.stringify(state.model) !== JSON.stringify(cfg))
      throw new Error(`cannot resume: the checkpoint's model config differs from this run's (${resumed.dir})`);
    model.params.flat("u8").write(resumed.files.get("params.bin")!);
    optimizer.loadState({ step: state.step, m: asF32(resumed.files.get("adam_m.bin")!), v: asF32(resumed.files.get("adam_v.bin")!) });
    loader.loadState(state.loader);
    ({ step, tokens, elapsed } = state);
    metrics.truncateTo(step);
    log(`resumed from ${resumed.dir} at step ${step}`);
  } else {
    if (opts.resume) log(`no valid checkpoint in ${ckptDir}; starting from scratch`);
    metrics.reset();
    if (opts.init) loadWeights(model, opts.init);
  }
  writeFileSync(join(out, "config.json"), JSON.stringify({ model: cfg, modelName: opts.modelName, train: tc, parameters: parameterCount(cfg) }, null, 2) + "\n");

  const save = () => {
    const state: RunState = { step, tokens, elapsed, loader: loader.state(), model: cfg, train: tc };
    const st = optimizer.state();
    const dir = writeSnapshot(
      ckptDir,
      step,
      {
        "params.bin": model.params.flat("u8").read() as Uint8Array,
        "adam_m.bin": new Uint8Array(st.m.buffer, st.m.byteOffset, st.m.byteLength),
        "adam_v.bin": new Uint8Array(st.v.buffer, st.v.byteOffset, st.v.byteLength),
        "state.json": enc.encode(JSON.stringify(state)),
      },
      tc.keepLast,
    );
    return dir;
  };

  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log("\ninterrupted: saving a checkpoint after this step (Ctrl-C again to quit without saving)");
  };
  process.on("SIGINT", onSigint);

  const progress = new Progress(tc.steps);
  const elapsedAtStart = elapsed;
  const stepTokens = tokensPerStep(tc);
  const fpt = flopsPerToken(cfg, tc.seq);
  let lastLoss = NaN, lastVal: number | null = null, stoppedOnNaN = false, stepsThisRun = 0;
  const evaluate = (): number | null => {
    if (!hasVal) return null;
    // The same leading windows of the val split every time, so evals are comparable across steps.
    const val = new DataLoader({ path: opts.data, split: "val", B: tc.batch, T: tc.seq, mode: "sequential" });
    let sum = 0;
    for (let i = 0; i < tc.evalBatches; i++) {
      const b = nextBatch(val);
      sum += model.forward(b.inputs, b.targets);
    }
    return sum / tc.evalBatches;
  };

  try {
    while (step < tc.steps) {
      const t0 = performance.now();
      model.zeroGrad();
      let loss = 0;
      for (let micro = 0; micro < tc.gradAccum; micro++) {
        const b = nextBatch(loader);
        loss += model.forward(b.inputs, b.targets) / tc.gradAccum;
        model.backward();
      }
      if (!Number.isFinite(loss)) {
        stoppedOnNaN = true;
        const last = listSnapshots(ckptDir).at(-1);
        log(`\nloss is ${loss} at step ${step + 1}: stopping. ${last !== undefined ? `The last good checkpoint (step ${last}) is intact in ${ckptDir}; try a lower --lr and --resume.` : "No checkpoint was written yet; try a lower --lr."}`);
        break;
      }
      // Gradients are summed over micro-batches; the mean gradient is grads / gradAccum.
      const norm = gradNorm(model.grads!) / tc.gradAccum;
      const lr = schedule(step);
      optimizer.step(lr, (tc.gradClip > 0 ? clipFactor(norm, tc.gradClip) : 1) / tc.gradAccum);
      step++;
      stepsThisRun++;
      tokens += stepTokens;
      const dt = (performance.now() - t0) / 1000;
      elapsed += dt;
      lastLoss = loss;
      const row: TrainRow = { type: "train", step, loss, lr, grad_norm: norm, tokens_per_s: stepTokens / dt, tokens, elapsed_s: elapsed };
      metrics.append(row);
      progress.update(step, { loss: loss.toFixed(4), lr: lr.toExponential(2), "grad norm": norm.toFixed(3), "tok/s": Math.round(stepTokens / dt).toLocaleString("en-US"), "GFLOP/s": ((fpt * stepTokens) / dt / 1e9).toFixed(1) }, (tc.steps - step) * ((elapsed - elapsedAtStart) / stepsThisRun));
      const isLast = step === tc.steps;
      if ((tc.evalEvery > 0 && step % tc.evalEvery === 0) || isLast) {
        lastVal = evaluate();
        if (lastVal !== null) {
          metrics.append({ type: "eval", step, val_loss: lastVal, val_tokens: tc.evalBatches * tc.batch * tc.seq });
          progress.log(`step ${step}: val loss ${lastVal.toFixed(4)}`);
        }
        writeReport(out, metrics, opts.modelName, cfg, tc);
      }
      const stopNow = interrupted || (opts.stopAfter !== undefined && stepsThisRun >= opts.stopAfter);
      if ((tc.saveEvery > 0 && step % tc.saveEvery === 0) || isLast || stopNow) save();
      if (stopNow) break;
      await Bun.sleep(0); // let SIGINT handlers run between steps
    }
  } finally {
    process.off("SIGINT", onSigint);
    progress.done();
  }
  writeReport(out, metrics, opts.modelName, cfg, tc);
  if (!stoppedOnNaN && !interrupted && step === tc.steps && opts.onFinish) await opts.onFinish(model);
  log(`${interrupted ? "stopped" : "finished"} at step ${step}/${tc.steps}: loss ${lastLoss.toFixed(4)}${lastVal !== null ? `, val loss ${lastVal.toFixed(4)}` : ""}, ${tokens.toLocaleString("en-US")} tokens in ${fmtDuration(elapsed)}`);
  model.free();
  return { step, finalLoss: lastLoss, finalValLoss: lastVal, tokens, seconds: elapsed, interrupted: interrupted || (opts.stopAfter !== undefined && step < tc.steps), stoppedOnNaN };
}

function hasSplit(path: string, split: string): boolean {
  try {
    return corpusFiles(path, split).length > 0 && existsSync(path) && statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Linear warmup to `lr` over `warmup` steps (0-based, as cosineSchedule), then `after`. */
function warmupThen(after: (step: number) => number, lr: number, warmup: number): (step: number) => number {
  return (step) => (step < warmup ? (lr * step) / warmup : after(step));
}

/** Copies Hugging Face-named weights into the model; every parameter must be given, with its shape. */
export function loadWeights(model: Model, weights: ReadonlyMap<string, Float32Array>): void {
  const missing = model.parameters.filter((p) => !weights.has(p.name)).map((p) => p.name);
  const known = new Set(model.parameters.map((p) => p.name));
  const extra = [...weights.keys()].filter((n) => !known.has(n));
  if (missing.length || extra.length)
    throw new Error(`initial weights do not match the model: ${missing.length ? `missing ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ` and ${missing.length - 5} more` : ""}` : ""}${missing.length && extra.length ? "; " : ""}${extra.length ? `unexpected ${extra.slice(0, 5).join(", ")}` : ""}`);
  for (const p of model.parameters) p.tensor.write(weights.get(p.name)!);
}

function asF32(b: Uint8Array): Float32Array {
  const copy = b.byteOffset % 4 === 0 ? b : b.slice();
  return new Float32Array(copy.buffer, copy.byteOffset, copy.byteLength / 4);
}

function writeReport(out: string, metrics: MetricsLog, name: string, cfg: ModelConfig, tc: TrainConfig): void {
  const rows = metrics.rows();
  const lastTrain = [...rows].reverse().find((r) => r.type === "train");
  const lastEval = [...rows].reverse().find((r) => r.type === "eval");
  const html = renderReport(rows, {
    title: `TinyLlama training run: ${name}`,
    summary: {
      model: `${name} (${parameterCount(cfg).toLocaleString("en-US")} parameters)`,
      batch: `${tc.batch} x ${tc.seq} x ${tc.gradAccum} accumulation`,
      steps: `${lastTrain?.step ?? 0} / ${tc.steps}`,
      "train loss": lastTrain?.type === "train" ? lastTrain.loss.toFixed(4) : "-",
      "val loss": lastEval?.type === "eval" ? lastEval.val_loss.toFixed(4) : "-",
      "tokens seen": lastTrain?.type === "train" ? lastTrain.tokens.toLocaleString("en-US") : "0",
    },
  });
  const tmp = join(out, ".report.html.tmp");
  writeFileSync(tmp, html);
  renameSync(tmp, join(out, "report.html"));
}
