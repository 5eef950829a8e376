/*
 * sampler.c - penalties, greedy/temperature/min-p/top-k/top-p sampling and
 * stop-string matching; see sampler.h for the order of the steps.
 *
 * Invariants:
 *   1. seen[0 .. n_seen) lists, once each, exactly the ids whose flags are
 *      non-zero; counts[id] > 0 only for ids flagged SMP_OUTPUT.
 *   2. Nothing is allocated after sampler_create(): candidates, heap and
 *      results live in vocab-sized scratch arrays.
 *   3. Candidate order is total (higher logit first, then lower id), so
 *      results never depend on how a selection happened to run.
 *
 * Top-p without top-k would need the whole vocabulary sorted; instead the
 * best n candidates are selected with a heap (n = 64, then x4) until the
 * mass of the selected prefix reaches top_p, which is exact and costs
 * O(V log n) for the usual peaked distributions.
 */
#include "engine/sampler.h"

#include "base/alloc.h"
#include "base/error.h"

#include <math.h>
#include <string.h>

enum { SMP_PROMPT = 1, SMP_OUTPUT = 2 };

struct sampler {
    int32_t vocab;
    sampler_params p;
    uint64_t rng[4];      /* xoshiro256** state                                  */
    uint8_t *flags;       /* (vocab) SMP_PROMPT | SMP_OUTPUT                      */
    int32_t *counts;      /* (vocab) times generated                             */
    int32_t *seen;        /* (vocab) ids with flags, n_seen of them              */
    int32_t n_seen;
    int32_t *cid;         /* (vocab) candidate ids                               */
    float *clog;          /* (vocab) candidate logits (after temperature)        */
    int32_t *heap;        /* (vocab) candidate indices: heap, then sorted order  */
    int32_t *oid;         /* (vocab) kept ids                                    */
    float *oprob;         /* (vocab) their probabilities                         */
};

/* ---- settings ----------------------------------------------------------- */

void sampler_params_default(sampler_params *p)
{
    memset(p, 0, sizeof *p);
    p->top_p = 1.0f;
    p->repetition_penalty = 1.0f;
}

kiln_status sampler_params_check(const sampler_params *p)
{
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "temperature %g: must be >= 0",
                            (double)p->temperature);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "top_p %g: must be in (0, 1]",
                            (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "min_p %g: must be in [0, 1]",
                            (double)p->min_p);
    if (!(p->repetition_penalty > 0.0f) || isinf(p->repetition_penalty))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "repetition penalty %g: must be > 0",
                            (double)p->repetition_penalty);
    if (!isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "presence/frequency penalty must be finite");
    if (p->max_tokens < 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "max tokens %d: must be >= 0", p->max_tokens);
    if (p->n_stop < 0 || p->n_stop > SAMPLER_MAX_STOPS || (p->n_stop && !p->stop))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "%d stop strings (at most %d)", p->n_stop,
                            SAMPLER_MAX_STOPS);
    for (int32_t i = 0; i < p->n_stop; i++) {
        size_t n = p->stop[i] ? strlen(p->stop[i]) : 0;
        if (n == 0 || n > SAMPLER_MAX_STOP_LEN)
            return kiln_err_set(KILN_ERR_INVALID_ARG, "stop string %d: %zu bytes (1 to %d)", i,
                                n, SAMPLER_MAX_STOP_LEN);
    }
    return KILN_OK;
}

/* ---- lifetime ------------------------------------------------------------ */

kiln_status sampler_create(int64_t vocab_size, sampler **out)
{
    sampler *s;
    size_t v = (size_t)vocab_size;

    *out = NULL;
    if (vocab_size <= 0 || vocab_size > INT32_MAX)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "sampler: vocabulary of %lld tokens",
                            (long long)vocab_size);
    if (!(s = kiln_calloc(1, sizeof *s)))
        return kiln_err_set(KILN_ERR_OOM, "sampler: out of memory");
    s->vocab = (int32_t)vocab_size;
    s->flags = kiln_calloc(v, sizeof *s->flags);
    s->counts = kiln_calloc(v, sizeof *s->counts);
    s->seen = kiln_calloc(v, sizeof *s->seen);
    s->cid = kiln_calloc(v, sizeof *s->cid);
    s->clog = kiln_calloc(v, sizeof *s->clog);
    s->heap = kiln_calloc(v, sizeof *s->heap);
    s->oid = kiln_calloc(v, sizeof *s->oid);
    s->oprob = kiln_calloc(v, sizeof *s->oprob);
    if (!s->flags || !s->counts || !s->seen || !s->cid || !s->clog || !s->heap || !s->oid ||
        !s->oprob) {
        sampler_free(s);
        return kiln_err_set(KILN_ERR_OOM, "sampler: out of memory for %lld tokens",
                            (long long)vocab_size);
    }
    sampler_params_default(&s->p);
    *out = s;
    return KILN_OK;
}

void sampler_free(sampler *s)
{
    if (!s)
        return;
    kiln_free(s->flags);
    kiln_free(s->counts);
    kiln_free(s->seen);
    kiln_free(s->cid);
    kiln_free(s->clog);
    kiln_free(s->heap);
    kiln_free(s->oid);
    kiln_free(s->oprob);
    kiln_free(s);
}

/* ---- PRNG: splitmix64 seeding, xoshiro256** ------------------------------ */

static uint64_t smp_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t smp_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t smp_next(uint64_t st[4])
{
    uint64_t r = smp_rotl(st[1] * 5, 7) * 9, t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = smp_rotl(st[3], 45);
    return r;
}

double sampler_rand(sampler *s)
{
    return (double)(smp_next(s->rng) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- per-sequence state -------------------------------------------------- */

static void smp_mark(sampler *s, int32_t id, uint8_t flag)
{
    if (id < 0 || id >= s->vocab)
        return;
    if (!s->flags[id])
        s->seen[s->n_seen++] = id;
    s->flags[id] |= flag;
}

void sampler_reset(sampler *s, const sampler_params *p, const int32_t *prompt,
                   int32_t n_prompt)
{
    for (int32_t i = 0; i < s->n_seen; i++) {
        s->flags[s->seen[i]] = 0;
        s->counts[s->seen[i]] = 0;
    }
    s->n_seen = 0;
    s->p = *p;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = smp_splitmix(&x);
    for (int32_t i = 0; i < n_prompt; i++)
        smp_mark(s, prompt[i], SMP_PROMPT);
}

void sampler_accept(sampler *s, int32_t tok)
{
    if (tok < 0 || tok >= s->vocab)
        return;
    smp_mark(s, tok, SMP_OUTPUT);
    s->counts[tok]++;
}

/* ---- filtering ---------------------------------------------------------- */

static void smp_penalize(sampler *s, float *logits)
{
    const sampler_params *p = &s->p;
    bool rep = p->repetition_penalty != 1.0f;
    if (!sampler_params_penalized(p))
        return;
    for (int32_t i = 0; i < s->n_seen; i++) {
        int32_t id = s->seen[i];
        float x = logits[id];
        if (rep)
            x = x > 0.0f ? x / p->repetition_penalty : x * p->repetition_penalty;
        if (s->flags[id] & SMP_OUTPUT)
            x -= p->frequency_penalty * (float)s->counts[id] + p->presence_penalty;
        logits[id] = x;
    }
}

/* Candidate a ranks before b: higher logit, then lower id. */
static inline bool smp_before(const sampler *s, int32_t a, int32_t b)
{
    return s->clog[a] > s->clog[b] || (s->clog[a] == s->clog[b] && s->cid[a] < s->cid[b]);
}

/* Restore the min-heap (worst candidate at the root) below node i. */
static void smp_sift(sampler *s, int32_t *h, int32_t n, int32_t i)
{
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && smp_before(s, h[w], h[l]))
            w = l;
        if (r < n && smp_before(s, h[w], h[r]))
            w = r;
        if (w == i)
            return;
        int32_t t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* The best n of the cnt candidates into heap[0..n), best first. */
static void smp_select(sampler *s, int32_t n, int32_t cnt)
{
    int32_t *h = s->heap;
    for (int32_t i = 0; i < n; i++)
        h[i] = i;
    for (int32_t i = n / 2 - 1; i >= 0; i--)
        smp_sift(s, h, n, i);
    for (int32_t i = n; i < cnt; i++)
        if (smp_before(s, i, h[0])) {
            h[0] = i;
            smp_sift(s, h, n, 0);
        }
    /* Pop the worst to the back: heap[0..n) ends sorted best first. */
    for (int32_t m = n - 1; m > 0; m--) {
        int32_t t = h[0];
        h[0] = h[m];
        h[m] = t;
        smp_sift(s, h, m, 0);
    }
}

static int32_t smp_greedy(sampler *s, const float *logits)
{
    int32_t best = 0;
    for (int32_t i = 1; i < s->vocab; i++)
        if (logits[i] > logits[best])
            best = i;
    s->oid[0] = best;
    s->oprob[0] = 1.0f;
    return 1;
}

/* Steps 1-6; `sorted` asks for the kept set in rank order even when no
 * filter needs it. */
static int32_t smp_filter(sampler *s, float *logits, bool sorted)
{
    const sampler_params *p = &s->p;
    smp_penalize(s, logits);
    if (sampler_params_greedy(p))
        return smp_greedy(s, logits);

    float inv_t = 1.0f / p->temperature, m = -INFINITY;
    for (int32_t i = 0; i < s->vocab; i++) {
        logits[i] *= inv_t;
        if (logits[i] > m)
            m = logits[i];
    }
    if (!isfinite(m))
        return smp_greedy(s, logits);

    /* min_p as a logit threshold: p_i >= min_p * p_max <=> x_i - m >= log(min_p) */
    float thr = p->min_p > 0.0f ? m + logf(p->min_p) : -INFINITY;
    int32_t cnt = 0;
    for (int32_t i = 0; i < s->vocab; i++)
        if (logits[i] >= thr && logits[i] > -INFINITY) {
            s->cid[cnt] = i;
            s->clog[cnt++] = logits[i];
        }

    /* top_k: the best k move to the front of the candidates, in order */
    bool ordered = false;
    if (p->top_k > 0 && p->top_k < cnt) {
        smp_select(s, p->top_k, cnt);
        cnt = p->top_k;
        for (int32_t i = 0; i < cnt; i++) {
            s->oid[i] = s->cid[s->heap[i]];
            s->oprob[i] = s->clog[s->heap[i]];
        }
        for (int32_t i = 0; i < cnt; i++) {
            s->cid[i] = s->oid[i];
            s->clog[i] = s->oprob[i];
            s->heap[i] = i;
        }
        ordered = true;
    }
    double z = 0.0;
    for (int32_t i = 0; i < cnt; i++)
        z += exp((double)s->clog[i] - m);

    /* top_p: grow the selected prefix until its mass reaches top_p */
    int32_t kept = cnt;
    if (p->top_p < 1.0f) {
        double target = (double)p->top_p * z;
        int32_t n = ordered || cnt < 64 ? cnt : 64;
        for (;;) {
            if (!ordered)
                smp_select(s, n, cnt);
            double above = 0.0;
            int32_t k = 0;
            while (k < n && above < target)
                above += exp((double)s->clog[s->heap[k++]] - m);
            if (above >= target || n == cnt) {
                kept = k;
                break;
            }
            n = n > cnt / 4 ? cnt : n * 4;
        }
        ordered = true;
    } else if (sorted && !ordered) {
        smp_select(s, cnt, cnt);
        ordered = true;
    }

    double zk = 0.0;
    for (int32_t i = 0; i < kept; i++) {
        int32_t c = ordered ? s->heap[i] : i;
        s->oid[i] = s->cid[c];
        s->oprob[i] = (float)exp((double)s->clog[c] - m);
        zk += s->oprob[i];
    }
    for (int32_t i = 0; i < kept; i++)
        s->oprob[i] = (float)(s->oprob[i] / zk);
    return kept;
}

int32_t sampler_candidates(sampler *s, float *logits, const int32_t **ids, const float **probs)
{
    int32_t n = smp_filter(s, logits, true);
    *ids = s->oid;
    *probs = s->oprob;
    return n;
}

bool sampler_params_greedy(const sampler_params *p)
{
    return p->temperature <= 0.0f || p->top_k == 1;
}

bool sampler_params_penalized(const sampler_params *p)
{
    return p->repetition_penalty != 1.0f || p->presence_penalty != 0.0f ||
           p->frequency_penalty != 0.0f;
}

double sampler_draw(sampler *s)
{
    return sampler_params_greedy(&s->p) ? 0.0 : sampler_rand(s);
}

int32_t sampler_sample(sampler *s, float *logits)
{
    return sampler_sample_u(s, logits, sampler_draw(s));
}

int32_t sampler_sample_u(sampler *s, float *logits, double u)
{
    int32_t n = smp_filter(s, logits, false);
    if (n == 1)
        return s->oid[0];
    double c = 0.0;
    for (int32_t i = 0; i < n; i++) {
        c += s->oprob[i];
        if (u < c)
            return s->oid[i];
    }
    return s->oid[n - 1];
}

/* ---- stop strings ---------------------------------------------------------- */

int64_t sampler_stop_find(const sampler_params *p, const char *text, size_t len, size_t *safe)
{
    int64_t at = -1;
    size_t hold = 0;
    for (int32_t i = 0; i < p->n_stop; i++) {
        const char *st = p->stop[i];
        size_t n = strlen(st);
        if (n == 0)
            continue;
        const char *hit = memmem(text, len, st, n);
        if (hit && (at < 0 || hit - text < at))
            at = hit - text;
        /* longest tail of text that is a proper prefix of st */
        for (size_t k = (n - 1 < len ? n - 1 : len); k > hold; k--)
            if (!memcmp(text + len - k, st, k)) {
                hold = k;
                break;
            }
    }
    *safe = at >= 0 ? (size_t)at : len - hold;
    return at;
}
