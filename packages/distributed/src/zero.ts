/**
 * ZeRO-1 AdamW: every rank keeps the AdamW moments of its own contiguous shard of the parameter
 * arena only (8 bytes x P / W instead of 8 x P). One step = reduce-scatter the gradients (mean) into
 * the rank's shard, the global gradient norm from the shards (one scalar all-reduce), clip, AdamW on
 * the shard with @tinyllama/optimizer's runs clipped to it, all-gather the updated parameters.
 * Bit-identical to @tinyllama/optimizer's AdamW on all-reduced gradients (test/workers/zero1.ts).
 */
import { adamwStep, sumsq, type Arena, type Tensor } from "@tinyllama/kernels";
import { clipFactor, defaultDecay, planRuns, type AdamWOptions } from "@tinyllama/optimizer";
import { DistributedError, type Communicator } from "./communicator.ts";
import { shardOf, shardRuns, sliceFlat, type Shard } from "./shard.ts";

export interface ZeroStepOptions {
  /** Clip the global gradient norm to this (TinyLlama: 1.0); omit for no clipping. */
  maxGradNorm?: number;
  /** Extra factor on the gradients (e.g. 1/accumulation steps when the loss was summed). */
  gradScale?: number;
}

/** What a checkpoint stores per rank: the step, this rank's range and its moments. */
export interface ZeroAdamWState {
  step: number;
  shard: { start: number; end: number };
  m: Float32Array;
  v: Float32Array;
}

interface View {
  p: Tensor;
  g: Tensor;
  m: Tensor;
  v: Tensor;
  decay: boolean;
}

export class ZeroAdamW {
  readonly shard: Shard;
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** This rank's moments: shard.count floats each. */
  readonly m: Tensor;
  readonly v: Tensor;
  readonly #views: View[];
  #step = 0;

  constructor(
    readonly comm: Communicator,
    readonly params: Arena,
    readonly grads: Arena,
    opts: AdamWOptions,
  ) {
    if (params.buffer.bytes !== grads.buffer.bytes || params.specs.length !== grads.specs.length)
      throw new DistributedError("ZeroAdamW: params and grads must be arenas built from the same specs");
    for (const s of params.specs)
      if ((s.dtype ?? "f32") !== "f32") throw new DistributedError(`ZeroAdamW: tensor '${s.name}' is ${s.dtype}; only f32 arenas are supported`);
    this.lr = opts.lr;
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.95;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.1;
    const flat = params.flat();
    this.shard = shardOf(flat.numel, comm.worldSize, comm.rank);
    const be = params.buffer.backend;
    this.m = be.tensor([this.shard.count]);
    this.v = be.tensor([this.shard.count]);
    const g = grads.flat();
    this.#views = shardRuns(planRuns(params, opts.decay ?? defaultDecay), this.shard).map((r) => ({
      p: sliceFlat(flat, r.start, r.end),
      g: sliceFlat(g, r.start, r.end),
      m: sliceFlat(this.m, r.localStart, r.localEnd),
      v: sliceFlat(this.v, r.localStart, r.localEnd),
      decay: r.decay,
    }));
  }

  get stepCount(): number {
    return this.#step;
  }

  /** Bytes of moments this rank holds (8 x shard.count). */
  get stateBytes(): number {
    return this.m.bytes + this.v.bytes;
  }

  /**
   * One step on every rank (collective: all ranks must call it). Reads the gradients each rank
   * accumulated in `grads` and leaves `grads` outside this rank's shard unspecified; on return every
   * rank holds the same updated `params`. Returns the global gradient norm (before clipping); when it
   * is not finite the update is skipped on every rank (they all see the same norm).
   */
  step(lr: number = this.lr, o: ZeroStepOptions = {}): number {
    const gFlat = this.grads.flat(), pFlat = this.params.flat();
    const { start, end } = this.shard;
    this.comm.reduceScatter(gFlat, sliceFlat(gFlat, start, end), "mean");
    const scale = o.gradScale ?? 1;
    const sq = end > start ? sumsq(sliceFlat(gFlat, start, end)) : 0;
    const norm = Math.sqrt(this.comm.allReduceScalar(sq, "sum")) * Math.abs(scale);
    if (!Number.isFinite(norm)) return norm;
    const gradScale = scale * (o.maxGradNorm === undefined ? 1 : clipFactor(norm, o.maxGradNorm));
    const t = this.#step + 1;
    for (const r of this.#views)
      adamwStep(r.p, r.g, r.m, r.v, { lr, beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: r.decay ? this.weightDecay : 0, gradScale, step: t });
    this.#step = t;
    this.comm.allGather(sliceFlat(pFlat, start, end), pFlat);
    return norm;
  }

  /** This rank's part of a checkpoint. */
  state(): ZeroAdamWState {
    return { step: this.#step, shard: { start: this.shard.start, end: this.shard.end }, m: this.m.read() as Float32Array, v: this.v.read() as Float32Array };
  }

  loadState(s: ZeroAdamWState): void {
    if (s.shard.start !== this.shard.start || s.shard.end !== this.shard.end)
      throw new DistributedError(
        `ZeroAdamW.loadState: the state is for elements [${s.shard.start}, ${s.shard.end}) but rank ${this.comm.rank} of ${this.comm.worldSize} owns [${this.shard.start}, ${this.shard.end}); resume with the same world size`,
      );
    if (!Number.isInteger(s.step) || s.step < 0) throw new DistributedError(`ZeroAdamW.loadState: bad step ${s.step}`);
    this.m.write(s.m);
    this.v.write(s.v);
    this.#step = s.step;
  }

  free(): void {
    this.m.buffer.free();
    this.v.buffer.free();
  }
}
