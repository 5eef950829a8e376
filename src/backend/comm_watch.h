/*
 * comm_watch.h - liveness of the processes of a tensor-parallel group.
 *
 * Ranks that are processes (one per GPU, `kiln run --tp-rank R --tp-world
 * N --tp-id FILE`) block in collectives that never finish when a peer
 * dies.  Each rank runs a watch: it registers the process in a small file
 * beside the group's id file (FILE.rank<R>: group, pid, process start
 * time, state) and a thread checks every peer's file and process a few times a
 * second.  A peer whose process is gone without having finished, a peer
 * that has not joined by the start timeout, a peer finished for longer
 * than that while this rank still runs, or an error the communicator
 * reports (comm_check) fails the group: the watch logs what happened,
 * aborts the communicator (every collective in progress or to come returns
 * KILN_ERR_DEVICE) and, if the process is still running after a grace
 * period, ends it (_exit(1)) so that nothing hangs.
 *
 * The processes must share a host (the files and process ids are local).
 *
 * Ownership: comm_watch_start's watch is the caller's, released with
 * comm_watch_free; the communicator given to comm_watch_set_comm is
 * borrowed and must outlive the watch.
 */
#ifndef KILN_BACKEND_COMM_WATCH_H
#define KILN_BACKEND_COMM_WATCH_H

#include "backend/comm.h"
#include "kiln.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct comm_watch comm_watch;

typedef struct comm_watch_opts {
    double period_s;        /* between checks (0.2)                                    */
    double start_timeout_s; /* a peer that has not registered by then failed, and
                               one finished that long before this rank (120)      */
    double grace_s;         /* after the abort, _exit(1) if still running then (30); 0:
                               never (tests)                                             */
} comm_watch_opts;

void comm_watch_opts_default(comm_watch_opts *o);

/* Register rank `rank` of `world` (this process) under `prefix` (the
 * group's id file path) and start watching the others.  `group` names this
 * group (a hash of its NCCL id, the same on every rank): registrations
 * under the same prefix from another group (an earlier run that crashed)
 * are taken for "not joined yet".  o NULL: defaults.
 * Errors: KILN_ERR_INVALID_ARG (world < 2, rank outside it, no prefix, bad
 * options), KILN_ERR_IO (the registration file cannot be written),
 * KILN_ERR_OOM (also: no thread). */
kiln_status comm_watch_start(const char *prefix, uint64_t group, int32_t rank, int32_t world,
                             const comm_watch_opts *o, comm_watch **out);

/* Rank `rank` is process `pid` (one this process started): if it ends
 * before it registers, that fails the group at once instead of at the
 * start timeout. */
void comm_watch_expect(comm_watch *w, int32_t rank, long pid);

/* The communicator to abort and to check from now on (NULL: none yet; a
 * failure before one is set goes straight to the grace period). */
void comm_watch_set_comm(comm_watch *w, comm *c);

/* Whether the group failed; why (a message naming the rank) into
 * why[cap] when it did. */
bool comm_watch_failed(comm_watch *w, char *why, size_t cap);

/* This rank finished its part: peers that outlive it do not count its
 * exit as a failure. */
kiln_status comm_watch_finish(comm_watch *w);

/* Stop the thread.  A finished rank's registration is removed once rank 0
 * has finished too (rank 0 removes every finished one; a rank finishing
 * after rank 0 removes its own), an unfinished one's stays (its peers then
 * see the process gone).  NULL is a no-op. */
void comm_watch_free(comm_watch *w);

#endif /* KILN_BACKEND_COMM_WATCH_H */
