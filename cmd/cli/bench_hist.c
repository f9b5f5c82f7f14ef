/* The log-bucketed latency histogram of twinbft bench (bench_hist.h). */
#include "cmd/cli/bench_hist.h"

#include <string.h>

#include "proto/tb_assert.h"

_Static_assert(CLI_HIST_LINEAR == 2 * CLI_HIST_SUB, "the first log range starts where 2*SUB ends");
_Static_assert(CLI_HIST_BUCKETS == CLI_HIST_LINEAR + 56 * CLI_HIST_SUB,
               "shifts 1..56 cover values up to 2^64-1");

uint32_t cli_hist_bucket(uint64_t v) {
    if (v < CLI_HIST_LINEAR) {
        return (uint32_t)v;
    }
    /* v has its top bit at msb >= 8; keep its top 8 bits: m in [128, 255]. */
    uint32_t msb = 63u - (uint32_t)__builtin_clzll(v);
    uint32_t shift = msb - CLI_HIST_SUB_BITS;
    uint64_t m = v >> shift;
    return CLI_HIST_LINEAR + (shift - 1) * CLI_HIST_SUB + (uint32_t)(m - CLI_HIST_SUB);
}

uint64_t cli_hist_bucket_lo(uint32_t i) {
    TB_ASSERT(i < CLI_HIST_BUCKETS);
    if (i < CLI_HIST_LINEAR) {
        return i;
    }
    uint32_t shift = (i - CLI_HIST_LINEAR) / CLI_HIST_SUB + 1;
    uint64_t m = CLI_HIST_SUB + (i - CLI_HIST_LINEAR) % CLI_HIST_SUB;
    return m << shift;
}

uint64_t cli_hist_bucket_hi(uint32_t i) {
    TB_ASSERT(i < CLI_HIST_BUCKETS);
    if (i < CLI_HIST_LINEAR) {
        return i;
    }
    uint32_t shift = (i - CLI_HIST_LINEAR) / CLI_HIST_SUB + 1;
    return cli_hist_bucket_lo(i) + ((uint64_t)1 << shift) - 1;
}

void cli_hist_reset(cli_hist *h) {
    memset(h, 0, sizeof *h);
}

void cli_hist_record(cli_hist *h, uint64_t v) {
    h->buckets[cli_hist_bucket(v)]++;
    h->min = h->count == 0 || v < h->min ? v : h->min;
    h->max = v > h->max ? v : h->max;
    h->count++;
}

void cli_hist_merge(cli_hist *into, const cli_hist *from) {
    if (from->count == 0) {
        return;
    }
    for (uint32_t i = 0; i < CLI_HIST_BUCKETS; i++) {
        into->buckets[i] += from->buckets[i];
    }
    into->min = into->count == 0 || from->min < into->min ? from->min : into->min;
    into->max = from->max > into->max ? from->max : into->max;
    into->count += from->count;
}

uint64_t cli_hist_quantile(const cli_hist *h, double q) {
    if (h->count == 0) {
        return 0;
    }
    if (q >= 1.0) {
        return h->max;
    }
    double want = (q > 0.0 ? q : 0.0) * (double)h->count;
    uint64_t rank = (uint64_t)want, seen = 0;
    rank += (double)rank < want; /* ceil, without libm */
    rank = rank < 1 ? 1 : rank;
    for (uint32_t i = 0; i < CLI_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t lo = cli_hist_bucket_lo(i), hi = cli_hist_bucket_hi(i);
            uint64_t mid = lo + (hi - lo) / 2;
            return mid < h->min ? h->min : mid > h->max ? h->max : mid;
        }
    }
    TB_ASSERT(!"the buckets hold count values");
    return h->max;
}
