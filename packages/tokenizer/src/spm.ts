// SentencePiece tokenizer.model: a protobuf ModelProto, parsed here with a minimal wire-format reader.
//
// ModelProto { repeated SentencePiece pieces = 1; TrainerSpec trainer_spec = 2; NormalizerSpec normalizer_spec = 3; }
// SentencePiece { string piece = 1; float score = 2; Type type = 3 (NORMAL=1 UNKNOWN=2 CONTROL=3 USER_DEFINED=4 UNUSED=5 BYTE=6) }
// TrainerSpec { model_type = 3 (UNIGRAM=1 BPE=2), treat_whitespace_as_suffix = 24, byte_fallback = 35 }
// NormalizerSpec { name = 1, precompiled_charsmap = 2, add_dummy_prefix = 3, remove_extra_whitespaces = 4, escape_whitespaces = 5 }
//
// SentencePiece's BPE encoder merges, at each step, the adjacent pair whose concatenation is the piece with
// the highest score (leftmost on ties). We express that as merge rules: every split of every piece into two
// pieces is a rule, ranked by the merged piece's score, so the same engine runs both formats.

import type { MergeRule } from "./bpe.ts";
import { llamaDecoderSteps } from "./decode.ts";
import type { AddedToken, TokenizerSpec } from "./spec.ts";

export const PieceType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

class Reader {
  pos = 0;
  readonly buf: Uint8Array;
  readonly end: number;
  constructor(buf: Uint8Array, end = buf.length) {
    this.buf = buf;
    this.end = end;
  }
  varint(): number {
    let result = 0;
    let mul = 1;
    for (;;) {
      if (this.pos >= this.end) throw new Error("tokenizer.model: truncated varint");
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
      if (mul > 2 ** 63) throw new Error("tokenizer.model: varint too long");
    }
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) {
      const len = this.varint(); // not `pos += varint()`: that reads pos before varint() advances it
      this.pos += len;
    }
    else if (wire === 5) this.pos += 4;
    else throw new Error(`tokenizer.model: unsupported protobuf wire type ${wire} at byte ${this.pos}`);
    if (this.pos > this.end) throw new Error("tokenizer.model: truncated field");
  }
  sub(): Reader {
    const len = this.varint();
    const r = new Reader(this.buf, this.pos + len);
    r.pos = this.pos;
    if (r.end > this.end) throw new Error("tokenizer.model: truncated message");
    this.pos += len;
    return r;
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

export interface SpmPiece {
  piece: string;
  score: number;
  type: number;
}

export interface SpmModel {
  pieces: SpmPiece[];
  modelType: number;
  byteFallback: boolean;
  treatWhitespaceAsSuffix: boolean;
  normalizerName: string;
  hasCharsmap: boolean;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

export function parseSpmModel(bytes: Uint8Array): SpmModel {
  const r = new Reader(bytes);
  const m: SpmModel = {
    pieces: [],
    modelType: 1, // proto default: UNIGRAM
    byteFallback: false,
    treatWhitespaceAsSuffix: false,
    normalizerName: "",
    hasCharsmap: false,
    addDummyPrefix: true,
    removeExtraWhitespaces: true,
    escapeWhitespaces: true,
  };
  const f32 = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  while (r.pos < r.end) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (field === 1 && wire === 2) {
      const p = r.sub();
      const sp: SpmPiece = { piece: "", score: 0, type: PieceType.NORMAL };
      while (p.pos < p.end) {
        const k = p.varint();
        if (k === (1 << 3) + 2) {
          const len = p.varint();
          sp.piece = utf8.decode(bytes.subarray(p.pos, p.pos + len));
          p.pos += len;
        } else if (k === (2 << 3) + 5) {
          sp.score = f32.getFloat32(p.pos, true);
          p.pos += 4;
        } else if (k === (3 << 3) + 0) sp.type = p.varint();
        else p.skip(k & 7);
      }
      m.pieces.push(sp);
    } else if (field === 2 && wire === 2) {
      const t = r.sub();
      while (t.pos < t.end) {
        const k = t.varint();
        const f = Math.floor(k / 8);
        if (f === 3 && (k & 7) === 0) m.modelType = t.varint();
        else if (f === 24 && (k & 7) === 0) m.treatWhitespaceAsSuffix = t.varint() !== 0;
        else if (f === 35 && (k & 7) === 0) m.byteFallback = t.varint() !== 0;
        else t.skip(k & 7);
      }
    } else if (field === 3 && wire === 2) {
      const n = r.sub();
      while (n.pos < n.end) {
        const k = n.varint();
        const f = Math.floor(k / 8);
        if (f === 1 && (k & 7) === 2) {
          const len = n.varint();
          m.normalizerName = utf8.decode(bytes.subarray(n.pos, n.pos + len));
          n.pos += len;
        } else if (f === 2 && (k & 7) === 2) {
          const len = n.varint();
          m.hasCharsmap = len > 0;
          n.pos += len;
        } else if (f === 3 && (k & 7) === 0) m.addDummyPrefix = n.varint() !== 0;
        else if (f === 4 && (k & 7) === 0) m.removeExtraWhitespaces = n.varint() !== 0;
        else if (f === 5 && (k & 7) === 0) m.escapeWhitespaces = n.varint() !== 0;
        else n.skip(k & 7);
      }
    } else r.skip(wire);
  }
  if (m.pieces.length === 0) throw new Error("tokenizer.model: no pieces (is this a SentencePiece model file?)");
  return m;
}

export function specFromSpm(bytes: Uint8Array): TokenizerSpec {
  const m = parseSpmModel(bytes);
  if (m.modelType !== 2) throw new Error(`tokenizer.model: trainer_spec.model_type is ${m.modelType === 1 ? "UNIGRAM" : m.modelType}; only BPE models are supported`);
  if (m.treatWhitespaceAsSuffix) throw new Error("tokenizer.model: trainer_spec.treat_whitespace_as_suffix is set; it is not supported");
  if (!m.escapeWhitespaces) throw new Error("tokenizer.model: normalizer_spec.escape_whitespaces is false; it is not supported");
  if (m.hasCharsmap && m.normalizerName !== "identity") {
    throw new Error(`tokenizer.model: normalizer_spec.name is ${JSON.stringify(m.normalizerName)}; only the identity normalizer is supported (train with --normalization_rule_name=identity)`);
  }
  const pieces = m.pieces.map((p) => p.piece);
  const scores = Float32Array.from(m.pieces, (p) => p.score);
  const pieceToId = new Map<string, number>();
  let unkId = -1;
  const added: AddedToken[] = [];
  m.pieces.forEach((p, i) => {
    if (p.type === PieceType.UNKNOWN) unkId = i;
    if (p.type === PieceType.CONTROL || p.type === PieceType.UNKNOWN) {
      added.push({ id: i, content: p.piece, special: true, lstrip: false, rstrip: false });
    }
    if (p.type === PieceType.NORMAL || p.type === PieceType.USER_DEFINED || p.type === PieceType.UNUSED) {
      if (!pieceToId.has(p.piece)) pieceToId.set(p.piece, i);
    }
  });
  if (m.pieces.some((p) => p.type === PieceType.USER_DEFINED)) {
    throw new Error("tokenizer.model: user-defined symbols are not supported yet");
  }
  // rank of a merged piece = its position in descending score order (equal scores share a rank)
  const order = m.pieces.map((_, i) => i).filter((i) => m.pieces[i].type === PieceType.NORMAL);
  order.sort((a, b) => scores[b] - scores[a] || a - b);
  const rankOf = new Int32Array(pieces.length).fill(-1);
  let rank = 0;
  for (let k = 0; k < order.length; k++) {
    if (k > 0 && scores[order[k]] !== scores[order[k - 1]]) rank = k;
    rankOf[order[k]] = rank;
  }
  const merges: MergeRule[] = [];
  for (const id of order) {
    const p = pieces[id];
    // split only between code points
    for (let i = 1; i < p.length; i++) {
      const c = p.charCodeAt(i);
      if (c >= 0xdc00 && c <= 0xdfff) continue;
      const left = pieceToId.get(p.slice(0, i));
      const right = pieceToId.get(p.slice(i));
      if (left !== undefined && right !== undefined) merges.push({ left, right, merged: id, rank: rankOf[id] });
    }
  }
  merges.sort((a, b) => a.rank - b.rank);
  const bos = m.pieces.findIndex((p) => p.type === PieceType.CONTROL && p.piece === "<s>");
  const eos = m.pieces.findIndex((p) => p.type === PieceType.CONTROL && p.piece === "</s>");
  return {
    model: { pieces, merges, unkId, byteFallback: m.byteFallback, fuseUnk: true },
    addedTokens: added,
    prepend: m.addDummyPrefix ? "always" : "never",
    removeExtraWhitespaces: m.removeExtraWhitespaces,
    decoder: llamaDecoderSteps(m.addDummyPrefix),
    bosId: bos,
    eosId: eos,
    addBos: bos >= 0,
    addEos: false,
    parseSpecial: false,
    scores,
  };
}
