// Worker side of ParallelTokenizer: rebuilds the tokenizer from its spec, then encodes batches.
import { parentPort, workerData } from "node:worker_threads";
import type { TokenizerSpec } from "./spec.ts";
import { Tokenizer, type EncodeOptions } from "./tokenizer.ts";

const tok = new Tokenizer(workerData as TokenizerSpec);
const port = parentPort;
if (!port) throw new Error("parallel-worker.ts must run as a worker thread");
port.postMessage("ready");
port.on("message", (m: { id: number; joined: string; offsets: Int32Array; options: EncodeOptions }) => {
  const n = m.offsets.length - 1;
  const parts: Int32Array[] = [];
  for (let i = 0; i < n; i++) parts.push(tok.encodeRange(m.joined, m.offsets[i], m.offsets[i + 1], m.options));
  const offsets = new Int32Array(parts.length + 1);
  for (let i = 0; i < parts.length; i++) offsets[i + 1] = offsets[i] + parts[i].length;
  const ids = new Int32Array(offsets[parts.length]);
  parts.forEach((p, i) => ids.set(p, offsets[i]));
  port.postMessage({ id: m.id, ids, offsets }, [ids.buffer, offsets.buffer]);
});
