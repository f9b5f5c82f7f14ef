/* Binary Merkle trees over result leaves (RFC 6962 shape: leaf hash is
 * SHA-256(0x00 || leaf), interior SHA-256(0x01 || left || right), a tree of n
 * leaves splits at the largest power of two below n). */
#ifndef PROTO_MERKLE_H
#define PROTO_MERKLE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/crypto.h"

enum { PROTO_MERKLE_DEPTH_MAX = 32, PROTO_MERKLE_LEAVES_MAX = 1u << 20 };

void proto_merkle_leaf_hash(const uint8_t *leaf, size_t len, uint8_t out[PROTO_DIGEST_BYTES]);

/* A built tree: all levels kept so every inclusion path is O(log n). */
typedef struct proto_merkle proto_merkle;
/* n in 1..PROTO_MERKLE_LEAVES_MAX; leaf_hashes are copied. */
int proto_merkle_build(const uint8_t (*leaf_hashes)[PROTO_DIGEST_BYTES], size_t n,
                       proto_merkle **out);
void proto_merkle_root(const proto_merkle *t, uint8_t root[PROTO_DIGEST_BYTES]);
/* Inclusion path of leaf index, leaf to root, into path (room for
 * PROTO_MERKLE_DEPTH_MAX hashes); *path_len <= PROTO_MERKLE_DEPTH_MAX.
 * TB_ERR_INVALID when index >= n. */
int proto_merkle_path(const proto_merkle *t, size_t index, uint8_t (*path)[PROTO_DIGEST_BYTES],
                      size_t *path_len);
void proto_merkle_free(proto_merkle *t);

/* How many hashes the inclusion path of leaf `index` in an n-leaf tree has:
 * its depth in the RFC 6962 tree. n in 1..PROTO_MERKLE_LEAVES_MAX, index < n
 * (asserted). */
size_t proto_merkle_path_len(size_t index, size_t n);

/* 0 iff the path proves leaf_hash is leaf `index` of an n-leaf tree with
 * `root` (RFC 9162 2.1.3.2). Which side each path hash goes on is derived
 * from (index, n) alone, and the path must have exactly
 * proto_merkle_path_len(index, n) hashes. TB_ERR_INVALID when n is 0 or
 * above the maximum, index >= n or path_len > PROTO_MERKLE_DEPTH_MAX;
 * TB_ERR_MISMATCH otherwise.
 *
 * What this proves about the position: the leaf/node prefixes mean no path
 * leads from a non-leaf to the root, and with n fixed every other index
 * takes other sides or another length, so it verifies only when two leaves
 * of the tree are equal or SHA-256 collides. But n is not in the proof: a
 * path of "leaf 10 of 11" (two hashes, both on the left) also verifies as
 * 3 of 4, 5 of 6, ... 96 of 97. A caller that reports the position must
 * take n from something authenticated (proto/cert.h: the signed count). */
int proto_merkle_verify(const uint8_t leaf_hash[PROTO_DIGEST_BYTES], size_t index, size_t n,
                        const uint8_t (*path)[PROTO_DIGEST_BYTES], size_t path_len,
                        const uint8_t root[PROTO_DIGEST_BYTES]);

#endif
