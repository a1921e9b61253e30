/* Linear layer matmul: out = inp @ weight^T (+ bias), and its backward.
 *
 * All three products are one routine, gemm(), over strided operands:
 *   C (M,N) (+)= A (M,K) @ B (K,N),   A(i,k) = A[i*rsA + k*csA],   B(k,j) = B[k*rsB + j*csB]
 *   forward   out (N,OC)   = inp (N,C)     @ weight^T    A row-major,    B = weight read transposed
 *   dinp      dinp (N,C)  += dout (N,OC)   @ weight      A row-major,    B row-major (NN)
 *   dweight   dweight(OC,C) += dout^T (OC,N) @ inp       A = dout read transposed (TN), B row-major
 * Packing copies blocks of A and B into the order the microkernel reads (matmul_microkernel.h), so
 * the layouts differ only in the packing loops and all three share one register-tiled kernel.
 *
 * Blocking (Goto/BLIS): for each NC-wide column block of B, for each KC-deep slice, pack B (KC,NC)
 * once; for each MC-row block of A, pack A (MC,KC) and run the microkernel over its MR x NR tiles.
 * A KC x NR sliver of packed B (32 KiB for AVX-512) stays in L1 while the MR x KC slivers of A stream
 * from L2; the packed B block lives in L2/L3.
 *
 * Threads: C is cut into a tm x tn grid of disjoint blocks on MR/NR tile boundaries, one per thread;
 * each thread packs what its block needs into its own buffers. The few percent of duplicated packing
 * buys no barriers, no shared state and no atomics, and every element of C is computed by exactly one
 * thread in a fixed k order: results are identical for any thread count (the N == 1 paths too:
 * their per-element order does not depend on the split either).
 *
 * N == 1 (decode) is matrix-vector, memory bound: the weights are streamed once, OC split across
 * threads, no packing.
 */
#include "common.h"
#include "matmul_microkernel.h"

#include <stdlib.h>
#include <string.h>

/* KC: depth of a packed slice (kc x NR floats of B = 32 KiB in L1 for AVX-512).
 * MC: rows of A per packed block (MC x KC floats = 168 KiB, in L2).
 * NC: columns of B per packed block (KC x NC floats = 4 MiB, L2/L3). */
#ifndef TL_MM_KC /* overridable with -D only to retune on another CPU */
#define TL_MM_KC 256
#define TL_MM_MC (MR * 12)
#define TL_MM_NC (NR * 128)
#endif
enum { KC = TL_MM_KC, MC = TL_MM_MC, NC = TL_MM_NC };

#ifdef _OPENMP
static int thread_count(void) { return omp_get_max_threads(); }
static int thread_id(void) { return omp_get_thread_num(); }
static int team_size(void) { return omp_get_num_threads(); }
#else
static int thread_count(void) { return 1; }
static int thread_id(void) { return 0; }
static int team_size(void) { return 1; }
#endif

typedef struct {
  int M, N, K;
  const float *A;
  int64_t rsA, csA;
  const float *B;
  int64_t rsB, csB;
  float *C;
  int64_t ldc;
  int accumulate;     /* 1: C += A@B; 0: C = A@B (+ bias) */
  const float *bias;  /* (N) or NULL; only with accumulate == 0 */
} gemm_t;

/* ------------------------------------------------------------ packing buffers ---- */
/* One buffer per thread (OpenMP worker or caller), grown on demand and then reused, so the hot path
 * does not allocate. It is bounded by (MC*KC + KC*NC) floats (~4.2 MiB) and deliberately never freed:
 * a thread-exit destructor would point into this library after bun:ffi closes it. */
static _Thread_local float *pack_buf;
static _Thread_local size_t pack_cap; /* floats */

static float *pack_buffer(size_t floats) {
  if (floats <= pack_cap) return pack_buf;
  void *p = NULL;
  if (posix_memalign(&p, 64, floats * sizeof(float)) != 0) return NULL;
  free(pack_buf);
  pack_buf = p;
  pack_cap = floats;
  return pack_buf;
}

#if defined(__AVX512F__)
/* In-register transpose: on return r[j] holds what was column j of the 16 rows r[0..15]. */
static inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int a = 0; a < 8; a++) { /* lane L: (r2a[4L], r2a+1[4L], r2a[4L+1], r2a+1[4L+1]) and the hi pair */
    t[2 * a] = _mm512_unpacklo_ps(r[2 * a], r[2 * a + 1]);
    t[2 * a + 1] = _mm512_unpackhi_ps(r[2 * a], r[2 * a + 1]);
  }
  for (int b = 0; b < 4; b++) { /* u[4b+c] lane L = column 4L+c of rows 4b..4b+3 */
    const __m512d t0 = _mm512_castps_pd(t[4 * b]), t1 = _mm512_castps_pd(t[4 * b + 1]);
    const __m512d t2 = _mm512_castps_pd(t[4 * b + 2]), t3 = _mm512_castps_pd(t[4 * b + 3]);
    r[4 * b] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    r[4 * b + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    r[4 * b + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    r[4 * b + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  for (int c = 0; c < 4; c++) { /* 4x4 transpose of the 128-bit lanes */
    const __m512 v0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44), v1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE);
    const __m512 v2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44), v3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);
    t[c] = _mm512_shuffle_f32x4(v0, v2, 0x88);
    t[4 + c] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
    t[8 + c] = _mm512_shuffle_f32x4(v1, v3, 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
  }
  for (int j = 0; j < 16; j++) r[j] = t[j];
}

/* dst[k*ds + i] = src[i*ld + k] for i < lanes (rows >= valid read as 0), k < kc: packs up to 16
 * k-contiguous rows 16 k at a time through registers instead of one scalar per float. */
static void pack_rows_T(const float *restrict src, int64_t ld, int valid, int lanes, int kc, float *restrict dst, int ds) {
  const __mmask16 sm = mk_mask16(lanes);
  for (int k = 0; k < kc; k += 16) {
    const int kb = kc - k < 16 ? kc - k : 16;
    const __mmask16 lm = mk_mask16(kb);
    __m512 r[16];
    for (int i = 0; i < 16; i++) r[i] = i < valid ? _mm512_maskz_loadu_ps(lm, src + (int64_t)i * ld + k) : _mm512_setzero_ps();
    transpose16(r);
    for (int q = 0; q < kb; q++) _mm512_mask_storeu_ps(dst + (int64_t)(k + q) * ds, sm, r[q]);
  }
}
#define TL_PACK_T 1
#endif

/* Ap: mc rows of A (from row i0, depth k0..k0+kc) as ceil(mc/MR) slivers of (kc, MR), zero-padded. */
static void pack_A(const gemm_t *g, int i0, int mc, int k0, int kc, float *restrict Ap) {
  for (int ir = 0; ir < mc; ir += MR, Ap += (int64_t)kc * MR) {
    const int mr = mc - ir < MR ? mc - ir : MR;
    const float *src = g->A + (int64_t)(i0 + ir) * g->rsA + (int64_t)k0 * g->csA;
    if (g->rsA == 1) { /* A is a transposed view (dweight: dout^T): rows are contiguous per k */
      for (int k = 0; k < kc; k++) {
        const float *s = src + (int64_t)k * g->csA;
        float *d = Ap + k * MR;
        for (int i = 0; i < mr; i++) d[i] = s[i];
        for (int i = mr; i < MR; i++) d[i] = 0.0f;
      }
    } else { /* row-major A (forward: inp, dinp: dout): each row is contiguous along k */
#ifdef TL_PACK_T
      if (g->csA == 1 && MR <= 16) {
        pack_rows_T(src, g->rsA, mr, MR, kc, Ap, MR);
        continue;
      }
#endif
      for (int i = 0; i < mr; i++) {
        const float *s = src + (int64_t)i * g->rsA;
        for (int k = 0; k < kc; k++) Ap[k * MR + i] = s[(int64_t)k * g->csA];
      }
      for (int i = mr; i < MR; i++)
        for (int k = 0; k < kc; k++) Ap[k * MR + i] = 0.0f;
    }
  }
}

/* Bp: nc columns of B (from column j0, depth k0..k0+kc) as ceil(nc/NR) slivers of (kc, NR). */
static void pack_B(const gemm_t *g, int j0, int nc, int k0, int kc, float *restrict Bp) {
  for (int jr = 0; jr < nc; jr += NR, Bp += (int64_t)kc * NR) {
    const int nr = nc - jr < NR ? nc - jr : NR;
    const float *src = g->B + (int64_t)k0 * g->rsB + (int64_t)(j0 + jr) * g->csB;
    if (g->csB == 1) { /* row-major B (dinp: weight, dweight: inp): copy NR floats per k */
      for (int k = 0; k < kc; k++) {
        const float *s = src + (int64_t)k * g->rsB;
        float *d = Bp + k * NR;
        for (int j = 0; j < nr; j++) d[j] = s[j];
        for (int j = nr; j < NR; j++) d[j] = 0.0f;
      }
    } else { /* forward: B(k,j) = weight[j,k]; each weight row is contiguous along k */
#ifdef TL_PACK_T
      if (g->rsB == 1 && NR % 16 == 0) {
        for (int h = 0; h < NR; h += 16) {
          const int valid = nr - h < 0 ? 0 : nr - h > 16 ? 16 : nr - h;
          pack_rows_T(src + (int64_t)h * g->csB, g->csB, valid, 16, kc, Bp + h, NR);
        }
        continue;
      }
#endif
      for (int j = 0; j < nr; j++) {
        const float *s = src + (int64_t)j * g->csB;
        for (int k = 0; k < kc; k++) Bp[k * NR + j] = s[(int64_t)k * g->rsB];
      }
      for (int j = nr; j < NR; j++)
        for (int k = 0; k < kc; k++) Bp[k * NR + j] = 0.0f;
    }
  }
}

/* C[m0:m1, n0:n1] for one thread, blocked and packed. buf holds MC*KC + KC*NC floats. */
static void gemm_block(const gemm_t *g, int m0, int m1, int n0, int n1, float *buf) {
  float *Ap = buf, *Bp = buf + MC * KC;
  for (int jc = n0; jc < n1; jc += NC) {
    const int nc = n1 - jc < NC ? n1 - jc : NC;
    for (int pc = 0; pc < g->K; pc += KC) {
      const int kc = g->K - pc < KC ? g->K - pc : KC;
      const int mode = (pc == 0 && !g->accumulate) ? MK_SET : MK_ADD;
      pack_B(g, jc, nc, pc, kc, Bp);
      for (int ic = m0; ic < m1; ic += MC) {
        const int mc = m1 - ic < MC ? m1 - ic : MC;
        pack_A(g, ic, mc, pc, kc, Ap);
        for (int jr = 0; jr < nc; jr += NR) {
          const int nr = nc - jr < NR ? nc - jr : NR;
          const float *bias = (mode == MK_SET && g->bias) ? g->bias + jc + jr : NULL;
          const float *Bs = Bp + (int64_t)jr * kc;
          for (int ir = 0; ir < mc; ir += MR) {
            const int mr = mc - ir < MR ? mc - ir : MR;
            float *Cij = g->C + (int64_t)(ic + ir) * g->ldc + jc + jr;
            microkernel(kc, Ap + (int64_t)ir * kc, Bs, Cij, g->ldc, mr, nr, mode, bias);
          }
        }
      }
    }
  }
}

static int ceil_div(int a, int b) { return (a + b - 1) / b; }

/* Splits nt threads into a tm x tn grid over C's tiles, minimising an estimate of the slowest
 * thread's time: its flops plus the floats it packs (weighted as memory traffic). */
static void thread_grid(const gemm_t *g, int nt, int *tm_out, int *tn_out) {
  const int mt = ceil_div(g->M, MR), ntl = ceil_div(g->N, NR);
  double best = -1;
  *tm_out = 1, *tn_out = nt;
  for (int tm = 1; tm <= nt; tm++) {
    if (nt % tm) continue;
    const int tn = nt / tm;
    if (tm > mt || tn > ntl) continue;
    const double rows = (double)ceil_div(mt, tm) * MR, cols = (double)ceil_div(ntl, tn) * NR;
    const double flops = 2.0 * rows * cols * g->K;
    const double packed = (rows * ceil_div((int)cols, NC) + cols) * g->K;
    const double cost = flops + 32.0 * packed;
    if (best < 0 || cost < best) best = cost, *tm_out = tm, *tn_out = tn;
  }
}

static int gemm(const char *op, const gemm_t *g) {
  int nt = thread_count();
  /* Tiny products are not worth waking the pool. */
  if ((double)g->M * g->N * g->K < 64.0 * 64 * 64) nt = 1;
  const int mt = ceil_div(g->M, MR), ntl = ceil_div(g->N, NR);
  if (nt > mt * ntl) nt = mt * ntl;
  int tm = 1, tn = 1;
  thread_grid(g, nt, &tm, &tn);
  nt = tm * tn; /* a prime thread count larger than both tile counts leaves some threads idle */
  const int bn = ceil_div(g->N, NR) < NC / NR ? ceil_div(g->N, NR) * NR : NC;
  const size_t need = (size_t)MC * KC + (size_t)KC * bn;
  int failed = 0;
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(| : failed)
  {
    float *buf = pack_buffer(need);
    if (!buf) {
      failed = 1;
    } else {
      /* Normally block t is thread t's; a smaller team than asked for (a nested call, a thread
       * limit) takes several blocks each. A block's result does not depend on which thread runs it. */
      for (int b = thread_id(); b < tm * tn; b += team_size()) {
        const int ti = b / tn, tj = b % tn;
        const int m0 = (int)((int64_t)mt * ti / tm) * MR, m1i = (int)((int64_t)mt * (ti + 1) / tm) * MR;
        const int n0 = (int)((int64_t)ntl * tj / tn) * NR, n1i = (int)((int64_t)ntl * (tj + 1) / tn) * NR;
        const int m1 = m1i < g->M ? m1i : g->M, n1 = n1i < g->N ? n1i : g->N;
        if (m0 < m1 && n0 < n1) gemm_block(g, m0, m1, n0, n1, buf);
      }
    }
  }
  /* A thread whose buffer allocation failed computed nothing; the caller's C is partially written. */
  if (failed) return tl_fail(TL_ERR_OUT_OF_MEMORY, "%s: could not allocate %zu bytes of packing buffer", op, need * sizeof(float));
  return TL_OK;
}

/* --------------------------------------------------------------- N == 1 paths ---- */
/* dot(x, w) over C floats with a fixed summation order (vector lanes, then a fixed tree). */
static inline float dot(const float *restrict x, const float *restrict w, int C) {
#if defined(__AVX512F__)
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
  int c = 0;
  for (; c + 64 <= C; c += 64) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + c), _mm512_loadu_ps(w + c), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + c + 16), _mm512_loadu_ps(w + c + 16), a1);
    a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + c + 32), _mm512_loadu_ps(w + c + 32), a2);
    a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + c + 48), _mm512_loadu_ps(w + c + 48), a3);
  }
  for (; c < C; c += 16) {
    const __mmask16 m = mk_mask16(C - c);
    a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + c), _mm512_maskz_loadu_ps(m, w + c), a0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
#else
  float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
  for (int c = 0; c < C; c++) acc += x[c] * w[c];
  return acc;
#endif
}

#if defined(__AVX512F__)
/* out[r] = dot(x, w + r*ld) for 4 rows: one load of x serves 4 rows, 8 independent FMA chains. Each
 * row's arithmetic is the same whichever group it is in, so callers may repeat a row to fill a group. */
static inline void dot4(const float *restrict x, const float *w0, const float *w1, const float *w2, const float *w3,
                        int C, float out[4]) {
  const float *w[4] = {w0, w1, w2, w3};
  __m512 a[4][2];
  for (int r = 0; r < 4; r++) a[r][0] = a[r][1] = _mm512_setzero_ps();
  int c = 0;
  for (; c + 32 <= C; c += 32) {
    const __m512 x0 = _mm512_loadu_ps(x + c), x1 = _mm512_loadu_ps(x + c + 16);
    for (int r = 0; r < 4; r++) {
      a[r][0] = _mm512_fmadd_ps(x0, _mm512_loadu_ps(w[r] + c), a[r][0]);
      a[r][1] = _mm512_fmadd_ps(x1, _mm512_loadu_ps(w[r] + c + 16), a[r][1]);
    }
  }
  for (; c < C; c += 16) {
    const __mmask16 m = mk_mask16(C - c);
    const __m512 x0 = _mm512_maskz_loadu_ps(m, x + c);
    for (int r = 0; r < 4; r++) a[r][0] = _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(m, w[r] + c), a[r][0]);
  }
  for (int r = 0; r < 4; r++) out[r] = _mm512_reduce_add_ps(_mm512_add_ps(a[r][0], a[r][1]));
}
#endif

/* out (OC) = weight (OC,C) @ inp (C) + bias: each weight row is read once. */
static void gemv_forward(float *out, const float *inp, const float *weight, const float *bias, int C, int OC) {
  const int nt = (double)C * OC < 32768.0 ? 1 : thread_count();
  (void)nt; /* unused without OpenMP */
#if defined(__AVX512F__)
  /* Groups of 4 rows by absolute index, so the grouping (and every bit) is independent of threads.
   * Measured here: +20% at C = 2048 (1.1B), but -20% at C = 288 (15M), where rows are short. */
  if (C >= 1024) {
    const int groups = ceil_div(OC, 4);
    /* Dynamic chunks: rows are independent, so results stay bit-identical, and a thread that the OS
     * descheduled no longer stalls the whole product (decode is memory bound and latency critical). */
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 16)
    for (int gi = 0; gi < groups; gi++) {
      const int o = gi * 4, n = OC - o < 4 ? OC - o : 4;
      const float *w[4];
      for (int r = 0; r < 4; r++) w[r] = weight + (int64_t)(o + (r < n ? r : n - 1)) * C;
      float d[4];
      dot4(inp, w[0], w[1], w[2], w[3], C, d);
      for (int r = 0; r < n; r++) out[o + r] = d[r] + (bias ? bias[o + r] : 0.0f);
    }
    return;
  }
#endif
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 64)
  for (int o = 0; o < OC; o++) out[o] = dot(inp, weight + (int64_t)o * C, C) + (bias ? bias[o] : 0.0f);
}

/* dinp (C) += dout (OC) @ weight (OC,C): columns are split across threads in 256-float strips,
 * each strip accumulates every weight row in o order. */
static void gemv_backward_dinp(float *dinp, const float *dout, const float *weight, int C, int OC) {
  enum { S = 256 };
  const int strips = ceil_div(C, S);
  const int nt = (double)C * OC < 32768.0 ? 1 : thread_count();
  (void)nt;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
  for (int s = 0; s < strips; s++) {
    const int c0 = s * S, cn = C - c0 < S ? C - c0 : S;
    float acc[S];
    for (int c = 0; c < cn; c++) acc[c] = dinp[c0 + c];
    for (int o = 0; o < OC; o++) {
      const float g = dout[o];
      const float *w = weight + (int64_t)o * C + c0;
#pragma omp simd
      for (int c = 0; c < cn; c++) acc[c] += g * w[c];
    }
    for (int c = 0; c < cn; c++) dinp[c0 + c] = acc[c];
  }
}

/* dbias (OC) += sum_n dout (N,OC): 256-column strips per thread, rows summed in n order. */
static void colsum(float *dbias, const float *dout, int N, int OC) {
  enum { S = 256 };
  const int strips = ceil_div(OC, S);
  const int nt = (double)N * OC < 65536.0 ? 1 : thread_count();
  (void)nt;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
  for (int s = 0; s < strips; s++) {
    const int o0 = s * S, on = OC - o0 < S ? OC - o0 : S;
    float acc[S];
    for (int o = 0; o < on; o++) acc[o] = 0.0f;
    for (int n = 0; n < N; n++) {
      const float *d = dout + (int64_t)n * OC + o0;
#pragma omp simd
      for (int o = 0; o < on; o++) acc[o] += d[o];
    }
    for (int o = 0; o < on; o++) dbias[o0 + o] += acc[o];
  }
}

/* ------------------------------------------------------------------------ ABI ---- */
static int check(const char *who, const void *a, const void *b, int N, int C, int OC) {
  TL_REQUIRE(a != NULL && b != NULL, "%s: NULL pointer", who);
  TL_REQUIRE(N > 0 && C > 0 && OC > 0, "%s: sizes must be positive (N=%d C=%d OC=%d)", who, N, C, OC);
  return TL_OK;
}

/* out (N,OC), inp (N,C), weight (OC,C), bias (OC) nullable */
int tl_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                      int C, int OC) {
  int rc = check("tl_matmul_forward", out, inp, N, C, OC);
  if (rc) return rc;
  TL_REQUIRE_PTR(weight);
  if (N == 1) {
    gemv_forward(out, inp, weight, bias, C, OC);
    return TL_OK;
  }
  const gemm_t g = {.M = N, .N = OC, .K = C, .A = inp, .rsA = C, .csA = 1, .B = weight, .rsB = 1, .csB = C,
                    .C = out, .ldc = OC, .accumulate = 0, .bias = bias};
  return gemm("tl_matmul_forward", &g);
}

/* dinp (N,C) += dout (N,OC) @ weight (OC,C); dweight (OC,C) += dout^T @ inp (N,C); dbias (OC) += colsum */
int tl_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                       const float *inp, const float *weight, int N, int C, int OC) {
  int rc = check("tl_matmul_backward", dout, inp, N, C, OC);
  if (rc) return rc;
  TL_REQUIRE_PTR(weight);
  if (dinp) {
    if (N == 1) {
      gemv_backward_dinp(dinp, dout, weight, C, OC);
    } else {
      const gemm_t g = {.M = N, .N = C, .K = OC, .A = dout, .rsA = OC, .csA = 1, .B = weight, .rsB = C, .csB = 1,
                        .C = dinp, .ldc = C, .accumulate = 1, .bias = NULL};
      if ((rc = gemm("tl_matmul_backward", &g))) return rc;
    }
  }
  if (dweight) { /* N == 1 is a rank-1 update: K = 1 through the same kernel is already memory bound */
    const gemm_t g = {.M = OC, .N = C, .K = N, .A = dout, .rsA = 1, .csA = OC, .B = inp, .rsB = C, .csB = 1,
                      .C = dweight, .ldc = C, .accumulate = 1, .bias = NULL};
    if ((rc = gemm("tl_matmul_backward", &g))) return rc;
  }
  if (dbias) colsum(dbias, dout, N, OC);
  return TL_OK;
}
