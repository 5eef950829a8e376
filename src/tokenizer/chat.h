/*
 * chat.h - a model's chat template and the context it is rendered with.
 *
 * Finds the template of a source (GGUF tokenizer.chat_template;
 * tokenizer_config.json "chat_template" of a model directory or beside a
 * tokenizer.json; chat_template.jinja / chat_template.json; or a file given
 * explicitly) together with the bos/eos token strings the template refers
 * to, and renders conversations the way transformers' apply_chat_template
 * does: context = {messages, add_generation_prompt, bos_token, eos_token,
 * tools?, + any extra keys of the request}.
 */
#ifndef KILN_TOKENIZER_CHAT_H
#define KILN_TOKENIZER_CHAT_H

#include "base/buf.h"
#include "kiln.h"

#include <jansson.h>
#include <stdbool.h>

typedef struct chat_tmpl chat_tmpl;

/* Load the template of `src` (model dir, GGUF file, tokenizer.json or
 * tokenizer_config.json), or of `template_file` when that is not NULL (its
 * bos/eos strings still come from src).  Errors: KILN_ERR_NOT_FOUND when the
 * source has no template (the message says to pass --chat-template), the
 * compile errors of ctpl_compile.  *out owned: chat_tmpl_free(). */
kiln_status chat_tmpl_load(const char *src, const char *template_file, chat_tmpl **out);
void chat_tmpl_free(chat_tmpl *c);

/* Render `request` (borrowed): either a JSON array of messages or an object
 * with "messages" and optionally "tools" and other template variables.
 * add_generation_prompt is used unless the object sets it.  Appends to *out.
 * Errors: KILN_ERR_INVALID_ARG for a malformed request (message says what),
 * the render errors of ctpl_render. */
kiln_status chat_render(const chat_tmpl *c, json_t *request, bool add_generation_prompt,
                        kiln_buf *out);

const char *chat_bos_token(const chat_tmpl *c); /* "" when unknown */
const char *chat_eos_token(const chat_tmpl *c);

#endif /* KILN_TOKENIZER_CHAT_H */
