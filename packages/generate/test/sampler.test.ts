import { describe, expect, test } from "bun:test";
import { Sampler, argmax } from "../src/index.ts";

// Hand-made logits: softmax(log p) = p, so the probabilities are exact and readable.
const probs = [0.05, 0.4, 0.1, 0.3, 0.15]; // sorted: 1 (.4), 3 (.3), 4 (.15), 2 (.1), 0 (.05)
const logits = Float32Array.from(probs, Math.log);
const ids = (s: Sampler, l: ArrayLike<number> = logits): number[] => s.candidates(l).map((c) => c.id);
const ps = (s: Sampler, l: ArrayLike<number> = logits): number[] => s.candidates(l).map((c) => c.p);

describe("Sampler filters (Hugging Face semantics)", () => {
  test("greedy: temperature 0 or top-k 1 takes the first largest logit, with no RNG", () => {
    expect(new Sampler().sample(logits)).toBe(1);
    expect(new Sampler({ temperature: 0.7, topK: 1 }).sample(logits)).toBe(1);
    expect(argmax([0, 3, 3, 1])).toBe(1); // ties: the first index
  });

  test("temperature 1 keeps every token at softmax probabilities, most likely first", () => {
    const s = new Sampler({ temperature: 1 });
    expect(ids(s)).toEqual([1, 3, 4, 2, 0]);
    ps(s).forEach((p, i) => expect(p).toBeCloseTo([0.4, 0.3, 0.15, 0.1, 0.05][i]!, 6));
  });

  test("temperature sharpens (< 1) and flattens (> 1): p ∝ p0^(1/T)", () => {
    for (const T of [0.5, 2]) {
      const w = probs.map((p) => p ** (1 / T)), z = w.reduce((a, b) => a + b, 0);
      const c = new Sampler({ temperature: T }).candidates(logits);
      for (const { id, p } of c) expect(p).toBeCloseTo(w[id]! / z, 6);
    }
  });

  test("top-k keeps the k largest and renormalises; ties with the k-th are kept", () => {
    const s = new Sampler({ temperature: 1, topK: 2 });
    expect(ids(s)).toEqual([1, 3]);
    ps(s).forEach((p, i) => expect(p).toBeCloseTo([0.4 / 0.7, 0.3 / 0.7][i]!, 6));
    const tied = Float32Array.from([1, 3, 2, 2, 0]);
    expect(ids(new Sampler({ temperature: 1, topK: 2 }), tied)).toEqual([1, 2, 3]);
    expect(ids(new Sampler({ temperature: 1, topK: 10 }))).toHaveLength(5); // k >= V: off
  });

  test("top-p keeps the smallest most-likely prefix holding at least p of the mass", () => {
    expect(ids(new Sampler({ temperature: 1, topP: 0.69 }))).toEqual([1, 3]); // .4 + .3 = .7 reaches p
    expect(ids(new Sampler({ temperature: 1, topP: 0.71 }))).toEqual([1, 3, 4]);
    expect(ids(new Sampler({ temperature: 1, topP: 0.39 }))).toEqual([1]);
    expect(ids(new Sampler({ temperature: 1, topP: 0.41 }))).toEqual([1, 3]);
    expect(ids(new Sampler({ temperature: 1, topP: 0.01 }))).toEqual([1]); // never empty
    expect(ids(new Sampler({ temperature: 1, topP: 0.9 }))).toEqual([1, 3, 4, 2]);
    const p = ps(new Sampler({ temperature: 1, topP: 0.71 }));
    p.forEach((x, i) => expect(x).toBeCloseTo([0.4 / 0.85, 0.3 / 0.85, 0.15 / 0.85][i]!, 6));
  });

  test("top-k applies before top-p (p measured on the top-k renormalised mass)", () => {
    // after top-k 3: .4/.85 = .471, .3/.85 = .353, .15/.85 = .176
    expect(ids(new Sampler({ temperature: 1, topK: 3, topP: 0.8 }))).toEqual([1, 3]); // .824 >= .8
    expect(ids(new Sampler({ temperature: 1, topP: 0.8 }))).toEqual([1, 3, 4]); // without top-k .7 < .8
    expect(ids(new Sampler({ temperature: 1, topK: 3, topP: 0.45 }))).toEqual([1]); // .471 >= .45
    expect(ids(new Sampler({ temperature: 1, topP: 0.45 }))).toEqual([1, 3]);
  });

  test("the top-p shortcut (skip tokens under (1-p)/(V-1) of the mass) changes nothing on a large vocabulary", () => {
    const V = 4000, l = new Float32Array(V);
    for (let i = 0; i < V; i++) l[i] = Math.sin(i * 12.9898) * 6;
    const s = new Sampler({ temperature: 0.9, topP: 0.95 });
    // brute force: full sort of all V probabilities
    const z = Array.from(l, (x) => x / 0.9), m = Math.max(...z), e = z.map((x) => Math.exp(x - m)), sum = e.reduce((a, b) => a + b, 0);
    const order = e.map((x, i) => ({ i, p: x / sum })).sort((a, b) => b.p - a.p || a.i - b.i);
    const kept: number[] = [];
    let mass = 0;
    for (const o of order) {
      if (mass >= 0.95) break;
      kept.push(o.i);
      mass += o.p;
    }
    expect(ids(s, l)).toEqual(kept);
  });

  test("draws follow the probabilities (20000 draws within 1.5%)", () => {
    const s = new Sampler({ temperature: 1, seed: 42 }), counts = new Array(5).fill(0);
    for (let i = 0; i < 20000; i++) counts[s.sample(logits)]++;
    counts.forEach((c, i) => expect(Math.abs(c / 20000 - probs[i]!)).toBeLessThan(0.015));
  });

  test("a seed gives one sequence; another seed another", () => {
    const run = (seed: number): number[] => {
      const s = new Sampler({ temperature: 1.3, topK: 4, topP: 0.95, seed });
      return Array.from({ length: 64 }, () => s.sample(logits));
    };
    expect(run(7)).toEqual(run(7));
    expect(run(7)).not.toEqual(run(8));
  });

  test("bad options are RangeErrors that name the option", () => {
    expect(() => new Sampler({ temperature: -1 })).toThrow(/temperature must be a finite number >= 0/);
    expect(() => new Sampler({ topK: 1.5 })).toThrow(/topK must be an integer >= 0/);
    expect(() => new Sampler({ topP: 0 })).toThrow(/topP must be in \(0, 1\]/);
    expect(() => new Sampler({ topP: 1.2 })).toThrow(/topP must be in \(0, 1\]/);
    expect(() => new Sampler({ seed: 0.5 })).toThrow(/seed must be an integer/);
    expect(() => new Sampler({ temperature: 1 }).sample([NaN, NaN])).toThrow(/logits are not finite/);
  });
});
