/*
 * clock.h - monotonic time for measurements and wall time for reports.
 */
#ifndef KILN_BASE_CLOCK_H
#define KILN_BASE_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Nanoseconds on CLOCK_MONOTONIC (unaffected by wall-clock changes). */
uint64_t clock_now_ns(void);

/* Seconds since the first call of any clock_ function in this process. */
double clock_since_start_s(void);

/* The CLOCK_REALTIME time s (>= 0) seconds from now, as
 * pthread_cond_timedwait takes it. */
struct timespec;
void clock_deadline(struct timespec *ts, double s);

/* Wall time as "2026-11-23T18:21:07Z" (UTC) into buf (>= 21 bytes);
 * returns buf. */
char *clock_wall_iso8601(char *buf, size_t cap);

#endif /* KILN_BASE_CLOCK_H */
