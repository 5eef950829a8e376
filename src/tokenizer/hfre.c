/*
 * hfre.c - PCRE2 behind hfre.h: pattern rewriting, compilation, and the
 * Oniguruma-style match iteration.
 *
 * PCRE2 allocates through a general context whose functions are
 * kiln_malloc/kiln_free, so its memory is counted like the rest.
 */
#include "tokenizer/hfre.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/error.h"
#include "tokenizer/unicode.h"

#include <string.h>

struct hfre {
    pcre2_code *code;
    bool jit;
    char *src; /* the pattern as written, for messages */
};

/* The White_Space set as PCRE2 class contents. */
#define HFRE_WS_SET "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}" \
                    "\\x{202f}\\x{205f}\\x{3000}"

static void *gc_malloc(PCRE2_SIZE n, void *ud)
{
    (void)ud;
    return kiln_malloc(n);
}

static void gc_free(void *p, void *ud)
{
    (void)ud;
    kiln_free(p);
}

/* A general context routing PCRE2's allocations to kiln_malloc.  PCRE2
 * copies the allocator into every object it makes, so the context is freed
 * right after use and no global state is kept. */
static pcre2_general_context *gctx_new(void)
{
    return pcre2_general_context_create(gc_malloc, gc_free, NULL);
}

/* Append the Oniguruma-only ranges of a \p{...} at p[i] (i at the
 * backslash) when it names a general category; *used = its length. */
static kiln_status prop_extra(const char *p, size_t n, size_t i, bool in_class, kiln_buf *out,
                              size_t *used)
{
    const char *close = i + 3 < n ? memchr(p + i + 3, '}', n - i - 3) : NULL;
    const uint32_t (*r)[2];
    size_t k, cnt;
    kiln_status st = KILN_OK;
    *used = 0;
    if (p[i + 1] != 'p' || i + 2 >= n || p[i + 2] != '{' || !close)
        return KILN_OK;
    r = uni_onig_extra(p + i + 3, (size_t)(close - (p + i + 3)), &cnt);
    if (!r)
        return KILN_OK;
    *used = (size_t)(close - (p + i)) + 1;
    if (!in_class)
        st = buf_append_str(out, "(?:");
    if (!st)
        st = buf_append(out, p + i, *used);
    if (!st && !in_class)
        st = buf_append_str(out, "|[");
    for (k = 0; k < cnt && !st; k++)
        st = buf_printf(out, "\\x{%x}-\\x{%x}", r[k][0], r[k][1]);
    if (!st && !in_class)
        st = buf_append_str(out, "])");
    return st;
}

/* Rewrite \s, \S and \p{X} (see hfre.h); everything else is copied. */
static kiln_status rewrite(const char *p, size_t n, kiln_buf *out)
{
    size_t i = 0, used;
    int depth = 0; /* inside a character class */
    kiln_status st = KILN_OK;
    while (i < n && !st) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            if (d == 'p' && !(st = prop_extra(p, n, i, depth != 0, out, &used)) && used) {
                i += used;
                continue;
            }
            if (st)
                break;
            if (d == 's')
                st = buf_append_str(out, depth ? HFRE_WS_SET : "[" HFRE_WS_SET "]");
            else if (d == 'S' && !depth)
                st = buf_append_str(out, "[^" HFRE_WS_SET "]");
            else
                st = buf_append(out, p + i, 2);
            i += 2;
            continue;
        }
        if (!depth && c == '[') {
            depth = 1;
            st = buf_append_char(out, c);
            i++;
            if (i < n && p[i] == '^' && !st)
                st = buf_append_char(out, p[i++]);
            if (i < n && p[i] == ']' && !st)
                st = buf_append_char(out, p[i++]);
            continue;
        }
        if (depth && c == '[' && i + 1 < n && p[i + 1] == ':') {
            const char *e = memchr(p + i + 2, ']', n - i - 2);
            size_t k = e ? (size_t)(e - p) + 1 : n;
            st = buf_append(out, p + i, k - i);
            i = k;
            continue;
        }
        if (depth && c == ']')
            depth = 0;
        st = buf_append_char(out, c);
        i++;
    }
    return st ? st : buf_reserve(out, 0);
}

static kiln_status compile_code(hfre *re, const char *pat, size_t len, bool literal)
{
    pcre2_general_context *g = gctx_new();
    pcre2_compile_context *cc = g ? pcre2_compile_context_create(g) : NULL;
    uint32_t opts = PCRE2_UTF | PCRE2_NO_UTF_CHECK | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    int err = 0;
    PCRE2_SIZE erroff = 0;
    if (!cc) {
        pcre2_general_context_free(g);
        return kiln_err_set(KILN_ERR_OOM, "regex: out of memory");
    }
    re->code = pcre2_compile((PCRE2_SPTR)pat, len, opts, &err, &erroff, cc);
    pcre2_compile_context_free(cc);
    pcre2_general_context_free(g);
    if (!re->code) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof(msg));
        return kiln_err_set(KILN_ERR_FORMAT, "regex '%s': %s at offset %zu", re->src,
                            (const char *)msg, (size_t)erroff);
    }
    re->jit = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0;
    return KILN_OK;
}

kiln_status hfre_compile(const char *pat, size_t len, bool literal, hfre **out)
{
    kiln_buf rw = {0};
    kiln_status st;
    hfre *re = kiln_calloc(1, sizeof(*re));
    *out = NULL;
    if (!re || !(re->src = kiln_strndup(pat, len))) {
        st = kiln_err_set(KILN_ERR_OOM, "regex: out of memory");
        goto err;
    }
    if (literal) {
        st = compile_code(re, pat, len, true);
    } else {
        if ((st = rewrite(pat, len, &rw)))
            goto err;
        st = compile_code(re, rw.data, rw.len, false);
    }
    if (st)
        goto err;
    buf_free(&rw);
    *out = re;
    return KILN_OK;
err:
    buf_free(&rw);
    hfre_free(re);
    return st;
}

void hfre_free(hfre *re)
{
    if (!re)
        return;
    pcre2_code_free(re->code);
    kiln_free(re->src);
    kiln_free(re);
}

pcre2_match_data *hfre_md_create(void)
{
    pcre2_general_context *g = gctx_new();
    pcre2_match_data *md = g ? pcre2_match_data_create(1, g) : NULL;
    pcre2_general_context_free(g);
    return md;
}

void hfre_md_free(pcre2_match_data *md)
{
    pcre2_match_data_free(md);
}

void hfre_iter_init(hfre_iter *it, const hfre *re, const char *s, size_t len,
                    pcre2_match_data *md)
{
    it->re = re;
    it->s = s;
    it->len = len;
    it->pos = 0;
    it->last_match_end = 0;
    it->has_last = false;
    it->md = md;
}

static int match_at(hfre_iter *it)
{
    int rc = pcre2_match(it->re->code, (PCRE2_SPTR)it->s, it->len, it->pos,
                         PCRE2_NO_UTF_CHECK, it->md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(it->re->code, (PCRE2_SPTR)it->s, it->len, it->pos,
                         PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, it->md, NULL);
    return rc;
}

kiln_status hfre_next(hfre_iter *it, size_t *ms, size_t *me, bool *found)
{
    for (;;) {
        PCRE2_SIZE *ov;
        int rc;
        *found = false;
        if (it->pos > it->len)
            return KILN_OK;
        rc = match_at(it);
        if (rc == PCRE2_ERROR_NOMATCH) {
            it->pos = it->len + 1;
            return KILN_OK;
        }
        if (rc < 0)
            return kiln_err_set(KILN_ERR_RANGE, "regex '%s': matching failed (%d)",
                                it->re->src, rc);
        ov = pcre2_get_ovector_pointer(it->md);
        if (ov[0] == ov[1] && it->has_last && it->last_match_end == ov[1]) {
            size_t step = 1;
            if (it->pos < it->len) {
                uint8_t b = (uint8_t)it->s[it->pos];
                step = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
            }
            it->pos += step;
            continue;
        }
        it->pos = ov[1];
        it->last_match_end = ov[1];
        it->has_last = true;
        *ms = ov[0];
        *me = ov[1];
        *found = true;
        return KILN_OK;
    }
}
