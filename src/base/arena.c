/*
 * arena.c - bump allocator; see arena.h.
 *
 * Layout: a->first is the chunk made by arena_create() and is never freed
 * before arena_free().  Every other chunk hangs off first->next.  a->cur is
 * the chunk being bumped: first, or the latest ordinary chunk.
 *
 * Invariants:
 *   1. For every chunk, used <= cap; data[0, used) is handed out.
 *   2. a->used is the sum of chunk->used over all chunks, a->cap the sum of
 *      chunk->cap, a->peak >= a->used.
 *   3. A request that does not fit in a->cur and whose worst-case footprint
 *      (size + align - 1) exceeds a quarter of chunk_bytes gets a chunk of
 *      exactly that footprint, and a->cur stays where it is, so the unused
 *      tail of a->cur keeps serving small requests.  Smaller requests open
 *      a new ordinary chunk of chunk_bytes, which becomes a->cur.
 */
#include "base/arena.h"

#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t cap;  /* bytes of data[] */
    size_t used; /* bytes of data[] handed out, padding included */
    size_t reserved; /* keeps the header a multiple of 16 bytes */
    unsigned char data[];
} arena_chunk;

struct arena {
    arena_chunk *first;
    arena_chunk *cur;
    size_t chunk_bytes;
    size_t used;
    size_t cap;
    size_t peak;
};

static arena_chunk *arena_chunk_new(size_t cap)
{
    size_t total;
    arena_chunk *c;

    if (!ck_add_size(sizeof *c, cap, &total))
        return NULL;
    c = kiln_malloc(total);
    if (!c)
        return NULL;
    c->next = NULL;
    c->cap = cap;
    c->used = 0;
    c->reserved = 0;
    return c;
}

/* Carve size bytes at `align` from c, or NULL when they do not fit. */
static void *arena_chunk_take(arena *a, arena_chunk *c, size_t size, size_t align)
{
    uintptr_t at = (uintptr_t)(c->data + c->used);
    size_t pad = (size_t)(-at & (uintptr_t)(align - 1));
    size_t room = c->cap - c->used;
    void *p;

    if (pad > room || size > room - pad)
        return NULL;
    p = c->data + c->used + pad;
    c->used += pad + size;
    a->used += pad + size;
    if (a->used > a->peak)
        a->peak = a->used;
    return p;
}

arena *arena_create(size_t chunk_bytes)
{
    arena *a = kiln_calloc(1, sizeof *a);

    if (!a)
        return NULL;
    a->chunk_bytes = chunk_bytes ? chunk_bytes : ARENA_DEFAULT_CHUNK;
    a->first = arena_chunk_new(a->chunk_bytes);
    if (!a->first)
        goto err;
    a->cur = a->first;
    a->cap = a->chunk_bytes;
    return a;
err:
    kiln_free(a);
    return NULL;
}

static void arena_free_extra(arena *a)
{
    arena_chunk *c = a->first->next;

    while (c) {
        arena_chunk *next = c->next;
        a->cap -= c->cap;
        kiln_free(c);
        c = next;
    }
    a->first->next = NULL;
}

void arena_free(arena *a)
{
    if (!a)
        return;
    arena_free_extra(a);
    kiln_free(a->first);
    kiln_free(a);
}

void *arena_alloc(arena *a, size_t size, size_t align)
{
    size_t footprint;
    arena_chunk *c;
    bool big;
    void *p;

    KILN_ASSERT(align != 0 && (align & (align - 1)) == 0);
    p = arena_chunk_take(a, a->cur, size, align);
    if (p)
        return p;
    if (!ck_add_size(size, align - 1, &footprint))
        return NULL;
    /* Invariant 3: big requests get their own chunk, small ones a new cur. */
    big = footprint > a->chunk_bytes / 4;
    c = arena_chunk_new(big ? footprint : a->chunk_bytes);
    if (!c)
        return NULL;
    c->next = a->first->next;
    a->first->next = c;
    a->cap += c->cap;
    if (!big)
        a->cur = c;
    p = arena_chunk_take(a, c, size, align);
    KILN_ASSERT(p != NULL);
    return p;
}

void *arena_calloc(arena *a, size_t count, size_t size, size_t align)
{
    size_t total;
    void *p;

    if (!ck_mul_size(count, size, &total))
        return NULL;
    p = arena_alloc(a, total, align);
    if (p)
        memset(p, 0, total);
    return p;
}

char *arena_strndup(arena *a, const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d;

    if (len == SIZE_MAX)
        return NULL;
    d = arena_alloc(a, len + 1, 1);
    if (!d)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

void arena_reset(arena *a)
{
    arena_free_extra(a);
    a->first->used = 0;
    a->cur = a->first;
    a->used = 0;
}

size_t arena_used(const arena *a) { return a->used; }
size_t arena_capacity(const arena *a) { return a->cap; }
size_t arena_peak(const arena *a) { return a->peak; }
