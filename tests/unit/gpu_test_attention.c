/*
 * gpu_test_attention.c - cuda_attention against the CPU backend's attention
 * op (f32) on the same inputs.
 *
 * Every case draws q, k, v and the whole KV pool at random, rounds them to
 * the GPU's type (bf16 or f16) and hands the CPU the rounded values as f32,
 * so the two differ only by how they compute.  Block tables are random
 * permutations of the pool (blocks scattered), with unused entries -1.
 * Batches mix decode sequences (one new token) and prefill chunks over
 * contexts of 1..3000 tokens; GQA ratios 1/2/4/8, head_dim 16/32/64/128/256,
 * block sizes 8/16/32 (and now and then 12), sliding windows, softcap, non-causal cached
 * attention, and encoder batches without a cache (bidirectional or causal).
 *
 * Checks: the GPU output is poisoned (0xff bytes: NaN in bf16 and f16)
 * before each run; every output must be finite, and per (token, head) row
 * max_d |gpu - cpu| <= tol * max_d |cpu| (tol 1e-2 for bf16, 2e-3 for f16;
 * a row of zeros must be zeros).  The pools after the call must equal the
 * CPU's pools (the cache write is a copy).
 *
 * cuda_attention_rope (decode batches, the rotation and the cache write
 * inside the decode kernel) is checked against the two launches it
 * replaces on the same GPU: cuops_rope in place, then cuda_attention.  The
 * pools must come out equal (the new rows rotated with the same formulas),
 * the outputs within the tolerance above; random rope styles, partial
 * rotation, a cos/sin factor, contexts long enough to split (the last split
 * merges the partials) and 16-head groups (two head tiles, one writer).
 *
 * A fresh seed every run, printed
 * (KILN_TEST_SEED=<n> repeats a run).  Without a GPU the GPU cases print
 * why and are skipped; argument checks that need no GPU still run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backend/backend.h"
#include "backend/cuda/attention.h"
#include "backend/cuda/attention_impl.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_ops.h"
#include "base/alloc.h"
#include "format/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_SEQS 16

static bool gpu_ok;
static char gpu_why[1024];
static cudaStream_t stream;
static uint64_t rng;
static backend *cpu;

/* ==== helpers ============================================================== */

/* splitmix64 */
static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int rnd_int(int lo, int hi) { return lo + (int)(rnd() % (uint64_t)(hi - lo + 1)); }

static float rnd_unit(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0) * 2.0f - 1.0f; }

static uint16_t to_bits(kiln_dtype dt, float x)
{
    return dt == KILN_DT_BF16 ? quant_f32_to_bf16(x) : quant_f32_to_f16(x);
}

static float from_bits(kiln_dtype dt, uint16_t b)
{
    return dt == KILN_DT_BF16 ? quant_bf16_to_f32(b) : quant_f16_to_f32(b);
}

/* n random values times amp, rounded to dt: f32 copy in f, bits in h. */
static void fill_rounded(kiln_dtype dt, float *f, uint16_t *h, size_t n, float amp)
{
    for (size_t i = 0; i < n; i++) {
        h[i] = to_bits(dt, rnd_unit() * amp);
        f[i] = from_bits(dt, h[i]);
    }
}

#define CU(call)                                                                         \
    do {                                                                                 \
        cudaError_t e_ = (call);                                                         \
        if (e_ != cudaSuccess)                                                           \
            fail_msg("%s failed: %s", #call, cudaGetErrorString(e_));                    \
    } while (0)

#define SKIP_WITHOUT_GPU()                                                               \
    do {                                                                                 \
        if (!gpu_ok) {                                                                   \
            print_message("skipped: %s\n", gpu_why);                                     \
            skip();                                                                      \
        }                                                                                \
    } while (0)

static void *dev_copy(const void *src, size_t bytes)
{
    void *d = NULL;
    CU(cudaMalloc(&d, bytes ? bytes : 16));
    if (bytes)
        CU(cudaMemcpy(d, src, bytes, cudaMemcpyHostToDevice));
    return d;
}

/* ==== one case ============================================================== */

typedef struct attn_case {
    kiln_dtype dtype;
    int head_dim, n_kv_heads, group, block_size;
    bool use_cache, causal;
    bool fused;                            /* GPU: q, k, v rows inside one buffer */
    int window;
    float softcap, scale, amp;             /* amp: q magnitude (peakier softmax) */
    int n_seqs;
    int ctx[MAX_SEQS], n_new[MAX_SEQS];    /* context after the step, new tokens */
} attn_case;

static void describe(const attn_case *c, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s D=%d kv=%d group=%d bs=%d %s%s%s window=%d softcap=%g "
                     "scale=%g seqs:", c->dtype == KILN_DT_BF16 ? "bf16" : "f16", c->head_dim,
                     c->n_kv_heads, c->group, c->block_size, c->use_cache ? "cache" : "nocache",
                     c->causal ? " causal" : "", c->fused ? " fused" : "", c->window,
                     (double)c->softcap,
                     (double)c->scale);
    for (int s = 0; s < c->n_seqs && n > 0 && (size_t)n < cap; s++)
        n += snprintf(buf + n, cap - (size_t)n, " %d/%d", c->n_new[s], c->ctx[s]);
}

/* Everything a case allocates, host and device. */
typedef struct case_data {
    int n_tokens, n_heads, D, n_blocks, max_blocks;
    size_t pool_elems;
    int32_t seq_start[MAX_SEQS + 1], seq_len[MAX_SEQS];
    int32_t *positions, *slots, *tables;
    float *q, *k, *v, *kc, *vc, *ref;      /* f32 (rounded) inputs, CPU output */
    uint16_t *hq, *hk, *hv, *hkc, *hvc, *hout;
} case_data;

static void case_data_free(case_data *d)
{
    kiln_free(d->positions); kiln_free(d->slots); kiln_free(d->tables);
    kiln_free(d->q); kiln_free(d->k); kiln_free(d->v); kiln_free(d->kc); kiln_free(d->vc);
    kiln_free(d->ref);
    kiln_free(d->hq); kiln_free(d->hk); kiln_free(d->hv); kiln_free(d->hkc); kiln_free(d->hvc);
    kiln_free(d->hout);
}

/* Batch layout, scattered block tables, slots and random tensors. */
static void case_build(const attn_case *c, case_data *d)
{
    memset(d, 0, sizeof *d);
    d->D = c->head_dim;
    d->n_heads = c->n_kv_heads * c->group;
    int total_blocks = 0;
    d->max_blocks = 1;
    for (int s = 0; s < c->n_seqs; s++) {
        d->seq_start[s + 1] = d->seq_start[s] + c->n_new[s];
        d->seq_len[s] = c->ctx[s];
        int nb = (c->ctx[s] + c->block_size - 1) / c->block_size;
        total_blocks += nb;
        d->max_blocks = nb > d->max_blocks ? nb : d->max_blocks;
    }
    d->max_blocks += rnd_int(0, 2);
    d->n_tokens = d->seq_start[c->n_seqs];
    d->n_blocks = (c->use_cache ? total_blocks : 0) + rnd_int(1, 8);

    /* block ids: a shuffled pool, dealt to the sequences in order */
    int32_t *perm = kiln_malloc((size_t)d->n_blocks * sizeof *perm);
    for (int i = 0; i < d->n_blocks; i++)
        perm[i] = i;
    for (int i = d->n_blocks - 1; i > 0; i--) {
        int j = rnd_int(0, i);
        int32_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    d->tables = kiln_malloc((size_t)c->n_seqs * (size_t)d->max_blocks * sizeof(int32_t));
    d->positions = kiln_malloc((size_t)(d->n_tokens + 1) * sizeof(int32_t));
    d->slots = kiln_malloc((size_t)(d->n_tokens + 1) * sizeof(int32_t));
    int next = 0;
    for (int s = 0; s < c->n_seqs; s++) {
        int32_t *tab = d->tables + (size_t)s * (size_t)d->max_blocks;
        int nb = (c->ctx[s] + c->block_size - 1) / c->block_size;
        for (int i = 0; i < d->max_blocks; i++)
            tab[i] = c->use_cache && i < nb ? perm[next++] : -1;
        for (int i = 0; i < c->n_new[s]; i++) {
            int t = d->seq_start[s] + i, p = c->ctx[s] - c->n_new[s] + i;
            d->positions[t] = p;
            d->slots[t] = c->use_cache ? tab[p / c->block_size] * c->block_size +
                                             p % c->block_size
                                       : 0;
        }
    }
    kiln_free(perm);

    size_t nq = (size_t)d->n_tokens * (size_t)d->n_heads * (size_t)d->D;
    size_t nk = (size_t)d->n_tokens * (size_t)c->n_kv_heads * (size_t)d->D;
    d->pool_elems = (size_t)d->n_blocks * (size_t)c->block_size * (size_t)c->n_kv_heads *
                    (size_t)d->D;
    d->q = kiln_malloc((nq + 1) * sizeof(float));
    d->ref = kiln_malloc((nq + 1) * sizeof(float));
    d->k = kiln_malloc((nk + 1) * sizeof(float));
    d->v = kiln_malloc((nk + 1) * sizeof(float));
    d->kc = kiln_malloc(d->pool_elems * sizeof(float));
    d->vc = kiln_malloc(d->pool_elems * sizeof(float));
    d->hq = kiln_malloc((nq + 1) * 2);
    d->hout = kiln_malloc((nq + 1) * 2);
    d->hk = kiln_malloc((nk + 1) * 2);
    d->hv = kiln_malloc((nk + 1) * 2);
    d->hkc = kiln_malloc(d->pool_elems * 2);
    d->hvc = kiln_malloc(d->pool_elems * 2);
    assert_non_null(d->q); assert_non_null(d->ref); assert_non_null(d->k);
    assert_non_null(d->v); assert_non_null(d->kc); assert_non_null(d->vc);
    assert_non_null(d->hq); assert_non_null(d->hout); assert_non_null(d->hk);
    assert_non_null(d->hv); assert_non_null(d->hkc); assert_non_null(d->hvc);
    fill_rounded(c->dtype, d->q, d->hq, nq, c->amp);
    fill_rounded(c->dtype, d->k, d->hk, nk, 1.0f);
    fill_rounded(c->dtype, d->v, d->hv, nk, 1.0f);
    fill_rounded(c->dtype, d->kc, d->hkc, d->pool_elems, 1.0f);
    fill_rounded(c->dtype, d->vc, d->hvc, d->pool_elems, 1.0f);
}

static bk_attn case_attn(const attn_case *c)
{
    bk_attn a = {.n_heads = c->n_kv_heads * c->group, .n_kv_heads = c->n_kv_heads,
                 .head_dim = c->head_dim, .scale = c->scale, .causal = c->causal,
                 .window = c->window, .softcap = c->softcap, .use_cache = c->use_cache};
    return a;
}

static bk_batch_host case_host_batch(const attn_case *c, const case_data *d)
{
    bk_batch_host h = {.n_tokens = d->n_tokens, .n_seqs = c->n_seqs,
                       .max_blocks = d->max_blocks, .positions = d->positions,
                       .seq_start = d->seq_start, .seq_len = d->seq_len,
                       .block_tables = d->tables, .slot_mapping = d->slots};
    return h;
}

/* The CPU backend's answer into d->ref; its pools after the write into
 * d->kc, d->vc. */
static void run_cpu(const attn_case *c, case_data *d)
{
    bk_batch_host h = case_host_batch(c, d);
    bk_batch b;
    bk_kv_cache shape = {.n_layers = 1, .n_blocks = d->n_blocks, .block_size = c->block_size,
                         .n_kv_heads = c->n_kv_heads, .head_dim = d->D, .dtype = KILN_DT_F32};
    bk_kv_cache kv;
    bk_attn a = case_attn(c);

    if (cpu->ops->kv_alloc(cpu, &shape, &kv) != KILN_OK)
        fail_msg("cpu kv_alloc: %s", kiln_last_error());
    memcpy(kv.k[0], d->kc, d->pool_elems * sizeof(float));
    memcpy(kv.v[0], d->vc, d->pool_elems * sizeof(float));
    if (cpu->ops->batch_upload(cpu, &h, &b) != KILN_OK)
        fail_msg("cpu batch_upload: %s", kiln_last_error());
    if (cpu->ops->attention(cpu, &b, &a, d->q, d->k, d->v, &kv, 0, d->ref) != KILN_OK)
        fail_msg("cpu attention: %s", kiln_last_error());
    memcpy(d->kc, kv.k[0], d->pool_elems * sizeof(float));
    memcpy(d->vc, kv.v[0], d->pool_elems * sizeof(float));
    cpu->ops->kv_free(cpu, &kv);
}

/* q, k, v as one fused projection output would hold them: row t is q's
 * row t, then k's, then v's (qw + 2 kw elements), on the device. */
static void *dev_fused(const case_data *d, size_t qw, size_t kw)
{
    size_t row = qw + 2 * kw, n = (size_t)d->n_tokens;
    uint16_t *f = kiln_malloc((n * row + 1) * 2);
    assert_non_null(f);
    for (size_t t = 0; t < n; t++) {
        memcpy(f + t * row, d->hq + t * qw, qw * 2);
        memcpy(f + t * row + qw, d->hk + t * kw, kw * 2);
        memcpy(f + t * row + qw + kw, d->hv + t * kw, kw * 2);
    }
    void *g = dev_copy(f, n * row * 2);
    kiln_free(f);
    return g;
}

/* How run_gpu treats q and k: as they are (rotated already), rotated by
 * cuops_rope first, or rotated inside cuda_attention_rope. */
typedef enum { ROPE_NONE, ROPE_KERNEL, ROPE_IN_ATTN } rope_mode;

/* The GPU's answer into d->hout; its pools after the call into hkc, hvc.
 * A fused case reads q, k, v from one buffer (bk_attn.qkv_stride). */
static void run_gpu(const attn_case *c, case_data *d, rope_mode rm, const cuops_rope_args *ra)
{
    bk_batch_host h = case_host_batch(c, d);
    bk_attn a = case_attn(c);
    size_t nq = (size_t)d->n_tokens * (size_t)d->n_heads * (size_t)d->D;
    size_t nk = (size_t)d->n_tokens * (size_t)c->n_kv_heads * (size_t)d->D;
    size_t ni = (size_t)d->n_tokens * sizeof(int32_t);
    size_t qw = (size_t)d->n_heads * (size_t)d->D, kw = (size_t)c->n_kv_heads * (size_t)d->D;

    int32_t *g_start = dev_copy(d->seq_start, (size_t)(c->n_seqs + 1) * sizeof(int32_t));
    int32_t *g_len = dev_copy(d->seq_len, (size_t)c->n_seqs * sizeof(int32_t));
    int32_t *g_pos = dev_copy(d->positions, ni);
    int32_t *g_slots = dev_copy(d->slots, ni);
    int32_t *g_tab = dev_copy(d->tables, (size_t)c->n_seqs * (size_t)d->max_blocks * 4);
    void *g_q, *g_k, *g_v, *g_fused = NULL;
    if (c->fused) {
        g_fused = dev_fused(d, qw, kw);
        g_q = g_fused;
        g_k = (uint16_t *)g_fused + qw;
        g_v = (uint16_t *)g_fused + qw + kw;
        a.qkv_stride = (int64_t)(qw + 2 * kw);
    } else {
        g_q = dev_copy(d->hq, nq * 2);
        g_k = dev_copy(d->hk, nk * 2);
        g_v = dev_copy(d->hv, nk * 2);
    }
    void *g_kc = dev_copy(d->hkc, d->pool_elems * 2), *g_vc = dev_copy(d->hvc, d->pool_elems * 2);
    void *g_out = NULL;
    CU(cudaMalloc(&g_out, nq * 2));
    CU(cudaMemset(g_out, 0xff, nq * 2));

    bk_batch b = {.n_tokens = d->n_tokens, .n_seqs = c->n_seqs, .positions = g_pos,
                  .seq_start = g_start, .seq_len = g_len, .block_tables = g_tab,
                  .max_blocks = d->max_blocks, .slot_mapping = g_slots};
    for (int s = 0; s < c->n_seqs; s++)
        b.max_seq_len = d->seq_len[s] > b.max_seq_len ? d->seq_len[s] : b.max_seq_len;
    kiln_status st = KILN_OK;
    if (rm == ROPE_KERNEL) {
        assert_false(c->fused); /* the rope kernel takes packed rows */
        st = cuops_rope(c->dtype, g_q, g_k, g_pos, g_start, g_len, c->n_seqs, d->n_tokens,
                        d->n_heads, c->n_kv_heads, ra, stream);
        if (st != KILN_OK)
            fail_msg("cuops_rope: %s", kiln_last_error());
    }
    if (rm == ROPE_IN_ATTN)
        st = cuda_attention_rope(&b, &h, &a, ra, g_q, g_k, g_v, g_kc, g_vc, d->n_blocks,
                                 c->block_size, c->dtype, g_out, stream);
    else
        st = cuda_attention(&b, &h, &a, g_q, g_k, g_v, c->use_cache ? g_kc : NULL,
                            c->use_cache ? g_vc : NULL, c->use_cache ? d->n_blocks : 0,
                            c->use_cache ? c->block_size : 0, c->dtype, g_out, stream);
    if (st != KILN_OK)
        fail_msg("cuda_attention%s: %s", rm == ROPE_IN_ATTN ? "_rope" : "", kiln_last_error());
    CU(cudaStreamSynchronize(stream));
    CU(cudaMemcpy(d->hout, g_out, nq * 2, cudaMemcpyDeviceToHost));
    CU(cudaMemcpy(d->hkc, g_kc, d->pool_elems * 2, cudaMemcpyDeviceToHost));
    CU(cudaMemcpy(d->hvc, g_vc, d->pool_elems * 2, cudaMemcpyDeviceToHost));
    cudaFree(g_start); cudaFree(g_len); cudaFree(g_pos); cudaFree(g_slots); cudaFree(g_tab);
    if (c->fused) {
        cudaFree(g_fused);
    } else {
        cudaFree(g_q); cudaFree(g_k); cudaFree(g_v);
    }
    cudaFree(g_kc); cudaFree(g_vc);
    cudaFree(g_out);
}

/* Worst relative row error; fails on a non-finite output or a pool that
 * differs from the CPU's. */
static double compare(const attn_case *c, const case_data *d, const char *what)
{
    double worst = 0.0;
    for (int t = 0; t < d->n_tokens; t++) {
        for (int h = 0; h < d->n_heads; h++) {
            size_t base = ((size_t)t * (size_t)d->n_heads + (size_t)h) * (size_t)d->D;
            double rmax = 0.0, emax = 0.0;
            for (int i = 0; i < d->D; i++) {
                float g = from_bits(c->dtype, d->hout[base + (size_t)i]);
                float r = d->ref[base + (size_t)i];
                if (!isfinite(g))
                    fail_msg("%s: token %d head %d dim %d is %g (cpu %g)", what, t, h, i,
                             (double)g, (double)r);
                rmax = fmax(rmax, fabs((double)r));
                emax = fmax(emax, fabs((double)g - (double)r));
            }
            double rel = rmax > 0.0 ? emax / rmax : (emax > 0.0 ? INFINITY : 0.0);
            worst = fmax(worst, rel);
        }
    }
    if (c->use_cache)
        for (size_t i = 0; i < d->pool_elems; i++)
            if (from_bits(c->dtype, d->hkc[i]) != d->kc[i] ||
                from_bits(c->dtype, d->hvc[i]) != d->vc[i])
                fail_msg("%s: pool element %zu differs from the CPU's after the write", what,
                         i);
    return worst;
}

static void run_case(const attn_case *c)
{
    char what[512];
    case_data d;
    describe(c, what, sizeof what);
    case_build(c, &d);
    run_cpu(c, &d);
    run_gpu(c, &d, ROPE_NONE, NULL);
    double err = compare(c, &d, what);
    double tol = c->dtype == KILN_DT_BF16 ? 1e-2 : 2e-3;
    case_data_free(&d);
    if (!(err <= tol))
        fail_msg("%s: relative error %.3g over %.3g (seed above)", what, err, tol);
}

/* ==== random cases =========================================================== */

static const int head_dims[] = {16, 32, 64, 128, 256};
static const int groups[] = {1, 2, 4, 8};
static const int block_sizes[] = {8, 16, 32};

static void random_case(attn_case *c, kiln_dtype dt, bool use_cache)
{
    memset(c, 0, sizeof *c);
    c->dtype = dt;
    c->head_dim = head_dims[rnd_int(0, (int)KILN_ARRAY_LEN(head_dims) - 1)];
    c->group = groups[rnd_int(0, 3)];
    c->n_kv_heads = rnd_int(1, c->group >= 4 ? 2 : 3);
    /* now and then a size that is not a power of two (the division path) */
    c->block_size = rnd_int(0, 9) == 0 ? 12 : block_sizes[rnd_int(0, 2)];
    c->use_cache = use_cache;
    c->causal = use_cache ? rnd_int(0, 7) != 0 : rnd_int(0, 2) == 0;
    c->window = rnd_int(0, 3) == 0 ? rnd_int(1, 700) : 0;
    c->softcap = rnd_int(0, 3) == 0 ? (float)rnd_int(5, 50) : 0.0f;
    c->scale = 1.0f / sqrtf((float)c->head_dim);
    c->amp = rnd_int(0, 2) == 0 ? 4.0f : 1.0f;
    c->fused = rnd_int(0, 2) == 0;
    c->n_seqs = rnd_int(1, 8);
    for (int s = 0; s < c->n_seqs; s++) {
        int kind = rnd_int(0, 3);
        if (!use_cache) {
            c->ctx[s] = rnd_int(1, kind == 0 ? 600 : 150);
            c->n_new[s] = c->ctx[s];
        } else if (kind <= 1) { /* decode */
            c->ctx[s] = kind == 0 ? rnd_int(1, 3000) : rnd_int(1, 100);
            c->n_new[s] = 1;
        } else if (kind == 2) { /* first prefill chunk */
            c->ctx[s] = rnd_int(2, 300);
            c->n_new[s] = c->ctx[s];
        } else { /* a later chunk of a long prompt */
            c->ctx[s] = rnd_int(2, 3000);
            c->n_new[s] = rnd_int(2, c->ctx[s] < 200 ? c->ctx[s] : 200);
        }
    }
}

static void random_cases(kiln_dtype dt, bool use_cache, int count)
{
    for (int i = 0; i < count; i++) {
        attn_case c;
        random_case(&c, dt, use_cache);
        run_case(&c);
    }
}

static void test_random_bf16(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    random_cases(KILN_DT_BF16, true, 40);
}

static void test_random_f16(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    random_cases(KILN_DT_F16, true, 25);
}

/* An encoder-shaped call (no cache, no causal mask, window or softcap: the
 * kernel's encoder form at head_dims 16, 32, 64), sequence lengths drawn
 * around the tile edges (1, 31..33, 63..65, 127..129) and at random. */
static void encoder_case(attn_case *c, kiln_dtype dt, int head_dim)
{
    static const int edges[] = {1, 2, 31, 32, 33, 63, 64, 65, 127, 128, 129};
    random_case(c, dt, false);
    c->head_dim = head_dim;
    c->scale = 1.0f / sqrtf((float)head_dim);
    c->causal = false;
    c->window = 0;
    c->softcap = 0.0f;
    for (int s = 0; s < c->n_seqs; s++) {
        c->ctx[s] = rnd_int(0, 1) ? edges[rnd_int(0, (int)KILN_ARRAY_LEN(edges) - 1)]
                                  : rnd_int(1, 300);
        c->n_new[s] = c->ctx[s];
    }
}

static void test_encoder(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    random_cases(KILN_DT_BF16, false, 12);
    random_cases(KILN_DT_F16, false, 8);
    /* encoder-shaped calls in the encoder form and in the general one */
    for (int form = 0; form < 2; form++) {
        attn_prefill_set_encoder_form(form == 0);
        for (int i = 0; i < 12; i++) {
            attn_case c;
            encoder_case(&c, i % 2 ? KILN_DT_F16 : KILN_DT_BF16, 16 << (i % 3));
            run_case(&c);
        }
    }
    attn_prefill_set_encoder_form(true);
}

/* Every prefill kernel variant (attn_prefill_set_variant) at the head dims that
 * have variants, with and without a cache, both types, against the CPU;
 * an unknown variant name is refused. */
static void test_prefill_variants(void **state)
{
    (void)state;
    /* the names need no GPU */
    assert_int_equal(attn_prefill_set_variant("k48"), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "KILN_CUDA_PREFILL=k48"));
    assert_int_equal(attn_prefill_set_variant(""), KILN_OK);
    SKIP_WITHOUT_GPU();
    assert_non_null(attn_prefill_variant_name(9));
    assert_null(attn_prefill_variant_name(-1));
    for (int v = 0; attn_prefill_variant_name(v); v++) {
        assert_int_equal(attn_prefill_set_variant(attn_prefill_variant_name(v)), KILN_OK);
        for (int i = 0; i < 6; i++) {
            attn_case c;
            random_case(&c, i % 2 ? KILN_DT_F16 : KILN_DT_BF16, i < 4);
            c.head_dim = i % 3 == 0 ? 64 : 128;
            c.scale = 1.0f / sqrtf((float)c.head_dim);
            run_case(&c);
        }
        /* head_dim 64 encoder-shaped: the variant's encoder form, then its
         * general form */
        for (int i = 0; i < 3; i++) {
            attn_case c;
            attn_prefill_set_encoder_form(i < 2);
            encoder_case(&c, i % 2 ? KILN_DT_F16 : KILN_DT_BF16, 64);
            run_case(&c);
        }
        attn_prefill_set_encoder_form(true);
    }
    assert_int_equal(attn_prefill_set_variant(NULL), KILN_OK);
}

/* ==== fixed shapes ============================================================ */

/* One long decode per KV head count: few CTAs, so the keys are split and the
 * partials combined; every head dim, every block size. */
static void test_split_decode(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int di = 0; di < (int)KILN_ARRAY_LEN(head_dims); di++) {
        for (int bi = 0; bi < 3; bi++) {
            attn_case c = {.dtype = KILN_DT_BF16, .head_dim = head_dims[di], .n_kv_heads = 1,
                           .group = groups[(di + bi) % 4], .block_size = block_sizes[bi],
                           .use_cache = true, .causal = true, .scale = 0.125f, .amp = 2.0f,
                           .n_seqs = 2};
            c.ctx[0] = 3000 - 97 * bi;
            c.ctx[1] = 1 + 700 * di;
            c.n_new[0] = c.n_new[1] = 1;
            run_case(&c);
        }
    }
}

/* Llama-3-like decode batch (many sequences, no split) mixed with a prefill
 * chunk, and the same with a Gemma-like window and softcap. */
static void test_mixed_batch(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    attn_case c = {.dtype = KILN_DT_BF16, .head_dim = 128, .n_kv_heads = 2, .group = 4,
                   .block_size = 16, .use_cache = true, .causal = true,
                   .scale = 0.08838834764f, .amp = 1.0f, .n_seqs = MAX_SEQS};
    for (int s = 0; s < MAX_SEQS; s++) {
        c.ctx[s] = 1 + 190 * s;
        c.n_new[s] = s == 5 ? 130 : s == 11 ? c.ctx[s] : 1;
    }
    run_case(&c);
    c.dtype = KILN_DT_F16;
    c.head_dim = 256;
    c.window = 512;
    c.softcap = 50.0f;
    c.scale = 0.0625f;
    run_case(&c);
}

/* ==== rotation inside the decode kernel ====================================== */

/* Worst relative row error of out (rows of D) against ref, both of dt. */
static double rows_error(kiln_dtype dt, const uint16_t *out, const uint16_t *ref, size_t rows,
                         int D, const char *what)
{
    double worst = 0.0;
    for (size_t r = 0; r < rows; r++) {
        double rmax = 0.0, emax = 0.0;
        for (int i = 0; i < D; i++) {
            float g = from_bits(dt, out[r * (size_t)D + (size_t)i]);
            float e = from_bits(dt, ref[r * (size_t)D + (size_t)i]);
            if (!isfinite(g))
                fail_msg("%s: row %zu dim %d is %g (two launches: %g)", what, r, i, (double)g,
                         (double)e);
            rmax = fmax(rmax, fabs((double)e));
            emax = fmax(emax, fabs((double)g - (double)e));
        }
        worst = fmax(worst, rmax > 0.0 ? emax / rmax : (emax > 0.0 ? INFINITY : 0.0));
    }
    return worst;
}

static void rope_case(kiln_dtype dt)
{
    attn_case c;
    char what[640];
    case_data d;
    random_case(&c, dt, true);
    c.fused = rnd_int(0, 1) == 0;
    c.causal = true;
    if (rnd_int(0, 4) == 0) { /* two head tiles of one KV head */
        c.group = 16;
        c.n_kv_heads = 1;
    }
    for (int s = 0; s < c.n_seqs; s++) {
        c.ctx[s] = rnd_int(0, 2) == 0 ? rnd_int(1, 3000) : rnd_int(1, 300);
        c.n_new[s] = 1;
    }
    const int rot = rnd_int(0, 3) == 0 ? c.head_dim / 2 : c.head_dim;
    float inv[128];
    const float theta = rnd_int(0, 1) ? 10000.0f : 500000.0f;
    for (int i = 0; i < rot / 2; i++)
        inv[i] = 1.0f / powf(theta, (float)(2 * i) / (float)rot);
    cuops_rope_args ra = {.head_dim = c.head_dim, .rot_dims = rot, .neox = rnd_int(0, 1) == 0,
                          .mscale = rnd_int(0, 3) == 0 ? 1.25f : 1.0f};
    float *g_inv = dev_copy(inv, (size_t)(rot / 2) * sizeof(float));
    ra.inv_freq = g_inv;
    describe(&c, what, sizeof what);
    snprintf(what + strlen(what), sizeof what - strlen(what), " rope %s rot=%d mscale=%g",
             ra.neox ? "neox" : "gptj", rot, (double)ra.mscale);

    case_build(&c, &d);
    size_t nq = (size_t)d.n_tokens * (size_t)d.n_heads * (size_t)d.D;
    size_t pool = d.pool_elems * 2;
    uint16_t *kc0 = kiln_malloc(pool), *vc0 = kiln_malloc(pool);
    uint16_t *out2 = kiln_malloc(nq * 2), *kc2 = kiln_malloc(pool), *vc2 = kiln_malloc(pool);
    assert_true(kc0 && vc0 && out2 && kc2 && vc2);
    memcpy(kc0, d.hkc, pool);
    memcpy(vc0, d.hvc, pool);
    /* the two launches (packed rows: the rope kernel's layout) */
    bool fused = c.fused;
    c.fused = false;
    run_gpu(&c, &d, ROPE_KERNEL, &ra);
    c.fused = fused;
    memcpy(out2, d.hout, nq * 2);
    memcpy(kc2, d.hkc, pool);
    memcpy(vc2, d.hvc, pool);
    /* one launch, from the same unrotated q, k and the same pools */
    memcpy(d.hkc, kc0, pool);
    memcpy(d.hvc, vc0, pool);
    run_gpu(&c, &d, ROPE_IN_ATTN, &ra);

    for (size_t i = 0; i < d.pool_elems; i++)
        if (d.hkc[i] != kc2[i] || d.hvc[i] != vc2[i])
            fail_msg("%s: pool element %zu: %g/%g in one launch, %g/%g in two", what, i,
                     (double)from_bits(dt, d.hkc[i]), (double)from_bits(dt, d.hvc[i]),
                     (double)from_bits(dt, kc2[i]), (double)from_bits(dt, vc2[i]));
    double err = rows_error(dt, d.hout, out2, (size_t)d.n_tokens * (size_t)d.n_heads, d.D, what);
    double tol = dt == KILN_DT_BF16 ? 1e-2 : 2e-3;
    kiln_free(kc0); kiln_free(vc0); kiln_free(out2); kiln_free(kc2); kiln_free(vc2);
    case_data_free(&d);
    cudaFree(g_inv);
    if (!(err <= tol))
        fail_msg("%s: relative error %.3g against the two launches, over %.3g", what, err, tol);
}

static void test_rope_in_attention(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int i = 0; i < 40; i++)
        rope_case(i % 2 ? KILN_DT_F16 : KILN_DT_BF16);
}

/* ==== argument checks (no GPU needed) ========================================== */

static void test_bad_args(void **state)
{
    (void)state;
    int32_t start[2] = {0, 1}, len[1] = {5}, pos[1] = {4}, slot[1] = {4}, tab[1] = {0};
    bk_batch_host h = {.n_tokens = 1, .n_seqs = 1, .max_blocks = 1, .positions = pos,
                       .seq_start = start, .seq_len = len, .block_tables = tab,
                       .slot_mapping = slot};
    /* device pointers are never dereferenced before the checks pass */
    static _Alignas(16) uint8_t fake[64];
    bk_batch b = {.n_tokens = 1, .n_seqs = 1, .positions = (int32_t *)fake,
                  .seq_start = (int32_t *)fake, .seq_len = (int32_t *)fake,
                  .block_tables = (int32_t *)fake, .max_blocks = 1,
                  .slot_mapping = (int32_t *)fake, .max_seq_len = 5};
    bk_attn a = {.n_heads = 4, .n_kv_heads = 2, .head_dim = 96, .scale = 0.1f, .causal = true,
                 .use_cache = true};

    assert_int_equal(cuda_attention(&b, &h, &a, fake, fake, fake, fake, fake, 1, 8,
                                    KILN_DT_BF16, fake, stream), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "head_dim 96"));
    a.head_dim = 64;
    assert_int_equal(cuda_attention(&b, &h, &a, fake, fake, fake, fake, fake, 1, 8,
                                    KILN_DT_F32, fake, stream), KILN_ERR_UNSUPPORTED);
    a.n_heads = 3;
    assert_int_equal(cuda_attention(&b, &h, &a, fake, fake, fake, fake, fake, 1, 8,
                                    KILN_DT_BF16, fake, stream), KILN_ERR_INVALID_ARG);
    a.n_heads = 4;
    slot[0] = 8;
    assert_int_equal(cuda_attention(&b, &h, &a, fake, fake, fake, fake, fake, 1, 8,
                                    KILN_DT_BF16, fake, stream), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "slot 8"));
    slot[0] = 4;
    tab[0] = 1;
    assert_int_equal(cuda_attention(&b, &h, &a, fake, fake, fake, fake, fake, 1, 8,
                                    KILN_DT_BF16, fake, stream), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "block id 1"));
    tab[0] = 0;
    pos[0] = 5;
    assert_int_equal(cuda_attention(&b, &h, &a, fake, fake, fake, fake, fake, 1, 8,
                                    KILN_DT_BF16, fake, stream), KILN_ERR_INVALID_ARG);
    pos[0] = 4;
    assert_int_equal(cuda_attention(&b, &h, &a, fake, fake, fake, NULL, NULL, 0, 0,
                                    KILN_DT_BF16, fake, stream), KILN_ERR_INVALID_ARG);
    assert_int_equal(cuda_attention(&b, &h, &a, fake + 2, fake, fake, fake, fake, 1, 8,
                                    KILN_DT_BF16, fake, stream), KILN_ERR_INVALID_ARG);
    /* fused rows: a 16-byte multiple at least as wide as q (4 x 64) */
    a.qkv_stride = 252;
    assert_int_equal(cuda_attention(&b, &h, &a, fake, fake, fake, fake, fake, 1, 8,
                                    KILN_DT_BF16, fake, stream), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "rows of 252"));
    a.qkv_stride = 260;
    assert_int_equal(cuda_attention(&b, &h, &a, fake, fake, fake, fake, fake, 1, 8,
                                    KILN_DT_BF16, fake, stream), KILN_ERR_INVALID_ARG);
    a.qkv_stride = 0;
    /* the rotation inside the kernel: table rotations of decode batches */
    cuops_rope_args ra = {.head_dim = 64, .rot_dims = 64, .neox = true,
                          .inv_freq = (const float *)fake, .mscale = 1.0f};
    ra.dynamic = true;
    assert_int_equal(cuda_attention_rope(&b, &h, &a, &ra, fake, fake, fake, fake, fake, 1, 8,
                                         KILN_DT_BF16, fake, stream), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "rotary"));
    ra.dynamic = false;
    ra.rot_dims = 66;
    assert_int_equal(cuda_attention_rope(&b, &h, &a, &ra, fake, fake, fake, fake, fake, 1, 8,
                                         KILN_DT_BF16, fake, stream), KILN_ERR_INVALID_ARG);
    ra.rot_dims = 64;
    assert_int_equal(cuda_attention_rope(&b, &h, &a, NULL, fake, fake, fake, fake, fake, 1, 8,
                                         KILN_DT_BF16, fake, stream), KILN_ERR_INVALID_ARG);
    a.use_cache = false;
    assert_int_equal(cuda_attention_rope(&b, &h, &a, &ra, fake, fake, fake, NULL, NULL, 0, 0,
                                         KILN_DT_BF16, fake, stream), KILN_ERR_INVALID_ARG);
    a.use_cache = true;
    h.n_tokens = 2;
    assert_int_equal(cuda_attention(&b, &h, &a, fake, fake, fake, fake, fake, 1, 8,
                                    KILN_DT_BF16, fake, stream), KILN_ERR_INVALID_ARG);
    /* a sequence of two new tokens is no decode batch */
    int32_t start2[2] = {0, 2}, pos2[2] = {3, 4}, slot2[2] = {3, 4};
    bk_batch_host h2 = h;
    h2.seq_start = start2;
    h2.positions = pos2;
    h2.slot_mapping = slot2;
    bk_batch b2 = b;
    b2.n_tokens = 2;
    assert_int_equal(cuda_attention_rope(&b2, &h2, &a, &ra, fake, fake, fake, fake, fake, 1, 8,
                                         KILN_DT_BF16, fake, stream), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "one new token"));
}

/* The split choice: one split when the batch fills the GPU, more for a
 * lone long context, never past the workspace bound. */
static void test_split_choice(void **state)
{
    (void)state;
    assert_int_equal(attn_decode_splits(64, 8, 4, 16384, 132), 1);
    /* a short context splits into ATTN_DECODE_MIN_KEYS-key pieces, no fewer */
    assert_int_equal(attn_decode_splits(1, 8, 4, ATTN_DECODE_MIN_KEYS, 132), 1);
    assert_int_equal(attn_decode_splits(1, 8, 4, 100, 132),
                     (100 + ATTN_DECODE_MIN_KEYS - 1) / ATTN_DECODE_MIN_KEYS);
    assert_true(attn_decode_splits(1, 8, 4, 16384, 132) > 8);
    /* another minimum in force: a 148-key context is one split at 256 */
    assert_int_equal(attn_decode_set_min_keys(256), KILN_OK);
    assert_int_equal(attn_decode_splits(1, 8, 4, 148, 132), 1);
    assert_int_equal(attn_decode_splits(1, 8, 4, 1000, 132), 4);
    assert_int_equal(attn_decode_set_min_keys(-1), KILN_ERR_INVALID_ARG);
    assert_int_equal(attn_decode_set_min_keys(ATTN_DECODE_MAX_MIN_KEYS + 1),
                     KILN_ERR_INVALID_ARG);
    assert_int_equal(attn_decode_splits(1, 8, 4, 1000, 132), 4); /* kept */
    assert_int_equal(attn_decode_set_min_keys(0), KILN_OK);
    assert_int_equal(attn_decode_splits(1, 8, 4, 148, 132),
                     (148 + ATTN_DECODE_MIN_KEYS - 1) / ATTN_DECODE_MIN_KEYS);
    for (int ns = 1; ns <= 300; ns += 7)
        for (int kv = 1; kv <= 16; kv *= 2)
            for (int g = 1; g <= 16; g++) {
                int32_t sp = attn_decode_splits(ns, kv, g, 1 << 20, 132);
                assert_true(sp >= 1 && sp <= ATTN_DECODE_MAX_SPLIT);
                if (sp > 1)
                    assert_true((int64_t)ns * kv * g * sp <= attn_decode_ws_rows(132));
            }
}

/* ==== setup ===================================================================== */

static int group_setup(void **state)
{
    (void)state;
    const char *env = getenv("KILN_TEST_SEED");
    uint64_t seed;
    int n = 0;
    cudev_info dev;

    if (env && *env) {
        seed = strtoull(env, NULL, 10);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
    }
    rng = seed;
    print_message("seed %llu (KILN_TEST_SEED=%llu repeats this run)\n",
                  (unsigned long long)seed, (unsigned long long)seed);
    if (bk_cpu_create(0, &cpu) != KILN_OK) {
        print_message("cpu backend: %s\n", kiln_last_error());
        return -1;
    }

    /* Pin any asynchronous fault to the kernel that caused it. */
    cuda_check_set_sync(true);
    if (cudev_count(&n) != KILN_OK || cudev_query(0, &dev) != KILN_OK ||
        cudev_check_supported(&dev) != KILN_OK) {
        snprintf(gpu_why, sizeof gpu_why, "%s", kiln_last_error());
        print_message("GPU tests skipped: %s\n", gpu_why);
        return 0;
    }
    if (cudaSetDevice(0) != cudaSuccess ||
        cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
        snprintf(gpu_why, sizeof gpu_why, "cannot set up device 0: %s",
                 cudaGetErrorString(cudaGetLastError()));
        print_message("GPU tests skipped: %s\n", gpu_why);
        return 0;
    }
    gpu_ok = true;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (gpu_ok) {
        attn_workspace_release();
        cudaStreamDestroy(stream);
    }
    if (cpu)
        cpu->ops->destroy(cpu);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_split_choice),
        cmocka_unit_test(test_split_decode),
        cmocka_unit_test(test_mixed_batch),
        cmocka_unit_test(test_rope_in_attention),
        cmocka_unit_test(test_random_bf16),
        cmocka_unit_test(test_random_f16),
        cmocka_unit_test(test_encoder),
        cmocka_unit_test(test_prefill_variants),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
