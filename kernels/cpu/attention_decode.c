/* Decode-time attention over a KV cache: one new query per sequence (the token being generated)
 * attends to the cached keys and values at positions 0..pos (causal by construction: nothing
 * later has been written yet).
 *
 * This is matrix-vector work, memory bound on the cache: each (b, query head) reads pos+1 key
 * rows and pos+1 value rows of HD floats once. One task per (b, query head), OpenMP static
 * schedule; query head h reads kv head h / (NH/NKV) straight from the cache (GQA by indexing, no
 * per-head copies). Scores go through a small stack block of BLK keys with an online softmax
 * (running max m, running sum l, rescaled accumulator), so no buffer grows with the context and
 * nothing is allocated. Each output is produced by one thread in a fixed key order, so results
 * are deterministic for any thread count.
 *
 * Layouts: q, out (B,NH,HD); k_cache, v_cache (B,maxT,NKV,HD): row t of kv head g in sequence b
 * is at ((b*maxT + t)*NKV + g)*HD. */
#include "common.h"

#include <math.h>

#ifdef __AVX512F__
#include <immintrin.h>
#include "vexp.h"
#endif

#define BLK 256     /* keys scored per block */
#define HD_MAX 1024 /* accumulator lives on the stack */

static inline float dotf(const float *restrict a, const float *restrict b, int n) {
#ifdef __AVX512F__
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = (__mmask16)(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1u);
    acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
#else
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < n; i++) s += a[i] * b[i];
  return s;
#endif
}

/* acc (n) = acc * alpha + sum_{j<nk} p[j] * v[j*ldv .. +n] */
static inline void scale_acc(float *restrict acc, float alpha, const float *restrict p,
                             const float *restrict v, int64_t ldv, int nk, int n) {
  for (int i = 0; i < n; i++) acc[i] *= alpha;
  for (int j = 0; j < nk; j++) {
    const float pj = p[j];
    const float *restrict vr = v + (int64_t)j * ldv;
#pragma omp simd
    for (int i = 0; i < n; i++) acc[i] += pj * vr[i];
  }
}

/* s[j] = exp(s[j] - m) in place; returns their sum (in a fixed order). */
static inline float exp_shift(float *s, float m, int n) {
  float sum = 0.0f;
  int j = 0;
#ifdef __AVX512F__
  __m512 vs = _mm512_setzero_ps();
  const __m512 vm = _mm512_set1_ps(m);
  for (; j + 16 <= n; j += 16) {
    __m512 e = tl_exp16(_mm512_sub_ps(_mm512_loadu_ps(s + j), vm));
    _mm512_storeu_ps(s + j, e);
    vs = _mm512_add_ps(vs, e);
  }
  sum = _mm512_reduce_add_ps(vs);
#endif
  for (; j < n; j++) {
    s[j] = expf(s[j] - m);
    sum += s[j];
  }
  return sum;
}

int tl_attention_decode(float *out, const float *q, const float *k_cache, const float *v_cache,
                        int B, int NH, int NKV, int HD, int maxT, int pos) {
  TL_REQUIRE(out && q && k_cache && v_cache, "tl_attention_decode: NULL pointer");
  TL_REQUIRE(B > 0 && NH > 0 && NKV > 0 && HD > 0 && maxT > 0,
             "tl_attention_decode: sizes must be positive (B=%d NH=%d NKV=%d HD=%d maxT=%d)", B, NH,
             NKV, HD, maxT);
  TL_REQUIRE(NH % NKV == 0, "tl_attention_decode: NH=%d must be a multiple of NKV=%d", NH, NKV);
  TL_REQUIRE(HD <= HD_MAX, "tl_attention_decode: head dim HD=%d exceeds %d", HD, HD_MAX);
  if (pos < 0 || pos >= maxT)
    return tl_fail(TL_ERR_OUT_OF_RANGE, "tl_attention_decode: pos=%d is outside the cache [0, %d)", pos,
                   maxT);
  const int G = NH / NKV;
  const int64_t ks = (int64_t)NKV * HD; /* row stride of the cache */
  const float scale = (float)(1.0 / sqrt((double)HD));
  const int tasks = B * NH;
  const int n = pos + 1;
  /* Below ~64K multiply-adds a parallel region costs more than it saves. */
  const int par = (double)tasks * n * HD >= 65536.0;
#pragma omp parallel for schedule(static) if (par)
  for (int task = 0; task < tasks; task++) {
    const int b = task / NH, h = task % NH, g = h / G;
    const float *restrict qh = q + ((int64_t)b * NH + h) * HD;
    const float *restrict kb = k_cache + (int64_t)b * maxT * ks + (int64_t)g * HD;
    const float *restrict vb = v_cache + (int64_t)b * maxT * ks + (int64_t)g * HD;
    float acc[HD_MAX];
    float s[BLK];
    for (int i = 0; i < HD; i++) acc[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int t0 = 0; t0 < n; t0 += BLK) {
      const int nk = n - t0 < BLK ? n - t0 : BLK;
      float bm = -INFINITY;
      for (int j = 0; j < nk; j++) {
        s[j] = dotf(qh, kb + (int64_t)(t0 + j) * ks, HD) * scale;
        bm = s[j] > bm ? s[j] : bm;
      }
      const float mn = bm > m ? bm : m;
      const float alpha = m == -INFINITY ? 0.0f : expf(m - mn);
      l = l * alpha + exp_shift(s, mn, nk);
      scale_acc(acc, alpha, s, vb + (int64_t)t0 * ks, ks, nk, HD);
      m = mn;
    }
    float *restrict o = out + ((int64_t)b * NH + h) * HD;
    const float inv = 1.0f / l;
    for (int i = 0; i < HD; i++) o[i] = acc[i] * inv;
  }
  return TL_OK;
}
