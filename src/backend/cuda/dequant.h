/*
 * dequant.h - stored GGUF tensors to f32, f16 or bf16 on the GPU.
 *
 * Used at weight-load time: the raw bytes of a quantized tensor are copied
 * to the device as they are in the file, then turned into the compute type
 * here.  The f32 results are bit-exact with quant_dequantize() on the CPU
 * (and so with gguf.quants.dequantize); f16/bf16 results are those f32
 * values rounded to nearest even, as quant_f32_to_f16/quant_f32_to_bf16.
 * When the source type is the output type the bytes are copied unchanged.
 *
 * The header includes <cuda_runtime_api.h> (a plain C header) for
 * cudaStream_t, so callers pass their stream with its real type; host .c
 * files of the CUDA backend include it anyway.
 */
#ifndef KILN_BACKEND_CUDA_DEQUANT_H
#define KILN_BACKEND_CUDA_DEQUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "format/dtype.h"

/* True when cuda_dequant_tensor has a kernel for source type `dt`:
 * Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K Q8_K F16 BF16 F32. */
bool cuda_dequant_supported(kiln_dtype dt);

/* Convert `n` elements of type `src_type` at device address `src` (holding
 * at least `src_bytes` bytes) into `dst_type` (F32, F16 or BF16) at device
 * address `dst`, which must hold n elements of that type and must not
 * overlap src.  Work is queued on `stream` and is finished only when the
 * stream is; both buffers are borrowed and must stay allocated until then.
 * n must be a whole number of blocks of src_type; n == 0 does nothing.
 * Block sources may have any alignment; F16/BF16/F32 sources must be
 * aligned to their element size.  dst must be aligned to its element size
 * (16-byte alignment gives the vector-store path).
 * Errors: KILN_ERR_UNSUPPORTED (no kernel for src_type, or dst_type is not
 * F32/F16/BF16), KILN_ERR_FORMAT (n not a whole number of blocks),
 * KILN_ERR_RANGE (n < 0, or src_bytes too small for n),
 * KILN_ERR_INVALID_ARG (NULL or misaligned pointers), KILN_ERR_DEVICE (a
 * launch failed; with KILN_CUDA_SYNC_CHECK=1 also a fault while running). */
kiln_status cuda_dequant_tensor(kiln_dtype src_type, const void *src, size_t src_bytes,
                                kiln_dtype dst_type, void *dst, int64_t n,
                                cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* KILN_BACKEND_CUDA_DEQUANT_H */
