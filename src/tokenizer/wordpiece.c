/*
 * wordpiece.c - the WordPiece model of wordpiece.h.
 *
 * Longest match at a position walks forward one character at a time through
 * `pre`, the set of all prefixes of vocab entries, remembering the last
 * prefix that is an entry, and stops at the first string that starts no
 * entry: the same answer as trying candidates from the longest down (the
 * reference loop), with lookups bounded by the match length instead of the
 * longest entry.
 */
#include "tokenizer/wordpiece.h"

#include "base/alloc.h"
#include "base/error.h"
#include "tokenizer/hfjson.h"

#include <string.h>

struct wp {
    vocab v;
    vocab pre; /* every char-boundary prefix of an entry; id 1 if it is an entry itself */
    char *unk, *prefix;
    size_t prefix_len, max_chars;
    int32_t unk_id;
};

kiln_status wp_new(const char *unk, const char *prefix, size_t max_chars, wp **out)
{
    wp *m = kiln_calloc(1, sizeof(*m));
    *out = NULL;
    if (!m || !(m->unk = kiln_strdup(unk)) || !(m->prefix = kiln_strdup(prefix))) {
        wp_free(m);
        return kiln_err_set(KILN_ERR_OOM, "wordpiece: out of memory");
    }
    vocab_init(&m->v);
    vocab_init(&m->pre);
    m->prefix_len = strlen(prefix);
    m->max_chars = max_chars;
    m->unk_id = -1;
    *out = m;
    return KILN_OK;
}

kiln_status wp_add_token(wp *m, const char *s, size_t len, int32_t id)
{
    return vocab_add(&m->v, s, len, id);
}

/* Insert every char-boundary prefix of every entry into m->pre. */
static kiln_status index_prefixes(wp *m)
{
    int64_t e;
    size_t len, k;
    kiln_status rc;
    for (e = 0; e < m->v.n_entries; e++) {
        const char *s = m->v.text.data + m->v.off[e];
        len = m->v.off[e + 1] - m->v.off[e];
        for (k = 1; k <= len; k++) {
            if (k < len && ((uint8_t)s[k] & 0xC0) == 0x80)
                continue;
            int32_t had = vocab_find(&m->pre, s, k);
            if ((rc = vocab_add(&m->pre, s, k, (k == len || had == 1) ? 1 : 0)))
                return rc;
        }
    }
    return KILN_OK;
}

kiln_status wp_finish(wp *m)
{
    kiln_status rc;
    if ((rc = index_prefixes(m)))
        return rc;
    m->unk_id = vocab_find(&m->v, m->unk, strlen(m->unk));
    if (m->unk_id < 0)
        return kiln_err_set(KILN_ERR_FORMAT, "wordpiece: unk_token '%s' is not in the vocab",
                            m->unk);
    return KILN_OK;
}

void wp_free(wp *m)
{
    if (!m)
        return;
    vocab_free(&m->v);
    vocab_free(&m->pre);
    kiln_free(m->unk);
    kiln_free(m->prefix);
    kiln_free(m);
}

const vocab *wp_vocab(const wp *m)
{
    return &m->v;
}

const char *wp_prefix(const wp *m)
{
    return m->prefix;
}

static size_t char_count(const char *s, size_t len)
{
    size_t i, n = 0;
    for (i = 0; i < len; i++)
        n += ((uint8_t)s[i] & 0xC0) != 0x80;
    return n;
}

/* Longest vocab piece at s[start..) (spelled with the prefix when start >
 * 0), end in *end; -1 if none, -2 on OOM. */
static int32_t longest(const wp *m, kiln_buf *tmp, const char *s, size_t len, size_t start,
                       size_t *end)
{
    size_t e = start;
    int32_t best = -1;
    buf_clear(tmp);
    if (start > 0 && buf_append(tmp, m->prefix, m->prefix_len))
        return -2;
    while (e < len) {
        size_t step = e + 1;
        while (step < len && ((uint8_t)s[step] & 0xC0) == 0x80)
            step++;
        if (buf_append(tmp, s + e, step - e))
            return -2;
        e = step;
        int32_t p = vocab_find(&m->pre, tmp->data, tmp->len);
        if (p < 0)
            break;
        if (p == 1) {
            best = vocab_find(&m->v, tmp->data, tmp->len);
            *end = e;
        }
    }
    return best;
}

kiln_status wp_encode(const wp *m, kiln_buf *tmp, const char *s, size_t len, kiln_ids *out)
{
    size_t start = 0, end = 0, mark = out->len;
    kiln_status rc;
    if (len == 0)
        return KILN_OK;
    if (char_count(s, len) > m->max_chars)
        return ids_push(out, m->unk_id);
    while (start < len) {
        int32_t id = longest(m, tmp, s, len, start, &end);
        if (id == -2)
            return kiln_err_set(KILN_ERR_OOM, "wordpiece: out of memory");
        if (id < 0) {
            out->len = mark;
            return ids_push(out, m->unk_id);
        }
        if ((rc = ids_push(out, id)))
            return rc;
        start = end;
    }
    return KILN_OK;
}

kiln_status wp_from_json(const json_t *model, wp **out)
{
    const char *unk = hfj_str(model, "unk_token", NULL), *prefix;
    json_t *v = json_object_get(model, "vocab"), *id;
    const char *k;
    kiln_status rc;
    wp *m;
    *out = NULL;
    prefix = hfj_str(model, "continuing_subword_prefix", NULL);
    if ((rc = wp_new(unk ? unk : "[UNK]", prefix ? prefix : "##",
                     (size_t)hfj_int(model, "max_input_chars_per_word", 100), &m)))
        return rc;
    if (!json_is_object(v))
        rc = kiln_err_set(KILN_ERR_FORMAT, "wordpiece: \"vocab\" is not an object");
    json_object_foreach(v, k, id) {
        if (rc)
            break;
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) > INT32_MAX - 1)
            rc = kiln_err_set(KILN_ERR_FORMAT, "wordpiece: vocab entry '%s' has a bad id", k);
        else
            rc = wp_add_token(m, k, strlen(k), (int32_t)json_integer_value(id));
    }
    if (!rc)
        rc = wp_finish(m);
    if (rc) {
        wp_free(m);
        return rc;
    }
    *out = m;
    return KILN_OK;
}
