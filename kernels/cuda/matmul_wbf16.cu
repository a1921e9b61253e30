/* tl_matmul_forward_wbf16 (tinyllama.h, "bf16 weight storage"): out (N,OC) fp32 = inp (N,C) fp32 @
 * float(weight (OC,C) bf16)^T, fp32 accumulation. The inference Linear layer with half the weight
 * bytes; the CPU twin is kernels/cpu/matmul_wbf16.c.
 *
 * One warp per output element (n, o): lane l reads weight elements l, l+32, ... of row o (coalesced
 * 64-byte loads per warp), widens them exactly (bits << 16) and FMAs with the activations; a fixed
 * shuffle tree sums the lanes, so results are deterministic. Decode (N = 1) is memory bound and this
 * streams each weight row once; prefill (large N) would want a tiled tensor-core kernel (not yet). */
#include "common.cuh"

#include <string.h>

extern "C" int tl_matmul_forward_wbf16(float *out, const float *inp, const uint16_t *weight, int N, int C, int OC);

#define WBF16_WARPS 8

__device__ __forceinline__ float bf16_bits_to_f32(uint16_t h) { return __uint_as_float((unsigned)h << 16); }

__global__ void matmul_wbf16_kernel(float *out, const float *inp, const uint16_t *weight, int N, int C, int OC) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int o = blockIdx.x * WBF16_WARPS + warp, n = blockIdx.y;
  if (o >= OC) return; /* whole warps leave together: o is uniform across a warp */
  const float *x = inp + (int64_t)n * C;
  const uint16_t *w = weight + (int64_t)o * C;
  float acc = 0.0f;
  for (int c = lane; c < C; c += 32) acc = fmaf(x[c], bf16_bits_to_f32(w[c]), acc);
  acc = tl_warp_sum(acc);
  if (lane == 0) out[(int64_t)n * OC + o] = acc;
}

extern "C" int tl_matmul_forward_wbf16(float *out, const float *inp, const uint16_t *weight, int N, int C, int OC) {
  TL_REQUIRE(out != NULL && inp != NULL && weight != NULL, "tl_matmul_forward_wbf16: NULL pointer");
  TL_REQUIRE(N > 0 && C > 0 && OC > 0, "tl_matmul_forward_wbf16: sizes must be positive (N=%d C=%d OC=%d)", N, C, OC);
  TL_REQUIRE(N <= 65535, "tl_matmul_forward_wbf16: N=%d exceeds the grid limit 65535", N);
  const dim3 grid((unsigned)((OC + WBF16_WARPS - 1) / WBF16_WARPS), (unsigned)N);
  matmul_wbf16_kernel<<<grid, 32 * WBF16_WARPS>>>(out, inp, weight, N, C, OC);
  TL_LAUNCHED("matmul_wbf16_kernel");
  return TL_OK;
}
