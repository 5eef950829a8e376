/*
 * cuda_backend.c - the CUDA backend's life cycle, device memory, host
 * copies, batches and KV cache, and the op table that points at the ops
 * of cuda_entry.c, cuda_matmul.c and cuda_weight.c.
 *
 * Invariants:
 *   1. Every device buffer the backend hands out or keeps comes from
 *      cuda_mem_alloc and is listed in cb->allocs with its size until
 *      cuda_mem_free; bytes_in_use is the sum of the list.
 *   2. All work runs on cb->stream (weight staging on cb->copy_stream,
 *      which the compute stream waits for); nothing uses the default
 *      stream.  upload, download, to_host_f32 and sync return after the
 *      stream has drained up to them.
 *   3. The batch buffers (pinned batch_host, device batch_dev, same
 *      layout) are rewritten only after the previous batch copy has read
 *      batch_host (event batch_copied); they are reallocated only after the
 *      stream has drained, since queued kernels may still read batch_dev.
 *   4. cb->batch / cb->hbatch describe the last upload; ops that read a
 *      batch accept only that one (cuda_batch_view).
 */
#include "backend/cuda/cuda_impl.h"

#include "backend/cuda/attention.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_ops.h"
#include "backend/cuda/sample.h"
#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CUDA_DEFAULT_STAGE_BYTES ((size_t)16 << 20)
#define CUDA_DEFAULT_WS_BYTES ((size_t)32 << 20)
/* Smallest batch buffer, in int32. */
#define CUDA_BATCH_MIN 4096

/* ---- device memory ----------------------------------------------------------- */

kiln_status cuda_mem_alloc(cuda_backend *cb, size_t bytes, const char *what, void **out)
{
    void *p = NULL;
    cudaError_t e;

    *out = NULL;
    if (bytes == 0)
        bytes = 1;
    if (cb->n_allocs == cb->cap_allocs) {
        size_t cap = cb->cap_allocs ? 2 * cb->cap_allocs : 64;
        cuda_alloc_rec *r = kiln_realloc(cb->allocs, cap * sizeof *r);
        if (!r)
            return kiln_err_set(KILN_ERR_OOM, "cuda: host memory for the allocation list");
        cb->allocs = r;
        cb->cap_allocs = cap;
    }
    e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
        size_t free_b = 0, total_b = 0;
        (void)cudaGetLastError();
        if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess)
            (void)cudaGetLastError();
        return kiln_err_set(KILN_ERR_OOM,
                            "cuda: out of device memory: %s needs %zu bytes; kiln holds %zu, "
                            "the device has %zu of %zu free (%s:%d)",
                            what, bytes, cb->bytes_in_use, free_b, total_b, __FILE__, __LINE__);
    }
    if (e != cudaSuccess)
        return kiln_err_wrap(cuda_check_fail(e, "cudaMalloc(&p, bytes)", __FILE__, __LINE__),
                             "%s of %zu bytes", what, bytes);
    cb->allocs[cb->n_allocs].p = p;
    cb->allocs[cb->n_allocs].bytes = bytes;
    cb->n_allocs++;
    cb->bytes_in_use += bytes;
    if (cb->bytes_in_use > cb->bytes_peak)
        cb->bytes_peak = cb->bytes_in_use;
    *out = p;
    return KILN_OK;
}

void cuda_mem_free(cuda_backend *cb, void *p)
{
    size_t i;

    if (!p)
        return;
    for (i = 0; i < cb->n_allocs && cb->allocs[i].p != p; i++)
        ;
    KILN_ASSERT(i < cb->n_allocs); /* p came from this backend */
    cb->bytes_in_use -= cb->allocs[i].bytes;
    cb->allocs[i] = cb->allocs[--cb->n_allocs];
    if (cudaFree(p) != cudaSuccess)
        (void)cudaGetLastError(); /* a sticky fault is reported by the next op */
}

static kiln_status cuda_alloc(backend *be, size_t bytes, void **out)
{
    return cuda_mem_alloc(cuda_of(be), bytes, "buffer", out);
}

static void cuda_free(backend *be, void *p)
{
    cuda_mem_free(cuda_of(be), p);
}

/* ---- host copies ----------------------------------------------------------------- */

static kiln_status cuda_copy(cuda_backend *cb, void *dst, const void *src, size_t bytes,
                             enum cudaMemcpyKind kind, const char *op)
{
    kiln_status st = KILN_OK;

    if (bytes && (!dst || !src))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda %s of %zu bytes with a NULL pointer",
                            op, bytes);
    if (!bytes)
        return KILN_OK;
    KILN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, cb->stream));
    KILN_CUDA_CHECK(cudaStreamSynchronize(cb->stream));
err:
    return st;
}

static kiln_status cuda_upload(backend *be, void *dst, const void *src, size_t bytes)
{
    return cuda_copy(cuda_of(be), dst, src, bytes, cudaMemcpyHostToDevice, "upload");
}

static kiln_status cuda_download(backend *be, void *dst, const void *src, size_t bytes)
{
    return cuda_copy(cuda_of(be), dst, src, bytes, cudaMemcpyDeviceToHost, "download");
}

static kiln_status cuda_sync(backend *be)
{
    kiln_status st = KILN_OK;
    KILN_CUDA_CHECK(cudaStreamSynchronize(cuda_of(be)->stream));
err:
    return st;
}

/* Grow device scratch *p (of *cap bytes) to at least `bytes`, after the
 * stream has drained (queued work may still read the old buffer). */
static kiln_status cuda_scratch(cuda_backend *cb, void **p, size_t *cap, size_t bytes,
                                const char *what)
{
    kiln_status st = KILN_OK;
    if (bytes <= *cap)
        return KILN_OK;
    KILN_CUDA_CHECK(cudaStreamSynchronize(cb->stream));
    cuda_mem_free(cb, *p);
    *p = NULL;
    *cap = 0;
    if ((st = cuda_mem_alloc(cb, bytes, what, p)))
        goto err;
    *cap = bytes;
err:
    return st;
}

/* Queue n (> 0) elements of activation memory x, widened to f32 in the
 * device staging buffer, then copied into host memory dst on the stream. */
static kiln_status cuda_f32_copy_out(cuda_backend *cb, const void *x, int64_t n, float *dst)
{
    kiln_status st = KILN_OK;
    const size_t bytes = (size_t)n * sizeof(float);

    if ((st = cuda_scratch(cb, (void **)&cb->f32_dev, &cb->f32_cap, bytes,
                           "to_host_f32 staging")) ||
        (st = cuops_to_f32(cb->act, x, n, cb->f32_dev, cb->stream)))
        goto err;
    KILN_CUDA_CHECK(
        cudaMemcpyAsync(dst, cb->f32_dev, bytes, cudaMemcpyDeviceToHost, cb->stream));
err:
    return st;
}

static kiln_status cuda_to_host_f32(backend *be, const void *x, int64_t n, float *dst)
{
    cuda_backend *cb = cuda_of(be);
    kiln_status st = KILN_OK;

    if (n < 0 || (n && (!x || !dst)))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda to_host_f32: bad arguments");
    if (n == 0)
        return KILN_OK;
    if ((st = cuda_f32_copy_out(cb, x, n, dst)))
        goto err;
    KILN_CUDA_CHECK(cudaStreamSynchronize(cb->stream));
err:
    return st;
}

/* Pinned host slot `slot` of at least `bytes`: a slot that must grow waits
 * for its last copy first. */
static kiln_status cuda_host_slot(cuda_backend *cb, int slot, size_t bytes)
{
    kiln_status st = KILN_OK;
    if (bytes <= cb->host_slot_cap[slot])
        return KILN_OK;
    if (!cb->host_done[slot])
        KILN_CUDA_CHECK(cudaEventCreateWithFlags(&cb->host_done[slot], cudaEventDisableTiming));
    KILN_CUDA_CHECK(cudaEventSynchronize(cb->host_done[slot]));
    if (cb->host_slot[slot])
        cudaFreeHost(cb->host_slot[slot]);
    cb->host_slot[slot] = NULL;
    cb->host_slot_cap[slot] = 0;
    if (cudaMallocHost((void **)&cb->host_slot[slot], bytes) != cudaSuccess) {
        (void)cudaGetLastError();
        cb->host_slot[slot] = NULL;
        return kiln_err_set(KILN_ERR_OOM, "cuda to_host_f32_start: %zu bytes of pinned host "
                            "memory", bytes);
    }
    cb->host_slot_cap[slot] = bytes;
err:
    return st;
}

static kiln_status cuda_to_host_f32_start(backend *be, const void *x, int64_t n, int slot,
                                          const float **out)
{
    cuda_backend *cb = cuda_of(be);
    kiln_status st = KILN_OK;
    const size_t bytes = (size_t)(n > 0 ? n : 1) * sizeof(float);

    if (n < 0 || (n && !x) || !out || slot < 0 || slot > 1)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda to_host_f32_start: bad arguments");
    if ((st = cuda_host_slot(cb, slot, bytes)) ||
        (n && (st = cuda_f32_copy_out(cb, x, n, cb->host_slot[slot]))))
        goto err;
    KILN_CUDA_CHECK(cudaEventRecord(cb->host_done[slot], cb->stream));
    *out = cb->host_slot[slot];
err:
    return st;
}

static kiln_status cuda_to_host_wait(backend *be, int slot)
{
    cuda_backend *cb = cuda_of(be);
    kiln_status st = KILN_OK;
    if (slot < 0 || slot > 1)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda to_host_wait: slot %d", slot);
    if (cb->host_done[slot])
        KILN_CUDA_CHECK(cudaEventSynchronize(cb->host_done[slot]));
err:
    return st;
}

/* ---- the current device ----------------------------------------------------------- */

/* The device this thread last made current through cuda_use_device (or
 * backend creation); -1: none yet. */
static _Thread_local int cuda_current = -1;
/* cb->pdl of the backend this thread last entered */
static _Thread_local bool cuda_pdl_now;

void cuda_use_device(const cuda_backend *cb)
{
    cuda_pdl_now = cb->pdl;
    if (cb->device != cuda_current && cudaSetDevice(cb->device) == cudaSuccess)
        cuda_current = cb->device;
}

bool cuda_pdl_enabled(void)
{
    return cuda_pdl_now;
}

/* ---- sampling --------------------------------------------------------------------- */

#define CUDA_ARGMAX_MIN_ROWS 256

static kiln_status cuda_sample(backend *be, const void *x, int64_t rows, int64_t cols,
                               const bk_sample_row *p, uint16_t *counts, int32_t *ids)
{
    if (rows < 0 || cols <= 0 || cols > INT32_MAX || (rows && (!x || !p || !ids)))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda sample: bad arguments (%lld x %lld)",
                            (long long)rows, (long long)cols);
    return cusmp_sample(cuda_of(be)->act, x, rows, cols, p, counts, ids,
                        cuda_of(be)->info.sm_count, cuda_of(be)->stream);
}

static kiln_status cuda_argmax(backend *be, const void *x, int64_t rows, int64_t cols,
                               int32_t *ids)
{
    cuda_backend *cb = cuda_of(be);
    kiln_status st = KILN_OK;

    if (rows < 0 || cols <= 0 || cols > INT32_MAX || (rows && (!x || !ids)))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda argmax: bad arguments (%lld x %lld)",
                            (long long)rows, (long long)cols);
    /* the workspace is made (zeroed) by the first, uncaptured, call of a
     * size: at least CUDA_ARGMAX_MIN_ROWS rows, so later batches seldom grow it */
    size_t need = CUSMP_ARGMAX_WS(rows > CUDA_ARGMAX_MIN_ROWS ? rows : CUDA_ARGMAX_MIN_ROWS);
    if (need > cb->amx_ws_cap) {
        if ((st = cuda_scratch(cb, &cb->amx_ws, &cb->amx_ws_cap, need, "argmax workspace")))
            goto err;
        KILN_CUDA_CHECK(cudaMemsetAsync(cb->amx_ws, 0, need, cb->stream));
    }
    st = cusmp_argmax(cb->act, x, rows, cols, cb->amx_ws, ids, cb->stream);
err:
    return st;
}

static kiln_status cuda_sample_reset(backend *be, uint16_t *row, int64_t cols,
                                     const int32_t *ids, int32_t n)
{
    cuda_backend *cb = cuda_of(be);
    kiln_status st = KILN_OK;

    if (!row || cols <= 0 || n < 0 || (n && !ids))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda sample_reset: bad arguments");
    if ((st = cuda_scratch(cb, (void **)&cb->smp_ids, &cb->smp_ids_cap,
                           (size_t)(n ? n : 1) * sizeof(int32_t), "prompt ids staging")))
        goto err;
    /* pageable source: the copy has read ids when the call returns */
    if (n)
        KILN_CUDA_CHECK(cudaMemcpyAsync(cb->smp_ids, ids, (size_t)n * sizeof(int32_t),
                                        cudaMemcpyHostToDevice, cb->stream));
    st = cusmp_reset(row, cols, cb->smp_ids, n, cb->stream);
err:
    return st;
}

/* ---- batches ---------------------------------------------------------------------- */

/* Grow the batch buffers to at least `need` int32. */
static kiln_status batch_reserve(cuda_backend *cb, size_t need)
{
    kiln_status st = KILN_OK;
    size_t cap = need + need / 2;

    if (need <= cb->batch_cap)
        return KILN_OK;
    if (cap < CUDA_BATCH_MIN)
        cap = CUDA_BATCH_MIN;
    KILN_CUDA_CHECK(cudaStreamSynchronize(cb->stream));
    if (cb->batch_host)
        cudaFreeHost(cb->batch_host);
    cuda_mem_free(cb, cb->batch_dev);
    cb->batch_host = NULL;
    cb->batch_dev = NULL;
    cb->batch_cap = 0;
    memset(&cb->batch, 0, sizeof cb->batch);
    memset(&cb->hbatch, 0, sizeof cb->hbatch);
    KILN_CUDA_CHECK(cudaHostAlloc((void **)&cb->batch_host, cap * sizeof(int32_t),
                                  cudaHostAllocDefault));
    if ((st = cuda_mem_alloc(cb, cap * sizeof(int32_t), "batch", (void **)&cb->batch_dev)))
        goto err;
    cb->batch_cap = cap;
    cb->batch_epoch++; /* graphs captured before read the old buffer */
err:
    return st;
}

/* Copy n int32 of src to host offset *off of the batch buffer; the host
 * and device addresses of the copy into *h and *d (NULL for a NULL src). */
static void batch_put(cuda_backend *cb, size_t *off, const int32_t *src, size_t n,
                      const int32_t **h, const int32_t **d)
{
    *h = NULL;
    *d = NULL;
    if (!src)
        return;
    memcpy(cb->batch_host + *off, src, n * sizeof(int32_t));
    *h = cb->batch_host + *off;
    *d = cb->batch_dev + *off;
    *off += n;
}

static kiln_status cuda_batch_upload(backend *be, const bk_batch_host *h, bk_batch *out)
{
    cuda_backend *cb = cuda_of(be);
    kiln_status st = KILN_OK;
    size_t nt, ns, tables, need, off = 0;
    bk_batch *b = &cb->batch;
    bk_batch_host *hb = &cb->hbatch;

    if (!h || h->n_tokens < 0 || h->n_seqs < 0 || h->max_blocks < 0 || h->n_out < 0 ||
        !h->seq_start)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda batch_upload: malformed batch");
    nt = (size_t)h->n_tokens;
    ns = (size_t)h->n_seqs;
    if (!ck_mul_size(ns, (size_t)h->max_blocks, &tables) || tables > SIZE_MAX / 8 ||
        nt > SIZE_MAX / 64)
        return kiln_err_set(KILN_ERR_RANGE, "cuda batch_upload: batch arrays overflow");
    need = 4 * nt + 2 * ns + 1 + tables + (size_t)h->n_out * (1 + BK_SAMPLE_ROW_WORDS);

    /* The previous copy must have read the pinned buffer before it is
     * rewritten (invariant 3). */
    KILN_CUDA_CHECK(cudaEventSynchronize(cb->batch_copied));
    if ((st = batch_reserve(cb, need)))
        return kiln_err_wrap(st, "cuda batch_upload");
    memset(b, 0, sizeof *b);
    memset(hb, 0, sizeof *hb);
    b->n_tokens = hb->n_tokens = h->n_tokens;
    b->n_seqs = hb->n_seqs = h->n_seqs;
    b->max_blocks = hb->max_blocks = h->max_blocks;
    b->n_out = hb->n_out = h->n_out;
    batch_put(cb, &off, h->tokens, nt, &hb->tokens, &b->tokens);
    batch_put(cb, &off, h->token_types, nt, &hb->token_types, &b->token_types);
    batch_put(cb, &off, h->positions, nt, &hb->positions, &b->positions);
    batch_put(cb, &off, h->slot_mapping, nt, &hb->slot_mapping, &b->slot_mapping);
    batch_put(cb, &off, h->seq_start, ns + 1, &hb->seq_start, &b->seq_start);
    batch_put(cb, &off, h->seq_len, ns, &hb->seq_len, &b->seq_len);
    batch_put(cb, &off, h->block_tables, tables, &hb->block_tables, &b->block_tables);
    batch_put(cb, &off, h->out_rows, (size_t)h->n_out, &hb->out_rows, &b->out_rows);
    const int32_t *sh, *sd;
    batch_put(cb, &off, (const int32_t *)h->sample, (size_t)h->n_out * BK_SAMPLE_ROW_WORDS, &sh,
              &sd);
    hb->sample = (const bk_sample_row *)sh;
    b->sample = (const bk_sample_row *)sd;
    for (size_t s = 0; s < ns && hb->seq_len; s++)
        if (hb->seq_len[s] > b->max_seq_len)
            b->max_seq_len = hb->seq_len[s];
    KILN_CUDA_CHECK(cudaMemcpyAsync(cb->batch_dev, cb->batch_host, off * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, cb->stream));
    KILN_CUDA_CHECK(cudaEventRecord(cb->batch_copied, cb->stream));
    *out = *b;
err:
    return st;
}

kiln_status cuda_batch_view(cuda_backend *cb, const bk_batch *b, const char *op,
                            const bk_batch_host **out)
{
    const bk_batch *c = &cb->batch;

    *out = NULL;
    if (!b || !c->seq_start || b->n_tokens != c->n_tokens || b->n_seqs != c->n_seqs ||
        b->n_out != c->n_out || b->max_blocks != c->max_blocks || b->tokens != c->tokens ||
        b->token_types != c->token_types || b->positions != c->positions ||
        b->slot_mapping != c->slot_mapping || b->seq_start != c->seq_start ||
        b->seq_len != c->seq_len || b->block_tables != c->block_tables ||
        b->out_rows != c->out_rows || b->sample != c->sample)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "cuda %s: the batch is not the one last uploaded with batch_upload",
                            op);
    *out = &cb->hbatch;
    return KILN_OK;
}

kiln_status cuda_batch_check(const bk_batch_host *h, const char *op)
{
    if (h->n_seqs && !h->seq_len)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda %s: batch has no seq_len", op);
    if (h->seq_start[0] != 0 || h->seq_start[h->n_seqs] != h->n_tokens)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "cuda %s: batch sequences cover rows [%d, %d), batch has %d", op,
                            h->seq_start[0], h->seq_start[h->n_seqs], h->n_tokens);
    for (int32_t s = 0; s < h->n_seqs; s++) {
        int32_t len = h->seq_start[s + 1] - h->seq_start[s];
        if (len < 0 || h->seq_len[s] < len)
            return kiln_err_set(KILN_ERR_INVALID_ARG,
                                "cuda %s: sequence %d has %d new rows, context %d", op, s, len,
                                h->seq_len[s]);
    }
    if (h->n_out && !h->out_rows)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda %s: bad out_rows", op);
    for (int32_t i = 0; i < h->n_out; i++)
        if (h->out_rows[i] < 0 || h->out_rows[i] >= h->n_tokens)
            return kiln_err_set(KILN_ERR_INVALID_ARG,
                                "cuda %s: out row %d is outside the batch", op, h->out_rows[i]);
    return KILN_OK;
}

/* ---- KV cache ------------------------------------------------------------------------ */

static void cuda_kv_free(backend *be, bk_kv_cache *kv)
{
    if (!kv)
        return;
    if (kv->k && kv->n_layers > 0)
        cuda_mem_free(cuda_of(be), kv->k[0]);
    kiln_free(kv->k);
    kiln_free(kv->v);
    memset(kv, 0, sizeof *kv);
}

/* One allocation holds every layer: K of layer l at 2l * per, V at
 * (2l + 1) * per; zeroed so unused slots hold finite values. */
static kiln_status cuda_kv_alloc(backend *be, const bk_kv_cache *shape, bk_kv_cache *out)
{
    cuda_backend *cb = cuda_of(be);
    kiln_status st = KILN_OK;
    uint64_t per, total;
    void *base = NULL;

    memset(out, 0, sizeof *out);
    if (!shape || shape->n_layers <= 0 || shape->n_blocks <= 0 || shape->block_size <= 0 ||
        shape->n_kv_heads <= 0 || shape->head_dim <= 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda kv_alloc: bad cache shape");
    if (shape->dtype != cb->act)
        return kiln_err_set(KILN_ERR_UNSUPPORTED,
                            "cuda kv_alloc: KV type %s (this backend keeps %s)",
                            dtype_name(shape->dtype), dtype_name(cb->act));
    per = (uint64_t)shape->n_blocks * (uint64_t)shape->block_size *
          (uint64_t)shape->n_kv_heads * (uint64_t)shape->head_dim * 2u;
    if (!ck_mul_u64(per, 2 * (uint64_t)shape->n_layers, &total) || total > SIZE_MAX / 2)
        return kiln_err_set(KILN_ERR_RANGE, "cuda kv_alloc: cache size overflows");
    *out = *shape;
    out->k = kiln_calloc((size_t)shape->n_layers, sizeof(void *));
    out->v = kiln_calloc((size_t)shape->n_layers, sizeof(void *));
    if (!out->k || !out->v) {
        st = kiln_err_set(KILN_ERR_OOM, "cuda kv_alloc: host memory");
        goto err;
    }
    if ((st = cuda_mem_alloc(cb, (size_t)total, "KV cache", &base)))
        goto err;
    for (int32_t l = 0; l < shape->n_layers; l++) {
        out->k[l] = (char *)base + (size_t)(2 * (uint64_t)l * per);
        out->v[l] = (char *)base + (size_t)((2 * (uint64_t)l + 1) * per);
    }
    KILN_CUDA_CHECK(cudaMemsetAsync(base, 0, (size_t)total, cb->stream));
    return KILN_OK;
err:
    cuda_kv_free(be, out);
    return st;
}

/* ---- life cycle -------------------------------------------------------------------------- */

static void cuda_destroy(backend *be)
{
    cuda_backend *cb = cuda_of(be);

    if (!cb)
        return;
    if (cb->stream && cudaStreamSynchronize(cb->stream) != cudaSuccess)
        (void)cudaGetLastError();
    if (cb->copy_stream && cudaStreamSynchronize(cb->copy_stream) != cudaSuccess)
        (void)cudaGetLastError();
    cuda_entry_free(cb);
    cuda_mm_free(cb);
    cuda_stage_free(cb);
    if (cb->batch_host)
        cudaFreeHost(cb->batch_host);
    for (int i = 0; i < 2; i++) {
        if (cb->host_slot[i])
            cudaFreeHost(cb->host_slot[i]);
        if (cb->host_done[i])
            cudaEventDestroy(cb->host_done[i]);
    }
    /* Whatever is still listed (batch, staging, buffers and weights the
     * caller did not free) goes now. */
    while (cb->n_allocs)
        cuda_mem_free(cb, cb->allocs[cb->n_allocs - 1].p);
    kiln_free(cb->allocs);
    if (cb->batch_copied)
        cudaEventDestroy(cb->batch_copied);
    if (cb->weights_ready)
        cudaEventDestroy(cb->weights_ready);
    if (cb->copy_stream)
        cudaStreamDestroy(cb->copy_stream);
    if (cb->stream)
        cudaStreamDestroy(cb->stream);
    (void)cudaGetLastError();
    kiln_free(cb);
}

#define CUDA_OPS_TABLE(dt)                                                           \
    {                                                                                \
        .name = "cuda", .act_dtype = (dt), .destroy = cuda_destroy,                  \
        .alloc = cuda_alloc, .free = cuda_free, .upload = cuda_upload,               \
        .download = cuda_download, .sync = cuda_sync, .weight = cuda_weight,         \
        .weight_free = cuda_weight_free, .weight_random = cuda_weight_random,        \
        .weight_empty = cuda_weight_empty, .weight_rows = cuda_weight_rows,          \
        .split3 = cuda_split3,                                                       \
        .batch_upload = cuda_batch_upload,                                           \
        .kv_alloc = cuda_kv_alloc, .kv_free = cuda_kv_free, .embed = cuda_embed,     \
        .embed_part = cuda_embed_part,                                               \
        .matmul = cuda_matmul, .matmul_act = cuda_matmul_act,                        \
        .matmul_glu = cuda_matmul_glu,                                               \
        .matmul_norm = cuda_matmul_norm, .matmul_res = cuda_matmul_res,              \
        .fused_rows = cuda_fused_rows,                                               \
        .rmsnorm = cuda_rmsnorm,                                                     \
        .add_rmsnorm = cuda_add_rmsnorm, .layernorm = cuda_layernorm,                \
        .add = cuda_add, .rope = cuda_rope, .attention = cuda_attention_op,          \
        .rope_attention = cuda_rope_attention,                                       \
        .glu = cuda_glu, .act = cuda_act, .gather_rows = cuda_gather_rows,           \
        .pool = cuda_pool, .softcap = cuda_softcap, .to_host_f32 = cuda_to_host_f32, \
        .to_host_f32_start = cuda_to_host_f32_start, .to_host_wait = cuda_to_host_wait, \
        .argmax = cuda_argmax, .sample = cuda_sample,                                \
        .sample_reset = cuda_sample_reset, .graph_begin = cuda_graph_begin,          \
        .graph_end = cuda_graph_end, .graph_launch = cuda_graph_launch,              \
        .graph_free = cuda_graph_free,                                               \
    }

static const bk_ops cuda_ops_bf16 = CUDA_OPS_TABLE(KILN_DT_BF16);
static const bk_ops cuda_ops_f16 = CUDA_OPS_TABLE(KILN_DT_F16);

void bk_cuda_opts_default(bk_cuda_opts *o)
{
    memset(o, 0, sizeof *o);
    o->device = 0;
    o->act_dtype = KILN_DT_BF16;
    o->stage_bytes = CUDA_DEFAULT_STAGE_BYTES;
    o->workspace_bytes = CUDA_DEFAULT_WS_BYTES;
}

/* Device checks, streams and events of a new backend. */
static kiln_status cuda_open_device(cuda_backend *cb)
{
    kiln_status st = KILN_OK;

    if ((st = cudev_query(cb->device, &cb->info)) || (st = cudev_check_supported(&cb->info)))
        goto err;
    KILN_CUDA_CHECK(cudaSetDevice(cb->device));
    cuda_current = cb->device;
    KILN_CUDA_CHECK(cudaStreamCreateWithFlags(&cb->stream, cudaStreamNonBlocking));
    KILN_CUDA_CHECK(cudaStreamCreateWithFlags(&cb->copy_stream, cudaStreamNonBlocking));
    KILN_CUDA_CHECK(cudaEventCreateWithFlags(&cb->batch_copied, cudaEventDisableTiming));
    KILN_CUDA_CHECK(cudaEventCreateWithFlags(&cb->weights_ready, cudaEventDisableTiming));
err:
    return st;
}

kiln_status bk_cuda_create_opts(const bk_cuda_opts *o, backend **out)
{
    kiln_status st;
    cuda_backend *cb;

    *out = NULL;
    if (!o || (o->act_dtype != KILN_DT_BF16 && o->act_dtype != KILN_DT_F16))
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "cuda backend: activation type %s (BF16 or F16 are supported)",
                            o ? dtype_name(o->act_dtype) : "?");
    if (o->stage_bytes < CUDA_STAGE_MIN)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "cuda backend: staging buffers of %zu bytes (at least %u)",
                            o->stage_bytes, CUDA_STAGE_MIN);
    if (!(cb = kiln_calloc(1, sizeof *cb)))
        return kiln_err_set(KILN_ERR_OOM, "cuda backend: out of memory");
    cb->base.ops = o->act_dtype == KILN_DT_BF16 ? &cuda_ops_bf16 : &cuda_ops_f16;
    cb->device = o->device;
    cb->act = o->act_dtype;
    cb->stage_bytes = o->stage_bytes;
    {
        const char *ng = getenv("KILN_CUDA_NO_GEMV"), *all = getenv("KILN_CUDA_GEMV_ALL");
        cb->gemv = !o->no_gemv && !(ng && *ng && strcmp(ng, "0"));
        cb->gemv_all = cb->gemv && all && *all && strcmp(all, "0");
        const char *nr = getenv("KILN_CUDA_NO_FUSED_ROPE");
        cb->rope_in_attn = !(nr && *nr && strcmp(nr, "0"));
        const char *gt = getenv("KILN_CUDA_GELU_TANH");
        cb->gelu_tanh = o->gelu_tanh || (gt && *gt && strcmp(gt, "0"));
    }
    if ((st = cuda_open_device(cb)) || (st = cuda_mm_init(cb, o->workspace_bytes))) {
        cuda_destroy(&cb->base);
        return kiln_err_wrap(st, "cuda backend on device %d", o->device);
    }
    {
        const char *np = getenv("KILN_CUDA_NO_PDL"), *sp = getenv("KILN_CUDA_GEMV_SPLIT");
        cb->pdl = cb->info.cc_major >= 9 && !(np && *np && strcmp(np, "0"));
        if (sp && *sp) {
            gemv_cfg c = {0, 0, false};
            if (sscanf(sp, "%dx%d", &c.rows, &c.unroll) != 2 || !gemv_cfg_supported(&c)) {
                cuda_destroy(&cb->base);
                return kiln_err_set(KILN_ERR_INVALID_ARG,
                                    "cuda backend: KILN_CUDA_GEMV_SPLIT=%s is not one of the "
                                    "gemv splits (ROWSxUNROLL: 1x4 2x2 2x4 4x1 4x2 8x1)", sp);
            }
            cb->gemv_split = c;
        }
    }
    if ((st = attn_prefill_set_variant(getenv("KILN_CUDA_PREFILL")))) {
        cuda_destroy(&cb->base);
        return st;
    }
    const char *pe = getenv("KILN_CUDA_PREFILL_ENCODER");
    if (pe && *pe && strcmp(pe, "0") && strcmp(pe, "1")) {
        cuda_destroy(&cb->base);
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda backend: KILN_CUDA_PREFILL_ENCODER=%s is "
                            "not 0 or 1", pe);
    }
    attn_prefill_set_encoder_form(!(pe && !strcmp(pe, "0")));
    const char *mk = getenv("KILN_CUDA_DECODE_MIN_KEYS");
    if (mk && *mk) {
        char *end = NULL;
        long v = strtol(mk, &end, 10);
        st = *end || v < 1 || v > ATTN_DECODE_MAX_MIN_KEYS
                 ? kiln_err_set(KILN_ERR_INVALID_ARG, "cuda backend: KILN_CUDA_DECODE_MIN_KEYS=%s "
                                "is not a key count in 1..%d", mk, ATTN_DECODE_MAX_MIN_KEYS)
                 : attn_decode_set_min_keys((int32_t)v);
    } else {
        st = attn_decode_set_min_keys(0);
    }
    if (st) {
        cuda_destroy(&cb->base);
        return st;
    }
    *out = &cb->base;
    return KILN_OK;
}

kiln_status bk_cuda_create(int device, kiln_dtype act_dtype, backend **out)
{
    bk_cuda_opts o;
    bk_cuda_opts_default(&o);
    o.device = device;
    o.act_dtype = act_dtype;
    return bk_cuda_create_opts(&o, out);
}

bool bk_is_cuda(const backend *be)
{
    return be && (be->ops == &cuda_ops_bf16 || be->ops == &cuda_ops_f16);
}

size_t bk_cuda_bytes_in_use(const backend *be)
{
    return bk_is_cuda(be) ? ((const cuda_backend *)be)->bytes_in_use : 0;
}

size_t bk_cuda_bytes_peak(const backend *be)
{
    return bk_is_cuda(be) ? ((const cuda_backend *)be)->bytes_peak : 0;
}
