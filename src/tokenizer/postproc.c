/*
 * postproc.c - the post-processors of postproc.h.
 *
 * Every processor reduces to a template: a list of items, each either the
 * sequence ($A) or a run of special ids.  Bert/Roberta are the template
 * [cls] $A [sep]; ByteLevel is the template $A.  Items of all steps live in
 * one array, steps are ranges of it.
 */
#include "tokenizer/postproc.h"

#include "base/alloc.h"
#include "base/error.h"
#include "tokenizer/hfjson.h"

#include <string.h>

typedef struct pp_item {
    bool seq;
    size_t off, n; /* special ids: ids[off .. off + n) */
} pp_item;

typedef struct pp_step {
    size_t first, n; /* items[first .. first + n) */
} pp_step;

struct pp {
    pp_item *items;
    size_t n_items, cap_items;
    pp_step *steps;
    size_t n_steps, cap_steps;
    kiln_ids ids;
};

static kiln_status add_item(pp *p, bool seq, const int32_t *ids, size_t n)
{
    if (p->n_items == p->cap_items) {
        size_t cap = p->cap_items ? p->cap_items * 2 : 8;
        pp_item *v = kiln_realloc(p->items, cap * sizeof(*v));
        if (!v)
            return kiln_err_set(KILN_ERR_OOM, "post-processor: out of memory");
        p->items = v;
        p->cap_items = cap;
    }
    p->items[p->n_items++] = (pp_item){seq, p->ids.len, n};
    return n ? ids_append(&p->ids, ids, n) : KILN_OK;
}

static kiln_status begin_step(pp *p)
{
    if (p->n_steps == p->cap_steps) {
        size_t cap = p->cap_steps ? p->cap_steps * 2 : 4;
        pp_step *v = kiln_realloc(p->steps, cap * sizeof(*v));
        if (!v)
            return kiln_err_set(KILN_ERR_OOM, "post-processor: out of memory");
        p->steps = v;
        p->cap_steps = cap;
    }
    p->steps[p->n_steps++] = (pp_step){p->n_items, 0};
    return KILN_OK;
}

static void end_step(pp *p)
{
    pp_step *s = &p->steps[p->n_steps - 1];
    s->n = p->n_items - s->first;
}

/* ["[CLS]", 101] -> 101 */
static kiln_status pair_id(const json_t *j, const char *key, const char *what, int32_t *id)
{
    json_t *v = json_object_get(j, key), *i = json_array_get(v, 1);
    if (!json_is_integer(i) || json_integer_value(i) < 0 || json_integer_value(i) > INT32_MAX)
        return kiln_err_set(KILN_ERR_FORMAT, "post-processor %s: bad \"%s\"", what, key);
    *id = (int32_t)json_integer_value(i);
    return KILN_OK;
}

static kiln_status parse_wrap(pp *p, const json_t *j, const char *what)
{
    int32_t cls, sep;
    kiln_status rc;
    if ((rc = pair_id(j, "cls", what, &cls)) || (rc = pair_id(j, "sep", what, &sep)))
        return rc;
    if ((rc = add_item(p, false, &cls, 1)) || (rc = add_item(p, true, NULL, 0)))
        return rc;
    return add_item(p, false, &sep, 1);
}

static kiln_status special_ids(pp *p, const json_t *map, const char *name)
{
    json_t *st = json_object_get(map, name), *ids = json_object_get(st, "ids"), *v;
    size_t i;
    kiln_status rc;
    int32_t id;
    if (!json_is_array(ids))
        return kiln_err_set(KILN_ERR_FORMAT, "post-processor TemplateProcessing: special "
                            "token '%s' is not in special_tokens", name);
    if ((rc = add_item(p, false, NULL, 0)))
        return rc;
    json_array_foreach(ids, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
            return kiln_err_set(KILN_ERR_FORMAT, "post-processor: bad id of '%s'", name);
        id = (int32_t)json_integer_value(v);
        if ((rc = ids_push(&p->ids, id)))
            return rc;
        p->items[p->n_items - 1].n++;
    }
    return KILN_OK;
}

static kiln_status parse_template(pp *p, const json_t *j)
{
    json_t *single = json_object_get(j, "single"), *map = json_object_get(j, "special_tokens");
    json_t *it;
    size_t i;
    kiln_status rc = KILN_OK;
    if (!json_is_array(single))
        return kiln_err_set(KILN_ERR_FORMAT, "post-processor TemplateProcessing: no \"single\"");
    json_array_foreach(single, i, it) {
        json_t *sp = json_object_get(it, "SpecialToken");
        const char *name = hfj_str(sp, "id", NULL);
        if (json_object_get(it, "Sequence"))
            rc = add_item(p, true, NULL, 0);
        else if (name)
            rc = special_ids(p, map, name);
        else
            rc = kiln_err_set(KILN_ERR_FORMAT, "post-processor TemplateProcessing: bad item %zu", i);
        if (rc)
            return rc;
    }
    return KILN_OK;
}

static kiln_status parse_one(pp *p, const json_t *j)
{
    const char *t = hfj_type(j);
    kiln_status rc;
    if (strcmp(t, "Sequence") == 0) {
        json_t *arr = json_object_get(j, "processors"), *v;
        size_t i;
        if (!json_is_array(arr))
            return kiln_err_set(KILN_ERR_FORMAT, "post-processor Sequence: no \"processors\"");
        json_array_foreach(arr, i, v) {
            if ((rc = parse_one(p, v)))
                return rc;
        }
        return KILN_OK;
    }
    if ((rc = begin_step(p)))
        return rc;
    if (strcmp(t, "TemplateProcessing") == 0)
        rc = parse_template(p, j);
    else if (strcmp(t, "BertProcessing") == 0 || strcmp(t, "RobertaProcessing") == 0)
        rc = parse_wrap(p, j, t);
    else if (strcmp(t, "ByteLevel") == 0)
        rc = add_item(p, true, NULL, 0);
    else
        rc = kiln_err_set(KILN_ERR_UNSUPPORTED, "post-processor type '%s' is not supported", t);
    end_step(p);
    return rc;
}

kiln_status pp_from_json(const json_t *j, pp **out)
{
    pp *p;
    kiln_status rc;
    *out = NULL;
    if (!j || json_is_null(j))
        return KILN_OK;
    if (!(p = kiln_calloc(1, sizeof(*p))))
        return kiln_err_set(KILN_ERR_OOM, "post-processor: out of memory");
    if ((rc = parse_one(p, j))) {
        pp_free(p);
        return rc;
    }
    *out = p;
    return KILN_OK;
}

kiln_status pp_new_wrap(const int32_t *pre, size_t npre, const int32_t *post, size_t npost,
                        pp **out)
{
    pp *p = kiln_calloc(1, sizeof(*p));
    kiln_status rc;
    *out = NULL;
    if (!p)
        return kiln_err_set(KILN_ERR_OOM, "post-processor: out of memory");
    rc = begin_step(p);
    if (!rc && npre)
        rc = add_item(p, false, pre, npre);
    if (!rc)
        rc = add_item(p, true, NULL, 0);
    if (!rc && npost)
        rc = add_item(p, false, post, npost);
    if (!rc)
        end_step(p);
    if (rc) {
        pp_free(p);
        return rc;
    }
    *out = p;
    return KILN_OK;
}

void pp_free(pp *p)
{
    if (!p)
        return;
    kiln_free(p->items);
    kiln_free(p->steps);
    ids_free(&p->ids);
    kiln_free(p);
}

size_t pp_added(const pp *p)
{
    size_t i, n = 0;
    for (i = 0; p && i < p->n_items; i++)
        n += p->items[i].seq ? 0 : p->items[i].n;
    return n;
}

static int32_t first_special(const pp *p, bool after)
{
    size_t s, i;
    for (s = 0; p && s < p->n_steps; s++) {
        bool seen = false;
        for (i = p->steps[s].first; i < p->steps[s].first + p->steps[s].n; i++) {
            const pp_item *it = &p->items[i];
            if (it->seq)
                seen = true;
            else if (it->n && seen == after)
                return p->ids.data[it->off];
        }
    }
    return -1;
}

int32_t pp_first_before(const pp *p)
{
    return first_special(p, false);
}

int32_t pp_first_after(const pp *p)
{
    return first_special(p, true);
}

kiln_status pp_apply(const pp *p, kiln_ids *ids, size_t mark, kiln_ids *tmp)
{
    size_t s, i;
    kiln_status rc;
    for (s = 0; p && s < p->n_steps; s++) {
        ids_clear(tmp);
        for (i = p->steps[s].first; i < p->steps[s].first + p->steps[s].n; i++) {
            const pp_item *it = &p->items[i];
            if (it->seq)
                rc = ids->len > mark ? ids_append(tmp, ids->data + mark, ids->len - mark) : KILN_OK;
            else
                rc = it->n ? ids_append(tmp, p->ids.data + it->off, it->n) : KILN_OK;
            if (rc)
                return rc;
        }
        ids->len = mark;
        if ((rc = ids_append(ids, tmp->data, tmp->len)))
            return rc;
    }
    return KILN_OK;
}
