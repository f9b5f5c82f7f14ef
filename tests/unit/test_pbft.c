/* Transcript tests of the PBFT core: a few replicas wired by a FIFO queue
 * that the test controls (deliver, drop, crash), with real Ed25519 keys, a
 * counter application, and certificates checked by proto_cert_verify. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/pbft.h"
#include "proto/cert.h"
#include "proto/crypto.h"
#include "proto/frame.h"
#include "proto/tb_err.h"

enum { NMAX = 7, QMAX = 100000, RECMAX = 4096 };

/* ---- a counter application: op = key byte, result = 8-byte new value ---- */
typedef struct app {
    uint64_t v[8];
    uint64_t ckpt_seq[64];
    uint64_t ckpt_v[64][8];
    size_t n_ckpt;
    uint8_t result[64][8];
    int fail;      /* execute and checkpoint return this (a full disk) */
    uint64_t skew; /* added once to the next value (non-determinism) */
    size_t pad;    /* zero bytes after the values in a snapshot (a large state) */
    uint32_t exports;
} app;

static int app_execute(void *ctx, uint64_t seq, uint64_t time_ms, const pbft_request *reqs,
                       size_t n, pbft_result *res) {
    app *a = ctx;
    (void)seq;
    (void)time_ms;
    if (a->fail != 0) {
        return a->fail;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t k = reqs[i].op_len ? reqs[i].op[0] % 8 : 0;
        a->v[k] += 1 + a->skew;
        a->skew = 0;
        memcpy(a->result[i % 64], &a->v[k], 8);
        res[i] = (pbft_result){a->result[i % 64], 8, 0};
    }
    return 0;
}

static void app_digest(void *ctx, uint8_t out[PROTO_DIGEST_BYTES]) {
    proto_sha256(((app *)ctx)->v, sizeof((app *)ctx)->v, out);
}

static int app_checkpoint(void *ctx, uint64_t seq) {
    app *a = ctx;
    if (a->fail != 0) {
        return a->fail;
    }
    size_t i = a->n_ckpt < 64 ? a->n_ckpt++ : 63;
    a->ckpt_seq[i] = seq;
    memcpy(a->ckpt_v[i], a->v, sizeof a->v);
    return 0;
}

static void app_release(void *ctx, uint64_t seq) {
    (void)ctx;
    (void)seq;
}

/* The padding of a large state: not all zero, so that chunks differ. */
static uint8_t pad_byte(size_t i) {
    return (uint8_t)(i % 251);
}

static int app_snapshot(void *ctx, uint64_t seq, uint8_t **out, size_t *len) {
    app *a = ctx;
    for (size_t i = a->n_ckpt; i-- > 0;) {
        if (a->ckpt_seq[i] == seq) {
            *out = malloc(sizeof a->v + a->pad);
            memcpy(*out, a->ckpt_v[i], sizeof a->v);
            for (size_t k = 0; k < a->pad; k++) {
                (*out)[sizeof a->v + k] = pad_byte(k);
            }
            *len = sizeof a->v + a->pad;
            a->exports++;
            return 0;
        }
    }
    return -1;
}

static int app_restore(void *ctx, uint64_t seq, const uint8_t *data, size_t len,
                       const uint8_t expected[PROTO_DIGEST_BYTES]) {
    app *a = ctx;
    (void)seq;
    uint8_t d[PROTO_DIGEST_BYTES];
    if (len < sizeof a->v) {
        return -1;
    }
    for (size_t k = sizeof a->v; k < len; k++) {
        if (data[k] != pad_byte(k - sizeof a->v)) {
            return TB_ERR_MISMATCH;
        }
    }
    len = sizeof a->v;
    proto_sha256(data, len, d);
    if (expected && memcmp(d, expected, sizeof d) != 0) {
        return -1;
    }
    memcpy(a->v, data, len);
    return 0;
}

/* The safety lane: ops whose first byte is 'E' (an e-stop, say) are
 * priority, by the application's judgement alone. */
static bool app_priority(void *ctx, const uint8_t *op, size_t len) {
    (void)ctx;
    return len > 0 && op[0] == 'E';
}

/* ---- the cluster ---- */
typedef struct rec {
    pbft_record_kind kind;
    uint64_t seq;
    char client[64];
    uint8_t *data;
    size_t len;
} rec;

typedef struct pkt {
    uint32_t from, to; /* to == NMAX: the client */
    uint8_t *data;
    size_t len;
} pkt;

static struct {
    uint32_t n;
    pbft_node *node[NMAX];
    app apps[NMAX];
    proto_key *keys[NMAX];
    proto_pubkey *pubs[NMAX];
    uint32_t ids[NMAX];
    bool down[NMAX];
    bool mute[NMAX];           /* everything it sends is lost */
    bool deaf[NMAX];           /* everything sent to it is lost */
    bool late_pp[NMAX];        /* pre-prepares sent to it wait in `late` */
    bool no_relays[NMAX];      /* relays sent to it are lost (a primary that censors) */
    bool lazy_sync[NMAX];      /* its commits are not made durable (no pbft_node_durable) */
    bool bad_chunks[NMAX];     /* it changes a byte of every state-transfer chunk it sends */
    bool log_on;               /* the nodes keep a retained log (cfg.log over recs) */
    uint64_t early_sent[NMAX]; /* messages it sent marked early */
    pkt late[16];
    size_t n_late;
    rec recs[NMAX][RECMAX];
    size_t n_recs[NMAX];
    pkt q[QMAX];
    size_t qh, qt;
    uint64_t now;
    uint64_t executed[NMAX];
    uint64_t verifies;      /* signatures checked by the nodes */
    uint64_t signs;         /* signatures made by the nodes */
    uint64_t relays_lost;   /* relays dropped for no_relays */
    bool wall_on;           /* nodes get a wall clock of their own: */
    int64_t wall_off[NMAX]; /* now + wall_off[i] */
    Twinbft__Reply *replies[64];
    size_t n_replies;
} C;

/* Before a node steps or ticks: its wall clock, when the test gives it one. */
static void wall(uint32_t i) {
    if (C.wall_on) {
        pbft_node_set_wall(C.node[i], (uint64_t)((int64_t)C.now + C.wall_off[i]));
    }
}

static int sign_cb(void *ctx, const uint8_t *b, size_t len, uint8_t sig[PROTO_SIG_BYTES]) {
    C.signs++;
    return proto_sign_body(C.keys[*(uint32_t *)ctx], b, len, sig);
}

static bool verify_cb(void *ctx, uint32_t signer, const uint8_t *b, size_t len, const uint8_t *sig,
                      size_t sig_len) {
    (void)ctx;
    C.verifies++;
    return signer < C.n && proto_verify_body(C.pubs[signer], b, len, sig, sig_len);
}

/* pbft_log.read over a node's stored LOG records (ctx: its id). */
static int log_read(void *ctx, uint64_t seq, uint8_t **data, size_t *len) {
    uint32_t i = *(uint32_t *)ctx;
    for (size_t k = 0; k < C.n_recs[i]; k++) {
        if (C.recs[i][k].kind == PBFT_REC_LOG && C.recs[i][k].seq == seq) {
            *data = malloc(C.recs[i][k].len);
            memcpy(*data, C.recs[i][k].data, C.recs[i][k].len);
            *len = C.recs[i][k].len;
            return 0;
        }
    }
    return TB_ERR_NOT_FOUND;
}

/* Batching delay of the nodes setup() starts (tests that look at batching
 * set it first; setup() does not reset it). */
static uint32_t batch_delay_ms;

static pbft_config config(uint32_t i) {
    pbft_config cfg;
    memset(&cfg, 0, sizeof cfg);
    pbft_config_defaults(&cfg);
    cfg.n = C.n;
    cfg.self = i;
    cfg.cluster_id = (const uint8_t *)"test";
    cfg.cluster_id_len = 4;
    cfg.checkpoint_interval = 4;
    cfg.log_window = 8;
    cfg.batch_delay_ms = batch_delay_ms;
    cfg.request_timeout_ms = 100;
    cfg.view_timeout_ms = 200;
    cfg.crypto = (pbft_crypto){&C.ids[i], sign_cb, verify_cb};
    if (C.log_on) {
        cfg.log = (pbft_log){&C.ids[i], log_read};
    }
    cfg.app = (pbft_app){.ctx = &C.apps[i],
                         .execute = app_execute,
                         .digest = app_digest,
                         .checkpoint = app_checkpoint,
                         .release = app_release,
                         .snapshot = app_snapshot,
                         .restore = app_restore,
                         .priority = app_priority};
    return cfg;
}

static void store(uint32_t i, const pbft_record *r) {
    if (r->kind == PBFT_REC_CLIENTS_CLEAR) {
        for (size_t k = 0; k < C.n_recs[i]; k++) {
            if (C.recs[i][k].kind == PBFT_REC_CLIENT) {
                free(C.recs[i][k].data);
                C.recs[i][k] = C.recs[i][--C.n_recs[i]];
                k--;
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
    if (C.bad_chunks[from]) {
        Twinbft__Message *m = proto_message_unpack(d, len);
        if (m != NULL && m->kind_case == TWINBFT__MESSAGE__KIND_CHUNK && m->chunk->data.len > 0) {
            m->chunk->data.data[m->chunk->data.len / 2] ^= 0x5a;
            free(C.q[C.qt - 1].data);
            ck_assert_int_eq(proto_message_pack(m, &C.q[C.qt - 1].data, &C.q[C.qt - 1].len), 0);
        }
        if (m != NULL) {
            twinbft__message__free_unpacked(m, NULL);
        }
    }
}

/* persist, then send, then advance: the contract of pbft.h */
static void drain(uint32_t i) {
    while (!C.down[i] && pbft_node_has_ready(C.node[i])) {
        pbft_ready rd;
        pbft_node_ready(C.node[i], &rd);
        for (size_t k = 0; k < rd.n_records; k++) {
            store(i, &rd.records[k]);
        }
        for (size_t k = 0; k < rd.n_msgs; k++) {
            const pbft_msg *m = &rd.msgs[k];
            C.early_sent[i] += m->early;
            if (C.mute[i]) {
                continue;
            }
            if (m->to == PBFT_TO_CLIENT) {
                enqueue(i, NMAX, m->data, m->len);
            } else {
                for (uint32_t j = 0; j < C.n; j++) {
                    if (j != i && (m->to == PBFT_TO_ALL || m->to == j)) {
                        enqueue(i, j, m->data, m->len);
                    }
                }
            }
        }
        for (size_t k = 0; k < rd.n_executed; k++) {
            C.executed[i] = rd.executed[k].seq;
        }
        uint64_t ready_id = rd.id;
        pbft_node_advance(C.node[i], &rd);
        if (!C.lazy_sync[i]) {
            pbft_node_durable(C.node[i], ready_id); /* the commit above is synced */
        }
    }
}

static void start(uint32_t i) {
    ck_assert_int_eq(pbft_node_create(&(pbft_config){0}, 0, &C.node[i]), -1);
    pbft_config cfg = config(i);
    ck_assert_int_eq(pbft_node_create(&cfg, C.now, &C.node[i]), 0);
    for (size_t k = 0; k < C.n_recs[i]; k++) {
        rec *e = &C.recs[i][k];
        if (e->kind == PBFT_REC_LOG) {
            continue; /* read on demand, never restored */
        }
        ck_assert_int_eq(
            pbft_node_restore_record(C.node[i], e->kind, e->seq, e->client, e->data, e->len), 0);
    }
    ck_assert_int_eq(pbft_node_restore_done(C.node[i], C.now), 0);
    C.down[i] = false;
    drain(i);
}

static void setup(uint32_t n) {
    memset(&C, 0, sizeof C);
    C.n = n;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t seed[PROTO_SEED_BYTES] = {(uint8_t)(i + 1)};
        uint8_t pub[PROTO_PUBKEY_BYTES];
        C.ids[i] = i;
        ck_assert_int_eq(proto_key_from_seed(seed, &C.keys[i]), 0);
        ck_assert_int_eq(proto_key_public(C.keys[i], pub), 0);
        ck_assert_int_eq(proto_pubkey_from_raw(pub, &C.pubs[i]), 0);
        start(i);
    }
}

static void crash(uint32_t i) {
    pbft_node_free(C.node[i]);
    C.node[i] = NULL;
    C.down[i] = true;
    /* C.apps[i] is durable: drain() commits it together with the records. */
}

static void teardown(void) {
    for (uint32_t i = 0; i < C.n; i++) {
        pbft_node_free(C.node[i]);
        proto_key_free(C.keys[i]);
        proto_pubkey_free(C.pubs[i]);
        for (size_t k = 0; k < C.n_recs[i]; k++) {
            free(C.recs[i][k].data);
        }
    }
    for (size_t k = C.qh; k < C.qt; k++) {
        free(C.q[k].data);
    }
    for (size_t k = 0; k < C.n_late; k++) {
        free(C.late[k].data);
    }
    for (size_t k = 0; k < C.n_replies; k++) {
        twinbft__reply__free_unpacked(C.replies[k], NULL);
    }
}

/* Delivers queued messages until the network is quiet. */
static void deliver_all(void) {
    while (C.qh < C.qt) {
        pkt p = C.q[C.qh++];
        if (p.to == NMAX) {
            Twinbft__Message *m = proto_message_unpack(p.data, p.len);
            ck_assert_ptr_nonnull(m);
            if (m->kind_case == TWINBFT__MESSAGE__KIND_REPLY && C.n_replies < 64) {
                C.replies[C.n_replies++] = m->reply;
                m->reply = NULL;
                m->kind_case = TWINBFT__MESSAGE__KIND__NOT_SET;
            }
            twinbft__message__free_unpacked(m, NULL);
        } else if (C.late_pp[p.to] && C.n_late < 16 &&
                   proto_message_kind_peek(p.data, p.len) == TWINBFT__MESSAGE__KIND_PRE_PREPARE) {
            C.late[C.n_late++] = p;
            continue; /* delivered by deliver_late */
        } else if (C.no_relays[p.to] &&
                   proto_message_kind_peek(p.data, p.len) == TWINBFT__MESSAGE__KIND_RELAY) {
            C.relays_lost++;
        } else if (!C.down[p.to] && !C.deaf[p.to]) {
            pbft_from from = {.is_client = false, .replica = p.from};
            wall(p.to);
            wall(p.to);
            pbft_node_step(C.node[p.to], &from, p.data, p.len);
            drain(p.to);
        }
        free(p.data);
    }
}

/* Delivers the pre-prepares deliver_all kept back, now. */
static void deliver_late(void) {
    for (size_t k = 0; k < C.n_late; k++) {
        pkt p = C.late[k];
        pbft_from from = {.is_client = false, .replica = p.from};
        wall(p.to);
        pbft_node_step(C.node[p.to], &from, p.data, p.len);
        drain(p.to);
        free(p.data);
    }
    C.n_late = 0;
    deliver_all();
}

/* Starts replica i from its records, tells it its links to every peer are
 * open, and hands out what it has to send. */
static void start_linked(uint32_t i) {
    start(i);
    for (uint32_t j = 0; j < C.n; j++) {
        if (j != i) {
            pbft_node_peer_connected(C.node[i], j);
        }
    }
    drain(i);
}

/* The primary (replica 0) restarts; it abstains in its view and asks for
 * the next one, and that VIEW-CHANGE reaches `backup` alone, as a faulty
 * primary's could. */
static void primary_view_change_reaches_only(uint32_t backup) {
    crash(0);
    for (uint32_t j = 1; j < C.n; j++) {
        C.deaf[j] = j != backup;
    }
    start_linked(0);
    deliver_all();
    for (uint32_t j = 1; j < C.n; j++) {
        C.deaf[j] = false;
    }
}

static void tick(uint64_t ms) {
    for (uint64_t t = 0; t < ms; t += 10) {
        C.now += 10;
        for (uint32_t i = 0; i < C.n; i++) {
            if (!C.down[i]) {
                wall(i);
                pbft_node_tick(C.node[i], C.now);
                drain(i);
            }
        }
        deliver_all();
    }
}

/* Submits to the replicas whose bit is set in `to` (and that are up). */
static void submit_to(const char *client, uint64_t number, uint8_t key, bool priority,
                      uint32_t to) {
    Twinbft__Request r = TWINBFT__REQUEST__INIT;
    r.client = (char *)client;
    r.number = number;
    r.op = (ProtobufCBinaryData){1, &key};
    r.priority = priority;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_REQUEST;
    m.request = &r;
    uint8_t *b = NULL;
    size_t len = 0;
    ck_assert_int_eq(proto_message_pack(&m, &b, &len), 0);
    for (uint32_t i = 0; i < C.n; i++) {
        if (!C.down[i] && (to & (1u << i)) != 0) {
            pbft_from from = {.is_client = true, .client = client};
            wall(i);
            pbft_node_step(C.node[i], &from, b, len);
            drain(i);
        }
    }
    free(b);
}

static void submit_flagged(const char *client, uint64_t number, uint8_t key, bool priority) {
    submit_to(client, number, key, priority, UINT32_MAX);
}

static void submit(const char *client, uint64_t number, uint8_t key) {
    submit_flagged(client, number, key, false);
}

static proto_trust trust(void) {
    proto_trust t;
    memset(&t, 0, sizeof t);
    memcpy(t.cluster_id, "test", 4);
    t.cluster_id_len = 4;
    t.n = C.n;
    t.f = pbft_f(C.n);
    for (uint32_t i = 0; i < C.n; i++) {
        t.keys[i] = C.pubs[i];
    }
    return t;
}

static pbft_status status(uint32_t i) {
    pbft_status st;
    pbft_node_status(C.node[i], &st);
    return st;
}

/* One request goes through pre-prepare/prepare/commit on every replica,
 * every replica replies, and the replies form a certificate that verifies. */
START_TEST(test_normal_case_certificate) {
    setup(4);
    submit("alice", 1, 3);
    deliver_all();
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(C.executed[i], 1);
        ck_assert_uint_eq(C.apps[i].v[3], 1);
    }
    ck_assert_uint_eq(C.n_replies, 4);
    proto_trust t = trust();
    uint8_t *cert = NULL;
    size_t len = 0;
    ck_assert_int_eq(
        proto_cert_assemble(&t, (const Twinbft__Reply *const *)C.replies, 4, &cert, &len), 0);
    proto_cert_info info;
    ck_assert_int_eq(proto_cert_verify(&t, cert, len, 0, &info), 0);
    ck_assert_str_eq(info.client, "alice");
    ck_assert_uint_eq(info.number, 1);
    ck_assert_uint_eq(info.seq, 1);
    proto_cert_info_clear(&info);
    cert[len / 2] ^= 1;
    ck_assert_int_ne(proto_cert_verify(&t, cert, len, 0, NULL), 0);
    free(cert);
    teardown();
}
END_TEST

/* A retransmitted request is answered again but never executed twice. */
START_TEST(test_retransmission_exactly_once) {
    setup(4);
    submit("alice", 1, 2);
    deliver_all();
    submit("alice", 1, 2);
    deliver_all();
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(C.apps[i].v[2], 1);
        ck_assert_uint_eq(C.executed[i], 1);
    }
    ck_assert_uint_eq(C.n_replies, 8); /* every replica answered both times */
    teardown();
}
END_TEST

/* Retransmissions cost no signature: the replica resends the signed root
 * it made for the batch. After a restart (nothing kept in memory) a repeat
 * costs one signature per replica, and further repeats none. */
START_TEST(test_retransmission_signs_nothing_new) {
    setup(4);
    submit("alice", 1, 2);
    deliver_all();
    uint64_t signs = C.signs;
    size_t replies = C.n_replies;
    for (int k = 0; k < 5; k++) {
        submit("alice", 1, 2);
        deliver_all();
    }
    ck_assert_uint_eq(C.signs, signs);
    ck_assert_uint_eq(C.n_replies, replies + 5 * 4);
    for (uint32_t i = 0; i < 4; i++) {
        crash(i);
        start(i);
    }
    deliver_all();
    signs = C.signs;
    replies = C.n_replies;
    for (int k = 0; k < 5; k++) {
        submit("alice", 1, 2);
        deliver_all();
    }
    ck_assert_uint_eq(C.signs, signs + 4);
    ck_assert_uint_eq(C.n_replies, replies + 5 * 4);
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(C.apps[i].v[2], 1);
    }
    teardown();
}
END_TEST

/* An application that cannot execute (its disk is full) stops the node:
 * the batch is not executed, nothing more is taken, no ready is offered
 * (the writes may be partial), and the others go on without it. */
START_TEST(test_application_fault_stops_the_node) {
    setup(4);
    submit("ann", 1, 1);
    deliver_all();
    C.apps[3].fail = TB_ERR_NOSPACE;
    submit("ann", 2, 1);
    deliver_all();
    ck_assert_int_eq(pbft_node_fault(C.node[3]), TB_ERR_NOSPACE);
    ck_assert(!pbft_node_has_ready(C.node[3]));
    ck_assert_uint_eq(status(3).executed, 1);
    ck_assert_uint_eq(C.apps[3].v[1], 1);
    pbft_from from = {.is_client = false, .replica = 0};
    ck_assert_int_eq(pbft_node_step(C.node[3], &from, (const uint8_t *)"x", 1), TB_ERR_STATE);
    submit("ann", 3, 1);
    deliver_all();
    for (uint32_t i = 0; i < 3; i++) {
        ck_assert_uint_eq(status(i).executed, 3);
        ck_assert_uint_eq(C.apps[i].v[1], 3);
    }
    ck_assert_uint_eq(status(3).executed, 1);
    /* A node whose genesis checkpoint fails is not created. */
    pbft_node *bad = NULL;
    pbft_config cfg = config(3);
    ck_assert_int_eq(pbft_node_create(&cfg, C.now, &bad), TB_ERR_NOSPACE);
    ck_assert_ptr_null(bad);
    teardown();
}
END_TEST

/* Timers run on the timer clock (pbft_node_tick), not on the wall clock:
 * every wall clock stepped back 30 s freezes no timer, so a silent primary
 * is replaced on time, and the new primary's stamps (on the same stepped
 * clocks) are accepted. */
START_TEST(test_wall_clock_step_leaves_timers_alone) {
    setup(4);
    C.now += 100000; /* room for clocks 30 s behind */
    C.wall_on = true;
    submit("bob", 1, 1);
    deliver_all();
    tick(100);
    for (uint32_t i = 0; i < 4; i++) {
        C.wall_off[i] = -30000; /* every wall clock is stepped back */
    }
    C.mute[0] = true;
    submit("bob", 2, 1);
    deliver_all();
    tick(2000);
    for (uint32_t i = 1; i < 4; i++) {
        pbft_status st = status(i);
        ck_assert_uint_ge(st.view, 1);
        ck_assert(!st.in_view_change);
        ck_assert_uint_eq(C.apps[i].v[1], 2);
    }
    /* Stepped forward 60 s, with a request waiting: nothing fires early. */
    uint64_t vcs = status(1).view_changes;
    for (uint32_t i = 0; i < 4; i++) {
        C.wall_off[i] = 30000;
    }
    C.mute[1] = true; /* the primary of view 1, so that the request waits */
    submit("bob", 3, 1);
    deliver_all();
    tick(20);
    ck_assert_uint_eq(status(2).view_changes, vcs);
    ck_assert(!status(2).in_view_change);
    teardown();
}
END_TEST

/* A replica whose wall clock is 30 s behind drops the primary's batches
 * (stamped 30 s ahead of it) and says so: the count and the offset are in
 * its status. The others go on. */
START_TEST(test_clock_off_replica_reports_offset) {
    setup(4);
    C.now += 100000; /* room for clocks 30 s behind */
    C.wall_on = true;
    C.wall_off[3] = -30000;
    submit("cy", 1, 1);
    deliver_all();
    for (uint32_t i = 0; i < 3; i++) {
        ck_assert_uint_eq(C.apps[i].v[1], 1);
        ck_assert_uint_eq(status(i).ts_rejected, 0);
    }
    pbft_status st = status(3);
    ck_assert_uint_ge(st.ts_rejected, 1);
    ck_assert_int_ge(st.ts_offset_ms, 29000);
    ck_assert_int_le(st.ts_offset_ms, 31000);
    teardown();
}
END_TEST

/* A primary that orders everyone's requests but one client's cannot
 * starve that client: its request ages on its own at the backups, however
 * many other requests execute meanwhile, and forces a view change. Under
 * the old rule (any execution restarted the timer) eve waited as long as
 * bob kept writing. */
START_TEST(test_censored_client_forces_view_change) {
    setup(4);
    C.no_relays[0] = true;              /* the primary ignores the backups' relays */
    submit_to("eve", 1, 5, false, 0xe); /* and never takes eve's request */
    for (uint64_t k = 1; k <= 40 && C.apps[1].v[5] == 0; k++) {
        submit("bob", k, 1);
        deliver_all();
        tick(20); /* a batch every 20 ms, the request timeout is 100 ms */
    }
    for (uint32_t i = 1; i < 4; i++) {
        ck_assert_uint_eq(C.apps[i].v[5], 1);
        ck_assert_uint_ge(status(i).view, 1);
    }
    ck_assert_uint_lt(C.apps[1].v[1], 40); /* it did not have to wait for bob to stop */
    teardown();
}
END_TEST

/* A request that never reached the primary (the client's link to it is
 * down) is relayed by the backups that hold it, after half the request
 * timeout, and ordered in the same view: no view change. */
START_TEST(test_request_missing_at_primary_is_relayed) {
    setup(4);
    submit_to("eve", 1, 5, false, 0xe);
    tick(40);
    ck_assert_uint_eq(C.apps[1].v[5], 0); /* half the timeout (50 ms) not yet out */
    tick(60);
    for (uint32_t i = 0; i < 4; i++) {
        pbft_status st = status(i);
        ck_assert_uint_eq(C.apps[i].v[5], 1);
        ck_assert_uint_eq(st.view, 0);
        ck_assert_uint_eq(st.view_changes, 0);
        ck_assert_uint_eq(st.relays_sent, i == 0 ? 0 : 1);
    }
    ck_assert_uint_eq(status(0).relays_taken, 1);
    /* Relayed once per view: the executed request is not relayed again. */
    tick(300);
    ck_assert_uint_eq(status(1).relays_sent, 1);
    teardown();
}
END_TEST

/* The primary takes a relayed request only on the word of f+1 replicas:
 * one replica's relay (which a Byzantine backup could forge) is not enough,
 * and saying it twice is still one vouch. Once a second replica holds the
 * request and relays it, it is ordered, and the replica that never had it
 * executes it too, on the f+1 prepares. */
START_TEST(test_relay_needs_f_plus_one) {
    setup(4);
    submit_to("mallory", 1, 6, false, 0x2); /* only backup 1 holds it */
    tick(60);
    ck_assert_uint_eq(status(1).relays_sent, 1);
    ck_assert_uint_eq(status(0).relays_taken, 0);
    submit("bob", 1, 1); /* the primary works meanwhile */
    deliver_all();
    tick(40);
    ck_assert_uint_eq(C.apps[0].v[1], 1);
    ck_assert_uint_eq(C.apps[0].v[6], 0);
    ck_assert_uint_eq(status(0).relays_taken, 0);
    submit_to("mallory", 1, 6, false, 0x4); /* now backup 2 has it too */
    tick(60);
    ck_assert_uint_eq(status(0).relays_taken, 1);
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(C.apps[i].v[6], 1);
        ck_assert_uint_eq(status(i).view, 0);
    }
    teardown();
}
END_TEST

/* A replica whose execution is not deterministic (planted: one value off
 * by one) takes a checkpoint whose digest a quorum contradicts. It says so
 * in its status, stops executing and voting, and once the others' stable
 * checkpoint passes what it executed, state transfer gives it the certified
 * state, after which it takes part again. Before, it carried on silently
 * with the wrong state, signing replies and checkpoints for it. */
START_TEST(test_divergent_replica_stops_and_transfers) {
    setup(4);
    C.apps[3].skew = 1;
    for (uint64_t k = 1; k <= 4; k++) {
        submit("dan", k, 2);
        deliver_all();
    }
    pbft_status st = status(3);
    ck_assert_uint_eq(st.diverged_seq, 4);
    ck_assert_uint_eq(st.divergences, 1);
    ck_assert_mem_eq(st.diverged_quorum, status(0).state_digest, PROTO_DIGEST_BYTES);
    ck_assert(memcmp(st.diverged_own, st.diverged_quorum, PROTO_DIGEST_BYTES) != 0);
    ck_assert_uint_eq(C.apps[3].v[2], 5); /* the wrong state */
    /* A restart does not make it forget. */
    crash(3);
    start(3);
    pbft_status again = status(3);
    ck_assert_uint_eq(again.diverged_seq, 4);
    ck_assert_mem_eq(again.diverged_own, st.diverged_own, PROTO_DIGEST_BYTES);
    ck_assert_mem_eq(again.diverged_quorum, st.diverged_quorum, PROTO_DIGEST_BYTES);
    /* It neither executes nor votes: the others run alone meanwhile. */
    uint64_t sent = C.qt;
    submit("dan", 5, 2);
    deliver_all();
    ck_assert_uint_eq(C.executed[3], 4);
    for (size_t k = sent; k < C.qt; k++) {
        ck_assert_uint_ne(C.q[k].from, 3);
    }
    /* What it holds cannot execute while it is diverged: it must not
     * suspect the primary for it and change view alone (found by review). */
    tick(500);
    ck_assert_uint_eq(status(3).view, 0);
    ck_assert(!status(3).in_view_change);
    for (uint64_t k = 6; k <= 12; k++) {
        submit("dan", k, 2);
        deliver_all();
        tick(20);
    }
    tick(300);
    st = status(3);
    ck_assert_uint_eq(st.diverged_seq, 0);
    ck_assert_uint_eq(st.divergences, 1);
    ck_assert_uint_eq(C.executed[3], 12);
    ck_assert_uint_eq(C.apps[3].v[2], 12);
    ck_assert_mem_eq(st.state_digest, status(0).state_digest, PROTO_DIGEST_BYTES);
    /* Back in: it votes on the next request again. */
    sent = C.qt;
    submit("dan", 13, 2);
    deliver_all();
    bool voted = false;
    for (size_t k = sent; k < C.qt; k++) {
        voted |= C.q[k].from == 3;
    }
    ck_assert(voted);
    ck_assert_uint_eq(C.apps[3].v[2], 13);
    teardown();
}
END_TEST

/* A silent primary is replaced: request timers expire, replicas fetch,
 * then move to view 1, whose primary orders the request. */
START_TEST(test_silent_primary_view_change) {
    setup(4);
    C.mute[0] = true;
    submit("bob", 1, 1);
    deliver_all();
    ck_assert_uint_eq(C.executed[1], 0);
    tick(2000);
    for (uint32_t i = 1; i < 4; i++) {
        pbft_status st = status(i);
        ck_assert_uint_ge(st.view, 1);
        ck_assert(!st.in_view_change);
        ck_assert_uint_eq(C.executed[i], 1);
        ck_assert_uint_eq(C.apps[i].v[1], 1);
    }
    teardown();
}
END_TEST

/* Checkpoints every K=4 become stable and move the low watermark; the
 * window (L=8) never blocks a client that waits for its replies. */
START_TEST(test_checkpoints_advance_watermark) {
    setup(4);
    for (uint64_t k = 1; k <= 20; k++) {
        submit("carol", k, (uint8_t)k);
        deliver_all();
    }
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(C.executed[i], 20);
        ck_assert_uint_eq(status(i).stable_seq, 20);
    }
    teardown();
}
END_TEST

/* A replica that was down while the others moved more than a window ahead
 * catches up by state transfer and then has the same state digest. */
START_TEST(test_crash_restart_state_transfer) {
    setup(4);
    submit("dave", 1, 5);
    deliver_all();
    crash(3);
    for (uint64_t k = 2; k <= 24; k++) {
        submit("dave", k, 5);
        deliver_all();
    }
    start(3);
    submit("dave", 25, 5);
    deliver_all();
    tick(1000);
    for (uint64_t k = 26; k <= 29; k++) {
        submit("dave", k, 5);
        deliver_all();
    }
    pbft_status a = status(0), b = status(3);
    ck_assert_uint_eq(C.executed[3], 29);
    ck_assert_uint_eq(C.apps[3].v[5], 29);
    ck_assert_uint_eq(a.state_digest_seq, b.state_digest_seq);
    ck_assert_mem_eq(a.state_digest, b.state_digest, PROTO_DIGEST_BYTES);
    teardown();
}
END_TEST

/* A state of several chunks (more than the 32 MiB one reply could carry
 * before chunking) reaches a replica that fell a window behind. With
 * bad_from set, that peer changes a byte of every chunk it serves: each
 * such chunk is dropped on arrival, the peer is asked for nothing more,
 * and the others finish the transfer. */
static void large_state_transfer(uint32_t bad_from) {
    setup(4);
    submit("omar", 1, 5);
    deliver_all();
    crash(3);
    for (uint32_t i = 0; i < 3; i++) {
        C.apps[i].pad = 40u << 20;
        C.bad_chunks[i] = i == bad_from;
    }
    for (uint64_t k = 2; k <= 24; k++) {
        submit("omar", k, 5);
        deliver_all();
    }
    start_linked(3);
    deliver_all();
    submit("omar", 25, 5); /* replica 3 sees it is behind */
    deliver_all();
    for (int r = 0; r < 40 && status(3).executed < C.executed[0]; r++) {
        tick(50);
        deliver_all();
    }
    pbft_status st = status(3);
    ck_assert_uint_eq(st.executed, C.executed[0]);
    ck_assert_uint_eq(C.apps[3].v[5], 25);
    ck_assert_uint_eq(st.xfer_completed, 1);
    ck_assert_uint_eq(st.xfer_refused, 0);
    ck_assert_uint_ge(st.xfer_chunks_in, 41); /* 40 MiB and the values: 41 chunks */
    ck_assert_uint_eq(st.xfer_bytes_in, (40u << 20) + sizeof C.apps[3].v);
    if (bad_from < 3) {
        ck_assert_uint_ge(st.xfer_chunks_bad, 1);
        ck_assert_uint_le(st.xfer_chunks_bad, 8); /* the window at most, then never again */
    } else {
        ck_assert_uint_eq(st.xfer_chunks_bad, 0);
    }
    uint64_t served = 0;
    for (uint32_t i = 0; i < 3; i++) {
        ck_assert_uint_le(C.apps[i].exports, 1); /* one export serves every chunk */
        served += status(i).xfer_chunks_out;
    }
    ck_assert_uint_ge(served, 41);
    pbft_status a = status(0);
    ck_assert_uint_eq(a.state_digest_seq, st.state_digest_seq);
    ck_assert_mem_eq(a.state_digest, st.state_digest, PROTO_DIGEST_BYTES);
    teardown();
}

/* With a retained log, a replica that fell several windows behind replays
 * the batches it missed from a peer's log (checking each certificate, and
 * moving its window at each checkpoint the log proves) instead of fetching
 * the state: no transfer, the same digest. */
START_TEST(test_behind_replays_the_retained_log) {
    setup(4);
    C.log_on = true;
    for (uint32_t i = 0; i < 4; i++) {
        pbft_node_free(C.node[i]);
        start(i); /* again, with the log */
    }
    submit("lara", 1, 5);
    deliver_all();
    crash(3);
    for (uint64_t k = 2; k <= 40; k++) {
        submit("lara", k, 5);
        deliver_all();
    }
    start_linked(3);
    deliver_all();
    submit("lara", 41, 5);
    deliver_all();
    for (int r = 0; r < 40 && status(3).executed < C.executed[0]; r++) {
        tick(50);
        deliver_all();
    }
    pbft_status st = status(3), a = status(0);
    ck_assert_uint_eq(st.executed, C.executed[0]);
    ck_assert_uint_eq(C.apps[3].v[5], 41);
    ck_assert_uint_eq(st.xfer_completed, 0);
    ck_assert_uint_ge(st.log_replayed, 30);
    ck_assert_uint_eq(st.state_digest_seq, a.state_digest_seq);
    ck_assert_mem_eq(st.state_digest, a.state_digest, PROTO_DIGEST_BYTES);
    teardown();
}
END_TEST

START_TEST(test_large_state_transfers_in_chunks) {
    large_state_transfer(UINT32_MAX);
}
END_TEST

START_TEST(test_bad_chunks_are_dropped_on_arrival) {
    large_state_transfer(1);
}
END_TEST

/* n=5 has f=1 but needs quorums of 4: with two replicas silent nothing
 * commits (3 = 2f+1 would be unsafe there). */
START_TEST(test_n5_quorum_is_four) {
    setup(5);
    ck_assert_uint_eq(pbft_quorum(5), 4);
    ck_assert_uint_eq(pbft_quorum(4), 3);
    ck_assert_uint_eq(pbft_quorum(7), 5);
    C.down[3] = C.down[4] = true;
    submit("erin", 1, 0);
    deliver_all();
    ck_assert_uint_eq(C.executed[0], 0);
    C.down[3] = C.down[4] = false;
    teardown();
}
END_TEST

/* Garbage from the network is dropped and counted, never fatal. */
START_TEST(test_garbage_dropped) {
    setup(4);
    uint8_t junk[64];
    for (int i = 0; i < 64; i++) {
        junk[i] = (uint8_t)(i * 37 + 11);
    }
    pbft_from from = {.is_client = false, .replica = 1};
    for (size_t len = 0; len <= sizeof junk; len++) {
        pbft_node_step(C.node[0], &from, junk, len);
    }
    ck_assert_uint_gt(status(0).dropped, 0);
    submit("frank", 1, 0);
    deliver_all();
    ck_assert_uint_eq(C.executed[0], 1);
    teardown();
}
END_TEST

/* The replica, not the client, decides the safety lane: under a long
 * batching delay an op the application calls priority executes without
 * waiting, while an ordinary op flagged priority by its client waits out
 * the delay like any other. */
START_TEST(test_priority_lane_is_the_replicas_decision) {
    batch_delay_ms = 1000;
    setup(4);
    submit_flagged("bob", 1, 'x', true); /* claims priority, is not */
    tick(20);
    ck_assert_uint_eq(C.executed[0], 0);
    submit("alice", 1, 'E');
    tick(20);
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_uint_ge(C.executed[i], 1);
        ck_assert_uint_eq(C.apps[i].v['E' % 8], 1);
    }
    tick(1000);
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(C.apps[i].v['x' % 8], 1);
    }
    teardown();
    batch_delay_ms = 0;
}
END_TEST

/* A primary that is killed, misses the whole view change and comes back
 * in its old view joins the new one from the traffic of f+1 replicas (and
 * the NEW-VIEW its VIEW-CHANGE makes the new primary resend) instead of
 * staying behind as the self-appointed primary of a dead view. */
START_TEST(test_restarted_primary_joins_the_new_view) {
    setup(4);
    crash(0);
    submit("erin", 1, 4);
    deliver_all();
    tick(2000);
    uint64_t view = status(1).view;
    ck_assert_uint_ge(view, 1);
    ck_assert_uint_eq(C.executed[1], 1);
    start(0);
    /* It restarted as view 0's primary, so it asks for view 1 at once. */
    ck_assert_uint_eq(status(0).vc_cause, PBFT_VC_PRIMARY_RESTART);
    for (uint64_t k = 2; k <= 4; k++) {
        submit("erin", k, 4);
        deliver_all();
        tick(200);
    }
    pbft_status st = status(0);
    ck_assert_uint_eq(st.view, view);
    ck_assert(!st.in_view_change);
    ck_assert_uint_ne(st.primary, 0);
    ck_assert_uint_eq(C.executed[0], 4);
    ck_assert_uint_eq(C.apps[0].v[4], 4);
    teardown();
}
END_TEST

/* The queued PRE-PREPAREs from replica `from` for `view`: their seqs and
 * digests (at most max). */
static size_t queued_pre_prepares(uint32_t from, uint64_t view, uint64_t *seqs,
                                  uint8_t (*digests)[PROTO_DIGEST_BYTES], size_t max) {
    size_t n = 0;
    for (size_t k = C.qh; k < C.qt && n < max; k++) {
        if (C.q[k].from != from || C.q[k].to == NMAX) {
            continue;
        }
        Twinbft__Message *m = proto_message_unpack(C.q[k].data, C.q[k].len);
        ck_assert_ptr_nonnull(m);
        if (m->kind_case == TWINBFT__MESSAGE__KIND_PRE_PREPARE) {
            const Twinbft__Signed *s = m->pre_prepare->pre_prepare;
            Twinbft__Body *b = twinbft__body__unpack(NULL, s->body.len, s->body.data);
            ck_assert_ptr_nonnull(b);
            if (b->pre_prepare->view == view) {
                seqs[n] = b->pre_prepare->seq;
                memcpy(digests[n], b->pre_prepare->digest.data, PROTO_DIGEST_BYTES);
                n++;
            }
            twinbft__body__free_unpacked(b, NULL);
        }
        twinbft__message__free_unpacked(m, NULL);
    }
    return n;
}

static void drop_queue(void) {
    for (size_t k = C.qh; k < C.qt; k++) {
        free(C.q[k].data);
    }
    C.qh = C.qt;
}

/* Early votes (pbft.h): a primary's PRE-PREPARE goes out before anything
 * about it is stored, so a primary that crashes right after it restarts
 * not knowing what it proposed. It must not propose again in that view
 * (it could give the same seq another batch): it abstains, and since the
 * view has no primary any more it asks for the next one at once; the
 * request is executed there, by every replica, the restarted one included. */
START_TEST(test_restarted_primary_abstains_in_its_view) {
    setup(4);
    submit("ann", 1, 1);
    deliver_all();
    ck_assert_uint_eq(C.executed[0], 1);
    submit_to("bob", 1, 2, false, 1u << 0); /* only the primary hears bob */
    uint64_t seqs[8];
    uint8_t digests[8][PROTO_DIGEST_BYTES];
    size_t n = queued_pre_prepares(0, 0, seqs, digests, 8);
    ck_assert_uint_eq(n, 3); /* one per backup */
    for (size_t k = 0; k < n; k++) {
        ck_assert_uint_eq(seqs[k], 2);
    }
    drop_queue(); /* lost with the crash: nobody saw it */
    crash(0);
    start(0);
    pbft_status st = status(0);
    ck_assert_uint_eq(st.view, 1);
    ck_assert(st.in_view_change);
    ck_assert_uint_eq(st.vc_cause, PBFT_VC_PRIMARY_RESTART);
    submit("carl", 1, 3);
    ck_assert_uint_eq(queued_pre_prepares(0, 0, seqs, digests, 8), 0);
    tick(3000);
    for (uint32_t i = 0; i < 4; i++) {
        st = status(i);
        ck_assert_uint_ge(st.view, 1);
        ck_assert(!st.in_view_change);
        ck_assert_uint_eq(C.apps[i].v[3], 1);
    }
    teardown();
}
END_TEST

/* A client sends its next request once a quorum has answered, so a backup
 * behind the quorum can hold request 2 before the pre-prepare of request 1
 * reaches it. That batch is still the client's own and must not wait: were
 * two backups to wait, no batch would prepare until a view change. */
START_TEST(test_batch_of_a_replaced_request_does_not_wait) {
    setup(4);
    submit("dan", 1, 4); /* proposed at seq 1; the pre-prepare stays queued */
    submit("dan", 2, 4); /* every backup now holds dan's request 2 */
    deliver_all();
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(C.executed[i], 2);
        ck_assert_uint_eq(C.apps[i].v[4], 2);
        ck_assert_uint_eq(status(i).view, 0);
    }
    teardown();
}
END_TEST

/* A clean stop (pbft_node_stop) stores every vote, the pre-prepare that
 * went out early included: the restarted primary knows what it proposed,
 * goes on in its view without abstaining, and no view change is needed. */
START_TEST(test_clean_stop_keeps_the_view) {
    setup(4);
    submit("ann", 1, 1);
    deliver_all();
    submit("bob", 1, 2); /* proposed at seq 2; the pre-prepare waits in the queue */
    pbft_node_stop(C.node[0]);
    pbft_from from = {.is_client = false, .replica = 1};
    ck_assert_int_eq(pbft_node_step(C.node[0], &from, (const uint8_t *)"x", 1), TB_ERR_STATE);
    drain(0);
    crash(0);
    start(0);
    deliver_all();
    submit("carl", 1, 3);
    deliver_all();
    for (uint32_t i = 0; i < 4; i++) {
        pbft_status st = status(i);
        ck_assert_uint_eq(st.view, 0);
        ck_assert_uint_eq(C.executed[i], 3);
        ck_assert_uint_eq(C.apps[i].v[2], 1);
        ck_assert_uint_eq(C.apps[i].v[3], 1);
    }
    teardown();
}
END_TEST

/* Messages a link lost while it was down are sent again when it opens: a
 * primary whose pre-prepare reached nobody gets its request executed as
 * soon as its links come back, with no timeout and no view change. */
START_TEST(test_resend_when_links_open) {
    setup(4);
    C.mute[0] = true;
    submit("frank", 1, 6);
    deliver_all();
    ck_assert_uint_eq(C.executed[1], 0);
    C.mute[0] = false;
    for (uint32_t j = 1; j < 4; j++) {
        pbft_node_peer_connected(C.node[0], j);
        drain(0);
    }
    deliver_all();
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(C.executed[i], 1);
        ck_assert_uint_eq(status(i).view, 0);
    }
    pbft_node_peer_connected(C.node[0], 0); /* itself: nothing */
    pbft_node_peer_connected(C.node[0], 9); /* not a member: nothing */
    ck_assert(!pbft_node_has_ready(C.node[0]));
    teardown();
}
END_TEST

/* A write that executed while the links to one replica were still opening
 * (it missed the request too) reaches it when they open, on an idle
 * cluster: the others resend what they hold of executed slots. Before, it
 * stayed behind until the next write or checkpoint. */
START_TEST(test_resend_executed_slots_when_links_open) {
    setup(4);
    C.deaf[3] = true;
    submit_to("gina", 1, 4, false, 0x7);
    deliver_all();
    ck_assert_uint_eq(C.executed[0], 1);
    ck_assert_uint_eq(C.executed[3], 0);
    C.deaf[3] = false;
    for (uint32_t j = 0; j < 3; j++) {
        pbft_node_peer_connected(C.node[j], 3);
        drain(j);
    }
    deliver_all();
    ck_assert_uint_eq(C.executed[3], 1);
    ck_assert_uint_eq(C.apps[3].v[4], 1);
    ck_assert_uint_eq(status(3).view, 0);
    teardown();
}
END_TEST

/* The only replica of view 1 still up restarts (kill -9) while the one
 * that missed the NEW-VIEW waits in the view change: the NEW-VIEW was
 * stored with the view, so the restarted replica relays it when the
 * waiting one shows it its VIEW-CHANGE again, and that one enters view 1
 * at once. Before, no replica had it after the restart, and the waiting
 * one stayed out of the working view until the cluster changed view
 * again. */
START_TEST(test_new_view_survives_restart_of_its_view) {
    setup(4);
    crash(0);
    C.deaf[3] = true;
    submit("bob", 1, 1);
    deliver_all();
    for (int t = 0; t < 100 && (status(1).view != 1 || status(1).in_view_change); t++) {
        tick(10);
    }
    ck_assert_uint_eq(status(1).view, 1);
    ck_assert(!status(2).in_view_change);
    pbft_status st = status(3);
    ck_assert_uint_eq(st.view, 1);
    ck_assert(st.in_view_change);
    crash(1); /* the primary of view 1 stays down */
    crash(2);
    start(2);
    C.deaf[3] = false;
    for (uint32_t i = 2; i < 4; i++) {
        for (uint32_t j = 2; j < 4; j++) {
            pbft_node_peer_connected(C.node[i], j);
        }
        drain(i);
    }
    deliver_all();
    st = status(3);
    ck_assert_uint_eq(st.view, 1);
    ck_assert(!st.in_view_change);
    teardown();
}
END_TEST

/* Every replica killed at once and restarted: the primary of the view
 * they restart in abstains there (it may have forgotten a pre-prepare), so
 * it asks for the next view at once and its backups follow it; the first
 * write after the restart waits for no request timeout. Before, it waited
 * two of them (4 s with the defaults). */
START_TEST(test_cluster_restart_changes_view_at_once) {
    setup(4);
    for (uint64_t k = 1; k <= 3; k++) {
        submit("hal", k, 5);
        deliver_all();
    }
    for (uint32_t i = 0; i < 4; i++) {
        crash(i);
    }
    for (uint32_t i = 0; i < 4; i++) {
        start(i);
    }
    for (uint32_t i = 0; i < 4; i++) {
        for (uint32_t j = 0; j < 4; j++) {
            pbft_node_peer_connected(C.node[i], j);
        }
        drain(i);
    }
    deliver_all();
    submit("hal", 4, 5);
    deliver_all();
    tick(20); /* well under one request timeout (100 ms) */
    for (uint32_t i = 0; i < 4; i++) {
        pbft_status st = status(i);
        ck_assert_uint_eq(st.view, 1);
        ck_assert(!st.in_view_change);
        ck_assert_uint_eq(C.apps[i].v[5], 4);
    }
    teardown();
}
END_TEST

/* A primary's VIEW-CHANGE alone moves only backups that have seen nothing
 * since they started (the whole cluster restarted, above). A backup that
 * has been working with its primary waits for f+1: otherwise a faulty
 * primary could send its VIEW-CHANGE to f chosen backups, keep leading the
 * others, and leave the cluster no fault margin (found by review). Here the
 * primary restarts and its VIEW-CHANGE reaches backup 1 alone, as a faulty
 * primary's would: backup 1 stays in the view, and the cluster changes
 * view together once the backups' own timers say the primary is gone. */
START_TEST(test_primary_view_change_alone_moves_no_working_backup) {
    setup(4);
    for (uint64_t k = 1; k <= 3; k++) {
        submit("ivy", k, 5);
        deliver_all();
    }
    primary_view_change_reaches_only(1);
    pbft_status st = status(1);
    ck_assert_uint_eq(st.view, 0);
    ck_assert(!st.in_view_change);
    /* The primary does not order; the backups' timers replace it. */
    submit("ivy", 4, 5);
    deliver_all();
    for (int r = 0; r < 20 && C.executed[1] < 4; r++) {
        tick(100);
        deliver_all();
    }
    uint64_t view = status(1).view;
    ck_assert_uint_ge(view, 1);
    for (uint32_t i = 0; i < 4; i++) {
        st = status(i);
        ck_assert_uint_eq(st.view, view);
        ck_assert(!st.in_view_change);
        ck_assert_uint_eq(C.apps[i].v[5], 4);
    }
    teardown();
}
END_TEST

/* A backup that restarted alone and caught up by fetching what the others
 * committed in its view (here it never gets a pre-prepare: they are held
 * back) has seen the cluster work too: the primary's VIEW-CHANGE alone
 * does not move it (found by review). */
START_TEST(test_backup_caught_up_by_fetch_stays_with_its_primary) {
    setup(4);
    submit("kim", 1, 5);
    deliver_all();
    crash(3);
    submit("kim", 2, 5); /* below the first checkpoint (4): no snapshot, certificates */
    deliver_all();
    C.late_pp[3] = true;
    start_linked(3);
    deliver_all();
    submit("kim", 3, 5);
    deliver_all();
    for (int r = 0; r < 20 && status(3).executed < 3; r++) {
        tick(50);
        deliver_all();
    }
    ck_assert_uint_eq(status(3).executed, 3);
    ck_assert_uint_eq(C.apps[3].v[5], 3);
    primary_view_change_reaches_only(3);
    pbft_status st = status(3);
    ck_assert_uint_eq(st.view, 0);
    ck_assert(!st.in_view_change);
    C.late_pp[3] = false;
    teardown();
}
END_TEST

/* The same after the new primary has itself restarted and forgotten its
 * NEW-VIEW: another replica of the view relays it, so the returning
 * replica joins instead of climbing views alone (found by review). The
 * restarted primary abstains in its view (early votes, pbft.h), so the
 * cluster moves on to the next view, all four together. */
START_TEST(test_new_view_relayed_after_primary_restart) {
    setup(4);
    crash(0);
    submit("gina", 1, 2);
    deliver_all();
    tick(2000);
    uint64_t view = status(1).view;
    ck_assert_uint_eq(status(1).primary, 1);
    crash(1);
    start(1);
    start(0);
    for (uint64_t k = 2; k <= 6; k++) {
        submit("gina", k, 2);
        deliver_all();
        tick(200);
    }
    uint64_t now_view = status(0).view;
    ck_assert_uint_ge(now_view, view);
    for (uint32_t i = 0; i < 4; i++) {
        pbft_status st = status(i);
        ck_assert_uint_eq(st.view, now_view);
        ck_assert(!st.in_view_change);
        ck_assert_uint_eq(C.executed[i], 6);
    }
    teardown();
}
END_TEST

/* The safety lane goes first within a batch, not only without delay: an
 * e-stop that arrives after routine requests is executed before them. */
START_TEST(test_priority_first_in_batch) {
    batch_delay_ms = 1000;
    setup(4);
    submit("amy", 1, 1);
    submit("ben", 1, 2);
    submit("dan", 1, 'E');
    deliver_all();
    batch_delay_ms = 0;
    bool seen = false;
    for (size_t k = 0; k < C.n_replies; k++) {
        Twinbft__ResultLeaf *l =
            twinbft__result_leaf__unpack(NULL, C.replies[k]->leaf.len, C.replies[k]->leaf.data);
        ck_assert_ptr_nonnull(l);
        if (strcmp(l->client, "dan") == 0) {
            ck_assert_uint_eq(C.replies[k]->index, 0);
            ck_assert_uint_eq(C.replies[k]->count, 3);
            seen = true;
        }
        twinbft__result_leaf__free_unpacked(l, NULL);
    }
    ck_assert(seen);
    teardown();
}
END_TEST

/* A backup that never got a request from its client (the client reached only
 * the others) still executes the batch once f+1 backups have prepared it,
 * without a timeout: one of them is correct and had the request. */
START_TEST(test_unseen_request_vouched_by_f_plus_1) {
    setup(4);
    submit_to("ivan", 1, 3, false, 0x7); /* replicas 0, 1, 2; not 3 */
    deliver_all();
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(C.executed[i], 1);
        ck_assert_uint_eq(C.apps[i].v[3], 1);
    }
    ck_assert_uint_eq(status(3).view, 0);
    teardown();
}
END_TEST

/* A lone replica (n = 1, f = 0, q = 1) orders on its own: each request
 * executes in the step that delivers it, with no message to any replica;
 * checkpoints become stable on its own vote; its one signature certifies a
 * result; a restart keeps what it executed, and a retransmission is
 * answered again, never executed again. */
START_TEST(test_single_replica) {
    ck_assert_uint_eq(pbft_f(1), 0);
    ck_assert_uint_eq(pbft_quorum(1), 1);
    setup(1);
    for (uint64_t k = 1; k <= 9; k++) {
        submit("lone", k, 1);
        ck_assert_uint_eq(C.executed[0], k);
    }
    for (size_t k = C.qh; k < C.qt; k++) {
        ck_assert_uint_eq(C.q[k].to, NMAX); /* replies to the client, nothing else */
    }
    deliver_all();
    ck_assert_uint_eq(C.n_replies, 9);
    pbft_status st = status(0);
    ck_assert_uint_eq(st.stable_seq, 8);
    ck_assert_uint_eq(st.view, 0);
    ck_assert_uint_eq(st.dropped, 0);
    proto_trust t = trust();
    uint8_t *cert = NULL;
    size_t len = 0;
    ck_assert_int_eq(
        proto_cert_assemble(&t, (const Twinbft__Reply *const *)&C.replies[8], 1, &cert, &len), 0);
    proto_cert_info info;
    ck_assert_int_eq(proto_cert_verify(&t, cert, len, 0, &info), 0);
    ck_assert_uint_eq(info.number, 9);
    ck_assert_uint_eq(info.seq, 9);
    proto_cert_info_clear(&info);
    cert[len / 2] ^= 1;
    ck_assert_int_ne(proto_cert_verify(&t, cert, len, 0, NULL), 0);
    free(cert);
    crash(0);
    start(0);
    ck_assert_uint_eq(status(0).executed, 9);
    ck_assert_uint_eq(status(0).stable_seq, 8);
    submit("lone", 9, 1);
    deliver_all();
    ck_assert_uint_eq(C.n_replies, 10);
    ck_assert_uint_eq(C.apps[0].v[1], 9);
    submit("lone", 10, 1);
    ck_assert_uint_eq(C.executed[0], 10);
    ck_assert_uint_eq(C.apps[0].v[1], 10);
    teardown();
}
END_TEST

/* A lone replica has no primary to suspect but itself: a request that waits
 * out a batching delay longer than the request timeout starts no fetch and
 * no view change, and executes when the delay ends. */
START_TEST(test_single_replica_no_view_change) {
    batch_delay_ms = 500; /* request_timeout_ms is 100 */
    setup(1);
    batch_delay_ms = 0;
    submit("lone", 1, 2);
    tick(300);
    ck_assert_uint_eq(C.executed[0], 0);
    ck_assert_uint_eq(C.qt, C.qh); /* no FETCH, no VIEW-CHANGE: nothing was sent */
    tick(300);
    ck_assert_uint_eq(C.executed[0], 1);
    pbft_status st = status(0);
    ck_assert_uint_eq(st.view, 0);
    ck_assert_uint_eq(st.view_changes, 0);
    ck_assert(!st.in_view_change);
    teardown();
}
END_TEST

/* PBFT 4.5.2: a replica cut off from the others times out and asks for
 * view 1, but with no quorum behind that view it does not climb further
 * on its own timers (it used to reach view 6 in 10 s, found by review).
 * Once the others change view for their own reason, it is already there
 * and the four run the new view together. */
START_TEST(test_isolated_replica_does_not_climb_alone) {
    setup(4);
    C.mute[3] = C.deaf[3] = true;
    submit("kim", 1, 7); /* replica 3 holds it but never sees it ordered */
    deliver_all();
    tick(5000);
    pbft_status st = status(3);
    ck_assert_uint_eq(st.view, 1);
    ck_assert(st.in_view_change);
    /* What its log line says: why, and which request waited. */
    ck_assert_int_eq(st.vc_cause, PBFT_VC_REQUEST_TIMEOUT);
    ck_assert_str_eq(st.vc_request_client, "kim");
    ck_assert_uint_eq(st.vc_request_number, 1);
    ck_assert_uint_ge(st.vc_request_waited_ms, 200); /* a fetch first, then the suspicion */
    ck_assert_str_eq(pbft_vc_cause_text(st.vc_cause),
                     "a request waited too long: it suspects the primary");
    for (uint32_t i = 0; i < 3; i++) {
        ck_assert_uint_eq(status(i).view, 0);
        ck_assert_int_eq(status(i).vc_cause, PBFT_VC_NONE);
        ck_assert_uint_eq(C.executed[i], 1);
    }
    C.mute[3] = C.deaf[3] = false; /* healed: the others keep view 0 */
    tick(1000);
    ck_assert_uint_eq(status(0).view, 0);
    ck_assert_uint_eq(status(3).view, 1);
    C.mute[0] = true; /* the primary of view 0 fails: the others move to 1 */
    submit("lou", 1, 6);
    deliver_all();
    tick(2000);
    for (uint32_t i = 1; i < 4; i++) {
        st = status(i);
        ck_assert_uint_eq(st.view, 1);
        ck_assert(!st.in_view_change);
        ck_assert_uint_eq(C.executed[i], 2);
        ck_assert_uint_eq(C.apps[i].v[7], 1);
        ck_assert_uint_eq(C.apps[i].v[6], 1);
    }
    teardown();
}
END_TEST

/* Votes beyond a quorum are dropped before their signature is checked:
 * one batch at n = 4 costs each backup the pre-prepare and two of the
 * three PREPAREs, and every replica two of the three COMMITs, not all. */
START_TEST(test_votes_beyond_quorum_not_verified) {
    setup(4);
    submit("may", 1, 3);
    deliver_all();
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(C.executed[i], 1);
    }
    /* 3 pre-prepares + 9 PREPAREs + 12 COMMITs arrive; 24 were checked before. */
    ck_assert_uint_eq(C.verifies, 16);
    uint64_t redundant = 0;
    for (uint32_t i = 0; i < 4; i++) {
        redundant += status(i).votes_redundant;
    }
    ck_assert_uint_eq(redundant, 8);
    teardown();
}
END_TEST

/* Durability is its own step (pbft.h): a host may advance a ready whose
 * commit is written but not yet durable and step on. What the node then
 * lets out early must rest on durable records only: after a clean stop
 * the restarted replica votes early again only once the meta record that
 * ends the clean state is durable, not when it is merely written. */
START_TEST(test_early_votes_wait_for_durable_not_written) {
    setup(4);
    submit("ann", 1, 1);
    deliver_all();
    submit("ann", 2, 1); /* the first execution wrote a meta record: early from here */
    deliver_all();
    ck_assert_uint_gt(C.early_sent[1], 0);
    pbft_node_stop(C.node[1]);
    drain(1);
    crash(1);
    C.lazy_sync[1] = true;
    start(1);
    C.early_sent[1] = 0;
    submit("bob", 1, 2);
    deliver_all();
    ck_assert_uint_eq(C.executed[1], 3);
    ck_assert_uint_eq(C.early_sent[1], 0); /* its PREPARE waited for a durable view */
    pbft_ready rd;
    pbft_node_ready(C.node[1], &rd);
    uint64_t last = rd.id;
    pbft_node_advance(C.node[1], &rd);
    pbft_node_durable(C.node[1], last);
    C.lazy_sync[1] = false;
    submit("carl", 1, 3);
    deliver_all();
    ck_assert_uint_gt(C.early_sent[1], 0);
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(C.executed[i], 4);
    }
    teardown();
}
END_TEST

/* A pre-prepare that reaches two backups later than the clock skew allows
 * (2 s by default) is held, not dropped, and prepared once f other backups
 * vouch for it with their PREPAREs: the primary and they are f+1, so one
 * correct replica found the timestamp fresh. Before, both dropped it and
 * the seq stalled every later one until a view change (seen at 256
 * clients). */
START_TEST(test_late_pre_prepare_is_vouched_not_dropped) {
    setup(4);
    C.late_pp[2] = C.late_pp[3] = true;
    submit("olga", 1, 5);
    deliver_all();
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(C.executed[i], 0); /* one PREPARE (replica 1's): no quorum */
    }
    ck_assert_uint_eq(C.n_late, 2);
    C.late_pp[2] = C.late_pp[3] = false;
    C.now += 3000; /* only replicas 2 and 3 see the time: no timer runs out */
    for (uint32_t i = 2; i < 4; i++) {
        pbft_node_tick(C.node[i], C.now);
        drain(i);
    }
    while (C.qh < C.qt) { /* what the ticks sent (a fetch) is not needed */
        free(C.q[C.qh++].data);
    }
    deliver_late();
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(C.executed[i], 1);
        ck_assert_uint_eq(C.apps[i].v[5], 1);
        ck_assert_uint_eq(status(i).view, 0);
    }
    teardown();
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("pbft");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_normal_case_certificate);
    tcase_add_test(tc, test_retransmission_exactly_once);
    tcase_add_test(tc, test_retransmission_signs_nothing_new);
    tcase_add_test(tc, test_application_fault_stops_the_node);
    tcase_add_test(tc, test_censored_client_forces_view_change);
    tcase_add_test(tc, test_request_missing_at_primary_is_relayed);
    tcase_add_test(tc, test_relay_needs_f_plus_one);
    tcase_add_test(tc, test_divergent_replica_stops_and_transfers);
    tcase_add_test(tc, test_resend_executed_slots_when_links_open);
    tcase_add_test(tc, test_new_view_survives_restart_of_its_view);
    tcase_add_test(tc, test_cluster_restart_changes_view_at_once);
    tcase_add_test(tc, test_primary_view_change_alone_moves_no_working_backup);
    tcase_add_test(tc, test_backup_caught_up_by_fetch_stays_with_its_primary);
    tcase_add_test(tc, test_wall_clock_step_leaves_timers_alone);
    tcase_add_test(tc, test_clock_off_replica_reports_offset);
    tcase_add_test(tc, test_silent_primary_view_change);
    tcase_add_test(tc, test_checkpoints_advance_watermark);
    tcase_add_test(tc, test_crash_restart_state_transfer);
    tcase_add_test(tc, test_large_state_transfers_in_chunks);
    tcase_add_test(tc, test_behind_replays_the_retained_log);
    tcase_add_test(tc, test_bad_chunks_are_dropped_on_arrival);
    tcase_add_test(tc, test_n5_quorum_is_four);
    tcase_add_test(tc, test_garbage_dropped);
    tcase_add_test(tc, test_priority_lane_is_the_replicas_decision);
    tcase_add_test(tc, test_restarted_primary_joins_the_new_view);
    tcase_add_test(tc, test_restarted_primary_abstains_in_its_view);
    tcase_add_test(tc, test_clean_stop_keeps_the_view);
    tcase_add_test(tc, test_batch_of_a_replaced_request_does_not_wait);
    tcase_add_test(tc, test_resend_when_links_open);
    tcase_add_test(tc, test_new_view_relayed_after_primary_restart);
    tcase_add_test(tc, test_priority_first_in_batch);
    tcase_add_test(tc, test_unseen_request_vouched_by_f_plus_1);
    tcase_add_test(tc, test_single_replica);
    tcase_add_test(tc, test_single_replica_no_view_change);
    tcase_add_test(tc, test_isolated_replica_does_not_climb_alone);
    tcase_add_test(tc, test_votes_beyond_quorum_not_verified);
    tcase_add_test(tc, test_late_pre_prepare_is_vouched_not_dropped);
    tcase_add_test(tc, test_early_votes_wait_for_durable_not_written);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
