/*
 * gemv.h - the decode-step matmul kernel of the CUDA backend (gemv.cu):
 * y(n, m) = x(n, k) W^T (+ bias) for n <= GEMV_MAX_ROWS rows, streaming W
 * (m, k) once at memory bandwidth.  cuda_matmul calls it for the shapes it
 * suits (small W, few rows) and cuBLASLt for the rest.
 */
#ifndef KILN_BACKEND_CUDA_GEMV_H
#define KILN_BACKEND_CUDA_GEMV_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "kiln.h"
#include "format/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most rows of x the kernel takes. */
#define GEMV_MAX_ROWS 8
/* Largest W (elements) cuda_matmul gives it: measured on an H200, gemv
 * streams 4M-element matrices 1.1-2x faster than cuBLASLt at 1..8 rows and
 * 16M-element ones up to 2x slower. */
#define GEMV_MAX_ELEMS ((int64_t)8 << 20)

/* dt BF16 or F16; x (n, k), w (m, k), bias (m) or NULL, y (n, m), all
 * device memory of dt, 16-byte aligned, k % 8 == 0.  Queued on stream.
 * Errors: KILN_ERR_INVALID_ARG (k, n out of range), KILN_ERR_UNSUPPORTED
 * (dt), KILN_ERR_DEVICE (launch). */
kiln_status cuda_gemv(kiln_dtype dt, const void *x, int32_t n, const void *w, const void *bias,
                      void *y, int64_t k, int64_t m, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* KILN_BACKEND_CUDA_GEMV_H */
