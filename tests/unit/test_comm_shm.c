/*
 * test_comm_shm.c - the process-group communicator: forked ranks run the
 * same collectives and must get the bits the threads communicator gives
 * (rank-order sums), across the slot size (chunked collectives), with
 * errors (ranks disagreeing on n, an abort, a rank that never comes, an
 * earlier group's file) on every rank and no hang.
 *
 * Each forked rank checks its own results and exits 0 (all good) or the
 * number of the first failed check; rank 0 is this process.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "backend/comm.h"
#include "base/error.h"
#include "kiln_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define GROUP 0x0123456789abcdefull
#define BIG ((int64_t)(1 << 20) + 4099) /* more than one slot: two chunks */

/* Rank r's value at i in collective j: awkward fractions, so the sum's
 * rounding depends on the order. */
static float val(int j, int32_t r, int64_t i)
{
    uint32_t h = (uint32_t)(i * 2654435761u) ^ (uint32_t)(j * 40503u) ^ (uint32_t)(r * 97u);
    return (float)((int32_t)(h % 20001u) - 10000) / 7.0f + (float)r * 1e-3f;
}

static const int64_t sizes[] = {0, 1, 7, 4096, BIG};
#define N_SIZES (int)(sizeof sizes / sizeof sizes[0])

/* The collectives every rank runs; the first failed check's number, or 0. */
static int run_rank(comm *c, int32_t world)
{
    const int32_t r = comm_rank(c);
    float *buf = malloc((size_t)BIG * sizeof *buf);
    float *ref = malloc((size_t)BIG * sizeof *ref);
    float *all = malloc((size_t)BIG * (size_t)world * sizeof *all);
    int bad = 0;

    if (!buf || !ref || !all)
        return 90;
    for (int j = 0; j < N_SIZES && !bad; j++) {
        int64_t n = sizes[j];
        for (int64_t i = 0; i < n; i++) {
            buf[i] = val(j, r, i);
            float s = val(j, 0, i);
            for (int32_t q = 1; q < world; q++)
                s += val(j, q, i);
            ref[i] = s;
        }
        if (comm_all_reduce_sum(c, buf, n, KILN_DT_F32) != KILN_OK)
            bad = 10 + j;
        else if (n && memcmp(buf, ref, (size_t)n * sizeof *buf))
            bad = 20 + j; /* not the rank-order bits */
        for (int64_t i = 0; i < n && !bad; i++)
            buf[i] = val(j + 7, r, i);
        if (!bad && comm_all_gather(c, buf, n, KILN_DT_F32, all) != KILN_OK)
            bad = 30 + j;
        for (int32_t q = 0; q < world && !bad; q++)
            for (int64_t i = 0; i < n && !bad; i++)
                if (all[(size_t)q * (size_t)n + (size_t)i] != val(j + 7, q, i))
                    bad = 40 + j;
    }
    /* ranks disagreeing on n: an error on every rank, and the group goes on */
    if (!bad && comm_all_reduce_sum(c, buf, 3 + r, KILN_DT_F32) != KILN_ERR_INVALID_ARG)
        bad = 50;
    if (!bad && comm_all_reduce_sum(c, buf, 5, KILN_DT_BF16) != KILN_ERR_INVALID_ARG)
        bad = 51;
    buf[0] = 1.0f;
    if (!bad && (comm_all_reduce_sum(c, buf, 1, KILN_DT_F32) != KILN_OK ||
                 buf[0] != (float)world))
        bad = 52;
    free(buf);
    free(ref);
    free(all);
    return bad;
}

static int child_status(pid_t pid)
{
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void group_of(int32_t world)
{
    char dir[256], path[300];
    pid_t kids[8];
    comm *c = NULL;

    kt_mkdtemp(dir, sizeof dir, "shm");
    snprintf(path, sizeof path, "%s/group.shm", dir);
    for (int32_t r = 1; r < world; r++) { /* the ranks start before rank 0's file exists */
        kids[r] = fork();
        assert_true(kids[r] >= 0);
        if (kids[r] == 0) {
            comm *k = NULL;
            if (comm_shm_open(path, GROUP, r, world, 30, &k))
                _exit(99);
            int bad = run_rank(k, world);
            comm_free(k);
            _exit(bad);
        }
    }
    usleep(100 * 1000);
    alarm(120);
    assert_int_equal(comm_shm_open(path, GROUP, 0, world, 30, &c), KILN_OK);
    assert_string_equal(comm_kind(c), "shm");
    assert_int_equal(comm_rank(c), 0);
    assert_int_equal(comm_world(c), world);
    assert_int_equal(run_rank(c, world), 0);
    for (int32_t r = 1; r < world; r++)
        assert_int_equal(child_status(kids[r]), 0);
    alarm(0);
    assert_int_equal(comm_check(c), KILN_OK);
    comm_free(c);
    assert_false(kt_exists(path)); /* rank 0 removes the file */
    kt_rmtree(dir);
}

static void test_two_ranks(void **state)
{
    (void)state;
    group_of(2);
}

static void test_three_ranks(void **state)
{
    (void)state;
    group_of(3);
}

/* An abort on one rank: the others' collectives in progress and to come
 * return KILN_ERR_DEVICE. */
static void test_abort(void **state)
{
    char dir[256], path[300];
    comm *c = NULL;
    float v = 1.0f;
    (void)state;

    kt_mkdtemp(dir, sizeof dir, "shm");
    snprintf(path, sizeof path, "%s/group.shm", dir);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        comm *k = NULL;
        float x = 1.0f;
        if (comm_shm_open(path, GROUP, 1, 2, 30, &k))
            _exit(99);
        if (comm_all_reduce_sum(k, &x, 1, KILN_DT_F32) || x != 2.0f)
            _exit(1);
        usleep(200 * 1000); /* rank 0 is waiting in the next one */
        comm_abort(k);
        int rc = comm_all_reduce_sum(k, &x, 1, KILN_DT_F32) == KILN_ERR_DEVICE ? 0 : 2;
        comm_free(k);
        _exit(rc);
    }
    alarm(60);
    assert_int_equal(comm_shm_open(path, GROUP, 0, 2, 30, &c), KILN_OK);
    assert_int_equal(comm_all_reduce_sum(c, &v, 1, KILN_DT_F32), KILN_OK);
    assert_true(v == 2.0f);
    assert_int_equal(comm_all_reduce_sum(c, &v, 1, KILN_DT_F32), KILN_ERR_DEVICE);
    assert_non_null(strstr(kiln_last_error(), "rank 1 of 2 failed"));
    assert_int_equal(comm_check(c), KILN_ERR_DEVICE);
    assert_int_equal(child_status(kid), 0);
    alarm(0);
    comm_free(c);
    kt_rmtree(dir);
}

/* A rank waiting for a rank 0 that never comes, or for a file of another
 * group (an earlier run), gives up after its timeout. */
static void test_join_timeout(void **state)
{
    char dir[256], path[300];
    comm *c = (comm *)1, *z = NULL;
    (void)state;

    kt_mkdtemp(dir, sizeof dir, "shm");
    snprintf(path, sizeof path, "%s/group.shm", dir);
    assert_int_equal(comm_shm_open(path, GROUP, 1, 2, 0.3, &c), KILN_ERR_IO);
    assert_null(c);
    assert_non_null(strstr(kiln_last_error(), "no process group"));
    /* rank 0 of another group made the file: still no group for this one */
    assert_int_equal(comm_shm_open(path, GROUP ^ 1, 0, 2, 1, &z), KILN_OK);
    assert_int_equal(comm_shm_open(path, GROUP, 1, 2, 0.3, &c), KILN_ERR_IO);
    assert_int_equal(comm_shm_open(path, GROUP ^ 1, 1, 3, 0.3, &c), KILN_ERR_IO); /* world */
    comm_free(z);
    kt_rmtree(dir);
}

static void test_bad_args(void **state)
{
    comm *c = (comm *)1;
    (void)state;
    assert_int_equal(comm_shm_open(NULL, GROUP, 0, 2, 1, &c), KILN_ERR_INVALID_ARG);
    assert_null(c);
    assert_int_equal(comm_shm_open("", GROUP, 0, 2, 1, &c), KILN_ERR_INVALID_ARG);
    assert_int_equal(comm_shm_open("/tmp/x", GROUP, 2, 2, 1, &c), KILN_ERR_INVALID_ARG);
    assert_int_equal(comm_shm_open("/tmp/x", GROUP, 0, 1, 1, &c), KILN_ERR_INVALID_ARG);
    assert_int_equal(comm_shm_open("/tmp/x", GROUP, 0, 65, 1, &c), KILN_ERR_INVALID_ARG);
    assert_int_equal(comm_shm_open("/tmp/x", GROUP, 1, 2, -1, &c), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "world 2..64"));
    assert_int_equal(comm_shm_open("/nonexistent-dir/x", GROUP, 0, 2, 1, &c), KILN_ERR_IO);
    assert_null(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_two_ranks),
        cmocka_unit_test(test_three_ranks),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_join_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
