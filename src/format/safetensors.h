/*
 * safetensors.h - reader of the safetensors format, one file or a sharded
 * Hugging Face directory.
 *
 * A file is: u64 little-endian header length N, N bytes of JSON object
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]},
 *  "__metadata__": {"key": "value", ...}}, then the data section; offsets
 * are relative to the start of the data section.  A sharded model has
 * model.safetensors.index.json with {"weight_map": {"name": "shard file"}}.
 *
 * Files are untrusted: everything is checked before st_open_* returns
 * (see safetensors.c for the list).  Files are mapped read-only; tensor data
 * points into the mapping and is NOT necessarily aligned to its element size
 * (read it with memcpy or copy it out).
 *
 * Ownership: an st_model owns its mappings, names and metadata; every
 * pointer handed out (tensors, names, data, metadata) is borrowed and valid
 * until st_close().
 */
#ifndef KILN_FORMAT_SAFETENSORS_H
#define KILN_FORMAT_SAFETENSORS_H

#include "format/dtype.h"
#include "kiln.h"

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER_BYTES (100u * 1000u * 1000u)

typedef struct st_tensor {
    const char *name;
    kiln_dtype dtype;
    int32_t n_dims;
    int64_t shape[ST_MAX_DIMS]; /* row-major, shape[0] outermost as in PyTorch */
    uint64_t nbytes;            /* == product(shape) * element size           */
    const void *data;           /* nbytes bytes inside the shard's mapping     */
    int32_t shard;              /* index into the shards, 0 for one file       */
} st_tensor;

typedef struct st_model st_model;

/* Open one .safetensors file (mapped).  On success *out is owned: st_close()
 * it.  Errors: KILN_ERR_IO (open/mmap), KILN_ERR_FORMAT (malformed: the
 * message names the file and the tensor), KILN_ERR_UNSUPPORTED (a dtype kiln
 * does not read, e.g. F8_E4M3), KILN_ERR_OOM. */
kiln_status st_open_file(const char *path, st_model **out);

/* Open a model directory: model.safetensors.index.json if present, else
 * model.safetensors, else the only *.safetensors file in it.  Errors as
 * st_open_file, plus KILN_ERR_NOT_FOUND (no safetensors file, or a tensor of
 * the index missing from its shard) and KILN_ERR_FORMAT for a broken index
 * (shard names with '/' or "..", a tensor in two shards). */
kiln_status st_open_dir(const char *dir, st_model **out);

/* Parse `size` bytes at `data` as one safetensors file.  `data` is borrowed
 * and must outlive the model.  Errors as st_open_file, without I/O. */
kiln_status st_open_memory(const void *data, size_t size, st_model **out);

/* Unmap and free everything.  NULL is a no-op. */
void st_close(st_model *m);

/* Number of tensors (all shards). */
int64_t st_tensor_count(const st_model *m);

/* Tensor i in name order (0 <= i < count), or NULL when out of range. */
const st_tensor *st_tensor_at(const st_model *m, int64_t i);

/* Tensor by exact name, or NULL. */
const st_tensor *st_find(const st_model *m, const char *name);

/* Number of shard files (1 for a single file or memory). */
int32_t st_shard_count(const st_model *m);

/* Path of shard i as opened ("<memory>" for st_open_memory), or NULL. */
const char *st_shard_path(const st_model *m, int32_t i);

/* Value of `key` in a file's __metadata__ (the first shard that has it), or
 * NULL. */
const char *st_metadata(const st_model *m, const char *key);

/* Number of __metadata__ entries and the i-th key/value (NULL when out of
 * range), for listing them. */
int64_t st_metadata_count(const st_model *m);
const char *st_metadata_key(const st_model *m, int64_t i);
const char *st_metadata_value(const st_model *m, int64_t i);

#endif /* KILN_FORMAT_SAFETENSORS_H */
