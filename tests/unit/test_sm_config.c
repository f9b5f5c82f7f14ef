/* Versioned configuration with compare-and-set, and the read-only queries
 * over configuration and history. */
#include "test_sm_util.h"

static Twinbft__SmQueryResult *cfg_get(smt *t, const char *who, const char *key) {
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    q.q_case = TWINBFT__SM_QUERY__Q_CONFIG_GET;
    q.config_get = (char *)key;
    return smt_query(t, who, &q);
}

static Twinbft__SmQueryResult *cfg_list(smt *t, const char *prefix, const char *after,
                                        uint32_t limit) {
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    Twinbft__SmListQuery l = TWINBFT__SM_LIST_QUERY__INIT;
    l.from = (char *)prefix;
    l.start_after = (char *)after;
    l.limit = limit;
    q.q_case = TWINBFT__SM_QUERY__Q_CONFIG_LIST;
    q.config_list = &l;
    return smt_query(t, "alice", &q);
}

/* Proves versions start at 1 and grow per put, and get returns value and version. */
START_TEST(test_put_get_versions) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    smr *r = op_cfg_put(&t, "op", "line1/rate", "10", false, 0);
    expect_ok(r);
    ck_assert_int_eq(r->payload_case, TWINBFT__SM_RESULT__PAYLOAD_CONFIG);
    ck_assert_uint_eq(r->config->version, 1);
    ck_assert_uint_eq(r->config->modified_seq, t.seq);
    r = op_cfg_put(&t, "op", "line1/rate", "12", false, 0);
    ck_assert_uint_eq(r->config->version, 2);
    Twinbft__SmQueryResult *a = cfg_get(&t, "bob", "line1/rate");
    ck_assert_uint_eq(a->n_configs, 1);
    ck_assert_uint_eq(a->configs[0]->version, 2);
    ck_assert_uint_eq(a->configs[0]->value.len, 2);
    ck_assert_mem_eq(a->configs[0]->value.data, "12", 2);
    ck_assert_int_eq(cfg_get(&t, "bob", "nope")->reason, R(NOT_FOUND));
    ck_assert_int_eq(cfg_get(&t, "nobody", "line1/rate")->reason, R(ROLE));
    /* Writes need admin or operator. */
    expect_deny(op_cfg_put(&t, "alice", "x", "1", false, 0), R(ROLE));
    expect_deny(op_cfg_put(&t, "agent-1", "x", "1", false, 0), R(ROLE));
    expect_ok(op_cfg_put(&t, "admin", "x", "1", false, 0));
    expect_invalid(op_cfg_put(&t, "op", "", "1", false, 0));
    expect_invalid(op_cfg_put(&t, "op", "has space", "1", false, 0));
    char big[SM_CONFIG_VALUE_BYTES_MAX + 2];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    expect_invalid(op_cfg_put(&t, "op", "big", big, false, 0));
    big[SM_CONFIG_VALUE_BYTES_MAX] = '\0';
    expect_ok(op_cfg_put(&t, "op", "big", big, false, 0));
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

/* Proves compare-and-set: a stale version is a CONFLICT result carrying the current
 * version, and nothing changes. */
START_TEST(test_compare_and_set) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    expect_ok(op_cfg_put(&t, "op", "k", "a", true, 0)); /* 0: must not exist */
    smr *r = op_cfg_put(&t, "op", "k", "b", true, 0);
    ck_assert_int_eq(r->code, SM_CONFLICT);
    ck_assert_int_eq(r->reason, R(VERSION));
    ck_assert_uint_eq(r->config->version, 1);
    expect_ok(op_cfg_put(&t, "op", "k", "b", true, 1));
    r = op_cfg_put(&t, "op", "k", "c", true, 1);
    ck_assert_int_eq(r->code, SM_CONFLICT);
    ck_assert_uint_eq(r->config->version, 2);
    ck_assert_mem_eq(cfg_get(&t, "op", "k")->configs[0]->value.data, "b", 1);
    r = op_cfg_put(&t, "op", "absent", "x", true, 3);
    ck_assert_int_eq(r->code, SM_CONFLICT);
    ck_assert_uint_eq(r->config->version, 0);
    /* Delete with CAS, without, and of a missing key. */
    r = op_cfg_del(&t, "op", "k", true, 1);
    ck_assert_int_eq(r->code, SM_CONFLICT);
    ck_assert_uint_eq(r->config->version, 2);
    expect_ok(op_cfg_del(&t, "op", "k", true, 2));
    expect_deny(op_cfg_del(&t, "op", "k", false, 0), R(NOT_FOUND));
    expect_deny(op_cfg_del(&t, "alice", "k", false, 0), R(ROLE));
    expect_invalid(op_cfg_del(&t, "op", "", false, 0));
    /* A re-created key starts again at version 1. */
    r = op_cfg_put(&t, "op", "k", "d", true, 0);
    expect_ok(r);
    ck_assert_uint_eq(r->config->version, 1);
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

/* Proves listing by prefix: key order, paging with start_after and limit, prefix bounds. */
START_TEST(test_list_by_prefix) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    const char *keys[] = {"a/1", "b/2", "b/1", "b/3", "ba", "c"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        expect_ok(op_cfg_put(&t, "op", keys[i], "v", false, 0));
    }
    Twinbft__SmQueryResult *a = cfg_list(&t, "b/", "", 0);
    ck_assert_uint_eq(a->n_configs, 3);
    ck_assert_str_eq(a->configs[0]->key, "b/1");
    ck_assert_str_eq(a->configs[2]->key, "b/3");
    ck_assert(!a->more);
    a = cfg_list(&t, "b", "", 2);
    ck_assert_uint_eq(a->n_configs, 2);
    ck_assert(a->more);
    a = cfg_list(&t, "b", "b/2", 2);
    ck_assert_uint_eq(a->n_configs, 2);
    ck_assert_str_eq(a->configs[0]->key, "b/3");
    ck_assert_str_eq(a->configs[1]->key, "ba");
    ck_assert(!a->more);
    a = cfg_list(&t, "", "", 0);
    ck_assert_uint_eq(a->n_configs, 6);
    a = cfg_list(&t, "b/", "a", 0); /* start_after before the prefix: from the prefix */
    ck_assert_uint_eq(a->n_configs, 3);
    a = cfg_list(&t, "zz", "", 0);
    ck_assert_uint_eq(a->n_configs, 0);
    smt_close(&t);
}
END_TEST

static Twinbft__SmQueryResult *history(smt *t, const char *who, const char *twin, bool from_start,
                                       uint64_t after_seq, uint32_t after_index, uint64_t seq_to,
                                       uint32_t limit) {
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    Twinbft__SmHistoryQuery h = TWINBFT__SM_HISTORY_QUERY__INIT;
    h.twin = (char *)twin;
    h.from_start = from_start;
    h.after_seq = after_seq;
    h.after_index = after_index;
    h.seq_to = seq_to;
    h.limit = limit;
    q.q_case = TWINBFT__SM_QUERY__Q_HISTORY;
    q.history = &h;
    return smt_query(t, who, &q);
}

/* Proves every applied op appends an event (seq, index, principal, op, result), readable
 * by sequence range and by twin, with paging. */
START_TEST(test_history) {
    smt t;
    smt_open(&t);
    smt_plant(&t); /* seqs 1..10 */
    uint64_t first = t.seq + 1;
    expect_ok(op_report(&t, "bob", "m1", "temp", "20"));
    expect_ok(op_report(&t, "alice", "c1", "temp", "20")); /* alice owns c1's ancestors */
    expect_ok(op_cfg_put(&t, "op", "k", "v", false, 0));
    expect_ok(op_report(&t, "bob", "m1", "temp", "21"));
    Twinbft__SmQueryResult *a = history(&t, "op", "", true, 0, 0, 0, 0);
    ck_assert_uint_eq(a->n_events, t.seq);
    ck_assert_uint_eq(a->events[0]->seq, 1);
    ck_assert_str_eq(a->events[0]->principal, "admin");
    a = history(&t, "op", "", false, first, 0, first + 1, 0);
    ck_assert_uint_eq(a->n_events, 1);
    ck_assert_uint_eq(a->events[0]->seq, first + 1);
    Twinbft__SmResult *res =
        twinbft__sm_result__unpack(NULL, a->events[0]->result.len, a->events[0]->result.data);
    ck_assert_ptr_nonnull(res);
    ck_assert_int_eq(res->code, SM_OK);
    twinbft__sm_result__free_unpacked(res, NULL);
    Twinbft__SmOp *op = twinbft__sm_op__unpack(NULL, a->events[0]->op.len, a->events[0]->op.data);
    ck_assert_int_eq(op->op_case, TWINBFT__SM_OP__OP_SHADOW_REPORT);
    twinbft__sm_op__free_unpacked(op, NULL);
    /* By twin: m1's creation and two reports, in order; paging resumes after a key. */
    a = history(&t, "bob", "m1", true, 0, 0, 0, 2);
    ck_assert_uint_eq(a->n_events, 2);
    ck_assert(a->more);
    ck_assert_str_eq(a->events[0]->twin, "m1");
    uint64_t s2 = a->events[1]->seq;
    a = history(&t, "bob", "m1", false, s2, 0, 0, 0);
    ck_assert_uint_eq(a->n_events, 1);
    ck_assert_uint_gt(a->events[0]->seq, s2);
    ck_assert_int_eq(history(&t, "nobody", "m1", true, 0, 0, 0, 0)->reason, R(ROLE));
    ck_assert_int_eq(history(&t, "bob", "line1", true, 0, 0, 0, 0)->reason, R(NOT_OWNER));
    ck_assert_int_eq(history(&t, "bob", "", true, 0, 0, 0, 0)->reason, R(ROLE));
    ck_assert_int_eq(history(&t, "bob", "ghost", true, 0, 0, 0, 0)->reason, R(NOT_FOUND));
    /* A retired twin's history stays readable by operators, for audits. */
    expect_ok(op_twin_retire(&t, "op", "c1"));
    a = history(&t, "op", "c1", true, 0, 0, 0, 0);
    ck_assert_int_eq(a->code, SM_OK);
    ck_assert_uint_eq(a->n_events, 3); /* created, reported on, retired */
    ck_assert_int_eq(history(&t, "bob", "c1", true, 0, 0, 0, 0)->reason, R(NOT_FOUND));
    smt_close(&t);
}
END_TEST

/* Proves events of one batch keep their index and seq, and that (seq, index) must grow. */
START_TEST(test_batch_indices) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    uint8_t op[256];
    Twinbft__SmOp m = TWINBFT__SM_OP__INIT;
    Twinbft__SmConfigPut cp = TWINBFT__SM_CONFIG_PUT__INIT;
    cp.key = "k";
    m.op_case = TWINBFT__SM_OP__OP_CONFIG_PUT;
    m.config_put = &cp;
    size_t len = twinbft__sm_op__pack(&m, op);
    sm_output out;
    uint64_t seq = t.seq + 1;
    for (uint32_t i = 0; i < 3; i++) {
        ck_assert_int_eq(sm_apply(t.s, smt_txn(&t), seq, i, 5, "op", op, len, &out), 0);
        ck_assert_int_eq(out.code, SM_OK);
    }
    t.seq = seq;
    Twinbft__SmQueryResult *a = history(&t, "op", "", false, seq - 1, UINT32_MAX, 0, 0);
    ck_assert_uint_eq(a->n_events, 3);
    ck_assert_uint_eq(a->events[2]->index, 2);
    ck_assert_uint_eq(a->events[2]->seq, seq);
    ck_assert_uint_eq(a->events[2]->time_ms, 5);
    ck_assert_uint_eq(sm_store_applied(t.s), seq);
    smt_close(&t);
}
END_TEST

static Suite *config_suite(void) {
    Suite *s = suite_create("sm_config");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_put_get_versions);
    tcase_add_test(tc, test_compare_and_set);
    tcase_add_test(tc, test_list_by_prefix);
    tcase_add_test(tc, test_history);
    tcase_add_test(tc, test_batch_indices);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
