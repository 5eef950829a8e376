/*
 * added.c - added-token matching (added.h).
 *
 * Matcher: the patterns sorted bytewise.  At a text position the candidates
 * sharing the first k bytes with the text form one contiguous run of the
 * sorted array; a pattern of exactly k bytes sits at the run's start.  The
 * run is narrowed byte by byte with binary searches and the last complete
 * pattern seen is the longest match there.  The first position (from the
 * left) with any match gives the leftmost-longest match, the rule of an
 * Aho-Corasick automaton in LeftmostLongest mode.
 */
#include "tokenizer/added.h"

#include "base/alloc.h"
#include "base/error.h"
#include "tokenizer/unicode.h"

#include <stdlib.h>
#include <string.h>

kiln_status added_add(added_set *a, const char *s, size_t len, int32_t id, bool special,
                      bool lstrip, bool rstrip, bool single_word, bool normalized)
{
    size_t i;
    added_tok *t;
    if (len == 0)
        return KILN_OK;
    for (i = 0; i < a->n; i++)
        if (a->toks[i].len == len && memcmp(a->toks[i].content, s, len) == 0)
            return KILN_OK;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        added_tok *v = kiln_realloc(a->toks, cap * sizeof(*v));
        if (!v)
            return kiln_err_set(KILN_ERR_OOM, "added tokens: out of memory");
        a->toks = v;
        a->cap = cap;
    }
    t = &a->toks[a->n];
    if (!(t->content = kiln_malloc(len + 1)))
        return kiln_err_set(KILN_ERR_OOM, "added tokens: out of memory");
    memcpy(t->content, s, len);
    t->content[len] = '\0';
    t->len = len;
    t->id = id;
    t->special = special;
    t->lstrip = lstrip;
    t->rstrip = rstrip;
    t->single_word = single_word;
    t->normalized = normalized;
    a->n++;
    return KILN_OK;
}

static int pat_cmp(const void *x, const void *y)
{
    const added_pat *a = x, *b = y;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->s, b->s, n);
    if (c)
        return c;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    return a->tok < b->tok ? -1 : a->tok > b->tok;
}

static void trie_sort(added_trie *t)
{
    size_t i;
    if (t->n)
        qsort(t->p, t->n, sizeof(*t->p), pat_cmp);
    memset(t->first, 0, sizeof(t->first));
    for (i = 0; i < t->n; i++) {
        uint8_t b = (uint8_t)t->p[i].s[0];
        t->first[b >> 3] |= (uint8_t)(1u << (b & 7));
    }
}

/* Normalized spellings go into norm_text first (it may move while it
 * grows); the pattern pointers are set once it is complete. */
kiln_status added_index(added_set *a, added_norm_fn nf, void *ctx)
{
    kiln_buf one = {0};
    kiln_status rc = KILN_OK;
    size_t i, k = 0;
    a->raw.p = kiln_calloc(a->n ? a->n : 1, sizeof(added_pat));
    a->norm.p = kiln_calloc(a->n ? a->n : 1, sizeof(added_pat));
    a->norm_off = kiln_calloc(a->n ? a->n + 1 : 1, sizeof(size_t));
    if (!a->raw.p || !a->norm.p || !a->norm_off)
        return kiln_err_set(KILN_ERR_OOM, "added tokens: out of memory");
    for (i = 0; i < a->n && !rc; i++) {
        added_tok *t = &a->toks[i];
        if (!t->normalized) {
            a->raw.p[a->raw.n++] = (added_pat){t->content, t->len, (uint32_t)i};
            continue;
        }
        buf_clear(&one);
        rc = nf ? nf(ctx, t->content, t->len, &one) : buf_append(&one, t->content, t->len);
        if (rc)
            break;
        a->norm_off[k] = a->norm_text.len;
        t->norm_off = a->norm_text.len;
        t->norm_len = one.len;
        a->norm.p[k++] = (added_pat){NULL, one.len, (uint32_t)i};
        rc = buf_append(&a->norm_text, one.data ? one.data : "", one.len);
    }
    buf_free(&one);
    if (rc)
        return rc;
    for (i = 0; i < k; i++)
        a->norm.p[i].s = a->norm_text.data + a->norm_off[i];
    a->norm.n = 0;
    for (i = 0; i < k; i++) /* drop spellings normalized to nothing */
        if (a->norm.p[i].len)
            a->norm.p[a->norm.n++] = a->norm.p[i];
    trie_sort(&a->raw);
    trie_sort(&a->norm);
    return KILN_OK;
}

/* First index in [lo, hi) whose byte k is >= c (all have len > k). */
static size_t lower_at(const added_pat *p, size_t lo, size_t hi, size_t k, uint8_t c)
{
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uint8_t)p[mid].s[k] < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Longest pattern at s[pos..); its index in t->p or -1. */
static int64_t longest_at(const added_trie *t, const char *s, size_t len, size_t pos)
{
    size_t lo = 0, hi = t->n, k = 0;
    int64_t best = -1;
    for (;;) {
        bool first = true;
        while (lo < hi && t->p[lo].len == k) {
            if (first)
                best = (int64_t)lo;
            first = false;
            lo++;
        }
        if (lo >= hi || pos + k >= len)
            return best;
        uint8_t c = (uint8_t)s[pos + k];
        lo = lower_at(t->p, lo, hi, k, c);
        if (c < 0xFF)
            hi = lower_at(t->p, lo, hi, k, (uint8_t)(c + 1));
        k++;
    }
}

/* Leftmost-longest match at or after pos: true with [*ms, *me) and *tok. */
static bool find_from(const added_trie *t, const char *s, size_t len, size_t pos, size_t *ms,
                      size_t *me, uint32_t *tok)
{
    for (; pos < len; pos++) {
        uint8_t b = (uint8_t)s[pos];
        if (!(t->first[b >> 3] & (1u << (b & 7))))
            continue;
        int64_t i = longest_at(t, s, len, pos);
        if (i >= 0) {
            *ms = pos;
            *me = pos + t->p[i].len;
            *tok = t->p[i].tok;
            return true;
        }
    }
    return false;
}

/* ---- splitting ------------------------------------------------------------------- */

static kiln_status seg_push(added_segs *g, size_t s, size_t e, int64_t tok)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 32;
        added_seg *v = kiln_realloc(g->v, cap * sizeof(*v));
        if (!v)
            return kiln_err_set(KILN_ERR_OOM, "added tokens: out of memory");
        g->v = v;
        g->cap = cap;
    }
    g->v[g->n++] = (added_seg){s, e, tok};
    return KILN_OK;
}

/* Is the character ending at s[end) (end > 0) a word character? */
static bool word_before(const char *s, size_t end)
{
    size_t b = end - 1, i;
    while (b > 0 && ((uint8_t)s[b] & 0xC0) == 0x80)
        b--;
    i = b;
    return uni_is_word(uni_next(s, end, &i));
}

static bool word_after(const char *s, size_t len, size_t pos)
{
    return pos < len && uni_is_word(uni_next(s, len, &pos));
}

/* Start of the whitespace run ending at s[end). */
static size_t space_back(const char *s, size_t end)
{
    while (end > 0) {
        size_t b = end - 1, i;
        while (b > 0 && ((uint8_t)s[b] & 0xC0) == 0x80)
            b--;
        i = b;
        if (!uni_is_space(uni_next(s, end, &i)))
            break;
        end = b;
    }
    return end;
}

/* End of the whitespace run starting at s[pos]. */
static size_t space_fwd(const char *s, size_t len, size_t pos)
{
    while (pos < len) {
        size_t i = pos;
        if (!uni_is_space(uni_next(s, len, &i)))
            break;
        pos = i;
    }
    return pos;
}

kiln_status added_split(const added_set *a, bool normalized_tokens, const char *s, size_t len,
                        added_segs *segs)
{
    const added_trie *t = normalized_tokens ? &a->norm : &a->raw;
    size_t pos = 0, done = 0, ms, me;
    uint32_t ti;
    kiln_status rc;
    segs->n = 0;
    while (t->n && find_from(t, s, len, pos, &ms, &me, &ti)) {
        const added_tok *k = &a->toks[ti];
        pos = me;
        if (k->single_word && ((ms > 0 && word_before(s, ms)) || word_after(s, len, me)))
            continue;
        if (k->lstrip) {
            size_t ns = space_back(s, ms);
            ms = ns > done ? ns : done;
        }
        if (k->rstrip)
            me = space_fwd(s, len, me);
        if (done < ms && (rc = seg_push(segs, done, ms, -1)))
            return rc;
        if ((rc = seg_push(segs, ms, me, (int64_t)ti)))
            return rc;
        done = me;
    }
    if (done < len)
        return seg_push(segs, done, len, -1);
    return KILN_OK;
}

const char *added_spelling(const added_set *a, size_t k, size_t *len)
{
    const added_tok *t = &a->toks[k];
    if (!t->normalized || !a->norm_text.data) {
        *len = t->len;
        return t->content;
    }
    *len = t->norm_len;
    return a->norm_text.data + t->norm_off;
}

void added_free(added_set *a)
{
    size_t i;
    for (i = 0; i < a->n; i++)
        kiln_free(a->toks[i].content);
    kiln_free(a->toks);
    kiln_free(a->raw.p);
    kiln_free(a->norm.p);
    kiln_free(a->norm_off);
    buf_free(&a->norm_text);
    memset(a, 0, sizeof(*a));
}
