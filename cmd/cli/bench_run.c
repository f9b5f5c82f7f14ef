/* twinbft bench, the running part: the event loop, the load the clients
 * offer (closed or open loop) with its latency accounting, the estop probe,
 * and the phases of the run with the scrapes at either end of the measured
 * window. See bench.h for the shared state. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "cmd/cli/bench.h"
#include "proto/tb_assert.h"

volatile sig_atomic_t bench_signalled = 0;

uint64_t bench_now_us(void) {
    struct timespec ts = {0};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

struct timeval bench_tv_us(uint64_t us) {
    return (struct timeval){.tv_sec = (time_t)(us / 1000000u),
                            .tv_usec = (suseconds_t)(us % 1000000u)};
}

/* ---- the loop ---- */

bench_wait bench_loop(bench *b, uint64_t timeout_ms, bool (*done)(bench *b)) {
    uint64_t deadline = bench_now_us() + timeout_ms * 1000u;
    while (!done(b)) {
        if (bench_signalled) {
            return BENCH_WAIT_SIGNAL;
        }
        if (bench_now_us() >= deadline) {
            return BENCH_WAIT_TIMEOUT;
        }
        if (event_base_loop(b->base, EVLOOP_ONCE) < 0) {
            return BENCH_WAIT_TIMEOUT; /* the loop itself failed: nothing will happen */
        }
    }
    return BENCH_WAIT_OK;
}

int bench_wait_exit(const bench *b, bench_wait w, int timeout_code, const char *what) {
    if (w == BENCH_WAIT_SIGNAL) {
        return cli_fail(b->c, CLI_EXIT_FAILED, "interrupted while %s", what);
    }
    return w == BENCH_WAIT_OK ? CLI_EXIT_OK
                              : cli_fail(b->c, timeout_code, "timed out while %s", what);
}

/* ---- the load ---- */

static uint64_t bench_rand(bench_client *cl) {
    cl->rng ^= cl->rng << 13;
    cl->rng ^= cl->rng >> 7;
    cl->rng ^= cl->rng << 17;
    return cl->rng;
}

/* Packs the client's next op into cl->buf; returns its length. */
static size_t bench_pack(bench_client *cl) {
    bench *b = cl->b;
    bench_op kind = b->o.op;
    if (kind == BENCH_OP_MIX) {
        kind = (bench_op)(cl->turn++ % 3); /* config, actuate, place in turn */
    }
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    Twinbft__SmConfigPut cp = TWINBFT__SM_CONFIG_PUT__INIT;
    Twinbft__SmActuate act = TWINBFT__SM_ACTUATE__INIT;
    Twinbft__SmScale sc = TWINBFT__SM_SCALE__INIT;
    Twinbft__SmTwinCreate tc = TWINBFT__SM_TWIN_CREATE__INIT;
    char key[BENCH_KEY_BYTES + 1];
    char id[BENCH_NAME_BYTES + 24];
    if (kind == BENCH_OP_REGISTER) {
        /* The principal's name is new for every run: so are these twins. */
        snprintf(id, sizeof id, "%s-%" PRId64, cl->name, cl->value++);
        tc.id = id, tc.kind = TWINBFT__SM_TWIN_KIND__SM_TWIN_KIND_SITE;
        tc.site = "bench-site", tc.owner = cl->name;
        op.op_case = TWINBFT__SM_OP__OP_TWIN_CREATE, op.twin_create = &tc;
    } else if (kind == BENCH_OP_CONFIG) {
        snprintf(key, sizeof key, "%016" PRIu64, bench_rand(cl) % BENCH_KEY_SPACE);
        cp.key = key;
        cp.value = (ProtobufCBinaryData){b->o.value_bytes, b->value};
        op.op_case = TWINBFT__SM_OP__OP_CONFIG_PUT, op.config_put = &cp;
    } else if (kind == BENCH_OP_ACTUATE) {
        act.twin = cl->twin, act.property = "setpoint", act.value = cl->value++;
        op.op_case = TWINBFT__SM_OP__OP_ACTUATE, op.actuate = &act;
    } else {
        /* A placement decision: scale out places a replica on the best
         * node (anti-affinity, capacity, score), scale in removes it. */
        sc.twin = cl->twin, sc.component = "svc", sc.replicas = cl->scale_up ? 2 : 1;
        cl->scale_up = !cl->scale_up;
        op.op_case = TWINBFT__SM_OP__OP_SCALE, op.scale = &sc;
    }
    size_t len = twinbft__sm_op__get_packed_size(&op);
    TB_ASSERT(len <= cl->cap);
    return twinbft__sm_op__pack(&op, cl->buf);
}

static void bench_error_note(bench *b, const bench_client *cl, const char *what,
                             const char *detail) {
    if (b->errors_shown++ < BENCH_ERRORS_SHOWN_MAX) {
        fprintf(stderr, "%stwinbft bench: %s: %s%s%s%s\n", b->progress_open ? "\n" : "", cl->name,
                what, detail[0] ? " (" : "", detail, detail[0] ? ")" : "");
        b->progress_open = false;
    }
}

/* status 0 and an OK result: true. Otherwise counted and described. */
static bool bench_result_ok(bench *b, const bench_client *cl, int status, const tb_result *r,
                            bool count) {
    if (status != 0) {
        b->timeouts += count && status == TB_ERR_TIMEOUT;
        if (count) {
            bench_error_note(b, cl, tb_strerror(status), "");
        }
        return false;
    }
    Twinbft__SmResult *res = twinbft__sm_result__unpack(NULL, r->result_len, r->result);
    bool ok = res != NULL && res->code == TWINBFT__SM_CODE__SM_CODE_OK;
    if (!ok && count) {
        b->denied++;
        bench_error_note(b, cl, res != NULL ? "refused" : "undecodable result",
                         res != NULL ? res->detail : "");
    }
    twinbft__sm_result__free_unpacked(res, NULL);
    return ok;
}

static void bench_account(bench *b, bench_client *cl, int status, const tb_result *r,
                          uint64_t now) {
    bool measuring = b->phase == BENCH_MEASURE;
    if (b->phase != BENCH_WARMUP && !measuring) {
        return; /* a straggler of the drain */
    }
    if (!bench_result_ok(b, cl, status, r, measuring)) {
        b->errors += measuring;
        return;
    }
    b->done_total++;
    uint64_t lat = now > cl->start_us ? now - cl->start_us : 0;
    if (!measuring) {
        cli_hist_record(&b->warm, lat);
        return;
    }
    cli_hist_record(&b->main, lat);
    b->ops++;
    b->certified += r->cert != NULL;
}

static void bench_on_done(int status, const tb_result *r, void *arg);

static bool bench_loading(const bench *b) {
    return b->phase == BENCH_WARMUP || b->phase == BENCH_MEASURE;
}

/* Open loop: slot k of client i is due at t0 + (k*C + i)/R, so the
 * clients' slots interleave into one schedule of R requests a second. */
static uint64_t bench_slot_us(const bench *b, const bench_client *cl) {
    return b->t0_us + (cl->slot * b->o.clients + cl->id) * 1000000u / b->o.rate;
}

static void bench_send(bench_client *cl, uint64_t start_us) {
    bench *b = cl->b;
    size_t len = bench_pack(cl);
    int rc = tb_client_submit(cl->tc, cl->buf, len, bench_on_done, cl);
    if (rc != 0) {
        b->errors += b->phase == BENCH_MEASURE;
        bench_error_note(b, cl, "submit refused", tb_strerror(rc));
        struct timeval retry = bench_tv_us(BENCH_RETRY_MS * 1000u);
        evtimer_add(cl->timer, &retry);
        return;
    }
    cl->busy = true;
    cl->start_us = start_us;
    cl->slot += b->o.rate != 0;
}

/* What an idle client does next: send at once (closed loop, or an open
 * loop slot already due, whose latency counts from when it was due), or
 * wait for its next slot. */
static void bench_client_next(bench_client *cl, uint64_t now) {
    bench *b = cl->b;
    if (!bench_loading(b) || cl->busy) {
        return;
    }
    if (b->o.rate == 0) {
        bench_send(cl, now);
        return;
    }
    uint64_t due = bench_slot_us(b, cl);
    if (due <= now) {
        bench_send(cl, due);
        return;
    }
    struct timeval wait = bench_tv_us(due - now);
    evtimer_add(cl->timer, &wait);
}

static void bench_on_done(int status, const tb_result *r, void *arg) {
    bench_client *cl = arg;
    uint64_t now = bench_now_us();
    cl->busy = false;
    bench_account(cl->b, cl, status, r, now);
    bench_client_next(cl, now);
}

void bench_client_on_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    bench_client_next(arg, bench_now_us());
}

/* ---- the estop probe ---- */

static void bench_on_probe_done(int status, const tb_result *r, void *arg);

static void bench_probe_send(bench_client *cl, bool latch) {
    Twinbft__SmEstopLatch l = TWINBFT__SM_ESTOP_LATCH__INIT;
    Twinbft__SmEstopReset rs = TWINBFT__SM_ESTOP_RESET__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    l.scope = rs.scope = TWINBFT__SM_ESTOP_SCOPE__SM_ESTOP_SITE;
    l.id = rs.id = "bench-estop";
    l.reason = "bench probe";
    if (latch) {
        op.op_case = TWINBFT__SM_OP__OP_ESTOP_LATCH, op.estop_latch = &l;
    } else {
        op.op_case = TWINBFT__SM_OP__OP_ESTOP_RESET, op.estop_reset = &rs;
    }
    size_t len = twinbft__sm_op__pack(&op, cl->buf);
    if (tb_client_submit(cl->tc, cl->buf, len, bench_on_probe_done, cl) == 0) {
        cl->busy = true;
        cl->latch = latch;
        cl->start_us = bench_now_us();
    } else if (latch) {
        cl->b->estop_errors++;
    }
}

/* A latch is measured (the safety lane); the reset that follows it at once
 * (the normal lane: only operators may reset) keeps the next latch a real
 * change of state. */
static void bench_on_probe_done(int status, const tb_result *r, void *arg) {
    bench_client *cl = arg;
    bench *b = cl->b;
    uint64_t now = bench_now_us();
    cl->busy = false;
    if (!cl->latch || b->phase != BENCH_MEASURE) {
        return;
    }
    if (bench_result_ok(b, cl, status, r, true)) {
        cli_hist_record(&b->estop, now - cl->start_us);
        b->estop_count++;
    } else {
        b->estop_errors++;
    }
    bench_probe_send(cl, false);
}

static void bench_on_estop_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    bench *b = arg;
    if (b->phase != BENCH_MEASURE) {
        return;
    }
    if (b->probe->busy) {
        b->estop_skipped++; /* the last latch or its reset is still under way */
        return;
    }
    bench_probe_send(b->probe, true);
}

/* ---- phases and progress ---- */

static double bench_ms_of(uint64_t us) {
    return (double)us / 1e3;
}

/* One line a second on stderr: rewritten in place on a terminal, one
 * line each otherwise (a log stays readable). last ends the phase's line. */
static void bench_progress(bench *b, bool last) {
    uint64_t now = bench_now_us();
    bool measuring = b->phase >= BENCH_MEASURE;
    const cli_hist *h = measuring ? &b->main : &b->warm;
    double at_s = (double)(now - (measuring ? b->measure_start_us : b->t0_us)) / 1e6;
    double of_s = (double)(measuring ? b->o.duration_ms : b->o.warmup_ms) / 1e3;
    double per_s = now > b->progress_last_us ? (double)(b->done_total - b->progress_last_done) *
                                                   1e6 / (double)(now - b->progress_last_us)
                                             : 0;
    b->progress_last_done = b->done_total;
    b->progress_last_us = now;
    if (b->o.quiet) {
        return;
    }
    char estop[64] = "";
    if (measuring && b->o.estop_probe) {
        snprintf(estop, sizeof estop, "  estop p99 %.1f ms",
                 bench_ms_of(cli_hist_quantile(&b->estop, 0.99)));
    }
    fprintf(stderr, "%sbench: %-7s %4.1f/%.1f s  %8.1f ops/s  p99 %.1f ms  errors %" PRIu64 "%s%s",
            b->progress_tty ? "\r" : "", measuring ? "measure" : "warmup",
            at_s < of_s ? at_s : of_s, of_s, per_s, bench_ms_of(cli_hist_quantile(h, 0.99)),
            b->errors, estop, b->progress_tty && !last ? "\033[K" : "\n");
    b->progress_open = b->progress_tty && !last;
}

static void bench_on_progress(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    bench_progress(arg, false);
}

static void bench_cpu_read(bench *b, double *out) {
    for (uint32_t i = 0; i < b->n_rs; i++) {
        b->cpu_known[i] =
            b->cpu_known[i] && b->rs[i].pid > 0 && cli_proc_cpu_s(b->rs[i].pid, &out[i]);
    }
}

static void bench_on_scraped(void *arg) {
    bench *b = arg;
    b->phase = BENCH_DONE;
}

static void bench_on_phase(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    bench *b = arg;
    struct timeval second = bench_tv_us(1000000u);
    if (b->phase == BENCH_WARMUP) {
        if (b->o.warmup_ms > 0) {
            bench_progress(b, true);
        }
        event_add(b->progress_ev, &second); /* seconds of the window from its start */
        b->phase = BENCH_MEASURE;
        b->measure_start_us = bench_now_us();
        getrusage(RUSAGE_SELF, &b->ru_before);
        bench_cpu_read(b, b->cpu_before);
        (void)cli_scrape_start(b->base, b->conn.cluster, &b->before, NULL, NULL);
        struct timeval d = bench_tv_us(b->o.duration_ms * 1000u);
        evtimer_add(b->phase_ev, &d);
        struct timeval every = bench_tv_us(BENCH_ESTOP_EVERY_MS * 1000u);
        if (b->o.estop_probe) {
            event_add(b->estop_ev, &every);
        }
        return;
    }
    b->phase = BENCH_DRAIN;
    b->measure_end_us = bench_now_us();
    event_del(b->progress_ev);
    /* The window's last line, unless the once-a-second one just said it all. */
    if (b->progress_tty || b->measure_end_us - b->progress_last_us >= 250000u) {
        bench_progress(b, true);
    }
    getrusage(RUSAGE_SELF, &b->ru_after);
    bench_cpu_read(b, b->cpu_after);
    event_del(b->estop_ev);
    if (cli_scrape_start(b->base, b->conn.cluster, &b->after, bench_on_scraped, b) != 0) {
        b->phase = BENCH_DONE;
    }
}

static bool bench_finished(bench *b) {
    /* The opening scrape must be over too: its requests hold the loop. */
    return b->phase == BENCH_DONE && (!b->before.started || cli_scrape_done(&b->before));
}

int bench_run(bench *b) {
    b->phase_ev = evtimer_new(b->base, bench_on_phase, b);
    b->progress_ev = event_new(b->base, -1, EV_PERSIST, bench_on_progress, b);
    b->estop_ev = event_new(b->base, -1, EV_PERSIST, bench_on_estop_tick, b);
    if (b->phase_ev == NULL || b->progress_ev == NULL || b->estop_ev == NULL) {
        return cli_fail(b->c, CLI_EXIT_FAILED, "out of memory");
    }
    for (uint32_t i = 0; i < b->n_rs; i++) {
        b->cpu_known[i] = true;
    }
    b->progress_tty = isatty(STDERR_FILENO) == 1;
    b->phase = BENCH_WARMUP;
    b->t0_us = bench_now_us();
    b->progress_last_us = b->t0_us;
    struct timeval second = bench_tv_us(1000000u), warm = bench_tv_us(b->o.warmup_ms * 1000u);
    event_add(b->progress_ev, &second);
    evtimer_add(b->phase_ev, &warm);
    for (uint32_t i = 0; i < b->o.clients; i++) {
        bench_client_next(&b->cl[i], b->t0_us);
    }
    uint64_t limit_ms =
        b->o.warmup_ms + b->o.duration_ms + 2 * CLI_SCRAPE_TIMEOUT_S * 1000u + BENCH_START_WAIT_MS;
    bench_wait w = bench_loop(b, limit_ms, bench_finished);
    event_del(b->progress_ev);
    if (b->progress_open) {
        fputc('\n', stderr);
        b->progress_open = false;
    }
    b->phase = BENCH_DONE;
    return bench_wait_exit(b, w, CLI_EXIT_FAILED, "running the benchmark");
}
