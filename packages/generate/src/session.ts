/**
 * Generation with a KV cache, llama2.c's loop over our kernels:
 *
 *   prefill(prompt)   the batched kernels over the whole prompt (matmul, rope, causal attention),
 *                     writing every layer's K (after RoPE) and V into the cache at positions 0..T-1
 *   step(token)       one token per sequence: matrix-vector matmuls (the N == B rows path), rope
 *                     at position pos, attention_decode of the new query over cache 0..pos
 *
 * The cache is preallocated once per session: per layer K and V of shape (B, maxT, NKV, HD), in one
 * arena with the RoPE tables and the decode scratch; prefill takes a scratch arena sized for its
 * prompt and frees it on return. The session reads the Model's parameter arena and owns nothing
 * of the model. Only backend ops are called, so the same code runs on every backend.
 */
import { fillRope } from "@tinyllama/attention";
import type { ModelConfig } from "@tinyllama/config";
import {
  Arena,
  ShapeError,
  add,
  attentionDecode,
  attentionForward,
  crossEntropy,
  embeddingForward,
  matmulForward,
  matmulForwardWbf16,
  rmsnormForward,
  ropeForward,
  swigluForward,
  type Backend,
  type Tensor,
  type TensorSpec,
} from "@tinyllama/kernels";
import type { DecoderWeights } from "./weights.ts";

export interface SessionOptions {
  /** Sequences decoded together (all advance one token per step). Default 1. */
  B?: number;
  /** Cache length: the longest prompt + generation. Default the model's context (maxSeqLen). */
  maxT?: number;
  /**
   * After one shape-checked step, replay decode steps as raw kernel calls over pointers resolved
   * once (bit-identical, ~25% faster on small models). Default true; false keeps every step on the
   * checked wrappers.
   */
  compiled?: boolean;
}

interface LayerWeights {
  ln1: Tensor;
  wq: Tensor;
  wk: Tensor;
  wv: Tensor;
  wo: Tensor;
  ln2: Tensor;
  wg: Tensor;
  wu: Tensor;
  wd: Tensor;
  kc: Tensor;
  vc: Tensor;
}

/** Sum and count of next-token losses, as `loss()` returns them. */
export interface LossSum {
  sum: number;
  count: number;
}

export class InferenceSession {
  /** The weights: a Model (f32) or InferenceWeights (bf16 Linear layers). */
  readonly model: DecoderWeights;
  readonly cfg: ModelConfig;
  readonly backend: Backend;
  readonly B: number;
  readonly maxT: number;
  /** Rope tables, per-layer K/V caches and decode scratch. */
  readonly arena: Arena;
  readonly #layers: LayerWeights[];
  readonly #embed: Tensor;
  readonly #normf: Tensor;
  readonly #head: Tensor;
  readonly #cos: Tensor;
  readonly #sin: Tensor;
  #pos = 0;
  #freed = false;
  /** The validated decode step (see #compilePlan), built by the first step(). */
  #plan: ((pos: number) => void) | null = null;

  readonly #compiled: boolean;

  private constructor(model: DecoderWeights, B: number, maxT: number, compiled: boolean) {
    this.#compiled = compiled;
    const cfg = model.cfg;
    this.model = model;
    this.cfg = cfg;
    this.backend = model.backend;
    this.B = B;
    this.maxT = maxT;
    const { C, NH, NKV, HD, H, V } = dimsOf(cfg);
    const specs: TensorSpec[] = [
      { name: "rope.cos", shape: [maxT, HD / 2] },
      { name: "rope.sin", shape: [maxT, HD / 2] },
    ];
    for (let i = 0; i < cfg.nLayers; i++)
      specs.push({ name: `cache.${i}.k`, shape: [B, maxT, NKV, HD] }, { name: `cache.${i}.v`, shape: [B, maxT, NKV, HD] });
    specs.push(
      { name: "tokens", shape: [B, 1], dtype: "i32" },
      { name: "x", shape: [B, C] },
      { name: "ln", shape: [B, C] },
      { name: "rstd", shape: [B] },
      { name: "q", shape: [B, NH * HD] },
      { name: "k", shape: [B, NKV * HD] },
      { name: "v", shape: [B, NKV * HD] },
      { name: "att", shape: [B, NH * HD] },
      { name: "out", shape: [B, C] },
      { name: "gate", shape: [B, H] },
      { name: "up", shape: [B, H] },
      { name: "h", shape: [B, H] },
      { name: "logits", shape: [B, V] },
    );
    this.arena = new Arena(this.backend, specs);
    try {
      this.#cos = this.arena.get("rope.cos");
      this.#sin = this.arena.get("rope.sin");
      fillRope({ cos: this.#cos, sin: this.#sin }, { ...cfg, maxSeqLen: maxT });
      const p = (n: string): Tensor => model.param(n);
      this.#layers = [];
      for (let i = 0; i < cfg.nLayers; i++) {
        const l = `model.layers.${i}.`;
        this.#layers.push({
          ln1: p(`${l}input_layernorm.weight`),
          wq: p(`${l}self_attn.q_proj.weight`),
          wk: p(`${l}self_attn.k_proj.weight`),
          wv: p(`${l}self_attn.v_proj.weight`),
          wo: p(`${l}self_attn.o_proj.weight`),
          ln2: p(`${l}post_attention_layernorm.weight`),
          wg: p(`${l}mlp.gate_proj.weight`),
          wu: p(`${l}mlp.up_proj.weight`),
          wd: p(`${l}mlp.down_proj.weight`),
          kc: this.arena.get(`cache.${i}.k`),
          vc: this.arena.get(`cache.${i}.v`),
        });
      }
      this.#embed = p("model.embed_tokens.weight");
      this.#normf = p("model.norm.weight");
      this.#head = p("lm_head.weight");
    } catch (e) {
      this.arena.free();
      throw e;
    }
  }

  /**
   * A session over `model`'s parameters (which must stay alive and unchanged while it is used): an
   * fp32 Model, or InferenceWeights whose bf16 Linear layers run through matmulForwardWbf16.
   */
  static create(model: DecoderWeights, opts: SessionOptions = {}): InferenceSession {
    const B = opts.B ?? 1;
    const maxT = opts.maxT ?? model.cfg.maxSeqLen;
    if (!Number.isInteger(B) || B <= 0) throw new ShapeError(`InferenceSession: B must be a positive integer, got ${B}`);
    if (!Number.isInteger(maxT) || maxT <= 0 || maxT > model.cfg.maxSeqLen)
      throw new ShapeError(`InferenceSession: maxT must be an integer in [1, ${model.cfg.maxSeqLen}] (the model's context), got ${maxT}`);
    return new InferenceSession(model, B, maxT, opts.compiled ?? true);
  }

  /** Tokens already in the cache (the position of the next token). */
  get pos(): number {
    return this.#pos;
  }

  /** Forgets the cached tokens (the cache is overwritten by the next prefill). */
  reset(): void {
    this.#pos = 0;
  }

  /**
   * Runs the prompt through the model from position 0 (resetting the session) and returns the
   * logits (B, V) of its last position: a view valid until the next call. tokens: B*T ids, row-major.
   */
  prefill(tokens: ArrayLike<number>): Tensor<"f32"> {
    const op = "InferenceSession.prefill";
    this.#alive(op);
    const T = this.#rows(op, tokens);
    this.#pos = 0;
    const s = this.#prefillScratch(T, 0);
    try {
      this.#forwardPrompt(s, tokens, T);
      // The last position of each sequence goes through the final norm and the head.
      const x = s.get("x").view([this.B * T, this.cfg.dim]), last = this.arena.get("x");
      for (let b = 0; b < this.B; b++) this.backend.copy(last.rows(b, 1), x.rows(b * T + T - 1, 1));
    } finally {
      s.free();
    }
    this.#pos = T;
    return this.#head1();
  }

  /** Appends one token per sequence (tokens: B ids) and returns the next logits (B, V). */
  step(tokens: ArrayLike<number>): Tensor<"f32"> {
    const op = "InferenceSession.step";
    this.#alive(op);
    if (!tokens || tokens.length !== this.B) throw new ShapeError(`${op}: expected ${this.B} token ids (one per sequence), got ${tokens?.length}`);
    const pos = this.#pos;
    if (pos >= this.maxT)
      throw new ShapeError(`${op}: the cache is full (${this.maxT} tokens); start a new prefill or create the session with a larger maxT`);
    if (!this.model.params.buffer.alive) throw new ShapeError(`${op}: the model was freed; a session needs its model alive`);
    const tok = this.arena.get("tokens");
    tok.write(this.#ids(op, tokens));
    if (this.#plan) {
      this.#plan(pos);
      this.#pos = pos + 1;
      return this.#head1();
    }
    const { cfg, B, backend: be } = this;
    const { C, NH, NKV, HD } = dimsOf(cfg);
    const a = this.arena, eps = cfg.normEps, ks = NKV * HD;
    const x = a.get("x"), ln = a.get("ln"), rstd = a.get("rstd"), q = a.get("q"), k = a.get("k"), v = a.get("v");
    const att = a.get("att"), out = a.get("out"), gate = a.get("gate"), up = a.get("up"), h = a.get("h");
    embeddingForward(x.view([B, 1, C]), tok, this.#embed);
    for (const L of this.#layers) {
      rmsnormForward(ln, rstd, x, L.ln1, eps);
      linear(q, ln, L.wq);
      // B == 1: K and V go straight into their cache row; otherwise through scratch, one copy per sequence.
      const kdst = B === 1 ? L.kc.view([this.maxT, ks]).rows(pos, 1) : k;
      const vdst = B === 1 ? L.vc.view([this.maxT, ks]).rows(pos, 1) : v;
      linear(kdst, ln, L.wk);
      linear(vdst, ln, L.wv);
      ropeForward(q.view([B, 1, NH, HD]), q.view([B, 1, NH, HD]), this.#cos, this.#sin, pos);
      ropeForward(kdst.view([B, 1, NKV, HD]), kdst.view([B, 1, NKV, HD]), this.#cos, this.#sin, pos);
      if (B > 1) {
        const kc = L.kc.view([B * this.maxT, ks]), vc = L.vc.view([B * this.maxT, ks]);
        for (let b = 0; b < B; b++) {
          be.copy(kc.rows(b * this.maxT + pos, 1), k.rows(b, 1));
          be.copy(vc.rows(b * this.maxT + pos, 1), v.rows(b, 1));
        }
      }
      attentionDecode(att.view([B, NH, HD]), q.view([B, NH, HD]), L.kc, L.vc, pos);
      linear(out, att, L.wo);
      add(x, x, out);
      rmsnormForward(ln, rstd, x, L.ln2, eps);
      linear(gate, ln, L.wg);
      linear(up, ln, L.wu);
      swigluForward(h, gate, up);
      linear(out, h, L.wd);
      add(x, x, out);
    }
    // Every shape of a decode step is now checked by the wrappers above; later steps replay the same
    // kernel calls with the pointers resolved once (only pos changes).
    if (this.#compiled) this.#plan = this.#compilePlan();
    this.#pos = pos + 1;
    return this.#head1();
  }

  /**
   * The decode step as raw kernel calls over fixed pointers (the shape-checked wrappers cost ~5 us
   * each, a quarter of a 15M-parameter model's step). Built after one step ran through the
   * wrappers, so every size and buffer here has been validated; each return code is still checked.
   * Same calls, same order as step()'s checked path, so results are bit-identical.
   */
  #compilePlan(): ((pos: number) => void) | null {
    const { cfg, B, maxT, backend: be } = this;
    const { C, NH, NKV, HD, H, V } = dimsOf(cfg);
    const a = this.arena, eps = cfg.normEps, ks = NKV * HD;
    const P = (t: Tensor): number => t.ptr("InferenceSession.step") as unknown as number;
    const x = P(a.get("x")), ln = P(a.get("ln")), rstd = P(a.get("rstd")), q = P(a.get("q")), k = P(a.get("k")), v = P(a.get("v"));
    const att = P(a.get("att")), out = P(a.get("out")), gate = P(a.get("gate")), up = P(a.get("up")), h = P(a.get("h")), tok = P(a.get("tokens"));
    const cos = P(this.#cos), sin = P(this.#sin), embed = P(this.#embed);
    const layers = this.#layers.map((L) => ({
      ln1: P(L.ln1), wq: P(L.wq), wk: P(L.wk), wv: P(L.wv), wo: P(L.wo), ln2: P(L.ln2), wg: P(L.wg), wu: P(L.wu), wd: P(L.wd), kc: P(L.kc), vc: P(L.vc),
    }));
    // One storage for every Linear weight of a session's model (f32 Model or bf16 InferenceWeights).
    const bf16 = this.#layers[0]?.wq.dtype === "bf16";
    // Mixed storage (a hand-made DecoderWeights) stays on the checked path, which dispatches per weight.
    if (this.#layers.some((L) => [L.wq, L.wk, L.wv, L.wo, L.wg, L.wu, L.wd].some((w) => (w.dtype === "bf16") !== bf16))) return null;
    const rowBytes = ks * 4, seqBytes = maxT * rowBytes;
    const ck = (op: string, rc: number): void => {
      if (rc !== 0) be.check(op, rc);
    };
    type Ptr = Parameters<typeof lib.tl_add>[0];
    const p = (n: number): Ptr => n as unknown as Ptr;
    void V;
    let lib = be.lib;
    // out (B,OC) = inp (B,IC) @ w^T for either storage (the checks above fixed which).
    const mm = bf16
      ? (out: number, inp: number, w: number, IC: number, OC: number): void => ck("matmul_forward_wbf16", lib.tl_matmul_forward_wbf16(p(out), p(inp), p(w), B, IC, OC))
      : (out: number, inp: number, w: number, IC: number, OC: number): void => ck("matmul_forward", lib.tl_matmul_forward(p(out), p(inp), p(w), null, B, IC, OC));
    return (pos: number): void => {
      lib = be.lib; // read per step, so a profiler started after the plan was built sees these calls
      ck("embedding_forward", lib.tl_embedding_forward(p(x), p(tok), p(embed), B, C, cfg.vocabSize));
      for (const L of layers) {
        ck("rmsnorm_forward", lib.tl_rmsnorm_forward(p(ln), p(rstd), p(x), p(L.ln1), B, C, eps));
        mm(q, ln, L.wq, C, NH * HD);
        const kdst = B === 1 ? L.kc + pos * rowBytes : k, vdst = B === 1 ? L.vc + pos * rowBytes : v;
        mm(kdst, ln, L.wk, C, ks);
        mm(vdst, ln, L.wv, C, ks);
        ck("rope_forward", lib.tl_rope_forward(p(q), p(q), p(cos), p(sin), B, 1, NH, HD, pos, maxT));
        ck("rope_forward", lib.tl_rope_forward(p(kdst), p(kdst), p(cos), p(sin), B, 1, NKV, HD, pos, maxT));
        if (B > 1)
          for (let b = 0; b < B; b++) {
            ck("copy", lib.tl_copy(p(L.kc + b * seqBytes + pos * rowBytes), p(k + b * rowBytes), rowBytes));
            ck("copy", lib.tl_copy(p(L.vc + b * seqBytes + pos * rowBytes), p(v + b * rowBytes), rowBytes));
          }
        ck("attention_decode", lib.tl_attention_decode(p(att), p(q), p(L.kc), p(L.vc), B, NH, NKV, HD, maxT, pos));
        mm(out, att, L.wo, NH * HD, C);
        ck("add", lib.tl_add(p(x), p(x), p(out), B * C));
        ck("rmsnorm_forward", lib.tl_rmsnorm_forward(p(ln), p(rstd), p(x), p(L.ln2), B, C, eps));
        mm(gate, ln, L.wg, C, H);
        mm(up, ln, L.wu, C, H);
        ck("swiglu_forward", lib.tl_swiglu_forward(p(h), p(gate), p(up), B * H));
        mm(out, h, L.wd, H, C);
        ck("add", lib.tl_add(p(x), p(x), p(out), B * C));
      }
    };
  }

  /**
   * Appends several tokens per sequence (tokens: B*T ids): a prefill from an empty cache, else
   * one step per token. Returns the logits (B, V) after the last one.
   */
  append(tokens: ArrayLike<number>): Tensor<"f32"> {
    const op = "InferenceSession.append";
    this.#alive(op);
    const T = this.#rows(op, tokens);
    if (this.#pos === 0) return this.prefill(tokens);
    if (this.#pos + T > this.maxT) throw new ShapeError(`${op}: ${this.#pos} cached + ${T} new tokens exceed the cache length ${this.maxT}`);
    let logits: Tensor<"f32"> | null = null;
    const col = new Int32Array(this.B);
    for (let t = 0; t < T; t++) {
      for (let b = 0; b < this.B; b++) col[b] = tokens[b * T + t]!;
      logits = this.step(col);
    }
    return logits!;
  }

  /**
   * Next-token cross-entropy of B sequences from position 0 (resets the session): returns the sum
   * over the B*T rows (float64, in row order) and their count. tokens, targets: B*T ids each.
   * The LM head runs `chunkRows` rows at a time, so the (B*T, V) logits never exist at once.
   */
  loss(tokens: ArrayLike<number>, targets: ArrayLike<number>, chunkRows = 256): LossSum {
    const op = "InferenceSession.loss";
    this.#alive(op);
    const T = this.#rows(op, tokens);
    if (!targets || targets.length !== tokens.length) throw new ShapeError(`${op}: targets must hold ${tokens.length} ids like tokens, got ${targets?.length}`);
    const tgt = this.#ids(op, targets);
    if (!Number.isInteger(chunkRows) || chunkRows <= 0) throw new ShapeError(`${op}: chunkRows must be a positive integer, got ${chunkRows}`);
    const N = this.B * T, rows = Math.min(chunkRows, N), V = this.cfg.vocabSize, C = this.cfg.dim;
    this.#pos = 0;
    const s = this.#prefillScratch(T, rows);
    let sum = 0;
    try {
      this.#forwardPrompt(s, tokens, T);
      const x = s.get("x").view([N, C]), ln = s.get("ln").view([N, C]);
      rmsnormForward(ln, s.get("rstd"), x, this.#normf, this.cfg.normEps);
      const logits = s.get("logits"), losses = s.get("losses"), tg = s.get("targets");
      tg.write(tgt);
      for (let r0 = 0; r0 < N; r0 += rows) {
        const n = Math.min(rows, N - r0);
        const lg = logits.rows(0, n);
        linear(lg, ln.rows(r0, n), this.#head);
        crossEntropy(losses.rows(r0, n), null, lg, tg.rows(r0, n));
      }
      const l = this.backend.kind === "cpu" ? losses.data() : losses.read();
      for (let i = 0; i < N; i++) sum += l[i]!;
    } finally {
      s.free();
    }
    this.#pos = T;
    return { sum, count: N };
  }

  free(): void {
    if (this.#freed) return;
    this.#freed = true;
    this.arena.free();
  }
  [Symbol.dispose](): void {
    this.free();
  }

  /** Scratch for a prompt of T tokens per sequence (and `logitRows` rows of logits for loss()). */
  #prefillScratch(T: number, logitRows: number): Arena {
    const { B, cfg } = this;
    const { C, NH, NKV, HD, H, V } = dimsOf(cfg);
    const specs: TensorSpec[] = [
      { name: "tokens", shape: [B, T], dtype: "i32" },
      { name: "x", shape: [B, T, C] },
      { name: "ln", shape: [B, T, C] },
      { name: "rstd", shape: [B * T] },
      { name: "q", shape: [B, T, NH, HD] },
      { name: "att", shape: [B, T, NH, HD] },
      { name: "lse", shape: [B, NH, T] },
      { name: "out", shape: [B, T, C] },
      { name: "gate", shape: [B, T, H] },
      { name: "up", shape: [B, T, H] },
      { name: "h", shape: [B, T, H] },
    ];
    if (B > 1) specs.push({ name: "k", shape: [B, T, NKV, HD] }, { name: "v", shape: [B, T, NKV, HD] });
    if (logitRows > 0)
      specs.push({ name: "logits", shape: [logitRows, V] }, { name: "losses", shape: [B * T] }, { name: "targets", shape: [B * T], dtype: "i32" });
    return new Arena(this.backend, specs);
  }

  /** All layers over a prompt (B,T) from position 0; the residual stream ends in s.x. */
  #forwardPrompt(s: Arena, tokens: ArrayLike<number>, T: number): void {
    const { B, cfg, backend: be, maxT } = this;
    const { C, NH, NKV, HD } = dimsOf(cfg);
    const eps = cfg.normEps, ks = NKV * HD, N = B * T;
    const tok = s.get("tokens");
    tok.write(this.#ids("InferenceSession.prefill", tokens));
    const x = s.get("x"), ln = s.get("ln"), rstd = s.get("rstd"), q = s.get("q"), att = s.get("att"), lse = s.get("lse");
    const out = s.get("out"), gate = s.get("gate"), up = s.get("up"), h = s.get("h");
    embeddingForward(x, tok, this.#embed);
    for (const L of this.#layers) {
      rmsnormForward(ln, rstd, x, L.ln1, eps);
      // B == 1: the cache rows 0..T-1 are contiguous, so K and V are computed in place there.
      const k = B === 1 ? L.kc.view([maxT, ks]).rows(0, T).view([1, T, NKV, HD]) : s.get("k");
      const v = B === 1 ? L.vc.view([maxT, ks]).rows(0, T).view([1, T, NKV, HD]) : s.get("v");
      linear(q.view([B, T, NH * HD]), ln, L.wq);
      linear(k.view([B, T, ks]), ln, L.wk);
      linear(v.view([B, T, ks]), ln, L.wv);
      ropeForward(q, q, this.#cos, this.#sin, 0);
      ropeForward(k, k, this.#cos, this.#sin, 0);
      attentionForward(att, lse, q, k, v);
      if (B > 1) {
        const kc = L.kc.view([B * maxT, ks]), vc = L.vc.view([B * maxT, ks]);
        const kf = k.view([N, ks]), vf = v.view([N, ks]);
        for (let b = 0; b < B; b++) {
          be.copy(kc.rows(b * maxT, T), kf.rows(b * T, T));
          be.copy(vc.rows(b * maxT, T), vf.rows(b * T, T));
        }
      }
      linear(out, att.view([B, T, NH * HD]), L.wo);
      add(x, x, out);
      rmsnormForward(ln, rstd, x, L.ln2, eps);
      linear(gate, ln, L.wg);
      linear(up, ln, L.wu);
      swigluForward(h, gate, up);
      linear(out, h, L.wd);
      add(x, x, out);
    }
    void C;
  }

  /** Final norm and LM head over the decode residual (B, C) -> logits (B, V). */
  #head1(): Tensor<"f32"> {
    const a = this.arena;
    const ln = a.get("ln"), logits = a.get("logits") as Tensor<"f32">;
    rmsnormForward(ln, a.get("rstd"), a.get("x"), this.#normf, this.cfg.normEps);
    linear(logits, ln, this.#head);
    return logits;
  }

  /** T from B*T ids, checked against the cache. */
  #rows(op: string, tokens: ArrayLike<number>): number {
    const n = tokens?.length;
    if (!Number.isInteger(n) || n === 0 || n % this.B !== 0)
      throw new ShapeError(`${op}: expected B*T token ids with B=${this.B} and T >= 1, got ${n ?? typeof tokens}`);
    const T = n / this.B;
    if (T > this.maxT)
      throw new ShapeError(`${op}: ${T} tokens per sequence exceed the cache length maxT=${this.maxT} (the model's context is ${this.cfg.maxSeqLen}); shorten the prompt`);
    return T;
  }

  #ids(op: string, ids: ArrayLike<number>): Int32Array {
    const V = this.cfg.vocabSize;
    const out = ids instanceof Int32Array ? ids : Int32Array.from(ids as ArrayLike<number>);
    for (let i = 0; i < out.length; i++) {
      const t = ids[i]!;
      if (!Number.isInteger(t) || t < 0 || t >= V) throw new ShapeError(`${op}: token id ${t} at index ${i} is outside the vocabulary [0, ${V})`);
    }
    return out;
  }

  #alive(op: string): void {
    if (this.#freed) throw new ShapeError(`${op}: this session was freed`);
  }
}

/** The Linear layer for either weight storage: f32 weights through matmulForward, bf16 through matmulForwardWbf16. */
function linear(out: Tensor, inp: Tensor, weight: Tensor): void {
  if (weight.dtype === "bf16") matmulForwardWbf16(out, inp, weight);
  else matmulForward(out, inp, weight);
}

function dimsOf(cfg: ModelConfig): { C: number; NH: number; NKV: number; HD: number; H: number; V: number } {
  return { C: cfg.dim, NH: cfg.nHeads, NKV: cfg.nKvHeads, HD: cfg.dim / cfg.nHeads, H: cfg.hiddenDim, V: cfg.vocabSize };
}
