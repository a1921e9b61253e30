import * as v from 'valibot';
import { ConfigError, parseWith, type ConfigIssue } from './errors.ts';
import type { ModelConfig } from './model.ts';
import { parameterCount } from './params.ts';
import {
  nonNegative,
  nonNegativeInt,
  oneOf,
  positive,
  positiveInt,
  strictObject,
  unitInterval,
  crossFieldRules,
} from './rules.ts';

export const SCHEDULES = ['cosine', 'constant'] as const;
export const SAMPLERS = ['random', 'sequential'] as const;
export const DEVICES = ['auto', 'cpu', 'cuda'] as const;
/** 'auto': bf16 mixed precision on CUDA, fp32 on the CPU. */
export const TRAIN_PRECISIONS = ['auto', 'fp32', 'bf16'] as const;

const trainFields = strictObject({
  /** B: sequences per micro-batch (one forward/backward). */
  batch: positiveInt(),
  /** T: tokens per sequence; at most the model's maxSeqLen. */
  seq: positiveInt(),
  /** Micro-batches whose gradients are summed before each optimizer step. */
  gradAccum: positiveInt(),
  /** Optimizer steps in the run. */
  steps: positiveInt(),
  /** Peak learning rate, reached after warmup (TinyLlama: 4e-4). */
  lr: positive(),
  /** Final learning rate of the cosine decay (TinyLlama: 4e-5). */
  minLr: nonNegative(),
  /** Linear warmup steps from 0 to lr (TinyLlama: 2000). */
  warmup: nonNegativeInt(),
  /** AdamW decoupled weight decay (TinyLlama: 0.1). */
  weightDecay: nonNegative(),
  beta1: unitInterval(),
  beta2: unitInterval(),
  eps: positive(),
  /** Global gradient-norm clip (TinyLlama: 1.0); 0 turns clipping off. */
  gradClip: nonNegative(),
  /** 'cosine': warmup then cosine from lr to minLr over the remaining steps. 'constant': warmup then lr. */
  schedule: oneOf(SCHEDULES),
  /** 'random': windows at random offsets (seeded). 'sequential': the data in order. */
  sample: oneOf(SAMPLERS),
  seed: nonNegativeInt(),
  /** Evaluate every this many steps; 0 never. */
  evalEvery: nonNegativeInt(),
  /** Micro-batches per evaluation. */
  evalBatches: positiveInt(),
  /** Checkpoint every this many steps; 0 only at the end. */
  saveEvery: nonNegativeInt(),
  /** Checkpoints kept on disk; 0 keeps all. */
  keepLast: nonNegativeInt(),
  device: oneOf(DEVICES),
  /** Arithmetic of the model: 'fp32', 'bf16' mixed precision (fp32 masters and optimizer state), or 'auto' (bf16 on CUDA, fp32 on CPU). */
  precision: v.optional(oneOf(TRAIN_PRECISIONS), 'auto'),
});
type TrainFields = v.InferOutput<typeof trainFields>;

/** A training run. One optimizer step sees batch · seq · gradAccum tokens. */
export const TrainConfigSchema = v.pipe(
  trainFields,
  crossFieldRules<TrainFields>([
    {
      field: 'minLr',
      reads: ['minLr', 'lr'],
      ok: (c) => c.minLr <= c.lr,
      message: (c) => `minLr (${c.minLr}) must be <= lr (${c.lr})`,
    },
    {
      field: 'warmup',
      reads: ['warmup', 'steps'],
      ok: (c) => c.warmup <= c.steps,
      message: (c) => `warmup (${c.warmup}) must be <= steps (${c.steps})`,
    },
  ]),
);

export type TrainConfig = v.InferOutput<typeof TrainConfigSchema>;

/**
 * Validates an unknown value as a training config. With `model`, also checks that seq fits the model's
 * context (seq <= maxSeqLen). Throws ConfigError naming every bad field, e.g. `train.lr: must be ...`.
 */
export function parseTrainConfig(input: unknown, model?: ModelConfig): TrainConfig {
  const cfg = parseWith(TrainConfigSchema, input, 'train');
  if (model !== undefined && cfg.seq > model.maxSeqLen) {
    const issue: ConfigIssue = {
      path: 'train.seq',
      message: `seq (${cfg.seq}) must be <= the model's maxSeqLen (${model.maxSeqLen})`,
    };
    throw new ConfigError([issue]);
  }
  return cfg;
}

/** Tokens consumed by one optimizer step: batch · seq · gradAccum (TinyLlama: 1024 · 2048 = 2^21). */
export function tokensPerStep(cfg: TrainConfig): number {
  return cfg.batch * cfg.seq * cfg.gradAccum;
}

// TinyLlama's recipe: 1024 sequences of 2048 tokens per step (2^21 tokens), micro-batches of 8 sequences
// (16,384 tokens) per GPU, 2000 warmup steps, for a 1,100,048,384-parameter model.
const TINYLLAMA_PARAMS = 1_100_048_384;
const TINYLLAMA_TOKENS_PER_STEP = 2 ** 21;
const TINYLLAMA_MICRO_TOKENS = 8 * 2048;
const TINYLLAMA_WARMUP = 2000;
/** Chinchilla's compute-optimal budget (Hoffmann et al., 2022). TinyLlama itself went ~136x further (3T). */
const CHINCHILLA_TOKENS_PER_PARAM = 20;

/**
 * TinyLlama's recipe scaled to `model`, then `overrides` applied and the result validated.
 *
 * - seq = model.maxSeqLen.
 * - Tokens per step keep TinyLlama's ratio to model size (2^21 tokens for 1.1B params), rounded to a power
 *   of two and at least one sequence: 2^21 for tinyllama-1.1b, 2^15 for tinyllama-15m.
 * - batch: micro-batches of ~16k tokens (TinyLlama's per-GPU 8 x 2048); gradAccum makes up the step.
 * - steps: Chinchilla's 20 tokens per parameter (not TinyLlama's 3T; set steps for that).
 * - warmup: TinyLlama's 2000 steps, capped at 5% of the run so short runs spend it mostly at peak lr.
 *   If overrides set steps but not warmup, warmup is recomputed from the new steps.
 * - lr 4e-4 -> minLr 4e-5 cosine, AdamW (0.9, 0.95, 1e-8), weight decay 0.1, clip 1.0: TinyLlama's values.
 */
export function defaultTrainConfig(model: ModelConfig, overrides: Partial<TrainConfig> = {}): TrainConfig {
  const N = parameterCount(model);
  const seq = overrides.seq ?? model.maxSeqLen;
  const targetTokens = 2 ** Math.round(Math.log2((N * TINYLLAMA_TOKENS_PER_STEP) / TINYLLAMA_PARAMS));
  const seqsPerStep = Math.max(1, Math.round(targetTokens / seq));
  const batch = Math.min(seqsPerStep, Math.max(1, Math.floor(TINYLLAMA_MICRO_TOKENS / seq)));
  const gradAccum = Math.max(1, Math.round(seqsPerStep / batch));
  const steps = Math.max(1, Math.ceil((CHINCHILLA_TOKENS_PER_PARAM * N) / (batch * seq * gradAccum)));
  const runSteps = overrides.steps ?? steps;
  const warmup = Math.min(TINYLLAMA_WARMUP, Math.ceil(runSteps * 0.05));
  const defaults: TrainConfig = {
    batch,
    seq,
    gradAccum,
    steps,
    lr: 4e-4,
    minLr: 4e-5,
    warmup,
    weightDecay: 0.1,
    beta1: 0.9,
    beta2: 0.95,
    eps: 1e-8,
    gradClip: 1.0,
    schedule: 'cosine',
    sample: 'random',
    seed: 1337,
    evalEvery: Math.max(1, Math.min(2000, Math.ceil(runSteps / 20))),
    evalBatches: 20,
    saveEvery: Math.max(1, Math.min(5000, Math.ceil(runSteps / 10))),
    keepLast: 3,
    device: 'auto',
    precision: 'auto',
  };
  // Drop keys explicitly set to undefined (e.g. unset CLI flags) so they keep their defaults.
  const given = Object.fromEntries(Object.entries(overrides).filter(([, value]) => value !== undefined));
  return parseTrainConfig({ ...defaults, ...given }, model);
}
