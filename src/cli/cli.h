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
} cli_device;

/* auto, bf16. */
void cli_device_init(cli_device *d);

/* Consume --device / --dtype at argv[*i] (and its value).  Returns 1 when
 * consumed, 0 when it is another option, -1 after printing why a value is
 * bad. */
int cli_device_parse(cli_device *d, int argc, char **argv, int *i);

/* Help lines of the two options. */
void cli_device_usage(FILE *f);

/* The backend d names; `threads` CPU workers when it is the CPU.  auto
 * falls back to the CPU (logged) when there is no CUDA backend or GPU.
 * Errors: those of bk_cpu_create / bk_cuda_create, KILN_ERR_UNSUPPORTED
 * for cuda in a build without CUDA.  *out owned: (*out)->ops->destroy. */
kiln_status cli_device_create(const cli_device *d, int threads, backend **out);

#endif /* KILN_CLI_H */
