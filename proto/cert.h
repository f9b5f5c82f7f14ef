/* Certified commands: a result leaf, its Merkle path to the batch's results
 * root, and a quorum of Ed25519 signatures from distinct members over the
 * same ResultRoot (cluster id, epoch, seq, root, consensus time, leaf
 * count). Verification needs SHA-256, Ed25519 and the trust anchors only,
 * so it runs on a device.
 *
 * HOW TO VERIFY A CERTIFICATE (what proto_cert_verify does, in this order;
 * enough to write an independent verifier; messages are in
 * proto/twinbft.proto, proto3 encoding).
 *
 * Trust anchors, for one epoch: the cluster id (bytes, at most
 * PROTO_CLUSTER_ID_BYTES_MAX; the cluster file's [cluster] id), the epoch
 * number, and the n members' raw Ed25519 public keys in member order
 * (member j is the cluster file's [replica j], whose X.509 certificate
 * holds the key and names it "replica-j"), 1 <= n <= PROTO_MEMBERS_MAX.
 * f = floor((n - 1) / 3) and q = floor((n + f + 2) / 2), i.e.
 * ceil((n + f + 1) / 2): 2f+1 when n = 3f+1 (n = 1: 1, 4: 3, 5: 4, 7: 5).
 * Any two sets of q members share f+1, so at least one correct member
 * vouches for both. Using a smaller f than the cluster's lowers q and is
 * unsafe.
 *
 *  1. Size and form. 1..PROTO_CERT_BYTES_MAX bytes that decode as a
 *     Certificate with at most PROTO_MEMBERS_MAX `signatures` entries.
 *     Otherwise: malformed (TB_ERR_INVALID).
 *  2. The signed root. `root_body` is 1..PROTO_ROOT_BODY_BYTES_MAX bytes
 *     that decode as a Body whose `result_root` is set, with a `root` of
 *     exactly 32 bytes (else malformed). Its `cluster_id` must equal the
 *     anchors' id byte for byte (same length) and its `epoch` the anchors'
 *     epoch (else TB_ERR_MISMATCH). Its `count`, the number of leaves in
 *     the batch, is 1..PROTO_MERKLE_LEAVES_MAX (2^20; else malformed).
 *  3. The position. Certificate.count must equal ResultRoot.count (else
 *     TB_ERR_MISMATCH), and Certificate.index must be below it (else
 *     malformed). Both are then as good as signed: the count is, and the
 *     path proves the index under it (4).
 *  4. The path (RFC 6962 tree, RFC 9162 2.1.3 proof; proto/merkle.h). The
 *     leaf hash is SHA-256(0x00 || leaf), an interior node's
 *     SHA-256(0x01 || left || right), and a tree of m > 1 leaves splits
 *     after the largest power of two k < m. Walking from the root down to
 *     leaf `index` of `count` gives, level by level, on which side the
 *     sibling lies (left when the leaf is in the right part, i.e. index >=
 *     k; then index -= k, m -= k; else m = k), and so the exact path length
 *     L = proto_merkle_path_len(index, count). `path` lists the siblings
 *     from the leaf up. More than PROTO_MERKLE_DEPTH_MAX (32) entries, or an
 *     entry that is not 32 bytes: malformed. Any number of entries but L,
 *     or a fold (from the leaf hash, each sibling on its derived side)
 *     that does not give ResultRoot.root: TB_ERR_MISMATCH. Never take the
 *     sides from the path, nor the count from anything unsigned: the path
 *     of leaf 10 of 11 also proves 3 of 4, 5 of 6, ... 96 of 97.
 *  5. The leaf. `leaf` (the exact bytes hashed in 4) decodes as a
 *     ResultLeaf (else malformed).
 *  6. Signatures. A CertSignature counts when its `signer` is a member id
 *     below n whose key the anchors hold, it is the first counted one of
 *     that signer, and its `signature` is 64 bytes and a valid Ed25519
 *     (RFC 8032, pure, not Ed25519ph) signature by that member's key of
 *     the 32-byte message SHA-256("twinbft/v1/signed" || 0x00 ||
 *     root_body), over root_body exactly as carried (proto/crypto.h).
 *     Unknown signers, bad or short signatures and repeats count for
 *     nothing and are not errors; order does not matter (assembly sorts
 *     by signer). Fewer than q counted: TB_ERR_QUORUM.
 *  7. The validity window, when the caller gives a time now_ms (ms since
 *     the Unix epoch): the leaf's not_before_ms <= now_ms < expires_at_ms,
 *     else TB_ERR_EXPIRED. Both come from consensus time, the primary's
 *     clock as checked by the backups; allow for skew.
 * Decode exactly the bytes that are hashed and signed, never a
 * re-encoding. A quorum signed root_body, so a correct replica packed it
 * and the leaves under its root: their encoding is canonical.
 *
 * What a verified certificate says: the leaf (the client's principal name
 * and request number, the result, the window) is what the cluster decided
 * at sequence number ResultRoot.seq, position index of count in that
 * batch, at consensus time ResultRoot.timestamp_ms. What it does not say,
 * and an actuator checks itself: that the result is an approval addressed
 * to it (the SmResult inside the leaf: a certified denial is genuine but
 * is not a command), and that it is new: (seq, index) is unique within an
 * epoch and grows with the order of decisions, so an actuator that keeps
 * the last (seq, index) it acted on can refuse replays and older commands.
 * The limits named here are this header's enum and proto/merkle.h's. */
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
    /* A packed Body holding a ResultRoot is about 150 bytes; anything much
     * larger is not one and is refused before it is parsed. */
    PROTO_ROOT_BODY_BYTES_MAX = 1024,
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
 * this cluster and epoch at the reply's seq and the claim passes steps 2-4
 * of the rules above (the signed count, the leaf at its index).
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

/* Verifies a packed Certificate by the rules at the top of this file.
 * now_ms == 0 skips the validity window (step 7). On success fills *info
 * (when non-NULL); on error *info is zeroed. Signatures this thread already
 * found valid are not verified again (proto_verify_body_cached).
 * Thread-safe for a shared trust. Errors: TB_ERR_INVALID (malformed, or a
 * malformed trust), TB_ERR_MISMATCH (cluster, epoch, position, path or
 * root), TB_ERR_QUORUM (fewer than q distinct valid member signatures),
 * TB_ERR_EXPIRED (only ever of a certificate that is otherwise valid). */
int proto_cert_verify(const proto_trust *t, const uint8_t *cert, size_t len, uint64_t now_ms,
                      proto_cert_info *info);

#endif
