/*
 * vocab.c - the hash table of vocab.h.
 *
 * Invariants: slots has a power-of-two size at least twice n_entries; a slot
 * holds entry + 1 or 0; entries are never removed (re-adding a string only
 * changes its id).  by_id is rebuilt lazily: vocab_add keeps it current.
 */
#include "tokenizer/vocab.h"

#include "base/alloc.h"
#include "base/error.h"

#include <string.h>

uint64_t vocab_hash(const void *s, size_t len)
{
    const uint8_t *p = s;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (len * 0xFF51AFD7ED558CCDull);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
        h ^= h >> 29;
        p += 8;
        len -= 8;
    }
    if (len) {
        uint64_t w = 0;
        memcpy(&w, p, len);
        h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    }
    h ^= h >> 32;
    h *= 0xFF51AFD7ED558CCDull;
    return h ^ (h >> 29);
}

void vocab_init(vocab *v)
{
    memset(v, 0, sizeof(*v));
}

static const char *entry_str(const vocab *v, int64_t e, size_t *len)
{
    *len = v->off[e + 1] - v->off[e];
    return v->text.data + v->off[e];
}

static int64_t find_entry(const vocab *v, const char *s, size_t len, size_t *slot)
{
    size_t i, elen;
    if (!v->slots) {
        *slot = 0;
        return -1;
    }
    i = (size_t)vocab_hash(s, len) & v->mask;
    for (;;) {
        uint32_t e = v->slots[i];
        if (e == 0) {
            *slot = i;
            return -1;
        }
        const char *es = entry_str(v, e - 1, &elen);
        if (elen == len && memcmp(es, s, len) == 0) {
            *slot = i;
            return (int64_t)e - 1;
        }
        i = (i + 1) & v->mask;
    }
}

static kiln_status grow_slots(vocab *v)
{
    size_t n = v->slots ? (v->mask + 1) * 2 : 1024, i, len, slot;
    uint32_t *old = v->slots;
    size_t old_n = old ? v->mask + 1 : 0;
    uint32_t *s = kiln_calloc(n, sizeof(uint32_t));
    if (!s)
        return kiln_err_set(KILN_ERR_OOM, "vocab: out of memory");
    v->slots = s;
    v->mask = n - 1;
    for (i = 0; i < old_n; i++) {
        if (old[i]) {
            const char *es = entry_str(v, old[i] - 1, &len);
            find_entry(v, es, len, &slot);
            v->slots[slot] = old[i];
        }
    }
    kiln_free(old);
    return KILN_OK;
}

static kiln_status grow_entries(vocab *v)
{
    int64_t cap = v->cap_entries ? v->cap_entries * 2 : 1024;
    size_t *off = kiln_realloc(v->off, (size_t)(cap + 1) * sizeof(size_t));
    if (!off)
        return kiln_err_set(KILN_ERR_OOM, "vocab: out of memory");
    v->off = off;
    int32_t *ids = kiln_realloc(v->ids, (size_t)cap * sizeof(int32_t));
    if (!ids)
        return kiln_err_set(KILN_ERR_OOM, "vocab: out of memory");
    v->ids = ids;
    v->cap_entries = cap;
    if (v->n_entries == 0)
        v->off[0] = 0;
    return KILN_OK;
}

static kiln_status set_by_id(vocab *v, int32_t id, int64_t e)
{
    if (id >= v->cap_ids) {
        int64_t n = v->cap_ids ? v->cap_ids : 1024, i;
        while (n <= id)
            n *= 2;
        int64_t *b = kiln_realloc(v->by_id, (size_t)n * sizeof(int64_t));
        if (!b)
            return kiln_err_set(KILN_ERR_OOM, "vocab: out of memory");
        for (i = v->cap_ids; i < n; i++)
            b[i] = -1;
        v->by_id = b;
        v->cap_ids = n;
    }
    v->by_id[id] = e;
    if (id >= v->n_ids)
        v->n_ids = (int64_t)id + 1;
    return KILN_OK;
}

kiln_status vocab_add(vocab *v, const char *s, size_t len, int32_t id)
{
    kiln_status st;
    size_t slot;
    int64_t e;
    if (id < 0 || v->n_entries >= INT32_MAX - 1)
        return kiln_err_set(KILN_ERR_RANGE, "vocab: id %d out of range", (int)id);
    if ((size_t)(v->n_entries + 1) * 2 > (v->slots ? v->mask + 1 : 0) && (st = grow_slots(v)))
        return st;
    e = find_entry(v, s, len, &slot);
    if (e >= 0) {
        v->ids[e] = id;
        return set_by_id(v, id, e);
    }
    if (v->n_entries + 1 > v->cap_entries && (st = grow_entries(v)))
        return st;
    if ((st = buf_append(&v->text, s, len)))
        return st;
    e = v->n_entries++;
    v->off[e + 1] = v->text.len;
    v->ids[e] = id;
    v->slots[slot] = (uint32_t)(e + 1);
    if (len > v->max_len)
        v->max_len = len;
    return set_by_id(v, id, e);
}

int32_t vocab_find(const vocab *v, const char *s, size_t len)
{
    size_t slot;
    int64_t e = find_entry(v, s, len, &slot);
    return e < 0 ? -1 : v->ids[e];
}

const char *vocab_piece(const vocab *v, int32_t id, size_t *len)
{
    int64_t e;
    if (id < 0 || id >= v->n_ids || (e = v->by_id[id]) < 0 || v->ids[e] != id)
        return NULL;
    return entry_str(v, e, len);
}

void vocab_free(vocab *v)
{
    buf_free(&v->text);
    kiln_free(v->off);
    kiln_free(v->ids);
    kiln_free(v->by_id);
    kiln_free(v->slots);
    vocab_init(v);
}
