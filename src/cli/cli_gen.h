/*
 * cli_gen.h - what `kiln run` and `kiln chat` share: the generation
 * options, loading model + tokenizer + runner + chat template, and turning
 * a conversation into prompt ids.  Implemented in cmd_run.c.
 *
 * Chat templates: found by cli_template_load (cli.h), as `kiln chat-format`
 * finds them: --chat-template FILE, else the model's own, else the template
 * of its architecture from kiln's data directory (Gemma 3's GGUF carries
 * none).
 */
#ifndef KILN_CLI_GEN_H
#define KILN_CLI_GEN_H

#include "backend/backend.h"
#include "base/buf.h"
#include "cli/cli.h"
#include "engine/generate.h"
#include "engine/sampler.h"
#include "model/model.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

typedef struct cli_gen {
    /* options */
    const char *model_path;
    const char *template_file;     /* --chat-template                           */
    int threads;                   /* --threads; 0: all cores                   */
    cli_device dev;                /* --device, --dtype                         */
    bool no_graphs;                /* --no-cuda-graphs                          */
    int32_t n_ctx;                 /* --ctx; 0: min(model positions, 4096)      */
    int32_t max_batch_tokens;      /* --batch                                   */
    sampler_params sp;             /* temperature 0 (greedy) unless --temp      */
    int tp;                        /* --tensor-parallel-size (1)                */
    int tp_rank, tp_world;         /* --tp-rank/--tp-world: this process is one
                                      rank of a group of processes (world 0:
                                      not)                                     */
    const char *tp_id;             /* --tp-id FILE: the group's id              */
    double tp_timeout;             /* --tp-timeout: waits for peers, seconds    */
    bool tp_processes;             /* --tp-launch processes (kiln run)          */
    const char *stops[SAMPLER_MAX_STOPS];
    bool seed_set;
    /* loaded by cli_gen_load, freed by cli_gen_free; be, m are rank 0's */
    backend *be;
    kiln_model *m;
    backend *tp_be[CLI_MAX_RANKS];    /* ranks 1 .. tp - 1 (rank 0: be, m)         */
    kiln_model *tp_m[CLI_MAX_RANKS];
    struct comm *tp_comm[CLI_MAX_RANKS];
    struct comm_watch *tp_watch;   /* --tp-rank: the peers' liveness (owned)   */
    bool tp_id_owner;              /* rank 0 wrote --tp-id's file: removes it   */
    long tp_pids[CLI_MAX_RANKS];   /* --tp-launch processes: the ranks started  */
    tokenizer *t;
    gen_runner *run;
    chat_tmpl *chat;
} cli_gen;

/* Defaults: greedy, 256 new tokens, batches of 512 tokens. */
void cli_gen_init(cli_gen *g);

/* Consume the option at argv[*i] (and its value) if it is one of the
 * shared ones, advancing *i past its value.  Returns 1 when consumed, 0
 * when not a shared option, -1 after printing why a value is bad. */
int cli_gen_parse(cli_gen *g, int argc, char **argv, int *i);

/* Help text of the shared options. */
void cli_gen_usage(FILE *f);

/* Load backend, model, tokenizer and runner (max_seqs 1), and the chat
 * template when `chat`.  Errors as model_load / tok_open / gen_create /
 * chat_tmpl_load; everything loaded is freed by cli_gen_free either way. */
kiln_status cli_gen_load(cli_gen *g, const char *cmd, bool chat);
void cli_gen_free(cli_gen *g);

/* Render `messages` (a JSON list, borrowed) with the chat template, an
 * assistant turn opened, and append its ids (the template writes BOS
 * itself) to *ids. */
kiln_status cli_gen_chat_ids(cli_gen *g, json_t *messages, kiln_ids *ids);

/* "prompt 12 tokens, 0.05 s (240.0 tok/s); generated ..." to stderr. */
void cli_gen_report(const gen_summary *s);

#endif /* KILN_CLI_GEN_H */
