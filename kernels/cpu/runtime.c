/* Runtime half of the CPU library: errors, threads, host memory. */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

static _Thread_local char last_error[512];

int tl_fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return code;
}

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

int tl_backend(void) { return 0; }

int tl_build_info(const char **out) {
  TL_REQUIRE_PTR(out);
  *out = "cpu"
#if defined(__AVX512F__)
         " avx512f"
#elif defined(__AVX2__)
         " avx2"
#else
         " portable"
#endif
#if defined(__AVX512BF16__)
         " avx512bf16"
#endif
#ifdef _OPENMP
         " openmp"
#endif
         " gcc " __VERSION__;
  return TL_OK;
}

int tl_set_num_threads(int n) {
  TL_REQUIRE_POS(n);
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
  return TL_OK;
}

int tl_get_num_threads(int *out) {
  TL_REQUIRE_PTR(out);
#ifdef _OPENMP
  *out = omp_get_max_threads();
#else
  *out = 1;
#endif
  return TL_OK;
}

/* Allocations from this size on ask for transparent huge pages (2 MiB) where the kernel offers them
 * on request (THP "madvise" mode, the common default): a decode step streams every weight once, and
 * with 4 KiB pages that is a TLB miss per 4 KiB (560k per token at 1.1B). TINYLLAMA_HUGEPAGES=0 opts out. */
#define TL_HUGE_MIN ((size_t)4 << 20)
#define TL_HUGE_PAGE ((size_t)2 << 20)

static int huge_pages_wanted(void) {
  const char *e = getenv("TINYLLAMA_HUGEPAGES");
  return !(e && e[0] == '0' && e[1] == 0);
}

int tl_alloc(void **out, int64_t bytes) {
  TL_REQUIRE_PTR(out);
  TL_REQUIRE(bytes >= 0, "tl_alloc: negative size %lld", (long long)bytes);
  /* Round up so aligned_alloc's size contract holds, and never ask for 0 bytes. */
  size_t size = (size_t)((bytes + 63) / 64 * 64);
  if (size == 0) size = 64;
  void *p;
#ifdef MADV_HUGEPAGE
  if (size >= TL_HUGE_MIN && huge_pages_wanted()) {
    size = (size + TL_HUGE_PAGE - 1) / TL_HUGE_PAGE * TL_HUGE_PAGE;
    p = aligned_alloc(TL_HUGE_PAGE, size);
    if (p) madvise(p, size, MADV_HUGEPAGE); /* advice only: failure leaves ordinary pages */
  } else
#endif
    p = aligned_alloc(64, size);
  if (!p) return tl_fail(TL_ERR_OUT_OF_MEMORY, "tl_alloc: could not allocate %lld bytes", (long long)bytes);
  memset(p, 0, size);
  *out = p;
  return TL_OK;
}

int tl_free(void *p) {
  free(p);
  return TL_OK;
}

int tl_zero(void *p, int64_t bytes) {
  TL_REQUIRE(bytes >= 0, "tl_zero: negative size %lld", (long long)bytes);
  if (bytes == 0) return TL_OK;
  TL_REQUIRE_PTR(p);
  memset(p, 0, (size_t)bytes);
  return TL_OK;
}

static int host_copy(const char *who, void *dst, const void *src, int64_t bytes) {
  TL_REQUIRE(bytes >= 0, "%s: negative size %lld", who, (long long)bytes);
  if (bytes == 0) return TL_OK;
  TL_REQUIRE(dst != NULL && src != NULL, "%s: NULL pointer", who);
  memmove(dst, src, (size_t)bytes);
  return TL_OK;
}

int tl_upload(void *dst, const void *src, int64_t bytes) { return host_copy("tl_upload", dst, src, bytes); }
int tl_download(void *dst, const void *src, int64_t bytes) { return host_copy("tl_download", dst, src, bytes); }
int tl_copy(void *dst, const void *src, int64_t bytes) { return host_copy("tl_copy", dst, src, bytes); }
int tl_sync(void) { return TL_OK; }
