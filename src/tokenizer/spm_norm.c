/*
 * spm_norm.c - UTF-8 repair and the SentencePiece normalizer.
 *
 * Invalid UTF-8 in input text: before either flavour sees it, every
 * ill-formed subsequence becomes U+FFFD by the maximal-subpart rule of
 * Unicode (chapter 3, "U+FFFD substitution of maximal subparts"), which is
 * what Python's bytes.decode("utf-8", errors="replace") does.  The reference
 * scripts decode their inputs that way, so kiln and the references tokenize
 * the same text.
 *
 * The normalizer follows SentencePiece's Normalizer::Normalize: optional
 * removal of leading, trailing and repeated spaces, a dummy-prefix space,
 * ' ' -> U+2581 escaping, and per character the longest rule of the
 * precompiled charsmap (a darts-clone double array whose leaves point into
 * a block of NUL-terminated replacement strings).  Every read of the double
 * array and of the replacement block is bounds-checked: the charsmap comes
 * from an untrusted file.
 */
#include "tokenizer/spm_impl.h"

#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"

#include <string.h>

#define SPM_MAX_TRIE_RESULTS 32 /* SentencePiece's kMaxTrieResultsSize */

static const char SPM_REPLACEMENT[] = "\xEF\xBF\xBD";

/* ---- UTF-8 ------------------------------------------------------------------ */

/* Bytes of s[0..len) that form a prefix of a well-formed sequence (>= 1), and
 * in *complete whether they are a whole character. */
static size_t utf8_subpart(const uint8_t *s, size_t len, bool *complete)
{
    uint8_t c = s[0], lo = 0x80, hi = 0xBF;
    size_t need;
    *complete = false;
    if (c < 0x80) {
        *complete = true;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) need = 3;
    else if (c >= 0xF0 && c <= 0xF4) need = 4;
    else return 1;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
    size_t i = 1;
    for (; i < need && i < len; i++) {
        uint8_t b = s[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF))
            return i;
    }
    *complete = i == need;
    return i;
}

size_t spm_utf8_valid(const uint8_t *s, size_t len)
{
    bool complete;
    if (len == 0)
        return 0;
    size_t n = utf8_subpart(s, len, &complete);
    return complete ? n : 0;
}

/* Offset of the first ill-formed byte of s[0..len), len if none. */
static size_t utf8_first_bad(const uint8_t *s, size_t len)
{
    size_t p = 0;
    while (p < len) {
        if (s[p] < 0x80) {
            p++;
            continue;
        }
        size_t n = spm_utf8_valid(s + p, len - p);
        if (n == 0)
            return p;
        p += n;
    }
    return len;
}

kiln_status spm_utf8_repair(const char *s, size_t len, const char **out_s, size_t *out_len,
                            char **owned)
{
    const uint8_t *u = (const uint8_t *)s;
    size_t p = utf8_first_bad(u, len), cap, o;
    *owned = NULL;
    *out_s = s;
    *out_len = len;
    if (p == len)
        return KILN_OK;
    /* Each replaced byte grows to at most 3 bytes. */
    if (!ck_mul_size(len, 3, &cap) || !ck_add_size(cap, 1, &cap))
        return kiln_err_set(KILN_ERR_RANGE, "spm: text of %zu bytes is too long", len);
    char *buf = kiln_malloc(cap);
    if (!buf)
        return kiln_err_set(KILN_ERR_OOM, "spm: out of memory repairing UTF-8");
    memcpy(buf, s, p);
    o = p;
    while (p < len) {
        bool complete;
        size_t n = utf8_subpart(u + p, len - p, &complete);
        if (complete) {
            memcpy(buf + o, s + p, n);
            o += n;
        } else {
            memcpy(buf + o, SPM_REPLACEMENT, 3);
            o += 3;
        }
        p += n;
    }
    *owned = buf;
    *out_s = buf;
    *out_len = o;
    return KILN_OK;
}

/* ---- charsmap ------------------------------------------------------------------ */

kiln_status spm_norm_set_charsmap(spm_norm *n, const uint8_t *blob, size_t len)
{
    uint32_t trie_size;
    if (len <= 4)
        return kiln_err_set(KILN_ERR_FORMAT, "spm: precompiled charsmap of %zu bytes is too "
                            "short", len);
    memcpy(&trie_size, blob, 4); /* little-endian hosts only, as the files are */
    /* The double array is read in whole 4-byte units, as the reference does. */
    if ((uint64_t)trie_size > len - 4 || trie_size < 4)
        return kiln_err_set(KILN_ERR_FORMAT, "spm: charsmap trie size %u does not fit its "
                            "blob of %zu bytes", trie_size, len);
    n->n_darts = trie_size / 4;
    n->n_repl = len - 4 - trie_size;
    n->darts = kiln_malloc(n->n_darts * 4);
    n->repl = kiln_malloc(n->n_repl + 1);
    if (!n->darts || !n->repl) {
        spm_norm_free(n);
        return kiln_err_set(KILN_ERR_OOM, "spm: out of memory (charsmap)");
    }
    memcpy(n->darts, blob + 4, n->n_darts * 4);
    memcpy(n->repl, blob + 4 + trie_size, n->n_repl);
    return KILN_OK;
}

void spm_norm_free(spm_norm *n)
{
    kiln_free(n->darts);
    kiln_free(n->repl);
    n->darts = NULL;
    n->repl = NULL;
    n->n_darts = n->n_repl = 0;
}

static inline uint32_t darts_offset(uint32_t u)
{
    return (u >> 10) << ((u & (1u << 9)) >> 6);
}

/* The longest charsmap rule among the first SPM_MAX_TRIE_RESULTS matches at
 * s (darts-clone commonPrefixSearch): its length, and the replacement in
 * *rep / *rep_len.  0 when no rule matches. */
static size_t charsmap_match(const spm_norm *n, const uint8_t *s, size_t len, const char **rep,
                             size_t *rep_len)
{
    const uint32_t *a = n->darts;
    size_t best = 0, found = 0;
    uint32_t best_value = 0, pos = darts_offset(a[0]);
    for (size_t i = 0; i < len && found < SPM_MAX_TRIE_RESULTS; i++) {
        pos ^= s[i];
        if (pos >= n->n_darts)
            break;
        uint32_t u = a[pos];
        if ((u & ((1u << 31) | 0xFFu)) != s[i])
            break;
        pos ^= darts_offset(u);
        if (pos >= n->n_darts)
            break;
        if ((u >> 8) & 1u) {
            best = i + 1;
            best_value = a[pos] & ((1u << 31) - 1);
            found++;
        }
    }
    if (best == 0 || best_value >= n->n_repl)
        return 0;
    const char *r = n->repl + best_value;
    const char *nul = memchr(r, '\0', n->n_repl - best_value);
    *rep = r;
    *rep_len = nul ? (size_t)(nul - r) : n->n_repl - best_value;
    return best;
}

/* ---- Normalize ---------------------------------------------------------------- */

typedef struct norm_piece {
    const char *s;   /* replacement text */
    size_t len;
    size_t consumed; /* input bytes it stands for */
} norm_piece;

static norm_piece norm_prefix(const spm_norm *n, const spm_trie *user, const char *s,
                              size_t len)
{
    const uint8_t *u = (const uint8_t *)s;
    norm_piece p = {s, 0, 0};
    int32_t id;
    if (user && user->first_byte[u[0]]) {
        size_t l = spm_trie_longest(user, s, len, &id);
        if (l > 0)
            return (norm_piece){s, l, l};
    }
    if (n->darts) {
        size_t l = charsmap_match(n, u, len, &p.s, &p.len);
        if (l > 0) {
            p.consumed = l;
            return p;
        }
    }
    size_t l = spm_utf8_valid(u, len);
    if (l == 0)
        return (norm_piece){SPM_REPLACEMENT, 3, 1};
    return (norm_piece){s, l, l};
}

static kiln_status append_ws(const spm_norm *n, kiln_buf *out)
{
    return n->escape_ws ? buf_append(out, SPM_WS, SPM_WS_LEN) : buf_append_char(out, ' ');
}

/* Append sp with ' ' escaped as U+2581 when the spec says so. */
static kiln_status append_escaped(const spm_norm *n, const char *sp, size_t len, kiln_buf *out)
{
    kiln_status st = KILN_OK;
    size_t run = 0;
    for (size_t i = 0; i < len && !st; i++) {
        if (sp[i] != ' ' || !n->escape_ws)
            continue;
        if ((st = buf_append(out, sp + run, i - run)))
            return st;
        st = buf_append(out, SPM_WS, SPM_WS_LEN);
        run = i + 1;
    }
    return st ? st : buf_append(out, sp + run, len - run);
}

static void strip_trailing_ws(const spm_norm *n, kiln_buf *out, size_t start)
{
    const char *ws = n->escape_ws ? SPM_WS : " ";
    size_t wl = n->escape_ws ? SPM_WS_LEN : 1;
    while (out->len - start >= wl && memcmp(out->data + out->len - wl, ws, wl) == 0)
        out->len -= wl;
    if (out->data)
        out->data[out->len] = '\0';
}

kiln_status spm_normalize(const spm_norm *n, const spm_trie *user, const char *s, size_t len,
                          kiln_buf *out)
{
    kiln_status st = KILN_OK;
    size_t p = 0, start = out->len;
    if (len == 0)
        return KILN_OK;
    /* Leading spaces go first when extra whitespace is removed. */
    while (n->remove_extra_ws && p < len) {
        norm_piece np = norm_prefix(n, user, s + p, len - p);
        if (np.len != 1 || np.s[0] != ' ')
            break;
        p += np.consumed;
    }
    if (p == len)
        return KILN_OK;
    if (!n->treat_ws_as_suffix && n->add_dummy_prefix && (st = append_ws(n, out)))
        return st;
    bool prev_space = n->remove_extra_ws;
    while (p < len) {
        norm_piece np = norm_prefix(n, user, s + p, len - p);
        const char *sp = np.s;
        size_t sl = np.len;
        while (prev_space && sl > 0 && sp[0] == ' ') {
            sp++;
            sl--;
        }
        if (sl > 0) {
            if ((st = append_escaped(n, sp, sl, out)))
                return st;
            prev_space = sp[sl - 1] == ' ';
        }
        p += np.consumed;
        if (!n->remove_extra_ws)
            prev_space = false;
    }
    if (n->remove_extra_ws)
        strip_trailing_ws(n, out, start);
    if (n->treat_ws_as_suffix && n->add_dummy_prefix)
        st = append_ws(n, out);
    return st;
}
