/* An honest client's load for the integration tests, on libtwinbft:
 * connects to every replica as the identity in DIR and submits config puts
 * one after another for DURATION seconds, each completed by f+1 matching
 * replies. Reports what an attack at the network edge costs this client:
 *
 *   completed=N errors=E seconds=S ops_per_s=X median_ms=M max_gap_ms=G next=K
 *
 * max_gap_ms is the longest time without a completion, counted from the
 * start and up to the end, so a stall anywhere shows. next is the request
 * number to start the following run at. Exits 0 (the caller judges the
 * numbers), 2 on bad arguments or an identity that does not load.
 *
 *   tb_load CLUSTER_FILE IDENTITY_DIR FIRST_NUMBER DURATION_S */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "consensus/pbft.h"
#include "proto/pki.h"
#include "proto/sm.pb-c.h"
#include "replica/config.h"
#include "twinbft/twinbft.h"

enum {
    LOAD_LATENCIES_MAX = 1u << 20,   /* completions recorded for the median */
    LOAD_REQUEST_TIMEOUT_MS = 20000, /* one request; a timeout counts as an error */
};

static struct {
    rep_cluster cl;
    tb_client_config cfg;
    struct event_base *base;
    tb_client *client;
    uint64_t number;
    double start_ms, end_ms, submitted_ms, last_done_ms, max_gap_ms;
    double *latencies;
    size_t completed;
    uint64_t errors;
} L;

static double mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static size_t pack_op(uint64_t number, uint8_t *op) {
    Twinbft__SmOp o = TWINBFT__SM_OP__INIT;
    Twinbft__SmConfigPut put = TWINBFT__SM_CONFIG_PUT__INIT;
    char key[48];
    snprintf(key, sizeof key, "load/%llu", (unsigned long long)(number % 1000));
    put.key = key;
    put.value = (ProtobufCBinaryData){strlen(key), (uint8_t *)key};
    o.op_case = TWINBFT__SM_OP__OP_CONFIG_PUT, o.config_put = &put;
    return twinbft__sm_op__pack(&o, op);
}

static void submit_next(void);

static void note_gap(double now) {
    if (now - L.last_done_ms > L.max_gap_ms) {
        L.max_gap_ms = now - L.last_done_ms;
    }
    L.last_done_ms = now;
}

static void on_result(int status, const tb_result *r, void *arg) {
    (void)r, (void)arg;
    double now = mono_ms();
    L.number++;
    if (status != 0) {
        L.errors++;
    } else {
        note_gap(now);
        if (L.completed < LOAD_LATENCIES_MAX) {
            L.latencies[L.completed] = now - L.submitted_ms;
        }
        L.completed++;
    }
    if (now >= L.end_ms) {
        event_base_loopexit(L.base, NULL);
        return;
    }
    submit_next();
}

static void submit_next(void) {
    uint8_t op[256];
    size_t len = pack_op(L.number, op);
    L.submitted_ms = mono_ms();
    if (tb_client_submit(L.client, op, len, on_result, NULL) != 0) {
        abort(); /* one request outstanding at a time */
    }
}

static int load_config(const char *dir, uint64_t first) {
    static char ca[600], cert[600], key[600];
    tb_client_config *c = &L.cfg;
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(ca, sizeof ca, "%s", L.cl.ca_path);
    c->n = L.cl.n;
    c->f = pbft_f(L.cl.n);
    c->cluster_id_len = strlen(L.cl.id);
    memcpy(c->cluster_id, L.cl.id, c->cluster_id_len);
    c->epoch = L.cl.epoch;
    for (uint32_t j = 0; j < L.cl.n; j++) {
        X509 *x = NULL;
        size_t host_len = strlen(L.cl.members[j].host);
        if (host_len >= sizeof c->members[j].host) {
            return TB_ERR_TOO_LARGE;
        }
        memcpy(c->members[j].host, L.cl.members[j].host, host_len + 1);
        c->members[j].port = L.cl.members[j].port;
        if (proto_pki_load_cert(L.cl.members[j].cert_path, &x) ||
            proto_pki_pubkey(x, c->members[j].pubkey)) {
            X509_free(x);
            return TB_ERR_INVALID;
        }
        X509_free(x);
    }
    c->ca_path = ca;
    c->cert_path = cert;
    c->key_path = key;
    c->first_number = first;
    c->timeout_ms = LOAD_REQUEST_TIMEOUT_MS;
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: tb_load CLUSTER_FILE IDENTITY_DIR FIRST_NUMBER DURATION_S\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    char err[REP_CONFIG_ERR_BYTES];
    if (rep_cluster_load(argv[1], &L.cl, err, sizeof err) != 0) {
        fprintf(stderr, "tb_load: %s\n", err);
        return 2;
    }
    uint64_t first = strtoull(argv[3], NULL, 10);
    int duration_s = atoi(argv[4]);
    L.base = event_base_new();
    L.latencies = calloc(LOAD_LATENCIES_MAX, sizeof *L.latencies);
    if (first == 0 || duration_s <= 0 || L.base == NULL || L.latencies == NULL ||
        load_config(argv[2], first) != 0 || tb_client_new(L.base, &L.cfg, &L.client) != 0) {
        fprintf(stderr, "tb_load: bad arguments, or cannot load the identity in %s\n", argv[2]);
        return 2;
    }
    L.number = first;
    L.start_ms = L.last_done_ms = mono_ms();
    L.end_ms = L.start_ms + duration_s * 1000.0;
    /* A request still outstanding at the end is cut off after its own timeout. */
    struct timeval limit = {duration_s + LOAD_REQUEST_TIMEOUT_MS / 1000, 0};
    event_base_loopexit(L.base, &limit);
    submit_next();
    event_base_dispatch(L.base);
    double stop = mono_ms();
    note_gap(stop);
    size_t n = L.completed < LOAD_LATENCIES_MAX ? L.completed : LOAD_LATENCIES_MAX;
    qsort(L.latencies, n, sizeof *L.latencies, cmp_double);
    double seconds = (stop - L.start_ms) / 1000.0;
    printf("completed=%zu errors=%llu seconds=%.1f ops_per_s=%.1f median_ms=%.1f max_gap_ms=%.0f "
           "next=%llu\n",
           L.completed, (unsigned long long)L.errors, seconds, (double)L.completed / seconds,
           n > 0 ? L.latencies[n / 2] : 0.0, L.max_gap_ms,
           (unsigned long long)tb_client_next_number(L.client));
    tb_client_free(L.client);
    event_base_loop(L.base, EVLOOP_NONBLOCK); /* see tb_client_free */
    event_base_free(L.base);
    free(L.latencies);
    return 0;
}
