/*
 * report.h - benchmark result records.
 *
 * Every figure a benchmark produces is one JSON object with the keys
 *   benchmark, shape, settings, value, unit, ceiling, peer {name, version,
 *   value}, device, driver, commit, date, env (the KILN_* environment
 *   variables set, KILN_COMMIT aside: the knobs the run had)
 * written to bench/results/ (one file per run) and printed.  This module
 * fills the keys that describe the run (device, driver, commit, date) and
 * writes the files; the benchmark fills the rest.
 */
#ifndef KILN_TELEMETRY_REPORT_H
#define KILN_TELEMETRY_REPORT_H

#include "kiln.h"

#include <jansson.h>

/* A new result object with benchmark, shape, device/driver (the CPU and
 * kernel here; a GPU benchmark overwrites them), commit ($KILN_COMMIT when
 * set, else git HEAD of the source tree, "-dirty" when it has changes,
 * "unknown" without git), date and env.  Returns owned (json_decref), NULL
 * on OOM. */
json_t *report_new(const char *benchmark, const char *shape);

/* "AMD EPYC 9654 96-Core Processor (2 cores)" into buf. */
void report_cpu_name(char *buf, size_t cap);

/* Write `results` (an array of result objects) as
 * <dir>/<prefix>-<UTC timestamp>.json; the path goes to path_out. */
kiln_status report_write(json_t *results, const char *dir, const char *prefix, char *path_out,
                         size_t cap);

#endif /* KILN_TELEMETRY_REPORT_H */
