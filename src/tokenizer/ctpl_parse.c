/*
 * ctpl_parse.c - recursive-descent parser from tokens to the AST.
 *
 * Follows jinja2's parser (jinja2/parser.py) production by production so
 * that precedence and the odd corners agree: `-x|f` is f(-x), `not x is y`
 * is not (x is y), tests take one bare argument (`x is divisibleby 3`),
 * filters bind tighter than arithmetic, a conditional without `else` is
 * undefined when false.  Nodes live in the template arena.  Every node's
 * depth is bounded by CTPL_MAX_NEST so that the evaluator's recursion stays
 * shallow whatever the input.
 */
#include "tokenizer/ctpl_impl.h"

#include <string.h>

typedef struct parser {
    arena *a;
    const ctpl_tok *t;
    size_t n, i;
    int nest;
    int loops; /* enclosing for bodies, for break/continue */
} parser;

static const ctpl_tok *cur(const parser *p) { return &p->t[p->i]; }
static const ctpl_tok *peek(const parser *p, size_t k)
{
    return p->i + k < p->n ? &p->t[p->i + k] : &p->t[p->n - 1];
}
static void advance(parser *p)
{
    if (p->t[p->i].kind != CTPL_T_EOF)
        p->i++;
}
static bool tok_is_op(const ctpl_tok *t, const char *op)
{
    return t->kind == CTPL_T_OP && strcmp(t->s, op) == 0;
}
static bool tok_is_name(const ctpl_tok *t, const char *name)
{
    return t->kind == CTPL_T_NAME && strcmp(t->s, name) == 0;
}

static const char *describe(const ctpl_tok *t)
{
    switch (t->kind) {
    case CTPL_T_TEXT: return "template data";
    case CTPL_T_VAR_BEGIN: return "'{{'";
    case CTPL_T_VAR_END: return "end of print statement";
    case CTPL_T_BLOCK_BEGIN: return "'{%'";
    case CTPL_T_BLOCK_END: return "end of statement block";
    case CTPL_T_STRING: return "string";
    case CTPL_T_INT: return "integer";
    case CTPL_T_FLOAT: return "float";
    case CTPL_T_EOF: return "end of template";
    default: return t->s;
    }
}

static kiln_status syntax(const parser *p, const char *expected)
{
    const ctpl_tok *t = cur(p);
    return kiln_err_set(KILN_ERR_FORMAT, "chat template line %d: expected %s, got '%s'", t->line,
                        expected, describe(t));
}

static kiln_status oom(void) { return kiln_err_set(KILN_ERR_OOM, "chat template: out of memory"); }

static kiln_status expect_op(parser *p, const char *op)
{
    if (!tok_is_op(cur(p), op)) {
        char what[16];
        snprintf(what, sizeof what, "'%s'", op);
        return syntax(p, what);
    }
    advance(p);
    return KILN_OK;
}

static kiln_status expect_kind(parser *p, ctpl_tok_kind kind, const char *what)
{
    if (cur(p)->kind != kind)
        return syntax(p, what);
    advance(p);
    return KILN_OK;
}

static ctpl_node *new_node(parser *p, int kind, int line)
{
    ctpl_node *nd = arena_calloc(p->a, 1, sizeof *nd, _Alignof(ctpl_node));
    if (nd) {
        nd->kind = (uint8_t)kind;
        nd->line = line;
        nd->depth = 1;
    }
    return nd;
}

static int max_depth(int d, const ctpl_node *c) { return c && c->depth > d ? c->depth : d; }

/* Set nd->depth from its children; error when past CTPL_MAX_NEST. */
static kiln_status finish(ctpl_node *nd)
{
    int d = 0;
    d = max_depth(max_depth(max_depth(d, nd->a), nd->b), nd->c);
    d = max_depth(max_depth(d, nd->d), nd->e);
    for (size_t k = 0; k < nd->nkids; k++)
        d = max_depth(d, nd->kids[k]);
    for (size_t k = 0; k < nd->nkids2; k++)
        d = max_depth(d, nd->kids2[k]);
    if (d + 1 > CTPL_MAX_NEST)
        return kiln_err_set(KILN_ERR_RANGE, "chat template line %d: nested more than %d levels deep",
                            nd->line, CTPL_MAX_NEST);
    nd->depth = (uint16_t)(d + 1);
    return KILN_OK;
}

/* Growable node-pointer arrays in the arena (old copies stay until the
 * template is freed; parse-time only). */
typedef struct nvec {
    ctpl_node **v;
    const char **names;
    size_t n, cap;
} nvec;

static kiln_status nvec_push(parser *p, nvec *v, ctpl_node *nd, const char *name)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        ctpl_node **nv = arena_alloc(p->a, cap * sizeof *nv, _Alignof(ctpl_node *));
        const char **nn = arena_alloc(p->a, cap * sizeof *nn, _Alignof(const char *));
        if (!nv || !nn)
            return oom();
        if (v->n) {
            memcpy(nv, v->v, v->n * sizeof *nv);
            memcpy(nn, v->names, v->n * sizeof *nn);
        }
        v->v = nv;
        v->names = nn;
        v->cap = cap;
    }
    v->v[v->n] = nd;
    v->names[v->n] = name;
    v->n++;
    return KILN_OK;
}

static kiln_status enter(parser *p)
{
    if (++p->nest > CTPL_MAX_NEST)
        return kiln_err_set(KILN_ERR_RANGE, "chat template line %d: nested more than %d levels deep",
                            cur(p)->line, CTPL_MAX_NEST);
    return KILN_OK;
}

/* ==== expressions ========================================================== */

static kiln_status parse_expression(parser *p, bool condexpr, ctpl_node **out);
static kiln_status parse_tuple(parser *p, bool condexpr, bool explicit_parens, const char *extra_end,
                               ctpl_node **out);
static kiln_status parse_or(parser *p, ctpl_node **out);
static kiln_status parse_unary(parser *p, bool with_filter, ctpl_node **out);

static kiln_status mk2(parser *p, int kind, int op, int line, ctpl_node *a, ctpl_node *b, ctpl_node **out)
{
    ctpl_node *nd = new_node(p, kind, line);
    *out = nd;
    if (!nd)
        return oom();
    nd->op = (uint8_t)op;
    nd->a = a;
    nd->b = b;
    *out = nd;
    return finish(nd);
}

/* (args...) after a callee, filter or test: positional then keyword. */
static kiln_status parse_call_args(parser *p, ctpl_node *nd)
{
    nvec pos = {0}, kw = {0};
    kiln_status st = expect_op(p, "(");
    while (!st && !tok_is_op(cur(p), ")")) {
        ctpl_node *arg = NULL;
        if (pos.n + kw.n > 0 && (st = expect_op(p, ",")))
            break;
        if (tok_is_op(cur(p), ")"))
            break;
        if (tok_is_op(cur(p), "*") || tok_is_op(cur(p), "**"))
            return kiln_err_set(KILN_ERR_UNSUPPORTED, "chat template line %d: *args/**kwargs in "
                                "calls are not supported", cur(p)->line);
        if (cur(p)->kind == CTPL_T_NAME && tok_is_op(peek(p, 1), "=")) {
            const char *name = cur(p)->s;
            advance(p);
            advance(p);
            if (!(st = parse_expression(p, true, &arg)))
                st = nvec_push(p, &kw, arg, name);
        } else if (kw.n > 0) {
            st = kiln_err_set(KILN_ERR_FORMAT, "chat template line %d: positional argument "
                              "after keyword argument", cur(p)->line);
        } else if (!(st = parse_expression(p, true, &arg))) {
            st = nvec_push(p, &pos, arg, NULL);
        }
    }
    if (!st)
        st = expect_op(p, ")");
    nd->kids = pos.v;
    nd->nkids = pos.n;
    nd->kids2 = kw.v;
    nd->names = kw.names;
    nd->nkids2 = nd->nnames = kw.n;
    return st;
}

static kiln_status parse_list_or_dict(parser *p, ctpl_node **out)
{
    const ctpl_tok *t = cur(p);
    bool is_dict = tok_is_op(t, "{");
    const char *close = is_dict ? "}" : "]";
    ctpl_node *nd = new_node(p, is_dict ? CTPL_N_DICT : CTPL_N_LIST, t->line);
    nvec keys = {0}, vals = {0};
    kiln_status st = nd ? KILN_OK : oom();
    advance(p);
    while (!st && !tok_is_op(cur(p), close)) {
        ctpl_node *k, *v = NULL;
        if (keys.n > 0 && (st = expect_op(p, ",")))
            break;
        if (tok_is_op(cur(p), close))
            break;
        st = parse_expression(p, true, &k);
        if (!st && is_dict && !(st = expect_op(p, ":")))
            st = parse_expression(p, true, &v);
        if (!st)
            st = nvec_push(p, &keys, k, NULL);
        if (!st && is_dict)
            st = nvec_push(p, &vals, v, NULL);
    }
    if (!st)
        st = expect_op(p, close);
    if (st)
        return st;
    nd->kids = keys.v;
    nd->nkids = keys.n;
    nd->kids2 = vals.v;
    nd->nkids2 = vals.n;
    *out = nd;
    return finish(nd);
}

static kiln_status parse_string_const(parser *p, ctpl_node *nd)
{
    size_t total = 0, k = 0;
    for (const ctpl_tok *t = cur(p); t->kind == CTPL_T_STRING; t = peek(p, ++k))
        total += t->n;
    char *s = arena_alloc(p->a, total + 1, 1);
    if (!s)
        return oom();
    size_t off = 0;
    while (cur(p)->kind == CTPL_T_STRING) {
        memcpy(s + off, cur(p)->s, cur(p)->n);
        off += cur(p)->n;
        advance(p);
    }
    s[off] = '\0';
    nd->v = ctpl_str(s, off);
    return KILN_OK;
}

static kiln_status parse_primary(parser *p, ctpl_node **out)
{
    const ctpl_tok *t = cur(p);
    ctpl_node *nd = NULL;
    if (tok_is_op(t, "(")) {
        advance(p);
        kiln_status st = parse_tuple(p, true, true, NULL, out);
        return st ? st : expect_op(p, ")");
    }
    if (tok_is_op(t, "[") || tok_is_op(t, "{"))
        return parse_list_or_dict(p, out);
    if (t->kind != CTPL_T_NAME && t->kind != CTPL_T_STRING && t->kind != CTPL_T_INT &&
        t->kind != CTPL_T_FLOAT)
        return syntax(p, "an expression");
    nd = new_node(p, CTPL_N_CONST, t->line);
    if (!nd)
        return oom();
    *out = nd;
    if (t->kind == CTPL_T_STRING)
        return parse_string_const(p, nd);
    advance(p);
    if (t->kind == CTPL_T_INT)
        nd->v = ctpl_int(t->i);
    else if (t->kind == CTPL_T_FLOAT)
        nd->v = ctpl_float(t->f);
    else if (!strcmp(t->s, "true") || !strcmp(t->s, "True"))
        nd->v = ctpl_bool(true);
    else if (!strcmp(t->s, "false") || !strcmp(t->s, "False"))
        nd->v = ctpl_bool(false);
    else if (!strcmp(t->s, "none") || !strcmp(t->s, "None"))
        nd->v = ctpl_none();
    else {
        nd->kind = CTPL_N_NAME;
        nd->s = t->s;
    }
    return KILN_OK;
}

/* One item inside [...]: an expression or a slice a:b:c. */
static kiln_status parse_subscribed(parser *p, ctpl_node *obj, ctpl_node **out)
{
    ctpl_node *parts[3] = {NULL, NULL, NULL};
    int line = cur(p)->line;
    kiln_status st = KILN_OK;
    if (!tok_is_op(cur(p), ":")) {
        if ((st = parse_expression(p, true, &parts[0])))
            return st;
        if (!tok_is_op(cur(p), ":"))
            return mk2(p, CTPL_N_GETITEM, 0, line, obj, parts[0], out);
    }
    advance(p); /* the first ':' */
    if (!tok_is_op(cur(p), ":") && !tok_is_op(cur(p), "]") && (st = parse_expression(p, true, &parts[1])))
        return st;
    if (tok_is_op(cur(p), ":")) {
        advance(p);
        if (!tok_is_op(cur(p), "]") && (st = parse_expression(p, true, &parts[2])))
            return st;
    }
    ctpl_node *nd = new_node(p, CTPL_N_SLICE, line);
    if (!nd)
        return oom();
    nd->a = obj;
    nd->b = parts[0];
    nd->c = parts[1];
    nd->d = parts[2];
    *out = nd;
    return finish(nd);
}

static kiln_status parse_postfix(parser *p, ctpl_node **node)
{
    kiln_status st = KILN_OK;
    for (;;) {
        const ctpl_tok *t = cur(p);
        if (tok_is_op(t, ".")) {
            advance(p);
            const ctpl_tok *a = cur(p);
            if (a->kind == CTPL_T_NAME) {
                ctpl_node *nd = NULL;
                advance(p);
                if ((st = mk2(p, CTPL_N_GETATTR, 0, t->line, *node, NULL, &nd)))
                    return st;
                nd->s = a->s;
                *node = nd;
            } else if (a->kind == CTPL_T_INT) {
                ctpl_node *idx = new_node(p, CTPL_N_CONST, a->line);
                if (!idx)
                    return oom();
                idx->v = ctpl_int(a->i);
                advance(p);
                if ((st = mk2(p, CTPL_N_GETITEM, 0, t->line, *node, idx, node)))
                    return st;
            } else {
                return syntax(p, "name or number");
            }
        } else if (tok_is_op(t, "[")) {
            advance(p);
            if ((st = parse_subscribed(p, *node, node)))
                return st;
            if (tok_is_op(cur(p), ","))
                return kiln_err_set(KILN_ERR_UNSUPPORTED, "chat template line %d: tuple "
                                    "subscripts are not supported", cur(p)->line);
            if ((st = expect_op(p, "]")))
                return st;
        } else if (tok_is_op(t, "(")) {
            ctpl_node *nd = NULL;
            if ((st = mk2(p, CTPL_N_CALL, 0, t->line, *node, NULL, &nd)) || (st = parse_call_args(p, nd)))
                return st;
            if ((st = finish(nd)))
                return st;
            *node = nd;
        } else {
            return KILN_OK;
        }
    }
}

static kiln_status parse_filter(parser *p, ctpl_node *arg, ctpl_node **out)
{
    const ctpl_tok *t = cur(p);
    if (t->kind != CTPL_T_NAME)
        return syntax(p, "filter name");
    int id = ctpl_filter_id(t->s);
    if (id < 0)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "chat template line %d: unsupported filter '%s'",
                            t->line, t->s);
    ctpl_node *nd = new_node(p, CTPL_N_FILTER, t->line);
    kiln_status st = nd ? KILN_OK : oom();
    if (st)
        return st;
    nd->a = arg;
    nd->op = (uint8_t)id;
    nd->s = t->s;
    advance(p);
    if (tok_is_op(cur(p), "(") && (st = parse_call_args(p, nd)))
        return st;
    *out = nd;
    return finish(nd);
}

static bool test_arg_follows(const parser *p)
{
    const ctpl_tok *t = cur(p);
    if (t->kind == CTPL_T_NAME)
        return !tok_is_name(t, "else") && !tok_is_name(t, "or") && !tok_is_name(t, "and");
    return t->kind == CTPL_T_STRING || t->kind == CTPL_T_INT || t->kind == CTPL_T_FLOAT ||
           tok_is_op(t, "[") || tok_is_op(t, "{");
}

static kiln_status parse_test(parser *p, ctpl_node *arg, ctpl_node **out)
{
    int line = cur(p)->line;
    bool negated = false;
    kiln_status st;
    advance(p); /* is */
    if (tok_is_name(cur(p), "not")) {
        negated = true;
        advance(p);
    }
    const ctpl_tok *t = cur(p);
    if (t->kind != CTPL_T_NAME)
        return syntax(p, "test name");
    int id = ctpl_test_id(t->s);
    if (id < 0)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "chat template line %d: unsupported test '%s'",
                            t->line, t->s);
    ctpl_node *nd = new_node(p, CTPL_N_TEST, line);
    if (!nd)
        return oom();
    nd->a = arg;
    nd->op = (uint8_t)id;
    nd->s = t->s;
    advance(p);
    if (tok_is_op(cur(p), "(")) {
        if ((st = parse_call_args(p, nd)))
            return st;
    } else if (test_arg_follows(p)) {
        ctpl_node *a1 = NULL;
        if (tok_is_name(cur(p), "is"))
            return kiln_err_set(KILN_ERR_FORMAT, "chat template line %d: cannot chain tests with 'is'",
                                cur(p)->line);
        if ((st = parse_primary(p, &a1)) || (st = parse_postfix(p, &a1)))
            return st;
        nd->kids = arena_alloc(p->a, sizeof *nd->kids, _Alignof(ctpl_node *));
        if (!nd->kids)
            return oom();
        nd->kids[0] = a1;
        nd->nkids = 1;
    }
    if ((st = finish(nd)))
        return st;
    *out = nd;
    return negated ? mk2(p, CTPL_N_NOT, 0, line, nd, NULL, out) : KILN_OK;
}

static kiln_status parse_filter_expr(parser *p, ctpl_node **node)
{
    kiln_status st = KILN_OK;
    while (!st) {
        const ctpl_tok *t = cur(p);
        if (tok_is_op(t, "|")) {
            advance(p);
            st = parse_filter(p, *node, node);
        } else if (tok_is_name(t, "is")) {
            st = parse_test(p, *node, node);
        } else if (tok_is_op(t, "(")) {
            ctpl_node *nd = NULL;
            if (!(st = mk2(p, CTPL_N_CALL, 0, t->line, *node, NULL, &nd)) && !(st = parse_call_args(p, nd)) &&
                !(st = finish(nd)))
                *node = nd;
        } else {
            break;
        }
    }
    return st;
}

static kiln_status parse_unary(parser *p, bool with_filter, ctpl_node **out)
{
    const ctpl_tok *t = cur(p);
    kiln_status st = enter(p);
    if (st)
        return st;
    if (tok_is_op(t, "-") || tok_is_op(t, "+")) {
        ctpl_node *inner = NULL;
        advance(p);
        if (!(st = parse_unary(p, false, &inner)))
            st = mk2(p, t->s[0] == '-' ? CTPL_N_NEG : CTPL_N_POS, 0, t->line, inner, NULL, out);
    } else {
        st = parse_primary(p, out);
    }
    if (!st)
        st = parse_postfix(p, out);
    if (!st && with_filter)
        st = parse_filter_expr(p, out);
    p->nest--;
    return st;
}

/* Left-associative binary levels, tightest last. */
typedef struct binlevel {
    const char *ops[4];
    int codes[4];
} binlevel;

static const binlevel LV_POW = {{"**"}, {CTPL_OP_POW}};
static const binlevel LV_MUL = {{"*", "/", "//", "%"}, {CTPL_OP_MUL, CTPL_OP_DIV, CTPL_OP_FLOORDIV, CTPL_OP_MOD}};
static const binlevel LV_CAT = {{"~"}, {CTPL_OP_CONCAT}};
static const binlevel LV_ADD = {{"+", "-"}, {CTPL_OP_ADD, CTPL_OP_SUB}};

static int level_op(const binlevel *lv, const ctpl_tok *t)
{
    for (int k = 0; k < 4 && lv->ops[k]; k++)
        if (tok_is_op(t, lv->ops[k]))
            return lv->codes[k];
    return -1;
}

static kiln_status parse_level(parser *p, const binlevel *lv, ctpl_node **out)
{
    const binlevel *next = lv == &LV_ADD ? &LV_CAT : lv == &LV_CAT ? &LV_MUL : lv == &LV_MUL ? &LV_POW : NULL;
    kiln_status st = next ? parse_level(p, next, out) : parse_unary(p, true, out);
    int op;
    while (!st && (op = level_op(lv, cur(p))) >= 0) {
        int line = cur(p)->line;
        ctpl_node *right = NULL;
        advance(p);
        st = next ? parse_level(p, next, &right) : parse_unary(p, true, &right);
        if (!st)
            st = mk2(p, CTPL_N_BINOP, op, line, *out, right, out);
    }
    return st;
}

static int compare_op(const parser *p, int *width)
{
    static const char *const sym[] = {"==", "!=", "<", "<=", ">", ">="};
    static const int code[] = {CTPL_OP_EQ, CTPL_OP_NE, CTPL_OP_LT, CTPL_OP_LE, CTPL_OP_GT, CTPL_OP_GE};
    const ctpl_tok *t = cur(p);
    *width = 1;
    for (size_t k = 0; k < KILN_ARRAY_LEN(sym); k++)
        if (tok_is_op(t, sym[k]))
            return code[k];
    if (tok_is_name(t, "in"))
        return CTPL_OP_IN;
    if (tok_is_name(t, "not") && tok_is_name(peek(p, 1), "in")) {
        *width = 2;
        return CTPL_OP_NOTIN;
    }
    return -1;
}

/* a < b < c is (a < b) and (b < c), as in Python. */
static kiln_status parse_compare(parser *p, ctpl_node **out)
{
    ctpl_node *left = NULL, *acc = NULL;
    kiln_status st = parse_level(p, &LV_ADD, &left);
    int op, width;
    while (!st && (op = compare_op(p, &width)) >= 0) {
        int line = cur(p)->line;
        ctpl_node *right = NULL, *cmp = NULL;
        p->i += (size_t)width;
        if ((st = parse_level(p, &LV_ADD, &right)) || (st = mk2(p, CTPL_N_BINOP, op, line, left, right, &cmp)))
            break;
        if (acc)
            st = mk2(p, CTPL_N_AND, 0, line, acc, cmp, &acc);
        else
            acc = cmp;
        left = right;
    }
    if (!st)
        *out = acc ? acc : left;
    return st;
}

static kiln_status parse_not(parser *p, ctpl_node **out)
{
    if (tok_is_name(cur(p), "not")) {
        int line = cur(p)->line;
        ctpl_node *inner = NULL;
        kiln_status st = enter(p);
        advance(p);
        if (!st)
            st = parse_not(p, &inner);
        p->nest--;
        return st ? st : mk2(p, CTPL_N_NOT, 0, line, inner, NULL, out);
    }
    return parse_compare(p, out);
}

static kiln_status parse_and(parser *p, ctpl_node **out)
{
    kiln_status st = parse_not(p, out);
    while (!st && tok_is_name(cur(p), "and")) {
        int line = cur(p)->line;
        ctpl_node *right = NULL;
        advance(p);
        if (!(st = parse_not(p, &right)))
            st = mk2(p, CTPL_N_AND, 0, line, *out, right, out);
    }
    return st;
}

static kiln_status parse_or(parser *p, ctpl_node **out)
{
    kiln_status st = parse_and(p, out);
    while (!st && tok_is_name(cur(p), "or")) {
        int line = cur(p)->line;
        ctpl_node *right = NULL;
        advance(p);
        if (!(st = parse_and(p, &right)))
            st = mk2(p, CTPL_N_OR, 0, line, *out, right, out);
    }
    return st;
}

static kiln_status parse_expression(parser *p, bool condexpr, ctpl_node **out)
{
    kiln_status st = enter(p);
    if (!st)
        st = parse_or(p, out);
    while (!st && condexpr && tok_is_name(cur(p), "if")) {
        int line = cur(p)->line;
        ctpl_node *cond = NULL, *other = NULL, *nd = NULL;
        advance(p);
        if ((st = parse_or(p, &cond)))
            break;
        if (tok_is_name(cur(p), "else")) {
            advance(p);
            if ((st = parse_expression(p, true, &other)))
                break;
        }
        if ((st = mk2(p, CTPL_N_COND, 0, line, cond, *out, &nd)))
            break;
        nd->c = other;
        if (!(st = finish(nd)))
            *out = nd;
    }
    p->nest--;
    return st;
}

static bool tuple_end(const parser *p, const char *extra_end)
{
    const ctpl_tok *t = cur(p);
    return t->kind == CTPL_T_VAR_END || t->kind == CTPL_T_BLOCK_END || tok_is_op(t, ")") ||
           (extra_end && tok_is_name(t, extra_end));
}

static kiln_status parse_tuple(parser *p, bool condexpr, bool explicit_parens, const char *extra_end,
                               ctpl_node **out)
{
    nvec items = {0};
    int line = cur(p)->line;
    bool is_tuple = false;
    kiln_status st = KILN_OK;
    for (;;) {
        ctpl_node *e = NULL;
        if (items.n > 0 && (st = expect_op(p, ",")))
            return st;
        if (tuple_end(p, extra_end))
            break;
        if ((st = condexpr ? parse_expression(p, true, &e) : parse_or(p, &e)) || (st = nvec_push(p, &items, e, NULL)))
            return st;
        if (!tok_is_op(cur(p), ","))
            break;
        is_tuple = true;
    }
    if (!is_tuple && items.n == 1) {
        *out = items.v[0];
        return KILN_OK;
    }
    if (!is_tuple && !explicit_parens)
        return syntax(p, "an expression");
    ctpl_node *nd = new_node(p, CTPL_N_TUPLE, line);
    if (!nd)
        return oom();
    nd->kids = items.v;
    nd->nkids = items.n;
    *out = nd;
    return finish(nd);
}

/* ==== statements =========================================================== */

static kiln_status parse_body(parser *p, const char *const *ends, ctpl_node **out);

static kiln_status block_end(parser *p) { return expect_kind(p, CTPL_T_BLOCK_END, "end of statement block"); }

/* After a body stopped at one of its end names: consume `name %}`. */
static kiln_status close_tag(parser *p, const char *name)
{
    if (!tok_is_name(cur(p), name))
        return syntax(p, name);
    advance(p);
    return block_end(p);
}

/* Assignment target: name, (a, b) / a, b, or (set only) ns.attr. */
static kiln_status parse_target(parser *p, bool allow_attr, ctpl_node **out)
{
    nvec names = {0};
    int line = cur(p)->line;
    bool parens = tok_is_op(cur(p), "(");
    kiln_status st;
    if (parens)
        advance(p);
    for (;;) {
        const ctpl_tok *t = cur(p);
        ctpl_node *nd = NULL;
        if (t->kind != CTPL_T_NAME)
            return syntax(p, "a name to assign to");
        if (!(nd = new_node(p, CTPL_N_NAME, t->line)))
            return oom();
        nd->s = t->s;
        advance(p);
        if (allow_attr && !parens && names.n == 0 && tok_is_op(cur(p), ".")) {
            advance(p);
            if (cur(p)->kind != CTPL_T_NAME)
                return syntax(p, "attribute name");
            if ((st = mk2(p, CTPL_N_GETATTR, 0, line, nd, NULL, out)))
                return st;
            (*out)->s = cur(p)->s;
            advance(p);
            return KILN_OK;
        }
        if ((st = nvec_push(p, &names, nd, NULL)))
            return st;
        if (!tok_is_op(cur(p), ","))
            break;
        advance(p);
    }
    if (parens && (st = expect_op(p, ")")))
        return st;
    if (names.n == 1 && !parens) {
        *out = names.v[0];
        return KILN_OK;
    }
    ctpl_node *nd = new_node(p, CTPL_N_TUPLE, line);
    if (!nd)
        return oom();
    nd->kids = names.v;
    nd->nkids = names.n;
    *out = nd;
    return KILN_OK;
}

static kiln_status parse_for(parser *p, ctpl_node *nd)
{
    static const char *const body_end[] = {"endfor", "else", NULL};
    static const char *const else_end[] = {"endfor", NULL};
    kiln_status st = parse_target(p, false, &nd->a);
    if (!st && !tok_is_name(cur(p), "in"))
        st = syntax(p, "'in'");
    if (st)
        return st;
    advance(p);
    if ((st = parse_tuple(p, false, false, "recursive", &nd->b)))
        return st;
    if (tok_is_name(cur(p), "if")) {
        advance(p);
        if ((st = parse_expression(p, true, &nd->c)))
            return st;
    }
    if (tok_is_name(cur(p), "recursive"))
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "chat template line %d: recursive loops are "
                            "not supported", cur(p)->line);
    p->loops++;
    st = block_end(p);
    if (!st)
        st = parse_body(p, body_end, &nd->d);
    p->loops--;
    if (st)
        return st;
    if (tok_is_name(cur(p), "else")) {
        advance(p);
        if ((st = block_end(p)) || (st = parse_body(p, else_end, &nd->e)))
            return st;
    }
    return close_tag(p, "endfor");
}

static kiln_status parse_if(parser *p, ctpl_node *nd)
{
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    static const char *const else_end[] = {"endif", NULL};
    kiln_status st = parse_tuple(p, false, false, NULL, &nd->a);
    if (!st)
        st = block_end(p);
    if (!st)
        st = parse_body(p, ends, &nd->b);
    if (st)
        return st;
    if (tok_is_name(cur(p), "elif")) {
        ctpl_node *sub = new_node(p, CTPL_N_IF, cur(p)->line);
        if (!sub)
            return oom();
        advance(p);
        if ((st = parse_if(p, sub)) || (st = finish(sub)))
            return st;
        nd->c = sub;
        return KILN_OK; /* the nested if consumed endif */
    }
    if (tok_is_name(cur(p), "else")) {
        advance(p);
        if ((st = block_end(p)) || (st = parse_body(p, else_end, &nd->c)))
            return st;
    }
    return close_tag(p, "endif");
}

static kiln_status parse_set(parser *p, ctpl_node *nd)
{
    static const char *const ends[] = {"endset", NULL};
    kiln_status st = parse_target(p, true, &nd->a);
    if (st)
        return st;
    if (tok_is_op(cur(p), "=")) {
        advance(p);
        if ((st = parse_tuple(p, true, false, NULL, &nd->b)))
            return st;
        return block_end(p);
    }
    if (tok_is_op(cur(p), "|"))
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "chat template line %d: filters on block "
                            "assignments are not supported", cur(p)->line);
    if (nd->a->kind != CTPL_N_NAME)
        return syntax(p, "'='");
    nd->kind = CTPL_N_SETBLOCK;
    if ((st = block_end(p)) || (st = parse_body(p, ends, &nd->b)))
        return st;
    return close_tag(p, "endset");
}

static kiln_status parse_macro(parser *p, ctpl_node *nd)
{
    static const char *const ends[] = {"endmacro", NULL};
    nvec params = {0};
    kiln_status st;
    if (cur(p)->kind != CTPL_T_NAME)
        return syntax(p, "macro name");
    nd->s = cur(p)->s;
    advance(p);
    if ((st = expect_op(p, "(")))
        return st;
    while (!tok_is_op(cur(p), ")")) {
        ctpl_node *def = NULL;
        if (params.n > 0 && (st = expect_op(p, ",")))
            return st;
        if (cur(p)->kind != CTPL_T_NAME)
            return syntax(p, "parameter name");
        const char *name = cur(p)->s;
        advance(p);
        if (tok_is_op(cur(p), "=")) {
            advance(p);
            if ((st = parse_expression(p, true, &def)))
                return st;
        } else if (params.n > 0 && params.v[params.n - 1]) {
            return kiln_err_set(KILN_ERR_FORMAT, "chat template line %d: non-default argument "
                                "follows default argument", cur(p)->line);
        }
        if ((st = nvec_push(p, &params, def, name)))
            return st;
    }
    advance(p);
    nd->kids2 = params.v;
    nd->names = params.names;
    nd->nkids2 = nd->nnames = params.n;
    int loops = p->loops;
    p->loops = 0; /* a macro body is a function: no loop to break out of */
    st = block_end(p);
    if (!st)
        st = parse_body(p, ends, &nd->b);
    p->loops = loops;
    return st ? st : close_tag(p, "endmacro");
}

static kiln_status parse_filter_block(parser *p, ctpl_node *nd)
{
    static const char *const ends[] = {"endfilter", NULL};
    kiln_status st = parse_filter(p, NULL, &nd->a);
    if (!st && tok_is_op(cur(p), "|"))
        st = kiln_err_set(KILN_ERR_UNSUPPORTED, "chat template line %d: chained filters on a "
                          "filter block are not supported", cur(p)->line);
    if (st || (st = block_end(p)) || (st = parse_body(p, ends, &nd->b)))
        return st;
    return close_tag(p, "endfilter");
}

static kiln_status parse_generation(parser *p, ctpl_node *nd)
{
    static const char *const ends[] = {"endgeneration", NULL};
    kiln_status st = block_end(p);
    if (!st)
        st = parse_body(p, ends, &nd->b);
    return st ? st : close_tag(p, "endgeneration");
}

static kiln_status parse_stmt(parser *p, ctpl_node **out)
{
    static const char *const unsupported[] = {
        "call", "include", "import", "from", "extends", "block", "with", "do",
        "autoescape", "trans", "pluralize", "endraw", "print",
    };
    const ctpl_tok *t = cur(p);
    kiln_status st;
    if (t->kind != CTPL_T_NAME)
        return syntax(p, "statement name");
    ctpl_node *nd = new_node(p, CTPL_N_BODY, t->line);
    if (!nd)
        return oom();
    const char *name = t->s;
    advance(p);
    if (!strcmp(name, "for"))
        nd->kind = CTPL_N_FOR, st = parse_for(p, nd);
    else if (!strcmp(name, "if"))
        nd->kind = CTPL_N_IF, st = parse_if(p, nd);
    else if (!strcmp(name, "set"))
        nd->kind = CTPL_N_SET, st = parse_set(p, nd);
    else if (!strcmp(name, "macro"))
        nd->kind = CTPL_N_MACRO, st = parse_macro(p, nd);
    else if (!strcmp(name, "filter"))
        nd->kind = CTPL_N_FILTERBLOCK, st = parse_filter_block(p, nd);
    else if (!strcmp(name, "break") || !strcmp(name, "continue")) {
        if (p->loops == 0)
            return kiln_err_set(KILN_ERR_FORMAT, "chat template line %d: '%s' outside of a loop",
                                t->line, name);
        nd->kind = name[0] == 'b' ? CTPL_N_BREAK : CTPL_N_CONTINUE;
        st = block_end(p);
    }
    else if (!strcmp(name, "generation"))
        st = parse_generation(p, nd); /* transformers renders the body as is */
    else {
        for (size_t k = 0; k < KILN_ARRAY_LEN(unsupported); k++)
            if (!strcmp(name, unsupported[k]))
                return kiln_err_set(KILN_ERR_UNSUPPORTED, "chat template line %d: unsupported "
                                    "tag '%s'", t->line, name);
        return kiln_err_set(KILN_ERR_FORMAT, "chat template line %d: unknown or unexpected tag '%s'",
                            t->line, name);
    }
    if (!st && nd->kind == CTPL_N_BODY && nd->b) {
        *out = nd->b; /* generation: splice the body */
        return KILN_OK;
    }
    if (!st)
        st = finish(nd);
    *out = nd;
    return st;
}

static bool is_end(const ctpl_tok *t, const char *const *ends)
{
    for (size_t k = 0; ends && ends[k]; k++)
        if (tok_is_name(t, ends[k]))
            return true;
    return false;
}

/* Statements until `{% <one of ends>` (left at the name) or EOF (only when
 * ends is NULL). */
static kiln_status parse_body(parser *p, const char *const *ends, ctpl_node **out)
{
    nvec kids = {0};
    ctpl_node *body = new_node(p, CTPL_N_BODY, cur(p)->line);
    kiln_status st = body ? enter(p) : oom();
    while (!st) {
        const ctpl_tok *t = cur(p);
        ctpl_node *nd = NULL;
        if (t->kind == CTPL_T_EOF) {
            if (ends) {
                char want[128] = "";
                for (size_t k = 0; ends[k]; k++)
                    snprintf(want + strlen(want), sizeof want - strlen(want), "%s'%s'", k ? " or " : "", ends[k]);
                st = kiln_err_set(KILN_ERR_FORMAT, "chat template line %d: unexpected end of "
                                  "template, expected %s", t->line, want);
            }
            break;
        }
        if (t->kind == CTPL_T_TEXT) {
            if (!(nd = new_node(p, CTPL_N_TEXT, t->line)))
                st = oom();
            else
                nd->s = t->s, nd->n = t->n;
            advance(p);
        } else if (t->kind == CTPL_T_VAR_BEGIN) {
            advance(p);
            if (!(nd = new_node(p, CTPL_N_OUTPUT, t->line)))
                st = oom();
            else if (!(st = parse_tuple(p, true, false, NULL, &nd->a)) &&
                     !(st = expect_kind(p, CTPL_T_VAR_END, "end of print statement")))
                st = finish(nd);
        } else if (t->kind == CTPL_T_BLOCK_BEGIN) {
            if (is_end(peek(p, 1), ends)) {
                advance(p);
                break;
            }
            advance(p);
            st = parse_stmt(p, &nd);
        } else {
            st = syntax(p, "template data or a tag");
        }
        if (!st)
            st = nvec_push(p, &kids, nd, NULL);
    }
    if (st)
        return st;
    p->nest--;
    body->kids = kids.v;
    body->nkids = kids.n;
    *out = body;
    return finish(body);
}

kiln_status ctpl_parse(arena *a, const ctpl_tok *toks, size_t ntoks, ctpl_node **root)
{
    parser p = {.a = a, .t = toks, .n = ntoks};
    return parse_body(&p, NULL, root);
}
