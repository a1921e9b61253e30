// BPE training for Llama-style vocabularies: "▁" word prefix, byte fallback with the 256 <0xNN> pieces,
// <unk>, <s>, </s>. Same layout as `spm_train --model_type=bpe --byte_fallback=true`: specials, bytes,
// merged pieces in merge order, then single characters by frequency.
//
// The corpus is cut into pre-tokens the way the encoder cuts chunks ("▁*" followed by a run of one character
// class: letters/marks, other symbols; digits alone), counted once, and BPE runs over the distinct pre-tokens
// with incremental pair counts: a max-heap of (count, pair) with lazy invalidation, and for each pair the
// list of words it occurs in, so a merge only revisits the words that contain it.

import type { MergeRule } from "./bpe.ts";
import { byteToken } from "./bpe.ts";
import { llamaStyleSpec } from "./llama2.ts";
import { Tokenizer } from "./tokenizer.ts";

export interface TrainOptions {
  /**
   * Total vocabulary size, including <unk>, <s>, </s> and the 256 byte pieces. A corpus too small to supply
   * that many merges gives a smaller vocabulary (check `vocabSize` of the result).
   */
  vocabSize: number;
  /** Fraction of character occurrences the single-character pieces must cover (SentencePiece's 0.9995). */
  characterCoverage?: number;
  /** Keep every digit a piece of its own, as Llama does. Default true. */
  splitDigits?: boolean;
  /** Longest piece, in UTF-16 code units. Default 16 (SentencePiece's max_sentencepiece_length). */
  maxPieceLength?: number;
  /** Called every few hundred merges with (merges done, merges wanted). */
  onProgress?: (done: number, total: number) => void;
}

const META = 0x2581;
const SPACE = 0x20;
// character classes for pre-tokenization
const C_SPACE = 0, C_WORD = 1, C_DIGIT = 2, C_OTHER = 3, C_CONTROL = 4;

const classCache = new Int8Array(65536).fill(-1);
const WORD_RE = /[\p{L}\p{M}]/u;
const DIGIT_RE = /\p{Nd}/u;

function charClass(cp: number): number {
  if (cp === SPACE || cp === META) return C_SPACE;
  if (cp < 0x20 || cp === 0x7f) return C_CONTROL;
  if (cp < 65536) {
    const c = classCache[cp];
    if (c >= 0) return c;
  }
  const s = String.fromCodePoint(cp);
  const c = WORD_RE.test(s) ? C_WORD : DIGIT_RE.test(s) ? C_DIGIT : C_OTHER;
  if (cp < 65536) classCache[cp] = c;
  return c;
}

function isolated(cp: number, splitDigits: boolean): boolean {
  const c = charClass(cp);
  return c === C_CONTROL || (c === C_DIGIT && splitDigits);
}

/** Counts pre-tokens of one line (a "▁" is prepended, as the encoder does). */
function countPretokens(line: string, words: Map<string, number>, splitDigits: boolean): void {
  const text = "\u2581" + line;
  const n = text.length;
  let i = 0;
  while (i < n) {
    const start = i;
    while (i < n && charClass(text.charCodeAt(i)) === C_SPACE) i++;
    // like Llama's split_digits, a digit never joins anything, not even the "▁" before it
    if (i < n && (i === start || !isolated(text.codePointAt(i) as number, splitDigits))) {
      let cp = text.codePointAt(i) as number;
      const cls = charClass(cp);
      i += cp > 0xffff ? 2 : 1;
      if (!(cls === C_CONTROL || (cls === C_DIGIT && splitDigits))) {
        while (i < n) {
          cp = text.codePointAt(i) as number;
          if (charClass(cp) !== cls) break;
          i += cp > 0xffff ? 2 : 1;
        }
      }
    }
    const w = text.slice(start, i).replaceAll(" ", "\u2581");
    words.set(w, (words.get(w) ?? 0) + 1);
  }
}

class MaxHeap {
  private a = new Float64Array(1024);
  size = 0;
  push(v: number): void {
    if (this.size === this.a.length) {
      const b = new Float64Array(this.a.length * 2);
      b.set(this.a);
      this.a = b;
    }
    const a = this.a;
    let i = this.size++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p] >= v) break;
      a[i] = a[p];
      i = p;
    }
    a[i] = v;
  }
  pop(): number {
    const a = this.a;
    const top = a[0];
    const last = a[--this.size];
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= this.size) break;
      const r = l + 1;
      const c = r < this.size && a[r] > a[l] ? r : l;
      if (a[c] <= last) break;
      a[i] = a[c];
      i = c;
    }
    a[i] = last;
    return top;
  }
}

const PAIR = 65536; // pair key = left * PAIR + right; ids stay below 2^16
const KEY_SPAN = 4294967296; // heap value = count * 2^32 + (2^32 - 1 - key): max count first, then smallest key

/** Trains a BPE tokenizer on `corpus` (a text, or lines/documents). */
export function trainBpe(corpus: string | Iterable<string>, options: TrainOptions): Tokenizer {
  const vocabSize = options.vocabSize;
  const coverage = options.characterCoverage ?? 0.9995;
  const splitDigits = options.splitDigits ?? true;
  const maxLen = options.maxPieceLength ?? 16;
  if (!Number.isInteger(vocabSize) || vocabSize < 260 || vocabSize > PAIR) throw new Error(`trainBpe: vocabSize must be an integer in 260..65536, got ${vocabSize}`);

  // 1. distinct pre-tokens with counts
  const wordCounts = new Map<string, number>();
  const lines = typeof corpus === "string" ? corpus.split("\n") : corpus;
  for (const line of lines) {
    if (typeof line !== "string") throw new Error("trainBpe: corpus must be a string or an iterable of strings");
    if (line.length > 0) countPretokens(line, wordCounts, splitDigits);
  }

  // 2. characters by frequency; keep those covering `coverage` of all occurrences (never control characters)
  const charCount = new Map<number, number>();
  let totalChars = 0;
  for (const [w, c] of wordCounts) {
    for (let i = 0; i < w.length; i++) {
      const cp = w.codePointAt(i) as number;
      if (cp > 0xffff) i++;
      charCount.set(cp, (charCount.get(cp) ?? 0) + c);
      totalChars += c;
    }
  }
  const chars = [...charCount.entries()].filter(([cp]) => charClass(cp) !== C_CONTROL).sort((a, b) => b[1] - a[1] || a[0] - b[0]);
  const symbolOf = new Map<number, number>(); // code point -> internal symbol id
  const symbolText: string[] = [];
  let covered = 0;
  for (const [cp, c] of chars) {
    if (covered / totalChars >= coverage && symbolText.length > 0) break;
    symbolOf.set(cp, symbolText.length);
    symbolText.push(String.fromCodePoint(cp));
    covered += c;
  }
  const nChars = symbolText.length;
  const nMerges = vocabSize - 3 - 256 - nChars;
  if (nMerges < 0) throw new Error(`trainBpe: vocabSize ${vocabSize} is too small for ${nChars} characters plus 259 special and byte pieces`);

  // 3. words as symbol arrays in one flat buffer; uncovered characters cut a word in two
  const wordStart: number[] = [];
  const wordLen: number[] = [];
  const wordFreq: number[] = [];
  let symbols = new Int32Array(1 << 20);
  let used = 0;
  const pushWord = (from: number, to: number, freq: number): void => {
    if (to - from < 2) return; // nothing to merge
    wordStart.push(from);
    wordLen.push(to - from);
    wordFreq.push(freq);
  };
  for (const [w, freq] of wordCounts) {
    if (used + w.length > symbols.length) {
      const b = new Int32Array(symbols.length * 2);
      b.set(symbols);
      symbols = b;
    }
    let from = used;
    for (let i = 0; i < w.length; i++) {
      const cp = w.codePointAt(i) as number;
      if (cp > 0xffff) i++;
      const s = symbolOf.get(cp);
      if (s === undefined) {
        pushWord(from, used, freq);
        from = used;
      } else symbols[used++] = s;
    }
    pushWord(from, used, freq);
  }
  wordCounts.clear();

  // 4. pair counts and occurrence lists
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, number[]>();
  const nWords = wordStart.length;
  for (let w = 0; w < nWords; w++) {
    const s = wordStart[w], e = s + wordLen[w], f = wordFreq[w];
    for (let i = s; i + 1 < e; i++) {
      const key = symbols[i] * PAIR + symbols[i + 1];
      pairCount.set(key, (pairCount.get(key) ?? 0) + f);
      const list = pairWords.get(key);
      if (list === undefined) pairWords.set(key, [w]);
      else if (list[list.length - 1] !== w) list.push(w);
    }
  }
  const heap = new MaxHeap();
  for (const [key, c] of pairCount) heap.push(c * KEY_SPAN + (KEY_SPAN - 1 - key));

  // 5. merge loop
  const merges: { left: number; right: number; merged: number }[] = [];
  const symbolByText = new Map<string, number>(symbolText.map((t, i) => [t, i]));
  const delta = new Map<number, number>();
  const addDelta = (key: number, d: number): void => {
    delta.set(key, (delta.get(key) ?? 0) + d);
  };
  while (symbolText.length - nChars < nMerges && heap.size > 0) {
    const top = heap.pop();
    const count = Math.floor(top / KEY_SPAN);
    const key = KEY_SPAN - 1 - (top - count * KEY_SPAN);
    const cur = pairCount.get(key) ?? 0;
    if (cur !== count) {
      if (cur > 0) heap.push(cur * KEY_SPAN + (KEY_SPAN - 1 - key));
      continue;
    }
    if (count <= 0) break;
    const a = Math.floor(key / PAIR), b = key - a * PAIR;
    const text = symbolText[a] + symbolText[b];
    if (text.length > maxLen || symbolText.length >= PAIR) {
      pairCount.set(key, -1); // never again
      continue;
    }
    // two different splits can make the same string ("a"+"bc", "ab"+"c"): one piece, two rules
    let c = symbolByText.get(text) ?? -1;
    if (c < 0) {
      c = symbolText.length;
      symbolText.push(text);
      symbolByText.set(text, c);
    }
    merges.push({ left: a, right: b, merged: c });
    delta.clear();
    const list = pairWords.get(key) ?? [];
    pairWords.delete(key);
    for (const w of list) {
      const s = wordStart[w];
      const len = wordLen[w];
      const f = wordFreq[w];
      // does the word still contain the pair?
      let found = false;
      for (let i = s; i + 1 < s + len; i++) {
        if (symbols[i] === a && symbols[i + 1] === b) {
          found = true;
          break;
        }
      }
      if (!found) continue;
      for (let i = s; i + 1 < s + len; i++) addDelta(symbols[i] * PAIR + symbols[i + 1], -f);
      let out = s;
      for (let i = s; i < s + len; i++) {
        if (i + 1 < s + len && symbols[i] === a && symbols[i + 1] === b) {
          symbols[out++] = c;
          i++;
        } else symbols[out++] = symbols[i];
      }
      const nl = out - s;
      wordLen[w] = nl;
      for (let i = s; i + 1 < s + nl; i++) {
        const k = symbols[i] * PAIR + symbols[i + 1];
        addDelta(k, f);
        if (symbols[i] === c || symbols[i + 1] === c) {
          const l = pairWords.get(k);
          if (l === undefined) pairWords.set(k, [w]);
          else if (l[l.length - 1] !== w) l.push(w);
        }
      }
    }
    for (const [k, d] of delta) {
      if (d === 0) continue;
      const now = (pairCount.get(k) ?? 0) + d;
      if (k === key) continue;
      pairCount.set(k, now);
      if (d > 0) heap.push(now * KEY_SPAN + (KEY_SPAN - 1 - k));
    }
    pairCount.set(key, 0);
    if (options.onProgress && merges.length % 500 === 0) options.onProgress(symbolText.length - nChars, nMerges);
  }

  // 6. final ids: <unk> <s> </s>, <0x00>..<0xFF>, merged pieces in merge order, then characters
  const pieces: string[] = ["<unk>", "<s>", "</s>"];
  for (let b = 0; b < 256; b++) pieces.push(byteToken(b));
  const finalId = new Int32Array(symbolText.length);
  for (let s = nChars; s < symbolText.length; s++) {
    finalId[s] = pieces.length;
    pieces.push(symbolText[s]);
  }
  for (let s = 0; s < nChars; s++) {
    finalId[s] = pieces.length;
    pieces.push(symbolText[s]);
  }
  const rules: MergeRule[] = merges.map((m, rank) => ({ left: finalId[m.left], right: finalId[m.right], merged: finalId[m.merged], rank }));
  return new Tokenizer(llamaStyleSpec(pieces, rules));
}
