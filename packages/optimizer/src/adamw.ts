/**
 * AdamW over a parameter arena. The optimizer owns two more arenas with the parameters' layout
 * (first and second moments, fp32, zero-initialised) and steps each run of adjacent tensors that
 * share a weight-decay setting with ONE fused kernel call over the run's flat memory, padding
 * included: padding holds zero parameters and zero gradients, so AdamW leaves it at zero.
 *
 * bf16 mixed precision: when the parameter arena has a bf16 copy (Arena.shadow, a bf16 model's
 * `paramsBf16`), each run is one tl_adamw_step_bf16 call that updates the fp32 masters and writes
 * their bf16 rounding into the copy, so the copy never goes stale.
 */
import { Arena, ShapeError, Tensor, adamwStep, adamwStepBf16, fmtShape, type Backend } from "@tinyllama/kernels";
import { requireF32 } from "./clip.ts";

export type DecayPredicate = (name: string, shape: readonly number[]) => boolean;

export interface AdamWOptions {
  /** Default learning rate for `step()` when none is passed (schedules pass one every step). */
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay for the tensors `decay` selects (TinyLlama: 0.1). */
  weightDecay?: number;
  /** Which tensors get weight decay. Default: those with 2 or more dimensions (embeddings, projections, LM head), not RMSNorm gains. */
  decay?: DecayPredicate;
  /**
   * bf16 copy of the parameters to refresh at every step (an Arena.shadow of `params` in bf16).
   * Default: the one Arena.shadow registered on `params`, if any (a bf16 model's paramsBf16);
   * null: none, even if one exists (its owner must then refresh it).
   */
  paramsBf16?: Arena | null;
}

/** One fused kernel call: [start, end) in fp32 elements of the flat arenas. */
export interface AdamWRun {
  readonly start: number;
  readonly end: number;
  readonly decay: boolean;
  /** The tensors the run covers, in arena order. */
  readonly names: readonly string[];
}

/** What a checkpoint stores: the step count and the flat moment arenas (padding included). */
export interface AdamWState {
  step: number;
  m: Float32Array;
  v: Float32Array;
}

export const defaultDecay: DecayPredicate = (_name, shape) => shape.length >= 2;

function hyper(name: string, v: number, lo: number, hi: number, hiOpen: boolean): number {
  const ok = typeof v === "number" && Number.isFinite(v) && v >= lo && (hiOpen ? v < hi : v <= hi);
  if (!ok) throw new RangeError(`AdamW: '${name}' must be a finite number in [${lo}, ${hi === Infinity ? "inf" : hi}${hiOpen ? ")" : "]"}, got ${v}`);
  return v;
}

function sameLayout(params: Arena, grads: Arena): void {
  const a = params.specs, b = grads.specs;
  const where = (i: number) => `tensor #${i}`;
  if (a.length !== b.length) throw new ShapeError(`AdamW: params have ${a.length} tensors but grads have ${b.length}; build both arenas from the same specs`);
  for (let i = 0; i < a.length; i++) {
    const p = a[i]!, g = b[i]!;
    if (p.name !== g.name || fmtShape(p.shape) !== fmtShape(g.shape) || (p.dtype ?? "f32") !== (g.dtype ?? "f32"))
      throw new ShapeError(
        `AdamW: ${where(i)} differs: params '${p.name}' ${fmtShape(p.shape)} ${p.dtype ?? "f32"}, grads '${g.name}' ${fmtShape(g.shape)} ${g.dtype ?? "f32"}; build both arenas from the same specs`,
      );
  }
  if (params.buffer.bytes !== grads.buffer.bytes) throw new ShapeError(`AdamW: params arena is ${params.buffer.bytes} bytes but grads is ${grads.buffer.bytes}`);
  if (params.buffer.backend !== grads.buffer.backend) throw new ShapeError("AdamW: params and grads are on different backends");
  if (params.buffer === grads.buffer) throw new ShapeError("AdamW: params and grads are the same arena");
}

/** paramsBf16 must hold params' tensors in bf16 at the same element offsets (Arena.shadow). */
function shadowLayout(params: Arena, pb: Arena): void {
  if (!(pb instanceof Arena)) throw new TypeError("AdamW: paramsBf16 must be an Arena (Arena.shadow(params, 'bf16'))");
  const a = params.specs, b = pb.specs;
  const ok =
    a.length === b.length &&
    pb.buffer.bytes * 2 === params.buffer.bytes &&
    pb.buffer.backend === params.buffer.backend &&
    a.every((s, i) => s.name === b[i]!.name && fmtShape(s.shape) === fmtShape(b[i]!.shape) && b[i]!.dtype === "bf16" && pb.offsets.get(s.name)! * 2 === params.offsets.get(s.name)!);
  if (!ok) throw new ShapeError("AdamW: paramsBf16 is not a bf16 copy of params at the same element offsets; make it with Arena.shadow(params, 'bf16')");
}

/** Groups adjacent tensors with equal decay into runs over the padded flat layout. */
export function planRuns(arena: Arena, decay: DecayPredicate = defaultDecay): AdamWRun[] {
  const runs: { start: number; end: number; decay: boolean; names: string[] }[] = [];
  const specs = arena.specs;
  for (let i = 0; i < specs.length; i++) {
    const s = specs[i]!;
    const start = arena.offsets.get(s.name)! / 4;
    const next = specs[i + 1];
    // the tensor's padded extent reaches the next tensor (or the end of the arena)
    const end = (next ? arena.offsets.get(next.name)! : arena.buffer.bytes) / 4;
    const d = decay(s.name, s.shape);
    if (typeof d !== "boolean") throw new TypeError(`AdamW: the decay predicate returned ${typeof d} for '${s.name}'; it must return a boolean`);
    if (end === start) continue; // an empty tensor has nothing to step
    const last = runs[runs.length - 1];
    if (last && last.decay === d && last.end === start) {
      last.end = end;
      last.names.push(s.name);
    } else runs.push({ start, end, decay: d, names: [s.name] });
  }
  return runs;
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly lr: number;
  /** First and second moments, same layout as the parameters. */
  readonly m: Arena;
  readonly v: Arena;
  readonly runs: readonly AdamWRun[];
  #step = 0;
  /** The bf16 copy refreshed by every step, or null (fp32 training). */
  readonly paramsBf16: Arena | null;
  readonly #views: { p: Tensor; g: Tensor; m: Tensor; v: Tensor; pb: Tensor | null; decay: boolean }[];

  constructor(
    readonly params: Arena,
    readonly grads: Arena,
    opts: AdamWOptions,
  ) {
    if (opts === null || typeof opts !== "object") throw new TypeError("AdamW: options { lr, ... } are required");
    this.lr = hyper("lr", opts.lr, 0, Infinity, false);
    this.beta1 = hyper("beta1", opts.beta1 ?? 0.9, 0, 1, true);
    this.beta2 = hyper("beta2", opts.beta2 ?? 0.95, 0, 1, true);
    this.eps = hyper("eps", opts.eps ?? 1e-8, 0, Infinity, false);
    this.weightDecay = hyper("weightDecay", opts.weightDecay ?? 0.1, 0, Infinity, false);
    sameLayout(params, grads);
    requireF32("AdamW", params);
    this.runs = planRuns(params, opts.decay ?? defaultDecay);
    const pb = opts.paramsBf16 === undefined ? params.shadowOf("bf16") : opts.paramsBf16;
    if (pb) shadowLayout(params, pb);
    this.paramsBf16 = pb;
    const be: Backend = params.buffer.backend;
    this.m = new Arena(be, params.specs);
    this.v = new Arena(be, params.specs);
    this.m.zero();
    this.v.zero();
    const view = (a: Arena, r: AdamWRun) => new Tensor(a.buffer, r.start * 4, [r.end - r.start], "f32");
    this.#views = this.runs.map((r) => ({
      p: view(params, r),
      g: view(grads, r),
      m: view(this.m, r),
      v: view(this.v, r),
      pb: pb ? new Tensor(pb.buffer, r.start * 2, [r.end - r.start], "bf16") : null,
      decay: r.decay,
    }));
  }

  /** Number of steps taken (the bias-correction t of the last step). */
  get stepCount(): number {
    return this.#step;
  }

  /** Bytes of optimizer state held on the device (m and v). */
  get stateBytes(): number {
    return this.m.buffer.bytes + this.v.buffer.bytes;
  }

  /**
   * One AdamW step on every parameter. `gradScale` multiplies each gradient first: pass
   * clipFactor(gradNorm(grads), maxNorm), times 1/accumulationSteps if the loss was not averaged.
   */
  step(lr: number = this.lr, gradScale = 1): void {
    hyper("lr", lr, 0, Infinity, false);
    if (typeof gradScale !== "number" || !Number.isFinite(gradScale))
      throw new RangeError(`AdamW.step: gradScale must be finite, got ${gradScale} (a non-finite gradient norm: skip this step instead)`);
    if (this.#step >= 0x7fffffff) throw new RangeError("AdamW.step: step count would exceed 2^31 - 1");
    const t = this.#step + 1;
    for (const r of this.#views) {
      const o = { lr, beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: r.decay ? this.weightDecay : 0, gradScale, step: t };
      if (r.pb) adamwStepBf16(r.p, r.pb, r.g, r.m, r.v, o);
      else adamwStep(r.p, r.g, r.m, r.v, o);
    }
    this.#step = t; // only after every run succeeded
  }

  /** A host copy of the optimizer state for checkpoints. */
  state(): AdamWState {
    return { step: this.#step, m: this.m.flat().read() as Float32Array, v: this.v.flat().read() as Float32Array };
  }

  /** Restores `state()` output; the sizes must match this optimizer's arena layout. */
  loadState(s: AdamWState): void {
    if (s === null || typeof s !== "object") throw new TypeError("AdamW.loadState: expected { step, m, v }");
    if (!Number.isInteger(s.step) || s.step < 0 || s.step > 0x7fffffff) throw new RangeError(`AdamW.loadState: step must be an integer >= 0, got ${s.step}`);
    const n = this.m.buffer.bytes / 4;
    for (const [k, a] of [["m", s.m], ["v", s.v]] as const) {
      if (!(a instanceof Float32Array)) {
        const got: unknown = a;
        const what = got === null ? "null" : typeof got === "object" ? (got as object).constructor.name : typeof got;
        throw new TypeError(`AdamW.loadState: '${k}' must be a Float32Array, got ${what}`);
      }
      if (a.length !== n)
        throw new ShapeError(
          `AdamW.loadState: '${k}' has ${a.length} elements but this optimizer's arena holds ${n} (${this.params.specs.length} tensors, padding included); was the state saved for a different model?`,
        );
    }
    this.m.flat().write(s.m);
    this.v.flat().write(s.v);
    this.#step = s.step;
  }

  /** Frees the moment arenas (not the params/grads, which the caller owns). */
  free(): void {
    this.m.free();
    this.v.free();
  }
  [Symbol.dispose](): void {
    this.free();
  }
}
