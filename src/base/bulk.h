/*
 * bulk.h - reading large files (weights) fast, through io_uring.
 *
 * A reader splits each request into chunks of BULK_CHUNK bytes and keeps up
 * to queue_depth chunk reads in flight.  Short reads, -EINTR and -EAGAIN
 * are retried; a request that reaches past the end of the file fails with
 * KILN_ERR_IO naming the file and the offset, before anything is read.
 *
 * Two interfaces:
 *   - bulk_read(): read exactly len bytes, return when they are in dst.
 *   - bulk_submit() / bulk_wait(): start a request and collect whole
 *     requests as they complete, to overlap reading chunk n + 1 with using
 *     chunk n.  dst must stay valid and untouched until bulk_wait() returns
 *     the request's tag (or bulk_close()).  The reader has no thread of
 *     its own: between calls at most queue_depth chunks are in flight, and
 *     the rest of a request is started inside later bulk_* calls.  Keep
 *     requests near queue_depth * BULK_CHUNK bytes, or call bulk_poll()
 *     now and then, for the reads to overlap other work fully.
 *
 * When io_uring cannot be used (an old kernel, ENOSYS/EPERM in a container
 * or under seccomp, the environment variable KILN_BULK_IO=pread, or the
 * flag BULK_OPEN_PREAD) the reader falls back to pread(): bulk_submit()
 * then reads the whole request before returning and bulk_wait() hands the
 * completed requests back in order.  bulk_uses_io_uring() says which path
 * is in use; the reason for a fallback is logged at debug level.
 *
 * A reader is used by one thread at a time.
 */
#ifndef KILN_BASE_BULK_H
#define KILN_BASE_BULK_H

#include "kiln.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bulk_reader bulk_reader;

/* Bytes per chunk read. */
#define BULK_CHUNK ((size_t)1 << 20)
/* Queue depth used when bulk_open() is given queue_depth <= 0. */
#define BULK_DEFAULT_DEPTH 8
/* Largest queue depth accepted. */
#define BULK_MAX_DEPTH 1024
/* Requests that may be submitted and not yet collected by bulk_wait(). */
#define BULK_MAX_PENDING 64

/* Flags of bulk_open_flags(). */
#define BULK_OPEN_PREAD 1u /* never use io_uring */

/* Open `path` (a regular file) for bulk reads with up to queue_depth chunk
 * reads in flight (<= 0: BULK_DEFAULT_DEPTH).  On success *out is owned:
 * bulk_close() it.  Errors: KILN_ERR_IO (cannot open, not a regular file),
 * KILN_ERR_INVALID_ARG (queue_depth > BULK_MAX_DEPTH), KILN_ERR_OOM; *out
 * is NULL then.  A missing io_uring is not an error. */
kiln_status bulk_open(const char *path, int queue_depth, bulk_reader **out);

/* bulk_open() with BULK_OPEN_* flags. */
kiln_status bulk_open_flags(const char *path, int queue_depth, unsigned flags,
                            bulk_reader **out);

/* Wait for reads still in flight, then close the file and free the
 * reader; NULL is a no-op.  Requests never collected are dropped. */
void bulk_close(bulk_reader *r);

/* Size of the file in bytes when it was opened. */
uint64_t bulk_size(const bulk_reader *r);

/* The path given to bulk_open(); borrowed, valid until bulk_close(). */
const char *bulk_path(const bulk_reader *r);

/* True when reads go through io_uring, false on the pread fallback. */
bool bulk_uses_io_uring(const bulk_reader *r);

/* Read exactly len bytes at `offset` into dst; len 0 succeeds at once.
 * Requests submitted earlier keep going and stay collectable.
 * Errors: KILN_ERR_IO (past the end of the file, a failed or truncated
 * read; the message names file and offset), KILN_ERR_INVALID_ARG (dst NULL
 * with len > 0).  On error dst may hold part of the data. */
kiln_status bulk_read(bulk_reader *r, uint64_t offset, void *dst, size_t len);

/* Start reading len bytes at `offset` into dst; bulk_wait() hands
 * user_tag back when all of them are in dst.  Errors, with nothing started:
 * KILN_ERR_IO (past the end of the file), KILN_ERR_INVALID_ARG (dst NULL
 * with len > 0), KILN_ERR_RANGE (BULK_MAX_PENDING requests not yet
 * collected).  A read error after the start is reported by bulk_wait().
 * KILN_ERR_IO also when io_uring itself fails (io_uring_enter errors other
 * than EINTR/EAGAIN/EBUSY): the reader is unusable then and every later
 * call but bulk_close() fails the same way. */
kiln_status bulk_submit(bulk_reader *r, uint64_t offset, void *dst, size_t len,
                        uint64_t user_tag);

/* Wait until a submitted request is complete, store its tag in *user_tag
 * and return its result: KILN_OK, or KILN_ERR_IO naming file and offset
 * (*user_tag is set then too).  Of several complete requests the earliest
 * submitted is returned first.  KILN_ERR_INVALID_ARG, with *user_tag
 * untouched, when nothing is pending. */
kiln_status bulk_wait(bulk_reader *r, uint64_t *user_tag);

/* Without blocking: collect finished chunk reads and start new ones.
 * Errors: KILN_ERR_IO when io_uring itself failed (not a read error of a
 * request; those go to bulk_wait()). */
kiln_status bulk_poll(bulk_reader *r);

/* Requests submitted and not yet returned by bulk_wait(). */
int bulk_pending(const bulk_reader *r);

#endif /* KILN_BASE_BULK_H */
