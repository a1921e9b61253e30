/* Token embedding: a row gather forward, a row scatter-add backward. */
#include "common.h"

#include <string.h>

/* Every id is checked before anything is written, so a bad batch leaves out/dwte untouched. */
static int check_tokens(const char *who, const int32_t *tokens, int N, int V) {
  for (int n = 0; n < N; n++)
    if (tokens[n] < 0 || tokens[n] >= V)
      return tl_fail(TL_ERR_OUT_OF_RANGE, "%s: token id %d at position %d is outside the vocabulary [0, %d)",
                     who, tokens[n], n, V);
  return TL_OK;
}

/* out (N,C), tokens (N), wte (V,C) */
int tl_embedding_forward(float *out, const int32_t *tokens, const float *wte, int N, int C, int V) {
  TL_REQUIRE(out != NULL && tokens != NULL && wte != NULL, "tl_embedding_forward: NULL pointer");
  TL_REQUIRE(N > 0 && C > 0 && V > 0, "tl_embedding_forward: sizes must be positive (N=%d C=%d V=%d)", N, C, V);
  int rc = check_tokens("tl_embedding_forward", tokens, N, V);
  if (rc) return rc;
#pragma omp parallel for schedule(static) if ((int64_t)N * C >= 32768)
  for (int n = 0; n < N; n++)
    memcpy(out + (int64_t)n * C, wte + (int64_t)tokens[n] * C, sizeof(float) * (size_t)C);
  return TL_OK;
}

/* dwte (V,C) += scatter of dout (N,C) by tokens (N).
 * Deterministic without atomics or sorting: each thread owns a contiguous slice of the C columns
 * and walks all N positions in order, so every dwte element receives its contributions in
 * position order whatever the thread count. Each thread reads only its slice of each dout row. */
int tl_embedding_backward(float *dwte, const float *dout, const int32_t *tokens, int N, int C, int V) {
  TL_REQUIRE(dwte != NULL && dout != NULL && tokens != NULL, "tl_embedding_backward: NULL pointer");
  TL_REQUIRE(N > 0 && C > 0 && V > 0, "tl_embedding_backward: sizes must be positive (N=%d C=%d V=%d)", N, C, V);
  int rc = check_tokens("tl_embedding_backward", tokens, N, V);
  if (rc) return rc;
#pragma omp parallel if ((int64_t)N * C >= 32768)
  {
    int nt = 1, id = 0;
#ifdef _OPENMP
    nt = omp_get_num_threads();
    id = omp_get_thread_num();
#endif
    /* Column slices in multiples of 16 floats (one cache line) so threads never share a line. */
    int chunks = (C + 15) / 16;
    int c0 = (int)((int64_t)chunks * id / nt) * 16, c1 = (int)((int64_t)chunks * (id + 1) / nt) * 16;
    if (c1 > C) c1 = C;
    if (c0 < c1)
      for (int n = 0; n < N; n++) {
        float *dst = dwte + (int64_t)tokens[n] * C;
        const float *src = dout + (int64_t)n * C;
#pragma omp simd
        for (int c = c0; c < c1; c++) dst[c] += src[c];
      }
  }
  return TL_OK;
}
