/*
 * attention.cu - cuda_attention (attention.h): argument and batch checks,
 * the KV cache write, and the dispatch of each sequence to the prefill or
 * the decode kernel (attention_prefill.cu, attention_decode.cu).
 *
 * One call, on one stream:
 *
 *   attn_check(b, hb)            host: shapes, types, alignment, and every
 *        |                       seq_start / position / slot / block id of hb
 *        v
 *   attn_cache_write_kernel      k, v rows -> pool slots (use_cache only)
 *        |
 *        v
 *   attn_prefill_launch          sequences with > 1 new token (all of them
 *        |                       without a cache): n_tiles CTAs per head
 *        v
 *   attn_decode_launch           sequences with 1 new token: n_split CTAs per
 *                                (sequence, KV head), then the combine kernel
 *
 * cuda_attention_rope (decode batches only) launches the decode kernel
 * alone: it rotates q and the new k and stores k and v into the cache.
 *
 * The plan (tile count, decode count, longest decode context, split count)
 * is computed from the host copy hb; the kernels read the same facts from
 * the device copy b and agree with it by construction (attention_impl.h).
 *
 * Flash-decoding scratch.  Partial results of split sequences live in one
 * buffer per device, allocated at the first call that has a cache and never
 * grown: its size bounds every split choice (attn_decode_ws_rows) for head
 * dims up to 256, so CUDA graphs captured after a first (warm-up) call keep
 * pointing at live memory.  attn_workspace_release frees it.
 */
#include "backend/cuda/attention.h"

#include "backend/cuda/attention_impl.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_elem.cuh"

#include <pthread.h>
#include <stdint.h>

#define ATTN_WRITE_THREADS 256
#define ATTN_WRITE_MAX_GRID 65536
#define ATTN_MAX_DEVICES 64
#define ATTN_WS_MAX_DIM 256

/* ==== cache write =========================================================== */

/* Grid-stride over the batch's 16-byte vectors: vector c of row t of k and
 * v goes to the same vector of slot slot_mapping[t] of the pools.  Slots
 * outside the pool are skipped (the host rejects them first).
 * slot_mapping (n_tokens); k, v (n_tokens, vpr) with rows vstride vectors
 * apart; k_cache, v_cache (n_slots, vpr), vpr = n_kv_heads * head_dim / 8. */
static __global__ void attn_cache_write_kernel(const int32_t *slot_mapping, const uint4 *k,
                                               const uint4 *v, uint4 *k_cache, uint4 *v_cache,
                                               int32_t n_tokens, int32_t vpr, int64_t vstride,
                                               int64_t n_slots)
{
    const int64_t total = (int64_t)n_tokens * vpr;
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    pdl_trigger();
    pdl_wait();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
        const int64_t t = i / vpr, c = i % vpr;
        const int64_t slot = slot_mapping[t];
        if (slot < 0 || slot >= n_slots)
            continue;
        k_cache[slot * vpr + c] = k[t * vstride + c];
        v_cache[slot * vpr + c] = v[t * vstride + c];
    }
}

static kiln_status attn_cache_write(const bk_batch *b, const bk_attn *a, const void *k,
                                    const void *v, int64_t kv_stride, void *k_cache,
                                    void *v_cache, int64_t n_slots, cudaStream_t stream)
{
    kiln_status st = KILN_OK;
    const int32_t vpr = a->n_kv_heads * a->head_dim / 8;
    const int64_t total = (int64_t)b->n_tokens * vpr;
    int64_t blocks = (total + ATTN_WRITE_THREADS - 1) / ATTN_WRITE_THREADS;
    blocks = blocks < ATTN_WRITE_MAX_GRID ? blocks : ATTN_WRITE_MAX_GRID;

    KILN_CUDA_CHECK(pdl_launch(attn_cache_write_kernel, dim3((unsigned)blocks),
                               dim3(ATTN_WRITE_THREADS), 0, stream, b->slot_mapping,
                               (const uint4 *)k, (const uint4 *)v, (uint4 *)k_cache,
                               (uint4 *)v_cache, b->n_tokens, vpr, kv_stride / 8, n_slots));
    KILN_CUDA_LAUNCH_CHECK("attention_cache_write", stream);
err:
    return st;
}

/* ==== per-device state ====================================================== */

static pthread_mutex_t ws_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    float *mem;        /* (rows, ATTN_WS_MAX_DIM) acc, then (rows, 2) m, l */
    int64_t rows;
    int32_t sm_count;
} ws_dev[ATTN_MAX_DEVICES];

/* The current device's SM count and split workspace (allocated on first
 * use). */
static kiln_status attn_device_state(int32_t *sm_count, attn_split_ws *ws)
{
    kiln_status st = KILN_OK;
    int dev = 0, sms = 0;
    float *mem = NULL;
    bool locked = false;
    int64_t rows;

    KILN_CUDA_CHECK(cudaGetDevice(&dev));
    if (dev < 0 || dev >= ATTN_MAX_DEVICES)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "attention: device %d (at most %d devices)",
                            dev, ATTN_MAX_DEVICES);
    pthread_mutex_lock(&ws_lock);
    locked = true;
    if (!ws_dev[dev].mem) {
        KILN_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
        rows = attn_decode_ws_rows(sms);
        KILN_CUDA_CHECK(cudaMalloc((void **)&mem,
                                   (size_t)rows * (ATTN_WS_MAX_DIM + 2) * sizeof(float)));
        ws_dev[dev].mem = mem;
        ws_dev[dev].rows = rows;
        ws_dev[dev].sm_count = sms;
        mem = NULL;
    }
    *sm_count = ws_dev[dev].sm_count;
    ws->acc = ws_dev[dev].mem;
    ws->ml = ws_dev[dev].mem + ws_dev[dev].rows * ATTN_WS_MAX_DIM;
err:
    if (locked)
        pthread_mutex_unlock(&ws_lock);
    if (mem)
        cudaFree(mem);
    return st;
}

extern "C" void attn_workspace_release(void)
{
    int cur = 0;
    if (cudaGetDevice(&cur) != cudaSuccess)
        cur = 0;
    pthread_mutex_lock(&ws_lock);
    for (int d = 0; d < ATTN_MAX_DEVICES; d++) {
        if (!ws_dev[d].mem)
            continue;
        if (cudaSetDevice(d) == cudaSuccess)
            cudaFree(ws_dev[d].mem);
        ws_dev[d].mem = NULL;
        ws_dev[d].rows = 0;
    }
    pthread_mutex_unlock(&ws_lock);
    (void)cudaSetDevice(cur);
    (void)cudaGetLastError();
}

/* ==== checks ================================================================ */

static bool attn_misaligned(const void *p) { return ((uintptr_t)p & 15u) != 0; }

/* Heads, types, pointers. */
static kiln_status attn_check_args(const bk_batch *b, const bk_batch_host *hb, const bk_attn *a,
                                   const void *q, const void *k, const void *v, void *k_cache,
                                   void *v_cache, int32_t n_blocks, int32_t block_size,
                                   kiln_dtype dtype, void *out)
{
    if (!b || !hb || !a)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: NULL batch or parameters");
    if (a->n_heads <= 0 || a->n_kv_heads <= 0 || a->n_heads % a->n_kv_heads)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: %d query heads is not a multiple "
                            "of %d KV heads", a->n_heads, a->n_kv_heads);
    if (a->head_dim != 16 && a->head_dim != 32 && a->head_dim != 64 && a->head_dim != 128 &&
        a->head_dim != 256)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "attention: head_dim %d has no CUDA kernel "
                            "(16, 32, 64, 128, 256)", a->head_dim);
    if (dtype != KILN_DT_BF16 && dtype != KILN_DT_F16)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "attention: type %s has no CUDA kernel "
                            "(bf16, f16)", dtype_name(dtype));
    if (!(a->scale == a->scale) || a->softcap < 0.0f || !(a->softcap == a->softcap) ||
        a->window < 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: bad scale, softcap or window");
    if (b->n_tokens < 0 || b->n_seqs < 0 || hb->n_tokens != b->n_tokens ||
        hb->n_seqs != b->n_seqs || (b->n_tokens > 0 && b->n_seqs == 0))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: batch of %d tokens in %d "
                            "sequences does not match its host copy", b->n_tokens, b->n_seqs);
    if (b->n_tokens == 0)
        return KILN_OK;
    if (!q || !k || !v || !out || !b->seq_start || !b->positions || !hb->seq_start ||
        !hb->positions)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: NULL tensor or batch array");
    if (attn_misaligned(q) || attn_misaligned(k) || attn_misaligned(v) || attn_misaligned(out))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: q, k, v and out must be 16-byte "
                            "aligned");
    if (a->qkv_stride &&
        (a->qkv_stride % 8 || a->qkv_stride < (int64_t)a->n_heads * a->head_dim ||
         a->qkv_stride < (int64_t)a->n_kv_heads * a->head_dim))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: rows of %lld elements are not "
                            "16-byte multiples as wide as q and k, v",
                            (long long)a->qkv_stride);
    if (!a->use_cache)
        return KILN_OK;
    if (!k_cache || !v_cache || n_blocks <= 0 || block_size <= 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: use_cache without a KV cache");
    if (attn_misaligned(k_cache) || attn_misaligned(v_cache))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: KV pools must be 16-byte aligned");
    if (!b->seq_len || !b->block_tables || !b->slot_mapping || !hb->seq_len ||
        !hb->block_tables || !hb->slot_mapping || b->max_blocks <= 0 ||
        hb->max_blocks != b->max_blocks)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: batch lacks seq_len, block "
                            "tables or slots");
    return KILN_OK;
}

/* Sequence s of hb: rows, positions, slots, block ids. */
static kiln_status attn_check_seq(const bk_batch_host *hb, const bk_attn *a, int32_t s,
                                  int32_t n_blocks, int32_t block_size)
{
    const int32_t r0 = hb->seq_start[s], r1 = hb->seq_start[s + 1];
    if (r1 < r0 || r1 > hb->n_tokens)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: seq_start of sequence %d is "
                            "out of order", s);
    for (int32_t t = r0 + 1; t < r1; t++)
        if (hb->positions[t] != hb->positions[t - 1] + 1)
            return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: positions of sequence %d "
                                "are not consecutive at row %d", s, t);
    if (!a->use_cache || r1 == r0)
        return KILN_OK;
    const int32_t len = hb->seq_len[s];
    if (hb->positions[r0] < 0 || hb->positions[r1 - 1] >= len)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: positions %d..%d of sequence %d "
                            "outside its context of %d", hb->positions[r0],
                            hb->positions[r1 - 1], s, len);
    const int64_t n_slots = (int64_t)n_blocks * block_size;
    for (int32_t t = r0; t < r1; t++)
        if (hb->slot_mapping[t] < 0 || hb->slot_mapping[t] >= n_slots)
            return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: slot %d of row %d outside "
                                "the cache of %lld slots", hb->slot_mapping[t], t,
                                (long long)n_slots);
    const int32_t nb = (int32_t)(((int64_t)len + block_size - 1) / block_size);
    if (nb > hb->max_blocks)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: sequence %d needs %d blocks, "
                            "its table has %d", s, nb, hb->max_blocks);
    const int32_t *table = hb->block_tables + (int64_t)s * hb->max_blocks;
    for (int32_t i = 0; i < nb; i++)
        if (table[i] < 0 || table[i] >= n_blocks)
            return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: block id %d of sequence %d "
                                "outside the pool of %d", table[i], s, n_blocks);
    return KILN_OK;
}

/* ==== the entry ============================================================= */

/* log2(block_size) for a power of two, else -1. */
static int32_t attn_block_shift(int32_t block_size)
{
    if (block_size <= 0 || (block_size & (block_size - 1)))
        return -1;
    int32_t shift = 0;
    while ((1 << shift) < block_size)
        shift++;
    return shift;
}

/* Tiles of prefill sequences, decode sequences and the longest decode key
 * range, from the host copy. */
static void attn_plan(const bk_batch_host *hb, const bk_attn *a, int32_t *n_tiles,
                      int32_t *n_dec, int32_t *max_keys)
{
    const int32_t bm = attn_prefill_bm(a->head_dim);
    *n_tiles = *n_dec = *max_keys = 0;
    for (int32_t s = 0; s < hb->n_seqs; s++) {
        const int32_t r0 = hb->seq_start[s], len = hb->seq_start[s + 1] - r0;
        if (len == 1 && a->use_cache) {
            const int32_t q_pos = hb->positions[r0], kv_len = hb->seq_len[s];
            const int32_t j_end = a->causal && q_pos + 1 < kv_len ? q_pos + 1 : kv_len;
            const int32_t j_begin =
                a->window > 0 && q_pos - a->window + 1 > 0 ? q_pos - a->window + 1 : 0;
            (*n_dec)++;
            if (j_end - j_begin > *max_keys)
                *max_keys = j_end - j_begin;
        } else if (len > 0) {
            *n_tiles += (len + bm - 1) / bm;
        }
    }
}

/* Both entries: rope NULL (cuda_attention) or the rotation the decode
 * kernel applies (cuda_attention_rope). */
static kiln_status attn_run(const bk_batch *b, const bk_batch_host *hb, const bk_attn *a,
                            const cuops_rope_args *rope, const void *q, const void *k,
                            const void *v, void *k_cache, void *v_cache, int32_t n_blocks,
                            int32_t block_size, kiln_dtype dtype, void *out,
                            cudaStream_t stream)
{
    kiln_status st;
    int32_t n_tiles, n_dec, max_keys, sm_count = 0;
    attn_split_ws ws = {NULL, NULL};

    st = attn_check_args(b, hb, a, q, k, v, k_cache, v_cache, n_blocks, block_size, dtype, out);
    if (st || b->n_tokens == 0)
        return st;
    if (hb->seq_start[0] != 0 || hb->seq_start[hb->n_seqs] != hb->n_tokens)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: seq_start does not cover the "
                            "%d rows of the batch", hb->n_tokens);
    for (int32_t s = 0; s < hb->n_seqs; s++)
        if ((st = attn_check_seq(hb, a, s, n_blocks, block_size)))
            return st;
    if (rope) {
        if (!a->use_cache || hb->n_seqs != hb->n_tokens)
            return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: the rotation inside the "
                                "kernel takes decode batches (one new token a sequence, a "
                                "cache)");
        for (int32_t s = 0; s < hb->n_seqs; s++)
            if (hb->seq_start[s + 1] - hb->seq_start[s] != 1)
                return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: sequence %d has %d new "
                                    "tokens (the rotation inside the kernel takes one)", s,
                                    hb->seq_start[s + 1] - hb->seq_start[s]);
        if (rope->dynamic || !rope->inv_freq || rope->head_dim != a->head_dim ||
            rope->rot_dims < 2 || rope->rot_dims % 2 || rope->rot_dims > a->head_dim)
            return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: rotary parameters the decode "
                                "kernel cannot apply (a table of rot_dims / 2 frequencies, "
                                "rot_dims even and at most head_dim %d)", a->head_dim);
    }

    const int64_t q_stride = a->qkv_stride ? a->qkv_stride : (int64_t)a->n_heads * a->head_dim;
    const int64_t kv_stride =
        a->qkv_stride ? a->qkv_stride : (int64_t)a->n_kv_heads * a->head_dim;
    const attn_args args = {
        b->seq_start, b->seq_len, b->positions, b->block_tables,
        b->n_tokens, b->n_seqs, b->max_blocks,
        a->n_heads, a->n_kv_heads, a->head_dim, a->n_heads / a->n_kv_heads,
        a->scale, a->softcap, a->causal, a->use_cache, a->window,
        q, k, v, q_stride, kv_stride,
        k_cache, v_cache, n_blocks, block_size, attn_block_shift(block_size), out,
        rope ? rope->inv_freq : NULL, rope ? rope->mscale : 1.0f, rope ? rope->rot_dims : 0,
        rope ? rope->neox : false, b->slot_mapping,
    };

    if (a->use_cache) {
        /* with the rotation the decode kernel stores the new rows itself */
        if (!rope && (st = attn_cache_write(b, a, k, v, kv_stride, k_cache, v_cache,
                                            (int64_t)n_blocks * block_size, stream)))
            return st;
        /* The scratch exists from the first cached call on, before any capture. */
        if ((st = attn_device_state(&sm_count, &ws)))
            return st;
    }
    attn_plan(hb, a, &n_tiles, &n_dec, &max_keys);
    if (n_tiles > 0 && (st = attn_prefill_launch(&args, dtype, n_tiles, stream)))
        return st;
    if (n_dec > 0) {
        const int32_t n_split = attn_decode_splits(b->n_seqs, a->n_kv_heads,
                                                   a->n_heads / a->n_kv_heads, max_keys,
                                                   sm_count);
        if (n_split == 1)
            ws.acc = ws.ml = NULL;
        if ((st = attn_decode_launch(&args, dtype, n_split, &ws, stream)))
            return st;
    }
    return KILN_OK;
}

extern "C" kiln_status cuda_attention(const bk_batch *b, const bk_batch_host *hb,
                                      const bk_attn *a, const void *q, const void *k,
                                      const void *v, void *k_cache, void *v_cache,
                                      int32_t n_blocks, int32_t block_size, kiln_dtype dtype,
                                      void *out, cudaStream_t stream)
{
    return attn_run(b, hb, a, NULL, q, k, v, k_cache, v_cache, n_blocks, block_size, dtype, out,
                    stream);
}

extern "C" kiln_status cuda_attention_rope(const bk_batch *b, const bk_batch_host *hb,
                                           const bk_attn *a, const cuops_rope_args *rope,
                                           const void *q, const void *k, const void *v,
                                           void *k_cache, void *v_cache, int32_t n_blocks,
                                           int32_t block_size, kiln_dtype dtype, void *out,
                                           cudaStream_t stream)
{
    if (!rope)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: no rotary parameters");
    return attn_run(b, hb, a, rope, q, k, v, k_cache, v_cache, n_blocks, block_size, dtype, out,
                    stream);
}
