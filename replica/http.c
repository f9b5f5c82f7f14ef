/* The replica's status page and Prometheus metrics (see http.h). */
#include "replica/http.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "proto/hex.h"
#include "proto/tb_err.h"

struct rep_http {
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    rep_http_fill_fn fill;
    void *ctx;
};

/* One metric with its HELP and TYPE lines, no labels. */
static void metric(struct evbuffer *b, const char *name, const char *type, const char *help,
                   uint64_t v) {
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type,
                        name, v);
}

/* A per-peer metric: one sample per other member; offset names a field of
 * tb_tls_link_stats (all of them uint64_t), SIZE_MAX the link's state. */
static void peer_metric(struct evbuffer *b, const rep_http_snapshot *s, const char *name,
                        const char *type, const char *help, size_t offset) {
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (uint32_t j = 0; j < s->n; j++) {
        if (j == s->id) {
            continue;
        }
        uint64_t v = 0;
        if (offset == SIZE_MAX) {
            v = s->peer_open[j];
        } else {
            memcpy(&v, (const uint8_t *)&s->peer[j] + offset, sizeof v);
        }
        evbuffer_add_printf(b, "%s{peer=\"%" PRIu32 "\"} %" PRIu64 "\n", name, j, v);
    }
}

static void render_metrics(struct evbuffer *b, const rep_http_snapshot *s) {
    const pbft_status *st = &s->status;
    /* Cluster ids are [A-Za-z0-9._-] (rep_cluster_id_valid): no escaping needed. */
    evbuffer_add_printf(b,
                        "# HELP twinbft_info This replica's identity.\n# TYPE twinbft_info gauge\n"
                        "twinbft_info{cluster=\"%s\",replica=\"%" PRIu32 "\",replicas=\"%" PRIu32
                        "\"} 1\n",
                        s->cluster_id, s->id, s->n);
    metric(b, "twinbft_uptime_seconds", "gauge", "Seconds since start.", s->uptime_ms / 1000);
    metric(b, "twinbft_epoch", "gauge", "Membership epoch.", s->epoch);
    metric(b, "twinbft_view", "gauge", "Current view.", st->view);
    metric(b, "twinbft_primary", "gauge", "Replica id of the current view's primary.", st->primary);
    metric(b, "twinbft_is_primary", "gauge", "1 if this replica is the primary.",
           st->primary == s->id);
    metric(b, "twinbft_in_view_change", "gauge", "1 while a view change is in progress.",
           st->in_view_change);
    metric(b, "twinbft_executed_seq", "gauge", "Last executed sequence number.", st->executed);
    metric(b, "twinbft_stable_checkpoint_seq", "gauge", "Last stable checkpoint.", st->stable_seq);
    metric(b, "twinbft_view_changes_total", "counter", "Views entered since start.",
           st->view_changes);
    metric(b, "twinbft_messages_invalid_total", "counter", "Invalid messages dropped.",
           st->dropped);
    metric(b, "twinbft_votes_redundant_total", "counter",
           "PREPARE and COMMIT votes beyond a quorum, dropped before their signature was checked.",
           st->votes_redundant);
    metric(b, "twinbft_batch_timestamps_rejected_total", "counter",
           "Pre-prepares dropped because their timestamp was ahead of this replica's clock by more "
           "than the allowed skew (this clock or the primary's is off).",
           st->ts_rejected);
    metric(b, "twinbft_db_map_bytes", "gauge",
           "Size of the store's LMDB map: the most the data file can grow to.", s->space.map_bytes);
    metric(b, "twinbft_db_used_bytes", "gauge",
           "Part of the LMDB map in use (the data file's high-water mark; freed pages are reused).",
           s->space.used_bytes);
    metric(b, "twinbft_history_events", "gauge", "Events kept in the twins' history.",
           s->space.history_events);
    metric(b, "twinbft_disk_full_holding", "gauge",
           "1 while this replica's disk is too full to commit: it neither executes nor votes, "
           "answers reads, and resumes by itself when space returns.",
           s->holding);
    metric(b, "twinbft_disk_full_holds_total", "counter",
           "Times this replica stopped voting on a full disk since start.", s->holds);
    metric(b, "twinbft_history_window_seqs", "gauge",
           "The cluster's history retention: events of the last this many seqs are kept (0: all).",
           s->history_window);
    metric(b, "twinbft_log_retain_seqs", "gauge",
           "Committed batches kept below the stable checkpoint for replicas that fell behind "
           "(the cluster's log_retain).",
           s->log_retain);
    metric(b, "twinbft_log_entries", "gauge", "Batches in this replica's retained log now.",
           s->log_entries);
    metric(b, "twinbft_log_replayed_total", "counter",
           "Batches this replica replayed from a peer's retained log to catch up.",
           st->log_replayed);
    metric(b, "twinbft_log_replayed_bytes_total", "counter",
           "Bytes of the log entries this replica replayed from peers.", st->log_replayed_bytes);
    metric(b, "twinbft_log_served_total", "counter",
           "Batches this replica served from its retained log to peers behind.", st->log_served);
    metric(b, "twinbft_outbox_window_seqs", "gauge",
           "Commands pushed to subscribers are kept for the last this many seqs.",
           s->outbox_window);
    metric(b, "twinbft_history_events_compacted_total", "counter",
           "History events dropped by the retention window since start.", s->events_compacted);
    metric(b, "twinbft_client_table_entries", "gauge",
           "Clients in the client table (last request and reply per client).", st->clients);
    metric(b, "twinbft_state_divergences_total", "counter",
           "Checkpoints at which this replica's state digest disagreed with a quorum's "
           "(non-determinism or a corrupt store).",
           st->divergences);
    metric(b, "twinbft_state_diverged", "gauge",
           "1 while this replica's state is one no quorum holds: it neither executes nor votes "
           "until state transfer replaces it.",
           st->diverged_seq != 0);
    metric(b, "twinbft_requests_relayed_total", "counter",
           "Requests this replica held for half the request timeout unexecuted and relayed to "
           "the primary.",
           st->relays_sent);
    metric(b, "twinbft_state_transfer_bytes_in_total", "counter",
           "State-transfer bytes this replica received in chunks that matched their hash.",
           st->xfer_bytes_in);
    metric(b, "twinbft_state_transfer_bytes_out_total", "counter",
           "State-transfer bytes this replica served to peers.", st->xfer_bytes_out);
    metric(b, "twinbft_state_transfer_chunks_bad_total", "counter",
           "State-transfer chunks dropped on arrival: their hash did not match the manifest f+1 "
           "replicas agreed on.",
           st->xfer_chunks_bad);
    metric(b, "twinbft_state_transfers_completed_total", "counter",
           "Certified checkpoint states this replica installed by state transfer.",
           st->xfer_completed);
    metric(b, "twinbft_state_transfers_refused_total", "counter",
           "Assembled states refused at the end of a transfer (a local fault).", st->xfer_refused);
    metric(b, "twinbft_state_transfer_remaining_bytes", "gauge",
           "Bytes of the state transfer in progress not yet received (0: none).",
           st->xfer_total_bytes - st->xfer_done_bytes);
    metric(b, "twinbft_relayed_requests_taken_total", "counter",
           "Requests this replica, as primary, took for ordering once f+1 replicas relayed them.",
           st->relays_taken);
    evbuffer_add_printf(b,
                        "# HELP twinbft_clock_offset_ms The last out-of-bounds batch timestamp "
                        "minus this replica's clock (0: none seen).\n"
                        "# TYPE twinbft_clock_offset_ms gauge\ntwinbft_clock_offset_ms %" PRId64
                        "\n",
                        st->ts_offset_ms);
    metric(b, "twinbft_batches_executed_total", "counter", "Batches executed since start.",
           s->counters.batches_executed);
    metric(b, "twinbft_requests_executed_total", "counter", "Requests executed since start.",
           s->counters.requests_executed);
    metric(b, "twinbft_messages_sent_total", "counter", "Messages handed to links.",
           s->counters.messages_sent);
    metric(b, "twinbft_queries_total", "counter", "Read-only queries answered.",
           s->counters.queries_served);
    metric(b, "twinbft_pushes_total", "counter", "Commands pushed to subscribers.",
           s->counters.pushes_sent);
    metric(b, "twinbft_status_requests_total", "counter", "Status requests answered.",
           s->counters.status_served);
    metric(b, "twinbft_answers_shed_total", "counter",
           "Queries and status requests dropped because the client was not reading its answers.",
           s->counters.answers_shed);
    metric(b, "twinbft_ed25519_signs_total", "counter", "Ed25519 signatures made.",
           s->counters.ed25519_signs);
    metric(b, "twinbft_ed25519_verifies_total", "counter",
           "Ed25519 signatures verified (each a full verification).", s->counters.ed25519_verifies);
    metric(b, "twinbft_storage_commits_total", "counter", "Durable LMDB commits.",
           s->storage.commits);
    metric(b, "twinbft_storage_records_written_total", "counter", "Consensus records put.",
           s->storage.records_put);
    metric(b, "twinbft_storage_bytes_written_total", "counter", "Bytes of consensus records put.",
           s->storage.bytes_written);
    metric(b, "twinbft_client_links", "gauge", "Open client links.", s->client_links);
    metric(b, "twinbft_tls_accepted_total", "counter", "Connections accepted.",
           s->listener.accepted);
    metric(b, "twinbft_tls_handshake_failures_total", "counter",
           "Handshakes failed (foreign or bad certificates, timeouts).",
           s->listener.handshake_failed);
    metric(b, "twinbft_tls_refused_full_total", "counter",
           "Connections refused on accept because the listener was full.",
           s->listener.refused_full);
    metric(b, "twinbft_tls_waited_total", "counter",
           "Connections that waited, unread, for one of their address's handshakes to end.",
           s->listener.queued);
    metric(b, "twinbft_tls_waited_promoted_total", "counter",
           "Waiting connections that got a handshake slot.", s->listener.promoted);
    metric(b, "twinbft_tls_waited_out_total", "counter",
           "Waiting connections closed after waiting the longest allowed.", s->listener.waited_out);
    metric(b, "twinbft_tls_waited_evicted_total", "counter",
           "Waiting connections closed to make room for newer ones (the waiting room was full).",
           s->listener.refused_source);
    metric(b, "twinbft_tls_waiting", "gauge", "Connections waiting for a handshake slot now.",
           s->listener.waiting);
    metric(b, "twinbft_links_closed_oversize_total", "counter",
           "Links closed because a frame announced more than their limit (clients: the largest "
           "client message).",
           s->links.closed_oversize);
    metric(b, "twinbft_links_closed_idle_total", "counter",
           "Links closed because a frame they began was not complete by its deadline (the peer "
           "went idle, or trickled).",
           s->links.closed_idle);
    metric(b, "twinbft_links_closed_budget_total", "counter",
           "Links closed because a frame would have put its identity, or all clients, over the "
           "memory budget for unfinished frames.",
           s->links.closed_budget);
    metric(b, "twinbft_client_frame_bytes", "gauge",
           "Bytes held by client links' unfinished frames (budgeted).", s->client_frame_bytes);
    metric(b, "twinbft_client_frames_refused_total", "counter",
           "Client frames of a kind clients never send, dropped before decoding.",
           s->counters.client_frames_refused);
    peer_metric(b, s, "twinbft_peer_up", "gauge", "1 if the link to the peer is open.", SIZE_MAX);
    peer_metric(b, s, "twinbft_peer_frames_out_total", "counter", "Frames sent to the peer.",
                offsetof(tb_tls_link_stats, frames_out));
    peer_metric(b, s, "twinbft_peer_frames_in_total", "counter", "Frames received from the peer.",
                offsetof(tb_tls_link_stats, frames_in));
    peer_metric(b, s, "twinbft_peer_frames_dropped_full_total", "counter",
                "Frames dropped because the peer's output queue was full.",
                offsetof(tb_tls_link_stats, frames_dropped_full));
    peer_metric(b, s, "twinbft_peer_connects_total", "counter", "Handshakes completed.",
                offsetof(tb_tls_link_stats, connects));
}

static void render_page(struct evbuffer *b, const rep_http_snapshot *s) {
    const pbft_status *st = &s->status;
    char digest[2 * PROTO_DIGEST_BYTES + 1];
    proto_hex(s->app_digest, PROTO_DIGEST_BYTES, digest);
    evbuffer_add_printf(
        b,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"refresh\" content=\"2\">"
        "<title>twinbft replica %" PRIu32 "</title></head><body>\n"
        "<h1>twinbft cluster %s, replica %" PRIu32 " of %" PRIu32 "</h1>\n<table>\n"
        "<tr><th align=left>role</th><td>%s</td></tr>\n"
        "<tr><th align=left>view</th><td>%" PRIu64 "%s (primary %" PRIu32 ")</td></tr>\n"
        "<tr><th align=left>epoch</th><td>%" PRIu64 "</td></tr>\n"
        "<tr><th align=left>executed</th><td>%" PRIu64 "</td></tr>\n"
        "<tr><th align=left>stable checkpoint</th><td>%" PRIu64 "</td></tr>\n"
        "<tr><th align=left>state digest</th><td><code>%s</code></td></tr>\n"
        "<tr><th align=left>client links</th><td>%" PRIu32 "</td></tr>\n"
        "<tr><th align=left>uptime</th><td>%" PRIu64 " s</td></tr>\n</table>\n"
        "<h2>Peers</h2>\n<table>\n<tr><th>replica</th><th>link</th>"
        "<th>frames out</th><th>frames in</th><th>dropped (full)</th></tr>\n",
        s->id, s->cluster_id, s->id, s->n, st->primary == s->id ? "primary" : "backup", st->view,
        st->in_view_change ? ", changing view" : "", st->primary, s->epoch, st->executed,
        st->stable_seq, digest, s->client_links, s->uptime_ms / 1000);
    for (uint32_t j = 0; j < s->n; j++) {
        if (j == s->id) {
            continue;
        }
        evbuffer_add_printf(b,
                            "<tr><td>%" PRIu32 "</td><td>%s</td><td>%" PRIu64 "</td><td>%" PRIu64
                            "</td><td>%" PRIu64 "</td></tr>\n",
                            j, s->peer_open[j] ? "open" : "down", s->peer[j].frames_out,
                            s->peer[j].frames_in, s->peer[j].frames_dropped_full);
    }
    evbuffer_add_printf(b, "</table>\n<p><a href=\"/metrics\">metrics</a></p>\n</body></html>\n");
}

static void on_request(struct evhttp_request *req, void *arg) {
    rep_http *h = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    bool metrics = path != NULL && strcmp(path, "/metrics") == 0;
    if (path == NULL || (!metrics && strcmp(path, "/") != 0)) {
        evhttp_send_error(req, HTTP_NOTFOUND, "only / and /metrics are served");
        return;
    }
    rep_http_snapshot *s = calloc(1, sizeof *s);
    struct evbuffer *b = evbuffer_new();
    if (s == NULL || b == NULL) {
        free(s);
        if (b != NULL) {
            evbuffer_free(b);
        }
        evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
        return;
    }
    h->fill(h->ctx, s);
    if (metrics) {
        render_metrics(b, s);
    } else {
        render_page(b, s);
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      metrics ? "text/plain; version=0.0.4" : "text/html; charset=utf-8");
    evhttp_send_reply(req, HTTP_OK, "OK", b);
    evbuffer_free(b);
    free(s);
}

int rep_http_start(struct event_base *base, const char *host, uint16_t port, rep_http_fill_fn fill,
                   void *ctx, rep_http **out) {
    *out = NULL;
    rep_http *h = calloc(1, sizeof *h);
    if (h == NULL || (h->http = evhttp_new(base)) == NULL) {
        free(h);
        return TB_ERR_NOMEM;
    }
    h->fill = fill;
    h->ctx = ctx;
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(h->http, REP_HTTP_HEADERS_BYTES_MAX);
    evhttp_set_max_body_size(h->http, 0);
    evhttp_set_timeout(h->http, REP_HTTP_TIMEOUT_S);
    evhttp_set_gencb(h->http, on_request, h);
    h->sock = evhttp_bind_socket_with_handle(h->http, host, port);
    if (h->sock == NULL) {
        rep_http_free(h);
        return TB_ERR_IO;
    }
    *out = h;
    return 0;
}

uint16_t rep_http_port(const rep_http *h) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    evutil_socket_t fd = evhttp_bound_socket_get_fd(h->sock);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        return 0;
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void rep_http_free(rep_http *h) {
    if (h == NULL) {
        return;
    }
    evhttp_free(h->http); /* closes the bound socket and open connections */
    free(h);
}
