/*
 * chat_template.c - compile and render chat templates (chat_template.h).
 *
 * A compiled template owns one arena holding its tokens and AST (ctpl_lex,
 * ctpl_parse).  A render builds the context in a fresh arena, runs the
 * evaluator (ctpl_eval.c) into a private buffer, and appends that buffer to
 * the caller's only when the whole render succeeded, so a failed render
 * leaves *out as it was.
 *
 * The context is prepared the way transformers' render_jinja_template()
 * prepares it: `tools` and `documents` are None and `add_generation_prompt`
 * is False unless given, and a message whose reasoning is given under any of
 * reasoning_content / thinking / reasoning carries it under both
 * `thinking` (first key) and `reasoning_content`.
 *
 * Limits against hostile templates (ctpl_impl.h): nesting depth
 * CTPL_MAX_NEST (compile), output CTPL_MAX_OUTPUT bytes, render memory
 * CTPL_MAX_MEMORY bytes, CTPL_MAX_STEPS evaluation steps, macro call depth
 * CTPL_MAX_CALL_DEPTH, range() size CTPL_MAX_RANGE.
 */
#include "tokenizer/chat_template.h"

#include "base/alloc.h"
#include "tokenizer/ctpl_impl.h"

#include <string.h>

struct ctpl {
    arena *a;
    ctpl_node *root;
};

kiln_status ctpl_compile(const char *src, size_t len, ctpl **out)
{
    ctpl_tok *toks = NULL;
    size_t ntoks = 0;
    kiln_status st;
    *out = NULL;
    if (!src && len)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "chat template: NULL source");
    ctpl *t = kiln_calloc(1, sizeof *t);
    if (!t || !(t->a = arena_create(0))) {
        kiln_free(t);
        return kiln_err_set(KILN_ERR_OOM, "chat template: out of memory");
    }
    st = ctpl_lex(t->a, src ? src : "", len, &toks, &ntoks);
    if (!st)
        st = ctpl_parse(t->a, toks, ntoks, &t->root);
    if (st) {
        ctpl_free(t);
        return st;
    }
    *out = t;
    return KILN_OK;
}

void ctpl_free(ctpl *t)
{
    if (!t)
        return;
    arena_free(t->a);
    kiln_free(t);
}

/* ---- context ------------------------------------------------------------------ */

static const char *const REASONING_KEYS[] = {"reasoning_content", "thinking", "reasoning"};

/* transformers' _alias_reasoning_fields() for one message. */
static kiln_status alias_reasoning(ctpl_rs *r, ctpl_val *msg)
{
    ctpl_val *reasoning = NULL;
    kiln_status st = KILN_OK;
    if (msg->kind != CTPL_DICT)
        return KILN_OK;
    for (size_t k = 0; k < KILN_ARRAY_LEN(REASONING_KEYS) && !reasoning; k++) {
        ctpl_val *v = ctpl_dict_get_str(msg->u.d, REASONING_KEYS[k]);
        if (v && v->kind != CTPL_NONE)
            reasoning = v;
    }
    if (!reasoning)
        return KILN_OK;
    ctpl_val rv = *reasoning;
    ctpl_dict *d = ctpl_dict_new(r, msg->u.d->len + 2);
    if (!d)
        return KILN_ERR_OOM;
    st = ctpl_dict_set(r, d, ctpl_str("thinking", 8), rv);
    for (size_t i = 0; !st && i < msg->u.d->len; i++)
        st = ctpl_dict_set(r, d, msg->u.d->keys[i], msg->u.d->vals[i]);
    if (!st)
        st = ctpl_dict_set(r, d, ctpl_str("reasoning_content", 17), rv);
    *msg = ctpl_dict_val(d);
    return st;
}

static kiln_status add_var(ctpl_rs *r, const char *name, ctpl_val v)
{
    ctpl_scope *s = r->globals;
    for (size_t i = 0; i < s->len; i++)
        if (!strcmp(s->names[i], name)) {
            s->vals[i] = v;
            return KILN_OK;
        }
    if (s->len == s->cap)
        return ctpl_fail(r, KILN_ERR_INTERNAL, "context scope full");
    s->names[s->len] = name;
    s->vals[s->len++] = v;
    return KILN_OK;
}

static kiln_status build_context(ctpl_rs *r, json_t *context)
{
    size_t n = (context ? json_object_size(context) : 0) + 3;
    ctpl_scope *g = ctpl_alloc(r, sizeof *g);
    if (!g || !(g->names = ctpl_alloc(r, n * sizeof *g->names)) || !(g->vals = ctpl_alloc(r, n * sizeof *g->vals)))
        return KILN_ERR_OOM;
    g->parent = NULL;
    g->len = 0;
    g->cap = n;
    r->globals = g;
    kiln_status st = add_var(r, "tools", ctpl_none());
    if (!st)
        st = add_var(r, "documents", ctpl_none());
    if (!st)
        st = add_var(r, "add_generation_prompt", ctpl_bool(false));
    const char *key;
    json_t *val;
    if (context) {
        json_object_foreach(context, key, val) {
            ctpl_val v;
            if (st || (st = ctpl_from_json(r, val, &v, 0)))
                break;
            if (!strcmp(key, "messages") && v.kind == CTPL_LIST)
                for (size_t i = 0; !st && i < v.u.l->len; i++)
                    st = alias_reasoning(r, &v.u.l->items[i]);
            if (!st)
                st = add_var(r, key, v);
        }
    }
    return st;
}

kiln_status ctpl_render(const ctpl *t, json_t *context, kiln_buf *out)
{
    if (!t || !out)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "chat template: NULL template or output");
    if (context && !json_is_object(context))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "chat template: the context must be a JSON object");
    kiln_buf buf = {0};
    ctpl_rs r = {.out = &buf, .line = 1};
    kiln_status st = KILN_OK;
    if (!(r.ar = arena_create(0)))
        return kiln_err_set(KILN_ERR_OOM, "chat template: out of memory");
    st = build_context(&r, context);
    if (!st && !(r.scope = ctpl_alloc(&r, sizeof *r.scope)))
        st = KILN_ERR_OOM;
    if (!st) {
        memset(r.scope, 0, sizeof *r.scope);
        r.scope->parent = r.globals;
        st = ctpl_exec(&r, t->root);
    }
    if (!st && buf.len)
        st = buf_append(out, buf.data, buf.len);
    else if (!st)
        st = buf_reserve(out, 1);
    if (st == KILN_ERR_OOM && !kiln_last_error()[0])
        kiln_err_set(KILN_ERR_OOM, "chat template: out of memory");
    buf_free(&buf);
    arena_free(r.ar);
    return st;
}
