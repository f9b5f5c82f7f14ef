/* The replica's durable storage (replica/storage.h): four real pbft_nodes,
 * each over its own LMDB environment in a temporary directory, wired by a
 * FIFO queue the test controls; crashes close a replica's node and storage
 * right after its last persist, restarts reopen and restore from disk. */
#define _XOPEN_SOURCE 700
#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "consensus/pbft.h"
#include "proto/frame.h"
#include "proto/tb_err.h"
#include "replica/config.h"
#include "replica/storage.h"
#include "statemachine/sm.h"

enum { N = 4, QMAX = 100000, CLIENT = N, MAP_BYTES = 64 << 20 };

typedef struct pkt {
    uint32_t from, to;
    uint8_t *data;
    size_t len;
} pkt;

static struct {
    char root[512];
    char dir[N][600];
    pbft_node *node[N];
    rep_storage *st[N];
    proto_key *keys[N];
    proto_pubkey *pubs[N];
    uint32_t ids[N];
    bool down[N];
    pkt q[QMAX];
    size_t qh, qt;
    uint64_t now;
    uint64_t executed[N];
    size_t transfers[N];
    size_t replies;
    uint64_t number; /* the client's next request number */
    size_t map[N];   /* LMDB map of each replica's next start (0: MAP_BYTES) */
    int failed[N];   /* its persist failed: like the daemon, it stopped */
} C;

static int sign_cb(void *ctx, const uint8_t *b, size_t len, uint8_t sig[PROTO_SIG_BYTES]) {
    return proto_sign_body(C.keys[*(uint32_t *)ctx], b, len, sig);
}

static bool verify_cb(void *ctx, uint32_t signer, const uint8_t *b, size_t len, const uint8_t *sig,
                      size_t sig_len) {
    (void)ctx;
    return signer < N && proto_verify_body(C.pubs[signer], b, len, sig, sig_len);
}

static void enqueue(uint32_t from, uint32_t to, const uint8_t *d, size_t len) {
    ck_assert_uint_lt(C.qt, QMAX);
    C.q[C.qt++] = (pkt){from, to, malloc(len ? len : 1), len};
    memcpy(C.q[C.qt - 1].data, d, len);
}

/* pbft.h's contract: persist (one durable commit), send, advance. */
static void drain(uint32_t i) {
    while (!C.down[i] && pbft_node_has_ready(C.node[i])) {
        pbft_ready rd;
        pbft_node_ready(C.node[i], &rd);
        int rc = rep_storage_persist(C.st[i], &rd);
        if (rc != 0) {
            /* The daemon stops here, sending nothing of this ready. */
            C.failed[i] = rc;
            C.down[i] = true;
            pbft_node_advance(C.node[i], &rd);
            return;
        }
        for (size_t k = 0; k < rd.n_msgs; k++) {
            const pbft_msg *m = &rd.msgs[k];
            for (uint32_t j = 0; j <= N; j++) {
                bool to_client = m->to == PBFT_TO_CLIENT && j == CLIENT;
                bool to_peer = j < N && j != i && (m->to == PBFT_TO_ALL || m->to == j);
                if (to_client || to_peer) {
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

static pbft_config config(uint32_t i) {
    pbft_config cfg;
    memset(&cfg, 0, sizeof cfg);
    pbft_config_defaults(&cfg);
    cfg.n = N;
    cfg.self = i;
    cfg.cluster_id = (const uint8_t *)"storage-test";
    cfg.cluster_id_len = 12;
    cfg.checkpoint_interval = 4;
    cfg.log_window = 8;
    cfg.batch_delay_ms = 0;
    cfg.request_timeout_ms = 100;
    cfg.view_timeout_ms = 200;
    cfg.crypto = (pbft_crypto){&C.ids[i], sign_cb, verify_cb};
    cfg.app = rep_storage_app(C.st[i]);
    return cfg;
}

/* Opens storage and a node over it and restores; returns restore's code
 * (on failure the node and storage are closed again). */
static int try_start(uint32_t i) {
    ck_assert_int_eq(
        rep_storage_open(C.dir[i], "admin", C.map[i] ? C.map[i] : MAP_BYTES, 0, &C.st[i]), 0);
    ck_assert_int_eq(rep_storage_export_inline(C.st[i]), 0);
    pbft_config cfg = config(i);
    ck_assert_int_eq(pbft_node_create(&cfg, C.now, &C.node[i]), 0);
    int rc = rep_storage_restore(C.st[i], C.node[i], C.now);
    if (rc != 0) {
        pbft_node_free(C.node[i]);
        rep_storage_close(C.st[i]);
        C.node[i] = NULL;
        C.st[i] = NULL;
        return rc;
    }
    C.down[i] = false;
    drain(i);
    return 0;
}

static void start(uint32_t i) {
    ck_assert_int_eq(try_start(i), 0);
}

/* A crash right after the last persist: nothing survives but the disk. */
static void crash(uint32_t i) {
    pbft_node_free(C.node[i]);
    rep_storage_close(C.st[i]);
    C.node[i] = NULL;
    C.st[i] = NULL;
    C.down[i] = true;
}

/* A fresh temporary directory under $TMPDIR (default /tmp), named from
 * mkdtemp's template. */
static void make_root(char *root, size_t cap) {
    const char *tmp = getenv("TMPDIR");
    snprintf(root, cap, "%s/twinbft-storage-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(root));
}

static void setup(void) {
    memset(&C, 0, sizeof C);
    make_root(C.root, sizeof C.root);
    for (uint32_t i = 0; i < N; i++) {
        uint8_t seed[PROTO_SEED_BYTES] = {(uint8_t)(i + 1)};
        uint8_t pub[PROTO_PUBKEY_BYTES];
        C.ids[i] = i;
        ck_assert_int_eq(proto_key_from_seed(seed, &C.keys[i]), 0);
        ck_assert_int_eq(proto_key_public(C.keys[i], pub), 0);
        ck_assert_int_eq(proto_pubkey_from_raw(pub, &C.pubs[i]), 0);
        snprintf(C.dir[i], sizeof C.dir[i], "%s/replica-%u", C.root, i); /* open creates it */
        start(i);
    }
    C.number = 1;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void teardown(void) {
    for (uint32_t i = 0; i < N; i++) {
        pbft_node_free(C.node[i]);
        rep_storage_close(C.st[i]);
        proto_key_free(C.keys[i]);
        proto_pubkey_free(C.pubs[i]);
    }
    for (size_t k = C.qh; k < C.qt; k++) {
        free(C.q[k].data);
    }
    nftw(C.root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void deliver_all(void) {
    while (C.qh < C.qt) {
        pkt p = C.q[C.qh++];
        if (p.to == CLIENT) {
            C.replies++;
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

/* The bootstrap admin sends a packed SmOp to every live replica. */
static void submit(const Twinbft__SmOp *op) {
    uint8_t opb[1024];
    size_t op_len = twinbft__sm_op__get_packed_size(op);
    ck_assert_uint_le(op_len, sizeof opb);
    twinbft__sm_op__pack(op, opb);
    Twinbft__Request r = TWINBFT__REQUEST__INIT;
    r.client = "admin";
    r.number = C.number++;
    r.op = (ProtobufCBinaryData){op_len, opb};
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_REQUEST;
    m.request = &r;
    uint8_t *b = NULL;
    size_t len = 0;
    ck_assert_int_eq(proto_message_pack(&m, &b, &len), 0);
    for (uint32_t i = 0; i < N; i++) {
        if (!C.down[i]) {
            pbft_from from = {.is_client = true, .client = "admin"};
            pbft_node_step(C.node[i], &from, b, len);
            drain(i);
        }
    }
    free(b);
    deliver_all();
}

/* Config puts are the admin's to make (sm.h, authorisation). */
static void submit_config(uint64_t k) {
    char key[32], val[32];
    snprintf(key, sizeof key, "key/%llu", (unsigned long long)(k % 5));
    snprintf(val, sizeof val, "%llu", (unsigned long long)k);
    Twinbft__SmConfigPut m = TWINBFT__SM_CONFIG_PUT__INIT;
    m.key = key;
    m.value = (ProtobufCBinaryData){strlen(val), (uint8_t *)val};
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_CONFIG_PUT;
    op.config_put = &m;
    submit(&op);
}

static void submit_grant_self_operator(void) {
    Twinbft__SmAclGrant g = TWINBFT__SM_ACL_GRANT__INIT;
    g.principal = "admin";
    g.roles = SM_ROLE_ADMIN | SM_ROLE_OPERATOR;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_ACL_GRANT;
    op.acl_grant = &g;
    submit(&op);
}

static pbft_status status(uint32_t i) {
    pbft_status st;
    pbft_node_status(C.node[i], &st);
    return st;
}

/* The state digest as kept incrementally, and as recomputed from what is
 * on disk (a fresh read transaction): they must agree. */
static void digest(uint32_t i, uint8_t out[PROTO_DIGEST_BYTES]) {
    sm_store *sm = rep_storage_sm(C.st[i]);
    ck_assert_int_eq(sm_digest(sm, NULL, out), 0);
    MDB_txn *txn = NULL;
    uint8_t disk[PROTO_DIGEST_BYTES];
    ck_assert_int_eq(mdb_txn_begin(sm_store_env(sm), NULL, MDB_RDONLY, &txn), 0);
    ck_assert_int_eq(sm_digest_recompute(sm, txn, disk), 0);
    mdb_txn_abort(txn);
    ck_assert_mem_eq(out, disk, PROTO_DIGEST_BYTES);
}

static void expect_all_agree(uint64_t executed) {
    uint8_t d0[PROTO_DIGEST_BYTES], di[PROTO_DIGEST_BYTES];
    digest(0, d0);
    for (uint32_t i = 0; i < N; i++) {
        ck_assert_uint_eq(C.executed[i], executed);
        ck_assert_uint_eq(status(i).executed, executed);
        digest(i, di);
        ck_assert_mem_eq(d0, di, sizeof d0);
    }
}

/* Proves a replica that crashes after its last persist restores, from its own disk
 * alone, the view, executed seq and checkpoint it had and the others' state digest,
 * and goes on executing new operations with them. */
START_TEST(test_restart_resumes) {
    setup();
    submit_grant_self_operator();
    for (uint64_t k = 1; k <= 10; k++) {
        submit_config(k);
    }
    expect_all_agree(11);
    pbft_status before = status(2);
    crash(2);
    C.executed[2] = 0;
    start(2);
    pbft_status after = status(2);
    ck_assert_uint_eq(after.executed, before.executed);
    ck_assert_uint_eq(after.view, before.view);
    ck_assert_uint_eq(after.stable_seq, before.stable_seq);
    ck_assert_uint_eq(after.state_digest_seq, before.state_digest_seq);
    ck_assert_mem_eq(after.state_digest, before.state_digest, PROTO_DIGEST_BYTES);
    rep_storage_stats stats;
    rep_storage_stats_get(C.st[2], &stats);
    ck_assert_uint_gt(stats.restored, 0);
    uint8_t d0[PROTO_DIGEST_BYTES], d2[PROTO_DIGEST_BYTES];
    digest(0, d0);
    digest(2, d2);
    ck_assert_mem_eq(d0, d2, sizeof d0);
    for (uint64_t k = 11; k <= 16; k++) {
        submit_config(k);
    }
    expect_all_agree(17);
    ck_assert_uint_eq(C.transfers[2], 0); /* its own records sufficed */
    rep_storage_stats_get(C.st[0], &stats);
    ck_assert_uint_gt(stats.commits, 17);
    ck_assert_uint_gt(stats.bytes_written, 0);
    teardown();
}
END_TEST

/* Proves the records are enough on their own: every replica loses power at once,
 * each comes back from its disk to the same status, and the cluster goes on -- after
 * one view change, since each abstains in the view it restarted in (early votes,
 * consensus/pbft.h); the primary of that view asks for the next one as it restarts. */
START_TEST(test_whole_cluster_restarts) {
    setup();
    for (uint64_t k = 1; k <= 7; k++) {
        submit_config(k);
    }
    expect_all_agree(7);
    pbft_status before[N];
    for (uint32_t i = 0; i < N; i++) {
        before[i] = status(i);
        crash(i);
    }
    for (uint32_t i = 0; i < N; i++) {
        start(i);
        pbft_status after = status(i);
        ck_assert_uint_eq(after.executed, before[i].executed);
        if (i == before[i].primary) {
            ck_assert_uint_eq(after.view, before[i].view + 1);
            ck_assert(after.in_view_change);
            ck_assert_uint_eq(after.vc_cause, PBFT_VC_PRIMARY_RESTART);
        } else {
            ck_assert_uint_eq(after.view, before[i].view);
        }
        ck_assert_uint_eq(after.stable_seq, before[i].stable_seq);
    }
    deliver_all();
    for (uint64_t k = 8; k <= 10; k++) {
        submit_config(k); /* one request of a client at a time: the view change first */
        tick(k == 8 ? 5000 : 100);
    }
    expect_all_agree(10);
    for (uint32_t i = 0; i < N; i++) {
        pbft_status st = status(i);
        ck_assert_uint_gt(st.view, before[i].view);
        ck_assert_uint_eq(st.view, status(0).view);
        ck_assert(!st.in_view_change);
    }
    teardown();
}
END_TEST

/* Proves what state transfer persisted (a replaced client table, CLIENTS_CLEAR,
 * and the restored state) restores after a later crash like any other state. */
START_TEST(test_restart_after_state_transfer) {
    setup();
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
    /* One transfer, or two: the fetch that follows a transfer may find the
     * others one checkpoint further already. */
    size_t transfers = C.transfers[3];
    ck_assert_uint_ge(transfers, 1);
    ck_assert_uint_le(transfers, 2);
    expect_all_agree(27);
    pbft_status before = status(3);
    crash(3);
    start(3);
    ck_assert_uint_eq(status(3).executed, before.executed);
    ck_assert_uint_eq(status(3).stable_seq, before.stable_seq);
    for (uint64_t k = 28; k <= 30; k++) {
        submit_config(k);
    }
    expect_all_agree(30);
    ck_assert_uint_eq(C.transfers[3], transfers); /* the restart needed none */
    teardown();
}
END_TEST

/* ---- raw LMDB access to a closed replica's environment ---- */

enum raw_op { RAW_GET_FIRST, RAW_PUT, RAW_DEL };

/* On RAW_GET_FIRST, key and val receive copies (buffers of 4096 bytes). */
static void raw(const char *dir, const char *db, enum raw_op op, MDB_val *key, MDB_val *val) {
    static uint8_t kbuf[4096], vbuf[4096];
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(env, 64), 0);
    ck_assert_int_eq(mdb_env_set_mapsize(env, MAP_BYTES), 0);
    ck_assert_int_eq(mdb_env_open(env, dir, 0, 0600), 0);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, db, 0, &dbi), 0);
    if (op == RAW_GET_FIRST) {
        MDB_cursor *cur = NULL;
        ck_assert_int_eq(mdb_cursor_open(txn, dbi, &cur), 0);
        ck_assert_int_eq(mdb_cursor_get(cur, key, val, MDB_FIRST), 0);
        ck_assert_uint_le(key->mv_size, sizeof kbuf);
        ck_assert_uint_le(val->mv_size, sizeof vbuf);
        memcpy(kbuf, key->mv_data, key->mv_size);
        memcpy(vbuf, val->mv_data, val->mv_size);
        key->mv_data = kbuf;
        val->mv_data = vbuf;
        mdb_cursor_close(cur);
    } else if (op == RAW_PUT) {
        ck_assert_int_eq(mdb_put(txn, dbi, key, val, 0), 0);
    } else {
        ck_assert_int_eq(mdb_del(txn, dbi, key, NULL), 0);
    }
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* Puts one record, checks the replica refuses to restore, then undoes it. */
static void expect_refused(uint32_t i, const char *db, MDB_val key, MDB_val bad,
                           const MDB_val *orig) {
    raw(C.dir[i], db, RAW_PUT, &key, &bad);
    ck_assert_int_eq(try_start(i), TB_ERR_INVALID);
    ck_assert_ptr_null(C.node[i]);
    if (orig != NULL) {
        MDB_val v = *orig;
        raw(C.dir[i], db, RAW_PUT, &key, &v);
    } else {
        raw(C.dir[i], db, RAW_DEL, &key, NULL);
    }
}

/* Proves bad stored data (garbage, a key of the wrong shape, a record under
 * another record's key, a corrupt meta record, a client entry under another
 * name) makes restore fail with TB_ERR_INVALID rather than crash or go on,
 * and that the same store restores once the damage is undone. */
START_TEST(test_corrupt_records_refused) {
    setup();
    submit_grant_self_operator();
    for (uint64_t k = 1; k <= 6; k++) {
        submit_config(k);
    }
    expect_all_agree(7);
    crash(1);
    MDB_val slot_k, slot_v, meta_k, meta_v, cli_k, cli_v;
    raw(C.dir[1], "pbft_slots", RAW_GET_FIRST, &slot_k, &slot_v);
    uint8_t sk[8], sv[4096];
    memcpy(sk, slot_k.mv_data, sizeof sk);
    memcpy(sv, slot_v.mv_data, slot_v.mv_size);
    slot_k.mv_data = sk;
    slot_v.mv_data = sv;
    static uint8_t garbage[32];
    memset(garbage, 0xff, sizeof garbage);
    MDB_val junk = {sizeof garbage, garbage};

    expect_refused(1, "pbft_slots", slot_k, junk, &slot_v);
    expect_refused(1, "pbft_slots", (MDB_val){3, "abc"}, slot_v, NULL);
    uint8_t other[8] = {0, 0, 0, 0, 0, 0, 0, 99};
    expect_refused(1, "pbft_slots", (MDB_val){8, other}, slot_v, NULL);

    uint8_t mv[4096];
    raw(C.dir[1], "pbft_meta", RAW_GET_FIRST, &meta_k, &meta_v);
    memcpy(mv, meta_v.mv_data, meta_v.mv_size);
    meta_v.mv_data = mv;
    expect_refused(1, "pbft_meta", (MDB_val){4, "meta"}, junk, &meta_v);
    expect_refused(1, "pbft_meta", (MDB_val){5, "meta2"}, meta_v, NULL);

    raw(C.dir[1], "pbft_clients", RAW_GET_FIRST, &cli_k, &cli_v);
    expect_refused(1, "pbft_clients", (MDB_val){7, "mallory"}, cli_v, NULL);

    start(1);
    ck_assert_uint_eq(status(1).executed, 7);
    for (uint64_t k = 7; k <= 9; k++) {
        submit_config(k);
    }
    expect_all_agree(10);
    teardown();
}
END_TEST

static void ready_of(pbft_ready *rd, pbft_record *recs, size_t n) {
    memset(rd, 0, sizeof *rd);
    rd->records = recs;
    rd->n_records = n;
}

static void expect_only(const char *dir, const char *db, const void *key, size_t klen,
                        const char *val) {
    MDB_val k, v;
    raw(dir, db, RAW_GET_FIRST, &k, &v);
    ck_assert_uint_eq(k.mv_size, klen);
    ck_assert_mem_eq(k.mv_data, key, klen);
    ck_assert_uint_eq(v.mv_size, strlen(val));
    ck_assert_mem_eq(v.mv_data, val, v.mv_size);
    raw(dir, db, RAW_DEL, &k, NULL);
    /* Deleting it emptied the database: it held that record alone. */
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_stat st;
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(env, 64), 0);
    ck_assert_int_eq(mdb_env_set_mapsize(env, MAP_BYTES), 0);
    ck_assert_int_eq(mdb_env_open(env, dir, MDB_RDONLY, 0600), 0);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, db, 0, &dbi), 0);
    ck_assert_int_eq(mdb_stat(txn, dbi, &st), 0);
    ck_assert_uint_eq(st.ms_entries, 0);
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

/* Proves persist applies a ready's records in order (puts, deletes, CLIENTS_CLEAR
 * before the client records after it) with big-endian seq keys, durably (they
 * survive a reopen), and that a failed persist commits nothing and stops the
 * storage; and that a store refuses another bootstrap admin. */
START_TEST(test_persist_applies_records_in_order) {
    char root[512], dir[600];
    make_root(root, sizeof root);
    snprintf(dir, sizeof dir, "%s/r", root);
    rep_storage *s = NULL;
    ck_assert_int_eq(rep_storage_open(dir, "admin", MAP_BYTES, 0, &s), 0);
    const uint8_t *v = (const uint8_t *)"a1b1c1s5s6k4m1m2";
    pbft_record recs[] = {
        {PBFT_REC_CLIENT, 0, "alice", false, v, 2},
        {PBFT_REC_CLIENT, 0, "bob", false, v + 2, 2},
        {PBFT_REC_CLIENTS_CLEAR, 0, NULL, false, NULL, 0},
        {PBFT_REC_CLIENT, 0, "carol", false, v + 4, 2},
        {PBFT_REC_SLOT, 5, NULL, false, v + 6, 2},
        {PBFT_REC_SLOT, 0x0102030405060708ull, NULL, false, v + 8, 2},
        {PBFT_REC_SLOT, 5, NULL, true, NULL, 0},
        {PBFT_REC_CHECKPOINT, 4, NULL, false, v + 10, 2},
        {PBFT_REC_CHECKPOINT, 8, NULL, true, NULL, 0}, /* absent: a no-op */
        {PBFT_REC_META, 0, NULL, false, v + 12, 2},
        {PBFT_REC_META, 0, NULL, false, v + 14, 2},
    };
    pbft_ready rd;
    ready_of(&rd, recs, sizeof recs / sizeof recs[0]);
    ck_assert_int_eq(rep_storage_persist(s, &rd), 0);
    rep_storage_stats stats;
    rep_storage_stats_get(s, &stats);
    ck_assert_uint_eq(stats.commits, 1);
    ck_assert_uint_eq(stats.records_put, 8);
    ck_assert_uint_eq(stats.records_deleted, 3); /* alice, bob, slot 5 */
    rep_storage_close(s);

    /* A bad record after a good one: neither is committed; the storage stops. */
    ck_assert_int_eq(rep_storage_open(dir, "admin", MAP_BYTES, 0, &s), 0);
    pbft_record bad[] = {
        {PBFT_REC_CHECKPOINT, 4, NULL, true, NULL, 0},
        {PBFT_REC_CLIENT, 0, NULL, false, v, 2},
    };
    ready_of(&rd, bad, 2);
    ck_assert_int_eq(rep_storage_persist(s, &rd), TB_ERR_INVALID);
    ready_of(&rd, NULL, 0);
    ck_assert_int_eq(rep_storage_persist(s, &rd), TB_ERR_STATE);
    rep_storage_close(s);
    ck_assert_int_eq(rep_storage_open(dir, "mallory", MAP_BYTES, 0, &s), TB_ERR_MISMATCH);
    ck_assert_ptr_null(s);

    expect_only(dir, "pbft_clients", "carol", 5, "c1");
    expect_only(dir, "pbft_slots", "\x01\x02\x03\x04\x05\x06\x07\x08", 8, "s6");
    expect_only(dir, "pbft_ckpts", "\0\0\0\0\0\0\0\x04", 8, "k4");
    expect_only(dir, "pbft_meta", "meta", 4, "m2");
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST

/* ---- the outbox ---- */

/* A packed Message holding the Reply at (seq, index) whose result is `result`. */
static size_t reply_msg(uint64_t seq, uint32_t index, const uint8_t *result, size_t result_len,
                        uint8_t *out) {
    Twinbft__ResultLeaf leaf = TWINBFT__RESULT_LEAF__INIT;
    leaf.client = "bob";
    leaf.number = seq * 10 + index;
    leaf.result = (ProtobufCBinaryData){result_len, (uint8_t *)result};
    uint8_t lb[1024];
    Twinbft__Reply r = TWINBFT__REPLY__INIT;
    r.seq = seq;
    r.index = index;
    r.count = 2;
    r.leaf = (ProtobufCBinaryData){twinbft__result_leaf__pack(&leaf, lb), lb};
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_REPLY;
    m.reply = &r;
    return twinbft__message__pack(&m, out);
}

static size_t command_for(const char *to, uint8_t *out) {
    Twinbft__SmCommand c = TWINBFT__SM_COMMAND__INIT;
    c.to = (char *)to;
    c.twin = "m1";
    c.property = "setpoint";
    Twinbft__SmResult r = TWINBFT__SM_RESULT__INIT;
    r.payload_case = TWINBFT__SM_RESULT__PAYLOAD_COMMAND;
    r.command = &c;
    return twinbft__sm_result__pack(&r, out);
}

typedef struct seen {
    uint64_t seq[16];
    uint32_t index[16];
    size_t n;
} seen;

static bool collect(void *ctx, const rep_push *p) {
    seen *s = ctx;
    Twinbft__Reply *r = twinbft__reply__unpack(NULL, p->reply_len, p->reply);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->seq, p->seq); /* the value is the Reply of that request */
    ck_assert_uint_eq(r->index, p->index);
    twinbft__reply__free_unpacked(r, NULL);
    ck_assert_uint_lt(s->n, 16);
    s->seq[s->n] = p->seq;
    s->index[s->n++] = p->index;
    return true;
}

static seen read_box(rep_storage *s, const char *to, uint64_t after_seq, uint32_t after_index,
                     uint64_t *executed) {
    MDB_txn *txn = NULL;
    seen got = {0};
    uint64_t ex = 0;
    ck_assert_int_eq(rep_storage_read_begin(s, &txn, &ex), 0);
    ck_assert_int_eq(rep_storage_outbox_read(s, txn, to, after_seq, after_index, collect, &got), 0);
    mdb_txn_abort(txn);
    if (executed != NULL) {
        *executed = ex;
    }
    return got;
}

static size_t meta_executed(uint64_t executed, uint8_t *out) {
    Twinbft__MetaRecord m = TWINBFT__META_RECORD__INIT;
    m.executed = executed;
    return twinbft__meta_record__pack(&m, out);
}

static uint64_t horizon_of(rep_storage *s) {
    MDB_txn *txn = NULL;
    uint64_t executed = 0, h = UINT64_MAX;
    ck_assert_int_eq(rep_storage_read_begin(s, &txn, &executed), 0);
    ck_assert_int_eq(rep_storage_outbox_horizon(s, txn, &h), 0);
    mdb_txn_abort(txn);
    return h;
}

/* Proves persist writes an outbox entry per addressee of the replies of batches
 * executed in its ready (not of a re-sent reply, nor of a result addressed to
 * nobody), lists them as new pushes in (seq, index, to) order, that they are read
 * back per addressee in order after an exclusive position and survive a reopen,
 * and that retention prunes them the outbox window below the executed seq (the
 * default, or a window set smaller); the
 * horizon, durable, marks what retention or a state transfer left out. */
START_TEST(test_outbox_written_read_pruned) {
    char root[512], dir[600];
    make_root(root, sizeof root);
    snprintf(dir, sizeof dir, "%s/r", root);
    rep_storage *s = NULL;
    ck_assert_int_eq(rep_storage_open(dir, "admin", MAP_BYTES, 0, &s), 0);

    uint8_t res_plc[256], res_place[512], res_cfg[64], msgs[4][2048], meta[64];
    size_t plc_len = command_for("plc-7", res_plc);
    Twinbft__SmPlacement p1 = TWINBFT__SM_PLACEMENT__INIT, p2 = TWINBFT__SM_PLACEMENT__INIT;
    p1.agent = "plc-7";
    p2.agent = "agent-1";
    Twinbft__SmPlacementChange c1 = TWINBFT__SM_PLACEMENT_CHANGE__INIT;
    Twinbft__SmPlacementChange c2 = TWINBFT__SM_PLACEMENT_CHANGE__INIT;
    c1.placement = &p1;
    c2.placement = &p2;
    Twinbft__SmPlacementChange *added[] = {&c1, &c2};
    Twinbft__SmPlacementResult pr = TWINBFT__SM_PLACEMENT_RESULT__INIT;
    pr.added = added;
    pr.n_added = 2;
    Twinbft__SmResult place = TWINBFT__SM_RESULT__INIT;
    place.payload_case = TWINBFT__SM_RESULT__PAYLOAD_PLACEMENT;
    place.placement = &pr;
    size_t place_len = twinbft__sm_result__pack(&place, res_place);
    Twinbft__SmResult cfg = TWINBFT__SM_RESULT__INIT;
    size_t cfg_len = twinbft__sm_result__pack(&cfg, res_cfg);

    pbft_msg m[4] = {
        {PBFT_TO_CLIENT, "bob", msgs[0], reply_msg(5, 1, res_place, place_len, msgs[0]), false},
        {PBFT_TO_CLIENT, "bob", msgs[1], reply_msg(5, 0, res_plc, plc_len, msgs[1]), false},
        {PBFT_TO_CLIENT, "bob", msgs[2], reply_msg(3, 0, res_plc, plc_len, msgs[2]),
         false}, /* re-sent */
        {PBFT_TO_CLIENT, "bob", msgs[3], reply_msg(5, 2, res_cfg, cfg_len, msgs[3]), false},
    };
    pbft_executed ex[1] = {{.seq = 5}};
    pbft_record rec = {PBFT_REC_META, 0, NULL, false, meta, meta_executed(5, meta)};
    pbft_ready rd;
    ready_of(&rd, &rec, 1);
    rd.msgs = m;
    rd.n_msgs = 4;
    rd.executed = ex;
    rd.n_executed = 1;
    ck_assert_int_eq(rep_storage_persist(s, &rd), 0);
    const rep_push *np = NULL;
    ck_assert_uint_eq(rep_storage_new_pushes(s, &np), 3);
    ck_assert_str_eq(np[0].to, "plc-7");
    ck_assert_uint_eq(np[0].index, 0);
    ck_assert_str_eq(np[1].to, "agent-1");
    ck_assert_uint_eq(np[1].index, 1);
    ck_assert_str_eq(np[2].to, "plc-7");
    ck_assert_uint_eq(np[2].index, 1);

    uint64_t executed = 0;
    seen got = read_box(s, "plc-7", 0, 0, &executed);
    ck_assert_uint_eq(executed, 5);
    ck_assert_uint_eq(got.n, 2);
    ck_assert(got.seq[0] == 5 && got.index[0] == 0 && got.seq[1] == 5 && got.index[1] == 1);
    got = read_box(s, "plc-7", 5, 0, NULL);
    ck_assert(got.n == 1 && got.index[0] == 1);
    ck_assert_uint_eq(read_box(s, "agent-1", 0, 0, NULL).n, 1);
    ck_assert_uint_eq(read_box(s, "plc", 0, 0, NULL).n, 0);
    ck_assert_uint_eq(read_box(s, "bob", 0, 0, NULL).n, 0);

    /* A later batch, after a reopen: the entries are durable and come in order. */
    rep_storage_close(s);
    ck_assert_int_eq(rep_storage_open(dir, "admin", MAP_BYTES, 0, &s), 0);
    m[0] = (pbft_msg){PBFT_TO_CLIENT, "bob", msgs[0], reply_msg(7, 0, res_plc, plc_len, msgs[0]),
                      false};
    ex[0].seq = 7;
    rd.n_msgs = 1;
    rec.len = meta_executed(7, meta);
    ck_assert_int_eq(rep_storage_persist(s, &rd), 0);
    got = read_box(s, "plc-7", 0, 0, &executed);
    ck_assert_uint_eq(executed, 7);
    ck_assert(got.n == 3 && got.seq[2] == 7);

    /* Retention: within the default window everything stays... */
    ex[0].seq = 6 + REP_OUTBOX_WINDOW_MIN;
    rd.n_msgs = 0;
    rec.len = meta_executed(ex[0].seq, meta);
    ck_assert_int_eq(rep_storage_persist(s, &rd), 0);
    ck_assert_uint_eq(read_box(s, "plc-7", 0, 0, NULL).n, 3);
    ck_assert_uint_eq(horizon_of(s), 0);
    /* ... and with the smallest window, seq 5 is more than it below, 7 is not. */
    rep_storage_set_outbox_window(s, REP_OUTBOX_WINDOW_MIN);
    ck_assert_int_eq(rep_storage_persist(s, &rd), 0);
    ck_assert_uint_eq(rep_storage_new_pushes(s, &np), 0);
    got = read_box(s, "plc-7", 0, 0, NULL);
    ck_assert(got.n == 1 && got.seq[0] == 7);
    ck_assert_uint_eq(read_box(s, "agent-1", 0, 0, NULL).n, 0);
    /* The horizon says what retention may have taken: seq 5 and below. */
    ck_assert_uint_eq(horizon_of(s), 5);

    /* State transfer to a later seq: the outbox cannot vouch below it. */
    ex[0].seq = 900 + REP_OUTBOX_WINDOW_DEFAULT;
    rd.n_executed = 0;
    rd.transferred = true;
    rd.transfer_seq = ex[0].seq;
    rec.len = meta_executed(ex[0].seq, meta);
    ck_assert_int_eq(rep_storage_persist(s, &rd), 0);
    ck_assert_uint_eq(horizon_of(s), 900 + REP_OUTBOX_WINDOW_DEFAULT);
    rep_storage_close(s);
    ck_assert_int_eq(rep_storage_open(dir, "admin", MAP_BYTES, 0, &s), 0);
    ck_assert_uint_eq(horizon_of(s), 900 + REP_OUTBOX_WINDOW_DEFAULT); /* durable */
    rep_storage_close(s);
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST

/* A full store (here LMDB's map; a full disk fails the same way, at the
 * commit) stops the replica that hit it, never half-executes a batch and
 * never crashes it: the core reports the fault, takes no more input and
 * offers nothing to commit. The others go on; restarted with room, the
 * replica resumes from its last commit and catches up. */
START_TEST(test_full_store_stops_cleanly) {
    setup();
    submit_grant_self_operator();
    for (uint64_t k = 1; k <= 4; k++) {
        submit_config(k);
    }
    expect_all_agree(5);
    crash(3);
    char path[700];
    snprintf(path, sizeof path, "%s/data.mdb", C.dir[3]);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    C.map[3] = (size_t)sb.st_size + 16 * 4096; /* room for a few commits only */
    start(3);
    /* Full while executing (the core stops) or at the commit (the host does). */
    uint64_t k = 5;
    while (pbft_node_fault(C.node[3]) == 0 && C.failed[3] == 0 && k < 5000) {
        submit_config(k++);
    }
    if (C.failed[3] == 0) {
        ck_assert_int_eq(pbft_node_fault(C.node[3]), TB_ERR_NOSPACE);
        ck_assert(!pbft_node_has_ready(C.node[3]));
        pbft_from from = {.is_client = false, .replica = 0};
        ck_assert_int_eq(pbft_node_step(C.node[3], &from, (const uint8_t *)"x", 1), TB_ERR_STATE);
    } else {
        ck_assert_int_eq(C.failed[3], TB_ERR_NOSPACE);
    }
    uint64_t stopped_at = status(3).executed;
    for (uint64_t j = 0; j < 8; j++) {
        submit_config(k++);
    }
    ck_assert_uint_eq(status(3).executed, stopped_at); /* it took nothing more */
    ck_assert_uint_eq(status(0).executed, k);          /* the others went on */
    crash(3);
    C.map[3] = 0;
    C.failed[3] = 0;
    C.executed[3] = 0;
    start(3);
    ck_assert_uint_le(status(3).executed, stopped_at); /* from its last commit */
    submit_config(k++);
    tick(3000);
    expect_all_agree(k);
    teardown();
}
END_TEST

static Suite *storage_suite(void) {
    Suite *s = suite_create("storage");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_persist_applies_records_in_order);
    tcase_add_test(tc, test_outbox_written_read_pruned);
    tcase_add_test(tc, test_restart_resumes);
    tcase_add_test(tc, test_whole_cluster_restarts);
    tcase_add_test(tc, test_restart_after_state_transfer);
    tcase_add_test(tc, test_corrupt_records_refused);
    tcase_add_test(tc, test_full_store_stops_cleanly);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(storage_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
