/**
 * The part of a model config the attention block reads. A structural subset of
 * @tinyllama/config's ModelConfig, declared here so this package depends on nothing but kernels.
 */
import { ShapeError } from "@tinyllama/kernels";

export interface AttentionConfig {
  /** model width C */
  dim: number;
  /** query heads NH */
  nHeads: number;
  /** key/value heads NKV (NH % NKV == 0; NKV < NH is grouped-query attention) */
  nKvHeads: number;
  /** rows of the RoPE tables: the longest sequence the block will see */
  maxSeqLen: number;
  /** RoPE base (10000 in Llama 2 / TinyLlama) */
  ropeTheta: number;
}

/** Sizes derived from a config, validated. */
export interface AttentionDims {
  C: number;
  NH: number;
  NKV: number;
  HD: number;
}

export function attentionDims(cfg: AttentionConfig, who = "AttentionBlock"): AttentionDims {
  const { dim: C, nHeads: NH, nKvHeads: NKV, maxSeqLen, ropeTheta } = cfg;
  for (const [k, v] of Object.entries({ dim: C, nHeads: NH, nKvHeads: NKV, maxSeqLen }))
    if (!Number.isInteger(v) || v <= 0) throw new ShapeError(`${who}: config.${k} must be a positive integer, got ${v}`);
  if (C % NH !== 0) throw new ShapeError(`${who}: config.dim=${C} must be a multiple of nHeads=${NH} (head dim = dim / nHeads)`);
  if (NH % NKV !== 0) throw new ShapeError(`${who}: config.nHeads=${NH} must be a multiple of nKvHeads=${NKV} (grouped-query attention)`);
  const HD = C / NH;
  if (HD % 2 !== 0) throw new ShapeError(`${who}: head dim dim/nHeads = ${HD} must be even for rotary embeddings`);
  if (!(Number.isFinite(ropeTheta) && ropeTheta > 0)) throw new ShapeError(`${who}: config.ropeTheta must be a positive number, got ${ropeTheta}`);
  return { C, NH, NKV, HD };
}
