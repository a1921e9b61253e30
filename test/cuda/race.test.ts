/**
 * The emulator's schedules (TL_EMU_SCHEDULE, kernels/cuda/emu/README.md) expose missing barriers:
 * each kernel of the fixture test/cuda/race.cu, without its barrier, is right under the default
 * (forward) order and wrong under the orders that should expose it; with the barrier it is right
 * under every order. Also checks the orders themselves and that the environment variable is honoured.
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
  race_two_sums: { args: [FFIType.ptr, FFIType.ptr, FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  race_order: { args: [FFIType.ptr, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
} as const;
type Fixture = ReturnType<typeof dlopen<typeof FNS>>["symbols"];

let lib = "";
let fx: Fixture;
const orders: EmuSchedule[] = ["forward", "reverse", "shuffle:1", "shuffle:7", "ahead:1", "ahead:7"];
const input = (n: number) => Float32Array.from({ length: n }, (_, i) => i + 1);
type Run = (sync: 0 | 1) => { got: Float32Array; want: Float32Array };

/** Each racy computation (its result under the current schedule, and the right one) and the orders
 * under which it is still right without its barrier (forward always: that is the bug being hidden). */
const cases: Record<string, { hiddenBy: EmuSchedule[]; run: Run }> = {
  "shared memory across threads (__syncthreads)": { hiddenBy: ["forward"], run: (sync) => {
    const B = 3, T = 128, inp = input(B * T), out = new Float32Array(B * T).fill(NaN);
    expect(fx.race_neighbour(out, inp, B, T, sync)).toBe(0);
    return { got: out, want: inp.map((_, j) => (j % T > 0 ? inp[j - 1]! : 0)) };
  } },
  "shared memory across lanes of a warp (__syncwarp)": { hiddenBy: ["forward"], run: (sync) => {
    const B = 2, T = 64, inp = input(B * T), out = new Float32Array(B * T).fill(NaN);
    expect(fx.race_lane(out, inp, B, T, sync)).toBe(0);
    return { got: out, want: inp.map((_, j) => (j % 32 > 0 ? inp[j - 1]! : 0)) };
  } },
  "a tiled loop's trailing __syncthreads (write-after-read)": { hiddenBy: ["forward"], run: (sync) => {
    const tiles = 4, T = 96, inp = input(tiles * T), out = new Float32Array(T).fill(NaN);
    expect(fx.race_tiles(out, inp, tiles, T, sync)).toBe(0);
    const want = new Float32Array(T);
    for (let t = 0; t < tiles; t++) for (let i = 0; i + 1 < T; i++) want[i] += inp[t * T + i + 1]!;
    return { got: out, want };
  } },
  "global memory across blocks of one launch (needs a second launch)": { hiddenBy: ["forward"], run: (sync) => {
    const B = 40, inp = input(B), x = new Float32Array(B).fill(NaN), y = new Float32Array(B).fill(NaN);
    expect(fx.race_chain(x, y, inp, B, sync)).toBe(0);
    return { got: y, want: inp.map((_, b) => (b > 0 ? inp[b - 1]! : 0)) };
  } },
  // warps pass 20 warp barriers between the read and the overwrite: only "ahead" lets one run that far ahead
  "two block sums sharing their slots, warp barriers in between (write-after-read)": { hiddenBy: ["forward", "reverse", "shuffle:1", "shuffle:7"], run: (sync) => {
    const B = 3, T = 256, inp = Float32Array.from({ length: B * T }, (_, i) => (i % 7) - 3), out = new Float32Array(2 * B).fill(NaN);
    expect(fx.race_two_sums(out, inp, B, T, sync)).toBe(0);
    const want = new Float32Array(2 * B);
    for (let j = 0; j < B * T; j++) (want[2 * Math.floor(j / T)] += inp[j]!), (want[2 * Math.floor(j / T) + 1] += inp[j]! ** 2);
    return { got: out, want };
  } },
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

  for (const [what, { hiddenBy, run }] of Object.entries(cases)) {
    test(`${what}: with the barrier, right under every order`, () => {
      for (const o of orders) {
        const r = under(o, () => run(1));
        expect({ o, got: Array.from(r.got) }).toEqual({ o, got: Array.from(r.want) });
      }
    });
    test(`${what}: without it, right under ${hiddenBy.join(", ")} (hidden) but wrong under ${orders.filter((o) => !hiddenBy.includes(o)).join(", ")}`, () => {
      for (const o of orders) {
        const r = under(o, () => run(0));
        expect({ o, right: Array.from(r.got).every((v, j) => v === r.want[j]) }).toEqual({ o, right: hiddenBy.includes(o) });
      }
    });
  }

  test("the orders: forward and reverse threads and blocks, shuffle a fresh permutation per round, ahead one warp at a time; seeded", () => {
    const B = 5, T = 64, R = 3; // R stretches per thread: to the __syncwarp, to the __syncthreads, to the end
    const record = (o: EmuSchedule) =>
      under(o, () => {
        const ord = new Int32Array(B * R * T).fill(-1);
        expect(fx.race_order(ord, B, T)).toBe(0);
        return ord;
      });
    const at = (ord: Int32Array, b: number, r: number) => Array.from(ord.subarray((b * R + r) * T, (b * R + r + 1) * T));
    const iota = (n: number) => Array.from({ length: n }, (_, i) => i);
    const sorted = (a: number[]) => [...a].sort((x, y) => x - y);
    const fwd = record("forward"), rev = record("reverse");
    for (let b = 0; b < B; b++)
      for (let r = 0; r < R; r++) {
        expect(at(fwd, b, r)).toEqual(iota(T).map((i) => (b * R + r) * T + i));
        expect(at(rev, b, r)).toEqual(iota(T).map((i) => ((B - 1 - b) * R + r) * T + (T - 1 - i)));
      }
    for (const kind of ["shuffle", "ahead"] as const) {
      const s1 = record(`${kind}:1`);
      expect(Array.from(record(`${kind}:1`))).toEqual(Array.from(s1)); // deterministic for a seed
      expect(Array.from(record(`${kind}:2`))).not.toEqual(Array.from(s1));
      expect(sorted(Array.from(s1))).toEqual(iota(B * R * T)); // every thread once per stretch
      // a block runs whole, in an order that is neither grid order nor its reverse
      const starts = iota(B).map((b) => Math.min(...at(s1, b, 0)));
      expect(starts.every((v) => v % (R * T) === 0)).toBe(true);
      const blockOrder = starts.map((v) => v / (R * T));
      expect(blockOrder).not.toEqual(iota(B));
      expect(blockOrder).not.toEqual(iota(B).reverse());
      for (let b = 0; b < B; b++) {
        const base = starts[b]!;
        const rel = (r: number) => at(s1, b, r).map((v) => v - base);
        // the last stretch starts after the __syncthreads: after every thread's first two
        expect(Math.min(...rel(2))).toBe(2 * T);
        if (kind === "shuffle") {
          // rounds: all first stretches, then all second ones, each in its own random order
          expect(sorted(rel(0))).toEqual(iota(T));
          expect(rel(0)).not.toEqual(iota(T));
          expect(rel(1).map((v) => v - T)).not.toEqual(rel(0));
        } else {
          // ahead: a warp runs both of its stretches (through its __syncwarp) before the next warp starts
          for (let w = 0; w < T / 32; w++) {
            const mine = [...rel(0).slice(32 * w, 32 * w + 32), ...rel(1).slice(32 * w, 32 * w + 32)];
            expect(Math.max(...mine) - Math.min(...mine)).toBe(63);
            expect(Math.min(...rel(1).slice(32 * w, 32 * w + 32))).toBe(Math.min(...mine) + 32);
          }
          expect(rel(0).slice(0, 32)).not.toEqual(iota(32)); // lanes shuffled
        }
      }
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
    expect(child("ahead")).toMatchObject({ rc: 0, right: false });
    const bad = child("shufle");
    expect(bad.rc).not.toBe(0);
    expect(bad.stderr).toContain("TL_EMU_SCHEDULE=shufle");
    expect(() => setEmuSchedule(lib, "sideways" as EmuSchedule)).toThrow(/bad schedule/);
    expect(() => setEmuSchedule(lib, "shuffle:x" as EmuSchedule)).toThrow(/bad schedule/);
  });
});
