// The data a tokenizer is made of, independent of the file format it came from.

import type { BpeModelSpec } from "./bpe.ts";
import type { DecoderStep } from "./decode.ts";

/** A token matched in raw text before normalization (Hugging Face "added_tokens"). */
export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
  lstrip: boolean;
  rstrip: boolean;
}

export interface TokenizerSpec {
  model: BpeModelSpec;
  addedTokens: AddedToken[];
  /**
   * Where a "▁" is prepended: to every non-empty text segment between added tokens ("always": tokenizers'
   * Prepend normalizer), only to a segment at the start of the text ("first"), or nowhere.
   */
  prepend: "always" | "first" | "never";
  /** SentencePiece's remove_extra_whitespaces: trim and collapse runs of spaces before encoding. */
  removeExtraWhitespaces: boolean;
  decoder: DecoderStep[];
  bosId: number;
  eosId: number;
  addBos: boolean;
  addEos: boolean;
  /** Whether added tokens written in the text (e.g. "</s>") are recognised by default. */
  parseSpecial: boolean;
  /** Per-piece scores when known (SentencePiece), kept for export. */
  scores?: Float32Array;
}
