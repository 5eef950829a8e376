/*
 * sampler.h - choosing the next token from a row of logits, and the
 * per-request settings that end a generation (max tokens, stop strings,
 * EOS).
 *
 * One sampler per live sequence: it holds the sequence's penalty counts and
 * its own PRNG (xoshiro256** seeded from the request's seed through
 * splitmix64), so a request's draws depend only on its seed and its logits,
 * never on what else is in the batch.  All scratch is allocated by
 * sampler_create(); sampling allocates nothing.
 *
 * Order of the steps (as vLLM applies them):
 *   1. penalties over the sequence's previous tokens:
 *        repetition r (tokens of the prompt or the output): a positive
 *          logit is divided by r, a negative one multiplied by r;
 *        frequency f and presence p (tokens of the output only):
 *          logit -= f * count + p * (count > 0);
 *   2. temperature <= 0 (or top_k == 1): greedy, the highest logit (the
 *      lowest id among equal ones);
 *   3. logits / temperature;
 *   4. min_p: drop tokens whose probability is below min_p times the
 *      highest probability;
 *   5. top_k: keep the k most likely (ties broken by lower id);
 *   6. top_p: keep the smallest most-likely-first prefix whose probability
 *      mass reaches top_p (a token is kept when the mass of the tokens
 *      ranked above it is below top_p), at least one token;
 *   7. draw from the renormalised kept set.
 */
#ifndef KILN_ENGINE_SAMPLER_H
#define KILN_ENGINE_SAMPLER_H

#include "kiln.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest stop string accepted, in bytes. */
#define SAMPLER_MAX_STOP_LEN 256
/* Most stop strings per request. */
#define SAMPLER_MAX_STOPS 16

typedef struct sampler_params {
    float temperature;          /* <= 0: greedy                                 */
    int32_t top_k;              /* <= 0: off                                    */
    float top_p;                /* >= 1: off; (0, 1]                            */
    float min_p;                /* <= 0: off; [0, 1]                            */
    float repetition_penalty;   /* 1: off; > 0                                  */
    float presence_penalty;     /* 0: off                                       */
    float frequency_penalty;    /* 0: off                                       */
    uint64_t seed;              /* same seed, same logits -> same tokens        */
    int32_t max_tokens;         /* generated tokens at most; 0: up to the context */
    int32_t n_stop;
    const char *const *stop;    /* (n_stop) stop strings, borrowed; matched on the
                                   decoded text, which ends before the match     */
    bool ignore_eos;            /* keep going past end-of-sequence tokens        */
} sampler_params;

/* Greedy, no penalties, seed 0, max_tokens 0, no stop strings. */
void sampler_params_default(sampler_params *p);

/* KILN_ERR_INVALID_ARG naming the first setting out of range (temperature
 * < 0, top_p outside (0, 1], min_p outside [0, 1], repetition_penalty <= 0,
 * max_tokens < 0, too many or too long or empty stop strings, NaN). */
kiln_status sampler_params_check(const sampler_params *p);

typedef struct sampler sampler;

/* A sampler over a vocabulary of vocab_size tokens.  Errors:
 * KILN_ERR_INVALID_ARG (vocab_size <= 0 or over INT32_MAX), KILN_ERR_OOM.
 * *out owned: sampler_free(). */
kiln_status sampler_create(int64_t vocab_size, sampler **out);
void sampler_free(sampler *s); /* NULL is a no-op */

/* Start a sequence: copy the settings (p->stop stays the caller's), seed
 * the PRNG, forget earlier counts, and mark the prompt's tokens for the
 * repetition penalty.  Ids outside the vocabulary are ignored. */
void sampler_reset(sampler *s, const sampler_params *p, const int32_t *prompt,
                   int32_t n_prompt);

/* Count `tok` as generated (presence/frequency/repetition penalties). */
void sampler_accept(sampler *s, int32_t tok);

/* Steps 1-6: apply penalties and temperature to logits (vocab_size values,
 * changed in place) and return how many tokens are kept (>= 1); *ids gets
 * them most likely first (for greedy: the one chosen) and *probs their
 * renormalised probabilities.  Borrowed: the sampler's scratch, valid until
 * its next call. */
int32_t sampler_candidates(sampler *s, float *logits, const int32_t **ids,
                           const float **probs);

/* Steps 1-7: the next token.  logits are changed in place.  Draws one
 * number from the PRNG (sampler_draw) per call unless the settings are
 * greedy, whatever the kept set turns out to be, so the PRNG's stream does
 * not depend on where the filtering runs. */
int32_t sampler_sample(sampler *s, float *logits);

/* sampler_sample with the draw u in [0, 1) given: the first kept token
 * (most likely first) whose running probability exceeds u. */
int32_t sampler_sample_u(sampler *s, float *logits, double u);

/* The draw of the next step: sampler_rand(), or 0 without a draw when the
 * settings are greedy. */
double sampler_draw(sampler *s);

/* A uniform double in [0, 1) from the sequence's PRNG (53 random bits):
 * an integer times 2^-53. */
double sampler_rand(sampler *s);

/* Greedy settings (step 2): temperature <= 0 or top_k == 1. */
bool sampler_params_greedy(const sampler_params *p);

/* Any of the penalties of step 1 is on. */
bool sampler_params_penalized(const sampler_params *p);

/* Stop strings over decoded text[0..len), which holds only text not yet
 * handed out.  Returns the offset of the earliest complete match of any
 * of p's stop strings, or -1 if none; in *safe the number of leading
 * bytes that can be handed out now (len minus the longest tail that is a
 * proper prefix of a stop string; the match offset when there is one). */
int64_t sampler_stop_find(const sampler_params *p, const char *text, size_t len,
                          size_t *safe);

#endif /* KILN_ENGINE_SAMPLER_H */
