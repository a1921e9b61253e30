import { describe, expect, test } from 'bun:test';
import { ConfigError, fromHfConfig, getPreset, loadModelConfig, parameterCount, presetNames, toHfConfig } from '../src/index.ts';

// A literal copy of TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T's config.json.
const TINYLLAMA_CONFIG_JSON = `{
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 5632,
  "max_position_embeddings": 2048,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 22,
  "num_key_value_heads": 4,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "rope_theta": 10000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.31.0.dev0",
  "use_cache": true,
  "vocab_size": 32000
}`;

function configError(f: () => unknown): ConfigError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

const tinyHf = (): Record<string, unknown> => JSON.parse(TINYLLAMA_CONFIG_JSON) as Record<string, unknown>;

describe('fromHfConfig', () => {
  test("reads TinyLlama-1.1B's real config.json as the tinyllama-1.1b preset", () => {
    const cfg = fromHfConfig(tinyHf());
    expect(cfg).toEqual(getPreset('tinyllama-1.1b'));
    expect(parameterCount(cfg)).toBe(1_100_048_384);
    expect(loadModelConfig(tinyHf())).toEqual(cfg);
  });

  test('missing num_key_value_heads means no GQA (HF behaviour)', () => {
    const { num_key_value_heads: _, ...mha } = tinyHf();
    expect(fromHfConfig(mha).nKvHeads).toBe(32);
    expect(fromHfConfig({ ...tinyHf(), num_key_value_heads: null }).nKvHeads).toBe(32);
  });

  test("HF LlamaConfig defaults fill optional keys", () => {
    const cfg = fromHfConfig({ vocab_size: 512, hidden_size: 64, intermediate_size: 176, num_hidden_layers: 2, num_attention_heads: 4 });
    expect(cfg).toMatchObject({ maxSeqLen: 2048, ropeTheta: 10000, normEps: 1e-6, tieEmbeddings: false, bosId: 1, eosId: 2, nKvHeads: 4 });
  });

  test('a one-element eos_token_id list is accepted, a longer one is not', () => {
    expect(fromHfConfig({ ...tinyHf(), eos_token_id: [2] }).eosId).toBe(2);
    expect(configError(() => fromHfConfig({ ...tinyHf(), eos_token_id: [2, 3] })).message).toContain(
      'config.json.eos_token_id: must be a single token id',
    );
  });

  const unsupported: [string, Record<string, unknown>, string][] = [
    ['hidden_act', { hidden_act: 'gelu' }, 'config.json.hidden_act: must be "silu" (got "gelu")'],
    ['rope_scaling', { rope_scaling: { type: 'linear', factor: 2 } }, 'config.json.rope_scaling: must be null'],
    ['attention_bias', { attention_bias: true }, 'config.json.attention_bias: must be false'],
    ['mlp_bias', { mlp_bias: true }, 'config.json.mlp_bias: must be false'],
    ['model_type', { model_type: 'mistral' }, 'config.json.model_type: must be "llama" (got "mistral")'],
    ['architectures', { architectures: ['MistralForCausalLM'] }, 'config.json.architectures: must include "LlamaForCausalLM"'],
    ['head_dim', { head_dim: 128 }, 'config.json.head_dim: must equal hidden_size / num_attention_heads'],
    ['sizes', { hidden_size: 0 }, 'config.json.hidden_size: must be a positive integer (got 0)'],
    ['missing size', { vocab_size: undefined }, 'config.json.vocab_size: is required'],
    ['GQA rule, with the HF key', { num_key_value_heads: 5 }, 'config.json.num_key_value_heads: heads (32) must be divisible by KV heads (5)'],
    ['divisibility, with the HF key', { num_attention_heads: 30 }, 'config.json.num_attention_heads: dim (2048) must be divisible by nHeads (30)'],
  ];
  test.each(unsupported)('%s is a clear error', (_, change, message) => {
    expect(configError(() => fromHfConfig({ ...tinyHf(), ...change })).message).toContain(message);
  });

  test('unsupported features and bad sizes are reported together', () => {
    const e = configError(() => fromHfConfig({ ...tinyHf(), hidden_act: 'relu', mlp_bias: true, num_key_value_heads: 5 }));
    expect(e.issues.map((i) => i.path).sort()).toEqual([
      'config.json.hidden_act',
      'config.json.mlp_bias',
      'config.json.num_key_value_heads',
    ]);
  });

  test('not an object', () => {
    expect(() => fromHfConfig('{}')).toThrow('config.json: must be an object');
  });
});

describe('toHfConfig', () => {
  test.each(presetNames())('%s round-trips through config.json', (name) => {
    const cfg = getPreset(name);
    const json = JSON.parse(JSON.stringify(toHfConfig(cfg, { torchDtype: 'bfloat16' }))) as unknown;
    expect(fromHfConfig(json)).toEqual(cfg);
  });

  test('tied embeddings round-trip too', () => {
    const cfg = { ...getPreset('micro'), tieEmbeddings: true };
    expect(fromHfConfig(toHfConfig(cfg))).toEqual(cfg);
  });

  test('writes the keys TinyLlama ships, with the same values', () => {
    const ours = toHfConfig(getPreset('tinyllama-1.1b'), { torchDtype: 'bfloat16' });
    const theirs = tinyHf();
    for (const key of Object.keys(theirs)) {
      if (key === 'transformers_version') continue;
      expect([key, (ours as unknown as Record<string, unknown>)[key]]).toEqual([key, theirs[key]]);
    }
    expect(ours.head_dim).toBe(64);
  });

  test('torch_dtype defaults to float32 and is checked', () => {
    expect(toHfConfig(getPreset('micro')).torch_dtype).toBe('float32');
    // @ts-expect-error: not a TorchDtype
    expect(() => toHfConfig(getPreset('micro'), { torchDtype: 'int8' })).toThrow('torchDtype: must be one of');
  });
});
