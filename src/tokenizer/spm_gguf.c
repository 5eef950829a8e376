/*
 * spm_gguf.c - GGUF vocabularies with tokenizer.ggml.model = "llama" and the
 * llama.cpp flavour of encoding and decoding (its llm_tokenizer_spm with
 * special-token parsing on, and its detokenize).
 *
 * Loading follows llama.cpp's vocabulary loader: an empty token becomes
 * "[EMPTY_<id>]", duplicate tokens are an error, scores are FLOAT32 or
 * INT32 (0 when absent), token types map to attributes, BOS/EOS/UNK default
 * to 1/2/0 and the file's ids override them when in range, add_bos defaults
 * to true, add_eos to false, add_space_prefix to true.  Tokens whose text
 * names an end-of-generation or fill-in-the-middle marker get the CONTROL
 * attribute, as llama.cpp gives it them.
 *
 * Encoding:
 *   1. Special tokens (CONTROL, USER_DEFINED, UNKNOWN) are cut out of the
 *      text, longest token first (ties: lower id first), each at its
 *      leftmost non-overlapping occurrences inside the still-raw fragments.
 *      Only tokens that occur at all (found in one trie pass) are searched.
 *   2. Each raw fragment that follows a special token, or starts the text,
 *      gets a leading ' ' when add_space_prefix; ' ' -> U+2581.
 *   3. spm_bpe_encode: merge over every token, bytes for the rest.
 * Decoding is llama_detokenize: skip_special = remove_special and no
 * unparse_special (a leading BOS and trailing EOS dropped when the file adds
 * them; control/unknown tokens empty); otherwise every token's text is
 * written.  The output bytes are not UTF-8-checked (byte tokens may leave
 * partial characters), as in llama.cpp.
 */
#include "tokenizer/spm_impl.h"

#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "format/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K_MODEL "tokenizer.ggml.model"
#define K_TOKENS "tokenizer.ggml.tokens"
#define K_SCORES "tokenizer.ggml.scores"
#define K_TYPES "tokenizer.ggml.token_type"

/* ---- loading ------------------------------------------------------------------ */

static kiln_status gguf_token(const gguf_file *g, int64_t i, const char **s, size_t *len,
                              char *empty_name, size_t cap)
{
    kiln_status st = gguf_get_arr_str(g, K_TOKENS, i, s, len);
    if (st == KILN_OK && *len == 0) {
        int n = snprintf(empty_name, cap, "[EMPTY_%lld]", (long long)i);
        *s = empty_name;
        *len = (size_t)n;
    }
    return st;
}

static kiln_status load_tokens(const gguf_file *g, spm_tok **out)
{
    kiln_status st;
    gguf_type et;
    int64_t n;
    size_t total = 0, len;
    const char *s;
    char empty[32];
    if ((st = gguf_get_arr(g, K_TOKENS, &et, &n)))
        return kiln_err_wrap(st, "spm: %s", K_TOKENS);
    if (et != GGUF_TYPE_STRING)
        return kiln_err_set(KILN_ERR_FORMAT, "spm: %s is not an array of strings", K_TOKENS);
    for (int64_t i = 0; i < n; i++) {
        if ((st = gguf_token(g, i, &s, &len, empty, sizeof empty)))
            return st;
        if (!ck_add_size(total, len, &total))
            return kiln_err_set(KILN_ERR_RANGE, "spm: token bytes overflow");
    }
    if ((st = spm_alloc(SPM_FLAVOR_LLAMA, n, total, out)))
        return st;
    for (int64_t i = 0, off = 0; i < n; i++) {
        gguf_token(g, i, &s, &len, empty, sizeof empty);
        memcpy((*out)->text + off, s, len);
        (*out)->off[i] = (uint32_t)off;
        off += (int64_t)len;
        (*out)->off[i + 1] = (uint32_t)off;
    }
    return KILN_OK;
}

/* Fixed-size array `key` with at least t->n elements of an allowed type;
 * *data NULL when the key is absent. */
static kiln_status gguf_array(const gguf_file *g, const spm_tok *t, const char *key,
                              gguf_type a, gguf_type b, gguf_type *et, const void **data)
{
    int64_t n;
    *data = NULL;
    if (gguf_find_key(g, key) < 0)
        return KILN_OK;
    if (gguf_get_arr_data(g, key, et, &n, data) || (*et != a && *et != b))
        return kiln_err_set(KILN_ERR_FORMAT, "spm: %s has the wrong type", key);
    if (n < t->n)
        return kiln_err_set(KILN_ERR_FORMAT, "spm: %s has %lld entries for %d tokens", key,
                            (long long)n, t->n);
    return KILN_OK;
}

static const uint8_t llama_attr[7] = {
    0, SPM_ATTR_NORMAL, SPM_ATTR_UNKNOWN, SPM_ATTR_CONTROL, SPM_ATTR_USER_DEFINED,
    SPM_ATTR_UNUSED, SPM_ATTR_BYTE,
};

static kiln_status load_scores_types(const gguf_file *g, spm_tok *t)
{
    kiln_status st;
    gguf_type et;
    const uint8_t *sc, *ty;
    if ((st = gguf_array(g, t, K_SCORES, GGUF_TYPE_FLOAT32, GGUF_TYPE_INT32, &et,
                         (const void **)&sc)))
        return st;
    for (int32_t i = 0; sc && i < t->n; i++) {
        uint32_t u;
        memcpy(&u, sc + 4 * (size_t)i, 4);
        if (et == GGUF_TYPE_INT32)
            t->score[i] = (float)(int32_t)u;
        else
            memcpy(&t->score[i], &u, 4);
    }
    if ((st = gguf_array(g, t, K_TYPES, GGUF_TYPE_INT32, GGUF_TYPE_INT32, &et,
                         (const void **)&ty)))
        return st;
    for (int32_t i = 0; i < t->n; i++) {
        int32_t v = SPM_TYPE_NORMAL;
        if (ty)
            memcpy(&v, ty + 4 * (size_t)i, 4);
        t->type[i] = (uint8_t)(v >= 0 && v <= 6 ? v : SPM_TYPE_UNDEFINED);
        t->attr[i] = llama_attr[t->type[i]];
    }
    return KILN_OK;
}

/* A special id: the file's value when it is in range, else the default
 * (itself cleared when out of range). */
static int32_t special_id(const gguf_file *g, const char *key, int32_t def, int32_t n)
{
    int64_t v;
    if (def >= n)
        def = -1;
    if (gguf_find_key(g, key) >= 0 && gguf_get_i64(g, key, &v) == KILN_OK && v >= 0 && v < n)
        return (int32_t)v;
    return def;
}

static bool gguf_flag(const gguf_file *g, const char *key, bool def)
{
    bool v;
    return gguf_find_key(g, key) >= 0 && gguf_get_bool(g, key, &v) == KILN_OK ? v : def;
}

/* Texts llama.cpp marks CONTROL whatever the file says (end of generation,
 * end of turn/message, fill-in-the-middle markers). */
static const char *const control_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "[e~[",
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81"
    "begin\xEF\xBD\x9C>", "<PRE>", SPM_WS "<PRE>", "<|code_prefix|>", "<|prefix|>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81"
    "hole\xEF\xBD\x9C>", "<SUF>", SPM_WS "<SUF>", "<|code_suffix|>", "<|suffix|>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81"
    "end\xEF\xBD\x9C>", "<MID>", SPM_WS "<MID>", "<|code_middle|>", "<|middle|>",
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", "<|fim_repo|>",
    "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>",
};

static int32_t find_text(const spm_tok *t, const char *s)
{
    return spm_lookup(t, s, strlen(s));
}

static void fix_attributes(spm_tok *t)
{
    for (size_t i = 0; i < KILN_ARRAY_LEN(control_texts); i++) {
        int32_t id = find_text(t, control_texts[i]);
        if (id >= 0)
            t->attr[id] |= SPM_ATTR_CONTROL;
    }
    static const char *const render[] = {"<|channel|>", "<|message|>", "<|start|>",
                                         "<|constrain|>"};
    for (size_t i = 0; i < KILN_ARRAY_LEN(render); i++) {
        int32_t id = find_text(t, render[i]);
        if (id >= 0)
            t->attr[id] = SPM_ATTR_USER_DEFINED;
    }
    int32_t end = find_text(t, "<|end|>");
    bool harmony = find_text(t, "<|return|>") >= 0 && find_text(t, "<|call|>") >= 0;
    bool solar = find_text(t, "<|calls|>") >= 0 && find_text(t, "<|flush|>") >= 0;
    if (end >= 0 && (harmony || solar))
        t->attr[end] = SPM_ATTR_USER_DEFINED;
    int32_t s_end = find_text(t, "</s>");
    if (s_end >= 0 && find_text(t, "<|tool_response>") >= 0)
        t->attr[s_end] = SPM_ATTR_NORMAL;
}

typedef struct rank_key {
    uint32_t len;
    int32_t id;
} rank_key;

static int rank_cmp(const void *a, const void *b)
{
    const rank_key *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Special tokens: ranked longest first, and a trie of their texts. */
static kiln_status build_specials(spm_tok *t)
{
    kiln_status st = KILN_OK;
    const uint8_t mask = SPM_ATTR_CONTROL | SPM_ATTR_USER_DEFINED | SPM_ATTR_UNKNOWN;
    int32_t k = 0;
    rank_key *keys = kiln_malloc((size_t)t->n * sizeof *keys);
    t->spec_rank = kiln_malloc((size_t)t->n * sizeof *t->spec_rank);
    if (!keys || !t->spec_rank) {
        kiln_free(keys);
        return kiln_err_set(KILN_ERR_OOM, "spm: out of memory (special tokens)");
    }
    for (int32_t id = 0; id < t->n; id++) {
        t->spec_rank[id] = -1;
        if (t->attr[id] & mask)
            keys[k++] = (rank_key){t->off[id + 1] - t->off[id], id};
    }
    qsort(keys, (size_t)k, sizeof *keys, rank_cmp);
    t->n_spec = k;
    if (!(t->spec_by_rank = kiln_malloc(((size_t)k + 1) * sizeof *t->spec_by_rank)))
        st = kiln_err_set(KILN_ERR_OOM, "spm: out of memory (special tokens)");
    for (int32_t r = 0; r < k && !st; r++) {
        int32_t id = keys[r].id;
        t->spec_rank[id] = r;
        t->spec_by_rank[r] = id;
        st = spm_trie_insert(&t->match, t->text + t->off[id], keys[r].len, id);
    }
    kiln_free(keys);
    return st;
}

static kiln_status load_flags(const gguf_file *g, spm_tok *t)
{
    t->bos = special_id(g, "tokenizer.ggml.bos_token_id", 1, t->n);
    t->eos = special_id(g, "tokenizer.ggml.eos_token_id", 2, t->n);
    t->unk = special_id(g, "tokenizer.ggml.unknown_token_id", 0, t->n);
    t->pad = special_id(g, "tokenizer.ggml.padding_token_id", -1, t->n);
    t->add_bos = gguf_flag(g, "tokenizer.ggml.add_bos_token", true);
    t->add_eos = gguf_flag(g, "tokenizer.ggml.add_eos_token", false);
    t->add_space_prefix = gguf_flag(g, "tokenizer.ggml.add_space_prefix", true);
    if (t->add_bos && t->bos < 0)
        return kiln_err_set(KILN_ERR_FORMAT, "spm: add_bos_token is true but there is no BOS id");
    if (t->add_eos && t->eos < 0)
        return kiln_err_set(KILN_ERR_FORMAT, "spm: add_eos_token is true but there is no EOS id");
    return KILN_OK;
}

/* The vocabulary of an open GGUF file whose tokenizer.ggml.model is
 * "llama".  Everything is copied: g may be closed afterwards.  *out is owned
 * by the caller: spm_free().  Errors: KILN_ERR_NOT_FOUND (no model or token
 * list), KILN_ERR_UNSUPPORTED (another tokenizer model), KILN_ERR_FORMAT
 * (wrong key types, short score/type arrays, duplicate tokens, add_bos
 * without BOS), KILN_ERR_OOM, KILN_ERR_RANGE. */
kiln_status spm_from_gguf(const struct gguf_file *g, spm_tok **out)
{
    kiln_status st;
    const char *model;
    size_t mlen;
    spm_tok *t = NULL;
    *out = NULL;
    if ((st = gguf_get_str(g, K_MODEL, &model, &mlen)))
        return kiln_err_wrap(st, "spm: %s", K_MODEL);
    if (mlen != 5 || memcmp(model, "llama", 5) != 0)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "spm: tokenizer model '%.*s' is not 'llama'",
                            (int)(mlen > 32 ? 32 : mlen), model);
    if ((st = load_tokens(g, &t)))
        return st;
    if ((st = load_scores_types(g, t)) || (st = spm_vocab_finish(t, "spm: gguf")) ||
        (st = load_flags(g, t)))
        goto err;
    fix_attributes(t);
    if ((st = build_specials(t)))
        goto err;
    *out = t;
    return KILN_OK;
err:
    spm_free(t);
    return st;
}

/* ---- encoding ------------------------------------------------------------------ */

/* Fragments of the text in order: raw text (id -1) or a special token. */
typedef struct frag {
    size_t start, len;
    int32_t id;
    int32_t next; /* index of the next fragment, -1 at the end */
} frag;

typedef struct frag_list {
    frag *f;
    int32_t n, cap;
} frag_list;

static kiln_status frag_new(frag_list *l, frag v, int32_t *out)
{
    if (l->n == l->cap) {
        int32_t cap = l->cap ? l->cap * 2 : 16;
        frag *nf = l->cap > INT32_MAX / 2 ? NULL : kiln_realloc(l->f, (size_t)cap * sizeof *nf);
        if (!nf)
            return kiln_err_set(KILN_ERR_OOM, "spm: out of memory (fragments)");
        l->f = nf;
        l->cap = cap;
    }
    l->f[l->n] = v;
    *out = l->n++;
    return KILN_OK;
}

/* Bitmap over ranks of the special tokens that occur anywhere in s. */
static kiln_status occurring_specials(const spm_tok *t, const char *s, size_t len,
                                      uint8_t **bits, size_t *n_bits)
{
    const spm_trie *tr = &t->match;
    size_t nb = (size_t)t->n_spec;
    *bits = NULL;
    *n_bits = 0;
    if (nb == 0 || tr->len == 0)
        return KILN_OK;
    if (!(*bits = kiln_calloc((nb + 7) / 8, 1)))
        return kiln_err_set(KILN_ERR_OOM, "spm: out of memory");
    *n_bits = nb;
    for (size_t p = 0; p < len; p++) {
        if (!tr->first_byte[(uint8_t)s[p]])
            continue;
        int32_t node = 0;
        for (size_t i = p; i < len; i++) {
            int32_t k = tr->nodes[node].first;
            while (k >= 0 && tr->nodes[k].label != (uint8_t)s[i])
                k = tr->nodes[k].next;
            if (k < 0)
                break;
            node = k;
            int32_t v = tr->nodes[node].value;
            if (v >= 0)
                (*bits)[t->spec_rank[v] / 8] |= (uint8_t)(1u << (t->spec_rank[v] % 8));
        }
    }
    return KILN_OK;
}

/* Cut every leftmost non-overlapping occurrence of token id out of the raw
 * fragments (llama.cpp's tokenizer_st_partition for one token). */
static kiln_status cut_token(const spm_tok *t, const char *s, frag_list *l, int32_t id)
{
    kiln_status st;
    const char *tok = t->text + t->off[id];
    size_t tl = t->off[id + 1] - t->off[id];
    for (int32_t i = 0; i >= 0; i = l->f[i].next) {
        if (l->f[i].id >= 0 || l->f[i].len < tl)
            continue;
        const char *base = s + l->f[i].start;
        const char *m = memmem(base, l->f[i].len, tok, tl);
        if (!m)
            continue;
        size_t at = (size_t)(m - base), end = l->f[i].start + l->f[i].len;
        int32_t tk, rest = -1;
        if (at + tl < l->f[i].len &&
            (st = frag_new(l, (frag){l->f[i].start + at + tl, end - (l->f[i].start + at + tl),
                                     -1, l->f[i].next}, &rest)))
            return st;
        if ((st = frag_new(l, (frag){l->f[i].start + at, tl, id, rest >= 0 ? rest
                                     : l->f[i].next}, &tk)))
            return st;
        if (at == 0) {
            l->f[i] = l->f[tk]; /* the token takes the fragment's place */
            l->n--;
        } else {
            l->f[i].len = at;
            l->f[i].next = tk;
        }
    }
    return KILN_OK;
}

static kiln_status partition(const spm_tok *t, const char *s, size_t len, frag_list *l)
{
    kiln_status st;
    uint8_t *bits;
    size_t nb;
    int32_t first;
    if ((st = frag_new(l, (frag){0, len, -1, -1}, &first)))
        return st;
    if ((st = occurring_specials(t, s, len, &bits, &nb)))
        return st;
    for (size_t r = 0; bits && r < nb && !st; r++)
        if (bits[r / 8] & (1u << (r % 8)))
            st = cut_token(t, s, l, t->spec_by_rank[r]);
    kiln_free(bits);
    return st;
}

/* One raw fragment: optional ' ' prefix, ' ' -> U+2581, then the merge. */
static kiln_status encode_fragment(const spm_tok *t, const char *s, size_t len, bool prefix,
                                   kiln_buf *tmp, kiln_ids *out)
{
    kiln_status st = KILN_OK;
    size_t run = 0;
    buf_clear(tmp);
    if (prefix && (st = buf_append(tmp, SPM_WS, SPM_WS_LEN)))
        return st;
    for (size_t i = 0; i < len && !st; i++) {
        if (s[i] != ' ')
            continue;
        if (!(st = buf_append(tmp, s + run, i - run)))
            st = buf_append(tmp, SPM_WS, SPM_WS_LEN);
        run = i + 1;
    }
    if (st || (st = buf_append(tmp, s + run, len - run)))
        return st;
    return spm_bpe_encode(t, tmp->data, tmp->len, out);
}

static kiln_status encode_fragments(const spm_tok *t, const char *s, const frag_list *l,
                                    kiln_ids *out)
{
    kiln_status st = KILN_OK;
    kiln_buf tmp = {0};
    bool prev_special = true;
    for (int32_t i = l->n > 0 ? 0 : -1; i >= 0 && !st; i = l->f[i].next) {
        const frag *f = &l->f[i];
        if (f->id >= 0) {
            st = ids_push(out, f->id);
            prev_special = true;
        } else if (f->len > 0) {
            st = encode_fragment(t, s + f->start, f->len, t->add_space_prefix && prev_special,
                                 &tmp, out);
            prev_special = false;
        }
    }
    buf_free(&tmp);
    return st;
}

kiln_status spm_llama_encode(const spm_tok *t, const char *text, size_t len, bool add_special,
                             kiln_ids *out)
{
    kiln_status st;
    frag_list l = {0};
    const char *s;
    size_t slen;
    char *owned = NULL;
    if ((st = spm_utf8_repair(text, len, &s, &slen, &owned)))
        return st;
    if (add_special && t->add_bos && (st = ids_push(out, t->bos)))
        goto done;
    if (slen > 0 && ((st = partition(t, s, slen, &l)) || (st = encode_fragments(t, s, &l, out))))
        goto done;
    if (add_special && t->add_eos)
        st = ids_push(out, t->eos);
done:
    kiln_free(l.f);
    kiln_free(owned);
    return st;
}

/* ---- decoding ------------------------------------------------------------------ */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* llama.cpp's token_to_byte: the hex digits at text[3..5). */
static char token_byte(const char *p, size_t len)
{
    int v = 0;
    for (size_t i = 3; i < 5 && i < len && hex_digit(p[i]) >= 0; i++)
        v = v * 16 + hex_digit(p[i]);
    return (char)v;
}

static kiln_status token_piece(const spm_tok *t, int32_t id, bool unparse, bool lstrip,
                               kiln_buf *out)
{
    const char *p = t->text + t->off[id];
    size_t len = t->off[id + 1] - t->off[id];
    uint8_t a = t->attr[id];
    if (!unparse && (a & (SPM_ATTR_UNKNOWN | SPM_ATTR_CONTROL)))
        return KILN_OK;
    if (a & (SPM_ATTR_UNKNOWN | SPM_ATTR_CONTROL | SPM_ATTR_USER_DEFINED)) {
        if (lstrip && len > 0 && p[0] == ' ')
            p++, len--;
        return buf_append(out, p, len);
    }
    if (a & SPM_ATTR_NORMAL) {
        size_t at = out->len;
        kiln_status st = spm_append_unescaped(p, len, out);
        if (!st && lstrip && out->len > at && out->data[at] == ' ') {
            memmove(out->data + at, out->data + at + 1, out->len - at); /* with the NUL */
            out->len--;
        }
        return st;
    }
    if (a & SPM_ATTR_BYTE) {
        char b = token_byte(p, len);
        return lstrip && b == ' ' ? KILN_OK : buf_append(out, &b, 1);
    }
    return KILN_OK;
}

kiln_status spm_llama_decode(const spm_tok *t, const int32_t *ids, size_t n, bool skip_special,
                             kiln_buf *out)
{
    kiln_status st = KILN_OK;
    bool remove_space = t->add_space_prefix;
    size_t i0 = 0;
    if (skip_special && t->add_bos && n > 0 && ids[0] == t->bos) {
        remove_space = false;
        i0 = 1;
    }
    if (skip_special && t->add_eos && n > i0 && ids[n - 1] == t->eos)
        n--;
    for (size_t i = i0; i < n && !st; i++) {
        st = token_piece(t, ids[i], !skip_special, remove_space, out);
        remove_space = false;
    }
    return st;
}
