/* Internal helpers shared by the CPU kernels; not part of the ABI. */
#ifndef TL_CPU_COMMON_H
#define TL_CPU_COMMON_H

#include "../include/tinyllama.h"
#include <stdarg.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* Records a formatted detail message for tl_last_error() and returns `code`. */
int tl_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define TL_REQUIRE(cond, ...)                                                  \
  do {                                                                         \
    if (!(cond)) return tl_fail(TL_ERR_INVALID_ARGUMENT, __VA_ARGS__);         \
  } while (0)

#define TL_REQUIRE_PTR(p)                                                      \
  TL_REQUIRE((p) != NULL, "%s: pointer '%s' is NULL", __func__, #p)

#define TL_REQUIRE_POS(x)                                                      \
  TL_REQUIRE((x) > 0, "%s: '%s' must be positive, got %lld", __func__, #x, (long long)(x))

#endif
