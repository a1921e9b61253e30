/* Rotary position embedding, rotate-half form as in Hugging Face Llama:
 *   out[i]      = x[i]      * cos(t,i) - x[i+HD/2] * sin(t,i)
 *   out[i+HD/2] = x[i+HD/2] * cos(t,i) + x[i]      * sin(t,i)      for i < HD/2
 * with angle(t,i) = t * theta^(-2i/HD). The tables hold HD/2 columns because HF's
 * cat(freqs, freqs) repeats them. */
#include "common.h"

#include <math.h>
#include <stdlib.h>

/* cos, sin (T,HD/2).
 * Rounding follows HF's fp32 code path so the tables match PyTorch bit for bit or to 1 ulp:
 * inv_freq = 1 / theta^(arange(0,HD,2).float()/HD) is computed in fp32 (exponent rounded to
 * float, power rounded to float, reciprocal rounded to float), and freqs = t.float() * inv_freq
 * is an fp32 product. The angle's rounding matters at large t (2047 rad has a float ulp of
 * 1.2e-4), so we round exactly where PyTorch does; cos/sin themselves are evaluated in double
 * and rounded once. */
int tl_rope_tables(float *cos_, float *sin_, int T, int HD, float theta) {
  TL_REQUIRE_PTR(cos_);
  TL_REQUIRE_PTR(sin_);
  TL_REQUIRE_POS(T);
  TL_REQUIRE_POS(HD);
  TL_REQUIRE(HD % 2 == 0, "tl_rope_tables: head dim HD=%d must be even", HD);
  TL_REQUIRE(theta > 0.0f && isfinite(theta), "tl_rope_tables: theta must be positive and finite, got %g",
             (double)theta);
  const int H2 = HD / 2;
  float *inv_freq = malloc(sizeof(float) * (size_t)H2);
  if (!inv_freq) return tl_fail(TL_ERR_OUT_OF_MEMORY, "tl_rope_tables: out of memory (HD=%d)", HD);
  for (int i = 0; i < H2; i++) {
    float e = (float)(2 * i) / (float)HD;
    float p = (float)pow((double)theta, (double)e);
    inv_freq[i] = 1.0f / p;
  }
#pragma omp parallel for schedule(static)
  for (int t = 0; t < T; t++) {
    for (int i = 0; i < H2; i++) {
      float angle = (float)t * inv_freq[i];
      cos_[(int64_t)t * H2 + i] = (float)cos((double)angle);
      sin_[(int64_t)t * H2 + i] = (float)sin((double)angle);
    }
  }
  free(inv_freq);
  return TL_OK;
}

static int check(const char *who, const void *out, const void *inp, const float *cos_,
                 const float *sin_, int B, int T, int NH, int HD, int pos0, int maxT) {
  TL_REQUIRE(out && inp && cos_ && sin_, "%s: NULL pointer", who);
  TL_REQUIRE(B > 0 && T > 0 && NH > 0 && HD > 0,
             "%s: sizes must be positive (B=%d T=%d NH=%d HD=%d)", who, B, T, NH, HD);
  TL_REQUIRE(HD % 2 == 0, "%s: head dim HD=%d must be even for rotate-half RoPE", who, HD);
  TL_REQUIRE(pos0 >= 0, "%s: pos0=%d must be >= 0", who, pos0);
  TL_REQUIRE(maxT > 0 && (int64_t)pos0 + T <= (int64_t)maxT,
             "%s: positions [%d, %lld) exceed the rope tables' %d rows (maxT)", who, pos0,
             (long long)pos0 + T, maxT);
  return TL_OK;
}

/* out (B,T,NH,HD), inp (B,T,NH,HD); out may be inp itself (exactly, not shifted) because each
 * pair (i, i+HD/2) is read before it is written. */
int tl_rope_forward(float *out, const float *inp, const float *cos_, const float *sin_, int B,
                    int T, int NH, int HD, int pos0, int maxT) {
  int rc = check("tl_rope_forward", out, inp, cos_, sin_, B, T, NH, HD, pos0, maxT);
  if (rc) return rc;
  const int H2 = HD / 2;
  /* A decode step rotates one row per sequence (NH*HD floats): waking the thread pool for it cost
   * more than the rotation (and, on a busy machine, a scheduler tick). Each element is computed
   * independently, so the result does not depend on the thread count either way. */
#pragma omp parallel for collapse(2) schedule(static) if ((int64_t)B * T * NH * HD >= 16384)
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      const float *c = cos_ + (int64_t)(pos0 + t) * H2, *s = sin_ + (int64_t)(pos0 + t) * H2;
      for (int h = 0; h < NH; h++) {
        int64_t off = (((int64_t)b * T + t) * NH + h) * HD;
        const float *x = inp + off;
        float *o = out + off;
        /* In place (o == x) each lane reads its pair before writing it, so no iteration depends
         * on another; without ivdep gcc's alias check sends the in-place call down a scalar loop. */
#pragma GCC ivdep
        for (int i = 0; i < H2; i++) {
          float x1 = x[i], x2 = x[i + H2];
          o[i] = x1 * c[i] - x2 * s[i];
          o[i + H2] = x2 * c[i] + x1 * s[i];
        }
      }
    }
  return TL_OK;
}

/* dinp (B,T,NH,HD) += R^T dout. R is a rotation per pair, so R^T rotates by -angle:
 *   dx1 = d1 cos + d2 sin,  dx2 = d2 cos - d1 sin. */
int tl_rope_backward(float *dinp, const float *dout, const float *cos_, const float *sin_, int B,
                     int T, int NH, int HD, int pos0, int maxT) {
  int rc = check("tl_rope_backward", dinp, dout, cos_, sin_, B, T, NH, HD, pos0, maxT);
  if (rc) return rc;
  TL_REQUIRE(dinp != dout, "tl_rope_backward: dinp must not alias dout (it accumulates)");
  const int H2 = HD / 2;
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      const float *c = cos_ + (int64_t)(pos0 + t) * H2, *s = sin_ + (int64_t)(pos0 + t) * H2;
      for (int h = 0; h < NH; h++) {
        int64_t off = (((int64_t)b * T + t) * NH + h) * HD;
        const float *d = dout + off;
        float *dx = dinp + off;
#pragma GCC ivdep /* dinp never aliases dout (checked above) */
        for (int i = 0; i < H2; i++) {
          float d1 = d[i], d2 = d[i + H2];
          dx[i] += d1 * c[i] + d2 * s[i];
          dx[i + H2] += d2 * c[i] - d1 * s[i];
        }
      }
    }
  return TL_OK;
}
