/*
 * unicode.h - UTF-8 and character-class helpers of the tokenizer pipelines.
 *
 * Invariants: uni_next() and the class predicates are only given valid
 * UTF-8 (every text has passed uni_sanitize() first).  The classes follow
 * the definitions the `tokenizers` library uses through Rust's standard
 * library and regex crate:
 *   - uni_is_space:  the Unicode White_Space property (char::is_whitespace,
 *                    regex \s, Oniguruma \s)
 *   - uni_is_word:   regex \w (Alphabetic, marks, Nd, Pc, Join_Control)
 *   - uni_is_numeric: general category N* (char::is_numeric)
 * and, for BERT's components, which take their classes from an older
 * Unicode version (the unicode_categories crate), tables measured from the
 * library (unicode_tables.c):
 *   - uni_bert_other: removed by BertNormalizer clean_text (Cc/Cf/Co/Cs)
 *   - uni_bert_mn:    removed by BertNormalizer strip_accents (Mn)
 *   - uni_bert_punct: isolated by BertPreTokenizer and Punctuation
 */
#ifndef KILN_TOKENIZER_UNICODE_H
#define KILN_TOKENIZER_UNICODE_H

#include "base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decode the character at s[*i] (valid UTF-8, *i < len) and advance *i. */
static inline uint32_t uni_next(const char *s, size_t len, size_t *i)
{
    const uint8_t *p = (const uint8_t *)s + *i;
    uint32_t c = p[0];
    (void)len;
    if (c < 0x80) {
        *i += 1;
        return c;
    }
    if (c < 0xE0) {
        *i += 2;
        return ((c & 0x1Fu) << 6) | (p[1] & 0x3Fu);
    }
    if (c < 0xF0) {
        *i += 3;
        return ((c & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
    }
    *i += 4;
    return ((c & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
}

/* Byte length of the character starting with byte b (valid UTF-8). */
static inline size_t uni_len(uint8_t b)
{
    return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}

/* Write c as UTF-8 into out (4 bytes room); returns the length. */
size_t uni_encode(uint32_t c, char *out);

/* Append c as UTF-8.  Errors: KILN_ERR_OOM. */
kiln_status uni_append(kiln_buf *b, uint32_t c);

/* Length of the valid UTF-8 prefix of s[0..len). */
size_t uni_valid_prefix(const char *s, size_t len);

/* Append s[0..len) to out with every maximal invalid subsequence replaced by
 * U+FFFD, the rule of Python's bytes.decode(errors="replace") and Rust's
 * String::from_utf8_lossy.  Errors: KILN_ERR_OOM. */
kiln_status uni_sanitize(const char *s, size_t len, kiln_buf *out);

bool uni_is_space(uint32_t c);
bool uni_is_word(uint32_t c);
bool uni_is_numeric(uint32_t c);
bool uni_bert_other(uint32_t c);
bool uni_bert_mn(uint32_t c);
bool uni_bert_punct(uint32_t c);
/* Ranges (inclusive) of the characters Oniguruma's \p{prop} (prop of
 * length len, a general category such as "L" or "Nd") matches beyond
 * Unicode 14.0; NULL with *n = 0 when none. */
const uint32_t (*uni_onig_extra(const char *prop, size_t len, size_t *n))[2];
/* Unicode normal forms as tokenizers computes them (an older Unicode
 * version): characters it gives combining class 0 although utf8proc gives
 * them another, and characters it does not decompose. */
bool uni_nf_ccc0(uint32_t c);
bool uni_nf_keep(uint32_t c);
/* Removed by StripAccents (tokenizers' is_combining_mark, older Unicode). */
bool uni_strip_mark(uint32_t c);
/* Lowercase of c where tokenizers (newer Unicode) maps it beyond Unicode
 * 14.0; 0 if none. */
uint32_t uni_lower_extra(uint32_t c);
/* In Oniguruma's \p{N} but not Unicode 14.0's N (Rust's is_numeric agrees). */
bool uni_onig_numeric_extra(uint32_t c);

/* Append the lowercase of c as Rust's char::to_lowercase (full mapping:
 * U+0130 becomes "i\u0307").  Errors: KILN_ERR_OOM. */
kiln_status uni_append_lower(kiln_buf *b, uint32_t c);



/* GPT-2 byte-level alphabet: the code point standing for byte b, and the
 * byte a code point stands for (-1 if none). */
uint32_t uni_byte_char(uint8_t b);
int uni_char_byte(uint32_t c);
#endif /* KILN_TOKENIZER_UNICODE_H */
