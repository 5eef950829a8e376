/* log.c - leveled logging to stderr; see log.h. */
#include "base/log.h"

#include "base/clock.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

/* -1 until first use, then the threshold. */
static atomic_int log_level = -1;

/* Level named by s, or -1; sets no error message. */
static int log_level_lookup(const char *s)
{
    for (int i = 0; i < (int)KILN_ARRAY_LEN(level_names); i++)
        if (!strcmp(s, level_names[i]) || (s[0] == '0' + i && s[1] == '\0'))
            return i;
    return -1;
}

kiln_status kiln_log_parse_level(const char *s, kiln_log_level *out)
{
    int lv = log_level_lookup(s);

    if (lv < 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "unknown log level '%s' (error|warn|info|debug|trace)", s);
    *out = (kiln_log_level)lv;
    return KILN_OK;
}

kiln_log_level kiln_log_get_level(void)
{
    int lv = atomic_load(&log_level);
    if (lv < 0) {
        /* A bad KILN_LOG must not replace the message of an error being
         * logged, so no kiln_err_set() here. */
        const char *env = getenv("KILN_LOG");
        lv = env ? log_level_lookup(env) : -1;
        if (lv < 0)
            lv = (int)KILN_LOG_WARN;
        atomic_store(&log_level, lv);
    }
    return (kiln_log_level)lv;
}

void kiln_log_set_level(kiln_log_level level) { atomic_store(&log_level, (int)level); }

void kiln_log(kiln_log_level level, const char *fmt, ...)
{
    char line[2048];
    int n;
    va_list ap;

    if ((int)level > (int)kiln_log_get_level())
        return;
    n = snprintf(line, sizeof line, "kiln %s %.3f: ", level_names[level],
                 clock_since_start_s());
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* One write per message so lines from threads do not interleave. */
    fprintf(stderr, "%s\n", line);
}
