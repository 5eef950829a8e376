/* test_kv_cache.c - the KV block pool: append/release, slots, exhaustion,
 * context limits, fragmentation, bad arguments, OOM paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "engine/kv_cache.h"
#include "kiln.h"

static void test_create_args(void **state)
{
    kv_cache *kv = (kv_cache *)1;
    assert_int_equal(kv_create(10, 12, 2, 4, &kv), KILN_ERR_INVALID_ARG);
    assert_null(kv);
    assert_non_null(strstr(kiln_last_error(), "block size 12"));
    assert_int_equal(kv_create(0, 16, 2, 4, &kv), KILN_ERR_INVALID_ARG);
    assert_int_equal(kv_create(10, 16, 0, 4, &kv), KILN_ERR_INVALID_ARG);
    assert_int_equal(kv_create(10, 16, 2, -1, &kv), KILN_ERR_INVALID_ARG);
    assert_int_equal(kv_create(10, 16, INT32_MAX, INT32_MAX, &kv), KILN_ERR_RANGE);
    for (int32_t bs = 8; bs <= 32; bs *= 2) {
        assert_int_equal(kv_create(10, bs, 2, 4, &kv), KILN_OK);
        assert_int_equal(kv_block_size(kv), bs);
        assert_int_equal(kv_free_blocks(kv), 10);
        assert_true(kv_check(kv));
        kv_free(kv);
    }
    kv_free(NULL);
}

static void test_append_release(void **state)
{
    kv_cache *kv;
    assert_int_equal(kv_create(8, 16, 3, 4, &kv), KILN_OK);
    assert_int_equal(kv_blocks_for(kv, 0), 0);
    assert_int_equal(kv_blocks_for(kv, 1), 1);
    assert_int_equal(kv_blocks_for(kv, 16), 1);
    assert_int_equal(kv_blocks_for(kv, 17), 2);

    /* 5-token prompt, then decode tokens one by one across a block edge */
    assert_int_equal(kv_seq_append(kv, 0, 5), KILN_OK);
    assert_int_equal(kv_seq_len(kv, 0), 5);
    assert_int_equal(kv_seq_n_blocks(kv, 0), 1);
    assert_int_equal(kv_free_blocks(kv), 7);
    for (int i = 0; i < 11; i++)
        assert_int_equal(kv_seq_append(kv, 0, 1), KILN_OK);
    assert_int_equal(kv_seq_n_blocks(kv, 0), 1);
    assert_int_equal(kv_seq_append(kv, 0, 1), KILN_OK);
    assert_int_equal(kv_seq_len(kv, 0), 17);
    assert_int_equal(kv_seq_n_blocks(kv, 0), 2);
    assert_true(kv_check(kv));

    /* a fresh pool hands out 0, 1, ...; slots follow the table */
    const int32_t *row = kv_seq_table(kv, 0);
    assert_int_equal(row[0], 0);
    assert_int_equal(row[1], 1);
    assert_int_equal(row[2], -1);
    assert_int_equal(kv_slot(kv, 0, 0), 0);
    assert_int_equal(kv_slot(kv, 0, 15), 15);
    assert_int_equal(kv_slot(kv, 0, 16), 16);
    assert_int_equal(kv_seq_append(kv, 1, 3), KILN_OK);
    assert_int_equal(kv_seq_table(kv, 1)[0], 2);
    assert_int_equal(kv_slot(kv, 1, 2), 2 * 16 + 2);
    assert_ptr_equal(kv_tables(kv) + 4, kv_seq_table(kv, 1));

    /* zero-token append is a no-op; release returns every block */
    assert_int_equal(kv_seq_append(kv, 2, 0), KILN_OK);
    assert_int_equal(kv_seq_n_blocks(kv, 2), 0);
    kv_seq_release(kv, 0);
    assert_int_equal(kv_seq_len(kv, 0), 0);
    assert_int_equal(kv_free_blocks(kv), 7);
    assert_int_equal(kv_seq_table(kv, 0)[0], -1);
    kv_seq_release(kv, 0); /* twice is harmless */
    assert_true(kv_check(kv));

    /* released blocks are reused, first block first */
    assert_int_equal(kv_seq_append(kv, 2, 1), KILN_OK);
    assert_int_equal(kv_seq_table(kv, 2)[0], 0);
    assert_true(kv_check(kv));

    assert_int_equal(kv_seq_append(kv, 3, 1), KILN_ERR_INVALID_ARG);
    assert_int_equal(kv_seq_append(kv, -1, 1), KILN_ERR_INVALID_ARG);
    assert_int_equal(kv_seq_append(kv, 0, -2), KILN_ERR_INVALID_ARG);
    kv_free(kv);
}

static void test_exhaustion(void **state)
{
    kv_cache *kv;
    assert_int_equal(kv_create(4, 8, 2, 8, &kv), KILN_OK);
    assert_int_equal(kv_seq_append(kv, 0, 24), KILN_OK); /* 3 blocks */
    assert_int_equal(kv_free_blocks(kv), 1);
    /* 9 tokens need 2 blocks: fails and changes nothing */
    assert_int_equal(kv_seq_append(kv, 1, 9), KILN_ERR_RANGE);
    assert_non_null(strstr(kiln_last_error(), "pool exhausted"));
    assert_non_null(strstr(kiln_last_error(), "1 of 4 are free"));
    assert_int_equal(kv_seq_len(kv, 1), 0);
    assert_int_equal(kv_free_blocks(kv), 1);
    assert_true(kv_check(kv));
    assert_int_equal(kv_seq_append(kv, 1, 8), KILN_OK);
    assert_int_equal(kv_free_blocks(kv), 0);
    /* sequence 0 is exactly full: one more token needs a block */
    assert_int_equal(kv_seq_append(kv, 0, 1), KILN_ERR_RANGE);
    assert_int_equal(kv_seq_len(kv, 0), 24);
    kv_seq_release(kv, 1);
    assert_int_equal(kv_seq_append(kv, 0, 1), KILN_OK);
    assert_true(kv_check(kv));
    kv_free(kv);
}

static void test_context_limit(void **state)
{
    kv_cache *kv;
    assert_int_equal(kv_create(100, 16, 2, 2, &kv), KILN_OK);
    assert_int_equal(kv_seq_append(kv, 0, 32), KILN_OK);
    assert_int_equal(kv_seq_append(kv, 0, 1), KILN_ERR_RANGE);
    assert_non_null(strstr(kiln_last_error(), "context full"));
    assert_int_equal(kv_seq_append(kv, 1, 33), KILN_ERR_RANGE);
    assert_int_equal(kv_seq_append(kv, 1, INT32_MAX), KILN_ERR_RANGE);
    assert_int_equal(kv_seq_len(kv, 1), 0);
    assert_true(kv_check(kv));
    kv_free(kv);
}

/* Interleaved sequences leave the free list scattered; a long sequence
 * still gets every block, in a table that is not contiguous, and its
 * slots map one-to-one onto the pool. */
static void test_fragmentation(void **state)
{
    enum { NB = 16, BS = 8, NS = 8 };
    kv_cache *kv;
    assert_int_equal(kv_create(NB, BS, NS, NB, &kv), KILN_OK);
    for (int round = 0; round < 2; round++)
        for (int s = 0; s < NS; s++)
            assert_int_equal(kv_seq_append(kv, s, BS), KILN_OK);
    assert_int_equal(kv_free_blocks(kv), 0);
    for (int s = 0; s < NS; s += 2)
        kv_seq_release(kv, s);
    assert_int_equal(kv_free_blocks(kv), NB / 2);
    assert_true(kv_check(kv));
    for (int s = 2; s < NS; s += 2)
        assert_int_equal(kv_seq_append(kv, 0, 2 * BS), KILN_OK);
    assert_int_equal(kv_seq_append(kv, 0, 2 * BS), KILN_OK);
    assert_int_equal(kv_seq_len(kv, 0), NB / 2 * BS);
    assert_int_equal(kv_free_blocks(kv), 0);
    assert_true(kv_check(kv));

    const int32_t *row = kv_seq_table(kv, 0);
    bool contiguous = true;
    for (int i = 1; i < NB / 2; i++)
        contiguous &= row[i] == row[i - 1] + 1;
    assert_false(contiguous);

    /* every slot of the pool is used by exactly one token */
    unsigned char used[NB * BS] = {0};
    for (int s = 0; s < NS; s++)
        for (int32_t p = 0; p < kv_seq_len(kv, s); p++) {
            int32_t slot = kv_slot(kv, s, p);
            assert_true(slot >= 0 && slot < NB * BS);
            assert_int_equal(used[slot], 0);
            used[slot] = 1;
        }
    for (int i = 0; i < NB * BS; i++)
        assert_int_equal(used[i], 1);

    /* release everything: the pool is whole again */
    for (int s = 0; s < NS; s++)
        kv_seq_release(kv, s);
    assert_int_equal(kv_free_blocks(kv), NB);
    assert_true(kv_check(kv));
    kv_free(kv);
}

/* Random appends and releases keep every invariant. */
static void test_random_churn(void **state)
{
    kv_cache *kv;
    unsigned seed = 12345;
    assert_int_equal(kv_create(64, 16, 6, 20, &kv), KILN_OK);
    for (int i = 0; i < 5000; i++) {
        seed = seed * 1103515245u + 12345u;
        int s = (int)((seed >> 16) % 6);
        int op = (int)((seed >> 8) % 10);
        if (op == 0) {
            kv_seq_release(kv, s);
        } else {
            int32_t before = kv_seq_len(kv, s), fb = kv_free_blocks(kv);
            kiln_status st = kv_seq_append(kv, s, op == 1 ? 40 : 1);
            if (st) {
                assert_int_equal(st, KILN_ERR_RANGE);
                assert_int_equal(kv_seq_len(kv, s), before);
                assert_int_equal(kv_free_blocks(kv), fb);
            }
        }
        if (i % 97 == 0)
            assert_true(kv_check(kv));
    }
    assert_true(kv_check(kv));
    kv_free(kv);
}

static void test_oom(void **state)
{
    int64_t base = kiln_alloc_bytes_in_use();
    for (int64_t n = 0; n < 6; n++) {
        kv_cache *kv = (kv_cache *)1;
        kiln_alloc_fail_after(n);
        assert_int_equal(kv_create(32, 16, 4, 8, &kv), KILN_ERR_OOM);
        kiln_alloc_fail_after(-1);
        assert_null(kv);
        assert_int_equal(kiln_alloc_bytes_in_use(), base);
    }
    kv_cache *kv;
    kiln_alloc_fail_after(6);
    assert_int_equal(kv_create(32, 16, 4, 8, &kv), KILN_OK);
    /* the pool allocates nothing once made */
    assert_int_equal(kv_seq_append(kv, 0, 100), KILN_OK);
    kv_seq_release(kv, 0);
    kiln_alloc_fail_after(-1);
    kv_free(kv);
    assert_int_equal(kiln_alloc_bytes_in_use(), base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_args),
        cmocka_unit_test(test_append_release),
        cmocka_unit_test(test_exhaustion),
        cmocka_unit_test(test_context_limit),
        cmocka_unit_test(test_fragmentation),
        cmocka_unit_test(test_random_churn),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
