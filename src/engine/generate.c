/*
 * generate.c - the batch runners of generate.h.
 *
 * Life of a sequence slot during gen_run():
 *
 *            gen_admit(): pool has room for
 *            prompt + max_gen tokens
 *   FREE ------------------------------------> PREFILL (n_fed < n_prompt)
 *    ^                                            |  gen_step() feeds prompt
 *    |                                            |  chunks; the step that
 *    |                                            v  feeds the last one samples
 *    |      gen_finish(): EOS, stop string,    DECODE (n_fed == n_tokens - 1
 *    +----- max tokens or context; KV blocks      |   after each sample)
 *           released, on_done called              |  gen_step() feeds the last
 *                                                 +- sampled token, samples
 *                                                    the next (gen_take)
 *
 * Invariants:
 *   1. tokens[0 .. n_tokens) of a live slot are its prompt then its
 *      samples; tokens[0 .. n_fed) have their K/V in the cache, and
 *      kv_seq_len(slot) == n_fed.
 *   2. A live slot was admitted only when committed + its need_blocks
 *      (blocks for n_prompt + max_gen tokens) <= n_blocks, and committed
 *      is the sum of need_blocks over live slots; so kv_seq_append never
 *      runs out of blocks and no sequence is ever preempted.
 *   3. A step carries every DECODE slot's one token (max_seqs <=
 *      max_batch_tokens) and fills what is left of max_batch_tokens with
 *      PREFILL chunks in slot order.
 *   4. pending holds decoded text not yet handed out: only a tail that may
 *      still grow into a stop string, so the text handed out never
 *      contains a stop string.
 *   5. Nothing is allocated by gen_step(); admission opens a tok_stream
 *      (graph capture allocates inside the backend, once per key).
 *   6. A greedy step pads its batch to a bucket only when it is pure
 *      decode; padding rows are token 0 at position 0 of a one-token
 *      sequence whose block table is pad_block, a KV block outside the
 *      pool kv_cache hands out, so they never touch a live sequence.  A
 *      graph is keyed by (bucket, context class) because the attention
 *      split chosen at capture depends on the longest context; any split
 *      is correct for any context, so a replay is exact either way.
 */
#include "engine/generate.h"

#include "backend/comm.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "base/tpool.h"
#include "engine/kv_cache.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Context classes of a graph key: ceil(log2(longest context)). */
#define GEN_GRAPH_CTX 32

typedef enum gen_graph_state {
    GEN_GRAPH_NONE = 0,      /* key not seen yet                               */
    GEN_GRAPH_WARM,          /* one eager step ran (plans, tables, scratch made) */
    GEN_GRAPH_READY,         /* g holds the captured step                      */
    GEN_GRAPH_FAILED,        /* capture failed: this key runs eager            */
} gen_graph_state;

typedef struct gen_graph {
    gen_graph_state state;
    bk_graph *g;
} gen_graph;

/* Free the captured graphs of one rank (be's), indexed [gen_pick][bucket][ctx]. */
static void gen_graphs_free(backend *be, gen_graph (*g)[GEN_GRAPH_BUCKETS][GEN_GRAPH_CTX])
{
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < GEN_GRAPH_BUCKETS; i++)
            for (int j = 0; j < GEN_GRAPH_CTX; j++)
                if (g[k][i][j].g)
                    be->ops->graph_free(be, g[k][i][j].g);
}

typedef struct gen_peer gen_peer;
static kiln_status gen_peers_start(gen_runner *r, kiln_model *const *models,
                                   comm *const *comms);
static void gen_peers_stop(gen_runner *r);

/* Where a step's tokens are chosen. */
typedef enum gen_pick {
    GEN_PICK_HOST = -1,      /* logits copied out, the host sampler            */
    GEN_PICK_ARGMAX = 0,     /* bk argmax: every row greedy, no penalties      */
    GEN_PICK_SAMPLE = 1,     /* bk sample with the batch's sample rows         */
} gen_pick;

/* One rank's part of a step: where its forward runs. */
typedef struct gen_fwd {
    kiln_model *m;
    bk_kv_cache *kv;
    uint16_t *counts;        /* penalty counts (rank 0), or NULL               */
    int32_t *ids;            /* (seq_cap) backend memory                       */
    gen_graph (*graphs)[GEN_GRAPH_BUCKETS][GEN_GRAPH_CTX]; /* [gen_pick]      */
    gen_stats *stats;
} gen_fwd;

/* Rank r > 0 of a tensor-parallel runner: it mirrors every step of rank 0
 * on its own shard (backend, model, KV memory, graphs), on a thread of its
 * own.  The gathered logits are the same bits on every rank (comm.h), so
 * its tokens are rank 0's and are not read. */
struct gen_peer {
    gen_runner *r;
    int32_t rank;
    kiln_model *m;
    comm *c;
    bk_kv_cache kvmem;
    bool have_kvmem;
    int32_t *ids_dev;
    gen_graph graphs[2][GEN_GRAPH_BUCKETS][GEN_GRAPH_CTX];
    gen_stats stats;         /* its own, not reported                          */
    pthread_t th;
    bool started;
    uint64_t done;           /* last step finished (guarded by tp_mu)          */
    kiln_status st;          /* ... and how                                    */
    char msg[512];
};

typedef struct gen_seq {
    const gen_request *rq;   /* NULL: slot free                                */
    int32_t req;             /* index of rq in gen_run's array                 */
    int32_t *tokens;         /* (n_ctx) prompt, then sampled tokens            */
    int32_t n_tokens;
    int32_t n_fed;           /* tokens with K/V in the cache                   */
    int32_t n_gen, max_gen;
    int32_t need_blocks;
    sampler *smp;
    tok_stream *ts;
    kiln_buf pending;        /* decoded text not yet handed out                */
    uint64_t t_admit, t_first;
} gen_seq;

struct gen_runner {
    kiln_model *m;
    const tokenizer *t;
    backend *be;
    gen_opts o;
    int64_t vocab;
    int32_t max_blocks;      /* block table entries per sequence               */
    kv_cache *kv;
    bk_kv_cache kvmem;
    bool have_kvmem;
    int32_t committed;       /* blocks promised to live slots                  */
    gen_seq *seqs;           /* (max_seqs)                                     */
    /* one step's batch */
    int32_t *b_tokens;       /* (max_batch_tokens)                             */
    int32_t *b_pos;          /* (max_batch_tokens)                             */
    int32_t *b_slots;        /* (max_batch_tokens) KV slot of each token       */
    int32_t *b_seq_start;    /* (max_seqs + 1)                                 */
    int32_t *b_seq_len;      /* (max_seqs)                                     */
    int32_t *b_tables;       /* (max_seqs, max_blocks)                         */
    int32_t *b_out_rows;     /* (max_seqs)                                     */
    int32_t *b_out_slot;     /* (max_seqs) slot of each output row             */
    float *logits;           /* (max_seqs, vocab)                              */
    /* greedy steps on the backend and their graphs (invariant 6) */
    int32_t seq_cap;         /* rows of the per-sequence arrays: max_seqs, or
                                the top bucket when that is larger             */
    int32_t *ids_dev;        /* (seq_cap) backend memory; NULL: no argmax      */
    int32_t *ids_host;       /* (seq_cap)                                      */
    bk_sample_row *b_sample; /* (seq_cap) sample rows of a GEN_PICK_SAMPLE step */
    uint16_t *counts_dev;    /* (max_seqs, vocab) backend memory: penalty counts
                                (bk sample); made when the first request with
                                penalties comes, NULL until then              */
    bool counts_failed;      /* making them failed: penalties on the host      */
    int32_t pad_block;       /* KV block padding rows write to; -1: none       */
    int32_t n_buckets;       /* buckets 1, 2, 4, ... usable (0: no graphs)     */
    gen_graph graphs[2][GEN_GRAPH_BUCKETS][GEN_GRAPH_CTX]; /* [gen_pick] */
    gen_stats stats;
    /* tensor parallelism: world ranks, this thread being rank 0 */
    int32_t world;
    comm *comm0;             /* rank 0's communicator (aborted on a failure)   */
    gen_peer *peers;         /* (world - 1) ranks 1 ..                         */
    pthread_mutex_t tp_mu;
    pthread_cond_t tp_post, tp_done;
    bool tp_ready, tp_quit;
    uint64_t tp_seq;         /* steps posted                                   */
    const bk_batch_host *tp_h; /* the posted step: its batch, bucket, pick     */
    int32_t tp_bucket;
    gen_pick tp_pick;
};

const char *gen_stop_reason_name(gen_stop_reason r)
{
    switch (r) {
    case GEN_STOP_EOS: return "eos";
    case GEN_STOP_STRING: return "stop";
    case GEN_STOP_MAX_TOKENS: return "length";
    case GEN_STOP_CONTEXT: return "context";
    default: return "none";
    }
}

/* ---- end-of-sequence ids ------------------------------------------------- */

static int32_t gen_add_id(int32_t *ids, int32_t n, int64_t id)
{
    if (id < 0 || id > INT32_MAX || n >= GEN_MAX_EOS)
        return n;
    for (int32_t i = 0; i < n; i++)
        if (ids[i] == id)
            return n;
    ids[n] = (int32_t)id;
    return n + 1;
}

int32_t gen_default_eos(const kiln_model *m, const tokenizer *t, int32_t *ids)
{
    static const char *const eot[] = {"<end_of_turn>", "<|eot_id|>",    "<|im_end|>",
                                      "<|end|>",       "<|endoftext|>", "<|end_of_text|>"};
    int32_t n = gen_add_id(ids, 0, model_config_of(m)->eos_token_id);
    if (!t)
        return n;
    n = gen_add_id(ids, n, tok_eos_id(t));
    for (size_t i = 0; i < KILN_ARRAY_LEN(eot); i++) {
        int32_t id = tok_piece_id(t, eot[i], strlen(eot[i]));
        if (id >= 0 && tok_is_special(t, id))
            n = gen_add_id(ids, n, id);
    }
    return n;
}

static bool gen_is_eos(const gen_runner *r, int32_t tok)
{
    for (int32_t i = 0; i < r->o.n_eos; i++)
        if (r->o.eos[i] == tok)
            return true;
    return false;
}

/* ---- runner lifetime ------------------------------------------------------- */

static kiln_status gen_fill_opts(const kiln_model *m, const tokenizer *t, const gen_opts *in,
                                 gen_opts *o)
{
    const model_config *c = model_config_of(m);
    int64_t max_pos = c->max_position_embeddings > 0 ? c->max_position_embeddings : INT32_MAX;
    *o = *in;
    if (!o->max_seqs)
        o->max_seqs = 8;
    if (!o->max_batch_tokens)
        o->max_batch_tokens = 512;
    if (!o->block_size)
        o->block_size = KV_BLOCK_SIZE_DEFAULT;
    if (!o->n_ctx)
        o->n_ctx = (int32_t)(max_pos < 4096 ? max_pos : 4096);
    if (o->max_seqs < 0 || o->max_batch_tokens < 0 || o->n_ctx < 2 || o->n_blocks < 0 ||
        o->n_eos < 0 || o->n_eos > GEN_MAX_EOS)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "generate: bad settings (max_seqs %d, "
                            "max_batch_tokens %d, context %d, blocks %d)", o->max_seqs,
                            o->max_batch_tokens, o->n_ctx, o->n_blocks);
    if (o->max_seqs > o->max_batch_tokens)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "generate: %d sequences cannot decode in "
                            "batches of %d tokens", o->max_seqs, o->max_batch_tokens);
    if (o->n_ctx > max_pos)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "generate: context of %d tokens is over the "
                            "model's %" PRId64 " positions", o->n_ctx, max_pos);
    if (!o->n_eos)
        o->n_eos = gen_default_eos(m, t, o->eos);
    return KILN_OK;
}

static kiln_status gen_alloc_arrays(gen_runner *r)
{
    const gen_opts *o = &r->o;
    size_t ns = (size_t)r->seq_cap, nt = (size_t)o->max_batch_tokens;
    r->seqs = kiln_calloc((size_t)o->max_seqs, sizeof *r->seqs);
    r->b_tokens = kiln_calloc(nt, sizeof(int32_t));
    r->b_pos = kiln_calloc(nt, sizeof(int32_t));
    r->b_slots = kiln_calloc(nt, sizeof(int32_t));
    r->b_seq_start = kiln_calloc(ns + 1, sizeof(int32_t));
    r->b_seq_len = kiln_calloc(ns, sizeof(int32_t));
    r->b_tables = kiln_calloc(ns * (size_t)r->max_blocks, sizeof(int32_t));
    r->b_out_rows = kiln_calloc(ns, sizeof(int32_t));
    r->b_out_slot = kiln_calloc(ns, sizeof(int32_t));
    r->logits = kiln_calloc((size_t)o->max_seqs * (size_t)r->vocab, sizeof(float));
    r->ids_host = kiln_calloc(ns, sizeof(int32_t));
    r->b_sample = kiln_calloc(ns, sizeof *r->b_sample);
    if (!r->seqs || !r->b_tokens || !r->b_pos || !r->b_slots || !r->b_seq_start ||
        !r->b_seq_len || !r->b_tables || !r->b_out_rows || !r->b_out_slot || !r->logits ||
        !r->ids_host || !r->b_sample)
        return kiln_err_set(KILN_ERR_OOM, "generate: out of memory for the batch arrays");
    if (r->be->ops->argmax) {
        kiln_status st = r->be->ops->alloc(r->be, ns * sizeof(int32_t), (void **)&r->ids_dev);
        if (st)
            return kiln_err_wrap(st, "generate: greedy ids");
    }
    for (size_t i = 0; i < (size_t)o->max_seqs; i++) {
        gen_seq *q = &r->seqs[i];
        kiln_status st;
        if (!(q->tokens = kiln_calloc((size_t)o->n_ctx, sizeof(int32_t))))
            return kiln_err_set(KILN_ERR_OOM, "generate: out of memory for %d tokens", o->n_ctx);
        if ((st = sampler_create(r->vocab, &q->smp)) ||
            (st = buf_reserve(&q->pending, 4 * SAMPLER_MAX_STOP_LEN)))
            return st;
    }
    return KILN_OK;
}

static kiln_status gen_alloc_kv(gen_runner *r)
{
    const gen_opts *o = &r->o;
    bk_kv_cache shape;
    kiln_status st = kv_create(o->n_blocks, o->block_size, o->max_seqs, r->max_blocks, &r->kv);
    if (st)
        return st;
    /* one block past the pool for the padding rows of graph buckets */
    model_kv_shape(r->m, o->n_blocks + (r->pad_block >= 0), o->block_size, &shape);
    if ((st = r->be->ops->kv_alloc(r->be, &shape, &r->kvmem))) {
        double mib = 2.0 * shape.n_layers * shape.n_blocks * shape.block_size *
                     shape.n_kv_heads * shape.head_dim * (shape.dtype == KILN_DT_F32 ? 4 : 2) /
                     (1024.0 * 1024.0);
        return kiln_err_wrap(st, "KV cache of %d blocks x %d tokens (%.0f MiB; lower --ctx or "
                             "the number of sequences)", o->n_blocks, o->block_size, mib);
    }
    r->have_kvmem = true;
    return KILN_OK;
}

/* Buckets 1, 2, 4, ... up to the first one that holds max_seqs, those of
 * them a step can carry (max_batch_tokens, at most 256 rows); none
 * without graph capture on the backend.  With no_graphs the steps are
 * padded all the same and run eagerly, so graphs on and off run the same
 * kernels on the same shapes and give the same bits. */
static void gen_plan_buckets(gen_runner *r)
{
    const bk_ops *op = r->be->ops;
    r->seq_cap = r->o.max_seqs;
    r->n_buckets = 0;
    r->pad_block = -1;
    if (!op->argmax || !op->graph_begin)
        return;
    while (r->n_buckets < GEN_GRAPH_BUCKETS) {
        int32_t b = 1 << r->n_buckets;
        if (b > r->o.max_batch_tokens)
            break;
        r->n_buckets++;
        if (b >= r->o.max_seqs) {
            r->seq_cap = b;
            break;
        }
    }
    if (r->n_buckets)
        r->pad_block = r->o.n_blocks;
}

kiln_status gen_create(kiln_model *m, const tokenizer *t, const gen_opts *o, gen_runner **out)
{
    return gen_create_tp(&m, NULL, 1, t, o, out);
}

kiln_status gen_create_tp(kiln_model *const *models, comm *const *comms, int32_t world,
                          const tokenizer *t, const gen_opts *o, gen_runner **out)
{
    gen_opts def;
    gen_runner *r;
    kiln_status st;

    *out = NULL;
    if (world < 1 || !models || (world > 1 && !comms))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "generate: %d tensor-parallel ranks", world);
    for (int32_t i = 0; i < world; i++)
        if (!models[i] || (world > 1 && (!comms[i] || comm_rank(comms[i]) != i ||
                                         comm_world(comms[i]) != world)))
            return kiln_err_set(KILN_ERR_INVALID_ARG, "generate: rank %d of %d has no model or "
                                "another rank's communicator", i, world);
    kiln_model *m = models[0];
    if (model_is_encoder(m))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "generate: %s is an encoder model; it makes "
                            "embeddings, not text", model_config_of(m)->arch_name);
    if (!o) {
        memset(&def, 0, sizeof def);
        o = &def;
    }
    if (!(r = kiln_calloc(1, sizeof *r)))
        return kiln_err_set(KILN_ERR_OOM, "generate: out of memory");
    r->m = m;
    r->t = t;
    r->be = model_backend(m);
    r->vocab = model_config_of(m)->vocab_size;
    if ((st = gen_fill_opts(m, t, o, &r->o)))
        goto fail;
    r->max_blocks = (r->o.n_ctx + r->o.block_size - 1) / r->o.block_size;
    if (!r->o.n_blocks) {
        int64_t nb = (int64_t)r->o.max_seqs * r->max_blocks;
        if (r->o.kv_pool_bytes) {
            /* what the budget holds, less the padding block of graph buckets */
            size_t per = model_kv_bytes_per_token(m) * (size_t)r->o.block_size;
            int64_t fit = (int64_t)(r->o.kv_pool_bytes / per) - 1;
            if (fit < r->max_blocks) {
                st = kiln_err_set(KILN_ERR_OOM, "generate: the KV cache may take %.1f MiB, "
                                  "%lld blocks of %d tokens; one sequence of %d tokens needs "
                                  "%d (raise --gpu-memory-utilization or lower --ctx)",
                                  (double)r->o.kv_pool_bytes / (1024.0 * 1024.0),
                                  (long long)(fit > 0 ? fit : 0), r->o.block_size, r->o.n_ctx,
                                  r->max_blocks);
                goto fail;
            }
            if (fit < nb)
                nb = fit;
        }
        r->o.n_blocks = nb > INT32_MAX - 1 ? INT32_MAX - 1 : (int32_t)nb;
    }
    gen_plan_buckets(r);
    r->world = world;
    r->comm0 = world > 1 ? comms[0] : NULL;
    if ((st = gen_alloc_arrays(r)) || (st = gen_alloc_kv(r)) ||
        (world > 1 && (st = gen_peers_start(r, models, comms))))
        goto fail;
    *out = r;
    return KILN_OK;
fail:
    gen_free(r);
    return st;
}

void gen_free(gen_runner *r)
{
    if (!r)
        return;
    gen_peers_stop(r);
    if (r->tp_ready) {
        pthread_mutex_destroy(&r->tp_mu);
        pthread_cond_destroy(&r->tp_post);
        pthread_cond_destroy(&r->tp_done);
    }
    for (int32_t i = 0; r->seqs && i < r->o.max_seqs; i++) {
        kiln_free(r->seqs[i].tokens);
        sampler_free(r->seqs[i].smp);
        tok_stream_free(r->seqs[i].ts);
        buf_free(&r->seqs[i].pending);
    }
    gen_graphs_free(r->be, r->graphs);
    if (r->ids_dev)
        r->be->ops->free(r->be, r->ids_dev);
    if (r->counts_dev)
        r->be->ops->free(r->be, r->counts_dev);
    kiln_free(r->b_sample);
    kiln_free(r->ids_host);
    if (r->have_kvmem)
        r->be->ops->kv_free(r->be, &r->kvmem);
    kv_free(r->kv);
    kiln_free(r->seqs);
    kiln_free(r->b_tokens);
    kiln_free(r->b_pos);
    kiln_free(r->b_slots);
    kiln_free(r->b_seq_start);
    kiln_free(r->b_seq_len);
    kiln_free(r->b_tables);
    kiln_free(r->b_out_rows);
    kiln_free(r->b_out_slot);
    kiln_free(r->logits);
    kiln_free(r);
}

const gen_opts *gen_options(const gen_runner *r) { return &r->o; }

const gen_stats *gen_stats_of(const gen_runner *r) { return &r->stats; }

/* ---- one sequence ------------------------------------------------------------ */

static int32_t gen_max_gen(const gen_runner *r, const gen_request *rq)
{
    return rq->params.max_tokens ? rq->params.max_tokens : r->o.n_ctx - rq->n_prompt;
}

static kiln_status gen_check(const gen_runner *r, const gen_request *rq, int32_t i)
{
    kiln_status st;
    if (rq->n_prompt < 1 || !rq->prompt)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "request %d: empty prompt", i);
    for (int32_t k = 0; k < rq->n_prompt; k++)
        if (rq->prompt[k] < 0 || rq->prompt[k] >= r->vocab)
            return kiln_err_set(KILN_ERR_INVALID_ARG, "request %d: token %d at %d is outside "
                                "the vocabulary of %" PRId64, i, rq->prompt[k], k, r->vocab);
    if ((st = sampler_params_check(&rq->params)))
        return kiln_err_wrap(st, "request %d", i);
    if (rq->params.n_stop && !r->t)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "request %d: stop strings need a tokenizer", i);
    int64_t total = (int64_t)rq->n_prompt + rq->params.max_tokens;
    if (rq->params.max_tokens && total > r->o.n_ctx)
        return kiln_err_set(KILN_ERR_RANGE, "request %d: prompt of %d tokens + %d new tokens is "
                            "over the context of %d tokens", i, rq->n_prompt,
                            rq->params.max_tokens, r->o.n_ctx);
    if (!rq->params.max_tokens && rq->n_prompt >= r->o.n_ctx)
        return kiln_err_set(KILN_ERR_RANGE, "request %d: prompt of %d tokens leaves no room in "
                            "the context of %d tokens", i, rq->n_prompt, r->o.n_ctx);
    int32_t need = kv_blocks_for(r->kv, (int64_t)rq->n_prompt + gen_max_gen(r, rq));
    if (need > r->o.n_blocks)
        return kiln_err_set(KILN_ERR_RANGE, "request %d: needs %d KV blocks of %d tokens, the "
                            "pool has %d", i, need, r->o.block_size, r->o.n_blocks);
    return KILN_OK;
}

/* Admission of slot `slot` on a backend that samples: start its penalty
 * counts (made with the first request that has penalties; when they
 * cannot be made, steps with penalties sample on the host). */
static kiln_status gen_counts_reset(gen_runner *r, int32_t slot)
{
    const bk_ops *op = r->be->ops;
    const gen_seq *q = &r->seqs[slot];
    if (!op->sample || !r->ids_dev || !sampler_params_penalized(&q->rq->params))
        return KILN_OK;
    if (!r->counts_dev && !r->counts_failed) {
        size_t bytes = (size_t)r->o.max_seqs * (size_t)r->vocab * sizeof(uint16_t);
        if (op->alloc(r->be, bytes, (void **)&r->counts_dev)) {
            kiln_log(KILN_LOG_WARN, "generate: no room for %.1f MiB of penalty counts on the "
                     "device (%s); requests with penalties sample on the host",
                     (double)bytes / (1024.0 * 1024.0), kiln_last_error());
            r->counts_dev = NULL;
            r->counts_failed = true;
            return KILN_OK;
        }
    }
    if (!r->counts_dev)
        return KILN_OK;
    return op->sample_reset(r->be, r->counts_dev + (size_t)slot * (size_t)r->vocab, r->vocab,
                            q->rq->prompt, q->rq->n_prompt);
}

/* Take request rq into a free slot if the pool can promise its blocks;
 * *taken says whether it was. */
static kiln_status gen_admit(gen_runner *r, const gen_request *rq, int32_t idx, bool *taken)
{
    int32_t slot = -1, need = kv_blocks_for(r->kv, (int64_t)rq->n_prompt + gen_max_gen(r, rq));
    *taken = false;
    for (int32_t i = 0; i < r->o.max_seqs && slot < 0; i++)
        if (!r->seqs[i].rq)
            slot = i;
    if (slot < 0 || r->committed + need > r->o.n_blocks)
        return KILN_OK;
    gen_seq *q = &r->seqs[slot];
    kiln_status st = r->t ? tok_stream_open(r->t, true, &q->ts) : KILN_OK;
    if (st)
        return st;
    memcpy(q->tokens, rq->prompt, (size_t)rq->n_prompt * sizeof *q->tokens);
    q->rq = rq;
    q->req = idx;
    q->n_tokens = rq->n_prompt;
    q->n_fed = 0;
    q->n_gen = 0;
    q->max_gen = gen_max_gen(r, rq);
    q->need_blocks = need;
    buf_clear(&q->pending);
    sampler_reset(q->smp, &rq->params, rq->prompt, rq->n_prompt);
    q->t_admit = clock_now_ns();
    q->t_first = 0;
    r->committed += need;
    *taken = true;
    return gen_counts_reset(r, slot);
}

/* Free slot `slot` without telling anyone (finish or abort). */
static void gen_release(gen_runner *r, int32_t slot)
{
    gen_seq *q = &r->seqs[slot];
    kv_seq_release(r->kv, slot);
    r->committed -= q->need_blocks;
    tok_stream_free(q->ts);
    q->ts = NULL;
    q->rq = NULL;
}

/* Hand out what of pending is final (all of it when `last`, up to a stop
 * string match in any case); *stopped when a stop string matched. */
static kiln_status gen_emit(gen_seq *q, bool last, bool *stopped)
{
    size_t safe;
    const char *text = q->pending.len ? q->pending.data : "";
    int64_t at = sampler_stop_find(&q->rq->params, text, q->pending.len, &safe);
    kiln_status st = KILN_OK;
    *stopped = at >= 0;
    if (last && at < 0)
        safe = q->pending.len;
    if (safe && q->rq->on_text)
        st = q->rq->on_text(q->rq->user, q->req, q->pending.data, safe);
    memmove(q->pending.data, q->pending.data + safe, q->pending.len - safe);
    q->pending.len -= safe;
    if (q->pending.data)
        q->pending.data[q->pending.len] = '\0';
    return st;
}

static kiln_status gen_finish(gen_runner *r, int32_t slot, gen_stop_reason reason)
{
    gen_seq *q = &r->seqs[slot];
    kiln_status st = KILN_OK;
    bool stopped = false;
    if (reason != GEN_STOP_STRING && q->ts) {
        if (!(st = tok_stream_flush(q->ts, &q->pending)))
            st = gen_emit(q, true, &stopped);
        if (stopped)
            reason = GEN_STOP_STRING;
    }
    if (st)
        return st;
    uint64_t now = clock_now_ns();
    gen_summary s = {
        .n_prompt = q->rq->n_prompt,
        .n_gen = q->n_gen,
        .tokens = q->tokens + q->rq->n_prompt,
        .prompt_s = (double)(q->t_first - q->t_admit) * 1e-9,
        .gen_s = (double)(now - q->t_first) * 1e-9,
        .reason = reason,
    };
    s.prompt_tps = s.prompt_s > 0 ? s.n_prompt / s.prompt_s : 0;
    s.gen_tps = s.gen_s > 0 && s.n_gen > 1 ? (s.n_gen - 1) / s.gen_s : 0;
    const gen_request *rq = q->rq;
    int32_t req = q->req;
    gen_release(r, slot);
    if (rq->on_done)
        rq->on_done(rq->user, req, &s);
    return KILN_OK;
}

/* Act on `tok`, the next token of `slot`. */
static kiln_status gen_take(gen_runner *r, int32_t slot, int32_t tok)
{
    gen_seq *q = &r->seqs[slot];
    kiln_status st;
    bool stopped;

    sampler_accept(q->smp, tok);
    if (q->n_gen == 0)
        q->t_first = clock_now_ns();
    q->tokens[q->n_tokens++] = tok;
    q->n_gen++;
    if (gen_is_eos(r, tok) && !q->rq->params.ignore_eos)
        return gen_finish(r, slot, GEN_STOP_EOS);
    if (q->ts) {
        if ((st = tok_stream_push(q->ts, tok, &q->pending)) ||
            (st = gen_emit(q, false, &stopped)))
            return st;
        if (stopped)
            return gen_finish(r, slot, GEN_STOP_STRING);
    }
    if (q->n_gen >= q->max_gen)
        return gen_finish(r, slot, q->rq->params.max_tokens ? GEN_STOP_MAX_TOKENS
                                                              : GEN_STOP_CONTEXT);
    return KILN_OK;
}

/* ---- one step ------------------------------------------------------------- */

/* Put up to `room` unfed tokens of `slot` into the batch as sequence ns. */
static kiln_status gen_put_seq(gen_runner *r, int32_t slot, int32_t room, int32_t *rows,
                               int32_t *ns, int32_t *n_out)
{
    gen_seq *q = &r->seqs[slot];
    int32_t take = q->n_tokens - q->n_fed;
    if (take > room)
        take = room;
    kiln_status st = kv_seq_append(r->kv, slot, take);
    if (st)
        return kiln_err_wrap(KILN_ERR_INTERNAL, "request %d", q->req);
    r->b_seq_start[*ns] = *rows;
    for (int32_t i = 0; i < take; i++) {
        int32_t pos = q->n_fed + i;
        r->b_tokens[*rows] = q->tokens[pos];
        r->b_pos[*rows] = pos;
        r->b_slots[*rows] = kv_slot(r->kv, slot, pos);
        (*rows)++;
    }
    q->n_fed += take;
    r->b_seq_len[*ns] = q->n_fed;
    memcpy(r->b_tables + (size_t)*ns * (size_t)r->max_blocks, kv_seq_table(r->kv, slot),
           (size_t)r->max_blocks * sizeof(int32_t));
    if (q->n_fed == q->n_tokens) {
        r->b_out_rows[*n_out] = *rows - 1;
        r->b_out_slot[(*n_out)++] = slot;
    }
    (*ns)++;
    return KILN_OK;
}

/* Where the step's n_out tokens are chosen: bk argmax when every row is
 * greedy with no penalties, else bk sample where the backend has it (and
 * the penalty counts, if a row needs them), else the host. */
static gen_pick gen_step_pick(const gen_runner *r, int32_t n_out)
{
    bool greedy = true, pen = false;
    if (!r->ids_dev || n_out == 0)
        return GEN_PICK_HOST;
    for (int32_t i = 0; i < n_out; i++) {
        const sampler_params *p = &r->seqs[r->b_out_slot[i]].rq->params;
        bool pn = sampler_params_penalized(p);
        greedy &= sampler_params_greedy(p) && !pn;
        pen |= pn;
    }
    if (greedy)
        return GEN_PICK_ARGMAX;
    if (!r->be->ops->sample || (pen && !r->counts_dev))
        return GEN_PICK_HOST;
    return GEN_PICK_SAMPLE;
}

/* The sample rows of the step's n_out output rows, each with its draw. */
static void gen_sample_rows(gen_runner *r, int32_t n_out)
{
    for (int32_t i = 0; i < n_out; i++) {
        int32_t slot = r->b_out_slot[i];
        gen_seq *q = &r->seqs[slot];
        const sampler_params *p = &q->rq->params;
        uint64_t u53 = (uint64_t)(sampler_draw(q->smp) * 9007199254740992.0);
        r->b_sample[i] = (bk_sample_row){
            .temperature = p->temperature, .top_p = p->top_p, .min_p = p->min_p,
            .repetition_penalty = p->repetition_penalty,
            .presence_penalty = p->presence_penalty,
            .frequency_penalty = p->frequency_penalty, .top_k = p->top_k,
            .slot = sampler_params_penalized(p) ? slot : -1,
            .u_hi = (uint32_t)(u53 >> 32), .u_lo = (uint32_t)u53,
        };
    }
}

/* The smallest bucket holding ns rows, 0 when none does. */
static int32_t gen_bucket(const gen_runner *r, int32_t ns)
{
    for (int32_t i = 0; i < r->n_buckets; i++)
        if ((1 << i) >= ns)
            return 1 << i;
    return 0;
}

/* Pad the decode batch h (one token per sequence) to `bucket` rows with
 * rows of pad_block (invariant 6); every row is an output row. */
static void gen_pad(gen_runner *r, bk_batch_host *h, int32_t bucket)
{
    int32_t bs = r->o.block_size;
    for (int32_t s = h->n_seqs; s < bucket; s++) {
        r->b_tokens[s] = 0;
        r->b_pos[s] = 0;
        r->b_slots[s] = r->pad_block * bs;
        r->b_seq_start[s] = s;
        r->b_seq_len[s] = 1;
        for (int32_t j = 0; j < r->max_blocks; j++)
            r->b_tables[(size_t)s * (size_t)r->max_blocks + (size_t)j] = r->pad_block;
        r->b_out_rows[s] = s;
        r->b_sample[s] = (bk_sample_row){.top_p = 1.0f, .repetition_penalty = 1.0f,
                                         .slot = -1};
    }
    r->b_seq_start[bucket] = bucket;
    r->stats.padded_rows += bucket - h->n_seqs;
    h->n_tokens = h->n_seqs = h->n_out = bucket;
}

/* ceil(log2(longest context of b)), the graph key's context class. */
static int32_t gen_ctx_class(const gen_runner *r, int32_t n_seqs)
{
    int32_t longest = 1, c = 0;
    for (int32_t s = 0; s < n_seqs; s++)
        if (r->b_seq_len[s] > longest)
            longest = r->b_seq_len[s];
    while (c < GEN_GRAPH_CTX - 1 && (1 << c) < longest)
        c++;
    return c;
}

/* The forward of uploaded batch b with its tokens chosen on the backend
 * (pick: argmax or sample); with a bucket, through the bucket's graph once
 * warmed up (capture on the second step of a key). */
static kiln_status gen_forward_ids(gen_runner *r, const gen_fwd *f, const bk_batch *b,
                                   int32_t bucket, gen_pick pick)
{
    backend *be = model_backend(f->m);
    const bk_ops *op = be->ops;
    kiln_status st;
    if (!bucket || r->o.no_graphs)
        return model_forward_ids(f->m, b, f->kv, f->counts, f->ids);
    int32_t bi = 0;
    while ((1 << bi) < bucket)
        bi++;
    gen_graph *g = &f->graphs[pick][bi][gen_ctx_class(r, b->n_seqs)];
    if (g->state == GEN_GRAPH_READY) {
        st = op->graph_launch(be, g->g);
        if (st != KILN_ERR_RANGE) {
            f->stats->graph_replays += st == KILN_OK;
            return st;
        }
        /* the batch buffer moved: capture again */
        op->graph_free(be, g->g);
        g->g = NULL;
        g->state = GEN_GRAPH_WARM;
    }
    if (g->state != GEN_GRAPH_WARM) {
        if (g->state == GEN_GRAPH_NONE)
            g->state = GEN_GRAPH_WARM;
        return model_forward_ids(f->m, b, f->kv, f->counts, f->ids);
    }
    uint64_t t0 = clock_now_ns();
    if ((st = op->graph_begin(be)))
        return st;
    kiln_status fst = model_forward_ids(f->m, b, f->kv, f->counts, f->ids);
    st = op->graph_end(be, &g->g);
    f->stats->capture_s += (double)(clock_now_ns() - t0) * 1e-9;
    if (fst || st) {
        kiln_log(KILN_LOG_WARN, "generate: capturing the decode step of %d sequences failed "
                 "(%s); that batch size runs without a graph", bucket, kiln_last_error());
        g->state = GEN_GRAPH_FAILED;
        f->stats->graph_fallbacks++;
        return model_forward_ids(f->m, b, f->kv, f->counts, f->ids);
    }
    g->state = GEN_GRAPH_READY;
    f->stats->graphs_captured++;
    KILN_LOG_D("generate: captured the decode step of %d sequences (%.1f ms)", bucket,
               (double)(clock_now_ns() - t0) * 1e-6);
    st = op->graph_launch(be, g->g);
    f->stats->graph_replays += st == KILN_OK;
    return st;
}

/* ---- tensor-parallel peers -------------------------------------------------------- */

/* Peer p's part of the posted step: the same batch through its shard.
 * Where rank 0 copies logits out (host sampling) the peer reduces them to
 * ids instead: the collectives (one all-gather per output row) are the
 * same either way. */
static kiln_status gen_peer_step(gen_peer *p, const bk_batch_host *h, int32_t bucket,
                                 gen_pick pick)
{
    backend *be = model_backend(p->m);
    gen_fwd f = {p->m, &p->kvmem, NULL, p->ids_dev, p->graphs, &p->stats};
    bk_batch b;
    kiln_status st = be->ops->batch_upload(be, h, &b);
    if (!st)
        st = gen_forward_ids(p->r, &f, &b, bucket, pick == GEN_PICK_HOST ? GEN_PICK_ARGMAX : pick);
    if (!st)
        st = be->ops->sync(be);
    return st;
}

static void *gen_peer_main(void *arg)
{
    gen_peer *p = arg;
    gen_runner *r = p->r;
    pthread_mutex_lock(&r->tp_mu);
    for (;;) {
        while (!r->tp_quit && p->done == r->tp_seq)
            pthread_cond_wait(&r->tp_post, &r->tp_mu);
        if (r->tp_quit)
            break;
        uint64_t seq = r->tp_seq;
        const bk_batch_host *h = r->tp_h;
        int32_t bucket = r->tp_bucket;
        gen_pick pick = r->tp_pick;
        pthread_mutex_unlock(&r->tp_mu);
        kiln_status st = gen_peer_step(p, h, bucket, pick);
        if (st) {
            snprintf(p->msg, sizeof p->msg, "%s", kiln_last_error());
            comm_abort(p->c); /* rank 0 and the others stop waiting for this one */
        }
        pthread_mutex_lock(&r->tp_mu);
        p->st = st;
        p->done = seq;
        pthread_cond_broadcast(&r->tp_done);
    }
    pthread_mutex_unlock(&r->tp_mu);
    return NULL;
}

/* Hand the step (batch h, bucket, pick) to the peers; h stays unchanged
 * until gen_peers_wait. */
static void gen_peers_post(gen_runner *r, const bk_batch_host *h, int32_t bucket, gen_pick pick)
{
    if (r->world < 2)
        return;
    pthread_mutex_lock(&r->tp_mu);
    r->tp_h = h;
    r->tp_bucket = bucket;
    r->tp_pick = pick;
    r->tp_seq++;
    pthread_cond_broadcast(&r->tp_post);
    pthread_mutex_unlock(&r->tp_mu);
}

/* Wait for every peer to finish the posted step; st is rank 0's outcome
 * (a failure aborts the group first, so no peer waits for rank 0 in a
 * collective).  Returns st, else the first peer's failure, naming it. */
static kiln_status gen_peers_wait(gen_runner *r, kiln_status st)
{
    if (r->world < 2)
        return st;
    if (st)
        comm_abort(r->comm0);
    pthread_mutex_lock(&r->tp_mu);
    for (int32_t i = 0; i < r->world - 1; i++)
        while (r->peers[i].done != r->tp_seq)
            pthread_cond_wait(&r->tp_done, &r->tp_mu);
    pthread_mutex_unlock(&r->tp_mu);
    for (int32_t i = 0; i < r->world - 1 && !st; i++)
        if (r->peers[i].st)
            st = kiln_err_set(r->peers[i].st, "generate: tensor-parallel rank %d: %s",
                              r->peers[i].rank, r->peers[i].msg);
    return st;
}

/* Ranks 1 .. world - 1 of models: their KV memory and ids, then their
 * threads. */
static kiln_status gen_peers_start(gen_runner *r, kiln_model *const *models, comm *const *comms)
{
    kiln_status st;
    if (pthread_mutex_init(&r->tp_mu, NULL) || pthread_cond_init(&r->tp_post, NULL) ||
        pthread_cond_init(&r->tp_done, NULL))
        return kiln_err_set(KILN_ERR_INTERNAL, "generate: cannot make the rank locks");
    r->tp_ready = true;
    if (!(r->peers = kiln_calloc((size_t)r->world - 1, sizeof *r->peers)))
        return kiln_err_set(KILN_ERR_OOM, "generate: out of memory for %d ranks", r->world);
    for (int32_t i = 0; i < r->world - 1; i++) {
        gen_peer *p = &r->peers[i];
        backend *be = model_backend(models[i + 1]);
        bk_kv_cache shape;
        p->r = r;
        p->rank = i + 1;
        p->m = models[i + 1];
        p->c = comms[i + 1];
        model_kv_shape(p->m, r->o.n_blocks + (r->pad_block >= 0), r->o.block_size, &shape);
        if ((st = be->ops->kv_alloc(be, &shape, &p->kvmem)))
            return kiln_err_wrap(st, "generate: tensor-parallel rank %d: KV cache", p->rank);
        p->have_kvmem = true;
        if (be->ops->argmax &&
            (st = be->ops->alloc(be, (size_t)r->seq_cap * sizeof(int32_t), (void **)&p->ids_dev)))
            return kiln_err_wrap(st, "generate: tensor-parallel rank %d: ids", p->rank);
        if (!be->ops->argmax)
            return kiln_err_set(KILN_ERR_UNSUPPORTED, "generate: tensor parallelism needs bk "
                                "argmax on every rank (%s)", be->ops->name);
    }
    for (int32_t i = 0; i < r->world - 1; i++) {
        if (pthread_create(&r->peers[i].th, NULL, gen_peer_main, &r->peers[i]))
            return kiln_err_set(KILN_ERR_INTERNAL, "generate: cannot start rank %d", i + 1);
        r->peers[i].started = true;
    }
    return KILN_OK;
}

static void gen_peers_stop(gen_runner *r)
{
    if (!r->peers)
        return;
    pthread_mutex_lock(&r->tp_mu);
    r->tp_quit = true;
    pthread_cond_broadcast(&r->tp_post);
    pthread_mutex_unlock(&r->tp_mu);
    for (int32_t i = 0; i < r->world - 1; i++) {
        gen_peer *p = &r->peers[i];
        backend *be = p->m ? model_backend(p->m) : NULL;
        if (p->started)
            pthread_join(p->th, NULL);
        if (be)
            gen_graphs_free(be, p->graphs);
        if (p->ids_dev)
            be->ops->free(be, p->ids_dev);
        if (p->have_kvmem)
            be->ops->kv_free(be, &p->kvmem);
    }
    kiln_free(r->peers);
    r->peers = NULL;
}

static kiln_status gen_step(gen_runner *r)
{
    int32_t rows = 0, ns = 0, n_out = 0, mbt = r->o.max_batch_tokens;
    kiln_status st;

    /* decode tokens first (one per sequence), then prompt chunks */
    for (int pass = 0; pass < 2; pass++)
        for (int32_t s = 0; s < r->o.max_seqs && rows < mbt; s++) {
            const gen_seq *q = &r->seqs[s];
            bool decoding = q->rq && q->n_fed >= q->rq->n_prompt;
            if (!q->rq || q->n_fed >= q->n_tokens || decoding != (pass == 0))
                continue;
            if ((st = gen_put_seq(r, s, mbt - rows, &rows, &ns, &n_out)))
                return st;
        }
    r->b_seq_start[ns] = rows;
    KILN_ASSERT(ns > 0);

    bk_batch_host h = {
        .n_tokens = rows, .n_seqs = ns, .max_blocks = r->max_blocks, .n_out = n_out,
        .tokens = r->b_tokens, .positions = r->b_pos, .seq_start = r->b_seq_start,
        .seq_len = r->b_seq_len, .block_tables = r->b_tables, .slot_mapping = r->b_slots,
        .out_rows = r->b_out_rows,
    };
    bk_batch b;
    r->stats.steps++;
    gen_pick pick = gen_step_pick(r, n_out);
    if (pick != GEN_PICK_HOST) {
        /* tokens chosen on the backend; pure decode: pad to a bucket,
         * maybe run a graph */
        int32_t bucket = rows == ns && n_out == ns ? gen_bucket(r, ns) : 0;
        if (pick == GEN_PICK_SAMPLE) {
            gen_sample_rows(r, n_out);
            h.sample = r->b_sample;
            r->stats.device_sampled++;
        }
        if (bucket)
            gen_pad(r, &h, bucket);
        gen_fwd f = {r->m, &r->kvmem, r->counts_dev, r->ids_dev, r->graphs, &r->stats};
        gen_peers_post(r, &h, bucket, pick);
        uint64_t t0 = clock_now_ns();
        double cap0 = r->stats.capture_s;
        if (!(st = r->be->ops->batch_upload(r->be, &h, &b)))
            st = gen_forward_ids(r, &f, &b, bucket, pick);
        uint64_t t1 = clock_now_ns();
        if ((st = gen_peers_wait(r, st)) ||
            (st = r->be->ops->download(r->be, r->ids_host, r->ids_dev,
                                       (size_t)n_out * sizeof(int32_t))))
            return st;
        /* decode steps only (a prefill's tokens are not a step's pace, nor
         * is a capture) */
        if (rows == ns && r->stats.capture_s == cap0) {
            r->stats.issue_s += (double)(t1 - t0) * 1e-9;
            r->stats.step_s += (double)(clock_now_ns() - t0) * 1e-9;
            r->stats.timed_steps++;
        }
        r->stats.device_greedy += pick == GEN_PICK_ARGMAX;
        for (int32_t i = 0; i < n_out; i++)
            if ((st = gen_take(r, r->b_out_slot[i], r->ids_host[i])))
                return st;
        return KILN_OK;
    }
    gen_peers_post(r, &h, 0, GEN_PICK_HOST);
    if (!(st = r->be->ops->batch_upload(r->be, &h, &b)))
        st = model_forward(r->m, &b, &r->kvmem, r->logits);
    if ((st = gen_peers_wait(r, st)))
        return st;
    for (int32_t i = 0; i < n_out; i++) {
        int32_t slot = r->b_out_slot[i];
        int32_t tok = sampler_sample(r->seqs[slot].smp, r->logits + (size_t)i * (size_t)r->vocab);
        if ((st = gen_take(r, slot, tok)))
            return st;
    }
    return KILN_OK;
}

kiln_status gen_run(gen_runner *r, const gen_request *reqs, int32_t n)
{
    kiln_status st = KILN_OK;
    int32_t next = 0;

    if (n < 0 || (n > 0 && !reqs))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "generate: %d requests", n);
    for (int32_t i = 0; i < n; i++)
        if ((st = gen_check(r, &reqs[i], i)))
            return st;
    for (;;) {
        bool taken = true, live = false;
        while (next < n && taken && !st)
            if (!(st = gen_admit(r, &reqs[next], next, &taken)) && taken)
                next++;
        for (int32_t s = 0; s < r->o.max_seqs; s++)
            live |= r->seqs[s].rq != NULL;
        if (st || !live)
            break;
        if ((st = gen_step(r)))
            break;
    }
    /* an error leaves sequences behind: drop them */
    for (int32_t s = 0; s < r->o.max_seqs; s++)
        if (r->seqs[s].rq)
            gen_release(r, s);
    KILN_ASSERT(st || next == n);
    return st;
}

/* ---- embeddings ------------------------------------------------------------ */

typedef struct gen_doc {
    size_t off;     /* first id in the shared id list */
    int32_t len;
    int32_t idx;    /* input position */
} gen_doc;

static int gen_doc_cmp(const void *a, const void *b)
{
    const gen_doc *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Tokenize texts [first, first + n) onto ids, docs[i] locating text
 * first + i's tokens, truncated to max_len as gen_embed() describes. */
static kiln_status gen_embed_tokenize(const tokenizer *t, const char *const *texts,
                                      const size_t *lens, int32_t first, int32_t n,
                                      int32_t max_len, kiln_ids *ids, gen_doc *docs)
{
    for (int32_t i = 0; i < n; i++) {
        int32_t d = first + i;
        size_t start = ids->len;
        size_t len = lens ? lens[d] : strlen(texts[d]);
        /* the caller's limit replaces the tokenizer file's own truncation */
        kiln_status st = tok_encode_trunc(t, texts[d], len, true, max_len, ids);
        if (st)
            return kiln_err_wrap(st, "document %d", d);
        size_t got = ids->len - start;
        if (got == 0)
            return kiln_err_set(KILN_ERR_INVALID_ARG, "document %d: no tokens", d);
        docs[i] = (gen_doc){.off = start, .len = (int32_t)got, .idx = d};
    }
    return KILN_OK;
}

typedef struct gen_embed_bufs {
    int32_t *tokens, *pos;   /* (max_batch_tokens) */
    int32_t *seq_start;      /* (max_seqs + 1)     */
    int32_t *seq_len;        /* (max_seqs)         */
    float *emb[2];           /* (max_seqs, hidden) each: a batch's vectors where
                                the backend copies them out at once        */
    /* the batch of each slot whose vectors are still on their way */
    struct {
        const gen_doc *docs;
        int32_t nd;
        const float *emb;
    } pend[2];
} gen_embed_bufs;

/* Upload docs[0..nd) (which fit one batch) and queue their forward, its
 * vectors' copy to the host into slot `slot` (model_embed_start): the slot
 * is pending until gen_embed_collect. */
static kiln_status gen_embed_launch(kiln_model *m, const kiln_ids *ids, const gen_doc *docs,
                                    int32_t nd, gen_embed_bufs *w, int slot)
{
    backend *be = model_backend(m);
    int32_t rows = 0;
    kiln_status st;
    for (int32_t s = 0; s < nd; s++) {
        w->seq_start[s] = rows;
        w->seq_len[s] = docs[s].len;
        for (int32_t k = 0; k < docs[s].len; k++) {
            w->tokens[rows] = ids->data[docs[s].off + (size_t)k];
            w->pos[rows++] = k;
        }
    }
    w->seq_start[nd] = rows;
    bk_batch_host h = {.n_tokens = rows, .n_seqs = nd, .tokens = w->tokens,
                       .positions = w->pos, .seq_start = w->seq_start, .seq_len = w->seq_len};
    bk_batch b;
    if ((st = be->ops->batch_upload(be, &h, &b)) ||
        (st = model_embed_start(m, &b, slot, w->emb[slot], &w->pend[slot].emb)))
        return st;
    w->pend[slot].docs = docs;
    w->pend[slot].nd = nd;
    return KILN_OK;
}

/* Wait for the vectors of slot's batch (if one is pending) and scatter them
 * into out by document index. */
static kiln_status gen_embed_collect(kiln_model *m, gen_embed_bufs *w, int slot, int64_t hidden,
                                     gen_embed_stats *stats, float *out)
{
    const gen_doc *docs = w->pend[slot].docs;
    const int32_t nd = w->pend[slot].nd;
    kiln_status st;

    if (!docs)
        return KILN_OK;
    w->pend[slot].docs = NULL;
    if ((st = model_embed_wait(m, slot)))
        return st;
    for (int32_t s = 0; s < nd; s++)
        memcpy(out + (size_t)docs[s].idx * (size_t)hidden,
               w->pend[slot].emb + (size_t)s * (size_t)hidden, (size_t)hidden * sizeof(float));
    if (stats) {
        stats->batches++;
        for (int32_t i = 0; i < nd; i++)
            stats->tokens += docs[i].len;
    }
    return KILN_OK;
}

/* Settings of an embedding run with the defaults filled in. */
static kiln_status gen_embed_limits(const kiln_model *m, const gen_embed_opts *o, int32_t *mbt,
                                    int32_t *max_seqs, int32_t *max_len)
{
    const model_config *c = model_config_of(m);
    gen_embed_opts d = {0};
    if (!model_is_encoder(m))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "embed: %s is not an embedding (encoder) "
                            "model", c->arch_name);
    if (o)
        d = *o;
    *mbt = d.max_batch_tokens > 0 ? d.max_batch_tokens : 512;
    *max_seqs = d.max_seqs > 0 ? d.max_seqs : 64;
    int64_t len = d.max_len > 0 ? d.max_len : c->max_position_embeddings;
    if (c->max_position_embeddings > 0 && len > c->max_position_embeddings)
        len = c->max_position_embeddings;
    if (len <= 0 || len > *mbt)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "embed: documents of up to %" PRId64
                            " tokens do not fit batches of %d tokens", len, *mbt);
    *max_len = (int32_t)len;
    return KILN_OK;
}

static kiln_status gen_embed_run(kiln_model *m, const kiln_ids *ids, const gen_doc *docs,
                                 int32_t nd, gen_embed_bufs *w, int64_t hidden, int retries,
                                 gen_embed_stats *stats, float *out);

/* docs[0..nd) ran out of memory (st, its message set): run them as two
 * halves (gen_embed_run, `retries` - 1 more times down each branch), or
 * give st back when no retry is left or one document is.  Nothing may be
 * pending. */
static kiln_status gen_embed_halves(kiln_model *m, const kiln_ids *ids, const gen_doc *docs,
                                    int32_t nd, gen_embed_bufs *w, int64_t hidden, int retries,
                                    gen_embed_stats *stats, float *out, kiln_status st)
{
    if (retries == 0 || nd < 2)
        return st;
    kiln_log(KILN_LOG_WARN, "embed: a batch of %d documents ran out of memory (%s); running "
             "it as two halves", nd, kiln_last_error());
    if (stats)
        stats->oom_retries++;
    int32_t half = nd / 2;
    if ((st = gen_embed_run(m, ids, docs, half, w, hidden, retries - 1, stats, out)))
        return st;
    return gen_embed_run(m, ids, docs + half, nd - half, w, hidden, retries - 1, stats, out);
}

/* Run docs[0..nd) as one batch and collect it; when it runs out of memory,
 * as two halves (gen_embed_halves).  Nothing may be pending. */
static kiln_status gen_embed_run(kiln_model *m, const kiln_ids *ids, const gen_doc *docs,
                                 int32_t nd, gen_embed_bufs *w, int64_t hidden, int retries,
                                 gen_embed_stats *stats, float *out)
{
    kiln_status st = gen_embed_launch(m, ids, docs, nd, w, 0);
    if (st == KILN_OK)
        return gen_embed_collect(m, w, 0, hidden, stats, out);
    if (st != KILN_ERR_OOM)
        return st;
    return gen_embed_halves(m, ids, docs, nd, w, hidden, retries, stats, out, st);
}

static void gen_embed_bufs_free(gen_embed_bufs *w)
{
    kiln_free(w->tokens);
    kiln_free(w->pos);
    kiln_free(w->seq_start);
    kiln_free(w->seq_len);
    kiln_free(w->emb[0]);
    kiln_free(w->emb[1]);
    memset(w, 0, sizeof *w);
}

/* The batch arrays of one run (gen_embed_bufs_free them either way). */
static kiln_status gen_embed_bufs_alloc(const kiln_model *m, int32_t mbt, int32_t max_seqs,
                                        gen_embed_bufs *w)
{
    memset(w, 0, sizeof *w);
    w->tokens = kiln_calloc((size_t)mbt, sizeof(int32_t));
    w->pos = kiln_calloc((size_t)mbt, sizeof(int32_t));
    w->seq_start = kiln_calloc((size_t)max_seqs + 1, sizeof(int32_t));
    w->seq_len = kiln_calloc((size_t)max_seqs, sizeof(int32_t));
    for (int i = 0; i < 2; i++)
        w->emb[i] = kiln_calloc((size_t)max_seqs * (size_t)model_config_of(m)->hidden_size,
                                sizeof(float));
    if (!w->tokens || !w->pos || !w->seq_start || !w->seq_len || !w->emb[0] || !w->emb[1])
        return kiln_err_set(KILN_ERR_OOM, "embed: out of memory for batches of %d tokens", mbt);
    return KILN_OK;
}

/* Sort docs[0..n) by length, pack them into batches (w from
 * gen_embed_bufs_alloc with mbt and max_seqs) and run them. */
static kiln_status gen_embed_docs(kiln_model *m, const kiln_ids *ids, gen_doc *docs, int32_t n,
                                  int32_t mbt, int32_t max_seqs, gen_embed_bufs *w,
                                  gen_embed_stats *stats, float *out)
{
    const model_config *c = model_config_of(m);
    kiln_status st = KILN_OK;

    int slot = 0;

    /* Two batches in flight: batch k + 1 is queued before batch k's vectors
     * are waited for and scattered, so the device never waits for the host
     * between batches.  A batch that runs out of memory is run again as two
     * halves (gen_embed_halves), alone, once the one before is collected. */
    qsort(docs, (size_t)n, sizeof *docs, gen_doc_cmp);
    for (int32_t i = 0; i < n && !st;) {
        int32_t j = i, rows = 0;
        while (j < n && j - i < max_seqs && rows + docs[j].len <= mbt)
            rows += docs[j++].len;
        st = gen_embed_launch(m, ids, docs + i, j - i, w, slot);
        if (st == KILN_ERR_OOM) {
            /* keep the message of the failure across the collect */
            char msg[512];
            snprintf(msg, sizeof msg, "%s", kiln_last_error());
            if ((st = gen_embed_collect(m, w, slot ^ 1, c->hidden_size, stats, out)))
                break;
            st = kiln_err_set(KILN_ERR_OOM, "%s", msg);
            st = gen_embed_halves(m, ids, docs + i, j - i, w, c->hidden_size,
                                  GEN_EMBED_OOM_RETRIES, stats, out, st);
        } else if (st == KILN_OK) {
            st = gen_embed_collect(m, w, slot ^ 1, c->hidden_size, stats, out);
            slot ^= 1;
        }
        i = j;
    }
    kiln_status st2 = gen_embed_collect(m, w, slot ^ 1, c->hidden_size, stats, out);
    return st ? st : st2;
}

/* ---- embeddings with tokenization on other threads ------------------------
 *
 * gen_embed with tok_threads > 1: a producer thread tokenizes the documents
 * in chunks of GEN_EMBED_CHUNK, each chunk split over a pool of
 * tok_threads threads, into one of two slots; the calling thread runs the
 * model on the other slot's chunk meanwhile (sorted by length within the
 * chunk).  Slot states: FREE -> (producer fills) READY -> (caller runs)
 * FREE.  An error on either side stops both; the producer's message is
 * carried over to the calling thread.
 */

#define GEN_EMBED_CHUNK 2048

typedef struct gen_tok_part {
    kiln_ids ids;             /* this pool thread's tokens of the chunk       */
    kiln_status st;
    char msg[512];
} gen_tok_part;

typedef struct gen_pipe {
    const tokenizer *t;
    const char *const *texts;
    const size_t *lens;
    int32_t n, max_len;
    tpool *pool;
    gen_tok_part *parts;      /* (pool size)                                  */
    gen_doc *tmp;             /* (GEN_EMBED_CHUNK) docs of the chunk, offsets
                                 into their thread's part                      */
    int32_t *owner;           /* (GEN_EMBED_CHUNK) part of each doc            */
    struct {
        kiln_ids ids;
        gen_doc docs[GEN_EMBED_CHUNK];
        int32_t n;
        bool ready;
    } slot[2];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;                /* the caller gave up                           */
    kiln_status st;           /* the producer's error                         */
    char msg[512];
    int32_t chunk_first;      /* first document of the chunk being tokenized  */
} gen_pipe;

static void gen_pipe_range(void *ctx, size_t begin, size_t end, int thread_idx)
{
    gen_pipe *p = ctx;
    gen_tok_part *part = &p->parts[thread_idx];
    if (part->st)
        return;
    part->st = gen_embed_tokenize(p->t, p->texts, p->lens, p->chunk_first + (int32_t)begin,
                                  (int32_t)(end - begin), p->max_len, &part->ids,
                                  p->tmp + begin);
    if (part->st)
        snprintf(part->msg, sizeof part->msg, "%s", kiln_last_error());
    for (size_t i = begin; i < end; i++)
        p->owner[i] = thread_idx;
}

/* Tokenize documents [first, first + n) into slot s, in document order. */
static kiln_status gen_pipe_fill(gen_pipe *p, int s, int32_t first, int32_t n)
{
    int np = tpool_size(p->pool);
    kiln_status st = KILN_OK;
    for (int i = 0; i < np; i++) {
        ids_clear(&p->parts[i].ids);
        p->parts[i].st = KILN_OK;
    }
    p->chunk_first = first;
    tpool_parallel_for(p->pool, (size_t)n, 16, gen_pipe_range, p);
    for (int i = 0; i < np && !st; i++)
        if (p->parts[i].st)
            st = kiln_err_set(p->parts[i].st, "%s", p->parts[i].msg);
    ids_clear(&p->slot[s].ids);
    for (int32_t i = 0; i < n && !st; i++) {
        const gen_doc *d = &p->tmp[i];
        size_t off = p->slot[s].ids.len;
        st = ids_append(&p->slot[s].ids, p->parts[p->owner[i]].ids.data + d->off,
                        (size_t)d->len);
        p->slot[s].docs[i] = (gen_doc){.off = off, .len = d->len, .idx = d->idx};
    }
    p->slot[s].n = n;
    return st;
}

static void *gen_pipe_main(void *arg)
{
    gen_pipe *p = arg;
    for (int32_t c = 0, first = 0; first < p->n; c++, first += GEN_EMBED_CHUNK) {
        int s = c & 1;
        int32_t n = p->n - first < GEN_EMBED_CHUNK ? p->n - first : GEN_EMBED_CHUNK;
        pthread_mutex_lock(&p->mu);
        while (p->slot[s].ready && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        bool stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop)
            return NULL;
        kiln_status st = gen_pipe_fill(p, s, first, n);
        pthread_mutex_lock(&p->mu);
        if (st) {
            p->st = st;
            snprintf(p->msg, sizeof p->msg, "%s", kiln_last_error());
        } else {
            p->slot[s].ready = true;
        }
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        if (st)
            return NULL;
    }
    return NULL;
}

static void gen_pipe_free(gen_pipe *p)
{
    for (int i = 0; p->parts && i < tpool_size(p->pool); i++)
        ids_free(&p->parts[i].ids);
    ids_free(&p->slot[0].ids);
    ids_free(&p->slot[1].ids);
    kiln_free(p->parts);
    kiln_free(p->tmp);
    kiln_free(p->owner);
    tpool_free(p->pool);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    kiln_free(p);
}

static kiln_status gen_embed_pipelined(kiln_model *m, const tokenizer *t,
                                       const char *const *texts, const size_t *lens, int32_t n,
                                       int32_t mbt, int32_t max_seqs, int32_t max_len,
                                       int threads, gen_embed_stats *stats, float *out)
{
    gen_pipe *p = kiln_calloc(1, sizeof *p);
    pthread_t th;
    kiln_status st;

    if (!p)
        return kiln_err_set(KILN_ERR_OOM, "embed: out of memory");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->t = t;
    p->texts = texts;
    p->lens = lens;
    p->n = n;
    p->max_len = max_len;
    if ((st = tpool_create(threads, &p->pool))) {
        gen_pipe_free(p);
        return st;
    }
    p->parts = kiln_calloc((size_t)tpool_size(p->pool), sizeof *p->parts);
    p->tmp = kiln_calloc(GEN_EMBED_CHUNK, sizeof *p->tmp);
    p->owner = kiln_calloc(GEN_EMBED_CHUNK, sizeof *p->owner);
    if (!p->parts || !p->tmp || !p->owner) {
        gen_pipe_free(p);
        return kiln_err_set(KILN_ERR_OOM, "embed: out of memory");
    }
    gen_embed_bufs w = {0};
    if ((st = gen_embed_bufs_alloc(m, mbt, max_seqs, &w))) {
        gen_embed_bufs_free(&w);
        gen_pipe_free(p);
        return st;
    }
    if (pthread_create(&th, NULL, gen_pipe_main, p)) {
        gen_embed_bufs_free(&w);
        gen_pipe_free(p);
        return kiln_err_set(KILN_ERR_OOM, "embed: cannot start the tokenizer thread");
    }
    for (int32_t c = 0, first = 0; first < n && !st; c++, first += GEN_EMBED_CHUNK) {
        int s = c & 1;
        pthread_mutex_lock(&p->mu);
        while (!p->slot[s].ready && !p->st)
            pthread_cond_wait(&p->cv, &p->mu);
        if (!p->slot[s].ready)
            st = kiln_err_set(p->st, "%s", p->msg);
        pthread_mutex_unlock(&p->mu);
        if (!st)
            st = gen_embed_docs(m, &p->slot[s].ids, p->slot[s].docs, p->slot[s].n, mbt,
                                max_seqs, &w, stats, out);
        pthread_mutex_lock(&p->mu);
        p->slot[s].ready = false;
        p->stop = st != KILN_OK;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_join(th, NULL);
    gen_embed_bufs_free(&w);
    gen_pipe_free(p);
    return st;
}

kiln_status gen_embed(kiln_model *m, const tokenizer *t, const char *const *texts,
                      const size_t *lens, int32_t n, const gen_embed_opts *o, float *out)
{
    int32_t mbt, max_seqs, max_len;
    kiln_ids ids = {0};
    gen_doc *docs = NULL;
    kiln_status st = gen_embed_limits(m, o, &mbt, &max_seqs, &max_len);

    if (st || n <= 0)
        return st;
    if (o && o->tok_threads > 1)
        return gen_embed_pipelined(m, t, texts, lens, n, mbt, max_seqs, max_len, o->tok_threads,
                                   o->stats, out);
    if (!(docs = kiln_calloc((size_t)n, sizeof *docs)))
        return kiln_err_set(KILN_ERR_OOM, "embed: out of memory for %d documents", n);
    gen_embed_bufs w = {0};
    if (!(st = gen_embed_tokenize(t, texts, lens, 0, n, max_len, &ids, docs)) &&
        !(st = gen_embed_bufs_alloc(m, mbt, max_seqs, &w)))
        st = gen_embed_docs(m, &ids, docs, n, mbt, max_seqs, &w, o ? o->stats : NULL, out);
    gen_embed_bufs_free(&w);
    ids_free(&ids);
    kiln_free(docs);
    return st;
}

/* ---- data-parallel embeddings ---------------------------------------------- */

/* Documents a data-parallel engine takes at a time: small enough that a
 * faster engine takes more of them, large enough to fill its batches. */
static int32_t gen_dp_chunk(int32_t n, int32_t engines)
{
    int64_t c = (int64_t)n / (4 * (int64_t)engines);
    return (int32_t)(c < GEN_DP_MIN_CHUNK ? GEN_DP_MIN_CHUNK
                     : c > GEN_DP_MAX_CHUNK ? GEN_DP_MAX_CHUNK : c);
}

typedef struct gen_dp {
    kiln_model *const *models;
    const tokenizer *t;
    const char *const *texts;
    const size_t *lens;
    int32_t n, chunk;
    const gen_embed_opts *o;
    float *out;
    int64_t hidden;
    atomic_int next;             /* next chunk to hand out                   */
    atomic_bool failed;          /* an engine failed: the others stop        */
    pthread_mutex_t mu;          /* guards st, engine, msg                   */
    kiln_status st;
    int32_t engine;
    char msg[512];
} gen_dp;

typedef struct gen_dp_worker {
    gen_dp *dp;
    int32_t index;
    int32_t docs;
    gen_embed_stats stats;
} gen_dp_worker;

static void *gen_dp_main(void *arg)
{
    gen_dp_worker *w = arg;
    gen_dp *dp = w->dp;
    gen_embed_opts eo = *dp->o;
    eo.stats = &w->stats;
    while (!atomic_load(&dp->failed)) {
        int64_t first = (int64_t)atomic_fetch_add(&dp->next, 1) * dp->chunk;
        if (first >= dp->n)
            break;
        int32_t cnt = (int32_t)(dp->n - first < dp->chunk ? dp->n - first : dp->chunk);
        kiln_status st = gen_embed(dp->models[w->index], dp->t, dp->texts + first,
                                   dp->lens ? dp->lens + first : NULL, cnt, &eo,
                                   dp->out + first * dp->hidden);
        if (st) {
            pthread_mutex_lock(&dp->mu);
            if (!dp->st) {
                dp->st = st;
                dp->engine = w->index;
                snprintf(dp->msg, sizeof dp->msg, "%s", kiln_last_error());
            }
            pthread_mutex_unlock(&dp->mu);
            atomic_store(&dp->failed, true);
            break;
        }
        w->docs += cnt;
    }
    return NULL;
}

kiln_status gen_embed_parallel(kiln_model *const *models, int32_t n_models, const tokenizer *t,
                               const char *const *texts, const size_t *lens, int32_t n,
                               const gen_embed_opts *o, float *out, int32_t *docs_per_model)
{
    gen_embed_opts def = {0};
    if (n_models < 1 || !models)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "embed: %d engines", n_models);
    for (int32_t i = 0; i < n_models; i++)
        if (!models[i] || model_config_of(models[i])->hidden_size !=
                              model_config_of(models[0])->hidden_size)
            return kiln_err_set(KILN_ERR_INVALID_ARG, "embed: engine %d has no model or another "
                                "model's width", i);
    if (docs_per_model)
        memset(docs_per_model, 0, (size_t)n_models * sizeof *docs_per_model);
    if (!o)
        o = &def;
    if (n_models == 1) {
        kiln_status st = gen_embed(models[0], t, texts, lens, n, o, out);
        if (!st && docs_per_model)
            docs_per_model[0] = n > 0 ? n : 0;
        return st;
    }
    if (n <= 0)
        return KILN_OK;

    gen_dp dp = {.models = models, .t = t, .texts = texts, .lens = lens, .n = n,
                 .chunk = gen_dp_chunk(n, n_models), .o = o, .out = out,
                 .hidden = model_config_of(models[0])->hidden_size};
    atomic_init(&dp.next, 0);
    atomic_init(&dp.failed, false);
    pthread_mutex_init(&dp.mu, NULL);
    gen_dp_worker *w = kiln_calloc((size_t)n_models, sizeof *w);
    pthread_t *th = kiln_calloc((size_t)n_models, sizeof *th);
    int32_t started = 0;
    kiln_status st = KILN_OK;
    if (!w || !th) {
        st = kiln_err_set(KILN_ERR_OOM, "embed: out of memory for %d engines", n_models);
        goto done;
    }
    for (; started < n_models; started++) {
        w[started] = (gen_dp_worker){.dp = &dp, .index = started};
        if (pthread_create(&th[started], NULL, gen_dp_main, &w[started])) {
            atomic_store(&dp.failed, true);
            st = kiln_err_set(KILN_ERR_INTERNAL, "embed: cannot start engine thread %d",
                              started);
            break;
        }
    }
    for (int32_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    if (!st && dp.st)
        st = kiln_err_set(dp.st, "embed: engine %d of %d: %s", dp.engine, n_models, dp.msg);
    for (int32_t i = 0; i < started && o->stats; i++) {
        o->stats->batches += w[i].stats.batches;
        o->stats->tokens += w[i].stats.tokens;
        o->stats->oom_retries += w[i].stats.oom_retries;
    }
    for (int32_t i = 0; i < started && docs_per_model; i++)
        docs_per_model[i] = w[i].docs;
done:
    pthread_mutex_destroy(&dp.mu);
    kiln_free(w);
    kiln_free(th);
    return st;
}

kiln_status gen_embed_ids(kiln_model *m, const int32_t *ids, const int32_t *lens, int32_t n,
                          const gen_embed_opts *o, float *out)
{
    int32_t mbt, max_seqs, max_len;
    int64_t vocab = model_config_of(m)->vocab_size;
    kiln_ids view;
    gen_doc *docs = NULL;
    size_t off = 0;
    kiln_status st = gen_embed_limits(m, o, &mbt, &max_seqs, &max_len);

    if (st || n <= 0)
        return st;
    if (!ids || !lens)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "embed: no ids");
    if (!(docs = kiln_calloc((size_t)n, sizeof *docs)))
        return kiln_err_set(KILN_ERR_OOM, "embed: out of memory for %d documents", n);
    for (int32_t i = 0; i < n && !st; i++) {
        if (lens[i] <= 0)
            st = kiln_err_set(KILN_ERR_INVALID_ARG, "embed: document %d has no tokens", i);
        for (int32_t k = 0; k < lens[i] && !st; k++)
            if (ids[off + (size_t)k] < 0 || ids[off + (size_t)k] >= vocab)
                st = kiln_err_set(KILN_ERR_INVALID_ARG, "embed: document %d: token %d is "
                                  "outside the vocabulary of %" PRId64, i, ids[off + (size_t)k],
                                  vocab);
        /* a document over max_len keeps its first max_len ids */
        docs[i] = (gen_doc){.off = off, .len = lens[i] < max_len ? lens[i] : max_len, .idx = i};
        off += (size_t)(lens[i] > 0 ? lens[i] : 0);
    }
    view.data = (int32_t *)ids;
    view.len = off;
    view.cap = off;
    gen_embed_bufs w = {0};
    if (!st && !(st = gen_embed_bufs_alloc(m, mbt, max_seqs, &w)))
        st = gen_embed_docs(m, &view, docs, n, mbt, max_seqs, &w, o ? o->stats : NULL, out);
    gen_embed_bufs_free(&w);
    kiln_free(docs);
    return st;
}
