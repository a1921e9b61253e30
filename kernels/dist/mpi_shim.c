/*
 * mpi_shim.c: the few MPI calls @tinyllama/distributed needs, as plain C functions that bun:ffi
 * can call. Compiled with `mpicc -O2 -fPIC -shared` on first use (packages/distributed/src/mpi.ts).
 *
 * Why a shim: MPI_COMM_WORLD, MPI_FLOAT and MPI_SUM are macros over library globals (not values a
 * foreign-function table can name), and OpenMPI's plugins (mca_*.so, dlopen()ed by MPI_Init) resolve
 * symbols of libmpi/libopen-pal through the global scope, while bun:ffi loads libraries RTLD_LOCAL.
 * tl_mpi_init() therefore re-opens the libmpi this shim is linked against with RTLD_GLOBAL first.
 *
 * Every collective is non-blocking (MPI_I*) and polled with MPI_Test against a deadline, so a rank
 * whose peer died or hangs returns TL_MPI_TIMEOUT instead of blocking forever; the TypeScript side
 * then prints which collective timed out and calls tl_mpi_abort(). Every function returns 0 or a
 * TL_MPI_* code; tl_mpi_last_error() describes the last failure.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
  TL_MPI_OK = 0,
  TL_MPI_ERR_MPI = 1,      /* an MPI call returned an error */
  TL_MPI_TIMEOUT = 2,      /* the collective did not complete before the deadline */
  TL_MPI_ERR_INVALID = 3,  /* bad argument (null pointer, negative or > INT_MAX count, bad root/op) */
  TL_MPI_ERR_STATE = 4,    /* not initialised, or already finalised */
  TL_MPI_ERR_NOMEM = 5,
};

enum { OP_SUM = 0, OP_MEAN = 1, OP_MAX = 2, OP_MIN = 3 };

static char last_error[512];
static int initialised = 0, finalised = 0, world_rank = -1, world_size = 0;

static int fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return code;
}

static int mpi_fail(const char *what, int rc) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "MPI error %d", rc);
  return fail(TL_MPI_ERR_MPI, "%s failed: %s", what, msg);
}

const char *tl_mpi_last_error(void) { return last_error; }

#define REQUIRE_READY()                                                                    \
  do {                                                                                     \
    if (!initialised || finalised)                                                         \
      return fail(TL_MPI_ERR_STATE, "MPI is %s", finalised ? "already finalised" : "not initialised"); \
  } while (0)

static int check_count(int64_t count, const char *what) {
  if (count < 0 || count > INT_MAX) return fail(TL_MPI_ERR_INVALID, "%s: count %lld is outside [0, INT_MAX]", what, (long long)count);
  return TL_MPI_OK;
}

static int mpi_op(int op, MPI_Op *out) {
  switch (op) {
    case OP_SUM:
    case OP_MEAN: *out = MPI_SUM; return TL_MPI_OK;
    case OP_MAX: *out = MPI_MAX; return TL_MPI_OK;
    case OP_MIN: *out = MPI_MIN; return TL_MPI_OK;
    default: return fail(TL_MPI_ERR_INVALID, "unknown reduction op %d", op);
  }
}

/*
 * How a rank waits inside a collective. MPI only advances a non-blocking collective inside MPI calls,
 * so a waiter must keep calling MPI_Test; the question is what it does with the core in between.
 *
 * WAIT_PATIENT: the peers may still be computing (the first collective after forward/backward absorbs
 * their imbalance, often hundreds of ms). Spinning there, even with sched_yield, keeps this core busy:
 * the scheduler then never hands it to the rank that is still computing (or to whatever shares that
 * rank's core), and with group scheduling (autogroup, cgroups) the spinner's load halves the CPU share
 * of the rank everyone waits for. So after a short spin (the peer may be microseconds away) it naps
 * with a growing sleep (20 us .. 1 ms), which frees the core at the cost of up to one nap of latency.
 *
 * WAIT_BUSY: every rank is known to be inside the collective (a patient barrier just completed). The
 * shared-memory transport then needs MPI_Test calls on both sides for every fragment of a large
 * buffer, so naps would stall it (each fragment waiting for the peer's next nap to end); it polls
 * with sched_yield, which costs nothing when no one else wants the core. After a second without
 * completion the peer is evidently busy (or dead) and it naps 1 ms between tests instead.
 *
 * timeout_s <= 0 waits forever.
 */
enum { WAIT_BUSY = 0, WAIT_PATIENT = 1 };
enum { PATIENT_SPIN_NS = 50000, PATIENT_NAP_MIN_NS = 20000, PATIENT_NAP_MAX_NS = 1000000 };

static int wait_request(MPI_Request *req, const char *what, double timeout_s, int mode) {
  double t0 = MPI_Wtime();
  long nap_ns = PATIENT_NAP_MIN_NS;
  for (long spin = 0;; spin++) {
    int done = 0;
    int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_fail(what, rc);
    if (done) return TL_MPI_OK;
    double waited = MPI_Wtime() - t0;
    if (timeout_s > 0 && waited > timeout_s) return fail(TL_MPI_TIMEOUT, "%s did not complete within %.0f s", what, timeout_s);
    if (mode == WAIT_PATIENT && waited * 1e9 > PATIENT_SPIN_NS) {
      struct timespec ts = {0, nap_ns};
      nanosleep(&ts, NULL);
      nap_ns = nap_ns * 5 / 4 < PATIENT_NAP_MAX_NS ? nap_ns * 5 / 4 : PATIENT_NAP_MAX_NS;
    } else if (waited > 1.0) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    } else {
      sched_yield();
    }
  }
}

/*
 * Buffers at least this large are moved in WAIT_BUSY mode after a patient barrier; smaller ones
 * (scalars, small buckets: one or a few fragments) are waited for patiently directly.
 */
#define BULK_BYTES (64 * 1024)

/* A patient MPI_Ibarrier: returns once every rank has arrived, without holding a core meanwhile. */
static int arrive(const char *what, double timeout_s) {
  MPI_Request req;
  int rc = MPI_Ibarrier(MPI_COMM_WORLD, &req);
  if (rc != MPI_SUCCESS) return mpi_fail("MPI_Ibarrier", rc);
  return wait_request(&req, what, timeout_s, WAIT_PATIENT);
}

/* Waits for a collective over `bytes` per rank, started by the caller after arrive() for bulk sizes. */
static int wait_collective(MPI_Request *req, const char *what, double timeout_s, int64_t bytes) {
  return wait_request(req, what, timeout_s, bytes >= BULK_BYTES ? WAIT_BUSY : WAIT_PATIENT);
}

/* Makes the libmpi this shim was linked against globally visible (see the header comment). */
static int promote_libmpi(void) {
  Dl_info info;
  if (!dladdr((void *)&MPI_Init, &info) || !info.dli_fname)
    return fail(TL_MPI_ERR_MPI, "cannot locate the libmpi that provides MPI_Init (dladdr failed)");
  void *h = dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
  if (!h) h = dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL);
  if (!h) return fail(TL_MPI_ERR_MPI, "dlopen(%s, RTLD_GLOBAL) failed: %s", info.dli_fname, dlerror());
  return TL_MPI_OK; /* the handle stays open for the life of the process, on purpose */
}

/* rank (1), size (1): this process's rank in MPI_COMM_WORLD and the world size. */
int tl_mpi_init(int *rank, int *size) {
  if (!rank || !size) return fail(TL_MPI_ERR_INVALID, "tl_mpi_init: null output pointer");
  if (finalised) return fail(TL_MPI_ERR_STATE, "MPI was already finalised; it cannot be initialised twice in one process");
  if (!initialised) {
    int rc = promote_libmpi();
    if (rc) return rc;
    int already = 0;
    MPI_Initialized(&already);
    if (!already) {
      int provided = 0;
      /* Only the JavaScript thread calls MPI; the kernels' OpenMP threads never do. */
      rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
      if (rc != MPI_SUCCESS) return mpi_fail("MPI_Init_thread", rc);
    }
    /* Errors come back as codes (reported by TypeScript) instead of aborting inside MPI. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    initialised = 1;
  }
  *rank = world_rank;
  *size = world_size;
  return TL_MPI_OK;
}

static void scale_f32(float *buf, int64_t count, float s) {
  for (int64_t i = 0; i < count; i++) buf[i] *= s;
}

/* buf (count) f32, in place: buf = op over ranks of buf (mean = sum, then * 1/size). */
int tl_mpi_allreduce_f32(float *buf, int64_t count, int op, double timeout_s) {
  REQUIRE_READY();
  int rc = check_count(count, "allreduce");
  if (rc) return rc;
  if (count == 0) return TL_MPI_OK;
  if (!buf) return fail(TL_MPI_ERR_INVALID, "allreduce: null buffer");
  MPI_Op mop = MPI_SUM;
  if ((rc = mpi_op(op, &mop))) return rc;
  if (count * 4 >= BULK_BYTES && (rc = arrive("allreduce", timeout_s))) return rc;
  MPI_Request req;
  rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)count, MPI_FLOAT, mop, MPI_COMM_WORLD, &req);
  if (rc != MPI_SUCCESS) return mpi_fail("MPI_Iallreduce", rc);
  if ((rc = wait_collective(&req, "allreduce", timeout_s, count * 4))) return rc;
  if (op == OP_MEAN) scale_f32(buf, count, 1.0f / (float)world_size);
  return TL_MPI_OK;
}

/* The same as tl_mpi_allreduce_f32 with blocking MPI_Allreduce and no deadline: the benchmark's peer. */
int tl_mpi_allreduce_blocking_f32(float *buf, int64_t count, int op) {
  REQUIRE_READY();
  int rc = check_count(count, "allreduce_blocking");
  if (rc) return rc;
  if (count == 0) return TL_MPI_OK;
  if (!buf) return fail(TL_MPI_ERR_INVALID, "allreduce_blocking: null buffer");
  MPI_Op mop = MPI_SUM;
  if ((rc = mpi_op(op, &mop))) return rc;
  rc = MPI_Allreduce(MPI_IN_PLACE, buf, (int)count, MPI_FLOAT, mop, MPI_COMM_WORLD);
  if (rc != MPI_SUCCESS) return mpi_fail("MPI_Allreduce", rc);
  if (op == OP_MEAN) scale_f32(buf, count, 1.0f / (float)world_size);
  return TL_MPI_OK;
}

/* buf (count) f64, in place: for scalars (losses, squared norms), where float64 keeps the sum exact enough. */
int tl_mpi_allreduce_f64(double *buf, int64_t count, int op, double timeout_s) {
  REQUIRE_READY();
  int rc = check_count(count, "allreduce_scalar");
  if (rc) return rc;
  if (count == 0) return TL_MPI_OK;
  if (!buf) return fail(TL_MPI_ERR_INVALID, "allreduce_scalar: null buffer");
  MPI_Op mop = MPI_SUM;
  if ((rc = mpi_op(op, &mop))) return rc;
  MPI_Request req;
  rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)count, MPI_DOUBLE, mop, MPI_COMM_WORLD, &req);
  if (rc != MPI_SUCCESS) return mpi_fail("MPI_Iallreduce", rc);
  if ((rc = wait_request(&req, "allreduce_scalar", timeout_s, WAIT_PATIENT))) return rc;
  if (op == OP_MEAN)
    for (int64_t i = 0; i < count; i++) buf[i] /= (double)world_size;
  return TL_MPI_OK;
}

/* buf (bytes): root's bytes are copied to every rank. */
int tl_mpi_bcast(void *buf, int64_t bytes, int root, double timeout_s) {
  REQUIRE_READY();
  int rc = check_count(bytes, "broadcast");
  if (rc) return rc;
  if (root < 0 || root >= world_size) return fail(TL_MPI_ERR_INVALID, "broadcast: root %d is outside [0, %d)", root, world_size);
  if (bytes == 0) return TL_MPI_OK;
  if (!buf) return fail(TL_MPI_ERR_INVALID, "broadcast: null buffer");
  if (bytes >= BULK_BYTES && (rc = arrive("broadcast", timeout_s))) return rc;
  MPI_Request req;
  rc = MPI_Ibcast(buf, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD, &req);
  if (rc != MPI_SUCCESS) return mpi_fail("MPI_Ibcast", rc);
  return wait_collective(&req, "broadcast", timeout_s, bytes);
}

int tl_mpi_barrier(double timeout_s) {
  REQUIRE_READY();
  return arrive("barrier", timeout_s);
}

static float *scratch = NULL;
static int64_t scratch_count = 0;

/*
 * send (sum of counts) f32, recv (counts[rank]) f32, counts (size) i32.
 * Rank r receives op over ranks of send[displ(r) : displ(r)+counts[r]], displ(r) = sum of counts[<r].
 * recv may be exactly send + displ(rank) (in place: the rank's own shard of the buffer). MPI forbids
 * overlapping send and receive buffers, so that case receives into a scratch buffer (grown once,
 * kept) and copies. Contents of send outside the rank's shard are unchanged.
 */
int tl_mpi_reduce_scatter_f32(const float *send, float *recv, const int32_t *counts, int op, double timeout_s) {
  REQUIRE_READY();
  if (!counts) return fail(TL_MPI_ERR_INVALID, "reduce_scatter: null counts");
  int64_t total = 0, displ = 0;
  for (int r = 0; r < world_size; r++) {
    if (counts[r] < 0) return fail(TL_MPI_ERR_INVALID, "reduce_scatter: counts[%d] = %d is negative", r, counts[r]);
    if (r == world_rank) displ = total;
    total += counts[r];
  }
  int mine = counts[world_rank];
  if (total == 0) return TL_MPI_OK;
  if (!send || (mine > 0 && !recv)) return fail(TL_MPI_ERR_INVALID, "reduce_scatter: null buffer");
  MPI_Op mop = MPI_SUM;
  int rc = mpi_op(op, &mop);
  if (rc) return rc;
  int in_place = recv == send + displ;
  if (!in_place && recv && recv < send + total && send < recv + mine)
    return fail(TL_MPI_ERR_INVALID, "reduce_scatter: out overlaps the input other than as this rank's own shard");
  float *dst = recv;
  if (in_place) {
    if (scratch_count < mine) {
      float *p = realloc(scratch, (size_t)mine * sizeof(float));
      if (!p) return fail(TL_MPI_ERR_NOMEM, "reduce_scatter: cannot allocate %d floats of scratch", mine);
      scratch = p;
      scratch_count = mine;
    }
    dst = scratch;
  }
  if (total * 4 >= BULK_BYTES && (rc = arrive("reduce_scatter", timeout_s))) return rc;
  MPI_Request req;
  rc = MPI_Ireduce_scatter(send, dst, counts, MPI_FLOAT, mop, MPI_COMM_WORLD, &req);
  if (rc != MPI_SUCCESS) return mpi_fail("MPI_Ireduce_scatter", rc);
  if ((rc = wait_collective(&req, "reduce_scatter", timeout_s, total * 4))) return rc;
  if (op == OP_MEAN) scale_f32(dst, mine, 1.0f / (float)world_size);
  if (in_place && mine > 0) memcpy(recv, dst, (size_t)mine * sizeof(float));
  return TL_MPI_OK;
}

/*
 * send (counts[rank]) f32, recv (sum of counts) f32, counts (size) i32: recv = the ranks' sends,
 * concatenated in rank order. send may be exactly recv + displ(rank) (in place, MPI_IN_PLACE).
 */
int tl_mpi_allgather_f32(const float *send, float *recv, const int32_t *counts, double timeout_s) {
  REQUIRE_READY();
  if (!counts) return fail(TL_MPI_ERR_INVALID, "allgather: null counts");
  int *displs = malloc((size_t)world_size * sizeof(int));
  if (!displs) return fail(TL_MPI_ERR_NOMEM, "allgather: cannot allocate displacements");
  int64_t total = 0, displ = 0;
  for (int r = 0; r < world_size; r++) {
    if (counts[r] < 0 || total + counts[r] > INT_MAX) {
      free(displs);
      return fail(TL_MPI_ERR_INVALID, "allgather: counts[%d] = %d is negative or the total exceeds INT_MAX", r, counts[r]);
    }
    if (r == world_rank) displ = total;
    displs[r] = (int)total;
    total += counts[r];
  }
  int mine = counts[world_rank], rc;
  if (total == 0) {
    free(displs);
    return TL_MPI_OK;
  }
  if (!recv || (mine > 0 && !send)) {
    free(displs);
    return fail(TL_MPI_ERR_INVALID, "allgather: null buffer");
  }
  int in_place = send == recv + displ;
  if (!in_place && send && send < recv + total && recv < send + mine) {
    free(displs);
    return fail(TL_MPI_ERR_INVALID, "allgather: the shard overlaps out other than as this rank's own range");
  }
  if (total * 4 >= BULK_BYTES && (rc = arrive("allgather", timeout_s))) {
    free(displs);
    return rc;
  }
  MPI_Request req;
  rc = MPI_Iallgatherv(in_place ? MPI_IN_PLACE : send, mine, MPI_FLOAT, recv, counts, displs, MPI_FLOAT, MPI_COMM_WORLD, &req);
  if (rc != MPI_SUCCESS) {
    free(displs);
    return mpi_fail("MPI_Iallgatherv", rc);
  }
  rc = wait_collective(&req, "allgather", timeout_s, total * 4);
  if (rc != TL_MPI_TIMEOUT) free(displs); /* a pending request may still read displs until MPI_Abort */
  return rc;
}

int tl_mpi_finalize(void) {
  if (!initialised || finalised) return TL_MPI_OK;
  finalised = 1;
  free(scratch);
  scratch = NULL;
  scratch_count = 0;
  int rc = MPI_Finalize();
  return rc == MPI_SUCCESS ? TL_MPI_OK : mpi_fail("MPI_Finalize", rc);
}

/* Ends every rank of the job (mpirun tears the others down). Does not return when MPI is up. */
int tl_mpi_abort(int code) {
  if (initialised && !finalised) MPI_Abort(MPI_COMM_WORLD, code);
  fflush(NULL);
  _exit(code);
}
