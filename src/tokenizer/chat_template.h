/*
 * chat_template.h - the Jinja subset that chat templates use, in C.
 *
 * A template (from tokenizer_config.json "chat_template", GGUF
 * tokenizer.chat_template, or a file) is compiled once and rendered per
 * conversation.  The context is a JSON object: {"messages": [...],
 * "add_generation_prompt": bool, "bos_token": "...", "eos_token": "...",
 * "tools": [...], ...}.  Output is byte-identical to transformers'
 * apply_chat_template for the same template and context.  A construct the
 * interpreter does not support is a compile error naming it and its line,
 * never wrong output.
 *
 * Rendering is bounded for hostile templates (each limit is an error,
 * KILN_ERR_RANGE, never truncated output): 16 MiB of output, 256 MiB of
 * working memory, 4 million evaluation steps, macro calls 50 deep, range()
 * of at most 100000 items, and templates nested at most 200 levels deep
 * (checked at compile time).  See ctpl_impl.h.
 */
#ifndef KILN_TOKENIZER_CHAT_TEMPLATE_H
#define KILN_TOKENIZER_CHAT_TEMPLATE_H

#include "base/buf.h"
#include "kiln.h"

#include <jansson.h>
#include <stddef.h>

typedef struct ctpl ctpl;

/* Compile template source.  Errors: KILN_ERR_FORMAT (syntax; message has the
 * line) or KILN_ERR_UNSUPPORTED (names the construct and the line).  *out
 * owned: ctpl_free(). */
kiln_status ctpl_compile(const char *src, size_t len, ctpl **out);
void ctpl_free(ctpl *t);

/* Render with `context` (borrowed) appended to *out.  raise_exception() in
 * the template -> KILN_ERR_INVALID_ARG with its message; runtime type errors
 * -> KILN_ERR_FORMAT naming the line. */
kiln_status ctpl_render(const ctpl *t, json_t *context, kiln_buf *out);

#endif /* KILN_TOKENIZER_CHAT_TEMPLATE_H */
