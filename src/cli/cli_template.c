/*
 * cli_template.c - cli_template_load (cli.h): the one chat template lookup
 * of `kiln run --chat`, `kiln chat` and `kiln chat-format`, with the
 * fallback to kiln's templates per architecture (share/kiln/chat_templates)
 * for models that carry none.
 */
#include "cli/cli.h"

#include "base/error.h"
#include "base/log.h"
#include "format/model_source.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef KILN_SOURCE_DIR
#define KILN_SOURCE_DIR "."
#endif

static bool tpl_is_file(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* chat_templates/<arch>.jinja in kiln's data directories, into path. */
static bool tpl_builtin(const char *arch, char *path, size_t cap)
{
    char exe[PATH_MAX];
    const char *env = getenv("KILN_DATA_DIR");
    if (env && *env) {
        snprintf(path, cap, "%s/chat_templates/%s.jinja", env, arch);
        if (tpl_is_file(path))
            return true;
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        snprintf(path, cap, "%s/../share/kiln/chat_templates/%s.jinja", exe, arch);
        if (tpl_is_file(path))
            return true;
    }
    snprintf(path, cap, "%s/share/kiln/chat_templates/%s.jinja", KILN_SOURCE_DIR, arch);
    return tpl_is_file(path);
}

/* The architecture name of the model at src into arch; false when src is
 * no model (a tokenizer file, a directory without config.json). */
static bool tpl_model_arch(const char *src, char *arch, size_t cap)
{
    model_source *m;
    if (msrc_open(src, &m) != KILN_OK)
        return false;
    snprintf(arch, cap, "%s", msrc_config(m)->arch_name);
    msrc_close(m);
    return arch[0] != '\0';
}

kiln_status cli_template_load(const char *src, const char *file, const char *arch,
                              chat_tmpl **out)
{
    char path[2 * PATH_MAX], name[64], why[1024];
    kiln_status st = chat_tmpl_load(src, file, out);
    if (st != KILN_ERR_NOT_FOUND || file)
        return st;
    /* the model carries none: the one of its architecture, if kiln has it */
    snprintf(why, sizeof why, "%s", kiln_last_error());
    if (!arch) {
        if (!tpl_model_arch(src, name, sizeof name))
            return kiln_err_set(st, "%s", why);
        arch = name;
    }
    if (!tpl_builtin(arch, path, sizeof path))
        return kiln_err_set(KILN_ERR_NOT_FOUND, "%s has no chat template and kiln has none for "
                            "architecture '%s'; pass one with --chat-template FILE", src, arch);
    KILN_LOG_I("chat template of %s: %s", arch, path);
    return chat_tmpl_load(src, path, out);
}
