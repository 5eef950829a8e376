/*
 * model_source.c - open a GGUF file, a Hugging Face directory or (for
 * describing it) a lone safetensors file as one kind of thing; see
 * model_source.h.
 *
 * Invariants: `tensors` holds one entry per tensor of the underlying reader,
 * in the reader's order, with names and data borrowed from it; the readers
 * stay open for the life of the source.  A source of kind MSRC_ST_FILE keeps
 * the config as mcfg_init() left it (arch MCFG_ARCH_UNKNOWN).
 */
#include "format/model_source.h"

#include "base/alloc.h"
#include "base/error.h"
#include "base/fmap.h"
#include "format/gguf.h"
#include "format/hf_config.h"
#include "format/safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

struct model_source {
    msrc_kind kind;
    char *path;                /* owned */
    char *name;                /* owned */
    model_config config;
    gguf_file *gguf;           /* MSRC_GGUF                */
    st_model *st;              /* MSRC_HF_DIR, MSRC_ST_FILE */
    msrc_tensor *tensors;      /* owned array of n_tensors */
    int64_t n_tensors;
    msrc_tokenizer tokenizer;
    char *chat_template;       /* owned copy (HF) or NULL */
    const char *chat_template_ref; /* borrowed view (GGUF or the copy) */
    size_t chat_template_len;
};

/* ---- helpers ------------------------------------------------------------ */

static kiln_status msrc_path_join(const char *dir, const char *file, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s/%s", dir, file);
    if (n < 0 || (size_t)n >= cap)
        return kiln_err_set(KILN_ERR_RANGE, "%s: path too long", dir);
    return KILN_OK;
}

static bool msrc_file_exists(const char *dir, const char *file)
{
    char p[4096];
    struct stat sb;
    return msrc_path_join(dir, file, p, sizeof p) == KILN_OK && stat(p, &sb) == 0 &&
           S_ISREG(sb.st_mode);
}

/* Load dir/file as JSON; NULL (and no error) when the file is absent. */
static kiln_status msrc_load_json(const char *dir, const char *file, json_t **out)
{
    char p[4096];
    json_error_t je;
    kiln_status st;

    *out = NULL;
    if ((st = msrc_path_join(dir, file, p, sizeof p)))
        return st;
    if (!msrc_file_exists(dir, file))
        return KILN_OK;
    *out = json_load_file(p, JSON_REJECT_DUPLICATES, &je);
    if (!*out)
        return kiln_err_set(KILN_ERR_FORMAT, "%s: line %d column %d: %s", p, je.line,
                            je.column, je.text);
    return KILN_OK;
}

static kiln_status msrc_alloc_tensors(model_source *m, int64_t n)
{
    m->n_tensors = n;
    m->tensors = kiln_calloc(n > 0 ? (size_t)n : 1, sizeof *m->tensors);
    if (!m->tensors)
        return kiln_err_set(KILN_ERR_OOM, "%s: out of memory for %lld tensors", m->path,
                            (long long)n);
    return KILN_OK;
}

static void msrc_set_elems(msrc_tensor *t)
{
    t->n_elems = 1;
    for (int d = 0; d < t->n_dims; d++)
        t->n_elems *= t->shape[d]; /* readers checked the product fits */
}

/* The tensor table of m->st, opened already. */
static kiln_status msrc_take_st_tensors(model_source *m)
{
    kiln_status st;
    if ((st = msrc_alloc_tensors(m, st_tensor_count(m->st))))
        return st;
    for (int64_t i = 0; i < m->n_tensors; i++) {
        const st_tensor *s = st_tensor_at(m->st, i);
        msrc_tensor *t = &m->tensors[i];
        t->name = s->name;
        t->dtype = s->dtype;
        t->n_dims = s->n_dims;
        memcpy(t->shape, s->shape, sizeof t->shape);
        t->nbytes = s->nbytes;
        t->data = s->data;
        msrc_set_elems(t);
    }
    return KILN_OK;
}

static bool msrc_has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcasecmp(s + n - k, suffix);
}

/* Is the regular file at path (size bytes) a safetensors file rather than
 * GGUF?  GGUF magic or a .gguf name: no.  A .safetensors name: yes, however
 * broken, so that its reader names the problem.  Otherwise by the header
 * shape: a u64 length N (2 <= N <= ST_MAX_HEADER_BYTES) that fits in the
 * file, then '{'.  Anything else goes to the GGUF reader, whose message
 * says it is not a GGUF file. */
static bool msrc_is_safetensors(const char *path, uint64_t size)
{
    uint8_t h[9];
    uint64_t n = 0;
    size_t got = 0;
    FILE *f = fopen(path, "rb");

    if (f) {
        got = fread(h, 1, sizeof h, f);
        fclose(f);
    }
    if ((got >= 4 && !memcmp(h, "GGUF", 4)) || msrc_has_suffix(path, ".gguf"))
        return false;
    if (msrc_has_suffix(path, ".safetensors"))
        return true;
    if (got < sizeof h)
        return false;
    for (int k = 7; k >= 0; k--)
        n = n << 8 | h[k];
    return size >= sizeof h && n >= 2 && n <= ST_MAX_HEADER_BYTES && n <= size - 8 &&
           h[8] == '{';
}

/* ---- GGUF --------------------------------------------------------------- */

static msrc_tokenizer msrc_gguf_tokenizer(const gguf_file *g)
{
    const char *s;
    size_t n;
    if (gguf_get_str(g, "tokenizer.ggml.model", &s, &n) != KILN_OK)
        return MSRC_TOK_NONE;
    if (n == 5 && !memcmp(s, "llama", 5))
        return MSRC_TOK_SPM_BPE;
    if (n == 4 && !memcmp(s, "gpt2", 4))
        return MSRC_TOK_BPE_BYTELEVEL;
    if (n == 4 && !memcmp(s, "bert", 4))
        return MSRC_TOK_WORDPIECE;
    if (n == 2 && !memcmp(s, "t5", 2))
        return MSRC_TOK_SPM_UNIGRAM;
    if ((n == 2 && !memcmp(s, "no", 2)) || (n == 4 && !memcmp(s, "none", 4)))
        return MSRC_TOK_NONE;
    return MSRC_TOK_OTHER;
}

static kiln_status msrc_open_gguf(model_source *m)
{
    const char *s;
    size_t n;
    kiln_status st;

    m->kind = MSRC_GGUF;
    if ((st = gguf_open(m->path, &m->gguf)))
        return st;
    if ((st = gguf_to_model_config(m->gguf, &m->config)))
        return kiln_err_wrap(st, "%s", m->path);
    if ((st = msrc_alloc_tensors(m, gguf_tensor_count(m->gguf))))
        return st;
    for (int64_t i = 0; i < m->n_tensors; i++) {
        const gguf_tensor *gt = gguf_tensor_at(m->gguf, i);
        msrc_tensor *t = &m->tensors[i];
        t->name = gt->name;
        t->dtype = gt->type;
        t->n_dims = gt->n_dims;
        for (int d = 0; d < gt->n_dims; d++)
            t->shape[d] = gt->ne[gt->n_dims - 1 - d];
        t->nbytes = gt->nbytes;
        t->data = gt->data;
        msrc_set_elems(t);
    }
    m->tokenizer = msrc_gguf_tokenizer(m->gguf);
    if (gguf_get_str(m->gguf, "tokenizer.chat_template", &s, &n) == KILN_OK) {
        m->chat_template_ref = s;
        m->chat_template_len = n;
    }
    if (gguf_get_str(m->gguf, "general.name", &s, &n) == KILN_OK && n > 0)
        m->name = kiln_strndup(s, n);
    return KILN_OK;
}

/* ---- Hugging Face directory ------------------------------------------ */

static const char *msrc_json_type(json_t *obj, const char *key)
{
    json_t *o = json_object_get(obj, key);
    return json_is_object(o) ? json_string_value(json_object_get(o, "type")) : NULL;
}

/* Does a normalizer/pre_tokenizer/decoder (or a Sequence of them) use `type`? */
static bool msrc_json_uses(json_t *node, const char *type)
{
    const char *t;
    json_t *v;
    size_t i;
    if (!json_is_object(node))
        return false;
    t = json_string_value(json_object_get(node, "type"));
    if (t && !strcmp(t, type))
        return true;
    json_array_foreach(json_object_get(node, "pretokenizers"), i, v) if (msrc_json_uses(v, type))
        return true;
    json_array_foreach(json_object_get(node, "decoders"), i, v) if (msrc_json_uses(v, type))
        return true;
    return false;
}

static kiln_status msrc_hf_tokenizer(model_source *m)
{
    json_t *tj;
    kiln_status st;

    m->tokenizer = MSRC_TOK_NONE;
    if ((st = msrc_load_json(m->path, "tokenizer.json", &tj)))
        return st;
    if (tj) {
        const char *mt = msrc_json_type(tj, "model");
        json_t *model = json_object_get(tj, "model");
        if (!mt)
            m->tokenizer = MSRC_TOK_OTHER;
        else if (!strcmp(mt, "WordPiece"))
            m->tokenizer = MSRC_TOK_WORDPIECE;
        else if (!strcmp(mt, "Unigram"))
            m->tokenizer = MSRC_TOK_SPM_UNIGRAM;
        else if (!strcmp(mt, "BPE"))
            m->tokenizer = (msrc_json_uses(json_object_get(tj, "pre_tokenizer"), "ByteLevel") ||
                            msrc_json_uses(json_object_get(tj, "decoder"), "ByteLevel")) &&
                                   !json_is_true(json_object_get(model, "byte_fallback"))
                               ? MSRC_TOK_BPE_BYTELEVEL
                               : MSRC_TOK_SPM_BPE;
        else
            m->tokenizer = MSRC_TOK_OTHER;
        json_decref(tj);
    } else if (msrc_file_exists(m->path, "tokenizer.model")) {
        m->tokenizer = MSRC_TOK_SPM_BPE;
    } else if (msrc_file_exists(m->path, "vocab.txt")) {
        m->tokenizer = MSRC_TOK_WORDPIECE;
    }
    return KILN_OK;
}

static kiln_status msrc_set_template(model_source *m, const char *text)
{
    m->chat_template = kiln_strdup(text);
    if (!m->chat_template)
        return kiln_err_set(KILN_ERR_OOM, "out of memory");
    m->chat_template_ref = m->chat_template;
    m->chat_template_len = strlen(text);
    return KILN_OK;
}

/* A chat template: tokenizer_config.json "chat_template" (a string, or a
 * list of {name, template} of which "default" is used), else
 * chat_template.jinja, else chat_template.json. */
static kiln_status msrc_hf_chat_template(model_source *m)
{
    json_t *cfg, *ct, *v;
    kiln_status st = KILN_OK;
    size_t i;

    if ((st = msrc_load_json(m->path, "tokenizer_config.json", &cfg)))
        return st;
    ct = json_object_get(cfg, "chat_template");
    if (json_is_string(ct))
        st = msrc_set_template(m, json_string_value(ct));
    json_array_foreach(json_is_array(ct) ? ct : NULL, i, v) {
        const char *nm = json_string_value(json_object_get(v, "name"));
        const char *tp = json_string_value(json_object_get(v, "template"));
        if (nm && tp && !strcmp(nm, "default") && !m->chat_template)
            st = msrc_set_template(m, tp);
    }
    json_decref(cfg);
    if (st || m->chat_template)
        return st;
    if (msrc_file_exists(m->path, "chat_template.jinja")) {
        char p[4096];
        fmap *f;
        if ((st = msrc_path_join(m->path, "chat_template.jinja", p, sizeof p)) ||
            (st = fmap_open(p, &f)))
            return st;
        m->chat_template = kiln_strndup(fmap_size(f) ? (const char *)fmap_data(f) : "",
                                        fmap_size(f));
        fmap_close(f);
        if (!m->chat_template)
            return kiln_err_set(KILN_ERR_OOM, "out of memory");
        m->chat_template_ref = m->chat_template;
        m->chat_template_len = strlen(m->chat_template);
        return KILN_OK;
    }
    if ((st = msrc_load_json(m->path, "chat_template.json", &cfg)))
        return st;
    ct = json_object_get(cfg, "chat_template");
    if (json_is_string(ct))
        st = msrc_set_template(m, json_string_value(ct));
    json_decref(cfg);
    return st;
}

static kiln_status msrc_open_hf(model_source *m)
{
    kiln_status st;

    m->kind = MSRC_HF_DIR;
    if (!msrc_file_exists(m->path, "config.json"))
        return kiln_err_set(KILN_ERR_NOT_FOUND,
                            "%s: no config.json: not a Hugging Face model directory", m->path);
    if ((st = hf_config_load_dir(m->path, &m->config)))
        return kiln_err_wrap(st, "%s", m->path);
    if ((st = st_open_dir(m->path, &m->st)) || (st = msrc_take_st_tensors(m)))
        return st;
    if ((st = msrc_hf_tokenizer(m)))
        return st;
    return msrc_hf_chat_template(m);
}

/* ---- a lone safetensors file ---------------------------------------------- */

/* Tensors only: no config.json, so no architecture, tokenizer or template. */
static kiln_status msrc_open_st_file(model_source *m, bool lone_ok)
{
    kiln_status st;

    m->kind = MSRC_ST_FILE;
    if (!lone_ok)
        return kiln_err_set(KILN_ERR_NOT_FOUND,
                            "%s: a safetensors file on its own has no config.json, so its "
                            "architecture is unknown; give the model directory that holds "
                            "config.json and the weights", m->path);
    if ((st = st_open_file(m->path, &m->st)) || (st = msrc_take_st_tensors(m)))
        return st;
    m->tokenizer = MSRC_TOK_NONE;
    return KILN_OK;
}

/* ---- public ------------------------------------------------------------- */

static kiln_status msrc_open_as(const char *path, bool lone_ok, model_source **out)
{
    struct stat sb;
    model_source *m;
    kiln_status st;

    *out = NULL;
    if (stat(path, &sb) != 0)
        return kiln_err_set(KILN_ERR_NOT_FOUND, "%s: %s", path, strerror(errno));
    if (!(m = kiln_calloc(1, sizeof *m)) || !(m->path = kiln_strdup(path))) {
        kiln_free(m);
        return kiln_err_set(KILN_ERR_OOM, "out of memory");
    }
    mcfg_init(&m->config);
    if (S_ISDIR(sb.st_mode))
        st = msrc_open_hf(m);
    else if (S_ISREG(sb.st_mode) && msrc_is_safetensors(path, (uint64_t)sb.st_size))
        st = msrc_open_st_file(m, lone_ok);
    else
        st = msrc_open_gguf(m);
    if (st == KILN_OK && !m->name) {
        const char *base = strrchr(path, '/');
        base = base && base[1] ? base + 1 : path;
        if (!(m->name = kiln_strdup(base)))
            st = kiln_err_set(KILN_ERR_OOM, "out of memory");
    }
    if (st) {
        msrc_close(m);
        return st;
    }
    *out = m;
    return KILN_OK;
}

kiln_status msrc_open(const char *path, model_source **out)
{
    return msrc_open_as(path, false, out);
}

kiln_status msrc_open_any(const char *path, model_source **out)
{
    return msrc_open_as(path, true, out);
}

void msrc_close(model_source *m)
{
    if (!m)
        return;
    gguf_close(m->gguf);
    st_close(m->st);
    kiln_free(m->tensors);
    kiln_free(m->chat_template);
    kiln_free(m->name);
    kiln_free(m->path);
    kiln_free(m);
}

msrc_kind msrc_get_kind(const model_source *m) { return m->kind; }
const char *msrc_path(const model_source *m) { return m->path; }
const char *msrc_name(const model_source *m) { return m->name; }
const model_config *msrc_config(const model_source *m) { return &m->config; }
int64_t msrc_tensor_count(const model_source *m) { return m->n_tensors; }
msrc_tokenizer msrc_tokenizer_kind(const model_source *m) { return m->tokenizer; }
gguf_file *msrc_gguf(const model_source *m) { return m->gguf; }
st_model *msrc_safetensors(const model_source *m) { return m->st; }

int32_t msrc_file_count(const model_source *m)
{
    return m->kind == MSRC_GGUF ? 1 : st_shard_count(m->st);
}

const msrc_tensor *msrc_tensor_at(const model_source *m, int64_t i)
{
    return i >= 0 && i < m->n_tensors ? &m->tensors[i] : NULL;
}

const msrc_tensor *msrc_find_tensor(const model_source *m, const char *name)
{
    for (int64_t i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name))
            return &m->tensors[i];
    return NULL;
}

const char *msrc_tokenizer_name(msrc_tokenizer t)
{
    switch (t) {
    case MSRC_TOK_NONE: return "none";
    case MSRC_TOK_BPE_BYTELEVEL: return "byte-level BPE";
    case MSRC_TOK_SPM_BPE: return "SentencePiece BPE";
    case MSRC_TOK_SPM_UNIGRAM: return "SentencePiece unigram";
    case MSRC_TOK_WORDPIECE: return "WordPiece";
    case MSRC_TOK_OTHER: return "other";
    }
    return "other";
}

const char *msrc_chat_template(const model_source *m, size_t *len)
{
    if (len)
        *len = m->chat_template_len;
    return m->chat_template_ref;
}
