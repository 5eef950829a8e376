/*
 * model.c - loading a model onto a backend: the architecture registry,
 * tensor-name mapping with shape checks, the activation workspace, and the
 * entry points that dispatch to an architecture's forward pass.
 *
 * Load order (model_load):
 *   1. msrc_open: config + tensor table of a GGUF file or HF directory.
 *   2. model_arch_find: the config's architecture -> its ops (llama.c,
 *      gemma3.c, bert.c).  Conventions that depend on format and family are
 *      settled here: rope style (GGUF llama/mistral files carry q/k permuted
 *      by llama.cpp's converter for interleaved pairs -> BK_ROPE_NORM; HF
 *      checkpoints and GGUF qwen2/qwen3/gemma3 -> BK_ROPE_NEOX, as llama.cpp's
 *      llama_model_rope_type says), gemma3's (1 + w) norms (HF only: the GGUF
 *      converter already stored 1 + w) and embedding scale.
 *   3. ops->load maps every weight through model_load_weight: name lookup
 *      in the source's naming scheme, shape and type checks, backend upload.
 *   4. The workspace: one backend allocation carved into activation buffers
 *      for opts->max_batch_tokens rows.
 * Any failure unwinds through model_free, which tolerates a partial model.
 * model_load_dummy skips step 1: the config is given, and every weight the
 * config asks for is generated on the backend (model_dummy_weight).
 */
#include "model/model_impl.h"

#include "backend/comm.h"
#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "base/hashrand.h"
#include "base/log.h"
#include "format/quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Longest tensor name the loader builds. */
#define MODEL_NAME_MAX 256
/* Alignment of each buffer carved from the workspace. */
#define MODEL_WS_ALIGN 256

struct model_loader {
    char name[MODEL_NAME_MAX];    /* the last name looked up (for messages) */
};

/* ---- the registry -------------------------------------------------------- */

static const model_arch_ops *const model_registry[] = {
    &llama_arch_ops, &mistral_arch_ops, &qwen2_arch_ops,
    &qwen3_arch_ops, &gemma3_arch_ops,  &bert_arch_ops,
};

static const model_arch_ops *model_arch_find(mcfg_arch a)
{
    for (size_t i = 0; i < KILN_ARRAY_LEN(model_registry); i++)
        if (model_registry[i]->arch == a)
            return model_registry[i];
    return NULL;
}

/* ---- weight mapping -------------------------------------------------------- */

/* Find the tensor for (hf, gguf, layer) in the source; *name gets the name
 * that matched, or the first candidate when none did. */
static const msrc_tensor *model_lookup(const kiln_model *m, model_loader *ld, const char *hf,
                                       const char *gguf, int layer)
{
    char base[MODEL_NAME_MAX];
    const msrc_tensor *t;

    if (m->gguf) {
        snprintf(ld->name, sizeof ld->name, gguf, layer);
        return msrc_find_tensor(m->src, ld->name);
    }
    snprintf(base, sizeof base, hf, layer);
    for (const char *const *p = m->arch->hf_prefixes; *p; p++) {
        snprintf(ld->name, sizeof ld->name, "%s%s", *p, base);
        if ((t = msrc_find_tensor(m->src, ld->name)))
            return t;
    }
    if ((t = msrc_find_tensor(m->src, base))) {
        snprintf(ld->name, sizeof ld->name, "%s", base);
        return t;
    }
    /* Name the conventional spelling in messages. */
    snprintf(ld->name, sizeof ld->name, "%s%s", m->arch->hf_prefixes[0], base);
    return NULL;
}

bool model_has_weight(kiln_model *m, model_loader *ld, const char *hf, const char *gguf,
                      int layer)
{
    if (m->dummy)
        return false; /* a dummy model has what the config asks for, no more */
    return model_lookup(m, ld, hf, gguf, layer) != NULL;
}

/* ---- dummy weights ---------------------------------------------------------- */

static kiln_status model_own(kiln_model *m, bk_tensor *t);
static kiln_status model_find(kiln_model *m, model_loader *ld, const char *hf, const char *gguf,
                              int layer, int64_t rows, int64_t cols, bool required,
                              const msrc_tensor **out);

/* A weight of a dummy model: values from the model seed and the weight's
 * Hugging Face name, so every backend makes the same model.  Norm scales
 * lie around 1 (or around 0 where the norm adds one itself), biases near
 * 0, matrices uniform in +-1/sqrt(in_features) (activations keep their
 * scale through the layers, as at initialisation). */
static kiln_status model_dummy_weight(kiln_model *m, model_loader *ld, const char *hf,
                                      int layer, int64_t rows, int64_t cols, bk_tensor *out)
{
    float lo, hi, r = 1.0f / sqrtf((float)cols);
    bool vec = rows == MODEL_VEC;
    kiln_status st;

    snprintf(ld->name, sizeof ld->name, hf, layer);
    if (vec && (strstr(ld->name, "norm") || strstr(ld->name, "LayerNorm.weight"))) {
        lo = m->norm_add_one ? -0.1f : 0.9f;
        hi = lo + 0.2f;
    } else if (vec) {
        lo = -0.02f;
        hi = 0.02f;
    } else {
        lo = -r;
        hi = r;
    }
    st = m->be->ops->weight_random(m->be, cols, vec ? 1 : rows,
                                   m->dummy_seed ^ hr_hash_str(ld->name), lo, hi, out);
    if (st)
        return kiln_err_wrap(st, "model: dummy tensor '%s'", ld->name);
    if ((st = model_own(m, out))) {
        m->be->ops->weight_free(m->be, out);
        memset(out, 0, sizeof *out);
    }
    return st;
}

/* "[a, b]" of a shape into buf. */
static const char *model_shape_str(char *buf, size_t cap, int32_t n_dims, const int64_t *shape)
{
    size_t len = 0;
    buf[0] = '\0';
    len += (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < n_dims && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? ", " : "",
                                (long long)shape[i]);
    if (len < cap)
        snprintf(buf + len, cap - len, "]");
    return buf;
}

/* Weights are floating-point or block-quantized types kiln can convert;
 * integer and boolean tensors (safetensors I32, U8, BOOL, ...) never hold
 * a layer's weights. */
static bool model_weight_type_ok(kiln_dtype dt)
{
    const dtype_info *di = dtype_get(dt);
    switch (dt) {
    case KILN_DT_I8: case KILN_DT_I16: case KILN_DT_I32: case KILN_DT_I64:
    case KILN_DT_U8: case KILN_DT_BOOL:
        return false;
    default:
        return di && di->dequant;
    }
}

/* Remember a loaded weight for model_free. */
static kiln_status model_own(kiln_model *m, bk_tensor *t)
{
    if (m->n_owned == m->cap_owned) {
        int64_t cap = m->cap_owned ? m->cap_owned * 2 : 64;
        bk_tensor **p = kiln_realloc(m->owned, (size_t)cap * sizeof *p);
        if (!p)
            return kiln_err_set(KILN_ERR_OOM, "model: out of memory");
        m->owned = p;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = t;
    return KILN_OK;
}

/* Remember a host buffer a weight points at for model_free. */
static kiln_status model_keep_host(kiln_model *m, void *p)
{
    if (m->n_host_parts == m->cap_host_parts) {
        int64_t cap = m->cap_host_parts ? m->cap_host_parts * 2 : 16;
        void **q = kiln_realloc(m->host_parts, (size_t)cap * sizeof *q);
        if (!q)
            return kiln_err_set(KILN_ERR_OOM, "model: out of memory");
        m->host_parts = q;
        m->cap_host_parts = cap;
    }
    m->host_parts[m->n_host_parts++] = p;
    return KILN_OK;
}

model_part model_part_of(const kiln_model *m, model_split split, model_dim dim)
{
    const model_shard *s = &m->shard;
    int64_t hd = m->cfg.head_dim;
    model_part p = {split, 0, 0};

    switch (dim) {
    case MODEL_DIM_Q: p.off = s->head0 * hd; p.len = s->n_heads * hd; break;
    case MODEL_DIM_KV: p.off = s->kv_head0 * hd; p.len = s->n_kv_heads * hd; break;
    case MODEL_DIM_FF: p.off = s->ff0; p.len = s->ff; break;
    case MODEL_DIM_VOCAB: p.off = s->vocab0; p.len = s->vocab; break;
    }
    return p;
}

/* A weight's bytes as a backend's weight() takes them. */
typedef struct model_bytes {
    const void *src;
    size_t bytes;
    int64_t ne0, ne1;
    void *host;           /* owned copy src points into (a column range); else NULL */
} model_bytes;

/* Part p of file tensor t, whole shape (rows, cols) - (cols) when rows ==
 * MODEL_VEC - into *out: the whole tensor, a view of a row range (or of an
 * element range of a vector), or a host copy of a column range.  Errors:
 * KILN_ERR_INVALID_ARG (a column range off block boundaries), KILN_ERR_OOM. */
static kiln_status model_part_bytes(const kiln_model *m, const model_loader *ld,
                                    const msrc_tensor *t, int64_t rows, int64_t cols,
                                    const model_part *p, model_bytes *out)
{
    const dtype_info *di = dtype_get(t->dtype);
    int64_t nr = rows == MODEL_VEC ? 1 : rows;
    bool by_cols = rows == MODEL_VEC || p->split == MODEL_SPLIT_IN;
    uint64_t row_bytes, off_bytes, len_bytes, total;
    kiln_status st;

    *out = (model_bytes){t->data, (size_t)t->nbytes, cols, nr, NULL};
    if (p->split == MODEL_SPLIT_NONE || p->split == MODEL_SPLIT_ROOT ||
        (p->off == 0 && p->len == (by_cols ? cols : nr)))
        return KILN_OK; /* the whole weight, as without tensor parallelism */
    if ((st = dtype_nbytes(t->dtype, cols, &row_bytes)))
        return kiln_err_wrap(st, "model: tensor '%s'", ld->name);
    if (!by_cols) {
        out->src = (const char *)t->data + (size_t)p->off * row_bytes;
        out->bytes = (size_t)p->len * row_bytes;
        out->ne1 = p->len;
        return KILN_OK;
    }
    if (p->off % di->block_elems || p->len % di->block_elems)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "model: tensor '%s' (%s, blocks of %d) cannot be split among %d "
                            "tensor-parallel ranks: rank %d's columns [%lld, %lld) do not fall "
                            "on block boundaries", ld->name, di->name, (int)di->block_elems,
                            (int)m->shard.world, (int)m->shard.rank, (long long)p->off,
                            (long long)(p->off + p->len));
    if ((st = dtype_nbytes(t->dtype, p->off, &off_bytes)) ||
        (st = dtype_nbytes(t->dtype, p->len, &len_bytes)))
        return kiln_err_wrap(st, "model: tensor '%s'", ld->name);
    out->ne0 = p->len;
    out->bytes = (size_t)len_bytes;
    out->src = (const char *)t->data + off_bytes;
    if (nr == 1)
        return KILN_OK; /* one row: its element range is contiguous */
    /* rows of a column range are strided in the file: copy them */
    if (!ck_mul_u64(len_bytes, (uint64_t)nr, &total) || total > SIZE_MAX ||
        !(out->host = kiln_malloc((size_t)total)))
        return kiln_err_set(KILN_ERR_OOM, "model: tensor '%s': no memory for a %lld x %lld part",
                            ld->name, (long long)nr, (long long)p->len);
    for (int64_t r = 0; r < nr; r++)
        memcpy((char *)out->host + (size_t)r * len_bytes,
               (const char *)t->data + (size_t)r * row_bytes + off_bytes, (size_t)len_bytes);
    out->src = out->host;
    out->bytes = (size_t)total;
    return KILN_OK;
}

kiln_status model_load_part(kiln_model *m, model_loader *ld, const char *hf, const char *gguf,
                            int layer, int64_t rows, int64_t cols, bool required,
                            model_split split, model_dim dim, bk_tensor *out)
{
    model_part p = model_part_of(m, split, dim);
    const msrc_tensor *t;
    model_bytes mb;
    kiln_status st;

    memset(out, 0, sizeof *out);
    if (split == MODEL_SPLIT_ROOT && m->shard.rank != 0)
        return KILN_OK; /* rank 0 holds it */
    if (m->dummy) {
        /* random values at this rank's shape (benchmarks: not the whole
         * model's values, which no test compares) */
        if (m->shard.world > 1 && (split == MODEL_SPLIT_OUT || split == MODEL_SPLIT_IN)) {
            if (rows == MODEL_VEC || split == MODEL_SPLIT_IN)
                cols = p.len;
            else
                rows = p.len;
        }
        return required ? model_dummy_weight(m, ld, hf, layer, rows, cols, out) : KILN_OK;
    }
    if ((st = model_find(m, ld, hf, gguf, layer, rows, cols, required, &t)) || !t)
        return st;
    if ((st = model_part_bytes(m, ld, t, rows, cols, &p, &mb)))
        return st;
    st = m->be->ops->weight(m->be, t->dtype, mb.ne0, mb.ne1, mb.src, mb.bytes, out);
    if (st) {
        kiln_free(mb.host);
        return kiln_err_wrap(st, "model: tensor '%s' (%s)", ld->name, dtype_name(t->dtype));
    }
    if (mb.host && out->data != mb.host) {
        kiln_free(mb.host); /* the backend made a copy of its own */
        mb.host = NULL;
    }
    if (mb.host && (st = model_keep_host(m, mb.host)))
        kiln_free(mb.host);
    else if (!(st = model_own(m, out)))
        return KILN_OK;
    /* a kept host part is freed with the model */
    m->be->ops->weight_free(m->be, out);
    memset(out, 0, sizeof *out);
    return st;
}

kiln_status model_load_weight(kiln_model *m, model_loader *ld, const char *hf,
                              const char *gguf, int layer, int64_t rows, int64_t cols,
                              bool required, bk_tensor *out)
{
    return model_load_part(m, ld, hf, gguf, layer, rows, cols, required, MODEL_SPLIT_NONE,
                           MODEL_DIM_Q, out);
}

/* The file tensor of weight (rows, cols) - (cols) when rows == MODEL_VEC -
 * with its shape and type checked; *out NULL (and KILN_OK) when it is
 * absent and not required. */
static kiln_status model_find(kiln_model *m, model_loader *ld, const char *hf, const char *gguf,
                              int layer, int64_t rows, int64_t cols, bool required,
                              const msrc_tensor **out)
{
    int64_t want[2] = {rows == MODEL_VEC ? cols : rows, cols};
    int32_t want_dims = rows == MODEL_VEC ? 1 : 2;
    char ws[64], hs[96];
    const msrc_tensor *t = model_lookup(m, ld, hf, gguf, layer);

    *out = NULL;
    if (!t) {
        if (!required)
            return KILN_OK;
        return kiln_err_set(KILN_ERR_FORMAT, "model: tensor '%s' is missing (expected shape %s)",
                            ld->name, model_shape_str(ws, sizeof ws, want_dims, want));
    }
    if (t->n_dims != want_dims || t->shape[0] != want[0] ||
        (want_dims == 2 && t->shape[1] != want[1]))
        return kiln_err_set(KILN_ERR_FORMAT, "model: tensor '%s' has shape %s, expected %s",
                            ld->name, model_shape_str(hs, sizeof hs, t->n_dims, t->shape),
                            model_shape_str(ws, sizeof ws, want_dims, want));
    if (!model_weight_type_ok(t->dtype))
        return kiln_err_set(KILN_ERR_UNSUPPORTED,
                            "model: tensor '%s' has type %s, which kiln cannot run", ld->name,
                            dtype_name(t->dtype));
    *out = t;
    return KILN_OK;
}

const model_qkv_names model_qkv_decoder = {
    .hf = {"layers.%d.self_attn.q_proj.weight", "layers.%d.self_attn.k_proj.weight",
           "layers.%d.self_attn.v_proj.weight"},
    .gguf = {"blk.%d.attn_q.weight", "blk.%d.attn_k.weight", "blk.%d.attn_v.weight"},
    .hf_bias = {"layers.%d.self_attn.q_proj.bias", "layers.%d.self_attn.k_proj.bias",
                "layers.%d.self_attn.v_proj.bias"},
    .gguf_bias = {"blk.%d.attn_q.bias", "blk.%d.attn_k.bias", "blk.%d.attn_v.bias"},
    .bias_always = false,
};

/* True when q, k and v are one fused weight: the backend takes fused
 * weights (and vectors, as rows of one element, for fused biases). */
static bool model_fuses_qkv(const kiln_model *m)
{
    const bk_ops *op = m->be->ops;
    return op->weight_empty && op->weight_rows && op->split3;
}

/* Part p's rows of a fused tensor f (rows of q, then k, then v) as *part,
 * a view: a matrix of rows[p] rows of a weight, or a vector of rows[p]
 * elements of a bias (f then one element a row). */
static void model_fused_view(const bk_tensor *f, bool vec, int64_t row0, int64_t n_rows,
                             bk_tensor *part)
{
    *part = *f;
    part->ne1 = vec ? 1 : n_rows;
    if (vec) {
        part->ne0 = n_rows;
        part->row_bytes = (size_t)n_rows * f->row_bytes;
    }
    part->data = (const char *)f->data + (size_t)row0 * f->row_bytes;
    part->storage = NULL;
}

/* An unfilled fused tensor of n_rows rows of ne0 (owned by the model), or
 * random values for a dummy model (a bias: a vector of n_rows). */
static kiln_status model_fused_alloc(kiln_model *m, model_loader *ld, const char *dummy_name,
                                     int i, int64_t n_rows, int64_t ne0, bk_tensor *out)
{
    const bk_ops *op = m->be->ops;
    kiln_status st;

    if (m->dummy) {
        st = ne0 == 1 ? model_dummy_weight(m, ld, dummy_name, i, MODEL_VEC, n_rows, out)
                      : model_dummy_weight(m, ld, dummy_name, i, n_rows, ne0, out);
        if (!st && ne0 == 1) {
            /* the dummy vector is one row of n_rows; as rows of one element */
            out->row_bytes /= (size_t)n_rows;
            out->ne0 = 1;
            out->ne1 = n_rows;
        }
        return st;
    }
    if ((st = op->weight_empty(m->be, ne0, n_rows, out)))
        return st;
    if ((st = model_own(m, out))) {
        op->weight_free(m->be, out);
        memset(out, 0, sizeof *out);
    }
    return st;
}

/* L->wqkv (and L->bqkv when there are biases) from the three file tensors
 * each (or random rows for a dummy model); wq, wk, wv (bq, bk, bv) become
 * views of them. */
static kiln_status model_load_fused_qkv(kiln_model *m, model_loader *ld, int i,
                                        const model_qkv_names *nm, model_layer *L)
{
    const model_config *c = &m->cfg;
    const bk_ops *op = m->be->ops;
    int64_t d = c->hidden_size, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    int64_t whole[3] = {q, kv, kv}, row0 = 0;
    /* this rank's heads of each: rows of the file tensors */
    model_part pr[3] = {model_part_of(m, MODEL_SPLIT_OUT, MODEL_DIM_Q),
                        model_part_of(m, MODEL_SPLIT_OUT, MODEL_DIM_KV),
                        model_part_of(m, MODEL_SPLIT_OUT, MODEL_DIM_KV)};
    int64_t rows[3] = {pr[0].len, pr[1].len, pr[2].len}, n_rows = rows[0] + rows[1] + rows[2];
    bk_tensor *parts[3] = {&L->wq, &L->wk, &L->wv}, *bparts[3] = {&L->bq, &L->bk, &L->bv};
    bool bias = nm->bias_always || c->attention_bias;
    kiln_status st;

    /* biases the config does not announce are still the model's */
    if (!bias && !m->dummy)
        bias = model_has_weight(m, ld, nm->hf_bias[0], nm->gguf_bias[0], i);
    if ((st = model_fused_alloc(m, ld, "layers.%d.self_attn.qkv_proj.weight", i, n_rows, d,
                                &L->wqkv)) ||
        (bias && (st = model_fused_alloc(m, ld, "layers.%d.self_attn.qkv_proj.bias", i, n_rows,
                                         1, &L->bqkv))))
        return kiln_err_wrap(st, "model: fused q/k/v of layer %d", i);
    for (int p = 0; p < 3; p++) {
        for (int b = 0; b < (bias ? 2 : 1) && !m->dummy; b++) {
            const msrc_tensor *t = NULL;
            model_bytes mb;
            int64_t frows = b ? MODEL_VEC : whole[p], fcols = b ? whole[p] : d;
            if ((st = model_find(m, ld, b ? nm->hf_bias[p] : nm->hf[p],
                                 b ? nm->gguf_bias[p] : nm->gguf[p], i, frows, fcols, true,
                                 &t)) ||
                (st = model_part_bytes(m, ld, t, frows, fcols, &pr[p], &mb)))
                return st; /* their messages name the tensor */
            st = op->weight_rows(m->be, t->dtype, b ? 1 : d, rows[p], mb.src, mb.bytes,
                                 b ? &L->bqkv : &L->wqkv, row0);
            kiln_free(mb.host);
            if (st)
                return kiln_err_wrap(st, "model: tensor '%s' (%s)", ld->name,
                                     dtype_name(t->dtype));
        }
        model_fused_view(&L->wqkv, false, row0, rows[p], parts[p]);
        if (bias)
            model_fused_view(&L->bqkv, true, row0, rows[p], bparts[p]);
        row0 += rows[p];
    }
    if (bias) { /* one vector of n_rows, as the matmul takes a bias */
        L->bqkv.row_bytes *= (size_t)n_rows;
        L->bqkv.ne0 = n_rows;
        L->bqkv.ne1 = 1;
    }
    return KILN_OK;
}

kiln_status model_load_qkv(kiln_model *m, model_loader *ld, int i, const model_qkv_names *nm)
{
    const model_config *c = &m->cfg;
    model_layer *L = &m->layers[i];
    int64_t d = c->hidden_size, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    bool ab = nm->bias_always || c->attention_bias;
    kiln_status st;

    if (model_fuses_qkv(m))
        return model_load_fused_qkv(m, ld, i, nm, L);
    /* column-parallel: this rank's heads, rows of the weights */
    if ((st = model_load_part(m, ld, nm->hf[0], nm->gguf[0], i, q, d, true, MODEL_SPLIT_OUT,
                              MODEL_DIM_Q, &L->wq)) ||
        (st = model_load_part(m, ld, nm->hf[1], nm->gguf[1], i, kv, d, true, MODEL_SPLIT_OUT,
                              MODEL_DIM_KV, &L->wk)) ||
        (st = model_load_part(m, ld, nm->hf[2], nm->gguf[2], i, kv, d, true, MODEL_SPLIT_OUT,
                              MODEL_DIM_KV, &L->wv)) ||
        (st = model_load_part(m, ld, nm->hf_bias[0], nm->gguf_bias[0], i, MODEL_VEC, q, ab,
                              MODEL_SPLIT_OUT, MODEL_DIM_Q, &L->bq)) ||
        (st = model_load_part(m, ld, nm->hf_bias[1], nm->gguf_bias[1], i, MODEL_VEC, kv, ab,
                              MODEL_SPLIT_OUT, MODEL_DIM_KV, &L->bk)))
        return st;
    return model_load_part(m, ld, nm->hf_bias[2], nm->gguf_bias[2], i, MODEL_VEC, kv, ab,
                           MODEL_SPLIT_OUT, MODEL_DIM_KV, &L->bv);
}

kiln_status model_qkv(kiln_model *m, const model_layer *L, const void *x, int64_t n,
                      const bk_norm *norm, void **q, void **k, void **v, int64_t *stride)
{
    const bk_ops *op = m->be->ops;
    const model_ws *w = &m->ws;
    int64_t qd = L->wq.ne1, kvd = L->wk.ne1;
    kiln_status st;

    *q = w->q;
    *k = w->k;
    *v = w->v;
    if (stride)
        *stride = 0;
    if (norm && (!L->wqkv.data || !op->matmul_norm)) {
        if ((st = op->rmsnorm(m->be, x, n, L->wq.ne0, norm->w, norm->eps, norm->add_one, w->x)))
            return st;
        x = w->x;
        norm = NULL;
    }
    if (!L->wqkv.data) {
        if ((st = op->matmul(m->be, x, n, &L->wq, model_opt(&L->bq), w->q)) ||
            (st = op->matmul(m->be, x, n, &L->wk, model_opt(&L->bk), w->k)))
            return st;
        return op->matmul(m->be, x, n, &L->wv, model_opt(&L->bv), w->v);
    }
    st = norm ? op->matmul_norm(m->be, x, n, norm, &L->wqkv, model_opt(&L->bqkv), w->x, w->qkv)
              : op->matmul(m->be, x, n, &L->wqkv, model_opt(&L->bqkv), w->qkv);
    if (st)
        return st;
    if ((n == 1 || stride) && qd % 8 == 0 && kvd % 8 == 0) {
        /* q, k, v in place, 16-byte aligned parts: one row is them back to
         * back already; more rows are rows of qd + 2 kvd apart */
        *q = w->qkv;
        *k = model_row(m, w->qkv, 1, qd);
        *v = model_row(m, *k, 1, kvd);
        if (stride && n > 1)
            *stride = qd + 2 * kvd;
        return KILN_OK;
    }
    return op->split3(m->be, w->qkv, n, qd, kvd, kvd, w->q, w->k, w->v);
}

kiln_status model_glu_in(kiln_model *m, const model_layer *L, const void *x, int64_t n,
                         const bk_norm *norm)
{
    const bk_ops *op = m->be->ops;
    const model_ws *w = &m->ws;
    bk_act act = model_act(m->cfg.act);
    kiln_status st;

    if (op->matmul_glu)
        return op->matmul_glu(m->be, x, n, norm, &L->w_gate, model_opt(&L->b_gate), &L->w_up,
                              model_opt(&L->b_up), act, w->x, w->gate, w->up, w->act);
    if (norm) {
        if ((st = op->rmsnorm(m->be, x, n, L->w_gate.ne0, norm->w, norm->eps, norm->add_one,
                              w->x)))
            return st;
        x = w->x;
    }
    if ((st = op->matmul(m->be, x, n, &L->w_gate, model_opt(&L->b_gate), w->gate)) ||
        (st = op->matmul(m->be, x, n, &L->w_up, model_opt(&L->b_up), w->up)))
        return st;
    return op->glu(m->be, w->gate, w->up, n, m->shard.ff, act, w->act);
}

kiln_status model_matmul_act(kiln_model *m, const void *x, int64_t n, const bk_tensor *w,
                             const bk_tensor *bias, bk_act act, void *y)
{
    const bk_ops *op = m->be->ops;
    kiln_status st;

    if (op->matmul_act)
        return op->matmul_act(m->be, x, n, w, bias, act, y);
    if ((st = op->matmul(m->be, x, n, w, bias, y)))
        return st;
    return op->act(m->be, y, n * w->ne1, act);
}

kiln_status model_rope_attention(kiln_model *m, const bk_batch *b, const bk_attn *a,
                                 const bk_rope *r, void *q, void *k, const void *v,
                                 bk_kv_cache *kv, int32_t l, void *out)
{
    const bk_ops *op = m->be->ops;
    kiln_status st;

    if (op->rope_attention)
        return op->rope_attention(m->be, b, a, r, q, k, v, kv, l, out);
    if ((st = op->rope(m->be, q, k, b, a->n_heads, a->n_kv_heads, r)))
        return st;
    return op->attention(m->be, b, a, q, k, v, kv, l, out);
}

bool model_res_step(const kiln_model *m)
{
    return m->be->ops->matmul_res && m->shard.world == 1;
}

bool model_fused_step(const kiln_model *m, int64_t n)
{
    const bk_ops *op = m->be->ops;
    return op->matmul_norm && op->matmul_res && op->matmul_glu && op->fused_rows &&
           m->shard.world == 1 && n <= op->fused_rows(m->be);
}

kiln_status model_load_output(kiln_model *m, model_loader *ld)
{
    const model_config *c = &m->cfg;
    kiln_status st;

    if ((st = model_load_weight(m, ld, "norm.weight", "output_norm.weight", -1, MODEL_VEC,
                                c->hidden_size, true, &m->out_norm)))
        return st;
    if (!c->tie_word_embeddings && model_has_weight(m, ld, "lm_head.weight", "output.weight", -1))
        return model_load_part(m, ld, "lm_head.weight", "output.weight", -1, c->vocab_size,
                               c->hidden_size, true, MODEL_SPLIT_OUT, MODEL_DIM_VOCAB,
                               &m->lm_head);
    if (!c->tie_word_embeddings)
        kiln_log(KILN_LOG_DEBUG, "model: no '%s'; the token embedding is the output head",
                 ld->name);
    m->lm_head = m->tok_embd; /* tied: not owned a second time (the same vocabulary rows) */
    return KILN_OK;
}

/* ---- workspace ------------------------------------------------------------- */

/* Bytes of each buffer, aligned, in model_ws field order after `base`. */
static kiln_status model_ws_alloc(kiln_model *m)
{
    const model_config *c = &m->cfg;
    const model_shard *sh = &m->shard;
    int64_t n = m->max_tokens, qd = sh->n_heads * c->head_dim, kvd = sh->n_kv_heads * c->head_dim;
    /* the fused q/k/v output exists where model_load_qkv fuses */
    int64_t qkvd = model_fuses_qkv(m) ? qd + 2 * kvd : 0;
    int64_t elems[] = {
        n * c->hidden_size, n * c->hidden_size, n * qkvd, n * qd, n * kvd, n * kvd, n * qd,
        n * c->hidden_size, n * sh->ff, n * sh->ff, n * sh->ff,
        (int64_t)MODEL_LOGIT_CHUNK * sh->vocab, sh->world > 1 ? c->vocab_size : 0,
    };
    void **slots[] = {&m->ws.h,    &m->ws.x,  &m->ws.qkv,  &m->ws.q,   &m->ws.k,     &m->ws.v,
                      &m->ws.att,
                      &m->ws.o,    &m->ws.gate, &m->ws.up, &m->ws.act, &m->ws.logits,
                      &m->ws.gathered};
    size_t off[KILN_ARRAY_LEN(elems)], total = 0;
    kiln_status st;

    KILN_ASSERT(KILN_ARRAY_LEN(elems) == KILN_ARRAY_LEN(slots));
    for (size_t i = 0; i < KILN_ARRAY_LEN(elems); i++) {
        size_t bytes = bk_act_bytes(m->be, elems[i]);
        bytes = (bytes + MODEL_WS_ALIGN - 1) / MODEL_WS_ALIGN * MODEL_WS_ALIGN;
        off[i] = total;
        total += bytes;
    }
    if ((st = m->be->ops->alloc(m->be, total, &m->ws.base)))
        return kiln_err_wrap(st, "model: workspace of %zu bytes for %d tokens", total,
                             (int)m->max_tokens);
    for (size_t i = 0; i < KILN_ARRAY_LEN(slots); i++)
        *slots[i] = (char *)m->ws.base + off[i];
    return KILN_OK;
}

/* ---- load / free ----------------------------------------------------------- */

/* Token-embedding scale: gemma3 multiplies by sqrt(hidden), which
 * transformers rounds to the embedding's stored type first
 * (torch.tensor(hidden ** 0.5).to(weight.dtype)). */
static float model_embed_scale(const kiln_model *m)
{
    model_loader ld;
    const msrc_tensor *t;
    float s;

    if (!m->cfg.embed_scale_sqrt_hidden)
        return 1.0f;
    s = sqrtf((float)m->cfg.hidden_size);
    if (m->gguf || m->dummy)
        return s; /* llama.cpp scales by sqrtf(n_embd) */
    t = model_lookup(m, &ld, "embed_tokens.weight", "token_embd.weight", -1);
    if (t && t->dtype == KILN_DT_BF16)
        return quant_bf16_to_f32(quant_f32_to_bf16(s));
    if (t && t->dtype == KILN_DT_F16)
        return quant_f16_to_f32(quant_f32_to_f16(s));
    return s;
}

/* Conventions that depend on the format and family (see the file comment). */
static void model_conventions(kiln_model *m)
{
    mcfg_arch a = m->cfg.arch;
    m->rope_style = m->gguf && (a == MCFG_ARCH_LLAMA || a == MCFG_ARCH_MISTRAL) ? BK_ROPE_NORM
                                                                              : BK_ROPE_NEOX;
    m->norm_add_one = a == MCFG_ARCH_GEMMA3 && !m->gguf;
    m->embed_scale = model_embed_scale(m);
}

/* A model shell on `be` for opts' batch size and tensor-parallel place
 * (checked by model_shard_init); KILN_ERR_INVALID_ARG or OOM. */
static kiln_status model_new(backend *be, const model_load_opts *opts, kiln_model **out)
{
    *out = NULL;
    if (!be || !opts || opts->max_batch_tokens <= 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "model_load: a backend and max_batch_tokens > 0 are required");
    if (!(*out = kiln_calloc(1, sizeof **out)))
        return kiln_err_set(KILN_ERR_OOM, "model: out of memory");
    (*out)->be = be;
    (*out)->max_tokens = opts->max_batch_tokens;
    (*out)->shard.rank = opts->tp_rank;
    (*out)->shard.world = opts->tp_world ? opts->tp_world : 1;
    (*out)->shard.comm = opts->tp_comm;
    return KILN_OK;
}

/* KILN_ERR_INVALID_ARG unless `what` (count) divides among w ranks. */
static kiln_status model_tp_divides(int64_t count, const char *what, int32_t w)
{
    if (count % w)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "model: %s %lld does not divide among %d "
                            "tensor-parallel ranks", what, (long long)count, (int)w);
    return KILN_OK;
}

/* Check the tensor-parallel settings against the config and fill this
 * rank's ranges (model_shard).  Errors: see model_load. */
static kiln_status model_shard_init(kiln_model *m)
{
    model_shard *s = &m->shard;
    const model_config *c = &m->cfg;
    int32_t w = s->world, r = s->rank;
    kiln_status st;

    if (w < 1)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "model: tensor-parallel world size %d is < 1",
                            (int)w);
    if (r < 0 || r >= w)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "model: tensor-parallel rank %d is outside "
                            "[0, %d)", (int)r, (int)w);
    s->head0 = s->kv_head0 = s->ff0 = s->vocab0 = 0;
    s->n_heads = c->n_heads;
    s->n_kv_heads = c->n_kv_heads;
    s->ff = c->intermediate_size;
    s->vocab = c->vocab_size;
    if (w == 1) {
        s->comm = NULL;
        return KILN_OK;
    }
    if (m->arch->encoder)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "model: tensor parallelism of the encoder %s "
                            "is not supported", c->arch_name);
    if (!m->be->ops->embed_part)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "model: the %s backend has no "
                            "vocabulary-parallel embedding (tensor parallelism)",
                            m->be->ops->name);
    if (!s->comm || comm_rank(s->comm) != r || comm_world(s->comm) != w)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "model: tensor-parallel rank %d of %d needs "
                            "a communicator of that rank and world", (int)r, (int)w);
    if ((st = model_tp_divides(c->n_heads, "the number of attention heads", w)))
        return st;
    /* kv heads split among the ranks, or each rank holds one of them (the
     * ranks split among the heads: the rank's query heads share it) */
    if (c->n_kv_heads % w && w % c->n_kv_heads)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "model: %lld key/value heads do not divide "
                            "among %d tensor-parallel ranks, nor the ranks among the heads",
                            (long long)c->n_kv_heads, (int)w);
    if ((st = model_tp_divides(c->intermediate_size, "the intermediate size", w)) ||
        (st = model_tp_divides(c->vocab_size, "the vocabulary size", w)))
        return st;
    s->n_heads = c->n_heads / w;
    s->head0 = r * s->n_heads;
    s->n_kv_heads = c->n_kv_heads % w ? 1 : c->n_kv_heads / w;
    s->kv_head0 = c->n_kv_heads % w ? r / (w / c->n_kv_heads) : r * s->n_kv_heads;
    s->ff = c->intermediate_size / w;
    s->ff0 = r * s->ff;
    s->vocab = c->vocab_size / w;
    s->vocab0 = r * s->vocab;
    return KILN_OK;
}

/* Steps 2-4 of the load order, once m->cfg (and src or dummy) are set. */
static kiln_status model_build(kiln_model *m)
{
    model_loader ld = {{0}};
    kiln_status st;

    if (!(m->arch = model_arch_find(m->cfg.arch)))
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "model: architecture '%s' is not supported",
                            m->cfg.arch_name);
    model_conventions(m);
    if ((st = model_shard_init(m)))
        return st;
    if (!(m->layers = kiln_calloc((size_t)m->cfg.n_layers, sizeof *m->layers)))
        return kiln_err_set(KILN_ERR_OOM, "model: out of memory");
    if ((st = m->arch->load(m, &ld)) || (st = model_ws_alloc(m)))
        return st;
    kiln_log(KILN_LOG_INFO, "model: %s (%s) loaded: %lld layers, hidden %lld, %lld weights",
             m->src ? msrc_name(m->src) : "dummy", m->cfg.arch_name, (long long)m->cfg.n_layers,
             (long long)m->cfg.hidden_size, (long long)m->n_owned);
    if (m->shard.world > 1)
        kiln_log(KILN_LOG_INFO, "model: tensor-parallel rank %d of %d: heads [%lld, %lld), "
                 "kv heads [%lld, %lld), ff [%lld, %lld), vocabulary [%lld, %lld)",
                 (int)m->shard.rank, (int)m->shard.world, (long long)m->shard.head0,
                 (long long)(m->shard.head0 + m->shard.n_heads), (long long)m->shard.kv_head0,
                 (long long)(m->shard.kv_head0 + m->shard.n_kv_heads), (long long)m->shard.ff0,
                 (long long)(m->shard.ff0 + m->shard.ff), (long long)m->shard.vocab0,
                 (long long)(m->shard.vocab0 + m->shard.vocab));
    return KILN_OK;
}

kiln_status model_load(const char *path, backend *be, const model_load_opts *opts,
                       kiln_model **out)
{
    kiln_model *m;
    kiln_status st;

    *out = NULL;
    if (!path)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "model_load: no path");
    if ((st = model_new(be, opts, &m)))
        return st;
    if ((st = msrc_open(path, &m->src))) {
        model_free(m); /* msrc_open's message names the path already */
        return st;
    }
    m->cfg = *msrc_config(m->src);
    m->gguf = msrc_get_kind(m->src) == MSRC_GGUF;
    if ((st = model_build(m))) {
        kiln_err_wrap(st, "%s", path);
        model_free(m);
        return st;
    }
    *out = m;
    return KILN_OK;
}

kiln_status model_load_dummy(const model_config *cfg, uint64_t seed, backend *be,
                             const model_load_opts *opts, kiln_model **out)
{
    kiln_model *m;
    kiln_status st;

    *out = NULL;
    if (!cfg)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "model_load_dummy: no config");
    if ((st = model_new(be, opts, &m)))
        return st;
    m->cfg = *cfg;
    m->dummy = true;
    m->dummy_seed = seed;
    if ((st = model_build(m))) {
        kiln_err_wrap(st, "dummy %s model", cfg->arch_name);
        model_free(m);
        return st;
    }
    *out = m;
    return KILN_OK;
}

void model_free(kiln_model *m)
{
    if (!m)
        return;
    for (int64_t i = 0; i < m->n_owned; i++)
        m->be->ops->weight_free(m->be, m->owned[i]);
    kiln_free(m->owned);
    for (int64_t i = 0; i < m->n_host_parts; i++)
        kiln_free(m->host_parts[i]);
    kiln_free(m->host_parts);
    if (m->ws.base)
        m->be->ops->free(m->be, m->ws.base);
    kiln_free(m->layers);
    msrc_close(m->src);
    kiln_free(m);
}

/* ---- accessors ------------------------------------------------------------- */

const model_config *model_config_of(const kiln_model *m) { return &m->cfg; }

backend *model_backend(const kiln_model *m) { return m->be; }

bool model_is_encoder(const kiln_model *m) { return m->arch->encoder; }

static uint64_t model_tensor_bytes(const bk_tensor *t)
{
    return t->data ? (uint64_t)t->row_bytes * (uint64_t)t->ne1 : 0;
}

/* model_stats_of walks a layer's slots as an array. */
_Static_assert(sizeof(model_layer) % sizeof(bk_tensor) == 0, "model_layer holds bk_tensors only");

void model_stats_of(const kiln_model *m, model_stats *out)
{
    const bk_tensor *embd[] = {&m->tok_embd, &m->pos_embd, &m->type_embd};
    bool tied = m->lm_head.data == m->tok_embd.data;

    memset(out, 0, sizeof *out);
    for (int64_t i = 0; i < m->n_owned; i++)
        out->weight_bytes += model_tensor_bytes(m->owned[i]);
    for (size_t i = 0; i < KILN_ARRAY_LEN(embd); i++)
        out->embd_bytes += model_tensor_bytes(embd[i]);
    out->step_bytes = out->weight_bytes - out->embd_bytes;
    if (tied && !m->arch->encoder)
        out->step_bytes += model_tensor_bytes(&m->lm_head);
    for (int64_t l = 0; l < m->cfg.n_layers; l++) {
        const model_layer *L = &m->layers[l];
        const bk_tensor *t = (const bk_tensor *)L;
        for (size_t k = 0; k < sizeof(model_layer) / sizeof(bk_tensor); k++) {
            /* with a fused q/k/v weight, wq, wk, wv are views of its rows */
            bool view = L->wqkv.data && (&t[k] == &L->wq || &t[k] == &L->wk || &t[k] == &L->wv);
            if (t[k].data && t[k].ne1 > 1 && !view)
                out->layer_matmul_params += (uint64_t)t[k].ne0 * (uint64_t)t[k].ne1;
        }
    }
    if (!m->arch->encoder && m->lm_head.data)
        out->head_params = (uint64_t)m->lm_head.ne0 * (uint64_t)m->lm_head.ne1;
}

size_t model_kv_bytes_per_token(const kiln_model *m)
{
    return 2 * (size_t)m->cfg.n_layers * (size_t)m->shard.n_kv_heads * (size_t)m->cfg.head_dim *
           bk_act_bytes(m->be, 1);
}

void model_kv_shape(const kiln_model *m, int32_t n_blocks, int32_t block_size, bk_kv_cache *out)
{
    memset(out, 0, sizeof *out);
    out->n_layers = (int32_t)m->cfg.n_layers;
    out->n_blocks = n_blocks;
    out->block_size = block_size;
    out->n_kv_heads = (int32_t)m->shard.n_kv_heads;
    out->head_dim = (int32_t)m->cfg.head_dim;
    out->dtype = m->be->ops->act_dtype;
}

/* ---- running --------------------------------------------------------------- */

/* KILN_ERR_INVALID_ARG unless b fits the workspace. */
static kiln_status model_check_batch(const kiln_model *m, const bk_batch *b)
{
    if (!b || b->n_tokens <= 0 || b->n_tokens > m->max_tokens || b->n_seqs <= 0 ||
        b->n_seqs > b->n_tokens || b->n_out < 0 || b->n_out > m->max_tokens)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "model: batch of %d tokens, %d sequences, %d outputs does not fit "
                            "(at most %d tokens)", b ? b->n_tokens : 0, b ? b->n_seqs : 0,
                            b ? b->n_out : 0, (int)m->max_tokens);
    return KILN_OK;
}

kiln_status model_embed_tokens(kiln_model *m, const bk_batch *b, float scale, void *h)
{
    const bk_ops *op = m->be->ops;
    kiln_status st;

    if (m->shard.world == 1)
        return op->embed(m->be, &m->tok_embd, b, scale, NULL, NULL, h);
    /* vocabulary-parallel: each token's row is on one rank, zeros elsewhere */
    if ((st = op->embed_part(m->be, &m->tok_embd, m->shard.vocab0, b, scale, h)))
        return st;
    return model_reduce(m, h, (int64_t)b->n_tokens * m->cfg.hidden_size);
}

kiln_status model_reduce(kiln_model *m, void *x, int64_t n)
{
    kiln_status st;
    if (m->shard.world == 1)
        return KILN_OK;
    if ((st = comm_all_reduce_sum(m->shard.comm, x, n, m->be->ops->act_dtype)))
        return kiln_err_wrap(st, "model: tensor-parallel rank %d", (int)m->shard.rank);
    return KILN_OK;
}

/* Tensor-parallel logits of output row `row`: its vocabulary slice on
 * every rank (row i of ws.logits, `vl` wide) gathered into ws.gathered,
 * which is then the whole row in vocabulary order (rank q's slice is
 * columns [q vl, (q + 1) vl)), then reduced or copied out as out asks. */
static kiln_status model_logits_gather(kiln_model *m, const bk_batch *b, int32_t i,
                                       int32_t row, const model_out *out)
{
    const bk_ops *op = m->be->ops;
    int64_t vocab = m->cfg.vocab_size, vl = m->shard.vocab;
    kiln_status st;

    if ((st = comm_all_gather(m->shard.comm, model_row(m, m->ws.logits, i, vl), vl,
                              op->act_dtype, m->ws.gathered)))
        return kiln_err_wrap(st, "model: tensor-parallel rank %d: logits", (int)m->shard.rank);
    if (out->ids && b->sample)
        return op->sample(m->be, m->ws.gathered, 1, vocab, b->sample + row, out->counts,
                          out->ids + row);
    if (out->ids)
        return op->argmax(m->be, m->ws.gathered, 1, vocab, out->ids + row);
    return op->to_host_f32(m->be, m->ws.gathered, vocab, out->logits + (int64_t)row * vocab);
}

kiln_status model_logits(kiln_model *m, const bk_batch *b, void *h, const model_out *out)
{
    const bk_ops *op = m->be->ops;
    const model_config *c = &m->cfg;
    /* this rank's vocabulary columns: the whole at world 1 */
    int64_t d = c->hidden_size, vocab = m->shard.vocab;
    kiln_status st;

    if (b->n_out == 0)
        return KILN_OK;
    /* gather the output rows, then norm them (row-wise, so gathering first
     * saves the other rows' work) */
    if ((st = op->gather_rows(m->be, h, d, b, m->ws.x)) ||
        (st = op->rmsnorm(m->be, m->ws.x, b->n_out, d, &m->out_norm, c->norm_eps,
                          m->norm_add_one, m->ws.x)))
        return st;
    /* lm_head in chunks of rows, each copied out as host f32 or reduced to
     * its greedy ids on the backend; tensor-parallel, row by row once the
     * ranks' slices are gathered */
    for (int32_t r = 0; r < b->n_out; r += MODEL_LOGIT_CHUNK) {
        int32_t rows = b->n_out - r < MODEL_LOGIT_CHUNK ? b->n_out - r : MODEL_LOGIT_CHUNK;
        if ((st = op->matmul(m->be, model_row(m, m->ws.x, r, d), rows, &m->lm_head, NULL,
                             m->ws.logits)))
            return st;
        if (c->final_logit_softcap > 0.0f &&
            (st = op->softcap(m->be, m->ws.logits, rows * vocab, c->final_logit_softcap)))
            return st;
        if (m->shard.world > 1) {
            for (int32_t i = 0; i < rows; i++)
                if ((st = model_logits_gather(m, b, i, r + i, out)))
                    return st;
            continue;
        }
        if (out->ids && b->sample)
            st = op->sample(m->be, m->ws.logits, rows, vocab, b->sample + r, out->counts,
                            out->ids + r);
        else if (out->ids)
            st = op->argmax(m->be, m->ws.logits, rows, vocab, out->ids + r);
        else
            st = op->to_host_f32(m->be, m->ws.logits, rows * vocab,
                                 out->logits + (int64_t)r * vocab);
        if (st)
            return st;
    }
    return KILN_OK;
}

/* Checks shared by the decoder entry points. */
static kiln_status model_check_decoder(kiln_model *m, const bk_batch *b, const bk_kv_cache *kv)
{
    kiln_status st;
    if (m->arch->encoder)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "model: %s is an encoder; use model_embed",
                            m->cfg.arch_name);
    if ((st = model_check_batch(m, b)))
        return st;
    if (!kv || kv->n_layers != m->cfg.n_layers || kv->n_kv_heads != m->shard.n_kv_heads ||
        kv->head_dim != m->cfg.head_dim)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "model: KV cache does not have this model's shape");
    return KILN_OK;
}

kiln_status model_forward(kiln_model *m, const bk_batch *b, bk_kv_cache *kv, float *logits)
{
    model_out out = {logits, NULL, NULL};
    kiln_status st = model_check_decoder(m, b, kv);
    if (st)
        return st;
    if (b->n_out > 0 && !logits)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "model: no logits buffer for %d outputs",
                            b->n_out);
    return m->arch->forward(m, b, kv, &out);
}

kiln_status model_forward_ids(kiln_model *m, const bk_batch *b, bk_kv_cache *kv,
                              uint16_t *counts, int32_t *ids)
{
    model_out out = {NULL, ids, counts};
    kiln_status st = model_check_decoder(m, b, kv);
    if (st)
        return st;
    if (b->sample ? !m->be->ops->sample : !m->be->ops->argmax)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "model: the %s backend does not %s on the "
                            "device", m->be->ops->name, b->sample ? "sample" : "choose greedily");
    if (b->n_out > 0 && !ids)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "model: no ids buffer for %d outputs",
                            b->n_out);
    return m->arch->forward(m, b, kv, &out);
}

/* Pooling of the config; sentence-transformers' default (mean) when the
 * model names none. */
static bk_pool model_pool_mode(const model_config *c)
{
    switch (c->pooling) {
    case MCFG_POOL_CLS: return BK_POOL_CLS;
    case MCFG_POOL_LAST: return BK_POOL_LAST;
    case MCFG_POOL_MAX: return BK_POOL_MAX;
    case MCFG_POOL_MEAN:
    case MCFG_POOL_NONE:
    default: return BK_POOL_MEAN;
    }
}

/* Shared checks of the encoder entry points. */
static kiln_status model_check_encoder(const kiln_model *m, const bk_batch *b, const float *dst)
{
    if (!m->arch->encoder)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "model: %s is a decoder; use model_forward",
                            m->cfg.arch_name);
    if (!dst)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "model: no output buffer");
    return model_check_batch(m, b);
}

/* Check, encode b and pool its sequences into ws.x (n_seqs, hidden) on
 * the backend; dst is the caller's output (checked for presence). */
static kiln_status model_embed_pooled(kiln_model *m, const bk_batch *b, const float *dst)
{
    const model_config *c = &m->cfg;
    kiln_status st;

    if ((st = model_check_encoder(m, b, dst)) || (st = m->arch->encode(m, b)))
        return st;
    return m->be->ops->pool(m->be, m->ws.h, c->hidden_size, b, model_pool_mode(c),
                            c->normalize, m->ws.x);
}

kiln_status model_embed(kiln_model *m, const bk_batch *b, float *emb)
{
    kiln_status st = model_embed_pooled(m, b, emb);
    return st ? st
              : m->be->ops->to_host_f32(m->be, m->ws.x, (int64_t)b->n_seqs * m->cfg.hidden_size,
                                        emb);
}

kiln_status model_embed_start(kiln_model *m, const bk_batch *b, int slot, float *host,
                              const float **emb)
{
    const bk_ops *op = m->be->ops;
    kiln_status st;

    *emb = host;
    if (!op->to_host_f32_start)
        return model_embed(m, b, host);
    if ((st = model_embed_pooled(m, b, host)))
        return st;
    return op->to_host_f32_start(m->be, m->ws.x, (int64_t)b->n_seqs * m->cfg.hidden_size, slot,
                                 emb);
}

kiln_status model_embed_wait(kiln_model *m, int slot)
{
    const bk_ops *op = m->be->ops;
    return op->to_host_wait ? op->to_host_wait(m->be, slot) : KILN_OK;
}

kiln_status model_encode_tokens(kiln_model *m, const bk_batch *b, float *hidden)
{
    kiln_status st;
    if ((st = model_check_encoder(m, b, hidden)) || (st = m->arch->encode(m, b)))
        return st;
    return m->be->ops->to_host_f32(m->be, m->ws.h, (int64_t)b->n_tokens * m->cfg.hidden_size,
                                   hidden);
}
