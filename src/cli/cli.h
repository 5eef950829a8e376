/*
 * cli.h - subcommands of the kiln binary.
 *
 * Each subcommand is one cmd_<name>.c with an entry `int cmd_<name>(int argc,
 * char **argv)` (argv[0] is the subcommand name) returning the process exit
 * code: 0 on success, 1 on a failure of the work, 2 on bad usage.
 */
#ifndef KILN_CLI_H
#define KILN_CLI_H

int cmd_info(int argc, char **argv);

/* Print "kiln: <last error>" to stderr and return 1. */
int cli_fail(void);

#endif /* KILN_CLI_H */
