/**
 * Where every tensor of a model lives: the parameter specs (Hugging Face names, HF order; the
 * gradient arena uses the same list, so offsets match and an optimizer can run over both flat
 * arenas), and the activation specs for a batch shape (B, T).
 */
import { AttentionBlock, ropeSpecs } from "@tinyllama/attention";
import { parameterShapes, type ModelConfig } from "@tinyllama/config";
import { DTYPE_BYTES, ShapeError, fmtShape, type DType, type Precision, type TensorSpec } from "@tinyllama/kernels";
import { MlpBlock } from "@tinyllama/mlp";

export const layerPrefix = (i: number): string => `model.layers.${i}.`;

/** Parameters in HF order: embed_tokens, per layer (input_layernorm, self_attn q/k/v/o, post_attention_layernorm, mlp gate/up/down), norm, lm_head. */
export function parameterSpecs(cfg: ModelConfig): TensorSpec[] {
  const { vocabSize: V, dim: C } = cfg;
  const specs: TensorSpec[] = [{ name: "model.embed_tokens.weight", shape: [V, C] }];
  for (let i = 0; i < cfg.nLayers; i++) {
    const p = layerPrefix(i);
    specs.push({ name: `${p}input_layernorm.weight`, shape: [C] });
    for (const s of AttentionBlock.parameterSpecs(cfg)) specs.push({ ...s, name: `${p}self_attn.${s.name}` });
    specs.push({ name: `${p}post_attention_layernorm.weight`, shape: [C] });
    for (const s of MlpBlock.parameterSpecs(cfg)) specs.push({ ...s, name: `${p}mlp.${s.name}` });
  }
  specs.push({ name: "model.norm.weight", shape: [C] }, { name: "lm_head.weight", shape: [V, C] });
  // The config package is the project's single statement of the HF layout: agree with it exactly.
  const want = parameterShapes(cfg);
  if (want.length !== specs.length || want.some((w, k) => w.name !== specs[k]!.name || fmtShape(w.shape) !== fmtShape(specs[k]!.shape)))
    throw new Error("model layout: parameter specs disagree with @tinyllama/config parameterShapes (a bug)");
  return specs;
}

export interface ActivationLayout {
  specs: TensorSpec[];
  /** rows of the logits buffer (B*T unless chunked) */
  logitsRows: number;
  /**
   * Tensors that live inside the spec "scratch.pool", by name: byte offset within the pool and shape.
   * Two groups share the pool from offset 0 because they are never live at the same time (see
   * activationSpecs).
   */
  pooled: Map<string, { byteOffset: number; shape: number[]; dtype: DType }>;
}

/** Bytes a tensor takes in an arena (64-byte aligned, as Arena.plan lays them out). */
const alignedBytes = (s: TensorSpec): number => Math.ceil((s.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[s.dtype ?? "f32"]) / 64) * 64;

/**
 * Activations for one (B, T): per layer the tensors backward needs (residual inputs, rstd, the
 * blocks' saved tensors), the final norm, losses, and one pool shared by two groups of buffers whose
 * lifetimes never overlap:
 *
 *  - layer buffers, used inside each layer's forward and each layer's backward: the block output
 *    "scratch.out", the normed block input "scratch.ln", the MLP's h, and (training) the residual
 *    gradient and the blocks' backward scratch;
 *  - LM-head buffers, used after the last layer's forward until the first thing backward does: the
 *    logits (or their chunk) and, when chunked, the staged LM-head weight gradient.
 *
 * backward() consumes the logits / staged gradient before it writes any layer buffer, and forward()
 * writes the logits only after the last layer, so one pool of the larger group's size holds both.
 * The normed inputs ln1/ln2 and the MLP's h are not kept per layer: backward recomputes them from
 * x/xmid, rstd and gate/up with the same kernels (bit-identical values), which costs two RMSNorms
 * and one SwiGLU per layer, well under 1% of a step, and saves two (B,T,C) and one (B,T,H) tensor
 * per layer.
 */
export function activationSpecs(cfg: ModelConfig, B: number, T: number, logitsRows: number, training: boolean, precision: Precision = "fp32"): ActivationLayout {
  const { vocabSize: V, dim: C } = cfg;
  const N = B * T;
  const specs: TensorSpec[] = [
    { name: "tokens", shape: [B, T], dtype: "i32" },
    { name: "targets", shape: [B, T], dtype: "i32" },
    ...ropeSpecs(cfg, "rope."),
  ];
  for (let i = 0; i < cfg.nLayers; i++) {
    const p = `layers.${i}.`;
    specs.push({ name: `${p}x`, shape: [B, T, C] }, { name: `${p}rstd1`, shape: [B, T] });
    for (const s of AttentionBlock.savedSpecs(cfg, B, T, precision)) specs.push({ ...s, name: `${p}self_attn.${s.name}` });
    specs.push({ name: `${p}xmid`, shape: [B, T, C] }, { name: `${p}rstd2`, shape: [B, T] });
    for (const s of MlpBlock.savedSpecs(cfg, B, T, precision)) specs.push({ ...s, name: `${p}mlp.${s.name}` });
  }
  specs.push(
    { name: "final.x", shape: [B, T, C] },
    { name: "final.ln", shape: [B, T, C] },
    { name: "final.rstd", shape: [B, T] },
    { name: "losses", shape: [N] },
  );
  // bf16: the LM head's input as bf16 (its weight gradient reads it too)
  if (precision === "bf16") specs.push({ name: "final.ln_bf16", shape: [N, C], dtype: "bf16" });
  // Written by a training forward (the chunked LM head's dlnf) and read by backward: not pooled.
  if (training) specs.push({ name: "scratch.dln", shape: [B, T, C] });

  const layerGroup: TensorSpec[] = [
    { name: "scratch.out", shape: [B, T, C] },
    { name: "scratch.ln", shape: [B, T, C] },
    ...MlpBlock.sharedSpecs(cfg, B, T).map((s) => ({ ...s, name: `scratch.mlp.${s.name}` })),
  ];
  // Backward scratch, one set shared by all layers; an inference model has none.
  if (training) {
    layerGroup.push({ name: "scratch.dres", shape: [B, T, C] });
    for (const s of AttentionBlock.scratchSpecs(cfg, B, T, precision)) layerGroup.push({ ...s, name: `scratch.self_attn.${s.name}` });
    for (const s of MlpBlock.scratchSpecs(cfg, B, T, precision)) layerGroup.push({ ...s, name: `scratch.mlp.${s.name}` });
  }
  const headGroup: TensorSpec[] = [{ name: "logits", shape: [logitsRows, V] }];
  // bf16: dlogits cast for the LM head's backward matmul, one logits chunk at a time
  if (training && precision === "bf16") headGroup.push({ name: "scratch.dlogits_bf16", shape: [logitsRows, V], dtype: "bf16" });
  // Chunked logits: the head's weight gradient is produced during forward, staged here until backward.
  if (training && logitsRows < N) headGroup.push({ name: "scratch.dlm_head", shape: [V, C] });

  const pooled = new Map<string, { byteOffset: number; shape: number[]; dtype: DType }>();
  let poolBytes = 0;
  for (const group of [layerGroup, headGroup]) {
    let at = 0;
    for (const s of group) {
      pooled.set(s.name, { byteOffset: at, shape: [...s.shape], dtype: s.dtype ?? "f32" });
      at += alignedBytes(s);
    }
    poolBytes = Math.max(poolBytes, at);
  }
  specs.push({ name: "scratch.pool", shape: [Math.ceil(poolBytes / 4)] });
  return { specs, logitsRows, pooled };
}

/**
 * Rows of a training model's logits chunk. A multiple of 256, the K block of the CPU matmul
 * (kernels/cpu/matmul.c TL_MM_KC), so the LM head's weight gradient, summed chunk by chunk, adds
 * the same partial sums in the same order as one call over all rows: chunked and unchunked training
 * are bit-for-bit identical (a test checks it). 512 rather than 256: at 256 rows the two threads'
 * matmuls re-pack the (V, C) head weight twice per chunk and the LM head took 5-10% longer;
 * at 512 it runs as fast as one call over all rows.
 */
export const LOGITS_CHUNK_ROWS = 512;
/** The same on CUDA (see defaultLogitsRows). */
export const LOGITS_CHUNK_ROWS_CUDA = 4096;

/**
 * Default logits rows. Training: all B*T rows while that buffer is at most 64 MiB, else chunks of
 * LOGITS_CHUNK_ROWS rows (62.5 MiB at V = 32000): the (B*T, V) logits and their gradient were the
 * largest activation (250 MiB for the 15M preset at B=8, T=256) and chunking them costs no time,
 * though logits() then needs a model created with logitsChunk >= B*T. Inference: all rows while
 * they stay under 1 GiB (logits() is the point), else 256 MiB worth.
 */
export function defaultLogitsRows(cfg: ModelConfig, B: number, T: number, training = true, device: "cpu" | "cuda" = "cpu"): number {
  const N = B * T, rowBytes = cfg.vocabSize * 4;
  // On a GPU memory is plentiful and a 512-row chunk makes the LM head's weight-gradient GEMM a
  // K = 512 product (a poor fit for tensor cores) 32 times per step at 8 x 2048: chunks of 4096
  // rows (500 MiB of fp32 logits at V = 32000) once the whole buffer passes 1 GiB.
  if (training && device === "cuda") return N * rowBytes <= 1 << 30 ? N : Math.min(N, LOGITS_CHUNK_ROWS_CUDA);
  if (training) return N * rowBytes <= 64 << 20 ? N : Math.min(N, LOGITS_CHUNK_ROWS);
  if (N * rowBytes <= 1 << 30) return N;
  return Math.max(1, Math.min(N, Math.floor((256 << 20) / rowBytes)));
}

export function checkBatchShape(cfg: ModelConfig, B: number, T: number): void {
  if (!Number.isInteger(B) || B <= 0) throw new ShapeError(`Model: batch size B must be a positive integer, got ${B}`);
  if (!Number.isInteger(T) || T <= 0) throw new ShapeError(`Model: sequence length T must be a positive integer, got ${T}`);
  if (T > cfg.maxSeqLen)
    throw new ShapeError(`Model: T=${T} exceeds the config's maxSeqLen=${cfg.maxSeqLen}; use T <= ${cfg.maxSeqLen} or a config with a longer context`);
  if (B * T * Math.max(cfg.dim, cfg.hiddenDim, cfg.vocabSize) > 0x7fffffff)
    throw new ShapeError(`Model: B*T=${B * T} rows are too many for the kernels' int32 sizes; lower B or T`);
}
