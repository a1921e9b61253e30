// @tinyllama/checkpoint: safetensors (memory-mapped, validated, sharded), Hugging Face Llama directories, and GGUF
// export for llama.cpp. Works on plain data (names, shapes, typed arrays, a ModelConfig): no kernels, no model.
export {
  readSafetensors,
  readSafetensorsIndex,
  parseSafetensors,
  writeSafetensors,
  safetensorsHeader,
  writeAtomic,
  SafetensorsError,
  type Dtype,
  type ReadableDtype,
  type TensorData,
  type SafetensorsTensor,
  type SafetensorsFile,
  type TensorToWrite,
} from "./safetensors.ts";
export { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, f32ToF16Portable, f32BitsToBf16, f32BitsToF16, f16BitsToF32, f16BitsToF32Bits } from "./dtype.ts";
export { loadHfCheckpoint, openHfCheckpoint, saveHfCheckpoint, readHfWeights, CheckpointError, type HfCheckpoint, type HfCheckpointFile, type HfDtype, type SaveHfOptions } from "./hf.ts";
export {
  writeGguf,
  readGguf,
  ggufTensorName,
  permuteRopeRows,
  GgufError,
  GgufType,
  GgmlType,
  TokenType,
  GGUF_ALIGNMENT,
  type GgufTokenizer,
  type WriteGgufOptions,
  type GgufFile,
  type GgufTensorInfo,
  type GgufValue,
} from "./gguf.ts";
export { ggufVocab, type TokenizerLike } from "./vocab.ts";
