/**
 * @tinyllama/mlp — the SwiGLU feed-forward block of a Llama layer, down(silu(gate(x)) * up(x)),
 * forward and backward over tensors a model owns.
 */
export { MlpBlock, MLP_PARAM_NAMES, mlpInitStd, type MlpConfig, type MlpParamName, type MlpTensors, type TensorLookup } from "./block.ts";
export { gaussian, deriveSeed, mulberry32 } from "./random.ts";
