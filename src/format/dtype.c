/* dtype.c - the element type table; see dtype.h.  Sizes follow GGML's
 * block layouts (checked in tests against the gguf package's table). */
#include "format/dtype.h"

#include "base/checked.h"
#include "base/error.h"

#include <strings.h>

static const dtype_info dtype_table[KILN_DT_COUNT] = {
    [KILN_DT_F32] = {"F32", 1, 4, true},
    [KILN_DT_F16] = {"F16", 1, 2, true},
    [KILN_DT_Q4_0] = {"Q4_0", 32, 18, true},
    [KILN_DT_Q4_1] = {"Q4_1", 32, 20, true},
    [KILN_DT_Q5_0] = {"Q5_0", 32, 22, true},
    [KILN_DT_Q5_1] = {"Q5_1", 32, 24, true},
    [KILN_DT_Q8_0] = {"Q8_0", 32, 34, true},
    [KILN_DT_Q8_1] = {"Q8_1", 32, 36, false},
    [KILN_DT_Q2_K] = {"Q2_K", 256, 84, false},
    [KILN_DT_Q3_K] = {"Q3_K", 256, 110, false},
    [KILN_DT_Q4_K] = {"Q4_K", 256, 144, true},
    [KILN_DT_Q5_K] = {"Q5_K", 256, 176, true},
    [KILN_DT_Q6_K] = {"Q6_K", 256, 210, true},
    [KILN_DT_Q8_K] = {"Q8_K", 256, 292, true},
    [KILN_DT_IQ2_XXS] = {"IQ2_XXS", 256, 66, false},
    [KILN_DT_IQ2_XS] = {"IQ2_XS", 256, 74, false},
    [KILN_DT_IQ3_XXS] = {"IQ3_XXS", 256, 98, false},
    [KILN_DT_IQ1_S] = {"IQ1_S", 256, 50, false},
    [KILN_DT_IQ4_NL] = {"IQ4_NL", 32, 18, false},
    [KILN_DT_IQ3_S] = {"IQ3_S", 256, 110, false},
    [KILN_DT_IQ2_S] = {"IQ2_S", 256, 82, false},
    [KILN_DT_IQ4_XS] = {"IQ4_XS", 256, 136, false},
    [KILN_DT_I8] = {"I8", 1, 1, true},
    [KILN_DT_I16] = {"I16", 1, 2, true},
    [KILN_DT_I32] = {"I32", 1, 4, true},
    [KILN_DT_I64] = {"I64", 1, 8, true},
    [KILN_DT_F64] = {"F64", 1, 8, true},
    [KILN_DT_IQ1_M] = {"IQ1_M", 256, 56, false},
    [KILN_DT_BF16] = {"BF16", 1, 2, true},
    [KILN_DT_TQ1_0] = {"TQ1_0", 256, 54, false},
    [KILN_DT_TQ2_0] = {"TQ2_0", 256, 66, false},
    [KILN_DT_MXFP4] = {"MXFP4", 32, 17, false},
    [KILN_DT_U8] = {"U8", 1, 1, true},
    [KILN_DT_BOOL] = {"BOOL", 1, 1, true},
};

const dtype_info *dtype_get(int64_t dt)
{
    if (dt < 0 || dt >= KILN_DT_COUNT || !dtype_table[dt].name)
        return NULL;
    return &dtype_table[dt];
}

const char *dtype_name(int64_t dt)
{
    const dtype_info *di = dtype_get(dt);
    return di ? di->name : "?";
}

bool dtype_from_name(const char *name, kiln_dtype *out)
{
    for (int i = 0; i < KILN_DT_COUNT; i++) {
        if (dtype_table[i].name && !strcasecmp(dtype_table[i].name, name)) {
            *out = (kiln_dtype)i;
            return true;
        }
    }
    return false;
}

kiln_status dtype_nbytes(kiln_dtype dt, int64_t n_elems, uint64_t *out)
{
    const dtype_info *di = dtype_get(dt);
    if (!di)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "unknown tensor type %d", (int)dt);
    if (n_elems < 0)
        return kiln_err_set(KILN_ERR_RANGE, "negative element count");
    if ((uint64_t)n_elems % (uint64_t)di->block_elems)
        return kiln_err_set(KILN_ERR_FORMAT,
                            "%lld elements of %s are not a whole number of %d-element blocks",
                            (long long)n_elems, di->name, di->block_elems);
    if (!ck_mul_u64((uint64_t)n_elems / (uint64_t)di->block_elems, (uint64_t)di->block_bytes, out))
        return kiln_err_set(KILN_ERR_RANGE, "%lld elements of %s overflow a byte count",
                            (long long)n_elems, di->name);
    return KILN_OK;
}
