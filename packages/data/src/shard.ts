/**
 * Shard files on disk. Reading maps the file (Bun.mmap) and returns a zero-copy typed view; on
 * runtimes without Bun.mmap it falls back to reading the file. Writing goes to a temporary name
 * and is renamed into place, so a reader never sees half a shard under its final name.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import {
  HEADER_BYTES,
  bytesPerToken,
  decodeHeader,
  dtypeForVocab,
  encodeHeader,
  hasMagic,
  packTokens,
  requireLittleEndian,
  type TokenDType,
} from "./format.ts";

export interface Shard {
  path: string;
  /** "tlshard" for a TLSHARD file, "raw-uint16" for a headerless nanoGPT / llama2.c .bin */
  format: "tlshard" | "raw-uint16";
  dtype: TokenDType;
  /** 0 when unknown (raw files carry no vocabulary size). */
  vocabSize: number;
  tokens: Uint16Array | Uint32Array;
}

function mapFile(path: string): Uint8Array {
  const size = statSync(path).size;
  if (size === 0) return new Uint8Array(0); // mmap of an empty file fails with EINVAL
  const bun = (globalThis as { Bun?: { mmap(path: string, opts?: { shared?: boolean }): Uint8Array } }).Bun;
  if (bun) return bun.mmap(path, { shared: false });
  return readFileSync(path);
}

function requireFile(path: string, who: string): void {
  if (!existsSync(path)) throw new Error(`${who}: '${path}' does not exist`);
  if (!statSync(path).isFile()) throw new Error(`${who}: '${path}' is not a file`);
}

/** Maps a TLSHARD file and checks its magic, version, dtype and size. The token view aliases the mapping. */
export function readShard(path: string): Shard {
  requireLittleEndian();
  requireFile(path, "readShard");
  const bytes = mapFile(path);
  if (!hasMagic(bytes)) throw new Error(`readShard: '${path}' is not a TLSHARD file (bad magic); raw uint16 token files are read by openTokenFile / DataLoader`);
  const h = decodeHeader(bytes, bytes.length, path);
  const Ctor = h.dtype === "uint16" ? Uint16Array : Uint32Array;
  const tokens = new Ctor(bytes.buffer as ArrayBuffer, bytes.byteOffset + HEADER_BYTES, h.count);
  return { path, format: "tlshard", dtype: h.dtype, vocabSize: h.vocabSize, tokens };
}

/** A TLSHARD file, or (no magic) a raw little-endian uint16 token file as nanoGPT and llama2.c write them. */
export function openTokenFile(path: string): Shard {
  requireLittleEndian();
  requireFile(path, "openTokenFile");
  const bytes = mapFile(path);
  if (hasMagic(bytes)) return readShard(path);
  if (bytes.length % 2 !== 0)
    throw new Error(`${path}: no TLSHARD magic, so it was read as raw uint16 tokens, but its size (${bytes.length} bytes) is odd; is it really a token file?`);
  const tokens = bytes.length === 0 ? new Uint16Array(0) : new Uint16Array(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.length / 2);
  return { path, format: "raw-uint16", dtype: "uint16", vocabSize: 0, tokens };
}

/**
 * Streams tokens into one shard file: header first with count 0, tokens appended, the real count
 * patched in by close(), then an atomic rename from `<path>.tmp`.
 */
export class ShardWriter {
  readonly dtype: TokenDType;
  #fd: number;
  #count = 0;
  #buf: Uint16Array | Uint32Array;
  #fill = 0;
  #closed = false;
  readonly #tmp: string;

  constructor(
    readonly path: string,
    readonly vocabSize: number,
    bufferTokens = 1 << 20,
  ) {
    requireLittleEndian();
    this.dtype = dtypeForVocab(vocabSize);
    this.#buf = this.dtype === "uint16" ? new Uint16Array(bufferTokens) : new Uint32Array(bufferTokens);
    this.#tmp = `${path}.tmp`;
    this.#fd = openSync(this.#tmp, "w");
    writeSync(this.#fd, encodeHeader({ dtype: this.dtype, count: 0, vocabSize }));
  }

  get count(): number {
    return this.#count + this.#fill;
  }

  /** Appends ids (validated against the vocabulary). `where` names their origin in errors. */
  write(tokens: ArrayLike<number>, where: string | (() => string) = this.path): void {
    if (this.#closed) throw new Error(`ShardWriter: '${this.path}' is already closed`);
    let off = 0;
    while (off < tokens.length) {
      const n = Math.min(tokens.length - off, this.#buf.length - this.#fill);
      const part = ArrayBuffer.isView(tokens) ? (tokens as unknown as Int32Array).subarray(off, off + n) : Array.prototype.slice.call(tokens, off, off + n);
      packTokens(part, this.#buf, this.#fill, this.vocabSize, where);
      this.#fill += n;
      off += n;
      if (this.#fill === this.#buf.length) this.#flush();
    }
  }

  #flush(): void {
    if (this.#fill === 0) return;
    const bytes = new Uint8Array(this.#buf.buffer, 0, this.#fill * bytesPerToken(this.dtype));
    let done = 0;
    while (done < bytes.length) done += writeSync(this.#fd, bytes, done, bytes.length - done);
    this.#count += this.#fill;
    this.#fill = 0;
  }

  /** Flushes, writes the final header and moves the file into place. Returns the token count. */
  close(): number {
    if (this.#closed) return this.#count;
    this.#flush();
    writeSync(this.#fd, encodeHeader({ dtype: this.dtype, count: this.#count, vocabSize: this.vocabSize }), 0, HEADER_BYTES, 0);
    const size = fstatSync(this.#fd).size;
    closeSync(this.#fd);
    this.#closed = true;
    const expected = HEADER_BYTES + this.#count * bytesPerToken(this.dtype);
    if (size !== expected) throw new Error(`ShardWriter: '${this.#tmp}' is ${size} bytes after writing, expected ${expected}`);
    renameSync(this.#tmp, this.path);
    return this.#count;
  }

  /** Drops the partial file (on errors). */
  abort(): void {
    if (!this.#closed) {
      closeSync(this.#fd);
      this.#closed = true;
    }
    rmSync(this.#tmp, { force: true });
  }
}

/** Writes a whole shard at once. The dtype follows the vocabulary (uint16 when vocabSize <= 65536). */
export function writeShard(path: string, tokens: ArrayLike<number>, opts: { vocabSize: number }): void {
  const w = new ShardWriter(path, opts.vocabSize, Math.max(1, Math.min(tokens.length, 1 << 20)));
  try {
    w.write(tokens);
    w.close();
  } catch (e) {
    w.abort();
    throw e;
  }
}

