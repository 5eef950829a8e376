/*
 * hfjson.h - small readers for the fields of tokenizer.json components.
 *
 * Borrowed views only: strings point into the json_t, valid while it lives.
 */
#ifndef KILN_TOKENIZER_HFJSON_H
#define KILN_TOKENIZER_HFJSON_H

#include "base/error.h"
#include "tokenizer/hfre.h"

#include <jansson.h>
#include <stdbool.h>
#include <string.h>

/* The string at key, NULL when absent or not a string. */
static inline const char *hfj_str(const json_t *o, const char *key, size_t *len)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return NULL;
    if (len)
        *len = json_string_length(v);
    return json_string_value(v);
}

/* The boolean at key; def when absent or null. */
static inline bool hfj_bool(const json_t *o, const char *key, bool def)
{
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

/* The non-negative integer at key; def when absent or null. */
static inline long long hfj_int(const json_t *o, const char *key, long long def)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? json_integer_value(v) : def;
}

/* The "type" of a component, "" when absent. */
static inline const char *hfj_type(const json_t *o)
{
    const char *t = hfj_str(o, "type", NULL);
    return t ? t : "";
}

/* Compile a {"String": s} or {"Regex": r} pattern at key.  An empty String
 * pattern matches nothing: *out = NULL.  Errors: KILN_ERR_FORMAT. */
static inline kiln_status hfj_pattern(const json_t *o, const char *key, const char *what,
                                      hfre **out)
{
    json_t *p = json_object_get(o, key);
    const char *s;
    size_t len;
    *out = NULL;
    if ((s = hfj_str(p, "String", &len)))
        return len ? hfre_compile(s, len, true, out) : KILN_OK;
    if ((s = hfj_str(p, "Regex", &len)))
        return hfre_compile(s, len, false, out);
    return kiln_err_set(KILN_ERR_FORMAT, "%s: pattern must be {\"String\"} or {\"Regex\"}", what);
}

/* A single character value at key (Metaspace replacement, Strip content):
 * its UTF-8 bytes (1..4) into out; false when absent or not one character. */
static inline bool hfj_char(const json_t *o, const char *key, char out[5], size_t *n)
{
    size_t len;
    const char *s = hfj_str(o, key, &len);
    if (!s || len == 0 || len > 4)
        return false;
    uint8_t b = (uint8_t)s[0];
    size_t want = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    if (want != len)
        return false;
    memcpy(out, s, len);
    out[len] = '\0';
    *n = len;
    return true;
}

#endif /* KILN_TOKENIZER_HFJSON_H */
