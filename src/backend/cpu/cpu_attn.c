/*
 * cpu_attn.c - rotary position embedding and attention over the paged KV
 * cache, on the CPU.
 *
 * Rotary embedding follows transformers' rope functions in f32: inverse
 * frequencies inv[i] = 1 / theta^(2i / rot_dims), adjusted per scaling type
 * (linear, llama3 bands, yarn ramps, dynamic NTK base), angle = pos * inv[i]
 * rounded to f32, then cos/sin (times yarn's attention factor).  NEOX style
 * pairs element i with i + rot/2, NORM style pairs 2i with 2i + 1; dims past
 * rot_dims are left alone.
 *
 * Attention, per (token, query head), runs an online softmax over chunks of
 * keys (one KV block, or CPU_ATTN_CHUNK batch rows without a cache):
 *   s_j = softcap(q . k_j * scale); m' = max(m, max_j s_j);
 *   l = l e^(m - m') + sum_j e^(s_j - m'); acc = acc e^(m - m') + sum_j e^(s_j - m') v_j
 * and writes acc / l.  A token with no visible key gets zeros.
 *
 * Invariants:
 *   1. Every block id, slot and position is checked on the calling thread
 *      before a parallel loop reads through it.
 *   2. The batch's own keys and values are written to the cache before any
 *      token attends (a prefill chunk sees itself).
 *   3. Each (token, head) is computed by one thread in a fixed key order.
 */
#include "backend/cpu/cpu_impl.h"

#include "base/error.h"

#include <math.h>
#include <string.h>

/* Keys per softmax chunk when attending within the batch (no cache). */
#define CPU_ATTN_CHUNK 64
/* Largest rot_dims / 2 the rope op handles. */
#define CPU_ROPE_MAX_HALF 2048

/* ---- rotary embedding ------------------------------------------------------ */

/* YaRN: dimension index at which num_rot rotations fit the original context. */
static double yarn_corr_dim(double num_rot, double dim, double base, double max_pos)
{
    return (dim * log(max_pos / (num_rot * 2.0 * M_PI))) / (2.0 * log(base));
}

/* inv[0..half) for `base`; *mscale the cos/sin factor. */
static void rope_inv_freq(const bk_rope *r, float base, float *inv, float *mscale)
{
    int half = r->rot_dims / 2;
    float dim = (float)r->rot_dims;
    *mscale = 1.0f;
    for (int i = 0; i < half; i++)
        inv[i] = 1.0f / powf(base, (float)(2 * i) / dim);
    if (r->scaling == MCFG_ROPE_LINEAR) {
        for (int i = 0; i < half; i++)
            inv[i] /= r->factor;
    } else if (r->scaling == MCFG_ROPE_LLAMA3) {
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
        double lo = floor(yarn_corr_dim(r->yarn_beta_fast, dim, base, (double)r->original_max_pos));
        double hi = ceil(yarn_corr_dim(r->yarn_beta_slow, dim, base, (double)r->original_max_pos));
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

/* Dynamic NTK base for a sequence of `len` tokens. */
static float rope_dynamic_base(const bk_rope *r, int32_t len)
{
    double orig = (double)r->original_max_pos, dim = (double)r->rot_dims;
    if (r->scaling != MCFG_ROPE_DYNAMIC || orig <= 0 || len <= orig)
        return r->theta;
    double f = (double)r->factor * (double)len / orig - ((double)r->factor - 1.0);
    return (float)((double)r->theta * pow(f, dim / (dim - 2.0)));
}

typedef struct rope_job {
    float *q, *k;            /* (n, n_heads, head_dim), (n, n_kv_heads, head_dim) */
    const bk_batch *b;
    const bk_rope *r;
    int32_t n_heads, n_kv_heads;
    const float *inv;        /* (rot/2) shared frequencies (not dynamic) */
    float mscale;
} rope_job;

/* Rotate every head of x (heads, head_dim) by cos/sin (half). */
static void rope_heads(float *x, int32_t heads, const bk_rope *r, const float *c,
                       const float *s)
{
    int half = r->rot_dims / 2;
    for (int32_t h = 0; h < heads; h++) {
        float *v = x + (int64_t)h * r->head_dim;
        for (int i = 0; i < half; i++) {
            int i0 = r->style == BK_ROPE_NEOX ? i : 2 * i;
            int i1 = r->style == BK_ROPE_NEOX ? i + half : 2 * i + 1;
            float x0 = v[i0], x1 = v[i1];
            v[i0] = x0 * c[i] - x1 * s[i];
            v[i1] = x1 * c[i] + x0 * s[i];
        }
    }
}

/* Sequence owning batch row t. */
static int32_t batch_seq_of(const bk_batch *b, int32_t t)
{
    int32_t lo = 0, hi = b->n_seqs - 1;
    while (lo < hi) {
        int32_t mid = (lo + hi + 1) / 2;
        if (b->seq_start[mid] <= t)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

static void rope_body(void *ctx, size_t begin, size_t end, int thread)
{
    const rope_job *j = ctx;
    const bk_rope *r = j->r;
    int half = r->rot_dims / 2;
    float c[CPU_ROPE_MAX_HALF], s[CPU_ROPE_MAX_HALF], dyn[CPU_ROPE_MAX_HALF];
    for (size_t t = begin; t < end; t++) {
        const float *inv = j->inv;
        float mscale = j->mscale;
        if (r->scaling == MCFG_ROPE_DYNAMIC && j->b->seq_len) {
            int32_t len = j->b->seq_len[batch_seq_of(j->b, (int32_t)t)];
            rope_inv_freq(r, rope_dynamic_base(r, len), dyn, &mscale);
            inv = dyn;
        }
        float pos = (float)j->b->positions[t];
        for (int i = 0; i < half; i++) {
            float ang = pos * inv[i];
            c[i] = cosf(ang) * mscale;
            s[i] = sinf(ang) * mscale;
        }
        rope_heads(j->q + (int64_t)t * j->n_heads * r->head_dim, j->n_heads, r, c, s);
        if (j->k)
            rope_heads(j->k + (int64_t)t * j->n_kv_heads * r->head_dim, j->n_kv_heads, r, c, s);
    }
}

kiln_status cpu_rope(backend *be, void *q, void *k, const bk_batch *b, int32_t n_heads,
                     int32_t n_kv_heads, const bk_rope *r)
{
    float inv[CPU_ROPE_MAX_HALF];
    rope_job j = {q, k, b, r, n_heads, n_kv_heads, inv, 1.0f};
    kiln_status st;

    if (!r || !b || r->head_dim <= 0 || r->rot_dims < 2 || r->rot_dims % 2 ||
        r->rot_dims > r->head_dim || r->rot_dims / 2 > CPU_ROPE_MAX_HALF || !(r->theta > 0.0f))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu rope: bad rotary parameters");
    if (r->style != BK_ROPE_NEOX && r->style != BK_ROPE_NORM)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu rope: unknown style %d", (int)r->style);
    if (n_heads <= 0 || n_kv_heads < 0 || b->n_tokens < 0 ||
        (b->n_tokens && (!q || !b->positions || (k && n_kv_heads <= 0))))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu rope: bad arguments");
    if (r->scaling == MCFG_ROPE_DYNAMIC && (st = cpu_batch_check(b, "rope")))
        return st;
    rope_inv_freq(r, r->theta, inv, &j.mscale);
    tpool_parallel_for(cpu_of(be)->pool, (size_t)b->n_tokens, 0, rope_body, &j);
    return KILN_OK;
}

/* ---- attention ------------------------------------------------------------- */

typedef struct attn_job {
    cpu_backend *cb;
    const bk_batch *b;
    const bk_attn *a;
    const float *q, *k, *v;  /* rows of q_stride and kv_stride floats: (n_heads, hd)
                                and (n_kv_heads, hd) at their starts            */
    int64_t q_stride, kv_stride;
    const float *kc, *vc;    /* cache layer (n_blocks, block_size, n_kv_heads, hd) or NULL */
    int32_t block_size;
    float *out;              /* (n, n_heads, hd) */
} attn_job;

/* Running softmax state of one (token, head). */
typedef struct attn_state {
    float m, l;
    float *acc;              /* (hd) */
    float *sc;               /* (chunk) scores */
} attn_state;

/* Fold `cnt` keys at kb/vb (row stride `stride` floats) into st.  kpos, when
 * not NULL, gives each key's position for masking against q_pos. */
static void attn_chunk(const attn_job *j, attn_state *st, const float *qh, const float *kb,
                       const float *vb, int64_t stride, int32_t cnt, const int32_t *kpos,
                       int32_t q_pos)
{
    const bk_attn *a = j->a;
    bool simd = j->cb->simd;
    float cmax = -INFINITY;
    for (int32_t i = 0; i < cnt; i++) {
        float s = -INFINITY;
        bool vis = !kpos || ((!a->causal || kpos[i] <= q_pos) &&
                             (a->window <= 0 || kpos[i] > q_pos - a->window));
        if (vis) {
            s = cpu_dot_f32(simd, qh, kb + i * stride, a->head_dim) * a->scale;
            if (a->softcap > 0.0f)
                s = tanhf(s / a->softcap) * a->softcap;
        }
        st->sc[i] = s;
        cmax = s > cmax ? s : cmax;
    }
    if (cmax == -INFINITY)
        return;
    float m = st->m > cmax ? st->m : cmax;
    if (st->m != m && st->l > 0.0f) {
        float alpha = expf(st->m - m);
        st->l *= alpha;
        for (int32_t d = 0; d < a->head_dim; d++)
            st->acc[d] *= alpha;
    }
    st->m = m;
    for (int32_t i = 0; i < cnt; i++) {
        if (st->sc[i] == -INFINITY)
            continue;
        float p = expf(st->sc[i] - m);
        st->l += p;
        cpu_axpy_f32(simd, p, vb + i * stride, st->acc, a->head_dim);
    }
}

/* Keys of the paged cache visible to the token at q_pos of sequence s. */
static void attn_paged(const attn_job *j, attn_state *st, const float *qh, int32_t s,
                       int32_t kvh, int32_t q_pos)
{
    const bk_attn *a = j->a;
    const bk_batch *b = j->b;
    int32_t bs = j->block_size;
    int64_t stride = (int64_t)a->n_kv_heads * a->head_dim;
    int32_t j1 = b->seq_len[s];
    if (a->causal && q_pos + 1 < j1)
        j1 = q_pos + 1;
    int32_t j0 = a->window > 0 && q_pos - a->window + 1 > 0 ? q_pos - a->window + 1 : 0;
    const int32_t *table = b->block_tables + (int64_t)s * b->max_blocks;
    for (int32_t p = j0; p < j1;) {
        int32_t off = p % bs, cnt = bs - off < j1 - p ? bs - off : j1 - p;
        int64_t row = ((int64_t)table[p / bs] * bs + off) * stride + (int64_t)kvh * a->head_dim;
        attn_chunk(j, st, qh, j->kc + row, j->vc + row, stride, cnt, NULL, q_pos);
        p += cnt;
    }
}

/* Keys of sequence s's own batch rows (no cache). */
static void attn_batch(const attn_job *j, attn_state *st, const float *qh, int32_t s,
                       int32_t kvh, int32_t q_pos)
{
    const bk_attn *a = j->a;
    int64_t stride = j->kv_stride;
    int32_t r0 = j->b->seq_start[s], r1 = j->b->seq_start[s + 1];
    for (int32_t r = r0; r < r1; r += CPU_ATTN_CHUNK) {
        int32_t cnt = r1 - r < CPU_ATTN_CHUNK ? r1 - r : CPU_ATTN_CHUNK;
        int64_t row = (int64_t)r * stride + (int64_t)kvh * a->head_dim;
        attn_chunk(j, st, qh, j->k + row, j->v + row, stride, cnt, j->b->positions + r, q_pos);
    }
}

static void attn_body(void *ctx, size_t begin, size_t end, int thread)
{
    const attn_job *j = ctx;
    const bk_attn *a = j->a;
    int32_t hd = a->head_dim, group = a->n_heads / a->n_kv_heads;
    float *scratch = j->cb->scratch[thread].buf;
    for (size_t item = begin; item < end; item++) {
        int32_t t = (int32_t)(item / (size_t)a->n_heads), h = (int32_t)(item % (size_t)a->n_heads);
        int32_t s = batch_seq_of(j->b, t), q_pos = j->b->positions[t];
        const float *qh = j->q + (int64_t)t * j->q_stride + (int64_t)h * hd;
        float *o = j->out + ((int64_t)t * a->n_heads + h) * hd;
        attn_state st = {-INFINITY, 0.0f, scratch, scratch + hd};
        memset(st.acc, 0, (size_t)hd * sizeof(float));
        if (a->use_cache)
            attn_paged(j, &st, qh, s, h / group, q_pos);
        else
            attn_batch(j, &st, qh, s, h / group, q_pos);
        float inv = st.l > 0.0f ? 1.0f / st.l : 0.0f;
        for (int32_t d = 0; d < hd; d++)
            o[d] = st.acc[d] * inv;
    }
}

/* Check the cache layer, block tables, slots and positions for the batch. */
static kiln_status attn_check_cache(const bk_batch *b, const bk_attn *a, const bk_kv_cache *kv,
                                    int32_t layer)
{
    if (!kv || layer < 0 || layer >= kv->n_layers || !kv->k || !kv->v || !kv->k[layer] ||
        !kv->v[layer] || kv->dtype != KILN_DT_F32 || kv->n_kv_heads != a->n_kv_heads ||
        kv->head_dim != a->head_dim || kv->block_size <= 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu attention: KV cache does not match "
                            "layer %d (%d kv heads of %d)", layer, a->n_kv_heads, a->head_dim);
    if (!b->slot_mapping || !b->block_tables || !b->positions)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu attention: batch lacks slots or tables");
    int64_t slots = (int64_t)kv->n_blocks * kv->block_size;
    for (int32_t t = 0; t < b->n_tokens; t++)
        if (b->slot_mapping[t] < 0 || b->slot_mapping[t] >= slots)
            return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu attention: slot %d outside the cache",
                                b->slot_mapping[t]);
    for (int32_t s = 0; s < b->n_seqs; s++) {
        int32_t nb = (b->seq_len[s] + kv->block_size - 1) / kv->block_size;
        if (nb > b->max_blocks)
            return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu attention: sequence %d needs %d "
                                "blocks, table has %d", s, nb, b->max_blocks);
        for (int32_t i = 0; i < nb; i++) {
            int32_t id = b->block_tables[(int64_t)s * b->max_blocks + i];
            if (id < 0 || id >= kv->n_blocks)
                return kiln_err_set(KILN_ERR_INVALID_ARG,
                                    "cpu attention: block id %d outside the pool", id);
        }
        for (int32_t t = b->seq_start[s]; t < b->seq_start[s + 1]; t++)
            if (b->positions[t] < 0 || b->positions[t] >= b->seq_len[s])
                return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu attention: position %d outside "
                                    "context %d", b->positions[t], b->seq_len[s]);
    }
    return KILN_OK;
}

/* Copy the batch's k/v rows into their cache slots. */
static void attn_store(const attn_job *j, const bk_kv_cache *kv, int32_t layer)
{
    size_t row = (size_t)kv->n_kv_heads * (size_t)kv->head_dim;
    for (int32_t t = 0; t < j->b->n_tokens; t++) {
        size_t slot = (size_t)j->b->slot_mapping[t];
        size_t src = (size_t)t * (size_t)j->kv_stride;
        memcpy((float *)kv->k[layer] + slot * row, j->k + src, row * sizeof(float));
        memcpy((float *)kv->v[layer] + slot * row, j->v + src, row * sizeof(float));
    }
}

kiln_status cpu_attention(backend *be, const bk_batch *b, const bk_attn *a, const void *q,
                          const void *k, const void *v, bk_kv_cache *kv, int32_t layer,
                          void *out)
{
    cpu_backend *cb = cpu_of(be);
    attn_job j = {cb, b, a, q, k, v, 0, 0, NULL, NULL, 0, out};
    kiln_status st;

    if (!a || a->n_heads <= 0 || a->n_kv_heads <= 0 || a->head_dim <= 0 ||
        a->n_heads % a->n_kv_heads)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu attention: bad head counts");
    j.q_stride = (int64_t)a->n_heads * a->head_dim;
    j.kv_stride = (int64_t)a->n_kv_heads * a->head_dim;
    if (a->qkv_stride) {
        if (a->qkv_stride < j.q_stride || a->qkv_stride < j.kv_stride)
            return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu attention: rows of %lld elements "
                                "are narrower than q (%lld) or k, v (%lld)",
                                (long long)a->qkv_stride, (long long)j.q_stride,
                                (long long)j.kv_stride);
        j.q_stride = j.kv_stride = a->qkv_stride;
    }
    if ((st = cpu_batch_check(b, "attention")))
        return st;
    if (b->n_tokens && (!q || !k || !v || !out || !b->positions))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu attention: NULL tensor");
    if (a->use_cache) {
        if ((st = attn_check_cache(b, a, kv, layer)))
            return st;
        j.kc = kv->k[layer];
        j.vc = kv->v[layer];
        j.block_size = kv->block_size;
        attn_store(&j, kv, layer);
    }
    size_t chunk = a->use_cache ? (size_t)j.block_size : CPU_ATTN_CHUNK;
    if ((st = cpu_scratch_reserve_all(cb, (size_t)a->head_dim + chunk)))
        return kiln_err_wrap(st, "cpu attention");
    tpool_parallel_for(cb->pool, (size_t)b->n_tokens * (size_t)a->n_heads, 1, attn_body, &j);
    return KILN_OK;
}
