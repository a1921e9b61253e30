import { describe, expect, test } from 'bun:test';
import {
  ConfigError,
  flopsPerToken,
  getPreset,
  headDim,
  loadModelConfig,
  matmulParameterCount,
  parameterCount,
  parameterShapes,
  parseModelConfig,
  presetNames,
} from '../src/index.ts';

/** Runs f, expects a ConfigError, returns it. */
function configError(f: () => unknown): ConfigError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

describe('presets', () => {
  test('the names, in order', () => {
    expect(presetNames()).toEqual(['tinyllama-1.1b', 'tinyllama-15m', 'tinyllama-42m', 'tinyllama-110m', 'micro']);
  });

  test.each(presetNames())('%s validates', (name) => {
    const cfg = getPreset(name);
    expect(parseModelConfig(cfg)).toEqual(cfg);
    expect(loadModelConfig(name)).toEqual(cfg);
  });

  test('tinyllama-1.1b has 1,100,048,384 parameters', () => {
    const cfg = getPreset('tinyllama-1.1b');
    expect(parameterCount(cfg)).toBe(1_100_048_384);
    expect(headDim(cfg)).toBe(64);
  });

  test('the brief\'s shapes', () => {
    expect(getPreset('tinyllama-15m')).toMatchObject({ dim: 288, nLayers: 6, nHeads: 6, nKvHeads: 2, hiddenDim: 768, maxSeqLen: 256, vocabSize: 32000 });
    expect(getPreset('tinyllama-42m')).toMatchObject({ dim: 512, nLayers: 8, nHeads: 8, nKvHeads: 4, hiddenDim: 1376, maxSeqLen: 1024 });
    expect(getPreset('tinyllama-110m')).toMatchObject({ dim: 768, nLayers: 12, nHeads: 12, nKvHeads: 4, hiddenDim: 2048, maxSeqLen: 1024 });
    expect(getPreset('micro')).toMatchObject({ vocabSize: 512, dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, hiddenDim: 176, maxSeqLen: 64 });
  });

  test('getPreset returns a copy: mutating it does not change the preset', () => {
    const a = getPreset('micro');
    a.dim = 1;
    expect(getPreset('micro').dim).toBe(64);
  });

  test('an unknown preset lists the known ones', () => {
    const e = configError(() => getPreset('tinyllama-7b'));
    expect(e.message).toContain('"tinyllama-7b"');
    for (const name of presetNames()) expect(e.message).toContain(name);
    expect(() => loadModelConfig('nope')).toThrow(ConfigError);
  });
});

describe('parameterShapes', () => {
  test('HF names and shapes, in HF order', () => {
    const cfg = getPreset('tinyllama-1.1b');
    const shapes = parameterShapes(cfg);
    expect(shapes.length).toBe(1 + 22 * 9 + 2);
    expect(shapes.slice(0, 10)).toEqual([
      { name: 'model.embed_tokens.weight', shape: [32000, 2048] },
      { name: 'model.layers.0.input_layernorm.weight', shape: [2048] },
      { name: 'model.layers.0.self_attn.q_proj.weight', shape: [2048, 2048] },
      { name: 'model.layers.0.self_attn.k_proj.weight', shape: [256, 2048] },
      { name: 'model.layers.0.self_attn.v_proj.weight', shape: [256, 2048] },
      { name: 'model.layers.0.self_attn.o_proj.weight', shape: [2048, 2048] },
      { name: 'model.layers.0.post_attention_layernorm.weight', shape: [2048] },
      { name: 'model.layers.0.mlp.gate_proj.weight', shape: [5632, 2048] },
      { name: 'model.layers.0.mlp.up_proj.weight', shape: [5632, 2048] },
      { name: 'model.layers.0.mlp.down_proj.weight', shape: [2048, 5632] },
    ]);
    expect(shapes[shapes.length - 3]!.name).toBe('model.layers.21.mlp.down_proj.weight');
    expect(shapes.slice(-2)).toEqual([
      { name: 'model.norm.weight', shape: [2048] },
      { name: 'lm_head.weight', shape: [32000, 2048] },
    ]);
  });

  test('tied embeddings drop lm_head and count the matrix once', () => {
    const untied = getPreset('micro');
    const tied = { ...untied, tieEmbeddings: true };
    expect(parameterShapes(tied).some((p) => p.name === 'lm_head.weight')).toBe(false);
    expect(parameterCount(untied) - parameterCount(tied)).toBe(512 * 64);
    // The head is still a matmul when tied.
    expect(matmulParameterCount(tied)).toBe(matmulParameterCount(untied));
  });

  test('micro count by hand', () => {
    // V=512 C=64 H=176 L=2 NH=4 NKV=2 HD=16
    const perLayer = 64 + 64 * 64 + 32 * 64 * 2 + 64 * 64 + 64 + 3 * 176 * 64;
    expect(parameterCount(getPreset('micro'))).toBe(512 * 64 * 2 + 2 * perLayer + 64);
  });
});

describe('flopsPerToken', () => {
  test('6N + 12·L·C·T, with N the matmul weights', () => {
    const cfg = getPreset('tinyllama-1.1b');
    const N = parameterCount(cfg) - 32000 * 2048 - (2 * 22 + 1) * 2048; // no embedding lookup, no norms
    expect(matmulParameterCount(cfg)).toBe(N);
    expect(flopsPerToken(cfg, 2048, { attention: false })).toBe(6 * N);
    expect(flopsPerToken(cfg, 2048)).toBe(6 * N + 12 * 22 * 2048 * 2048);
    expect(flopsPerToken(cfg, 1024)).toBeLessThan(flopsPerToken(cfg, 2048));
  });

  test('reproduces TinyLlama\'s reported 56% MFU at 24k tokens/s on an A100 (312 TFLOP/s)', () => {
    const mfu = (24_000 * flopsPerToken(getPreset('tinyllama-1.1b'), 2048)) / 312e12;
    expect(mfu).toBeGreaterThan(0.555);
    expect(mfu).toBeLessThan(0.565);
  });

  test('rejects a bad T', () => {
    expect(() => flopsPerToken(getPreset('micro'), 0)).toThrow(/T must be a positive integer/);
  });
});

describe('bad model configs name the field and the rule', () => {
  const micro = getPreset('micro');
  const cases: [string, Record<string, unknown>, string][] = [
    ['dim divisible by nHeads', { dim: 300, nHeads: 7, nKvHeads: 7 }, 'config.nHeads: dim (300) must be divisible by nHeads (7)'],
    ['heads divisible by KV heads', { nHeads: 8, nKvHeads: 3 }, 'config.nKvHeads: heads (8) must be divisible by KV heads (3)'],
    ['even head dim', { dim: 60, nHeads: 4 }, 'config.nHeads: head dim dim/nHeads (60/4 = 15) must be even'],
    ['zero size', { nLayers: 0 }, 'config.nLayers: must be a positive integer (got 0)'],
    ['negative size', { vocabSize: -5 }, 'config.vocabSize: must be a positive integer (got -5)'],
    ['fractional size', { hiddenDim: 17.5 }, 'config.hiddenDim: must be a positive integer (got 17.5)'],
    ['string size', { maxSeqLen: '64' }, 'config.maxSeqLen: must be a positive integer (got "64")'],
    ['NaN size', { dim: Number.NaN }, 'config.dim: must be a positive integer (got NaN)'],
    ['zero eps', { normEps: 0 }, 'config.normEps: must be a finite number > 0 (got 0)'],
    ['infinite theta', { ropeTheta: Infinity }, 'config.ropeTheta: must be a finite number > 0 (got Infinity)'],
    ['boolean tie', { tieEmbeddings: 'no' }, 'config.tieEmbeddings: must be true or false (got "no")'],
    ['bos inside vocab', { bosId: 512 }, 'config.bosId: bosId (512) must be < vocabSize (512)'],
    ['eos inside vocab', { eosId: 9999 }, 'config.eosId: eosId (9999) must be < vocabSize (512)'],
    ['negative id', { eosId: -1 }, 'config.eosId: must be a non-negative integer (got -1)'],
    ['unknown field', { n_heads: 4 }, 'config.n_heads: unknown field (known fields: vocabSize,'],
  ];
  test.each(cases)('%s', (_, change, message) => {
    const e = configError(() => parseModelConfig({ ...micro, ...change }));
    expect(e.message).toContain(message);
    expect(e.issues.length).toBe(1);
  });

  test('a missing field is required', () => {
    const { nKvHeads: _, ...rest } = micro;
    expect(configError(() => parseModelConfig(rest)).message).toBe('config.nKvHeads: is required');
  });

  test('not an object', () => {
    expect(configError(() => parseModelConfig(null)).message).toBe('config: must be an object (got null)');
    expect(configError(() => parseModelConfig([1])).message).toContain('config: must be an object');
  });

  test('every issue is collected into one error', () => {
    const e = configError(() => parseModelConfig({ ...micro, vocabSize: 0, dim: 300, nHeads: 7, extra: true }));
    expect(e.issues.map((i) => i.path).sort()).toEqual(['config.extra', 'config.nHeads', 'config.nKvHeads', 'config.vocabSize']);
    expect(e.message).toContain('4 config problems');
    for (const i of e.issues) expect(e.message).toContain(`${i.path}: ${i.message}`);
  });

  test('a field that fails its own rule is not reported again by cross-field rules', () => {
    const e = configError(() => parseModelConfig({ ...micro, dim: 2.5 }));
    expect(e.issues).toEqual([{ path: 'config.dim', message: 'must be a positive integer (got 2.5)' }]);
  });
});

describe('loadModelConfig', () => {
  test('accepts a preset name, our object, or an HF config.json object', () => {
    const micro = getPreset('micro');
    expect(loadModelConfig('micro')).toEqual(micro);
    expect(loadModelConfig({ ...micro })).toEqual(micro);
    expect(loadModelConfig({ model_type: 'llama', vocab_size: 512, hidden_size: 64, intermediate_size: 176, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, rms_norm_eps: 1e-5 })).toEqual(micro);
    expect(() => loadModelConfig({ ...micro, dim: 0 })).toThrow('config.dim: must be a positive integer (got 0)');
  });
});
