/* tl_attention_forward_bf16 on the CPU: the reference the CUDA tensor-core kernel is tested
 * against, not a fast path. It widens q, k, v to fp32 (exact), runs the fp32 flash attention and
 * rounds the output once, so it differs from the fp32 op only by the bf16 storage of its inputs
 * and output. */
#include <stdlib.h>

#include "common.h"

static float *widen(const uint16_t *x, int64_t n) {
  float *out = malloc((size_t)n * sizeof(float));
  if (out) tl_cast_bf16_to_f32(out, x, n);
  return out;
}

int tl_attention_forward_bf16(uint16_t *out, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                              int B, int T, int NH, int NKV, int HD) {
  static const char *who = "tl_attention_forward_bf16";
  TL_REQUIRE(out && lse && q && k && v, "%s: NULL pointer", who);
  TL_REQUIRE(B > 0 && T > 0 && NH > 0 && NKV > 0 && HD > 0, "%s: sizes must be positive (B=%d T=%d NH=%d NKV=%d HD=%d)",
             who, B, T, NH, NKV, HD);
  TL_REQUIRE(NH % NKV == 0, "%s: NH=%d is not a multiple of NKV=%d", who, NH, NKV);
  const int64_t nq = (int64_t)B * T * NH * HD, nkv = (int64_t)B * T * NKV * HD;
  float *qf = widen(q, nq), *kf = widen(k, nkv), *vf = widen(v, nkv), *of = malloc((size_t)nq * sizeof(float));
  int rc = TL_OK;
  if (!qf || !kf || !vf || !of) rc = tl_fail(TL_ERR_OUT_OF_MEMORY, "%s: could not allocate fp32 copies (%lld floats)", who, (long long)(nq * 2 + nkv * 2));
  if (rc == TL_OK) rc = tl_attention_forward(of, lse, qf, kf, vf, B, T, NH, NKV, HD);
  if (rc == TL_OK) rc = tl_cast_f32_to_bf16(out, of, nq);
  free(qf);
  free(kf);
  free(vf);
  free(of);
  return rc;
}

int tl_attention_backward_bf16(float *dq, float *dk, float *dv, const uint16_t *dout, const uint16_t *q,
                               const uint16_t *k, const uint16_t *v, const uint16_t *out, const float *lse, int B, int T,
                               int NH, int NKV, int HD) {
  static const char *who = "tl_attention_backward_bf16";
  TL_REQUIRE(dq && dk && dv && dout && q && k && v && out && lse, "%s: NULL pointer", who);
  TL_REQUIRE(B > 0 && T > 0 && NH > 0 && NKV > 0 && HD > 0, "%s: sizes must be positive (B=%d T=%d NH=%d NKV=%d HD=%d)",
             who, B, T, NH, NKV, HD);
  TL_REQUIRE(NH % NKV == 0, "%s: NH=%d is not a multiple of NKV=%d", who, NH, NKV);
  const int64_t nq = (int64_t)B * T * NH * HD, nkv = (int64_t)B * T * NKV * HD;
  float *dof = widen(dout, nq), *qf = widen(q, nq), *kf = widen(k, nkv), *vf = widen(v, nkv), *of = widen(out, nq);
  int rc = TL_OK;
  if (!dof || !qf || !kf || !vf || !of) rc = tl_fail(TL_ERR_OUT_OF_MEMORY, "%s: could not allocate fp32 copies (%lld floats)", who, (long long)(nq * 3 + nkv * 2));
  if (rc == TL_OK) rc = tl_attention_backward(dq, dk, dv, dof, qf, kf, vf, of, lse, B, T, NH, NKV, HD);
  free(dof);
  free(qf);
  free(kf);
  free(vf);
  free(of);
  return rc;
}
