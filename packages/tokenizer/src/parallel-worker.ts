// Worker side of ParallelTokenizer: rebuilds the tokenizer from its spec, then encodes batches.
import { readFileSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import type { TokenizerSpec } from "./spec.ts";
import { Tokenizer, type EncodeOptions } from "./tokenizer.ts";

const tok = new Tokenizer(workerData as TokenizerSpec);
const port = parentPort;
if (!port) throw new Error("parallel-worker.ts must run as a worker thread");
port.postMessage("ready");

type Job =
  | { id: number; joined: string; offsets: Int32Array; options: EncodeOptions }
  | { id: number; file: string; from: number; to: number; last: boolean; options: EncodeOptions };

const utf8 = new TextDecoder();

/**
 * The lines (as text.split("\n") of the whole file gives them) that start in bytes [from, to) of the file;
 * the last worker also owns the empty line after a final "\n".
 */
function linesOf(file: string, from: number, to: number, last: boolean): string[] {
  const bytes = readFileSync(file);
  const len = bytes.length;
  const lineStart = (p: number): number => {
    if (p <= 0) return 0;
    const nl = bytes.indexOf(0x0a, p - 1);
    return nl < 0 ? len : nl + 1;
  };
  const a = lineStart(from);
  if (last) {
    if (a >= len) return len === 0 || bytes[len - 1] === 0x0a ? [""] : [];
    return utf8.decode(bytes.subarray(a, len)).split("\n");
  }
  const b = lineStart(to);
  if (a >= b) return [];
  let text = utf8.decode(bytes.subarray(a, b));
  if (text.endsWith("\n")) text = text.slice(0, -1); // the break after our last line; the next line is not ours
  return text.split("\n");
}

port.on("message", (m: Job) => {
  const parts: Int32Array[] = [];
  if ("file" in m) {
    for (const line of linesOf(m.file, m.from, m.to, m.last)) parts.push(tok.encode(line, m.options));
  } else {
    const n = m.offsets.length - 1;
    for (let i = 0; i < n; i++) parts.push(tok.encodeRange(m.joined, m.offsets[i], m.offsets[i + 1], m.options));
  }
  const offsets = new Int32Array(parts.length + 1);
  for (let i = 0; i < parts.length; i++) offsets[i + 1] = offsets[i] + parts[i].length;
  const ids = new Int32Array(offsets[parts.length]);
  parts.forEach((p, i) => ids.set(p, offsets[i]));
  port.postMessage({ id: m.id, ids, offsets }, [ids.buffer, offsets.buffer]);
});
