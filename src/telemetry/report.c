/* report.c - benchmark result records; see report.h. */
#include "telemetry/report.h"

#include "base/clock.h"
#include "base/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#ifndef KILN_SOURCE_DIR
#define KILN_SOURCE_DIR "."
#endif

void report_cpu_name(char *buf, size_t cap)
{
    char line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    snprintf(buf, cap, "unknown CPU");
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!strncmp(line, "model name", 10) && colon) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(buf, cap, "%s (%ld cores)", colon + 2, sysconf(_SC_NPROCESSORS_ONLN));
            break;
        }
    }
    if (f)
        fclose(f);
}

/* First line of a shell command's output, or "" when it fails. */
static void report_cmd_line(const char *cmd, char *buf, size_t cap)
{
    FILE *p = popen(cmd, "r");
    buf[0] = '\0';
    if (!p)
        return;
    if (fgets(buf, (int)cap, p))
        buf[strcspn(buf, "\n")] = '\0';
    pclose(p);
}

static void report_commit(char *buf, size_t cap)
{
    char dirty[8];
    const char *given = getenv("KILN_COMMIT");
    if (given && *given) {
        /* a copy of the tree without its history (a GPU host) is told */
        snprintf(buf, cap, "%s", given);
        return;
    }
    report_cmd_line("git -C '" KILN_SOURCE_DIR "' rev-parse --short=12 HEAD 2>/dev/null", buf, cap);
    if (!buf[0]) {
        snprintf(buf, cap, "unknown");
        return;
    }
    report_cmd_line("git -C '" KILN_SOURCE_DIR "' status --porcelain --untracked-files=no "
                    "2>/dev/null | head -1 | cut -c1-2",
                    dirty, sizeof dirty);
    if (dirty[0] && strlen(buf) + 7 < cap)
        strcat(buf, "-dirty");
}

extern char **environ;

/* The KILN_* variables of the environment but KILN_COMMIT (that is the
 * commit key): the knobs in force (KILN_CUDA_DECODE_MIN_KEYS, ...). */
static json_t *report_env(void)
{
    json_t *e = json_object();
    for (char **v = environ; e && v && *v; v++) {
        const char *eq = strchr(*v, '=');
        char name[128];
        if (strncmp(*v, "KILN_", 5) || !eq || (size_t)(eq - *v) >= sizeof name)
            continue;
        memcpy(name, *v, (size_t)(eq - *v));
        name[eq - *v] = '\0';
        if (strcmp(name, "KILN_COMMIT"))
            json_object_set_new(e, name, json_string(eq + 1));
    }
    return e;
}

json_t *report_new(const char *benchmark, const char *shape)
{
    char cpu[256], commit[64], date[32];
    struct utsname un;
    json_t *o = json_object();
    if (!o)
        return NULL;
    report_cpu_name(cpu, sizeof cpu);
    report_commit(commit, sizeof commit);
    json_object_set_new(o, "benchmark", json_string(benchmark));
    json_object_set_new(o, "shape", json_string(shape));
    json_object_set_new(o, "device", json_string(cpu));
    if (uname(&un) == 0) {
        char drv[200];
        snprintf(drv, sizeof drv, "linux %.150s", un.release);
        json_object_set_new(o, "driver", json_string(drv));
    }
    json_object_set_new(o, "commit", json_string(commit));
    json_object_set_new(o, "date", json_string(clock_wall_iso8601(date, sizeof date)));
    json_object_set_new(o, "env", report_env());
    return o;
}

kiln_status report_write(json_t *results, const char *dir, const char *prefix, char *path_out,
                         size_t cap)
{
    char stamp[32];
    clock_wall_iso8601(stamp, sizeof stamp);
    for (char *c = stamp; *c; c++)
        if (*c == ':')
            *c = '-';
    mkdir(dir, 0755);
    int n = snprintf(path_out, cap, "%s/%s-%s.json", dir, prefix, stamp);
    if (n < 0 || (size_t)n >= cap)
        return kiln_err_set(KILN_ERR_RANGE, "%s: result path too long", dir);
    if (json_dump_file(results, path_out, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) != 0)
        return kiln_err_set(KILN_ERR_IO, "%s: cannot write: %s", path_out, strerror(errno));
    return KILN_OK;
}
