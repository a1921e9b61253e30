/* Softmax cross-entropy fused with its backward, one block per row:
 *   pass 1 max, pass 2 sum of exp, pass 3 dlogits = (softmax - onehot) * grad_scale.
 * In pass 3 each thread reads logits[i] and then writes dlogits[i] at the same index, after
 * both reductions are complete, so dlogits may alias logits (the LM head's buffer is reused).
 * A target outside [0,V) that is not ignore_index raises a device flag -> TL_ERR_OUT_OF_RANGE;
 * its row is left untouched. */
#include "common.cuh"

static const int THREADS = 256;

__global__ void crossentropy_kernel(float *losses, float *dlogits, const float *logits, const int32_t *targets, int V,
                                    int ignore_index, float grad_scale, int *flag) {
  __shared__ float red[32];
  const int64_t n = blockIdx.x;
  const int32_t target = targets[n];
  float *drow = dlogits ? dlogits + n * V : NULL;
  if (target == ignore_index) {
    if (threadIdx.x == 0) losses[n] = 0.0f;
    if (drow)
      for (int i = threadIdx.x; i < V; i += blockDim.x) drow[i] = 0.0f;
    return;
  }
  if (target < 0 || target >= V) {
    if (threadIdx.x == 0) atomicExch(flag, 1);
    return;
  }
  const float *row = logits + n * V;
  float mx = -INFINITY;
  for (int i = threadIdx.x; i < V; i += blockDim.x) mx = fmaxf(mx, row[i]);
  mx = tl_block_max(mx, red);
  float sum = 0.0f;
  for (int i = threadIdx.x; i < V; i += blockDim.x) sum += expf(row[i] - mx);
  sum = tl_block_sum(sum, red);
  const float xt = row[target]; /* read before pass 3 may overwrite it in place */
  __syncthreads();
  if (threadIdx.x == 0) losses[n] = logf(sum) + mx - xt;
  if (drow) {
    const float inv = 1.0f / sum;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      const float p = expf(row[i] - mx) * inv;
      drow[i] = (p - (i == target ? 1.0f : 0.0f)) * grad_scale;
    }
  }
}

extern "C" int tl_crossentropy_forward_backward(float *losses, float *dlogits, const float *logits,
                                                const int32_t *targets, int N, int V, int ignore_index,
                                                float grad_scale) {
  TL_REQUIRE(losses && logits && targets, "tl_crossentropy_forward_backward: NULL pointer");
  TL_REQUIRE(N > 0 && V > 0, "tl_crossentropy_forward_backward: sizes must be positive (N=%d V=%d)", N, V);
  int *flag = NULL, bad = 0;
  TL_TRY(tl_cuda_flag_reset(&flag));
  crossentropy_kernel<<<N, THREADS>>>(losses, dlogits, logits, targets, V, ignore_index, grad_scale, flag);
  TL_LAUNCHED("crossentropy_kernel");
  TL_TRY(tl_cuda_flag_read(&bad));
  if (bad)
    return tl_fail(TL_ERR_OUT_OF_RANGE, "tl_crossentropy_forward_backward: a target is outside [0, %d) and is not "
                                        "ignore_index (%d)", V, ignore_index);
  return TL_OK;
}
