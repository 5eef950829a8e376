/*
 * gemv.h - the decode-step matmul kernel of the CUDA backend (gemv.cu):
 * y(n, m) = x(n, k) W^T (+ bias) for n <= GEMV_MAX_ROWS rows, streaming W
 * (m, k) once at memory bandwidth.  cuda_matmul calls it for the shapes it
 * suits (few rows) and cuBLASLt for the rest.
 */
#ifndef KILN_BACKEND_CUDA_GEMV_H
#define KILN_BACKEND_CUDA_GEMV_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "kiln.h"
#include "format/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most rows of x the kernel takes. */
#define GEMV_MAX_ROWS 8
/* Largest W (elements) cuda_matmul gives it at 2..8 rows of x; at one row
 * it takes every size.  Measured on an H200, L2-cold
 * (bench/results/cuda-matmul-2026-12-02T04-36-33Z.json): at one row gemv
 * streams every 8B and 1B matrix faster than cuBLASLt (3.5-4.5 TB/s
 * against 2.4-4.3 for the 8B ones, 1.9 against 0.8 for 1024x4096); at 4
 * and 8 rows it still wins on matrices up to ~8M elements and falls behind
 * cuBLASLt's tensor-core tiles on the 16M-element ones and larger (gate/up
 * at 8 rows: 1.8 against 3.6 TB/s). */
#define GEMV_MAX_ELEMS ((int64_t)8 << 20)

/* How one launch splits the work: each block of up to 256 threads computes
 * `rows` consecutive outputs (rows of W), its threads splitting k in
 * 16-byte pieces, each thread keeping rows x unroll loads of W in flight.
 * The pairs the kernel is built for are gemv_cfg_supported's. */
typedef struct gemv_cfg {
    int rows;      /* W rows a block computes: 1, 2, 4 or 8           */
    int unroll;    /* 16-byte loads of one W row in flight: 1, 2 or 4 */
    bool pdl;      /* launch with programmatic serialization (sm_90): the
                      block's first loads of W overlap the end of the
                      kernel before it; off before sm_90                */
} gemv_cfg;

/* The split measured best for an (n, k, m) product on an H200
 * (bench/kernels/cuda_matmul_bench.c, bench/NOTES.md); pdl is false. */
void gemv_cfg_pick(int64_t n, int64_t k, int64_t m, gemv_cfg *c);

/* Whether the kernel is built for c's rows and unroll. */
bool gemv_cfg_supported(const gemv_cfg *c);

/* dt BF16 or F16; x (n, k), w (m, k), bias (m) or NULL, y (n, m), all
 * device memory of dt, 16-byte aligned, k % 8 == 0; cfg NULL picks
 * gemv_cfg_pick's split without pdl.  Queued on stream.
 * Errors: KILN_ERR_INVALID_ARG (k, n out of range, a split not built),
 * KILN_ERR_UNSUPPORTED (dt), KILN_ERR_DEVICE (launch). */
kiln_status cuda_gemv(kiln_dtype dt, const void *x, int32_t n, const void *w, const void *bias,
                      void *y, int64_t k, int64_t m, const gemv_cfg *cfg, cudaStream_t stream);

/* One product of cuda_gemv_ex: y (n, m) = x (n, k) w^T + bias, and
 * optionally
 *   w_up (m, k), bias_up: y = act(x w^T + bias) * (x w_up^T + bias_up),
 *     the gated feed-forward's input side in one launch, with the bits of
 *     two cuda_gemv calls and glu (gate and up rounded to dt, the product
 *     rounded once); act a bk_act;
 *   norm_w (k): x is RMSNorm'ed, x / rms(x) * (norm_w (+ 1 with
 *     add_one)) with eps, inside the product: the normed x is not rounded
 *     to dt as a separate bk rmsnorm's store would round it, so results
 *     may differ from rmsnorm + matmul within dt's precision;
 *   residual: y += the product (rounded to dt, then the sum rounded, bk
 *     add's bits); plain products only.
 * Pointers device memory of dt, 16-byte aligned; x does not alias y. */
typedef struct gemv_args {
    const void *x, *w, *bias;   /* bias NULL: none      */
    const void *w_up, *bias_up; /* w_up NULL: not gated */
    int act;
    const void *norm_w;         /* NULL: x as it is     */
    float eps;
    bool add_one;
    bool residual;
    void *y;
} gemv_args;

/* The product a describes, queued on stream; the rest as cuda_gemv.
 * Errors also KILN_ERR_INVALID_ARG for a residual with w_up or norm_w. */
kiln_status cuda_gemv_ex(kiln_dtype dt, const gemv_args *a, int32_t n, int64_t k, int64_t m,
                         const gemv_cfg *cfg, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* KILN_BACKEND_CUDA_GEMV_H */
