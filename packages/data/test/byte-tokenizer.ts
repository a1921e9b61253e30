/** A trivial byte-level tokenizer for tests: id = UTF-8 byte + 3; 0 unk, 1 BOS, 2 EOS. */
import type { TokenizerLike } from "@tinyllama/data";

export const EOS = 2;
export const BOS = 1;

export function byteTokenizer(vocabSize = 259): TokenizerLike {
  const enc = new TextEncoder();
  return {
    encode(text: string): Int32Array {
      const b = enc.encode(text);
      const out = new Int32Array(b.length);
      for (let i = 0; i < b.length; i++) out[i] = b[i]! + 3;
      return out;
    },
    eosId: EOS,
    bosId: BOS,
    vocabSize,
    id: `bytes-${vocabSize}`,
  };
}

export function decodeBytes(ids: ArrayLike<number>): string {
  return new TextDecoder().decode(Uint8Array.from(Array.from(ids, (t) => t - 3)));
}

/** Worker entry point (prepare's TokenizerModule). `fail` makes encode throw, to test error paths. */
export function createTokenizer(options: { vocabSize?: number; failOn?: string; outOfRange?: boolean } = {}): TokenizerLike {
  const tok = byteTokenizer(options.vocabSize);
  const base = tok.encode.bind(tok);
  return {
    ...tok,
    encode(text: string) {
      if (options.failOn && text.includes(options.failOn)) throw new Error(`refusing to encode '${options.failOn}'`);
      const ids = base(text) as Int32Array;
      if (options.outOfRange && ids.length > 0) ids[0] = tok.vocabSize;
      return ids;
    },
  };
}
