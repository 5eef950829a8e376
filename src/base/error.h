/*
 * error.h - status values with a message that carries context.
 *
 * Expected failures (a bad file, a bad flag, a full pool) are returned as a
 * kiln_status and described by a per-thread message:
 *
 *     if (off > size)
 *         return kiln_err_set(KILN_ERR_FORMAT, "gguf: tensor '%s' data ends "
 *                             "at %" PRIu64 ", file is %zu bytes", ...);
 *
 * A caller that adds context wraps the message on the way up:
 *
 *     if ((st = gguf_open(path, &g)))
 *         return kiln_err_wrap(st, "%s", path);   -> "model.gguf: gguf: ..."
 *
 * Bugs (broken invariants) are KILN_ASSERT: always compiled in, prints the
 * expression and file:line, aborts.  Never use it on input from outside.
 */
#ifndef KILN_BASE_ERROR_H
#define KILN_BASE_ERROR_H

#include "kiln.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define KILN_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#define KILN_NORETURN __attribute__((noreturn))
#else
#define KILN_PRINTF(fmt_idx, arg_idx)
#define KILN_NORETURN
#endif

/* Replace this thread's message with the formatted text; returns st. */
kiln_status kiln_err_set(kiln_status st, const char *fmt, ...) KILN_PRINTF(2, 3);

/* Prefix this thread's message with "<formatted>: "; returns st.  If no
 * message was set, the prefix and the status name form the message. */
kiln_status kiln_err_wrap(kiln_status st, const char *fmt, ...) KILN_PRINTF(2, 3);

/* Forget this thread's message. */
void kiln_err_clear(void);

/* Report a failed invariant and abort.  Used by KILN_ASSERT. */
KILN_NORETURN void kiln_assert_fail(const char *expr, const char *file, int line);

#define KILN_ASSERT(cond) \
    ((cond) ? (void)0 : kiln_assert_fail(#cond, __FILE__, __LINE__))

#define KILN_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#ifdef __cplusplus
}
#endif

#endif /* KILN_BASE_ERROR_H */
