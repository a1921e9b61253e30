/* Runtime half of the CUDA library: errors, device memory, build info, scratch buffers. */
#include "common.cuh"
#include "cublaslt_loader.h"

#include <mutex>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static thread_local char last_error[1024];

int tl_fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return code;
}

int tl_cuda_debug_sync(void) {
  static int cached = -1;
  if (cached < 0) {
    const char *s = getenv("TINYLLAMA_CUDA_SYNC");
    cached = (s && *s && strcmp(s, "0") != 0) ? 1 : 0;
  }
  return cached;
}

extern "C" {

const char *tl_error_string(int code) {
  switch (code) {
    case TL_OK: return "ok";
    case TL_ERR_INVALID_ARGUMENT: return "invalid argument";
    case TL_ERR_OUT_OF_MEMORY: return "out of memory";
    case TL_ERR_OUT_OF_RANGE: return "value out of range";
    case TL_ERR_BACKEND: return "backend failure";
    case TL_ERR_UNSUPPORTED: return "unsupported";
    default: return "unknown error code";
  }
}

const char *tl_last_error(void) { return last_error; }

int tl_backend(void) { return 1; }

int tl_build_info(const char **out) {
  TL_REQUIRE_PTR(out);
  static char info[768];
  int dev = 0, rt = 0, drv = 0;
  cudaDeviceProp prop;
  TL_CUDA(cudaGetDevice(&dev));
  TL_CUDA(cudaGetDeviceProperties(&prop, dev));
  TL_CUDA(cudaRuntimeGetVersion(&rt));
  TL_CUDA(cudaDriverGetVersion(&drv));
  { /* try to load cuBLASLt so the description says where it came from; a failure is reported by
       the first matmul, not here */
    const struct tl_cublaslt_api *api;
    tl_cublasLtHandle_t h;
    void *ws;
    size_t wsb;
    (void)tl_cublaslt_get(&api, &h, &ws, &wsb);
  }
  snprintf(info, sizeof info,
           "cuda %s sm_%d%d %d SMs %.1f GiB, cudart %d.%d (static), driver %d.%d, nvcc %d.%d, cuBLASLt: %s%s",
           prop.name, prop.major, prop.minor, prop.multiProcessorCount,
           (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), rt / 1000, (rt % 1000) / 10,
           drv / 1000, (drv % 1000) / 10, __CUDACC_VER_MAJOR__, __CUDACC_VER_MINOR__,
           tl_cublaslt_describe(), tl_cublaslt_tf32() ? " (TF32 allowed)" : "");
  *out = info;
  return TL_OK;
}

/* The GPU has no thread count to set; remember the value so get returns what was set. */
static int num_threads = 1;
int tl_set_num_threads(int n) {
  TL_REQUIRE_POS(n);
  num_threads = n;
  return TL_OK;
}
int tl_get_num_threads(int *out) {
  TL_REQUIRE_PTR(out);
  *out = num_threads;
  return TL_OK;
}

int tl_alloc(void **out, int64_t bytes) {
  TL_REQUIRE_PTR(out);
  TL_REQUIRE(bytes >= 0, "tl_alloc: negative size %lld", (long long)bytes);
  /* Like the CPU library: never 0 bytes, rounded up, zero-filled. */
  size_t size = (size_t)((bytes + 255) / 256 * 256);
  if (size == 0) size = 256;
  void *p = NULL;
  cudaError_t e = cudaMalloc(&p, size);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError(); /* not sticky: clear it so the next launch check is clean */
    return tl_fail(TL_ERR_OUT_OF_MEMORY, "tl_alloc: cudaMalloc of %lld bytes failed: %s", (long long)bytes,
                   cudaGetErrorString(e));
  }
  if (e != cudaSuccess)
    return tl_fail(TL_ERR_BACKEND, "tl_alloc: cudaMalloc of %lld bytes failed: %s (%s)", (long long)bytes,
                   cudaGetErrorString(e), cudaGetErrorName(e));
  e = cudaMemset(p, 0, size);
  if (e != cudaSuccess) {
    cudaFree(p);
    return tl_fail(TL_ERR_BACKEND, "tl_alloc: cudaMemset failed: %s", cudaGetErrorString(e));
  }
  *out = p;
  return TL_OK;
}

int tl_free(void *p) {
  if (!p) return TL_OK;
  TL_CUDA(cudaFree(p));
  return TL_OK;
}

int tl_zero(void *p, int64_t bytes) {
  TL_REQUIRE(bytes >= 0, "tl_zero: negative size %lld", (long long)bytes);
  if (bytes == 0) return TL_OK;
  TL_REQUIRE_PTR(p);
  TL_CUDA(cudaMemset(p, 0, (size_t)bytes));
  return TL_OK;
}

static int copy(const char *who, void *dst, const void *src, int64_t bytes, cudaMemcpyKind kind) {
  TL_REQUIRE(bytes >= 0, "%s: negative size %lld", who, (long long)bytes);
  if (bytes == 0) return TL_OK;
  TL_REQUIRE(dst != NULL && src != NULL, "%s: NULL pointer", who);
  cudaError_t e = cudaMemcpy(dst, src, (size_t)bytes, kind);
  if (e != cudaSuccess)
    return tl_fail(TL_ERR_BACKEND, "%s: cudaMemcpy of %lld bytes failed: %s (%s)", who, (long long)bytes,
                   cudaGetErrorString(e), cudaGetErrorName(e));
  return TL_OK;
}

int tl_upload(void *dst, const void *src, int64_t bytes) {
  return copy("tl_upload", dst, src, bytes, cudaMemcpyHostToDevice);
}
int tl_download(void *dst, const void *src, int64_t bytes) {
  return copy("tl_download", dst, src, bytes, cudaMemcpyDeviceToHost);
}
int tl_copy(void *dst, const void *src, int64_t bytes) {
  return copy("tl_copy", dst, src, bytes, cudaMemcpyDeviceToDevice);
}

int tl_sync(void) {
  TL_CUDA(cudaDeviceSynchronize());
  TL_CUDA(cudaGetLastError());
  return TL_OK;
}

} /* extern "C" */

/* ---- scratch and flag ---- */
static std::mutex scratch_mu;
static void *scratch_ptr[TL_SCRATCH_SLOTS];
static size_t scratch_size[TL_SCRATCH_SLOTS];

int tl_cuda_scratch(int slot, size_t bytes, void **out) {
  TL_REQUIRE(slot >= 0 && slot < TL_SCRATCH_SLOTS, "tl_cuda_scratch: bad slot %d", slot);
  std::lock_guard<std::mutex> lock(scratch_mu);
  if (bytes == 0) bytes = 256;
  if (scratch_size[slot] < bytes) {
    /* cudaFree synchronises the device, so no kernel still reads the old buffer. */
    if (scratch_ptr[slot]) TL_CUDA(cudaFree(scratch_ptr[slot]));
    scratch_ptr[slot] = NULL;
    scratch_size[slot] = 0;
    size_t size = bytes + bytes / 4; /* headroom so slowly growing shapes do not realloc each call */
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, size);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      return tl_fail(e == cudaErrorMemoryAllocation ? TL_ERR_OUT_OF_MEMORY : TL_ERR_BACKEND,
                     "scratch buffer of %zu bytes: cudaMalloc failed: %s", size, cudaGetErrorString(e));
    }
    scratch_ptr[slot] = p;
    scratch_size[slot] = size;
  }
  *out = scratch_ptr[slot];
  return TL_OK;
}

static int *flag_ptr;

int tl_cuda_flag_reset(int **dflag) {
  {
    std::lock_guard<std::mutex> lock(scratch_mu);
    if (!flag_ptr) TL_CUDA(cudaMalloc((void **)&flag_ptr, sizeof(int)));
  }
  TL_CUDA(cudaMemset(flag_ptr, 0, sizeof(int)));
  *dflag = flag_ptr;
  return TL_OK;
}

int tl_cuda_flag_read(int *host) {
  TL_REQUIRE(flag_ptr != NULL, "tl_cuda_flag_read: flag was never reset");
  TL_CUDA(cudaMemcpy(host, flag_ptr, sizeof(int), cudaMemcpyDeviceToHost));
  return TL_OK;
}
