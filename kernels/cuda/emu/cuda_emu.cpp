/* CUDA emulator runtime: runs each kernel launch on the CPU, block after block; the threads of a
 * block are ucontext coroutines switched at __syncthreads and warp shuffles (real barriers).
 * A barrier that cannot complete (some threads exited or took another path) stops the launch
 * with an error naming the barrier kind, instead of hanging. Allocations are filled with 0xFF
 * bytes (NaN as floats), so reading memory no kernel or upload wrote shows up in the results. */
#include "include/cuda_runtime.h"

#include <stdio.h>
#include <ucontext.h>
#include <vector>

tl_emu_thread *tl_emu_current;
dim3 tl_emu_block_idx, tl_emu_block_dim, tl_emu_grid_dim;
cudaError_t tl_emu_error = cudaSuccess;

/* Context switch. On x86-64 a minimal switch (callee-saved registers + stack pointer, no signal
 * mask syscall) makes the emulator ~10x faster than swapcontext; elsewhere ucontext is used. */
#if defined(__x86_64__)
extern "C" void tl_emu_switch(void **save_sp, void *load_sp);
asm(R"(
  .text
  .globl tl_emu_switch
  .hidden tl_emu_switch
  .type tl_emu_switch,@function
tl_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size tl_emu_switch, .-tl_emu_switch
)");
#define TL_EMU_FAST_SWITCH 1
#endif

void tl_emu_reset_async(int thread, int nthreads);

namespace {
enum State { RUNNABLE, AT_BLOCK, AT_WARP, DONE };
struct Ctx {
#ifdef TL_EMU_FAST_SWITCH
  void *sp;
#else
  ucontext_t uc;
#endif
  State state;
  tl_emu_thread t;
};
const size_t STACK = 64 * 1024;
#ifdef TL_EMU_FAST_SWITCH
void *sched_sp;
#else
ucontext_t sched;
#endif
std::vector<Ctx> ctxs;
std::vector<char> stacks;
std::vector<unsigned char> dyn;
std::vector<int> warp_arrived;
std::vector<float> slots;
const std::function<void()> *body;
int nthreads, block_arrived, cur;

#ifdef TL_EMU_FAST_SWITCH
void yield() { tl_emu_switch(&ctxs[cur].sp, sched_sp); }
void resume(int i) { tl_emu_switch(&sched_sp, ctxs[i].sp); }
#else
void yield() { swapcontext(&ctxs[cur].uc, &sched); }
void resume(int i) { swapcontext(&sched, &ctxs[i].uc); }
#endif

void trampoline() {
  (*body)();
  ctxs[cur].state = DONE;
  yield(); /* never resumed */
  abort();
}

void start(int i, char *stack) {
#ifdef TL_EMU_FAST_SWITCH
  /* A frame tl_emu_switch can "return" into: 6 saved registers, then trampoline as the return
   * address, then a dummy slot so trampoline starts with the ABI's rsp % 16 == 8. */
  uintptr_t top = ((uintptr_t)(stack + STACK)) & ~(uintptr_t)15;
  void **sp = (void **)(top - 64);
  for (int r = 0; r < 6; r++) sp[r] = 0;
  sp[6] = (void *)&trampoline;
  sp[7] = 0;
  ctxs[i].sp = sp;
#else
  Ctx &c = ctxs[i];
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = STACK;
  c.uc.uc_link = &sched;
  makecontext(&c.uc, trampoline, 0);
#endif
}

void warp_barrier() {
  const int w = ctxs[cur].t.linear / 32;
  ctxs[cur].state = AT_WARP;
  if (++warp_arrived[w] == 32) {
    warp_arrived[w] = 0;
    for (int i = w * 32; i < w * 32 + 32; i++) ctxs[i].state = RUNNABLE;
  }
  yield();
}
}  // namespace

void __syncthreads(void) {
  ctxs[cur].state = AT_BLOCK;
  if (++block_arrived == nthreads) {
    block_arrived = 0;
    for (int i = 0; i < nthreads; i++) ctxs[i].state = RUNNABLE;
  }
  yield();
}

float tl_emu_shfl(float v, int src_lane, int xor_mask) {
  const int me = ctxs[cur].t.linear, lane = me % 32, base = me - lane;
  slots[me] = v;
  warp_barrier();
  const int from = src_lane >= 0 ? (src_lane & 31) : (lane ^ xor_mask);
  const float r = slots[base + from];
  warp_barrier(); /* nobody overwrites a slot before every lane has read */
  return r;
}

void tl_emu_syncwarp(void) { warp_barrier(); }

/* ---- warp-collective PTX instructions (mma.sync, ldmatrix) and cp.async ---- */
namespace {
/* What each lane hands to a warp-collective instruction. */
struct LaneIn {
  uint32_t a[4], b[2];
  float c[4];
  const void *p;
};
std::vector<LaneIn> lane_in;
struct PendingCopy {
  void *dst;
  const void *src;
  int bytes, group;
};
std::vector<std::vector<PendingCopy>> cp_pending; /* per thread of the block */
std::vector<int> cp_group;                        /* per thread: the id of its open (uncommitted) group */

LaneIn &my_slot(void) {
  if (lane_in.size() < (size_t)nthreads) lane_in.resize(nthreads); /* before any lane of this launch has written */
  return lane_in[ctxs[cur].t.linear];
}
float bf16_at(uint32_t reg, int hi) {
  const uint32_t u = (hi ? reg >> 16 : reg & 0xffffu) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
void fault(cudaError_t e, const char *what, const void *p) {
  fprintf(stderr, "cuda-emu: %s: address %p in block (%u,%u,%u) thread %d\n", what, p, tl_emu_block_idx.x,
          tl_emu_block_idx.y, tl_emu_block_idx.z, ctxs[cur].t.linear);
  if (tl_emu_error == cudaSuccess) tl_emu_error = e;
}
}  // namespace

void tl_emu_reset_async(int thread, int n) {
  if (cp_pending.size() < (size_t)n) cp_pending.resize(n), cp_group.resize(n);
  cp_pending[thread].clear();
  cp_group[thread] = 0;
}

void tl_emu_mma_16816_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  LaneIn &in = my_slot();
  memcpy(in.a, a, sizeof in.a);
  memcpy(in.b, b, sizeof in.b);
  memcpy(in.c, d, sizeof in.c);
  warp_barrier();
  const int me = ctxs[cur].t.linear, lane = me & 31, base = me - lane, g = lane >> 2, t = lane & 3;
  float out[4];
  for (int e = 0; e < 4; e++) {
    const int row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
    float acc = lane_in[me].c[e];
    for (int k = 0; k < 16; k++) {
      /* A[row][k] lives in lane (row % 8, (k % 8) / 2), register (row >= 8) + 2 (k >= 8), half k % 2 */
      const float av = bf16_at(lane_in[base + (row & 7) * 4 + ((k & 7) >> 1)].a[(row >> 3) + 2 * (k >> 3)], k & 1);
      /* B[k][col] lives in lane (col, (k % 8) / 2), register k >= 8, half k % 2 */
      const float bv = bf16_at(lane_in[base + col * 4 + ((k & 7) >> 1)].b[k >> 3], k & 1);
      acc += av * bv;
    }
    out[e] = acc;
  }
  warp_barrier(); /* nobody overwrites a slot before every lane has read */
  memcpy(d, out, sizeof out);
}

void tl_emu_ldmatrix_x4(uint32_t (&r)[4], const void *row, int trans) {
  if ((uintptr_t)row & 15) fault(cudaErrorMisalignedAddress, "ldmatrix row address not 16-byte aligned", row);
  my_slot().p = row;
  warp_barrier();
  const int me = ctxs[cur].t.linear, lane = me & 31, base = me - lane;
  uint32_t out[4] = {0, 0, 0, 0};
  if (tl_emu_error == cudaSuccess)
    for (int i = 0; i < 4; i++) {
      uint16_t lo, hi;
      if (!trans) { /* row lane/4, elements 2(lane%4), 2(lane%4)+1 */
        const uint16_t *src = (const uint16_t *)lane_in[base + 8 * i + (lane >> 2)].p;
        lo = src[2 * (lane & 3)];
        hi = src[2 * (lane & 3) + 1];
      } else { /* column lane/4 of rows 2(lane%4), 2(lane%4)+1 */
        lo = ((const uint16_t *)lane_in[base + 8 * i + 2 * (lane & 3)].p)[lane >> 2];
        hi = ((const uint16_t *)lane_in[base + 8 * i + 2 * (lane & 3) + 1].p)[lane >> 2];
      }
      out[i] = (uint32_t)lo | ((uint32_t)hi << 16);
    }
  warp_barrier();
  memcpy(r, out, sizeof out);
}

void tl_emu_cp_async16(void *smem, const void *gmem, int src_bytes) {
  if (((uintptr_t)smem & 15) || (src_bytes && ((uintptr_t)gmem & 15))) {
    fault(cudaErrorMisalignedAddress, "cp.async address not 16-byte aligned", ((uintptr_t)smem & 15) ? smem : gmem);
    return;
  }
  const int me = ctxs[cur].t.linear;
  cp_pending[me].push_back({smem, gmem, src_bytes, cp_group[me]});
}

void tl_emu_cp_async_commit(void) { cp_group[ctxs[cur].t.linear]++; }

void tl_emu_cp_async_wait(int n) {
  const int me = ctxs[cur].t.linear;
  std::vector<PendingCopy> &q = cp_pending[me], keep;
  for (const PendingCopy &c : q) {
    if (c.group < cp_group[me] - n) {
      memcpy(c.dst, c.src, c.bytes); /* src_bytes < 16: the rest is zero-filled, as cp.async does */
      memset((char *)c.dst + c.bytes, 0, 16 - c.bytes);
    } else keep.push_back(c);
  }
  q.swap(keep);
}

void *tl_emu_dyn_smem(void) { return dyn.data(); }

cudaError_t tl_emu_run(dim3 grid, dim3 block, size_t smem, const std::function<void()> &b) {
  nthreads = (int)(block.x * block.y * block.z);
  if (nthreads <= 0 || nthreads > 1024 || nthreads % 32 != 0 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
      grid.y > 65535 || grid.z > 65535) {
    fprintf(stderr, "cuda-emu: bad launch configuration grid (%u,%u,%u) block (%u,%u,%u)\n", grid.x, grid.y, grid.z,
            block.x, block.y, block.z);
    return cudaErrorInvalidValue;
  }
  body = &b;
  ctxs.resize(nthreads);
  if (stacks.size() < (size_t)nthreads * STACK) stacks.resize((size_t)nthreads * STACK);
  warp_arrived.assign(nthreads / 32, 0);
  slots.assign(nthreads, 0.0f);
  tl_emu_grid_dim = grid;
  tl_emu_block_dim = block;
  for (unsigned bz = 0; bz < grid.z; bz++)
    for (unsigned by = 0; by < grid.y; by++)
      for (unsigned bx = 0; bx < grid.x; bx++) {
        tl_emu_block_idx = dim3(bx, by, bz);
        dyn.assign(smem, 0xff);
        block_arrived = 0;
        for (int i = 0; i < nthreads; i++) {
          Ctx &c = ctxs[i];
          c.state = RUNNABLE;
          c.t.linear = i;
          c.t.tid = dim3(i % block.x, (i / block.x) % block.y, i / (block.x * block.y));
          tl_emu_reset_async(i, nthreads); /* copies a thread of the previous block left pending die with it */
          start(i, stacks.data() + (size_t)i * STACK);
        }
        for (;;) {
          bool ran = false, all_done = true;
          for (int i = 0; i < nthreads; i++) {
            if (ctxs[i].state != RUNNABLE) {
              if (ctxs[i].state != DONE) all_done = false;
              continue;
            }
            cur = i;
            tl_emu_current = &ctxs[i].t;
            ran = true;
            resume(i);
            if (ctxs[i].state != DONE) all_done = false;
          }
          if (all_done) break;
          if (!ran) {
            int at_block = 0, at_warp = 0, done = 0;
            for (int i = 0; i < nthreads; i++) {
              at_block += ctxs[i].state == AT_BLOCK;
              at_warp += ctxs[i].state == AT_WARP;
              done += ctxs[i].state == DONE;
            }
            fprintf(stderr,
                    "cuda-emu: deadlock in block (%u,%u,%u): %d threads at __syncthreads, %d at a warp shuffle, %d exited "
                    "(a barrier not reached by every thread)\n",
                    bx, by, bz, at_block, at_warp, done);
            return cudaErrorLaunchFailure;
          }
        }
      }
  return cudaSuccess;
}

/* ---- runtime API on host memory ---- */
cudaError_t cudaMalloc(void **p, size_t n) {
  void *q = aligned_alloc(256, (n + 255) / 256 * 256);
  if (!q) return cudaErrorMemoryAllocation;
  memset(q, 0xff, n);
  *p = q;
  return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
  free(p);
  return cudaSuccess;
}
cudaError_t cudaMemset(void *p, int v, size_t n) {
  memset(p, v, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind) {
  memmove(d, s, n);
  return cudaSuccess;
}
cudaError_t cudaGetLastError(void) { return tl_emu_error; }
cudaError_t cudaDeviceSynchronize(void) { return tl_emu_error; }
const char *cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument (emulator: bad launch configuration)";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorLaunchFailure: return "unspecified launch failure (emulator: barrier deadlock, see stderr)";
    default: return "unknown error";
  }
}
const char *cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    default: return "cudaErrorUnknown";
  }
}
cudaError_t cudaGetDevice(int *d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
  memset(p, 0, sizeof *p);
  strcpy(p->name, "cuda-emu (CPU emulator)");
  p->major = 9;
  p->multiProcessorCount = 1;
  p->totalGlobalMem = (size_t)1 << 30;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int *v) {
  *v = 0;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int *v) {
  *v = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr, int) {
  *v = 227 * 1024; /* H100/H200 opt-in shared memory per block */
  return cudaSuccess;
}
