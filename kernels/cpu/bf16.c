/* bf16 mixed-precision ops (the tinyllama.h bf16 section). bf16 is the upper half of an fp32;
 * conversion rounds to nearest even.
 *
 * Matmuls. Every product is one routine over strided bf16 operands with an fp32 result:
 *   C (M,N) (+)= A (M,K) @ B (K,N),   A(i,k) = A[i*rsA + k*csA],   B(k,j) = B[k*rsB + j*csB]
 *   forward   out (N,OC)     = inp (N,C) @ weight^T     B = weight read transposed
 *   dinp      dinp (N,C)    += dout (N,OC) @ weight     both row-major
 *   dweight   dweight (OC,C) += dout^T @ inp (N,C)      A = dout read transposed
 * Two implementations of that routine, chosen at compile time:
 * - AVX512_BF16 (`vdpbf16ps`, -march=native on Cooper Lake / Sapphire Rapids / Zen 4 and later):
 *   operands packed as k-pairs, a 12x32 register tile of fp32 accumulators, 2 bf16 products per
 *   fp32 lane per instruction (twice the fp32 FMA rate). The instruction adds the odd product,
 *   then the even one, each rounded to fp32, and treats denormal inputs/outputs as zero.
 * - Everywhere else: the bf16 operands are widened to fp32 (exact) and the blocked fp32 GEMM of
 *   matmul.c (tl_matmul_forward / _backward) runs on them. bf16 x bf16 products are exact in
 *   fp32, so this is the header's semantics (fp32 accumulation) at fp32 GEMM speed.
 * Both are deterministic for any thread count: each element of C is computed by one thread in a
 * fixed k order. They differ from each other only by fp32 summation order (~1e-6 relative).
 * The bf16-output ABI functions compute in fp32 and round once at the end. */
#include "common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>
#define TL_BF16_DPBF16 1
#endif

static inline float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* Round to nearest, ties to even; NaN becomes the canonical 0x7FFF (what CUDA's
 * __float2bfloat16_rn returns), infinities and overflow give +-inf. */
static inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

int tl_cast_f32_to_bf16(uint16_t *out, const float *inp, int64_t N) {
  TL_REQUIRE(N >= 0, "tl_cast_f32_to_bf16: negative count %lld", (long long)N);
  if (N == 0) return TL_OK;
  TL_REQUIRE(out != NULL && inp != NULL, "tl_cast_f32_to_bf16: NULL pointer");
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; i++) out[i] = f32_to_bf16(inp[i]);
  return TL_OK;
}

int tl_cast_bf16_to_f32(float *out, const uint16_t *inp, int64_t N) {
  TL_REQUIRE(N >= 0, "tl_cast_bf16_to_f32: negative count %lld", (long long)N);
  if (N == 0) return TL_OK;
  TL_REQUIRE(out != NULL && inp != NULL, "tl_cast_bf16_to_f32: NULL pointer");
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; i++) out[i] = bf16_to_f32(inp[i]);
  return TL_OK;
}

static int check(const char *who, const void *a, const void *b, const void *w, int N, int C, int OC) {
  TL_REQUIRE(a != NULL && b != NULL && w != NULL, "%s: NULL pointer", who);
  TL_REQUIRE(N > 0 && C > 0 && OC > 0, "%s: sizes must be positive (N=%d C=%d OC=%d)", who, N, C, OC);
  return TL_OK;
}

static void *alloc_or_null(size_t bytes) {
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
  return p;
}

#ifdef TL_BF16_DPBF16
/* ------------------------------------------------------------ AVX512_BF16 GEMM ---- */
typedef struct {
  int M, N, K;
  const uint16_t *A;
  int64_t rsA, csA;
  const uint16_t *B;
  int64_t rsB, csB;
  float *C;
  int64_t ldc;
  int accumulate; /* 1: C += A@B; 0: C = A@B */
} bgemm_t;

/* MR x NR register tile (24 zmm accumulators); KC k per packed slice (KC/2 pairs: a 32 KiB sliver
 * of packed B in L1), MC rows of A per packed block (~192 KiB, L2), NC columns per packed B block. */
enum { MR = 12, NR = 32, KC = 512, MC = MR * 16, NC = NR * 64 };

static _Thread_local uint32_t *bpack_buf;
static _Thread_local size_t bpack_cap; /* uint32 words; grown once, never freed (see matmul.c) */

static uint32_t *bpack_buffer(size_t words) {
  if (words <= bpack_cap) return bpack_buf;
  void *p = alloc_or_null(words * sizeof(uint32_t));
  if (!p) return NULL;
  free(bpack_buf);
  bpack_buf = p;
  bpack_cap = words;
  return bpack_buf;
}

static inline uint32_t pair(uint16_t lo, uint16_t hi) { return (uint32_t)lo | ((uint32_t)hi << 16); }

/* Ap: mc rows of A from row i0, k in [k0, k0+kc), as ceil(mc/MR) slivers of (kc/2 pairs, MR):
 * word [p*MR + i] = (A(i, k0+2p), A(i, k0+2p+1)), zero past the edges. */
static void pack_A(const bgemm_t *g, int i0, int mc, int k0, int kc, uint32_t *restrict Ap) {
  const int kp = (kc + 1) / 2;
  for (int ir = 0; ir < mc; ir += MR, Ap += (int64_t)kp * MR) {
    const int mr = mc - ir < MR ? mc - ir : MR;
    for (int i = 0; i < MR; i++) {
      if (i >= mr) {
        for (int p = 0; p < kp; p++) Ap[p * MR + i] = 0;
        continue;
      }
      const uint16_t *s = g->A + (int64_t)(i0 + ir + i) * g->rsA + (int64_t)k0 * g->csA;
      for (int p = 0; p < kp; p++) {
        const int k = 2 * p;
        const uint16_t lo = s[(int64_t)k * g->csA], hi = k + 1 < kc ? s[(int64_t)(k + 1) * g->csA] : 0;
        Ap[p * MR + i] = pair(lo, hi);
      }
    }
  }
}

/* Bp: nc columns of B from column j0, k in [k0, k0+kc), as ceil(nc/NR) slivers of (kc/2 pairs, NR):
 * word [p*NR + j] = (B(k0+2p, j), B(k0+2p+1, j)): one zmm per 16 columns, the layout vdpbf16ps reads. */
static void pack_B(const bgemm_t *g, int j0, int nc, int k0, int kc, uint32_t *restrict Bp) {
  const int kp = (kc + 1) / 2;
  for (int jr = 0; jr < nc; jr += NR, Bp += (int64_t)kp * NR) {
    const int nr = nc - jr < NR ? nc - jr : NR;
    const uint16_t *src = g->B + (int64_t)k0 * g->rsB + (int64_t)(j0 + jr) * g->csB;
    if (g->csB == 1) { /* row-major B: rows k and k+1 interleaved */
      for (int p = 0; p < kp; p++) {
        const uint16_t *r0 = src + (int64_t)(2 * p) * g->rsB, *r1 = 2 * p + 1 < kc ? r0 + g->rsB : NULL;
        uint32_t *d = Bp + p * NR;
        for (int j = 0; j < nr; j++) d[j] = pair(r0[j], r1 ? r1[j] : 0);
        for (int j = nr; j < NR; j++) d[j] = 0;
      }
    } else { /* B(k,j) = weight[j,k]: column j is contiguous along k, so a pair is one 32-bit load */
      for (int j = 0; j < NR; j++) {
        if (j >= nr) {
          for (int p = 0; p < kp; p++) Bp[p * NR + j] = 0;
          continue;
        }
        const uint16_t *s = src + (int64_t)j * g->csB;
        for (int p = 0; p < kp; p++) {
          const int k = 2 * p;
          Bp[p * NR + j] = pair(s[(int64_t)k * g->rsB], k + 1 < kc ? s[(int64_t)(k + 1) * g->rsB] : 0);
        }
      }
    }
  }
}

/* C tile (mr x nr, row stride ldc) (+)= Ap sliver . Bp sliver over kp pairs. */
static void micro(int kp, const uint32_t *restrict Ap, const uint32_t *restrict Bp, float *C, int64_t ldc, int mr, int nr,
                  int add) {
  __m512 c[MR][2];
  for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
  for (int p = 0; p < kp; p++) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(Bp + p * NR), b1 = (__m512bh)_mm512_loadu_si512(Bp + p * NR + 16);
    const uint32_t *a = Ap + p * MR;
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);
      c[i][0] = _mm512_dpbf16_ps(c[i][0], ai, b0);
      c[i][1] = _mm512_dpbf16_ps(c[i][1], ai, b1);
    }
  }
  const __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
  const __mmask16 m1 = nr <= 16 ? 0 : nr >= 32 ? 0xFFFF : (__mmask16)((1u << (nr - 16)) - 1);
  for (int i = 0; i < mr; i++) {
    float *row = C + (int64_t)i * ldc;
    __m512 v0 = c[i][0], v1 = c[i][1];
    if (add) {
      v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, row), v0);
      v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, row + 16), v1);
    }
    _mm512_mask_storeu_ps(row, m0, v0);
    _mm512_mask_storeu_ps(row + 16, m1, v1);
  }
}

/* C[m0:m1, n0:n1] for one thread. buf holds MC*KC/2 + KC/2*NC words. */
static void bgemm_block(const bgemm_t *g, int m0, int m1, int n0, int n1, uint32_t *buf) {
  uint32_t *Ap = buf, *Bp = buf + MC * (KC / 2);
  for (int jc = n0; jc < n1; jc += NC) {
    const int nc = n1 - jc < NC ? n1 - jc : NC;
    for (int pc = 0; pc < g->K; pc += KC) {
      const int kc = g->K - pc < KC ? g->K - pc : KC, kp = (kc + 1) / 2;
      const int add = pc > 0 || g->accumulate;
      pack_B(g, jc, nc, pc, kc, Bp);
      for (int ic = m0; ic < m1; ic += MC) {
        const int mc = m1 - ic < MC ? m1 - ic : MC;
        pack_A(g, ic, mc, pc, kc, Ap);
        for (int jr = 0; jr < nc; jr += NR) {
          const int nr = nc - jr < NR ? nc - jr : NR;
          for (int ir = 0; ir < mc; ir += MR) {
            const int mr = mc - ir < MR ? mc - ir : MR;
            micro(kp, Ap + (int64_t)ir * kp, Bp + (int64_t)jr * kp, g->C + (int64_t)(ic + ir) * g->ldc + jc + jr, g->ldc, mr, nr,
                  add);
          }
        }
      }
    }
  }
}

/* Splits C into a tm x tn grid of tile-aligned blocks, one per thread (the split that leaves the
 * largest block smallest); per-element results do not depend on it. */
static int bgemm(const char *who, const bgemm_t *g) {
  const int tiles_m = (g->M + MR - 1) / MR, tiles_n = (g->N + NR - 1) / NR;
  int failed = 0;
#pragma omp parallel
  {
    int T = 1, t = 0;
#ifdef _OPENMP
    T = omp_get_num_threads();
    t = omp_get_thread_num();
#endif
    int tm = 1, tn = T;
    int64_t best = -1;
    for (int a = 1; a <= T; a++) {
      if (T % a) continue;
      const int64_t cost = (int64_t)((tiles_m + a - 1) / a) * ((tiles_n + T / a - 1) / (T / a));
      if (best < 0 || cost < best) best = cost, tm = a, tn = T / a;
    }
    const int bm = (tiles_m + tm - 1) / tm, bn = (tiles_n + tn - 1) / tn;
    const int im = t / tn, jn = t % tn;
    const int m0 = im * bm * MR, m1 = (im + 1) * bm * MR < g->M ? (im + 1) * bm * MR : g->M;
    const int n0 = jn * bn * NR, n1 = (jn + 1) * bn * NR < g->N ? (jn + 1) * bn * NR : g->N;
    if (m0 < m1 && n0 < n1) {
      uint32_t *buf = bpack_buffer((size_t)MC * (KC / 2) + (size_t)(KC / 2) * NC);
      if (!buf) {
#pragma omp atomic write
        failed = 1;
      } else
        bgemm_block(g, m0, m1, n0, n1, buf);
    }
  }
  if (failed) return tl_fail(TL_ERR_OUT_OF_MEMORY, "%s: no memory for the packing buffers", who);
  return TL_OK;
}

/* The three products of the Linear layer, fp32 results. */
static int mm_forward(const char *who, float *out, const uint16_t *inp, const uint16_t *weight, int N, int C, int OC) {
  const bgemm_t g = {.M = N, .N = OC, .K = C, .A = inp, .rsA = C, .csA = 1, .B = weight, .rsB = 1, .csB = C, .C = out, .ldc = OC, .accumulate = 0};
  return bgemm(who, &g);
}
static int mm_dinp(const char *who, float *dinp, const uint16_t *dout, const uint16_t *weight, int N, int C, int OC) {
  const bgemm_t g = {.M = N, .N = C, .K = OC, .A = dout, .rsA = OC, .csA = 1, .B = weight, .rsB = C, .csB = 1, .C = dinp, .ldc = C, .accumulate = 1};
  return bgemm(who, &g);
}
static int mm_dweight(const char *who, float *dweight, const uint16_t *dout, const uint16_t *inp, int N, int C, int OC) {
  const bgemm_t g = {.M = OC, .N = C, .K = N, .A = dout, .rsA = 1, .csA = OC, .B = inp, .rsB = C, .csB = 1, .C = dweight, .ldc = C, .accumulate = 1};
  return bgemm(who, &g);
}

#else
/* ------------------------------------------------ portable: widen, then the fp32 GEMM ---- */
/* Widened copies of the operands live in one malloc'd block per call (freed before returning). */
static int widen_all(const char *who, float **out, const uint16_t *const *src, const int64_t *n, int count) {
  int64_t total = 0;
  for (int i = 0; i < count; i++) total += n[i];
  float *p = alloc_or_null((size_t)total * sizeof(float));
  if (!p) return tl_fail(TL_ERR_OUT_OF_MEMORY, "%s: no memory to widen %lld bf16 values", who, (long long)total);
  float *d = p;
  for (int i = 0; i < count; i++) {
    tl_cast_bf16_to_f32(d, src[i], n[i]);
    out[i] = d;
    d += n[i];
  }
  return TL_OK;
}

static int mm_forward(const char *who, float *out, const uint16_t *inp, const uint16_t *weight, int N, int C, int OC) {
  float *w[2] = {NULL, NULL};
  const uint16_t *src[2] = {inp, weight};
  const int64_t n[2] = {(int64_t)N * C, (int64_t)OC * C};
  int rc = widen_all(who, w, src, n, 2);
  if (rc) return rc;
  rc = tl_matmul_forward(out, w[0], w[1], NULL, N, C, OC);
  free(w[0]);
  return rc;
}
static int mm_dinp(const char *who, float *dinp, const uint16_t *dout, const uint16_t *weight, int N, int C, int OC) {
  float *w[2] = {NULL, NULL};
  const uint16_t *src[2] = {dout, weight};
  const int64_t n[2] = {(int64_t)N * OC, (int64_t)OC * C};
  int rc = widen_all(who, w, src, n, 2);
  if (rc) return rc;
  /* inp is not read for dinp alone; pass any valid (N,C)-sized pointer: dinp itself */
  rc = tl_matmul_backward(dinp, NULL, NULL, w[0], dinp, w[1], N, C, OC);
  free(w[0]);
  return rc;
}
static int mm_dweight(const char *who, float *dweight, const uint16_t *dout, const uint16_t *inp, int N, int C, int OC) {
  float *w[2] = {NULL, NULL};
  const uint16_t *src[2] = {dout, inp};
  const int64_t n[2] = {(int64_t)N * OC, (int64_t)N * C};
  int rc = widen_all(who, w, src, n, 2);
  if (rc) return rc;
  /* weight is not read for dweight alone; dweight has its (OC,C) size */
  rc = tl_matmul_backward(NULL, dweight, NULL, w[0], w[1], dweight, N, C, OC);
  free(w[0]);
  return rc;
}
#endif

/* ------------------------------------------------------------------ ABI ---- */
/* out (N,OC) = bf16(inp (N,C) @ weight (OC,C)^T), fp32 accumulation, one rounding. */
int tl_matmul_forward_bf16(uint16_t *out, const uint16_t *inp, const uint16_t *weight, int N, int C, int OC) {
  const char *who = "tl_matmul_forward_bf16";
  int rc = check(who, out, inp, weight, N, C, OC);
  if (rc) return rc;
  float *tmp = alloc_or_null((size_t)N * OC * sizeof(float));
  if (!tmp) return tl_fail(TL_ERR_OUT_OF_MEMORY, "%s: no memory for the fp32 result (%d x %d)", who, N, OC);
  rc = mm_forward(who, tmp, inp, weight, N, C, OC);
  if (!rc) tl_cast_f32_to_bf16(out, tmp, (int64_t)N * OC);
  free(tmp);
  return rc;
}

/* out (N,OC) fp32 = inp (N,C) @ weight (OC,C)^T, bf16 operands, fp32 accumulation and result. */
int tl_matmul_forward_bf16_f32(float *out, const uint16_t *inp, const uint16_t *weight, int N, int C, int OC) {
  const char *who = "tl_matmul_forward_bf16_f32";
  int rc = check(who, out, inp, weight, N, C, OC);
  if (rc) return rc;
  return mm_forward(who, out, inp, weight, N, C, OC);
}

/* dinp (N,C) bf16 = bf16(dinp + dout @ weight); dweight (OC,C) fp32 += dout^T @ inp. */
int tl_matmul_backward_bf16(uint16_t *dinp, float *dweight, const uint16_t *dout, const uint16_t *inp,
                            const uint16_t *weight, int N, int C, int OC) {
  const char *who = "tl_matmul_backward_bf16";
  int rc = check(who, dout, inp, weight, N, C, OC);
  if (rc) return rc;
  if (dinp) {
    float *tmp = alloc_or_null((size_t)N * C * sizeof(float));
    if (!tmp) return tl_fail(TL_ERR_OUT_OF_MEMORY, "%s: no memory for the fp32 dinp (%d x %d)", who, N, C);
    tl_cast_bf16_to_f32(tmp, dinp, (int64_t)N * C);
    rc = mm_dinp(who, tmp, dout, weight, N, C, OC);
    if (!rc) tl_cast_f32_to_bf16(dinp, tmp, (int64_t)N * C);
    free(tmp);
    if (rc) return rc;
  }
  if (dweight) return mm_dweight(who, dweight, dout, inp, N, C, OC);
  return TL_OK;
}

/* dinp (N,C) fp32 += dout @ weight; dweight (OC,C) fp32 += dout^T @ inp; bf16 operands. */
int tl_matmul_backward_bf16_f32(float *dinp, float *dweight, const uint16_t *dout, const uint16_t *inp,
                                const uint16_t *weight, int N, int C, int OC) {
  const char *who = "tl_matmul_backward_bf16_f32";
  int rc = check(who, dout, inp, weight, N, C, OC);
  if (rc) return rc;
  if (dinp && (rc = mm_dinp(who, dinp, dout, weight, N, C, OC))) return rc;
  if (dweight) return mm_dweight(who, dweight, dout, inp, N, C, OC);
  return TL_OK;
}

/* AdamW on fp32 master weights (same formula as tl_adamw_step), then the bf16 copy. */
int tl_adamw_step_bf16(float *param, uint16_t *param_bf16, const float *grad, float *m, float *v, int64_t N,
                       float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                       int t) {
  TL_REQUIRE(N >= 0, "tl_adamw_step_bf16: negative count %lld", (long long)N);
  TL_REQUIRE(t >= 1, "tl_adamw_step_bf16: step t must be >= 1, got %d", t);
  TL_REQUIRE(beta1 >= 0.0f && beta1 < 1.0f && beta2 >= 0.0f && beta2 < 1.0f,
             "tl_adamw_step_bf16: betas must lie in [0, 1), got %g, %g", (double)beta1, (double)beta2);
  if (N == 0) return TL_OK;
  TL_REQUIRE(param && param_bf16 && grad && m && v, "tl_adamw_step_bf16: NULL pointer");
  const float bc1 = (float)(1.0 - pow((double)beta1, (double)t));
  const float bc2 = (float)(1.0 - pow((double)beta2, (double)t));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N; i++) {
    const float g = grad[i] * grad_scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float p = param[i];
    p -= lr * weight_decay * p;
    p -= lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
    param[i] = p;
    param_bf16[i] = f32_to_bf16(p);
  }
  return TL_OK;
}
