/*
 * cmd_chat_format.c - `kiln chat-format -m SRC --messages FILE.json`: print
 * the prompt the model's chat template makes of a conversation.
 *
 * FILE.json is a list of messages ({"role", "content", ...}) or an object
 * {"messages": [...], "tools": [...], ...other template variables}; "-"
 * reads stdin.  The prompt is written as is, without a trailing newline.
 * The template is found as `kiln run --chat` finds it (cli_template_load):
 * --chat-template FILE, the model's own, or kiln's for its architecture.
 */
#include "cli/cli.h"

#include "tokenizer/chat.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

static int cf_usage(FILE *f)
{
    fprintf(f, "usage: kiln chat-format -m SRC --messages FILE.json [--chat-template FILE]\n"
               "                        [--no-generation-prompt]\n\n"
               "SRC: a model directory, a GGUF file, a tokenizer.json or a\n"
               "tokenizer_config.json.  FILE.json (or - for stdin) is a list of messages or\n"
               "an object with \"messages\" (and \"tools\", other template variables).\n"
               "A model that carries no template (Gemma 3's GGUF) gets kiln's template for\n"
               "its architecture (share/kiln/chat_templates/<arch>.jinja).\n"
               "  --chat-template FILE    use this Jinja template instead of the model's\n"
               "  --no-generation-prompt  do not open an assistant turn at the end\n");
    return f == stdout ? 0 : 2;
}

static kiln_status cf_load_request(const char *path, json_t **out)
{
    json_error_t je;
    *out = strcmp(path, "-") ? json_load_file(path, 0, &je) : json_loadf(stdin, 0, &je);
    if (!*out)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "%s: line %d column %d: %s", path, je.line,
                            je.column, je.text);
    return KILN_OK;
}

int cmd_chat_format(int argc, char **argv)
{
    const char *src = NULL, *messages = NULL, *tpl_file = NULL;
    bool gen_prompt = true;
    chat_tmpl *c = NULL;
    json_t *req = NULL;
    kiln_buf out = {0};
    int rc = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc)
            src = argv[++i];
        else if (!strcmp(a, "--messages") && i + 1 < argc)
            messages = argv[++i];
        else if (!strcmp(a, "--chat-template") && i + 1 < argc)
            tpl_file = argv[++i];
        else if (!strcmp(a, "--no-generation-prompt"))
            gen_prompt = false;
        else if (!strcmp(a, "--add-generation-prompt"))
            gen_prompt = true;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return cf_usage(stdout);
        else {
            fprintf(stderr, "kiln chat-format: unexpected argument '%s'\n", a);
            return cf_usage(stderr);
        }
    }
    if (!src || !messages) {
        fprintf(stderr, "kiln chat-format: -m SRC and --messages FILE are required\n");
        return cf_usage(stderr);
    }
    if (cli_template_load(src, tpl_file, NULL, &c) || cf_load_request(messages, &req) ||
        chat_render(c, req, gen_prompt, &out))
        rc = cli_fail();
    else if (out.len && fwrite(out.data, 1, out.len, stdout) != out.len)
        rc = (kiln_err_set(KILN_ERR_IO, "stdout: %s", strerror(errno)), cli_fail());
    buf_free(&out);
    json_decref(req);
    chat_tmpl_free(c);
    return rc;
}
