/* Certified commands: assembling them from replies and verifying them with
 * nothing but the trust anchors. */
#include "proto/cert.h"

#include <stdlib.h>
#include <string.h>

#include "proto/merkle.h"
#include "proto/tb_assert.h"
#include "proto/tb_err.h"

_Static_assert(PROTO_MEMBERS_MAX <= 64, "signer sets are small fixed arrays");

/* The fields a Reply and a Certificate share, and that a certificate's
 * verifier checks apart from the signatures. */
typedef struct proto_cert_claim {
    ProtobufCBinaryData leaf;
    uint32_t index;
    uint32_t count;
    size_t n_path;
    const ProtobufCBinaryData *path;
    ProtobufCBinaryData root_body;
} proto_cert_claim;

void proto_cert_info_clear(proto_cert_info *info) {
    if (info == NULL) {
        return;
    }
    free(info->owner);
    memset(info, 0, sizeof *info);
}

static bool proto_trust_valid(const proto_trust *t) {
    return t != NULL && t->n >= 1 && t->n <= PROTO_MEMBERS_MAX && 3 * (uint64_t)t->f + 1 <= t->n &&
           t->cluster_id_len <= PROTO_CLUSTER_ID_BYTES_MAX;
}

/* ceil((n + f + 1) / 2): any two quorums share at least f + 1 members, so
 * at least one correct member vouches for both; 2f+1 when n = 3f+1. */
static size_t proto_cert_quorum(const proto_trust *t) {
    return ((size_t)t->n + t->f + 2) / 2;
}

static bool proto_bytes_equal(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b) {
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* Unpacks the root body and checks that it is a ResultRoot of this trust's
 * cluster and epoch. On success the caller frees *out. */
static int proto_cert_root_unpack(const proto_trust *t, const ProtobufCBinaryData *root_body,
                                  Twinbft__Body **out) {
    Twinbft__ResultRoot *rr = NULL;
    Twinbft__Body *body = NULL;
    *out = NULL;
    if (root_body->len == 0 || root_body->len > PROTO_ROOT_BODY_BYTES_MAX) {
        return TB_ERR_INVALID;
    }
    body = twinbft__body__unpack(NULL, root_body->len, root_body->data);
    if (body == NULL) {
        return TB_ERR_INVALID;
    }
    if (body->kind_case != TWINBFT__BODY__KIND_RESULT_ROOT || body->result_root == NULL ||
        body->result_root->root.len != PROTO_DIGEST_BYTES) {
        twinbft__body__free_unpacked(body, NULL);
        return TB_ERR_INVALID;
    }
    rr = body->result_root;
    if (rr->cluster_id.len != t->cluster_id_len ||
        (t->cluster_id_len > 0 && memcmp(rr->cluster_id.data, t->cluster_id, t->cluster_id_len)) ||
        rr->epoch != t->epoch) {
        twinbft__body__free_unpacked(body, NULL);
        return TB_ERR_MISMATCH;
    }
    *out = body;
    return 0;
}

/* Checks that the claim's path proves its leaf at its index under the
 * signed root of a tree of the signed count of leaves. */
static int proto_cert_path_check(const proto_cert_claim *c, const Twinbft__ResultRoot *rr) {
    uint8_t path[PROTO_MERKLE_DEPTH_MAX][PROTO_DIGEST_BYTES];
    uint8_t leaf_hash[PROTO_DIGEST_BYTES];
    if (c->n_path > PROTO_MERKLE_DEPTH_MAX) {
        return TB_ERR_INVALID;
    }
    for (size_t i = 0; i < c->n_path; i++) {
        if (c->path[i].len != PROTO_DIGEST_BYTES) {
            return TB_ERR_INVALID;
        }
        memcpy(path[i], c->path[i].data, PROTO_DIGEST_BYTES);
    }
    proto_merkle_leaf_hash(c->leaf.data, c->leaf.len, leaf_hash);
    return proto_merkle_verify(leaf_hash, c->index, rr->count,
                               (const uint8_t(*)[PROTO_DIGEST_BYTES])path, c->n_path,
                               rr->root.data);
}

/* Everything about a claim but its signatures. The position is checked
 * against what is signed: the claimed count must be the signed one (a path
 * alone does not fix it), and the index is proven by the path under it. On
 * success the caller frees *body. */
static int proto_cert_claim_check(const proto_trust *t, const proto_cert_claim *c,
                                  Twinbft__Body **body) {
    int rc = proto_cert_root_unpack(t, &c->root_body, body);
    if (rc != 0) {
        return rc;
    }
    const Twinbft__ResultRoot *rr = (*body)->result_root;
    if (rr->count == 0 || rr->count > PROTO_MERKLE_LEAVES_MAX) {
        rc = TB_ERR_INVALID;
    } else if (c->count != rr->count) {
        rc = TB_ERR_MISMATCH;
    } else {
        rc = proto_cert_path_check(c, rr);
    }
    if (rc != 0) {
        twinbft__body__free_unpacked(*body, NULL);
        *body = NULL;
    }
    return rc;
}

static proto_cert_claim proto_reply_claim(const Twinbft__Reply *r) {
    proto_cert_claim c = {
        .leaf = r->leaf,
        .index = r->index,
        .count = r->count,
        .n_path = r->n_path,
        .path = r->path,
        .root_body = r->root->body,
    };
    return c;
}

/* A reply may join a group only when it names a member that signed it. */
static bool proto_reply_usable(const proto_trust *t, const Twinbft__Reply *r) {
    return r != NULL && r->root != NULL && r->root->signer == r->replica && r->replica < t->n &&
           t->keys[r->replica] != NULL && r->root->signature.len == PROTO_SIG_BYTES;
}

/* Every signature check of this file: through the per-thread cache, so a
 * signature already found valid in this thread is not verified again. */
static bool proto_cert_sig_ok(const proto_trust *t, uint32_t signer,
                              const ProtobufCBinaryData *body, const ProtobufCBinaryData *sig) {
    return signer < t->n && t->keys[signer] != NULL &&
           proto_verify_body_cached(t->keys[signer], body->data, body->len, sig->data, sig->len);
}

bool proto_reply_signature_ok(const proto_trust *t, const Twinbft__Reply *r) {
    return proto_trust_valid(t) && proto_reply_usable(t, r) &&
           proto_cert_sig_ok(t, r->replica, &r->root->body, &r->root->signature);
}

static bool proto_reply_same(const Twinbft__Reply *a, const Twinbft__Reply *b) {
    if (a->seq != b->seq || a->index != b->index || a->count != b->count ||
        a->n_path != b->n_path || !proto_bytes_equal(&a->leaf, &b->leaf) ||
        !proto_bytes_equal(&a->root->body, &b->root->body)) {
        return false;
    }
    for (size_t i = 0; i < a->n_path; i++) {
        if (!proto_bytes_equal(&a->path[i], &b->path[i])) {
            return false;
        }
    }
    return true;
}

static int proto_cert_sig_cmp(const void *a, const void *b) {
    uint32_t x = ((const Twinbft__CertSignature *)a)->signer;
    uint32_t y = ((const Twinbft__CertSignature *)b)->signer;
    return (x > y) - (x < y);
}

/* Packs the certificate of `r`'s claim with sigs[0..n_sigs). */
static int proto_cert_pack(const Twinbft__Reply *r, Twinbft__CertSignature *sigs, size_t n_sigs,
                           uint8_t **out, size_t *out_len) {
    Twinbft__CertSignature *sig_ptrs[PROTO_MEMBERS_MAX];
    Twinbft__Certificate cert = TWINBFT__CERTIFICATE__INIT;
    size_t len = 0;
    uint8_t *buf = NULL;
    TB_ASSERT(n_sigs <= PROTO_MEMBERS_MAX);
    qsort(sigs, n_sigs, sizeof *sigs, proto_cert_sig_cmp);
    for (size_t i = 0; i < n_sigs; i++) {
        sig_ptrs[i] = &sigs[i];
    }
    cert.leaf = r->leaf;
    cert.index = r->index;
    cert.count = r->count;
    cert.n_path = r->n_path;
    cert.path = r->path;
    cert.root_body = r->root->body;
    cert.n_signatures = n_sigs;
    cert.signatures = sig_ptrs;
    len = twinbft__certificate__get_packed_size(&cert);
    if (len > PROTO_CERT_BYTES_MAX) {
        return TB_ERR_TOO_LARGE;
    }
    buf = malloc(len);
    if (buf == NULL) {
        return TB_ERR_NOMEM;
    }
    TB_ASSERT(twinbft__certificate__pack(&cert, buf) == len);
    *out = buf;
    *out_len = len;
    return 0;
}

/* Tries the group of replies whose first member is replies[first]: checks
 * the shared claim once, then signatures (unless the caller checked them:
 * verify false) until q distinct signers agree. */
static int proto_cert_try_group(const proto_trust *t, const Twinbft__Reply *const *replies,
                                const size_t *group, size_t n, size_t first, bool verify,
                                uint8_t **out, size_t *out_len) {
    Twinbft__CertSignature sigs[PROTO_MEMBERS_MAX];
    bool seen[PROTO_MEMBERS_MAX] = {false};
    size_t q = proto_cert_quorum(t);
    size_t n_sigs = 0;
    Twinbft__Body *body = NULL;
    proto_cert_claim claim = proto_reply_claim(replies[first]);
    int rc = proto_cert_claim_check(t, &claim, &body);
    if (rc != 0) {
        return rc;
    }
    rc = body->result_root->seq == replies[first]->seq ? 0 : TB_ERR_MISMATCH;
    twinbft__body__free_unpacked(body, NULL);
    if (rc != 0) {
        return rc;
    }
    for (size_t k = first; k < n && n_sigs < q; k++) {
        if (group[k] != first) {
            continue;
        }
        const Twinbft__Signed *root = replies[k]->root;
        if (seen[root->signer] ||
            (verify && !proto_cert_sig_ok(t, root->signer, &root->body, &root->signature))) {
            continue;
        }
        seen[root->signer] = true;
        sigs[n_sigs] = (Twinbft__CertSignature)TWINBFT__CERT_SIGNATURE__INIT;
        sigs[n_sigs].signer = root->signer;
        sigs[n_sigs].signature = root->signature;
        n_sigs++;
    }
    if (n_sigs < q) {
        return TB_ERR_QUORUM;
    }
    return proto_cert_pack(replies[first], sigs, n_sigs, out, out_len);
}

static int proto_cert_build(const proto_trust *t, const Twinbft__Reply *const *replies, size_t n,
                            bool verify, uint8_t **out, size_t *out_len) {
    int rc = TB_ERR_QUORUM;
    size_t *group = NULL;
    *out = NULL;
    *out_len = 0;
    if (!proto_trust_valid(t) || (replies == NULL && n > 0)) {
        return TB_ERR_INVALID;
    }
    if (n > PROTO_CERT_REPLIES_MAX) {
        return TB_ERR_TOO_LARGE;
    }
    if (n == 0) {
        return TB_ERR_QUORUM;
    }
    group = malloc(n * sizeof *group);
    if (group == NULL) {
        return TB_ERR_NOMEM;
    }
    /* group[i] is the index of the first reply with the same claim, or
     * SIZE_MAX for a reply that cannot count at all. */
    for (size_t i = 0; i < n; i++) {
        group[i] = proto_reply_usable(t, replies[i]) ? i : SIZE_MAX;
        for (size_t j = 0; j < i && group[i] == i; j++) {
            if (group[j] == j && proto_reply_same(replies[i], replies[j])) {
                group[i] = j;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (group[i] != i) {
            continue;
        }
        rc = proto_cert_try_group(t, replies, group, n, i, verify, out, out_len);
        if (rc == 0 || rc == TB_ERR_NOMEM || rc == TB_ERR_TOO_LARGE) {
            break;
        }
        rc = TB_ERR_QUORUM;
    }
    free(group);
    return rc;
}

int proto_cert_assemble(const proto_trust *t, const Twinbft__Reply *const *replies, size_t n,
                        uint8_t **out, size_t *out_len) {
    return proto_cert_build(t, replies, n, true, out, out_len);
}

/* Counts distinct members with a valid signature over root_body (verify),
 * or with a signature at all (!verify: assembly has checked them), stopping
 * at q. Unknown signers, bad signatures and repeats count for nothing. */
static size_t proto_cert_count_signers(const proto_trust *t, const Twinbft__Certificate *c,
                                       bool verify) {
    bool seen[PROTO_MEMBERS_MAX] = {false};
    size_t q = proto_cert_quorum(t);
    size_t count = 0;
    for (size_t i = 0; i < c->n_signatures && count < q; i++) {
        const Twinbft__CertSignature *s = c->signatures[i];
        if (s == NULL || s->signer >= t->n || seen[s->signer] || t->keys[s->signer] == NULL) {
            continue;
        }
        if (verify ? !proto_cert_sig_ok(t, s->signer, &c->root_body, &s->signature)
                   : s->signature.len != PROTO_SIG_BYTES) {
            continue;
        }
        seen[s->signer] = true;
        count++;
    }
    return count;
}

static int proto_cert_info_fill(const Twinbft__ResultRoot *rr, uint32_t index,
                                const Twinbft__ResultLeaf *leaf, proto_cert_info *info) {
    size_t client_len = strlen(leaf->client);
    uint8_t *owner = malloc(client_len + 1 + leaf->result.len);
    if (owner == NULL) {
        return TB_ERR_NOMEM;
    }
    memcpy(owner, leaf->client, client_len + 1);
    if (leaf->result.len > 0) {
        memcpy(owner + client_len + 1, leaf->result.data, leaf->result.len);
    }
    info->seq = rr->seq;
    info->index = index;
    info->count = rr->count;
    info->timestamp_ms = rr->timestamp_ms;
    info->not_before_ms = leaf->not_before_ms;
    info->expires_at_ms = leaf->expires_at_ms;
    info->number = leaf->number;
    info->client = (char *)owner;
    info->result = owner + client_len + 1;
    info->result_len = leaf->result.len;
    info->owner = owner;
    return 0;
}

/* Everything after the certificate parsed: claim, leaf, signatures, window
 * (in that order, so that EXPIRED is only ever said of a genuine one). */
static int proto_cert_check(const proto_trust *t, const Twinbft__Certificate *c, uint64_t now_ms,
                            bool verify, proto_cert_info *info) {
    Twinbft__Body *body = NULL;
    Twinbft__ResultLeaf *leaf = NULL;
    proto_cert_claim claim = {
        .leaf = c->leaf,
        .index = c->index,
        .count = c->count,
        .n_path = c->n_path,
        .path = c->path,
        .root_body = c->root_body,
    };
    int rc = proto_cert_claim_check(t, &claim, &body);
    if (rc != 0) {
        return rc;
    }
    leaf = twinbft__result_leaf__unpack(NULL, c->leaf.len, c->leaf.data);
    if (leaf == NULL) {
        rc = TB_ERR_INVALID;
        goto done;
    }
    if (proto_cert_count_signers(t, c, verify) < proto_cert_quorum(t)) {
        rc = TB_ERR_QUORUM;
        goto done;
    }
    if (now_ms != 0 && (now_ms < leaf->not_before_ms || now_ms >= leaf->expires_at_ms)) {
        rc = TB_ERR_EXPIRED;
        goto done;
    }
    if (info != NULL) {
        rc = proto_cert_info_fill(body->result_root, c->index, leaf, info);
    }
done:
    if (leaf != NULL) {
        twinbft__result_leaf__free_unpacked(leaf, NULL);
    }
    twinbft__body__free_unpacked(body, NULL);
    return rc;
}

/* proto_cert_verify, with or without the signatures. */
static int proto_cert_verify_packed(const proto_trust *t, const uint8_t *cert, size_t len,
                                    uint64_t now_ms, bool verify, proto_cert_info *info) {
    Twinbft__Certificate *c = NULL;
    int rc = TB_ERR_INVALID;
    if (info != NULL) {
        memset(info, 0, sizeof *info);
    }
    if (!proto_trust_valid(t) || cert == NULL || len == 0 || len > PROTO_CERT_BYTES_MAX) {
        return TB_ERR_INVALID;
    }
    c = twinbft__certificate__unpack(NULL, len, cert);
    if (c == NULL) {
        return TB_ERR_INVALID;
    }
    /* A genuine certificate needs at most one signature per member; a
     * longer list would only make us spend verifications. */
    if (c->n_signatures <= PROTO_MEMBERS_MAX) {
        rc = proto_cert_check(t, c, now_ms, verify, info);
    }
    twinbft__certificate__free_unpacked(c, NULL);
    return rc;
}

int proto_cert_verify(const proto_trust *t, const uint8_t *cert, size_t len, uint64_t now_ms,
                      proto_cert_info *info) {
    return proto_cert_verify_packed(t, cert, len, now_ms, true, info);
}

int proto_cert_assemble_checked(const proto_trust *t, const Twinbft__Reply *const *replies,
                                size_t n, uint8_t **out, size_t *out_len, proto_cert_info *info) {
    if (info != NULL) {
        memset(info, 0, sizeof *info);
    }
    int rc = proto_cert_build(t, replies, n, false, out, out_len);
    if (rc == 0) {
        /* What verifying would check of the bytes built, but the signatures. */
        rc = proto_cert_verify_packed(t, *out, *out_len, 0, false, info);
    }
    if (rc != 0 && *out != NULL) {
        free(*out);
        *out = NULL;
        *out_len = 0;
    }
    return rc;
}
