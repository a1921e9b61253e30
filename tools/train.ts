/**
 * bun run train [flags] — train a TinyLlama. With no flags it runs the main job: a small TinyLlama
 * on the bundled Brown corpus, tokenised with the Llama 2 tokenizer, in a few minutes on a laptop CPU.
 */
import { parseArgs } from "node:util";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ConfigError, defaultTrainConfig, getPreset, isPresetName, presetNames, loadModelConfig, parseTrainConfig, type ModelConfig, type TrainConfig } from "@tinyllama/config";
import { describePlan } from "@tinyllama/trainer";

const HELP = `usage: bun run train [flags]

  --config PRESET|FILE   model preset (${presetNames().join(", ")}) or a config.json
  --data PATH            prepared shard dir, .txt/.jsonl files or dirs, or a raw uint16 .bin (default: the Brown corpus)
  --out DIR              run directory (default: runs/<preset>)
  --init HF_DIR          start from a Hugging Face checkpoint directory
  --steps N  --batch B  --seq T  --grad-accum N
  --lr X  --min-lr X  --warmup N  --weight-decay X  --grad-clip X  --schedule cosine|constant
  --sample random|sequential  --seed N  --eval-every N  --eval-batches N  --save-every N  --keep-last N
  --resume               continue from the newest valid checkpoint in --out
  --device auto|cpu|cuda  --threads N
  --dry-run              print parameter count, memory plan and FLOPs, allocate nothing
`;

function fail(msg: string): never {
  process.stderr.write(`train: ${msg}\n`);
  process.exit(2);
}

let args;
try {
  args = parseArgs({
    args: process.argv.slice(2),
    strict: true,
    allowPositionals: false,
    options: {
      config: { type: "string" }, data: { type: "string" }, out: { type: "string" }, init: { type: "string" },
      steps: { type: "string" }, batch: { type: "string" }, seq: { type: "string" }, "grad-accum": { type: "string" },
      lr: { type: "string" }, "min-lr": { type: "string" }, warmup: { type: "string" }, "weight-decay": { type: "string" },
      "grad-clip": { type: "string" }, schedule: { type: "string" }, sample: { type: "string" }, seed: { type: "string" },
      "eval-every": { type: "string" }, "eval-batches": { type: "string" }, "save-every": { type: "string" }, "keep-last": { type: "string" },
      resume: { type: "boolean" }, device: { type: "string" }, threads: { type: "string" }, "dry-run": { type: "boolean" }, help: { type: "boolean", short: "h" },
    },
  }).values;
} catch (e) {
  fail(`${(e as Error).message}\n${HELP}`);
}
if (args.help) {
  process.stdout.write(HELP);
  process.exit(0);
}

function num(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) fail(`--${flag} expects a number, got '${v}'`);
  return n;
}

/** The main job: the 15M-style preset on the Brown corpus, sized to finish in minutes on 2 cores. */
const MAIN_JOB = { config: "tinyllama-15m", seq: 256, batch: 8, gradAccum: 1, steps: 300, lr: 2e-3, minLr: 2e-4, warmup: 20, evalEvery: 50, evalBatches: 8, saveEvery: 100 };
const mainJob = args.config === undefined && args.data === undefined && args.init === undefined;

let model: ModelConfig;
let presetName: string;
let tc: TrainConfig;
try {
  const cfgArg = args.config ?? MAIN_JOB.config;
  presetName = isPresetName(cfgArg) ? cfgArg : cfgArg.replace(/.*\//, "").replace(/\.json$/, "");
  if (!isPresetName(cfgArg) && !existsSync(resolve(cfgArg)))
    fail(`--config '${cfgArg}' is neither a preset (${presetNames().join(", ")}) nor an existing config file`);
  model = isPresetName(cfgArg) ? getPreset(cfgArg) : loadModelConfig(JSON.parse(readFileSync(resolve(cfgArg), "utf8")));
  const base = mainJob ? { seq: MAIN_JOB.seq, batch: MAIN_JOB.batch, gradAccum: MAIN_JOB.gradAccum, steps: MAIN_JOB.steps, lr: MAIN_JOB.lr, minLr: MAIN_JOB.minLr, warmup: MAIN_JOB.warmup, evalEvery: MAIN_JOB.evalEvery, evalBatches: MAIN_JOB.evalBatches, saveEvery: MAIN_JOB.saveEvery } : {};
  const overrides = Object.fromEntries(
    Object.entries({
      steps: num("steps", args.steps), batch: num("batch", args.batch), seq: num("seq", args.seq), gradAccum: num("grad-accum", args["grad-accum"]),
      lr: num("lr", args.lr), minLr: num("min-lr", args["min-lr"]), warmup: num("warmup", args.warmup), weightDecay: num("weight-decay", args["weight-decay"]),
      gradClip: num("grad-clip", args["grad-clip"]), schedule: args.schedule, sample: args.sample, seed: num("seed", args.seed),
      evalEvery: num("eval-every", args["eval-every"]), evalBatches: num("eval-batches", args["eval-batches"]), saveEvery: num("save-every", args["save-every"]),
      keepLast: num("keep-last", args["keep-last"]), device: args.device,
    }).filter(([, v]) => v !== undefined),
  );
  const merged = { ...defaultTrainConfig(model, { ...base, ...(overrides.steps !== undefined ? { steps: overrides.steps as number } : {}) }), ...base, ...overrides };
  if (overrides.steps !== undefined && overrides.warmup === undefined) merged.warmup = Math.min(merged.warmup, merged.steps);
  tc = parseTrainConfig(merged, model);
} catch (e) {
  if (e instanceof ConfigError || e instanceof SyntaxError) fail((e as Error).message);
  throw e;
}

if (args["dry-run"]) {
  console.log(describePlan(model, tc, presetName));
  process.exit(0);
}

console.error("train: the trainer is being integrated; run with --dry-run for the plan");
process.exit(1);
