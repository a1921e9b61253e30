// Decoding: the Hugging Face decoder chain, run over token strings, plus a streaming decoder for generation.

/** The decoder steps we implement, as they appear in tokenizer.json's "decoder". */
export type DecoderStep =
  | { type: "Replace"; pattern: string; content: string }
  | { type: "ByteFallback" }
  | { type: "Fuse" }
  | { type: "Strip"; content: string; start: number; stop: number }
  | { type: "Metaspace"; replacement: string; prependScheme: "always" | "first" | "never" };

/** Llama 2's chain: "▁" -> " ", bytes back to text, join, drop the one space that encoding prepended. */
export function llamaDecoderSteps(stripPrefix: boolean): DecoderStep[] {
  const steps: DecoderStep[] = [
    { type: "Replace", pattern: "\u2581", content: " " },
    { type: "ByteFallback" },
    { type: "Fuse" },
  ];
  if (stripPrefix) steps.push({ type: "Strip", content: " ", start: 1, stop: 0 });
  return steps;
}

const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;
const fatalUtf8 = new TextDecoder("utf-8", { fatal: true });

function byteOf(token: string): number {
  if (token.length !== 6) return -1;
  const m = BYTE_TOKEN.exec(token);
  return m ? parseInt(m[1], 16) : -1;
}

/** Runs the chain over token strings, as tokenizers' `decode_chain` does, and joins the result. */
export function runDecoder(steps: DecoderStep[], tokens: string[]): string {
  let toks = tokens;
  for (const step of steps) {
    switch (step.type) {
      case "Replace":
        toks = toks.map((t) => t.split(step.pattern).join(step.content));
        break;
      case "ByteFallback":
        toks = byteFallback(toks);
        break;
      case "Fuse":
        toks = [toks.join("")];
        break;
      case "Strip":
        toks = toks.map((t) => strip(t, step.content, step.start, step.stop));
        break;
      case "Metaspace":
        toks = toks.map((t, i) => {
          const s = t.split(step.replacement).join(" ");
          return i === 0 && step.prependScheme !== "never" && s.startsWith(" ") ? s.slice(1) : s;
        });
        break;
    }
  }
  return toks.join("");
}

// Consecutive "<0xNN>" tokens become the text they encode; a run that is not valid UTF-8 becomes one
// U+FFFD per byte (what tokenizers' ByteFallback decoder does).
function byteFallback(tokens: string[]): string[] {
  const out: string[] = [];
  let run: number[] = [];
  const flush = (): void => {
    if (run.length === 0) return;
    try {
      out.push(fatalUtf8.decode(new Uint8Array(run)));
    } catch {
      for (let i = 0; i < run.length; i++) out.push("\uFFFD");
    }
    run = [];
  };
  for (const t of tokens) {
    const b = byteOf(t);
    if (b >= 0) run.push(b);
    else {
      flush();
      out.push(t);
    }
  }
  flush();
  return out;
}

function strip(t: string, content: string, start: number, stop: number): string {
  let a = 0;
  let b = t.length;
  for (let k = 0; k < start && a < b && t.startsWith(content, a); k++) a += content.length;
  for (let k = 0; k < stop && b > a && t.endsWith(content, b); k++) b -= content.length;
  return t.slice(a, b);
}

/** Bytes each id contributes to the output when streamed; built once per tokenizer. */
export interface StreamTable {
  bytes: (id: number) => Uint8Array;
  isSpecial: (id: number) => boolean;
  stripLeadingSpace: boolean;
}

/**
 * Incremental decoder for generation: push ids one at a time, get back text only when whole UTF-8
 * characters are available (a character split across byte-fallback tokens such as <0xE2><0x82><0xAC>
 * is held until its last byte arrives).
 */
export class StreamDecoder {
  private pending = new Uint8Array(64);
  private used = 0;
  private started = false;
  private readonly utf8 = new TextDecoder("utf-8");

  private readonly table: StreamTable;
  private readonly skipSpecial: boolean;

  constructor(table: StreamTable, skipSpecial = true) {
    this.table = table;
    this.skipSpecial = skipSpecial;
  }

  /** Adds one id; returns the text that became complete (possibly ""). */
  push(id: number): string {
    if (this.skipSpecial && this.table.isSpecial(id)) return "";
    let bytes = this.table.bytes(id);
    if (!this.started && bytes.length > 0) {
      this.started = true;
      if (this.table.stripLeadingSpace && bytes[0] === 0x20) bytes = bytes.subarray(1);
    }
    if (this.used + bytes.length > this.pending.length) {
      const grown = new Uint8Array(Math.max(this.pending.length * 2, this.used + bytes.length));
      grown.set(this.pending.subarray(0, this.used));
      this.pending = grown;
    }
    this.pending.set(bytes, this.used);
    this.used += bytes.length;
    const cut = completePrefix(this.pending, this.used);
    if (cut === 0) return "";
    const text = this.utf8.decode(this.pending.subarray(0, cut));
    this.pending.copyWithin(0, cut, this.used);
    this.used -= cut;
    return text;
  }

  /** Ends the stream: whatever bytes are still pending come out, invalid ones as U+FFFD. */
  flush(): string {
    const text = this.used > 0 ? this.utf8.decode(this.pending.subarray(0, this.used)) : "";
    this.used = 0;
    return text;
  }
}

/** Length of the longest prefix of buf[0, n) that does not end inside an incomplete UTF-8 sequence. */
function completePrefix(buf: Uint8Array, n: number): number {
  // look back at most 3 bytes for the lead byte of the last sequence
  for (let back = 1; back <= Math.min(4, n); back++) {
    const b = buf[n - back];
    if ((b & 0xc0) === 0x80) continue; // continuation byte
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    if (b >= 0xf8) return n; // not a lead byte at all: invalid, let the decoder replace it
    return need > back ? n - back : n;
  }
  return n; // only continuation bytes: invalid, emit as replacement
}
