/* Causal grouped-query flash attention in fp32 (FlashAttention-2 structure, CUDA cores).
 *
 * Layouts: q, out, dq, dout (B,T,NH,HD); k, v, dk, dv (B,T,NKV,HD); lse (B,NH,T).
 * Query head h reads KV head h / (NH/NKV) by indexing; nothing is repeated in memory.
 *
 * Work split. A warp owns R rows (query rows in the forward and dq kernels, key rows in the dk/dv
 * kernel); a block of W warps owns W*R rows and walks the other sequence in tiles of 32, one
 * element per lane, staging the tile in shared memory (row stride HD+1 so that lanes reading
 * different rows hit different banks). Scores never leave registers: the forward keeps an online
 * softmax (running max m, running sum l, rescaled output) and saves lse = m + log l; the backward
 * recomputes P = exp(scale * q.k - lse).
 *
 * Determinism without atomics: dq is computed by query-row owners (summing over keys), dk and dv
 * by key-row owners (summing over queries and over the NH/NKV query heads of their group), so
 * every output element has exactly one writer and a fixed summation order. The price is that
 * the backward recomputes P twice; correctness first. */
#include "common.cuh"

#include <math.h>
#include <type_traits>

#define KT 32 /* tile length along the streamed sequence: one key/query per lane */
#define NWARPS 4
#define ROWS 4 /* rows per warp */
#define BR (NWARPS * ROWS) /* rows per block */
#define MAX_HD 256

static_assert(KT == 32, "one tile element per lane");

/* ---------------------------------------------------------------- forward ---- */
/* grid (ceil(T/BR), NH, B), block 32*NWARPS.
 * smem: Ks[KT][HD+1], Vs[KT][HD+1], Qs[BR][HD]. DPL = dims per lane, ceil(HD/32) rounded up. */
template <int DPL>
__global__ void __launch_bounds__(32 * NWARPS)
attention_forward_kernel(float *out, float *lse, const float *q, const float *k, const float *v, int T, int NH,
                         int NKV, int HD, float scale) {
  extern __shared__ float smem[];
  const int HDP = HD + 1;
  float *Ks = smem, *Vs = Ks + KT * HDP, *Qs = Vs + KT * HDP;
  const int b = blockIdx.z, h = blockIdx.y, g = h / (NH / NKV);
  const int q0 = blockIdx.x * BR;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

  for (int idx = threadIdx.x; idx < BR * HD; idx += blockDim.x) {
    int r = idx / HD, d = idx % HD, t = q0 + r;
    Qs[idx] = t < T ? q[(((int64_t)b * T + t) * NH + h) * HD + d] : 0.0f;
  }

  float m[ROWS], l[ROWS], o[ROWS][DPL];
#pragma unroll
  for (int r = 0; r < ROWS; r++) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int e = 0; e < DPL; e++) o[r][e] = 0.0f;
  }

  const int last = min(q0 + BR, T) - 1; /* the block's last query row: keys beyond are masked for all */
  for (int k0 = 0; k0 <= last; k0 += KT) {
    __syncthreads(); /* previous tile fully consumed (and Qs written, first time) */
    for (int idx = threadIdx.x; idx < KT * HD; idx += blockDim.x) {
      int j = idx / HD, d = idx % HD, key = k0 + j;
      bool ok = key < T;
      int64_t off = (((int64_t)b * T + key) * NKV + g) * HD + d;
      Ks[j * HDP + d] = ok ? k[off] : 0.0f;
      Vs[j * HDP + d] = ok ? v[off] : 0.0f;
    }
    __syncthreads();

    float s[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) s[r] = 0.0f;
    for (int d = 0; d < HD; d++) {
      float kd = Ks[lane * HDP + d];
#pragma unroll
      for (int r = 0; r < ROWS; r++) s[r] += Qs[(warp * ROWS + r) * HD + d] * kd;
    }
    const int key = k0 + lane;
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
      const int t = q0 + warp * ROWS + r;
      if (t >= T || k0 > t) continue; /* warp-uniform: the whole tile is beyond this row */
      const bool valid = key <= t;
      const float sc = valid ? s[r] * scale : -INFINITY;
      const float m_new = fmaxf(m[r], tl_warp_max(sc)); /* finite: key k0 <= t is valid */
      const float p = valid ? expf(sc - m_new) : 0.0f;
      const float corr = expf(m[r] - m_new); /* 0 on the first tile (m = -inf) */
      l[r] = l[r] * corr + tl_warp_sum(p);
      m[r] = m_new;
#pragma unroll
      for (int e = 0; e < DPL; e++) o[r][e] *= corr;
      for (int jj = 0; jj < KT; jj++) {
        const float pj = __shfl_sync(0xffffffffu, p, jj);
#pragma unroll
        for (int e = 0; e < DPL; e++) {
          const int d = lane + 32 * e;
          if (d < HD) o[r][e] += pj * Vs[jj * HDP + d];
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < ROWS; r++) {
    const int t = q0 + warp * ROWS + r;
    if (t >= T) continue;
    const float inv = 1.0f / l[r];
    float *orow = out + (((int64_t)b * T + t) * NH + h) * HD;
#pragma unroll
    for (int e = 0; e < DPL; e++) {
      const int d = lane + 32 * e;
      if (d < HD) orow[d] = o[r][e] * inv;
    }
    if (lane == 0) lse[((int64_t)b * NH + h) * T + t] = m[r] + logf(l[r]);
  }
}

/* --------------------------------------------------------------- backward ---- */
/* Dvec (B,NH,T) = rowsum(dout * out): one warp per row, fixed order. */
__global__ void attention_rowdot_kernel(float *Dvec, const float *dout, const float *out, int B, int T, int NH,
                                        int HD) {
  const int64_t row = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); /* index over (b,t,h) */
  const int lane = threadIdx.x & 31;
  if (row >= (int64_t)B * T * NH) return; /* warp-uniform */
  const float *a = dout + row * HD, *c = out + row * HD;
  float acc = 0.0f;
  for (int d = lane; d < HD; d += 32) acc += a[d] * c[d];
  acc = tl_warp_sum(acc);
  const int h = (int)(row % NH);
  const int64_t bt = row / NH;
  const int t = (int)(bt % T), b = (int)(bt / T);
  if (lane == 0) Dvec[((int64_t)b * NH + h) * T + t] = acc;
}

/* dq: grid (ceil(T/BR), NH, B). smem: Ks, Vs [KT][HD+1], Qs, dOs [BR][HD]. */
template <int DPL>
__global__ void __launch_bounds__(32 * NWARPS)
attention_dq_kernel(float *dq, const float *dout, const float *q, const float *k, const float *v, const float *lse,
                    const float *Dvec, int T, int NH, int NKV, int HD, float scale) {
  extern __shared__ float smem[];
  const int HDP = HD + 1;
  float *Ks = smem, *Vs = Ks + KT * HDP, *Qs = Vs + KT * HDP, *dOs = Qs + BR * HD;
  const int b = blockIdx.z, h = blockIdx.y, g = h / (NH / NKV);
  const int q0 = blockIdx.x * BR;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

  for (int idx = threadIdx.x; idx < BR * HD; idx += blockDim.x) {
    int r = idx / HD, d = idx % HD, t = q0 + r;
    int64_t off = (((int64_t)b * T + t) * NH + h) * HD + d;
    Qs[idx] = t < T ? q[off] : 0.0f;
    dOs[idx] = t < T ? dout[off] : 0.0f;
  }
  float L[ROWS], Dr[ROWS], acc[ROWS][DPL];
#pragma unroll
  for (int r = 0; r < ROWS; r++) {
    const int t = q0 + warp * ROWS + r;
    L[r] = t < T ? lse[((int64_t)b * NH + h) * T + t] : 0.0f;
    Dr[r] = t < T ? Dvec[((int64_t)b * NH + h) * T + t] : 0.0f;
#pragma unroll
    for (int e = 0; e < DPL; e++) acc[r][e] = 0.0f;
  }

  const int last = min(q0 + BR, T) - 1;
  for (int k0 = 0; k0 <= last; k0 += KT) {
    __syncthreads();
    for (int idx = threadIdx.x; idx < KT * HD; idx += blockDim.x) {
      int j = idx / HD, d = idx % HD, key = k0 + j;
      bool ok = key < T;
      int64_t off = (((int64_t)b * T + key) * NKV + g) * HD + d;
      Ks[j * HDP + d] = ok ? k[off] : 0.0f;
      Vs[j * HDP + d] = ok ? v[off] : 0.0f;
    }
    __syncthreads();

    float s[ROWS], dp[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) s[r] = dp[r] = 0.0f;
    for (int d = 0; d < HD; d++) {
      const float kd = Ks[lane * HDP + d], vd = Vs[lane * HDP + d];
#pragma unroll
      for (int r = 0; r < ROWS; r++) {
        s[r] += Qs[(warp * ROWS + r) * HD + d] * kd;
        dp[r] += dOs[(warp * ROWS + r) * HD + d] * vd;
      }
    }
    const int key = k0 + lane;
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
      const int t = q0 + warp * ROWS + r;
      if (t >= T || k0 > t) continue;
      const float p = key <= t ? expf(s[r] * scale - L[r]) : 0.0f;
      const float ds = p * (dp[r] - Dr[r]);
      for (int jj = 0; jj < KT; jj++) {
        const float dsj = __shfl_sync(0xffffffffu, ds, jj);
#pragma unroll
        for (int e = 0; e < DPL; e++) {
          const int d = lane + 32 * e;
          if (d < HD) acc[r][e] += dsj * Ks[jj * HDP + d];
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < ROWS; r++) {
    const int t = q0 + warp * ROWS + r;
    if (t >= T) continue;
    float *row = dq + (((int64_t)b * T + t) * NH + h) * HD;
#pragma unroll
    for (int e = 0; e < DPL; e++) {
      const int d = lane + 32 * e;
      if (d < HD) row[d] += scale * acc[r][e];
    }
  }
}

/* dk, dv: grid (ceil(T/BR), NKV, B); a warp owns ROWS key rows of KV head g and sums over the
 * query heads of its group and the query tiles at or after its keys.
 * smem: Qs, dOs [KT][HD+1], Kr, Vr [BR][HD], Ls, Ds [KT]. */
template <int DPL>
__global__ void __launch_bounds__(32 * NWARPS)
attention_dkdv_kernel(float *dk, float *dv, const float *dout, const float *q, const float *k, const float *v,
                      const float *lse, const float *Dvec, int T, int NH, int NKV, int HD, float scale) {
  extern __shared__ float smem[];
  const int HDP = HD + 1;
  float *Qs = smem, *dOs = Qs + KT * HDP, *Kr = dOs + KT * HDP, *Vr = Kr + BR * HD, *Ls = Vr + BR * HD,
        *Ds = Ls + KT;
  const int b = blockIdx.z, g = blockIdx.y, rep = NH / NKV;
  const int j0 = blockIdx.x * BR;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

  for (int idx = threadIdx.x; idx < BR * HD; idx += blockDim.x) {
    int r = idx / HD, d = idx % HD, j = j0 + r;
    int64_t off = (((int64_t)b * T + j) * NKV + g) * HD + d;
    Kr[idx] = j < T ? k[off] : 0.0f;
    Vr[idx] = j < T ? v[off] : 0.0f;
  }
  float dka[ROWS][DPL], dva[ROWS][DPL];
#pragma unroll
  for (int r = 0; r < ROWS; r++)
#pragma unroll
    for (int e = 0; e < DPL; e++) dka[r][e] = dva[r][e] = 0.0f;

  const int first_tile = (j0 / KT) * KT; /* queries before j0 see none of these keys */
  for (int hh = 0; hh < rep; hh++) {
    const int h = g * rep + hh;
    for (int i0 = first_tile; i0 < T; i0 += KT) {
      __syncthreads();
      for (int idx = threadIdx.x; idx < KT * HD; idx += blockDim.x) {
        int ii = idx / HD, d = idx % HD, i = i0 + ii;
        bool ok = i < T;
        int64_t off = (((int64_t)b * T + i) * NH + h) * HD + d;
        Qs[ii * HDP + d] = ok ? q[off] : 0.0f;
        dOs[ii * HDP + d] = ok ? dout[off] : 0.0f;
      }
      if (threadIdx.x < KT) {
        int i = i0 + threadIdx.x;
        Ls[threadIdx.x] = i < T ? lse[((int64_t)b * NH + h) * T + i] : 0.0f;
        Ds[threadIdx.x] = i < T ? Dvec[((int64_t)b * NH + h) * T + i] : 0.0f;
      }
      __syncthreads();

      float s[ROWS], dp[ROWS];
#pragma unroll
      for (int r = 0; r < ROWS; r++) s[r] = dp[r] = 0.0f;
      for (int d = 0; d < HD; d++) {
        const float qd = Qs[lane * HDP + d], od = dOs[lane * HDP + d];
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
          s[r] += qd * Kr[(warp * ROWS + r) * HD + d];
          dp[r] += od * Vr[(warp * ROWS + r) * HD + d];
        }
      }
      const int i = i0 + lane;
      const float Li = Ls[lane], Di = Ds[lane];
#pragma unroll
      for (int r = 0; r < ROWS; r++) {
        const int j = j0 + warp * ROWS + r;
        if (j >= T || i0 + KT - 1 < j) continue; /* warp-uniform: every query of the tile precedes j */
        const bool valid = i >= j && i < T;
        const float p = valid ? expf(s[r] * scale - Li) : 0.0f;
        const float ds = p * (dp[r] - Di);
        for (int ii = 0; ii < KT; ii++) {
          const float pi = __shfl_sync(0xffffffffu, p, ii);
          const float dsi = __shfl_sync(0xffffffffu, ds, ii);
#pragma unroll
          for (int e = 0; e < DPL; e++) {
            const int d = lane + 32 * e;
            if (d < HD) {
              dva[r][e] += pi * dOs[ii * HDP + d];
              dka[r][e] += dsi * Qs[ii * HDP + d];
            }
          }
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < ROWS; r++) {
    const int j = j0 + warp * ROWS + r;
    if (j >= T) continue;
    const int64_t off = (((int64_t)b * T + j) * NKV + g) * HD;
#pragma unroll
    for (int e = 0; e < DPL; e++) {
      const int d = lane + 32 * e;
      if (d < HD) {
        dk[off + d] += scale * dka[r][e];
        dv[off + d] += dva[r][e];
      }
    }
  }
}

/* ------------------------------------------------------------------- host ---- */
static int check_dims(const char *who, int B, int T, int NH, int NKV, int HD) {
  TL_REQUIRE(B > 0 && T > 0 && NH > 0 && NKV > 0 && HD > 0,
             "%s: sizes must be positive (B=%d T=%d NH=%d NKV=%d HD=%d)", who, B, T, NH, NKV, HD);
  TL_REQUIRE(NH % NKV == 0, "%s: NH=%d is not a multiple of NKV=%d", who, NH, NKV);
  if (HD > MAX_HD)
    return tl_fail(TL_ERR_UNSUPPORTED, "%s: head dim %d exceeds the CUDA kernel's maximum %d", who, HD, MAX_HD);
  return TL_OK;
}

/* Launches kernel<DPL> for the smallest DPL with 32*DPL >= HD, opting in to more than 48 KiB of
 * shared memory when a large head dim needs it. */
template <typename Launch>
static int dispatch(const char *who, const char *name, int HD, size_t smem, Launch launch) {
  int dev = 0, max_optin = 0;
  TL_CUDA(cudaGetDevice(&dev));
  TL_CUDA(cudaDeviceGetAttribute(&max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  if (smem > (size_t)max_optin)
    return tl_fail(TL_ERR_UNSUPPORTED, "%s: head dim %d needs %zu bytes of shared memory, the device allows %d", who,
                   HD, smem, max_optin);
  if (HD <= 32) return launch(std::integral_constant<int, 1>(), smem);
  if (HD <= 64) return launch(std::integral_constant<int, 2>(), smem);
  if (HD <= 128) return launch(std::integral_constant<int, 4>(), smem);
  return launch(std::integral_constant<int, 8>(), smem);
  (void)name;
}

#define SET_SMEM(kernel, bytes)                                                \
  do {                                                                         \
    if ((bytes) > 48 * 1024)                                                   \
      TL_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)(bytes))); \
  } while (0)

extern "C" int tl_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v, int B,
                                    int T, int NH, int NKV, int HD) {
  TL_TRY(check_dims("tl_attention_forward", B, T, NH, NKV, HD));
  TL_REQUIRE(out && lse && q && k && v, "tl_attention_forward: NULL pointer");
  TL_REQUIRE(B <= 65535 && NH <= 65535, "tl_attention_forward: B=%d or NH=%d exceeds the grid limit", B, NH);
  const float scale = 1.0f / sqrtf((float)HD);
  const size_t smem = (size_t)(2 * KT * (HD + 1) + BR * HD) * sizeof(float);
  const dim3 grid((T + BR - 1) / BR, NH, B);
  return dispatch("tl_attention_forward", "attention_forward_kernel", HD, smem, [&](auto dpl, size_t bytes) -> int {
    constexpr int DPL = decltype(dpl)::value;
    SET_SMEM(attention_forward_kernel<DPL>, bytes);
    attention_forward_kernel<DPL><<<grid, 32 * NWARPS, bytes>>>(out, lse, q, k, v, T, NH, NKV, HD, scale);
    TL_LAUNCHED("attention_forward_kernel");
    return TL_OK;
  });
}

extern "C" int tl_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                     const float *v, const float *out, const float *lse, int B, int T, int NH, int NKV,
                                     int HD) {
  TL_TRY(check_dims("tl_attention_backward", B, T, NH, NKV, HD));
  TL_REQUIRE(dq && dk && dv && dout && q && k && v && out && lse, "tl_attention_backward: NULL pointer");
  TL_REQUIRE(B <= 65535 && NH <= 65535, "tl_attention_backward: B=%d or NH=%d exceeds the grid limit", B, NH);
  const float scale = 1.0f / sqrtf((float)HD);

  void *scratch = NULL;
  const int64_t rows = (int64_t)B * T * NH;
  TL_TRY(tl_cuda_scratch(TL_SCRATCH_ATTN, (size_t)rows * sizeof(float), &scratch));
  float *Dvec = (float *)scratch;
  {
    const int warps = 8;
    const int64_t blocks = (rows + warps - 1) / warps;
    TL_REQUIRE(blocks <= 0x7fffffff, "tl_attention_backward: too many rows");
    attention_rowdot_kernel<<<(unsigned)blocks, 32 * warps>>>(Dvec, dout, out, B, T, NH, HD);
    TL_LAUNCHED("attention_rowdot_kernel");
  }
  {
    const size_t smem = (size_t)(2 * KT * (HD + 1) + 2 * BR * HD) * sizeof(float);
    const dim3 grid((T + BR - 1) / BR, NH, B);
    TL_TRY(dispatch("tl_attention_backward", "attention_dq_kernel", HD, smem, [&](auto dpl, size_t bytes) -> int {
      constexpr int DPL = decltype(dpl)::value;
      SET_SMEM(attention_dq_kernel<DPL>, bytes);
      attention_dq_kernel<DPL><<<grid, 32 * NWARPS, bytes>>>(dq, dout, q, k, v, lse, Dvec, T, NH, NKV, HD, scale);
      TL_LAUNCHED("attention_dq_kernel");
      return TL_OK;
    }));
  }
  {
    const size_t smem = (size_t)(2 * KT * (HD + 1) + 2 * BR * HD + 2 * KT) * sizeof(float);
    const dim3 grid((T + BR - 1) / BR, NKV, B);
    TL_TRY(dispatch("tl_attention_backward", "attention_dkdv_kernel", HD, smem, [&](auto dpl, size_t bytes) -> int {
      constexpr int DPL = decltype(dpl)::value;
      SET_SMEM(attention_dkdv_kernel<DPL>, bytes);
      attention_dkdv_kernel<DPL><<<grid, 32 * NWARPS, bytes>>>(dk, dv, dout, q, k, v, lse, Dvec, T, NH, NKV, HD, scale);
      TL_LAUNCHED("attention_dkdv_kernel");
      return TL_OK;
    }));
  }
  return TL_OK;
}
