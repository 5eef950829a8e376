/*
 * tpool.c - pthread pool for data-parallel loops; see tpool.h.
 *
 * One job at a time.  A call publishes the job (fn, ctx, n, grain), sets
 * `pending` to the number of workers and bumps the generation counter
 * `gen`; every worker, on seeing a new generation, claims ranges from the
 * shared counter `next_range` until none are left, then checks out by
 * decrementing `pending`.  The caller claims ranges too, then waits for
 * pending == 0.
 *
 *   worker:  wait_gen --(gen != seen)--> run_ranges --> check out --+
 *               ^                                                   |
 *               +---------------------------------------------------+
 *
 * Invariants:
 *   1. The job fields are written only by the caller holding call_mu, and
 *      only while pending == 0, that is while no worker reads them.
 *   2. A worker reads the job fields only between seeing a new gen
 *      (acquire) and its check-out (release), so it never sees a half
 *      published job and the caller sees everything fn wrote.
 *   3. gen changes only under mu, and a sleeping worker tests gen under mu
 *      before waiting, so no wake-up is lost; likewise pending reaching 0
 *      is signalled under mu to a caller that tests it under mu.
 *   4. Range r covers [r * grain, min((r + 1) * grain, n)); ranges are
 *      numbered, not offset, so the claim counter cannot overflow size_t.
 */
#include "base/tpool.h"

#include "base/alloc.h"
#include "base/error.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

/* Polls of a shared counter before sleeping: a few tens of microseconds,
 * long enough to catch the next call of a loop of back-to-back calls. */
#define TPOOL_SPIN 4000
/* Padding keeps the hot counters on separate cache lines. */
#define TPOOL_PAD 64

typedef struct tpool_worker {
    tpool *pool;
    pthread_t thread;
    int idx;
} tpool_worker;

struct tpool {
    /* The job; see invariant 1. */
    tpool_fn fn;
    void *ctx;
    size_t n;
    size_t grain;
    size_t n_ranges;
    char pad0[TPOOL_PAD];
    atomic_size_t next_range; /* next range to claim */
    char pad1[TPOOL_PAD];
    atomic_int pending;       /* workers not yet checked out of gen */
    char pad2[TPOOL_PAD];
    atomic_uint gen;          /* bumped once per job and once at stop */
    atomic_bool stop;
    char pad3[TPOOL_PAD];
    pthread_mutex_t mu;       /* guards sleeping on work_cv / done_cv */
    pthread_cond_t work_cv;
    pthread_cond_t done_cv;
    pthread_mutex_t call_mu;  /* serializes callers from outside */
    bool sync_ok;             /* the four above are initialized */
    int size;                 /* threads per call, caller included */
    int started;              /* workers running */
    tpool_worker *workers;    /* [size - 1] */
};

/* Depth of fn calls on this thread (> 0: a call is nested) and the
 * thread's index in the pool it works for (0 for outside threads). */
static _Thread_local int tpool_tls_depth;
static _Thread_local int tpool_tls_idx;

static inline void tpool_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* ---- running ranges ------------------------------------------------------ */

static void tpool_run_range(tpool_fn fn, void *ctx, size_t n, size_t grain, size_t r, int idx)
{
    size_t begin = r * grain;
    size_t end = n - begin > grain ? begin + grain : n;

    tpool_tls_depth++;
    fn(ctx, begin, end, idx);
    tpool_tls_depth--;
}

static void tpool_run_claimed(tpool *p, int idx)
{
    for (;;) {
        size_t r = atomic_fetch_add_explicit(&p->next_range, 1, memory_order_relaxed);
        if (r >= p->n_ranges)
            return;
        tpool_run_range(p->fn, p->ctx, p->n, p->grain, r, idx);
    }
}

static void tpool_run_serial(tpool_fn fn, void *ctx, size_t n, size_t grain, int idx)
{
    size_t n_ranges = (n - 1) / grain + 1;

    for (size_t r = 0; r < n_ranges; r++)
        tpool_run_range(fn, ctx, n, grain, r, idx);
}

/* ---- workers ---------------------------------------------------------------- */

/* Wait until gen differs from seen: spin, then sleep.  Returns the new gen. */
static unsigned tpool_wait_gen(tpool *p, unsigned seen)
{
    unsigned g;

    for (int i = 0; i < TPOOL_SPIN; i++) {
        g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen)
            return g;
        tpool_cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen)
        pthread_cond_wait(&p->work_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void tpool_check_out(tpool *p)
{
    if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) != 1)
        return;
    pthread_mutex_lock(&p->mu);
    pthread_cond_signal(&p->done_cv);
    pthread_mutex_unlock(&p->mu);
}

static void *tpool_worker_main(void *arg)
{
    tpool_worker *w = arg;
    tpool *p = w->pool;
    unsigned seen = 0;

    tpool_tls_idx = w->idx;
    for (;;) {
        seen = tpool_wait_gen(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire))
            return NULL;
        tpool_run_claimed(p, w->idx);
        tpool_check_out(p);
    }
}

/* ---- the pool ----------------------------------------------------------------- */

static void tpool_stop_workers(tpool *p)
{
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->stop, true, memory_order_release);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->started; i++)
        pthread_join(p->workers[i].thread, NULL);
    p->started = 0;
}

static bool tpool_init_sync(tpool *p)
{
    return pthread_mutex_init(&p->mu, NULL) == 0 &&
           pthread_mutex_init(&p->call_mu, NULL) == 0 &&
           pthread_cond_init(&p->work_cv, NULL) == 0 &&
           pthread_cond_init(&p->done_cv, NULL) == 0;
}

static int tpool_default_size(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    if (cores < 1)
        return 1;
    return cores > TPOOL_MAX_THREADS ? TPOOL_MAX_THREADS : (int)cores;
}

kiln_status tpool_create(int n_threads, tpool **out)
{
    kiln_status st = KILN_ERR_OOM;
    tpool *p;
    int e;

    *out = NULL;
    if (n_threads <= 0)
        n_threads = tpool_default_size();
    if (n_threads > TPOOL_MAX_THREADS)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "tpool: %d threads asked, at most %d",
                            n_threads, TPOOL_MAX_THREADS);
    p = kiln_calloc(1, sizeof *p);
    if (!p)
        return kiln_err_set(KILN_ERR_OOM, "tpool: out of memory");
    p->size = n_threads;
    p->workers = kiln_calloc((size_t)n_threads, sizeof *p->workers);
    if (!p->workers || !(p->sync_ok = tpool_init_sync(p))) {
        kiln_err_set(KILN_ERR_OOM, "tpool: out of memory");
        goto err;
    }
    for (int i = 0; i < n_threads - 1; i++) {
        tpool_worker *w = &p->workers[i];
        w->pool = p;
        w->idx = i + 1;
        if ((e = pthread_create(&w->thread, NULL, tpool_worker_main, w)) != 0) {
            kiln_err_set(st, "tpool: cannot start thread %d of %d: %s", i + 1,
                         n_threads - 1, strerror(e));
            goto err;
        }
        p->started++;
    }
    *out = p;
    return KILN_OK;
err:
    tpool_free(p);
    return st;
}

void tpool_free(tpool *p)
{
    if (!p)
        return;
    if (p->started > 0)
        tpool_stop_workers(p);
    if (p->sync_ok) {
        pthread_cond_destroy(&p->done_cv);
        pthread_cond_destroy(&p->work_cv);
        pthread_mutex_destroy(&p->call_mu);
        pthread_mutex_destroy(&p->mu);
    }
    kiln_free(p->workers);
    kiln_free(p);
}

int tpool_size(const tpool *p) { return p->size; }

/* ---- a call ------------------------------------------------------------------- */

static void tpool_wait_done(tpool *p)
{
    for (int i = 0; i < TPOOL_SPIN; i++) {
        if (atomic_load_explicit(&p->pending, memory_order_acquire) == 0)
            return;
        tpool_cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) != 0)
        pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

static size_t tpool_auto_grain(size_t n, int size)
{
    size_t target = (size_t)size * 4; /* a few ranges per thread balance load */
    size_t grain = n / target + (n % target != 0);

    return grain ? grain : 1;
}

/* Publish a job to the workers (invariant 1: caller holds call_mu and
 * pending is 0). */
static void tpool_publish(tpool *p, size_t n, size_t grain, tpool_fn fn, void *ctx)
{
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->grain = grain;
    p->n_ranges = (n - 1) / grain + 1;
    atomic_store_explicit(&p->next_range, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, p->size - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
}

void tpool_parallel_for(tpool *p, size_t n, size_t grain, tpool_fn fn, void *ctx)
{
    if (n == 0)
        return;
    if (grain == 0)
        grain = tpool_auto_grain(n, p->size);
    if (tpool_tls_depth > 0) {
        tpool_run_serial(fn, ctx, n, grain, tpool_tls_idx);
        return;
    }
    pthread_mutex_lock(&p->call_mu);
    if (p->size == 1 || n <= grain) {
        tpool_run_serial(fn, ctx, n, grain, 0);
    } else {
        tpool_publish(p, n, grain, fn, ctx);
        tpool_run_claimed(p, 0);
        tpool_wait_done(p);
    }
    pthread_mutex_unlock(&p->call_mu);
}
