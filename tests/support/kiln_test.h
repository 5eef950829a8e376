/*
 * kiln_test.h - helpers shared by the cmocka tests (library kiln_testsupport,
 * linked into every unit and GPU test; see cmake/KilnTests.cmake).
 *
 * How the helpers fail:
 *   - Anything that goes wrong inside a helper (an unset variable, a file that
 *     cannot be read or written, a command that cannot be started) ends in
 *     cmocka's fail_msg with the reason.  That is allowed in a test body and
 *     in a cmocka setup or teardown fixture alike: in a group setup it fails
 *     the group with the message, so a setup may call these helpers and
 *     return 0.
 *   - What the caller is there to check comes back as a value and is not
 *     judged here: the exit status of a command (kt_run, kt_kiln, kt_run_ref),
 *     whether a path exists (kt_exists), whether a tree was removed
 *     (kt_rmtree, for teardowns, which should not fail a run).  The one
 *     exception is kt_ref_dir, made for setups: fixtures from a script that
 *     failed are no fixtures, so it fails unless the script exits 0.
 *   - kt_model_or_skip skips the test (cmocka skip()) when a model that
 *     scripts/fetch-models.sh provides is absent.
 * Buffers returned as `char *` / `uint8_t *` are owned by the caller and
 * released with free() (not kiln_free: the helpers stay out of the counting
 * allocator so that its byte counts see only the code under test).
 */
#ifndef KILN_TEST_H
#define KILN_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- environment (set by CTest) -------------------------------------------- */

/* The value of KILN_SOURCE_DIR, KILN_BINARY_DIR, KILN_PYTHON, KILN_MODELS_DIR,
 * KILN_BIN (or any other variable); fail_msg when unset or empty.  Borrowed
 * from the environment. */
const char *kt_env(const char *name);

/* $KILN_MODELS_DIR/<rel> into buf; skips the test when that path does not
 * exist (the default models are fetched separately). */
void kt_model_or_skip(char *buf, size_t cap, const char *rel);

/* ---- files and directories ---------------------------------------------------- */

bool kt_exists(const char *path);

/* The whole file, with a NUL after the last byte (so text can be used as a
 * string); its length into *size unless size is NULL.  Owned: free(). */
char *kt_read_file(const char *path, size_t *size);

/* The JSON document at path (owned: json_decref); fails the test, naming
 * the line, when it cannot be read or parsed. */
struct json_t;
struct json_t *kt_load_json(const char *path);

void kt_write_file(const char *path, const void *data, size_t n);

/* mkdir -p: every missing component of path, mode 0755. */
void kt_mkdirs(const char *path);

/* A fresh directory $TMPDIR/kiln_<tag>_XXXXXX (/tmp without TMPDIR) into buf. */
void kt_mkdtemp(char *buf, size_t cap, const char *tag);

/* Remove the tree at path, links not followed.  NULL or "" is a no-op.
 * Returns 0, or -1 when something could not be removed. */
int kt_rmtree(const char *path);

/* ---- commands ---------------------------------------------------------------- */

/* Run argv[0] (searched in PATH) with the NULL-terminated argv and this
 * process's environment, and wait for it.  When out / err are not NULL, the
 * command's stdout / stderr are captured into owned NUL-terminated buffers
 * (free()); when NULL, the stream goes where the test's own goes (the CTest
 * log).  Returns the exit status, or 128 + the signal that killed it. */
int kt_run(const char *const argv[], char **out, char **err);

/* kt_run of `$KILN_BIN arg...`; the argument list ends with NULL. */
int kt_kiln(char **out, char **err, ...) __attribute__((sentinel));

/* kt_run of `python $KILN_SOURCE_DIR/tests/ref/<script> arg`, python being
 * $KILN_PYTHON when NULL; arg NULL passes no argument. */
int kt_run_ref(const char *python, const char *script, const char *arg, char **out, char **err);

/* Fixtures from a reference script: kt_mkdtemp into dir (tag: the script's
 * name), then `$KILN_PYTHON tests/ref/<script> dir`; fail_msg unless it exits
 * 0.  Remove the directory with kt_rmtree. */
void kt_ref_dir(char *dir, size_t cap, const char *script);

/* Call fn in a forked child; fail_msg unless the child exits with status 0.
 * For what must run in a fresh process (first reads of the environment,
 * seccomp filters). */
void kt_run_child(int (*fn)(void));

/* ---- safetensors file images ----------------------------------------------------- */

/* A safetensors image: the 8-byte little-endian header length, header padded
 * with spaces to a multiple of 8, then dlen data bytes copied from data, or
 * 0, 1, 2, ... (mod 256) when data is NULL.  Its length into *len.  Owned:
 * free(). */
uint8_t *kt_st_image(const char *header, const void *data, size_t dlen, size_t *len);

#endif
