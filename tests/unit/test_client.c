/* libtwinbft against in-process fake replicas that answer over real
 * mutual-TLS links with signed replies: intents (f+1 matching replies, a
 * quorum certificate, timeouts), read-only queries (a quorum of equal
 * answers, the ordered fallback), status, and subscriptions (order, waiting
 * for an earlier pending command, dropping a dead one, resuming across
 * reconnects without duplicates or gaps, surviving a Byzantine replica's
 * flood, horizons and gaps), and the blocking wrappers' rules. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "client/link.h"
#include "proto/cert.h"
#include "proto/crypto.h"
#include "proto/frame.h"
#include "proto/merkle.h"
#include "proto/pki.h"
#include "proto/sm.pb-c.h"
#include "proto/tb_err.h"
#include "twinbft/twinbft.h"

enum {
    N = 4,
    F = 1,
    SEQ = 7,
    LEAF_BYTES_MAX = 512,
    BATCH_LEAVES = 4,     /* a pushed command sits in a batch of this many results */
    CMDS_MAX = 16,        /* commands a test's fakes keep for subscribers */
    PUSHES_PER_ROUND = 2, /* a fake answers one Subscribe with at most this many */
    DELIVERED_MAX = TB_SUBSCRIPTION_PENDING_MAX + 16,
};

typedef struct fake_replica {
    uint32_t id;
    bool answers;             /* Requests */
    const char *query_answer; /* Queries: NULL means silent */
    bool status_answers;
    /* What its StatusReply says it serves (the client's configuration
     * names "test", epoch 1, unless a test changes it). */
    const char *serves_cluster;
    uint64_t serves_epoch;
    uint32_t requests; /* Requests and Queries it received */
    uint32_t queries;
    tb_tls_ctx *tls;
    tb_tls_listener *listener;
    tb_tls_link *link; /* the client's link, once it sent something */
    proto_key *key;
    bool has[CMDS_MAX];     /* which commands this replica pushes */
    uint64_t sub_after_seq; /* the last Subscribe it got */
    uint64_t sub_after_seq_min;
    uint32_t subscribes;
    uint64_t horizon;     /* its SubscribeAck.horizon_seq */
    bool empty_more_once; /* answers its first Subscribe with nothing but more = true */
    bool lies_index;      /* Byzantine: replies with a wrong index (same seq and leaf) */
    bool silent_sub;      /* Byzantine: counts a Subscribe but never answers it */
    /* Byzantine: on its first Subscribe, pushes this many made-up commands
     * at (flood_seq + k, 0) before anything else. */
    uint32_t flood;
    uint64_t flood_seq;
} fake_replica;

typedef struct cmd_pos {
    uint64_t seq;
    uint32_t index;
} cmd_pos;

static struct {
    struct event_base *base;
    EVP_PKEY *ca_key;
    X509 *ca_cert;
    fake_replica reps[N];
    char dir[64];
    char ca[128], cert[128], key[128];
    tb_client_config cfg;
    cmd_pos cmds[CMDS_MAX];
    uint32_t n_cmds;
    bool push_from_start; /* fakes also re-push commands up to Subscribe.after */
    uint64_t executed;    /* what the fakes' SubscribeAcks say they executed */
    /* what the callbacks saw */
    int calls, status;
    uint64_t seq, number;
    bool had_cert, cert_ok;
    cmd_pos delivered[DELIVERED_MAX];
    bool gap[DELIVERED_MAX];
    uint32_t n_delivered;
    tb_client *client;          /* for callbacks that call back into it */
    uint32_t unsubscribe_after; /* on_command unsubscribes after this many (0: never) */
    int nested[4];              /* what *_wait calls inside a callback returned */
    bool delivered_cert_ok;
} T;

static void quiet(const char *line, void *arg) {
    (void)line, (void)arg;
}

static int pos_cmp(cmd_pos a, cmd_pos b) {
    return a.seq != b.seq ? (a.seq < b.seq ? -1 : 1)
                          : (a.index < b.index   ? -1
                             : a.index > b.index ? 1
                                                 : 0);
}

/* A signed reply for leaf `index` of a batch at seq with these leaves, as
 * consensus/execute.c builds it. Everything the reply points to lives here. */
typedef struct reply_buf {
    uint8_t root[PROTO_DIGEST_BYTES], body[512], sig[PROTO_SIG_BYTES];
    uint8_t path[PROTO_MERKLE_DEPTH_MAX][PROTO_DIGEST_BYTES];
    ProtobufCBinaryData path_v[PROTO_MERKLE_DEPTH_MAX];
    Twinbft__ResultRoot rr;
    Twinbft__Body b;
    Twinbft__Signed s;
    Twinbft__Reply rep;
} reply_buf;

static void reply_build(reply_buf *rb, const fake_replica *r, uint64_t seq,
                        uint8_t (*leaves)[LEAF_BYTES_MAX], const size_t *lens, uint32_t count,
                        uint32_t index) {
    uint8_t hashes[BATCH_LEAVES][PROTO_DIGEST_BYTES];
    ck_assert_uint_le(count, BATCH_LEAVES);
    for (uint32_t k = 0; k < count; k++) {
        proto_merkle_leaf_hash(leaves[k], lens[k], hashes[k]);
    }
    proto_merkle *tree = NULL;
    size_t path_len = 0;
    ck_assert_int_eq(proto_merkle_build((const uint8_t(*)[PROTO_DIGEST_BYTES])hashes, count, &tree),
                     0);
    proto_merkle_root(tree, rb->root);
    ck_assert_int_eq(proto_merkle_path(tree, index, rb->path, &path_len), 0);
    proto_merkle_free(tree);
    for (size_t k = 0; k < path_len; k++) {
        rb->path_v[k] = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, rb->path[k]};
    }
    twinbft__result_root__init(&rb->rr);
    rb->rr.cluster_id = (ProtobufCBinaryData){4, (uint8_t *)"test"};
    rb->rr.epoch = 1;
    rb->rr.seq = seq;
    rb->rr.root = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, rb->root};
    rb->rr.timestamp_ms = 1000;
    rb->rr.count = count;
    twinbft__body__init(&rb->b);
    rb->b.kind_case = TWINBFT__BODY__KIND_RESULT_ROOT;
    rb->b.result_root = &rb->rr;
    size_t body_len = twinbft__body__pack(&rb->b, rb->body);
    ck_assert_int_eq(proto_sign_body(r->key, rb->body, body_len, rb->sig), 0);
    twinbft__signed__init(&rb->s);
    rb->s.body = (ProtobufCBinaryData){body_len, rb->body};
    rb->s.signer = r->id;
    rb->s.signature = (ProtobufCBinaryData){PROTO_SIG_BYTES, rb->sig};
    twinbft__reply__init(&rb->rep);
    rb->rep.replica = r->id;
    rb->rep.seq = seq;
    rb->rep.leaf = (ProtobufCBinaryData){lens[index], leaves[index]};
    rb->rep.index = index;
    rb->rep.count = count;
    rb->rep.n_path = path_len;
    rb->rep.path = rb->path_v;
    rb->rep.root = &rb->s;
}

static void fake_send(tb_tls_link *link, Twinbft__Message *m) {
    uint8_t *out = NULL;
    size_t out_len = 0;
    ck_assert_int_eq(proto_message_pack(m, &out, &out_len), 0);
    (void)tb_tls_send(link, out, out_len);
    free(out);
}

static size_t pack_leaf(const char *client, uint64_t number, const uint8_t *result, size_t len,
                        uint8_t out[LEAF_BYTES_MAX]) {
    Twinbft__ResultLeaf l = TWINBFT__RESULT_LEAF__INIT;
    l.client = (char *)client;
    l.number = number;
    l.result = (ProtobufCBinaryData){len, (uint8_t *)result};
    l.not_before_ms = 1000 + number; /* a window that says which leaf it is from */
    l.expires_at_ms = UINT64_MAX;
    ck_assert_uint_le(twinbft__result_leaf__get_packed_size(&l), LEAF_BYTES_MAX);
    return twinbft__result_leaf__pack(&l, out);
}

/* What the fake state machine returns: an ordered query gets an SmResult
 * whose SmQueryResult says "ordered"; anything else is echoed. */
static size_t fake_result(const Twinbft__Request *req, uint8_t out[256]) {
    Twinbft__SmOp *op = twinbft__sm_op__unpack(NULL, req->op.len, req->op.data);
    size_t len = 0;
    if (op != NULL && op->op_case == TWINBFT__SM_OP__OP_QUERY) {
        Twinbft__SmQueryResult qr = TWINBFT__SM_QUERY_RESULT__INIT;
        qr.detail = "ordered";
        Twinbft__SmResult r = TWINBFT__SM_RESULT__INIT;
        r.payload_case = TWINBFT__SM_RESULT__PAYLOAD_QUERY;
        r.query = &qr;
        len = twinbft__sm_result__pack(&r, out);
    } else {
        ck_assert_uint_le(req->op.len, 256);
        memcpy(out, req->op.data, req->op.len);
        len = req->op.len;
    }
    if (op != NULL) {
        twinbft__sm_op__free_unpacked(op, NULL);
    }
    return len;
}

/* A reply for a batch holding this request alone. */
static void fake_answer(fake_replica *r, tb_tls_link *link, const Twinbft__Request *req) {
    uint8_t leaf[1][LEAF_BYTES_MAX], result[256];
    size_t result_len = fake_result(req, result);
    size_t len = pack_leaf(req->client, req->number, result, result_len, leaf[0]);
    ck_assert(!req->priority); /* replicas choose the safety lane */
    reply_buf rb;
    reply_build(&rb, r, SEQ, leaf, &len, 1, 0);
    if (r->lies_index) {
        rb.rep.index = 5;
    }
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_REPLY;
    m.reply = &rb.rep;
    fake_send(link, &m);
}

static void fake_query_answer(fake_replica *r, tb_tls_link *link, const Twinbft__Query *q) {
    Twinbft__QueryReply a = TWINBFT__QUERY_REPLY__INIT;
    a.id = q->id;
    a.replica = r->id;
    a.executed = 9;
    a.result = (ProtobufCBinaryData){strlen(r->query_answer), (uint8_t *)r->query_answer};
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_QUERY_REPLY;
    m.query_reply = &a;
    fake_send(link, &m);
}

static void fake_status_answer(fake_replica *r, tb_tls_link *link,
                               const Twinbft__StatusRequest *s) {
    uint32_t peers[N - 1];
    uint32_t n_peers = 0;
    for (uint32_t j = 0; j < N; j++) {
        if (j != r->id) {
            peers[n_peers++] = j;
        }
    }
    Twinbft__StatusReply a = TWINBFT__STATUS_REPLY__INIT;
    a.id = s->id;
    a.replica = r->id;
    a.cluster_id = (ProtobufCBinaryData){strlen(r->serves_cluster), (uint8_t *)r->serves_cluster};
    a.epoch = r->serves_epoch;
    a.view = 3;
    a.primary = 3 % N;
    a.executed = 100 + r->id;
    a.n_peers = n_peers;
    a.peers = peers;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_STATUS_REPLY;
    m.status_reply = &a;
    fake_send(link, &m);
}

/* The command at p as replica r's signed reply, pushed to edge-1. */
static void fake_push_at(fake_replica *r, cmd_pos p) {
    uint8_t leaves[BATCH_LEAVES][LEAF_BYTES_MAX];
    size_t lens[BATCH_LEAVES];
    for (uint32_t i = 0; i < BATCH_LEAVES; i++) {
        char result[64];
        snprintf(result, sizeof result, "cmd-%llu-%u", (unsigned long long)p.seq, i);
        lens[i] = pack_leaf("operator", 100 * p.seq + i, (const uint8_t *)result, strlen(result),
                            leaves[i]);
    }
    reply_buf rb;
    reply_build(&rb, r, p.seq, leaves, lens, BATCH_LEAVES, p.index);
    Twinbft__Push push = TWINBFT__PUSH__INIT;
    push.reply = &rb.rep;
    push.to = "edge-1";
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_PUSH;
    m.push = &push;
    fake_send(r->link, &m);
}

/* Command k as replica r's signed reply, pushed to edge-1. */
static void fake_push(fake_replica *r, uint32_t k) {
    fake_push_at(r, T.cmds[k]);
}

static void fake_ack(fake_replica *r, cmd_pos last, bool more) {
    Twinbft__SubscribeAck a = TWINBFT__SUBSCRIBE_ACK__INIT;
    a.replica = r->id;
    a.last_seq = last.seq;
    a.last_index = last.index;
    a.more = more;
    a.executed = T.executed;
    a.horizon_seq = r->horizon;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_SUBSCRIBE_ACK;
    m.subscribe_ack = &a;
    fake_send(r->link, &m);
}

/* Pushes what it keeps after `after` in order, at most PUSHES_PER_ROUND, then
 * acknowledges with more set when it stopped early. With push_from_start it
 * first re-pushes what it keeps up to `after`. */
static void fake_subscribe(fake_replica *r, const Twinbft__Subscribe *s) {
    cmd_pos after = {s->after_seq, s->after_index};
    cmd_pos last = {0, 0};
    uint32_t sent = 0;
    bool more = false;
    r->subscribes++;
    r->sub_after_seq = s->after_seq;
    r->sub_after_seq_min =
        s->after_seq < r->sub_after_seq_min ? s->after_seq : r->sub_after_seq_min;
    if (r->silent_sub) {
        return;
    }
    if (r->empty_more_once && r->subscribes == 1) {
        fake_ack(r, last, true); /* "more to come", though nothing was sent */
        return;
    }
    for (uint32_t k = 0; r->subscribes == 1 && k < r->flood; k++) {
        fake_push_at(r, (cmd_pos){r->flood_seq + k, 0});
    }
    for (uint32_t k = 0; k < T.n_cmds; k++) {
        if (!r->has[k]) {
            continue;
        }
        if (pos_cmp(T.cmds[k], after) <= 0) {
            if (T.push_from_start) {
                fake_push(r, k); /* a sloppy replica re-pushes what the client has */
            }
            continue;
        }
        if (sent == PUSHES_PER_ROUND) {
            more = true;
            break;
        }
        fake_push(r, k);
        last = T.cmds[k];
        sent++;
    }
    fake_ack(r, last, more);
}

static void fake_on_frame(tb_tls_link *link, const char *peer, const uint8_t *data, size_t len,
                          void *arg) {
    fake_replica *r = arg;
    (void)peer;
    Twinbft__Message *m = proto_message_unpack(data, len);
    ck_assert_ptr_nonnull(m);
    r->link = link;
    switch (m->kind_case) {
    case TWINBFT__MESSAGE__KIND_REQUEST:
        r->requests++;
        if (r->answers) {
            fake_answer(r, link, m->request);
        }
        break;
    case TWINBFT__MESSAGE__KIND_QUERY:
        r->queries++;
        if (r->query_answer != NULL) {
            fake_query_answer(r, link, m->query);
        }
        break;
    case TWINBFT__MESSAGE__KIND_STATUS_REQUEST:
        if (r->status_answers) {
            fake_status_answer(r, link, m->status_request);
        }
        break;
    case TWINBFT__MESSAGE__KIND_SUBSCRIBE:
        fake_subscribe(r, m->subscribe);
        break;
    default:
        ck_abort_msg("a client sent message kind %d", (int)m->kind_case);
    }
    twinbft__message__free_unpacked(m, NULL);
}

static void fake_on_close(tb_tls_link *link, const char *reason, void *arg) {
    fake_replica *r = arg;
    (void)reason;
    if (r->link == link) {
        r->link = NULL;
    }
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
    tb_tls_callbacks cb = {NULL, fake_on_frame, fake_on_close, NULL};
    for (uint32_t j = 0; j < N; j++) {
        char name[32];
        fake_replica *r = &T.reps[j];
        r->id = j;
        r->status_answers = true;
        r->serves_cluster = "test";
        r->serves_epoch = 1;
        r->sub_after_seq_min = UINT64_MAX;
        snprintf(name, sizeof name, "replica-%u", (unsigned)j);
        ck_assert_int_eq(proto_pki_issue(T.ca_key, T.ca_cert, name, 1, &k, &c), 0);
        ck_assert_int_eq(tb_tls_ctx_new(T.ca_cert, c, k, &r->tls), 0);
        /* A replica signs with the key of its certificate: the client pins it. */
        ck_assert_int_eq(proto_pki_key_to_proto(k, &r->key), 0);
        EVP_PKEY_free(k);
        X509_free(c);
        tb_tls_ctx_set_log(r->tls, quiet, NULL);
        cb.arg = r;
        ck_assert_int_eq(tb_tls_listen(T.base, r->tls, "127.0.0.1", 0, &cb, &r->listener), 0);
    }
    fill_config(&T.cfg, 10000);
    T.executed = 10;
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
    event_base_loop(T.base, EVLOOP_NONBLOCK); /* deferred link callbacks, see tb_client_free */
    event_base_free(T.base);
}

static tb_client *client_new(uint32_t timeout_ms) {
    tb_client *c = NULL;
    T.cfg.timeout_ms = timeout_ms;
    ck_assert_int_eq(tb_client_new(T.base, &T.cfg, &c), 0);
    return c;
}

/* ---- intents ---- */

static void on_result(int status, const tb_result *r, void *arg) {
    (void)arg;
    T.calls++;
    T.status = status;
    T.had_cert = r != NULL && r->cert != NULL;
    if (r != NULL) {
        T.seq = r->seq;
        Twinbft__ResultLeaf *l = twinbft__result_leaf__unpack(NULL, r->leaf_len, r->leaf);
        ck_assert_ptr_nonnull(l);
        T.number = l->number;
        ck_assert_uint_eq(r->result_len, l->result.len);
        ck_assert_mem_eq(r->result, l->result.data, l->result.len);
        twinbft__result_leaf__free_unpacked(l, NULL);
    }
    if (T.had_cert) {
        T.cert_ok = tb_cert_verify(&T.cfg, r->cert, r->cert_len, 0, NULL) == 0;
    }
    event_base_loopexit(T.base, NULL);
}

/* Runs one request with the first `answering` replicas answering. */
static void run_one(tb_client *c, uint32_t answering) {
    for (uint32_t j = 0; j < N; j++) {
        T.reps[j].answers = j < answering;
    }
    T.calls = 0;
    ck_assert_int_eq(tb_client_submit(c, (const uint8_t *)"hello", 5, on_result, NULL), 0);
    ck_assert_int_eq(tb_client_submit(c, (const uint8_t *)"again", 5, on_result, NULL),
                     TB_ERR_STATE);
    ck_assert_int_eq(tb_client_query(c, (const uint8_t *)"", 1, NULL, NULL), TB_ERR_STATE);
    event_base_dispatch(T.base);
    ck_assert_int_eq(T.calls, 1);
}

/* All replicas answer: the result arrives with a certificate that verifies. */
START_TEST(test_quorum_gives_certificate) {
    tb_client *c = client_new(10000);
    ck_assert_str_eq(tb_client_name(c), "edge-1");
    run_one(c, N);
    ck_assert_int_eq(T.status, 0);
    ck_assert_uint_eq(T.seq, SEQ);
    ck_assert_uint_eq(T.number, 41);
    ck_assert(T.had_cert && T.cert_ok);
    /* The next request carries the next number. */
    ck_assert_uint_eq(tb_client_next_number(c), 42);
    run_one(c, N);
    ck_assert_int_eq(T.status, 0);
    ck_assert_uint_eq(T.number, 42);
    tb_client_free(c);
}
END_TEST

static uint64_t verifications(void) {
    uint64_t hits = 0, misses = 0;
    proto_verified_cache_stats(&hits, &misses);
    return misses;
}

/* Each signature is verified once per completed intent: q = 3 for the
 * certificate, not again to check the assembled certificate (it was 2q),
 * and tb_cert_verify of it in the callback, in the same thread, costs none.
 * The next request's replies sign another root: 3 more. */
START_TEST(test_one_verification_per_signature) {
    tb_client *c = client_new(10000);
    proto_verified_cache_clear();
    uint64_t v0 = verifications();
    run_one(c, N);
    ck_assert(T.had_cert && T.cert_ok);
    ck_assert_uint_eq(verifications(), v0 + 3);
    run_one(c, N);
    ck_assert(T.had_cert && T.cert_ok);
    ck_assert_uint_eq(verifications(), v0 + 6);
    tb_client_free(c);
}
END_TEST

/* f+1 replies but no quorum: the result stands, without a certificate. */
START_TEST(test_f_plus_one_without_certificate) {
    tb_client *c = client_new(10000);
    run_one(c, F + 1);
    ck_assert_int_eq(T.status, 0);
    ck_assert_uint_eq(T.number, 41);
    ck_assert(!T.had_cert);
    tb_client_free(c);
}
END_TEST

/* f replies cannot complete a request: it times out with TB_ERR_TIMEOUT, and
 * the number still advances. */
START_TEST(test_too_few_replies_time_out) {
    tb_client *c = client_new(1500);
    run_one(c, F);
    ck_assert_int_eq(T.status, TB_ERR_TIMEOUT);
    ck_assert(!T.had_cert);
    ck_assert_uint_eq(tb_client_next_number(c), 42);
    tb_client_free(c);
}
END_TEST

/* The blocking wrapper hands back an owned copy with a certificate that
 * tb_cert_verify accepts and whose info names the request. */
START_TEST(test_submit_wait_and_verify) {
    tb_client *c = client_new(10000);
    for (uint32_t j = 0; j < N; j++) {
        T.reps[j].answers = true;
    }
    ck_assert_int_eq(tb_client_connect_wait(c, 10000), 0);
    ck_assert_uint_ge(tb_client_connected(c), 1);
    tb_owned o;
    ck_assert_int_eq(tb_client_submit_wait(c, (const uint8_t *)"hello", 5, &o), 0);
    ck_assert_uint_eq(o.seq, SEQ);
    ck_assert_uint_eq(o.data_len, 5);
    ck_assert_mem_eq(o.data, "hello", 5);
    ck_assert_ptr_nonnull(o.cert);
    tb_cert_info info;
    ck_assert_int_eq(tb_cert_verify(&T.cfg, o.cert, o.cert_len, 0, &info), 0);
    ck_assert_uint_eq(info.seq, SEQ);
    ck_assert_uint_eq(info.index, 0);
    ck_assert_uint_eq(info.number, 41);
    ck_assert_str_eq(info.client, "edge-1");
    ck_assert_uint_eq(info.result_len, 5);
    tb_cert_info_clear(&info);
    o.cert[o.cert_len / 2] ^= 1;
    ck_assert_int_ne(tb_cert_verify(&T.cfg, o.cert, o.cert_len, 0, &info), 0);
    ck_assert_ptr_null(info.client);
    ck_assert_int_eq(tb_cert_verify(&T.cfg, (const uint8_t *)"junk", 4, 0, NULL), TB_ERR_INVALID);
    tb_owned_clear(&o);
    tb_client_free(c);
}
END_TEST

/* A one-member cluster (n = 1, f = 0): its one reply is the result and its
 * one signature the certificate, which verifies for that cluster and not for
 * the four-member one; its status call is answered by that replica. */
START_TEST(test_single_replica_cluster) {
    tb_client_config four = T.cfg;
    T.cfg.n = 1;
    T.cfg.f = 0;
    tb_client *c = client_new(10000);
    T.reps[0].answers = true;
    ck_assert_int_eq(tb_client_connect_wait(c, 10000), 0);
    ck_assert_uint_eq(tb_client_connected(c), 1);
    tb_owned o;
    ck_assert_int_eq(tb_client_submit_wait(c, (const uint8_t *)"hello", 5, &o), 0);
    ck_assert_uint_eq(o.seq, SEQ);
    ck_assert_ptr_nonnull(o.cert);
    ck_assert_int_eq(tb_cert_verify(&T.cfg, o.cert, o.cert_len, 0, NULL), 0);
    ck_assert_int_eq(tb_cert_verify(&four, o.cert, o.cert_len, 0, NULL), TB_ERR_QUORUM);
    tb_owned_clear(&o);
    tb_replica_status st[TB_MEMBERS_MAX];
    ck_assert_int_eq(tb_client_status_wait(c, st), 0);
    ck_assert(st[0].answered);
    tb_client_free(c);
}
END_TEST

/* ---- queries ---- */

/* A packed SmQuery (config_get "k"). */
static size_t sm_query(uint8_t out[64]) {
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    q.q_case = TWINBFT__SM_QUERY__Q_CONFIG_GET;
    q.config_get = "k";
    return twinbft__sm_query__pack(&q, out);
}

/* Three of four replicas return the same bytes: that is the answer, unordered,
 * and no request number is used. */
START_TEST(test_query_agreed_by_quorum) {
    uint8_t q[64];
    size_t q_len = sm_query(q);
    T.reps[0].query_answer = T.reps[1].query_answer = T.reps[2].query_answer = "same";
    T.reps[3].query_answer = "other";
    tb_client *c = client_new(10000);
    tb_owned o;
    ck_assert_int_eq(tb_client_query_wait(c, q, q_len, &o), 0);
    ck_assert(!o.ordered);
    ck_assert_uint_eq(o.seq, 9);
    ck_assert_uint_eq(o.data_len, 4);
    ck_assert_mem_eq(o.data, "same", 4);
    ck_assert_uint_eq(tb_client_next_number(c), 41);
    tb_owned_clear(&o);
    tb_client_free(c);
}
END_TEST

/* Two against two can never make a quorum: the query is ordered as SmOp.query
 * and answered with the SmQueryResult inside the ordered SmResult. */
START_TEST(test_query_disagreement_falls_back_to_ordering) {
    uint8_t q[64];
    size_t q_len = sm_query(q);
    T.reps[0].query_answer = T.reps[1].query_answer = "a";
    T.reps[2].query_answer = T.reps[3].query_answer = "b";
    for (uint32_t j = 0; j < N; j++) {
        T.reps[j].answers = true;
    }
    tb_client *c = client_new(10000);
    tb_owned o;
    ck_assert_int_eq(tb_client_query_wait(c, q, q_len, &o), 0);
    ck_assert(o.ordered);
    ck_assert_uint_eq(o.seq, SEQ);
    Twinbft__SmQueryResult *qr = twinbft__sm_query_result__unpack(NULL, o.data_len, o.data);
    ck_assert_ptr_nonnull(qr);
    ck_assert_str_eq(qr->detail, "ordered");
    twinbft__sm_query_result__free_unpacked(qr, NULL);
    ck_assert_uint_eq(tb_client_next_number(c), 42);
    tb_owned_clear(&o);
    /* Not an SmQuery at all: refused before anything is sent. */
    ck_assert_int_eq(tb_client_query_wait(c, (const uint8_t *)"\xff", 1, &o), TB_ERR_INVALID);
    tb_client_free(c);
}
END_TEST

/* Nobody answers the query or its ordered fallback: TB_ERR_TIMEOUT. */
START_TEST(test_query_times_out) {
    uint8_t q[64];
    size_t q_len = sm_query(q);
    tb_client *c = client_new(1500);
    tb_owned o;
    ck_assert_int_eq(tb_client_query_wait(c, q, q_len, &o), TB_ERR_TIMEOUT);
    tb_client_free(c);
}
END_TEST

/* ---- status ---- */

/* One replica stays silent: the others' entries are filled, its entry says
 * unanswered, and the call still completes (status 0) at the timeout. */
START_TEST(test_status_with_one_silent) {
    T.reps[3].status_answers = false;
    tb_client *c = client_new(1500);
    tb_replica_status st[N];
    ck_assert_int_eq(tb_client_status_wait(c, st), 0);
    for (uint32_t j = 0; j < 3; j++) {
        ck_assert(st[j].answered);
        ck_assert_uint_eq(st[j].id, j);
        ck_assert_uint_eq(st[j].view, 3);
        ck_assert_uint_eq(st[j].executed, 100 + j);
        ck_assert_uint_eq(st[j].peers, N - 1);
        ck_assert_uint_eq(st[j].peers_mask, 0xfu & ~(1u << j));
    }
    ck_assert(!st[3].answered);
    ck_assert_uint_eq(st[3].executed, 0);
    tb_client_free(c);
}
END_TEST

/* ---- subscriptions ---- */

static void on_command(const tb_command *cmd, void *arg) {
    (void)arg;
    ck_assert_uint_lt(T.n_delivered, DELIVERED_MAX);
    T.gap[T.n_delivered] = cmd->gap_before;
    T.delivered[T.n_delivered++] = (cmd_pos){cmd->seq, cmd->index};
    char want[64];
    snprintf(want, sizeof want, "cmd-%llu-%u", (unsigned long long)cmd->seq, cmd->index);
    T.delivered_cert_ok = T.delivered_cert_ok && cmd->result_len == strlen(want) &&
                          memcmp(cmd->result, want, cmd->result_len) == 0 &&
                          cmd->not_before_ms == 1000 + 100 * cmd->seq + cmd->index &&
                          cmd->expires_at_ms == UINT64_MAX &&
                          tb_cert_verify(&T.cfg, cmd->cert, cmd->cert_len, 0, NULL) == 0;
    if (T.unsubscribe_after > 0 && T.n_delivered == T.unsubscribe_after) {
        tb_client_unsubscribe(T.client);
    }
}

static void add_cmd(uint64_t seq, uint32_t index, const char *holders) {
    ck_assert_uint_lt(T.n_cmds, CMDS_MAX);
    T.cmds[T.n_cmds] = (cmd_pos){seq, index};
    for (const char *h = holders; *h != '\0'; h++) {
        T.reps[*h - '0'].has[T.n_cmds] = true;
    }
    T.n_cmds++;
}

static void run_until_delivered(tb_client *c, uint32_t count) {
    (void)c;
    while (T.n_delivered < count) {
        ck_assert_int_eq(event_base_loop(T.base, EVLOOP_ONCE), 0);
    }
}

/* Runs the loop until count commands were delivered or, failing that, until
 * `guard_ms` passed (a bound that keeps a broken client from hanging the
 * test; the caller asserts on what was delivered, not on time). */
static void on_guard(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    *(bool *)arg = true;
}

static void run_until_delivered_or(uint32_t count, uint32_t guard_ms) {
    bool expired = false;
    struct event *guard = evtimer_new(T.base, on_guard, &expired);
    struct timeval tv = {guard_ms / 1000, (guard_ms % 1000) * 1000};
    ck_assert_ptr_nonnull(guard);
    evtimer_add(guard, &tv);
    while (T.n_delivered < count && !expired) {
        ck_assert_int_eq(event_base_loop(T.base, EVLOOP_ONCE), 0);
    }
    event_free(guard);
}

/* A barrier: a status round trip with every replica. Each link is ordered,
 * so once every replica's status reply is in, everything it pushed before
 * has been handled. */
static void barrier(tb_client *c) {
    /* A status call may end once a quorum answered (TB_CLIENT_STATUS_GRACE_MS),
     * and a loaded machine can keep the last reply queued behind thousands of
     * pushes past it: ask again until every replica has answered one round. */
    bool answered[N] = {false};
    uint32_t left = N;
    for (int round = 0; left > 0; round++) {
        ck_assert_int_lt(round, 200);
        tb_replica_status st[N];
        ck_assert_int_eq(tb_client_status_wait(c, st), 0);
        for (uint32_t j = 0; j < N; j++) {
            if (st[j].answered && !answered[j]) {
                answered[j] = true;
                left--;
            }
        }
    }
}

/* Exactly these were delivered, with good certificates and windows, and
 * (unless the test says otherwise by checking T.gap itself) no gap. */
static void expect_delivered_gaps(const cmd_pos *want, uint32_t n, bool gaps_allowed) {
    ck_assert_uint_eq(T.n_delivered, n);
    for (uint32_t i = 0; i < n; i++) {
        ck_assert_uint_eq(T.delivered[i].seq, want[i].seq);
        ck_assert_uint_eq(T.delivered[i].index, want[i].index);
        ck_assert(gaps_allowed || !T.gap[i]);
    }
    ck_assert(T.delivered_cert_ok);
}

static void expect_delivered(const cmd_pos *want, uint32_t n) {
    expect_delivered_gaps(want, n, false);
}

/* Commands every replica keeps arrive in (seq, index) order, each once, with
 * certificates, across several Subscribe/SubscribeAck(more) rounds. */
START_TEST(test_subscription_in_order) {
    add_cmd(5, 0, "0123");
    add_cmd(5, 2, "0123");
    add_cmd(6, 1, "0123");
    add_cmd(8, 0, "0123");
    T.delivered_cert_ok = true;
    tb_client *c = client_new(10000);
    ck_assert_int_eq(tb_client_subscribe(c, 0, 0, on_command, NULL), 0);
    ck_assert_int_eq(tb_client_subscribe(c, 0, 0, on_command, NULL), TB_ERR_STATE);
    run_until_delivered(c, 4);
    barrier(c);
    cmd_pos want[] = {{5, 0}, {5, 2}, {6, 1}, {8, 0}};
    expect_delivered(want, 4);
    tb_client_free(c);
}
END_TEST

/* Commands of one batch share its signed root: four of them cost at most
 * one verification per replica (4), not a quorum each (12), let alone
 * assembly and verification each (24); the callback's tb_cert_verify of
 * every certificate costs none. */
START_TEST(test_subscription_one_verification_per_signer_per_batch) {
    for (uint32_t i = 0; i < BATCH_LEAVES; i++) {
        add_cmd(5, i, "0123");
    }
    T.delivered_cert_ok = true;
    proto_verified_cache_clear();
    uint64_t v0 = verifications();
    tb_client *c = client_new(10000);
    ck_assert_int_eq(tb_client_subscribe(c, 0, 0, on_command, NULL), 0);
    run_until_delivered(c, BATCH_LEAVES);
    barrier(c);
    cmd_pos want[] = {{5, 0}, {5, 1}, {5, 2}, {5, 3}};
    expect_delivered(want, BATCH_LEAVES);
    ck_assert_uint_ge(verifications(), v0 + 3);
    ck_assert_uint_le(verifications(), v0 + N);
    tb_client_free(c);
}
END_TEST

/* A certified later command waits while an earlier one is still pending and
 * alive (pushed by two replicas, passed over by only one); once the earlier
 * one is certified both come, in order. */
START_TEST(test_subscription_waits_for_earlier) {
    add_cmd(5, 0, "01");  /* two pushes: not certified, not dead */
    add_cmd(6, 0, "012"); /* certified */
    T.delivered_cert_ok = true;
    tb_client *c = client_new(10000);
    ck_assert_int_eq(tb_client_subscribe(c, 0, 0, on_command, NULL), 0);
    barrier(c);
    barrier(c); /* every replica has answered its Subscribe by now */
    ck_assert_uint_eq(T.reps[3].subscribes, 1);
    ck_assert_uint_eq(T.n_delivered, 0);
    /* Replica 3 catches up and pushes the earlier command too. */
    T.reps[3].has[0] = true;
    fake_push(&T.reps[3], 0);
    run_until_delivered(c, 2);
    cmd_pos want[] = {{5, 0}, {6, 0}};
    expect_delivered(want, 2);
    tb_client_free(c);
}
END_TEST

/* A command pushed by one (Byzantine) replica alone is dead once f+1 others
 * have pushed past it: the later certified command is delivered, the
 * Byzantine one never is. */
START_TEST(test_subscription_drops_dead_command) {
    add_cmd(5, 0, "3");
    add_cmd(6, 0, "012");
    add_cmd(7, 0, "0123");
    T.delivered_cert_ok = true;
    tb_client *c = client_new(10000);
    ck_assert_int_eq(tb_client_subscribe(c, 0, 0, on_command, NULL), 0);
    run_until_delivered(c, 2);
    barrier(c);
    barrier(c);
    cmd_pos want[] = {{6, 0}, {7, 0}};
    expect_delivered(want, 2);
    tb_client_free(c);
}
END_TEST

/* Every replica's link closes after two deliveries; on reopen the client
 * resubscribes after the last delivered command. Replicas that re-push old
 * commands cause no duplicates, and the new one arrives without a gap. */
START_TEST(test_subscription_resumes_after_reconnect) {
    add_cmd(5, 0, "0123");
    add_cmd(5, 1, "0123");
    T.delivered_cert_ok = true;
    tb_client *c = client_new(10000);
    ck_assert_int_eq(tb_client_subscribe(c, 0, 0, on_command, NULL), 0);
    run_until_delivered(c, 2);
    barrier(c);
    add_cmd(9, 3, "0123");
    T.push_from_start = true;
    for (uint32_t j = 0; j < N; j++) {
        ck_assert_ptr_nonnull(T.reps[j].link);
        tb_tls_link_free(T.reps[j].link);
        T.reps[j].link = NULL;
    }
    run_until_delivered(c, 3);
    barrier(c);
    barrier(c);
    cmd_pos want[] = {{5, 0}, {5, 1}, {9, 3}};
    expect_delivered(want, 3);
    for (uint32_t j = 0; j < N; j++) {
        ck_assert_uint_ge(T.reps[j].subscribes, 2);
        ck_assert_uint_eq(T.reps[j].sub_after_seq, 5); /* resumed after (5, 1) or later */
    }
    tb_client_free(c);
}
END_TEST

/* A Byzantine replica pushes TB_SUBSCRIPTION_PENDING_MAX made-up commands far
 * beyond what the replicas executed: they are refused, and the real command
 * the correct replicas push later is still delivered. */
START_TEST(test_subscription_survives_far_future_flood) {
    T.reps[3].flood = TB_SUBSCRIPTION_PENDING_MAX;
    T.reps[3].flood_seq = 1000000;
    add_cmd(5, 0, "");
    T.delivered_cert_ok = true;
    tb_client *c = client_new(10000);
    ck_assert_int_eq(tb_client_subscribe(c, 0, 0, on_command, NULL), 0);
    barrier(c);
    barrier(c);
    for (uint32_t j = 0; j < 3; j++) {
        T.reps[j].has[0] = true;
        fake_push(&T.reps[j], 0);
    }
    run_until_delivered(c, 1);
    barrier(c);
    cmd_pos want[] = {{5, 0}};
    expect_delivered(want, 1);
    tb_client_free(c);
}
END_TEST

/* The same flood within reach of execution: the flooder's quota of pending
 * commands (TB_SUBSCRIPTION_PENDING_MAX / n) stops it, so the real command
 * below the junk and a later one above it are both delivered (the junk below
 * the later one is dead once the correct replicas pass it). */
START_TEST(test_subscription_survives_flood_within_reach) {
    T.executed = 6000;
    T.reps[3].flood = TB_SUBSCRIPTION_PENDING_MAX;
    T.reps[3].flood_seq = 100;
    add_cmd(5, 0, "");
    add_cmd(5000, 1, "");
    T.delivered_cert_ok = true;
    tb_client *c = client_new(10000);
    ck_assert_int_eq(tb_client_subscribe(c, 0, 0, on_command, NULL), 0);
    barrier(c);
    barrier(c);
    for (uint32_t k = 0; k < 2; k++) {
        for (uint32_t j = 0; j < 3; j++) {
            T.reps[j].has[k] = true;
            fake_push(&T.reps[j], k);
        }
    }
    run_until_delivered(c, 2);
    barrier(c);
    cmd_pos want[] = {{5, 0}, {5000, 1}};
    expect_delivered(want, 2);
    tb_client_free(c);
}
END_TEST

/* The table is full: 3072 commands replicas 0 and 1 pushed (replica 2
 * lags; never evicted, as f+1 pushed them) and replica 3's quota of made-up
 * ones. Replica 0's next command evicts replica 3's highest instead of being
 * refused, and once replica 2 catches up every real command is delivered,
 * in order. */
START_TEST(test_subscription_full_table_evicts) {
    enum { OWN = TB_SUBSCRIPTION_PENDING_MAX / N, SHARED = TB_SUBSCRIPTION_PENDING_MAX - OWN };
    enum { CHUNK = 512 }; /* below every quota: a shared one is solo only briefly */
    T.executed = 30000;
    T.delivered_cert_ok = true;
    tb_client *c = client_new(10000);
    ck_assert_int_eq(tb_client_subscribe(c, 0, 0, on_command, NULL), 0);
    barrier(c);
    for (uint32_t k = 0; k < SHARED; k += CHUNK) {
        for (uint32_t j = 0; j < 2; j++) {
            for (uint32_t i = k; i < k + CHUNK; i++) {
                fake_push_at(&T.reps[j], (cmd_pos){10 + i, 0});
            }
        }
        barrier(c);
    }
    for (uint32_t k = 0; k < OWN; k++) {
        fake_push_at(&T.reps[3], (cmd_pos){20000 + k, 0});
    }
    barrier(c);
    fake_push_at(&T.reps[0], (cmd_pos){10 + SHARED, 0}); /* the table is full */
    barrier(c);
    fake_push_at(&T.reps[1], (cmd_pos){10 + SHARED, 0});
    for (uint32_t i = 0; i <= SHARED; i++) {
        fake_push_at(&T.reps[2], (cmd_pos){10 + i, 0});
    }
    run_until_delivered(c, SHARED + 1);
    barrier(c);
    ck_assert_uint_eq(T.n_delivered, SHARED + 1);
    for (uint32_t i = 0; i <= SHARED; i++) {
        ck_assert_uint_eq(T.delivered[i].seq, 10 + i);
        ck_assert(!T.gap[i]);
    }
    ck_assert(T.delivered_cert_ok);
    tb_client_free(c);
}
END_TEST

/* A full table does not make a replica's stream replay without end: with
 * 3072 commands replicas 0 and 1 pushed (replica 2 lags) and replica 3's
 * quota of made-up ones just above them, replica 0's next command evicts
 * one of replica 3's (the replica holding the most lone items, whatever
 * their position) instead of being refused and asked for again and again. */
START_TEST(test_subscription_full_table_no_replay_spin) {
    enum { OWN = TB_SUBSCRIPTION_PENDING_MAX / N, SHARED = TB_SUBSCRIPTION_PENDING_MAX - OWN };
    enum { CHUNK = 512 };
    T.executed = 30000;
    T.delivered_cert_ok = true;
    tb_client *c = client_new(10000);
    ck_assert_int_eq(tb_client_subscribe(c, 0, 0, on_command, NULL), 0);
    barrier(c);
    for (uint32_t k = 0; k < SHARED; k += CHUNK) {
        for (uint32_t j = 0; j < 2; j++) {
            for (uint32_t i = k; i < k + CHUNK; i++) {
                fake_push_at(&T.reps[j], (cmd_pos){10 + i, 0});
            }
        }
        barrier(c);
    }
    for (uint32_t k = 0; k < OWN; k++) {
        fake_push_at(&T.reps[3], (cmd_pos){10 + SHARED + k, 0}); /* just above the heads */
    }
    barrier(c);
    uint32_t before[N];
    for (uint32_t j = 0; j < N; j++) {
        before[j] = T.reps[j].subscribes;
    }
    add_cmd(10 + SHARED + OWN + 5, 0, "01");
    fake_push(&T.reps[0], 0);
    for (int k = 0; k < 10; k++) {
        barrier(c);
    }
    for (uint32_t j = 0; j < N; j++) {
        ck_assert_uint_le(T.reps[j].subscribes - before[j], 3);
    }
    tb_client_free(c);
}
END_TEST

/* A replica whose quota of lone items is used up is not asked to replay its
 * stream on every ack: its refused push waits for room (the number of
 * Subscribes it gets stays bounded while nothing changes), and once room
 * frees up the stream is replayed and the refused command delivered. */
START_TEST(test_subscription_quota_refusal_waits_for_room) {
    enum { OWN = TB_SUBSCRIPTION_PENDING_MAX / N };
    T.executed = 30000;
    T.delivered_cert_ok = true;
    tb_client *c = client_new(10000);
    ck_assert_int_eq(tb_client_subscribe(c, 0, 0, on_command, NULL), 0);
    barrier(c);
    for (uint32_t k = 0; k < OWN; k++) {
        fake_push_at(&T.reps[0], (cmd_pos){10 + k, 0}); /* others lag on these */
    }
    barrier(c);
    uint32_t before = T.reps[0].subscribes;
    add_cmd(10 + OWN + 5, 0, "0");
    fake_push(&T.reps[0], 0); /* refused: the quota is used up */
    for (int k = 0; k < 10; k++) {
        barrier(c);
    }
    ck_assert_uint_le(T.reps[0].subscribes - before, 3);
    ck_assert_uint_eq(T.n_delivered, 0);
    /* Replicas 1 and 2 catch up: the lone items are delivered, room frees
     * up, replica 0's stream is replayed, and the refused command comes. */
    for (uint32_t j = 1; j <= 2; j++) {
        for (uint32_t k = 0; k < OWN; k++) {
            fake_push_at(&T.reps[j], (cmd_pos){10 + k, 0});
        }
        fake_push(&T.reps[j], 0);
    }
    run_until_delivered_or(OWN + 1, 20000);
    barrier(c);
    ck_assert_uint_eq(T.n_delivered, OWN + 1);
    for (uint32_t i = 0; i < OWN; i++) {
        ck_assert_uint_eq(T.delivered[i].seq, 10 + i);
        ck_assert(!T.gap[i]);
    }
    ck_assert_uint_eq(T.delivered[OWN].seq, 10 + OWN + 5);
    ck_assert(!T.gap[OWN]);
    ck_assert(T.delivered_cert_ok);
    tb_client_free(c);
}
END_TEST

/* A push of an absurd size is refused before it is stored, and that
 * replica's stream is ignored from then on: the others still deliver. */
START_TEST(test_subscription_refuses_oversized_push) {
    add_cmd(5, 0, "012");
    T.delivered_cert_ok = true;
    tb_client *c = client_new(10000);
    ck_assert_int_eq(tb_client_subscribe(c, 0, 0, on_command, NULL), 0);
    barrier(c);
    /* Replica 3 pushes an earlier "command" whose leaf is over the limit. */
    static uint8_t big[TB_SUBSCRIPTION_LEAF_BYTES_MAX + 1];
    reply_buf rb;
    uint8_t leaf[1][LEAF_BYTES_MAX];
    size_t len = pack_leaf("operator", 400, (const uint8_t *)"x", 1, leaf[0]);
    reply_build(&rb, &T.reps[3], 4, leaf, &len, 1, 0);
    rb.rep.leaf = (ProtobufCBinaryData){sizeof big, big};
    Twinbft__Push push = TWINBFT__PUSH__INIT;
    push.reply = &rb.rep;
    push.to = "edge-1";
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_PUSH;
    m.push = &push;
    fake_send(T.reps[3].link, &m);
    run_until_delivered(c, 1);
    barrier(c);
    cmd_pos want[] = {{5, 0}};
    expect_delivered(want, 1);
    tb_client_free(c);
}
END_TEST

/* Two replicas reached their state by state transfer (horizon 6): they do not
 * push (5, 0), which the other two do, and that must not count as passing it
 * over. (5, 0) can no longer be certified, so it is given up, and (7, 0)
 * comes with gap_before set instead of silently skipping it. */
START_TEST(test_subscription_horizon_reports_gap) {
    T.reps[0].horizon = T.reps[1].horizon = 6;
    add_cmd(5, 0, "23");
    add_cmd(7, 0, "0123");
    T.delivered_cert_ok = true;
    tb_client *c = client_new(10000);
    ck_assert_int_eq(tb_client_subscribe(c, 0, 0, on_command, NULL), 0);
    run_until_delivered(c, 1);
    barrier(c);
    barrier(c);
    cmd_pos want[] = {{7, 0}};
    expect_delivered_gaps(want, 1, true);
    ck_assert(T.gap[0]);
    tb_client_free(c);
}
END_TEST

/* Horizons below the commands change nothing: the Byzantine replica's lone
 * (5, 0), passed over by f+1 replicas whose outboxes reach back that far, is
 * dead, not a gap, and (6, 0), pushed by f+1 replicas whose outboxes reach
 * back to the start, comes without gap_before. Only replica 0's horizon is
 * above 0: whichever f+1 of replicas 0-2 answer first to make (5, 0) dead,
 * one of them reaches back to the start and joins replica 3 to vouch for
 * (6, 0) whole. (With replicas 0 and 1 both at 3, (6, 0) came with
 * gap_before whenever replica 1 answered before replica 2.) */
START_TEST(test_subscription_dead_is_not_a_gap) {
    T.reps[0].horizon = 3;
    add_cmd(5, 0, "3");
    add_cmd(6, 0, "0123");
    T.delivered_cert_ok = true;
    tb_client *c = client_new(10000);
    ck_assert_int_eq(tb_client_subscribe(c, 0, 0, on_command, NULL), 0);
    run_until_delivered(c, 1);
    barrier(c);
    barrier(c);
    cmd_pos want[] = {{6, 0}};
    expect_delivered(want, 1);
    tb_client_free(c);
}
END_TEST

/* An ack that says "more" although nothing was sent makes the client ask
 * again after where it was, never from (0, 0) (which would replay the whole
 * outbox). */
START_TEST(test_subscription_empty_more_resumes_in_place) {
    T.reps[0].empty_more_once = true;
    add_cmd(5, 0, "0123");
    add_cmd(8, 0, "0123");
    T.delivered_cert_ok = true;
    tb_client *c = client_new(10000);
    ck_assert_int_eq(tb_client_subscribe(c, 5, 0, on_command, NULL), 0);
    run_until_delivered(c, 1);
    barrier(c);
    barrier(c);
    ck_assert_uint_ge(T.reps[0].subscribes, 2);
    ck_assert_uint_eq(T.reps[0].sub_after_seq_min, 5);
    cmd_pos want[] = {{8, 0}};
    expect_delivered(want, 1);
    tb_client_free(c);
}
END_TEST

/* The command callback unsubscribes after the first of three deliverable
 * commands: nothing more is delivered (and nothing freed is touched); a new
 * subscription from there delivers the rest once. */
START_TEST(test_subscription_unsubscribe_in_callback) {
    add_cmd(5, 0, "0123");
    add_cmd(6, 0, "0123");
    add_cmd(7, 0, "0123");
    T.delivered_cert_ok = true;
    tb_client *c = client_new(10000);
    T.client = c;
    T.unsubscribe_after = 1;
    ck_assert_int_eq(tb_client_subscribe(c, 0, 0, on_command, NULL), 0);
    run_until_delivered(c, 1);
    barrier(c);
    barrier(c);
    ck_assert_uint_eq(T.n_delivered, 1);
    T.unsubscribe_after = 0;
    ck_assert_int_eq(
        tb_client_subscribe(c, T.delivered[0].seq, T.delivered[0].index, on_command, NULL), 0);
    run_until_delivered(c, 3);
    barrier(c);
    cmd_pos want[] = {{5, 0}, {6, 0}, {7, 0}};
    expect_delivered(want, 3);
    tb_client_free(c);
}
END_TEST

/* ---- the blocking wrappers and reentrancy ---- */

static void on_result_nested(int status, const tb_result *r, void *arg) {
    (void)r, (void)arg;
    tb_owned o;
    tb_replica_status st[N];
    uint8_t q[64];
    size_t q_len = sm_query(q);
    T.status = status;
    T.calls++;
    T.nested[0] = tb_client_submit_wait(T.client, (const uint8_t *)"two", 3, &o);
    T.nested[1] = tb_client_query_wait(T.client, q, q_len, &o);
    T.nested[2] = tb_client_status_wait(T.client, st);
    T.nested[3] = tb_client_connect_wait(T.client, 10);
}

/* A *_wait from inside a client callback is refused with TB_ERR_STATE and
 * starts nothing: afterwards the client is idle and takes the next call. */
START_TEST(test_wait_refused_inside_callback) {
    tb_client *c = client_new(10000);
    T.client = c;
    for (uint32_t j = 0; j < N; j++) {
        T.reps[j].answers = true;
    }
    ck_assert_int_eq(tb_client_submit(c, (const uint8_t *)"one", 3, on_result_nested, NULL), 0);
    while (T.calls == 0) {
        ck_assert_int_eq(event_base_loop(T.base, EVLOOP_ONCE), 0);
    }
    ck_assert_int_eq(T.status, 0);
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_int_eq(T.nested[i], TB_ERR_STATE);
    }
    ck_assert_uint_eq(tb_client_next_number(c), 42); /* the refused submit used no number */
    tb_owned o;
    ck_assert_int_eq(tb_client_submit_wait(c, (const uint8_t *)"three", 5, &o), 0);
    ck_assert_uint_eq(o.seq, SEQ);
    tb_owned_clear(&o);
    tb_client_free(c);
}
END_TEST

/* Resubscribing does not count the old subscription's live pushes as part of
 * the new stream: a push of (9, 0) in flight when the client subscribes
 * again after (5, 0) does not let it resume past (8, 0), which every replica
 * keeps, so 6, 7, 8 and 9 all arrive, without gaps. */
START_TEST(test_subscription_resubscribe_ignores_old_stream) {
    add_cmd(5, 0, "0123");
    T.delivered_cert_ok = true;
    tb_client *c = client_new(10000);
    ck_assert_int_eq(tb_client_subscribe(c, 0, 0, on_command, NULL), 0);
    run_until_delivered(c, 1);
    barrier(c);
    tb_client_unsubscribe(c);
    add_cmd(6, 0, "0123"); /* executed while unsubscribed */
    add_cmd(7, 0, "0123");
    add_cmd(8, 0, "0123");
    add_cmd(9, 0, "0123");
    for (uint32_t j = 0; j < N; j++) {
        fake_push_at(&T.reps[j], (cmd_pos){9, 0}); /* the old subscription's live push */
    }
    ck_assert_int_eq(tb_client_subscribe(c, 5, 0, on_command, NULL), 0);
    run_until_delivered_or(5, 10000);
    barrier(c);
    barrier(c);
    cmd_pos want[] = {{5, 0}, {6, 0}, {7, 0}, {8, 0}, {9, 0}};
    expect_delivered(want, 5);
    tb_client_free(c);
}
END_TEST

/* The old subscription's SubscribeAck is not taken for the new one's: after
 * subscribing after (6, 0), unsubscribing and subscribing after (0, 0),
 * (5, 0), which every replica keeps, is delivered, not declared dead. */
START_TEST(test_subscription_resubscribe_ignores_stale_ack) {
    add_cmd(5, 0, "0123");
    add_cmd(7, 0, "0123");
    T.delivered_cert_ok = true;
    tb_client *c = client_new(10000);
    barrier(c); /* links open */
    ck_assert_int_eq(tb_client_subscribe(c, 6, 0, on_command, NULL), 0);
    tb_client_unsubscribe(c);
    ck_assert_int_eq(tb_client_subscribe(c, 0, 0, on_command, NULL), 0);
    run_until_delivered_or(2, 10000);
    barrier(c);
    barrier(c);
    cmd_pos want[] = {{5, 0}, {7, 0}};
    expect_delivered(want, 2);
    tb_client_free(c);
}
END_TEST

/* One replica that pushes a genuine command but never answers its Subscribe
 * cannot hold delivery: replicas 0 and 1 are past their horizons, so (7, 0)
 * (certified) waits for the silent replica's round only for
 * TB_SUBSCRIPTION_SOON_WAIT_MS, then comes with gap_before. */
START_TEST(test_subscription_silent_pusher_does_not_stall) {
    T.reps[0].horizon = T.reps[1].horizon = 3;
    T.reps[3].silent_sub = true;
    add_cmd(7, 0, "02");
    T.delivered_cert_ok = true;
    tb_client *c = client_new(10000);
    ck_assert_int_eq(tb_client_subscribe(c, 0, 0, on_command, NULL), 0);
    barrier(c);
    barrier(c);
    ck_assert_uint_eq(T.n_delivered, 0);
    fake_push_at(&T.reps[3], (cmd_pos){7, 0}); /* Byzantine: push, never ack */
    run_until_delivered_or(1, 10 * TB_SUBSCRIPTION_SOON_WAIT_MS);
    barrier(c);
    cmd_pos want[] = {{7, 0}};
    expect_delivered_gaps(want, 1, true);
    ck_assert(T.gap[0]);
    tb_client_free(c);
}
END_TEST

static void on_timer_nested(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what, (void)arg;
    tb_owned o;
    T.nested[0] = tb_client_submit_wait(T.client, (const uint8_t *)"two", 3, &o);
    T.calls++;
}

/* A *_wait from some other callback of the same base cannot run the loop:
 * it fails with TB_ERR_IO and cancels its call, so no callback later writes
 * into its returned frame (ASan would see it) and the client takes the next
 * call. */
START_TEST(test_wait_loop_failure_cancels) {
    tb_client *c = client_new(10000);
    T.client = c;
    for (uint32_t j = 0; j < N; j++) {
        T.reps[j].answers = true;
    }
    ck_assert_int_eq(tb_client_connect_wait(c, 10000), 0);
    struct event *timer = evtimer_new(T.base, on_timer_nested, NULL);
    struct timeval now = {0, 0};
    event_add(timer, &now);
    while (T.calls == 0) {
        ck_assert_int_eq(event_base_loop(T.base, EVLOOP_ONCE), 0);
    }
    event_free(timer);
    ck_assert_int_eq(T.nested[0], TB_ERR_IO);
    ck_assert_uint_eq(tb_client_next_number(c), 42); /* the cancelled request's number is used */
    T.calls = 0;
    ck_assert_int_eq(tb_client_submit(c, (const uint8_t *)"hello", 5, on_result, NULL), 0);
    event_base_dispatch(T.base);
    ck_assert_int_eq(T.calls, 1);
    ck_assert_int_eq(T.status, 0);
    ck_assert_uint_eq(T.number, 42);
    tb_client_free(c);
}
END_TEST

/* A Byzantine replica replies with the right seq and leaf but a wrong index:
 * it does not match the others, and the index reported is theirs. */
START_TEST(test_reply_index_must_match) {
    T.reps[0].lies_index = true;
    tb_client *c = client_new(10000);
    for (uint32_t j = 0; j < N; j++) {
        T.reps[j].answers = true;
    }
    tb_owned o;
    ck_assert_int_eq(tb_client_submit_wait(c, (const uint8_t *)"hello", 5, &o), 0);
    ck_assert_uint_eq(o.index, 0);
    ck_assert_ptr_nonnull(o.cert);
    tb_cert_info info;
    ck_assert_int_eq(tb_cert_verify(&T.cfg, o.cert, o.cert_len, 0, &info), 0);
    ck_assert_uint_eq(info.index, 0);
    tb_cert_info_clear(&info);
    tb_owned_clear(&o);
    tb_client_free(c);
}
END_TEST

/* ---- the cluster check ---- */

/* Requests and Queries all fakes received. */
static uint32_t fakes_asked(void) {
    uint32_t n = 0;
    for (uint32_t j = 0; j < N; j++) {
        n += T.reps[j].requests + T.reps[j].queries;
    }
    return n;
}

static void on_query_refused(int status, const uint8_t *result, size_t len, uint64_t executed,
                             bool ordered, void *arg) {
    (void)result, (void)len, (void)executed, (void)ordered, (void)arg;
    T.calls++;
    T.status = status;
    event_base_loopexit(T.base, NULL);
}

static void on_command_never(const tb_command *cmd, void *arg) {
    (void)cmd, (void)arg;
    ck_abort_msg("a command was delivered");
}

/* A client whose configuration names a cluster the replicas do not serve
 * (they all answer Requests, and say they serve "test", epoch 1): its
 * first intent fails with TB_ERR_WRONG_CLUSTER, and no replica ever got a
 * Request or a Query. Later intents, queries and subscriptions are refused
 * at once; tb_client_served names what the replicas serve. */
static void expect_refused_before_submitting(tb_client *c) {
    for (uint32_t j = 0; j < N; j++) {
        T.reps[j].answers = true;
        T.reps[j].query_answer = "answer";
    }
    T.calls = 0;
    ck_assert_int_eq(tb_client_submit(c, (const uint8_t *)"hello", 5, on_result, NULL), 0);
    event_base_dispatch(T.base);
    ck_assert_int_eq(T.calls, 1);
    ck_assert_int_eq(T.status, TB_ERR_WRONG_CLUSTER);
    tb_served s;
    ck_assert_int_eq(tb_client_served(c, &s), TB_ERR_WRONG_CLUSTER);
    ck_assert_uint_eq(s.cluster_id_len, 4);
    ck_assert_mem_eq(s.cluster_id, "test", 4);
    ck_assert_uint_eq(s.epoch, 1);
    ck_assert_int_eq(tb_client_submit(c, (const uint8_t *)"again", 5, on_result, NULL),
                     TB_ERR_WRONG_CLUSTER);
    uint8_t q[64];
    size_t q_len = sm_query(q);
    ck_assert_int_eq(tb_client_query(c, q, q_len, on_query_refused, NULL), TB_ERR_WRONG_CLUSTER);
    ck_assert_int_eq(tb_client_subscribe(c, 0, 0, on_command_never, NULL), TB_ERR_WRONG_CLUSTER);
    tb_owned o;
    ck_assert_int_eq(tb_client_submit_wait(c, (const uint8_t *)"hello", 5, &o),
                     TB_ERR_WRONG_CLUSTER);
    /* Every link had time to carry anything sent: nothing was. */
    barrier(c);
    ck_assert_uint_eq(fakes_asked(), 0);
}

/* Issue 9, item 11: the cluster file says epoch 7, the cluster is at
 * epoch 1. */
START_TEST(test_wrong_epoch_submits_nothing) {
    T.cfg.epoch = 7;
    tb_client *c = client_new(10000);
    expect_refused_before_submitting(c);
    tb_client_free(c);
}
END_TEST

/* The same with another cluster id ("tesT"; and "tes", a prefix), the
 * epoch right. */
START_TEST(test_wrong_cluster_id_submits_nothing) {
    memcpy(T.cfg.cluster_id, "tesT", 4);
    tb_client *c = client_new(10000);
    expect_refused_before_submitting(c);
    tb_client_free(c);
    T.cfg.cluster_id_len = 3;
    memcpy(T.cfg.cluster_id, "tes", 3);
    c = client_new(10000);
    expect_refused_before_submitting(c);
    tb_client_free(c);
}
END_TEST

/* What f = 1 Byzantine replica can do to the check: it cannot make a client
 * with a wrong epoch go ahead by agreeing with it, nor refuse a client
 * with the right one by contradicting it; alone with the configured pair
 * (the others silent) it cannot confirm it, so the intent times out with
 * nothing sent. */
START_TEST(test_one_liar_cannot_settle_the_check) {
    T.reps[0].serves_epoch = 7;
    T.cfg.epoch = 7; /* wrong, and replica 0 says so too */
    tb_client *c = client_new(10000);
    expect_refused_before_submitting(c);
    tb_client_free(c);

    T.cfg.epoch = 1; /* right, and replica 0 says 7 */
    c = client_new(10000);
    run_one(c, N);
    ck_assert_int_eq(T.status, 0);
    ck_assert(T.had_cert && T.cert_ok);
    ck_assert_int_eq(tb_client_served(c, NULL), 0);
    tb_client_free(c);

    T.reps[0].serves_epoch = 1; /* replica 0 alone says the configured pair */
    for (uint32_t j = 1; j < N; j++) {
        T.reps[j].status_answers = false;
        T.reps[j].requests = T.reps[j].queries = 0;
    }
    T.reps[0].requests = T.reps[0].queries = 0;
    c = client_new(1500);
    run_one(c, N);
    ck_assert_int_eq(T.status, TB_ERR_TIMEOUT);
    ck_assert_int_eq(tb_client_served(c, NULL), TB_ERR_AGAIN);
    ck_assert_uint_eq(fakes_asked(), 0);
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
    ck_assert_str_ne(tb_strerror(TB_ERR_TIMEOUT), tb_strerror(TB_ERR_QUORUM));
}
END_TEST

static Suite *client_suite(void) {
    Suite *s = suite_create("client");
    TCase *tc = tcase_create("client");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_quorum_gives_certificate);
    tcase_add_test(tc, test_one_verification_per_signature);
    tcase_add_test(tc, test_f_plus_one_without_certificate);
    tcase_add_test(tc, test_too_few_replies_time_out);
    tcase_add_test(tc, test_submit_wait_and_verify);
    tcase_add_test(tc, test_single_replica_cluster);
    tcase_add_test(tc, test_query_agreed_by_quorum);
    tcase_add_test(tc, test_query_disagreement_falls_back_to_ordering);
    tcase_add_test(tc, test_query_times_out);
    tcase_add_test(tc, test_status_with_one_silent);
    tcase_add_test(tc, test_subscription_in_order);
    tcase_add_test(tc, test_subscription_one_verification_per_signer_per_batch);
    tcase_add_test(tc, test_subscription_waits_for_earlier);
    tcase_add_test(tc, test_subscription_drops_dead_command);
    tcase_add_test(tc, test_subscription_resumes_after_reconnect);
    tcase_add_test(tc, test_subscription_survives_far_future_flood);
    tcase_add_test(tc, test_subscription_survives_flood_within_reach);
    tcase_add_test(tc, test_subscription_full_table_evicts);
    tcase_add_test(tc, test_subscription_full_table_no_replay_spin);
    tcase_add_test(tc, test_subscription_quota_refusal_waits_for_room);
    tcase_add_test(tc, test_subscription_refuses_oversized_push);
    tcase_add_test(tc, test_subscription_horizon_reports_gap);
    tcase_add_test(tc, test_subscription_dead_is_not_a_gap);
    tcase_add_test(tc, test_subscription_empty_more_resumes_in_place);
    tcase_add_test(tc, test_subscription_unsubscribe_in_callback);
    tcase_add_test(tc, test_subscription_resubscribe_ignores_old_stream);
    tcase_add_test(tc, test_subscription_resubscribe_ignores_stale_ack);
    tcase_add_test(tc, test_subscription_silent_pusher_does_not_stall);
    tcase_add_test(tc, test_wait_refused_inside_callback);
    tcase_add_test(tc, test_wait_loop_failure_cancels);
    tcase_add_test(tc, test_reply_index_must_match);
    tcase_add_test(tc, test_wrong_epoch_submits_nothing);
    tcase_add_test(tc, test_wrong_cluster_id_submits_nothing);
    tcase_add_test(tc, test_one_liar_cannot_settle_the_check);
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
