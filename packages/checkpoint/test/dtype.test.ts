import { describe, expect, test } from "bun:test";
import { mulberry32 } from "@tinyllama/testing";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, f32ToF16Portable } from "../src/index.ts";

describe("16-bit float conversions", () => {
  const all = new Uint16Array(65536).map((_, i) => i);

  test("every bf16 and f16 bit pattern survives 16 -> f32 -> 16 (NaN payloads included)", () => {
    expect(Array.from(f32ToBf16(bf16ToF32(all)))).toEqual(Array.from(all));
    expect(Array.from(f32ToF16(f16ToF32(all)))).toEqual(Array.from(all));
    expect(Array.from(f32ToF16Portable(f16ToF32(all)))).toEqual(Array.from(all));
  });

  // Independent reference: the engine's IEEE Float16Array (round to nearest even), not our bit tricks.
  test("portable f32 -> f16 agrees with the engine's Float16Array on 2^20 random bit patterns and all f16 neighbours; f32ToF16 with it everywhere", () => {
    const rng = mulberry32(99);
    const bits = new Uint32Array(1 << 20);
    for (let i = 0; i < bits.length; i++) bits[i] = Math.floor(rng() * 2 ** 32);
    // Midpoints and neighbours of every f16 value: the ties and off-by-one-ulp cases.
    const edges = new Float32Array(65536 * 3);
    const wide = f16ToF32(all);
    for (let h = 0; h < 65535; h++) {
      const a = wide[h]!, b = wide[h + 1]!;
      edges[3 * h] = (a + b) / 2;
      edges[3 * h + 1] = Math.fround((a + b) / 2 + Math.abs(a) * 2 ** -20);
      edges[3 * h + 2] = Math.fround((a + b) / 2 - Math.abs(a) * 2 ** -20);
    }
    for (const src of [new Float32Array(bits.buffer), edges]) {
      const ours = f32ToF16Portable(src);
      expect(f32ToF16(src)).toEqual(ours); // the fast path, NaN payloads included
      const engine = new Uint16Array(new Float16Array(src).buffer);
      let mismatches = 0;
      for (let i = 0; i < src.length; i++) {
        if (Number.isNaN(src[i])) continue; // NaN payload handling is implementation-defined in the engine
        if (ours[i] !== engine[i]) mismatches++;
      }
      expect(mismatches).toBe(0);
    }
  });

  test("f32 -> bf16 rounds to nearest even", () => {
    const src = new Float32Array(new Uint32Array([0x3f808000, 0x3f818000, 0x3f808001, 0x3f817fff, 0x7f7fffff, 0x80000001, 0x7fc00000, 0xffff0000]).buffer);
    // tie down to even, tie up to even, above tie, below tie, overflow to inf, tiny negative to -0, NaNs
    expect(Array.from(f32ToBf16(src)).map((x) => x.toString(16))).toEqual(["3f80", "3f82", "3f81", "3f81", "7f80", "8000", "7fc0", "ffff"]);
  });
});
