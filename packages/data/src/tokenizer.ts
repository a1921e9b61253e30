/** What `prepare` needs from a tokenizer, and how worker threads build their own copy of it. */

/** Any tokenizer with this shape works; @tinyllama/tokenizer's Tokenizer does, through tools/prepare.ts's adapter. */
export interface TokenizerLike {
  /** Ids of the text alone: no BOS/EOS (prepare adds the EOS after each document). */
  encode(text: string): Int32Array | number[];
  eosId: number;
  bosId?: number;
  vocabSize: number;
  /** Recorded in meta.json so a loader can tell which tokenizer made the shards. */
  id?: string;
}

/**
 * A module that builds the tokenizer, loaded by every worker thread (functions cannot be sent
 * to a worker, a module specifier can). The module's `export` (default "createTokenizer") is
 * called with `options` (structured-cloneable) and returns a TokenizerLike or a promise of one.
 */
export interface TokenizerModule {
  module: string;
  export?: string;
  options?: unknown;
}

export interface TokenizerInfo {
  eosId: number;
  bosId: number | null;
  vocabSize: number;
  id: string;
}

export type TokenizerFactory = (options: unknown) => TokenizerLike | Promise<TokenizerLike>;

export function isTokenizerModule(t: TokenizerLike | TokenizerModule): t is TokenizerModule {
  return typeof (t as TokenizerModule).module === "string";
}

/** Imports a TokenizerModule and builds the tokenizer (used in workers, and in-thread with threads = 0). */
export async function loadTokenizerModule(src: TokenizerModule): Promise<TokenizerLike> {
  const name = src.export ?? "createTokenizer";
  const mod = (await import(src.module)) as Record<string, unknown>;
  const factory = mod[name];
  if (typeof factory !== "function") throw new Error(`tokenizer module '${src.module}' has no exported function '${name}'`);
  const tok = await (factory as TokenizerFactory)(src.options);
  return checkTokenizer(tok, `tokenizer from '${src.module}'`);
}

export function checkTokenizer(tok: TokenizerLike, what = "tokenizer"): TokenizerLike {
  if (tok === null || typeof tok !== "object" || typeof tok.encode !== "function")
    throw new TypeError(`${what}: expected { encode(text), eosId, vocabSize, bosId? }`);
  if (!Number.isInteger(tok.vocabSize) || tok.vocabSize < 1 || tok.vocabSize > 0xffffffff)
    throw new RangeError(`${what}: vocabSize must be an integer in [1, 2^32), got ${tok.vocabSize}`);
  if (!Number.isInteger(tok.eosId) || tok.eosId < 0 || tok.eosId >= tok.vocabSize)
    throw new RangeError(`${what}: eosId ${tok.eosId} is outside the vocabulary [0, ${tok.vocabSize})`);
  if (tok.bosId !== undefined && tok.bosId !== null && (!Number.isInteger(tok.bosId) || tok.bosId < 0 || tok.bosId >= tok.vocabSize))
    throw new RangeError(`${what}: bosId ${tok.bosId} is outside the vocabulary [0, ${tok.vocabSize})`);
  return tok;
}

export function infoOf(tok: TokenizerLike): TokenizerInfo {
  return { eosId: tok.eosId, bosId: tok.bosId ?? null, vocabSize: tok.vocabSize, id: tok.id ?? "unknown" };
}

/** Encodes a batch into one flat array plus per-document lengths (two transferable buffers). */
export function encodeBatch(tok: TokenizerLike, texts: readonly string[]): { flat: Int32Array; lengths: Int32Array } {
  const parts: Int32Array[] = [];
  const lengths = new Int32Array(texts.length);
  let total = 0;
  for (let i = 0; i < texts.length; i++) {
    const ids = tok.encode(texts[i]!);
    const arr = ids instanceof Int32Array ? ids : Int32Array.from(ids);
    parts.push(arr);
    lengths[i] = arr.length;
    total += arr.length;
  }
  const flat = new Int32Array(total);
  let off = 0;
  for (const p of parts) {
    flat.set(p, off);
    off += p.length;
  }
  return { flat, lengths };
}
