/*
 * pretokenize.c - the pre-tokenizers of pretokenize.h.
 *
 * Every cutting stage follows the same two steps as `tokenizers`:
 *   1. find the "matches" of its pattern: a list of ranges covering the
 *      piece, each flagged match / not a match (regex matches with the gaps
 *      between them; for a character predicate each matching character is a
 *      match of its own);
 *   2. fold that list by the SplitDelimiterBehavior (behave()), then hand
 *      each non-empty range to the next stage.
 * Invariants: a stage's ranges and text buffers belong to that stage and
 * stay untouched while deeper stages run, so depth-first recursion is safe.
 */
#include "tokenizer/pretokenize.h"

#include "base/alloc.h"
#include "base/error.h"
#include "tokenizer/hfjson.h"
#include "tokenizer/hfre.h"
#include "tokenizer/unicode.h"

#include <string.h>

#define PRETOK_GPT2_RE \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

typedef enum pt_behavior {
    PT_REMOVED,
    PT_ISOLATED,
    PT_MERGED_PREV,
    PT_MERGED_NEXT,
    PT_CONTIGUOUS,
} pt_behavior;

typedef enum pt_kind {
    PT_SPLIT,
    PT_BYTE_LEVEL,
    PT_METASPACE,
    PT_BERT,
    PT_WHITESPACE,
    PT_WHITESPACE_SPLIT,
    PT_DIGITS,
    PT_PUNCT,
    PT_CHAR_DELIM,
} pt_kind;

enum { PT_PREPEND_ALWAYS, PT_PREPEND_FIRST, PT_PREPEND_NEVER };

typedef struct pt_stage {
    pt_kind kind;
    pt_behavior behavior;
    bool invert;        /* Split                                      */
    bool prefix_space;  /* ByteLevel add_prefix_space                  */
    bool use_regex;     /* ByteLevel                                   */
    bool individual;    /* Digits                                      */
    bool split;         /* Metaspace                                   */
    int prepend;        /* Metaspace PT_PREPEND_*                      */
    hfre *re;           /* Split (NULL: empty String, matches nothing); ByteLevel's GPT-2 regex */
    uint32_t ch;        /* Metaspace replacement, CharDelimiterSplit   */
    char rep[5];        /* UTF-8 of ch                                 */
    size_t rep_len;
} pt_stage;

struct pretok {
    pt_stage *st;
    size_t n, cap;
    char bmap[256][2]; /* GPT-2 byte -> UTF-8 of its code point */
    uint8_t blen[256];
};

typedef struct pt_range {
    size_t s, e;
    bool m;
} pt_range;

typedef struct pt_scratch {
    kiln_buf text, text2;
    pt_range *r;
    size_t nr, cap;
} pt_scratch;

struct pretok_state {
    pt_scratch *sc; /* one per stage */
    size_t n;
    pcre2_match_data *md;
    pretok_emit_fn emit;
    void *ctx;
};

/* ---- match lists and behaviors ---------------------------------------------- */

static kiln_status push_range(pt_scratch *sc, size_t s, size_t e, bool m)
{
    if (sc->nr == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 64;
        pt_range *r = kiln_realloc(sc->r, cap * sizeof(*r));
        if (!r)
            return kiln_err_set(KILN_ERR_OOM, "pre-tokenizer: out of memory");
        sc->r = r;
        sc->cap = cap;
    }
    sc->r[sc->nr++] = (pt_range){s, e, m};
    return KILN_OK;
}

/* Fold the match list in sc->r by behavior; returns the first kept index
 * (ranges [first, nr) remain; match flags of kept ranges are meaningless). */
static size_t behave(pt_scratch *sc, pt_behavior b)
{
    size_t i, w = 0, n = sc->nr;
    bool prev = false;
    pt_range *r = sc->r;
    if (b == PT_MERGED_NEXT) {
        w = n;
        for (i = n; i-- > 0;) {
            bool m = r[i].m;
            if (m && !prev && w < n)
                r[w].s = r[i].s;
            else
                r[--w] = r[i];
            prev = m;
        }
        return w;
    }
    for (i = 0; i < n; i++) {
        bool m = r[i].m;
        if (b == PT_REMOVED) {
            if (!m)
                r[w++] = r[i];
        } else if (b == PT_ISOLATED) {
            r[w++] = r[i];
        } else if (w > 0 && ((b == PT_CONTIGUOUS && m == prev) ||
                             (b == PT_MERGED_PREV && m && !prev))) {
            r[w - 1].e = r[i].e;
        } else {
            r[w++] = r[i];
        }
        prev = m;
    }
    sc->nr = w;
    return 0;
}

static kiln_status regex_matches(pt_scratch *sc, const hfre *re, pcre2_match_data *md,
                                 const char *s, size_t len, bool invert)
{
    hfre_iter it;
    size_t prev = 0, ms, me;
    bool found;
    kiln_status rc;
    sc->nr = 0;
    if (!re)
        return push_range(sc, 0, len, invert);
    hfre_iter_init(&it, re, s, len, md);
    for (;;) {
        if ((rc = hfre_next(&it, &ms, &me, &found)))
            return rc;
        if (!found)
            break;
        if (prev != ms && (rc = push_range(sc, prev, ms, invert)))
            return rc;
        if ((rc = push_range(sc, ms, me, !invert)))
            return rc;
        prev = me;
    }
    if (prev != len)
        return push_range(sc, prev, len, invert);
    return KILN_OK;
}

typedef bool (*pt_pred)(const pt_stage *stg, uint32_t c);

static kiln_status char_matches(pt_scratch *sc, const pt_stage *stg, pt_pred pred,
                                const char *s, size_t len)
{
    size_t i = 0, last = 0, b;
    kiln_status rc;
    sc->nr = 0;
    while (i < len) {
        b = i;
        if (pred(stg, uni_next(s, len, &i))) {
            if (last < b && (rc = push_range(sc, last, b, false)))
                return rc;
            if ((rc = push_range(sc, b, i, true)))
                return rc;
            last = i;
        }
    }
    if (last < len)
        return push_range(sc, last, len, false);
    return KILN_OK;
}

static bool pred_space(const pt_stage *stg, uint32_t c)
{
    (void)stg;
    return uni_is_space(c);
}

static bool pred_punct(const pt_stage *stg, uint32_t c)
{
    (void)stg;
    return uni_bert_punct(c);
}

static bool pred_numeric(const pt_stage *stg, uint32_t c)
{
    (void)stg;
    return uni_is_numeric(c);
}

static bool pred_char(const pt_stage *stg, uint32_t c)
{
    return c == stg->ch;
}

/* ---- running ------------------------------------------------------------------ */

static kiln_status run(const pretok *p, pretok_state *st, size_t i, const char *s, size_t len,
                       bool first);

/* Hand ranges [from, nr) of stage i's list (over s) to stage i + 1. */
static kiln_status emit_ranges(const pretok *p, pretok_state *st, size_t i, const char *s,
                               bool first, size_t from)
{
    pt_scratch *sc = &st->sc[i];
    size_t k;
    kiln_status rc;
    for (k = from; k < sc->nr; k++) {
        pt_range r = sc->r[k];
        if (r.e > r.s && (rc = run(p, st, i + 1, s + r.s, r.e - r.s, first && r.s == 0)))
            return rc;
    }
    return KILN_OK;
}

/* BertPreTokenizer: whitespace removed, each punctuation char isolated. */
static kiln_status bert_ranges(pt_scratch *sc, const char *s, size_t len)
{
    size_t i = 0, run_start = 0, b;
    kiln_status rc;
    sc->nr = 0;
    while (i < len) {
        b = i;
        uint32_t c = uni_next(s, len, &i);
        bool sp = uni_is_space(c), pu = !sp && uni_bert_punct(c);
        if (!sp && !pu)
            continue;
        if (run_start < b && (rc = push_range(sc, run_start, b, false)))
            return rc;
        if (pu && (rc = push_range(sc, b, i, false)))
            return rc;
        run_start = i;
    }
    return run_start < len ? push_range(sc, run_start, len, false) : KILN_OK;
}

/* Whitespace: the matches of \w+|[^\w\s]+ (whitespace removed). */
static kiln_status whitespace_ranges(pt_scratch *sc, const char *s, size_t len)
{
    size_t i = 0, run_start = 0, b;
    int cls = 0, prev = 0; /* 0 space, 1 word, 2 other */
    kiln_status rc;
    sc->nr = 0;
    while (i < len) {
        b = i;
        uint32_t c = uni_next(s, len, &i);
        cls = uni_is_word(c) ? 1 : uni_is_space(c) ? 0 : 2;
        if (cls != prev) {
            if (prev && (rc = push_range(sc, run_start, b, false)))
                return rc;
            run_start = b;
        }
        prev = cls;
    }
    return prev ? push_range(sc, run_start, len, false) : KILN_OK;
}

static kiln_status byte_level(const pretok *p, pretok_state *st, size_t i, const char *s,
                              size_t len, bool first)
{
    const pt_stage *stg = &p->st[i];
    pt_scratch *sc = &st->sc[i];
    size_t k, j;
    kiln_status rc;
    if (stg->prefix_space && s[0] != ' ') {
        buf_clear(&sc->text);
        if ((rc = buf_append_char(&sc->text, ' ')) || (rc = buf_append(&sc->text, s, len)))
            return rc;
        s = sc->text.data;
        len = sc->text.len;
    }
    sc->nr = 0;
    if (stg->use_regex)
        rc = regex_matches(sc, stg->re, st->md, s, len, false);
    else
        rc = push_range(sc, 0, len, false);
    for (k = 0; k < sc->nr && !rc; k++) {
        pt_range r = sc->r[k];
        if (r.e == r.s)
            continue;
        buf_clear(&sc->text2);
        if ((rc = buf_reserve(&sc->text2, (r.e - r.s) * 2)))
            return rc;
        for (j = r.s; j < r.e; j++) {
            uint8_t b = (uint8_t)s[j];
            memcpy(sc->text2.data + sc->text2.len, p->bmap[b], 2);
            sc->text2.len += p->blen[b];
        }
        rc = run(p, st, i + 1, sc->text2.data, sc->text2.len, first && r.s == 0);
    }
    return rc;
}

static kiln_status metaspace(const pretok *p, pretok_state *st, size_t i, const char *s,
                             size_t len, bool first)
{
    const pt_stage *stg = &p->st[i];
    pt_scratch *sc = &st->sc[i];
    size_t k;
    kiln_status rc = KILN_OK;
    bool starts = s[0] == ' ' || (len >= stg->rep_len && memcmp(s, stg->rep, stg->rep_len) == 0);
    buf_clear(&sc->text);
    if (!starts && (stg->prepend == PT_PREPEND_ALWAYS ||
                    (stg->prepend == PT_PREPEND_FIRST && first)))
        rc = buf_append(&sc->text, stg->rep, stg->rep_len);
    if (!rc)
        rc = buf_reserve(&sc->text, len * stg->rep_len);
    for (k = 0; k < len && !rc; k++) {
        if (s[k] == ' ')
            rc = buf_append(&sc->text, stg->rep, stg->rep_len);
        else
            sc->text.data[sc->text.len++] = s[k];
    }
    if (rc)
        return rc;
    sc->text.data[sc->text.len] = '\0';
    if (!stg->split)
        return run(p, st, i + 1, sc->text.data, sc->text.len, first);
    if ((rc = char_matches(sc, stg, pred_char, sc->text.data, sc->text.len)))
        return rc;
    return emit_ranges(p, st, i, sc->text.data, first, behave(sc, PT_MERGED_NEXT));
}

static kiln_status cut(const pretok *p, pretok_state *st, size_t i, const char *s, size_t len,
                       bool first)
{
    const pt_stage *stg = &p->st[i];
    pt_scratch *sc = &st->sc[i];
    pt_behavior b = stg->behavior;
    kiln_status rc;
    switch (stg->kind) {
    case PT_SPLIT:
        rc = regex_matches(sc, stg->re, st->md, s, len, stg->invert);
        break;
    case PT_WHITESPACE_SPLIT:
        rc = char_matches(sc, stg, pred_space, s, len);
        b = PT_REMOVED;
        break;
    case PT_PUNCT:
        rc = char_matches(sc, stg, pred_punct, s, len);
        break;
    case PT_DIGITS:
        rc = char_matches(sc, stg, pred_numeric, s, len);
        b = stg->individual ? PT_ISOLATED : PT_CONTIGUOUS;
        break;
    case PT_CHAR_DELIM:
        rc = char_matches(sc, stg, pred_char, s, len);
        b = PT_REMOVED;
        break;
    case PT_BERT:
        rc = bert_ranges(sc, s, len);
        b = PT_ISOLATED;
        break;
    default:
        rc = whitespace_ranges(sc, s, len);
        b = PT_ISOLATED;
        break;
    }
    if (rc)
        return rc;
    return emit_ranges(p, st, i, s, first, behave(sc, b));
}

static kiln_status run(const pretok *p, pretok_state *st, size_t i, const char *s, size_t len,
                       bool first)
{
    if (len == 0)
        return KILN_OK;
    if (!p || i == p->n)
        return st->emit(st->ctx, s, len);
    if (p->st[i].kind == PT_BYTE_LEVEL)
        return byte_level(p, st, i, s, len, first);
    if (p->st[i].kind == PT_METASPACE)
        return metaspace(p, st, i, s, len, first);
    return cut(p, st, i, s, len, first);
}

kiln_status pretok_run(const pretok *p, pretok_state *st, const char *s, size_t len, bool first,
                       pretok_emit_fn emit, void *ctx)
{
    st->emit = emit;
    st->ctx = ctx;
    return run(p, st, 0, s, len, first);
}

kiln_status pretok_state_new(const pretok *p, pretok_state **out)
{
    pretok_state *st = kiln_calloc(1, sizeof(*st));
    *out = NULL;
    if (!st)
        goto oom;
    st->n = p ? p->n : 0;
    if (st->n && !(st->sc = kiln_calloc(st->n, sizeof(*st->sc))))
        goto oom;
    if (!(st->md = hfre_md_create()))
        goto oom;
    *out = st;
    return KILN_OK;
oom:
    pretok_state_free(st);
    return kiln_err_set(KILN_ERR_OOM, "pre-tokenizer: out of memory");
}

void pretok_state_free(pretok_state *st)
{
    size_t i;
    if (!st)
        return;
    for (i = 0; i < st->n && st->sc; i++) {
        buf_free(&st->sc[i].text);
        buf_free(&st->sc[i].text2);
        kiln_free(st->sc[i].r);
    }
    kiln_free(st->sc);
    hfre_md_free(st->md);
    kiln_free(st);
}

/* ---- construction ---------------------------------------------------------------- */

static kiln_status push_stage(pretok *p, const pt_stage *stg)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 4;
        pt_stage *v = kiln_realloc(p->st, cap * sizeof(*v));
        if (!v)
            return kiln_err_set(KILN_ERR_OOM, "pre-tokenizer: out of memory");
        p->st = v;
        p->cap = cap;
    }
    p->st[p->n++] = *stg;
    return KILN_OK;
}

static kiln_status parse_behavior(const json_t *j, pt_behavior def, pt_behavior *out)
{
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                  "Contiguous"};
    const char *s = hfj_str(j, "behavior", NULL);
    size_t i;
    *out = def;
    if (!s)
        return KILN_OK;
    for (i = 0; i < KILN_ARRAY_LEN(names); i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (pt_behavior)i;
            return KILN_OK;
        }
    }
    return kiln_err_set(KILN_ERR_UNSUPPORTED, "pre-tokenizer: split behavior '%s'", s);
}

static kiln_status parse_metaspace(const json_t *j, pt_stage *stg)
{
    const char *scheme = hfj_str(j, "prepend_scheme", NULL);
    if (!hfj_char(j, "replacement", stg->rep, &stg->rep_len))
        return kiln_err_set(KILN_ERR_FORMAT, "pre-tokenizer Metaspace: bad \"replacement\"");
    size_t k = 0;
    stg->ch = uni_next(stg->rep, stg->rep_len, &k);
    stg->split = hfj_bool(j, "split", true);
    if (!scheme)
        stg->prepend = hfj_bool(j, "add_prefix_space", true) ? PT_PREPEND_ALWAYS : PT_PREPEND_NEVER;
    else if (strcmp(scheme, "always") == 0)
        stg->prepend = PT_PREPEND_ALWAYS;
    else if (strcmp(scheme, "first") == 0)
        stg->prepend = PT_PREPEND_FIRST;
    else if (strcmp(scheme, "never") == 0)
        stg->prepend = PT_PREPEND_NEVER;
    else
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "pre-tokenizer Metaspace: prepend_scheme '%s'",
                            scheme);
    stg->kind = PT_METASPACE;
    return KILN_OK;
}

static kiln_status parse_stage(const char *t, const json_t *j, pt_stage *stg, bool *known)
{
    *known = true;
    if (strcmp(t, "Split") == 0) {
        kiln_status rc = parse_behavior(j, PT_ISOLATED, &stg->behavior);
        stg->kind = PT_SPLIT;
        stg->invert = hfj_bool(j, "invert", false);
        return rc ? rc : hfj_pattern(j, "pattern", "pre-tokenizer Split", &stg->re);
    }
    if (strcmp(t, "ByteLevel") == 0) {
        stg->kind = PT_BYTE_LEVEL;
        stg->prefix_space = hfj_bool(j, "add_prefix_space", true);
        stg->use_regex = hfj_bool(j, "use_regex", true);
        if (!stg->use_regex)
            return KILN_OK;
        return hfre_compile(PRETOK_GPT2_RE, strlen(PRETOK_GPT2_RE), false, &stg->re);
    }
    if (strcmp(t, "Metaspace") == 0)
        return parse_metaspace(j, stg);
    if (strcmp(t, "Punctuation") == 0) {
        stg->kind = PT_PUNCT;
        return parse_behavior(j, PT_ISOLATED, &stg->behavior);
    }
    if (strcmp(t, "Digits") == 0) {
        stg->kind = PT_DIGITS;
        stg->individual = hfj_bool(j, "individual_digits", false);
        return KILN_OK;
    }
    if (strcmp(t, "CharDelimiterSplit") == 0) {
        size_t k = 0;
        stg->kind = PT_CHAR_DELIM;
        if (!hfj_char(j, "delimiter", stg->rep, &stg->rep_len))
            return kiln_err_set(KILN_ERR_FORMAT, "pre-tokenizer CharDelimiterSplit: bad delimiter");
        stg->ch = uni_next(stg->rep, stg->rep_len, &k);
        return KILN_OK;
    }
    if (strcmp(t, "BertPreTokenizer") == 0)
        stg->kind = PT_BERT;
    else if (strcmp(t, "Whitespace") == 0)
        stg->kind = PT_WHITESPACE;
    else if (strcmp(t, "WhitespaceSplit") == 0)
        stg->kind = PT_WHITESPACE_SPLIT;
    else
        *known = false;
    return KILN_OK;
}

static kiln_status parse_one(const json_t *j, pretok *p)
{
    pt_stage stg;
    bool known;
    kiln_status rc;
    const char *t = hfj_type(j);
    if (strcmp(t, "Sequence") == 0) {
        json_t *arr = json_object_get(j, "pretokenizers"), *v;
        size_t i;
        if (!json_is_array(arr))
            return kiln_err_set(KILN_ERR_FORMAT, "pre-tokenizer Sequence: no \"pretokenizers\"");
        json_array_foreach(arr, i, v) {
            if ((rc = parse_one(v, p)))
                return rc;
        }
        return KILN_OK;
    }
    memset(&stg, 0, sizeof(stg));
    rc = parse_stage(t, j, &stg, &known);
    if (!rc && !known)
        rc = kiln_err_set(KILN_ERR_UNSUPPORTED, "pre-tokenizer type '%s' is not supported", t);
    if (!rc)
        rc = push_stage(p, &stg);
    if (rc)
        hfre_free(stg.re);
    return rc;
}

static pretok *pretok_alloc(void)
{
    pretok *p = kiln_calloc(1, sizeof(*p));
    unsigned b;
    if (!p)
        return NULL;
    for (b = 0; b < 256; b++)
        p->blen[b] = (uint8_t)uni_encode(uni_byte_char((uint8_t)b), p->bmap[b]);
    return p;
}

kiln_status pretok_from_json(const json_t *j, pretok **out)
{
    pretok *p;
    kiln_status rc;
    *out = NULL;
    if (!j || json_is_null(j))
        return KILN_OK;
    if (!(p = pretok_alloc()))
        return kiln_err_set(KILN_ERR_OOM, "pre-tokenizer: out of memory");
    if ((rc = parse_one(j, p))) {
        pretok_free(p);
        return rc;
    }
    *out = p;
    return KILN_OK;
}

kiln_status pretok_new_regexes(const char *const *regexes, size_t n, bool byte_level,
                               pretok **out)
{
    pretok *p = pretok_alloc();
    kiln_status rc = KILN_OK;
    size_t i;
    pt_stage stg;
    *out = NULL;
    if (!p)
        return kiln_err_set(KILN_ERR_OOM, "pre-tokenizer: out of memory");
    for (i = 0; i < n && !rc; i++) {
        memset(&stg, 0, sizeof(stg));
        stg.kind = PT_SPLIT;
        stg.behavior = PT_ISOLATED;
        rc = hfre_compile(regexes[i], strlen(regexes[i]), false, &stg.re);
        if (!rc && (rc = push_stage(p, &stg)))
            hfre_free(stg.re);
    }
    if (!rc && byte_level) {
        memset(&stg, 0, sizeof(stg));
        stg.kind = PT_BYTE_LEVEL;
        rc = push_stage(p, &stg);
    }
    if (rc) {
        pretok_free(p);
        return rc;
    }
    *out = p;
    return KILN_OK;
}

kiln_status pretok_new_bert(pretok **out)
{
    pretok *p = pretok_alloc();
    pt_stage stg;
    *out = NULL;
    memset(&stg, 0, sizeof(stg));
    stg.kind = PT_BERT;
    if (!p || push_stage(p, &stg)) {
        pretok_free(p);
        return kiln_err_set(KILN_ERR_OOM, "pre-tokenizer: out of memory");
    }
    *out = p;
    return KILN_OK;
}

void pretok_free(pretok *p)
{
    size_t i;
    if (!p)
        return;
    for (i = 0; i < p->n; i++)
        hfre_free(p->st[i].re);
    kiln_free(p->st);
    kiln_free(p);
}

static bool has_kind(const pretok *p, pt_kind k)
{
    size_t i;
    for (i = 0; p && i < p->n; i++)
        if (p->st[i].kind == k)
            return true;
    return false;
}

bool pretok_is_byte_level(const pretok *p)
{
    return has_kind(p, PT_BYTE_LEVEL);
}

bool pretok_has_metaspace(const pretok *p)
{
    return has_kind(p, PT_METASPACE);
}
