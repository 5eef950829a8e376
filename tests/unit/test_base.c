/* test_base.c - errors, the counting allocator, checked arithmetic, clocks,
 * log levels and file mapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "base/checked.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/fmap.h"
#include "base/log.h"
#include "kiln_test.h"

/* ---- errors ---------------------------------------------------------------- */

static void test_err_set_wrap(void **state)
{
    kiln_err_clear();
    assert_string_equal(kiln_last_error(), "");
    assert_int_equal(kiln_err_set(KILN_ERR_FORMAT, "tensor '%s' ends at %d", "w", 812),
                     KILN_ERR_FORMAT);
    assert_string_equal(kiln_last_error(), "tensor 'w' ends at 812");
    assert_int_equal(kiln_err_wrap(KILN_ERR_FORMAT, "%s", "model.gguf"), KILN_ERR_FORMAT);
    assert_string_equal(kiln_last_error(), "model.gguf: tensor 'w' ends at 812");
    kiln_err_wrap(KILN_ERR_FORMAT, "load");
    assert_string_equal(kiln_last_error(), "load: model.gguf: tensor 'w' ends at 812");
    /* Wrapping with no message uses the status name. */
    kiln_err_clear();
    kiln_err_wrap(KILN_ERR_OOM, "kv cache");
    assert_string_equal(kiln_last_error(), "kv cache: out of memory");
    /* The message itself may be an argument. */
    kiln_err_set(KILN_ERR_IO, "inner");
    kiln_err_set(KILN_ERR_IO, "outer (%s)", kiln_last_error());
    assert_string_equal(kiln_last_error(), "outer (inner)");
}

static void test_err_truncation(void **state)
{
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';

    kiln_err_set(KILN_ERR_IO, "%s", big);
    size_t len = strlen(kiln_last_error());
    assert_true(len > 500 && len < sizeof big);
    /* A long prefix on a long message: cut, terminated, prefix kept. */
    kiln_err_wrap(KILN_ERR_IO, "%s", big);
    assert_int_equal(strlen(kiln_last_error()), len);
    assert_int_equal(kiln_last_error()[0], 'x');
    kiln_err_set(KILN_ERR_IO, "tail");
    for (int i = 0; i < 200; i++)
        kiln_err_wrap(KILN_ERR_IO, "layer%03d", i);
    assert_true(strlen(kiln_last_error()) <= len);
    assert_memory_equal(kiln_last_error(), "layer199: layer198: ", 20);
    /* A short prefix on a long message keeps the prefix whole. */
    kiln_err_set(KILN_ERR_IO, "%s", big);
    kiln_err_wrap(KILN_ERR_IO, "p");
    assert_memory_equal(kiln_last_error(), "p: xxx", 6);
    assert_true(strlen(kiln_last_error()) <= len);
}

static void test_status_names(void **state)
{
    for (int st = 0; st < KILN_STATUS_COUNT; st++) {
        const char *name = kiln_status_str((kiln_status)st);
        assert_non_null(name);
        assert_true(name[0] != '\0');
        assert_string_not_equal(name, "unknown status");
        for (int other = 0; other < st; other++)
            assert_string_not_equal(name, kiln_status_str((kiln_status)other));
    }
    assert_string_equal(kiln_status_str(KILN_OK), "ok");
    assert_string_equal(kiln_status_str(KILN_STATUS_COUNT), "unknown status");
    assert_string_equal(kiln_status_str((kiln_status)-1), "unknown status");
    assert_string_equal(kiln_status_str((kiln_status)1000), "unknown status");
}

/* ---- allocator ------------------------------------------------------------- */

static void test_alloc_counting(void **state)
{
    int64_t base = kiln_alloc_bytes_in_use();
    char *a = kiln_malloc(100);
    int *b = kiln_calloc(10, sizeof *b);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(kiln_alloc_bytes_in_use(), base + 100 + 10 * (int64_t)sizeof *b);
    for (int i = 0; i < 10; i++)
        assert_int_equal(b[i], 0);
    assert_int_equal((uintptr_t)a % 16, 0);
    memset(a, 'q', 100);
    a = kiln_realloc(a, 1000);
    assert_non_null(a);
    assert_int_equal(a[99], 'q');
    assert_int_equal(kiln_alloc_bytes_in_use(), base + 1000 + 10 * (int64_t)sizeof *b);
    assert_true(kiln_alloc_bytes_peak() >= kiln_alloc_bytes_in_use());
    kiln_free(a);
    kiln_free(b);
    kiln_free(NULL);
    assert_int_equal(kiln_alloc_bytes_in_use(), base);

    char *s = kiln_strdup("hello");
    char *t = kiln_strndup("hello", 3);
    assert_string_equal(s, "hello");
    assert_string_equal(t, "hel");
    kiln_free(s);
    kiln_free(t);
    char *r = kiln_realloc(NULL, 8);
    assert_non_null(r);
    kiln_free(r);
    assert_int_equal(kiln_alloc_bytes_in_use(), base);
    /* Overflowing requests fail without touching the counters. */
    assert_null(kiln_calloc(SIZE_MAX / 2, 3));
    assert_null(kiln_malloc(SIZE_MAX));
    assert_int_equal(kiln_alloc_bytes_in_use(), base);
}

static void test_alloc_fail_injection(void **state)
{
    int64_t base = kiln_alloc_bytes_in_use();
    void *p[3];

    kiln_alloc_fail_after(2);
    p[0] = kiln_malloc(10);
    p[1] = kiln_calloc(1, 10);
    p[2] = kiln_malloc(10);
    assert_non_null(p[0]);
    assert_non_null(p[1]);
    assert_null(p[2]);
    assert_null(kiln_strdup("x"));
    assert_null(kiln_realloc(p[0], 100)); /* p[0] stays valid */
    kiln_alloc_fail_after(-1);
    p[2] = kiln_malloc(10);
    assert_non_null(p[2]);
    for (int i = 0; i < 3; i++)
        kiln_free(p[i]);
    assert_int_equal(kiln_alloc_bytes_in_use(), base);
    kiln_alloc_fail_after(0);
    assert_null(kiln_malloc(1));
    kiln_alloc_fail_after(-5);
    void *q = kiln_malloc(1);
    assert_non_null(q);
    kiln_free(q);
}

/* ---- checked arithmetic ----------------------------------------------------- */

static void test_checked(void **state)
{
    uint64_t u;
    size_t z;
    int64_t i;

    assert_true(ck_add_u64(UINT64_MAX - 1, 1, &u));
    assert_true(u == UINT64_MAX);
    assert_false(ck_add_u64(UINT64_MAX, 1, &u));
    assert_true(ck_mul_u64(1ull << 32, (1ull << 32) - 1, &u));
    assert_false(ck_mul_u64(1ull << 32, 1ull << 32, &u));
    assert_true(ck_mul_u64(0, UINT64_MAX, &u) && u == 0);
    assert_false(ck_add_size(SIZE_MAX, 1, &z));
    assert_true(ck_mul_size(SIZE_MAX, 1, &z) && z == SIZE_MAX);
    assert_false(ck_mul_size(SIZE_MAX / 2 + 1, 2, &z));
    assert_true(ck_mul_i64(-4, INT64_MAX / 4, &i));
    assert_false(ck_mul_i64(INT64_MIN, -1, &i));

    assert_true(ck_range(0, 0, 0));
    assert_true(ck_range(10, 0, 10));
    assert_false(ck_range(11, 0, 10));
    assert_true(ck_range(0, 10, 10));
    assert_false(ck_range(1, 10, 10));
    assert_true(ck_range(0, UINT64_MAX, UINT64_MAX));
    assert_true(ck_range(UINT64_MAX, 0, UINT64_MAX));
    assert_false(ck_range(UINT64_MAX, 1, UINT64_MAX));
    assert_false(ck_range(1, UINT64_MAX, UINT64_MAX));
    assert_false(ck_range(UINT64_MAX, UINT64_MAX, UINT64_MAX));

    assert_true(ck_align_up(0, 64, &u) && u == 0);
    assert_true(ck_align_up(1, 64, &u) && u == 64);
    assert_true(ck_align_up(64, 64, &u) && u == 64);
    assert_true(ck_align_up(65, 64, &u) && u == 128);
    assert_true(ck_align_up(10, 3, &u) && u == 12);
    assert_false(ck_align_up(5, 0, &u));
    assert_true(ck_align_up(UINT64_MAX, 1, &u) && u == UINT64_MAX);
    assert_false(ck_align_up(UINT64_MAX, 2, &u));
    assert_false(ck_align_up(UINT64_MAX - 62, 64, &u));
    assert_true(ck_align_up(UINT64_MAX - 63, 64, &u) && u == UINT64_MAX - 63);
    assert_true(ck_align_up(UINT64_MAX - 64, UINT64_MAX, &u) && u == UINT64_MAX);
}

/* ---- clocks ----------------------------------------------------------------- */

static void test_clock(void **state)
{
    uint64_t prev = clock_now_ns();
    for (int i = 0; i < 100000; i++) {
        uint64_t now = clock_now_ns();
        assert_true(now >= prev);
        prev = now;
    }
    double s0 = clock_since_start_s();
    usleep(2000);
    double s1 = clock_since_start_s();
    assert_true(s0 >= 0.0);
    assert_true(s1 - s0 >= 0.0015);

    char buf[32];
    clock_wall_iso8601(buf, sizeof buf);
    assert_int_equal(strlen(buf), 20);
    assert_int_equal(buf[4], '-');
    assert_int_equal(buf[10], 'T');
    assert_int_equal(buf[19], 'Z');
    char tiny[4] = "abc";
    assert_string_equal(clock_wall_iso8601(tiny, sizeof tiny), "");
}

/* ---- logging ---------------------------------------------------------------- */

static void test_log_levels(void **state)
{
    static const char *names[] = {"error", "warn", "info", "debug", "trace"};
    kiln_log_level lv;

    for (int i = 0; i < 5; i++) {
        char digit[2] = {(char)('0' + i), '\0'};
        assert_int_equal(kiln_log_parse_level(names[i], &lv), KILN_OK);
        assert_int_equal(lv, i);
        assert_int_equal(kiln_log_parse_level(digit, &lv), KILN_OK);
        assert_int_equal(lv, i);
    }
    lv = KILN_LOG_INFO;
    assert_int_equal(kiln_log_parse_level("loud", &lv), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "loud"));
    assert_int_equal(kiln_log_parse_level("", &lv), KILN_ERR_INVALID_ARG);
    assert_int_equal(kiln_log_parse_level("5", &lv), KILN_ERR_INVALID_ARG);
    assert_int_equal(kiln_log_parse_level("00", &lv), KILN_ERR_INVALID_ARG);
    assert_int_equal(lv, KILN_LOG_INFO);

    kiln_log_level saved = kiln_log_get_level();
    kiln_log_set_level(KILN_LOG_ERROR);
    assert_int_equal(kiln_log_get_level(), KILN_LOG_ERROR);
    KILN_LOG_D("not shown %d", 1);
    kiln_log_set_level(saved);
}

/* In a child, so that the level is read from KILN_LOG at first use
 * (test_log_env runs before anything reads the level). */
static int child_bad_env(void)
{
    setenv("KILN_LOG", "bogus", 1);
    kiln_err_set(KILN_ERR_IO, "keep me");
    if (kiln_log_get_level() != KILN_LOG_WARN)
        return 1;
    return strcmp(kiln_last_error(), "keep me") ? 2 : 0;
}

static int child_env_level(void)
{
    setenv("KILN_LOG", "debug", 1);
    return kiln_log_get_level() == KILN_LOG_DEBUG ? 0 : 1;
}

static void test_log_env(void **state)
{
    kt_run_child(child_bad_env);
    kt_run_child(child_env_level);
}

/* ---- file mapping ------------------------------------------------------------- */

static char g_dir[256];

static int make_dir(void **state)
{
    kt_mkdtemp(g_dir, sizeof g_dir, "base");
    return 0;
}

static int remove_dir(void **state)
{
    kt_rmtree(g_dir);
    return 0;
}

static void test_fmap(void **state)
{
    char path[320];
    fmap *m;
    int64_t base = kiln_alloc_bytes_in_use();

    snprintf(path, sizeof path, "%s/regular.bin", g_dir);
    kt_write_file(path, "0123456789", 10);
    assert_int_equal(fmap_open(path, &m), KILN_OK);
    assert_int_equal(fmap_size(m), 10);
    assert_memory_equal(fmap_data(m), "0123456789", 10);
    assert_string_equal(fmap_path(m), path);
    fmap_prefetch(m, 3, 100);
    fmap_prefetch(m, 100, 1);
    fmap_close(m);
    unlink(path);

    snprintf(path, sizeof path, "%s/empty.bin", g_dir);
    kt_write_file(path, "", 0);
    assert_int_equal(fmap_open(path, &m), KILN_OK);
    assert_int_equal(fmap_size(m), 0);
    assert_null(fmap_data(m));
    fmap_prefetch(m, 0, 10);
    fmap_close(m);

    kiln_alloc_fail_after(0);
    assert_int_equal(fmap_open(path, &m), KILN_ERR_OOM);
    kiln_alloc_fail_after(1);
    assert_int_equal(fmap_open(path, &m), KILN_ERR_OOM);
    kiln_alloc_fail_after(-1);
    unlink(path);

    snprintf(path, sizeof path, "%s/missing.bin", g_dir);
    assert_int_equal(fmap_open(path, &m), KILN_ERR_IO);
    assert_null(m);
    assert_non_null(strstr(kiln_last_error(), "missing.bin"));

    assert_int_equal(fmap_open(g_dir, &m), KILN_ERR_IO);
    assert_null(m);
    assert_non_null(strstr(kiln_last_error(), "is a directory"));
    fmap_close(NULL);
    assert_int_equal(kiln_alloc_bytes_in_use(), base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* First: nothing may have read the log level before it forks. */
        cmocka_unit_test(test_log_env),
        cmocka_unit_test(test_err_set_wrap),
        cmocka_unit_test(test_err_truncation),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_alloc_counting),
        cmocka_unit_test(test_alloc_fail_injection),
        cmocka_unit_test(test_checked),
        cmocka_unit_test(test_clock),
        cmocka_unit_test(test_log_levels),
        cmocka_unit_test_setup_teardown(test_fmap, make_dir, remove_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
