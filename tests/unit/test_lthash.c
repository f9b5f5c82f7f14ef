/* Proves LtHash is a multiset hash: order-free, removable, combinable, and built from SHAKE128. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "proto/lthash.h"

static const char *const elems[] = {"twin/site-a", "node/edge-1=cap:4", "config/v7", "", "x"};
enum { N_ELEMS = sizeof elems / sizeof elems[0] };

static void add_str(proto_lthash *h, const char *s) {
    proto_lthash_add(h, s, strlen(s));
}

START_TEST(test_empty_digest_is_sha256_of_zero_lanes) {
    proto_lthash h;
    uint8_t zeros[2 * PROTO_LTHASH_LANES] = {0};
    uint8_t d[PROTO_DIGEST_BYTES], expect[PROTO_DIGEST_BYTES];
    proto_lthash_init(&h);
    for (size_t i = 0; i < PROTO_LTHASH_LANES; i++) {
        ck_assert_uint_eq(h.lanes[i], 0);
    }
    proto_lthash_digest(&h, d);
    proto_sha256(zeros, sizeof zeros, expect);
    ck_assert_mem_eq(d, expect, sizeof d);
}
END_TEST

/* One element's lanes are SHAKE128(elem) read as little-endian u16s,
 * computed here with OpenSSL directly. */
START_TEST(test_lanes_are_shake128_little_endian) {
    uint8_t xof[2 * PROTO_LTHASH_LANES];
    uint8_t bytes[2 * PROTO_LTHASH_LANES];
    uint8_t d[PROTO_DIGEST_BYTES], expect[PROTO_DIGEST_BYTES];
    proto_lthash h;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    ck_assert_int_eq(EVP_DigestInit_ex(ctx, EVP_shake128(), NULL), 1);
    ck_assert_int_eq(EVP_DigestUpdate(ctx, "abc", 3), 1);
    ck_assert_int_eq(EVP_DigestFinalXOF(ctx, xof, sizeof xof), 1);
    EVP_MD_CTX_free(ctx);
    proto_lthash_init(&h);
    proto_lthash_add(&h, "abc", 3);
    for (size_t i = 0; i < PROTO_LTHASH_LANES; i++) {
        ck_assert_uint_eq(h.lanes[i], (unsigned)(xof[2 * i] | xof[2 * i + 1] << 8));
        bytes[2 * i] = (uint8_t)(h.lanes[i] & 0xff);
        bytes[2 * i + 1] = (uint8_t)(h.lanes[i] >> 8);
    }
    ck_assert_mem_eq(bytes, xof, sizeof xof);
    /* From an empty set the digest is SHA-256 of the expansion itself. */
    proto_lthash_digest(&h, d);
    proto_sha256(xof, sizeof xof, expect);
    ck_assert_mem_eq(d, expect, sizeof d);
}
END_TEST

START_TEST(test_order_independent) {
    static const size_t orders[][N_ELEMS] = {
        {0, 1, 2, 3, 4}, {4, 3, 2, 1, 0}, {2, 0, 4, 1, 3}, {1, 4, 0, 3, 2}};
    uint8_t first[PROTO_DIGEST_BYTES];
    for (size_t o = 0; o < sizeof orders / sizeof orders[0]; o++) {
        proto_lthash h;
        uint8_t d[PROTO_DIGEST_BYTES];
        proto_lthash_init(&h);
        for (size_t i = 0; i < N_ELEMS; i++) {
            add_str(&h, elems[orders[o][i]]);
        }
        proto_lthash_digest(&h, d);
        if (o == 0) {
            memcpy(first, d, sizeof d);
        } else {
            ck_assert_mem_eq(d, first, sizeof d);
        }
    }
}
END_TEST

START_TEST(test_add_then_remove_is_init) {
    proto_lthash h, empty;
    proto_lthash_init(&h);
    proto_lthash_init(&empty);
    for (size_t i = 0; i < N_ELEMS; i++) {
        add_str(&h, elems[i]);
    }
    ck_assert(memcmp(&h, &empty, sizeof h) != 0);
    /* Removed in another order than added. */
    for (size_t i = N_ELEMS; i-- > 0;) {
        proto_lthash_remove(&h, elems[(i + 2) % N_ELEMS], strlen(elems[(i + 2) % N_ELEMS]));
    }
    ck_assert_mem_eq(&h, &empty, sizeof h);
}
END_TEST

START_TEST(test_update_is_remove_old_add_new) {
    /* How the state machine updates a key: the result equals a set that
     * only ever held the new value. */
    proto_lthash a, b;
    proto_lthash_init(&a);
    proto_lthash_init(&b);
    add_str(&a, "k=1");
    add_str(&a, "other=2");
    proto_lthash_remove(&a, "k=1", 3);
    add_str(&a, "k=9");
    add_str(&b, "other=2");
    add_str(&b, "k=9");
    ck_assert_mem_eq(&a, &b, sizeof a);
}
END_TEST

START_TEST(test_combine_is_union) {
    proto_lthash left, right, all;
    uint8_t d1[PROTO_DIGEST_BYTES], d2[PROTO_DIGEST_BYTES];
    proto_lthash_init(&left);
    proto_lthash_init(&right);
    proto_lthash_init(&all);
    for (size_t i = 0; i < N_ELEMS; i++) {
        add_str(i % 2 ? &left : &right, elems[i]);
        add_str(&all, elems[i]);
    }
    proto_lthash_combine(&left, &right);
    proto_lthash_digest(&left, d1);
    proto_lthash_digest(&all, d2);
    ck_assert_mem_eq(d1, d2, sizeof d1);
}
END_TEST

START_TEST(test_multiset_and_content_sensitive) {
    proto_lthash once, twice, other;
    uint8_t d1[PROTO_DIGEST_BYTES], d2[PROTO_DIGEST_BYTES], d3[PROTO_DIGEST_BYTES];
    proto_lthash_init(&once);
    proto_lthash_init(&twice);
    proto_lthash_init(&other);
    add_str(&once, "a");
    add_str(&twice, "a");
    add_str(&twice, "a");
    add_str(&other, "b");
    proto_lthash_digest(&once, d1);
    proto_lthash_digest(&twice, d2);
    proto_lthash_digest(&other, d3);
    ck_assert(memcmp(d1, d2, sizeof d1) != 0);
    ck_assert(memcmp(d1, d3, sizeof d1) != 0);
}
END_TEST

START_TEST(test_lanes_wrap_mod_2_16) {
    /* Adding an element 65536 times wraps every lane back to zero. */
    proto_lthash h, empty;
    proto_lthash_init(&empty);
    proto_lthash_init(&h);
    for (size_t i = 0; i < 65536; i++) {
        proto_lthash_combine(&h, &(proto_lthash){.lanes = {1, 0xffff, 2}});
    }
    ck_assert_mem_eq(&h, &empty, sizeof h);
}
END_TEST

static Suite *lthash_suite(void) {
    Suite *s = suite_create("lthash");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_empty_digest_is_sha256_of_zero_lanes);
    tcase_add_test(tc, test_lanes_are_shake128_little_endian);
    tcase_add_test(tc, test_order_independent);
    tcase_add_test(tc, test_add_then_remove_is_init);
    tcase_add_test(tc, test_update_is_remove_old_add_new);
    tcase_add_test(tc, test_combine_is_union);
    tcase_add_test(tc, test_multiset_and_content_sensitive);
    tcase_add_test(tc, test_lanes_wrap_mod_2_16);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(lthash_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
