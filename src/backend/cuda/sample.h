/*
 * sample.h - choosing tokens on the GPU (sample.cu): the greedy argmax and
 * the host sampler's full pipeline (penalties, temperature, min_p, top_k,
 * top_p, the draw), so that only token ids leave the device.
 *
 * Contract of every cusmp_ function: dt is the logits' type (KILN_DT_BF16
 * or KILN_DT_F16); pointers are borrowed device memory; work is queued on
 * `stream`.  Errors: KILN_ERR_UNSUPPORTED (dt), KILN_ERR_DEVICE (launch).
 */
#ifndef KILN_BACKEND_CUDA_SAMPLE_H
#define KILN_BACKEND_CUDA_SAMPLE_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "kiln.h"
#include "backend/backend.h"
#include "format/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of the workspace cusmp_argmax needs for `rows` rows. */
#define CUSMP_ARGMAX_WS(rows) ((size_t)(rows) * 12)

/* ids[r] = the index of the largest element of row r of x (rows, cols):
 * the lowest such index on ties, NaN never chosen (0 for a row of NaN).
 * ws: CUSMP_ARGMAX_WS(rows) bytes of device memory, 8-byte aligned, zero
 * before the first call (each call leaves it zero). */
kiln_status cusmp_argmax(kiln_dtype dt, const void *x, int64_t rows, int64_t cols, void *ws,
                         int32_t *ids, cudaStream_t stream);

/* ids[r] = the token row r of x (rows, cols) draws under p[r] (bk sample,
 * backend.h); counts (slots x cols) or NULL; sm_count: the device's
 * multiprocessors (the cluster size's rule).  cols <= INT32_MAX, rows <=
 * 65535 (KILN_ERR_INVALID_ARG past it). */
kiln_status cusmp_sample(kiln_dtype dt, const void *x, int64_t rows, int64_t cols,
                         const bk_sample_row *p, uint16_t *counts, int32_t *ids, int sm_count,
                         cudaStream_t stream);

/* The blocks that share one row of cusmp_sample, for the process: 1, 2,
 * 4, 8 or 16 (a thread block cluster, sm_90), or 0 (the default): chosen
 * per call from the rows and the device (the most, up to 16, that keep two
 * blocks an SM; 1 before sm_90).  Any size draws the same tokens; tests
 * and the kernel lab force each.  A forced size the device cannot run makes
 * cusmp_sample fail with KILN_ERR_UNSUPPORTED.  Errors:
 * KILN_ERR_INVALID_ARG (another size; the one in force is kept). */
kiln_status cusmp_set_cluster(int blocks);

/* row (cols) = 0, then row[ids[i]] = BK_SAMPLE_PROMPT for the n ids in
 * [0, cols) (ids: device memory). */
kiln_status cusmp_reset(uint16_t *row, int64_t cols, const int32_t *ids, int32_t n,
                        cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* KILN_BACKEND_CUDA_SAMPLE_H */
