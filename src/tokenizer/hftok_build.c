/*
 * hftok_build.c - hftok pipelines from sources other than tokenizer.json.
 *
 * GGUF "gpt2": byte-level BPE over tokenizer.ggml.tokens / merges, with the
 *   pre-tokenizer regexes llama.cpp associates with tokenizer.ggml.pre (each
 *   regex a Split(Isolated) stage, then the byte-level mapping);
 *   ignore_merges for the Llama 3 family; CONTROL tokens are special added
 *   tokens, USER_DEFINED ones plain added tokens (both matched in raw text);
 *   Qwen2's family gets the NFC normalizer its tokenizer.json has (llama.cpp
 *   skips it; kiln follows the model's own tokenizer);
 *   BOS/EOS added as tokenizer.ggml.add_bos_token / add_eos_token say.
 * GGUF "bert": WordPiece.  llama.cpp's converter stores word-initial pieces
 *   as "\u2581piece" and continuation pieces bare; they are turned back into
 *   "piece" / "##piece".  The pipeline is BERT's uncased one (clean text,
 *   CJK spacing, accents stripped, lowercase), [CLS] $A [SEP].  llama.cpp
 *   itself keeps the combining marks NFD exposes; kiln strips them as the
 *   original tokenizer does, so ids match the model's training.
 * vocab.txt: BertWordPieceTokenizer's pipeline (do_lower_case also strips
 *   accents), [PAD]/[UNK]/[CLS]/[SEP]/[MASK] special added tokens.
 */
#include "tokenizer/hftok_impl.h"

#include "base/alloc.h"
#include "base/error.h"
#include "base/fmap.h"
#include "format/gguf.h"

#include <string.h>

/* ---- llama.cpp pre-tokenizer regex sets --------------------------------------------- */

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_CONTRACT "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_LLAMA3 RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+" \
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2 RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+" \
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_DS3 "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}" \
    "\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_CJK_DS "[\xE4\xB8\x80-\xE9\xBE\xA5\xE0\xA0\x80-\xE4\xB8\x80\xEA\xB0\x80-\xED\x9F\xBF]+"

typedef struct pre_set {
    const char *names; /* '|'-separated tokenizer.ggml.pre values */
    bool ignore_merges;
    bool nfc;          /* the family's tokenizer.json normalizes to NFC */
    const char *re[6];
} pre_set;

static const pre_set PRE_SETS[] = {
    {"llama3|llama-v3|llama-bpe|falcon3|pixtral", true, false, {RE_LLAMA3}},
    {"dbrx|smaug-bpe|chatglm-bpe", false, false, {RE_LLAMA3}},
    {"qwen2|deepseek-r1-qwen", false, true, {RE_QWEN2}},
    {"stablelm2|hunyuan", false, false, {RE_QWEN2}},
    {"deepseek-v3|hunyuan-dense", false, false,
     {"\\p{N}{1,3}", "[\xE4\xB8\x80-\xE9\xBE\xA5\xE3\x81\x80-\xE3\x82\x9F\xE3\x82\xA0-"
                     "\xE3\x83\xBF]+", RE_DS3}},
    {"deepseek-coder", false, false,
     {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_CJK_DS, "\\p{N}"}},
    {"falcon", false, false, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b", false, false,
     {"\\p{N}", RE_GPT2}},
    {"gpt-2|phi-2|jina-es|jina-de|jina-v1-en|jina-v2-es|jina-v2-de|jina-v2-code|roberta-bpe|"
     "mpt|olmo|jais|trillion|gigachat", false, false, {RE_GPT2}},
    {"default", false, false, {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}},
};

static bool name_in(const char *names, const char *s, size_t len)
{
    const char *p = names;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && memcmp(p, s, len) == 0)
            return true;
        p += n + (bar ? 1 : 0);
    }
    return false;
}

static const pre_set *find_pre(const char *s, size_t len)
{
    size_t i;
    for (i = 0; i < KILN_ARRAY_LEN(PRE_SETS); i++)
        if (name_in(PRE_SETS[i].names, s, len))
            return &PRE_SETS[i];
    return NULL;
}

/* ---- GGUF helpers ------------------------------------------------------------------- */

enum { GGUF_TOK_NORMAL = 1, GGUF_TOK_UNKNOWN, GGUF_TOK_CONTROL, GGUF_TOK_USER, GGUF_TOK_UNUSED,
       GGUF_TOK_BYTE };

/* Token types (or NULL when absent), read into an owned array of n. */
static kiln_status token_types(const gguf_file *g, int64_t n, int32_t **out)
{
    gguf_type et;
    int64_t cnt, i;
    const void *data;
    *out = NULL;
    if (gguf_find_key(g, "tokenizer.ggml.token_type") < 0)
        return KILN_OK;
    if (gguf_get_arr_data(g, "tokenizer.ggml.token_type", &et, &cnt, &data) ||
        (et != GGUF_TYPE_INT32 && et != GGUF_TYPE_UINT32) || cnt != n)
        return kiln_err_set(KILN_ERR_FORMAT, "gguf tokenizer: bad tokenizer.ggml.token_type");
    if (!(*out = kiln_malloc((size_t)(n ? n : 1) * sizeof(int32_t))))
        return kiln_err_set(KILN_ERR_OOM, "tokenizer: out of memory");
    for (i = 0; i < n; i++)
        memcpy(&(*out)[i], (const char *)data + i * 4, 4);
    return KILN_OK;
}

static int64_t get_id(const gguf_file *g, const char *key, int64_t def)
{
    int64_t v;
    return gguf_get_i64(g, key, &v) == KILN_OK ? v : def;
}

static bool get_flag(const gguf_file *g, const char *key, bool def)
{
    bool v;
    return gguf_get_bool(g, key, &v) == KILN_OK ? v : def;
}

/* Special (CONTROL) and user-defined tokens become raw-matched added tokens. */
static kiln_status add_typed(hftok *t, const gguf_file *g, const int32_t *types, int64_t n)
{
    int64_t i;
    kiln_status rc;
    for (i = 0; types && i < n; i++) {
        const char *s;
        size_t len;
        if (types[i] != GGUF_TOK_CONTROL && types[i] != GGUF_TOK_USER)
            continue;
        if ((rc = gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len)))
            return rc;
        if ((rc = added_add(&t->added, s, len, (int32_t)i, types[i] == GGUF_TOK_CONTROL, false,
                            false, false, false)))
            return rc;
    }
    return KILN_OK;
}

static kiln_status wrap_special(hftok *t, int64_t bos, bool add_bos, int64_t eos, bool add_eos)
{
    int32_t b = (int32_t)bos, e = (int32_t)eos;
    add_bos = add_bos && bos >= 0 && bos < INT32_MAX;
    add_eos = add_eos && eos >= 0 && eos < INT32_MAX;
    return pp_new_wrap(&b, add_bos ? 1 : 0, &e, add_eos ? 1 : 0, &t->post);
}

/* ---- GGUF gpt2 ---------------------------------------------------------------------- */

static kiln_status gpt2_model(hftok *t, const gguf_file *g, int64_t n, bool ignore_merges)
{
    bpe_opts o = {0};
    gguf_type et;
    int64_t i, nm = 0;
    kiln_status rc;
    o.ignore_merges = ignore_merges;
    if ((rc = bpe_new(&o, &t->bpe)))
        return rc;
    t->voc = bpe_vocab(t->bpe);
    for (i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if ((rc = gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len)) ||
            (rc = bpe_add_token(t->bpe, s, len, (int32_t)i)))
            return rc;
    }
    if (gguf_find_key(g, "tokenizer.ggml.merges") >= 0 &&
        (rc = gguf_get_arr(g, "tokenizer.ggml.merges", &et, &nm)))
        return rc;
    for (i = 0; i < nm; i++) {
        const char *s, *sp;
        size_t len;
        if ((rc = gguf_get_arr_str(g, "tokenizer.ggml.merges", i, &s, &len)))
            return rc;
        if (!(sp = memchr(s, ' ', len)))
            return kiln_err_set(KILN_ERR_FORMAT, "gguf tokenizer: merge %lld has no space",
                                (long long)i);
        if ((rc = bpe_add_merge(t->bpe, s, (size_t)(sp - s), sp + 1, len - (size_t)(sp - s) - 1)))
            return rc;
    }
    return bpe_finish(t->bpe);
}

static kiln_status from_gpt2(hftok *t, const gguf_file *g, int64_t n, const int32_t *types)
{
    const char *pre = "default";
    size_t pre_len = 7, k = 0;
    const pre_set *ps;
    kiln_status rc;
    if (gguf_find_key(g, "tokenizer.ggml.pre") >= 0 &&
        (rc = gguf_get_str(g, "tokenizer.ggml.pre", &pre, &pre_len)))
        return rc;
    if (!(ps = find_pre(pre, pre_len)))
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "gguf tokenizer: pre-tokenizer '%.*s' is not "
                            "supported", (int)pre_len, pre);
    while (k < KILN_ARRAY_LEN(ps->re) && ps->re[k])
        k++;
    if (ps->nfc && (rc = norm_new_nfc(&t->norm)))
        return rc;
    if ((rc = gpt2_model(t, g, n, ps->ignore_merges)) ||
        (rc = pretok_new_regexes(ps->re, k, true, &t->pre)) ||
        (rc = dec_new_byte_level(&t->dec)) || (rc = add_typed(t, g, types, n)))
        return rc;
    return wrap_special(t, get_id(g, "tokenizer.ggml.bos_token_id", -1),
                        get_flag(g, "tokenizer.ggml.add_bos_token", ps->ignore_merges),
                        get_id(g, "tokenizer.ggml.eos_token_id", -1),
                        get_flag(g, "tokenizer.ggml.add_eos_token", false));
}

/* ---- GGUF bert / vocab.txt: WordPiece ------------------------------------------------- */

/* Undo llama.cpp's phantom-space spelling of a BERT vocab entry. */
static kiln_status unphantom(const char *s, size_t len, kiln_buf *out)
{
    buf_clear(out);
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']')
        return buf_append(out, s, len);
    if (len >= 3 && memcmp(s, "\xE2\x96\x81", 3) == 0)
        return buf_append(out, s + 3, len - 3);
    if (buf_append(out, "##", 2))
        return KILN_ERR_OOM;
    return buf_append(out, s, len);
}

static kiln_status bert_pipeline(hftok *t, bool lower, int32_t cls, int32_t sep)
{
    kiln_status rc;
    if ((rc = norm_new_bert(true, true, -1, lower, &t->norm)) || (rc = pretok_new_bert(&t->pre)) ||
        (rc = dec_new_wordpiece("##", true, &t->dec)))
        return rc;
    return pp_new_wrap(&cls, cls >= 0 ? 1 : 0, &sep, sep >= 0 ? 1 : 0, &t->post);
}

static kiln_status bert_vocab(hftok *t, const gguf_file *g, int64_t n, kiln_buf *tmp)
{
    int64_t i, unk = get_id(g, "tokenizer.ggml.unknown_token_id", 100);
    kiln_status rc;
    const char *s;
    size_t len;
    if (unk < 0 || unk >= n)
        return kiln_err_set(KILN_ERR_FORMAT, "gguf tokenizer: unknown_token_id out of range");
    if ((rc = gguf_get_arr_str(g, "tokenizer.ggml.tokens", unk, &s, &len)) ||
        (rc = unphantom(s, len, tmp)) || (rc = wp_new(tmp->data, "##", 100, &t->wp)))
        return rc;
    t->voc = wp_vocab(t->wp);
    for (i = 0; i < n; i++) {
        if ((rc = gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len)) ||
            (rc = unphantom(s, len, tmp)) || (rc = wp_add_token(t->wp, tmp->data, tmp->len,
                                                                 (int32_t)i)))
            return rc;
    }
    return wp_finish(t->wp);
}

static kiln_status from_bert(hftok *t, const gguf_file *g, int64_t n, const int32_t *types)
{
    kiln_buf tmp = {0};
    int64_t cls = get_id(g, "tokenizer.ggml.cls_token_id",
                         get_id(g, "tokenizer.ggml.bos_token_id", -1));
    int64_t sep = get_id(g, "tokenizer.ggml.seperator_token_id",
                         get_id(g, "tokenizer.ggml.eos_token_id", -1));
    kiln_status rc = bert_vocab(t, g, n, &tmp);
    buf_free(&tmp);
    if (rc || (rc = add_typed(t, g, types, n)))
        return rc;
    return bert_pipeline(t, true, cls >= 0 && cls < n ? (int32_t)cls : -1,
                         sep >= 0 && sep < n ? (int32_t)sep : -1);
}

kiln_status hftok_from_gguf(const gguf_file *g, hftok **out)
{
    const char *model;
    size_t mlen;
    gguf_type et;
    int64_t n;
    int32_t *types = NULL;
    hftok *t = NULL;
    kiln_status rc;
    *out = NULL;
    if ((rc = gguf_get_str(g, "tokenizer.ggml.model", &model, &mlen)) ||
        (rc = gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n)))
        return kiln_err_wrap(rc, "gguf tokenizer");
    if (et != GGUF_TYPE_STRING || n <= 0 || n > INT32_MAX - 1)
        return kiln_err_set(KILN_ERR_FORMAT, "gguf tokenizer: bad tokenizer.ggml.tokens");
    if ((rc = token_types(g, n, &types)))
        return rc;
    if (!(t = kiln_calloc(1, sizeof(*t))))
        rc = kiln_err_set(KILN_ERR_OOM, "tokenizer: out of memory");
    else if (mlen == 4 && memcmp(model, "gpt2", 4) == 0)
        rc = from_gpt2(t, g, n, types);
    else if (mlen == 4 && memcmp(model, "bert", 4) == 0)
        rc = from_bert(t, g, n, types);
    else
        rc = kiln_err_set(KILN_ERR_UNSUPPORTED, "gguf tokenizer: model '%.*s' is not a "
                          "tokenizer.json kind (gpt2, bert)", (int)mlen, model);
    kiln_free(types);
    if (!rc)
        rc = hftok_seal(t);
    if (rc) {
        hftok_free(t);
        return rc;
    }
    *out = t;
    return KILN_OK;
}

/* ---- vocab.txt ------------------------------------------------------------------------ */

static kiln_status read_vocab_txt(hftok *t, const char *data, size_t size)
{
    size_t pos = 0;
    int32_t id = 0;
    kiln_status rc;
    while (pos < size) {
        const char *nl = memchr(data + pos, '\n', size - pos);
        size_t end = nl ? (size_t)(nl - data) : size, e = end;
        while (e > pos && (data[e - 1] == '\r' || data[e - 1] == ' ' || data[e - 1] == '\t'))
            e--;
        if ((rc = wp_add_token(t->wp, data + pos, e - pos, id++)))
            return rc;
        pos = end + 1;
    }
    return wp_finish(t->wp);
}

static kiln_status vocab_txt_specials(hftok *t)
{
    static const char *names[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    size_t i;
    kiln_status rc;
    for (i = 0; i < KILN_ARRAY_LEN(names); i++) {
        int32_t id = vocab_find(t->voc, names[i], strlen(names[i]));
        if (id >= 0 && (rc = added_add(&t->added, names[i], strlen(names[i]), id, true, false,
                                       false, false, false)))
            return rc;
    }
    return KILN_OK;
}

kiln_status hftok_from_vocab_txt(const char *path, bool do_lower_case, hftok **out)
{
    fmap *m = NULL;
    hftok *t = NULL;
    kiln_status rc;
    *out = NULL;
    if ((rc = fmap_open(path, &m)))
        return rc;
    if (!(t = kiln_calloc(1, sizeof(*t))))
        rc = kiln_err_set(KILN_ERR_OOM, "tokenizer: out of memory");
    if (!rc && !(rc = wp_new("[UNK]", "##", 100, &t->wp))) {
        t->voc = wp_vocab(t->wp);
        rc = read_vocab_txt(t, (const char *)fmap_data(m), fmap_size(m));
    }
    if (!rc)
        rc = vocab_txt_specials(t);
    if (!rc)
        rc = bert_pipeline(t, do_lower_case, vocab_find(t->voc, "[CLS]", 5),
                           vocab_find(t->voc, "[SEP]", 5));
    if (!rc)
        rc = hftok_seal(t);
    fmap_close(m);
    if (rc) {
        hftok_free(t);
        return kiln_err_wrap(rc, "%s", path);
    }
    *out = t;
    return KILN_OK;
}
