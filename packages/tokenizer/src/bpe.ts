// The BPE engine: vocabulary, merge table, and the merge loop over one normalized run of text.
//
// Everything here works on token ids and UTF-16 code units; no strings are built while encoding.
// The merge loop is the classic O(n log n) one: a binary min-heap of (rank, left position) over the
// adjacent pairs of a doubly linked list of symbols, with stale heap entries skipped on pop. Words
// that were seen before come from a chunk cache (see `Chunker`), so the loop runs once per distinct word.

/** One merge rule: `left + right -> merged`, applied in increasing `rank` (ties: leftmost first). */
export interface MergeRule {
  left: number;
  right: number;
  merged: number;
  rank: number;
}

/** Options of the model part of a tokenizer (Hugging Face "model" / SentencePiece "ModelProto"). */
export interface BpeModelSpec {
  /** id -> piece, as stored in the vocabulary (spaces written as U+2581). */
  pieces: string[];
  merges: MergeRule[];
  unkId: number;
  byteFallback: boolean;
  fuseUnk: boolean;
}

const SPACE = 0x20;
const META = 0x2581; // "▁", SentencePiece's visible space
const REPLACEMENT = 0xfffd;
// Heap entries pack (rank, pos) into one float64: rank * 2^26 + pos, exact below 2^53.
const POS_BITS = 67108864; // 2^26
const MAX_SYMBOLS = POS_BITS - 1;

/** Growable Int32 scratch buffer; grows by doubling, never shrinks, so steady state does not allocate. */
export class IntBuffer {
  data: Int32Array;
  length = 0;
  constructor(capacity = 1024) {
    this.data = new Int32Array(capacity);
  }
  reserve(extra: number): void {
    const need = this.length + extra;
    if (need <= this.data.length) return;
    let cap = this.data.length * 2;
    while (cap < need) cap *= 2;
    const next = new Int32Array(cap);
    next.set(this.data.subarray(0, this.length));
    this.data = next;
  }
  push(v: number): void {
    if (this.length === this.data.length) this.reserve(1);
    this.data[this.length++] = v;
  }
  toArray(): Int32Array {
    return this.data.slice(0, this.length);
  }
}

export class BpeModel {
  readonly pieces: string[];
  readonly pieceToId: Map<string, number>;
  readonly merges: MergeRule[];
  readonly unkId: number;
  readonly byteFallback: boolean;
  readonly fuseUnk: boolean;
  /** byte value -> id of "<0xNN>", or -1. */
  readonly byteIds: Int32Array;
  /** id -> byte value for "<0xNN>" pieces, else -1. */
  readonly idToByte: Int16Array;
  // single code point -> id, BMP in a flat table, astral in a map
  private readonly bmp: Int32Array;
  private readonly astral: Map<number, number>;
  // open-addressing pair table: (left, right) -> index into rank/merged arrays
  private readonly pairLeft: Int32Array;
  private readonly pairRight: Int32Array;
  private readonly pairRank: Int32Array;
  private readonly pairMerged: Int32Array;
  private readonly pairMask: number;
  /** True when no piece has a non-space followed by a space, so runs "▁*word" can be encoded independently. */
  readonly chunkSafe: boolean;

  // merge-loop scratch, reused across calls
  private sym = new Int32Array(256);
  private next = new Int32Array(256);
  private prev = new Int32Array(256);
  private heap = new Float64Array(512);

  constructor(spec: BpeModelSpec) {
    this.pieces = spec.pieces;
    this.merges = spec.merges;
    this.unkId = spec.unkId;
    this.byteFallback = spec.byteFallback;
    this.fuseUnk = spec.fuseUnk;
    const V = spec.pieces.length;
    this.pieceToId = new Map();
    for (let i = 0; i < V; i++) if (!this.pieceToId.has(spec.pieces[i])) this.pieceToId.set(spec.pieces[i], i);
    this.byteIds = new Int32Array(256).fill(-1);
    this.idToByte = new Int16Array(V).fill(-1);
    for (let b = 0; b < 256; b++) {
      const id = this.pieceToId.get(byteToken(b));
      if (id !== undefined) {
        this.byteIds[b] = id;
        this.idToByte[id] = b;
      }
    }
    if (this.byteFallback) {
      for (let b = 0; b < 256; b++) {
        if (this.byteIds[b] < 0) throw new Error(`byte_fallback is set but the vocabulary has no piece ${byteToken(b)}`);
      }
    }
    this.bmp = new Int32Array(65536).fill(-1);
    this.astral = new Map();
    let chunkSafe = true;
    for (let id = 0; id < V; id++) {
      const p = spec.pieces[id];
      const cp = p.codePointAt(0);
      if (cp !== undefined && p.length === (cp > 0xffff ? 2 : 1)) {
        if (cp < 65536) {
          if (this.bmp[cp] < 0) this.bmp[cp] = id;
        } else if (!this.astral.has(cp)) this.astral.set(cp, id);
      }
      for (let i = 1; i < p.length; i++) {
        if (p.charCodeAt(i) === META && p.charCodeAt(i - 1) !== META) chunkSafe = false;
      }
    }
    this.chunkSafe = chunkSafe;
    let size = 16;
    while (size < spec.merges.length * 2) size *= 2;
    this.pairMask = size - 1;
    this.pairLeft = new Int32Array(size).fill(-1);
    this.pairRight = new Int32Array(size);
    this.pairRank = new Int32Array(size);
    this.pairMerged = new Int32Array(size);
    for (const m of spec.merges) {
      if (m.rank < 0 || m.rank >= POS_BITS) throw new Error(`merge rank ${m.rank} out of range`);
      let h = hashPair(m.left, m.right) & this.pairMask;
      while (this.pairLeft[h] >= 0) {
        if (this.pairLeft[h] === m.left && this.pairRight[h] === m.right) break;
        h = (h + 1) & this.pairMask;
      }
      if (this.pairLeft[h] >= 0) continue; // duplicate pair: the first (lowest rank) wins, as in Hugging Face
      this.pairLeft[h] = m.left;
      this.pairRight[h] = m.right;
      this.pairRank[h] = m.rank;
      this.pairMerged[h] = m.merged;
    }
  }

  get vocabSize(): number {
    return this.pieces.length;
  }

  /** Id of the piece made of exactly this code point, or -1. */
  charId(cp: number): number {
    if (cp < 65536) return this.bmp[cp];
    const id = this.astral.get(cp);
    return id === undefined ? -1 : id;
  }

  private findPair(a: number, b: number): number {
    let h = hashPair(a, b) & this.pairMask;
    for (;;) {
      const l = this.pairLeft[h];
      if (l < 0) return -1;
      if (l === a && this.pairRight[h] === b) return h;
      h = (h + 1) & this.pairMask;
    }
  }

  /** Rank of the merge (a, b), or -1 when there is none. */
  pairRankOf(a: number, b: number): number {
    const h = this.findPair(a, b);
    return h < 0 ? -1 : this.pairRank[h];
  }

  private growScratch(n: number): void {
    if (n <= this.sym.length) return;
    let cap = this.sym.length;
    while (cap < n) cap *= 2;
    this.sym = new Int32Array(cap);
    this.next = new Int32Array(cap);
    this.prev = new Int32Array(cap);
    this.heap = new Float64Array(cap * 2);
  }

  /**
   * Encodes text[start, end) as one normalized run (spaces read as "▁"), with an extra leading "▁"
   * when `prefix` is set, and appends the ids to `out`.
   */
  encodeRun(text: string, start: number, end: number, prefix: boolean, out: IntBuffer): void {
    // Upper bound on symbols: 4 byte tokens per UTF-16 unit pair, at most 3 per lone unit.
    const bound = (end - start) * 3 + 4;
    if (bound > MAX_SYMBOLS) throw new Error(`text run of ${end - start} characters is too long to encode in one piece`);
    this.growScratch(bound);
    const sym = this.sym;
    let n = 0;
    let lastUnk = false;
    if (prefix) {
      const id = this.bmp[META];
      if (id >= 0) {
        sym[n++] = id;
      } else n = this.pushUnknown(META, n, false);
      lastUnk = id < 0;
    }
    for (let i = start; i < end; i++) {
      let cp = text.charCodeAt(i);
      if (cp === SPACE) cp = META;
      else if (cp >= 0xd800 && cp <= 0xdfff) {
        if (cp <= 0xdbff && i + 1 < end) {
          const lo = text.charCodeAt(i + 1);
          if (lo >= 0xdc00 && lo <= 0xdfff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            i++;
          } else cp = REPLACEMENT;
        } else cp = REPLACEMENT;
      }
      const id = cp < 65536 ? this.bmp[cp] : this.charId(cp);
      if (id >= 0) {
        sym[n++] = id;
        lastUnk = false;
      } else {
        n = this.pushUnknown(cp, n, lastUnk);
        lastUnk = true;
      }
    }
    this.mergeSymbols(n, out);
  }

  private pushUnknown(cp: number, n: number, afterUnk: boolean): number {
    const sym = this.sym;
    if (this.byteFallback) {
      const b = this.byteIds;
      if (cp < 0x80) sym[n++] = b[cp];
      else if (cp < 0x800) {
        sym[n++] = b[0xc0 | (cp >> 6)];
        sym[n++] = b[0x80 | (cp & 63)];
      } else if (cp < 0x10000) {
        sym[n++] = b[0xe0 | (cp >> 12)];
        sym[n++] = b[0x80 | ((cp >> 6) & 63)];
        sym[n++] = b[0x80 | (cp & 63)];
      } else {
        sym[n++] = b[0xf0 | (cp >> 18)];
        sym[n++] = b[0x80 | ((cp >> 12) & 63)];
        sym[n++] = b[0x80 | ((cp >> 6) & 63)];
        sym[n++] = b[0x80 | (cp & 63)];
      }
      return n;
    }
    if (this.unkId < 0) throw new Error(`character U+${cp.toString(16).toUpperCase()} is not in the vocabulary and the model has no unk token`);
    if (!(this.fuseUnk && afterUnk)) sym[n++] = this.unkId;
    return n;
  }

  /** The merge loop over sym[0, n): repeatedly merge the lowest-rank adjacent pair, leftmost first. */
  private mergeSymbols(n: number, out: IntBuffer): void {
    const sym = this.sym, next = this.next, prev = this.prev;
    let heap = this.heap;
    let size = 0;
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    for (let i = 0; i + 1 < n; i++) {
      const h = this.findPair(sym[i], sym[i + 1]);
      if (h >= 0) size = heapPush(heap, size, this.pairRank[h] * POS_BITS + i);
    }
    while (size > 0) {
      const top = heap[0];
      size = heapPop(heap, size);
      const rank = Math.floor(top / POS_BITS);
      const pos = top - rank * POS_BITS;
      if (sym[pos] < 0) continue;
      const nx = next[pos];
      if (nx < 0) continue;
      const h = this.findPair(sym[pos], sym[nx]);
      if (h < 0 || this.pairRank[h] !== rank) continue;
      sym[pos] = this.pairMerged[h];
      sym[nx] = -1;
      const nn = next[nx];
      next[pos] = nn;
      if (nn >= 0) prev[nn] = pos;
      if (size + 2 > heap.length) {
        const grown = new Float64Array(heap.length * 2);
        grown.set(heap);
        heap = this.heap = grown;
      }
      const p = prev[pos];
      if (p >= 0) {
        const hp = this.findPair(sym[p], sym[pos]);
        if (hp >= 0) size = heapPush(heap, size, this.pairRank[hp] * POS_BITS + p);
      }
      if (nn >= 0) {
        const hn = this.findPair(sym[pos], sym[nn]);
        if (hn >= 0) size = heapPush(heap, size, this.pairRank[hn] * POS_BITS + pos);
      }
    }
    out.reserve(n);
    const o = out.data;
    let k = out.length;
    for (let i = n > 0 ? 0 : -1; i >= 0; i = next[i]) o[k++] = sym[i];
    out.length = k;
  }
}

function hashPair(a: number, b: number): number {
  let h = Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x7f4a7c15, 0x85ebca77);
  h ^= h >>> 15;
  return h >>> 0;
}

function heapPush(heap: Float64Array, size: number, v: number): number {
  let i = size;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    const pv = heap[parent];
    if (pv <= v) break;
    heap[i] = pv;
    i = parent;
  }
  heap[i] = v;
  return size + 1;
}

function heapPop(heap: Float64Array, size: number): number {
  const last = heap[--size];
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= size) break;
    const r = l + 1;
    const c = r < size && heap[r] < heap[l] ? r : l;
    if (heap[c] >= last) break;
    heap[i] = heap[c];
    i = c;
  }
  heap[i] = last;
  return size;
}

/** "<0xNN>" for a byte value, uppercase hex as in Llama's vocabulary. */
export function byteToken(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;
}
