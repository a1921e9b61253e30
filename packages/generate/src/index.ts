/**
 * @tinyllama/generate — inference: KV-cache sessions (batched prefill, matrix-vector decode with
 * attention_decode; f32 or bf16 weight storage), seeded sampling, streaming generation, chat templates, model loading
 * (Hugging Face or training-run directories) and windowed evaluation.
 */
export { InferenceSession, type SessionOptions, type LossSum } from "./session.ts";
export { Sampler, argmax, seededRandom, type SamplingOptions, type Candidate } from "./sampler.ts";
export { generate, type GenerateOptions, type GenerateResult } from "./generate.ts";
export { loadChatTemplate, renderChat, ZEPHYR_TEMPLATE, type ChatMessage, type ChatTemplate } from "./chat.ts";
export { loadModel, loadTokenizer, resolveModelDir, type LoadedModel, type LoadOptions } from "./load.ts";
export { InferenceWeights, isLinearWeight, resolveWeightDtype, type DecoderWeights, type WeightDtype } from "./weights.ts";
export { evaluateWindows, type EvalResult, type TokenStream } from "./evaluate.ts";
