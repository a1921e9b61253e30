/** Minimal F32 safetensors reader for the committed PyTorch fixtures. */
import { readFileSync } from "node:fs";

export function readSafetensors(path: string): Map<string, { shape: number[]; data: Float32Array }> {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, h] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    if (h.dtype !== "F32") throw new Error(`${path}: ${name} is ${h.dtype}, this reader only knows F32`);
    const [a, b] = h.data_offsets;
    const bytes = buf.subarray(8 + n + a, 8 + n + b);
    out.set(name, { shape: h.shape, data: new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)) });
  }
  return out;
}
