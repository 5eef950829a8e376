/*
 * cuda_backend.h - the CUDA backend: the bk_ops op set of backend.h on one
 * NVIDIA GPU.
 *
 * Activations, weights and the KV cache are BF16 (the default) or F16, the
 * backend's activation type; weights of any stored type kiln reads are
 * converted to it when loaded (GGUF quantized types dequantized on the GPU),
 * vector weights (norm weights, biases) included.  Matmuls go through
 * cuBLASLt with f32 accumulation; every other op is a kernel of
 * cuda_ops.cu that computes in f32.  Work runs on one compute stream the
 * backend owns (weights are copied on a second stream); ops return once the
 * work is queued, bk download / to_host_f32 / sync wait for it.
 *
 * The backend is used from one thread at a time.  Creation makes `device`
 * the calling thread's current device; ops run on the thread's current
 * device, so a thread that drives several GPUs sets it before each call.
 */
#ifndef KILN_BACKEND_CUDA_BACKEND_H
#define KILN_BACKEND_CUDA_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_device.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creation options; bk_cuda_opts_default() fills the defaults. */
typedef struct bk_cuda_opts {
    int device;                 /* CUDA device ordinal (0)                          */
    kiln_dtype act_dtype;       /* KILN_DT_BF16 (default) or KILN_DT_F16            */
    size_t stage_bytes;         /* bytes of each of the two weight staging buffers
                                   (pinned host + device); 16 MiB                   */
    size_t workspace_bytes;     /* cuBLASLt workspace; 32 MiB                       */
    bool no_gemv;               /* matmuls of <= 8 rows through cuBLASLt too (also
                                   KILN_CUDA_NO_GEMV=1); for comparisons            */
    bool gelu_tanh;             /* the erf GELU after a matmul (BERT's feed-forward)
                                   in cuBLASLt's epilogue, which computes its tanh
                                   form: one launch, within ~4.7e-4 of erf's value
                                   an element (also KILN_CUDA_GELU_TANH=1); off:
                                   the erf form by a kernel of its own              */
} bk_cuda_opts;

void bk_cuda_opts_default(bk_cuda_opts *o);

/* The CUDA backend on `o->device`.  *out owned: out->ops->destroy(out).
 * Errors: KILN_ERR_DEVICE (no GPU, no driver, driver too old, a CUDA call
 * failed), KILN_ERR_UNSUPPORTED (compute capability below 8.0),
 * KILN_ERR_INVALID_ARG (bad device ordinal or activation type, staging
 * below 1 MiB), KILN_ERR_OOM (host or device memory).  The message says
 * which, with the file:line of a failed CUDA call. */
kiln_status bk_cuda_create_opts(const bk_cuda_opts *o, backend **out);

/* bk_cuda_create_opts with the defaults, `device` and `act_dtype`. */
kiln_status bk_cuda_create(int device, kiln_dtype act_dtype, backend **out);

/* True when `be` is a CUDA backend. */
bool bk_is_cuda(const backend *be);

/* Device memory the backend holds now, and at most so far (bytes): buffers,
 * weights, KV cache, staging and workspaces. */
size_t bk_cuda_bytes_in_use(const backend *be);
size_t bk_cuda_bytes_peak(const backend *be);

/* The device the backend runs on (borrowed, valid for the backend's
 * life); NULL when `be` is not a CUDA backend.  free_mem is as of creation. */
const cudev_info *bk_cuda_info(const backend *be);

/* Measured ceilings (cuda_ceiling.c), waited for before returning:
 * device-to-device copy of `bytes`, read + write counted, in GB/s; and the
 * rate of an n x n x n matmul through the backend's own cuBLASLt path in
 * its activation type, in TFLOP/s.  Best of 10 runs after a warm-up.
 * Errors: KILN_ERR_INVALID_ARG (not CUDA, bad size), KILN_ERR_OOM,
 * KILN_ERR_DEVICE. */
kiln_status bk_cuda_copy_gbs(backend *be, size_t bytes, double *gbs);
kiln_status bk_cuda_gemm_tflops(backend *be, int64_t n, double *tflops);

/* What the matmul planner did so far (cuda_matmul.c): plans made, calls
 * of cuBLASLt's algorithm heuristic, checks of a bucket's algorithm at
 * another row count and tunings (candidates timed), with the host seconds
 * each took (the GPU waits through them when the product is the next work
 * it has). */
typedef struct bk_cuda_mm_stats {
    int64_t plans;
    int64_t heuristic_calls;
    double heuristic_s;
    int64_t checks;
    int64_t check_misses;       /* checks that refused the bucket's algorithm      */
    double check_s;
    int64_t tuned;              /* plans whose candidates were timed               */
    int64_t tuned_away;         /* ... where another than the heuristic's first won */
    double tune_s;
} bk_cuda_mm_stats;

/* *out = the planner's counts of `be`; zeros when it is not CUDA. */
void bk_cuda_mm_stats_get(const backend *be, bk_cuda_mm_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* KILN_BACKEND_CUDA_BACKEND_H */
