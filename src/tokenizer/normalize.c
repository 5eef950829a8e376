/*
 * normalize.c - the normalizers of normalize.h.
 *
 * A normalizer is a flat list of steps (Sequence flattened); norm_apply runs
 * them one after the other, ping-ponging between the caller's two buffers.
 * Every step reads valid UTF-8 and writes valid UTF-8.
 */
#include "tokenizer/normalize.h"

#include "base/alloc.h"
#include "base/error.h"
#include "tokenizer/hfjson.h"
#include "tokenizer/hfre.h"
#include "tokenizer/unicode.h"

#include <string.h>
#include <utf8proc.h>

typedef enum norm_kind {
    NORM_NFC,
    NORM_NFD,
    NORM_NFKC,
    NORM_NFKD,
    NORM_LOWER,
    NORM_STRIP_ACCENTS,
    NORM_BERT,
    NORM_REPLACE,
    NORM_PREPEND,
    NORM_STRIP,
    NORM_BYTE_LEVEL,
} norm_kind;

typedef struct norm_step {
    norm_kind kind;
    bool clean_text, chinese, strip_accents, lowercase; /* Bert            */
    bool left, right;                                   /* Strip           */
    hfre *re;                                           /* Replace, or NULL for an empty pattern */
    char *str;                                          /* Replace content, Prepend */
    size_t str_len;
} norm_step;

struct norm {
    norm_step *steps;
    size_t n, cap;
};

/* ---- Unicode normal forms ------------------------------------------------ */

static bool all_ascii(const char *s, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++)
        if ((uint8_t)s[i] >= 0x80)
            return false;
    return true;
}

/* Combining class as tokenizers' normalizers see it. */
static int nf_ccc(int32_t c)
{
    int k;
    if (c < 0x300)
        return 0;
    k = utf8proc_get_property(c)->combining_class;
    return k && (uni_nf_ccc0((uint32_t)c) || uni_nf_keep((uint32_t)c)) ? 0 : k;
}

/* Canonical ordering: a stable sort of each run of nonzero classes. */
static void nf_order(int32_t *cp, size_t n)
{
    size_t i, j;
    for (i = 1; i < n; i++) {
        int32_t c = cp[i];
        int k = nf_ccc(c);
        if (k == 0)
            continue;
        for (j = i; j > 0 && nf_ccc(cp[j - 1]) > k; j--)
            cp[j] = cp[j - 1];
        cp[j] = c;
    }
}

/* Full decomposition of s into code points, held in out (as int32s, *n of
 * them), canonically ordered.  Characters the reference does not know stay
 * whole (uni_nf_keep). */
static kiln_status nf_decompose(const char *s, size_t len, bool compat, kiln_buf *out,
                                size_t *n)
{
    utf8proc_option_t opts = (utf8proc_option_t)(UTF8PROC_DECOMPOSE | (compat ? UTF8PROC_COMPAT : 0));
    size_t i = 0;
    int bound = 0;
    *n = 0;
    buf_clear(out);
    while (i < len) {
        uint32_t c = uni_next(s, len, &i);
        if (buf_reserve(out, 32 * sizeof(int32_t)))
            return KILN_ERR_OOM;
        int32_t *dst = (int32_t *)(void *)out->data + *n;
        utf8proc_ssize_t k = utf8proc_decompose_char((utf8proc_int32_t)c, dst, 32, opts, &bound);
        if (k < 1 || k > 32)
            return kiln_err_set(KILN_ERR_INTERNAL, "normalizer: cannot decompose U+%04X", c);
        if ((k != 1 || dst[0] != (int32_t)c) && uni_nf_keep(c)) {
            dst[0] = (int32_t)c;
            k = 1;
        }
        *n += (size_t)k;
        out->len = *n * sizeof(int32_t);
    }
    nf_order((int32_t *)(void *)out->data, *n);
    return KILN_OK;
}

kiln_status norm_unicode(const char *form, const char *s, size_t len, kiln_buf *out)
{
    bool compose = form[2] == 'C' || form[3] == 'C', compat = form[2] == 'K';
    utf8proc_ssize_t m;
    size_t n;
    kiln_status rc;
    buf_clear(out);
    if (all_ascii(s, len))
        return buf_append(out, s, len);
    if ((rc = nf_decompose(s, len, compat, out, &n)))
        return rc;
    m = utf8proc_reencode((utf8proc_int32_t *)(void *)out->data, (utf8proc_ssize_t)n,
                          (utf8proc_option_t)(UTF8PROC_STABLE | (compose ? UTF8PROC_COMPOSE : 0)));
    if (m < 0)
        return kiln_err_set(KILN_ERR_INTERNAL, "normalizer %s: %s", form, utf8proc_errmsg(m));
    out->len = (size_t)m;
    out->data[m] = '\0';
    return KILN_OK;
}

/* ---- character-wise steps -------------------------------------------------- */

static bool is_chinese(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* BertNormalizer's clean_text and handle_chinese_chars in one pass.  Output
 * is at most 5/3 of the input (a 3-byte CJK character gains two spaces). */
static kiln_status bert_clean(const norm_step *st, const char *s, size_t len, kiln_buf *out)
{
    size_t i = 0, start;
    char *o;
    if (buf_reserve(out, len * 2))
        return KILN_ERR_OOM;
    o = out->data + out->len;
    while (i < len) {
        start = i;
        uint32_t c = uni_next(s, len, &i);
        bool tnr = c == '\t' || c == '\n' || c == '\r', ws = tnr || uni_is_space(c);
        if (st->clean_text && !tnr && uni_bert_other(c))
            continue;
        if (st->clean_text && ws) {
            *o++ = ' ';
            continue;
        }
        bool pad = st->chinese && c >= 0x3400 && is_chinese(c);
        if (pad)
            *o++ = ' ';
        memcpy(o, s + start, i - start);
        o += i - start;
        if (pad)
            *o++ = ' ';
    }
    out->len = (size_t)(o - out->data);
    out->data[out->len] = '\0';
    return KILN_OK;
}

/* Drop marks: nonspacing ones only (Bert's strip_accents, after NFD), or
 * all of category M (StripAccents, tokenizers' is_combining_mark). */
static kiln_status drop_marks(const char *s, size_t len, bool all, kiln_buf *out)
{
    size_t i = 0, start;
    kiln_status rc = KILN_OK;
    while (i < len && !rc) {
        start = i;
        uint32_t c = uni_next(s, len, &i);
        if (c >= 0x300 && (all ? uni_strip_mark(c) : uni_bert_mn(c)))
            continue;
        rc = buf_append(out, s + start, i - start);
    }
    return rc;
}

static kiln_status lower(const char *s, size_t len, kiln_buf *out)
{
    size_t i = 0;
    kiln_status rc = KILN_OK;
    while (i < len && !rc) {
        uint8_t b = (uint8_t)s[i];
        if (b >= 0x80) {
            rc = uni_append_lower(out, uni_next(s, len, &i));
            continue;
        }
        /* lowercasing may have grown the text: re-check the room */
        if (out->len + 1 >= out->cap && (rc = buf_reserve(out, len - i)))
            break;
        out->data[out->len++] = (char)((b >= 'A' && b <= 'Z') ? b + 32 : b);
        i++;
    }
    if (!rc && (rc = buf_reserve(out, 0)) == KILN_OK)
        out->data[out->len] = '\0';
    return rc;
}

static kiln_status bert(const norm_step *st, const char *s, size_t len, kiln_buf *out,
                        kiln_buf *tmp)
{
    kiln_status rc;
    buf_clear(tmp);
    if ((rc = bert_clean(st, s, len, tmp)))
        return rc;
    if (st->strip_accents) {
        if ((rc = norm_unicode("NFD", tmp->data ? tmp->data : "", tmp->len, out)))
            return rc;
        buf_clear(tmp);
        if ((rc = drop_marks(out->data, out->len, false, tmp)))
            return rc;
    }
    buf_clear(out);
    if (st->lowercase)
        return lower(tmp->data ? tmp->data : "", tmp->len, out);
    return buf_append(out, tmp->data ? tmp->data : "", tmp->len);
}

static kiln_status strip(const norm_step *st, const char *s, size_t len, kiln_buf *out)
{
    size_t b = 0, e = len, i;
    if (st->left) {
        while (b < len) {
            i = b;
            if (!uni_is_space(uni_next(s, len, &i)))
                break;
            b = i;
        }
    }
    if (st->right) {
        while (e > b) {
            size_t k = e - 1;
            while (k > b && ((uint8_t)s[k] & 0xC0) == 0x80)
                k--;
            i = k;
            if (!uni_is_space(uni_next(s, len, &i)))
                break;
            e = k;
        }
    }
    return buf_append(out, s + b, e - b);
}

static kiln_status replace(const norm_step *st, const char *s, size_t len, kiln_buf *out,
                           pcre2_match_data *md)
{
    hfre_iter it;
    size_t prev = 0, ms, me;
    bool found;
    kiln_status rc;
    if (!st->re || len == 0)
        return buf_append(out, s, len);
    hfre_iter_init(&it, st->re, s, len, md);
    for (;;) {
        if ((rc = hfre_next(&it, &ms, &me, &found)))
            return rc;
        if (!found)
            break;
        if ((rc = buf_append(out, s + prev, ms - prev)) ||
            (rc = buf_append(out, st->str, st->str_len)))
            return rc;
        prev = me;
    }
    return buf_append(out, s + prev, len - prev);
}

static kiln_status byte_level(const char *s, size_t len, kiln_buf *out)
{
    size_t i;
    kiln_status rc = KILN_OK;
    for (i = 0; i < len && !rc; i++)
        rc = uni_append(out, uni_byte_char((uint8_t)s[i]));
    return rc;
}

static kiln_status step_apply(const norm_step *st, const char *s, size_t len, kiln_buf *out,
                              kiln_buf *tmp, pcre2_match_data *md)
{
    static const char *forms[] = {"NFC", "NFD", "NFKC", "NFKD"};
    buf_clear(out);
    switch (st->kind) {
    case NORM_NFC: case NORM_NFD: case NORM_NFKC: case NORM_NFKD:
        return norm_unicode(forms[st->kind], s, len, out);
    case NORM_LOWER:
        return lower(s, len, out);
    case NORM_STRIP_ACCENTS:
        return drop_marks(s, len, true, out);
    case NORM_BERT:
        return bert(st, s, len, out, tmp);
    case NORM_REPLACE:
        return replace(st, s, len, out, md);
    case NORM_PREPEND:
        if (len && buf_append(out, st->str, st->str_len))
            return KILN_ERR_OOM;
        return buf_append(out, s, len);
    case NORM_STRIP:
        return strip(st, s, len, out);
    case NORM_BYTE_LEVEL:
        return byte_level(s, len, out);
    }
    return kiln_err_set(KILN_ERR_INTERNAL, "normalizer: bad step");
}

kiln_status norm_apply(const norm *n, const char *s, size_t len, kiln_buf *out,
                       kiln_buf scratch[2], pcre2_match_data *md)
{
    kiln_status rc;
    size_t i;
    if (!n || n->n == 0) {
        buf_clear(out);
        return buf_append(out, s, len);
    }
    if ((rc = step_apply(&n->steps[0], s, len, out, &scratch[1], md)))
        return rc;
    for (i = 1; i < n->n; i++) {
        kiln_buf t = *out; /* the text so far moves to scratch[0] */
        *out = scratch[0];
        scratch[0] = t;
        rc = step_apply(&n->steps[i], t.data ? t.data : "", t.len, out, &scratch[1], md);
        if (rc)
            return rc;
    }
    return buf_reserve(out, 0);
}

/* ---- construction ------------------------------------------------------------ */

static kiln_status push_step(norm *n, const norm_step *st)
{
    if (n->n == n->cap) {
        size_t cap = n->cap ? n->cap * 2 : 4;
        norm_step *v = kiln_realloc(n->steps, cap * sizeof(*v));
        if (!v)
            return kiln_err_set(KILN_ERR_OOM, "normalizer: out of memory");
        n->steps = v;
        n->cap = cap;
    }
    n->steps[n->n++] = *st;
    return KILN_OK;
}

static kiln_status dup_field(const json_t *j, const char *key, const char *what, norm_step *st)
{
    size_t len;
    const char *s = hfj_str(j, key, &len);
    if (!s)
        return kiln_err_set(KILN_ERR_FORMAT, "normalizer %s: missing \"%s\"", what, key);
    if (!(st->str = kiln_malloc(len + 1)))
        return kiln_err_set(KILN_ERR_OOM, "normalizer: out of memory");
    memcpy(st->str, s, len);
    st->str[len] = '\0';
    st->str_len = len;
    return KILN_OK;
}

static kiln_status parse_bert(const json_t *j, norm_step *st)
{
    json_t *sa = json_object_get(j, "strip_accents");
    st->kind = NORM_BERT;
    st->clean_text = hfj_bool(j, "clean_text", true);
    st->chinese = hfj_bool(j, "handle_chinese_chars", true);
    st->lowercase = hfj_bool(j, "lowercase", true);
    st->strip_accents = json_is_boolean(sa) ? json_is_true(sa) : st->lowercase;
    return KILN_OK;
}

static kiln_status parse_one(const json_t *j, norm *n);

static kiln_status parse_seq(const json_t *j, norm *n)
{
    json_t *arr = json_object_get(j, "normalizers"), *v;
    size_t i;
    kiln_status rc;
    if (!json_is_array(arr))
        return kiln_err_set(KILN_ERR_FORMAT, "normalizer Sequence: missing \"normalizers\"");
    json_array_foreach(arr, i, v) {
        if ((rc = parse_one(v, n)))
            return rc;
    }
    return KILN_OK;
}

static kiln_status parse_simple(const char *t, const json_t *j, norm_step *st, bool *known)
{
    static const char *names[] = {"NFC", "NFD", "NFKC", "NFKD", "Lowercase", "StripAccents"};
    size_t i;
    *known = true;
    for (i = 0; i < KILN_ARRAY_LEN(names); i++) {
        if (strcmp(t, names[i]) == 0) {
            st->kind = (norm_kind)i;
            return KILN_OK;
        }
    }
    if (strcmp(t, "BertNormalizer") == 0)
        return parse_bert(j, st);
    if (strcmp(t, "ByteLevel") == 0) {
        st->kind = NORM_BYTE_LEVEL;
        return KILN_OK;
    }
    if (strcmp(t, "Strip") == 0) {
        st->kind = NORM_STRIP;
        st->left = hfj_bool(j, "strip_left", true);
        st->right = hfj_bool(j, "strip_right", true);
        return KILN_OK;
    }
    if (strcmp(t, "Prepend") == 0) {
        st->kind = NORM_PREPEND;
        return dup_field(j, "prepend", "Prepend", st);
    }
    if (strcmp(t, "Replace") == 0) {
        kiln_status rc;
        st->kind = NORM_REPLACE;
        if ((rc = dup_field(j, "content", "Replace", st)))
            return rc;
        return hfj_pattern(j, "pattern", "normalizer Replace", &st->re);
    }
    *known = false;
    return KILN_OK;
}

static kiln_status parse_one(const json_t *j, norm *n)
{
    norm_step st;
    bool known;
    kiln_status rc;
    const char *t = hfj_type(j);
    if (strcmp(t, "Sequence") == 0)
        return parse_seq(j, n);
    memset(&st, 0, sizeof(st));
    rc = parse_simple(t, j, &st, &known);
    if (!rc && !known)
        rc = kiln_err_set(KILN_ERR_UNSUPPORTED, "normalizer type '%s' is not supported", t);
    if (!rc)
        rc = push_step(n, &st);
    if (rc) {
        hfre_free(st.re);
        kiln_free(st.str);
    }
    return rc;
}

kiln_status norm_from_json(const json_t *j, norm **out)
{
    norm *n;
    kiln_status rc;
    *out = NULL;
    if (!j || json_is_null(j))
        return KILN_OK;
    if (!json_is_object(j))
        return kiln_err_set(KILN_ERR_FORMAT, "normalizer: not an object");
    if (!(n = kiln_calloc(1, sizeof(*n))))
        return kiln_err_set(KILN_ERR_OOM, "normalizer: out of memory");
    if ((rc = parse_one(j, n))) {
        norm_free(n);
        return rc;
    }
    *out = n;
    return KILN_OK;
}

kiln_status norm_new_bert(bool clean_text, bool chinese, int strip_accents, bool lowercase,
                          norm **out)
{
    norm_step st;
    norm *n = kiln_calloc(1, sizeof(*n));
    *out = NULL;
    if (!n)
        return kiln_err_set(KILN_ERR_OOM, "normalizer: out of memory");
    memset(&st, 0, sizeof(st));
    st.kind = NORM_BERT;
    st.clean_text = clean_text;
    st.chinese = chinese;
    st.lowercase = lowercase;
    st.strip_accents = strip_accents < 0 ? lowercase : strip_accents != 0;
    if (push_step(n, &st)) {
        norm_free(n);
        return KILN_ERR_OOM;
    }
    *out = n;
    return KILN_OK;
}

kiln_status norm_new_nfc(norm **out)
{
    norm_step st;
    norm *n = kiln_calloc(1, sizeof(*n));
    *out = NULL;
    memset(&st, 0, sizeof(st));
    st.kind = NORM_NFC;
    if (!n || push_step(n, &st)) {
        kiln_free(n);
        return kiln_err_set(KILN_ERR_OOM, "normalizer: out of memory");
    }
    *out = n;
    return KILN_OK;
}

void norm_free(norm *n)
{
    size_t i;
    if (!n)
        return;
    for (i = 0; i < n->n; i++) {
        hfre_free(n->steps[i].re);
        kiln_free(n->steps[i].str);
    }
    kiln_free(n->steps);
    kiln_free(n);
}
