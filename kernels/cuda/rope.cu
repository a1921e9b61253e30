/* Rotate-half RoPE as in Hugging Face Llama: for i < HD/2, with (c, s) = tables at position p,
 *   out[i] = x[i] c - x[i+HD/2] s,   out[i+HD/2] = x[i+HD/2] c + x[i] s.
 * One thread per rotated pair reads both inputs before writing, so out may alias inp. */
#include "common.cuh"

#include <math.h>

/* cos, sin (T, HD/2): angle(t,i) = t * theta^(-2i/HD), computed in double then rounded. */
__global__ void rope_tables_kernel(float *cosb, float *sinb, int T, int HD, double theta) {
  const int half = HD / 2;
  const int64_t total = (int64_t)T * half;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total; idx += (int64_t)gridDim.x * blockDim.x) {
    const int t = (int)(idx / half), i = (int)(idx % half);
    const double inv_freq = pow(theta, -2.0 * (double)i / (double)HD);
    const double a = (double)t * inv_freq;
    cosb[idx] = (float)cos(a);
    sinb[idx] = (float)sin(a);
  }
}

/* One thread per (b, t, h, i < HD/2). */
__global__ void rope_forward_kernel(float *out, const float *inp, const float *cosb, const float *sinb, int T, int NH,
                                    int HD, int pos0, int64_t total) {
  const int half = HD / 2;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total; idx += (int64_t)gridDim.x * blockDim.x) {
    const int i = (int)(idx % half);
    const int64_t row = idx / half;          /* (b, t, h) */
    const int t = (int)((row / NH) % T);
    const int64_t base = row * HD;
    const float c = cosb[(int64_t)(pos0 + t) * half + i], s = sinb[(int64_t)(pos0 + t) * half + i];
    const float x1 = inp[base + i], x2 = inp[base + i + half];
    out[base + i] = x1 * c - x2 * s;
    out[base + i + half] = x2 * c + x1 * s;
  }
}

/* dinp += R^T dout: dx1 = d1 c + d2 s, dx2 = -d1 s + d2 c. */
__global__ void rope_backward_kernel(float *dinp, const float *dout, const float *cosb, const float *sinb, int T,
                                     int NH, int HD, int pos0, int64_t total) {
  const int half = HD / 2;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total; idx += (int64_t)gridDim.x * blockDim.x) {
    const int i = (int)(idx % half);
    const int64_t row = idx / half;
    const int t = (int)((row / NH) % T);
    const int64_t base = row * HD;
    const float c = cosb[(int64_t)(pos0 + t) * half + i], s = sinb[(int64_t)(pos0 + t) * half + i];
    const float d1 = dout[base + i], d2 = dout[base + i + half];
    dinp[base + i] += d1 * c + d2 * s;
    dinp[base + i + half] += -d1 * s + d2 * c;
  }
}

static int check(const char *who, int B, int T, int NH, int HD, int pos0, int maxT) {
  TL_REQUIRE(B > 0 && T > 0 && NH > 0 && HD > 0, "%s: sizes must be positive (B=%d T=%d NH=%d HD=%d)", who, B, T,
             NH, HD);
  TL_REQUIRE(HD % 2 == 0, "%s: head dim %d must be even", who, HD);
  TL_REQUIRE(pos0 >= 0, "%s: pos0 must be >= 0, got %d", who, pos0);
  TL_REQUIRE((int64_t)pos0 + T <= maxT, "%s: positions [%d, %lld) exceed the tables' %d rows", who, pos0,
             (long long)pos0 + T, maxT);
  return TL_OK;
}

extern "C" int tl_rope_tables(float *cos, float *sin, int T, int HD, float theta) {
  TL_REQUIRE(cos && sin, "tl_rope_tables: NULL pointer");
  TL_REQUIRE(T > 0 && HD > 0 && HD % 2 == 0, "tl_rope_tables: need T > 0 and an even HD > 0 (T=%d HD=%d)", T, HD);
  TL_REQUIRE(theta > 0.0f, "tl_rope_tables: theta must be positive, got %g", (double)theta);
  const int64_t total = (int64_t)T * (HD / 2);
  rope_tables_kernel<<<tl_grid_for(total, 256), 256>>>(cos, sin, T, HD, (double)theta);
  TL_LAUNCHED("rope_tables_kernel");
  return TL_OK;
}

extern "C" int tl_rope_forward(float *out, const float *inp, const float *cos, const float *sin, int B, int T, int NH,
                               int HD, int pos0, int maxT) {
  TL_REQUIRE(out && inp && cos && sin, "tl_rope_forward: NULL pointer");
  TL_TRY(check("tl_rope_forward", B, T, NH, HD, pos0, maxT));
  const int64_t total = (int64_t)B * T * NH * (HD / 2);
  rope_forward_kernel<<<tl_grid_for(total, 256), 256>>>(out, inp, cos, sin, T, NH, HD, pos0, total);
  TL_LAUNCHED("rope_forward_kernel");
  return TL_OK;
}

extern "C" int tl_rope_backward(float *dinp, const float *dout, const float *cos, const float *sin, int B, int T,
                                int NH, int HD, int pos0, int maxT) {
  TL_REQUIRE(dinp && dout && cos && sin, "tl_rope_backward: NULL pointer");
  TL_TRY(check("tl_rope_backward", B, T, NH, HD, pos0, maxT));
  TL_REQUIRE(dinp != dout, "tl_rope_backward: dinp must not alias dout");
  const int64_t total = (int64_t)B * T * NH * (HD / 2);
  rope_backward_kernel<<<tl_grid_for(total, 256), 256>>>(dinp, dout, cos, sin, T, NH, HD, pos0, total);
  TL_LAUNCHED("rope_backward_kernel");
  return TL_OK;
}
