/*
 * chat.c - locate a chat template and its special-token strings, and render
 * conversations with them; see chat.h.
 */
#include "tokenizer/chat.h"

#include "base/alloc.h"
#include "base/fmap.h"
#include "format/gguf.h"
#include "tokenizer/chat_template.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

struct chat_tmpl {
    ctpl *tpl;
    char *bos;     /* owned, "" when unknown */
    char *eos;
};

/* ---- finding the template ----------------------------------------------- */

typedef struct chat_found {
    kiln_buf text;       /* template source */
    kiln_buf bos, eos;
    char origin[4200];   /* where the template came from, for messages */
} chat_found;

static bool chat_is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static kiln_status chat_read_file(const char *path, kiln_buf *out)
{
    fmap *f;
    kiln_status st = fmap_open(path, &f);
    if (st)
        return st;
    buf_clear(out);
    st = buf_append(out, fmap_size(f) ? (const char *)fmap_data(f) : "", fmap_size(f));
    fmap_close(f);
    return st;
}

/* A token in tokenizer_config.json: a string or {"content": "..."}. */
static kiln_status chat_cfg_token(json_t *cfg, const char *key, kiln_buf *out)
{
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    buf_clear(out);
    return json_is_string(v) ? buf_append_str(out, json_string_value(v)) : buf_append(out, "", 0);
}

/* tokenizer_config.json: "chat_template" as a string or a list of
 * {name, template} (the "default" one). */
static kiln_status chat_from_tokenizer_config(const char *path, chat_found *f)
{
    json_error_t je;
    json_t *cfg = json_load_file(path, 0, &je), *ct, *v;
    kiln_status st = KILN_OK;
    size_t i;

    if (!cfg)
        return kiln_err_set(KILN_ERR_FORMAT, "%s: line %d: %s", path, je.line, je.text);
    if ((st = chat_cfg_token(cfg, "bos_token", &f->bos)) ||
        (st = chat_cfg_token(cfg, "eos_token", &f->eos)))
        goto out;
    ct = json_object_get(cfg, "chat_template");
    if (json_is_string(ct))
        st = buf_append_str(&f->text, json_string_value(ct));
    json_array_foreach(json_is_array(ct) ? ct : NULL, i, v) {
        const char *nm = json_string_value(json_object_get(v, "name"));
        const char *tp = json_string_value(json_object_get(v, "template"));
        if (nm && tp && !strcmp(nm, "default") && !f->text.len)
            st = buf_append_str(&f->text, tp);
    }
    snprintf(f->origin, sizeof f->origin, "%s", path);
out:
    json_decref(cfg);
    return st;
}

static kiln_status chat_from_dir(const char *dir, chat_found *f)
{
    char p[4096];
    struct stat sb;
    kiln_status st;

    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    if (stat(p, &sb) == 0 && (st = chat_from_tokenizer_config(p, f)))
        return st;
    if (f->text.len)
        return KILN_OK;
    snprintf(p, sizeof p, "%s/chat_template.jinja", dir);
    if (stat(p, &sb) == 0) {
        snprintf(f->origin, sizeof f->origin, "%s", p);
        return chat_read_file(p, &f->text);
    }
    snprintf(p, sizeof p, "%s/chat_template.json", dir);
    if (stat(p, &sb) == 0) {
        json_t *j = json_load_file(p, 0, NULL);
        const char *s = json_string_value(json_object_get(j, "chat_template"));
        st = s ? buf_append_str(&f->text, s) : KILN_OK;
        snprintf(f->origin, sizeof f->origin, "%s", p);
        json_decref(j);
        return st;
    }
    return KILN_OK;
}

/* bos/eos of a GGUF file: the pieces of tokenizer.ggml.{bos,eos}_token_id. */
static kiln_status chat_gguf_token(const gguf_file *g, const char *key, kiln_buf *out)
{
    uint64_t id;
    const char *s;
    size_t n;
    buf_clear(out);
    if (gguf_get_u64(g, key, &id) != KILN_OK ||
        gguf_get_arr_str(g, "tokenizer.ggml.tokens", (int64_t)id, &s, &n) != KILN_OK)
        return buf_append(out, "", 0);
    return buf_append(out, s, n);
}

static kiln_status chat_from_gguf(const char *path, chat_found *f)
{
    gguf_file *g;
    const char *s;
    size_t n;
    kiln_status st = gguf_open(path, &g);
    if (st)
        return st;
    if (gguf_get_str(g, "tokenizer.chat_template", &s, &n) == KILN_OK)
        st = buf_append(&f->text, s, n);
    if (!st && !(st = chat_gguf_token(g, "tokenizer.ggml.bos_token_id", &f->bos)))
        st = chat_gguf_token(g, "tokenizer.ggml.eos_token_id", &f->eos);
    snprintf(f->origin, sizeof f->origin, "%s", path);
    gguf_close(g);
    return st;
}

static kiln_status chat_find(const char *src, chat_found *f)
{
    char head[4] = {0};
    FILE *fp;

    if (chat_is_dir(src))
        return chat_from_dir(src, f);
    if (!(fp = fopen(src, "rb")))
        return kiln_err_set(KILN_ERR_NOT_FOUND, "%s: %s", src, strerror(errno));
    size_t n = fread(head, 1, sizeof head, fp);
    fclose(fp);
    if (n == 4 && !memcmp(head, "GGUF", 4))
        return chat_from_gguf(src, f);
    const char *slash = strrchr(src, '/');
    if (!strcmp(slash ? slash + 1 : src, "tokenizer_config.json"))
        return chat_from_tokenizer_config(src, f);
    /* a tokenizer.json or .model file: look in its directory */
    char dir[4096];
    int dl = slash ? (int)(slash - src) : 1;
    snprintf(dir, sizeof dir, "%.*s", dl, slash ? src : ".");
    return chat_from_dir(dir, f);
}

/* ---- public ------------------------------------------------------------- */

kiln_status chat_tmpl_load(const char *src, const char *template_file, chat_tmpl **out)
{
    chat_found f;
    chat_tmpl *c = NULL;
    kiln_status st;

    *out = NULL;
    memset(&f, 0, sizeof f);
    if ((st = chat_find(src, &f)))
        goto out;
    if (template_file) {
        snprintf(f.origin, sizeof f.origin, "%s", template_file);
        if ((st = chat_read_file(template_file, &f.text)))
            goto out;
    }
    if (!f.text.len) {
        st = kiln_err_set(KILN_ERR_NOT_FOUND,
                          "%s has no chat template; pass one with --chat-template FILE", src);
        goto out;
    }
    if (!(c = kiln_calloc(1, sizeof *c))) {
        st = kiln_err_set(KILN_ERR_OOM, "out of memory");
        goto out;
    }
    if ((st = ctpl_compile(f.text.data, f.text.len, &c->tpl))) {
        kiln_err_wrap(st, "chat template of %s", f.origin);
        goto out;
    }
    c->bos = buf_detach(&f.bos);
    c->eos = buf_detach(&f.eos);
    if (!c->bos || !c->eos)
        st = kiln_err_set(KILN_ERR_OOM, "out of memory");
out:
    buf_free(&f.text);
    buf_free(&f.bos);
    buf_free(&f.eos);
    if (st) {
        chat_tmpl_free(c);
        return st;
    }
    *out = c;
    return KILN_OK;
}

void chat_tmpl_free(chat_tmpl *c)
{
    if (!c)
        return;
    ctpl_free(c->tpl);
    kiln_free(c->bos);
    kiln_free(c->eos);
    kiln_free(c);
}

const char *chat_bos_token(const chat_tmpl *c) { return c->bos; }
const char *chat_eos_token(const chat_tmpl *c) { return c->eos; }

kiln_status chat_render(const chat_tmpl *c, json_t *request, bool add_generation_prompt,
                        kiln_buf *out)
{
    json_t *ctx;
    kiln_status st;

    if (json_is_array(request)) {
        ctx = json_object();
        json_object_set(ctx, "messages", request);
    } else if (json_is_object(request) && json_is_array(json_object_get(request, "messages"))) {
        ctx = json_deep_copy(request);
    } else {
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "chat request must be a list of messages or an object with a "
                            "\"messages\" list");
    }
    if (!ctx)
        return kiln_err_set(KILN_ERR_OOM, "out of memory");
    if (!json_object_get(ctx, "add_generation_prompt"))
        json_object_set_new(ctx, "add_generation_prompt", json_boolean(add_generation_prompt));
    if (!json_object_get(ctx, "bos_token"))
        json_object_set_new(ctx, "bos_token", json_string(c->bos));
    if (!json_object_get(ctx, "eos_token"))
        json_object_set_new(ctx, "eos_token", json_string(c->eos));
    st = ctpl_render(c->tpl, ctx, out);
    json_decref(ctx);
    return st;
}
