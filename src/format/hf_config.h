/*
 * hf_config.h - Hugging Face config.json (and sentence-transformers module
 * files) -> model_config.
 *
 * Families: llama (Llama 2/3/3.1/3.2, TinyLlama, SmolLM), mistral, qwen2,
 * qwen3, gemma3 (gemma3_text, and the multimodal gemma3 whose text model is
 * in "text_config"), bert.  Fields a file leaves out, or sets to null, take
 * the defaults of the family's transformers config class, so a minimal
 * config reads as transformers reads it.
 */
#ifndef KILN_FORMAT_HF_CONFIG_H
#define KILN_FORMAT_HF_CONFIG_H

#include "format/model_config.h"
#include "kiln.h"

#include <stddef.h>

/* Parse the `len` bytes of a config.json into *out (reset with mcfg_init
 * first, finished with mcfg_finalize).  Errors: KILN_ERR_FORMAT (not JSON,
 * with line and column; a known field of the wrong JSON type, naming it; a
 * shape mcfg_finalize rejects), KILN_ERR_UNSUPPORTED (unknown model_type,
 * activation or rope scaling type, naming it).  *out is undefined on error.
 * Nothing is allocated that outlives the call. */
kiln_status hf_config_parse(const char *json, size_t len, model_config *out);

/* Read DIR/config.json, then the sentence-transformers pipeline when
 * DIR/modules.json exists: the Pooling module's config.json sets pooling
 * (mean/cls/max/lasttoken), a Normalize module sets normalize.  Errors as
 * hf_config_parse (messages prefixed with the file), KILN_ERR_IO when
 * config.json cannot be read, KILN_ERR_UNSUPPORTED for modules kiln does not
 * run (Dense, weighted-mean pooling, ...). */
kiln_status hf_config_load_dir(const char *dir, model_config *out);

/* A directory as hf_config_load_dir; a file as a config.json of its own
 * (no sentence-transformers modules).  Errors as hf_config_load_dir. */
kiln_status hf_config_load(const char *path, model_config *out);

#endif /* KILN_FORMAT_HF_CONFIG_H */
