/*
 * cpu_ops.c - the row-wise and element-wise ops of the CPU backend:
 * embedding lookup, RMSNorm (plain, fused with the residual add), LayerNorm,
 * add, activations and gated linear units, soft-capping, row gathering and
 * sequence pooling.
 *
 * Formulas follow PyTorch's in f32 (transformers' reference models):
 *   RMSNorm   y = (x * rsqrt(mean(x^2) + eps)) * w        gemma: * (1 + w)
 *   LayerNorm y = (x - mean) * rsqrt(var + eps) * w + b   (biased variance)
 *   SiLU x * sigmoid(x); GELU 0.5 x (1 + erf(x / sqrt 2));
 *   GELU-tanh 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
 * Row statistics are summed in double, so they are at least as exact as
 * PyTorch's f32 reductions.
 *
 * Invariants:
 *   1. Ops that allow aliasing (x == y) read each element before writing it.
 *   2. Large ops split rows (or element ranges) over the pool; each output
 *      element is computed by one thread, so thread counts do not change
 *      results.
 */
#include "backend/cpu/cpu_impl.h"

#include "base/checked.h"
#include "base/error.h"
#include "format/quant.h"

#include <math.h>
#include <string.h>

/* Elements per range of the element-wise ops. */
#define CPU_EW_GRAIN 16384

/* Rows per range for row-wise ops of width d: about CPU_EW_GRAIN elements. */
static size_t row_grain(int64_t d)
{
    int64_t g = CPU_EW_GRAIN / (d > 0 ? d : 1);
    return (size_t)(g < 1 ? 1 : g);
}

static kiln_status bad_size(const char *op, int64_t n, int64_t d)
{
    return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu %s: bad sizes n=%lld d=%lld", op,
                        (long long)n, (long long)d);
}

/* ---- embed --------------------------------------------------------------- */

typedef struct embed_job {
    cpu_backend *cb;
    const bk_tensor *table, *pos, *type;
    const bk_batch *b;
    float scale;
    float *y;       /* (n_tokens, d) */
    int64_t d;
    int64_t row0;   /* embed_part: id of the table's first row; else 0 */
} embed_job;

/* Row `row` of table (any dequantizable type) into dst[0..d). */
static void embed_row(const bk_tensor *t, int64_t row, int64_t d, float *dst)
{
    kiln_status st = quant_dequantize(t->dtype, (const uint8_t *)t->data +
                                      (size_t)row * t->row_bytes, t->row_bytes, dst, d);
    KILN_ASSERT(st == KILN_OK);
}

static void embed_body(void *ctx, size_t begin, size_t end, int thread)
{
    const embed_job *j = ctx;
    float *tmp = j->cb->scratch[thread].buf;
    for (size_t t = begin; t < end; t++) {
        float *y = j->y + (int64_t)t * j->d;
        int64_t id = (int64_t)j->b->tokens[t] - j->row0;
        if (id < 0 || id >= j->table->ne1) {
            /* embed_part: another rank's row (whole lookups checked every id) */
            memset(y, 0, (size_t)j->d * sizeof *y);
            continue;
        }
        embed_row(j->table, id, j->d, y);
        if (j->scale != 1.0f)
            for (int64_t i = 0; i < j->d; i++)
                y[i] *= j->scale;
        if (j->type) {
            embed_row(j->type, j->b->token_types ? j->b->token_types[t] : 0, j->d, tmp);
            for (int64_t i = 0; i < j->d; i++)
                y[i] += tmp[i];
        }
        if (j->pos) {
            embed_row(j->pos, j->b->positions[t], j->d, tmp);
            for (int64_t i = 0; i < j->d; i++)
                y[i] += tmp[i];
        }
    }
}

/* Every id of ids[0..n) inside [0, rows); KILN_ERR_INVALID_ARG otherwise. */
static kiln_status embed_ids_check(const int32_t *ids, int32_t n, int64_t rows, const char *what)
{
    if (!ids)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu embed: no %s", what);
    for (int32_t t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= rows)
            return kiln_err_set(KILN_ERR_INVALID_ARG,
                                "cpu embed: %s %d of row %d is outside [0, %lld)", what, ids[t],
                                t, (long long)rows);
    return KILN_OK;
}

static kiln_status embed_table_check(const bk_tensor *t, int64_t d, const char *what)
{
    if (!t->data || t->ne0 != d || t->ne1 <= 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu embed: %s table is %lld wide, need %lld",
                            what, (long long)t->ne0, (long long)d);
    const dtype_info *di = dtype_get(t->dtype);
    if (!di || !di->dequant)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "cpu embed: %s table type %s", what,
                            dtype_name(t->dtype));
    return KILN_OK;
}

kiln_status cpu_embed(backend *be, const bk_tensor *table, const bk_batch *b, float scale,
                      const bk_tensor *pos_table, const bk_tensor *type_table, void *y)
{
    cpu_backend *cb = cpu_of(be);
    kiln_status st;
    if (!table || !b || b->n_tokens < 0 || (b->n_tokens && !y))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu embed: bad arguments");
    int64_t d = table->ne0;
    embed_job j = {cb, table, pos_table && pos_table->data ? pos_table : NULL,
                   type_table && type_table->data ? type_table : NULL, b, scale, y, d, 0};
    if ((st = embed_table_check(table, d, "token")) ||
        (st = embed_ids_check(b->tokens, b->n_tokens, table->ne1, "token")))
        return st;
    if (j.pos && ((st = embed_table_check(j.pos, d, "position")) ||
                  (st = embed_ids_check(b->positions, b->n_tokens, j.pos->ne1, "position"))))
        return st;
    if (j.type && ((st = embed_table_check(j.type, d, "token type")) ||
                   (b->token_types &&
                    (st = embed_ids_check(b->token_types, b->n_tokens, j.type->ne1, "type")))))
        return st;
    if ((st = cpu_scratch_reserve_all(cb, (size_t)d)))
        return kiln_err_wrap(st, "cpu embed");
    tpool_parallel_for(cb->pool, (size_t)b->n_tokens, 1, embed_body, &j);
    return KILN_OK;
}

kiln_status cpu_embed_part(backend *be, const bk_tensor *table, int64_t row0,
                           const bk_batch *b, float scale, void *y)
{
    cpu_backend *cb = cpu_of(be);
    kiln_status st;
    if (!table || !b || row0 < 0 || b->n_tokens < 0 || (b->n_tokens && (!y || !b->tokens)))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu embed_part: bad arguments");
    embed_job j = {cb, table, NULL, NULL, b, scale, y, table->ne0, row0};
    if ((st = embed_table_check(table, table->ne0, "token")))
        return st;
    for (int32_t t = 0; t < b->n_tokens; t++)
        if (b->tokens[t] < 0)
            return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu embed_part: token %d of row %d is "
                                "negative", b->tokens[t], t);
    tpool_parallel_for(cb->pool, (size_t)b->n_tokens, 1, embed_body, &j);
    return KILN_OK;
}

/* ---- RMSNorm ------------------------------------------------------------- */

typedef struct norm_job {
    float *res;            /* (n, d) add_rmsnorm's residual, else NULL */
    const float *x;        /* (n, d) */
    const float *r;        /* (n, d) layernorm's residual, or NULL */
    const float *w, *b;    /* (d) */
    float *y;              /* (n, d) */
    int64_t d;
    float eps;
    bool add_one;
} norm_job;

/* y = x * rsqrt(mean(x^2) + eps) * (w or 1 + w), one row. */
static void rms_row(const float *x, const float *w, int64_t d, float eps, bool add_one,
                    float *y)
{
    double ss = 0.0;
    for (int64_t i = 0; i < d; i++)
        ss += (double)x[i] * (double)x[i];
    float inv = 1.0f / sqrtf((float)(ss / (double)d) + eps);
    if (add_one) {
        for (int64_t i = 0; i < d; i++)
            y[i] = (x[i] * inv) * (1.0f + w[i]);
    } else {
        for (int64_t i = 0; i < d; i++)
            y[i] = (x[i] * inv) * w[i];
    }
}

static void rms_body(void *ctx, size_t begin, size_t end, int thread)
{
    const norm_job *j = ctx;
    for (size_t r = begin; r < end; r++) {
        int64_t o = (int64_t)r * j->d;
        if (j->res) {
            for (int64_t i = 0; i < j->d; i++)
                j->res[o + i] += j->x[o + i];
            rms_row(j->res + o, j->w, j->d, j->eps, j->add_one, j->y + o);
        } else {
            rms_row(j->x + o, j->w, j->d, j->eps, j->add_one, j->y + o);
        }
    }
}

kiln_status cpu_rmsnorm(backend *be, const void *x, int64_t n, int64_t d, const bk_tensor *w,
                        float eps, bool add_one, void *y)
{
    cpu_backend *cb = cpu_of(be);
    kiln_status st;
    norm_job j = {NULL, x, NULL, NULL, NULL, y, d, eps, add_one};
    if (n < 0 || d <= 0 || (n && (!x || !y)))
        return bad_size("rmsnorm", n, d);
    if ((st = cpu_vec_f32(cb, w, d, 0, "rmsnorm", &j.w)))
        return st;
    tpool_parallel_for(cb->pool, (size_t)n, row_grain(d), rms_body, &j);
    return KILN_OK;
}

kiln_status cpu_add_rmsnorm(backend *be, void *res, const void *x, int64_t n, int64_t d,
                            const bk_tensor *w, float eps, bool add_one, void *y)
{
    cpu_backend *cb = cpu_of(be);
    kiln_status st;
    norm_job j = {res, x, NULL, NULL, NULL, y, d, eps, add_one};
    if (n < 0 || d <= 0 || (n && (!x || !y || !res)))
        return bad_size("add_rmsnorm", n, d);
    if ((st = cpu_vec_f32(cb, w, d, 0, "add_rmsnorm", &j.w)))
        return st;
    tpool_parallel_for(cb->pool, (size_t)n, row_grain(d), rms_body, &j);
    return KILN_OK;
}

/* ---- LayerNorm ----------------------------------------------------------- */

static void ln_body(void *ctx, size_t begin, size_t end, int thread)
{
    const norm_job *j = ctx;
    int64_t d = j->d;
    for (size_t r = begin; r < end; r++) {
        const float *x = j->x + (int64_t)r * d;
        float *y = j->y + (int64_t)r * d;
        if (j->r) {
            const float *rr = j->r + (int64_t)r * d;
            for (int64_t i = 0; i < d; i++)
                y[i] = x[i] + rr[i];
            x = y;
        }
        double s = 0.0, ss = 0.0;
        for (int64_t i = 0; i < d; i++)
            s += x[i];
        float mean = (float)(s / (double)d);
        for (int64_t i = 0; i < d; i++) {
            double c = (double)x[i] - (double)mean;
            ss += c * c;
        }
        float inv = 1.0f / sqrtf((float)(ss / (double)d) + j->eps);
        for (int64_t i = 0; i < d; i++)
            y[i] = ((x[i] - mean) * inv) * j->w[i] + (j->b ? j->b[i] : 0.0f);
    }
}

kiln_status cpu_layernorm(backend *be, const void *x, const void *res, int64_t n, int64_t d,
                          const bk_tensor *w, const bk_tensor *b, float eps, void *y)
{
    cpu_backend *cb = cpu_of(be);
    kiln_status st;
    norm_job j = {NULL, x, res, NULL, NULL, y, d, eps, false};
    if (n < 0 || d <= 0 || (n && (!x || !y)))
        return bad_size("layernorm", n, d);
    if ((st = cpu_vec_f32(cb, w, d, 0, "layernorm", &j.w)))
        return st;
    if (b && b->data && (st = cpu_vec_f32(cb, b, d, 1, "layernorm bias", &j.b)))
        return st;
    tpool_parallel_for(cb->pool, (size_t)n, row_grain(d), ln_body, &j);
    return KILN_OK;
}

/* ---- element-wise ---------------------------------------------------------- */

typedef struct ew_job {
    const float *a, *b;
    float *y;
    bk_act act;
    float cap;
} ew_job;

static inline float act_one(bk_act act, float x)
{
    switch (act) {
    case BK_ACT_SILU: return x / (1.0f + expf(-x));
    case BK_ACT_GELU: return (x * 0.5f) * (1.0f + erff(x * (float)M_SQRT1_2));
    case BK_ACT_GELU_TANH: {
        const float beta = (float)(M_SQRT2 * M_2_SQRTPI * 0.5), kappa = 0.044715f;
        float inner = beta * (x + kappa * (x * x * x));
        return (0.5f * x) * (1.0f + tanhf(inner));
    }
    case BK_ACT_RELU: return x > 0.0f ? x : 0.0f;
    }
    return x;
}

static bool act_valid(bk_act act)
{
    return act == BK_ACT_SILU || act == BK_ACT_GELU || act == BK_ACT_GELU_TANH ||
           act == BK_ACT_RELU;
}

static void add_body(void *ctx, size_t begin, size_t end, int thread)
{
    const ew_job *j = ctx;
    for (size_t i = begin; i < end; i++)
        j->y[i] = j->a[i] + j->b[i];
}

static void glu_body(void *ctx, size_t begin, size_t end, int thread)
{
    const ew_job *j = ctx;
    for (size_t i = begin; i < end; i++)
        j->y[i] = act_one(j->act, j->a[i]) * j->b[i];
}

static void act_body(void *ctx, size_t begin, size_t end, int thread)
{
    const ew_job *j = ctx;
    for (size_t i = begin; i < end; i++)
        j->y[i] = act_one(j->act, j->y[i]);
}

static void softcap_body(void *ctx, size_t begin, size_t end, int thread)
{
    const ew_job *j = ctx;
    for (size_t i = begin; i < end; i++)
        j->y[i] = tanhf(j->y[i] / j->cap) * j->cap;
}

kiln_status cpu_add(backend *be, const void *a, const void *b, int64_t n, void *y)
{
    ew_job j = {a, b, y, BK_ACT_SILU, 0.0f};
    if (n < 0 || (n && (!a || !b || !y)))
        return bad_size("add", n, 1);
    tpool_parallel_for(cpu_of(be)->pool, (size_t)n, CPU_EW_GRAIN, add_body, &j);
    return KILN_OK;
}

kiln_status cpu_glu(backend *be, const void *gate, const void *up, int64_t n, int64_t ff,
                    bk_act act, void *y)
{
    ew_job j = {gate, up, y, act, 0.0f};
    int64_t total;
    if (n < 0 || ff <= 0 || !ck_mul_i64(n, ff, &total) || (n && (!gate || !up || !y)))
        return bad_size("glu", n, ff);
    if (!act_valid(act))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu glu: unknown activation %d", (int)act);
    tpool_parallel_for(cpu_of(be)->pool, (size_t)total, CPU_EW_GRAIN, glu_body, &j);
    return KILN_OK;
}

kiln_status cpu_act(backend *be, void *x, int64_t n, bk_act act)
{
    ew_job j = {NULL, NULL, x, act, 0.0f};
    if (n < 0 || (n && !x))
        return bad_size("act", n, 1);
    if (!act_valid(act))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu act: unknown activation %d", (int)act);
    tpool_parallel_for(cpu_of(be)->pool, (size_t)n, CPU_EW_GRAIN, act_body, &j);
    return KILN_OK;
}

kiln_status cpu_softcap(backend *be, void *x, int64_t n, float cap)
{
    ew_job j = {NULL, NULL, x, BK_ACT_SILU, cap};
    if (n < 0 || (n && !x) || !(cap > 0.0f))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu softcap: bad arguments (n=%lld cap=%g)",
                            (long long)n, (double)cap);
    tpool_parallel_for(cpu_of(be)->pool, (size_t)n, CPU_EW_GRAIN, softcap_body, &j);
    return KILN_OK;
}

/* ---- rows of a batch ------------------------------------------------------- */

kiln_status cpu_gather_rows(backend *be, const void *x, int64_t d, const bk_batch *b, void *y)
{
    kiln_status st;
    if (d <= 0 || !x || !y)
        return bad_size("gather_rows", 0, d);
    if ((st = cpu_batch_check(b, "gather_rows")))
        return st;
    for (int32_t i = 0; i < b->n_out; i++)
        memmove((float *)y + (int64_t)i * d, (const float *)x + (int64_t)b->out_rows[i] * d,
                (size_t)d * sizeof(float));
    return KILN_OK;
}

/* Pool rows [r0, r1) of x (width d) into y. */
static void pool_seq(const float *x, int64_t d, int32_t r0, int32_t r1, bk_pool mode,
                     float *y)
{
    if (r1 <= r0) {
        memset(y, 0, (size_t)d * sizeof *y);
        return;
    }
    for (int64_t i = 0; i < d; i++) {
        double acc = mode == BK_POOL_MAX ? -INFINITY : 0.0;
        switch (mode) {
        case BK_POOL_CLS: acc = x[(int64_t)r0 * d + i]; break;
        case BK_POOL_LAST: acc = x[(int64_t)(r1 - 1) * d + i]; break;
        case BK_POOL_MAX:
            for (int32_t r = r0; r < r1; r++)
                acc = fmax(acc, x[(int64_t)r * d + i]);
            break;
        case BK_POOL_MEAN:
            for (int32_t r = r0; r < r1; r++)
                acc += x[(int64_t)r * d + i];
            acc /= (double)(r1 - r0);
            break;
        }
        y[i] = (float)acc;
    }
}

/* y /= max(||y||, 1e-12), as torch.nn.functional.normalize. */
static void l2_normalize(float *y, int64_t d)
{
    double ss = 0.0;
    for (int64_t i = 0; i < d; i++)
        ss += (double)y[i] * (double)y[i];
    float norm = (float)sqrt(ss);
    if (norm < 1e-12f)
        norm = 1e-12f;
    for (int64_t i = 0; i < d; i++)
        y[i] /= norm;
}

kiln_status cpu_pool(backend *be, const void *x, int64_t d, const bk_batch *b, bk_pool mode,
                     bool normalize, void *y)
{
    kiln_status st;
    if (d <= 0 || !x || !y)
        return bad_size("pool", 0, d);
    if (mode != BK_POOL_MEAN && mode != BK_POOL_CLS && mode != BK_POOL_LAST &&
        mode != BK_POOL_MAX)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu pool: unknown mode %d", (int)mode);
    if ((st = cpu_batch_check(b, "pool")))
        return st;
    for (int32_t s = 0; s < b->n_seqs; s++) {
        float *ys = (float *)y + (int64_t)s * d;
        pool_seq(x, d, b->seq_start[s], b->seq_start[s + 1], mode, ys);
        if (normalize)
            l2_normalize(ys, d);
    }
    return KILN_OK;
}

kiln_status cpu_argmax(backend *be, const void *x, int64_t rows, int64_t cols, int32_t *ids)
{
    const float *v = x;
    if (rows < 0 || cols <= 0 || (rows && (!x || !ids)))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu argmax: bad arguments");
    for (int64_t r = 0; r < rows; r++, v += cols) {
        int64_t best = -1;
        for (int64_t c = 0; c < cols; c++)
            if (v[c] == v[c] && (best < 0 || v[c] > v[best]))
                best = c;
        ids[r] = best < 0 ? 0 : (int32_t)best;
    }
    return KILN_OK;
}
