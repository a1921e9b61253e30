/**
 * A tiny safetensors reader for test fixtures: 8-byte little-endian header length, JSON header
 * {name: {dtype, shape, data_offsets}}, then raw little-endian data.
 */
import { readFileSync } from "node:fs";

export interface FixtureTensor {
  dtype: "F32" | "I32" | "F64";
  shape: number[];
  data: Float32Array | Int32Array | Float64Array;
}

export function readSafetensors(path: string): Map<string, FixtureTensor> {
  const buf = readFileSync(path);
  const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const base = 8 + n;
  const out = new Map<string, FixtureTensor>();
  for (const [name, h] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const [s, e] = h.data_offsets;
    // Copy so the typed array is aligned whatever the offset in the file.
    const raw = bytes.slice(base + s, base + e).buffer;
    let data: FixtureTensor["data"];
    if (h.dtype === "F32") data = new Float32Array(raw);
    else if (h.dtype === "I32") data = new Int32Array(raw);
    else if (h.dtype === "F64") data = new Float64Array(raw);
    else throw new Error(`readSafetensors(${path}): tensor '${name}' has unsupported dtype ${h.dtype}`);
    const numel = h.shape.reduce((a, b) => a * b, 1);
    if (data.length !== numel) throw new Error(`readSafetensors(${path}): '${name}' shape [${h.shape}] does not match its ${data.length} elements`);
    out.set(name, { dtype: h.dtype, shape: h.shape, data });
  }
  return out;
}
