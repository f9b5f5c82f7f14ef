/* The simulator's signature schemes (see crypto.h). */
#include "tests/sim/crypto.h"

#include <stdlib.h>
#include <string.h>

#include "proto/tb_assert.h"
#include "proto/tb_err.h"

enum { SIM_SECRET_BYTES = 32, SIM_SIGN_STACK_BYTES = 4096 };

typedef struct sim_signer {
    sim_crypto *c;
    uint32_t id;
} sim_signer;

struct sim_crypto {
    uint32_t n;
    bool ed25519;
    sim_signer signers[PBFT_REPLICAS_MAX];
    uint8_t secrets[PBFT_REPLICAS_MAX][SIM_SECRET_BYTES];
    proto_key *keys[PBFT_REPLICAS_MAX];
    proto_pubkey *pubs[PBFT_REPLICAS_MAX];
};

/* SHA-256(a || b) without the cost of an incremental context for the small
 * bodies that make up nearly all traffic. */
static void sha256_concat(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                          uint8_t out[PROTO_DIGEST_BYTES]) {
    uint8_t stack[SIM_SIGN_STACK_BYTES];
    uint8_t *buf = stack;
    if (alen + blen > sizeof stack) {
        buf = malloc(alen + blen);
        TB_ASSERT(buf != NULL);
    }
    if (alen > 0) {
        memcpy(buf, a, alen);
    }
    if (blen > 0) {
        memcpy(buf + alen, b, blen);
    }
    proto_sha256(buf, alen + blen, out);
    if (buf != stack) {
        free(buf);
    }
}

static void fast_sign(const sim_crypto *c, uint32_t id, const uint8_t *body, size_t len,
                      uint8_t sig[PROTO_SIG_BYTES]) {
    sha256_concat(c->secrets[id], SIM_SECRET_BYTES, body, len, sig);
    sha256_concat(body, len, c->secrets[id], SIM_SECRET_BYTES, sig + PROTO_DIGEST_BYTES);
}

int sim_crypto_sign(sim_crypto *c, uint32_t replica, const uint8_t *body, size_t len,
                    uint8_t sig[PROTO_SIG_BYTES]) {
    TB_ASSERT(replica < c->n);
    if (c->ed25519) {
        return proto_sign_body(c->keys[replica], body, len, sig);
    }
    fast_sign(c, replica, body, len, sig);
    return 0;
}

static int signer_sign(void *ctx, const uint8_t *body, size_t len, uint8_t sig[PROTO_SIG_BYTES]) {
    const sim_signer *s = ctx;
    return sim_crypto_sign(s->c, s->id, body, len, sig);
}

static bool signer_verify(void *ctx, uint32_t signer, const uint8_t *body, size_t len,
                          const uint8_t *sig, size_t sig_len) {
    const sim_signer *s = ctx;
    const sim_crypto *c = s->c;
    if (signer >= c->n || sig_len != PROTO_SIG_BYTES) {
        return false;
    }
    if (c->ed25519) {
        return proto_verify_body(c->pubs[signer], body, len, sig, sig_len);
    }
    uint8_t want[PROTO_SIG_BYTES];
    fast_sign(c, signer, body, len, want);
    return memcmp(want, sig, PROTO_SIG_BYTES) == 0;
}

pbft_crypto sim_crypto_for(sim_crypto *c, uint32_t replica) {
    TB_ASSERT(replica < c->n);
    return (pbft_crypto){.ctx = &c->signers[replica], .sign = signer_sign, .verify = signer_verify};
}

/* Each replica's secret (and Ed25519 seed) is SHA-256 over a label, the run's
 * seed and the replica id, so keys differ between seeds and replicas. */
static void derive(uint64_t seed, uint32_t id, uint8_t out[SIM_SECRET_BYTES]) {
    uint8_t in[32] = "twinbft-sim/key/";
    for (int i = 0; i < 8; i++) {
        in[16 + i] = (uint8_t)(seed >> (8 * i));
    }
    for (int i = 0; i < 4; i++) {
        in[24 + i] = (uint8_t)(id >> (8 * i));
    }
    proto_sha256(in, sizeof in, out);
}

int sim_crypto_create(uint64_t seed, uint32_t n, bool ed25519, sim_crypto **out) {
    if (n == 0 || n > PBFT_REPLICAS_MAX) {
        return TB_ERR_INVALID;
    }
    sim_crypto *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return TB_ERR_NOMEM;
    }
    c->n = n;
    c->ed25519 = ed25519;
    int rc = 0;
    for (uint32_t i = 0; i < n; i++) {
        c->signers[i] = (sim_signer){.c = c, .id = i};
        derive(seed, i, c->secrets[i]);
        if (!ed25519) {
            continue;
        }
        uint8_t pub[PROTO_PUBKEY_BYTES];
        rc = proto_key_from_seed(c->secrets[i], &c->keys[i]);
        if (rc == 0) {
            rc = proto_key_public(c->keys[i], pub);
        }
        if (rc == 0) {
            rc = proto_pubkey_from_raw(pub, &c->pubs[i]);
        }
        if (rc != 0) {
            goto fail;
        }
    }
    *out = c;
    return 0;
fail:
    sim_crypto_free(c);
    return rc;
}

void sim_crypto_free(sim_crypto *c) {
    if (c == NULL) {
        return;
    }
    for (uint32_t i = 0; i < c->n; i++) {
        proto_key_free(c->keys[i]);
        proto_pubkey_free(c->pubs[i]);
    }
    free(c);
}
