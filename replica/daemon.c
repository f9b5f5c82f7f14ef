/* The replica daemon (see daemon.h): start-up, the ready loop, links. */
#include "replica/daemon.h"

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "client/link.h"
#include "consensus/pbft.h"
#include "proto/crypto.h"
#include "proto/pki.h"
#include "proto/tb_err.h"
#include "replica/config.h"
#include "replica/storage.h"

enum {
    REP_CLIENT_LINKS_MAX = 4096,        /* distinct client principals connected at once */
    REP_TICK_MS_MAX = 100,              /* the core is ticked at least this often */
    REP_MAP_BYTES = 1024 * 1024 * 1024, /* LMDB map (sparse) */
};

typedef struct client_link {
    char name[PROTO_NAME_BYTES_MAX];
    tb_tls_link *link;
} client_link;

typedef struct daemon {
    rep_daemon_options opt;
    rep_cluster cluster;
    struct event_base *base;
    struct event *timer, *sig_term, *sig_int;
    tb_tls_ctx *tls;
    tb_tls_listener *listener;
    tb_tls_link *peers[REP_MEMBERS_MAX]; /* our outgoing link to each replica */
    client_link *clients;                /* incoming client links, by principal */
    size_t n_clients;
    proto_key *key;
    proto_pubkey *pubs[REP_MEMBERS_MAX];
    rep_storage *storage;
    pbft_node *node;
    int failed;
} daemon;

static void logf_(const daemon *d, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void logf_(const daemon *d, int level, const char *fmt, ...) {
    static const char *const names[] = {"error", "warn", "info", "debug"};
    if (d != NULL && level > d->opt.log_level) {
        return;
    }
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "twinbft-replica[%u] %s: %s\n", d ? d->opt.id : 0, names[level & 3], line);
}

static uint64_t now_ms(void) {
    /* Wall clock: backups compare the primary's batch timestamps with it. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- signatures ---- */

static int sign_cb(void *ctx, const uint8_t *body, size_t len, uint8_t sig[PROTO_SIG_BYTES]) {
    return proto_sign_body(((daemon *)ctx)->key, body, len, sig);
}

static bool verify_cb(void *ctx, uint32_t signer, const uint8_t *body, size_t len,
                      const uint8_t *sig, size_t sig_len) {
    daemon *d = ctx;
    return signer < d->cluster.n && proto_verify_body(d->pubs[signer], body, len, sig, sig_len);
}

/* ---- clients ---- */

static client_link *client_find(daemon *d, const char *name) {
    for (size_t i = 0; i < d->n_clients; i++) {
        if (strcmp(d->clients[i].name, name) == 0) {
            return &d->clients[i];
        }
    }
    return NULL;
}

static bool replica_of(const daemon *d, const char *name, uint32_t *id) {
    unsigned v = 0;
    char tail = 0;
    if (sscanf(name, "replica-%u%c", &v, &tail) != 1 || v >= d->cluster.n) {
        return false;
    }
    *id = v;
    return true;
}

/* ---- the ready loop ---- */

static void send_to(tb_tls_link *link, const pbft_msg *m) {
    if (link != NULL && tb_tls_link_is_open(link)) {
        (void)tb_tls_send(link, m->data, m->len); /* full or closed: counted by the link */
    }
}

static void send_all(daemon *d, const pbft_ready *rd) {
    for (size_t i = 0; i < rd->n_msgs; i++) {
        const pbft_msg *m = &rd->msgs[i];
        if (m->to == PBFT_TO_CLIENT) {
            client_link *c = client_find(d, m->client);
            send_to(c ? c->link : NULL, m);
        } else if (m->to == PBFT_TO_ALL) {
            for (uint32_t j = 0; j < d->cluster.n; j++) {
                if (j != d->opt.id) {
                    send_to(d->peers[j], m);
                }
            }
        } else if (m->to < d->cluster.n) {
            send_to(d->peers[m->to], m);
        }
    }
}

static void arm_timer(daemon *d) {
    uint64_t deadline = pbft_node_next_deadline(d->node), now = now_ms();
    uint64_t wait = deadline > now ? deadline - now : 0;
    if (wait > REP_TICK_MS_MAX) {
        wait = REP_TICK_MS_MAX;
    }
    struct timeval tv = {.tv_sec = (time_t)(wait / 1000),
                         .tv_usec = (suseconds_t)(wait % 1000) * 1000};
    evtimer_add(d->timer, &tv);
}

/* The core's contract: persist (one durable commit), then send, then advance. */
static void drive(daemon *d) {
    while (d->failed == 0 && pbft_node_has_ready(d->node)) {
        pbft_ready rd;
        pbft_node_ready(d->node, &rd);
        int rc = rep_storage_persist(d->storage, &rd);
        if (rc != 0) {
            logf_(d, 0, "storage commit failed (%s): stopping, nothing more is sent",
                  tb_strerror(rc));
            d->failed = rc;
            pbft_node_advance(d->node, &rd);
            event_base_loopbreak(d->base);
            return;
        }
        send_all(d, &rd);
        for (size_t i = 0; i < rd.n_stable; i++) {
            logf_(d, 3, "checkpoint %" PRIu64 " stable", rd.stable[i].seq);
        }
        pbft_node_advance(d->node, &rd);
    }
    arm_timer(d);
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    daemon *d = arg;
    pbft_node_tick(d->node, now_ms());
    drive(d);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)what;
    daemon *d = arg;
    logf_(d, 2, "signal %d: shutting down", (int)sig);
    event_base_loopexit(d->base, NULL);
}

/* ---- links ---- */

static void on_open(tb_tls_link *link, const char *peer, void *arg) {
    daemon *d = arg;
    uint32_t j = 0;
    if (replica_of(d, peer, &j)) {
        logf_(d, 2, "link with %s open", peer);
        return;
    }
    client_link *c = client_find(d, peer);
    if (c == NULL) {
        if (d->n_clients == REP_CLIENT_LINKS_MAX) {
            logf_(d, 1, "client %s refused: %d client links already", peer, REP_CLIENT_LINKS_MAX);
            tb_tls_link_free(link);
            return;
        }
        c = &d->clients[d->n_clients++];
        snprintf(c->name, sizeof c->name, "%s", peer);
    }
    c->link = link; /* the newest connection of a principal gets its replies */
}

static void on_close(tb_tls_link *link, const char *reason, void *arg) {
    daemon *d = arg;
    for (size_t i = 0; i < d->n_clients; i++) {
        if (d->clients[i].link == link) {
            d->clients[i] = d->clients[--d->n_clients];
            return;
        }
    }
    logf_(d, 3, "link closed: %s", reason);
}

static void on_frame(tb_tls_link *link, const char *peer, const uint8_t *data, size_t len,
                     void *arg) {
    (void)link;
    daemon *d = arg;
    pbft_from from = {.is_client = true, .client = peer};
    uint32_t j = 0;
    if (replica_of(d, peer, &j)) {
        from = (pbft_from){.is_client = false, .replica = j};
    }
    int rc = pbft_node_step(d->node, &from, data, len);
    if (rc != 0) {
        logf_(d, 3, "dropped a message from %s: %s", peer, tb_strerror(rc));
    }
    drive(d);
}

/* ---- start-up and shutdown ---- */

/* Every member's certificate must come from the cluster CA and name its
 * replica; its key verifies that member's signatures. */
static int load_members(daemon *d) {
    X509 *ca = NULL;
    int rc = proto_pki_load_cert(d->cluster.ca_path, &ca);
    if (rc != 0) {
        logf_(d, 0, "cannot read the CA certificate %s: %s", d->cluster.ca_path, tb_strerror(rc));
        return rc;
    }
    for (uint32_t j = 0; j < d->cluster.n && rc == 0; j++) {
        const char *path = d->cluster.members[j].cert_path;
        X509 *cert = NULL;
        char name[PROTO_NAME_BYTES_MAX], want[32];
        uint8_t pub[PROTO_PUBKEY_BYTES];
        snprintf(want, sizeof want, "replica-%u", j);
        rc = proto_pki_load_cert(path, &cert);
        if (rc == 0 && (proto_pki_verify(ca, cert) != 0 || proto_pki_name(cert, name) != 0 ||
                        strcmp(name, want) != 0)) {
            logf_(d, 0, "%s: not a certificate for %s issued by the cluster CA", path, want);
            rc = TB_ERR_INVALID;
        } else if (rc == 0) {
            rc = proto_pki_pubkey(cert, pub);
            rc = rc ? rc : proto_pubkey_from_raw(pub, &d->pubs[j]);
        } else {
            logf_(d, 0, "cannot read %s: %s", path, tb_strerror(rc));
        }
        X509_free(cert);
    }
    X509_free(ca);
    return rc;
}

static int open_links(daemon *d, const char *key_path) {
    const rep_member *me = &d->cluster.members[d->opt.id];
    int rc = tb_tls_ctx_load(d->cluster.ca_path, me->cert_path, key_path, &d->tls);
    if (rc != 0) {
        logf_(d, 0, "TLS identity from %s and %s: %s", me->cert_path, key_path, tb_strerror(rc));
        return rc;
    }
    tb_tls_callbacks cb = {on_open, on_frame, on_close, d};
    rc = tb_tls_listen(d->base, d->tls, me->host, me->port, &cb, &d->listener);
    if (rc != 0) {
        logf_(d, 0, "cannot listen on %s:%u: %s", me->host, me->port, tb_strerror(rc));
        return rc;
    }
    for (uint32_t j = 0; j < d->cluster.n && rc == 0; j++) {
        if (j == d->opt.id) {
            continue;
        }
        char want[32];
        snprintf(want, sizeof want, "replica-%u", j);
        const rep_member *m = &d->cluster.members[j];
        rc = tb_tls_connect(d->base, d->tls, m->host, m->port, want, &cb, &d->peers[j]);
    }
    return rc;
}

static int open_node(daemon *d) {
    int rc = rep_storage_open(d->opt.data_dir, REP_ADMIN_PRINCIPAL, REP_MAP_BYTES, &d->storage);
    if (rc != 0) {
        logf_(d, 0, "cannot open storage in %s: %s", d->opt.data_dir, tb_strerror(rc));
        return rc;
    }
    pbft_config cfg;
    memset(&cfg, 0, sizeof cfg);
    pbft_config_defaults(&cfg);
    cfg.n = d->cluster.n;
    cfg.self = d->opt.id;
    cfg.cluster_id = (const uint8_t *)d->cluster.id;
    cfg.cluster_id_len = strlen(d->cluster.id);
    cfg.epoch = d->cluster.epoch;
    cfg.crypto = (pbft_crypto){d, sign_cb, verify_cb};
    cfg.app = rep_storage_app(d->storage);
    uint64_t now = now_ms();
    rc = pbft_node_create(&cfg, now, &d->node);
    rc = rc ? rc : rep_storage_restore(d->storage, d->node, now);
    if (rc != 0) {
        logf_(d, 0, "cannot start the consensus core from %s: %s", d->opt.data_dir,
              tb_strerror(rc));
        return rc;
    }
    pbft_status st;
    pbft_node_status(d->node, &st);
    logf_(d, 2, "replica %u of %u: view %" PRIu64 ", executed %" PRIu64 ", stable %" PRIu64,
          d->opt.id, d->cluster.n, st.view, st.executed, st.stable_seq);
    return 0;
}

static int start(daemon *d) {
    char err[REP_CONFIG_ERR_BYTES];
    int rc = rep_cluster_load(d->opt.config_path, &d->cluster, err, sizeof err);
    if (rc != 0) {
        logf_(d, 0, "%s", err);
        return rc;
    }
    if (d->opt.id >= d->cluster.n) {
        logf_(d, 0, "--id %u: the cluster file has replicas 0..%u", d->opt.id, d->cluster.n - 1);
        return TB_ERR_INVALID;
    }
    char key_path[REP_PATH_BYTES_MAX + 16];
    if (d->opt.key_path != NULL) {
        snprintf(key_path, sizeof key_path, "%s", d->opt.key_path);
    } else {
        /* cluster init keeps key.pem next to each replica's cert.pem */
        snprintf(key_path, sizeof key_path, "%s", d->cluster.members[d->opt.id].cert_path);
        char *slash = strrchr(key_path, '/');
        snprintf(slash ? slash + 1 : key_path,
                 sizeof key_path - (size_t)(slash ? slash + 1 - key_path : 0), "key.pem");
    }
    rc = proto_key_load_pem(key_path, &d->key);
    if (rc != 0) {
        logf_(d, 0, "cannot read this replica's key %s: %s", key_path, tb_strerror(rc));
        return rc;
    }
    d->clients = calloc(REP_CLIENT_LINKS_MAX, sizeof *d->clients);
    d->base = event_base_new();
    if (d->clients == NULL || d->base == NULL) {
        return TB_ERR_NOMEM;
    }
    d->timer = evtimer_new(d->base, on_timer, d);
    d->sig_term = evsignal_new(d->base, SIGTERM, on_signal, d);
    d->sig_int = evsignal_new(d->base, SIGINT, on_signal, d);
    if (d->timer == NULL || d->sig_term == NULL || d->sig_int == NULL ||
        evsignal_add(d->sig_term, NULL) != 0 || evsignal_add(d->sig_int, NULL) != 0) {
        return TB_ERR_NOMEM;
    }
    rc = load_members(d);
    rc = rc ? rc : open_node(d);
    rc = rc ? rc : open_links(d, key_path);
    return rc;
}

static void stop(daemon *d) {
    for (uint32_t j = 0; j < REP_MEMBERS_MAX; j++) {
        if (d->peers[j]) {
            tb_tls_link_free(d->peers[j]);
        }
        proto_pubkey_free(d->pubs[j]);
    }
    if (d->listener) {
        tb_tls_listener_free(d->listener); /* closes the client links it accepted */
    }
    tb_tls_ctx_free(d->tls);
    pbft_node_free(d->node);
    if (d->storage) {
        rep_storage_close(d->storage);
    }
    proto_key_free(d->key);
    if (d->timer) {
        event_free(d->timer);
    }
    if (d->sig_term) {
        event_free(d->sig_term);
    }
    if (d->sig_int) {
        event_free(d->sig_int);
    }
    if (d->base) {
        event_base_free(d->base);
    }
    free(d->clients);
}

int rep_daemon_run(const rep_daemon_options *opt) {
    signal(SIGPIPE, SIG_IGN); /* a peer that hangs up must not kill the replica */
    daemon *d = calloc(1, sizeof *d);
    if (d == NULL) {
        return TB_ERR_NOMEM;
    }
    d->opt = *opt;
    int rc = start(d);
    if (rc == 0) {
        drive(d);
        logf_(d, 2, "listening on %s:%u", d->cluster.members[d->opt.id].host,
              d->cluster.members[d->opt.id].port);
        event_base_dispatch(d->base);
        rc = d->failed;
    }
    stop(d);
    free(d);
    return rc;
}
