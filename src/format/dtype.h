/*
 * dtype.h - element types of stored tensors, shared by every file format.
 *
 * Values are the GGML type ids (so a GGUF type field maps 1:1); types that
 * only safetensors has (U8, BOOL) sit above the GGML range.  Block types hold
 * `block_elems` elements in `block_bytes` bytes; scalar types have
 * block_elems == 1.
 */
#ifndef KILN_FORMAT_DTYPE_H
#define KILN_FORMAT_DTYPE_H

#include "kiln.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kiln_dtype {
    KILN_DT_F32 = 0,
    KILN_DT_F16 = 1,
    KILN_DT_Q4_0 = 2,
    KILN_DT_Q4_1 = 3,
    KILN_DT_Q5_0 = 6,
    KILN_DT_Q5_1 = 7,
    KILN_DT_Q8_0 = 8,
    KILN_DT_Q8_1 = 9,
    KILN_DT_Q2_K = 10,
    KILN_DT_Q3_K = 11,
    KILN_DT_Q4_K = 12,
    KILN_DT_Q5_K = 13,
    KILN_DT_Q6_K = 14,
    KILN_DT_Q8_K = 15,
    KILN_DT_IQ2_XXS = 16,
    KILN_DT_IQ2_XS = 17,
    KILN_DT_IQ3_XXS = 18,
    KILN_DT_IQ1_S = 19,
    KILN_DT_IQ4_NL = 20,
    KILN_DT_IQ3_S = 21,
    KILN_DT_IQ2_S = 22,
    KILN_DT_IQ4_XS = 23,
    KILN_DT_I8 = 24,
    KILN_DT_I16 = 25,
    KILN_DT_I32 = 26,
    KILN_DT_I64 = 27,
    KILN_DT_F64 = 28,
    KILN_DT_IQ1_M = 29,
    KILN_DT_BF16 = 30,
    KILN_DT_TQ1_0 = 34,
    KILN_DT_TQ2_0 = 35,
    KILN_DT_MXFP4 = 39,
    KILN_DT_GGML_END = 40, /* first id past the GGML range */
    KILN_DT_U8 = 64,
    KILN_DT_BOOL = 65,
    KILN_DT_COUNT = 66
} kiln_dtype;

typedef struct dtype_info {
    const char *name;     /* "Q4_K", "BF16", ...; NULL for unused ids */
    int32_t block_elems;  /* elements per block (1 for scalar types)  */
    int32_t block_bytes;  /* bytes per block                           */
    bool dequant;         /* kiln can dequantize/convert it to f32     */
} dtype_info;

/* Table entry for `dt`, or NULL when `dt` is no known type.  Borrowed, static. */
const dtype_info *dtype_get(int64_t dt);

/* Name of a type, "?" if unknown.  Static storage. */
const char *dtype_name(int64_t dt);

/* Look a type up by its name (case-insensitive); false if none. */
bool dtype_from_name(const char *name, kiln_dtype *out);

/* Bytes of `n_elems` elements of type dt into *out.  Errors:
 * KILN_ERR_UNSUPPORTED (unknown type), KILN_ERR_FORMAT (n_elems not a
 * multiple of the block size), KILN_ERR_RANGE (overflow or n_elems < 0). */
kiln_status dtype_nbytes(kiln_dtype dt, int64_t n_elems, uint64_t *out);

#ifdef __cplusplus
}
#endif

#endif /* KILN_FORMAT_DTYPE_H */
