/* The simulator's one source of randomness: xoshiro256** seeded through
 * splitmix64. Every choice in a simulated run (delivery order, delays,
 * faults, client behaviour) is drawn from one sim_rng, so a seed names the
 * whole run. */
#ifndef SIM_RNG_H
#define SIM_RNG_H

#include <stdbool.h>
#include <stdint.h>

typedef struct sim_rng {
    uint64_t s[4];
} sim_rng;

void sim_rng_seed(sim_rng *r, uint64_t seed);
uint64_t sim_rng_next(sim_rng *r);
/* Uniform in [0, n); n > 0. */
uint64_t sim_rng_below(sim_rng *r, uint64_t n);
/* Uniform in [lo, hi]; lo <= hi. */
uint64_t sim_rng_range(sim_rng *r, uint64_t lo, uint64_t hi);
/* True with probability permille / 1000. */
bool sim_rng_chance(sim_rng *r, uint32_t permille);

#endif
