import { ConfigError } from './errors.ts';
import { parseModelConfig, type ModelConfig } from './model.ts';

// Shared by every preset: the Llama 2 tokenizer's ids, TinyLlama's RoPE base and RMSNorm epsilon, untied head.
const llama = { ropeTheta: 10000, normEps: 1e-5, tieEmbeddings: false, bosId: 1, eosId: 2 } as const;

const definitions = {
  /** TinyLlama-1.1B (Zhang et al., 2024): 1,100,048,384 parameters. */
  'tinyllama-1.1b': {
    ...llama, vocabSize: 32000, dim: 2048, hiddenDim: 5632, nLayers: 22, nHeads: 32, nKvHeads: 4, maxSeqLen: 2048,
  },
  /** llama2.c's stories15M shape, with GQA: HD 48. */
  'tinyllama-15m': {
    ...llama, vocabSize: 32000, dim: 288, hiddenDim: 768, nLayers: 6, nHeads: 6, nKvHeads: 2, maxSeqLen: 256,
  },
  /** llama2.c's stories42M shape, with GQA: HD 64. */
  'tinyllama-42m': {
    ...llama, vocabSize: 32000, dim: 512, hiddenDim: 1376, nLayers: 8, nHeads: 8, nKvHeads: 4, maxSeqLen: 1024,
  },
  /** llama2.c's stories110M shape, with GQA: HD 64. */
  'tinyllama-110m': {
    ...llama, vocabSize: 32000, dim: 768, hiddenDim: 2048, nLayers: 12, nHeads: 12, nKvHeads: 4, maxSeqLen: 1024,
  },
  /** For tests: every code path (GQA groups of 2, several layers), runs in milliseconds. HD 16. */
  micro: {
    ...llama, vocabSize: 512, dim: 64, hiddenDim: 176, nLayers: 2, nHeads: 4, nKvHeads: 2, maxSeqLen: 64,
  },
} satisfies Record<string, ModelConfig>;

export type PresetName = keyof typeof definitions;

// Validated once at load: a preset that breaks a rule is a bug here, and must fail loudly, not at use.
const presets: ReadonlyMap<string, ModelConfig> = new Map(
  Object.entries(definitions).map(([name, cfg]) => [name, Object.freeze(parseModelConfig(cfg))]),
);

/** The preset names, in definition order (largest TinyLlama first, `micro` last). */
export function presetNames(): PresetName[] {
  return Object.keys(definitions) as PresetName[];
}

export function isPresetName(name: string): name is PresetName {
  return presets.has(name);
}

/** A fresh, mutable copy of a preset. An unknown name throws a ConfigError listing the known ones. */
export function getPreset(name: string): ModelConfig {
  const cfg = presets.get(name);
  if (cfg === undefined) {
    throw new ConfigError([
      { path: 'preset', message: `unknown preset ${JSON.stringify(name)} (known: ${presetNames().join(', ')})` },
    ]);
  }
  return { ...cfg };
}
