/* Fuzzes proto_cert_verify with a fixed 4-member trust: no input may crash
 * it, none may verify unless it carries a quorum of real signatures, and
 * none that verifies may claim another position than the one signed. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/pbft.h"
#include "proto/cert.h"
#include "proto/merkle.h"
#include "tests/fuzz/fuzz.h"

static proto_key *keys[4];
static proto_trust trust;

static void init(void) {
    if (keys[0] != NULL) {
        return;
    }
    memset(&trust, 0, sizeof trust);
    memcpy(trust.cluster_id, "fz", 2);
    trust.cluster_id_len = 2;
    trust.n = 4;
    trust.f = 1;
    for (int i = 0; i < 4; i++) {
        uint8_t seed[PROTO_SEED_BYTES] = {(uint8_t)(i + 1)}, pub[PROTO_PUBKEY_BYTES];
        if (proto_key_from_seed(seed, &keys[i]) || proto_key_public(keys[i], pub) ||
            proto_pubkey_from_raw(pub, &trust.keys[i])) {
            abort();
        }
    }
}

/* The only genuine positions: the corpus's two certificates, leaf 0 of 1
 * and leaf 10 of 11. Whatever else verifies has moved a signed result. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init();
    proto_cert_info info;
    if (proto_cert_verify(&trust, data, size, 0, &info) == 0) {
        bool genuine =
            (info.index == 0 && info.count == 1) || (info.index == 10 && info.count == 11);
        proto_cert_info_clear(&info);
        if (!genuine) {
            abort();
        }
    }
    return 0;
}

/* A valid certificate for leaf `index` of a batch of `count` leaves (at most
 * 16), signed by members 0..2. */
static fuzz_input genuine_cert(uint32_t index, uint32_t count) {
    uint8_t lb[16][128], hashes[16][PROTO_DIGEST_BYTES], root[PROTO_DIGEST_BYTES];
    uint8_t path[PROTO_MERKLE_DEPTH_MAX][PROTO_DIGEST_BYTES];
    ProtobufCBinaryData path_bd[PROTO_MERKLE_DEPTH_MAX];
    size_t llen[16], path_len = 0;
    proto_merkle *tree = NULL;
    for (uint32_t i = 0; i < count; i++) {
        Twinbft__ResultLeaf leaf = TWINBFT__RESULT_LEAF__INIT;
        uint8_t res[3] = {1, 2, (uint8_t)i};
        leaf.client = "fz", leaf.number = 1 + i, leaf.result = (ProtobufCBinaryData){3, res};
        leaf.expires_at_ms = 1000;
        llen[i] = twinbft__result_leaf__pack(&leaf, lb[i]);
        proto_merkle_leaf_hash(lb[i], llen[i], hashes[i]);
    }
    if (proto_merkle_build((const uint8_t(*)[PROTO_DIGEST_BYTES])hashes, count, &tree) != 0 ||
        proto_merkle_path(tree, index, path, &path_len) != 0) {
        abort();
    }
    proto_merkle_root(tree, root);
    proto_merkle_free(tree);
    for (size_t k = 0; k < path_len; k++) {
        path_bd[k] = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, path[k]};
    }
    Twinbft__ResultRoot rr = TWINBFT__RESULT_ROOT__INIT;
    rr.cluster_id = (ProtobufCBinaryData){2, (uint8_t *)"fz"}, rr.seq = 1, rr.count = count;
    rr.root = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, root};
    Twinbft__Body body = TWINBFT__BODY__INIT;
    body.kind_case = TWINBFT__BODY__KIND_RESULT_ROOT, body.result_root = &rr;
    uint8_t bb[256];
    size_t blen = twinbft__body__pack(&body, bb);
    Twinbft__CertSignature sigs[3], *sp[3];
    uint8_t sigbuf[3][PROTO_SIG_BYTES];
    for (int i = 0; i < 3; i++) {
        if (proto_sign_body(keys[i], bb, blen, sigbuf[i]) != 0) {
            abort();
        }
        twinbft__cert_signature__init(&sigs[i]);
        sigs[i].signer = (uint32_t)i;
        sigs[i].signature = (ProtobufCBinaryData){PROTO_SIG_BYTES, sigbuf[i]};
        sp[i] = &sigs[i];
    }
    Twinbft__Certificate c = TWINBFT__CERTIFICATE__INIT;
    c.leaf = (ProtobufCBinaryData){llen[index], lb[index]}, c.index = index, c.count = count;
    c.path = path_bd, c.n_path = path_len;
    c.root_body = (ProtobufCBinaryData){blen, bb};
    c.signatures = sp, c.n_signatures = 3;
    fuzz_input in = {NULL, twinbft__certificate__get_packed_size(&c)};
    in.data = malloc(in.len);
    if (in.data == NULL) {
        abort();
    }
    twinbft__certificate__pack(&c, in.data);
    if (proto_cert_verify(&trust, in.data, in.len, 0, NULL) != 0) {
        abort(); /* a seed that does not verify would leave the checks above unexercised */
    }
    return in;
}

size_t fuzz_corpus(fuzz_input *out, size_t max) {
    init();
    size_t n = 0;
    if (n < max) {
        out[n++] = genuine_cert(0, 1);
    }
    if (n < max) {
        out[n++] = genuine_cert(10, 11);
    }
    return n;
}
