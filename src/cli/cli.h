/*
 * cli.h - subcommands of the kiln binary.
 *
 * Each subcommand is one cmd_<name>.c with an entry `int cmd_<name>(int argc,
 * char **argv)` (argv[0] is the subcommand name) returning the process exit
 * code: 0 on success, 1 on a failure of the work, 2 on bad usage.
 */
#ifndef KILN_CLI_H
#define KILN_CLI_H

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

#endif /* KILN_CLI_H */
