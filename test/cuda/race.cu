/* Test fixture for the emulator's schedules (test/cuda/race.test.ts; never built for a GPU).
 * Each kernel takes `sync`: 1 puts in the barrier the code needs, 0 leaves it out. Without it the
 * kernels are racy on a GPU, yet give the right answer under the emulator's default (forward)
 * order, because there the writer always happens to run first. TL_EMU_SCHEDULE=reverse, shuffle
 * and ahead must expose them (two_sums: only ahead). */
#include <cuda_runtime.h>

/* out[i] = in[i-1] (0 for thread 0) through shared memory: thread i reads what thread i-1 wrote
 * (read-after-write; needs __syncthreads, also across warps). */
__global__ void neighbour_kernel(float *out, const float *in, int sync) {
  extern __shared__ float s[];
  const int i = threadIdx.x, base = blockIdx.x * blockDim.x;
  s[i] = in[base + i];
  if (sync) __syncthreads();
  out[base + i] = i > 0 ? s[i - 1] : 0.0f;
}

/* The same within each warp: lane l reads lane l-1's value (0 for lane 0). __syncwarp is the
 * barrier: since Volta the lanes of a warp are not in lockstep. Only a schedule that also reorders
 * lanes within a warp exposes this one. */
__global__ void lane_kernel(float *out, const float *in, int sync) {
  extern __shared__ float s[];
  const int i = threadIdx.x, lane = i & 31, base = blockIdx.x * blockDim.x;
  s[i] = in[base + i];
  if (sync) __syncwarp();
  out[base + i] = lane > 0 ? s[i - 1] : 0.0f;
}

/* out[i] = sum over tiles t of in[t][i+1] (0 for the last thread), each tile staged in shared
 * memory: the classic tiled loop. The barrier at the end of an iteration keeps thread i+1 from
 * overwriting its slot with the next tile while thread i still reads the current one
 * (write-after-read). One block. */
__global__ void tiles_kernel(float *out, const float *in, int ntiles, int sync) {
  extern __shared__ float s[];
  const int i = threadIdx.x, n = blockDim.x;
  float acc = 0.0f;
  for (int t = 0; t < ntiles; t++) {
    s[i] = in[(size_t)t * n + i];
    __syncthreads();
    acc += i + 1 < n ? s[i + 1] : 0.0f;
    if (sync) __syncthreads();
  }
  out[i] = acc;
}

/* Across blocks: y[b] = x[b-1] (0 for block 0) where block b-1 writes x[b-1] = in[b-1] in the same
 * launch. Blocks are unordered on a GPU and no barrier orders them: the fix (sync) is a second
 * launch. Thread 0 of each block does the work. */
__global__ void chain_write_kernel(float *x, const float *in) {
  if (threadIdx.x == 0) x[blockIdx.x] = in[blockIdx.x];
}
__global__ void chain_read_kernel(float *y, const float *x) {
  if (threadIdx.x == 0) y[blockIdx.x] = blockIdx.x > 0 ? x[blockIdx.x - 1] : 0.0f;
}
__global__ void chain_kernel(float *x, float *y, const float *in) {
  if (threadIdx.x == 0) {
    x[blockIdx.x] = in[blockIdx.x];
    y[blockIdx.x] = blockIdx.x > 0 ? x[blockIdx.x - 1] : 0.0f;
  }
}

/* Two block sums in a row through the same 32 shared slots, as common.cuh's tl_block_sum does.
 * The __syncthreads before a reduction writes the slots (sync) keeps a fast warp from overwriting
 * the previous reduction's partial sums while a slow warp still reads them (write-after-read).
 * Between that read and that write every warp passes 20 warp barriers (its shuffles), so no
 * round-based order (forward, reverse, shuffle: a warp is never more than one warp barrier ahead
 * of another) exposes a missing one: only "ahead", which runs one warp to its next __syncthreads
 * before the next warp starts. out[2b] = sum of the block's inputs, out[2b+1] = sum of squares. */
__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ float block_sum(float v, float *slots, int sync) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  if (sync) __syncthreads();
  if (lane == 0) slots[warp] = v;
  __syncthreads();
  return warp_sum(lane < nw ? slots[lane] : 0.0f);
}
__global__ void two_sums_kernel(float *out, const float *in, int sync) {
  extern __shared__ float slots[];
  const float x = in[blockIdx.x * blockDim.x + threadIdx.x];
  const float a = block_sum(x, slots, sync);
  const float b = block_sum(x * x, slots, sync);
  if (threadIdx.x == 0) out[2 * blockIdx.x] = a, out[2 * blockIdx.x + 1] = b;
}

/* Records the schedule itself (an emulator-only device: a plain counter is a race on a GPU):
 * order[b][r][i] = when thread i of block b ran its r-th stretch (0: to the __syncwarp, 1: to the
 * __syncthreads, 2: to the end), counting over the whole launch. */
__global__ void order_kernel(int *order, int *counter) {
  const int i = threadIdx.x, n = blockDim.x;
  int *mine = order + (size_t)blockIdx.x * 3 * n;
  mine[i] = (*counter)++;
  __syncwarp();
  mine[n + i] = (*counter)++;
  __syncthreads();
  mine[2 * n + i] = (*counter)++;
}

extern "C" int race_neighbour(float *out, const float *in, int blocks, int threads, int sync) {
  neighbour_kernel<<<blocks, threads, threads * sizeof(float)>>>(out, in, sync);
  return (int)cudaGetLastError();
}
extern "C" int race_lane(float *out, const float *in, int blocks, int threads, int sync) {
  lane_kernel<<<blocks, threads, threads * sizeof(float)>>>(out, in, sync);
  return (int)cudaGetLastError();
}
extern "C" int race_tiles(float *out, const float *in, int ntiles, int threads, int sync) {
  tiles_kernel<<<1, threads, threads * sizeof(float)>>>(out, in, ntiles, sync);
  return (int)cudaGetLastError();
}
extern "C" int race_chain(float *x, float *y, const float *in, int blocks, int sync) {
  if (sync) {
    chain_write_kernel<<<blocks, 32>>>(x, in);
    chain_read_kernel<<<blocks, 32>>>(y, x);
  } else {
    chain_kernel<<<blocks, 32>>>(x, y, in);
  }
  return (int)cudaGetLastError();
}
extern "C" int race_two_sums(float *out, const float *in, int blocks, int threads, int sync) {
  two_sums_kernel<<<blocks, threads, 32 * sizeof(float)>>>(out, in, sync);
  return (int)cudaGetLastError();
}
extern "C" int race_order(int *order, int blocks, int threads) {
  int counter = 0;
  order_kernel<<<blocks, threads>>>(order, &counter);
  return (int)cudaGetLastError();
}
