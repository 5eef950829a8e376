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

static void test_dead_peer_aborts(void **state)
{
    char dir[256], prefix[300], why[512];
    comm *cs[2];
    comm_watch *w = NULL;
    (void)state;

    kt_mkdtemp(dir, sizeof dir, "watch");
    snprintf(prefix, sizeof prefix, "%s/id", dir);
    pid_t p = peer(prefix, 1, 2, 0, 0.3, false); /* joins, then dies unfinished */
    comm_watch_opts o = fast(30);
    assert_int_equal(comm_threads_create(2, cs), KILN_OK);
    assert_int_equal(comm_watch_start(prefix, GROUP, 0, 2, &o, &w), KILN_OK);
    comm_watch_set_comm(w, cs[0]);
    alarm(60); /* a hang fails the test */
    double s = blocked_collective(cs[0]);
    alarm(0);
    assert_true(s < 20);
    assert_true(comm_watch_failed(w, why, sizeof why));
    print_message("released after %.2f s: %s\n", s, why);
    assert_non_null(strstr(why, "rank 1"));
    assert_non_null(strstr(why, "exited before the group finished"));
    assert_int_equal(comm_check(cs[0]), KILN_ERR_DEVICE);
    assert_int_equal(child_status(p), 3);
    comm_watch_free(w);
    comm_free(cs[0]);
    comm_free(cs[1]);
    kt_rmtree(dir);
}

static void test_peer_never_joins(void **state)
{
    char dir[256], prefix[300], why[512];
    comm *cs[3];
    comm_watch *w = NULL;
    (void)state;

    kt_mkdtemp(dir, sizeof dir, "watch");
    snprintf(prefix, sizeof prefix, "%s/id", dir);
    pid_t p = peer(prefix, 1, 3, 0, 30, true); /* rank 1 joins and lives; rank 2 never comes */
    char path[320];
    snprintf(path, sizeof path, "%s.rank1", prefix);
    for (int i = 0; i < 1000 && !kt_exists(path); i++) /* rank 1 is in before the clock runs */
        usleep(10 * 1000);
    comm_watch_opts o = fast(0.5);
    assert_int_equal(comm_threads_create(3, cs), KILN_OK);
    assert_int_equal(comm_watch_start(prefix, GROUP, 0, 3, &o, &w), KILN_OK);
    comm_watch_set_comm(w, cs[0]);
    alarm(60);
    double s = blocked_collective(cs[0]);
    alarm(0);
    assert_true(s >= 0.4 && s < 20);
    assert_true(comm_watch_failed(w, why, sizeof why));
    assert_non_null(strstr(why, "rank 2 did not join"));
    kill(p, SIGKILL);
    child_status(p);
    comm_watch_free(w);
    for (int r = 0; r < 3; r++)
        comm_free(cs[r]);
    kt_rmtree(dir);
}

/* A peer that finishes and exits first is no failure; this rank finishes
 * after it and leaves no file behind. */
static void test_finished_peer_is_fine(void **state)
{
    char dir[256], prefix[300], path[320];
    comm *cs[2];
    comm_watch *w = NULL;
    (void)state;

    kt_mkdtemp(dir, sizeof dir, "watch");
    snprintf(prefix, sizeof prefix, "%s/id", dir);
    pid_t p = peer(prefix, 1, 2, 0, 0.2, true);
    comm_watch_opts o = fast(30);
    assert_int_equal(comm_threads_create(2, cs), KILN_OK);
    assert_int_equal(comm_watch_start(prefix, GROUP, 0, 2, &o, &w), KILN_OK);
    comm_watch_set_comm(w, cs[0]);
    assert_int_equal(child_status(p), 0);
    usleep(300 * 1000); /* many passes after the peer is gone */
    assert_false(comm_watch_failed(w, NULL, 0));
    assert_int_equal(comm_check(cs[0]), KILN_OK);
    snprintf(path, sizeof path, "%s.rank0", prefix);
    assert_true(kt_exists(path));
    assert_int_equal(comm_watch_finish(w), KILN_OK);
    comm_watch_free(w);
    assert_false(kt_exists(path));
    snprintf(path, sizeof path, "%s.rank1", prefix);
    assert_false(kt_exists(path));
    comm_free(cs[0]);
    comm_free(cs[1]);
    kt_rmtree(dir);
}

/* A peer that finished while this rank waits in a collective it never
 * joins (the ranks were given different work): a failure once the peer
 * has been finished for the start timeout. */
static void test_peer_finished_early(void **state)
{
    char dir[256], prefix[300], why[512];
    comm *cs[2];
    comm_watch *w = NULL;
    (void)state;

    kt_mkdtemp(dir, sizeof dir, "watch");
    snprintf(prefix, sizeof prefix, "%s/id", dir);
    pid_t p = peer(prefix, 1, 2, 0, 0.1, true);
    comm_watch_opts o = fast(0.5);
    assert_int_equal(comm_threads_create(2, cs), KILN_OK);
    assert_int_equal(comm_watch_start(prefix, GROUP, 0, 2, &o, &w), KILN_OK);
    comm_watch_set_comm(w, cs[0]);
    alarm(60);
    double s = blocked_collective(cs[0]);
    alarm(0);
    assert_true(s >= 0.4 && s < 20);
    assert_true(comm_watch_failed(w, why, sizeof why));
    if (!strstr(why, "rank 1 finished") || !strstr(why, "different work"))
        fail_msg("%s", why);
    assert_int_equal(child_status(p), 0);
    comm_watch_free(w);
    comm_free(cs[0]);
    comm_free(cs[1]);
    kt_rmtree(dir);
}

/* A registration left by an earlier group under the same prefix - "up",
 * naming a process that is gone - is not this group's peer: it neither
 * fails the group nor counts as joined. */
static void test_stale_registration_ignored(void **state)
{
    char dir[256], prefix[300], path[320], line[128], why[512];
    comm *cs[2];
    comm_watch *w = NULL;
    (void)state;

    kt_mkdtemp(dir, sizeof dir, "watch");
    snprintf(prefix, sizeof prefix, "%s/id", dir);
    snprintf(path, sizeof path, "%s.rank1", prefix);
    snprintf(line, sizeof line, "%016llx 999999999 1 up\n", GROUP ^ 1);
    kt_write_file(path, line, strlen(line));
    /* this group's rank 1 replaces it after 0.3 s (forked now: no thread
     * here yet) */
    pid_t p = peer(prefix, 1, 2, 0.3, 0.5, true);
    comm_watch_opts o = fast(1.5);
    assert_int_equal(comm_threads_create(2, cs), KILN_OK);
    assert_int_equal(comm_watch_start(prefix, GROUP, 0, 2, &o, &w), KILN_OK);
    comm_watch_set_comm(w, cs[0]);
    usleep(200 * 1000); /* passes over the stale file */
    assert_false(comm_watch_failed(w, NULL, 0));
    assert_int_equal(child_status(p), 0);
    usleep(300 * 1000);
    assert_false(comm_watch_failed(w, why, sizeof why));
    comm_watch_free(w);
    comm_free(cs[0]);
    comm_free(cs[1]);
    kt_rmtree(dir);
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
