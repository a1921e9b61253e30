/* Softmax cross-entropy over V classes fused with its backward (the LM head's loss).
 * One row at a time: max, then exp(x - max) written straight into dlogits while summing (so exp is
 * evaluated once per logit), then one scaling pass. dlogits may alias logits: the target logit is
 * read before the row is overwritten. Rows are independent and each row's reductions run in a
 * fixed lane order, so results are bit-identical for any thread count. */
#include "common.h"
#include "vexp.h"

#include <math.h>
#include <string.h>

static float row_max(const float *x, int V) {
#ifdef __AVX512F__
  __m512 m = _mm512_set1_ps(-INFINITY);
  int c = 0;
  for (; c + 16 <= V; c += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + c));
  if (c < V) {
    __mmask16 k = (__mmask16)((1u << (V - c)) - 1u);
    m = _mm512_max_ps(m, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, x + c));
  }
  return _mm512_reduce_max_ps(m);
#else
  float m = -INFINITY;
#pragma omp simd reduction(max : m)
  for (int c = 0; c < V; c++) m = x[c] > m ? x[c] : m;
  return m;
#endif
}

/* sum_c exp(x[c] - mx); when e != NULL also stores each exp in e (e may alias x). */
static float row_expsum(float *e, const float *x, float mx, int V) {
#ifdef __AVX512F__
  __m512 vm = _mm512_set1_ps(mx), s = _mm512_setzero_ps();
  int c = 0;
  for (; c + 16 <= V; c += 16) {
    __m512 v = tl_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + c), vm));
    if (e) _mm512_storeu_ps(e + c, v);
    s = _mm512_add_ps(s, v);
  }
  if (c < V) {
    __mmask16 k = (__mmask16)((1u << (V - c)) - 1u);
    __m512 v = tl_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + c), vm));
    v = _mm512_maskz_mov_ps(k, v);
    if (e) _mm512_mask_storeu_ps(e + c, k, v);
    s = _mm512_add_ps(s, v);
  }
  return _mm512_reduce_add_ps(s);
#else
  float s = 0.0f;
  for (int c = 0; c < V; c++) {
    float v = expf(x[c] - mx);
    if (e) e[c] = v;
    s += v;
  }
  return s;
#endif
}

static void row_scale(float *e, float k, int V) {
#pragma omp simd
  for (int c = 0; c < V; c++) e[c] *= k;
}

/* losses (N), dlogits (N,V) nullable (may alias logits), logits (N,V), targets (N). */
int tl_crossentropy_forward_backward(float *losses, float *dlogits, const float *logits,
                                     const int32_t *targets, int N, int V, int ignore_index,
                                     float grad_scale) {
  TL_REQUIRE(losses != NULL && logits != NULL && targets != NULL, "tl_crossentropy_forward_backward: NULL pointer");
  TL_REQUIRE(N > 0 && V > 0, "tl_crossentropy_forward_backward: sizes must be positive (N=%d V=%d)", N, V);
  /* Validate every target before writing anything, so a bad batch changes nothing. */
  for (int n = 0; n < N; n++) {
    int t = targets[n];
    if (t != ignore_index && (t < 0 || t >= V))
      return tl_fail(TL_ERR_OUT_OF_RANGE,
                     "tl_crossentropy_forward_backward: target %d at row %d is outside [0, %d) and is not the ignore index %d",
                     t, n, V, ignore_index);
  }
#pragma omp parallel for schedule(static) if ((int64_t)N * V >= 32768)
  for (int n = 0; n < N; n++) {
    const float *x = logits + (int64_t)n * V;
    float *d = dlogits ? dlogits + (int64_t)n * V : NULL;
    int t = targets[n];
    if (t == ignore_index) {
      losses[n] = 0.0f;
      if (d) memset(d, 0, sizeof(float) * (size_t)V);
      continue;
    }
    float xt = x[t]; /* before d (maybe == x) is overwritten */
    float mx = row_max(x, V);
    float sum = row_expsum(d, x, mx, V);
    float lse = mx + logf(sum);
    losses[n] = lse - xt;
    if (d) {
      row_scale(d, grad_scale / sum, V);
      d[t] -= grad_scale;
    }
  }
  return TL_OK;
}
