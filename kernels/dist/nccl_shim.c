/*
 * nccl_shim.c: NCCL collectives for @tinyllama/distributed's NcclCommunicator, as plain C functions
 * for bun:ffi. Built with the system C compiler and NO NCCL or CUDA headers: NCCL (libnccl.so.2) and
 * the CUDA driver (libcuda.so.1) are dlopen()ed at run time, like cuBLASLt in kernels/cuda, so the
 * project builds and runs on machines without either. The few types and functions used are
 * declared below from NCCL's and CUDA's public documentation (their ABI has been stable since
 * NCCL 2.0 / CUDA 4.0; ncclAvg needs NCCL >= 2.10).
 *
 * One communicator per process (one process per GPU). Work is enqueued on the device's legacy
 * default stream (stream 0), which orders it after the kernels the trainer launched on that
 * stream; completion is polled with cuStreamQuery against a deadline (and ncclCommGetAsyncError),
 * so a dead peer gives TL_NCCL_TIMEOUT instead of a hang. Every function returns 0 or a TL_NCCL_*
 * code; tl_nccl_last_error() says what failed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <glob.h>
#include <unistd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
  TL_NCCL_OK = 0,
  TL_NCCL_ERR_NCCL = 1,    /* an NCCL call failed */
  TL_NCCL_TIMEOUT = 2,     /* the collective did not complete before the deadline */
  TL_NCCL_ERR_INVALID = 3, /* bad argument */
  TL_NCCL_ERR_STATE = 4,   /* not loaded / not initialised / already destroyed */
  TL_NCCL_ERR_LOAD = 5,    /* libnccl.so.2 or libcuda.so.1 could not be loaded */
  TL_NCCL_ERR_CUDA = 6,    /* a CUDA driver call failed */
};

/* ---- hand-written declarations (NCCL: nccl.h; CUDA driver: cuda.h) ---- */
typedef int ncclResult_t; /* ncclSuccess = 0, ..., ncclInProgress = 7 */
typedef struct ncclComm *ncclComm_t;
#define NCCL_UNIQUE_ID_BYTES 128
typedef struct { char internal[NCCL_UNIQUE_ID_BYTES]; } ncclUniqueId;
enum { ncclSuccess = 0, ncclInProgress = 7 };
enum { ncclUint8 = 1, ncclFloat32 = 7, ncclFloat64 = 8 };            /* ncclDataType_t */
enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 }; /* ncclRedOp_t */
typedef void *cudaStream_t;

typedef int CUresult; /* CUDA_SUCCESS = 0, CUDA_ERROR_NOT_READY = 600 */
typedef int CUdevice;
typedef void *CUcontext;
typedef unsigned long long CUdeviceptr;
enum { CUDA_SUCCESS = 0, CUDA_ERROR_NOT_READY = 600 };

static struct {
  ncclResult_t (*GetVersion)(int *);
  ncclResult_t (*GetUniqueId)(ncclUniqueId *);
  ncclResult_t (*CommInitRank)(ncclComm_t *, int, ncclUniqueId, int);
  ncclResult_t (*CommDestroy)(ncclComm_t);
  ncclResult_t (*CommAbort)(ncclComm_t);
  ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t *);
  const char *(*GetErrorString)(ncclResult_t);
  ncclResult_t (*AllReduce)(const void *, void *, size_t, int, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*Broadcast)(const void *, void *, size_t, int, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*Reduce)(const void *, void *, size_t, int, int, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*ReduceScatter)(const void *, void *, size_t, int, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*AllGather)(const void *, void *, size_t, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*GroupStart)(void);
  ncclResult_t (*GroupEnd)(void);
} nccl;

static struct {
  CUresult (*Init)(unsigned);
  CUresult (*DeviceGetCount)(int *);
  CUresult (*DeviceGet)(CUdevice *, int);
  CUresult (*DevicePrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*CtxSetCurrent)(CUcontext);
  CUresult (*StreamQuery)(void *);
  CUresult (*MemAlloc)(CUdeviceptr *, size_t);
  CUresult (*MemFree)(CUdeviceptr);
  CUresult (*MemcpyHtoD)(CUdeviceptr, const void *, size_t);
  CUresult (*MemcpyDtoH)(void *, CUdeviceptr, size_t);
  CUresult (*GetErrorString)(CUresult, const char **);
} cu;

static char last_error[2048];
static void *nccl_dl = NULL, *cuda_dl = NULL;
static char nccl_path[1024];
static ncclComm_t comm = NULL;
static int comm_rank = -1, comm_size = 0;
static CUdeviceptr scratch = 0; /* 8 bytes for scalars and barriers */

static int fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return code;
}

const char *tl_nccl_last_error(void) { return last_error; }

static int nccl_fail(const char *what, ncclResult_t r) {
  const char *s = nccl.GetErrorString ? nccl.GetErrorString(r) : NULL;
  return fail(TL_NCCL_ERR_NCCL, "%s failed: %s (ncclResult_t %d)", what, s ? s : "unknown error", r);
}

static int cu_fail(const char *what, CUresult r) {
  const char *s = NULL;
  if (cu.GetErrorString) cu.GetErrorString(r, &s);
  return fail(TL_NCCL_ERR_CUDA, "%s failed: %s (CUresult %d)", what, s ? s : "unknown error", r);
}

#define RESOLVE(dl, table, field, name)                                                       \
  do {                                                                                        \
    *(void **)(&table.field) = dlsym(dl, name);                                               \
    if (!table.field) return fail(TL_NCCL_ERR_LOAD, "%s has no symbol %s", #dl, name);        \
  } while (0)

static void *try_open(const char *path, char *tried, size_t cap) {
  void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
  size_t n = strlen(tried);
  if (!h && n + strlen(path) + 4 < cap) snprintf(tried + n, cap - n, "%s%s", n ? ", " : "", path);
  return h;
}

/* NCCL_LIB (a file or a folder), the loader's path (LD_LIBRARY_PATH, ld.so.cache), then Python
 * environments' site-packages/nvidia/nccl/lib (pip's nvidia-nccl-cu12 / -cu13, which PyTorch wheels use). */
static void *open_nccl(char *tried, size_t cap) {
  void *h = NULL;
  const char *env = getenv("NCCL_LIB");
  if (env && *env) {
    char p[1024];
    snprintf(p, sizeof p, "%s", env);
    if ((h = try_open(p, tried, cap))) return snprintf(nccl_path, sizeof nccl_path, "%s", p), h;
    snprintf(p, sizeof p, "%s/libnccl.so.2", env);
    if ((h = try_open(p, tried, cap))) return snprintf(nccl_path, sizeof nccl_path, "%s", p), h;
  }
  if ((h = try_open("libnccl.so.2", tried, cap))) return snprintf(nccl_path, sizeof nccl_path, "libnccl.so.2"), h;
  /* Python prefixes: the active environment's, then the prefix of every python3 on PATH (a venv's
   * bin/.. : a non-interactive shell on a GPU machine often has PyTorch's venv on PATH without
   * VIRTUAL_ENV), then the usual places, including /opt/<name>/{.venv,venv} images ship. */
  enum { NPATH = 8 };
  static char path_prefix[NPATH][512];
  int np = 0;
  const char *path = getenv("PATH");
  while (path && *path && np < NPATH) {
    const char *end = strchr(path, ':');
    size_t len = end ? (size_t)(end - path) : strlen(path);
    if (len > 0 && len < 400) {
      char py[512];
      snprintf(py, sizeof py, "%.*s/python3", (int)len, path);
      if (access(py, X_OK) == 0) snprintf(path_prefix[np++], sizeof path_prefix[0], "%.*s/..", (int)len, path);
    }
    path = end ? end + 1 : NULL;
  }
  const char *prefixes[5 + NPATH + 4] = {getenv("VIRTUAL_ENV"), getenv("CONDA_PREFIX"), getenv("HOME")};
  size_t nprefix = 3;
  for (int i = 0; i < np; i++) prefixes[nprefix++] = path_prefix[i];
  prefixes[nprefix++] = "/usr/local";
  prefixes[nprefix++] = "/usr";
  prefixes[nprefix++] = "/opt/*/.venv";
  prefixes[nprefix++] = "/opt/*/venv";
  prefixes[nprefix++] = "/opt/*";
  const char *middles[] = {"/lib/python3*/site-packages", "/lib/python3*/dist-packages", "/.local/lib/python3*/site-packages"};
  for (size_t i = 0; i < nprefix; i++) {
    if (!prefixes[i] || !*prefixes[i]) continue;
    for (size_t j = 0; j < sizeof middles / sizeof *middles; j++) {
      char pat[1024];
      snprintf(pat, sizeof pat, "%s%s/nvidia/nccl/lib/libnccl.so.2", prefixes[i], middles[j]);
      glob_t g;
      memset(&g, 0, sizeof g);
      if (glob(pat, 0, NULL, &g) == 0)
        for (size_t k = 0; k < g.gl_pathc && !h; k++)
          if ((h = try_open(g.gl_pathv[k], tried, cap))) snprintf(nccl_path, sizeof nccl_path, "%s", g.gl_pathv[k]);
      globfree(&g);
      if (h) return h;
    }
  }
  return NULL;
}

/* Loads the CUDA driver and NCCL (once). */
int tl_nccl_load(void) {
  if (nccl_dl && cuda_dl) return TL_NCCL_OK;
  char tried[1024] = "";
  if (!cuda_dl) {
    cuda_dl = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!cuda_dl)
      return fail(TL_NCCL_ERR_LOAD, "the CUDA driver (libcuda.so.1) could not be loaded: %s. NCCL needs an NVIDIA GPU and its driver.", dlerror());
    RESOLVE(cuda_dl, cu, Init, "cuInit");
    RESOLVE(cuda_dl, cu, DeviceGetCount, "cuDeviceGetCount");
    RESOLVE(cuda_dl, cu, DeviceGet, "cuDeviceGet");
    RESOLVE(cuda_dl, cu, DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    RESOLVE(cuda_dl, cu, CtxSetCurrent, "cuCtxSetCurrent");
    RESOLVE(cuda_dl, cu, StreamQuery, "cuStreamQuery");
    RESOLVE(cuda_dl, cu, MemAlloc, "cuMemAlloc_v2");
    RESOLVE(cuda_dl, cu, MemFree, "cuMemFree_v2");
    RESOLVE(cuda_dl, cu, MemcpyHtoD, "cuMemcpyHtoD_v2");
    RESOLVE(cuda_dl, cu, MemcpyDtoH, "cuMemcpyDtoH_v2");
    RESOLVE(cuda_dl, cu, GetErrorString, "cuGetErrorString");
    CUresult r = cu.Init(0);
    if (r != CUDA_SUCCESS) {
      int code = cu_fail("cuInit", r);
      dlclose(cuda_dl);
      cuda_dl = NULL;
      return code;
    }
  }
  if (!nccl_dl) {
    nccl_dl = open_nccl(tried, sizeof tried);
    if (!nccl_dl)
      return fail(TL_NCCL_ERR_LOAD,
                  "NCCL (libnccl.so.2) was not found (tried %s). Install it (the libnccl2 package from NVIDIA's CUDA "
                  "repository, or 'pip install nvidia-nccl-cu12'), or set NCCL_LIB to the library or its folder.",
                  tried);
    RESOLVE(nccl_dl, nccl, GetVersion, "ncclGetVersion");
    RESOLVE(nccl_dl, nccl, GetUniqueId, "ncclGetUniqueId");
    RESOLVE(nccl_dl, nccl, CommInitRank, "ncclCommInitRank");
    RESOLVE(nccl_dl, nccl, CommDestroy, "ncclCommDestroy");
    RESOLVE(nccl_dl, nccl, CommAbort, "ncclCommAbort");
    RESOLVE(nccl_dl, nccl, CommGetAsyncError, "ncclCommGetAsyncError");
    RESOLVE(nccl_dl, nccl, GetErrorString, "ncclGetErrorString");
    RESOLVE(nccl_dl, nccl, AllReduce, "ncclAllReduce");
    RESOLVE(nccl_dl, nccl, Broadcast, "ncclBroadcast");
    RESOLVE(nccl_dl, nccl, Reduce, "ncclReduce");
    RESOLVE(nccl_dl, nccl, ReduceScatter, "ncclReduceScatter");
    RESOLVE(nccl_dl, nccl, AllGather, "ncclAllGather");
    RESOLVE(nccl_dl, nccl, GroupStart, "ncclGroupStart");
    RESOLVE(nccl_dl, nccl, GroupEnd, "ncclGroupEnd");
    int v = 0;
    nccl.GetVersion(&v);
    if (v < 21000) return fail(TL_NCCL_ERR_LOAD, "%s is NCCL version code %d; ncclAvg needs NCCL 2.10 or newer", nccl_path, v);
  }
  return TL_NCCL_OK;
}

/* version (1): NCCL's version code (e.g. 21903 for 2.19.3); path: where it was loaded from. */
int tl_nccl_version(int *version, const char **path) {
  int rc = tl_nccl_load();
  if (rc) return rc;
  if (!version || !path) return fail(TL_NCCL_ERR_INVALID, "tl_nccl_version: null output pointer");
  nccl.GetVersion(version);
  *path = nccl_path;
  return TL_NCCL_OK;
}

int tl_nccl_device_count(int *n) {
  int rc = tl_nccl_load();
  if (rc) return rc;
  if (!n) return fail(TL_NCCL_ERR_INVALID, "tl_nccl_device_count: null output pointer");
  CUresult r = cu.DeviceGetCount(n);
  return r == CUDA_SUCCESS ? TL_NCCL_OK : cu_fail("cuDeviceGetCount", r);
}

/* id (128 bytes): a fresh ncclUniqueId, made on rank 0 and sent to the others (MPI broadcast or a file). */
int tl_nccl_get_unique_id(uint8_t *id) {
  int rc = tl_nccl_load();
  if (rc) return rc;
  if (!id) return fail(TL_NCCL_ERR_INVALID, "tl_nccl_get_unique_id: null output pointer");
  ncclUniqueId u;
  ncclResult_t r = nccl.GetUniqueId(&u);
  if (r != ncclSuccess) return nccl_fail("ncclGetUniqueId", r);
  memcpy(id, u.internal, NCCL_UNIQUE_ID_BYTES);
  return TL_NCCL_OK;
}

static int use_device(int device) {
  CUdevice dev;
  CUcontext ctx;
  CUresult r = cu.DeviceGet(&dev, device);
  if (r != CUDA_SUCCESS) return cu_fail("cuDeviceGet", r);
  /* The primary context is the one the CUDA runtime (our kernels, NCCL's own cudart) adopts. */
  if ((r = cu.DevicePrimaryCtxRetain(&ctx, dev)) != CUDA_SUCCESS) return cu_fail("cuDevicePrimaryCtxRetain", r);
  if ((r = cu.CtxSetCurrent(ctx)) != CUDA_SUCCESS) return cu_fail("cuCtxSetCurrent", r);
  return TL_NCCL_OK;
}

/* Joins the communicator of nranks processes identified by id (128 bytes) as `rank`, on GPU `device`. */
int tl_nccl_init(int nranks, const uint8_t *id, int rank, int device) {
  int rc = tl_nccl_load();
  if (rc) return rc;
  if (comm) return fail(TL_NCCL_ERR_STATE, "this process already has an NCCL communicator");
  if (!id || nranks < 1 || rank < 0 || rank >= nranks || device < 0)
    return fail(TL_NCCL_ERR_INVALID, "tl_nccl_init: bad arguments (nranks %d, rank %d, device %d)", nranks, rank, device);
  if ((rc = use_device(device))) return rc;
  ncclUniqueId u;
  memcpy(u.internal, id, NCCL_UNIQUE_ID_BYTES);
  ncclResult_t r = nccl.CommInitRank(&comm, nranks, u, rank);
  if (r != ncclSuccess) {
    comm = NULL;
    return nccl_fail("ncclCommInitRank", r);
  }
  CUresult cr = cu.MemAlloc(&scratch, 8);
  if (cr != CUDA_SUCCESS) return cu_fail("cuMemAlloc (8-byte scratch)", cr);
  comm_rank = rank;
  comm_size = nranks;
  return TL_NCCL_OK;
}

#define REQUIRE_COMM()                                                                   \
  do {                                                                                   \
    if (!comm) return fail(TL_NCCL_ERR_STATE, "no NCCL communicator (call tl_nccl_init)"); \
  } while (0)

/* Polls the default stream until the enqueued collective is done, an async error shows, or the deadline passes. */
static int wait_stream(const char *what, double timeout_s) {
  struct timespec t0, now;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  long sleep_ns = 1000;
  for (long spin = 0;; spin++) {
    CUresult r = cu.StreamQuery(NULL);
    if (r == CUDA_SUCCESS) return TL_NCCL_OK;
    if (r != CUDA_ERROR_NOT_READY) return cu_fail(what, r);
    if (spin % 256 == 0) {
      ncclResult_t ae = ncclSuccess;
      nccl.CommGetAsyncError(comm, &ae);
      if (ae != ncclSuccess && ae != ncclInProgress) return nccl_fail(what, ae);
    }
    if (spin < 1000) continue;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double dt = (double)(now.tv_sec - t0.tv_sec) + 1e-9 * (double)(now.tv_nsec - t0.tv_nsec);
    if (timeout_s > 0 && dt > timeout_s) return fail(TL_NCCL_TIMEOUT, "%s did not complete within %.0f s", what, timeout_s);
    struct timespec ts = {0, sleep_ns};
    nanosleep(&ts, NULL);
    if (sleep_ns < 100000) sleep_ns *= 2;
  }
}

static int nccl_op(int op) {
  switch (op) { /* the shims' numbering: 0 sum, 1 mean, 2 max, 3 min */
    case 0: return ncclSum;
    case 1: return ncclAvg;
    case 2: return ncclMax;
    case 3: return ncclMin;
    default: return -1;
  }
}

/* buf (count) device, f32 (dtype 7) or f64 (dtype 8), in place. */
int tl_nccl_allreduce(void *buf, uint64_t count, int dtype, int op, double timeout_s) {
  REQUIRE_COMM();
  int nop = nccl_op(op);
  if (nop < 0 || (dtype != ncclFloat32 && dtype != ncclFloat64)) return fail(TL_NCCL_ERR_INVALID, "allreduce: bad op %d or dtype %d", op, dtype);
  if (count == 0) return TL_NCCL_OK;
  if (!buf) return fail(TL_NCCL_ERR_INVALID, "allreduce: null buffer");
  ncclResult_t r = nccl.AllReduce(buf, buf, (size_t)count, dtype, nop, comm, NULL);
  if (r != ncclSuccess) return nccl_fail("ncclAllReduce", r);
  return wait_stream("allreduce", timeout_s);
}

/* buf (bytes) device: root's bytes to every rank. */
int tl_nccl_bcast(void *buf, uint64_t bytes, int root, double timeout_s) {
  REQUIRE_COMM();
  if (root < 0 || root >= comm_size) return fail(TL_NCCL_ERR_INVALID, "broadcast: root %d is outside [0, %d)", root, comm_size);
  if (bytes == 0) return TL_NCCL_OK;
  if (!buf) return fail(TL_NCCL_ERR_INVALID, "broadcast: null buffer");
  ncclResult_t r = nccl.Broadcast(buf, buf, (size_t)bytes, ncclUint8, root, comm, NULL);
  if (r != ncclSuccess) return nccl_fail("ncclBroadcast", r);
  return wait_stream("broadcast", timeout_s);
}

/*
 * send (sum of counts) f32 device, recv (counts[rank]) f32 device, counts (size) host i32: as
 * tl_mpi_reduce_scatter_f32. Equal counts: one ncclReduceScatter (in place when recv == send +
 * rank*count, which NCCL supports). Unequal counts: one ncclReduce per rank's range, grouped.
 */
int tl_nccl_reduce_scatter(const float *send, float *recv, const int32_t *counts, int op, double timeout_s) {
  REQUIRE_COMM();
  int nop = nccl_op(op);
  if (nop < 0 || !counts) return fail(TL_NCCL_ERR_INVALID, "reduce_scatter: bad op %d or null counts", op);
  int uniform = 1;
  int64_t total = 0;
  for (int r = 0; r < comm_size; r++) {
    if (counts[r] < 0) return fail(TL_NCCL_ERR_INVALID, "reduce_scatter: counts[%d] is negative", r);
    uniform &= counts[r] == counts[0];
    total += counts[r];
  }
  if (total == 0) return TL_NCCL_OK;
  if (!send || (counts[comm_rank] > 0 && !recv)) return fail(TL_NCCL_ERR_INVALID, "reduce_scatter: null buffer");
  ncclResult_t r;
  if (uniform) {
    r = nccl.ReduceScatter(send, recv, (size_t)counts[0], ncclFloat32, nop, comm, NULL);
    if (r != ncclSuccess) return nccl_fail("ncclReduceScatter", r);
  } else {
    nccl.GroupStart();
    int64_t displ = 0;
    r = ncclSuccess;
    for (int root = 0; root < comm_size && r == ncclSuccess; root++) {
      const float *src = send + displ;
      if (counts[root] > 0) r = nccl.Reduce(src, root == comm_rank ? recv : (void *)src, (size_t)counts[root], ncclFloat32, nop, root, comm, NULL);
      displ += counts[root];
    }
    ncclResult_t g = nccl.GroupEnd();
    if (r != ncclSuccess) return nccl_fail("ncclReduce", r);
    if (g != ncclSuccess) return nccl_fail("ncclGroupEnd", g);
  }
  return wait_stream("reduce_scatter", timeout_s);
}

/* send (counts[rank]) f32 device, recv (sum of counts) f32 device: the shards concatenated in rank order. */
int tl_nccl_allgather(const float *send, float *recv, const int32_t *counts, double timeout_s) {
  REQUIRE_COMM();
  if (!counts) return fail(TL_NCCL_ERR_INVALID, "allgather: null counts");
  int uniform = 1;
  int64_t total = 0;
  for (int r = 0; r < comm_size; r++) {
    if (counts[r] < 0) return fail(TL_NCCL_ERR_INVALID, "allgather: counts[%d] is negative", r);
    uniform &= counts[r] == counts[0];
    total += counts[r];
  }
  if (total == 0) return TL_NCCL_OK;
  if (!recv || (counts[comm_rank] > 0 && !send)) return fail(TL_NCCL_ERR_INVALID, "allgather: null buffer");
  ncclResult_t r;
  if (uniform) {
    r = nccl.AllGather(send, recv, (size_t)counts[0], ncclFloat32, comm, NULL);
    if (r != ncclSuccess) return nccl_fail("ncclAllGather", r);
  } else {
    nccl.GroupStart();
    int64_t displ = 0;
    r = ncclSuccess;
    for (int root = 0; root < comm_size && r == ncclSuccess; root++) {
      float *dst = recv + displ;
      if (counts[root] > 0) r = nccl.Broadcast(root == comm_rank ? (const void *)send : dst, dst, (size_t)counts[root] * sizeof(float), ncclUint8, root, comm, NULL);
      displ += counts[root];
    }
    ncclResult_t g = nccl.GroupEnd();
    if (r != ncclSuccess) return nccl_fail("ncclBroadcast", r);
    if (g != ncclSuccess) return nccl_fail("ncclGroupEnd", g);
  }
  return wait_stream("allgather", timeout_s);
}

/* x (1) host f64, in place, through the 8-byte device scratch. */
int tl_nccl_allreduce_scalar(double *x, int op, double timeout_s) {
  REQUIRE_COMM();
  if (!x) return fail(TL_NCCL_ERR_INVALID, "allreduce_scalar: null pointer");
  CUresult cr = cu.MemcpyHtoD(scratch, x, 8);
  if (cr != CUDA_SUCCESS) return cu_fail("cuMemcpyHtoD", cr);
  int rc = tl_nccl_allreduce((void *)(uintptr_t)scratch, 1, ncclFloat64, op, timeout_s);
  if (rc) return rc;
  cr = cu.MemcpyDtoH(x, scratch, 8);
  return cr == CUDA_SUCCESS ? TL_NCCL_OK : cu_fail("cuMemcpyDtoH", cr);
}

int tl_nccl_barrier(double timeout_s) {
  double one = 1.0;
  return tl_nccl_allreduce_scalar(&one, 0, timeout_s);
}

static void release(void) {
  if (scratch && cu.MemFree) cu.MemFree(scratch);
  scratch = 0;
  comm = NULL;
  comm_rank = -1;
  comm_size = 0;
}

int tl_nccl_destroy(void) {
  if (!comm) return TL_NCCL_OK;
  ncclResult_t r = nccl.CommDestroy(comm);
  release();
  return r == ncclSuccess ? TL_NCCL_OK : nccl_fail("ncclCommDestroy", r);
}

/* After a timeout: abandons outstanding work (ncclCommAbort) so the process can exit. */
int tl_nccl_abort(void) {
  if (!comm) return TL_NCCL_OK;
  ncclResult_t r = nccl.CommAbort(comm);
  release();
  return r == ncclSuccess ? TL_NCCL_OK : nccl_fail("ncclCommAbort", r);
}

/* Device memory for tests and tools that have no CUDA backend at hand (driver API, current device). */
int tl_nccl_dev_alloc(uint64_t *out, uint64_t bytes) {
  int rc = tl_nccl_load();
  if (rc) return rc;
  if (!out) return fail(TL_NCCL_ERR_INVALID, "dev_alloc: null output pointer");
  CUdeviceptr p = 0;
  CUresult r = cu.MemAlloc(&p, bytes ? (size_t)bytes : 1);
  if (r != CUDA_SUCCESS) return cu_fail("cuMemAlloc", r);
  *out = (uint64_t)p;
  return TL_NCCL_OK;
}
int tl_nccl_dev_free(uint64_t p) {
  if (!cu.MemFree) return fail(TL_NCCL_ERR_STATE, "CUDA is not loaded");
  CUresult r = cu.MemFree((CUdeviceptr)p);
  return r == CUDA_SUCCESS ? TL_NCCL_OK : cu_fail("cuMemFree", r);
}
int tl_nccl_upload(uint64_t dst, const void *src, uint64_t bytes) {
  if (!cu.MemcpyHtoD) return fail(TL_NCCL_ERR_STATE, "CUDA is not loaded");
  if (bytes == 0) return TL_NCCL_OK;
  CUresult r = cu.MemcpyHtoD((CUdeviceptr)dst, src, (size_t)bytes);
  return r == CUDA_SUCCESS ? TL_NCCL_OK : cu_fail("cuMemcpyHtoD", r);
}
int tl_nccl_download(void *dst, uint64_t src, uint64_t bytes) {
  if (!cu.MemcpyDtoH) return fail(TL_NCCL_ERR_STATE, "CUDA is not loaded");
  if (bytes == 0) return TL_NCCL_OK;
  CUresult r = cu.MemcpyDtoH(dst, (CUdeviceptr)src, (size_t)bytes);
  return r == CUDA_SUCCESS ? TL_NCCL_OK : cu_fail("cuMemcpyDtoH", r);
}
