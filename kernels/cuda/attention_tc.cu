/* tl_attention_forward_bf16: causal GQA flash attention forward on tensor cores (bf16 inputs,
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
    for (int n = 0; n < TC_BKV / 16; n++) {
      if (k0 + n * 16 > wlast) break; /* warp-uniform */
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> s;
      wmma::fill_fragment(s, 0.0f);
#pragma unroll
      for (int kk = 0; kk < HD / 16; kk++) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> kt;
        wmma::load_matrix_sync(a, Qs + wrow * LDH + kk * 16, LDH);
        wmma::load_matrix_sync(kt, Ks + n * 16 * LDH + kk * 16, LDH); /* K^T: column j is key n*16+j */
        wmma::mma_sync(s, a, kt, s);
      }
      wmma::store_matrix_sync(Ss + wrow * TC_LDS + n * 16, s, TC_LDS, wmma::mem_row_major);
    }
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
#pragma unroll
    for (int dn = 0; dn < HD / 16; dn++) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> o;
      wmma::load_matrix_sync(o, Os + wrow * LDO + dn * 16, LDO, wmma::mem_row_major);
      for (int kk = 0; kk < TC_BKV / 16; kk++) {
        if (k0 + kk * 16 > wlast) break; /* warp-uniform */
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> p;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> vf;
        wmma::load_matrix_sync(p, Ps + wrow * TC_LDP + kk * 16, TC_LDP);
        wmma::load_matrix_sync(vf, Vs + kk * 16 * LDH + dn * 16, LDH);
        wmma::mma_sync(o, p, vf, o);
      }
      wmma::store_matrix_sync(Os + wrow * LDO + dn * 16, o, LDO, wmma::mem_row_major);
    }
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

extern "C" int tl_attention_forward_bf16(uint16_t *out, float *lse, const uint16_t *q, const uint16_t *k,
                                         const uint16_t *v, int B, int T, int NH, int NKV, int HD) {
  TL_REQUIRE(out && lse && q && k && v, "tl_attention_forward_bf16: NULL pointer");
  TL_REQUIRE(B > 0 && T > 0 && NH > 0 && NKV > 0 && HD > 0,
             "tl_attention_forward_bf16: sizes must be positive (B=%d T=%d NH=%d NKV=%d HD=%d)", B, T, NH, NKV, HD);
  TL_REQUIRE(NH % NKV == 0, "tl_attention_forward_bf16: NH=%d is not a multiple of NKV=%d", NH, NKV);
  TL_REQUIRE(B <= 65535 && NH <= 65535, "tl_attention_forward_bf16: B=%d or NH=%d exceeds the grid limit", B, NH);
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
