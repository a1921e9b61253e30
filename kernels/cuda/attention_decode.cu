/* Decode-time attention over a KV cache (the inference branch's tl_attention_decode, declared in
 * its section of tinyllama.h; the prototype is repeated here so this file also builds before that
 * section is merged). One new query per sequence attends to cached positions 0..pos.
 *
 * out, q (B,NH,HD); k_cache, v_cache (B,maxT,NKV,HD); query head h reads kv head h / (NH/NKV).
 * One warp per (b, h): for each key the warp forms the dot product (lanes own dims d, a fixed
 * shuffle tree sums them), then updates an online softmax (running max, running sum, rescaled
 * accumulator) in key order. Memory bound and simple; deterministic. */
#include "common.cuh"

#include <math.h>
#include <type_traits>

extern "C" int tl_attention_decode(float *out, const float *q, const float *k_cache, const float *v_cache, int B,
                                   int NH, int NKV, int HD, int maxT, int pos);

#define DECODE_MAX_HD 256

template <int DPL>
__global__ void attention_decode_kernel(float *out, const float *q, const float *k_cache, const float *v_cache, int NH,
                                        int NKV, int HD, int maxT, int pos, float scale) {
  const int h = blockIdx.x, b = blockIdx.y, g = h / (NH / NKV), lane = threadIdx.x;
  const float *qh = q + ((int64_t)b * NH + h) * HD;
  float qr[DPL], o[DPL];
#pragma unroll
  for (int e = 0; e < DPL; e++) {
    const int d = lane + 32 * e;
    qr[e] = d < HD ? qh[d] : 0.0f;
    o[e] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int j = 0; j <= pos; j++) {
    const int64_t row = (((int64_t)b * maxT + j) * NKV + g) * HD;
    float part = 0.0f;
#pragma unroll
    for (int e = 0; e < DPL; e++) {
      const int d = lane + 32 * e;
      if (d < HD) part += qr[e] * k_cache[row + d];
    }
    const float s = tl_warp_sum(part) * scale;
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new); /* 0 for the first key (m = -inf) */
    const float p = expf(s - m_new);
    l = l * corr + p;
#pragma unroll
    for (int e = 0; e < DPL; e++) {
      const int d = lane + 32 * e;
      o[e] = o[e] * corr + (d < HD ? p * v_cache[row + d] : 0.0f);
    }
    m = m_new;
  }
  const float inv = 1.0f / l;
  float *oh = out + ((int64_t)b * NH + h) * HD;
#pragma unroll
  for (int e = 0; e < DPL; e++) {
    const int d = lane + 32 * e;
    if (d < HD) oh[d] = o[e] * inv;
  }
}

extern "C" int tl_attention_decode(float *out, const float *q, const float *k_cache, const float *v_cache, int B,
                                   int NH, int NKV, int HD, int maxT, int pos) {
  TL_REQUIRE(out && q && k_cache && v_cache, "tl_attention_decode: NULL pointer");
  TL_REQUIRE(B > 0 && NH > 0 && NKV > 0 && HD > 0 && maxT > 0,
             "tl_attention_decode: sizes must be positive (B=%d NH=%d NKV=%d HD=%d maxT=%d)", B, NH, NKV, HD, maxT);
  TL_REQUIRE(NH % NKV == 0, "tl_attention_decode: NH=%d must be a multiple of NKV=%d", NH, NKV);
  TL_REQUIRE(B <= 65535, "tl_attention_decode: B=%d exceeds the grid limit", B);
  if (HD > DECODE_MAX_HD)
    return tl_fail(TL_ERR_UNSUPPORTED, "tl_attention_decode: head dim %d exceeds the CUDA kernel's maximum %d", HD,
                   DECODE_MAX_HD);
  if (pos < 0 || pos >= maxT)
    return tl_fail(TL_ERR_OUT_OF_RANGE, "tl_attention_decode: pos=%d is outside the cache [0, %d)", pos, maxT);
  const float scale = (float)(1.0 / sqrt((double)HD));
  const dim3 grid(NH, B);
  if (HD <= 32) attention_decode_kernel<1><<<grid, 32>>>(out, q, k_cache, v_cache, NH, NKV, HD, maxT, pos, scale);
  else if (HD <= 64) attention_decode_kernel<2><<<grid, 32>>>(out, q, k_cache, v_cache, NH, NKV, HD, maxT, pos, scale);
  else if (HD <= 128) attention_decode_kernel<4><<<grid, 32>>>(out, q, k_cache, v_cache, NH, NKV, HD, maxT, pos, scale);
  else attention_decode_kernel<8><<<grid, 32>>>(out, q, k_cache, v_cache, NH, NKV, HD, maxT, pos, scale);
  TL_LAUNCHED("attention_decode_kernel");
  return TL_OK;
}
