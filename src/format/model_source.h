/*
 * model_source.h - a model on disk, whatever its format.
 *
 * A model source is either a GGUF file or a Hugging Face directory
 * (config.json + *.safetensors, possibly sharded, + tokenizer files).
 * msrc_open() recognises which, reads the configuration into a model_config
 * and lists the tensors in one format-neutral table; the weights stay mapped
 * (nothing is copied).  The model loader reads weights through it.
 * msrc_open_any() also takes one .safetensors file on its own: its tensor
 * table, without a configuration; `kiln info` describes all three.
 */
#ifndef KILN_FORMAT_MODEL_SOURCE_H
#define KILN_FORMAT_MODEL_SOURCE_H

#include "format/dtype.h"
#include "format/model_config.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct model_source model_source;

typedef enum msrc_kind {
    MSRC_GGUF = 0,
    MSRC_HF_DIR,
    MSRC_ST_FILE, /* one safetensors file, no config.json (msrc_open_any only) */
} msrc_kind;

/* What kind of tokenizer a model ships. */
typedef enum msrc_tokenizer {
    MSRC_TOK_NONE = 0,
    MSRC_TOK_BPE_BYTELEVEL,   /* GPT-2 / Llama 3 / Qwen style byte-level BPE */
    MSRC_TOK_SPM_BPE,         /* SentencePiece-style BPE (Llama 2, Gemma)   */
    MSRC_TOK_SPM_UNIGRAM,     /* SentencePiece unigram (T5 style)           */
    MSRC_TOK_WORDPIECE,       /* BERT family                                 */
    MSRC_TOK_OTHER,
} msrc_tokenizer;

/* One tensor, format-neutral.  Shape is outermost-first (PyTorch order) for
 * both formats: a GGUF tensor's ne[] is reversed into it. */
typedef struct msrc_tensor {
    const char *name;     /* borrowed from the format reader               */
    kiln_dtype dtype;
    int32_t n_dims;
    int64_t shape[8];
    int64_t n_elems;
    uint64_t nbytes;      /* bytes as stored                               */
    const void *data;     /* mapped bytes, valid until msrc_close()        */
} msrc_tensor;

/* Open `path` (GGUF file or model directory).  On success *out is owned by
 * the caller: msrc_close() it.  Errors: KILN_ERR_NOT_FOUND (no such path or
 * nothing recognisable in it), KILN_ERR_FORMAT / KILN_ERR_UNSUPPORTED /
 * KILN_ERR_RANGE from the format readers, KILN_ERR_IO, KILN_ERR_OOM; the
 * message names the file and the problem. */
kiln_status msrc_open(const char *path, model_source **out);

/* As msrc_open, and a regular file that is safetensors (by its .safetensors
 * name or its header shape) opens as MSRC_ST_FILE: the tensor table of that
 * file (the safetensors reader's checks and messages), tokenizer
 * MSRC_TOK_NONE, no chat template, and msrc_config() as mcfg_init() leaves
 * it: arch MCFG_ARCH_UNKNOWN and no shape, for nothing says what the
 * tensors are.  (msrc_open refuses such a file with KILN_ERR_NOT_FOUND:
 * a model needs its config.json.)  Ownership as msrc_open. */
kiln_status msrc_open_any(const char *path, model_source **out);

/* Close and free; NULL is a no-op. */
void msrc_close(model_source *m);

/* Borrowed views, valid until msrc_close(). */
msrc_kind msrc_get_kind(const model_source *m);
const char *msrc_path(const model_source *m);
const model_config *msrc_config(const model_source *m);
int64_t msrc_tensor_count(const model_source *m);
const msrc_tensor *msrc_tensor_at(const model_source *m, int64_t i);
const msrc_tensor *msrc_find_tensor(const model_source *m, const char *name);
/* Display name ("Gemma 3 270m"), or the file/directory name. */
const char *msrc_name(const model_source *m);
/* Number of files the weights span (GGUF, one safetensors file: 1; sharded
 * safetensors: shards). */
int32_t msrc_file_count(const model_source *m);

msrc_tokenizer msrc_tokenizer_kind(const model_source *m);
const char *msrc_tokenizer_name(msrc_tokenizer t);
/* The chat template text if the model carries one (GGUF
 * tokenizer.chat_template, tokenizer_config.json "chat_template" or a
 * chat_template.jinja file), else NULL.  *len gets its length. */
const char *msrc_chat_template(const model_source *m, size_t *len);

/* The underlying readers, for code that needs format specifics (NULL when
 * the source is of another kind; the safetensors one for MSRC_HF_DIR and
 * MSRC_ST_FILE). */
struct gguf_file *msrc_gguf(const model_source *m);
struct st_model *msrc_safetensors(const model_source *m);

#endif /* KILN_FORMAT_MODEL_SOURCE_H */
