/*
 * bench.h - pieces the `kiln bench` modes share (cmd_bench.c) and the
 * modes of cmd_bench_step.c (latency, prefill: model steps on any backend,
 * the GPU first).
 */
#ifndef KILN_CLI_BENCH_H
#define KILN_CLI_BENCH_H

#include "backend/backend.h"
#include "cli/cli.h"
#include "model/model.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* --peer-python, when given. */
extern const char *bench_peer_python;

/* The interpreter peers run under: --peer-python, else $KILN_PYTHON, else
 * .venv/bin/python of the source tree, else python3. */
const char *bench_python(void);

/* Run a peer command whose stdout is one JSON object: owned, or NULL (and
 * a note on stderr naming the command) when it cannot run. */
json_t *bench_run_peer(const char *cmd);

/* Parse a whole number in [lo, hi]. */
bool bench_int(const char *s, long lo, long hi, long *out);
/* The same for a real number in [lo, hi] (NaN refused). */
bool bench_float(const char *s, double lo, double hi, float *out);

double bench_median(const double *v, int n);     /* n <= 1000 */
json_t *bench_runs_json(const double *v, int n);

/* A temporary file holding `len` bytes; its path into path (unlink it). */
bool bench_tmp_file(const char *data, size_t len, char *path, size_t cap);

/* One result record (telemetry/report.h keys); settings referenced, not
 * stolen; peer_value < 0 records peer: null.  Owned, NULL on OOM. */
json_t *bench_record(const char *benchmark, const char *shape, json_t *settings, double value,
                     const char *unit, double ceiling, const char *what, const json_t *peer,
                     double peer_value);

/* The table printed after a run. */
void bench_table_head(void);
void bench_table_row(const json_t *r);

/* Write the records to out_dir/<prefix>-<time>.json; the mode's exit code. */
int bench_finish(json_t *all, const char *out_dir, const char *prefix);

/* "gemma-3-270m-q4_k_m" from a model path. */
void bench_model_name(const char *path, char *buf, size_t cap);

/* Streaming read bandwidth of host memory with `threads` threads, GB/s. */
double bench_read_gbs(int threads);

/* The device a benchmark runs on and its ceilings, measured now: on a
 * CUDA backend its name, the NVIDIA driver, device-to-device copy GB/s
 * and the 8192^3 matmul TFLOP/s of the backend's own path; on the CPU the
 * processor, "host" and the host's streaming read GB/s on `threads`
 * threads (no matmul peak). */
typedef struct bench_device {
    char device[300], driver[200];
    double copy_gbs, gemm_tflops;
    bool gpu;
} bench_device;

kiln_status bench_device_ceilings(backend *be, int threads, bench_device *out);

/* Options of every model bench mode (generate, embed, latency, prefill,
 * embed-model), parsed by bench_parse_opts; which of them a mode takes and
 * its defaults are in that function. */
/* Most data-parallel engines of kiln bench embed. */
#define BENCH_MAX_DP 64

typedef struct bench_opts {
    const char *model, *config, *tokenizer, *out_dir;
    bool dummy, peer, no_graphs;
    cli_device dev;
    int threads, repeat, tok_threads;
    int32_t batch, prompt_tokens, gen_tokens;        /* generate, latency, prefill */
    int32_t docs, min_len, max_len, batch_tokens;     /* embed, embed-model         */
    float temperature, top_p;                         /* latency: 0, 1 = greedy     */
    int dp;                                           /* embed: engines (1)         */
    int tp;                                           /* latency, prefill: ranks (1) */
} bench_opts;

/* Parse the options of `mode`; -1 to go on, else the exit code (usage
 * printed). */
int bench_parse_opts(const char *mode, int argc, char **argv, bench_opts *o);

/* The model of o: the file -m names, or with --dummy-weights random weights
 * at --config's shape (encoders L2-normalised, as the sentence-transformers
 * models of the benched shapes are); its shape name into shape.  Errors as
 * model_load / model_load_dummy / hf_config_load.  *m owned: model_free. */
kiln_status bench_load_model(const bench_opts *o, backend *be, const model_load_opts *mo,
                             kiln_model **m, char *shape, size_t cap);

/* The usage text of the generate, embed and tokenize modes (cmd_bench.c);
 * returns the exit code for `f` (0 stdout, 2 stderr). */
int bench_usage(FILE *f);

/* cmd_bench_step.c */
int bench_latency(int argc, char **argv);
int bench_prefill(int argc, char **argv);
int bench_embed_model(int argc, char **argv);

#endif /* KILN_CLI_BENCH_H */
