/*
 * vocab.h - token strings <-> ids for the tokenizer models.
 *
 * An open-addressing hash table over byte strings.  Ids are int32 >= 0 and
 * may be sparse; vocab_piece() of an id no entry names returns NULL.  When
 * two entries carry the same id the later one names it (as a map from id to
 * token built by iterating entries would).  When one string is added twice
 * the later id wins.
 *
 *   vocab_init -> vocab_add* -> (vocab_find / vocab_piece) -> vocab_free
 *
 * Lookups never allocate and may run from several threads at once.
 */
#ifndef KILN_TOKENIZER_VOCAB_H
#define KILN_TOKENIZER_VOCAB_H

#include "base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vocab {
    kiln_buf text;       /* all strings, back to back                     */
    size_t *off;         /* (n_entries + 1) offsets into text              */
    int32_t *ids;        /* (n_entries) id of entry i                      */
    int64_t n_entries;
    int64_t cap_entries;
    int64_t *by_id;      /* (n_ids) entry of id, -1 if none                */
    int64_t n_ids;       /* max id + 1                                      */
    int64_t cap_ids;
    uint32_t *slots;     /* (mask + 1) entry + 1, 0 = empty                */
    size_t mask;
    size_t max_len;      /* longest string                                 */
} vocab;

/* Hash of a byte string (the table's hash, exposed for callers that keep
 * their own tables). */
uint64_t vocab_hash(const void *s, size_t len);

void vocab_init(vocab *v);
/* Add (or re-point) s -> id.  Errors: KILN_ERR_OOM, KILN_ERR_RANGE (id < 0
 * or more than 2^31 entries). */
kiln_status vocab_add(vocab *v, const char *s, size_t len, int32_t id);
/* Id of s, -1 if absent. */
int32_t vocab_find(const vocab *v, const char *s, size_t len);
/* String of id, borrowed until vocab_free; NULL if no entry has that id. */
const char *vocab_piece(const vocab *v, int32_t id, size_t *len);
void vocab_free(vocab *v);

#endif /* KILN_TOKENIZER_VOCAB_H */
