/* Proves the simulator's parts do what the runs rely on: a seeded PRNG and an event
 * queue that replay exactly, storage and application that keep what they were told,
 * signatures only their owner can make, mutations that still pass signature checks,
 * and an invariant checker that fails on every kind of violation it claims to catch. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"
#include "tests/sim/app.h"
#include "tests/sim/byz.h"
#include "tests/sim/check.h"
#include "tests/sim/crypto.h"
#include "tests/sim/eventq.h"
#include "tests/sim/rng.h"
#include "tests/sim/store.h"

START_TEST(test_rng_replays) {
    sim_rng a, b, c;
    sim_rng_seed(&a, 42);
    sim_rng_seed(&b, 42);
    sim_rng_seed(&c, 43);
    bool differs = false;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = sim_rng_next(&a);
        ck_assert_uint_eq(x, sim_rng_next(&b));
        differs |= x != sim_rng_next(&c);
        ck_assert_uint_lt(sim_rng_below(&a, 7), 7);
        uint64_t r = sim_rng_range(&b, 10, 12);
        ck_assert(r >= 10 && r <= 12);
        (void)sim_rng_below(&b, 7); /* keep a and b in step */
        (void)sim_rng_range(&a, 10, 12);
    }
    ck_assert(differs);
}
END_TEST

START_TEST(test_eventq_orders_by_time_then_push_order) {
    sim_eventq q;
    sim_eventq_init(&q);
    static const uint64_t times[] = {30, 10, 20, 10, 30, 10};
    for (uint32_t i = 0; i < 6; i++) {
        sim_event ev = {.time_us = times[i], .kind = SIM_EV_TICK, .a = i};
        sim_eventq_push(&q, &ev);
    }
    static const uint32_t want[] = {1, 3, 5, 2, 0, 4};
    for (int i = 0; i < 6; i++) {
        sim_event ev;
        ck_assert(sim_eventq_pop(&q, &ev));
        ck_assert_uint_eq(ev.a, want[i]);
    }
    sim_event ev;
    ck_assert(!sim_eventq_pop(&q, &ev));
    ev = (sim_event){.time_us = 1, .kind = SIM_EV_DELIVER, .data = malloc(8), .len = 8};
    sim_eventq_push(&q, &ev);
    sim_eventq_free(&q); /* frees the pending event's data (ASan would say otherwise) */
}
END_TEST

static pbft_record rec(pbft_record_kind kind, uint64_t seq, const char *client, bool del,
                       const char *data) {
    return (pbft_record){.kind = kind,
                         .seq = seq,
                         .client = client,
                         .del = del,
                         .data = (const uint8_t *)data,
                         .len = data ? strlen(data) : 0};
}

START_TEST(test_store_put_replace_delete_clear) {
    sim_store s;
    sim_store_init(&s);
    pbft_record rs[] = {
        rec(PBFT_REC_SLOT, 5, NULL, false, "five"), rec(PBFT_REC_META, 0, NULL, false, "m1"),
        rec(PBFT_REC_CLIENT, 0, "c1", false, "x"),  rec(PBFT_REC_SLOT, 3, NULL, false, "three"),
        rec(PBFT_REC_META, 0, NULL, false, "m2"),   rec(PBFT_REC_SLOT, 5, NULL, true, NULL),
        rec(PBFT_REC_CLIENT, 0, "c0", false, "y"),
    };
    for (size_t i = 0; i < sizeof rs / sizeof rs[0]; i++) {
        sim_store_apply(&s, &rs[i]);
    }
    ck_assert_uint_eq(s.n, 4); /* META (replaced), SLOT 3, CLIENT c0, CLIENT c1 */
    ck_assert_int_eq(s.recs[0].kind, PBFT_REC_META);
    ck_assert_mem_eq(s.recs[0].data, "m2", 2);
    ck_assert_uint_eq(s.recs[1].seq, 3);
    ck_assert_str_eq(s.recs[2].client, "c0");
    ck_assert_str_eq(s.recs[3].client, "c1");
    pbft_record clear = rec(PBFT_REC_CLIENTS_CLEAR, 0, NULL, false, NULL);
    sim_store_apply(&s, &clear);
    ck_assert_uint_eq(s.n, 2);
    sim_store_free(&s);
}
END_TEST

static void exec_one(sim_app *app, uint64_t seq, uint8_t kind, uint8_t key, uint64_t arg,
                     uint64_t *value) {
    uint8_t op[SIM_APP_OP_BYTES];
    sim_app_op_encode(kind, key, arg, op);
    pbft_request rq = {.client = "c0", .number = seq, .op = op, .op_len = sizeof op};
    pbft_result res;
    pbft_app cb = sim_app_callbacks(app);
    ck_assert_int_eq(cb.execute(cb.ctx, seq, 0, &rq, 1, &res), 0);
    ck_assert(sim_app_result_decode(res.result, res.result_len, value));
}

START_TEST(test_app_executes_checkpoints_and_restores) {
    sim_app app;
    sim_app_init(&app, NULL, 0, 0, NULL);
    pbft_app cb = sim_app_callbacks(&app);
    uint64_t v = 0;
    exec_one(&app, 1, 'i', 3, 5, &v);
    ck_assert_uint_eq(v, 5);
    exec_one(&app, 2, 'i', 3, 2, &v);
    ck_assert_uint_eq(v, 7);
    uint8_t d2[PROTO_DIGEST_BYTES], d3[PROTO_DIGEST_BYTES], d[PROTO_DIGEST_BYTES];
    cb.digest(cb.ctx, d2);
    ck_assert_int_eq(cb.checkpoint(cb.ctx, 2), 0);
    exec_one(&app, 3, 'p', 3, 100, &v);
    ck_assert_uint_eq(v, 100);
    cb.digest(cb.ctx, d3);
    ck_assert_mem_ne(d2, d3, sizeof d2);
    uint8_t *snap = NULL;
    size_t len = 0;
    ck_assert_int_eq(cb.snapshot(cb.ctx, 2, &snap, &len), 0);
    ck_assert_int_ne(cb.restore(cb.ctx, 2, snap, len, d3), 0); /* wrong digest: refused */
    cb.digest(cb.ctx, d);
    ck_assert_mem_eq(d, d3, sizeof d); /* ... and nothing changed */
    ck_assert_int_eq(cb.restore(cb.ctx, 2, snap, len, d2), 0);
    cb.digest(cb.ctx, d);
    ck_assert_mem_eq(d, d2, sizeof d);
    free(snap);
    /* What was persisted is what a restarted app starts from. */
    sim_app_image durable;
    sim_app_image_init(&durable);
    sim_app_persist(&app, &durable);
    cb.release(cb.ctx, 2);
    ck_assert_int_ne(cb.snapshot(cb.ctx, 2, &snap, &len), 0);
    sim_app again;
    sim_app_init(&again, &durable, 0, 0, NULL);
    pbft_app cb2 = sim_app_callbacks(&again);
    cb2.digest(cb2.ctx, d);
    ck_assert_mem_eq(d, d2, sizeof d);
    ck_assert_int_eq(cb2.snapshot(cb2.ctx, 2, &snap, &len), 0);
    free(snap);
    sim_app_free(&again);
    sim_app_image_free(&durable);
    sim_app_free(&app);
}
END_TEST

START_TEST(test_crypto_only_owner_signs) {
    sim_crypto *c = NULL;
    ck_assert_int_eq(sim_crypto_create(7, 4, false, &c), 0);
    pbft_crypto p1 = sim_crypto_for(c, 1), p2 = sim_crypto_for(c, 2);
    static const uint8_t body[] = "a packed body";
    uint8_t sig[PROTO_SIG_BYTES];
    ck_assert_int_eq(p1.sign(p1.ctx, body, sizeof body, sig), 0);
    ck_assert(p2.verify(p2.ctx, 1, body, sizeof body, sig, sizeof sig));
    ck_assert(!p2.verify(p2.ctx, 2, body, sizeof body, sig, sizeof sig));
    ck_assert(!p2.verify(p2.ctx, 1, body, sizeof body - 1, sig, sizeof sig));
    sig[5] ^= 1;
    ck_assert(!p2.verify(p2.ctx, 1, body, sizeof body, sig, sizeof sig));
    sim_crypto_free(c);
}
END_TEST

/* A PREPARE signed by `signer`, packed as a Message. */
static uint8_t *prepare_msg(sim_crypto *c, uint32_t signer, uint64_t seq, size_t *len) {
    uint8_t digest[PROTO_DIGEST_BYTES] = {1, 2, 3};
    Twinbft__Prepare p = TWINBFT__PREPARE__INIT;
    p.view = 2;
    p.seq = seq;
    p.digest = (ProtobufCBinaryData){sizeof digest, digest};
    Twinbft__Body body = TWINBFT__BODY__INIT;
    body.kind_case = TWINBFT__BODY__KIND_PREPARE;
    body.prepare = &p;
    uint8_t bbuf[256];
    size_t blen = twinbft__body__pack(&body, bbuf);
    uint8_t sig[PROTO_SIG_BYTES];
    ck_assert_int_eq(sim_crypto_sign(c, signer, bbuf, blen, sig), 0);
    Twinbft__Signed s = TWINBFT__SIGNED__INIT;
    s.body = (ProtobufCBinaryData){blen, bbuf};
    s.signer = signer;
    s.signature = (ProtobufCBinaryData){sizeof sig, sig};
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_PREPARE;
    m.prepare = &s;
    uint8_t *out = NULL;
    ck_assert_int_eq(proto_message_pack(&m, &out, len), 0);
    return out;
}

START_TEST(test_byz_mutations_are_resigned_by_their_author) {
    sim_crypto *c = NULL;
    ck_assert_int_eq(sim_crypto_create(9, 4, false, &c), 0);
    sim_byz b;
    sim_byz_init(&b, 3, c, 1000);
    sim_rng rng;
    sim_rng_seed(&rng, 1);
    pbft_crypto verifier = sim_crypto_for(c, 0);
    int mutated = 0;
    for (uint64_t seq = 1; seq <= 200; seq++) {
        size_t len = 0;
        uint8_t *orig = prepare_msg(c, 3, seq, &len);
        sim_byz_plan plan;
        sim_byz_plan_msg(&b, &rng, orig, len, 3, &plan);
        if (plan.mutated != NULL) {
            mutated++;
            ck_assert(plan.mutate_mask != 0);
            ck_assert(plan.mutated_len != len || memcmp(plan.mutated, orig, len) != 0);
            Twinbft__Message *m = proto_message_unpack(plan.mutated, plan.mutated_len);
            ck_assert_ptr_nonnull(m);
            ck_assert_int_eq(m->kind_case, TWINBFT__MESSAGE__KIND_PREPARE);
            ck_assert_uint_eq(m->prepare->signer, 3);
            ck_assert(verifier.verify(verifier.ctx, 3, m->prepare->body.data, m->prepare->body.len,
                                      m->prepare->signature.data, m->prepare->signature.len));
            twinbft__message__free_unpacked(m, NULL);
        }
        free(plan.mutated);
        free(orig);
    }
    ck_assert_int_gt(mutated, 50);
    sim_byz_free(&b);
    sim_crypto_free(c);
}
END_TEST

/* ---- the checker: one consistent history, then one violation of each kind ---- */

enum { CLIENTS = 2, REQUESTS = 3 };

static const uint8_t op_a[SIM_APP_OP_BYTES] = {'i', 1, 1};
static const uint8_t op_b[SIM_APP_OP_BYTES] = {'i', 2, 1};
static const uint8_t res_one[8] = {1};
static const uint8_t res_two[8] = {2};

/* Clients report the hash of the result they accepted. */
static void accepted(sim_check *ck, uint32_t client, uint64_t number, uint64_t seq,
                     const uint8_t *result, size_t len) {
    uint8_t h[PROTO_DIGEST_BYTES];
    proto_sha256(result, len, h);
    sim_check_accepted(ck, client, number, seq, h, len);
}

static void checker(sim_check *ck) {
    sim_check_init(ck, 4, CLIENTS, REQUESTS);
    sim_check_issued(ck, 0, 1, op_a, sizeof op_a);
    sim_check_issued(ck, 1, 1, op_b, sizeof op_b);
}

static void app_exec(sim_check *ck, uint32_t r, uint64_t seq, const char *client, uint64_t number,
                     const uint8_t *op, const uint8_t *res, uint8_t digest_byte) {
    pbft_request rq = {.client = client, .number = number, .op = op, .op_len = SIM_APP_OP_BYTES};
    pbft_result rs = {.result = res, .result_len = 8};
    uint8_t d[PROTO_DIGEST_BYTES] = {digest_byte};
    sim_check_app_execute(ck, r, seq, &rq, 1, &rs, d);
}

static pbft_executed batch(uint64_t seq, uint8_t digest_byte) {
    pbft_executed e;
    memset(&e, 0, sizeof e);
    e.seq = seq;
    e.digest[0] = digest_byte;
    return e;
}

START_TEST(test_check_consistent_history_passes) {
    sim_check ck;
    checker(&ck);
    for (uint32_t r = 0; r < 3; r++) {
        app_exec(&ck, r, 1, "c0", 1, op_a, res_one, 9);
        pbft_executed e = batch(1, 7);
        sim_check_executed(&ck, r, &e);
        uint8_t s[PROTO_DIGEST_BYTES] = {5};
        sim_check_stable(&ck, r, 4, s);
    }
    accepted(&ck, 0, 1, 1, res_one, 8);
    uint8_t app9[PROTO_DIGEST_BYTES] = {9};
    sim_check_transferred(&ck, 3, 1, app9);
    ck_assert(!ck.v.set);
    sim_check_free(&ck);
}
END_TEST

static void expect(sim_check *ck, const char *what) {
    ck_assert_msg(ck->v.set, "no violation, expected %s", what);
    ck_assert_str_eq(ck->v.what, what);
    sim_check_free(ck);
}

START_TEST(test_check_agreement_batch) {
    sim_check ck;
    checker(&ck);
    pbft_executed e1 = batch(3, 1), e2 = batch(3, 2);
    sim_check_executed(&ck, 0, &e1);
    sim_check_executed(&ck, 1, &e2);
    expect(&ck, "agreement");
}
END_TEST

START_TEST(test_check_agreement_state) {
    sim_check ck;
    checker(&ck);
    app_exec(&ck, 0, 1, "c0", 1, op_a, res_one, 1);
    app_exec(&ck, 1, 1, "c0", 1, op_a, res_one, 2);
    expect(&ck, "agreement");
}
END_TEST

START_TEST(test_check_agreement_transferred_state) {
    sim_check ck;
    checker(&ck);
    app_exec(&ck, 0, 1, "c0", 1, op_a, res_one, 1);
    uint8_t other[PROTO_DIGEST_BYTES] = {2};
    sim_check_transferred(&ck, 1, 1, other);
    expect(&ck, "agreement");
}
END_TEST

START_TEST(test_check_validity_unissued) {
    sim_check ck;
    checker(&ck);
    app_exec(&ck, 0, 1, "c0", 2, op_a, res_one, 1); /* c0 never issued number 2 */
    expect(&ck, "validity");
}
END_TEST

START_TEST(test_check_validity_forged_op) {
    sim_check ck;
    checker(&ck);
    app_exec(&ck, 0, 1, "c0", 1, op_b, res_one, 1);
    expect(&ck, "validity");
}
END_TEST

START_TEST(test_check_validity_twice) {
    sim_check ck;
    checker(&ck);
    app_exec(&ck, 0, 1, "c0", 1, op_a, res_one, 1);
    app_exec(&ck, 1, 1, "c0", 1, op_a, res_one, 1);
    app_exec(&ck, 1, 2, "c0", 1, op_a, res_two, 3);
    expect(&ck, "validity");
}
END_TEST

START_TEST(test_check_validity_order) {
    sim_check ck;
    checker(&ck);
    app_exec(&ck, 0, 2, "c0", 1, op_a, res_one, 1);
    app_exec(&ck, 0, 2, "c1", 1, op_b, res_one, 1);
    expect(&ck, "validity");
}
END_TEST

START_TEST(test_check_checkpoint) {
    sim_check ck;
    checker(&ck);
    uint8_t a[PROTO_DIGEST_BYTES] = {1}, b[PROTO_DIGEST_BYTES] = {2};
    sim_check_stable(&ck, 0, 8, a);
    sim_check_stable(&ck, 2, 8, b);
    expect(&ck, "checkpoint");
}
END_TEST

START_TEST(test_check_reply_after_execution) {
    sim_check ck;
    checker(&ck);
    app_exec(&ck, 0, 1, "c0", 1, op_a, res_one, 1);
    accepted(&ck, 0, 1, 1, res_two, 8);
    expect(&ck, "reply");
}
END_TEST

START_TEST(test_check_reply_before_execution) {
    sim_check ck;
    checker(&ck);
    accepted(&ck, 1, 1, 4, res_one, 8);
    ck_assert(!ck.v.set);
    app_exec(&ck, 2, 5, "c1", 1, op_b, res_one, 1); /* same result, another seq */
    expect(&ck, "reply");
}
END_TEST

START_TEST(test_client_names) {
    ck_assert_int_eq(sim_client_index("c0", 4), 0);
    ck_assert_int_eq(sim_client_index("c3", 4), 3);
    ck_assert_int_eq(sim_client_index("c4", 4), -1);
    ck_assert_int_eq(sim_client_index("c01", 40), -1);
    ck_assert_int_eq(sim_client_index("c", 4), -1);
    ck_assert_int_eq(sim_client_index("x1", 4), -1);
    ck_assert_int_eq(sim_client_index("c99999999999999999999", 4), -1);
}
END_TEST

static Suite *sim_suite(void) {
    Suite *s = suite_create("sim");
    TCase *tc = tcase_create("parts");
    tcase_add_test(tc, test_rng_replays);
    tcase_add_test(tc, test_eventq_orders_by_time_then_push_order);
    tcase_add_test(tc, test_store_put_replace_delete_clear);
    tcase_add_test(tc, test_app_executes_checkpoints_and_restores);
    tcase_add_test(tc, test_crypto_only_owner_signs);
    tcase_add_test(tc, test_byz_mutations_are_resigned_by_their_author);
    tcase_add_test(tc, test_client_names);
    suite_add_tcase(s, tc);
    TCase *ck = tcase_create("checker");
    tcase_add_test(ck, test_check_consistent_history_passes);
    tcase_add_test(ck, test_check_agreement_batch);
    tcase_add_test(ck, test_check_agreement_state);
    tcase_add_test(ck, test_check_agreement_transferred_state);
    tcase_add_test(ck, test_check_validity_unissued);
    tcase_add_test(ck, test_check_validity_forged_op);
    tcase_add_test(ck, test_check_validity_twice);
    tcase_add_test(ck, test_check_validity_order);
    tcase_add_test(ck, test_check_checkpoint);
    tcase_add_test(ck, test_check_reply_after_execution);
    tcase_add_test(ck, test_check_reply_before_execution);
    suite_add_tcase(s, ck);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(sim_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
