/*
 * cuda_weight.c - weights from file bytes (host memory, usually a mapped
 * file) into device memory in the backend's activation type.
 *
 * Every stored type the GPU converts (cuda_dequant_supported: F32, F16,
 * BF16 and the GGUF block types) becomes BF16 or F16, vectors (norm
 * weights, biases) included, so every kernel reads one element type.  The
 * tensor's bytes travel in chunks of whole blocks through two staging
 * slots, each a pinned host buffer and a device buffer:
 *
 *     host:  memcpy chunk 0 -> H0 | memcpy chunk 1 -> H1 | wait F0, memcpy chunk 2 -> H0 ...
 *     copy_stream:  H0 -> D0, rec F0, dequant D0 -> dst | H1 -> D1, rec F1, dequant D1 -> dst ...
 *
 * so the host copy of chunk i+1 (reading the mapped file) overlaps the
 * device copy and conversion of chunk i.  Event F_s is recorded when slot
 * s's host buffer has been copied out; the host waits on it before writing
 * that buffer again.  The device buffers need no event: the copy stream
 * runs the copy into D_s and the conversion reading it in order.  A chunk
 * already in the activation type is copied straight into place.
 *
 * After the last chunk, an event on the copy stream makes the compute
 * stream wait, so any op queued after bk weight returns sees the weight;
 * the host thread does not wait for the device.
 */
#include "backend/cuda/cuda_impl.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_ops.h"
#include "backend/cuda/dequant.h"
#include "base/checked.h"
#include "base/error.h"

#include <string.h>

/* Allocate the staging slots and their events on first use. */
static kiln_status stage_ensure(cuda_backend *cb)
{
    kiln_status st = KILN_OK;

    if (cb->stage_host[0])
        return KILN_OK;
    for (int s = 0; s < 2; s++) {
        KILN_CUDA_CHECK(cudaEventCreateWithFlags(&cb->stage_free[s], cudaEventDisableTiming));
        KILN_CUDA_CHECK(cudaHostAlloc(&cb->stage_host[s], cb->stage_bytes, cudaHostAllocDefault));
        if ((st = cuda_mem_alloc(cb, cb->stage_bytes, "weight staging", &cb->stage_dev[s])))
            goto err;
    }
    return KILN_OK;
err:
    cuda_stage_free(cb);
    return st;
}

void cuda_stage_free(cuda_backend *cb)
{
    for (int s = 0; s < 2; s++) {
        if (cb->stage_free[s]) {
            (void)cudaEventSynchronize(cb->stage_free[s]);
            cudaEventDestroy(cb->stage_free[s]);
        }
        if (cb->stage_host[s])
            cudaFreeHost(cb->stage_host[s]);
        cuda_mem_free(cb, cb->stage_dev[s]);
        cb->stage_free[s] = NULL;
        cb->stage_host[s] = NULL;
        cb->stage_dev[s] = NULL;
    }
    (void)cudaGetLastError();
}

/* Queue the chunks of `n_blocks` blocks of `dt` at src into dst (elements
 * of the activation type), through the staging slots. */
static kiln_status stage_tensor(cuda_backend *cb, kiln_dtype dt, const dtype_info *di,
                                const uint8_t *src, uint64_t n_blocks, uint8_t *dst)
{
    kiln_status st = KILN_OK;
    uint64_t chunk_blocks = cb->stage_bytes / (uint64_t)di->block_bytes;
    bool same = dt == cb->act;

    for (uint64_t b0 = 0, i = 0; b0 < n_blocks; b0 += chunk_blocks, i++) {
        int s = (int)(i & 1);
        uint64_t nb = n_blocks - b0 < chunk_blocks ? n_blocks - b0 : chunk_blocks;
        size_t bytes = (size_t)(nb * (uint64_t)di->block_bytes);
        uint8_t *out = dst + b0 * (uint64_t)di->block_elems * 2u;

        KILN_CUDA_CHECK(cudaEventSynchronize(cb->stage_free[s]));
        memcpy(cb->stage_host[s], src + b0 * (uint64_t)di->block_bytes, bytes);
        KILN_CUDA_CHECK(cudaMemcpyAsync(same ? (void *)out : cb->stage_dev[s], cb->stage_host[s],
                                        bytes, cudaMemcpyHostToDevice, cb->copy_stream));
        KILN_CUDA_CHECK(cudaEventRecord(cb->stage_free[s], cb->copy_stream));
        if (!same && (st = cuda_dequant_tensor(dt, cb->stage_dev[s], bytes, cb->act, out,
                                               (int64_t)(nb * (uint64_t)di->block_elems),
                                               cb->copy_stream)))
            goto err;
    }
    KILN_CUDA_CHECK(cudaEventRecord(cb->weights_ready, cb->copy_stream));
    KILN_CUDA_CHECK(cudaStreamWaitEvent(cb->stream, cb->weights_ready, 0));
err:
    return st;
}

/* Checks of file bytes for ne1 rows of ne0 of dtype; their block count. */
static kiln_status weight_src_check(cuda_backend *cb, kiln_dtype dtype, int64_t ne0, int64_t ne1,
                                    const void *src, size_t src_bytes, uint64_t *n_blocks)
{
    const dtype_info *di = dtype_get(dtype);
    uint64_t row_bytes, total;
    kiln_status st;

    if (!di || !cuda_dequant_supported(dtype))
        return kiln_err_set(KILN_ERR_UNSUPPORTED,
                            "cuda weight: type %s has no GPU conversion to %s", dtype_name(dtype),
                            dtype_name(cb->act));
    if (ne0 <= 0 || ne1 <= 0 || !src)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda weight: bad shape %lld x %lld",
                            (long long)ne1, (long long)ne0);
    if ((st = dtype_nbytes(dtype, ne0, &row_bytes)))
        return kiln_err_wrap(st, "cuda weight (%s, row of %lld)", di->name, (long long)ne0);
    if (!ck_mul_u64(row_bytes, (uint64_t)ne1, &total) || total > src_bytes)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "cuda weight: %lld x %lld %s needs more than the %zu bytes given",
                            (long long)ne1, (long long)ne0, di->name, src_bytes);
    *n_blocks = total / (uint64_t)di->block_bytes;
    return KILN_OK;
}

kiln_status cuda_weight_empty(backend *be, int64_t ne0, int64_t ne1, bk_tensor *out)
{
    cuda_backend *cb = cuda_of(be);
    uint64_t elems, bytes;
    void *dst = NULL;
    kiln_status st;

    memset(out, 0, sizeof *out);
    if (ne0 <= 0 || ne1 <= 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda weight_empty: bad shape %lld x %lld",
                            (long long)ne1, (long long)ne0);
    if (!ck_mul_u64((uint64_t)ne0, (uint64_t)ne1, &elems) || !ck_mul_u64(elems, 2, &bytes) ||
        bytes > SIZE_MAX)
        return kiln_err_set(KILN_ERR_RANGE, "cuda weight: %lld x %lld elements overflow",
                            (long long)ne1, (long long)ne0);
    if ((st = cuda_mem_alloc(cb, (size_t)bytes, "weight", &dst)))
        return kiln_err_wrap(st, "cuda weight (%lld x %lld)", (long long)ne1, (long long)ne0);
    out->dtype = cb->act;
    out->ne0 = ne0;
    out->ne1 = ne1;
    out->row_bytes = (size_t)ne0 * 2;
    out->data = dst;
    return KILN_OK;
}

kiln_status cuda_weight_rows(backend *be, kiln_dtype dtype, int64_t ne0, int64_t ne1,
                             const void *src, size_t src_bytes, bk_tensor *dst, int64_t row0)
{
    cuda_backend *cb = cuda_of(be);
    uint64_t n_blocks = 0; /* set by weight_src_check */
    kiln_status st;

    if (!dst || !dst->data || dst->ne0 != ne0 || row0 < 0 || ne1 > dst->ne1 - row0)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda weight_rows: rows %lld..%lld of %lld "
                            "x %lld do not fit", (long long)row0, (long long)(row0 + ne1),
                            dst ? (long long)dst->ne1 : 0LL, (long long)ne0);
    if ((st = weight_src_check(cb, dtype, ne0, ne1, src, src_bytes, &n_blocks)) ||
        (st = stage_ensure(cb)))
        return st;
    return stage_tensor(cb, dtype, dtype_get(dtype), src, n_blocks,
                        (uint8_t *)dst->data + (size_t)row0 * dst->row_bytes);
}

kiln_status cuda_weight(backend *be, kiln_dtype dtype, int64_t ne0, int64_t ne1,
                        const void *src, size_t src_bytes, bk_tensor *out)
{
    uint64_t n_blocks = 0; /* set by weight_src_check */
    kiln_status st;

    memset(out, 0, sizeof *out);
    if ((st = weight_src_check(cuda_of(be), dtype, ne0, ne1, src, src_bytes, &n_blocks)) ||
        (st = cuda_weight_empty(be, ne0, ne1, out)))
        return st;
    if ((st = cuda_weight_rows(be, dtype, ne0, ne1, src, src_bytes, out, 0))) {
        cuda_weight_free(be, out);
        return kiln_err_wrap(st, "cuda weight (%lld x %lld %s)", (long long)ne1, (long long)ne0,
                             dtype_name(dtype));
    }
    return KILN_OK;
}

kiln_status cuda_weight_random(backend *be, int64_t ne0, int64_t ne1, uint64_t seed, float lo,
                               float hi, bk_tensor *out)
{
    cuda_backend *cb = cuda_of(be);
    kiln_status st;

    memset(out, 0, sizeof *out);
    if (!(lo <= hi))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda weight_random: empty range");
    if ((st = cuda_weight_empty(be, ne0, ne1, out)))
        return st;
    if ((st = cuops_fill_random(cb->act, (void *)out->data, ne0 * ne1, seed, lo, hi,
                                cb->stream)))
        cuda_weight_free(be, out);
    return st;
}

void cuda_weight_free(backend *be, bk_tensor *w)
{
    if (!w)
        return;
    cuda_mem_free(cuda_of(be), (void *)w->data);
    memset(w, 0, sizeof *w);
}
