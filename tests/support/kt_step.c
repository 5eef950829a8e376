/*
 * kt_step.c - host-built model steps for the model tests; see kt_step.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kt_step.h"

#include <string.h>

void kt_step_init(kt_step *st)
{
    memset(st, 0, sizeof *st);
}

/* Block table of sequence slot s: blocks handed out in a scrambled order,
 * interleaved between sequences. */
static void kt_seq_table(int s, int32_t *table)
{
    for (int j = 0; j < KT_MAX_BLOCKS; j++)
        table[j] = (int32_t)(((s + KT_MAX_SEQS * j) * 37 + 11) % KT_N_BLOCKS);
}

void kt_step_add(kt_step *st, int cache_seq, const int32_t *ids, const int32_t *types, int n,
                 int32_t pos, bool all_out)
{
    int s = st->n_seqs++;
    int32_t *table = st->tables + s * KT_MAX_BLOCKS;
    assert_true(s < KT_MAX_SEQS && cache_seq >= 0 && cache_seq < KT_MAX_SEQS);
    assert_true(st->n_tokens + n <= KT_MAX_TOKENS && pos + n <= KT_MAX_BLOCKS * KT_BLOCK);
    kt_seq_table(cache_seq, table);
    st->seq_start[s] = st->n_tokens;
    for (int t = 0; t < n; t++) {
        int32_t r = st->n_tokens++, p = pos + t;
        st->tokens[r] = ids[t];
        st->types[r] = types ? types[t] : 0;
        st->positions[r] = p;
        st->slots[r] = table[p / KT_BLOCK] * KT_BLOCK + p % KT_BLOCK;
        if (all_out || t == n - 1)
            st->out_rows[st->n_out++] = r;
    }
    st->seq_start[s + 1] = st->n_tokens;
    st->seq_len[s] = pos + n;
}

kiln_status kt_step_upload(backend *be, const kt_step *st, bool with_types, bk_batch *b)
{
    bk_batch_host h = {
        .n_tokens = st->n_tokens, .n_seqs = st->n_seqs, .max_blocks = KT_MAX_BLOCKS,
        .n_out = st->n_out, .tokens = st->tokens, .token_types = with_types ? st->types : NULL,
        .positions = st->positions, .seq_start = st->seq_start, .seq_len = st->seq_len,
        .block_tables = st->tables, .slot_mapping = st->slots, .out_rows = st->out_rows,
    };
    return be->ops->batch_upload(be, &h, b);
}
