/*
 * fmap.h - read-only file mapping.
 *
 * Model files are mapped once and carved by 64-bit offsets.  The mapping is
 * private and read-only; an empty file maps to data == NULL, size == 0.
 */
#ifndef KILN_BASE_FMAP_H
#define KILN_BASE_FMAP_H

#include "kiln.h"

#include <stddef.h>
#include <stdint.h>

typedef struct fmap fmap;

/* Map `path`.  On success *out is owned by the caller: fmap_close() it.
 * Errors: KILN_ERR_IO (with errno text), KILN_ERR_OOM. */
kiln_status fmap_open(const char *path, fmap **out);

/* Unmap and free; NULL is a no-op. */
void fmap_close(fmap *m);

/* Borrowed views, valid until fmap_close(). */
const uint8_t *fmap_data(const fmap *m);
size_t fmap_size(const fmap *m);
const char *fmap_path(const fmap *m);

/* Hint that [off, off+len) will be read soon (madvise WILLNEED). */
void fmap_prefetch(const fmap *m, size_t off, size_t len);

#endif /* KILN_BASE_FMAP_H */
