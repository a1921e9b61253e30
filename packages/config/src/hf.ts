import * as v from 'valibot';
import { ConfigError, parseWith, toConfigError, type ConfigIssue } from './errors.ts';
import { ModelConfigSchema, type ModelConfig } from './model.ts';
import { boolean, looseObject, positive, positiveInt } from './rules.ts';

export const TORCH_DTYPES = ['float32', 'bfloat16', 'float16'] as const;
export type TorchDtype = (typeof TORCH_DTYPES)[number];

/** The fields of a Hugging Face `config.json` for LlamaForCausalLM that this project writes. */
export interface HfLlamaConfig {
  architectures: string[];
  model_type: 'llama';
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  max_position_embeddings: number;
  rope_theta: number;
  rope_scaling: null;
  rms_norm_eps: number;
  hidden_act: 'silu';
  attention_bias: false;
  attention_dropout: number;
  mlp_bias: false;
  tie_word_embeddings: boolean;
  bos_token_id: number;
  eos_token_id: number;
  initializer_range: number;
  pretraining_tp: number;
  use_cache: boolean;
  torch_dtype: TorchDtype;
}

// Our field -> the HF key a user wrote, so errors from the cross-field rules point into config.json.
const HF_KEY: Record<keyof ModelConfig, string> = {
  vocabSize: 'vocab_size',
  dim: 'hidden_size',
  hiddenDim: 'intermediate_size',
  nLayers: 'num_hidden_layers',
  nHeads: 'num_attention_heads',
  nKvHeads: 'num_key_value_heads',
  maxSeqLen: 'max_position_embeddings',
  ropeTheta: 'rope_theta',
  normEps: 'rms_norm_eps',
  tieEmbeddings: 'tie_word_embeddings',
  bosId: 'bos_token_id',
  eosId: 'eos_token_id',
};
const hfKey = (key: string): string => (key in HF_KEY ? HF_KEY[key as keyof ModelConfig] : key);

// Shape-level schema of an HF config: loose (HF configs carry many keys we do not use), with HF's
// LlamaConfig defaults for what may be missing. Sizes are required: HF's defaults for them (a 7B model)
// are never what a small config file that omits them meant.
const HfSchema = looseObject({
  vocab_size: positiveInt(),
  hidden_size: positiveInt(),
  intermediate_size: positiveInt(),
  num_hidden_layers: positiveInt(),
  num_attention_heads: positiveInt(),
  num_key_value_heads: v.nullish(positiveInt()),
  max_position_embeddings: v.optional(positiveInt(), 2048),
  rope_theta: v.optional(positive(), 10000),
  rms_norm_eps: v.optional(positive(), 1e-6),
  tie_word_embeddings: v.optional(boolean(), false),
  bos_token_id: v.nullish(v.union([v.number(), v.array(v.number())])),
  eos_token_id: v.nullish(v.union([v.number(), v.array(v.number())])),
  hidden_act: v.optional(v.string(), 'silu'),
  rope_scaling: v.nullish(v.unknown()),
  attention_bias: v.optional(v.boolean(), false),
  mlp_bias: v.optional(v.boolean(), false),
  head_dim: v.nullish(v.number()),
  model_type: v.optional(v.string()),
  architectures: v.nullish(v.array(v.string())),
});

/**
 * Reads a Hugging Face `config.json` (already JSON.parse'd) for a Llama model. Follows HF semantics:
 * a missing num_key_value_heads means no GQA (= num_attention_heads). Features this project does not
 * implement (non-SiLU activations, RoPE scaling, attention or MLP biases, a head_dim other than
 * hidden_size / num_attention_heads, non-Llama architectures) are a ConfigError naming the key.
 */
export function fromHfConfig(json: unknown): ModelConfig {
  const hf = parseWith(HfSchema, json, 'config.json');
  const unsupported: ConfigIssue[] = [];
  const bad = (key: string, message: string): void => {
    unsupported.push({ path: `config.json.${key}`, message });
  };
  if (hf.model_type !== undefined && hf.model_type !== 'llama') {
    bad('model_type', `must be "llama" (got ${JSON.stringify(hf.model_type)}); only Llama models are supported`);
  }
  if (hf.architectures != null && !hf.architectures.includes('LlamaForCausalLM')) {
    bad('architectures', `must include "LlamaForCausalLM" (got ${JSON.stringify(hf.architectures)})`);
  }
  if (hf.hidden_act !== 'silu') {
    bad('hidden_act', `must be "silu" (got ${JSON.stringify(hf.hidden_act)}); the MLP is SwiGLU only`);
  }
  if (hf.rope_scaling != null) {
    bad('rope_scaling', `must be null (got ${JSON.stringify(hf.rope_scaling)}); RoPE scaling is not supported`);
  }
  if (hf.attention_bias) bad('attention_bias', 'must be false; attention projections have no bias here');
  if (hf.mlp_bias) bad('mlp_bias', 'must be false; MLP projections have no bias here');
  if (hf.head_dim != null && hf.head_dim * hf.num_attention_heads !== hf.hidden_size) {
    bad(
      'head_dim',
      `must equal hidden_size / num_attention_heads (${hf.hidden_size}/${hf.num_attention_heads}), got ${hf.head_dim}`,
    );
  }
  const singleId = (key: string, id: number | number[] | null | undefined, fallback: number): number => {
    if (id == null) return fallback;
    if (typeof id === 'number') return id;
    if (id.length === 1) return id[0]!;
    bad(key, `must be a single token id (got ${JSON.stringify(id)})`);
    return fallback;
  };
  const cfg = {
    vocabSize: hf.vocab_size,
    dim: hf.hidden_size,
    hiddenDim: hf.intermediate_size,
    nLayers: hf.num_hidden_layers,
    nHeads: hf.num_attention_heads,
    nKvHeads: hf.num_key_value_heads ?? hf.num_attention_heads,
    maxSeqLen: hf.max_position_embeddings,
    ropeTheta: hf.rope_theta,
    normEps: hf.rms_norm_eps,
    tieEmbeddings: hf.tie_word_embeddings,
    // HF LlamaConfig's defaults, which are also the Llama 2 tokenizer's ids.
    bosId: singleId('bos_token_id', hf.bos_token_id, 1),
    eosId: singleId('eos_token_id', hf.eos_token_id, 2),
  };
  const result = v.safeParse(ModelConfigSchema, cfg);
  const issues = [...unsupported, ...(result.success ? [] : toConfigError(result.issues, 'config.json', hfKey).issues)];
  if (issues.length > 0 || !result.success) throw new ConfigError(issues);
  return result.output;
}

export interface ToHfOptions {
  /** The dtype the weights are saved in (config.json's torch_dtype). Default 'float32'. */
  readonly torchDtype?: TorchDtype;
  /** Stddev of the normal init (HF initializer_range). Default 0.02, TinyLlama's. */
  readonly initializerRange?: number;
}

/** A Hugging Face `config.json` object for `cfg`, loadable by transformers' LlamaForCausalLM. */
export function toHfConfig(cfg: ModelConfig, options: ToHfOptions = {}): HfLlamaConfig {
  const torchDtype = options.torchDtype ?? 'float32';
  if (!(TORCH_DTYPES as readonly string[]).includes(torchDtype)) {
    throw new ConfigError([
      { path: 'torchDtype', message: `must be one of ${TORCH_DTYPES.join(', ')} (got ${JSON.stringify(torchDtype)})` },
    ]);
  }
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.dim,
    intermediate_size: cfg.hiddenDim,
    num_hidden_layers: cfg.nLayers,
    num_attention_heads: cfg.nHeads,
    num_key_value_heads: cfg.nKvHeads,
    head_dim: cfg.dim / cfg.nHeads,
    max_position_embeddings: cfg.maxSeqLen,
    rope_theta: cfg.ropeTheta,
    rope_scaling: null,
    rms_norm_eps: cfg.normEps,
    hidden_act: 'silu',
    attention_bias: false,
    attention_dropout: 0.0,
    mlp_bias: false,
    tie_word_embeddings: cfg.tieEmbeddings,
    bos_token_id: cfg.bosId,
    eos_token_id: cfg.eosId,
    initializer_range: options.initializerRange ?? 0.02,
    pretraining_tp: 1,
    use_cache: true,
    torch_dtype: torchDtype,
  };
}
