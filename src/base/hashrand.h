/*
 * hashrand.h - counter-based random numbers: value i of stream `seed` is a
 * pure function of (seed, i).  Host and device code fill the same tensor
 * with the same values, in any order and from any number of threads; this
 * is what --dummy-weights uses, so a model made on the CPU and one made on
 * the GPU hold the same weights (up to the GPU's rounding to bf16/f16).
 *
 * Not for cryptography, nor for sampling (engine/sampler.c has its own
 * PRNG): splitmix64's finalizer over the counter, 24 bits of mantissa.
 */
#ifndef KILN_BASE_HASHRAND_H
#define KILN_BASE_HASHRAND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define HR_FN static inline __host__ __device__
#else
#define HR_FN static inline
#endif

/* splitmix64's output function: a bijection of 64-bit words. */
HR_FN uint64_t hr_mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Element i of stream `seed`, uniform in [lo, hi). */
HR_FN float hr_uniform(uint64_t seed, uint64_t i, float lo, float hi)
{
    uint64_t r = hr_mix64(hr_mix64(seed) ^ i);
    return lo + (hi - lo) * ((float)(uint32_t)(r >> 40) * (1.0f / 16777216.0f));
}

/* FNV-1a of a NUL-terminated string: a stream seed from a tensor name. */
HR_FN uint64_t hr_hash_str(const char *s)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001B3ull;
    return h;
}

/* FNV-1a of n bytes (a process group's name from its id). */
HR_FN uint64_t hr_hash_bytes(const void *p, size_t n)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const uint8_t *)p)[i]) * 0x100000001B3ull;
    return h;
}

#endif /* KILN_BASE_HASHRAND_H */
