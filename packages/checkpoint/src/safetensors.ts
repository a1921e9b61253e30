// safetensors: an 8-byte little-endian header length N, N bytes of JSON
//   {"__metadata__": {str: str}, name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
// then the data section; offsets are relative to its start. Reading memory-maps the file and validates the
// whole header before any tensor is handed out, so a truncated or corrupt file fails with one clear error
// instead of garbage weights. Writing follows the reference implementation (huggingface/safetensors):
// compact JSON, __metadata__ first, header padded with spaces to a multiple of 8, tensors back to back.

import { closeSync, fsyncSync, openSync, renameSync, statSync, unlinkSync, writeSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "./dtype.ts";

/** Float dtypes this package reads and writes, plus I32 (read-only convenience for test fixtures). */
export type Dtype = "F32" | "BF16" | "F16";
export type ReadableDtype = Dtype | "I32";

/** Byte size of every dtype the format defines, so files holding others can still be validated. */
const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1,
  U16: 2, I16: 2, F16: 2, BF16: 2,
  U32: 4, I32: 4, F32: 4,
  U64: 8, I64: 8, F64: 8,
};
const READABLE: readonly string[] = ["F32", "BF16", "F16", "I32"];

/** The reference implementation refuses headers above 100 MB; so do we (a corrupt length is usually huge). */
const MAX_HEADER = 100_000_000;

export type TensorData = Float32Array | Uint16Array | Int32Array;

export interface SafetensorsTensor {
  readonly name: string;
  readonly dtype: ReadableDtype;
  readonly shape: readonly number[];
  /**
   * The raw data: Float32Array for F32, Uint16Array of raw bits for BF16/F16, Int32Array for I32. A zero-copy view
   * into the memory-mapped file when the data is aligned for its type (always, for files we write), else a copy.
   * The mapping is private: writing into the view changes this process's copy, never the file.
   */
  readonly data: TensorData;
  /** Whether `data` views the mapped file (true) or is a copy (false, misaligned data). */
  readonly zeroCopy: boolean;
  /** The values as f32 (exact for every float dtype). Returns `data` itself for F32 tensors. */
  toFloat32(): Float32Array;
}

export interface SafetensorsFile {
  /** The file (or index.json) this was read from. */
  readonly path: string;
  /** The header's __metadata__ ({} when absent). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Tensors in data-section order (the order a writer emitted them). */
  readonly tensors: readonly SafetensorsTensor[];
  /** Lookup by name. */
  get(name: string): SafetensorsTensor | undefined;
}

export class SafetensorsError extends Error {
  override name = "SafetensorsError";
}

const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);
const fmtShape = (shape: readonly number[]): string => `[${shape.join(", ")}]`;

interface RawEntry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * Reads a .safetensors file by memory-mapping it (or, given a `*.index.json`, every shard it names; see
 * readSafetensorsIndex). Throws SafetensorsError naming the file for a truncated file (with the expected and
 * actual size), a header that is not valid JSON or lies about sizes, overlapping tensors, and dtypes other than
 * F32/BF16/F16/I32.
 */
export function readSafetensors(path: string): SafetensorsFile {
  if (path.endsWith(".index.json")) return readSafetensorsIndex(path);
  const bytes = mapFile(path);
  return parseSafetensors(bytes, path);
}

function mapFile(path: string): Uint8Array {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (e) {
    throw new SafetensorsError(`${path}: cannot open (${e instanceof Error ? e.message : String(e)})`);
  }
  // mmap of an empty file fails; an empty file is simply truncated.
  if (size < 8) throw new SafetensorsError(`${path}: truncated: a safetensors file has at least 8 bytes (the header length), this one has ${size}`);
  // Private mapping: pages are shared with the page cache until written, and writes never reach the file.
  try {
    return Bun.mmap(path, { shared: false });
  } catch (e) {
    throw new SafetensorsError(`${path}: cannot memory-map (${e instanceof Error ? e.message : String(e)})`);
  }
}

/** Parses and validates safetensors bytes (`name` is used in error messages). Exposed for in-memory data. */
export function parseSafetensors(bytes: Uint8Array, name = "<buffer>"): SafetensorsFile {
  const fail = (msg: string): never => {
    throw new SafetensorsError(`${name}: ${msg}`);
  };
  const size = bytes.byteLength;
  if (size < 8) fail(`truncated: a safetensors file has at least 8 bytes (the header length), this one has ${size}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  if (n > MAX_HEADER) fail(`header length ${n} is larger than the ${MAX_HEADER}-byte limit; this is not a safetensors file or it is corrupt`);
  if (8 + n > size) fail(`truncated: the header alone needs ${8 + n} bytes, the file has ${size}`);

  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    fail(`header is not valid UTF-8 JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) fail("header must be a JSON object");
  const header = json as Record<string, unknown>;

  let metadata: Record<string, string> = {};
  const entries: RawEntry[] = [];
  for (const [key, value] of Object.entries(header)) {
    if (key === "__metadata__") {
      if (typeof value !== "object" || value === null || Array.isArray(value)) fail("__metadata__ must be an object of strings");
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== "string") fail(`__metadata__.${k} must be a string, got ${JSON.stringify(v)}`);
      }
      metadata = value as Record<string, string>;
      continue;
    }
    entries.push(parseEntry(key, value, fail));
  }

  // Size first: a truncated file must be reported as such, not as whatever the first bad tensor looks like.
  const dataStart = 8 + n;
  const dataSize = size - dataStart;
  const needed = entries.reduce((m, e) => Math.max(m, e.end), 0);
  if (needed > dataSize) {
    fail(`truncated: the header describes ${dataStart + needed} bytes of file, the file has ${size}`);
  }
  for (const e of entries) {
    const bytesPer = DTYPE_BYTES[e.dtype]!;
    const expected = numel(e.shape) * bytesPer;
    if (e.end - e.begin !== expected) {
      fail(`tensor "${e.name}": ${e.dtype} ${fmtShape(e.shape)} needs ${expected} bytes but data_offsets [${e.begin}, ${e.end}] span ${e.end - e.begin}`);
    }
  }
  // The reference reader requires the tensors to tile the data section exactly: no overlap, no gap, no tail.
  const byOffset = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: RawEntry | undefined;
  for (const e of byOffset) {
    if (e.begin < pos) fail(`tensors "${prev!.name}" [${prev!.begin}, ${prev!.end}] and "${e.name}" [${e.begin}, ${e.end}] overlap`);
    if (e.begin > pos) fail(`gap of ${e.begin - pos} bytes before tensor "${e.name}" (data_offsets must be contiguous)`);
    pos = e.end;
    prev = e;
  }
  if (pos !== dataSize) fail(`${dataSize - pos} bytes after the last tensor: the file is longer than its header says (${dataStart + pos} bytes expected, ${size} found)`);

  const tensors = byOffset.map((e) => makeTensor(e, bytes, dataStart, fail));
  const byName = new Map(tensors.map((t) => [t.name, t]));
  return { path: name, metadata, tensors, get: (k) => byName.get(k) };
}

function parseEntry(name: string, value: unknown, fail: (msg: string) => never): RawEntry {
  if (typeof value !== "object" || value === null || Array.isArray(value)) fail(`tensor "${name}": entry must be an object`);
  const v = value as Record<string, unknown>;
  const { dtype, shape, data_offsets: offs } = v;
  if (typeof dtype !== "string" || !(dtype in DTYPE_BYTES)) fail(`tensor "${name}": unknown dtype ${JSON.stringify(dtype)}`);
  const isDim = (x: unknown): x is number => typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
  if (!Array.isArray(shape) || !shape.every(isDim)) fail(`tensor "${name}": shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isDim) || offs[0] > offs[1]) {
    fail(`tensor "${name}": data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(offs)}`);
  }
  const [begin, end] = offs as [number, number];
  return { name, dtype: dtype as string, shape: shape as number[], begin, end };
}

function makeTensor(e: RawEntry, bytes: Uint8Array, dataStart: number, fail: (msg: string) => never): SafetensorsTensor {
  if (!READABLE.includes(e.dtype)) {
    fail(`tensor "${e.name}" has dtype ${e.dtype}, which is not supported (supported: F32, BF16, F16, and I32 for reading); convert it to one of these in PyTorch first`);
  }
  const dtype = e.dtype as ReadableDtype;
  const off = bytes.byteOffset + dataStart + e.begin;
  const len = numel(e.shape);
  const width = DTYPE_BYTES[dtype]!;
  const zeroCopy = off % width === 0;
  const src = zeroCopy ? bytes.buffer : bytes.slice(dataStart + e.begin, dataStart + e.end).buffer;
  const at = zeroCopy ? off : 0;
  const data: TensorData =
    dtype === "F32" ? new Float32Array(src, at, len) : dtype === "I32" ? new Int32Array(src, at, len) : new Uint16Array(src, at, len);
  return {
    name: e.name,
    dtype,
    shape: e.shape,
    data,
    zeroCopy,
    toFloat32(): Float32Array {
      switch (dtype) {
        case "F32":
          return data as Float32Array;
        case "BF16":
          return bf16ToF32(data as Uint16Array);
        case "F16":
          return f16ToF32(data as Uint16Array);
        case "I32":
          throw new SafetensorsError(`tensor "${e.name}" is I32 (integer data); read .data instead of converting it to f32`);
      }
    },
  };
}

/**
 * Reads a sharded checkpoint through its `model.safetensors.index.json` ({"weight_map": {tensor: file}}).
 * Every shard is mapped once; a tensor the index names but its shard lacks, a tensor present in two shards, or a
 * shard tensor the index does not list is an error (the index and the shards disagree, so one of them is stale).
 */
export function readSafetensorsIndex(indexPath: string): SafetensorsFile {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(indexPath, "utf8"));
  } catch (e) {
    throw new SafetensorsError(`${indexPath}: cannot read the index (${e instanceof Error ? e.message : String(e)})`);
  }
  const weightMap = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) {
    throw new SafetensorsError(`${indexPath}: missing "weight_map" object ({tensor name: shard file})`);
  }
  const map = weightMap as Record<string, unknown>;
  const shardNames = new Set<string>();
  for (const [t, f] of Object.entries(map)) {
    if (typeof f !== "string" || f.includes("/") || f.includes("\\")) {
      throw new SafetensorsError(`${indexPath}: weight_map["${t}"] must be a file name in the same directory, got ${JSON.stringify(f)}`);
    }
    shardNames.add(f);
  }
  const dir = dirname(indexPath);
  const tensors: SafetensorsTensor[] = [];
  const byName = new Map<string, SafetensorsTensor>();
  const problems: string[] = [];
  for (const shard of [...shardNames].sort()) {
    const file = readSafetensors(join(dir, shard));
    for (const t of file.tensors) {
      if (map[t.name] !== shard) {
        problems.push(map[t.name] === undefined ? `"${t.name}" is in ${shard} but not in weight_map` : `"${t.name}" is in ${shard} but weight_map says ${String(map[t.name])}`);
        continue;
      }
      tensors.push(t);
      byName.set(t.name, t);
    }
  }
  for (const [t, f] of Object.entries(map)) if (!byName.has(t)) problems.push(`"${t}" is mapped to ${String(f)} but that file does not contain it`);
  if (problems.length > 0) throw new SafetensorsError(`${indexPath}: index and shards disagree:\n  ${problems.join("\n  ")}`);
  const metadata = ((json as { metadata?: unknown }).metadata ?? {}) as Record<string, unknown>;
  const stringMeta = Object.fromEntries(Object.entries(metadata).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
  return { path: indexPath, metadata: stringMeta, tensors, get: (k) => byName.get(k) };
}

/** A tensor to write. `data` as f32 is converted (round to nearest even) when `dtype` is BF16/F16. */
export interface TensorToWrite {
  readonly name: string;
  readonly shape: readonly number[];
  /** Default "F32". */
  readonly dtype?: Dtype;
  /** f32 values (any dtype), or raw 16-bit patterns when dtype is BF16/F16 (written as they are). */
  readonly data: Float32Array | Uint16Array;
}

/** Checks one tensor against its shape and dtype (before anything is written). */
function validate(t: TensorToWrite): void {
  const dtype = t.dtype ?? "F32";
  if (dtype !== "F32" && dtype !== "BF16" && dtype !== "F16") {
    throw new SafetensorsError(`writeSafetensors: tensor "${t.name}" has dtype ${JSON.stringify(dtype)}; write F32, BF16 or F16`);
  }
  if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new SafetensorsError(`writeSafetensors: tensor "${t.name}" has an invalid shape ${fmtShape(t.shape)}`);
  const n = numel(t.shape);
  if (t.data.length !== n) {
    throw new SafetensorsError(`writeSafetensors: tensor "${t.name}" has shape ${fmtShape(t.shape)} (${n} elements) but ${t.data.length} values`);
  }
  const ok = t.data instanceof Float32Array || (t.data instanceof Uint16Array && dtype !== "F32");
  if (!ok) throw new SafetensorsError(`writeSafetensors: tensor "${t.name}" is ${dtype}; pass a Float32Array${dtype === "F32" ? "" : " or raw bits as a Uint16Array"}`);
}

const CHUNK = 1 << 20; // elements narrowed per write: bounded scratch memory however large the tensor

/**
 * The bytes of `data` stored as `dtype`, as a sequence of chunks. f32 data narrowed to BF16/F16 is converted a chunk
 * at a time into one reused buffer, so each chunk must be consumed (written) before the next is requested.
 */
export function* encodeChunks(data: Float32Array | Uint16Array, dtype: Dtype): Generator<Uint8Array> {
  const bytes = (a: Float32Array | Uint16Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  if (dtype === "F32" || data instanceof Uint16Array) {
    yield bytes(data);
    return;
  }
  const scratch = new Uint16Array(Math.min(CHUNK, data.length));
  for (let off = 0; off < data.length; off += CHUNK) {
    const part = data.subarray(off, off + CHUNK);
    const out = scratch.subarray(0, part.length);
    if (dtype === "BF16") f32ToBf16(part, out);
    else f32ToF16(part, out);
    yield bytes(out);
  }
}

/** The header bytes (length prefix + JSON padded with spaces to a multiple of 8) for tensors in this order. */
export function safetensorsHeader(tensors: readonly { name: string; shape: readonly number[]; dtype?: Dtype }[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    if (t.name === "__metadata__") throw new SafetensorsError(`writeSafetensors: "__metadata__" is reserved and cannot name a tensor`);
    if (Object.hasOwn(header, t.name)) throw new SafetensorsError(`writeSafetensors: tensor "${t.name}" appears twice`);
    const dtype = t.dtype ?? "F32";
    const size = numel(t.shape) * DTYPE_BYTES[dtype]!;
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

/**
 * Writes tensors, in the given order, to a .safetensors file atomically: a temporary file beside `path` is
 * written, fsynced and renamed over `path`, so readers see the old file or the complete new one, never a torn one.
 */
export function writeSafetensors(path: string, tensors: readonly TensorToWrite[], metadata?: Record<string, string>): void {
  for (const t of tensors) validate(t); // everything is checked before the disk is touched
  const header = safetensorsHeader(tensors, metadata);
  function* chunks(): Generator<Uint8Array> {
    yield header;
    for (const t of tensors) yield* encodeChunks(t.data, t.dtype ?? "F32");
  }
  writeAtomic(path, chunks());
}

/**
 * Writes chunks to `path` via temp file + fsync + rename (+ directory fsync so the rename itself is durable). Each
 * chunk is written before the next is pulled from the iterable, so generators may reuse one buffer.
 */
export function writeAtomic(path: string, chunks: Iterable<Uint8Array>): void {
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  const fd = openSync(tmp, "w", 0o644);
  try {
    for (const c of chunks) {
      let done = 0;
      while (done < c.byteLength) done += writeSync(fd, c, done, c.byteLength - done);
    }
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {}
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
  try {
    const dfd = openSync(dirname(path), "r");
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // Some filesystems refuse fsync on directories; the data itself is already durable.
  }
}
