// The Llama 2 vocabulary (TinyLlama's), built from the data embedded in the `llama-tokenizer-js` package:
// its 32000 pieces (id order) and its merge list (pair -> priority). Nothing is downloaded.

import type { MergeRule } from "./bpe.ts";
import { llamaDecoderSteps } from "./decode.ts";
import type { TokenizerSpec } from "./spec.ts";

/** The parts of llama-tokenizer-js's tokenizer object that we read. */
export interface LlamaTokenizerJsData {
  vocabById: string[];
  merges: Map<string, number>;
}

export function specFromLlamaTokenizerJs(data: LlamaTokenizerJsData): TokenizerSpec {
  const pieces = [...data.vocabById];
  if (pieces.length !== 32000) throw new Error(`llama-tokenizer-js: expected 32000 pieces, found ${pieces.length}`);
  const pieceToId = new Map<string, number>();
  pieces.forEach((p, i) => pieceToId.set(p, i));
  // merges map "left right" -> priority (lower first); the pieces themselves never contain a space
  const entries = [...data.merges.entries()].sort((a, b) => a[1] - b[1]);
  const merges: MergeRule[] = entries.map(([key, _prio], rank) => {
    const sp = key.indexOf(" ");
    const a = key.slice(0, sp);
    const b = key.slice(sp + 1);
    const left = pieceToId.get(a);
    const right = pieceToId.get(b);
    const merged = pieceToId.get(a + b);
    if (left === undefined || right === undefined || merged === undefined) throw new Error(`llama-tokenizer-js: merge ${JSON.stringify(key)} refers to pieces not in the vocabulary`);
    return { left, right, merged, rank };
  });
  return llamaStyleSpec(pieces, merges);
}

/**
 * The Llama 2 tokenizer's layout around a BPE vocabulary: <unk> <s> </s> at ids 0-2 (special),
 * byte fallback, ▁ prepended to the text, BOS added and EOS not, SentencePiece-style decoding.
 * Shared by the bundled Llama 2 vocabulary and vocabularies trained by trainBpe.
 */
export function llamaStyleSpec(pieces: string[], merges: MergeRule[]): TokenizerSpec {
  return {
    model: { pieces, merges, unkId: 0, byteFallback: true, fuseUnk: true },
    addedTokens: [
      { id: 0, content: "<unk>", special: true, lstrip: false, rstrip: false },
      { id: 1, content: "<s>", special: true, lstrip: false, rstrip: false },
      { id: 2, content: "</s>", special: true, lstrip: false, rstrip: false },
    ],
    prepend: "always",
    removeExtraWhitespaces: false,
    decoder: llamaDecoderSteps(true),
    bosId: 1,
    eosId: 2,
    addBos: true,
    addEos: false,
    parseSpecial: true,
  };
}
