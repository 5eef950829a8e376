/*
 * test_tp.c - tensor parallelism simulated on the CPU, and its errors.
 *
 * A group of N ranks is N threads of this process, each with its own CPU
 * backend, its shard of the model (model_load with tp_rank / tp_world) and
 * its KV cache; every step runs on all ranks at once, their collectives
 * going through the thread communicator (backend/comm.h).  For the tiny
 * golden models of tests/golden/models/ (HF and GGUF) and a GGUF llama with
 * Q8_0 matrices written here, TP = 2 and 4 against TP = 1, in fp32:
 *   - the logits of every position of each prompt alone, of all prompts in
 *     one batch, and of every greedy decode step: max |tp - ref| / max |ref|
 *     of each row <= 1e-5 (the largest is printed per model and TP size);
 *   - 32 greedy tokens of each prompt alone (argmax of the gathered logits
 *     on the host) and of all five prompts (1 to 40 tokens) as one batch
 *     whose sequences join at different steps (model_forward_ids: argmax
 *     on the backend), identical to TP = 1's;
 *   - every rank's outputs bit-identical to rank 0's, and each rank's KV
 *     cache holding only its kv heads.
 * The golden models have 4 heads and 2 kv heads: at TP = 4 each rank holds
 * one of the two kv heads, replicated.  In the Q8_0 llama the attention
 * output's 64 columns split into blocks of 32 at TP = 2 but not at TP = 4,
 * which must fail with a message naming the tensor.
 * Errors of model_load (KILN_ERR_INVALID_ARG with the numbers): world size
 * < 1, rank outside the world, heads, kv heads, intermediate size or
 * vocabulary not dividing among the ranks (copies of the llama's
 * config.json changed in a temporary directory), no communicator; the
 * encoder and dummy weights (KILN_ERR_UNSUPPORTED).  The communicator:
 * sums in rank order, gather layout, mismatched sizes, abort waking a rank
 * that waits.
 */
#include "backend/comm.h"
#include "base/alloc.h"
#include "engine/generate.h"
#include "format/quant.h"
#include "model/model.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_test.h"
#include "kt_step.h"

#define MAX_WORLD 4
#define N_PROMPTS 5
#define GEN 32
#define TOL 1e-5

static const int PROMPT_LEN[N_PROMPTS] = {1, 3, 9, 17, 40};
static char g_tmp[1024];

/* ---- the rank threads ------------------------------------------------------------ */

typedef struct tp_rank {
    int rank;
    backend *be;
    kiln_model *m;
    comm *c;                  /* NULL at world 1                         */
    bk_kv_cache kv;
    float *logits;            /* (KT_MAX_TOKENS, vocab)                   */
    int32_t ids[KT_MAX_TOKENS];
    /* the step in flight */
    const kt_step *st;
    bool greedy;
    kiln_status status;
    char err[512];
    pthread_t thread;
} tp_rank;

typedef struct tp_group {
    const char *name;
    int world;
    int64_t vocab;
    tp_rank r[MAX_WORLD];
} tp_group;

static void model_path(char *buf, size_t cap, const char *rel)
{
    if (rel[0] == '/')
        snprintf(buf, cap, "%s", rel);
    else
        snprintf(buf, cap, "%s/tests/golden/models/%s", kt_env("KILN_SOURCE_DIR"), rel);
}

/* Load the `world` shards of model `rel` (under tests/golden/models/, or an
 * absolute path), one CPU backend and KV cache each. */
static void tp_open(tp_group *g, const char *name, const char *rel, int world)
{
    comm *comms[MAX_WORLD] = {NULL};
    char dir[4096];

    memset(g, 0, sizeof *g);
    g->name = name;
    g->world = world;
    model_path(dir, sizeof dir, rel);
    if (world > 1 && comm_threads_create(world, comms))
        fail_msg("comm_threads_create: %s", kiln_last_error());
    for (int r = 0; r < world; r++) {
        tp_rank *R = &g->r[r];
        model_load_opts o = {.max_batch_tokens = KT_MAX_TOKENS, .tp_rank = r,
                             .tp_world = world, .tp_comm = comms[r]};
        bk_kv_cache shape;
        R->rank = r;
        R->c = comms[r];
        if (bk_cpu_create(1, &R->be))
            fail_msg("bk_cpu_create: %s", kiln_last_error());
        if (model_load(dir, R->be, &o, &R->m))
            fail_msg("%s TP=%d rank %d: model_load: %s", name, world, r, kiln_last_error());
        const model_config *c = model_config_of(R->m);
        model_kv_shape(R->m, KT_N_BLOCKS, KT_BLOCK, &shape);
        /* the rank's kv heads only (one replicated head past their number) */
        assert_int_equal(shape.n_kv_heads, c->n_kv_heads % world ? 1 : c->n_kv_heads / world);
        if (R->be->ops->kv_alloc(R->be, &shape, &R->kv))
            fail_msg("kv_alloc: %s", kiln_last_error());
        g->vocab = c->vocab_size;
        R->logits = malloc((size_t)KT_MAX_TOKENS * (size_t)g->vocab * sizeof *R->logits);
        assert_non_null(R->logits);
    }
}

static void tp_close(tp_group *g)
{
    for (int r = 0; r < g->world; r++) {
        tp_rank *R = &g->r[r];
        free(R->logits);
        R->be->ops->kv_free(R->be, &R->kv);
        model_free(R->m);
        R->be->ops->destroy(R->be);
        comm_free(R->c);
    }
}

/* One rank's part of a step; a failing rank aborts the group so that the
 * others do not wait for it. */
static void *tp_rank_main(void *arg)
{
    tp_rank *R = arg;
    bk_batch b;
    kiln_status st = kt_step_upload(R->be, R->st, false, &b);

    if (!st)
        st = R->greedy ? model_forward_ids(R->m, &b, &R->kv, NULL, R->ids)
                       : model_forward(R->m, &b, &R->kv, R->logits);
    R->status = st;
    if (st) {
        snprintf(R->err, sizeof R->err, "%s", kiln_last_error());
        comm_abort(R->c);
    }
    return NULL;
}

/* Run step st on every rank at once (rank 0 on this thread); greedy:
 * model_forward_ids into each rank's ids, else logits. */
static void tp_forward(tp_group *g, const kt_step *st, bool greedy)
{
    for (int r = 0; r < g->world; r++) {
        g->r[r].st = st;
        g->r[r].greedy = greedy;
    }
    for (int r = 1; r < g->world; r++)
        if (pthread_create(&g->r[r].thread, NULL, tp_rank_main, &g->r[r]))
            fail_msg("pthread_create failed");
    tp_rank_main(&g->r[0]);
    for (int r = 1; r < g->world; r++)
        pthread_join(g->r[r].thread, NULL);
    for (int r = 0; r < g->world; r++)
        if (g->r[r].status)
            fail_msg("%s TP=%d rank %d: forward: %s", g->name, g->world, r, g->r[r].err);
    /* every rank has the whole outputs, bit for bit */
    for (int r = 1; r < g->world; r++) {
        bool same = greedy ? !memcmp(g->r[r].ids, g->r[0].ids, (size_t)st->n_out * 4)
                           : !memcmp(g->r[r].logits, g->r[0].logits,
                                     (size_t)st->n_out * (size_t)g->vocab * sizeof(float));
        if (!same)
            fail_msg("%s TP=%d: rank %d's %s differ from rank 0's", g->name, g->world, r,
                     greedy ? "greedy ids" : "logits");
    }
}

/* ---- one run: what a group computes --------------------------------------------- */

typedef struct tp_record {
    float *rows;              /* every logit row of the run, in order (n, vocab) */
    size_t n, cap;
    int32_t alone[N_PROMPTS][GEN];
    int32_t batch[N_PROMPTS][GEN];
} tp_record;

static void rec_rows(tp_record *rc, const float *l, size_t rows, int64_t vocab)
{
    if (rc->n + rows > rc->cap) {
        rc->cap = (rc->n + rows) * 2;
        rc->rows = realloc(rc->rows, rc->cap * (size_t)vocab * sizeof *rc->rows);
        assert_non_null(rc->rows);
    }
    memcpy(rc->rows + rc->n * (size_t)vocab, l, rows * (size_t)vocab * sizeof *l);
    rc->n += rows;
}

static int32_t argmax(const float *v, int64_t n)
{
    int32_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = (int32_t)i;
    return best;
}

/* Prompt i: PROMPT_LEN[i] ids spread over the vocabulary. */
static void prompt_ids(int i, int64_t vocab, int32_t *ids)
{
    for (int k = 0; k < PROMPT_LEN[i]; k++)
        ids[k] = (int32_t)((i * 131 + k * 29 + 7) % vocab);
}

static void tp_run(tp_group *g, tp_record *rc)
{
    tp_rank *R0 = &g->r[0];
    int32_t ids[N_PROMPTS][64];
    kt_step st;

    memset(rc, 0, sizeof *rc);
    for (int i = 0; i < N_PROMPTS; i++)
        prompt_ids(i, g->vocab, ids[i]);

    /* 1. each prompt alone: the logits of every position */
    for (int i = 0; i < N_PROMPTS; i++) {
        kt_step_init(&st);
        kt_step_add(&st, i, ids[i], NULL, PROMPT_LEN[i], 0, true);
        tp_forward(g, &st, false);
        rec_rows(rc, R0->logits, (size_t)st.n_out, g->vocab);
    }

    /* 2. all prompts in one batch */
    kt_step_init(&st);
    for (int i = 0; i < N_PROMPTS; i++)
        kt_step_add(&st, i, ids[i], NULL, PROMPT_LEN[i], 0, true);
    tp_forward(g, &st, false);
    rec_rows(rc, R0->logits, (size_t)st.n_out, g->vocab);

    /* 3. greedy decoding of each prompt alone through the cache, argmax
     *    of the gathered logits on the host */
    for (int i = 0; i < N_PROMPTS; i++)
        for (int k = 0; k < GEN; k++) {
            kt_step_init(&st);
            if (k == 0)
                kt_step_add(&st, i, ids[i], NULL, PROMPT_LEN[i], 0, false);
            else
                kt_step_add(&st, i, &rc->alone[i][k - 1], NULL, 1, PROMPT_LEN[i] + k - 1, false);
            tp_forward(g, &st, false);
            rec_rows(rc, R0->logits, 1, g->vocab);
            rc->alone[i][k] = argmax(R0->logits, g->vocab);
        }

    /* 4. greedy decoding of all prompts together, sequence i joining at
     *    step 3i/2 so that prefills and decodes share steps; argmax on the
     *    backend (model_forward_ids) */
    int done[N_PROMPTS] = {0}, left = N_PROMPTS;
    for (int s = 0; left > 0; s++) {
        int who[N_PROMPTS], n_who = 0;
        kt_step_init(&st);
        for (int i = 0; i < N_PROMPTS; i++) {
            if (s < i * 3 / 2 || done[i] == GEN)
                continue;
            if (done[i] == 0)
                kt_step_add(&st, i, ids[i], NULL, PROMPT_LEN[i], 0, false);
            else
                kt_step_add(&st, i, &rc->batch[i][done[i] - 1], NULL, 1,
                            PROMPT_LEN[i] + done[i] - 1, false);
            who[n_who++] = i;
        }
        if (n_who == 0)
            continue;
        tp_forward(g, &st, true);
        for (int k = 0; k < n_who; k++) {
            int i = who[k];
            rc->batch[i][done[i]++] = R0->ids[k];
            left -= done[i] == GEN;
        }
    }
}

/* max over rows of max |got - want| / max |want| of the row */
static double rows_err(const float *got, const float *want, size_t rows, int64_t vocab)
{
    double worst = 0.0;
    for (size_t r = 0; r < rows; r++) {
        const float *a = got + r * (size_t)vocab, *b = want + r * (size_t)vocab;
        double scale = 0.0, e = 0.0;
        for (int64_t i = 0; i < vocab; i++)
            scale = fmax(scale, fabs((double)b[i]));
        for (int64_t i = 0; i < vocab; i++)
            e = fmax(e, fabs((double)a[i] - (double)b[i]));
        worst = fmax(worst, e / (scale > 0.0 ? scale : 1.0));
    }
    return worst;
}

static void tp_check(const char *name, int world, const tp_record *ref, const tp_record *rc,
                     int64_t vocab)
{
    assert_int_equal(rc->n, ref->n);
    double e = rows_err(rc->rows, ref->rows, rc->n, vocab);
    for (int i = 0; i < N_PROMPTS; i++)
        for (int k = 0; k < GEN; k++) {
            if (rc->alone[i][k] != ref->alone[i][k])
                fail_msg("%s TP=%d: prompt %d alone: greedy token %d is %d, TP=1 gave %d", name,
                         world, i, k, rc->alone[i][k], ref->alone[i][k]);
            if (rc->batch[i][k] != ref->batch[i][k])
                fail_msg("%s TP=%d: prompt %d batched: greedy token %d is %d, TP=1 gave %d",
                         name, world, i, k, rc->batch[i][k], ref->batch[i][k]);
        }
    print_message("%s TP=%d: max rel logit error %.2e over %zu rows; %d x %d greedy tokens "
                  "identical alone and batched\n", name, world, e, rc->n, N_PROMPTS, GEN);
    if (e > TOL)
        fail_msg("%s TP=%d: max relative logit error %.3g > %g", name, world, e, TOL);
}

/* TP = 1, 2, 4 of one model. */
static void run_model(const char *name, const char *rel)
{
    static const int worlds[] = {1, 2, 4};
    tp_record ref = {0}, rc;
    tp_group g;

    for (size_t w = 0; w < sizeof worlds / sizeof worlds[0]; w++) {
        tp_open(&g, name, rel, worlds[w]);
        tp_run(&g, w == 0 ? &ref : &rc);
        if (w > 0) {
            tp_check(name, worlds[w], &ref, &rc, g.vocab);
            free(rc.rows);
        }
        tp_close(&g);
    }
    free(ref.rows);
}

static void test_llama(void **state) { run_model("llama", "llama"); }
static void test_llama3_rope(void **state) { run_model("llama3_rope", "llama3_rope"); }
static void test_mistral(void **state) { run_model("mistral", "mistral"); }
static void test_qwen2(void **state) { run_model("qwen2", "qwen2"); }
static void test_qwen3(void **state) { run_model("qwen3", "qwen3"); }
static void test_gemma3(void **state) { run_model("gemma3", "gemma3"); }
static void test_llama_gguf(void **state) { run_model("llama.gguf", "gguf/llama.gguf"); }
static void test_qwen2_gguf(void **state) { run_model("qwen2.gguf", "gguf/qwen2.gguf"); }
static void test_gemma3_gguf(void **state) { run_model("gemma3_hd.gguf", "gguf/gemma3_hd.gguf"); }

/* ---- a GGUF llama with Q8_0 matrices ------------------------------------------- */

typedef struct gw {
    uint8_t *p;
    size_t n, cap;
} gw;

static void gw_put(gw *w, const void *d, size_t n)
{
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2;
        w->p = realloc(w->p, w->cap);
        assert_non_null(w->p);
    }
    memcpy(w->p + w->n, d, n);
    w->n += n;
}

static void gw_u32(gw *w, uint32_t v) { gw_put(w, &v, 4); } /* little-endian hosts */
static void gw_u64(gw *w, uint64_t v) { gw_put(w, &v, 8); }

static void gw_str(gw *w, const char *s)
{
    gw_u64(w, strlen(s));
    gw_put(w, s, strlen(s));
}

enum { GW_UINT32 = 4, GW_FLOAT32 = 6, GW_STRING = 8 };

static void gw_kv_u32(gw *w, const char *k, uint32_t v)
{
    gw_str(w, k);
    gw_u32(w, GW_UINT32);
    gw_u32(w, v);
}

static void gw_kv_f32(gw *w, const char *k, float v)
{
    gw_str(w, k);
    gw_u32(w, GW_FLOAT32);
    gw_put(w, &v, 4);
}

/* One tensor of the file: ne0 x ne1 (ne1 0: a vector of ne0) of F32 or
 * Q8_0, values uniform in +-0.25 from a fixed sequence (norm weights
 * around 1). */
typedef struct gw_tensor {
    char name[64];
    int64_t ne0, ne1;
    kiln_dtype dt;
} gw_tensor;

static uint32_t g_lcg = 12345;

static float gw_rand(void)
{
    g_lcg = g_lcg * 1664525u + 1013904223u;
    return ((float)(g_lcg >> 8) / 16777216.0f - 0.5f) * 0.5f;
}

/* The tensor's bytes appended to data (Q8_0: blocks of 32 as f16 scale
 * amax / 127 and 32 rounded int8). */
static void gw_data(gw *data, const gw_tensor *t)
{
    int64_t n = t->ne0 * (t->ne1 ? t->ne1 : 1);
    bool norm = strstr(t->name, "norm") != NULL;
    if (t->dt == KILN_DT_F32) {
        for (int64_t i = 0; i < n; i++) {
            float v = norm ? 1.0f + gw_rand() * 0.2f : gw_rand();
            gw_put(data, &v, 4);
        }
        return;
    }
    for (int64_t b = 0; b < n / 32; b++) {
        float x[32], amax = 0.0f;
        for (int i = 0; i < 32; i++) {
            x[i] = gw_rand();
            amax = fmaxf(amax, fabsf(x[i]));
        }
        float d = amax / 127.0f;
        uint16_t dh = quant_f32_to_f16(d);
        gw_put(data, &dh, 2);
        for (int i = 0; i < 32; i++) {
            int8_t q = (int8_t)lrintf(d > 0.0f ? x[i] / d : 0.0f);
            gw_put(data, &q, 1);
        }
    }
}

/* A two-layer llama (hidden 64, 4 heads, 2 kv heads, ff 128, vocabulary
 * 64) with Q8_0 matrices and F32 norms at path. */
static void write_q8_llama(const char *path)
{
    gw_tensor ts[3 + 2 * 9];
    int nt = 0;
    gw h = {0}, data = {0};
    static const char *const layer[9] = {"attn_norm", "attn_q", "attn_k", "attn_v",
                                         "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                                         "ffn_down"};
    static const int64_t shape[9][2] = {{64, 0}, {64, 64}, {64, 32}, {64, 32}, {64, 64},
                                        {64, 0}, {64, 128}, {64, 128}, {128, 64}};

    ts[nt++] = (gw_tensor){"token_embd.weight", 64, 64, KILN_DT_Q8_0};
    ts[nt++] = (gw_tensor){"output_norm.weight", 64, 0, KILN_DT_F32};
    ts[nt++] = (gw_tensor){"output.weight", 64, 64, KILN_DT_Q8_0};
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 9; k++) {
            gw_tensor *t = &ts[nt++];
            snprintf(t->name, sizeof t->name, "blk.%d.%s.weight", l, layer[k]);
            t->ne0 = shape[k][0];
            t->ne1 = shape[k][1];
            t->dt = shape[k][1] ? KILN_DT_Q8_0 : KILN_DT_F32;
        }

    gw_put(&h, "GGUF", 4);
    gw_u32(&h, 3);
    gw_u64(&h, (uint64_t)nt);
    gw_u64(&h, 9);
    gw_str(&h, "general.architecture");
    gw_u32(&h, GW_STRING);
    gw_str(&h, "llama");
    gw_kv_u32(&h, "llama.block_count", 2);
    gw_kv_u32(&h, "llama.embedding_length", 64);
    gw_kv_u32(&h, "llama.feed_forward_length", 128);
    gw_kv_u32(&h, "llama.attention.head_count", 4);
    gw_kv_u32(&h, "llama.attention.head_count_kv", 2);
    gw_kv_u32(&h, "llama.context_length", 256);
    gw_kv_f32(&h, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gw_kv_f32(&h, "llama.rope.freq_base", 10000.0f);
    for (int i = 0; i < nt; i++) {
        gw_str(&h, ts[i].name);
        gw_u32(&h, ts[i].ne1 ? 2 : 1);
        gw_u64(&h, (uint64_t)ts[i].ne0);
        if (ts[i].ne1)
            gw_u64(&h, (uint64_t)ts[i].ne1);
        gw_u32(&h, (uint32_t)ts[i].dt);
        gw_u64(&h, data.n);
        gw_data(&data, &ts[i]);
        while (data.n % 32)
            gw_put(&data, "", 1);
    }
    while (h.n % 32)
        gw_put(&h, "", 1);
    gw_put(&h, data.p, data.n);
    kt_write_file(path, h.p, h.n);
    free(h.p);
    free(data.p);
}

/* TP = 2 splits every Q8_0 matrix on block boundaries: it must match
 * TP = 1.  TP = 4 gives rank 1 the attention output's columns [16, 32). */
static void test_q8_0_gguf(void **state)
{
    char path[1100];
    tp_record ref = {0}, rc;
    tp_group g;
    comm *comms[4];
    backend *be;
    kiln_model *m = NULL;

    snprintf(path, sizeof path, "%s/q8_llama.gguf", g_tmp);
    write_q8_llama(path);
    tp_open(&g, "q8_0 llama.gguf", path, 1);
    tp_run(&g, &ref);
    tp_close(&g);
    tp_open(&g, "q8_0 llama.gguf", path, 2);
    tp_run(&g, &rc);
    tp_check("q8_0 llama.gguf", 2, &ref, &rc, g.vocab);
    tp_close(&g);
    free(ref.rows);
    free(rc.rows);

    assert_int_equal(comm_threads_create(4, comms), KILN_OK);
    assert_int_equal(bk_cpu_create(1, &be), KILN_OK);
    model_load_opts o = {.max_batch_tokens = 16, .tp_rank = 1, .tp_world = 4,
                         .tp_comm = comms[1]};
    assert_int_equal(model_load(path, be, &o, &m), KILN_ERR_INVALID_ARG);
    assert_null(m);
    print_message("TP=4 of the Q8_0 llama: %s\n", kiln_last_error());
    assert_non_null(strstr(kiln_last_error(), "blk.0.attn_output.weight"));
    assert_non_null(strstr(kiln_last_error(), "blocks of 32"));
    assert_non_null(strstr(kiln_last_error(), "[16, 32)"));
    be->ops->destroy(be);
    for (int r = 0; r < 4; r++)
        comm_free(comms[r]);
}

/* ---- load errors ------------------------------------------------------------------- */

/* A copy of the golden llama whose config.json has `key` set to `value`
 * (and key2 to value2 unless NULL), the weights linked, in g_tmp/<name>. */
static void write_config_copy(const char *name, const char *key, int value, const char *key2,
                              int value2, char *dir, size_t cap)
{
    static const char *const files[] = {"model.safetensors", "tokenizer.json",
                                        "tokenizer_config.json", "generation_config.json"};
    char src[4096], path[8192], from[8192];
    json_t *cfg;

    model_path(src, sizeof src, "llama");
    snprintf(dir, cap, "%s/%s", g_tmp, name);
    kt_mkdirs(dir);
    snprintf(path, sizeof path, "%s/config.json", src);
    cfg = kt_load_json(path);
    json_object_set_new(cfg, key, json_integer(value));
    if (key2)
        json_object_set_new(cfg, key2, json_integer(value2));
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (json_dump_file(cfg, path, JSON_INDENT(2)))
        fail_msg("cannot write %s", path);
    json_decref(cfg);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(from, sizeof from, "%s/%s", src, files[i]);
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (symlink(from, path))
            fail_msg("symlink %s", path);
    }
}

/* model_load of dir as rank `rank` of `world` (comm: a thread group's rank
 * `rank` of `comm_world` ranks, none when comm_world is 0) must fail with
 * `want` and a message holding every string of the NULL-terminated list. */
static void expect_tp_error(const char *dir, int rank, int world, int comm_world,
                            kiln_status want, ...)
{
    comm *comms[8] = {NULL};
    backend *be;
    kiln_model *m = NULL;
    va_list ap;
    const char *s;

    if (comm_world > 0)
        assert_int_equal(comm_threads_create(comm_world, comms), KILN_OK);
    assert_int_equal(bk_cpu_create(1, &be), KILN_OK);
    model_load_opts o = {.max_batch_tokens = 16, .tp_rank = rank, .tp_world = world,
                         .tp_comm = rank >= 0 && rank < comm_world ? comms[rank] : NULL};
    kiln_status st = model_load(dir, be, &o, &m);
    print_message("rank %d of %d: %s\n", rank, world, kiln_last_error());
    assert_int_equal(st, want);
    assert_null(m);
    va_start(ap, want);
    while ((s = va_arg(ap, const char *)))
        if (!strstr(kiln_last_error(), s))
            fail_msg("message '%s' does not say '%s'", kiln_last_error(), s);
    va_end(ap);
    be->ops->destroy(be);
    for (int r = 0; r < comm_world; r++)
        comm_free(comms[r]);
}

/* ---- the generation runner over a group (gen_create_tp) ------------------------------- */

#define RUN_SEQS 3
#define RUN_GEN 24

typedef struct run_tokens {
    int32_t tok[RUN_SEQS][RUN_GEN];
    int32_t n[RUN_SEQS];
} run_tokens;

static void run_done(void *user, int32_t req, const gen_summary *s)
{
    run_tokens *o = user;
    assert_true(s->n_gen <= RUN_GEN);
    memcpy(o->tok[req], s->tokens, (size_t)s->n_gen * sizeof(int32_t));
    o->n[req] = s->n_gen;
}

/* RUN_SEQS prompts of 3, 11 and 20 tokens through gen_run of the group,
 * greedy or sampled (temperature 0.9, top_k 20, repetition penalty). */
static void run_group(tp_group *g, bool sampled, run_tokens *out)
{
    kiln_model *models[MAX_WORLD];
    comm *comms[MAX_WORLD];
    gen_opts go = {.max_seqs = RUN_SEQS, .n_ctx = 64, .max_batch_tokens = 32};
    gen_runner *run = NULL;
    int32_t prompts[RUN_SEQS][20];
    gen_request rq[RUN_SEQS];
    for (int r = 0; r < g->world; r++) {
        models[r] = g->r[r].m;
        comms[r] = g->r[r].c;
    }
    if (gen_create_tp(models, g->world > 1 ? comms : NULL, g->world, NULL, &go, &run))
        fail_msg("%s TP=%d: gen_create_tp: %s", g->name, g->world, kiln_last_error());
    memset(out, 0, sizeof *out);
    for (int i = 0; i < RUN_SEQS; i++) {
        int n = i == 0 ? 3 : i == 1 ? 11 : 20;
        for (int k = 0; k < n; k++)
            prompts[i][k] = (int32_t)((7 * k + 13 * i + 1) % g->vocab);
        sampler_params sp;
        sampler_params_default(&sp);
        sp.max_tokens = RUN_GEN;
        sp.ignore_eos = true;
        if (sampled) {
            sp.temperature = 0.9f;
            sp.top_k = 20;
            sp.repetition_penalty = 1.2f;
            sp.seed = 99 + (uint64_t)i;
        }
        rq[i] = (gen_request){.prompt = prompts[i], .n_prompt = n, .params = sp,
                              .on_done = run_done, .user = out};
    }
    if (gen_run(run, rq, RUN_SEQS))
        fail_msg("%s TP=%d: gen_run: %s", g->name, g->world, kiln_last_error());
    gen_free(run);
}

/* The runner over TP = 2 and 4 ranks gives TP = 1's tokens, greedy and
 * sampled on the host, for a batch of mixed lengths; bad groups are
 * refused. */
static void test_runner(void **state)
{
    (void)state;
    run_tokens ref[2], got;
    tp_group g;
    tp_open(&g, "llama", "llama", 1);
    run_group(&g, false, &ref[0]);
    run_group(&g, true, &ref[1]);
    tp_close(&g);
    for (int world = 2; world <= 4; world *= 2) {
        tp_open(&g, "llama", "llama", world);
        for (int sampled = 0; sampled < 2; sampled++) {
            run_group(&g, sampled, &got);
            for (int i = 0; i < RUN_SEQS; i++) {
                assert_int_equal(got.n[i], RUN_GEN);
                if (memcmp(got.tok[i], ref[sampled].tok[i], sizeof got.tok[i]))
                    fail_msg("runner TP=%d %s: sequence %d differs from TP=1", world,
                             sampled ? "sampled" : "greedy", i);
            }
        }
        print_message("runner TP=%d: %d sequences x %d tokens, greedy and sampled, as TP=1\n",
                      world, RUN_SEQS, RUN_GEN);
        /* another rank's communicator in a rank's place */
        kiln_model *models[2] = {g.r[0].m, g.r[1].m};
        comm *swapped[2] = {g.r[1].c, g.r[0].c};
        gen_runner *run = NULL;
        gen_opts go = {.max_seqs = 1, .n_ctx = 32, .max_batch_tokens = 32};
        assert_int_equal(gen_create_tp(models, swapped, 2, NULL, &go, &run),
                         KILN_ERR_INVALID_ARG);
        assert_int_equal(gen_create_tp(models, NULL, 2, NULL, &go, &run), KILN_ERR_INVALID_ARG);
        assert_int_equal(gen_create_tp(models, NULL, 0, NULL, &go, &run), KILN_ERR_INVALID_ARG);
        tp_close(&g);
    }
}

/* A failed allocation on any rank during a run ends the run on every rank
 * with an error (the group is aborted, nobody waits for a dead rank); the
 * test hangs, and times out, if a rank is left waiting. */
static void test_runner_failure(void **state)
{
    (void)state;
    int failed = 0;
    for (int64_t k = 0; k < 40; k += 2) {
        tp_group g;
        kiln_model *models[2];
        comm *comms[2];
        gen_opts go = {.max_seqs = 2, .n_ctx = 64, .max_batch_tokens = 32};
        gen_runner *run = NULL;
        int32_t prompt[12];
        run_tokens out;
        tp_open(&g, "llama", "llama", 2);
        for (int r = 0; r < 2; r++) {
            models[r] = g.r[r].m;
            comms[r] = g.r[r].c;
        }
        if (gen_create_tp(models, comms, 2, NULL, &go, &run))
            fail_msg("gen_create_tp: %s", kiln_last_error());
        for (int i = 0; i < 12; i++)
            prompt[i] = (int32_t)((5 * i + 3) % g.vocab);
        sampler_params sp;
        sampler_params_default(&sp);
        sp.max_tokens = 8;
        sp.ignore_eos = true;
        gen_request rq[2] = {
            {.prompt = prompt, .n_prompt = 12, .params = sp, .on_done = run_done, .user = &out},
            {.prompt = prompt, .n_prompt = 5, .params = sp, .on_done = run_done, .user = &out},
        };
        memset(&out, 0, sizeof out);
        kiln_alloc_fail_burst(k, 1);
        kiln_status st = gen_run(run, rq, 2);
        kiln_alloc_fail_after(-1);
        if (st) {
            failed++;
            assert_true(st == KILN_ERR_OOM || st == KILN_ERR_DEVICE);
        }
        gen_free(run);
        tp_close(&g);
    }
    print_message("runner TP=2: %d of 20 runs ended by one failed allocation\n", failed);
    assert_true(failed > 0);
}

static void test_bad_world_and_rank(void **state)
{
    char dir[4096];
    model_path(dir, sizeof dir, "llama");
    expect_tp_error(dir, 0, -1, 0, KILN_ERR_INVALID_ARG, "world size -1 is < 1", NULL);
    expect_tp_error(dir, 2, 2, 2, KILN_ERR_INVALID_ARG, "rank 2 is outside [0, 2)", NULL);
    expect_tp_error(dir, -1, 2, 2, KILN_ERR_INVALID_ARG, "rank -1 is outside [0, 2)", NULL);
    /* a communicator is required, and must be the rank's */
    expect_tp_error(dir, 0, 2, 0, KILN_ERR_INVALID_ARG, "rank 0 of 2 needs a communicator",
                    NULL);
    expect_tp_error(dir, 1, 2, 4, KILN_ERR_INVALID_ARG, "rank 1 of 2 needs a communicator",
                    NULL);
}

static void test_not_divisible(void **state)
{
    char dir[4096];

    /* 4 heads, 2 kv heads, ff 128, vocabulary 512 */
    model_path(dir, sizeof dir, "llama");
    expect_tp_error(dir, 0, 3, 3, KILN_ERR_INVALID_ARG, "attention heads 4", "among 3", NULL);
    write_config_copy("kv3", "num_attention_heads", 6, "num_key_value_heads", 3, dir,
                      sizeof dir);
    expect_tp_error(dir, 1, 2, 2, KILN_ERR_INVALID_ARG, "3 key/value heads", "among 2", NULL);
    write_config_copy("ff129", "intermediate_size", 129, NULL, 0, dir, sizeof dir);
    expect_tp_error(dir, 0, 2, 2, KILN_ERR_INVALID_ARG, "intermediate size 129", "among 2",
                    NULL);
    write_config_copy("vocab513", "vocab_size", 513, NULL, 0, dir, sizeof dir);
    expect_tp_error(dir, 0, 2, 2, KILN_ERR_INVALID_ARG, "vocabulary size 513", "among 2", NULL);
}

static void test_unsupported(void **state)
{
    char dir[4096];
    comm *comms[2];
    backend *be;
    kiln_model *whole = NULL;

    model_path(dir, sizeof dir, "bert");
    expect_tp_error(dir, 0, 2, 2, KILN_ERR_UNSUPPORTED, "encoder", NULL);

    /* dummy weights are made at each rank's shape: a TP = 2 group of them
     * runs (benchmarks), every rank holding its part of the KV heads */
    model_path(dir, sizeof dir, "llama");
    assert_int_equal(bk_cpu_create(1, &be), KILN_OK);
    model_load_opts o1 = {.max_batch_tokens = 16};
    assert_int_equal(model_load(dir, be, &o1, &whole), KILN_OK);
    assert_int_equal(comm_threads_create(2, comms), KILN_OK);
    backend *bes[2] = {be, NULL};
    kiln_model *ms[2] = {NULL, NULL};
    assert_int_equal(bk_cpu_create(1, &bes[1]), KILN_OK);
    for (int r = 0; r < 2; r++) {
        model_load_opts o = {.max_batch_tokens = 16, .tp_rank = r, .tp_world = 2,
                             .tp_comm = comms[r]};
        if (model_load_dummy(model_config_of(whole), 7, bes[r], &o, &ms[r]))
            fail_msg("dummy rank %d: %s", r, kiln_last_error());
        bk_kv_cache shape;
        model_kv_shape(ms[r], 4, 16, &shape);
        assert_int_equal(shape.n_kv_heads, model_config_of(whole)->n_kv_heads / 2);
    }
    gen_opts go = {.max_seqs = 1, .n_ctx = 32, .max_batch_tokens = 16};
    gen_runner *run = NULL;
    if (gen_create_tp(ms, comms, 2, NULL, &go, &run))
        fail_msg("gen_create_tp (dummy): %s", kiln_last_error());
    int32_t prompt[4] = {1, 2, 3, 4};
    run_tokens out;
    sampler_params sp;
    sampler_params_default(&sp);
    sp.max_tokens = 6;
    sp.ignore_eos = true;
    gen_request rq = {.prompt = prompt, .n_prompt = 4, .params = sp, .on_done = run_done,
                      .user = &out};
    memset(&out, 0, sizeof out);
    assert_int_equal(gen_run(run, &rq, 1), KILN_OK);
    assert_int_equal(out.n[0], 6);
    gen_free(run);
    model_free(whole); /* on bes[0]: before it goes */
    for (int r = 0; r < 2; r++) {
        model_free(ms[r]);
        bes[r]->ops->destroy(bes[r]);
        comm_free(comms[r]);
    }
}

/* ---- the communicator ------------------------------------------------------------- */

#define COMM_N 1000

typedef struct comm_job {
    comm *c;
    float buf[COMM_N];
    float recv[4 * COMM_N];
    int64_t n;                /* elements this rank passes */
    bool abort_instead;       /* abort the group instead of taking part */
    kiln_status reduce_st, gather_st;
} comm_job;

static void *comm_job_main(void *arg)
{
    comm_job *j = arg;
    if (j->abort_instead) {
        usleep(20000); /* let the others wait first */
        comm_abort(j->c);
        return NULL;
    }
    j->reduce_st = comm_all_reduce_sum(j->c, j->buf, j->n, KILN_DT_F32);
    if (!j->reduce_st)
        j->gather_st = comm_all_gather(j->c, j->buf, j->n, KILN_DT_F32, j->recv);
    return NULL;
}

/* Run one job per rank of a fresh group of `world` threads. */
static void comm_run(comm_job *jobs, int world)
{
    comm *comms[4];
    pthread_t th[4];
    assert_int_equal(comm_threads_create(world, comms), KILN_OK);
    for (int r = 0; r < world; r++) {
        jobs[r].c = comms[r];
        assert_int_equal(comm_rank(comms[r]), r);
        assert_int_equal(comm_world(comms[r]), world);
        assert_int_equal(pthread_create(&th[r], NULL, comm_job_main, &jobs[r]), 0);
    }
    for (int r = 0; r < world; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < world; r++)
        comm_free(comms[r]);
}

static void test_comm(void **state)
{
    static comm_job jobs[4];
    comm *none[1];

    assert_int_equal(comm_threads_create(0, none), KILN_ERR_INVALID_ARG);

    /* sums in rank order: values whose float sum depends on the order */
    memset(jobs, 0, sizeof jobs);
    for (int r = 0; r < 4; r++) {
        jobs[r].n = COMM_N;
        for (int i = 0; i < COMM_N; i++)
            jobs[r].buf[i] = (r % 2 ? -1.0f : 1.0f) * (r == 0 ? 1e8f : 1.0f + (float)i * 1e-3f) +
                             (float)r * 0.1f;
    }
    float want[COMM_N], mine[4][COMM_N];
    for (int r = 0; r < 4; r++)
        memcpy(mine[r], jobs[r].buf, sizeof mine[r]);
    for (int i = 0; i < COMM_N; i++) {
        want[i] = mine[0][i];
        for (int r = 1; r < 4; r++)
            want[i] += mine[r][i];
    }
    comm_run(jobs, 4);
    for (int r = 0; r < 4; r++) {
        assert_int_equal(jobs[r].reduce_st, KILN_OK);
        assert_int_equal(jobs[r].gather_st, KILN_OK);
        assert_memory_equal(jobs[r].buf, want, sizeof want);
        /* the gather: rank q's (reduced) buffer at q * n */
        for (int q = 0; q < 4; q++)
            assert_memory_equal(jobs[r].recv + q * COMM_N, want, sizeof want);
    }

    /* ranks disagreeing on the size: an error on every rank, no hang */
    memset(jobs, 0, sizeof jobs);
    jobs[0].n = 10;
    jobs[1].n = 11;
    comm_run(jobs, 2);
    assert_int_equal(jobs[0].reduce_st, KILN_ERR_INVALID_ARG);
    assert_int_equal(jobs[1].reduce_st, KILN_ERR_INVALID_ARG);

    /* a rank that aborts instead of taking part: the others return */
    memset(jobs, 0, sizeof jobs);
    for (int r = 0; r < 3; r++)
        jobs[r].n = 10;
    jobs[2].abort_instead = true;
    comm_run(jobs, 3);
    assert_int_equal(jobs[0].reduce_st, KILN_ERR_DEVICE);
    assert_int_equal(jobs[1].reduce_st, KILN_ERR_DEVICE);
}

static int group_setup(void **state)
{
    kt_mkdtemp(g_tmp, sizeof g_tmp, "tp");
    return 0;
}

static int group_teardown(void **state)
{
    kt_rmtree(g_tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_comm),
        cmocka_unit_test(test_llama),
        cmocka_unit_test(test_llama3_rope),
        cmocka_unit_test(test_mistral),
        cmocka_unit_test(test_qwen2),
        cmocka_unit_test(test_qwen3),
        cmocka_unit_test(test_gemma3),
        cmocka_unit_test(test_llama_gguf),
        cmocka_unit_test(test_qwen2_gguf),
        cmocka_unit_test(test_gemma3_gguf),
        cmocka_unit_test(test_q8_0_gguf),
        cmocka_unit_test(test_runner),
        cmocka_unit_test(test_runner_failure),
        cmocka_unit_test(test_bad_world_and_rank),
        cmocka_unit_test(test_not_divisible),
        cmocka_unit_test(test_unsupported),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
