import { expect, test } from "bun:test";
import { defaultTrainConfig, getPreset } from "@tinyllama/config";
import { checkResumable } from "../src/loop.ts";

const cfg = getPreset("micro");
const tc = defaultTrainConfig(cfg, { batch: 4, seq: 32, steps: 100, seed: 7, gradAccum: 1 });
const saved = { ...tc, worldSize: 1 };
const none = () => {};

test("resume refuses a changed --seq/--sample/--seed, naming the flag and both values", () => {
  expect(() => checkResumable(saved, { ...saved, seq: 64 }, "runs/x/checkpoints/step-50", none)).toThrow(/--seq was 32 in the saved run and is 64 now/);
  expect(() => checkResumable(saved, { ...saved, seed: 1 }, "d", none)).toThrow(/--seed was 7/);
  expect(() => checkResumable(saved, { ...saved, sample: saved.sample === "random" ? "sequential" : "random" }, "d", none)).toThrow(/--sample/);
});

test("resume refuses another step size, and a re-split of the step on the same ranks", () => {
  expect(() => checkResumable(saved, { ...saved, batch: 8 }, "d", none)).toThrow(/a step was 4 sequences .* would be 8/);
  expect(() => checkResumable(saved, { ...saved, batch: 2, gradAccum: 2 }, "d", none)).toThrow(/--batch\/--grad-accum were 4\/1 and are 2\/2/);
  expect(() => checkResumable({ ...saved, worldSize: 2 }, { ...saved, worldSize: 1 }, "d", none)).toThrow(/8 sequences/);
});

test("resume allows the same step on another number of ranks, a longer run or another lr, and logs the changes", () => {
  checkResumable({ ...saved, batch: 2, worldSize: 2 }, { ...saved, batch: 4, worldSize: 1 }, "d", none);
  const logs: string[] = [];
  checkResumable(saved, { ...saved, steps: 200, lr: saved.lr / 2 }, "d", (m) => logs.push(m));
  expect(logs.join("\n")).toMatch(/steps 100 -> 200/);
  expect(logs.join("\n")).toMatch(/lr /);
  const quiet: string[] = [];
  checkResumable(saved, { ...saved }, "d", (m) => quiet.push(m));
  expect(quiet).toEqual([]);
});
