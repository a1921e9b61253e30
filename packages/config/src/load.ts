import { fromHfConfig } from './hf.ts';
import { parseModelConfig, type ModelConfig } from './model.ts';
import { getPreset } from './presets.ts';

/**
 * The one entry point for "a model config from wherever the user gave it":
 * - a string is a preset name (`tinyllama-1.1b`, `micro`, ...);
 * - an object with HF keys (`hidden_size` or `model_type`) is a Hugging Face config.json;
 * - any other object is our camelCase ModelConfig.
 * Reading files is the caller's job: this package stays runtime-neutral.
 */
export function loadModelConfig(nameOrObject: string | object): ModelConfig {
  if (typeof nameOrObject === 'string') return getPreset(nameOrObject);
  if ('hidden_size' in nameOrObject || 'model_type' in nameOrObject) return fromHfConfig(nameOrObject);
  return parseModelConfig(nameOrObject);
}
