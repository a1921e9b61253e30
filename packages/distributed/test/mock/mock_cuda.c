/*
 * A stand-in libcuda.so.1 for testing nccl_shim.c on machines without a GPU: "device memory" is
 * host memory, copies are memcpy, the stream is always idle (or never finishes, MOCK_CUDA_HANG=1,
 * to exercise the collective timeout). Only the driver functions the shim resolves exist.
 */
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

CUresult cuInit(unsigned flags) { (void)flags; return 0; }
CUresult cuDeviceGetCount(int *n) { *n = 2; return 0; }
CUresult cuDeviceGet(int *dev, int ordinal) { *dev = ordinal; return ordinal < 2 ? 0 : 101; /* CUDA_ERROR_INVALID_DEVICE */ }
CUresult cuDevicePrimaryCtxRetain(void **ctx, int dev) { *ctx = (void *)(long)(dev + 1); return 0; }
CUresult cuCtxSetCurrent(void *ctx) { (void)ctx; return 0; }
CUresult cuStreamQuery(void *stream) { (void)stream; return getenv("MOCK_CUDA_HANG") ? 600 : 0; }
CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t bytes) { *p = (CUdeviceptr)malloc(bytes); return *p ? 0 : 2; }
CUresult cuMemFree_v2(CUdeviceptr p) { free((void *)p); return 0; }
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) { memcpy((void *)dst, src, n); return 0; }
CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n) { memcpy(dst, (const void *)src, n); return 0; }
CUresult cuGetErrorString(CUresult r, const char **s) { *s = r == 600 ? "CUDA_ERROR_NOT_READY" : "mock CUDA error"; return 0; }
