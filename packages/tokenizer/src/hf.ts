// Hugging Face tokenizer.json (+ tokenizer_config.json): parse into a TokenizerSpec, and export one.
// Every malformed or unsupported field is an Error that names it, e.g. `tokenizer.json: model.merges[12] ...`.

import type { MergeRule } from "./bpe.ts";
import type { DecoderStep } from "./decode.ts";
import type { AddedToken, TokenizerSpec } from "./spec.ts";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

function fail(field: string, what: string): never {
  throw new Error(`tokenizer.json: ${field} ${what}`);
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function obj(v: unknown, field: string): JsonObject {
  if (!isObject(v)) fail(field, v === undefined ? "is missing" : "must be an object");
  return v;
}

function str(v: unknown, field: string): string {
  if (typeof v !== "string") fail(field, v === undefined ? "is missing" : "must be a string");
  return v;
}

function optBool(v: unknown, field: string, dflt: boolean): boolean {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "boolean") fail(field, "must be a boolean");
  return v;
}

function int(v: unknown, field: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) fail(field, v === undefined ? "is missing" : "must be a non-negative integer");
  return v;
}

/** Builds a spec from parsed tokenizer.json and (optionally) tokenizer_config.json objects. */
export function specFromHf(json: unknown, config?: unknown): TokenizerSpec {
  const root = obj(json, "(root)");
  const model = obj(root.model, "model");
  const type = model.type ?? "BPE";
  if (type !== "BPE") fail("model.type", `is ${JSON.stringify(type)}; only BPE models are supported`);
  if (model.dropout !== undefined && model.dropout !== null) fail("model.dropout", "is set; BPE dropout is not supported");
  for (const k of ["continuing_subword_prefix", "end_of_word_suffix"]) {
    if (model[k] !== undefined && model[k] !== null && model[k] !== "") fail(`model.${k}`, "is set; it is not supported");
  }
  const vocab = obj(model.vocab, "model.vocab");
  const pieces: string[] = [];
  for (const [piece, id] of Object.entries(vocab)) {
    const i = int(id, `model.vocab[${JSON.stringify(piece)}]`);
    if (pieces[i] !== undefined) fail(`model.vocab[${JSON.stringify(piece)}]`, `reuses id ${i} of ${JSON.stringify(pieces[i])}`);
    pieces[i] = piece;
  }

  const addedTokens: AddedToken[] = [];
  const addedJson = root.added_tokens ?? [];
  if (!Array.isArray(addedJson)) fail("added_tokens", "must be an array");
  addedJson.forEach((t, k) => {
    const f = `added_tokens[${k}]`;
    const o = obj(t, f);
    const tok: AddedToken = {
      id: int(o.id, `${f}.id`),
      content: str(o.content, `${f}.content`),
      special: optBool(o.special, `${f}.special`, false),
      lstrip: optBool(o.lstrip, `${f}.lstrip`, false),
      rstrip: optBool(o.rstrip, `${f}.rstrip`, false),
    };
    if (tok.content === "") fail(`${f}.content`, "must not be empty");
    if (pieces[tok.id] !== undefined && pieces[tok.id] !== tok.content) fail(`${f}.id`, `is ${tok.id}, which model.vocab gives to ${JSON.stringify(pieces[tok.id])}`);
    pieces[tok.id] = tok.content;
    addedTokens.push(tok);
  });
  for (let i = 0; i < pieces.length; i++) if (pieces[i] === undefined) fail("model.vocab", `has no token with id ${i} (ids must be 0..${pieces.length - 1})`);
  const pieceToId = new Map<string, number>();
  pieces.forEach((p, i) => {
    if (!pieceToId.has(p)) pieceToId.set(p, i);
  });

  const mergesJson = model.merges;
  if (!Array.isArray(mergesJson)) fail("model.merges", mergesJson === undefined ? "is missing" : "must be an array");
  const merges: MergeRule[] = [];
  mergesJson.forEach((m, rank) => {
    const f = `model.merges[${rank}]`;
    let a: string, b: string;
    if (typeof m === "string") {
      const sp = m.indexOf(" ");
      if (sp <= 0 || sp !== m.lastIndexOf(" ")) fail(f, `is ${JSON.stringify(m)}; expected "left right"`);
      a = m.slice(0, sp);
      b = m.slice(sp + 1);
    } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string") {
      a = m[0];
      b = m[1];
    } else fail(f, "must be a string \"left right\" or a pair [left, right]");
    const left = pieceToId.get(a);
    const right = pieceToId.get(b);
    const merged = pieceToId.get(a + b);
    if (left === undefined) fail(f, `uses ${JSON.stringify(a)}, which is not in model.vocab`);
    if (right === undefined) fail(f, `uses ${JSON.stringify(b)}, which is not in model.vocab`);
    if (merged === undefined) fail(f, `makes ${JSON.stringify(a + b)}, which is not in model.vocab`);
    merges.push({ left, right, merged, rank });
  });

  let unkId = -1;
  if (model.unk_token !== undefined && model.unk_token !== null) {
    const unk = str(model.unk_token, "model.unk_token");
    const id = pieceToId.get(unk);
    if (id === undefined) fail("model.unk_token", `is ${JSON.stringify(unk)}, which is not in model.vocab`);
    unkId = id;
  }
  const byteFallback = optBool(model.byte_fallback, "model.byte_fallback", false);
  const fuseUnk = optBool(model.fuse_unk, "model.fuse_unk", false);

  const prepend = parseNormalization(root.normalizer ?? null, root.pre_tokenizer ?? null);
  const decoder = root.decoder === undefined || root.decoder === null ? [] : parseDecoder(root.decoder, "decoder");

  // BOS/EOS: the post-processor template, overridden by tokenizer_config.json as transformers does
  let addBos = false;
  let addEos = false;
  let bosId = pieceToId.get("<s>") ?? -1;
  let eosId = pieceToId.get("</s>") ?? -1;
  const pp = root.post_processor;
  if (pp !== undefined && pp !== null) {
    const p = obj(pp, "post_processor");
    if (p.type === "TemplateProcessing") {
      const single = p.single;
      if (!Array.isArray(single)) fail("post_processor.single", "must be an array");
      const seqAt = single.findIndex((x) => isObject(x) && x.Sequence !== undefined);
      if (seqAt < 0) fail("post_processor.single", "has no Sequence");
      const specialAt = (k: number): number => {
        const x = single[k];
        if (!isObject(x) || !isObject(x.SpecialToken)) return -1;
        const name = str(x.SpecialToken.id, `post_processor.single[${k}].SpecialToken.id`);
        const id = pieceToId.get(name);
        if (id === undefined) fail(`post_processor.single[${k}].SpecialToken.id`, `is ${JSON.stringify(name)}, which is not in the vocabulary`);
        return id;
      };
      if (seqAt > 0) {
        const id = specialAt(seqAt - 1);
        if (id >= 0) {
          addBos = true;
          bosId = id;
        }
      }
      if (seqAt + 1 < single.length) {
        const id = specialAt(seqAt + 1);
        if (id >= 0) {
          addEos = true;
          eosId = id;
        }
      }
    } else fail("post_processor.type", `is ${JSON.stringify(p.type)}; only TemplateProcessing is supported`);
  }
  if (config !== undefined && config !== null) {
    const c = obj(config, "(tokenizer_config.json root)");
    const tokenName = (v: Json | undefined, field: string): string | undefined => {
      if (v === undefined || v === null) return undefined;
      if (typeof v === "string") return v;
      if (isObject(v)) return str(v.content, `tokenizer_config.json ${field}.content`);
      throw new Error(`tokenizer_config.json: ${field} must be a string or {content}`);
    };
    const bosName = tokenName(c.bos_token, "bos_token");
    const eosName = tokenName(c.eos_token, "eos_token");
    if (bosName !== undefined) bosId = pieceToId.get(bosName) ?? fail("(config) bos_token", `${JSON.stringify(bosName)} is not in the vocabulary`);
    if (eosName !== undefined) eosId = pieceToId.get(eosName) ?? fail("(config) eos_token", `${JSON.stringify(eosName)} is not in the vocabulary`);
    if (typeof c.add_bos_token === "boolean") addBos = c.add_bos_token;
    if (typeof c.add_eos_token === "boolean") addEos = c.add_eos_token;
  }

  return {
    model: { pieces, merges, unkId, byteFallback, fuseUnk },
    addedTokens,
    prepend,
    removeExtraWhitespaces: false,
    decoder,
    bosId,
    eosId,
    addBos,
    addEos,
    parseSpecial: true,
  };
}

// We support the two ways Llama-family tokenizer.json files express SentencePiece's whitespace handling:
// normalizer Sequence[Prepend("▁"), Replace(" ", "▁")] with no pre-tokenizer (Llama 2, TinyLlama, Mistral),
// or a Metaspace pre-tokenizer with split=false.
function parseNormalization(normalizer: Json, pre: Json): TokenizerSpec["prepend"] {
  let prepend: TokenizerSpec["prepend"] = "never";
  let replaced = false;
  const visit = (n: Json, field: string): void => {
    const o = obj(n, field);
    switch (o.type) {
      case "Sequence": {
        const list = o.normalizers;
        if (!Array.isArray(list)) fail(`${field}.normalizers`, "must be an array");
        list.forEach((x, i) => visit(x, `${field}.normalizers[${i}]`));
        return;
      }
      case "Prepend":
        if (str(o.prepend, `${field}.prepend`) !== "\u2581") fail(`${field}.prepend`, "must be \"▁\" (only SentencePiece-style prefixes are supported)");
        if (replaced) fail(field, "comes after Replace; only Prepend then Replace is supported");
        prepend = "always";
        return;
      case "Replace": {
        const pat = obj(o.pattern, `${field}.pattern`);
        if (pat.String !== " " || o.content !== "\u2581") fail(field, "must replace \" \" with \"▁\" (other replacements are not supported)");
        replaced = true;
        return;
      }
      default:
        fail(`${field}.type`, `is ${JSON.stringify(o.type)}; supported normalizers are Sequence, Prepend("▁"), Replace(" ", "▁")`);
    }
  };
  if (normalizer !== null) visit(normalizer, "normalizer");
  if (pre !== null) {
    const p = obj(pre, "pre_tokenizer");
    if (p.type !== "Metaspace") fail("pre_tokenizer.type", `is ${JSON.stringify(p.type)}; only null or Metaspace is supported`);
    if (p.replacement !== undefined && p.replacement !== "\u2581") fail("pre_tokenizer.replacement", "must be \"▁\"");
    if (p.split === true) fail("pre_tokenizer.split", "is true; only split=false is supported");
    const scheme = p.prepend_scheme ?? (p.add_prefix_space === false ? "never" : "always");
    if (scheme !== "always" && scheme !== "first" && scheme !== "never") fail("pre_tokenizer.prepend_scheme", "must be always, first or never");
    if (replaced || prepend !== "never") fail("pre_tokenizer", "is Metaspace but the normalizer already handles spaces");
    prepend = scheme;
    replaced = true;
  }
  if (!replaced) fail("normalizer", "must map spaces to \"▁\" (Replace or a Metaspace pre_tokenizer); other schemes are not supported");
  return prepend;
}

function parseDecoder(d: Json, field: string): DecoderStep[] {
  const o = obj(d, field);
  switch (o.type) {
    case "Sequence": {
      const list = o.decoders;
      if (!Array.isArray(list)) fail(`${field}.decoders`, "must be an array");
      return list.flatMap((x, i) => parseDecoder(x, `${field}.decoders[${i}]`));
    }
    case "Replace": {
      const pat = obj(o.pattern, `${field}.pattern`);
      return [{ type: "Replace", pattern: str(pat.String, `${field}.pattern.String`), content: str(o.content, `${field}.content`) }];
    }
    case "ByteFallback":
      return [{ type: "ByteFallback" }];
    case "Fuse":
      return [{ type: "Fuse" }];
    case "Strip":
      return [{ type: "Strip", content: str(o.content, `${field}.content`), start: int(o.start, `${field}.start`), stop: int(o.stop, `${field}.stop`) }];
    case "Metaspace": {
      const scheme = o.prepend_scheme ?? (o.add_prefix_space === false ? "never" : "always");
      if (scheme !== "always" && scheme !== "first" && scheme !== "never") fail(`${field}.prepend_scheme`, "must be always, first or never");
      return [{ type: "Metaspace", replacement: str(o.replacement ?? "\u2581", `${field}.replacement`), prependScheme: scheme }];
    }
    default:
      fail(`${field}.type`, `is ${JSON.stringify(o.type)}; supported decoders are Sequence, Replace, ByteFallback, Fuse, Strip, Metaspace`);
  }
}

/** tokenizer.json for a spec, in the layout Hugging Face writes for Llama 2 / TinyLlama. */
export function specToHf(spec: TokenizerSpec): JsonObject {
  const m = spec.model;
  // null prototype: pieces such as "toString" or "__proto__" must be plain keys
  const vocab: JsonObject = Object.create(null) as JsonObject;
  const seen = new Set<string>();
  m.pieces.forEach((p, i) => {
    if (!seen.has(p)) vocab[p] = i;
    seen.add(p);
  });
  const sorted = [...m.merges].sort((x, y) => x.rank - y.rank);
  const anySpace = m.pieces.some((p) => p.includes(" "));
  const merges: Json[] = sorted.map((r) => (anySpace ? [m.pieces[r.left], m.pieces[r.right]] : `${m.pieces[r.left]} ${m.pieces[r.right]}`));
  const bosName = spec.bosId >= 0 ? m.pieces[spec.bosId] : null;
  const eosName = spec.eosId >= 0 ? m.pieces[spec.eosId] : null;
  const single: Json[] = [];
  const specialTokens: JsonObject = {};
  if (spec.addBos && bosName) {
    single.push({ SpecialToken: { id: bosName, type_id: 0 } });
    specialTokens[bosName] = { id: bosName, ids: [spec.bosId], tokens: [bosName] };
  }
  single.push({ Sequence: { id: "A", type_id: 0 } });
  if (spec.addEos && eosName) {
    single.push({ SpecialToken: { id: eosName, type_id: 0 } });
    specialTokens[eosName] = { id: eosName, ids: [spec.eosId], tokens: [eosName] };
  }
  const pair: Json[] = [...single, ...single.map((x) => (isObject(x) && isObject(x.Sequence) ? { Sequence: { id: "B", type_id: 1 } } : x))];
  const normalizers: Json[] = [];
  if (spec.prepend === "always") normalizers.push({ type: "Prepend", prepend: "\u2581" });
  normalizers.push({ type: "Replace", pattern: { String: " " }, content: "\u2581" });
  if (spec.prepend === "first") throw new Error("export: prepend scheme 'first' has no tokenizer.json normalizer equivalent");
  if (spec.removeExtraWhitespaces) throw new Error("export: remove_extra_whitespaces has no tokenizer.json equivalent; train with --remove_extra_whitespaces=false");
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: spec.addedTokens.map((t) => ({
      id: t.id,
      content: t.content,
      single_word: false,
      lstrip: t.lstrip,
      rstrip: t.rstrip,
      normalized: false,
      special: t.special,
    })),
    normalizer: { type: "Sequence", normalizers },
    pre_tokenizer: null,
    post_processor: { type: "TemplateProcessing", single, pair, special_tokens: specialTokens },
    decoder: {
      type: "Sequence",
      decoders: spec.decoder.map((s): Json => {
        switch (s.type) {
          case "Replace":
            return { type: "Replace", pattern: { String: s.pattern }, content: s.content };
          case "ByteFallback":
            return { type: "ByteFallback" };
          case "Fuse":
            return { type: "Fuse" };
          case "Strip":
            return { type: "Strip", content: s.content, start: s.start, stop: s.stop };
          case "Metaspace":
            return { type: "Metaspace", replacement: s.replacement, prepend_scheme: s.prependScheme, split: false };
        }
      }),
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: m.unkId >= 0 ? m.pieces[m.unkId] : null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: m.fuseUnk,
      byte_fallback: m.byteFallback,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

/** tokenizer_config.json matching a spec (the fields transformers reads for BOS/EOS). */
export function specToHfConfig(spec: TokenizerSpec): JsonObject {
  const m = spec.model;
  return {
    add_bos_token: spec.addBos,
    add_eos_token: spec.addEos,
    bos_token: spec.bosId >= 0 ? m.pieces[spec.bosId] : null,
    eos_token: spec.eosId >= 0 ? m.pieces[spec.eosId] : null,
    unk_token: m.unkId >= 0 ? m.pieces[m.unkId] : null,
    clean_up_tokenization_spaces: false,
    legacy: true,
    tokenizer_class: "LlamaTokenizer",
  };
}
