import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DataLoader, WindowLoader, Xoshiro128, splitWindows, writeShard, type LoaderOptions } from "@tinyllama/data";

const dir = mkdtempSync(join(tmpdir(), "tl-loader-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// A stream whose token at position i is i (mod 60000): every window must then count up by one,
// which checks contiguity across shard boundaries.
const N = 10_000;
const stream = Int32Array.from({ length: N }, (_, i) => i % 60000);
const shardDir = join(dir, "shards");
mkdirSync(shardDir);
const cuts = [0, 1234, 1235, 5000, N]; // includes a 1-token shard
for (let s = 0; s + 1 < cuts.length; s++)
  writeShard(join(shardDir, `train_${String(s).padStart(3, "0")}.bin`), stream.subarray(cuts[s]!, cuts[s + 1]!), { vocabSize: 60000 });
writeShard(join(shardDir, "val_000.bin"), stream.subarray(0, 500), { vocabSize: 60000 });

function windowStarts(w: Int32Array, B: number, T: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < B; b++) {
    const row = w.subarray(b * (T + 1), (b + 1) * (T + 1));
    for (let t = 1; t <= T; t++) expect(row[t]).toBe(row[t - 1]! + 1);
    out.push(row[0]!);
  }
  return out;
}

const take = (l: { next(): Int32Array }, k: number) => Array.from({ length: k }, () => Array.from(l.next()));

describe("DataLoader", () => {
  test("random windows are contiguous stream slices, seeded, spread over the corpus", () => {
    const a = new DataLoader({ path: shardDir, B: 8, T: 64, seed: 1 });
    expect(a.corpus.files.length).toBe(4);
    expect(a.totalTokens).toBe(N);
    const starts: number[] = [];
    for (let i = 0; i < 50; i++) starts.push(...windowStarts(a.next(), 8, 64));
    expect(Math.min(...starts)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...starts)).toBeLessThanOrEqual(N - 65);
    expect(Math.max(...starts)).toBeGreaterThan(N * 0.9); // uniform over the whole stream
    expect(Math.min(...starts)).toBeLessThan(N * 0.1);
    expect(take(new DataLoader({ path: shardDir, B: 8, T: 64, seed: 1 }), 3)).toEqual(take(new DataLoader({ path: shardDir, B: 8, T: 64, seed: 1 }), 3));
    expect(take(new DataLoader({ path: shardDir, B: 8, T: 64, seed: 2 }), 1)).not.toEqual(take(new DataLoader({ path: shardDir, B: 8, T: 64, seed: 1 }), 1));
  });

  test("sequential windows start at 0, T, 2T, ... and wrap to the first token", () => {
    const T = 1000, B = 3;
    const l = new DataLoader({ path: shardDir, B, T, mode: "sequential" });
    expect(windowStarts(l.next(), B, T)).toEqual([0, 1000, 2000]);
    expect(windowStarts(l.next(), B, T)).toEqual([3000, 4000, 5000]);
    expect(windowStarts(l.next(), B, T)).toEqual([6000, 7000, 8000]);
    expect(l.epoch).toBe(0);
    // 9000 + 1001 > 10000: that window starts again from token 0
    expect(windowStarts(l.next(), B, T)).toEqual([0, 1000, 2000]);
    expect(l.epoch).toBe(1);
  });

  test("inputs and targets are the window shifted by one", () => {
    const w = Int32Array.from([1, 2, 3, 4, 10, 11, 12, 13]);
    const { inputs, targets } = splitWindows(w, 2, 3);
    expect(Array.from(inputs)).toEqual([1, 2, 3, 10, 11, 12]);
    expect(Array.from(targets)).toEqual([2, 3, 4, 11, 12, 13]);
    expect(() => splitWindows(w, 2, 4)).toThrow(/expected B\*\(T\+1\) = 10/);
  });

  test("next(out) fills a caller buffer of B*(T+1) ids", () => {
    const l = new DataLoader({ path: shardDir, B: 2, T: 4 });
    const out = new Int32Array(10);
    expect(l.next(out)).toBe(out);
    expect(() => l.next(new Int32Array(9))).toThrow(/B\*\(T\+1\) = 10 elements, got 9/);
  });

  test("ranks read disjoint contiguous slices", () => {
    const W = 3;
    const seen: number[][] = [];
    for (let rank = 0; rank < W; rank++) {
      for (const mode of ["random", "sequential"] as const) {
        const l = new DataLoader({ path: shardDir, B: 4, T: 32, mode, rank, worldSize: W, seed: 9 });
        const lo = Math.floor((rank * N) / W), hi = Math.floor(((rank + 1) * N) / W);
        expect([l.sliceStart, l.tokens]).toEqual([lo, hi - lo]);
        for (let i = 0; i < 40; i++)
          for (const s of windowStarts(l.next(), 4, 32)) {
            expect(s).toBeGreaterThanOrEqual(lo);
            expect(s + 33).toBeLessThanOrEqual(hi);
          }
      }
      seen.push(take(new DataLoader({ path: shardDir, B: 4, T: 32, rank, worldSize: W, seed: 9 }), 1)[0]!);
    }
    expect(seen[0]).not.toEqual(seen[1]);
  });

  for (const mode of ["random", "sequential"] as const)
    test(`resume is bit-identical (${mode}): k batches, save, m more == restore, m`, () => {
      const opts: LoaderOptions & { path: string } = { path: shardDir, B: 5, T: 700, mode, seed: 42, rank: 1, worldSize: 2 };
      const a = new DataLoader(opts);
      take(a, 7);
      const saved = JSON.parse(JSON.stringify(a.state()));
      const more = take(a, 6);
      const b = new DataLoader(opts);
      b.loadState(saved);
      expect(b.batches).toBe(7);
      expect(take(b, 6)).toEqual(more);
      expect(b.state()).toEqual(a.state());
    });

  test("loadState refuses a state from another corpus, mode or rank", () => {
    const a = new DataLoader({ path: shardDir, B: 2, T: 8 });
    const s = a.state();
    expect(() => new DataLoader({ path: shardDir, B: 2, T: 8, mode: "sequential" }).loadState(s)).toThrow(/saved with mode random, this loader has sequential/);
    expect(() => new DataLoader({ path: shardDir, split: "val", B: 2, T: 8 }).loadState(s)).toThrow(/corpus slice of \(tokens\) 10000, this loader has 500/);
    expect(() => new DataLoader({ path: shardDir, B: 2, T: 8, rank: 1, worldSize: 2 }).loadState(s)).toThrow(/saved with rank 0/);
    expect(() => a.loadState({ ...s, rng: [0, 0, 0, 0] })).toThrow(/all-zero state/);
    expect(() => a.loadState({ ...s, position: -1 })).toThrow(/position -1/);
  });

  test("split selects val shards; a file path reads that file", () => {
    expect(new DataLoader({ path: shardDir, split: "val", B: 1, T: 8 }).totalTokens).toBe(500);
    expect(new DataLoader({ path: join(shardDir, "train_003.bin"), B: 1, T: 8 }).totalTokens).toBe(N - 5000);
  });

  test("raw uint16 files in nanoGPT's layout (train.bin / val.bin) are detected by the missing magic", () => {
    const nano = join(dir, "nano");
    mkdirSync(nano);
    writeFileSync(join(nano, "train.bin"), new Uint8Array(Uint16Array.from({ length: 300 }, (_, i) => i).buffer));
    writeFileSync(join(nano, "val.bin"), new Uint8Array(Uint16Array.from({ length: 50 }, (_, i) => i).buffer));
    const l = new DataLoader({ path: nano, B: 2, T: 16, mode: "sequential" });
    expect(l.corpus.files[0]!.format).toBe("raw-uint16");
    expect(windowStarts(l.next(), 2, 16)).toEqual([0, 16]);
    expect(new DataLoader({ path: nano, split: "val", B: 1, T: 16 }).totalTokens).toBe(50);
  });

  test("clear errors: missing path, empty corpus, too short, bad B/T/rank", () => {
    expect(() => new DataLoader({ path: join(dir, "missing"), B: 1, T: 8 })).toThrow(/'.*missing' does not exist/);
    const empty = join(dir, "empty");
    mkdirSync(empty);
    expect(() => new DataLoader({ path: empty, B: 1, T: 8 })).toThrow(/no 'train_NNN.bin' shards or 'train.bin'/);
    writeShard(join(empty, "train_000.bin"), [], { vocabSize: 10 });
    expect(() => new DataLoader({ path: empty, B: 1, T: 8 })).toThrow(/holds no tokens/);
    expect(() => new DataLoader({ path: join(shardDir, "val_000.bin"), B: 1, T: 500 })).toThrow(/holds 500 tokens, fewer than one window of T\+1 = 501/);
    expect(() => new DataLoader({ path: join(shardDir, "val_000.bin"), B: 1, T: 200, rank: 2, worldSize: 3 })).toThrow(/rank 2's slice .* holds 167 tokens/);
    for (const bad of [{ B: 0 }, { T: -1 }, { B: 1.5 }, { T: NaN }])
      expect(() => new DataLoader({ path: shardDir, B: 1, T: 8, ...bad })).toThrow(/'(B|T)' must be an integer >= 1/);
    expect(() => new DataLoader({ path: shardDir, B: 1, T: 8, rank: 2, worldSize: 2 })).toThrow(/rank 2 is outside \[0, worldSize = 2\)/);
    expect(() => new DataLoader({ path: shardDir, B: 1, T: 8, mode: "shuffle" as "random" })).toThrow(/mode must be/);
  });

  test("WindowLoader works on in-memory arrays (runtime-neutral core)", () => {
    const l = new WindowLoader([new Uint16Array([0, 1, 2]), new Uint32Array([3, 4]), new Int32Array([5, 6, 7])], { B: 2, T: 3, mode: "sequential" });
    expect(Array.from(l.next())).toEqual([0, 1, 2, 3, 3, 4, 5, 6]);
  });
});

describe("Xoshiro128", () => {
  test("matches the reference C implementation (state 1,2,3,4)", () => {
    const r = new Xoshiro128([1, 2, 3, 4]);
    expect(Array.from({ length: 6 }, () => r.next())).toEqual([11520, 0, 5927040, 70819200, 2031721883, 1637235492]);
    for (let i = 0; i < 1000; i++) r.next();
    expect(r.next()).toBe(1590764842);
  });
  test("below(n) is in range and roughly uniform, also past 2^32", () => {
    const r = Xoshiro128.seeded(3);
    const counts = new Array(10).fill(0);
    for (let i = 0; i < 20000; i++) counts[r.below(10)]++;
    for (const c of counts) expect(Math.abs(c - 2000)).toBeLessThan(200);
    const big = 3 * 2 ** 40 + 7;
    let maxSeen = 0;
    for (let i = 0; i < 1000; i++) {
      const x = r.below(big);
      expect(x).toBeLessThan(big);
      maxSeen = Math.max(maxSeen, x);
    }
    expect(maxSeen).toBeGreaterThan(2 ** 32);
  });
});
