/*
 * ctpl_builtins.c - attribute and item access, iteration, and the helpers
 * behind filters, tests, methods and global functions.
 *
 * Semantics are those of jinja2 3.1 inside transformers' ImmutableSandbox-
 * edEnvironment:
 *   - `obj.name` looks for a method first, then a dict item; `obj[key]` the
 *     other way round; anything missing is undefined (not an error), while
 *     using an undefined value's attribute or calling it is an error.
 *   - Filters that return generators in jinja2 (select, reject, selectattr,
 *     rejectattr, map, unique, reverse of a list, items) return lists marked
 *     CTPL_LIST_GEN, which behave like generators: always truthy, no
 *     length, not printable, consumed by the first iteration.
 *   - List methods that mutate (append, pop, ...) are refused, as the
 *     immutable sandbox refuses them.
 * The filter and test implementations proper are in ctpl_filters.c.
 */
#include "tokenizer/ctpl_builtins.h"

#include <string.h>
#include <time.h>

/* ---- argument binding -------------------------------------------------------------- */

kiln_status ctpl_bind(ctpl_rs *r, const char *what, const ctpl_args *a, const char *const *names,
                      size_t n, ctpl_val *vals, bool *given)
{
    for (size_t i = 0; i < n; i++)
        given[i] = false;
    if (a->npos > n)
        return ctpl_fail(r, KILN_ERR_FORMAT, "%s takes at most %zu argument(s), %zu given", what, n, a->npos);
    for (size_t i = 0; i < a->npos; i++) {
        vals[i] = a->pos[i];
        given[i] = true;
    }
    for (size_t k = 0; k < a->nkw; k++) {
        size_t i = 0;
        while (i < n && strcmp(names[i], a->names[k]) != 0)
            i++;
        if (i == n)
            return ctpl_fail(r, KILN_ERR_FORMAT, "%s got an unexpected keyword argument '%s'", what,
                             a->names[k]);
        if (given[i])
            return ctpl_fail(r, KILN_ERR_FORMAT, "%s got multiple values for argument '%s'", what, names[i]);
        vals[i] = a->kw[k];
        given[i] = true;
    }
    return KILN_OK;
}

kiln_status ctpl_need_str(ctpl_rs *r, const char *what, ctpl_val v)
{
    if (v.kind == CTPL_STR)
        return KILN_OK;
    return ctpl_fail(r, KILN_ERR_FORMAT, "%s: expected a string, got %s", what, ctpl_type_name(v));
}

/* ---- iteration and size -------------------------------------------------------------- */

static kiln_status str_chars(ctpl_rs *r, ctpl_val s, ctpl_list **out)
{
    ctpl_list *l = ctpl_list_new(r, ctpl_utf8_count(s.u.s.p, s.u.s.n));
    size_t i = 0, k;
    if (!l)
        return KILN_ERR_OOM;
    while (i < s.u.s.n) {
        ctpl_utf8_next(s.u.s.p + i, s.u.s.n - i, &k);
        l->items[l->len++] = ctpl_str(s.u.s.p + i, k);
        i += k;
    }
    *out = l;
    return KILN_OK;
}

kiln_status ctpl_iterate(ctpl_rs *r, ctpl_val v, ctpl_list **out)
{
    ctpl_list *l;
    switch (v.kind) {
    case CTPL_LIST:
        if (!(v.u.l->flags & CTPL_LIST_GEN)) {
            *out = v.u.l;
            return KILN_OK;
        }
        if (!(l = ctpl_list_new(r, 0)))
            return KILN_ERR_OOM;
        *l = *v.u.l;
        l->flags &= ~CTPL_LIST_GEN;
        v.u.l->len = 0; /* a generator is consumed */
        *out = l;
        return KILN_OK;
    case CTPL_DICT:
        if (!(l = ctpl_list_new(r, v.u.d->len)))
            return KILN_ERR_OOM;
        memcpy(l->items, v.u.d->keys, v.u.d->len * sizeof *l->items);
        l->len = v.u.d->len;
        *out = l;
        return KILN_OK;
    case CTPL_STR:
        return str_chars(r, v, out);
    case CTPL_UNDEF:
        *out = ctpl_list_new(r, 0);
        return *out ? KILN_OK : KILN_ERR_OOM;
    default:
        return ctpl_fail(r, KILN_ERR_FORMAT, "'%s' object is not iterable", ctpl_type_name(v));
    }
}

kiln_status ctpl_length(ctpl_rs *r, ctpl_val v, int64_t *out)
{
    switch (v.kind) {
    case CTPL_STR: *out = (int64_t)ctpl_utf8_count(v.u.s.p, v.u.s.n); return KILN_OK;
    case CTPL_DICT: *out = (int64_t)v.u.d->len; return KILN_OK;
    case CTPL_UNDEF: *out = 0; return KILN_OK;
    case CTPL_LIST:
        if (!(v.u.l->flags & CTPL_LIST_GEN)) {
            *out = (int64_t)v.u.l->len;
            return KILN_OK;
        }
        break;
    default:
        break;
    }
    return ctpl_fail(r, KILN_ERR_FORMAT, "object of type '%s' has no len()", ctpl_type_name(v));
}

kiln_status ctpl_contains(ctpl_rs *r, ctpl_val hay, ctpl_val needle, bool *out)
{
    ctpl_list *l;
    kiln_status st;
    *out = false;
    switch (hay.kind) {
    case CTPL_STR:
        if (needle.kind != CTPL_STR)
            return ctpl_fail(r, KILN_ERR_FORMAT, "'in <string>' requires string as left operand, not %s",
                             ctpl_type_name(needle));
        *out = needle.u.s.n == 0 || memmem(hay.u.s.p, hay.u.s.n, needle.u.s.p, needle.u.s.n) != NULL;
        return KILN_OK;
    case CTPL_DICT:
        *out = ctpl_dict_get(hay.u.d, needle) != NULL;
        return KILN_OK;
    case CTPL_LIST:
    case CTPL_UNDEF:
        if ((st = ctpl_iterate(r, hay, &l)))
            return st;
        for (size_t i = 0; i < l->len && !*out; i++)
            *out = ctpl_equal(l->items[i], needle);
        return KILN_OK;
    default:
        return ctpl_fail(r, KILN_ERR_FORMAT, "argument of type '%s' is not iterable", ctpl_type_name(hay));
    }
}

/* ---- attributes and items ------------------------------------------------------------- */

static const char *const STR_METHODS[] = {
    "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find", "format",
    "format_map", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier",
    "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper", "join", "ljust", "lower",
    "lstrip", "maketrans", "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex",
    "rjust", "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip", "swapcase",
    "title", "translate", "upper", "zfill", NULL,
};
static const char *const DICT_METHODS[] = {
    "clear", "copy", "fromkeys", "get", "items", "keys", "pop", "popitem", "setdefault", "update",
    "values", NULL,
};
static const char *const LIST_METHODS[] = {
    "append", "clear", "copy", "count", "extend", "index", "insert", "pop", "remove", "reverse", "sort", NULL,
};
static const char *const TUPLE_METHODS[] = {"count", "index", NULL};

static const char *find_name(const char *const *table, const char *name)
{
    for (size_t i = 0; table[i]; i++)
        if (strcmp(table[i], name) == 0)
            return table[i];
    return NULL;
}

static kiln_status method_val(ctpl_rs *r, ctpl_val self, const char *name, ctpl_val *out)
{
    ctpl_method *m = ctpl_alloc(r, sizeof *m);
    if (!m)
        return KILN_ERR_OOM;
    m->self = self;
    m->name = name;
    out->kind = CTPL_METHOD;
    out->u.bm = m;
    return KILN_OK;
}

static ctpl_val named_undef(const char *name)
{
    ctpl_val v = ctpl_undef();
    v.u.s.p = name;
    v.u.s.n = strlen(name);
    return v;
}

static kiln_status loop_attr(ctpl_rs *r, const ctpl_loop *lp, const char *name, ctpl_val *out)
{
    int64_t i = (int64_t)lp->index0, n = (int64_t)lp->items->len;
    if (!strcmp(name, "index")) *out = ctpl_int(i + 1);
    else if (!strcmp(name, "index0")) *out = ctpl_int(i);
    else if (!strcmp(name, "revindex")) *out = ctpl_int(n - i);
    else if (!strcmp(name, "revindex0")) *out = ctpl_int(n - i - 1);
    else if (!strcmp(name, "first")) *out = ctpl_bool(i == 0);
    else if (!strcmp(name, "last")) *out = ctpl_bool(i == n - 1);
    else if (!strcmp(name, "length")) *out = ctpl_int(n);
    else if (!strcmp(name, "depth")) *out = ctpl_int(1);
    else if (!strcmp(name, "depth0")) *out = ctpl_int(0);
    else if (!strcmp(name, "previtem")) *out = i > 0 ? lp->items->items[i - 1] : named_undef("previtem");
    else if (!strcmp(name, "nextitem")) *out = i + 1 < n ? lp->items->items[i + 1] : named_undef("nextitem");
    else if (!strcmp(name, "cycle")) {
        ctpl_val self = {.kind = CTPL_LOOP}; /* cycle() needs the loop's index */
        self.u.loop = (ctpl_loop *)lp;
        return method_val(r, self, "cycle", out);
    } else if (!strcmp(name, "changed"))
        return ctpl_fail(r, KILN_ERR_UNSUPPORTED, "loop.changed() is not supported");
    else
        *out = named_undef(name);
    return KILN_OK;
}

kiln_status ctpl_getattr(ctpl_rs *r, ctpl_val obj, const char *name, ctpl_val *out)
{
    const char *m = NULL;
    ctpl_val *hit;
    switch (obj.kind) {
    case CTPL_UNDEF:
        if (obj.u.s.p)
            return ctpl_fail(r, KILN_ERR_FORMAT, "'%.*s' is undefined", (int)obj.u.s.n, obj.u.s.p);
        return ctpl_fail(r, KILN_ERR_FORMAT, "an undefined value has no attribute '%s'", name);
    case CTPL_STR: m = find_name(STR_METHODS, name); break;
    case CTPL_DICT:
        if ((m = find_name(DICT_METHODS, name)))
            break;
        hit = ctpl_dict_get_str(obj.u.d, name);
        *out = hit ? *hit : named_undef(name);
        return KILN_OK;
    case CTPL_NS:
        hit = ctpl_dict_get_str(obj.u.d, name);
        *out = hit ? *hit : named_undef(name);
        return KILN_OK;
    case CTPL_LIST:
        if (!(obj.u.l->flags & CTPL_LIST_GEN))
            m = find_name(obj.u.l->flags & CTPL_LIST_TUPLE ? TUPLE_METHODS : LIST_METHODS, name);
        break;
    case CTPL_LOOP:
        return loop_attr(r, obj.u.loop, name, out);
    default:
        break;
    }
    if (m)
        return method_val(r, obj, m, out);
    *out = named_undef(name);
    return KILN_OK;
}

kiln_status ctpl_getitem(ctpl_rs *r, ctpl_val obj, ctpl_val key, ctpl_val *out)
{
    bool int_key = key.kind == CTPL_INT || key.kind == CTPL_BOOL;
    int64_t idx = key.kind == CTPL_INT ? key.u.i : key.kind == CTPL_BOOL ? key.u.b : 0;
    if (obj.kind == CTPL_UNDEF)
        return ctpl_getattr(r, obj, "item", out);
    if (obj.kind == CTPL_DICT) {
        ctpl_val *hit = ctpl_dict_get(obj.u.d, key);
        if (hit) {
            *out = *hit;
            return KILN_OK;
        }
    } else if (obj.kind == CTPL_LIST && !(obj.u.l->flags & CTPL_LIST_GEN) && int_key) {
        int64_t n = (int64_t)obj.u.l->len;
        if (idx < 0)
            idx += n;
        *out = idx >= 0 && idx < n ? obj.u.l->items[idx] : ctpl_undef();
        return KILN_OK;
    } else if (obj.kind == CTPL_STR && int_key) {
        int64_t n = (int64_t)ctpl_utf8_count(obj.u.s.p, obj.u.s.n);
        if (idx < 0)
            idx += n;
        if (idx < 0 || idx >= n) {
            *out = ctpl_undef();
            return KILN_OK;
        }
        size_t off = ctpl_utf8_offset(obj.u.s.p, obj.u.s.n, (size_t)idx), k;
        ctpl_utf8_next(obj.u.s.p + off, obj.u.s.n - off, &k);
        *out = ctpl_str(obj.u.s.p + off, k);
        return KILN_OK;
    }
    if (key.kind == CTPL_STR) {
        char *name = ctpl_strdup(r, key.u.s.p, key.u.s.n);
        return name ? ctpl_getattr(r, obj, name, out) : KILN_ERR_OOM;
    }
    *out = ctpl_undef();
    return KILN_OK;
}

/* ---- global functions ---------------------------------------------------------------------- */

static kiln_status fn_raise(ctpl_rs *r, const ctpl_args *a)
{
    ctpl_val msg = a->npos ? a->pos[0] : ctpl_undef();
    ctpl_val s;
    kiln_status st = ctpl_to_str(r, msg, &s);
    if (st)
        return st;
    return kiln_err_set(KILN_ERR_INVALID_ARG, "%.*s", (int)s.u.s.n, s.u.s.p);
}

/* datetime.now().strftime(fmt): %f is expanded here, the rest by strftime. */
static kiln_status fn_strftime(ctpl_rs *r, const ctpl_args *a, ctpl_val *out)
{
    if (a->npos != 1 || a->nkw || a->pos[0].kind != CTPL_STR)
        return ctpl_fail(r, KILN_ERR_FORMAT, "strftime_now() takes one string argument");
    ctpl_val f = a->pos[0];
    if (f.u.s.n > 1024)
        return ctpl_fail(r, KILN_ERR_RANGE, "strftime_now() format too long");
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    kiln_buf fmt = {0};
    kiln_status st = KILN_OK;
    for (size_t i = 0; !st && i < f.u.s.n; i++) {
        if (f.u.s.p[i] == '%' && i + 1 < f.u.s.n && f.u.s.p[i + 1] == 'f') {
            st = buf_printf(&fmt, "%06ld", ts.tv_nsec / 1000);
            i++;
        } else if (f.u.s.p[i] == '%' && i + 1 < f.u.s.n) {
            st = buf_append(&fmt, f.u.s.p + i, 2);
            i++;
        } else {
            st = buf_append_char(&fmt, f.u.s.p[i]);
        }
    }
    size_t cap = fmt.len * 64 + 64;
    char *res = st ? NULL : ctpl_alloc(r, cap);
    if (res) {
        size_t n = fmt.len ? strftime(res, cap, fmt.data, &tm) : 0;
        *out = ctpl_str(res, n);
    }
    buf_free(&fmt);
    return st ? st : res ? KILN_OK : KILN_ERR_OOM;
}

static kiln_status fn_range(ctpl_rs *r, const ctpl_args *a, ctpl_val *out)
{
    int64_t v[3] = {0, 0, 1};
    if (a->npos < 1 || a->npos > 3 || a->nkw)
        return ctpl_fail(r, KILN_ERR_FORMAT, "range() takes 1 to 3 integer arguments");
    for (size_t i = 0; i < a->npos; i++) {
        if (a->pos[i].kind != CTPL_INT && a->pos[i].kind != CTPL_BOOL)
            return ctpl_fail(r, KILN_ERR_FORMAT, "range() arguments must be integers, not %s",
                             ctpl_type_name(a->pos[i]));
        v[a->npos == 1 ? 1 : i] = a->pos[i].kind == CTPL_INT ? a->pos[i].u.i : a->pos[i].u.b;
    }
    if (v[2] == 0)
        return ctpl_fail(r, KILN_ERR_FORMAT, "range() arg 3 must not be zero");
    double count = v[2] > 0 ? ((double)v[1] - (double)v[0]) / (double)v[2]
                            : ((double)v[0] - (double)v[1]) / -(double)v[2];
    if (count > CTPL_MAX_RANGE)
        return ctpl_fail(r, KILN_ERR_RANGE, "range too big, maximum size for range is %d", CTPL_MAX_RANGE);
    ctpl_list *l = ctpl_list_new(r, count > 0 ? (size_t)count + 1 : 0);
    if (!l)
        return KILN_ERR_OOM;
    for (int64_t x = v[0]; v[2] > 0 ? x < v[1] : x > v[1]; x += v[2])
        l->items[l->len++] = ctpl_int(x);
    *out = ctpl_list_val(l);
    return KILN_OK;
}

/* dict(*args, **kwargs) for namespace() and dict(). */
static kiln_status fn_dict(ctpl_rs *r, const ctpl_args *a, bool ns, ctpl_val *out)
{
    ctpl_dict *d = ctpl_dict_new(r, a->nkw);
    kiln_status st = d ? KILN_OK : KILN_ERR_OOM;
    if (!st && a->npos > 1)
        st = ctpl_fail(r, KILN_ERR_FORMAT, "%s expected at most 1 positional argument", ns ? "namespace" : "dict");
    if (!st && a->npos == 1) {
        ctpl_val src = a->pos[0];
        if (src.kind == CTPL_DICT || src.kind == CTPL_NS) {
            for (size_t i = 0; !st && i < src.u.d->len; i++)
                st = ctpl_dict_set(r, d, src.u.d->keys[i], src.u.d->vals[i]);
        } else {
            ctpl_list *l;
            if (!(st = ctpl_iterate(r, src, &l)))
                for (size_t i = 0; !st && i < l->len; i++) {
                    ctpl_val p = l->items[i];
                    if (p.kind != CTPL_LIST || p.u.l->len != 2)
                        st = ctpl_fail(r, KILN_ERR_FORMAT, "dictionary update sequence element has wrong length");
                    else
                        st = ctpl_dict_set(r, d, p.u.l->items[0], p.u.l->items[1]);
                }
        }
    }
    for (size_t k = 0; !st && k < a->nkw; k++)
        st = ctpl_dict_set(r, d, ctpl_str(a->names[k], strlen(a->names[k])), a->kw[k]);
    for (size_t i = 0; !st && ns && i < d->len; i++)
        if (d->keys[i].kind == CTPL_STR && d->keys[i].u.s.n && d->keys[i].u.s.p[0] == '_')
            st = ctpl_fail(r, KILN_ERR_FORMAT, "cannot store underscore-prefixed attribute '%.*s' on a namespace",
                           (int)d->keys[i].u.s.n, d->keys[i].u.s.p);
    if (st)
        return st;
    *out = ctpl_dict_val(d);
    out->kind = ns ? CTPL_NS : CTPL_DICT;
    return KILN_OK;
}

kiln_status ctpl_call_func(ctpl_rs *r, int fn, ctpl_val self, const ctpl_args *a, ctpl_val *out)
{
    switch (fn) {
    case CTPL_FN_RAISE: return fn_raise(r, a);
    case CTPL_FN_STRFTIME: return fn_strftime(r, a, out);
    case CTPL_FN_RANGE: return fn_range(r, a, out);
    case CTPL_FN_NAMESPACE: return fn_dict(r, a, true, out);
    case CTPL_FN_DICT: return fn_dict(r, a, false, out);
    case CTPL_FN_LOOP_CYCLE:
        if (a->npos == 0 || a->nkw)
            return ctpl_fail(r, KILN_ERR_FORMAT, "loop.cycle() needs at least one positional argument");
        *out = a->pos[self.u.loop->index0 % a->npos];
        return KILN_OK;
    default:
        return ctpl_fail(r, KILN_ERR_INTERNAL, "unknown function %d", fn);
    }
}
