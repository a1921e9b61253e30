/** Opening a model for inference: a Hugging Face directory, or a training run directory holding one in hf/. */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { openHfCheckpoint } from "@tinyllama/checkpoint";
import { getBackend, type Backend } from "@tinyllama/kernels";
import { Model } from "@tinyllama/model";
import { Tokenizer } from "@tinyllama/tokenizer";
import { InferenceWeights, resolveWeightDtype, type DecoderWeights, type WeightDtype } from "./weights.ts";

/** The Hugging Face directory for `path`: path itself, or path/hf for a training run directory. */
export function resolveModelDir(path: string): string {
  if (!existsSync(path)) throw new Error(`model directory '${path}' does not exist`);
  if (!statSync(path).isDirectory()) throw new Error(`'${path}' is not a directory (pass a Hugging Face model directory or a training run directory)`);
  // A training run directory: its final model is exported to RUN_DIR/hf (run.json marks the run).
  const hf = join(path, "hf");
  if (existsSync(join(hf, "config.json"))) return hf;
  if (existsSync(join(path, "run.json")))
    throw new Error(`'${path}' is a training run without a final export yet (no hf/config.json): let the run finish, or export a checkpoint`);
  if (existsSync(join(path, "config.json"))) return path;
  throw new Error(`'${path}' has no config.json, nor hf/config.json (a training run exports its final model to RUN_DIR/hf)`);
}

/** The directory's tokenizer (tokenizer.json or tokenizer.model), or null when it has none. */
export function loadTokenizer(dir: string): Tokenizer | null {
  if (!existsSync(join(dir, "tokenizer.json")) && !existsSync(join(dir, "tokenizer.model"))) return null;
  return Tokenizer.fromFile(dir);
}

export interface LoadedModel<W extends DecoderWeights = Model> {
  dir: string;
  /** The weights a session runs on: a Model (f32) or InferenceWeights (bf16 Linear layers). */
  model: W;
  tokenizer: Tokenizer | null;
  /** The checkpoint's storage dtype. */
  dtype: string;
  /** How the Linear weights are stored in memory now. */
  weights: WeightDtype;
}

export interface LoadOptions {
  /** Default: the process-wide backend (getBackend()). */
  backend?: Backend;
  /**
   * Storage of the Linear weights (default "f32"): "f32" gives a Model (exact; what training and the
   * PyTorch parity tests use), "bf16" gives InferenceWeights at half the memory (decode ~1.5-2x
   * faster on AVX-512 CPUs; logits within bf16 rounding of the weights), "auto" picks bf16 on an
   * AVX-512 CPU build and f32 elsewhere.
   */
  weights?: WeightDtype | "auto";
}

/**
 * Loads weights for inference (no gradients; a Model's own activation arena is for one token,
 * sessions bring their own). Tensors are converted one at a time from the memory-mapped file: with
 * bf16 storage a BF16 checkpoint's Linear weights are uploaded as raw bits (no f32 round trip).
 */
export function loadModel(path: string, backend?: Backend): LoadedModel<Model>;
export function loadModel(path: string, opts: LoadOptions & { weights?: "f32" }): LoadedModel<Model>;
export function loadModel(path: string, opts: LoadOptions): LoadedModel<DecoderWeights>;
export function loadModel(path: string, opts: Backend | LoadOptions = {}): LoadedModel<DecoderWeights> {
  const o: LoadOptions = isBackend(opts) ? { backend: opts } : opts;
  const backend = o.backend ?? getBackend();
  const weights = resolveWeightDtype(o.weights ?? "f32", backend);
  const dir = resolveModelDir(path);
  const ck = openHfCheckpoint(dir);
  const model: DecoderWeights =
    weights === "f32" ? Model.create(ck.config, { backend, B: 1, T: 1, training: false, init: false }) : InferenceWeights.create(ck.config, { backend, linear: weights });
  try {
    for (const [name, t] of ck.tensors) {
      const dst = model.param(name);
      if (dst.dtype === "bf16" && t.dtype === "BF16") (model as InferenceWeights).load(name, t.data as Uint16Array);
      else if (model instanceof InferenceWeights) model.load(name, t.toFloat32());
      else dst.write(t.toFloat32());
      ck.tensors.delete(name); // drop each mapped tensor once loaded
    }
    const tokenizer = loadTokenizer(dir);
    if (tokenizer && tokenizer.vocabSize !== ck.config.vocabSize)
      throw new Error(`${dir}: the tokenizer has ${tokenizer.vocabSize} tokens but config.json says vocab_size ${ck.config.vocabSize}`);
    return { dir, model, tokenizer, dtype: ck.dtype, weights };
  } catch (e) {
    model.free();
    throw e;
  }
}

function isBackend(x: Backend | LoadOptions): x is Backend {
  return typeof (x as Backend).check === "function";
}
