/* Internal helpers shared by the CUDA kernels; not part of the ABI.
 *
 * Error discipline: every CUDA runtime call goes through TL_CUDA, every kernel launch is followed
 * by TL_LAUNCHED. Both turn a failure into TL_ERR_BACKEND with the CUDA error string in
 * tl_last_error(). Kernel execution is asynchronous, so a fault inside a kernel surfaces at the
 * next synchronising call (tl_download, tl_sync, tl_sumsq, ...); set TINYLLAMA_CUDA_SYNC=1 to
 * synchronise after every launch and attribute such faults to the op that caused them. */
#ifndef TL_CUDA_COMMON_CUH
#define TL_CUDA_COMMON_CUH

#include "../include/tinyllama.h"
#include <cuda_runtime.h>
#include <stdint.h>

/* Records a formatted detail message for tl_last_error() and returns `code`. */
int tl_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* 1 when TINYLLAMA_CUDA_SYNC is set to a non-empty value other than "0" (read once). */
int tl_cuda_debug_sync(void);

/* A device buffer owned by the runtime that grows on demand, for kernels that need temporary
 * storage (attention's per-row D, reductions' partial sums). One per purpose (slot), reused by
 * every call: the caller must be done with a slot before the next op that uses the same slot. */
enum { TL_SCRATCH_ATTN = 0, TL_SCRATCH_REDUCE = 1, TL_SCRATCH_MATMUL = 2, TL_SCRATCH_SLOTS = 3 };
int tl_cuda_scratch(int slot, size_t bytes, void **out);

/* A device int that kernels set to flag bad input (e.g. a token id out of range) without
 * faulting: reset it before the launch, read it (synchronously) after. */
int tl_cuda_flag_reset(int **dflag);
int tl_cuda_flag_read(int *host);

/* The register-tiled flash attention forward (attention_fa2.cu), which tl_attention_forward_bf16
 * runs when tl_cuda_fa2_supports says it can (head dim 16/32/48/64/96/128, 16-byte aligned
 * q/k/v); the arguments are checked by the caller. */
int tl_cuda_fa2_supports(int HD, const void *out, const void *q, const void *k, const void *v);
int tl_cuda_attention_forward_fa2(uint16_t *out, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                  int B, int T, int NH, int NKV, int HD);
/* Its backward (head dims 16..64; Dvec = rowsum(dO O) already computed), likewise. */
int tl_cuda_fa2_backward_supports(int HD, const void *dout, const void *q, const void *k, const void *v);
int tl_cuda_attention_backward_fa2(float *dq, float *dk, float *dv, const uint16_t *dout, const uint16_t *q, const uint16_t *k,
                                   const uint16_t *v, const float *lse, const float *Dvec, int B, int T, int NH, int NKV, int HD);

/* bf16 <-> fp32 casts on the default stream (elementwise.cu), for internal reuse. */
int tl_cuda_cast_to_f32(float *out, const uint16_t *inp, int64_t n);
int tl_cuda_cast_to_bf16(uint16_t *out, const float *inp, int64_t n);

#define TL_REQUIRE(cond, ...)                                                  \
  do {                                                                         \
    if (!(cond)) return tl_fail(TL_ERR_INVALID_ARGUMENT, __VA_ARGS__);         \
  } while (0)

#define TL_REQUIRE_PTR(p)                                                      \
  TL_REQUIRE((p) != NULL, "%s: pointer '%s' is NULL", __func__, #p)

#define TL_REQUIRE_POS(x)                                                      \
  TL_REQUIRE((x) > 0, "%s: '%s' must be positive, got %lld", __func__, #x, (long long)(x))

#define TL_REQUIRE_NONNEG(x)                                                   \
  TL_REQUIRE((x) >= 0, "%s: '%s' must be non-negative, got %lld", __func__, #x, (long long)(x))

/* Propagates a non-zero return code. */
#define TL_TRY(expr)                                                           \
  do {                                                                         \
    int rc_ = (expr);                                                          \
    if (rc_ != TL_OK) return rc_;                                              \
  } while (0)

#define TL_CUDA(call)                                                          \
  do {                                                                         \
    cudaError_t e_ = (call);                                                   \
    if (e_ != cudaSuccess)                                                     \
      return tl_fail(TL_ERR_BACKEND, "%s: %s failed: %s (%s)", __func__, #call,  \
                     cudaGetErrorString(e_), cudaGetErrorName(e_));            \
  } while (0)

/* After every <<<...>>>: launch errors (bad configuration, no device) and, in debug-sync mode,
 * execution errors of the kernel just launched. */
#define TL_LAUNCHED(kernel_name)                                               \
  do {                                                                         \
    cudaError_t e_ = cudaGetLastError();                                       \
    if (e_ == cudaSuccess && tl_cuda_debug_sync()) e_ = cudaDeviceSynchronize(); \
    if (e_ != cudaSuccess)                                                     \
      return tl_fail(TL_ERR_BACKEND, "%s: kernel %s failed: %s (%s)", __func__,  \
                     kernel_name, cudaGetErrorString(e_), cudaGetErrorName(e_)); \
  } while (0)

/* Grid size for a grid-stride loop over n elements with `threads` per block. Capped so the
 * launch is always valid; the loop covers the rest. */
static inline unsigned tl_grid_for(int64_t n, int threads) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > 65536) blocks = 65536;
  return (unsigned)blocks;
}

/* ---- device helpers ---- */
__device__ __forceinline__ float tl_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float tl_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/* Block-wide sum / max for blockDim.x a multiple of 32 (<= 1024). The combination order is fixed
 * by thread index, so results are deterministic. `shared` needs 32 floats; the result is
 * returned to every thread. */
__device__ __forceinline__ float tl_block_sum(float v, float *shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = tl_warp_sum(v);
  __syncthreads(); /* shared may still be read by a previous reduction */
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float r = lane < nw ? shared[lane] : 0.0f;
  return tl_warp_sum(r);
}
__device__ __forceinline__ float tl_block_max(float v, float *shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = tl_warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float r = lane < nw ? shared[lane] : -INFINITY;
  return tl_warp_max(r);
}

#endif
