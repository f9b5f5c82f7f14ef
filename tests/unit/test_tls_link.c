/* Proves mutual TLS 1.3 links: peers named by their certificates, foreign
 * certificates refused, frames intact in both directions, oversized frames
 * refused before allocation, bounded output, and reconnection by itself. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "client/frame_reader.h"
#include "client/link.h"
#include "proto/pki.h"
#include "proto/tb_err.h"

enum {
    WAIT_MS = 3000,
    /* For the many-connection tests: a cap, not a wait (run_until returns
     * as soon as the outcome is there), generous for a busy machine. */
    LONG_WAIT_MS = 30000,
    BIG_BYTES = 1u << 20,
};

/* ---- identities ---- */

typedef struct identity {
    EVP_PKEY *key;
    X509 *cert;
} identity;

typedef struct pki_fixture {
    identity ca;
    identity other_ca;
    identity server;       /* replica-0, from ca */
    identity client;       /* replica-1, from ca */
    identity foreign;      /* replica-1 too, but from other_ca */
    identity foreign_srv;  /* replica-0 too, but from other_ca */
    identity impostor;     /* replica-1 too, from ca, with another key */
    identity impostor_srv; /* replica-0 too, from ca, with another key */
} pki_fixture;

static pki_fixture pki;

static void issue(identity *ca, const char *cn, identity *out) {
    ck_assert_int_eq(proto_pki_issue(ca->key, ca->cert, cn, 1, &out->key, &out->cert), 0);
}

static void pki_setup(void) {
    ck_assert_int_eq(proto_pki_ca_create("twinbft-test-ca", 1, &pki.ca.key, &pki.ca.cert), 0);
    ck_assert_int_eq(proto_pki_ca_create("some-other-ca", 1, &pki.other_ca.key, &pki.other_ca.cert),
                     0);
    issue(&pki.ca, "replica-0", &pki.server);
    issue(&pki.ca, "replica-1", &pki.client);
    issue(&pki.other_ca, "replica-1", &pki.foreign);
    issue(&pki.other_ca, "replica-0", &pki.foreign_srv);
    issue(&pki.ca, "replica-1", &pki.impostor);
    issue(&pki.ca, "replica-0", &pki.impostor_srv);
}

static void identity_free(identity *id) {
    EVP_PKEY_free(id->key);
    X509_free(id->cert);
}

static void pki_teardown(void) {
    identity_free(&pki.ca);
    identity_free(&pki.other_ca);
    identity_free(&pki.server);
    identity_free(&pki.client);
    identity_free(&pki.foreign);
    identity_free(&pki.foreign_srv);
    identity_free(&pki.impostor);
    identity_free(&pki.impostor_srv);
    memset(&pki, 0, sizeof pki);
}

/* Link logs are noise in a passing run; TB_TEST_VERBOSE=1 shows them. */
static void test_log(const char *line, void *arg) {
    (void)arg;
    if (getenv("TB_TEST_VERBOSE") != NULL) {
        fprintf(stderr, "%s\n", line);
    }
}

static tb_tls_ctx *ctx_for(const identity *ca, const identity *id) {
    tb_tls_ctx *ctx = NULL;
    ck_assert_int_eq(tb_tls_ctx_new(ca->cert, id->cert, id->key, &ctx), 0);
    tb_tls_ctx_set_log(ctx, test_log, NULL);
    return ctx;
}

/* ---- one side's observations ---- */

typedef struct side {
    int opens;
    int closes;
    int frames;
    char peer[PROTO_NAME_BYTES_MAX];
    char reason[512];
    tb_tls_link *link; /* the link last opened */
    uint8_t *last;     /* copy of the last frame */
    size_t last_len;
    size_t bytes;
} side;

static void on_open(tb_tls_link *link, const char *peer_name, void *arg) {
    side *s = arg;
    s->opens++;
    s->link = link;
    snprintf(s->peer, sizeof s->peer, "%s", peer_name);
}

static void on_frame(tb_tls_link *link, const char *peer_name, const uint8_t *data, size_t len,
                     void *arg) {
    side *s = arg;
    (void)link;
    (void)peer_name;
    s->frames++;
    s->bytes += len;
    free(s->last);
    s->last = malloc(len);
    ck_assert_ptr_nonnull(s->last);
    memcpy(s->last, data, len);
    s->last_len = len;
}

static void on_close(tb_tls_link *link, const char *reason, void *arg) {
    side *s = arg;
    s->closes++;
    if (s->link == link) {
        s->link = NULL;
    }
    snprintf(s->reason, sizeof s->reason, "%s", reason);
}

static tb_tls_callbacks callbacks(side *s) {
    tb_tls_callbacks cb = {.on_open = on_open, .on_frame = on_frame, .on_close = on_close};
    cb.arg = s;
    return cb;
}

/* Frees the frame copy; the counts stay for the assertions that follow. */
static void side_free(side *s) {
    free(s->last);
    s->last = NULL;
    s->last_len = 0;
}

/* ---- running the loop with a deadline ---- */

static void tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    (void)arg;
}

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs base until done(arg) or ms pass; a periodic no-op event keeps every
 * loop turn short, so no test can hang on a condition that never comes. */
static bool run_until(struct event_base *base, bool (*done)(void *), void *arg, long ms) {
    struct timeval period = {.tv_sec = 0, .tv_usec = 5000};
    struct event *ev = event_new(base, -1, EV_PERSIST, tick, NULL);
    long deadline = now_ms() + ms;
    ck_assert_ptr_nonnull(ev);
    event_add(ev, &period);
    while ((done == NULL || !done(arg)) && now_ms() < deadline) {
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(ev);
    return done != NULL && done(arg);
}

typedef struct pair {
    side server;
    side client;
    int server_opens;
    int client_opens;
    int server_frames;
    int client_frames;
    int client_closes;
} pair;

/* Each goal is "at least": only fields set to a positive number count. */
static bool pair_reached(void *arg) {
    const pair *p = arg;
    return p->server.opens >= p->server_opens && p->client.opens >= p->client_opens &&
           p->server.frames >= p->server_frames && p->client.frames >= p->client_frames &&
           p->client.closes >= p->client_closes;
}

static void fill(uint8_t *buf, size_t len, uint32_t seed) {
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1664525u + 1013904223u;
        buf[i] = (uint8_t)(seed >> 24);
    }
}

/* ---- tests ---- */

/* Two identities of one CA connect; each learns the other's name; frames of
 * 5 bytes and 1 MiB arrive intact in both directions. */
START_TEST(test_pair_exchanges_frames) {
    struct event_base *base = event_base_new();
    tb_tls_ctx *sctx = ctx_for(&pki.ca, &pki.server);
    tb_tls_ctx *cctx = ctx_for(&pki.ca, &pki.client);
    tb_tls_listener *l = NULL;
    tb_tls_link *c = NULL;
    pair p = {.server_opens = 1, .client_opens = 1};
    tb_tls_callbacks scb = callbacks(&p.server);
    tb_tls_callbacks ccb = callbacks(&p.client);
    uint8_t *big = malloc(BIG_BYTES);
    ck_assert_ptr_nonnull(big);
    fill(big, BIG_BYTES, 7);
    ck_assert_str_eq(tb_tls_ctx_name(sctx), "replica-0");

    ck_assert_int_eq(tb_tls_listen(base, sctx, "127.0.0.1", 0, &scb, &l), 0);
    ck_assert_uint_ne(tb_tls_listener_port(l), 0);
    ck_assert_int_eq(
        tb_tls_connect(base, cctx, "127.0.0.1", tb_tls_listener_port(l), "replica-0", &ccb, &c), 0);
    ck_assert_int_eq(tb_tls_send(c, (const uint8_t *)"early", 5), TB_ERR_STATE);
    ck_assert(run_until(base, pair_reached, &p, WAIT_MS));
    ck_assert_str_eq(p.server.peer, "replica-1");
    ck_assert_str_eq(p.client.peer, "replica-0");
    ck_assert_str_eq(tb_tls_link_peer(c), "replica-0");
    ck_assert(tb_tls_link_is_open(c));

    ck_assert_int_eq(tb_tls_send(c, (const uint8_t *)"hello", 5), 0);
    ck_assert_int_eq(tb_tls_send(c, big, BIG_BYTES), 0);
    ck_assert_int_eq(tb_tls_send(p.server.link, big + 1, BIG_BYTES - 1), 0);
    p.server_frames = 2;
    p.client_frames = 1;
    ck_assert(run_until(base, pair_reached, &p, WAIT_MS));
    ck_assert_int_eq(p.server.frames, 2);
    ck_assert_uint_eq(p.server.bytes, 5 + BIG_BYTES);
    ck_assert_uint_eq(p.server.last_len, BIG_BYTES);
    ck_assert_mem_eq(p.server.last, big, BIG_BYTES);
    ck_assert_uint_eq(p.client.last_len, BIG_BYTES - 1);
    ck_assert_mem_eq(p.client.last, big + 1, BIG_BYTES - 1);
    ck_assert_uint_eq(tb_tls_link_get_stats(c).frames_out, 2);
    ck_assert_uint_eq(tb_tls_link_get_stats(c).frames_in, 1);
    ck_assert_uint_eq(tb_tls_link_get_stats(c).frames_dropped_closed, 1);
    ck_assert_int_eq(tb_tls_send(c, big, 0), TB_ERR_INVALID);
    ck_assert_int_eq(tb_tls_send(c, big, (size_t)PROTO_FRAME_BYTES_MAX + 1), TB_ERR_TOO_LARGE);

    tb_tls_link_free(c);
    tb_tls_listener_free(l);
    ck_assert_int_eq(p.client.closes, 0); /* freeing by the caller is not reported */
    ck_assert_int_eq(p.server.closes, 1); /* the listener closes what it accepted */
    free(big);
    side_free(&p.server);
    side_free(&p.client);
    tb_tls_ctx_free(sctx);
    tb_tls_ctx_free(cctx);
    event_base_loop(base, EVLOOP_NONBLOCK); /* deferred link callbacks, see tb_client_free */
    event_base_free(base);
}
END_TEST

/* Pins and reservations for the next attempt()'s contexts (NULL: none). */
static void (*attempt_setup)(tb_tls_ctx *server, tb_tls_ctx *client);

/* Runs one connection attempt between the given identities and reports
 * whether the server ever saw it open. */
static void attempt(const identity *server_ca, const identity *server_id, const identity *client_ca,
                    const identity *client_id, const char *expected, pair *p,
                    tb_tls_listener_stats *lstats) {
    struct event_base *base = event_base_new();
    tb_tls_ctx *sctx = ctx_for(server_ca, server_id);
    tb_tls_ctx *cctx = ctx_for(client_ca, client_id);
    if (attempt_setup != NULL) {
        attempt_setup(sctx, cctx);
        attempt_setup = NULL;
    }
    tb_tls_listener *l = NULL;
    tb_tls_link *c = NULL;
    tb_tls_callbacks scb = callbacks(&p->server);
    tb_tls_callbacks ccb = callbacks(&p->client);
    ck_assert_int_eq(tb_tls_listen(base, sctx, "127.0.0.1", 0, &scb, &l), 0);
    ck_assert_int_eq(
        tb_tls_connect(base, cctx, "127.0.0.1", tb_tls_listener_port(l), expected, &ccb, &c), 0);
    p->client_closes = 1;
    ck_assert(run_until(base, pair_reached, p, WAIT_MS));
    /* Give a wrongly accepted connection time to show itself. */
    run_until(base, NULL, NULL, 100);
    ck_assert_int_eq(p->server.frames, 0);
    ck_assert_int_eq(p->client.frames, 0);
    *lstats = tb_tls_listener_get_stats(l);
    tb_tls_link_free(c);
    tb_tls_listener_free(l);
    side_free(&p->server);
    side_free(&p->client);
    tb_tls_ctx_free(sctx);
    tb_tls_ctx_free(cctx);
    event_base_loop(base, EVLOOP_NONBLOCK); /* deferred link callbacks, see tb_client_free */
    event_base_free(base);
}

/* A client whose certificate comes from another CA is refused at the
 * handshake: the server never reports it open, the client sees on_close. */
START_TEST(test_foreign_client_refused) {
    pair p = {0};
    tb_tls_listener_stats st;
    attempt(&pki.ca, &pki.server, &pki.other_ca, &pki.foreign, "replica-0", &p, &st);
    ck_assert_int_eq(p.server.opens, 0);
    ck_assert_int_ge(p.client.closes, 1);
    ck_assert_uint_ge(st.handshake_failed, 1);
}
END_TEST

/* A server whose certificate comes from another CA is refused by the client:
 * no on_open on either side. */
START_TEST(test_foreign_server_refused) {
    pair p = {0};
    tb_tls_listener_stats st;
    attempt(&pki.other_ca, &pki.foreign_srv, &pki.ca, &pki.client, "replica-0", &p, &st);
    ck_assert_int_eq(p.server.opens, 0);
    ck_assert_int_eq(p.client.opens, 0);
    ck_assert_int_ge(p.client.closes, 1);
    ck_assert_ptr_nonnull(strstr(p.client.reason, "TLS"));
}
END_TEST

/* A genuine cluster member that is not the replica we dialled is dropped
 * before on_open. */
START_TEST(test_unexpected_peer_name_refused) {
    pair p = {0};
    tb_tls_listener_stats st;
    attempt(&pki.ca, &pki.server, &pki.ca, &pki.client, "replica-2", &p, &st);
    ck_assert_int_eq(p.client.opens, 0);
    ck_assert_ptr_nonnull(strstr(p.client.reason, "expected \"replica-2\""));
}
END_TEST

static void pin(tb_tls_ctx *ctx, const char *name, const identity *id) {
    uint8_t pub[PROTO_PUBKEY_BYTES];
    ck_assert_int_eq(proto_pki_pubkey(id->cert, pub), 0);
    ck_assert_int_eq(tb_tls_ctx_pin(ctx, name, pub), 0);
}

/* The server's log: an accepted link refused before it opened is reported
 * there, not to on_close. */
static char server_log[4096];

static void capture_log(const char *line, void *arg) {
    (void)arg;
    size_t used = strlen(server_log);
    snprintf(server_log + used, sizeof server_log - used, "%s\n", line);
}

static void pin_members(tb_tls_ctx *server, tb_tls_ctx *client) {
    server_log[0] = '\0';
    tb_tls_ctx_set_log(server, capture_log, NULL);
    ck_assert_int_eq(tb_tls_ctx_reserve_prefix(server, "replica-"), 0);
    pin(server, "replica-0", &pki.server);
    pin(server, "replica-1", &pki.client);
    pin(client, "replica-0", &pki.server);
}

static void pin_server_only(tb_tls_ctx *server, tb_tls_ctx *client) {
    (void)client;
    server_log[0] = '\0';
    tb_tls_ctx_set_log(server, capture_log, NULL);
    ck_assert_int_eq(tb_tls_ctx_reserve_prefix(server, "replica-"), 0);
    pin(server, "replica-0", &pki.server);
}

/* A certificate the cluster CA issued with a member's name but another key
 * (a second certificate for "replica-1") makes nobody a member: the server
 * that pinned replica-1's key refuses it. */
START_TEST(test_impostor_client_refused) {
    pair p = {0};
    tb_tls_listener_stats st;
    attempt_setup = pin_members;
    attempt(&pki.ca, &pki.server, &pki.ca, &pki.impostor, "replica-0", &p, &st);
    ck_assert_int_eq(p.server.opens, 0);
    ck_assert_ptr_nonnull(strstr(server_log, "not the one the cluster file names"));
}
END_TEST

/* ... and a client refuses a server that has a member's name but not its key. */
START_TEST(test_impostor_server_refused) {
    pair p = {0};
    tb_tls_listener_stats st;
    attempt_setup = pin_members;
    attempt(&pki.ca, &pki.impostor_srv, &pki.ca, &pki.client, "replica-0", &p, &st);
    ck_assert_int_eq(p.client.opens, 0);
    ck_assert_ptr_nonnull(strstr(p.client.reason, "not the one the cluster file names"));
}
END_TEST

/* A name with the members' prefix that names no member is refused. */
START_TEST(test_reserved_prefix_refused) {
    pair p = {0};
    tb_tls_listener_stats st;
    attempt_setup = pin_server_only;
    attempt(&pki.ca, &pki.server, &pki.ca, &pki.client, "replica-0", &p, &st);
    ck_assert_int_eq(p.server.opens, 0);
    ck_assert_ptr_nonnull(strstr(server_log, "reserved for cluster members"));
}
END_TEST

/* Connections that never start TLS (a half-open flood) from one address
 * take at most TB_HANDSHAKES_PER_SOURCE_MAX handshake slots; the rest wait,
 * unread, and each starts its handshake when one of the address's ends. A
 * reserved address (a member's) is exempt. */
typedef struct flood {
    tb_tls_listener *l;
    uint64_t want;
    uint64_t want_promoted;
} flood;

static bool flood_seen(void *arg) {
    const flood *f = arg;
    tb_tls_listener_stats st = tb_tls_listener_get_stats(f->l);
    return st.accepted + st.queued - st.promoted >= f->want && st.promoted >= f->want_promoted;
}

/* n TCP connections to the listener from 127.0.0.1 that never start TLS,
 * made one after the other (so accepted in that order). */
static void connect_raw(const tb_tls_listener *l, int *fds, int n) {
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(tb_tls_listener_port(l))};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        ck_assert_int_ge(fds[i], 0);
        ck_assert_int_eq(connect(fds[i], (struct sockaddr *)&to, sizeof to), 0);
    }
}

static void half_open_flood(bool reserve, tb_tls_listener_stats *out,
                            tb_tls_listener_stats *after_close) {
    struct event_base *base = event_base_new();
    tb_tls_ctx *sctx = ctx_for(&pki.ca, &pki.server);
    side srv = {0};
    tb_tls_callbacks scb = callbacks(&srv);
    tb_tls_listener *l = NULL;
    ck_assert_int_eq(tb_tls_listen(base, sctx, "127.0.0.1", 0, &scb, &l), 0);
    if (reserve) {
        ck_assert_int_eq(tb_tls_listener_reserve(l, "127.0.0.1"), 0);
    }
    ck_assert_int_eq(tb_tls_listener_reserve(l, "not-an-address"), TB_ERR_INVALID);
    enum { CONNS = TB_HANDSHAKES_PER_SOURCE_MAX + 8 };
    int fds[CONNS];
    connect_raw(l, fds, CONNS);
    flood f = {l, CONNS, 0};
    ck_assert(run_until(base, flood_seen, &f, LONG_WAIT_MS));
    *out = tb_tls_listener_get_stats(l);
    /* The first connections give up: as many waiting ones get their slots. */
    for (int i = 0; i < CONNS - TB_HANDSHAKES_PER_SOURCE_MAX; i++) {
        close(fds[i]);
        fds[i] = -1;
    }
    f.want_promoted = out->queued;
    ck_assert(run_until(base, flood_seen, &f, LONG_WAIT_MS));
    *after_close = tb_tls_listener_get_stats(l);
    for (int i = 0; i < CONNS; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    tb_tls_listener_free(l);
    side_free(&srv);
    tb_tls_ctx_free(sctx);
    event_base_loop(base, EVLOOP_NONBLOCK);
    event_base_free(base);
}

START_TEST(test_half_open_flood_bounded_per_source) {
    tb_tls_listener_stats st, later;
    half_open_flood(false, &st, &later);
    ck_assert_uint_eq(st.accepted, TB_HANDSHAKES_PER_SOURCE_MAX);
    ck_assert_uint_eq(st.queued, 8);
    ck_assert_uint_eq(st.waiting, 8);
    ck_assert_uint_eq(st.refused_source, 0);
    ck_assert_uint_eq(later.promoted, 8);
    ck_assert_uint_eq(later.waiting, 0);
    ck_assert_uint_eq(later.accepted, TB_HANDSHAKES_PER_SOURCE_MAX + 8);
    half_open_flood(true, &st, &later);
    ck_assert_uint_eq(st.accepted, TB_HANDSHAKES_PER_SOURCE_MAX + 8);
    ck_assert_uint_eq(st.queued, 0);
}
END_TEST

/* The waiting room is sized from the descriptor limit; when it is full the
 * oldest waiting connection is closed to make room for the newest, and the
 * others keep waiting. */
START_TEST(test_full_waiting_room_closes_the_oldest) {
    enum { ROOM = 4, EXTRA = ROOM + 2, CONNS = TB_HANDSHAKES_PER_SOURCE_MAX + EXTRA };
    struct event_base *base = event_base_new();
    tb_tls_ctx *sctx = ctx_for(&pki.ca, &pki.server);
    side srv = {0};
    tb_tls_callbacks scb = callbacks(&srv);
    tb_tls_listener *l = NULL;
    struct rlimit saved, small;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
    small = saved;
    small.rlim_cur = (rlim_t)TB_LISTENER_LINKS_MAX + TB_LISTENER_FDS_SPARE + ROOM;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &small), 0);
    int rc = tb_tls_listen(base, sctx, "127.0.0.1", 0, &scb, &l);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &saved), 0);
    ck_assert_int_eq(rc, 0);
    int fds[CONNS];
    connect_raw(l, fds, CONNS);
    flood f = {l, CONNS, 0};
    ck_assert(run_until(base, flood_seen, &f, LONG_WAIT_MS));
    tb_tls_listener_stats st = tb_tls_listener_get_stats(l);
    ck_assert_uint_eq(st.accepted, TB_HANDSHAKES_PER_SOURCE_MAX);
    ck_assert_uint_eq(st.queued, EXTRA);
    ck_assert_uint_eq(st.waiting, ROOM);
    ck_assert_uint_eq(st.refused_source, EXTRA - ROOM);
    /* Accepted in the order they connected: the first two that had to wait
     * were closed (end of stream), the later ones were not. */
    for (int i = TB_HANDSHAKES_PER_SOURCE_MAX; i < CONNS; i++) {
        bool evicted = i < TB_HANDSHAKES_PER_SOURCE_MAX + (EXTRA - ROOM);
        struct pollfd pfd = {.fd = fds[i], .events = POLLIN};
        char byte;
        if (evicted) {
            ck_assert_int_eq(poll(&pfd, 1, LONG_WAIT_MS), 1);
            ck_assert_int_eq(recv(fds[i], &byte, 1, MSG_DONTWAIT), 0);
        } else {
            ck_assert_int_eq(recv(fds[i], &byte, 1, MSG_DONTWAIT), -1);
        }
    }
    for (int i = 0; i < CONNS; i++) {
        close(fds[i]);
    }
    tb_tls_listener_free(l);
    side_free(&srv);
    tb_tls_ctx_free(sctx);
    event_base_loop(base, EVLOOP_NONBLOCK);
    event_base_free(base);
}
END_TEST

/* Many honest clients behind one address (a NAT) connect at once: more
 * than the address's handshake slots, so some wait, and every one of them
 * opens, in turn, instead of being refused. */
typedef struct burst {
    side *sides;
    int n;
    const side *server;
} burst;

/* TLS 1.3 clients finish their handshake a flight before the server. */
static bool burst_open(void *arg) {
    const burst *b = arg;
    if (b->server->opens < b->n) {
        return false;
    }
    for (int i = 0; i < b->n; i++) {
        if (b->sides[i].opens == 0) {
            return false;
        }
    }
    return true;
}

START_TEST(test_burst_from_one_address_waits_its_turn) {
    enum { CLIENTS = 2 * TB_HANDSHAKES_PER_SOURCE_MAX + 4 };
    struct event_base *base = event_base_new();
    tb_tls_ctx *sctx = ctx_for(&pki.ca, &pki.server);
    tb_tls_ctx *cctx = ctx_for(&pki.ca, &pki.client);
    side srv = {0};
    side *cl = calloc(CLIENTS, sizeof *cl);
    tb_tls_link *links[CLIENTS];
    tb_tls_callbacks scb = callbacks(&srv);
    tb_tls_listener *l = NULL;
    ck_assert_ptr_nonnull(cl);
    ck_assert_int_eq(tb_tls_listen(base, sctx, "127.0.0.1", 0, &scb, &l), 0);
    for (int i = 0; i < CLIENTS; i++) {
        tb_tls_callbacks ccb = callbacks(&cl[i]);
        ck_assert_int_eq(tb_tls_connect(base, cctx, "127.0.0.1", tb_tls_listener_port(l),
                                        "replica-0", &ccb, &links[i]),
                         0);
    }
    burst b = {cl, CLIENTS, &srv};
    ck_assert(run_until(base, burst_open, &b, LONG_WAIT_MS));
    tb_tls_listener_stats st = tb_tls_listener_get_stats(l);
    /* On a busy machine a client may give up on its wait (its own
     * handshake timeout) and connect again: at least, not exactly. */
    ck_assert_int_ge(srv.opens, CLIENTS);
    ck_assert_uint_ge(st.accepted, CLIENTS);
    ck_assert_uint_gt(st.queued, 0);
    ck_assert_uint_eq(st.refused_source + st.refused_full + st.waited_out, 0);
    for (int i = 0; i < CLIENTS; i++) {
        tb_tls_link_free(links[i]);
        side_free(&cl[i]);
    }
    free(cl);
    tb_tls_listener_free(l);
    side_free(&srv);
    tb_tls_ctx_free(sctx);
    tb_tls_ctx_free(cctx);
    event_base_loop(base, EVLOOP_NONBLOCK);
    event_base_free(base);
}
END_TEST

/* Fed byte by byte, the reader rebuilds frames exactly; a header announcing
 * more than its maximum (or zero) fails on its fourth byte with nothing
 * allocated, and the reader refuses input after that. */
START_TEST(test_frame_reader_limits) {
    tb_frame_reader r;
    const uint8_t stream[] = {0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 1, 'z'};
    const uint8_t *frame = NULL;
    size_t frame_len = 0;
    size_t used = 0;
    int frames = 0;
    tb_frame_reader_init(&r, 100);
    for (size_t i = 0; i < sizeof stream; i++) {
        ck_assert_int_eq(tb_frame_reader_feed(&r, stream + i, 1, &used, &frame, &frame_len), 0);
        ck_assert_uint_eq(used, 1);
        if (frame != NULL) {
            frames++;
            ck_assert_uint_eq(frame_len, frames == 1 ? 3 : 1);
            ck_assert_mem_eq(frame, frames == 1 ? "abc" : "z", frame_len);
        }
    }
    ck_assert_int_eq(frames, 2);
    /* Two frames in one call: the first call stops at the end of the first. */
    ck_assert_int_eq(tb_frame_reader_feed(&r, stream, sizeof stream, &used, &frame, &frame_len), 0);
    ck_assert_uint_eq(used, 7);
    ck_assert_mem_eq(frame, "abc", 3);
    tb_frame_reader_reset(&r);

    const uint8_t huge[] = {0, 0, 0, 101, 'x'};
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(tb_frame_reader_feed(&r, huge + i, 1, &used, &frame, &frame_len), 0);
    }
    ck_assert_int_eq(tb_frame_reader_feed(&r, huge + 3, 2, &used, &frame, &frame_len),
                     TB_ERR_TOO_LARGE);
    ck_assert_uint_eq(used, 1);
    ck_assert_ptr_null(r.buf);
    ck_assert_uint_eq(r.cap, 0);
    ck_assert_int_eq(tb_frame_reader_feed(&r, huge + 4, 1, &used, &frame, &frame_len),
                     TB_ERR_STATE);
    tb_frame_reader_reset(&r);

    const uint8_t zero[] = {0, 0, 0, 0};
    ck_assert_int_eq(tb_frame_reader_feed(&r, zero, 4, &used, &frame, &frame_len), TB_ERR_INVALID);
    ck_assert_ptr_null(r.buf);
    tb_frame_reader_reset(&r);

    /* The global maximum holds even for a reader asked for more. */
    tb_frame_reader_init(&r, UINT32_MAX);
    const uint8_t over[] = {0x04, 0, 0, 1}; /* 64 MiB + 1 */
    ck_assert_int_eq(tb_frame_reader_feed(&r, over, 4, &used, &frame, &frame_len),
                     TB_ERR_TOO_LARGE);
    ck_assert_ptr_null(r.buf);
    tb_frame_reader_reset(&r);
}
END_TEST

static bool client_closed(void *arg) {
    return ((side *)arg)->closes >= 1;
}

/* With the listener gone and back on the same port, the connecting side
 * reconnects by itself and delivers a new frame. */
START_TEST(test_reconnects_after_listener_restart) {
    struct event_base *base = event_base_new();
    tb_tls_ctx *sctx = ctx_for(&pki.ca, &pki.server);
    tb_tls_ctx *cctx = ctx_for(&pki.ca, &pki.client);
    tb_tls_listener *l = NULL;
    tb_tls_link *c = NULL;
    pair p = {.server_opens = 1, .client_opens = 1};
    tb_tls_callbacks scb = callbacks(&p.server);
    tb_tls_callbacks ccb = callbacks(&p.client);
    ck_assert_int_eq(tb_tls_listen(base, sctx, "127.0.0.1", 0, &scb, &l), 0);
    uint16_t port = tb_tls_listener_port(l);
    ck_assert_int_eq(tb_tls_connect(base, cctx, "127.0.0.1", port, "replica-0", &ccb, &c), 0);
    ck_assert(run_until(base, pair_reached, &p, WAIT_MS));

    tb_tls_listener_free(l);
    ck_assert(run_until(base, client_closed, &p.client, WAIT_MS));
    ck_assert(!tb_tls_link_is_open(c));
    /* Let a few attempts fail against the closed port (100, 200 ms ...). */
    run_until(base, NULL, NULL, 350);
    ck_assert_uint_ge(tb_tls_link_get_stats(c).attempts_failed, 1);
    ck_assert_int_eq(tb_tls_listen(base, sctx, "127.0.0.1", port, &scb, &l), 0);
    p.server_opens = 2;
    p.client_opens = 2;
    ck_assert(run_until(base, pair_reached, &p, WAIT_MS));
    ck_assert_int_eq(tb_tls_send(c, (const uint8_t *)"again", 5), 0);
    p.server_frames = 1;
    ck_assert(run_until(base, pair_reached, &p, WAIT_MS));
    ck_assert_mem_eq(p.server.last, "again", 5);
    ck_assert_uint_eq(tb_tls_link_get_stats(c).connects, 2);

    tb_tls_link_free(c);
    tb_tls_listener_free(l);
    side_free(&p.server);
    side_free(&p.client);
    tb_tls_ctx_free(sctx);
    tb_tls_ctx_free(cctx);
    event_base_loop(base, EVLOOP_NONBLOCK); /* deferred link callbacks, see tb_client_free */
    event_base_free(base);
}
END_TEST

/* Output is bounded: sends past TB_LINK_OUTPUT_BYTES_MAX return TB_ERR_AGAIN
 * and are counted; once the peer drains the queue, sending works again. */
START_TEST(test_output_is_bounded) {
    struct event_base *base = event_base_new();
    tb_tls_ctx *sctx = ctx_for(&pki.ca, &pki.server);
    tb_tls_ctx *cctx = ctx_for(&pki.ca, &pki.client);
    tb_tls_listener *l = NULL;
    tb_tls_link *c = NULL;
    pair p = {.server_opens = 1, .client_opens = 1};
    tb_tls_callbacks scb = callbacks(&p.server);
    tb_tls_callbacks ccb = callbacks(&p.client);
    uint8_t *big = calloc(1, BIG_BYTES);
    int accepted = 0;
    ck_assert_ptr_nonnull(big);
    ck_assert_int_eq(tb_tls_listen(base, sctx, "127.0.0.1", 0, &scb, &l), 0);
    ck_assert_int_eq(
        tb_tls_connect(base, cctx, "127.0.0.1", tb_tls_listener_port(l), "replica-0", &ccb, &c), 0);
    ck_assert(run_until(base, pair_reached, &p, WAIT_MS));
    /* Without running the loop nothing is written, so the queue only grows. */
    while (tb_tls_send(c, big, BIG_BYTES) == 0) {
        accepted++;
        ck_assert_uint_le(tb_tls_link_output_bytes(c), TB_LINK_OUTPUT_BYTES_MAX);
    }
    ck_assert_int_eq(accepted, TB_LINK_OUTPUT_BYTES_MAX / (BIG_BYTES + PROTO_FRAME_HEADER_BYTES));
    ck_assert_int_eq(tb_tls_send(c, big, BIG_BYTES), TB_ERR_AGAIN);
    ck_assert_uint_eq(tb_tls_link_get_stats(c).frames_dropped_full, 2);
    p.server_frames = accepted;
    ck_assert(run_until(base, pair_reached, &p, 3 * WAIT_MS));
    ck_assert_uint_eq(p.server.bytes, (size_t)accepted * BIG_BYTES);
    ck_assert_int_eq(tb_tls_send(c, big, BIG_BYTES), 0);

    tb_tls_link_free(c);
    tb_tls_listener_free(l);
    free(big);
    side_free(&p.server);
    side_free(&p.client);
    tb_tls_ctx_free(sctx);
    tb_tls_ctx_free(cctx);
    event_base_loop(base, EVLOOP_NONBLOCK); /* deferred link callbacks, see tb_client_free */
    event_base_free(base);
}
END_TEST

static void free_on_frame(tb_tls_link *link, const char *peer_name, const uint8_t *data, size_t len,
                          void *arg) {
    on_frame(link, peer_name, data, len, arg);
    tb_tls_link_free(link);
    /* Freed links refuse sends until the callback returns and they go. */
    ck_assert_int_eq(tb_tls_send(link, data, len), TB_ERR_STATE);
}

/* A callback may free its own link, even with more frames already read
 * behind the current one: no further callback fires for it, and the peer
 * sees the connection end. */
START_TEST(test_callback_frees_own_link) {
    struct event_base *base = event_base_new();
    tb_tls_ctx *sctx = ctx_for(&pki.ca, &pki.server);
    tb_tls_ctx *cctx = ctx_for(&pki.ca, &pki.client);
    tb_tls_listener *l = NULL;
    tb_tls_link *c = NULL;
    pair p = {.server_opens = 1, .client_opens = 1};
    tb_tls_callbacks scb = callbacks(&p.server);
    tb_tls_callbacks ccb = callbacks(&p.client);
    scb.on_frame = free_on_frame;
    ck_assert_int_eq(tb_tls_listen(base, sctx, "127.0.0.1", 0, &scb, &l), 0);
    ck_assert_int_eq(
        tb_tls_connect(base, cctx, "127.0.0.1", tb_tls_listener_port(l), "replica-0", &ccb, &c), 0);
    ck_assert(run_until(base, pair_reached, &p, WAIT_MS));
    ck_assert_int_eq(tb_tls_send(c, (const uint8_t *)"one", 3), 0);
    ck_assert_int_eq(tb_tls_send(c, (const uint8_t *)"two", 3), 0);
    p.client_closes = 1;
    ck_assert(run_until(base, pair_reached, &p, WAIT_MS));
    ck_assert_int_eq(p.server.frames, 1);
    ck_assert_int_eq(p.server.closes, 0);

    tb_tls_link_free(c);
    tb_tls_listener_free(l);
    ck_assert_int_eq(p.server.closes, 0); /* already gone: not reported again */
    side_free(&p.server);
    side_free(&p.client);
    tb_tls_ctx_free(sctx);
    tb_tls_ctx_free(cctx);
    event_base_loop(base, EVLOOP_NONBLOCK); /* deferred link callbacks, see tb_client_free */
    event_base_free(base);
}
END_TEST

/* ---- a connected pair for the edge tests ---- */

typedef struct rig {
    struct event_base *base;
    tb_tls_ctx *sctx, *cctx;
    tb_tls_listener *l;
    tb_tls_link *c;
    pair p;
} rig;

/* Listener (replica-0) and a connecting link (replica-1), both open. */
static void rig_open(rig *r, void (*server_open)(tb_tls_link *, const char *, void *)) {
    memset(r, 0, sizeof *r);
    r->base = event_base_new();
    r->sctx = ctx_for(&pki.ca, &pki.server);
    r->cctx = ctx_for(&pki.ca, &pki.client);
    r->p = (pair){.server_opens = 1, .client_opens = 1};
    tb_tls_callbacks scb = callbacks(&r->p.server);
    tb_tls_callbacks ccb = callbacks(&r->p.client);
    if (server_open != NULL) {
        scb.on_open = server_open;
    }
    ck_assert_int_eq(tb_tls_listen(r->base, r->sctx, "127.0.0.1", 0, &scb, &r->l), 0);
    ck_assert_int_eq(tb_tls_connect(r->base, r->cctx, "127.0.0.1", tb_tls_listener_port(r->l),
                                    "replica-0", &ccb, &r->c),
                     0);
    ck_assert(run_until(r->base, pair_reached, &r->p, WAIT_MS));
}

static void rig_close(rig *r) {
    tb_tls_link_free(r->c);
    tb_tls_listener_free(r->l);
    side_free(&r->p.server);
    side_free(&r->p.client);
    tb_tls_ctx_free(r->sctx);
    tb_tls_ctx_free(r->cctx);
    event_base_loop(r->base, EVLOOP_NONBLOCK); /* deferred link callbacks */
    event_base_free(r->base);
}

enum { LIMIT_BYTES = 1000 };

static void open_limited(tb_tls_link *link, const char *peer_name, void *arg) {
    on_open(link, peer_name, arg);
    tb_tls_link_set_frame_max(link, LIMIT_BYTES);
}

/* A link limited to 1,000-byte frames (as the daemon limits its clients'
 * links) takes a frame of 1,000 bytes, and closes at the header of one of
 * 1,001 bytes, before allocating it: nothing more is delivered, and the
 * close is counted. */
START_TEST(test_frame_limit_per_link) {
    rig r;
    rig_open(&r, open_limited);
    uint8_t buf[LIMIT_BYTES + 1] = {0};
    ck_assert_int_eq(tb_tls_send(r.c, buf, LIMIT_BYTES), 0);
    r.p.server_frames = 1;
    ck_assert(run_until(r.base, pair_reached, &r.p, WAIT_MS));
    ck_assert_int_eq(tb_tls_send(r.c, buf, LIMIT_BYTES + 1), 0);
    r.p.client_closes = 1;
    ck_assert(run_until(r.base, pair_reached, &r.p, WAIT_MS));
    ck_assert_int_eq(r.p.server.frames, 1);
    ck_assert_int_eq(r.p.server.closes, 1);
    ck_assert_ptr_nonnull(strstr(r.p.server.reason, "maximum 1000"));
    ck_assert_uint_eq(tb_tls_ctx_get_stats(r.sctx).closed_oversize, 1);
    ck_assert_uint_eq(tb_tls_ctx_get_stats(r.cctx).closed_oversize, 0);
    rig_close(&r);
}
END_TEST

/* ---- a raw TLS peer: writes any bytes, frames or not ---- */

/* A client with a genuine identity that writes bytes of its choosing (a
 * header and part of a frame, then nothing; a byte now and then), as an
 * attacker would: tb_tls_send only writes whole frames. */
typedef struct raw_peer {
    SSL_CTX *ssl;
    struct bufferevent *bev;
    bool connected;
    bool closed;
} raw_peer;

static void raw_event(struct bufferevent *bev, short what, void *arg) {
    raw_peer *r = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        r->connected = true;
    } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        r->closed = true;
    }
}

static void raw_read(struct bufferevent *bev, void *arg) {
    (void)arg;
    evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
}

static bool raw_connected(void *arg) {
    return ((raw_peer *)arg)->connected;
}

static bool raw_closed(void *arg) {
    return ((raw_peer *)arg)->closed;
}

static void raw_open(raw_peer *r, struct event_base *base, uint16_t port, const identity *id) {
    memset(r, 0, sizeof *r);
    r->ssl = SSL_CTX_new(TLS_method());
    ck_assert_ptr_nonnull(r->ssl);
    ck_assert_int_eq(SSL_CTX_set_min_proto_version(r->ssl, TLS1_3_VERSION), 1);
    ck_assert_int_eq(X509_STORE_add_cert(SSL_CTX_get_cert_store(r->ssl), pki.ca.cert), 1);
    ck_assert_int_eq(SSL_CTX_use_certificate(r->ssl, id->cert), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey(r->ssl, id->key), 1);
    SSL_CTX_set_verify(r->ssl, SSL_VERIFY_PEER, NULL);
    SSL *ssl = SSL_new(r->ssl);
    ck_assert_ptr_nonnull(ssl);
    r->bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    ck_assert_ptr_nonnull(r->bev);
    bufferevent_openssl_set_allow_dirty_shutdown(r->bev, 1);
    bufferevent_setcb(r->bev, raw_read, NULL, raw_event, r);
    bufferevent_enable(r->bev, EV_READ | EV_WRITE);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bufferevent_socket_connect(r->bev, (struct sockaddr *)&to, sizeof to), 0);
    ck_assert(run_until(base, raw_connected, r, WAIT_MS));
}

static void raw_write(raw_peer *r, const void *data, size_t len) {
    ck_assert_int_eq(bufferevent_write(r->bev, data, len), 0);
}

static void raw_header(raw_peer *r, uint32_t len) {
    uint8_t hdr[PROTO_FRAME_HEADER_BYTES];
    proto_frame_header_encode(len, hdr);
    raw_write(r, hdr, sizeof hdr);
}

static void raw_free(raw_peer *r) {
    bufferevent_free(r->bev);
    SSL_CTX_free(r->ssl);
}

/* ---- deadlines of frames under way ---- */

enum { DEADLINE_MS = 300, GENEROUS_MS = 1500 };

static uint32_t deadline_ms;

static void open_deadline(tb_tls_link *link, const char *peer_name, void *arg) {
    on_open(link, peer_name, arg);
    tb_tls_link_set_frame_deadline(link, deadline_ms, 0);
}

/* A server whose accepted links have a frame deadline of ms, and a raw
 * peer connected to it (open on both sides). */
static void deadline_rig(rig *r, raw_peer *peer, uint32_t ms) {
    deadline_ms = ms;
    memset(r, 0, sizeof *r);
    r->base = event_base_new();
    r->sctx = ctx_for(&pki.ca, &pki.server);
    tb_tls_callbacks scb = callbacks(&r->p.server);
    scb.on_open = open_deadline;
    ck_assert_int_eq(tb_tls_listen(r->base, r->sctx, "127.0.0.1", 0, &scb, &r->l), 0);
    raw_open(peer, r->base, tb_tls_listener_port(r->l), &pki.client);
    r->p.server_opens = 1;
    ck_assert(run_until(r->base, pair_reached, &r->p, WAIT_MS));
}

static void deadline_rig_close(rig *r, raw_peer *peer) {
    raw_free(peer);
    tb_tls_listener_free(r->l);
    side_free(&r->p.server);
    tb_tls_ctx_free(r->sctx);
    event_base_loop(r->base, EVLOOP_NONBLOCK);
    event_base_free(r->base);
}

/* A peer that sends a header and part of a frame, then nothing, would pin
 * the frame's buffer forever: the link is closed at the frame's deadline,
 * counted, and the peer sees the connection end. */
START_TEST(test_stalled_frame_closes_link) {
    rig r;
    raw_peer peer;
    deadline_rig(&r, &peer, DEADLINE_MS);
    uint8_t part[10] = {0};
    raw_header(&peer, 100);
    raw_write(&peer, part, sizeof part);
    long start = now_ms();
    ck_assert(run_until(r.base, raw_closed, &peer, WAIT_MS));
    ck_assert_int_ge(now_ms() - start, DEADLINE_MS - 50);
    ck_assert_int_eq(r.p.server.frames, 0);
    ck_assert_int_eq(r.p.server.closes, 1);
    ck_assert_ptr_nonnull(strstr(r.p.server.reason, "a frame stalled: 10 of 100 bytes"));
    ck_assert_uint_eq(tb_tls_ctx_get_stats(r.sctx).closed_idle, 1);
    deadline_rig_close(&r, &peer);
}
END_TEST

static void trickle(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    raw_write(arg, "x", 1);
}

/* Progress does not buy time: a byte every 50 ms keeps data coming, but
 * the frame is not done by its deadline, so the link is closed all the
 * same. */
START_TEST(test_trickled_frame_closes_link) {
    rig r;
    raw_peer peer;
    deadline_rig(&r, &peer, DEADLINE_MS);
    raw_header(&peer, 1000);
    struct event *ev = event_new(r.base, -1, EV_PERSIST, trickle, &peer);
    struct timeval every = {0, 50 * 1000};
    ck_assert_ptr_nonnull(ev);
    event_add(ev, &every);
    ck_assert(run_until(r.base, raw_closed, &peer, WAIT_MS));
    event_free(ev);
    ck_assert_int_eq(r.p.server.frames, 0);
    ck_assert_uint_eq(tb_tls_ctx_get_stats(r.sctx).closed_idle, 1);
    deadline_rig_close(&r, &peer);
}
END_TEST

/* Deadlines cost a correct peer nothing: a frame sent in three parts
 * within its deadline arrives, and a link quiet between frames for longer
 * than a deadline stays open and takes the next frame. */
START_TEST(test_deadline_spares_correct_peers) {
    rig r;
    raw_peer peer;
    deadline_rig(&r, &peer, GENEROUS_MS);
    raw_header(&peer, 6);
    run_until(r.base, NULL, NULL, 100);
    raw_write(&peer, "abc", 3);
    run_until(r.base, NULL, NULL, 100);
    raw_write(&peer, "def", 3);
    r.p.server_frames = 1;
    ck_assert(run_until(r.base, pair_reached, &r.p, WAIT_MS));
    ck_assert_mem_eq(r.p.server.last, "abcdef", 6);
    run_until(r.base, NULL, NULL, GENEROUS_MS + 500);
    ck_assert(!peer.closed);
    ck_assert_int_eq(r.p.server.closes, 0);
    raw_header(&peer, 2);
    raw_write(&peer, "gh", 2);
    r.p.server_frames = 2;
    ck_assert(run_until(r.base, pair_reached, &r.p, WAIT_MS));
    ck_assert_uint_eq(tb_tls_ctx_get_stats(r.sctx).closed_idle, 0);
    deadline_rig_close(&r, &peer);
}
END_TEST

/* ---- memory budgets of unfinished frames ---- */

static tb_budget *test_budget;

static void open_budgeted(tb_tls_link *link, const char *peer_name, void *arg) {
    on_open(link, peer_name, arg);
    ck_assert_int_eq(tb_tls_link_set_budget(link, test_budget), 0);
    ck_assert_int_eq(tb_tls_link_set_budget(link, test_budget), TB_ERR_STATE);
}

typedef struct budget_goal {
    size_t used;
} budget_goal;

static bool budget_reached(void *arg) {
    return tb_budget_used(test_budget) == ((budget_goal *)arg)->used;
}

/* Unfinished frames are charged to their identity from the header on: one
 * identity (however many links it opens) holds at most its share, all
 * together at most the total. A frame beyond either is refused at its
 * header and its link closed, counted; the others' links stay open, and
 * what a completed frame held is free again. */
START_TEST(test_budget_per_identity_and_total) {
    identity edge2, edge3;
    issue(&pki.ca, "edge-2", &edge2);
    issue(&pki.ca, "edge-3", &edge3);
    ck_assert_int_eq(tb_budget_new(150, 250, 8, &test_budget), 0);
    rig r;
    memset(&r, 0, sizeof r);
    r.base = event_base_new();
    r.sctx = ctx_for(&pki.ca, &pki.server);
    tb_tls_callbacks scb = callbacks(&r.p.server);
    scb.on_open = open_budgeted;
    ck_assert_int_eq(tb_tls_listen(r.base, r.sctx, "127.0.0.1", 0, &scb, &r.l), 0);
    uint16_t port = tb_tls_listener_port(r.l);
    raw_peer a, b, c, d;
    uint8_t part[90] = {0};

    raw_open(&a, r.base, port, &pki.client); /* replica-1 */
    raw_header(&a, 100);
    raw_write(&a, part, 10);
    budget_goal g = {100};
    ck_assert(run_until(r.base, budget_reached, &g, WAIT_MS));
    raw_open(&b, r.base, port, &pki.client); /* replica-1 again: 200 > 150 */
    raw_header(&b, 100);
    ck_assert(run_until(r.base, raw_closed, &b, WAIT_MS));
    ck_assert_uint_eq(tb_tls_ctx_get_stats(r.sctx).closed_budget, 1);
    ck_assert_ptr_nonnull(strstr(r.p.server.reason, "over the memory budget"));

    raw_open(&c, r.base, port, &edge2); /* 200 of 250 */
    raw_header(&c, 100);
    g.used = 200;
    ck_assert(run_until(r.base, budget_reached, &g, WAIT_MS));
    raw_open(&d, r.base, port, &edge3); /* 300 > 250 */
    raw_header(&d, 100);
    ck_assert(run_until(r.base, raw_closed, &d, WAIT_MS));
    ck_assert_uint_eq(tb_tls_ctx_get_stats(r.sctx).closed_budget, 2);
    ck_assert(!a.closed && !c.closed);

    raw_write(&a, part, 90); /* a's frame completes: its 100 bytes are free */
    r.p.server_frames = 1;
    ck_assert(run_until(r.base, pair_reached, &r.p, WAIT_MS));
    ck_assert_uint_eq(tb_budget_used(test_budget), 100);
    raw_free(&d);
    raw_open(&d, r.base, port, &edge3); /* 200 of 250 now */
    raw_header(&d, 100);
    g.used = 200;
    ck_assert(run_until(r.base, budget_reached, &g, WAIT_MS));
    ck_assert(!d.closed);
    ck_assert_uint_eq(tb_tls_ctx_get_stats(r.sctx).closed_budget, 2);

    raw_free(&a);
    raw_free(&b);
    raw_free(&c);
    raw_free(&d);
    tb_tls_listener_free(r.l); /* the accepted links leave their accounts */
    ck_assert_uint_eq(tb_budget_used(test_budget), 0);
    tb_budget_free(test_budget);
    test_budget = NULL;
    side_free(&r.p.server);
    tb_tls_ctx_free(r.sctx);
    event_base_loop(r.base, EVLOOP_NONBLOCK);
    event_base_free(r.base);
    identity_free(&edge2);
    identity_free(&edge3);
}
END_TEST

static Suite *tls_link_suite(void) {
    Suite *s = suite_create("tls_link");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, pki_setup, pki_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_pair_exchanges_frames);
    tcase_add_test(tc, test_foreign_client_refused);
    tcase_add_test(tc, test_foreign_server_refused);
    tcase_add_test(tc, test_unexpected_peer_name_refused);
    tcase_add_test(tc, test_impostor_client_refused);
    tcase_add_test(tc, test_impostor_server_refused);
    tcase_add_test(tc, test_reserved_prefix_refused);
    tcase_add_test(tc, test_half_open_flood_bounded_per_source);
    tcase_add_test(tc, test_burst_from_one_address_waits_its_turn);
    tcase_add_test(tc, test_full_waiting_room_closes_the_oldest);
    tcase_add_test(tc, test_frame_reader_limits);
    tcase_add_test(tc, test_reconnects_after_listener_restart);
    tcase_add_test(tc, test_output_is_bounded);
    tcase_add_test(tc, test_callback_frees_own_link);
    tcase_add_test(tc, test_frame_limit_per_link);
    tcase_add_test(tc, test_stalled_frame_closes_link);
    tcase_add_test(tc, test_trickled_frame_closes_link);
    tcase_add_test(tc, test_deadline_spares_correct_peers);
    tcase_add_test(tc, test_budget_per_identity_and_total);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    /* As in the daemon: a peer vanishing mid-write must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    /* As in the daemon too: a listener sizes its waiting room from the
     * descriptor limit, and the usual soft limit of 1,024 leaves it none. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    SRunner *sr = srunner_create(tls_link_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
