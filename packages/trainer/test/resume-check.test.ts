import { expect, test } from "bun:test";
import { defaultTrainConfig, getPreset } from "@tinyllama/config";
import { checkResumable } from "../src/loop.ts";

const cfg = getPreset("micro");
const saved = defaultTrainConfig(cfg, { batch: 4, seq: 32, steps: 100, seed: 7 });

test("resume refuses settings that change which tokens each step reads, naming the flag and both values", () => {
  const logs: string[] = [];
  expect(() => checkResumable(saved, { ...saved, seq: 64 }, "runs/x/checkpoints/step-50", (m) => logs.push(m))).toThrow(
    /--seq was 32 in the saved run and is 64 now/,
  );
  expect(() => checkResumable(saved, { ...saved, batch: 8, seed: 1 }, "d", () => {})).toThrow(/--batch was 4 .*; --seed was 7/);
  expect(() => checkResumable(saved, { ...saved, gradAccum: saved.gradAccum + 1 }, "d", () => {})).toThrow(/--grad-accum/);
  expect(() => checkResumable(saved, { ...saved, sample: saved.sample === "random" ? "sequential" : "random" }, "d", () => {})).toThrow(/--sample/);
});

test("resume allows other changes (a longer run, another lr) and logs them", () => {
  const logs: string[] = [];
  checkResumable(saved, { ...saved, steps: 200, lr: saved.lr / 2 }, "d", (m) => logs.push(m));
  expect(logs.join("\n")).toMatch(/steps 100 -> 200/);
  expect(logs.join("\n")).toMatch(/lr /);
  const quiet: string[] = [];
  checkResumable(saved, { ...saved }, "d", (m) => quiet.push(m));
  expect(quiet).toEqual([]);
});
