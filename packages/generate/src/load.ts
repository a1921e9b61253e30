/** Opening a model for inference: a Hugging Face directory, or a training run directory holding one in hf/. */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { loadHfCheckpoint } from "@tinyllama/checkpoint";
import { getBackend, type Backend } from "@tinyllama/kernels";
import { Model } from "@tinyllama/model";
import { Tokenizer } from "@tinyllama/tokenizer";

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

export interface LoadedModel {
  dir: string;
  model: Model;
  tokenizer: Tokenizer | null;
  /** The checkpoint's storage dtype. */
  dtype: string;
}

/**
 * Loads weights into an inference Model (no gradients; its own activation arena is for one token,
 * sessions bring their own). Weights are converted to f32 tensor by tensor.
 */
export function loadModel(path: string, backend: Backend = getBackend()): LoadedModel {
  const dir = resolveModelDir(path);
  const ck = loadHfCheckpoint(dir);
  const model = Model.create(ck.config, { backend, B: 1, T: 1, training: false, init: false });
  try {
    for (const { name, tensor } of model.parameters) {
      tensor.write(ck.tensors.get(name)!);
      ck.tensors.delete(name); // drop converted copies early: a 1.1B checkpoint is 4.4 GB in f32
    }
    const tokenizer = loadTokenizer(dir);
    if (tokenizer && tokenizer.vocabSize !== ck.config.vocabSize)
      throw new Error(`${dir}: the tokenizer has ${tokenizer.vocabSize} tokens but config.json says vocab_size ${ck.config.vocabSize}`);
    return { dir, model, tokenizer, dtype: ck.dtype };
  } catch (e) {
    model.free();
    throw e;
  }
}
