/**
 * The TinyLlama decoder (Hugging Face LlamaForCausalLM), training and inference:
 *
 *   x = embed_tokens[tokens]
 *   for each layer:  x = x + attn(rmsnorm(x));  x = x + mlp(rmsnorm(x))
 *   logits = rmsnorm(x) @ lm_head^T;  loss = mean cross-entropy over targets != -100
 *
 * Parameters, gradients and activations each live in ONE arena (llm.c's pattern), allocated by
 * create() for a fixed (B, T): a training step allocates nothing. Parameters and gradients share
 * one layout with Hugging Face names in HF order, so an optimizer can run over the flat arenas.
 *
 * Precision "bf16" (mixed precision, the default on CUDA): fp32 master weights, gradients and
 * optimizer state as in "fp32", plus a bf16 copy of the parameter arena (`paramsBf16`, the same
 * element offsets) that the Linear layers (q/k/v/o, gate/up/down, lm_head) read. Each matmul input
 * is cast to bf16 and multiplied with fp32 accumulation; its result, the input gradients and the
 * fp32 master weight gradients stay fp32. Embedding, RMSNorm, RoPE, attention, SwiGLU, residuals
 * and the loss run in fp32. AdamW refreshes the bf16 copy as it steps (tl_adamw_step_bf16).
 */
import { AttentionBlock, fillRope } from "@tinyllama/attention";
import { parseModelConfig, type ModelConfig } from "@tinyllama/config";
import {
  Arena,
  ShapeError,
  Tensor,
  accumulate,
  add,
  castF32ToBf16,
  checkPrecision,
  crossEntropy,
  defaultPrecision,
  embeddingBackward,
  embeddingForward,
  fmtShape,
  getBackend,
  matmulBackward,
  matmulBackwardBf16FromF32,
  matmulForward,
  matmulForwardBf16,
  rmsnormBackward,
  rmsnormForward,
  type Backend,
  type Precision,
  type TensorSpec,
} from "@tinyllama/kernels";
import { MlpBlock, deriveSeed, gaussian } from "@tinyllama/mlp";
import { activationSpecs, checkBatchShape, defaultLogitsRows, layerPrefix, parameterSpecs } from "./layout.ts";

/** Targets equal to this are not counted in the loss (PyTorch's default ignore_index). */
export const IGNORE_INDEX = -100;

export interface ModelOptions {
  /** Default: the process-wide backend (getBackend()). */
  backend?: Backend;
  /** Batch size and sequence length every forward() uses. */
  B: number;
  T: number;
  /** Seed of the initial weights (default 1). */
  seed?: number;
  /** false: no gradient arena, backward() throws. Default true. */
  training?: boolean;
  /** false: leave every parameter zero (e.g. to load a checkpoint next). Default true. */
  init?: boolean;
  /**
   * Rows of logits computed at a time. With fewer than B*T rows the loss, dlogits and the LM head's
   * backward run chunk by chunk inside forward(), and logits() is unavailable. Default
   * (defaultLogitsRows): a training model keeps all B*T rows while they take at most 64 MiB and
   * otherwise computes 512 rows at a time (bit-identical results, a fraction of the memory); an
   * inference model keeps all rows unless they exceed 1 GiB. Pass B*T to read logits() from a
   * large training model.
   */
  logitsChunk?: number;
  /**
   * "fp32", or "bf16" mixed precision (see the top of this file). Default: "bf16" on the CUDA
   * backend, "fp32" on the CPU.
   */
  precision?: Precision;
}

export interface NamedParameter {
  name: string;
  tensor: Tensor<"f32">;
}

type Tokens = Int32Array | Tensor;
type State = "none" | "logits" | "loss";

export class Model {
  readonly cfg: ModelConfig;
  readonly backend: Backend;
  readonly B: number;
  readonly T: number;
  readonly training: boolean;
  readonly precision: Precision;
  readonly #params: Arena;
  /**
   * bf16 copies of every parameter at the same element offsets as params (Arena.shadow); null in
   * fp32. Refreshed by AdamW's bf16 step and by syncBf16().
   */
  readonly paramsBf16: Arena | null;
  /** Gradients, same specs and offsets as params; null for an inference model. */
  readonly grads: Arena | null;
  /** Activations for (B, T). */
  readonly acts: Arena;
  readonly #parameters: readonly NamedParameter[];
  /** The bf16 copies may differ from the masters (someone got hold of the masters since the last sync). */
  #bf16Stale = true;
  readonly #attn: AttentionBlock[];
  readonly #mlp: MlpBlock[];
  readonly #logitsRows: number;
  /** Activation lookup: the arena's own tensors and the views into its shared pool (see activationSpecs). */
  readonly #a: { get(name: string): Tensor };
  #state: State = "none";
  #count = 0;
  #freed = false;

  private constructor(cfg: ModelConfig, backend: Backend, B: number, T: number, training: boolean, logitsRows: number, precision: Precision) {
    this.cfg = cfg;
    this.backend = backend;
    this.B = B;
    this.T = T;
    this.training = training;
    this.precision = precision;
    this.#logitsRows = logitsRows;
    const pspecs = parameterSpecs(cfg);
    const arenas: Arena[] = [];
    // Anything that throws below (a block rejecting its tensors) must not leak the arenas.
    try {
      this.#params = new Arena(backend, pspecs);
      arenas.push(this.#params);
      this.paramsBf16 = precision === "bf16" ? Arena.shadow(this.#params, "bf16") : null;
      if (this.paramsBf16) arenas.push(this.paramsBf16);
      this.grads = training ? new Arena(backend, pspecs) : null;
      if (this.grads) arenas.push(this.grads);
      const layout = activationSpecs(cfg, B, T, logitsRows, training, precision);
      const acts = new Arena(backend, layout.specs);
      this.acts = acts;
      arenas.push(acts);
      const poolAt = acts.offsets.get("scratch.pool")!;
      const pool = new Map([...layout.pooled].map(([n, { byteOffset, shape, dtype }]) => [n, new Tensor(acts.buffer, poolAt + byteOffset, shape, dtype)]));
      this.#a = { get: (n) => pool.get(n) ?? acts.get(n) };
      this.#parameters = pspecs.map((s) => ({ name: s.name, tensor: this.#params.get(s.name) as Tensor<"f32"> }));
      const rope = { cos: this.acts.get("rope.cos"), sin: this.acts.get("rope.sin") };
      fillRope(rope, cfg);
      const p = this.#params, pb = this.paramsBf16, g = this.grads, a = this.#a;
      const saved = new Set(AttentionBlock.savedSpecs(cfg, B, T, precision).map((s) => s.name));
      const msaved = new Set(MlpBlock.savedSpecs(cfg, B, T, precision).map((s) => s.name));
      this.#attn = [];
      this.#mlp = [];
      for (let i = 0; i < cfg.nLayers; i++) {
        const pre = layerPrefix(i);
        // Saved tensors are per layer; backward scratch names map to one set shared by all layers.
        this.#attn.push(
          new AttentionBlock(cfg, B, T, {
            params: (n) => p.get(`${pre}self_attn.${n}`),
            grads: g ? (n) => g.get(`${pre}self_attn.${n}`) : null,
            acts: (n) => a.get(saved.has(n) ? `layers.${i}.self_attn.${n}` : `scratch.self_attn.${n}`),
            rope,
            precision,
            paramsBf16: pb ? (n) => pb.get(`${pre}self_attn.${n}`) : null,
          }),
        );
        this.#mlp.push(
          new MlpBlock(cfg, B, T, {
            params: (n) => p.get(`${pre}mlp.${n}`),
            grads: g ? (n) => g.get(`${pre}mlp.${n}`) : null,
            acts: (n) => a.get(msaved.has(n) ? `layers.${i}.mlp.${n}` : `scratch.mlp.${n}`),
            precision,
            paramsBf16: pb ? (n) => pb.get(`${pre}mlp.${n}`) : null,
          }),
        );
      }
    } catch (e) {
      for (const a of arenas) a.free();
      throw e;
    }
  }

  /**
   * Bytes each arena of a model with these options would take, without allocating anything (to
   * choose B, T or logitsChunk before create()). Includes the arenas' 64-byte alignment padding.
   */
  /**
   * Bytes of each arena; `paramsBf16` is the bf16 weight copy (0 in fp32), and `acts` includes the
   * bf16 activations of bf16 precision. precision defaults as in create() when `backend` is given,
   * else to "fp32" (plan opens no backend).
   */
  static plan(
    config: ModelConfig,
    opts: Pick<ModelOptions, "B" | "T" | "training" | "logitsChunk" | "precision"> & { backend?: Backend },
  ): { params: number; paramsBf16: number; grads: number; acts: number; logitsRows: number; precision: Precision } {
    const cfg = parseModelConfig(config);
    checkBatchShape(cfg, opts.B, opts.T);
    const training = opts.training ?? true;
    const precision = checkPrecision("Model.plan", opts.precision ?? (opts.backend ? defaultPrecision(opts.backend.kind) : "fp32"));
    const N = opts.B * opts.T;
    const rows = Math.min(opts.logitsChunk ?? defaultLogitsRows(cfg, opts.B, opts.T, training, opts.backend?.kind ?? "cpu"), N);
    const params = Arena.plan(parameterSpecs(cfg)).bytes;
    const acts = Arena.plan(activationSpecs(cfg, opts.B, opts.T, rows, training, precision).specs).bytes;
    return { params, paramsBf16: precision === "bf16" ? params / 2 : 0, grads: training ? params : 0, acts, logitsRows: rows, precision };
  }

  /** A model for batches of shape (B, T), initialised as TinyLlama's training code does (seeded). */
  static create(config: ModelConfig, opts: ModelOptions): Model {
    const cfg = parseModelConfig(config);
    if (cfg.tieEmbeddings)
      throw new ShapeError("Model.create: tied embeddings (tieEmbeddings: true) are not implemented; TinyLlama unties embed_tokens and lm_head");
    if (!opts || typeof opts !== "object") throw new ShapeError("Model.create: options { B, T } are required");
    const { B, T } = opts;
    checkBatchShape(cfg, B, T);
    const N = B * T;
    const seed = opts.seed ?? 1;
    if (!Number.isInteger(seed)) throw new ShapeError(`Model.create: seed must be an integer, got ${seed}`);
    const backend = opts.backend ?? getBackend();
    const rows = opts.logitsChunk ?? defaultLogitsRows(cfg, B, T, opts.training ?? true, backend.kind);
    if (!Number.isInteger(rows) || rows <= 0) throw new ShapeError(`Model.create: logitsChunk must be a positive integer, got ${rows}`);
    const precision = checkPrecision("Model.create", opts.precision ?? defaultPrecision(backend.kind));
    const model = new Model(cfg, backend, B, T, opts.training ?? true, Math.min(rows, N), precision);
    if (opts.init ?? true) model.initialize(seed);
    return model;
  }

  /**
   * TinyLlama's initialisation: every weight matrix (embeddings and lm_head included) normal with
   * std sqrt(2/(5C)); o_proj and down_proj std 1/sqrt(C)/nLayers; RMSNorm gains 1. Each tensor
   * draws from its own stream derived from (seed, its index), so the result never depends on
   * the backend or on the order tensors are filled.
   */
  initialize(seed: number): void {
    this.#alive("initialize");
    const C = this.cfg.dim, L = this.cfg.nLayers;
    const std = Math.sqrt(2 / (5 * C)), stdOut = 1 / Math.sqrt(C) / L;
    this.#bf16Stale = true;
    this.#parameters.forEach(({ name, tensor }, k) => {
      if (name.endsWith("norm.weight")) {
        tensor.write(new Float32Array(tensor.numel).fill(1));
        return;
      }
      const s = name.endsWith("o_proj.weight") || name.endsWith("down_proj.weight") ? stdOut : std;
      // CPU: draw straight into the arena; elsewhere through a host array.
      if (this.backend.kind === "cpu") gaussian(tensor.numel, s, deriveSeed(seed, k), tensor.data());
      else tensor.write(gaussian(tensor.numel, s, deriveSeed(seed, k)));
    });
    this.syncBf16();
    this.#state = "none";
  }

  /**
   * All fp32 (master) parameters, HF names in HF order, 64-byte aligned. In bf16 precision, getting
   * them (here, through `parameters` or `param()`) marks the bf16 copies for a refresh at the next
   * forward, because the caller may write them (loading a checkpoint, copying weights).
   */
  get params(): Arena {
    this.#bf16Stale = true;
    return this.#params;
  }

  /** Every parameter by name (see `params` on bf16 copies). */
  get parameters(): readonly NamedParameter[] {
    this.#bf16Stale = true;
    return this.#parameters;
  }

  param(name: string): Tensor<"f32"> {
    this.#alive("param");
    if (!this.#params.has(name)) throw new ShapeError(`Model.param: no parameter '${name}' (names are Hugging Face's, e.g. 'model.layers.0.mlp.up_proj.weight')`);
    this.#bf16Stale = true;
    return this.#params.get(name) as Tensor<"f32">;
  }

  /**
   * bf16 precision: copies the fp32 masters into their bf16 copies now (forward does it by itself
   * when the masters may have changed; AdamW keeps them in step). A no-op in fp32.
   */
  syncBf16(): void {
    this.#alive("syncBf16");
    if (!this.paramsBf16) return;
    castF32ToBf16(this.paramsBf16.flat("bf16"), this.#params.flat("f32"));
    this.#bf16Stale = false;
  }

  grad(name: string): Tensor<"f32"> {
    this.#alive("grad");
    if (!this.grads) throw new ShapeError("Model.grad: this model was created with training: false and has no gradients");
    if (!this.grads.has(name)) throw new ShapeError(`Model.grad: no parameter '${name}'`);
    return this.grads.get(name) as Tensor<"f32">;
  }

  zeroGrad(): void {
    this.#alive("zeroGrad");
    if (!this.grads) throw new ShapeError("Model.zeroGrad: this model was created with training: false and has no gradients");
    this.grads.zero();
  }

  /**
   * Runs the model on tokens (B, T). With targets (B, T; -100 = ignore) returns the mean
   * cross-entropy over counted targets (0 when none counts) and, in a training model, leaves
   * everything backward() needs. Without targets computes the logits (see logits()) and returns NaN.
   */
  forward(tokens: Tokens, targets?: Tokens | null): number {
    const op = "Model.forward";
    this.#alive(op);
    const { B, T, cfg } = this;
    const N = B * T, V = cfg.vocabSize, C = cfg.dim;
    const chunked = this.#logitsRows < N;
    if (!targets && chunked)
      throw new ShapeError(
        `${op}: logits without targets need the whole (B*T, V) buffer, but this model computes ${this.#logitsRows} rows at a time (logitsChunk); create it with logitsChunk >= ${N}`,
      );
    // Validate everything before changing any state: a rejected call leaves the model as it was.
    const tok = this.#ids(op, "tokens", tokens, false);
    const tgt = targets ? this.#ids(op, "targets", targets, true) : null;
    this.#state = "none";
    if (this.paramsBf16 && this.#bf16Stale) this.syncBf16();
    const a = this.#a, p = this.#params, be = this.backend;
    const tokT = a.get("tokens");
    tokT.write(tok);
    const eps = cfg.normEps;

    embeddingForward(a.get(cfg.nLayers > 0 ? "layers.0.x" : "final.x"), tokT, p.get("model.embed_tokens.weight"));
    const out = a.get("scratch.out");
    // ln1 and ln2 share one buffer: backward recomputes them (see activationSpecs)
    const ln1 = a.get("scratch.ln"), ln2 = ln1;
    for (let i = 0; i < cfg.nLayers; i++) {
      const l = `layers.${i}.`, pre = layerPrefix(i);
      const x = a.get(`${l}x`), xmid = a.get(`${l}xmid`);
      const next = a.get(i + 1 < cfg.nLayers ? `layers.${i + 1}.x` : "final.x");
      rmsnormForward(ln1, a.get(`${l}rstd1`), x, p.get(`${pre}input_layernorm.weight`), eps);
      this.#attn[i]!.forward(out, ln1);
      add(xmid, x, out);
      rmsnormForward(ln2, a.get(`${l}rstd2`), xmid, p.get(`${pre}post_attention_layernorm.weight`), eps);
      this.#mlp[i]!.forward(out, ln2);
      add(next, xmid, out);
    }
    const lnf = a.get("final.ln");
    rmsnormForward(lnf, a.get("final.rstd"), a.get("final.x"), p.get("model.norm.weight"), eps);

    const W = p.get("lm_head.weight"), logits = a.get("logits"), lnf2 = lnf.view([N, C]);
    // bf16: the head reads the bf16 copy of lm_head and a bf16 cast of the final norm's output
    const Wb = this.paramsBf16 ? this.paramsBf16.get("lm_head.weight") : null;
    const lnfb = Wb ? a.get("final.ln_bf16") : null;
    if (lnfb) castF32ToBf16(lnfb, lnf2);
    const head = (out: Tensor, r0: number, rows: number) => {
      if (Wb && lnfb) matmulForwardBf16(out, lnfb.rows(r0, rows), Wb);
      else matmulForward(out, lnf2.rows(r0, rows), W);
    };
    if (!tgt) {
      head(logits, 0, N);
      this.#state = "logits";
      return Number.NaN;
    }
    const tgtT = a.get("targets");
    tgtT.write(tgt);
    let count = 0;
    for (let i = 0; i < N; i++) if (tgt[i] !== IGNORE_INDEX) count++;
    const gradScale = count > 0 ? 1 / count : 0;
    const withGrad = this.training;
    const losses = a.get("losses"), tgt1 = tgtT.view([N]);
    const stage = withGrad && chunked ? a.get("scratch.dlm_head") : null;
    const dlnf = stage ? a.get("scratch.dln").view([N, C]) : null;
    if (stage && dlnf) {
      be.zero(dlnf);
      be.zero(stage);
    }
    for (let r0 = 0; r0 < N; r0 += this.#logitsRows) {
      const rows = Math.min(this.#logitsRows, N - r0);
      const lg = logits.rows(0, rows);
      head(lg, r0, rows);
      // dlogits overwrite the logits in place: the (N, V) gradient never needs its own buffer
      crossEntropy(losses.rows(r0, rows), withGrad ? lg : null, lg, tgt1.rows(r0, rows), { ignoreIndex: IGNORE_INDEX, gradScale });
      if (stage && dlnf) this.#headBackward(dlnf.rows(r0, rows), stage, lg, r0, rows);
    }
    // Sum in float64 in row order: deterministic and free of fp32 drift over long batches.
    const l = be.kind === "cpu" ? losses.data() : losses.read();
    let sum = 0;
    for (let i = 0; i < N; i++) sum += l[i]!;
    this.#count = count;
    this.#state = withGrad ? "loss" : "none";
    if (!withGrad && !chunked) this.#state = "logits";
    return count > 0 ? sum / count : 0;
  }

  /** dlnf (rows, C) += dlogits @ W; dW += dlogits^T @ lnf[r0 : r0+rows], in this model's precision. */
  #headBackward(dlnf: Tensor, dW: Tensor, dlogits: Tensor, r0: number, rows: number): void {
    const a = this.#a, C = this.cfg.dim;
    if (this.paramsBf16) {
      const ln = a.get("final.ln_bf16").rows(r0, rows);
      matmulBackwardBf16FromF32({ dinp: dlnf, dweight: dW }, dlogits, ln, this.paramsBf16.get("lm_head.weight"), a.get("scratch.dlogits_bf16"));
    } else matmulBackward({ dinp: dlnf, dweight: dW }, dlogits, a.get("final.ln").view([this.B * this.T, C]).rows(r0, rows), this.#params.get("lm_head.weight"));
  }

  /** Number of targets counted by the last forward's loss. */
  get counted(): number {
    return this.#count;
  }

  /**
   * Accumulates into the gradients d(mean loss)/d(every parameter), from the last
   * forward(tokens, targets). Call zeroGrad() first unless accumulating on purpose.
   */
  backward(): void {
    const op = "Model.backward";
    this.#alive(op);
    const g = this.grads;
    if (!g) throw new ShapeError(`${op}: this model was created with training: false; create it with training: true to compute gradients`);
    if (this.#state !== "loss") throw new ShapeError(`${op}: call forward(tokens, targets) first: backward needs the loss of a forward pass with targets`);
    const { B, T, cfg } = this;
    const N = B * T, C = cfg.dim;
    const a = this.#a, p = this.#params, be = this.backend;
    const dres = a.get("scratch.dres"), dln = a.get("scratch.dln"), ln = a.get("scratch.ln");
    const eps = cfg.normEps;
    // LM head: dlogits sit in the logits buffer (or, chunked, forward already produced dlnf and a staged dW).
    // Both live in the pool under the layer buffers: consume them before writing anything else.
    if (this.#logitsRows < N) accumulate(g.get("lm_head.weight"), a.get("scratch.dlm_head"));
    else {
      be.zero(dln);
      this.#headBackward(dln.view([N, C]), g.get("lm_head.weight"), a.get("logits"), 0, N);
    }
    be.zero(dres);
    rmsnormBackward({ dinp: dres, dweight: g.get("model.norm.weight") }, dln, a.get("final.x"), p.get("model.norm.weight"), a.get("final.rstd"));
    for (let i = cfg.nLayers - 1; i >= 0; i--) {
      const l = `layers.${i}.`, pre = layerPrefix(i);
      // x_out = xmid + mlp(norm(xmid)): dres already carries the residual path; add the branch's.
      // The blocks' input (scratch.ln) holds the last layer's norm: recompute this layer's, exactly
      // as forward computed it (rstd is rewritten with the same values).
      const wpost = `${pre}post_attention_layernorm.weight`;
      rmsnormForward(ln, a.get(`${l}rstd2`), a.get(`${l}xmid`), p.get(wpost), eps);
      be.zero(dln);
      this.#mlp[i]!.backward(dln, dres);
      rmsnormBackward({ dinp: dres, dweight: g.get(wpost) }, dln, a.get(`${l}xmid`), p.get(wpost), a.get(`${l}rstd2`));
      // xmid = x + attn(norm(x))
      const win = `${pre}input_layernorm.weight`;
      rmsnormForward(ln, a.get(`${l}rstd1`), a.get(`${l}x`), p.get(win), eps);
      be.zero(dln);
      this.#attn[i]!.backward(dln, dres);
      rmsnormBackward({ dinp: dres, dweight: g.get(win) }, dln, a.get(`${l}x`), p.get(win), a.get(`${l}rstd1`));
    }
    embeddingBackward(g.get("model.embed_tokens.weight"), dres, a.get("tokens"));
  }

  /**
   * The logits (B, T, V) of the last forward: a view into the model's buffer, valid until the next
   * forward. Available after forward(tokens) and, for an inference model, forward(tokens, targets);
   * a training forward with targets overwrites them with their gradient.
   */
  logits(): Tensor<"f32"> {
    this.#alive("Model.logits");
    if (this.#state !== "logits")
      throw new ShapeError(
        "Model.logits: no logits to read: call forward(tokens) without targets first (a training forward with targets overwrites the logits with their gradient)",
      );
    return this.#a.get("logits").view([this.B, this.T, this.cfg.vocabSize]) as Tensor<"f32">;
  }

  /** Number of parameters (the real tensors, not the arena's alignment padding). */
  get numParameters(): number {
    return this.#parameters.reduce((n, p) => n + p.tensor.numel, 0);
  }

  free(): void {
    if (this.#freed) return;
    this.#freed = true;
    this.#params.free();
    this.paramsBf16?.free();
    this.grads?.free();
    this.acts.free();
  }
  [Symbol.dispose](): void {
    this.free();
  }

  #alive(op: string): void {
    if (this.#freed) throw new ShapeError(`${op}: this model was freed`);
  }

  /** Checks shape, dtype and range of a token / target batch; returns it as host int32. */
  #ids(op: string, what: string, x: Tokens, isTarget: boolean): Int32Array {
    const { B, T } = this;
    const V = this.cfg.vocabSize;
    let ids: Int32Array;
    if (x instanceof Int32Array) {
      if (x.length !== B * T)
        throw new ShapeError(`${op}: ${what} has ${x.length} ids but this model was created for B*T = ${B}*${T} = ${B * T}; create a model for your batch shape`);
      ids = x;
    } else if (x && typeof x === "object" && "shape" in x && "dtype" in x) {
      const t = x as Tensor;
      if (t.dtype !== "i32") throw new ShapeError(`${op}: ${what} must be an i32 tensor, got ${t.dtype} ${fmtShape(t.shape)}`);
      if (t.shape.length !== 2 || t.shape[0] !== B || t.shape[1] !== T)
        throw new ShapeError(`${op}: ${what} ${fmtShape(t.shape)} does not match the model's batch shape (B, T) = [${B}, ${T}]`);
      if (!t.buffer.alive) throw new ShapeError(`${op}: ${what} belongs to a freed buffer`);
      ids = t.read() as Int32Array;
    } else throw new ShapeError(`${op}: ${what} must be an Int32Array of B*T ids or an i32 Tensor (B, T)`);
    for (let i = 0; i < ids.length; i++) {
      const v = ids[i]!;
      if ((v < 0 || v >= V) && !(isTarget && v === IGNORE_INDEX))
        throw new ShapeError(
          `${op}: ${what}[${Math.floor(i / T)}, ${i % T}] = ${v} is outside the vocabulary [0, ${V})` +
            (isTarget ? ` and is not the ignore index ${IGNORE_INDEX}` : "") +
            "; check the tokenizer's vocabulary against config.vocabSize",
        );
    }
    return ids;
  }
}

export type { TensorSpec };
