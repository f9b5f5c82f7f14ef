/* twinbft bench: load a cluster with C clients, each its own principal
 * with its own tb_client, and report throughput, latency, what the
 * replicas did per batch (from their metrics) and the latency of the
 * safety lane under that load. --local N makes a throwaway cluster (as
 * cluster init and up do) and removes it afterwards; --cluster FILE runs
 * against one already up. This file is the command: flags, the cluster it
 * runs against, the report, the clean-up. bench_run.c runs the load. */

/* nftw() and mkdtemp() are X/Open extensions to the POSIX base. */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <libgen.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/rand.h>

#include "cmd/cli/bench.h"
#include "proto/hex.h"

static const char *const bench_op_names[] = {"config", "actuate", "place", "mix", "register"};

/* ---- flags ---- */

static int bench_parse_op(const cli_ctx *c, bench_op *op) {
    const char *s = cli_opt(c, "op");
    for (size_t i = 0; s != NULL && i < sizeof bench_op_names / sizeof bench_op_names[0]; i++) {
        if (strcmp(s, bench_op_names[i]) == 0) {
            *op = (bench_op)i;
            return CLI_EXIT_OK;
        }
    }
    if (s != NULL) {
        return cli_usage_error(c, "--op \"%s\": expected config, actuate, place or mix", s);
    }
    *op = BENCH_OP_CONFIG;
    return CLI_EXIT_OK;
}

static int bench_parse_times(const cli_ctx *c, bench_opts *o) {
    int rc = cli_opt_ms(c, "duration", BENCH_DURATION_MS_DEFAULT, &o->duration_ms);
    rc = rc ? rc : cli_opt_ms(c, "warmup", BENCH_WARMUP_MS_DEFAULT, &o->warmup_ms);
    if (rc == CLI_EXIT_OK && o->duration_ms < BENCH_DURATION_MS_MIN) {
        rc = cli_usage_error(c, "--duration must be at least %d ms", BENCH_DURATION_MS_MIN);
    }
    return rc;
}

static int bench_args(const cli_ctx *c, bench_opts *o) {
    uint64_t v = 0;
    int rc = cli_opt_u64(c, "local", 1, REP_MEMBERS_MAX, 0, &v);
    o->local = (uint32_t)v;
    rc = rc ? rc : cli_opt_u64(c, "base-port", 1, UINT16_MAX, 0, &v);
    o->base_port = (uint32_t)v;
    rc = rc ? rc : cli_opt_u64(c, "clients", 1, BENCH_CLIENTS_MAX, BENCH_CLIENTS_DEFAULT, &v);
    o->clients = (uint32_t)v;
    rc = rc ? rc : cli_opt_u64(c, "rate", 1, BENCH_RATE_MAX, 0, &o->rate);
    rc =
        rc ? rc
           : cli_opt_u64(c, "value-bytes", 0, BENCH_VALUE_BYTES_MAX, BENCH_VALUE_BYTES_DEFAULT, &v);
    o->value_bytes = (uint32_t)v;
    rc = rc ? rc : bench_parse_times(c, o);
    rc = rc ? rc : bench_parse_op(c, &o->op);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    o->level = cli_opt(c, "log-level") != NULL ? cli_opt(c, "log-level") : "warn";
    if (strcmp(o->level, "error") && strcmp(o->level, "warn") && strcmp(o->level, "info") &&
        strcmp(o->level, "debug")) {
        return cli_usage_error(c, "--log-level \"%s\": expected error|warn|info|debug", o->level);
    }
    o->estop_probe = !cli_opt_set(c, "no-estop-probe");
    o->quiet = cli_opt_set(c, "quiet");
    o->ca_dir = cli_opt(c, "ca-dir");
    if (o->local == 0 && (c->g->cluster == NULL || c->g->cluster[0] == '\0')) {
        return cli_usage_error(c, "give --local N (a new cluster of N replicas) or --cluster "
                                  "FILE (one that is up)");
    }
    if (o->local == 0 && (o->base_port != 0 || cli_opt_set(c, "log-level"))) {
        return cli_usage_error(c, "--base-port and --log-level go with --local");
    }
    if (o->local != 0 && o->ca_dir != NULL) {
        return cli_usage_error(c, "--ca-dir goes with --cluster (--local makes its own CA)");
    }
    return CLI_EXIT_OK;
}

/* ---- the environment ---- */

static void bench_on_signal(int sig) {
    (void)sig;
    bench_signalled = 1;
}

/* SIGINT and SIGTERM end the run at the next look (within BENCH_TICK_MS)
 * and the clean-up still runs: replicas stopped, directories removed. */
static void bench_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = bench_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* C clients hold n links each (plus the replicas' own, for --local). */
static void bench_nofile_raise(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int bench_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    if (remove(path) != 0 && errno != ENOENT) {
        fprintf(stderr, "twinbft bench: cannot remove %s: %s\n", path, strerror(errno));
    }
    return 0;
}

static void bench_rm_tree(const char *dir) {
    if (dir[0] != '\0') {
        nftw(dir, bench_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    }
}

static int bench_mkdtemp(bench *b) {
    const char *root = getenv("TMPDIR");
    root = root != NULL && root[0] != '\0' ? root : "/tmp";
    int n = snprintf(b->tmp, sizeof b->tmp, "%s/twinbft-bench-XXXXXX", root);
    if (n < 0 || (size_t)n >= sizeof b->tmp || mkdtemp(b->tmp) == NULL) {
        int e = errno;
        b->tmp[0] = '\0';
        return cli_fail(b->c, CLI_EXIT_FAILED, "cannot make a temporary directory in %s: %s", root,
                        strerror(e));
    }
    return CLI_EXIT_OK;
}

/* Nothing listens on 127.0.0.1:port right now. */
static bool bench_port_free(uint32_t port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0) {
        return false;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* as the replicas bind */
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* The lowest port the kernel hands out for outgoing connections. */
static uint32_t bench_ephemeral_low(void) {
    unsigned lo = 32768, hi = 0;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL) {
        if (fscanf(f, "%u %u", &lo, &hi) != 2) {
            lo = 32768;
        }
        fclose(f);
    }
    return lo;
}

/* A base port whose replica and HTTP ports are all free, below the
 * ephemeral range (no outgoing connection can hold one later). Concurrent
 * runs start from different slots (by pid) so they rarely probe the same. */
static int bench_pick_port(bench *b) {
    if (b->o.base_port != 0) {
        return CLI_EXIT_OK;
    }
    uint32_t low = bench_ephemeral_low(), n = b->o.local;
    uint32_t slots = low > BENCH_PORT_FIRST + BENCH_PORT_STRIDE
                         ? (low - BENCH_PORT_FIRST) / BENCH_PORT_STRIDE
                         : 0;
    for (uint32_t k = 0; k < slots; k++) {
        uint32_t base = BENCH_PORT_FIRST + ((uint32_t)getpid() + k) % slots * BENCH_PORT_STRIDE;
        bool free_ = true;
        for (uint32_t i = 0; i < n && free_; i++) {
            free_ = bench_port_free(base + i) && bench_port_free(base + CLI_HTTP_PORT_OFFSET + i);
        }
        if (free_) {
            b->o.base_port = base;
            return CLI_EXIT_OK;
        }
    }
    return cli_fail(b->c, CLI_EXIT_FAILED,
                    "no free ports for %" PRIu32 " replicas between %d and %" PRIu32
                    " (give --base-port P)",
                    n, BENCH_PORT_FIRST, low);
}

static int bench_local_up(bench *b) {
    static cli_cluster_made made;
    char given[CLI_PATH_BYTES_MAX];
    cli_cluster_spec spec = {
        .replicas = b->o.local, .cluster_id = NULL, .replicas_flag = "--local"};
    int rc = bench_mkdtemp(b);
    rc = rc ? rc : bench_pick_port(b);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    spec.base_port = b->o.base_port;
    if (!cli_join(given, sizeof given, b->tmp, "cluster")) {
        return cli_fail(b->c, CLI_EXIT_FAILED, "temporary path %s is too long", b->tmp);
    }
    rc = cli_cluster_create(b->c, given, &spec, &made);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    snprintf(b->cluster_dir, sizeof b->cluster_dir, "%s", made.dir);
    snprintf(b->ca_dir, sizeof b->ca_dir, "%s", made.dir);
    snprintf(b->ids_dir, sizeof b->ids_dir, "%s", made.dir);
    if (!cli_join(b->conf, sizeof b->conf, made.dir, "cluster.conf") ||
        !cli_join(b->admin_dir, sizeof b->admin_dir, made.dir, "admin")) {
        return cli_fail(b->c, CLI_EXIT_FAILED, "temporary path %s is too long", made.dir);
    }
    b->c->g->cluster = b->conf;
    b->replicas_started = true; /* from here on, the clean-up stops whatever started */
    return cli_up_dir(b->c, made.dir, b->o.level, BENCH_START_WAIT_MS, NULL, b->rs, &b->n_rs);
}

/* --cluster: the CA next to the cluster file (or --ca-dir) issues the bench
 * identities into a temporary directory; the admin is --identity, else
 * CA_DIR/admin. */
static int bench_remote_prepare(bench *b) {
    char file[CLI_PATH_BYTES_MAX];
    snprintf(file, sizeof file, "%s", b->c->g->cluster);
    snprintf(b->conf, sizeof b->conf, "%s", b->c->g->cluster);
    snprintf(b->ca_dir, sizeof b->ca_dir, "%s", b->o.ca_dir != NULL ? b->o.ca_dir : dirname(file));
    const char *id = b->c->g->identity;
    bool fits =
        id != NULL && id[0] != '\0'
            ? (size_t)snprintf(b->admin_dir, sizeof b->admin_dir, "%s", id) < sizeof b->admin_dir
            : cli_join(b->admin_dir, sizeof b->admin_dir, b->ca_dir, "admin");
    int rc = fits ? bench_mkdtemp(b) : cli_fail(b->c, CLI_EXIT_FAILED, "identity path too long");
    if (rc == CLI_EXIT_OK) {
        snprintf(b->ids_dir, sizeof b->ids_dir, "%s", b->tmp);
    }
    return rc;
}

static int bench_prepare(bench *b) {
    uint8_t raw[4];
    if (RAND_bytes(raw, sizeof raw) != 1) {
        return cli_fail(b->c, CLI_EXIT_FAILED, "no randomness for a run id");
    }
    proto_hex(raw, sizeof raw, b->run_id);
    int rc = b->o.local != 0 ? bench_local_up(b) : bench_remote_prepare(b);
    if (rc == CLI_EXIT_OK) {
        rc = cli_conn_load(b->c, &b->conn);
    }
    if (rc == CLI_EXIT_OK) {
        b->n = b->conn.cfg.n;
        b->f = b->conn.cfg.f;
        b->quorum = (b->n + b->f + 2) / 2; /* ceil((n+f+1)/2), as the replicas count */
    }
    return rc;
}

static void bench_teardown(bench *b) {
    if (b->o.local == 0 && b->admin != NULL && b->admin->tc != NULL) {
        bench_revoke(b);
    }
    bench_free_loop(b);
    if (b->replicas_started) {
        (void)cli_down_dir(b->c, b->cluster_dir, BENCH_STOP_WAIT_MS, NULL);
        for (uint32_t i = 0; i < b->n_rs; i++) {
            if (b->rs[i].started) {
                waitpid(b->rs[i].pid, NULL, WNOHANG); /* ours: reap it */
            }
        }
    }
    bench_rm_tree(b->tmp);
    cli_conn_close(&b->conn);
}

/* ---- the report ---- */

typedef struct bench_totals {
    bool have;        /* metrics deltas known (at the replica `primary`) */
    uint32_t primary; /* the replica the per-batch numbers are from */
    double batches, requests, commits, view_changes;
    bool have_ed25519;
    double ed25519;
} bench_totals;

static bool bench_delta(const bench *b, uint32_t i, cli_metric m, double *out) {
    const cli_metrics *x = &b->before.m[i], *y = &b->after.m[i];
    if (!x->answered || !y->answered || !x->has[m] || !y->has[m]) {
        return false;
    }
    *out = y->v[m] - x->v[m];
    return true;
}

/* The primary's numbers (the one reporting twinbft_is_primary 1 at the
 * end, else at the start); view changes: the most any replica entered. */
static void bench_totals_of(const bench *b, bench_totals *t) {
    memset(t, 0, sizeof *t);
    uint32_t n = b->after.n, p = n;
    for (uint32_t i = 0; i < n && p == n; i++) {
        const cli_metrics *m = &b->after.m[i];
        p = m->answered && m->has[CLI_METRIC_IS_PRIMARY] && m->v[CLI_METRIC_IS_PRIMARY] == 1 ? i
                                                                                             : n;
    }
    for (uint32_t i = 0; i < n && p == n; i++) {
        const cli_metrics *m = &b->before.m[i];
        p = m->answered && m->has[CLI_METRIC_IS_PRIMARY] && m->v[CLI_METRIC_IS_PRIMARY] == 1 ? i
                                                                                             : n;
    }
    for (uint32_t i = 0; i < n; i++) {
        double v = 0;
        if (bench_delta(b, i, CLI_METRIC_VIEW_CHANGES, &v) && v > t->view_changes) {
            t->view_changes = v;
        }
    }
    if (p == n) {
        return;
    }
    t->primary = p;
    t->have = bench_delta(b, p, CLI_METRIC_BATCHES, &t->batches) &&
              bench_delta(b, p, CLI_METRIC_REQUESTS, &t->requests) &&
              bench_delta(b, p, CLI_METRIC_COMMITS, &t->commits);
    double s = 0, v = 0;
    t->have_ed25519 = t->have && bench_delta(b, p, CLI_METRIC_SIGNS, &s) &&
                      bench_delta(b, p, CLI_METRIC_VERIFIES, &v);
    t->ed25519 = s + v;
}

static double bench_rusage_s(const struct rusage *r) {
    return (double)r->ru_utime.tv_sec + (double)r->ru_utime.tv_usec / 1e6 +
           (double)r->ru_stime.tv_sec + (double)r->ru_stime.tv_usec / 1e6;
}

static double bench_ms(uint64_t us) {
    return (double)us / 1e3;
}

/* A number with d decimals (json-c would print 17 digits). */
static json_object *bench_jnum(double v, int d) {
    char s[64];
    snprintf(s, sizeof s, "%.*f", d, v);
    return json_object_new_double_s(v, s);
}

static bool bench_cpu_s(const bench *b, uint32_t i, double *out) {
    if (b->o.local != 0) {
        *out = b->cpu_after[i] - b->cpu_before[i];
        return b->cpu_known[i];
    }
    return bench_delta(b, i, CLI_METRIC_CPU, out);
}

static json_object *bench_json_replica(const bench *b, uint32_t i, const bench_totals *t) {
    static const struct {
        const char *name;
        cli_metric m;
    } fields[] = {{"batches", CLI_METRIC_BATCHES},     {"requests", CLI_METRIC_REQUESTS},
                  {"commits", CLI_METRIC_COMMITS},     {"view_changes", CLI_METRIC_VIEW_CHANGES},
                  {"ed25519_signs", CLI_METRIC_SIGNS}, {"ed25519_verifies", CLI_METRIC_VERIFIES}};
    json_object *o = json_object_new_object();
    double v = 0;
    json_object_object_add(o, "id", json_object_new_int64(i));
    json_object_object_add(o, "primary", json_object_new_boolean(t->have && t->primary == i));
    for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++) {
        json_object_object_add(
            o, fields[k].name,
            bench_delta(b, i, fields[k].m, &v) ? json_object_new_int64((int64_t)v) : NULL);
    }
    json_object_object_add(o, "cpu_s", bench_cpu_s(b, i, &v) ? bench_jnum(v, 2) : NULL);
    return o;
}

static json_object *bench_ratio(bool have, double num, double den, int d) {
    return have && den > 0 ? bench_jnum(num / den, d) : NULL;
}

static void bench_json_latency(json_object *o, const bench *b) {
    static const struct {
        const char *name;
        double q;
    } qs[] = {
        {"p50_ms", 0.5}, {"p90_ms", 0.9}, {"p99_ms", 0.99}, {"p999_ms", 0.999}, {"max_ms", 1.0}};
    for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
        json_object_object_add(
            o, qs[k].name,
            b->ops > 0 ? bench_jnum(bench_ms(cli_hist_quantile(&b->main, qs[k].q)), 3) : NULL);
    }
}

static void bench_json_replicas(json_object *o, const bench *b, const bench_totals *t) {
    json_object *per = json_object_new_array(), *cpu = json_object_new_array();
    double v = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        json_object_array_add(per, bench_json_replica(b, i, t));
        json_object_array_add(cpu, bench_cpu_s(b, i, &v) ? bench_jnum(v, 2) : NULL);
    }
    json_object_object_add(o, "metrics_from", json_object_new_string("primary"));
    json_object_object_add(o, "primary", t->have ? json_object_new_int64(t->primary) : NULL);
    json_object_object_add(o, "batches",
                           t->have ? json_object_new_int64((int64_t)t->batches) : NULL);
    json_object_object_add(o, "requests_executed",
                           t->have ? json_object_new_int64((int64_t)t->requests) : NULL);
    json_object_object_add(o, "commits",
                           t->have ? json_object_new_int64((int64_t)t->commits) : NULL);
    json_object_object_add(o, "avg_batch", bench_ratio(t->have, t->requests, t->batches, 2));
    json_object_object_add(o, "commits_per_batch", bench_ratio(t->have, t->commits, t->batches, 3));
    json_object_object_add(o, "view_changes", json_object_new_int64((int64_t)t->view_changes));
    json_object_object_add(o, "ed25519_per_batch",
                           bench_ratio(t->have_ed25519, t->ed25519, t->batches, 2));
    json_object_object_add(o, "replica_cpu_s", cpu);
    json_object_object_add(o, "per_replica", per);
}

static void bench_report_json(const bench *b, const bench_totals *t, double secs) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "replicas", json_object_new_int64(b->n));
    json_object_object_add(o, "clients", json_object_new_int64(b->o.clients));
    json_object_object_add(o, "op", json_object_new_string(bench_op_names[b->o.op]));
    json_object_object_add(o, "rate", b->o.rate ? json_object_new_int64((int64_t)b->o.rate) : NULL);
    json_object_object_add(o, "value_bytes", json_object_new_int64(b->o.value_bytes));
    json_object_object_add(o, "warmup_s", bench_jnum((double)b->o.warmup_ms / 1e3, 3));
    json_object_object_add(o, "duration_s", bench_jnum(secs, 3));
    json_object_object_add(o, "ops", json_object_new_int64((int64_t)b->ops));
    json_object_object_add(o, "ops_per_s", bench_jnum((double)b->ops / secs, 1));
    bench_json_latency(o, b);
    json_object_object_add(o, "errors", json_object_new_int64((int64_t)b->errors));
    json_object_object_add(o, "timeouts", json_object_new_int64((int64_t)b->timeouts));
    json_object_object_add(o, "denied", json_object_new_int64((int64_t)b->denied));
    json_object_object_add(o, "certified", json_object_new_int64((int64_t)b->certified));
    json_object_object_add(o, "certified_share",
                           bench_ratio(true, (double)b->certified, (double)b->ops, 4));
    bench_json_replicas(o, b, t);
    bool e = b->o.estop_probe && b->estop_count > 0;
    json_object_object_add(o, "estop_p50_ms",
                           e ? bench_jnum(bench_ms(cli_hist_quantile(&b->estop, 0.5)), 3) : NULL);
    json_object_object_add(o, "estop_p99_ms",
                           e ? bench_jnum(bench_ms(cli_hist_quantile(&b->estop, 0.99)), 3) : NULL);
    json_object_object_add(o, "estop_count", json_object_new_int64((int64_t)b->estop_count));
    json_object_object_add(o, "estop_errors", json_object_new_int64((int64_t)b->estop_errors));
    json_object_object_add(o, "estop_skipped", json_object_new_int64((int64_t)b->estop_skipped));
    double cpu = bench_rusage_s(&b->ru_after) - bench_rusage_s(&b->ru_before);
    json_object_object_add(o, "bench_cpu_s", bench_jnum(cpu, 2));
    cli_json_print(o);
}

static void bench_report_table(const bench *b, const bench_totals *t, double secs) {
    const cli_hist *h = &b->main;
    char rate[48] = "closed loop";
    if (b->o.rate != 0) {
        snprintf(rate, sizeof rate, "open loop at %" PRIu64 " ops/s", b->o.rate);
    }
    printf("twinbft bench: %" PRIu32 " replicas, %" PRIu32 " clients, op %s, %s, %.1f s measured "
           "after %.1f s warmup\n",
           b->n, b->o.clients, bench_op_names[b->o.op], rate, secs, (double)b->o.warmup_ms / 1e3);
    printf("throughput  %.1f ops/s  (%" PRIu64 " ops, %" PRIu64 " errors, %" PRIu64 " certified)\n",
           (double)b->ops / secs, b->ops, b->errors, b->certified);
    printf("latency ms  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n",
           bench_ms(cli_hist_quantile(h, 0.5)), bench_ms(cli_hist_quantile(h, 0.9)),
           bench_ms(cli_hist_quantile(h, 0.99)), bench_ms(cli_hist_quantile(h, 0.999)),
           bench_ms(h->max));
    if (b->o.estop_probe) {
        printf("estop ms    p50 %.3f  p99 %.3f  (%" PRIu64 " latches, %" PRIu64 " errors)\n",
               bench_ms(cli_hist_quantile(&b->estop, 0.5)),
               bench_ms(cli_hist_quantile(&b->estop, 0.99)), b->estop_count, b->estop_errors);
    }
    if (t->have && t->batches > 0) {
        printf("primary %" PRIu32 "   %.0f batches, avg_batch %.2f, commits/batch %.3f", t->primary,
               t->batches, t->requests / t->batches, t->commits / t->batches);
        if (t->have_ed25519) {
            printf(", ed25519/batch %.2f", t->ed25519 / t->batches);
        }
        printf(", view changes %.0f\n", t->view_changes);
    }
    printf("cpu s       bench %.2f  replicas",
           bench_rusage_s(&b->ru_after) - bench_rusage_s(&b->ru_before));
    for (uint32_t i = 0; i < b->n; i++) {
        double v = 0;
        if (bench_cpu_s(b, i, &v)) {
            printf(" %.2f", v);
        } else {
            printf(" -");
        }
    }
    printf("\n");
}

static int bench_report(const bench *b) {
    bench_totals t;
    bench_totals_of(b, &t);
    double secs = (double)(b->measure_end_us - b->measure_start_us) / 1e6;
    secs = secs > 0 ? secs : 1e-6;
    if (b->c->g->output == CLI_OUTPUT_JSON) {
        bench_report_json(b, &t, secs);
    } else {
        bench_report_table(b, &t, secs);
    }
    if (b->ops == 0) {
        return cli_fail(b->c, CLI_EXIT_FAILED, "no request completed in the measured window");
    }
    return CLI_EXIT_OK;
}

static int cli_bench(cli_ctx *c) {
    bench *b = calloc(1, sizeof *b); /* large: three histograms, paths */
    if (b == NULL) {
        return cli_fail(c, CLI_EXIT_FAILED, "out of memory");
    }
    b->c = c;
    int rc = bench_args(c, &b->o);
    if (rc != CLI_EXIT_OK) {
        free(b);
        return rc;
    }
    bench_nofile_raise();
    bench_signals();
    rc = bench_prepare(b);
    rc = rc ? rc : bench_connect(b);
    rc = rc ? rc : bench_setup(b);
    rc = rc ? rc : bench_run(b);
    rc = rc ? rc : bench_report(b);
    bench_teardown(b);
    free(b);
    return rc;
}

static const cli_flag cli_bench_flags[] = {
    {"local", "N", 0, "make a new cluster of N replicas for the run, and remove it after"},
    {"clients", "C", 0, "concurrent clients, each its own principal (default 16)"},
    {"duration", "DURATION", 0, "the measured window, e.g. 15s (default 15s)"},
    {"warmup", "DURATION", 0, "unmeasured load before it (default 2s)"},
    {"rate", "R", 0, "open loop: R requests a second in all (default: closed loop)"},
    {"op", "OP", 0, "config (default), actuate, place, mix or register"},
    {"value-bytes", "B", 0, "config values' size (default 64)"},
    {"no-estop-probe", NULL, 0, "no emergency-stop latches during the run"},
    {"base-port", "P", 0, "--local: replica i on P+i, HTTP on P+100+i (default: free, 17000+)"},
    {"log-level", "LEVEL", 0, "--local: the replicas' log level (default warn)"},
    {"ca-dir", "DIR", 0, "--cluster: the directory with ca-key.pem (default: the cluster file's)"},
    {"quiet", NULL, 0, "no progress line on stderr"},
    {NULL, NULL, 0, NULL},
};

const cli_cmd CLI_BENCH_CMDS[] = {
    {"bench", "", 0, 0, "Measure a cluster's throughput and latency under load from C clients.",
     "Each client is its own principal (an identity issued for the run, given the operator\n"
     "role by the admin) with its own libtwinbft client; all run on one event loop. Closed\n"
     "loop by default: each client keeps one request outstanding. With --rate, requests are\n"
     "due at fixed times and latency counts from when one was due, so queueing shows.\n"
     "Ops: config (config put of a 16-byte key out of 100000, --value-bytes value), actuate\n"
     "(an actuation request on the client's own twin, always approved), place (scale of the\n"
     "client's own twin component between 1 and 2 replicas: a placement onto bench nodes each\n"
     "time), mix (the three in turn), register (a new twin each time, named after the\n"
     "client's principal: loads a large state). A probe client latches an emergency stop on site\n"
     "bench-estop every 200 ms of the measured window (the safety lane; its latency is\n"
     "reported) and resets it after each latch (a tick that finds the latch or its reset\n"
     "still under way is skipped: estop_skipped). Replica numbers (batches, average batch,\n"
     "durable commits per batch, view changes, Ed25519 operations per batch where exported)\n"
     "are deltas of the primary's /metrics over the measured window.\n"
     "\n"
     "--local N: a new cluster in a temporary directory ($TMPDIR or /tmp), as cluster init\n"
     "and up make it, stopped and removed at the end (also on SIGINT or SIGTERM).\n"
     "--cluster FILE: a cluster that is up. Bench identities are issued with the CA key in\n"
     "--ca-dir (default: the cluster file's directory, as cluster init made it) into a\n"
     "temporary directory; --identity (default CA_DIR/admin) grants their roles and takes\n"
     "them back at the end. Sites, nodes and twins named bench-* and config keys stay.\n"
     "\n"
     "Progress goes to stderr once a second; the result to stdout (-w json: one object).\n"
     "--timeout is each request's (default 5s); a failed or refused request counts in\n"
     "errors and its client goes on. Exit 0 when the run completed, 1 when no request did\n"
     "(or setup failed, or it was interrupted), 2 bad arguments, 3 cluster unreachable.\n",
     cli_bench_flags, 0, cli_bench},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, 0, NULL},
};
