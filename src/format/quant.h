/*
 * quant.h - GGML block formats and conversion of stored tensors to f32.
 *
 * Block layouts are GGML's (little-endian, packed):
 *   Q4_0 {f16 d; u8 qs[16]}            Q4_1 {f16 d, m; u8 qs[16]}
 *   Q5_0 {f16 d; u8 qh[4]; u8 qs[16]}  Q5_1 {f16 d, m; u8 qh[4]; u8 qs[16]}
 *   Q8_0 {f16 d; i8 qs[32]}
 *   Q4_K {f16 d, dmin; u8 scales[12]; u8 qs[128]}
 *   Q5_K {f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}
 *   Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}
 *   Q8_K {f32 d; i8 qs[256]; i16 bsums[16]}
 * Results are bit-exact with the `gguf` Python package's
 * gguf.quants.dequantize (tested in CI on random blocks of every type).
 */
#ifndef KILN_FORMAT_QUANT_H
#define KILN_FORMAT_QUANT_H

#include "format/dtype.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* IEEE half / bfloat16 <-> f32 (round to nearest even on the way down). */
float quant_f16_to_f32(uint16_t h);
uint16_t quant_f32_to_f16(float f);
float quant_bf16_to_f32(uint16_t b);
uint16_t quant_f32_to_bf16(float f);

/* Convert `n` elements of type `dt` starting at `src` (which holds at least
 * `src_bytes` bytes) into dst[0..n).  n must be a whole number of blocks.
 * Supported: F32 F16 BF16 F64 I8 I16 I32 I64 U8 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0
 * Q4_K Q5_K Q6_K Q8_K (dtype_get(dt)->dequant).
 * Errors: KILN_ERR_UNSUPPORTED (other types), KILN_ERR_FORMAT (n not a whole
 * number of blocks), KILN_ERR_RANGE (src_bytes too small for n). */
kiln_status quant_dequantize(kiln_dtype dt, const void *src, size_t src_bytes, float *dst,
                             int64_t n);

#ifdef __cplusplus
}
#endif

#endif /* KILN_FORMAT_QUANT_H */
