/*
 * buf.h - growable byte buffers and int32 vectors.
 *
 * Output of variable size (tokenized ids, decoded text, formatted prompts,
 * JSON responses) is built in one of these and handed over in one piece.
 * Both own their storage (kiln_malloc); *_free releases it and leaves the
 * struct empty and reusable; a zeroed struct is a valid empty buffer.
 * Appends return KILN_ERR_OOM (message set) when growth fails, leaving the
 * contents as they were.
 */
#ifndef KILN_BASE_BUF_H
#define KILN_BASE_BUF_H

#include "base/error.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kiln_buf {
    char *data;    /* NUL-terminated when len > 0 or after any append */
    size_t len;
    size_t cap;
} kiln_buf;

typedef struct kiln_ids {
    int32_t *data;
    size_t len;
    size_t cap;
} kiln_ids;

kiln_status buf_reserve(kiln_buf *b, size_t extra);
kiln_status buf_append(kiln_buf *b, const void *p, size_t n);
kiln_status buf_append_str(kiln_buf *b, const char *s);
kiln_status buf_append_char(kiln_buf *b, char c);
kiln_status buf_printf(kiln_buf *b, const char *fmt, ...) KILN_PRINTF(2, 3);
kiln_status buf_vprintf(kiln_buf *b, const char *fmt, va_list ap);
void buf_clear(kiln_buf *b);                 /* len = 0, keeps the storage */
void buf_free(kiln_buf *b);
/* Hand the storage over: returns data (owned by the caller, kiln_free; never
 * NULL on success), leaves b empty.  NULL on OOM. */
char *buf_detach(kiln_buf *b);

kiln_status ids_reserve(kiln_ids *v, size_t extra);
kiln_status ids_push(kiln_ids *v, int32_t id);
kiln_status ids_append(kiln_ids *v, const int32_t *ids, size_t n);
void ids_clear(kiln_ids *v);
void ids_free(kiln_ids *v);

#endif /* KILN_BASE_BUF_H */
