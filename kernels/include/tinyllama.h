/*
 * tinyllama.h — THE kernel ABI. Two libraries implement it: kernels/cpu (host pointers) and
 * kernels/cuda (device pointers). The TypeScript side (@tinyllama/kernels) is identical for both.
 *
 * Conventions
 * - Every function returns TL_OK (0) or an error code; tl_error_string(code) names the code and
 *   tl_last_error() gives the detail of the most recent failure on the calling thread.
 * - Shapes are explicit integer arguments. Each pointer's shape is given in a comment, row-major,
 *   e.g. `out (B,T,C)`. fp32 unless said otherwise; token ids are int32.
 * - Backward kernels ACCUMULATE (+=) into every gradient they write, parameters and activations
 *   alike, so gradient accumulation is free and callers zero gradients once per step.
 * - A NULL gradient pointer means "not needed" where a comment says "nullable".
 * - Element counts of flat (arena-wide) ops are int64 because a 1.1B-parameter arena exceeds 2^31.
 * - Kernels are deterministic for a fixed thread count: no atomics in reductions, static schedules.
 */
#ifndef TINYLLAMA_H
#define TINYLLAMA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TL_OK 0
#define TL_ERR_INVALID_ARGUMENT 1 /* a shape, count or pointer the kernel cannot accept */
#define TL_ERR_OUT_OF_MEMORY 2
#define TL_ERR_OUT_OF_RANGE 3 /* e.g. a token id >= vocab size */
#define TL_ERR_BACKEND 4      /* CUDA / cuBLASLt failure; tl_last_error has its message */
#define TL_ERR_UNSUPPORTED 5  /* not available in this build or on this device */

/* ---------------------------------------------------------------- runtime ---- */
const char *tl_error_string(int code);
const char *tl_last_error(void);
/* 0 = cpu, 1 = cuda */
int tl_backend(void);
/* *out = a human-readable description of the build (ISA path, compiler, device). */
int tl_build_info(const char **out);
int tl_set_num_threads(int n);
int tl_get_num_threads(int *out);

/* ----------------------------------------------------------------- memory ---- */
/* 64-byte aligned (cpu) / cudaMalloc'd (cuda) memory; *out receives the pointer. */
int tl_alloc(void **out, int64_t bytes);
int tl_free(void *p);
int tl_zero(void *p, int64_t bytes);
int tl_upload(void *dst_device, const void *src_host, int64_t bytes);
int tl_download(void *dst_host, const void *src_device, int64_t bytes);
int tl_copy(void *dst_device, const void *src_device, int64_t bytes);
int tl_sync(void);

/* ----------------------------------------------------------------- matmul ---- */
/* The Linear layer: out = inp @ weight^T (+ bias).
 * out (N,OC), inp (N,C), weight (OC,C), bias (OC) nullable */
int tl_matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                      int N, int C, int OC);
/* dinp (N,C) nullable, dweight (OC,C) nullable, dbias (OC) nullable, dout (N,OC), inp (N,C),
 * weight (OC,C). dinp += dout @ weight; dweight += dout^T @ inp; dbias += sum_n dout. */
int tl_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                       const float *inp, const float *weight, int N, int C, int OC);

/* -------------------------------------------------------------- embedding ---- */
/* out (N,C), tokens (N), wte (V,C). A token outside [0,V) is TL_ERR_OUT_OF_RANGE. */
int tl_embedding_forward(float *out, const int32_t *tokens, const float *wte, int N, int C, int V);
/* dwte (V,C) += scatter of dout (N,C) by tokens (N). Deterministic (no atomics). */
int tl_embedding_backward(float *dwte, const float *dout, const int32_t *tokens, int N, int C,
                          int V);

/* ---------------------------------------------------------------- rmsnorm ---- */
/* out = inp * rstd * weight, rstd = 1/sqrt(mean(inp^2) + eps).
 * out (N,C), rstd (N), inp (N,C), weight (C) */
int tl_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C,
                       float eps);
/* dinp (N,C), dweight (C), dout (N,C), inp (N,C), weight (C), rstd (N) */
int tl_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                        const float *weight, const float *rstd, int N, int C);

/* ------------------------------------------------------------------- rope ---- */
/* Rotate-half RoPE as in Hugging Face Llama. cos, sin (T,HD/2): angle(t,i) = t * theta^(-2i/HD). */
int tl_rope_tables(float *cos, float *sin, int T, int HD, float theta);
/* out (B,T,NH,HD), inp (B,T,NH,HD) (out may alias inp); position of row t is pos0 + t, and the
 * tables must cover pos0+T rows (maxT). */
int tl_rope_forward(float *out, const float *inp, const float *cos, const float *sin, int B, int T,
                    int NH, int HD, int pos0, int maxT);
/* dinp (B,T,NH,HD) += R^T dout; dout (B,T,NH,HD). dinp must not alias dout. */
int tl_rope_backward(float *dinp, const float *dout, const float *cos, const float *sin, int B,
                     int T, int NH, int HD, int pos0, int maxT);

/* -------------------------------------------------------------- attention ---- */
/* Causal grouped-query attention, scale 1/sqrt(HD); query head h reads KV head h / (NH/NKV).
 * Tiled with an online softmax: no (T,T) matrix is materialised.
 * out (B,T,NH,HD), lse (B,NH,T) log-sum-exp of the scaled scores (saved for backward),
 * q (B,T,NH,HD), k (B,T,NKV,HD), v (B,T,NKV,HD) */
int tl_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                         int B, int T, int NH, int NKV, int HD);
/* dq (B,T,NH,HD), dk (B,T,NKV,HD), dv (B,T,NKV,HD) accumulate; dout, out (B,T,NH,HD),
 * lse (B,NH,T) from the forward. */
int tl_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                          const float *k, const float *v, const float *out, const float *lse, int B,
                          int T, int NH, int NKV, int HD);

/* ----------------------------------------------------------------- swiglu ---- */
/* out = silu(gate) * up, elementwise. out, gate, up (N) */
int tl_swiglu_forward(float *out, const float *gate, const float *up, int64_t N);
/* dgate (N), dup (N) accumulate; dout, gate, up (N) */
int tl_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                       const float *up, int64_t N);

/* -------------------------------------------------------------- residual ---- */
/* out = a + b; out may alias a or b. (N) */
int tl_add(float *out, const float *a, const float *b, int64_t N);
/* dst += src (the residual's backward and gradient accumulation). (N) */
int tl_accumulate(float *dst, const float *src, int64_t N);
/* x *= s. (N) */
int tl_scale(float *x, float s, int64_t N);

/* ---------------------------------------------------------- cross-entropy ---- */
/* Softmax cross-entropy over V classes, fused with its backward. losses (N): per-row loss
 * (0 where target == ignore_index). When dlogits is non-NULL it receives
 * (softmax(logits) - onehot(target)) * grad_scale, or 0 for ignored rows; dlogits may alias
 * logits, so the LM head's logits buffer becomes its gradient in place. This one op overwrites
 * rather than accumulates. logits (N,V), targets (N) */
int tl_crossentropy_forward_backward(float *losses, float *dlogits, const float *logits,
                                     const int32_t *targets, int N, int V, int ignore_index,
                                     float grad_scale);

/* -------------------------------------------------------------- optimizer ---- */
/* *out = sum(x^2) over (N) in double precision, reduced in a fixed order. out is a HOST pointer. */
int tl_sumsq(double *out, const float *x, int64_t N);
/* One AdamW step (PyTorch semantics) over N contiguous parameters:
 * g = grad * grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr * wd * p; p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
 * param, grad, m, v (N); t >= 1 is the step number. */
int tl_adamw_step(float *param, const float *grad, float *m, float *v, int64_t N, float lr,
                  float beta1, float beta2, float eps, float weight_decay, float grad_scale, int t);

/* ------------------------------------------------------------------- bf16 ---- */
/* bf16 mixed precision: the minimum a bf16 training step needs. bf16 values are stored as
 * uint16_t (the upper half of an IEEE fp32); fp32 -> bf16 rounds to nearest even (NaN stays NaN).
 * Recipe: fp32 master weights, m, v and gradients; bf16 copies of the weights and of the
 * matmul inputs; every matmul accumulates in fp32 and rounds its result once. Other ops run in
 * fp32 on activations cast around the matmuls. No bias: the Llama Linear layers have none. */
/* out (N) = bf16(inp (N)) */
int tl_cast_f32_to_bf16(uint16_t *out, const float *inp, int64_t N);
/* out (N) = float(inp (N)), exact */
int tl_cast_bf16_to_f32(float *out, const uint16_t *inp, int64_t N);
/* out (N,OC) = bf16(inp (N,C) @ weight (OC,C)^T), fp32 accumulation; all bf16. */
int tl_matmul_forward_bf16(uint16_t *out, const uint16_t *inp, const uint16_t *weight, int N, int C, int OC);
/* dinp (N,C) bf16 nullable: dinp = bf16(dinp + dout @ weight);
 * dweight (OC,C) fp32 nullable: dweight += dout^T @ inp (fp32 master gradient);
 * dout (N,OC), inp (N,C), weight (OC,C) bf16. */
int tl_matmul_backward_bf16(uint16_t *dinp, float *dweight, const uint16_t *dout, const uint16_t *inp,
                            const uint16_t *weight, int N, int C, int OC);
/* The same products with fp32 results: what the model's bf16 mode uses (packages/model). The
 * output of a Linear layer feeds fp32 ops (RoPE, attention, SwiGLU, the residual stream) and the
 * input gradients of q/k/v and gate/up add up in one fp32 buffer, so rounding them to bf16 would
 * cost a cast pass, a bf16 buffer and three roundings per sum for nothing: the GPU's bf16 GEMM
 * writes fp32 as cheaply as bf16 (cuBLASLt D type fp32).
 * out (N,OC) fp32 = inp (N,C) @ weight (OC,C)^T; inp, weight bf16; fp32 accumulation. */
int tl_matmul_forward_bf16_f32(float *out, const uint16_t *inp, const uint16_t *weight, int N, int C, int OC);
/* dinp (N,C) fp32 nullable: dinp += dout @ weight; dweight (OC,C) fp32 nullable: dweight += dout^T @ inp;
 * dout (N,OC), inp (N,C), weight (OC,C) bf16. */
int tl_matmul_backward_bf16_f32(float *dinp, float *dweight, const uint16_t *dout, const uint16_t *inp,
                                const uint16_t *weight, int N, int C, int OC);
/* tl_adamw_step on the fp32 master weights param (N), then param_bf16 (N) = bf16(param). */
int tl_adamw_step_bf16(float *param, uint16_t *param_bf16, const float *grad, float *m, float *v, int64_t N,
                       float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                       int t);

/* -------------------------------------------------------- bf16 attention ---- */
/* Causal GQA attention on bf16 q (B,T,NH,HD), k, v (B,T,NKV,HD) into bf16 out (B,T,NH,HD) and fp32
 * lse (B,NH,T), the forward of a bf16 step.
 * Scores, softmax statistics and accumulation are fp32; out is rounded to bf16 once. CUDA runs it
 * on tensor cores (HD a multiple of 16, at most 128; other head dims take the fp32 kernel on
 * widened copies) and rounds the probabilities to bf16 before P@V, as FlashAttention-2 does; the
 * CPU twin keeps them fp32, so the two agree to bf16 tolerance, not bit for bit. */
int tl_attention_forward_bf16(uint16_t *out, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                              int B, int T, int NH, int NKV, int HD);
/* Its backward: dq (B,T,NH,HD), dk, dv (B,T,NKV,HD) fp32 += gradients, given bf16 dout, q, k, v, out
 * and the fp32 lse of tl_attention_forward_bf16. D = rowsum(dout * out) and P = exp(s - lse) are
 * fp32; CUDA (tensor cores) rounds P and dS to bf16 before their products, the CPU twin runs the
 * fp32 backward on widened copies. */
int tl_attention_backward_bf16(float *dq, float *dk, float *dv, const uint16_t *dout, const uint16_t *q,
                               const uint16_t *k, const uint16_t *v, const uint16_t *out, const float *lse, int B, int T,
                               int NH, int NKV, int HD);

/* ------------------------------------------------ attention decode (inference) ---- */
/* Attention of ONE new query per sequence over a KV cache (generation with a cache):
 * query head h of sequence b attends to the cached keys/values at positions 0..pos of kv head
 * h / (NH/NKV), scale 1/sqrt(HD). Positions 0..pos must already hold K (after RoPE) and V.
 * out (B,NH,HD), q (B,NH,HD) (the new token's queries after RoPE at position pos),
 * k_cache, v_cache (B,maxT,NKV,HD). pos outside [0, maxT) is TL_ERR_OUT_OF_RANGE. */
int tl_attention_decode(float *out, const float *q, const float *k_cache, const float *v_cache,
                        int B, int NH, int NKV, int HD, int maxT, int pos);

/* ------------------------------------------- bf16 weight storage (inference) ---- */
/* The Linear layer with weights STORED as bf16 (uint16_t, the upper half of an fp32) and fp32
 * activations: out = inp @ float(weight)^T, fp32 accumulation, fp32 result. Widening bf16 is
 * exact, so this is the fp32 matmul of the bf16-rounded weights at half the weight bytes.
 * No bias (the Llama Linear layers have none). out (N,OC), inp (N,C) fp32; weight (OC,C) bf16. */
int tl_matmul_forward_wbf16(float *out, const float *inp, const uint16_t *weight, int N, int C, int OC);

#ifdef __cplusplus
}
#endif
#endif /* TINYLLAMA_H */
