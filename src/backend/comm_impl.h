/*
 * comm_impl.h - the inside of a communicator, for its implementations
 * (comm.c: threads; backend/cuda/comm_nccl.c: NCCL).  Every
 * implementation's struct starts with a `comm` and fills its ops.
 */
#ifndef KILN_BACKEND_COMM_IMPL_H
#define KILN_BACKEND_COMM_IMPL_H

#include "backend/comm.h"

typedef struct comm_ops {
    const char *kind;
    void (*free)(comm *c);
    /* n >= 0 and the pointers checked by the caller (comm.c) */
    kiln_status (*all_reduce_sum)(comm *c, void *buf, int64_t n, kiln_dtype dtype);
    kiln_status (*all_gather)(comm *c, const void *send, int64_t n, kiln_dtype dtype,
                              void *recv);
    void (*abort)(comm *c);
    /* KILN_OK, or the error the transport reports (asynchronous failures);
     * callable from another thread while the rank is in a collective */
    kiln_status (*check)(comm *c);
} comm_ops;

struct comm {
    const comm_ops *ops;
    int32_t rank, world;
};

/* Checks the host-memory groups (threads, shm) share (comm.c). */
/* KILN_ERR_INVALID_ARG naming op unless n[0..world) are all equal (each
 * rank's element count, read between a collective's barriers). */
kiln_status comm_counts_agree(const int64_t *n, int32_t world, const char *op);
/* KILN_ERR_INVALID_ARG naming op and the group ("thread group") unless
 * dtype is F32. */
kiln_status comm_f32_only(kiln_dtype dtype, const char *op, const char *group);

#endif /* KILN_BACKEND_COMM_IMPL_H */
