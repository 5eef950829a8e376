/*
 * comm_nccl.c - the NCCL communicator; see comm_nccl.h.  The one
 * translation unit that includes nccl.h.  Every NCCL call goes through
 * KILN_NCCL_CHECK, the NCCL member of cuda_check.h's family: on failure
 * `st` = KILN_ERR_DEVICE with "nccl: <call> failed: <reason> (file:line)"
 * and a jump to `err`.
 */
#include "backend/cuda/comm_nccl.h"

#ifdef KILN_HAVE_NCCL

#include "backend/comm_impl.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_impl.h"
#include "base/alloc.h"
#include "base/error.h"

#include <nccl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(COMM_NCCL_ID_BYTES == NCCL_UNIQUE_ID_BYTES, "NCCL unique id size");

static kiln_status nccl_check_fail(ncclResult_t r, const char *expr, const char *file, int line)
{
    return kiln_err_set(KILN_ERR_DEVICE, "nccl: %s failed: %s (%s:%d)", expr,
                        ncclGetErrorString(r), file, line);
}

#define KILN_NCCL_CHECK(call)                                                        \
    do {                                                                             \
        ncclResult_t kiln_nccl_r_ = (call);                                          \
        if (kiln_nccl_r_ != ncclSuccess) {                                           \
            st = nccl_check_fail(kiln_nccl_r_, #call, __FILE__, __LINE__);           \
            goto err;                                                                \
        }                                                                            \
    } while (0)

typedef struct comm_nccl {
    comm base;
    ncclComm_t nc;
    cudaStream_t stream;      /* the backend's compute stream (borrowed) */
    atomic_bool aborted;  /* set by comm_nccl_abort from any thread */
} comm_nccl;

static kiln_status comm_nccl_type(const comm_nccl *k, kiln_dtype dt, const char *op,
                                  ncclDataType_t *out)
{
    if (atomic_load(&k->aborted))
        return kiln_err_set(KILN_ERR_DEVICE, "comm %s: rank %d's NCCL group was aborted", op,
                            (int)k->base.rank);
    switch (dt) {
    case KILN_DT_F32: *out = ncclFloat32; return KILN_OK;
    case KILN_DT_F16: *out = ncclFloat16; return KILN_OK;
    case KILN_DT_BF16: *out = ncclBfloat16; return KILN_OK;
    default:
        return kiln_err_set(KILN_ERR_INVALID_ARG, "comm %s: NCCL does not sum %s here", op,
                            dtype_name(dt));
    }
}

static kiln_status comm_nccl_all_reduce(comm *c, void *buf, int64_t n, kiln_dtype dtype)
{
    comm_nccl *k = (comm_nccl *)c;
    ncclDataType_t t = ncclFloat32;
    kiln_status st;

    if ((st = comm_nccl_type(k, dtype, "all-reduce", &t)))
        return st;
    KILN_NCCL_CHECK(ncclAllReduce(buf, buf, (size_t)n, t, ncclSum, k->nc, k->stream));
err:
    return st;
}

static kiln_status comm_nccl_all_gather(comm *c, const void *send, int64_t n, kiln_dtype dtype,
                                        void *recv)
{
    comm_nccl *k = (comm_nccl *)c;
    ncclDataType_t t = ncclFloat32;
    kiln_status st;

    if ((st = comm_nccl_type(k, dtype, "all-gather", &t)))
        return st;
    KILN_NCCL_CHECK(ncclAllGather(send, recv, (size_t)n, t, k->nc, k->stream));
err:
    return st;
}

static void comm_nccl_abort(comm *c)
{
    comm_nccl *k = (comm_nccl *)c;
    /* from the rank's thread or a watch's (comm_watch.c): the first caller
     * aborts; ncclCommAbort also ends collectives in flight on the stream */
    if (k->nc && !atomic_exchange(&k->aborted, true))
        ncclCommAbort(k->nc); /* frees the communicator; nothing to check after */
    atomic_store(&k->aborted, true);
}

static kiln_status comm_nccl_check(comm *c)
{
    comm_nccl *k = (comm_nccl *)c;
    ncclResult_t async = ncclSuccess;

    if (atomic_load(&k->aborted))
        return kiln_err_set(KILN_ERR_DEVICE, "comm: rank %d's NCCL group was aborted",
                            (int)k->base.rank);
    if (ncclCommGetAsyncError(k->nc, &async) != ncclSuccess || async != ncclSuccess)
        return kiln_err_set(KILN_ERR_DEVICE, "comm: rank %d's NCCL group: %s", (int)k->base.rank,
                            ncclGetErrorString(async));
    return KILN_OK;
}

static void comm_nccl_free(comm *c)
{
    comm_nccl *k = (comm_nccl *)c;
    if (k->nc && !atomic_load(&k->aborted))
        ncclCommDestroy(k->nc);
    kiln_free(k);
}

static const comm_ops comm_nccl_ops = {
    .kind = "nccl",
    .free = comm_nccl_free,
    .all_reduce_sum = comm_nccl_all_reduce,
    .all_gather = comm_nccl_all_gather,
    .abort = comm_nccl_abort,
    .check = comm_nccl_check,
};

/* NVLink multicast stays off: set before the first NCCL call of the
 * process (ncclGetUniqueId initialises NCCL and reads its environment),
 * once, so threads joining a group do not race on the environment. */
static pthread_once_t nccl_env_once = PTHREAD_ONCE_INIT;

static void nccl_env_set(void)
{
    setenv("NCCL_NVLS_ENABLE", "0", 1);
}

kiln_status comm_nccl_unique_id(uint8_t id[COMM_NCCL_ID_BYTES])
{
    ncclUniqueId u;
    kiln_status st = KILN_OK;

    pthread_once(&nccl_env_once, nccl_env_set);
    KILN_NCCL_CHECK(ncclGetUniqueId(&u));
    memcpy(id, u.internal, COMM_NCCL_ID_BYTES);
err:
    return st;
}

kiln_status comm_nccl_open(const uint8_t id[COMM_NCCL_ID_BYTES], int32_t rank, int32_t world,
                           backend *be, comm **out)
{
    comm_nccl *k = NULL;
    ncclUniqueId u;
    kiln_status st = KILN_OK;

    *out = NULL;
    if (!bk_is_cuda(be))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "comm nccl: the backend is not CUDA");
    if (world < 1 || rank < 0 || rank >= world)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "comm nccl: rank %d of world %d is invalid",
                            (int)rank, (int)world);
    if (!(k = kiln_calloc(1, sizeof *k)))
        return kiln_err_set(KILN_ERR_OOM, "comm nccl: out of memory");
    k->base.ops = &comm_nccl_ops;
    k->base.rank = rank;
    k->base.world = world;
    k->stream = cuda_of(be)->stream;
    memcpy(u.internal, id, COMM_NCCL_ID_BYTES);
    pthread_once(&nccl_env_once, nccl_env_set);
    KILN_CUDA_CHECK(cudaSetDevice(cuda_of(be)->device));
    KILN_NCCL_CHECK(ncclCommInitRank(&k->nc, world, u, rank));
    *out = &k->base;
    return KILN_OK;
err:
    kiln_free(k);
    return kiln_err_wrap(st, "comm nccl: rank %d of %d", (int)rank, (int)world);
}

#endif /* KILN_HAVE_NCCL */
