/* The state machine as the consensus core's application: the glue a host
 * writes (pbft_request/pbft_result to sm_request/sm_reply), four real
 * pbft_nodes each over its own store, checkpoints, state transfer through
 * snapshot/restore, and re-execution after a crash between a checkpoint's
 * commit and the host's. */
#include "test_sm_util.h"

#include <time.h>

#include "consensus/pbft.h"
#include "proto/frame.h"
#include "statemachine/sm_adapter.h"

/* ---- the glue: what replica/ and tests/sim write to use the adapter ---- */

static int glue_execute(void *ctx, uint64_t seq, uint64_t time_ms, const pbft_request *reqs,
                        size_t n, pbft_result *results) {
    sm_request sr[PBFT_BATCH_REQUESTS_MAX] = {{0}};
    sm_reply rr[PBFT_BATCH_REQUESTS_MAX] = {{0}};
    if (n > PBFT_BATCH_REQUESTS_MAX) {
        return TB_ERR_TOO_LARGE;
    }
    for (size_t i = 0; i < n; i++) {
        sr[i] = (sm_request){reqs[i].client, reqs[i].number, reqs[i].op, reqs[i].op_len};
    }
    int rc = sm_adapter_execute(ctx, seq, time_ms, sr, n, rr);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        results[i] = (pbft_result){rr[i].result, rr[i].result_len, rr[i].ttl_ms};
    }
    return rc;
}

static pbft_app glue_app(sm_adapter *a) {
    return (pbft_app){.ctx = a,
                      .execute = glue_execute,
                      .digest = sm_adapter_digest,
                      .checkpoint = sm_adapter_checkpoint,
                      .release = sm_adapter_release,
                      .snapshot = sm_adapter_snapshot,
                      .restore = sm_adapter_restore};
}

/* ---- a four-replica cluster on a FIFO queue ---- */

enum { N = 4, QMAX = 100000, RECMAX = 4096, CLIENT = N };

typedef struct rec {
    pbft_record_kind kind;
    uint64_t seq;
    char client[64];
    uint8_t *data;
    size_t len;
} rec;

typedef struct pkt {
    uint32_t from, to;
    uint8_t *data;
    size_t len;
} pkt;

static struct {
    pbft_node *node[N];
    smt store[N];
    sm_adapter *adapter[N];
    proto_key *keys[N];
    proto_pubkey *pubs[N];
    uint32_t ids[N];
    bool down[N];
    rec recs[N][RECMAX];
    size_t n_recs[N];
    pkt q[QMAX];
    size_t qh, qt;
    uint64_t now;
    uint64_t executed[N];
    size_t transfers[N];
    size_t replies_ok, replies;
} C;

static int sign_cb(void *ctx, const uint8_t *b, size_t len, uint8_t sig[PROTO_SIG_BYTES]) {
    return proto_sign_body(C.keys[*(uint32_t *)ctx], b, len, sig);
}

static bool verify_cb(void *ctx, uint32_t signer, const uint8_t *b, size_t len, const uint8_t *sig,
                      size_t sig_len) {
    (void)ctx;
    return signer < N && proto_verify_body(C.pubs[signer], b, len, sig, sig_len);
}

static void store_record(uint32_t i, const pbft_record *r) {
    if (r->kind == PBFT_REC_CLIENTS_CLEAR) {
        for (size_t k = 0; k < C.n_recs[i]; k++) {
            if (C.recs[i][k].kind == PBFT_REC_CLIENT) {
                free(C.recs[i][k].data);
                C.recs[i][k--] = C.recs[i][--C.n_recs[i]];
            }
        }
        return;
    }
    for (size_t k = 0; k < C.n_recs[i]; k++) {
        rec *e = &C.recs[i][k];
        if (e->kind == r->kind && e->seq == r->seq &&
            (r->client == NULL || strcmp(e->client, r->client) == 0)) {
            free(e->data);
            *e = C.recs[i][--C.n_recs[i]];
            break;
        }
    }
    if (!r->del) {
        ck_assert_uint_lt(C.n_recs[i], RECMAX);
        rec *e = &C.recs[i][C.n_recs[i]++];
        e->kind = r->kind;
        e->seq = r->seq;
        snprintf(e->client, sizeof e->client, "%s", r->client ? r->client : "");
        e->data = malloc(r->len ? r->len : 1);
        memcpy(e->data, r->data, r->len);
        e->len = r->len;
    }
}

static void enqueue(uint32_t from, uint32_t to, const uint8_t *d, size_t len) {
    ck_assert_uint_lt(C.qt, QMAX);
    C.q[C.qt++] = (pkt){from, to, malloc(len ? len : 1), len};
    memcpy(C.q[C.qt - 1].data, d, len);
}

/* pbft.h's contract: persist (the records ride in the adapter's transaction, which
 * this test keeps in memory next to it, then one commit), send, advance. */
static void drain(uint32_t i) {
    while (!C.down[i] && pbft_node_has_ready(C.node[i])) {
        pbft_ready rd;
        pbft_node_ready(C.node[i], &rd);
        ck_assert_ptr_nonnull(sm_adapter_txn(C.adapter[i]));
        for (size_t k = 0; k < rd.n_records; k++) {
            store_record(i, &rd.records[k]);
        }
        ck_assert_int_eq(sm_adapter_commit(C.adapter[i]), 0);
        for (size_t k = 0; k < rd.n_msgs; k++) {
            const pbft_msg *m = &rd.msgs[k];
            if (m->to == PBFT_TO_CLIENT) {
                enqueue(i, CLIENT, m->data, m->len);
                continue;
            }
            for (uint32_t j = 0; j < N; j++) {
                if (j != i && (m->to == PBFT_TO_ALL || m->to == j)) {
                    enqueue(i, j, m->data, m->len);
                }
            }
        }
        for (size_t k = 0; k < rd.n_executed; k++) {
            C.executed[i] = rd.executed[k].seq;
        }
        if (rd.transferred) {
            C.transfers[i]++;
            C.executed[i] = rd.transfer_seq > C.executed[i] ? rd.transfer_seq : C.executed[i];
        }
        uint64_t ready_id = rd.id;
        pbft_node_advance(C.node[i], &rd);
        pbft_node_durable(C.node[i], ready_id); /* the commit above is synced */
    }
}

static void start(uint32_t i) {
    pbft_config cfg;
    memset(&cfg, 0, sizeof cfg);
    pbft_config_defaults(&cfg);
    cfg.n = N;
    cfg.self = i;
    cfg.cluster_id = (const uint8_t *)"sm-test";
    cfg.cluster_id_len = 7;
    cfg.checkpoint_interval = 4;
    cfg.log_window = 8;
    cfg.batch_delay_ms = 0;
    cfg.request_timeout_ms = 100;
    cfg.view_timeout_ms = 200;
    cfg.crypto = (pbft_crypto){&C.ids[i], sign_cb, verify_cb};
    ck_assert_int_eq(sm_adapter_create(C.store[i].s, &C.adapter[i]), 0);
    cfg.app = glue_app(C.adapter[i]);
    ck_assert_int_eq(pbft_node_create(&cfg, C.now, &C.node[i]), 0);
    for (size_t k = 0; k < C.n_recs[i]; k++) {
        rec *e = &C.recs[i][k];
        ck_assert_int_eq(
            pbft_node_restore_record(C.node[i], e->kind, e->seq, e->client, e->data, e->len), 0);
    }
    ck_assert_int_eq(pbft_node_restore_done(C.node[i], C.now), 0);
    C.down[i] = false;
    drain(i);
}

static void setup(void) {
    memset(&C, 0, sizeof C);
    for (uint32_t i = 0; i < N; i++) {
        uint8_t seed[PROTO_SEED_BYTES] = {(uint8_t)(i + 1)};
        uint8_t pub[PROTO_PUBKEY_BYTES];
        C.ids[i] = i;
        ck_assert_int_eq(proto_key_from_seed(seed, &C.keys[i]), 0);
        ck_assert_int_eq(proto_key_public(C.keys[i], pub), 0);
        ck_assert_int_eq(proto_pubkey_from_raw(pub, &C.pubs[i]), 0);
        smt_open(&C.store[i]);
        start(i);
    }
}

/* A crash: the node and the adapter's uncommitted work are gone; the store
 * (and the records committed with it) survive. */
static void crash(uint32_t i) {
    pbft_node_free(C.node[i]);
    C.node[i] = NULL;
    sm_adapter_free(C.adapter[i]);
    C.adapter[i] = NULL;
    C.down[i] = true;
}

static void teardown(void) {
    for (uint32_t i = 0; i < N; i++) {
        pbft_node_free(C.node[i]);
        sm_adapter_free(C.adapter[i]);
        smt_close(&C.store[i]);
        proto_key_free(C.keys[i]);
        proto_pubkey_free(C.pubs[i]);
        for (size_t k = 0; k < C.n_recs[i]; k++) {
            free(C.recs[i][k].data);
        }
    }
    for (size_t k = C.qh; k < C.qt; k++) {
        free(C.q[k].data);
    }
}

/* Counts replies and checks that their results decode as SmResults. */
static void client_receives(const pkt *p) {
    Twinbft__Message *m = proto_message_unpack(p->data, p->len);
    ck_assert_ptr_nonnull(m);
    if (m->kind_case == TWINBFT__MESSAGE__KIND_REPLY) {
        Twinbft__ResultLeaf *leaf =
            twinbft__result_leaf__unpack(NULL, m->reply->leaf.len, m->reply->leaf.data);
        ck_assert_ptr_nonnull(leaf);
        Twinbft__SmResult *r =
            twinbft__sm_result__unpack(NULL, leaf->result.len, leaf->result.data);
        ck_assert_ptr_nonnull(r);
        C.replies++;
        C.replies_ok += r->code == SM_OK;
        twinbft__sm_result__free_unpacked(r, NULL);
        twinbft__result_leaf__free_unpacked(leaf, NULL);
    }
    twinbft__message__free_unpacked(m, NULL);
}

static void deliver_all(void) {
    while (C.qh < C.qt) {
        pkt p = C.q[C.qh++];
        if (p.to == CLIENT) {
            client_receives(&p);
        } else if (!C.down[p.to]) {
            pbft_from from = {.is_client = false, .replica = p.from};
            pbft_node_step(C.node[p.to], &from, p.data, p.len);
            drain(p.to);
        }
        free(p.data);
    }
}

static void tick(uint64_t ms) {
    for (uint64_t t = 0; t < ms; t += 10) {
        C.now += 10;
        for (uint32_t i = 0; i < N; i++) {
            if (!C.down[i]) {
                pbft_node_tick(C.node[i], C.now);
                drain(i);
            }
        }
        deliver_all();
    }
}

/* A client sends a packed SmOp to every live replica. */
static void submit(const char *client, uint64_t number, const Twinbft__SmOp *op) {
    uint8_t opb[1024];
    size_t op_len = twinbft__sm_op__get_packed_size(op);
    ck_assert_uint_le(op_len, sizeof opb);
    twinbft__sm_op__pack(op, opb);
    Twinbft__Request r = TWINBFT__REQUEST__INIT;
    r.client = (char *)client;
    r.number = number;
    r.op = (ProtobufCBinaryData){op_len, opb};
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_REQUEST;
    m.request = &r;
    uint8_t *b = NULL;
    size_t len = 0;
    ck_assert_int_eq(proto_message_pack(&m, &b, &len), 0);
    for (uint32_t i = 0; i < N; i++) {
        if (!C.down[i]) {
            pbft_from from = {.is_client = true, .client = client};
            pbft_node_step(C.node[i], &from, b, len);
            drain(i);
        }
    }
    free(b);
    deliver_all();
}

static void submit_config(uint64_t number) {
    char key[32], val[32];
    snprintf(key, sizeof key, "key/%llu", (unsigned long long)(number % 5));
    snprintf(val, sizeof val, "%llu", (unsigned long long)number);
    Twinbft__SmConfigPut m = TWINBFT__SM_CONFIG_PUT__INIT;
    m.key = key;
    m.value = (ProtobufCBinaryData){strlen(val), (uint8_t *)val};
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_CONFIG_PUT;
    op.config_put = &m;
    submit("op", number, &op);
}

static void grant_operator(void) {
    Twinbft__SmAclGrant g = TWINBFT__SM_ACL_GRANT__INIT;
    g.principal = "op";
    g.roles = SM_ROLE_OPERATOR;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_ACL_GRANT;
    op.acl_grant = &g;
    submit("admin", 1, &op);
}

static void store_digest(uint32_t i, uint8_t out[PROTO_DIGEST_BYTES]) {
    ck_assert_int_eq(sm_digest(C.store[i].s, NULL, out), 0);
}

/* Proves four replicas executing through the adapter agree on every result and on the
 * state digest, checkpoint after checkpoint, and answer clients with SmResults. */
START_TEST(test_cluster_agrees) {
    setup();
    grant_operator();
    for (uint64_t k = 1; k <= 14; k++) {
        submit_config(k);
    }
    uint8_t d0[PROTO_DIGEST_BYTES], di[PROTO_DIGEST_BYTES];
    store_digest(0, d0);
    for (uint32_t i = 0; i < N; i++) {
        ck_assert_uint_eq(C.executed[i], 15);
        store_digest(i, di);
        ck_assert_mem_eq(d0, di, sizeof d0);
        pbft_status st;
        pbft_node_status(C.node[i], &st);
        ck_assert_uint_eq(st.stable_seq, 12);
        ck_assert_uint_eq(sm_store_applied(C.store[i].s), 15);
    }
    ck_assert_uint_eq(C.replies, 15 * N);
    ck_assert_uint_eq(C.replies_ok, 15 * N);
    teardown();
}
END_TEST

/* Proves a replica that was down while the others moved more than a window ahead
 * catches up through snapshot/restore of the state machine, to the same digest. */
START_TEST(test_state_transfer) {
    setup();
    grant_operator();
    crash(3);
    for (uint64_t k = 1; k <= 22; k++) {
        submit_config(k);
    }
    start(3);
    submit_config(23);
    tick(1000);
    for (uint64_t k = 24; k <= 27; k++) {
        submit_config(k);
    }
    uint8_t d0[PROTO_DIGEST_BYTES], d3[PROTO_DIGEST_BYTES];
    ck_assert_uint_eq(C.transfers[3], 1); /* it caught up by restore, not by replaying */
    ck_assert_uint_eq(C.executed[3], 28);
    store_digest(0, d0);
    store_digest(3, d3);
    ck_assert_mem_eq(d0, d3, sizeof d0);
    smt_check_digest(&C.store[3]);
    smt_commit(&C.store[3]);
    pbft_status a, b;
    pbft_node_status(C.node[0], &a);
    pbft_node_status(C.node[3], &b);
    ck_assert_uint_eq(a.state_digest_seq, b.state_digest_seq);
    ck_assert_mem_eq(a.state_digest, b.state_digest, PROTO_DIGEST_BYTES);
    teardown();
}
END_TEST

/* Packs a config put as one request of a batch. */
static size_t config_op(uint8_t *buf, uint64_t k) {
    char key[32], val[32];
    snprintf(key, sizeof key, "key/%llu", (unsigned long long)(k % 3));
    snprintf(val, sizeof val, "%llu", (unsigned long long)k);
    Twinbft__SmConfigPut m = TWINBFT__SM_CONFIG_PUT__INIT;
    m.key = key;
    m.value = (ProtobufCBinaryData){strlen(val), (uint8_t *)val};
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_CONFIG_PUT;
    op.config_put = &m;
    return twinbft__sm_op__pack(&op, buf);
}

typedef struct batch_out {
    uint8_t bytes[2][512];
    size_t len[2];
} batch_out;

/* Executes batch seq: two requests (a grant at seq 1, config puts after). */
static void execute_batch(sm_adapter *a, uint64_t seq, batch_out *out) {
    uint8_t ops[2][256];
    sm_request req[2];
    sm_reply rep[2];
    for (int i = 0; i < 2; i++) {
        size_t len = 0;
        if (seq == 1 && i == 0) {
            Twinbft__SmAclGrant g = TWINBFT__SM_ACL_GRANT__INIT;
            g.principal = "op";
            g.roles = SM_ROLE_OPERATOR;
            Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
            op.op_case = TWINBFT__SM_OP__OP_ACL_GRANT;
            op.acl_grant = &g;
            len = twinbft__sm_op__pack(&op, ops[i]);
        } else {
            len = config_op(ops[i], seq * 2 + (uint64_t)i);
        }
        req[i] =
            (sm_request){seq == 1 && i == 0 ? "admin" : "op", seq * 2 + (uint64_t)i, ops[i], len};
    }
    ck_assert_int_eq(sm_adapter_execute(a, seq, 1000 * seq, req, 2, rep), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_uint_le(rep[i].result_len, sizeof out->bytes[i]);
        memcpy(out->bytes[i], rep[i].result, rep[i].result_len);
        out->len[i] = rep[i].result_len;
    }
}

/* Proves re-execution after a crash that lost the host's records but not a
 * checkpoint's commit: batches up to the checkpoint are answered from the history with
 * the same results and are not applied twice; the state ends where a clean run ends. */
START_TEST(test_reexecution_after_crash) {
    smt a, ref;
    smt_open(&a);
    smt_open(&ref);
    sm_adapter *x = NULL, *r = NULL;
    ck_assert_int_eq(sm_adapter_create(a.s, &x), 0);
    ck_assert_int_eq(sm_adapter_create(ref.s, &r), 0);
    static batch_out first[6], again;
    for (uint64_t seq = 1; seq <= 5; seq++) {
        execute_batch(x, seq, &first[seq]);
        if (seq == 4) {
            ck_assert_int_eq(sm_adapter_checkpoint(x, 4), 0); /* commits 1..4 */
        }
    }
    sm_adapter_free(x); /* crash: batch 5 and the host's records are lost */
    ck_assert_uint_eq(sm_store_applied(a.s), 4);
    ck_assert_int_eq(sm_adapter_create(a.s, &x), 0);
    uint8_t *snap = NULL;
    size_t snap_len = 0;
    ck_assert_int_eq(sm_adapter_snapshot(x, 4, &snap, &snap_len), TB_ERR_NOT_FOUND);
    for (uint64_t seq = 3; seq <= 5; seq++) {
        execute_batch(x, seq, &again);
        for (int i = 0; i < 2; i++) {
            ck_assert_uint_eq(again.len[i], first[seq].len[i]);
            ck_assert_mem_eq(again.bytes[i], first[seq].bytes[i], again.len[i]);
        }
    }
    ck_assert_int_eq(sm_adapter_commit(x), 0);
    for (uint64_t seq = 1; seq <= 5; seq++) {
        execute_batch(r, seq, &again);
    }
    ck_assert_int_eq(sm_adapter_commit(r), 0);
    uint8_t dx[PROTO_DIGEST_BYTES], dr[PROTO_DIGEST_BYTES];
    sm_adapter_digest(x, dx);
    sm_adapter_digest(r, dr);
    ck_assert_mem_eq(dx, dr, sizeof dx);
    sm_adapter_free(x);
    sm_adapter_free(r);
    smt_close(&a);
    smt_close(&ref);
}
END_TEST

/* Proves a checkpoint keeps the state of its seq for snapshots while execution goes on,
 * and restore installs it only when the digest matches. */
START_TEST(test_checkpoint_snapshot_restore) {
    smt a, b;
    smt_open(&a);
    smt_open(&b);
    sm_adapter *x = NULL, *y = NULL;
    ck_assert_int_eq(sm_adapter_create(a.s, &x), 0);
    ck_assert_int_eq(sm_adapter_create(b.s, &y), 0);
    static batch_out out;
    uint8_t d4[PROTO_DIGEST_BYTES] = {0}, d6[PROTO_DIGEST_BYTES] = {0};
    uint8_t dy[PROTO_DIGEST_BYTES] = {0};
    for (uint64_t seq = 1; seq <= 6; seq++) {
        execute_batch(x, seq, &out);
        if (seq == 2 || seq == 4) {
            sm_adapter_digest(x, seq == 4 ? d4 : dy);
            ck_assert_int_eq(sm_adapter_checkpoint(x, seq), 0);
        }
    }
    sm_adapter_digest(x, d6);
    ck_assert_mem_ne(d4, d6, sizeof d4);
    uint8_t *snap = NULL;
    size_t len = 0;
    ck_assert_int_eq(sm_adapter_snapshot(x, 4, &snap, &len), 0);
    uint8_t *none = NULL;
    size_t none_len = 0;
    ck_assert_int_eq(sm_adapter_snapshot(x, 3, &none, &none_len), TB_ERR_NOT_FOUND);
    ck_assert_int_eq(sm_adapter_snapshot(x, 2, &none, &none_len), 0);
    free(none);
    sm_adapter_release(x, 2);
    ck_assert_int_eq(sm_adapter_snapshot(x, 2, &none, &none_len), TB_ERR_NOT_FOUND);
    /* A wrong digest leaves y as it was; the right one installs seq 4's state. */
    uint8_t before[PROTO_DIGEST_BYTES];
    sm_adapter_digest(y, before);
    ck_assert_int_eq(sm_adapter_restore(y, 4, snap, len, d6), TB_ERR_MISMATCH);
    sm_adapter_digest(y, dy);
    ck_assert_mem_eq(before, dy, sizeof dy);
    ck_assert_int_eq(sm_adapter_restore(y, 4, snap, len, d4), 0);
    ck_assert_int_eq(sm_adapter_commit(y), 0);
    sm_adapter_digest(y, dy);
    ck_assert_mem_eq(d4, dy, sizeof dy);
    /* y goes on from seq 5 exactly as x did. */
    for (uint64_t seq = 5; seq <= 6; seq++) {
        execute_batch(y, seq, &out);
    }
    sm_adapter_digest(y, dy);
    ck_assert_mem_eq(d6, dy, sizeof dy);
    free(snap);
    sm_adapter_free(x);
    sm_adapter_free(y);
    smt_close(&a);
    smt_close(&b);
}
END_TEST

/* The manifest of seq from a spool exporting in the background: TB_ERR_AGAIN
 * until the export thread is done (polled for at most 30 s). */
static void spool_manifest(sm_adapter *a, uint64_t seq, uint32_t chunk, uint64_t *total,
                           uint8_t (**hashes)[PROTO_DIGEST_BYTES], size_t *n) {
    int rc = TB_ERR_AGAIN;
    for (int i = 0; i < 3000 && rc == TB_ERR_AGAIN; i++) {
        rc = sm_adapter_export_manifest(a, seq, chunk, total, hashes, n);
        if (rc == TB_ERR_AGAIN) {
            nanosleep(&(struct timespec){0, 10000000}, NULL);
        }
    }
    ck_assert_int_eq(rc, 0);
}

/* The spooled transfer: x exports checkpoint 4 on a thread while it goes
 * on executing; every chunk read back matches its hash; y imports the
 * chunks out of order and ends with x's state of seq 4 (and refuses them
 * against another digest); and x, reopened, serves the same export from
 * its files at once, with no kept checkpoint. */
START_TEST(test_spooled_transfer) {
    smt a, b;
    smt_open(&a);
    smt_open(&b);
    char spool_a[600], spool_b[600];
    snprintf(spool_a, sizeof spool_a, "%s/transfer", a.dir);
    snprintf(spool_b, sizeof spool_b, "%s/transfer", b.dir);
    sm_adapter *x = NULL, *y = NULL;
    ck_assert_int_eq(sm_adapter_create(a.s, &x), 0);
    ck_assert_int_eq(sm_adapter_create(b.s, &y), 0);
    ck_assert_int_eq(sm_adapter_spool(x, spool_a, true), 0);
    ck_assert_int_eq(sm_adapter_spool(y, spool_b, false), 0);
    static batch_out out;
    uint8_t d4[PROTO_DIGEST_BYTES], dy[PROTO_DIGEST_BYTES];
    for (uint64_t seq = 1; seq <= 4; seq++) {
        execute_batch(x, seq, &out);
    }
    sm_adapter_digest(x, d4);
    ck_assert_int_eq(sm_adapter_checkpoint(x, 4), 0);
    enum { CHUNK = 200 };
    uint64_t total = 0;
    uint8_t(*hashes)[PROTO_DIGEST_BYTES] = NULL;
    size_t n = 0;
    int rc = sm_adapter_export_manifest(x, 4, CHUNK, &total, &hashes, &n);
    ck_assert(rc == 0 || rc == TB_ERR_AGAIN);
    for (uint64_t seq = 5; seq <= 6; seq++) {
        execute_batch(x, seq, &out); /* the export reads seq 4's snapshot meanwhile */
    }
    if (rc != 0) {
        spool_manifest(x, 4, CHUNK, &total, &hashes, &n);
    }
    ck_assert_uint_gt(n, 2);
    ck_assert_uint_eq(n, (total + CHUNK - 1) / CHUNK);
    sm_adapter_release(x, 4); /* the export owns its transaction: nothing to release */
    ck_assert_int_eq(sm_adapter_import_begin(y, 4, total), 0);
    uint8_t buf[CHUNK];
    for (size_t k = n; k-- > 0;) {
        size_t len = k + 1 < n ? CHUNK : (size_t)(total - k * CHUNK);
        ck_assert_int_eq(sm_adapter_export_read(x, 4, k * CHUNK, buf, len), 0);
        uint8_t h[PROTO_DIGEST_BYTES];
        proto_sha256(buf, len, h);
        ck_assert_mem_eq(h, hashes[k], sizeof h);
        ck_assert_int_eq(sm_adapter_import_write(y, 4, k * CHUNK, buf, len), 0);
    }
    ck_assert_int_eq(sm_adapter_export_read(x, 4, total, buf, 1), TB_ERR_INVALID);
    ck_assert_int_eq(sm_adapter_export_read(x, 8, 0, buf, 1), TB_ERR_NOT_FOUND);
    /* The import is used up by a finish that fails, so write it again. */
    uint8_t wrong[PROTO_DIGEST_BYTES] = {1};
    ck_assert_int_eq(sm_adapter_import_finish(y, 4, wrong), TB_ERR_MISMATCH);
    ck_assert_int_eq(sm_adapter_import_begin(y, 4, total), 0);
    for (size_t k = 0; k < n; k++) {
        size_t len = k + 1 < n ? CHUNK : (size_t)(total - k * CHUNK);
        ck_assert_int_eq(sm_adapter_export_read(x, 4, k * CHUNK, buf, len), 0);
        ck_assert_int_eq(sm_adapter_import_write(y, 4, k * CHUNK, buf, len), 0);
    }
    ck_assert_int_eq(sm_adapter_import_finish(y, 4, d4), 0);
    ck_assert_int_eq(sm_adapter_commit(y), 0);
    sm_adapter_digest(y, dy);
    ck_assert_mem_eq(d4, dy, sizeof dy);
    /* Reopened, x serves the export from its files, with no kept checkpoint. */
    sm_adapter_free(x);
    ck_assert_int_eq(sm_adapter_create(a.s, &x), 0);
    ck_assert_int_eq(sm_adapter_spool(x, spool_a, true), 0);
    uint64_t total2 = 0;
    uint8_t(*hashes2)[PROTO_DIGEST_BYTES] = NULL;
    size_t n2 = 0;
    ck_assert_int_eq(sm_adapter_export_manifest(x, 4, CHUNK, &total2, &hashes2, &n2), 0);
    ck_assert_uint_eq(total2, total);
    ck_assert_uint_eq(n2, n);
    ck_assert_mem_eq(hashes2, hashes, n * PROTO_DIGEST_BYTES);
    ck_assert_int_eq(sm_adapter_export_manifest(x, 2, CHUNK, &total2, &hashes2, &n2),
                     TB_ERR_NOT_FOUND);
    free(hashes);
    free(hashes2);
    sm_adapter_free(x);
    sm_adapter_free(y);
    smt_close(&a);
    smt_close(&b);
}
END_TEST

static Suite *adapter_suite(void) {
    Suite *s = suite_create("sm_adapter");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_cluster_agrees);
    tcase_add_test(tc, test_state_transfer);
    tcase_add_test(tc, test_reexecution_after_crash);
    tcase_add_test(tc, test_checkpoint_snapshot_restore);
    tcase_add_test(tc, test_spooled_transfer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(adapter_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
