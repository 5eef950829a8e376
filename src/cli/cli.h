/*
 * cli.h - subcommands of the kiln binary.
 *
 * Each subcommand is one cmd_<name>.c with an entry `int cmd_<name>(int argc,
 * char **argv)` (argv[0] is the subcommand name) returning the process exit
 * code: 0 on success, 1 on a failure of the work, 2 on bad usage.
 */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include "backend/backend.h"
#include "base/buf.h"
#include "tokenizer/chat.h"

#include <stdio.h>

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_chat_format(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_embed(int argc, char **argv);

/* Print "kiln: <last error>" to stderr and return 1. */
int cli_fail(void);

/* Append all of `f` to *out. */
kiln_status cli_read_all(FILE *f, kiln_buf *out);

/* Append lead, then s[0..n) as a JSON string literal (bytes >= 0x80 are
 * copied as they are). */
kiln_status cli_json_string(kiln_buf *out, const char *lead, const char *s, size_t n);

/* ---- chat templates (cli_template.c) --------------------------------------- */

/* The chat template `kiln run --chat`, `kiln chat` and `kiln chat-format`
 * render src's conversations with, the first of
 *   1. `file` (--chat-template) when not NULL;
 *   2. the model's own (GGUF tokenizer.chat_template, tokenizer_config.json,
 *      chat_template.jinja / .json: chat_tmpl_load);
 *   3. for a model that carries none (Gemma 3's GGUF), the template of its
 *      architecture, chat_templates/<arch>.jinja (gemma3.jinja), searched in
 *      $KILN_DATA_DIR/chat_templates, then <directory of the kiln
 *      binary>/../share/kiln/chat_templates, then <source
 *      tree>/share/kiln/chat_templates (a build run in place).
 * bos/eos token strings come from src whichever template is used.  arch:
 * the model's architecture name ("gemma3"), or NULL to read it from src (a
 * tokenizer file has none, so step 3 does not apply to it).  Errors: those
 * of chat_tmpl_load; KILN_ERR_NOT_FOUND naming src and arch when no step
 * has a template.  *out owned: chat_tmpl_free(). */
kiln_status cli_template_load(const char *src, const char *file, const char *arch,
                              chat_tmpl **out);

/* ---- --device / --dtype (cli_device.c) ------------------------------------ */

typedef enum cli_device_kind {
    CLI_DEVICE_AUTO = 0,   /* CUDA when a usable GPU is there, else the CPU */
    CLI_DEVICE_CPU,
    CLI_DEVICE_CUDA,
} cli_device_kind;

typedef struct cli_device {
    cli_device_kind kind;
    int ordinal;           /* CUDA device of cuda:N                          */
    kiln_dtype dtype;      /* CUDA activation type: KILN_DT_BF16 or F16      */
    double mem_util;       /* --gpu-memory-utilization: share of the GPU's
                              memory kiln may hold (0.90)                    */
} cli_device;

/* auto, bf16. */
void cli_device_init(cli_device *d);

/* Consume --device / --dtype / --gpu-memory-utilization at argv[*i] (and its value).  Returns 1 when
 * consumed, 0 when it is another option, -1 after printing why a value is
 * bad. */
int cli_device_parse(cli_device *d, int argc, char **argv, int *i);

/* Help lines of the options. */
void cli_device_usage(FILE *f);

/* The bytes the KV cache may take on `be` once the model is loaded: on a
 * GPU, mem_util x its memory, less what other processes held when the
 * backend was made and what kiln holds now (weights, workspace); 0 (no
 * limit) on the CPU.  KILN_ERR_OOM naming the figures when nothing is
 * left. */
kiln_status cli_device_kv_budget(const cli_device *d, backend *be, size_t *out);

/* The backend d names; `threads` CPU workers when it is the CPU.  auto
 * falls back to the CPU (logged) when there is no CUDA backend or GPU.
 * Errors: those of bk_cpu_create / bk_cuda_create, KILN_ERR_UNSUPPORTED
 * for cuda in a build without CUDA.  *out owned: (*out)->ops->destroy. */
kiln_status cli_device_create(const cli_device *d, int threads, backend **out);

/* n backends for n data-parallel engines (out: n entries, each owned):
 * on the CPU n CPU backends sharing the cores (threads, or all of them,
 * split evenly); on CUDA the devices cuda:K .. cuda:K+n-1 from d's
 * ordinal K.  Errors as cli_device_create, and KILN_ERR_INVALID_ARG
 * naming the GPUs when fewer are visible; nothing is left made on error. */
kiln_status cli_device_create_n(const cli_device *d, int threads, int n, backend **out);

/* Most ranks of a tensor-parallel group the CLI makes. */
#define CLI_MAX_RANKS 16

/* A tensor-parallel group over the n backends bes (as cli_device_create_n
 * made them): ranks as threads through the threads communicator on the
 * CPU, an NCCL group on GPUs (each rank joined from a thread of its own).
 * comms: n entries, each owned (comm_free).  Errors: KILN_ERR_INVALID_ARG
 * (n out of range), KILN_ERR_UNSUPPORTED (GPUs without NCCL), those of
 * comm_threads_create / comm_nccl_open. */
struct comm;
kiln_status cli_device_comms(backend *const *bes, int n, struct comm **comms);

#endif /* KILN_CLI_H */
