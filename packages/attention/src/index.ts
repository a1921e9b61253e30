/**
 * @tinyllama/attention — the attention block of a Llama layer (q/k/v/o projections, RoPE,
 * causal grouped-query attention), forward and backward, over tensors a model owns.
 */
export { AttentionBlock, PARAM_NAMES, type AttentionTensors, type ParamInit, type ParamName, type TensorLookup } from "./block.ts";
export { attentionDims, type AttentionConfig, type AttentionDims } from "./config.ts";
export { createRope, fillRope, freeRope, ropeSpecs, type RopeTables } from "./rope.ts";
