/*
 * cmd_chat.c - `kiln chat -m MODEL`: an interactive conversation in the
 * terminal through the model's chat template.
 *
 * Each line read is a user message; the whole history is rendered with the
 * template and generated from, and the reply is streamed to stdout and kept
 * in the history.  /exit, /quit or end of input (Ctrl-D) ends the session;
 * /reset forgets the history.  When the history no longer fits the context,
 * the oldest exchanges are dropped (a note says so on stderr).
 */
#include "cli/cli.h"
#include "cli/cli_gen.h"

#include "base/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct chat_reply {
    kiln_buf text;
    gen_summary sum;
} chat_reply;

static int chat_usage(FILE *f)
{
    fprintf(f, "usage: kiln chat -m MODEL [--system TEXT] [--verbose] [options]\n\n"
               "Talk with MODEL: each line is a message.  /exit (or Ctrl-D) ends, /reset\n"
               "starts over.  Replies are capped at -n tokens (default 512; 0: no cap).\n"
               "  --system TEXT            system message\n"
               "  --verbose                prompt and generation speed after each reply\n");
    cli_gen_usage(f);
    return f == stdout ? 0 : 2;
}

static kiln_status chat_on_text(void *user, int32_t req, const char *text, size_t len)
{
    chat_reply *r = user;
    if (fwrite(text, 1, len, stdout) != len || fflush(stdout))
        return kiln_err_set(KILN_ERR_IO, "stdout: %s", strerror(errno));
    return buf_append(&r->text, text, len);
}

static void chat_on_done(void *user, int32_t req, const gen_summary *s)
{
    ((chat_reply *)user)->sum = *s;
}

static json_t *chat_message(const char *role, const char *content, size_t len)
{
    return json_pack("{s:s,s:s%}", "role", role, "content", content, len);
}

/* Reply to the conversation in msgs (which ends with a user message). On
 * KILN_ERR_RANGE (too long for the context) the oldest exchange after the
 * system message is dropped and it tries again, while one is left. */
static kiln_status chat_turn(cli_gen *g, json_t *msgs, size_t first, chat_reply *reply)
{
    kiln_ids ids = {0};
    kiln_status st;
    for (;;) {
        ids_clear(&ids);
        buf_clear(&reply->text);
        if ((st = cli_gen_chat_ids(g, msgs, &ids)))
            break;
        gen_request rq = {.prompt = ids.data, .n_prompt = (int32_t)ids.len, .params = g->sp,
                          .on_text = chat_on_text, .on_done = chat_on_done, .user = reply};
        st = gen_run(g->run, &rq, 1);
        if (st != KILN_ERR_RANGE || json_array_size(msgs) < first + 3)
            break;
        fprintf(stderr, "kiln chat: the conversation is over the context; dropping the "
                        "oldest exchange\n");
        json_array_remove(msgs, first);
        json_array_remove(msgs, first);
    }
    ids_free(&ids);
    return st;
}

/* One line from stdin without its newline; false at end of input. */
static bool chat_read_line(kiln_buf *line)
{
    int c;
    buf_clear(line);
    while ((c = getchar()) != EOF && c != '\n')
        if (buf_append_char(line, (char)c))
            return false;
    if (c == EOF && !line->len)
        return false;
    if (line->len && line->data[line->len - 1] == '\r')
        line->data[--line->len] = '\0';
    return !buf_append(line, "", 0);
}

int cmd_chat(int argc, char **argv)
{
    cli_gen g;
    const char *system = NULL;
    bool verbose = false, tty = isatty(0);
    kiln_buf line = {0};
    chat_reply reply = {0};
    json_t *msgs = json_array();
    kiln_status st = KILN_OK;
    int rc;

    cli_gen_init(&g);
    g.sp.max_tokens = 512;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((rc = cli_gen_parse(&g, argc, argv, &i)) < 0) {
            json_decref(msgs);
            return 2;
        }
        if (rc)
            continue;
        if (!strcmp(a, "--system") && i + 1 < argc)
            system = argv[++i];
        else if (!strcmp(a, "--verbose") || !strcmp(a, "-v"))
            verbose = true;
        else {
            json_decref(msgs);
            if (!strcmp(a, "--help") || !strcmp(a, "-h"))
                return chat_usage(stdout);
            fprintf(stderr, "kiln chat: unexpected argument '%s'\n", a);
            return chat_usage(stderr);
        }
    }
    if (!g.model_path) {
        json_decref(msgs);
        fprintf(stderr, "kiln chat: -m MODEL is required\n");
        return chat_usage(stderr);
    }
    if (g.tp_world || g.tp_rank || g.tp_id || g.tp_processes) {
        json_decref(msgs);
        fprintf(stderr, "kiln chat: --tp-rank/--tp-world/--tp-id and --tp-launch processes make "
                        "a group of processes for kiln run; kiln chat takes "
                        "--tensor-parallel-size (threads)\n");
        return chat_usage(stderr);
    }
    size_t first = 0;
    if (system) {
        if (json_array_append_new(msgs, chat_message("system", system, strlen(system)))) {
            st = kiln_err_set(KILN_ERR_INVALID_ARG, "--system is not valid UTF-8");
            goto out;
        }
        first = 1;
    }
    if ((st = cli_gen_load(&g, "chat", true)))
        goto out;
    if (tty)
        fprintf(stderr, "kiln chat: %s - /exit or Ctrl-D to end, /reset to start over\n",
                g.model_path);
    for (;;) {
        if (tty)
            fputs("> ", stderr);
        if (!chat_read_line(&line) || !strcmp(line.data, "/exit") || !strcmp(line.data, "/quit"))
            break;
        if (!strcmp(line.data, "/reset")) {
            while (json_array_size(msgs) > first)
                json_array_remove(msgs, first);
            continue;
        }
        if (!line.len)
            continue;
        if (json_array_append_new(msgs, chat_message("user", line.data, line.len))) {
            fprintf(stderr, "kiln chat: that line is not valid UTF-8\n");
            continue;
        }
        st = chat_turn(&g, msgs, first, &reply);
        fputc('\n', stdout);
        fflush(stdout);
        if (st == KILN_ERR_RANGE) {
            /* even this message alone does not fit: report, forget it, go on */
            fprintf(stderr, "kiln chat: %s\n", kiln_last_error());
            json_array_remove(msgs, json_array_size(msgs) - 1);
            st = KILN_OK;
            continue;
        }
        if (st)
            break;
        if (verbose)
            cli_gen_report(&reply.sum);
        /* a reply that cannot be kept takes its question with it, so that
         * the roles keep alternating */
        if (json_array_append_new(msgs, chat_message("assistant", reply.text.data
                                                     ? reply.text.data : "", reply.text.len)))
            json_array_remove(msgs, json_array_size(msgs) - 1);
    }
out:
    rc = st ? cli_fail() : 0;
    buf_free(&line);
    buf_free(&reply.text);
    json_decref(msgs);
    cli_gen_free(&g);
    return rc;
}
