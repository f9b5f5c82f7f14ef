/* The state digest and state transfer: random operation sequences give
 * equal digests on independent stores however the batches are committed,
 * the incremental digest equals a full recomputation, export/import
 * round-trips to the same digest and refuses tampered snapshots, replaying
 * the event history reproduces the state, and reopening or aborting keeps
 * the digest right. */
#include "test_sm_util.h"
#include "tests/common/sm_workload.h"

enum { RND_OPS = 1200, RND_OP_BYTES = 1024 };

static const char *who(sm_workload *r) {
    const sm_workload_names *nm = &sm_workload_default_names;
    return nm->principals[sm_workload_next(r) % nm->n_principals];
}

/* A recorded run: every op with its place in the order. */
typedef struct run {
    uint8_t (*op)[RND_OP_BYTES];
    size_t *len;
    const char **who;
    uint64_t *seq;
    uint32_t *index;
    uint64_t *time;
    size_t n;
} run;

static void run_make(run *w, uint64_t seed, uint64_t seq0, size_t n) {
    sm_workload r = {seed, &sm_workload_default_names};
    uint8_t scratch[4096];
    w->op = malloc(n * sizeof *w->op);
    w->len = malloc(n * sizeof *w->len);
    w->who = malloc(n * sizeof *w->who);
    w->seq = malloc(n * sizeof *w->seq);
    w->index = malloc(n * sizeof *w->index);
    w->time = malloc(n * sizeof *w->time);
    w->n = n;
    uint64_t seq = seq0, time = 2000000;
    uint32_t index = 0;
    for (size_t i = 0; i < n; i++) {
        Twinbft__SmOp op;
        sm_workload_op(&r, &op, scratch);
        w->len[i] = twinbft__sm_op__get_packed_size(&op);
        ck_assert_uint_le(w->len[i], RND_OP_BYTES);
        twinbft__sm_op__pack(&op, w->op[i]);
        w->who[i] = who(&r);
        if (sm_workload_next(&r) % 3 == 0) { /* batches of one to a few ops */
            seq++;
            index = 0;
            time += sm_workload_next(&r) % 4000;
        }
        w->seq[i] = seq;
        w->index[i] = index++;
        w->time[i] = time;
    }
}

static void run_free(run *w) {
    free(w->op);
    free(w->len);
    free(w->who);
    free(w->seq);
    free(w->index);
    free(w->time);
}

/* Applies ops [from, to) of a run, committing whenever commit_every ops have gone
 * (0: at every change of seq), and checks each result against `expect` if given. */
static void run_apply(smt *t, const run *w, size_t from, size_t to, size_t commit_every,
                      uint8_t **results, size_t *result_len) {
    for (size_t i = from; i < to; i++) {
        sm_output out;
        ck_assert_int_eq(sm_apply(t->s, smt_txn(t), w->seq[i], w->index[i], w->time[i], w->who[i],
                                  w->op[i], w->len[i], &out),
                         0);
        if (results[i] == NULL) {
            results[i] = malloc(out.result_len ? out.result_len : 1);
            memcpy(results[i], out.result, out.result_len);
            result_len[i] = out.result_len;
        } else {
            ck_assert_uint_eq(out.result_len, result_len[i]);
            ck_assert_mem_eq(out.result, results[i], out.result_len);
        }
        bool boundary =
            commit_every ? (i + 1) % commit_every == 0 : i + 1 == to || w->seq[i + 1] != w->seq[i];
        if (boundary) {
            smt_commit(t);
        }
        t->seq = w->seq[i];
    }
    smt_commit(t);
}

/* A plant in a new store that keeps the history of the last `window` seqs
 * (0: all of it). */
static void plant_windowed(smt *t, uint64_t window) {
    memset(t, 0, sizeof *t);
    smt_mkdir(t->dir, sizeof t->dir);
    sm_options o = smt_options();
    o.history_window = window;
    ck_assert_int_eq(sm_store_open(t->dir, &o, &t->s), 0);
    t->time_ms = 1000000;
    smt_plant(t);
    expect_ok(op_node(t, "admin", "n1", EDGE, "s1", NULL, 3000, 3000, "agent-1"));
    expect_ok(op_node(t, "admin", "n2", CLOUD, "s2", NULL, 3000, 3000, NULL));
    expect_ok(op_grant(t, "admin", "admin", SM_ROLE_OPERATOR | SM_ROLE_ADMIN));
    smt_commit(t);
}

static void plant_for_run(smt *t) {
    plant_windowed(t, 0);
}

static void results_free(uint8_t **results, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(results[i]);
    }
    free(results);
}

/* Proves random operation sequences give equal digests and equal results on two fresh
 * stores committed at different batch boundaries, equal to a full recomputation. */
START_TEST(test_property_equal_digests) {
    for (uint64_t seed = 1; seed <= 3; seed++) {
        smt a, b;
        plant_for_run(&a);
        plant_for_run(&b);
        run w;
        run_make(&w, seed * 0x9e3779b97f4a7c15ull, a.seq + 1, RND_OPS);
        uint8_t **res = calloc(w.n, sizeof *res);
        size_t *res_len = calloc(w.n, sizeof *res_len);
        run_apply(&a, &w, 0, w.n, 0, res, res_len);
        run_apply(&b, &w, 0, w.n, 7 + (size_t)seed, res, res_len);
        uint8_t da[PROTO_DIGEST_BYTES], db[PROTO_DIGEST_BYTES];
        smt_digest(&a, da);
        smt_digest(&b, db);
        ck_assert_mem_eq(da, db, sizeof da);
        smt_check_digest(&a);
        smt_check_digest(&b);
        /* The ops did something: plenty of them succeeded, and the digest moved. */
        size_t ok = 0;
        for (size_t i = 0; i < w.n; i++) {
            Twinbft__SmResult *r = twinbft__sm_result__unpack(NULL, res_len[i], res[i]);
            ok += r->code == SM_OK;
            twinbft__sm_result__free_unpacked(r, NULL);
        }
        ck_assert_uint_gt(ok, RND_OPS / 10);
        /* One more op on one side only: the digests part. */
        expect_ok(op_cfg_put(&b, "admin", "k-extra", "1", false, 0));
        smt_digest(&b, db);
        ck_assert_mem_ne(da, db, sizeof da);
        results_free(res, w.n);
        free(res_len);
        run_free(&w);
        smt_close(&a);
        smt_close(&b);
    }
}
END_TEST

/* A store after a random run. */
static void random_store(smt *t, uint64_t seed, size_t n) {
    plant_for_run(t);
    run w;
    run_make(&w, seed, t->seq + 1, n);
    uint8_t **res = calloc(w.n, sizeof *res);
    size_t *res_len = calloc(w.n, sizeof *res_len);
    run_apply(t, &w, 0, w.n, 0, res, res_len);
    results_free(res, w.n);
    free(res_len);
    run_free(&w);
}

static void export_committed(smt *t, uint8_t **snap, size_t *len) {
    smt_commit(t);
    MDB_txn *r = NULL;
    ck_assert_int_eq(mdb_txn_begin(sm_store_env(t->s), NULL, MDB_RDONLY, &r), 0);
    ck_assert_int_eq(sm_export_buf(t->s, r, t->seq, snap, len), 0);
    mdb_txn_abort(r);
}

/* Proves compaction is bounded per batch: a window turned on over a long
 * history (here a store reopened with a window after keeping everything)
 * deletes at most SM_COMPACT_PER_BATCH_MAX events a batch, the same on
 * every replica, until what is older than the window is gone. */
START_TEST(test_history_compaction_capped_per_batch) {
    enum { WINDOW = 50, CAP = SM_COMPACT_PER_BATCH_MAX };
    smt a;
    plant_windowed(&a, 0);
    run w;
    run_make(&w, 21, a.seq + 1, 6000);
    uint8_t **res = calloc(w.n, sizeof *res);
    size_t *res_len = calloc(w.n, sizeof *res_len);
    run_apply(&a, &w, 0, w.n, 0, res, res_len);
    sm_space sp;
    ck_assert_int_eq(sm_store_space(a.s, &sp), 0);
    uint64_t old = sp.history_events;
    ck_assert_uint_gt(old, 2 * CAP);
    smt_close_keep(&a);
    sm_options o = smt_options();
    o.history_window = WINDOW;
    ck_assert_int_eq(sm_store_open(a.dir, &o, &a.s), 0);
    a.seq = sm_store_applied(a.s);
    /* Each batch far above the window: everything before it is old. */
    sm_stats st;
    uint64_t batches = 0;
    for (uint64_t done = 0; done < old; batches++) {
        run one;
        run_make(&one, 22 + batches, a.seq + 2 * WINDOW, 1);
        uint8_t *r1 = NULL;
        size_t r1_len = 0;
        run_apply(&a, &one, 0, 1, 0, &r1, &r1_len);
        free(r1);
        run_free(&one);
        sm_store_stats(a.s, &st);
        /* Oldest first; a batch's own events join the old ones later. */
        ck_assert_uint_le(st.events_compacted - done, CAP);
        if (st.events_compacted < old) {
            ck_assert_uint_eq(st.events_compacted - done, CAP);
        }
        done = st.events_compacted;
        ck_assert_uint_le(batches, old / CAP + 1);
    }
    ck_assert_uint_eq(batches, (old + CAP - 1) / CAP);
    ck_assert_int_eq(sm_store_space(a.s, &sp), 0);
    ck_assert_uint_lt(sp.history_events, old - CAP * (batches - 1)); /* only recent ones left */
    smt_check_digest(&a);
    results_free(res, w.n);
    free(res_len);
    run_free(&w);
    smt_close(&a);
}
END_TEST

/* Proves the history retention window: events older than the window go as
 * batches apply, so the history stays bounded; two stores with the same
 * window stay equal; and a snapshot of a compacted store (its chain starting
 * from the compacted base) imports, with the same digest and export bytes.
 * The full history of a store without a window is longer. */
START_TEST(test_history_window_compacts) {
    enum { WINDOW = 50 };
    smt a, b, c, d, full;
    plant_windowed(&a, WINDOW);
    plant_windowed(&b, WINDOW);
    plant_windowed(&full, 0);
    run w;
    run_make(&w, 11, a.seq + 1, 400);
    uint8_t **res = calloc(w.n, sizeof *res);
    size_t *res_len = calloc(w.n, sizeof *res_len);
    run_apply(&a, &w, 0, w.n, 0, res, res_len);
    run_apply(&b, &w, 0, w.n, 0, res, res_len);
    run_apply(&full, &w, 0, w.n, 0, res, res_len);
    uint64_t last = w.seq[w.n - 1], kept = 0;
    for (size_t i = 0; i < w.n; i++) {
        kept += w.seq[i] > last - WINDOW;
    }
    sm_space sa, sf;
    ck_assert_int_eq(sm_store_space(a.s, &sa), 0);
    ck_assert_int_eq(sm_store_space(full.s, &sf), 0);
    ck_assert_uint_eq(sa.history_events, kept);
    ck_assert_uint_gt(sf.history_events, w.n);
    sm_stats st;
    sm_store_stats(a.s, &st);
    ck_assert_uint_eq(st.events_compacted, sf.history_events - kept);
    uint8_t da[PROTO_DIGEST_BYTES], db[PROTO_DIGEST_BYTES], df[PROTO_DIGEST_BYTES],
        dc[PROTO_DIGEST_BYTES];
    smt_digest(&a, da);
    smt_digest(&b, db);
    smt_digest(&full, df);
    ck_assert_mem_eq(da, db, sizeof da);
    ck_assert(memcmp(da, df, sizeof da) != 0); /* the base and the events differ */
    smt_check_digest(&a);
    smt_commit(&a);
    uint8_t *snap = NULL, *snap2 = NULL;
    size_t len = 0, len2 = 0;
    export_committed(&a, &snap, &len);
    plant_windowed(&c, WINDOW); /* its plant is replaced by the import */
    smt_commit(&c);
    ck_assert_int_eq(sm_import(c.s, smt_txn(&c), a.seq, snap, len, da), 0);
    smt_commit(&c);
    c.seq = a.seq;
    smt_digest(&c, dc);
    ck_assert_mem_eq(da, dc, sizeof da);
    export_committed(&c, &snap2, &len2);
    ck_assert_uint_eq(len, len2);
    ck_assert_mem_eq(snap, snap2, len);
    free(snap2);
    /* An event of the window tampered with: the chain from the base no longer
     * reaches the head. */
    plant_windowed(&d, WINDOW);
    smt_commit(&d);
    snap[len - PROTO_DIGEST_BYTES - 2] ^= 1; /* inside the last event's value */
    ck_assert_int_ne(sm_import(d.s, smt_txn(&d), a.seq, snap, len, da), 0);
    free(snap);
    /* Both go on alike, compacting further. */
    run w2;
    run_make(&w2, 12, a.seq + 1, 200);
    uint8_t **res2 = calloc(w2.n, sizeof *res2);
    size_t *res2_len = calloc(w2.n, sizeof *res2_len);
    run_apply(&a, &w2, 0, w2.n, 0, res2, res2_len);
    run_apply(&c, &w2, 0, w2.n, 0, res2, res2_len);
    smt_digest(&a, da);
    smt_digest(&c, dc);
    ck_assert_mem_eq(da, dc, sizeof da);
    results_free(res, w.n);
    results_free(res2, w2.n);
    free(res_len);
    free(res2_len);
    run_free(&w);
    run_free(&w2);
    smt_close(&a);
    smt_close(&b);
    smt_close(&c);
    smt_close(&d);
    smt_close(&full);
}
END_TEST

/* Proves export then import into a fresh store gives the same digest and state, that
 * both stores then evolve identically, and that export is deterministic. */
START_TEST(test_export_import_round_trip) {
    smt a, c;
    random_store(&a, 42, 600);
    uint8_t *snap = NULL, *snap2 = NULL;
    size_t len = 0, len2 = 0;
    export_committed(&a, &snap, &len);
    export_committed(&a, &snap2, &len2);
    ck_assert_uint_eq(len, len2);
    ck_assert_mem_eq(snap, snap2, len);
    free(snap2);
    uint8_t da[PROTO_DIGEST_BYTES], dc[PROTO_DIGEST_BYTES];
    smt_digest(&a, da);
    smt_open(&c);
    ck_assert_int_eq(sm_import(c.s, smt_txn(&c), a.seq, snap, len, da), 0);
    smt_commit(&c);
    c.seq = a.seq;
    ck_assert_uint_eq(sm_store_applied(c.s), a.seq);
    smt_digest(&c, dc);
    ck_assert_mem_eq(da, dc, sizeof da);
    smt_check_digest(&c);
    /* The imported store exports the same bytes (derived indexes rebuilt, not shipped). */
    export_committed(&c, &snap2, &len2);
    ck_assert_uint_eq(len, len2);
    ck_assert_mem_eq(snap, snap2, len);
    free(snap2);
    /* Same further ops, same digests; the rebuilt indexes serve queries. */
    run w;
    run_make(&w, 43, a.seq + 1, 300);
    uint8_t **res = calloc(w.n, sizeof *res);
    size_t *res_len = calloc(w.n, sizeof *res_len);
    run_apply(&a, &w, 0, w.n, 0, res, res_len);
    run_apply(&c, &w, 0, w.n, 0, res, res_len);
    smt_digest(&a, da);
    smt_digest(&c, dc);
    ck_assert_mem_eq(da, dc, sizeof da);
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    Twinbft__SmHistoryQuery h = TWINBFT__SM_HISTORY_QUERY__INIT;
    h.from_start = true;
    q.q_case = TWINBFT__SM_QUERY__Q_HISTORY;
    q.history = &h;
    size_t seen = 0;
    const sm_workload_names *nm = &sm_workload_default_names;
    for (size_t i = 0; i < nm->n_twins; i++) {
        /* By twin: served from the index the import rebuilt. */
        h.twin = (char *)nm->twins[i];
        Twinbft__SmQueryResult *qa = smt_query(&a, "admin", &q);
        int code = qa->code;
        size_t na = qa->n_events;
        Twinbft__SmQueryResult *qc = smt_query(&c, "admin", &q);
        ck_assert_int_eq(qc->code, code);
        ck_assert_uint_eq(qc->n_events, na);
        seen += na;
    }
    ck_assert_uint_gt(seen, 50);
    results_free(res, w.n);
    free(res_len);
    run_free(&w);
    free(snap);
    smt_close(&a);
    smt_close(&c);
}
END_TEST

/* Proves import refuses a wrong expected digest, a tampered entry, a tampered event
 * and a truncated snapshot, and leaves the state as it was. */
START_TEST(test_import_refuses_tampering) {
    smt a, c;
    random_store(&a, 7, 300);
    uint8_t *snap = NULL;
    size_t len = 0;
    export_committed(&a, &snap, &len);
    uint8_t da[PROTO_DIGEST_BYTES], before[PROTO_DIGEST_BYTES], after[PROTO_DIGEST_BYTES];
    smt_digest(&a, da);
    smt_open(&c);
    expect_ok(op_site(&c, "admin", "mine"));
    smt_commit(&c);
    smt_digest(&c, before);
    uint8_t wrong[PROTO_DIGEST_BYTES];
    memcpy(wrong, da, sizeof wrong);
    wrong[0] ^= 1;
    ck_assert_int_eq(sm_import(c.s, smt_txn(&c), a.seq, snap, len, wrong), TB_ERR_MISMATCH);
    ck_assert_int_eq(sm_import(c.s, smt_txn(&c), a.seq + 1, snap, len, da), TB_ERR_INVALID);
    ck_assert_int_eq(sm_import(c.s, smt_txn(&c), a.seq, snap, len - 1, da), TB_ERR_INVALID);
    ck_assert_int_eq(sm_import(c.s, smt_txn(&c), a.seq, snap, 20, da), TB_ERR_INVALID);
    /* Flip a byte in the middle (a state entry) and near the end (the last event). */
    uint8_t *bad = malloc(len);
    memcpy(bad, snap, len);
    bad[len / 3] ^= 0x40;
    int rc = sm_import(c.s, smt_txn(&c), a.seq, bad, len, da);
    ck_assert(rc == TB_ERR_MISMATCH || rc == TB_ERR_INVALID);
    memcpy(bad, snap, len);
    bad[len - 1 - PROTO_DIGEST_BYTES - 5] ^= 0x01; /* inside the last event's value */
    ck_assert_int_eq(sm_import(c.s, smt_txn(&c), a.seq, bad, len, NULL), TB_ERR_MISMATCH);
    /* Without an expected digest, the snapshot's own trailer is checked. */
    memcpy(bad, snap, len);
    bad[len - 1] ^= 0x01;
    ck_assert_int_eq(sm_import(c.s, smt_txn(&c), a.seq, bad, len, NULL), TB_ERR_MISMATCH);
    smt_digest(&c, after);
    ck_assert_mem_eq(before, after, sizeof before);
    smt_check_digest(&c);
    expect_ok(op_site(&c, "admin", "still-mine"));
    free(bad);
    free(snap);
    smt_close(&a);
    smt_close(&c);
}
END_TEST

/* Proves replaying the event history (seq, index, time, principal, op) into a fresh
 * store reproduces the state: the same digest. */
START_TEST(test_history_replay_reproduces_state) {
    smt a, d;
    random_store(&a, 99, 800);
    smt_open(&d);
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    Twinbft__SmHistoryQuery h = TWINBFT__SM_HISTORY_QUERY__INIT;
    q.q_case = TWINBFT__SM_QUERY__Q_HISTORY;
    q.history = &h;
    h.from_start = true;
    size_t total = 0;
    for (;;) {
        Twinbft__SmQueryResult *page = smt_query(&a, "admin", &q);
        ck_assert_int_eq(page->code, SM_OK);
        for (size_t i = 0; i < page->n_events; i++) {
            const Twinbft__SmEvent *e = page->events[i];
            sm_output out;
            ck_assert_int_eq(sm_apply(d.s, smt_txn(&d), e->seq, e->index, e->time_ms, e->principal,
                                      e->op.data, e->op.len, &out),
                             0);
            ck_assert_uint_eq(out.result_len, e->result.len);
            if (out.result_len > 0) { /* an OK result without payload packs to nothing */
                ck_assert_mem_eq(out.result, e->result.data, out.result_len);
            }
            h.after_seq = e->seq;
            h.after_index = e->index;
            total++;
        }
        smt_commit(&d);
        if (!page->more) {
            break;
        }
        h.from_start = false;
    }
    ck_assert_uint_gt(total, 800);
    uint8_t da[PROTO_DIGEST_BYTES], dd[PROTO_DIGEST_BYTES];
    smt_digest(&a, da);
    smt_digest(&d, dd);
    ck_assert_mem_eq(da, dd, sizeof da);
    smt_close(&a);
    smt_close(&d);
}
END_TEST

/* Proves a reopened store has the same digest (persisted, not rescanned) and goes on. */
START_TEST(test_reopen) {
    smt a;
    random_store(&a, 5, 300);
    uint8_t d1[PROTO_DIGEST_BYTES], d2[PROTO_DIGEST_BYTES];
    smt_digest(&a, d1);
    uint64_t seq = a.seq;
    char dir[512];
    snprintf(dir, sizeof dir, "%s", a.dir);
    smt_close_keep(&a);
    smt_open_in(&a, dir);
    ck_assert_uint_eq(sm_store_applied(a.s), seq);
    smt_digest(&a, d2);
    ck_assert_mem_eq(d1, d2, sizeof d1);
    smt_check_digest(&a);
    expect_ok(op_cfg_put(&a, "admin", "after-reopen", "1", false, 0));
    smt_check_digest(&a);
    smt_close_keep(&a);
    /* Another admin name is refused: the bootstrap is part of the state. */
    sm_options o = smt_options();
    o.admin = "someone-else";
    sm_store *s = NULL;
    ck_assert_int_eq(sm_store_open(dir, &o, &s), TB_ERR_MISMATCH);
    ck_assert_ptr_null(s);
    smt_rmdir(dir);
}
END_TEST

/* Proves an aborted batch leaves no trace: digest, state and the order of events. */
START_TEST(test_abort) {
    smt a;
    plant_for_run(&a);
    uint8_t d1[PROTO_DIGEST_BYTES], d2[PROTO_DIGEST_BYTES];
    smt_digest(&a, d1);
    uint64_t seq = a.seq;
    expect_ok(op_cfg_put(&a, "op", "k", "v", false, 0));
    expect_ok(op_grant(&a, "admin", "eve", SM_ROLE_OPERATOR));
    expect_ok(op_cfg_put(&a, "eve", "k2", "v", false, 0)); /* through the role cache */
    sm_txn_abort(a.s, a.txn);
    a.txn = NULL;
    a.seq = seq;
    smt_digest(&a, d2);
    ck_assert_mem_eq(d1, d2, sizeof d1);
    ck_assert_uint_eq(sm_store_applied(a.s), seq);
    expect_deny(op_cfg_put(&a, "eve", "k2", "v", false, 0), R(ROLE)); /* cache forgotten */
    expect_deny(op_cfg_del(&a, "op", "k", false, 0), R(NOT_FOUND));
    smt_check_digest(&a);
    smt_close(&a);
}
END_TEST

/* Proves per-flush deduplication: a key written many times costs one removal and one
 * addition, and a key rewritten with the same bytes costs nothing. */
START_TEST(test_dedupe) {
    smt a;
    plant_for_run(&a);
    expect_ok(op_cfg_put(&a, "op", "hot", "0", false, 0));
    smt_commit(&a);
    sm_stats s0, s1;
    sm_store_stats(a.s, &s0);
    char v[16];
    for (int i = 1; i <= 50; i++) {
        snprintf(v, sizeof v, "%d", i);
        expect_ok(op_cfg_put(&a, "op", "hot", v, false, 0));
    }
    smt_commit(&a);
    sm_store_stats(a.s, &s1);
    /* "hot" (remove + add), the history chain head (remove + add). */
    ck_assert_uint_eq(s1.changes_folded - s0.changes_folded, 4);
    ck_assert_uint_eq(s1.keys_folded - s0.keys_folded, 2);
    /* Granting the same roles again rewrites identical bytes: only the chain moves. */
    expect_ok(op_grant(&a, "admin", "alice", SM_ROLE_OWNER));
    smt_commit(&a);
    sm_stats s2;
    sm_store_stats(a.s, &s2);
    ck_assert_uint_eq(s2.changes_folded - s1.changes_folded, 2);
    smt_check_digest(&a);
    smt_close(&a);
}
END_TEST

/* Proves the change set's bound: more distinct keys than it holds in one batch are
 * folded early and the digest stays exact. */
START_TEST(test_change_set_overflow) {
    smt a;
    plant_for_run(&a);
    uint8_t op[128];
    char key[32];
    Twinbft__SmOp m = TWINBFT__SM_OP__INIT;
    Twinbft__SmConfigPut cp = TWINBFT__SM_CONFIG_PUT__INIT;
    m.op_case = TWINBFT__SM_OP__OP_CONFIG_PUT;
    m.config_put = &cp;
    cp.key = key;
    uint64_t seq = a.seq + 1;
    for (uint32_t i = 0; i < 17000; i++) {
        snprintf(key, sizeof key, "bulk/%05u", i);
        size_t len = twinbft__sm_op__pack(&m, op);
        sm_output out;
        ck_assert_int_eq(sm_apply(a.s, smt_txn(&a), seq, i, 1, "op", op, len, &out), 0);
        ck_assert_int_eq(out.code, SM_OK);
    }
    a.seq = seq;
    smt_check_digest(&a);
    smt_commit(&a);
    smt_check_digest(&a);
    smt_close(&a);
}
END_TEST

static Suite *digest_suite(void) {
    Suite *s = suite_create("sm_digest");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_property_equal_digests);
    tcase_add_test(tc, test_export_import_round_trip);
    tcase_add_test(tc, test_history_window_compacts);
    tcase_add_test(tc, test_history_compaction_capped_per_batch);
    tcase_add_test(tc, test_import_refuses_tampering);
    tcase_add_test(tc, test_history_replay_reproduces_state);
    tcase_add_test(tc, test_reopen);
    tcase_add_test(tc, test_abort);
    tcase_add_test(tc, test_dedupe);
    tcase_add_test(tc, test_change_set_overflow);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(digest_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
