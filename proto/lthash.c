/* LtHash16: elements expand through SHAKE128 into 1024 lanes of 16 bits
 * that are added or subtracted mod 2^16, so the sum does not depend on the
 * order in which elements arrived and a removal undoes an addition. */
#include "proto/lthash.h"

#include <string.h>

#include <openssl/evp.h>

#include "proto/md_cache.h"
#include "proto/tb_assert.h"

enum { PROTO_LTHASH_BYTES = 2 * PROTO_LTHASH_LANES };

void proto_lthash_init(proto_lthash *h) {
    memset(h, 0, sizeof *h);
}

/* One digest context per thread, reset per element: allocating one per
 * element cost a measurable share of the state machine's apply time. */
static _Thread_local EVP_MD_CTX *expand_ctx;

static void proto_lthash_expand(const void *elem, size_t len, uint8_t out[PROTO_LTHASH_BYTES]) {
    if (expand_ctx == NULL) {
        expand_ctx = EVP_MD_CTX_new();
    }
    /* The void contract cannot report an allocation failure, and a state
     * digest silently missing an element would split the replicas. */
    TB_ASSERT(expand_ctx != NULL);
    TB_ASSERT(EVP_DigestInit_ex2(expand_ctx, proto_md_shake128(), NULL) == 1);
    TB_ASSERT(EVP_DigestUpdate(expand_ctx, elem, len) == 1);
    TB_ASSERT(EVP_DigestFinalXOF(expand_ctx, out, PROTO_LTHASH_BYTES) == 1);
}

static uint16_t proto_lthash_lane(const uint8_t *bytes, size_t i) {
    return (uint16_t)(bytes[2 * i] | (bytes[2 * i + 1] << 8));
}

void proto_lthash_add(proto_lthash *h, const void *elem, size_t len) {
    uint8_t bytes[PROTO_LTHASH_BYTES];
    proto_lthash_expand(elem, len, bytes);
    for (size_t i = 0; i < PROTO_LTHASH_LANES; i++) {
        h->lanes[i] = (uint16_t)(h->lanes[i] + proto_lthash_lane(bytes, i));
    }
}

void proto_lthash_remove(proto_lthash *h, const void *elem, size_t len) {
    uint8_t bytes[PROTO_LTHASH_BYTES];
    proto_lthash_expand(elem, len, bytes);
    for (size_t i = 0; i < PROTO_LTHASH_LANES; i++) {
        h->lanes[i] = (uint16_t)(h->lanes[i] - proto_lthash_lane(bytes, i));
    }
}

void proto_lthash_combine(proto_lthash *h, const proto_lthash *other) {
    for (size_t i = 0; i < PROTO_LTHASH_LANES; i++) {
        h->lanes[i] = (uint16_t)(h->lanes[i] + other->lanes[i]);
    }
}

void proto_lthash_digest(const proto_lthash *h, uint8_t out[PROTO_DIGEST_BYTES]) {
    /* Little-endian bytes, so the digest is the same on every machine. */
    uint8_t bytes[PROTO_LTHASH_BYTES];
    for (size_t i = 0; i < PROTO_LTHASH_LANES; i++) {
        bytes[2 * i] = (uint8_t)(h->lanes[i] & 0xff);
        bytes[2 * i + 1] = (uint8_t)(h->lanes[i] >> 8);
    }
    proto_sha256(bytes, sizeof bytes, out);
}
