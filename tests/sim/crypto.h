/* Signatures inside the simulated world.
 *
 * The default scheme is cheap but unforgeable within the simulation:
 * replica j's signature over a body is SHA-256(secret_j || body) followed by
 * SHA-256(body || secret_j), where the secrets derive from the seed. Only the
 * simulator knows them, every replica's verify can check any signer, and a
 * Byzantine replica can sign only as itself (byz.c re-signs with its own
 * key). With ed25519 the real proto/crypto.h keys are used instead, each
 * derived from the seed. */
#ifndef SIM_CRYPTO_H
#define SIM_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consensus/pbft.h"

typedef struct sim_crypto sim_crypto;

int sim_crypto_create(uint64_t seed, uint32_t n, bool ed25519, sim_crypto **out);
void sim_crypto_free(sim_crypto *c);
/* The pbft_crypto a replica's node is configured with: it signs as `replica`.
 * Valid until sim_crypto_free. */
pbft_crypto sim_crypto_for(sim_crypto *c, uint32_t replica);
/* Signs body as `replica` (what a Byzantine replica can do with its own key). */
int sim_crypto_sign(sim_crypto *c, uint32_t replica, const uint8_t *body, size_t len,
                    uint8_t sig[PROTO_SIG_BYTES]);

#endif
