/* Causal grouped-query attention, FlashAttention-2 style on the CPU.
 *
 * Forward: for each (b, h, block of BQ queries) keep a running row max m, row sum l and an
 * unnormalised output accumulator while walking the key blocks left of the diagonal; no (T,T)
 * matrix exists. lse = m + log(l) is saved so the backward can recompute P = exp(S - lse).
 *
 * Backward, two passes so that every gradient row has exactly one writer (deterministic, no
 * atomics, independent of the thread count):
 *   pass 1, over (b, kv head, key block): dV_j += P^T dO, dK_j += scale * dS^T Q, summing over
 *           the NH/NKV query heads that share the kv head;
 *   pass 2, over (b, head, query block): dQ_i += scale * dS K.
 * with dP = dO V^T, dS = P * (dP - D), D = rowsum(dO * O). Pass 2 recomputes S and dP, which
 * costs 2 of the 7 tile products but needs no per-thread dQ buffers.
 *
 * Layouts: q, out, dq (B,T,NH,HD); k, v, dk, dv (B,T,NKV,HD); lse (B,NH,T). Head h of row t is
 * at ((b*T + t)*NH + h)*HD, so a head's rows are strided by NH*HD; K/V are read in place for
 * GQA (query head h uses kv head h / (NH/NKV)), never copied per query head.
 */
#include "common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

/* Tile sizes. BK is the width of score rows (vectorised over keys); BQ the rows per task. */
#define BQ 64
#define BK 64

static inline int imin(int a, int b) { return a < b ? a : b; }

/* ------------------------------------------------------------------ tile products ---- */

/* C (n,BK) = A (n,HD; row stride lda) @ Bt (HD,BK). Bt's columns past the valid keys are zero. */
static void mm_abt(float *restrict C, const float *restrict A, int64_t lda,
                   const float *restrict Bt, int n, int HD) {
  for (int i = 0; i < n; i++) {
    float *c = C + (int64_t)i * BK;
    const float *a = A + (int64_t)i * lda;
    for (int j = 0; j < BK; j++) c[j] = 0.0f;
    for (int d = 0; d < HD; d++) {
      const float ad = a[d];
      const float *bt = Bt + (int64_t)d * BK;
      for (int j = 0; j < BK; j++) c[j] += ad * bt[j];
    }
  }
}

/* acc (n,HD) += P (n,BK)[:, :nk] @ X (nk,HD; row stride ldx) */
static void mm_px(float *restrict acc, const float *restrict P, const float *restrict X,
                  int64_t ldx, int n, int nk, int HD) {
  for (int i = 0; i < n; i++) {
    float *o = acc + (int64_t)i * HD;
    const float *p = P + (int64_t)i * BK;
    for (int j = 0; j < nk; j++) {
      const float pj = p[j];
      const float *x = X + (int64_t)j * ldx;
      for (int d = 0; d < HD; d++) o[d] += pj * x[d];
    }
  }
}

/* acc (nk,HD) += P (n,BK)[:, :nk]^T @ X (n,HD; row stride ldx) */
static void mm_ptx(float *restrict acc, const float *restrict P, const float *restrict X,
                   int64_t ldx, int n, int nk, int HD) {
  for (int j = 0; j < nk; j++) {
    float *o = acc + (int64_t)j * HD;
    for (int i = 0; i < n; i++) {
      const float pij = P[(int64_t)i * BK + j];
      const float *x = X + (int64_t)i * ldx;
      for (int d = 0; d < HD; d++) o[d] += pij * x[d];
    }
  }
}

/* Bt (HD,BK) = rows [0,nk) of X (row stride ldx) transposed; columns nk..BK-1 zero. */
static void transpose_tile(float *restrict Bt, const float *restrict X, int64_t ldx, int nk, int HD) {
  for (int d = 0; d < HD; d++) {
    float *bt = Bt + (int64_t)d * BK;
    for (int j = 0; j < nk; j++) bt[j] = X[(int64_t)j * ldx + d];
    for (int j = nk; j < BK; j++) bt[j] = 0.0f;
  }
}

/* ------------------------------------------------------------------------ checks ---- */

static int check(const char *who, int B, int T, int NH, int NKV, int HD) {
  TL_REQUIRE(B > 0 && T > 0 && NH > 0 && NKV > 0 && HD > 0,
             "%s: sizes must be positive (B=%d T=%d NH=%d NKV=%d HD=%d)", who, B, T, NH, NKV, HD);
  TL_REQUIRE(NH % NKV == 0, "%s: NH=%d must be a multiple of NKV=%d (grouped-query attention)", who,
             NH, NKV);
  TL_REQUIRE(HD <= 65536, "%s: head dim HD=%d is unreasonably large", who, HD);
  return TL_OK;
}

/* ----------------------------------------------------------------------- forward ---- */

/* Per-thread workspace of the forward, in floats. */
static int64_t fwd_ws_floats(int HD) {
  return (int64_t)BQ * HD /*Qs*/ + (int64_t)HD * BK /*Kt*/ + (int64_t)BQ * BK /*S*/ +
         (int64_t)BQ * HD /*acc*/ + 2 * BQ /*m,l*/;
}

static void fwd_task(float *out, float *lse, const float *q, const float *k, const float *v, int b,
                     int h, int qb, int T, int NH, int NKV, int HD, float scale, float *ws) {
  const int G = NH / NKV, kvh = h / G;
  const int q0 = qb * BQ, nq = imin(BQ, T - q0);
  const int64_t qs = (int64_t)NH * HD, ks = (int64_t)NKV * HD;
  const float *qbase = q + (int64_t)b * T * qs + (int64_t)h * HD;
  const float *kbase = k + (int64_t)b * T * ks + (int64_t)kvh * HD;
  const float *vbase = v + (int64_t)b * T * ks + (int64_t)kvh * HD;
  float *Qs = ws, *Kt = Qs + (int64_t)BQ * HD, *S = Kt + (int64_t)HD * BK, *acc = S + BQ * BK;
  float *m = acc + (int64_t)BQ * HD, *l = m + BQ;

  for (int i = 0; i < nq; i++) {
    const float *qr = qbase + (int64_t)(q0 + i) * qs;
    for (int d = 0; d < HD; d++) Qs[(int64_t)i * HD + d] = qr[d] * scale;
    m[i] = -INFINITY;
    l[i] = 0.0f;
  }
  memset(acc, 0, sizeof(float) * (size_t)nq * HD);

  const int kend = q0 + nq; /* keys [0, kend) are visible to some row of this block */
  for (int k0 = 0; k0 < kend; k0 += BK) {
    const int nk = imin(BK, kend - k0);
    transpose_tile(Kt, kbase + (int64_t)k0 * ks, ks, nk, HD);
    mm_abt(S, Qs, HD, Kt, nq, HD);
    for (int i = 0; i < nq; i++) {
      float *s = S + (int64_t)i * BK;
      const int jn = imin(nk, q0 + i - k0 + 1); /* causal: key k0+j <= query q0+i */
      if (jn <= 0) {
        for (int j = 0; j < nk; j++) s[j] = 0.0f;
        continue;
      }
      float mx = s[0];
      for (int j = 1; j < jn; j++) mx = s[j] > mx ? s[j] : mx;
      const float mnew = mx > m[i] ? mx : m[i];
      const float alpha = expf(m[i] - mnew); /* 0 on the first block (m = -inf) */
      float sum = 0.0f;
      for (int j = 0; j < jn; j++) {
        const float p = expf(s[j] - mnew);
        s[j] = p;
        sum += p;
      }
      for (int j = jn; j < nk; j++) s[j] = 0.0f;
      l[i] = l[i] * alpha + sum;
      m[i] = mnew;
      if (alpha != 1.0f) {
        float *o = acc + (int64_t)i * HD;
        for (int d = 0; d < HD; d++) o[d] *= alpha;
      }
    }
    mm_px(acc, S, vbase + (int64_t)k0 * ks, ks, nq, nk, HD);
  }

  float *obase = out + (int64_t)b * T * qs + (int64_t)h * HD;
  float *lrow = lse + ((int64_t)b * NH + h) * T + q0;
  for (int i = 0; i < nq; i++) {
    const float inv = 1.0f / l[i];
    float *o = obase + (int64_t)(q0 + i) * qs;
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
  const float scale = (float)(1.0 / sqrt((double)HD));
  const int NQB = (T + BQ - 1) / BQ;
  const int64_t ntasks = (int64_t)B * NH * NQB;
  int oom = 0;
#pragma omp parallel
  {
    float *ws = aligned_alloc(64, (size_t)((fwd_ws_floats(HD) * 4 + 63) / 64 * 64));
    if (!ws) {
#pragma omp atomic write
      oom = 1;
    }
    /* Round-robin (static,1) balances the causal triangle: later query blocks cost more. */
#pragma omp for schedule(static, 1)
    for (int64_t task = 0; task < ntasks; task++) {
      if (!ws) continue;
      const int qb = (int)(task % NQB);
      const int h = (int)((task / NQB) % NH);
      const int b = (int)(task / ((int64_t)NQB * NH));
      fwd_task(out, lse, q, k, v, b, h, qb, T, NH, NKV, HD, scale, ws);
    }
    free(ws);
  }
  if (oom) return tl_fail(TL_ERR_OUT_OF_MEMORY, "%s: could not allocate the per-thread workspace", who);
  return TL_OK;
}

/* ---------------------------------------------------------------------- backward ---- */

/* Loads a query block: Qs = scale * Q, dO, lse and D = rowsum(dO * O). */
static void load_qblock(float *Qs, float *dO, float *L, float *D, const float *q, const float *dout,
                        const float *out, const float *lse, int b, int h, int q0, int nq, int T,
                        int NH, int HD, float scale) {
  const int64_t qs = (int64_t)NH * HD;
  const int64_t base = (int64_t)b * T * qs + (int64_t)h * HD;
  const float *lrow = lse + ((int64_t)b * NH + h) * T + q0;
  for (int i = 0; i < nq; i++) {
    const int64_t off = base + (int64_t)(q0 + i) * qs;
    float dsum = 0.0f;
    for (int d = 0; d < HD; d++) {
      Qs[(int64_t)i * HD + d] = q[off + d] * scale;
      dO[(int64_t)i * HD + d] = dout[off + d];
      dsum += dout[off + d] * out[off + d];
    }
    D[i] = dsum;
    L[i] = lrow[i];
  }
}

/* Given S = Qs Kt (nq,BK) and dP = dO Vt (nq,BK), overwrites S with P and dP with dS for the
 * causal block at (q0, k0). */
static void probs_and_dscores(float *S, float *dP, const float *L, const float *D, int q0, int nq,
                              int k0, int nk) {
  for (int i = 0; i < nq; i++) {
    float *s = S + (int64_t)i * BK, *dp = dP + (int64_t)i * BK;
    const int jn = imin(nk, q0 + i - k0 + 1);
    int j = 0;
    for (; j < jn; j++) {
      const float p = expf(s[j] - L[i]);
      s[j] = p;
      dp[j] = p * (dp[j] - D[i]);
    }
    for (; j < BK; j++) s[j] = dp[j] = 0.0f;
  }
}

static int64_t bwd_ws_floats(int HD) {
  return 3 * (int64_t)BQ * HD /*Qs,dO,dQ*/ + 2 * (int64_t)HD * BK /*Kt,Vt*/ +
         2 * (int64_t)BQ * BK /*S,dP*/ + 2 * (int64_t)BK * HD /*dK,dV*/ + 2 * BQ /*L,D*/;
}

/* Pass 1: dK, dV of key block kb of kv head kvh, summed over its query heads and the query
 * blocks at or below the diagonal. */
static void bwd_kv_task(float *dk, float *dv, const float *dout, const float *q, const float *k,
                        const float *v, const float *out, const float *lse, int b, int kvh, int kb,
                        int T, int NH, int NKV, int HD, float scale, float *ws) {
  const int G = NH / NKV;
  const int k0 = kb * BK, nk = imin(BK, T - k0);
  const int64_t ks = (int64_t)NKV * HD;
  const int64_t kvoff = (int64_t)b * T * ks + (int64_t)kvh * HD + (int64_t)k0 * ks;
  float *Qs = ws, *dO = Qs + (int64_t)BQ * HD, *Kt = dO + 2 * (int64_t)BQ * HD;
  float *Vt = Kt + (int64_t)HD * BK, *S = Vt + (int64_t)HD * BK, *dP = S + BQ * BK;
  float *dK = dP + BQ * BK, *dV = dK + (int64_t)BK * HD, *L = dV + (int64_t)BK * HD, *D = L + BQ;

  transpose_tile(Kt, k + kvoff, ks, nk, HD);
  transpose_tile(Vt, v + kvoff, ks, nk, HD);
  memset(dK, 0, sizeof(float) * (size_t)nk * HD);
  memset(dV, 0, sizeof(float) * (size_t)nk * HD);
  for (int h = kvh * G; h < (kvh + 1) * G; h++) {
    for (int q0 = (k0 / BQ) * BQ; q0 < T; q0 += BQ) {
      const int nq = imin(BQ, T - q0);
      load_qblock(Qs, dO, L, D, q, dout, out, lse, b, h, q0, nq, T, NH, HD, scale);
      mm_abt(S, Qs, HD, Kt, nq, HD);
      mm_abt(dP, dO, HD, Vt, nq, HD);
      probs_and_dscores(S, dP, L, D, q0, nq, k0, nk);
      mm_ptx(dV, S, dO, HD, nq, nk, HD);
      mm_ptx(dK, dP, Qs, HD, nq, nk, HD); /* Qs carries the scale of dK = scale dS^T Q */
    }
  }
  for (int j = 0; j < nk; j++) {
    float *dkr = dk + kvoff + (int64_t)j * ks, *dvr = dv + kvoff + (int64_t)j * ks;
    const float *a = dK + (int64_t)j * HD, *c = dV + (int64_t)j * HD;
    for (int d = 0; d < HD; d++) {
      dkr[d] += a[d];
      dvr[d] += c[d];
    }
  }
}

/* Pass 2: dQ of query block qb of head h. */
static void bwd_q_task(float *dq, const float *dout, const float *q, const float *k, const float *v,
                       const float *out, const float *lse, int b, int h, int qb, int T, int NH,
                       int NKV, int HD, float scale, float *ws) {
  const int G = NH / NKV, kvh = h / G;
  const int q0 = qb * BQ, nq = imin(BQ, T - q0);
  const int64_t qs = (int64_t)NH * HD, ks = (int64_t)NKV * HD;
  const float *kbase = k + (int64_t)b * T * ks + (int64_t)kvh * HD;
  const float *vbase = v + (int64_t)b * T * ks + (int64_t)kvh * HD;
  float *Qs = ws, *dO = Qs + (int64_t)BQ * HD, *dQ = dO + (int64_t)BQ * HD;
  float *Kt = dQ + (int64_t)BQ * HD, *Vt = Kt + (int64_t)HD * BK, *S = Vt + (int64_t)HD * BK;
  float *dP = S + BQ * BK, *L = dP + BQ * BK + 2 * (int64_t)BK * HD, *D = L + BQ;

  load_qblock(Qs, dO, L, D, q, dout, out, lse, b, h, q0, nq, T, NH, HD, scale);
  memset(dQ, 0, sizeof(float) * (size_t)nq * HD);
  const int kend = q0 + nq;
  for (int k0 = 0; k0 < kend; k0 += BK) {
    const int nk = imin(BK, kend - k0);
    transpose_tile(Kt, kbase + (int64_t)k0 * ks, ks, nk, HD);
    transpose_tile(Vt, vbase + (int64_t)k0 * ks, ks, nk, HD);
    mm_abt(S, Qs, HD, Kt, nq, HD);
    mm_abt(dP, dO, HD, Vt, nq, HD);
    probs_and_dscores(S, dP, L, D, q0, nq, k0, nk);
    mm_px(dQ, dP, kbase + (int64_t)k0 * ks, ks, nq, nk, HD);
  }
  float *dqbase = dq + (int64_t)b * T * qs + (int64_t)h * HD;
  for (int i = 0; i < nq; i++) {
    float *r = dqbase + (int64_t)(q0 + i) * qs;
    const float *a = dQ + (int64_t)i * HD;
    for (int d = 0; d < HD; d++) r[d] += scale * a[d];
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
  const float scale = (float)(1.0 / sqrt((double)HD));
  const int NQB = (T + BQ - 1) / BQ, NKB = (T + BK - 1) / BK;
  const int64_t nkv_tasks = (int64_t)B * NKV * NKB, nq_tasks = (int64_t)B * NH * NQB;
  int oom = 0;
#pragma omp parallel
  {
    float *ws = aligned_alloc(64, (size_t)((bwd_ws_floats(HD) * 4 + 63) / 64 * 64));
    if (!ws) {
#pragma omp atomic write
      oom = 1;
    }
    /* Each (b, kv head, key block) owns its dK/dV rows: one writer per row. */
#pragma omp for schedule(static, 1)
    for (int64_t task = 0; task < nkv_tasks; task++) {
      if (!ws) continue;
      const int kb = (int)(task % NKB);
      const int kvh = (int)((task / NKB) % NKV);
      const int b = (int)(task / ((int64_t)NKB * NKV));
      bwd_kv_task(dk, dv, dout, q, k, v, out, lse, b, kvh, kb, T, NH, NKV, HD, scale, ws);
    }
    /* Each (b, head, query block) owns its dQ rows. */
#pragma omp for schedule(static, 1)
    for (int64_t task = 0; task < nq_tasks; task++) {
      if (!ws) continue;
      const int qb = (int)(task % NQB);
      const int h = (int)((task / NQB) % NH);
      const int b = (int)(task / ((int64_t)NQB * NH));
      bwd_q_task(dq, dout, q, k, v, out, lse, b, h, qb, T, NH, NKV, HD, scale, ws);
    }
    free(ws);
  }
  if (oom) return tl_fail(TL_ERR_OUT_OF_MEMORY, "%s: could not allocate the per-thread workspace", who);
  return TL_OK;
}
