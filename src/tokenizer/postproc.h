/*
 * postproc.h - tokenizer.json post-processors, for single sequences.
 *
 * TemplateProcessing (the "single" template with its special_tokens map),
 * BertProcessing and RobertaProcessing ([cls] $A [sep]), ByteLevel (no
 * change to ids) and Sequence (flattened, applied in order).  Only ids are
 * produced: type ids, offsets and attention masks are not kiln's concern.
 */
#ifndef KILN_TOKENIZER_POSTPROC_H
#define KILN_TOKENIZER_POSTPROC_H

#include "base/buf.h"

#include <jansson.h>

typedef struct pp pp;

/* Parse the "post_processor" value; NULL/null -> *out NULL.  Errors:
 * KILN_ERR_UNSUPPORTED naming an unknown type, KILN_ERR_FORMAT,
 * KILN_ERR_OOM.  *out owned: pp_free(). */
kiln_status pp_from_json(const json_t *j, pp **out);
/* Built in code: [prefix ids] $A [suffix ids] (either may be empty). */
kiln_status pp_new_wrap(const int32_t *pre, size_t npre, const int32_t *post, size_t npost,
                        pp **out);
void pp_free(pp *p);

/* How many ids the processor adds to a single sequence. */
size_t pp_added(const pp *p);
/* The first id added before / after the sequence, -1 if none (a hint for
 * BOS / EOS). */
int32_t pp_first_before(const pp *p);
int32_t pp_first_after(const pp *p);

/* Wrap ids->data[mark..] in place as the processor says; tmp is scratch.
 * Errors: KILN_ERR_OOM. */
kiln_status pp_apply(const pp *p, kiln_ids *ids, size_t mark, kiln_ids *tmp);

#endif /* KILN_TOKENIZER_POSTPROC_H */
