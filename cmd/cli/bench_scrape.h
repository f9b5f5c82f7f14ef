/* What twinbft bench reads about each replica: counters from its
 * Prometheus endpoint (replica/http.c, GET /metrics), fetched
 * asynchronously on the bench's event_base so that the load keeps running,
 * and the CPU time of a local replica process from /proc. */
#ifndef CLI_BENCH_SCRAPE_H
#define CLI_BENCH_SCRAPE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "replica/config.h"

struct event_base;
struct evhttp_connection;

/* The metrics bench reads (unlabelled samples only). */
typedef enum cli_metric {
    CLI_METRIC_BATCHES,      /* twinbft_batches_executed_total */
    CLI_METRIC_REQUESTS,     /* twinbft_requests_executed_total */
    CLI_METRIC_COMMITS,      /* twinbft_storage_commits_total */
    CLI_METRIC_VIEW_CHANGES, /* twinbft_view_changes_total */
    CLI_METRIC_IS_PRIMARY,   /* twinbft_is_primary */
    CLI_METRIC_SIGNS,        /* twinbft_ed25519_signs_total (newer replicas) */
    CLI_METRIC_VERIFIES,     /* twinbft_ed25519_verifies_total (newer replicas) */
    CLI_METRIC_CPU,          /* process_cpu_seconds_total (if exported) */
    CLI_METRICS,
} cli_metric;

typedef struct cli_metrics {
    bool answered; /* the endpoint answered 200 */
    bool has[CLI_METRICS];
    double v[CLI_METRICS];
} cli_metrics;

enum {
    CLI_SCRAPE_TIMEOUT_S = 3,                /* per endpoint */
    CLI_SCRAPE_BODY_BYTES_MAX = 1024 * 1024, /* a larger answer is not read */
};

typedef struct cli_scrape cli_scrape;
typedef struct cli_scrape_one {
    cli_scrape *s;
    uint32_t i;
    struct evhttp_connection *conn; /* freed by cli_scrape_clear */
} cli_scrape_one;

/* One round of GETs, one per member with an http address; owned by the
 * caller and alive until cli_scrape_done. */
struct cli_scrape {
    uint32_t n, pending;
    bool started;
    cli_metrics m[REP_MEMBERS_MAX];
    cli_scrape_one one[REP_MEMBERS_MAX];
    void (*done)(void *arg); /* once every GET answered or failed; may be NULL */
    void *arg;
};

/* Parses a Prometheus text body into m (answered is left alone). */
void cli_metrics_parse(const char *text, size_t len, cli_metrics *m);

/* Starts a round against cl's members on base. Members without an http
 * address count as failed at once. done runs from the event loop, never
 * from inside this call. Returns 0 or TB_ERR_NOMEM (nothing started). */
int cli_scrape_start(struct event_base *base, const rep_cluster *cl, cli_scrape *s,
                     void (*done)(void *arg), void *arg);
bool cli_scrape_done(const cli_scrape *s);
/* Frees the round's connections (a GET still under way is dropped without
 * its callback). Not from inside the loop's callbacks; safe on a round
 * never started (zeroed). */
void cli_scrape_clear(cli_scrape *s);

/* User plus system CPU seconds of process pid from /proc/PID/stat; false
 * when it cannot be read. */
bool cli_proc_cpu_s(pid_t pid, double *out);

#endif
