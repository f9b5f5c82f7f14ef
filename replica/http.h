/* A replica's status over plain HTTP on its `http` address from the cluster
 * file (libevent's evhttp): GET /metrics in the Prometheus text format, GET
 * / as a small HTML page. Read-only; it takes no input beyond the path, and
 * the address should be a management network's (the page reveals nothing a
 * cluster member could not see, but it is not authenticated).
 *
 * The daemon fills one rep_http_snapshot per request through the callback,
 * on the event_base's thread, so the page always shows the state at that
 * moment without copying it anywhere in between.
 *
 * Threading: the event_base's thread only. */
#ifndef REP_HTTP_H
#define REP_HTTP_H

#include <stdbool.h>
#include <stdint.h>

#include "client/link.h"
#include "consensus/pbft.h"
#include "replica/config.h"
#include "replica/storage.h"

struct event_base;

enum {
    REP_HTTP_TIMEOUT_S = 10,           /* an idle or slow HTTP connection is closed */
    REP_HTTP_HEADERS_BYTES_MAX = 8192, /* a request's headers; larger ones are refused */
};

/* Counters the daemon keeps itself (since start). */
typedef struct rep_counters {
    uint64_t batches_executed;
    uint64_t requests_executed;
    uint64_t messages_sent; /* to peers and clients, including ones the links dropped */
    uint64_t queries_served;
    uint64_t pushes_sent;
    uint64_t status_served;
    uint64_t answers_shed;          /* queries and the like dropped: the client was not reading */
    uint64_t client_frames_refused; /* frames of a kind clients never send, dropped unread */
    uint64_t ed25519_signs;         /* proto_ed25519_stats, read when the snapshot is taken */
    uint64_t ed25519_verifies;
} rep_counters;

typedef struct rep_http_snapshot {
    uint32_t id;
    uint32_t n;
    const char *cluster_id;
    uint64_t epoch;
    uint64_t uptime_ms;
    pbft_status status;
    rep_storage_stats storage;
    rep_counters counters;
    uint32_t client_links;
    tb_tls_listener_stats listener;
    tb_tls_ctx_stats links;          /* links closed for what their peer sent */
    uint64_t client_frame_bytes;     /* held by client links' unfinished frames */
    bool peer_open[REP_MEMBERS_MAX]; /* by replica id; own id false */
    tb_tls_link_stats peer[REP_MEMBERS_MAX];
    uint8_t app_digest[PROTO_DIGEST_BYTES];
    sm_space space;          /* the store's map, its use, the history kept */
    uint64_t history_window; /* the cluster's, in seqs (0: all kept) */
    uint64_t outbox_window;  /* the cluster's, in seqs */
    uint64_t log_retain;     /* the cluster's retained log, in seqs */
    uint64_t log_entries;    /* entries in this replica's retained log */
    uint64_t events_compacted;
    bool holding;   /* on a full disk: neither executes nor votes */
    uint64_t holds; /* times it held since start */
} rep_http_snapshot;

typedef void (*rep_http_fill_fn)(void *ctx, rep_http_snapshot *out);

typedef struct rep_http rep_http;

/* Serves on host:port (numeric address; port 0 picks a free one, see
 * rep_http_port). fill is called once per request. TB_ERR_IO when the port
 * cannot be bound, TB_ERR_NOMEM. */
int rep_http_start(struct event_base *base, const char *host, uint16_t port, rep_http_fill_fn fill,
                   void *ctx, rep_http **out);
uint16_t rep_http_port(const rep_http *h);
/* Closes the listener and every open HTTP connection. NULL is allowed. */
void rep_http_free(rep_http *h);

#endif
