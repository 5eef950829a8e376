/*
 * alloc.h - the one allocation wrapper: counts bytes, can be told to fail.
 *
 * All host allocations of kiln go through kiln_malloc/kiln_calloc/
 * kiln_realloc/kiln_free so that (1) the bytes in use are known for reports
 * and (2) tests can make the Nth allocation fail and check that every
 * out-of-memory path returns KILN_ERR_OOM cleanly (SQLite's habit).
 * kiln_free(NULL) is a no-op.  Memory from these must be released with
 * kiln_free, never free().
 */
#ifndef KILN_BASE_ALLOC_H
#define KILN_BASE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void *kiln_malloc(size_t size);
void *kiln_calloc(size_t count, size_t size);   /* overflow-checked */
void *kiln_realloc(void *p, size_t size);
void kiln_free(void *p);
char *kiln_strdup(const char *s);
char *kiln_strndup(const char *s, size_t n);

/* Bytes currently allocated through this wrapper (all threads). */
int64_t kiln_alloc_bytes_in_use(void);
/* Highest value kiln_alloc_bytes_in_use() has had. */
int64_t kiln_alloc_bytes_peak(void);

/* Test hook: after `n` more successful allocations, every allocation fails
 * (returns NULL) until called again; n < 0 turns failure injection off. */
void kiln_alloc_fail_after(int64_t n);
/* Test hook: after `after` more successful allocations, the next `count`
 * fail, then allocation works again (a transient shortage). */
void kiln_alloc_fail_burst(int64_t after, int64_t count);

#ifdef __cplusplus
}
#endif

#endif /* KILN_BASE_ALLOC_H */
