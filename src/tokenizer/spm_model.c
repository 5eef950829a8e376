/*
 * spm_model.c - SentencePiece .model files: a protobuf wire-format reader
 * and the ModelProto fields kiln needs.
 *
 * The file is untrusted.  Invariants of the reader:
 *   1. Every read goes through pb_next(), which checks a varint against the
 *      end of its message (at most 10 bytes) and a length-delimited field's
 *      length against the bytes that remain, before anything is touched.
 *   2. Unknown fields, and known fields of an unexpected wire type, are
 *      skipped as protobuf does; groups (wire types 3, 4) and the reserved
 *      types 6, 7 are malformed input.
 *   3. Nothing is allocated from a count in the file: pass 1 walks the
 *      pieces to learn their number and bytes (bounded by the file size),
 *      pass 2 fills the handle.
 *
 * Fields read (sentencepiece_model.proto):
 *   ModelProto      1 pieces (repeated), 2 trainer_spec, 3 normalizer_spec,
 *                   5 denormalizer_spec
 *   SentencePiece   1 piece, 2 score (float), 3 type (enum, default NORMAL)
 *   TrainerSpec     3 model_type (default UNIGRAM), 24
 *                   treat_whitespace_as_suffix, 35 byte_fallback, 44
 *                   unk_surface, 45..48 unk/bos/eos/pad piece names
 *   NormalizerSpec  1 name, 2 precompiled_charsmap, 3 add_dummy_prefix, 4
 *                   remove_extra_whitespaces, 5 escape_whitespaces (the last
 *                   three default to true)
 */
#include "tokenizer/spm_impl.h"

#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "base/fmap.h"

#include <string.h>

enum { PB_VARINT = 0, PB_FIXED64 = 1, PB_LEN = 2, PB_FIXED32 = 5 };

typedef struct pb_reader {
    const uint8_t *base; /* start of the file, for offsets in messages */
    const uint8_t *p, *end;
} pb_reader;

typedef struct pb_field {
    uint32_t num;
    int wire;
    uint64_t v;           /* VARINT, FIXED32, FIXED64 */
    const uint8_t *data;  /* LEN */
    size_t len;
} pb_field;

/* ---- wire format -------------------------------------------------------------- */

static bool pb_varint(pb_reader *r, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            return false;
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

static kiln_status pb_bad(const pb_reader *r, const char *what)
{
    return kiln_err_set(KILN_ERR_FORMAT, "spm: .model: %s at byte %zu", what,
                        (size_t)(r->p - r->base));
}

static kiln_status pb_fixed(pb_reader *r, size_t n, uint64_t *out)
{
    uint8_t b[8] = {0};
    if ((size_t)(r->end - r->p) < n)
        return pb_bad(r, "truncated fixed-size field");
    memcpy(b, r->p, n);
    r->p += n;
    *out = 0;
    for (size_t i = n; i-- > 0;)
        *out = (*out << 8) | b[i];
    return KILN_OK;
}

/* Read the next field; *done when the message ends.  Errors:
 * KILN_ERR_FORMAT (truncated, bad tag or wire type, length past the end). */
static kiln_status pb_next(pb_reader *r, pb_field *f, bool *done)
{
    uint64_t tag;
    *done = r->p >= r->end;
    if (*done)
        return KILN_OK;
    if (!pb_varint(r, &tag))
        return pb_bad(r, "truncated or overlong tag");
    f->num = (uint32_t)(tag >> 3);
    f->wire = (int)(tag & 7);
    if (tag >> 3 == 0 || tag >> 3 > 0x1FFFFFFF)
        return pb_bad(r, "field number out of range");
    switch (f->wire) {
    case PB_VARINT:
        return pb_varint(r, &f->v) ? KILN_OK : pb_bad(r, "truncated or overlong varint");
    case PB_FIXED64:
        return pb_fixed(r, 8, &f->v);
    case PB_FIXED32:
        return pb_fixed(r, 4, &f->v);
    case PB_LEN:
        if (!pb_varint(r, &f->v))
            return pb_bad(r, "truncated length");
        if (f->v > (uint64_t)(r->end - r->p))
            return pb_bad(r, "length-delimited field runs past the end of its message");
        f->data = r->p;
        f->len = (size_t)f->v;
        r->p += f->len;
        return KILN_OK;
    default:
        return pb_bad(r, "unsupported wire type (group or reserved)");
    }
}

static pb_reader pb_sub(const pb_reader *r, const pb_field *f)
{
    return (pb_reader){r->base, f->data, f->data + f->len};
}

/* ---- messages ----------------------------------------------------------------- */

typedef struct sp_str {
    const char *s;
    size_t len;
} sp_str;

typedef struct sp_piece {
    sp_str piece;
    float score;
    int type;
} sp_piece;

typedef struct sp_trainer {
    int model_type;
    bool byte_fallback, treat_ws_as_suffix, has_unk_surface;
    sp_str unk_surface, names[4]; /* unk, bos, eos, pad */
} sp_trainer;

typedef struct sp_normspec {
    bool present, add_dummy_prefix, remove_extra_ws, escape_ws;
    sp_str charsmap;
} sp_normspec;

static sp_str field_str(const pb_field *f)
{
    return (sp_str){(const char *)f->data, f->len};
}

static kiln_status parse_piece(pb_reader r, sp_piece *out)
{
    kiln_status st;
    pb_field f;
    bool done;
    *out = (sp_piece){{"", 0}, 0.0f, SPM_TYPE_NORMAL};
    while (!(st = pb_next(&r, &f, &done)) && !done) {
        if (f.num == 1 && f.wire == PB_LEN) {
            out->piece = field_str(&f);
        } else if (f.num == 2 && f.wire == PB_FIXED32) {
            uint32_t u = (uint32_t)f.v;
            memcpy(&out->score, &u, 4);
        } else if (f.num == 3 && f.wire == PB_VARINT && f.v >= 1 && f.v <= 6) {
            out->type = (int)f.v; /* other values: an unknown enum, left unset */
        }
    }
    return st;
}

static kiln_status parse_trainer(pb_reader r, sp_trainer *t)
{
    kiln_status st;
    pb_field f;
    bool done;
    while (!(st = pb_next(&r, &f, &done)) && !done) {
        if (f.wire == PB_VARINT) {
            if (f.num == 3 && f.v >= 1 && f.v <= 4)
                t->model_type = (int)f.v;
            else if (f.num == 24)
                t->treat_ws_as_suffix = f.v != 0;
            else if (f.num == 35)
                t->byte_fallback = f.v != 0;
        } else if (f.wire == PB_LEN) {
            if (f.num == 44) {
                t->unk_surface = field_str(&f);
                t->has_unk_surface = true;
            } else if (f.num >= 45 && f.num <= 48) {
                t->names[f.num - 45] = field_str(&f);
            }
        }
    }
    return st;
}

static kiln_status parse_normspec(pb_reader r, sp_normspec *n)
{
    kiln_status st;
    pb_field f;
    bool done;
    n->present = true;
    while (!(st = pb_next(&r, &f, &done)) && !done) {
        if (f.wire == PB_LEN && f.num == 2)
            n->charsmap = field_str(&f);
        else if (f.wire == PB_VARINT && f.num == 3)
            n->add_dummy_prefix = f.v != 0;
        else if (f.wire == PB_VARINT && f.num == 4)
            n->remove_extra_ws = f.v != 0;
        else if (f.wire == PB_VARINT && f.num == 5)
            n->escape_ws = f.v != 0;
    }
    return st;
}

/* ---- the model ---------------------------------------------------------------- */

typedef struct sp_model {
    int64_t n_pieces;
    size_t piece_bytes;
    sp_trainer trainer;
    sp_normspec norm, denorm;
} sp_model;

/* Pass 1: validate the structure, parse the specs, count the pieces. */
static kiln_status scan_model(const uint8_t *data, size_t len, sp_model *m)
{
    kiln_status st;
    pb_reader r = {data, data, data + len};
    pb_field f;
    bool done;
    sp_piece p;
    while (!(st = pb_next(&r, &f, &done)) && !done) {
        if (f.wire != PB_LEN)
            continue;
        pb_reader sub = pb_sub(&r, &f);
        if (f.num == 1) {
            if ((st = parse_piece(sub, &p)))
                return st;
            m->n_pieces++;
            m->piece_bytes += p.piece.len; /* <= len: no overflow */
        } else if (f.num == 2) {
            st = parse_trainer(sub, &m->trainer);
        } else if (f.num == 3) {
            st = parse_normspec(sub, &m->norm);
        } else if (f.num == 5) {
            st = parse_normspec(sub, &m->denorm);
        }
        if (st)
            return st;
    }
    return st;
}

/* Pass 2: copy the pieces into the handle. */
static void fill_pieces(const uint8_t *data, size_t len, spm_tok *t)
{
    pb_reader r = {data, data, data + len};
    pb_field f;
    bool done;
    sp_piece p;
    int32_t i = 0;
    uint32_t off = 0;
    while (!pb_next(&r, &f, &done) && !done) {
        if (f.wire != PB_LEN || f.num != 1 || parse_piece(pb_sub(&r, &f), &p))
            continue;
        memcpy(t->text + off, p.piece.s, p.piece.len);
        t->off[i] = off;
        off += (uint32_t)p.piece.len;
        t->score[i] = p.score;
        t->type[i] = (uint8_t)p.type;
        i++;
    }
    t->off[i] = off;
}

static const uint8_t type_attr[7] = {
    0, SPM_ATTR_NORMAL, SPM_ATTR_UNKNOWN, SPM_ATTR_CONTROL, SPM_ATTR_USER_DEFINED,
    SPM_ATTR_UNUSED, SPM_ATTR_BYTE,
};

static bool is_byte_name(const char *p, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    return len == 6 && memcmp(p, "<0x", 3) == 0 && p[5] == '>' && memchr(hex, p[3], 16) &&
           memchr(hex, p[4], 16);
}

/* Types: exactly one UNKNOWN piece; BYTE pieces only with byte_fallback and
 * named <0xNN>; user-defined pieces go into the matcher trie. */
static kiln_status check_types(spm_tok *t)
{
    kiln_status st;
    for (int32_t id = 0; id < t->n; id++) {
        const char *p = t->text + t->off[id];
        size_t len = t->off[id + 1] - t->off[id];
        t->attr[id] = type_attr[t->type[id]];
        if (t->type[id] == SPM_TYPE_UNKNOWN) {
            if (t->unk >= 0)
                return kiln_err_set(KILN_ERR_FORMAT, "spm: .model: pieces %d and %d are both "
                                    "unknown pieces", t->unk, id);
            t->unk = id;
        } else if (t->type[id] == SPM_TYPE_BYTE && (!t->byte_fallback || !is_byte_name(p, len))) {
            return kiln_err_set(KILN_ERR_FORMAT, "spm: .model: byte piece %d '%.*s' needs "
                                "byte_fallback and a <0xNN> name", id, (int)(len > 16 ? 16 : len),
                                p);
        } else if (t->type[id] == SPM_TYPE_USER_DEFINED &&
                   (st = spm_trie_insert(&t->match, p, len, id))) {
            return st;
        }
    }
    if (t->unk < 0)
        return kiln_err_set(KILN_ERR_FORMAT, "spm: .model: no unknown piece");
    return KILN_OK;
}

/* bos/eos/pad: the piece so named, when it is a control piece. */
static int32_t control_id(const spm_tok *t, sp_str name)
{
    int32_t id = spm_lookup(t, name.s, name.len);
    return id >= 0 && t->type[id] == SPM_TYPE_CONTROL ? id : -1;
}

static kiln_status set_norm(spm_norm *n, const sp_normspec *s, bool ws_suffix)
{
    n->add_dummy_prefix = s->add_dummy_prefix;
    n->remove_extra_ws = s->remove_extra_ws;
    n->escape_ws = s->escape_ws;
    n->treat_ws_as_suffix = ws_suffix;
    if (s->charsmap.len == 0)
        return KILN_OK;
    return spm_norm_set_charsmap(n, (const uint8_t *)s->charsmap.s, s->charsmap.len);
}

static kiln_status apply_specs(spm_tok *t, const sp_model *m)
{
    kiln_status st;
    const sp_trainer *tr = &m->trainer;
    sp_str surface = tr->has_unk_surface ? tr->unk_surface : (sp_str){" \xE2\x81\x87 ", 5};
    if (!(t->unk_surface = kiln_strndup(surface.s, surface.len)))
        return kiln_err_set(KILN_ERR_OOM, "spm: out of memory");
    t->bos = control_id(t, tr->names[1]);
    t->eos = control_id(t, tr->names[2]);
    t->pad = control_id(t, tr->names[3]);
    if ((st = set_norm(&t->norm, &m->norm, tr->treat_ws_as_suffix)))
        return st;
    if (m->denorm.present && m->denorm.charsmap.len > 0) {
        t->has_denorm = true;
        return set_norm(&t->denorm, &m->denorm, false);
    }
    return KILN_OK;
}

static const char *model_type_name(int type)
{
    static const char *names[] = {"?", "UNIGRAM", "BPE", "WORD", "CHAR"};
    return type >= 1 && type <= 4 ? names[type] : names[0];
}

static void model_defaults(sp_model *m)
{
    static const char *names[4] = {"<unk>", "<s>", "</s>", "<pad>"};
    memset(m, 0, sizeof *m);
    m->trainer.model_type = 1;
    for (int i = 0; i < 4; i++)
        m->trainer.names[i] = (sp_str){names[i], strlen(names[i])};
    m->norm = (sp_normspec){false, true, true, true, {"", 0}};
    m->denorm = m->norm;
}

/* Parse a serialized ModelProto (borrowed; copied where kept).  *out is
 * owned by the caller: spm_free().  Errors: KILN_ERR_FORMAT (malformed
 * protobuf, no pieces, empty/duplicate pieces, not exactly one unknown
 * piece, bad byte pieces or charsmap), KILN_ERR_UNSUPPORTED (a model type
 * other than BPE: UNIGRAM, WORD, CHAR), KILN_ERR_OOM. */
kiln_status spm_load_model_bytes(const void *data, size_t len, spm_tok **out)
{
    kiln_status st;
    sp_model m;
    spm_tok *t = NULL;
    *out = NULL;
    if (!data && len > 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "spm_load_model_bytes: NULL data");
    model_defaults(&m);
    if ((st = scan_model(data, len, &m)))
        return st;
    if (m.n_pieces == 0)
        return kiln_err_set(KILN_ERR_FORMAT, "spm: .model: no pieces");
    if (m.trainer.model_type != 2)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "spm: .model: model type %s is not supported "
                            "(only BPE)", model_type_name(m.trainer.model_type));
    if ((st = spm_alloc(SPM_FLAVOR_SP, m.n_pieces, m.piece_bytes, &t)))
        return st;
    fill_pieces(data, len, t);
    t->byte_fallback = m.trainer.byte_fallback;
    if ((st = spm_vocab_finish(t, "spm: .model")) || (st = check_types(t)) ||
        (st = apply_specs(t, &m)))
        goto err;
    *out = t;
    return KILN_OK;
err:
    spm_free(t);
    return st;
}

/* Map and parse the .model file at `path`.  *out is owned by the caller:
 * spm_free().  Errors as spm_load_model_bytes plus KILN_ERR_IO; messages
 * name the file. */
kiln_status spm_load_model_file(const char *path, spm_tok **out)
{
    fmap *m = NULL;
    kiln_status st = fmap_open(path, &m);
    *out = NULL;
    if (st)
        return st;
    st = spm_load_model_bytes(fmap_data(m), fmap_size(m), out);
    fmap_close(m);
    return st ? kiln_err_wrap(st, "%s", path) : KILN_OK;
}
