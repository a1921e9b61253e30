/**
 * The dry run: parameter count, memory plan and FLOPs per step for any config, computed from
 * shapes alone, so it works for tinyllama-1.1b on a laptop.
 */
import { flopsPerToken, parameterCount, tokensPerStep, type ModelConfig, type TrainConfig } from "@tinyllama/config";
import { Model } from "@tinyllama/model";

export interface MemoryPlan {
  params: number;
  grads: number;
  optimizer: number;
  activations: number;
  total: number;
}

/**
 * Bytes of the four arenas, exactly as Model.create and AdamW would allocate them (the model's
 * own plan, alignment padding included), without allocating anything.
 */
export function memoryPlan(cfg: ModelConfig, B: number, T: number): MemoryPlan {
  const m = Model.plan(cfg, { B, T, training: true });
  return { params: m.params, grads: m.grads, optimizer: 2 * m.params, activations: m.acts, total: m.params + m.grads + 2 * m.params + m.acts };
}

const GB = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;

export function describePlan(cfg: ModelConfig, train: TrainConfig, presetName: string): string {
  const m = memoryPlan(cfg, train.batch, train.seq);
  const fpt = flopsPerToken(cfg, train.seq);
  const tps = tokensPerStep(train);
  return [
    `model        ${presetName}: ${cfg.nLayers} layers, dim ${cfg.dim}, hidden ${cfg.hiddenDim}, ${cfg.nHeads} heads / ${cfg.nKvHeads} KV heads, vocab ${cfg.vocabSize}, context ${cfg.maxSeqLen}`,
    `parameters   ${parameterCount(cfg).toLocaleString("en-US")}`,
    `batch        ${train.batch} x ${train.seq} tokens x ${train.gradAccum} accumulation = ${tps.toLocaleString("en-US")} tokens per step, ${train.steps} steps`,
    `memory       params ${GB(m.params)} | grads ${GB(m.grads)} | AdamW state ${GB(m.optimizer)} | activations ${GB(m.activations)} | total ${GB(m.total)} (fp32)`,
    `FLOPs        ${(fpt / 1e9).toFixed(3)} GFLOP per token, ${((fpt * tps) / 1e12).toFixed(2)} TFLOP per step, ${((fpt * tps * train.steps) / 1e15).toFixed(1)} PFLOP for the run`,
  ].join("\n");
}
