/* LtHash (Bellare–Micciancio lattice hash, as deployed by Facebook's
 * "Securing update propagation with homomorphic hashing"): a multiset hash
 * of 1024 16-bit lanes. Each element expands through SHAKE128 to 2048 bytes
 * that are added (or subtracted) lane-wise mod 2^16, so the digest of a
 * key/value store is kept up to date in O(changes), independent of order. */
#ifndef PROTO_LTHASH_H
#define PROTO_LTHASH_H

#include <stddef.h>
#include <stdint.h>

#include "proto/crypto.h"

enum { PROTO_LTHASH_LANES = 1024 };

/* A proto_lthash is a plain value (copy it freely); functions on distinct
 * values may run on different threads at once. */

typedef struct proto_lthash {
    uint16_t lanes[PROTO_LTHASH_LANES];
} proto_lthash;

void proto_lthash_init(proto_lthash *h);
void proto_lthash_add(proto_lthash *h, const void *elem, size_t len);
void proto_lthash_remove(proto_lthash *h, const void *elem, size_t len);
/* h += other (combining two multisets). */
void proto_lthash_combine(proto_lthash *h, const proto_lthash *other);
/* SHA-256 over the lanes in little-endian order. */
void proto_lthash_digest(const proto_lthash *h, uint8_t out[PROTO_DIGEST_BYTES]);

#endif
