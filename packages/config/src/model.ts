import * as v from 'valibot';
import { parseWith } from './errors.ts';
import { boolean, crossFieldRules, nonNegativeInt, positive, positiveInt, strictObject } from './rules.ts';

const modelFields = strictObject({
  /** V: tokenizer vocabulary size (HF vocab_size). */
  vocabSize: positiveInt(),
  /** C: residual stream width (HF hidden_size). */
  dim: positiveInt(),
  /** H: SwiGLU inner width (HF intermediate_size). */
  hiddenDim: positiveInt(),
  /** L: transformer blocks (HF num_hidden_layers). */
  nLayers: positiveInt(),
  /** NH: query heads (HF num_attention_heads). */
  nHeads: positiveInt(),
  /** NKV: key/value heads, shared by NH / NKV query heads each (GQA; HF num_key_value_heads). */
  nKvHeads: positiveInt(),
  /** T max: longest sequence the model is trained for (HF max_position_embeddings). */
  maxSeqLen: positiveInt(),
  /** RoPE base (HF rope_theta). */
  ropeTheta: positive(),
  /** RMSNorm epsilon (HF rms_norm_eps). */
  normEps: positive(),
  /** Whether lm_head shares the embedding matrix (false for TinyLlama). */
  tieEmbeddings: boolean(),
  bosId: nonNegativeInt(),
  eosId: nonNegativeInt(),
});
type ModelFields = v.InferOutput<typeof modelFields>;

/**
 * The architecture of a Llama-2-style decoder (TinyLlama's family). Names follow the math used across the
 * project: C = dim, H = hiddenDim, L = nLayers, NH = nHeads, NKV = nKvHeads, HD = dim / nHeads, V = vocabSize.
 */
export const ModelConfigSchema = v.pipe(
  modelFields,
  crossFieldRules<ModelFields>([
    {
      field: 'nHeads',
      reads: ['dim', 'nHeads'],
      ok: (c) => c.dim % c.nHeads === 0,
      message: (c) => `dim (${c.dim}) must be divisible by nHeads (${c.nHeads})`,
    },
    {
      field: 'nKvHeads',
      reads: ['nHeads', 'nKvHeads'],
      ok: (c) => c.nHeads % c.nKvHeads === 0,
      message: (c) => `heads (${c.nHeads}) must be divisible by KV heads (${c.nKvHeads})`,
    },
    // Rotate-half RoPE pairs dimension i with i + HD/2, so the head dimension must be even.
    {
      field: 'nHeads',
      reads: ['dim', 'nHeads'],
      ok: (c) => c.dim % c.nHeads !== 0 || (c.dim / c.nHeads) % 2 === 0,
      message: (c) => `head dim dim/nHeads (${c.dim}/${c.nHeads} = ${c.dim / c.nHeads}) must be even for rotary embeddings`,
    },
    {
      field: 'bosId',
      reads: ['bosId', 'vocabSize'],
      ok: (c) => c.bosId < c.vocabSize,
      message: (c) => `bosId (${c.bosId}) must be < vocabSize (${c.vocabSize})`,
    },
    {
      field: 'eosId',
      reads: ['eosId', 'vocabSize'],
      ok: (c) => c.eosId < c.vocabSize,
      message: (c) => `eosId (${c.eosId}) must be < vocabSize (${c.vocabSize})`,
    },
  ]),
);

/** A validated model config. Produce one with parseModelConfig, getPreset, loadModelConfig or fromHfConfig. */
export type ModelConfig = v.InferOutput<typeof ModelConfigSchema>;

/**
 * Validates an unknown value (a parsed JSON file, CLI flags) as a model config.
 * Throws ConfigError naming every bad field, e.g. `config.nHeads: dim (300) must be divisible by nHeads (7)`.
 */
export function parseModelConfig(input: unknown): ModelConfig {
  return parseWith(ModelConfigSchema, input, 'config');
}

/** HD: the per-head width, dim / nHeads (64 for TinyLlama). */
export function headDim(cfg: ModelConfig): number {
  return cfg.dim / cfg.nHeads;
}

/** NH / NKV: how many query heads share each key/value head (8 for TinyLlama). */
export function kvGroupSize(cfg: ModelConfig): number {
  return cfg.nHeads / cfg.nKvHeads;
}
