/*
 * spm_bpe.c - the score-ordered bigram merge shared by both flavours.
 *
 * The text (already normalized and space-escaped) is split into symbols:
 * one UTF-8 character each, or a whole user-defined piece (SentencePiece
 * flavour; such symbols are frozen and never merge).  Every adjacent pair
 * whose concatenation is a mergeable piece goes into a max-heap keyed by
 * (piece score desc, left index asc).  The loop pops the best pair, skips it
 * when stale, merges right into left and pushes the two new neighbour pairs.
 *
 * Invariants:
 *   1. A heap entry (l, r, size) is live iff sym[l].len + sym[r].len == size
 *      and both are non-empty: a symbol only grows by absorbing its right
 *      neighbour (which becomes empty), so a stale entry always fails this
 *      test.  Live entries are therefore unique per left index, the order is
 *      total on them, and the result does not depend on heap tie-breaking.
 *   2. At most n - 1 initial pairs plus 2 per merge (n - 1 merges) are
 *      pushed: the heap never holds more than 3n entries, allocated once.
 * Cost: O(n log n) hash lookups and heap operations for n characters.
 */
#include "tokenizer/spm_impl.h"

#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"

#include <string.h>

typedef struct bpe_sym {
    int32_t prev, next; /* neighbours in the live chain, -1 at the ends */
    uint32_t start, len;/* bytes of the symbol in the text; len 0: merged away */
    bool freeze;        /* a user-defined piece: never merged */
} bpe_sym;

typedef struct bpe_pair {
    float score;
    int32_t left, right;
    uint32_t size;
} bpe_pair;

/* The reverse merges of UNUSED pieces (SentencePiece): piece id -> length of
 * the left part of the last pair pushed for it.  Open addressing on id. */
typedef struct bpe_rev {
    int32_t *key;
    uint32_t *left_len;
    size_t mask;
} bpe_rev;

typedef struct bpe_run {
    const spm_tok *t;
    const char *s;
    bpe_sym *sym;
    int32_t n_sym;
    bpe_pair *heap;
    size_t n_heap;
    bpe_rev rev;
    size_t rev_cap; /* slots to allocate on first use */
} bpe_run;

/* ---- heap ----------------------------------------------------------------- */

static bool pair_before(const bpe_pair *a, const bpe_pair *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(bpe_run *r, bpe_pair p)
{
    size_t i = r->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &r->heap[parent]))
            break;
        r->heap[i] = r->heap[parent];
        i = parent;
    }
    r->heap[i] = p;
}

static bpe_pair heap_pop(bpe_run *r)
{
    bpe_pair top = r->heap[0], last = r->heap[--r->n_heap];
    size_t i = 0, n = r->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && pair_before(&r->heap[c + 1], &r->heap[c]))
            c++;
        if (!pair_before(&r->heap[c], &last))
            break;
        r->heap[i] = r->heap[c];
        i = c;
    }
    if (n > 0)
        r->heap[i] = last;
    return top;
}

/* ---- reverse merges ---------------------------------------------------------- */

static kiln_status rev_put(bpe_run *r, int32_t id, uint32_t left_len)
{
    if (!r->rev.key) {
        r->rev.key = kiln_malloc(r->rev_cap * sizeof *r->rev.key);
        r->rev.left_len = kiln_malloc(r->rev_cap * sizeof *r->rev.left_len);
        if (!r->rev.key || !r->rev.left_len)
            return kiln_err_set(KILN_ERR_OOM, "spm: out of memory (reverse merges)");
        memset(r->rev.key, 0xff, r->rev_cap * sizeof *r->rev.key);
        r->rev.mask = r->rev_cap - 1;
    }
    size_t i = ((uint32_t)id * 2654435761u) & r->rev.mask;
    while (r->rev.key[i] != -1 && r->rev.key[i] != id)
        i = (i + 1) & r->rev.mask;
    r->rev.key[i] = id;
    r->rev.left_len[i] = left_len;
    return KILN_OK;
}

/* Left length recorded for id, 0 if none. */
static uint32_t rev_get(const bpe_run *r, int32_t id)
{
    if (!r->rev.key)
        return 0;
    size_t i = ((uint32_t)id * 2654435761u) & r->rev.mask;
    while (r->rev.key[i] != -1) {
        if (r->rev.key[i] == id)
            return r->rev.left_len[i];
        i = (i + 1) & r->rev.mask;
    }
    return 0;
}

/* ---- merging ----------------------------------------------------------------- */

/* Id the pair may merge into, -1 if none (flavour rules). */
static int32_t pair_piece(const bpe_run *r, const bpe_sym *a, const bpe_sym *b)
{
    const spm_tok *t = r->t;
    size_t len = (size_t)a->len + b->len;
    if (len > t->max_piece)
        return -1;
    int32_t id = spm_lookup(t, r->s + a->start, len);
    if (id < 0 || t->flavor == SPM_FLAVOR_LLAMA)
        return id;
    if (a->freeze || b->freeze)
        return -1;
    uint8_t ty = t->type[id];
    return ty == SPM_TYPE_NORMAL || ty == SPM_TYPE_USER_DEFINED || ty == SPM_TYPE_UNUSED ? id
                                                                                     : -1;
}

static kiln_status try_pair(bpe_run *r, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return KILN_OK;
    const bpe_sym *a = &r->sym[left], *b = &r->sym[right];
    int32_t id = pair_piece(r, a, b);
    if (id < 0)
        return KILN_OK;
    bpe_pair p = {r->t->score[id], left, right, a->len + b->len};
    heap_push(r, p);
    if (r->t->flavor == SPM_FLAVOR_SP && r->t->type[id] == SPM_TYPE_UNUSED)
        return rev_put(r, id, a->len);
    return KILN_OK;
}

static kiln_status merge_all(bpe_run *r)
{
    kiln_status st;
    for (int32_t i = 1; i < r->n_sym; i++)
        if ((st = try_pair(r, i - 1, i)))
            return st;
    while (r->n_heap > 0) {
        bpe_pair p = heap_pop(r);
        bpe_sym *a = &r->sym[p.left], *b = &r->sym[p.right];
        if (a->len == 0 || b->len == 0 || a->len + b->len != p.size)
            continue;
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (b->next >= 0)
            r->sym[b->next].prev = p.left;
        if ((st = try_pair(r, a->prev, p.left)) || (st = try_pair(r, p.left, a->next)))
            return st;
    }
    return KILN_OK;
}

/* ---- splitting ----------------------------------------------------------------- */

static void split_symbols(bpe_run *r, size_t len)
{
    const spm_tok *t = r->t;
    const uint8_t *u = (const uint8_t *)r->s;
    size_t p = 0;
    int32_t n = 0;
    while (p < len) {
        size_t l = 0;
        int32_t id;
        bool freeze = false;
        if (t->flavor == SPM_FLAVOR_SP && t->match.first_byte[u[p]]) {
            l = spm_trie_longest(&t->match, r->s + p, len - p, &id);
            freeze = l > 0;
        }
        if (l == 0) {
            l = spm_utf8_len(u[p]);
            if (l > len - p)
                l = len - p;
        }
        r->sym[n] = (bpe_sym){n - 1, p + l < len ? n + 1 : -1, (uint32_t)p, (uint32_t)l, freeze};
        n++;
        p += l;
    }
    r->n_sym = n;
}

/* ---- output ---------------------------------------------------------------- */

static int32_t byte_token(const spm_tok *t, uint8_t b)
{
    if (t->byte_id[b] >= 0)
        return t->byte_id[b];
    if (t->flavor == SPM_FLAVOR_LLAMA) {
        char c = (char)b;
        int32_t id = spm_lookup(t, &c, 1);
        if (id >= 0)
            return id;
    }
    return t->unk;
}

/* llama.cpp: a final symbol is its token, or its bytes. */
static kiln_status emit_llama(const bpe_run *r, const bpe_sym *s, kiln_ids *out)
{
    int32_t id = spm_lookup(r->t, r->s + s->start, s->len);
    if (id >= 0)
        return ids_push(out, id);
    for (uint32_t i = 0; i < s->len; i++) {
        int32_t b = byte_token(r->t, (uint8_t)r->s[s->start + i]);
        kiln_status st = b >= 0 ? ids_push(out, b) : KILN_OK;
        if (st)
            return st;
    }
    return KILN_OK;
}

/* SentencePiece: control pieces as they are, unknown pieces as bytes
 * (byte_fallback) or merged with a preceding unknown piece. */
static kiln_status emit_sp_piece(const bpe_run *r, int32_t id, uint32_t start, uint32_t len,
                                 bool *prev_unk, kiln_ids *out)
{
    const spm_tok *t = r->t;
    bool is_unk = t->type[id] == SPM_TYPE_UNKNOWN;
    kiln_status st = KILN_OK;
    if (t->type[id] == SPM_TYPE_CONTROL) {
        st = ids_push(out, id);
    } else if (is_unk && t->byte_fallback) {
        for (uint32_t i = 0; i < len && !st; i++) {
            int32_t b = byte_token(t, (uint8_t)r->s[start + i]);
            st = ids_push(out, b);
        }
    } else if (!(is_unk && *prev_unk)) {
        st = ids_push(out, id);
    }
    *prev_unk = is_unk;
    return st;
}

/* SentencePiece: UNUSED pieces are split back into the pair that formed
 * them (the last one recorded), recursively; explicit stack of spans. */
static kiln_status emit_sp(bpe_run *r, const bpe_sym *s, uint32_t *stack, bool *prev_unk,
                           kiln_ids *out)
{
    size_t top = 0;
    stack[top++] = s->start;
    stack[top++] = s->len;
    while (top > 0) {
        uint32_t len = stack[--top], start = stack[--top];
        int32_t id = spm_lookup(r->t, r->s + start, len);
        if (id < 0)
            id = r->t->unk;
        uint32_t left = r->t->type[id] == SPM_TYPE_UNUSED ? rev_get(r, id) : 0;
        if (left == 0 || left >= len) {
            kiln_status st = emit_sp_piece(r, id, start, len, prev_unk, out);
            if (st)
                return st;
            continue;
        }
        stack[top++] = start + left; /* right part, popped second */
        stack[top++] = len - left;
        stack[top++] = start;
        stack[top++] = left;
    }
    return KILN_OK;
}

static kiln_status emit_all(bpe_run *r, kiln_ids *out)
{
    kiln_status st = KILN_OK;
    uint32_t *stack = NULL;
    bool prev_unk = false;
    if (r->t->flavor == SPM_FLAVOR_SP) {
        /* Each split shortens a span by >= 1 byte: depth <= max_piece. */
        stack = kiln_malloc(((size_t)r->t->max_piece + 2) * 4 * sizeof *stack);
        if (!stack)
            return kiln_err_set(KILN_ERR_OOM, "spm: out of memory (encode)");
    }
    for (int32_t i = r->n_sym > 0 ? 0 : -1; i >= 0 && !st; i = r->sym[i].next)
        st = stack ? emit_sp(r, &r->sym[i], stack, &prev_unk, out)
                   : emit_llama(r, &r->sym[i], out);
    kiln_free(stack);
    return st;
}

kiln_status spm_bpe_encode(const spm_tok *t, const char *s, size_t len, kiln_ids *out)
{
    kiln_status st;
    bpe_run r = {.t = t, .s = s};
    size_t heap_n, rev_n = 16;
    if (len == 0)
        return KILN_OK;
    if (len > UINT32_MAX / 4 || !ck_mul_size(len, 3, &heap_n))
        return kiln_err_set(KILN_ERR_RANGE, "spm: text of %zu bytes is too long to encode", len);
    while (rev_n < heap_n * 2)
        rev_n *= 2;
    r.rev_cap = rev_n;
    r.sym = kiln_malloc(len * sizeof *r.sym);
    r.heap = kiln_malloc(heap_n * sizeof *r.heap);
    if (!r.sym || !r.heap) {
        st = kiln_err_set(KILN_ERR_OOM, "spm: out of memory encoding %zu bytes", len);
        goto done;
    }
    split_symbols(&r, len);
    if ((st = merge_all(&r)))
        goto done;
    st = emit_all(&r, out);
done:
    kiln_free(r.sym);
    kiln_free(r.heap);
    kiln_free(r.rev.key);
    kiln_free(r.rev.left_len);
    return st;
}
