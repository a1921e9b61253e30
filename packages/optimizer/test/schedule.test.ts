import { describe, expect, test } from "bun:test";
import { constantSchedule, cosineSchedule } from "@tinyllama/optimizer";

describe("cosineSchedule (litgpt/TinyLlama get_lr)", () => {
  // TinyLlama 1.1B: 4e-4 peak, 2000 warmup, cosine to 4e-5.
  const total = 1_430_512;
  const lr = cosineSchedule({ lr: 4e-4, minLr: 4e-5, warmup: 2000, total });
  test("linear warmup from 0", () => {
    expect(lr(0)).toBe(0);
    expect(lr(1)).toBeCloseTo(2e-7, 18);
    expect(lr(1000)).toBeCloseTo(2e-4, 18);
    expect(lr(1999)).toBeCloseTo(4e-4 * 1999 / 2000, 18);
  });
  test("peak at warmup, midpoint, minimum at total, constant after", () => {
    expect(lr(2000)).toBe(4e-4);
    expect(lr(2000 + (total - 2000) / 2)).toBeCloseTo((4e-4 + 4e-5) / 2, 15);
    expect(lr(total)).toBeCloseTo(4e-5, 18);
    expect(lr(total + 1)).toBe(4e-5);
    expect(lr(10 * total)).toBe(4e-5);
  });
  test("a quarter of the way: minLr + (lr-minLr) (1 + cos(pi/4)) / 2", () => {
    expect(lr(2000 + (total - 2000) / 4)).toBeCloseTo(4e-5 + 3.6e-4 * (1 + Math.SQRT1_2) / 2, 15);
  });
  test("monotone decay after warmup", () => {
    let prev = Infinity;
    for (let s = 2000; s <= total; s += 9999) {
      expect(lr(s)).toBeLessThanOrEqual(prev);
      prev = lr(s);
    }
  });
  test("no warmup and no decay span", () => {
    expect(cosineSchedule({ lr: 1, minLr: 0.1, warmup: 0, total: 10 })(0)).toBe(1);
    expect(cosineSchedule({ lr: 1, minLr: 0.1, warmup: 5, total: 5 })(5)).toBe(0.1);
  });
  test("bad options and steps are errors", () => {
    expect(() => cosineSchedule({ lr: 1, minLr: 0, warmup: 10, total: 5 })).toThrow(/'total' \(5\) must be >= 'warmup' \(10\)/);
    expect(() => cosineSchedule({ lr: NaN, minLr: 0, warmup: 0, total: 5 })).toThrow(/'lr'/);
    expect(() => cosineSchedule({ lr: 1, minLr: 0, warmup: 1.5, total: 5 })).toThrow(/'warmup' must be a finite integer/);
    expect(() => lr(-1)).toThrow(/step must be a finite number >= 0/);
  });
});

test("constantSchedule", () => {
  expect(constantSchedule(3e-4)(0)).toBe(3e-4);
  expect(constantSchedule(3e-4)(1e9)).toBe(3e-4);
  expect(() => constantSchedule(-1)).toThrow(/lr must be/);
});
