/*
 * alloc.c - counting allocator; see alloc.h.
 *
 * Each block carries a 16-byte header holding its size, so frees can be
 * counted without a side table; 16 keeps the user pointer aligned for any
 * scalar type.
 */
#include "base/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define ALLOC_HDR 16

static atomic_llong alloc_in_use;
static atomic_llong alloc_peak;
static atomic_llong alloc_fail_countdown = -1;
static atomic_llong alloc_fail_left = -1;   /* failures once the countdown is 0; -1: all */

static int alloc_should_fail(void)
{
    long long left = atomic_load(&alloc_fail_countdown);
    while (left >= 0) {
        if (left == 0) {
            long long n = atomic_load(&alloc_fail_left);
            if (n < 0)
                return 1;
            while (n > 0)
                if (atomic_compare_exchange_weak(&alloc_fail_left, &n, n - 1))
                    return 1;
            atomic_store(&alloc_fail_countdown, -1); /* the burst is over */
            return 0;
        }
        if (atomic_compare_exchange_weak(&alloc_fail_countdown, &left, left - 1))
            return 0;
    }
    return 0;
}

static void alloc_account(long long delta)
{
    long long now = atomic_fetch_add(&alloc_in_use, delta) + delta;
    long long peak = atomic_load(&alloc_peak);
    while (now > peak && !atomic_compare_exchange_weak(&alloc_peak, &peak, now)) {
    }
}

void *kiln_malloc(size_t size)
{
    if (size > SIZE_MAX - ALLOC_HDR || alloc_should_fail())
        return NULL;
    unsigned char *p = malloc(size + ALLOC_HDR);
    if (!p)
        return NULL;
    memcpy(p, &size, sizeof size);
    alloc_account((long long)size);
    return p + ALLOC_HDR;
}

void *kiln_calloc(size_t count, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(count, size, &total))
        return NULL;
    void *p = kiln_malloc(total);
    if (p)
        memset(p, 0, total);
    return p;
}

void *kiln_realloc(void *p, size_t size)
{
    if (!p)
        return kiln_malloc(size);
    if (size > SIZE_MAX - ALLOC_HDR || alloc_should_fail())
        return NULL;
    unsigned char *base = (unsigned char *)p - ALLOC_HDR;
    size_t old;
    memcpy(&old, base, sizeof old);
    unsigned char *nb = realloc(base, size + ALLOC_HDR);
    if (!nb)
        return NULL;
    memcpy(nb, &size, sizeof size);
    alloc_account((long long)size - (long long)old);
    return nb + ALLOC_HDR;
}

void kiln_free(void *p)
{
    if (!p)
        return;
    unsigned char *base = (unsigned char *)p - ALLOC_HDR;
    size_t size;
    memcpy(&size, base, sizeof size);
    alloc_account(-(long long)size);
    free(base);
}

char *kiln_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = kiln_malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

char *kiln_strdup(const char *s) { return kiln_strndup(s, SIZE_MAX - ALLOC_HDR - 1); }

int64_t kiln_alloc_bytes_in_use(void) { return atomic_load(&alloc_in_use); }
int64_t kiln_alloc_bytes_peak(void) { return atomic_load(&alloc_peak); }
void kiln_alloc_fail_after(int64_t n)
{
    atomic_store(&alloc_fail_left, -1);
    atomic_store(&alloc_fail_countdown, n < 0 ? -1 : n);
}

void kiln_alloc_fail_burst(int64_t after, int64_t count)
{
    atomic_store(&alloc_fail_left, count < 0 ? 0 : count);
    atomic_store(&alloc_fail_countdown, after < 0 ? -1 : after);
}
