/* test_bulk.c - the bulk reader on both paths (io_uring and pread):
 * byte-for-byte reads, end of file, asynchronous requests, bad opens. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/filter.h>
#include <linux/seccomp.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "base/bulk.h"
#include "kiln_test.h"

#define FILE_BYTES ((size_t)20 << 20)

static char g_dir[256];
static char g_path[300];
static unsigned char *g_data; /* the file's contents */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int setup_file(void **state)
{
    uint64_t s = 0x9e3779b97f4a7c15ull;

    kt_mkdtemp(g_dir, sizeof g_dir, "bulk");
    snprintf(g_path, sizeof g_path, "%s/data.bin", g_dir);
    g_data = malloc(FILE_BYTES);
    if (!g_data)
        return -1;
    for (size_t i = 0; i < FILE_BYTES; i += 8) {
        uint64_t v = rng_next(&s);
        memcpy(g_data + i, &v, 8);
    }
    kt_write_file(g_path, g_data, FILE_BYTES);
    return 0;
}

static int teardown_file(void **state)
{
    kt_rmtree(g_dir);
    free(g_data);
    return 0;
}

/* Each test runs on both paths: state points at the open flags. */
static unsigned g_flags_uring = 0, g_flags_pread = BULK_OPEN_PREAD;

static bulk_reader *open_reader(void **state, int depth)
{
    unsigned flags = *(unsigned *)*state;
    bulk_reader *r;

    assert_int_equal(bulk_open_flags(g_path, depth, flags, &r), KILN_OK);
    assert_int_equal(bulk_size(r), FILE_BYTES);
    if (flags & BULK_OPEN_PREAD)
        assert_false(bulk_uses_io_uring(r));
    return r;
}

static void check_read(bulk_reader *r, uint64_t off, size_t len, unsigned char *buf)
{
    memset(buf, 0xee, len + 1);
    if (bulk_read(r, off, buf + 1, len) != KILN_OK)
        fail_msg("read %zu at %llu: %s", len, (unsigned long long)off, kiln_last_error());
    assert_int_equal(buf[0], 0xee);
    if (memcmp(buf + 1, g_data + off, len) != 0)
        fail_msg("read %zu at %llu: bytes differ", len, (unsigned long long)off);
}

static void test_read_many(void **state)
{
    static const size_t lens[] = {0, 1, 2, 511, 4095, 4096, 4097, (1 << 20) - 1, 1 << 20,
                                  (1 << 20) + 1, (3 << 20) + 17, 9 << 20};
    unsigned char *buf = malloc(FILE_BYTES + 1);
    bulk_reader *r = open_reader(state, 4);
    uint64_t s = 12345;

    assert_non_null(buf);
    check_read(r, 0, FILE_BYTES, buf); /* whole file */
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        check_read(r, 0, lens[i], buf);
        check_read(r, FILE_BYTES - lens[i], lens[i], buf); /* ends at EOF */
        for (int k = 0; k < 6; k++) {
            uint64_t off = rng_next(&s) % (FILE_BYTES - lens[i] + 1);
            check_read(r, off, lens[i], buf);
        }
    }
    check_read(r, FILE_BYTES, 0, buf); /* empty read at EOF */
    bulk_close(r);
    free(buf);
}

static void test_past_eof(void **state)
{
    unsigned char buf[64];
    bulk_reader *r = open_reader(state, 2);

    assert_int_equal(bulk_read(r, FILE_BYTES, buf, 1), KILN_ERR_IO);
    assert_non_null(strstr(kiln_last_error(), g_path));
    assert_non_null(strstr(kiln_last_error(), "20971520"));
    assert_int_equal(bulk_read(r, FILE_BYTES - 10, buf, 11), KILN_ERR_IO);
    assert_non_null(strstr(kiln_last_error(), "20971510"));
    assert_int_equal(bulk_read(r, FILE_BYTES + 1, buf, 0), KILN_ERR_IO);
    assert_int_equal(bulk_read(r, UINT64_MAX, buf, 2), KILN_ERR_IO);
    assert_int_equal(bulk_submit(r, UINT64_MAX - 1, buf, 8, 1), KILN_ERR_IO);
    assert_int_equal(bulk_read(r, 0, NULL, 8), KILN_ERR_INVALID_ARG);
    assert_int_equal(bulk_pending(r), 0);
    /* The reader still works after refused requests. */
    assert_int_equal(bulk_read(r, 100, buf, sizeof buf), KILN_OK);
    assert_memory_equal(buf, g_data + 100, sizeof buf);
    bulk_close(r);
}

typedef struct req {
    uint64_t off;
    size_t len;
    unsigned char *buf;
    int collected;
} req;

static void test_async(void **state)
{
    enum { NREQ = 12 };
    req reqs[NREQ];
    uint64_t s = 777, tag;
    unsigned char small[4096];
    bulk_reader *r = open_reader(state, 3);

    assert_int_equal(bulk_wait(r, &tag), KILN_ERR_INVALID_ARG);
    for (int i = 0; i < NREQ; i++) {
        reqs[i].len = i == 0 ? 0 : (size_t)(rng_next(&s) % (5 << 20)) + 1;
        reqs[i].off = rng_next(&s) % (FILE_BYTES - reqs[i].len + 1);
        reqs[i].buf = malloc(reqs[i].len + 1);
        reqs[i].collected = 0;
        assert_non_null(reqs[i].buf);
        assert_int_equal(bulk_submit(r, reqs[i].off, reqs[i].buf, reqs[i].len, 1000 + i),
                         KILN_OK);
    }
    assert_int_equal(bulk_pending(r), NREQ);
    /* A synchronous read in the middle neither waits for nor steals them. */
    check_read(r, 12345, 3000, small);
    assert_int_equal(bulk_poll(r), KILN_OK);
    for (int k = 0; k < NREQ; k++) {
        assert_int_equal(bulk_wait(r, &tag), KILN_OK);
        assert_true(tag >= 1000 && tag < 1000 + NREQ);
        req *q = &reqs[tag - 1000];
        assert_int_equal(q->collected, 0);
        q->collected = 1;
        assert_memory_equal(q->buf, g_data + q->off, q->len);
    }
    assert_int_equal(bulk_pending(r), 0);
    assert_int_equal(bulk_wait(r, &tag), KILN_ERR_INVALID_ARG);
    for (int i = 0; i < NREQ; i++)
        free(reqs[i].buf);
    bulk_close(r);
}

static void test_pipeline(void **state)
{
    /* The weight loader's pattern: read piece n + 1 while using piece n. */
    enum { PIECE = 3 << 20 };
    unsigned char *bufs[2] = {malloc(PIECE), malloc(PIECE)};
    bulk_reader *r = open_reader(state, 4);
    size_t n_pieces = (FILE_BYTES + PIECE - 1) / PIECE;
    uint64_t tag;

    assert_non_null(bufs[0]);
    assert_non_null(bufs[1]);
    assert_int_equal(bulk_submit(r, 0, bufs[0], PIECE, 0), KILN_OK);
    for (size_t i = 0; i < n_pieces; i++) {
        if (i + 1 < n_pieces) {
            size_t off = (i + 1) * PIECE;
            size_t len = FILE_BYTES - off < PIECE ? FILE_BYTES - off : PIECE;
            assert_int_equal(bulk_submit(r, off, bufs[(i + 1) % 2], len, i + 1), KILN_OK);
        }
        assert_int_equal(bulk_wait(r, &tag), KILN_OK);
        assert_int_equal(tag, i);
        size_t len = FILE_BYTES - i * PIECE < PIECE ? FILE_BYTES - i * PIECE : PIECE;
        assert_memory_equal(bufs[i % 2], g_data + i * PIECE, len);
    }
    bulk_close(r);
    free(bufs[0]);
    free(bufs[1]);
}

static void test_pending_limit_and_close(void **state)
{
    unsigned char buf[BULK_MAX_PENDING][16];
    bulk_reader *r = open_reader(state, 2);
    uint64_t tag;

    for (int i = 0; i < BULK_MAX_PENDING; i++)
        assert_int_equal(bulk_submit(r, (uint64_t)i * 1000, buf[i], 16, i), KILN_OK);
    assert_int_equal(bulk_submit(r, 0, buf[0], 16, 99), KILN_ERR_RANGE);
    /* bulk_read still has its own slot. */
    check_read(r, 5, 100, (unsigned char[101]){0});
    assert_int_equal(bulk_wait(r, &tag), KILN_OK);
    assert_int_equal(tag, 0);
    assert_memory_equal(buf[0], g_data, 16);
    /* Closing with requests pending waits for them and frees everything. */
    bulk_close(r);
}

static void test_truncated_after_open(void **state)
{
    char path[320];
    unsigned char *buf = malloc(4 << 20);
    bulk_reader *r;
    uint64_t tag;

    assert_non_null(buf);
    snprintf(path, sizeof path, "%s/shrinks.bin", g_dir);
    kt_write_file(path, g_data, 4 << 20);
    assert_int_equal(bulk_open_flags(path, 2, *(unsigned *)*state, &r), KILN_OK);
    assert_int_equal(truncate(path, (1 << 20) + 5), 0);
    assert_int_equal(bulk_read(r, 0, buf, 3 << 20), KILN_ERR_IO);
    assert_non_null(strstr(kiln_last_error(), "shrinks.bin"));
    assert_non_null(strstr(kiln_last_error(), "end of file"));
    assert_int_equal(bulk_submit(r, 1 << 20, buf, 1 << 20, 7), KILN_OK);
    assert_int_equal(bulk_wait(r, &tag), KILN_ERR_IO);
    assert_int_equal(tag, 7);
    assert_non_null(strstr(kiln_last_error(), "1048581"));
    assert_int_equal(bulk_read(r, 0, buf, (1 << 20) + 5), KILN_OK);
    assert_memory_equal(buf, g_data, (1 << 20) + 5);
    bulk_close(r);
    unlink(path);
    free(buf);
}

static void test_empty_file(void **state)
{
    char path[320];
    unsigned char b;
    bulk_reader *r;

    snprintf(path, sizeof path, "%s/empty.bin", g_dir);
    kt_write_file(path, "", 0);
    assert_int_equal(bulk_open_flags(path, 0, *(unsigned *)*state, &r), KILN_OK);
    assert_int_equal(bulk_size(r), 0);
    assert_int_equal(bulk_read(r, 0, &b, 0), KILN_OK);
    assert_int_equal(bulk_read(r, 0, &b, 1), KILN_ERR_IO);
    bulk_close(r);
    unlink(path);
}

static void test_open_errors(void **state)
{
    char path[320];
    bulk_reader *r;

    snprintf(path, sizeof path, "%s/missing.bin", g_dir);
    assert_int_equal(bulk_open(path, 4, &r), KILN_ERR_IO);
    assert_null(r);
    assert_non_null(strstr(kiln_last_error(), "missing.bin"));
    assert_int_equal(bulk_open(g_dir, 4, &r), KILN_ERR_IO);
    assert_non_null(strstr(kiln_last_error(), "directory"));
    assert_int_equal(bulk_open(g_path, BULK_MAX_DEPTH + 1, &r), KILN_ERR_INVALID_ARG);
    assert_int_equal(bulk_open_flags(g_path, 4, 0x80, &r), KILN_ERR_INVALID_ARG);
    bulk_close(NULL);
}

static void test_open_oom(void **state)
{
    int64_t base = kiln_alloc_bytes_in_use();
    bulk_reader *r;

    for (int n = 0; n < 3; n++) {
        kiln_alloc_fail_after(n);
        assert_int_equal(bulk_open(g_path, 4, &r), KILN_ERR_OOM);
        kiln_alloc_fail_after(-1);
        assert_null(r);
        assert_int_equal(kiln_alloc_bytes_in_use(), base);
    }
    assert_int_equal(bulk_open(g_path, 4, &r), KILN_OK);
    bulk_close(r);
    assert_int_equal(kiln_alloc_bytes_in_use(), base);
}

static void test_env_forces_pread(void **state)
{
    unsigned char buf[4097];
    bulk_reader *r;

    setenv("KILN_BULK_IO", "pread", 1);
    assert_int_equal(bulk_open(g_path, 4, &r), KILN_OK);
    unsetenv("KILN_BULK_IO");
    assert_false(bulk_uses_io_uring(r));
    check_read(r, 777, 4096, buf);
    bulk_close(r);
    assert_int_equal(bulk_open(g_path, 4, &r), KILN_OK);
    print_message("io_uring %s on this machine\n",
                  bulk_uses_io_uring(r) ? "is used" : "is not available (pread fallback)");
    bulk_close(r);
}

/* What a container with a seccomp profile does: io_uring_setup fails with
 * ENOSYS.  Runs in a child so the filter stays there. */
static int child_without_io_uring(void)
{
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fprog = {.len = sizeof prog / sizeof prog[0], .filter = prog};
    unsigned char *buf = malloc(3 << 20);
    bulk_reader *r;
    uint64_t tag;
    int bad = 0;

    if (!buf || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) != 0)
        return 2;
    if (bulk_open(g_path, 4, &r) != KILN_OK)
        return 3;
    bad |= bulk_uses_io_uring(r);
    bad |= bulk_read(r, 4097, buf, 3 << 20) != KILN_OK;
    bad |= memcmp(buf, g_data + 4097, 3 << 20) != 0;
    bad |= bulk_submit(r, 5, buf, 1000, 42) != KILN_OK;
    bad |= bulk_wait(r, &tag) != KILN_OK || tag != 42;
    bad |= memcmp(buf, g_data + 5, 1000) != 0;
    bulk_close(r);
    free(buf);
    return bad ? 4 : 0;
}

static void test_fallback_without_io_uring(void **state)
{
    kt_run_child(child_without_io_uring);
}

#define BOTH(fn)                                                              \
    cmocka_unit_test_prestate(fn, &g_flags_uring),                            \
    cmocka_unit_test_prestate(fn, &g_flags_pread)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_read_many),
        BOTH(test_past_eof),
        BOTH(test_async),
        BOTH(test_pipeline),
        BOTH(test_pending_limit_and_close),
        BOTH(test_truncated_after_open),
        BOTH(test_empty_file),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_open_oom),
        cmocka_unit_test(test_env_forces_pread),
        cmocka_unit_test(test_fallback_without_io_uring),
    };
    return cmocka_run_group_tests(tests, setup_file, teardown_file);
}
