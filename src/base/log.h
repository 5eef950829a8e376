/*
 * log.h - the one logging entry point.
 *
 * Messages go to stderr (library code never writes to stdout) as
 *   "kiln <level> <seconds since start>: message\n"
 * The threshold comes from kiln_log_set_level() or, at first use, from the
 * KILN_LOG environment variable (error|warn|info|debug|trace; default warn).
 */
#ifndef KILN_BASE_LOG_H
#define KILN_BASE_LOG_H

#include "base/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kiln_log_level {
    KILN_LOG_ERROR = 0,
    KILN_LOG_WARN,
    KILN_LOG_INFO,
    KILN_LOG_DEBUG,
    KILN_LOG_TRACE,
} kiln_log_level;

void kiln_log(kiln_log_level level, const char *fmt, ...) KILN_PRINTF(2, 3);
void kiln_log_set_level(kiln_log_level level);
kiln_log_level kiln_log_get_level(void);
/* Parse "error".."trace" (or "0".."4"); returns KILN_ERR_INVALID_ARG if unknown. */
kiln_status kiln_log_parse_level(const char *s, kiln_log_level *out);

#define KILN_LOG_E(...) kiln_log(KILN_LOG_ERROR, __VA_ARGS__)
#define KILN_LOG_W(...) kiln_log(KILN_LOG_WARN, __VA_ARGS__)
#define KILN_LOG_I(...) kiln_log(KILN_LOG_INFO, __VA_ARGS__)
#define KILN_LOG_D(...) kiln_log(KILN_LOG_DEBUG, __VA_ARGS__)

#ifdef __cplusplus
}
#endif

#endif /* KILN_BASE_LOG_H */
