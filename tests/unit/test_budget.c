/* Memory budgets per identity and in total (client/budget.h): shares,
 * refusals that charge nothing, accounts shared by name, bounds, and the
 * frame reader's charges. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/budget.h"
#include "client/frame_reader.h"
#include "proto/pki.h"
#include "proto/tb_err.h"

/* An identity takes up to its share and no more, however many holders
 * (links) it has: they share one account. A refused take charges nothing,
 * and what is put back can be taken again. */
START_TEST(test_identity_share) {
    tb_budget *b = NULL;
    ck_assert_int_eq(tb_budget_new(100, 1000, 8, &b), 0);
    tb_budget_account *a1 = NULL, *a2 = NULL, *other = NULL;
    ck_assert_int_eq(tb_budget_join(b, "mallory", &a1), 0);
    ck_assert_int_eq(tb_budget_join(b, "mallory", &a2), 0);
    ck_assert_ptr_eq(a1, a2);
    ck_assert(tb_budget_take(a1, 60));
    ck_assert(!tb_budget_take(a2, 41));
    ck_assert_uint_eq(tb_budget_account_used(a1), 60);
    ck_assert(tb_budget_take(a2, 40));
    ck_assert(!tb_budget_take(a2, 1));
    /* Another identity is not held back by mallory's share. */
    ck_assert_int_eq(tb_budget_join(b, "alice", &other), 0);
    ck_assert_ptr_ne(other, a1);
    ck_assert(tb_budget_take(other, 100));
    ck_assert_uint_eq(tb_budget_used(b), 200);
    tb_budget_put(a1, 60);
    ck_assert(tb_budget_take(a2, 60));
    tb_budget_put(a2, 100);
    tb_budget_put(other, 100);
    ck_assert_uint_eq(tb_budget_used(b), 0);
    tb_budget_leave(a1);
    tb_budget_leave(a2);
    tb_budget_leave(other);
    tb_budget_free(b);
}
END_TEST

/* The total caps every identity together, each still within its share. */
START_TEST(test_total_share) {
    tb_budget *b = NULL;
    ck_assert_int_eq(tb_budget_new(100, 250, 8, &b), 0);
    tb_budget_account *a[3];
    const char *names[3] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(tb_budget_join(b, names[i], &a[i]), 0);
    }
    ck_assert(tb_budget_take(a[0], 100));
    ck_assert(tb_budget_take(a[1], 100));
    ck_assert(!tb_budget_take(a[2], 51));
    ck_assert(tb_budget_take(a[2], 50));
    ck_assert_uint_eq(tb_budget_used(b), 250);
    ck_assert_uint_eq(tb_budget_total_max(tb_budget_of(a[2])), 250);
    for (int i = 0; i < 3; i++) {
        tb_budget_put(a[i], tb_budget_account_used(a[i]));
        tb_budget_leave(a[i]);
    }
    tb_budget_free(b);
}
END_TEST

/* Accounts are bounded: past accounts_max identities a join is refused, and
 * an account whose last holder left frees its slot for a new name. Bad
 * arguments are refused. */
START_TEST(test_accounts_bounded) {
    tb_budget *b = NULL;
    ck_assert_int_eq(tb_budget_new(0, 10, 2, &b), TB_ERR_INVALID);
    ck_assert_int_eq(tb_budget_new(20, 10, 2, &b), TB_ERR_INVALID);
    ck_assert_int_eq(tb_budget_new(10, 10, 0, &b), TB_ERR_INVALID);
    ck_assert_int_eq(tb_budget_new(10, 20, 2, &b), 0);
    tb_budget_account *x = NULL, *y = NULL, *z = NULL;
    ck_assert_int_eq(tb_budget_join(b, "x", &x), 0);
    ck_assert_int_eq(tb_budget_join(b, "y", &y), 0);
    ck_assert_int_eq(tb_budget_join(b, "z", &z), TB_ERR_TOO_LARGE);
    ck_assert_ptr_null(z);
    char long_name[PROTO_NAME_BYTES_MAX + 1];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    ck_assert_int_eq(tb_budget_join(b, long_name, &z), TB_ERR_INVALID);
    tb_budget_leave(x);
    ck_assert_int_eq(tb_budget_join(b, "z", &z), 0);
    ck_assert(tb_budget_take(z, 10));
    tb_budget_put(z, 10);
    tb_budget_leave(y);
    tb_budget_leave(z);
    tb_budget_free(b);
}
END_TEST

/* A frame reader charges a frame from its header until it hands it out; a
 * header its account cannot take fails before anything is allocated, and
 * a reset gives back what a frame under way held. */
START_TEST(test_reader_charges_frames) {
    tb_budget *b = NULL;
    tb_budget_account *a = NULL;
    ck_assert_int_eq(tb_budget_new(10, 10, 1, &b), 0);
    ck_assert_int_eq(tb_budget_join(b, "peer", &a), 0);
    tb_frame_reader r;
    tb_frame_reader_init(&r, 100);
    r.account = a;
    const uint8_t *frame = NULL;
    size_t frame_len = 0, used = 0;
    const uint8_t small[] = {0, 0, 0, 4, 'a', 'b'};
    ck_assert_int_eq(tb_frame_reader_feed(&r, small, sizeof small, &used, &frame, &frame_len), 0);
    ck_assert_ptr_null(frame);
    ck_assert_uint_eq(tb_budget_used(b), 4);
    ck_assert_int_eq(tb_frame_reader_feed(&r, (const uint8_t *)"cd", 2, &used, &frame, &frame_len),
                     0);
    ck_assert_uint_eq(frame_len, 4);
    ck_assert_uint_eq(tb_budget_used(b), 0);
    const uint8_t half[] = {0, 0, 0, 8, 'x'};
    ck_assert_int_eq(tb_frame_reader_feed(&r, half, sizeof half, &used, &frame, &frame_len), 0);
    ck_assert_uint_eq(tb_budget_used(b), 8);
    tb_frame_reader_reset(&r);
    ck_assert_uint_eq(tb_budget_used(b), 0);
    ck_assert_ptr_eq(r.account, a);
    const uint8_t big[] = {0, 0, 0, 11};
    ck_assert_int_eq(tb_frame_reader_feed(&r, big, sizeof big, &used, &frame, &frame_len),
                     TB_ERR_BUDGET);
    ck_assert_ptr_null(r.buf);
    ck_assert_uint_eq(tb_budget_used(b), 0);
    tb_frame_reader_reset(&r);
    tb_budget_leave(a);
    tb_budget_free(b);
}
END_TEST

static Suite *budget_suite(void) {
    Suite *s = suite_create("budget");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_identity_share);
    tcase_add_test(tc, test_total_share);
    tcase_add_test(tc, test_accounts_bounded);
    tcase_add_test(tc, test_reader_charges_frames);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(budget_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
