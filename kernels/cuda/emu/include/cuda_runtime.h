/* CUDA emulator (tests only): just enough of the CUDA runtime and device language for
 * kernels/cuda/*.cu to compile with g++ and run on the CPU, one block at a time, with every CUDA
 * thread a cooperatively scheduled context (ucontext). __syncthreads and warp shuffles are real
 * barriers: a barrier that not every thread of its block / warp reaches is reported as an error
 * instead of hanging, which catches divergent-barrier bugs a GPU would only show as hangs or
 * garbage. Device memory is host memory. See kernels/cuda/emu/README.md. */
#ifndef TL_CUDA_EMU_RUNTIME_H
#define TL_CUDA_EMU_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <functional>
#include <type_traits>
#include <utility>

#include "library_types.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __CUDACC_VER_MAJOR__ 0
#define __CUDACC_VER_MINOR__ 0

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

typedef enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorMisalignedAddress = 716,
  cudaErrorLaunchFailure = 719,
} cudaError_t;
typedef enum { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 } cudaMemcpyKind;
typedef enum { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 } cudaFuncAttribute;
typedef enum { cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 } cudaDeviceAttr;
typedef struct CUstream_st *cudaStream_t;
struct cudaDeviceProp {
  char name[256];
  int major, minor, multiProcessorCount;
  size_t totalGlobalMem;
};

/* ---- the scheduler (cuda_emu.cpp) ---- */
struct tl_emu_thread {
  dim3 tid;
  int linear;
};
extern tl_emu_thread *tl_emu_current;
extern dim3 tl_emu_block_idx, tl_emu_block_dim, tl_emu_grid_dim;
#define threadIdx (tl_emu_current->tid)
#define blockIdx (tl_emu_block_idx)
#define blockDim (tl_emu_block_dim)
#define gridDim (tl_emu_grid_dim)

void *tl_emu_dyn_smem(void);
void __syncthreads(void);
/* Warp exchange: every lane of the warp publishes v, then reads lane src's value. */
float tl_emu_shfl(float v, int src_lane, int xor_mask);
cudaError_t tl_emu_run(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body);
extern cudaError_t tl_emu_error;

struct tl_emu_cfg_t {
  dim3 grid, block;
  size_t smem;
};
inline tl_emu_cfg_t tl_emu_cfg(dim3 g, dim3 b, size_t s = 0) { return {g, b, s}; }

template <typename... P, typename... A>
inline void tl_emu_launch(tl_emu_cfg_t c, void (*kernel)(P...), A &&...args) {
  std::function<void()> body = [&]() { kernel(args...); };
  cudaError_t e = tl_emu_run(c.grid, c.block, c.smem, body);
  if (e != cudaSuccess && tl_emu_error == cudaSuccess) tl_emu_error = e;
}

/* ---- device functions ---- */
/* A warp barrier (the warp's lanes all arrive or the launch reports a deadlock). */
void tl_emu_syncwarp(void);
inline void __syncwarp(unsigned = 0xffffffffu) { tl_emu_syncwarp(); }
inline float __expf(float x) { return expf(x); }
inline float __shfl_sync(unsigned, float v, int src) { return tl_emu_shfl(v, src, -1); }
inline float __shfl_xor_sync(unsigned, float v, int mask) { return tl_emu_shfl(v, -1, mask); }
/* Warp-collective PTX instructions, emulated with their documented register layouts
 * (kernels/cuda/mma_ptx.cuh says which): d += a b for mma.sync m16n8k16 bf16 -> fp32; ldmatrix
 * .x4 (trans = .trans) from a 16-byte-aligned shared-memory row; cp.async of 16 (or, zero-filling,
 * 0) bytes, deferred until the wait_group that covers its group. A misuse a GPU would fault on
 * (unaligned or non-shared ldmatrix / cp.async addresses) stops the launch with an error. */
void tl_emu_mma_16816_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);
void tl_emu_ldmatrix_x4(uint32_t (&r)[4], const void *row, int trans);
void tl_emu_cp_async16(void *smem, const void *gmem, int src_bytes);
void tl_emu_cp_async_commit(void);
void tl_emu_cp_async_wait(int n);
inline int atomicExch(int *p, int v) {
  int old = *p;
  *p = v;
  return old;
}
inline int min(int a, int b) { return a < b ? a : b; }
inline float __uint_as_float(unsigned u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* ---- runtime API ---- */
cudaError_t cudaMalloc(void **p, size_t n);
template <typename T> inline cudaError_t cudaMalloc(T **p, size_t n) { return cudaMalloc((void **)p, n); }
cudaError_t cudaFree(void *p);
cudaError_t cudaMemset(void *p, int v, size_t n);
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind k);
cudaError_t cudaGetLastError(void);
cudaError_t cudaDeviceSynchronize(void);
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaRuntimeGetVersion(int *v);
cudaError_t cudaDriverGetVersion(int *v);
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d);
template <typename K> inline cudaError_t cudaFuncSetAttribute(K, cudaFuncAttribute, int) { return cudaSuccess; }

#endif
