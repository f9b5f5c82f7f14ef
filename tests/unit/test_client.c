/* The edge client against in-process fake replicas that answer over real
 * mutual-TLS links with signed single-leaf replies: f+1 matching replies
 * complete a request, a quorum also yields a certificate that verifies, and
 * too few replies time out. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "client/client.h"
#include "client/link.h"
#include "proto/cert.h"
#include "proto/frame.h"
#include "proto/merkle.h"
#include "proto/pki.h"
#include "proto/tb_err.h"

enum { N = 4, F = 1, SEQ = 7 };

typedef struct fake_replica {
    uint32_t id;
    bool answers;
    tb_tls_ctx *tls;
    tb_tls_listener *listener;
    proto_key *key;
} fake_replica;

static struct {
    struct event_base *base;
    EVP_PKEY *ca_key;
    X509 *ca_cert;
    fake_replica reps[N];
    char dir[64];
    char ca[128], cert[128], key[128];
    /* what the callback saw */
    int calls, status;
    uint64_t seq, number;
    bool had_cert, cert_ok;
} T;

static void quiet(const char *line, void *arg) {
    (void)line, (void)arg;
}

/* A reply as consensus/execute.c builds it, for a batch holding this request alone. */
static void fake_answer(fake_replica *r, tb_tls_link *link, const Twinbft__Request *req) {
    uint8_t leaf[512], hash[PROTO_DIGEST_BYTES], root[PROTO_DIGEST_BYTES], body[512],
        sig[PROTO_SIG_BYTES];
    Twinbft__ResultLeaf l = TWINBFT__RESULT_LEAF__INIT;
    l.client = req->client;
    l.number = req->number;
    l.result = req->op; /* an echo service */
    l.expires_at_ms = UINT64_MAX;
    size_t leaf_len = twinbft__result_leaf__pack(&l, leaf);
    proto_merkle_leaf_hash(leaf, leaf_len, hash);
    proto_merkle *tree = NULL;
    ck_assert_int_eq(proto_merkle_build((const uint8_t(*)[PROTO_DIGEST_BYTES]) & hash, 1, &tree),
                     0);
    proto_merkle_root(tree, root);
    proto_merkle_free(tree);
    Twinbft__ResultRoot rr = TWINBFT__RESULT_ROOT__INIT;
    rr.cluster_id = (ProtobufCBinaryData){4, (uint8_t *)"test"};
    rr.epoch = 1;
    rr.seq = SEQ;
    rr.root = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, root};
    rr.timestamp_ms = 1000;
    Twinbft__Body b = TWINBFT__BODY__INIT;
    b.kind_case = TWINBFT__BODY__KIND_RESULT_ROOT;
    b.result_root = &rr;
    size_t body_len = twinbft__body__pack(&b, body);
    ck_assert_int_eq(proto_sign_body(r->key, body, body_len, sig), 0);
    Twinbft__Signed s = TWINBFT__SIGNED__INIT;
    s.body = (ProtobufCBinaryData){body_len, body};
    s.signer = r->id;
    s.signature = (ProtobufCBinaryData){PROTO_SIG_BYTES, sig};
    Twinbft__Reply rep = TWINBFT__REPLY__INIT;
    rep.replica = r->id;
    rep.view = 0;
    rep.seq = SEQ;
    rep.leaf = (ProtobufCBinaryData){leaf_len, leaf};
    rep.index = 0;
    rep.count = 1;
    rep.root = &s;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_REPLY;
    m.reply = &rep;
    uint8_t *out = NULL;
    size_t out_len = 0;
    ck_assert_int_eq(proto_message_pack(&m, &out, &out_len), 0);
    (void)tb_tls_send(link, out, out_len);
    free(out);
}

static void fake_on_frame(tb_tls_link *link, const char *peer, const uint8_t *data, size_t len,
                          void *arg) {
    fake_replica *r = arg;
    (void)peer;
    Twinbft__Message *m = proto_message_unpack(data, len);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(m->kind_case, TWINBFT__MESSAGE__KIND_REQUEST);
    if (r->answers) {
        fake_answer(r, link, m->request);
    }
    twinbft__message__free_unpacked(m, NULL);
}

static void setup(void) {
    memset(&T, 0, sizeof T);
    T.base = event_base_new();
    ck_assert_int_eq(proto_pki_ca_create("twinbft-test-ca", 1, &T.ca_key, &T.ca_cert), 0);
    const char *tmp = getenv("TMPDIR");
    snprintf(T.dir, sizeof T.dir, "%s/test_client.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(T.dir));
    snprintf(T.ca, sizeof T.ca, "%s/ca.pem", T.dir);
    snprintf(T.cert, sizeof T.cert, "%s/cert.pem", T.dir);
    snprintf(T.key, sizeof T.key, "%s/key.pem", T.dir);
    EVP_PKEY *k = NULL;
    X509 *c = NULL;
    ck_assert_int_eq(proto_pki_issue(T.ca_key, T.ca_cert, "edge-1", 1, &k, &c), 0);
    ck_assert_int_eq(proto_pki_save_cert(T.ca_cert, T.ca), 0);
    ck_assert_int_eq(proto_pki_save_cert(c, T.cert), 0);
    ck_assert_int_eq(proto_pki_save_key(k, T.key), 0);
    EVP_PKEY_free(k);
    X509_free(c);
    tb_tls_callbacks cb = {NULL, fake_on_frame, NULL, NULL};
    for (uint32_t j = 0; j < N; j++) {
        char name[32];
        fake_replica *r = &T.reps[j];
        r->id = j;
        snprintf(name, sizeof name, "replica-%u", (unsigned)j);
        ck_assert_int_eq(proto_pki_issue(T.ca_key, T.ca_cert, name, 1, &k, &c), 0);
        ck_assert_int_eq(tb_tls_ctx_new(T.ca_cert, c, k, &r->tls), 0);
        EVP_PKEY_free(k);
        X509_free(c);
        tb_tls_ctx_set_log(r->tls, quiet, NULL);
        ck_assert_int_eq(proto_key_generate(&r->key), 0);
        cb.arg = r;
        ck_assert_int_eq(tb_tls_listen(T.base, r->tls, "127.0.0.1", 0, &cb, &r->listener), 0);
    }
}

static void teardown(void) {
    for (uint32_t j = 0; j < N; j++) {
        tb_tls_listener_free(T.reps[j].listener);
        tb_tls_ctx_free(T.reps[j].tls);
        proto_key_free(T.reps[j].key);
    }
    unlink(T.ca);
    unlink(T.cert);
    unlink(T.key);
    rmdir(T.dir);
    EVP_PKEY_free(T.ca_key);
    X509_free(T.ca_cert);
    event_base_free(T.base);
}

static void fill_config(tb_client_config *cfg, uint32_t timeout_ms) {
    memset(cfg, 0, sizeof *cfg);
    cfg->n = N;
    cfg->f = F;
    memcpy(cfg->cluster_id, "test", 4);
    cfg->cluster_id_len = 4;
    cfg->epoch = 1;
    for (uint32_t j = 0; j < N; j++) {
        snprintf(cfg->members[j].host, sizeof cfg->members[j].host, "127.0.0.1");
        cfg->members[j].port = tb_tls_listener_port(T.reps[j].listener);
        ck_assert_int_eq(proto_key_public(T.reps[j].key, cfg->members[j].pubkey), 0);
    }
    cfg->ca_path = T.ca;
    cfg->cert_path = T.cert;
    cfg->key_path = T.key;
    cfg->first_number = 41;
    cfg->timeout_ms = timeout_ms;
}

static void on_result(int status, uint64_t seq, const uint8_t *leaf, size_t leaf_len,
                      const uint8_t *cert, size_t cert_len, void *arg) {
    const tb_client_config *cfg = arg;
    T.calls++;
    T.status = status;
    T.seq = seq;
    T.had_cert = cert != NULL;
    if (leaf != NULL) {
        Twinbft__ResultLeaf *l = twinbft__result_leaf__unpack(NULL, leaf_len, leaf);
        ck_assert_ptr_nonnull(l);
        T.number = l->number;
        twinbft__result_leaf__free_unpacked(l, NULL);
    }
    if (cert != NULL) {
        proto_trust t = {.epoch = 1, .n = N, .f = F, .cluster_id_len = 4};
        memcpy(t.cluster_id, "test", 4);
        for (uint32_t j = 0; j < N; j++) {
            ck_assert_int_eq(proto_pubkey_from_raw(cfg->members[j].pubkey, &t.keys[j]), 0);
        }
        T.cert_ok = proto_cert_verify(&t, cert, cert_len, 0, NULL) == 0;
        for (uint32_t j = 0; j < N; j++) {
            proto_pubkey_free(t.keys[j]);
        }
    }
    event_base_loopexit(T.base, NULL);
}

/* Runs one request with the first `answering` replicas answering. */
static void run_one(tb_client *c, tb_client_config *cfg, uint32_t answering) {
    for (uint32_t j = 0; j < N; j++) {
        T.reps[j].answers = j < answering;
    }
    T.calls = 0;
    ck_assert_int_eq(tb_client_submit(c, (const uint8_t *)"hello", 5, false, on_result, cfg), 0);
    ck_assert_int_eq(tb_client_submit(c, (const uint8_t *)"again", 5, false, on_result, cfg),
                     TB_ERR_STATE);
    struct timeval limit = {20, 0};
    event_base_loopexit(T.base, &limit);
    event_base_dispatch(T.base);
    ck_assert_int_eq(T.calls, 1);
}

/* All replicas answer: the result arrives with a certificate that verifies. */
START_TEST(test_quorum_gives_certificate) {
    tb_client_config cfg;
    tb_client *c = NULL;
    fill_config(&cfg, 10000);
    ck_assert_int_eq(tb_client_new(T.base, &cfg, &c), 0);
    ck_assert_str_eq(tb_client_name(c), "edge-1");
    run_one(c, &cfg, N);
    ck_assert_int_eq(T.status, 0);
    ck_assert_uint_eq(T.seq, SEQ);
    ck_assert_uint_eq(T.number, 41);
    ck_assert(T.had_cert && T.cert_ok);
    /* The next request carries the next number. */
    ck_assert_uint_eq(tb_client_next_number(c), 42);
    run_one(c, &cfg, N);
    ck_assert_int_eq(T.status, 0);
    ck_assert_uint_eq(T.number, 42);
    tb_client_free(c);
}
END_TEST

/* f+1 replies but no quorum: the result stands, without a certificate. */
START_TEST(test_f_plus_one_without_certificate) {
    tb_client_config cfg;
    tb_client *c = NULL;
    fill_config(&cfg, 10000);
    ck_assert_int_eq(tb_client_new(T.base, &cfg, &c), 0);
    run_one(c, &cfg, F + 1);
    ck_assert_int_eq(T.status, 0);
    ck_assert_uint_eq(T.number, 41);
    ck_assert(!T.had_cert);
    tb_client_free(c);
}
END_TEST

/* f replies cannot complete a request: it times out, and the number still advances. */
START_TEST(test_too_few_replies_time_out) {
    tb_client_config cfg;
    tb_client *c = NULL;
    fill_config(&cfg, 1500);
    ck_assert_int_eq(tb_client_new(T.base, &cfg, &c), 0);
    run_one(c, &cfg, F);
    ck_assert_int_eq(T.status, TB_ERR_QUORUM);
    ck_assert(!T.had_cert);
    ck_assert_uint_eq(tb_client_next_number(c), 42);
    tb_client_free(c);
}
END_TEST

/* Configurations that cannot work are refused up front. */
START_TEST(test_bad_config_refused) {
    tb_client_config cfg;
    tb_client *c = NULL;
    fill_config(&cfg, 0);
    cfg.f = 2; /* 3f+1 > n */
    ck_assert_int_eq(tb_client_new(T.base, &cfg, &c), TB_ERR_INVALID);
    fill_config(&cfg, 0);
    cfg.first_number = 0;
    ck_assert_int_eq(tb_client_new(T.base, &cfg, &c), TB_ERR_INVALID);
    ck_assert_ptr_null(c);
}
END_TEST

static Suite *client_suite(void) {
    Suite *s = suite_create("client");
    TCase *tc = tcase_create("client");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_quorum_gives_certificate);
    tcase_add_test(tc, test_f_plus_one_without_certificate);
    tcase_add_test(tc, test_too_few_replies_time_out);
    tcase_add_test(tc, test_bad_config_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(client_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
