/*
 * unicode.c - UTF-8 validation/repair and the character classes of
 * unicode.h, on top of utf8proc's category tables.
 *
 * The maximal-subpart rule (Unicode 3.9, "U+FFFD substitution of maximal
 * subparts"): a lead byte followed by the longest run of continuation bytes
 * that could still start a valid sequence is replaced by one U+FFFD; any
 * other invalid byte by one U+FFFD each.
 */
#include "tokenizer/unicode.h"

#include <string.h>
#include <utf8proc.h>

size_t uni_encode(uint32_t c, char *out)
{
    uint8_t *o = (uint8_t *)out;
    if (c < 0x80) {
        o[0] = (uint8_t)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (uint8_t)(0xC0 | (c >> 6));
        o[1] = (uint8_t)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (c >> 12));
        o[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (c >> 18));
    o[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

kiln_status uni_append(kiln_buf *b, uint32_t c)
{
    char tmp[4];
    return buf_append(b, tmp, uni_encode(c, tmp));
}

/* Length of the valid sequence at p (>= 1), or 0 when invalid; *sub gets the
 * length of the maximal subpart to replace when invalid. */
static size_t seq_len(const uint8_t *p, size_t avail, size_t *sub)
{
    uint8_t b = p[0], lo = 0x80, hi = 0xBF;
    size_t need, k;
    *sub = 1;
    if (b < 0x80)
        return 1;
    if (b >= 0xC2 && b <= 0xDF)
        need = 2;
    else if (b >= 0xE0 && b <= 0xEF)
        need = 3;
    else if (b >= 0xF0 && b <= 0xF4)
        need = 4;
    else
        return 0;
    if (b == 0xE0)
        lo = 0xA0;
    else if (b == 0xED)
        hi = 0x9F;
    else if (b == 0xF0)
        lo = 0x90;
    else if (b == 0xF4)
        hi = 0x8F;
    for (k = 1; k < need; k++) {
        uint8_t c;
        if (k >= avail)
            break;
        c = p[k];
        if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF))
            break;
    }
    if (k == need)
        return need;
    *sub = k;
    return 0;
}

size_t uni_valid_prefix(const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0, sub, n;
    while (i < len) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        n = seq_len(p + i, len - i, &sub);
        if (n == 0)
            return i;
        i += n;
    }
    return len;
}

kiln_status uni_sanitize(const char *s, size_t len, kiln_buf *out)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0, sub, n, good;
    kiln_status st;
    while (i < len) {
        good = uni_valid_prefix(s + i, len - i);
        if ((st = buf_append(out, s + i, good)))
            return st;
        i += good;
        if (i >= len)
            break;
        n = seq_len(p + i, len - i, &sub);
        (void)n;
        if ((st = buf_append(out, "\xEF\xBF\xBD", 3)))
            return st;
        i += sub;
    }
    return buf_reserve(out, 0);
}

bool uni_is_space(uint32_t c)
{
    if (c <= 0x20)
        return c == 0x20 || (c >= 0x09 && c <= 0x0D);
    if (c < 0x85)
        return false;
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static utf8proc_category_t cat(uint32_t c)
{
    return utf8proc_category((utf8proc_int32_t)c);
}

/* Other_Alphabetic code points that are not marks (enclosed letters). */
static bool other_alpha_symbol(uint32_t c)
{
    return (c >= 0x24B6 && c <= 0x24E9) || (c >= 0x1F130 && c <= 0x1F149) ||
           (c >= 0x1F150 && c <= 0x1F169) || (c >= 0x1F170 && c <= 0x1F189);
}

bool uni_is_word(uint32_t c)
{
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               c == '_';
    switch (cat(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        return c == 0x200C || c == 0x200D || other_alpha_symbol(c);
    }
}

bool uni_is_numeric(uint32_t c)
{
    utf8proc_category_t k;
    if (c < 0x80)
        return c >= '0' && c <= '9';
    k = cat(c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO ||
           (k == UTF8PROC_CATEGORY_CN && uni_onig_numeric_extra(c));
}

kiln_status uni_append_lower(kiln_buf *b, uint32_t c)
{
    if (c < 0x80)
        return buf_append_char(b, (char)((c >= 'A' && c <= 'Z') ? c + 32 : c));
    uint32_t x;
    if (c == 0x130)
        return buf_append(b, "i\xCC\x87", 3);
    if ((x = uni_lower_extra(c)))
        return uni_append(b, x);
    return uni_append(b, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c));
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves,
 * the other 68 bytes for U+0100.. in byte order. */
static bool byte_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t uni_byte_char(uint8_t b)
{
    if (byte_printable(b))
        return b;
    if (b <= 0x20)
        return 256u + b;
    if (b < 0xAD)
        return 256u + 33 + (b - 0x7Fu);
    return 256u + 67;
}

int uni_char_byte(uint32_t c)
{
    uint32_t n;
    if (c < 256)
        return byte_printable(c) ? (int)c : -1;
    n = c - 256;
    if (n < 33)
        return (int)n;
    if (n < 67)
        return (int)(0x7F + n - 33);
    return n == 67 ? 0xAD : -1;
}
