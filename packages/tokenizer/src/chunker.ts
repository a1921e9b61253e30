// Word-level cache in front of the merge loop.
//
// When no vocabulary piece contains a non-space followed by a space (checked at load: `BpeModel.chunkSafe`),
// no merge can cross the boundary in front of a "▁" that follows a non-"▁". Text therefore splits into
// chunks "▁*[^▁]*" that encode independently, and natural text repeats the same few thousand chunks.
// The cache is an open-addressing table over typed-array pools: looking up a chunk hashes and compares
// its code units in place, so a hit allocates nothing (no substring, no Map key).

import { BpeModel, IntBuffer } from "./bpe.ts";

const SPACE = 0x20;
const META = 0x2581;
/** Longer chunks are encoded directly: they are rare, and caching them would evict useful entries. */
const MAX_CACHED_UNITS = 48;
/** The table starts small (cheap for a browser page) and doubles up to this many entries, then starts over. */
const MAX_ENTRIES = 1 << 20;
const INITIAL_ENTRIES = 1 << 12;

function isSpace(c: number): boolean {
  return c === SPACE || c === META;
}

export class ChunkCache {
  private slots = new Int32Array(INITIAL_ENTRIES * 2); // entry index + 1, 0 = empty; kept at most half full
  private mask = INITIAL_ENTRIES * 2 - 1;
  private count = 0;
  private capacity = INITIAL_ENTRIES;
  private entHash = new Int32Array(INITIAL_ENTRIES);
  private entText = new Int32Array(INITIAL_ENTRIES);
  private entLen = new Int32Array(INITIAL_ENTRIES); // 2 * length + (1 if encoded with the "▁" prefix)
  private entIds = new Int32Array(INITIAL_ENTRIES);
  private entIdsLen = new Int32Array(INITIAL_ENTRIES);
  private textPool = new Uint16Array(1 << 16);
  private textUsed = 0;
  private idsPool = new Int32Array(1 << 15);
  private idsUsed = 0;
  private readonly scratch = new IntBuffer(64);

  private readonly model: BpeModel;

  constructor(model: BpeModel) {
    this.model = model;
  }

  /** Doubles the entry arrays and rehashes the slot table. */
  private growEntries(): void {
    const cap = this.capacity * 2;
    const g = (a: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> => {
      const b = new Int32Array(cap);
      b.set(a);
      return b;
    };
    this.entHash = g(this.entHash);
    this.entText = g(this.entText);
    this.entLen = g(this.entLen);
    this.entIds = g(this.entIds);
    this.entIdsLen = g(this.entIdsLen);
    this.capacity = cap;
    this.slots = new Int32Array(cap * 2);
    this.mask = cap * 2 - 1;
    for (let e = 0; e < this.count; e++) {
      const h = this.entHash[e];
      let s = (h ^ (h >>> 16)) & this.mask;
      while (this.slots[s] !== 0) s = (s + 1) & this.mask;
      this.slots[s] = e + 1;
    }
  }

  clear(): void {
    this.slots.fill(0);
    this.count = 0;
    this.textUsed = 0;
    this.idsUsed = 0;
  }

  /** Encodes one normalized segment text[start, end), with a leading "▁" when `prefix`, appending to `out`. */
  encodeSegment(text: string, start: number, end: number, prefix: boolean, out: IntBuffer): void {
    const model = this.model;
    if (!model.chunkSafe) {
      model.encodeRun(text, start, end, prefix, out);
      return;
    }
    let i = start;
    let first = true;
    while (i < end || (first && prefix)) {
      const cs = i;
      while (i < end && isSpace(text.charCodeAt(i))) i++;
      while (i < end && !isSpace(text.charCodeAt(i))) i++;
      this.encodeChunk(text, cs, i, first && prefix, out);
      first = false;
    }
  }

  private encodeChunk(text: string, start: number, end: number, prefix: boolean, out: IntBuffer): void {
    const len = end - start;
    if (len > MAX_CACHED_UNITS) {
      this.model.encodeRun(text, start, end, prefix, out);
      return;
    }
    let h = prefix ? 0x3c6ef372 : 0x811c9dc5;
    for (let i = start; i < end; i++) {
      let c = text.charCodeAt(i);
      if (c === SPACE) c = META;
      h = Math.imul(h ^ c, 0x01000193);
    }
    h ^= len;
    const key = 2 * len + (prefix ? 1 : 0); // the prefix flag is part of the key, not only of the hash
    const mask = this.mask;
    const pool = this.textPool;
    let s = (h ^ (h >>> 16)) & mask;
    for (;;) {
      const e = this.slots[s] - 1;
      if (e < 0) break;
      if (this.entHash[e] === h && this.entLen[e] === key) {
        let off = this.entText[e];
        let same = true;
        for (let i = start; i < end; i++, off++) {
          let c = text.charCodeAt(i);
          if (c === SPACE) c = META;
          if (pool[off] !== c) {
            same = false;
            break;
          }
        }
        if (same) {
          const n = this.entIdsLen[e];
          const from = this.entIds[e];
          out.reserve(n);
          const o = out.data;
          const ids = this.idsPool;
          let k = out.length;
          for (let j = 0; j < n; j++) o[k++] = ids[from + j];
          out.length = k;
          return;
        }
      }
      s = (s + 1) & mask;
    }
    // miss: run the merge loop, then remember the result
    const tmp = this.scratch;
    tmp.length = 0;
    this.model.encodeRun(text, start, end, prefix, tmp);
    const n = tmp.length;
    const src = tmp.data;
    out.reserve(n);
    const o = out.data;
    for (let j = 0, k = out.length; j < n; j++, k++) o[k] = src[j];
    out.length += n;
    if (this.count >= this.capacity) {
      if (this.capacity < MAX_ENTRIES) this.growEntries();
      else this.clear();
      s = (h ^ (h >>> 16)) & this.mask;
    }
    if (this.textUsed + len > this.textPool.length) this.textPool = grow16(this.textPool, this.textUsed + len);
    if (this.idsUsed + n > this.idsPool.length) this.idsPool = grow32(this.idsPool, this.idsUsed + n);
    const e = this.count++;
    this.entHash[e] = h;
    this.entLen[e] = key;
    this.entText[e] = this.textUsed;
    const tp = this.textPool;
    for (let i = start; i < end; i++) {
      const c = text.charCodeAt(i);
      tp[this.textUsed++] = c === SPACE ? META : c;
    }
    this.entIds[e] = this.idsUsed;
    this.entIdsLen[e] = n;
    const ids = this.idsPool;
    for (let j = 0, k = this.idsUsed; j < n; j++, k++) ids[k] = src[j];
    this.idsUsed += n;
    // s is the empty slot found by the probe (or the home slot after a grow or clear)
    while (this.slots[s] !== 0) s = (s + 1) & this.mask;
    this.slots[s] = e + 1;
  }
}

function grow16(a: Uint16Array<ArrayBuffer>, need: number): Uint16Array<ArrayBuffer> {
  let cap = a.length * 2;
  while (cap < need) cap *= 2;
  const b = new Uint16Array(cap);
  b.set(a);
  return b;
}

function grow32(a: Int32Array<ArrayBuffer>, need: number): Int32Array<ArrayBuffer> {
  let cap = a.length * 2;
  while (cap < need) cap *= 2;
  const b = new Int32Array(cap);
  b.set(a);
  return b;
}
