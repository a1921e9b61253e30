// The public Tokenizer: added-token splitting, normalization, BOS/EOS, decoding.

import { BpeModel, IntBuffer } from "./bpe.ts";
import { ChunkCache } from "./chunker.ts";
import { runDecoder, StreamDecoder, type StreamTable } from "./decode.ts";
import { specFromHf, specToHf, specToHfConfig } from "./hf.ts";
import { specFromLlamaTokenizerJs, type LlamaTokenizerJsData } from "./llama2.ts";
import type { AddedToken, TokenizerSpec } from "./spec.ts";
import { specFromSpm } from "./spm.ts";

export interface EncodeOptions {
  /** Prepend the BOS id. Default: the tokenizer's config (add_bos_token; true for Llama 2). */
  bos?: boolean;
  /** Append the EOS id. Default: the tokenizer's config (add_eos_token; false for Llama 2). */
  eos?: boolean;
  /**
   * Recognise added/special tokens written in the text ("<s>", "</s>") as their ids. Default: true for
   * tokenizer.json and Llama 2 (what Hugging Face does), false for SentencePiece models (what SentencePiece does).
   */
  special?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (<s>, </s>, <unk>). Default true, as SentencePiece and llama-tokenizer-js do. */
  skipSpecial?: boolean;
}

const SPACE = 0x20;

let llama2Promise: Promise<Tokenizer> | undefined;
const NO_ADDED: readonly AddedToken[] = [];

interface FsLike {
  readFileSync(path: string): Uint8Array;
  existsSync(path: string): boolean;
  statSync(path: string): { isDirectory(): boolean };
}

/** node:fs without importing it, so this module still bundles for browsers. */
function nodeFs(): FsLike {
  const proc = (globalThis as { process?: { getBuiltinModule?: (name: string) => unknown } }).process;
  const fs = proc?.getBuiltinModule?.("fs") as FsLike | undefined;
  if (!fs) throw new Error("Tokenizer.fromFile needs Node (>= 20.16) or Bun; in a browser, fetch the file and use Tokenizer.fromBytes");
  return fs;
}

export class Tokenizer {
  readonly spec: TokenizerSpec;
  readonly model: BpeModel;
  private readonly cache: ChunkCache;
  private readonly out = new IntBuffer(4096);
  private readonly added: readonly AddedToken[];
  private readonly specialIds: Uint8Array;
  private readonly addedById: Map<number, AddedToken>;
  private streamBytes: Uint8Array[] | null = null;
  private readonly addedFirstChar: Uint8Array;

  constructor(spec: TokenizerSpec) {
    this.spec = spec;
    this.model = new BpeModel(spec.model);
    this.cache = new ChunkCache(this.model);
    // longest first, so that a token that is a prefix of another never shadows it
    this.added = [...spec.addedTokens].sort((a, b) => b.content.length - a.content.length);
    this.addedFirstChar = new Uint8Array(65536);
    for (const t of this.added) this.addedFirstChar[t.content.charCodeAt(0)] = 1;
    this.specialIds = new Uint8Array(this.model.vocabSize);
    this.addedById = new Map();
    for (const t of spec.addedTokens) {
      if (t.id < 0 || t.id >= this.model.vocabSize) throw new Error(`added token ${JSON.stringify(t.content)} has id ${t.id}, outside the vocabulary`);
      if (t.special) this.specialIds[t.id] = 1;
      this.addedById.set(t.id, t);
    }
  }

  /** From parsed tokenizer.json (and optionally tokenizer_config.json) objects. */
  static fromJSON(tokenizerJson: unknown, tokenizerConfig?: unknown): Tokenizer {
    return new Tokenizer(specFromHf(tokenizerJson, tokenizerConfig));
  }

  /** From the bytes of a SentencePiece tokenizer.model (BPE). */
  static fromSentencePiece(bytes: Uint8Array): Tokenizer {
    return new Tokenizer(specFromSpm(bytes));
  }

  /** From file contents of either format: JSON text is tokenizer.json, anything else a tokenizer.model. */
  static fromBytes(bytes: Uint8Array, tokenizerConfig?: unknown): Tokenizer {
    let i = 0;
    while (i < bytes.length && (bytes[i] === 0x20 || bytes[i] === 0x0a || bytes[i] === 0x0d || bytes[i] === 0x09)) i++;
    if (bytes[i] === 0x7b) {
      let json: unknown;
      try {
        json = JSON.parse(new TextDecoder().decode(bytes));
      } catch (e) {
        throw new Error(`tokenizer.json: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
      }
      return Tokenizer.fromJSON(json, tokenizerConfig);
    }
    return Tokenizer.fromSentencePiece(bytes);
  }

  /**
   * From a tokenizer.json or tokenizer.model path, or a directory holding one (Node and Bun only).
   * A tokenizer_config.json beside a tokenizer.json is read too (add_bos_token, add_eos_token).
   */
  static fromFile(path: string): Tokenizer {
    const fs = nodeFs();
    let file = path;
    if (fs.statSync(path).isDirectory()) {
      const dir = path.replace(/\/+$/, "");
      if (fs.existsSync(`${dir}/tokenizer.json`)) file = `${dir}/tokenizer.json`;
      else if (fs.existsSync(`${dir}/tokenizer.model`)) file = `${dir}/tokenizer.model`;
      else throw new Error(`${path}: no tokenizer.json or tokenizer.model in this directory`);
    }
    const bytes = fs.readFileSync(file);
    const configPath = file.replace(/[^/\\]*$/, "tokenizer_config.json");
    let config: unknown;
    if (/\.json$/i.test(file) && fs.existsSync(configPath)) config = JSON.parse(new TextDecoder().decode(fs.readFileSync(configPath)));
    try {
      return Tokenizer.fromBytes(bytes, config);
    } catch (e) {
      throw new Error(`${file}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /**
   * Llama 2's tokenizer (TinyLlama's, 32000 tokens), built on first use from the vocabulary and merges
   * that the llama-tokenizer-js package embeds; later calls return the same instance.
   */
  static llama2(): Promise<Tokenizer> {
    llama2Promise ??= import("llama-tokenizer-js").then((mod) => {
      const data: LlamaTokenizerJsData = mod.default;
      return new Tokenizer(specFromLlamaTokenizerJs(data));
    });
    return llama2Promise;
  }

  /** tokenizer.json for this tokenizer (Hugging Face layout, loadable by tokenizers and transformers). */
  toJSON(): Record<string, unknown> {
    return specToHf(this.spec);
  }

  /** tokenizer_config.json to go beside `toJSON()`. */
  toConfigJSON(): Record<string, unknown> {
    return specToHfConfig(this.spec);
  }

  get vocabSize(): number {
    return this.model.vocabSize;
  }
  get bosId(): number {
    return this.spec.bosId;
  }
  get eosId(): number {
    return this.spec.eosId;
  }

  idToToken(id: number): string {
    this.checkId(id, 0);
    return this.model.pieces[id];
  }

  tokenToId(token: string): number | undefined {
    return this.model.pieceToId.get(token);
  }

  /** Token ids of `text`, with BOS/EOS as configured. */
  encode(text: string, options: EncodeOptions = {}): Int32Array {
    if (typeof text !== "string") throw new Error(`encode: expected a string, got ${typeof text}`);
    return this.encodeRange(text, 0, text.length, options);
  }

  /** Token ids of text[start, end) (as encode(text.slice(start, end)), without making the slice). */
  encodeRange(text: string, start: number, end: number, options: EncodeOptions = {}): Int32Array {
    if (!(start >= 0 && end <= text.length && start <= end)) throw new Error(`encodeRange: bad range [${start}, ${end}) for a text of length ${text.length}`);
    const out = this.out;
    out.length = 0;
    const bos = options.bos ?? this.spec.addBos;
    const eos = options.eos ?? this.spec.addEos;
    if (bos) {
      if (this.spec.bosId < 0) throw new Error("encode: bos requested but this tokenizer has no BOS token");
      out.push(this.spec.bosId);
    }
    this.encodeText(text, options.special ?? this.spec.parseSpecial, out, start, end);
    if (eos) {
      if (this.spec.eosId < 0) throw new Error("encode: eos requested but this tokenizer has no EOS token");
      out.push(this.spec.eosId);
    }
    return out.toArray();
  }

  encodeBatch(texts: readonly string[], options: EncodeOptions = {}): Int32Array[] {
    return texts.map((t) => this.encode(t, options));
  }

  /** Appends the ids of text[start, end) (no BOS/EOS) to `out`. */
  encodeText(text: string, special: boolean, out: IntBuffer, start = 0, end = text.length): void {
    const added = special ? this.added : NO_ADDED;
    const first = this.addedFirstChar;
    let pos = start;
    while (pos <= end) {
      // the next added token in [pos, end): a linear scan that only looks closer at possible first characters
      let best = -1;
      let bestTok: AddedToken | null = null;
      if (added.length > 0) {
        for (let i = pos; i < end && bestTok === null; i++) {
          if (first[text.charCodeAt(i)] === 0) continue;
          for (const t of added) {
            if (i + t.content.length <= end && text.startsWith(t.content, i)) {
              best = i;
              bestTok = t;
              break;
            }
          }
        }
      }
      let segEnd = bestTok ? best : end;
      let nextPos = bestTok ? best + bestTok.content.length : end + 1;
      if (bestTok) {
        if (bestTok.lstrip) while (segEnd > pos && isWhite(text.charCodeAt(segEnd - 1))) segEnd--;
        if (bestTok.rstrip) while (nextPos < end && isWhite(text.charCodeAt(nextPos))) nextPos++;
      }
      this.encodeSegment(text, pos, segEnd, out, start);
      if (bestTok) out.push(bestTok.id);
      pos = nextPos;
    }
  }

  private encodeSegment(text: string, start: number, end: number, out: IntBuffer, textStart: number): void {
    const spec = this.spec;
    const atStart = start === textStart;
    if (spec.removeExtraWhitespaces) {
      const t = collapseSpaces(text.slice(start, end));
      text = t;
      start = 0;
      end = t.length;
    }
    if (start >= end) return;
    const prefix = spec.prepend === "always" || (spec.prepend === "first" && atStart);
    this.cache.encodeSegment(text, start, end, prefix, out);
  }

  /** Text of `ids`; an id outside the vocabulary is an Error that names it. */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const skip = options.skipSpecial ?? true;
    const tokens: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      this.checkId(id, i);
      if (skip && this.specialIds[id]) continue;
      const added = this.addedById.get(id);
      tokens.push(added ? added.content : this.model.pieces[id]);
    }
    return runDecoder(this.spec.decoder, tokens);
  }

  /** A decoder for generation that yields text only once whole UTF-8 characters are available. */
  streamDecoder(options: DecodeOptions = {}): StreamDecoder {
    return new StreamDecoder(this.streamTable(), options.skipSpecial ?? true);
  }

  private streamTable(): StreamTable {
    const enc = new TextEncoder();
    if (!this.streamBytes) {
      const replace = this.spec.decoder.find((s) => s.type === "Replace" || s.type === "Metaspace");
      const meta = replace ? (replace.type === "Replace" ? replace.pattern : replace.replacement) : null;
      this.streamBytes = this.model.pieces.map((p, id) => {
        const added = this.addedById.get(id);
        if (added) return enc.encode(added.content);
        const b = this.model.idToByte[id];
        if (b >= 0) return Uint8Array.of(b);
        return enc.encode(meta ? p.split(meta).join(" ") : p);
      });
    }
    const table = this.streamBytes;
    const strip = this.spec.decoder.some((s) => (s.type === "Strip" && s.start > 0) || (s.type === "Metaspace" && s.prependScheme !== "never"));
    return {
      bytes: (id) => {
        this.checkId(id, 0);
        return table[id];
      },
      isSpecial: (id) => this.specialIds[id] === 1,
      stripLeadingSpace: strip,
    };
  }

  private checkId(id: number, index: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.model.vocabSize) {
      throw new Error(`decode: token id ${id} at position ${index} is outside the vocabulary (valid ids are 0..${this.model.vocabSize - 1})`);
    }
  }
}

function isWhite(c: number): boolean {
  return c === SPACE || c === 9 || c === 10 || c === 13;
}

/** SentencePiece's remove_extra_whitespaces: strip leading/trailing spaces, collapse inner runs to one. */
function collapseSpaces(s: string): string {
  return s.replace(/ {2,}/g, " ").replace(/^ | $/g, "");
}
