/*
 * tokenizer.c - the tokenizer facade: open by source kind, dispatch to the
 * implementation, and incremental decoding for streaming; see tokenizer.h.
 *
 * Streaming keeps a window of ids [prefix, end): ids before `read` have been
 * emitted.  Each push decodes the window twice, without and with the new
 * id, and emits the difference once it does not end in U+FFFD (a partial
 * UTF-8 sequence).  The window always starts at an id whose text was
 * already emitted, so context-dependent decoding (a leading space removed
 * only for the first token, "##" joins) is the same as in a full decode.
 */
#include "tokenizer/tokenizer.h"

#include "base/alloc.h"
#include "base/fmap.h"
#include "format/gguf.h"
#include "tokenizer/hftok.h"
#include "tokenizer/spm.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

struct tokenizer {
    hftok *hf;          /* exactly one of hf / spm is set */
    spm_tok *spm;
    gguf_file *gguf;    /* owned when tok_open() opened a GGUF file */
};

/* ---- opening ------------------------------------------------------------ */

static kiln_status tok_new(tokenizer **out)
{
    *out = kiln_calloc(1, sizeof **out);
    return *out ? KILN_OK : kiln_err_set(KILN_ERR_OOM, "out of memory");
}

static kiln_status tok_load_json_file(const char *path, hftok **out)
{
    fmap *f;
    kiln_status st = fmap_open(path, &f);
    if (st)
        return st;
    st = hftok_load((const char *)fmap_data(f), fmap_size(f), out);
    fmap_close(f);
    return st ? kiln_err_wrap(st, "%s", path) : KILN_OK;
}

static bool tok_is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* BERT's do_lower_case from tokenizer_config.json (default true). */
static bool tok_dir_lowercase(const char *dir)
{
    char p[4096];
    bool lower = true;
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    json_t *j = json_load_file(p, 0, NULL);
    json_t *v = json_object_get(j, "do_lower_case");
    if (json_is_boolean(v))
        lower = json_is_true(v);
    json_decref(j);
    return lower;
}

static kiln_status tok_open_dir(const char *dir, tokenizer *t)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s/tokenizer.json", dir) >= (int)sizeof p)
        return kiln_err_set(KILN_ERR_RANGE, "%s: path too long", dir);
    if (tok_is_file(p))
        return tok_load_json_file(p, &t->hf);
    snprintf(p, sizeof p, "%s/tokenizer.model", dir);
    if (tok_is_file(p))
        return spm_load_model_file(p, &t->spm);
    snprintf(p, sizeof p, "%s/vocab.txt", dir);
    if (tok_is_file(p))
        return hftok_from_vocab_txt(p, tok_dir_lowercase(dir), &t->hf);
    return kiln_err_set(KILN_ERR_NOT_FOUND,
                        "%s: no tokenizer.json, tokenizer.model or vocab.txt", dir);
}

/* The implementation for a GGUF vocabulary, by tokenizer.ggml.model. */
static kiln_status tok_fill_gguf(const gguf_file *g, tokenizer *t)
{
    const char *model;
    size_t n;
    if (gguf_get_str(g, "tokenizer.ggml.model", &model, &n) != KILN_OK)
        return kiln_err_set(KILN_ERR_NOT_FOUND, "gguf: no tokenizer (tokenizer.ggml.model is absent)");
    if ((n == 5 && !memcmp(model, "llama", 5)))
        return spm_from_gguf(g, &t->spm);
    if ((n == 4 && !memcmp(model, "gpt2", 4)) || (n == 4 && !memcmp(model, "bert", 4)))
        return hftok_from_gguf(g, &t->hf);
    return kiln_err_set(KILN_ERR_UNSUPPORTED, "gguf: tokenizer model '%.*s' is not supported",
                        (int)(n > 64 ? 64 : n), model);
}

/* First bytes of a file, to tell GGUF and JSON from a protobuf .model. */
static kiln_status tok_sniff(const char *path, char *head, size_t cap, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return kiln_err_set(KILN_ERR_NOT_FOUND, "%s: %s", path, strerror(errno));
    *n = fread(head, 1, cap, f);
    fclose(f);
    return KILN_OK;
}

static kiln_status tok_open_file(const char *path, tokenizer *t)
{
    char head[64];
    size_t n = 0, i = 0;
    kiln_status st = tok_sniff(path, head, sizeof head, &n);
    if (st)
        return st;
    if (n >= 4 && !memcmp(head, "GGUF", 4)) {
        if ((st = gguf_open(path, &t->gguf)))
            return st;
        return tok_fill_gguf(t->gguf, t);
    }
    while (i < n && (head[i] == ' ' || head[i] == '\n' || head[i] == '\r' || head[i] == '\t'))
        i++;
    if (i < n && head[i] == '{')
        return tok_load_json_file(path, &t->hf);
    return spm_load_model_file(path, &t->spm);
}

kiln_status tok_open(const char *src, tokenizer **out)
{
    struct stat sb;
    tokenizer *t;
    kiln_status st;

    *out = NULL;
    if (stat(src, &sb) != 0)
        return kiln_err_set(KILN_ERR_NOT_FOUND, "%s: %s", src, strerror(errno));
    if ((st = tok_new(&t)))
        return st;
    st = S_ISDIR(sb.st_mode) ? tok_open_dir(src, t) : tok_open_file(src, t);
    if (st) {
        tok_free(t);
        return st;
    }
    *out = t;
    return KILN_OK;
}

kiln_status tok_open_gguf(const gguf_file *g, tokenizer **out)
{
    tokenizer *t;
    kiln_status st;

    *out = NULL;
    if ((st = tok_new(&t)))
        return st;
    if ((st = tok_fill_gguf(g, t))) {
        tok_free(t);
        return st;
    }
    *out = t;
    return KILN_OK;
}

void tok_free(tokenizer *t)
{
    if (!t)
        return;
    hftok_free(t->hf);
    spm_free(t->spm);
    gguf_close(t->gguf);
    kiln_free(t);
}

/* ---- dispatch ----------------------------------------------------------- */

kiln_status tok_encode(const tokenizer *t, const char *text, size_t len, bool add_special,
                       kiln_ids *out)
{
    return t->hf ? hftok_encode(t->hf, text, len, add_special, out)
                 : spm_encode(t->spm, text, len, add_special, out);
}

kiln_status tok_encode_trunc(const tokenizer *t, const char *text, size_t len, bool add_special,
                             int64_t max_len, kiln_ids *out)
{
    if (t->hf)
        return hftok_encode_trunc(t->hf, text, len, add_special, max_len, out);
    size_t mark = out->len;
    kiln_status st = spm_encode(t->spm, text, len, add_special, out);
    if (st || max_len <= 0 || out->len - mark <= (size_t)max_len)
        return st;
    /* keep a closing EOS the encoder added */
    int32_t eos = spm_eos_id(t->spm);
    bool closing = add_special && eos >= 0 && out->data[out->len - 1] == eos;
    out->len = mark + (size_t)max_len;
    if (closing)
        out->data[out->len - 1] = eos;
    return KILN_OK;
}

kiln_status tok_decode(const tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
                       kiln_buf *out)
{
    return t->hf ? hftok_decode(t->hf, ids, n, skip_special, out)
                 : spm_decode(t->spm, ids, n, skip_special, out);
}

int64_t tok_vocab_size(const tokenizer *t)
{
    return t->hf ? hftok_vocab_size(t->hf) : spm_vocab_size(t->spm);
}

const char *tok_piece(const tokenizer *t, int32_t id, size_t *len)
{
    return t->hf ? hftok_piece(t->hf, id, len) : spm_piece(t->spm, id, len);
}

int32_t tok_piece_id(const tokenizer *t, const char *piece, size_t len)
{
    return t->hf ? hftok_piece_id(t->hf, piece, len) : spm_piece_id(t->spm, piece, len);
}

bool tok_is_special(const tokenizer *t, int32_t id)
{
    return t->hf ? hftok_is_special(t->hf, id) : spm_is_special(t->spm, id);
}

int32_t tok_bos_id(const tokenizer *t) { return t->hf ? hftok_bos_id(t->hf) : spm_bos_id(t->spm); }
int32_t tok_eos_id(const tokenizer *t) { return t->hf ? hftok_eos_id(t->hf) : spm_eos_id(t->spm); }

const char *tok_kind_name(const tokenizer *t)
{
    return t->hf ? hftok_kind_name(t->hf) : "SentencePiece BPE";
}

/* ---- streaming ---------------------------------------------------------- */

struct tok_stream {
    const tokenizer *tok;
    bool skip_special;
    kiln_ids ids;       /* the window: ids[0] is at `prefix` of the sequence */
    size_t read;        /* ids[0..read) have been emitted                     */
    kiln_buf a, b;      /* scratch decodes                                    */
};

kiln_status tok_stream_open(const tokenizer *t, bool skip_special, tok_stream **out)
{
    *out = kiln_calloc(1, sizeof **out);
    if (!*out)
        return kiln_err_set(KILN_ERR_OOM, "out of memory");
    (*out)->tok = t;
    (*out)->skip_special = skip_special;
    return KILN_OK;
}

/* True when the text may still change at its end: it ends in U+FFFD (an
 * implementation that replaces a partial byte sequence) or in the lead of a
 * UTF-8 sequence whose continuation bytes have not arrived yet (one that
 * keeps raw bytes). */
static bool tok_ends_incomplete(const kiln_buf *s)
{
    if (s->len >= 3 && !memcmp(s->data + s->len - 3, "\xEF\xBF\xBD", 3))
        return true;
    for (size_t back = 1; back <= 4 && back <= s->len; back++) {
        unsigned char c = (unsigned char)s->data[s->len - back];
        if ((c & 0xC0) == 0x80)
            continue; /* a continuation byte: look further back for its lead */
        size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 1;
        return c >= 0xC2 && c <= 0xF4 && back < need;
    }
    return false;
}

/* Decode the window [0, read) into a and the whole window into b. */
static kiln_status tok_stream_decode(tok_stream *s)
{
    kiln_status st;
    buf_clear(&s->a);
    buf_clear(&s->b);
    if ((st = tok_decode(s->tok, s->ids.data, s->read, s->skip_special, &s->a)))
        return st;
    return tok_decode(s->tok, s->ids.data, s->ids.len, s->skip_special, &s->b);
}

/* Emit b past a, then slide the window so it starts at the last emitted id. */
static kiln_status tok_stream_emit(tok_stream *s, kiln_buf *out)
{
    kiln_status st;
    if (s->b.len > s->a.len && (st = buf_append(out, s->b.data + s->a.len, s->b.len - s->a.len)))
        return st;
    size_t keep = s->ids.len - s->read; /* ids not yet emitted before this push */
    size_t start = s->ids.len - (keep ? keep : 1);
    memmove(s->ids.data, s->ids.data + start, (s->ids.len - start) * sizeof *s->ids.data);
    s->ids.len -= start;
    s->read = s->ids.len;
    return KILN_OK;
}

kiln_status tok_stream_push(tok_stream *s, int32_t id, kiln_buf *out)
{
    kiln_status st;
    if (id < 0 || id >= tok_vocab_size(s->tok))
        return kiln_err_set(KILN_ERR_RANGE, "token id %d is outside the vocabulary (%lld)", id,
                            (long long)tok_vocab_size(s->tok));
    if ((st = ids_push(&s->ids, id)) || (st = tok_stream_decode(s)))
        return st;
    if (s->b.len <= s->a.len || tok_ends_incomplete(&s->b))
        return KILN_OK; /* nothing final yet: keep the ids in the window */
    return tok_stream_emit(s, out);
}

kiln_status tok_stream_flush(tok_stream *s, kiln_buf *out)
{
    kiln_status st;
    if (s->read == s->ids.len)
        return KILN_OK;
    if ((st = tok_stream_decode(s)))
        return st;
    return tok_stream_emit(s, out);
}

void tok_stream_free(tok_stream *s)
{
    if (!s)
        return;
    ids_free(&s->ids);
    buf_free(&s->a);
    buf_free(&s->b);
    kiln_free(s);
}
