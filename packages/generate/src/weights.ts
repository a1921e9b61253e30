/**
 * What an InferenceSession reads, and inference-only weights with bf16 Linear layers.
 *
 * Decode at batch 1 streams every Linear weight once per token, so it runs at memory speed: storing
 * those weights as bf16 halves both their memory and the bytes per token. `InferenceWeights` keeps
 * the seven Linear layers of every block and the LM head as bf16 (multiplied by
 * `matmulForwardWbf16`: fp32 activations, exact widening of the weights, fp32 accumulation), and the
 * token embedding and the RMSNorm weights as fp32: the embedding is read one row per token (its size
 * costs memory, not time) and the embedding kernel is fp32; norms are tiny. Nothing else holds an
 * fp32 copy of the Linear weights.
 */
import type { ModelConfig } from "@tinyllama/config";
import { Arena, ShapeError, Tensor, castF32ToBf16, fmtShape, type Backend, type TensorSpec } from "@tinyllama/kernels";
import { parameterSpecs, type Model } from "@tinyllama/model";

/** Storage of the Linear weights: "f32" (exact, the training layout) or "bf16" (half the bytes). */
export type WeightDtype = "f32" | "bf16";

/** The parameters a session reads, by Hugging Face name. Both `Model` and `InferenceWeights` are this. */
export interface DecoderWeights {
  readonly cfg: ModelConfig;
  readonly backend: Backend;
  /** The arena holding every parameter (sessions check that it is still alive on each step). */
  readonly params: Arena;
  /** A parameter by Hugging Face name; Linear weights are f32 or bf16, everything else f32. */
  param(name: string): Tensor;
  free(): void;
}

/** The Linear layers: q/k/v/o and gate/up/down of every block, and the LM head. */
export const isLinearWeight = (name: string): boolean => name.endsWith("_proj.weight") || name === "lm_head.weight";

/** Floats converted per kernel call when loading f32 data into bf16 storage (bounds the staging buffer). */
const STAGE = 1 << 22;

export class InferenceWeights implements DecoderWeights {
  readonly cfg: ModelConfig;
  readonly backend: Backend;
  readonly params: Arena;
  /** Storage of the Linear weights. */
  readonly linear: WeightDtype;
  #freed = false;

  private constructor(cfg: ModelConfig, backend: Backend, linear: WeightDtype) {
    if (linear !== "f32" && linear !== "bf16") throw new ShapeError(`InferenceWeights: weights must be "f32" or "bf16", got ${JSON.stringify(linear)}`);
    this.cfg = cfg;
    this.backend = backend;
    this.linear = linear;
    this.params = new Arena(backend, InferenceWeights.specs(cfg, linear));
  }

  /** The parameter layout (Hugging Face names and order) with the Linear weights in `linear`. */
  static specs(cfg: ModelConfig, linear: WeightDtype): TensorSpec[] {
    return parameterSpecs(cfg).map((s) => (isLinearWeight(s.name) ? { ...s, dtype: linear } : s));
  }

  /** Bytes the weights take (arena, alignment included), without allocating: e.g. 2.33 GB for 1.1B in bf16 (4.40 GB in f32). */
  static bytes(cfg: ModelConfig, linear: WeightDtype): number {
    return Arena.plan(InferenceWeights.specs(cfg, linear)).bytes;
  }

  /** Zero-filled weights to be filled with `load` (e.g. from a checkpoint). */
  static create(cfg: ModelConfig, opts: { backend: Backend; linear?: WeightDtype }): InferenceWeights {
    const w = new InferenceWeights(cfg, opts.backend, opts.linear ?? "bf16");
    w.params.zero();
    return w;
  }

  /**
   * A copy of an fp32 model's parameters with the Linear weights rounded to `linear` (nearest even).
   * The model is not changed; free it afterwards to actually save the memory.
   */
  static fromModel(model: Model, linear: WeightDtype = "bf16"): InferenceWeights {
    const w = new InferenceWeights(model.cfg, model.backend, linear);
    try {
      for (const { name, tensor } of model.parameters) {
        const dst = w.params.get(name);
        if (dst.dtype === "bf16") castF32ToBf16(dst, tensor);
        else model.backend.copy(dst, tensor);
      }
    } catch (e) {
      w.free();
      throw e;
    }
    return w;
  }

  param(name: string): Tensor {
    this.#alive("param");
    if (!this.params.has(name)) throw new ShapeError(`InferenceWeights.param: no parameter '${name}' (names are Hugging Face's, e.g. 'model.layers.0.mlp.up_proj.weight')`);
    return this.params.get(name);
  }

  /**
   * Writes one parameter from host data: f32 values (rounded to nearest even where the storage is
   * bf16, through the cast kernel in bounded chunks) or, for bf16 storage only, raw bf16 bits
   * (uploaded as they are: a BF16 checkpoint needs no f32 round trip).
   */
  load(name: string, data: Float32Array | Uint16Array): void {
    const op = "InferenceWeights.load";
    const dst = this.param(name);
    if (data.length !== dst.numel) throw new ShapeError(`${op}: '${name}' ${fmtShape(dst.shape)} holds ${dst.numel} values, got ${data.length}`);
    if (data instanceof Uint16Array) {
      if (dst.dtype !== "bf16") throw new ShapeError(`${op}: '${name}' is stored as ${dst.dtype}; raw bf16 bits only load into bf16 storage (widen them to f32 first)`);
      dst.write(data);
      return;
    }
    if (dst.dtype === "f32") {
      dst.write(data);
      return;
    }
    const be = this.backend, n = Math.min(STAGE, data.length);
    const stage = be.tensor([n]);
    try {
      for (let i = 0; i < data.length; i += n) {
        const m = Math.min(n, data.length - i);
        const src = m === n ? stage : stage.rows(0, m);
        src.write(data.subarray(i, i + m));
        castF32ToBf16(new Tensor(dst.buffer, dst.byteOffset + 2 * i, [m], "bf16"), src);
      }
    } finally {
      stage.buffer.free();
    }
  }

  free(): void {
    if (this.#freed) return;
    this.#freed = true;
    this.params.free();
  }
  [Symbol.dispose](): void {
    this.free();
  }

  #alive(op: string): void {
    if (this.#freed) throw new ShapeError(`InferenceWeights.${op}: these weights were freed`);
  }
}

/**
 * "auto" picks bf16 on a CPU backend built with AVX-512 (where the bf16 kernel is measured faster at
 * decode: half the bytes per token), else f32: the portable and AVX2 builds compute the same result
 * but without a tuned bf16 path, and the CUDA backend's f32 matmul is cuBLASLt.
 */
export function resolveWeightDtype(requested: WeightDtype | "auto", backend: Backend): WeightDtype {
  if (requested === "f32" || requested === "bf16") return requested;
  if (requested !== "auto") throw new ShapeError(`weights must be "f32", "bf16" or "auto", got ${JSON.stringify(requested)}`);
  return backend.kind === "cpu" && /avx512f/.test(backend.buildInfo) ? "bf16" : "f32";
}
