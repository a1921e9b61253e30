/* CUDA emulator: the subset of the WMMA API (nvcuda::wmma) the kernels use, for 16x16x16 tiles
 * with bf16 (or fp32) inputs and fp32 accumulators.
 *
 * A real fragment is spread over the 32 lanes of a warp in a layout the API leaves unspecified;
 * here every lane holds the whole tile and does the whole operation, which gives the same results
 * for any code that, as the API requires, touches fragments only through these calls and
 * element-wise loops. Each call is warp-collective on a GPU ("waits until all warp lanes have
 * arrived"), so here it starts with a warp barrier, and a divergent call is reported as a deadlock.
 * A store writes, like the real one, only the calling lane's share of the tile (element e is lane
 * e % 32's) and is not followed by a barrier: code that reads what other lanes stored without a
 * __syncwarp in between reads stale values whenever those lanes run later (TL_EMU_SCHEDULE,
 * kernels/cuda/emu/README.md). Loads end with a barrier too, so no lane overwrites what another
 * lane still has to load. Products are exact in fp32 and summed in k order; tensor cores may sum
 * in another order, which the tests' bf16 tolerance covers. */
#ifndef TL_CUDA_EMU_MMA_H
#define TL_CUDA_EMU_MMA_H
#include "cuda_bf16.h"
#include "cuda_runtime.h"

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

inline float tl_emu_widen(float x) { return x; }
inline float tl_emu_widen(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename Use, int M, int N, int K> struct tl_emu_dims;
template <int M, int N, int K> struct tl_emu_dims<matrix_a, M, N, K> { static constexpr int rows = M, cols = K; };
template <int M, int N, int K> struct tl_emu_dims<matrix_b, M, N, K> { static constexpr int rows = K, cols = N; };
template <int M, int N, int K> struct tl_emu_dims<accumulator, M, N, K> { static constexpr int rows = M, cols = N; };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static constexpr int rows = tl_emu_dims<Use, M, N, K>::rows, cols = tl_emu_dims<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  T x[rows * cols]; /* row-major, whole tile */
};

template <typename Use, int M, int N, int K, typename T, typename L>
inline void fill_fragment(fragment<Use, M, N, K, T, L> &f, T value) {
  for (int i = 0; i < f.num_elements; i++) f.x[i] = value;
}

/* matrix_a / matrix_b: the layout is part of the fragment's type. */
template <typename Use, int M, int N, int K, typename T, typename L>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L> &f, const T *p, unsigned ldm) {
  __syncwarp();
  using F = fragment<Use, M, N, K, T, L>;
  for (int i = 0; i < F::rows; i++)
    for (int j = 0; j < F::cols; j++)
      f.x[i * F::cols + j] = std::is_same<L, col_major>::value ? p[i + (size_t)j * ldm] : p[(size_t)i * ldm + j];
  __syncwarp();
}

/* accumulator: the layout is an argument. */
template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float, void> &f, const float *p, unsigned ldm, layout_t l) {
  __syncwarp();
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) f.x[i * N + j] = l == mem_col_major ? p[i + (size_t)j * ldm] : p[(size_t)i * ldm + j];
  __syncwarp();
}

template <int M, int N, int K>
inline void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float, void> &f, unsigned ldm, layout_t l) {
  __syncwarp();
  const int lane = tl_emu_current->linear & 31;
  for (int e = lane; e < M * N; e += 32) {
    const int i = e / N, j = e % N;
    (l == mem_col_major ? p[i + (size_t)j * ldm] : p[(size_t)i * ldm + j]) = f.x[e];
  }
}

template <int M, int N, int K, typename T, typename LA, typename LB>
inline void mma_sync(fragment<accumulator, M, N, K, float, void> &d, const fragment<matrix_a, M, N, K, T, LA> &a,
                     const fragment<matrix_b, M, N, K, T, LB> &b, const fragment<accumulator, M, N, K, float, void> &c) {
  __syncwarp();
  float r[M * N];
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      float s = c.x[i * N + j];
      for (int kk = 0; kk < K; kk++) s += tl_emu_widen(a.x[i * K + kk]) * tl_emu_widen(b.x[kk * N + j]);
      r[i * N + j] = s;
    }
  for (int i = 0; i < M * N; i++) d.x[i] = r[i];
  __syncwarp();
}
}  // namespace wmma
}  // namespace nvcuda
#endif
