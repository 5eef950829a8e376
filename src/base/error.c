/* error.c - per-thread error messages; see error.h. */
#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERR_MSG_CAP 1024

static _Thread_local char err_msg[ERR_MSG_CAP];

static const char *const status_names[KILN_STATUS_COUNT] = {
    [KILN_OK] = "ok",
    [KILN_ERR_INVALID_ARG] = "invalid argument",
    [KILN_ERR_IO] = "i/o error",
    [KILN_ERR_FORMAT] = "malformed input",
    [KILN_ERR_UNSUPPORTED] = "unsupported",
    [KILN_ERR_OOM] = "out of memory",
    [KILN_ERR_NOT_FOUND] = "not found",
    [KILN_ERR_RANGE] = "out of range",
    [KILN_ERR_DEVICE] = "device error",
    [KILN_ERR_INTERNAL] = "internal error",
};

const char *kiln_status_str(kiln_status st)
{
    if ((unsigned)st >= KILN_STATUS_COUNT)
        return "unknown status";
    return status_names[st];
}

const char *kiln_last_error(void) { return err_msg; }

void kiln_err_clear(void) { err_msg[0] = '\0'; }

kiln_status kiln_err_set(kiln_status st, const char *fmt, ...)
{
    char msg[ERR_MSG_CAP];
    va_list ap;

    /* Format aside first: an argument may be kiln_last_error() itself. */
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(err_msg, msg, sizeof err_msg);
    return st;
}

kiln_status kiln_err_wrap(kiln_status st, const char *fmt, ...)
{
    char prefix[ERR_MSG_CAP];
    char old[ERR_MSG_CAP];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    if (err_msg[0])
        memcpy(old, err_msg, sizeof old);
    else
        snprintf(old, sizeof old, "%s", kiln_status_str(st));
    /* prefix + ": " + old, cut to fit (the tail of a long chain is lost). */
    size_t pl = strnlen(prefix, ERR_MSG_CAP - 3);
    memcpy(err_msg, prefix, pl);
    memcpy(err_msg + pl, ": ", 2);
    size_t room = ERR_MSG_CAP - pl - 3;
    size_t ol = strnlen(old, room);
    memcpy(err_msg + pl + 2, old, ol);
    err_msg[pl + 2 + ol] = '\0';
    return st;
}

void kiln_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "kiln: assertion failed: %s (%s:%d)\n", expr, file, line);
    fflush(stderr);
    abort();
}
