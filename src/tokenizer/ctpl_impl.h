/*
 * ctpl_impl.h - internals of the chat-template interpreter (chat_template.h).
 *
 * Only the ctpl_*.c files, chat_template.c and their tests include this.
 *
 * Pipeline: ctpl_lex() turns source into a token array (whitespace control,
 * trim_blocks and lstrip_blocks are applied here, exactly where jinja2's
 * lexer applies them); ctpl_parse() builds an AST whose nodes live in the
 * template's arena; ctpl_exec() walks the AST with a render state whose
 * values live in a per-render arena, freed in one piece when the render ends.
 *
 * Invariants:
 *  1. Every AST node, name and literal belongs to the template arena and is
 *     immutable after ctpl_compile() returns; a compiled template can be
 *     rendered from several threads at once.
 *  2. Every runtime value (strings, lists, dicts, namespaces, scopes) is
 *     allocated from the render arena; nothing is freed before the render
 *     ends, so values may share storage freely (a slice points into the
 *     string it came from).
 *  3. Strings are (pointer, byte length) pairs of UTF-8, not NUL-terminated.
 *     Lengths and indices seen by templates count code points, as Python's do.
 *  4. Dicts and namespaces keep insertion order (items(), tojson, repr).
 *  5. Hostile templates are bounded: nesting depth at compile time, and at
 *     render time output bytes, arena bytes, evaluation steps and macro call
 *     depth (the CTPL_MAX_* limits below).  Each limit is an error, never a
 *     truncated result.
 */
#ifndef KILN_TOKENIZER_CTPL_IMPL_H
#define KILN_TOKENIZER_CTPL_IMPL_H

#include "base/arena.h"
#include "base/buf.h"
#include "base/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- limits ------------------------------------------------------------ */
#define CTPL_MAX_NEST 200                      /* AST depth at compile time  */
#define CTPL_MAX_OUTPUT ((size_t)16 << 20)     /* bytes rendered, all buffers */
#define CTPL_MAX_MEMORY ((size_t)256 << 20)    /* render arena bytes         */
#define CTPL_MAX_STEPS 4000000ull              /* nodes evaluated per render */
#define CTPL_MAX_CALL_DEPTH 50                 /* nested macro calls         */
#define CTPL_MAX_RANGE 100000                  /* jinja2 sandbox MAX_RANGE   */

/* ---- tokens ------------------------------------------------------------ */
typedef enum ctpl_tok_kind {
    CTPL_T_TEXT,        /* literal text between tags               */
    CTPL_T_VAR_BEGIN,   /* {{                                     */
    CTPL_T_VAR_END,     /* }}                                     */
    CTPL_T_BLOCK_BEGIN, /* {%                                     */
    CTPL_T_BLOCK_END,   /* %}                                     */
    CTPL_T_NAME,
    CTPL_T_STRING,      /* escapes already decoded                */
    CTPL_T_INT,
    CTPL_T_FLOAT,
    CTPL_T_OP,          /* operator or punctuation, text in s     */
    CTPL_T_EOF
} ctpl_tok_kind;

typedef struct ctpl_tok {
    ctpl_tok_kind kind;
    int line;
    const char *s; /* arena copy, NUL-terminated (TEXT, NAME, STRING, OP) */
    size_t n;
    int64_t i;
    double f;
} ctpl_tok;

/* Tokenize src into *toks (array in `a`, ends with CTPL_T_EOF).  Errors:
 * KILN_ERR_FORMAT (unterminated tag, string or comment; bad character),
 * KILN_ERR_UNSUPPORTED (raw blocks), KILN_ERR_OOM.  Message names the line. */
kiln_status ctpl_lex(arena *a, const char *src, size_t len, ctpl_tok **toks, size_t *ntoks);

/* ---- AST ---------------------------------------------------------------- */
typedef enum ctpl_node_kind {
    /* statements */
    CTPL_N_BODY,      /* kids: statements                                   */
    CTPL_N_TEXT,      /* s, n                                               */
    CTPL_N_OUTPUT,    /* a: expr                                            */
    CTPL_N_IF,        /* a: cond, b: then body, c: else body (or NULL)      */
    CTPL_N_FOR,       /* a: target, b: iter, c: filter, d: body, e: else    */
    CTPL_N_SET,       /* a: target, b: value                                */
    CTPL_N_SETBLOCK,  /* a: target, b: body                                 */
    CTPL_N_MACRO,     /* s: name, names/kids: params+defaults, b: body      */
    CTPL_N_BREAK,
    CTPL_N_CONTINUE,
    CTPL_N_FILTERBLOCK, /* a: filter node (arg NULL), b: body               */
    /* expressions */
    CTPL_N_CONST,     /* v                                                  */
    CTPL_N_NAME,      /* s                                                  */
    CTPL_N_LIST,      /* kids                                               */
    CTPL_N_TUPLE,     /* kids                                               */
    CTPL_N_DICT,      /* kids: keys, kids2: values                          */
    CTPL_N_GETATTR,   /* a: obj, s: attribute                               */
    CTPL_N_GETITEM,   /* a: obj, b: index                                   */
    CTPL_N_SLICE,     /* a: obj, b: start, c: stop, d: step (each NULL-able) */
    CTPL_N_CALL,      /* a: callee, kids: args, names+kids2: keyword args   */
    CTPL_N_FILTER,    /* a: arg, op: filter id, s: name, kids/names/kids2   */
    CTPL_N_TEST,      /* a: arg, op: test id, s: name, kids/names/kids2     */
    CTPL_N_NOT,       /* a                                                  */
    CTPL_N_NEG,       /* a                                                  */
    CTPL_N_POS,       /* a                                                  */
    CTPL_N_BINOP,     /* op: CTPL_OP_*, a, b                                */
    CTPL_N_AND,       /* a, b                                               */
    CTPL_N_OR,        /* a, b                                               */
    CTPL_N_COND       /* a: cond, b: then, c: else (NULL: undefined)        */
} ctpl_node_kind;

typedef enum ctpl_binop {
    CTPL_OP_ADD, CTPL_OP_SUB, CTPL_OP_MUL, CTPL_OP_DIV, CTPL_OP_FLOORDIV,
    CTPL_OP_MOD, CTPL_OP_POW, CTPL_OP_CONCAT,
    CTPL_OP_EQ, CTPL_OP_NE, CTPL_OP_LT, CTPL_OP_LE, CTPL_OP_GT, CTPL_OP_GE,
    CTPL_OP_IN, CTPL_OP_NOTIN
} ctpl_binop;

/* ---- values ------------------------------------------------------------- */
typedef enum ctpl_kind {
    CTPL_UNDEF, CTPL_NONE, CTPL_BOOL, CTPL_INT, CTPL_FLOAT, CTPL_STR,
    CTPL_LIST,   /* list, tuple or generator (see ctpl_list.flags)        */
    CTPL_DICT,
    CTPL_NS,     /* namespace(): a dict whose attributes can be assigned   */
    CTPL_MACRO,
    CTPL_METHOD, /* a bound method: obj.name, called later               */
    CTPL_FUNC,   /* a global function (CTPL_FN_*)                         */
    CTPL_LOOP    /* the `loop` variable of a for loop                      */
} ctpl_kind;

#define CTPL_LIST_TUPLE 1u /* prints as (a, b)                             */
#define CTPL_LIST_GEN 2u   /* an iterator: truthy, no len(), consumed once  */

typedef struct ctpl_list ctpl_list;
typedef struct ctpl_dict ctpl_dict;
typedef struct ctpl_macro ctpl_macro;
typedef struct ctpl_method ctpl_method;
typedef struct ctpl_loop ctpl_loop;

typedef struct ctpl_val {
    uint8_t kind;
    union {
        bool b;
        int64_t i;
        double f;
        struct { const char *p; size_t n; } s; /* STR; UNDEF: its name or NULL */
        ctpl_list *l;
        ctpl_dict *d;
        ctpl_macro *m;
        ctpl_method *bm;
        ctpl_loop *loop;
        int fn;
    } u;
} ctpl_val;

struct ctpl_list {
    ctpl_val *items;
    size_t len, cap;
    unsigned flags;
};

struct ctpl_dict {
    ctpl_val *keys, *vals;
    size_t len, cap;
};

typedef struct ctpl_node ctpl_node;
struct ctpl_node {
    uint8_t kind;
    uint8_t op;
    uint16_t depth;
    int line;
    ctpl_node *a, *b, *c, *d, *e;
    ctpl_node **kids, **kids2;
    const char **names;
    size_t nkids, nkids2, nnames;
    const char *s;
    size_t n;
    ctpl_val v;
};

typedef struct ctpl_scope ctpl_scope;
struct ctpl_scope {
    ctpl_scope *parent;
    const char **names;
    ctpl_val *vals;
    size_t len, cap;
};

struct ctpl_macro {
    const ctpl_node *def;
    ctpl_scope *closure;
};

struct ctpl_method {
    ctpl_val self;
    const char *name;
};

struct ctpl_loop {
    ctpl_list *items;
    size_t index0;
};

/* Global functions. */
enum {
    CTPL_FN_RAISE, CTPL_FN_STRFTIME, CTPL_FN_RANGE, CTPL_FN_NAMESPACE, CTPL_FN_DICT,
    CTPL_FN_LOOP_CYCLE
};

/* ---- render state -------------------------------------------------------- */
typedef struct ctpl_rs {
    arena *ar;
    kiln_buf *out;        /* current output (a macro call swaps it)          */
    size_t out_total;     /* bytes emitted into every buffer                 */
    uint64_t steps;
    int call_depth;
    int line;             /* line of the node being evaluated (messages)     */
    int ctl;              /* pending loop control: 0, CTPL_CTL_BREAK/CONTINUE */
    ctpl_scope *scope;
    ctpl_scope *globals;  /* the context's variables: the outermost scope     */
} ctpl_rs;

#define CTPL_CTL_BREAK 1
#define CTPL_CTL_CONTINUE 2

/* ---- parser ------------------------------------------------------------- */
/* Parse tokens into a CTPL_N_BODY tree in `a`.  Errors: KILN_ERR_FORMAT
 * (syntax; message names the line), KILN_ERR_UNSUPPORTED (a tag, filter or
 * test this interpreter lacks, named with its line), KILN_ERR_OOM. */
kiln_status ctpl_parse(arena *a, const ctpl_tok *toks, size_t ntoks, ctpl_node **root);

/* Filter and test ids by name; -1 when unknown. */
int ctpl_filter_id(const char *name);
int ctpl_test_id(const char *name);

/* ---- values (ctpl_value.c) ------------------------------------------------ */
static inline ctpl_val ctpl_undef(void) { ctpl_val v = {.kind = CTPL_UNDEF}; return v; }
static inline ctpl_val ctpl_none(void) { ctpl_val v = {.kind = CTPL_NONE}; return v; }
static inline ctpl_val ctpl_bool(bool b) { ctpl_val v = {.kind = CTPL_BOOL}; v.u.b = b; return v; }
static inline ctpl_val ctpl_int(int64_t i) { ctpl_val v = {.kind = CTPL_INT}; v.u.i = i; return v; }
static inline ctpl_val ctpl_float(double f) { ctpl_val v = {.kind = CTPL_FLOAT}; v.u.f = f; return v; }
static inline ctpl_val ctpl_str(const char *p, size_t n)
{
    ctpl_val v = {.kind = CTPL_STR};
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}

/* Runtime error at the current line: KILN_ERR_FORMAT "chat template line N:
 * ...".  Returns the status. */
kiln_status ctpl_fail(ctpl_rs *r, kiln_status st, const char *fmt, ...) KILN_PRINTF(3, 4);

/* Render-arena allocation with the CTPL_MAX_MEMORY check; NULL after
 * setting the error (OOM or limit). */
void *ctpl_alloc(ctpl_rs *r, size_t size);
char *ctpl_strdup(ctpl_rs *r, const char *p, size_t n);

ctpl_list *ctpl_list_new(ctpl_rs *r, size_t cap);
kiln_status ctpl_list_push(ctpl_rs *r, ctpl_list *l, ctpl_val v);
ctpl_dict *ctpl_dict_new(ctpl_rs *r, size_t cap);
/* Insert or replace (keeping the key's position). */
kiln_status ctpl_dict_set(ctpl_rs *r, ctpl_dict *d, ctpl_val k, ctpl_val v);
/* Value for key, or NULL. */
ctpl_val *ctpl_dict_get(const ctpl_dict *d, ctpl_val k);
ctpl_val *ctpl_dict_get_str(const ctpl_dict *d, const char *key);
ctpl_val ctpl_list_val(ctpl_list *l);
ctpl_val ctpl_dict_val(ctpl_dict *d);

const char *ctpl_type_name(ctpl_val v);
bool ctpl_truthy(ctpl_val v);
bool ctpl_equal(ctpl_val a, ctpl_val b);
/* Python ordering: *cmp <0, 0, >0.  Error for unorderable types. */
kiln_status ctpl_compare(ctpl_rs *r, ctpl_val a, ctpl_val b, int *cmp);
bool ctpl_is_number(ctpl_val v);
double ctpl_as_double(ctpl_val v);

/* Append Python str(v) / repr(v) to b.  Error for values with no text. */
kiln_status ctpl_write_str(ctpl_rs *r, kiln_buf *b, ctpl_val v);
kiln_status ctpl_write_repr(ctpl_rs *r, kiln_buf *b, ctpl_val v);
/* str(v) as a string value in the arena. */
kiln_status ctpl_to_str(ctpl_rs *r, ctpl_val v, ctpl_val *out);
kiln_status ctpl_write_float(kiln_buf *b, double f, bool json);

typedef struct ctpl_json_opts {
    bool ensure_ascii, sort_keys;
    const char *indent; /* NULL: no newlines */
    size_t indent_n;
    const char *item_sep, *key_sep;
    size_t item_sep_n, key_sep_n;
} ctpl_json_opts;
/* json.dumps(v, ...) appended to b.  Error for values JSON cannot hold. */
kiln_status ctpl_write_json(ctpl_rs *r, kiln_buf *b, ctpl_val v, const ctpl_json_opts *o, int level);

/* Convert a jansson value (borrowed) into render values. */
kiln_status ctpl_from_json(ctpl_rs *r, json_t *j, ctpl_val *out, int depth);

/* ---- UTF-8 and Python string helpers (ctpl_value.c) ------------------------ */
/* Decode one code point at p (n bytes left); invalid bytes decode as
 * themselves (one byte each). Sets *len to the bytes used. */
uint32_t ctpl_utf8_next(const char *p, size_t n, size_t *len);
size_t ctpl_utf8_put(char *dst, uint32_t cp);
size_t ctpl_utf8_count(const char *p, size_t n);
/* Byte offset of code point index `idx` (idx <= count). */
size_t ctpl_utf8_offset(const char *p, size_t n, size_t idx);
bool ctpl_py_isspace(uint32_t cp);

/* ---- builtins (ctpl_builtins.c) -------------------------------------------- */
typedef struct ctpl_args {
    ctpl_val *pos;
    size_t npos;
    const char **names;
    ctpl_val *kw;
    size_t nkw;
} ctpl_args;

kiln_status ctpl_apply_filter(ctpl_rs *r, int id, const char *name, ctpl_val v,
                              const ctpl_args *a, ctpl_val *out);
kiln_status ctpl_apply_test(ctpl_rs *r, int id, const char *name, ctpl_val v,
                            const ctpl_args *a, bool *out);
kiln_status ctpl_call_method(ctpl_rs *r, ctpl_method *m, const ctpl_args *a, ctpl_val *out);
kiln_status ctpl_call_func(ctpl_rs *r, int fn, ctpl_val self, const ctpl_args *a, ctpl_val *out);
/* obj.name with jinja2 sandbox semantics (methods first, then items). */
kiln_status ctpl_getattr(ctpl_rs *r, ctpl_val obj, const char *name, ctpl_val *out);
/* obj[key] with jinja2 sandbox semantics (items first, then attributes). */
kiln_status ctpl_getitem(ctpl_rs *r, ctpl_val obj, ctpl_val key, ctpl_val *out);
/* Python `needle in hay`. */
kiln_status ctpl_contains(ctpl_rs *r, ctpl_val hay, ctpl_val needle, bool *out);
/* Items of an iterable (list copy for dicts/strings); consumes generators.
 * Undefined iterates as empty. Error for non-iterables. */
kiln_status ctpl_iterate(ctpl_rs *r, ctpl_val v, ctpl_list **out);
kiln_status ctpl_length(ctpl_rs *r, ctpl_val v, int64_t *out);

/* ---- evaluator (ctpl_eval.c) ------------------------------------------------ */
kiln_status ctpl_eval(ctpl_rs *r, const ctpl_node *n, ctpl_val *out);
kiln_status ctpl_exec(ctpl_rs *r, const ctpl_node *n);
kiln_status ctpl_call_value(ctpl_rs *r, ctpl_val callee, const ctpl_args *a, ctpl_val *out);

#endif /* KILN_TOKENIZER_CTPL_IMPL_H */
