/* clock.c - monotonic and wall clocks; see clock.h. */
#include "base/clock.h"

#include <stdatomic.h>
#include <time.h>

static _Atomic uint64_t clock_origin_ns;

uint64_t clock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    uint64_t expect = 0;
    atomic_compare_exchange_strong(&clock_origin_ns, &expect, now);
    return now;
}

double clock_since_start_s(void)
{
    uint64_t now = clock_now_ns();
    return (double)(now - atomic_load(&clock_origin_ns)) * 1e-9;
}

char *clock_wall_iso8601(char *buf, size_t cap)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    if (!strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) && cap)
        buf[0] = '\0';
    return buf;
}

void clock_deadline(struct timespec *ts, double s)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)s;
    ts->tv_nsec += (long)((s - (double)(time_t)s) * 1e9);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}
