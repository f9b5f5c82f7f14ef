/* Actuation approval (every denial reason), the command an approval yields,
 * the emergency-stop latch, and the device shadow. */
#include "test_sm_util.h"

#define CMP(name) TWINBFT__SM_CMP__SM_CMP_##name

/* A valve on m1: setpoint in [0, 100], steps of at most 10, 5 s apart, needing
 * the owner role, with the guard door closed; safe value 0; commands go to "plc-7". */
static void valve_policy(smt *t, uint32_t role) {
    Twinbft__SmPolicy p = TWINBFT__SM_POLICY__INIT;
    Twinbft__SmInterlock door = TWINBFT__SM_INTERLOCK__INIT, *ils[1] = {&door};
    door.property = "guard_door";
    door.cmp = CMP(EQ);
    door.value = "closed";
    p.twin = "m1";
    p.property = "setpoint";
    p.min = 0;
    p.max = 100;
    p.max_step = 10;
    p.min_interval_ms = 5000;
    p.required_role = (Twinbft__SmRole)role;
    p.interlocks = ils;
    p.n_interlocks = 1;
    p.safe_value = 0;
    p.ttl_ms = 2000;
    p.principal = "plc-7";
    expect_ok(op_policy(t, "op", &p));
}

/* Proves an approval yields a command for the actuator's principal, windowed by
 * consensus time with the sequence number as nonce, and writes the desired state. */
START_TEST(test_approval_command) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    valve_policy(&t, SM_ROLE_OWNER);
    expect_ok(op_report(&t, "bob", "m1", "guard_door", "closed"));
    smr *r = op_actuate(&t, "bob", "m1", "setpoint", 8, false);
    expect_ok(r);
    ck_assert_int_eq(r->payload_case, TWINBFT__SM_RESULT__PAYLOAD_COMMAND);
    ck_assert_str_eq(r->command->to, "plc-7");
    ck_assert_str_eq(r->command->twin, "m1");
    ck_assert_str_eq(r->command->property, "setpoint");
    ck_assert_int_eq(r->command->value, 8);
    ck_assert_uint_eq(r->command->not_before_ms, t.time_ms);
    ck_assert_uint_eq(r->command->expires_at_ms, t.time_ms + 2000);
    ck_assert_uint_eq(r->command->nonce, t.seq);
    ck_assert_uint_eq(r->command->index, 0);
    ck_assert_uint_eq(t.out.ttl_ms, 2000);
    /* The approval is the desired state now, and the delta shows it. */
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    q.q_case = TWINBFT__SM_QUERY__Q_SHADOW_GET;
    q.shadow_get = "m1";
    Twinbft__SmQueryResult *a = smt_query(&t, "bob", &q);
    ck_assert_uint_eq(a->shadow->shadow->n_desired, 1);
    ck_assert_str_eq(a->shadow->shadow->desired[0]->value, "8");
    ck_assert_uint_eq(a->shadow->n_delta, 1);
    ck_assert_str_eq(a->shadow->delta[0]->name, "setpoint");
    expect_ok(op_report(&t, "bob", "m1", "setpoint", "8"));
    ck_assert_uint_eq(smt_query(&t, "bob", &q)->shadow->n_delta, 0);
    /* Without a principal in the policy, commands go to the twin's owner. */
    Twinbft__SmPolicy p = TWINBFT__SM_POLICY__INIT;
    p.twin = "c1";
    p.property = "speed";
    p.max = 5;
    p.required_role = (Twinbft__SmRole)SM_ROLE_OPERATOR;
    expect_ok(op_policy(&t, "op", &p));
    r = op_actuate(&t, "op", "c1", "speed", 5, false);
    expect_ok(r);
    ck_assert_str_eq(r->command->to, "bob");
    ck_assert_uint_eq(r->command->expires_at_ms - r->command->not_before_ms,
                      SM_COMMAND_TTL_MS_DEFAULT);
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

/* Proves each denial reason of actuation, in the documented order of checks. */
START_TEST(test_denials) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    expect_deny(op_actuate(&t, "bob", "m1", "setpoint", 5, false), R(NO_POLICY));
    valve_policy(&t, SM_ROLE_OWNER);
    expect_deny(op_actuate(&t, "op", "m1", "setpoint", 5, false), R(ROLE));
    expect_ok(op_twin(&t, "op", "line2", LINE_KIND, "plant", NULL, "carol"));
    expect_ok(op_grant(&t, "admin", "carol", SM_ROLE_OWNER));
    expect_deny(op_actuate(&t, "carol", "m1", "setpoint", 5, false), R(NOT_OWNER));
    /* The door is not reported at all: the interlock fails. */
    smr *r = op_actuate(&t, "bob", "m1", "setpoint", 5, false);
    expect_deny(r, R(INTERLOCK));
    ck_assert_int_eq(r->payload_case, TWINBFT__SM_RESULT__PAYLOAD_INTERLOCK);
    ck_assert_str_eq(r->interlock->property, "guard_door");
    expect_ok(op_report(&t, "bob", "m1", "guard_door", "open"));
    expect_deny(op_actuate(&t, "bob", "m1", "setpoint", 5, false), R(INTERLOCK));
    expect_ok(op_report(&t, "bob", "m1", "guard_door", "closed"));
    expect_deny(op_actuate(&t, "bob", "m1", "setpoint", 101, false), R(RANGE));
    expect_deny(op_actuate(&t, "bob", "m1", "setpoint", -1, false), R(RANGE));
    expect_ok(op_actuate(&t, "bob", "m1", "setpoint", 10, false));
    /* The clock of smt advances 1 s per op: 5 s have not passed. */
    expect_deny(op_actuate(&t, "bob", "m1", "setpoint", 12, false), R(INTERVAL));
    t.time_ms += 10000;
    expect_deny(op_actuate(&t, "bob", "m1", "setpoint", 21, false), R(STEP));
    t.time_ms += 10000;
    expect_ok(op_actuate(&t, "bob", "m1", "setpoint", 20, false));
    t.time_ms += 10000;
    expect_ok(op_actuate(&t, "bob", "m1", "setpoint", 10, false)); /* steps go both ways */
    expect_invalid(op_actuate(&t, "bob", "m1", "", 1, false));
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

/* Proves numeric interlocks compare as integers and fail on unparsable values. */
START_TEST(test_numeric_interlocks) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    Twinbft__SmPolicy p = TWINBFT__SM_POLICY__INIT;
    Twinbft__SmInterlock a = TWINBFT__SM_INTERLOCK__INIT, b = TWINBFT__SM_INTERLOCK__INIT;
    Twinbft__SmInterlock *ils[2] = {&a, &b};
    a.twin = "line1"; /* another twin's reported state */
    a.property = "pressure";
    a.cmp = CMP(LT);
    a.value = "100";
    b.property = "mode";
    b.cmp = CMP(NE);
    b.value = "service";
    p.twin = "m1";
    p.property = "pump";
    p.min = -5;
    p.max = 5;
    p.required_role = (Twinbft__SmRole)SM_ROLE_OPERATOR;
    p.interlocks = ils;
    p.n_interlocks = 2;
    expect_ok(op_policy(&t, "op", &p));
    expect_ok(op_report(&t, "alice", "line1", "pressure", "99"));
    /* An unreported property fails any interlock, even "!=": unknown is not safe. */
    expect_deny(op_actuate(&t, "op", "m1", "pump", -5, false), R(INTERLOCK));
    expect_ok(op_report(&t, "bob", "m1", "mode", "auto"));
    expect_ok(op_actuate(&t, "op", "m1", "pump", -5, false));
    expect_ok(op_report(&t, "alice", "line1", "pressure", "100"));
    expect_deny(op_actuate(&t, "op", "m1", "pump", 1, false), R(INTERLOCK));
    expect_ok(op_report(&t, "alice", "line1", "pressure", "-7"));
    expect_ok(op_actuate(&t, "op", "m1", "pump", 1, false));
    expect_ok(op_report(&t, "alice", "line1", "pressure", "12abc"));
    expect_deny(op_actuate(&t, "op", "m1", "pump", 1, false), R(INTERLOCK));
    expect_ok(op_report(&t, "alice", "line1", "pressure", "99999999999999999999"));
    expect_deny(op_actuate(&t, "op", "m1", "pump", 1, false), R(INTERLOCK));
    expect_ok(op_report(&t, "alice", "line1", "pressure", "1"));
    expect_ok(op_report(&t, "bob", "m1", "mode", "service"));
    smr *r = op_actuate(&t, "op", "m1", "pump", 1, false);
    expect_deny(r, R(INTERLOCK));
    ck_assert_str_eq(r->interlock->property, "mode");
    /* Policies are an operator's, and must make sense. */
    expect_deny(op_policy(&t, "admin", &p), R(ROLE));
    p.safe_value = 9;
    expect_invalid(op_policy(&t, "op", &p));
    p.safe_value = 0;
    p.required_role = (Twinbft__SmRole)(SM_ROLE_OPERATOR | SM_ROLE_ADMIN);
    expect_invalid(op_policy(&t, "op", &p));
    p.required_role = (Twinbft__SmRole)SM_ROLE_OPERATOR;
    p.twin = "ghost";
    expect_deny(op_policy(&t, "op", &p), R(NOT_FOUND));
    expect_deny(op_policy_remove(&t, "bob", "m1", "pump"), R(ROLE));
    expect_deny(op_policy_remove(&t, "op", "m1", "nope"), R(NOT_FOUND));
    expect_ok(op_policy_remove(&t, "op", "m1", "pump"));
    expect_deny(op_actuate(&t, "op", "m1", "pump", 1, false), R(NO_POLICY));
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

/* Proves the e-stop: a latch on a site, an ancestor or the twin denies every actuation
 * under it except the safe-state command; only an operator may reset it. */
START_TEST(test_estop) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    valve_policy(&t, SM_ROLE_OWNER);
    expect_ok(op_report(&t, "bob", "m1", "guard_door", "closed"));
    expect_ok(op_latch(&t, "bob", SCOPE_TWIN, "m1")); /* an owner may stop its own twin */
    expect_deny(op_actuate(&t, "bob", "m1", "setpoint", 5, false), R(ESTOP));
    smr *r = op_actuate(&t, "bob", "m1", "setpoint", 77, true);
    expect_ok(r);
    ck_assert_int_eq(r->command->value, 0); /* the safe value, whatever was asked */
    ck_assert(r->command->safe_state);
    expect_deny(op_reset(&t, "bob", SCOPE_TWIN, "m1"), R(ROLE));
    expect_deny(op_reset(&t, "admin", SCOPE_TWIN, "m1"), R(ROLE));
    expect_ok(op_reset(&t, "op", SCOPE_TWIN, "m1"));
    expect_deny(op_reset(&t, "op", SCOPE_TWIN, "m1"), R(NOT_FOUND));
    t.time_ms += 10000;
    expect_ok(op_actuate(&t, "bob", "m1", "setpoint", 5, false));
    /* A latch on an ancestor and on the site reach down to the twin. */
    expect_ok(op_latch(&t, "alice", SCOPE_TWIN, "line1"));
    expect_ok(op_latch(&t, "alice", SCOPE_TWIN, "line1")); /* idempotent */
    ck_assert_str_eq(t.res->detail, "already latched");
    t.time_ms += 10000;
    expect_deny(op_actuate(&t, "bob", "m1", "setpoint", 6, false), R(ESTOP));
    expect_ok(op_reset(&t, "op", SCOPE_TWIN, "line1"));
    expect_deny(op_latch(&t, "bob", SCOPE_SITE, "s1"), R(ROLE)); /* sites: operators */
    expect_deny(op_latch(&t, "bob", SCOPE_TWIN, "line1"), R(NOT_OWNER));
    expect_deny(op_latch(&t, "nobody", SCOPE_TWIN, "m1"), R(ROLE));
    expect_deny(op_latch(&t, "op", SCOPE_SITE, "s9"), R(SITE_MISSING));
    expect_deny(op_latch(&t, "op", SCOPE_TWIN, "ghost"), R(NOT_FOUND));
    expect_invalid(op_latch(&t, "op", 5, "s1"));
    expect_ok(op_latch(&t, "op", SCOPE_SITE, "s1"));
    t.time_ms += 10000;
    expect_deny(op_actuate(&t, "bob", "m1", "setpoint", 6, false), R(ESTOP));
    /* An operator may always send the safe-state command. */
    expect_ok(op_actuate(&t, "op", "m1", "setpoint", 0, true));
    expect_deny(op_actuate(&t, "nobody", "m1", "setpoint", 0, true), R(ROLE));
    expect_ok(op_reset(&t, "op", SCOPE_SITE, "s1"));
    t.time_ms += 10000;
    expect_ok(op_actuate(&t, "bob", "m1", "setpoint", 6, false));
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

/* Proves e-stop latches and safe-state commands are the ops allowed in the priority lane. */
START_TEST(test_priority_lane) {
    uint8_t buf[256];
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    Twinbft__SmEstopLatch l = TWINBFT__SM_ESTOP_LATCH__INIT;
    Twinbft__SmActuate act = TWINBFT__SM_ACTUATE__INIT;
    op.op_case = TWINBFT__SM_OP__OP_ESTOP_LATCH;
    op.estop_latch = &l;
    l.id = "s1";
    ck_assert(sm_op_is_priority(buf, twinbft__sm_op__pack(&op, buf)));
    op.op_case = TWINBFT__SM_OP__OP_ACTUATE;
    op.actuate = &act;
    act.twin = "m1";
    act.property = "p";
    ck_assert(!sm_op_is_priority(buf, twinbft__sm_op__pack(&op, buf)));
    act.safe_state = true;
    ck_assert(sm_op_is_priority(buf, twinbft__sm_op__pack(&op, buf)));
    ck_assert(!sm_op_is_priority((const uint8_t *)"\xff\xff", 2));
}
END_TEST

/* Proves the shadow: owners write reported, operators write desired, each with a version,
 * and the delta lists what reported does not match. */
START_TEST(test_shadow) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    smr *r = op_report(&t, "bob", "m1", "temp", "20");
    expect_ok(r);
    ck_assert_uint_eq(r->shadow->reported_version, 1);
    expect_deny(op_report(&t, "op", "m1", "temp", "20"), R(ROLE));
    expect_deny(op_report(&t, "admin", "m1", "temp", "20"), R(ROLE));
    expect_ok(op_twin(&t, "op", "line2", LINE_KIND, "plant", NULL, "carol"));
    expect_ok(op_grant(&t, "admin", "carol", SM_ROLE_OWNER));
    expect_deny(op_report(&t, "carol", "m1", "temp", "20"), R(NOT_OWNER));
    expect_deny(op_report(&t, "bob", "ghost", "temp", "20"), R(NOT_FOUND));
    expect_deny(op_desire(&t, "bob", "m1", "temp", "25"), R(ROLE));
    expect_deny(op_desire(&t, "op", "ghost", "temp", "25"), R(NOT_FOUND));
    r = op_desire(&t, "op", "m1", "temp", "25");
    expect_ok(r);
    ck_assert_uint_eq(r->shadow->desired_version, 1);
    expect_ok(op_desire(&t, "op", "m1", "mode", "auto"));
    expect_ok(op_report(&t, "bob", "m1", "mode", "auto"));
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    q.q_case = TWINBFT__SM_QUERY__Q_SHADOW_GET;
    q.shadow_get = "m1";
    Twinbft__SmQueryResult *a = smt_query(&t, "alice", &q);
    ck_assert_uint_eq(a->shadow->shadow->reported_version, 2);
    ck_assert_uint_eq(a->shadow->shadow->desired_version, 2);
    ck_assert_uint_eq(a->shadow->shadow->n_reported, 2);
    ck_assert_str_eq(a->shadow->shadow->reported[0]->name, "mode"); /* sorted */
    ck_assert_uint_eq(a->shadow->n_delta, 1);
    ck_assert_str_eq(a->shadow->delta[0]->name, "temp");
    ck_assert_str_eq(a->shadow->delta[0]->value, "25");
    ck_assert_int_eq(smt_query(&t, "carol", &q)->reason, R(NOT_OWNER));
    ck_assert_int_eq(smt_query(&t, "agent-1", &q)->reason, R(ROLE));
    /* Removing a property. */
    r = op_report(&t, "bob", "m1", "mode", NULL);
    expect_ok(r);
    ck_assert_uint_eq(r->shadow->n_reported, 1);
    q.shadow_get = "c1"; /* no shadow yet: empty */
    a = smt_query(&t, "bob", &q);
    ck_assert_int_eq(a->code, SM_OK);
    ck_assert_uint_eq(a->shadow->shadow->n_reported, 0);
    /* At most SM_SHADOW_PROPS_MAX properties per side. */
    char name[16];
    for (int i = 0; i < SM_SHADOW_PROPS_MAX - 1; i++) {
        snprintf(name, sizeof name, "p%02d", i);
        expect_ok(op_report(&t, "bob", "m1", name, "1"));
    }
    expect_deny(op_report(&t, "bob", "m1", "one-more", "1"), R(LIMIT));
    expect_ok(op_report(&t, "bob", "m1", "p00", "2")); /* replacing is fine */
    expect_invalid(op_report(&t, "bob", "m1", "bad name", "1"));
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

/* Proves the per-twin actuator limit. */
START_TEST(test_policy_limit) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    Twinbft__SmPolicy p = TWINBFT__SM_POLICY__INIT;
    char prop[16];
    p.twin = "m1";
    p.max = 1;
    p.required_role = (Twinbft__SmRole)SM_ROLE_OPERATOR;
    for (int i = 0; i < SM_TWIN_POLICIES_MAX; i++) {
        snprintf(prop, sizeof prop, "a%02d", i);
        p.property = prop;
        expect_ok(op_policy(&t, "op", &p));
    }
    p.property = "a99";
    expect_deny(op_policy(&t, "op", &p), R(LIMIT));
    p.property = "a00";
    expect_ok(op_policy(&t, "op", &p)); /* replacing is fine */
    /* Retiring the twin takes its policies with it. */
    expect_ok(op_twin_retire(&t, "op", "c1"));
    expect_ok(op_twin_retire(&t, "op", "m1"));
    expect_ok(op_twin(&t, "op", "m1", MACHINE_KIND, "line1", NULL, "bob"));
    expect_deny(op_actuate(&t, "op", "m1", "a00", 1, false), R(NO_POLICY));
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

static Suite *actuation_suite(void) {
    Suite *s = suite_create("sm_actuation");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_approval_command);
    tcase_add_test(tc, test_denials);
    tcase_add_test(tc, test_numeric_interlocks);
    tcase_add_test(tc, test_estop);
    tcase_add_test(tc, test_priority_lane);
    tcase_add_test(tc, test_shadow);
    tcase_add_test(tc, test_policy_limit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(actuation_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
