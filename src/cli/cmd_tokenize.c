/*
 * cmd_tokenize.c - `kiln tokenize` and `kiln detokenize`.
 *
 *   kiln tokenize -m SRC [--ids|--pieces] [--no-special] [--lines] [TEXT...]
 *   kiln detokenize -m SRC [--skip-special] [--lines] [ID...]
 *
 * SRC is a model directory, a GGUF file, a tokenizer.json or a
 * SentencePiece .model file.  Without TEXT (IDs) the input is all of stdin.
 * With --lines every stdin line is one input in which the escapes \n, \r and
 * \\ stand for newline, carriage return and backslash; output is one line
 * per input (detokenize escapes its output the same way).  Invalid UTF-8
 * input is tokenized as the reference reads it (U+FFFD per maximal invalid
 * subsequence, tokenizer.h); the usage text says so.
 */
#include "cli/cli.h"

#include "base/buf.h"
#include "tokenizer/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tk_opts {
    const char *src;
    bool pieces;        /* print pieces instead of ids          */
    bool add_special;   /* BOS/EOS/CLS/SEP (tokenize)            */
    bool skip_special;  /* drop special tokens (detokenize)      */
    bool lines;
    int first_arg;      /* argv index of TEXT/ID words, argc if none */
} tk_opts;

static int tk_usage(FILE *f, bool detok)
{
    if (detok)
        fprintf(f, "usage: kiln detokenize -m SRC [--skip-special] [--lines] [ID...]\n");
    else
        fprintf(f, "usage: kiln tokenize -m SRC [--ids|--pieces] [--no-special] [--lines] "
                   "[TEXT...]\n");
    fprintf(f, "\nSRC: a model directory, a GGUF file, a tokenizer.json or a SentencePiece\n"
               ".model file.  Input comes from the arguments or, without them, stdin.\n"
               "  --lines         one input per stdin line; \\n, \\r and \\\\ are escapes\n");
    if (!detok)
        fprintf(f, "  --ids           print ids separated by spaces (default)\n"
                   "  --pieces        print the tokens' pieces as a JSON array\n"
                   "  --no-special    do not add BOS/EOS/CLS/SEP\n\n"
                   "Invalid UTF-8 in the input is read as Python's\n"
                   "bytes.decode(\"utf-8\", errors=\"replace\") reads it: each maximal invalid\n"
                   "subsequence (a stray byte, a truncated sequence) becomes one U+FFFD, and\n"
                   "that text is tokenized; the ids are those the reference library gives for\n"
                   "the decoded string.\n");
    else
        fprintf(f, "  --skip-special  leave special tokens out of the text\n\n"
                   "The text is always valid UTF-8: bytes of byte-level or byte-fallback\n"
                   "tokens that form no character come out as U+FFFD, as the reference\n"
                   "library decodes them.\n");
    return f == stdout ? 0 : 2;
}

/* Parse options; returns -1 to go on, else the exit code. */
static int tk_parse(int argc, char **argv, bool detok, tk_opts *o)
{
    memset(o, 0, sizeof *o);
    o->add_special = true;
    o->first_arg = argc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc)
            o->src = argv[++i];
        else if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return tk_usage(stdout, detok);
        else if (!strcmp(a, "--lines"))
            o->lines = true;
        else if (!detok && !strcmp(a, "--ids"))
            o->pieces = false;
        else if (!detok && !strcmp(a, "--pieces"))
            o->pieces = true;
        else if (!detok && !strcmp(a, "--no-special"))
            o->add_special = false;
        else if (detok && !strcmp(a, "--skip-special"))
            o->skip_special = true;
        else if (!strcmp(a, "--")) {
            o->first_arg = i + 1;
            break;
        } else if (a[0] == '-' && a[1] && !(detok && a[1] >= '0' && a[1] <= '9')) {
            fprintf(stderr, "kiln %s: unknown option '%s'\n", argv[0], a);
            return tk_usage(stderr, detok);
        } else {
            o->first_arg = i;
            break;
        }
    }
    if (!o->src) {
        fprintf(stderr, "kiln %s: -m SRC is required\n", argv[0]);
        return tk_usage(stderr, detok);
    }
    if (o->lines && o->first_arg < argc) {
        fprintf(stderr, "kiln %s: --lines reads stdin; give no arguments\n", argv[0]);
        return 2;
    }
    return -1;
}

/* Replace the escapes \n, \r, \\ in line[0..n) in place; returns the new
 * length.  Any other backslash stands for itself. */
static size_t tk_unescape(char *line, size_t n)
{
    size_t w = 0;
    for (size_t r = 0; r < n; r++) {
        char c = line[r];
        if (c == '\\' && r + 1 < n && (line[r + 1] == 'n' || line[r + 1] == 'r' || line[r + 1] == '\\')) {
            r++;
            c = line[r] == 'n' ? '\n' : line[r] == 'r' ? '\r' : '\\';
        }
        line[w++] = c;
    }
    return w;
}

static kiln_status tk_escape(kiln_buf *out, const char *s, size_t n)
{
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < n && !st; i++) {
        if (s[i] == '\n')
            st = buf_append(out, "\\n", 2);
        else if (s[i] == '\r')
            st = buf_append(out, "\\r", 2);
        else if (s[i] == '\\')
            st = buf_append(out, "\\\\", 2);
        else
            st = buf_append_char(out, s[i]);
    }
    return st;
}

/* Print the ids (or pieces as a JSON array) of one input as one line. */
static kiln_status tk_print_ids(const tokenizer *t, const kiln_ids *ids, bool pieces,
                                kiln_buf *line)
{
    kiln_status st = KILN_OK;
    buf_clear(line);
    if (pieces)
        st = buf_append_char(line, '[');
    for (size_t i = 0; i < ids->len && !st; i++) {
        if (!pieces) {
            st = buf_printf(line, i ? " %d" : "%d", ids->data[i]);
            continue;
        }
        size_t plen = 0;
        const char *p = tok_piece(t, ids->data[i], &plen);
        st = cli_json_string(line, i ? ", " : "", p ? p : "", p ? plen : 0);
    }
    if (!st && pieces)
        st = buf_append_char(line, ']');
    if (!st)
        st = buf_append_char(line, '\n');
    if (!st && fwrite(line->data, 1, line->len, stdout) != line->len)
        st = kiln_err_set(KILN_ERR_IO, "stdout: %s", strerror(errno));
    return st;
}

static kiln_status tk_tokenize_one(const tokenizer *t, const tk_opts *o, const char *text,
                                   size_t n, kiln_ids *ids, kiln_buf *line)
{
    ids_clear(ids);
    kiln_status st = tok_encode(t, text, n, o->add_special, ids);
    return st ? st : tk_print_ids(t, ids, o->pieces, line);
}

int cmd_tokenize(int argc, char **argv)
{
    tk_opts o;
    tokenizer *t = NULL;
    kiln_buf in = {0}, line = {0};
    kiln_ids ids = {0};
    kiln_status st;
    int rc = tk_parse(argc, argv, false, &o);
    if (rc >= 0)
        return rc;
    if ((st = tok_open(o.src, &t)))
        return cli_fail();
    if (o.first_arg < argc) {
        for (int i = o.first_arg; i < argc && !st; i++)
            st = buf_printf(&in, i > o.first_arg ? " %s" : "%s", argv[i]);
        if (!st)
            st = tk_tokenize_one(t, &o, in.data, in.len, &ids, &line);
    } else if (!(st = cli_read_all(stdin, &in)) && !o.lines) {
        st = tk_tokenize_one(t, &o, in.data ? in.data : "", in.len, &ids, &line);
    } else if (!st) {
        size_t pos = 0;
        while (pos < in.len && !st) {
            char *nl = memchr(in.data + pos, '\n', in.len - pos);
            size_t end = nl ? (size_t)(nl - in.data) : in.len;
            size_t n = tk_unescape(in.data + pos, end - pos);
            st = tk_tokenize_one(t, &o, in.data + pos, n, &ids, &line);
            pos = end + 1;
        }
    }
    rc = st ? cli_fail() : 0;
    ids_free(&ids);
    buf_free(&in);
    buf_free(&line);
    tok_free(t);
    return rc;
}

/* Parse whitespace-separated ids from s[0..n) into *ids. */
static kiln_status tk_parse_ids(const char *s, size_t n, kiln_ids *ids)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == ',' || s[i] == '\r'))
            i++;
        if (i == n)
            break;
        char num[24];
        size_t k = 0;
        while (i < n && k < sizeof num - 1 && s[i] != ' ' && s[i] != '\t' && s[i] != ',' &&
               s[i] != '\r')
            num[k++] = s[i++];
        num[k] = '\0';
        char *end;
        errno = 0;
        long v = strtol(num, &end, 10);
        if (*end || errno || v < 0 || v > INT32_MAX)
            return kiln_err_set(KILN_ERR_INVALID_ARG, "'%s' is not a token id", num);
        kiln_status st = ids_push(ids, (int32_t)v);
        if (st)
            return st;
    }
    return KILN_OK;
}

static kiln_status tk_detok_one(const tokenizer *t, const tk_opts *o, const kiln_ids *ids,
                                kiln_buf *text, kiln_buf *line)
{
    kiln_status st;
    buf_clear(text);
    buf_clear(line);
    if ((st = tok_decode(t, ids->data, ids->len, o->skip_special, text)))
        return st;
    if (o->lines) {
        if ((st = tk_escape(line, text->data ? text->data : "", text->len)) ||
            (st = buf_append_char(line, '\n')))
            return st;
        text = line;
    }
    if (text->len && fwrite(text->data, 1, text->len, stdout) != text->len)
        return kiln_err_set(KILN_ERR_IO, "stdout: %s", strerror(errno));
    return KILN_OK;
}

int cmd_detokenize(int argc, char **argv)
{
    tk_opts o;
    tokenizer *t = NULL;
    kiln_buf in = {0}, text = {0}, line = {0};
    kiln_ids ids = {0};
    kiln_status st = KILN_OK;
    int rc = tk_parse(argc, argv, true, &o);
    if (rc >= 0)
        return rc;
    if (tok_open(o.src, &t))
        return cli_fail();
    if (o.first_arg < argc) {
        for (int i = o.first_arg; i < argc && !st; i++)
            st = tk_parse_ids(argv[i], strlen(argv[i]), &ids);
        if (!st)
            st = tk_detok_one(t, &o, &ids, &text, &line);
    } else if (!(st = cli_read_all(stdin, &in)) && !o.lines) {
        for (size_t i = 0; i < in.len; i++)
            if (in.data[i] == '\n')
                in.data[i] = ' ';
        if (!(st = tk_parse_ids(in.data ? in.data : "", in.len, &ids)))
            st = tk_detok_one(t, &o, &ids, &text, &line);
    } else if (!st) {
        size_t pos = 0;
        while (pos < in.len && !st) {
            char *nl = memchr(in.data + pos, '\n', in.len - pos);
            size_t end = nl ? (size_t)(nl - in.data) : in.len;
            ids_clear(&ids);
            if (!(st = tk_parse_ids(in.data + pos, end - pos, &ids)))
                st = tk_detok_one(t, &o, &ids, &text, &line);
            pos = end + 1;
        }
    }
    rc = st ? cli_fail() : 0;
    ids_free(&ids);
    buf_free(&in);
    buf_free(&text);
    buf_free(&line);
    tok_free(t);
    return rc;
}
