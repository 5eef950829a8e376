/*
 * hftok.c - tokenizer.json loading and the encode / decode pipelines.
 *
 *   encode:  bytes --uni_sanitize--> text
 *            text --added_split(raw tokens)--> token | stretch
 *            stretch --norm_apply--> normalized
 *            normalized --added_split(normalized tokens)--> token | piece
 *            piece --pretok_run--> words --bpe_encode / wp_encode--> ids
 *            ids --truncation--> --pp_apply (add_special only)--> ids
 *   decode:  ids --(skip specials)--> token strings --dec_run--> text
 *
 * Truncation: a "truncation" object in the file is applied to the single
 * sequence (max_length less the ids the post-processor adds when
 * add_special; direction Left keeps the end); stride and strategy have no
 * effect on one sequence.  "padding" is ignored: padding is a batching
 * concern of the caller.
 */
#include "tokenizer/hftok_impl.h"

#include "base/alloc.h"
#include "base/error.h"
#include "tokenizer/hfjson.h"
#include "tokenizer/unicode.h"

#include <string.h>

/* ---- per-call scratch ------------------------------------------------------------- */

typedef struct hf_call {
    const hftok *t;
    kiln_ids *out;
    kiln_buf clean, normed, nscr[2], wtmp;
    added_segs raw, nseg;
    pretok_state *pst;
    bpe_scratch *bsc;
    pcre2_match_data *md;
    kiln_ids pp_tmp;
    int64_t max_len;    /* -1: the file's truncation; 0: none; > 0: this many ids */
} hf_call;

static void call_free(hf_call *c)
{
    buf_free(&c->clean);
    buf_free(&c->normed);
    buf_free(&c->nscr[0]);
    buf_free(&c->nscr[1]);
    buf_free(&c->wtmp);
    kiln_free(c->raw.v);
    kiln_free(c->nseg.v);
    pretok_state_free(c->pst);
    bpe_scratch_free(c->bsc);
    hfre_md_free(c->md);
    ids_free(&c->pp_tmp);
}

static kiln_status call_init(hf_call *c, const hftok *t, kiln_ids *out)
{
    kiln_status rc;
    memset(c, 0, sizeof(*c));
    c->t = t;
    c->out = out;
    c->max_len = -1;
    if ((rc = pretok_state_new(t->pre, &c->pst)))
        return rc;
    if (t->bpe && (rc = bpe_scratch_new(&c->bsc)))
        return rc;
    if (!(c->md = hfre_md_create()))
        return kiln_err_set(KILN_ERR_OOM, "tokenizer: out of memory");
    return KILN_OK;
}

/* ---- encoding ---------------------------------------------------------------------- */

static kiln_status emit_word(void *ctx, const char *s, size_t len)
{
    hf_call *c = ctx;
    if (c->t->bpe)
        return bpe_encode(c->t->bpe, c->bsc, s, len, c->out);
    return wp_encode(c->t->wp, &c->wtmp, s, len, c->out);
}

/* One stretch of raw text between raw added-token matches. */
static kiln_status encode_stretch(hf_call *c, const char *s, size_t len, bool first)
{
    const hftok *t = c->t;
    kiln_status rc;
    size_t k;
    if (t->norm) {
        if ((rc = norm_apply(t->norm, s, len, &c->normed, c->nscr, c->md)))
            return rc;
        s = c->normed.data ? c->normed.data : "";
        len = c->normed.len;
    }
    if (len == 0)
        return KILN_OK;
    if (t->added.norm.n == 0)
        return pretok_run(t->pre, c->pst, s, len, first, emit_word, c);
    if ((rc = added_split(&t->added, true, s, len, &c->nseg)))
        return rc;
    for (k = 0; k < c->nseg.n; k++) {
        added_seg g = c->nseg.v[k];
        if (g.tok >= 0)
            rc = ids_push(c->out, t->added.toks[g.tok].id);
        else
            rc = pretok_run(t->pre, c->pst, s + g.s, g.e - g.s, first && g.s == 0, emit_word, c);
        if (rc)
            return rc;
    }
    return KILN_OK;
}

static kiln_status finish_ids(hf_call *c, size_t mark, bool add_special)
{
    const hftok *t = c->t;
    kiln_ids *out = c->out;
    bool truncate = c->max_len < 0 ? t->truncate : c->max_len > 0;
    size_t limit = c->max_len < 0 ? t->trunc_max : (size_t)c->max_len;
    if (truncate) {
        size_t added = add_special ? pp_added(t->post) : 0;
        size_t max = limit > added ? limit - added : 0;
        size_t n = out->len - mark;
        if (n > max) {
            if (t->trunc_left)
                memmove(out->data + mark, out->data + mark + (n - max), max * sizeof(int32_t));
            out->len = mark + max;
        }
    }
    if (add_special && t->post)
        return pp_apply(t->post, out, mark, &c->pp_tmp);
    return KILN_OK;
}

static kiln_status encode_all(hf_call *c, const char *s, size_t len, bool add_special)
{
    const hftok *t = c->t;
    size_t mark = c->out->len, k;
    kiln_status rc;
    if (uni_valid_prefix(s, len) != len) {
        if ((rc = uni_sanitize(s, len, &c->clean)))
            return rc;
        s = c->clean.data;
        len = c->clean.len;
    }
    if ((rc = added_split(&t->added, false, s, len, &c->raw)))
        return rc;
    for (k = 0; k < c->raw.n; k++) {
        added_seg g = c->raw.v[k];
        if (g.tok >= 0)
            rc = ids_push(c->out, t->added.toks[g.tok].id);
        else if (g.e > g.s)
            rc = encode_stretch(c, s + g.s, g.e - g.s, g.s == 0);
        if (rc)
            return rc;
    }
    return finish_ids(c, mark, add_special);
}

kiln_status hftok_encode(const hftok *t, const char *text, size_t len, bool add_special,
                         kiln_ids *out)
{
    return hftok_encode_trunc(t, text, len, add_special, -1, out);
}

kiln_status hftok_encode_trunc(const hftok *t, const char *text, size_t len, bool add_special,
                               int64_t max_len, kiln_ids *out)
{
    hf_call c;
    size_t mark = out->len;
    kiln_status rc = call_init(&c, t, out);
    c.max_len = max_len < 0 ? -1 : max_len;
    if (!rc)
        rc = encode_all(&c, len ? text : "", len, add_special);
    call_free(&c);
    if (rc)
        out->len = mark;
    return rc;
}

/* ---- decoding ---------------------------------------------------------------------- */

static const char *id_piece(const hftok *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_ids)
        return NULL;
    if (t->added_of[id] >= 0)
        return added_spelling(&t->added, (size_t)t->added_of[id], len);
    return vocab_piece(t->voc, id, len);
}

kiln_status hftok_decode(const hftok *t, const int32_t *ids, size_t n, bool skip_special,
                         kiln_buf *out)
{
    dec_list toks = {0};
    kiln_status rc = KILN_OK;
    size_t k, len;
    for (k = 0; k < n && !rc; k++) {
        const char *p = id_piece(t, ids[k], &len);
        if (!p)
            rc = kiln_err_set(KILN_ERR_RANGE, "decode: token id %d is not in the vocabulary",
                              (int)ids[k]);
        else if (!(skip_special && t->special[ids[k]]))
            rc = dec_list_push(&toks, p, len);
    }
    if (!rc)
        rc = dec_run(t->dec, &toks, out);
    dec_list_free(&toks);
    return rc;
}

/* ---- sealing ------------------------------------------------------------------------ */

static kiln_status norm_token(void *ctx, const char *s, size_t len, kiln_buf *out)
{
    const hftok *t = ctx;
    kiln_buf scr[2] = {{0}, {0}};
    pcre2_match_data *md = hfre_md_create();
    kiln_status rc = md ? norm_apply(t->norm, s, len, out, scr, md)
                        : kiln_err_set(KILN_ERR_OOM, "tokenizer: out of memory");
    buf_free(&scr[0]);
    buf_free(&scr[1]);
    hfre_md_free(md);
    return rc;
}

static int32_t named_special(const hftok *t, const char *const *names)
{
    size_t i, k;
    for (i = 0; names[i]; i++)
        for (k = 0; k < t->added.n; k++)
            if (t->added.toks[k].special && strcmp(t->added.toks[k].content, names[i]) == 0)
                return t->added.toks[k].id;
    return -1;
}

static void pick_bos_eos(hftok *t)
{
    static const char *const bos[] = {"<|begin_of_text|>", "<s>", "<bos>",
                                      "<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence"
                                      "\xEF\xBD\x9C>", "<|startoftext|>", "[CLS]", NULL};
    static const char *const eos[] = {"<|end_of_text|>", "</s>", "<eos>",
                                      "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence"
                                      "\xEF\xBD\x9C>", "<|endoftext|>", "[SEP]", NULL};
    t->bos = pp_first_before(t->post);
    t->eos = pp_first_after(t->post);
    if (t->bos < 0)
        t->bos = named_special(t, bos);
    if (t->eos < 0)
        t->eos = named_special(t, eos);
}

static const char *pick_kind(const hftok *t)
{
    if (t->wp)
        return "WordPiece";
    if (pretok_is_byte_level(t->pre))
        return "byte-level BPE";
    if (bpe_byte_fallback(t->bpe) || pretok_has_metaspace(t->pre))
        return "BPE (byte fallback / Metaspace)";
    return "BPE";
}

kiln_status hftok_seal(hftok *t)
{
    kiln_status rc;
    size_t k;
    int64_t n = t->voc->n_ids, i;
    if ((rc = added_index(&t->added, t->norm ? norm_token : NULL, t)))
        return rc;
    for (k = 0; k < t->added.n; k++)
        if (t->added.toks[k].id >= n)
            n = (int64_t)t->added.toks[k].id + 1;
    t->n_ids = n;
    t->added_of = kiln_malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    t->special = kiln_calloc((size_t)(n ? n : 1), 1);
    if (!t->added_of || !t->special)
        return kiln_err_set(KILN_ERR_OOM, "tokenizer: out of memory");
    for (i = 0; i < n; i++)
        t->added_of[i] = -1;
    for (k = 0; k < t->added.n; k++) {
        const added_tok *a = &t->added.toks[k];
        int32_t same = vocab_find(t->voc, a->content, a->len);
        t->added_of[a->id] = (int32_t)k;
        if (a->special) {
            t->special[a->id] = 1;
            if (same >= 0)
                t->special[same] = 1;
        }
    }
    pick_bos_eos(t);
    t->kind = pick_kind(t);
    return KILN_OK;
}

/* ---- tokenizer.json ----------------------------------------------------------------- */

static kiln_status load_model(hftok *t, const json_t *m)
{
    const char *type = hfj_str(m, "type", NULL);
    kiln_status rc;
    if (!json_is_object(m))
        return kiln_err_set(KILN_ERR_FORMAT, "tokenizer.json: no \"model\" object");
    if (!type)
        type = json_object_get(m, "merges") ? "BPE" : "";
    if (strcmp(type, "BPE") == 0) {
        if ((rc = bpe_from_json(m, &t->bpe)))
            return rc;
        t->voc = bpe_vocab(t->bpe);
        return KILN_OK;
    }
    if (strcmp(type, "WordPiece") == 0) {
        if ((rc = wp_from_json(m, &t->wp)))
            return rc;
        t->voc = wp_vocab(t->wp);
        return KILN_OK;
    }
    return kiln_err_set(KILN_ERR_UNSUPPORTED, "tokenizer.json: model type '%s' is not supported",
                        type);
}

/* The id `tokenizers` gives an added token: its id in the model vocab (or
 * of an added token with the same content), else the next id after the
 * model vocab and the added tokens so far.  The "id" written in the file is
 * not consulted (the library only warns when it differs). */
static int32_t added_id(const hftok *t, const char *s, size_t len, int64_t *max_added)
{
    int64_t n_model = t->voc->n_entries, id;
    size_t k;
    for (k = 0; k < t->added.n; k++)
        if (t->added.toks[k].len == len && memcmp(t->added.toks[k].content, s, len) == 0)
            return t->added.toks[k].id;
    id = vocab_find(t->voc, s, len);
    if (id < 0)
        id = (*max_added < 0) ? n_model
             : (*max_added >= n_model || n_model == 0) ? *max_added + 1 : n_model;
    if (id > *max_added)
        *max_added = id;
    return (int32_t)id;
}

static kiln_status load_added(hftok *t, const json_t *arr)
{
    json_t *a;
    size_t i, len;
    int64_t max_added = -1;
    kiln_status rc;
    json_array_foreach(arr, i, a) {
        const char *s = hfj_str(a, "content", &len);
        if (!s)
            return kiln_err_set(KILN_ERR_FORMAT, "tokenizer.json: added token %zu has no content",
                                i);
        if (len == 0)
            continue;
        int32_t id = added_id(t, s, len, &max_added);
        if (id < 0 || id == INT32_MAX)
            return kiln_err_set(KILN_ERR_RANGE, "tokenizer.json: too many added tokens");
        bool special = hfj_bool(a, "special", false);
        rc = added_add(&t->added, s, len, id, special, hfj_bool(a, "lstrip", false),
                       hfj_bool(a, "rstrip", false), hfj_bool(a, "single_word", false),
                       hfj_bool(a, "normalized", !special));
        if (rc)
            return rc;
    }
    return KILN_OK;
}

static kiln_status load_truncation(hftok *t, const json_t *tr)
{
    const char *dir;
    if (!tr || json_is_null(tr))
        return KILN_OK;
    if (!json_is_integer(json_object_get(tr, "max_length")))
        return kiln_err_set(KILN_ERR_FORMAT, "tokenizer.json: truncation without max_length");
    t->truncate = true;
    t->trunc_max = (size_t)hfj_int(tr, "max_length", 0);
    dir = hfj_str(tr, "direction", NULL);
    t->trunc_left = dir && strcmp(dir, "Left") == 0;
    return KILN_OK;
}

static kiln_status load_root(hftok *t, const json_t *root)
{
    kiln_status rc;
    if ((rc = load_model(t, json_object_get(root, "model"))) ||
        (rc = norm_from_json(json_object_get(root, "normalizer"), &t->norm)) ||
        (rc = pretok_from_json(json_object_get(root, "pre_tokenizer"), &t->pre)) ||
        (rc = pp_from_json(json_object_get(root, "post_processor"), &t->post)) ||
        (rc = dec_from_json(json_object_get(root, "decoder"), &t->dec)) ||
        (rc = load_added(t, json_object_get(root, "added_tokens"))) ||
        (rc = load_truncation(t, json_object_get(root, "truncation"))))
        return rc;
    return hftok_seal(t);
}

kiln_status hftok_load(const char *json, size_t len, hftok **out)
{
    json_error_t jerr;
    json_t *root;
    hftok *t;
    kiln_status rc;
    *out = NULL;
    root = json_loadb(json, len, JSON_ALLOW_NUL, &jerr);
    if (!root)
        return kiln_err_set(KILN_ERR_FORMAT, "tokenizer.json: line %d column %d: %s", jerr.line,
                            jerr.column, jerr.text);
    if (!(t = kiln_calloc(1, sizeof(*t)))) {
        json_decref(root);
        return kiln_err_set(KILN_ERR_OOM, "tokenizer: out of memory");
    }
    rc = json_is_object(root) ? load_root(t, root)
                              : kiln_err_set(KILN_ERR_FORMAT, "tokenizer.json: not an object");
    json_decref(root);
    if (rc) {
        hftok_free(t);
        return rc;
    }
    *out = t;
    return KILN_OK;
}

void hftok_free(hftok *t)
{
    if (!t)
        return;
    bpe_free(t->bpe);
    wp_free(t->wp);
    norm_free(t->norm);
    pretok_free(t->pre);
    pp_free(t->post);
    dec_free(t->dec);
    added_free(&t->added);
    kiln_free(t->added_of);
    kiln_free(t->special);
    kiln_free(t);
}

/* ---- accessors ---------------------------------------------------------------------- */

int64_t hftok_vocab_size(const hftok *t)
{
    return t->n_ids;
}

const char *hftok_piece(const hftok *t, int32_t id, size_t *len)
{
    size_t n = 0;
    const char *p = id_piece(t, id, &n);
    if (len)
        *len = p ? n : 0;
    return p;
}

int32_t hftok_piece_id(const hftok *t, const char *piece, size_t len)
{
    size_t k;
    for (k = 0; k < t->added.n; k++)
        if (t->added.toks[k].len == len && memcmp(t->added.toks[k].content, piece, len) == 0)
            return t->added.toks[k].id;
    return vocab_find(t->voc, piece, len);
}

bool hftok_is_special(const hftok *t, int32_t id)
{
    return id >= 0 && id < t->n_ids && t->special[id];
}

int32_t hftok_bos_id(const hftok *t)
{
    return t->bos;
}

int32_t hftok_eos_id(const hftok *t)
{
    return t->eos;
}

const char *hftok_kind_name(const hftok *t)
{
    return t->kind;
}
