/*
 * kiln.h - the public C API of kiln.
 *
 * Everything a front end (the CLI, the HTTP server, an embedding program)
 * needs is declared here: status codes and the error text that goes with
 * them.  Handles are opaque; counts and byte offsets are int64_t/size_t.
 * Later layers (engine, model) add their handles to this header.
 */
#ifndef KILN_H
#define KILN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_VERSION_MAJOR 0
#define KILN_VERSION_MINOR 1
#define KILN_VERSION_PATCH 0
#define KILN_VERSION_STRING "0.1.0"

/* Every fallible function returns one of these.  KILN_OK is zero so that
 * `if (st) goto err;` reads naturally.  The human-readable message with
 * context ("gguf: tensor 'x' data ends at ...") is kept per thread and read
 * with kiln_last_error(). */
typedef enum kiln_status {
    KILN_OK = 0,
    KILN_ERR_INVALID_ARG,  /* a caller passed something meaningless        */
    KILN_ERR_IO,           /* open/read/mmap/stat failed                    */
    KILN_ERR_FORMAT,       /* bytes from a file or request are malformed    */
    KILN_ERR_UNSUPPORTED,  /* well-formed but not something kiln runs       */
    KILN_ERR_OOM,          /* an allocation failed                          */
    KILN_ERR_NOT_FOUND,    /* a named key, tensor or file does not exist    */
    KILN_ERR_RANGE,        /* a size/offset/count overflows or is out of range */
    KILN_ERR_DEVICE,       /* CUDA / driver / accelerator failure           */
    KILN_ERR_INTERNAL,     /* a bug: an invariant did not hold              */
    KILN_STATUS_COUNT
} kiln_status;

/* Short description of a status ("malformed input", "i/o error", ...).
 * Never NULL; static storage. */
const char *kiln_status_str(kiln_status st);

/* The message of the last error set on this thread, or "" if none.
 * Borrowed: valid until the next kiln call on the same thread. */
const char *kiln_last_error(void);

#ifdef __cplusplus
}
#endif
#endif /* KILN_H */
