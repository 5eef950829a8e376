/*
 * ctpl_lex.c - template source to tokens, with jinja2's whitespace rules.
 *
 * The environment transformers renders with has trim_blocks and
 * lstrip_blocks on and keep_trailing_newline off, so:
 *   - newlines are normalized to "\n" and one trailing newline is dropped;
 *   - a block or comment end ("%}", "#}") eats one following newline;
 *   - whitespace between the start of a line and a block or comment tag is
 *     dropped (also when the previous tag ended the line);
 *   - "{%-" / "-%}" strip all whitespace before / after the tag, "{%+" and
 *     "+%}" turn lstrip / trim off for that side.
 * Inside a tag, an end marker only ends the tag while brackets are balanced
 * ("{{ {'a': 1}}}" is a dict followed by "}}").
 */
#include "tokenizer/ctpl_impl.h"

#include <string.h>

typedef struct lexer {
    arena *a;
    const char *s;
    size_t n, pos;
    int line;
    bool line_starting;
    ctpl_tok *toks;
    size_t ntoks, cap;
    char closers[CTPL_MAX_NEST];
    int depth;
} lexer;

static kiln_status lex_err(lexer *L, const char *what)
{
    return kiln_err_set(KILN_ERR_FORMAT, "chat template line %d: %s", L->line, what);
}

static kiln_status push_tok(lexer *L, ctpl_tok_kind kind, const char *s, size_t n, int line, ctpl_tok **out)
{
    if (L->ntoks == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        ctpl_tok *t = arena_alloc(L->a, cap * sizeof *t, _Alignof(ctpl_tok));
        if (!t)
            return kiln_err_set(KILN_ERR_OOM, "chat template: out of memory");
        if (L->ntoks)
            memcpy(t, L->toks, L->ntoks * sizeof *t);
        L->toks = t;
        L->cap = cap;
    }
    ctpl_tok *t = &L->toks[L->ntoks++];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->line = line;
    if (s) { /* exact copy: text and strings may hold NUL bytes */
        char *copy = arena_alloc(L->a, n + 1, 1);
        if (!copy)
            return kiln_err_set(KILN_ERR_OOM, "chat template: out of memory");
        memcpy(copy, s, n);
        copy[n] = '\0';
        t->s = copy;
        t->n = n;
    }
    if (out)
        *out = t;
    return KILN_OK;
}

static int count_nl(const char *s, size_t n)
{
    int c = 0;
    for (size_t i = 0; i < n; i++)
        c += s[i] == '\n';
    return c;
}

/* Bytes of Python whitespace starting at p (0 when none). */
static size_t space_len(const char *p, size_t n)
{
    size_t len;
    if (n == 0)
        return 0;
    uint32_t cp = ctpl_utf8_next(p, n, &len);
    return ctpl_py_isspace(cp) ? len : 0;
}

static size_t skip_space(const char *s, size_t n, size_t pos)
{
    size_t k;
    while (pos < n && (k = space_len(s + pos, n - pos)) > 0)
        pos += k;
    return pos;
}

/* Length of text[0, n) after Python str.rstrip(). */
static size_t rstrip_len(const char *s, size_t n)
{
    size_t keep = 0, pos = 0;
    while (pos < n) {
        size_t k = space_len(s + pos, n - pos);
        if (k) {
            pos += k;
            continue;
        }
        ctpl_utf8_next(s + pos, n - pos, &k);
        pos += k;
        keep = pos;
    }
    return keep;
}

/* lstrip_blocks: drop whitespace between the line start and the tag. */
static size_t lstrip_len(const lexer *L, const char *s, size_t n)
{
    size_t lpos = n;
    while (lpos > 0 && s[lpos - 1] != '\n')
        lpos--;
    if (lpos == n || (lpos == 0 && !L->line_starting))
        return n;
    return skip_space(s, n, lpos) == n ? lpos : n;
}

/* ---- string literals ------------------------------------------------------ */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode \xHH, \uHHHH, \UHHHHHHHH (ndig digits) at s; -1 when malformed. */
static int64_t read_hex(const char *s, size_t n, int ndig)
{
    int64_t v = 0;
    if ((size_t)ndig > n)
        return -1;
    for (int i = 0; i < ndig; i++) {
        int h = hexval(s[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* One escape after a backslash at s[0]; appends to b, returns bytes consumed
 * after the backslash or 0 when malformed. */
static size_t decode_escape(const char *s, size_t n, kiln_buf *b, kiln_status *st)
{
    static const char simple_in[] = "\\'\"abfnrtv\n";
    static const char simple_out[] = "\\'\"\a\b\f\n\r\t\v";
    char tmp[4];
    const char *hit = n ? strchr(simple_in, s[0]) : NULL;
    if (n && s[0] != '\0' && hit) {
        if (s[0] == '\n') /* backslash-newline: a line continuation */
            return 1;
        *st = buf_append_char(b, simple_out[hit - simple_in]);
        return 1;
    }
    if (n && s[0] >= '0' && s[0] <= '7') {
        unsigned v = 0;
        size_t k = 0;
        while (k < 3 && k < n && s[k] >= '0' && s[k] <= '7')
            v = v * 8 + (unsigned)(s[k++] - '0');
        *st = buf_append(b, tmp, ctpl_utf8_put(tmp, v));
        return k;
    }
    if (n && (s[0] == 'x' || s[0] == 'u' || s[0] == 'U')) {
        int nd = s[0] == 'x' ? 2 : s[0] == 'u' ? 4 : 8;
        int64_t v = read_hex(s + 1, n - 1, nd);
        if (v < 0 || v > 0x10FFFF)
            return 0;
        *st = buf_append(b, tmp, ctpl_utf8_put(tmp, (uint32_t)v));
        return (size_t)nd + 1;
    }
    /* Unknown escape: Python keeps the backslash; the next character is
     * then copied as ordinary text. */
    *st = buf_append_char(b, '\\');
    return 0;
}

static kiln_status lex_string(lexer *L)
{
    char q = L->s[L->pos];
    size_t i = L->pos + 1;
    int line = L->line;
    kiln_buf b = {0};
    kiln_status st = buf_reserve(&b, 16);
    while (!st && i < L->n && L->s[i] != q) {
        if (L->s[i] != '\\') {
            st = buf_append_char(&b, L->s[i++]);
            continue;
        }
        if (i + 1 < L->n && L->s[i + 1] == 'N') {
            st = kiln_err_set(KILN_ERR_UNSUPPORTED, "chat template line %d: \\N{...} escapes "
                              "in strings are not supported", L->line);
            break;
        }
        size_t k = decode_escape(L->s + i + 1, L->n - i - 1, &b, &st);
        if (!st && k == 0 && i + 1 < L->n && strchr("xuU", L->s[i + 1])) {
            st = lex_err(L, "malformed escape in string literal");
            break;
        }
        i += 1 + k;
    }
    if (!st && i >= L->n)
        st = lex_err(L, "unterminated string literal");
    if (!st)
        st = push_tok(L, CTPL_T_STRING, b.data ? b.data : "", b.len, line, NULL);
    if (!st) {
        L->line += count_nl(L->s + L->pos, i + 1 - L->pos);
        L->pos = i + 1;
    }
    buf_free(&b);
    return st;
}

/* ---- numbers, names, operators ------------------------------------------------ */

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* Digits with single underscores between them; returns the end. */
static size_t scan_digits(const char *s, size_t n, size_t i)
{
    while (i < n && (is_digit(s[i]) || (s[i] == '_' && i + 1 < n && is_digit(s[i + 1]))))
        i++;
    return i;
}

static kiln_status lex_number(lexer *L)
{
    const char *s = L->s;
    size_t start = L->pos, i = scan_digits(s, L->n, L->pos);
    bool is_float = false;
    bool after_dot = start > 0 && s[start - 1] == '.';
    if (!after_dot && i + 1 < L->n && s[i] == '.' && is_digit(s[i + 1])) {
        i = scan_digits(s, L->n, i + 1);
        is_float = true;
    }
    if (!after_dot && i < L->n && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < L->n && (s[j] == '+' || s[j] == '-'))
            j++;
        if (j < L->n && is_digit(s[j])) {
            i = scan_digits(s, L->n, j);
            is_float = true;
        }
    }
    char buf[64];
    size_t k = 0;
    for (size_t p = start; p < i && k + 1 < sizeof buf; p++)
        if (s[p] != '_')
            buf[k++] = s[p];
    buf[k] = '\0';
    if (i - start >= sizeof buf - 1)
        return lex_err(L, "number literal too long");
    ctpl_tok *t;
    kiln_status st = push_tok(L, is_float ? CTPL_T_FLOAT : CTPL_T_INT, NULL, 0, L->line, &t);
    if (st)
        return st;
    if (is_float) {
        t->f = strtod(buf, NULL);
    } else {
        uint64_t v = 0;
        for (size_t p = 0; p < k; p++) {
            if (v > (uint64_t)(INT64_MAX - 9) / 10)
                return kiln_err_set(KILN_ERR_UNSUPPORTED, "chat template line %d: integer "
                                    "literal out of the 64-bit range", L->line);
            v = v * 10 + (uint64_t)(buf[p] - '0');
        }
        t->i = (int64_t)v;
    }
    L->pos = i;
    return KILN_OK;
}

static const char *const ops[] = {
    "//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]",
    "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";",
};

static kiln_status track_bracket(lexer *L, char c)
{
    const char *open = "([{", *close = ")]}";
    const char *o = strchr(open, c), *cl = strchr(close, c);
    if (o) {
        if (L->depth >= CTPL_MAX_NEST)
            return lex_err(L, "brackets nested too deeply");
        L->closers[L->depth++] = close[o - open];
    } else if (cl) {
        if (L->depth == 0 || L->closers[L->depth - 1] != c)
            return kiln_err_set(KILN_ERR_FORMAT, "chat template line %d: unexpected '%c'", L->line, c);
        L->depth--;
    }
    return KILN_OK;
}

static kiln_status lex_op(lexer *L)
{
    for (size_t k = 0; k < KILN_ARRAY_LEN(ops); k++) {
        size_t len = strlen(ops[k]);
        if (L->pos + len <= L->n && memcmp(L->s + L->pos, ops[k], len) == 0) {
            kiln_status st = track_bracket(L, ops[k][0]);
            if (!st)
                st = push_tok(L, CTPL_T_OP, ops[k], len, L->line, NULL);
            L->pos += len;
            return st;
        }
    }
    unsigned char c = (unsigned char)L->s[L->pos];
    if (c >= 0x20 && c < 0x7f)
        return kiln_err_set(KILN_ERR_FORMAT, "chat template line %d: unexpected char '%c'", L->line, c);
    return kiln_err_set(KILN_ERR_FORMAT, "chat template line %d: unexpected byte 0x%02x", L->line, c);
}

/* One token inside a tag. */
static kiln_status lex_one(lexer *L)
{
    char c = L->s[L->pos];
    if (is_digit(c))
        return lex_number(L);
    if (c == '\'' || c == '"')
        return lex_string(L);
    if (is_name_start(c)) {
        size_t i = L->pos;
        while (i < L->n && (is_name_start(L->s[i]) || is_digit(L->s[i])))
            i++;
        kiln_status st = push_tok(L, CTPL_T_NAME, L->s + L->pos, i - L->pos, L->line, NULL);
        L->pos = i;
        return st;
    }
    return lex_op(L);
}

/* ---- tags ------------------------------------------------------------------ */

/* If a tag ends at L->pos, consume it (with its whitespace rule) and return
 * true. */
static bool at_tag_end(lexer *L, char kind)
{
    const char *s = L->s + L->pos;
    size_t left = L->n - L->pos;
    char c = kind == '{' ? '}' : kind;
    if (kind != '{' && left >= 3 && s[0] == '+' && s[1] == c && s[2] == '}') {
        L->pos += 3;
    } else if (left >= 3 && s[0] == '-' && s[1] == c && s[2] == '}') {
        size_t end = skip_space(L->s, L->n, L->pos + 3);
        L->line += count_nl(L->s + L->pos, end - L->pos);
        L->pos = end;
    } else if (left >= 2 && s[0] == c && s[1] == '}') {
        L->pos += 2;
        if (kind != '{' && L->pos < L->n && L->s[L->pos] == '\n') {
            L->pos++;
            L->line++;
        }
    } else {
        return false;
    }
    L->line_starting = L->s[L->pos - 1] == '\n';
    return true;
}

static kiln_status lex_comment(lexer *L)
{
    while (L->pos < L->n) {
        if (at_tag_end(L, '#'))
            return KILN_OK;
        L->line += L->s[L->pos] == '\n';
        L->pos++;
    }
    return lex_err(L, "missing end of comment tag");
}

/* {% raw %} is recognized only to be refused. */
static bool is_raw_tag(const lexer *L)
{
    size_t i = skip_space(L->s, L->n, L->pos);
    return i + 3 <= L->n && memcmp(L->s + i, "raw", 3) == 0 &&
           (i + 3 == L->n || !(is_name_start(L->s[i + 3]) || is_digit(L->s[i + 3])));
}

static kiln_status lex_tag(lexer *L, char kind)
{
    kiln_status st;
    if (kind == '%' && is_raw_tag(L))
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "chat template line %d: {%% raw %%} blocks "
                            "are not supported", L->line);
    st = push_tok(L, kind == '%' ? CTPL_T_BLOCK_BEGIN : CTPL_T_VAR_BEGIN, NULL, 0, L->line, NULL);
    L->depth = 0;
    while (!st) {
        size_t i = skip_space(L->s, L->n, L->pos);
        L->line += count_nl(L->s + L->pos, i - L->pos);
        L->pos = i;
        if (L->pos >= L->n)
            return lex_err(L, kind == '%' ? "unexpected end of template, expected '%}'"
                                          : "unexpected end of template, expected '}}'");
        int line = L->line;
        if (L->depth == 0 && at_tag_end(L, kind))
            return push_tok(L, kind == '%' ? CTPL_T_BLOCK_END : CTPL_T_VAR_END, NULL, 0, line, NULL);
        st = lex_one(L);
    }
    return st;
}

/* Text up to the next tag at `t` (or the end), with the tag's whitespace
 * rules applied to the text. */
static kiln_status lex_text(lexer *L, size_t t, char kind, char sign)
{
    const char *text = L->s + L->pos;
    size_t n = t - L->pos, keep = n;
    if (sign == '-')
        keep = rstrip_len(text, n);
    else if (sign != '+' && kind != '{' && kind != 0)
        keep = lstrip_len(L, text, n);
    kiln_status st = KILN_OK;
    if (keep > 0)
        st = push_tok(L, CTPL_T_TEXT, text, keep, L->line, NULL);
    L->line += count_nl(text, n);
    L->pos = t;
    return st;
}

/* Newlines normalized to \n, one trailing newline dropped. */
static char *normalize(arena *a, const char *src, size_t len, size_t *out_len)
{
    char *d = arena_alloc(a, len + 1, 1);
    size_t k = 0;
    if (!d)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            d[k++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n')
                i++;
        } else {
            d[k++] = src[i];
        }
    }
    if (k > 0 && d[k - 1] == '\n')
        k--;
    d[k] = '\0';
    *out_len = k;
    return d;
}

kiln_status ctpl_lex(arena *a, const char *src, size_t len, ctpl_tok **toks, size_t *ntoks)
{
    lexer L = {.a = a, .line = 1, .line_starting = true};
    kiln_status st = KILN_OK;
    L.s = normalize(a, src, len, &L.n);
    if (!L.s)
        return kiln_err_set(KILN_ERR_OOM, "chat template: out of memory");
    while (!st && L.pos < L.n) {
        const char *hit = L.s + L.pos;
        size_t t = L.n;
        while ((hit = memchr(hit, '{', (size_t)(L.s + L.n - hit))) != NULL) {
            if (hit + 1 < L.s + L.n && (hit[1] == '{' || hit[1] == '%' || hit[1] == '#')) {
                t = (size_t)(hit - L.s);
                break;
            }
            hit++;
        }
        char kind = t < L.n ? L.s[t + 1] : 0;
        char sign = t + 2 < L.n && (L.s[t + 2] == '-' || L.s[t + 2] == '+') ? L.s[t + 2] : 0;
        st = lex_text(&L, t, kind, sign);
        if (st || t == L.n)
            break;
        L.line_starting = false;
        L.pos = t + 2 + (sign ? 1 : 0);
        st = kind == '#' ? lex_comment(&L) : lex_tag(&L, kind);
    }
    if (!st)
        st = push_tok(&L, CTPL_T_EOF, NULL, 0, L.line, NULL);
    *toks = L.toks;
    *ntoks = L.ntoks;
    return st;
}
