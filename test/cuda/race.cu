/* Test fixture for the emulator's schedules (test/cuda/race.test.ts; never built for a GPU).
 * Each kernel takes `sync`: 1 puts in the barrier the code needs, 0 leaves it out. Without it the
 * kernels are racy on a GPU, yet give the right answer under the emulator's default (forward)
 * order, because there the writer always happens to run first. TL_EMU_SCHEDULE=reverse / shuffle
 * must expose every one of them. */
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

/* Records the schedule itself (an emulator-only device: a plain counter is a race on a GPU):
 * order[b][0][i] = when thread i of block b ran before the barrier, order[b][1][i] after it
 * (counting over the whole launch). */
__global__ void order_kernel(int *order, int *counter) {
  const int i = threadIdx.x, n = blockDim.x;
  int *mine = order + (size_t)blockIdx.x * 2 * n;
  mine[i] = (*counter)++;
  __syncthreads();
  mine[n + i] = (*counter)++;
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
extern "C" int race_order(int *order, int blocks, int threads) {
  int counter = 0;
  order_kernel<<<blocks, threads>>>(order, &counter);
  return (int)cudaGetLastError();
}
