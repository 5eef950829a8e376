/*
 * gguf.c - GGUF v2/v3 reader; see gguf.h for the file layout and ownership.
 *
 * The file is untrusted.  Invariants the parser establishes before
 * gguf_open returns (and that every accessor relies on):
 *   1. Every read goes through parser_need(): [off, off+n) lies inside the
 *      file, computed with overflow-checked arithmetic (checked.h).
 *   2. A count (kvs, tensors, array elements) is compared with the bytes that
 *      remain, times the smallest encoding of one item, before anything is
 *      allocated for it; so allocations are bounded by a small multiple of
 *      the file size, whatever the counts say.
 *   3. Keys and tensor names are non-empty, valid UTF-8, NUL-free and unique
 *      (checked on a sorted index that lookups then binary-search).
 *   4. Array nesting is at most GGUF_MAX_ARRAY_DEPTH deep (bounded recursion).
 *   5. general.alignment, when present, is an integer, a non-zero power of
 *      two; every tensor offset is a multiple of it; tensor byte sizes come
 *      from dtype_nbytes (overflow-checked); every tensor's data lies inside
 *      the file, and no two tensors' data overlap.
 * Parse order:  header -> kvs -> (index keys, alignment) -> tensor infos ->
 * data section start -> (index names, place and overlap-check tensor data).
 */
#include "format/gguf.h"

#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "base/fmap.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_MAX_NAME_BYTES 65535u /* keys and tensor names */
#define GGUF_MIN_KV_BYTES 14u      /* u64 len + 1 key byte + u32 type + 1 value byte */
#define GGUF_MIN_TENSOR_BYTES 25u  /* u64 len + 1 name byte + u32 n_dims + u32 type + u64 off */
#define GGUF_MIN_ARRAY_BYTES 12u   /* u32 element type + u64 count */
#define GGUF_MIN_STRING_BYTES 8u   /* u64 length */

struct gguf_value {
    gguf_type type;
    union {
        uint64_t u;                 /* UINT8..UINT64                  */
        int64_t i;                  /* INT8..INT64                    */
        double f;                   /* FLOAT32 (widened), FLOAT64     */
        bool b;                     /* BOOL                           */
        struct {
            const char *p;          /* borrowed, not NUL-terminated   */
            uint64_t len;
        } s;                        /* STRING                         */
        struct {
            gguf_type elem;
            int64_t n;
            const uint8_t *raw;     /* fixed-size elements, borrowed   */
            const uint8_t **strs;   /* STRING: each string's u64 length field */
            gguf_value *items;      /* ARRAY: owned nested arrays      */
        } a;                        /* ARRAY                          */
    } as;
};

typedef struct gguf_kv {
    char *key;                      /* owned, NUL-terminated */
    gguf_value v;
} gguf_kv;

typedef struct gguf_name_ix {       /* sorted index entry for lookups */
    const char *name;
    int64_t i;
} gguf_name_ix;

struct gguf_file {
    fmap *map;                      /* NULL for gguf_open_memory */
    const uint8_t *base;
    uint64_t size;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_off;
    int64_t n_kv;
    gguf_kv *kv;
    gguf_name_ix *kv_ix;            /* sorted by key */
    int64_t n_tensors;
    gguf_tensor *tensors;
    gguf_name_ix *t_ix;             /* sorted by name */
};

typedef struct parser {
    const uint8_t *base;
    uint64_t size;
    uint64_t off;                   /* next byte to read */
    char ctx[200];                  /* what is being read, for messages */
} parser;

/* ==== types, names, little-endian loads ==================================== */

static const char *const gguf_type_names[GGUF_TYPE_COUNT] = {
    "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
    "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64",
};

const char *gguf_type_name(gguf_type t)
{
    return (unsigned)t < GGUF_TYPE_COUNT ? gguf_type_names[t] : "?";
}

size_t gguf_type_size(gguf_type t)
{
    static const uint8_t sizes[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return (unsigned)t < GGUF_TYPE_COUNT ? sizes[t] : 0;
}

static uint64_t load_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t k = 0; k < n; k++)
        v |= (uint64_t)p[k] << (8 * k);
    return v;
}

/* Printable form of untrusted name bytes for messages: escapes, cut at 64. */
static const char *name_fmt(char *buf, size_t cap, const uint8_t *s, uint64_t len)
{
    size_t o = 0;
    for (uint64_t k = 0; k < len && o + 8 < cap; k++) {
        if (k == 64) {
            o += (size_t)snprintf(buf + o, cap - o, "...");
            break;
        }
        if (s[k] >= 0x20 && s[k] < 0x7f && s[k] != '\\')
            buf[o++] = (char)s[k];
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", s[k]);
    }
    buf[o] = '\0';
    return buf;
}

/* True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF). */
static bool utf8_valid(const uint8_t *s, uint64_t len)
{
    uint64_t k = 0;
    while (k < len) {
        uint8_t c = s[k];
        uint32_t cp, min;
        int n;
        if (c < 0x80) { k++; continue; }
        if (c >= 0xc2 && c <= 0xdf) { n = 1; cp = c & 0x1fu; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { n = 2; cp = c & 0x0fu; min = 0x800; }
        else if (c >= 0xf0 && c <= 0xf4) { n = 3; cp = c & 0x07u; min = 0x10000; }
        else return false;
        if (len - k <= (uint64_t)n)
            return false;
        for (int j = 1; j <= n; j++) {
            if ((s[k + j] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[k + j] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        k += (uint64_t)n + 1;
    }
    return true;
}

/* ==== the parser's checked reads =========================================== */

static uint64_t parser_left(const parser *p)
{
    return p->size - p->off;
}

/* Make sure n more bytes exist; *at points at them.  KILN_ERR_FORMAT names
 * what was being read. */
static kiln_status parser_need(parser *p, uint64_t n, const char *what, const uint8_t **at)
{
    if (!ck_range(p->off, n, p->size))
        return kiln_err_set(KILN_ERR_FORMAT,
                            "gguf: file truncated in %s: %s needs %" PRIu64 " bytes at offset "
                            "%" PRIu64 ", file is %" PRIu64 " bytes",
                            p->ctx, what, n, p->off, p->size);
    *at = p->base + p->off;
    p->off += n;
    return KILN_OK;
}

static kiln_status parser_u32(parser *p, const char *what, uint32_t *v)
{
    const uint8_t *at = NULL;
    kiln_status st = parser_need(p, 4, what, &at);
    if (!st)
        *v = (uint32_t)load_le(at, 4);
    return st;
}

static kiln_status parser_u64(parser *p, const char *what, uint64_t *v)
{
    const uint8_t *at = NULL;
    kiln_status st = parser_need(p, 8, what, &at);
    if (!st)
        *v = load_le(at, 8);
    return st;
}

/* A length-prefixed string; *s borrows the file bytes. */
static kiln_status parser_str(parser *p, const char *what, const uint8_t **s, uint64_t *len)
{
    kiln_status st;
    if ((st = parser_u64(p, what, len)))
        return st;
    if (*len > parser_left(p))
        return kiln_err_set(KILN_ERR_FORMAT,
                            "gguf: %s: %s length %" PRIu64 " runs past the end of the file "
                            "(%" PRIu64 " bytes left; truncated or corrupt)",
                            p->ctx, what, *len, parser_left(p));
    return parser_need(p, *len, what, s);
}

/* Reject `count` items of at least `min_bytes` each that cannot fit in the
 * bytes left. */
static kiln_status parser_check_count(const parser *p, uint64_t count, uint64_t min_bytes,
                                      const char *what)
{
    uint64_t need;
    if (!ck_mul_u64(count, min_bytes, &need) || need > parser_left(p))
        return kiln_err_set(KILN_ERR_FORMAT,
                            "gguf: %s: %s count %" PRIu64 " is impossible, only %" PRIu64
                            " bytes are left in the file (truncated or corrupt)",
                            p->ctx, what, count, parser_left(p));
    return KILN_OK;
}

/* A key or tensor name: non-empty, bounded, NUL-free UTF-8; *out owned. */
static kiln_status parser_name(parser *p, const char *what, char **out)
{
    const uint8_t *s = NULL;
    uint64_t len;
    char shown[160];
    kiln_status st;

    if ((st = parser_str(p, what, &s, &len)))
        return st;
    if (len == 0)
        return kiln_err_set(KILN_ERR_FORMAT, "gguf: %s: empty %s", p->ctx, what);
    if (len > GGUF_MAX_NAME_BYTES)
        return kiln_err_set(KILN_ERR_FORMAT, "gguf: %s: %s of %" PRIu64 " bytes is too long",
                            p->ctx, what, len);
    name_fmt(shown, sizeof shown, s, len);
    if (memchr(s, 0, (size_t)len))
        return kiln_err_set(KILN_ERR_FORMAT, "gguf: %s: %s '%s' contains a NUL byte", p->ctx,
                            what, shown);
    if (!utf8_valid(s, len))
        return kiln_err_set(KILN_ERR_FORMAT, "gguf: %s: %s '%s' is not valid UTF-8", p->ctx,
                            what, shown);
    if (!(*out = kiln_strndup((const char *)s, (size_t)len)))
        return kiln_err_set(KILN_ERR_OOM, "gguf: out of memory copying a %s", what);
    return KILN_OK;
}

/* ==== metadata values ====================================================== */

static void value_free(gguf_value *v)
{
    if (v->type != GGUF_TYPE_ARRAY)
        return;
    if (v->as.a.items)
        for (int64_t k = 0; k < v->as.a.n; k++)
            value_free(&v->as.a.items[k]);
    kiln_free(v->as.a.items);
    kiln_free(v->as.a.strs);
    v->as.a.items = NULL;
    v->as.a.strs = NULL;
}

/* Decode a fixed-size scalar of type t from its bytes. */
static kiln_status scalar_decode(const parser *p, gguf_type t, const uint8_t *at, gguf_value *v)
{
    size_t n = gguf_type_size(t);
    uint64_t raw = load_le(at, n);
    v->type = t;
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        v->as.u = raw;
        break;
    case GGUF_TYPE_INT8: v->as.i = (int8_t)raw; break;
    case GGUF_TYPE_INT16: v->as.i = (int16_t)raw; break;
    case GGUF_TYPE_INT32: v->as.i = (int32_t)raw; break;
    case GGUF_TYPE_INT64: v->as.i = (int64_t)raw; break;
    case GGUF_TYPE_FLOAT32: {
        float f;
        uint32_t u32 = (uint32_t)raw;
        memcpy(&f, &u32, sizeof f);
        v->as.f = f;
        break;
    }
    case GGUF_TYPE_FLOAT64: memcpy(&v->as.f, &raw, sizeof v->as.f); break;
    case GGUF_TYPE_BOOL:
        if (raw > 1)
            return kiln_err_set(KILN_ERR_FORMAT, "gguf: %s: invalid bool value %" PRIu64
                                " (must be 0 or 1)", p->ctx, raw);
        v->as.b = raw != 0;
        break;
    default: KILN_ASSERT(!"scalar_decode: not a scalar type");
    }
    return KILN_OK;
}

static kiln_status parse_value(parser *p, gguf_type t, gguf_value *v, int depth);

/* Elements of a fixed-size type: one bounds check, then BOOL bytes checked. */
static kiln_status parse_arr_fixed(parser *p, gguf_value *v)
{
    uint64_t nbytes;
    const uint8_t *at = NULL;
    kiln_status st;
    size_t es = gguf_type_size(v->as.a.elem);

    if (!ck_mul_u64((uint64_t)v->as.a.n, es, &nbytes))
        return kiln_err_set(KILN_ERR_FORMAT, "gguf: %s: array size overflows", p->ctx);
    if ((st = parser_need(p, nbytes, "array data", &at)))
        return st;
    v->as.a.raw = at;
    if (v->as.a.elem == GGUF_TYPE_BOOL)
        for (int64_t k = 0; k < v->as.a.n; k++)
            if (at[k] > 1)
                return kiln_err_set(KILN_ERR_FORMAT, "gguf: %s: invalid bool value %u at "
                                    "array index %" PRId64, p->ctx, at[k], k);
    return KILN_OK;
}

static kiln_status parse_arr_strings(parser *p, gguf_value *v)
{
    const uint8_t *s;
    uint64_t len;
    kiln_status st;

    if (!(v->as.a.strs = kiln_calloc((size_t)v->as.a.n + 1, sizeof *v->as.a.strs)))
        return kiln_err_set(KILN_ERR_OOM, "gguf: %s: out of memory", p->ctx);
    for (int64_t k = 0; k < v->as.a.n; k++) {
        v->as.a.strs[k] = p->base + p->off;
        if ((st = parser_str(p, "array string", &s, &len)))
            return st;
    }
    return KILN_OK;
}

static kiln_status parse_arr_arrays(parser *p, gguf_value *v, int depth)
{
    kiln_status st;

    if (depth + 1 >= GGUF_MAX_ARRAY_DEPTH)
        return kiln_err_set(KILN_ERR_FORMAT, "gguf: %s: arrays nested more than %d deep",
                            p->ctx, GGUF_MAX_ARRAY_DEPTH);
    if (!(v->as.a.items = kiln_calloc((size_t)v->as.a.n + 1, sizeof *v->as.a.items)))
        return kiln_err_set(KILN_ERR_OOM, "gguf: %s: out of memory", p->ctx);
    for (int64_t k = 0; k < v->as.a.n; k++)
        if ((st = parse_value(p, GGUF_TYPE_ARRAY, &v->as.a.items[k], depth + 1)))
            return st;
    return KILN_OK;
}

/* ARRAY: u32 element type, u64 count, elements.  On error v may hold partial
 * allocations; the caller releases them with value_free. */
static kiln_status parse_array(parser *p, gguf_value *v, int depth)
{
    uint32_t et;
    uint64_t n, min;
    kiln_status st;

    v->type = GGUF_TYPE_ARRAY;
    if ((st = parser_u32(p, "array element type", &et)) ||
        (st = parser_u64(p, "array count", &n)))
        return st;
    if (et >= GGUF_TYPE_COUNT)
        return kiln_err_set(KILN_ERR_FORMAT, "gguf: %s: unknown array element type %" PRIu32,
                            p->ctx, et);
    v->as.a.elem = (gguf_type)et;
    min = et == GGUF_TYPE_STRING ? GGUF_MIN_STRING_BYTES
        : et == GGUF_TYPE_ARRAY ? GGUF_MIN_ARRAY_BYTES : gguf_type_size((gguf_type)et);
    if ((st = parser_check_count(p, n, min, "array element")))
        return st;
    v->as.a.n = (int64_t)n;
    if (et == GGUF_TYPE_STRING)
        return parse_arr_strings(p, v);
    if (et == GGUF_TYPE_ARRAY)
        return parse_arr_arrays(p, v, depth);
    return parse_arr_fixed(p, v);
}

/* One value of type t (already range-checked by the caller). */
static kiln_status parse_value(parser *p, gguf_type t, gguf_value *v, int depth)
{
    const uint8_t *at = NULL;
    uint64_t len;
    kiln_status st;

    if (t == GGUF_TYPE_ARRAY)
        return parse_array(p, v, depth);
    if (t == GGUF_TYPE_STRING) {
        v->type = t;
        if ((st = parser_str(p, "string value", &at, &len)))
            return st;
        v->as.s.p = (const char *)at;
        v->as.s.len = len;
        return KILN_OK;
    }
    if ((st = parser_need(p, gguf_type_size(t), "value", &at)))
        return st;
    return scalar_decode(p, t, at, v);
}

/* One key/value pair into kv (zeroed by the caller). */
static kiln_status parse_kv(parser *p, int64_t i, gguf_kv *kv)
{
    uint32_t t;
    char shown[160];
    kiln_status st;

    snprintf(p->ctx, sizeof p->ctx, "metadata entry %" PRId64, i);
    if ((st = parser_name(p, "key", &kv->key)))
        return st;
    name_fmt(shown, sizeof shown, (const uint8_t *)kv->key, strlen(kv->key));
    snprintf(p->ctx, sizeof p->ctx, "key '%s'", shown);
    if ((st = parser_u32(p, "value type", &t)))
        return st;
    if (t >= GGUF_TYPE_COUNT)
        return kiln_err_set(KILN_ERR_FORMAT, "gguf: key '%s' has unknown value type %" PRIu32,
                            shown, t);
    return parse_value(p, (gguf_type)t, &kv->v, 0);
}

/* ==== name indexes ========================================================== */

static int name_ix_cmp(const void *a, const void *b)
{
    return strcmp(((const gguf_name_ix *)a)->name, ((const gguf_name_ix *)b)->name);
}

/* Sort names[0..n) into *out; KILN_ERR_FORMAT on the first duplicate. */
static kiln_status index_names(const char *const *names, size_t stride, int64_t n,
                               const char *what, gguf_name_ix **out)
{
    gguf_name_ix *ix = kiln_calloc((size_t)n + 1, sizeof *ix);
    char shown[160];

    if (!ix)
        return kiln_err_set(KILN_ERR_OOM, "gguf: out of memory indexing %ss", what);
    for (int64_t k = 0; k < n; k++) {
        ix[k].name = *(const char *const *)((const char *)names + (size_t)k * stride);
        ix[k].i = k;
    }
    qsort(ix, (size_t)n, sizeof *ix, name_ix_cmp);
    for (int64_t k = 1; k < n; k++) {
        if (!strcmp(ix[k - 1].name, ix[k].name)) {
            name_fmt(shown, sizeof shown, (const uint8_t *)ix[k].name, strlen(ix[k].name));
            kiln_free(ix);
            return kiln_err_set(KILN_ERR_FORMAT, "gguf: duplicate %s '%s'", what, shown);
        }
    }
    *out = ix;
    return KILN_OK;
}

static int64_t index_find(const gguf_name_ix *ix, int64_t n, const char *name)
{
    gguf_name_ix key = {name, 0};
    const gguf_name_ix *hit;
    if (!ix || !name)
        return -1;
    hit = bsearch(&key, ix, (size_t)n, sizeof *ix, name_ix_cmp);
    return hit ? hit->i : -1;
}

/* ==== header, metadata and alignment ======================================== */

static kiln_status parse_header(parser *p, gguf_file *g, uint64_t *n_tensors, uint64_t *n_kv)
{
    const uint8_t *magic = NULL;
    kiln_status st;

    snprintf(p->ctx, sizeof p->ctx, "header");
    if ((st = parser_need(p, 4, "magic", &magic)))
        return st;
    if (memcmp(magic, GGUF_MAGIC, 4))
        return kiln_err_set(KILN_ERR_FORMAT, "gguf: bad magic: not a GGUF file");
    if ((st = parser_u32(p, "version", &g->version)))
        return st;
    if (g->version == 1)
        return kiln_err_set(KILN_ERR_UNSUPPORTED,
                            "gguf: version 1 files are not supported (only versions 2 and 3)");
    if (g->version >= 0x01000000u && (g->version & 0xffffu) == 0)
        return kiln_err_set(KILN_ERR_UNSUPPORTED,
                            "gguf: big-endian GGUF files are not supported");
    if (g->version != 2 && g->version != 3)
        return kiln_err_set(KILN_ERR_UNSUPPORTED,
                            "gguf: unsupported version %" PRIu32 " (only versions 2 and 3)",
                            g->version);
    if ((st = parser_u64(p, "tensor count", n_tensors)) ||
        (st = parser_u64(p, "kv count", n_kv)))
        return st;
    return KILN_OK;
}

/* Both counts must fit in what is left, at their smallest encodings. */
static kiln_status check_header_counts(parser *p, uint64_t n_tensors, uint64_t n_kv)
{
    uint64_t a, b, sum;
    if (!ck_mul_u64(n_kv, GGUF_MIN_KV_BYTES, &a) ||
        !ck_mul_u64(n_tensors, GGUF_MIN_TENSOR_BYTES, &b) || !ck_add_u64(a, b, &sum) ||
        sum > parser_left(p))
        return kiln_err_set(KILN_ERR_FORMAT,
                            "gguf: header counts are impossible: %" PRIu64 " kv pairs and %"
                            PRIu64 " tensors do not fit in the %" PRIu64
                            " bytes left (truncated or corrupt)",
                            n_kv, n_tensors, parser_left(p));
    return KILN_OK;
}

static kiln_status parse_kvs(parser *p, gguf_file *g, uint64_t n_kv)
{
    kiln_status st;

    if (!(g->kv = kiln_calloc((size_t)n_kv + 1, sizeof *g->kv)))
        return kiln_err_set(KILN_ERR_OOM, "gguf: out of memory for %" PRIu64 " keys", n_kv);
    for (uint64_t k = 0; k < n_kv; k++) {
        g->n_kv = (int64_t)k + 1; /* entry k is released by gguf_close even if partial */
        if ((st = parse_kv(p, (int64_t)k, &g->kv[k])))
            return st;
    }
    return index_names((const char *const *)&g->kv[0].key, sizeof *g->kv, g->n_kv, "key",
                       &g->kv_ix);
}

static kiln_status read_alignment(gguf_file *g)
{
    const gguf_value *v = gguf_find_value(g, "general.alignment");
    uint64_t a;

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (!v)
        return KILN_OK;
    if (gguf_value_u64(v, &a))
        return kiln_err_set(KILN_ERR_FORMAT,
                            "gguf: general.alignment has type %s, must be an unsigned integer",
                            gguf_type_name(v->type));
    if (a == 0 || (a & (a - 1)))
        return kiln_err_set(KILN_ERR_FORMAT,
                            "gguf: general.alignment is %" PRIu64
                            ", must be a non-zero power of two", a);
    g->alignment = a;
    return KILN_OK;
}

/* ==== tensor infos and data ================================================= */

/* n_dims and dims of one tensor info into t; element count into *nel. */
static kiln_status parse_dims(parser *p, const char *shown, gguf_tensor *t, int64_t *nel)
{
    uint32_t nd;
    kiln_status st;

    if ((st = parser_u32(p, "n_dims", &nd)))
        return st;
    if (nd > GGUF_MAX_DIMS)
        return kiln_err_set(KILN_ERR_FORMAT, "gguf: tensor '%s' has %" PRIu32
                            " dimensions, at most %d are allowed", shown, nd, GGUF_MAX_DIMS);
    t->n_dims = (int32_t)nd;
    *nel = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if ((uint32_t)d < nd && (st = parser_u64(p, "dimension", &ne)))
            return st;
        if (ne == 0 || ne > (uint64_t)INT64_MAX)
            return kiln_err_set(KILN_ERR_FORMAT, "gguf: tensor '%s' dimension %d is %" PRId64
                                ", must be positive", shown, d, (int64_t)ne);
        t->ne[d] = (int64_t)ne;
        if (!ck_mul_i64(*nel, t->ne[d], nel))
            return kiln_err_set(KILN_ERR_FORMAT, "gguf: tensor '%s' element count overflows",
                                shown);
    }
    return KILN_OK;
}

/* Tensor type, block-size fit, byte size and offset alignment. */
static kiln_status parse_type_offset(parser *p, const gguf_file *g, const char *shown,
                                     gguf_tensor *t, int64_t nel)
{
    uint32_t ty;
    const dtype_info *di;
    kiln_status st;

    if ((st = parser_u32(p, "tensor type", &ty)) || (st = parser_u64(p, "offset", &t->offset)))
        return st;
    di = ty < KILN_DT_GGML_END ? dtype_get(ty) : NULL;
    if (!di)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "gguf: tensor '%s' has unknown tensor type %"
                            PRIu32, shown, ty);
    t->type = (kiln_dtype)ty;
    if (t->ne[0] % di->block_elems)
        return kiln_err_set(KILN_ERR_FORMAT, "gguf: tensor '%s': row of %" PRId64 " elements is "
                            "not a multiple of the %s block size %d", shown, t->ne[0],
                            di->name, (int)di->block_elems);
    if (dtype_nbytes(t->type, nel, &t->nbytes))
        return kiln_err_set(KILN_ERR_FORMAT, "gguf: tensor '%s': byte size of %" PRId64
                            " %s elements overflows", shown, nel, di->name);
    if (t->offset % g->alignment)
        return kiln_err_set(KILN_ERR_FORMAT, "gguf: tensor '%s' offset %" PRIu64 " is not "
                            "aligned to %" PRIu64 " bytes", shown, t->offset, g->alignment);
    return KILN_OK;
}

static kiln_status parse_tensor_info(parser *p, gguf_file *g, int64_t i, gguf_tensor *t)
{
    char shown[160];
    int64_t nel = 0;
    kiln_status st;

    snprintf(p->ctx, sizeof p->ctx, "tensor info %" PRId64, i);
    if ((st = parser_name(p, "tensor name", (char **)&t->name)))
        return st;
    name_fmt(shown, sizeof shown, (const uint8_t *)t->name, strlen(t->name));
    snprintf(p->ctx, sizeof p->ctx, "tensor info '%s'", shown);
    if ((st = parse_dims(p, shown, t, &nel)))
        return st;
    return parse_type_offset(p, g, shown, t, nel);
}

static kiln_status parse_tensor_infos(parser *p, gguf_file *g, uint64_t n)
{
    kiln_status st;

    if (!(g->tensors = kiln_calloc((size_t)n + 1, sizeof *g->tensors)))
        return kiln_err_set(KILN_ERR_OOM, "gguf: out of memory for %" PRIu64 " tensors", n);
    for (uint64_t k = 0; k < n; k++) {
        g->n_tensors = (int64_t)k + 1;
        if ((st = parse_tensor_info(p, g, (int64_t)k, &g->tensors[k])))
            return st;
    }
    return index_names((const char *const *)&g->tensors[0].name, sizeof *g->tensors,
                       g->n_tensors, "tensor name", &g->t_ix);
}

/* Sort helper: tensors by data offset. */
static int tensor_off_cmp(const void *a, const void *b)
{
    uint64_t x = (*(const gguf_tensor *const *)a)->offset;
    uint64_t y = (*(const gguf_tensor *const *)b)->offset;
    return x < y ? -1 : x > y;
}

/* No tensor's data may overlap the next one's (by offset). */
static kiln_status check_overlap(gguf_file *g)
{
    const gguf_tensor **by_off = kiln_calloc((size_t)g->n_tensors + 1, sizeof *by_off);
    kiln_status st = KILN_OK;

    if (!by_off)
        return kiln_err_set(KILN_ERR_OOM, "gguf: out of memory sorting tensors");
    for (int64_t k = 0; k < g->n_tensors; k++)
        by_off[k] = &g->tensors[k];
    qsort(by_off, (size_t)g->n_tensors, sizeof *by_off, tensor_off_cmp);
    for (int64_t k = 1; k < g->n_tensors && !st; k++) {
        const gguf_tensor *a = by_off[k - 1], *b = by_off[k];
        if (a->offset + a->nbytes > b->offset) /* no overflow: both lie inside the file */
            st = kiln_err_set(KILN_ERR_FORMAT, "gguf: tensors '%s' and '%s' overlap: [%" PRIu64
                              ", %" PRIu64 ") and [%" PRIu64 ", %" PRIu64 ")", a->name,
                              b->name, a->offset, a->offset + a->nbytes, b->offset,
                              b->offset + b->nbytes);
    }
    kiln_free(by_off);
    return st;
}

/* Data section start, then every tensor's bytes inside the file. */
static kiln_status place_tensors(parser *p, gguf_file *g)
{
    uint64_t start;

    if (!ck_align_up(p->off, g->alignment, &start))
        return kiln_err_set(KILN_ERR_FORMAT, "gguf: data section offset overflows");
    if (start > p->size) {
        if (g->n_tensors > 0)
            return kiln_err_set(KILN_ERR_FORMAT, "gguf: data section starts at %" PRIu64
                                ", past the end of the file (%" PRIu64 " bytes; truncated)",
                                start, p->size);
        start = p->size;
    }
    g->data_off = start;
    for (int64_t k = 0; k < g->n_tensors; k++) {
        gguf_tensor *t = &g->tensors[k];
        uint64_t at;
        if (!ck_add_u64(start, t->offset, &at) || !ck_range(at, t->nbytes, p->size))
            return kiln_err_set(KILN_ERR_FORMAT, "gguf: tensor '%s' data (offset %" PRIu64
                                ", %" PRIu64 " bytes) runs past the end of the file (%"
                                PRIu64 " bytes; truncated)", t->name, t->offset,
                                t->nbytes, p->size);
        t->data = p->base + at;
    }
    return check_overlap(g);
}

/* ==== open / close ========================================================== */

static kiln_status gguf_parse(gguf_file *g)
{
    parser p = {.base = g->base, .size = g->size, .off = 0};
    uint64_t n_tensors = 0, n_kv = 0;
    kiln_status st;

    if ((st = parse_header(&p, g, &n_tensors, &n_kv)) ||
        (st = check_header_counts(&p, n_tensors, n_kv)) ||
        (st = parse_kvs(&p, g, n_kv)) || (st = read_alignment(g)) ||
        (st = parse_tensor_infos(&p, g, n_tensors)))
        return st;
    return place_tensors(&p, g);
}

kiln_status gguf_open_memory(const void *data, size_t size, gguf_file **out)
{
    gguf_file *g;
    kiln_status st;

    *out = NULL;
    if (!data && size)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "gguf: NULL data of %zu bytes", size);
    if (!(g = kiln_calloc(1, sizeof *g)))
        return kiln_err_set(KILN_ERR_OOM, "gguf: out of memory");
    g->base = data;
    g->size = size;
    if ((st = gguf_parse(g))) {
        gguf_close(g);
        return st;
    }
    *out = g;
    return KILN_OK;
}

kiln_status gguf_open(const char *path, gguf_file **out)
{
    fmap *m = NULL;
    kiln_status st;

    *out = NULL;
    if ((st = fmap_open(path, &m)))
        return st;
    if ((st = gguf_open_memory(fmap_data(m), fmap_size(m), out))) {
        fmap_close(m);
        return kiln_err_wrap(st, "%s", path);
    }
    (*out)->map = m;
    return KILN_OK;
}

void gguf_close(gguf_file *g)
{
    if (!g)
        return;
    for (int64_t k = 0; k < g->n_kv; k++) {
        kiln_free(g->kv[k].key);
        value_free(&g->kv[k].v);
    }
    for (int64_t k = 0; k < g->n_tensors; k++)
        kiln_free((char *)g->tensors[k].name);
    kiln_free(g->kv);
    kiln_free(g->kv_ix);
    kiln_free(g->tensors);
    kiln_free(g->t_ix);
    fmap_close(g->map);
    kiln_free(g);
}

uint32_t gguf_version(const gguf_file *g) { return g->version; }
uint64_t gguf_alignment(const gguf_file *g) { return g->alignment; }
uint64_t gguf_data_offset(const gguf_file *g) { return g->data_off; }
const uint8_t *gguf_bytes(const gguf_file *g) { return g->base; }
size_t gguf_size(const gguf_file *g) { return (size_t)g->size; }

/* ==== metadata access ======================================================= */

int64_t gguf_kv_count(const gguf_file *g) { return g->n_kv; }

const char *gguf_kv_key(const gguf_file *g, int64_t i)
{
    return i >= 0 && i < g->n_kv ? g->kv[i].key : NULL;
}

gguf_type gguf_kv_type(const gguf_file *g, int64_t i)
{
    return i >= 0 && i < g->n_kv ? g->kv[i].v.type : GGUF_TYPE_COUNT;
}

const gguf_value *gguf_kv_value(const gguf_file *g, int64_t i)
{
    return i >= 0 && i < g->n_kv ? &g->kv[i].v : NULL;
}

int64_t gguf_find_key(const gguf_file *g, const char *key)
{
    return index_find(g->kv_ix, g->n_kv, key);
}

const gguf_value *gguf_find_value(const gguf_file *g, const char *key)
{
    return gguf_kv_value(g, gguf_find_key(g, key));
}

static bool type_is_uint(gguf_type t)
{
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 ||
           t == GGUF_TYPE_UINT64;
}

static bool type_is_int(gguf_type t)
{
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 ||
           t == GGUF_TYPE_INT64;
}

gguf_type gguf_value_type(const gguf_value *v) { return v->type; }

/* The conversions below set a message naming the stored type only; the
 * by-key getters replace it with one naming the key. */
static kiln_status type_err(const gguf_value *v, const char *want)
{
    return kiln_err_set(KILN_ERR_FORMAT, "gguf: %s value does not convert to %s",
                        gguf_type_name(v->type), want);
}

kiln_status gguf_value_u64(const gguf_value *v, uint64_t *out)
{
    if (type_is_uint(v->type))
        *out = v->as.u;
    else if (type_is_int(v->type) && v->as.i >= 0)
        *out = (uint64_t)v->as.i;
    else
        return type_err(v, "an unsigned integer");
    return KILN_OK;
}

kiln_status gguf_value_i64(const gguf_value *v, int64_t *out)
{
    if (type_is_int(v->type))
        *out = v->as.i;
    else if (type_is_uint(v->type) && v->as.u <= (uint64_t)INT64_MAX)
        *out = (int64_t)v->as.u;
    else
        return type_err(v, "a signed 64-bit integer");
    return KILN_OK;
}

kiln_status gguf_value_f64(const gguf_value *v, double *out)
{
    if (v->type != GGUF_TYPE_FLOAT32 && v->type != GGUF_TYPE_FLOAT64)
        return type_err(v, "a float");
    *out = v->as.f;
    return KILN_OK;
}

kiln_status gguf_value_bool(const gguf_value *v, bool *out)
{
    if (v->type != GGUF_TYPE_BOOL)
        return type_err(v, "a bool");
    *out = v->as.b;
    return KILN_OK;
}

kiln_status gguf_value_str(const gguf_value *v, const char **s, size_t *len)
{
    if (v->type != GGUF_TYPE_STRING)
        return type_err(v, "a string");
    *s = v->as.s.p;
    *len = (size_t)v->as.s.len;
    return KILN_OK;
}

gguf_type gguf_value_arr_type(const gguf_value *v)
{
    return v->type == GGUF_TYPE_ARRAY ? v->as.a.elem : GGUF_TYPE_COUNT;
}

int64_t gguf_value_arr_len(const gguf_value *v)
{
    return v->type == GGUF_TYPE_ARRAY ? v->as.a.n : 0;
}

const void *gguf_value_arr_data(const gguf_value *v)
{
    return v->type == GGUF_TYPE_ARRAY ? v->as.a.raw : NULL;
}

const gguf_value *gguf_value_arr_at(const gguf_value *v, int64_t i)
{
    if (v->type != GGUF_TYPE_ARRAY || v->as.a.elem != GGUF_TYPE_ARRAY || i < 0 ||
        i >= v->as.a.n)
        return NULL;
    return &v->as.a.items[i];
}

kiln_status gguf_value_arr_str(const gguf_value *v, int64_t i, const char **s, size_t *len)
{
    if (v->type != GGUF_TYPE_ARRAY || v->as.a.elem != GGUF_TYPE_STRING)
        return kiln_err_set(KILN_ERR_FORMAT, "gguf: value is not an array of strings");
    if (i < 0 || i >= v->as.a.n)
        return kiln_err_set(KILN_ERR_RANGE, "gguf: string index %" PRId64
                            " out of range [0, %" PRId64 ")", i, v->as.a.n);
    *len = (size_t)load_le(v->as.a.strs[i], 8);
    *s = (const char *)v->as.a.strs[i] + 8;
    return KILN_OK;
}

/* The value of `key`, or KILN_ERR_NOT_FOUND. */
static kiln_status find_or_err(const gguf_file *g, const char *key, const gguf_value **v)
{
    if (!(*v = gguf_find_value(g, key)))
        return kiln_err_set(KILN_ERR_NOT_FOUND, "gguf: key '%s' not found", key);
    return KILN_OK;
}

/* Replace a conversion message with one that names the key. */
static kiln_status key_type_err(kiln_status st, const char *key, const gguf_value *v,
                                const char *want)
{
    return kiln_err_set(st, "gguf: key '%s' holds %s, expected %s", key,
                        gguf_type_name(v->type), want);
}

kiln_status gguf_get_u64(const gguf_file *g, const char *key, uint64_t *out)
{
    const gguf_value *v;
    kiln_status st;
    if ((st = find_or_err(g, key, &v)))
        return st;
    if ((st = gguf_value_u64(v, out)))
        return key_type_err(st, key, v, "an unsigned integer");
    return KILN_OK;
}

kiln_status gguf_get_i64(const gguf_file *g, const char *key, int64_t *out)
{
    const gguf_value *v;
    kiln_status st;
    if ((st = find_or_err(g, key, &v)))
        return st;
    if ((st = gguf_value_i64(v, out)))
        return key_type_err(st, key, v, "a signed 64-bit integer");
    return KILN_OK;
}

kiln_status gguf_get_f64(const gguf_file *g, const char *key, double *out)
{
    const gguf_value *v;
    kiln_status st;
    if ((st = find_or_err(g, key, &v)))
        return st;
    if ((st = gguf_value_f64(v, out)))
        return key_type_err(st, key, v, "a float");
    return KILN_OK;
}

kiln_status gguf_get_bool(const gguf_file *g, const char *key, bool *out)
{
    const gguf_value *v;
    kiln_status st;
    if ((st = find_or_err(g, key, &v)))
        return st;
    if ((st = gguf_value_bool(v, out)))
        return key_type_err(st, key, v, "a bool");
    return KILN_OK;
}

kiln_status gguf_get_str(const gguf_file *g, const char *key, const char **s, size_t *len)
{
    const gguf_value *v;
    kiln_status st;
    if ((st = find_or_err(g, key, &v)))
        return st;
    if ((st = gguf_value_str(v, s, len)))
        return key_type_err(st, key, v, "a string");
    return KILN_OK;
}

kiln_status gguf_get_arr(const gguf_file *g, const char *key, gguf_type *elem_type, int64_t *n)
{
    const gguf_value *v;
    kiln_status st;
    if ((st = find_or_err(g, key, &v)))
        return st;
    if (v->type != GGUF_TYPE_ARRAY)
        return key_type_err(KILN_ERR_FORMAT, key, v, "an array");
    *elem_type = v->as.a.elem;
    *n = v->as.a.n;
    return KILN_OK;
}

kiln_status gguf_get_arr_str(const gguf_file *g, const char *key, int64_t i, const char **s,
                             size_t *len)
{
    const gguf_value *v;
    kiln_status st;
    if ((st = find_or_err(g, key, &v)))
        return st;
    if (v->type != GGUF_TYPE_ARRAY || v->as.a.elem != GGUF_TYPE_STRING)
        return key_type_err(KILN_ERR_FORMAT, key, v, "an array of strings");
    if ((st = gguf_value_arr_str(v, i, s, len)))
        return kiln_err_wrap(st, "key '%s'", key);
    return KILN_OK;
}

kiln_status gguf_get_arr_data(const gguf_file *g, const char *key, gguf_type *elem_type,
                              int64_t *n, const void **data)
{
    const gguf_value *v;
    kiln_status st;
    if ((st = find_or_err(g, key, &v)))
        return st;
    if (v->type != GGUF_TYPE_ARRAY || !gguf_type_size(v->as.a.elem))
        return key_type_err(KILN_ERR_FORMAT, key, v, "an array of numbers or bools");
    *elem_type = v->as.a.elem;
    *n = v->as.a.n;
    *data = v->as.a.raw;
    return KILN_OK;
}

/* ==== tensors ============================================================== */

int64_t gguf_tensor_count(const gguf_file *g) { return g->n_tensors; }

const gguf_tensor *gguf_tensor_at(const gguf_file *g, int64_t i)
{
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name)
{
    return gguf_tensor_at(g, index_find(g->t_ix, g->n_tensors, name));
}

/* ==== model config ========================================================= *
 * general.architecture selects the family; shape keys live under
 * "<arch>.".  What llama.cpp implies per family without storing it:
 *   llama/mistral: SiLU; rope_freqs.weight present = Llama 3 rope scaling
 *                  (factor = its lowest-frequency entry, low 1, high 4,
 *                  original context 8192, the values every release uses).
 *   qwen2:         biases on q/k/v.        qwen3: per-head q/k RMSNorm.
 *   gemma3:        GELU (tanh), q/k norm, embeddings times sqrt(hidden),
 *                  every 6th layer global when a window is set, local rope
 *                  base 10000, query_pre_attn_scalar = head_dim (27B, the
 *                  62-layer model: hidden / heads).
 *   bert:          GELU, learned absolute positions, biases everywhere.
 * Output embeddings are tied when the file has no output.weight tensor.    */

typedef struct cfg_keys {
    const gguf_file *g;
    const char *arch;
    char key[160];
} cfg_keys;

static const char *arch_key(cfg_keys *c, const char *suffix)
{
    snprintf(c->key, sizeof c->key, "%s.%s", c->arch, suffix);
    return c->key;
}

/* *dst = the integer at key; absent keys leave *dst (unless required). */
static kiln_status cfg_int(cfg_keys *c, const char *key, bool required, int64_t *dst)
{
    if (gguf_find_key(c->g, key) < 0 && !required)
        return KILN_OK;
    return gguf_get_i64(c->g, key, dst);
}

/* *dst = the number (float or integer) at key, when present. */
static kiln_status cfg_float(cfg_keys *c, const char *key, float *dst)
{
    const gguf_value *v = gguf_find_value(c->g, key);
    double d = 0.0;
    int64_t i = 0;
    if (!v)
        return KILN_OK;
    if (!gguf_value_f64(v, &d))
        *dst = (float)d;
    else if (!gguf_value_i64(v, &i))
        *dst = (float)i;
    else
        return key_type_err(KILN_ERR_FORMAT, key, v, "a number");
    return KILN_OK;
}

static kiln_status cfg_arch(cfg_keys *c, model_config *m)
{
    const char *s;
    size_t len;
    kiln_status st;

    if ((st = gguf_get_str(c->g, "general.architecture", &s, &len)))
        return st;
    if (len == 0 || len >= sizeof m->arch_name || memchr(s, 0, len))
        return kiln_err_set(KILN_ERR_FORMAT, "gguf: general.architecture is not a valid name");
    memcpy(m->arch_name, s, len);
    m->arch_name[len] = '\0';
    c->arch = m->arch_name;
    m->arch = mcfg_arch_from_name(m->arch_name);
    if (m->arch == MCFG_ARCH_UNKNOWN)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "gguf: architecture '%s' is not supported "
                            "(llama, mistral, qwen2, qwen3, gemma3, bert)", m->arch_name);
    return KILN_OK;
}

static kiln_status cfg_shape(cfg_keys *c, model_config *m)
{
    kiln_status st;
    if ((st = cfg_int(c, arch_key(c, "embedding_length"), true, &m->hidden_size)) ||
        (st = cfg_int(c, arch_key(c, "block_count"), true, &m->n_layers)) ||
        (st = cfg_int(c, arch_key(c, "feed_forward_length"), true, &m->intermediate_size)) ||
        (st = cfg_int(c, arch_key(c, "attention.head_count"), true, &m->n_heads)) ||
        (st = cfg_int(c, arch_key(c, "attention.head_count_kv"), false, &m->n_kv_heads)) ||
        (st = cfg_int(c, arch_key(c, "attention.key_length"), false, &m->head_dim)) ||
        (st = cfg_int(c, arch_key(c, "context_length"), false, &m->max_position_embeddings)) ||
        (st = cfg_int(c, arch_key(c, "attention.sliding_window"), false, &m->sliding_window)) ||
        (st = cfg_float(c, arch_key(c, "attention.layer_norm_epsilon"), &m->norm_eps)) ||
        (st = cfg_float(c, arch_key(c, "attention.layer_norm_rms_epsilon"), &m->norm_eps)) ||
        (st = cfg_float(c, arch_key(c, "rope.freq_base"), &m->rope_theta)) ||
        (st = cfg_float(c, arch_key(c, "rope.freq_base_swa"), &m->rope_local_theta)) ||
        (st = cfg_float(c, arch_key(c, "attn_logit_softcapping"), &m->attn_logit_softcap)) ||
        (st = cfg_float(c, arch_key(c, "final_logit_softcapping"), &m->final_logit_softcap)))
        return st;
    return KILN_OK;
}

/* Vocabulary size from the token list, else <arch>.vocab_size, else the
 * rows of token_embd.weight. */
static kiln_status cfg_vocab(cfg_keys *c, model_config *m)
{
    gguf_type et;
    const gguf_tensor *emb;

    if (gguf_find_key(c->g, "tokenizer.ggml.tokens") >= 0)
        return gguf_get_arr(c->g, "tokenizer.ggml.tokens", &et, &m->vocab_size);
    if (gguf_find_key(c->g, arch_key(c, "vocab_size")) >= 0)
        return gguf_get_i64(c->g, c->key, &m->vocab_size);
    if ((emb = gguf_find_tensor(c->g, "token_embd.weight")) && emb->n_dims == 2) {
        m->vocab_size = emb->ne[1];
        return KILN_OK;
    }
    return kiln_err_set(KILN_ERR_NOT_FOUND, "gguf: no vocabulary size: neither "
                        "tokenizer.ggml.tokens, %s nor token_embd.weight", c->key);
}

static kiln_status cfg_special_ids(cfg_keys *c, model_config *m)
{
    kiln_status st;
    if ((st = cfg_int(c, "tokenizer.ggml.bos_token_id", false, &m->bos_token_id)) ||
        (st = cfg_int(c, "tokenizer.ggml.eos_token_id", false, &m->eos_token_id)) ||
        (st = cfg_int(c, "tokenizer.ggml.padding_token_id", false, &m->pad_token_id)))
        return st;
    return KILN_OK;
}

/* rope.scaling.* keys (and the older rope.scale_linear). */
static kiln_status cfg_rope_scaling(cfg_keys *c, model_config *m)
{
    const char *s = NULL;
    size_t len = 0;
    kiln_status st;

    if (gguf_find_key(c->g, arch_key(c, "rope.scale_linear")) >= 0) {
        m->rope_scaling = MCFG_ROPE_LINEAR;
        if ((st = cfg_float(c, c->key, &m->rope_factor)))
            return st;
    }
    if (gguf_find_key(c->g, arch_key(c, "rope.scaling.type")) >= 0 &&
        (st = gguf_get_str(c->g, c->key, &s, &len)))
        return st;
    if (s && len == 6 && !memcmp(s, "linear", 6))
        m->rope_scaling = MCFG_ROPE_LINEAR;
    else if (s && len == 4 && !memcmp(s, "yarn", 4))
        m->rope_scaling = MCFG_ROPE_YARN;
    else if (s && !(len == 4 && !memcmp(s, "none", 4)))
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "gguf: %s '%.*s' is not supported", c->key,
                            (int)(len > 32 ? 32 : len), s);
    if ((st = cfg_float(c, arch_key(c, "rope.scaling.factor"), &m->rope_factor)) ||
        (st = cfg_int(c, arch_key(c, "rope.scaling.original_context_length"), false,
                      &m->rope_original_max_pos)) ||
        (st = cfg_float(c, arch_key(c, "rope.scaling.yarn_beta_fast"),
                        &m->rope_yarn_beta_fast)) ||
        (st = cfg_float(c, arch_key(c, "rope.scaling.yarn_beta_slow"),
                        &m->rope_yarn_beta_slow)) ||
        (st = cfg_float(c, arch_key(c, "rope.scaling.attn_factor"), &m->rope_attention_factor)))
        return st;
    return KILN_OK;
}

/* Llama 3 rope scaling, stored by llama.cpp as the rope_freqs.weight tensor
 * of per-frequency divisors; the last (lowest frequency) one is the factor. */
static kiln_status cfg_rope_freqs(cfg_keys *c, model_config *m)
{
    const gguf_tensor *t = gguf_find_tensor(c->g, "rope_freqs.weight");
    float last;

    if (!t)
        return KILN_OK;
    if (t->type != KILN_DT_F32)
        return kiln_err_set(KILN_ERR_FORMAT, "gguf: rope_freqs.weight has type %s, expected F32",
                            dtype_name(t->type));
    memcpy(&last, (const uint8_t *)t->data + t->nbytes - sizeof last, sizeof last);
    m->rope_scaling = MCFG_ROPE_LLAMA3;
    m->rope_factor = last;
    m->rope_low_freq_factor = 1.0f;
    m->rope_high_freq_factor = 4.0f;
    if (m->rope_original_max_pos == 0)
        m->rope_original_max_pos = 8192;
    return KILN_OK;
}

/* Per-layer window flags given as <arch>.attention.sliding_window_pattern:
 * an integer N (every Nth layer global) or one bool per layer. */
static kiln_status cfg_window_pattern(cfg_keys *c, model_config *m)
{
    const gguf_value *v = gguf_find_value(c->g, arch_key(c, "attention.sliding_window_pattern"));
    const uint8_t *flags;

    if (!v)
        return KILN_OK;
    if (gguf_value_arr_type(v) != GGUF_TYPE_BOOL)
        return cfg_int(c, c->key, true, &m->sliding_window_pattern);
    flags = gguf_value_arr_data(v);
    m->sliding_window_pattern = 0;
    for (int64_t i = 0; i < gguf_value_arr_len(v) && i < MCFG_MAX_LAYERS; i++)
        m->layer_sliding[i] = flags[i];
    return KILN_OK;
}

static kiln_status cfg_gemma3(cfg_keys *c, model_config *m)
{
    int64_t head_dim = m->head_dim ? m->head_dim : m->hidden_size / (m->n_heads ? m->n_heads : 1);
    m->act = MCFG_ACT_GELU_TANH;
    m->qk_norm = true;
    m->embed_scale_sqrt_hidden = true;
    if (m->sliding_window > 0) {
        m->sliding_window_pattern = 6;
        if (m->rope_local_theta == 0.0f)
            m->rope_local_theta = 10000.0f;
    }
    m->query_pre_attn_scalar = m->n_layers == 62 && m->n_heads
                                   ? (float)(m->hidden_size / m->n_heads) : (float)head_dim;
    return cfg_window_pattern(c, m);
}

static kiln_status cfg_bert(cfg_keys *c, model_config *m)
{
    const gguf_tensor *tt = gguf_find_tensor(c->g, "token_types.weight");
    int64_t pool = -1;
    kiln_status st;

    m->act = MCFG_ACT_GELU;
    m->absolute_positions = true;
    m->attention_bias = m->attention_out_bias = m->mlp_bias = true;
    m->tie_word_embeddings = false;
    /* GGUF does not record a sentence-transformers Normalize module; llama.cpp
     * L2-normalises embeddings unless told otherwise, and so does kiln. */
    m->normalize = true;
    m->type_vocab_size = tt && tt->n_dims == 2 ? tt->ne[1] : 2;
    if ((st = cfg_int(c, "tokenizer.ggml.token_type_count", false, &m->type_vocab_size)) ||
        (st = cfg_int(c, arch_key(c, "pooling_type"), false, &pool)))
        return st;
    switch (pool) {
    case -1: case 0: m->pooling = MCFG_POOL_NONE; break;
    case 1: m->pooling = MCFG_POOL_MEAN; break;
    case 2: m->pooling = MCFG_POOL_CLS; break;
    case 3: m->pooling = MCFG_POOL_LAST; break;
    default:
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "gguf: %s = %" PRId64 " is not supported "
                            "(0 none, 1 mean, 2 cls, 3 last)", c->key, pool);
    }
    return KILN_OK;
}

/* Family defaults that llama.cpp implies; see the section comment. */
static kiln_status cfg_family(cfg_keys *c, model_config *m)
{
    m->tie_word_embeddings = !gguf_find_tensor(c->g, "output.weight");
    m->attention_bias = gguf_find_tensor(c->g, "blk.0.attn_q.bias") != NULL;
    switch (m->arch) {
    case MCFG_ARCH_LLAMA:
    case MCFG_ARCH_MISTRAL: return cfg_rope_freqs(c, m);
    case MCFG_ARCH_QWEN2: m->attention_bias = true; return KILN_OK;
    case MCFG_ARCH_QWEN3: m->qk_norm = true; return KILN_OK;
    case MCFG_ARCH_GEMMA3: return cfg_gemma3(c, m);
    case MCFG_ARCH_BERT: return cfg_bert(c, m);
    default: return KILN_OK;
    }
}

/* partial_rotary_factor from rope.dimension_count, once head_dim is known. */
static kiln_status cfg_rotary_dims(cfg_keys *c, model_config *m)
{
    int64_t dims = 0;
    kiln_status st;
    if ((st = cfg_int(c, arch_key(c, "rope.dimension_count"), false, &dims)))
        return st;
    if (dims > 0 && m->head_dim > 0 && dims < m->head_dim)
        m->partial_rotary_factor = (float)((double)dims / (double)m->head_dim);
    return KILN_OK;
}

kiln_status gguf_to_model_config(const gguf_file *g, model_config *out)
{
    cfg_keys c = {.g = g, .arch = ""};
    kiln_status st;

    mcfg_init(out);
    if ((st = cfg_arch(&c, out)) || (st = cfg_shape(&c, out)) || (st = cfg_vocab(&c, out)) ||
        (st = cfg_special_ids(&c, out)) || (st = cfg_rope_scaling(&c, out)) ||
        (st = cfg_family(&c, out)))
        return st;
    if ((st = mcfg_finalize(out)))
        return kiln_err_wrap(st, "gguf");
    return cfg_rotary_dims(&c, out);
}
