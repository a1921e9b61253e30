/**
 * bun run train [flags] — train a TinyLlama. With no flags it runs the main job: a small TinyLlama
 * on the bundled Brown corpus, tokenised with the Llama 2 tokenizer, in a few minutes on a laptop CPU.
 */
import { parseArgs } from "node:util";
import { existsSync, readFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { ConfigError, defaultTrainConfig, getPreset, isPresetName, presetNames, loadModelConfig, parseTrainConfig, type ModelConfig, type TrainConfig } from "@tinyllama/config";
import { describePlan, materializeBrown, profileTraining, sampleContinuations, train, trainBackend } from "@tinyllama/trainer";
import { Tokenizer } from "@tinyllama/tokenizer";
import type { Model } from "@tinyllama/model";
import { corpusFiles, findInputs, prepare, progressBar } from "@tinyllama/data";
import { createCommunicator, placeRank } from "@tinyllama/distributed";
import { CheckpointError, loadHfCheckpoint, saveHfCheckpoint, type HfCheckpoint } from "@tinyllama/checkpoint";
import { createHash } from "node:crypto";
import { mkdirSync, renameSync, statSync, writeFileSync } from "node:fs";
import { createTokenizer } from "./prepare.ts";

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
  --precision auto|fp32|bf16
                         bf16: mixed precision (bf16 matmuls with fp32 accumulation, fp32 master
                         weights, gradients and AdamW state; checkpoints hold the fp32 masters).
                         auto (default): bf16 on CUDA, fp32 on the CPU
  --zero                 ZeRO-1 under mpirun: each rank keeps the AdamW state of its shard only
                         (data-parallel: mpirun -np N bun run train ...; ranks split the data)
  --dry-run              print parameter count, memory plan and FLOPs, allocate nothing
  --profile              time every kernel over a few steps and print where the time goes; writes nothing
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
      resume: { type: "boolean" }, zero: { type: "boolean" }, profile: { type: "boolean" }, device: { type: "string" }, precision: { type: "string" }, threads: { type: "string" }, "dry-run": { type: "boolean" }, help: { type: "boolean", short: "h" },
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
const MAIN_JOB = { config: "tinyllama-15m", seq: 256, batch: 8, gradAccum: 1, steps: 400, lr: 2e-3, minLr: 2e-4, warmup: 20, evalEvery: 50, evalBatches: 8, saveEvery: 200 };
const mainJob = args.config === undefined && args.data === undefined && args.init === undefined;

let model: ModelConfig;
let presetName: string;
let tc: TrainConfig;
let initCkpt: HfCheckpoint | undefined;
try {
  if (args.init !== undefined) {
    if (!existsSync(resolve(args.init))) fail(`--init: '${args.init}' does not exist (expected a Hugging Face checkpoint directory)`);
    initCkpt = loadHfCheckpoint(resolve(args.init));
  }
  const cfgArg = args.config ?? (initCkpt ? undefined : MAIN_JOB.config);
  if (cfgArg === undefined) {
    model = initCkpt!.config;
    presetName = basename(resolve(args.init!));
  } else {
    presetName = isPresetName(cfgArg) ? cfgArg : cfgArg.replace(/.*\//, "").replace(/\.json$/, "");
    if (!isPresetName(cfgArg) && !existsSync(resolve(cfgArg)))
      fail(`--config '${cfgArg}' is neither a preset (${presetNames().join(", ")}) nor an existing config file`);
    model = isPresetName(cfgArg) ? getPreset(cfgArg) : loadModelConfig(JSON.parse(readFileSync(resolve(cfgArg), "utf8")));
    if (initCkpt && JSON.stringify(initCkpt.config) !== JSON.stringify(model))
      fail(`--init ${args.init}: its config.json describes a different model than --config ${cfgArg}; leave out --config to use the checkpoint's`);
  }
  const base = mainJob ? { seq: MAIN_JOB.seq, batch: MAIN_JOB.batch, gradAccum: MAIN_JOB.gradAccum, steps: MAIN_JOB.steps, lr: MAIN_JOB.lr, minLr: MAIN_JOB.minLr, warmup: MAIN_JOB.warmup, evalEvery: MAIN_JOB.evalEvery, evalBatches: MAIN_JOB.evalBatches, saveEvery: MAIN_JOB.saveEvery } : {};
  const overrides = Object.fromEntries(
    Object.entries({
      steps: num("steps", args.steps), batch: num("batch", args.batch), seq: num("seq", args.seq), gradAccum: num("grad-accum", args["grad-accum"]),
      lr: num("lr", args.lr), minLr: num("min-lr", args["min-lr"]), warmup: num("warmup", args.warmup), weightDecay: num("weight-decay", args["weight-decay"]),
      gradClip: num("grad-clip", args["grad-clip"]), schedule: args.schedule, sample: args.sample, seed: num("seed", args.seed),
      evalEvery: num("eval-every", args["eval-every"]), evalBatches: num("eval-batches", args["eval-batches"]), saveEvery: num("save-every", args["save-every"]),
      keepLast: num("keep-last", args["keep-last"]), device: args.device, precision: args.precision,
    }).filter(([, v]) => v !== undefined),
  );
  const steps = (overrides.steps as number | undefined) ?? (base as { steps?: number }).steps;
  const merged = { ...defaultTrainConfig(model, steps !== undefined ? { steps } : {}), ...base, ...overrides };
  // A run shortened with --steps keeps its warmup inside the run unless --warmup says otherwise.
  if (overrides.warmup === undefined) merged.warmup = Math.min(merged.warmup, merged.steps);
  tc = parseTrainConfig(merged, model);
} catch (e) {
  if (e instanceof ConfigError || e instanceof SyntaxError || e instanceof CheckpointError) fail((e as Error).message);
  throw e;
}

if (args["dry-run"]) {
  console.log(describePlan(model, tc, presetName));
  process.exit(0);
}

const ROOT = resolve(import.meta.dir, "..");

/**
 * --data as the trainer needs it: a shard directory or a token file as is; .txt/.jsonl files and
 * directories tokenised once into a cache keyed by their paths, sizes, mtimes and the tokenizer.
 */
async function resolveData(spec: string | undefined, tokenizerSpec: string): Promise<string> {
  const paths = spec === undefined ? [materializeBrown(join(ROOT, ".cache", "corpus", "brown"))] : spec.split(",").map((p) => resolve(p));
  for (const p of paths) if (!existsSync(p)) fail(`--data: '${p}' does not exist`);
  if (paths.length === 1) {
    const p = paths[0]!;
    if (!statSync(p).isDirectory() && p.endsWith(".bin")) return p;
    if (statSync(p).isDirectory()) {
      try {
        if (corpusFiles(p, "train").length > 0) return p;
      } catch {
        // not a shard directory: treat it as text below
      }
    }
  }
  const inputs = findInputs(paths);
  if (inputs.length === 0) fail(`--data: no shards, .bin, .txt or .jsonl files in ${paths.join(", ")}`);
  const h = createHash("sha256").update(tokenizerSpec);
  for (const f of inputs) {
    const st = statSync(f.path);
    h.update(`${f.path}\0${st.size}\0${st.mtimeMs}\0`);
  }
  const cache = join(ROOT, ".cache", "data", h.digest("hex").slice(0, 16));
  if (existsSync(join(cache, "meta.json"))) return cache;
  process.stderr.write(`train: tokenising ${inputs.length} file(s) with ${tokenizerSpec} into ${cache}\n`);
  const tmp = `${cache}.tmp-${process.pid}`;
  await prepare({ inputs: paths, out: tmp, tokenizer: await createTokenizer({ spec: tokenizerSpec }), valFraction: 0.02, overwrite: true, onProgress: progressBar() });
  renameSync(tmp, cache);
  return cache;
}

const threadsArg = num("threads", args.threads);
if (threadsArg !== undefined && (!Number.isInteger(threadsArg) || threadsArg < 1)) fail(`--threads expects a positive integer, got '${args.threads}'`);
const comm = createCommunicator();
const root = comm.rank === 0;
// Under mpirun every rank gets its share of this machine's cores (see @tinyllama/distributed placement.ts);
// before any kernel runs, so OpenMP's threads start with the right affinity and count.
const placement = comm.worldSize > 1 ? placeRank(threadsArg) : { threads: threadsArg, reason: "" };
if (root && placement.reason !== "" && !process.env.TINYLLAMA_QUIET) process.stderr.write(`train: ${comm.worldSize} ranks, ${placement.reason}\n`);
try {
  // rank 0 tokenises text into the cache; the others wait and then find it there
  const data = root ? await resolveData(args.data, "llama2") : "";
  if (comm.worldSize > 1) comm.barrier();
  const dataPath = root ? data : await resolveData(args.data, "llama2");
  if (args.profile) {
    if (root) console.log(profileTraining({ model, train: tc, data: dataPath, backend: trainBackend(tc, placement.threads) }));
    comm.close();
    process.exit(0);
  }
  const out = resolve(args.out ?? join("runs", presetName));
  const tokenizer = await Tokenizer.llama2();
  const onFinish = async (trained: Model) => {
    // The run directory ends with a Hugging Face export of the final model, tokenizer included.
    const hf = join(out, "hf");
    mkdirSync(hf, { recursive: true });
    writeFileSync(join(hf, "tokenizer.json"), JSON.stringify(tokenizer.toJSON()));
    writeFileSync(join(hf, "tokenizer_config.json"), JSON.stringify(tokenizer.toConfigJSON(), null, 2));
    saveHfCheckpoint(hf, {
      config: model,
      tensors: new Map(trained.parameters.map((p) => [p.name, p.tensor.read()])),
      dtype: "float32",
    });
    process.stderr.write(`train: Hugging Face export in ${hf}\n`);
    if (model.vocabSize !== tokenizer.vocabSize) return; // samples need the Llama 2 vocabulary
    const prompts = ["The jury said", "She looked at him and", "In the morning"];
    const encoded = prompts.map((p) => tokenizer.encode(p, { bos: false, eos: false }));
    const outs = sampleContinuations(trained, encoded, { maxNewTokens: 32, temperature: 0.8, topK: 40, seed: tc.seed });
    console.log("\nsamples (temperature 0.8, top-k 40):");
    // decode prompt and continuation together so the word boundary between them survives
    encoded.forEach((ids, i) => console.log(`  ${tokenizer.decode([...ids, ...outs[i]!]).replace(/\n/g, " / ")}`));
  };
  const result = await train({ model, modelName: presetName, train: tc, data: dataPath, out, backend: trainBackend(tc, placement.threads), resume: !!args.resume, init: initCkpt?.tensors, onFinish, comm, zero: !!args.zero });
  comm.close();
  if (result.stoppedOnNaN) process.exit(3);
  if (result.interrupted) process.exit(130);
} catch (e) {
  process.stderr.write(`train${comm.worldSize > 1 ? ` (rank ${comm.rank})` : ""}: ${(e as Error).message}\n`);
  process.exit(1);
}
