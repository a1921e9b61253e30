// GGUF (v3) export for llama.cpp's "llama" architecture, and a reader for inspecting the result.
//
// Layout: magic "GGUF", u32 version, u64 tensor count, u64 metadata count, the metadata key/values, the tensor
// infos (name, dims in GGML order, type, offset into the data section), padding to general.alignment, then the
// tensor data, each tensor starting on an alignment boundary. Everything little-endian.
//
// Two layout differences from Hugging Face matter:
//  - GGML lists dims fastest-varying first, the reverse of PyTorch: a Linear weight (out, in) is ne = [in, out].
//    The bytes are the same row-major data, only the dims are written reversed.
//  - HF Llama applies RoPE "rotate-half" style, pairing dimension i of each head with i + HD/2. llama.cpp's llama
//    graph rotates adjacent pairs (2i, 2i+1). Permuting the rows of q_proj (per query head) and k_proj (per KV
//    head) so that row 2i takes HF row i and row 2i+1 takes HF row i + HD/2 makes the two computations identical:
//    the dot products q·k are unchanged because q and k are permuted alike.

import { parameterShapes, type ModelConfig } from "@tinyllama/config";
import { f16ToF32 } from "./dtype.ts";
import { encodeChunks, writeAtomic } from "./safetensors.ts";
import { statSync } from "node:fs";

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_ALIGNMENT = 32;

/** GGUF metadata value types. */
export const GgufType = {
  UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12,
} as const;
export type GgufTypeId = (typeof GgufType)[keyof typeof GgufType];

/** The GGML tensor types written here (a reader also reports others by number). */
export const GgmlType = { F32: 0, F16: 1 } as const;

/** llama.cpp's llama_ftype for general.file_type. */
const FILE_TYPE = { F32: 0, F16: 1 } as const;

/** SentencePiece / llama.cpp token types. */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

export interface GgufTokenizer {
  /** Pieces by id, as in the vocabulary (spaces as U+2581, byte pieces as "<0x0A>"). */
  readonly tokens: readonly string[];
  /** SentencePiece scores: llama.cpp's SPM tokenizer merges the pair whose result scores highest. */
  readonly scores: ArrayLike<number>;
  /** TokenType per id (1 normal, 2 unknown, 3 control, 6 byte). */
  readonly types: ArrayLike<number>;
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
  readonly addBos: boolean;
  readonly addEos: boolean;
}

export interface WriteGgufOptions {
  readonly config: ModelConfig;
  /** Weights in f32, keyed by Hugging Face name (see parameterShapes). */
  readonly tensors: ReadonlyMap<string, Float32Array>;
  readonly tokenizer: GgufTokenizer;
  /** Storage type of the 2-D weights; 1-D norm weights are always F32. Default "F32". */
  readonly dtype?: "F32" | "F16";
  /** general.name. Default "TinyLlama". */
  readonly name?: string;
}

export class GgufError extends Error {
  override name = "GgufError";
}

/** Hugging Face tensor name -> llama.cpp tensor name (undefined for a name llama.cpp has no slot for). */
export function ggufTensorName(hfName: string): string | undefined {
  const fixed: Record<string, string> = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
  };
  if (hfName in fixed) return fixed[hfName];
  const m = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(hfName);
  if (!m) return undefined;
  const part: Record<string, string> = {
    input_layernorm: "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    post_attention_layernorm: "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
  };
  const p = part[m[2]!];
  return p === undefined ? undefined : `blk.${m[1]}.${p}.weight`;
}

/**
 * Reorders the rows of a q_proj/k_proj weight (nHeads*HD, C) from HF's rotate-half layout to GGML's interleaved one:
 * within each head, new row 2i+j = old row j*HD/2 + i (i < HD/2, j in {0,1}). `inverse` undoes it.
 */
export function permuteRopeRows(w: Float32Array, nHeads: number, cols: number, inverse = false): Float32Array {
  const rows = w.length / cols;
  if (!Number.isInteger(rows) || rows % nHeads !== 0 || (rows / nHeads) % 2 !== 0) {
    throw new GgufError(`permuteRopeRows: ${w.length} values are not (nHeads=${nHeads}) x (even head dim) x (cols=${cols})`);
  }
  const HD = rows / nHeads;
  const half = HD / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const ggml = h * HD + 2 * i + j;
        const hf = h * HD + j * half + i;
        const [dst, src] = inverse ? [hf, ggml] : [ggml, hf];
        out.set(w.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
    }
  }
  return out;
}

// ---- writer ----

class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private dv = new DataView(this.buf.buffer);
  length = 0;
  private static enc = new TextEncoder();

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.dv = new DataView(next.buffer);
  }
  u8(v: number): void { this.reserve(1); this.dv.setUint8(this.length, v); this.length += 1; }
  u32(v: number): void { this.reserve(4); this.dv.setUint32(this.length, v, true); this.length += 4; }
  i32(v: number): void { this.reserve(4); this.dv.setInt32(this.length, v, true); this.length += 4; }
  f32(v: number): void { this.reserve(4); this.dv.setFloat32(this.length, v, true); this.length += 4; }
  u64(v: number): void { this.reserve(8); this.dv.setBigUint64(this.length, BigInt(v), true); this.length += 8; }
  str(s: string): void {
    const b = ByteWriter.enc.encode(s);
    this.u64(b.length);
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  pad(alignment: number): void {
    const n = (alignment - (this.length % alignment)) % alignment;
    this.reserve(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  bytes(): Uint8Array { return this.buf.subarray(0, this.length); }
}

type MetaValue =
  | { type: "u32"; value: number }
  | { type: "f32"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "str"; value: string }
  | { type: "str[]"; value: readonly string[] }
  | { type: "f32[]"; value: ArrayLike<number> }
  | { type: "i32[]"; value: ArrayLike<number> };

function writeMeta(w: ByteWriter, key: string, m: MetaValue): void {
  w.str(key);
  switch (m.type) {
    case "u32": w.u32(GgufType.UINT32); w.u32(m.value); break;
    case "f32": w.u32(GgufType.FLOAT32); w.f32(m.value); break;
    case "bool": w.u32(GgufType.BOOL); w.u8(m.value ? 1 : 0); break;
    case "str": w.u32(GgufType.STRING); w.str(m.value); break;
    case "str[]":
      w.u32(GgufType.ARRAY); w.u32(GgufType.STRING); w.u64(m.value.length);
      for (const s of m.value) w.str(s);
      break;
    case "f32[]":
      w.u32(GgufType.ARRAY); w.u32(GgufType.FLOAT32); w.u64(m.value.length);
      for (let i = 0; i < m.value.length; i++) w.f32(m.value[i]!);
      break;
    case "i32[]":
      w.u32(GgufType.ARRAY); w.u32(GgufType.INT32); w.u64(m.value.length);
      for (let i = 0; i < m.value.length; i++) w.i32(m.value[i]!);
      break;
  }
}

interface PlannedTensor {
  gguf: string;
  hf: string;
  /** PyTorch shape (row-major). */
  shape: readonly number[];
  type: number;
  offset: number;
  nbytes: number;
}

/**
 * Writes a GGUF file llama.cpp loads as architecture "llama" (atomically: temp file, fsync, rename). Tensors are
 * validated against parameterShapes(config) and the tokenizer against config.vocabSize before anything is written.
 */
export function writeGguf(path: string, options: WriteGgufOptions): void {
  const { config: cfg, tensors, tokenizer: tok } = options;
  const dtype = options.dtype ?? "F32";
  if (dtype !== "F32" && dtype !== "F16") throw new GgufError(`writeGguf: dtype must be "F32" or "F16", got ${JSON.stringify(dtype)}`);
  validateTokenizer(tok, cfg.vocabSize);

  const expected = parameterShapes(cfg);
  const problems: string[] = [];
  const known = new Set(expected.map((p) => p.name));
  const missing = expected.filter((p) => !tensors.has(p.name)).map((p) => p.name);
  const extra = [...tensors.keys()].filter((n) => !known.has(n));
  if (missing.length) problems.push(`missing tensors (${missing.length}): ${missing.join(", ")}`);
  if (extra.length) problems.push(`unexpected tensors (${extra.length}): ${extra.join(", ")}`);
  for (const p of expected) {
    const t = tensors.get(p.name);
    const n = p.shape.reduce((a, b) => a * b, 1);
    if (t && t.length !== n) problems.push(`${p.name}: expected ${n} values for shape [${p.shape.join(", ")}], got ${t.length}`);
  }
  if (problems.length) throw new GgufError(`writeGguf: tensors do not match the config:\n  ${problems.join("\n  ")}`);

  const HD = cfg.dim / cfg.nHeads;
  const w = new ByteWriter();
  const meta: [string, MetaValue][] = [
    ["general.architecture", { type: "str", value: "llama" }],
    ["general.name", { type: "str", value: options.name ?? "TinyLlama" }],
    ["general.alignment", { type: "u32", value: GGUF_ALIGNMENT }],
    ["llama.vocab_size", { type: "u32", value: cfg.vocabSize }],
    ["llama.context_length", { type: "u32", value: cfg.maxSeqLen }],
    ["llama.embedding_length", { type: "u32", value: cfg.dim }],
    ["llama.block_count", { type: "u32", value: cfg.nLayers }],
    ["llama.feed_forward_length", { type: "u32", value: cfg.hiddenDim }],
    ["llama.rope.dimension_count", { type: "u32", value: HD }],
    ["llama.attention.head_count", { type: "u32", value: cfg.nHeads }],
    ["llama.attention.head_count_kv", { type: "u32", value: cfg.nKvHeads }],
    ["llama.attention.layer_norm_rms_epsilon", { type: "f32", value: cfg.normEps }],
    ["llama.rope.freq_base", { type: "f32", value: cfg.ropeTheta }],
    ["general.file_type", { type: "u32", value: FILE_TYPE[dtype] }],
    ["general.quantization_version", { type: "u32", value: 2 }],
    ["tokenizer.ggml.model", { type: "str", value: "llama" }],
    ["tokenizer.ggml.tokens", { type: "str[]", value: tok.tokens }],
    ["tokenizer.ggml.scores", { type: "f32[]", value: tok.scores }],
    ["tokenizer.ggml.token_type", { type: "i32[]", value: tok.types }],
    ["tokenizer.ggml.bos_token_id", { type: "u32", value: tok.bosId }],
    ["tokenizer.ggml.eos_token_id", { type: "u32", value: tok.eosId }],
    ["tokenizer.ggml.unknown_token_id", { type: "u32", value: tok.unkId }],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: tok.addBos }],
    ["tokenizer.ggml.add_eos_token", { type: "bool", value: tok.addEos }],
  ];

  const planned: PlannedTensor[] = [];
  let offset = 0;
  for (const p of expected) {
    const gguf = ggufTensorName(p.name);
    if (!gguf) throw new GgufError(`writeGguf: no llama.cpp name for tensor "${p.name}"`);
    const type = dtype === "F16" && p.shape.length >= 2 ? GgmlType.F16 : GgmlType.F32;
    const nbytes = p.shape.reduce((a, b) => a * b, 1) * (type === GgmlType.F16 ? 2 : 4);
    planned.push({ gguf, hf: p.name, shape: p.shape, type, offset, nbytes });
    offset += Math.ceil(nbytes / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
  }

  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(planned.length);
  w.u64(meta.length);
  for (const [k, m] of meta) writeMeta(w, k, m);
  for (const t of planned) {
    w.str(t.gguf);
    w.u32(t.shape.length);
    for (let i = t.shape.length - 1; i >= 0; i--) w.u64(t.shape[i]!); // GGML order: fastest-varying first
    w.u32(t.type);
    w.u64(t.offset);
  }
  w.pad(GGUF_ALIGNMENT);
  const head = w.bytes();

  const zeros = new Uint8Array(GGUF_ALIGNMENT);
  function* chunks(): Generator<Uint8Array> {
    yield head;
    for (const t of planned) {
      let data = tensors.get(t.hf)!;
      const cols = t.shape[1] ?? 1;
      if (t.hf.endsWith(".self_attn.q_proj.weight")) data = permuteRopeRows(data, cfg.nHeads, cols);
      else if (t.hf.endsWith(".self_attn.k_proj.weight")) data = permuteRopeRows(data, cfg.nKvHeads, cols);
      yield* encodeChunks(data, t.type === GgmlType.F16 ? "F16" : "F32");
      const pad = (GGUF_ALIGNMENT - (t.nbytes % GGUF_ALIGNMENT)) % GGUF_ALIGNMENT;
      if (pad) yield zeros.subarray(0, pad);
    }
  }
  writeAtomic(path, chunks());
}

function validateTokenizer(tok: GgufTokenizer, vocabSize: number): void {
  const problems: string[] = [];
  if (tok.tokens.length !== vocabSize) problems.push(`${tok.tokens.length} tokens but the model's vocabSize is ${vocabSize}`);
  if (tok.scores.length !== tok.tokens.length) problems.push(`${tok.scores.length} scores for ${tok.tokens.length} tokens`);
  if (tok.types.length !== tok.tokens.length) problems.push(`${tok.types.length} token types for ${tok.tokens.length} tokens`);
  for (const [k, id] of [["bosId", tok.bosId], ["eosId", tok.eosId], ["unkId", tok.unkId]] as const) {
    if (!Number.isInteger(id) || id < 0 || id >= tok.tokens.length) problems.push(`${k} ${id} is outside the vocabulary`);
  }
  const valid = new Set<number>(Object.values(TokenType));
  for (let i = 0; i < tok.types.length; i++) {
    if (!valid.has(tok.types[i]!)) {
      problems.push(`token ${i} has type ${tok.types[i]} (valid: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte)`);
      break;
    }
  }
  if (problems.length) throw new GgufError(`writeGguf: tokenizer does not fit the model:\n  ${problems.join("\n  ")}`);
}

// ---- reader ----

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  readonly name: string;
  /** GGML order (fastest-varying first), i.e. the PyTorch shape reversed. */
  readonly dims: readonly number[];
  /** GGML type id (0 F32, 1 F16, ...). */
  readonly type: number;
  /** Byte offset from the start of the data section. */
  readonly offset: number;
}

export interface GgufFile {
  readonly path: string;
  readonly version: number;
  readonly metadata: ReadonlyMap<string, GgufValue>;
  /** Each key's value type: "u32", "f32", "string", "array<string>", ... */
  readonly metadataTypes: ReadonlyMap<string, string>;
  readonly tensors: readonly GgufTensorInfo[];
  readonly alignment: number;
  /** Absolute file offset of the data section. */
  readonly dataOffset: number;
  /** A tensor's values as f32 (F32 and F16 tensors), in GGML memory order (= PyTorch row-major). */
  tensorData(name: string): Float32Array;
}

const TYPE_NAMES = ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"];

/** Reads a GGUF file's header, metadata and tensor infos (memory-mapped); tensor data on demand. */
export function readGguf(path: string): GgufFile {
  const size = statSync(path).size;
  if (size < 24) throw new GgufError(`${path}: truncated: ${size} bytes is shorter than a GGUF header (24)`);
  const bytes = Bun.mmap(path, { shared: false });
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dec = new TextDecoder("utf-8", { fatal: true });
  let pos = 0;
  const need = (n: number, what: string): void => {
    if (pos + n > size) throw new GgufError(`${path}: truncated while reading ${what} at byte ${pos} (needs ${n} more bytes, file has ${size})`);
  };
  const u32 = (what: string): number => { need(4, what); const v = dv.getUint32(pos, true); pos += 4; return v; };
  const u64 = (what: string): number => {
    need(8, what);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new GgufError(`${path}: ${what} ${v} at byte ${pos - 8} is too large`);
    return Number(v);
  };
  const str = (what: string): string => {
    const n = u64(`${what} length`);
    need(n, what);
    const s = dec.decode(bytes.subarray(pos, pos + n));
    pos += n;
    return s;
  };
  const scalar = (type: number, what: string): GgufValue => {
    switch (type) {
      case GgufType.UINT8: need(1, what); return dv.getUint8(pos++);
      case GgufType.INT8: need(1, what); return dv.getInt8(pos++);
      case GgufType.UINT16: { need(2, what); const v = dv.getUint16(pos, true); pos += 2; return v; }
      case GgufType.INT16: { need(2, what); const v = dv.getInt16(pos, true); pos += 2; return v; }
      case GgufType.UINT32: return u32(what);
      case GgufType.INT32: { need(4, what); const v = dv.getInt32(pos, true); pos += 4; return v; }
      case GgufType.FLOAT32: { need(4, what); const v = dv.getFloat32(pos, true); pos += 4; return v; }
      case GgufType.BOOL: { need(1, what); const v = dv.getUint8(pos++); return v !== 0; }
      case GgufType.STRING: return str(what);
      case GgufType.UINT64: { need(8, what); const v = dv.getBigUint64(pos, true); pos += 8; return v; }
      case GgufType.INT64: { need(8, what); const v = dv.getBigInt64(pos, true); pos += 8; return v; }
      case GgufType.FLOAT64: { need(8, what); const v = dv.getFloat64(pos, true); pos += 8; return v; }
      default: throw new GgufError(`${path}: ${what} has unknown value type ${type}`);
    }
  };

  const magic = u32("magic");
  if (magic !== GGUF_MAGIC) throw new GgufError(`${path}: not a GGUF file (magic 0x${magic.toString(16)}, expected 0x${GGUF_MAGIC.toString(16)} "GGUF")`);
  const version = u32("version");
  if (version !== 2 && version !== 3) throw new GgufError(`${path}: GGUF version ${version} is not supported (2 or 3)`);
  const nTensors = u64("tensor count");
  const nKv = u64("metadata count");
  const metadata = new Map<string, GgufValue>();
  const metadataTypes = new Map<string, string>();
  for (let i = 0; i < nKv; i++) {
    const key = str(`metadata key ${i}`);
    const type = u32(`type of ${key}`);
    if (type === GgufType.ARRAY) {
      const et = u32(`element type of ${key}`);
      const n = u64(`length of ${key}`);
      const arr: GgufValue[] = new Array(n);
      for (let j = 0; j < n; j++) arr[j] = scalar(et, `${key}[${j}]`);
      metadata.set(key, arr);
      metadataTypes.set(key, `array<${TYPE_NAMES[et] ?? et}>`);
    } else {
      metadata.set(key, scalar(type, key));
      metadataTypes.set(key, TYPE_NAMES[type] ?? String(type));
    }
  }
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str(`tensor ${i} name`);
    const nd = u32(`${name} n_dims`);
    if (nd > 4) throw new GgufError(`${path}: tensor ${name} has ${nd} dims (GGML allows at most 4)`);
    const dims: number[] = [];
    for (let d = 0; d < nd; d++) dims.push(u64(`${name} dim ${d}`));
    const type = u32(`${name} type`);
    const offset = u64(`${name} offset`);
    tensors.push({ name, dims, type, offset });
  }
  const alignment = typeof metadata.get("general.alignment") === "number" ? (metadata.get("general.alignment") as number) : GGUF_ALIGNMENT;
  const dataOffset = Math.ceil(pos / alignment) * alignment;
  const byName = new Map(tensors.map((t) => [t.name, t]));
  return {
    path, version, metadata, metadataTypes, tensors, alignment, dataOffset,
    tensorData(name: string): Float32Array {
      const t = byName.get(name);
      if (!t) throw new GgufError(`${path}: no tensor "${name}"`);
      const n = t.dims.reduce((a, b) => a * b, 1);
      const width = t.type === GgmlType.F32 ? 4 : t.type === GgmlType.F16 ? 2 : 0;
      if (!width) throw new GgufError(`${path}: tensor ${name} has GGML type ${t.type}; only F32 (0) and F16 (1) can be read`);
      const start = dataOffset + t.offset;
      if (start + n * width > size) throw new GgufError(`${path}: truncated: tensor ${name} needs bytes up to ${start + n * width}, file has ${size}`);
      const raw = bytes.slice(start, start + n * width).buffer;
      return t.type === GgmlType.F32 ? new Float32Array(raw) : f16ToF32(new Uint16Array(raw));
    },
  };
}
