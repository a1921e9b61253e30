/**
 * @tinyllama/kernels — the kernel runtime: builds and loads the C (and later CUDA) kernel library
 * through bun:ffi, owns device memory, and exposes every op behind a shape-checked wrapper.
 */
export { Backend, getBackend, openBackend, cudaUnavailableReason, type BackendOptions, type DeviceKind } from "./backend.ts";
export { buildCpuLibrary, buildCudaLibrary, cachedCudaLibrary, findCCompiler, findNvcc, kernelsDir, CUDA_GENCODES, type CpuBuildOptions, type CudaBuildOptions } from "./build.ts";
export { KernelError, ShapeError, fmtShape } from "./errors.ts";
export { Arena, DeviceBuffer, Tensor, DTYPE_BYTES, numelOf, type DType, type TensorSpec } from "./tensor.ts";
export { buildSharedLibrary, type SharedLibrarySpec } from "./build.ts";
export { matmulForward, matmulBackward } from "./ops/matmul.ts";
export { embeddingForward, embeddingBackward, checkTokenIds } from "./ops/embedding.ts";
export { rmsnormForward, rmsnormBackward } from "./ops/rmsnorm.ts";
export { swigluForward, swigluBackward } from "./ops/swiglu.ts";
export { add, accumulate, scale } from "./ops/elementwise.ts";
export { crossEntropy, type CrossEntropyOptions } from "./ops/crossentropy.ts";
export { ropeTables, ropeForward, ropeBackward } from "./ops/rope.ts";
export { attentionForward, attentionForwardBf16, attentionBackward, attentionBackwardBf16, type AttentionDims } from "./ops/attention.ts";
export { sumsq, adamwStep, type AdamWStepOptions } from "./ops/optimizer.ts";
export {
  castF32ToBf16,
  castBf16ToF32,
  matmulForwardBf16,
  matmulBackwardBf16,
  matmulBackwardBf16FromF32,
  adamwStepBf16,
  bf16ToNumber,
  numberToBf16,
  defaultPrecision,
  checkPrecision,
  PRECISIONS,
  type Precision,
  type AdamWBf16Options,
} from "./ops/bf16.ts";
export { attentionDecode } from "./ops/attention_decode.ts";
export { matmulForwardWbf16 } from "./ops/matmul_wbf16.ts";
export { symbols, type KernelSymbols } from "./symbols.ts";
export { Profiler, type OpStat } from "./profile.ts";
