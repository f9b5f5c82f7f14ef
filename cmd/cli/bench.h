/* twinbft bench, shared between its files: bench.c (the command: flags,
 * the cluster it runs against, the report), bench_setup.c (the clients,
 * the cluster's readiness, registrations and grants, clean-up) and
 * bench_run.c (the event loop, the load, the estop probe, the phases).
 * Everything runs on one thread and one event_base; the callbacks of
 * libtwinbft are the only concurrency. */
#ifndef CLI_BENCH_H
#define CLI_BENCH_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>

#include <event2/util.h>

#include "cmd/cli/bench_hist.h"
#include "cmd/cli/bench_scrape.h"
#include "cmd/cli/cli.h"

enum {
    BENCH_CLIENTS_MAX = 1024,
    BENCH_CLIENTS_DEFAULT = 16,
    BENCH_DURATION_MS_DEFAULT = 15000,
    BENCH_WARMUP_MS_DEFAULT = 2000,
    BENCH_DURATION_MS_MIN = 100,
    BENCH_RATE_MAX = 10 * 1000 * 1000, /* ops/s of --rate */
    BENCH_VALUE_BYTES_DEFAULT = 64,    /* as etcd's benchmark */
    BENCH_VALUE_BYTES_MAX = 16 * 1024, /* the state machine's config value limit */
    BENCH_KEY_BYTES = 16,              /* config keys: 16 decimal digits */
    BENCH_KEY_SPACE = 100000,          /* distinct config keys */
    BENCH_OP_BYTES_SLACK = 512,        /* an op's bytes besides its value */
    BENCH_START_WAIT_MS = 120 * 1000,  /* replicas listening, cluster ready, links */
    BENCH_LINKS_GRACE_MS = 5000,       /* after every client has a quorum of links */
    BENCH_SETUP_WAIT_MS = 300 * 1000,  /* registrations and grants, in all */
    BENCH_TICK_MS = 50,                /* how often the loop looks at its state */
    BENCH_STATUS_EVERY_MS = 200,       /* readiness polls */
    BENCH_ESTOP_EVERY_MS = 200,        /* the safety-lane probe's period */
    BENCH_RETRY_MS = 10,               /* after a submit refused on the spot */
    BENCH_ERRORS_SHOWN_MAX = 5,        /* failures described on stderr */
    BENCH_LOG_EVERY_MS = 1000,         /* link trouble lines, from all clients */
    BENCH_NODES_MIN = 4,               /* placement targets registered */
    BENCH_NODE_REPLICAS = 100,         /* of SM_NODE_REPLICAS_MAX (128) per node */
    BENCH_STOP_WAIT_MS = 10000,        /* SIGTERM to SIGKILL of local replicas */
    BENCH_PORT_FIRST = 17000,          /* --local: base ports tried from here ... */
    BENCH_PORT_STRIDE = 200,           /* ... in steps that fit 64 replicas + HTTP */
    BENCH_NAME_BYTES = 64,
};
_Static_assert(BENCH_PORT_STRIDE >= CLI_HTTP_PORT_OFFSET + REP_MEMBERS_MAX,
               "one base port's replica and HTTP ports stay inside its stride");
_Static_assert(BENCH_KEY_BYTES + BENCH_VALUE_BYTES_MAX + BENCH_OP_BYTES_SLACK <=
                   TB_CLIENT_OP_BYTES_MAX,
               "the largest config put fits in one intent");

typedef enum bench_op {
    BENCH_OP_CONFIG,
    BENCH_OP_ACTUATE,
    BENCH_OP_PLACE,
    BENCH_OP_MIX,
    BENCH_OP_REGISTER,
} bench_op;

typedef enum bench_phase {
    BENCH_SETUP,   /* registrations, grants; nothing measured */
    BENCH_WARMUP,  /* load, unmeasured */
    BENCH_MEASURE, /* load, measured; the estop probe runs */
    BENCH_DRAIN,   /* no new requests; the closing scrape */
    BENCH_DONE,
} bench_phase;

typedef struct bench_opts {
    uint32_t local; /* --local N; 0 for --cluster */
    uint32_t base_port;
    uint32_t clients;
    uint64_t duration_ms, warmup_ms;
    uint64_t rate; /* ops/s in all; 0: closed loop */
    bench_op op;
    uint32_t value_bytes;
    bool estop_probe;
    bool quiet;
    const char *ca_dir; /* --cluster: where ca-key.pem is (NULL: next to the cluster file) */
    const char *level;  /* --local: the replicas' log level */
} bench_opts;

typedef struct bench bench;

/* A setup script: ops one client submits one after another. */
typedef struct bench_script {
    uint8_t **ops;
    size_t *lens;
    uint32_t n, next;
} bench_script;

typedef enum bench_role { BENCH_LOAD, BENCH_PROBE, BENCH_ADMIN } bench_role;

typedef struct bench_client {
    bench *b;
    tb_client *tc;
    bench_role role;
    uint32_t id; /* load clients: 0..clients-1 */
    char name[BENCH_NAME_BYTES];
    char twin[BENCH_NAME_BYTES];
    bool busy;
    uint64_t start_us; /* latency origin of the outstanding request */
    uint64_t slot;     /* open loop: the next schedule slot */
    struct event *timer;
    uint64_t rng;
    uint32_t turn; /* mix: which kind of op is next */
    int64_t value; /* actuate: the next value asked for */
    bool scale_up; /* place: the next scale goes to 2 replicas */
    bool latch;    /* probe: the outstanding op is a latch (measured) */
    uint8_t *buf;  /* packed ops, BENCH_OP_BYTES_SLACK + value_bytes */
    size_t cap;
    bench_script script;
    char script_error[256];
} bench_client;

struct bench {
    cli_ctx *c;
    bench_opts o;
    char run_id[17];
    char tmp[CLI_PATH_BYTES_MAX];     /* removed at the end */
    char ca_dir[CLI_PATH_BYTES_MAX];  /* ca-key.pem, ca.pem */
    char ids_dir[CLI_PATH_BYTES_MAX]; /* where bench identities are issued */
    char admin_dir[CLI_PATH_BYTES_MAX];
    char cluster_dir[CLI_PATH_BYTES_MAX]; /* --local */
    char conf[CLI_PATH_BYTES_MAX];
    cli_replica rs[REP_MEMBERS_MAX];
    uint32_t n_rs;
    bool replicas_started;

    cli_conn conn; /* the cluster file and its client config; conn.client unused */
    uint32_t n, f, quorum;
    struct event_base *base;
    struct event *tick;
    bench_client *cl; /* load clients, then the probe, then the admin */
    uint32_t n_cl;
    bench_client *probe, *admin;
    uint8_t *value; /* config values: value_bytes of 'v' */
    uint32_t nodes; /* bench-node-0..nodes-1 */

    bench_phase phase;
    uint64_t t0_us, measure_start_us, measure_end_us;
    struct event *phase_ev, *progress_ev, *estop_ev;
    bool ready; /* readiness poll: the cluster answered as ready */
    bool status_busy;
    uint64_t status_next_ms;
    uint64_t links_quorum_us; /* since when every client has a quorum of links */
    uint32_t scripts_running;
    bool script_failed;

    cli_hist warm, main, estop;
    uint64_t ops, errors, certified, denied, timeouts;
    uint64_t estop_count, estop_errors, estop_skipped;
    uint64_t done_total, progress_last_done, progress_last_us;
    uint32_t errors_shown;
    uint64_t log_last_us, log_suppressed;
    bool progress_tty, progress_open;

    cli_scrape before, after;
    double cpu_before[REP_MEMBERS_MAX], cpu_after[REP_MEMBERS_MAX];
    bool cpu_known[REP_MEMBERS_MAX];
    struct rusage ru_before, ru_after;
};

/* Set by SIGINT/SIGTERM; every wait looks at it. */
extern volatile sig_atomic_t bench_signalled;

uint64_t bench_now_us(void);

/* ---- bench_run.c: the loop, the load, the phases ---- */

typedef enum bench_wait { BENCH_WAIT_OK, BENCH_WAIT_TIMEOUT, BENCH_WAIT_SIGNAL } bench_wait;

struct timeval bench_tv_us(uint64_t us);
/* Runs the loop until done(b), timeout_ms, or SIGINT/SIGTERM. Needs b->tick
 * armed (it bounds how long the loop sleeps between looks). */
bench_wait bench_loop(bench *b, uint64_t timeout_ms, bool (*done)(bench *b));
/* The exit code of a wait (a message printed unless it is OK). */
int bench_wait_exit(const bench *b, bench_wait w, int timeout_code, const char *what);
/* A load client's timer: its next open-loop slot, or a retry. */
void bench_client_on_timer(evutil_socket_t fd, short what, void *arg);
/* Warmup, measured window, closing scrape. */
int bench_run(bench *b);

/* ---- bench_setup.c: clients, readiness, setup, clean-up ---- */

/* The event loop, clients and events; the admin client connected and the
 * cluster ready (exit 3 when not within BENCH_START_WAIT_MS). */
int bench_connect(bench *b);
/* Registrations, grants and the load clients (connected). */
int bench_setup(bench *b);
/* --cluster: takes back the roles granted to this run's principals. */
void bench_revoke(bench *b);
/* Frees clients, scrape connections, events and the loop; safe on a bench
 * built only partly (or not at all). */
void bench_free_loop(bench *b);

#endif
