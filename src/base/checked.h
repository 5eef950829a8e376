/*
 * checked.h - overflow-checked size arithmetic for untrusted numbers.
 *
 * Every size, count and offset read from a file or a request goes through
 * these before it sizes an allocation or indexes memory.  They return true
 * when the result fits (and store it), false on overflow.  They are plain
 * functions, not assert()s: release builds keep them.
 */
#ifndef KILN_BASE_CHECKED_H
#define KILN_BASE_CHECKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline bool ck_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

static inline bool ck_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

static inline bool ck_add_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

static inline bool ck_mul_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

static inline bool ck_mul_i64(int64_t a, int64_t b, int64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* True when [off, off+len) lies inside [0, size). */
static inline bool ck_range(uint64_t off, uint64_t len, uint64_t size)
{
    uint64_t end;
    return ck_add_u64(off, len, &end) && end <= size;
}

/* Round x up to a multiple of align (a power of two or any positive value);
 * false on overflow or align == 0. */
static inline bool ck_align_up(uint64_t x, uint64_t align, uint64_t *out)
{
    uint64_t r, t;
    if (align == 0)
        return false;
    r = x % align;
    if (r == 0) {
        *out = x;
        return true;
    }
    if (!ck_add_u64(x, align - r, &t))
        return false;
    *out = t;
    return true;
}

#endif /* KILN_BASE_CHECKED_H */
