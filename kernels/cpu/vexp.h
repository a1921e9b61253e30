/* Vectorised expf for the softmax / SiLU kernels (crossentropy.c, swiglu.c); not part of the ABI.
 *
 * Why our own: without -ffast-math GCC will not vectorise calls to libm's expf, and the
 * cross-entropy of a 32000-word vocabulary spends most of its time in exp. This is the classic
 * Cephes scheme: x = n ln2 + r with |r| <= ln2/2, exp(r) by a degree-6 polynomial, 2^n applied
 * with vscalefps (which also handles underflow to denormals/0). Max error ~2 ulp over the range
 * that matters here; x below -104 gives 0, above 88.7 gives +inf as expf does, NaN gives NaN.
 */
#ifndef TL_CPU_VEXP_H
#define TL_CPU_VEXP_H

#include <math.h>

#ifdef __AVX512F__
#include <immintrin.h>

static inline __m512 tl_exp16(__m512 x) {
  const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
  const __m512 ln2_hi = _mm512_set1_ps(0.693359375f);
  const __m512 ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
  /* Clamp with x as the SECOND operand: max/min return it when it is NaN, so NaN propagates (a
   * diverged model must show a NaN loss, not a silently finite one). */
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
  x = _mm512_min_ps(_mm512_set1_ps(88.8f), x);
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
  r = _mm512_fnmadd_ps(n, ln2_lo, r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  __m512 r2 = _mm512_mul_ps(r, r);
  __m512 y = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(y, n);
}
#endif

#endif
