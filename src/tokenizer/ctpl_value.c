/*
 * ctpl_value.c - runtime values of the chat-template interpreter.
 *
 * Values mirror the Python objects jinja2 would hold (see ctpl_impl.h), and
 * the conversions to text follow CPython exactly where templates can see
 * them: str() and repr() of None/bool/int/float/str/list/tuple/dict, the
 * shortest round-trip float repr, and json.dumps (used by transformers'
 * tojson) with its escaping, separators and indentation.
 */
#include "tokenizer/ctpl_impl.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- errors and memory -------------------------------------------------------- */

kiln_status ctpl_fail(ctpl_rs *r, kiln_status st, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_err_set(st, "chat template line %d: %s", r->line, msg);
}

void *ctpl_alloc(ctpl_rs *r, size_t size)
{
    if (arena_capacity(r->ar) > CTPL_MAX_MEMORY) {
        ctpl_fail(r, KILN_ERR_RANGE, "render used more than %zu MiB of memory", CTPL_MAX_MEMORY >> 20);
        return NULL;
    }
    void *p = arena_alloc(r->ar, size ? size : 1, 16);
    if (!p)
        kiln_err_set(KILN_ERR_OOM, "chat template: out of memory");
    return p;
}

char *ctpl_strdup(ctpl_rs *r, const char *p, size_t n)
{
    char *d = ctpl_alloc(r, n + 1);
    if (d) {
        if (n)
            memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

/* ---- lists and dicts ------------------------------------------------------------ */

ctpl_list *ctpl_list_new(ctpl_rs *r, size_t cap)
{
    ctpl_list *l = ctpl_alloc(r, sizeof *l);
    if (!l)
        return NULL;
    memset(l, 0, sizeof *l);
    if (cap) {
        if (cap > SIZE_MAX / sizeof(ctpl_val) || !(l->items = ctpl_alloc(r, cap * sizeof(ctpl_val))))
            return NULL;
        l->cap = cap;
    }
    return l;
}

kiln_status ctpl_list_push(ctpl_rs *r, ctpl_list *l, ctpl_val v)
{
    if (l->len == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        ctpl_val *items = ctpl_alloc(r, cap * sizeof *items);
        if (!items)
            return kiln_err_set(KILN_ERR_OOM, "%s", kiln_last_error());
        if (l->len)
            memcpy(items, l->items, l->len * sizeof *items);
        l->items = items;
        l->cap = cap;
    }
    l->items[l->len++] = v;
    return KILN_OK;
}

ctpl_dict *ctpl_dict_new(ctpl_rs *r, size_t cap)
{
    ctpl_dict *d = ctpl_alloc(r, sizeof *d);
    if (!d)
        return NULL;
    memset(d, 0, sizeof *d);
    if (cap) {
        d->keys = ctpl_alloc(r, cap * sizeof(ctpl_val));
        d->vals = ctpl_alloc(r, cap * sizeof(ctpl_val));
        if (!d->keys || !d->vals)
            return NULL;
        d->cap = cap;
    }
    return d;
}

ctpl_val *ctpl_dict_get(const ctpl_dict *d, ctpl_val k)
{
    for (size_t i = 0; i < d->len; i++)
        if (ctpl_equal(d->keys[i], k))
            return &d->vals[i];
    return NULL;
}

ctpl_val *ctpl_dict_get_str(const ctpl_dict *d, const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < d->len; i++)
        if (d->keys[i].kind == CTPL_STR && d->keys[i].u.s.n == n && memcmp(d->keys[i].u.s.p, key, n) == 0)
            return &d->vals[i];
    return NULL;
}

kiln_status ctpl_dict_set(ctpl_rs *r, ctpl_dict *d, ctpl_val k, ctpl_val v)
{
    ctpl_val *slot = ctpl_dict_get(d, k);
    if (slot) {
        *slot = v;
        return KILN_OK;
    }
    if (d->len == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        ctpl_val *keys = ctpl_alloc(r, cap * sizeof *keys), *vals = ctpl_alloc(r, cap * sizeof *vals);
        if (!keys || !vals)
            return kiln_err_set(KILN_ERR_OOM, "%s", kiln_last_error());
        if (d->len) {
            memcpy(keys, d->keys, d->len * sizeof *keys);
            memcpy(vals, d->vals, d->len * sizeof *vals);
        }
        d->keys = keys;
        d->vals = vals;
        d->cap = cap;
    }
    d->keys[d->len] = k;
    d->vals[d->len] = v;
    d->len++;
    return KILN_OK;
}

ctpl_val ctpl_list_val(ctpl_list *l)
{
    ctpl_val v = {.kind = CTPL_LIST};
    v.u.l = l;
    return v;
}

ctpl_val ctpl_dict_val(ctpl_dict *d)
{
    ctpl_val v = {.kind = CTPL_DICT};
    v.u.d = d;
    return v;
}

/* ---- UTF-8 ------------------------------------------------------------------------ */

uint32_t ctpl_utf8_next(const char *p, size_t n, size_t *len)
{
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)p, (utf8proc_ssize_t)n, &cp);
    if (k <= 0) {
        *len = 1;
        return (unsigned char)p[0];
    }
    *len = (size_t)k;
    return (uint32_t)cp;
}

size_t ctpl_utf8_put(char *dst, uint32_t cp)
{
    if (cp > 0x10FFFF)
        cp = 0xFFFD;
    return (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)dst);
}

size_t ctpl_utf8_count(const char *p, size_t n)
{
    size_t c = 0, i = 0, k;
    while (i < n) {
        if ((unsigned char)p[i] < 0x80) {
            i++;
        } else {
            ctpl_utf8_next(p + i, n - i, &k);
            i += k;
        }
        c++;
    }
    return c;
}

size_t ctpl_utf8_offset(const char *p, size_t n, size_t idx)
{
    size_t i = 0, k;
    while (idx > 0 && i < n) {
        ctpl_utf8_next(p + i, n - i, &k);
        i += k;
        idx--;
    }
    return i;
}

bool ctpl_py_isspace(uint32_t cp)
{
    if (cp < 0x80)
        return cp == ' ' || (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x1f);
    return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* ---- truth, equality, order ------------------------------------------------------- */

const char *ctpl_type_name(ctpl_val v)
{
    switch (v.kind) {
    case CTPL_UNDEF: return "Undefined";
    case CTPL_NONE: return "NoneType";
    case CTPL_BOOL: return "bool";
    case CTPL_INT: return "int";
    case CTPL_FLOAT: return "float";
    case CTPL_STR: return "str";
    case CTPL_LIST:
        return v.u.l->flags & CTPL_LIST_GEN ? "generator" : v.u.l->flags & CTPL_LIST_TUPLE ? "tuple" : "list";
    case CTPL_DICT: return "dict";
    case CTPL_NS: return "Namespace";
    case CTPL_MACRO: return "Macro";
    case CTPL_LOOP: return "LoopContext";
    default: return "function";
    }
}

bool ctpl_truthy(ctpl_val v)
{
    switch (v.kind) {
    case CTPL_UNDEF:
    case CTPL_NONE: return false;
    case CTPL_BOOL: return v.u.b;
    case CTPL_INT: return v.u.i != 0;
    case CTPL_FLOAT: return v.u.f != 0.0;
    case CTPL_STR: return v.u.s.n != 0;
    case CTPL_LIST: return (v.u.l->flags & CTPL_LIST_GEN) || v.u.l->len != 0;
    case CTPL_DICT: return v.u.d->len != 0;
    default: return true;
    }
}

bool ctpl_is_number(ctpl_val v)
{
    return v.kind == CTPL_INT || v.kind == CTPL_FLOAT || v.kind == CTPL_BOOL;
}

double ctpl_as_double(ctpl_val v)
{
    return v.kind == CTPL_FLOAT ? v.u.f : v.kind == CTPL_INT ? (double)v.u.i : (double)v.u.b;
}

static int64_t as_int(ctpl_val v) { return v.kind == CTPL_INT ? v.u.i : (int64_t)v.u.b; }

static bool dict_equal(const ctpl_dict *a, const ctpl_dict *b)
{
    if (a->len != b->len)
        return false;
    for (size_t i = 0; i < a->len; i++) {
        ctpl_val *o = ctpl_dict_get(b, a->keys[i]);
        if (!o || !ctpl_equal(a->vals[i], *o))
            return false;
    }
    return true;
}

bool ctpl_equal(ctpl_val a, ctpl_val b)
{
    if (ctpl_is_number(a) && ctpl_is_number(b)) {
        if (a.kind != CTPL_FLOAT && b.kind != CTPL_FLOAT)
            return as_int(a) == as_int(b);
        return ctpl_as_double(a) == ctpl_as_double(b);
    }
    if (a.kind != b.kind)
        return false;
    switch (a.kind) {
    case CTPL_UNDEF:
    case CTPL_NONE: return true;
    case CTPL_STR: return a.u.s.n == b.u.s.n && (a.u.s.n == 0 || memcmp(a.u.s.p, b.u.s.p, a.u.s.n) == 0);
    case CTPL_LIST:
        if (a.u.l == b.u.l)
            return true;
        if ((a.u.l->flags | b.u.l->flags) & CTPL_LIST_GEN)
            return false;
        if ((a.u.l->flags & CTPL_LIST_TUPLE) != (b.u.l->flags & CTPL_LIST_TUPLE) || a.u.l->len != b.u.l->len)
            return false;
        for (size_t i = 0; i < a.u.l->len; i++)
            if (!ctpl_equal(a.u.l->items[i], b.u.l->items[i]))
                return false;
        return true;
    case CTPL_DICT: return a.u.d == b.u.d || dict_equal(a.u.d, b.u.d);
    case CTPL_NS: return a.u.d == b.u.d;
    case CTPL_MACRO: return a.u.m == b.u.m;
    case CTPL_FUNC: return a.u.fn == b.u.fn;
    default: return false;
    }
}

static int cmp_bytes(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an < bn ? -1 : an > bn ? 1 : 0);
}

kiln_status ctpl_compare(ctpl_rs *r, ctpl_val a, ctpl_val b, int *cmp)
{
    if (ctpl_is_number(a) && ctpl_is_number(b)) {
        if (a.kind != CTPL_FLOAT && b.kind != CTPL_FLOAT) {
            int64_t x = as_int(a), y = as_int(b);
            *cmp = x < y ? -1 : x > y;
        } else {
            double x = ctpl_as_double(a), y = ctpl_as_double(b);
            *cmp = x < y ? -1 : x > y;
        }
        return KILN_OK;
    }
    if (a.kind == CTPL_STR && b.kind == CTPL_STR) {
        *cmp = cmp_bytes(a.u.s.p, a.u.s.n, b.u.s.p, b.u.s.n);
        return KILN_OK;
    }
    if (a.kind == CTPL_LIST && b.kind == CTPL_LIST && !((a.u.l->flags | b.u.l->flags) & CTPL_LIST_GEN) &&
        (a.u.l->flags & CTPL_LIST_TUPLE) == (b.u.l->flags & CTPL_LIST_TUPLE)) {
        for (size_t i = 0; i < a.u.l->len && i < b.u.l->len; i++) {
            if (ctpl_equal(a.u.l->items[i], b.u.l->items[i]))
                continue;
            return ctpl_compare(r, a.u.l->items[i], b.u.l->items[i], cmp);
        }
        *cmp = a.u.l->len < b.u.l->len ? -1 : a.u.l->len > b.u.l->len;
        return KILN_OK;
    }
    return ctpl_fail(r, KILN_ERR_FORMAT, "cannot compare '%s' with '%s'", ctpl_type_name(a), ctpl_type_name(b));
}

/* ---- text ----------------------------------------------------------------------------- */

/* Python repr(float): the shortest digits that round-trip, fixed notation
 * for exponents -4..15, else d.ddde+XX.  json: Infinity/NaN spellings. */
kiln_status ctpl_write_float(kiln_buf *b, double f, bool json)
{
    char digits[40], out[64];
    if (isnan(f) || isinf(f)) {
        return buf_append_str(b, isnan(f) ? (json ? "NaN" : "nan")
                                          : f > 0 ? (json ? "Infinity" : "inf") : (json ? "-Infinity" : "-inf"));
    }
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(digits, sizeof digits, "%.*e", prec - 1, f);
        if (strtod(digits, NULL) == f)
            break;
    }
    /* digits: [-]d[.ddd]e[+-]XX */
    char *e = strchr(digits, 'e');
    int exp10 = atoi(e + 1);
    *e = '\0';
    bool neg = digits[0] == '-';
    char mant[24];
    size_t m = 0;
    for (const char *q = digits + neg; *q; q++)
        if (*q != '.')
            mant[m++] = *q;
    mant[m] = '\0';
    size_t k = 0;
    if (neg)
        out[k++] = '-';
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            k += (size_t)snprintf(out + k, sizeof out - k, "0.");
            for (int z = -1; z > exp10; z--)
                out[k++] = '0';
            k += (size_t)snprintf(out + k, sizeof out - k, "%s", mant);
        } else {
            for (int i = 0; i <= exp10; i++)
                out[k++] = (size_t)i < m ? mant[i] : '0';
            out[k++] = '.';
            if ((size_t)exp10 + 1 < m)
                k += (size_t)snprintf(out + k, sizeof out - k, "%s", mant + exp10 + 1);
            else
                out[k++] = '0';
        }
    } else {
        out[k++] = mant[0];
        if (m > 1) {
            out[k++] = '.';
            k += (size_t)snprintf(out + k, sizeof out - k, "%s", mant + 1);
        }
        k += (size_t)snprintf(out + k, sizeof out - k, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    }
    return buf_append(b, out, k);
}

static bool py_printable(uint32_t cp)
{
    if (cp == ' ')
        return true;
    if (cp < 0x20 || cp == 0x7f)
        return false;
    if (cp < 0x7f)
        return true;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO: case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
        return false;
    default:
        return true;
    }
}

static kiln_status write_str_repr(kiln_buf *b, const char *s, size_t n)
{
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    kiln_status st = buf_append_char(b, q);
    size_t i = 0, k;
    while (!st && i < n) {
        uint32_t cp = ctpl_utf8_next(s + i, n - i, &k);
        if (cp == (uint32_t)q || cp == '\\')
            st = buf_printf(b, "\\%c", (char)cp);
        else if (cp == '\n' || cp == '\r' || cp == '\t')
            st = buf_append_str(b, cp == '\n' ? "\\n" : cp == '\r' ? "\\r" : "\\t");
        else if (py_printable(cp))
            st = buf_append(b, s + i, k);
        else if (cp < 0x100)
            st = buf_printf(b, "\\x%02x", cp);
        else if (cp < 0x10000)
            st = buf_printf(b, "\\u%04x", cp);
        else
            st = buf_printf(b, "\\U%08x", cp);
        i += k;
    }
    return st ? st : buf_append_char(b, q);
}

static kiln_status write_seq(ctpl_rs *r, kiln_buf *b, ctpl_val v)
{
    const ctpl_list *l = v.u.l;
    bool tuple = l->flags & CTPL_LIST_TUPLE;
    kiln_status st = buf_append_char(b, tuple ? '(' : '[');
    for (size_t i = 0; !st && i < l->len; i++) {
        if (i)
            st = buf_append_str(b, ", ");
        if (!st)
            st = ctpl_write_repr(r, b, l->items[i]);
    }
    if (!st && tuple && l->len == 1)
        st = buf_append_char(b, ',');
    return st ? st : buf_append_char(b, tuple ? ')' : ']');
}

kiln_status ctpl_write_repr(ctpl_rs *r, kiln_buf *b, ctpl_val v)
{
    kiln_status st = KILN_OK;
    if (r->call_depth > CTPL_MAX_CALL_DEPTH * 4)
        return ctpl_fail(r, KILN_ERR_RANGE, "value nested too deeply to print");
    switch (v.kind) {
    case CTPL_STR: return write_str_repr(b, v.u.s.p, v.u.s.n);
    case CTPL_UNDEF: return ctpl_fail(r, KILN_ERR_UNSUPPORTED, "printing an undefined value inside a container");
    case CTPL_LIST:
        if (v.u.l->flags & CTPL_LIST_GEN)
            return ctpl_fail(r, KILN_ERR_UNSUPPORTED, "printing a generator is not supported");
        r->call_depth++;
        st = write_seq(r, b, v);
        r->call_depth--;
        return st;
    case CTPL_DICT:
        r->call_depth++;
        st = buf_append_char(b, '{');
        for (size_t i = 0; !st && i < v.u.d->len; i++) {
            if (i && (st = buf_append_str(b, ", ")))
                break;
            if (!(st = ctpl_write_repr(r, b, v.u.d->keys[i])) && !(st = buf_append_str(b, ": ")))
                st = ctpl_write_repr(r, b, v.u.d->vals[i]);
        }
        r->call_depth--;
        return st ? st : buf_append_char(b, '}');
    default:
        return ctpl_write_str(r, b, v);
    }
}

kiln_status ctpl_write_str(ctpl_rs *r, kiln_buf *b, ctpl_val v)
{
    switch (v.kind) {
    case CTPL_UNDEF: return KILN_OK;
    case CTPL_NONE: return buf_append_str(b, "None");
    case CTPL_BOOL: return buf_append_str(b, v.u.b ? "True" : "False");
    case CTPL_INT: return buf_printf(b, "%" PRId64, v.u.i);
    case CTPL_FLOAT: return ctpl_write_float(b, v.u.f, false);
    case CTPL_STR: return buf_append(b, v.u.s.p, v.u.s.n);
    case CTPL_LIST:
    case CTPL_DICT: return ctpl_write_repr(r, b, v);
    default:
        return ctpl_fail(r, KILN_ERR_UNSUPPORTED, "printing a %s is not supported", ctpl_type_name(v));
    }
}

kiln_status ctpl_to_str(ctpl_rs *r, ctpl_val v, ctpl_val *out)
{
    if (v.kind == CTPL_STR) {
        *out = v;
        return KILN_OK;
    }
    if (v.kind == CTPL_UNDEF) {
        *out = ctpl_str("", 0);
        return KILN_OK;
    }
    kiln_buf b = {0};
    kiln_status st = ctpl_write_str(r, &b, v);
    if (!st) {
        char *s = ctpl_strdup(r, b.data ? b.data : "", b.len);
        st = s ? KILN_OK : KILN_ERR_OOM;
        if (s)
            *out = ctpl_str(s, b.len);
    }
    buf_free(&b);
    return st;
}

/* ---- JSON --------------------------------------------------------------------------------- */

static kiln_status json_str_out(kiln_buf *b, const char *s, size_t n, bool ascii)
{
    kiln_status st = buf_append_char(b, '"');
    size_t i = 0, k;
    while (!st && i < n) {
        uint32_t cp = ctpl_utf8_next(s + i, n - i, &k);
        const char *esc = cp == '"' ? "\\\"" : cp == '\\' ? "\\\\" : cp == '\n' ? "\\n" : cp == '\r' ? "\\r"
                        : cp == '\t' ? "\\t" : cp == '\b' ? "\\b" : cp == '\f' ? "\\f" : NULL;
        if (esc)
            st = buf_append_str(b, esc);
        else if (cp < 0x20 || (ascii && cp >= 0x7f && cp < 0x10000))
            st = buf_printf(b, "\\u%04x", cp);
        else if (ascii && cp >= 0x10000)
            st = buf_printf(b, "\\u%04x\\u%04x", 0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
        else
            st = buf_append(b, s + i, k);
        i += k;
    }
    return st ? st : buf_append_char(b, '"');
}

static kiln_status json_newline(kiln_buf *b, const ctpl_json_opts *o, int level)
{
    kiln_status st = buf_append_char(b, '\n');
    for (int i = 0; !st && i < level; i++)
        st = buf_append(b, o->indent, o->indent_n);
    return st;
}

/* A dict key as json.dumps writes it (str keys as is; others converted). */
static kiln_status json_key(ctpl_rs *r, kiln_buf *b, ctpl_val k, const ctpl_json_opts *o)
{
    switch (k.kind) {
    case CTPL_STR: return json_str_out(b, k.u.s.p, k.u.s.n, o->ensure_ascii);
    case CTPL_NONE: return buf_append_str(b, "\"null\"");
    case CTPL_BOOL: return buf_append_str(b, k.u.b ? "\"true\"" : "\"false\"");
    case CTPL_INT: return buf_printf(b, "\"%" PRId64 "\"", k.u.i);
    case CTPL_FLOAT:
    {
        kiln_status st = buf_append_char(b, '"');
        if (!st)
            st = ctpl_write_float(b, k.u.f, true);
        return st ? st : buf_append_char(b, '"');
    }
    default:
        return ctpl_fail(r, KILN_ERR_FORMAT, "keys must be str, int, float, bool or None, not %s",
                         ctpl_type_name(k));
    }
}

static int key_cmp(const ctpl_val *a, const ctpl_val *b)
{
    return cmp_bytes(a->u.s.p, a->u.s.n, b->u.s.p, b->u.s.n);
}

static kiln_status json_dict(ctpl_rs *r, kiln_buf *b, const ctpl_dict *d, const ctpl_json_opts *o, int level)
{
    if (d->len == 0)
        return buf_append_str(b, "{}");
    size_t *order = ctpl_alloc(r, d->len * sizeof *order);
    if (!order)
        return KILN_ERR_OOM;
    for (size_t i = 0; i < d->len; i++)
        order[i] = i;
    if (o->sort_keys) {
        for (size_t i = 0; i < d->len; i++)
            if (d->keys[i].kind != CTPL_STR)
                return ctpl_fail(r, KILN_ERR_UNSUPPORTED, "tojson(sort_keys=true) with non-string keys");
        for (size_t i = 1; i < d->len; i++) /* insertion sort: stable, small dicts */
            for (size_t j = i; j > 0 && key_cmp(&d->keys[order[j - 1]], &d->keys[order[j]]) > 0; j--) {
                size_t t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
    }
    kiln_status st = buf_append_char(b, '{');
    for (size_t i = 0; !st && i < d->len; i++) {
        if (i)
            st = buf_append(b, o->item_sep, o->item_sep_n);
        if (!st && o->indent)
            st = json_newline(b, o, level + 1);
        if (!st && !(st = json_key(r, b, d->keys[order[i]], o)) && !(st = buf_append(b, o->key_sep, o->key_sep_n)))
            st = ctpl_write_json(r, b, d->vals[order[i]], o, level + 1);
    }
    if (!st && o->indent)
        st = json_newline(b, o, level);
    return st ? st : buf_append_char(b, '}');
}

kiln_status ctpl_write_json(ctpl_rs *r, kiln_buf *b, ctpl_val v, const ctpl_json_opts *o, int level)
{
    kiln_status st = KILN_OK;
    if (level > CTPL_MAX_NEST)
        return ctpl_fail(r, KILN_ERR_RANGE, "value nested too deeply for tojson");
    switch (v.kind) {
    case CTPL_NONE: return buf_append_str(b, "null");
    case CTPL_BOOL: return buf_append_str(b, v.u.b ? "true" : "false");
    case CTPL_INT: return buf_printf(b, "%" PRId64, v.u.i);
    case CTPL_FLOAT: return ctpl_write_float(b, v.u.f, true);
    case CTPL_STR: return json_str_out(b, v.u.s.p, v.u.s.n, o->ensure_ascii);
    case CTPL_DICT: return json_dict(r, b, v.u.d, o, level);
    case CTPL_LIST:
        if (v.u.l->flags & CTPL_LIST_GEN)
            break;
        if (v.u.l->len == 0)
            return buf_append_str(b, "[]");
        st = buf_append_char(b, '[');
        for (size_t i = 0; !st && i < v.u.l->len; i++) {
            if (i)
                st = buf_append(b, o->item_sep, o->item_sep_n);
            if (!st && o->indent)
                st = json_newline(b, o, level + 1);
            if (!st)
                st = ctpl_write_json(r, b, v.u.l->items[i], o, level + 1);
        }
        if (!st && o->indent)
            st = json_newline(b, o, level);
        return st ? st : buf_append_char(b, ']');
    default:
        break;
    }
    return ctpl_fail(r, KILN_ERR_FORMAT, "Object of type %s is not JSON serializable", ctpl_type_name(v));
}

kiln_status ctpl_from_json(ctpl_rs *r, json_t *j, ctpl_val *out, int depth)
{
    kiln_status st = KILN_OK;
    if (depth > CTPL_MAX_NEST)
        return ctpl_fail(r, KILN_ERR_RANGE, "context nested more than %d levels deep", CTPL_MAX_NEST);
    switch (json_typeof(j)) {
    case JSON_NULL: *out = ctpl_none(); return KILN_OK;
    case JSON_TRUE: *out = ctpl_bool(true); return KILN_OK;
    case JSON_FALSE: *out = ctpl_bool(false); return KILN_OK;
    case JSON_INTEGER: *out = ctpl_int((int64_t)json_integer_value(j)); return KILN_OK;
    case JSON_REAL: *out = ctpl_float(json_real_value(j)); return KILN_OK;
    case JSON_STRING: *out = ctpl_str(json_string_value(j), json_string_length(j)); return KILN_OK;
    case JSON_ARRAY: {
        ctpl_list *l = ctpl_list_new(r, json_array_size(j));
        if (!l)
            return KILN_ERR_OOM;
        for (size_t i = 0; !st && i < json_array_size(j); i++)
            st = ctpl_from_json(r, json_array_get(j, i), &l->items[l->len++], depth + 1);
        *out = ctpl_list_val(l);
        return st;
    }
    case JSON_OBJECT: {
        ctpl_dict *d = ctpl_dict_new(r, json_object_size(j));
        const char *key;
        json_t *val;
        if (!d)
            return KILN_ERR_OOM;
        json_object_foreach(j, key, val) {
            ctpl_val v;
            if ((st = ctpl_from_json(r, val, &v, depth + 1)))
                return st;
            d->keys[d->len] = ctpl_str(key, strlen(key));
            d->vals[d->len++] = v;
        }
        *out = ctpl_dict_val(d);
        return KILN_OK;
    }
    }
    return ctpl_fail(r, KILN_ERR_FORMAT, "unknown JSON value type");
}
