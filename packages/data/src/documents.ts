/**
 * Input discovery and document streaming for `prepare`. A .jsonl line is one document (its string
 * `text` field); a .txt file is one document per blank-line-separated paragraph (the default) or
 * one per file. Files are read in fixed-size chunks, so corpora larger than memory stream through.
 */
import { closeSync, existsSync, openSync, readSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

export type TxtDocuments = "paragraph" | "file";

export interface InputFile {
  path: string;
  kind: "txt" | "jsonl";
  bytes: number;
}

/** Expands files and directories (recursively, sorted by path) into .txt and .jsonl files, in a fixed order. */
export function findInputs(inputs: readonly string[]): InputFile[] {
  if (!Array.isArray(inputs) || inputs.length === 0) throw new Error("prepare: 'inputs' must list at least one file or directory");
  const out: InputFile[] = [];
  const seen = new Set<string>();
  const add = (path: string, explicit: boolean) => {
    const kind = path.endsWith(".jsonl") ? "jsonl" : path.endsWith(".txt") ? "txt" : null;
    if (!kind) {
      if (explicit) throw new Error(`prepare: '${path}' is neither .txt nor .jsonl`);
      return;
    }
    if (seen.has(path)) return;
    seen.add(path);
    out.push({ path, kind, bytes: statSync(path).size });
  };
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) add(p, false);
    }
  };
  for (const input of inputs) {
    if (typeof input !== "string" || !existsSync(input)) throw new Error(`prepare: input '${String(input)}' does not exist`);
    if (statSync(input).isDirectory()) {
      const before = out.length;
      walk(input);
      if (out.length === before) throw new Error(`prepare: directory '${input}' holds no .txt or .jsonl files`);
    } else add(input, true);
  }
  return out;
}

/** Read size; `documentsOf` takes another for tests, which use tiny chunks to hit every boundary case. */
export const READ_CHUNK = 4 << 20;

/** Decoded text of a file in chunks, with the raw byte count of each chunk (for progress). */
function* textChunks(path: string, chunkBytes: number): Generator<{ text: string; bytes: number }> {
  const fd = openSync(path, "r");
  try {
    const dec = new TextDecoder("utf-8");
    const buf = new Uint8Array(chunkBytes);
    for (;;) {
      const n = readSync(fd, buf, 0, chunkBytes, null);
      if (n === 0) break;
      yield { text: dec.decode(buf.subarray(0, n), { stream: true }), bytes: n };
    }
    const tail = dec.decode();
    if (tail) yield { text: tail, bytes: 0 };
  } finally {
    closeSync(fd);
  }
}

export interface Doc {
  text: string;
  /** Input bytes consumed since the previous document (progress accounting). */
  bytes: number;
}

/** A blank line: a line break, optional spaces/tabs/CRs, another line break. */
const BLANK = /\n[ \t\r]*\n/g;

function cleanParagraph(p: string): string | null {
  const s = p.replace(/^[\r\n]+|[\r\n]+$/g, "");
  return /\S/.test(s) ? s : null;
}

/** The documents of one input file, in order. */
export function* documentsOf(file: InputFile, txt: TxtDocuments, chunkBytes = READ_CHUNK): Generator<Doc> {
  if (!Number.isInteger(chunkBytes) || chunkBytes < 1) throw new RangeError(`documentsOf: chunkBytes must be a positive integer, got ${chunkBytes}`);
  let pendingBytes = 0;
  if (file.kind === "txt" && txt === "file") {
    let text = "";
    for (const c of textChunks(file.path, chunkBytes)) {
      text += c.text;
      pendingBytes += c.bytes;
    }
    if (/\S/.test(text)) yield { text, bytes: pendingBytes };
    return;
  }
  let rest = "";
  let line = 1; // jsonl: number of the first line in `rest`
  const jsonDoc = (raw: string, at: number): string | null => {
    const s = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (!/\S/.test(s)) return null;
    let v: unknown;
    try {
      v = JSON.parse(s);
    } catch (e) {
      throw new Error(`${file.path}:${at}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
    }
    const text = v !== null && typeof v === "object" ? (v as { text?: unknown }).text : undefined;
    if (typeof text !== "string") throw new Error(`${file.path}:${at}: a .jsonl line must be an object with a string 'text' field`);
    return text === "" ? null : text;
  };
  for (const c of textChunks(file.path, chunkBytes)) {
    // A line break or blank line that crosses the chunk boundary starts at or after the old
    // text's last line break; scanning from there keeps long paragraphs/lines linear.
    const lastNl = rest.lastIndexOf("\n");
    const scanFrom = file.kind === "jsonl" || lastNl < 0 ? rest.length : lastNl;
    rest += c.text;
    pendingBytes += c.bytes;
    if (file.kind === "jsonl") {
      let start = 0;
      for (let nl = rest.indexOf("\n", scanFrom); nl !== -1; nl = rest.indexOf("\n", start)) {
        const text = jsonDoc(rest.slice(start, nl), line++);
        start = nl + 1;
        if (text !== null) {
          yield { text, bytes: pendingBytes };
          pendingBytes = 0;
        }
      }
      rest = rest.slice(start);
    } else {
      let start = 0;
      BLANK.lastIndex = scanFrom;
      for (let m = BLANK.exec(rest); m !== null; m = BLANK.exec(rest)) {
        const p = cleanParagraph(rest.slice(start, m.index));
        start = m.index + m[0].length;
        BLANK.lastIndex = start;
        if (p !== null) {
          yield { text: p, bytes: pendingBytes };
          pendingBytes = 0;
        }
      }
      rest = rest.slice(start);
    }
  }
  const last = file.kind === "jsonl" ? jsonDoc(rest, line) : cleanParagraph(rest);
  if (last !== null) yield { text: last, bytes: pendingBytes };
}

/**
 * Whether document i (0-based, in input order) goes to the validation split: document 1 first, then
 * one every 1/f documents, so n documents put ceil((n-1) f) in val and a one-document corpus stays
 * all train. Deterministic, independent of worker count and shard size.
 */
export function isValDocument(i: number, valFraction: number): boolean {
  if (valFraction <= 0 || i < 1) return false;
  return Math.ceil(i * valFraction) > Math.ceil((i - 1) * valFraction);
}
