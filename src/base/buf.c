/* buf.c - growable byte buffers and int32 vectors; see buf.h. */
#include "base/buf.h"

#include "base/alloc.h"
#include "base/checked.h"

#include <stdio.h>
#include <string.h>

/* Grow storage of `elem` bytes per item so that len + extra (+1 spare for a
 * NUL) fit; doubling keeps appends amortised O(1). */
static kiln_status grow(void **data, size_t *cap, size_t len, size_t extra, size_t elem)
{
    size_t need, bytes;
    if (!ck_add_size(len, extra, &need) || !ck_add_size(need, 1, &need))
        return kiln_err_set(KILN_ERR_RANGE, "buffer size overflows");
    if (need <= *cap)
        return KILN_OK;
    size_t ncap = *cap ? *cap : 64;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    if (!ck_mul_size(ncap, elem, &bytes))
        return kiln_err_set(KILN_ERR_RANGE, "buffer size overflows");
    void *p = kiln_realloc(*data, bytes);
    if (!p)
        return kiln_err_set(KILN_ERR_OOM, "out of memory growing a buffer to %zu bytes", bytes);
    *data = p;
    *cap = ncap;
    return KILN_OK;
}

kiln_status buf_reserve(kiln_buf *b, size_t extra)
{
    return grow((void **)&b->data, &b->cap, b->len, extra, 1);
}

kiln_status buf_append(kiln_buf *b, const void *p, size_t n)
{
    kiln_status st = buf_reserve(b, n);
    if (st)
        return st;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return KILN_OK;
}

kiln_status buf_append_str(kiln_buf *b, const char *s) { return buf_append(b, s, strlen(s)); }

kiln_status buf_append_char(kiln_buf *b, char c) { return buf_append(b, &c, 1); }

kiln_status buf_vprintf(kiln_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "bad format string");
    kiln_status st = buf_reserve(b, (size_t)n);
    if (st)
        return st;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return KILN_OK;
}

kiln_status buf_printf(kiln_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kiln_status st = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return st;
}

void buf_clear(kiln_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void buf_free(kiln_buf *b)
{
    kiln_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *buf_detach(kiln_buf *b)
{
    if (!b->data && buf_reserve(b, 0))
        return NULL;
    char *d = b->data;
    d[b->len] = '\0';
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}

kiln_status ids_reserve(kiln_ids *v, size_t extra)
{
    return grow((void **)&v->data, &v->cap, v->len, extra, sizeof(int32_t));
}

kiln_status ids_push(kiln_ids *v, int32_t id) { return ids_append(v, &id, 1); }

kiln_status ids_append(kiln_ids *v, const int32_t *ids, size_t n)
{
    kiln_status st = ids_reserve(v, n);
    if (st)
        return st;
    if (n)
        memcpy(v->data + v->len, ids, n * sizeof *ids);
    v->len += n;
    return KILN_OK;
}

void ids_clear(kiln_ids *v) { v->len = 0; }

void ids_free(kiln_ids *v)
{
    kiln_free(v->data);
    v->data = NULL;
    v->len = v->cap = 0;
}
