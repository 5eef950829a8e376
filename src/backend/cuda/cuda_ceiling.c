/*
 * cuda_ceiling.c - the device's measured ceilings, for benchmark records:
 * device-to-device copy bandwidth and the dense GEMM rate of the backend's
 * own matmul path (cuBLASLt, activation type, f32 accumulation).
 *
 * Both are timed with events on the backend's stream after a warm-up, best
 * of `iters` runs, so a benchmark reports its figure beside what this
 * GPU reached in the same process.
 */
#include "backend/cuda/cuda_impl.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_ops.h"
#include "base/error.h"

#include <string.h>

/* Best milliseconds of `iters` timed runs of fn(ctx) on cb->stream, after
 * one untimed run. */
static kiln_status ceil_time(cuda_backend *cb, int iters, kiln_status (*fn)(void *), void *ctx,
                             double *best_ms)
{
    kiln_status st = KILN_OK;
    cudaEvent_t e0 = NULL, e1 = NULL;
    float ms;

    *best_ms = 0;
    KILN_CUDA_CHECK(cudaEventCreate(&e0));
    KILN_CUDA_CHECK(cudaEventCreate(&e1));
    if ((st = fn(ctx)))
        goto err;
    for (int i = 0; i < iters; i++) {
        KILN_CUDA_CHECK(cudaEventRecord(e0, cb->stream));
        if ((st = fn(ctx)))
            goto err;
        KILN_CUDA_CHECK(cudaEventRecord(e1, cb->stream));
        KILN_CUDA_CHECK(cudaEventSynchronize(e1));
        KILN_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        if (*best_ms == 0 || ms < *best_ms)
            *best_ms = ms;
    }
err:
    if (e0)
        cudaEventDestroy(e0);
    if (e1)
        cudaEventDestroy(e1);
    return st;
}

typedef struct ceil_copy {
    cuda_backend *cb;
    void *dst, *src;
    size_t bytes;
} ceil_copy;

static kiln_status ceil_copy_once(void *ctx)
{
    ceil_copy *c = ctx;
    kiln_status st = KILN_OK;
    KILN_CUDA_CHECK(cudaMemcpyAsync(c->dst, c->src, c->bytes, cudaMemcpyDeviceToDevice,
                                    c->cb->stream));
err:
    return st;
}

kiln_status bk_cuda_copy_gbs(backend *be, size_t bytes, double *gbs)
{
    cuda_backend *cb = cuda_of(be);
    ceil_copy c = {cb, NULL, NULL, bytes};
    double ms = 0;
    kiln_status st;

    *gbs = 0;
    if (!bk_is_cuda(be) || bytes == 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "copy bandwidth: a CUDA backend and bytes > 0");
    if ((st = cuda_mem_alloc(cb, bytes, "copy bandwidth", &c.src)) ||
        (st = cuda_mem_alloc(cb, bytes, "copy bandwidth", &c.dst)))
        goto out;
    if ((st = ceil_time(cb, 10, ceil_copy_once, &c, &ms)))
        goto out;
    *gbs = ms > 0 ? 2.0 * (double)bytes / (ms * 1e-3) / 1e9 : 0; /* read + write */
out:
    cuda_mem_free(cb, c.src);
    cuda_mem_free(cb, c.dst);
    return st;
}

typedef struct ceil_gemm {
    backend *be;
    void *x, *y;
    int64_t n;
    bk_tensor w;
} ceil_gemm;

static kiln_status ceil_gemm_once(void *ctx)
{
    ceil_gemm *g = ctx;
    return cuda_matmul(g->be, g->x, g->n, &g->w, NULL, g->y);
}

kiln_status bk_cuda_gemm_tflops(backend *be, int64_t n, double *tflops)
{
    cuda_backend *cb = cuda_of(be);
    ceil_gemm g = {be, NULL, NULL, n, {0}};
    size_t bytes = (size_t)n * (size_t)n * 2;
    double ms = 0;
    kiln_status st;

    *tflops = 0;
    if (!bk_is_cuda(be) || n < 256 || n > 32768)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "gemm peak: a CUDA backend and 256 <= n <= 32768");
    if ((st = cuda_mem_alloc(cb, bytes, "gemm peak", &g.x)) ||
        (st = cuda_mem_alloc(cb, bytes, "gemm peak", &g.y)) ||
        (st = cuda_weight_random(be, n, n, 1, -0.01f, 0.01f, &g.w)) ||
        (st = cuops_fill_random(cb->act, g.x, n * n, 2, -1.0f, 1.0f, cb->stream)))
        goto out;
    if ((st = ceil_time(cb, 10, ceil_gemm_once, &g, &ms)))
        goto out;
    *tflops = ms > 0 ? 2.0 * (double)n * (double)n * (double)n / (ms * 1e-3) / 1e12 : 0;
out:
    cuda_mem_free(cb, g.x);
    cuda_mem_free(cb, g.y);
    if (g.w.data)
        cuda_weight_free(be, &g.w);
    return st;
}

const cudev_info *bk_cuda_info(const backend *be)
{
    return bk_is_cuda(be) ? &((const cuda_backend *)be)->info : NULL;
}
