/**
 * @tinyllama/model — the TinyLlama decoder (embedding, pre-norm GQA + SwiGLU blocks, final
 * RMSNorm, untied LM head, fused cross-entropy) with parameters, gradients and activations in one
 * arena each.
 */
export { Model, IGNORE_INDEX, type ModelOptions, type NamedParameter } from "./model.ts";
export { parameterSpecs, activationSpecs, defaultLogitsRows } from "./layout.ts";
