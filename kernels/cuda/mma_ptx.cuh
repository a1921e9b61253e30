/* Warp-level tensor-core and async-copy primitives written as PTX (sm_80 and newer), for kernels
 * that keep their tiles in registers (attention_fa2.cu). Internal; not part of the ABI.
 *
 * Unlike the WMMA API, mma.sync and ldmatrix have a documented register layout (PTX ISA,
 * "Matrix fragments for mma.m16n8k16"), so a kernel can do row-wise work (softmax) on the
 * accumulators directly and turn them into the next product's operand without shared memory.
 * For lane L, g = L / 4 and t = L % 4; a .b32 register holds two bf16, the lower index in the low
 * half:
 *   A (16 x 16, row-major)  a[0] = A[g][2t..2t+1]    a[1] = A[g+8][2t..2t+1]
 *                           a[2] = A[g][2t+8..2t+9]  a[3] = A[g+8][2t+8..2t+9]
 *   B (16 x 8, "col")       b[0] = B[2t..2t+1][g]    b[1] = B[2t+8..2t+9][g]
 *   C, D (16 x 8, fp32)     c[0], c[1] = C[g][2t], C[g][2t+1];  c[2], c[3] = C[g+8][2t], C[g+8][2t+1]
 * ldmatrix.x4 loads four 8 x 8 bf16 matrices from shared memory: lanes 8i..8i+7 give the 16-byte
 * row addresses of matrix i, and register i of lane L receives matrix i's row L/4, elements
 * 2(L%4) and 2(L%4)+1 (with .trans: column L/4, rows 2(L%4) and 2(L%4)+1).
 *
 * On the CPU emulator (TL_CUDA_EMU) each primitive is a warp-collective emulation of exactly that
 * layout (kernels/cuda/emu/cuda_emu.cpp), and cp.async copies are deferred until the
 * cp.async.wait_group that makes them visible, so a read before the wait sees stale data there as
 * it could on a GPU. */
#ifndef TL_CUDA_MMA_PTX_CUH
#define TL_CUDA_MMA_PTX_CUH

#include <cuda_bf16.h>
#include <stdint.h>

/* d += a b: one m16n8k16 bf16 product with fp32 accumulation. */
__device__ __forceinline__ void tl_mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#ifdef TL_CUDA_EMU
  tl_emu_mma_16816_bf16(d, a, b);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

/* Four 8 x 8 bf16 matrices from shared memory (row = this lane's 16-byte-aligned row address);
 * Trans: the .trans form (each register holds a column pair instead of a row pair). */
template <bool Trans>
__device__ __forceinline__ void tl_ldmatrix_x4_t(uint32_t (&r)[4], const void *row) {
#ifdef TL_CUDA_EMU
  tl_emu_ldmatrix_x4(r, row, Trans ? 1 : 0);
#else
  const unsigned addr = (unsigned)__cvta_generic_to_shared(row);
  if (Trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
#endif
}
__device__ __forceinline__ void tl_ldmatrix_x4(uint32_t (&r)[4], const void *row) { tl_ldmatrix_x4_t<false>(r, row); }
__device__ __forceinline__ void tl_ldmatrix_x4_trans(uint32_t (&r)[4], const void *row) { tl_ldmatrix_x4_t<true>(r, row); }

/* 16 bytes global -> shared without a register round trip; valid == false zero-fills the
 * destination (src is not read then, but must still be a mapped address). */
__device__ __forceinline__ void tl_cp_async16(void *smem, const void *gmem, bool valid) {
#ifdef TL_CUDA_EMU
  tl_emu_cp_async16(smem, gmem, valid ? 16 : 0);
#else
  const unsigned addr = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(addr), "l"(gmem), "r"(valid ? 16 : 0) : "memory");
#endif
}
/* Closes the group of this thread's cp.async calls issued since the last commit. */
__device__ __forceinline__ void tl_cp_async_commit(void) {
#ifdef TL_CUDA_EMU
  tl_emu_cp_async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
/* Waits until at most N of this thread's committed groups are still in flight. Other threads'
 * copies become visible only after a barrier that follows their own wait. */
template <int N> __device__ __forceinline__ void tl_cp_async_wait(void) {
#ifdef TL_CUDA_EMU
  tl_emu_cp_async_wait(N);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

/* Two floats rounded to bf16 and packed as an operand register (lo in the low half). */
__device__ __forceinline__ uint32_t tl_pack_bf16(float lo, float hi) {
  return (uint32_t)__bfloat16_as_ushort(__float2bfloat16(lo)) | ((uint32_t)__bfloat16_as_ushort(__float2bfloat16(hi)) << 16);
}

#endif
