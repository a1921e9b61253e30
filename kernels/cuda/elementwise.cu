/* Flat elementwise ops: residual add/accumulate/scale, SwiGLU, bf16 casts. Grid-stride loops
 * with int64 indices, because arena-wide counts exceed 2^31. */
#include "common.cuh"

#include <cuda_bf16.h>

#define GRID_STRIDE(i, n)                                                      \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);    \
       i += (int64_t)gridDim.x * blockDim.x)

static const int THREADS = 256;

/* N == 0 is a no-op; otherwise every pointer must be set. */
#define FLAT_ARGS(N, ...)                                                      \
  do {                                                                         \
    TL_REQUIRE((N) >= 0, "%s: negative count %lld", __func__, (long long)(N)); \
    if ((N) == 0) return TL_OK;                                                \
    const void *ptrs_[] = {__VA_ARGS__};                                       \
    for (size_t i_ = 0; i_ < sizeof ptrs_ / sizeof ptrs_[0]; i_++)             \
      TL_REQUIRE(ptrs_[i_] != NULL, "%s: pointer argument %zu is NULL", __func__, i_ + 1); \
  } while (0)

__global__ void add_kernel(float *out, const float *a, const float *b, int64_t N) {
  GRID_STRIDE(i, N) out[i] = a[i] + b[i];
}
__global__ void accumulate_kernel(float *dst, const float *src, int64_t N) {
  GRID_STRIDE(i, N) dst[i] += src[i];
}
__global__ void scale_kernel(float *x, float s, int64_t N) {
  GRID_STRIDE(i, N) x[i] *= s;
}

extern "C" int tl_add(float *out, const float *a, const float *b, int64_t N) {
  FLAT_ARGS(N, out, a, b);
  add_kernel<<<tl_grid_for(N, THREADS), THREADS>>>(out, a, b, N);
  TL_LAUNCHED("add_kernel");
  return TL_OK;
}
extern "C" int tl_accumulate(float *dst, const float *src, int64_t N) {
  FLAT_ARGS(N, dst, src);
  accumulate_kernel<<<tl_grid_for(N, THREADS), THREADS>>>(dst, src, N);
  TL_LAUNCHED("accumulate_kernel");
  return TL_OK;
}
extern "C" int tl_scale(float *x, float s, int64_t N) {
  FLAT_ARGS(N, x);
  scale_kernel<<<tl_grid_for(N, THREADS), THREADS>>>(x, s, N);
  TL_LAUNCHED("scale_kernel");
  return TL_OK;
}

/* ---- SwiGLU: out = silu(gate) * up, silu(g) = g * sigmoid(g) ---- */
__device__ __forceinline__ float sigmoidf_(float g) { return 1.0f / (1.0f + expf(-g)); }

__global__ void swiglu_forward_kernel(float *out, const float *gate, const float *up, int64_t N) {
  GRID_STRIDE(i, N) {
    float g = gate[i];
    out[i] = g * sigmoidf_(g) * up[i];
  }
}
/* d silu(g)/dg = s (1 + g (1 - s)), s = sigmoid(g). */
__global__ void swiglu_backward_kernel(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                                       int64_t N) {
  GRID_STRIDE(i, N) {
    float g = gate[i], u = up[i], d = dout[i];
    float s = sigmoidf_(g);
    float silu = g * s;
    dgate[i] += d * u * s * (1.0f + g * (1.0f - s));
    dup[i] += d * silu;
  }
}

extern "C" int tl_swiglu_forward(float *out, const float *gate, const float *up, int64_t N) {
  FLAT_ARGS(N, out, gate, up);
  swiglu_forward_kernel<<<tl_grid_for(N, THREADS), THREADS>>>(out, gate, up, N);
  TL_LAUNCHED("swiglu_forward_kernel");
  return TL_OK;
}
extern "C" int tl_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                                  int64_t N) {
  FLAT_ARGS(N, dgate, dup, dout, gate, up);
  swiglu_backward_kernel<<<tl_grid_for(N, THREADS), THREADS>>>(dgate, dup, dout, gate, up, N);
  TL_LAUNCHED("swiglu_backward_kernel");
  return TL_OK;
}

/* ---- bf16 casts: __float2bfloat16_rn rounds to nearest even, like kernels/cpu/bf16.c ---- */
__global__ void cast_f32_to_bf16_kernel(uint16_t *out, const float *inp, int64_t N) {
  GRID_STRIDE(i, N) out[i] = __bfloat16_as_ushort(__float2bfloat16_rn(inp[i]));
}
__global__ void cast_bf16_to_f32_kernel(float *out, const uint16_t *inp, int64_t N) {
  GRID_STRIDE(i, N) out[i] = __uint_as_float(((unsigned)inp[i]) << 16);
}

extern "C" int tl_cast_f32_to_bf16(uint16_t *out, const float *inp, int64_t N) {
  FLAT_ARGS(N, out, inp);
  cast_f32_to_bf16_kernel<<<tl_grid_for(N, THREADS), THREADS>>>(out, inp, N);
  TL_LAUNCHED("cast_f32_to_bf16_kernel");
  return TL_OK;
}
extern "C" int tl_cast_bf16_to_f32(float *out, const uint16_t *inp, int64_t N) {
  FLAT_ARGS(N, out, inp);
  cast_bf16_to_f32_kernel<<<tl_grid_for(N, THREADS), THREADS>>>(out, inp, N);
  TL_LAUNCHED("cast_bf16_to_f32_kernel");
  return TL_OK;
}

int tl_cuda_cast_to_f32(float *out, const uint16_t *inp, int64_t n) { return tl_cast_bf16_to_f32(out, inp, n); }
int tl_cuda_cast_to_bf16(uint16_t *out, const float *inp, int64_t n) { return tl_cast_f32_to_bf16(out, inp, n); }
