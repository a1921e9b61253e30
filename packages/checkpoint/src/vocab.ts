// The vocabulary part of a GGUF file, from a tokenizer object. Structural on purpose: this package does not depend on
// @tinyllama/tokenizer; any object with this shape (its Tokenizer has it) works.

import { TokenType, type GgufTokenizer } from "./gguf.ts";

/** What ggufVocab reads from a tokenizer (@tinyllama/tokenizer's Tokenizer satisfies it). */
export interface TokenizerLike {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  idToToken(id: number): string;
  readonly spec: {
    /** SentencePiece scores, when the tokenizer came from a tokenizer.model. */
    readonly scores?: ArrayLike<number>;
    readonly addedTokens: readonly { readonly id: number; readonly special: boolean }[];
    readonly addBos: boolean;
    readonly addEos: boolean;
    readonly model: {
      readonly unkId: number;
      readonly byteFallback: boolean;
      readonly merges: readonly { readonly merged: number; readonly rank: number }[];
    };
  };
}

/**
 * Pieces, SentencePiece scores and token types for writeGguf. llama.cpp's SPM tokenizer repeatedly merges the adjacent
 * pair whose merged piece has the highest score, so without SentencePiece scores (tokenizer.json has none) a piece
 * scores -rank of the merge producing it, which replays BPE's merge order; pieces no merge produces rank below all.
 * Types: the unk piece 2, special added tokens 3 (control), other added tokens 4, "<0xNN>" pieces 6 (byte) when the
 * model has byte fallback, everything else 1.
 */
export function ggufVocab(tok: TokenizerLike): GgufTokenizer {
  const V = tok.vocabSize;
  const { spec } = tok;
  const tokens = Array.from({ length: V }, (_, i) => tok.idToToken(i));
  let scores: Float32Array;
  if (spec.scores && spec.scores.length === V) scores = Float32Array.from(spec.scores);
  else {
    const merges = spec.model.merges;
    scores = Float32Array.from({ length: V }, (_, i) => -(merges.length + i));
    for (const m of merges) scores[m.merged] = Math.max(scores[m.merged]!, -m.rank);
  }
  const types = new Int32Array(V).fill(TokenType.NORMAL);
  if (spec.model.byteFallback) for (let i = 0; i < V; i++) if (/^<0x[0-9A-F]{2}>$/.test(tokens[i]!)) types[i] = TokenType.BYTE;
  for (const t of spec.addedTokens) types[t.id] = t.special ? TokenType.CONTROL : TokenType.USER_DEFINED;
  const unkId = spec.model.unkId;
  if (unkId >= 0) types[unkId] = TokenType.UNKNOWN;
  return { tokens, scores, types, bosId: tok.bosId, eosId: tok.eosId, unkId: unkId >= 0 ? unkId : 0, addBos: spec.addBos, addEos: spec.addEos };
}
