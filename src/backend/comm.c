/*
 * comm.c - the communicator interface (argument checks, dispatch) and its
 * thread implementation: the ranks of a group are threads of one process
 * sharing a comm_shared.
 *
 * A collective is two barriers around a copy or a sum:
 *
 *   publish my pointers in slot[rank] -> barrier A -> read every slot,
 *   write my part -> barrier B -> return
 *
 * Invariants:
 *   1. slot[r] is written only by rank r, and only outside [A, B] of any
 *      collective, so between A and B every rank reads stable pointers.
 *   2. All-reduce: element i belongs to one rank (the world-th part of
 *      [0, n) that holds i); that rank alone reads buf_q[i] of every rank q
 *      and writes their sum, taken in rank order, back to all of them.
 *      No element is read by one rank while another writes it.
 *   3. All-gather: each rank writes only its own recv; sends are only read.
 *   4. Once `aborted` is set it stays set; a barrier tests it under mu
 *      before and after each wait, and comm_abort broadcasts under mu, so
 *      no rank sleeps through an abort.
 */
#include "backend/comm_impl.h"

#include "base/alloc.h"
#include "base/error.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

/* ---- the interface ----------------------------------------------------------- */

void comm_free(comm *c)
{
    if (c)
        c->ops->free(c);
}

int32_t comm_rank(const comm *c) { return c->rank; }

int32_t comm_world(const comm *c) { return c->world; }

const char *comm_kind(const comm *c) { return c->ops->kind; }

kiln_status comm_all_reduce_sum(comm *c, void *buf, int64_t n, kiln_dtype dtype)
{
    if (!c || n < 0 || (n > 0 && !buf))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "comm all-reduce: bad arguments (n=%lld)",
                            (long long)n);
    return c->ops->all_reduce_sum(c, buf, n, dtype);
}

kiln_status comm_all_gather(comm *c, const void *send, int64_t n, kiln_dtype dtype, void *recv)
{
    if (!c || n < 0 || (n > 0 && (!send || !recv)))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "comm all-gather: bad arguments (n=%lld)",
                            (long long)n);
    return c->ops->all_gather(c, send, n, dtype, recv);
}

void comm_abort(comm *c)
{
    if (c)
        c->ops->abort(c);
}

kiln_status comm_check(comm *c)
{
    if (!c)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "comm check: no communicator");
    return c->ops->check ? c->ops->check(c) : KILN_OK;
}

/* ---- threads of one process -------------------------------------------------- */

/* What rank r published for the collective in progress (invariant 1). */
typedef struct comm_slot {
    void *buf;            /* all-reduce: the rank's buffer       */
    const void *send;     /* all-gather: the rank's contribution */
} comm_slot;

typedef struct comm_shared {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int32_t world;
    int32_t refs;         /* handles not yet freed                */
    int32_t arrived;      /* ranks at the current barrier         */
    uint64_t gen;         /* barriers completed                   */
    bool aborted;         /* invariant 4                          */
    int32_t abort_rank;
    comm_slot *slot;      /* (world)                              */
    int64_t *n;           /* (world) each rank's element count    */
} comm_shared;

typedef struct comm_thread {
    comm base;
    comm_shared *sh;
} comm_thread;

static comm_shared *comm_sh(comm *c)
{
    return ((comm_thread *)c)->sh;
}

static kiln_status comm_aborted_err(const comm_shared *sh)
{
    return kiln_err_set(KILN_ERR_DEVICE, "comm: rank %d of %d failed; the group is aborted",
                        (int)sh->abort_rank, (int)sh->world);
}

/* Wait until every rank has arrived; KILN_ERR_DEVICE once aborted. */
static kiln_status comm_barrier(comm_shared *sh)
{
    kiln_status st = KILN_OK;

    pthread_mutex_lock(&sh->mu);
    if (sh->aborted) {
        st = comm_aborted_err(sh);
    } else if (++sh->arrived == sh->world) {
        sh->arrived = 0;
        sh->gen++;
        pthread_cond_broadcast(&sh->cv);
    } else {
        uint64_t gen = sh->gen;
        while (sh->gen == gen && !sh->aborted)
            pthread_cond_wait(&sh->cv, &sh->mu);
        if (sh->gen == gen)
            st = comm_aborted_err(sh);
    }
    pthread_mutex_unlock(&sh->mu);
    return st;
}

kiln_status comm_counts_agree(const int64_t *n, int32_t world, const char *op)
{
    for (int32_t q = 1; q < world; q++)
        if (n[q] != n[0])
            return kiln_err_set(KILN_ERR_INVALID_ARG,
                                "comm %s: rank 0 gives %lld elements, rank %d gives %lld", op,
                                (long long)n[0], (int)q, (long long)n[q]);
    return KILN_OK;
}

kiln_status comm_f32_only(kiln_dtype dtype, const char *op, const char *group)
{
    if (dtype != KILN_DT_F32)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "comm %s: the %s sums F32, not %s", op, group,
                            dtype_name(dtype));
    return KILN_OK;
}

static kiln_status comm_threads_all_reduce(comm *c, void *buf, int64_t n, kiln_dtype dtype)
{
    comm_shared *sh = comm_sh(c);
    int32_t r = c->rank, w = c->world;
    kiln_status st, st2;

    if ((st = comm_f32_only(dtype, "all-reduce", "thread group")))
        return st;
    sh->slot[r].buf = buf;
    sh->n[r] = n;
    if ((st = comm_barrier(sh)))
        return st;
    if (!(st = comm_counts_agree(sh->n, w, "all-reduce"))) {
        /* this rank's part of [0, n), summed in rank order (invariant 2) */
        int64_t lo = n * r / w, hi = n * (r + 1) / w;
        for (int64_t i = lo; i < hi; i++) {
            float s = ((const float *)sh->slot[0].buf)[i];
            for (int32_t q = 1; q < w; q++)
                s += ((const float *)sh->slot[q].buf)[i];
            for (int32_t q = 0; q < w; q++)
                ((float *)sh->slot[q].buf)[i] = s;
        }
    }
    st2 = comm_barrier(sh);
    return st ? st : st2;
}

static kiln_status comm_threads_all_gather(comm *c, const void *send, int64_t n,
                                           kiln_dtype dtype, void *recv)
{
    comm_shared *sh = comm_sh(c);
    kiln_status st, st2;

    if ((st = comm_f32_only(dtype, "all-gather", "thread group")))
        return st;
    sh->slot[c->rank].send = send;
    sh->n[c->rank] = n;
    if ((st = comm_barrier(sh)))
        return st;
    if (!(st = comm_counts_agree(sh->n, c->world, "all-gather")))
        for (int32_t q = 0; q < c->world; q++)
            memcpy((float *)recv + (size_t)q * (size_t)n, sh->slot[q].send,
                   (size_t)n * sizeof(float));
    st2 = comm_barrier(sh);
    return st ? st : st2;
}

static void comm_threads_abort(comm *c)
{
    comm_shared *sh = comm_sh(c);
    pthread_mutex_lock(&sh->mu);
    if (!sh->aborted) {
        sh->aborted = true;
        sh->abort_rank = c->rank;
    }
    pthread_cond_broadcast(&sh->cv);
    pthread_mutex_unlock(&sh->mu);
}

static kiln_status comm_threads_check(comm *c)
{
    comm_shared *sh = comm_sh(c);
    kiln_status st = KILN_OK;
    pthread_mutex_lock(&sh->mu);
    if (sh->aborted)
        st = comm_aborted_err(sh);
    pthread_mutex_unlock(&sh->mu);
    return st;
}

static void comm_shared_free(comm_shared *sh)
{
    pthread_cond_destroy(&sh->cv);
    pthread_mutex_destroy(&sh->mu);
    kiln_free(sh->slot);
    kiln_free(sh->n);
    kiln_free(sh);
}

static void comm_threads_free(comm *c)
{
    comm_shared *sh = comm_sh(c);
    bool last;
    pthread_mutex_lock(&sh->mu);
    last = --sh->refs == 0;
    pthread_mutex_unlock(&sh->mu);
    if (last)
        comm_shared_free(sh);
    kiln_free(c);
}

static const comm_ops comm_threads_ops = {
    .kind = "threads",
    .free = comm_threads_free,
    .all_reduce_sum = comm_threads_all_reduce,
    .all_gather = comm_threads_all_gather,
    .abort = comm_threads_abort,
    .check = comm_threads_check,
};

kiln_status comm_threads_create(int32_t world, comm **comms)
{
    comm_shared *sh;

    if (world < 1 || !comms)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "comm: world size %d is < 1", (int)world);
    if (!(sh = kiln_calloc(1, sizeof *sh)))
        return kiln_err_set(KILN_ERR_OOM, "comm: out of memory");
    if (!(sh->slot = kiln_calloc((size_t)world, sizeof *sh->slot)) ||
        !(sh->n = kiln_calloc((size_t)world, sizeof *sh->n))) {
        kiln_free(sh->slot);
        kiln_free(sh);
        return kiln_err_set(KILN_ERR_OOM, "comm: out of memory");
    }
    pthread_mutex_init(&sh->mu, NULL);
    pthread_cond_init(&sh->cv, NULL);
    sh->world = world;
    for (int32_t r = 0; r < world; r++) {
        comm_thread *t = kiln_calloc(1, sizeof *t);
        if (!t) {
            for (int32_t q = 0; q < r; q++)
                kiln_free(comms[q]);
            comm_shared_free(sh);
            return kiln_err_set(KILN_ERR_OOM, "comm: out of memory");
        }
        t->base.ops = &comm_threads_ops;
        t->base.rank = r;
        t->base.world = world;
        t->sh = sh;
        comms[r] = &t->base;
    }
    sh->refs = world;
    return KILN_OK;
}
