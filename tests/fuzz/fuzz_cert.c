/* Fuzzes proto_cert_verify with a fixed 4-member trust: no input may crash
 * it, and none may verify unless it carries a quorum of real signatures. */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init();
    proto_cert_info info;
    if (proto_cert_verify(&trust, data, size, 0, &info) == 0) {
        proto_cert_info_clear(&info);
    }
    return 0;
}

/* A valid certificate: one leaf, signed by members 0..2. */
size_t fuzz_corpus(fuzz_input *out, size_t max) {
    init();
    if (max == 0) {
        return 0;
    }
    Twinbft__ResultLeaf leaf = TWINBFT__RESULT_LEAF__INIT;
    uint8_t res[3] = {1, 2, 3};
    leaf.client = "fz", leaf.number = 1, leaf.result = (ProtobufCBinaryData){3, res};
    leaf.expires_at_ms = 1000;
    uint8_t lb[128], root[PROTO_DIGEST_BYTES];
    size_t llen = twinbft__result_leaf__pack(&leaf, lb);
    proto_merkle_leaf_hash(lb, llen, root);
    Twinbft__ResultRoot rr = TWINBFT__RESULT_ROOT__INIT;
    rr.cluster_id = (ProtobufCBinaryData){2, (uint8_t *)"fz"}, rr.seq = 1;
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
    c.leaf = (ProtobufCBinaryData){llen, lb}, c.index = 0, c.count = 1;
    c.root_body = (ProtobufCBinaryData){blen, bb};
    c.signatures = sp, c.n_signatures = 3;
    out[0].len = twinbft__certificate__get_packed_size(&c);
    out[0].data = malloc(out[0].len);
    twinbft__certificate__pack(&c, out[0].data);
    return 1;
}
