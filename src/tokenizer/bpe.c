/*
 * bpe.c - the BPE model of bpe.h.
 *
 * Invariants:
 *   1. merges: open-addressing table keyed by (left id << 32 | right id),
 *      value (rank, merged id); a later merge of the same pair replaces the
 *      earlier one (as a map built from the merge list does).
 *   2. In a word, symbols[] keeps its initial order; a merge grows the left
 *      symbol and empties the right one (len 0) and unlinks it, so live
 *      symbols in array order are the word's tokens.
 *   3. A heap entry is stale when its left symbol is empty, has no right
 *      neighbour, or the pair there no longer merges to the entry's id
 *      (checked without a lookup when the pair is the one pushed).
 */
#include "tokenizer/bpe.h"

#include "base/alloc.h"
#include "base/error.h"
#include "tokenizer/hfjson.h"
#include "tokenizer/unicode.h"

#include <stdio.h>
#include <string.h>

typedef struct bpe_merge {
    uint64_t key; /* 0 = empty slot (ids are offset by one in the key) */
    uint32_t rank;
    int32_t id;
} bpe_merge;

struct bpe {
    vocab v;
    bpe_merge *m;
    size_t m_mask, m_count;
    uint32_t n_merges;
    char *unk, *prefix, *suffix;
    size_t prefix_len, suffix_len;
    int32_t unk_id;
    bool fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_id[256]; /* <0xNN>, -1 if absent */
    int32_t *bmp_id;      /* id of each single BMP character, -1 if none */
};

typedef struct bpe_sym {
    int32_t id;
    int32_t prev, next;
    uint32_t len;
} bpe_sym;

typedef struct bpe_cand {
    uint32_t rank;
    uint32_t pos;
    int32_t id;
    int32_t lid, rid; /* the pair when pushed */
} bpe_cand;

struct bpe_scratch {
    bpe_sym *sym;
    size_t n, cap;
    bpe_cand *heap;
    size_t hn, hcap;
    kiln_buf tmp;
};

/* ---- merge table -------------------------------------------------------------- */

static uint64_t pair_key(int32_t l, int32_t r)
{
    return ((uint64_t)(uint32_t)(l + 1) << 32) | (uint32_t)(r + 1);
}

static size_t key_slot(uint64_t k, size_t mask)
{
    k *= 0x9E3779B97F4A7C15ull;
    return (size_t)(k >> 29) & mask;
}

static const bpe_merge *merge_find(const bpe *b, int32_t l, int32_t r)
{
    uint64_t k = pair_key(l, r);
    size_t i;
    if (!b->m)
        return NULL;
    for (i = key_slot(k, b->m_mask);; i = (i + 1) & b->m_mask) {
        if (b->m[i].key == k)
            return &b->m[i];
        if (b->m[i].key == 0)
            return NULL;
    }
}

static kiln_status merge_grow(bpe *b)
{
    size_t n = b->m ? (b->m_mask + 1) * 2 : 4096, i, j;
    bpe_merge *nm = kiln_calloc(n, sizeof(*nm)), *old = b->m;
    if (!nm)
        return kiln_err_set(KILN_ERR_OOM, "bpe: out of memory");
    for (i = 0; old && i <= b->m_mask; i++) {
        if (!old[i].key)
            continue;
        for (j = key_slot(old[i].key, n - 1); nm[j].key; j = (j + 1) & (n - 1))
            ;
        nm[j] = old[i];
    }
    kiln_free(old);
    b->m = nm;
    b->m_mask = n - 1;
    return KILN_OK;
}

static kiln_status merge_put(bpe *b, int32_t l, int32_t r, uint32_t rank, int32_t id)
{
    uint64_t k = pair_key(l, r);
    size_t i;
    kiln_status rc;
    if ((b->m_count + 1) * 2 > (b->m ? b->m_mask + 1 : 0) && (rc = merge_grow(b)))
        return rc;
    for (i = key_slot(k, b->m_mask); b->m[i].key && b->m[i].key != k; i = (i + 1) & b->m_mask)
        ;
    if (!b->m[i].key)
        b->m_count++;
    b->m[i] = (bpe_merge){k, rank, id};
    return KILN_OK;
}

/* ---- building ------------------------------------------------------------------ */

/* A copy of an optional string; NULL for NULL or "" (an empty prefix or
 * suffix spells nothing, so it is the same as none). */
static char *dup_opt(const char *s, size_t *len, bool *oom)
{
    char *d;
    *len = s ? strlen(s) : 0;
    if (!s || !*s)
        return NULL;
    if (!(d = kiln_strdup(s)))
        *oom = true;
    return d;
}

kiln_status bpe_new(const bpe_opts *o, bpe **out)
{
    bool oom = false;
    size_t unk_len;
    bpe *b = kiln_calloc(1, sizeof(*b));
    *out = NULL;
    if (!b)
        return kiln_err_set(KILN_ERR_OOM, "bpe: out of memory");
    vocab_init(&b->v);
    b->unk = dup_opt(o->unk_token, &unk_len, &oom);
    b->prefix = dup_opt(o->prefix, &b->prefix_len, &oom);
    b->suffix = dup_opt(o->suffix, &b->suffix_len, &oom);
    b->fuse_unk = o->fuse_unk;
    b->byte_fallback = o->byte_fallback;
    b->ignore_merges = o->ignore_merges;
    b->unk_id = -1;
    if (oom) {
        bpe_free(b);
        return kiln_err_set(KILN_ERR_OOM, "bpe: out of memory");
    }
    *out = b;
    return KILN_OK;
}

kiln_status bpe_add_token(bpe *b, const char *s, size_t len, int32_t id)
{
    return vocab_add(&b->v, s, len, id);
}

kiln_status bpe_add_merge(bpe *b, const char *l, size_t ll, const char *r, size_t rl)
{
    int32_t lid = vocab_find(&b->v, l, ll), rid = vocab_find(&b->v, r, rl), mid;
    size_t skip = b->prefix_len < rl ? b->prefix_len : rl;
    kiln_buf *t;
    kiln_buf joined = {0};
    if (lid < 0 || rid < 0)
        return kiln_err_set(KILN_ERR_FORMAT, "bpe: merge token '%.*s' is not in the vocab",
                            (int)(lid < 0 ? ll : rl), lid < 0 ? l : r);
    t = &joined;
    if (buf_append(t, l, ll) || buf_append(t, r + skip, rl - skip)) {
        buf_free(t);
        return kiln_err_set(KILN_ERR_OOM, "bpe: out of memory");
    }
    mid = vocab_find(&b->v, t->data, t->len);
    if (mid < 0) {
        kiln_status rc = kiln_err_set(KILN_ERR_FORMAT, "bpe: merged token '%s' is not in the vocab",
                                      t->data);
        buf_free(t);
        return rc;
    }
    buf_free(t);
    return merge_put(b, lid, rid, b->n_merges++, mid);
}

kiln_status bpe_finish(bpe *b)
{
    char name[8];
    unsigned i;
    if (b->unk) {
        b->unk_id = vocab_find(&b->v, b->unk, strlen(b->unk));
        if (b->unk_id < 0)
            return kiln_err_set(KILN_ERR_FORMAT, "bpe: unk_token '%s' is not in the vocab", b->unk);
    }
    for (i = 0; i < 256; i++) {
        snprintf(name, sizeof(name), "<0x%02X>", i);
        b->byte_id[i] = vocab_find(&b->v, name, 6);
    }
    if (!(b->bmp_id = kiln_malloc(0x10000 * sizeof(int32_t))))
        return kiln_err_set(KILN_ERR_OOM, "bpe: out of memory");
    for (i = 0; i < 0x10000; i++) {
        char u[4];
        size_t n = uni_encode(i, u);
        b->bmp_id[i] = (i >= 0xD800 && i < 0xE000) ? -1 : vocab_find(&b->v, u, n);
    }
    return KILN_OK;
}

void bpe_free(bpe *b)
{
    if (!b)
        return;
    vocab_free(&b->v);
    kiln_free(b->m);
    kiln_free(b->unk);
    kiln_free(b->prefix);
    kiln_free(b->suffix);
    kiln_free(b->bmp_id);
    kiln_free(b);
}

const vocab *bpe_vocab(const bpe *b)
{
    return &b->v;
}

bool bpe_byte_fallback(const bpe *b)
{
    return b->byte_fallback;
}

/* ---- tokenizing a word ----------------------------------------------------------- */

kiln_status bpe_scratch_new(bpe_scratch **out)
{
    *out = kiln_calloc(1, sizeof(bpe_scratch));
    return *out ? KILN_OK : kiln_err_set(KILN_ERR_OOM, "bpe: out of memory");
}

void bpe_scratch_free(bpe_scratch *sc)
{
    if (!sc)
        return;
    kiln_free(sc->sym);
    kiln_free(sc->heap);
    buf_free(&sc->tmp);
    kiln_free(sc);
}

static kiln_status sym_add(bpe_scratch *sc, int32_t id, size_t len)
{
    if (sc->n == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 64;
        bpe_sym *v = kiln_realloc(sc->sym, cap * sizeof(*v));
        if (!v)
            return kiln_err_set(KILN_ERR_OOM, "bpe: out of memory");
        sc->sym = v;
        sc->cap = cap;
    }
    int32_t k = (int32_t)sc->n;
    sc->sym[k] = (bpe_sym){id, k - 1, -1, (uint32_t)len};
    if (k > 0)
        sc->sym[k - 1].next = k;
    sc->n++;
    return KILN_OK;
}

static bool cand_less(const bpe_cand *a, const bpe_cand *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static kiln_status heap_push(bpe_scratch *sc, uint32_t rank, uint32_t pos, int32_t id,
                             int32_t lid, int32_t rid)
{
    size_t i;
    if (sc->hn == sc->hcap) {
        size_t cap = sc->hcap ? sc->hcap * 2 : 64;
        bpe_cand *v = kiln_realloc(sc->heap, cap * sizeof(*v));
        if (!v)
            return kiln_err_set(KILN_ERR_OOM, "bpe: out of memory");
        sc->heap = v;
        sc->hcap = cap;
    }
    bpe_cand c = {rank, pos, id, lid, rid};
    for (i = sc->hn++; i > 0; i = (i - 1) / 2) {
        if (!cand_less(&c, &sc->heap[(i - 1) / 2]))
            break;
        sc->heap[i] = sc->heap[(i - 1) / 2];
    }
    sc->heap[i] = c;
    return KILN_OK;
}

static bpe_cand heap_pop(bpe_scratch *sc)
{
    bpe_cand top = sc->heap[0], last = sc->heap[--sc->hn];
    size_t i = 0, n = sc->hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && cand_less(&sc->heap[c + 1], &sc->heap[c]))
            c++;
        if (!cand_less(&sc->heap[c], &last))
            break;
        sc->heap[i] = sc->heap[c];
        i = c;
    }
    if (n)
        sc->heap[i] = last;
    return top;
}

static kiln_status push_pair(const bpe *b, bpe_scratch *sc, int32_t left)
{
    int32_t right = sc->sym[left].next;
    const bpe_merge *m;
    if (left < 0 || right < 0)
        return KILN_OK;
    m = merge_find(b, sc->sym[left].id, sc->sym[right].id);
    return m ? heap_push(sc, m->rank, (uint32_t)left, m->id, sc->sym[left].id, sc->sym[right].id)
             : KILN_OK;
}

static kiln_status merge_all(const bpe *b, bpe_scratch *sc)
{
    kiln_status rc;
    int32_t k;
    sc->hn = 0;
    for (k = 0; k + 1 < (int32_t)sc->n; k++)
        if ((rc = push_pair(b, sc, k)))
            return rc;
    while (sc->hn) {
        bpe_cand top = heap_pop(sc);
        bpe_sym *l = &sc->sym[top.pos];
        if (l->len == 0 || l->next < 0)
            continue;
        bpe_sym *r = &sc->sym[l->next];
        if (l->id != top.lid || r->id != top.rid) {
            /* the pair changed: still valid if it merges to the same id */
            const bpe_merge *m = merge_find(b, l->id, r->id);
            if (!m || m->id != top.id)
                continue;
        }
        l->id = top.id;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0)
            sc->sym[r->next].prev = (int32_t)top.pos;
        if ((rc = push_pair(b, sc, l->prev)) || (rc = push_pair(b, sc, (int32_t)top.pos)))
            return rc;
    }
    return KILN_OK;
}

/* Id of the character s[0..n) (code point c) at a word's start/end, with
 * prefix/suffix as configured; the spelled string is left in sc->tmp when
 * it differs from the character. -1 if not in the vocab. */
static int32_t char_id(const bpe *b, bpe_scratch *sc, const char *s, size_t n, uint32_t c,
                       bool first, bool last, bool *spelled)
{
    bool pre = b->prefix && !first, suf = b->suffix && last;
    *spelled = pre || suf;
    if (!*spelled)
        return c < 0x10000 ? b->bmp_id[c] : vocab_find(&b->v, s, n);
    buf_clear(&sc->tmp);
    if ((pre && buf_append(&sc->tmp, b->prefix, b->prefix_len)) || buf_append(&sc->tmp, s, n) ||
        (suf && buf_append(&sc->tmp, b->suffix, b->suffix_len)))
        return -2;
    return vocab_find(&b->v, sc->tmp.data, sc->tmp.len);
}

/* Byte fallback for the spelled character: true when every byte has a
 * <0xNN> token (they are then added). */
static kiln_status add_bytes(const bpe *b, bpe_scratch *sc, const char *s, size_t n, bool *ok)
{
    size_t i;
    kiln_status rc;
    *ok = false;
    for (i = 0; i < n; i++)
        if (b->byte_id[(uint8_t)s[i]] < 0)
            return KILN_OK;
    for (i = 0; i < n; i++)
        if ((rc = sym_add(sc, b->byte_id[(uint8_t)s[i]], 1)))
            return rc;
    *ok = true;
    return KILN_OK;
}

static kiln_status build_word(const bpe *b, bpe_scratch *sc, const char *s, size_t len)
{
    size_t i = 0, start, unk_len = 0;
    bool unk = false, spelled, ok;
    kiln_status rc;
    sc->n = 0;
    while (i < len) {
        start = i;
        uint32_t c = uni_next(s, len, &i);
        int32_t id = char_id(b, sc, s + start, i - start, c, start == 0, i == len, &spelled);
        if (id == -2)
            return kiln_err_set(KILN_ERR_OOM, "bpe: out of memory");
        if (id >= 0) {
            if (unk && (rc = sym_add(sc, b->unk_id, unk_len)))
                return rc;
            unk = false;
            if ((rc = sym_add(sc, id, i - start)))
                return rc;
            continue;
        }
        if (b->byte_fallback) {
            rc = spelled ? add_bytes(b, sc, sc->tmp.data, sc->tmp.len, &ok)
                         : add_bytes(b, sc, s + start, i - start, &ok);
            if (rc)
                return rc;
            if (ok)
                continue;
        }
        if (b->unk_id < 0)
            continue;
        if (unk && b->fuse_unk) {
            unk_len += i - start;
            continue;
        }
        if (unk && (rc = sym_add(sc, b->unk_id, unk_len)))
            return rc;
        unk = true;
        unk_len = i - start;
    }
    return unk ? sym_add(sc, b->unk_id, unk_len) : KILN_OK;
}

kiln_status bpe_encode(const bpe *b, bpe_scratch *sc, const char *s, size_t len, kiln_ids *out)
{
    kiln_status rc;
    size_t k;
    if (len == 0)
        return KILN_OK;
    if (b->ignore_merges) {
        int32_t id = vocab_find(&b->v, s, len);
        if (id >= 0)
            return ids_push(out, id);
    }
    if ((rc = build_word(b, sc, s, len)) || (rc = merge_all(b, sc)))
        return rc;
    if ((rc = ids_reserve(out, sc->n)))
        return rc;
    for (k = 0; k < sc->n; k++)
        if (sc->sym[k].len)
            out->data[out->len++] = sc->sym[k].id;
    return KILN_OK;
}

/* ---- tokenizer.json ------------------------------------------------------------------ */

static kiln_status json_merges(bpe *b, const json_t *merges)
{
    size_t i;
    json_t *m;
    kiln_status rc;
    json_array_foreach(merges, i, m) {
        if (json_is_string(m)) {
            const char *s = json_string_value(m);
            size_t n = json_string_length(m);
            const char *sp = memchr(s, ' ', n);
            if (!sp)
                return kiln_err_set(KILN_ERR_FORMAT, "bpe: merge %zu '%s' has no space", i, s);
            rc = bpe_add_merge(b, s, (size_t)(sp - s), sp + 1, n - (size_t)(sp - s) - 1);
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            json_t *l = json_array_get(m, 0), *r = json_array_get(m, 1);
            rc = bpe_add_merge(b, json_string_value(l), json_string_length(l),
                               json_string_value(r), json_string_length(r));
        } else {
            return kiln_err_set(KILN_ERR_FORMAT, "bpe: merge %zu is not \"a b\" or [a, b]", i);
        }
        if (rc)
            return rc;
    }
    return KILN_OK;
}

static kiln_status json_vocab(bpe *b, const json_t *v)
{
    const char *k;
    json_t *id;
    kiln_status rc;
    if (!json_is_object(v))
        return kiln_err_set(KILN_ERR_FORMAT, "bpe: \"vocab\" is not an object");
    json_object_foreach((json_t *)v, k, id) {
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) > INT32_MAX - 1)
            return kiln_err_set(KILN_ERR_FORMAT, "bpe: vocab entry '%s' has a bad id", k);
        if ((rc = bpe_add_token(b, k, strlen(k), (int32_t)json_integer_value(id))))
            return rc;
    }
    return KILN_OK;
}

kiln_status bpe_from_json(const json_t *model, bpe **out)
{
    bpe_opts o = {0};
    json_t *dropout = json_object_get(model, "dropout"), *merges = json_object_get(model, "merges");
    kiln_status rc;
    bpe *b;
    *out = NULL;
    if (json_is_number(dropout) && json_number_value(dropout) != 0.0)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "bpe: dropout %g is not supported",
                            json_number_value(dropout));
    o.unk_token = hfj_str(model, "unk_token", NULL);
    o.prefix = hfj_str(model, "continuing_subword_prefix", NULL);
    o.suffix = hfj_str(model, "end_of_word_suffix", NULL);
    o.fuse_unk = hfj_bool(model, "fuse_unk", false);
    o.byte_fallback = hfj_bool(model, "byte_fallback", false);
    o.ignore_merges = hfj_bool(model, "ignore_merges", false);
    if ((rc = bpe_new(&o, &b)))
        return rc;
    rc = json_vocab(b, json_object_get(model, "vocab"));
    if (!rc && merges && !json_is_array(merges))
        rc = kiln_err_set(KILN_ERR_FORMAT, "bpe: \"merges\" is not an array");
    if (!rc && merges)
        rc = json_merges(b, merges);
    if (!rc)
        rc = bpe_finish(b);
    if (rc) {
        bpe_free(b);
        return rc;
    }
    *out = b;
    return KILN_OK;
}
