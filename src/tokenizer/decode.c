/*
 * decode.c - the decoders of decode.h.
 *
 * Each step maps the list `in` to the list `out`; dec_run ping-pongs
 * between the caller's list and one of its own.  Text in a list is always
 * valid UTF-8: ByteLevel and ByteFallback, the two steps that rebuild bytes,
 * repair invalid sequences as `tokenizers` does (ByteLevel: one U+FFFD per
 * maximal invalid subsequence, String::from_utf8_lossy; ByteFallback: one
 * U+FFFD per byte of a run of byte tokens that is not valid UTF-8).
 */
#include "tokenizer/decode.h"

#include "base/alloc.h"
#include "base/error.h"
#include "tokenizer/hfjson.h"
#include "tokenizer/hfre.h"
#include "tokenizer/unicode.h"

#include <string.h>

typedef enum dec_kind {
    DEC_BYTE_LEVEL,
    DEC_METASPACE,
    DEC_WORDPIECE,
    DEC_BYTE_FALLBACK,
    DEC_FUSE,
    DEC_STRIP,
    DEC_REPLACE,
    DEC_BPE,
} dec_kind;

typedef struct dec_step {
    dec_kind kind;
    uint32_t ch;       /* Metaspace replacement, Strip content     */
    bool prepend;      /* Metaspace: prepend_scheme is not "never" */
    bool cleanup;      /* WordPiece                                */
    size_t start, stop;/* Strip                                    */
    char *str;         /* WordPiece prefix, Replace content, BPE suffix */
    size_t str_len;
    hfre *re;          /* Replace (NULL: empty pattern)            */
} dec_step;

struct dec {
    dec_step *st;
    size_t n, cap;
};

/* ---- lists ------------------------------------------------------------------------ */

kiln_status dec_list_push(dec_list *l, const char *s, size_t len)
{
    if (l->n + 2 > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        size_t *o = kiln_realloc(l->off, cap * sizeof(size_t));
        if (!o)
            return kiln_err_set(KILN_ERR_OOM, "decoder: out of memory");
        l->off = o;
        l->cap = cap;
    }
    if (l->n == 0)
        l->off[0] = l->text.len;
    if (buf_append(&l->text, s, len))
        return KILN_ERR_OOM;
    l->off[++l->n] = l->text.len;
    return KILN_OK;
}

/* Close the string being built at the end of l->text (appended by hand). */
static kiln_status list_close(dec_list *l, size_t start)
{
    size_t len = l->text.len - start;
    l->text.len = start;
    return dec_list_push(l, l->text.data ? l->text.data + start : "", len);
}

void dec_list_clear(dec_list *l)
{
    buf_clear(&l->text);
    l->n = 0;
}

void dec_list_free(dec_list *l)
{
    buf_free(&l->text);
    kiln_free(l->off);
    memset(l, 0, sizeof(*l));
}

static const char *tok(const dec_list *l, size_t k, size_t *len)
{
    *len = l->off[k + 1] - l->off[k];
    return l->text.data + l->off[k];
}

/* ---- steps ------------------------------------------------------------------------- */

/* ByteLevel: each token's characters back to bytes (a token with a
 * character outside the byte alphabet keeps its own UTF-8 bytes), all
 * concatenated, then repaired into one valid string. */
static kiln_status byte_level(const dec_list *in, dec_list *out, kiln_buf *tmp)
{
    size_t k, i, len, start;
    kiln_status rc = KILN_OK;
    buf_clear(tmp);
    for (k = 0; k < in->n && !rc; k++) {
        const char *s = tok(in, k, &len);
        size_t mark = tmp->len;
        bool bad = false;
        for (i = 0; i < len && !rc && !bad;) {
            int b = uni_char_byte(uni_next(s, len, &i));
            if (b < 0)
                bad = true;
            else
                rc = buf_append_char(tmp, (char)b);
        }
        if (!rc && bad) {
            tmp->len = mark;
            rc = buf_append(tmp, s, len);
        }
    }
    start = out->text.len;
    if (!rc)
        rc = uni_sanitize(tmp->data ? tmp->data : "", tmp->len, &out->text);
    return rc ? rc : list_close(out, start);
}

static kiln_status metaspace(const dec_step *st, const dec_list *in, dec_list *out)
{
    size_t k, i, len, start, b;
    kiln_status rc = KILN_OK;
    for (k = 0; k < in->n && !rc; k++) {
        const char *s = tok(in, k, &len);
        start = out->text.len;
        for (i = 0; i < len && !rc;) {
            b = i;
            if (uni_next(s, len, &i) != st->ch)
                rc = buf_append(&out->text, s + b, i - b);
            else if (!(k == 0 && st->prepend))
                rc = buf_append_char(&out->text, ' ');
        }
        if (!rc)
            rc = list_close(out, start);
    }
    return rc;
}

/* Replace every occurrence of `from` in b[start..] by `to`, in place. */
static kiln_status replace_all(kiln_buf *b, size_t start, const char *from, const char *to,
                               kiln_buf *tmp)
{
    size_t fl = strlen(from), tl = strlen(to), i;
    char *hit;
    if (b->len - start < fl || !memmem(b->data + start, b->len - start, from, fl))
        return KILN_OK;
    buf_clear(tmp);
    for (i = start; i < b->len;) {
        hit = memmem(b->data + i, b->len - i, from, fl);
        size_t upto = hit ? (size_t)(hit - b->data) : b->len;
        if (buf_append(tmp, b->data + i, upto - i) || (hit && buf_append(tmp, to, tl)))
            return KILN_ERR_OOM;
        i = hit ? upto + fl : b->len;
    }
    b->len = start;
    return buf_append(b, tmp->data, tmp->len);
}

static kiln_status wp_cleanup(kiln_buf *b, size_t start, kiln_buf *tmp)
{
    static const char *pairs[][2] = {
        {" .", "."},     {" ?", "?"},     {" !", "!"},     {" ,", ","},
        {" ' ", "'"},    {" n't", "n't"}, {" 'm", "'m"},   {" do not", " don't"},
        {" 's", "'s"},   {" 've", "'ve"}, {" 're", "'re"},
    };
    size_t i;
    kiln_status rc = KILN_OK;
    for (i = 0; i < KILN_ARRAY_LEN(pairs) && !rc; i++)
        rc = replace_all(b, start, pairs[i][0], pairs[i][1], tmp);
    return rc;
}

static kiln_status wordpiece(const dec_step *st, const dec_list *in, dec_list *out,
                             kiln_buf *tmp)
{
    size_t k, len, start;
    kiln_status rc = KILN_OK;
    for (k = 0; k < in->n && !rc; k++) {
        const char *s = tok(in, k, &len);
        start = out->text.len;
        if (k > 0 && len >= st->str_len && memcmp(s, st->str, st->str_len) == 0) {
            s += st->str_len;
            len -= st->str_len;
        } else if (k > 0) {
            rc = buf_append_char(&out->text, ' ');
        }
        if (!rc)
            rc = buf_append(&out->text, s, len);
        if (!rc && st->cleanup)
            rc = wp_cleanup(&out->text, start, tmp);
        if (!rc)
            rc = list_close(out, start);
    }
    return rc;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* "<0xNN>" -> byte (Rust u8::from_str_radix on NN: a '+' sign is allowed). */
static int byte_token(const char *s, size_t len)
{
    int h, l;
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    l = hexval(s[4]);
    if (s[3] == '+')
        return l;
    h = hexval(s[3]);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
}

static kiln_status flush_bytes(dec_list *out, kiln_buf *bytes)
{
    size_t i;
    kiln_status rc = KILN_OK;
    if (bytes->len == 0)
        return KILN_OK;
    if (uni_valid_prefix(bytes->data, bytes->len) == bytes->len)
        rc = dec_list_push(out, bytes->data, bytes->len);
    else
        for (i = 0; i < bytes->len && !rc; i++)
            rc = dec_list_push(out, "\xEF\xBF\xBD", 3);
    buf_clear(bytes);
    return rc;
}

static kiln_status byte_fallback(const dec_list *in, dec_list *out, kiln_buf *bytes)
{
    size_t k, len;
    kiln_status rc = KILN_OK;
    buf_clear(bytes);
    for (k = 0; k < in->n && !rc; k++) {
        const char *s = tok(in, k, &len);
        int b = byte_token(s, len);
        if (b >= 0) {
            rc = buf_append_char(bytes, (char)b);
            continue;
        }
        rc = flush_bytes(out, bytes);
        if (!rc)
            rc = dec_list_push(out, s, len);
    }
    return rc ? rc : flush_bytes(out, bytes);
}

static kiln_status fuse(const dec_list *in, dec_list *out)
{
    size_t first = in->n ? in->off[0] : 0, last = in->n ? in->off[in->n] : 0;
    return dec_list_push(out, in->text.data ? in->text.data + first : "", last - first);
}

static kiln_status strip(const dec_step *st, const dec_list *in, dec_list *out)
{
    size_t k, len, i, j, n, b, e;
    kiln_status rc = KILN_OK;
    for (k = 0; k < in->n && !rc; k++) {
        const char *s = tok(in, k, &len);
        b = 0;
        for (n = 0, i = 0; n < st->start && i < len; n++) {
            j = i;
            if (uni_next(s, len, &j) != st->ch)
                break;
            b = i = j;
        }
        e = len;
        for (n = 0; n < st->stop && e > b; n++) {
            j = e - 1;
            while (j > 0 && ((uint8_t)s[j] & 0xC0) == 0x80)
                j--;
            i = j;
            if (uni_next(s, len, &i) != st->ch)
                break;
            e = j;
        }
        rc = dec_list_push(out, s + b, e > b ? e - b : 0);
    }
    return rc;
}

static kiln_status replace(const dec_step *st, const dec_list *in, dec_list *out,
                           pcre2_match_data *md)
{
    size_t k, len, prev, ms, me, start;
    bool found;
    hfre_iter it;
    kiln_status rc = KILN_OK;
    for (k = 0; k < in->n && !rc; k++) {
        const char *s = tok(in, k, &len);
        start = out->text.len;
        prev = 0;
        if (st->re && len) {
            hfre_iter_init(&it, st->re, s, len, md);
            while (!(rc = hfre_next(&it, &ms, &me, &found)) && found) {
                if ((rc = buf_append(&out->text, s + prev, ms - prev)) ||
                    (rc = buf_append(&out->text, st->str, st->str_len)))
                    break;
                prev = me;
            }
        }
        if (!rc)
            rc = buf_append(&out->text, s + prev, len - prev);
        if (!rc)
            rc = list_close(out, start);
    }
    return rc;
}

static kiln_status bpe_suffix(const dec_step *st, const dec_list *in, dec_list *out,
                              kiln_buf *tmp)
{
    size_t k, len, start;
    kiln_status rc = KILN_OK;
    for (k = 0; k < in->n && !rc; k++) {
        const char *s = tok(in, k, &len);
        start = out->text.len;
        rc = buf_append(&out->text, s, len);
        if (!rc && st->str_len)
            rc = replace_all(&out->text, start, st->str, k + 1 == in->n ? "" : " ", tmp);
        if (!rc)
            rc = list_close(out, start);
    }
    return rc;
}

static kiln_status step_run(const dec_step *st, const dec_list *in, dec_list *out,
                            kiln_buf *tmp, pcre2_match_data *md)
{
    switch (st->kind) {
    case DEC_BYTE_LEVEL:
        return byte_level(in, out, tmp);
    case DEC_METASPACE:
        return metaspace(st, in, out);
    case DEC_WORDPIECE:
        return wordpiece(st, in, out, tmp);
    case DEC_BYTE_FALLBACK:
        return byte_fallback(in, out, tmp);
    case DEC_FUSE:
        return fuse(in, out);
    case DEC_STRIP:
        return strip(st, in, out);
    case DEC_REPLACE:
        return replace(st, in, out, md);
    case DEC_BPE:
        return bpe_suffix(st, in, out, tmp);
    }
    return kiln_err_set(KILN_ERR_INTERNAL, "decoder: bad step");
}

static kiln_status join(const dec_list *l, const char *sep, kiln_buf *out)
{
    size_t k, len;
    kiln_status rc = KILN_OK;
    for (k = 0; k < l->n && !rc; k++) {
        const char *s = tok(l, k, &len);
        if (k > 0 && sep)
            rc = buf_append_str(out, sep);
        if (!rc)
            rc = buf_append(out, s, len);
    }
    return rc ? rc : buf_reserve(out, 0);
}

kiln_status dec_run(const dec *d, dec_list *toks, kiln_buf *out)
{
    dec_list other = {0}, *in = toks, *o = &other;
    kiln_buf tmp = {0};
    pcre2_match_data *md = NULL;
    kiln_status rc = KILN_OK;
    size_t i;
    if (!d)
        return join(toks, " ", out);
    if (!(md = hfre_md_create())) {
        rc = kiln_err_set(KILN_ERR_OOM, "decoder: out of memory");
        goto done;
    }
    for (i = 0; i < d->n && !rc; i++) {
        dec_list *t;
        dec_list_clear(o);
        rc = step_run(&d->st[i], in, o, &tmp, md);
        t = in;
        in = o;
        o = t;
    }
    if (!rc)
        rc = join(in, NULL, out);
done:
    hfre_md_free(md);
    buf_free(&tmp);
    dec_list_free(&other);
    return rc;
}

/* ---- construction ------------------------------------------------------------------- */

static kiln_status push_step(dec *d, const dec_step *st)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        dec_step *v = kiln_realloc(d->st, cap * sizeof(*v));
        if (!v)
            return kiln_err_set(KILN_ERR_OOM, "decoder: out of memory");
        d->st = v;
        d->cap = cap;
    }
    d->st[d->n++] = *st;
    return KILN_OK;
}

static kiln_status set_str(dec_step *st, const char *s, size_t len)
{
    if (!(st->str = kiln_malloc(len + 1)))
        return kiln_err_set(KILN_ERR_OOM, "decoder: out of memory");
    memcpy(st->str, s, len);
    st->str[len] = '\0';
    st->str_len = len;
    return KILN_OK;
}

static kiln_status parse_char(const json_t *j, const char *key, const char *what, uint32_t *c)
{
    char u[5];
    size_t n, k = 0;
    if (!hfj_char(j, key, u, &n))
        return kiln_err_set(KILN_ERR_FORMAT, "decoder %s: bad \"%s\"", what, key);
    *c = uni_next(u, n, &k);
    return KILN_OK;
}

static kiln_status parse_metaspace(const json_t *j, dec_step *st)
{
    const char *scheme = hfj_str(j, "prepend_scheme", NULL);
    st->kind = DEC_METASPACE;
    st->prepend = scheme ? strcmp(scheme, "never") != 0 : hfj_bool(j, "add_prefix_space", true);
    return parse_char(j, "replacement", "Metaspace", &st->ch);
}

static kiln_status parse_strs(const char *t, const json_t *j, dec_step *st, bool *known)
{
    size_t len;
    const char *s;
    if (strcmp(t, "WordPiece") == 0) {
        st->kind = DEC_WORDPIECE;
        st->cleanup = hfj_bool(j, "cleanup", true);
        s = hfj_str(j, "prefix", &len);
        return s ? set_str(st, s, len) : set_str(st, "##", 2);
    }
    if (strcmp(t, "BPEDecoder") == 0) {
        st->kind = DEC_BPE;
        s = hfj_str(j, "suffix", &len);
        return s ? set_str(st, s, len) : set_str(st, "</w>", 4);
    }
    if (strcmp(t, "Replace") == 0) {
        kiln_status rc;
        st->kind = DEC_REPLACE;
        if (!(s = hfj_str(j, "content", &len)))
            return kiln_err_set(KILN_ERR_FORMAT, "decoder Replace: missing \"content\"");
        if ((rc = set_str(st, s, len)))
            return rc;
        return hfj_pattern(j, "pattern", "decoder Replace", &st->re);
    }
    *known = false;
    return KILN_OK;
}

static kiln_status parse_step(const char *t, const json_t *j, dec_step *st, bool *known)
{
    *known = true;
    if (strcmp(t, "ByteLevel") == 0) {
        st->kind = DEC_BYTE_LEVEL;
        return KILN_OK;
    }
    if (strcmp(t, "ByteFallback") == 0) {
        st->kind = DEC_BYTE_FALLBACK;
        return KILN_OK;
    }
    if (strcmp(t, "Fuse") == 0) {
        st->kind = DEC_FUSE;
        return KILN_OK;
    }
    if (strcmp(t, "Metaspace") == 0)
        return parse_metaspace(j, st);
    if (strcmp(t, "Strip") == 0) {
        st->kind = DEC_STRIP;
        st->start = (size_t)hfj_int(j, "start", 0);
        st->stop = (size_t)hfj_int(j, "stop", 0);
        return parse_char(j, "content", "Strip", &st->ch);
    }
    return parse_strs(t, j, st, known);
}

static kiln_status parse_one(const json_t *j, dec *d)
{
    dec_step st;
    bool known;
    kiln_status rc;
    const char *t = hfj_type(j);
    if (strcmp(t, "Sequence") == 0) {
        json_t *arr = json_object_get(j, "decoders"), *v;
        size_t i;
        if (!json_is_array(arr))
            return kiln_err_set(KILN_ERR_FORMAT, "decoder Sequence: missing \"decoders\"");
        json_array_foreach(arr, i, v) {
            if ((rc = parse_one(v, d)))
                return rc;
        }
        return KILN_OK;
    }
    memset(&st, 0, sizeof(st));
    rc = parse_step(t, j, &st, &known);
    if (!rc && !known)
        rc = kiln_err_set(KILN_ERR_UNSUPPORTED, "decoder type '%s' is not supported", t);
    if (!rc)
        rc = push_step(d, &st);
    if (rc) {
        hfre_free(st.re);
        kiln_free(st.str);
    }
    return rc;
}

kiln_status dec_from_json(const json_t *j, dec **out)
{
    dec *d;
    kiln_status rc;
    *out = NULL;
    if (!j || json_is_null(j))
        return KILN_OK;
    if (!(d = kiln_calloc(1, sizeof(*d))))
        return kiln_err_set(KILN_ERR_OOM, "decoder: out of memory");
    if ((rc = parse_one(j, d))) {
        dec_free(d);
        return rc;
    }
    *out = d;
    return KILN_OK;
}

static kiln_status new_one(const dec_step *st, dec **out)
{
    dec *d = kiln_calloc(1, sizeof(*d));
    *out = NULL;
    if (!d || push_step(d, st)) {
        kiln_free(d);
        return kiln_err_set(KILN_ERR_OOM, "decoder: out of memory");
    }
    *out = d;
    return KILN_OK;
}

kiln_status dec_new_byte_level(dec **out)
{
    dec_step st;
    memset(&st, 0, sizeof(st));
    st.kind = DEC_BYTE_LEVEL;
    return new_one(&st, out);
}

kiln_status dec_new_wordpiece(const char *prefix, bool cleanup, dec **out)
{
    dec_step st;
    kiln_status rc;
    memset(&st, 0, sizeof(st));
    st.kind = DEC_WORDPIECE;
    st.cleanup = cleanup;
    if ((rc = set_str(&st, prefix, strlen(prefix))))
        return rc;
    if ((rc = new_one(&st, out)))
        kiln_free(st.str);
    return rc;
}

void dec_free(dec *d)
{
    size_t i;
    if (!d)
        return;
    for (i = 0; i < d->n; i++) {
        hfre_free(d->st[i].re);
        kiln_free(d->st[i].str);
    }
    kiln_free(d->st);
    kiln_free(d);
}
