/*
 * cuda_entry.c - the bk_ops entries of the CUDA backend's kernel ops: each
 * checks its arguments on the host (shapes, weight types, batch ids against
 * the host copy of the batch), then queues the kernel of cuda_ops.cu or
 * calls cuda_attention (attention.cu).  Nothing here waits for the device.
 *
 * Rotary tables.  The inverse frequencies of a bk_rope (with linear, llama3
 * or yarn scaling folded in) are computed once on the host, in f32 with the
 * formulas of the CPU backend (cpu_attn.c, after transformers), and copied
 * to the device; up to CUDA_ROPE_CACHE distinct bk_rope values are kept
 * (a model has one or two).  The host copy is pinned and kept with the
 * table, so the upload is an ordinary async copy on the stream (allowed
 * while a graph is captured).  Dynamic NTK needs the base of each token's
 * sequence length, so the kernel computes those frequencies itself.
 *
 * Invariants:
 *   1. Every id a kernel reads through (token, position, type, out row,
 *      sequence bound) was checked here against the host view of the same
 *      batch (cuda_batch_view); kernels guard again and write zeros.
 *   2. Vector parameters are in the activation type with exactly d
 *      elements (cuda_weight converts every weight).
 */
#include "backend/cuda/cuda_impl.h"

#include "backend/cuda/attention.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_ops.h"
#include "base/checked.h"
#include "base/error.h"

#include <math.h>
#include <string.h>

/* Largest rot_dims / 2 (the kernel keeps cos/sin of each in shared memory). */
#define CUDA_ROPE_MAX_HALF 2048

static kiln_status bad_size(const char *op, int64_t n, int64_t d)
{
    return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda %s: bad sizes n=%lld d=%lld", op,
                        (long long)n, (long long)d);
}

/* A vector parameter of d elements in the activation type. */
kiln_status cuda_vec_check(cuda_backend *cb, const bk_tensor *t, int64_t d, const char *op,
                           const char *what)
{
    if (!t || !t->data || t->ne0 * t->ne1 != d || t->dtype != cb->act)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "cuda %s: %s has %lld x %lld %s elements, need %lld %s", op, what,
                            t ? (long long)t->ne0 : 0LL, t ? (long long)t->ne1 : 0LL,
                            t ? dtype_name(t->dtype) : "-", (long long)d, dtype_name(cb->act));
    return KILN_OK;
}

bool cuda_act_valid(bk_act act)
{
    return act == BK_ACT_SILU || act == BK_ACT_GELU || act == BK_ACT_GELU_TANH ||
           act == BK_ACT_RELU;
}

/* ---- embed --------------------------------------------------------------------- */

/* A table of width d in the activation type. */
static kiln_status embed_table_check(cuda_backend *cb, const bk_tensor *t, int64_t d,
                                     const char *what)
{
    if (!t->data || t->ne0 != d || t->ne1 <= 0 || t->dtype != cb->act)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "cuda embed: %s table is %lld wide in %s, need %lld in %s", what,
                            (long long)t->ne0, dtype_name(t->dtype), (long long)d,
                            dtype_name(cb->act));
    return KILN_OK;
}

/* Every id of ids[0..n) inside [0, rows). */
static kiln_status embed_ids_check(const int32_t *ids, int32_t n, int64_t rows, const char *what)
{
    if (n && !ids)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda embed: the batch has no %s ids", what);
    for (int32_t t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= rows)
            return kiln_err_set(KILN_ERR_INVALID_ARG,
                                "cuda embed: %s %d of row %d is outside [0, %lld)", what, ids[t],
                                t, (long long)rows);
    return KILN_OK;
}

kiln_status cuda_embed(backend *be, const bk_tensor *table, const bk_batch *b, float scale,
                       const bk_tensor *pos_table, const bk_tensor *type_table, void *y)
{
    cuda_backend *cb = cuda_of(be);
    const bk_batch_host *h;
    const bk_tensor *pos = pos_table && pos_table->data ? pos_table : NULL;
    const bk_tensor *type = type_table && type_table->data ? type_table : NULL;
    kiln_status st;

    if (!table || (st = cuda_batch_view(cb, b, "embed", &h)))
        return table ? st : kiln_err_set(KILN_ERR_INVALID_ARG, "cuda embed: no table");
    int64_t d = table->ne0;
    if (h->n_tokens && !y)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda embed: no output");
    if ((st = embed_table_check(cb, table, d, "token")) ||
        (st = embed_ids_check(h->tokens, h->n_tokens, table->ne1, "token")))
        return st;
    if (pos && ((st = embed_table_check(cb, pos, d, "position")) ||
                (st = embed_ids_check(h->positions, h->n_tokens, pos->ne1, "position"))))
        return st;
    if (type && ((st = embed_table_check(cb, type, d, "token type")) ||
                 (h->token_types &&
                  (st = embed_ids_check(h->token_types, h->n_tokens, type->ne1, "type")))))
        return st;
    return cuops_embed(cb->act, table->data, table->ne1, 0, pos ? pos->data : NULL,
                       pos ? pos->ne1 : 0, type ? type->data : NULL, type ? type->ne1 : 0,
                       b->tokens, b->positions, b->token_types, b->n_tokens, d, scale, y,
                       cb->stream);
}

kiln_status cuda_embed_part(backend *be, const bk_tensor *table, int64_t row0,
                            const bk_batch *b, float scale, void *y)
{
    cuda_backend *cb = cuda_of(be);
    const bk_batch_host *h;
    kiln_status st;

    if (!table || row0 < 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda embed_part: bad arguments");
    if ((st = cuda_batch_view(cb, b, "embed_part", &h)))
        return st;
    if (h->n_tokens && !y)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda embed_part: no output");
    if ((st = embed_table_check(cb, table, table->ne0, "token")))
        return st;
    /* other ranks' ids give zeros; only negative ids are bad */
    for (int32_t t = 0; t < h->n_tokens; t++)
        if (h->tokens[t] < 0)
            return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda embed_part: token %d of row %d is "
                                "negative", h->tokens[t], t);
    return cuops_embed(cb->act, table->data, table->ne1, row0, NULL, 0, NULL, 0, b->tokens,
                       b->positions, NULL, b->n_tokens, table->ne0, scale, y, cb->stream);
}

/* ---- norms ------------------------------------------------------------------------- */

kiln_status cuda_rmsnorm(backend *be, const void *x, int64_t n, int64_t d, const bk_tensor *w,
                         float eps, bool add_one, void *y)
{
    cuda_backend *cb = cuda_of(be);
    kiln_status st;

    if (n < 0 || d <= 0 || n > INT32_MAX || (n && (!x || !y)))
        return bad_size("rmsnorm", n, d);
    if ((st = cuda_vec_check(cb, w, d, "rmsnorm", "weight")))
        return st;
    return cuops_rmsnorm(cb->act, NULL, x, w->data, n, d, eps, add_one, y, cb->stream);
}

kiln_status cuda_add_rmsnorm(backend *be, void *res, const void *x, int64_t n, int64_t d,
                             const bk_tensor *w, float eps, bool add_one, void *y)
{
    cuda_backend *cb = cuda_of(be);
    kiln_status st;

    if (n < 0 || d <= 0 || n > INT32_MAX || (n && (!x || !y || !res)))
        return bad_size("add_rmsnorm", n, d);
    if ((st = cuda_vec_check(cb, w, d, "add_rmsnorm", "weight")))
        return st;
    return cuops_rmsnorm(cb->act, res, x, w->data, n, d, eps, add_one, y, cb->stream);
}

kiln_status cuda_layernorm(backend *be, const void *x, const void *res, int64_t n, int64_t d,
                           const bk_tensor *w, const bk_tensor *b, float eps, void *y)
{
    cuda_backend *cb = cuda_of(be);
    const bk_tensor *bias = b && b->data ? b : NULL;
    kiln_status st;

    if (n < 0 || d <= 0 || n > INT32_MAX || (n && (!x || !y)))
        return bad_size("layernorm", n, d);
    if ((st = cuda_vec_check(cb, w, d, "layernorm", "weight")) ||
        (bias && (st = cuda_vec_check(cb, bias, d, "layernorm", "bias"))))
        return st;
    return cuops_layernorm(cb->act, x, res, w->data, bias ? bias->data : NULL, n, d, eps, y,
                           cb->stream);
}

/* ---- element-wise ------------------------------------------------------------------- */

kiln_status cuda_add(backend *be, const void *a, const void *b, int64_t n, void *y)
{
    if (n < 0 || (n && (!a || !b || !y)))
        return bad_size("add", n, 1);
    return cuops_add(cuda_of(be)->act, a, b, n, y, cuda_of(be)->stream);
}

kiln_status cuda_glu(backend *be, const void *gate, const void *up, int64_t n, int64_t ff,
                     bk_act act, void *y)
{
    int64_t total;

    if (n < 0 || ff <= 0 || !ck_mul_i64(n, ff, &total) || (n && (!gate || !up || !y)))
        return bad_size("glu", n, ff);
    if (!cuda_act_valid(act))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda glu: unknown activation %d", (int)act);
    return cuops_glu(cuda_of(be)->act, gate, up, total, act, y, cuda_of(be)->stream);
}

kiln_status cuda_act(backend *be, void *x, int64_t n, bk_act act)
{
    if (n < 0 || (n && !x))
        return bad_size("act", n, 1);
    if (!cuda_act_valid(act))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda act: unknown activation %d", (int)act);
    return cuops_act(cuda_of(be)->act, x, n, act, cuda_of(be)->stream);
}

kiln_status cuda_softcap(backend *be, void *x, int64_t n, float cap)
{
    if (n < 0 || (n && !x) || !(cap > 0.0f))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda softcap: bad arguments (n=%lld cap=%g)",
                            (long long)n, (double)cap);
    return cuops_softcap(cuda_of(be)->act, x, n, cap, cuda_of(be)->stream);
}

kiln_status cuda_split3(backend *be, const void *x, int64_t n, int64_t w0, int64_t w1,
                        int64_t w2, void *y0, void *y1, void *y2)
{
    if (n < 0 || w0 <= 0 || w1 <= 0 || w2 <= 0 || (n && (!x || !y0 || !y1 || !y2)))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda split3: bad arguments");
    return cuops_split3(cuda_of(be)->act, x, n, w0, w1, w2, y0, y1, y2, cuda_of(be)->stream);
}

/* ---- rows of a batch ---------------------------------------------------------------- */

kiln_status cuda_gather_rows(backend *be, const void *x, int64_t d, const bk_batch *b, void *y)
{
    cuda_backend *cb = cuda_of(be);
    const bk_batch_host *h;
    kiln_status st;

    if (d <= 0 || !x || !y)
        return bad_size("gather_rows", 0, d);
    if ((st = cuda_batch_view(cb, b, "gather_rows", &h)) ||
        (st = cuda_batch_check(h, "gather_rows")))
        return st;
    /* Rows are copied in parallel: y must not overlap x. */
    uintptr_t x0 = (uintptr_t)x, y0 = (uintptr_t)y;
    uintptr_t x1 = x0 + (uintptr_t)((uint64_t)h->n_tokens * (uint64_t)d * 2u);
    uintptr_t y1 = y0 + (uintptr_t)((uint64_t)h->n_out * (uint64_t)d * 2u);
    if (h->n_out && h->n_tokens && x0 < y1 && y0 < x1)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda gather_rows: output overlaps input");
    return cuops_gather_rows(cb->act, x, d, h->n_tokens, b->out_rows, h->n_out, y, cb->stream);
}

kiln_status cuda_pool(backend *be, const void *x, int64_t d, const bk_batch *b, bk_pool mode,
                      bool normalize, void *y)
{
    cuda_backend *cb = cuda_of(be);
    const bk_batch_host *h;
    kiln_status st;

    if (d <= 0 || !x || !y)
        return bad_size("pool", 0, d);
    if (mode != BK_POOL_MEAN && mode != BK_POOL_CLS && mode != BK_POOL_LAST &&
        mode != BK_POOL_MAX)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda pool: unknown mode %d", (int)mode);
    if ((st = cuda_batch_view(cb, b, "pool", &h)) || (st = cuda_batch_check(h, "pool")))
        return st;
    return cuops_pool(cb->act, x, d, b->seq_start, h->n_seqs, mode, normalize, y, cb->stream);
}

/* ---- rotary embedding ---------------------------------------------------------------- */

/* YaRN: dimension index at which num_rot rotations fit the original context. */
static double yarn_corr_dim(double num_rot, double dim, double base, double max_pos)
{
    return (dim * log(max_pos / (num_rot * 2.0 * M_PI))) / (2.0 * log(base));
}

/* inv[0 .. rot_dims/2) and the cos/sin factor of r (not dynamic). */
static void rope_inv_freq(const bk_rope *r, float *inv, float *mscale)
{
    int half = r->rot_dims / 2;
    float dim = (float)r->rot_dims, base = r->theta;

    *mscale = 1.0f;
    for (int i = 0; i < half; i++)
        inv[i] = 1.0f / powf(base, (float)(2 * i) / dim);
    if (r->scaling == MCFG_ROPE_LINEAR) {
        for (int i = 0; i < half; i++)
            inv[i] /= r->factor;
    } else if (r->scaling == MCFG_ROPE_LLAMA3) {
        /* Long wavelengths divided by factor, short ones kept, a smooth
         * blend between the two bands. */
        float old = (float)r->original_max_pos;
        float lo_wl = old / r->low_freq_factor, hi_wl = old / r->high_freq_factor;
        for (int i = 0; i < half; i++) {
            float wl = 2.0f * (float)M_PI / inv[i];
            float scaled = wl > lo_wl ? inv[i] / r->factor : inv[i];
            if (!(wl < hi_wl) && !(wl > lo_wl)) {
                float smooth = (old / wl - r->low_freq_factor) /
                               (r->high_freq_factor - r->low_freq_factor);
                scaled = (1.0f - smooth) * scaled / r->factor + smooth * scaled;
            }
            inv[i] = scaled;
        }
    } else if (r->scaling == MCFG_ROPE_YARN) {
        /* Interpolate between extrapolated and interpolated frequencies
         * along a linear ramp over [lo, hi]. */
        double max_pos = (double)r->original_max_pos;
        double lo = floor(yarn_corr_dim(r->yarn_beta_fast, dim, base, max_pos));
        double hi = ceil(yarn_corr_dim(r->yarn_beta_slow, dim, base, max_pos));
        lo = lo < 0 ? 0 : lo;
        hi = hi > dim - 1 ? dim - 1 : hi;
        if (lo == hi)
            hi += 0.001;
        for (int i = 0; i < half; i++) {
            float pos_freq = powf(base, (float)(2 * i) / dim);
            float extra = 1.0f / pos_freq, inter = 1.0f / (r->factor * pos_freq);
            float ramp = ((float)i - (float)lo) / (float)(hi - lo);
            ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
            float ext_factor = 1.0f - ramp;
            inv[i] = inter * (1.0f - ext_factor) + extra * ext_factor;
        }
        *mscale = r->attention_factor > 0.0f ? r->attention_factor
                  : r->factor > 1.0f         ? 0.1f * logf(r->factor) + 1.0f
                                             : 1.0f;
    }
}

/* Every field of a bk_rope (not memcmp: the struct has padding). */
static bool rope_same(const bk_rope *a, const bk_rope *b)
{
    return a->style == b->style && a->head_dim == b->head_dim && a->rot_dims == b->rot_dims &&
           a->theta == b->theta && a->scaling == b->scaling && a->factor == b->factor &&
           a->low_freq_factor == b->low_freq_factor &&
           a->high_freq_factor == b->high_freq_factor &&
           a->original_max_pos == b->original_max_pos &&
           a->yarn_beta_fast == b->yarn_beta_fast && a->yarn_beta_slow == b->yarn_beta_slow &&
           a->attention_factor == b->attention_factor;
}

static void rope_table_release(cuda_backend *cb, cuda_rope_table *t)
{
    if (t->host)
        cudaFreeHost(t->host);
    cuda_mem_free(cb, t->dev);
    memset(t, 0, sizeof *t);
}

void cuda_entry_free(cuda_backend *cb)
{
    for (int i = 0; i < cb->n_rope; i++)
        rope_table_release(cb, &cb->rope[i]);
    cb->n_rope = 0;
    cb->rope_next = 0;
}

/* The device table of r: cached, or computed and queued for upload.  When
 * the cache is full the oldest entry is replaced, after the stream drains
 * (queued rope kernels may read it). */
static kiln_status rope_table_get(cuda_backend *cb, const bk_rope *r, const cuda_rope_table **out)
{
    kiln_status st = KILN_OK;
    size_t bytes = (size_t)(r->rot_dims / 2) * sizeof(float);
    cuda_rope_table *t;

    for (int i = 0; i < cb->n_rope; i++)
        if (rope_same(&cb->rope[i].key, r)) {
            *out = &cb->rope[i];
            return KILN_OK;
        }
    if (cb->n_rope < CUDA_ROPE_CACHE) {
        t = &cb->rope[cb->n_rope++];
    } else {
        t = &cb->rope[cb->rope_next];
        cb->rope_next = (cb->rope_next + 1) % CUDA_ROPE_CACHE;
        KILN_CUDA_CHECK(cudaStreamSynchronize(cb->stream));
        rope_table_release(cb, t);
    }
    t->key = *r;
    KILN_CUDA_CHECK(cudaHostAlloc((void **)&t->host, bytes, cudaHostAllocDefault));
    if ((st = cuda_mem_alloc(cb, bytes, "rope table", (void **)&t->dev)))
        goto err;
    rope_inv_freq(r, t->host, &t->mscale);
    KILN_CUDA_CHECK(cudaMemcpyAsync(t->dev, t->host, bytes, cudaMemcpyHostToDevice, cb->stream));
    *out = t;
    return KILN_OK;
err:
    /* Leave the slot empty but valid: it matches no rope (rot_dims 0). */
    rope_table_release(cb, t);
    return st;
}

static kiln_status rope_check(const bk_rope *r)
{
    if (!r || r->head_dim <= 0 || r->rot_dims < 2 || r->rot_dims % 2 ||
        r->rot_dims > r->head_dim || r->rot_dims / 2 > CUDA_ROPE_MAX_HALF || !(r->theta > 0.0f))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda rope: bad rotary parameters");
    if (r->style != BK_ROPE_NEOX && r->style != BK_ROPE_NORM)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda rope: unknown style %d", (int)r->style);
    return KILN_OK;
}

kiln_status cuda_rope(backend *be, void *q, void *k, const bk_batch *b, int32_t n_heads,
                      int32_t n_kv_heads, const bk_rope *r)
{
    cuda_backend *cb = cuda_of(be);
    const bk_batch_host *h;
    const cuda_rope_table *t = NULL;
    cuops_rope_args a;
    kiln_status st;

    if ((st = rope_check(r)) || (st = cuda_batch_view(cb, b, "rope", &h)))
        return st;
    if (n_heads <= 0 || n_kv_heads < 0 ||
        (h->n_tokens && (!q || !h->positions || (k && n_kv_heads <= 0))))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda rope: bad arguments");
    memset(&a, 0, sizeof a);
    a.head_dim = r->head_dim;
    a.rot_dims = r->rot_dims;
    a.neox = r->style == BK_ROPE_NEOX;
    a.mscale = 1.0f;
    if (r->scaling == MCFG_ROPE_DYNAMIC) {
        if ((st = cuda_batch_check(h, "rope")))
            return st;
        if (h->n_tokens && h->n_seqs <= 0)
            return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda rope: dynamic NTK needs sequences");
        a.dynamic = true;
        a.theta = r->theta;
        a.factor = r->factor;
        a.original_max_pos = r->original_max_pos;
    } else {
        if ((st = rope_table_get(cb, r, &t)))
            return kiln_err_wrap(st, "cuda rope");
        a.inv_freq = t->dev;
        a.mscale = t->mscale;
    }
    return cuops_rope(cb->act, q, k, b->positions, b->seq_start, b->seq_len, h->n_seqs,
                      h->n_tokens, n_heads, k ? n_kv_heads : 0, &a, cb->stream);
}

/* ---- attention ------------------------------------------------------------------------ */

/* The cache layer an attention call with a->use_cache reads and writes. */
static kiln_status kv_layer_check(const cuda_backend *cb, const bk_attn *a, const bk_kv_cache *kv,
                                  int32_t layer)
{
    if (!kv || layer < 0 || layer >= kv->n_layers || !kv->k || !kv->v || !kv->k[layer] ||
        !kv->v[layer] || kv->dtype != cb->act || kv->n_kv_heads != a->n_kv_heads ||
        kv->head_dim != a->head_dim)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "cuda attention: the KV cache does not match layer %d (%d kv heads "
                            "of %d in %s)",
                            layer, a->n_kv_heads, a->head_dim, dtype_name(cb->act));
    return KILN_OK;
}

kiln_status cuda_attention_op(backend *be, const bk_batch *b, const bk_attn *a, const void *q,
                              const void *k, const void *v, bk_kv_cache *kv, int32_t layer,
                              void *out)
{
    cuda_backend *cb = cuda_of(be);
    const bk_batch_host *h;
    kiln_status st;

    if (!a)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda attention: no parameters");
    if ((st = cuda_batch_view(cb, b, "attention", &h)))
        return st;
    if (!a->use_cache)
        return cuda_attention(b, h, a, q, k, v, NULL, NULL, 0, 0, cb->act, out, cb->stream);
    if ((st = kv_layer_check(cb, a, kv, layer)))
        return st;
    return cuda_attention(b, h, a, q, k, v, kv->k[layer], kv->v[layer], kv->n_blocks,
                          kv->block_size, cb->act, out, cb->stream);
}

/* Whether every sequence of h has exactly one new token. */
static bool batch_all_decode(const bk_batch_host *h)
{
    if (h->n_tokens <= 0 || h->n_tokens != h->n_seqs || !h->seq_start)
        return false;
    for (int32_t s = 0; s < h->n_seqs; s++)
        if (h->seq_start[s + 1] - h->seq_start[s] != 1)
            return false;
    return true;
}

kiln_status cuda_rope_attention(backend *be, const bk_batch *b, const bk_attn *a,
                                const bk_rope *r, void *q, void *k, const void *v,
                                bk_kv_cache *kv, int32_t layer, void *out)
{
    cuda_backend *cb = cuda_of(be);
    const bk_batch_host *h;
    const cuda_rope_table *t = NULL;
    kiln_status st;

    if (!a)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda attention: no parameters");
    if ((st = rope_check(r)) || (st = cuda_batch_view(cb, b, "attention", &h)))
        return st;
    /* a decode batch with a table rope: one launch, the kernel rotating q
     * and k and storing k, v; else the rope kernel, then attention */
    if (!cb->rope_in_attn || !a->use_cache || r->scaling == MCFG_ROPE_DYNAMIC ||
        r->head_dim != a->head_dim || !batch_all_decode(h)) {
        if (a->qkv_stride && h->n_tokens > 1)
            return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda attention: rope on rows %lld "
                                "elements apart (packed q and k only)",
                                (long long)a->qkv_stride);
        if ((st = cuda_rope(be, q, k, b, a->n_heads, a->n_kv_heads, r)))
            return st;
        return cuda_attention_op(be, b, a, q, k, v, kv, layer, out);
    }
    if ((st = kv_layer_check(cb, a, kv, layer)))
        return st;
    if ((st = rope_table_get(cb, r, &t)))
        return kiln_err_wrap(st, "cuda rope");
    const cuops_rope_args ra = {.head_dim = r->head_dim, .rot_dims = r->rot_dims,
                                .neox = r->style == BK_ROPE_NEOX, .inv_freq = t->dev,
                                .mscale = t->mscale};
    return cuda_attention_rope(b, h, a, &ra, q, k, v, kv->k[layer], kv->v[layer],
                               kv->n_blocks, kv->block_size, cb->act, out, cb->stream);
}
