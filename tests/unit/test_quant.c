/*
 * test_quant.c - dequantization is bit-exact with the gguf Python package.
 *
 * tests/ref/gguf_quant_ref.py writes fresh random blocks of every supported
 * type (seed printed), the reference f32 output and the package's type-size
 * table into a temporary directory; this test dequantizes the same bytes and
 * compares uint32 bit patterns.  Also: f16/bf16 conversions round-trip, the
 * dtype table matches GGML_QUANT_SIZES, and bad arguments are rejected.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/alloc.h"
#include "format/quant.h"
#include "kiln_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char ref_dir[256];

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* <name> from the reference directory; owned, free(). */
static void *read_ref(const char *name, size_t *size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", ref_dir, name);
    return kt_read_file(path, size);
}

static int setup_ref(void **state)
{
    (void)state;
    kt_ref_dir(ref_dir, sizeof ref_dir, "gguf_quant_ref.py");
    return 0;
}

static int teardown_ref(void **state)
{
    (void)state;
    kt_rmtree(ref_dir);
    return 0;
}

/* Dequantize <name>.bin and compare with <name>.f32 bit for bit. */
static void check_type(const char *name, int id, int64_t n)
{
    char fn[64];
    size_t nraw, nref;
    const dtype_info *di = dtype_get(id);
    assert_non_null(di);
    snprintf(fn, sizeof fn, "%s.bin", name);
    uint8_t *raw = read_ref(fn, &nraw);
    snprintf(fn, sizeof fn, "%s.f32", name);
    float *ref = read_ref(fn, &nref);
    assert_int_equal(nref, (size_t)n * sizeof(float));
    float *out = kiln_malloc((size_t)n * sizeof(float));
    assert_non_null(out);
    assert_int_equal(quant_dequantize((kiln_dtype)id, raw, nraw, out, n), KILN_OK);
    for (int64_t i = 0; i < n; i++) {
        if (bits_of(out[i]) != bits_of(ref[i])) {
            int64_t blk = i / di->block_elems;
            fail_msg("%s: block %lld element %lld: kiln %a (0x%08x), gguf %a (0x%08x)", name,
                     (long long)blk, (long long)(i % di->block_elems), (double)out[i],
                     bits_of(out[i]), (double)ref[i], bits_of(ref[i]));
        }
    }
    kiln_free(out);
    free(raw);
    free(ref);
}

static void test_bit_exact_all_types(void **state)
{
    char *man = read_ref("manifest.txt", NULL);
    int types = 0;
    (void)state;
    char *save = NULL;
    for (char *line = strtok_r(man, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[32];
        int id;
        long long count;
        assert_int_equal(sscanf(line, "%31s %d %lld", name, &id, &count), 3);
        check_type(name, id, count);
        types++;
    }
    assert_int_equal(types, 18);
    free(man);
}

/* The dtype table against gguf.constants.GGML_QUANT_SIZES. */
static void test_sizes_match_gguf(void **state)
{
    char *sizes = read_ref("sizes.txt", NULL);
    (void)state;
    char *save = NULL;
    for (char *line = strtok_r(sizes, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[32];
        int id, be, bb;
        assert_int_equal(sscanf(line, "%d %31s %d %d", &id, name, &be, &bb), 4);
        if (id >= KILN_DT_GGML_END)
            continue; /* types newer than kiln's table (NVFP4, Q1_0): not read */
        const dtype_info *di = dtype_get(id);
        if (!di)
            fail_msg("type %d (%s) missing from the dtype table", id, name);
        assert_string_equal(di->name, name);
        assert_int_equal(di->block_elems, be);
        if (id == KILN_DT_Q8_1) {
            /* gguf-py lists Q8_1 as 40 bytes (f32 d, s), a layout ggml
             * replaced long ago: ggml-common.h static_asserts
             * sizeof(block_q8_1) == 2*sizeof(ggml_half) + 32 == 36. */
            assert_int_equal(di->block_bytes, 36);
            continue;
        }
        assert_int_equal(di->block_bytes, bb);
    }
    free(sizes);
}

/* Every finite f16 converts to f32 and back unchanged; inf too. */
static void test_f16_round_trip(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        float f = quant_f16_to_f32((uint16_t)h);
        if (((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff)) {
            assert_true(isnan(f));
            assert_true((quant_f32_to_f16(f) & 0x7e00u) == 0x7e00u); /* quiet nan */
            continue;
        }
        if (quant_f32_to_f16(f) != h)
            fail_msg("f16 0x%04x -> %a -> 0x%04x", h, (double)f, quant_f32_to_f16(f));
    }
}

static void test_f16_rounding(void **state)
{
    (void)state;
    assert_int_equal(quant_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(quant_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(quant_f32_to_f16(65520.0f), 0x7c00);   /* ties to even: overflow */
    assert_int_equal(quant_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(quant_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(quant_f32_to_f16(-INFINITY), 0xfc00);
    assert_int_equal(quant_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(quant_f32_to_f16(ldexpf(1.0f, -24)), 0x0001);  /* smallest subnormal */
    assert_int_equal(quant_f32_to_f16(ldexpf(1.0f, -25)), 0x0000);  /* tie to even: zero */
    assert_int_equal(quant_f32_to_f16(ldexpf(1.5f, -25)), 0x0001);
    assert_int_equal(quant_f32_to_f16(ldexpf(3.0f, -25)), 0x0002);  /* 1.5 ulp: tie to 2 */
    assert_int_equal(quant_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00); /* tie: even */
    assert_int_equal(quant_f32_to_f16(1.0f + ldexpf(3.0f, -11)), 0x3c02);
    assert_int_equal(quant_f32_to_f16(ldexpf(1023.0f, -24) + ldexpf(1.0f, -25)), 0x0400);
}

/* Every bf16 round-trips; f32 -> bf16 rounds to nearest even. */
static void test_bf16(void **state)
{
    (void)state;
    for (uint32_t b = 0; b < 0x10000u; b++) {
        float f = quant_bf16_to_f32((uint16_t)b);
        if (isnan(f))
            assert_true((quant_f32_to_bf16(f) & 0x7fc0u) == 0x7fc0u);
        else
            assert_int_equal(quant_f32_to_bf16(f), b);
    }
    uint32_t u = 0x3f808000u; /* 1 + 2^-8: tie, 0x3f80 is even */
    float f;
    memcpy(&f, &u, sizeof f);
    assert_int_equal(quant_f32_to_bf16(f), 0x3f80);
    u = 0x3f818000u; /* tie with an odd lower half: rounds up */
    memcpy(&f, &u, sizeof f);
    assert_int_equal(quant_f32_to_bf16(f), 0x3f82);
    u = 0x7f7fffffu; /* FLT_MAX rounds to inf */
    memcpy(&f, &u, sizeof f);
    assert_int_equal(quant_f32_to_bf16(f), 0x7f80);
}

static void test_bad_arguments(void **state)
{
    uint8_t buf[400] = {0};
    float out[512];
    (void)state;
    assert_int_equal(quant_dequantize(KILN_DT_Q4_K, buf, sizeof buf, out, 100), KILN_ERR_FORMAT);
    assert_int_equal(quant_dequantize(KILN_DT_Q4_K, buf, 143, out, 256), KILN_ERR_RANGE);
    assert_int_equal(quant_dequantize(KILN_DT_Q2_K, buf, sizeof buf, out, 256),
                     KILN_ERR_UNSUPPORTED);
    assert_int_equal(quant_dequantize((kiln_dtype)5, buf, sizeof buf, out, 32),
                     KILN_ERR_UNSUPPORTED);
    assert_int_equal(quant_dequantize(KILN_DT_F32, buf, sizeof buf, out, -1), KILN_ERR_RANGE);
    assert_int_equal(quant_dequantize(KILN_DT_Q8_0, buf, sizeof buf, out, 0), KILN_OK);
    assert_int_equal(quant_dequantize(KILN_DT_BOOL, "\0\1\7", 3, out, 3), KILN_OK);
    assert_true(out[0] == 0.0f && out[1] == 1.0f && out[2] == 1.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bit_exact_all_types),
        cmocka_unit_test(test_sizes_match_gguf),
        cmocka_unit_test(test_f16_round_trip),
        cmocka_unit_test(test_f16_rounding),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, setup_ref, teardown_ref);
}
