/**
 * Where every tensor of a model lives: the parameter specs (Hugging Face names, HF order; the
 * gradient arena uses the same list, so offsets match and an optimizer can run over both flat
 * arenas), and the activation specs for a batch shape (B, T).
 */
import { AttentionBlock, ropeSpecs } from "@tinyllama/attention";
import { parameterShapes, type ModelConfig } from "@tinyllama/config";
import { ShapeError, fmtShape, type Precision, type TensorSpec } from "@tinyllama/kernels";
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
}

/**
 * Activations for one (B, T): per layer the tensors backward needs (residual inputs, norm outputs
 * and rstd, the blocks' saved tensors), plus one set of scratch shared by all layers (block
 * outputs, residual/norm gradients, the blocks' backward scratch), the logits and per-row losses.
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
    specs.push({ name: `${p}x`, shape: [B, T, C] }, { name: `${p}ln1`, shape: [B, T, C] }, { name: `${p}rstd1`, shape: [B, T] });
    for (const s of AttentionBlock.savedSpecs(cfg, B, T, precision)) specs.push({ ...s, name: `${p}self_attn.${s.name}` });
    specs.push({ name: `${p}xmid`, shape: [B, T, C] }, { name: `${p}ln2`, shape: [B, T, C] }, { name: `${p}rstd2`, shape: [B, T] });
    for (const s of MlpBlock.savedSpecs(cfg, B, T, precision)) specs.push({ ...s, name: `${p}mlp.${s.name}` });
  }
  specs.push(
    { name: "final.x", shape: [B, T, C] },
    { name: "final.ln", shape: [B, T, C] },
    { name: "final.rstd", shape: [B, T] },
    { name: "logits", shape: [logitsRows, V] },
    { name: "losses", shape: [N] },
    { name: "scratch.out", shape: [B, T, C] },
  );
  // bf16: the LM head's input as bf16 (its weight gradient reads it too)
  if (precision === "bf16") specs.push({ name: "final.ln_bf16", shape: [N, C], dtype: "bf16" });
  // Backward scratch, one set shared by all layers; an inference model has none.
  if (training) {
    specs.push({ name: "scratch.dres", shape: [B, T, C] }, { name: "scratch.dln", shape: [B, T, C] });
    for (const s of AttentionBlock.scratchSpecs(cfg, B, T, precision)) specs.push({ ...s, name: `scratch.self_attn.${s.name}` });
    for (const s of MlpBlock.scratchSpecs(cfg, B, T, precision)) specs.push({ ...s, name: `scratch.mlp.${s.name}` });
    // bf16: dlogits cast for the LM head's backward matmul, one logits chunk at a time
    if (precision === "bf16") specs.push({ name: "scratch.dlogits_bf16", shape: [logitsRows, V], dtype: "bf16" });
    // Chunked logits: the head's weight gradient is produced during forward, staged here until backward.
    if (logitsRows < N) specs.push({ name: "scratch.dlm_head", shape: [V, C] });
  }
  return { specs, logitsRows };
}

/** Default logits rows: all B*T rows while that buffer stays under 1 GiB, else 256 MiB worth. */
export function defaultLogitsRows(cfg: ModelConfig, B: number, T: number): number {
  const N = B * T, rowBytes = cfg.vocabSize * 4;
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
