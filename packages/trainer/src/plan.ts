/**
 * The dry run: parameter count, memory plan and FLOPs per step for any config, computed from
 * shapes alone, so it works for tinyllama-1.1b on a laptop.
 */
import { flopsPerToken, parameterCount, tokensPerStep, type ModelConfig, type TrainConfig } from "@tinyllama/config";
import type { Precision } from "@tinyllama/kernels";
import { Model } from "@tinyllama/model";

export interface MemoryPlan {
  precision: Precision;
  params: number;
  /** the bf16 weight copy (bf16 precision), else 0 */
  paramsBf16: number;
  grads: number;
  optimizer: number;
  activations: number;
  total: number;
}

/**
 * Bytes of the four arenas, exactly as Model.create and AdamW would allocate them (the model's
 * own plan, alignment padding included), without allocating anything.
 */
export function memoryPlan(cfg: ModelConfig, B: number, T: number, precision: Precision = "fp32"): MemoryPlan {
  const m = Model.plan(cfg, { B, T, training: true, precision });
  return {
    precision,
    params: m.params,
    paramsBf16: m.paramsBf16,
    grads: m.grads,
    optimizer: 2 * m.params,
    activations: m.acts,
    total: m.params + m.paramsBf16 + m.grads + 2 * m.params + m.acts,
  };
}

/** The precision a run would use, without opening a backend: 'auto' is bf16 when the device is (or TINYLLAMA_DEVICE says) cuda. */
export function plannedPrecision(train: TrainConfig): Precision {
  if (train.precision !== "auto") return train.precision;
  const device = train.device === "auto" ? process.env.TINYLLAMA_DEVICE : train.device;
  return device === "cuda" ? "bf16" : "fp32";
}

const GB = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;

export function describePlan(cfg: ModelConfig, train: TrainConfig, presetName: string): string {
  const m = memoryPlan(cfg, train.batch, train.seq, plannedPrecision(train));
  const fpt = flopsPerToken(cfg, train.seq);
  const tps = tokensPerStep(train);
  return [
    `model        ${presetName}: ${cfg.nLayers} layers, dim ${cfg.dim}, hidden ${cfg.hiddenDim}, ${cfg.nHeads} heads / ${cfg.nKvHeads} KV heads, vocab ${cfg.vocabSize}, context ${cfg.maxSeqLen}`,
    `parameters   ${parameterCount(cfg).toLocaleString("en-US")}`,
    `batch        ${train.batch} x ${train.seq} tokens x ${train.gradAccum} accumulation = ${tps.toLocaleString("en-US")} tokens per step, ${train.steps} steps`,
    `memory       params ${GB(m.params)}${m.paramsBf16 ? ` + bf16 copy ${GB(m.paramsBf16)}` : ""} | grads ${GB(m.grads)} | AdamW state ${GB(m.optimizer)} | activations ${GB(m.activations)} | total ${GB(m.total)} (${m.precision === "bf16" ? "bf16 mixed precision" : "fp32"}${train.precision === "auto" && train.device === "auto" ? "; auto: bf16 when CUDA is used" : ""})`,
    `FLOPs        ${(fpt / 1e9).toFixed(3)} GFLOP per token, ${((fpt * tps) / 1e12).toFixed(2)} TFLOP per step, ${((fpt * tps * train.steps) / 1e15).toFixed(1)} PFLOP for the run`,
  ].join("\n");
}
