/* main.c - the kiln binary: dispatch to one cmd_*.c per subcommand. */
#include "cli/cli.h"

#include "base/error.h"
#include "kiln.h"

#include <stdio.h>
#include <string.h>

typedef struct cli_command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} cli_command;

static const cli_command cli_commands[] = {
    {"info", cmd_info, "describe a model (GGUF file, Hugging Face directory, safetensors file)"},
    {"tokenize", cmd_tokenize, "text to token ids"},
    {"detokenize", cmd_detokenize, "token ids to text"},
    {"chat-format", cmd_chat_format, "format a conversation with the model's chat template"},
    {"bench", cmd_bench, "benchmarks (tokenize, generate, embed, latency, prefill, embed-model)"},
    {"run", cmd_run, "generate text from a prompt"},
    {"chat", cmd_chat, "talk with a model in the terminal"},
    {"embed", cmd_embed, "embeddings of text, one document per line"},
};

static void cli_usage(FILE *f)
{
    fprintf(f, "kiln %s - inference engine for transformer models\n\n"
               "usage: kiln <command> [options]\n\ncommands:\n",
            KILN_VERSION_STRING);
    for (size_t i = 0; i < KILN_ARRAY_LEN(cli_commands); i++)
        fprintf(f, "  %-12s %s\n", cli_commands[i].name, cli_commands[i].summary);
    fprintf(f, "\n'kiln <command> --help' shows a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        cli_usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        cli_usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("kiln %s\n", KILN_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < KILN_ARRAY_LEN(cli_commands); i++)
        if (!strcmp(argv[1], cli_commands[i].name))
            return cli_commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "kiln: unknown command '%s'\n\n", argv[1]);
    cli_usage(stderr);
    return 2;
}
