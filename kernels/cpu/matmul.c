/* Linear layer matmul: out = inp @ weight^T. Simple reference-quality version; the tuned
 * register-tiled kernel replaces the inner loops. */
#include "common.h"

static int check(const char *who, const void *a, const void *b, int N, int C, int OC) {
  TL_REQUIRE(a != NULL && b != NULL, "%s: NULL pointer", who);
  TL_REQUIRE(N > 0 && C > 0 && OC > 0, "%s: sizes must be positive (N=%d C=%d OC=%d)", who, N, C, OC);
  return TL_OK;
}

int tl_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                      int C, int OC) {
  int rc = check("tl_matmul_forward", out, inp, N, C, OC);
  if (rc) return rc;
  TL_REQUIRE_PTR(weight);
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < N; n++)
    for (int o = 0; o < OC; o++) {
      const float *x = inp + (int64_t)n * C, *w = weight + (int64_t)o * C;
      float acc = bias ? bias[o] : 0.0f;
      for (int c = 0; c < C; c++) acc += x[c] * w[c];
      out[(int64_t)n * OC + o] = acc;
    }
  return TL_OK;
}

int tl_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                       const float *inp, const float *weight, int N, int C, int OC) {
  int rc = check("tl_matmul_backward", dout, inp, N, C, OC);
  if (rc) return rc;
  TL_REQUIRE_PTR(weight);
  if (dinp) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
      float *dx = dinp + (int64_t)n * C;
      for (int o = 0; o < OC; o++) {
        float g = dout[(int64_t)n * OC + o];
        const float *w = weight + (int64_t)o * C;
        for (int c = 0; c < C; c++) dx[c] += g * w[c];
      }
    }
  }
  if (dweight || dbias) {
#pragma omp parallel for schedule(static)
    for (int o = 0; o < OC; o++) {
      float *dw = dweight ? dweight + (int64_t)o * C : NULL;
      float db = 0.0f;
      for (int n = 0; n < N; n++) {
        float g = dout[(int64_t)n * OC + o];
        db += g;
        if (dw) {
          const float *x = inp + (int64_t)n * C;
          for (int c = 0; c < C; c++) dw[c] += g * x[c];
        }
      }
      if (dbias) dbias[o] += db;
    }
  }
  return TL_OK;
}
