/*
 * kiln_test.c - helpers shared by the cmocka tests; see kiln_test.h.
 *
 * Commands are started with posix_spawnp, never through a shell, so paths
 * need no quoting.  Captured output goes through temporary files rather than
 * pipes: a command that fills one pipe while the test reads the other cannot
 * deadlock, and no poll loop is needed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kiln_test.h"

#include <jansson.h>

#include <errno.h>
#include <ftw.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define KT_MAX_ARGS 32

/* snprintf that fails the test instead of cutting the result. */
__attribute__((format(printf, 3, 4)))
static void kt_fmt(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        fail_msg("path or command longer than %zu bytes: %s...", cap, buf);
}

/* ---- environment ---------------------------------------------------------------- */

const char *kt_env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !v[0])
        fail_msg("%s is not set (run the test through ctest)", name);
    return v;
}

void kt_model_or_skip(char *buf, size_t cap, const char *rel)
{
    kt_fmt(buf, cap, "%s/%s", kt_env("KILN_MODELS_DIR"), rel);
    if (!kt_exists(buf)) {
        print_message("%s absent (scripts/fetch-models.sh): skipped\n", buf);
        skip();
    }
}

/* ---- files and directories ---------------------------------------------------------- */

bool kt_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

char *kt_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap);
    /* Read to EOF rather than trusting a size taken before reading. */
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n < 2) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger)
                free(buf);
            buf = bigger;
        }
    }
    int bad = !buf || ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        fail_msg("cannot read %s", path);
    }
    buf[n] = '\0';
    if (size)
        *size = n;
    return buf;
}

void kt_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        fail_msg("cannot create %s: %s", path, strerror(errno));
    size_t put = n ? fwrite(data, 1, n, f) : 0;
    if (fclose(f) != 0 || put != n)
        fail_msg("cannot write %zu bytes to %s", n, path);
}

void kt_mkdirs(const char *path)
{
    char tmp[4096];
    kt_fmt(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755); /* an error shows on the last component */
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        fail_msg("mkdir %s: %s", tmp, strerror(errno));
}

void kt_mkdtemp(char *buf, size_t cap, const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    kt_fmt(buf, cap, "%s/kiln_%s_XXXXXX", tmp && tmp[0] ? tmp : "/tmp", tag);
    if (!mkdtemp(buf))
        fail_msg("mkdtemp %s: %s", buf, strerror(errno));
}

static int kt_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

int kt_rmtree(const char *path)
{
    if (!path || !path[0])
        return 0;
    return nftw(path, kt_rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

/* ---- commands ------------------------------------------------------------------------ */

/* A temporary file for one captured stream; its descriptor, path into buf. */
static int kt_capture_file(char *buf, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    kt_fmt(buf, cap, "%s/kiln_run_XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    int fd = mkstemp(buf);
    if (fd < 0)
        fail_msg("mkstemp %s: %s", buf, strerror(errno));
    return fd;
}

/* The captured stream into *dst (owned), and the file removed. */
static void kt_collect(int fd, const char *path, char **dst)
{
    close(fd);
    *dst = kt_read_file(path, NULL);
    unlink(path);
}

int kt_run(const char *const argv[], char **out, char **err)
{
    char out_path[4096], err_path[4096];
    int out_fd = -1, err_fd = -1, status = 0, rc;
    posix_spawn_file_actions_t fa;
    pid_t pid;

    if (out)
        out_fd = kt_capture_file(out_path, sizeof out_path);
    if (err)
        err_fd = kt_capture_file(err_path, sizeof err_path);
    posix_spawn_file_actions_init(&fa);
    if (out)
        posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
    if (err)
        posix_spawn_file_actions_adddup2(&fa, err_fd, STDERR_FILENO);
    /* What the test printed so far stays ahead of the command's output. */
    fflush(stdout);
    fflush(stderr);
    rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc == 0 && waitpid(pid, &status, 0) != pid)
        rc = errno;
    if (out)
        kt_collect(out_fd, out_path, out);
    if (err)
        kt_collect(err_fd, err_path, err);
    if (rc != 0)
        fail_msg("cannot run %s: %s", argv[0], strerror(rc));
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int kt_kiln(char **out, char **err, ...)
{
    const char *argv[KT_MAX_ARGS + 2] = {kt_env("KILN_BIN")};
    int n = 1;
    va_list ap;
    va_start(ap, err);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
        if (n > KT_MAX_ARGS) {
            va_end(ap);
            fail_msg("kt_kiln: more than %d arguments", KT_MAX_ARGS);
        }
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    return kt_run(argv, out, err);
}

int kt_run_ref(const char *python, const char *script, const char *arg, char **out, char **err)
{
    char path[4096];
    kt_fmt(path, sizeof path, "%s/tests/ref/%s", kt_env("KILN_SOURCE_DIR"), script);
    const char *argv[] = {python ? python : kt_env("KILN_PYTHON"), path, arg, NULL};
    return kt_run(argv, out, err);
}

void kt_ref_dir(char *dir, size_t cap, const char *script)
{
    char tag[64];
    kt_fmt(tag, sizeof tag, "%.*s", (int)strcspn(script, "."), script);
    /* Fail before making the directory, or remove it before failing: a
     * failure leaves nothing behind for the caller's teardown. */
    kt_env("KILN_PYTHON");
    kt_env("KILN_SOURCE_DIR");
    kt_mkdtemp(dir, cap, tag);
    int rc = kt_run_ref(NULL, script, dir, NULL, NULL);
    if (rc != 0) {
        kt_rmtree(dir);
        fail_msg("tests/ref/%s %s exited %d", script, dir, rc);
    }
}

void kt_run_child(int (*fn)(void))
{
    int status;
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0)
        _exit(fn());
    if (waitpid(pid, &status, 0) != pid)
        fail_msg("waitpid: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child %s %d", WIFEXITED(status) ? "exited" : "killed by signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* ---- safetensors file images ----------------------------------------------------------- */

uint8_t *kt_st_image(const char *header, const void *data, size_t dlen, size_t *len)
{
    size_t h = strlen(header), hp = (h + 7) / 8 * 8;
    uint8_t *buf = calloc(1, 8 + hp + dlen + 1);
    if (!buf)
        fail_msg("out of memory");
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)hp >> (8 * i));
    memcpy(buf + 8, header, h);
    memset(buf + 8 + h, ' ', hp - h);
    for (size_t i = 0; i < dlen; i++)
        buf[8 + hp + i] = data ? ((const uint8_t *)data)[i] : (uint8_t)i;
    *len = 8 + hp + dlen;
    return buf;
}

json_t *kt_load_json(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j)
        fail_msg("%s: line %d: %s", path, e.line, e.text);
    return j;
}
