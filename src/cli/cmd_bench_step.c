/*
 * cmd_bench_step.c - `kiln bench latency` and `kiln bench prefill`: whole
 * model steps on any backend (the GPU first), at a real model's shape with
 * --dummy-weights (no file needed) or on a model file.
 *
 *   kiln bench latency (-m MODEL | --dummy-weights --config FILE)
 *         [--device D] [--dtype bf16|f16] [--batch B] [--prompt-tokens P]
 *         [--gen-tokens G] [--repeat R] [--no-peer] [--peer-python PY] [--out DIR]
 *   kiln bench prefill (same) [--batch B] [--prompt-tokens P]
 *
 * latency: B sequences of P arbitrary prompt tokens prefilled together,
 * then G tokens each decoded greedily together through the paged KV
 * cache (the static batch runner: gen_run with max_seqs B).  Reports the
 * decode rate (tokens/s over the whole batch, steps 2..G) and the
 * per-token latency (ms per decode step).  Ceiling: the decode roofline,
 * the device-to-device copy bandwidth measured in the same run (read +
 * write counted) over the bytes a step reads (model_stats.step_bytes plus
 * every sequence's K/V at its mean context).
 *
 * prefill: one step of B x P prompt tokens (the last token of each
 * sequence gets logits).  Reports TFLOP/s: 2 x the blocks' matrix
 * elements per token, causal attention's 4 x heads x head_dim x P(P+1)/2
 * per layer and sequence, and the lm_head of one row per sequence.
 * Ceiling: the rate of an 8192^3 matmul through the same backend's matmul
 * path, measured in the same run.
 *
 * Decode steps run as CUDA graphs (gen_run's buckets) unless
 * --no-cuda-graphs; the records carry the runner's graph counters.
 *
 * The peer is Hugging Face transformers (bench/peers/hf_peer.py) on the
 * same config with random weights, the same dtype, batch and lengths, in
 * the same call.  On the CPU backend the ceilings are the host's
 * streaming read bandwidth and no GEMM peak.
 */
#include "cli/bench.h"
#include "cli/cli.h"

#include "backend/backend.h"
#include "backend/comm.h"
#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"
#include "engine/generate.h"
#include "format/hf_config.h"
#include "model/model.h"
#include "telemetry/nvml.h"
#include "telemetry/report.h"
#ifdef KILN_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef KILN_SOURCE_DIR
#define KILN_SOURCE_DIR "."
#endif

#define STEP_MAX_BATCH 1024
#define STEP_MAX_RUNS 100
#define STEP_COPY_BYTES ((size_t)1 << 30)
#define STEP_GEMM_N 8192

typedef bench_opts step_opts;

static int step_usage(FILE *f)
{
    fprintf(f, "usage: kiln bench latency|prefill (-m MODEL | --dummy-weights --config FILE)\n"
               "           [--device D] [--dtype bf16|f16] [--batch B] [--prompt-tokens P]\n"
               "           [--gen-tokens G] [--repeat R] [--threads N] [--no-cuda-graphs]\n"
               "           [--temp T] [--top-p P] [--tensor-parallel-size N]\n"
               "           [--no-peer] [--peer-python PY] [--out DIR]\n\n"
               "latency: B sequences of P prompt tokens, then G tokens each decoded\n"
               "  together (defaults 1, 128, 256): decode tokens/s and ms per step\n"
               "  against the decode roofline (measured copy bandwidth / bytes a step\n"
               "  reads), beside Hugging Face transformers on the same shape.\n"
               "  --temp T, --top-p P: kiln samples instead of decoding greedily (on the\n"
               "  device where the backend can; the peer stays greedy).\n"
               "prefill: one step of B x P prompt tokens (defaults 1 x 2048): TFLOP/s\n"
               "  against the measured matmul peak of the same backend.\n"
               "--tensor-parallel-size N: the model split over N ranks (GPUs from the\n"
               "  --device ordinal over NCCL, or CPU backends); the roofline and the\n"
               "  matmul peak are N devices'; no peer.\n"
               "--dummy-weights --config FILE: random weights at the shape of a\n"
               "  config.json (bench/configs/), made on the device; no model file.\n");
    cli_device_usage(f);
    return f == stdout ? 0 : 2;
}

static int embm_usage(FILE *f);

/* Which modes take an option. */
#define BO_GEN 1      /* generate    */
#define BO_EMB 2      /* embed       */
#define BO_LAT 4      /* latency     */
#define BO_PRE 8      /* prefill     */
#define BO_EMM 16     /* embed-model */
#define BO_ALL 31

int bench_parse_opts(const char *mode, int argc, char **argv, bench_opts *o)
{
    int m = !strcmp(mode, "generate")  ? BO_GEN
            : !strcmp(mode, "embed")   ? BO_EMB
            : !strcmp(mode, "latency") ? BO_LAT
            : !strcmp(mode, "prefill") ? BO_PRE
                                       : BO_EMM;
    int (*usage)(FILE *) = m & (BO_GEN | BO_EMB) ? bench_usage
                           : m == BO_EMM          ? embm_usage
                                                  : step_usage;
    memset(o, 0, sizeof *o);
    cli_device_init(&o->dev);
    if (m & (BO_GEN | BO_EMB))
        o->dev.kind = CLI_DEVICE_CPU; /* these measure the CPU unless --device says */
    o->out_dir = KILN_SOURCE_DIR "/bench/results";
    o->batch = 1;
    o->prompt_tokens = m == BO_PRE ? 2048 : 128;
    o->gen_tokens = m == BO_LAT ? 256 : m == BO_GEN ? 64 : 1;
    o->temperature = 0.0f;
    o->top_p = 1.0f;
    o->repeat = 3;
    o->dp = 1;
    o->tp = 1;
    o->peer = true;
    o->docs = m == BO_EMB ? 1000 : 20000;
    o->min_len = 16;
    o->max_len = 256;
    o->batch_tokens = 16384;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n = 0;
        int dv;
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return usage(stdout);
        if (m != BO_GEN && (dv = cli_device_parse(&o->dev, argc, argv, &i)) != 0) {
            if (dv < 0)
                return usage(stderr);
            continue;
        }
        if (!strcmp(a, "--no-peer")) {
            o->peer = false;
            continue;
        }
        if (m != BO_GEN && !strcmp(a, "--dummy-weights")) {
            o->dummy = true;
            continue;
        }
        if (m & (BO_LAT | BO_PRE) && !strcmp(a, "--no-cuda-graphs")) {
            o->no_graphs = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "kiln bench %s: unexpected argument '%s'\n", mode, a);
            return usage(stderr);
        }
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            o->model = v;
        else if (m != BO_GEN && !strcmp(a, "--config"))
            o->config = v;
        else if (m == BO_EMB && !strcmp(a, "--tokenizer"))
            o->tokenizer = v;
        else if (!strcmp(a, "--out"))
            o->out_dir = v;
        else if (!strcmp(a, "--peer-python"))
            bench_peer_python = v;
        else if (!strcmp(a, "--threads") && bench_int(v, 0, 4096, &n))
            o->threads = (int)n;
        else if (!strcmp(a, "--repeat") && bench_int(v, 1, STEP_MAX_RUNS, &n))
            o->repeat = (int)n;
        else if (m == BO_EMB && !strcmp(a, "--tok-threads") && bench_int(v, 0, 1024, &n))
            o->tok_threads = (int)n;
        else if (m & (BO_LAT | BO_PRE) && !strcmp(a, "--tensor-parallel-size") &&
                 bench_int(v, 1, CLI_MAX_RANKS, &n))
            o->tp = (int)n;
        else if (m == BO_EMB && !strcmp(a, "--data-parallel-size") &&
                 bench_int(v, 1, BENCH_MAX_DP, &n))
            o->dp = (int)n;
        else if (m == BO_LAT && !strcmp(a, "--temp") && bench_float(v, 0.0, 100.0, &o->temperature))
            ;
        else if (m == BO_LAT && !strcmp(a, "--top-p") && bench_float(v, 1e-6, 1.0, &o->top_p))
            ;
        else if (m & (BO_LAT | BO_PRE) && !strcmp(a, "--batch") &&
                 bench_int(v, 1, STEP_MAX_BATCH, &n))
            o->batch = (int32_t)n;
        else if (m & (BO_GEN | BO_LAT | BO_PRE) && !strcmp(a, "--prompt-tokens") &&
                 bench_int(v, 1, 1 << 20, &n))
            o->prompt_tokens = (int32_t)n;
        else if (m & (BO_GEN | BO_LAT) && !strcmp(a, "--gen-tokens") &&
                 bench_int(v, 2, 1 << 20, &n))
            o->gen_tokens = (int32_t)n;
        else if (m & (BO_EMB | BO_EMM) && !strcmp(a, "--docs") && bench_int(v, 1, 1 << 24, &n))
            o->docs = (int32_t)n;
        else if (m == BO_EMM && !strcmp(a, "--min-len") && bench_int(v, 1, 1 << 16, &n))
            o->min_len = (int32_t)n;
        else if (m == BO_EMM && !strcmp(a, "--max-len") && bench_int(v, 1, 1 << 16, &n))
            o->max_len = (int32_t)n;
        else if (m == BO_EMM && !strcmp(a, "--batch-tokens") && bench_int(v, 1, 1 << 20, &n))
            o->batch_tokens = (int32_t)n;
        else {
            fprintf(stderr, "kiln bench %s: bad option or value: %s %s\n", mode, a, v);
            return usage(stderr);
        }
    }
    if (o->dummy ? (!o->config || o->model || (m == BO_EMB && !o->tokenizer)) : !o->model) {
        fprintf(stderr, "kiln bench %s: give -m MODEL, or --dummy-weights with --config FILE%s\n",
                mode, m == BO_EMB ? " and --tokenizer SRC" : "");
        return usage(stderr);
    }
    if (m == BO_EMM && (o->min_len > o->max_len || o->max_len > o->batch_tokens)) {
        fprintf(stderr, "kiln bench %s: need min-len <= max-len <= batch-tokens\n", mode);
        return usage(stderr);
    }
    if (!o->tokenizer)
        o->tokenizer = o->model;
    if (m & (BO_GEN | BO_EMB) && o->threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        o->threads = nc > 0 && nc <= 4096 ? (int)nc : 1;
    }
    return -1;
}

/* ---- the run's environment ------------------------------------------------ */

typedef struct step_env {
    backend *be;              /* rank 0's (the only one without tensor parallelism) */
    kiln_model *m;
    backend *tp_be[CLI_MAX_RANKS];   /* ranks 1 .. tp - 1                         */
    kiln_model *tp_m[CLI_MAX_RANKS];
    comm *comms[CLI_MAX_RANKS];
    int tp;
    gen_runner *run;
    model_stats ms;
    char shape[256];
    char device[300], driver[200];
    double copy_gbs;          /* CUDA: device-to-device, read + write; CPU: host read */
    double gemm_tflops;       /* CUDA only; 0 on the CPU                              */
    int32_t *ids;             /* (batch, prompt_tokens)                               */
} step_env;

static void step_env_free(step_env *e)
{
    kiln_free(e->ids);
    gen_free(e->run);
    /* models, then the communicators (an NCCL one uses its rank's stream),
     * then the backends */
    model_free(e->m);
    for (int r = 0; r < CLI_MAX_RANKS; r++)
        model_free(e->tp_m[r]);
    for (int r = 0; r < CLI_MAX_RANKS; r++)
        comm_free(e->comms[r]);
    if (e->be)
        e->be->ops->destroy(e->be);
    for (int r = 0; r < CLI_MAX_RANKS; r++)
        if (e->tp_be[r])
            e->tp_be[r]->ops->destroy(e->tp_be[r]);
}

kiln_status bench_device_ceilings(backend *be, int threads, bench_device *out)
{
    memset(out, 0, sizeof *out);
    report_cpu_name(out->device, sizeof out->device);
    snprintf(out->driver, sizeof out->driver, "host");
#ifdef KILN_HAVE_CUDA
    if (bk_is_cuda(be)) {
        const cudev_info *di = bk_cuda_info(be);
        char drv[96];
        kiln_status st;
        if (!nvml_driver_version(drv, sizeof drv))
            snprintf(drv, sizeof drv, "unknown");
        snprintf(out->device, sizeof out->device, "%s", di->name);
        snprintf(out->driver, sizeof out->driver, "%s (CUDA %d.%d)", drv,
                 di->driver_version / 1000, di->driver_version % 1000 / 10);
        if ((st = bk_cuda_copy_gbs(be, STEP_COPY_BYTES, &out->copy_gbs)) ||
            (st = bk_cuda_gemm_tflops(be, STEP_GEMM_N, &out->gemm_tflops)))
            return kiln_err_wrap(st, "bench: measuring the device's ceilings");
        out->gpu = true;
        return KILN_OK;
    }
#endif
    out->copy_gbs = bench_read_gbs(threads > 0 ? threads : be->threads);
    return KILN_OK;
}

/* Device, driver and the ceilings, measured before the model is loaded
 * (the copy needs 2 GiB free). */
static kiln_status step_ceilings(step_env *e, const step_opts *o)
{
    bench_device bd;
    kiln_status st = bench_device_ceilings(e->be, o->threads, &bd);
    snprintf(e->device, sizeof e->device, "%s", bd.device);
    snprintf(e->driver, sizeof e->driver, "%s", bd.driver);
    e->copy_gbs = bd.copy_gbs;
    e->gemm_tflops = bd.gemm_tflops;
    return st;
}

kiln_status bench_load_model(const bench_opts *o, backend *be, const model_load_opts *mo,
                             kiln_model **m, char *shape, size_t cap)
{
    model_config cfg;
    kiln_status st;

    *m = NULL;
    bench_model_name(o->dummy ? o->config : o->model, shape, cap);
    if (!o->dummy)
        return model_load(o->model, be, mo, m);
    if ((st = hf_config_load(o->config, &cfg)))
        return st;
    /* the sentence-transformers pipelines of the encoder shapes benched
     * (MiniLM, bge) end in Normalize; a bare config.json does not say so */
    if (cfg.arch == MCFG_ARCH_BERT)
        cfg.normalize = true;
    return model_load_dummy(&cfg, 0x6b696c6e, be, mo, m);
}

static kiln_status step_setup(step_env *e, const step_opts *o, int32_t n_ctx)
{
    int64_t tokens = (int64_t)o->batch * o->prompt_tokens;
    model_load_opts mo = {.max_batch_tokens = (int32_t)(tokens < 16384 ? tokens : 16384)};
    kiln_status st;

    if (mo.max_batch_tokens < o->batch)
        mo.max_batch_tokens = o->batch;
    e->tp = o->tp > 1 ? o->tp : 1;
    backend *bes[CLI_MAX_RANKS] = {0};
    if ((st = cli_device_create_n(&o->dev, o->threads, e->tp, bes)))
        return st;
    e->be = bes[0];
    for (int r = 1; r < e->tp; r++)
        e->tp_be[r] = bes[r];
    /* the ceilings of one device (rank 0's) */
    if ((st = step_ceilings(e, o)) || (e->tp > 1 && (st = cli_device_comms(bes, e->tp, e->comms))))
        return st;
    for (int r = 0; r < e->tp; r++) {
        model_load_opts mr = mo;
        if (e->tp > 1)
            mr.tp_rank = r, mr.tp_world = e->tp, mr.tp_comm = e->comms[r];
        if ((st = bench_load_model(o, bes[r], &mr, r ? &e->tp_m[r] : &e->m, e->shape,
                                   sizeof e->shape)))
            return st;
    }
    const model_config *c = model_config_of(e->m);
    if (model_is_encoder(e->m))
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "bench: %s is an encoder; use kiln bench embed",
                            e->shape);
    model_stats_of(e->m, &e->ms);
    gen_opts go = {.max_seqs = o->batch, .n_ctx = n_ctx, .max_batch_tokens = mo.max_batch_tokens,
                   .no_graphs = o->no_graphs};
    kiln_model *models[CLI_MAX_RANKS] = {e->m};
    for (int r = 1; r < e->tp; r++)
        models[r] = e->tp_m[r];
    if ((st = cli_device_kv_budget(&o->dev, e->be, &go.kv_pool_bytes)) ||
        (st = gen_create_tp(models, e->tp > 1 ? e->comms : NULL, e->tp, NULL, &go, &e->run)))
        return st;
    if (!(e->ids = kiln_calloc((size_t)tokens, sizeof *e->ids)))
        return kiln_err_set(KILN_ERR_OOM, "bench: out of memory for %lld prompt ids",
                            (long long)tokens);
    /* valid but arbitrary ids (a fixed xorshift stream): a step's cost does
     * not depend on which ids it carries */
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (int64_t k = 0; k < tokens; k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        e->ids[k] = (int32_t)(x % (uint64_t)c->vocab_size);
    }
    return KILN_OK;
}

/* The CUDA matmul planner's counts over a span of the run (now minus
 * *since; since NULL: the whole process): plans made, cuBLASLt heuristic
 * calls, checks of a bucket's algorithm and tunings, with their host time.  NULL on
 * other backends. */
static json_t *step_planner_json(const backend *be, const void *since)
{
#ifdef KILN_HAVE_CUDA
    if (bk_is_cuda(be)) {
        bk_cuda_mm_stats s, z = {0};
        bk_cuda_mm_stats_get(be, &s);
        if (since)
            z = *(const bk_cuda_mm_stats *)since;
        json_t *j = json_object();
        json_object_set_new(j, "plans", json_integer(s.plans - z.plans));
        json_object_set_new(j, "heuristic_calls", json_integer(s.heuristic_calls -
                                                               z.heuristic_calls));
        json_object_set_new(j, "heuristic_ms", json_real((s.heuristic_s - z.heuristic_s) * 1e3));
        json_object_set_new(j, "checks", json_integer(s.checks - z.checks));
        json_object_set_new(j, "check_misses", json_integer(s.check_misses - z.check_misses));
        json_object_set_new(j, "check_ms", json_real((s.check_s - z.check_s) * 1e3));
        json_object_set_new(j, "tuned", json_integer(s.tuned - z.tuned));
        json_object_set_new(j, "tuned_away", json_integer(s.tuned_away - z.tuned_away));
        json_object_set_new(j, "tune_ms", json_real((s.tune_s - z.tune_s) * 1e3));
        return j;
    }
#endif
    (void)be;
    (void)since;
    return NULL;
}

/* Settings every record of the run carries. */
static json_t *step_settings(const step_env *e, const step_opts *o)
{
    const model_config *c = model_config_of(e->m);
    json_t *s = json_object();
    json_object_set_new(s, "backend", json_string(e->be->ops->name));
    json_object_set_new(s, "dtype", json_string(dtype_name(e->be->ops->act_dtype)));
    json_object_set_new(s, "weights", json_string(o->dummy ? "dummy (random, on the device)"
                                                           : o->model));
    json_object_set_new(s, "batch", json_integer(o->batch));
    json_object_set_new(s, "prompt_tokens", json_integer(o->prompt_tokens));
    json_object_set_new(s, "gen_tokens", json_integer(o->gen_tokens));
    json_object_set_new(s, "repeat", json_integer(o->repeat));
    json_object_set_new(s, "tensor_parallel", json_integer(e->tp));
    json_object_set_new(s, "temperature", json_real(o->temperature));
    json_object_set_new(s, "top_p", json_real(o->top_p));
    const gen_stats *gs = gen_stats_of(e->run);
    json_object_set_new(s, "cuda_graphs", json_boolean(!o->no_graphs && gs->graphs_captured > 0));
    json_t *g = json_object();
    json_object_set_new(g, "captured", json_integer(gs->graphs_captured));
    json_object_set_new(g, "replays", json_integer(gs->graph_replays));
    json_object_set_new(g, "fallbacks", json_integer(gs->graph_fallbacks));
    json_object_set_new(g, "capture_s", json_real(gs->capture_s));
    json_object_set_new(g, "steps", json_integer(gs->steps));
    json_object_set_new(g, "device_greedy_steps", json_integer(gs->device_greedy));
    json_object_set_new(g, "device_sampled_steps", json_integer(gs->device_sampled));
    json_object_set_new(g, "padded_rows", json_integer(gs->padded_rows));
    if (gs->timed_steps > 0) {
        json_object_set_new(g, "issue_us_per_step",
                            json_real(gs->issue_s * 1e6 / (double)gs->timed_steps));
        json_object_set_new(g, "step_us", json_real(gs->step_s * 1e6 / (double)gs->timed_steps));
    }
    json_object_set_new(s, "graph_stats", g);
    json_object_set_new(s, "block_size", json_integer(gen_options(e->run)->block_size));
    json_object_set_new(s, "arch", json_string(c->arch_name));
    json_object_set_new(s, "weight_bytes", json_integer((json_int_t)e->ms.weight_bytes));
    json_object_set_new(s, "step_bytes", json_integer((json_int_t)e->ms.step_bytes));
    json_object_set_new(s, "copy_gbs", json_real(e->copy_gbs));
    json_object_set_new(s, "gemm_tflops", json_real(e->gemm_tflops));
    json_t *pl = step_planner_json(e->be, NULL);
    if (pl)
        json_object_set_new(s, "matmul_planner", pl);
    return s;
}

/* The record with the run's device and driver. */
static json_t *step_record(const step_env *e, const char *benchmark, json_t *settings,
                           double value, const char *unit, double ceiling, const char *what,
                           const json_t *peer, const char *peer_key)
{
    double pv = peer && json_is_number(json_object_get(peer, peer_key))
                    ? json_number_value(json_object_get(peer, peer_key))
                    : -1;
    json_t *r = bench_record(benchmark, e->shape, settings, value, unit, ceiling, what, peer, pv);
    if (r) {
        json_object_set_new(r, "device", json_string(e->device));
        json_object_set_new(r, "driver", json_string(e->driver));
    }
    return r;
}

/* The transformers peer in `mode`, or NULL. */
static json_t *step_peer(const step_env *e, const step_opts *o, const char *mode)
{
    char cmd[16384];
    if (!o->peer)
        return NULL;
    if (e->tp > 1) {
        fprintf(stderr, "kiln bench: no peer at --tensor-parallel-size %d (recorded as peer: "
                        "null; compare with the same bench at 1)\n", e->tp);
        return NULL;
    }
    if (!o->dummy) {
        fprintf(stderr, "kiln bench: the transformers peer runs --dummy-weights shapes only "
                        "(recorded as peer: null)\n");
        return NULL;
    }
    snprintf(cmd, sizeof cmd,
             "'%s' '%s/bench/peers/hf_peer.py' %s '%s' --dtype %s --device %s --batch %d "
             "--prompt-tokens %d --gen-tokens %d --repeat %d",
             bench_python(), KILN_SOURCE_DIR, mode, o->config,
             e->be->ops->act_dtype == KILN_DT_F16 ? "f16" : e->be->ops->act_dtype == KILN_DT_BF16
                                                                ? "bf16"
                                                                : "f32",
             strcmp(e->be->ops->name, "cuda") ? "cpu" : "cuda", o->batch, o->prompt_tokens,
             o->gen_tokens, o->repeat);
    return bench_run_peer(cmd);
}

/* ---- running ---------------------------------------------------------------- */

typedef struct step_done {
    gen_request rq[STEP_MAX_BATCH];
    gen_summary s[STEP_MAX_BATCH];
    int32_t n_done;
} step_done;

static void step_on_done(void *user, int32_t req, const gen_summary *s)
{
    step_done *d = user;
    d->s[req] = *s;
    d->s[req].tokens = NULL;
    d->n_done++;
}

/* One run of every sequence: the slowest prefill and decode, seconds. */
static kiln_status step_run(step_env *e, const step_opts *o, int32_t gen, step_done *d,
                            double *prompt_s, double *gen_s)
{
    gen_request *rq = d->rq;
    sampler_params sp;
    kiln_status st;

    sampler_params_default(&sp);
    sp.max_tokens = gen;
    sp.ignore_eos = true;
    sp.temperature = o->temperature;
    sp.top_p = o->top_p;
    for (int32_t b = 0; b < o->batch; b++)
        rq[b] = (gen_request){.prompt = e->ids + (size_t)b * (size_t)o->prompt_tokens,
                              .n_prompt = o->prompt_tokens, .params = sp,
                              .on_done = step_on_done, .user = d};
    d->n_done = 0;
    if ((st = gen_run(e->run, rq, o->batch)))
        return st;
    *prompt_s = *gen_s = 0;
    for (int32_t b = 0; b < o->batch; b++) {
        if (d->s[b].n_gen != gen)
            return kiln_err_set(KILN_ERR_INTERNAL, "bench: sequence %d made %d of %d tokens", b,
                                d->s[b].n_gen, gen);
        if (d->s[b].prompt_s > *prompt_s)
            *prompt_s = d->s[b].prompt_s;
        if (d->s[b].gen_s > *gen_s)
            *gen_s = d->s[b].gen_s;
    }
    return d->n_done == o->batch ? KILN_OK
                                 : kiln_err_set(KILN_ERR_INTERNAL, "bench: %d of %d finished",
                                                d->n_done, o->batch);
}

/* K/V bytes one sequence's step reads at context ctx (on each rank: its
 * kv heads). */
static double step_kv_bytes(const step_env *e, double ctx)
{
    return ctx * (double)model_kv_bytes_per_token(e->m);
}

int bench_latency(int argc, char **argv)
{
    step_opts o;
    step_env e = {0};
    step_done *d = NULL;
    json_t *all = NULL, *settings = NULL, *peer = NULL;
    double tps[STEP_MAX_RUNS], lat[STEP_MAX_RUNS], ps, gs;
    kiln_status st;
    int rc = bench_parse_opts("latency", argc, argv, &o);
    if (rc >= 0)
        return rc;
    const int32_t B = o.batch, G = o.gen_tokens;

    if ((st = step_setup(&e, &o, o.prompt_tokens + G)))
        goto out;
    if (!(d = kiln_calloc(1, sizeof *d))) {
        st = kiln_err_set(KILN_ERR_OOM, "bench: out of memory");
        goto out;
    }
    for (int r = 0; r <= o.repeat; r++) { /* run 0 warms up (plans, caches, clocks) */
        if ((st = step_run(&e, &o, G, d, &ps, &gs)))
            goto out;
        if (r) {
            tps[r - 1] = gs > 0 ? (double)B * (G - 1) / gs : 0;
            lat[r - 1] = gs > 0 ? gs * 1e3 / (G - 1) : 0;
        }
    }
    peer = step_peer(&e, &o, "latency");

    /* roofline: bytes of one decode step at the mean context of the decode */
    double step_bytes = (double)e.ms.step_bytes +
                        B * step_kv_bytes(&e, o.prompt_tokens + (G - 1) / 2.0);
    double roof_steps = e.copy_gbs * 1e9 / step_bytes;
    settings = step_settings(&e, &o);
    json_object_set_new(settings, "step_bytes_with_kv", json_real(step_bytes));
    all = json_array();
    json_t *rt = step_record(&e, "decode", settings, bench_median(tps, o.repeat), "tokens/s",
                             roof_steps * B, "decode roofline: copy_gbs (measured in this run, "
                             "read + write) / step_bytes_with_kv, x batch", peer, "decode_tps");
    json_t *rl = step_record(&e, "decode_latency", settings, bench_median(lat, o.repeat),
                             "ms/token", 1e3 / roof_steps, "decode roofline: step_bytes_with_kv "
                             "/ copy_gbs (a floor: lower is better)", peer, "latency_ms");
    if (!rt || !rl) {
        json_decref(rt), json_decref(rl);
        st = kiln_err_set(KILN_ERR_OOM, "bench: out of memory for results");
        goto out;
    }
    json_object_set_new(rt, "runs", bench_runs_json(tps, o.repeat));
    json_object_set_new(rl, "runs", bench_runs_json(lat, o.repeat));
    json_array_append_new(all, rt);
    json_array_append_new(all, rl);
    bench_table_head();
    bench_table_row(rt);
    bench_table_row(rl);
    const gen_stats *gst = gen_stats_of(e.run);
    printf("%s on %s: a step reads %.2f GB; copy bandwidth %.0f GB/s; decode roofline "
           "%.1f steps/s; kiln %.1f%% of it; graphs %lld captured, %lld replays, %lld "
           "fallbacks\n", e.shape, e.device, step_bytes / 1e9, e.copy_gbs, roof_steps,
           100.0 * bench_median(tps, o.repeat) / (roof_steps * B),
           (long long)gst->graphs_captured, (long long)gst->graph_replays,
           (long long)gst->graph_fallbacks);
    rc = bench_finish(all, o.out_dir, "latency");
out:
    if (st)
        rc = cli_fail();
    json_decref(all);
    json_decref(settings);
    json_decref(peer);
    kiln_free(d);
    step_env_free(&e);
    return rc;
}

/* FLOPs of one prefill of b sequences of p tokens (see the file comment);
 * with tensor parallelism the whole model's: tp times rank 0's matrices
 * (the split ones are even parts), every head's attention. */
static double step_prefill_flops(const step_env *e, int32_t b, int32_t p)
{
    const model_config *c = model_config_of(e->m);
    double per_seq = e->tp * 2.0 * (double)e->ms.layer_matmul_params * p +
                     4.0 * (double)c->n_layers * (double)c->n_heads * (double)c->head_dim *
                         ((double)p * (p + 1) / 2.0) +
                     e->tp * 2.0 * (double)e->ms.head_params;
    return per_seq * b;
}

int bench_prefill(int argc, char **argv)
{
    step_opts o;
    step_env e = {0};
    step_done *d = NULL;
    json_t *all = NULL, *settings = NULL, *peer = NULL;
    double tf[STEP_MAX_RUNS], ps, gs;
    kiln_status st;
    int rc = bench_parse_opts("prefill", argc, argv, &o);
    if (rc >= 0)
        return rc;

    if ((st = step_setup(&e, &o, o.prompt_tokens + 1)))
        goto out;
    if (!(d = kiln_calloc(1, sizeof *d))) {
        st = kiln_err_set(KILN_ERR_OOM, "bench: out of memory");
        goto out;
    }
    double flops = step_prefill_flops(&e, o.batch, o.prompt_tokens);
    for (int r = 0; r <= o.repeat; r++) {
        if ((st = step_run(&e, &o, 1, d, &ps, &gs)))
            goto out;
        if (r)
            tf[r - 1] = ps > 0 ? flops / ps / 1e12 : 0;
    }
    peer = step_peer(&e, &o, "prefill");
    settings = step_settings(&e, &o);
    json_object_set_new(settings, "flops", json_real(flops));
    json_object_set_new(settings, "timing", json_string("request in -> first token sampled "
                                                        "(prefill step, logits copied out, "
                                                        "sampling)"));
    all = json_array();
    json_t *rp = step_record(&e, "prefill", settings, bench_median(tf, o.repeat), "TFLOP/s",
                             e.tp * e.gemm_tflops, e.gemm_tflops > 0
                                                ? "matmul peak: 8192^3 through the backend's "
                                                  "cuBLASLt path, measured in this run (x "
                                                  "the tensor-parallel ranks)"
                                                : "none measured on this backend",
                             peer, "prefill_tflops");
    if (!rp) {
        st = kiln_err_set(KILN_ERR_OOM, "bench: out of memory for results");
        goto out;
    }
    json_object_set_new(rp, "runs", bench_runs_json(tf, o.repeat));
    json_array_append_new(all, rp);
    bench_table_head();
    bench_table_row(rp);
    printf("%s on %s: %d x %d tokens, %.2f TFLOP a step; matmul peak %.1f TFLOP/s\n", e.shape,
           e.device, o.batch, o.prompt_tokens, flops / 1e12, e.gemm_tflops);
    rc = bench_finish(all, o.out_dir, "prefill");
out:
    if (st)
        rc = cli_fail();
    json_decref(all);
    json_decref(settings);
    json_decref(peer);
    kiln_free(d);
    step_env_free(&e);
    return rc;
}

/* ---- embeddings, model only ---------------------------------------------------- */

static int embm_usage(FILE *f)
{
    fprintf(f, "usage: kiln bench embed-model (-m MODEL | --dummy-weights --config FILE)\n"
               "           [--device D] [--dtype bf16|f16] [--docs N] [--min-len L]\n"
               "           [--max-len L] [--batch-tokens T] [--repeat R] [--no-peer]\n"
               "           [--peer-python PY] [--out DIR]\n\n"
               "N documents (default 20000) of token lengths uniform in [L_min, L_max]\n"
               "(16..256) as token ids, through gen_embed_ids (sorted by length, packed\n"
               "into batches of T tokens, default 16384; mean pooling and L2\n"
               "normalisation included): documents/s against the matmul-peak bound,\n"
               "beside transformers at its best batch size on the same lengths.\n");
    cli_device_usage(f);
    return f == stdout ? 0 : 2;
}

int bench_embed_model(int argc, char **argv)
{
    step_opts so;
    step_env e = {0};
    int32_t *lens = NULL;
    float *out = NULL;
    json_t *all = NULL, *settings = NULL, *peer = NULL;
    double dps[STEP_MAX_RUNS];
    char lpath[4200] = "";
    kiln_status st;
    int rc = bench_parse_opts("embed-model", argc, argv, &so);
    if (rc >= 0)
        return rc;
    const step_opts *o = &so;
    const int32_t N = o->docs;
    model_load_opts mo = {.max_batch_tokens = o->batch_tokens};

    if ((st = cli_device_create(&o->dev, o->threads, &e.be)) || (st = step_ceilings(&e, o)) ||
        (st = bench_load_model(o, e.be, &mo, &e.m, e.shape, sizeof e.shape)))
        goto out;
    const model_config *c = model_config_of(e.m);
    if (!model_is_encoder(e.m)) {
        st = kiln_err_set(KILN_ERR_UNSUPPORTED, "bench: %s is not an embedding model", e.shape);
        goto out;
    }
    model_stats_of(e.m, &e.ms);

    /* lengths uniform in [min, max], ids above the special range */
    int64_t tokens = 0;
    double flops = 0;
    uint64_t x = 0x2545f4914f6cdd1du;
    lens = kiln_calloc((size_t)N, sizeof *lens);
    out = kiln_calloc((size_t)N, (size_t)c->hidden_size * sizeof *out);
    if (!lens || !out) {
        st = kiln_err_set(KILN_ERR_OOM, "bench: out of memory for %d documents", N);
        goto out;
    }
    for (int32_t i = 0; i < N; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        lens[i] = o->min_len + (int32_t)(x % (uint64_t)(o->max_len - o->min_len + 1));
        tokens += lens[i];
        flops += 2.0 * (double)e.ms.layer_matmul_params * lens[i] +
                 4.0 * (double)c->n_layers * (double)c->n_heads * (double)c->head_dim *
                     (double)lens[i] * lens[i];
    }
    if (!(e.ids = kiln_calloc((size_t)tokens, sizeof *e.ids))) {
        st = kiln_err_set(KILN_ERR_OOM, "bench: out of memory for %lld ids", (long long)tokens);
        goto out;
    }
    int64_t lo = c->vocab_size > 2000 ? 1000 : 0; /* past the special tokens */
    for (int64_t k = 0; k < tokens; k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        e.ids[k] = (int32_t)(lo + (int64_t)(x % (uint64_t)(c->vocab_size - lo)));
    }
    gen_embed_stats gs = {0};
    gen_embed_opts go = {.max_batch_tokens = o->batch_tokens,
                         .max_seqs = o->batch_tokens / o->min_len, .max_len = o->max_len,
                         .stats = &gs};
#ifdef KILN_HAVE_CUDA
    bk_cuda_mm_stats warm = {0};
#else
    int warm = 0;
#endif
    for (int r = 0; r <= o->repeat; r++) {
        uint64_t t0 = clock_now_ns();
#ifdef KILN_HAVE_CUDA
        if (r == 1)
            bk_cuda_mm_stats_get(e.be, &warm);
#endif
        if ((st = gen_embed_ids(e.m, e.ids, lens, N, &go, out)))
            goto out;
        double s = (double)(clock_now_ns() - t0) * 1e-9;
        if (r)
            dps[r - 1] = s > 0 ? N / s : 0;
    }

    if (o->peer && o->dummy) {
        kiln_buf t = {0};
        for (int32_t i = 0; i < N; i++)
            buf_printf(&t, "%d\n", lens[i]);
        if (bench_tmp_file(t.data, t.len, lpath, sizeof lpath)) {
            char cmd[16384];
            snprintf(cmd, sizeof cmd,
                     "'%s' '%s/bench/peers/hf_peer.py' embed '%s' --dtype %s --device %s "
                     "--lengths '%s' --repeat %d",
                     bench_python(), KILN_SOURCE_DIR, o->config,
                     e.be->ops->act_dtype == KILN_DT_BF16 ? "bf16"
                     : e.be->ops->act_dtype == KILN_DT_F16 ? "f16" : "f32",
                     strcmp(e.be->ops->name, "cuda") ? "cpu" : "cuda", lpath, o->repeat);
            peer = bench_run_peer(cmd);
            unlink(lpath);
        }
        buf_free(&t);
    }

    settings = json_object();
    json_object_set_new(settings, "mode", json_string("model"));
    json_object_set_new(settings, "backend", json_string(e.be->ops->name));
    json_object_set_new(settings, "dtype", json_string(dtype_name(e.be->ops->act_dtype)));
    json_object_set_new(settings, "weights", json_string(o->dummy ? "dummy (random, on the device)"
                                                                  : o->model));
    json_object_set_new(settings, "docs", json_integer(N));
    json_object_set_new(settings, "lengths", json_sprintf("uniform %d..%d", o->min_len,
                                                          o->max_len));
    json_object_set_new(settings, "tokens", json_integer(tokens));
    json_object_set_new(settings, "batch_tokens", json_integer(o->batch_tokens));
    json_object_set_new(settings, "batches_per_run", json_integer(gs.batches / (o->repeat + 1)));
    json_object_set_new(settings, "oom_retries", json_integer(gs.oom_retries));
    json_object_set_new(settings, "pooling", json_string("mean, L2-normalised, vectors copied "
                                                         "to the host"));
    json_object_set_new(settings, "repeat", json_integer(o->repeat));
    json_object_set_new(settings, "flops", json_real(flops));
    json_object_set_new(settings, "gemm_tflops", json_real(e.gemm_tflops));
    json_object_set_new(settings, "batch", json_integer(o->batch_tokens));
    json_t *pl = step_planner_json(e.be, NULL), *plt = step_planner_json(e.be, &warm);
    if (pl)
        json_object_set_new(settings, "matmul_planner", pl);
    if (plt)
        json_object_set_new(settings, "matmul_planner_timed_runs", plt);
    double ceil = e.gemm_tflops > 0 ? e.gemm_tflops * 1e12 / (flops / N) : 0;
    all = json_array();
    json_t *r = step_record(&e, "embed", settings, bench_median(dps, o->repeat), "docs/s", ceil,
                            ceil > 0 ? "matmul peak bound: gemm_tflops (measured in this run) / "
                                       "flops per document"
                                     : "none measured on this backend",
                            peer, "docs_per_s");
    if (!r) {
        st = kiln_err_set(KILN_ERR_OOM, "bench: out of memory for results");
        goto out;
    }
    json_object_set_new(r, "runs", bench_runs_json(dps, o->repeat));
    json_array_append_new(all, r);
    bench_table_head();
    bench_table_row(r);
    printf("%s on %s: %d documents, %lld tokens, %.2f TFLOP a run (%.1f TFLOP/s)\n", e.shape,
           e.device, N, (long long)tokens, flops / 1e12,
           flops / 1e12 * bench_median(dps, o->repeat) / N);
    rc = bench_finish(all, o->out_dir, "embed-model");
out:
    if (st)
        rc = cli_fail();
    json_decref(all);
    json_decref(settings);
    json_decref(peer);
    kiln_free(lens);
    kiln_free(out);
    step_env_free(&e);
    return rc;
}
