/* Optimizer kernels: the deterministic sum of squares (gradient clipping) and fused AdamW. */
#include "common.cuh"

#include <cuda_bf16.h>
#include <math.h>

#define SUMSQ_BLOCKS 1024 /* fixed, not derived from the device, so the result never depends on it */
#define SUMSQ_THREADS 256

/* Pass 1: block b sums x[i]^2 in double over a fixed strided set of i, reduces in a fixed tree. */
__global__ void sumsq_partial_kernel(double *partial, const float *x, int64_t N) {
  __shared__ double s[SUMSQ_THREADS];
  double acc = 0.0;
  for (int64_t i = blockIdx.x * (int64_t)SUMSQ_THREADS + threadIdx.x; i < N; i += (int64_t)SUMSQ_BLOCKS * SUMSQ_THREADS) {
    const double v = (double)x[i];
    acc += v * v;
  }
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int w = SUMSQ_THREADS / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

/* Pass 2: one block reduces the SUMSQ_BLOCKS partials in a fixed tree. */
__global__ void sumsq_final_kernel(double *result, const double *partial) {
  __shared__ double s[SUMSQ_THREADS];
  double acc = 0.0;
  for (int i = threadIdx.x; i < SUMSQ_BLOCKS; i += SUMSQ_THREADS) acc += partial[i];
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int w = SUMSQ_THREADS / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) *result = s[0];
}

extern "C" int tl_sumsq(double *out, const float *x, int64_t N) {
  TL_REQUIRE_PTR(out);
  TL_REQUIRE(N >= 0, "tl_sumsq: negative count %lld", (long long)N);
  if (N == 0) {
    *out = 0.0;
    return TL_OK;
  }
  TL_REQUIRE_PTR(x);
  void *scratch = NULL;
  TL_TRY(tl_cuda_scratch(TL_SCRATCH_REDUCE, (SUMSQ_BLOCKS + 1) * sizeof(double), &scratch));
  double *partial = (double *)scratch, *result = partial + SUMSQ_BLOCKS;
  sumsq_partial_kernel<<<SUMSQ_BLOCKS, SUMSQ_THREADS>>>(partial, x, N);
  TL_LAUNCHED("sumsq_partial_kernel");
  sumsq_final_kernel<<<1, SUMSQ_THREADS>>>(result, partial);
  TL_LAUNCHED("sumsq_final_kernel");
  double host = 0.0;
  TL_CUDA(cudaMemcpy(&host, result, sizeof host, cudaMemcpyDeviceToHost)); /* synchronises */
  *out = host;
  return TL_OK;
}

/* PyTorch AdamW (decoupled weight decay). bc1 = 1 - b1^t, bc2 = 1 - b2^t. Writes a bf16 copy of
 * the updated parameter when param_bf16 is non-NULL. */
__global__ void adamw_kernel(float *param, uint16_t *param_bf16, const float *grad, float *m, float *v, int64_t N,
                             float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                             float bc1, float bc2) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < N; i += (int64_t)gridDim.x * blockDim.x) {
    const float g = grad[i] * grad_scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float p = param[i];
    p -= lr * weight_decay * p;
    p -= lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
    param[i] = p;
    if (param_bf16) param_bf16[i] = __bfloat16_as_ushort(__float2bfloat16_rn(p));
  }
}

static int adamw(const char *who, float *param, uint16_t *param_bf16, const float *grad, float *m, float *v, int64_t N,
                 float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale, int t) {
  TL_REQUIRE(N >= 0, "%s: negative count %lld", who, (long long)N);
  TL_REQUIRE(t >= 1, "%s: step t must be >= 1, got %d", who, t);
  TL_REQUIRE(beta1 >= 0.0f && beta1 < 1.0f && beta2 >= 0.0f && beta2 < 1.0f,
             "%s: betas must lie in [0, 1), got %g, %g", who, (double)beta1, (double)beta2);
  if (N == 0) return TL_OK;
  TL_REQUIRE(param && grad && m && v, "%s: NULL pointer", who);
  const float bc1 = (float)(1.0 - pow((double)beta1, (double)t));
  const float bc2 = (float)(1.0 - pow((double)beta2, (double)t));
  adamw_kernel<<<tl_grid_for(N, 256), 256>>>(param, param_bf16, grad, m, v, N, lr, beta1, beta2, eps, weight_decay,
                                              grad_scale, bc1, bc2);
  TL_LAUNCHED("adamw_kernel");
  return TL_OK;
}

extern "C" int tl_adamw_step(float *param, const float *grad, float *m, float *v, int64_t N, float lr, float beta1,
                             float beta2, float eps, float weight_decay, float grad_scale, int t) {
  return adamw("tl_adamw_step", param, NULL, grad, m, v, N, lr, beta1, beta2, eps, weight_decay, grad_scale, t);
}

extern "C" int tl_adamw_step_bf16(float *param, uint16_t *param_bf16, const float *grad, float *m, float *v, int64_t N,
                                  float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                                  int t) {
  if (N > 0) TL_REQUIRE(param_bf16 != NULL, "tl_adamw_step_bf16: pointer 'param_bf16' is NULL");
  return adamw("tl_adamw_step_bf16", param, param_bf16, grad, m, v, N, lr, beta1, beta2, eps, weight_decay,
               grad_scale, t);
}
