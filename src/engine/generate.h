/*
 * generate.h - running requests through a model: a batch runner for text
 * generation and one for embeddings.
 *
 * gen_run() takes several generation requests (prompt ids + sampling
 * settings), prefills them together (one bk_batch holding every prompt,
 * long prompts cut into chunks of max_batch_tokens), then decodes all live
 * sequences together one token per step; a step may mix the decode tokens
 * of some sequences with the prompt chunks of others.  Up to max_seqs
 * requests run at once; when one finishes, the next waiting one is taken
 * in.  When every output row of a step samples greedily (no penalties)
 * and the backend has argmax, the tokens are chosen on the backend and
 * only ids are copied out; such steps that are pure decode are padded to
 * a batch-size bucket and, on backends with graph capture, captured once
 * per (bucket, context class) after a warm-up step and replayed.  Text reaches the caller as it becomes final (tok_stream: whole
 * UTF-8 characters, stop strings held back until they can no longer
 * match), then a summary with timings and the reason the request stopped.
 *
 * A runner owns the KV cache (block pool + the backend's memory for it),
 * one sampler per sequence slot, and every per-step array; a step
 * allocates nothing.  One thread uses a runner at a time.
 */
#ifndef KILN_ENGINE_GENERATE_H
#define KILN_ENGINE_GENERATE_H

#include "engine/sampler.h"
#include "kiln.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum gen_stop_reason {
    GEN_STOP_NONE = 0,
    GEN_STOP_EOS,         /* an end-of-sequence or end-of-turn token          */
    GEN_STOP_STRING,      /* a stop string matched (it is not in the text)    */
    GEN_STOP_MAX_TOKENS,  /* the request's max_tokens were generated          */
    GEN_STOP_CONTEXT,     /* max_tokens 0 and the context is full             */
} gen_stop_reason;

/* "eos", "stop", "length", "context", "none". */
const char *gen_stop_reason_name(gen_stop_reason r);

typedef struct gen_summary {
    int32_t n_prompt;
    int32_t n_gen;            /* tokens sampled, an ending EOS token included   */
    const int32_t *tokens;    /* (n_gen) borrowed, valid during the callback    */
    double prompt_s;          /* request taken in -> its first token sampled    */
    double gen_s;             /* first token -> last token                      */
    double prompt_tps;        /* n_prompt / prompt_s                            */
    double gen_tps;           /* (n_gen - 1) / gen_s: tokens from decode steps  */
    gen_stop_reason reason;
} gen_summary;

/* Text of request `req` that is final; returning an error stops gen_run,
 * which returns that error. */
typedef kiln_status (*gen_text_fn)(void *user, int32_t req, const char *text, size_t len);
/* Request `req` is finished. */
typedef void (*gen_done_fn)(void *user, int32_t req, const gen_summary *s);

typedef struct gen_request {
    const int32_t *prompt;    /* (n_prompt) borrowed until gen_run returns       */
    int32_t n_prompt;         /* >= 1                                            */
    sampler_params params;    /* max_tokens 0: until EOS or the context is full  */
    gen_text_fn on_text;      /* may be NULL                                     */
    gen_done_fn on_done;      /* may be NULL                                     */
    void *user;
} gen_request;

/* Most end-of-sequence ids a runner tracks. */
#define GEN_MAX_EOS 8

typedef struct gen_opts {
    int32_t max_seqs;         /* sequences in flight; 0: 8                           */
    int32_t n_ctx;            /* tokens per sequence; 0: min(model positions, 4096)  */
    int32_t block_size;       /* KV block tokens (8/16/32); 0: 16                    */
    int32_t n_blocks;         /* KV pool; 0: max_seqs full contexts                  */
    int32_t max_batch_tokens; /* as given to model_load; 0: 512                      */
    int32_t n_eos;            /* 0: gen_default_eos()                                */
    int32_t eos[GEN_MAX_EOS];
    bool no_graphs;           /* never capture decode steps (--no-cuda-graphs)       */
    size_t kv_pool_bytes;     /* with n_blocks 0: the pool is the blocks these bytes
                                 hold, at most max_seqs full contexts (the memory
                                 --gpu-memory-utilization leaves); 0: no limit       */
} gen_opts;

/* Decode steps are captured as CUDA graphs per batch-size bucket. */
#define GEN_GRAPH_BUCKETS 9   /* 1, 2, 4, ..., 256 sequences                        */

/* What the runner did, counted over its life (gen_stats_of). */
typedef struct gen_stats {
    int64_t steps;            /* forward steps                                       */
    int64_t device_greedy;    /* steps whose tokens were chosen on the backend (bk
                                 argmax: every row greedy)                           */
    int64_t device_sampled;   /* steps whose tokens were drawn on the backend (bk
                                 sample: some row samples or has penalties)          */
    int64_t graphs_captured;  /* graphs made (one per bucket and context class)      */
    int64_t graph_replays;    /* steps run by replaying a graph                      */
    int64_t graph_fallbacks;  /* captures that failed: that key runs eager (logged)  */
    int64_t padded_rows;      /* rows added to fill a bucket                         */
    double capture_s;         /* time spent capturing and instantiating              */
    /* Decode steps (one token a sequence) whose tokens were chosen on the
     * backend, timed on the host:
     * issue_s from the batch upload until the forward is queued (eager:
     * every kernel launch; a graph: its launch), step_s until the ids are
     * back.  issue_s near step_s: the host's launches set the pace.
     * Steps that captured a graph are not counted. */
    int64_t timed_steps;
    double issue_s, step_s;
} gen_stats;

typedef struct gen_runner gen_runner;
typedef struct comm comm; /* backend/comm.h */

/* The ids that end a sequence: the model's and the tokenizer's EOS, and
 * the end-of-turn tokens of chat models that the vocabulary has as special
 * tokens (<end_of_turn> for Gemma, <|eot_id|> Llama 3, <|im_end|> Qwen,
 * <|end|>, <|endoftext|>).  Writes up to GEN_MAX_EOS ids, returns how many. */
int32_t gen_default_eos(const kiln_model *m, const tokenizer *t, int32_t *ids);

/* A runner for decoder model m (borrowed; must outlive the runner) and its
 * tokenizer t (borrowed; NULL: token ids only - no text callbacks, no stop
 * strings, EOS from the model config or o->eos).  Allocates the KV pool on the model's backend.  Errors:
 * KILN_ERR_INVALID_ARG (an encoder model, settings out of range: max_seqs
 * over max_batch_tokens, n_ctx over the model's positions), KILN_ERR_OOM
 * (the message gives the KV bytes asked for; or kv_pool_bytes cannot hold
 * one full context), backend errors.  *out owned:
 * gen_free(). */
kiln_status gen_create(kiln_model *m, const tokenizer *t, const gen_opts *o, gen_runner **out);

/* gen_create over a tensor-parallel group: models[r] is rank r's shard
 * (model_load_opts.tp_rank/tp_world/tp_comm, each on its own backend;
 * borrowed), comms[r] its communicator (borrowed; NULL when world is 1).
 * Rank 0 runs on the calling thread and samples; ranks 1 .. world - 1
 * mirror each of its steps on threads of their own, each with its own KV
 * memory (its kv heads), ids and graphs, and their tokens - the same as
 * rank 0's, from the same gathered logits - are not read.  A failure on
 * any rank aborts the group (comm_abort), so no rank is left waiting, and
 * is returned naming the rank; the runner's group cannot run again after
 * that.  world 1 is gen_create.  Errors as gen_create, and
 * KILN_ERR_INVALID_ARG (world < 1, a missing model, a communicator of
 * another rank or world). */
kiln_status gen_create_tp(kiln_model *const *models, comm *const *comms, int32_t world,
                          const tokenizer *t, const gen_opts *o, gen_runner **out);
void gen_free(gen_runner *r); /* NULL is a no-op */

/* The settings in use (defaults filled in). */
const gen_opts *gen_options(const gen_runner *r);

/* Counters of the runner (borrowed, live). */
const gen_stats *gen_stats_of(const gen_runner *r);

/* Run requests reqs[0..n) to completion.  Every request is checked before
 * anything runs: KILN_ERR_RANGE naming the request when its prompt plus
 * max_tokens exceeds n_ctx or needs more KV blocks than the pool has,
 * KILN_ERR_INVALID_ARG for an empty prompt, a token id outside the
 * vocabulary or bad sampling settings.  Later errors (the backend, a
 * callback) stop the run and are returned; requests not finished then get
 * no on_done.  The runner is reusable after any return. */
kiln_status gen_run(gen_runner *r, const gen_request *reqs, int32_t n);

/* ---- embeddings ------------------------------------------------------------ */

/* What an embedding run did (gen_embed_opts.stats). */
typedef struct gen_embed_stats {
    int64_t batches;          /* forward steps                                       */
    int64_t tokens;           /* tokens embedded                                     */
    int64_t oom_retries;      /* batches that ran out of memory and were halved      */
} gen_embed_stats;

/* Times a batch that runs out of memory is halved before the error stands. */
#define GEN_EMBED_OOM_RETRIES 3

typedef struct gen_embed_opts {
    int32_t max_batch_tokens; /* as given to model_load; 0: 512                      */
    int32_t max_seqs;         /* documents per batch; 0: 64                          */
    int32_t max_len;          /* tokens per document; 0: the model's positions       */
    gen_embed_stats *stats;   /* counters added to when set                          */
    int32_t tok_threads;      /* > 1: tokenize on a thread of its own with a pool of
                                 this many threads, chunk by chunk, while the model
                                 runs the previous chunk; else first, on the caller  */
} gen_embed_opts;

/* Embed texts[0..n) (lens[i] bytes each; lens NULL: NUL-terminated) with
 * encoder model m into out (n, hidden_size) f32, in input order.  Each
 * text is tokenized with its special tokens ([CLS] ... [SEP]); one longer
 * than max_len keeps its first max_len - 1 tokens and its final special
 * token.  Documents are sorted by length and packed into batches of at
 * most max_batch_tokens tokens; out-of-memory batches are halved as
 * gen_embed_ids says.  Errors: KILN_ERR_INVALID_ARG (a decoder
 * model, max_len over max_batch_tokens), tokenizer and model errors,
 * KILN_ERR_OOM. */
kiln_status gen_embed(kiln_model *m, const tokenizer *t, const char *const *texts,
                      const size_t *lens, int32_t n, const gen_embed_opts *o, float *out);

/* Chunks of documents handed to data-parallel engines (gen_embed_parallel). */
#define GEN_DP_MIN_CHUNK 256
#define GEN_DP_MAX_CHUNK 8192

/* gen_embed over n_models engines of one encoder (models[i] on its own
 * backend, e.g. one per GPU; borrowed), each on a thread of its own:
 * documents are handed out in chunks (GEN_DP_MIN_CHUNK..GEN_DP_MAX_CHUNK,
 * about a quarter of an engine's share) to whichever engine is free, so a
 * faster engine takes more, and written to out in input order.  o applies
 * to every engine (o->tok_threads each; o->stats gets the sum);
 * docs_per_model (n_models, or NULL) gets how many documents each engine
 * embedded.  One engine is gen_embed itself.  The first engine error stops
 * the others and is returned, naming the engine.  Errors as gen_embed, and
 * KILN_ERR_INVALID_ARG (no engines, models of different widths). */
kiln_status gen_embed_parallel(kiln_model *const *models, int32_t n_models, const tokenizer *t,
                               const char *const *texts, const size_t *lens, int32_t n,
                               const gen_embed_opts *o, float *out, int32_t *docs_per_model);

/* gen_embed of documents already tokenized: document i is lens[i] ids of
 * `ids`, back to back (special tokens included); one longer than max_len
 * keeps its first max_len ids.
 * A batch that runs out of memory (KILN_ERR_OOM: a larger batch buffer,
 * device memory) is run again as two halves, up to GEN_EMBED_OOM_RETRIES
 * times for a batch, each counted in stats.  Errors as gen_embed, and
 * KILN_ERR_INVALID_ARG for an id outside the vocabulary or an empty
 * document. */
kiln_status gen_embed_ids(kiln_model *m, const int32_t *ids, const int32_t *lens, int32_t n,
                          const gen_embed_opts *o, float *out);

#endif /* KILN_ENGINE_GENERATE_H */
