/* test_tpool.c - the thread pool: coverage, sums, back-to-back calls,
 * nesting, thread indices, creation failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "base/tpool.h"

#define MAX_THREADS 8

typedef struct visit_ctx {
    atomic_uchar *seen;      /* [n] times each index was visited */
    size_t grain;
    int size;
    atomic_int bad_range;    /* a range broke the contract */
    atomic_int busy[MAX_THREADS]; /* ranges running per thread_idx */
} visit_ctx;

static void visit(void *p, size_t begin, size_t end, int idx)
{
    visit_ctx *c = p;

    if (begin >= end || end - begin > c->grain || begin % c->grain != 0 || idx < 0 ||
        idx >= c->size)
        atomic_store(&c->bad_range, 1);
    if (idx >= 0 && idx < MAX_THREADS && atomic_fetch_add(&c->busy[idx], 1) != 0)
        atomic_store(&c->bad_range, 1);
    for (size_t i = begin; i < end; i++)
        atomic_fetch_add_explicit(&c->seen[i], 1, memory_order_relaxed);
    if (idx >= 0 && idx < MAX_THREADS)
        atomic_fetch_sub(&c->busy[idx], 1);
}

static void check_cover(tpool *pool, size_t n, size_t grain)
{
    visit_ctx c;
    memset(&c, 0, sizeof c);
    c.seen = calloc(n ? n : 1, sizeof *c.seen);
    assert_non_null(c.seen);
    c.size = tpool_size(pool);
    /* grain 0 picks its own grain: the range contract is not checked then. */
    c.grain = grain ? grain : SIZE_MAX;
    tpool_parallel_for(pool, n, grain, visit, &c);
    for (size_t i = 0; i < n; i++)
        if (c.seen[i] != 1)
            fail_msg("n=%zu grain=%zu: index %zu visited %d times", n, grain, i, c.seen[i]);
    if (grain)
        assert_int_equal(atomic_load(&c.bad_range), 0);
    free(c.seen);
}

static void cover_all(int threads)
{
    static const size_t ns[] = {0, 1, 2, 3, 7, 8, 9, 63, 64, 65, 100, 1000, 4097, 100000};
    static const size_t grains[] = {0, 1, 2, 3, 7, 64, 1000, 1 << 20};
    tpool *pool;

    assert_int_equal(tpool_create(threads, &pool), KILN_OK);
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        for (size_t j = 0; j < sizeof grains / sizeof grains[0]; j++)
            check_cover(pool, ns[i], grains[j]);
    tpool_free(pool);
}

static void test_cover_4(void **state) { cover_all(4); }
static void test_cover_2(void **state) { cover_all(2); }
static void test_cover_1(void **state) { cover_all(1); }

static void test_default_size(void **state)
{
    tpool *pool;
    assert_int_equal(tpool_create(0, &pool), KILN_OK);
    assert_true(tpool_size(pool) >= 1);
    check_cover(pool, 12345, 10);
    tpool_free(pool);
    assert_int_equal(tpool_create(-3, &pool), KILN_OK);
    assert_true(tpool_size(pool) >= 1);
    tpool_free(pool);
    tpool_free(NULL);
    assert_int_equal(tpool_create(TPOOL_MAX_THREADS + 1, &pool), KILN_ERR_INVALID_ARG);
    assert_null(pool);
}

typedef struct sum_ctx {
    const uint32_t *v;
    uint64_t partial[MAX_THREADS];
} sum_ctx;

static void sum_range(void *p, size_t begin, size_t end, int idx)
{
    sum_ctx *c = p;
    uint64_t s = 0;
    for (size_t i = begin; i < end; i++)
        s += c->v[i];
    c->partial[idx] += s; /* one range at a time per idx */
}

static void test_sums_back_to_back(void **state)
{
    enum { N = 10007 };
    uint32_t *v = malloc(N * sizeof *v);
    uint64_t want = 0;
    tpool *pool;

    assert_non_null(v);
    for (uint32_t i = 0; i < N; i++) {
        v[i] = i * 2654435761u;
        want += v[i];
    }
    assert_int_equal(tpool_create(4, &pool), KILN_OK);
    for (int call = 0; call < 1000; call++) {
        sum_ctx c = {.v = v};
        size_t n = N - (size_t)(call % 3) * 5000;
        uint64_t expect = want, got = 0;
        for (size_t i = n; i < N; i++)
            expect -= v[i];
        tpool_parallel_for(pool, n, (size_t)(call % 7) * 100, sum_range, &c);
        for (int t = 0; t < MAX_THREADS; t++)
            got += c.partial[t];
        assert_int_equal(got, expect);
    }
    tpool_free(pool);
    free(v);
}

typedef struct nest_ctx {
    tpool *pool;
    atomic_int inner_total;
    atomic_int bad_idx;
} nest_ctx;

static void inner(void *p, size_t begin, size_t end, int idx)
{
    nest_ctx *c = p;
    atomic_fetch_add(&c->inner_total, (int)(end - begin));
    if (idx < 0 || idx >= tpool_size(c->pool))
        atomic_store(&c->bad_idx, 1);
}

static void outer(void *p, size_t begin, size_t end, int idx)
{
    nest_ctx *c = p;
    for (size_t i = begin; i < end; i++)
        tpool_parallel_for(c->pool, 10, 3, inner, c);
}

static void test_nested_runs_serially(void **state)
{
    nest_ctx c = {0};
    assert_int_equal(tpool_create(3, &c.pool), KILN_OK);
    tpool_parallel_for(c.pool, 50, 1, outer, &c);
    assert_int_equal(atomic_load(&c.inner_total), 500);
    assert_int_equal(atomic_load(&c.bad_idx), 0);
    tpool_free(c.pool);
}

static void test_create_oom(void **state)
{
    int64_t base = kiln_alloc_bytes_in_use();
    tpool *pool;

    for (int n = 0; n < 2; n++) {
        kiln_alloc_fail_after(n);
        assert_int_equal(tpool_create(3, &pool), KILN_ERR_OOM);
        kiln_alloc_fail_after(-1);
        assert_null(pool);
        assert_int_equal(kiln_alloc_bytes_in_use(), base);
    }
}

static void test_many_pools(void **state)
{
    for (int i = 0; i < 20; i++) {
        tpool *pool;
        assert_int_equal(tpool_create(1 + i % 4, &pool), KILN_OK);
        check_cover(pool, 1000, 13);
        tpool_free(pool);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cover_4),
        cmocka_unit_test(test_cover_2),
        cmocka_unit_test(test_cover_1),
        cmocka_unit_test(test_default_size),
        cmocka_unit_test(test_sums_back_to_back),
        cmocka_unit_test(test_nested_runs_serially),
        cmocka_unit_test(test_create_oom),
        cmocka_unit_test(test_many_pools),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
