/* Proves certificates assemble from q agreeing signed replies and verify only when genuine. */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/cert.h"
#include "proto/merkle.h"
#include "proto/tb_err.h"
#include "twinbft/twinbft.h"
#include "guard_page.h"

enum {
    LEAVES = 5,
    LEAF_INDEX = 2,
    SEQ = 42,
    EPOCH = 3,
    TIMESTAMP_MS = 900,
    NOT_BEFORE_MS = 1000,
    EXPIRES_AT_MS = 2000,
    NOW_MS = 1500,
    SIGNERS_MAX = 80,
};

static const char cluster[] = "plant-7";

/* One batch's results signed by every member of an n-member trust. */
static struct fixture {
    uint32_t n;
    proto_key *keys[PROTO_MEMBERS_MAX];
    proto_trust trust;
    uint8_t leaf[LEAVES][64];
    size_t leaf_len[LEAVES];
    uint8_t path[PROTO_MERKLE_DEPTH_MAX][PROTO_DIGEST_BYTES];
    ProtobufCBinaryData path_bd[PROTO_MERKLE_DEPTH_MAX];
    size_t path_len;
    uint8_t root[PROTO_DIGEST_BYTES];
    uint8_t body[256];
    size_t body_len;
    uint8_t sig[PROTO_MEMBERS_MAX][PROTO_SIG_BYTES];
    Twinbft__Signed signed_root[PROTO_MEMBERS_MAX];
    Twinbft__Reply reply[PROTO_MEMBERS_MAX];
} fx;

static size_t pack_leaf(size_t i, uint8_t *out) {
    char client[16], result[16];
    Twinbft__ResultLeaf leaf = TWINBFT__RESULT_LEAF__INIT;
    snprintf(client, sizeof client, "client-%zu", i);
    snprintf(result, sizeof result, "result-%zu", i);
    leaf.client = client;
    leaf.number = 100 + i;
    leaf.result.data = (uint8_t *)result;
    leaf.result.len = strlen(result);
    leaf.not_before_ms = NOT_BEFORE_MS;
    leaf.expires_at_ms = EXPIRES_AT_MS;
    ck_assert_uint_le(twinbft__result_leaf__get_packed_size(&leaf), 64);
    return twinbft__result_leaf__pack(&leaf, out);
}

/* Packs Body{ResultRoot{...}} for a tree of `count` leaves into out (256 bytes). */
static size_t pack_root_body(const char *cluster_id, uint64_t epoch, uint64_t seq,
                             const uint8_t root[PROTO_DIGEST_BYTES], uint32_t count, uint8_t *out) {
    Twinbft__ResultRoot rr = TWINBFT__RESULT_ROOT__INIT;
    Twinbft__Body body = TWINBFT__BODY__INIT;
    rr.cluster_id.data = (uint8_t *)cluster_id;
    rr.cluster_id.len = strlen(cluster_id);
    rr.epoch = epoch;
    rr.seq = seq;
    rr.root.data = (uint8_t *)root;
    rr.root.len = PROTO_DIGEST_BYTES;
    rr.timestamp_ms = TIMESTAMP_MS;
    rr.count = count;
    body.kind_case = TWINBFT__BODY__KIND_RESULT_ROOT;
    body.result_root = &rr;
    ck_assert_uint_le(twinbft__body__get_packed_size(&body), 256);
    return twinbft__body__pack(&body, out);
}

static void fx_tree(void) {
    uint8_t hashes[LEAVES][PROTO_DIGEST_BYTES];
    proto_merkle *t = NULL;
    for (size_t i = 0; i < LEAVES; i++) {
        fx.leaf_len[i] = pack_leaf(i, fx.leaf[i]);
        proto_merkle_leaf_hash(fx.leaf[i], fx.leaf_len[i], hashes[i]);
    }
    ck_assert_int_eq(proto_merkle_build((const uint8_t(*)[PROTO_DIGEST_BYTES])hashes, LEAVES, &t),
                     0);
    proto_merkle_root(t, fx.root);
    ck_assert_int_eq(proto_merkle_path(t, LEAF_INDEX, fx.path, &fx.path_len), 0);
    proto_merkle_free(t);
    for (size_t i = 0; i < fx.path_len; i++) {
        fx.path_bd[i].data = fx.path[i];
        fx.path_bd[i].len = PROTO_DIGEST_BYTES;
    }
}

static void fx_member(uint32_t i) {
    uint8_t seed[PROTO_SEED_BYTES], pub[PROTO_PUBKEY_BYTES];
    memset(seed, 0, sizeof seed);
    seed[0] = (uint8_t)(i + 1);
    ck_assert_int_eq(proto_key_from_seed(seed, &fx.keys[i]), 0);
    ck_assert_int_eq(proto_key_public(fx.keys[i], pub), 0);
    ck_assert_int_eq(proto_pubkey_from_raw(pub, &fx.trust.keys[i]), 0);
    ck_assert_int_eq(proto_sign_body(fx.keys[i], fx.body, fx.body_len, fx.sig[i]), 0);
    fx.signed_root[i] = (Twinbft__Signed)TWINBFT__SIGNED__INIT;
    fx.signed_root[i].body.data = fx.body;
    fx.signed_root[i].body.len = fx.body_len;
    fx.signed_root[i].signer = i;
    fx.signed_root[i].signature.data = fx.sig[i];
    fx.signed_root[i].signature.len = PROTO_SIG_BYTES;
    fx.reply[i] = (Twinbft__Reply)TWINBFT__REPLY__INIT;
    fx.reply[i].replica = i;
    fx.reply[i].seq = SEQ;
    fx.reply[i].leaf.data = fx.leaf[LEAF_INDEX];
    fx.reply[i].leaf.len = fx.leaf_len[LEAF_INDEX];
    fx.reply[i].index = LEAF_INDEX;
    fx.reply[i].count = LEAVES;
    fx.reply[i].n_path = fx.path_len;
    fx.reply[i].path = fx.path_bd;
    fx.reply[i].root = &fx.signed_root[i];
}

static void fx_init(uint32_t n) {
    memset(&fx, 0, sizeof fx);
    fx.n = n;
    memcpy(fx.trust.cluster_id, cluster, strlen(cluster));
    fx.trust.cluster_id_len = strlen(cluster);
    fx.trust.epoch = EPOCH;
    fx.trust.n = n;
    fx.trust.f = (n - 1) / 3;
    fx_tree();
    fx.body_len = pack_root_body(cluster, EPOCH, SEQ, fx.root, LEAVES, fx.body);
    for (uint32_t i = 0; i < n; i++) {
        fx_member(i);
    }
}

static void setup4(void) {
    fx_init(4);
}

static void setup5(void) {
    fx_init(5);
}

static void teardown(void) {
    for (uint32_t i = 0; i < fx.n; i++) {
        proto_key_free(fx.keys[i]);
        proto_pubkey_free(fx.trust.keys[i]);
    }
}

/* Assembles from the replies of the listed replicas. */
static int assemble(const proto_trust *t, const uint32_t *ids, size_t n, uint8_t **out,
                    size_t *out_len) {
    const Twinbft__Reply *replies[SIGNERS_MAX];
    for (size_t i = 0; i < n; i++) {
        replies[i] = &fx.reply[ids[i]];
    }
    return proto_cert_assemble(t, replies, n, out, out_len);
}

/* A certificate made field by field, to say things assemble never would. */
typedef struct cert_parts {
    ProtobufCBinaryData leaf;
    uint32_t index;
    uint32_t count;
    size_t n_path;
    ProtobufCBinaryData *path;
    ProtobufCBinaryData body;
    uint32_t signers[SIGNERS_MAX];
    size_t n_signers;
    uint64_t bad; /* bit i set: signature i is corrupted */
} cert_parts;

static cert_parts parts_genuine(size_t n_signers) {
    cert_parts p = {
        .leaf = {fx.leaf_len[LEAF_INDEX], fx.leaf[LEAF_INDEX]},
        .index = LEAF_INDEX,
        .count = LEAVES,
        .n_path = fx.path_len,
        .path = fx.path_bd,
        .body = {fx.body_len, fx.body},
        .n_signers = n_signers,
    };
    for (size_t i = 0; i < n_signers; i++) {
        p.signers[i] = (uint32_t)i;
    }
    return p;
}

/* Signs p->body with each listed signer's key (or junk for ids without a key). */
static uint8_t *cert_build(const cert_parts *p, size_t *len) {
    static uint8_t sigs[SIGNERS_MAX][PROTO_SIG_BYTES];
    Twinbft__CertSignature cs[SIGNERS_MAX], *csp[SIGNERS_MAX];
    Twinbft__Certificate c = TWINBFT__CERTIFICATE__INIT;
    for (size_t i = 0; i < p->n_signers; i++) {
        uint32_t s = p->signers[i];
        if (s < fx.n) {
            ck_assert_int_eq(proto_sign_body(fx.keys[s], p->body.data, p->body.len, sigs[i]), 0);
        } else {
            memset(sigs[i], 0x33, PROTO_SIG_BYTES);
        }
        if (i < 64 && ((p->bad >> i) & 1)) {
            sigs[i][10] ^= 0x04;
        }
        cs[i] = (Twinbft__CertSignature)TWINBFT__CERT_SIGNATURE__INIT;
        cs[i].signer = s;
        cs[i].signature.data = sigs[i];
        cs[i].signature.len = PROTO_SIG_BYTES;
        csp[i] = &cs[i];
    }
    c.leaf = p->leaf;
    c.index = p->index;
    c.count = p->count;
    c.n_path = p->n_path;
    c.path = p->path;
    c.root_body = p->body;
    c.n_signatures = p->n_signers;
    c.signatures = csp;
    *len = twinbft__certificate__get_packed_size(&c);
    uint8_t *buf = malloc(*len);
    ck_assert_ptr_nonnull(buf);
    twinbft__certificate__pack(&c, buf);
    return buf;
}

static int verify_parts(const proto_trust *t, const cert_parts *p, uint64_t now_ms) {
    size_t len = 0;
    uint8_t *buf = cert_build(p, &len);
    int rc = proto_cert_verify(t, buf, len, now_ms, NULL);
    free(buf);
    return rc;
}

static void assert_genuine_info(const proto_cert_info *info) {
    ck_assert_uint_eq(info->seq, SEQ);
    ck_assert_uint_eq(info->index, LEAF_INDEX);
    ck_assert_uint_eq(info->count, LEAVES);
    ck_assert_uint_eq(info->timestamp_ms, TIMESTAMP_MS);
    ck_assert_uint_eq(info->not_before_ms, NOT_BEFORE_MS);
    ck_assert_uint_eq(info->expires_at_ms, EXPIRES_AT_MS);
    ck_assert_uint_eq(info->number, 100 + LEAF_INDEX);
    ck_assert_str_eq(info->client, "client-2");
    ck_assert_uint_eq(info->result_len, strlen("result-2"));
    ck_assert_mem_eq(info->result, "result-2", info->result_len);
}

START_TEST(test_assemble_then_verify) {
    static const uint32_t ids[] = {0, 1, 2, 3};
    uint8_t *cert = NULL;
    size_t len = 0;
    proto_cert_info info;
    ck_assert_int_eq(assemble(&fx.trust, ids, 4, &cert, &len), 0);
    ck_assert_int_eq(proto_cert_verify(&fx.trust, cert, len, NOW_MS, &info), 0);
    assert_genuine_info(&info);
    proto_cert_info_clear(&info);
    ck_assert_ptr_null(info.owner);
    ck_assert_int_eq(proto_cert_verify(&fx.trust, cert, len, 0, NULL), 0);
    /* Exactly q = 3 signatures, the first three replies', by signer id. */
    Twinbft__Certificate *c = twinbft__certificate__unpack(NULL, len, cert);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->n_signatures, 3);
    for (uint32_t i = 0; i < 3; i++) {
        ck_assert_uint_eq(c->signatures[i]->signer, i);
    }
    twinbft__certificate__free_unpacked(c, NULL);
    free(cert);
}
END_TEST

static uint64_t cache_misses(void) {
    uint64_t hits = 0, misses = 0;
    proto_verified_cache_stats(&hits, &misses);
    return misses;
}

/* The client's path: each reply's signature checked once, then a certificate
 * built from the good ones without verifying them again, yet with every
 * other check; what it says is what proto_cert_verify says, and verifying it
 * afterwards in the same thread costs no verification either. A reply with
 * a bad signature is refused every time it is checked. */
START_TEST(test_checked_assembly_verifies_each_signature_once) {
    const Twinbft__Reply *good[PROTO_MEMBERS_MAX];
    size_t n = 0;
    uint8_t *cert = NULL;
    size_t len = 0;
    proto_cert_info info, again;
    proto_verified_cache_clear();
    fx.sig[1][5] ^= 0x01;
    uint64_t m0 = cache_misses();
    for (uint32_t i = 0; i < 4; i++) {
        if (proto_reply_signature_ok(&fx.trust, &fx.reply[i])) {
            good[n++] = &fx.reply[i];
        }
    }
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(cache_misses(), m0 + 4);
    ck_assert(!proto_reply_signature_ok(&fx.trust, &fx.reply[1]));
    ck_assert_uint_eq(cache_misses(), m0 + 5); /* never remembered as good */
    ck_assert_int_eq(proto_cert_assemble_checked(&fx.trust, good, n, &cert, &len, &info), 0);
    ck_assert_uint_eq(cache_misses(), m0 + 5);
    assert_genuine_info(&info);
    ck_assert_int_eq(proto_cert_verify(&fx.trust, cert, len, NOW_MS, &again), 0);
    ck_assert_uint_eq(cache_misses(), m0 + 5);
    ck_assert_uint_eq(again.seq, info.seq);
    ck_assert_str_eq(again.client, info.client);
    proto_cert_info_clear(&info);
    proto_cert_info_clear(&again);
    free(cert);
    /* Structure is still checked: a claim its path does not prove is refused. */
    uint8_t saved = fx.path[0][0];
    fx.path[0][0] ^= 1;
    ck_assert_int_ne(proto_cert_assemble_checked(&fx.trust, good, n, &cert, &len, &info), 0);
    ck_assert_ptr_null(cert);
    ck_assert_ptr_null(info.owner);
    fx.path[0][0] = saved;
}
END_TEST

/* A signature cached as valid under one key never counts for another key at
 * the same signer index (another cluster, or a member with a new key). */
START_TEST(test_cached_signature_needs_the_same_key) {
    static const uint32_t ids[] = {0, 1, 2};
    uint8_t *cert = NULL;
    size_t len = 0;
    ck_assert_int_eq(assemble(&fx.trust, ids, 3, &cert, &len), 0);
    ck_assert_int_eq(proto_cert_verify(&fx.trust, cert, len, NOW_MS, NULL), 0);
    proto_trust other = fx.trust;
    uint8_t seed[PROTO_SEED_BYTES] = {99}, pub[PROTO_PUBKEY_BYTES];
    proto_key *k = NULL;
    ck_assert_int_eq(proto_key_from_seed(seed, &k), 0);
    ck_assert_int_eq(proto_key_public(k, pub), 0);
    ck_assert_int_eq(proto_pubkey_from_raw(pub, &other.keys[0]), 0);
    ck_assert_int_eq(proto_cert_verify(&other, cert, len, NOW_MS, NULL), TB_ERR_QUORUM);
    ck_assert(!proto_reply_signature_ok(&other, &fx.reply[0]));
    ck_assert_int_eq(proto_cert_verify(&fx.trust, cert, len, NOW_MS, NULL), 0);
    proto_pubkey_free(other.keys[0]);
    proto_key_free(k);
    free(cert);
}
END_TEST

START_TEST(test_assembly_is_deterministic) {
    static const uint32_t in_order[] = {0, 1, 2, 3};
    static const uint32_t shuffled[] = {2, 0, 1, 3};
    uint8_t *a = NULL, *b = NULL;
    size_t a_len = 0, b_len = 0;
    ck_assert_int_eq(assemble(&fx.trust, in_order, 4, &a, &a_len), 0);
    ck_assert_int_eq(assemble(&fx.trust, shuffled, 4, &b, &b_len), 0);
    ck_assert_uint_eq(a_len, b_len);
    ck_assert_mem_eq(a, b, a_len);
    free(a);
    free(b);
}
END_TEST

/* No single-byte change turns a certificate into one that says something
 * else: it either fails or says exactly what the original said. */
START_TEST(test_every_byte_flip_fails_or_says_the_same) {
    static const uint32_t ids[] = {0, 1, 2, 3};
    static const uint8_t masks[] = {0x01, 0x80, 0xff};
    uint8_t *cert = NULL;
    size_t len = 0;
    size_t accepted = 0;
    ck_assert_int_eq(assemble(&fx.trust, ids, 4, &cert, &len), 0);
    for (size_t i = 0; i < len; i++) {
        for (size_t m = 0; m < sizeof masks; m++) {
            proto_cert_info info;
            cert[i] ^= masks[m];
            int rc = proto_cert_verify(&fx.trust, cert, len, NOW_MS, &info);
            cert[i] ^= masks[m];
            if (rc == 0) {
                assert_genuine_info(&info);
                proto_cert_info_clear(&info);
                accepted++;
            } else {
                ck_assert(rc == TB_ERR_INVALID || rc == TB_ERR_MISMATCH || rc == TB_ERR_QUORUM ||
                          rc == TB_ERR_EXPIRED);
                ck_assert_ptr_null(info.owner);
            }
        }
    }
    /* Every field says something, the count too (it is checked against the
     * signed one): no flip at all is harmless. */
    ck_assert_uint_eq(accepted, 0);
    ck_assert_int_eq(proto_cert_verify(&fx.trust, cert, len, NOW_MS, NULL), 0);
    free(cert);
}
END_TEST

START_TEST(test_two_signers_are_not_a_quorum) {
    static const uint32_t ids[] = {0, 1};
    uint8_t *cert = (uint8_t *)&cert;
    size_t len = 9;
    ck_assert_int_eq(assemble(&fx.trust, ids, 2, &cert, &len), TB_ERR_QUORUM);
    ck_assert_ptr_null(cert);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(proto_cert_assemble(&fx.trust, NULL, 0, &cert, &len), TB_ERR_QUORUM);
    /* Too many replies to consider is refused outright, quorum or not. */
    const Twinbft__Reply *many[PROTO_CERT_REPLIES_MAX + 1];
    for (size_t i = 0; i <= PROTO_CERT_REPLIES_MAX; i++) {
        many[i] = &fx.reply[i % 4];
    }
    ck_assert_int_eq(proto_cert_assemble(&fx.trust, many, PROTO_CERT_REPLIES_MAX, &cert, &len), 0);
    free(cert);
    ck_assert_int_eq(proto_cert_assemble(&fx.trust, many, PROTO_CERT_REPLIES_MAX + 1, &cert, &len),
                     TB_ERR_TOO_LARGE);
    cert_parts p = parts_genuine(2);
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), TB_ERR_QUORUM);
    p = parts_genuine(3);
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), 0);
}
END_TEST

START_TEST(test_duplicate_signer_counts_once) {
    static const uint32_t twice[] = {0, 0, 1};
    static const uint32_t twice_plus[] = {0, 0, 1, 2};
    uint8_t *cert = NULL;
    size_t len = 0;
    ck_assert_int_eq(assemble(&fx.trust, twice, 3, &cert, &len), TB_ERR_QUORUM);
    ck_assert_int_eq(assemble(&fx.trust, twice_plus, 4, &cert, &len), 0);
    Twinbft__Certificate *c = twinbft__certificate__unpack(NULL, len, cert);
    ck_assert_uint_eq(c->n_signatures, 3);
    twinbft__certificate__free_unpacked(c, NULL);
    free(cert);

    cert_parts p = parts_genuine(0);
    p.signers[p.n_signers++] = 0;
    p.signers[p.n_signers++] = 0;
    p.signers[p.n_signers++] = 1;
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), TB_ERR_QUORUM);
    p.signers[p.n_signers++] = 2;
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), 0);
    /* The same member 64 times is still one member. */
    p = parts_genuine(0);
    for (size_t i = 0; i < PROTO_MEMBERS_MAX; i++) {
        p.signers[p.n_signers++] = 3;
    }
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), TB_ERR_QUORUM);
}
END_TEST

START_TEST(test_unknown_and_invalid_signatures_count_for_nothing) {
    cert_parts p = parts_genuine(2);
    p.signers[p.n_signers++] = 9; /* not a member: ignored, not fatal */
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), TB_ERR_QUORUM);
    p.signers[p.n_signers++] = 2;
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), 0);

    p = parts_genuine(3);
    p.bad = 1u << 0; /* member 0's signature corrupted */
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), TB_ERR_QUORUM);
    p.signers[p.n_signers++] = 3;
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), 0);

    /* A corrupted signature does not use up its member: a later good one counts. */
    p = parts_genuine(0);
    p.signers[p.n_signers++] = 0;
    p.signers[p.n_signers++] = 0;
    p.signers[p.n_signers++] = 1;
    p.signers[p.n_signers++] = 2;
    p.bad = 1u << 0;
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), 0);

    /* A member whose key the trust lacks signs for nothing. */
    proto_trust t = fx.trust;
    t.keys[2] = NULL;
    p = parts_genuine(3);
    ck_assert_int_eq(verify_parts(&t, &p, NOW_MS), TB_ERR_QUORUM);
}
END_TEST

START_TEST(test_wrong_cluster_or_epoch_is_a_mismatch) {
    static const uint32_t ids[] = {0, 1, 2, 3};
    uint8_t *cert = NULL;
    size_t len = 0;
    ck_assert_int_eq(assemble(&fx.trust, ids, 4, &cert, &len), 0);
    proto_trust t = fx.trust;
    t.cluster_id[6] = '8'; /* plant-8 */
    ck_assert_int_eq(proto_cert_verify(&t, cert, len, NOW_MS, NULL), TB_ERR_MISMATCH);
    uint8_t *other = NULL;
    size_t other_len = 0;
    ck_assert_int_eq(assemble(&t, ids, 4, &other, &other_len), TB_ERR_QUORUM);
    t = fx.trust;
    t.cluster_id_len--; /* plant- */
    ck_assert_int_eq(proto_cert_verify(&t, cert, len, NOW_MS, NULL), TB_ERR_MISMATCH);
    t = fx.trust;
    t.epoch = EPOCH + 1;
    ck_assert_int_eq(proto_cert_verify(&t, cert, len, NOW_MS, NULL), TB_ERR_MISMATCH);
    free(cert);

    /* Validly signed by the quorum, but for another cluster. */
    uint8_t body[256];
    cert_parts p = parts_genuine(3);
    p.body.data = body;
    p.body.len = pack_root_body("plant-9", EPOCH, SEQ, fx.root, LEAVES, body);
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), TB_ERR_MISMATCH);
}
END_TEST

START_TEST(test_validity_window) {
    static const uint32_t ids[] = {0, 1, 2, 3};
    uint8_t *cert = NULL;
    size_t len = 0;
    ck_assert_int_eq(assemble(&fx.trust, ids, 4, &cert, &len), 0);
    ck_assert_int_eq(proto_cert_verify(&fx.trust, cert, len, NOT_BEFORE_MS - 1, NULL),
                     TB_ERR_EXPIRED);
    ck_assert_int_eq(proto_cert_verify(&fx.trust, cert, len, NOT_BEFORE_MS, NULL), 0);
    ck_assert_int_eq(proto_cert_verify(&fx.trust, cert, len, EXPIRES_AT_MS - 1, NULL), 0);
    ck_assert_int_eq(proto_cert_verify(&fx.trust, cert, len, EXPIRES_AT_MS, NULL), TB_ERR_EXPIRED);
    ck_assert_int_eq(proto_cert_verify(&fx.trust, cert, len, 0, NULL), 0);
    free(cert);
    /* Expiry is only ever reported of a genuine certificate. */
    cert_parts p = parts_genuine(2);
    ck_assert_int_eq(verify_parts(&fx.trust, &p, EXPIRES_AT_MS + 1), TB_ERR_QUORUM);
}
END_TEST

START_TEST(test_five_members_need_four) {
    static const uint32_t three[] = {0, 1, 2};
    static const uint32_t four[] = {4, 0, 1, 2};
    uint8_t *cert = NULL;
    size_t len = 0;
    proto_cert_info info;
    ck_assert_uint_eq(fx.trust.f, 1);
    ck_assert_int_eq(assemble(&fx.trust, three, 3, &cert, &len), TB_ERR_QUORUM);
    ck_assert_int_eq(assemble(&fx.trust, four, 4, &cert, &len), 0);
    ck_assert_int_eq(proto_cert_verify(&fx.trust, cert, len, NOW_MS, &info), 0);
    assert_genuine_info(&info);
    proto_cert_info_clear(&info);
    Twinbft__Certificate *c = twinbft__certificate__unpack(NULL, len, cert);
    ck_assert_uint_eq(c->n_signatures, 4);
    twinbft__certificate__free_unpacked(c, NULL);
    free(cert);
    /* Three signatures make a certificate for four members, not for five. */
    proto_trust t4 = fx.trust;
    t4.n = 4;
    ck_assert_int_eq(assemble(&t4, three, 3, &cert, &len), 0);
    ck_assert_int_eq(proto_cert_verify(&t4, cert, len, NOW_MS, NULL), 0);
    ck_assert_int_eq(proto_cert_verify(&fx.trust, cert, len, NOW_MS, NULL), TB_ERR_QUORUM);
    free(cert);
}
END_TEST

START_TEST(test_disagreeing_replies_are_not_combined) {
    static const uint32_t ids[] = {0, 1, 2, 3};
    uint8_t *cert = NULL;
    size_t len = 0;
    /* Replicas 2 and 3 answer with another leaf of the same batch. */
    uint8_t hashes[LEAVES][PROTO_DIGEST_BYTES];
    uint8_t path3[PROTO_MERKLE_DEPTH_MAX][PROTO_DIGEST_BYTES];
    ProtobufCBinaryData path3_bd[PROTO_MERKLE_DEPTH_MAX];
    size_t path3_len = 0;
    proto_merkle *tree = NULL;
    for (size_t i = 0; i < LEAVES; i++) {
        proto_merkle_leaf_hash(fx.leaf[i], fx.leaf_len[i], hashes[i]);
    }
    ck_assert_int_eq(
        proto_merkle_build((const uint8_t(*)[PROTO_DIGEST_BYTES])hashes, LEAVES, &tree), 0);
    ck_assert_int_eq(proto_merkle_path(tree, 3, path3, &path3_len), 0);
    proto_merkle_free(tree);
    for (size_t i = 0; i < path3_len; i++) {
        path3_bd[i] = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, path3[i]};
    }
    for (uint32_t r = 2; r < 4; r++) {
        fx.reply[r].leaf = (ProtobufCBinaryData){fx.leaf_len[3], fx.leaf[3]};
        fx.reply[r].index = 3;
        fx.reply[r].n_path = path3_len;
        fx.reply[r].path = path3_bd;
    }
    ck_assert_int_eq(assemble(&fx.trust, ids, 4, &cert, &len), TB_ERR_QUORUM);
    /* Once replica 2 agrees with 0 and 1, they form a quorum without 3. */
    fx.reply[2] = fx.reply[0];
    fx.reply[2].replica = 2;
    fx.reply[2].root = &fx.signed_root[2];
    ck_assert_int_eq(assemble(&fx.trust, ids, 4, &cert, &len), 0);
    ck_assert_int_eq(proto_cert_verify(&fx.trust, cert, len, NOW_MS, NULL), 0);
    free(cert);
}
END_TEST

START_TEST(test_reply_must_be_signed_by_its_replica) {
    static const uint32_t ids[] = {0, 1, 2};
    uint8_t *cert = NULL;
    size_t len = 0;
    /* Replica 2 passes off replica 3's signature as its own. */
    fx.reply[2].root = &fx.signed_root[3];
    ck_assert_int_eq(assemble(&fx.trust, ids, 3, &cert, &len), TB_ERR_QUORUM);
    /* Or claims to be signer 2 with replica 3's signature bytes. */
    Twinbft__Signed forged = fx.signed_root[3];
    forged.signer = 2;
    fx.reply[2].root = &forged;
    ck_assert_int_eq(assemble(&fx.trust, ids, 3, &cert, &len), TB_ERR_QUORUM);
    fx.reply[2].root = NULL;
    ck_assert_int_eq(assemble(&fx.trust, ids, 3, &cert, &len), TB_ERR_QUORUM);
    /* The genuine fourth reply still completes a quorum. */
    static const uint32_t with3[] = {0, 1, 2, 3};
    ck_assert_int_eq(assemble(&fx.trust, with3, 4, &cert, &len), 0);
    free(cert);
}
END_TEST

START_TEST(test_reply_with_bad_signature_is_skipped) {
    static const uint32_t ids[] = {0, 1, 2, 3};
    uint8_t *cert = NULL;
    size_t len = 0;
    fx.sig[1][0] ^= 0x01;
    ck_assert_int_eq(assemble(&fx.trust, ids, 4, &cert, &len), 0);
    Twinbft__Certificate *c = twinbft__certificate__unpack(NULL, len, cert);
    ck_assert_uint_eq(c->n_signatures, 3);
    ck_assert_uint_eq(c->signatures[0]->signer, 0);
    ck_assert_uint_eq(c->signatures[1]->signer, 2);
    ck_assert_uint_eq(c->signatures[2]->signer, 3);
    twinbft__certificate__free_unpacked(c, NULL);
    ck_assert_int_eq(proto_cert_verify(&fx.trust, cert, len, NOW_MS, NULL), 0);
    free(cert);
}
END_TEST

START_TEST(test_replies_with_bad_path_are_not_certified) {
    static const uint32_t ids[] = {0, 1, 2, 3};
    uint8_t *cert = NULL;
    size_t len = 0;
    fx.path[0][5] ^= 0x20; /* shared by every reply */
    ck_assert_int_eq(assemble(&fx.trust, ids, 4, &cert, &len), TB_ERR_QUORUM);
    fx.path[0][5] ^= 0x20;
    ck_assert_int_eq(assemble(&fx.trust, ids, 4, &cert, &len), 0);
    free(cert);
}
END_TEST

START_TEST(test_reply_seq_must_match_signed_seq) {
    static const uint32_t ids[] = {0, 1, 2, 3};
    uint8_t *cert = NULL;
    size_t len = 0;
    for (uint32_t r = 0; r < 4; r++) {
        fx.reply[r].seq = SEQ + 1;
    }
    ck_assert_int_eq(assemble(&fx.trust, ids, 4, &cert, &len), TB_ERR_QUORUM);
}
END_TEST

START_TEST(test_malformed_certificates_are_invalid) {
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    ck_assert_int_eq(proto_cert_verify(&fx.trust, NULL, 0, NOW_MS, NULL), TB_ERR_INVALID);
    ck_assert_int_eq(proto_cert_verify(&fx.trust, junk, 0, NOW_MS, NULL), TB_ERR_INVALID);
    ck_assert_int_eq(proto_cert_verify(&fx.trust, junk, sizeof junk, NOW_MS, NULL), TB_ERR_INVALID);
    /* Refused on length alone: a genuine certificate followed by an
     * unreadable page, passed with a length above the maximum. */
    static const uint32_t ids[] = {0, 1, 2, 3};
    uint8_t *cert = NULL;
    size_t len = 0;
    ck_assert_int_eq(assemble(&fx.trust, ids, 4, &cert, &len), 0);
    uint8_t *guarded = guard_copy(cert, len);
    ck_assert_int_eq(proto_cert_verify(&fx.trust, guarded, len, NOW_MS, NULL), 0);
    ck_assert_int_eq(proto_cert_verify(&fx.trust, guarded, PROTO_CERT_BYTES_MAX + 1, NOW_MS, NULL),
                     TB_ERR_INVALID);
    guard_free(guarded, len);
    free(cert);
    /* More signatures than there can be members. */
    cert_parts p = parts_genuine(3);
    while (p.n_signers <= PROTO_MEMBERS_MAX) {
        p.signers[p.n_signers++] = 9;
    }
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), TB_ERR_INVALID);
    /* A quorum-signed body that is not a ResultRoot. */
    uint8_t body[64];
    Twinbft__Prepare prep = TWINBFT__PREPARE__INIT;
    Twinbft__Body b = TWINBFT__BODY__INIT;
    prep.seq = SEQ;
    b.kind_case = TWINBFT__BODY__KIND_PREPARE;
    b.prepare = &prep;
    p = parts_genuine(3);
    p.body = (ProtobufCBinaryData){twinbft__body__pack(&b, body), body};
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), TB_ERR_INVALID);
    /* A path entry of the wrong size. */
    p = parts_genuine(3);
    fx.path_bd[0].len = PROTO_DIGEST_BYTES - 1;
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), TB_ERR_INVALID);
    fx.path_bd[0].len = PROTO_DIGEST_BYTES;
    /* A malformed trust. */
    proto_trust t = fx.trust;
    t.f = 2; /* needs n >= 7 */
    p = parts_genuine(3);
    ck_assert_int_eq(verify_parts(&t, &p, NOW_MS), TB_ERR_INVALID);
}
END_TEST

/* A leaf proven by a quorum must still parse as a ResultLeaf. */
START_TEST(test_unparsable_leaf_is_invalid) {
    static uint8_t leaf[] = {0xff, 0xff, 0xff};
    uint8_t root[PROTO_DIGEST_BYTES];
    uint8_t body[256];
    proto_merkle_leaf_hash(leaf, sizeof leaf, root); /* a one-leaf tree */
    cert_parts p = parts_genuine(3);
    p.leaf = (ProtobufCBinaryData){sizeof leaf, leaf};
    p.index = 0;
    p.count = 1;
    p.n_path = 0;
    p.body = (ProtobufCBinaryData){pack_root_body(cluster, EPOCH, SEQ, root, 1, body), body};
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), TB_ERR_INVALID);
}
END_TEST

/* ---- the position: index and count ---- */

enum { BIG_LEAVES = 11, BIG_INDEX = 10, COUNTS_TRIED = 130 };

/* Leaf 10 of an 11-leaf batch: the shape whose path (two hashes, both on
 * the left) also proves 3 of 4, 5 of 6, ... 96 of 97 (test_merkle.c). */
typedef struct big_batch {
    uint8_t leaf[BIG_LEAVES][64];
    size_t leaf_len[BIG_LEAVES];
    uint8_t path[PROTO_MERKLE_DEPTH_MAX][PROTO_DIGEST_BYTES];
    ProtobufCBinaryData path_bd[PROTO_MERKLE_DEPTH_MAX];
    uint8_t root[PROTO_DIGEST_BYTES];
    uint8_t body[256];
} big_batch;

/* A genuine certificate of leaf 10 of 11, signed by members 0..2. */
static uint8_t *big_batch_cert(big_batch *b, size_t *len) {
    uint8_t hashes[BIG_LEAVES][PROTO_DIGEST_BYTES];
    size_t path_len = 0;
    proto_merkle *t = NULL;
    for (size_t i = 0; i < BIG_LEAVES; i++) {
        b->leaf_len[i] = pack_leaf(i, b->leaf[i]);
        proto_merkle_leaf_hash(b->leaf[i], b->leaf_len[i], hashes[i]);
    }
    ck_assert_int_eq(
        proto_merkle_build((const uint8_t(*)[PROTO_DIGEST_BYTES])hashes, BIG_LEAVES, &t), 0);
    proto_merkle_root(t, b->root);
    ck_assert_int_eq(proto_merkle_path(t, BIG_INDEX, b->path, &path_len), 0);
    proto_merkle_free(t);
    ck_assert_uint_eq(path_len, 2);
    for (size_t i = 0; i < path_len; i++) {
        b->path_bd[i] = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, b->path[i]};
    }
    cert_parts p = parts_genuine(3);
    p.leaf = (ProtobufCBinaryData){b->leaf_len[BIG_INDEX], b->leaf[BIG_INDEX]};
    p.index = BIG_INDEX;
    p.count = BIG_LEAVES;
    p.n_path = path_len;
    p.path = b->path_bd;
    p.body = (ProtobufCBinaryData){
        pack_root_body(cluster, EPOCH, SEQ, b->root, BIG_LEAVES, b->body), b->body};
    return cert_build(&p, len);
}

/* The fixture's trust as a client configuration, for tb_cert_verify. */
static void fx_cluster(tb_client_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->n = fx.n;
    cfg->f = fx.trust.f;
    memcpy(cfg->cluster_id, fx.trust.cluster_id, fx.trust.cluster_id_len);
    cfg->cluster_id_len = fx.trust.cluster_id_len;
    cfg->epoch = fx.trust.epoch;
    for (uint32_t i = 0; i < fx.n; i++) {
        ck_assert_int_eq(proto_key_public(fx.keys[i], cfg->members[i].pubkey), 0);
    }
}

/* The genuine certificate with only its index and count fields changed
 * (malloc'd), as anyone holding it could. */
static uint8_t *cert_moved(const uint8_t *cert, size_t len, uint32_t index, uint32_t count,
                           size_t *out_len) {
    Twinbft__Certificate *c = twinbft__certificate__unpack(NULL, len, cert);
    ck_assert_ptr_nonnull(c);
    c->index = index;
    c->count = count;
    *out_len = twinbft__certificate__get_packed_size(c);
    uint8_t *out = malloc(*out_len);
    ck_assert_ptr_nonnull(out);
    twinbft__certificate__pack(c, out);
    twinbft__certificate__free_unpacked(c, NULL);
    return out;
}

/* Verifies the certificate moved to (index, count) both ways; returns
 * proto_cert_verify's code after checking that tb_cert_verify agrees. */
static int verify_moved(const tb_client_config *cfg, const uint8_t *cert, size_t len,
                        uint32_t index, uint32_t count) {
    size_t moved_len = 0;
    uint8_t *moved = cert_moved(cert, len, index, count, &moved_len);
    proto_cert_info info;
    tb_cert_info tinfo;
    int rc = proto_cert_verify(&fx.trust, moved, moved_len, NOW_MS, &info);
    int trc = tb_cert_verify(cfg, moved, moved_len, NOW_MS, &tinfo);
    ck_assert_msg(rc == trc, "index %u count %u: %d and %d", index, count, rc, trc);
    if (rc == 0) {
        ck_assert_msg(info.index == index && info.count == count && tinfo.index == index &&
                          tinfo.count == count,
                      "index %u count %u reported as %u of %u", index, count, info.index,
                      info.count);
        proto_cert_info_clear(&info);
        tb_cert_info_clear(&tinfo);
    } else {
        ck_assert_ptr_null(info.owner);
        ck_assert_ptr_null(tinfo.client);
    }
    free(moved);
    return rc;
}

/* Issue 9, item 10: a genuine "leaf 10 of 11" certificate verifies with
 * that position only. Changing its index, its count or both in any way
 * (every pair up to count 130, the limits, and the family 3 of 4, 5 of 6,
 * ... 96 of 97 that its path alone would prove) is refused by
 * proto_cert_verify and tb_cert_verify, never reported as another
 * position. */
START_TEST(test_moved_position_is_refused) {
    big_batch b;
    tb_client_config cfg;
    size_t len = 0;
    memset(&b, 0, sizeof b);
    fx_cluster(&cfg);
    uint8_t *cert = big_batch_cert(&b, &len);
    ck_assert_int_eq(verify_moved(&cfg, cert, len, BIG_INDEX, BIG_LEAVES), 0);
    static const uint32_t family[][2] = {{3, 4}, {5, 6}, {6, 7}, {9, 10}, {96, 97}};
    for (size_t k = 0; k < sizeof family / sizeof family[0]; k++) {
        ck_assert_int_eq(verify_moved(&cfg, cert, len, family[k][0], family[k][1]),
                         TB_ERR_MISMATCH);
    }
    for (uint32_t count = 0; count <= COUNTS_TRIED; count++) {
        for (uint32_t index = 0; index <= count + 1; index++) {
            if (index != BIG_INDEX || count != BIG_LEAVES) {
                ck_assert_int_ne(verify_moved(&cfg, cert, len, index, count), 0);
            }
        }
    }
    static const uint32_t limits[] = {PROTO_MERKLE_LEAVES_MAX, PROTO_MERKLE_LEAVES_MAX + 1,
                                      UINT32_MAX};
    for (size_t k = 0; k < sizeof limits / sizeof limits[0]; k++) {
        ck_assert_int_ne(verify_moved(&cfg, cert, len, BIG_INDEX, limits[k]), 0);
        ck_assert_int_ne(verify_moved(&cfg, cert, len, limits[k] - 1, limits[k]), 0);
        ck_assert_int_ne(verify_moved(&cfg, cert, len, limits[k], BIG_LEAVES), 0);
        ck_assert_int_ne(verify_moved(&cfg, cert, len, limits[k] - 1, BIG_LEAVES), 0);
    }
    free(cert);
}
END_TEST

/* The count a certificate claims must be the signed one, and a root signed
 * without a count (as before counts were signed) proves no position. */
START_TEST(test_count_must_be_the_signed_one) {
    uint8_t body[256];
    cert_parts p = parts_genuine(3);
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), 0);
    p.count = LEAVES + 1;
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), TB_ERR_MISMATCH);
    p.count = 0;
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), TB_ERR_MISMATCH);
    /* Quorum-signed roots with a count of 0 or above the limit. */
    p = parts_genuine(3);
    p.count = 0;
    p.body = (ProtobufCBinaryData){pack_root_body(cluster, EPOCH, SEQ, fx.root, 0, body), body};
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), TB_ERR_INVALID);
    p.count = PROTO_MERKLE_LEAVES_MAX + 1;
    p.body = (ProtobufCBinaryData){
        pack_root_body(cluster, EPOCH, SEQ, fx.root, PROTO_MERKLE_LEAVES_MAX + 1, body), body};
    ck_assert_int_eq(verify_parts(&fx.trust, &p, NOW_MS), TB_ERR_INVALID);
    /* Replies whose count is not the signed one never make a certificate. */
    static const uint32_t ids[] = {0, 1, 2, 3};
    uint8_t *cert = NULL;
    size_t len = 0;
    for (uint32_t r = 0; r < 4; r++) {
        fx.reply[r].count = LEAVES + 1;
    }
    ck_assert_int_eq(assemble(&fx.trust, ids, 4, &cert, &len), TB_ERR_QUORUM);
    ck_assert_ptr_null(cert);
}
END_TEST

static Suite *cert_suite(void) {
    Suite *s = suite_create("cert");
    TCase *tc = tcase_create("four members");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup4, teardown);
    tcase_add_test(tc, test_assemble_then_verify);
    tcase_add_test(tc, test_assembly_is_deterministic);
    tcase_add_test(tc, test_checked_assembly_verifies_each_signature_once);
    tcase_add_test(tc, test_cached_signature_needs_the_same_key);
    tcase_add_test(tc, test_every_byte_flip_fails_or_says_the_same);
    tcase_add_test(tc, test_two_signers_are_not_a_quorum);
    tcase_add_test(tc, test_duplicate_signer_counts_once);
    tcase_add_test(tc, test_unknown_and_invalid_signatures_count_for_nothing);
    tcase_add_test(tc, test_wrong_cluster_or_epoch_is_a_mismatch);
    tcase_add_test(tc, test_validity_window);
    tcase_add_test(tc, test_disagreeing_replies_are_not_combined);
    tcase_add_test(tc, test_reply_must_be_signed_by_its_replica);
    tcase_add_test(tc, test_reply_with_bad_signature_is_skipped);
    tcase_add_test(tc, test_replies_with_bad_path_are_not_certified);
    tcase_add_test(tc, test_reply_seq_must_match_signed_seq);
    tcase_add_test(tc, test_malformed_certificates_are_invalid);
    tcase_add_test(tc, test_unparsable_leaf_is_invalid);
    tcase_add_test(tc, test_moved_position_is_refused);
    tcase_add_test(tc, test_count_must_be_the_signed_one);
    suite_add_tcase(s, tc);
    TCase *tc5 = tcase_create("five members");
    tcase_add_checked_fixture(tc5, setup5, teardown);
    tcase_add_test(tc5, test_five_members_need_four);
    suite_add_tcase(s, tc5);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(cert_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
