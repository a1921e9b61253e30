/**
 * The attention half of a Llama decoder layer (Hugging Face `LlamaAttention`, no biases):
 *
 *   q = x Wq^T, k = x Wk^T, v = x Wv^T          (B,T,NH|NKV,HD)
 *   q, k = RoPE(q), RoPE(k)                      rotate-half, positions 0..T-1
 *   att = softmax(q k^T / sqrt(HD) + causal) v   query head h reads kv head h / (NH/NKV)
 *   out = att Wo^T                               (B,T,C)
 *
 * The block owns no memory: parameters, gradients and activations are named tensors looked up
 * in arenas that a model allocates once (llm.c's pattern); `AttentionBlock.create` allocates
 * private arenas for standalone use, tests and benchmarks.
 */
import {
  Arena,
  ShapeError,
  attentionBackward,
  attentionBackwardBf16,
  attentionForward,
  attentionForwardBf16,
  castF32ToBf16,
  checkPrecision,
  fmtShape,
  matmulBackward,
  matmulBackwardBf16FromF32,
  matmulForward,
  matmulForwardBf16,
  ropeBackward,
  ropeForward,
  type Backend,
  type Precision,
  type Tensor,
  type TensorSpec,
} from "@tinyllama/kernels";
import { attentionDims, type AttentionConfig, type AttentionDims } from "./config.ts";
import { createRope, freeRope, type RopeTables } from "./rope.ts";

/** Looks a tensor up by its name relative to the block (e.g. "q_proj.weight", "lse"). */
export type TensorLookup = (name: string) => Tensor;

export interface AttentionTensors {
  params: TensorLookup;
  /** null for inference only: backward() then throws, and `acts` need only resolve savedSpecs. */
  grads: TensorLookup | null;
  acts: TensorLookup;
  rope: RopeTables;
  /**
   * "bf16": the four projections run as bf16 matmuls with fp32 accumulation on bf16 copies of the
   * weights (`paramsBf16`, kept in sync with the fp32 masters by the owner) and bf16 casts of their
   * inputs; RoPE stays fp32 and attention runs on bf16 casts of q, k, v (tensor cores on CUDA; fp32
   * softmax and accumulation), forward and backward. Default "fp32".
   */
  precision?: Precision;
  /** bf16 copies of the parameters (same names); required with precision "bf16". */
  paramsBf16?: TensorLookup | null;
}

/** Initial value of a parameter; return null to keep the default normal(0, 0.02). */
export type ParamInit = (spec: TensorSpec) => Float32Array | null;

export const PARAM_NAMES = ["q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight"] as const;
export type ParamName = (typeof PARAM_NAMES)[number];

export class AttentionBlock {
  readonly dims: AttentionDims;
  readonly #p: Record<ParamName, Tensor>;
  readonly #g: Record<ParamName, Tensor> | null;
  /** bf16 weight copies (bf16 precision only) */
  readonly #pb: Record<ParamName, Tensor> | null;
  readonly #a: Record<string, Tensor>;
  readonly precision: Precision;
  readonly #rope: RopeTables;
  /** The input of the last forward; the weight gradients of backward need it. */
  #x: Tensor | null = null;
  #owned: (() => void) | null = null;

  /** Parameters with Hugging Face names relative to `model.layers.N.self_attn.`. */
  static parameterSpecs(cfg: AttentionConfig): TensorSpec[] {
    const { C, NH, NKV, HD } = attentionDims(cfg, "AttentionBlock.parameterSpecs");
    return [
      { name: "q_proj.weight", shape: [NH * HD, C] },
      { name: "k_proj.weight", shape: [NKV * HD, C] },
      { name: "v_proj.weight", shape: [NKV * HD, C] },
      { name: "o_proj.weight", shape: [C, NH * HD] },
    ];
  }

  /**
   * Activations saved by forward for backward: q, k after RoPE, v, the attention output and its lse;
   * in bf16 precision the output only as bf16, plus bf16 copies of x (the weight gradients read it) and
   * of q, k, v (the bf16 attention kernels read them).
   */
  static savedSpecs(cfg: AttentionConfig, B: number, T: number, precision: Precision = "fp32"): TensorSpec[] {
    const { C, NH, NKV, HD } = attentionDims(cfg, "AttentionBlock.savedSpecs");
    checkBT("AttentionBlock.savedSpecs", cfg, B, T);
    const specs: TensorSpec[] = [
      { name: "q", shape: [B, T, NH, HD] },
      { name: "k", shape: [B, T, NKV, HD] },
      { name: "v", shape: [B, T, NKV, HD] },
      { name: "lse", shape: [B, NH, T] },
    ];
    // bf16: the attention kernels (tensor cores on CUDA) read and write bf16 q, k, v and output
    if (checkPrecision("AttentionBlock.savedSpecs", precision) === "bf16")
      specs.push(
        { name: "x_bf16", shape: [B, T, C], dtype: "bf16" },
        { name: "q_bf16", shape: [B, T, NH, HD], dtype: "bf16" },
        { name: "k_bf16", shape: [B, T, NKV, HD], dtype: "bf16" },
        { name: "v_bf16", shape: [B, T, NKV, HD], dtype: "bf16" },
        { name: "att_bf16", shape: [B, T, NH * HD], dtype: "bf16" },
      );
    else specs.push({ name: "att", shape: [B, T, NH, HD] });
    return specs;
  }

  /**
   * Scratch used only inside backward (nothing in it survives the call), so a model may map these
   * names to ONE buffer shared by all layers. "datt" also serves as the pre-RoPE dq.
   */
  static scratchSpecs(cfg: AttentionConfig, B: number, T: number, precision: Precision = "fp32"): TensorSpec[] {
    const { C, NH, NKV, HD } = attentionDims(cfg, "AttentionBlock.scratchSpecs");
    checkBT("AttentionBlock.scratchSpecs", cfg, B, T);
    const specs: TensorSpec[] = [
      { name: "datt", shape: [B, T, NH, HD] },
      { name: "dq", shape: [B, T, NH, HD] },
      { name: "dk", shape: [B, T, NKV, HD] },
      { name: "dv", shape: [B, T, NKV, HD] },
      { name: "dk_pre", shape: [B, T, NKV, HD] },
    ];
    // bf16: the output gradient of each projection, cast to bf16 for its matmul (one at a time)
    if (checkPrecision("AttentionBlock.scratchSpecs", precision) === "bf16") specs.push({ name: "g_bf16", shape: [B * T * Math.max(C, NH * HD)], dtype: "bf16" });
    return specs;
  }

  /** savedSpecs followed by scratchSpecs: everything `acts` must resolve. */
  static activationSpecs(cfg: AttentionConfig, B: number, T: number, precision: Precision = "fp32"): TensorSpec[] {
    return [...AttentionBlock.savedSpecs(cfg, B, T, precision), ...AttentionBlock.scratchSpecs(cfg, B, T, precision)];
  }

  constructor(
    readonly cfg: AttentionConfig,
    readonly B: number,
    readonly T: number,
    tensors: AttentionTensors,
  ) {
    const op = "AttentionBlock";
    this.dims = attentionDims(cfg, op);
    checkBT(op, cfg, B, T);
    const { params, grads, acts, rope } = tensors;
    const precision = (this.precision = checkPrecision(op, tensors.precision ?? "fp32"));
    const pspecs = AttentionBlock.parameterSpecs(cfg);
    this.#p = resolve(op, "params", params, pspecs) as Record<ParamName, Tensor>;
    this.#g = grads ? (resolve(op, "grads", grads, pspecs) as Record<ParamName, Tensor>) : null;
    if (precision === "bf16" && !tensors.paramsBf16) throw new ShapeError(`${op}: precision "bf16" needs paramsBf16 (bf16 copies of the weights)`);
    this.#pb = precision === "bf16" ? (resolve(op, "paramsBf16", tensors.paramsBf16!, pspecs.map((s) => ({ ...s, dtype: "bf16" as const }))) as Record<ParamName, Tensor>) : null;
    // An inference-only block never runs backward, so it needs no backward scratch.
    this.#a = resolve(op, "acts", acts, grads ? AttentionBlock.activationSpecs(cfg, B, T, precision) : AttentionBlock.savedSpecs(cfg, B, T, precision));
    const tableShape = [cfg.maxSeqLen, this.dims.HD / 2];
    for (const [n, t] of Object.entries({ cos: rope?.cos, sin: rope?.sin }))
      if (!t || !sameShape(t.shape, tableShape))
        throw new ShapeError(`${op}: rope.${n} must be a tensor of shape ${fmtShape(tableShape)}, got ${t ? fmtShape(t.shape) : t}`);
    this.#rope = rope;
  }

  /**
   * A block with its own parameter, gradient and activation arenas and RoPE tables, parameters
   * drawn from normal(0, 0.02) with `seed` unless `init` supplies them. Call free() when done.
   */
  static create(backend: Backend, cfg: AttentionConfig, B: number, T: number, seed = 1, init?: ParamInit): AttentionBlock {
    const pspecs = AttentionBlock.parameterSpecs(cfg);
    const aspecs = AttentionBlock.activationSpecs(cfg, B, T);
    const params = new Arena(backend, pspecs);
    const arenas: Arena[] = [params];
    let rope: RopeTables | null = null;
    try {
      const grads = new Arena(backend, pspecs);
      arenas.push(grads);
      const acts = new Arena(backend, aspecs);
      arenas.push(acts);
      rope = createRope(backend, cfg);
      const rng = mulberry32(seed);
      for (const s of pspecs) {
        const t = params.get(s.name);
        const given = init?.(s) ?? null;
        if (given && given.length !== t.numel)
          throw new ShapeError(`AttentionBlock.create: init gave ${given.length} values for '${s.name}' ${fmtShape(s.shape)} (${t.numel} expected)`);
        t.write(given ?? normal(t.numel, rng, 0.02));
      }
      const block = new AttentionBlock(cfg, B, T, { params: (n) => params.get(n), grads: (n) => grads.get(n), acts: (n) => acts.get(n), rope });
      const r = rope;
      block.#owned = () => {
        for (const a of arenas) a.free();
        freeRope(r);
      };
      return block;
    } catch (e) {
      for (const a of arenas) a.free();
      if (rope) freeRope(rope);
      throw e;
    }
  }

  param(name: ParamName): Tensor {
    return this.#p[name];
  }
  /** The gradient of a parameter; throws for an inference-only block. */
  grad(name: ParamName): Tensor {
    if (!this.#g) throw new ShapeError(`AttentionBlock: this block was built without gradients (grads: null)`);
    return this.#g[name];
  }
  act(name: string): Tensor {
    const t = this.#a[name];
    if (!t) throw new ShapeError(`AttentionBlock: no activation named '${name}' (have ${Object.keys(this.#a).join(", ")})`);
    return t;
  }
  get rope(): RopeTables {
    return this.#rope;
  }

  /** out (B,T,C) = attention block of x (B,T,C). x must stay unchanged until backward. */
  forward(out: Tensor, x: Tensor): void {
    const op = "AttentionBlock.forward";
    const { B, T } = this;
    const { NH, NKV, HD } = this.dims;
    this.#io(op, "x", x, "out", out);
    if (out.buffer === x.buffer && out.byteOffset < x.byteOffset + x.bytes && x.byteOffset < out.byteOffset + out.bytes)
      throw new ShapeError(`${op}: 'out' ${fmtShape(out.shape)} overlaps 'x' ${fmtShape(x.shape)}; backward needs x intact`);
    const p = this.#p, a = this.#a, { cos, sin } = this.#rope, pb = this.#pb;
    const flatQ = [B, T, NH * HD], flatKV = [B, T, NKV * HD];
    if (pb) {
      // bf16: cast each matmul input once; the products come back in fp32
      const xb = a.x_bf16!, attb = a.att_bf16!;
      castF32ToBf16(xb, x);
      matmulForwardBf16(a.q!.view(flatQ), xb, pb["q_proj.weight"]);
      matmulForwardBf16(a.k!.view(flatKV), xb, pb["k_proj.weight"]);
      matmulForwardBf16(a.v!.view(flatKV), xb, pb["v_proj.weight"]);
      ropeForward(a.q!, a.q!, cos, sin);
      ropeForward(a.k!, a.k!, cos, sin);
      castF32ToBf16(a.q_bf16!, a.q!);
      castF32ToBf16(a.k_bf16!, a.k!);
      castF32ToBf16(a.v_bf16!, a.v!);
      attentionForwardBf16(attb.view([B, T, NH, HD]), a.lse!, a.q_bf16!, a.k_bf16!, a.v_bf16!);
      matmulForwardBf16(out, attb, pb["o_proj.weight"]);
    } else {
      matmulForward(a.q!.view(flatQ), x, p["q_proj.weight"]);
      matmulForward(a.k!.view(flatKV), x, p["k_proj.weight"]);
      matmulForward(a.v!.view(flatKV), x, p["v_proj.weight"]);
      ropeForward(a.q!, a.q!, cos, sin);
      ropeForward(a.k!, a.k!, cos, sin);
      attentionForward(a.att!, a.lse!, a.q!, a.k!, a.v!);
      matmulForward(out, a.att!.view(flatQ), p["o_proj.weight"]);
    }
    this.#x = x;
  }

  /** dx (B,T,C) += d(block)/dx^T dout; weight gradients accumulate into the grads tensors. */
  backward(dx: Tensor, dout: Tensor): void {
    const op = "AttentionBlock.backward";
    const g = this.#g;
    if (!g) throw new ShapeError(`${op}: this block was built without gradients (grads: null); pass grads to the constructor to train`);
    const x = this.#x;
    if (!x) throw new ShapeError(`${op}: call forward() before backward()`);
    if (!x.buffer.alive) throw new ShapeError(`${op}: the input of the last forward was freed`);
    this.#io(op, "dout", dout, "dx", dx);
    const { B, T } = this;
    const { NH, NKV, HD } = this.dims;
    const p = this.#p, a = this.#a, { cos, sin } = this.#rope;
    const be = dx.backend;
    const flatQ = [B, T, NH * HD], flatKV = [B, T, NKV * HD];
    const pb = this.#pb;
    // bf16: dy (fp32) -> bf16 in the shared scratch, then dinp (fp32) += dy W, dW (fp32) += dy^T x_bf16
    const linearBackward = (dinp: Tensor, dy: Tensor, xb: Tensor, name: ParamName): void =>
      matmulBackwardBf16FromF32({ dinp, dweight: g[name] }, dy, xb, pb![name], a.g_bf16!);
    // out = att Wo^T
    be.zero(a.datt!);
    if (pb) linearBackward(a.datt!.view(flatQ), dout, a.att_bf16!, "o_proj.weight");
    else matmulBackward({ dinp: a.datt!.view(flatQ), dweight: g["o_proj.weight"] }, dout, a.att!.view(flatQ), p["o_proj.weight"]);
    // att = attention(q, k, v)
    be.zero(a.dq!);
    be.zero(a.dk!);
    be.zero(a.dv!);
    if (pb) {
      const datt = a.g_bf16!.rows(0, a.datt!.numel).view(a.datt!.shape);
      castF32ToBf16(datt, a.datt!);
      attentionBackwardBf16({ dq: a.dq!, dk: a.dk!, dv: a.dv! }, datt, a.q_bf16!, a.k_bf16!, a.v_bf16!, a.att_bf16!.view([B, T, NH, HD]), a.lse!);
    } else attentionBackward({ dq: a.dq!, dk: a.dk!, dv: a.dv! }, a.datt!, a.q!, a.k!, a.v!, a.att!, a.lse!);
    // q, k = RoPE(q_pre, k_pre); datt is free again and becomes dq_pre
    const dqPre = a.datt!, dkPre = a.dk_pre!;
    be.zero(dqPre);
    be.zero(dkPre);
    ropeBackward(dqPre, a.dq!, cos, sin);
    ropeBackward(dkPre, a.dk!, cos, sin);
    // q_pre, k, v = x W^T
    if (pb) {
      const xb = a.x_bf16!;
      linearBackward(dx, dqPre.view(flatQ), xb, "q_proj.weight");
      linearBackward(dx, dkPre.view(flatKV), xb, "k_proj.weight");
      linearBackward(dx, a.dv!.view(flatKV), xb, "v_proj.weight");
      return;
    }
    matmulBackward({ dinp: dx, dweight: g["q_proj.weight"] }, dqPre.view(flatQ), x, p["q_proj.weight"]);
    matmulBackward({ dinp: dx, dweight: g["k_proj.weight"] }, dkPre.view(flatKV), x, p["k_proj.weight"]);
    matmulBackward({ dinp: dx, dweight: g["v_proj.weight"] }, a.dv!.view(flatKV), x, p["v_proj.weight"]);
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
    const want = [this.B, this.T, this.dims.C];
    for (const [n, t] of [[inName, inp], [outName, out]] as const) {
      if (!t || !sameShape(t.shape, want)) throw new ShapeError(`${op}: '${n}' must have shape (B, T, C) = ${fmtShape(want)}, got ${t ? fmtShape(t.shape) : t}`);
      if (t.dtype !== "f32") throw new ShapeError(`${op}: '${n}' must be f32, got ${t.dtype}`);
      if (!t.buffer.alive) throw new ShapeError(`${op}: '${n}' ${fmtShape(t.shape)} belongs to a freed buffer`);
    }
  }
}

function checkBT(op: string, cfg: AttentionConfig, B: number, T: number): void {
  if (!Number.isInteger(B) || B <= 0) throw new ShapeError(`${op}: batch size B must be a positive integer, got ${B}`);
  if (!Number.isInteger(T) || T <= 0) throw new ShapeError(`${op}: sequence length T must be a positive integer, got ${T}`);
  if (T > cfg.maxSeqLen) throw new ShapeError(`${op}: T=${T} exceeds config.maxSeqLen=${cfg.maxSeqLen} (the RoPE tables' length)`);
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Looks every spec up and checks its shape and dtype, so a wrong arena fails at construction. */
function resolve(op: string, what: string, lookup: TensorLookup, specs: TensorSpec[]): Record<string, Tensor> {
  if (typeof lookup !== "function") throw new ShapeError(`${op}: '${what}' must be a function (name) => Tensor`);
  const out: Record<string, Tensor> = {};
  for (const s of specs) {
    let t: Tensor | undefined;
    try {
      t = lookup(s.name);
    } catch (e) {
      throw new ShapeError(`${op}: ${what}('${s.name}') failed: ${(e as Error).message}`);
    }
    if (!t || !sameShape(t.shape, s.shape))
      throw new ShapeError(`${op}: ${what}('${s.name}') must have shape ${fmtShape(s.shape)}, got ${t ? fmtShape(t.shape) : String(t)}`);
    if (t.dtype !== (s.dtype ?? "f32")) throw new ShapeError(`${op}: ${what}('${s.name}') must be ${s.dtype ?? "f32"}, got ${t.dtype}`);
    out[s.name] = t;
  }
  return out;
}

/** Deterministic PRNG and normal samples for create()'s default initialisation. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normal(n: number, rng: () => number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(rng(), 1e-12), v = rng();
    out[i] = std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}
