import { describe, expect, test } from 'bun:test';
import { ConfigError, defaultTrainConfig, getPreset, parseTrainConfig, presetNames, tokensPerStep } from '../src/index.ts';

function configError(f: () => unknown): ConfigError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

describe('defaultTrainConfig', () => {
  test("tinyllama-1.1b gets TinyLlama's recipe: 2^21-token steps of 2048-token sequences, its optimizer", () => {
    const t = defaultTrainConfig(getPreset('tinyllama-1.1b'));
    expect(tokensPerStep(t)).toBe(2 ** 21);
    expect(t).toMatchObject({
      seq: 2048, batch: 8, gradAccum: 128, lr: 4e-4, minLr: 4e-5, weightDecay: 0.1, beta1: 0.9, beta2: 0.95,
      eps: 1e-8, gradClip: 1.0, schedule: 'cosine', sample: 'random', device: 'auto',
    });
    // Chinchilla's 20 tokens per parameter; warmup is TinyLlama's 2000 capped at 5% of the run.
    expect(t.steps).toBe(Math.ceil((20 * 1_100_048_384) / 2 ** 21));
    expect(t.warmup).toBe(Math.ceil(t.steps * 0.05));
    expect(defaultTrainConfig(getPreset('tinyllama-1.1b'), { steps: 1_430_512 }).warmup).toBe(2000);
  });

  test.each(presetNames())('%s: valid, seq = maxSeqLen, smaller models take smaller steps', (name) => {
    const model = getPreset(name);
    const t = defaultTrainConfig(model);
    expect(parseTrainConfig(t, model)).toEqual(t);
    expect(t.seq).toBe(model.maxSeqLen);
    expect(tokensPerStep(t)).toBeLessThanOrEqual(2 ** 21);
    expect(t.warmup).toBeGreaterThan(0);
    expect(t.warmup).toBeLessThanOrEqual(Math.min(2000, t.steps));
  });

  test('overrides win, and a shorter run gets a shorter warmup', () => {
    const t = defaultTrainConfig(getPreset('micro'), { steps: 100, lr: 1e-3, seq: 32, device: 'cpu', warmup: undefined });
    expect(t).toMatchObject({ steps: 100, lr: 1e-3, seq: 32, device: 'cpu', warmup: 5 });
  });

  test('overrides are validated', () => {
    expect(() => defaultTrainConfig(getPreset('micro'), { seq: 128 })).toThrow(
      "train.seq: seq (128) must be <= the model's maxSeqLen (64)",
    );
  });
});

describe('bad training configs name the field and the rule', () => {
  const base = defaultTrainConfig(getPreset('micro'), { steps: 100 });
  const cases: [string, Record<string, unknown>, string][] = [
    ['batch', { batch: 0 }, 'train.batch: must be a positive integer (got 0)'],
    ['gradAccum', { gradAccum: 1.5 }, 'train.gradAccum: must be a positive integer (got 1.5)'],
    ['lr', { lr: -1 }, 'train.lr: must be a finite number > 0 (got -1)'],
    ['minLr <= lr', { minLr: 1 }, 'train.minLr: minLr (1) must be <= lr (0.0004)'],
    ['warmup <= steps', { warmup: 101 }, 'train.warmup: warmup (101) must be <= steps (100)'],
    ['beta2', { beta2: 1 }, 'train.beta2: must be in [0, 1) (got 1)'],
    ['weightDecay', { weightDecay: -0.1 }, 'train.weightDecay: must be a finite number >= 0 (got -0.1)'],
    ['schedule', { schedule: 'linear' }, 'train.schedule: must be one of "cosine", "constant" (got "linear")'],
    ['sample', { sample: 'shuffle' }, 'train.sample: must be one of "random", "sequential" (got "shuffle")'],
    ['device', { device: 'gpu' }, 'train.device: must be one of "auto", "cpu", "cuda" (got "gpu")'],
    ['seed', { seed: -1 }, 'train.seed: must be a non-negative integer (got -1)'],
    ['unknown field', { learningRate: 1 }, 'train.learningRate: unknown field'],
  ];
  test.each(cases)('%s', (_, change, message) => {
    const e = configError(() => parseTrainConfig({ ...base, ...change }));
    expect(e.message).toContain(message);
    expect(e.issues.length).toBe(1);
  });

  test('missing fields are each required', () => {
    const e = configError(() => parseTrainConfig({ batch: 1 }));
    expect(e.issues.length).toBe(19);
    expect(e.message).toContain('train.lr: is required');
    expect(e.message).toContain('train.schedule: is required');
  });

  test('seq is checked against the model only when one is given', () => {
    const long = { ...base, seq: 65 };
    expect(parseTrainConfig(long).seq).toBe(65);
    expect(() => parseTrainConfig(long, getPreset('micro'))).toThrow('train.seq');
  });
});
