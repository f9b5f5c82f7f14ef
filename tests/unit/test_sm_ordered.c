/* The ordered query (SmOp.query): the same answer as the unordered one,
 * carried in an OK result that fits SM_RESULT_BYTES_MAX, changing nothing
 * but the history; and sm_result_addressees, who a result is for. */
#include "test_sm_util.h"

static smr *op_query(smt *t, const char *who, Twinbft__SmQuery *q) {
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_QUERY;
    op.query = q;
    return smt_apply(t, who, &op);
}

/* The packed SmQueryResult of an ordered result, to compare bytes. */
static size_t pack_answer(const smr *r, uint8_t *buf, size_t cap) {
    ck_assert_int_eq((int)r->code, SM_OK);
    ck_assert_int_eq(r->payload_case, TWINBFT__SM_RESULT__PAYLOAD_QUERY);
    size_t n = twinbft__sm_query_result__get_packed_size(r->query);
    ck_assert_uint_le(n, cap);
    return twinbft__sm_query_result__pack(r->query, buf);
}

/* Proves an ordered query answers exactly what sm_query answers on the same state,
 * that its denials travel inside an OK result, and that it changes nothing but the
 * history: the config's version stays and its event is recorded with its result. */
START_TEST(test_ordered_matches_unordered) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    expect_ok(op_cfg_put(&t, "op", "plant/speed", "7", false, 0));
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    q.q_case = TWINBFT__SM_QUERY__Q_CONFIG_GET;
    q.config_get = "plant/speed";
    static uint8_t a[SM_RESULT_BYTES_MAX], b[SM_RESULT_BYTES_MAX];
    Twinbft__SmQueryResult *u = smt_query(&t, "alice", &q);
    ck_assert_uint_eq(u->n_configs, 1);
    size_t ulen = twinbft__sm_query_result__pack(u, a);
    uint64_t seq = t.seq + 1;
    size_t olen = pack_answer(op_query(&t, "alice", &q), b, sizeof b);
    ck_assert_uint_eq(olen, ulen);
    ck_assert_mem_eq(a, b, ulen);
    static uint8_t result[SM_RESULT_BYTES_MAX];
    size_t result_len = t.out.result_len;
    memcpy(result, t.out.result, result_len);
    ck_assert_uint_eq(smt_query(&t, "alice", &q)->configs[0]->version, 1);

    /* Its event is in the history, with the result the op returned. */
    Twinbft__SmHistoryQuery h = TWINBFT__SM_HISTORY_QUERY__INIT;
    h.after_seq = seq - 1;
    h.after_index = UINT32_MAX;
    h.seq_to = seq;
    Twinbft__SmQuery hq = TWINBFT__SM_QUERY__INIT;
    hq.q_case = TWINBFT__SM_QUERY__Q_HISTORY;
    hq.history = &h;
    Twinbft__SmQueryResult *hist = smt_query(&t, "op", &hq);
    ck_assert_uint_eq(hist->n_events, 1);
    ck_assert_uint_eq(hist->events[0]->seq, seq);
    ck_assert_uint_eq(hist->events[0]->result.len, result_len);
    ck_assert_mem_eq(hist->events[0]->result.data, result, result_len);

    /* A principal without a role: the result is OK, the answer is the denial. */
    smr *r = op_query(&t, "nobody", &q);
    expect_ok(r);
    ck_assert_int_eq(r->payload_case, TWINBFT__SM_RESULT__PAYLOAD_QUERY);
    ck_assert_int_eq((int)r->query->code, SM_DENIED);
    ck_assert_int_eq((int)r->query->reason, R(ROLE));
    ck_assert_uint_eq(r->query->n_configs, 0);
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

/* Proves a listing too large for one result is trimmed to fit SM_RESULT_BYTES_MAX
 * with `more` set, and that what it keeps is the start of the unordered answer. */
START_TEST(test_ordered_answer_trimmed) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    static char big[SM_CONFIG_VALUE_BYTES_MAX + 1];
    memset(big, 'v', SM_CONFIG_VALUE_BYTES_MAX);
    for (int i = 0; i < 10; i++) {
        char key[32];
        snprintf(key, sizeof key, "big/%02d", i);
        expect_ok(op_cfg_put(&t, "op", key, big, false, 0));
    }
    Twinbft__SmListQuery l = TWINBFT__SM_LIST_QUERY__INIT;
    l.from = "big/";
    l.start_after = "";
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    q.q_case = TWINBFT__SM_QUERY__Q_CONFIG_LIST;
    q.config_list = &l;
    Twinbft__SmQueryResult *u = smt_query(&t, "op", &q);
    ck_assert_uint_eq(u->n_configs, 10);
    ck_assert(!u->more);
    smr *r = op_query(&t, "op", &q);
    expect_ok(r);
    ck_assert_uint_le(t.out.result_len, SM_RESULT_BYTES_MAX);
    ck_assert(r->query->more);
    ck_assert_uint_gt(r->query->n_configs, 0);
    ck_assert_uint_lt(r->query->n_configs, 10);
    for (size_t i = 0; i < r->query->n_configs; i++) {
        ck_assert_str_eq(r->query->configs[i]->key, u->configs[i]->key);
    }
    /* Asking again after the last key goes on where it stopped. */
    char last[32];
    snprintf(last, sizeof last, "%s", r->query->configs[r->query->n_configs - 1]->key);
    size_t got = r->query->n_configs;
    l.start_after = last;
    r = op_query(&t, "op", &q);
    ck_assert_str_eq(r->query->configs[0]->key, u->configs[got]->key);
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

/* Proves an event too large for an ordered answer's budget does not stall a pager:
 * it comes back alone, flagged elided, without its op and result, while the
 * unordered query still returns it whole (found by review: a principal could plant
 * such an event and make every ordered history query answer nothing, forever). */
START_TEST(test_ordered_history_elides_a_huge_event) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    static uint8_t junk[62 * 1024];
    memset(junk, 0xff, sizeof junk); /* undecodable: recorded as it came */
    smt_apply_bytes(&t, "nobody", junk, sizeof junk);
    uint64_t big_seq = t.seq;
    expect_ok(op_cfg_put(&t, "op", "after/huge", "1", false, 0));
    Twinbft__SmHistoryQuery h = TWINBFT__SM_HISTORY_QUERY__INIT;
    h.after_seq = big_seq - 1;
    h.after_index = UINT32_MAX;
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    q.q_case = TWINBFT__SM_QUERY__Q_HISTORY;
    q.history = &h;
    Twinbft__SmQueryResult *u = smt_query(&t, "op", &q);
    ck_assert_uint_ge(u->n_events, 2);
    ck_assert_uint_eq(u->events[0]->op.len, sizeof junk);
    ck_assert(!u->events[0]->elided);
    smr *r = op_query(&t, "op", &q);
    expect_ok(r);
    ck_assert_uint_eq(r->query->n_events, 1);
    ck_assert_uint_eq(r->query->events[0]->seq, big_seq);
    ck_assert(r->query->events[0]->elided);
    ck_assert_uint_eq(r->query->events[0]->op.len, 0);
    ck_assert(r->query->more);
    /* The next page starts after it. */
    h.after_seq = big_seq;
    h.after_index = r->query->events[0]->index;
    r = op_query(&t, "op", &q);
    ck_assert_uint_ge(r->query->n_events, 1);
    ck_assert_uint_gt(r->query->events[0]->seq, big_seq);
    ck_assert(!r->query->events[0]->elided);
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

static Twinbft__SmPlacementChange *change_to(const char *agent, Twinbft__SmPlacement *p,
                                             Twinbft__SmPlacementChange *ch) {
    twinbft__sm_placement__init(p);
    twinbft__sm_placement_change__init(ch);
    p->twin = "m1";
    p->component = "est";
    p->node = "n";
    p->agent = (char *)agent;
    ch->placement = p;
    return ch;
}

/* Proves the addressees of a result: an approved command's `to`; the agents of a
 * placement's added and removed changes, once each and sorted, without empty
 * agents; nobody for a denial or a config put; and an undecodable result refused. */
START_TEST(test_result_addressees) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    static sm_principal names[SM_RESULT_ADDRESSEES_MAX];
    size_t n = 99;
    Twinbft__SmPolicy p = TWINBFT__SM_POLICY__INIT;
    p.twin = "m1";
    p.property = "setpoint";
    p.max = 100;
    p.required_role = (Twinbft__SmRole)SM_ROLE_OWNER;
    p.principal = "plc-7";
    expect_ok(op_policy(&t, "op", &p));
    ck_assert_int_eq(sm_result_addressees(t.out.result, t.out.result_len, names, &n), 0);
    ck_assert_uint_eq(n, 0);
    expect_ok(op_actuate(&t, "bob", "m1", "setpoint", 5, false));
    ck_assert_int_eq(sm_result_addressees(t.out.result, t.out.result_len, names, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(names[0], "plc-7");
    expect_deny(op_actuate(&t, "bob", "m1", "setpoint", 500, false), R(RANGE));
    ck_assert_int_eq(sm_result_addressees(t.out.result, t.out.result_len, names, &n), 0);
    ck_assert_uint_eq(n, 0);

    Twinbft__SmPlacement pl[5];
    Twinbft__SmPlacementChange ch[5];
    Twinbft__SmPlacementChange *added[3] = {change_to("zed", &pl[0], &ch[0]),
                                            change_to("agent-1", &pl[1], &ch[1]),
                                            change_to("", &pl[2], &ch[2])};
    Twinbft__SmPlacementChange *removed[2] = {change_to("zed", &pl[3], &ch[3]),
                                              change_to("agent-2", &pl[4], &ch[4])};
    Twinbft__SmPlacementResult pr = TWINBFT__SM_PLACEMENT_RESULT__INIT;
    pr.added = added;
    pr.n_added = 3;
    pr.removed = removed;
    pr.n_removed = 2;
    smr res = TWINBFT__SM_RESULT__INIT;
    res.payload_case = TWINBFT__SM_RESULT__PAYLOAD_PLACEMENT;
    res.placement = &pr;
    uint8_t buf[4096];
    size_t len = twinbft__sm_result__pack(&res, buf);
    ck_assert_int_eq(sm_result_addressees(buf, len, names, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(names[0], "agent-1");
    ck_assert_str_eq(names[1], "agent-2");
    ck_assert_str_eq(names[2], "zed");

    memset(buf, 0xff, 16);
    ck_assert_int_eq(sm_result_addressees(buf, 16, names, &n), TB_ERR_INVALID);
    ck_assert_uint_eq(n, 0);
    smt_close(&t);
}
END_TEST

static Suite *ordered_suite(void) {
    Suite *s = suite_create("sm_ordered");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_ordered_matches_unordered);
    tcase_add_test(tc, test_ordered_answer_trimmed);
    tcase_add_test(tc, test_ordered_history_elides_a_huge_event);
    tcase_add_test(tc, test_result_addressees);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(ordered_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
