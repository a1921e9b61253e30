/* tl_attention_forward_bf16 / _backward_bf16 main kernels: causal GQA flash attention on tensor cores with
 * the tiles in registers (FlashAttention-2 written with mma.sync, ldmatrix and cp.async; sm_80 and
 * newer). attention_tc.cu dispatches here and keeps its WMMA kernels as the fallback (unaligned
 * pointers, head dims the backward here lacks, TINYLLAMA_ATTENTION_KERNEL=wmma). The forward:
 *
 * Why a second forward: the WMMA kernel must pass S and O through shared memory for the softmax
 * (WMMA hides its fragment layout), so per 64-key tile each warp writes and re-reads 16x64 fp32
 * scores and its 16xHD fp32 output rows. mma.sync's layout is documented (mma_ptx.cuh), so here:
 *   - S = Q K^T lands in registers, the online softmax runs on those registers (a row's values sit
 *     in the 4 lanes of a quad: two shuffles per reduction), and the probabilities are packed
 *     into bf16 A operands of O += P V directly (the accumulator layout of two 16x8 products is
 *     the A layout of one 16x16 operand);
 *   - O stays in registers for the whole key loop and is written once;
 *   - each warp owns MT = 2 16-row tiles when HD <= 64 (MT = 1 above, for registers), so every
 *     K/V fragment loaded from shared memory feeds MT products: shared-memory bytes per product
 *     halve, which is what bounds a 16-row warp tile;
 *   - K/V tiles are double-buffered with cp.async, so the next tile's load overlaps this tile's
 *     products; the query tiles with the most keys (the causal diagonal's far end) start first.
 * The row sums l stay per lane (each lane's partial over its columns, all rescaled alike) and are
 * reduced once at the end. Scores are in log2 units (scale * log2 e folded into one multiply) so
 * the exponentials are exp2. lse = ln 2 (m + log2 l): the natural log of the sum of exp(scale s), as
 * the other attention kernels define it.
 *
 * Shared memory (bf16, row stride HD + 8: 16-byte rows for ldmatrix/cp.async, 8 rows of an
 * ldmatrix 4 banks apart so it is conflict-free): Q (BQ rows), K and V (2 stages x 64 rows each).
 * HD = 64: 54 KiB; HD = 128: 85 KiB (opt-in above 48 KiB). */
#include "common.cuh"
#include "mma_ptx.cuh"

#include <math.h>

#define FA_WARPS 4
#define FA_BKV 64

template <int HD, int MT>
struct FaLayout {
  static constexpr int BQ = FA_WARPS * 16 * MT; /* query rows per block */
  static constexpr int LDH = HD + 8;
  static constexpr size_t bytes = sizeof(__nv_bfloat16) * (size_t)(BQ + 4 * FA_BKV) * LDH;
};

/* Starts the copies of rows r0 .. r0+nrows-1 of a bf16 tensor (row r at base + r * rowStride) into a
 * tile with row stride HD + 8; rows >= T are zero-filled. */
template <int HD>
__device__ __forceinline__ void fa_load_tile(__nv_bfloat16 *tile, const __nv_bfloat16 *base, int64_t rowStride, int r0,
                                             int nrows, int T) {
  constexpr int CH = HD / 8; /* 16-byte chunks per row */
  for (int idx = threadIdx.x; idx < nrows * CH; idx += blockDim.x) {
    const int j = idx / CH, c = idx % CH, row = r0 + j;
    const bool ok = row < T;
    tl_cp_async16(tile + j * (HD + 8) + c * 8, base + (int64_t)(ok ? row : 0) * rowStride + c * 8, ok);
  }
}

/* One step of the double-buffered loop: starts the next stage's copies (issue(), when there is a next
 * stage; the caller's barrier at the end of the previous step freed that stage), then waits until the
 * current stage's copies have landed, this thread's and, after the barrier, everyone's. */
template <typename Issue>
__device__ __forceinline__ void fa_next_stage(bool more, Issue issue) {
  if (more) {
    issue();
    tl_cp_async_commit();
    tl_cp_async_wait<1>();
  } else {
    tl_cp_async_wait<0>();
  }
  __syncthreads();
}

/* grid (ceil(T/BQ), NH, B), block 32 * FA_WARPS. */
template <int HD, int MT>
__global__ void __launch_bounds__(32 * FA_WARPS)
attention_forward_fa2_kernel(__nv_bfloat16 *out, float *lse, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                             const __nv_bfloat16 *v, int T, int NH, int NKV, float scale_log2) {
  typedef FaLayout<HD, MT> L;
  constexpr int BQ = L::BQ, LDH = L::LDH;
  constexpr int KS = HD / 16;     /* k-steps of S = Q K^T over the head dim */
  constexpr int NS = FA_BKV / 8;  /* 8-key column tiles of S */
  constexpr int DN = HD / 8;      /* 8-wide column tiles of O */
  extern __shared__ float smem[];
  __nv_bfloat16 *Qs = (__nv_bfloat16 *)smem;
  __nv_bfloat16 *Ks = Qs + BQ * LDH;          /* [2][FA_BKV][LDH] */
  __nv_bfloat16 *Vs = Ks + 2 * FA_BKV * LDH;  /* [2][FA_BKV][LDH] */

  const int b = blockIdx.z, h = blockIdx.y, g = h / (NH / NKV);
  const int q0 = (gridDim.x - 1 - blockIdx.x) * BQ; /* longest rows first: a shorter tail */
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, lg = lane >> 2, lt = lane & 3;
  const int wq0 = q0 + warp * 16 * MT;   /* the warp's first query row */
  const int wlast = wq0 + 16 * MT - 1;   /* and its last */
  const int64_t qStride = (int64_t)NH * HD, kStride = (int64_t)NKV * HD;
  const __nv_bfloat16 *qb = q + ((int64_t)b * T * NH + h) * HD;
  const __nv_bfloat16 *kb = k + ((int64_t)b * T * NKV + g) * HD, *vb = v + ((int64_t)b * T * NKV + g) * HD;

  const int ntiles = (min(q0 + BQ, T) - 1) / FA_BKV + 1; /* key tiles up to the block's last row */
  fa_load_tile<HD>(Qs, qb, qStride, q0, BQ, T);
  fa_load_tile<HD>(Ks, kb, kStride, 0, FA_BKV, T);
  fa_load_tile<HD>(Vs, vb, kStride, 0, FA_BKV, T);
  tl_cp_async_commit();

  uint32_t qa[MT][KS][4];
  float o[MT][DN][4], m[MT][2], l[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
#pragma unroll
    for (int dn = 0; dn < DN; dn++) o[mt][dn][0] = o[mt][dn][1] = o[mt][dn][2] = o[mt][dn][3] = 0.0f;
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.0f;
  }

  for (int it = 0; it < ntiles; it++) {
    const int k0 = it * FA_BKV, st = it & 1;
    fa_next_stage(it + 1 < ntiles, [&] {
      fa_load_tile<HD>(Ks + (st ^ 1) * FA_BKV * LDH, kb, kStride, k0 + FA_BKV, FA_BKV, T);
      fa_load_tile<HD>(Vs + (st ^ 1) * FA_BKV * LDH, vb, kStride, k0 + FA_BKV, FA_BKV, T);
    }); /* tile `it` (and, the first time, Q) is in shared memory */
    if (it == 0) {
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int kk = 0; kk < KS; kk++) /* rows 0-7 / 8-15 x columns 0-7 / 8-15 of the 16x16 block */
          tl_ldmatrix_x4(qa[mt][kk], Qs + (warp * 16 * MT + mt * 16 + (lane & 7) + 8 * ((lane >> 3) & 1)) * LDH + kk * 16 + 8 * (lane >> 4));
    }
    const __nv_bfloat16 *Kt = Ks + st * FA_BKV * LDH, *Vt = Vs + st * FA_BKV * LDH;

    if (k0 <= wlast) { /* warp-uniform: some key of this tile is visible to some row of the warp */
      /* S = Q K^T, two 8-key column tiles per ldmatrix; a (16-row, 8-key) product wholly above the
       * diagonal is skipped and left at 0 (the mask below sets it to -inf). */
      float s[MT][NS][4];
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < NS; j++) s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.0f;
#pragma unroll
      for (int j = 0; j < NS; j += 2) {
        if (k0 + 8 * j > wlast) break; /* warp-uniform */
#pragma unroll
        for (int kk = 0; kk < KS; kk++) {
          uint32_t kf[4]; /* keys 8j.. x dims 16kk.. / 16kk+8.., then keys 8j+8.. x the same */
          tl_ldmatrix_x4(kf, Kt + (8 * j + 8 * (lane >> 4) + (lane & 7)) * LDH + kk * 16 + 8 * ((lane >> 3) & 1));
          const uint32_t b0[2] = {kf[0], kf[1]}, b1[2] = {kf[2], kf[3]};
#pragma unroll
          for (int mt = 0; mt < MT; mt++) {
            const int r15 = wq0 + 16 * mt + 15;
            if (k0 + 8 * j <= r15) tl_mma_bf16_16816(s[mt][j], qa[mt][kk], b0);
            if (k0 + 8 * j + 8 <= r15) tl_mma_bf16_16816(s[mt][j + 1], qa[mt][kk], b1);
          }
        }
      }

      /* Online softmax on the registers: lane (lg, lt) holds rows lg and lg+8 of each 16-row tile,
       * columns 8j + 2lt and 8j + 2lt + 1; a row's other columns are in the lanes lg*4 .. lg*4+3. */
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        const int r0 = wq0 + 16 * mt;
        if (k0 > r0 + 15) continue; /* warp-uniform: nothing visible to these 16 rows */
        const bool masked = k0 + FA_BKV - 1 > r0 || k0 + FA_BKV > T;
#pragma unroll
        for (int rh = 0; rh < 2; rh++) {
          const int qi = r0 + lg + 8 * rh;
          float mx = -INFINITY;
#pragma unroll
          for (int j = 0; j < NS; j++)
#pragma unroll
            for (int e2 = 0; e2 < 2; e2++) {
              const int key = k0 + 8 * j + 2 * lt + e2;
              float x = s[mt][j][2 * rh + e2] * scale_log2;
              if (masked && (key > qi || key >= T)) x = -INFINITY;
              s[mt][j][2 * rh + e2] = x;
              mx = fmaxf(mx, x);
            }
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
          /* finite: key 0 is visible to every row in tile 0, and m only grows */
          const float m_new = fmaxf(m[mt][rh], mx);
          const float corr = exp2f(m[mt][rh] - m_new); /* 0 on the first tile (m = -inf) */
          m[mt][rh] = m_new;
          float sum = 0.0f;
#pragma unroll
          for (int j = 0; j < NS; j++)
#pragma unroll
            for (int e2 = 0; e2 < 2; e2++) {
              const float p = exp2f(s[mt][j][2 * rh + e2] - m_new);
              s[mt][j][2 * rh + e2] = p;
              sum += p;
            }
          l[mt][rh] = l[mt][rh] * corr + sum;
#pragma unroll
          for (int dn = 0; dn < DN; dn++) {
            o[mt][dn][2 * rh] *= corr;
            o[mt][dn][2 * rh + 1] *= corr;
          }
        }
      }

      /* O += P V, 16 keys per step: P's A operand is the two 8-key accumulators 2kk, 2kk+1 rounded
       * to bf16; V's B operands come transposed from ldmatrix, two 8-wide column tiles at a time. */
#pragma unroll
      for (int kk = 0; kk < FA_BKV / 16; kk++) {
        if (k0 + 16 * kk > wlast) break; /* warp-uniform */
        uint32_t pa[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          pa[mt][0] = tl_pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
          pa[mt][1] = tl_pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
          pa[mt][2] = tl_pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
          pa[mt][3] = tl_pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
        }
#pragma unroll
        for (int dn = 0; dn < DN; dn += 2) {
          uint32_t vf[4]; /* keys 16kk.. / 16kk+8.. x dims 8dn.., then the same keys x dims 8dn+8.. */
          tl_ldmatrix_x4_trans(vf, Vt + (kk * 16 + (lane & 7) + 8 * ((lane >> 3) & 1)) * LDH + 8 * dn + 8 * (lane >> 4));
          const uint32_t b0[2] = {vf[0], vf[1]}, b1[2] = {vf[2], vf[3]};
#pragma unroll
          for (int mt = 0; mt < MT; mt++) {
            if (k0 + 16 * kk > wq0 + 16 * mt + 15) continue; /* all of P is 0 there (or never computed) */
            tl_mma_bf16_16816(o[mt][dn], pa[mt], b0);
            tl_mma_bf16_16816(o[mt][dn + 1], pa[mt], b1);
          }
        }
      }
    }
    __syncthreads(); /* every warp is done with stage st before iteration it+1 refills it */
  }

  /* out = O / l (bf16), lse = ln 2 (m + log2 l); l is first summed over the quad. */
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int rh = 0; rh < 2; rh++) {
      float lsum = l[mt][rh];
      lsum += __shfl_xor_sync(0xffffffffu, lsum, 1);
      lsum += __shfl_xor_sync(0xffffffffu, lsum, 2);
      const int qi = wq0 + 16 * mt + lg + 8 * rh;
      if (qi < T) {
        const float inv = 1.0f / lsum;
        __nv_bfloat16 *dst = out + (((int64_t)b * T + qi) * NH + h) * HD;
#pragma unroll
        for (int dn = 0; dn < DN; dn++)
          *(uint32_t *)(dst + 8 * dn + 2 * lt) = tl_pack_bf16(o[mt][dn][2 * rh] * inv, o[mt][dn][2 * rh + 1] * inv);
        if (lt == 0) lse[((int64_t)b * NH + h) * T + qi] = (m[mt][rh] + log2f(lsum)) * 0.69314718055994531f;
      }
    }
}

template <int HD>
static int launch_fa2(uint16_t *out, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v, int B, int T,
                      int NH, int NKV) {
  constexpr int MT = HD <= 64 ? 2 : 1;
  typedef FaLayout<HD, MT> L;
  int dev = 0, max_optin = 0;
  TL_CUDA(cudaGetDevice(&dev));
  TL_CUDA(cudaDeviceGetAttribute(&max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  if (L::bytes > (size_t)max_optin)
    return tl_fail(TL_ERR_UNSUPPORTED, "tl_attention_forward_bf16: head dim %d needs %zu bytes of shared memory, the device allows %d",
                   HD, L::bytes, max_optin);
  if (L::bytes > 48 * 1024)
    TL_CUDA(cudaFuncSetAttribute(attention_forward_fa2_kernel<HD, MT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)L::bytes));
  const dim3 grid((T + L::BQ - 1) / L::BQ, NH, B);
  attention_forward_fa2_kernel<HD, MT><<<grid, 32 * FA_WARPS, L::bytes>>>(
      (__nv_bfloat16 *)out, lse, (const __nv_bfloat16 *)q, (const __nv_bfloat16 *)k, (const __nv_bfloat16 *)v, T, NH, NKV,
      1.4426950408889634f / sqrtf((float)HD));
  TL_LAUNCHED("attention_forward_fa2_kernel");
  return TL_OK;
}

int tl_cuda_fa2_supports(int HD, const void *out, const void *q, const void *k, const void *v) {
  const bool hd = HD == 16 || HD == 32 || HD == 48 || HD == 64 || HD == 96 || HD == 128;
  /* cp.async moves 16-byte chunks; the output is written as bf16 pairs */
  const bool aligned = (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v) & 15) == 0 && ((uintptr_t)out & 3) == 0;
  return hd && aligned;
}

int tl_cuda_attention_forward_fa2(uint16_t *out, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                  int B, int T, int NH, int NKV, int HD) {
  switch (HD) {
    case 16: return launch_fa2<16>(out, lse, q, k, v, B, T, NH, NKV);
    case 32: return launch_fa2<32>(out, lse, q, k, v, B, T, NH, NKV);
    case 48: return launch_fa2<48>(out, lse, q, k, v, B, T, NH, NKV);
    case 64: return launch_fa2<64>(out, lse, q, k, v, B, T, NH, NKV);
    case 96: return launch_fa2<96>(out, lse, q, k, v, B, T, NH, NKV);
    case 128: return launch_fa2<128>(out, lse, q, k, v, B, T, NH, NKV);
    default: return tl_fail(TL_ERR_UNSUPPORTED, "tl_attention_forward_bf16: no register-tiled kernel for head dim %d", HD);
  }
}

/* ---------------------------------------------------------------- backward ---- */
/* FlashAttention-2's backward in the same register-tiled style, split like the WMMA and fp32
 * kernels so that every gradient element has one writer and a fixed summation order
 * (deterministic, no atomics); both kernels recompute P from lse:
 *   dq kernel, query owners (grid ceil(T/64) x NH x B, a warp owns 16 query rows): per key tile,
 *     S = Q_w K^T and dP = dO_w V^T in registers, dS = P (dP - D) with P = exp2(scale log2e S - lse
 *     log2e), then dQ_w += dS K with dS packed straight into A operands.
 *   dk/dv kernel, key owners (grid ceil(T/64) x NKV x B, a warp owns 16 keys, held as A operands
 *     in registers): per query head of the group and query tile from the diagonal on,
 *     S^T = K_w Q^T and dP^T = V_w dO^T, then dV_w += P^T dO and dK_w += dS^T Q.
 * Q/dO (dk/dv kernel) or K/V (dq kernel) tiles are double-buffered with cp.async. Built for head
 * dims up to 64 (TinyLlama's is 64): at 128 the dk/dv kernel's accumulators and K/V operands
 * would not fit in registers, so larger head dims keep the WMMA backward (attention_tc.cu). */

/* A 16-row panel (row-major, stride ldh) as KS = 16*KS-column A operands. */
template <int KS>
__device__ __forceinline__ void fa_load_a(uint32_t (&a)[KS][4], const __nv_bfloat16 *panel, int ldh) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int kk = 0; kk < KS; kk++)
    tl_ldmatrix_x4(a[kk], panel + ((lane & 7) + 8 * ((lane >> 3) & 1)) * ldh + kk * 16 + 8 * (lane >> 4));
}

/* acc[j] (16 x 8) += A (16 x 16KS, operands a) times rows 8j..8j+7 of X (row-major, stride ldh)
 * transposed, for the 8-row groups j with live(j) (others are left as they are). */
template <int KS, int NS, typename Live>
__device__ __forceinline__ void fa_mma_abt(float (&acc)[NS][4], const uint32_t (&a)[KS][4], const __nv_bfloat16 *x, int ldh,
                                           Live live) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int j = 0; j < NS; j += 2) {
    const bool l0 = live(j), l1 = live(j + 1);
    if (!l0 && !l1) continue; /* warp-uniform */
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
      uint32_t f[4];
      tl_ldmatrix_x4(f, x + (8 * j + 8 * (lane >> 4) + (lane & 7)) * ldh + kk * 16 + 8 * ((lane >> 3) & 1));
      const uint32_t b0[2] = {f[0], f[1]}, b1[2] = {f[2], f[3]};
      if (l0) tl_mma_bf16_16816(acc[j], a[kk], b0);
      if (l1) tl_mma_bf16_16816(acc[j + 1], a[kk], b1);
    }
  }
}

/* acc[dn] (16 x 8) += P (16 x 16NK, operands pa) times X (row-major 16NK x 8DN, stride ldh), over
 * the 16-row blocks kk of X with live(kk). */
template <int NK, int DN, typename Live>
__device__ __forceinline__ void fa_mma_ab(float (&acc)[DN][4], const uint32_t (&pa)[NK][4], const __nv_bfloat16 *x, int ldh,
                                          Live live) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int kk = 0; kk < NK; kk++) {
    if (!live(kk)) continue; /* warp-uniform */
#pragma unroll
    for (int dn = 0; dn < DN; dn += 2) {
      uint32_t f[4];
      tl_ldmatrix_x4_trans(f, x + (kk * 16 + (lane & 7) + 8 * ((lane >> 3) & 1)) * ldh + 8 * dn + 8 * (lane >> 4));
      const uint32_t b0[2] = {f[0], f[1]}, b1[2] = {f[2], f[3]};
      tl_mma_bf16_16816(acc[dn], pa[kk], b0);
      tl_mma_bf16_16816(acc[dn + 1], pa[kk], b1);
    }
  }
}

/* Accumulators of 8-column products 2kk, 2kk+1 as the bf16 A operand of 16-column step kk. */
template <int NS>
__device__ __forceinline__ void fa_pack_a(uint32_t (&pa)[NS / 2][4], const float (&s)[NS][4]) {
#pragma unroll
  for (int kk = 0; kk < NS / 2; kk++) {
    pa[kk][0] = tl_pack_bf16(s[2 * kk][0], s[2 * kk][1]);
    pa[kk][1] = tl_pack_bf16(s[2 * kk][2], s[2 * kk][3]);
    pa[kk][2] = tl_pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
    pa[kk][3] = tl_pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
  }
}

template <int HD>
struct FaBwdLayout {
  static constexpr int LDH = HD + 8;
  /* dq: Q and dO of the block (64 rows each), K and V (2 stages x 64 rows each) */
  static constexpr size_t dq_bytes = sizeof(__nv_bfloat16) * (size_t)6 * 64 * LDH;
  /* dk/dv: K and V of the block, Q and dO (2 stages each), then lse and D of the query tile (2 stages) */
  static constexpr size_t dkdv_bytes = sizeof(__nv_bfloat16) * (size_t)6 * 64 * LDH + sizeof(float) * 4 * 64;
};

#define FA_LOG2E 1.4426950408889634f

template <int HD>
__global__ void __launch_bounds__(128)
attention_dq_fa2_kernel(float *dq, const __nv_bfloat16 *dout, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                        const __nv_bfloat16 *v, const float *lse, const float *Dvec, int T, int NH, int NKV, float scale,
                        float scale_log2) {
  constexpr int LDH = HD + 8, KS = HD / 16, NS = 8, DN = HD / 8;
  extern __shared__ float smem[];
  __nv_bfloat16 *Qs = (__nv_bfloat16 *)smem, *dOs = Qs + 64 * LDH, *Ks = dOs + 64 * LDH, *Vs = Ks + 2 * 64 * LDH;
  const int b = blockIdx.z, h = blockIdx.y, g = h / (NH / NKV);
  const int q0 = (gridDim.x - 1 - blockIdx.x) * 64; /* the rows with the most keys first */
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, lg = lane >> 2, lt = lane & 3;
  const int wq0 = q0 + warp * 16, wlast = wq0 + 15;
  const int64_t qStride = (int64_t)NH * HD, kStride = (int64_t)NKV * HD;
  const int64_t qoff = ((int64_t)b * T * NH + h) * HD, koff = ((int64_t)b * T * NKV + g) * HD;
  const int ntiles = (min(q0 + 64, T) - 1) / 64 + 1;

  fa_load_tile<HD>(Qs, q + qoff, qStride, q0, 64, T);
  fa_load_tile<HD>(dOs, dout + qoff, qStride, q0, 64, T);
  fa_load_tile<HD>(Ks, k + koff, kStride, 0, 64, T);
  fa_load_tile<HD>(Vs, v + koff, kStride, 0, 64, T);
  tl_cp_async_commit();

  float L2[2], Dr[2]; /* rows lg and lg+8 of the warp: lse in log2 units, and D */
#pragma unroll
  for (int rh = 0; rh < 2; rh++) {
    const int qi = wq0 + lg + 8 * rh;
    L2[rh] = qi < T ? lse[((int64_t)b * NH + h) * T + qi] * FA_LOG2E : 0.0f;
    Dr[rh] = qi < T ? Dvec[((int64_t)b * NH + h) * T + qi] : 0.0f;
  }
  float acc[DN][4];
#pragma unroll
  for (int dn = 0; dn < DN; dn++) acc[dn][0] = acc[dn][1] = acc[dn][2] = acc[dn][3] = 0.0f;
  uint32_t qa[KS][4], doa[KS][4];

  for (int it = 0; it < ntiles; it++) {
    const int k0 = it * 64, st = it & 1;
    fa_next_stage(it + 1 < ntiles, [&] {
      fa_load_tile<HD>(Ks + (st ^ 1) * 64 * LDH, k + koff, kStride, k0 + 64, 64, T);
      fa_load_tile<HD>(Vs + (st ^ 1) * 64 * LDH, v + koff, kStride, k0 + 64, 64, T);
    });
    if (it == 0) {
      fa_load_a<KS>(qa, Qs + warp * 16 * LDH, LDH);
      fa_load_a<KS>(doa, dOs + warp * 16 * LDH, LDH);
    }
    const __nv_bfloat16 *Kt = Ks + st * 64 * LDH, *Vt = Vs + st * 64 * LDH;
    if (k0 <= wlast) { /* warp-uniform */
      float s[NS][4], dp[NS][4];
#pragma unroll
      for (int j = 0; j < NS; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) s[j][e] = dp[j][e] = 0.0f;
      auto live = [&](int j) { return k0 + 8 * j <= wlast; }; /* not wholly above the diagonal */
      fa_mma_abt<KS, NS>(s, qa, Kt, LDH, live);
      fa_mma_abt<KS, NS>(dp, doa, Vt, LDH, live);
      const bool masked = k0 + 63 > wq0 || k0 + 64 > T;
#pragma unroll
      for (int j = 0; j < NS; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int rh = e >> 1, qi = wq0 + lg + 8 * rh, key = k0 + 8 * j + 2 * lt + (e & 1);
          const float p = (masked && (key > qi || key >= T)) ? 0.0f : exp2f(s[j][e] * scale_log2 - L2[rh]);
          s[j][e] = p * (dp[j][e] - Dr[rh]); /* dS */
        }
      uint32_t dsa[NS / 2][4];
      fa_pack_a<NS>(dsa, s);
      fa_mma_ab<NS / 2, DN>(acc, dsa, Kt, LDH, [&](int kk) { return k0 + 16 * kk <= wlast; });
    }
    __syncthreads();
  }
#pragma unroll
  for (int rh = 0; rh < 2; rh++) {
    const int qi = wq0 + lg + 8 * rh;
    if (qi >= T) continue;
    float *row = dq + (((int64_t)b * T + qi) * NH + h) * HD;
#pragma unroll
    for (int dn = 0; dn < DN; dn++) {
      row[8 * dn + 2 * lt] += scale * acc[dn][2 * rh];
      row[8 * dn + 2 * lt + 1] += scale * acc[dn][2 * rh + 1];
    }
  }
}

template <int HD>
__global__ void __launch_bounds__(128)
attention_dkdv_fa2_kernel(float *dk, float *dv, const __nv_bfloat16 *dout, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                          const __nv_bfloat16 *v, const float *lse, const float *Dvec, int T, int NH, int NKV, float scale,
                          float scale_log2) {
  constexpr int LDH = HD + 8, KS = HD / 16, NS = 8, DN = HD / 8;
  extern __shared__ float smem[];
  __nv_bfloat16 *Ks = (__nv_bfloat16 *)smem, *Vs = Ks + 64 * LDH, *Qs = Vs + 64 * LDH, *dOs = Qs + 2 * 64 * LDH;
  float *Ls = (float *)(dOs + 2 * 64 * LDH), *Ds = Ls + 2 * 64; /* [2][64] each */
  const int b = blockIdx.z, g = blockIdx.y, rep = NH / NKV;
  const int k0 = blockIdx.x * 64; /* the keys with the most queries first */
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, lg = lane >> 2, lt = lane & 3;
  const int wk0 = k0 + warp * 16;
  const int64_t qStride = (int64_t)NH * HD, kStride = (int64_t)NKV * HD;
  const int64_t koff = ((int64_t)b * T * NKV + g) * HD;
  const int nq = (T - k0 + 63) / 64, ntiles = rep * nq; /* (head of the group, query tile from the diagonal on) */

  /* Stage st of tile `it`: Q and dO rows by cp.async, lse (log2 units) and D by plain stores. */
  auto load = [&](int it, int st) {
    const int h = g * rep + it / nq, q0 = k0 + (it % nq) * 64;
    const int64_t qoff = ((int64_t)b * T * NH + h) * HD;
    fa_load_tile<HD>(Qs + st * 64 * LDH, q + qoff, qStride, q0, 64, T);
    fa_load_tile<HD>(dOs + st * 64 * LDH, dout + qoff, qStride, q0, 64, T);
    for (int i = threadIdx.x; i < 64; i += blockDim.x) {
      const bool ok = q0 + i < T;
      Ls[st * 64 + i] = ok ? lse[((int64_t)b * NH + h) * T + q0 + i] * FA_LOG2E : 0.0f;
      Ds[st * 64 + i] = ok ? Dvec[((int64_t)b * NH + h) * T + q0 + i] : 0.0f;
    }
  };
  fa_load_tile<HD>(Ks, k + koff, kStride, k0, 64, T);
  fa_load_tile<HD>(Vs, v + koff, kStride, k0, 64, T);
  load(0, 0);
  tl_cp_async_commit();

  float dK[DN][4], dV[DN][4];
#pragma unroll
  for (int dn = 0; dn < DN; dn++)
#pragma unroll
    for (int e = 0; e < 4; e++) dK[dn][e] = dV[dn][e] = 0.0f;
  uint32_t ka[KS][4], va[KS][4];

  for (int it = 0; it < ntiles; it++) {
    const int st = it & 1, q0 = k0 + (it % nq) * 64;
    fa_next_stage(it + 1 < ntiles, [&] { load(it + 1, st ^ 1); });
    if (it == 0) {
      fa_load_a<KS>(ka, Ks + warp * 16 * LDH, LDH);
      fa_load_a<KS>(va, Vs + warp * 16 * LDH, LDH);
    }
    const __nv_bfloat16 *Qt = Qs + st * 64 * LDH, *dOt = dOs + st * 64 * LDH;
    const float *Lt = Ls + st * 64, *Dt = Ds + st * 64;
    /* rows: the warp's 16 keys; columns: the tile's 64 queries. Query groups wholly before the
     * warp's first key see none of its keys. */
    float sT[NS][4], dpT[NS][4];
#pragma unroll
    for (int j = 0; j < NS; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) sT[j][e] = dpT[j][e] = 0.0f;
    auto live = [&](int j) { return q0 + 8 * j + 7 >= wk0; };
    fa_mma_abt<KS, NS>(sT, ka, Qt, LDH, live);
    fa_mma_abt<KS, NS>(dpT, va, dOt, LDH, live);
    const bool masked = q0 < wk0 + 15 || q0 + 64 > T;
#pragma unroll
    for (int j = 0; j < NS; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int c = 8 * j + 2 * lt + (e & 1), kj = wk0 + lg + 8 * (e >> 1), qi = q0 + c;
        const float p = (masked && (qi < kj || qi >= T)) ? 0.0f : exp2f(sT[j][e] * scale_log2 - Lt[c]);
        sT[j][e] = p;
        dpT[j][e] = p * (dpT[j][e] - Dt[c]); /* dS^T */
      }
    uint32_t pa[NS / 2][4], dsa[NS / 2][4];
    fa_pack_a<NS>(pa, sT);
    fa_pack_a<NS>(dsa, dpT);
    auto live16 = [&](int kk) { return q0 + 16 * kk + 15 >= wk0; };
    fa_mma_ab<NS / 2, DN>(dV, pa, dOt, LDH, live16);
    fa_mma_ab<NS / 2, DN>(dK, dsa, Qt, LDH, live16);
    __syncthreads();
  }
#pragma unroll
  for (int rh = 0; rh < 2; rh++) {
    const int kj = wk0 + lg + 8 * rh;
    if (kj >= T) continue;
    float *rk = dk + (((int64_t)b * T + kj) * NKV + g) * HD, *rv = dv + (((int64_t)b * T + kj) * NKV + g) * HD;
#pragma unroll
    for (int dn = 0; dn < DN; dn++) {
      rk[8 * dn + 2 * lt] += scale * dK[dn][2 * rh];
      rk[8 * dn + 2 * lt + 1] += scale * dK[dn][2 * rh + 1];
      rv[8 * dn + 2 * lt] += dV[dn][2 * rh];
      rv[8 * dn + 2 * lt + 1] += dV[dn][2 * rh + 1];
    }
  }
}

template <int HD>
static int launch_fa2_backward(float *dq, float *dk, float *dv, const uint16_t *dout, const uint16_t *q, const uint16_t *k,
                               const uint16_t *v, const float *lse, const float *Dvec, int B, int T, int NH, int NKV) {
  typedef FaBwdLayout<HD> L;
  typedef const __nv_bfloat16 *cb;
  const float scale = 1.0f / sqrtf((float)HD), scale_log2 = scale * FA_LOG2E;
  if (L::dq_bytes > 48 * 1024)
    TL_CUDA(cudaFuncSetAttribute(attention_dq_fa2_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)L::dq_bytes));
  attention_dq_fa2_kernel<HD><<<dim3((T + 63) / 64, NH, B), 128, L::dq_bytes>>>(dq, (cb)dout, (cb)q, (cb)k, (cb)v, lse, Dvec, T,
                                                                                NH, NKV, scale, scale_log2);
  TL_LAUNCHED("attention_dq_fa2_kernel");
  if (L::dkdv_bytes > 48 * 1024)
    TL_CUDA(cudaFuncSetAttribute(attention_dkdv_fa2_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)L::dkdv_bytes));
  attention_dkdv_fa2_kernel<HD><<<dim3((T + 63) / 64, NKV, B), 128, L::dkdv_bytes>>>(dk, dv, (cb)dout, (cb)q, (cb)k, (cb)v, lse,
                                                                                    Dvec, T, NH, NKV, scale, scale_log2);
  TL_LAUNCHED("attention_dkdv_fa2_kernel");
  return TL_OK;
}

int tl_cuda_fa2_backward_supports(int HD, const void *dout, const void *q, const void *k, const void *v) {
  const bool hd = HD == 16 || HD == 32 || HD == 48 || HD == 64;
  return hd && ((((uintptr_t)dout | (uintptr_t)q | (uintptr_t)k | (uintptr_t)v) & 15) == 0);
}

int tl_cuda_attention_backward_fa2(float *dq, float *dk, float *dv, const uint16_t *dout, const uint16_t *q, const uint16_t *k,
                                   const uint16_t *v, const float *lse, const float *Dvec, int B, int T, int NH, int NKV, int HD) {
  switch (HD) {
    case 16: return launch_fa2_backward<16>(dq, dk, dv, dout, q, k, v, lse, Dvec, B, T, NH, NKV);
    case 32: return launch_fa2_backward<32>(dq, dk, dv, dout, q, k, v, lse, Dvec, B, T, NH, NKV);
    case 48: return launch_fa2_backward<48>(dq, dk, dv, dout, q, k, v, lse, Dvec, B, T, NH, NKV);
    case 64: return launch_fa2_backward<64>(dq, dk, dv, dout, q, k, v, lse, Dvec, B, T, NH, NKV);
    default: return tl_fail(TL_ERR_UNSUPPORTED, "tl_attention_backward_bf16: no register-tiled kernel for head dim %d", HD);
  }
}
