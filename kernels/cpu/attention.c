/* Causal grouped-query attention, FlashAttention-2 style on the CPU.
 *
 * Forward: for each (b, h, block of BQ queries) keep a running row max m, row sum l and an
 * unnormalised output accumulator while walking the key blocks left of the diagonal; no (T,T)
 * matrix exists. lse = m + log(l) is saved so the backward recomputes P = exp(S - lse).
 *
 * Backward: D = rowsum(dO * O) first; then per (query block i, key block j) tile
 *   S = scale Q_i K_j^T, P = exp(S - lse_i), dP = dO_i V_j^T, dS = P * (dP - D_i),
 *   dV_j += P^T dO_i, dK_j += scale dS^T Q_i, dQ_i += scale dS K_j.
 * Every gradient row has exactly one writer, so results are deterministic without atomics.
 * Two schedules, picked from the thread count only (so a fixed thread count is bit-for-bit
 * repeatable):
 *   fused    one task per (b, kv head) walks all its key blocks, so it alone owns the dK/dV of
 *            its kv head AND the dQ of its NH/NKV query heads: 5 tile products per tile pair.
 *            Used when B*NKV tasks keep the threads busy.
 *   split    pass 1 over (b, kv head, key block) writes dK, dV; pass 2 over (b, head, query
 *            block) recomputes S and dP and writes dQ: 7 tile products, but B*NH*T/BQ tasks.
 *
 * Layouts: q, out, dq (B,T,NH,HD); k, v, dk, dv (B,T,NKV,HD); lse (B,NH,T). Head h of row t is
 * at ((b*T + t)*NH + h)*HD, so a head's rows are strided by NH*HD; query head h reads kv head
 * h / (NH/NKV) in place (no K/V copies per query head). Scores are vectorised over keys, which
 * needs K^T: each (b, kv head) is transposed once per call into a (HD, Tp) panel, Tp = T rounded
 * up to BK with zero columns, rather than once per tile pair. Tiles that are read many times
 * (V and K rows) are first copied out of the strided tensors into contiguous buffers: with
 * NKV*HD*4 a power of two, 64 strided rows would all fall into the same few L1 sets.
 */
#include "common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

/* Tile sizes: BK keys per score row (vectorised), BQ query rows per task. */
#define BQ 64
#define BK 64

static inline int imin(int a, int b) { return a < b ? a : b; }

typedef struct {
  int B, T, NH, NKV, HD, G; /* G = NH/NKV query heads per kv head */
  int NQB, NKB, Tp;         /* query blocks, key blocks, T padded to BK */
  int64_t ldp;              /* row stride of the K^T/V^T panels: Tp plus one cache line, so
                               their HD rows never share an L1 set when Tp is a power of two */
  int64_t qs, ks;           /* row strides of q-like and k-like tensors: NH*HD, NKV*HD */
  float scale;
} dims_t;

static dims_t make_dims(int B, int T, int NH, int NKV, int HD) {
  dims_t d;
  d.B = B, d.T = T, d.NH = NH, d.NKV = NKV, d.HD = HD, d.G = NH / NKV;
  d.NQB = (T + BQ - 1) / BQ, d.NKB = (T + BK - 1) / BK, d.Tp = d.NKB * BK, d.ldp = d.Tp + 16;
  d.qs = (int64_t)NH * HD, d.ks = (int64_t)NKV * HD;
  d.scale = (float)(1.0 / sqrt((double)HD));
  return d;
}

/* ------------------------------------------------------------------ tile products ---- */

/* S (n,BK) = A (n,HD; row stride lda) @ Bt (HD,BK; row stride ldb). */
static void mm_abt(float *restrict S, const float *restrict A, int64_t lda,
                   const float *restrict Bt, int64_t ldb, int n, int HD);
/* C (nr,HD; row stride ldc) += alpha * sum_{t<nt} P(r,t) X (nt,HD; row stride ldx)[t],
 * with P(r,t) = P[r*prs + t*pts]: (prs,pts) = (BK,1) is P @ X, (1,BK) is P^T @ X. */
static void mm_acc(float *restrict C, int64_t ldc, float alpha, const float *restrict P,
                   int64_t prs, int64_t pts, const float *restrict X, int64_t ldx, int nr, int nt,
                   int HD);

#ifdef __AVX512F__

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE void abt_rows(int R, float *restrict S, const float *restrict A, int64_t lda,
                            const float *restrict Bt, int64_t ldb, int HD) {
  __m512 c[4][4];
  for (int r = 0; r < R; r++)
    for (int j = 0; j < 4; j++) c[r][j] = _mm512_setzero_ps();
  for (int d = 0; d < HD; d++) {
    const float *b = Bt + (int64_t)d * ldb;
    __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), b2 = _mm512_loadu_ps(b + 32),
           b3 = _mm512_loadu_ps(b + 48);
    for (int r = 0; r < R; r++) {
      __m512 a = _mm512_set1_ps(A[(int64_t)r * lda + d]);
      c[r][0] = _mm512_fmadd_ps(a, b0, c[r][0]);
      c[r][1] = _mm512_fmadd_ps(a, b1, c[r][1]);
      c[r][2] = _mm512_fmadd_ps(a, b2, c[r][2]);
      c[r][3] = _mm512_fmadd_ps(a, b3, c[r][3]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int j = 0; j < 4; j++) _mm512_storeu_ps(S + (int64_t)r * BK + 16 * j, c[r][j]);
}

static void mm_abt(float *restrict S, const float *restrict A, int64_t lda,
                   const float *restrict Bt, int64_t ldb, int n, int HD) {
  _Static_assert(BK == 64, "abt_rows assumes 4 vectors per score row");
  int i = 0;
  for (; i + 4 <= n; i += 4) abt_rows(4, S + (int64_t)i * BK, A + (int64_t)i * lda, lda, Bt, ldb, HD);
  for (; i < n; i++) abt_rows(1, S + (int64_t)i * BK, A + (int64_t)i * lda, lda, Bt, ldb, HD);
}

/* R rows x NC 16-wide column chunks of C starting at column 0 of the given pointers; the last
 * chunk is loaded/stored under `last` so any HD works without a scalar tail. */
ALWAYS_INLINE void acc_block(int R, int NC, float *restrict C, int64_t ldc, float alpha,
                             const float *restrict P, int64_t prs, int64_t pts,
                             const float *restrict X, int64_t ldx, int nt, __mmask16 last) {
  __m512 c[4][4];
  for (int r = 0; r < R; r++)
    for (int j = 0; j < NC; j++) c[r][j] = _mm512_setzero_ps();
  for (int t = 0; t < nt; t++) {
    const float *x = X + (int64_t)t * ldx;
    __m512 xv[4];
    for (int j = 0; j < NC; j++)
      xv[j] = j == NC - 1 ? _mm512_maskz_loadu_ps(last, x + 16 * j) : _mm512_loadu_ps(x + 16 * j);
    for (int r = 0; r < R; r++) {
      __m512 p = _mm512_set1_ps(P[(int64_t)r * prs + (int64_t)t * pts]);
      for (int j = 0; j < NC; j++) c[r][j] = _mm512_fmadd_ps(p, xv[j], c[r][j]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha);
  for (int r = 0; r < R; r++)
    for (int j = 0; j < NC; j++) {
      float *cp = C + (int64_t)r * ldc + 16 * j;
      __mmask16 m = j == NC - 1 ? last : (__mmask16)0xFFFF;
      _mm512_mask_storeu_ps(cp, m, _mm512_fmadd_ps(c[r][j], va, _mm512_maskz_loadu_ps(m, cp)));
    }
}

#define ACC_CASE(R, NC)                                                                      \
  case (R)*8 + (NC):                                                                         \
    acc_block(R, NC, C + (int64_t)r0 * ldc + d0, ldc, alpha, P + (int64_t)r0 * prs, prs, pts, \
              X + d0, ldx, nt, last);                                                        \
    break;

static void mm_acc(float *restrict C, int64_t ldc, float alpha, const float *restrict P,
                   int64_t prs, int64_t pts, const float *restrict X, int64_t ldx, int nr, int nt,
                   int HD) {
  for (int d0 = 0; d0 < HD; d0 += 64) {
    const int w = imin(64, HD - d0), nc = (w + 15) / 16;
    const __mmask16 last = (w % 16) ? (__mmask16)((1u << (w % 16)) - 1) : (__mmask16)0xFFFF;
    for (int r0 = 0; r0 < nr; r0 += 4) {
      const int R = imin(4, nr - r0);
      switch (R * 8 + nc) {
        ACC_CASE(1, 1) ACC_CASE(1, 2) ACC_CASE(1, 3) ACC_CASE(1, 4)
        ACC_CASE(2, 1) ACC_CASE(2, 2) ACC_CASE(2, 3) ACC_CASE(2, 4)
        ACC_CASE(3, 1) ACC_CASE(3, 2) ACC_CASE(3, 3) ACC_CASE(3, 4)
        ACC_CASE(4, 1) ACC_CASE(4, 2) ACC_CASE(4, 3) ACC_CASE(4, 4)
      }
    }
  }
}

/* exp(x) for x <= 0 (softmax arguments), about 1 ulp: x = n ln2 + r, |r| <= ln2/2, degree-7
 * Taylor polynomial for e^r, then scale by 2^n with vscalefps. Inputs below -87 give ~1e-38. */
ALWAYS_INLINE __m512 exp512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

static inline __mmask16 lanes_below(int n) { /* lanes [0, n) of a 16-lane vector, n may be <0 or >16 */
  return n <= 0 ? 0 : n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
}

/* Online-softmax step for one score row of a tile: s[0..jn) are visible, the rest of the BK
 * columns are zeroed. Returns the row sum of p = exp(s - mnew) and overwrites s with p. */
static inline float row_exp(float *s, int jn, float mnew) {
  __m512 sum = _mm512_setzero_ps(), mv = _mm512_set1_ps(mnew);
  for (int j = 0; j < BK; j += 16) {
    __mmask16 k = lanes_below(jn - j);
    __m512 p = _mm512_maskz_mov_ps(k, exp512(_mm512_sub_ps(_mm512_loadu_ps(s + j), mv)));
    _mm512_storeu_ps(s + j, p);
    sum = _mm512_add_ps(sum, p);
  }
  return _mm512_reduce_add_ps(sum);
}

static inline float row_max(const float *s, int jn) {
  __m512 m = _mm512_set1_ps(-INFINITY);
  for (int j = 0; j < jn; j += 16) m = _mm512_mask_max_ps(m, lanes_below(jn - j), m, _mm512_loadu_ps(s + j));
  return _mm512_reduce_max_ps(m);
}

/* s <- P = exp(s - L) on visible columns (0 elsewhere); dp <- dS = P * (dp - D). */
static inline void row_probs_dscores(float *s, float *dp, int jn, float L, float D) {
  const __m512 lv = _mm512_set1_ps(L), dv = _mm512_set1_ps(D);
  for (int j = 0; j < BK; j += 16) {
    __mmask16 k = lanes_below(jn - j);
    __m512 p = _mm512_maskz_mov_ps(k, exp512(_mm512_sub_ps(_mm512_loadu_ps(s + j), lv)));
    _mm512_storeu_ps(s + j, p);
    _mm512_storeu_ps(dp + j, _mm512_mul_ps(p, _mm512_sub_ps(_mm512_loadu_ps(dp + j), dv)));
  }
}

/* r[i] = row i of a 16x16 block -> r[d] = column d (unpack, then 128-bit lane shuffles). */
ALWAYS_INLINE void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 4; j++) {
      t[8 * i + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + j + 4], 0x88);
      t[8 * i + j + 4] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + j + 4], 0xdd);
    }
  for (int j = 0; j < 8; j++) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
  }
}

/* Bt (HD, BK; row stride ldb) = rows [0,nk) of X (row stride ldx) transposed, columns nk..BK-1
 * zero. Whole 64-byte rows are read (a column gather would touch 16 lines per element column,
 * which thrash one L1 set when ldx is a power of two). */
static void transpose_tile(float *restrict Bt, int64_t ldb, const float *restrict X, int64_t ldx,
                           int nk, int HD) {
  for (int d0 = 0; d0 < HD; d0 += 16) {
    const int dw = imin(16, HD - d0);
    const __mmask16 dm = lanes_below(dw);
    for (int j0 = 0; j0 < BK; j0 += 16) {
      const int jw = nk - j0;
      __m512 r[16];
      for (int j = 0; j < 16; j++)
        r[j] = j < jw ? _mm512_maskz_loadu_ps(dm, X + (int64_t)(j0 + j) * ldx + d0) : _mm512_setzero_ps();
      transpose16(r);
      for (int d = 0; d < dw; d++) _mm512_storeu_ps(Bt + (int64_t)(d0 + d) * ldb + j0, r[d]);
    }
  }
}

#else /* portable C */

static void mm_abt(float *restrict S, const float *restrict A, int64_t lda,
                   const float *restrict Bt, int64_t ldb, int n, int HD) {
  for (int i = 0; i < n; i++) {
    float *c = S + (int64_t)i * BK;
    const float *a = A + (int64_t)i * lda;
    for (int j = 0; j < BK; j++) c[j] = 0.0f;
    for (int d = 0; d < HD; d++) {
      const float ad = a[d];
      const float *bt = Bt + (int64_t)d * ldb;
      for (int j = 0; j < BK; j++) c[j] += ad * bt[j];
    }
  }
}

static void mm_acc(float *restrict C, int64_t ldc, float alpha, const float *restrict P,
                   int64_t prs, int64_t pts, const float *restrict X, int64_t ldx, int nr, int nt,
                   int HD) {
  float tmp[256];
  for (int r = 0; r < nr; r++) {
    float *c = C + (int64_t)r * ldc;
    for (int d0 = 0; d0 < HD; d0 += 256) {
      const int w = imin(256, HD - d0);
      for (int d = 0; d < w; d++) tmp[d] = 0.0f;
      for (int t = 0; t < nt; t++) {
        const float p = P[(int64_t)r * prs + (int64_t)t * pts];
        const float *x = X + (int64_t)t * ldx + d0;
        for (int d = 0; d < w; d++) tmp[d] += p * x[d];
      }
      for (int d = 0; d < w; d++) c[d0 + d] += alpha * tmp[d];
    }
  }
}

static inline float row_exp(float *s, int jn, float mnew) {
  float sum = 0.0f;
  int j = 0;
  for (; j < jn; j++) {
    const float p = expf(s[j] - mnew);
    s[j] = p;
    sum += p;
  }
  for (; j < BK; j++) s[j] = 0.0f;
  return sum;
}

static inline float row_max(const float *s, int jn) {
  float m = -INFINITY;
  for (int j = 0; j < jn; j++) m = s[j] > m ? s[j] : m;
  return m;
}

static inline void row_probs_dscores(float *s, float *dp, int jn, float L, float D) {
  int j = 0;
  for (; j < jn; j++) {
    const float p = expf(s[j] - L);
    s[j] = p;
    dp[j] = p * (dp[j] - D);
  }
  for (; j < BK; j++) s[j] = dp[j] = 0.0f;
}

/* Bt (HD, BK; row stride ldb) = rows [0,nk) of X (row stride ldx) transposed, columns nk..BK-1
 * zero. Goes through a 16x16 staging block so both sides are touched row by row. */
static void transpose_tile(float *restrict Bt, int64_t ldb, const float *restrict X, int64_t ldx,
                           int nk, int HD) {
  for (int d0 = 0; d0 < HD; d0 += 16) {
    const int dw = imin(16, HD - d0);
    for (int j0 = 0; j0 < BK; j0 += 16) {
      float blk[16][16];
      const int jw = imin(16, nk - j0);
      for (int j = 0; j < 16; j++)
        for (int d = 0; d < 16; d++) blk[d][j] = (j < jw && d < dw) ? X[(int64_t)(j0 + j) * ldx + d0 + d] : 0.0f;
      for (int d = 0; d < dw; d++) memcpy(Bt + (int64_t)(d0 + d) * ldb + j0, blk[d], sizeof blk[d]);
    }
  }
}

#endif


/* ------------------------------------------------------------------------ checks ---- */

static int check(const char *who, int B, int T, int NH, int NKV, int HD) {
  TL_REQUIRE(B > 0 && T > 0 && NH > 0 && NKV > 0 && HD > 0,
             "%s: sizes must be positive (B=%d T=%d NH=%d NKV=%d HD=%d)", who, B, T, NH, NKV, HD);
  TL_REQUIRE(NH % NKV == 0, "%s: NH=%d must be a multiple of NKV=%d (grouped-query attention)", who,
             NH, NKV);
  TL_REQUIRE(HD <= 4096, "%s: head dim HD=%d is unreasonably large (max 4096)", who, HD);
  TL_REQUIRE(T <= (1 << 30) - BK, "%s: T=%d is too long", who, T);
  return TL_OK;
}

static float *alloc_floats(int64_t n) {
  return aligned_alloc(64, (size_t)((n * (int64_t)sizeof(float) + 63) / 64 * 64));
}

/* Call-wide scratch (K^T/V^T panels, D), kept per calling thread and grown as needed: these are
 * megabytes, and a fresh allocation per call costs a page fault and a page clear per 4 KB, which
 * at short T is a tenth of the forward. Thread-local so concurrent callers never share it. */
static _Thread_local float *scratch_ptr = NULL;
static _Thread_local int64_t scratch_len = 0;

static float *call_scratch(int64_t n) {
  if (n <= scratch_len) return scratch_ptr;
  free(scratch_ptr);
  scratch_len = 0;
  scratch_ptr = alloc_floats(n);
  if (scratch_ptr) scratch_len = n;
  return scratch_ptr;
}

/* Copies rows [0,n) of X (row stride ldx) into the contiguous (n,HD) tile Y. */
static void copy_rows(float *restrict Y, const float *restrict X, int64_t ldx, int n, int HD) {
  for (int j = 0; j < n; j++) memcpy(Y + (int64_t)j * HD, X + (int64_t)j * ldx, sizeof(float) * (size_t)HD);
}

/* Panels KT (B, NKV, HD, ldp): the transpose of each (b, kv head) of k, zero-padded to Tp keys.
 * Called inside a parallel region; ends with the implicit barrier of its omp for. */
static void transpose_panels(float *KT, const float *k, const dims_t *D) {
#pragma omp for schedule(static)
  for (int64_t task = 0; task < (int64_t)D->B * D->NKV * D->NKB; task++) {
    const int kb = (int)(task % D->NKB);
    const int64_t bk = task / D->NKB; /* b * NKV + kvh */
    const int b = (int)(bk / D->NKV), kvh = (int)(bk % D->NKV);
    const int k0 = kb * BK;
    transpose_tile(KT + bk * D->HD * D->ldp + k0, D->ldp,
                   k + (int64_t)b * D->T * D->ks + (int64_t)kvh * D->HD + (int64_t)k0 * D->ks, D->ks,
                   imin(BK, D->T - k0), D->HD);
  }
}

/* ----------------------------------------------------------------------- forward ---- */

static void fwd_task(float *out, float *lse, const float *q, const float *KT, const float *v,
                     int b, int h, int qb, const dims_t *D, float *ws) {
  const int HD = D->HD, T = D->T, kvh = h / D->G;
  const int q0 = qb * BQ, nq = imin(BQ, T - q0);
  const float *qbase = q + (int64_t)b * T * D->qs + (int64_t)h * HD;
  const float *kt = KT + ((int64_t)b * D->NKV + kvh) * HD * D->ldp;
  const float *vbase = v + (int64_t)b * T * D->ks + (int64_t)kvh * HD;
  float *Qs = ws, *S = Qs + (int64_t)BQ * HD, *acc = S + BQ * BK;
  float *m = acc + (int64_t)BQ * HD, *l = m + BQ, *Vl = l + BQ;

  for (int i = 0; i < nq; i++) {
    const float *qr = qbase + (int64_t)(q0 + i) * D->qs;
    for (int d = 0; d < HD; d++) Qs[(int64_t)i * HD + d] = qr[d] * D->scale;
    m[i] = -INFINITY;
    l[i] = 0.0f;
  }
  memset(acc, 0, sizeof(float) * (size_t)nq * HD);

  const int kend = q0 + nq; /* keys [0, kend) are visible to some row of this block */
  for (int k0 = 0; k0 < kend; k0 += BK) {
    const int nk = imin(BK, kend - k0);
    mm_abt(S, Qs, HD, kt + k0, D->ldp, nq, HD);
    for (int i = 0; i < nq; i++) {
      float *s = S + (int64_t)i * BK;
      const int jn = imin(nk, q0 + i - k0 + 1); /* causal: key k0+j <= query q0+i */
      if (jn <= 0) {
        memset(s, 0, sizeof(float) * BK);
        continue;
      }
      const float mx = row_max(s, jn);
      const float mnew = mx > m[i] ? mx : m[i];
      const float alpha = expf(m[i] - mnew); /* 0 on the first block (m = -inf) */
      l[i] = l[i] * alpha + row_exp(s, jn, mnew);
      m[i] = mnew;
      if (alpha != 1.0f) {
        float *o = acc + (int64_t)i * HD;
        for (int d = 0; d < HD; d++) o[d] *= alpha;
      }
    }
    copy_rows(Vl, vbase + (int64_t)k0 * D->ks, D->ks, nk, HD);
    mm_acc(acc, HD, 1.0f, S, BK, 1, Vl, HD, nq, nk, HD);
  }

  float *obase = out + (int64_t)b * T * D->qs + (int64_t)h * HD;
  float *lrow = lse + ((int64_t)b * D->NH + h) * T + q0;
  for (int i = 0; i < nq; i++) {
    const float inv = 1.0f / l[i];
    float *o = obase + (int64_t)(q0 + i) * D->qs;
    const float *a = acc + (int64_t)i * HD;
    for (int d = 0; d < HD; d++) o[d] = a[d] * inv;
    lrow[i] = m[i] + logf(l[i]);
  }
}

int tl_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                         int B, int T, int NH, int NKV, int HD) {
  static const char *who = "tl_attention_forward";
  TL_REQUIRE(out && lse && q && k && v, "%s: NULL pointer", who);
  int rc = check(who, B, T, NH, NKV, HD);
  if (rc) return rc;
  const dims_t D = make_dims(B, T, NH, NKV, HD);
  float *KT = call_scratch((int64_t)B * NKV * HD * D.ldp);
  if (!KT) return tl_fail(TL_ERR_OUT_OF_MEMORY, "%s: could not allocate the K^T panels", who);
  const int64_t ntasks = (int64_t)B * NH * D.NQB;
  const int64_t wsn = (int64_t)BQ * HD * 2 + BQ * BK + 2 * BQ + (int64_t)BK * HD;
  int oom = 0;
#pragma omp parallel
  {
    float *ws = alloc_floats(wsn);
    if (!ws) {
#pragma omp atomic write
      oom = 1;
    }
    transpose_panels(KT, k, &D);
    /* Query block qb costs qb+1 tile pairs. Tasks are handed out dynamically, longest first:
     * which thread runs a task never changes its arithmetic (each task alone writes its rows,
     * in a fixed order), so results stay bit-for-bit identical while the causal triangle no
     * longer leaves threads idle (a static round-robin gave one of 2 threads 60% of the work). */
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntasks; task++) {
      if (!ws) continue;
      const int qb = D.NQB - 1 - (int)(task / ((int64_t)B * NH));
      const int h = (int)(task % NH);
      const int b = (int)((task / NH) % B);
      fwd_task(out, lse, q, KT, v, b, h, qb, &D, ws);
    }
    free(ws);
  }
  if (oom) return tl_fail(TL_ERR_OUT_OF_MEMORY, "%s: could not allocate the per-thread workspace", who);
  return TL_OK;
}

/* ---------------------------------------------------------------------- backward ---- */

/* Loads a query block of head h: Qs = scale * Q, dO, and its lse and D rows. */
static void load_qblock(float *Qs, float *dO, float *L, float *Dr, const float *q, const float *dout,
                        const float *lse, const float *Dsum, int b, int h, int q0, int nq,
                        const dims_t *D) {
  const int HD = D->HD;
  const int64_t base = (int64_t)b * D->T * D->qs + (int64_t)h * HD;
  const int64_t lrow = ((int64_t)b * D->NH + h) * D->T + q0;
  for (int i = 0; i < nq; i++) {
    const int64_t off = base + (int64_t)(q0 + i) * D->qs;
    for (int d = 0; d < HD; d++) Qs[(int64_t)i * HD + d] = q[off + d] * D->scale;
    memcpy(dO + (int64_t)i * HD, dout + off, sizeof(float) * (size_t)HD);
    L[i] = lse[lrow + i];
    Dr[i] = Dsum[lrow + i];
  }
}

/* S = Qs Kt and dP = dO Vt on entry; P and dS on exit, for the tile at (q0, k0). */
static void probs_and_dscores(float *S, float *dP, const float *L, const float *Dr, int q0, int nq,
                              int k0, int nk) {
  for (int i = 0; i < nq; i++) {
    const int jn = imin(nk, q0 + i - k0 + 1);
    row_probs_dscores(S + (int64_t)i * BK, dP + (int64_t)i * BK, jn, L[i], Dr[i]);
  }
}

/* Per-thread workspace of the backward, in floats. */
static int64_t bwd_ws_floats(int HD) {
  return 2 * (int64_t)BQ * HD /*Qs,dO*/ + 2 * (int64_t)HD * BK /*Kt,Vt*/ + 2 * (int64_t)BQ * BK /*S,dP*/ +
         2 * (int64_t)BK * HD /*dK,dV*/ + 2 * BQ /*L,D*/ + (int64_t)BK * HD /*K rows*/;
}

/* dK, dV of key block kb of kv head kvh (summed over its query heads and the query blocks at
 * or below the diagonal) and, when dq is not NULL, the matching dQ contributions. */
static void bwd_kv_block(float *dq, float *dk, float *dv, const float *dout, const float *q,
                         const float *k, const float *v, const float *lse, const float *Dsum, int b,
                         int kvh, int kb, const dims_t *D, float *ws) {
  const int HD = D->HD, T = D->T;
  const int k0 = kb * BK, nk = imin(BK, T - k0);
  const int64_t kvoff = (int64_t)b * T * D->ks + (int64_t)kvh * HD + (int64_t)k0 * D->ks;
  float *Qs = ws, *dO = Qs + (int64_t)BQ * HD, *Kt = dO + (int64_t)BQ * HD;
  float *Vt = Kt + (int64_t)HD * BK, *S = Vt + (int64_t)HD * BK, *dP = S + BQ * BK;
  float *dK = dP + BQ * BK, *dV = dK + (int64_t)BK * HD, *L = dV + (int64_t)BK * HD, *Dr = L + BQ;
  float *Kl = Dr + BQ;

  transpose_tile(Kt, BK, k + kvoff, D->ks, nk, HD);
  transpose_tile(Vt, BK, v + kvoff, D->ks, nk, HD);
  if (dq) copy_rows(Kl, k + kvoff, D->ks, nk, HD);
  memset(dK, 0, sizeof(float) * (size_t)nk * HD);
  memset(dV, 0, sizeof(float) * (size_t)nk * HD);
  for (int h = kvh * D->G; h < (kvh + 1) * D->G; h++) {
    float *dqbase = dq ? dq + (int64_t)b * T * D->qs + (int64_t)h * HD : NULL;
    for (int q0 = (k0 / BQ) * BQ; q0 < T; q0 += BQ) {
      const int nq = imin(BQ, T - q0);
      load_qblock(Qs, dO, L, Dr, q, dout, lse, Dsum, b, h, q0, nq, D);
      mm_abt(S, Qs, HD, Kt, BK, nq, HD);
      mm_abt(dP, dO, HD, Vt, BK, nq, HD);
      probs_and_dscores(S, dP, L, Dr, q0, nq, k0, nk);
      mm_acc(dV, HD, 1.0f, S, 1, BK, dO, HD, nk, nq, HD);  /* dV += P^T dO */
      mm_acc(dK, HD, 1.0f, dP, 1, BK, Qs, HD, nk, nq, HD); /* dK += dS^T (scale Q) */
      if (dqbase) /* dQ += scale dS K */
        mm_acc(dqbase + (int64_t)q0 * D->qs, D->qs, D->scale, dP, BK, 1, Kl, HD, nq, nk, HD);
    }
  }
  for (int j = 0; j < nk; j++) {
    float *dkr = dk + kvoff + (int64_t)j * D->ks, *dvr = dv + kvoff + (int64_t)j * D->ks;
    const float *a = dK + (int64_t)j * HD, *c = dV + (int64_t)j * HD;
    for (int d = 0; d < HD; d++) {
      dkr[d] += a[d];
      dvr[d] += c[d];
    }
  }
}

/* Split schedule, pass 2: dQ of query block qb of head h, from the K^T and V^T panels. */
static void bwd_q_block(float *dq, const float *dout, const float *q, const float *k,
                        const float *KT, const float *VT, const float *lse, const float *Dsum, int b,
                        int h, int qb, const dims_t *D, float *ws) {
  const int HD = D->HD, T = D->T, kvh = h / D->G;
  const int q0 = qb * BQ, nq = imin(BQ, T - q0);
  const float *kbase = k + (int64_t)b * T * D->ks + (int64_t)kvh * HD;
  const int64_t panel = ((int64_t)b * D->NKV + kvh) * HD * D->ldp;
  float *Qs = ws, *dO = Qs + (int64_t)BQ * HD, *S = dO + (int64_t)BQ * HD + 2 * (int64_t)HD * BK;
  float *dP = S + BQ * BK, *L = dP + BQ * BK + 2 * (int64_t)BK * HD, *Dr = L + BQ, *Kl = Dr + BQ;

  load_qblock(Qs, dO, L, Dr, q, dout, lse, Dsum, b, h, q0, nq, D);
  float *dqrows = dq + (int64_t)b * T * D->qs + (int64_t)h * HD + (int64_t)q0 * D->qs;
  const int kend = q0 + nq;
  for (int k0 = 0; k0 < kend; k0 += BK) {
    const int nk = imin(BK, kend - k0);
    mm_abt(S, Qs, HD, KT + panel + k0, D->ldp, nq, HD);
    mm_abt(dP, dO, HD, VT + panel + k0, D->ldp, nq, HD);
    probs_and_dscores(S, dP, L, Dr, q0, nq, k0, nk);
    copy_rows(Kl, kbase + (int64_t)k0 * D->ks, D->ks, nk, HD);
    mm_acc(dqrows, D->qs, D->scale, dP, BK, 1, Kl, HD, nq, nk, HD);
  }
}

int tl_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                          const float *k, const float *v, const float *out, const float *lse, int B,
                          int T, int NH, int NKV, int HD) {
  static const char *who = "tl_attention_backward";
  TL_REQUIRE(dout && q && k && v && out && lse, "%s: NULL input pointer", who);
  TL_REQUIRE(dq && dk && dv, "%s: NULL gradient pointer (dq, dk and dv are all required)", who);
  int rc = check(who, B, T, NH, NKV, HD);
  if (rc) return rc;
  const dims_t D = make_dims(B, T, NH, NKV, HD);
#ifdef _OPENMP
  const int nthreads = omp_get_max_threads();
#else
  const int nthreads = 1;
#endif
  /* Fused when its B*NKV equal tasks use the threads at least 5/7 as well as the split
   * schedule's many small ones (which does 7/5 the work). */
  const int64_t nfused = (int64_t)B * NKV;
  const int64_t rounds = (nfused + nthreads - 1) / nthreads;
  const int fused = 7 * nfused >= 5 * rounds * nthreads;

  const int64_t npanel = fused ? 0 : (int64_t)B * NKV * HD * D.ldp;
  const int64_t nD = ((int64_t)B * NH * T + 15) / 16 * 16; /* keeps the panels 64-byte aligned */
  float *Dsum = call_scratch(nD + 2 * npanel);
  float *KT = fused ? NULL : Dsum + nD;
  float *VT = fused ? NULL : KT + npanel;
  if (!Dsum) {
    return tl_fail(TL_ERR_OUT_OF_MEMORY, "%s: could not allocate scratch (B=%d T=%d NH=%d HD=%d)", who, B, T, NH, HD);
  }
  int oom = 0;
#pragma omp parallel
  {
    float *ws = alloc_floats(bwd_ws_floats(HD));
    if (!ws) {
#pragma omp atomic write
      oom = 1;
    }
    /* D = rowsum(dO * O), stored (B,NH,T) like lse. */
#pragma omp for schedule(static)
    for (int64_t r = 0; r < (int64_t)B * T * NH; r++) {
      const int h = (int)(r % NH), t = (int)((r / NH) % T), b = (int)(r / ((int64_t)NH * T));
      const float *a = dout + r * HD, *o = out + r * HD;
      float s = 0.0f;
      for (int d = 0; d < HD; d++) s += a[d] * o[d];
      Dsum[((int64_t)b * NH + h) * T + t] = s;
    }
    if (fused) {
      /* One task per (b, kv head): it alone writes that kv head's dK/dV and its heads' dQ. */
#pragma omp for schedule(static, 1)
      for (int64_t task = 0; task < nfused; task++) {
        if (!ws) continue;
        const int b = (int)(task / NKV), kvh = (int)(task % NKV);
        for (int kb = 0; kb < D.NKB; kb++) bwd_kv_block(dq, dk, dv, dout, q, k, v, lse, Dsum, b, kvh, kb, &D, ws);
      }
    } else {
      transpose_panels(KT, k, &D);
      transpose_panels(VT, v, &D);
      /* Pass 1: each (b, kv head, key block) owns its dK/dV rows. Dynamic, longest (kb = 0)
       * first; as in the forward, the assignment cannot change the results. */
#pragma omp for schedule(dynamic, 1)
      for (int64_t task = 0; task < (int64_t)B * NKV * D.NKB; task++) {
        if (!ws) continue;
        const int kb = (int)(task / ((int64_t)B * NKV));
        const int kvh = (int)(task % NKV);
        const int b = (int)((task / NKV) % B);
        bwd_kv_block(NULL, dk, dv, dout, q, k, v, lse, Dsum, b, kvh, kb, &D, ws);
      }
      /* Pass 2: each (b, head, query block) owns its dQ rows; longest (last qb) first. */
#pragma omp for schedule(dynamic, 1)
      for (int64_t task = 0; task < (int64_t)B * NH * D.NQB; task++) {
        if (!ws) continue;
        const int qb = D.NQB - 1 - (int)(task / ((int64_t)B * NH));
        const int h = (int)(task % NH);
        const int b = (int)((task / NH) % B);
        bwd_q_block(dq, dout, q, k, KT, VT, lse, Dsum, b, h, qb, &D, ws);
      }
    }
    free(ws);
  }
  if (oom) return tl_fail(TL_ERR_OUT_OF_MEMORY, "%s: could not allocate the per-thread workspace", who);
  return TL_OK;
}
