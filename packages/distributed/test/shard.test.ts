/** The ZeRO-1 shard plan, run clipping and buckets: pure functions, no MPI. */
import { describe, expect, test } from "bun:test";
import { Arena, openBackend } from "@tinyllama/kernels";
import { bucketRanges, DistributedError, shardOf, shardPlan, shardRuns, sliceFlat } from "@tinyllama/distributed";

describe("shardPlan", () => {
  const cases: [number, number][] = [
    [0, 1], [0, 4], [1, 2], [15, 2], [16, 2], [17, 2], [10_007, 2], [10_007, 3], [1_100_048_384, 16], [1_100_048_384, 64], [100, 64],
  ];
  for (const [numel, W] of cases)
    test(`numel ${numel} over ${W} ranks: contiguous, covering, 64-byte aligned, balanced`, () => {
      const p = shardPlan(numel, W);
      expect(p.shards.length).toBe(W);
      let next = 0;
      for (const s of p.shards) {
        expect(s.start).toBe(next); // contiguous, in rank order
        expect(s.end - s.start).toBe(s.count);
        expect((s.start * 4) % 64).toBe(s.start === numel ? (numel * 4) % 64 : 0); // aligned start (or the end of the buffer)
        next = s.end;
      }
      expect(next).toBe(numel);
      expect([...p.counts]).toEqual(p.shards.map((s) => s.count));
      const full = p.shards.filter((s) => s.end < numel || numel % 16 === 0).map((s) => s.count);
      if (full.length > 0) expect(Math.max(...full) - Math.min(...full)).toBeLessThanOrEqual(16); // one 64-byte block at most
      expect(p.uniform).toBe(p.counts.every((c) => c === p.counts[0]));
    });

  test("TinyLlama's 1.1B parameters over 16 ranks: 68.75M floats each, uniform", () => {
    const p = shardPlan(1_100_048_384, 16);
    expect(p.uniform).toBe(true);
    expect(p.counts[0]).toBe(68_753_024);
  });

  test("shardOf is the plan's entry; bad arguments are errors", () => {
    expect(shardOf(1000, 3, 1)).toEqual(shardPlan(1000, 3).shards[1]!);
    expect(() => shardOf(1000, 3, 3)).toThrow(/rank 3 is outside \[0, 3\)/);
    expect(() => shardPlan(-1, 2)).toThrow(DistributedError);
    expect(() => shardPlan(10, 0)).toThrow(/worldSize must be an integer >= 1/);
    expect(() => shardPlan(10, 2, 3)).toThrow(/multiple of elemBytes/);
  });
});

describe("shardRuns", () => {
  const runs = [
    { start: 0, end: 100, decay: true },
    { start: 100, end: 132, decay: false },
    { start: 132, end: 400, decay: true },
  ];
  test("clips runs to the shard, with offsets into shard-sized moment buffers", () => {
    const s = { rank: 1, start: 96, end: 208, count: 112 };
    expect(shardRuns(runs, s)).toEqual([
      { start: 96, end: 100, decay: true, localStart: 0, localEnd: 4 },
      { start: 100, end: 132, decay: false, localStart: 4, localEnd: 36 },
      { start: 132, end: 208, decay: true, localStart: 36, localEnd: 112 },
    ]);
  });
  test("the shards' runs partition the runs exactly", () => {
    for (const W of [1, 2, 3, 5, 7]) {
      const covered = new Int32Array(400);
      for (const s of shardPlan(400, W).shards)
        for (const r of shardRuns(runs, s)) {
          expect(r.localEnd - r.localStart).toBe(r.end - r.start);
          for (let i = r.start; i < r.end; i++) covered[i]! += 1;
        }
      expect(covered.every((c) => c === 1)).toBe(true);
    }
  });
  test("an empty shard gets no runs", () => {
    expect(shardRuns(runs, { rank: 0, start: 400, end: 400, count: 0 })).toEqual([]);
  });
});

describe("bucketRanges", () => {
  test("covers [0, n) in chunks of whole 64-byte blocks", () => {
    expect(bucketRanges(10, 1 << 20)).toEqual([{ start: 0, end: 10 }]);
    expect(bucketRanges(40, 64)).toEqual([{ start: 0, end: 16 }, { start: 16, end: 32 }, { start: 32, end: 40 }]);
    expect(bucketRanges(40, 100)).toEqual(bucketRanges(40, 64)); // rounded down to a block
    expect(bucketRanges(0, 64)).toEqual([]);
    expect(bucketRanges(130, 64, 1)).toEqual([{ start: 0, end: 64 }, { start: 64, end: 128 }, { start: 128, end: 130 }]);
    const b = bucketRanges(1_100_048_384, 16 << 20);
    expect(b.length).toBe(Math.ceil(1_100_048_384 / (4 << 20)));
  });
});

test("sliceFlat views a range of an arena's flat tensor (in-place reduce-scatter target)", () => {
  const be = openBackend({ device: "cpu", threads: 1 });
  const a = new Arena(be, [{ name: "w", shape: [5, 7] }, { name: "b", shape: [3] }]);
  a.flat().write(Float32Array.from({ length: a.flat().numel }, (_, i) => i));
  const s = sliceFlat(a.flat(), 16, 48);
  expect(s.byteOffset).toBe(64);
  expect([...(s.read() as Float32Array)].slice(0, 3)).toEqual([16, 17, 18]);
  expect(() => sliceFlat(a.get("w"), 0, 1)).toThrow(/expected a flat 1-D tensor/);
  a.free();
});
