/* Causal GQA flash attention forward on bf16 tensor cores (sm_80 / sm_90: wmma 16x16x16, bf16 in,
 * fp32 accumulate): the model's bf16 mode. Same layouts and lse as tl_attention_forward, which the
 * fp32 backward then uses.
 *
 * A block owns BQ = 64 query rows of one (b, h) and 4 warps, 16 rows each; it streams the keys of
 * KV head h / (NH/NKV) in tiles of BK = 64 up to its last row (causal). Per tile:
 *   1. stage K, V (bf16, rounded from the fp32 inputs on load) in shared memory;
 *   2. each warp computes S (16 x 64) = Q K^T with wmma into shared memory (fp32);
 *   3. two threads per row run the online softmax in fp32 on S * scale (causal mask, running max
 *      m and sum l), write P = exp(S*scale - m) rounded to bf16, and the rescale factor alpha;
 *   4. each warp computes P V (16 x HD) with wmma into shared memory;
 *   5. O = alpha O + P V (fp32, in shared memory).
 * At the end out = O / l and lse = m + log l. Accumulator fragments only ever go through shared
 * memory (the fragment layout is unspecified), which keeps the kernel portable and lets the CPU
 * emulator run it (kernels/cuda/emu/include/mma.h).
 *
 * Shared memory (HD = 64): Q, K, V bf16 (8 KiB each), S / PV fp32 (16 KiB), P bf16 (8 KiB),
 * O fp32 (16 KiB), row state: ~65 KiB, so the launch opts in to more than 48 KiB.
 * Head dims other than 64 and 128 take the fp32 kernel on the bf16-rounded inputs.
 *
 * Not yet measured on a GPU (no GPU where it was written): correctness is checked on the emulator
 * against float64 and the CPU twin; speed is unknown. Obvious next steps: keep S and O in
 * registers with mma.sync and a known fragment layout, cp.async double buffering of K/V. */
#include "common.cuh"

#include <cuda_bf16.h>
#include <math.h>
#include <mma.h>

namespace {
const int BQ = 64, BK = 64, WARPS = 4, THREADS = 32 * WARPS;

__device__ __forceinline__ uint16_t to_bf16(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }
__device__ __forceinline__ float from_bf16(uint16_t h) { return __uint_as_float(((unsigned)h) << 16); }

template <int HD>
struct Smem {
  static const int SCOLS = HD > BK ? HD : BK; /* S (BQ x BK) and then P.V (BQ x HD) share one region */
  static const size_t q = 0, k = q + BQ * HD * 2, v = k + BK * HD * 2, s = v + BK * HD * 2;
  static const size_t p = s + (size_t)BQ * SCOLS * 4, o = p + BQ * BK * 2, m = o + BQ * HD * 4;
  static const size_t l = m + BQ * 4, alpha = l + BQ * 4, bytes = alpha + BQ * 4;
};

/* grid (ceil(T/BQ), NH, B), block THREADS */
template <int HD>
__global__ void __launch_bounds__(THREADS)
attention_forward_bf16_kernel(float *out, float *lse, const float *q, const float *k, const float *v, int T, int NH,
                              int NKV, float scale) {
  using namespace nvcuda;
  typedef Smem<HD> L;
  extern __shared__ float smem[];
  char *base = (char *)smem;
  uint16_t *Qs = (uint16_t *)(base + L::q), *Ks = (uint16_t *)(base + L::k), *Vs = (uint16_t *)(base + L::v);
  float *Ss = (float *)(base + L::s), *Os = (float *)(base + L::o);
  uint16_t *Ps = (uint16_t *)(base + L::p);
  float *Ms = (float *)(base + L::m), *Ls = (float *)(base + L::l), *As = (float *)(base + L::alpha);
  const int b = blockIdx.z, h = blockIdx.y, g = h / (NH / NKV);
  const int q0 = blockIdx.x * BQ, tid = threadIdx.x, warp = tid >> 5;

  for (int i = tid; i < BQ * HD; i += THREADS) {
    const int r = i / HD, d = i % HD, t = q0 + r;
    Qs[i] = to_bf16(t < T ? q[(((int64_t)b * T + t) * NH + h) * HD + d] : 0.0f);
    Os[i] = 0.0f;
  }
  for (int r = tid; r < BQ; r += THREADS) {
    Ms[r] = -INFINITY;
    Ls[r] = 0.0f;
  }

  const int last = min(q0 + BQ, T) - 1;
  /* softmax work split: row r = tid / 2 of the block's 64, columns [half*32, half*32 + 32) */
  const int sr = tid >> 1, half = tid & 1, t_row = q0 + sr;
  for (int k0 = 0; k0 <= last; k0 += BK) {
    __syncthreads(); /* the previous tile's K, V, P and S are consumed; Q, O, row state written */
    for (int i = tid; i < BK * HD; i += THREADS) {
      const int j = i / HD, d = i % HD, t = k0 + j;
      const int64_t src = (((int64_t)b * T + t) * NKV + g) * HD + d;
      Ks[i] = to_bf16(t < T ? k[src] : 0.0f);
      Vs[i] = to_bf16(t < T ? v[src] : 0.0f);
    }
    __syncthreads();

    /* 2. S (this warp's 16 rows x 64 keys) = Q K^T */
    {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> kb;
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      for (int jb = 0; jb < BK / 16; jb++) {
        wmma::fill_fragment(acc, 0.0f);
        for (int d = 0; d < HD / 16; d++) {
          wmma::load_matrix_sync(a, (const __nv_bfloat16 *)(Qs + warp * 16 * HD + d * 16), HD);
          /* K^T (d, key) = Ks[key][d]: column-major with leading dimension HD */
          wmma::load_matrix_sync(kb, (const __nv_bfloat16 *)(Ks + jb * 16 * HD + d * 16), HD);
          wmma::mma_sync(acc, a, kb, acc);
        }
        wmma::store_matrix_sync(Ss + warp * 16 * L::SCOLS + jb * 16, acc, L::SCOLS, wmma::mem_row_major);
      }
    }
    __syncthreads();

    /* 3. online softmax, fp32 */
    {
      const float m_old = Ms[sr];
      float mx = -INFINITY;
      for (int c = 0; c < 32; c++) {
        const int j = half * 32 + c, key = k0 + j;
        const float s = (key <= t_row && key < T) ? Ss[sr * L::SCOLS + j] * scale : -INFINITY;
        mx = fmaxf(mx, s);
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      const float m_new = fmaxf(m_old, mx);
      float sum = 0.0f;
      for (int c = 0; c < 32; c++) {
        const int j = half * 32 + c, key = k0 + j;
        float p = 0.0f;
        if (key <= t_row && key < T && m_new != -INFINITY) p = expf(Ss[sr * L::SCOLS + j] * scale - m_new);
        const uint16_t pb = to_bf16(p);
        Ps[sr * BK + j] = pb;
        sum += from_bf16(pb); /* the normaliser sums what P.V multiplies */
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      const float alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
      __syncthreads(); /* both threads of the row have read Ms[sr] */
      if (half == 0) {
        Ms[sr] = m_new;
        Ls[sr] = Ls[sr] * alpha + sum;
        As[sr] = alpha;
      }
    }
    __syncthreads();

    /* 4. P V (this warp's 16 rows x HD) into the S region */
    {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> pa;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> vb;
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      for (int db = 0; db < HD / 16; db++) {
        wmma::fill_fragment(acc, 0.0f);
        for (int jb = 0; jb < BK / 16; jb++) {
          wmma::load_matrix_sync(pa, (const __nv_bfloat16 *)(Ps + warp * 16 * BK + jb * 16), BK);
          wmma::load_matrix_sync(vb, (const __nv_bfloat16 *)(Vs + jb * 16 * HD + db * 16), HD);
          wmma::mma_sync(acc, pa, vb, acc);
        }
        wmma::store_matrix_sync(Ss + warp * 16 * L::SCOLS + db * 16, acc, L::SCOLS, wmma::mem_row_major);
      }
    }
    __syncthreads();

    /* 5. O = alpha O + P V */
    for (int i = tid; i < BQ * HD; i += THREADS) {
      const int r = i / HD, d = i % HD;
      Os[i] = Os[i] * As[r] + Ss[r * L::SCOLS + d];
    }
  }
  __syncthreads();
  for (int i = tid; i < BQ * HD; i += THREADS) {
    const int r = i / HD, d = i % HD, t = q0 + r;
    if (t < T) out[(((int64_t)b * T + t) * NH + h) * HD + d] = Os[i] / Ls[r];
  }
  for (int r = tid; r < BQ; r += THREADS) {
    const int t = q0 + r;
    if (t < T) lse[((int64_t)b * NH + h) * T + t] = Ms[r] + logf(Ls[r]);
  }
}

template <int HD>
int launch(float *out, float *lse, const float *q, const float *k, const float *v, int B, int T, int NH, int NKV) {
  const size_t bytes = Smem<HD>::bytes;
  if (bytes > 48 * 1024)
    TL_CUDA(cudaFuncSetAttribute(attention_forward_bf16_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
  const dim3 grid((T + BQ - 1) / BQ, NH, B);
  attention_forward_bf16_kernel<HD><<<grid, THREADS, bytes>>>(out, lse, q, k, v, T, NH, NKV, 1.0f / sqrtf((float)HD));
  TL_LAUNCHED("attention_forward_bf16_kernel");
  return TL_OK;
}

__global__ void round_to_bf16_kernel(float *dst, const float *src, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dst[i] = __uint_as_float(((unsigned)to_bf16(src[i])) << 16);
}
} // namespace

extern "C" int tl_attention_forward_bf16(float *out, float *lse, const float *q, const float *k, const float *v, int B,
                                         int T, int NH, int NKV, int HD) {
  TL_REQUIRE(B > 0 && T > 0 && NH > 0 && NKV > 0 && HD > 0,
             "tl_attention_forward_bf16: sizes must be positive (B=%d T=%d NH=%d NKV=%d HD=%d)", B, T, NH, NKV, HD);
  TL_REQUIRE(NH % NKV == 0, "tl_attention_forward_bf16: NH=%d is not a multiple of NKV=%d", NH, NKV);
  TL_REQUIRE(out && lse && q && k && v, "tl_attention_forward_bf16: NULL pointer");
  TL_REQUIRE(B <= 65535 && NH <= 65535, "tl_attention_forward_bf16: B=%d or NH=%d exceeds the grid limit", B, NH);
  if (HD == 64) return launch<64>(out, lse, q, k, v, B, T, NH, NKV);
  if (HD == 128) return launch<128>(out, lse, q, k, v, B, T, NH, NKV);
  /* other head dims: the fp32 kernel on bf16-rounded copies (same inputs, CUDA-core speed) */
  const int64_t nq = (int64_t)B * T * NH * HD, nkv = (int64_t)B * T * NKV * HD;
  void *s = NULL;
  TL_TRY(tl_cuda_scratch(TL_SCRATCH_MATMUL, (size_t)(nq + 2 * nkv) * sizeof(float), &s));
  float *qr = (float *)s, *kr = qr + nq, *vr = kr + nkv;
  round_to_bf16_kernel<<<tl_grid_for(nq, 256), 256>>>(qr, q, nq);
  TL_LAUNCHED("round_to_bf16_kernel");
  round_to_bf16_kernel<<<tl_grid_for(nkv, 256), 256>>>(kr, k, nkv);
  TL_LAUNCHED("round_to_bf16_kernel");
  round_to_bf16_kernel<<<tl_grid_for(nkv, 256), 256>>>(vr, v, nkv);
  TL_LAUNCHED("round_to_bf16_kernel");
  return tl_attention_forward(out, lse, qr, kr, vr, B, T, NH, NKV, HD);
}
