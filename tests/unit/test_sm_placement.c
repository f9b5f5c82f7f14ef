/* Placement, scaling and re-placement: the hard constraints with their
 * rejection classes, the documented score and its tie-break, and what
 * happens when nodes drain or go down. */
#include "test_sm_util.h"

#define UP TWINBFT__SM_NODE_STATE__SM_NODE_UP
#define DRAINING TWINBFT__SM_NODE_STATE__SM_NODE_DRAINING
#define DOWN TWINBFT__SM_NODE_STATE__SM_NODE_DOWN
#define REJ(name) TWINBFT__SM_REJECT__SM_REJECT_##name

static const Twinbft__SmRejection *rejection(const smr *r, int cls) {
    ck_assert_int_eq(r->payload_case, TWINBFT__SM_RESULT__PAYLOAD_DENIAL);
    for (size_t i = 0; i < r->denial->n_rejections; i++) {
        if ((int)r->denial->rejections[i]->reject == cls) {
            return r->denial->rejections[i];
        }
    }
    return NULL;
}

static void expect_rejected(const smr *r, int cls, uint32_t nodes, const char *first) {
    const Twinbft__SmRejection *rj = rejection(r, cls);
    ck_assert_msg(rj != NULL, "no rejection of class %d", cls);
    ck_assert_uint_eq(rj->nodes, nodes);
    ck_assert_str_eq(rj->first_node, first);
}

/* The node a replica went to, from a placement result's added list. */
static const char *placed_on(const smr *r, const char *comp, uint32_t replica) {
    ck_assert_int_eq(r->payload_case, TWINBFT__SM_RESULT__PAYLOAD_PLACEMENT);
    for (size_t i = 0; i < r->placement->n_added; i++) {
        const Twinbft__SmPlacement *p = r->placement->added[i]->placement;
        if (strcmp(p->component, comp) == 0 && p->replica == replica) {
            return p->node;
        }
    }
    return NULL;
}

/* Proves each hard constraint rejects with its own class, counted per class with the
 * first node named, and that a denied placement writes nothing. */
START_TEST(test_constraints_and_denial) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    expect_ok(op_node(&t, "admin", "a-down", EDGE, "s1", "eu", 9000, 9000, NULL));
    expect_ok(op_node_state(&t, "admin", "a-down", DOWN));
    expect_ok(op_node(&t, "admin", "b-cloud", CLOUD, "s1", "eu", 9000, 9000, NULL));
    expect_ok(op_node(&t, "admin", "b-cloud2", CLOUD, "s1", "eu", 9000, 9000, NULL));
    expect_ok(op_node(&t, "admin", "c-zone", EDGE, "s1", "us", 9000, 9000, NULL));
    expect_ok(op_node_lat(&t, "admin", "d-far", EDGE, "s2", "eu", 9000, 9000, NULL, "s1", 100));
    expect_ok(op_node(&t, "admin", "d-unknown", EDGE, "s2", "eu", 9000, 9000, NULL));
    expect_ok(op_node(&t, "admin", "e-cpu", EDGE, "s1", "eu", 100, 9000, NULL));
    expect_ok(op_node(&t, "admin", "f-mem", EDGE, "s1", "eu", 9000, 10, NULL));
    expect_ok(op_node_lat(&t, "admin", "g-ok", EDGE, "s2", "eu", 9000, 9000, NULL, "s1", 20));
    expect_ok(op_comp(&t, "op", "m1", "est", 500, 100, EDGE, "eu", 20, 1, 2));
    smr *r = op_place(&t, "op", "m1");
    expect_ok(r);
    ck_assert_str_eq(placed_on(r, "est", 0), "g-ok");
    ck_assert_str_eq(r->placement->added[0]->placement->agent, "");
    r = op_scale(&t, "op", "m1", "est", 2);
    expect_deny(r, R(NO_FEASIBLE_NODE));
    ck_assert_str_eq(r->denial->component, "est");
    ck_assert_uint_eq(r->denial->replica, 1);
    expect_rejected(r, REJ(STATE), 1, "a-down");
    expect_rejected(r, REJ(TIER), 2, "b-cloud");
    expect_rejected(r, REJ(ZONE), 1, "c-zone");
    expect_rejected(r, REJ(LATENCY), 2, "d-far");
    expect_rejected(r, REJ(AFFINITY), 1, "g-ok");
    expect_rejected(r, REJ(CPU), 1, "e-cpu");
    expect_rejected(r, REJ(MEMORY), 1, "f-mem");
    ck_assert_ptr_null(rejection(r, REJ(SLOTS)));
    /* Nothing changed: still one replica, desired still 1. */
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    q.q_case = TWINBFT__SM_QUERY__Q_PLACEMENT_LIST;
    q.placement_list = "m1";
    ck_assert_uint_eq(smt_query(&t, "bob", &q)->n_placements, 1);
    ck_assert_int_eq(smt_query(&t, "alice", &q)->code, SM_OK); /* an ancestor's owner */
    expect_ok(op_twin(&t, "op", "other", SITE_KIND, NULL, "s2", "carol"));
    expect_ok(op_grant(&t, "admin", "carol", SM_ROLE_OWNER));
    ck_assert_int_eq(smt_query(&t, "carol", &q)->reason, R(NOT_OWNER));
    /* Every node is classed by the first check it fails, in the documented order. */
    expect_ok(op_comp(&t, "op", "other", "x", 1, 1, CLOUD, "nowhere", 0, 1, 1));
    r = op_place(&t, "op", "other");
    expect_deny(r, R(NO_FEASIBLE_NODE));
    expect_rejected(r, REJ(STATE), 1, "a-down");
    expect_rejected(r, REJ(ZONE), 2, "b-cloud");
    expect_rejected(r, REJ(TIER), 6, "c-zone");
    ck_assert_uint_eq(r->denial->n_rejections, 3);
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

/* Proves the score: lowest latency first, then most free CPU, then most free memory,
 * then the lowest node id. */
START_TEST(test_score_and_tie_break) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    expect_ok(op_node_lat(&t, "admin", "n-b", EDGE, "s2", NULL, 4000, 4000, NULL, "s1", 5));
    expect_ok(op_node_lat(&t, "admin", "n-a", EDGE, "s2", NULL, 3000, 3000, NULL, "s1", 5));
    expect_ok(op_node_lat(&t, "admin", "n-c", EDGE, "s2", NULL, 1000, 1000, NULL, "s1", 1));
    expect_ok(op_node_lat(&t, "admin", "n-d", EDGE, "s2", NULL, 9000, 9000, NULL, "s1", 9));
    expect_ok(op_comp(&t, "op", "m1", "a", 1000, 1000, ANY_TIER, NULL, 0, 1, 1));
    expect_ok(op_comp(&t, "op", "m1", "b", 1000, 1000, ANY_TIER, NULL, 0, 1, 1));
    expect_ok(op_comp(&t, "op", "m1", "c", 1000, 1000, ANY_TIER, NULL, 0, 1, 1));
    expect_ok(op_comp(&t, "op", "m1", "d", 1000, 500, ANY_TIER, NULL, 0, 1, 1));
    expect_ok(op_comp(&t, "op", "m1", "e", 1000, 1000, ANY_TIER, NULL, 0, 1, 1));
    smr *r = op_place(&t, "op", "m1");
    expect_ok(r);
    /* a: n-c has the lowest latency (1 ms) and exactly room. */
    ck_assert_str_eq(placed_on(r, "a", 0), "n-c");
    /* b: n-a and n-b tie on 5 ms; n-b has more free CPU (4000 > 3000). */
    ck_assert_str_eq(placed_on(r, "b", 0), "n-b");
    /* c: both now have 3000 millicores and 3000 MiB free: the lower id, n-a. */
    ck_assert_str_eq(placed_on(r, "c", 0), "n-a");
    /* d: n-b has more free CPU (3000 > 2000). */
    ck_assert_str_eq(placed_on(r, "d", 0), "n-b");
    /* e: CPU ties at 2000; n-b has more free memory (2500 > 2000). */
    ck_assert_str_eq(placed_on(r, "e", 0), "n-b");
    /* Placing again places nothing: every wanted replica has a node. */
    r = op_place(&t, "op", "m1");
    expect_ok(r);
    ck_assert_uint_eq(r->placement->n_added, 0);
    /* An owner's own latency: a node at the twin's site counts as 0 ms. */
    expect_ok(op_node(&t, "admin", "n-local", EDGE, "s1", NULL, 9000, 9000, "agent-1"));
    expect_ok(op_comp(&t, "bob", "c1", "f", 1000, 1000, ANY_TIER, NULL, 0, 1, 1));
    r = op_place(&t, "bob", "c1");
    expect_ok(r);
    ck_assert_str_eq(placed_on(r, "f", 0), "n-local");
    ck_assert_str_eq(r->placement->added[0]->placement->agent, "agent-1");
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

/* Proves placement and scaling are authorised like other twin ops. */
START_TEST(test_place_authz) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    expect_ok(op_node(&t, "admin", "n1", EDGE, "s1", NULL, 9000, 9000, NULL));
    expect_ok(op_comp(&t, "op", "m1", "a", 10, 10, ANY_TIER, NULL, 0, 1, 3));
    expect_deny(op_place(&t, "nobody", "m1"), R(ROLE));
    expect_deny(op_place(&t, "agent-1", "m1"), R(ROLE));
    expect_deny(op_place(&t, "op", "ghost"), R(NOT_FOUND));
    expect_invalid(op_place(&t, "op", ""));
    expect_ok(op_twin(&t, "op", "line2", LINE_KIND, "plant", NULL, "carol"));
    expect_ok(op_grant(&t, "admin", "carol", SM_ROLE_OWNER));
    expect_deny(op_place(&t, "carol", "m1"), R(NOT_OWNER));
    expect_deny(op_scale(&t, "carol", "m1", "a", 1), R(NOT_OWNER));
    expect_ok(op_place(&t, "bob", "m1"));
    expect_ok(op_place(&t, "alice", "m1"));
    expect_deny(op_scale(&t, "op", "m1", "ghost", 1), R(NOT_FOUND));
    smt_close(&t);
}
END_TEST

/* Proves scaling between min and max yields the placements or removals it implies. */
START_TEST(test_scale) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    expect_ok(op_node(&t, "admin", "n1", EDGE, "s1", NULL, 9000, 9000, NULL));
    expect_ok(op_node(&t, "admin", "n2", EDGE, "s1", NULL, 8000, 9000, NULL));
    expect_ok(op_node(&t, "admin", "n3", EDGE, "s1", NULL, 7000, 9000, NULL));
    expect_ok(op_comp(&t, "op", "m1", "svc", 1000, 100, ANY_TIER, NULL, 0, 1, 3));
    expect_deny(op_scale(&t, "op", "m1", "svc", 0), R(REPLICAS_RANGE));
    expect_deny(op_scale(&t, "op", "m1", "svc", 4), R(REPLICAS_RANGE));
    smr *r = op_scale(&t, "op", "m1", "svc", 3);
    expect_ok(r);
    ck_assert_uint_eq(r->placement->n_added, 3);
    ck_assert_str_eq(placed_on(r, "svc", 0), "n1");
    ck_assert_str_eq(placed_on(r, "svc", 1), "n2");
    ck_assert_str_eq(placed_on(r, "svc", 2), "n3"); /* anti-affinity spreads them */
    r = op_scale(&t, "op", "m1", "svc", 1);
    expect_ok(r);
    ck_assert_uint_eq(r->placement->n_added, 0);
    ck_assert_uint_eq(r->placement->n_removed, 2);
    ck_assert_uint_eq(r->placement->removed[0]->placement->replica, 1);
    ck_assert_uint_eq(r->placement->removed[1]->placement->replica, 2);
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    q.q_case = TWINBFT__SM_QUERY__Q_NODE_GET;
    q.node_get = "n2";
    ck_assert_uint_eq(smt_query(&t, "op", &q)->nodes[0]->cpu_used, 0);
    ck_assert_uint_eq(smt_query(&t, "op", &q)->nodes[0]->replicas, 0);
    /* place keeps the desired count set by scale. */
    r = op_place(&t, "op", "m1");
    ck_assert_uint_eq(r->placement->n_added, 0);
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

/* Proves a draining or down node's replicas move to the best other node, a replica
 * with nowhere to go is left pending, and a later place finds it a node. */
START_TEST(test_drain_and_down) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    expect_ok(op_node(&t, "admin", "n1", EDGE, "s1", NULL, 9000, 9000, "agent-1"));
    expect_ok(op_node(&t, "admin", "n2", EDGE, "s1", NULL, 8000, 9000, "agent-2"));
    expect_ok(op_node(&t, "admin", "n3", EDGE, "s1", NULL, 1000, 9000, NULL));
    expect_ok(op_comp(&t, "op", "m1", "svc", 2000, 100, ANY_TIER, NULL, 0, 2, 2));
    expect_ok(op_comp(&t, "op", "m1", "tiny", 500, 100, ANY_TIER, NULL, 0, 1, 1));
    smr *r = op_place(&t, "op", "m1");
    ck_assert_str_eq(placed_on(r, "svc", 0), "n1");
    ck_assert_str_eq(placed_on(r, "svc", 1), "n2");
    ck_assert_str_eq(placed_on(r, "tiny", 0), "n1");
    /* A node's agent reads what it should run; other agents and owners may not. */
    Twinbft__SmQuery np = TWINBFT__SM_QUERY__INIT;
    np.q_case = TWINBFT__SM_QUERY__Q_NODE_PLACEMENTS;
    np.node_placements = "n1";
    Twinbft__SmQueryResult *a = smt_query(&t, "agent-1", &np);
    ck_assert_int_eq(a->code, SM_OK);
    ck_assert_uint_eq(a->n_placements, 2);
    ck_assert_str_eq(a->placements[0]->component, "svc");
    ck_assert_str_eq(a->placements[1]->component, "tiny");
    ck_assert_int_eq(smt_query(&t, "bob", &np)->reason, R(ROLE));
    ck_assert_int_eq(smt_query(&t, "op", &np)->n_placements, 2);
    np.node_placements = "n9";
    ck_assert_int_eq(smt_query(&t, "op", &np)->reason, R(NOT_FOUND));
    /* Only the node's own agent, an operator or an admin may change its state. */
    expect_deny(op_node_state(&t, "bob", "n1", DRAINING), R(ROLE));
    expect_ok(op_grant(&t, "admin", "agent-2", SM_ROLE_NODE_AGENT));
    expect_deny(op_node_state(&t, "agent-2", "n1", DRAINING), R(ROLE));
    np.node_placements = "n1";
    ck_assert_int_eq(smt_query(&t, "agent-2", &np)->reason, R(ROLE));
    expect_deny(op_node_state(&t, "agent-1", "n9", DRAINING), R(NOT_FOUND));
    expect_invalid(op_node_state(&t, "agent-1", "n1", 7));
    /* n1 drains: svc/0 cannot join its sibling on n2 and n3 is too small: pending;
     * tiny moves to n2. */
    r = op_node_state(&t, "agent-1", "n1", DRAINING);
    expect_ok(r);
    ck_assert_uint_eq(r->placement->n_added, 1);
    ck_assert_str_eq(r->placement->added[0]->placement->component, "tiny");
    ck_assert_str_eq(r->placement->added[0]->placement->node, "n2");
    ck_assert_str_eq(r->placement->added[0]->from_node, "n1");
    ck_assert_uint_eq(r->placement->n_unplaced, 1);
    ck_assert_str_eq(r->placement->unplaced[0]->component, "svc");
    ck_assert_str_eq(r->placement->unplaced[0]->node, "");
    /* A new node appears: placing again finds the pending replica a home. */
    expect_ok(op_node(&t, "admin", "n4", EDGE, "s1", NULL, 9000, 9000, NULL));
    r = op_place(&t, "op", "m1");
    expect_ok(r);
    ck_assert_uint_eq(r->placement->n_added, 1);
    ck_assert_str_eq(placed_on(r, "svc", 0), "n4");
    /* n2 goes down: svc/1 has nowhere to go (n1 drains, n3 is too small, n4 holds its
     * sibling); tiny fits n3 and n4, and n4 has more free CPU. */
    r = op_node_state(&t, "agent-2", "n2", DOWN);
    expect_ok(r);
    ck_assert_uint_eq(r->placement->n_unplaced, 1);
    ck_assert_uint_eq(r->placement->unplaced[0]->replica, 1);
    ck_assert_uint_eq(r->placement->n_added, 1);
    ck_assert_str_eq(r->placement->added[0]->placement->node, "n4");
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    q.q_case = TWINBFT__SM_QUERY__Q_NODE_GET;
    q.node_get = "n2";
    a = smt_query(&t, "op", &q);
    ck_assert_uint_eq(a->nodes[0]->replicas, 0);
    ck_assert_uint_eq(a->nodes[0]->cpu_used, 0);
    ck_assert_int_eq(a->nodes[0]->state, DOWN);
    /* Back up: nothing moves back by itself, but placing uses it again. */
    expect_ok(op_node_state(&t, "op", "n1", UP));
    r = op_place(&t, "op", "m1");
    ck_assert_str_eq(placed_on(r, "svc", 1), "n1");
    expect_ok(op_node_retire(&t, "admin", "n2")); /* empty now */
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

/* Proves a node hosts at most SM_NODE_REPLICAS_MAX replicas (rejection class SLOTS). */
START_TEST(test_slots) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    expect_ok(op_node(&t, "admin", "big", EDGE, "s1", NULL, 1000000, 1000000, NULL));
    char twin[32], comp[32];
    int placed = 0;
    for (int m = 0; placed < SM_NODE_REPLICAS_MAX; m++) {
        snprintf(twin, sizeof twin, "mach%d", m);
        expect_ok(op_twin(&t, "op", twin, MACHINE_KIND, "line1", NULL, "bob"));
        for (int i = 0; i < SM_TWIN_COMPONENTS_MAX && placed < SM_NODE_REPLICAS_MAX; i++) {
            snprintf(comp, sizeof comp, "c%d", i);
            expect_ok(op_comp(&t, "op", twin, comp, 1, 1, ANY_TIER, NULL, 0, 1, 1));
            placed++;
        }
        expect_ok(op_place(&t, "op", twin));
    }
    expect_ok(op_comp(&t, "op", "m1", "last", 1, 1, ANY_TIER, NULL, 0, 1, 1));
    smr *r = op_place(&t, "op", "m1");
    expect_deny(r, R(NO_FEASIBLE_NODE));
    expect_rejected(r, REJ(SLOTS), 1, "big");
    /* Draining it moves nothing anywhere: all 128 are reported pending, within one result. */
    r = op_node_state(&t, "op", "big", DRAINING);
    expect_ok(r);
    ck_assert_uint_eq(r->placement->n_unplaced, SM_NODE_REPLICAS_MAX);
    ck_assert_uint_le(t.out.result_len, SM_RESULT_BYTES_MAX);
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

static Suite *placement_suite(void) {
    Suite *s = suite_create("sm_placement");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_constraints_and_denial);
    tcase_add_test(tc, test_score_and_tie_break);
    tcase_add_test(tc, test_place_authz);
    tcase_add_test(tc, test_scale);
    tcase_add_test(tc, test_drain_and_down);
    tcase_add_test(tc, test_slots);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(placement_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
