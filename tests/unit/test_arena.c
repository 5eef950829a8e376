/* test_arena.c - the bump allocator: alignment, big requests, reset, OOM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "base/arena.h"

static void test_alignment(void **state)
{
    arena *a = arena_create(4096);
    assert_non_null(a);
    for (size_t align = 1; align <= 4096; align <<= 1) {
        for (size_t size = 0; size < 40; size += 7) {
            unsigned char *p = arena_alloc(a, size, align);
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % align, 0);
            memset(p, 0xab, size); /* ASan catches a short block */
        }
    }
    /* Odd sizes interleaved with strict alignments. */
    for (int i = 0; i < 1000; i++) {
        void *p = arena_alloc(a, (size_t)(i % 13) + 1, 1);
        double *d = arena_alloc(a, sizeof *d, _Alignof(double));
        assert_non_null(p);
        assert_non_null(d);
        assert_int_equal((uintptr_t)d % _Alignof(double), 0);
        *d = i;
    }
    assert_true(arena_used(a) <= arena_capacity(a));
    arena_free(a);
}

static void test_distinct_blocks(void **state)
{
    arena *a = arena_create(256);
    unsigned char *blocks[200];
    assert_non_null(a);
    for (int i = 0; i < 200; i++) {
        blocks[i] = arena_alloc(a, 24, 8);
        assert_non_null(blocks[i]);
        memset(blocks[i], i, 24);
    }
    for (int i = 0; i < 200; i++)
        for (int j = 0; j < 24; j++)
            assert_int_equal(blocks[i][j], (unsigned char)i);
    arena_free(a);
}

static void test_big_requests(void **state)
{
    arena *a = arena_create(1024);
    assert_non_null(a);
    unsigned char *small1 = arena_alloc(a, 100, 16);
    size_t cap1 = arena_capacity(a);
    unsigned char *big = arena_alloc(a, 1 << 20, 64);
    assert_non_null(small1);
    assert_non_null(big);
    assert_int_equal((uintptr_t)big % 64, 0);
    memset(big, 0x5a, 1 << 20);
    assert_true(arena_capacity(a) >= cap1 + (1 << 20));
    /* The big block had its own chunk: the first chunk still serves. */
    unsigned char *small2 = arena_alloc(a, 100, 16);
    assert_true(small2 > small1 && small2 < small1 + 1024);
    assert_true(arena_used(a) >= 200 + (1 << 20));
    /* Requests that overflow are refused, not wrapped. */
    assert_null(arena_alloc(a, SIZE_MAX, 1));
    assert_null(arena_alloc(a, SIZE_MAX - 8, 4096));
    assert_null(arena_calloc(a, SIZE_MAX / 2, 3, 1));
    arena_free(a);
}

static void test_calloc_strndup(void **state)
{
    arena *a = arena_create(0);
    assert_non_null(a);
    assert_int_equal(arena_capacity(a), ARENA_DEFAULT_CHUNK);
    unsigned char *junk = arena_alloc(a, 512, 1);
    memset(junk, 0xff, 512);
    arena_reset(a);
    uint32_t *z = arena_calloc(a, 128, sizeof *z, _Alignof(uint32_t));
    assert_non_null(z);
    for (int i = 0; i < 128; i++)
        assert_int_equal(z[i], 0);
    char *s = arena_strndup(a, "hello, world", 5);
    assert_string_equal(s, "hello");
    s = arena_strndup(a, "tiny", 100);
    assert_string_equal(s, "tiny");
    s = arena_strndup(a, "", 0);
    assert_string_equal(s, "");
    arena_free(a);
    arena_free(NULL);
}

static void run_step(arena *a, int step)
{
    for (int i = 0; i < 50; i++) {
        unsigned char *p = arena_alloc(a, (size_t)(i * 7 + step % 5), 32);
        assert_non_null(p);
        memset(p, i, (size_t)(i * 7 + step % 5));
    }
}

static void test_reset_reuses(void **state)
{
    arena *a = arena_create(64 * 1024);
    assert_non_null(a);
    run_step(a, 0);
    size_t used = arena_used(a);
    assert_true(used > 0);
    arena_reset(a);
    assert_int_equal(arena_used(a), 0);
    int64_t before = kiln_alloc_bytes_in_use();
    for (int step = 1; step < 100; step++) {
        run_step(a, step);
        arena_reset(a);
    }
    assert_int_equal(kiln_alloc_bytes_in_use(), before);
    assert_int_equal(arena_capacity(a), 64 * 1024);
    /* Fail every allocation: steady-state steps still work. */
    kiln_alloc_fail_after(0);
    run_step(a, 7);
    kiln_alloc_fail_after(-1);
    arena_free(a);
}

static void test_reset_releases_extra_chunks(void **state)
{
    int64_t base = kiln_alloc_bytes_in_use();
    arena *a = arena_create(1024);
    assert_non_null(a);
    int64_t one_chunk = kiln_alloc_bytes_in_use() - base;
    for (int i = 0; i < 100; i++)
        assert_non_null(arena_alloc(a, 200, 8));
    assert_non_null(arena_alloc(a, 100000, 8));
    assert_true(arena_capacity(a) > 1024 * 10);
    size_t peak = arena_peak(a);
    assert_true(peak >= 100 * 200 + 100000);
    arena_reset(a);
    assert_int_equal(arena_capacity(a), 1024);
    assert_int_equal(kiln_alloc_bytes_in_use() - base, one_chunk);
    assert_int_equal(arena_peak(a), peak);
    /* The first chunk is reused from its start. */
    unsigned char *p = arena_alloc(a, 1, 1);
    unsigned char *q = arena_alloc(a, 1, 1);
    assert_ptr_equal(q, p + 1);
    arena_free(a);
    assert_int_equal(kiln_alloc_bytes_in_use(), base);
}

static void test_oom(void **state)
{
    int64_t base = kiln_alloc_bytes_in_use();

    /* arena_create: fail each of its allocations in turn. */
    for (int n = 0; n < 2; n++) {
        kiln_alloc_fail_after(n);
        assert_null(arena_create(1024));
        kiln_alloc_fail_after(-1);
        assert_int_equal(kiln_alloc_bytes_in_use(), base);
    }
    arena *a = arena_create(1024);
    assert_non_null(a);
    assert_non_null(arena_alloc(a, 1000, 1));
    kiln_alloc_fail_after(0);
    assert_null(arena_alloc(a, 1000, 1));      /* needs a new chunk */
    assert_null(arena_alloc(a, 1 << 20, 1));   /* needs a big chunk */
    assert_null(arena_strndup(a, "a string that needs a new chunk of memory"
                              " because the first one is nearly full........", 1000));
    assert_non_null(arena_alloc(a, 8, 1));     /* still fits */
    kiln_alloc_fail_after(-1);
    assert_non_null(arena_alloc(a, 1000, 1));
    arena_free(a);
    assert_int_equal(kiln_alloc_bytes_in_use(), base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment),
        cmocka_unit_test(test_distinct_blocks),
        cmocka_unit_test(test_big_requests),
        cmocka_unit_test(test_calloc_strndup),
        cmocka_unit_test(test_reset_reuses),
        cmocka_unit_test(test_reset_releases_extra_chunks),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
