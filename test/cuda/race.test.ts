/**
 * The emulator's schedules (TL_EMU_SCHEDULE, kernels/cuda/emu/README.md) expose missing barriers:
 * each kernel of the fixture test/cuda/race.cu, without its barrier, is right under the default
 * (forward) order and wrong under reverse and shuffle; with the barrier it is right under every
 * order. Also checks the orders themselves and that the environment variable is honoured.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { dlopen, FFIType } from "bun:ffi";
import { join } from "node:path";
import { buildEmulatedFixture, setEmuSchedule, type EmuSchedule } from "./emu.ts";

const hasCxx = !!(process.env.CXX ?? Bun.which("g++"));
if (!hasCxx) console.log("skipped: emulator schedule tests (no g++)");

const FNS = {
  race_neighbour: { args: [FFIType.ptr, FFIType.ptr, FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  race_lane: { args: [FFIType.ptr, FFIType.ptr, FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  race_tiles: { args: [FFIType.ptr, FFIType.ptr, FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  race_chain: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  race_order: { args: [FFIType.ptr, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
} as const;
type Fixture = ReturnType<typeof dlopen<typeof FNS>>["symbols"];

let lib = "";
let fx: Fixture;
const orders: EmuSchedule[] = ["forward", "reverse", "shuffle:1", "shuffle:7"];
const perturbed: EmuSchedule[] = ["reverse", "shuffle:1", "shuffle:7"];
const input = (n: number) => Float32Array.from({ length: n }, (_, i) => i + 1);

/** Each racy computation: its result under the current schedule, and the right one. */
const cases: Record<string, (sync: 0 | 1) => { got: Float32Array; want: Float32Array }> = {
  "shared memory across threads (__syncthreads)": (sync) => {
    const B = 3, T = 128, inp = input(B * T), out = new Float32Array(B * T).fill(NaN);
    expect(fx.race_neighbour(out, inp, B, T, sync)).toBe(0);
    return { got: out, want: inp.map((_, j) => (j % T > 0 ? inp[j - 1]! : 0)) };
  },
  "shared memory across lanes of a warp (__syncwarp)": (sync) => {
    const B = 2, T = 64, inp = input(B * T), out = new Float32Array(B * T).fill(NaN);
    expect(fx.race_lane(out, inp, B, T, sync)).toBe(0);
    return { got: out, want: inp.map((_, j) => (j % 32 > 0 ? inp[j - 1]! : 0)) };
  },
  "a tiled loop's trailing __syncthreads (write-after-read)": (sync) => {
    const tiles = 4, T = 96, inp = input(tiles * T), out = new Float32Array(T).fill(NaN);
    expect(fx.race_tiles(out, inp, tiles, T, sync)).toBe(0);
    const want = new Float32Array(T);
    for (let t = 0; t < tiles; t++) for (let i = 0; i + 1 < T; i++) want[i] += inp[t * T + i + 1]!;
    return { got: out, want };
  },
  "global memory across blocks of one launch (needs a second launch)": (sync) => {
    const B = 40, inp = input(B), x = new Float32Array(B).fill(NaN), y = new Float32Array(B).fill(NaN);
    expect(fx.race_chain(x, y, inp, B, sync)).toBe(0);
    return { got: y, want: inp.map((_, b) => (b > 0 ? inp[b - 1]! : 0)) };
  },
};

describe.skipIf(!hasCxx)("emulator schedules expose missing barriers (test/cuda/race.cu)", () => {
  beforeAll(() => {
    lib = buildEmulatedFixture(join(import.meta.dir, "race.cu"));
    fx = dlopen(lib, FNS).symbols;
  }, 300_000);
  const under = <T>(order: EmuSchedule, fn: () => T): T => {
    setEmuSchedule(lib, order);
    try {
      return fn();
    } finally {
      setEmuSchedule(lib, "forward");
    }
  };

  for (const [what, run] of Object.entries(cases)) {
    test(`${what}: with the barrier, right under every order`, () => {
      for (const o of orders) {
        const r = under(o, () => run(1));
        expect({ o, got: Array.from(r.got) }).toEqual({ o, got: Array.from(r.want) });
      }
    });
    test(`${what}: without it, right under forward (hidden) but wrong under reverse and shuffle`, () => {
      const fwd = under("forward", () => run(0));
      expect(Array.from(fwd.got)).toEqual(Array.from(fwd.want));
      for (const o of perturbed) {
        const r = under(o, () => run(0));
        expect({ o, same: Array.from(r.got).every((v, j) => v === r.want[j]) }).toEqual({ o, same: false });
      }
    });
  }

  test("the orders: forward and reverse threads and blocks, shuffle a fresh permutation per round, seeded", () => {
    const B = 5, T = 64;
    const record = (o: EmuSchedule) =>
      under(o, () => {
        const ord = new Int32Array(B * 2 * T).fill(-1);
        expect(fx.race_order(ord, B, T)).toBe(0);
        return ord;
      });
    const round = (ord: Int32Array, b: number, r: 0 | 1) => Array.from(ord.subarray((b * 2 + r) * T, (b * 2 + r + 1) * T));
    const iota = Array.from({ length: T }, (_, i) => i);
    const fwd = record("forward"), rev = record("reverse");
    for (let b = 0; b < B; b++)
      for (const r of [0, 1] as const) {
        expect(round(fwd, b, r)).toEqual(iota.map((i) => b * 2 * T + r * T + i));
        expect(round(rev, b, r)).toEqual(iota.map((i) => (B - 1 - b) * 2 * T + r * T + (T - 1 - i)));
      }
    const s1 = record("shuffle:1"), s1again = record("shuffle:1"), s2 = record("shuffle:2");
    expect(Array.from(s1again)).toEqual(Array.from(s1)); // deterministic for a seed
    expect(Array.from(s2)).not.toEqual(Array.from(s1));
    expect(Array.from(s1).sort((a, b) => a - b)).toEqual(Array.from({ length: B * 2 * T }, (_, i) => i)); // every thread once per round
    // a block runs whole, in some order that is neither grid order nor its reverse
    const blockStarts = Array.from({ length: B }, (_, b) => Math.min(...round(s1, b, 0)));
    expect(blockStarts.every((v) => v % (2 * T) === 0)).toBe(true);
    const blockOrder = blockStarts.map((v) => v / (2 * T));
    expect(blockOrder).not.toEqual(iota.slice(0, B));
    expect(blockOrder).not.toEqual(iota.slice(0, B).reverse());
    // rounds: each a permutation of the block's threads, the second one different from the first
    const rel = (b: number, r: 0 | 1) => round(s1, b, r).map((v) => v - Math.min(...round(s1, b, r)));
    for (let b = 0; b < B; b++) {
      expect([...rel(b, 0)].sort((x, y) => x - y)).toEqual(iota);
      expect(rel(b, 1)).not.toEqual(rel(b, 0));
      expect(rel(b, 0)).not.toEqual(iota);
    }
  });

  test("TL_EMU_SCHEDULE is read at the first launch; a malformed one fails launches instead of testing forward", () => {
    const child = (schedule: string) => {
      const code = `
        import { dlopen, FFIType } from "bun:ffi";
        const { symbols } = dlopen(process.env.RACE_LIB, { race_neighbour: { args: ["ptr", "ptr", "i32", "i32", "i32"], returns: "i32" } });
        const inp = Float32Array.from({ length: 64 }, (_, i) => i + 1), out = new Float32Array(64).fill(NaN);
        const rc = symbols.race_neighbour(out, inp, 1, 64, 0);
        console.log(JSON.stringify({ rc, right: out.every((v, i) => v === (i > 0 ? inp[i - 1] : 0)) }));`;
      const p = Bun.spawnSync([process.execPath, "-e", code], { env: { ...process.env, RACE_LIB: lib, TL_EMU_SCHEDULE: schedule }, stdout: "pipe", stderr: "pipe" });
      return { ...(JSON.parse(p.stdout.toString().trim()) as { rc: number; right: boolean }), stderr: p.stderr.toString() };
    };
    expect(child("forward")).toMatchObject({ rc: 0, right: true });
    expect(child("")).toMatchObject({ rc: 0, right: true });
    expect(child("reverse")).toMatchObject({ rc: 0, right: false });
    expect(child("shuffle:3")).toMatchObject({ rc: 0, right: false });
    const bad = child("shufle");
    expect(bad.rc).not.toBe(0);
    expect(bad.stderr).toContain("TL_EMU_SCHEDULE=shufle");
    expect(() => setEmuSchedule(lib, "sideways" as EmuSchedule)).toThrow(/bad schedule/);
    expect(() => setEmuSchedule(lib, "shuffle:x" as EmuSchedule)).toThrow(/bad schedule/);
  });
});
