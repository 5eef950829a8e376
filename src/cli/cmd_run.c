/*
 * cmd_run.c - `kiln run`: generate text from a prompt, streamed to stdout;
 * and the pieces `kiln chat` shares with it (cli_gen.h).
 *
 *   kiln run -m MODEL -p PROMPT [-n N] [--chat] [--system TEXT] [options]
 *
 * The text goes to stdout as it is decoded; prompt and generation speed
 * go to stderr.  -p - reads the prompt from stdin.
 */
#include "cli/cli.h"
#include "cli/cli_gen.h"

#include "backend/comm.h"
#include "backend/comm_watch.h"
#ifdef KILN_HAVE_CUDA
#include "backend/cuda/cuda_device.h"
#endif
#ifdef KILN_HAVE_NCCL
#include "backend/cuda/comm_nccl.h"
#endif

#include "base/alloc.h"
#include "base/clock.h"
#include "base/hashrand.h"
#include "base/error.h"
#include "base/log.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef KILN_SOURCE_DIR
#define KILN_SOURCE_DIR "."
#endif

/* ---- shared options ------------------------------------------------------ */

/* --tp-timeout's default, seconds */
#define CLI_TP_WAIT_S 120

void cli_gen_init(cli_gen *g)
{
    memset(g, 0, sizeof *g);
    sampler_params_default(&g->sp);
    g->sp.max_tokens = 256;
    g->sp.stop = g->stops;
    g->max_batch_tokens = 512;
    g->tp = 1;
    g->tp_timeout = CLI_TP_WAIT_S;
    cli_device_init(&g->dev);
}

void cli_gen_usage(FILE *f)
{
    fprintf(f,
            "  -m, --model MODEL        GGUF file or Hugging Face model directory\n"
            "  -n, --max-tokens N       tokens to generate at most (default 256; 0: until\n"
            "                           the end of the context)\n"
            "  --temp T                 temperature (default 0: greedy)\n"
            "  --top-k K                keep the K most likely tokens (0: off)\n"
            "  --top-p P                keep the most likely tokens up to mass P (1: off)\n"
            "  --min-p P                drop tokens below P x the top probability (0: off)\n"
            "  --repeat-penalty R       divide (multiply) positive (negative) logits of\n"
            "                           tokens already in the sequence by R (1: off)\n"
            "  --presence-penalty P     subtract P from the logits of generated tokens\n"
            "  --frequency-penalty F    subtract F x count from them\n"
            "  --seed S                 seed of the sampler (default: from the clock)\n"
            "  --stop STR               end the text before STR (repeatable, up to %d)\n"
            "  --ignore-eos             do not stop at end-of-sequence tokens\n"
            "  --no-cuda-graphs         run decode steps eagerly (GPU)\n"
            "  --tensor-parallel-size N split the model over N ranks, threads of this\n"
            "                           process: CPU backends sharing the cores, or\n"
            "                           GPUs cuda:K..K+N-1 over NCCL (default 1)\n"
            "  --tp-launch threads|processes  (kiln run) the N ranks as threads of this\n"
            "                           process (default) or as N processes it starts,\n"
            "                           one GPU (or a share of the cores) each\n"
            "  --tp-rank R --tp-world N --tp-id FILE  (kiln run) this process is rank R\n"
            "                           of N processes started alike (one GPU each, or\n"
            "                           CPU processes of one host); rank 0 writes the\n"
            "                           group's id to FILE, the others read it; rank 0\n"
            "                           prints the text.  A rank that dies ends them all\n"
            "  --tp-timeout S           how long a rank waits for its peers to join\n"
            "                           (default 120)\n"
            "  --ctx N                  context length (default: model's, at most 4096)\n"
            "  --batch N                tokens per forward step (default 512)\n"
            "  --threads N              CPU threads (default: all cores)\n"
            "  --chat-template FILE     Jinja chat template instead of the model's\n",
            SAMPLER_MAX_STOPS);
    cli_device_usage(f);
}

static int cli_gen_bad(const char *opt, const char *val, const char *want)
{
    fprintf(stderr, "kiln: %s '%s': expected %s\n", opt, val, want);
    return -1;
}

static bool cli_parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool cli_parse_float(const char *s, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (!*s || *end || errno || !isfinite(v))
        return false;
    *out = v;
    return true;
}

int cli_gen_parse(cli_gen *g, int argc, char **argv, int *i)
{
    static const struct {
        const char *name;
        int kind;     /* 0 float, 1 int */
        size_t off;
    } num[] = {
        {"--temp", 0, offsetof(sampler_params, temperature)},
        {"--top-p", 0, offsetof(sampler_params, top_p)},
        {"--min-p", 0, offsetof(sampler_params, min_p)},
        {"--repeat-penalty", 0, offsetof(sampler_params, repetition_penalty)},
        {"--presence-penalty", 0, offsetof(sampler_params, presence_penalty)},
        {"--frequency-penalty", 0, offsetof(sampler_params, frequency_penalty)},
        {"--top-k", 1, offsetof(sampler_params, top_k)},
    };
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    long n;

    int dv = cli_device_parse(&g->dev, argc, argv, i);
    if (dv)
        return dv;
    if (!strcmp(a, "--ignore-eos")) {
        g->sp.ignore_eos = true;
        return 1;
    }
    if (!strcmp(a, "--no-cuda-graphs")) {
        g->no_graphs = true;
        return 1;
    }
    if (!strcmp(a, "--tensor-parallel-size") || !strcmp(a, "--tp-world") ||
        !strcmp(a, "--tp-rank")) {
        bool world = strcmp(a, "--tp-rank");
        if (!v || !cli_parse_int(v, world ? 1 : 0, world ? CLI_MAX_RANKS : CLI_MAX_RANKS - 1, &n))
            return cli_gen_bad(a, v ? v : "", world ? "a whole number from 1 to 16"
                                                    : "a whole number from 0 to 15");
        if (!strcmp(a, "--tensor-parallel-size"))
            g->tp = (int)n;
        else if (world)
            g->tp_world = (int)n;
        else
            g->tp_rank = (int)n;
        (*i)++;
        return 1;
    }
    if (!strcmp(a, "--tp-id")) {
        if (!v || !*v)
            return cli_gen_bad(a, v ? v : "", "a file path");
        g->tp_id = v;
        (*i)++;
        return 1;
    }
    if (!strcmp(a, "--tp-launch")) {
        if (!v || (strcmp(v, "threads") && strcmp(v, "processes")))
            return cli_gen_bad(a, v ? v : "", "threads or processes");
        g->tp_processes = !strcmp(v, "processes");
        (*i)++;
        return 1;
    }
    if (!strcmp(a, "--tp-timeout")) {
        float t;
        if (!v || !cli_parse_float(v, &t) || t < 0 || t > 86400)
            return cli_gen_bad(a, v ? v : "", "seconds from 0 to 86400");
        g->tp_timeout = t;
        (*i)++;
        return 1;
    }
    bool known = !strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "-n") ||
                 !strcmp(a, "--max-tokens") || !strcmp(a, "--seed") || !strcmp(a, "--stop") ||
                 !strcmp(a, "--ctx") || !strcmp(a, "--batch") || !strcmp(a, "--threads") ||
                 !strcmp(a, "--chat-template");
    for (size_t k = 0; k < KILN_ARRAY_LEN(num); k++)
        known |= !strcmp(a, num[k].name);
    if (!known)
        return 0;
    if (!v) {
        fprintf(stderr, "kiln: %s needs a value\n", a);
        return -1;
    }
    (*i)++;
    for (size_t k = 0; k < KILN_ARRAY_LEN(num); k++) {
        if (strcmp(a, num[k].name))
            continue;
        char *field = (char *)&g->sp + num[k].off;
        if (num[k].kind == 0 && !cli_parse_float(v, (float *)(void *)field))
            return cli_gen_bad(a, v, "a number");
        if (num[k].kind == 1) {
            if (!cli_parse_int(v, 0, INT32_MAX, &n))
                return cli_gen_bad(a, v, "a whole number >= 0");
            *(int32_t *)(void *)field = (int32_t)n;
        }
        return 1;
    }
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        g->model_path = v;
    } else if (!strcmp(a, "--chat-template")) {
        g->template_file = v;
    } else if (!strcmp(a, "-n") || !strcmp(a, "--max-tokens")) {
        if (!cli_parse_int(v, 0, INT32_MAX, &n))
            return cli_gen_bad(a, v, "a whole number >= 0");
        g->sp.max_tokens = (int32_t)n;
    } else if (!strcmp(a, "--seed")) {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (!*v || *end || errno || v[0] == '-')
            return cli_gen_bad(a, v, "a whole number >= 0");
        g->sp.seed = s;
        g->seed_set = true;
    } else if (!strcmp(a, "--stop")) {
        if (g->sp.n_stop >= SAMPLER_MAX_STOPS)
            return cli_gen_bad(a, v, "at most 16 stop strings");
        if (!*v || strlen(v) > SAMPLER_MAX_STOP_LEN)
            return cli_gen_bad(a, v, "1 to 256 bytes");
        g->stops[g->sp.n_stop++] = v;
    } else if (!strcmp(a, "--ctx")) {
        if (!cli_parse_int(v, 2, INT32_MAX, &n))
            return cli_gen_bad(a, v, "a whole number >= 2");
        g->n_ctx = (int32_t)n;
    } else if (!strcmp(a, "--batch")) {
        if (!cli_parse_int(v, 1, 1 << 20, &n))
            return cli_gen_bad(a, v, "a whole number from 1 to 1048576");
        g->max_batch_tokens = (int32_t)n;
    } else {
        if (!cli_parse_int(v, 0, 4096, &n))
            return cli_gen_bad(a, v, "a whole number from 0 to 4096");
        g->threads = (int)n;
    }
    return 1;
}

/* ---- loading -------------------------------------------------------------- */


/* --tp-rank R --tp-world N --tp-id FILE: this process is rank R of N
 * processes, all given the same model, prompt and options: one GPU each
 * (NCCL), or processes of one host on the CPU backend (comm_shm, through
 * FILE.shm).  Rank 0 makes the group's id - NCCL's, or random bytes on
 * the CPU - and writes it to FILE (atomically: a temporary file renamed);
 * the others wait for it (up to --tp-timeout).  Every rank registers with
 * the group's watch (comm_watch.h) before the group forms, so a rank that
 * dies or never comes ends the others.  Every rank then runs the same
 * requests through its own runner on its shard: the logits are gathered,
 * the same bits on every rank, so every rank draws the same tokens (the
 * seed, when not given, is made from the id, which every rank has); rank 0
 * alone prints them. */
#define CLI_TP_ID_BYTES 128
static kiln_status cli_gen_load_rank(cli_gen *g, const model_load_opts *base)
{
    uint8_t id[CLI_TP_ID_BYTES];
    char shm[4200];
    kiln_status st;
    bool cpu;

    if (!g->tp_id || g->tp_world < 2 || g->tp_rank >= g->tp_world || g->tp > 1)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "--tp-rank %d --tp-world %d: give both with "
                            "--tp-id FILE, rank below world, world 2 or more, and no "
                            "--tensor-parallel-size", g->tp_rank, g->tp_world);
    if ((st = cli_device_create(&g->dev, g->threads, &g->be)))
        return st;
    cpu = !strcmp(g->be->ops->name, "cpu");
#ifndef KILN_HAVE_NCCL
    if (!cpu)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "--tp-rank: this kiln was built without NCCL "
                            "(a group of GPU processes needs it; CPU processes do not)");
#endif
    snprintf(shm, sizeof shm, "%s.shm", g->tp_id);
    if (g->tp_rank == 0) {
        char tmp[4200];
        FILE *f;
        if (cpu) {
            FILE *r = fopen("/dev/urandom", "rb");
            size_t got = r ? fread(id, 1, sizeof id, r) : 0;
            if (r)
                fclose(r);
            if (got != sizeof id)
                return kiln_err_set(KILN_ERR_IO, "--tp-rank: /dev/urandom: %s",
                                    strerror(errno));
        } else {
#ifdef KILN_HAVE_NCCL
            if ((st = comm_nccl_unique_id(id)))
                return st;
#endif
        }
        uint64_t h = hr_hash_bytes(id, sizeof id);
        /* the CPU group's meeting file exists before anyone reads the id */
        if (cpu && (st = comm_shm_open(shm, h, 0, g->tp_world, g->tp_timeout, &g->tp_comm[0])))
            return st;
        snprintf(tmp, sizeof tmp, "%s.%ld.tmp", g->tp_id, (long)getpid());
        if (!(f = fopen(tmp, "wb")) || fwrite(id, 1, sizeof id, f) != sizeof id ||
            fclose(f) || rename(tmp, g->tp_id))
            return kiln_err_set(KILN_ERR_IO, "--tp-id %s: %s", g->tp_id, strerror(errno));
        g->tp_id_owner = true;
    } else {
        uint64_t t0 = clock_now_ns();
        for (;;) {
            FILE *f = fopen(g->tp_id, "rb");
            size_t got = f ? fread(id, 1, sizeof id, f) : 0;
            if (f)
                fclose(f);
            if (got == sizeof id)
                break;
            if ((double)(clock_now_ns() - t0) * 1e-9 > g->tp_timeout)
                return kiln_err_set(KILN_ERR_IO, "--tp-id %s: no group id from rank 0 after "
                                    "%.0f s", g->tp_id, g->tp_timeout);
            usleep(50 * 1000);
        }
    }
    /* the group's name: a hash of its id, the same on every rank */
    uint64_t h = hr_hash_bytes(id, sizeof id);
    comm_watch_opts wo;
    comm_watch_opts_default(&wo);
    wo.start_timeout_s = g->tp_timeout;
    /* every rank registers before the group forms: a peer that dies (or
     * never comes) ends the others, in ncclCommInitRank as in a collective */
    if ((st = comm_watch_start(g->tp_id, h, g->tp_rank, g->tp_world, &wo, &g->tp_watch)))
        return st;
    for (int r = 1; r < g->tp_world; r++) /* ranks this process started (--tp-launch) */
        if (g->tp_pids[r] > 0)
            comm_watch_expect(g->tp_watch, r, g->tp_pids[r]);
    if (cpu && g->tp_rank > 0)
        st = comm_shm_open(shm, h, g->tp_rank, g->tp_world, g->tp_timeout, &g->tp_comm[0]);
#ifdef KILN_HAVE_NCCL
    if (!cpu)
        st = comm_nccl_open(id, g->tp_rank, g->tp_world, g->be, &g->tp_comm[0]);
#endif
    if (st)
        return st;
    comm_watch_set_comm(g->tp_watch, g->tp_comm[0]);
    if (!g->seed_set)
        g->sp.seed = h;
    model_load_opts mo = *base;
    mo.tp_rank = g->tp_rank;
    mo.tp_world = g->tp_world;
    mo.tp_comm = g->tp_comm[0];
    return model_load(g->model_path, g->be, &mo, &g->m);
}

/* --tensor-parallel-size N: N shards of the model as ranks of one process:
 * on the CPU backend N backends sharing the cores, collectives through the
 * threads communicator; on CUDA the GPUs cuda:K..K+N-1, collectives
 * through NCCL.  Rank 0 goes to g->be, g->m. */
static kiln_status cli_gen_load_tp(cli_gen *g, const model_load_opts *base)
{
    backend *bes[CLI_MAX_RANKS] = {0};
    kiln_status st;
    if ((st = cli_device_create_n(&g->dev, g->threads, g->tp, bes)))
        return st;
    g->be = bes[0];
    for (int r = 1; r < g->tp; r++)
        g->tp_be[r] = bes[r];
    KILN_LOG_I("--tensor-parallel-size %d: %d ranks as threads on the %s backend", g->tp, g->tp,
               g->be->ops->name);
    if ((st = cli_device_comms(bes, g->tp, g->tp_comm)))
        return st;
    for (int r = 0; r < g->tp; r++) {
        model_load_opts mo = *base;
        mo.tp_rank = r;
        mo.tp_world = g->tp;
        mo.tp_comm = g->tp_comm[r];
        if ((st = model_load(g->model_path, bes[r], &mo, r ? &g->tp_m[r] : &g->m)))
            return kiln_err_wrap(st, "--tensor-parallel-size %d: rank %d", g->tp, r);
    }
    return KILN_OK;
}

kiln_status cli_gen_load(cli_gen *g, const char *cmd, bool chat)
{
    model_load_opts mo = {.max_batch_tokens = g->max_batch_tokens};
    gen_opts go = {.max_seqs = 1, .n_ctx = g->n_ctx, .max_batch_tokens = g->max_batch_tokens,
                   .no_graphs = g->no_graphs};
    kiln_status st;
    uint64_t t0 = clock_now_ns();

    if (!g->seed_set)
        g->sp.seed = clock_now_ns() ^ ((uint64_t)getpid() << 32);
    if ((st = sampler_params_check(&g->sp)))
        return st;
    if (g->tp_world || g->tp_id || g->tp_rank) {
        if ((st = cli_gen_load_rank(g, &mo)))
            return st;
    } else if (g->tp > 1) {
        if ((st = cli_gen_load_tp(g, &mo)))
            return st;
    } else if ((st = cli_device_create(&g->dev, g->threads, &g->be)) ||
               (st = model_load(g->model_path, g->be, &mo, &g->m))) {
        return st;
    }
    if ((st = tok_open(g->model_path, &g->t)))
        return st;
    if (model_is_encoder(g->m))
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "%s is an embedding model (%s); use kiln embed",
                            g->model_path, model_config_of(g->m)->arch_name);
    if (g->tp > 1) {
        kiln_model *models[CLI_MAX_RANKS];
        models[0] = g->m;
        for (int r = 1; r < g->tp; r++)
            models[r] = g->tp_m[r];
        if (!(st = cli_device_kv_budget(&g->dev, g->be, &go.kv_pool_bytes)))
            st = gen_create_tp(models, g->tp_comm, g->tp, g->t, &go, &g->run);
    } else if (!(st = cli_device_kv_budget(&g->dev, g->be, &go.kv_pool_bytes))) {
        st = gen_create(g->m, g->t, &go, &g->run);
    }
    if (st)
        return st;
    if (chat && (st = cli_template_load(g->model_path, g->template_file,
                                        model_config_of(g->m)->arch_name, &g->chat)))
        return st;
    KILN_LOG_I("%s: %s loaded in %.2f s (context %d tokens)", cmd, g->model_path,
               (double)(clock_now_ns() - t0) * 1e-9, gen_options(g->run)->n_ctx);
    return KILN_OK;
}

void cli_gen_free(cli_gen *g)
{
    chat_tmpl_free(g->chat);
    gen_free(g->run);
    tok_free(g->t);
    /* the watch (it checks the communicator), models, then the
     * communicators (an NCCL one uses its rank's stream), then the
     * backends */
    comm_watch_free(g->tp_watch);
    g->tp_watch = NULL;
    if (g->tp_id_owner) /* rank 0 made it; a later group gets a fresh one */
        remove(g->tp_id);
    g->tp_id_owner = false;
    model_free(g->m);
    for (int r = 0; r < CLI_MAX_RANKS; r++) {
        model_free(g->tp_m[r]);
        g->tp_m[r] = NULL;
    }
    for (int r = 0; r < CLI_MAX_RANKS; r++) {
        comm_free(g->tp_comm[r]);
        g->tp_comm[r] = NULL;
    }
    if (g->be)
        g->be->ops->destroy(g->be);
    for (int r = 0; r < CLI_MAX_RANKS; r++) {
        if (g->tp_be[r])
            g->tp_be[r]->ops->destroy(g->tp_be[r]);
        g->tp_be[r] = NULL;
    }
    g->chat = NULL;
    g->run = NULL;
    g->t = NULL;
    g->m = NULL;
    g->be = NULL;
}

kiln_status cli_gen_chat_ids(cli_gen *g, json_t *messages, kiln_ids *ids)
{
    kiln_buf text = {0};
    kiln_status st = chat_render(g->chat, messages, true, &text);
    if (!st)
        st = tok_encode(g->t, text.data ? text.data : "", text.len, false, ids);
    buf_free(&text);
    return st;
}

void cli_gen_report(const gen_summary *s)
{
    fprintf(stderr, "\nkiln: prompt %d tokens, %.3f s (%.1f tok/s); generated %d tokens, "
                    "%.3f s (%.1f tok/s); stop: %s\n",
            s->n_prompt, s->prompt_s, s->prompt_tps, s->n_gen, s->gen_s, s->gen_tps,
            gen_stop_reason_name(s->reason));
}

/* ---- kiln run ------------------------------------------------------------- */

static int run_usage(FILE *f)
{
    fprintf(f, "usage: kiln run -m MODEL -p PROMPT [-n N] [--chat] [--system TEXT] [options]\n\n"
               "Generate text from PROMPT (- reads stdin) and stream it to stdout; prompt\n"
               "and generation speed go to stderr.\n"
               "  -p, --prompt TEXT        the prompt\n"
               "  --chat                   wrap the prompt in the model's chat template as\n"
               "                           a user message\n"
               "  --system TEXT            system message (with --chat)\n");
    cli_gen_usage(f);
    return f == stdout ? 0 : 2;
}

static kiln_status run_on_text(void *user, int32_t req, const char *text, size_t len)
{
    (void)req;
    if (*(const bool *)user) /* a rank of a group but 0: the same text, not printed */
        return KILN_OK;
    if (fwrite(text, 1, len, stdout) != len || fflush(stdout))
        return kiln_err_set(KILN_ERR_IO, "stdout: %s", strerror(errno));
    return KILN_OK;
}

typedef struct run_out {
    bool quiet;           /* first: run_on_text reads it */
    gen_summary sum;
} run_out;

static void run_on_done(void *user, int32_t req, const gen_summary *s)
{
    (void)req;
    ((run_out *)user)->sum = *s;
}

/* ---- --tp-launch processes --------------------------------------------------- */

/* The ranks kiln run starts: ranks 1 .. n - 1 are child processes running
 * this binary with the same options as rank `--tp-rank r` of a group whose
 * id file lives in a private directory; this process becomes rank 0. */
typedef struct run_group {
    char dir[4096];                  /* "" until made                       */
    char id[4200];                   /* dir/id                              */
    pid_t kids[CLI_MAX_RANKS];       /* 0: none                             */
    int n;
} run_group;

/* Options kiln run passes to its ranks unchanged: all but those it sets
 * per rank (and their values). */
static bool run_rank_drops(const char *a)
{
    static const char *const per_rank[] = {"--device", "--tensor-parallel-size", "--tp-launch",
                                           "-p", "--prompt", "--threads", "--tp-timeout"};
    for (size_t k = 0; k < KILN_ARRAY_LEN(per_rank); k++)
        if (!strcmp(a, per_rank[k]))
            return true;
    return false;
}

static kiln_status run_spawn(cli_gen *g, int argc, char **argv, const char *prompt,
                             run_group *rg)
{
    const int n = g->tp;
    bool cuda = g->dev.kind == CLI_DEVICE_CUDA;
    int first = cuda ? g->dev.ordinal : 0;

    if (g->tp_world || g->tp_rank || g->tp_id)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "--tp-launch processes starts the ranks "
                            "itself: no --tp-rank/--tp-world/--tp-id with it");
#ifdef KILN_HAVE_CUDA
    if (g->dev.kind != CLI_DEVICE_CPU) {
        int count = 0;
        kiln_status st = cudev_count(&count);
        if (st && cuda)
            return st;
        if (!st && count > 0)
            cuda = true;
        if (cuda && first + n > count)
            return kiln_err_set(KILN_ERR_INVALID_ARG, "--tensor-parallel-size %d needs the GPUs "
                                "cuda:%d..cuda:%d; %d visible", n, first, first + n - 1, count);
    }
#else
    if (cuda)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "--device cuda: this kiln was built without "
                            "the CUDA backend (build with -DKILN_CUDA=ON)");
#endif
    /* each rank's share of the cores (its host threads on a GPU) */
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    int each = g->threads > 0 ? (g->threads + n - 1) / n : nc > n ? (int)(nc / n) : 1;

    const char *tmp = getenv("TMPDIR");
    snprintf(rg->dir, sizeof rg->dir, "%s/kiln-tp-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(rg->dir)) {
        int e = errno;
        rg->dir[0] = 0;
        return kiln_err_set(KILN_ERR_IO, "--tp-launch processes: a directory for the group: %s",
                            strerror(e));
    }
    snprintf(rg->id, sizeof rg->id, "%s/id", rg->dir);
    rg->n = n;

    /* argv of rank r: this binary, "run", the options kept, then the
     * per-rank ones; at most argc + 16 entries */
    char **av = kiln_calloc((size_t)argc + 20, sizeof *av);
    char dev[32], thr[16], rank[16], world[16], tmo[32];
    if (!av)
        return kiln_err_set(KILN_ERR_OOM, "--tp-launch processes: out of memory");
    int k = 0;
    av[k++] = "kiln";
    av[k++] = argv[0]; /* "run" */
    for (int i = 1; i < argc; i++) {
        if (run_rank_drops(argv[i])) {
            i++; /* and its value */
            continue;
        }
        av[k++] = argv[i];
    }
    int fixed = k;
    snprintf(thr, sizeof thr, "%d", each);
    snprintf(world, sizeof world, "%d", n);
    snprintf(tmo, sizeof tmo, "%g", g->tp_timeout);
    fflush(NULL);
    pid_t parent = getpid();
    for (int r = 1; r < n; r++) {
        k = fixed;
        if (cuda)
            snprintf(dev, sizeof dev, "cuda:%d", first + r);
        else
            snprintf(dev, sizeof dev, "cpu");
        snprintf(rank, sizeof rank, "%d", r);
        const char *extra[] = {"--device", dev,   "--threads",   thr, "--tp-rank", rank,
                               "--tp-world", world, "--tp-id", rg->id, "--tp-timeout", tmo,
                               "-p",       prompt};
        for (size_t e = 0; e < KILN_ARRAY_LEN(extra); e++)
            av[k++] = (char *)extra[e];
        av[k] = NULL;
        pid_t pid = fork();
        if (pid < 0) {
            kiln_free(av);
            return kiln_err_set(KILN_ERR_IO, "--tp-launch processes: rank %d: fork: %s", r,
                                strerror(errno));
        }
        if (pid == 0) {
            /* the rank ends with this process, whatever ends it */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            execv("/proc/self/exe", av);
            fprintf(stderr, "kiln: rank %d: exec: %s\n", r, strerror(errno));
            _exit(127);
        }
        rg->kids[r] = pid;
        g->tp_pids[r] = (long)pid;
    }
    kiln_free(av);
    KILN_LOG_I("--tensor-parallel-size %d: ranks 1..%d as processes on %s (group %s)", n, n - 1,
               cuda ? "GPUs" : "the CPU", rg->dir);
    /* this process: rank 0 */
    g->tp = 1;
    g->tp_rank = 0;
    g->tp_world = n;
    g->tp_id = rg->id;
    g->threads = each;
    if (cuda) {
        g->dev.kind = CLI_DEVICE_CUDA;
        g->dev.ordinal = first;
    } else {
        g->dev.kind = CLI_DEVICE_CPU;
    }
    return KILN_OK;
}

/* Wait for the ranks (after stopping them when rank 0 failed) and remove
 * the group's directory; KILN_ERR_DEVICE naming a rank that failed. */
static kiln_status run_reap(run_group *rg, bool failed)
{
    kiln_status st = KILN_OK;

    for (int r = 1; r < rg->n; r++)
        if (failed && rg->kids[r] > 0)
            kill(rg->kids[r], SIGTERM);
    for (int r = 1; r < rg->n; r++) {
        int status = 0;
        if (rg->kids[r] <= 0 || waitpid(rg->kids[r], &status, 0) != rg->kids[r])
            continue;
        if (!failed && !st && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
            st = kiln_err_set(KILN_ERR_DEVICE, "tensor-parallel rank %d (process %ld) %s %d", r,
                              (long)rg->kids[r], WIFEXITED(status) ? "exited with" : "killed by signal",
                              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
    if (rg->dir[0]) {
        char path[4300];
        for (int r = 0; r < rg->n; r++) {
            snprintf(path, sizeof path, "%s.rank%d", rg->id, r);
            remove(path);
        }
        snprintf(path, sizeof path, "%s.shm", rg->id);
        remove(path);
        remove(rg->id);
        rmdir(rg->dir);
    }
    return st;
}

/* The prompt's ids: raw text with BOS, or a one-turn conversation. */
static kiln_status run_prompt_ids(cli_gen *g, const char *prompt, const char *system,
                                  bool chat, kiln_ids *ids)
{
    if (!chat)
        return tok_encode(g->t, prompt, strlen(prompt), true, ids);
    json_t *msgs = json_array();
    if (system)
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", system));
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", prompt));
    kiln_status st = json_array_size(msgs) == (system ? 2u : 1u)
                         ? cli_gen_chat_ids(g, msgs, ids)
                         : kiln_err_set(KILN_ERR_INVALID_ARG, "prompt is not valid UTF-8");
    json_decref(msgs);
    return st;
}

int cmd_run(int argc, char **argv)
{
    cli_gen g;
    const char *prompt = NULL, *system = NULL;
    bool chat = false;
    kiln_buf in = {0};
    kiln_ids ids = {0};
    run_out out = {0};
    int rc;

    cli_gen_init(&g);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((rc = cli_gen_parse(&g, argc, argv, &i)) < 0)
            return 2;
        if (rc)
            continue;
        if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && i + 1 < argc)
            prompt = argv[++i];
        else if (!strcmp(a, "--system") && i + 1 < argc)
            system = argv[++i];
        else if (!strcmp(a, "--chat"))
            chat = true;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return run_usage(stdout);
        else {
            fprintf(stderr, "kiln run: unexpected argument '%s'\n", a);
            return run_usage(stderr);
        }
    }
    if (!g.model_path || !prompt) {
        fprintf(stderr, "kiln run: -m MODEL and -p PROMPT are required\n");
        return run_usage(stderr);
    }
    if (g.tp_processes && g.tp < 2) {
        fprintf(stderr, "kiln run: --tp-launch processes needs --tensor-parallel-size 2 or "
                        "more\n");
        return run_usage(stderr);
    }
    kiln_status st = KILN_OK;
    run_group rg = {0};
    if (!strcmp(prompt, "-")) {
        if (!(st = cli_read_all(stdin, &in)))
            st = buf_append(&in, "", 0);
        prompt = in.data;
    }
    if (!st && g.tp_processes)
        st = run_spawn(&g, argc, argv, prompt, &rg);
    if (!st && !(st = cli_gen_load(&g, "run", chat)) &&
        !(st = run_prompt_ids(&g, prompt, system, chat, &ids))) {
        out.quiet = g.tp_rank > 0;
        gen_request rq = {.prompt = ids.data, .n_prompt = (int32_t)ids.len, .params = g.sp,
                          .on_text = run_on_text, .on_done = run_on_done, .user = &out};
        if (!(st = gen_run(g.run, &rq, 1))) {
            fflush(stdout);
            if (!out.quiet)
                cli_gen_report(&out.sum);
        }
        if (!st && g.tp_watch)
            st = comm_watch_finish(g.tp_watch);
    }
    if (st) /* the message of rank 0's own failure, before the ranks are stopped */
        rc = cli_fail();
    cli_gen_free(&g);
    if (rg.n) {
        kiln_status rs = run_reap(&rg, st != KILN_OK);
        if (!st && rs)
            rc = cli_fail();
        st = st ? st : rs;
    }
    if (!st)
        rc = 0;
    ids_free(&ids);
    buf_free(&in);
    return rc;
}
