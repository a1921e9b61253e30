/**
 * The feed-forward half of a Llama decoder layer (Hugging Face `LlamaMLP`, no biases):
 *
 *   gate = x Wg^T, up = x Wu^T        (B,T,H)
 *   h    = silu(gate) * up            one fused kernel
 *   out  = h Wd^T                     (B,T,C)
 *
 * Like AttentionBlock, the block owns no memory: parameters, gradients and activations are named
 * tensors looked up in arenas a model allocates once; `MlpBlock.create` allocates private arenas
 * for standalone use, tests and benchmarks.
 */
import {
  Arena,
  ShapeError,
  castF32ToBf16,
  checkPrecision,
  fmtShape,
  matmulBackward,
  matmulBackwardBf16FromF32,
  matmulForward,
  matmulForwardBf16,
  swigluBackward,
  swigluForward,
  type Backend,
  type Precision,
  type Tensor,
  type TensorSpec,
} from "@tinyllama/kernels";
import { deriveSeed, gaussian } from "./random.ts";

type F32 = Tensor<"f32">;

/** The part of a model config the MLP reads (a structural subset of @tinyllama/config's ModelConfig). */
export interface MlpConfig {
  /** model width C */
  dim: number;
  /** SwiGLU inner width H (HF intermediate_size) */
  hiddenDim: number;
  /** layers in the model; only scales down_proj's initial std (TinyLlama: 1/sqrt(C)/nLayers) */
  nLayers?: number;
}

/** Looks a tensor up by its name relative to the block (e.g. "gate_proj.weight", "h"). */
export type TensorLookup = (name: string) => Tensor;

export interface MlpTensors {
  params: TensorLookup;
  /** null for inference only: backward() then throws. */
  grads: TensorLookup | null;
  acts: TensorLookup;
  /**
   * "bf16": the three projections run as bf16 matmuls with fp32 accumulation on bf16 copies of the
   * weights (`paramsBf16`, kept in sync with the fp32 masters by the owner) and bf16 casts of their
   * inputs; SwiGLU stays fp32. Default "fp32".
   */
  precision?: Precision;
  /** bf16 copies of the parameters (same names); required with precision "bf16". */
  paramsBf16?: TensorLookup | null;
}

export const MLP_PARAM_NAMES = ["gate_proj.weight", "up_proj.weight", "down_proj.weight"] as const;
export type MlpParamName = (typeof MLP_PARAM_NAMES)[number];

/** TinyLlama's initialisation: normal(0, sqrt(2/(5C))), down_proj normal(0, 1/sqrt(C)/nLayers). */
export function mlpInitStd(cfg: MlpConfig, name: MlpParamName): number {
  return name === "down_proj.weight" ? 1 / Math.sqrt(cfg.dim) / (cfg.nLayers ?? 1) : Math.sqrt(2 / (5 * cfg.dim));
}

export class MlpBlock {
  readonly C: number;
  readonly H: number;
  readonly #p: Record<MlpParamName, F32>;
  readonly #g: Record<MlpParamName, F32> | null;
  /** bf16 weight copies (bf16 precision only) */
  readonly #pb: Record<MlpParamName, Tensor> | null;
  readonly #a: Record<string, Tensor>;
  readonly precision: Precision;
  /** The input of the last forward; backward needs it for the gate/up weight gradients. */
  #x: Tensor | null = null;
  #owned: (() => void) | null = null;

  /** Parameters with Hugging Face names relative to `model.layers.N.mlp.`. */
  static parameterSpecs(cfg: MlpConfig): TensorSpec[] {
    const { C, H } = dims(cfg, "MlpBlock.parameterSpecs");
    return [
      { name: "gate_proj.weight", shape: [H, C] },
      { name: "up_proj.weight", shape: [H, C] },
      { name: "down_proj.weight", shape: [C, H] },
    ];
  }

  /**
   * Saved by forward for backward: the two projections; in bf16 precision also the bf16 inputs of
   * the matmuls (x and h), which the weight gradients read.
   */
  static savedSpecs(cfg: MlpConfig, B: number, T: number, precision: Precision = "fp32"): TensorSpec[] {
    const { C, H } = dims(cfg, "MlpBlock.savedSpecs");
    checkBT("MlpBlock.savedSpecs", B, T);
    const specs: TensorSpec[] = [
      { name: "gate", shape: [B, T, H] },
      { name: "up", shape: [B, T, H] },
    ];
    if (checkPrecision("MlpBlock.savedSpecs", precision) === "bf16")
      specs.push({ name: "x_bf16", shape: [B, T, C], dtype: "bf16" }, { name: "h_bf16", shape: [B, T, H], dtype: "bf16" });
    return specs;
  }

  /**
   * Used within one forward or one backward call (an inference block needs them too), so a model may
   * map these names to ONE buffer for all layers. "h" = silu(gate) * up is not saved: backward
   * recomputes it from the saved gate and up with the same kernel (bit-identical values), which
   * costs one elementwise pass and saves a (B,T,H) tensor per layer, as much as gate or up.
   */
  static sharedSpecs(cfg: MlpConfig, B: number, T: number): TensorSpec[] {
    const { H } = dims(cfg, "MlpBlock.sharedSpecs");
    checkBT("MlpBlock.sharedSpecs", B, T);
    return [{ name: "h", shape: [B, T, H] }];
  }

  /** Used only inside backward, so a model may map these names to ONE buffer set for all layers. */
  static scratchSpecs(cfg: MlpConfig, B: number, T: number, precision: Precision = "fp32"): TensorSpec[] {
    const { C, H } = dims(cfg, "MlpBlock.scratchSpecs");
    checkBT("MlpBlock.scratchSpecs", B, T);
    const specs: TensorSpec[] = [
      { name: "dh", shape: [B, T, H] },
      { name: "dgate", shape: [B, T, H] },
      { name: "dup", shape: [B, T, H] },
    ];
    // bf16: the output gradient of each projection, cast to bf16 for its matmul (one at a time)
    if (checkPrecision("MlpBlock.scratchSpecs", precision) === "bf16") specs.push({ name: "g_bf16", shape: [B * T * Math.max(C, H)], dtype: "bf16" });
    return specs;
  }

  /** savedSpecs, sharedSpecs and scratchSpecs: everything `acts` must resolve. */
  static activationSpecs(cfg: MlpConfig, B: number, T: number, precision: Precision = "fp32"): TensorSpec[] {
    return [...MlpBlock.savedSpecs(cfg, B, T, precision), ...MlpBlock.sharedSpecs(cfg, B, T), ...MlpBlock.scratchSpecs(cfg, B, T, precision)];
  }

  constructor(
    readonly cfg: MlpConfig,
    readonly B: number,
    readonly T: number,
    tensors: MlpTensors,
  ) {
    const op = "MlpBlock";
    ({ C: this.C, H: this.H } = dims(cfg, op));
    checkBT(op, B, T);
    const precision = (this.precision = checkPrecision(op, tensors.precision ?? "fp32"));
    const pspecs = MlpBlock.parameterSpecs(cfg);
    this.#p = resolve(op, "params", tensors.params, pspecs) as Record<MlpParamName, F32>;
    this.#g = tensors.grads ? (resolve(op, "grads", tensors.grads, pspecs) as Record<MlpParamName, F32>) : null;
    if (precision === "bf16" && !tensors.paramsBf16) throw new ShapeError(`${op}: precision "bf16" needs paramsBf16 (bf16 copies of the weights)`);
    this.#pb = precision === "bf16" ? (resolve(op, "paramsBf16", tensors.paramsBf16!, pspecs.map((s) => ({ ...s, dtype: "bf16" as const }))) as Record<MlpParamName, Tensor>) : null;
    // An inference-only block never runs backward, so it needs no backward scratch.
    const aspecs = this.#g ? MlpBlock.activationSpecs(cfg, B, T, precision) : [...MlpBlock.savedSpecs(cfg, B, T, precision), ...MlpBlock.sharedSpecs(cfg, B, T)];
    this.#a = resolve(op, "acts", tensors.acts, aspecs);
  }

  /**
   * A block with its own parameter, gradient and activation arenas, parameters drawn with
   * TinyLlama's initialisation from `seed`. Call free() when done.
   */
  static create(backend: Backend, cfg: MlpConfig, B: number, T: number, seed = 1): MlpBlock {
    const pspecs = MlpBlock.parameterSpecs(cfg);
    const arenas: Arena[] = [];
    try {
      const params = new Arena(backend, pspecs);
      arenas.push(params);
      const grads = new Arena(backend, pspecs);
      arenas.push(grads);
      const acts = new Arena(backend, MlpBlock.activationSpecs(cfg, B, T));
      arenas.push(acts);
      MLP_PARAM_NAMES.forEach((name, i) => {
        const t = params.get(name);
        t.write(gaussian(t.numel, mlpInitStd(cfg, name), deriveSeed(seed, i)));
      });
      const block = new MlpBlock(cfg, B, T, { params: (n) => params.get(n), grads: (n) => grads.get(n), acts: (n) => acts.get(n) });
      block.#owned = () => {
        for (const a of arenas) a.free();
      };
      return block;
    } catch (e) {
      for (const a of arenas) a.free();
      throw e;
    }
  }

  param(name: MlpParamName): F32 {
    return this.#p[name];
  }
  /** The gradient of a parameter; throws for an inference-only block. */
  grad(name: MlpParamName): F32 {
    if (!this.#g) throw new ShapeError(`MlpBlock: this block was built without gradients (grads: null)`);
    return this.#g[name];
  }
  act(name: string): Tensor {
    const t = this.#a[name];
    if (!t) throw new ShapeError(`MlpBlock: no activation named '${name}' (have ${Object.keys(this.#a).join(", ")})`);
    return t;
  }

  /** out (B,T,C) = down(silu(gate(x)) * up(x)). x must stay unchanged until backward. */
  forward(out: Tensor, x: Tensor): void {
    const op = "MlpBlock.forward";
    this.#io(op, "x", x, "out", out);
    const p = this.#p, a = this.#a, pb = this.#pb;
    if (pb) {
      // bf16: cast each matmul input once; the products come back in fp32
      const xb = a.x_bf16!, hb = a.h_bf16!;
      castF32ToBf16(xb, x);
      matmulForwardBf16(a.gate!, xb, pb["gate_proj.weight"]);
      matmulForwardBf16(a.up!, xb, pb["up_proj.weight"]);
      swigluForward(a.h!, a.gate!, a.up!);
      castF32ToBf16(hb, a.h!);
      matmulForwardBf16(out, hb, pb["down_proj.weight"]);
    } else {
      matmulForward(a.gate!, x, p["gate_proj.weight"]);
      matmulForward(a.up!, x, p["up_proj.weight"]);
      swigluForward(a.h!, a.gate!, a.up!);
      matmulForward(out, a.h!, p["down_proj.weight"]);
    }
    this.#x = x;
  }

  /** dx (B,T,C) += J^T dout; the three weight gradients accumulate into the grads tensors. */
  backward(dx: Tensor, dout: Tensor): void {
    const op = "MlpBlock.backward";
    const g = this.#g;
    if (!g) throw new ShapeError(`${op}: this block was built without gradients (grads: null); pass grads to the constructor to train`);
    const x = this.#x;
    if (!x) throw new ShapeError(`${op}: call forward() before backward()`);
    if (!x.buffer.alive) throw new ShapeError(`${op}: the input of the last forward was freed`);
    this.#io(op, "dout", dout, "dx", dx);
    const p = this.#p, a = this.#a, be = dx.backend, pb = this.#pb;
    // bf16: dy (fp32) -> bf16 in the shared scratch, then dinp (fp32) += dy W, dW (fp32) += dy^T x_bf16
    const linearBackward = (dinp: Tensor, dy: Tensor, xb: Tensor, name: MlpParamName): void =>
      matmulBackwardBf16FromF32({ dinp, dweight: g[name] }, dy, xb, pb![name], a.g_bf16!);
    // fp32: h is not saved (see sharedSpecs): recompute it exactly as forward did (bf16 saves h_bf16)
    if (!pb) swigluForward(a.h!, a.gate!, a.up!);
    // out = h Wd^T
    be.zero(a.dh!);
    if (pb) linearBackward(a.dh!, dout, a.h_bf16!, "down_proj.weight");
    else matmulBackward({ dinp: a.dh!, dweight: g["down_proj.weight"] }, dout, a.h!, p["down_proj.weight"]);
    // h = silu(gate) * up
    be.zero(a.dgate!);
    be.zero(a.dup!);
    swigluBackward({ dgate: a.dgate!, dup: a.dup! }, a.dh!, a.gate!, a.up!);
    // gate = x Wg^T, up = x Wu^T
    if (pb) {
      linearBackward(dx, a.dgate!, a.x_bf16!, "gate_proj.weight");
      linearBackward(dx, a.dup!, a.x_bf16!, "up_proj.weight");
      return;
    }
    matmulBackward({ dinp: dx, dweight: g["gate_proj.weight"] }, a.dgate!, x, p["gate_proj.weight"]);
    matmulBackward({ dinp: dx, dweight: g["up_proj.weight"] }, a.dup!, x, p["up_proj.weight"]);
  }

  /** Frees the arenas of a block made by create(); a no-op for a block over a model's arenas. */
  free(): void {
    this.#owned?.();
    this.#owned = null;
  }
  [Symbol.dispose](): void {
    this.free();
  }

  #io(op: string, inName: string, inp: Tensor, outName: string, out: Tensor): void {
    const want = [this.B, this.T, this.C];
    for (const [n, t] of [[inName, inp], [outName, out]] as const) {
      if (!t || !sameShape(t.shape, want)) throw new ShapeError(`${op}: '${n}' must have shape (B, T, C) = ${fmtShape(want)}, got ${t ? fmtShape(t.shape) : t}`);
      if (t.dtype !== "f32") throw new ShapeError(`${op}: '${n}' must be f32, got ${t.dtype}`);
      if (!t.buffer.alive) throw new ShapeError(`${op}: '${n}' ${fmtShape(t.shape)} belongs to a freed buffer`);
    }
    if (overlaps(inp, out)) throw new ShapeError(`${op}: '${outName}' overlaps '${inName}'; use separate buffers`);
  }
}

function dims(cfg: MlpConfig, who: string): { C: number; H: number } {
  const { dim: C, hiddenDim: H } = cfg;
  for (const [k, v] of Object.entries({ dim: C, hiddenDim: H }))
    if (!Number.isInteger(v) || v <= 0) throw new ShapeError(`${who}: config.${k} must be a positive integer, got ${v}`);
  if (cfg.nLayers !== undefined && (!Number.isInteger(cfg.nLayers) || cfg.nLayers <= 0))
    throw new ShapeError(`${who}: config.nLayers must be a positive integer, got ${cfg.nLayers}`);
  return { C, H };
}

function checkBT(op: string, B: number, T: number): void {
  if (!Number.isInteger(B) || B <= 0) throw new ShapeError(`${op}: batch size B must be a positive integer, got ${B}`);
  if (!Number.isInteger(T) || T <= 0) throw new ShapeError(`${op}: sequence length T must be a positive integer, got ${T}`);
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function overlaps(a: Tensor, b: Tensor): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.bytes && b.byteOffset < a.byteOffset + a.bytes;
}

/** Looks every spec up, checking shape and dtype, so a wrong arena fails here and not mid-step. */
function resolve(op: string, what: string, lookup: TensorLookup, specs: readonly TensorSpec[]): Record<string, F32> {
  if (typeof lookup !== "function") throw new ShapeError(`${op}: '${what}' must be a function from a tensor name to a Tensor`);
  const out: Record<string, F32> = {};
  for (const s of specs) {
    let t: Tensor;
    try {
      t = lookup(s.name);
    } catch (e) {
      throw new ShapeError(`${op}: ${what} has no tensor '${s.name}' (${(e as Error).message})`);
    }
    if (!t || !sameShape(t.shape, s.shape) || t.dtype !== (s.dtype ?? "f32"))
      throw new ShapeError(`${op}: ${what} '${s.name}' must be ${s.dtype ?? "f32"} ${fmtShape(s.shape)}, got ${t ? `${t.dtype} ${fmtShape(t.shape)}` : t}`);
    out[s.name] = t as F32; // every spec here is f32, checked just above
  }
  return out;
}
