/* bf16 mixed-precision ops (the tinyllama.h bf16 section), scalar reference versions: the CPU
 * library implements them so both libraries keep one ABI and the CUDA versions have a twin to be
 * tested against. bf16 is the upper half of an fp32; conversion rounds to nearest even. */
#include "common.h"

#include <math.h>
#include <string.h>

static inline float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* Round to nearest, ties to even; NaN becomes the canonical 0x7FFF (what CUDA's
 * __float2bfloat16_rn returns), infinities and overflow give +-inf. */
static inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

int tl_cast_f32_to_bf16(uint16_t *out, const float *inp, int64_t N) {
  TL_REQUIRE(N >= 0, "tl_cast_f32_to_bf16: negative count %lld", (long long)N);
  if (N == 0) return TL_OK;
  TL_REQUIRE(out != NULL && inp != NULL, "tl_cast_f32_to_bf16: NULL pointer");
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; i++) out[i] = f32_to_bf16(inp[i]);
  return TL_OK;
}

int tl_cast_bf16_to_f32(float *out, const uint16_t *inp, int64_t N) {
  TL_REQUIRE(N >= 0, "tl_cast_bf16_to_f32: negative count %lld", (long long)N);
  if (N == 0) return TL_OK;
  TL_REQUIRE(out != NULL && inp != NULL, "tl_cast_bf16_to_f32: NULL pointer");
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; i++) out[i] = bf16_to_f32(inp[i]);
  return TL_OK;
}

static int check(const char *who, const void *a, const void *b, const void *w, int N, int C, int OC) {
  TL_REQUIRE(a != NULL && b != NULL && w != NULL, "%s: NULL pointer", who);
  TL_REQUIRE(N > 0 && C > 0 && OC > 0, "%s: sizes must be positive (N=%d C=%d OC=%d)", who, N, C, OC);
  return TL_OK;
}

/* out (N,OC) = bf16(inp (N,C) @ weight (OC,C)^T), fp32 accumulation. */
int tl_matmul_forward_bf16(uint16_t *out, const uint16_t *inp, const uint16_t *weight, int N, int C, int OC) {
  int rc = check("tl_matmul_forward_bf16", out, inp, weight, N, C, OC);
  if (rc) return rc;
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < N; n++)
    for (int o = 0; o < OC; o++) {
      const uint16_t *x = inp + (int64_t)n * C, *w = weight + (int64_t)o * C;
      float acc = 0.0f;
      for (int c = 0; c < C; c++) acc += bf16_to_f32(x[c]) * bf16_to_f32(w[c]);
      out[(int64_t)n * OC + o] = f32_to_bf16(acc);
    }
  return TL_OK;
}

/* dinp (N,C) bf16 = bf16(dinp + dout @ weight); dweight (OC,C) fp32 += dout^T @ inp. */
int tl_matmul_backward_bf16(uint16_t *dinp, float *dweight, const uint16_t *dout, const uint16_t *inp,
                            const uint16_t *weight, int N, int C, int OC) {
  int rc = check("tl_matmul_backward_bf16", dout, inp, weight, N, C, OC);
  if (rc) return rc;
  if (dinp) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
      for (int c = 0; c < C; c++) {
        float acc = 0.0f;
        for (int o = 0; o < OC; o++)
          acc += bf16_to_f32(dout[(int64_t)n * OC + o]) * bf16_to_f32(weight[(int64_t)o * C + c]);
        int64_t i = (int64_t)n * C + c;
        dinp[i] = f32_to_bf16(bf16_to_f32(dinp[i]) + acc);
      }
  }
  if (dweight) {
#pragma omp parallel for schedule(static)
    for (int o = 0; o < OC; o++) {
      float *dw = dweight + (int64_t)o * C;
      for (int n = 0; n < N; n++) {
        float g = bf16_to_f32(dout[(int64_t)n * OC + o]);
        const uint16_t *x = inp + (int64_t)n * C;
        for (int c = 0; c < C; c++) dw[c] += g * bf16_to_f32(x[c]);
      }
    }
  }
  return TL_OK;
}

/* AdamW on fp32 master weights (same formula as tl_adamw_step), then the bf16 copy. */
int tl_adamw_step_bf16(float *param, uint16_t *param_bf16, const float *grad, float *m, float *v, int64_t N,
                       float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                       int t) {
  TL_REQUIRE(N >= 0, "tl_adamw_step_bf16: negative count %lld", (long long)N);
  TL_REQUIRE(t >= 1, "tl_adamw_step_bf16: step t must be >= 1, got %d", t);
  TL_REQUIRE(beta1 >= 0.0f && beta1 < 1.0f && beta2 >= 0.0f && beta2 < 1.0f,
             "tl_adamw_step_bf16: betas must lie in [0, 1), got %g, %g", (double)beta1, (double)beta2);
  if (N == 0) return TL_OK;
  TL_REQUIRE(param && param_bf16 && grad && m && v, "tl_adamw_step_bf16: NULL pointer");
  const float bc1 = (float)(1.0 - pow((double)beta1, (double)t));
  const float bc2 = (float)(1.0 - pow((double)beta2, (double)t));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; i++) {
    const float g = grad[i] * grad_scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float p = param[i];
    p -= lr * weight_decay * p;
    p -= lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
    param[i] = p;
    param_bf16[i] = f32_to_bf16(p);
  }
  return TL_OK;
}
