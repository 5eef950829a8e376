/*
 * test_comm_watch.c - the liveness watch of a process group: a dead peer
 * process, a peer that never joins, a peer that finishes first, and a
 * process stuck after the abort all end without a hang.
 *
 * Peers are forked processes that register as ranks (forked before this
 * process starts any thread).  A rank "blocked in a collective" is this
 * process waiting in comm_all_reduce_sum on a threads communicator whose
 * other rank never arrives: only the watch's abort can release it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "backend/comm.h"
#include "backend/comm_watch.h"
#include "base/clock.h"
#include "base/error.h"
#include "kiln_test.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define GROUP 0x5eedf00d12345678ull

static comm_watch_opts fast(double start_timeout_s)
{
    comm_watch_opts o;
    comm_watch_opts_default(&o);
    o.period_s = 0.02;
    o.start_timeout_s = start_timeout_s;
    o.grace_s = 0; /* the test process is never _exit'ed */
    return o;
}

/* A child that registers as `rank` of `world` under prefix after delay_s,
 * lives for live_s, then finishes properly (finish) or just exits (a
 * crash).  Called while this process has no other thread. */
static pid_t peer(const char *prefix, int32_t rank, int32_t world, double delay_s, double live_s,
                  bool finish)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        comm_watch_opts o = fast(60);
        comm_watch *w = NULL;
        usleep((useconds_t)(delay_s * 1e6));
        if (comm_watch_start(prefix, GROUP, rank, world, &o, &w))
            _exit(2);
        usleep((useconds_t)(live_s * 1e6));
        if (finish) {
            if (comm_watch_finish(w))
                _exit(2);
            comm_watch_free(w);
            _exit(0);
        }
        _exit(3); /* no finish: the registration stays "up" */
    }
    return pid;
}

static int child_status(pid_t pid)
{
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A collective that only an abort ends: KILN_ERR_DEVICE, and the seconds
 * it took. */
static double blocked_collective(comm *c)
{
    float v = 1.0f;
    uint64_t t0 = clock_now_ns();
    assert_int_equal(comm_all_reduce_sum(c, &v, 1, KILN_DT_F32), KILN_ERR_DEVICE);
    return (double)(clock_now_ns() - t0) * 1e-9;
}

/* One test's rank 0: a directory for the group's files, then a threads
 * communicator of `world` ranks (rank 0's handle watched; the others never
 * arrive, so only an abort ends a collective) and rank 0's watch. */
typedef struct watch_fx {
    char dir[256], prefix[300];
    int world;
    comm *cs[3];
    comm_watch *w;
} watch_fx;

static void fx_dir(watch_fx *f)
{
    memset(f, 0, sizeof *f);
    kt_mkdtemp(f->dir, sizeof f->dir, "watch");
    snprintf(f->prefix, sizeof f->prefix, "%s/id", f->dir);
}

static void fx_start(watch_fx *f, int world, double start_timeout_s)
{
    comm_watch_opts o = fast(start_timeout_s);
    f->world = world;
    assert_int_equal(comm_threads_create(world, f->cs), KILN_OK);
    assert_int_equal(comm_watch_start(f->prefix, GROUP, 0, world, &o, &f->w), KILN_OK);
    comm_watch_set_comm(f->w, f->cs[0]);
}

static void fx_free(watch_fx *f)
{
    comm_watch_free(f->w);
    for (int r = 0; r < f->world; r++)
        comm_free(f->cs[r]);
    kt_rmtree(f->dir);
}

static void test_dead_peer_aborts(void **state)
{
    char why[512];
    watch_fx f;
    (void)state;

    fx_dir(&f);
    pid_t p = peer(f.prefix, 1, 2, 0, 0.3, false); /* joins, then dies unfinished */
    fx_start(&f, 2, 30);
    alarm(60); /* a hang fails the test */
    double s = blocked_collective(f.cs[0]);
    alarm(0);
    assert_true(s < 20);
    assert_true(comm_watch_failed(f.w, why, sizeof why));
    print_message("released after %.2f s: %s\n", s, why);
    assert_non_null(strstr(why, "rank 1"));
    assert_non_null(strstr(why, "exited before the group finished"));
    assert_int_equal(comm_check(f.cs[0]), KILN_ERR_DEVICE);
    assert_int_equal(child_status(p), 3);
    fx_free(&f);
}

static void test_peer_never_joins(void **state)
{
    char path[320], why[512];
    watch_fx f;
    (void)state;

    fx_dir(&f);
    pid_t p = peer(f.prefix, 1, 3, 0, 30, true); /* rank 1 joins and lives; rank 2 never comes */
    snprintf(path, sizeof path, "%s.rank1", f.prefix);
    for (int i = 0; i < 1000 && !kt_exists(path); i++) /* rank 1 is in before the clock runs */
        usleep(10 * 1000);
    fx_start(&f, 3, 0.5);
    alarm(60);
    double s = blocked_collective(f.cs[0]);
    alarm(0);
    assert_true(s >= 0.4 && s < 20);
    assert_true(comm_watch_failed(f.w, why, sizeof why));
    assert_non_null(strstr(why, "rank 2 did not join"));
    kill(p, SIGKILL);
    child_status(p);
    fx_free(&f);
}

/* A peer that finishes and exits first is no failure; this rank finishes
 * after it and leaves no file behind. */
static void test_finished_peer_is_fine(void **state)
{
    char path[320];
    watch_fx f;
    (void)state;

    fx_dir(&f);
    pid_t p = peer(f.prefix, 1, 2, 0, 0.2, true);
    fx_start(&f, 2, 30);
    assert_int_equal(child_status(p), 0);
    usleep(300 * 1000); /* many passes after the peer is gone */
    assert_false(comm_watch_failed(f.w, NULL, 0));
    assert_int_equal(comm_check(f.cs[0]), KILN_OK);
    snprintf(path, sizeof path, "%s.rank0", f.prefix);
    assert_true(kt_exists(path));
    assert_int_equal(comm_watch_finish(f.w), KILN_OK);
    comm_watch_free(f.w);
    f.w = NULL;
    assert_false(kt_exists(path));
    snprintf(path, sizeof path, "%s.rank1", f.prefix);
    assert_false(kt_exists(path));
    fx_free(&f);
}

/* A peer that finished while this rank waits in a collective it never
 * joins (the ranks were given different work): a failure once the peer
 * has been finished for the start timeout. */
static void test_peer_finished_early(void **state)
{
    char why[512];
    watch_fx f;
    (void)state;

    fx_dir(&f);
    pid_t p = peer(f.prefix, 1, 2, 0, 0.1, true);
    fx_start(&f, 2, 0.5);
    alarm(60);
    double s = blocked_collective(f.cs[0]);
    alarm(0);
    assert_true(s >= 0.4 && s < 20);
    assert_true(comm_watch_failed(f.w, why, sizeof why));
    if (!strstr(why, "rank 1 finished") || !strstr(why, "different work"))
        fail_msg("%s", why);
    assert_int_equal(child_status(p), 0);
    fx_free(&f);
}

/* A registration left by an earlier group under the same prefix - "up",
 * naming a process that is gone - is not this group's peer: it neither
 * fails the group nor counts as joined. */
static void test_stale_registration_ignored(void **state)
{
    char path[320], line[128], why[512];
    watch_fx f;
    (void)state;

    fx_dir(&f);
    snprintf(path, sizeof path, "%s.rank1", f.prefix);
    snprintf(line, sizeof line, "%016llx 999999999 1 up\n", GROUP ^ 1);
    kt_write_file(path, line, strlen(line));
    /* this group's rank 1 replaces it after 0.3 s (forked now: no thread
     * here yet) */
    pid_t p = peer(f.prefix, 1, 2, 0.3, 0.5, true);
    fx_start(&f, 2, 1.5);
    usleep(200 * 1000); /* passes over the stale file */
    assert_false(comm_watch_failed(f.w, NULL, 0));
    assert_int_equal(child_status(p), 0);
    usleep(300 * 1000);
    assert_false(comm_watch_failed(f.w, why, sizeof why));
    fx_free(&f);
}

/* A rank whose main thread never returns from the failed collective (a
 * stuck device call, say) still ends: the watch exits the process after
 * the grace period. */
static void test_stuck_rank_exits(void **state)
{
    char dir[256], prefix[300];
    (void)state;

    kt_mkdtemp(dir, sizeof dir, "watch");
    snprintf(prefix, sizeof prefix, "%s/id", dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        comm_watch_opts o = fast(0.2); /* rank 1 never joins */
        comm_watch *w = NULL;
        o.grace_s = 0.3;
        if (comm_watch_start(prefix, GROUP, 0, 2, &o, &w))
            _exit(2);
        for (;;)
            pause(); /* stuck: only the watch ends this process */
    }
    uint64_t t0 = clock_now_ns();
    alarm(60);
    int status = child_status(pid);
    alarm(0);
    double s = (double)(clock_now_ns() - t0) * 1e-9;
    print_message("the stuck rank exited with %d after %.2f s\n", status, s);
    assert_int_equal(status, 1);
    assert_true(s >= 0.4 && s < 20);
    kt_rmtree(dir);
}

static void test_bad_args(void **state)
{
    comm_watch *w = (comm_watch *)1;
    comm_watch_opts o = fast(1);
    char dir[256], prefix[300];
    (void)state;

    assert_int_equal(comm_watch_start(NULL, GROUP, 0, 2, NULL, &w), KILN_ERR_INVALID_ARG);
    assert_null(w);
    assert_int_equal(comm_watch_start("", GROUP, 0, 2, NULL, &w), KILN_ERR_INVALID_ARG);
    assert_int_equal(comm_watch_start("/tmp/x", GROUP, 2, 2, NULL, &w), KILN_ERR_INVALID_ARG);
    assert_int_equal(comm_watch_start("/tmp/x", GROUP, -1, 2, NULL, &w), KILN_ERR_INVALID_ARG);
    assert_int_equal(comm_watch_start("/tmp/x", GROUP, 0, 1, NULL, &w), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "world 2 or more"));
    o.period_s = 0;
    assert_int_equal(comm_watch_start("/tmp/x", GROUP, 0, 2, &o, &w), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "period"));
    assert_null(w);
    /* a directory that does not exist: the registration cannot be written */
    kt_mkdtemp(dir, sizeof dir, "watch");
    snprintf(prefix, sizeof prefix, "%s/missing/id", dir);
    assert_int_equal(comm_watch_start(prefix, GROUP, 0, 2, NULL, &w), KILN_ERR_IO);
    assert_null(w);
    assert_non_null(strstr(kiln_last_error(), "missing"));
    comm_watch_free(NULL);
    assert_int_equal(comm_check(NULL), KILN_ERR_INVALID_ARG);
    kt_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_stuck_rank_exits),
        cmocka_unit_test(test_dead_peer_aborts),
        cmocka_unit_test(test_peer_never_joins),
        cmocka_unit_test(test_finished_peer_is_fine),
        cmocka_unit_test(test_stale_registration_ignored),
        cmocka_unit_test(test_peer_finished_early),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
