/* A latency histogram for twinbft bench, in the manner of HdrHistogram:
 * values below 256 are counted exactly, larger ones in 128 buckets per
 * power of two. A bucket [lo, hi] then spans at most 1/128 of lo, and the
 * value reported for it (its midpoint) is within 0.4% of every value
 * counted in it. Recording is O(1) with no allocation; a percentile walks
 * the fixed bucket array. Values are unsigned integers (bench records
 * microseconds). Not thread-safe. */
#ifndef CLI_BENCH_HIST_H
#define CLI_BENCH_HIST_H

#include <stdint.h>

enum {
    CLI_HIST_SUB_BITS = 7,
    CLI_HIST_SUB = 1 << CLI_HIST_SUB_BITS, /* buckets per power of two */
    CLI_HIST_LINEAR = 2 * CLI_HIST_SUB,    /* values below this are exact */
    /* Powers of two above the linear range: 2^8 .. 2^63. */
    CLI_HIST_BUCKETS = CLI_HIST_LINEAR + (64 - CLI_HIST_SUB_BITS - 1) * CLI_HIST_SUB,
};

typedef struct cli_hist {
    uint64_t count;
    uint64_t min, max; /* exact; 0 when count is 0 */
    uint64_t buckets[CLI_HIST_BUCKETS];
} cli_hist;

void cli_hist_reset(cli_hist *h);
void cli_hist_record(cli_hist *h, uint64_t v);
/* Adds every value of from to into. */
void cli_hist_merge(cli_hist *into, const cli_hist *from);
/* The value at quantile q in [0, 1] (the smallest v with at least
 * ceil(q * count) values <= v, to the bucket's precision, never outside
 * [min, max]); q = 1 gives max exactly. 0 when empty. */
uint64_t cli_hist_quantile(const cli_hist *h, double q);

/* The bucket of v and the smallest and largest value of bucket i: exposed
 * for the unit test of the error bound. */
uint32_t cli_hist_bucket(uint64_t v);
uint64_t cli_hist_bucket_lo(uint32_t i);
uint64_t cli_hist_bucket_hi(uint32_t i);

#endif
