/** The RoPE cos/sin tables: one pair per model, shared by every layer. */
import { ropeTables, type Backend, type Tensor, type TensorSpec } from "@tinyllama/kernels";
import { attentionDims, type AttentionConfig } from "./config.ts";

export interface RopeTables {
  /** (maxSeqLen, HD/2) */
  cos: Tensor;
  /** (maxSeqLen, HD/2) */
  sin: Tensor;
}

/** Specs of the tables, for a model that places them in one of its arenas. Fill them with fillRope. */
export function ropeSpecs(cfg: AttentionConfig, prefix = "rope."): TensorSpec[] {
  const { HD } = attentionDims(cfg, "ropeSpecs");
  return [
    { name: `${prefix}cos`, shape: [cfg.maxSeqLen, HD / 2] },
    { name: `${prefix}sin`, shape: [cfg.maxSeqLen, HD / 2] },
  ];
}

export function fillRope(rope: RopeTables, cfg: AttentionConfig): RopeTables {
  ropeTables(rope.cos, rope.sin, cfg.ropeTheta);
  return rope;
}

/** Allocates and fills a table pair with its own buffers (free with `freeRope`). */
export function createRope(backend: Backend, cfg: AttentionConfig): RopeTables {
  const [c, s] = ropeSpecs(cfg);
  return fillRope({ cos: backend.tensor(c!.shape), sin: backend.tensor(s!.shape) }, cfg);
}

export function freeRope(rope: RopeTables): void {
  rope.cos.buffer.free();
  rope.sin.buffer.free();
}
