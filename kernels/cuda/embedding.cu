/* Token embedding: out[n] = wte[tokens[n]]; backward scatters dout rows into dwte.
 * Token ids are validated on the device first (a flag, read back synchronously), so a bad id is
 * TL_ERR_OUT_OF_RANGE and no kernel ever indexes outside wte. The backward is deterministic
 * without atomics: thread (c, p) owns column c of every vocabulary row v with v % P == p and
 * walks the tokens in order, so each dwte element is summed by one thread in token order — the
 * same order as the CPU loop. */
#include "common.cuh"

#define PARTS 64 /* vocabulary partitions in the backward */

__global__ void check_tokens_kernel(int *flag, const int32_t *tokens, int N, int V) {
  for (int n = blockIdx.x * blockDim.x + threadIdx.x; n < N; n += gridDim.x * blockDim.x) {
    const int32_t t = tokens[n];
    if (t < 0 || t >= V) atomicExch(flag, 1); /* a flag, not a reduction: any writer is fine */
  }
}

__global__ void embedding_forward_kernel(float *out, const int32_t *tokens, const float *wte, int C, int64_t total) {
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total; idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = idx / C;
    const int c = (int)(idx % C);
    out[idx] = wte[(int64_t)tokens[n] * C + c];
  }
}

/* grid (ceil(C/128), PARTS), block 128. */
__global__ void embedding_backward_kernel(float *dwte, const float *dout, const int32_t *tokens, int N, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  const int p = blockIdx.y;
  if (c >= C) return;
  for (int n = 0; n < N; n++) {
    const int32_t v = tokens[n];
    if (v % PARTS == p) dwte[(int64_t)v * C + c] += dout[(int64_t)n * C + c];
  }
}

static int check_tokens(const char *who, const int32_t *tokens, int N, int V) {
  int *flag = NULL, bad = 0;
  TL_TRY(tl_cuda_flag_reset(&flag));
  check_tokens_kernel<<<tl_grid_for(N, 256), 256>>>(flag, tokens, N, V);
  TL_LAUNCHED("check_tokens_kernel");
  TL_TRY(tl_cuda_flag_read(&bad));
  if (bad) return tl_fail(TL_ERR_OUT_OF_RANGE, "%s: a token id is outside [0, %d)", who, V);
  return TL_OK;
}

extern "C" int tl_embedding_forward(float *out, const int32_t *tokens, const float *wte, int N, int C, int V) {
  TL_REQUIRE(out && tokens && wte, "tl_embedding_forward: NULL pointer");
  TL_REQUIRE(N > 0 && C > 0 && V > 0, "tl_embedding_forward: sizes must be positive (N=%d C=%d V=%d)", N, C, V);
  TL_TRY(check_tokens("tl_embedding_forward", tokens, N, V));
  const int64_t total = (int64_t)N * C;
  embedding_forward_kernel<<<tl_grid_for(total, 256), 256>>>(out, tokens, wte, C, total);
  TL_LAUNCHED("embedding_forward_kernel");
  return TL_OK;
}

extern "C" int tl_embedding_backward(float *dwte, const float *dout, const int32_t *tokens, int N, int C, int V) {
  TL_REQUIRE(dwte && dout && tokens, "tl_embedding_backward: NULL pointer");
  TL_REQUIRE(N > 0 && C > 0 && V > 0, "tl_embedding_backward: sizes must be positive (N=%d C=%d V=%d)", N, C, V);
  TL_TRY(check_tokens("tl_embedding_backward", tokens, N, V));
  embedding_backward_kernel<<<dim3((C + 127) / 128, PARTS), 128>>>(dwte, dout, tokens, N, C);
  TL_LAUNCHED("embedding_backward_kernel");
  return TL_OK;
}
