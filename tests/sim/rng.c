/* xoshiro256** (Blackman & Vigna), seeded through splitmix64 so that nearby
 * seeds give unrelated streams. */
#include "tests/sim/rng.h"

#include "proto/tb_assert.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

void sim_rng_seed(sim_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) {
        r->s[i] = splitmix64(&x);
    }
}

uint64_t sim_rng_next(sim_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t sim_rng_below(sim_rng *r, uint64_t n) {
    TB_ASSERT(n > 0);
    /* Rejection sampling: no modulo bias, and still one draw almost always. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = sim_rng_next(r);
    } while (x >= limit);
    return x % n;
}

uint64_t sim_rng_range(sim_rng *r, uint64_t lo, uint64_t hi) {
    TB_ASSERT(lo <= hi);
    if (hi - lo == UINT64_MAX) {
        return sim_rng_next(r);
    }
    return lo + sim_rng_below(r, hi - lo + 1);
}

bool sim_rng_chance(sim_rng *r, uint32_t permille) {
    return sim_rng_below(r, 1000) < permille;
}
