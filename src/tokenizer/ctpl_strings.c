/*
 * ctpl_strings.c - Python string operations and the methods templates call
 * on strings, dicts, lists and the loop variable.
 *
 * Strings are UTF-8 (pointer, length) values (ctpl_impl.h); results that
 * are substrings point into their source, others are copied into the render
 * arena.  Case mapping uses utf8proc's one-to-one mappings (Python's
 * one-to-many special cases such as "ß".upper() == "SS" are not reproduced).
 */
#include "tokenizer/ctpl_builtins.h"

#include <string.h>
#include <utf8proc.h>

/* ---- small helpers ---------------------------------------------------------------- */

static kiln_status finish_buf(ctpl_rs *r, kiln_buf *b, kiln_status st, ctpl_val *out)
{
    char *s = st ? NULL : ctpl_strdup(r, b->data ? b->data : "", b->len);
    if (s)
        *out = ctpl_str(s, b->len);
    buf_free(b);
    return st ? st : s ? KILN_OK : KILN_ERR_OOM;
}

static bool in_chars(uint32_t cp, const ctpl_val *chars)
{
    size_t i = 0, k;
    if (!chars)
        return ctpl_py_isspace(cp);
    while (i < chars->u.s.n) {
        if (ctpl_utf8_next(chars->u.s.p + i, chars->u.s.n - i, &k) == cp)
            return true;
        i += k;
    }
    return false;
}

ctpl_val ctpl_str_strip(ctpl_val s, const ctpl_val *chars, bool left, bool right)
{
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, i = 0, k, keep_end = 0;
    if (left)
        while (i < n && in_chars(ctpl_utf8_next(p + i, n - i, &k), chars))
            i += k;
    if (!right)
        return ctpl_str(p + i, n - i);
    for (size_t j = i; j < n; j += k)
        if (!in_chars(ctpl_utf8_next(p + j, n - j, &k), chars))
            keep_end = j + k;
    return ctpl_str(p + i, keep_end > i ? keep_end - i : 0);
}

static bool is_cased(uint32_t cp)
{
    int c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT;
}

static bool jtitle_sep(uint32_t cp)
{
    return cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || ctpl_py_isspace(cp);
}

kiln_status ctpl_str_case(ctpl_rs *r, ctpl_val s, int mode, ctpl_val *out)
{
    kiln_buf b = {0};
    kiln_status st = buf_reserve(&b, s.u.s.n + 1);
    bool start = true; /* at a word start (title modes) or the first char */
    size_t i = 0, k;
    while (!st && i < s.u.s.n) {
        uint32_t cp = ctpl_utf8_next(s.u.s.p + i, s.u.s.n - i, &k), o = cp;
        char tmp[4];
        utf8proc_int32_t c = (utf8proc_int32_t)cp;
        switch (mode) {
        case CTPL_CASE_UPPER: o = (uint32_t)utf8proc_toupper(c); break;
        case CTPL_CASE_LOWER: o = (uint32_t)utf8proc_tolower(c); break;
        case CTPL_CASE_CAPITALIZE:
            o = (uint32_t)(start ? utf8proc_totitle(c) : utf8proc_tolower(c));
            start = false;
            break;
        case CTPL_CASE_TITLE:
            if (is_cased(cp)) {
                o = (uint32_t)(start ? utf8proc_totitle(c) : utf8proc_tolower(c));
                start = false;
            } else {
                start = true;
            }
            break;
        default: /* jinja2's title filter */
            if (jtitle_sep(cp)) {
                start = true;
            } else {
                o = (uint32_t)(start ? utf8proc_toupper(c) : utf8proc_tolower(c));
                start = false;
            }
            break;
        }
        st = o == cp ? buf_append(&b, s.u.s.p + i, k) : buf_append(&b, tmp, ctpl_utf8_put(tmp, o));
        i += k;
    }
    return finish_buf(r, &b, st, out);
}

kiln_status ctpl_str_replace(ctpl_rs *r, ctpl_val s, ctpl_val old, ctpl_val new_, int64_t count,
                             ctpl_val *out)
{
    kiln_buf b = {0};
    kiln_status st = buf_reserve(&b, s.u.s.n + 1);
    size_t i = 0, k;
    if (old.u.s.n == 0) { /* Python inserts `new` around every character */
        while (!st && i <= s.u.s.n && count != 0) {
            st = buf_append(&b, new_.u.s.p, new_.u.s.n);
            count--;
            if (i == s.u.s.n)
                break;
            ctpl_utf8_next(s.u.s.p + i, s.u.s.n - i, &k);
            if (!st)
                st = buf_append(&b, s.u.s.p + i, k);
            i += k;
        }
        if (!st && i < s.u.s.n)
            st = buf_append(&b, s.u.s.p + i, s.u.s.n - i);
        return finish_buf(r, &b, st, out);
    }
    while (!st && i < s.u.s.n) {
        const char *hit = count != 0 ? memmem(s.u.s.p + i, s.u.s.n - i, old.u.s.p, old.u.s.n) : NULL;
        if (!hit) {
            st = buf_append(&b, s.u.s.p + i, s.u.s.n - i);
            break;
        }
        size_t at = (size_t)(hit - s.u.s.p);
        st = buf_append(&b, s.u.s.p + i, at - i);
        if (!st)
            st = buf_append(&b, new_.u.s.p, new_.u.s.n);
        i = at + old.u.s.n;
        count--;
    }
    return finish_buf(r, &b, st, out);
}

/* ---- split ------------------------------------------------------------------------- */

typedef struct span {
    size_t a, b;
} span;

/* Pieces of s: whitespace runs separate (sep NULL), or exact sep. */
static kiln_status split_all(ctpl_rs *r, ctpl_val s, const ctpl_val *sep, span **out, size_t *n)
{
    size_t cap = 8, len = 0, i = 0, k;
    span *v = ctpl_alloc(r, cap * sizeof *v);
    while (v) {
        span sp;
        if (sep) {
            const char *hit = memmem(s.u.s.p + i, s.u.s.n - i, sep->u.s.p, sep->u.s.n);
            sp.a = i;
            sp.b = hit ? (size_t)(hit - s.u.s.p) : s.u.s.n;
        } else {
            while (i < s.u.s.n && ctpl_py_isspace(ctpl_utf8_next(s.u.s.p + i, s.u.s.n - i, &k)))
                i += k;
            if (i == s.u.s.n)
                break;
            sp.a = i;
            while (i < s.u.s.n && !ctpl_py_isspace(ctpl_utf8_next(s.u.s.p + i, s.u.s.n - i, &k)))
                i += k;
            sp.b = i;
        }
        if (len == cap) {
            span *nv = ctpl_alloc(r, cap * 2 * sizeof *nv);
            if (!nv)
                return KILN_ERR_OOM;
            memcpy(nv, v, len * sizeof *v);
            v = nv;
            cap *= 2;
        }
        v[len++] = sp;
        if (sep) {
            if (sp.b == s.u.s.n)
                break;
            i = sp.b + sep->u.s.n;
        }
    }
    *out = v;
    *n = len;
    return v ? KILN_OK : KILN_ERR_OOM;
}

kiln_status ctpl_str_split(ctpl_rs *r, ctpl_val s, const ctpl_val *sep, int64_t maxsplit, bool from_right,
                           ctpl_val *out)
{
    span *sp;
    size_t n;
    if (sep && sep->u.s.n == 0)
        return ctpl_fail(r, KILN_ERR_FORMAT, "empty separator");
    kiln_status st = split_all(r, s, sep, &sp, &n);
    if (st)
        return st;
    /* Pieces beyond maxsplit merge into one remainder that runs to the end
     * (split) or from the start (rsplit) of the string. */
    if (maxsplit >= 0 && (size_t)maxsplit + 1 < n) {
        size_t keep = (size_t)maxsplit;
        if (!from_right) {
            sp[keep].b = s.u.s.n;
        } else {
            span rest = {0, sp[n - keep - 1].b};
            memmove(sp + 1, sp + n - keep, keep * sizeof *sp);
            sp[0] = rest;
        }
        n = keep + 1;
    }
    ctpl_list *l = ctpl_list_new(r, n);
    if (!l)
        return KILN_ERR_OOM;
    for (size_t i = 0; i < n; i++)
        l->items[l->len++] = ctpl_str(s.u.s.p + sp[i].a, sp[i].b - sp[i].a);
    *out = ctpl_list_val(l);
    return KILN_OK;
}

static size_t line_break_len(const char *p, size_t n)
{
    size_t k;
    uint32_t cp = ctpl_utf8_next(p, n, &k);
    if (cp == '\r' && n > 1 && p[1] == '\n')
        return 2;
    if (cp == '\n' || cp == '\r' || cp == 0x0b || cp == 0x0c || cp == 0x1c || cp == 0x1d || cp == 0x1e ||
        cp == 0x85 || cp == 0x2028 || cp == 0x2029)
        return k;
    return 0;
}

kiln_status ctpl_str_splitlines(ctpl_rs *r, ctpl_val s, ctpl_list **out)
{
    ctpl_list *l = ctpl_list_new(r, 0);
    size_t start = 0, i = 0, k;
    kiln_status st = l ? KILN_OK : KILN_ERR_OOM;
    while (!st && i < s.u.s.n) {
        size_t br = line_break_len(s.u.s.p + i, s.u.s.n - i);
        if (br) {
            st = ctpl_list_push(r, l, ctpl_str(s.u.s.p + start, i - start));
            i += br;
            start = i;
        } else {
            ctpl_utf8_next(s.u.s.p + i, s.u.s.n - i, &k);
            i += k;
        }
    }
    if (!st && start < s.u.s.n)
        st = ctpl_list_push(r, l, ctpl_str(s.u.s.p + start, s.u.s.n - start));
    *out = l;
    return st;
}

kiln_status ctpl_str_join(ctpl_rs *r, const ctpl_list *items, ctpl_val sep, ctpl_val *out)
{
    kiln_buf b = {0};
    kiln_status st = buf_reserve(&b, 16);
    for (size_t i = 0; !st && i < items->len; i++) {
        if (i)
            st = buf_append(&b, sep.u.s.p, sep.u.s.n);
        if (!st)
            st = ctpl_write_str(r, &b, items->items[i]);
    }
    return finish_buf(r, &b, st, out);
}

/* ---- string methods ------------------------------------------------------------------ */

static bool char_class(const char *name, ctpl_val s)
{
    size_t i = 0, k;
    bool any_cased = false;
    if (s.u.s.n == 0)
        return false;
    while (i < s.u.s.n) {
        uint32_t cp = ctpl_utf8_next(s.u.s.p + i, s.u.s.n - i, &k);
        int c = utf8proc_category((utf8proc_int32_t)cp);
        bool alpha = c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
        bool digit = c == UTF8PROC_CATEGORY_ND;
        bool numeric = digit || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
        i += k;
        if (!strcmp(name, "isdigit") || !strcmp(name, "isdecimal")) {
            if (!digit)
                return false;
        } else if (!strcmp(name, "isnumeric")) {
            if (!numeric)
                return false;
        } else if (!strcmp(name, "isalpha")) {
            if (!alpha)
                return false;
        } else if (!strcmp(name, "isalnum")) {
            if (!alpha && !numeric)
                return false;
        } else if (!strcmp(name, "isspace")) {
            if (!ctpl_py_isspace(cp))
                return false;
        } else if (!strcmp(name, "isupper") || !strcmp(name, "islower")) {
            bool want_upper = name[2] == 'u';
            if (c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LT) {
                if (!want_upper)
                    return false;
                any_cased = true;
            } else if (c == UTF8PROC_CATEGORY_LL) {
                if (want_upper)
                    return false;
                any_cased = true;
            }
        }
    }
    return strcmp(name, "isupper") && strcmp(name, "islower") ? true : any_cased;
}

static bool has_affix(ctpl_val s, ctpl_val a, bool suffix)
{
    if (a.u.s.n > s.u.s.n)
        return false;
    return memcmp(s.u.s.p + (suffix ? s.u.s.n - a.u.s.n : 0), a.u.s.p, a.u.s.n) == 0;
}

static kiln_status str_affix(ctpl_rs *r, ctpl_val s, const ctpl_args *a, bool suffix, ctpl_val *out)
{
    const char *what = suffix ? "endswith" : "startswith";
    if (a->npos != 1 || a->nkw)
        return ctpl_fail(r, KILN_ERR_UNSUPPORTED, "str.%s() is supported with one argument only", what);
    ctpl_val p = a->pos[0];
    bool hit = false;
    if (p.kind == CTPL_LIST && (p.u.l->flags & CTPL_LIST_TUPLE)) {
        for (size_t i = 0; i < p.u.l->len && !hit; i++) {
            kiln_status st = ctpl_need_str(r, what, p.u.l->items[i]);
            if (st)
                return st;
            hit = has_affix(s, p.u.l->items[i], suffix);
        }
    } else if (p.kind == CTPL_STR) {
        hit = has_affix(s, p, suffix);
    } else {
        return ctpl_fail(r, KILN_ERR_FORMAT, "%s first arg must be str or a tuple of str, not %s", what,
                         ctpl_type_name(p));
    }
    *out = ctpl_bool(hit);
    return KILN_OK;
}

/* Byte offset of the first (or last) occurrence of sub, or -1. */
static int64_t find_sub(ctpl_val s, ctpl_val sub, bool last)
{
    if (sub.u.s.n > s.u.s.n)
        return -1;
    int64_t found = -1;
    for (size_t i = 0; i + sub.u.s.n <= s.u.s.n; i++)
        if (memcmp(s.u.s.p + i, sub.u.s.p, sub.u.s.n) == 0) {
            found = (int64_t)i;
            if (!last)
                break;
        }
    return found;
}

static kiln_status str_find(ctpl_rs *r, ctpl_val s, const char *name, const ctpl_args *a, ctpl_val *out)
{
    if (a->npos != 1 || a->nkw)
        return ctpl_fail(r, KILN_ERR_UNSUPPORTED, "str.%s() is supported with one argument only", name);
    kiln_status st = ctpl_need_str(r, name, a->pos[0]);
    if (st)
        return st;
    ctpl_val sub = a->pos[0];
    if (!strcmp(name, "count")) {
        int64_t c = 0;
        if (sub.u.s.n == 0) {
            c = (int64_t)ctpl_utf8_count(s.u.s.p, s.u.s.n) + 1;
        } else {
            for (size_t i = 0; i + sub.u.s.n <= s.u.s.n;)
                if (memcmp(s.u.s.p + i, sub.u.s.p, sub.u.s.n) == 0)
                    c++, i += sub.u.s.n;
                else
                    i++;
        }
        *out = ctpl_int(c);
        return KILN_OK;
    }
    int64_t at = find_sub(s, sub, name[0] == 'r');
    if (at < 0 && strstr(name, "index"))
        return ctpl_fail(r, KILN_ERR_FORMAT, "substring not found");
    *out = ctpl_int(at < 0 ? -1 : (int64_t)ctpl_utf8_count(s.u.s.p, (size_t)at));
    return KILN_OK;
}

static kiln_status str_strip_method(ctpl_rs *r, ctpl_val s, const char *name, const ctpl_args *a,
                                    ctpl_val *out)
{
    static const char *const names[] = {"chars"};
    ctpl_val chars;
    bool given;
    kiln_status st = ctpl_bind(r, name, a, names, 1, &chars, &given);
    if (st)
        return st;
    if (given && chars.kind != CTPL_NONE && (st = ctpl_need_str(r, name, chars)))
        return st;
    bool use = given && chars.kind == CTPL_STR;
    *out = ctpl_str_strip(s, use ? &chars : NULL, name[0] != 'r', name[0] != 'l');
    return KILN_OK;
}

static kiln_status str_split_method(ctpl_rs *r, ctpl_val s, const char *name, const ctpl_args *a,
                                    ctpl_val *out)
{
    static const char *const names[] = {"sep", "maxsplit"};
    ctpl_val v[2];
    bool given[2];
    kiln_status st = ctpl_bind(r, name, a, names, 2, v, given);
    if (st)
        return st;
    bool has_sep = given[0] && v[0].kind != CTPL_NONE;
    if (has_sep && (st = ctpl_need_str(r, name, v[0])))
        return st;
    if (given[1] && v[1].kind != CTPL_INT)
        return ctpl_fail(r, KILN_ERR_FORMAT, "%s(): maxsplit must be an integer", name);
    return ctpl_str_split(r, s, has_sep ? &v[0] : NULL, given[1] ? v[1].u.i : -1, name[0] == 'r', out);
}

static kiln_status str_method(ctpl_rs *r, ctpl_val s, const char *name, const ctpl_args *a, ctpl_val *out)
{
    static const struct { const char *name; int mode; } cases[] = {
        {"upper", CTPL_CASE_UPPER}, {"lower", CTPL_CASE_LOWER},
        {"capitalize", CTPL_CASE_CAPITALIZE}, {"title", CTPL_CASE_TITLE},
    };
    kiln_status st;
    for (size_t i = 0; i < KILN_ARRAY_LEN(cases); i++)
        if (!strcmp(name, cases[i].name)) {
            if (a->npos || a->nkw)
                return ctpl_fail(r, KILN_ERR_FORMAT, "str.%s() takes no arguments", name);
            return ctpl_str_case(r, s, cases[i].mode, out);
        }
    if (!strcmp(name, "strip") || !strcmp(name, "lstrip") || !strcmp(name, "rstrip"))
        return str_strip_method(r, s, name, a, out);
    if (!strcmp(name, "split") || !strcmp(name, "rsplit"))
        return str_split_method(r, s, name, a, out);
    if (!strcmp(name, "startswith") || !strcmp(name, "endswith"))
        return str_affix(r, s, a, name[0] == 'e', out);
    if (!strcmp(name, "find") || !strcmp(name, "rfind") || !strcmp(name, "index") || !strcmp(name, "rindex") ||
        !strcmp(name, "count"))
        return str_find(r, s, name, a, out);
    if (!strncmp(name, "is", 2) && strcmp(name, "isidentifier") && strcmp(name, "isprintable") &&
        strcmp(name, "istitle") && strcmp(name, "isascii")) {
        *out = ctpl_bool(char_class(name, s));
        return KILN_OK;
    }
    if (!strcmp(name, "replace")) {
        if (a->nkw || a->npos < 2 || a->npos > 3)
            return ctpl_fail(r, KILN_ERR_FORMAT, "str.replace() takes 2 or 3 positional arguments");
        if ((st = ctpl_need_str(r, "replace", a->pos[0])) || (st = ctpl_need_str(r, "replace", a->pos[1])))
            return st;
        if (a->npos == 3 && a->pos[2].kind != CTPL_INT)
            return ctpl_fail(r, KILN_ERR_FORMAT, "str.replace() count must be an integer");
        return ctpl_str_replace(r, s, a->pos[0], a->pos[1], a->npos == 3 ? a->pos[2].u.i : -1, out);
    }
    if (!strcmp(name, "splitlines")) {
        ctpl_list *l;
        if (a->npos || a->nkw)
            return ctpl_fail(r, KILN_ERR_UNSUPPORTED, "str.splitlines() with arguments is not supported");
        st = ctpl_str_splitlines(r, s, &l);
        if (!st)
            *out = ctpl_list_val(l);
        return st;
    }
    if (!strcmp(name, "join")) {
        ctpl_list *l;
        if (a->npos != 1 || a->nkw)
            return ctpl_fail(r, KILN_ERR_FORMAT, "str.join() takes exactly one argument");
        if ((st = ctpl_iterate(r, a->pos[0], &l)))
            return st;
        for (size_t i = 0; i < l->len; i++)
            if ((st = ctpl_need_str(r, "join", l->items[i])))
                return st;
        return ctpl_str_join(r, l, s, out);
    }
    if (!strcmp(name, "removeprefix") || !strcmp(name, "removesuffix")) {
        bool suffix = name[6] == 's';
        if (a->npos != 1 || a->nkw)
            return ctpl_fail(r, KILN_ERR_FORMAT, "str.%s() takes one argument", name);
        if ((st = ctpl_need_str(r, name, a->pos[0])))
            return st;
        size_t n = a->pos[0].u.s.n;
        bool hit = has_affix(s, a->pos[0], suffix);
        *out = !hit ? s : suffix ? ctpl_str(s.u.s.p, s.u.s.n - n) : ctpl_str(s.u.s.p + n, s.u.s.n - n);
        return KILN_OK;
    }
    return ctpl_fail(r, KILN_ERR_UNSUPPORTED, "unsupported method str.%s()", name);
}

/* ---- dict, list and loop methods ---------------------------------------------------------- */

static kiln_status dict_method(ctpl_rs *r, ctpl_dict *d, const char *name, const ctpl_args *a,
                               ctpl_val *out)
{
    if (!strcmp(name, "get")) {
        if (a->nkw || a->npos < 1 || a->npos > 2)
            return ctpl_fail(r, KILN_ERR_FORMAT, "dict.get() takes 1 or 2 positional arguments");
        ctpl_val *hit = ctpl_dict_get(d, a->pos[0]);
        *out = hit ? *hit : a->npos == 2 ? a->pos[1] : ctpl_none();
        return KILN_OK;
    }
    bool items = !strcmp(name, "items"), keys = !strcmp(name, "keys"), vals = !strcmp(name, "values");
    bool copy = !strcmp(name, "copy");
    if (!(items || keys || vals || copy)) {
        if (!strcmp(name, "fromkeys"))
            return ctpl_fail(r, KILN_ERR_UNSUPPORTED, "unsupported method dict.fromkeys()");
        return ctpl_fail(r, KILN_ERR_FORMAT, "access to attribute '%s' of 'dict' object is unsafe", name);
    }
    if (a->npos || a->nkw)
        return ctpl_fail(r, KILN_ERR_FORMAT, "dict.%s() takes no arguments", name);
    if (copy) {
        ctpl_dict *c = ctpl_dict_new(r, d->len);
        if (!c)
            return KILN_ERR_OOM;
        memcpy(c->keys, d->keys, d->len * sizeof *c->keys);
        memcpy(c->vals, d->vals, d->len * sizeof *c->vals);
        c->len = d->len;
        *out = ctpl_dict_val(c);
        return KILN_OK;
    }
    ctpl_list *l = ctpl_list_new(r, d->len);
    if (!l)
        return KILN_ERR_OOM;
    for (size_t i = 0; i < d->len; i++) {
        if (!items) {
            l->items[l->len++] = keys ? d->keys[i] : d->vals[i];
            continue;
        }
        ctpl_list *pair = ctpl_list_new(r, 2);
        if (!pair)
            return KILN_ERR_OOM;
        pair->items[0] = d->keys[i];
        pair->items[1] = d->vals[i];
        pair->len = 2;
        pair->flags = CTPL_LIST_TUPLE;
        l->items[l->len++] = ctpl_list_val(pair);
    }
    *out = ctpl_list_val(l);
    return KILN_OK;
}

static kiln_status list_method(ctpl_rs *r, ctpl_list *l, const char *name, const ctpl_args *a,
                               ctpl_val *out)
{
    bool count = !strcmp(name, "count"), index = !strcmp(name, "index");
    if (!strcmp(name, "copy")) {
        ctpl_list *c = ctpl_list_new(r, l->len);
        if (!c)
            return KILN_ERR_OOM;
        memcpy(c->items, l->items, l->len * sizeof *c->items);
        c->len = l->len;
        *out = ctpl_list_val(c);
        return KILN_OK;
    }
    if (!count && !index)
        return ctpl_fail(r, KILN_ERR_FORMAT, "access to attribute '%s' of 'list' object is unsafe", name);
    if (a->npos != 1 || a->nkw)
        return ctpl_fail(r, KILN_ERR_UNSUPPORTED, "list.%s() is supported with one argument only", name);
    int64_t c = 0;
    for (size_t i = 0; i < l->len; i++)
        if (ctpl_equal(l->items[i], a->pos[0])) {
            if (index) {
                *out = ctpl_int((int64_t)i);
                return KILN_OK;
            }
            c++;
        }
    if (index)
        return ctpl_fail(r, KILN_ERR_FORMAT, "list.index(x): x not in list");
    *out = ctpl_int(c);
    return KILN_OK;
}

kiln_status ctpl_call_method(ctpl_rs *r, ctpl_method *m, const ctpl_args *a, ctpl_val *out)
{
    switch (m->self.kind) {
    case CTPL_STR: return str_method(r, m->self, m->name, a, out);
    case CTPL_DICT: return dict_method(r, m->self.u.d, m->name, a, out);
    case CTPL_LIST: return list_method(r, m->self.u.l, m->name, a, out);
    case CTPL_LOOP: return ctpl_call_func(r, CTPL_FN_LOOP_CYCLE, m->self, a, out);
    default: return ctpl_fail(r, KILN_ERR_INTERNAL, "method on a %s", ctpl_type_name(m->self));
    }
}
