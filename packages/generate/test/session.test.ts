import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readSafetensors } from "@tinyllama/checkpoint";
import { Model } from "@tinyllama/model";
import { relErr } from "@tinyllama/testing";
import { InferenceSession, generate, loadModel, type LoadedModel } from "../src/index.ts";

const FIX = join(import.meta.dir, "../../../test/fixtures");
interface Expected { prompt: number[]; greedy: number[]; min_margin: number }
const expected = JSON.parse(readFileSync(join(FIX, "gen_expected.json"), "utf8")) as Expected;
const st = readSafetensors(join(FIX, "gen_expected.safetensors"));
const batch = st.get("batch_tokens")!.data as Int32Array; // (2, 16)
const B = 2, T = 16;

const loaded: LoadedModel[] = [];
const open = (name: string): LoadedModel => {
  const m = loadModel(join(FIX, name));
  loaded.push(m);
  return m;
};
afterAll(() => {
  for (const m of loaded) m.model.free();
});

/** Logits (B,T,V) of a full forward of the Model (the training code path) over `tokens`. */
function fullForward(model: Model, tokens: Int32Array, b: number, t: number): Float32Array {
  const m = Model.create(model.cfg, { B: b, T: t, training: false, init: false, backend: model.backend });
  try {
    model.backend.copy(m.params.flat(), model.params.flat());
    m.forward(tokens);
    return m.logits().read();
  } finally {
    m.free();
  }
}

/** Logits (B,T,V) from the session: prefill of the first token, then one decode step per token. */
function stepwise(s: InferenceSession, tokens: Int32Array, b: number, t: number): Float32Array {
  const V = s.cfg.vocabSize, out = new Float32Array(b * t * V), col = new Int32Array(b);
  for (let j = 0; j < t; j++) {
    for (let i = 0; i < b; i++) col[i] = tokens[i * t + j]!;
    const lg = (j === 0 ? s.prefill(col) : s.step(col)).read();
    for (let i = 0; i < b; i++) out.set(lg.subarray(i * V, (i + 1) * V), (i * t + j) * V);
  }
  return out;
}

describe("a PyTorch-written Hugging Face checkpoint (tools/reference/generate_fixture.py; GQA NH=4 NKV=2)", () => {
  for (const [dir, key] of [["gen_tiny_f32", "logits_f32"], ["gen_tiny_bf16", "logits_bf16"]] as const) {
    test(`${dir}: the model's logits on a (2,16) batch match PyTorch's (< 1e-5 relative)`, () => {
      const { model, dtype } = open(dir);
      expect(dtype).toBe(dir.endsWith("f32") ? "float32" : "bfloat16");
      const want = st.get(key)!.toFloat32();
      expect(relErr(fullForward(model, batch, B, T), want)).toBeLessThan(1e-5);
      // The test can fail: the other checkpoint's logits differ by far more than the tolerance.
      const other = st.get(key === "logits_f32" ? "logits_bf16" : "logits_f32")!.toFloat32();
      expect(relErr(fullForward(model, batch, B, T), other)).toBeGreaterThan(1e-3);
    }, 120_000);

    test(`${dir}: KV-cache decode (B=2, one step per position) matches PyTorch at every position`, () => {
      const { model } = open(dir);
      using s = InferenceSession.create(model, { B });
      expect(relErr(stepwise(s, batch, B, T), st.get(key)!.toFloat32())).toBeLessThan(1e-5);
    }, 120_000);
  }

  test("prefill (B=2, batched kernels) returns the last position's logits", () => {
    const { model } = open("gen_tiny_f32");
    using s = InferenceSession.create(model, { B });
    const got = s.prefill(batch).read(), ref = st.get("logits_f32")!.toFloat32(), V = model.cfg.vocabSize;
    const want = new Float32Array(B * V);
    for (let b = 0; b < B; b++) want.set(ref.subarray((b * T + T - 1) * V, (b * T + T) * V), b * V);
    expect(relErr(got, want)).toBeLessThan(1e-5);
    expect(s.pos).toBe(T);
  }, 120_000);

  test("KV-cache decode logits equal full-recompute logits (prefill 5, then 40 steps; B=1 and B=2)", () => {
    const { model } = open("gen_tiny_f32");
    const V = model.cfg.vocabSize, n = 45, P = 5;
    for (const b of [1, 2]) {
      const toks = new Int32Array(b * n);
      for (let i = 0; i < toks.length; i++) toks[i] = (i * 37 + 11 * Math.floor(i / n)) % V;
      const full = fullForward(model, toks, b, n);
      using s = InferenceSession.create(model, { B: b, maxT: 64 });
      const prompt = new Int32Array(b * P);
      for (let i = 0; i < b; i++) prompt.set(toks.subarray(i * n, i * n + P), i * P);
      const got: number[] = [], want: number[] = [];
      const take = (lg: Float32Array, j: number): void => {
        for (let i = 0; i < b; i++) {
          got.push(...lg.subarray(i * V, (i + 1) * V));
          want.push(...full.subarray((i * n + j) * V, (i * n + j + 1) * V));
        }
      };
      take(s.prefill(prompt).read(), P - 1);
      const col = new Int32Array(b);
      for (let j = P; j < n; j++) {
        for (let i = 0; i < b; i++) col[i] = toks[i * n + j]!;
        take(s.step(col).read(), j);
      }
      expect(s.pos).toBe(n);
      expect(relErr(got, want)).toBeLessThan(1e-5);
    }
  }, 120_000);

  test(`greedy generation of 50 tokens with the KV cache equals PyTorch's continuation (min margin ${expected.min_margin.toFixed(3)})`, () => {
    const { model, tokenizer } = open("gen_tiny_f32");
    using s = InferenceSession.create(model);
    const streamed: number[] = [];
    let text = "";
    const r = generate(s, expected.prompt, { maxNewTokens: 50, tokenizer, onToken: (id, piece) => (id >= 0 && streamed.push(id), (text += piece)) });
    expect(r.ids).toEqual(expected.greedy);
    expect(streamed).toEqual(expected.greedy);
    expect(r.stop).toBe("length");
    // The text is what the tokenizer's streaming decoder produced, piece by piece. (Its handling of
    // invalid UTF-8 byte runs differs from decode()'s, which replaces every byte of such a run.)
    expect(r.text).toBe(text);
    expect(r.text.length).toBeGreaterThan(50);
    expect(s.pos).toBe(expected.prompt.length + 49); // the 50th token is sampled, never fed back
  }, 120_000);

  test("append() continues a cached prompt token by token; reset() starts over", () => {
    const { model } = open("gen_tiny_f32");
    using a = InferenceSession.create(model), b = InferenceSession.create(model);
    const p = expected.prompt;
    const whole = a.prefill(p).read();
    b.prefill(p.slice(0, 4));
    const split = b.append(p.slice(4)).read();
    expect(relErr(split, whole)).toBeLessThan(1e-5);
    b.reset();
    expect(b.pos).toBe(0);
    expect(relErr(b.append(p).read(), whole)).toBe(0);
  }, 120_000);
});

test("the compiled decode plan (every step after the first) is bit-identical to the checked path", () => {
  const { model } = open("gen_tiny_f32");
  for (const b of [1, 2]) {
    const n = 12, toks = Int32Array.from({ length: n * b }, (_, i) => (i * 53 + 7) % 512);
    const col = (j: number): Int32Array => Int32Array.from({ length: b }, (_, i) => toks[i * n + j]!);
    using checked = InferenceSession.create(model, { B: b, compiled: false }), planned = InferenceSession.create(model, { B: b });
    expect(planned.prefill(col(0)).read()).toEqual(checked.prefill(col(0)).read());
    for (let j = 1; j < n; j++) expect([j, planned.step(col(j)).read()]).toEqual([j, checked.step(col(j)).read()]);
  }
}, 120_000);

describe("misuse", () => {
  test("bad ids, long prompts, a full cache, wrong step width and use after free are Errors", () => {
    const { model } = open("gen_tiny_f32");
    const s = InferenceSession.create(model, { maxT: 8 });
    expect(() => s.prefill([1, 512])).toThrow(/token id 512 at index 1 is outside the vocabulary \[0, 512\)/);
    expect(() => s.prefill([1, -1])).toThrow(/token id -1/);
    expect(() => s.prefill([])).toThrow(/expected B\*T token ids/);
    expect(() => s.prefill(new Array(9).fill(3))).toThrow(/9 tokens per sequence exceed the cache length maxT=8/);
    s.prefill(new Array(8).fill(3));
    expect(() => s.step([3])).toThrow(/the cache is full \(8 tokens\)/);
    s.prefill([1]);
    expect(() => s.step([3, 4])).toThrow(/expected 1 token ids/);
    expect(() => generate(s, new Array(9).fill(3))).toThrow(/prompt has 9 tokens but the context holds 8/);
    expect(() => InferenceSession.create(model, { maxT: 129 })).toThrow(/maxT must be an integer in \[1, 128\]/);
    expect(() => InferenceSession.create(model, { B: 0 })).toThrow(/B must be a positive integer/);
    s.free();
    expect(() => s.step([3])).toThrow(/this session was freed/);
    s.free(); // idempotent
  }, 120_000);

  test("a session whose model was freed throws instead of reading freed weights", () => {
    const { model } = loadModel(join(FIX, "gen_tiny_f32"));
    const s = InferenceSession.create(model);
    s.prefill([1, 2]);
    s.step([3]); // compiles the raw-pointer plan
    model.free();
    expect(() => s.step([4])).toThrow(/the model was freed/);
    expect(() => s.prefill([1, 2])).toThrow(/freed/);
    s.free();
  }, 120_000);

  test("generation stops at EOS (not included) and when the context fills", () => {
    const { model } = open("gen_tiny_f32");
    using s = InferenceSession.create(model, { maxT: 20 });
    // The greedy continuation's 3rd token, declared a stop id, ends generation after 2 tokens.
    const r = generate(s, expected.prompt, { maxNewTokens: 50, stopIds: [expected.greedy[2]!] });
    expect([r.ids, r.stop]).toEqual([expected.greedy.slice(0, 2), "eos"]);
    const c = generate(s, expected.prompt, { maxNewTokens: 50 });
    expect([c.ids.length, c.stop]).toEqual([11, "context"]); // 10 prompt tokens + 10 fed back + 1 last sample
    expect(c.ids).toEqual(expected.greedy.slice(0, 11));
  }, 120_000);
});
