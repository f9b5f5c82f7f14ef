/* Mutual TLS 1.3 links: OpenSSL contexts, listeners, reconnecting outgoing
 * links and framed I/O over libevent bufferevents. */
/* TCP_KEEPIDLE and friends are Linux socket options outside POSIX. */
#define _DEFAULT_SOURCE

#include "client/link.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "proto/pki.h"
#include "proto/tb_assert.h"
#include "proto/tb_err.h"

enum {
    TB_ADDR_TEXT_BYTES = 64,
    TB_REASON_BYTES = 384,
    TB_LOG_LINE_BYTES = 640,
    TB_LISTEN_BACKLOG = 128,
};

_Static_assert(TB_LINK_OUTPUT_BYTES_MAX >= PROTO_FRAME_BYTES_MAX + PROTO_FRAME_HEADER_BYTES,
               "one largest frame must fit into an empty output buffer");
_Static_assert(TB_TLS_BACKOFF_MS_MIN > 0 && TB_TLS_BACKOFF_MS_MIN <= TB_TLS_BACKOFF_MS_MAX,
               "backoff must start positive and below its maximum");

typedef struct tb_tls_pin {
    char name[PROTO_NAME_BYTES_MAX];
    uint8_t pub[PROTO_PUBKEY_BYTES];
} tb_tls_pin;

struct tb_tls_ctx {
    SSL_CTX *ssl;
    char name[PROTO_NAME_BYTES_MAX];
    tb_tls_pin pins[TB_TLS_PINS_MAX];
    size_t n_pins;
    char reserved[TB_TLS_RESERVED_PREFIX_BYTES_MAX];
    void (*log)(const char *line, void *arg);
    void *log_arg;
    time_t log_window_s;
    uint32_t log_lines;
    uint64_t log_suppressed;
    tb_tls_ctx_stats stats;
};

/* A connecting host (the address without the port), for per-source limits. */
typedef struct tb_src {
    uint8_t family; /* AF_INET, AF_INET6, 0: none */
    uint8_t addr[16];
} tb_src;

static tb_src tb_src_of(const struct sockaddr *sa) {
    tb_src s;
    memset(&s, 0, sizeof s);
    if (sa->sa_family == AF_INET) {
        s.family = AF_INET;
        memcpy(s.addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        s.family = AF_INET6;
        memcpy(s.addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
    return s;
}

static bool tb_src_eq(const tb_src *a, const tb_src *b) {
    return a->family != 0 && a->family == b->family && memcmp(a->addr, b->addr, 16) == 0;
}

enum tb_link_state {
    TB_LINK_IDLE,      /* no connection: accepted link closing, or outgoing link in backoff */
    TB_LINK_HANDSHAKE, /* TCP connect and TLS handshake under way */
    TB_LINK_OPEN,
};

struct tb_tls_link {
    tb_tls_ctx *ctx;
    struct event_base *base;
    tb_tls_callbacks cb;
    struct bufferevent *bev; /* NULL while idle */
    struct event
        *timer; /* handshake deadline; when open, the frame's; when idle, the next attempt */
    tb_frame_reader reader;
    /* The frame under way (tb_link_watch_frame): its deadline, counted from
     * its first byte, for the length it announced (UINT32_MAX: none yet). */
    bool in_frame;
    uint64_t frame_start_ms;
    uint32_t frame_timed_len;
    uint32_t frame_ms_min;
    uint32_t frame_bytes_per_s_min;
    enum tb_link_state state;
    bool outgoing;
    struct sockaddr_storage addr; /* outgoing: where to connect */
    int addr_len;
    char where[TB_ADDR_TEXT_BYTES];
    char expected[PROTO_NAME_BYTES_MAX];
    char peer[PROTO_NAME_BYTES_MAX];
    uint8_t peer_key[PROTO_PUBKEY_BYTES]; /* its certificate's Ed25519 key, once open */
    tb_src src;                           /* accepted links: the connecting address */
    uint32_t backoff_ms;
    /* Callbacks may free the link; it is only marked then, and freed when the
     * outermost callback returns, so no frame loop touches freed memory. */
    int depth;
    bool free_pending;
    tb_tls_listener *listener; /* accepted links: the owner, until it is freed */
    tb_tls_link *prev;
    tb_tls_link *next;
    tb_tls_link_stats stats;
};

/* A connection waiting for a handshake slot of its address (see
 * TB_HANDSHAKES_PER_SOURCE_MAX): accepted, not polled, not read. */
typedef struct tb_waiter {
    evutil_socket_t fd; /* -1: promoted (a hole in the ring until the head passes it) */
    tb_src src;
    uint64_t deadline_ms;
} tb_waiter;

struct tb_tls_listener {
    tb_tls_ctx *ctx;
    /* Waiting connections in arrival order, so deadlines ascend from the
     * head; wait_span counts the slots from the head, holes included, and
     * wait_timer is pending whenever it is not 0. */
    tb_waiter *waiting;
    uint32_t wait_cap;
    uint32_t wait_head;
    uint32_t wait_span;
    struct event *wait_timer;
    tb_src reserved[TB_LISTENER_RESERVED_SOURCES_MAX]; /* members' addresses */
    size_t n_reserved;
    struct event_base *base;
    tb_tls_callbacks cb;
    struct evconnlistener *evl;
    uint16_t port;
    tb_tls_link *links;
    uint32_t link_count;
    tb_tls_listener_stats stats;
};

/* ---- logging ---- */

static void tb_tls_log_stderr(const char *line, void *arg) {
    (void)arg;
    fprintf(stderr, "%s\n", line);
}

/* Peers control how often connections fail, so log lines are rate-limited
 * per context; what is cut is counted and reported in the next second. */
__attribute__((format(printf, 2, 3))) static void tb_tls_log(tb_tls_ctx *ctx, const char *fmt,
                                                             ...) {
    char line[TB_LOG_LINE_BYTES];
    struct timespec now = {0};
    va_list ap;
    if (ctx->log == NULL) {
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec != ctx->log_window_s) {
        if (ctx->log_suppressed > 0) {
            snprintf(line, sizeof line, "tls_link: %llu log lines suppressed",
                     (unsigned long long)ctx->log_suppressed);
            ctx->log(line, ctx->log_arg);
        }
        ctx->log_window_s = now.tv_sec;
        ctx->log_lines = 0;
        ctx->log_suppressed = 0;
    }
    if (ctx->log_lines >= TB_TLS_LOG_PER_SEC_MAX) {
        ctx->log_suppressed++;
        return;
    }
    ctx->log_lines++;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    ctx->log(line, ctx->log_arg);
}

/* ---- contexts ---- */

/* TLS 1.3 only, the cluster CA as the only trust anchor, a certificate
 * required from the peer on both sides. No session tickets: nothing resumes,
 * and without them every connection shows its certificate afresh. */
static int tb_tls_ctx_configure(SSL_CTX *ssl, X509 *ca_cert, X509 *cert, EVP_PKEY *key) {
    if (SSL_CTX_set_min_proto_version(ssl, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ssl, TLS1_3_VERSION) != 1) {
        return TB_ERR_CRYPTO;
    }
    if (X509_STORE_add_cert(SSL_CTX_get_cert_store(ssl), ca_cert) != 1 ||
        SSL_CTX_add_client_CA(ssl, ca_cert) != 1) {
        return TB_ERR_CRYPTO;
    }
    if (SSL_CTX_use_certificate(ssl, cert) != 1) {
        return TB_ERR_CRYPTO;
    }
    if (SSL_CTX_use_PrivateKey(ssl, key) != 1 || SSL_CTX_check_private_key(ssl) != 1) {
        return TB_ERR_INVALID;
    }
    SSL_CTX_set_verify(ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    if (SSL_CTX_set_num_tickets(ssl, 0) != 1) {
        return TB_ERR_CRYPTO;
    }
    SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_OFF);
    /* OpenSSL 3 reports a TCP close without close_notify as an error, which
     * libevent 2.1.12's dirty-shutdown handling does not recognise. Treat it
     * as end of stream: frames are length-prefixed, so truncation shows as a
     * partial frame that is never delivered. */
    SSL_CTX_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    return 0;
}

int tb_tls_ctx_new(X509 *ca_cert, X509 *cert, EVP_PKEY *key, tb_tls_ctx **out) {
    tb_tls_ctx *ctx = NULL;
    int rc = 0;
    *out = NULL;
    if (ca_cert == NULL || cert == NULL || key == NULL || proto_pki_verify(ca_cert, cert) != 0) {
        return TB_ERR_INVALID;
    }
    ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) {
        return TB_ERR_NOMEM;
    }
    rc = proto_pki_name(cert, ctx->name);
    if (rc < 0) {
        goto fail;
    }
    ctx->ssl = SSL_CTX_new(TLS_method());
    if (ctx->ssl == NULL) {
        rc = TB_ERR_CRYPTO;
        goto fail;
    }
    rc = tb_tls_ctx_configure(ctx->ssl, ca_cert, cert, key);
    if (rc < 0) {
        goto fail;
    }
    ctx->log = tb_tls_log_stderr;
    *out = ctx;
    return 0;
fail:
    ERR_clear_error();
    tb_tls_ctx_free(ctx);
    return rc;
}

int tb_tls_ctx_load(const char *ca_path, const char *cert_path, const char *key_path,
                    tb_tls_ctx **out) {
    X509 *ca = NULL;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    int rc = 0;
    *out = NULL;
    rc = proto_pki_load_cert(ca_path, &ca);
    if (rc < 0) {
        goto done;
    }
    rc = proto_pki_load_cert(cert_path, &cert);
    if (rc < 0) {
        goto done;
    }
    rc = proto_pki_load_key(key_path, &key);
    if (rc < 0) {
        goto done;
    }
    rc = tb_tls_ctx_new(ca, cert, key, out);
done:
    X509_free(ca);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

void tb_tls_ctx_free(tb_tls_ctx *ctx) {
    if (ctx == NULL) {
        return;
    }
    SSL_CTX_free(ctx->ssl);
    free(ctx);
}

const char *tb_tls_ctx_name(const tb_tls_ctx *ctx) {
    return ctx->name;
}

int tb_tls_ctx_pin(tb_tls_ctx *ctx, const char *name, const uint8_t pub[PROTO_PUBKEY_BYTES]) {
    if (name == NULL || name[0] == '\0' || strlen(name) >= PROTO_NAME_BYTES_MAX) {
        return TB_ERR_INVALID;
    }
    tb_tls_pin *p = NULL;
    for (size_t i = 0; i < ctx->n_pins && p == NULL; i++) {
        p = strcmp(ctx->pins[i].name, name) == 0 ? &ctx->pins[i] : NULL;
    }
    if (p == NULL) {
        if (ctx->n_pins == TB_TLS_PINS_MAX) {
            return TB_ERR_TOO_LARGE;
        }
        p = &ctx->pins[ctx->n_pins++];
        snprintf(p->name, sizeof p->name, "%s", name);
    }
    memcpy(p->pub, pub, PROTO_PUBKEY_BYTES);
    return 0;
}

int tb_tls_ctx_reserve_prefix(tb_tls_ctx *ctx, const char *prefix) {
    if (prefix == NULL || strlen(prefix) >= sizeof ctx->reserved) {
        return TB_ERR_INVALID;
    }
    snprintf(ctx->reserved, sizeof ctx->reserved, "%s", prefix);
    return 0;
}

/* NULL when the peer's name and key agree with the pins, else why not. */
static const char *tb_pin_problem(const tb_tls_ctx *ctx, const char *name, X509 *cert) {
    for (size_t i = 0; i < ctx->n_pins; i++) {
        if (strcmp(ctx->pins[i].name, name) != 0) {
            continue;
        }
        uint8_t pub[PROTO_PUBKEY_BYTES];
        if (proto_pki_pubkey(cert, pub) != 0 ||
            CRYPTO_memcmp(pub, ctx->pins[i].pub, sizeof pub) != 0) {
            return "its certificate's key is not the one the cluster file names for it";
        }
        return NULL;
    }
    if (ctx->reserved[0] != '\0' && strncmp(name, ctx->reserved, strlen(ctx->reserved)) == 0) {
        return "the name is reserved for cluster members and names none";
    }
    return NULL;
}

void tb_tls_ctx_set_log(tb_tls_ctx *ctx, void (*log)(const char *line, void *arg), void *arg) {
    ctx->log = log;
    ctx->log_arg = arg;
}

tb_tls_ctx_stats tb_tls_ctx_get_stats(const tb_tls_ctx *ctx) {
    return ctx->stats;
}

/* ---- addresses ---- */

static int tb_addr_parse(const char *host, uint16_t port, struct sockaddr_storage *ss, int *len) {
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof *ss);
    if (host == NULL) {
        return TB_ERR_INVALID;
    }
    if (evutil_inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        *len = (int)sizeof *in4;
        return 0;
    }
    if (evutil_inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        *len = (int)sizeof *in6;
        return 0;
    }
    return TB_ERR_INVALID;
}

static void tb_addr_text(const struct sockaddr *sa, char *out, size_t n) {
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        evutil_inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof ip);
        port = ntohs(in4->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        evutil_inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        port = ntohs(in6->sin6_port);
    }
    snprintf(out, n, "%s:%u", ip, port);
}

/* Frames are small and latency matters more than packet count. Keepalive
 * probes find a peer that vanished without a FIN (a device behind NAT, a
 * host that lost power) on an otherwise idle link, so its connection is
 * closed instead of pinning a slot forever. */
static void tb_socket_options(evutil_socket_t fd) {
    int one = 1;
    if (fd < 0) {
        return;
    }
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
#ifdef TCP_KEEPIDLE
    int idle = TB_TCP_KEEPIDLE_S, intvl = TB_TCP_KEEPINTVL_S, cnt = TB_TCP_KEEPCNT;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
#endif
}

static struct timeval tb_ms_to_tv(uint32_t ms) {
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/* ---- links: lifetime ---- */

static void tb_link_timer_cb(evutil_socket_t fd, short what, void *arg);
static void tb_link_read_cb(struct bufferevent *bev, void *arg);
static void tb_link_event_cb(struct bufferevent *bev, short what, void *arg);

static tb_tls_link *tb_link_alloc(struct event_base *base, tb_tls_ctx *ctx,
                                  const tb_tls_callbacks *cb) {
    tb_tls_link *link = calloc(1, sizeof *link);
    if (link == NULL) {
        return NULL;
    }
    link->timer = evtimer_new(base, tb_link_timer_cb, link);
    if (link->timer == NULL) {
        free(link);
        return NULL;
    }
    link->ctx = ctx;
    link->base = base;
    if (cb != NULL) {
        link->cb = *cb;
    }
    link->backoff_ms = TB_TLS_BACKOFF_MS_MIN;
    link->frame_ms_min = TB_LINK_FRAME_MS_MIN;
    link->frame_bytes_per_s_min = TB_LINK_FRAME_BYTES_PER_S_MIN;
    tb_frame_reader_init(&link->reader, PROTO_FRAME_BYTES_MAX);
    return link;
}

/* Drops the connection, if any: queued output is discarded. */
static void tb_link_disconnect(tb_tls_link *link) {
    if (link->bev != NULL) {
        bufferevent_free(link->bev);
        link->bev = NULL;
    }
    evtimer_del(link->timer);
    tb_frame_reader_reset(&link->reader);
    if (link->reader.account != NULL) {
        tb_budget_leave(link->reader.account);
        link->reader.account = NULL;
    }
    link->in_frame = false;
    link->peer[0] = '\0';
    link->state = TB_LINK_IDLE;
}

static void tb_listener_promote(tb_tls_listener *l, const tb_src *src);

static void tb_link_unlist(tb_tls_link *link) {
    tb_tls_listener *l = link->listener;
    if (l == NULL) {
        return;
    }
    if (link->prev != NULL) {
        link->prev->next = link->next;
    } else {
        l->links = link->next;
    }
    if (link->next != NULL) {
        link->next->prev = link->prev;
    }
    TB_ASSERT(l->link_count > 0);
    l->link_count--;
    link->listener = NULL;
    link->prev = NULL;
    link->next = NULL;
}

static void tb_link_destroy(tb_tls_link *link) {
    TB_ASSERT(link->depth == 0);
    tb_link_disconnect(link);
    tb_link_unlist(link);
    event_free(link->timer);
    free(link);
}

/* Frees now, or marks the link when one of its callbacks is running. */
static void tb_link_release(tb_tls_link *link) {
    if (link->depth > 0) {
        link->free_pending = true;
        return;
    }
    tb_link_destroy(link);
}

/* After a user callback: true when the link was released meanwhile, in which
 * case the caller must not touch it again. */
static bool tb_link_leave(tb_tls_link *link) {
    TB_ASSERT(link->depth > 0);
    link->depth--;
    if (!link->free_pending) {
        return false;
    }
    if (link->depth == 0) {
        tb_link_destroy(link);
    }
    return true;
}

static void tb_link_schedule_attempt(tb_tls_link *link, uint32_t delay_ms) {
    struct timeval tv = tb_ms_to_tv(delay_ms);
    evtimer_add(link->timer, &tv);
}

/* Ends the current connection or attempt. Outgoing links report it and wait
 * for their next attempt; accepted links report it only if the caller ever
 * saw them open, then go away. */
static void tb_link_close(tb_tls_link *link, const char *why) {
    char reason[TB_REASON_BYTES];
    bool was_open = link->state == TB_LINK_OPEN;
    /* An accepted handshake that ends frees a slot of its address. */
    tb_tls_listener *freed_in =
        !link->outgoing && link->state == TB_LINK_HANDSHAKE ? link->listener : NULL;
    tb_src freed_src = link->src;
    snprintf(reason, sizeof reason, "%s", why);
    tb_tls_log(link->ctx, "tls_link: %s%s%s%s: %s", link->where, link->peer[0] ? " (" : "",
               link->peer, link->peer[0] ? ")" : "", reason);
    if (!was_open && link->outgoing) {
        link->stats.attempts_failed++;
    } else if (!was_open && link->listener != NULL) {
        link->listener->stats.handshake_failed++;
    }
    tb_link_disconnect(link);
    if (link->outgoing) {
        tb_link_schedule_attempt(link, link->backoff_ms);
        link->backoff_ms = link->backoff_ms >= TB_TLS_BACKOFF_MS_MAX / 2 ? TB_TLS_BACKOFF_MS_MAX
                                                                         : link->backoff_ms * 2;
    }
    if ((was_open || link->outgoing) && link->cb.on_close != NULL) {
        link->depth++;
        link->cb.on_close(link, reason, link->cb.arg);
        if (tb_link_leave(link)) {
            return;
        }
    }
    if (!link->outgoing) {
        tb_link_release(link);
    }
    if (freed_in != NULL) {
        tb_listener_promote(freed_in, &freed_src);
    }
}

/* Takes over bev (created around ssl) and waits for the handshake. */
static void tb_link_start(tb_tls_link *link, struct bufferevent *bev) {
    struct timeval tv = tb_ms_to_tv(TB_TLS_HANDSHAKE_MS_MAX);
    link->bev = bev;
    link->state = TB_LINK_HANDSHAKE;
    /* Peers and networks drop TCP without a TLS close_notify; that is an
     * ordinary end of the connection here, not an error worth a TLS alert. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    bufferevent_setcb(bev, tb_link_read_cb, NULL, tb_link_event_cb, link);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    evtimer_add(link->timer, &tv);
}

static void tb_link_attempt(tb_tls_link *link) {
    char reason[TB_REASON_BYTES];
    struct bufferevent *bev = NULL;
    SSL *ssl = SSL_new(link->ctx->ssl);
    if (ssl == NULL) {
        tb_link_close(link, "cannot create a TLS session");
        return;
    }
    bev = bufferevent_openssl_socket_new(link->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                         BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (bev == NULL) {
        SSL_free(ssl);
        tb_link_close(link, "cannot create a TLS bufferevent");
        return;
    }
    tb_link_start(link, bev);
    if (bufferevent_socket_connect(bev, (struct sockaddr *)&link->addr, link->addr_len) < 0) {
        snprintf(reason, sizeof reason, "connect: %s",
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        tb_link_close(link, reason);
        return;
    }
    tb_socket_options(bufferevent_getfd(bev));
}

static void tb_link_frame_overdue(tb_tls_link *link);

static void tb_link_timer_cb(evutil_socket_t fd, short what, void *arg) {
    tb_tls_link *link = arg;
    (void)fd;
    (void)what;
    if (link->state == TB_LINK_HANDSHAKE) {
        tb_link_close(link, "TLS handshake timed out");
    } else if (link->state == TB_LINK_OPEN) {
        tb_link_frame_overdue(link);
    } else if (link->state == TB_LINK_IDLE && link->outgoing) {
        tb_link_attempt(link);
    }
}

/* ---- links: events and frames ---- */

/* The handshake verified the chain against the cluster CA; what is left is
 * who the peer is, and for outgoing links whether it is who we dialled. */
static void tb_link_opened(tb_tls_link *link) {
    char reason[TB_REASON_BYTES];
    SSL *ssl = bufferevent_openssl_get_ssl(link->bev);
    X509 *cert = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
    if (cert == NULL || SSL_get_verify_result(ssl) != X509_V_OK ||
        proto_pki_name(cert, link->peer) < 0 || proto_pki_pubkey(cert, link->peer_key) != 0) {
        link->peer[0] = '\0';
        tb_link_close(link, "peer certificate is missing, unverified or has no usable name");
        return;
    }
    if (link->outgoing && strcmp(link->peer, link->expected) != 0) {
        snprintf(reason, sizeof reason, "peer is \"%s\", expected \"%s\"", link->peer,
                 link->expected);
        tb_link_close(link, reason);
        return;
    }
    const char *pin = tb_pin_problem(link->ctx, link->peer, cert);
    if (pin != NULL) {
        snprintf(reason, sizeof reason, "peer \"%s\" refused: %s", link->peer, pin);
        tb_link_close(link, reason);
        return;
    }
    evtimer_del(link->timer);
    link->state = TB_LINK_OPEN;
    link->backoff_ms = TB_TLS_BACKOFF_MS_MIN;
    link->stats.connects++;
    if (link->listener != NULL) {
        tb_listener_promote(link->listener, &link->src);
    }
    if (link->cb.on_open != NULL) {
        link->depth++;
        link->cb.on_open(link, link->peer, link->cb.arg);
        (void)tb_link_leave(link);
    }
}

static void tb_link_error_text(struct bufferevent *bev, short what, bool opened, char *out,
                               size_t n) {
    char tls[TB_REASON_BYTES / 2];
    unsigned long err = bufferevent_get_openssl_error(bev);
    int sock_err = EVUTIL_SOCKET_ERROR();
    /* libevent queues SSL_get_error()'s code itself (library 0) for I/O
     * failures such as a refused connection; errno says more then. */
    if (err != 0 && ERR_GET_LIB(err) != 0) {
        ERR_error_string_n(err, tls, sizeof tls);
        snprintf(out, n, "TLS: %s", tls);
    } else if ((what & BEV_EVENT_EOF) && opened) {
        snprintf(out, n, "peer closed the connection");
    } else if (what & BEV_EVENT_EOF) {
        /* A refused TCP connection also ends up here in libevent 2.1. */
        snprintf(out, n, "connection refused or closed before the TLS handshake completed");
    } else if (what & BEV_EVENT_TIMEOUT) {
        snprintf(out, n, "timed out");
    } else if (sock_err != 0) {
        snprintf(out, n, "socket: %s", evutil_socket_error_to_string(sock_err));
    } else {
        snprintf(out, n, "connection failed");
    }
    while (bufferevent_get_openssl_error(bev) != 0) {
        /* Only the first error explains; the rest would leak into the next. */
    }
}

static void tb_link_event_cb(struct bufferevent *bev, short what, void *arg) {
    char reason[TB_REASON_BYTES];
    tb_tls_link *link = arg;
    TB_ASSERT(bev == link->bev);
    if (what & BEV_EVENT_CONNECTED) {
        tb_link_opened(link);
        return;
    }
    tb_link_error_text(bev, what, link->state == TB_LINK_OPEN, reason, sizeof reason);
    tb_link_close(link, reason);
}

/* A bad header is refused by the reader before it allocates; the stream
 * cannot be resynchronised after it, so the connection goes. */
static void tb_link_bad_frame(tb_tls_link *link, int rc) {
    char reason[TB_REASON_BYTES];
    const uint8_t *h = link->reader.hdr;
    uint32_t len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    const tb_budget_account *a = link->reader.account;
    if (rc == TB_ERR_BUDGET) {
        link->ctx->stats.closed_budget++;
        snprintf(reason, sizeof reason,
                 "a frame of %u bytes is over the memory budget: unfinished frames hold %zu bytes "
                 "of this identity's %zu, %zu of all identities' %zu",
                 (unsigned)len, tb_budget_account_used(a), tb_budget_identity_max(tb_budget_of(a)),
                 tb_budget_used(tb_budget_of(a)), tb_budget_total_max(tb_budget_of(a)));
        tb_link_close(link, reason);
        return;
    }
    snprintf(reason, sizeof reason, "bad frame: %s (announced length %u, maximum %u)",
             tb_strerror(rc), (unsigned)len, (unsigned)link->reader.max);
    if (rc == TB_ERR_TOO_LARGE) {
        link->ctx->stats.closed_oversize++;
    }
    tb_link_close(link, reason);
}

static uint64_t tb_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* How long a frame of len bytes may take from its first byte. */
static uint64_t tb_link_frame_ms(const tb_tls_link *link, uint32_t len) {
    uint64_t ms = link->frame_ms_min;
    if (link->frame_bytes_per_s_min > 0) {
        ms += (uint64_t)len * 1000u / link->frame_bytes_per_s_min;
    }
    return ms;
}

/* Arms the deadline of the frame under way, or disarms it when no frame
 * is. The length is known once the header is in: the deadline is then set
 * again for it, still counted from the frame's first byte (and whenever
 * rearm says so). While the link is open the timer serves nothing else. */
static void tb_link_watch_frame(tb_tls_link *link, bool rearm) {
    const tb_frame_reader *r = &link->reader;
    if (!tb_frame_reader_pending(r)) {
        evtimer_del(link->timer); /* a frame that just completed leaves no deadline behind */
        link->in_frame = false;
        return;
    }
    uint64_t now = tb_mono_ms();
    if (!link->in_frame) {
        link->in_frame = true;
        link->frame_start_ms = now;
        link->frame_timed_len = UINT32_MAX;
    }
    uint32_t len = tb_frame_reader_announced(r);
    if (len == link->frame_timed_len && !rearm) {
        return;
    }
    link->frame_timed_len = len;
    uint64_t allowed = tb_link_frame_ms(link, len), spent = now - link->frame_start_ms;
    uint64_t left = allowed > spent ? allowed - spent : 0;
    struct timeval tv = tb_ms_to_tv(left > UINT32_MAX ? UINT32_MAX : (uint32_t)left);
    evtimer_add(link->timer, &tv);
}

/* Feeds what the bufferevent has read to the frame reader and hands out
 * complete frames. false when the link was closed or released meanwhile:
 * the caller must not touch it then. */
static bool tb_link_drain(tb_tls_link *link) {
    struct evbuffer *in = bufferevent_get_input(link->bev);
    while (link->state == TB_LINK_OPEN && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        const uint8_t *frame = NULL;
        size_t frame_len = 0;
        size_t used = 0;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) {
            break;
        }
        int rc =
            tb_frame_reader_feed(&link->reader, v.iov_base, v.iov_len, &used, &frame, &frame_len);
        evbuffer_drain(in, used);
        if (rc < 0) {
            tb_link_bad_frame(link, rc);
            return false;
        }
        if (frame == NULL) {
            continue;
        }
        link->in_frame = false; /* the next frame's deadline starts afresh */
        link->stats.frames_in++;
        if (link->cb.on_frame != NULL) {
            link->depth++;
            link->cb.on_frame(link, link->peer, frame, frame_len, link->cb.arg);
            if (tb_link_leave(link)) {
                return false;
            }
        }
    }
    return link->state == TB_LINK_OPEN;
}

static void tb_link_read_cb(struct bufferevent *bev, void *arg) {
    tb_tls_link *link = arg;
    TB_ASSERT(bev == link->bev);
    if (tb_link_drain(link)) {
        tb_link_watch_frame(link, false);
    }
}

/* The frame under way has had its time. Bytes the loop has read but not
 * yet handed over count (a busy loop is not the peer's fault): they are
 * fed first, and only a frame still incomplete after that closes the
 * link. */
static void tb_link_frame_overdue(tb_tls_link *link) {
    char reason[TB_REASON_BYTES];
    if (!tb_link_drain(link)) {
        return;
    }
    uint32_t len = tb_frame_reader_announced(&link->reader);
    uint64_t spent = tb_mono_ms() - link->frame_start_ms;
    if (!tb_frame_reader_pending(&link->reader) || !link->in_frame ||
        spent < tb_link_frame_ms(link, len)) {
        tb_link_watch_frame(link, true); /* early by rounding, or a new frame */
        return;
    }
    snprintf(reason, sizeof reason,
             "a frame stalled: %u of %u bytes in %llu ms (the peer sends too slowly, or stopped)",
             (unsigned)link->reader.have, (unsigned)len, (unsigned long long)spent);
    link->ctx->stats.closed_idle++;
    tb_link_close(link, reason);
}

int tb_tls_send(tb_tls_link *link, const uint8_t *data, size_t len) {
    uint8_t hdr[PROTO_FRAME_HEADER_BYTES];
    struct evbuffer *out = NULL;
    if (len == 0 || data == NULL) {
        return TB_ERR_INVALID;
    }
    if (len > PROTO_FRAME_BYTES_MAX) {
        return TB_ERR_TOO_LARGE;
    }
    if (link->state != TB_LINK_OPEN || link->free_pending) {
        link->stats.frames_dropped_closed++;
        return TB_ERR_STATE;
    }
    out = bufferevent_get_output(link->bev);
    if (evbuffer_get_length(out) + PROTO_FRAME_HEADER_BYTES + len > TB_LINK_OUTPUT_BYTES_MAX) {
        link->stats.frames_dropped_full++;
        return TB_ERR_AGAIN;
    }
    /* Reserve first so header and payload go in together or not at all: a
     * lone header would desynchronise the stream. */
    if (evbuffer_expand(out, PROTO_FRAME_HEADER_BYTES + len) != 0) {
        return TB_ERR_NOMEM;
    }
    proto_frame_header_encode((uint32_t)len, hdr);
    int rc = evbuffer_add(out, hdr, sizeof hdr);
    rc |= evbuffer_add(out, data, len);
    TB_ASSERT(rc == 0);
    link->stats.frames_out++;
    return 0;
}

/* ---- listeners ---- */

static bool tb_listener_is_member(const tb_tls_listener *l, const tb_src *src) {
    for (size_t i = 0; i < l->n_reserved; i++) {
        if (tb_src_eq(src, &l->reserved[i])) {
            return true;
        }
    }
    return false;
}

static uint32_t tb_listener_handshaking(const tb_tls_listener *l, const tb_src *src) {
    uint32_t n = 0;
    for (const tb_tls_link *o = l->links; o != NULL; o = o->next) {
        n += o->state == TB_LINK_HANDSHAKE && tb_src_eq(&o->src, src);
    }
    return n;
}

/* The links a listener takes from an address. */
static uint32_t tb_listener_cap(const tb_tls_listener *l, bool member) {
    return member || l->n_reserved == 0 ? TB_LISTENER_LINKS_MAX
                                        : TB_LISTENER_LINKS_MAX - TB_LISTENER_RESERVED_LINKS;
}

static bool tb_listener_has_waiter(const tb_tls_listener *l, const tb_src *src) {
    for (uint32_t i = 0; l->stats.waiting > 0 && i < l->wait_span; i++) {
        const tb_waiter *w = &l->waiting[(l->wait_head + i) % l->wait_cap];
        if (w->fd >= 0 && tb_src_eq(&w->src, src)) {
            return true;
        }
    }
    return false;
}

/* Starts the TLS handshake of an accepted connection, or closes it when the
 * listener is full. The last TB_LISTENER_RESERVED_LINKS slots are for the
 * members' addresses: a flood of connections from elsewhere cannot cut the
 * replicas off from each other. */
static void tb_listener_start(tb_tls_listener *l, evutil_socket_t fd, const tb_src *src,
                              bool member, const char *where) {
    tb_tls_link *link = NULL;
    struct bufferevent *bev = NULL;
    SSL *ssl = NULL;
    if (l->link_count >= tb_listener_cap(l, member)) {
        l->stats.refused_full++;
        tb_tls_log(l->ctx, "tls_link: %s: refused, %u connections already (maximum)", where,
                   (unsigned)l->link_count);
        goto fail;
    }
    link = tb_link_alloc(l->base, l->ctx, &l->cb);
    ssl = SSL_new(l->ctx->ssl);
    if (link == NULL || ssl == NULL) {
        goto fail;
    }
    bev = bufferevent_openssl_socket_new(l->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (bev == NULL) {
        goto fail;
    }
    snprintf(link->where, sizeof link->where, "%s", where);
    link->src = *src;
    link->listener = l;
    link->next = l->links;
    if (l->links != NULL) {
        l->links->prev = link;
    }
    l->links = link;
    l->link_count++;
    l->stats.accepted++;
    tb_socket_options(fd);
    tb_link_start(link, bev);
    return;
fail:
    SSL_free(ssl);
    if (link != NULL) {
        tb_link_destroy(link);
    }
    evutil_closesocket(fd);
}

static void tb_listener_arm_wait(tb_tls_listener *l) {
    uint64_t now = tb_mono_ms();
    uint64_t at = l->waiting[l->wait_head].deadline_ms;
    struct timeval tv = tb_ms_to_tv(at > now ? (uint32_t)(at - now) : 0);
    evtimer_add(l->wait_timer, &tv);
}

/* Drops the holes at the head of the ring. */
static void tb_listener_trim(tb_tls_listener *l) {
    while (l->wait_span > 0 && l->waiting[l->wait_head].fd < 0) {
        l->wait_head = (l->wait_head + 1) % l->wait_cap;
        l->wait_span--;
    }
}

/* Closes the waiter at the head of the ring and counts it in *counter. */
static void tb_listener_close_head(tb_tls_listener *l, uint64_t *counter) {
    tb_waiter *w = &l->waiting[l->wait_head];
    evutil_closesocket(w->fd);
    w->fd = -1;
    l->stats.waiting--;
    (*counter)++;
    tb_listener_trim(l);
}

static void tb_listener_wait(tb_tls_listener *l, evutil_socket_t fd, const tb_src *src,
                             const char *where) {
    tb_listener_trim(l);
    if (l->wait_span == l->wait_cap && l->stats.waiting < l->wait_cap) {
        /* Holes left by promotions: close them up, in order. */
        uint32_t kept = 0;
        for (uint32_t i = 0; i < l->wait_span; i++) {
            tb_waiter w = l->waiting[(l->wait_head + i) % l->wait_cap];
            if (w.fd >= 0) {
                l->waiting[(l->wait_head + kept++) % l->wait_cap] = w;
            }
        }
        l->wait_span = kept;
    }
    if (l->wait_span == l->wait_cap) {
        /* Full: the oldest goes (after a trim the head is not a hole). */
        tb_listener_close_head(l, &l->stats.refused_source);
        tb_tls_log(l->ctx,
                   "tls_link: %s: %u connections waiting for a handshake slot (maximum): "
                   "closed the oldest",
                   where, (unsigned)l->wait_cap);
    }
    tb_waiter *w = &l->waiting[(l->wait_head + l->wait_span) % l->wait_cap];
    w->fd = fd;
    w->src = *src;
    w->deadline_ms = tb_mono_ms() + TB_LISTENER_WAIT_MS_MAX;
    l->wait_span++;
    l->stats.waiting++;
    l->stats.queued++;
    if (l->wait_span == 1) {
        tb_listener_arm_wait(l);
    }
}

static void tb_listener_wait_timer_cb(evutil_socket_t fd, short what, void *arg) {
    tb_tls_listener *l = arg;
    uint64_t now = tb_mono_ms();
    (void)fd;
    (void)what;
    tb_listener_trim(l);
    while (l->wait_span > 0 && l->waiting[l->wait_head].deadline_ms <= now) {
        tb_listener_close_head(l, &l->stats.waited_out);
    }
    if (l->wait_span > 0) {
        tb_listener_arm_wait(l);
    }
}

/* A handshake from src ended: the oldest connection from src waiting for a
 * slot starts its own. */
static void tb_listener_promote(tb_tls_listener *l, const tb_src *src) {
    char where[TB_ADDR_TEXT_BYTES];
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    /* A full listener would refuse it: it keeps its place instead. */
    if (l->stats.waiting == 0 || l->link_count >= tb_listener_cap(l, false)) {
        return;
    }
    for (uint32_t i = 0; i < l->wait_span; i++) {
        tb_waiter *w = &l->waiting[(l->wait_head + i) % l->wait_cap];
        if (w->fd < 0 || !tb_src_eq(&w->src, src)) {
            continue;
        }
        evutil_socket_t fd = w->fd;
        w->fd = -1;
        l->stats.waiting--;
        l->stats.promoted++;
        tb_listener_trim(l);
        memset(&ss, 0, sizeof ss);
        if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
            tb_addr_text((struct sockaddr *)&ss, where, sizeof where);
        } else {
            snprintf(where, sizeof where, "(gone)");
        }
        tb_listener_start(l, fd, src, false, where);
        return;
    }
}

static void tb_listener_accept_cb(struct evconnlistener *evl, evutil_socket_t fd,
                                  struct sockaddr *sa, int sa_len, void *arg) {
    tb_tls_listener *l = arg;
    char where[TB_ADDR_TEXT_BYTES];
    (void)evl;
    (void)sa_len;
    tb_addr_text(sa, where, sizeof where);
    tb_src src = tb_src_of(sa);
    bool member = tb_listener_is_member(l, &src);
    /* Half-open connections (TCP but no TLS) from one address hold at most
     * this many handshake slots; they time out after TB_TLS_HANDSHAKE_MS_MAX. */
    if (!member) {
        bool busy = tb_listener_handshaking(l, &src) >= TB_HANDSHAKES_PER_SOURCE_MAX;
        /* Older connections from the address waiting (their promotion found
         * the listener full): this one goes behind them, the oldest starts. */
        if (busy || tb_listener_has_waiter(l, &src)) {
            tb_listener_wait(l, fd, &src, where);
            if (!busy) {
                tb_listener_promote(l, &src);
            }
            return;
        }
    }
    tb_listener_start(l, fd, &src, member, where);
}

int tb_tls_listener_reserve(tb_tls_listener *l, const char *host) {
    struct sockaddr_storage ss;
    int len = (int)sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (host == NULL || evutil_parse_sockaddr_port(host, (struct sockaddr *)&ss, &len) != 0) {
        return TB_ERR_INVALID;
    }
    if (l->n_reserved == TB_LISTENER_RESERVED_SOURCES_MAX) {
        return TB_ERR_TOO_LARGE;
    }
    tb_src src = tb_src_of((struct sockaddr *)&ss);
    for (size_t i = 0; i < l->n_reserved; i++) {
        if (tb_src_eq(&l->reserved[i], &src)) {
            return 0;
        }
    }
    l->reserved[l->n_reserved++] = src;
    return 0;
}

/* Accept errors (out of descriptors, mostly) are transient: keep listening. */
static void tb_listener_error_cb(struct evconnlistener *evl, void *arg) {
    tb_tls_listener *l = arg;
    (void)evl;
    tb_tls_log(l->ctx, "tls_link: accept on port %u: %s", (unsigned)l->port,
               evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static uint16_t tb_listener_bound_port(struct evconnlistener *evl) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (getsockname(evconnlistener_get_fd(evl), (struct sockaddr *)&ss, &len) != 0) {
        return 0;
    }
    if (ss.ss_family == AF_INET) {
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return 0;
}

/* The waiting room fits in what RLIMIT_NOFILE leaves; at least one slot,
 * so the ring arithmetic holds (a single slot is refusal in all but name). */
static uint32_t tb_listener_waiting_cap(void) {
    struct rlimit rl;
    uint64_t cap = TB_LISTENER_WAITING_MAX;
    uint64_t used = (uint64_t)TB_LISTENER_LINKS_MAX + TB_LISTENER_FDS_SPARE;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        cap = rl.rlim_cur > used ? (uint64_t)rl.rlim_cur - used : 1;
    }
    return cap < 1 ? 1 : cap > TB_LISTENER_WAITING_MAX ? TB_LISTENER_WAITING_MAX : (uint32_t)cap;
}

int tb_tls_listen(struct event_base *base, tb_tls_ctx *ctx, const char *host, uint16_t port,
                  const tb_tls_callbacks *cb, tb_tls_listener **out) {
    struct sockaddr_storage ss;
    int ss_len = 0;
    tb_tls_listener *l = NULL;
    int rc = tb_addr_parse(host, port, &ss, &ss_len);
    *out = NULL;
    if (rc < 0) {
        return rc;
    }
    l = calloc(1, sizeof *l);
    if (l == NULL) {
        return TB_ERR_NOMEM;
    }
    l->ctx = ctx;
    l->base = base;
    if (cb != NULL) {
        l->cb = *cb;
    }
    /* REUSEABLE: a restarted replica must get its port back while old
     * connections sit in TIME_WAIT. */
    l->evl =
        evconnlistener_new_bind(base, tb_listener_accept_cb, l,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
                                TB_LISTEN_BACKLOG, (struct sockaddr *)&ss, ss_len);
    if (l->evl == NULL) {
        tb_tls_log(ctx, "tls_link: cannot listen on %s port %u: %s", host, (unsigned)port,
                   evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        free(l);
        return TB_ERR_IO;
    }
    evconnlistener_set_error_cb(l->evl, tb_listener_error_cb);
    l->port = tb_listener_bound_port(l->evl);
    l->wait_cap = tb_listener_waiting_cap();
    l->waiting = calloc(l->wait_cap, sizeof *l->waiting);
    l->wait_timer = evtimer_new(base, tb_listener_wait_timer_cb, l);
    if (l->waiting == NULL || l->wait_timer == NULL) {
        tb_tls_listener_free(l);
        return TB_ERR_NOMEM;
    }
    *out = l;
    return 0;
}

uint16_t tb_tls_listener_port(const tb_tls_listener *l) {
    return l->port;
}

tb_tls_listener_stats tb_tls_listener_get_stats(const tb_tls_listener *l) {
    return l->stats;
}

void tb_tls_listener_free(tb_tls_listener *l) {
    if (l == NULL) {
        return;
    }
    if (l->evl != NULL) {
        evconnlistener_free(l->evl);
        l->evl = NULL;
    }
    /* Waiting connections go first, so closing links below promotes none. */
    for (uint32_t i = 0; i < l->wait_span; i++) {
        tb_waiter *w = &l->waiting[(l->wait_head + i) % l->wait_cap];
        if (w->fd >= 0) {
            evutil_closesocket(w->fd);
        }
    }
    l->wait_span = 0;
    l->stats.waiting = 0;
    if (l->wait_timer != NULL) {
        event_free(l->wait_timer);
    }
    free(l->waiting);
    /* Always take the head afresh: an on_close below may free other links. */
    while (l->links != NULL) {
        tb_tls_link *link = l->links;
        tb_link_unlist(link);
        tb_link_close(link, "listener closed");
    }
    free(l);
}

/* ---- outgoing links and accessors ---- */

int tb_tls_connect(struct event_base *base, tb_tls_ctx *ctx, const char *host, uint16_t port,
                   const char *expected_peer_name, const tb_tls_callbacks *cb, tb_tls_link **out) {
    tb_tls_link *link = NULL;
    struct sockaddr_storage ss;
    int ss_len = 0;
    int rc = tb_addr_parse(host, port, &ss, &ss_len);
    *out = NULL;
    if (rc < 0) {
        return rc;
    }
    if (expected_peer_name == NULL || expected_peer_name[0] == '\0' ||
        strlen(expected_peer_name) >= PROTO_NAME_BYTES_MAX) {
        return TB_ERR_INVALID;
    }
    link = tb_link_alloc(base, ctx, cb);
    if (link == NULL) {
        return TB_ERR_NOMEM;
    }
    link->outgoing = true;
    link->addr = ss;
    link->addr_len = ss_len;
    tb_addr_text((struct sockaddr *)&ss, link->where, sizeof link->where);
    snprintf(link->expected, sizeof link->expected, "%s", expected_peer_name);
    /* The first attempt runs from the loop, so callbacks never fire inside
     * this call. */
    tb_link_schedule_attempt(link, 0);
    *out = link;
    return 0;
}

bool tb_tls_link_is_open(const tb_tls_link *link) {
    return link->state == TB_LINK_OPEN && !link->free_pending;
}

const uint8_t *tb_tls_link_peer_key(const tb_tls_link *link) {
    return link->state == TB_LINK_OPEN ? link->peer_key : NULL;
}

const char *tb_tls_link_peer(const tb_tls_link *link) {
    return link->peer;
}

void tb_tls_link_set_frame_max(tb_tls_link *link, uint32_t max) {
    link->reader.max = max == 0 || max > PROTO_FRAME_BYTES_MAX ? PROTO_FRAME_BYTES_MAX : max;
}

int tb_tls_link_set_budget(tb_tls_link *link, tb_budget *budget) {
    if (budget == NULL) {
        return TB_ERR_INVALID;
    }
    if (link->state != TB_LINK_OPEN || link->reader.account != NULL) {
        return TB_ERR_STATE;
    }
    TB_ASSERT(link->reader.charged == 0);
    return tb_budget_join(budget, link->peer, &link->reader.account);
}

void tb_tls_link_set_frame_deadline(tb_tls_link *link, uint32_t ms_min, uint32_t bytes_per_s_min) {
    link->frame_ms_min = ms_min;
    link->frame_bytes_per_s_min = bytes_per_s_min;
}

size_t tb_tls_link_output_bytes(const tb_tls_link *link) {
    if (link->bev == NULL) {
        return 0;
    }
    return evbuffer_get_length(bufferevent_get_output(link->bev));
}

tb_tls_link_stats tb_tls_link_get_stats(const tb_tls_link *link) {
    return link->stats;
}

void tb_tls_link_free(tb_tls_link *link) {
    if (link == NULL) {
        return;
    }
    tb_link_release(link);
}
