import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parameterShapes } from "@tinyllama/config";
import { mulberry32, randn } from "@tinyllama/testing";
import {
  f16ToF32,
  f32ToF16,
  GGUF_ALIGNMENT,
  GgmlType,
  ggufVocab,
  loadHfCheckpoint,
  permuteRopeRows,
  readGguf,
  writeGguf,
  type GgufTokenizer,
  type GgufValue,
  type TokenizerLike,
} from "../src/index.ts";

const FIX = join(import.meta.dir, "../../../test/fixtures/ckpt_gguf_tiny");
const SPM = join(import.meta.dir, "../../../test/fixtures/ckpt_spm_tiny");
const tmp = mkdtempSync(join(tmpdir(), "ckpt-gguf-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface TokFile { tokens: string[]; scores: number[]; types: number[]; bos_id: number; eos_id: number; unk_id: number; add_bos?: boolean; add_eos?: boolean }
const tf = JSON.parse(readFileSync(join(FIX, "tokenizer_gguf.json"), "utf8")) as TokFile;
const fromFile = (t: TokFile): GgufTokenizer => ({ tokens: t.tokens, scores: t.scores, types: t.types, bosId: t.bos_id, eosId: t.eos_id, unkId: t.unk_id, addBos: t.add_bos ?? true, addEos: t.add_eos ?? false });
const tokenizer = fromFile(tf);
// SentencePiece's own view of a real (tiny) tokenizer.model: pieces, scores, types, and its encodings of some texts.
const spmVocab = fromFile(JSON.parse(readFileSync(join(SPM, "vocab.json"), "utf8")) as TokFile);
const spmTexts = JSON.parse(readFileSync(join(SPM, "tokenize.json"), "utf8")) as { text: string; ids: number[] }[];
const ck = loadHfCheckpoint(FIX);
const { config } = ck;
const paths = { F32: join(tmp, "tiny-f32.gguf"), F16: join(tmp, "tiny-f16.gguf"), SPM: join(tmp, "tiny-spm.gguf") };
writeGguf(paths.F32, { config, tensors: ck.tensors, tokenizer, dtype: "F32", name: "tiny" });
writeGguf(paths.F16, { config, tensors: ck.tensors, tokenizer, dtype: "F16", name: "tiny" });
writeGguf(paths.SPM, { config, tensors: ck.tensors, tokenizer: spmVocab }); // same V = 512: the weights do not matter here

describe("writeGguf / readGguf", () => {
  const g = readGguf(paths.F32);
  test("llama metadata with the value types llama.cpp expects", () => {
    expect(g.version).toBe(3);
    const want: [string, GgufValue, string][] = [
      ["general.architecture", "llama", "string"],
      ["general.name", "tiny", "string"],
      ["general.alignment", 32, "u32"],
      ["general.file_type", 0, "u32"],
      ["llama.context_length", 128, "u32"],
      ["llama.embedding_length", 64, "u32"],
      ["llama.block_count", 2, "u32"],
      ["llama.feed_forward_length", 176, "u32"],
      ["llama.rope.dimension_count", 16, "u32"],
      ["llama.attention.head_count", 4, "u32"],
      ["llama.attention.head_count_kv", 2, "u32"],
      ["llama.attention.layer_norm_rms_epsilon", Math.fround(1e-5), "f32"],
      ["llama.rope.freq_base", 10000, "f32"],
      ["tokenizer.ggml.model", "llama", "string"],
      ["tokenizer.ggml.bos_token_id", 1, "u32"],
      ["tokenizer.ggml.eos_token_id", 2, "u32"],
      ["tokenizer.ggml.unknown_token_id", 0, "u32"],
      ["tokenizer.ggml.add_bos_token", true, "bool"],
      ["tokenizer.ggml.add_eos_token", false, "bool"],
    ];
    for (const [k, v, t] of want) expect([k, g.metadata.get(k), g.metadataTypes.get(k)]).toEqual([k, v, t]);
    expect(g.metadata.get("tokenizer.ggml.tokens")).toEqual(tf.tokens);
    expect(g.metadata.get("tokenizer.ggml.scores")).toEqual(tf.scores);
    expect(g.metadata.get("tokenizer.ggml.token_type")).toEqual(tf.types);
    expect(g.metadataTypes.get("tokenizer.ggml.tokens")).toBe("array<string>");
    expect(g.metadataTypes.get("tokenizer.ggml.scores")).toBe("array<f32>");
    expect(g.metadataTypes.get("tokenizer.ggml.token_type")).toBe("array<i32>");
    expect(readGguf(paths.F16).metadata.get("general.file_type")).toBe(1);
  });
  test("tensor names, reversed dims, aligned offsets, in HF module order", () => {
    const expectName = ["token_embd.weight"];
    for (let i = 0; i < 2; i++) {
      for (const p of ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"]) expectName.push(`blk.${i}.${p}.weight`);
    }
    expectName.push("output_norm.weight", "output.weight");
    expect(g.tensors.map((t) => t.name)).toEqual(expectName);
    const shapes = parameterShapes(config);
    g.tensors.forEach((t, i) => expect(t.dims).toEqual([...shapes[i]!.shape].reverse()));
    expect(g.tensors.find((t) => t.name === "blk.0.attn_k.weight")!.dims).toEqual([64, 32]);
    expect(g.tensors.every((t) => t.offset % GGUF_ALIGNMENT === 0)).toBe(true);
    expect(g.dataOffset % GGUF_ALIGNMENT).toBe(0);
  });
  test("data: plain tensors unchanged, Q/K rows permuted per head, F16 only for 2-D weights", () => {
    const hf = (n: string): Float32Array => ck.tensors.get(n)!;
    expect(g.tensorData("token_embd.weight")).toEqual(hf("model.embed_tokens.weight"));
    expect(g.tensorData("blk.1.ffn_down.weight")).toEqual(hf("model.layers.1.mlp.down_proj.weight"));
    expect(g.tensorData("output.weight")).toEqual(hf("lm_head.weight"));
    const q = g.tensorData("blk.1.attn_q.weight");
    const k = g.tensorData("blk.1.attn_k.weight");
    expect(q).toEqual(permuteRopeRows(hf("model.layers.1.self_attn.q_proj.weight"), 4, 64));
    expect(k).toEqual(permuteRopeRows(hf("model.layers.1.self_attn.k_proj.weight"), 2, 64));
    expect(q).not.toEqual(hf("model.layers.1.self_attn.q_proj.weight"));
    expect(permuteRopeRows(q, 4, 64, true)).toEqual(hf("model.layers.1.self_attn.q_proj.weight"));
    // Row 2i+j of head h came from HF row j*HD/2 + i (HD = 16): spot-check head 1, i = 3, j = 1.
    expect(q.subarray((16 + 7) * 64, (16 + 8) * 64)).toEqual(hf("model.layers.1.self_attn.q_proj.weight").subarray((16 + 8 + 3) * 64, (16 + 8 + 4) * 64));

    const h = readGguf(paths.F16);
    for (const t of h.tensors) expect([t.name, t.type]).toEqual([t.name, t.dims.length === 1 ? GgmlType.F32 : GgmlType.F16]);
    expect(h.tensorData("blk.0.attn_norm.weight")).toEqual(hf("model.layers.0.input_layernorm.weight"));
    expect(h.tensorData("blk.0.ffn_up.weight")).toEqual(f16ToF32(f32ToF16(hf("model.layers.0.mlp.up_proj.weight"))));
  });
  test("the permutation turns rotate-half RoPE into interleaved RoPE (q·k unchanged at every position pair)", () => {
    // HF: dim i pairs with i + HD/2. GGML: dim 2i pairs with 2i+1. Same frequency theta^(-2i/HD) for pair i.
    const NH = 2, HD = 8, Cin = 5, theta = 10000;
    const rng = mulberry32(3);
    const wq = randn(NH * HD * Cin, rng), wk = randn(NH * HD * Cin, rng), x = randn(Cin, rng), y = randn(Cin, rng);
    const mv = (w: Float32Array, v: Float32Array): number[] => Array.from({ length: w.length / Cin }, (_, r) => v.reduce((s, vi, c) => s + w[r * Cin + c]! * vi, 0));
    const rot = (q: number[], pos: number, interleaved: boolean): number[] => {
      const out = [...q];
      for (let h = 0; h < NH; h++) {
        for (let i = 0; i < HD / 2; i++) {
          const a = h * HD + (interleaved ? 2 * i : i), b = h * HD + (interleaved ? 2 * i + 1 : i + HD / 2);
          const ang = pos * theta ** ((-2 * i) / HD), c = Math.cos(ang), s = Math.sin(ang);
          out[a] = q[a]! * c - q[b]! * s;
          out[b] = q[b]! * c + q[a]! * s;
        }
      }
      return out;
    };
    const dots = (q: number[], k: number[]): number[] => Array.from({ length: NH }, (_, h) => q.slice(h * HD, (h + 1) * HD).reduce((s, v, d) => s + v * k[h * HD + d]!, 0));
    for (const [pq, pk] of [[0, 0], [3, 1], [17, 5]] as const) {
      const hf = dots(rot(mv(wq, x), pq, false), rot(mv(wk, y), pk, false));
      const gg = dots(rot(mv(permuteRopeRows(wq, NH, Cin), x), pq, true), rot(mv(permuteRopeRows(wk, NH, Cin), y), pk, true));
      hf.forEach((v, i) => expect(gg[i]!).toBeCloseTo(v, 4));
    }
  });
  test("tied embeddings: no output.weight (llama.cpp then uses token_embd)", () => {
    const tied = new Map(ck.tensors);
    tied.delete("lm_head.weight");
    const p = join(tmp, "tied.gguf");
    writeGguf(p, { config: { ...config, tieEmbeddings: true }, tensors: tied, tokenizer });
    const names = readGguf(p).tensors.map((t) => t.name);
    expect(names).toContain("token_embd.weight");
    expect(names).not.toContain("output.weight");
    expect(names.length).toBe(20);
  });
  test("tokenizer and tensor mismatches are refused before writing", () => {
    const p = join(tmp, "never.gguf");
    expect(() => writeGguf(p, { config, tensors: ck.tensors, tokenizer: { ...tokenizer, tokens: tokenizer.tokens.slice(1) } })).toThrow(/511 tokens but the model's vocabSize is 512/);
    expect(() => writeGguf(p, { config, tensors: ck.tensors, tokenizer: { ...tokenizer, eosId: 600 } })).toThrow(/eosId 600 is outside the vocabulary/);
    const t = new Map(ck.tensors);
    t.delete("model.norm.weight");
    expect(() => writeGguf(p, { config, tensors: t, tokenizer })).toThrow(/missing tensors \(1\): model\.norm\.weight/);
    expect(() => readFileSync(p)).toThrow();
  });
  test("readGguf: truncated and foreign files", () => {
    const bytes = new Uint8Array(readFileSync(paths.F32));
    const cut = join(tmp, "cut.gguf");
    writeFileSync(cut, bytes.subarray(0, 5000));
    expect(() => readGguf(cut)).toThrow(/cut\.gguf: truncated while reading/);
    writeFileSync(cut, bytes.subarray(0, bytes.length - 100));
    expect(() => readGguf(cut).tensorData("output.weight")).toThrow(/truncated: tensor output\.weight needs bytes up to \d+, file has \d+/);
    const st = join(tmp, "x.gguf");
    writeFileSync(st, new Uint8Array(64));
    expect(() => readGguf(st)).toThrow(/not a GGUF file/);
  });
});

describe("ggufVocab", () => {
  test("tokenizer.json-style BPE (no scores): merge order becomes scores, types from unk/added/byte pieces", () => {
    const pieces = ["<unk>", "<s>", "</s>", "<0x0A>", "a", "b", "ab", "abb", "bb", "<extra>"];
    const tok: TokenizerLike = {
      vocabSize: pieces.length, bosId: 1, eosId: 2,
      idToToken: (i) => pieces[i]!,
      spec: {
        addedTokens: [{ id: 1, special: true }, { id: 2, special: true }, { id: 9, special: false }],
        addBos: true, addEos: false,
        model: { unkId: 0, byteFallback: true, merges: [{ merged: 8, rank: 0 }, { merged: 6, rank: 1 }, { merged: 7, rank: 2 }, { merged: 7, rank: 5 }] },
      },
    };
    const v = ggufVocab(tok);
    expect(v.tokens).toEqual(pieces);
    // merges: "bb" rank 0, "ab" rank 1, "abb" rank 2 (its later duplicate rule ignored); the rest below every merge
    expect(Array.from(v.scores)).toEqual([-4, -5, -6, -7, -8, -9, -1, -2, -0, -13]);
    expect(Array.from(v.types)).toEqual([2, 3, 3, 6, 1, 1, 1, 1, 1, 4]);
    expect([v.bosId, v.eosId, v.unkId, v.addBos, v.addEos]).toEqual([1, 2, 0, true, false]);
    // SentencePiece scores, when the tokenizer has them, are used as they are.
    const withScores = ggufVocab({ ...tok, spec: { ...tok.spec, scores: pieces.map((_, i) => i / 2) } });
    expect(Array.from(withScores.scores)).toEqual(pieces.map((_, i) => i / 2));
  });
});

type TokenizerModule = { Tokenizer: { fromFile(path: string): TokenizerLike } };
let tokMod: TokenizerModule | undefined;
try {
  const name = "@tinyllama/tokenizer"; // a variable: this package does not depend on it
  tokMod = (await import(name)) as TokenizerModule;
} catch {
  console.log("SKIP ggufVocab on a real tokenizer.model: @tinyllama/tokenizer is not installed in this checkout");
}
describe.if(tokMod !== undefined)("ggufVocab with @tinyllama/tokenizer", () => {
  test("a SentencePiece tokenizer.model gives SentencePiece's own pieces, scores and types", () => {
    const v = ggufVocab(tokMod!.Tokenizer.fromFile(join(SPM, "tokenizer.model")));
    expect(v.tokens).toEqual(spmVocab.tokens);
    expect(Array.from(v.scores)).toEqual(Array.from(spmVocab.scores, (x) => Math.fround(x)));
    expect(Array.from(v.types)).toEqual(Array.from(spmVocab.types));
    expect([v.bosId, v.eosId, v.unkId]).toEqual([spmVocab.bosId, spmVocab.eosId, spmVocab.unkId]);
  });
});

// ---- llama.cpp parity: the exported file must generate what PyTorch generates from the same weights ----

interface Expected { prompt: number[]; continuation: number[]; min_margin: number }
const expected = JSON.parse(readFileSync(join(FIX, "expected.json"), "utf8")) as Expected;

type NodeLlamaCpp = typeof import("node-llama-cpp");
let nlc: NodeLlamaCpp | undefined;
let why = "";
try {
  nlc = await import("node-llama-cpp");
} catch (e) {
  why = e instanceof Error ? e.message : String(e);
}
if (!nlc) console.log(`SKIP llama.cpp parity: node-llama-cpp is not installed (${why.split("\n")[0]}); run npm install`);

// One llama.cpp runtime for the whole file: loading the native library is the slow part (seconds).
let runtime: Promise<Awaited<ReturnType<NodeLlamaCpp["getLlama"]>>> | undefined;
afterAll(async () => {
  if (runtime) await (await runtime).dispose();
});

async function greedyInLlamaCpp(lib: NodeLlamaCpp, modelPath: string, prompt: number[], steps: number): Promise<number[]> {
  runtime ??= lib.getLlama({ gpu: false, build: "never", logLevel: lib.LlamaLogLevel.error });
  const llama = await runtime;
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
  try {
    const context = await model.createContext({ contextSize: 64, threads: 1, batchSize: 64 });
    const out: number[] = [];
    // temperature 0 = argmax; no repeat penalty unless asked for.
    for await (const tok of context.getSequence().evaluate(prompt as never[], { temperature: 0 })) {
      out.push(Number(tok));
      if (out.length === steps) break;
    }
    await context.dispose();
    return out;
  } finally {
    await model.dispose();
  }
}

const SLOW = 60_000; // first call loads llama.cpp's native library

describe.if(nlc !== undefined)("llama.cpp (node-llama-cpp 3.21.1, CPU)", () => {
  test(`F32 GGUF: greedy continuation of 20 tokens equals PyTorch's (min logit margin ${expected.min_margin.toFixed(3)})`, async () => {
    const ids = await greedyInLlamaCpp(nlc!, paths.F32, expected.prompt, expected.continuation.length);
    expect(ids).toEqual(expected.continuation);
  }, SLOW);
  test("F16 GGUF loads and generates the same greedy continuation", async () => {
    const ids = await greedyInLlamaCpp(nlc!, paths.F16, expected.prompt, expected.continuation.length);
    expect(ids).toEqual(expected.continuation);
  }, SLOW);
  test("a GGUF vocabulary from a SentencePiece model tokenizes in llama.cpp exactly as SentencePiece does", async () => {
    runtime ??= nlc!.getLlama({ gpu: false, build: "never", logLevel: nlc!.LlamaLogLevel.error });
    const model = await (await runtime).loadModel({ modelPath: paths.SPM, gpuLayers: 0 });
    try {
      for (const { text, ids } of spmTexts) expect([text, model.tokenize(text).map(Number)]).toEqual([text, ids]);
    } finally {
      await model.dispose();
    }
  }, SLOW);
  test("without the Q/K permutation llama.cpp generates something else (the test can fail)", async () => {
    // Un-permute on purpose: feed GGML-layout weights through writeGguf, which permutes again.
    const wrong = new Map(ck.tensors);
    for (const [name, w] of ck.tensors) {
      if (name.endsWith("q_proj.weight")) wrong.set(name, permuteRopeRows(w, config.nHeads, config.dim, true));
      if (name.endsWith("k_proj.weight")) wrong.set(name, permuteRopeRows(w, config.nKvHeads, config.dim, true));
    }
    const p = join(tmp, "wrong.gguf");
    writeGguf(p, { config, tensors: wrong, tokenizer });
    const ids = await greedyInLlamaCpp(nlc!, p, expected.prompt, expected.continuation.length);
    expect(ids).not.toEqual(expected.continuation);
  }, SLOW);
});
