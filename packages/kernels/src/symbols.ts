/**
 * The bun:ffi view of kernels/include/tinyllama.h. Both libraries (cpu, cuda) export exactly these
 * symbols; keep this table and the header in the same order, one section per op family.
 */
import { FFIType } from "bun:ffi";

const { ptr, i32, i64, f32, cstring } = FFIType;

export const symbols = {
  // runtime
  tl_error_string: { args: [i32], returns: cstring },
  tl_last_error: { args: [], returns: cstring },
  tl_backend: { args: [], returns: i32 },
  tl_build_info: { args: [ptr], returns: i32 },
  tl_set_num_threads: { args: [i32], returns: i32 },
  tl_get_num_threads: { args: [ptr], returns: i32 },
  // memory
  tl_alloc: { args: [ptr, i64], returns: i32 },
  tl_free: { args: [ptr], returns: i32 },
  tl_zero: { args: [ptr, i64], returns: i32 },
  tl_upload: { args: [ptr, ptr, i64], returns: i32 },
  tl_download: { args: [ptr, ptr, i64], returns: i32 },
  tl_copy: { args: [ptr, ptr, i64], returns: i32 },
  tl_sync: { args: [], returns: i32 },
  // matmul
  tl_matmul_forward: { args: [ptr, ptr, ptr, ptr, i32, i32, i32], returns: i32 },
  tl_matmul_backward: { args: [ptr, ptr, ptr, ptr, ptr, ptr, i32, i32, i32], returns: i32 },
  // embedding
  tl_embedding_forward: { args: [ptr, ptr, ptr, i32, i32, i32], returns: i32 },
  tl_embedding_backward: { args: [ptr, ptr, ptr, i32, i32, i32], returns: i32 },
  // rmsnorm
  tl_rmsnorm_forward: { args: [ptr, ptr, ptr, ptr, i32, i32, f32], returns: i32 },
  tl_rmsnorm_backward: { args: [ptr, ptr, ptr, ptr, ptr, ptr, i32, i32], returns: i32 },
  // swiglu
  tl_swiglu_forward: { args: [ptr, ptr, ptr, i64], returns: i32 },
  tl_swiglu_backward: { args: [ptr, ptr, ptr, ptr, ptr, i64], returns: i32 },
  // residual (elementwise)
  tl_add: { args: [ptr, ptr, ptr, i64], returns: i32 },
  tl_accumulate: { args: [ptr, ptr, i64], returns: i32 },
  tl_scale: { args: [ptr, f32, i64], returns: i32 },
  // cross-entropy
  tl_crossentropy_forward_backward: { args: [ptr, ptr, ptr, ptr, i32, i32, i32, f32], returns: i32 },
  // rope
  tl_rope_tables: { args: [ptr, ptr, i32, i32, f32], returns: i32 },
  tl_rope_forward: { args: [ptr, ptr, ptr, ptr, i32, i32, i32, i32, i32, i32], returns: i32 },
  tl_rope_backward: { args: [ptr, ptr, ptr, ptr, i32, i32, i32, i32, i32, i32], returns: i32 },
  // attention
  tl_attention_forward: { args: [ptr, ptr, ptr, ptr, ptr, i32, i32, i32, i32, i32], returns: i32 },
  tl_attention_backward: { args: [ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, i32, i32, i32, i32, i32], returns: i32 },
  // optimizer
  tl_sumsq: { args: [ptr, ptr, i64], returns: i32 },
  tl_adamw_step: { args: [ptr, ptr, ptr, ptr, i64, f32, f32, f32, f32, f32, f32, i32], returns: i32 },
  // bf16 (mixed precision; see the header's bf16 section)
  tl_cast_f32_to_bf16: { args: [ptr, ptr, i64], returns: i32 },
  tl_cast_bf16_to_f32: { args: [ptr, ptr, i64], returns: i32 },
  tl_matmul_forward_bf16: { args: [ptr, ptr, ptr, i32, i32, i32], returns: i32 },
  tl_matmul_backward_bf16: { args: [ptr, ptr, ptr, ptr, ptr, i32, i32, i32], returns: i32 },
  tl_matmul_forward_bf16_f32: { args: [ptr, ptr, ptr, i32, i32, i32], returns: i32 },
  tl_matmul_backward_bf16_f32: { args: [ptr, ptr, ptr, ptr, ptr, i32, i32, i32], returns: i32 },
  tl_adamw_step_bf16: { args: [ptr, ptr, ptr, ptr, ptr, i64, f32, f32, f32, f32, f32, f32, i32], returns: i32 },
  // bf16 attention (tensor cores on CUDA)
  tl_attention_forward_bf16: { args: [ptr, ptr, ptr, ptr, ptr, i32, i32, i32, i32, i32], returns: i32 },
  tl_attention_backward_bf16: { args: [ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, i32, i32, i32, i32, i32], returns: i32 },
  // attention decode (inference, KV cache)
  tl_attention_decode: { args: [ptr, ptr, ptr, ptr, i32, i32, i32, i32, i32, i32], returns: i32 },
  // bf16 weight storage (inference): fp32 activations @ bf16 weights, fp32 out
  tl_matmul_forward_wbf16: { args: [ptr, ptr, ptr, i32, i32, i32], returns: i32 },
} as const;

export type KernelSymbols = typeof symbols;
