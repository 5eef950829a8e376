#!/usr/bin/env python3
"""Generate src/tokenizer/unicode_tables.c: the character classes the
`tokenizers` library takes from the unicode_categories crate (an older
Unicode version than utf8proc's), measured by probing the library itself.

usage: hftok_tables.py OUT_C_FILE

  uni_bert_other: characters BertNormalizer(clean_text) removes
                  (is_other(): Cc, Cf, Co, Cs of that version; not Cn)
  uni_bert_mn:    characters BertNormalizer(strip_accents) removes after
                  NFD (is_mark_nonspacing())
  uni_bert_punct: characters BertPreTokenizer / Punctuation isolate
                  (is_ascii_punctuation() || is_punctuation())
  uni_onig_extra: per general category, the characters Oniguruma's \p{X}
                  matches (the regex engine of tokenizers, a newer Unicode
                  version) beyond Unicode 14.0, the version of PCRE2 10.42
                  (and of this Python's unicodedata, checked below)
  uni_nf_ccc0:    characters with a nonzero canonical combining class that
                  tokenizers' NFC/NFD/NFKC/NFKD (an older Unicode version)
                  does not reorder (treats as class 0)
  uni_nf_keep:    characters those normalizers leave undecomposed although
                  Unicode 14.0 decomposes them, or unassigned in 14.0
  uni_strip_mark: characters StripAccents removes (is_combining_mark)
  uni_lower_extra: Lowercase mappings beyond Unicode 14.0 (newer std)
"""
import sys
import unicodedata

from tokenizers import normalizers, pre_tokenizers


def ranges(cps):
    out = []
    for c in sorted(cps):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def probe():
    clean = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False,
                                       strip_accents=False, lowercase=False)
    strip = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False,
                                       strip_accents=True, lowercase=False)
    punct = pre_tokenizers.BertPreTokenizer()
    other, mn, pu = [], [], []
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        ch = chr(cp)
        if cp not in (9, 10, 13) and clean.normalize_str("a" + ch + "b") == "ab":
            other.append(cp)
        if unicodedata.normalize("NFD", ch) == ch and strip.normalize_str("a" + ch + "b") == "ab":
            mn.append(cp)
        if len(punct.pre_tokenize_str("a" + ch + "b")) == 3:
            pu.append(cp)
    other += list(range(0xD800, 0xE000))  # surrogates are Cs (never in valid UTF-8)
    return ranges(other), ranges(mn), ranges(pu)


PROPS = ["L", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No",
         "P", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "S", "Sm", "Sc", "Sk", "So",
         "Z", "Zs", "Zl", "Zp"]


def onig_extra():
    from tokenizers import Regex
    assert unicodedata.unidata_version == "14.0.0", "needs Python with Unicode 14.0 (3.11)"
    cps = [c for c in range(0x110000) if not (0xD800 <= c < 0xE000)]
    text = "".join(chr(c) for c in cps)
    out = {}
    for p in PROPS:
        sp = pre_tokenizers.Split(Regex(r"\p{%s}" % p), behavior="removed", invert=True)
        got = set()
        for i in range(0, len(text), 100000):
            for piece, _ in sp.pre_tokenize_str(text[i:i + 100000]):
                got.update(ord(ch) for ch in piece)
        extra = [c for c in got if not unicodedata.category(chr(c)).startswith(p)]
        if extra:
            out[p] = ranges(extra)
    return out


def nf_tables():
    nfd = normalizers.NFD()
    nfkd = normalizers.NFKD()
    ccc0, keep = [], []
    for c in range(0x110000):
        if 0xD800 <= c < 0xE000:
            continue
        ch = chr(c)
        if unicodedata.combining(ch) > 1 and unicodedata.normalize("NFD", ch) == ch:
            if nfd.normalize_str("a" + ch + "\u0334") == "a" + ch + "\u0334":
                ccc0.append(c)
        if unicodedata.category(ch) == "Cn" or unicodedata.normalize("NFKD", ch) != ch:
            if nfkd.normalize_str(ch) == ch:
                keep.append(c)
    return ranges(ccc0), ranges(keep)


def strip_lower_tables():
    low = normalizers.Lowercase()
    sa = normalizers.StripAccents()
    marks, lower = [], []
    for c in range(0x110000):
        if 0xD800 <= c < 0xE000:
            continue
        ch = chr(c)
        if sa.normalize_str("a" + ch + "b") == "ab":
            marks.append(c)
        h = low.normalize_str(ch)
        if h != ch.lower():
            assert len(h) == 1, "multi-character lowercase %x" % c
            lower.append((c, ord(h)))
    return ranges(marks), lower


def table(name, rs):
    lines = ["static const uint32_t %s[][2] = {" % name]
    row = []
    for lo, hi in rs:
        row.append("{0x%X, 0x%X}," % (lo, hi))
        if len(row) == 5:
            lines.append("    " + " ".join(row))
            row = []
    if row:
        lines.append("    " + " ".join(row))
    lines.append("};")
    return "\n".join(lines)


HEAD = """/*
 * unicode_tables.c - character classes of the `tokenizers` library that
 * follow an older Unicode version than utf8proc (see unicode.h).
 *
 * GENERATED by tests/ref/hftok_tables.py from tokenizers %s (measured by
 * probing the library, not copied from it); do not edit by hand.  Each
 * table is a sorted list of inclusive code point ranges.
 */
#include "tokenizer/unicode.h"

#include <stddef.h>
#include <string.h>

typedef struct uni_extra {
    const char *prop;
    const uint32_t (*r)[2];
    size_t n;
} uni_extra;
"""

TAIL = """
static bool in_ranges(const uint32_t (*r)[2], size_t n, uint32_t c)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < r[mid][0])
            hi = mid;
        else if (c > r[mid][1])
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

bool uni_bert_other(uint32_t c)
{
    if (c >= 0x20 && c < 0x7F)
        return false;
    return in_ranges(BERT_OTHER, sizeof(BERT_OTHER) / sizeof(BERT_OTHER[0]), c);
}

bool uni_bert_mn(uint32_t c)
{
    return c >= 0x300 && in_ranges(BERT_MN, sizeof(BERT_MN) / sizeof(BERT_MN[0]), c);
}

const uint32_t (*uni_onig_extra(const char *prop, size_t len, size_t *n))[2]
{
    size_t i;
    for (i = 0; i < sizeof(ONIG_EXTRA) / sizeof(ONIG_EXTRA[0]); i++) {
        if (strlen(ONIG_EXTRA[i].prop) == len && memcmp(ONIG_EXTRA[i].prop, prop, len) == 0) {
            *n = ONIG_EXTRA[i].n;
            return ONIG_EXTRA[i].r;
        }
    }
    *n = 0;
    return NULL;
}

bool uni_onig_numeric_extra(uint32_t c)
{
    size_t n;
    const uint32_t (*r)[2] = uni_onig_extra("N", 1, &n);
    return r && in_ranges(r, n, c);
}

bool uni_nf_ccc0(uint32_t c)
{
    return in_ranges(NF_CCC0, sizeof(NF_CCC0) / sizeof(NF_CCC0[0]), c);
}

bool uni_nf_keep(uint32_t c)
{
    return in_ranges(NF_KEEP, sizeof(NF_KEEP) / sizeof(NF_KEEP[0]), c);
}

bool uni_strip_mark(uint32_t c)
{
    return c >= 0x300 && in_ranges(STRIP_MARK, sizeof(STRIP_MARK) / sizeof(STRIP_MARK[0]), c);
}

uint32_t uni_lower_extra(uint32_t c)
{
    size_t lo = 0, hi = sizeof(LOWER_EXTRA) / sizeof(LOWER_EXTRA[0]);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (LOWER_EXTRA[mid][0] == c)
            return LOWER_EXTRA[mid][1];
        if (LOWER_EXTRA[mid][0] < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

bool uni_bert_punct(uint32_t c)
{
    if (c < 0x80)
        return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) ||
               (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
    return in_ranges(BERT_PUNCT, sizeof(BERT_PUNCT) / sizeof(BERT_PUNCT[0]), c);
}
"""


def extra_index(extra):
    lines = ["static const uni_extra ONIG_EXTRA[] = {"]
    for p in extra:
        lines.append("    {\"%s\", EXTRA_%s, sizeof(EXTRA_%s) / sizeof(EXTRA_%s[0])}," % (p, p, p, p))
    lines.append("};")
    return "\n".join(lines)


def main():
    import tokenizers
    other, mn, pu = probe()
    extra = onig_extra()
    ccc0, keep = nf_tables()
    marks, lower = strip_lower_tables()
    with open(sys.argv[1], "w") as f:
        f.write(HEAD % tokenizers.__version__)
        f.write("\n" + table("BERT_OTHER", other) + "\n\n" + table("BERT_MN", mn) + "\n\n" +
                table("BERT_PUNCT", pu) + "\n")
        f.write("\n" + table("NF_CCC0", ccc0) + "\n\n" + table("NF_KEEP", keep) + "\n")
        f.write("\n" + table("STRIP_MARK", marks) + "\n\n" + table("LOWER_EXTRA", lower) + "\n")
        for p, rs in extra.items():
            f.write("\n" + table("EXTRA_" + p, rs) + "\n")
        f.write("\n" + extra_index(extra) + "\n")
        f.write(TAIL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
