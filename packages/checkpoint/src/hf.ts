// Hugging Face Llama directories: config.json + model.safetensors (or sharded, with model.safetensors.index.json)
// + generation_config.json + tokenizer files, the layout `LlamaForCausalLM.from_pretrained` reads.

import { copyFileSync, existsSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { fromHfConfig, parameterShapes, toHfConfig, type ModelConfig } from "@tinyllama/config";
import { readSafetensors, SafetensorsError, writeAtomic, writeSafetensors, type Dtype, type SafetensorsFile, type SafetensorsTensor } from "./safetensors.ts";

export type HfDtype = "float32" | "bfloat16" | "float16";

const TO_ST: Record<HfDtype, Dtype> = { float32: "F32", bfloat16: "BF16", float16: "F16" };
const FROM_ST: Record<string, HfDtype> = { F32: "float32", BF16: "bfloat16", F16: "float16" };

export interface HfCheckpoint {
  readonly config: ModelConfig;
  /** Every weight as f32, keyed by its Hugging Face name, in parameterShapes order. */
  readonly tensors: Map<string, Float32Array>;
  /** The dtype the weights were stored in. */
  readonly dtype: HfDtype;
}

export class CheckpointError extends Error {
  override name = "CheckpointError";
}

const fmt = (shape: readonly number[]): string => `[${shape.join(", ")}]`;
// Non-persistent buffers that older transformers versions saved; HF ignores them on load, so do we.
const IGNORED = /(^|\.)rotary_emb\.inv_freq$/;

/** Opens a directory's weights: model.safetensors.index.json if present, else model.safetensors. */
export function readHfWeights(dir: string): SafetensorsFile {
  const index = join(dir, "model.safetensors.index.json");
  if (existsSync(index)) return readSafetensors(index);
  const single = join(dir, "model.safetensors");
  if (existsSync(single)) return readSafetensors(single);
  throw new CheckpointError(`${dir}: no model.safetensors or model.safetensors.index.json (PyTorch .bin checkpoints are not supported; re-save with safe_serialization=True)`);
}

/** A validated Hugging Face directory whose weights are still in their stored dtype (memory-mapped, nothing converted). */
export interface HfCheckpointFile {
  readonly config: ModelConfig;
  /** Every weight as stored (F32, BF16 or F16), keyed by its Hugging Face name, in parameterShapes order. */
  readonly tensors: Map<string, SafetensorsTensor>;
  /** The dtype the weights were stored in (the widest, for mixed files). */
  readonly dtype: HfDtype;
}

/**
 * Loads a Hugging Face Llama directory. The tensors must match `parameterShapes(config)` exactly: a wrong shape names
 * the tensor with the expected and found shapes; missing and unexpected tensors are reported together in one error.
 */
export function loadHfCheckpoint(dir: string): HfCheckpoint {
  const { config, tensors, dtype } = openHfCheckpoint(dir);
  return { config, tensors: new Map([...tensors].map(([name, t]) => [name, t.toFloat32()])), dtype };
}

/**
 * Validates a Hugging Face Llama directory like loadHfCheckpoint but converts nothing: each tensor stays in its
 * stored dtype, so a reader can load BF16 weights into bf16 storage without an f32 copy of the whole model.
 */
export function openHfCheckpoint(dir: string): HfCheckpointFile {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new CheckpointError(`${dir}: not a directory`);
  const configPath = join(dir, "config.json");
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(configPath, "utf8"));
  } catch (e) {
    throw new CheckpointError(`${configPath}: cannot read (${e instanceof Error ? e.message : String(e)})`);
  }
  const config = fromHfConfig(json);
  const file = readHfWeights(dir);
  const expected = parameterShapes(config);

  const problems: string[] = [];
  const dtypes = new Set<string>();
  const tensors = new Map<string, SafetensorsTensor>();
  const found = new Set(file.tensors.map((t) => t.name).filter((n) => !IGNORED.test(n)));
  const missing = expected.filter((p) => !found.has(p.name)).map((p) => p.name);
  const known = new Set(expected.map((p) => p.name));
  const extra = [...found].filter((n) => !known.has(n));
  // A tied model saved with its lm_head (some exporters do) is still loadable: the copy is redundant.
  if (config.tieEmbeddings && extra.length === 1 && extra[0] === "lm_head.weight") extra.pop();
  if (missing.length > 0) problems.push(`missing tensors (${missing.length}): ${missing.join(", ")}`);
  if (extra.length > 0) problems.push(`unexpected tensors (${extra.length}): ${extra.join(", ")}`);
  for (const p of expected) {
    const t = file.get(p.name);
    if (!t) continue;
    if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
      problems.push(`${p.name}: expected shape ${fmt(p.shape)} from config.json, found ${fmt(t.shape)}`);
      continue;
    }
    if (!(t.dtype in FROM_ST)) {
      problems.push(`${p.name}: dtype ${t.dtype} is not a float dtype`);
      continue;
    }
    dtypes.add(t.dtype);
    tensors.set(p.name, t);
  }
  if (problems.length > 0) {
    throw new CheckpointError(`${dir}: weights do not match config.json (${describe(config)}):\n  ${problems.join("\n  ")}`);
  }
  // Mixed-dtype checkpoints are unusual but loadable; report the widest so a round trip loses nothing.
  const dtype: HfDtype = dtypes.has("F32") || dtypes.size > 1 ? "float32" : FROM_ST[[...dtypes][0] ?? "F32"]!;
  return { config, tensors, dtype };
}

function describe(c: ModelConfig): string {
  return `V=${c.vocabSize} C=${c.dim} H=${c.hiddenDim} L=${c.nLayers} NH=${c.nHeads} NKV=${c.nKvHeads}${c.tieEmbeddings ? ", tied" : ""}`;
}

export interface SaveHfOptions {
  readonly config: ModelConfig;
  /** Weights keyed by Hugging Face name (see parameterShapes). */
  readonly tensors: ReadonlyMap<string, Float32Array>;
  /** Storage dtype of model.safetensors. Default "float32". */
  readonly dtype?: HfDtype;
  /** Paths of tokenizer files (tokenizer.model, tokenizer.json, tokenizer_config.json, ...) copied into `dir`. */
  readonly tokenizerFiles?: readonly string[];
  /** Extra generation_config.json fields (e.g. max_length). */
  readonly generation?: Record<string, unknown>;
}

/**
 * Writes a Hugging Face Llama directory (the directory must exist). Tensors are validated against
 * parameterShapes(config) first. model.safetensors is laid out as transformers' save_pretrained writes it
 * (tensors sorted by name, metadata {"format": "pt"}), so weights that came from such a file in the same dtype are
 * written back byte for byte.
 */
export function saveHfCheckpoint(dir: string, options: SaveHfOptions): void {
  const { config, tensors } = options;
  const dtype = options.dtype ?? "float32";
  if (!(dtype in TO_ST)) throw new CheckpointError(`saveHfCheckpoint: dtype must be "float32", "bfloat16" or "float16", got ${JSON.stringify(dtype)}`);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new CheckpointError(`${dir}: not a directory (create it first)`);
  const expected = parameterShapes(config);
  const problems: string[] = [];
  const missing = expected.filter((p) => !tensors.has(p.name)).map((p) => p.name);
  const known = new Set(expected.map((p) => p.name));
  const extra = [...tensors.keys()].filter((n) => !known.has(n));
  if (missing.length > 0) problems.push(`missing tensors (${missing.length}): ${missing.join(", ")}`);
  if (extra.length > 0) problems.push(`unexpected tensors (${extra.length}): ${extra.join(", ")}`);
  for (const p of expected) {
    const t = tensors.get(p.name);
    const n = p.shape.reduce((a, b) => a * b, 1);
    if (t && t.length !== n) problems.push(`${p.name}: expected ${n} values for shape ${fmt(p.shape)}, got ${t.length}`);
  }
  if (problems.length > 0) throw new CheckpointError(`saveHfCheckpoint: tensors do not match the config (${describe(config)}):\n  ${problems.join("\n  ")}`);

  // safetensors' writer sorts by (dtype alignment, name); with one dtype that is name order (byte-wise, as in Rust).
  const ordered = [...expected].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  try {
    writeSafetensors(
      join(dir, "model.safetensors"),
      ordered.map((p) => ({ name: p.name, shape: p.shape, dtype: TO_ST[dtype], data: tensors.get(p.name)! })),
      { format: "pt" },
    );
  } catch (e) {
    if (e instanceof SafetensorsError) throw new CheckpointError(e.message);
    throw e;
  }
  writeJson(join(dir, "config.json"), toHfConfig(config, { torchDtype: dtype }));
  writeJson(join(dir, "generation_config.json"), {
    _from_model_config: true,
    bos_token_id: config.bosId,
    eos_token_id: config.eosId,
    ...options.generation,
  });
  for (const f of options.tokenizerFiles ?? []) {
    const dest = join(dir, basename(f));
    if (dest !== f) copyFileSync(f, dest);
  }
}

function writeJson(path: string, value: unknown): void {
  // transformers writes indent 2, sorted keys off, trailing newline.
  writeAtomic(path, [new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`)]);
}
