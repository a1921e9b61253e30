import { headDim, type ModelConfig } from './model.ts';

/** One weight tensor: its Hugging Face name and its shape, row-major, as stored in safetensors. */
export interface ParameterShape {
  readonly name: string;
  readonly shape: readonly number[];
}

/**
 * Every weight tensor, with Hugging Face LlamaForCausalLM names, in HF module order. Linear weights are
 * (out, in) as in torch.nn.Linear. lm_head.weight is absent when tieEmbeddings (HF does not save it then).
 */
export function parameterShapes(cfg: ModelConfig): ParameterShape[] {
  const { vocabSize: V, dim: C, hiddenDim: H, nHeads: NH, nKvHeads: NKV } = cfg;
  const HD = headDim(cfg);
  const out: ParameterShape[] = [{ name: 'model.embed_tokens.weight', shape: [V, C] }];
  for (let i = 0; i < cfg.nLayers; i++) {
    const p = `model.layers.${i}`;
    out.push(
      { name: `${p}.input_layernorm.weight`, shape: [C] },
      { name: `${p}.self_attn.q_proj.weight`, shape: [NH * HD, C] },
      { name: `${p}.self_attn.k_proj.weight`, shape: [NKV * HD, C] },
      { name: `${p}.self_attn.v_proj.weight`, shape: [NKV * HD, C] },
      { name: `${p}.self_attn.o_proj.weight`, shape: [C, NH * HD] },
      { name: `${p}.post_attention_layernorm.weight`, shape: [C] },
      { name: `${p}.mlp.gate_proj.weight`, shape: [H, C] },
      { name: `${p}.mlp.up_proj.weight`, shape: [H, C] },
      { name: `${p}.mlp.down_proj.weight`, shape: [C, H] },
    );
  }
  out.push({ name: 'model.norm.weight', shape: [C] });
  if (!cfg.tieEmbeddings) out.push({ name: 'lm_head.weight', shape: [V, C] });
  return out;
}

const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** Total number of parameters (1,100,048,384 for tinyllama-1.1b). Tied embeddings are counted once. */
export function parameterCount(cfg: ModelConfig): number {
  return parameterShapes(cfg).reduce((n, p) => n + numel(p.shape), 0);
}

/**
 * Parameters that take part in a matrix multiply: every Linear in the blocks plus the LM head (V·C; when tied
 * it is the embedding matrix, used once as a matmul). The input embedding is a table lookup and RMSNorm
 * weights are elementwise, so neither costs matmul FLOPs. This is the N in the 6N rule below.
 */
export function matmulParameterCount(cfg: ModelConfig): number {
  const { vocabSize: V, dim: C, hiddenDim: H, nHeads: NH, nKvHeads: NKV, nLayers: L } = cfg;
  const HD = headDim(cfg);
  const perLayer = C * NH * HD * 2 + C * NKV * HD * 2 + 3 * C * H;
  return L * perLayer + V * C;
}

export interface FlopsOptions {
  /** Include the attention score/value matmuls (12·L·NH·HD·T). Default true. */
  readonly attention?: boolean;
}

/**
 * Training FLOPs per token (forward + backward) at sequence length T, the PaLM convention
 * (Chowdhery et al. 2022, appendix B) used for MFU:
 *
 *   flops/token = 6·N + 12·L·NH·HD·T
 *
 * 6·N: each matmul weight costs 2 FLOPs per token forward (multiply-add) and 4 backward (grad wrt input and
 * wrt weight); N = matmulParameterCount (Chinchilla/Kaplan's "6N", excluding the embedding lookup).
 * 12·L·NH·HD·T: per layer, QKᵀ and A·V each cost 2·T·NH·HD per token forward (NH·HD = C), ×3 for backward.
 * The causal mask is ignored (full T, as PaLM counts it), so this is the "model FLOPs" of MFU, not the
 * FLOPs a causal kernel executes. GQA does not change it: scores are computed for all NH query heads.
 * With { attention: false } it is 6·N alone (Kaplan's C ≈ 6N rule).
 *
 * Sanity check against the paper: tinyllama-1.1b at T = 2048 gives 7.31e9 FLOPs/token; 24k tokens/s on an
 * A100 (312 TFLOP/s bf16) is then 56% MFU, the figure TinyLlama reports.
 */
export function flopsPerToken(cfg: ModelConfig, T: number, options: FlopsOptions = {}): number {
  if (!Number.isSafeInteger(T) || T <= 0) throw new RangeError(`flopsPerToken: T must be a positive integer (got ${T})`);
  const dense = 6 * matmulParameterCount(cfg);
  if (options.attention === false) return dense;
  return dense + 12 * cfg.nLayers * cfg.nHeads * headDim(cfg) * T;
}
