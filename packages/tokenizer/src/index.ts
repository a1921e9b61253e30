// @tinyllama/tokenizer: Llama 2 / SentencePiece BPE tokenizer and trainer. Runtime-neutral (no node:* or
// bun:* imports here), so it runs on Bun and Node and bundles for browsers. Worker-thread helpers live in
// the separate "@tinyllama/tokenizer/parallel" entry.

export { Tokenizer, type EncodeOptions, type DecodeOptions } from "./tokenizer.ts";
export { StreamDecoder, type DecoderStep } from "./decode.ts";
export type { TokenizerSpec, AddedToken } from "./spec.ts";
export type { BpeModelSpec, MergeRule } from "./bpe.ts";
export { parseSpmModel, type SpmModel, type SpmPiece } from "./spm.ts";
export { trainBpe, type TrainOptions } from "./train.ts";
