/*
 * kt_step.h - one model step (a bk_batch) built on the host for the model
 * tests (test_model_golden, test_tp): sequences with their new tokens,
 * positions and slots in a paged KV cache of KT_N_BLOCKS blocks of
 * KT_BLOCK tokens, where sequence slot s owns a fixed, scrambled block
 * table (blocks interleaved between sequences).
 */
#ifndef KILN_KT_STEP_H
#define KILN_KT_STEP_H

#include "backend/backend.h"

#include <stdbool.h>
#include <stdint.h>

#define KT_MAX_TOKENS 128   /* tokens of one step                       */
#define KT_MAX_SEQS 8       /* sequences of one step, and cache slots   */
#define KT_MAX_BLOCKS 8     /* blocks of one sequence's table           */
#define KT_BLOCK 16         /* tokens per KV block                      */
#define KT_N_BLOCKS 64      /* blocks of the KV pool                    */

typedef struct kt_step {
    int32_t tokens[KT_MAX_TOKENS], types[KT_MAX_TOKENS], positions[KT_MAX_TOKENS],
        slots[KT_MAX_TOKENS];
    int32_t seq_start[KT_MAX_SEQS + 1], seq_len[KT_MAX_SEQS];
    int32_t tables[KT_MAX_SEQS * KT_MAX_BLOCKS];
    int32_t out_rows[KT_MAX_TOKENS];
    int32_t n_tokens, n_seqs, n_out;
} kt_step;

/* An empty step. */
void kt_step_init(kt_step *st);

/* Append a sequence in cache slot `cache_seq` with n new tokens ids (and
 * BERT segment ids `types`, NULL: all 0) at positions pos, pos + 1, ...;
 * all_out: every row is an output row, else the last one.  Fails the test
 * (cmocka) when the step is full. */
void kt_step_add(kt_step *st, int cache_seq, const int32_t *ids, const int32_t *types, int n,
                 int32_t pos, bool all_out);

/* The step uploaded to `be` (bk batch_upload) as *b; with_types passes the
 * segment ids.  Returns the backend's status (the step is not judged). */
kiln_status kt_step_upload(backend *be, const kt_step *st, bool with_types, bk_batch *b);

#endif
