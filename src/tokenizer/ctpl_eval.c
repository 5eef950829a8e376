/*
 * ctpl_eval.c - the tree-walking evaluator: statements, expressions, scopes.
 *
 * Scoping follows jinja2: the template body, each for-loop iteration and
 * each macro call get a scope; `if` does not.  `set` writes to the current
 * scope, so a value set inside a loop is gone after the loop (templates use
 * namespace() to carry state out, and `set ns.attr` writes through).  A
 * macro sees the scope it was defined in, as it is when the macro runs.
 *
 * Loop control (`break`, `continue`) is a flag on the render state that
 * every statement list checks after each statement; the parser guarantees
 * that it is only set inside a loop body.
 */
#include "tokenizer/ctpl_impl.h"

#include <math.h>
#include <string.h>

/* ---- scopes ---------------------------------------------------------------- */

static ctpl_scope *scope_new(ctpl_rs *r, ctpl_scope *parent)
{
    ctpl_scope *s = ctpl_alloc(r, sizeof *s);
    if (s) {
        memset(s, 0, sizeof *s);
        s->parent = parent;
    }
    return s;
}

static kiln_status scope_set(ctpl_rs *r, ctpl_scope *s, const char *name, ctpl_val v)
{
    for (size_t i = 0; i < s->len; i++)
        if (strcmp(s->names[i], name) == 0) {
            s->vals[i] = v;
            return KILN_OK;
        }
    if (s->len == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        const char **names = ctpl_alloc(r, cap * sizeof *names);
        ctpl_val *vals = ctpl_alloc(r, cap * sizeof *vals);
        if (!names || !vals)
            return KILN_ERR_OOM;
        if (s->len) {
            memcpy(names, s->names, s->len * sizeof *names);
            memcpy(vals, s->vals, s->len * sizeof *vals);
        }
        s->names = names;
        s->vals = vals;
        s->cap = cap;
    }
    s->names[s->len] = name;
    s->vals[s->len++] = v;
    return KILN_OK;
}

static const struct {
    const char *name;
    int fn;
} GLOBAL_FUNCS[] = {
    {"raise_exception", CTPL_FN_RAISE}, {"strftime_now", CTPL_FN_STRFTIME}, {"range", CTPL_FN_RANGE},
    {"namespace", CTPL_FN_NAMESPACE},   {"dict", CTPL_FN_DICT},
};

static kiln_status lookup(ctpl_rs *r, const char *name, ctpl_val *out)
{
    for (ctpl_scope *s = r->scope; s; s = s->parent)
        for (size_t i = s->len; i-- > 0;)
            if (strcmp(s->names[i], name) == 0) {
                *out = s->vals[i];
                return KILN_OK;
            }
    for (size_t k = 0; k < KILN_ARRAY_LEN(GLOBAL_FUNCS); k++)
        if (strcmp(GLOBAL_FUNCS[k].name, name) == 0) {
            out->kind = CTPL_FUNC;
            out->u.fn = GLOBAL_FUNCS[k].fn;
            return KILN_OK;
        }
    if (!strcmp(name, "lipsum") || !strcmp(name, "cycler") || !strcmp(name, "joiner"))
        return ctpl_fail(r, KILN_ERR_UNSUPPORTED, "unsupported global '%s'", name);
    *out = ctpl_undef();
    out->u.s.p = name;
    out->u.s.n = strlen(name);
    return KILN_OK;
}

/* ---- output ------------------------------------------------------------------ */

static kiln_status emit(ctpl_rs *r, const char *s, size_t n)
{
    if (n > CTPL_MAX_OUTPUT - r->out_total)
        return ctpl_fail(r, KILN_ERR_RANGE, "output larger than %zu MiB", CTPL_MAX_OUTPUT >> 20);
    r->out_total += n;
    return buf_append(r->out, s, n);
}

static kiln_status emit_value(ctpl_rs *r, ctpl_val v)
{
    if (v.kind == CTPL_STR)
        return emit(r, v.u.s.p, v.u.s.n);
    size_t before = r->out->len;
    kiln_status st = ctpl_write_str(r, r->out, v);
    if (!st && r->out->len - before > CTPL_MAX_OUTPUT - r->out_total)
        return ctpl_fail(r, KILN_ERR_RANGE, "output larger than %zu MiB", CTPL_MAX_OUTPUT >> 20);
    r->out_total += r->out->len - before;
    return st;
}

/* Run body with output going to a fresh buffer; the text becomes *out. */
static kiln_status capture(ctpl_rs *r, const ctpl_node *body, ctpl_val *out)
{
    kiln_buf buf = {0};
    kiln_buf *saved = r->out;
    r->out = &buf;
    kiln_status st = ctpl_exec(r, body);
    r->out = saved;
    if (!st) {
        char *s = ctpl_strdup(r, buf.data ? buf.data : "", buf.len);
        if (s)
            *out = ctpl_str(s, buf.len);
        else
            st = KILN_ERR_OOM;
    }
    buf_free(&buf);
    return st;
}

/* ---- assignment ------------------------------------------------------------------ */

static kiln_status unpack(ctpl_rs *r, ctpl_scope *s, const ctpl_node *target, ctpl_val v)
{
    if (target->kind == CTPL_N_NAME)
        return scope_set(r, s, target->s, v);
    ctpl_list *items;
    kiln_status st = v.kind == CTPL_LIST || v.kind == CTPL_STR ? ctpl_iterate(r, v, &items)
                   : ctpl_fail(r, KILN_ERR_FORMAT, "cannot unpack a %s", ctpl_type_name(v));
    if (st)
        return st;
    if (items->len != target->nkids)
        return ctpl_fail(r, KILN_ERR_FORMAT, "%s values to unpack (expected %zu, got %zu)",
                         items->len > target->nkids ? "too many" : "not enough", target->nkids, items->len);
    for (size_t i = 0; !st && i < target->nkids; i++)
        st = scope_set(r, s, target->kids[i]->s, items->items[i]);
    return st;
}

static kiln_status assign(ctpl_rs *r, const ctpl_node *target, ctpl_val v)
{
    if (target->kind != CTPL_N_GETATTR)
        return unpack(r, r->scope, target, v);
    ctpl_val ns;
    kiln_status st = lookup(r, target->a->s, &ns);
    if (st)
        return st;
    if (ns.kind != CTPL_NS)
        return ctpl_fail(r, KILN_ERR_FORMAT, "can only assign attributes of a namespace, '%s' is a %s",
                         target->a->s, ctpl_type_name(ns));
    if (target->s[0] == '_')
        return ctpl_fail(r, KILN_ERR_FORMAT, "cannot store underscore-prefixed attribute '%s' on a namespace",
                         target->s);
    return ctpl_dict_set(r, ns.u.d, ctpl_str(target->s, strlen(target->s)), v);
}

/* ---- statements ------------------------------------------------------------------ */

static kiln_status step(ctpl_rs *r, const ctpl_node *n)
{
    r->line = n->line;
    if (++r->steps > CTPL_MAX_STEPS)
        return ctpl_fail(r, KILN_ERR_RANGE, "more than %llu evaluation steps",
                         (unsigned long long)CTPL_MAX_STEPS);
    return KILN_OK;
}

/* Items of the loop after the `if` filter, evaluated with the target bound. */
static kiln_status loop_items(ctpl_rs *r, const ctpl_node *n, ctpl_list **out)
{
    ctpl_val seq;
    ctpl_list *items, *kept;
    kiln_status st = ctpl_eval(r, n->b, &seq);
    if (!st)
        st = ctpl_iterate(r, seq, &items);
    if (st || !n->c) {
        *out = st ? NULL : items;
        return st;
    }
    if (!(kept = ctpl_list_new(r, items->len)))
        return KILN_ERR_OOM;
    ctpl_scope *saved = r->scope, *scope = scope_new(r, saved);
    if (!scope)
        return KILN_ERR_OOM;
    for (size_t i = 0; !st && i < items->len; i++) {
        ctpl_val keep;
        scope->len = 0;
        r->scope = scope;
        st = unpack(r, r->scope, n->a, items->items[i]);
        if (!st)
            st = ctpl_eval(r, n->c, &keep);
        if (!st && ctpl_truthy(keep))
            st = ctpl_list_push(r, kept, items->items[i]);
    }
    r->scope = saved;
    *out = kept;
    return st;
}

static kiln_status exec_for(ctpl_rs *r, const ctpl_node *n)
{
    ctpl_list *items;
    kiln_status st = loop_items(r, n, &items);
    if (st)
        return st;
    if (items->len == 0)
        return n->e ? ctpl_exec(r, n->e) : KILN_OK;
    ctpl_loop *loop = ctpl_alloc(r, sizeof *loop);
    if (!loop)
        return KILN_ERR_OOM;
    loop->items = items;
    ctpl_scope *saved = r->scope, *body = scope_new(r, saved);
    if (!body)
        return KILN_ERR_OOM;
    for (size_t i = 0; !st && i < items->len; i++) {
        ctpl_val lv = {.kind = CTPL_LOOP};
        loop->index0 = i;
        lv.u.loop = loop;
        if ((st = step(r, n)))
            break;
        /* Each iteration starts from an empty scope; its storage is reused
         * so that long loops do not grow the arena. */
        body->len = 0;
        r->scope = body;
        st = unpack(r, r->scope, n->a, items->items[i]);
        if (!st)
            st = scope_set(r, r->scope, "loop", lv);
        if (!st)
            st = ctpl_exec(r, n->d);
        r->scope = saved;
        if (r->ctl == CTPL_CTL_BREAK) {
            r->ctl = 0;
            break;
        }
        r->ctl = 0;
    }
    return st;
}

static kiln_status exec_macro_def(ctpl_rs *r, const ctpl_node *n)
{
    ctpl_macro *m = ctpl_alloc(r, sizeof *m);
    if (!m)
        return KILN_ERR_OOM;
    m->def = n;
    m->closure = r->scope;
    ctpl_val v = {.kind = CTPL_MACRO};
    v.u.m = m;
    return scope_set(r, r->scope, n->s, v);
}

static kiln_status exec_filter_block(ctpl_rs *r, const ctpl_node *n)
{
    ctpl_val body, res;
    kiln_status st = capture(r, n->b, &body);
    if (st)
        return st;
    ctpl_node f = *n->a;
    ctpl_node lit = {.kind = CTPL_N_CONST, .line = n->line, .v = body};
    f.a = &lit;
    st = ctpl_eval(r, &f, &res);
    return st ? st : emit_value(r, res);
}

kiln_status ctpl_exec(ctpl_rs *r, const ctpl_node *n)
{
    ctpl_val v;
    kiln_status st = step(r, n);
    if (st)
        return st;
    switch (n->kind) {
    case CTPL_N_BODY:
        for (size_t i = 0; !st && i < n->nkids && !r->ctl; i++)
            st = ctpl_exec(r, n->kids[i]);
        return st;
    case CTPL_N_TEXT:
        return emit(r, n->s, n->n);
    case CTPL_N_OUTPUT:
        st = ctpl_eval(r, n->a, &v);
        return st ? st : emit_value(r, v);
    case CTPL_N_IF:
        if ((st = ctpl_eval(r, n->a, &v)))
            return st;
        if (ctpl_truthy(v))
            return ctpl_exec(r, n->b);
        return n->c ? ctpl_exec(r, n->c) : KILN_OK;
    case CTPL_N_FOR:
        return exec_for(r, n);
    case CTPL_N_SET:
        st = ctpl_eval(r, n->b, &v);
        return st ? st : assign(r, n->a, v);
    case CTPL_N_SETBLOCK:
        st = capture(r, n->b, &v);
        return st ? st : assign(r, n->a, v);
    case CTPL_N_MACRO:
        return exec_macro_def(r, n);
    case CTPL_N_BREAK:
        r->ctl = CTPL_CTL_BREAK;
        return KILN_OK;
    case CTPL_N_CONTINUE:
        r->ctl = CTPL_CTL_CONTINUE;
        return KILN_OK;
    case CTPL_N_FILTERBLOCK:
        return exec_filter_block(r, n);
    default:
        return ctpl_fail(r, KILN_ERR_INTERNAL, "statement kind %d in expression position", n->kind);
    }
}

/* ---- arithmetic ------------------------------------------------------------------ */

static kiln_status undefined_error(ctpl_rs *r, ctpl_val v)
{
    if (v.u.s.p)
        return ctpl_fail(r, KILN_ERR_FORMAT, "'%.*s' is undefined", (int)v.u.s.n, v.u.s.p);
    return ctpl_fail(r, KILN_ERR_FORMAT, "an undefined value was used");
}

static kiln_status type_error(ctpl_rs *r, const char *op, ctpl_val a, ctpl_val b)
{
    return ctpl_fail(r, KILN_ERR_FORMAT, "unsupported operand type(s) for %s: '%s' and '%s'", op,
                     ctpl_type_name(a), ctpl_type_name(b));
}

static kiln_status overflow(ctpl_rs *r) { return ctpl_fail(r, KILN_ERR_RANGE, "integer overflow"); }

static kiln_status concat_str(ctpl_rs *r, ctpl_val a, ctpl_val b, ctpl_val *out)
{
    size_t n = a.u.s.n + b.u.s.n;
    char *s = ctpl_alloc(r, n + 1);
    if (!s)
        return KILN_ERR_OOM;
    if (a.u.s.n)
        memcpy(s, a.u.s.p, a.u.s.n);
    if (b.u.s.n)
        memcpy(s + a.u.s.n, b.u.s.p, b.u.s.n);
    s[n] = '\0';
    *out = ctpl_str(s, n);
    return KILN_OK;
}

static kiln_status concat_list(ctpl_rs *r, ctpl_val a, ctpl_val b, ctpl_val *out)
{
    ctpl_list *l = ctpl_list_new(r, a.u.l->len + b.u.l->len);
    if (!l)
        return KILN_ERR_OOM;
    if (a.u.l->len)
        memcpy(l->items, a.u.l->items, a.u.l->len * sizeof *l->items);
    if (b.u.l->len)
        memcpy(l->items + a.u.l->len, b.u.l->items, b.u.l->len * sizeof *l->items);
    l->len = a.u.l->len + b.u.l->len;
    l->flags = a.u.l->flags & CTPL_LIST_TUPLE;
    *out = ctpl_list_val(l);
    return KILN_OK;
}

/* seq * count for str and list. */
static kiln_status repeat(ctpl_rs *r, ctpl_val seq, int64_t count, ctpl_val *out)
{
    size_t unit = seq.kind == CTPL_STR ? seq.u.s.n : seq.u.l->len * sizeof(ctpl_val);
    size_t times = count > 0 ? (size_t)count : 0, total;
    if (__builtin_mul_overflow(unit, times, &total) || total > CTPL_MAX_MEMORY)
        return ctpl_fail(r, KILN_ERR_RANGE, "repetition result too large");
    char *mem = ctpl_alloc(r, total + 1);
    if (!mem)
        return KILN_ERR_OOM;
    const void *src = seq.kind == CTPL_STR ? (const void *)seq.u.s.p : (const void *)seq.u.l->items;
    for (size_t i = 0; i < times && unit; i++)
        memcpy(mem + i * unit, src, unit);
    if (seq.kind == CTPL_STR) {
        mem[total] = '\0';
        *out = ctpl_str(mem, total);
        return KILN_OK;
    }
    ctpl_list *l = ctpl_list_new(r, 0);
    if (!l)
        return KILN_ERR_OOM;
    l->items = (ctpl_val *)(void *)mem;
    l->len = l->cap = times * seq.u.l->len;
    l->flags = seq.u.l->flags & CTPL_LIST_TUPLE;
    *out = ctpl_list_val(l);
    return KILN_OK;
}

static double py_fmod(double x, double y)
{
    double m = fmod(x, y);
    if (m != 0.0 && ((y < 0) != (m < 0)))
        m += y;
    else if (m == 0.0)
        m = copysign(0.0, y);
    return m;
}

static double py_floordiv(double x, double y)
{
    double m = fmod(x, y), div = (x - m) / y;
    if (m != 0.0 && ((y < 0) != (m < 0)))
        div -= 1.0;
    if (div == 0.0)
        return copysign(0.0, x / y);
    double fl = floor(div);
    return div - fl > 0.5 ? fl + 1.0 : fl;
}

static kiln_status int_arith(ctpl_rs *r, int op, int64_t x, int64_t y, ctpl_val *out)
{
    int64_t v = 0;
    bool ovf = false;
    switch (op) {
    case CTPL_OP_ADD: ovf = __builtin_add_overflow(x, y, &v); break;
    case CTPL_OP_SUB: ovf = __builtin_sub_overflow(x, y, &v); break;
    case CTPL_OP_MUL: ovf = __builtin_mul_overflow(x, y, &v); break;
    case CTPL_OP_FLOORDIV:
    case CTPL_OP_MOD:
        if (y == 0)
            return ctpl_fail(r, KILN_ERR_FORMAT, "integer division or modulo by zero");
        if (x == INT64_MIN && y == -1)
            return overflow(r);
        v = op == CTPL_OP_MOD ? x % y : x / y;
        if (op == CTPL_OP_MOD && v != 0 && ((v < 0) != (y < 0)))
            v += y;
        else if (op == CTPL_OP_FLOORDIV && (x % y != 0) && ((x < 0) != (y < 0)))
            v -= 1;
        break;
    case CTPL_OP_POW:
        if (y < 0) {
            *out = ctpl_float(pow((double)x, (double)y));
            return KILN_OK;
        }
        v = 1;
        for (int64_t base = x, e = y; e > 0 && !ovf; e >>= 1) { /* by squaring */
            if (e & 1)
                ovf = __builtin_mul_overflow(v, base, &v);
            if (e > 1 && !ovf)
                ovf = __builtin_mul_overflow(base, base, &base);
        }
        break;
    default:
        return ctpl_fail(r, KILN_ERR_INTERNAL, "bad integer operator");
    }
    if (ovf)
        return overflow(r);
    *out = ctpl_int(v);
    return KILN_OK;
}

static kiln_status num_arith(ctpl_rs *r, int op, ctpl_val a, ctpl_val b, ctpl_val *out)
{
    if (op == CTPL_OP_DIV || a.kind == CTPL_FLOAT || b.kind == CTPL_FLOAT) {
        double x = ctpl_as_double(a), y = ctpl_as_double(b), v;
        if (y == 0.0 && (op == CTPL_OP_DIV || op == CTPL_OP_FLOORDIV || op == CTPL_OP_MOD))
            return ctpl_fail(r, KILN_ERR_FORMAT, "division by zero");
        switch (op) {
        case CTPL_OP_ADD: v = x + y; break;
        case CTPL_OP_SUB: v = x - y; break;
        case CTPL_OP_MUL: v = x * y; break;
        case CTPL_OP_DIV: v = x / y; break;
        case CTPL_OP_FLOORDIV: v = py_floordiv(x, y); break;
        case CTPL_OP_MOD: v = py_fmod(x, y); break;
        default: v = pow(x, y); break;
        }
        *out = ctpl_float(v);
        return KILN_OK;
    }
    int64_t x = a.kind == CTPL_INT ? a.u.i : a.u.b, y = b.kind == CTPL_INT ? b.u.i : b.u.b;
    return int_arith(r, op, x, y, out);
}

static const char *op_symbol(int op)
{
    static const char *const sym[] = {"+", "-", "*", "/", "//", "%", "**", "~",
                                      "==", "!=", "<", "<=", ">", ">=", "in", "not in"};
    return op >= 0 && (size_t)op < KILN_ARRAY_LEN(sym) ? sym[op] : "?";
}

static kiln_status binop(ctpl_rs *r, int op, ctpl_val a, ctpl_val b, ctpl_val *out)
{
    if (op == CTPL_OP_CONCAT) {
        ctpl_val sa, sb;
        kiln_status st = ctpl_to_str(r, a, &sa);
        if (!st)
            st = ctpl_to_str(r, b, &sb);
        return st ? st : concat_str(r, sa, sb, out);
    }
    if (a.kind == CTPL_UNDEF)
        return undefined_error(r, a);
    if (b.kind == CTPL_UNDEF)
        return undefined_error(r, b);
    if (ctpl_is_number(a) && ctpl_is_number(b))
        return num_arith(r, op, a, b, out);
    if (op == CTPL_OP_ADD && a.kind == CTPL_STR && b.kind == CTPL_STR)
        return concat_str(r, a, b, out);
    if (op == CTPL_OP_ADD && a.kind == CTPL_LIST && b.kind == CTPL_LIST &&
        !((a.u.l->flags | b.u.l->flags) & CTPL_LIST_GEN) &&
        (a.u.l->flags & CTPL_LIST_TUPLE) == (b.u.l->flags & CTPL_LIST_TUPLE))
        return concat_list(r, a, b, out);
    if (op == CTPL_OP_MUL) {
        bool seq_a = a.kind == CTPL_STR || (a.kind == CTPL_LIST && !(a.u.l->flags & CTPL_LIST_GEN));
        bool seq_b = b.kind == CTPL_STR || (b.kind == CTPL_LIST && !(b.u.l->flags & CTPL_LIST_GEN));
        if (seq_a && (b.kind == CTPL_INT || b.kind == CTPL_BOOL))
            return repeat(r, a, b.kind == CTPL_INT ? b.u.i : b.u.b, out);
        if (seq_b && (a.kind == CTPL_INT || a.kind == CTPL_BOOL))
            return repeat(r, b, a.kind == CTPL_INT ? a.u.i : a.u.b, out);
    }
    if (op == CTPL_OP_MOD && a.kind == CTPL_STR)
        return ctpl_fail(r, KILN_ERR_UNSUPPORTED, "printf-style string formatting ('%%') is not supported");
    return type_error(r, op_symbol(op), a, b);
}

static kiln_status eval_binop(ctpl_rs *r, const ctpl_node *n, ctpl_val *out)
{
    ctpl_val a, b;
    kiln_status st = ctpl_eval(r, n->a, &a);
    if (!st)
        st = ctpl_eval(r, n->b, &b);
    if (st)
        return st;
    r->line = n->line;
    int cmp;
    bool in;
    switch (n->op) {
    case CTPL_OP_EQ: *out = ctpl_bool(ctpl_equal(a, b)); return KILN_OK;
    case CTPL_OP_NE: *out = ctpl_bool(!ctpl_equal(a, b)); return KILN_OK;
    case CTPL_OP_LT: case CTPL_OP_LE: case CTPL_OP_GT: case CTPL_OP_GE:
        if (a.kind == CTPL_UNDEF || b.kind == CTPL_UNDEF)
            return undefined_error(r, a.kind == CTPL_UNDEF ? a : b);
        if ((st = ctpl_compare(r, a, b, &cmp)))
            return st;
        *out = ctpl_bool(n->op == CTPL_OP_LT ? cmp < 0 : n->op == CTPL_OP_LE ? cmp <= 0
                         : n->op == CTPL_OP_GT ? cmp > 0 : cmp >= 0);
        return KILN_OK;
    case CTPL_OP_IN: case CTPL_OP_NOTIN:
        if ((st = ctpl_contains(r, b, a, &in)))
            return st;
        *out = ctpl_bool(n->op == CTPL_OP_IN ? in : !in);
        return KILN_OK;
    default:
        return binop(r, n->op, a, b, out);
    }
}

/* ---- calls ------------------------------------------------------------------------ */

static kiln_status eval_args(ctpl_rs *r, const ctpl_node *n, ctpl_args *a)
{
    kiln_status st = KILN_OK;
    memset(a, 0, sizeof *a);
    if (n->nkids && !(a->pos = ctpl_alloc(r, n->nkids * sizeof *a->pos)))
        return KILN_ERR_OOM;
    if (n->nkids2 && !(a->kw = ctpl_alloc(r, n->nkids2 * sizeof *a->kw)))
        return KILN_ERR_OOM;
    for (size_t i = 0; !st && i < n->nkids; i++)
        st = ctpl_eval(r, n->kids[i], &a->pos[a->npos++]);
    for (size_t i = 0; !st && i < n->nkids2; i++)
        st = ctpl_eval(r, n->kids2[i], &a->kw[a->nkw++]);
    a->names = n->names;
    r->line = n->line;
    return st;
}

static kiln_status bind_params(ctpl_rs *r, const ctpl_node *def, const ctpl_args *a)
{
    kiln_status st = KILN_OK;
    if (a->npos > def->nnames)
        return ctpl_fail(r, KILN_ERR_FORMAT, "macro '%s' takes not more than %zu argument(s)", def->s,
                         def->nnames);
    for (size_t k = 0; k < a->nkw; k++) {
        size_t p = 0;
        while (p < def->nnames && strcmp(def->names[p], a->names[k]) != 0)
            p++;
        if (p == def->nnames)
            return ctpl_fail(r, KILN_ERR_FORMAT, "macro '%s' takes no keyword argument '%s'", def->s,
                             a->names[k]);
        if (p < a->npos)
            return ctpl_fail(r, KILN_ERR_FORMAT, "macro '%s' got multiple values for argument '%s'",
                             def->s, a->names[k]);
    }
    for (size_t p = 0; !st && p < def->nnames; p++) {
        ctpl_val v = ctpl_undef();
        v.u.s.p = def->names[p];
        v.u.s.n = strlen(def->names[p]);
        if (p < a->npos)
            v = a->pos[p];
        else {
            size_t k = 0;
            while (k < a->nkw && strcmp(def->names[p], a->names[k]) != 0)
                k++;
            if (k < a->nkw)
                v = a->kw[k];
            else if (def->kids2[p])
                st = ctpl_eval(r, def->kids2[p], &v);
        }
        if (!st)
            st = scope_set(r, r->scope, def->names[p], v);
    }
    return st;
}

static kiln_status call_macro(ctpl_rs *r, const ctpl_macro *m, const ctpl_args *a, ctpl_val *out)
{
    if (r->call_depth >= CTPL_MAX_CALL_DEPTH)
        return ctpl_fail(r, KILN_ERR_RANGE, "macro calls nested more than %d deep", CTPL_MAX_CALL_DEPTH);
    ctpl_scope *saved = r->scope;
    kiln_status st = KILN_OK;
    if (!(r->scope = scope_new(r, m->closure)))
        st = KILN_ERR_OOM;
    r->call_depth++;
    if (!st)
        st = bind_params(r, m->def, a);
    if (!st)
        st = capture(r, m->def->b, out);
    r->call_depth--;
    r->scope = saved;
    return st;
}

kiln_status ctpl_call_value(ctpl_rs *r, ctpl_val callee, const ctpl_args *a, ctpl_val *out)
{
    switch (callee.kind) {
    case CTPL_MACRO: return call_macro(r, callee.u.m, a, out);
    case CTPL_METHOD: return ctpl_call_method(r, callee.u.bm, a, out);
    case CTPL_FUNC: return ctpl_call_func(r, callee.u.fn, ctpl_undef(), a, out);
    case CTPL_UNDEF: return undefined_error(r, callee);
    default: return ctpl_fail(r, KILN_ERR_FORMAT, "'%s' object is not callable", ctpl_type_name(callee));
    }
}

/* ---- expressions ------------------------------------------------------------------ */

static kiln_status eval_int_opt(ctpl_rs *r, const ctpl_node *n, bool *present, int64_t *v)
{
    ctpl_val x;
    *present = false;
    if (!n)
        return KILN_OK;
    kiln_status st = ctpl_eval(r, n, &x);
    if (st || x.kind == CTPL_NONE)
        return st;
    if (x.kind != CTPL_INT && x.kind != CTPL_BOOL)
        return ctpl_fail(r, KILN_ERR_FORMAT, "slice indices must be integers or None, not %s",
                         ctpl_type_name(x));
    *present = true;
    *v = x.kind == CTPL_INT ? x.u.i : x.u.b;
    return KILN_OK;
}

/* Python slice.indices(): clamp start/stop for a sequence of length len. */
static void slice_bounds(int64_t len, bool hs, int64_t s, bool he, int64_t e, int64_t stepv, int64_t *start,
                         int64_t *stop)
{
    int64_t lo = stepv < 0 ? -1 : 0, hi = stepv < 0 ? len - 1 : len;
    if (!hs)
        *start = stepv < 0 ? hi : lo;
    else
        *start = s < 0 ? (s + len < lo ? lo : s + len) : (s > hi ? hi : s);
    if (!he)
        *stop = stepv < 0 ? lo : hi;
    else
        *stop = e < 0 ? (e + len < lo ? lo : e + len) : (e > hi ? hi : e);
}

static kiln_status eval_slice(ctpl_rs *r, const ctpl_node *n, ctpl_val *out)
{
    ctpl_val obj;
    bool hs, he, hst;
    int64_t s = 0, e = 0, stv = 1, start, stop;
    kiln_status st = ctpl_eval(r, n->a, &obj);
    if (!st)
        st = eval_int_opt(r, n->b, &hs, &s);
    if (!st)
        st = eval_int_opt(r, n->c, &he, &e);
    if (!st)
        st = eval_int_opt(r, n->d, &hst, &stv);
    if (st)
        return st;
    if (!hst)
        stv = 1;
    if (stv == 0)
        return ctpl_fail(r, KILN_ERR_FORMAT, "slice step cannot be zero");
    if (obj.kind == CTPL_UNDEF)
        return undefined_error(r, obj);
    if (obj.kind != CTPL_STR && !(obj.kind == CTPL_LIST && !(obj.u.l->flags & CTPL_LIST_GEN))) {
        *out = ctpl_undef();
        return KILN_OK;
    }
    ctpl_list *items;
    if ((st = ctpl_iterate(r, obj, &items)))
        return st;
    slice_bounds((int64_t)items->len, hs, s, he, e, stv, &start, &stop);
    ctpl_list *res = ctpl_list_new(r, 0);
    if (!res)
        return KILN_ERR_OOM;
    res->flags = obj.kind == CTPL_LIST ? (obj.u.l->flags & CTPL_LIST_TUPLE) : 0;
    for (int64_t i = start; !st && (stv > 0 ? i < stop : i > stop); i += stv)
        st = ctpl_list_push(r, res, items->items[i]);
    if (st || obj.kind == CTPL_LIST) {
        *out = ctpl_list_val(res);
        return st;
    }
    kiln_buf b = {0};
    for (size_t i = 0; !st && i < res->len; i++)
        st = buf_append(&b, res->items[i].u.s.p, res->items[i].u.s.n);
    char *str = st ? NULL : ctpl_strdup(r, b.data ? b.data : "", b.len);
    if (str)
        *out = ctpl_str(str, b.len);
    buf_free(&b);
    return st ? st : str ? KILN_OK : KILN_ERR_OOM;
}

static kiln_status eval_collection(ctpl_rs *r, const ctpl_node *n, ctpl_val *out)
{
    kiln_status st = KILN_OK;
    if (n->kind == CTPL_N_DICT) {
        ctpl_dict *d = ctpl_dict_new(r, n->nkids);
        if (!d)
            return KILN_ERR_OOM;
        for (size_t i = 0; !st && i < n->nkids; i++) {
            ctpl_val k, v;
            if (!(st = ctpl_eval(r, n->kids[i], &k)) && !(st = ctpl_eval(r, n->kids2[i], &v)))
                st = ctpl_dict_set(r, d, k, v);
        }
        *out = ctpl_dict_val(d);
        return st;
    }
    ctpl_list *l = ctpl_list_new(r, n->nkids);
    if (!l)
        return KILN_ERR_OOM;
    l->flags = n->kind == CTPL_N_TUPLE ? CTPL_LIST_TUPLE : 0;
    for (size_t i = 0; !st && i < n->nkids; i++)
        st = ctpl_eval(r, n->kids[i], &l->items[l->len++]);
    *out = ctpl_list_val(l);
    return st;
}

static kiln_status eval_filter_or_test(ctpl_rs *r, const ctpl_node *n, ctpl_val *out)
{
    ctpl_val v;
    ctpl_args a;
    kiln_status st = ctpl_eval(r, n->a, &v);
    if (!st)
        st = eval_args(r, n, &a);
    if (st)
        return st;
    if (n->kind == CTPL_N_FILTER)
        return ctpl_apply_filter(r, n->op, n->s, v, &a, out);
    bool res = false; /* a failing test leaves it unset */
    st = ctpl_apply_test(r, n->op, n->s, v, &a, &res);
    *out = ctpl_bool(res);
    return st;
}

static kiln_status eval_unary(ctpl_rs *r, const ctpl_node *n, ctpl_val *out)
{
    ctpl_val v;
    kiln_status st = ctpl_eval(r, n->a, &v);
    if (st)
        return st;
    r->line = n->line;
    if (n->kind == CTPL_N_NOT) {
        *out = ctpl_bool(!ctpl_truthy(v));
        return KILN_OK;
    }
    if (v.kind == CTPL_UNDEF)
        return undefined_error(r, v);
    if (!ctpl_is_number(v))
        return ctpl_fail(r, KILN_ERR_FORMAT, "bad operand type for unary %s: '%s'",
                         n->kind == CTPL_N_NEG ? "-" : "+", ctpl_type_name(v));
    if (v.kind == CTPL_FLOAT)
        *out = ctpl_float(n->kind == CTPL_N_NEG ? -v.u.f : v.u.f);
    else {
        int64_t i = v.kind == CTPL_INT ? v.u.i : v.u.b;
        if (n->kind == CTPL_N_NEG && i == INT64_MIN)
            return overflow(r);
        *out = ctpl_int(n->kind == CTPL_N_NEG ? -i : i);
    }
    return KILN_OK;
}

kiln_status ctpl_eval(ctpl_rs *r, const ctpl_node *n, ctpl_val *out)
{
    ctpl_val a, b;
    ctpl_args args;
    kiln_status st = step(r, n);
    if (st)
        return st;
    switch (n->kind) {
    case CTPL_N_CONST: *out = n->v; return KILN_OK;
    case CTPL_N_NAME: return lookup(r, n->s, out);
    case CTPL_N_LIST: case CTPL_N_TUPLE: case CTPL_N_DICT: return eval_collection(r, n, out);
    case CTPL_N_GETATTR:
        st = ctpl_eval(r, n->a, &a);
        r->line = n->line;
        return st ? st : ctpl_getattr(r, a, n->s, out);
    case CTPL_N_GETITEM:
        if ((st = ctpl_eval(r, n->a, &a)) || (st = ctpl_eval(r, n->b, &b)))
            return st;
        r->line = n->line;
        return ctpl_getitem(r, a, b, out);
    case CTPL_N_SLICE: return eval_slice(r, n, out);
    case CTPL_N_CALL:
        if ((st = ctpl_eval(r, n->a, &a)) || (st = eval_args(r, n, &args)))
            return st;
        return ctpl_call_value(r, a, &args, out);
    case CTPL_N_FILTER: case CTPL_N_TEST: return eval_filter_or_test(r, n, out);
    case CTPL_N_NOT: case CTPL_N_NEG: case CTPL_N_POS: return eval_unary(r, n, out);
    case CTPL_N_BINOP: return eval_binop(r, n, out);
    case CTPL_N_AND:
    case CTPL_N_OR:
        if ((st = ctpl_eval(r, n->a, &a)))
            return st;
        if (ctpl_truthy(a) == (n->kind == CTPL_N_OR)) {
            *out = a;
            return KILN_OK;
        }
        return ctpl_eval(r, n->b, out);
    case CTPL_N_COND:
        if ((st = ctpl_eval(r, n->a, &a)))
            return st;
        if (ctpl_truthy(a))
            return ctpl_eval(r, n->b, out);
        if (n->c)
            return ctpl_eval(r, n->c, out);
        *out = ctpl_undef();
        return KILN_OK;
    default:
        return ctpl_fail(r, KILN_ERR_INTERNAL, "node kind %d is not an expression", n->kind);
    }
}
