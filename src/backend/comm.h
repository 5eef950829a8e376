/*
 * comm.h - collectives over the ranks of a tensor-parallel group.
 *
 * A communicator is one rank's handle on a group of `world` ranks.  Every
 * rank of the group makes the same sequence of calls with the same sizes;
 * a call returns on a rank once that rank's part of the collective is done
 * (its buffers may be reused).  Buffers are backend memory of the rank's
 * backend (host memory on the CPU), `n` elements of `dtype` each.
 *
 * Implementations share this interface (comm_impl.h):
 *   - threads (comm.c): the ranks are threads of one process, buffers are
 *     host memory; the CPU tensor-parallel simulation and its tests.  Sums
 *     run in rank order 0, 1, ..., world - 1 for every element, so every
 *     rank gets bit-identical results whatever the thread timing.
 *   - processes (comm_shm.c): the ranks are processes of one host sharing
 *     a mapped file, buffers are host memory; CPU process groups.  The same
 *     rank-order sums as the threads.
 *   - NCCL (backend/cuda/comm_nccl.c, CUDA builds with NCCL): the ranks are
 *     GPUs, the collectives run on the backend's stream.
 *
 * Failure: a rank that fails between collectives calls comm_abort; every
 * collective of the group in progress or to come then returns
 * KILN_ERR_DEVICE on every rank instead of waiting for it, so no rank
 * hangs on a dead peer.
 *
 * Ownership: each comm is owned by the code that made it and released with
 * comm_free (NULL is a no-op); state the ranks share is freed with the last
 * of them.  A comm is used by one thread at a time.
 */
#ifndef KILN_BACKEND_COMM_H
#define KILN_BACKEND_COMM_H

#include "format/dtype.h"
#include "kiln.h"

#include <stdint.h>

typedef struct comm comm;

/* A group of `world` ranks that are threads of this process: comms[r] is
 * rank r's handle (owned, comm_free each; comms has world entries), to be
 * used by one thread per rank.  Element types: F32.  Errors:
 * KILN_ERR_INVALID_ARG (world < 1, naming it), KILN_ERR_OOM; nothing is
 * left allocated on error. */
kiln_status comm_threads_create(int32_t world, comm **comms);

/* Rank `rank` of a group of `world` (2..64) ranks that are processes of
 * one host, meeting in the file `path`, which every rank maps shared (put
 * it on a tmpfs such as /dev/shm or /tmp for speed).  Rank 0 creates it,
 * replacing what an earlier group left; the others wait up to timeout_s
 * for rank 0's file of the same `group` (a name the ranks agree on, such as
 * a hash of a random id rank 0 handed out).  F32; sums in rank order like
 * the threads communicator, so the results are the same bits.  Owned:
 * comm_free (rank 0's removes the file).  Errors: KILN_ERR_INVALID_ARG,
 * KILN_ERR_IO (the file; no group in time), KILN_ERR_OOM. */
kiln_status comm_shm_open(const char *path, uint64_t group, int32_t rank, int32_t world,
                          double timeout_s, comm **out);

/* Release one rank's handle; NULL is a no-op.  Must not be called while
 * that rank is inside a collective. */
void comm_free(comm *c);

int32_t comm_rank(const comm *c);
int32_t comm_world(const comm *c);
/* "threads", "shm", "nccl". */
const char *comm_kind(const comm *c);

/* buf[i] = sum over ranks of buf[i], i < n, on every rank (in place).
 * Errors: KILN_ERR_INVALID_ARG (n < 0, ranks disagreeing on n, a type the
 * implementation does not sum), KILN_ERR_DEVICE (the group was aborted or
 * the transport failed). */
kiln_status comm_all_reduce_sum(comm *c, void *buf, int64_t n, kiln_dtype dtype);

/* recv (world, n) = every rank's send (n), in rank order, on every rank;
 * send and recv must not overlap.  Errors as comm_all_reduce_sum. */
kiln_status comm_all_gather(comm *c, const void *send, int64_t n, kiln_dtype dtype,
                            void *recv);

/* KILN_OK while the group is healthy; KILN_ERR_DEVICE once it was aborted
 * or the transport reports a failure (NCCL's asynchronous errors).  Safe
 * from another thread while the rank is inside a collective. */
kiln_status comm_check(comm *c);

/* Mark the group failed (see the file comment).  Safe from any rank's
 * thread at any time, also while other ranks wait in a collective. */
void comm_abort(comm *c);

#endif /* KILN_BACKEND_COMM_H */
