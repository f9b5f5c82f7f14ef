/* RFC 6962 Merkle trees, built level by level.
 *
 * Level 0 holds the leaf hashes; a node of level i+1 hashes a pair of level
 * i, and a level's last node without a partner moves up unchanged. That
 * gives exactly the RFC 6962 tree (which splits at the largest power of two
 * below n) while letting every level sit in one flat array. */
#include "proto/merkle.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "proto/tb_assert.h"
#include "proto/tb_err.h"

_Static_assert(PROTO_MERKLE_LEAVES_MAX <= (1ul << PROTO_MERKLE_DEPTH_MAX),
               "a path of every tree fits in PROTO_MERKLE_DEPTH_MAX hashes");
_Static_assert(PROTO_MERKLE_DEPTH_MAX <= 64, "a path's directions fit in one uint64_t");

struct proto_merkle {
    size_t n;
    size_t levels; /* level 0 is the leaves; the last is the root */
    size_t level_start[PROTO_MERKLE_DEPTH_MAX + 1]; /* index of each level's first node */
    size_t level_len[PROTO_MERKLE_DEPTH_MAX + 1];
    uint8_t (*nodes)[PROTO_DIGEST_BYTES];
};

void proto_merkle_leaf_hash(const uint8_t *leaf, size_t len, uint8_t out[PROTO_DIGEST_BYTES]) {
    static const uint8_t prefix = 0x00;
    proto_hash *h = proto_hash_begin();
    TB_ASSERT(h != NULL);
    proto_hash_update(h, &prefix, 1);
    proto_hash_update(h, leaf, len);
    proto_hash_final(h, out);
}

static void proto_merkle_node_hash(const uint8_t left[PROTO_DIGEST_BYTES],
                                   const uint8_t right[PROTO_DIGEST_BYTES],
                                   uint8_t out[PROTO_DIGEST_BYTES]) {
    uint8_t buf[1 + 2 * PROTO_DIGEST_BYTES];
    buf[0] = 0x01;
    memcpy(buf + 1, left, PROTO_DIGEST_BYTES);
    memcpy(buf + 1 + PROTO_DIGEST_BYTES, right, PROTO_DIGEST_BYTES);
    proto_sha256(buf, sizeof buf, out);
}

/* Fills level `lv` from level `lv - 1`. */
static void proto_merkle_fill_level(proto_merkle *t, size_t lv) {
    const uint8_t(*below)[PROTO_DIGEST_BYTES] = t->nodes + t->level_start[lv - 1];
    uint8_t(*level)[PROTO_DIGEST_BYTES] = t->nodes + t->level_start[lv];
    size_t below_len = t->level_len[lv - 1];
    for (size_t i = 0; i < t->level_len[lv]; i++) {
        if (2 * i + 1 < below_len) {
            proto_merkle_node_hash(below[2 * i], below[2 * i + 1], level[i]);
        } else {
            memcpy(level[i], below[2 * i], PROTO_DIGEST_BYTES);
        }
    }
}

int proto_merkle_build(const uint8_t (*leaf_hashes)[PROTO_DIGEST_BYTES], size_t n,
                       proto_merkle **out) {
    proto_merkle *t = NULL;
    size_t total = 0;
    *out = NULL;
    if (n == 0 || n > PROTO_MERKLE_LEAVES_MAX) {
        return TB_ERR_INVALID;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        return TB_ERR_NOMEM;
    }
    t->n = n;
    for (size_t len = n;; len = (len + 1) / 2) {
        TB_ASSERT(t->levels <= PROTO_MERKLE_DEPTH_MAX);
        t->level_start[t->levels] = total;
        t->level_len[t->levels] = len;
        t->levels++;
        total += len;
        if (len == 1) {
            break;
        }
    }
    t->nodes = malloc(total * sizeof *t->nodes);
    if (t->nodes == NULL) {
        free(t);
        return TB_ERR_NOMEM;
    }
    memcpy(t->nodes, leaf_hashes, n * sizeof *t->nodes);
    for (size_t lv = 1; lv < t->levels; lv++) {
        proto_merkle_fill_level(t, lv);
    }
    *out = t;
    return 0;
}

void proto_merkle_root(const proto_merkle *t, uint8_t root[PROTO_DIGEST_BYTES]) {
    memcpy(root, t->nodes[t->level_start[t->levels - 1]], PROTO_DIGEST_BYTES);
}

int proto_merkle_path(const proto_merkle *t, size_t index, uint8_t (*path)[PROTO_DIGEST_BYTES],
                      size_t *path_len) {
    size_t len = 0;
    size_t leaf = index;
    *path_len = 0;
    if (index >= t->n) {
        return TB_ERR_INVALID;
    }
    for (size_t lv = 0; lv + 1 < t->levels; lv++, index /= 2) {
        size_t sibling = index ^ 1;
        /* A node without a partner moves up unchanged and adds nothing. */
        if (sibling >= t->level_len[lv]) {
            continue;
        }
        TB_ASSERT(len < PROTO_MERKLE_DEPTH_MAX);
        memcpy(path[len++], t->nodes[t->level_start[lv] + sibling], PROTO_DIGEST_BYTES);
    }
    TB_ASSERT(len == proto_merkle_path_len(leaf, t->n)); /* what verifiers will expect */
    *path_len = len;
    return 0;
}

void proto_merkle_free(proto_merkle *t) {
    if (t == NULL) {
        return;
    }
    free(t->nodes);
    free(t);
}

/* The largest power of two below n (n >= 2): where RFC 6962 2.1 splits a
 * tree of n leaves. */
static size_t proto_merkle_split(size_t n) {
    size_t k = 1;
    while (2 * k < n) {
        k *= 2;
    }
    return k;
}

/* Walks from the root of an n-leaf tree down to leaf index, one split at a
 * time, as RFC 6962 2.1.1 defines the path. Returns the path's length; bit
 * i of *left says whether path[i] (counted leaf to root) is the left
 * sibling of the node it is hashed with. */
static size_t proto_merkle_shape(size_t index, size_t n, uint64_t *left) {
    size_t len = 0;
    uint64_t bits = 0;
    TB_ASSERT(n >= 1 && n <= PROTO_MERKLE_LEAVES_MAX && index < n);
    while (n > 1) {
        size_t k = proto_merkle_split(n);
        /* The level found now is the root-most so far: it ends up as the
         * path's last entry, so the earlier ones shift towards the root. */
        bits <<= 1;
        if (index < k) {
            n = k; /* the leaf is on the left: its sibling subtree is the right one */
        } else {
            bits |= 1;
            index -= k;
            n -= k;
        }
        len++;
    }
    TB_ASSERT(len <= PROTO_MERKLE_DEPTH_MAX);
    *left = bits;
    return len;
}

size_t proto_merkle_path_len(size_t index, size_t n) {
    uint64_t left = 0;
    return proto_merkle_shape(index, n, &left);
}

/* The directions come from (index, n) alone, never from the path, and the
 * path must have exactly as many hashes as that leaf is deep. */
int proto_merkle_verify(const uint8_t leaf_hash[PROTO_DIGEST_BYTES], size_t index, size_t n,
                        const uint8_t (*path)[PROTO_DIGEST_BYTES], size_t path_len,
                        const uint8_t root[PROTO_DIGEST_BYTES]) {
    uint8_t r[PROTO_DIGEST_BYTES];
    uint64_t left = 0;
    if (n == 0 || n > PROTO_MERKLE_LEAVES_MAX || index >= n || path_len > PROTO_MERKLE_DEPTH_MAX) {
        return TB_ERR_INVALID;
    }
    if (proto_merkle_shape(index, n, &left) != path_len) {
        return TB_ERR_MISMATCH;
    }
    memcpy(r, leaf_hash, PROTO_DIGEST_BYTES);
    for (size_t i = 0; i < path_len; i++) {
        if ((left >> i) & 1) {
            proto_merkle_node_hash(path[i], r, r);
        } else {
            proto_merkle_node_hash(r, path[i], r);
        }
    }
    if (CRYPTO_memcmp(r, root, PROTO_DIGEST_BYTES) != 0) {
        return TB_ERR_MISMATCH;
    }
    return 0;
}
