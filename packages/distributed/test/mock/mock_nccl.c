/*
 * A stand-in libnccl.so.2 for testing nccl_shim.c without GPUs: a "mirror world" in which every
 * rank makes the same call on memory with the same contents as this process, so each collective's
 * result is computable locally: sum = nranks x, avg = x; an in-place all-gather leaves the buffer
 * as it is (rank k's shard is slot k of its identical buffer); an all-gather from a separate send
 * buffer puts its contents into every slot. Every call is logged to
 * stderr as "mock: ..." so tests can check the arguments the shim passes (counts, dtypes, ops,
 * roots, grouping, the stream).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int ncclResult_t;
typedef struct { char internal[128]; } ncclUniqueId;
struct ncclComm { int nranks, rank; };
typedef struct ncclComm *ncclComm_t;

static size_t esize(int dtype) { return dtype == 8 ? 8 : dtype == 7 ? 4 : 1; }

/* op over the mirrored ranks of value x */
static double reduce1(double x, int op, int n) {
  switch (op) {
    case 0: return x * n;  /* sum */
    case 4: return x;      /* avg */
    default: return x;     /* max, min, prod of equal values (prod unused) */
  }
}

static void reduce_into(const void *send, void *recv, size_t count, int dtype, int op, int n) {
  for (size_t i = 0; i < count; i++) {
    if (dtype == 7) ((float *)recv)[i] = (float)reduce1(((const float *)send)[i], op, n);
    else if (dtype == 8) ((double *)recv)[i] = reduce1(((const double *)send)[i], op, n);
  }
}

ncclResult_t ncclGetVersion(int *v) { *v = 21903; return 0; }
ncclResult_t ncclGetUniqueId(ncclUniqueId *id) { memset(id->internal, 0x5a, sizeof id->internal); fprintf(stderr, "mock: ncclGetUniqueId\n"); return 0; }
ncclResult_t ncclCommInitRank(ncclComm_t *c, int nranks, ncclUniqueId id, int rank) {
  if (id.internal[0] != 0x5a || id.internal[127] != 0x5a) return 4; /* the id did not survive the bootstrap */
  *c = malloc(sizeof **c);
  (*c)->nranks = nranks;
  (*c)->rank = rank;
  fprintf(stderr, "mock: ncclCommInitRank nranks=%d rank=%d\n", nranks, rank);
  return 0;
}
ncclResult_t ncclCommDestroy(ncclComm_t c) { fprintf(stderr, "mock: ncclCommDestroy\n"); free(c); return 0; }
ncclResult_t ncclCommAbort(ncclComm_t c) { fprintf(stderr, "mock: ncclCommAbort\n"); free(c); return 0; }
ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t *e) { (void)c; *e = 0; return 0; }
const char *ncclGetErrorString(ncclResult_t r) { return r == 4 ? "invalid argument (mock)" : "mock error"; }
ncclResult_t ncclGroupStart(void) { fprintf(stderr, "mock: ncclGroupStart\n"); return 0; }
ncclResult_t ncclGroupEnd(void) { fprintf(stderr, "mock: ncclGroupEnd\n"); return 0; }

ncclResult_t ncclAllReduce(const void *s, void *r, size_t count, int dtype, int op, ncclComm_t c, void *stream) {
  fprintf(stderr, "mock: ncclAllReduce count=%zu dtype=%d op=%d inplace=%d stream=%p\n", count, dtype, op, s == r, stream);
  reduce_into(s, r, count, dtype, op, c->nranks);
  return 0;
}
ncclResult_t ncclBroadcast(const void *s, void *r, size_t count, int dtype, int root, ncclComm_t c, void *stream) {
  fprintf(stderr, "mock: ncclBroadcast count=%zu dtype=%d root=%d inplace=%d stream=%p\n", count, dtype, root, s == r, stream);
  if (root == c->rank && s != r) memmove(r, s, count * esize(dtype));
  return 0; /* a non-root already holds the root's (mirrored) data */
}
ncclResult_t ncclReduce(const void *s, void *r, size_t count, int dtype, int op, int root, ncclComm_t c, void *stream) {
  fprintf(stderr, "mock: ncclReduce count=%zu dtype=%d op=%d root=%d inplace=%d stream=%p\n", count, dtype, op, root, s == r, stream);
  if (root == c->rank) reduce_into(s, r, count, dtype, op, c->nranks);
  return 0;
}
ncclResult_t ncclReduceScatter(const void *s, void *r, size_t count, int dtype, int op, ncclComm_t c, void *stream) {
  const char *mine = (const char *)s + (size_t)c->rank * count * esize(dtype);
  fprintf(stderr, "mock: ncclReduceScatter recvcount=%zu dtype=%d op=%d inplace=%d stream=%p\n", count, dtype, op, (const void *)mine == r, stream);
  reduce_into(mine, r, count, dtype, op, c->nranks);
  return 0;
}
ncclResult_t ncclAllGather(const void *s, void *r, size_t count, int dtype, ncclComm_t c, void *stream) {
  size_t bytes = count * esize(dtype);
  fprintf(stderr, "mock: ncclAllGather sendcount=%zu dtype=%d inplace=%d stream=%p\n", count, dtype, (const char *)r + (size_t)c->rank * bytes == (const char *)s, stream);
  if ((const char *)r + (size_t)c->rank * bytes != (const char *)s)
    for (int k = 0; k < c->nranks; k++) memmove((char *)r + (size_t)k * bytes, s, bytes);
  return 0;
}
