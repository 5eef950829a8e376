/*
 * arena.h - bump allocator for per-step scratch.
 *
 * An arena hands out memory by bumping an offset inside large chunks and
 * frees everything at once with arena_reset() or arena_free().  A forward
 * pass or a scheduler step takes its scratch from an arena and resets it at
 * the end of the step; because arena_reset() keeps the first chunk, a step
 * whose scratch fits in that chunk allocates nothing from the heap.  Size
 * the first chunk with arena_peak() after a representative step.
 *
 * Pointers from an arena are borrowed: valid until the next arena_reset()
 * or arena_free().  An arena is not thread-safe; give each thread its own.
 */
#ifndef KILN_BASE_ARENA_H
#define KILN_BASE_ARENA_H

#include <stddef.h>

typedef struct arena arena;

/* Chunk size used when arena_create() is given 0. */
#define ARENA_DEFAULT_CHUNK ((size_t)64 * 1024)

/* Make an arena whose chunks hold `chunk_bytes` bytes (0: the default).
 * The first chunk is allocated now.  Returns owned, free with arena_free();
 * NULL when out of memory. */
arena *arena_create(size_t chunk_bytes);

/* Release every chunk and the arena; NULL is a no-op. */
void arena_free(arena *a);

/* `size` bytes aligned to `align` (a power of two; KILN_ASSERT otherwise).
 * A request too large to share a chunk gets a chunk of its own.  size 0
 * returns a non-NULL pointer that must not be dereferenced (it may equal
 * the next block's address).
 * Returns NULL when out of memory or when size + align overflows.
 * Borrowed: valid until arena_reset() or arena_free(). */
void *arena_alloc(arena *a, size_t size, size_t align);

/* arena_alloc() of count * size zeroed bytes; NULL on overflow of
 * count * size or out of memory. */
void *arena_calloc(arena *a, size_t count, size_t size, size_t align);

/* Copy of the first min(n, strlen(s)) bytes of s plus a terminating NUL;
 * NULL when out of memory.  Borrowed like arena_alloc(). */
char *arena_strndup(arena *a, const char *s, size_t n);

/* Forget every allocation: keep the first chunk (emptied), release the
 * others.  Every pointer handed out before becomes invalid. */
void arena_reset(arena *a);

/* Bytes handed out since the last reset, alignment padding included. */
size_t arena_used(const arena *a);

/* Bytes of all chunks the arena holds now. */
size_t arena_capacity(const arena *a);

/* Highest arena_used() since arena_create(). */
size_t arena_peak(const arena *a);

#endif /* KILN_BASE_ARENA_H */
