/* RMSNorm (Zhang & Sennrich 2019) as in Hugging Face LlamaRMSNorm:
 *   out = inp * rstd * weight,  rstd = 1 / sqrt(mean(inp^2) + eps)
 * rstd is saved per row so the backward never recomputes the reduction. Reductions use
 * `omp simd reduction`, whose lane order is fixed at compile time, so results are bit-identical
 * run to run and independent of the thread count. */
#include "common.h"

#include <math.h>

#define TL_RMS_PAR_MIN 16384 /* elements below which one thread is faster */

/* out (N,C), rstd (N), inp (N,C), weight (C) */
int tl_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C,
                       float eps) {
  TL_REQUIRE(out != NULL && rstd != NULL && inp != NULL && weight != NULL, "tl_rmsnorm_forward: NULL pointer");
  TL_REQUIRE(N > 0 && C > 0, "tl_rmsnorm_forward: sizes must be positive (N=%d C=%d)", N, C);
  TL_REQUIRE(eps >= 0.0f && isfinite(eps), "tl_rmsnorm_forward: eps must be finite and >= 0, got %g", (double)eps);
#pragma omp parallel for schedule(static) if ((int64_t)N * C >= TL_RMS_PAR_MIN)
  for (int n = 0; n < N; n++) {
    const float *x = inp + (int64_t)n * C;
    float *y = out + (int64_t)n * C;
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int c = 0; c < C; c++) ss += x[c] * x[c];
    float r = 1.0f / sqrtf(ss / (float)C + eps);
    rstd[n] = r;
    /* (x * r) * w, the order HF uses: normalise, then scale. out may alias inp (row read first). */
#pragma omp simd
    for (int c = 0; c < C; c++) y[c] = (x[c] * r) * weight[c];
  }
  return TL_OK;
}

/* dinp (N,C), dweight (C), dout (N,C), inp (N,C), weight (C), rstd (N); both gradients accumulate
 * and either may be NULL when not needed.
 *   dinp    += rstd * (weight*dout - inp * rstd^2 * mean(weight*dout*inp))
 *   dweight += sum_n dout * inp * rstd */
int tl_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                        const float *weight, const float *rstd, int N, int C) {
  TL_REQUIRE(dout != NULL && inp != NULL && weight != NULL && rstd != NULL, "tl_rmsnorm_backward: NULL pointer");
  TL_REQUIRE(N > 0 && C > 0, "tl_rmsnorm_backward: sizes must be positive (N=%d C=%d)", N, C);
#pragma omp parallel if ((int64_t)N * C >= TL_RMS_PAR_MIN)
  {
    if (dinp) {
#pragma omp for schedule(static) nowait
      for (int n = 0; n < N; n++) {
        const float *x = inp + (int64_t)n * C, *g = dout + (int64_t)n * C;
        float *dx = dinp + (int64_t)n * C;
        float r = rstd[n], dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int c = 0; c < C; c++) dot += weight[c] * g[c] * x[c];
        float k = r * r * r * dot / (float)C;
#pragma omp simd
        for (int c = 0; c < C; c++) dx[c] += r * weight[c] * g[c] - k * x[c];
      }
    }
    if (dweight) {
      /* Column slices (cache-line multiples) per thread, rows walked in order: deterministic
       * without a cross-thread reduction. Blocks of 256 columns keep the partial sums in L1. */
      int nt = 1, id = 0;
#ifdef _OPENMP
      nt = omp_get_num_threads();
      id = omp_get_thread_num();
#endif
      int chunks = (C + 15) / 16;
      int c0 = (int)((int64_t)chunks * id / nt) * 16, c1 = (int)((int64_t)chunks * (id + 1) / nt) * 16;
      if (c1 > C) c1 = C;
      for (int cb = c0; cb < c1; cb += 256) {
        int ce = cb + 256 < c1 ? cb + 256 : c1;
        float acc[256] = {0};
        for (int n = 0; n < N; n++) {
          const float *x = inp + (int64_t)n * C, *g = dout + (int64_t)n * C;
          float r = rstd[n];
#pragma omp simd
          for (int c = cb; c < ce; c++) acc[c - cb] += g[c] * (x[c] * r);
        }
        for (int c = cb; c < ce; c++) dweight[c] += acc[c - cb];
      }
    }
  }
  return TL_OK;
}
