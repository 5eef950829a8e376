/*
 * hftok_impl.h - the hftok handle, shared by hftok.c (tokenizer.json,
 * encode/decode) and hftok_build.c (GGUF and vocab.txt sources).  Only these
 * two files and their tests include it.
 *
 * Invariants once built (hftok_seal has run):
 *   1. exactly one of bpe / wp is set; voc points at its vocab;
 *   2. n_ids covers every model and added id; added_of[id] is the index of
 *      the added token of id or -1; special[id] != 0 for special tokens;
 *   3. nothing in the handle changes afterwards: encode/decode only read it.
 */
#ifndef KILN_TOKENIZER_HFTOK_IMPL_H
#define KILN_TOKENIZER_HFTOK_IMPL_H

#include "tokenizer/added.h"
#include "tokenizer/bpe.h"
#include "tokenizer/decode.h"
#include "tokenizer/hftok.h"
#include "tokenizer/normalize.h"
#include "tokenizer/postproc.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/wordpiece.h"

struct hftok {
    bpe *bpe;
    wp *wp;
    const vocab *voc;
    norm *norm;
    pretok *pre;
    pp *post;
    dec *dec;
    added_set added;
    int64_t n_ids;
    int32_t *added_of;  /* (n_ids) */
    uint8_t *special;   /* (n_ids) */
    bool truncate;
    bool trunc_left;
    size_t trunc_max;
    int32_t bos, eos;
    const char *kind;
};

/* Finish a handle whose model, pipeline and added tokens are set: index
 * the added tokens (normalizing the normalized ones), build the id tables,
 * pick BOS/EOS (post-processor first, then well-known names) and the kind
 * name.  Errors: KILN_ERR_OOM. */
kiln_status hftok_seal(hftok *t);

#endif /* KILN_TOKENIZER_HFTOK_IMPL_H */
