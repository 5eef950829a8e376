/*
 * spm_impl.h - private definitions shared by the spm_*.c files and their
 * tests.  Nothing outside src/tokenizer/spm*.c and tests/ includes this.
 *
 * One handle serves two flavours that differ in a few rules:
 *
 *   SPM_FLAVOR_SP     a SentencePiece .model file, encoded as the
 *                     `sentencepiece` library does: normalizer (charsmap,
 *                     dummy prefix, whitespace rules, user-defined pieces
 *                     kept whole), BPE over NORMAL/USER_DEFINED/UNUSED
 *                     pieces, UNUSED pieces split back, unknown runs merged
 *                     or byte-fallback, control pieces never parsed.
 *   SPM_FLAVOR_LLAMA  a GGUF vocabulary (tokenizer.ggml.model = "llama"),
 *                     encoded as llama.cpp's SPM tokenizer does: special
 *                     tokens matched in the text first, then per fragment
 *                     the space prefix rule, ' ' -> U+2581, BPE over every
 *                     token, bytes for what no token covers.
 *
 * Invariants of a loaded spm_tok (established by spm_vocab_finish):
 *   1. n >= 1; piece i is text[off[i] .. off[i+1]), never empty, and no two
 *      pieces are equal; the table `slot` maps each piece to its id.
 *   2. Every id stored in the handle (bos, eos, unk, pad, byte_id[]) is -1
 *      or lies in [0, n).
 *   3. The handle is immutable after loading: encode/decode only read it,
 *      so one handle may be used from several threads at once.
 */
#ifndef KILN_TOKENIZER_SPM_IMPL_H
#define KILN_TOKENIZER_SPM_IMPL_H

#include "tokenizer/spm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Piece types as SentencePiece and GGUF number them. */
enum {
    SPM_TYPE_UNDEFINED = 0,
    SPM_TYPE_NORMAL = 1,
    SPM_TYPE_UNKNOWN = 2,
    SPM_TYPE_CONTROL = 3,
    SPM_TYPE_USER_DEFINED = 4,
    SPM_TYPE_UNUSED = 5,
    SPM_TYPE_BYTE = 6,
};

/* Attribute bits (llama.cpp's token attributes, also used for .model). */
enum {
    SPM_ATTR_NORMAL = 1u << 0,
    SPM_ATTR_UNKNOWN = 1u << 1,
    SPM_ATTR_CONTROL = 1u << 2,
    SPM_ATTR_USER_DEFINED = 1u << 3,
    SPM_ATTR_UNUSED = 1u << 4,
    SPM_ATTR_BYTE = 1u << 5,
};

typedef enum spm_flavor { SPM_FLAVOR_SP, SPM_FLAVOR_LLAMA } spm_flavor;

/* "\xE2\x96\x81", U+2581 LOWER ONE EIGHTH BLOCK: the escaped space. */
#define SPM_WS "\xE2\x96\x81"
#define SPM_WS_LEN 3

/* A byte trie for longest-prefix and all-prefix matching.  Node 0 is the
 * root; children of a node form a singly linked list (first/next). */
typedef struct spm_trie_node {
    int32_t first; /* first child, -1 if none     */
    int32_t next;  /* next sibling, -1 if none    */
    int32_t value; /* id ending here, -1 if none  */
    uint8_t label; /* byte on the edge from parent */
} spm_trie_node;

typedef struct spm_trie {
    spm_trie_node *nodes;
    int32_t len, cap;
    uint8_t first_byte[256]; /* 1 where some key starts with that byte */
} spm_trie;

/* A SentencePiece NormalizerSpec, compiled.  The charsmap is a darts-clone
 * double array (units of 4 bytes) followed by NUL-separated replacement
 * strings; both are owned copies, validated for size at load. */
typedef struct spm_norm {
    bool add_dummy_prefix;
    bool remove_extra_ws;
    bool escape_ws;
    bool treat_ws_as_suffix;
    uint32_t *darts;     /* owned, n_darts units; NULL: identity */
    size_t n_darts;
    char *repl;          /* owned replacement strings            */
    size_t n_repl;
} spm_norm;

struct spm_tok {
    spm_flavor flavor;
    int32_t n;           /* vocabulary size                          */
    char *text;          /* owned: all pieces, concatenated          */
    uint32_t *off;       /* owned: n + 1 offsets into text           */
    float *score;        /* owned: n                                 */
    uint8_t *type;       /* owned: n, SPM_TYPE_*                     */
    uint8_t *attr;       /* owned: n, SPM_ATTR_* bits                */
    uint64_t *slot;      /* owned: hash table, see spm_lookup        */
    uint64_t slot_mask;  /* table size - 1 (a power of two)          */
    uint32_t max_piece;  /* longest piece in bytes                   */
    int32_t byte_id[256];/* id of <0xNN>, -1 if absent               */

    int32_t bos, eos, unk, pad; /* -1 when absent                      */
    bool byte_fallback;         /* SP: trainer_spec.byte_fallback      */
    bool add_bos, add_eos;      /* LLAMA: tokenizer.ggml.add_*_token   */
    bool add_space_prefix;      /* LLAMA: tokenizer.ggml.add_space_prefix */

    spm_norm norm;              /* SP: normalizer_spec                 */
    spm_norm denorm;            /* SP: denormalizer_spec               */
    bool has_denorm;
    char *unk_surface;          /* SP: owned, NUL-terminated           */

    /* SP: user-defined pieces; LLAMA: special tokens (control, user
     * defined, unknown).  spec_rank[id] is the matching priority of a
     * special token in LLAMA mode (0 = first), -1 for other ids. */
    spm_trie match;
    int32_t *spec_rank;         /* owned, n entries, LLAMA only        */
    int32_t *spec_by_rank;      /* owned, n_spec entries: rank -> id   */
    int32_t n_spec;
};

/* ---- vocabulary (spm.c) ---------------------------------------------------- */

/* Allocate a zeroed handle with room for n pieces of text_bytes bytes in
 * total.  Errors: KILN_ERR_OOM, KILN_ERR_RANGE. */
kiln_status spm_alloc(spm_flavor flavor, int64_t n, size_t text_bytes, spm_tok **out);

/* Build the piece table, byte ids and tries once text/off/score/type/attr
 * are filled.  Errors: KILN_ERR_FORMAT (empty or duplicate piece; `what`
 * names the source in the message), KILN_ERR_OOM. */
kiln_status spm_vocab_finish(spm_tok *t, const char *what);

/* Id of the piece equal to s[0..len), -1 if none. */
int32_t spm_lookup(const spm_tok *t, const char *s, size_t len);

/* ---- tries (spm.c) ---------------------------------------------------------- */

kiln_status spm_trie_insert(spm_trie *tr, const char *key, size_t len, int32_t value);
void spm_trie_free(spm_trie *tr);
/* Length of the longest key that prefixes s[0..len) (0 if none); *value
 * gets its value. */
size_t spm_trie_longest(const spm_trie *tr, const char *s, size_t len, int32_t *value);

/* Append p[0..len) to *out with every U+2581 written as ' '.  Errors:
 * KILN_ERR_OOM. */
kiln_status spm_append_unescaped(const char *p, size_t len, kiln_buf *out);

/* ---- text (spm_norm.c) ------------------------------------------------------- */

/* Length of the UTF-8 character starting with byte c by its lead byte (1 for
 * continuation and invalid bytes), the rule both references use to split. */
static inline size_t spm_utf8_len(uint8_t c)
{
    static const uint8_t tbl[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return tbl[c >> 4];
}

/* Length of the valid UTF-8 sequence at s[0..len) (1..4), or 0 when the
 * bytes there are not one (Unicode's well-formed table). */
size_t spm_utf8_valid(const uint8_t *s, size_t len);

/* Replace every ill-formed UTF-8 subsequence of s[0..len) with U+FFFD by
 * the maximal-subpart rule (what Python's bytes.decode(errors="replace")
 * does).  When s is already valid, *out_s = s and nothing is allocated;
 * otherwise *owned receives a new buffer (kiln_free) and *out_s points to
 * it.  Errors: KILN_ERR_OOM, KILN_ERR_RANGE. */
kiln_status spm_utf8_repair(const char *s, size_t len, const char **out_s, size_t *out_len,
                            char **owned);

/* Parse a precompiled charsmap blob into *n (copies).  Errors:
 * KILN_ERR_FORMAT (blob too short, trie size out of range), KILN_ERR_OOM. */
kiln_status spm_norm_set_charsmap(spm_norm *n, const uint8_t *blob, size_t len);
void spm_norm_free(spm_norm *n);

/* Normalize s[0..len) as SentencePiece's Normalizer::Normalize does and
 * append the result to *out.  `user` (may be NULL) holds pieces copied
 * through unnormalized.  Errors: KILN_ERR_OOM. */
kiln_status spm_normalize(const spm_norm *n, const spm_trie *user, const char *s, size_t len,
                          kiln_buf *out);

/* ---- BPE (spm_bpe.c) --------------------------------------------------------- */

/* Encode an escaped text with the score-ordered bigram merge and append
 * ids: SentencePiece rules for SPM_FLAVOR_SP, llama.cpp's for
 * SPM_FLAVOR_LLAMA.  Errors: KILN_ERR_OOM, KILN_ERR_RANGE. */
kiln_status spm_bpe_encode(const spm_tok *t, const char *s, size_t len, kiln_ids *out);

/* ---- flavour entry points ------------------------------------------------------ */

/* llama.cpp's tokenize (special tokens parsed) and detokenize; see
 * spm_gguf.c.  Same contracts as spm_encode / spm_decode. */
kiln_status spm_llama_encode(const spm_tok *t, const char *text, size_t len, bool add_special,
                             kiln_ids *out);
kiln_status spm_llama_decode(const spm_tok *t, const int32_t *ids, size_t n, bool skip_special,
                             kiln_buf *out);

#endif /* KILN_TOKENIZER_SPM_IMPL_H */
