/*
 * cpu_backend.c - the CPU backend's life cycle, memory, weights, batches and
 * KV cache; the op table that points at the ops of the other cpu_*.c files.
 *
 * Invariants:
 *   1. Activations and the KV cache are F32 host memory; weights are views
 *      of the caller's bytes (no copy), valid while those bytes live, but
 *      for weight_random's, which own their F32 memory (bk_tensor.storage).
 *   2. Every pointer bk alloc hands out is 64-byte aligned; the 16 bytes
 *      before it hold the pointer kiln_malloc returned.
 *   3. Scratch buffers only grow, on the thread that calls the op, before a
 *      parallel loop starts; the loop bodies never allocate.
 *   4. KILN_CPU_NO_SIMD=1 (read at creation) forces the portable kernels,
 *      KILN_CPU_NO_BLAS=1 the built-in gemm instead of OpenBLAS.
 */
#include "backend/cpu/cpu_impl.h"

#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "base/hashrand.h"
#include "format/quant.h"

#include <stdlib.h>
#include <string.h>

#ifdef KILN_HAVE_OPENBLAS
/* OpenBLAS's own threads stay idle: ops split work over the kiln pool and
 * each thread calls a single-threaded sgemm. */
void openblas_set_num_threads(int num_threads);
#endif

#define CPU_ALIGN 64

/* ---- aligned host memory -------------------------------------------------- */

/* `bytes` bytes aligned to CPU_ALIGN, or NULL. */
static void *cpu_aligned_alloc(size_t bytes, void **raw)
{
    size_t total;
    if (!ck_add_size(bytes, CPU_ALIGN + sizeof(void *), &total))
        return NULL;
    unsigned char *p = kiln_malloc(total);
    if (!p)
        return NULL;
    uintptr_t a = ((uintptr_t)p + sizeof(void *) + CPU_ALIGN - 1) & ~(uintptr_t)(CPU_ALIGN - 1);
    *raw = p;
    return (void *)a;
}

static kiln_status cpu_alloc(backend *be, size_t bytes, void **out)
{
    void *raw;
    unsigned char *p = cpu_aligned_alloc(bytes ? bytes : 1, &raw);
    *out = NULL;
    if (!p)
        return kiln_err_set(KILN_ERR_OOM, "cpu: alloc of %zu bytes failed", bytes);
    memcpy(p - sizeof(void *), &raw, sizeof raw);
    *out = p;
    return KILN_OK;
}

static void cpu_free(backend *be, void *p)
{
    void *raw;
    if (!p)
        return;
    memcpy(&raw, (unsigned char *)p - sizeof(void *), sizeof raw);
    kiln_free(raw);
}

static kiln_status cpu_copy(backend *be, void *dst, const void *src, size_t bytes)
{
    if (bytes && (!dst || !src))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu: copy of %zu bytes with a NULL pointer",
                            bytes);
    if (bytes && dst != src)
        memmove(dst, src, bytes);
    return KILN_OK;
}

static kiln_status cpu_sync(backend *be)
{
    return KILN_OK;
}

/* ---- scratch ------------------------------------------------------------- */

kiln_status cpu_scratch_grow(cpu_scratch *s, size_t floats)
{
    size_t bytes;
    void *raw;
    if (s->cap >= floats)
        return KILN_OK;
    if (!ck_mul_size(floats, sizeof(float), &bytes))
        return kiln_err_set(KILN_ERR_RANGE, "cpu: scratch of %zu floats overflows", floats);
    float *p = cpu_aligned_alloc(bytes, &raw);
    if (!p)
        return kiln_err_set(KILN_ERR_OOM, "cpu: scratch of %zu bytes", bytes);
    kiln_free(s->raw);
    s->raw = raw;
    s->buf = p;
    s->cap = floats;
    return KILN_OK;
}

kiln_status cpu_scratch_reserve(cpu_backend *cb, int t, size_t floats)
{
    KILN_ASSERT(t >= 0 && t < cb->n_threads);
    return cpu_scratch_grow(&cb->scratch[t], floats);
}

kiln_status cpu_scratch_reserve_all(cpu_backend *cb, size_t floats)
{
    kiln_status st;
    for (int t = 0; t < cb->n_threads; t++)
        if ((st = cpu_scratch_grow(&cb->scratch[t], floats)))
            return st;
    return KILN_OK;
}

kiln_status cpu_vec_f32(cpu_backend *cb, const bk_tensor *t, int64_t n, int slot,
                        const char *op, const float **out)
{
    kiln_status st;
    KILN_ASSERT(slot == 0 || slot == 1);
    if (!t || !t->data || t->ne0 * t->ne1 != n || n <= 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "cpu %s: vector parameter has %lld x %lld elements, need %lld", op,
                            t ? (long long)t->ne0 : 0LL, t ? (long long)t->ne1 : 0LL,
                            (long long)n);
    if (t->dtype == KILN_DT_F32 && ((uintptr_t)t->data & 3u) == 0) {
        *out = t->data;
        return KILN_OK;
    }
    if ((st = cpu_scratch_grow(&cb->vec[slot], (size_t)n)))
        return st;
    if ((st = quant_dequantize(t->dtype, t->data, t->row_bytes * (size_t)t->ne1,
                               cb->vec[slot].buf, n)))
        return kiln_err_wrap(st, "cpu %s", op);
    *out = cb->vec[slot].buf;
    return KILN_OK;
}

/* ---- weights ------------------------------------------------------------- */

static kiln_status cpu_weight(backend *be, kiln_dtype dtype, int64_t ne0, int64_t ne1,
                              const void *src, size_t src_bytes, bk_tensor *out)
{
    const dtype_info *di = dtype_get(dtype);
    uint64_t row_bytes, total;
    kiln_status st;

    memset(out, 0, sizeof *out);
    if (!di || !di->dequant)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "cpu weight: type %s is not supported",
                            dtype_name(dtype));
    if (ne0 <= 0 || ne1 <= 0 || !src)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu weight: bad shape %lld x %lld",
                            (long long)ne1, (long long)ne0);
    if ((st = dtype_nbytes(dtype, ne0, &row_bytes)))
        return kiln_err_wrap(st, "cpu weight (%s, row of %lld)", di->name, (long long)ne0);
    if (!ck_mul_u64(row_bytes, (uint64_t)ne1, &total) || total > src_bytes)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "cpu weight: %lld x %lld %s needs more than the %zu bytes given",
                            (long long)ne1, (long long)ne0, di->name, src_bytes);
    out->dtype = dtype;
    out->ne0 = ne0;
    out->ne1 = ne1;
    out->row_bytes = (size_t)row_bytes;
    out->data = src;
    return KILN_OK;
}

static void cpu_weight_free(backend *be, bk_tensor *w)
{
    if (!w)
        return;
    cpu_free(be, w->storage);
    memset(w, 0, sizeof *w);
}

/* An F32 weight of its own memory, element i = hr_uniform(seed, i, lo, hi). */
static kiln_status cpu_weight_random(backend *be, int64_t ne0, int64_t ne1, uint64_t seed,
                                     float lo, float hi, bk_tensor *out)
{
    size_t n, bytes;
    float *p;
    kiln_status st;

    memset(out, 0, sizeof *out);
    if (ne0 <= 0 || ne1 <= 0 || !(lo <= hi))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu weight_random: bad shape %lld x %lld",
                            (long long)ne1, (long long)ne0);
    if (!ck_mul_size((size_t)ne0, (size_t)ne1, &n) || !ck_mul_size(n, sizeof(float), &bytes))
        return kiln_err_set(KILN_ERR_RANGE, "cpu weight_random: %lld x %lld elements overflow",
                            (long long)ne1, (long long)ne0);
    if ((st = cpu_alloc(be, bytes, (void **)&p)))
        return kiln_err_wrap(st, "cpu weight_random (%lld x %lld)", (long long)ne1,
                             (long long)ne0);
    for (size_t i = 0; i < n; i++)
        p[i] = hr_uniform(seed, i, lo, hi);
    out->dtype = KILN_DT_F32;
    out->ne0 = ne0;
    out->ne1 = ne1;
    out->row_bytes = (size_t)ne0 * sizeof(float);
    out->data = p;
    out->storage = p;
    return KILN_OK;
}

/* ---- batches ------------------------------------------------------------- */

kiln_status cpu_batch_check(const bk_batch *b, const char *op)
{
    if (!b || b->n_tokens < 0 || b->n_seqs < 0 || !b->seq_start || (b->n_seqs && !b->seq_len))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu %s: malformed batch", op);
    if (b->seq_start[0] != 0 || b->seq_start[b->n_seqs] != b->n_tokens)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "cpu %s: batch sequences cover rows [%d, %d), batch has %d", op,
                            b->seq_start[0], b->seq_start[b->n_seqs], b->n_tokens);
    for (int32_t s = 0; s < b->n_seqs; s++) {
        int32_t len = b->seq_start[s + 1] - b->seq_start[s];
        if (len < 0 || b->seq_len[s] < len)
            return kiln_err_set(KILN_ERR_INVALID_ARG,
                                "cpu %s: sequence %d has %d new rows, context %d", op, s, len,
                                b->seq_len[s]);
    }
    if (b->n_out < 0 || (b->n_out && !b->out_rows))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu %s: bad out_rows", op);
    for (int32_t i = 0; i < b->n_out; i++)
        if (b->out_rows[i] < 0 || b->out_rows[i] >= b->n_tokens)
            return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu %s: out row %d is outside the batch",
                                op, b->out_rows[i]);
    return KILN_OK;
}

/* Copy n int32 from src to *dst (advancing it); NULL src gives NULL. */
static const int32_t *cpu_batch_put(int32_t **dst, const int32_t *src, size_t n)
{
    if (!src)
        return NULL;
    int32_t *p = *dst;
    memcpy(p, src, n * sizeof *p);
    *dst += n;
    return p;
}

static kiln_status cpu_batch_upload(backend *be, const bk_batch_host *h, bk_batch *out)
{
    cpu_backend *cb = cpu_of(be);
    size_t nt, ns, tables, need;

    if (!h || h->n_tokens < 0 || h->n_seqs < 0 || h->max_blocks < 0 || h->n_out < 0 ||
        !h->seq_start)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu batch_upload: malformed batch");
    nt = (size_t)h->n_tokens;
    ns = (size_t)h->n_seqs;
    if (!ck_mul_size(ns, (size_t)h->max_blocks, &tables))
        return kiln_err_set(KILN_ERR_RANGE, "cpu batch_upload: block tables overflow");
    need = 4 * nt + 2 * ns + 1 + tables + (size_t)h->n_out * (1 + BK_SAMPLE_ROW_WORDS);
    if (need > cb->batch_cap) {
        int32_t *p = kiln_malloc(need * sizeof *p);
        if (!p)
            return kiln_err_set(KILN_ERR_OOM, "cpu batch_upload: %zu ids", need);
        kiln_free(cb->batch_mem);
        cb->batch_mem = p;
        cb->batch_cap = need;
    }
    int32_t *w = cb->batch_mem;
    bk_batch *b = &cb->batch;
    memset(b, 0, sizeof *b);
    b->n_tokens = h->n_tokens;
    b->n_seqs = h->n_seqs;
    b->max_blocks = h->max_blocks;
    b->n_out = h->n_out;
    b->tokens = cpu_batch_put(&w, h->tokens, nt);
    b->token_types = cpu_batch_put(&w, h->token_types, nt);
    b->positions = cpu_batch_put(&w, h->positions, nt);
    b->slot_mapping = cpu_batch_put(&w, h->slot_mapping, nt);
    b->seq_start = cpu_batch_put(&w, h->seq_start, ns + 1);
    b->seq_len = cpu_batch_put(&w, h->seq_len, ns);
    b->block_tables = cpu_batch_put(&w, h->block_tables, tables);
    b->out_rows = cpu_batch_put(&w, h->out_rows, (size_t)h->n_out);
    b->sample = (const bk_sample_row *)cpu_batch_put(&w, (const int32_t *)h->sample,
                                                     (size_t)h->n_out * BK_SAMPLE_ROW_WORDS);
    for (size_t s = 0; s < ns && b->seq_len; s++)
        if (b->seq_len[s] > b->max_seq_len)
            b->max_seq_len = b->seq_len[s];
    *out = *b;
    return KILN_OK;
}

/* ---- KV cache ------------------------------------------------------------ */

static void cpu_kv_free(backend *be, bk_kv_cache *kv)
{
    if (!kv)
        return;
    if (kv->k && kv->n_layers > 0)
        cpu_free(be, kv->k[0]);
    kiln_free(kv->k);
    kiln_free(kv->v);
    memset(kv, 0, sizeof *kv);
}

static kiln_status cpu_kv_alloc(backend *be, const bk_kv_cache *shape, bk_kv_cache *out)
{
    uint64_t per, total;
    kiln_status st;

    memset(out, 0, sizeof *out);
    if (shape->n_layers <= 0 || shape->n_blocks <= 0 || shape->block_size <= 0 ||
        shape->n_kv_heads <= 0 || shape->head_dim <= 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu kv_alloc: bad cache shape");
    if (shape->dtype != KILN_DT_F32)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "cpu kv_alloc: KV type %s (the CPU keeps F32)",
                            dtype_name(shape->dtype));
    per = (uint64_t)shape->n_blocks * (uint64_t)shape->block_size *
          (uint64_t)shape->n_kv_heads * (uint64_t)shape->head_dim * sizeof(float);
    if (!ck_mul_u64(per, 2 * (uint64_t)shape->n_layers, &total) || total > SIZE_MAX / 2)
        return kiln_err_set(KILN_ERR_RANGE, "cpu kv_alloc: cache size overflows");
    *out = *shape;
    out->k = kiln_calloc((size_t)shape->n_layers, sizeof(void *));
    out->v = kiln_calloc((size_t)shape->n_layers, sizeof(void *));
    void *base = NULL;
    if (!out->k || !out->v || (st = cpu_alloc(be, (size_t)total, &base))) {
        cpu_kv_free(be, out);
        return kiln_err_set(KILN_ERR_OOM, "cpu kv_alloc: %llu bytes",
                            (unsigned long long)total);
    }
    memset(base, 0, (size_t)total);
    for (int32_t l = 0; l < shape->n_layers; l++) {
        out->k[l] = (char *)base + (size_t)(2 * l) * (size_t)per;
        out->v[l] = (char *)base + (size_t)(2 * l + 1) * (size_t)per;
    }
    return KILN_OK;
}

/* ---- host copies ----------------------------------------------------------- */

static kiln_status cpu_to_host_f32(backend *be, const void *x, int64_t n, float *dst)
{
    if (n < 0 || (n && (!x || !dst)))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu to_host_f32: bad arguments");
    if (n && dst != x)
        memmove(dst, x, (size_t)n * sizeof(float));
    return KILN_OK;
}

/* ---- life cycle ------------------------------------------------------------ */

static void cpu_destroy(backend *be)
{
    cpu_backend *cb = cpu_of(be);
    if (!cb)
        return;
    tpool_free(cb->pool);
    for (int t = 0; cb->scratch && t < cb->n_threads; t++)
        kiln_free(cb->scratch[t].raw);
    kiln_free(cb->scratch);
    kiln_free(cb->vec[0].raw);
    kiln_free(cb->vec[1].raw);
    kiln_free(cb->xperm.raw);
    kiln_free(cb->batch_mem);
    kiln_free(cb);
}

static const bk_ops cpu_ops = {
    .name = "cpu",
    .act_dtype = KILN_DT_F32,
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .sync = cpu_sync,
    .weight = cpu_weight,
    .weight_free = cpu_weight_free,
    .weight_random = cpu_weight_random,
    .batch_upload = cpu_batch_upload,
    .kv_alloc = cpu_kv_alloc,
    .kv_free = cpu_kv_free,
    .embed = cpu_embed,
    .embed_part = cpu_embed_part,
    .matmul = cpu_matmul,
    .rmsnorm = cpu_rmsnorm,
    .add_rmsnorm = cpu_add_rmsnorm,
    .layernorm = cpu_layernorm,
    .add = cpu_add,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .glu = cpu_glu,
    .act = cpu_act,
    .gather_rows = cpu_gather_rows,
    .pool = cpu_pool,
    .softcap = cpu_softcap,
    .to_host_f32 = cpu_to_host_f32,
    .argmax = cpu_argmax,
};

static bool cpu_env_on(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

kiln_status bk_cpu_create(int threads, backend **out)
{
    kiln_status st;
    *out = NULL;
    cpu_backend *cb = kiln_calloc(1, sizeof *cb);
    if (!cb)
        return kiln_err_set(KILN_ERR_OOM, "cpu backend");
    cb->base.ops = &cpu_ops;
    if ((st = tpool_create(threads, &cb->pool))) {
        kiln_free(cb);
        return kiln_err_wrap(st, "cpu backend");
    }
    cb->n_threads = tpool_size(cb->pool);
    cb->base.threads = cb->n_threads;
    cb->scratch = kiln_calloc((size_t)cb->n_threads, sizeof *cb->scratch);
    if (!cb->scratch) {
        cpu_destroy(&cb->base);
        return kiln_err_set(KILN_ERR_OOM, "cpu backend");
    }
    cb->simd = cpu_avx2_usable() && !cpu_env_on("KILN_CPU_NO_SIMD");
#ifdef KILN_HAVE_OPENBLAS
    cb->blas = !cpu_env_on("KILN_CPU_NO_BLAS");
    openblas_set_num_threads(1);
#endif
    *out = &cb->base;
    return KILN_OK;
}
