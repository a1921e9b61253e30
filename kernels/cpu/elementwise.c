/* Residual-stream elementwise ops: out = a + b, dst += src, x *= s. All (N), int64 counts.
 * Memory-bound: the loops are written so GCC vectorises them (AVX-512 under -march=native, SSE2 in
 * the portable build); OpenMP only above a size where the fork/join costs less than it saves.
 * Each element is computed independently, so results never depend on the thread count. */
#include "common.h"

/* Below this many elements one thread is faster than waking the team (~2-5 us). */
#define TL_EW_PAR_MIN 65536

int tl_add(float *out, const float *a, const float *b, int64_t N) {
  TL_REQUIRE(N >= 0, "tl_add: negative count %lld", (long long)N);
  if (N == 0) return TL_OK;
  TL_REQUIRE(out != NULL && a != NULL && b != NULL, "tl_add: NULL pointer");
  /* out may alias a or b: element i reads a[i], b[i] before writing out[i], so no restrict. */
#pragma omp parallel for simd schedule(static) if (N >= TL_EW_PAR_MIN)
  for (int64_t i = 0; i < N; i++) out[i] = a[i] + b[i];
  return TL_OK;
}

int tl_accumulate(float *dst, const float *src, int64_t N) {
  TL_REQUIRE(N >= 0, "tl_accumulate: negative count %lld", (long long)N);
  if (N == 0) return TL_OK;
  TL_REQUIRE(dst != NULL && src != NULL, "tl_accumulate: NULL pointer");
#pragma omp parallel for simd schedule(static) if (N >= TL_EW_PAR_MIN)
  for (int64_t i = 0; i < N; i++) dst[i] += src[i];
  return TL_OK;
}

int tl_scale(float *x, float s, int64_t N) {
  TL_REQUIRE(N >= 0, "tl_scale: negative count %lld", (long long)N);
  if (N == 0) return TL_OK;
  TL_REQUIRE_PTR(x);
#pragma omp parallel for simd schedule(static) if (N >= TL_EW_PAR_MIN)
  for (int64_t i = 0; i < N; i++) x[i] *= s;
  return TL_OK;
}
