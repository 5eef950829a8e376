/*
 * test_cli_tp.c - tensor parallelism as a group of processes, on the CPU:
 * `kiln run --tensor-parallel-size N --tp-launch processes` and ranks
 * launched one by one (`--tp-rank R --tp-world N --tp-id FILE`) print the
 * bytes one process prints; a rank that dies - killed mid-run, failing to
 * load, or never started - ends every other rank with a message naming it,
 * and nothing hangs (every wait here has a deadline).
 *
 * Mid-run deaths are made deterministic by stopping (SIGSTOP) a rank as
 * soon as it has registered with the group: no rank can then finish, the
 * victim is killed, the stopped rank continued, and it must notice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kiln_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void model_dir(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/tests/golden/models/%s", kt_env("KILN_SOURCE_DIR"), name);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* kiln with args (NULL-terminated) in the background, stdout and stderr
 * into files, TMPDIR set to tmpdir when given. */
static pid_t kiln_bg(const char *out, const char *err, const char *tmpdir,
                     const char *const *args)
{
    const char *argv[48];
    int n = 0;
    argv[n++] = kt_env("KILN_BIN");
    for (; *args && n < 47; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
            _exit(126);
        if (tmpdir)
            setenv("TMPDIR", tmpdir, 1);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* The exit status of pid, which must end within limit_s (else it is
 * killed and the test fails: a hang). */
static int wait_exit(pid_t pid, double limit_s, const char *what)
{
    double t0 = now_s();
    int status = 0;
    for (;;) {
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid)
            break;
        if (now_s() - t0 > limit_s) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("%s: still running after %.0f s", what, limit_s);
        }
        usleep(10 * 1000);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The pid in a rank's registration file "<group> <pid> <start> <state>"
 * once it exists (within limit_s); fails the test otherwise. */
static pid_t wait_registered(const char *path, double limit_s)
{
    double t0 = now_s();
    while (now_s() - t0 < limit_s) {
        FILE *f = fopen(path, "r");
        unsigned long long g = 0;
        long pid = 0;
        if (f) {
            int got = fscanf(f, "%llx %ld", &g, &pid);
            fclose(f);
            if (got == 2 && pid > 0)
                return (pid_t)pid;
        }
        usleep(2 * 1000);
    }
    fail_msg("no registration %s after %.0f s", path, limit_s);
    return 0;
}

/* The group directory kiln run --tp-launch made under tmpdir, once it
 * exists (within limit_s). */
static void find_group_dir(const char *tmpdir, char *out, size_t cap, double limit_s)
{
    double t0 = now_s();
    while (now_s() - t0 < limit_s) {
        DIR *d = opendir(tmpdir);
        for (struct dirent *e; d && (e = readdir(d)) != NULL;)
            if (!strncmp(e->d_name, "kiln-tp-", 8)) {
                snprintf(out, cap, "%s/%s", tmpdir, e->d_name);
                closedir(d);
                return;
            }
        if (d)
            closedir(d);
        usleep(2 * 1000);
    }
    fail_msg("no kiln-tp-* directory under %s after %.0f s", tmpdir, limit_s);
}

static char *read_text(const char *path)
{
    char *s = kt_read_file(path, NULL);
    assert_non_null(s);
    return s;
}

/* A test's files: a temporary directory, the group's id file in it, and
 * the output files of ranks started in the background. */
typedef struct tp_files {
    char tmp[256], id[300], o0[300], e0[300], o1[300], e1[300];
} tp_files;

static void tp_files_make(tp_files *f)
{
    kt_mkdtemp(f->tmp, sizeof f->tmp, "cli_tp");
    snprintf(f->id, sizeof f->id, "%s/group.id", f->tmp);
    snprintf(f->o0, sizeof f->o0, "%s/rank0.out", f->tmp);
    snprintf(f->e0, sizeof f->e0, "%s/rank0.err", f->tmp);
    snprintf(f->o1, sizeof f->o1, "%s/rank1.out", f->tmp);
    snprintf(f->e1, sizeof f->e1, "%s/rank1.err", f->tmp);
}

#define PROMPT "The kiln"

/* --tp-launch processes: 2 and 4 ranks print what one process prints,
 * greedy and sampled, and leave no group directory behind. */
static void test_spawned_ranks_match(void **state)
{
    char dir[4096], tmp[256], *one = NULL, *got = NULL, *err = NULL;
    (void)state;
    model_dir(dir, sizeof dir, "llama");
    kt_mkdtemp(tmp, sizeof tmp, "cli_tp");
    setenv("TMPDIR", tmp, 1);
    for (int sampled = 0; sampled < 2; sampled++) {
        const char *temp = sampled ? "0.8" : "0";
        assert_int_equal(kt_kiln(&one, NULL, "run", "--device", "cpu", "-m", dir, "-p", PROMPT,
                                 "-n", "20", "--ignore-eos", "--temp", temp, "--seed", "5",
                                 (const char *)NULL), 0);
        for (int tp = 2; tp <= 4; tp *= 2) {
            char n[8];
            snprintf(n, sizeof n, "%d", tp);
            int rc = kt_kiln(&got, &err, "run", "--device", "cpu", "--tensor-parallel-size", n,
                             "--tp-launch", "processes", "-m", dir, "-p", PROMPT, "-n", "20",
                             "--ignore-eos", "--temp", temp, "--seed", "5", (const char *)NULL);
            if (rc != 0)
                fail_msg("--tp-launch processes, %d ranks: exit %d: %s", tp, rc, err);
            assert_string_equal(got, one);
            /* one report, rank 0's */
            const char *r1 = strstr(err, "generated 20 tokens");
            assert_non_null(r1);
            assert_null(strstr(r1 + 1, "generated 20 tokens"));
            free(got), free(err);
        }
        free(one);
    }
    unsetenv("TMPDIR");
    DIR *d = opendir(tmp);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            fail_msg("left behind: %s/%s", tmp, e->d_name);
    closedir(d);
    /* usage errors */
    assert_int_equal(kt_kiln(NULL, NULL, "run", "--tp-launch", "processes", "-m", dir, "-p",
                             "hi", (const char *)NULL), 2);
    assert_int_equal(kt_kiln(NULL, NULL, "run", "--tp-launch", "fibers", "--tensor-parallel-size",
                             "2", "-m", dir, "-p", "hi", (const char *)NULL), 2);
    assert_int_equal(kt_kiln(NULL, NULL, "run", "--tp-timeout", "-1", "-m", dir, "-p", "hi",
                             (const char *)NULL), 2);
    assert_int_equal(kt_kiln(NULL, NULL, "chat", "--tp-launch", "processes",
                             "--tensor-parallel-size", "2", "-m", dir, (const char *)NULL), 2);
    assert_int_equal(kt_kiln(NULL, &err, "run", "--device", "cpu", "--tensor-parallel-size", "2",
                             "--tp-launch", "processes", "--tp-rank", "0", "--tp-world", "2",
                             "--tp-id", "/tmp/x", "-m", dir, "-p", "hi", (const char *)NULL), 1);
    if (!strstr(err, "starts the ranks itself"))
        fail_msg("--tp-launch with --tp-rank: %s", err);
    free(err);
    kt_rmtree(tmp);
}

/* Ranks started one by one (--tp-rank), rank 1 first: rank 0 prints what
 * one process prints, rank 1 nothing; rank 0 removes the id file. */
static void test_external_ranks_match(void **state)
{
    char dir[4096], *one = NULL, *got = NULL, *err = NULL;
    tp_files f;
    (void)state;
    model_dir(dir, sizeof dir, "llama");
    tp_files_make(&f);
    assert_int_equal(kt_kiln(&one, NULL, "run", "--device", "cpu", "-m", dir, "-p", PROMPT, "-n",
                             "24", "--ignore-eos", (const char *)NULL), 0);
    const char *r1[] = {"run", "--device", "cpu", "--tp-rank", "1", "--tp-world", "2",
                        "--tp-id", f.id, "-m", dir, "-p", PROMPT, "-n", "24", "--ignore-eos",
                        "--threads", "1", NULL};
    pid_t p1 = kiln_bg(f.o1, f.e1, NULL, r1);
    int rc = kt_kiln(&got, &err, "run", "--device", "cpu", "--tp-rank", "0", "--tp-world", "2",
                     "--tp-id", f.id, "-m", dir, "-p", PROMPT, "-n", "24", "--ignore-eos",
                     "--threads", "1", (const char *)NULL);
    if (rc != 0)
        fail_msg("rank 0 exited %d: %s", rc, err);
    assert_int_equal(wait_exit(p1, 120, "rank 1"), 0);
    assert_string_equal(got, one);
    char *out1 = read_text(f.o1);
    assert_string_equal(out1, "");
    free(out1), free(got), free(err), free(one);
    assert_false(kt_exists(f.id));
    kt_rmtree(f.tmp);
}

/* A rank that never comes: rank 0 gives up after --tp-timeout and says
 * which rank. */
static void test_rank_never_joins(void **state)
{
    char dir[4096], *err = NULL;
    tp_files f;
    (void)state;
    model_dir(dir, sizeof dir, "llama");
    tp_files_make(&f);
    double t0 = now_s();
    int rc = kt_kiln(NULL, &err, "run", "--device", "cpu", "--tp-rank", "0", "--tp-world", "2",
                     "--tp-id", f.id, "--tp-timeout", "1", "-m", dir, "-p", PROMPT, "-n", "4",
                     (const char *)NULL);
    double s = now_s() - t0;
    print_message("rank 0 alone: exit %d after %.1f s\n", rc, s);
    assert_int_equal(rc, 1);
    assert_true(s < 60);
    if (!strstr(err, "rank 1 did not join"))
        fail_msg("rank 0 alone: %s", err);
    free(err);
    /* rank 1 alone: no id from rank 0 */
    rc = kt_kiln(NULL, &err, "run", "--device", "cpu", "--tp-rank", "1", "--tp-world", "2",
                 "--tp-id", f.id, "--tp-timeout", "0.5", "-m", dir, "-p", PROMPT, "-n", "4",
                 (const char *)NULL);
    assert_int_equal(rc, 1);
    if (!strstr(err, "no group id from rank 0"))
        fail_msg("rank 1 alone: %s", err);
    free(err);
    kt_rmtree(f.tmp);
}

/* Rank 1 fails to load (its model path is wrong) after it joined: rank 0
 * stops with a message naming it instead of waiting in a collective. */
static void test_rank_fails_to_load(void **state)
{
    char dir[4096], *err = NULL;
    tp_files f;
    (void)state;
    model_dir(dir, sizeof dir, "llama");
    tp_files_make(&f);
    const char *r1[] = {"run", "--device", "cpu", "--tp-rank", "1", "--tp-world", "2",
                        "--tp-id", f.id, "-m", "/nonexistent/model", "-p", PROMPT, NULL};
    pid_t p1 = kiln_bg(f.o1, f.e1, NULL, r1);
    int rc = kt_kiln(NULL, &err, "run", "--device", "cpu", "--tp-rank", "0", "--tp-world", "2",
                     "--tp-id", f.id, "-m", dir, "-p", PROMPT, "-n", "24", (const char *)NULL);
    assert_int_equal(rc, 1);
    if (!strstr(err, "rank 1") || !strstr(err, "exited before the group finished"))
        fail_msg("rank 0 beside a rank 1 that failed: %s", err);
    assert_int_equal(wait_exit(p1, 60, "rank 1"), 1);
    free(err);
    kt_rmtree(f.tmp);
}

/* Ranks given different work (rank 1 stops after 2 tokens, rank 0 wants
 * 24): rank 0 does not wait forever in the collective rank 1 never joins. */
static void test_ranks_disagree(void **state)
{
    char dir[4096], *err = NULL;
    tp_files f;
    (void)state;
    model_dir(dir, sizeof dir, "llama");
    tp_files_make(&f);
    const char *r1[] = {"run", "--device", "cpu", "--tp-rank", "1", "--tp-world", "2",
                        "--tp-id", f.id, "-m", dir, "-p", PROMPT, "-n", "2", "--ignore-eos",
                        "--tp-timeout", "2", NULL};
    pid_t p1 = kiln_bg(f.o1, f.e1, NULL, r1);
    double t0 = now_s();
    int rc = kt_kiln(NULL, &err, "run", "--device", "cpu", "--tp-rank", "0", "--tp-world", "2",
                     "--tp-id", f.id, "-m", dir, "-p", PROMPT, "-n", "24", "--ignore-eos",
                     "--tp-timeout", "2", (const char *)NULL);
    print_message("rank 0 beside a rank 1 given less work: exit %d after %.1f s\n", rc,
                  now_s() - t0);
    assert_int_equal(rc, 1);
    if (!strstr(err, "rank 1 finished"))
        fail_msg("rank 0 beside a rank 1 given less work: %s", err);
    assert_int_equal(wait_exit(p1, 60, "rank 1"), 0);
    free(err);
    kt_rmtree(f.tmp);
}

/* Killed mid-run: rank 1 (started by rank 0 with --tp-launch processes) is
 * SIGKILLed while rank 0 is stopped; rank 0, continued, ends with exit 1
 * naming rank 1.  Then the other way round with ranks started one by one:
 * rank 0 killed, rank 1 ends. */
static void test_rank_killed(void **state)
{
    char dir[4096], gdir[512], path[600];
    tp_files f;
    (void)state;
    model_dir(dir, sizeof dir, "llama");
    tp_files_make(&f);

    const char *spawn[] = {"run", "--device", "cpu", "--tensor-parallel-size", "2",
                           "--tp-launch", "processes", "-m", dir, "-p", PROMPT, "-n", "200",
                           "--ignore-eos", NULL};
    pid_t p0 = kiln_bg(f.o0, f.e0, f.tmp, spawn);
    find_group_dir(f.tmp, gdir, sizeof gdir, 60);
    snprintf(path, sizeof path, "%s/id.rank0", gdir);
    assert_int_equal(wait_registered(path, 60), p0);
    kill(p0, SIGSTOP); /* from here no rank can finish */
    snprintf(path, sizeof path, "%s/id.rank1", gdir);
    pid_t p1 = wait_registered(path, 60);
    assert_int_equal(kill(p1, SIGKILL), 0);
    kill(p0, SIGCONT);
    assert_int_equal(wait_exit(p0, 60, "rank 0 after rank 1 was killed"), 1);
    char *err = read_text(f.e0);
    if (!strstr(err, "rank 1") || !strstr(err, "exited before the group finished"))
        fail_msg("rank 0 after rank 1 was killed: %s", err);
    free(err);

    /* ranks one by one; rank 0 killed */
    const char *r0[] = {"run", "--device", "cpu", "--tp-rank", "0", "--tp-world", "2",
                        "--tp-id", f.id, "-m", dir, "-p", PROMPT, "-n", "200", "--ignore-eos",
                        NULL};
    const char *r1[] = {"run", "--device", "cpu", "--tp-rank", "1", "--tp-world", "2",
                        "--tp-id", f.id, "-m", dir, "-p", PROMPT, "-n", "200", "--ignore-eos",
                        NULL};
    p0 = kiln_bg(f.o0, f.e0, NULL, r0);
    snprintf(path, sizeof path, "%s.rank0", f.id);
    assert_int_equal(wait_registered(path, 60), p0);
    kill(p0, SIGSTOP);
    p1 = kiln_bg(f.o1, f.e1, NULL, r1);
    snprintf(path, sizeof path, "%s.rank1", f.id);
    assert_int_equal(wait_registered(path, 60), p1);
    kill(p0, SIGKILL);
    assert_int_equal(wait_exit(p0, 60, "rank 0"), 128 + SIGKILL);
    assert_int_equal(wait_exit(p1, 60, "rank 1 after rank 0 was killed"), 1);
    err = read_text(f.e1);
    if (!strstr(err, "rank 0") || !strstr(err, "exited before the group finished"))
        fail_msg("rank 1 after rank 0 was killed: %s", err);
    free(err);
    kt_rmtree(f.tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spawned_ranks_match),
        cmocka_unit_test(test_external_ranks_match),
        cmocka_unit_test(test_rank_never_joins),
        cmocka_unit_test(test_rank_fails_to_load),
        cmocka_unit_test(test_rank_killed),
        cmocka_unit_test(test_ranks_disagree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
