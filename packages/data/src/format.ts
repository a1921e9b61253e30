/**
 * The TLSHARD token-shard format (runtime-neutral: bytes in, bytes out).
 *
 *   offset  size  field
 *   0       8     magic "TLSHARD\0"
 *   8       4     version, u32 = 1
 *   12      4     token dtype, u32: bytes per token, 2 = uint16, 4 = uint32
 *   16      8     token count, u64
 *   24      4     vocab size, u32
 *   28      4     reserved, u32 = 0
 *   32      ...   tokens, little-endian
 * All integers little-endian. uint16 is used whenever vocab size <= 65536.
 */

export const SHARD_MAGIC = new Uint8Array([0x54, 0x4c, 0x53, 0x48, 0x41, 0x52, 0x44, 0x00]); // "TLSHARD\0"
export const SHARD_VERSION = 1;
export const HEADER_BYTES = 32;

export type TokenDType = "uint16" | "uint32";
export type TokenArray = Uint16Array | Uint32Array | Int32Array;

export interface ShardHeader {
  version: number;
  dtype: TokenDType;
  /** Tokens in the shard. */
  count: number;
  vocabSize: number;
}

export const DTYPE_CODE: Record<TokenDType, number> = { uint16: 2, uint32: 4 };

/** The narrowest dtype that holds every id of a vocabulary. */
export function dtypeForVocab(vocabSize: number): TokenDType {
  if (!Number.isInteger(vocabSize) || vocabSize < 1 || vocabSize > 0xffffffff)
    throw new RangeError(`vocabSize must be an integer in [1, 2^32), got ${vocabSize}`);
  return vocabSize <= 65536 ? "uint16" : "uint32";
}

export function bytesPerToken(dtype: TokenDType): number {
  return DTYPE_CODE[dtype];
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Typed-array views over shard bytes are little-endian only on little-endian hosts (all x86 and ARM machines we run on). */
export function requireLittleEndian(): void {
  if (!LITTLE_ENDIAN) throw new Error("TLSHARD: big-endian hosts are not supported (token views would read byte-swapped ids)");
}

export function encodeHeader(h: Omit<ShardHeader, "version">): Uint8Array {
  const buf = new Uint8Array(HEADER_BYTES);
  const dv = new DataView(buf.buffer);
  buf.set(SHARD_MAGIC, 0);
  dv.setUint32(8, SHARD_VERSION, true);
  dv.setUint32(12, DTYPE_CODE[h.dtype], true);
  dv.setBigUint64(16, BigInt(h.count), true);
  dv.setUint32(24, h.vocabSize, true);
  dv.setUint32(28, 0, true);
  return buf;
}

/** True when the bytes start with the TLSHARD magic (otherwise a file is read as raw uint16 tokens). */
export function hasMagic(bytes: Uint8Array): boolean {
  if (bytes.length < SHARD_MAGIC.length) return false;
  for (let i = 0; i < SHARD_MAGIC.length; i++) if (bytes[i] !== SHARD_MAGIC[i]) return false;
  return true;
}

/**
 * Parses and validates a header. `fileBytes` is the size of the whole file, checked against the
 * size the header implies; `name` goes into every error message.
 */
export function decodeHeader(bytes: Uint8Array, fileBytes: number, name: string): ShardHeader {
  if (!hasMagic(bytes)) throw new Error(`${name}: not a TLSHARD file (bad magic)`);
  if (bytes.length < HEADER_BYTES || fileBytes < HEADER_BYTES)
    throw new Error(`${name}: truncated TLSHARD header: expected at least ${HEADER_BYTES} bytes, file has ${fileBytes}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  const version = dv.getUint32(8, true);
  if (version !== SHARD_VERSION) throw new Error(`${name}: TLSHARD version ${version} is not supported (this reader knows version ${SHARD_VERSION})`);
  const code = dv.getUint32(12, true);
  const dtype: TokenDType | undefined = code === 2 ? "uint16" : code === 4 ? "uint32" : undefined;
  if (!dtype) throw new Error(`${name}: unknown token dtype code ${code} (expected 2 = uint16 or 4 = uint32)`);
  const count64 = dv.getBigUint64(16, true);
  if (count64 > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${name}: token count ${count64} is not a safe integer`);
  const count = Number(count64);
  const vocabSize = dv.getUint32(24, true);
  const expected = HEADER_BYTES + count * DTYPE_CODE[dtype];
  if (fileBytes < expected)
    throw new Error(`${name}: truncated shard: the header promises ${count} ${dtype} tokens, so expected ${expected} bytes, but the file has ${fileBytes}`);
  if (fileBytes > expected)
    throw new Error(`${name}: the header promises ${count} ${dtype} tokens (${expected} bytes) but the file has ${fileBytes} bytes; it is corrupt or was not written by writeShard`);
  return { version, dtype, count, vocabSize };
}

/**
 * Copies ids into a shard's token dtype, checking each is an integer in [0, vocabSize).
 * `where` names the data in the error (file, document); a function is only called on error.
 */
export function packTokens(src: ArrayLike<number>, dst: Uint16Array | Uint32Array, dstOffset: number, vocabSize: number, where: string | (() => string)): void {
  const ints = src instanceof Int32Array || src instanceof Uint16Array || src instanceof Uint32Array;
  for (let i = 0; i < src.length; i++) {
    const t = src[i]!;
    if (!(t >= 0 && t < vocabSize) || (!ints && !Number.isInteger(t)))
      throw new RangeError(`${typeof where === "function" ? where() : where}: token ${i} is ${t}, outside the vocabulary [0, ${vocabSize})`);
    dst[dstOffset + i] = t;
  }
}

/** Shard file name: train_000.bin, val_012.bin (more digits past 999). */
export function shardName(split: string, index: number): string {
  return `${split}_${String(index).padStart(3, "0")}.bin`;
}
