/* Optimizer kernels: the global gradient norm (sum of squares) and the fused AdamW step.
 * Both run over a whole arena at once (int64 counts), so they are memory-bound streams:
 * sumsq reads 4 bytes/element, adamw reads 16 and writes 12. */
#include "common.h"

#include <math.h>
#include <stdlib.h>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

/* ------------------------------------------------------------------ sumsq ---- */
/* The sum is cut into fixed blocks of SUMSQ_BLOCK elements whatever the thread count; each block
 * is summed by one thread into 32 double lanes (lane j takes elements i with i % 32 == j), the
 * lanes are folded in a fixed order, and the block sums are added serially. So the result depends
 * only on N and the data: the same for every thread count and bit-identical between the AVX-512
 * and the portable path (x*x is exact in double, so fused and unfused multiply-adds agree). */
#define SUMSQ_BLOCK 65536
#define SUMSQ_LANES 32

static double fold_lanes(const double *acc) {
  /* pairwise, in this exact order in both paths */
  double l8[8];
  for (int j = 0; j < 8; j++) l8[j] = (acc[j] + acc[j + 8]) + (acc[j + 16] + acc[j + 24]);
  return ((l8[0] + l8[4]) + (l8[2] + l8[6])) + ((l8[1] + l8[5]) + (l8[3] + l8[7]));
}

static double sumsq_block(const float *x, int64_t n) {
  double acc[SUMSQ_LANES];
#ifdef __AVX512F__
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd(), a2 = _mm512_setzero_pd(), a3 = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + SUMSQ_LANES <= n; i += SUMSQ_LANES) {
    __m512 lo = _mm512_loadu_ps(x + i), hi = _mm512_loadu_ps(x + i + 16);
    __m512d d0 = _mm512_cvtps_pd(_mm512_castps512_ps256(lo));
    __m512d d1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(lo, 1));
    __m512d d2 = _mm512_cvtps_pd(_mm512_castps512_ps256(hi));
    __m512d d3 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(hi, 1));
    a0 = _mm512_fmadd_pd(d0, d0, a0);
    a1 = _mm512_fmadd_pd(d1, d1, a1);
    a2 = _mm512_fmadd_pd(d2, d2, a2);
    a3 = _mm512_fmadd_pd(d3, d3, a3);
  }
  if (i < n) {
    /* masked tail: absent lanes load 0 and add 0, exactly like the portable path skipping them */
    int64_t r = n - i;
    __mmask16 mlo = (__mmask16)(r >= 16 ? 0xFFFF : ((1u << r) - 1));
    __mmask16 mhi = (__mmask16)(r <= 16 ? 0 : ((1u << (r - 16)) - 1));
    __m512 lo = _mm512_maskz_loadu_ps(mlo, x + i), hi = _mm512_maskz_loadu_ps(mhi, x + i + 16);
    __m512d d0 = _mm512_cvtps_pd(_mm512_castps512_ps256(lo));
    __m512d d1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(lo, 1));
    __m512d d2 = _mm512_cvtps_pd(_mm512_castps512_ps256(hi));
    __m512d d3 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(hi, 1));
    a0 = _mm512_fmadd_pd(d0, d0, a0);
    a1 = _mm512_fmadd_pd(d1, d1, a1);
    a2 = _mm512_fmadd_pd(d2, d2, a2);
    a3 = _mm512_fmadd_pd(d3, d3, a3);
  }
  _mm512_storeu_pd(acc, a0);
  _mm512_storeu_pd(acc + 8, a1);
  _mm512_storeu_pd(acc + 16, a2);
  _mm512_storeu_pd(acc + 24, a3);
#else
  for (int j = 0; j < SUMSQ_LANES; j++) acc[j] = 0.0;
  int64_t i = 0;
  for (; i + SUMSQ_LANES <= n; i += SUMSQ_LANES)
    for (int j = 0; j < SUMSQ_LANES; j++) {
      double d = (double)x[i + j];
      acc[j] += d * d;
    }
  for (int j = 0; i + j < n; j++) {
    double d = (double)x[i + j];
    acc[j] += d * d;
  }
#endif
  return fold_lanes(acc);
}

int tl_sumsq(double *out, const float *x, int64_t N) {
  TL_REQUIRE_PTR(out);
  TL_REQUIRE(N >= 0, "tl_sumsq: N must be non-negative, got %lld", (long long)N);
  if (N == 0) {
    *out = 0.0;
    return TL_OK;
  }
  TL_REQUIRE_PTR(x);
  int64_t nblocks = (N + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
  /* 1.1B parameters make ~17k blocks: 134 KB of partial sums, allocated once per call. */
  double small[64];
  double *part = nblocks <= 64 ? small : malloc((size_t)nblocks * sizeof(double));
  if (!part) return tl_fail(TL_ERR_OUT_OF_MEMORY, "tl_sumsq: could not allocate %lld partial sums", (long long)nblocks);
#pragma omp parallel for schedule(static) if (nblocks > 1)
  for (int64_t b = 0; b < nblocks; b++) {
    int64_t start = b * SUMSQ_BLOCK;
    int64_t n = N - start < SUMSQ_BLOCK ? N - start : SUMSQ_BLOCK;
    part[b] = sumsq_block(x + start, n);
  }
  double s = 0.0;
  for (int64_t b = 0; b < nblocks; b++) s += part[b];
  if (part != small) free(part);
  *out = s;
  return TL_OK;
}

/* ------------------------------------------------------------------ adamw ---- */
/* Scalars are prepared in double, as PyTorch does in Python before handing them to its fp32
 * kernels, then each element follows torch.optim.AdamW's single-tensor path:
 *   p *= 1 - lr*wd;  m = m*b1 + (1-b1)*g;  v = v*b2 + (1-b2)*g*g;
 *   p += (-lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)                                            */
typedef struct {
  float decay, b1, one_minus_b1, b2, one_minus_b2, neg_step_size, bc2_sqrt, eps, gscale;
} adamw_scalars;

static void adamw_range_portable(float *p, const float *grad, float *m, float *v, int64_t n, const adamw_scalars *s) {
  for (int64_t i = 0; i < n; i++) {
    float g = grad[i] * s->gscale;
    float mi = m[i] * s->b1 + s->one_minus_b1 * g;
    float vi = v[i] * s->b2 + s->one_minus_b2 * g * g;
    m[i] = mi;
    v[i] = vi;
    float denom = sqrtf(vi) / s->bc2_sqrt + s->eps;
    p[i] = p[i] * s->decay + (s->neg_step_size * mi) / denom;
  }
}

#ifdef __AVX512F__
static void adamw_range_avx512(float *p, const float *grad, float *m, float *v, int64_t n, const adamw_scalars *s) {
  const __m512 decay = _mm512_set1_ps(s->decay), b1 = _mm512_set1_ps(s->b1), omb1 = _mm512_set1_ps(s->one_minus_b1);
  const __m512 b2 = _mm512_set1_ps(s->b2), omb2 = _mm512_set1_ps(s->one_minus_b2), nss = _mm512_set1_ps(s->neg_step_size);
  const __m512 bc2 = _mm512_set1_ps(s->bc2_sqrt), eps = _mm512_set1_ps(s->eps), gs = _mm512_set1_ps(s->gscale);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 g = _mm512_mul_ps(_mm512_loadu_ps(grad + i), gs);
    __m512 mi = _mm512_fmadd_ps(_mm512_loadu_ps(m + i), b1, _mm512_mul_ps(omb1, g));
    __m512 vi = _mm512_fmadd_ps(_mm512_loadu_ps(v + i), b2, _mm512_mul_ps(_mm512_mul_ps(omb2, g), g));
    _mm512_storeu_ps(m + i, mi);
    _mm512_storeu_ps(v + i, vi);
    __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), bc2), eps);
    __m512 upd = _mm512_div_ps(_mm512_mul_ps(nss, mi), denom);
    _mm512_storeu_ps(p + i, _mm512_fmadd_ps(_mm512_loadu_ps(p + i), decay, upd));
  }
  if (i < n) adamw_range_portable(p + i, grad + i, m + i, v + i, n - i, s);
}
#endif

int tl_adamw_step(float *param, const float *grad, float *m, float *v, int64_t N, float lr,
                  float beta1, float beta2, float eps, float weight_decay, float grad_scale, int t) {
  TL_REQUIRE(N >= 0, "tl_adamw_step: N must be non-negative, got %lld", (long long)N);
  TL_REQUIRE(t >= 1, "tl_adamw_step: step t must be >= 1, got %d", t);
  TL_REQUIRE(isfinite(lr) && lr >= 0.0f, "tl_adamw_step: lr must be finite and >= 0, got %g", (double)lr);
  TL_REQUIRE(beta1 >= 0.0f && beta1 < 1.0f, "tl_adamw_step: beta1 must be in [0, 1), got %g", (double)beta1);
  TL_REQUIRE(beta2 >= 0.0f && beta2 < 1.0f, "tl_adamw_step: beta2 must be in [0, 1), got %g", (double)beta2);
  TL_REQUIRE(isfinite(eps) && eps >= 0.0f, "tl_adamw_step: eps must be finite and >= 0, got %g", (double)eps);
  TL_REQUIRE(isfinite(weight_decay) && weight_decay >= 0.0f, "tl_adamw_step: weight_decay must be finite and >= 0, got %g",
             (double)weight_decay);
  TL_REQUIRE(isfinite(grad_scale), "tl_adamw_step: grad_scale must be finite, got %g", (double)grad_scale);
  if (N == 0) return TL_OK;
  TL_REQUIRE_PTR(param);
  TL_REQUIRE_PTR(grad);
  TL_REQUIRE_PTR(m);
  TL_REQUIRE_PTR(v);

  double bc1 = 1.0 - pow((double)beta1, t), bc2 = 1.0 - pow((double)beta2, t);
  adamw_scalars s = {
      .decay = (float)(1.0 - (double)lr * (double)weight_decay),
      .b1 = beta1,
      .one_minus_b1 = (float)(1.0 - (double)beta1),
      .b2 = beta2,
      .one_minus_b2 = (float)(1.0 - (double)beta2),
      .neg_step_size = (float)(-(double)lr / bc1),
      .bc2_sqrt = (float)sqrt(bc2),
      .eps = eps,
      .gscale = grad_scale,
  };
  /* Chunks of 4096 floats (16 KB per stream) keep each thread on whole cache lines. */
  const int64_t CH = 4096;
  int64_t nchunks = (N + CH - 1) / CH;
#pragma omp parallel for schedule(static) if (nchunks > 4)
  for (int64_t c = 0; c < nchunks; c++) {
    int64_t i = c * CH, n = N - i < CH ? N - i : CH;
#ifdef __AVX512F__
    adamw_range_avx512(param + i, grad + i, m + i, v + i, n, &s);
#else
    adamw_range_portable(param + i, grad + i, m + i, v + i, n, &s);
#endif
  }
  return TL_OK;
}
