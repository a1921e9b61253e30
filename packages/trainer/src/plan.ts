/**
 * The dry run: parameter count, memory plan and FLOPs per step for any config, computed from
 * shapes alone, so it works for tinyllama-1.1b on a laptop.
 */
import { flopsPerToken, parameterCount, tokensPerStep, type ModelConfig, type TrainConfig } from "@tinyllama/config";

export interface MemoryPlan {
  params: number;
  grads: number;
  optimizer: number;
  activations: number;
  total: number;
}

/**
 * Bytes of the four arenas. Activations follow @tinyllama/model's layout: per layer the saved
 * inputs of each op (x, norm outputs, q/k/v, attention output and lse, gate/up/swiglu) plus the
 * LM head's logits chunk; an estimate within a few percent of what Model.create allocates.
 */
export function memoryPlan(cfg: ModelConfig, B: number, T: number, logitsChunkRows = 0): MemoryPlan {
  const P = parameterCount(cfg);
  const C = cfg.dim, H = cfg.hiddenDim, HD = cfg.dim / cfg.nHeads, KV = cfg.nKvHeads * HD;
  const BT = B * T;
  const perLayer = BT * (C /* residual in */ + C /* attn norm */ + 1 + C /* q */ + 2 * KV /* k,v */ + C /* att */ + cfg.nHeads * 1 /* lse per head */ + C /* attn proj */ + C /* mlp norm */ + 1 + 3 * H /* gate, up, act */ + C /* down */);
  const rows = logitsChunkRows > 0 ? Math.min(logitsChunkRows, BT) : BT;
  const acts = 4 * (cfg.nLayers * perLayer + BT * (C * 3 + 1) + rows * cfg.vocabSize);
  const params = 4 * P;
  return { params, grads: params, optimizer: 2 * params, activations: acts, total: 4 * params + acts };
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
