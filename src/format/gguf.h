/*
 * gguf.h - reader of GGUF model files (versions 2 and 3).
 *
 * A GGUF file is: magic "GGUF", u32 version, u64 tensor count, u64 kv count,
 * the key/value metadata, the tensor infos, padding to `general.alignment`
 * (default 32), then the data section that tensor offsets point into.  All
 * numbers are little-endian.
 *
 * gguf_open validates the whole header before it returns: every count,
 * length and offset is bounds- and overflow-checked, keys and tensor names
 * are valid UTF-8 without NUL bytes and unique, tensor types are known, every
 * tensor's data lies aligned inside the file and no two tensors overlap.
 * Everything a handle returns is then safe to use without further checks.
 *
 * Ownership: the handle owns copies of keys and tensor names (NUL-terminated)
 * and the index structures; string values and array elements are borrowed
 * views into the file bytes.  Everything borrowed is valid until gguf_close().
 */
#ifndef KILN_FORMAT_GGUF_H
#define KILN_FORMAT_GGUF_H

#include "format/dtype.h"
#include "format/model_config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_ARRAY_DEPTH 8 /* arrays of arrays nest at most this deep */

typedef struct gguf_file gguf_file;

typedef enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8,
    GGUF_TYPE_UINT16,
    GGUF_TYPE_INT16,
    GGUF_TYPE_UINT32,
    GGUF_TYPE_INT32,
    GGUF_TYPE_FLOAT32,
    GGUF_TYPE_BOOL,
    GGUF_TYPE_STRING,
    GGUF_TYPE_ARRAY,
    GGUF_TYPE_UINT64,
    GGUF_TYPE_INT64,
    GGUF_TYPE_FLOAT64,
    GGUF_TYPE_COUNT
} gguf_type;

/* One metadata value or array element.  Opaque; read with gguf_value_*. */
typedef struct gguf_value gguf_value;

typedef struct gguf_tensor {
    const char *name;   /* NUL-terminated, owned by the handle            */
    kiln_dtype type;
    int32_t n_dims;     /* 0..4                                           */
    int64_t ne[4];      /* ne[0] innermost (GGML order); unused dims are 1 */
    uint64_t offset;    /* from the data section start, aligned            */
    uint64_t nbytes;
    const void *data;   /* borrowed: points into the file bytes            */
} gguf_tensor;

/* Name of a value type ("UINT32", "ARRAY", ...); "?" when out of range. */
const char *gguf_type_name(gguf_type t);

/* Size in bytes of one value of a fixed-size type; 0 for STRING, ARRAY and
 * unknown types. */
size_t gguf_type_size(gguf_type t);

/* ---- opening -------------------------------------------------------------- */

/* Map `path` (fmap) and parse it.  On success *out is owned by the caller,
 * release with gguf_close().  Errors: KILN_ERR_IO (open/map), KILN_ERR_FORMAT
 * (malformed: truncated, bad counts, offsets, names...), KILN_ERR_UNSUPPORTED
 * (version other than 2/3, unknown tensor type), KILN_ERR_OOM.  The message
 * names the file, the problem and the key or tensor concerned. */
kiln_status gguf_open(const char *path, gguf_file **out);

/* Parse `size` bytes at `data`.  The bytes are borrowed and must outlive the
 * handle.  Errors as gguf_open, without KILN_ERR_IO. */
kiln_status gguf_open_memory(const void *data, size_t size, gguf_file **out);

/* Release the handle (and the mapping if gguf_open made one); NULL is a no-op. */
void gguf_close(gguf_file *g);

uint32_t gguf_version(const gguf_file *g);
uint64_t gguf_alignment(const gguf_file *g);
/* Byte offset of the data section from the file start. */
uint64_t gguf_data_offset(const gguf_file *g);
/* The whole file, borrowed. */
const uint8_t *gguf_bytes(const gguf_file *g);
size_t gguf_size(const gguf_file *g);

/* ---- metadata ------------------------------------------------------------- */

int64_t gguf_kv_count(const gguf_file *g);
/* Key i (0 <= i < count) in file order, NUL-terminated, owned by the
 * handle; NULL when i is out of range. */
const char *gguf_kv_key(const gguf_file *g, int64_t i);
/* Type of value i; GGUF_TYPE_COUNT when i is out of range. */
gguf_type gguf_kv_type(const gguf_file *g, int64_t i);
/* Value of key i, owned by the handle; NULL when i is out of range. */
const gguf_value *gguf_kv_value(const gguf_file *g, int64_t i);
/* Index of `key`, -1 if absent.  O(log n). */
int64_t gguf_find_key(const gguf_file *g, const char *key);
/* Value of `key`, NULL if absent. */
const gguf_value *gguf_find_value(const gguf_file *g, const char *key);

/* Typed getters by key.  Errors: KILN_ERR_NOT_FOUND (absent),
 * KILN_ERR_FORMAT (the stored type does not fit).  Any integer type converts
 * to u64/i64 when the value fits; f64 accepts FLOAT32 and FLOAT64; bool
 * accepts only BOOL. */
kiln_status gguf_get_u64(const gguf_file *g, const char *key, uint64_t *out);
kiln_status gguf_get_i64(const gguf_file *g, const char *key, int64_t *out);
kiln_status gguf_get_f64(const gguf_file *g, const char *key, double *out);
kiln_status gguf_get_bool(const gguf_file *g, const char *key, bool *out);
/* A STRING value: *s is borrowed from the file and NOT NUL-terminated; use
 * *len.  Strings may hold any bytes (values are not UTF-8 checked). */
kiln_status gguf_get_str(const gguf_file *g, const char *key, const char **s, size_t *len);
/* An ARRAY value: element type and count. */
kiln_status gguf_get_arr(const gguf_file *g, const char *key, gguf_type *elem_type,
                         int64_t *n);
/* Element i of an array of strings (borrowed, not NUL-terminated).
 * Errors also KILN_ERR_RANGE (i out of range). */
kiln_status gguf_get_arr_str(const gguf_file *g, const char *key, int64_t i, const char **s,
                             size_t *len);
/* Raw little-endian element data of an array of a fixed-size type: n
 * elements of gguf_type_size(elem_type) bytes each, borrowed, unaligned
 * (read with memcpy).  Errors: KILN_ERR_FORMAT for arrays of strings or
 * arrays. */
kiln_status gguf_get_arr_data(const gguf_file *g, const char *key, gguf_type *elem_type,
                              int64_t *n, const void **data);

/* ---- generic values (any nesting) ----------------------------------------- */

gguf_type gguf_value_type(const gguf_value *v);
/* Scalars: the same conversions as the getters above. */
kiln_status gguf_value_u64(const gguf_value *v, uint64_t *out);
kiln_status gguf_value_i64(const gguf_value *v, int64_t *out);
kiln_status gguf_value_f64(const gguf_value *v, double *out);
kiln_status gguf_value_bool(const gguf_value *v, bool *out);
kiln_status gguf_value_str(const gguf_value *v, const char **s, size_t *len);
/* Arrays: element type and count (0 for non-arrays). */
gguf_type gguf_value_arr_type(const gguf_value *v);
int64_t gguf_value_arr_len(const gguf_value *v);
/* Raw element bytes of a fixed-size-type array, NULL otherwise. */
const void *gguf_value_arr_data(const gguf_value *v);
/* Element i of an array of arrays (owned by the handle), NULL if v is not
 * an array of arrays or i is out of range. */
const gguf_value *gguf_value_arr_at(const gguf_value *v, int64_t i);
/* Element i of an array of strings.  Errors: KILN_ERR_FORMAT (not an array
 * of strings), KILN_ERR_RANGE (i out of range). */
kiln_status gguf_value_arr_str(const gguf_value *v, int64_t i, const char **s, size_t *len);

/* ---- tensors -------------------------------------------------------------- */

int64_t gguf_tensor_count(const gguf_file *g);
/* Tensor i in file order, owned by the handle; NULL if out of range. */
const gguf_tensor *gguf_tensor_at(const gguf_file *g, int64_t i);
/* Tensor by name, NULL if absent.  O(log n). */
const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name);

/* ---- model shape ---------------------------------------------------------- */

/* Fill *out from general.architecture and the <arch>.* keys (llama,
 * mistral, qwen2, qwen3, gemma3, bert), adding what llama.cpp implies for
 * each family without storing it, then mcfg_finalize().  Errors:
 * KILN_ERR_NOT_FOUND (a required key is absent), KILN_ERR_UNSUPPORTED
 * (another architecture), KILN_ERR_FORMAT (a key of the wrong type or a
 * shape mcfg_finalize rejects). */
kiln_status gguf_to_model_config(const gguf_file *g, model_config *out);

#endif /* KILN_FORMAT_GGUF_H */
