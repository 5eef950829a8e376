/*
 * ctpl_filters.c - jinja2's filters and tests as transformers sees them.
 *
 * Each filter takes the value and the call's arguments bound like the
 * Python signature in jinja2/filters.py (keyword names included); tojson is
 * transformers' own: json.dumps(x, ensure_ascii=False, indent=None,
 * separators=None, sort_keys=False).  Filters jinja2 has but this file
 * lacks are refused by the parser (ctpl_filter_id() returns -1), so an
 * unknown filter is a compile error, never a silent difference.
 */
#include "tokenizer/ctpl_builtins.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

enum {
    F_ABS, F_ATTR, F_CAPITALIZE, F_DEFAULT, F_DICTSORT, F_ESCAPE, F_FIRST, F_FLOAT, F_INDENT, F_INT,
    F_ITEMS, F_JOIN, F_LAST, F_LENGTH, F_LIST, F_LOWER, F_MAP, F_MAX, F_MIN, F_REJECT, F_REJECTATTR,
    F_REPLACE, F_REVERSE, F_ROUND, F_SAFE, F_SELECT, F_SELECTATTR, F_SORT, F_STRING, F_SUM, F_TITLE,
    F_TOJSON, F_TRIM, F_UNIQUE, F_UPPER, F_WORDCOUNT,
};

static const struct { const char *name; int id; } FILTERS[] = {
    {"abs", F_ABS}, {"attr", F_ATTR}, {"capitalize", F_CAPITALIZE}, {"count", F_LENGTH}, {"d", F_DEFAULT},
    {"default", F_DEFAULT}, {"dictsort", F_DICTSORT}, {"e", F_ESCAPE}, {"escape", F_ESCAPE},
    {"first", F_FIRST}, {"float", F_FLOAT}, {"indent", F_INDENT}, {"int", F_INT}, {"items", F_ITEMS},
    {"join", F_JOIN}, {"last", F_LAST}, {"length", F_LENGTH}, {"list", F_LIST}, {"lower", F_LOWER},
    {"map", F_MAP}, {"max", F_MAX}, {"min", F_MIN}, {"reject", F_REJECT}, {"rejectattr", F_REJECTATTR},
    {"replace", F_REPLACE}, {"reverse", F_REVERSE}, {"round", F_ROUND}, {"safe", F_SAFE},
    {"select", F_SELECT}, {"selectattr", F_SELECTATTR}, {"sort", F_SORT}, {"string", F_STRING},
    {"sum", F_SUM}, {"title", F_TITLE}, {"tojson", F_TOJSON}, {"trim", F_TRIM}, {"unique", F_UNIQUE},
    {"upper", F_UPPER}, {"wordcount", F_WORDCOUNT},
};

enum {
    T_DEFINED, T_UNDEFINED, T_NONE, T_STRING, T_NUMBER, T_INTEGER, T_FLOAT, T_MAPPING, T_ITERABLE,
    T_SEQUENCE, T_BOOLEAN, T_TRUE, T_FALSE, T_CALLABLE, T_EQ, T_NE, T_LT, T_LE, T_GT, T_GE, T_IN, T_ODD,
    T_EVEN, T_DIVISIBLEBY, T_SAMEAS, T_LOWER, T_UPPER, T_ESCAPED, T_FILTER, T_TEST,
};

static const struct { const char *name; int id; } TESTS[] = {
    {"defined", T_DEFINED}, {"undefined", T_UNDEFINED}, {"none", T_NONE}, {"string", T_STRING},
    {"number", T_NUMBER}, {"integer", T_INTEGER}, {"float", T_FLOAT}, {"mapping", T_MAPPING},
    {"iterable", T_ITERABLE}, {"sequence", T_SEQUENCE}, {"boolean", T_BOOLEAN}, {"true", T_TRUE},
    {"false", T_FALSE}, {"callable", T_CALLABLE}, {"eq", T_EQ}, {"equalto", T_EQ}, {"==", T_EQ},
    {"ne", T_NE}, {"!=", T_NE}, {"lt", T_LT}, {"lessthan", T_LT}, {"<", T_LT}, {"le", T_LE},
    {"<=", T_LE}, {"gt", T_GT}, {"greaterthan", T_GT}, {">", T_GT}, {"ge", T_GE}, {">=", T_GE},
    {"in", T_IN}, {"odd", T_ODD}, {"even", T_EVEN}, {"divisibleby", T_DIVISIBLEBY}, {"sameas", T_SAMEAS},
    {"lower", T_LOWER}, {"upper", T_UPPER}, {"escaped", T_ESCAPED}, {"filter", T_FILTER}, {"test", T_TEST},
};

int ctpl_filter_id(const char *name)
{
    for (size_t i = 0; i < KILN_ARRAY_LEN(FILTERS); i++)
        if (!strcmp(FILTERS[i].name, name))
            return FILTERS[i].id;
    return -1;
}

int ctpl_test_id(const char *name)
{
    for (size_t i = 0; i < KILN_ARRAY_LEN(TESTS); i++)
        if (!strcmp(TESTS[i].name, name))
            return TESTS[i].id;
    return -1;
}

/* ---- helpers ------------------------------------------------------------------------ */

#define BIND(names, vals, given)                                                                   \
    do {                                                                                           \
        kiln_status bst_ = ctpl_bind(r, name, a, names, KILN_ARRAY_LEN(names), vals, given);       \
        if (bst_)                                                                                  \
            return bst_;                                                                           \
    } while (0)

static const ctpl_args NO_ARGS;

/* environment.getitem along a dotted path ("a.b.0"). */
static kiln_status attr_path(ctpl_rs *r, ctpl_val v, ctpl_val path, ctpl_val *out)
{
    kiln_status st = ctpl_need_str(r, "attribute", path);
    size_t i = 0;
    while (!st && i <= path.u.s.n) {
        const char *dot = memchr(path.u.s.p + i, '.', path.u.s.n - i);
        size_t end = dot ? (size_t)(dot - path.u.s.p) : path.u.s.n;
        ctpl_val key = ctpl_str(path.u.s.p + i, end - i);
        bool digits = end > i;
        int64_t num = 0;
        for (size_t k = i; k < end && digits; k++) {
            digits = path.u.s.p[k] >= '0' && path.u.s.p[k] <= '9' && num < INT64_MAX / 10 - 10;
            num = num * 10 + (path.u.s.p[k] - '0');
        }
        st = ctpl_getitem(r, v, digits ? ctpl_int(num) : key, &v);
        i = end + 1;
        if (!dot)
            break;
    }
    *out = v;
    return st;
}

static kiln_status new_gen(ctpl_rs *r, size_t cap, ctpl_list **out)
{
    *out = ctpl_list_new(r, cap);
    if (!*out)
        return KILN_ERR_OOM;
    (*out)->flags = CTPL_LIST_GEN;
    return KILN_OK;
}

static kiln_status str_of(ctpl_rs *r, ctpl_val v, ctpl_val *out) { return ctpl_to_str(r, v, out); }

/* ---- select / reject / map ---------------------------------------------------------------- */

/* select, reject, selectattr, rejectattr: `attr` says whether the first
 * argument names an attribute; the next one (if any) names a test. */
static kiln_status filter_select(ctpl_rs *r, int id, ctpl_val v, const ctpl_args *a, ctpl_val *out)
{
    bool attr = id == F_SELECTATTR || id == F_REJECTATTR, want = id == F_SELECT || id == F_SELECTATTR;
    size_t first_test = attr ? 1 : 0;
    ctpl_list *items, *res;
    kiln_status st;
    if (a->nkw)
        return ctpl_fail(r, KILN_ERR_UNSUPPORTED, "keyword arguments to select/reject filters");
    if (attr && a->npos < 1)
        return ctpl_fail(r, KILN_ERR_FORMAT, "missing parameter for attribute name");
    int test = -1;
    if (a->npos > first_test) {
        if ((st = ctpl_need_str(r, "test name", a->pos[first_test])))
            return st;
        char *tn = ctpl_strdup(r, a->pos[first_test].u.s.p, a->pos[first_test].u.s.n);
        if (!tn)
            return KILN_ERR_OOM;
        if ((test = ctpl_test_id(tn)) < 0)
            return ctpl_fail(r, KILN_ERR_UNSUPPORTED, "unsupported test '%s'", tn);
    }
    ctpl_args targs = {.pos = a->npos > first_test + 1 ? a->pos + first_test + 1 : NULL,
                       .npos = a->npos > first_test + 1 ? a->npos - first_test - 1 : 0};
    if ((st = ctpl_iterate(r, v, &items)) || (st = new_gen(r, items->len, &res)))
        return st;
    for (size_t i = 0; i < items->len; i++) {
        ctpl_val x = items->items[i];
        bool ok;
        if (attr && (st = attr_path(r, x, a->pos[0], &x)))
            return st;
        if (test < 0)
            ok = ctpl_truthy(x);
        else if ((st = ctpl_apply_test(r, test, "select", x, &targs, &ok)))
            return st;
        if (ok == want)
            res->items[res->len++] = items->items[i];
    }
    *out = ctpl_list_val(res);
    return KILN_OK;
}

static kiln_status filter_map(ctpl_rs *r, ctpl_val v, const ctpl_args *a, ctpl_val *out)
{
    ctpl_list *items, *res;
    ctpl_val attr = ctpl_undef(), dflt = ctpl_undef();
    kiln_status st;
    for (size_t k = 0; k < a->nkw; k++) {
        if (!strcmp(a->names[k], "attribute"))
            attr = a->kw[k];
        else if (!strcmp(a->names[k], "default"))
            dflt = a->kw[k];
        else
            return ctpl_fail(r, KILN_ERR_FORMAT, "map got an unexpected keyword argument '%s'", a->names[k]);
    }
    int fid = -1;
    char *fname = NULL;
    if (attr.kind == CTPL_UNDEF) {
        if (a->npos < 1)
            return ctpl_fail(r, KILN_ERR_FORMAT, "map requires a filter argument");
        if ((st = ctpl_need_str(r, "map filter name", a->pos[0])))
            return st;
        if (!(fname = ctpl_strdup(r, a->pos[0].u.s.p, a->pos[0].u.s.n)))
            return KILN_ERR_OOM;
        if ((fid = ctpl_filter_id(fname)) < 0)
            return ctpl_fail(r, KILN_ERR_UNSUPPORTED, "unsupported filter '%s'", fname);
    }
    ctpl_args fargs = {.pos = a->npos > 1 ? a->pos + 1 : NULL, .npos = a->npos > 1 ? a->npos - 1 : 0};
    if ((st = ctpl_iterate(r, v, &items)) || (st = new_gen(r, items->len, &res)))
        return st;
    for (size_t i = 0; i < items->len; i++) {
        ctpl_val x = items->items[i];
        if (fid >= 0)
            st = ctpl_apply_filter(r, fid, fname, x, &fargs, &x);
        else if (!(st = attr_path(r, x, attr, &x)) && x.kind == CTPL_UNDEF && dflt.kind != CTPL_UNDEF)
            x = dflt;
        if (st)
            return st;
        res->items[res->len++] = x;
    }
    *out = ctpl_list_val(res);
    return KILN_OK;
}

/* ---- sorting ------------------------------------------------------------------------------ */

typedef struct sort_ctx {
    ctpl_rs *r;
    bool fold, reverse;
    kiln_status st;
} sort_ctx;

static kiln_status sort_key(ctpl_rs *r, ctpl_val v, bool fold, ctpl_val *out)
{
    if (fold && v.kind == CTPL_STR)
        return ctpl_str_case(r, v, CTPL_CASE_LOWER, out);
    *out = v;
    return KILN_OK;
}

/* Stable merge sort of (key, value) pairs by key with Python ordering. */
static kiln_status merge_sort(sort_ctx *c, ctpl_val *keys, ctpl_val *vals, size_t n, ctpl_val *tk, ctpl_val *tv)
{
    if (n < 2)
        return KILN_OK;
    size_t h = n / 2, i = 0, j = h, k = 0;
    kiln_status st = merge_sort(c, keys, vals, h, tk, tv);
    if (!st)
        st = merge_sort(c, keys + h, vals + h, n - h, tk, tv);
    while (!st && i < h && j < n) {
        int cmp;
        if ((st = ctpl_compare(c->r, keys[j], keys[i], &cmp)))
            break;
        bool take_right = c->reverse ? cmp > 0 : cmp < 0;
        size_t from = take_right ? j++ : i++;
        tk[k] = keys[from];
        tv[k++] = vals[from];
    }
    for (; !st && i < h; i++, k++)
        tk[k] = keys[i], tv[k] = vals[i];
    for (; !st && j < n; j++, k++)
        tk[k] = keys[j], tv[k] = vals[j];
    if (!st) {
        memcpy(keys, tk, n * sizeof *keys);
        memcpy(vals, tv, n * sizeof *vals);
    }
    return st;
}

/* Sort items by key (attribute path or the item, case-folded unless
 * case_sensitive); *out is a new list. */
static kiln_status sorted(ctpl_rs *r, const ctpl_list *items, ctpl_val attr, bool fold, bool reverse,
                          ctpl_list **out)
{
    size_t n = items->len;
    ctpl_val *keys = ctpl_alloc(r, (n + 1) * sizeof *keys), *tk = ctpl_alloc(r, (n + 1) * sizeof *tk);
    ctpl_val *tv = ctpl_alloc(r, (n + 1) * sizeof *tv);
    ctpl_list *res = ctpl_list_new(r, n);
    kiln_status st = keys && tk && tv && res ? KILN_OK : KILN_ERR_OOM;
    for (size_t i = 0; !st && i < n; i++) {
        ctpl_val k = items->items[i];
        if (attr.kind != CTPL_UNDEF && attr.kind != CTPL_NONE)
            st = attr_path(r, k, attr, &k);
        if (!st)
            st = sort_key(r, k, fold, &keys[i]);
        res->items[i] = items->items[i];
    }
    if (st)
        return st;
    res->len = n;
    sort_ctx c = {.r = r, .fold = fold, .reverse = reverse};
    st = merge_sort(&c, keys, res->items, n, tk, tv);
    *out = res;
    return st;
}

static kiln_status filter_sort(ctpl_rs *r, const char *name, ctpl_val v, const ctpl_args *a, ctpl_val *out)
{
    static const char *const names[] = {"reverse", "case_sensitive", "attribute"};
    ctpl_val p[3];
    bool g[3];
    ctpl_list *items, *res;
    BIND(names, p, g);
    kiln_status st = ctpl_iterate(r, v, &items);
    if (!st)
        st = sorted(r, items, g[2] ? p[2] : ctpl_undef(), !(g[1] && ctpl_truthy(p[1])), g[0] && ctpl_truthy(p[0]),
                    &res);
    if (!st)
        *out = ctpl_list_val(res);
    return st;
}

static kiln_status filter_dictsort(ctpl_rs *r, const char *name, ctpl_val v, const ctpl_args *a, ctpl_val *out)
{
    static const char *const names[] = {"case_sensitive", "by", "reverse"};
    ctpl_val p[3];
    bool g[3];
    BIND(names, p, g);
    if (v.kind != CTPL_DICT)
        return ctpl_fail(r, KILN_ERR_FORMAT, "dictsort: expected a mapping, got %s", ctpl_type_name(v));
    bool by_value = g[1] && p[1].kind == CTPL_STR && p[1].u.s.n == 5 && !memcmp(p[1].u.s.p, "value", 5);
    ctpl_val items;
    ctpl_method m = {.self = v, .name = "items"};
    kiln_status st = ctpl_call_method(r, &m, &NO_ARGS, &items);
    ctpl_list *res;
    if (!st)
        st = sorted(r, items.u.l, ctpl_str(by_value ? "1" : "0", 1), !(g[0] && ctpl_truthy(p[0])),
                    g[2] && ctpl_truthy(p[2]), &res);
    if (!st)
        *out = ctpl_list_val(res);
    return st;
}

static kiln_status filter_unique(ctpl_rs *r, const char *name, ctpl_val v, const ctpl_args *a, ctpl_val *out)
{
    static const char *const names[] = {"case_sensitive", "attribute"};
    ctpl_val p[2], seen_key;
    bool g[2];
    ctpl_list *items, *res, *seen;
    BIND(names, p, g);
    kiln_status st = ctpl_iterate(r, v, &items);
    if (!st)
        st = new_gen(r, items->len, &res);
    if (!st && !(seen = ctpl_list_new(r, items->len)))
        st = KILN_ERR_OOM;
    for (size_t i = 0; !st && i < items->len; i++) {
        ctpl_val k = items->items[i];
        if (g[1] && p[1].kind != CTPL_NONE)
            st = attr_path(r, k, p[1], &k);
        if (!st)
            st = sort_key(r, k, !(g[0] && ctpl_truthy(p[0])), &seen_key);
        bool dup = false;
        for (size_t j = 0; !st && j < seen->len && !dup; j++)
            dup = ctpl_equal(seen->items[j], seen_key);
        if (!st && !dup) {
            seen->items[seen->len++] = seen_key;
            res->items[res->len++] = items->items[i];
        }
    }
    if (!st)
        *out = ctpl_list_val(res);
    return st;
}

/* min / max: the first smallest / largest item. */
static kiln_status filter_minmax(ctpl_rs *r, const char *name, bool want_max, ctpl_val v, const ctpl_args *a,
                                 ctpl_val *out)
{
    static const char *const names[] = {"case_sensitive", "attribute"};
    ctpl_val p[2];
    bool g[2];
    ctpl_list *items, *res;
    BIND(names, p, g);
    kiln_status st = ctpl_iterate(r, v, &items);
    if (!st)
        st = sorted(r, items, g[1] ? p[1] : ctpl_undef(), !(g[0] && ctpl_truthy(p[0])), want_max, &res);
    if (st)
        return st;
    *out = res->len ? res->items[0] : ctpl_undef();
    return KILN_OK;
}

/* ---- text filters --------------------------------------------------------------------------- */

static kiln_status filter_tojson(ctpl_rs *r, const char *name, ctpl_val v, const ctpl_args *a, ctpl_val *out)
{
    static const char *const names[] = {"ensure_ascii", "indent", "separators", "sort_keys"};
    ctpl_val p[4];
    bool g[4];
    char spaces[256];
    BIND(names, p, g);
    ctpl_json_opts o = {.ensure_ascii = g[0] && ctpl_truthy(p[0]), .sort_keys = g[3] && ctpl_truthy(p[3])};
    if (g[1] && (p[1].kind == CTPL_INT || p[1].kind == CTPL_BOOL)) {
        int64_t w = p[1].kind == CTPL_INT ? p[1].u.i : p[1].u.b;
        if (w > (int64_t)sizeof spaces)
            return ctpl_fail(r, KILN_ERR_RANGE, "tojson indent too large");
        memset(spaces, ' ', sizeof spaces);
        o.indent = spaces;
        o.indent_n = w > 0 ? (size_t)w : 0;
    } else if (g[1] && p[1].kind == CTPL_STR) {
        o.indent = p[1].u.s.p;
        o.indent_n = p[1].u.s.n;
    } else if (g[1] && p[1].kind != CTPL_NONE) {
        return ctpl_fail(r, KILN_ERR_FORMAT, "tojson: indent must be an int or a string");
    }
    o.item_sep = o.indent ? "," : ", ";
    o.item_sep_n = o.indent ? 1 : 2;
    o.key_sep = ": ";
    o.key_sep_n = 2;
    if (g[2] && p[2].kind != CTPL_NONE) {
        ctpl_val s = p[2];
        if (s.kind != CTPL_LIST || s.u.l->len != 2 || s.u.l->items[0].kind != CTPL_STR ||
            s.u.l->items[1].kind != CTPL_STR)
            return ctpl_fail(r, KILN_ERR_FORMAT, "tojson: separators must be a pair of strings");
        o.item_sep = s.u.l->items[0].u.s.p;
        o.item_sep_n = s.u.l->items[0].u.s.n;
        o.key_sep = s.u.l->items[1].u.s.p;
        o.key_sep_n = s.u.l->items[1].u.s.n;
    }
    kiln_buf b = {0};
    kiln_status st = ctpl_write_json(r, &b, v, &o, 0);
    char *s = st ? NULL : ctpl_strdup(r, b.data ? b.data : "", b.len);
    if (s)
        *out = ctpl_str(s, b.len);
    buf_free(&b);
    return st ? st : s ? KILN_OK : KILN_ERR_OOM;
}

static kiln_status filter_indent(ctpl_rs *r, const char *name, ctpl_val v, const ctpl_args *a, ctpl_val *out)
{
    static const char *const names[] = {"width", "first", "blank"};
    ctpl_val p[3], s, ind;
    bool g[3];
    ctpl_list *lines;
    BIND(names, p, g);
    kiln_status st = str_of(r, v, &s);
    if (st)
        return st;
    if (g[0] && p[0].kind == CTPL_STR) {
        ind = p[0];
    } else {
        int64_t w = g[0] ? (p[0].kind == CTPL_INT ? p[0].u.i : -1) : 4;
        if (w < 0 || w > 4096)
            return ctpl_fail(r, KILN_ERR_FORMAT, "indent: width must be a small integer or a string");
        char *sp = ctpl_alloc(r, (size_t)w + 1);
        if (!sp)
            return KILN_ERR_OOM;
        memset(sp, ' ', (size_t)w);
        ind = ctpl_str(sp, (size_t)w);
    }
    bool first = g[1] && ctpl_truthy(p[1]), blank = g[2] && ctpl_truthy(p[2]);
    /* jinja2 appends "\n" before splitlines() so a trailing newline survives */
    kiln_buf b = {0};
    st = buf_append(&b, s.u.s.p, s.u.s.n);
    if (!st)
        st = buf_append_char(&b, '\n');
    char *copy = st ? NULL : ctpl_strdup(r, b.data, b.len);
    if (!st && !copy)
        st = KILN_ERR_OOM;
    if (!st)
        st = ctpl_str_splitlines(r, ctpl_str(copy, b.len), &lines);
    buf_clear(&b);
    if (!st && first)
        st = buf_append(&b, ind.u.s.p, ind.u.s.n);
    for (size_t i = 0; !st && i < lines->len; i++) {
        ctpl_val ln = lines->items[i];
        if (i)
            st = buf_append_char(&b, '\n');
        if (!st && i > 0 && (blank || ln.u.s.n > 0))
            st = buf_append(&b, ind.u.s.p, ind.u.s.n);
        if (!st)
            st = buf_append(&b, ln.u.s.p, ln.u.s.n);
    }
    char *res = st ? NULL : ctpl_strdup(r, b.data ? b.data : "", b.len);
    if (res)
        *out = ctpl_str(res, b.len);
    buf_free(&b);
    return st ? st : res ? KILN_OK : KILN_ERR_OOM;
}

static kiln_status filter_escape(ctpl_rs *r, ctpl_val v, ctpl_val *out)
{
    ctpl_val s;
    kiln_status st = str_of(r, v, &s);
    kiln_buf b = {0};
    for (size_t i = 0; !st && i < s.u.s.n; i++) {
        char c = s.u.s.p[i];
        const char *rep = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '"' ? "&#34;"
                        : c == '\'' ? "&#39;" : NULL;
        st = rep ? buf_append_str(&b, rep) : buf_append_char(&b, c);
    }
    char *res = st ? NULL : ctpl_strdup(r, b.data ? b.data : "", b.len);
    if (res)
        *out = ctpl_str(res, b.len);
    buf_free(&b);
    return st ? st : res ? KILN_OK : KILN_ERR_OOM;
}

static kiln_status filter_wordcount(ctpl_rs *r, ctpl_val v, ctpl_val *out)
{
    ctpl_val s;
    kiln_status st = str_of(r, v, &s);
    size_t i = 0, k;
    int64_t words = 0;
    bool in_word = false;
    if (st)
        return st;
    while (i < s.u.s.n) {
        uint32_t cp = ctpl_utf8_next(s.u.s.p + i, s.u.s.n - i, &k);
        int c = utf8proc_category((utf8proc_int32_t)cp);
        bool w = cp == '_' || (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
                 (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
        words += w && !in_word;
        in_word = w;
        i += k;
    }
    *out = ctpl_int(words);
    return KILN_OK;
}

/* ---- numbers ---------------------------------------------------------------------------------- */

static kiln_status filter_int(ctpl_rs *r, const char *name, ctpl_val v, const ctpl_args *a, ctpl_val *out)
{
    static const char *const names[] = {"default", "base"};
    ctpl_val p[2];
    bool g[2];
    BIND(names, p, g);
    ctpl_val dflt = g[0] ? p[0] : ctpl_int(0);
    if (g[1] && !(p[1].kind == CTPL_INT && p[1].u.i == 10))
        return ctpl_fail(r, KILN_ERR_UNSUPPORTED, "int filter with a base other than 10");
    switch (v.kind) {
    case CTPL_INT: *out = v; return KILN_OK;
    case CTPL_BOOL: *out = ctpl_int(v.u.b); return KILN_OK;
    case CTPL_FLOAT:
        *out = isfinite(v.u.f) && fabs(v.u.f) < 9.2e18 ? ctpl_int((int64_t)v.u.f) : dflt;
        return KILN_OK;
    case CTPL_STR: {
        char buf[64], *end;
        ctpl_val t = ctpl_str_strip(v, NULL, true, true);
        if (t.u.s.n == 0 || t.u.s.n >= sizeof buf) {
            *out = dflt;
            return KILN_OK;
        }
        memcpy(buf, t.u.s.p, t.u.s.n);
        buf[t.u.s.n] = '\0';
        long long iv = strtoll(buf, &end, 10);
        if (*end == '\0') {
            *out = ctpl_int(iv);
            return KILN_OK;
        }
        double dv = strtod(buf, &end);
        *out = *end == '\0' && isfinite(dv) && fabs(dv) < 9.2e18 ? ctpl_int((int64_t)dv) : dflt;
        return KILN_OK;
    }
    default:
        *out = dflt;
        return KILN_OK;
    }
}

static kiln_status filter_float(ctpl_rs *r, const char *name, ctpl_val v, const ctpl_args *a, ctpl_val *out)
{
    static const char *const names[] = {"default"};
    ctpl_val p[1];
    bool g[1];
    BIND(names, p, g);
    ctpl_val dflt = g[0] ? p[0] : ctpl_float(0.0);
    if (ctpl_is_number(v)) {
        *out = ctpl_float(ctpl_as_double(v));
    } else if (v.kind == CTPL_STR) {
        char buf[128], *end;
        ctpl_val t = ctpl_str_strip(v, NULL, true, true);
        if (t.u.s.n == 0 || t.u.s.n >= sizeof buf) {
            *out = dflt;
            return KILN_OK;
        }
        memcpy(buf, t.u.s.p, t.u.s.n);
        buf[t.u.s.n] = '\0';
        double dv = strtod(buf, &end);
        *out = *end == '\0' ? ctpl_float(dv) : dflt;
    } else {
        *out = dflt;
    }
    return KILN_OK;
}

static kiln_status filter_round(ctpl_rs *r, const char *name, ctpl_val v, const ctpl_args *a, ctpl_val *out)
{
    static const char *const names[] = {"precision", "method"};
    ctpl_val p[2];
    bool g[2];
    BIND(names, p, g);
    int64_t prec = g[0] && p[0].kind == CTPL_INT ? p[0].u.i : 0;
    if (!ctpl_is_number(v))
        return ctpl_fail(r, KILN_ERR_FORMAT, "round: expected a number, got %s", ctpl_type_name(v));
    if (prec < 0 || prec > 15)
        return ctpl_fail(r, KILN_ERR_UNSUPPORTED, "round precision outside 0..15");
    bool common = !g[1] || (p[1].kind == CTPL_STR && p[1].u.s.n == 6 && !memcmp(p[1].u.s.p, "common", 6));
    if (v.kind != CTPL_FLOAT && common) {
        *out = v.kind == CTPL_BOOL ? ctpl_int(v.u.b) : v;
        return KILN_OK;
    }
    double x = ctpl_as_double(v), scale = pow(10.0, (double)prec);
    if (common) {
        char buf[400];
        snprintf(buf, sizeof buf, "%.*f", (int)prec, x); /* correctly rounded, half to even */
        *out = ctpl_float(strtod(buf, NULL));
    } else if (p[1].kind == CTPL_STR && p[1].u.s.n == 4 && !memcmp(p[1].u.s.p, "ceil", 4)) {
        *out = ctpl_float(ceil(x * scale) / scale);
    } else if (p[1].kind == CTPL_STR && p[1].u.s.n == 5 && !memcmp(p[1].u.s.p, "floor", 5)) {
        *out = ctpl_float(floor(x * scale) / scale);
    } else {
        return ctpl_fail(r, KILN_ERR_FORMAT, "method must be common, ceil or floor");
    }
    return KILN_OK;
}

static kiln_status filter_sum(ctpl_rs *r, const char *name, ctpl_val v, const ctpl_args *a, ctpl_val *out)
{
    static const char *const names[] = {"attribute", "start"};
    ctpl_val p[2], acc;
    bool g[2];
    ctpl_list *items;
    BIND(names, p, g);
    acc = g[1] ? p[1] : ctpl_int(0);
    kiln_status st = ctpl_iterate(r, v, &items);
    for (size_t i = 0; !st && i < items->len; i++) {
        ctpl_val x = items->items[i];
        if (g[0] && p[0].kind != CTPL_NONE && (st = attr_path(r, x, p[0], &x)))
            break;
        if (!ctpl_is_number(x) || !ctpl_is_number(acc))
            return ctpl_fail(r, KILN_ERR_FORMAT, "sum: unsupported operand types '%s' and '%s'",
                             ctpl_type_name(acc), ctpl_type_name(x));
        if (acc.kind == CTPL_FLOAT || x.kind == CTPL_FLOAT)
            acc = ctpl_float(ctpl_as_double(acc) + ctpl_as_double(x));
        else if (__builtin_add_overflow(acc.kind == CTPL_INT ? acc.u.i : acc.u.b, x.kind == CTPL_INT ? x.u.i : x.u.b,
                                        &acc.u.i))
            return ctpl_fail(r, KILN_ERR_RANGE, "integer overflow");
        else
            acc.kind = CTPL_INT;
    }
    if (!st)
        *out = acc;
    return st;
}

/* ---- sequences ----------------------------------------------------------------------------------- */

static kiln_status filter_first_last(ctpl_rs *r, bool last, ctpl_val v, ctpl_val *out)
{
    ctpl_list *items;
    if (last && v.kind == CTPL_LIST && (v.u.l->flags & CTPL_LIST_GEN))
        return ctpl_fail(r, KILN_ERR_FORMAT, "'generator' object is not reversible");
    kiln_status st = ctpl_iterate(r, v, &items);
    if (st)
        return st;
    *out = items->len == 0 ? ctpl_undef() : items->items[last ? items->len - 1 : 0];
    return KILN_OK;
}

static kiln_status filter_reverse(ctpl_rs *r, ctpl_val v, ctpl_val *out)
{
    ctpl_list *items, *res;
    if (v.kind == CTPL_STR) {
        kiln_status st = ctpl_iterate(r, v, &items);
        kiln_buf b = {0};
        for (size_t i = items ? items->len : 0; !st && i-- > 0;)
            st = buf_append(&b, items->items[i].u.s.p, items->items[i].u.s.n);
        char *s = st ? NULL : ctpl_strdup(r, b.data ? b.data : "", b.len);
        if (s)
            *out = ctpl_str(s, b.len);
        buf_free(&b);
        return st ? st : s ? KILN_OK : KILN_ERR_OOM;
    }
    bool gen = v.kind == CTPL_LIST && (v.u.l->flags & CTPL_LIST_GEN);
    kiln_status st = ctpl_iterate(r, v, &items);
    if (!st)
        st = new_gen(r, items->len, &res);
    if (st)
        return st;
    for (size_t i = items->len; i-- > 0;)
        res->items[res->len++] = items->items[i];
    if (gen) /* list(gen) reversed: a plain list */
        res->flags = 0;
    *out = ctpl_list_val(res);
    return KILN_OK;
}

static kiln_status filter_items(ctpl_rs *r, ctpl_val v, ctpl_val *out)
{
    if (v.kind == CTPL_UNDEF) {
        ctpl_list *l;
        kiln_status st = new_gen(r, 0, &l);
        if (!st)
            *out = ctpl_list_val(l);
        return st;
    }
    if (v.kind != CTPL_DICT)
        return ctpl_fail(r, KILN_ERR_FORMAT, "Can only get item pairs from a mapping.");
    ctpl_method m = {.self = v, .name = "items"};
    kiln_status st = ctpl_call_method(r, &m, &NO_ARGS, out);
    if (!st)
        out->u.l->flags |= CTPL_LIST_GEN;
    return st;
}

static kiln_status filter_join(ctpl_rs *r, const char *name, ctpl_val v, const ctpl_args *a, ctpl_val *out)
{
    static const char *const names[] = {"d", "attribute"};
    ctpl_val p[2];
    bool g[2];
    ctpl_list *items;
    BIND(names, p, g);
    ctpl_val sep = ctpl_str("", 0);
    kiln_status st = g[0] ? str_of(r, p[0], &sep) : KILN_OK;
    if (!st)
        st = ctpl_iterate(r, v, &items);
    if (!st && g[1] && p[1].kind != CTPL_NONE) {
        ctpl_list *mapped = ctpl_list_new(r, items->len);
        if (!mapped)
            return KILN_ERR_OOM;
        for (size_t i = 0; !st && i < items->len; i++)
            st = attr_path(r, items->items[i], p[1], &mapped->items[mapped->len++]);
        items = mapped;
    }
    return st ? st : ctpl_str_join(r, items, sep, out);
}

/* ---- dispatch -------------------------------------------------------------------------------------- */

static kiln_status no_args(ctpl_rs *r, const char *name, const ctpl_args *a)
{
    if (a->npos || a->nkw)
        return ctpl_fail(r, KILN_ERR_FORMAT, "filter '%s' takes no arguments", name);
    return KILN_OK;
}

static kiln_status filter_text(ctpl_rs *r, int id, const char *name, ctpl_val v, const ctpl_args *a,
                               ctpl_val *out)
{
    ctpl_val s;
    kiln_status st = str_of(r, v, &s);
    if (st)
        return st;
    switch (id) {
    case F_TRIM: {
        static const char *const names[] = {"chars"};
        ctpl_val p[1];
        bool g[1];
        BIND(names, p, g);
        bool use = g[0] && p[0].kind == CTPL_STR;
        *out = ctpl_str_strip(s, use ? &p[0] : NULL, true, true);
        return KILN_OK;
    }
    case F_REPLACE: {
        static const char *const names[] = {"old", "new", "count"};
        ctpl_val p[3], o, n;
        bool g[3];
        BIND(names, p, g);
        if (!g[0] || !g[1])
            return ctpl_fail(r, KILN_ERR_FORMAT, "replace needs old and new");
        if ((st = str_of(r, p[0], &o)) || (st = str_of(r, p[1], &n)))
            return st;
        int64_t count = g[2] && p[2].kind == CTPL_INT ? p[2].u.i : -1;
        return ctpl_str_replace(r, s, o, n, count, out);
    }
    default:
        if ((st = no_args(r, name, a)))
            return st;
        return ctpl_str_case(r, s, id == F_UPPER ? CTPL_CASE_UPPER : id == F_LOWER ? CTPL_CASE_LOWER
                                   : id == F_CAPITALIZE ? CTPL_CASE_CAPITALIZE : CTPL_CASE_JTITLE, out);
    }
}

kiln_status ctpl_apply_filter(ctpl_rs *r, int id, const char *name, ctpl_val v, const ctpl_args *a,
                              ctpl_val *out)
{
    kiln_status st;
    int64_t n;
    switch (id) {
    case F_TRIM: case F_REPLACE: case F_UPPER: case F_LOWER: case F_CAPITALIZE: case F_TITLE:
        return filter_text(r, id, name, v, a, out);
    case F_LENGTH:
        if ((st = no_args(r, name, a)) || (st = ctpl_length(r, v, &n)))
            return st;
        *out = ctpl_int(n);
        return KILN_OK;
    case F_TOJSON: return filter_tojson(r, name, v, a, out);
    case F_DEFAULT: {
        static const char *const names[] = {"default_value", "boolean"};
        ctpl_val p[2];
        bool g[2];
        BIND(names, p, g);
        bool use = v.kind == CTPL_UNDEF || (g[1] && ctpl_truthy(p[1]) && !ctpl_truthy(v));
        *out = use ? (g[0] ? p[0] : ctpl_str("", 0)) : v;
        return KILN_OK;
    }
    case F_FIRST: case F_LAST:
        return (st = no_args(r, name, a)) ? st : filter_first_last(r, id == F_LAST, v, out);
    case F_ITEMS: return (st = no_args(r, name, a)) ? st : filter_items(r, v, out);
    case F_SELECT: case F_REJECT: case F_SELECTATTR: case F_REJECTATTR: return filter_select(r, id, v, a, out);
    case F_MAP: return filter_map(r, v, a, out);
    case F_JOIN: return filter_join(r, name, v, a, out);
    case F_STRING: return (st = no_args(r, name, a)) ? st : str_of(r, v, out);
    case F_SAFE: return (st = no_args(r, name, a)) ? st : str_of(r, v, out);
    case F_ESCAPE: return (st = no_args(r, name, a)) ? st : filter_escape(r, v, out);
    case F_INT: return filter_int(r, name, v, a, out);
    case F_FLOAT: return filter_float(r, name, v, a, out);
    case F_LIST: {
        ctpl_list *items, *copy;
        if ((st = no_args(r, name, a)) || (st = ctpl_iterate(r, v, &items)))
            return st;
        if (!(copy = ctpl_list_new(r, items->len)))
            return KILN_ERR_OOM;
        if (items->len)
            memcpy(copy->items, items->items, items->len * sizeof *copy->items);
        copy->len = items->len;
        *out = ctpl_list_val(copy);
        return KILN_OK;
    }
    case F_REVERSE: return (st = no_args(r, name, a)) ? st : filter_reverse(r, v, out);
    case F_SORT: return filter_sort(r, name, v, a, out);
    case F_DICTSORT: return filter_dictsort(r, name, v, a, out);
    case F_UNIQUE: return filter_unique(r, name, v, a, out);
    case F_MIN: case F_MAX: return filter_minmax(r, name, id == F_MAX, v, a, out);
    case F_SUM: return filter_sum(r, name, v, a, out);
    case F_ABS:
        if ((st = no_args(r, name, a)))
            return st;
        if (v.kind == CTPL_FLOAT)
            *out = ctpl_float(fabs(v.u.f));
        else if (v.kind == CTPL_INT && v.u.i != INT64_MIN)
            *out = ctpl_int(v.u.i < 0 ? -v.u.i : v.u.i);
        else if (v.kind == CTPL_BOOL)
            *out = ctpl_int(v.u.b);
        else
            return ctpl_fail(r, KILN_ERR_FORMAT, "bad operand type for abs(): '%s'", ctpl_type_name(v));
        return KILN_OK;
    case F_ROUND: return filter_round(r, name, v, a, out);
    case F_INDENT: return filter_indent(r, name, v, a, out);
    case F_WORDCOUNT: return (st = no_args(r, name, a)) ? st : filter_wordcount(r, v, out);
    case F_ATTR: {
        if (a->npos != 1 || a->nkw)
            return ctpl_fail(r, KILN_ERR_FORMAT, "attr takes one name");
        if ((st = ctpl_need_str(r, "attr", a->pos[0])))
            return st;
        char *an = ctpl_strdup(r, a->pos[0].u.s.p, a->pos[0].u.s.n);
        if (!an)
            return KILN_ERR_OOM;
        if ((st = ctpl_getattr(r, v, an, out)))
            return st;
        if (v.kind == CTPL_DICT && out->kind != CTPL_METHOD) /* attr() never reads items */
            *out = ctpl_undef();
        return KILN_OK;
    }
    default:
        return ctpl_fail(r, KILN_ERR_INTERNAL, "filter id %d", id);
    }
}

/* ---- tests ------------------------------------------------------------------------------------------ */

static kiln_status test_compare(ctpl_rs *r, int id, ctpl_val v, ctpl_val other, bool *out)
{
    int cmp;
    if (id == T_EQ || id == T_NE) {
        *out = ctpl_equal(v, other) == (id == T_EQ);
        return KILN_OK;
    }
    kiln_status st = ctpl_compare(r, v, other, &cmp);
    *out = id == T_LT ? cmp < 0 : id == T_LE ? cmp <= 0 : id == T_GT ? cmp > 0 : cmp >= 0;
    return st;
}

static kiln_status test_number(ctpl_rs *r, int id, ctpl_val v, const ctpl_args *a, bool *out)
{
    if (!ctpl_is_number(v))
        return ctpl_fail(r, KILN_ERR_FORMAT, "test '%s' needs a number, got %s",
                         id == T_ODD ? "odd" : id == T_EVEN ? "even" : "divisibleby", ctpl_type_name(v));
    if (id == T_DIVISIBLEBY) {
        if (a->npos != 1 || !ctpl_is_number(a->pos[0]))
            return ctpl_fail(r, KILN_ERR_FORMAT, "divisibleby needs one number");
        ctpl_val d = a->pos[0];
        if (v.kind == CTPL_FLOAT || d.kind == CTPL_FLOAT) {
            double y = ctpl_as_double(d);
            if (y == 0.0)
                return ctpl_fail(r, KILN_ERR_FORMAT, "division by zero");
            *out = fmod(ctpl_as_double(v), y) == 0.0;
        } else {
            int64_t x = v.kind == CTPL_INT ? v.u.i : v.u.b, y = d.kind == CTPL_INT ? d.u.i : d.u.b;
            if (y == 0)
                return ctpl_fail(r, KILN_ERR_FORMAT, "integer division or modulo by zero");
            *out = y == -1 || x % y == 0;
        }
        return KILN_OK;
    }
    double m = v.kind == CTPL_FLOAT ? fmod(fabs(v.u.f), 2.0) : (double)llabs((v.kind == CTPL_INT ? v.u.i : v.u.b) % 2);
    *out = id == T_ODD ? m == 1.0 : m == 0.0;
    return KILN_OK;
}

/* Python str.islower() / isupper(): some cased character, none of the
 * other case. */
static bool test_case(ctpl_val v, bool upper)
{
    bool any = false;
    size_t i = 0, k;
    if (v.kind != CTPL_STR)
        return false;
    while (i < v.u.s.n) {
        utf8proc_int32_t cp = (utf8proc_int32_t)ctpl_utf8_next(v.u.s.p + i, v.u.s.n - i, &k);
        int c = utf8proc_category(cp);
        bool is_up = c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LT, is_low = c == UTF8PROC_CATEGORY_LL;
        if ((upper && is_low) || (!upper && is_up))
            return false;
        any |= is_up || is_low;
        i += k;
    }
    return any;
}

kiln_status ctpl_apply_test(ctpl_rs *r, int id, const char *name, ctpl_val v, const ctpl_args *a, bool *out)
{
    bool gen = v.kind == CTPL_LIST && (v.u.l->flags & CTPL_LIST_GEN);
    ctpl_val arg = a->npos ? a->pos[0] : a->nkw ? a->kw[0] : ctpl_undef();
    switch (id) {
    case T_DEFINED: *out = v.kind != CTPL_UNDEF; return KILN_OK;
    case T_UNDEFINED: *out = v.kind == CTPL_UNDEF; return KILN_OK;
    case T_NONE: *out = v.kind == CTPL_NONE; return KILN_OK;
    case T_STRING: *out = v.kind == CTPL_STR; return KILN_OK;
    case T_NUMBER: *out = ctpl_is_number(v); return KILN_OK;
    case T_INTEGER: *out = v.kind == CTPL_INT; return KILN_OK;
    case T_FLOAT: *out = v.kind == CTPL_FLOAT; return KILN_OK;
    case T_MAPPING: *out = v.kind == CTPL_DICT; return KILN_OK;
    case T_ITERABLE:
        *out = v.kind == CTPL_STR || v.kind == CTPL_LIST || v.kind == CTPL_DICT || v.kind == CTPL_UNDEF ||
               v.kind == CTPL_LOOP;
        return KILN_OK;
    case T_SEQUENCE:
        *out = v.kind == CTPL_STR || (v.kind == CTPL_LIST && !gen) || v.kind == CTPL_DICT || v.kind == CTPL_UNDEF;
        return KILN_OK;
    case T_BOOLEAN: *out = v.kind == CTPL_BOOL; return KILN_OK;
    case T_TRUE: *out = v.kind == CTPL_BOOL && v.u.b; return KILN_OK;
    case T_FALSE: *out = v.kind == CTPL_BOOL && !v.u.b; return KILN_OK;
    case T_CALLABLE: *out = v.kind == CTPL_MACRO || v.kind == CTPL_METHOD || v.kind == CTPL_FUNC; return KILN_OK;
    case T_EQ: case T_NE: case T_LT: case T_LE: case T_GT: case T_GE:
        if (a->npos + a->nkw != 1)
            return ctpl_fail(r, KILN_ERR_FORMAT, "test '%s' takes one argument", name);
        return test_compare(r, id, v, arg, out);
    case T_IN:
        if (a->npos + a->nkw != 1)
            return ctpl_fail(r, KILN_ERR_FORMAT, "test 'in' takes one argument");
        return ctpl_contains(r, arg, v, out);
    case T_ODD: case T_EVEN: case T_DIVISIBLEBY: return test_number(r, id, v, a, out);
    case T_SAMEAS:
        if (v.kind <= CTPL_BOOL || arg.kind <= CTPL_BOOL) {
            *out = v.kind == arg.kind && (v.kind != CTPL_BOOL || v.u.b == arg.u.b);
            return KILN_OK;
        }
        if (v.kind == arg.kind && (v.kind == CTPL_LIST || v.kind == CTPL_DICT || v.kind == CTPL_NS)) {
            *out = v.u.l == arg.u.l;
            return KILN_OK;
        }
        return ctpl_fail(r, KILN_ERR_UNSUPPORTED, "'sameas' on %s values", ctpl_type_name(v));
    case T_LOWER: case T_UPPER: *out = test_case(v, id == T_UPPER); return KILN_OK;
    case T_ESCAPED: *out = false; return KILN_OK;
    case T_FILTER: case T_TEST:
        if (v.kind != CTPL_STR) {
            *out = false;
            return KILN_OK;
        }
        char *n = ctpl_strdup(r, v.u.s.p, v.u.s.n);
        if (!n)
            return KILN_ERR_OOM;
        *out = (id == T_FILTER ? ctpl_filter_id(n) : ctpl_test_id(n)) >= 0;
        return KILN_OK;
    default:
        return ctpl_fail(r, KILN_ERR_INTERNAL, "test id %d", id);
    }
}
