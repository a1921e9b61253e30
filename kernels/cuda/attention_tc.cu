/* tl_attention_forward_bf16 and tl_attention_backward_bf16: causal GQA flash attention on tensor cores (bf16 inputs,
 * fp32 accumulation), FlashAttention-2's forward written with the WMMA API (16x16x16 bf16
 * fragments; sm_80 and newer).
 *
 * A block owns BQ = 64 query rows of one (b, h): 4 warps of 16 rows. It streams the keys of KV
 * head h / (NH/NKV) (GQA by indexing, no copies) in tiles of BKV = 64 through shared memory. For
 * each tile every warp computes, for its 16 rows:
 *   S (16 x 64, fp32)  = Q_w (16 x HD) K_tile^T                      tensor cores, stored to smem
 *   online softmax of S's rows: scale, causal mask, running max m and sum l (fp32, CUDA cores);
 *   P = bf16(exp(S - m)); the fp32 output rows O_w are rescaled by exp(m_old - m)
 *   O_w (16 x HD, fp32) += P (16 x 64) V_tile (64 x HD)             tensor cores
 * and finally out = bf16(O / l), lse = m + log l (natural log of the scaled scores, as the fp32
 * kernels define it, so tl_attention_backward can recompute P from it).
 *
 * Why WMMA and shared memory rather than mma.sync and registers: WMMA leaves the fragment layout
 * unspecified, so the row-wise softmax and the rescale of O go through shared memory. That costs
 * shared-memory traffic a register-level FA2 kernel avoids, but it is portable across sm_80/sm_90
 * and runs unchanged on our CPU emulator (kernels/cuda/emu/include/mma.h), which is how it is
 * tested on machines without a GPU. Subtiles wholly above the causal diagonal for a warp are
 * skipped in both products. Speed is unmeasured until it runs on a GPU (tools/gpu/check.sh).
 *
 * Shared memory (row strides padded: multiples of 8 bf16 / 4 fp32 as WMMA requires, and off the
 * 32-bank period): O fp32 BQ x (HD+4), S fp32 BQ x (BKV+4), Q, K, V bf16 x (HD+8), P bf16 BQ x (BKV+8).
 * HD=64: 70 KiB; HD=128: 110 KiB (opt-in above 48 KiB). */
#include "common.cuh"

#include <cuda_bf16.h>
#include <math.h>
#include <mma.h>
#include <stdlib.h>
#include <string.h>

using namespace nvcuda;

#define TC_BQ 64
#define TC_BKV 64
#define TC_WARPS 4
#define TC_LDS (TC_BKV + 4)
#define TC_LDP (TC_BKV + 8)

static_assert(TC_BQ == 16 * TC_WARPS, "a warp owns 16 query rows");

template <int HD>
struct TcLayout {
  static constexpr int LDO = HD + 4, LDH = HD + 8;
  static constexpr size_t bytes =
      sizeof(float) * (size_t)(TC_BQ * LDO + TC_BQ * TC_LDS) + sizeof(__nv_bfloat16) * (size_t)(TC_BQ * LDH + 2 * TC_BKV * LDH + TC_BQ * TC_LDP);
};

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> FragA;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> FragBt;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> FragB;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> FragC;

/* A warp's 16 x HD bf16 panel (row stride HD+8 in shared memory) as HD/16 A fragments, loaded once
 * and reused for every tile (saves a shared-memory load per product). */
template <int HD>
__device__ __forceinline__ void tc_load_panel(FragA (&a)[HD / 16], const __nv_bfloat16 *p) {
#pragma unroll
  for (int kk = 0; kk < HD / 16; kk++) wmma::load_matrix_sync(a[kk], p + kk * 16, HD + 8);
}

/* s (16 x 64 fp32, row stride TC_LDS) = A (16 x HD: a panel in registers, or in shared memory at
 * ap) times the rows of Bm (64 x HD, row-major, stride HD+8) transposed; the 16-wide column blocks
 * n with skip(n) are left unwritten. aFrag(kk, f) provides A's fragment kk. */
template <int HD, typename AFrag, typename Skip>
__device__ __forceinline__ void tc_products_nt_with(float *s, AFrag aFrag, const __nv_bfloat16 *bm, Skip skip) {
  for (int n = 0; n < 4; n++) {
    if (skip(n)) continue; /* warp-uniform */
    FragC acc;
    wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
      FragBt fb;
      wmma::load_matrix_sync(fb, bm + n * 16 * (HD + 8) + kk * 16, HD + 8);
      wmma::mma_sync(acc, aFrag(kk), fb, acc);
    }
    wmma::store_matrix_sync(s + n * 16, acc, TC_LDS, wmma::mem_row_major);
  }
}
template <int HD, typename Skip>
__device__ __forceinline__ void tc_products_nt(float *s, const FragA (&a)[HD / 16], const __nv_bfloat16 *bm, Skip skip) {
  tc_products_nt_with<HD>(s, [&](int kk) -> const FragA & { return a[kk]; }, bm, skip);
}
template <int HD, typename Skip>
__device__ __forceinline__ void tc_products_nt(float *s, const __nv_bfloat16 *ap, const __nv_bfloat16 *bm, Skip skip) {
  FragA fa;
  tc_products_nt_with<HD>(s, [&](int kk) -> const FragA & { wmma::load_matrix_sync(fa, ap + kk * 16, HD + 8); return fa; }, bm, skip);
}

/* acc[dn] += A (16 x 64 bf16 at a, row stride TC_LDP) times Bm (64 x HD, row-major, stride HD+8),
 * skipping the 16-row blocks kk of Bm with skip(kk); each A fragment is loaded once. */
template <int HD, typename Skip>
__device__ __forceinline__ void tc_products_nn(FragC (&acc)[HD / 16], const __nv_bfloat16 *a, const __nv_bfloat16 *bm, Skip skip) {
  for (int kk = 0; kk < 4; kk++) {
    if (skip(kk)) continue; /* warp-uniform */
    FragA fa;
    wmma::load_matrix_sync(fa, a + kk * 16, TC_LDP);
#pragma unroll
    for (int dn = 0; dn < HD / 16; dn++) {
      FragB fb;
      wmma::load_matrix_sync(fb, bm + kk * 16 * (HD + 8) + dn * 16, HD + 8);
      wmma::mma_sync(acc[dn], fa, fb, acc[dn]);
    }
  }
}

/* grid (ceil(T/BQ), NH, B), block 32*TC_WARPS. */
template <int HD>
__global__ void __launch_bounds__(32 * TC_WARPS)
attention_forward_tc_kernel(__nv_bfloat16 *out, float *lse, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                            const __nv_bfloat16 *v, int T, int NH, int NKV, float scale) {
  constexpr int LDO = TcLayout<HD>::LDO, LDH = TcLayout<HD>::LDH;
  extern __shared__ float smem[];
  float *Os = smem;
  float *Ss = Os + TC_BQ * LDO;
  __nv_bfloat16 *Qs = (__nv_bfloat16 *)(Ss + TC_BQ * TC_LDS);
  __nv_bfloat16 *Ks = Qs + TC_BQ * LDH;
  __nv_bfloat16 *Vs = Ks + TC_BKV * LDH;
  __nv_bfloat16 *Ps = Vs + TC_BKV * LDH;

  const int b = blockIdx.z, h = blockIdx.y, g = h / (NH / NKV);
  const int q0 = blockIdx.x * TC_BQ;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const __nv_bfloat16 zero = __float2bfloat16(0.0f);

  for (int idx = threadIdx.x; idx < TC_BQ * HD; idx += blockDim.x) {
    const int r = idx / HD, d = idx % HD, t = q0 + r;
    Qs[r * LDH + d] = t < T ? q[(((int64_t)b * T + t) * NH + h) * HD + d] : zero;
    Os[r * LDO + d] = 0.0f;
  }

  /* Softmax work split: lane (r = lane/2, half = lane%2) owns half of row r of the warp's 16. */
  const int r = lane >> 1, half = lane & 1;
  const int wrow = warp * 16;                /* the warp's first row within the block */
  const int t = q0 + wrow + r;               /* this lane's query position (>= T: padding row) */
  const int wlast = q0 + wrow + 15;          /* the warp's last query position */
  float m_run = -INFINITY, l_run = 0.0f;
  __syncthreads(); /* Qs is written */
  FragA qa[HD / 16];
  tc_load_panel<HD>(qa, Qs + wrow * LDH);

  const int last = min(q0 + TC_BQ, T) - 1;   /* keys beyond the block's last row are masked for all */
  for (int k0 = 0; k0 <= last; k0 += TC_BKV) {
    __syncthreads(); /* the previous tile is consumed (and Qs/Os are written, the first time) */
    for (int idx = threadIdx.x; idx < TC_BKV * HD; idx += blockDim.x) {
      const int j = idx / HD, d = idx % HD, key = k0 + j;
      const bool ok = key < T;
      const int64_t off = (((int64_t)b * T + key) * NKV + g) * HD + d;
      Ks[j * LDH + d] = ok ? k[off] : zero;
      Vs[j * LDH + d] = ok ? v[off] : zero;
    }
    __syncthreads();

    /* S = Q_w K^T, 16 keys at a time; subtiles wholly above the diagonal are never read. */
    auto above = [&](int n) { return k0 + n * 16 > wlast; }; /* keys all after the warp's rows */
    tc_products_nt<HD>(Ss + wrow * TC_LDS, qa, Ks, above);
    __syncwarp();

    /* Online softmax on row r, columns half*32 .. half*32+31, visited in a lane-rotated order so
     * that the 32 lanes hit 32 different banks. */
    const float *srow = Ss + (wrow + r) * TC_LDS;
    __nv_bfloat16 *prow = Ps + (wrow + r) * TC_LDP;
    float mx = -INFINITY;
    for (int j = 0; j < 32; j++) {
      const int c = half * 32 + ((j + r + 16 * half) & 31), key = k0 + c;
      if (key <= t && key < T) mx = fmaxf(mx, srow[c] * scale);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float m_new = fmaxf(m_run, mx); /* finite from the first tile on: key 0 is valid for every row */
    const float corr = m_run == -INFINITY ? 0.0f : __expf(m_run - m_new);
    float sum = 0.0f;
    for (int j = 0; j < 32; j++) {
      const int c = half * 32 + ((j + r + 16 * half) & 31), key = k0 + c;
      const float p = (key <= t && key < T) ? __expf(srow[c] * scale - m_new) : 0.0f;
      prow[c] = __float2bfloat16(p);
      sum += p;
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l_run = l_run * corr + sum;
    m_run = m_new;
    float *orow = Os + (wrow + r) * LDO;
    for (int d = half * (HD / 2); d < (half + 1) * (HD / 2); d++) orow[d] *= corr;
    __syncwarp();

    /* O_w += P V over the 16-key subtiles that hold any unmasked key for this warp. */
    FragC o[HD / 16];
#pragma unroll
    for (int dn = 0; dn < HD / 16; dn++) wmma::load_matrix_sync(o[dn], Os + wrow * LDO + dn * 16, LDO, wmma::mem_row_major);
    tc_products_nn<HD>(o, Ps + wrow * TC_LDP, Vs, above);
#pragma unroll
    for (int dn = 0; dn < HD / 16; dn++) wmma::store_matrix_sync(Os + wrow * LDO + dn * 16, o[dn], LDO, wmma::mem_row_major);
    __syncwarp();
  }

  if (t < T) {
    const float inv = 1.0f / l_run;
    const float *orow = Os + (wrow + r) * LDO;
    __nv_bfloat16 *dst = out + (((int64_t)b * T + t) * NH + h) * HD;
    for (int d = half * (HD / 2); d < (half + 1) * (HD / 2); d++) dst[d] = __float2bfloat16(orow[d] * inv);
    if (half == 0) lse[((int64_t)b * NH + h) * T + t] = m_run + logf(l_run);
  }
}

/* ---------------------------------------------------------------- backward ---- */
/* FlashAttention-2's backward on tensor cores, split like the fp32 kernels so that every gradient
 * element has one writer and a fixed summation order (deterministic, no atomics):
 *   dq kernel, query owners (grid ceil(T/64) x NH x B): per key tile, S = Q_w K^T and
 *     dP = dO_w V^T (tensor cores), dS = P (dP - D) with P = exp(scale S - lse) (fp32, rounded
 *     to bf16), dQ_w += dS K (tensor cores, fp32 accumulator fragments kept across tiles).
 *   dk/dv kernel, key owners (grid ceil(T/64) x NKV x B): per query head of the group and query
 *     tile from the diagonal on, S^T = K_w Q^T and dP^T = V_w dO^T, then dV_w += P^T dO and
 *     dK_w += dS^T Q.
 * Both recompute P (the price of one writer per element, as in the fp32 kernels). D = rowsum(dO O)
 * comes first, in fp32, into the attention scratch buffer. */

__global__ void attention_rowdot_bf16_kernel(float *Dvec, const __nv_bfloat16 *dout, const __nv_bfloat16 *out, int B,
                                             int T, int NH, int HD) {
  const int64_t row = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); /* over (b,t,h) */
  const int lane = threadIdx.x & 31;
  if (row >= (int64_t)B * T * NH) return; /* warp-uniform */
  const __nv_bfloat16 *a = dout + row * HD, *c = out + row * HD;
  float acc = 0.0f;
  for (int d = lane; d < HD; d += 32) acc += __bfloat162float(a[d]) * __bfloat162float(c[d]);
  acc = tl_warp_sum(acc);
  const int h = (int)(row % NH);
  const int64_t bt = row / NH;
  const int t = (int)(bt % T), b = (int)(bt / T);
  if (lane == 0) Dvec[((int64_t)b * NH + h) * T + t] = acc;
}

template <int HD>
struct TcBwdLayout {
  static constexpr int LDO = HD + 4, LDH = HD + 8;
  /* fp32: S, dP (64 x LDS), later reused for the warps' 16 x LDO results; bf16: four 64 x LDH tiles, dS (64 x LDP) */
  static constexpr size_t dq_bytes = sizeof(float) * (size_t)(2 * 64 * TC_LDS) + sizeof(__nv_bfloat16) * (size_t)(4 * 64 * LDH + 64 * TC_LDP);
  /* the same plus lse and D of the query tile (64 each) and a second bf16 64 x LDP tile (P^T and dS^T) */
  static constexpr size_t dkdv_bytes = dq_bytes + sizeof(float) * 128 + sizeof(__nv_bfloat16) * (size_t)(64 * TC_LDP);
  static_assert(4 * 16 * LDO <= 2 * 64 * TC_LDS, "the result staging area must fit in S + dP");
};

/* Loads rows r0.. of a (.., rowStride) bf16 tensor (row r at base + r * rowStride) into a 64 x LDH
 * tile, zero past T. */
template <int HD>
__device__ __forceinline__ void tc_load_rows(__nv_bfloat16 *tile, const __nv_bfloat16 *base, int64_t rowStride, int r0, int T) {
  constexpr int LDH = HD + 8;
  for (int idx = threadIdx.x; idx < 64 * HD; idx += blockDim.x) {
    const int j = idx / HD, d = idx % HD, row = r0 + j;
    tile[j * LDH + d] = row < T ? base[(int64_t)row * rowStride + d] : __float2bfloat16(0.0f);
  }
}

/* Adds scale * (the warp's 16 x HD accumulators) to rows row0.. of dst (row stride rowStride),
 * through the staging area stage (warp-private 16 x LDO fp32). Lane (r, half) writes half a row. */
template <int HD>
__device__ __forceinline__ void tc_add_rows(float *dst, int64_t rowStride, int row0, int T, float scale, float *stage,
                                            FragC *acc) {
  constexpr int LDO = HD + 4;
  const int lane = threadIdx.x & 31, r = lane >> 1, half = lane & 1;
#pragma unroll
  for (int dn = 0; dn < HD / 16; dn++) wmma::store_matrix_sync(stage + dn * 16, acc[dn], LDO, wmma::mem_row_major);
  __syncwarp();
  if (row0 + r < T) {
    float *row = dst + (int64_t)(row0 + r) * rowStride;
    for (int d = half * (HD / 2); d < (half + 1) * (HD / 2); d++) row[d] += scale * stage[r * LDO + d];
  }
  __syncwarp();
}

template <int HD>
__global__ void __launch_bounds__(32 * TC_WARPS)
attention_dq_tc_kernel(float *dq, const __nv_bfloat16 *dout, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                       const __nv_bfloat16 *v, const float *lse, const float *Dvec, int T, int NH, int NKV, float scale) {
  constexpr int LDH = HD + 8, LDO = HD + 4;
  extern __shared__ float smem[];
  float *Ss = smem, *dPs = Ss + 64 * TC_LDS;
  __nv_bfloat16 *Qs = (__nv_bfloat16 *)(dPs + 64 * TC_LDS), *dOs = Qs + 64 * LDH, *Ks = dOs + 64 * LDH,
                *Vs = Ks + 64 * LDH, *dSs = Vs + 64 * LDH;
  const int b = blockIdx.z, h = blockIdx.y, g = h / (NH / NKV);
  const int q0 = blockIdx.x * 64;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r = lane >> 1, half = lane & 1;
  const int wrow = warp * 16, t = q0 + wrow + r, wlast = q0 + wrow + 15;

  const int64_t qStride = (int64_t)NH * HD, kStride = (int64_t)NKV * HD;
  tc_load_rows<HD>(Qs, q + ((int64_t)b * T * NH + h) * HD, qStride, q0, T);
  tc_load_rows<HD>(dOs, dout + ((int64_t)b * T * NH + h) * HD, qStride, q0, T);
  const float L = t < T ? lse[((int64_t)b * NH + h) * T + t] : 0.0f;
  const float Dr = t < T ? Dvec[((int64_t)b * NH + h) * T + t] : 0.0f;

  FragC acc[HD / 16];
#pragma unroll
  for (int dn = 0; dn < HD / 16; dn++) wmma::fill_fragment(acc[dn], 0.0f);
  __syncthreads(); /* Qs, dOs are written */
  FragA qa[HD / 16], doa[HD / 16];
  tc_load_panel<HD>(qa, Qs + wrow * LDH);
  tc_load_panel<HD>(doa, dOs + wrow * LDH);

  const int last = min(q0 + 64, T) - 1;
  for (int k0 = 0; k0 <= last; k0 += 64) {
    __syncthreads(); /* the previous tile is consumed (and Qs/dOs are written, the first time) */
    tc_load_rows<HD>(Ks, k + ((int64_t)b * T * NKV + g) * HD, kStride, k0, T);
    tc_load_rows<HD>(Vs, v + ((int64_t)b * T * NKV + g) * HD, kStride, k0, T);
    __syncthreads();
    auto above = [&](int n) { return k0 + n * 16 > wlast; }; /* keys all after the warp's rows */
    tc_products_nt<HD>(Ss + wrow * TC_LDS, qa, Ks, above);
    tc_products_nt<HD>(dPs + wrow * TC_LDS, doa, Vs, above);
    __syncwarp();
    const float *srow = Ss + (wrow + r) * TC_LDS, *dprow = dPs + (wrow + r) * TC_LDS;
    __nv_bfloat16 *dsrow = dSs + (wrow + r) * TC_LDP;
    for (int j = 0; j < 32; j++) {
      const int c = half * 32 + ((j + r + 16 * half) & 31), key = k0 + c;
      float ds = 0.0f;
      if (key <= t && key < T) ds = __expf(srow[c] * scale - L) * (dprow[c] - Dr);
      dsrow[c] = __float2bfloat16(ds);
    }
    __syncwarp();
    tc_products_nn<HD>(acc, dSs + wrow * TC_LDP, Ks, above);
  }
  __syncthreads(); /* every warp is done with S/dP: reuse them as staging */
  tc_add_rows<HD>(dq + ((int64_t)b * T * NH + h) * HD, qStride, q0 + wrow, T, scale, Ss + warp * 16 * LDO, acc);
}

template <int HD>
__global__ void __launch_bounds__(32 * TC_WARPS)
attention_dkdv_tc_kernel(float *dk, float *dv, const __nv_bfloat16 *dout, const __nv_bfloat16 *q,
                         const __nv_bfloat16 *k, const __nv_bfloat16 *v, const float *lse, const float *Dvec, int T,
                         int NH, int NKV, float scale) {
  constexpr int LDH = HD + 8, LDO = HD + 4;
  extern __shared__ float smem[];
  float *STs = smem, *dPTs = STs + 64 * TC_LDS, *Ls = dPTs + 64 * TC_LDS, *Ds = Ls + 64;
  __nv_bfloat16 *Ks = (__nv_bfloat16 *)(Ds + 64), *Vs = Ks + 64 * LDH, *Qs = Vs + 64 * LDH, *dOs = Qs + 64 * LDH,
                *PTs = dOs + 64 * LDH, *dSTs = PTs + 64 * TC_LDP;
  const int b = blockIdx.z, g = blockIdx.y, rep = NH / NKV;
  const int k0 = blockIdx.x * 64;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r = lane >> 1, half = lane & 1;
  const int wrow = warp * 16, kj = k0 + wrow + r, wfirst = k0 + wrow;

  const int64_t qStride = (int64_t)NH * HD, kStride = (int64_t)NKV * HD;
  tc_load_rows<HD>(Ks, k + ((int64_t)b * T * NKV + g) * HD, kStride, k0, T);
  tc_load_rows<HD>(Vs, v + ((int64_t)b * T * NKV + g) * HD, kStride, k0, T);

  FragC dK[HD / 16], dV[HD / 16]; /* K_w and V_w stay in shared memory: with these, their panels would spill at HD=128 */
#pragma unroll
  for (int dn = 0; dn < HD / 16; dn++) {
    wmma::fill_fragment(dK[dn], 0.0f);
    wmma::fill_fragment(dV[dn], 0.0f);
  }

  for (int hh = 0; hh < rep; hh++) {
    const int h = g * rep + hh;
    for (int q0 = k0; q0 < T; q0 += 64) { /* query tiles from the diagonal on (k0 is a multiple of 64) */
      __syncthreads(); /* the previous tile is consumed (and Ks/Vs are written, the first time) */
      tc_load_rows<HD>(Qs, q + ((int64_t)b * T * NH + h) * HD, qStride, q0, T);
      tc_load_rows<HD>(dOs, dout + ((int64_t)b * T * NH + h) * HD, qStride, q0, T);
      for (int i = threadIdx.x; i < 64; i += blockDim.x) {
        const bool ok = q0 + i < T;
        Ls[i] = ok ? lse[((int64_t)b * NH + h) * T + q0 + i] : 0.0f;
        Ds[i] = ok ? Dvec[((int64_t)b * NH + h) * T + q0 + i] : 0.0f;
      }
      __syncthreads();
      auto before = [&](int n) { return q0 + n * 16 + 15 < wfirst; }; /* queries all before the warp's keys */
      tc_products_nt<HD>(STs + wrow * TC_LDS, Ks + wrow * LDH, Qs, before);
      tc_products_nt<HD>(dPTs + wrow * TC_LDS, Vs + wrow * LDH, dOs, before);
      __syncwarp();
      const float *srow = STs + (wrow + r) * TC_LDS, *dprow = dPTs + (wrow + r) * TC_LDS;
      __nv_bfloat16 *prow = PTs + (wrow + r) * TC_LDP, *dsrow = dSTs + (wrow + r) * TC_LDP;
      for (int j = 0; j < 32; j++) {
        const int c = half * 32 + ((j + r + 16 * half) & 31), i = q0 + c;
        float p = 0.0f, ds = 0.0f;
        if (i >= kj && i < T) {
          p = __expf(srow[c] * scale - Ls[c]);
          ds = p * (dprow[c] - Ds[c]);
        }
        prow[c] = __float2bfloat16(p);
        dsrow[c] = __float2bfloat16(ds);
      }
      __syncwarp();
      tc_products_nn<HD>(dV, PTs + wrow * TC_LDP, dOs, before);
      tc_products_nn<HD>(dK, dSTs + wrow * TC_LDP, Qs, before);
    }
  }
  __syncthreads(); /* every warp is done with S^T/dP^T: reuse them as staging */
  float *stage = STs + warp * 16 * LDO;
  tc_add_rows<HD>(dk + ((int64_t)b * T * NKV + g) * HD, kStride, wfirst, T, scale, stage, dK);
  tc_add_rows<HD>(dv + ((int64_t)b * T * NKV + g) * HD, kStride, wfirst, T, 1.0f, stage, dV);
}

/* Head dims the tensor-core kernel is built for; others widen to fp32 and use tl_attention_forward. */
template <int HD>
static int launch_tc(uint16_t *out, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v, int B, int T,
                     int NH, int NKV) {
  const size_t bytes = TcLayout<HD>::bytes;
  int dev = 0, max_optin = 0;
  TL_CUDA(cudaGetDevice(&dev));
  TL_CUDA(cudaDeviceGetAttribute(&max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  if (bytes > (size_t)max_optin)
    return tl_fail(TL_ERR_UNSUPPORTED, "tl_attention_forward_bf16: head dim %d needs %zu bytes of shared memory, the device allows %d",
                   HD, bytes, max_optin);
  if (bytes > 48 * 1024)
    TL_CUDA(cudaFuncSetAttribute(attention_forward_tc_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
  const dim3 grid((T + TC_BQ - 1) / TC_BQ, NH, B);
  attention_forward_tc_kernel<HD><<<grid, 32 * TC_WARPS, bytes>>>((__nv_bfloat16 *)out, lse, (const __nv_bfloat16 *)q,
                                                                  (const __nv_bfloat16 *)k, (const __nv_bfloat16 *)v, T,
                                                                  NH, NKV, 1.0f / sqrtf((float)HD));
  TL_LAUNCHED("attention_forward_tc_kernel");
  return TL_OK;
}

/* fp32 fallback for head dims without a tensor-core instantiation: widen, run, round. */
static int forward_widened(uint16_t *out, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v, int B,
                           int T, int NH, int NKV, int HD) {
  const int64_t nq = (int64_t)B * T * NH * HD, nkv = (int64_t)B * T * NKV * HD;
  float *buf = NULL;
  TL_CUDA(cudaMalloc((void **)&buf, (size_t)(2 * nq + 2 * nkv) * sizeof(float)));
  float *qf = buf, *of = qf + nq, *kf = of + nq, *vf = kf + nkv;
  int rc = tl_cuda_cast_to_f32(qf, q, nq);
  if (rc == TL_OK) rc = tl_cuda_cast_to_f32(kf, k, nkv);
  if (rc == TL_OK) rc = tl_cuda_cast_to_f32(vf, v, nkv);
  if (rc == TL_OK) rc = tl_attention_forward(of, lse, qf, kf, vf, B, T, NH, NKV, HD);
  if (rc == TL_OK) rc = tl_cuda_cast_to_bf16(out, of, nq);
  cudaError_t e = cudaFree(buf);
  if (rc == TL_OK && e != cudaSuccess)
    return tl_fail(TL_ERR_BACKEND, "tl_attention_forward_bf16: cudaFree failed: %s", cudaGetErrorString(e));
  return rc;
}

/* TINYLLAMA_ATTENTION_KERNEL=wmma selects this file's WMMA kernels over the register-tiled ones
 * (attention_fa2.cu), forward and backward: for side-by-side benchmarks (tools/gpu/bench.ts) and
 * as a way around a fault in the newer kernels. Read on every call, so a process can switch. */
static bool wmma_forced(void) {
  const char *s = getenv("TINYLLAMA_ATTENTION_KERNEL");
  return s && strcmp(s, "wmma") == 0;
}

extern "C" int tl_attention_forward_bf16(uint16_t *out, float *lse, const uint16_t *q, const uint16_t *k,
                                         const uint16_t *v, int B, int T, int NH, int NKV, int HD) {
  TL_REQUIRE(out && lse && q && k && v, "tl_attention_forward_bf16: NULL pointer");
  TL_REQUIRE(B > 0 && T > 0 && NH > 0 && NKV > 0 && HD > 0,
             "tl_attention_forward_bf16: sizes must be positive (B=%d T=%d NH=%d NKV=%d HD=%d)", B, T, NH, NKV, HD);
  TL_REQUIRE(NH % NKV == 0, "tl_attention_forward_bf16: NH=%d is not a multiple of NKV=%d", NH, NKV);
  TL_REQUIRE(B <= 65535 && NH <= 65535, "tl_attention_forward_bf16: B=%d or NH=%d exceeds the grid limit", B, NH);
  if (!wmma_forced() && tl_cuda_fa2_supports(HD, out, q, k, v))
    return tl_cuda_attention_forward_fa2(out, lse, q, k, v, B, T, NH, NKV, HD);
  switch (HD) {
    case 16: return launch_tc<16>(out, lse, q, k, v, B, T, NH, NKV);
    case 32: return launch_tc<32>(out, lse, q, k, v, B, T, NH, NKV);
    case 48: return launch_tc<48>(out, lse, q, k, v, B, T, NH, NKV);
    case 64: return launch_tc<64>(out, lse, q, k, v, B, T, NH, NKV);
    case 96: return launch_tc<96>(out, lse, q, k, v, B, T, NH, NKV);
    case 128: return launch_tc<128>(out, lse, q, k, v, B, T, NH, NKV);
    default: return forward_widened(out, lse, q, k, v, B, T, NH, NKV, HD);
  }
}

template <int HD>
static int launch_tc_backward(float *dq, float *dk, float *dv, const uint16_t *dout, const uint16_t *q, const uint16_t *k,
                              const uint16_t *v, const float *lse, const float *Dvec, int B, int T, int NH, int NKV) {
  const size_t dq_bytes = TcBwdLayout<HD>::dq_bytes, dkdv_bytes = TcBwdLayout<HD>::dkdv_bytes;
  int dev = 0, max_optin = 0;
  TL_CUDA(cudaGetDevice(&dev));
  TL_CUDA(cudaDeviceGetAttribute(&max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  if (dkdv_bytes > (size_t)max_optin)
    return tl_fail(TL_ERR_UNSUPPORTED, "tl_attention_backward_bf16: head dim %d needs %zu bytes of shared memory, the device allows %d",
                   HD, dkdv_bytes, max_optin);
  const float scale = 1.0f / sqrtf((float)HD);
  typedef const __nv_bfloat16 *cb;
  if (dq_bytes > 48 * 1024)
    TL_CUDA(cudaFuncSetAttribute(attention_dq_tc_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)dq_bytes));
  attention_dq_tc_kernel<HD><<<dim3((T + 63) / 64, NH, B), 32 * TC_WARPS, dq_bytes>>>(dq, (cb)dout, (cb)q, (cb)k, (cb)v, lse, Dvec, T, NH, NKV, scale);
  TL_LAUNCHED("attention_dq_tc_kernel");
  if (dkdv_bytes > 48 * 1024)
    TL_CUDA(cudaFuncSetAttribute(attention_dkdv_tc_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)dkdv_bytes));
  attention_dkdv_tc_kernel<HD><<<dim3((T + 63) / 64, NKV, B), 32 * TC_WARPS, dkdv_bytes>>>(dk, dv, (cb)dout, (cb)q, (cb)k, (cb)v, lse, Dvec, T, NH, NKV, scale);
  TL_LAUNCHED("attention_dkdv_tc_kernel");
  return TL_OK;
}

static int backward_widened(float *dq, float *dk, float *dv, const uint16_t *dout, const uint16_t *q, const uint16_t *k,
                            const uint16_t *v, const uint16_t *out, const float *lse, int B, int T, int NH, int NKV, int HD) {
  const int64_t nq = (int64_t)B * T * NH * HD, nkv = (int64_t)B * T * NKV * HD;
  float *buf = NULL;
  TL_CUDA(cudaMalloc((void **)&buf, (size_t)(3 * nq + 2 * nkv) * sizeof(float)));
  float *dof = buf, *qf = dof + nq, *of = qf + nq, *kf = of + nq, *vf = kf + nkv;
  int rc = tl_cuda_cast_to_f32(dof, dout, nq);
  if (rc == TL_OK) rc = tl_cuda_cast_to_f32(qf, q, nq);
  if (rc == TL_OK) rc = tl_cuda_cast_to_f32(of, out, nq);
  if (rc == TL_OK) rc = tl_cuda_cast_to_f32(kf, k, nkv);
  if (rc == TL_OK) rc = tl_cuda_cast_to_f32(vf, v, nkv);
  if (rc == TL_OK) rc = tl_attention_backward(dq, dk, dv, dof, qf, kf, vf, of, lse, B, T, NH, NKV, HD);
  cudaError_t e = cudaFree(buf);
  if (rc == TL_OK && e != cudaSuccess)
    return tl_fail(TL_ERR_BACKEND, "tl_attention_backward_bf16: cudaFree failed: %s", cudaGetErrorString(e));
  return rc;
}

extern "C" int tl_attention_backward_bf16(float *dq, float *dk, float *dv, const uint16_t *dout, const uint16_t *q,
                                          const uint16_t *k, const uint16_t *v, const uint16_t *out, const float *lse,
                                          int B, int T, int NH, int NKV, int HD) {
  TL_REQUIRE(dq && dk && dv && dout && q && k && v && out && lse, "tl_attention_backward_bf16: NULL pointer");
  TL_REQUIRE(B > 0 && T > 0 && NH > 0 && NKV > 0 && HD > 0,
             "tl_attention_backward_bf16: sizes must be positive (B=%d T=%d NH=%d NKV=%d HD=%d)", B, T, NH, NKV, HD);
  TL_REQUIRE(NH % NKV == 0, "tl_attention_backward_bf16: NH=%d is not a multiple of NKV=%d", NH, NKV);
  TL_REQUIRE(B <= 65535 && NH <= 65535, "tl_attention_backward_bf16: B=%d or NH=%d exceeds the grid limit", B, NH);
  if (HD % 16 != 0 || HD > 128 || HD == 80 || HD == 112)
    return backward_widened(dq, dk, dv, dout, q, k, v, out, lse, B, T, NH, NKV, HD);

  void *scratch = NULL;
  const int64_t rows = (int64_t)B * T * NH;
  TL_TRY(tl_cuda_scratch(TL_SCRATCH_ATTN, (size_t)rows * sizeof(float), &scratch));
  float *Dvec = (float *)scratch;
  const int64_t blocks = (rows + 7) / 8;
  TL_REQUIRE(blocks <= 0x7fffffff, "tl_attention_backward_bf16: too many rows");
  attention_rowdot_bf16_kernel<<<(unsigned)blocks, 256>>>(Dvec, (const __nv_bfloat16 *)dout, (const __nv_bfloat16 *)out, B, T, NH, HD);
  TL_LAUNCHED("attention_rowdot_bf16_kernel");
  if (!wmma_forced() && tl_cuda_fa2_backward_supports(HD, dout, q, k, v))
    return tl_cuda_attention_backward_fa2(dq, dk, dv, dout, q, k, v, lse, Dvec, B, T, NH, NKV, HD);
  switch (HD) {
    case 16: return launch_tc_backward<16>(dq, dk, dv, dout, q, k, v, lse, Dvec, B, T, NH, NKV);
    case 32: return launch_tc_backward<32>(dq, dk, dv, dout, q, k, v, lse, Dvec, B, T, NH, NKV);
    case 48: return launch_tc_backward<48>(dq, dk, dv, dout, q, k, v, lse, Dvec, B, T, NH, NKV);
    case 64: return launch_tc_backward<64>(dq, dk, dv, dout, q, k, v, lse, Dvec, B, T, NH, NKV);
    case 96: return launch_tc_backward<96>(dq, dk, dv, dout, q, k, v, lse, Dvec, B, T, NH, NKV);
    default: return launch_tc_backward<128>(dq, dk, dv, dout, q, k, v, lse, Dvec, B, T, NH, NKV);
  }
}
