/*
 * safetensors.c - safetensors reader; see safetensors.h.
 *
 * Checks made on every (untrusted) file before a model is handed out:
 *   1. The file holds the 8-byte header length N; 2 <= N <= 100 MB and the
 *      header lies inside the file.
 *   2. The header is valid UTF-8 JSON without duplicate keys, and an object.
 *   3. Each tensor entry is an object with "dtype" (a known string),
 *      "shape" (at most 8 non-negative integers) and "data_offsets"
 *      ([begin, end], 0 <= begin <= end <= data section size).
 *   4. end - begin == product(shape) * element size, computed without overflow.
 *   5. No two non-empty tensors of one file share a byte.
 *   6. "__metadata__" maps strings to strings.
 *   7. Across shards no tensor name repeats; with an index, every tensor it
 *      names is in the shard it names, and shard names are plain file names.
 * Gaps between tensors and trailing bytes are accepted (harmless).
 *
 * After st_open_*: tensors[] is sorted by name (st_find is a binary search),
 * every tensor's data range lies inside its shard's bytes.
 */
#include "format/safetensors.h"

#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "base/fmap.h"

#include <dirent.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"

typedef struct st_shard {
    fmap *map;   /* NULL for st_open_memory */
    char *path;  /* owned; "<memory>" for st_open_memory */
} st_shard;

typedef struct st_meta {
    char *key;   /* owned */
    char *value; /* owned */
} st_meta;

struct st_model {
    st_tensor *tensors; /* n_tensors, sorted by name once opened; names owned */
    int64_t n_tensors;
    int64_t cap_tensors;
    st_shard *shards;   /* n_shards */
    int32_t n_shards;
    st_meta *meta;      /* n_meta, first occurrence of a key wins */
    int64_t n_meta;
    int64_t cap_meta;
};

/* What the parse of one shard needs to name things and bound offsets. */
typedef struct st_ctx {
    st_model *m;
    int32_t shard;
    const char *file;      /* for messages */
    const uint8_t *base;   /* start of the data section */
    uint64_t data_size;    /* bytes in the data section */
} st_ctx;

static const struct {
    const char *name;
    kiln_dtype dt;
} st_dtypes[] = {
    {"F64", KILN_DT_F64}, {"F32", KILN_DT_F32}, {"F16", KILN_DT_F16},
    {"BF16", KILN_DT_BF16}, {"I64", KILN_DT_I64}, {"I32", KILN_DT_I32},
    {"I16", KILN_DT_I16}, {"I8", KILN_DT_I8}, {"U8", KILN_DT_U8},
    {"BOOL", KILN_DT_BOOL},
};

/* ---- errors ------------------------------------------------------------- */

/* "safetensors: FILE: tensor 'NAME': <fmt>" (without the tensor part when
 * name is NULL); returns st. */
static kiln_status st_err(kiln_status st, const char *file, const char *name,
                          const char *fmt, ...) KILN_PRINTF(4, 5);

static kiln_status st_err(kiln_status st, const char *file, const char *name,
                          const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (name)
        return kiln_err_set(st, "safetensors: %s: tensor '%.200s': %s", file, name, what);
    return kiln_err_set(st, "safetensors: %s: %s", file, what);
}

static kiln_status st_oom(const char *file)
{
    return kiln_err_set(KILN_ERR_OOM, "safetensors: %s: out of memory", file);
}

/* ---- model lifetime ------------------------------------------------------ */

static kiln_status st_model_new(int32_t n_shards, st_model **out)
{
    st_model *m = kiln_calloc(1, sizeof *m);
    if (!m)
        return kiln_err_set(KILN_ERR_OOM, "safetensors: out of memory");
    m->shards = kiln_calloc((size_t)n_shards, sizeof *m->shards);
    if (!m->shards) {
        kiln_free(m);
        return kiln_err_set(KILN_ERR_OOM, "safetensors: out of memory");
    }
    m->n_shards = n_shards;
    *out = m;
    return KILN_OK;
}

void st_close(st_model *m)
{
    if (!m)
        return;
    for (int64_t i = 0; i < m->n_tensors; i++)
        kiln_free((void *)m->tensors[i].name);
    for (int64_t i = 0; i < m->n_meta; i++) {
        kiln_free(m->meta[i].key);
        kiln_free(m->meta[i].value);
    }
    for (int32_t i = 0; i < m->n_shards; i++) {
        fmap_close(m->shards[i].map);
        kiln_free(m->shards[i].path);
    }
    kiln_free(m->tensors);
    kiln_free(m->meta);
    kiln_free(m->shards);
    kiln_free(m);
}

/* Grow an array of `elem` bytes to hold one more than *n; false on OOM. */
static bool st_reserve(void **arr, int64_t n, int64_t *cap, size_t elem)
{
    size_t bytes;
    int64_t ncap;
    void *p;
    if (n < *cap)
        return true;
    ncap = *cap ? *cap * 2 : 16;
    if (!ck_mul_size((size_t)ncap, elem, &bytes) || !(p = kiln_realloc(*arr, bytes)))
        return false;
    *arr = p;
    *cap = ncap;
    return true;
}

/* ---- header ---------------------------------------------------------------- */

/* Check the length prefix (invariant 1) and parse the header JSON object
 * (invariant 2).  On success *root is owned by the caller (json_decref). */
static kiln_status st_load_header(const char *file, const uint8_t *data, size_t size,
                                  uint64_t *hlen, json_t **root)
{
    json_error_t jerr;
    uint64_t n = 0;

    if (size < 8)
        return st_err(KILN_ERR_FORMAT, file, NULL,
                      "file is %zu bytes, too short for the 8-byte header length", size);
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | data[i];
    if (n < 2)
        return st_err(KILN_ERR_FORMAT, file, NULL, "header length %llu is too small",
                      (unsigned long long)n);
    if (n > ST_MAX_HEADER_BYTES)
        return st_err(KILN_ERR_FORMAT, file, NULL,
                      "header length %llu exceeds the %u-byte limit", (unsigned long long)n,
                      ST_MAX_HEADER_BYTES);
    if (!ck_range(8, n, size))
        return st_err(KILN_ERR_FORMAT, file, NULL,
                      "header of %llu bytes runs past the end of the file (%zu bytes)",
                      (unsigned long long)n, size);
    *root = json_loadb((const char *)data + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!*root)
        return st_err(KILN_ERR_FORMAT, file, NULL,
                      "header is not valid JSON: %s (line %d, column %d)", jerr.text,
                      jerr.line, jerr.column);
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return st_err(KILN_ERR_FORMAT, file, NULL, "header is not a JSON object");
    }
    *hlen = n;
    return KILN_OK;
}

/* __metadata__: a string -> string object (invariant 6); keys already
 * present (from an earlier shard) keep their first value. */
static kiln_status st_parse_metadata(st_ctx *cx, json_t *obj)
{
    st_model *m = cx->m;
    const char *key;
    json_t *v;

    if (!json_is_object(obj))
        return st_err(KILN_ERR_FORMAT, cx->file, NULL, "__metadata__ is not a JSON object");
    json_object_foreach(obj, key, v) {
        if (!json_is_string(v))
            return st_err(KILN_ERR_FORMAT, cx->file, NULL,
                          "__metadata__ value of '%.200s' is not a string", key);
        if (st_metadata(m, key))
            continue;
        if (!st_reserve((void **)&m->meta, m->n_meta, &m->cap_meta, sizeof *m->meta))
            return st_oom(cx->file);
        st_meta *e = &m->meta[m->n_meta];
        e->key = kiln_strdup(key);
        e->value = kiln_strndup(json_string_value(v), json_string_length(v));
        if (!e->key || !e->value) {
            kiln_free(e->key);
            kiln_free(e->value);
            return st_oom(cx->file);
        }
        m->n_meta++;
    }
    return KILN_OK;
}

/* ---- one tensor entry ------------------------------------------------------ */

static kiln_status st_parse_dtype(const st_ctx *cx, const char *name, json_t *v,
                                  kiln_dtype *dt)
{
    if (!v)
        return st_err(KILN_ERR_FORMAT, cx->file, name, "missing \"dtype\"");
    if (!json_is_string(v))
        return st_err(KILN_ERR_FORMAT, cx->file, name, "\"dtype\" is not a string");
    for (size_t i = 0; i < KILN_ARRAY_LEN(st_dtypes); i++) {
        if (!strcmp(json_string_value(v), st_dtypes[i].name)) {
            *dt = st_dtypes[i].dt;
            return KILN_OK;
        }
    }
    return st_err(KILN_ERR_UNSUPPORTED, cx->file, name, "dtype '%.40s' is not supported",
                  json_string_value(v));
}

/* Shape into t->shape/n_dims and the element count into *n_elems. */
static kiln_status st_parse_shape(const st_ctx *cx, const char *name, json_t *v,
                                  st_tensor *t, uint64_t *n_elems)
{
    uint64_t n = 1;
    size_t nd;

    if (!v)
        return st_err(KILN_ERR_FORMAT, cx->file, name, "missing \"shape\"");
    if (!json_is_array(v))
        return st_err(KILN_ERR_FORMAT, cx->file, name, "\"shape\" is not an array");
    nd = json_array_size(v);
    if (nd > ST_MAX_DIMS)
        return st_err(KILN_ERR_FORMAT, cx->file, name, "shape has %zu dims, at most %d allowed",
                      nd, ST_MAX_DIMS);
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(v, i);
        if (!json_is_integer(d))
            return st_err(KILN_ERR_FORMAT, cx->file, name, "shape[%zu] is not an integer", i);
        json_int_t x = json_integer_value(d);
        if (x < 0)
            return st_err(KILN_ERR_FORMAT, cx->file, name, "shape[%zu] = %lld is negative", i,
                          (long long)x);
        if (!ck_mul_u64(n, (uint64_t)x, &n) || n > (uint64_t)INT64_MAX)
            return st_err(KILN_ERR_FORMAT, cx->file, name,
                          "shape element count overflows 64 bits");
        t->shape[i] = (int64_t)x;
    }
    t->n_dims = (int32_t)nd;
    *n_elems = n;
    return KILN_OK;
}

static kiln_status st_parse_offsets(const st_ctx *cx, const char *name, json_t *v,
                                    uint64_t *begin, uint64_t *end)
{
    json_t *b, *e;
    if (!v)
        return st_err(KILN_ERR_FORMAT, cx->file, name, "missing \"data_offsets\"");
    if (!json_is_array(v) || json_array_size(v) != 2)
        return st_err(KILN_ERR_FORMAT, cx->file, name,
                      "\"data_offsets\" is not an array [begin, end]");
    b = json_array_get(v, 0);
    e = json_array_get(v, 1);
    if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
        json_integer_value(e) < 0)
        return st_err(KILN_ERR_FORMAT, cx->file, name,
                      "\"data_offsets\" are not non-negative integers");
    *begin = (uint64_t)json_integer_value(b);
    *end = (uint64_t)json_integer_value(e);
    if (*begin > *end)
        return st_err(KILN_ERR_FORMAT, cx->file, name, "data_offsets begin %llu > end %llu",
                      (unsigned long long)*begin, (unsigned long long)*end);
    if (*end > cx->data_size)
        return st_err(KILN_ERR_FORMAT, cx->file, name,
                      "data ends at %llu, past the end of the data section (%llu bytes)",
                      (unsigned long long)*end, (unsigned long long)cx->data_size);
    return KILN_OK;
}

/* Parse one entry (invariants 3, 4) and append it to the model. */
static kiln_status st_parse_tensor(st_ctx *cx, const char *name, json_t *v)
{
    st_model *m = cx->m;
    st_tensor t = {0};
    uint64_t n_elems = 0, nbytes = 0, begin = 0, end = 0;
    kiln_status st;

    if (!name[0])
        return st_err(KILN_ERR_FORMAT, cx->file, name, "empty tensor name");
    if (!json_is_object(v))
        return st_err(KILN_ERR_FORMAT, cx->file, name, "entry is not a JSON object");
    if ((st = st_parse_dtype(cx, name, json_object_get(v, "dtype"), &t.dtype)) ||
        (st = st_parse_shape(cx, name, json_object_get(v, "shape"), &t, &n_elems)) ||
        (st = st_parse_offsets(cx, name, json_object_get(v, "data_offsets"), &begin, &end)))
        return st;
    if (!ck_mul_u64(n_elems, (uint64_t)dtype_get(t.dtype)->block_bytes, &nbytes))
        return st_err(KILN_ERR_FORMAT, cx->file, name, "byte size of the shape overflows");
    if (end - begin != nbytes)
        return st_err(KILN_ERR_FORMAT, cx->file, name,
                      "data_offsets span %llu bytes, shape and dtype %s need %llu",
                      (unsigned long long)(end - begin), dtype_name(t.dtype),
                      (unsigned long long)nbytes);
    if (!st_reserve((void **)&m->tensors, m->n_tensors, &m->cap_tensors, sizeof *m->tensors) ||
        !(t.name = kiln_strdup(name)))
        return st_oom(cx->file);
    t.nbytes = nbytes;
    t.data = cx->base + begin;
    t.shard = cx->shard;
    m->tensors[m->n_tensors++] = t;
    return KILN_OK;
}

/* ---- one shard ------------------------------------------------------------- */

static int st_cmp_data(const void *a, const void *b)
{
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    const uint8_t *px = x->data, *py = y->data;
    return px < py ? -1 : px > py ? 1 : 0;
}

/* Invariant 5 over tensors[first..n_tensors): sort pointers by start and
 * require each non-empty tensor to begin at or after the previous end. */
static kiln_status st_check_overlap(const st_ctx *cx, int64_t first)
{
    st_model *m = cx->m;
    int64_t n = m->n_tensors - first, k = 0;
    const st_tensor **v;
    const uint8_t *prev_end = NULL;
    const char *prev = NULL;
    kiln_status st = KILN_OK;

    if (n < 2)
        return KILN_OK;
    if (!(v = kiln_calloc((size_t)n, sizeof *v)))
        return st_oom(cx->file);
    for (int64_t i = first; i < m->n_tensors; i++)
        if (m->tensors[i].nbytes)
            v[k++] = &m->tensors[i];
    qsort(v, (size_t)k, sizeof *v, st_cmp_data);
    for (int64_t i = 0; i < k && !st; i++) {
        const uint8_t *p = v[i]->data;
        if (prev && p < prev_end)
            st = st_err(KILN_ERR_FORMAT, cx->file, v[i]->name,
                        "data overlaps tensor '%.200s'", prev);
        prev_end = p + v[i]->nbytes;
        prev = v[i]->name;
    }
    kiln_free(v);
    return st;
}

/* Parse all of one shard's bytes into the model as shard `shard`. */
static kiln_status st_parse_shard(st_model *m, int32_t shard, const uint8_t *data, size_t size)
{
    st_ctx cx = {.m = m, .shard = shard, .file = m->shards[shard].path};
    json_t *root = NULL, *v;
    int64_t first = m->n_tensors;
    const char *key;
    uint64_t hlen = 0;
    kiln_status st;

    if ((st = st_load_header(cx.file, data, size, &hlen, &root)))
        return st;
    cx.base = data + 8 + hlen;
    cx.data_size = size - 8 - hlen;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__"))
            st = st_parse_metadata(&cx, v);
        else
            st = st_parse_tensor(&cx, key, v);
        if (st)
            goto err;
    }
    st = st_check_overlap(&cx, first);
err:
    json_decref(root);
    return st;
}

/* ---- the name index -------------------------------------------------------- */

static int st_cmp_name(const void *a, const void *b)
{
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

/* Sort by name and reject a name found twice (invariant 7, across shards). */
static kiln_status st_index_names(st_model *m)
{
    if (m->n_tensors > 1)
        qsort(m->tensors, (size_t)m->n_tensors, sizeof *m->tensors, st_cmp_name);
    for (int64_t i = 1; i < m->n_tensors; i++) {
        const st_tensor *a = &m->tensors[i - 1], *b = &m->tensors[i];
        if (!strcmp(a->name, b->name))
            return st_err(KILN_ERR_FORMAT, m->shards[b->shard].path, b->name,
                          "also in shard %s (a tensor may be in one shard only)",
                          m->shards[a->shard].path);
    }
    return KILN_OK;
}

/* ---- opening ----------------------------------------------------------------- */

/* Map `path` as shard i of m and parse it. */
static kiln_status st_load_shard_file(st_model *m, int32_t i, const char *path)
{
    kiln_status st;
    if (!(m->shards[i].path = kiln_strdup(path)))
        return st_oom(path);
    if ((st = fmap_open(path, &m->shards[i].map)))
        return kiln_err_wrap(st, "safetensors");
    return st_parse_shard(m, i, fmap_data(m->shards[i].map), fmap_size(m->shards[i].map));
}

kiln_status st_open_file(const char *path, st_model **out)
{
    st_model *m = NULL;
    kiln_status st;

    *out = NULL;
    if ((st = st_model_new(1, &m)) || (st = st_load_shard_file(m, 0, path)) ||
        (st = st_index_names(m)))
        goto err;
    *out = m;
    return KILN_OK;
err:
    st_close(m);
    return st;
}

kiln_status st_open_memory(const void *data, size_t size, st_model **out)
{
    st_model *m = NULL;
    kiln_status st;

    *out = NULL;
    if ((st = st_model_new(1, &m)))
        return st;
    if (!(m->shards[0].path = kiln_strdup("<memory>"))) {
        st = st_oom("<memory>");
        goto err;
    }
    if ((st = st_parse_shard(m, 0, data, size)) || (st = st_index_names(m)))
        goto err;
    *out = m;
    return KILN_OK;
err:
    st_close(m);
    return st;
}

/* "dir/name" into an owned string; NULL on OOM. */
static char *st_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name), n;
    char *p;
    if (!ck_add_size(a, b, &n) || !ck_add_size(n, 2, &n) || !(p = kiln_malloc(n)))
        return NULL;
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static bool st_is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* ---- sharded directories ------------------------------------------------------ */

/* A shard name must be a plain file name inside the model directory. */
static kiln_status st_check_shard_name(const char *index, const char *tensor, const char *s)
{
    if (!s[0] || strchr(s, '/') || strchr(s, '\\') || strstr(s, ".."))
        return st_err(KILN_ERR_FORMAT, index, tensor,
                      "shard name '%.200s' is not a plain file name in the model directory", s);
    return KILN_OK;
}

static int st_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The distinct shard names of weight_map, sorted, into *names (owned array
 * of borrowed strings) and *n. */
static kiln_status st_index_shards(const char *index, json_t *wm, const char ***names,
                                   int32_t *n)
{
    size_t cnt = json_object_size(wm), k = 0;
    const char **v, *key;
    json_t *val;
    kiln_status st;

    if (cnt == 0 || cnt > INT32_MAX)
        return st_err(KILN_ERR_FORMAT, index, NULL, "weight_map has %zu entries", cnt);
    if (!(v = kiln_calloc(cnt, sizeof *v)))
        return st_oom(index);
    json_object_foreach(wm, key, val) {
        if (!json_is_string(val)) {
            kiln_free(v);
            return st_err(KILN_ERR_FORMAT, index, key, "weight_map value is not a string");
        }
        if ((st = st_check_shard_name(index, key, json_string_value(val)))) {
            kiln_free(v);
            return st;
        }
        v[k++] = json_string_value(val);
    }
    qsort(v, k, sizeof *v, st_cmp_str);
    *n = 0;
    for (size_t i = 0; i < k; i++)
        if (i == 0 || strcmp(v[i], v[i - 1]))
            v[(*n)++] = v[i];
    *names = v;
    return KILN_OK;
}

/* Base name of a shard path (what the index calls it). */
static const char *st_base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Every weight_map entry names a tensor that is in that shard (invariant 7). */
static kiln_status st_check_weight_map(const st_model *m, const char *index, json_t *wm)
{
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        const st_tensor *t = st_find(m, key);
        const char *want = json_string_value(val);
        if (!t)
            return st_err(KILN_ERR_NOT_FOUND, index, key,
                          "listed in weight_map for shard %.200s, which does not hold it", want);
        if (strcmp(st_base_name(m->shards[t->shard].path), want))
            return st_err(KILN_ERR_FORMAT, index, key,
                          "weight_map says shard %.200s, but it is in %s", want,
                          m->shards[t->shard].path);
    }
    return KILN_OK;
}

/* Read the index JSON at `path` into *root (owned), checking weight_map. */
static kiln_status st_load_index(const char *path, json_t **root, json_t **wm)
{
    json_error_t jerr;
    fmap *f = NULL;
    kiln_status st;

    if ((st = fmap_open(path, &f)))
        return kiln_err_wrap(st, "safetensors");
    if (fmap_size(f) > ST_MAX_HEADER_BYTES) {
        fmap_close(f);
        return st_err(KILN_ERR_FORMAT, path, NULL, "index is larger than %u bytes",
                      ST_MAX_HEADER_BYTES);
    }
    *root = json_loadb((const char *)fmap_data(f), fmap_size(f), JSON_REJECT_DUPLICATES, &jerr);
    fmap_close(f);
    if (!*root)
        return st_err(KILN_ERR_FORMAT, path, NULL, "not valid JSON: %s (line %d, column %d)",
                      jerr.text, jerr.line, jerr.column);
    *wm = json_object_get(*root, "weight_map");
    if (!json_is_object(*root) || !json_is_object(*wm)) {
        json_decref(*root);
        *root = NULL;
        return st_err(KILN_ERR_FORMAT, path, NULL, "no \"weight_map\" object");
    }
    return KILN_OK;
}

static kiln_status st_open_index(const char *dir, const char *index, st_model **out)
{
    json_t *root = NULL, *wm = NULL;
    const char **names = NULL;
    st_model *m = NULL;
    int32_t n = 0;
    kiln_status st;

    if ((st = st_load_index(index, &root, &wm)) ||
        (st = st_index_shards(index, wm, &names, &n)) || (st = st_model_new(n, &m)))
        goto err;
    for (int32_t i = 0; i < n; i++) {
        char *path = st_join(dir, names[i]);
        if (!path) {
            st = st_oom(index);
            goto err;
        }
        st = st_load_shard_file(m, i, path);
        kiln_free(path);
        if (st)
            goto err;
    }
    if ((st = st_index_names(m)) || (st = st_check_weight_map(m, index, wm)))
        goto err;
    *out = m;
    m = NULL;
err:
    st_close(m);
    kiln_free(names);
    json_decref(root);
    return st;
}

/* The only *.safetensors file in dir into *path (owned). */
static kiln_status st_find_single(const char *dir, char **path)
{
    struct dirent *e;
    char *found = NULL;
    int count = 0;
    DIR *d = opendir(dir);

    if (!d)
        return kiln_err_set(KILN_ERR_IO, "safetensors: %s: cannot open directory", dir);
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l <= 12 || strcmp(e->d_name + l - 12, ".safetensors"))
            continue;
        if (++count == 1)
            found = st_join(dir, e->d_name);
    }
    closedir(d);
    if (count == 1 && !found)
        return st_oom(dir);
    if (count != 1) {
        kiln_free(found);
        return kiln_err_set(count ? KILN_ERR_FORMAT : KILN_ERR_NOT_FOUND,
                            "safetensors: %s: %s", dir,
                            count ? "several .safetensors files and no " ST_INDEX_NAME
                                  : "no .safetensors file");
    }
    *path = found;
    return KILN_OK;
}

kiln_status st_open_dir(const char *dir, st_model **out)
{
    char *path = NULL;
    kiln_status st;

    *out = NULL;
    if (!(path = st_join(dir, ST_INDEX_NAME)))
        return st_oom(dir);
    if (st_is_file(path)) {
        st = st_open_index(dir, path, out);
        goto done;
    }
    kiln_free(path);
    if (!(path = st_join(dir, ST_SINGLE_NAME)))
        return st_oom(dir);
    if (!st_is_file(path)) {
        kiln_free(path);
        path = NULL;
        if ((st = st_find_single(dir, &path)))
            return st;
    }
    st = st_open_file(path, out);
done:
    kiln_free(path);
    return st;
}

/* ---- queries ------------------------------------------------------------------- */

int64_t st_tensor_count(const st_model *m) { return m->n_tensors; }

const st_tensor *st_tensor_at(const st_model *m, int64_t i)
{
    return i >= 0 && i < m->n_tensors ? &m->tensors[i] : NULL;
}

const st_tensor *st_find(const st_model *m, const char *name)
{
    st_tensor key = {.name = name};
    if (!m->n_tensors)
        return NULL;
    return bsearch(&key, m->tensors, (size_t)m->n_tensors, sizeof *m->tensors, st_cmp_name);
}

int32_t st_shard_count(const st_model *m) { return m->n_shards; }

const char *st_shard_path(const st_model *m, int32_t i)
{
    return i >= 0 && i < m->n_shards ? m->shards[i].path : NULL;
}

const char *st_metadata(const st_model *m, const char *key)
{
    for (int64_t i = 0; i < m->n_meta; i++)
        if (!strcmp(m->meta[i].key, key))
            return m->meta[i].value;
    return NULL;
}

int64_t st_metadata_count(const st_model *m) { return m->n_meta; }

const char *st_metadata_key(const st_model *m, int64_t i)
{
    return i >= 0 && i < m->n_meta ? m->meta[i].key : NULL;
}

const char *st_metadata_value(const st_model *m, int64_t i)
{
    return i >= 0 && i < m->n_meta ? m->meta[i].value : NULL;
}
