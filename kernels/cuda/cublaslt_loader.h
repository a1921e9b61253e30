/* cuBLASLt, loaded at run time with dlopen() so the library has no link-time dependency on it and
 * builds without cuBLAS headers. Only the handful of types, enums and functions we call are
 * declared here, by hand, with the values of the public cuBLAS documentation (cublasLt.h /
 * cublas_api.h enumerations); they are prefixed tl_ so they can never clash with the real header.
 *
 * Search order (first that loads wins; every attempt is listed in the error otherwise):
 *   1. $TINYLLAMA_CUBLASLT — an explicit file; if set, nothing else is tried;
 *   2. $CUDA_HOME/lib64 and $CUDA_PATH/lib64, then /usr/local/cuda/lib64;
 *   3. the system library path (LD_LIBRARY_PATH, ldconfig cache) by soname;
 *   4. Python environments' pip wheels: <site>/nvidia/cublas/lib and <site>/nvidia/cu13/lib, for
 *      each <site> in $TINYLLAMA_PYTHON_SITE (colon-separated), $VIRTUAL_ENV/lib/python3* /
 *      site-packages, $CONDA_PREFIX/lib/python3* /site-packages, <prefix>/lib/python3* /
 *      {site,dist}-packages for the prefix (<dir>/..) of every python3 on $PATH and of the file it
 *      links to (finds a virtualenv without VIRTUAL_ENV set), ~/.local/lib/python3* /site-packages,
 *      /opt/ * /.venv, /opt/ * /venv and /opt/ * (conda) lib/python3* /site-packages,
 *      /usr/local/lib/python3* /{site,dist}-packages, /usr/lib/python3* /{site,dist}-packages.
 * Sonames tried in each place: libcublasLt.so.13, libcublasLt.so.12, libcublasLt.so. */
#ifndef TL_CUBLASLT_LOADER_H
#define TL_CUBLASLT_LOADER_H

#include <cuda_runtime.h>
#include <library_types.h> /* cudaDataType (CUDA_R_32F = 0, CUDA_R_16BF = 14): part of the toolkit */
#include <stddef.h>
#include <stdint.h>

typedef int tl_cublasStatus_t; /* CUBLAS_STATUS_SUCCESS = 0 */
typedef struct tl_cublasLtContext *tl_cublasLtHandle_t;
typedef struct tl_cublasLtMatmulDescOpaque *tl_cublasLtMatmulDesc_t;
typedef struct tl_cublasLtMatrixLayoutOpaque *tl_cublasLtMatrixLayout_t;
typedef struct tl_cublasLtMatmulPreferenceOpaque *tl_cublasLtMatmulPreference_t;

/* cublasLtMatmulAlgo_t: 8 opaque 64-bit words. */
typedef struct {
  uint64_t data[8];
} tl_cublasLtMatmulAlgo_t;

/* cublasLtMatmulHeuristicResult_t. */
typedef struct {
  tl_cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  tl_cublasStatus_t state;
  float wavesCount;
  int reserved[4];
} tl_cublasLtMatmulHeuristicResult_t;

/* cublasComputeType_t */
enum { TL_CUBLAS_COMPUTE_32F = 68, TL_CUBLAS_COMPUTE_32F_FAST_TF32 = 77 };
/* cublasOperation_t */
enum { TL_CUBLAS_OP_N = 0, TL_CUBLAS_OP_T = 1 };
/* cublasLtMatmulDescAttributes_t */
enum { TL_CUBLASLT_MATMUL_DESC_TRANSA = 3, TL_CUBLASLT_MATMUL_DESC_TRANSB = 4 };
/* cublasLtMatmulPreferenceAttributes_t */
enum {
  TL_CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1, /* uint64_t */
  TL_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5, /* uint32_t, default 256 */
  TL_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
  TL_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
  TL_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
};

struct tl_cublaslt_api {
  tl_cublasStatus_t (*Create)(tl_cublasLtHandle_t *);
  tl_cublasStatus_t (*Destroy)(tl_cublasLtHandle_t);
  tl_cublasStatus_t (*MatmulDescCreate)(tl_cublasLtMatmulDesc_t *, int computeType, cudaDataType scaleType);
  tl_cublasStatus_t (*MatmulDescDestroy)(tl_cublasLtMatmulDesc_t);
  tl_cublasStatus_t (*MatmulDescSetAttribute)(tl_cublasLtMatmulDesc_t, int attr, const void *buf, size_t size);
  tl_cublasStatus_t (*MatrixLayoutCreate)(tl_cublasLtMatrixLayout_t *, cudaDataType type, uint64_t rows,
                                          uint64_t cols, int64_t ld);
  tl_cublasStatus_t (*MatrixLayoutDestroy)(tl_cublasLtMatrixLayout_t);
  tl_cublasStatus_t (*MatmulPreferenceCreate)(tl_cublasLtMatmulPreference_t *);
  tl_cublasStatus_t (*MatmulPreferenceDestroy)(tl_cublasLtMatmulPreference_t);
  tl_cublasStatus_t (*MatmulPreferenceSetAttribute)(tl_cublasLtMatmulPreference_t, int attr, const void *buf,
                                                    size_t size);
  tl_cublasStatus_t (*MatmulAlgoGetHeuristic)(tl_cublasLtHandle_t, tl_cublasLtMatmulDesc_t,
                                              tl_cublasLtMatrixLayout_t A, tl_cublasLtMatrixLayout_t B,
                                              tl_cublasLtMatrixLayout_t C, tl_cublasLtMatrixLayout_t D,
                                              tl_cublasLtMatmulPreference_t, int requested,
                                              tl_cublasLtMatmulHeuristicResult_t *results, int *returned);
  tl_cublasStatus_t (*Matmul)(tl_cublasLtHandle_t, tl_cublasLtMatmulDesc_t, const void *alpha, const void *A,
                              tl_cublasLtMatrixLayout_t, const void *B, tl_cublasLtMatrixLayout_t,
                              const void *beta, const void *C, tl_cublasLtMatrixLayout_t, void *D,
                              tl_cublasLtMatrixLayout_t, const tl_cublasLtMatmulAlgo_t *algo, void *workspace,
                              size_t workspaceSize, cudaStream_t stream);
  /* optional (NULL when absent) */
  const char *(*GetStatusString)(tl_cublasStatus_t);
  size_t (*GetVersion)(void);
};

/* Loads the library once (thread-safe) and creates the handle and workspace. On success *api,
 * *handle and *workspace are set; otherwise TL_ERR_UNSUPPORTED (library not found: the message
 * lists every place tried) or TL_ERR_BACKEND. */
int tl_cublaslt_get(const struct tl_cublaslt_api **api, tl_cublasLtHandle_t *handle, void **workspace,
                    size_t *workspace_bytes);
/* "path (version N)" once loaded, "not loaded" before, or "unavailable" after a failed load. */
const char *tl_cublaslt_describe(void);
/* 1 when fp32 matmuls may use TF32 tensor cores (TINYLLAMA_TF32=1); default 0, exact fp32. */
int tl_cublaslt_tf32(void);
/* A readable name for a cublasStatus_t. */
const char *tl_cublas_status_string(tl_cublasStatus_t s);

#endif
