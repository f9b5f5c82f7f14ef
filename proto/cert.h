/* Certified commands: a result leaf, its Merkle path to the batch's results
 * root, and a quorum (q = ceil((n+f+1)/2), which is 2f+1 when n = 3f+1) of
 * Ed25519 signatures from distinct members over the same
 * ResultRoot (cluster id, epoch, seq, root, consensus time, leaf count). Verification
 * needs OpenSSL and the trust anchors only, so it runs on a device. */
#ifndef PROTO_CERT_H
#define PROTO_CERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/crypto.h"
#include "proto/twinbft.pb-c.h"

enum {
    PROTO_MEMBERS_MAX = 64,
    PROTO_CLUSTER_ID_BYTES_MAX = 64,
    /* A packed Certificate: a result (consensus/ caps those at 64 KiB), its
     * path and at most PROTO_MEMBERS_MAX signatures, with room to spare. */
    PROTO_CERT_BYTES_MAX = 1u << 20,
    /* Replies one assembly considers: a few per member (retransmissions,
     * equivocation) at most; grouping them is quadratic. */
    PROTO_CERT_REPLIES_MAX = 4 * PROTO_MEMBERS_MAX,
};

/* What an actuator trusts: one epoch's member keys. A trust with n outside
 * 1..PROTO_MEMBERS_MAX, 3f+1 > n, or a cluster id longer than its maximum is
 * rejected with TB_ERR_INVALID. A NULL key makes that member's signatures
 * count for nothing. */
typedef struct proto_trust {
    uint8_t cluster_id[PROTO_CLUSTER_ID_BYTES_MAX];
    size_t cluster_id_len;
    uint64_t epoch;
    uint32_t n; /* members 0..n-1 */
    uint32_t f; /* (n - 1) / 3 */
    proto_pubkey *keys[PROTO_MEMBERS_MAX];
} proto_trust;

/* What a verified certificate says. Strings point into `owner`; free with
 * proto_cert_info_clear. */
typedef struct proto_cert_info {
    uint64_t seq;
    uint32_t index; /* the result's position in its batch ... */
    uint32_t count; /* ... of this many (both signed, see above) */
    uint64_t timestamp_ms;
    uint64_t not_before_ms;
    uint64_t expires_at_ms;
    uint64_t number;
    char *client;
    uint8_t *result;
    size_t result_len;
    void *owner;
} proto_cert_info;
void proto_cert_info_clear(proto_cert_info *info);

/* Builds a packed Certificate (malloc'd, *out) from replies that agree on
 * (seq, leaf, index, count, path, root body); uses the first q distinct valid
 * signers (signatures checked through proto_verify_body_cached) and ignores
 * the rest. A reply counts only when its root is signed
 * by its own replica, and a group only when its root body is a ResultRoot of
 * this cluster and epoch at the reply's seq and its path proves the leaf.
 * Signatures are sorted by signer id, so the same replies give the same
 * bytes. TB_ERR_QUORUM when fewer than q agree; TB_ERR_TOO_LARGE when n
 * exceeds PROTO_CERT_REPLIES_MAX or the result PROTO_CERT_BYTES_MAX. */
int proto_cert_assemble(const proto_trust *t, const Twinbft__Reply *const *replies, size_t n,
                        uint8_t **out, size_t *out_len);

/* True iff r can count towards a certificate: its root is signed by its own
 * replica, a member of t with a key, and the signature is valid (checked
 * through the per-thread cache of proto_verify_body_cached). */
bool proto_reply_signature_ok(const proto_trust *t, const Twinbft__Reply *r);

/* proto_cert_assemble for replies whose signatures the caller has already
 * found valid with proto_reply_signature_ok (and only those): every other
 * check is made, of the replies and then of the packed certificate as
 * proto_cert_verify makes them (decoding, cluster, epoch, path, leaf, q
 * distinct members), but no signature is verified again. Fills *info (when
 * non-NULL) as proto_cert_verify does. On error *out is NULL, *info zeroed.
 * Replies from anywhere else must go through proto_cert_assemble. */
int proto_cert_assemble_checked(const proto_trust *t, const Twinbft__Reply *const *replies,
                                size_t n, uint8_t **out, size_t *out_len, proto_cert_info *info);

/* Verifies a packed Certificate. now_ms == 0 skips the validity-window
 * check (not_before_ms <= now_ms < expires_at_ms). Signatures by unknown
 * signer ids, invalid signatures and repeated signers count for nothing but
 * are not errors in themselves. On success fills *info (when non-NULL); on
 * error *info is zeroed. Signatures this thread already found valid are
 * not verified again (proto_verify_body_cached). Thread-safe for a shared
 * trust. Errors: TB_ERR_INVALID
 * (malformed), TB_ERR_MISMATCH (cluster, epoch, path or root), TB_ERR_QUORUM
 * (fewer than q distinct valid member signatures), TB_ERR_EXPIRED. */
int proto_cert_verify(const proto_trust *t, const uint8_t *cert, size_t len, uint64_t now_ms,
                      proto_cert_info *info);

#endif
