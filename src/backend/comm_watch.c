/*
 * comm_watch.c - the liveness watch of a process group (comm_watch.h).
 *
 * Registration file FILE.rank<R>, one line: "<group> <pid> <start>
 * <state>", group the 16 hex digits of the group's name, start is the process's start time in clock ticks since boot (field 22 of
 * /proc/<pid>/stat; 0 where /proc is missing) so a recycled pid is not
 * taken for the peer, and state is "up" or "done".  Files are written
 * whole and renamed into place, so a reader sees the old line or the new.
 *
 * A peer is
 *   - finished: its file says "done", or its file was seen and is gone (a
 *     finished rank removes its file); finished for longer than the start
 *     timeout while this rank is not is a failure too (the ranks were given
 *     different work: this one waits in a collective no one else joins);
 *   - failed: its file says "up" and no process with that pid and start
 *     time exists; or no file was ever seen by the start timeout;
 *   - running otherwise.
 * A file of another group is read as no file.
 */
#include "backend/comm_watch.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define WATCH_MAX_PATH 4200

struct comm_watch {
    char prefix[WATCH_MAX_PATH];
    uint64_t group;
    int32_t rank, world;
    comm_watch_opts o;
    unsigned long long start; /* this process's start time (ticks) */
    uint64_t t0;              /* clock_now_ns() at start           */
    bool *seen;               /* (world) a peer's file was read once */
    long *expect;             /* (world) comm_watch_expect's pids, 0: none */
    double *done_at;          /* (world) seconds after start a peer was first
                                 seen finished; < 0: not yet            */

    pthread_t th;
    bool th_started;
    pthread_mutex_t mu;       /* guards c, stop, why                 */
    pthread_cond_t cv;
    comm *c;
    bool stop, finished;
    atomic_bool failed;
    char why[512];
};

void comm_watch_opts_default(comm_watch_opts *o)
{
    o->period_s = 0.2;
    o->start_timeout_s = 120.0;
    o->grace_s = 30.0;
}

/* The start time (clock ticks since boot) of process pid, 0 when unknown,
 * and its state letter ('Z': a zombie, exited but not yet reaped; '?' when
 * unknown). */
static unsigned long long proc_start(pid_t pid, char *state)
{
    char path[64], buf[1024];
    unsigned long long start = 0;
    FILE *f;
    size_t n;

    if (state)
        *state = '?';
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    if (!(f = fopen(path, "r")))
        return 0;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* the command name (field 2) may hold spaces and parentheses: fields
     * after the last ')' are plain; the state is the first of them (field
     * 3), the start time the 20th (field 22) */
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || !p[2])
        return 0;
    if (state)
        *state = p[2];
    p++;
    for (int field = 3; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    if (p)
        start = strtoull(p + 1, NULL, 10);
    return start;
}

/* Whether process pid (started at `start` ticks; 0: unknown) has exited:
 * no such process, a zombie (exited, not yet reaped: a rank this process
 * started), or the pid now names another process. */
static bool pid_gone(pid_t pid, unsigned long long start)
{
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return true;
    char st = '?';
    unsigned long long now = proc_start(pid, &st);
    return st == 'Z' || st == 'X' || (start && now && now != start);
}

static void rank_path(const comm_watch *w, int32_t rank, char *out, size_t cap)
{
    snprintf(out, cap, "%s.rank%d", w->prefix, (int)rank);
}

static kiln_status write_state(comm_watch *w, const char *state)
{
    char path[WATCH_MAX_PATH + 16], tmp[WATCH_MAX_PATH + 48];
    FILE *f;

    rank_path(w, w->rank, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    if (!(f = fopen(tmp, "w")))
        return kiln_err_set(KILN_ERR_IO, "tensor-parallel watch: %s: %s", tmp, strerror(errno));
    int bad = fprintf(f, "%016llx %ld %llu %s\n", (unsigned long long)w->group, (long)getpid(),
                      w->start, state) < 0;
    if (fclose(f) || bad || rename(tmp, path)) {
        int e = errno;
        remove(tmp);
        return kiln_err_set(KILN_ERR_IO, "tensor-parallel watch: %s: %s", path, strerror(e));
    }
    return KILN_OK;
}

/* Record the failure (the first one wins) and abort the communicator.
 * Called with mu held. */
static void watch_fail(comm_watch *w, const char *why)
{
    if (atomic_load(&w->failed))
        return;
    snprintf(w->why, sizeof w->why, "%s", why);
    atomic_store(&w->failed, true);
    KILN_LOG_E("tensor-parallel rank %d: %s; aborting the group", (int)w->rank, why);
    if (w->c)
        comm_abort(w->c);
}

/* Peer r is finished while this rank is not: fine for a moment (the ranks
 * end the same step at about the same time), a failure after the start
 * timeout - this rank waits in a collective the peer never joins (ranks
 * given different work). */
static bool peer_done(comm_watch *w, int32_t r, double up_s, char *why, size_t cap)
{
    if (w->done_at[r] < 0)
        w->done_at[r] = up_s;
    if (up_s - w->done_at[r] <= w->o.start_timeout_s)
        return true;
    snprintf(why, cap, "rank %d finished %.1f s ago and this rank has not: the ranks were "
             "given different work", (int)r, up_s - w->done_at[r]);
    return false;
}

/* One pass over the peers; a failure's message into why. */
static bool peers_ok(comm_watch *w, char *why, size_t cap)
{
    double up_s = (double)(clock_now_ns() - w->t0) * 1e-9;

    for (int32_t r = 0; r < w->world; r++) {
        char path[WATCH_MAX_PATH + 16], state[16] = "";
        long pid = 0;
        unsigned long long start = 0, group = 0;
        int got = -1; /* no registration of this group */
        FILE *f;

        if (r == w->rank)
            continue;
        rank_path(w, r, path, sizeof path);
        if ((f = fopen(path, "r"))) {
            got = fscanf(f, "%16llx %ld %llu %15s", &group, &pid, &start, state);
            fclose(f);
            if (got == 4 && group != w->group)
                got = -1; /* another group's (an earlier run): as if there were none */
        }
        if (got < 0 && w->seen[r]) { /* finished and gone */
            if (!peer_done(w, r, up_s, why, cap))
                return false;
            continue;
        }
        if (got < 0) {
            if (!w->seen[r] && w->expect[r] > 0 && pid_gone((pid_t)w->expect[r], 0)) {
                snprintf(why, cap, "rank %d (process %ld) exited before it joined", (int)r,
                         w->expect[r]);
                return false;
            }
            if (!w->seen[r] && up_s > w->o.start_timeout_s) {
                snprintf(why, cap, "rank %d did not join within %.1f s (no registration "
                         "%.300s)", (int)r, w->o.start_timeout_s, path);
                return false;
            }
            continue; /* not yet, or finished and gone */
        }
        if (got != 4 || pid <= 0)
            continue; /* written by someone else; judged on the next pass */
        w->seen[r] = true;
        if (!strcmp(state, "done")) {
            if (!peer_done(w, r, up_s, why, cap))
                return false;
            continue;
        }
        if (pid_gone((pid_t)pid, start)) {
            snprintf(why, cap, "rank %d (process %ld) exited before the group finished",
                     (int)r, pid);
            return false;
        }
    }
    return true;
}

static void *watch_main(void *arg)
{
    comm_watch *w = arg;
    char why[512];

    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct timespec ts;
        clock_deadline(&ts, w->o.period_s);
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        if (w->stop || w->finished)
            continue;
        if (!atomic_load(&w->failed)) {
            bool ok = peers_ok(w, why, sizeof why);
            if (ok && w->c && comm_check(w->c) != KILN_OK) {
                snprintf(why, sizeof why, "the communicator failed: %s", kiln_last_error());
                ok = false;
            }
            if (!ok)
                watch_fail(w, why);
            continue;
        }
        /* failed and aborted: give the process grace_s to end by itself */
        if (w->o.grace_s <= 0)
            continue;
        clock_deadline(&ts, w->o.grace_s);
        while (!w->stop && !w->finished &&
               pthread_cond_timedwait(&w->cv, &w->mu, &ts) != ETIMEDOUT) {
        }
        if (!w->stop && !w->finished) {
            fprintf(stderr, "kiln: tensor-parallel rank %d: %s; still running %.1f s after "
                            "the abort, exiting\n", (int)w->rank, w->why, w->o.grace_s);
            _exit(1);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

kiln_status comm_watch_start(const char *prefix, uint64_t group, int32_t rank, int32_t world,
                             const comm_watch_opts *o, comm_watch **out)
{
    comm_watch *w;
    kiln_status st;

    *out = NULL;
    if (!prefix || !*prefix || strlen(prefix) >= WATCH_MAX_PATH || world < 2 || rank < 0 ||
        rank >= world)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "tensor-parallel watch: rank %d of %d under "
                            "'%s' (world 2 or more, rank below it, a path)",
                            (int)rank, (int)world, prefix ? prefix : "(null)");
    if (!(w = kiln_calloc(1, sizeof *w)) || !(w->seen = kiln_calloc((size_t)world, 1)) ||
        !(w->expect = kiln_calloc((size_t)world, sizeof *w->expect)) ||
        !(w->done_at = kiln_calloc((size_t)world, sizeof *w->done_at))) {
        if (w) {
            kiln_free(w->seen);
            kiln_free(w->expect);
        }
        kiln_free(w);
        return kiln_err_set(KILN_ERR_OOM, "tensor-parallel watch: out of memory");
    }
    for (int32_t r = 0; r < world; r++)
        w->done_at[r] = -1.0;
    if (o)
        w->o = *o;
    else
        comm_watch_opts_default(&w->o);
    if (!(w->o.period_s > 0) || !(w->o.start_timeout_s >= 0) || !(w->o.grace_s >= 0)) {
        st = kiln_err_set(KILN_ERR_INVALID_ARG, "tensor-parallel watch: period %g s, start "
                          "timeout %g s, grace %g s (period > 0, the others >= 0)",
                          w->o.period_s, w->o.start_timeout_s, w->o.grace_s);
        kiln_free(w->done_at);
        kiln_free(w->expect);
        kiln_free(w->seen);
        kiln_free(w);
        return st;
    }
    snprintf(w->prefix, sizeof w->prefix, "%s", prefix);
    w->group = group;
    w->rank = rank;
    w->world = world;
    w->start = proc_start(getpid(), NULL);
    w->t0 = clock_now_ns();
    atomic_init(&w->failed, false);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if ((st = write_state(w, "up"))) {
        comm_watch_free(w);
        return st;
    }
    if (pthread_create(&w->th, NULL, watch_main, w)) {
        comm_watch_free(w);
        return kiln_err_set(KILN_ERR_OOM, "tensor-parallel watch: cannot start its thread");
    }
    w->th_started = true;
    *out = w;
    return KILN_OK;
}

void comm_watch_expect(comm_watch *w, int32_t rank, long pid)
{
    if (rank < 0 || rank >= w->world || rank == w->rank)
        return;
    pthread_mutex_lock(&w->mu);
    w->expect[rank] = pid;
    pthread_mutex_unlock(&w->mu);
}

void comm_watch_set_comm(comm_watch *w, comm *c)
{
    pthread_mutex_lock(&w->mu);
    w->c = c;
    if (c && atomic_load(&w->failed))
        comm_abort(c);
    pthread_mutex_unlock(&w->mu);
}

bool comm_watch_failed(comm_watch *w, char *why, size_t cap)
{
    if (!atomic_load(&w->failed))
        return false;
    if (why && cap) {
        pthread_mutex_lock(&w->mu);
        snprintf(why, cap, "%s", w->why);
        pthread_mutex_unlock(&w->mu);
    }
    return true;
}

kiln_status comm_watch_finish(comm_watch *w)
{
    kiln_status st;

    pthread_mutex_lock(&w->mu);
    w->finished = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if ((st = write_state(w, "done")))
        return st;
    return KILN_OK;
}

/* Rank r's registration: its state ("up", "done") into state[16], or
 * false when there is none of this group. */
static bool read_state(const comm_watch *w, int32_t r, char state[16])
{
    char path[WATCH_MAX_PATH + 16];
    unsigned long long group = 0, start = 0;
    long pid = 0;
    FILE *f;

    rank_path(w, r, path, sizeof path);
    if (!(f = fopen(path, "r")))
        return false;
    int got = fscanf(f, "%16llx %ld %llu %15s", &group, &pid, &start, state);
    fclose(f);
    return got == 4 && group == w->group;
}

/* A finished rank's files: a "done" registration stays until rank 0 has
 * finished too (a peer that lives a moment longer must still read it as
 * finished, not as never joined); rank 0 removes its own and every "done"
 * one, a later finisher its own once rank 0's is gone. */
static void watch_cleanup(comm_watch *w)
{
    char path[WATCH_MAX_PATH + 16], state[16];

    if (w->rank == 0) {
        for (int32_t r = 1; r < w->world; r++)
            if (read_state(w, r, state) && !strcmp(state, "done")) {
                rank_path(w, r, path, sizeof path);
                remove(path);
            }
    } else if (read_state(w, 0, state)) {
        return; /* rank 0 removes it */
    }
    rank_path(w, w->rank, path, sizeof path);
    remove(path);
}

void comm_watch_free(comm_watch *w)
{
    if (!w)
        return;
    if (w->th_started) {
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->th, NULL);
    }
    if (w->finished)
        watch_cleanup(w);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    kiln_free(w->done_at);
    kiln_free(w->expect);
    kiln_free(w->seen);
    kiln_free(w);
}
