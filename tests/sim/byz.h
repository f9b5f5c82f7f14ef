/* Byzantine replicas that mutate their outgoing messages.
 *
 * A mutating replica runs the real core; what it sends passes through
 * sim_byz_plan, which (at the replica's rate) omits the message to a subset
 * of its receivers or sends a mutated version to a subset of them (so
 * receivers may see conflicting messages): view or seq +-1, a digest from an
 * older message it sent, a pre-prepare with a rewritten batch, a
 * view change without its prepared certificates, a reply with another
 * result, a fetch reply with an older or corrupted manifest, a chunk with a
 * byte changed. Every mutated signed body is re-signed with this replica's own key only, so it
 * passes signature checks and nothing else. */
#ifndef SIM_BYZ_H
#define SIM_BYZ_H

#include <stddef.h>
#include <stdint.h>

#include "tests/sim/crypto.h"
#include "tests/sim/rng.h"

enum {
    SIM_BYZ_DIGESTS = 16,
    SIM_BYZ_STATES = 8,
    SIM_BYZ_FETCHES = 4,
    SIM_BYZ_DESC_BYTES = 96,
};

typedef struct sim_byz {
    uint32_t id;
    sim_crypto *crypto;
    uint32_t rate_permille; /* share of messages misbehaved on */
    /* History of what this replica really sent, the source of stale values. */
    uint8_t digests[SIM_BYZ_DIGESTS][PROTO_DIGEST_BYTES];
    uint64_t digest_seq[SIM_BYZ_DIGESTS];
    size_t n_digests, next_digest;
    uint8_t states[SIM_BYZ_STATES][PROTO_DIGEST_BYTES];
    size_t n_states, next_state;
    uint8_t *fetches[SIM_BYZ_FETCHES]; /* packed Message with a FetchReply carrying a manifest */
    size_t fetch_len[SIM_BYZ_FETCHES];
    uint64_t fetch_seq[SIM_BYZ_FETCHES];
    size_t n_fetches, next_fetch;
    uint64_t mutated, omitted;
} sim_byz;

/* What one outgoing message becomes. Receivers are numbered 0..k-1 by the
 * caller; bit i of a mask is receiver i. */
typedef struct sim_byz_plan {
    uint64_t omit_mask;   /* these receivers get nothing */
    uint64_t mutate_mask; /* these get `mutated` (owned), the rest the original */
    uint8_t *mutated;
    size_t mutated_len;
    char desc[SIM_BYZ_DESC_BYTES]; /* what was done, for narration; "" when nothing */
} sim_byz_plan;

void sim_byz_init(sim_byz *b, uint32_t id, sim_crypto *crypto, uint32_t rate_permille);
void sim_byz_free(sim_byz *b);
/* Forge state-machine snapshots in dir (which exists), as principal admin. */
/* Decides the fate of one packed Message sent to k receivers (1..64), and
 * learns from it for later mutations. Free plan->mutated with free(). */
void sim_byz_plan_msg(sim_byz *b, sim_rng *rng, const uint8_t *data, size_t len, uint32_t k,
                      sim_byz_plan *plan);

#endif
