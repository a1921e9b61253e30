/* CUDA emulator runtime: runs each kernel launch on the CPU, block after block; the threads of a
 * block are ucontext coroutines switched at __syncthreads and warp shuffles (real barriers).
 * A barrier that cannot complete (some threads exited or took another path) stops the launch
 * with an error naming the barrier kind, instead of hanging. Allocations are filled with 0xFF
 * bytes (NaN as floats), so reading memory no kernel or upload wrote shows up in the results.
 * TL_EMU_SCHEDULE picks the order threads and blocks run in (forward, reverse, shuffle[:seed],
 * ahead[:seed]), so a missing barrier that the default order hides shows up under another (README). */
#include "include/cuda_runtime.h"

#include <stdio.h>
#include <numeric>
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
static bool tl_emu_copy_lands_now(void); /* the schedule's choice for one cp.async (below) */

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
unsigned block_epoch; /* completed __syncthreads of the current block (the "ahead" schedule's epochs) */

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
    block_epoch++;
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
  /* Each lane reads its own row when it arrives (the hardware gives no ordering with other lanes'
   * plain stores that a __syncwarp did not): a missing barrier before ldmatrix reads stale data under
   * the perturbed schedules. The 16 bytes travel in the lane's slot. */
  LaneIn &in = my_slot();
  if (tl_emu_error == cudaSuccess) memcpy(in.a, row, 16);
  warp_barrier();
  const int me = ctxs[cur].t.linear, lane = me & 31, base = me - lane;
  uint32_t out[4] = {0, 0, 0, 0};
  if (tl_emu_error == cudaSuccess)
    for (int i = 0; i < 4; i++) {
      uint16_t lo, hi;
      if (!trans) { /* row lane/4, elements 2(lane%4), 2(lane%4)+1 */
        const uint16_t *src = (const uint16_t *)lane_in[base + 8 * i + (lane >> 2)].a;
        lo = src[2 * (lane & 3)];
        hi = src[2 * (lane & 3) + 1];
      } else { /* column lane/4 of rows 2(lane%4), 2(lane%4)+1 */
        lo = ((const uint16_t *)lane_in[base + 8 * i + 2 * (lane & 3)].a)[lane >> 2];
        hi = ((const uint16_t *)lane_in[base + 8 * i + 2 * (lane & 3) + 1].a)[lane >> 2];
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
  if (tl_emu_copy_lands_now()) { /* a GPU may complete it any time before the wait */
    if (src_bytes) memcpy(smem, gmem, 16);
    else memset(smem, 0, 16);
    return;
  }
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

/* ---- schedule perturbation (TL_EMU_SCHEDULE; kernels/cuda/emu/README.md) ----
 * forward: blocks in grid order, threads 0..n-1 in every round (the default, as fast as before).
 * reverse: blocks last to first, threads n-1..0 (lanes within each warp reversed too).
 * shuffle[:seed]: blocks in a random order, and a fresh random thread order for every round.
 * ahead[:seed]: blocks in a random order; between two __syncthreads, one warp (in a random order)
 * runs all the way to the next __syncthreads, through any number of warp barriers (shuffles,
 * __syncwarp, WMMA), before the next warp starts; lanes in a random order within each warp.
 * A round visits every runnable thread once, so under forward / reverse / shuffle no warp gets
 * more than one warp barrier ahead of another; ahead lets it get arbitrarily far.
 * Random orders are seeded per block, so a launch's schedule does not depend on earlier launches.
 * Read from the environment at the first launch; tl_emu_set_schedule changes it later. */
namespace {
enum Order { FORWARD, REVERSE, SHUFFLE, AHEAD };
Order order = FORWARD;
uint64_t order_seed = 1;
bool order_read = false, order_bad = false;
std::vector<int> perm;         /* threads in the order one round visits them */
std::vector<int> wpos;         /* ahead: where each warp's lanes start in perm */
std::vector<int> worder;       /* ahead: warps in priority order */
std::vector<uint32_t> bperm;   /* block linear indices in the order they run (shuffle, ahead) */
uint64_t rng_state;

uint64_t splitmix64(uint64_t &s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
/* uniform in [0, n) (the modulo bias is irrelevant here) */
uint32_t rand_below(uint64_t n) { return (uint32_t)(splitmix64(rng_state) % n); }

/* "forward" | "reverse" | "shuffle[:<seed>]" | "ahead[:<seed>]" (empty = forward); false if malformed. */
bool parse_order(const char *s, Order *o, uint64_t *seed) {
  if (!s || !*s || !strcmp(s, "forward")) return *o = FORWARD, true;
  if (!strcmp(s, "reverse")) return *o = REVERSE, true;
  size_t n;
  if (!strncmp(s, "shuffle", n = 7)) *o = SHUFFLE;
  else if (!strncmp(s, "ahead", n = 5)) *o = AHEAD;
  else return false;
  *seed = 1;
  if (!s[n]) return true;
  if (s[n] != ':' || !s[n + 1]) return false;
  char *end;
  *seed = strtoull(s + n + 1, &end, 10);
  return *end == 0;
}

/* Block order: shuffle and ahead store a random permutation, or for huge grids use a random affine one
 * (k -> (a k + c) mod n with gcd(a, n) = 1). */
uint64_t amul = 1, aadd = 0;
const uint64_t MAX_BPERM = 1u << 20;
void plan_blocks(uint64_t n) {
  if (order != SHUFFLE && order != AHEAD) return;
  rng_state = order_seed ^ (0x5851f42d4c957f2dull * n);
  if (n <= MAX_BPERM) {
    bperm.resize(n);
    for (uint64_t i = 0; i < n; i++) bperm[i] = (uint32_t)i;
    for (uint64_t i = n - 1; i > 0; i--) std::swap(bperm[i], bperm[rand_below(i + 1)]);
  } else {
    do amul = 1 + splitmix64(rng_state) % (n - 1);
    while (std::gcd(amul, n) != 1);
    aadd = splitmix64(rng_state) % n;
  }
}
/* Linear index of the k-th block to run. */
uint64_t block_at(uint64_t k, uint64_t n) {
  if (order == FORWARD) return k;
  if (order == REVERSE) return n - 1 - k;
  if (n <= MAX_BPERM) return bperm[k];
  return (uint64_t)(((unsigned __int128)amul * k + aadd) % n);
}
/* Thread orders within a block depend only on the seed and the block, not on earlier launches. */
void seed_block(uint64_t lin) {
  if (order != SHUFFLE && order != AHEAD) return;
  rng_state = order_seed * 0x9e3779b97f4a7c15ull + lin;
  splitmix64(rng_state);
}

void shuffle_range(int *p, int n) {
  for (int i = n - 1; i > 0; i--) std::swap(p[i], p[rand_below((uint64_t)i + 1)]);
}

/* Thread visiting order for the next round. */
void next_round_order() {
  if (order == SHUFFLE) shuffle_range(perm.data(), nthreads);
  if (order != AHEAD) return; /* forward / reverse: fixed at launch */
  /* warps in a random priority order, each warp's lanes together (and shuffled) */
  const int nw = nthreads / 32;
  wpos.resize(nw);
  worder.resize(nw);
  for (int i = 0; i < nw; i++) worder[i] = i;
  shuffle_range(worder.data(), nw);
  for (int k = 0; k < nw; k++) {
    wpos[worder[k]] = 32 * k;
    for (int l = 0; l < 32; l++) perm[32 * k + l] = 32 * worder[k] + l;
    shuffle_range(&perm[32 * k], 32);
  }
}

/* ahead: after thread i ran, where the round goes on (the index before it, as the loop increments):
 * its warp again from its first lane if it just completed a warp barrier, so that warp keeps
 * running; past the end (the next round redraws the warp order) once a __syncthreads completed. */
int ahead_next(int r, int i, unsigned epoch) {
  if (block_epoch != epoch) return nthreads;
  if (ctxs[i].state != RUNNABLE) return r;
  const int w = i / 32;
  shuffle_range(&perm[wpos[w]], 32);
  return wpos[w] - 1;
}
}  // namespace

/* When a cp.async lands: forward / reverse at the covering cp.async.wait_group (as late as allowed:
 * reading a tile before waiting reads stale memory); shuffle / ahead at the wait or at once, by a
 * coin flip per copy (as early as allowed too: a copy into a buffer another warp still reads,
 * issued without a barrier after those reads, overwrites it). */
static bool tl_emu_copy_lands_now(void) { return (order == SHUFFLE || order == AHEAD) && (splitmix64(rng_state) & 1); }

/* Sets the schedule (see above); returns 0, or -1 and leaves it unchanged if spec is malformed.
 * For tests that switch orders within one process (test/cuda/). */
extern "C" int tl_emu_set_schedule(const char *spec) {
  Order o = FORWARD;
  uint64_t seed = 1;
  if (!parse_order(spec, &o, &seed)) return -1;
  order = o;
  order_seed = seed;
  order_read = true;
  order_bad = false;
  return 0;
}

cudaError_t tl_emu_run(dim3 grid, dim3 block, size_t smem, const std::function<void()> &b) {
  nthreads = (int)(block.x * block.y * block.z);
  if (nthreads <= 0 || nthreads > 1024 || nthreads % 32 != 0 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
      grid.y > 65535 || grid.z > 65535) {
    fprintf(stderr, "cuda-emu: bad launch configuration grid (%u,%u,%u) block (%u,%u,%u)\n", grid.x, grid.y, grid.z,
            block.x, block.y, block.z);
    return cudaErrorInvalidValue;
  }
  if (!order_read) {
    order_read = true;
    const char *spec = getenv("TL_EMU_SCHEDULE");
    order_bad = !parse_order(spec, &order, &order_seed);
    if (order_bad)
      fprintf(stderr, "cuda-emu: TL_EMU_SCHEDULE=%s is not forward, reverse, shuffle or shuffle:<seed>\n", spec);
  }
  if (order_bad) return cudaErrorInvalidValue; /* a typo must not quietly test the default order */
  body = &b;
  ctxs.resize(nthreads);
  perm.resize(nthreads);
  for (int i = 0; i < nthreads; i++) perm[i] = order == REVERSE ? nthreads - 1 - i : i;
  if (stacks.size() < (size_t)nthreads * STACK) stacks.resize((size_t)nthreads * STACK);
  warp_arrived.assign(nthreads / 32, 0);
  slots.assign(nthreads, 0.0f);
  tl_emu_grid_dim = grid;
  tl_emu_block_dim = block;
  const uint64_t nblocks = (uint64_t)grid.x * grid.y * grid.z;
  plan_blocks(nblocks);
  for (unsigned bz = 0; bz < grid.z; bz++)
    for (unsigned by = 0; by < grid.y; by++)
      for (unsigned bx = 0; bx < grid.x; bx++) {
        const uint64_t lin = block_at(((uint64_t)bz * grid.y + by) * grid.x + bx, nblocks); /* the schedule's next block */
        tl_emu_block_idx = dim3((unsigned)(lin % grid.x), (unsigned)(lin / grid.x % grid.y), (unsigned)(lin / grid.x / grid.y));
        seed_block(lin);
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
          next_round_order();
          /* locals: kept in registers across the context switches (forward as fast as before) */
          const unsigned epoch = block_epoch;
          const int *visit = order == FORWARD ? nullptr : perm.data();
          const bool greedy = order == AHEAD;
          for (int r = 0; r < nthreads; r++) {
            const int i = visit ? visit[r] : r;
            if (ctxs[i].state != RUNNABLE) {
              if (ctxs[i].state != DONE) all_done = false;
              continue;
            }
            cur = i;
            tl_emu_current = &ctxs[i].t;
            ran = true;
            resume(i);
            if (ctxs[i].state != DONE) all_done = false;
            if (greedy) r = ahead_next(r, i, epoch);
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
                    tl_emu_block_idx.x, tl_emu_block_idx.y, tl_emu_block_idx.z, at_block, at_warp, done);
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
