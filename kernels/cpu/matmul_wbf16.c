/* Linear layer with bf16-STORED weights for inference: out (N,OC) = inp (N,C) @ float(weight)^T.
 *
 * Weights are bf16 bits (the upper half of an fp32), activations and the result fp32, and every
 * product is float(weight) * activation accumulated in fp32: bf16 -> fp32 is exact (a 16-bit shift),
 * so this computes exactly the fp32 matmul of the bf16-rounded weights, with the activations at full
 * precision. What halves is the weight memory and the bytes streamed per token.
 *
 *   N <= SMALL_N (decode: one token per sequence) is matrix-vector and memory bound: each weight row
 *   is read once, widened 16 lanes at a time in registers (vpmovzxwd + vpslld) and FMA'd against
 *   the fp32 activations. Rows are grouped by 4 (one activation load serves 4 rows) from C >= 1024
 *   on, like matmul.c's gemv: the accumulation order mirrors matmul.c's N == 1 path on purpose, so
 *   today the results are the fp32 kernel's bits on rounded weights (tests only rely on a tolerance).
 *   Threads take chunks of rows (dynamic, see gemv_wbf16); every output element is one thread's
 *   fixed-order dot product, so the result does not depend on the split.
 *
 *   Larger N (prefill) is compute bound: a packed GEMM on matmul_microkernel.h's register tile, where
 *   packing B (weight^T slivers, KC x NR) widens bf16 to fp32. For each KC slice, the thread's rows
 *   of A are packed once (<= MC rows, L2), then each KC x NR sliver of B is converted into an L1
 *   buffer and immediately used by every MR-row tile: the weights stream once per MC rows of tokens.
 *   Same KC blocking and k order as matmul.c. Threads own disjoint tiles of C (a tm x tn grid).
 *
 * Why not AVX512_BF16 (vdpbf16ps), measured on this Zen 5 box (2 threads, shared): it needs both
 * operands in bf16. For decode we tried splitting each activation into hi + lo bf16 (x to ~2^-17, two
 * dot instructions per 32 weights): 0.85-1.05x of this widening path at the 1.1B shapes (memory bound
 * either way) and 0.26x at the 15M LM head (C = 288), with results 2.4e-6 away; so decode widens the
 * weights and keeps the activations exact. For prefill vdpbf16ps peaks at ~2x the fp32 FMA rate
 * (200 vs 110 GFLOP/s per core), but only with the activations rounded to bf16 (8 bits; llama.cpp
 * rounds them to f16 for F16 weights): not done here, so prefill runs at the fp32 GEMM's speed with
 * the fp32 GEMM's numerics on the rounded weights.
 */
#include "common.h"
#include "matmul_microkernel.h"

#include <stdlib.h>
#include <string.h>

enum { KC = 256, MC = MR * 12, SMALL_N = 4 };

static inline float bf16f(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static int ceil_div(int a, int b) { return (a + b - 1) / b; }

#ifdef _OPENMP
static int thread_count(void) { return omp_get_max_threads(); }
#else
static int thread_count(void) { return 1; }
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define WBF16_AVX512 1
/* 16 bf16 -> 16 fp32 (exact). */
static inline __m512 ld16(const uint16_t *p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
static inline __m512 ld16m(__mmask16 m, const uint16_t *p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
#endif

/* ------------------------------------------------------------------ small N ---- */
/* dot(x, float(w)) over C, in matmul.c dot()'s order (4 accumulators over 64-wide steps, then a tree). */
static inline float dot1(const float *restrict x, const uint16_t *restrict w, int C) {
#ifdef WBF16_AVX512
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
  int c = 0;
  for (; c + 64 <= C; c += 64) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + c), ld16(w + c), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + c + 16), ld16(w + c + 16), a1);
    a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + c + 32), ld16(w + c + 32), a2);
    a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + c + 48), ld16(w + c + 48), a3);
  }
  for (; c < C; c += 16) {
    const __mmask16 m = mk_mask16(C - c);
    a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + c), ld16m(m, w + c), a0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
#else
  float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
  for (int c = 0; c < C; c++) acc += x[c] * bf16f(w[c]);
  return acc;
#endif
}

#ifdef WBF16_AVX512
/* 4 rows against one x: 8 independent FMA chains, one activation load per 4 rows (matmul.c dot4's order). */
static inline void dot4(const float *restrict x, const uint16_t *const w[4], int C, float out[4]) {
  __m512 a[4][2];
  for (int r = 0; r < 4; r++) a[r][0] = a[r][1] = _mm512_setzero_ps();
  int c = 0;
  for (; c + 32 <= C; c += 32) {
    const __m512 x0 = _mm512_loadu_ps(x + c), x1 = _mm512_loadu_ps(x + c + 16);
    for (int r = 0; r < 4; r++) {
      a[r][0] = _mm512_fmadd_ps(x0, ld16(w[r] + c), a[r][0]);
      a[r][1] = _mm512_fmadd_ps(x1, ld16(w[r] + c + 16), a[r][1]);
    }
  }
  for (; c < C; c += 16) {
    const __mmask16 m = mk_mask16(C - c);
    const __m512 x0 = _mm512_maskz_loadu_ps(m, x + c);
    for (int r = 0; r < 4; r++) a[r][0] = _mm512_fmadd_ps(x0, ld16m(m, w[r] + c), a[r][0]);
  }
  for (int r = 0; r < 4; r++) out[r] = _mm512_reduce_add_ps(_mm512_add_ps(a[r][0], a[r][1]));
}
#endif

/* out (N,OC) for small N: a group of weight rows is read from memory once and stays in L1/L2
 * while each of the N activation rows is dotted with it. */
static void gemv_wbf16(float *out, const float *inp, const uint16_t *weight, int N, int C, int OC) {
  const int nt = (double)N * C * OC < 32768.0 ? 1 : thread_count();
  (void)nt;
#ifdef WBF16_AVX512
  if (C >= 1024) {
    const int groups = ceil_div(OC, 4);
    /* Dynamic chunks of 16 groups, as in matmul.c's gemv: rows are independent and each output is
     * one thread's fixed-order dot product, so results are bit-identical for any split, and a thread
     * the OS deschedules on a shared machine no longer stalls the whole product (a static split made
     * 1.1B decode swing 0.58x-1.83x against llama.cpp across runs; BENCHMARKS.md). */
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 16)
    for (int gi = 0; gi < groups; gi++) {
      const int o = gi * 4, n4 = OC - o < 4 ? OC - o : 4;
      const uint16_t *w[4];
      for (int r = 0; r < 4; r++) w[r] = weight + (int64_t)(o + (r < n4 ? r : n4 - 1)) * C;
      for (int n = 0; n < N; n++) {
        float d[4];
        dot4(inp + (int64_t)n * C, w, C, d);
        for (int r = 0; r < n4; r++) out[(int64_t)n * OC + o + r] = d[r];
      }
    }
    return;
  }
#endif
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 64)
  for (int o = 0; o < OC; o++) {
    const uint16_t *w = weight + (int64_t)o * C;
    for (int n = 0; n < N; n++) out[(int64_t)n * OC + o] = dot1(inp + (int64_t)n * C, w, C);
  }
}

/* ---------------------------------------------------------------- packing ---- */
#ifdef WBF16_AVX512
/* In-register transpose of 16 rows of 16 floats: on return r[j] holds column j. */
static inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int a = 0; a < 8; a++) {
    t[2 * a] = _mm512_unpacklo_ps(r[2 * a], r[2 * a + 1]);
    t[2 * a + 1] = _mm512_unpackhi_ps(r[2 * a], r[2 * a + 1]);
  }
  for (int b = 0; b < 4; b++) {
    const __m512d t0 = _mm512_castps_pd(t[4 * b]), t1 = _mm512_castps_pd(t[4 * b + 1]);
    const __m512d t2 = _mm512_castps_pd(t[4 * b + 2]), t3 = _mm512_castps_pd(t[4 * b + 3]);
    r[4 * b] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    r[4 * b + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    r[4 * b + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    r[4 * b + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  for (int c = 0; c < 4; c++) {
    const __m512 v0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44), v1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE);
    const __m512 v2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44), v3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);
    t[c] = _mm512_shuffle_f32x4(v0, v2, 0x88);
    t[4 + c] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
    t[8 + c] = _mm512_shuffle_f32x4(v1, v3, 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
  }
  for (int j = 0; j < 16; j++) r[j] = t[j];
}
#endif

/* Ap: rows [i0, i0+mc) of inp at depth [k0, k0+kc) as slivers of (kc, MR), zero-padded. */
static void pack_A(const float *inp, int64_t C, int i0, int mc, int k0, int kc, float *restrict Ap) {
  for (int ir = 0; ir < mc; ir += MR, Ap += (int64_t)kc * MR) {
    const int mr = mc - ir < MR ? mc - ir : MR;
    const float *src = inp + (int64_t)(i0 + ir) * C + k0;
#ifdef WBF16_AVX512
    if (MR <= 16) {
      const __mmask16 sm = mk_mask16(MR);
      for (int k = 0; k < kc; k += 16) {
        const int kb = kc - k < 16 ? kc - k : 16;
        const __mmask16 lm = mk_mask16(kb);
        __m512 r[16];
        for (int i = 0; i < 16; i++) r[i] = i < mr ? _mm512_maskz_loadu_ps(lm, src + (int64_t)i * C + k) : _mm512_setzero_ps();
        transpose16(r);
        for (int q = 0; q < kb; q++) _mm512_mask_storeu_ps(Ap + (int64_t)(k + q) * MR, sm, r[q]);
      }
      continue;
    }
#endif
    for (int i = 0; i < mr; i++)
      for (int k = 0; k < kc; k++) Ap[k * MR + i] = src[(int64_t)i * C + k];
    for (int i = mr; i < MR; i++)
      for (int k = 0; k < kc; k++) Ap[k * MR + i] = 0.0f;
  }
}

/* Bp (kc, NR): Bp[k*NR + j] = float(weight[j0+j, k0+k]) for j < nr, 0 beyond. */
static void pack_B(const uint16_t *weight, int64_t C, int j0, int nr, int k0, int kc, float *restrict Bp) {
  const uint16_t *src = weight + (int64_t)j0 * C + k0;
#ifdef WBF16_AVX512
  if (NR % 16 == 0) {
    for (int h = 0; h < NR; h += 16) {
      const int valid = nr - h < 0 ? 0 : nr - h > 16 ? 16 : nr - h;
      for (int k = 0; k < kc; k += 16) {
        const int kb = kc - k < 16 ? kc - k : 16;
        const __mmask16 lm = mk_mask16(kb);
        __m512 r[16];
        for (int i = 0; i < 16; i++) r[i] = i < valid ? ld16m(lm, src + (int64_t)(h + i) * C + k) : _mm512_setzero_ps();
        transpose16(r);
        for (int q = 0; q < kb; q++) _mm512_storeu_ps(Bp + (int64_t)(k + q) * NR + h, r[q]);
      }
    }
    return;
  }
#endif
  for (int j = 0; j < nr; j++)
    for (int k = 0; k < kc; k++) Bp[k * NR + j] = bf16f(src[(int64_t)j * C + k]);
  for (int j = nr; j < NR; j++)
    for (int k = 0; k < kc; k++) Bp[k * NR + j] = 0.0f;
}

/* Per-thread packing buffer, grown on demand and reused (never freed: a thread-exit destructor
 * would point into this library after bun:ffi closes it). Bounded by MC*KC + KC*NR floats. */
static _Thread_local float *wbuf;
static _Thread_local size_t wcap;

static float *wbf16_buffer(size_t floats) {
  if (floats <= wcap) return wbuf;
  void *p = NULL;
  if (posix_memalign(&p, 64, floats * sizeof(float)) != 0) return NULL;
  free(wbuf);
  wbuf = p;
  wcap = floats;
  return wbuf;
}

/* out[m0:m1, n0:n1] = inp[m0:m1] @ float(weight[n0:n1])^T for one thread. */
static void gemm_block(float *out, const float *inp, const uint16_t *weight, int C, int OC, int m0, int m1, int n0,
                       int n1, float *buf) {
  float *Ap = buf, *Bp = buf + (size_t)MC * KC;
  for (int ic = m0; ic < m1; ic += MC) {
    const int mc = m1 - ic < MC ? m1 - ic : MC;
    for (int pc = 0; pc < C; pc += KC) {
      const int kc = C - pc < KC ? C - pc : KC;
      const int mode = pc == 0 ? MK_SET : MK_ADD;
      pack_A(inp, C, ic, mc, pc, kc, Ap);
      for (int jr = n0; jr < n1; jr += NR) {
        const int nr = n1 - jr < NR ? n1 - jr : NR;
        pack_B(weight, C, jr, nr, pc, kc, Bp);
        for (int ir = 0; ir < mc; ir += MR) {
          const int mr = mc - ir < MR ? mc - ir : MR;
          microkernel(kc, Ap + (int64_t)ir * kc, Bp, out + (int64_t)(ic + ir) * OC + jr, OC, mr, nr, mode, NULL);
        }
      }
    }
  }
}

static int gemm_wbf16(float *out, const float *inp, const uint16_t *weight, int N, int C, int OC) {
  const int mt = ceil_div(N, MR), ntl = ceil_div(OC, NR);
  int nt = thread_count();
  if ((double)N * C * OC < 64.0 * 64 * 64) nt = 1;
  if (nt > mt * ntl) nt = mt * ntl;
  /* Split the weight's columns first (each thread then streams only its share of the weights);
   * rows of tokens only when there are fewer column tiles than threads. */
  int tn = nt < ntl ? nt : ntl, tm = nt / tn;
  if (tm > mt) tm = mt;
  nt = tm * tn;
  const size_t need = (size_t)MC * KC + (size_t)KC * NR;
  int failed = 0;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static) reduction(| : failed)
  for (int b = 0; b < nt; b++) {
    float *buf = wbf16_buffer(need);
    if (!buf) {
      failed = 1;
      continue;
    }
    const int ti = b / tn, tj = b % tn;
    const int m0 = (int)((int64_t)mt * ti / tm) * MR, m1i = (int)((int64_t)mt * (ti + 1) / tm) * MR;
    const int n0 = (int)((int64_t)ntl * tj / tn) * NR, n1i = (int)((int64_t)ntl * (tj + 1) / tn) * NR;
    const int m1 = m1i < N ? m1i : N, n1 = n1i < OC ? n1i : OC;
    if (m0 < m1 && n0 < n1) gemm_block(out, inp, weight, C, OC, m0, m1, n0, n1, buf);
  }
  if (failed)
    return tl_fail(TL_ERR_OUT_OF_MEMORY, "tl_matmul_forward_wbf16: could not allocate %zu bytes of packing buffer",
                   need * sizeof(float));
  return TL_OK;
}

/* ------------------------------------------------------------------------ ABI ---- */
/* out (N,OC) fp32, inp (N,C) fp32, weight (OC,C) bf16 */
int tl_matmul_forward_wbf16(float *out, const float *inp, const uint16_t *weight, int N, int C, int OC) {
  TL_REQUIRE(out != NULL && inp != NULL && weight != NULL, "tl_matmul_forward_wbf16: NULL pointer");
  TL_REQUIRE(N > 0 && C > 0 && OC > 0, "tl_matmul_forward_wbf16: sizes must be positive (N=%d C=%d OC=%d)", N, C, OC);
  if (N <= SMALL_N) {
    gemv_wbf16(out, inp, weight, N, C, OC);
    return TL_OK;
  }
  return gemm_wbf16(out, inp, weight, N, C, OC);
}
