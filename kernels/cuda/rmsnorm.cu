/* Fused RMSNorm: out = inp * rstd * weight, rstd = 1/sqrt(mean(inp^2) + eps).
 * One block per row for the row-wise parts; dweight is a column reduction over rows done by
 * column owners (no atomics), so every result is deterministic. */
#include "common.cuh"

static const int THREADS = 256;

/* grid N, block THREADS. out (N,C), rstd (N), inp (N,C), weight (C) */
__global__ void rmsnorm_forward_kernel(float *out, float *rstd, const float *inp, const float *weight, int C,
                                       float eps) {
  __shared__ float red[32];
  const int64_t n = blockIdx.x;
  const float *x = inp + n * C;
  float ss = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) ss += x[c] * x[c];
  ss = tl_block_sum(ss, red);
  const float r = 1.0f / sqrtf(ss / (float)C + eps);
  float *y = out + n * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) y[c] = x[c] * r * weight[c];
  if (threadIdx.x == 0) rstd[n] = r;
}

/* dinp += r w dout - r^3/C x sum_c(dout w x). grid N, block THREADS. */
__global__ void rmsnorm_backward_dinp_kernel(float *dinp, const float *dout, const float *inp, const float *weight,
                                             const float *rstd, int C) {
  __shared__ float red[32];
  const int64_t n = blockIdx.x;
  const float *x = inp + n * C, *dy = dout + n * C;
  float dot = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) dot += dy[c] * weight[c] * x[c];
  dot = tl_block_sum(dot, red);
  const float r = rstd[n];
  const float k = r * r * r * dot / (float)C;
  float *dx = dinp + n * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) dx[c] += r * weight[c] * dy[c] - k * x[c];
}

/* dweight (C) += sum_n dout * inp * rstd. Block = 32 columns x 32 row phases; fixed order. */
__global__ void rmsnorm_backward_dweight_kernel(float *dweight, const float *dout, const float *inp,
                                                const float *rstd, int N, int C) {
  __shared__ float part[32][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  float acc = 0.0f;
  if (c < C)
    for (int n = threadIdx.y; n < N; n += 32) acc += dout[(int64_t)n * C + c] * inp[(int64_t)n * C + c] * rstd[n];
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float s = 0.0f;
    for (int j = 0; j < 32; j++) s += part[j][threadIdx.x];
    dweight[c] += s;
  }
}

extern "C" int tl_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C,
                                  float eps) {
  TL_REQUIRE(out && rstd && inp && weight, "tl_rmsnorm_forward: NULL pointer");
  TL_REQUIRE(N > 0 && C > 0, "tl_rmsnorm_forward: sizes must be positive (N=%d C=%d)", N, C);
  TL_REQUIRE(eps >= 0.0f, "tl_rmsnorm_forward: eps must be >= 0, got %g", (double)eps);
  rmsnorm_forward_kernel<<<N, THREADS>>>(out, rstd, inp, weight, C, eps);
  TL_LAUNCHED("rmsnorm_forward_kernel");
  return TL_OK;
}

extern "C" int tl_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                                   const float *weight, const float *rstd, int N, int C) {
  TL_REQUIRE(dinp && dweight && dout && inp && weight && rstd, "tl_rmsnorm_backward: NULL pointer");
  TL_REQUIRE(N > 0 && C > 0, "tl_rmsnorm_backward: sizes must be positive (N=%d C=%d)", N, C);
  rmsnorm_backward_dinp_kernel<<<N, THREADS>>>(dinp, dout, inp, weight, rstd, C);
  TL_LAUNCHED("rmsnorm_backward_dinp_kernel");
  rmsnorm_backward_dweight_kernel<<<(C + 31) / 32, dim3(32, 32)>>>(dweight, dout, inp, rstd, N, C);
  TL_LAUNCHED("rmsnorm_backward_dweight_kernel");
  return TL_OK;
}
