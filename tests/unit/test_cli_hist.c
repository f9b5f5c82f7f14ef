/* Proves twinbft bench's latency histogram (cmd/cli/bench_hist.h) keeps
 * its promise: buckets tile the whole uint64 range without gaps or
 * overlaps, every value lands in the bucket that contains it, and each
 * quantile it reports is within 0.4% (so within the 1% asked of a bench)
 * of the exact one computed by sorting. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli/bench_hist.h"

enum { VALUES = 200000 };

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

START_TEST(test_hist_buckets_tile) {
    ck_assert_uint_eq(cli_hist_bucket_lo(0), 0);
    for (uint32_t i = 1; i < CLI_HIST_BUCKETS; i++) {
        ck_assert_uint_eq(cli_hist_bucket_lo(i), cli_hist_bucket_hi(i - 1) + 1);
        ck_assert_uint_le(cli_hist_bucket_lo(i), cli_hist_bucket_hi(i));
    }
    ck_assert_uint_eq(cli_hist_bucket_hi(CLI_HIST_BUCKETS - 1), UINT64_MAX);
    /* A bucket is at most 1/128 of its smallest value wide. */
    for (uint32_t i = CLI_HIST_LINEAR; i < CLI_HIST_BUCKETS; i++) {
        uint64_t lo = cli_hist_bucket_lo(i), width = cli_hist_bucket_hi(i) - lo + 1;
        ck_assert_uint_le(width, lo / 128);
    }
}
END_TEST

START_TEST(test_hist_value_in_its_bucket) {
    uint64_t s = 88172645463325252ull;
    for (int k = 0; k < 100000; k++) {
        uint64_t v = xorshift(&s) >> (xorshift(&s) % 64);
        uint32_t i = cli_hist_bucket(v);
        ck_assert_uint_lt(i, CLI_HIST_BUCKETS);
        ck_assert_uint_le(cli_hist_bucket_lo(i), v);
        ck_assert_uint_ge(cli_hist_bucket_hi(i), v);
    }
    ck_assert_uint_eq(cli_hist_bucket(UINT64_MAX), CLI_HIST_BUCKETS - 1);
}
END_TEST

/* Latency-like values (a body around 2 ms, a tail to seconds) in µs. */
START_TEST(test_hist_quantiles_within_bound) {
    static cli_hist h;
    uint64_t *v = malloc(VALUES * sizeof *v), s = 2463534242ull;
    ck_assert_ptr_nonnull(v);
    cli_hist_reset(&h);
    for (int k = 0; k < VALUES; k++) {
        uint64_t r = xorshift(&s);
        v[k] = r % 100 == 0 ? 1 + r % 3000000 : 1500 + r % 1000;
        cli_hist_record(&h, v[k]);
    }
    qsort(v, VALUES, sizeof *v, cmp_u64);
    static const double qs[] = {0.0, 0.5, 0.9, 0.99, 0.999, 0.9999};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        uint64_t rank = (uint64_t)(qs[i] * VALUES);
        rank += (double)rank < qs[i] * VALUES;
        uint64_t exact = v[rank < 1 ? 0 : rank - 1], got = cli_hist_quantile(&h, qs[i]);
        uint64_t diff = got > exact ? got - exact : exact - got;
        ck_assert_msg(diff * 250 <= exact, "q %.4f: %llu, exact %llu", qs[i],
                      (unsigned long long)got, (unsigned long long)exact);
    }
    ck_assert_uint_eq(cli_hist_quantile(&h, 1.0), v[VALUES - 1]);
    ck_assert_uint_eq(h.min, v[0]);
    free(v);
}
END_TEST

START_TEST(test_hist_empty_and_merge) {
    static cli_hist a, b;
    cli_hist_reset(&a);
    cli_hist_reset(&b);
    ck_assert_uint_eq(cli_hist_quantile(&a, 0.99), 0);
    cli_hist_record(&a, 10);
    cli_hist_record(&b, 5000);
    cli_hist_merge(&a, &b);
    ck_assert_uint_eq(a.count, 2);
    ck_assert_uint_eq(a.min, 10);
    ck_assert_uint_eq(a.max, 5000);
    ck_assert_uint_eq(cli_hist_quantile(&a, 0.5), 10);
    ck_assert_uint_eq(cli_hist_quantile(&a, 0.51), 5000); /* the midpoint, clamped to max */
}
END_TEST

static Suite *hist_suite(void) {
    Suite *s = suite_create("cli_hist");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_hist_buckets_tile);
    tcase_add_test(tc, test_hist_value_in_its_bucket);
    tcase_add_test(tc, test_hist_quantiles_within_bound);
    tcase_add_test(tc, test_hist_empty_and_merge);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(hist_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
