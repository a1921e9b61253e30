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
import { defaultPrecision, getBackend, openBackend, type Backend, type Precision } from "@tinyllama/kernels";
import { Model } from "@tinyllama/model";
import { AdamW, clipFactor, constantSchedule, cosineSchedule, gradNorm } from "@tinyllama/optimizer";
import { DataLoader, corpusFiles, splitWindows, type LoaderState } from "@tinyllama/data";
import { LocalCommunicator, ZeroAdamW, type Communicator } from "@tinyllama/distributed";
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
  /**
   * Data-parallel communicator (default: a single process). Each rank reads its own slice of the
   * data, gradients are averaged before clipping, and only rank 0 writes logs and checkpoints.
   */
  comm?: Communicator;
  /** ZeRO-1: each rank keeps the AdamW moments of its shard only (needs comm with worldSize > 1). */
  zero?: boolean;
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
  worldSize: number;
  model: ModelConfig;
  train: TrainConfig;
}

const enc = new TextEncoder();

export async function train(opts: TrainOptions): Promise<TrainResult> {
  const { model: cfg, train: tc, out } = opts;
  const comm = opts.comm ?? new LocalCommunicator();
  const { rank, worldSize } = comm;
  const root = rank === 0;
  const rootLog = opts.log ?? ((m: string) => process.stderr.write(m + "\n"));
  const log = (m: string) => root && rootLog(m);
  const backend = opts.backend ?? trainBackend(tc);
  const precision = trainPrecision(tc, backend);
  const ckptDir = join(out, "checkpoints");
  if (root) mkdirSync(out, { recursive: true });
  if (!opts.resume && listSnapshots(ckptDir).length > 0)
    throw new Error(`${out} already holds checkpoints: pass --resume to continue that run, or choose another --out`);
  if (opts.zero && worldSize < 2) log("note: --zero has no effect in a single process");

  const model = Model.create(cfg, { backend, B: tc.batch, T: tc.seq, seed: tc.seed, training: true, precision });
  log(`${backend.kind} backend${backend.kind === "cpu" ? ` (${backend.threads} thread${backend.threads === 1 ? "" : "s"}${worldSize > 1 ? " per rank" : ""})` : ""}, ${precision === "bf16" ? "bf16 mixed precision (fp32 master weights and optimizer state)" : "fp32"}`);
  const adamOpts = { lr: tc.lr, beta1: tc.beta1, beta2: tc.beta2, eps: tc.eps, weightDecay: tc.weightDecay };
  const optimizer = opts.zero && worldSize > 1 ? zeroOptimizer(new ZeroAdamW(comm, model.params, model.grads!, adamOpts), comm, model) : replicatedOptimizer(new AdamW(model.params, model.grads!, adamOpts), comm, model);
  const loaderOpts = { path: opts.data, split: "train", B: tc.batch, T: tc.seq, mode: tc.sample, seed: tc.seed, rank, worldSize };
  let loader = new DataLoader(loaderOpts);
  const hasVal = hasSplit(opts.data, "val");
  const schedule = tc.schedule === "cosine" ? cosineSchedule({ lr: tc.lr, minLr: tc.minLr, warmup: tc.warmup, total: tc.steps }) : warmupThen(constantSchedule(tc.lr), tc.lr, tc.warmup);
  const inputs = new Int32Array(tc.batch * tc.seq), targets = new Int32Array(tc.batch * tc.seq);
  const windows = new Int32Array(tc.batch * (tc.seq + 1));
  const nextBatch = (l: DataLoader) => splitWindows(l.next(windows), tc.batch, tc.seq, inputs, targets);
  const metrics = new MetricsLog(join(out, "metrics.jsonl"));
  const microBatches = () => loader.state().batches;

  let step = 0, tokens = 0, elapsed = 0;
  const resumed = opts.resume ? latestSnapshot(ckptDir, log) : null;
  if (worldSize > 1 && comm.allReduceScalar(resumed ? resumed.step : -1, "min") !== comm.allReduceScalar(resumed ? resumed.step : -1, "max"))
    throw new Error("ranks found different checkpoints to resume from; is the run directory on a filesystem every rank sees?");
  if (resumed) {
    const state = JSON.parse(new TextDecoder().decode(resumed.files.get("state.json"))) as RunState;
    if (JSON.stringify(state.model) !== JSON.stringify(cfg))
      throw new Error(`cannot resume: the checkpoint's model config differs from this run's (${resumed.dir})`);
    checkResumable({ ...state.train, worldSize: state.worldSize ?? 1 }, { ...tc, worldSize }, resumed.dir, log);
    model.params.flat("u8").write(resumed.files.get("params.bin")!);
    optimizer.loadState({ step: state.step, m: asF32(resumed.files.get("adam_m.bin")!), v: asF32(resumed.files.get("adam_v.bin")!) });
    // Rank 0's loader state is saved. Other ranks, and every rank after a change of world size,
    // rebuild theirs by drawing the same number of batches from their own (seeded) slice.
    if (root && (state.worldSize ?? 1) === worldSize) loader.loadState(state.loader);
    else {
      if (root) log(`resuming on ${worldSize} rank(s) a run saved on ${state.worldSize ?? 1}: each rank continues its own slice after ${state.loader.batches} batches`);
      loader = new DataLoader(loaderOpts);
      for (let i = 0; i < state.loader.batches; i++) loader.next(windows);
    }
    ({ step, tokens, elapsed } = state);
    if (root) metrics.truncateTo(step);
    log(`resumed from ${resumed.dir} at step ${step}`);
  } else {
    if (opts.resume) log(`no valid checkpoint in ${ckptDir}; starting from scratch`);
    if (root) metrics.reset();
    if (opts.init) loadWeights(model, opts.init);
  }
  // Every rank starts from rank 0's weights (they are seeded alike; this makes it a guarantee).
  if (worldSize > 1) comm.broadcast(model.params.flat(), 0);
  if (root) writeFileSync(join(out, "run.json"), JSON.stringify({ model: cfg, modelName: opts.modelName, train: tc, parameters: parameterCount(cfg), worldSize, zero: !!opts.zero && worldSize > 1 }, null, 2) + "\n");

  const save = () => {
    const st = optimizer.state(); // collective under ZeRO-1: every rank takes part
    if (!root) return;
    const state: RunState = { step, tokens, elapsed, loader: loader.state(), worldSize, model: cfg, train: tc };
    writeSnapshot(
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
  };

  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log("\ninterrupted: saving a checkpoint after this step (Ctrl-C again to quit without saving)");
  };
  process.on("SIGINT", onSigint);

  const progress = new Progress(root ? tc.steps : 0);
  const elapsedAtStart = elapsed;
  const stepTokens = tokensPerStep(tc);
  const fpt = flopsPerToken(cfg, tc.seq);
  let lastLoss = NaN, lastVal: number | null = null, stoppedOnNaN = false, stepsThisRun = 0;
  const evaluate = (): number | null => {
    if (!hasVal || !root) return null;
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
      let loss = accumulateGradients(model, () => nextBatch(loader), tc.gradAccum);
      if (worldSize > 1) loss = comm.allReduceScalar(loss, "mean");
      if (!Number.isFinite(loss)) {
        stoppedOnNaN = true;
        const last = listSnapshots(ckptDir).at(-1);
        log(`\nloss is ${loss} at step ${step + 1}: stopping. ${last !== undefined ? `The last good checkpoint (step ${last}) is intact in ${ckptDir}; try a lower --lr and --resume.` : "No checkpoint was written yet; try a lower --lr."}`);
        break;
      }
      const lr = schedule(step);
      const norm = optimizer.step(lr, tc.gradClip, tc.gradAccum);
      step++;
      stepsThisRun++;
      tokens += stepTokens;
      const dt = (performance.now() - t0) / 1000;
      elapsed += dt;
      lastLoss = loss;
      const row: TrainRow = { type: "train", step, loss, lr, grad_norm: norm, tokens_per_s: stepTokens / dt, tokens, elapsed_s: elapsed };
      if (root) metrics.append(row);
      if (root) progress.update(step, { loss: loss.toFixed(4), lr: lr.toExponential(2), "grad norm": norm.toFixed(3), "tok/s": Math.round(stepTokens / dt).toLocaleString("en-US"), "GFLOP/s": ((fpt * stepTokens) / dt / 1e9).toFixed(1) }, (tc.steps - step) * ((elapsed - elapsedAtStart) / stepsThisRun));
      const isLast = step === tc.steps;
      if ((tc.evalEvery > 0 && step % tc.evalEvery === 0) || isLast) {
        lastVal = evaluate();
        if (lastVal !== null) {
          metrics.append({ type: "eval", step, val_loss: lastVal, val_tokens: tc.evalBatches * tc.batch * tc.seq });
          progress.log(`step ${step}: val loss ${lastVal.toFixed(4)}`);
        }
        if (root) writeReport(out, metrics, opts.modelName, cfg, tc);
      }
      let stopNow = interrupted || (opts.stopAfter !== undefined && stepsThisRun >= opts.stopAfter);
      // mpirun may deliver Ctrl-C to ranks at different steps: stop together or not at all.
      if (worldSize > 1) stopNow = comm.allReduceScalar(stopNow ? 1 : 0, "max") > 0;
      if ((tc.saveEvery > 0 && step % tc.saveEvery === 0) || isLast || stopNow) save();
      if (stopNow) break;
      await Bun.sleep(0); // let SIGINT handlers run between steps
    }
  } finally {
    process.off("SIGINT", onSigint);
    progress.done();
  }
  if (root) writeReport(out, metrics, opts.modelName, cfg, tc);
  if (root && !stoppedOnNaN && !interrupted && step === tc.steps && opts.onFinish) await opts.onFinish(model);
  optimizer.free();
  log(`${interrupted ? "stopped" : "finished"} at step ${step}/${tc.steps}: loss ${lastLoss.toFixed(4)}${lastVal !== null ? `, val loss ${lastVal.toFixed(4)}` : ""}, ${tokens.toLocaleString("en-US")} tokens in ${fmtDuration(elapsed)}`);
  model.free();
  return { step, finalLoss: lastLoss, finalValLoss: lastVal, tokens, seconds: elapsed, interrupted: interrupted || (opts.stopAfter !== undefined && step < tc.steps), stoppedOnNaN };
}

/**
 * The backend train.device asks for: 'auto' is the process-wide one (TINYLLAMA_DEVICE, else CUDA
 * when usable). `threads` sets the CPU kernels' thread count (--threads, or a rank's share of the
 * cores under mpirun); undefined keeps TINYLLAMA_THREADS or the OpenMP default.
 */
export function trainBackend(tc: TrainConfig, threads?: number): Backend {
  const backend = tc.device === "auto" ? getBackend() : openBackend({ device: tc.device });
  if (threads !== undefined && backend.kind === "cpu") backend.threads = threads;
  return backend;
}

/** train.precision resolved for a backend: 'auto' is bf16 on CUDA, fp32 on the CPU. */
export function trainPrecision(tc: TrainConfig, backend: Backend): Precision {
  return tc.precision === "auto" ? defaultPrecision(backend.kind) : tc.precision;
}

/** zeroGrad, then forward + backward over `gradAccum` micro-batches; returns the mean loss. */
export function accumulateGradients(model: Model, next: () => { inputs: Int32Array; targets: Int32Array }, gradAccum: number): number {
  model.zeroGrad();
  let loss = 0;
  for (let micro = 0; micro < gradAccum; micro++) {
    const b = next();
    loss += model.forward(b.inputs, b.targets) / gradAccum;
    model.backward();
  }
  return loss;
}

/** The optimizer step as the loop sees it: returns the pre-clip norm of the mean gradient. */
export interface StepOptimizer {
  step(lr: number, gradClip: number, gradAccum: number): number;
  /** Full moments (collective under ZeRO-1). */
  state(): { step: number; m: Float32Array; v: Float32Array };
  loadState(s: { step: number; m: Float32Array; v: Float32Array }): void;
  free(): void;
}

/** Replicated AdamW: gradients averaged over ranks with one bucketed all-reduce, then the fused step. */
export function replicatedOptimizer(adam: AdamW, comm: Communicator, model: Model): StepOptimizer {
  return {
    step(lr, gradClip, gradAccum) {
      if (comm.worldSize > 1) comm.allReduce(model.grads!.flat(), "mean");
      // Gradients are summed over micro-batches; the mean gradient is grads / gradAccum.
      const norm = gradNorm(model.grads!) / gradAccum;
      adam.step(lr, (gradClip > 0 ? clipFactor(norm, gradClip) : 1) / gradAccum);
      return norm;
    },
    state: () => adam.state(),
    loadState: (s) => adam.loadState(s),
    free: () => adam.free(),
  };
}

/** ZeRO-1: reduce-scatter, AdamW on this rank's shard, all-gather; checkpoints hold the gathered moments. */
function zeroOptimizer(zero: ZeroAdamW, comm: Communicator, model: Model): StepOptimizer {
  const full = () => model.backend.tensor([model.params.flat().numel]);
  return {
    step: (lr, gradClip, gradAccum) => {
      const norm = zero.step(lr, { maxGradNorm: gradClip > 0 ? gradClip : undefined, gradScale: 1 / gradAccum });
      // ZeRO-1 steps a shard and all-gathers the fp32 masters: refresh the bf16 copy from them
      model.syncBf16();
      return norm;
    },
    state() {
      const m = full(), v = full();
      try {
        comm.allGather(zero.m, m);
        comm.allGather(zero.v, v);
        return { step: zero.state().step, m: m.read() as Float32Array, v: v.read() as Float32Array };
      } finally {
        m.buffer.free();
        v.buffer.free();
      }
    },
    loadState(s) {
      const { start, end } = zero.shard;
      zero.loadState({ step: s.step, shard: { start, end }, m: s.m.slice(start, end), v: s.v.slice(start, end) });
    },
    free: () => zero.free(),
  };
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

/**
 * What --resume must keep: the sequence length, sampler and seed decide which tokens the saved
 * loader position points at, and batch x grad-accum x ranks is the optimizer step's size. Changing
 * them would silently train on another stream or another step size. Splitting the same step
 * differently (2 ranks x batch 2 -> 1 process x batch 4) is fine: a changed world size already
 * re-derives each rank's position. Other settings (steps, lr, eval cadence...) may change: logged.
 */
export function checkResumable(
  saved: (Partial<TrainConfig> & { worldSize: number }) | undefined,
  now: TrainConfig & { worldSize: number },
  dir: string,
  log: (msg: string) => void,
): void {
  if (!saved) return;
  const flag: Record<string, string> = { seq: "--seq", sample: "--sample", seed: "--seed" };
  const problems = (["seq", "sample", "seed"] as const)
    .filter((k) => saved[k] !== undefined && saved[k] !== now[k])
    .map((k) => `${flag[k]} was ${String(saved[k])} in the saved run and is ${String(now[k])} now`);
  if (saved.batch !== undefined && saved.gradAccum !== undefined) {
    const before = saved.batch * saved.gradAccum * saved.worldSize, after = now.batch * now.gradAccum * now.worldSize;
    if (before !== after)
      problems.push(
        `a step was ${before} sequences (--batch ${saved.batch} x --grad-accum ${saved.gradAccum} x ${saved.worldSize} rank(s)) and would be ${after} (--batch ${now.batch} x --grad-accum ${now.gradAccum} x ${now.worldSize})`,
      );
    else if (saved.worldSize === now.worldSize && (saved.batch !== now.batch || saved.gradAccum !== now.gradAccum))
      problems.push(`--batch/--grad-accum were ${saved.batch}/${saved.gradAccum} and are ${now.batch}/${now.gradAccum} now on the same ${now.worldSize} rank(s), which the saved loader position does not carry over to`);
  }
  if (problems.length > 0)
    throw new Error(`cannot resume: ${problems.join("; ")} (${dir}). Pass the saved values to continue that run, or start a new run with another --out.`);
  const changed = (Object.keys(now) as (keyof TrainConfig)[]).filter(
    (k) => k !== ("worldSize" as string) && saved[k] !== undefined && JSON.stringify(saved[k]) !== JSON.stringify(now[k]),
  );
  if (changed.length > 0) log(`note: resuming with changed settings: ${changed.map((k) => `${k} ${JSON.stringify(saved[k])} -> ${JSON.stringify(now[k])}`).join(", ")}`);
}
