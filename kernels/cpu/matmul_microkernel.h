/* Register-tiled GEMM microkernels for matmul.c; not part of the ABI.
 *
 * Every kernel computes one MR x NR tile of C from packed panels:
 *   acc (MR,NR) = sum_k Ap[k*MR + i] * Bp[k*NR + j]      (k in [0,kc), in order)
 * and then stores the first mr rows / nr columns of it:
 *   mode MK_ADD:  C += acc            (gradients accumulate; later K blocks of any product)
 *   mode MK_SET:  C  = acc (+ bias)   (first K block of the forward)
 * The accumulation order over k is fixed by the code, never by the thread count, so results are
 * bit-for-bit repeatable. Packed panels are zero-padded to MR rows / NR columns, so the inner loop
 * never branches on edges; only the store does.
 *
 * Three variants, chosen at compile time:
 *   AVX-512: 14 x 32 (28 zmm accumulators, 2 zmm of B, 1 broadcast of A: 31 of 32 registers)
 *   AVX2+FMA: 6 x 16 (12 ymm accumulators, 2 ymm of B, 1 broadcast: 15 of 16 registers)
 *   portable: 4 x 8 in plain C; GCC vectorises the j loop and keeps acc in registers.
 */
#ifndef TL_MATMUL_MICROKERNEL_H
#define TL_MATMUL_MICROKERNEL_H

#include <stdint.h>

enum { MK_SET = 0, MK_ADD = 1 };

#if defined(__AVX512F__)
#include <immintrin.h>
#define MK_NAME "avx512 14x32"
enum { MR = 14, NR = 32 };

static inline __mmask16 mk_mask16(int n) { return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

static void microkernel(int kc, const float *restrict Ap, const float *restrict Bp, float *restrict C,
                        int64_t ldc, int mr, int nr, int mode, const float *restrict bias) {
  __m512 c[MR][2];
#pragma GCC unroll 14
  for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int k = 0; k < kc; k++) {
    const __m512 b0 = _mm512_load_ps(Bp), b1 = _mm512_load_ps(Bp + 16);
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
      const __m512 a = _mm512_set1_ps(Ap[i]);
      c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
    }
    Ap += MR;
    Bp += NR;
  }
  const __mmask16 m0 = mk_mask16(nr), m1 = mk_mask16(nr - 16);
  __m512 add0 = _mm512_setzero_ps(), add1 = _mm512_setzero_ps();
  if (mode == MK_SET && bias) {
    add0 = _mm512_maskz_loadu_ps(m0, bias);
    add1 = _mm512_maskz_loadu_ps(m1, bias + 16);
  }
#pragma GCC unroll 14
  for (int i = 0; i < MR; i++) {
    if (i >= mr) break;
    float *row = C + (int64_t)i * ldc;
    if (mode == MK_ADD) {
      add0 = _mm512_maskz_loadu_ps(m0, row);
      add1 = _mm512_maskz_loadu_ps(m1, row + 16);
    }
    _mm512_mask_storeu_ps(row, m0, _mm512_add_ps(c[i][0], add0));
    _mm512_mask_storeu_ps(row + 16, m1, _mm512_add_ps(c[i][1], add1));
  }
}

#else /* ------------------------------------------------------------ AVX2 / portable ---- */

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define MK_NAME "avx2 6x16"
enum { MR = 6, NR = 16 };

/* Writes the full MR x NR accumulator tile to acc (row-major). */
static inline void mk_tile(int kc, const float *restrict Ap, const float *restrict Bp, float *restrict acc) {
  __m256 c[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = _mm256_setzero_ps();
  for (int k = 0; k < kc; k++) {
    const __m256 b0 = _mm256_load_ps(Bp), b1 = _mm256_load_ps(Bp + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
      const __m256 a = _mm256_broadcast_ss(Ap + i);
      c[i][0] = _mm256_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm256_fmadd_ps(a, b1, c[i][1]);
    }
    Ap += MR;
    Bp += NR;
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++) {
    _mm256_storeu_ps(acc + i * NR, c[i][0]);
    _mm256_storeu_ps(acc + i * NR + 8, c[i][1]);
  }
}
#else
#define MK_NAME "portable 4x8"
/* 4x8: 8 SSE registers of accumulators. GCC keeps this tile in registers and vectorises j; 4x16 and
 * 8x8 spill and ran 4x slower (9 vs 40 GFLOP/s per core with -march=x86-64). */
enum { MR = 4, NR = 8 };

static inline void mk_tile(int kc, const float *restrict Ap, const float *restrict Bp, float *restrict acc) {
  float c[MR][NR];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) c[i][j] = 0.0f;
  for (int k = 0; k < kc; k++) {
    for (int i = 0; i < MR; i++) {
      const float a = Ap[i];
      for (int j = 0; j < NR; j++) c[i][j] += a * Bp[j];
    }
    Ap += MR;
    Bp += NR;
  }
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) acc[i * NR + j] = c[i][j];
}
#endif

static void microkernel(int kc, const float *restrict Ap, const float *restrict Bp, float *restrict C,
                        int64_t ldc, int mr, int nr, int mode, const float *restrict bias) {
  float acc[MR * NR] __attribute__((aligned(64)));
  mk_tile(kc, Ap, Bp, acc);
  for (int i = 0; i < mr; i++) {
    float *row = C + (int64_t)i * ldc;
    const float *a = acc + i * NR;
    if (mode == MK_ADD)
      for (int j = 0; j < nr; j++) row[j] += a[j];
    else if (bias)
      for (int j = 0; j < nr; j++) row[j] = a[j] + bias[j];
    else
      for (int j = 0; j < nr; j++) row[j] = a[j];
  }
}
#endif

#endif
