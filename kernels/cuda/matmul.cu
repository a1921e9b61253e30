/* The Linear layer on cuBLASLt: out = inp @ weight^T (+ bias), fp32 and bf16.
 *
 * Layout mapping. Our tensors are row-major; cuBLASLt is column-major. A row-major (R,K) matrix
 * with row stride K is, byte for byte, the column-major (K,R) matrix with leading dimension K,
 * i.e. its transpose. So every row-major product Y = X @ Z is computed as the column-major
 * product Y^T = Z^T @ X^T with no data movement:
 *
 *   forward   out (N,OC) = inp (N,C) @ W^T         ->  out^T (OC,N) = W (C,OC)^T . inp^T (C,N)
 *             m=OC n=N k=C; A = W as col-major (C,OC) ld C, op T; B = inp as (C,N) ld C, op N;
 *             D = out as col-major (OC,N) ld OC.
 *   dinp      dinp (N,C) += dout (N,OC) @ W (OC,C)  ->  dinp^T (C,N) = W^T (C,OC) . dout^T (OC,N)
 *             m=C n=N k=OC; A = W as (C,OC) ld C, op N; B = dout as (OC,N) ld OC, op N; beta = 1.
 *   dweight   dW (OC,C) += dout^T (OC,N) @ inp (N,C) -> dW^T (C,OC) = inp^T (C,N) . dout (N,OC)
 *             m=C n=OC k=N; A = inp as (C,N) ld C, op N; B = dout as (OC,N) ld OC, op T; beta = 1.
 *
 * Accumulation into gradients is cuBLASLt's D = alpha*op(A)op(B) + beta*C with C = D and beta = 1.
 * Precision: fp32 uses CUBLAS_COMPUTE_32F (exact fp32 FMA, no TF32) unless TINYLLAMA_TF32=1;
 * bf16 uses bf16 inputs with fp32 accumulation (CUBLAS_COMPUTE_32F, fp32 scale). */
#include "common.cuh"
#include "cublaslt_loader.h"

#include <cuda_bf16.h>
#include <string.h>

/* Largest power of two (<= 256) dividing the address: what cuBLASLt may assume about alignment. */
static uint32_t alignment_of(const void *p) {
  uintptr_t a = (uintptr_t)p;
  uint32_t al = 256;
  while (al > 1 && (a % al) != 0) al >>= 1;
  return al;
}

#ifdef TL_CUDA_EMU
/* The CPU emulator (kernels/cuda/emu) has no cuBLASLt. So that whole model steps still run there on
 * these sources (test/cuda/emu_model.test.ts), lt_gemm is this plain reference kernel in emulator
 * builds only: one thread per element of D, fp32 accumulation in k order, the same column-major
 * operands, transposes, element types and beta as the cuBLASLt call it stands for. (A real GPU
 * without cuBLASLt still gets TL_ERR_UNSUPPORTED: silently slow matmuls would hide a broken setup.) */
__device__ static float emu_load(const void *p, int64_t i, int bf16) {
  return bf16 ? __uint_as_float(((unsigned)((const uint16_t *)p)[i]) << 16) : ((const float *)p)[i];
}
__global__ void emu_gemm_kernel(int transa, int transb, int m, int n, int k, const void *A, int lda, const void *B, int ldb,
                                void *D, int ldd, int ab16, int d16, float beta) {
  const int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (e >= (int64_t)m * n) return;
  const int i = (int)(e % m), j = (int)(e / m);
  float acc = 0.0f;
  for (int p = 0; p < k; p++) {
    const float a = emu_load(A, transa ? (int64_t)i * lda + p : (int64_t)p * lda + i, ab16);
    const float b = emu_load(B, transb ? (int64_t)p * ldb + j : (int64_t)j * ldb + p, ab16);
    acc += a * b;
  }
  const int64_t o = (int64_t)j * ldd + i;
  if (beta != 0.0f) acc += beta * emu_load(D, o, d16);
  if (d16) ((uint16_t *)D)[o] = __bfloat16_as_ushort(__float2bfloat16_rn(acc));
  else ((float *)D)[o] = acc;
}
static int lt_gemm(const char *who, int transa, int transb, int m, int n, int k, const void *A, int lda,
                   const void *B, int ldb, void *D, int ldd, cudaDataType ab, cudaDataType d, float beta) {
  const int64_t total = (int64_t)m * n;
  emu_gemm_kernel<<<(unsigned)((total + 127) / 128), 128>>>(transa, transb, m, n, k, A, lda, B, ldb, D, ldd,
                                                            ab == CUDA_R_16BF, d == CUDA_R_16BF, beta);
  TL_LAUNCHED("emu_gemm_kernel");
  (void)who;
  return TL_OK;
}
#else
/* A matmul plan: the cuBLASLt descriptors of one call shape and the algorithm its heuristic chose.
 * Building them per call cost a descriptor set and a heuristic query (host time in the tens of
 * microseconds) on every one of the ~600 matmuls of a 1.1B training step, which uses about a dozen
 * distinct shapes; plans are kept for the first LT_PLANS shapes (later ones are built per call).
 * The library is driven from one host thread (bun:ffi), like the scratch buffers. */
struct lt_key {
  int transa, transb, m, n, k, lda, ldb, ldd, ab, d, compute;
  uint32_t al_a, al_b, al_d;
  uint64_t ws;
};
struct lt_plan {
  lt_key key;
  tl_cublasLtMatmulDesc_t desc;
  tl_cublasLtMatrixLayout_t la, lb, ld;
  /* The heuristic writes cublasLtMatmulHeuristicResult_t records; leave room in case the library's
   * struct is larger than the documented one we declare. */
  union {
    tl_cublasLtMatmulHeuristicResult_t r;
    unsigned char pad[1024];
  } heur;
};
#define LT_PLANS 64
static lt_plan lt_plans[LT_PLANS];
static int lt_nplans;

static void lt_plan_destroy(const struct tl_cublaslt_api *lt, lt_plan *p) {
  if (p->ld) lt->MatrixLayoutDestroy(p->ld);
  if (p->lb) lt->MatrixLayoutDestroy(p->lb);
  if (p->la) lt->MatrixLayoutDestroy(p->la);
  if (p->desc) lt->MatmulDescDestroy(p->desc);
}

/* Creates p's descriptors and asks the heuristic for an algorithm; on failure everything created
 * is destroyed again. */
static int lt_plan_build(const char *who, const struct tl_cublaslt_api *lt, tl_cublasLtHandle_t handle, lt_plan *p) {
  const lt_key &key = p->key;
  tl_cublasLtMatmulPreference_t pref = NULL;
  int32_t opa = key.transa ? TL_CUBLAS_OP_T : TL_CUBLAS_OP_N, opb = key.transb ? TL_CUBLAS_OP_T : TL_CUBLAS_OP_N;
  uint64_t ws = key.ws;
  uint32_t al_a = key.al_a, al_b = key.al_b, al_d = key.al_d;
  const int m = key.m, n = key.n, k = key.k;
  const cudaDataType ab = (cudaDataType)key.ab, d = (cudaDataType)key.d;
  int returned = 0, rc = TL_OK;
  tl_cublasStatus_t s = 0;
  const char *step = "";
  p->desc = NULL;
  p->la = p->lb = p->ld = NULL;
  memset(&p->heur, 0, sizeof p->heur);

#define LT(call, what)                                                         \
  do {                                                                         \
    step = what;                                                               \
    s = (call);                                                                \
    if (s != 0) goto fail;                                                     \
  } while (0)

  LT(lt->MatmulDescCreate(&p->desc, key.compute, CUDA_R_32F), "cublasLtMatmulDescCreate");
  LT(lt->MatmulDescSetAttribute(p->desc, TL_CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa), "set TRANSA");
  LT(lt->MatmulDescSetAttribute(p->desc, TL_CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb), "set TRANSB");
  LT(lt->MatrixLayoutCreate(&p->la, ab, key.transa ? k : m, key.transa ? m : k, key.lda), "layout A");
  LT(lt->MatrixLayoutCreate(&p->lb, ab, key.transb ? n : k, key.transb ? k : n, key.ldb), "layout B");
  LT(lt->MatrixLayoutCreate(&p->ld, d, m, n, key.ldd), "layout D");
  LT(lt->MatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  LT(lt->MatmulPreferenceSetAttribute(pref, TL_CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws), "set workspace");
  LT(lt->MatmulPreferenceSetAttribute(pref, TL_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a), "set align A");
  LT(lt->MatmulPreferenceSetAttribute(pref, TL_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b), "set align B");
  LT(lt->MatmulPreferenceSetAttribute(pref, TL_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d, sizeof al_d), "set align C");
  LT(lt->MatmulPreferenceSetAttribute(pref, TL_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof al_d), "set align D");
  LT(lt->MatmulAlgoGetHeuristic(handle, p->desc, p->la, p->lb, p->ld, p->ld, pref, 1, &p->heur.r, &returned),
     "cublasLtMatmulAlgoGetHeuristic");
  if (returned < 1 || p->heur.r.state != 0) {
    rc = tl_fail(TL_ERR_UNSUPPORTED, "%s: cuBLASLt has no algorithm for m=%d n=%d k=%d (%s, A/B type %d, D type %d, alignments %u/%u/%u)",
                 who, m, n, k, key.compute == TL_CUBLAS_COMPUTE_32F ? "fp32 compute" : "tf32 compute", (int)ab, (int)d, al_a, al_b, al_d);
    goto done;
  }
  goto done;
#undef LT
fail:
  rc = tl_fail(TL_ERR_BACKEND, "%s: %s failed: %s (m=%d n=%d k=%d)", who, step, tl_cublas_status_string(s), m, n, k);
done:
  if (pref) lt->MatmulPreferenceDestroy(pref);
  if (rc != TL_OK) lt_plan_destroy(lt, p);
  return rc;
}

/* Column-major D (m,n) = op(A) (m,k) . op(B) (k,n) + beta * D. ab/d: element types. */
static int lt_gemm(const char *who, int transa, int transb, int m, int n, int k, const void *A, int lda,
                   const void *B, int ldb, void *D, int ldd, cudaDataType ab, cudaDataType d, float beta) {
  const struct tl_cublaslt_api *lt;
  tl_cublasLtHandle_t handle;
  void *workspace;
  size_t workspace_bytes;
  TL_TRY(tl_cublaslt_get(&lt, &handle, &workspace, &workspace_bytes));

  lt_plan local;
  memset(&local.key, 0, sizeof local.key); /* keys are compared bytewise: no stray padding */
  lt_key &key = local.key;
  key.transa = transa, key.transb = transb, key.m = m, key.n = n, key.k = k, key.lda = lda, key.ldb = ldb, key.ldd = ldd;
  key.ab = (int)ab, key.d = (int)d;
  key.compute = (ab == CUDA_R_32F && tl_cublaslt_tf32()) ? TL_CUBLAS_COMPUTE_32F_FAST_TF32 : TL_CUBLAS_COMPUTE_32F;
  key.al_a = alignment_of(A), key.al_b = alignment_of(B), key.al_d = alignment_of(D);
  key.ws = workspace_bytes;

  lt_plan *plan = NULL;
  for (int i = 0; i < lt_nplans && !plan; i++)
    if (memcmp(&lt_plans[i].key, &key, sizeof key) == 0) plan = &lt_plans[i];
  const bool cached = plan != NULL || lt_nplans < LT_PLANS;
  if (!plan) {
    plan = lt_nplans < LT_PLANS ? &lt_plans[lt_nplans] : &local;
    if (plan != &local) plan->key = key;
    TL_TRY(lt_plan_build(who, lt, handle, plan));
    if (plan != &local) lt_nplans++;
  }
  const float alpha = 1.0f;
  int rc = TL_OK;
  const tl_cublasStatus_t s = lt->Matmul(handle, plan->desc, &alpha, A, plan->la, B, plan->lb, &beta, D, plan->ld, D, plan->ld,
                                         &plan->heur.r.algo, workspace, workspace_bytes, 0);
  if (s != 0) rc = tl_fail(TL_ERR_BACKEND, "%s: cublasLtMatmul failed: %s (m=%d n=%d k=%d)", who, tl_cublas_status_string(s), m, n, k);
  if (rc == TL_OK) {
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && tl_cuda_debug_sync()) e = cudaDeviceSynchronize();
    if (e != cudaSuccess) rc = tl_fail(TL_ERR_BACKEND, "%s: cublasLtMatmul: %s", who, cudaGetErrorString(e));
  }
  if (!cached) lt_plan_destroy(lt, &local);
  return rc;
}
#endif /* TL_CUDA_EMU */

/* out (N,OC) rows all = bias (OC); the matmul then adds with beta = 1. */
__global__ void fill_rows_kernel(float *out, const float *bias, int64_t total, int OC) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = bias[i % OC];
}

/* dbias (OC) += sum over n of dout (N,OC). Block = 32 columns x 8 row phases; each thread sums a
 * fixed strided set of rows, then the 8 partials are combined in a fixed order: deterministic. */
__global__ void column_sum_kernel(float *dbias, const float *dout, int N, int OC) {
  __shared__ float part[8][33];
  const int o = blockIdx.x * 32 + threadIdx.x;
  float acc = 0.0f;
  if (o < OC)
    for (int n = threadIdx.y; n < N; n += 8) acc += dout[(int64_t)n * OC + o];
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && o < OC) {
    float s = 0.0f;
    for (int j = 0; j < 8; j++) s += part[j][threadIdx.x];
    dbias[o] += s;
  }
}

static int check(const char *who, const void *a, const void *b, int N, int C, int OC) {
  TL_REQUIRE(a != NULL && b != NULL, "%s: NULL pointer", who);
  TL_REQUIRE(N > 0 && C > 0 && OC > 0, "%s: sizes must be positive (N=%d C=%d OC=%d)", who, N, C, OC);
  return TL_OK;
}

extern "C" int tl_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C,
                                 int OC) {
  TL_TRY(check("tl_matmul_forward", out, inp, N, C, OC));
  TL_REQUIRE_PTR(weight);
  float beta = 0.0f;
  if (bias) {
    int64_t total = (int64_t)N * OC;
    fill_rows_kernel<<<tl_grid_for(total, 256), 256>>>(out, bias, total, OC);
    TL_LAUNCHED("fill_rows_kernel");
    beta = 1.0f;
  }
  return lt_gemm("tl_matmul_forward", 1, 0, OC, N, C, weight, C, inp, C, out, OC, CUDA_R_32F, CUDA_R_32F, beta);
}

extern "C" int tl_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                                  const float *weight, int N, int C, int OC) {
  TL_TRY(check("tl_matmul_backward", dout, inp, N, C, OC));
  TL_REQUIRE_PTR(weight);
  if (dinp)
    TL_TRY(lt_gemm("tl_matmul_backward (dinp)", 0, 0, C, N, OC, weight, C, dout, OC, dinp, C, CUDA_R_32F, CUDA_R_32F, 1.0f));
  if (dweight)
    TL_TRY(lt_gemm("tl_matmul_backward (dweight)", 0, 1, C, OC, N, inp, C, dout, OC, dweight, C, CUDA_R_32F, CUDA_R_32F, 1.0f));
  if (dbias) {
    column_sum_kernel<<<(OC + 31) / 32, dim3(32, 8)>>>(dbias, dout, N, OC);
    TL_LAUNCHED("column_sum_kernel");
  }
  return TL_OK;
}

/* ---- bf16 ----
 * cuBLASLt's bf16 kernels are used when it has one for the shape and alignment. If it has none
 * (TL_ERR_UNSUPPORTED: e.g. an odd leading dimension on some versions), the same result is
 * computed through fp32: bf16 values widen exactly, their products are exact in fp32, the
 * accumulation is fp32 and the output is rounded once — the semantics of the header. */
static int widen(float *dst, const uint16_t *src, int64_t n) { return tl_cuda_cast_to_f32(dst, src, n); }

static int scratch_f32(int64_t count, float **out) {
  void *p = NULL;
  TL_TRY(tl_cuda_scratch(TL_SCRATCH_MATMUL, (size_t)count * sizeof(float), &p));
  *out = (float *)p;
  return TL_OK;
}

extern "C" int tl_matmul_forward_bf16(uint16_t *out, const uint16_t *inp, const uint16_t *weight, int N, int C,
                                      int OC) {
  TL_TRY(check("tl_matmul_forward_bf16", out, inp, N, C, OC));
  TL_REQUIRE_PTR(weight);
  int rc = lt_gemm("tl_matmul_forward_bf16", 1, 0, OC, N, C, weight, C, inp, C, out, OC, CUDA_R_16BF, CUDA_R_16BF, 0.0f);
  if (rc != TL_ERR_UNSUPPORTED) return rc;
  float *s = NULL; /* [inp (N,C) | weight (OC,C) | out (N,OC)] */
  TL_TRY(scratch_f32((int64_t)N * C + (int64_t)OC * C + (int64_t)N * OC, &s));
  float *xf = s, *wf = xf + (int64_t)N * C, *of = wf + (int64_t)OC * C;
  TL_TRY(widen(xf, inp, (int64_t)N * C));
  TL_TRY(widen(wf, weight, (int64_t)OC * C));
  TL_TRY(lt_gemm("tl_matmul_forward_bf16 (fp32 path)", 1, 0, OC, N, C, wf, C, xf, C, of, OC, CUDA_R_32F, CUDA_R_32F, 0.0f));
  return tl_cuda_cast_to_bf16(out, of, (int64_t)N * OC);
}

extern "C" int tl_matmul_backward_bf16(uint16_t *dinp, float *dweight, const uint16_t *dout, const uint16_t *inp,
                                       const uint16_t *weight, int N, int C, int OC) {
  TL_TRY(check("tl_matmul_backward_bf16", dout, inp, N, C, OC));
  TL_REQUIRE_PTR(weight);
  if (dinp) {
    int rc = lt_gemm("tl_matmul_backward_bf16 (dinp)", 0, 0, C, N, OC, weight, C, dout, OC, dinp, C, CUDA_R_16BF,
                     CUDA_R_16BF, 1.0f);
    if (rc == TL_ERR_UNSUPPORTED) {
      float *s = NULL; /* [weight (OC,C) | dout (N,OC) | dinp (N,C)] */
      TL_TRY(scratch_f32((int64_t)OC * C + (int64_t)N * OC + (int64_t)N * C, &s));
      float *wf = s, *gf = wf + (int64_t)OC * C, *df = gf + (int64_t)N * OC;
      TL_TRY(widen(wf, weight, (int64_t)OC * C));
      TL_TRY(widen(gf, dout, (int64_t)N * OC));
      TL_TRY(widen(df, dinp, (int64_t)N * C));
      TL_TRY(lt_gemm("tl_matmul_backward_bf16 (dinp, fp32 path)", 0, 0, C, N, OC, wf, C, gf, OC, df, C, CUDA_R_32F,
                     CUDA_R_32F, 1.0f));
      TL_TRY(tl_cuda_cast_to_bf16(dinp, df, (int64_t)N * C));
    } else if (rc != TL_OK) {
      return rc;
    }
  }
  if (dweight) {
    int rc = lt_gemm("tl_matmul_backward_bf16 (dweight)", 0, 1, C, OC, N, inp, C, dout, OC, dweight, C, CUDA_R_16BF,
                     CUDA_R_32F, 1.0f);
    if (rc == TL_ERR_UNSUPPORTED) {
      float *s = NULL; /* [inp (N,C) | dout (N,OC)] */
      TL_TRY(scratch_f32((int64_t)N * C + (int64_t)N * OC, &s));
      float *xf = s, *gf = xf + (int64_t)N * C;
      TL_TRY(widen(xf, inp, (int64_t)N * C));
      TL_TRY(widen(gf, dout, (int64_t)N * OC));
      TL_TRY(lt_gemm("tl_matmul_backward_bf16 (dweight, fp32 path)", 0, 1, C, OC, N, xf, C, gf, OC, dweight, C,
                     CUDA_R_32F, CUDA_R_32F, 1.0f));
    } else if (rc != TL_OK) {
      return rc;
    }
  }
  return TL_OK;
}

/* ---- bf16 operands, fp32 results (the model's bf16 mode) ----
 * cuBLASLt with A/B bf16 and C/D fp32 (the type pair the dweight product above already uses). The
 * fallback widens the operands to fp32, exactly as above. */
extern "C" int tl_matmul_forward_bf16_f32(float *out, const uint16_t *inp, const uint16_t *weight, int N, int C, int OC) {
  TL_TRY(check("tl_matmul_forward_bf16_f32", out, inp, N, C, OC));
  TL_REQUIRE_PTR(weight);
  int rc = lt_gemm("tl_matmul_forward_bf16_f32", 1, 0, OC, N, C, weight, C, inp, C, out, OC, CUDA_R_16BF, CUDA_R_32F, 0.0f);
  if (rc != TL_ERR_UNSUPPORTED) return rc;
  float *s = NULL; /* [inp (N,C) | weight (OC,C)] */
  TL_TRY(scratch_f32((int64_t)N * C + (int64_t)OC * C, &s));
  float *xf = s, *wf = xf + (int64_t)N * C;
  TL_TRY(widen(xf, inp, (int64_t)N * C));
  TL_TRY(widen(wf, weight, (int64_t)OC * C));
  return lt_gemm("tl_matmul_forward_bf16_f32 (fp32 path)", 1, 0, OC, N, C, wf, C, xf, C, out, OC, CUDA_R_32F, CUDA_R_32F, 0.0f);
}

extern "C" int tl_matmul_backward_bf16_f32(float *dinp, float *dweight, const uint16_t *dout, const uint16_t *inp,
                                           const uint16_t *weight, int N, int C, int OC) {
  TL_TRY(check("tl_matmul_backward_bf16_f32", dout, inp, N, C, OC));
  TL_REQUIRE_PTR(weight);
  if (dinp) {
    int rc = lt_gemm("tl_matmul_backward_bf16_f32 (dinp)", 0, 0, C, N, OC, weight, C, dout, OC, dinp, C, CUDA_R_16BF,
                     CUDA_R_32F, 1.0f);
    if (rc == TL_ERR_UNSUPPORTED) {
      float *s = NULL; /* [weight (OC,C) | dout (N,OC)] */
      TL_TRY(scratch_f32((int64_t)OC * C + (int64_t)N * OC, &s));
      float *wf = s, *gf = wf + (int64_t)OC * C;
      TL_TRY(widen(wf, weight, (int64_t)OC * C));
      TL_TRY(widen(gf, dout, (int64_t)N * OC));
      TL_TRY(lt_gemm("tl_matmul_backward_bf16_f32 (dinp, fp32 path)", 0, 0, C, N, OC, wf, C, gf, OC, dinp, C, CUDA_R_32F,
                     CUDA_R_32F, 1.0f));
    } else if (rc != TL_OK) {
      return rc;
    }
  }
  if (dweight) return tl_matmul_backward_bf16(NULL, dweight, dout, inp, weight, N, C, OC);
  return TL_OK;
}
