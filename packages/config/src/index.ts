// @tinyllama/config: model and training configs, presets, parameter and FLOP counts, HF config.json mapping.
export { ConfigError, type ConfigIssue } from './errors.ts';
export { ModelConfigSchema, parseModelConfig, headDim, kvGroupSize, type ModelConfig } from './model.ts';
export {
  TrainConfigSchema,
  parseTrainConfig,
  defaultTrainConfig,
  tokensPerStep,
  SCHEDULES,
  SAMPLERS,
  DEVICES,
  TRAIN_PRECISIONS,
  type TrainConfig,
} from './train.ts';
export { getPreset, presetNames, isPresetName, type PresetName } from './presets.ts';
export {
  parameterShapes,
  parameterCount,
  matmulParameterCount,
  flopsPerToken,
  type ParameterShape,
  type FlopsOptions,
} from './params.ts';
export { fromHfConfig, toHfConfig, TORCH_DTYPES, type TorchDtype, type HfLlamaConfig, type ToHfOptions } from './hf.ts';
export { loadModelConfig } from './load.ts';
