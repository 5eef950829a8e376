/*
 * tpool.h - a pthread pool for data-parallel loops.
 *
 * tpool_parallel_for(pool, n, grain, fn, ctx) splits [0, n) into contiguous
 * ranges of `grain` indices (the last one shorter) and calls
 * fn(ctx, begin, end, thread_idx) once per range, on the pool's worker
 * threads and on the calling thread, which takes part as thread 0.  It
 * returns when every range is done; whatever fn wrote is then visible to
 * the caller.  A call allocates nothing; idle workers spin briefly for the
 * next call, then sleep on a condition variable.
 *
 * thread_idx is in [0, tpool_size(pool)) and no two ranges run at the same
 * time with the same thread_idx, so fn may index per-thread scratch by it.
 *
 * Every path keeps the range contract (end - begin <= grain), so fn may
 * size scratch by grain.
 *
 * Nested calls: a tpool_parallel_for() made from inside fn (on any pool)
 * runs serially on the calling thread, range after range, passing that
 * thread's own thread_idx (in range for the pool it is a thread of).  Calls
 * from several outside threads on one pool are serialized.
 */
#ifndef KILN_BASE_TPOOL_H
#define KILN_BASE_TPOOL_H

#include "kiln.h"

#include <stddef.h>

typedef struct tpool tpool;

/* Largest pool tpool_create() accepts. */
#define TPOOL_MAX_THREADS 1024

/* Body of a parallel loop: handles indices [begin, end). */
typedef void (*tpool_fn)(void *ctx, size_t begin, size_t end, int thread_idx);

/* Make a pool of n_threads threads counting the caller (n_threads - 1
 * workers are started); n_threads <= 0 means one per online core.  On
 * success *out is owned: tpool_free() it.  Errors: KILN_ERR_INVALID_ARG
 * (more than TPOOL_MAX_THREADS), KILN_ERR_OOM (memory or a thread could
 * not be started); *out is NULL then. */
kiln_status tpool_create(int n_threads, tpool **out);

/* Stop and join the workers, free the pool; NULL is a no-op.  Must not be
 * called while a tpool_parallel_for() on the pool is running. */
void tpool_free(tpool *pool);

/* Threads taking part in a call, the caller included (>= 1). */
int tpool_size(const tpool *pool);

/* Run fn over [0, n) in ranges of `grain` indices (0: chosen so that each
 * thread gets a few ranges) and wait for all of them.  n == 0 calls
 * nothing.  Cannot fail. */
void tpool_parallel_for(tpool *pool, size_t n, size_t grain, tpool_fn fn, void *ctx);

#endif /* KILN_BASE_TPOOL_H */
