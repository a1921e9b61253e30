/* SwiGLU's elementwise half (Shazeer 2020), fused: out = silu(gate) * up, silu(g) = g * sigmoid(g).
 * The two Linear layers around it are matmuls. Elementwise, so thread count never changes a bit. */
#include "common.h"
#include "vexp.h"

#include <math.h>

#define TL_SWIGLU_PAR_MIN 16384

static inline float sigmoidf(float g) { return 1.0f / (1.0f + expf(-g)); }

/* This thread's contiguous range of whole 16-float blocks (the last range takes the tail), so
 * which elements take the vector path never depends on the thread count. */
static inline void thread_range(int64_t N, int64_t *lo, int64_t *hi) {
  int nt = 1, id = 0;
#ifdef _OPENMP
  nt = omp_get_num_threads();
  id = omp_get_thread_num();
#endif
  int64_t blocks = (N + 15) / 16;
  *lo = blocks * id / nt * 16;
  *hi = blocks * (id + 1) / nt * 16;
  if (*hi > N) *hi = N;
}

/* out, gate, up (N). out may alias gate or up. */
int tl_swiglu_forward(float *out, const float *gate, const float *up, int64_t N) {
  TL_REQUIRE(N >= 0, "tl_swiglu_forward: negative count %lld", (long long)N);
  if (N == 0) return TL_OK;
  TL_REQUIRE(out != NULL && gate != NULL && up != NULL, "tl_swiglu_forward: NULL pointer");
#pragma omp parallel if (N >= TL_SWIGLU_PAR_MIN)
  {
    int64_t lo, hi;
    thread_range(N, &lo, &hi);
    int64_t i = lo;
#ifdef __AVX512F__
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; i + 16 <= hi; i += 16) {
      __m512 g = _mm512_loadu_ps(gate + i), u = _mm512_loadu_ps(up + i);
      __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, tl_exp16(_mm512_sub_ps(_mm512_setzero_ps(), g))));
      _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(g, s), u));
    }
#endif
    for (; i < hi; i++) {
      float g = gate[i];
      out[i] = g * sigmoidf(g) * up[i];
    }
  }
  return TL_OK;
}

/* dgate, dup (N) accumulate (either may be NULL); dout, gate, up (N).
 *   dup   += dout * silu(gate)
 *   dgate += dout * up * s * (1 + gate * (1 - s)),  s = sigmoid(gate) */
int tl_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                       int64_t N) {
  TL_REQUIRE(N >= 0, "tl_swiglu_backward: negative count %lld", (long long)N);
  if (N == 0) return TL_OK;
  TL_REQUIRE(dout != NULL && gate != NULL && up != NULL, "tl_swiglu_backward: NULL pointer");
  if (!dgate && !dup) return TL_OK;
#pragma omp parallel if (N >= TL_SWIGLU_PAR_MIN)
  {
    int64_t lo, hi;
    thread_range(N, &lo, &hi);
    int64_t i = lo;
#ifdef __AVX512F__
    if (dgate && dup) {
      const __m512 one = _mm512_set1_ps(1.0f);
      for (; i + 16 <= hi; i += 16) {
        __m512 g = _mm512_loadu_ps(gate + i), u = _mm512_loadu_ps(up + i), d = _mm512_loadu_ps(dout + i);
        __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, tl_exp16(_mm512_sub_ps(_mm512_setzero_ps(), g))));
        __m512 silu = _mm512_mul_ps(g, s);
        __m512 dsilu = _mm512_mul_ps(s, _mm512_fmadd_ps(g, _mm512_sub_ps(one, s), one));
        _mm512_storeu_ps(dup + i, _mm512_fmadd_ps(d, silu, _mm512_loadu_ps(dup + i)));
        _mm512_storeu_ps(dgate + i, _mm512_fmadd_ps(_mm512_mul_ps(d, u), dsilu, _mm512_loadu_ps(dgate + i)));
      }
    }
#endif
    for (; i < hi; i++) {
      float g = gate[i], s = sigmoidf(g), d = dout[i];
      if (dup) dup[i] += d * (g * s);
      if (dgate) dgate[i] += (d * up[i]) * (s * (1.0f + g * (1.0f - s)));
    }
  }
  return TL_OK;
}
