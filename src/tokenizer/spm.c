/*
 * spm.c - the SentencePiece-style tokenizer handle: vocabulary table, tries,
 * accessors, and encode/decode of the SentencePiece (.model) flavour.
 *
 * See spm_impl.h for the two flavours and the handle's invariants;
 * spm_model.c reads .model files, spm_gguf.c GGUF vocabularies and holds the
 * llama.cpp flavour's encode/decode, spm_bpe.c the merge, spm_norm.c the
 * normalizer and UTF-8 repair.
 *
 * Encoding (.model flavour), as sentencepiece's SentencePieceProcessor:
 *     text --spm_utf8_repair--> valid UTF-8 --spm_normalize--> escaped text
 *          --spm_bpe_encode--> ids      (BOS first when add_special)
 * Decoding: pieces concatenated, U+2581 -> ' ', the first piece's leading
 * U+2581 dropped (dummy prefix), byte pieces reassembled with each invalid
 * byte shown as U+FFFD, unknown pieces as the unk surface (" \u2047 "),
 * control pieces empty (or their text when skip_special is false), then the
 * denormalizer if the model has one.
 */
#include "tokenizer/spm_impl.h"

#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "base/fmap.h"

#include <stdio.h>
#include <string.h>

/* ---- hashing ----------------------------------------------------------------- */

/* Hash of a short byte string: 8-byte words folded by multiplication, then
 * a full avalanche so that the low bits (the table index) and the high bits
 * (the slot tag) depend on every input byte. */
static uint64_t spm_hash(const char *s, size_t len)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)len;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        s += 8;
        len -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, s, len);
    h ^= v;
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 33);
}

/* Slots hold (hash >> 32) << 32 | (id + 1); 0 is empty.  The stored high
 * hash bits reject almost every non-matching slot without touching the
 * piece text. */
int32_t spm_lookup(const spm_tok *t, const char *s, size_t len)
{
    uint64_t h = spm_hash(s, len), i = h & t->slot_mask, tag = h >> 32;
    for (;;) {
        uint64_t v = t->slot[i];
        if (v == 0)
            return -1;
        if (v >> 32 == tag) {
            int32_t id = (int32_t)(uint32_t)v - 1;
            if (t->off[id + 1] - t->off[id] == len && memcmp(t->text + t->off[id], s, len) == 0)
                return id;
        }
        i = (i + 1) & t->slot_mask;
    }
}

/* ---- tries -------------------------------------------------------------------- */

static int32_t trie_child(const spm_trie *tr, int32_t node, uint8_t c)
{
    for (int32_t k = tr->nodes[node].first; k >= 0; k = tr->nodes[k].next)
        if (tr->nodes[k].label == c)
            return k;
    return -1;
}

static kiln_status trie_add_node(spm_trie *tr, int32_t parent, uint8_t c, int32_t *out)
{
    if (tr->len == tr->cap) {
        int32_t cap = tr->cap ? tr->cap * 2 : 64;
        if (tr->cap > INT32_MAX / 2)
            return kiln_err_set(KILN_ERR_RANGE, "spm: trie too large");
        spm_trie_node *nn = kiln_realloc(tr->nodes, (size_t)cap * sizeof *nn);
        if (!nn)
            return kiln_err_set(KILN_ERR_OOM, "spm: out of memory (trie)");
        tr->nodes = nn;
        tr->cap = cap;
    }
    int32_t k = tr->len++;
    tr->nodes[k] = (spm_trie_node){-1, -1, -1, c};
    if (parent >= 0) {
        tr->nodes[k].next = tr->nodes[parent].first;
        tr->nodes[parent].first = k;
    }
    *out = k;
    return KILN_OK;
}

kiln_status spm_trie_insert(spm_trie *tr, const char *key, size_t len, int32_t value)
{
    kiln_status st;
    int32_t node = 0;
    if (tr->len == 0 && (st = trie_add_node(tr, -1, 0, &node)))
        return st;
    for (size_t i = 0; i < len; i++) {
        int32_t k = trie_child(tr, node, (uint8_t)key[i]);
        if (k < 0 && (st = trie_add_node(tr, node, (uint8_t)key[i], &k)))
            return st;
        node = k;
    }
    tr->nodes[node].value = value;
    if (len > 0)
        tr->first_byte[(uint8_t)key[0]] = 1;
    return KILN_OK;
}

void spm_trie_free(spm_trie *tr)
{
    kiln_free(tr->nodes);
    memset(tr, 0, sizeof *tr);
}

size_t spm_trie_longest(const spm_trie *tr, const char *s, size_t len, int32_t *value)
{
    size_t best = 0;
    int32_t node = 0;
    *value = -1;
    if (tr->len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        node = trie_child(tr, node, (uint8_t)s[i]);
        if (node < 0)
            break;
        if (tr->nodes[node].value >= 0) {
            best = i + 1;
            *value = tr->nodes[node].value;
        }
    }
    return best;
}

/* ---- handle ------------------------------------------------------------------ */

kiln_status spm_alloc(spm_flavor flavor, int64_t n, size_t text_bytes, spm_tok **out)
{
    spm_tok *t;
    *out = NULL;
    if (n < 1 || n >= INT32_MAX / 2 || text_bytes >= UINT32_MAX)
        return kiln_err_set(KILN_ERR_RANGE, "spm: vocabulary of %lld pieces (%zu bytes) is out "
                            "of range", (long long)n, text_bytes);
    if (!(t = kiln_calloc(1, sizeof *t)))
        return kiln_err_set(KILN_ERR_OOM, "spm: out of memory");
    t->flavor = flavor;
    t->n = (int32_t)n;
    t->bos = t->eos = t->unk = t->pad = -1;
    t->text = kiln_malloc(text_bytes + 1);
    t->off = kiln_calloc((size_t)n + 1, sizeof *t->off);
    t->score = kiln_calloc((size_t)n, sizeof *t->score);
    t->type = kiln_calloc((size_t)n, 1);
    t->attr = kiln_calloc((size_t)n, 1);
    if (!t->text || !t->off || !t->score || !t->type || !t->attr) {
        spm_free(t);
        return kiln_err_set(KILN_ERR_OOM, "spm: out of memory (%lld pieces)", (long long)n);
    }
    *out = t;
    return KILN_OK;
}

void spm_free(spm_tok *t)
{
    if (!t)
        return;
    kiln_free(t->text);
    kiln_free(t->off);
    kiln_free(t->score);
    kiln_free(t->type);
    kiln_free(t->attr);
    kiln_free(t->slot);
    kiln_free(t->unk_surface);
    kiln_free(t->spec_rank);
    kiln_free(t->spec_by_rank);
    spm_norm_free(&t->norm);
    spm_norm_free(&t->denorm);
    spm_trie_free(&t->match);
    kiln_free(t);
}

static kiln_status build_table(spm_tok *t, const char *what)
{
    uint64_t cap = 16;
    while (cap < (uint64_t)t->n * 2)
        cap *= 2;
    if (!(t->slot = kiln_malloc(cap * sizeof *t->slot)))
        return kiln_err_set(KILN_ERR_OOM, "spm: out of memory (piece table)");
    memset(t->slot, 0, cap * sizeof *t->slot);
    t->slot_mask = cap - 1;
    for (int32_t id = 0; id < t->n; id++) {
        const char *p = t->text + t->off[id];
        size_t len = t->off[id + 1] - t->off[id];
        if (len == 0)
            return kiln_err_set(KILN_ERR_FORMAT, "%s: piece %d is empty", what, id);
        int32_t dup = spm_lookup(t, p, len);
        if (dup >= 0)
            return kiln_err_set(KILN_ERR_FORMAT, "%s: piece '%.*s' has ids %d and %d", what,
                                (int)(len > 64 ? 64 : len), p, dup, id);
        uint64_t h = spm_hash(p, len), i = h & t->slot_mask;
        while (t->slot[i] != 0)
            i = (i + 1) & t->slot_mask;
        t->slot[i] = (h >> 32) << 32 | (uint32_t)(id + 1);
        if (len > t->max_piece)
            t->max_piece = (uint32_t)len;
    }
    return KILN_OK;
}

kiln_status spm_vocab_finish(spm_tok *t, const char *what)
{
    kiln_status st = build_table(t, what);
    if (st)
        return st;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = spm_lookup(t, name, 6);
    }
    return KILN_OK;
}

/* ---- accessors ------------------------------------------------------------------ */

int64_t spm_vocab_size(const spm_tok *t)
{
    return t->n;
}

const char *spm_piece(const spm_tok *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n)
        return NULL;
    if (len)
        *len = t->off[id + 1] - t->off[id];
    return t->text + t->off[id];
}

int32_t spm_piece_id(const spm_tok *t, const char *piece, size_t len)
{
    return spm_lookup(t, piece, len);
}

bool spm_is_special(const spm_tok *t, int32_t id)
{
    return id >= 0 && id < t->n && (t->attr[id] & (SPM_ATTR_CONTROL | SPM_ATTR_UNKNOWN));
}

int32_t spm_bos_id(const spm_tok *t)
{
    return t->bos;
}

int32_t spm_eos_id(const spm_tok *t)
{
    return t->eos;
}

/* ---- .model flavour: encode -------------------------------------------------------- */

static kiln_status sp_encode(const spm_tok *t, const char *text, size_t len, bool add_special,
                             kiln_ids *out)
{
    kiln_status st;
    kiln_buf norm = {0};
    const char *s;
    size_t slen;
    char *owned = NULL;
    if ((st = spm_utf8_repair(text, len, &s, &slen, &owned)))
        return st;
    if ((st = spm_normalize(&t->norm, t->match.len ? &t->match : NULL, s, slen, &norm)))
        goto done;
    if (add_special && t->bos >= 0 && (st = ids_push(out, t->bos)))
        goto done;
    st = spm_bpe_encode(t, norm.data, norm.len, out);
done:
    buf_free(&norm);
    kiln_free(owned);
    return st;
}

/* Encode text[0..len) and append the ids to *out; add_special prepends BOS
 * (.model: the Llama 2 convention; GGUF: add_bos/add_eos from the file).
 * On error *out is left as it was.  Errors: KILN_ERR_OOM, KILN_ERR_RANGE,
 * KILN_ERR_INVALID_ARG (NULL text with len > 0). */
kiln_status spm_encode(const spm_tok *t, const char *text, size_t len, bool add_special,
                       kiln_ids *out)
{
    size_t start = out->len;
    kiln_status st;
    if (!text && len > 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "spm_encode: NULL text");
    if (!text)
        text = "";
    st = t->flavor == SPM_FLAVOR_LLAMA ? spm_llama_encode(t, text, len, add_special, out)
                                       : sp_encode(t, text, len, add_special, out);
    if (st)
        out->len = start;
    return st;
}

/* ---- .model flavour: decode -------------------------------------------------------- */

static int piece_byte(const spm_tok *t, int32_t id)
{
    const char *p = t->text + t->off[id];
    unsigned v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return (int)v;
}

/* Flush pending byte pieces: valid characters as they are, every other byte
 * as U+FFFD (sentencepiece's ProcessBytePieces). */
static kiln_status flush_bytes(kiln_buf *bytes, kiln_buf *out)
{
    kiln_status st = KILN_OK;
    const uint8_t *u = (const uint8_t *)bytes->data;
    size_t p = 0;
    while (p < bytes->len && !st) {
        size_t n = spm_utf8_valid(u + p, bytes->len - p);
        st = n ? buf_append(out, u + p, n) : buf_append(out, "\xEF\xBF\xBD", 3);
        p += n ? n : 1;
    }
    buf_clear(bytes);
    return st;
}

kiln_status spm_append_unescaped(const char *p, size_t len, kiln_buf *out)
{
    kiln_status st = KILN_OK;
    size_t run = 0;
    for (size_t i = 0; i + SPM_WS_LEN <= len && !st; i++) {
        if (memcmp(p + i, SPM_WS, SPM_WS_LEN) != 0)
            continue;
        if (!(st = buf_append(out, p + run, i - run)))
            st = buf_append_char(out, ' ');
        run = i + SPM_WS_LEN;
        i += SPM_WS_LEN - 1;
    }
    return st ? st : buf_append(out, p + run, len - run);
}

typedef struct sp_dec {
    bool is_bos_ws, bos_ws_seen;
    size_t start;
} sp_dec;

static kiln_status sp_decode_piece(const spm_tok *t, int32_t id, bool skip_special, sp_dec *d,
                                   kiln_buf *out)
{
    const char *p = t->text + t->off[id];
    size_t len = t->off[id + 1] - t->off[id];
    if (d->bos_ws_seen || out->len > d->start)
        d->is_bos_ws = false;
    d->bos_ws_seen = false;
    if (t->type[id] == SPM_TYPE_CONTROL)
        return skip_special ? KILN_OK : buf_append(out, p, len);
    if (t->type[id] == SPM_TYPE_UNKNOWN)
        return buf_append_str(out, t->unk_surface);
    if (d->is_bos_ws && (t->norm.add_dummy_prefix || t->norm.remove_extra_ws) &&
        len >= SPM_WS_LEN && memcmp(p, SPM_WS, SPM_WS_LEN) == 0) {
        p += SPM_WS_LEN;
        len -= SPM_WS_LEN;
        d->bos_ws_seen = !t->norm.remove_extra_ws;
    }
    return spm_append_unescaped(p, len, out);
}

static kiln_status sp_denormalize(const spm_tok *t, size_t start, kiln_buf *out)
{
    kiln_buf tmp = {0};
    kiln_status st = spm_normalize(&t->denorm, NULL, out->data + start, out->len - start, &tmp);
    if (!st) {
        out->len = start;
        st = buf_append(out, tmp.data ? tmp.data : "", tmp.len);
    }
    buf_free(&tmp);
    return st;
}

static kiln_status sp_decode(const spm_tok *t, const int32_t *ids, size_t n, bool skip_special,
                             kiln_buf *out)
{
    kiln_status st = KILN_OK;
    kiln_buf bytes = {0};
    sp_dec d = {true, false, out->len};
    for (size_t i = 0; i < n && !st; i++) {
        int32_t id = ids[i];
        if (t->type[id] == SPM_TYPE_BYTE) {
            st = buf_append_char(&bytes, (char)piece_byte(t, id));
            continue;
        }
        if (!(st = flush_bytes(&bytes, out)))
            st = sp_decode_piece(t, id, skip_special, &d, out);
    }
    if (!st)
        st = flush_bytes(&bytes, out);
    if (!st && t->has_denorm)
        st = sp_denormalize(t, d.start, out);
    buf_free(&bytes);
    return st;
}

/* Append the text of ids[0..n) to *out.  skip_special drops control tokens
 * (the references' default); otherwise their text is written.  On error
 * *out is left as it was.  Errors: KILN_ERR_RANGE (an id out of range),
 * KILN_ERR_OOM. */
kiln_status spm_decode(const spm_tok *t, const int32_t *ids, size_t n, bool skip_special,
                       kiln_buf *out)
{
    size_t start = out->len;
    kiln_status st;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n)
            return kiln_err_set(KILN_ERR_RANGE, "spm: token id %d at position %zu is out of "
                                "range (vocabulary of %d)", ids[i], i, t->n);
    if ((st = buf_reserve(out, 0)))
        return st;
    st = t->flavor == SPM_FLAVOR_LLAMA ? spm_llama_decode(t, ids, n, skip_special, out)
                                       : sp_decode(t, ids, n, skip_special, out);
    if (st)
        out->len = start;
    if (out->data)
        out->data[out->len] = '\0';
    return st;
}
