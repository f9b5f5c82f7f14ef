/* Proves proto_hex writes lowercase digits, two per byte, and a terminating NUL. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "proto/hex.h"

START_TEST(test_hex_digits) {
    static const uint8_t in[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char out[2 * sizeof in + 2];
    memset(out, 'X', sizeof out);
    proto_hex(in, sizeof in, out);
    ck_assert_str_eq(out, "00017f80abff");
    ck_assert_int_eq(out[2 * sizeof in + 1], 'X'); /* nothing written past the NUL */
}
END_TEST

START_TEST(test_hex_empty) {
    char out[1] = {'X'};
    proto_hex(NULL, 0, out);
    ck_assert_str_eq(out, "");
}
END_TEST

static Suite *hex_suite(void) {
    Suite *s = suite_create("hex");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_hex_digits);
    tcase_add_test(tc, test_hex_empty);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(hex_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
