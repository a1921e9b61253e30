/* CUDA emulator: the part of nvcuda::wmma that kernels/cuda uses (16x16x16, bf16 operands, fp32
 * accumulators). A real fragment spreads a tile over the 32 lanes of a warp in an unspecified
 * layout; here every emulated thread holds the WHOLE tile and does the whole product, which is
 * the same result for code that only loads, multiplies, fills and stores fragments (code that
 * indexes fragment elements would be wrong on the GPU anyway, the layout being unspecified).
 * Emulated threads run one after another, so a kernel must separate a store_matrix_sync from any
 * other write to that memory with a barrier, as the GPU also requires. */
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

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the emulator has 16x16x16 fragments only");
  static const int num_elements = 256;
  float x[256]; /* the logical tile, row-major: (rows, cols) of the operand */
};

inline float tl_emu_elem(const float *p, int64_t i) { return p[i]; }
inline float tl_emu_elem(const __nv_bfloat16 *p, int64_t i) { return __uint_as_float(((unsigned)p[i].bits) << 16); }

template <typename Use, typename T, typename Layout, typename P>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout> &f, const P *p, unsigned ldm) {
  const bool col = std::is_same<Layout, col_major>::value;
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) f.x[r * 16 + c] = tl_emu_elem(p, col ? (int64_t)c * ldm + r : (int64_t)r * ldm + c);
}

template <typename Use, typename T, typename Layout>
inline void fill_fragment(fragment<Use, 16, 16, 16, T, Layout> &f, float v) {
  for (int i = 0; i < 256; i++) f.x[i] = v;
}

/* d = a . b + c; fp32 sums of exact bf16 products in k order */
template <typename TA, typename LA, typename TB, typename LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, TA, LA> &a,
                     const fragment<matrix_b, 16, 16, 16, TB, LB> &b, const fragment<accumulator, 16, 16, 16, float> &c) {
  float out[256];
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 16; j++) {
      float s = c.x[i * 16 + j];
      for (int k = 0; k < 16; k++) s += a.x[i * 16 + k] * b.x[k * 16 + j];
      out[i * 16 + j] = s;
    }
  for (int i = 0; i < 256; i++) d.x[i] = out[i];
}

inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ldm, layout_t layout) {
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) p[layout == mem_col_major ? (int64_t)c * ldm + r : (int64_t)r * ldm + c] = f.x[r * 16 + c];
}
} // namespace wmma
} // namespace nvcuda
#endif
