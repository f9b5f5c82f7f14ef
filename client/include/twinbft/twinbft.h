/* libtwinbft: the edge client of a twinbft cluster.
 *
 * A client talks mutual TLS 1.3 to every replica of one cluster and
 *   - submits intents (packed twinbft.SmOp, proto/sm.proto): each is sent to
 *     every replica, completes once f+1 replicas report the same result, and
 *     comes with a certificate once a quorum (2f+1 when n = 3f+1) of signed
 *     replies is in;
 *   - asks read-only queries (packed twinbft.SmQuery): answered without
 *     ordering when a quorum of replicas return the same bytes (PBFT's
 *     read-only optimisation), and put through ordering otherwise;
 *   - subscribes to the commands addressed to its principal and receives
 *     each as a certified command, in (seq, index) order, without gaps
 *     across reconnects;
 *   - asks every replica for its status.
 * Before it sends any intent or query, a client confirms that the replicas
 * serve the cluster id and epoch its configuration names: it asks each one
 * (over that replica's own authenticated link) and goes ahead once f+1
 * report that pair. Calls made meanwhile wait (within their timeouts).
 * When f+1 report another pair instead, nothing is ever submitted: the
 * waiting call and every later intent, query and subscription fail with
 * TB_ERR_WRONG_CLUSTER, and tb_client_served tells what the replicas
 * serve. The answer holds for the client's life.
 * A certificate (packed twinbft.Certificate) is checked with
 * tb_cert_verify, which needs the cluster's public keys and nothing else.
 *
 * Asynchronous calls run on the caller's libevent event_base and report
 * through callbacks on that base's thread; the *_wait calls are blocking
 * wrappers that run the base until their answer is in. Pointers handed to
 * callbacks are valid during the call only.
 *
 * Callbacks (every tb_*_cb): one may start asynchronous calls and
 * unsubscribe, but must not free the client, and must not call a *_wait
 * function (which then fails with TB_ERR_STATE and starts nothing: the base
 * is already running below it). A *_wait whose event loop fails (e.g. it was
 * called from some other callback of the same base) cancels its call
 * before returning TB_ERR_IO; a cancelled intent may still execute.
 *
 * Errors: functions return 0 or a negative code of tb_err.h; tb_strerror()
 * names it. TB_ERR_TIMEOUT: the cluster did not answer in time (an intent
 * that timed out may still execute later).
 *
 * Request numbers: a principal's requests carry strictly increasing numbers;
 * a replica ignores a number at or below the last it executed for that
 * principal. The first is cfg.first_number (persist it, or derive it from a
 * clock that never runs backwards); each submitted intent uses the next.
 *
 * Thread rules: one client is used from the thread that runs its
 * event_base. The process must ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)). */
#ifndef TWINBFT_H
#define TWINBFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_err.h"

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

enum {
    TB_MEMBERS_MAX = 64,
    TB_CLUSTER_ID_BYTES_MAX = 64,
    TB_HOST_BYTES = 64, /* numeric address, NUL included */
    TB_PUBKEY_BYTES = 32,
    TB_DIGEST_BYTES = 32,
    TB_CLIENT_RETRANSMIT_MS = 1000,       /* resend an unanswered request this often */
    TB_CLIENT_TIMEOUT_MS_DEFAULT = 30000, /* give up on a request after this long */
    /* After f+1 matching replies, how long to wait for a quorum certificate
     * before completing without one. */
    TB_CLIENT_CERT_WAIT_MS = 2000,
    /* How long a read-only query waits for a quorum of identical unordered
     * answers before it is put through ordering. */
    TB_CLIENT_QUERY_WAIT_MS = 1000,
    /* Once a quorum of replicas has answered a status call, how much longer
     * it waits for the rest (a dead replica would otherwise hold it for the
     * whole timeout). */
    TB_CLIENT_STATUS_GRACE_MS = 500,
    TB_CLIENT_OP_BYTES_MAX = 64u << 10,
    /* Pending commands (pushed, not delivered yet) a subscription holds.
     * Each replica may own at most TB_SUBSCRIPTION_PENDING_MAX / n of them
     * (pending commands that it alone pushed); when the table is full the
     * highest pending command of the replica that alone pushed the most
     * makes room (never one that f+1 pushed). A push that cannot be stored
     * is refused and counted, and that replica's stream is replayed from
     * before it once there is room again (a refusal can delay delivery,
     * never skip a command). */
    TB_SUBSCRIPTION_PENDING_MAX = 4096,
    /* A new pending command more than this many seqs beyond the (f+1)-th
     * highest executed seq the replicas reported (in SubscribeAck.executed
     * or by pushing) is refused: f replicas cannot park made-up far-future
     * commands, and correct replicas push only what they executed. */
    TB_SUBSCRIPTION_AHEAD_SEQS_MAX = 1u << 16,
    /* A pushed reply is refused above these sizes before it is stored: its
     * leaf (a result of at most 64 KiB, as consensus/ caps results, plus
     * the leaf's other fields), its Merkle path (hashes), and the whole
     * packed reply (leaf, path, signed root, room to spare). */
    TB_SUBSCRIPTION_LEAF_BYTES_MAX = 80u << 10,
    TB_SUBSCRIPTION_PATH_MAX = 32,
    TB_SUBSCRIPTION_REPLY_BYTES_MAX = TB_SUBSCRIPTION_LEAF_BYTES_MAX + (8u << 10),
    /* A certified command that f+1 replicas vouch for, but not enough of
     * them with outboxes reaching back to the last delivery, waits this long
     * for rounds under way to show it skips nothing; then it is delivered
     * with gap_before (one silent replica must not hold it forever). */
    TB_SUBSCRIPTION_SOON_WAIT_MS = 2000,
};

typedef struct tb_member {
    char host[TB_HOST_BYTES]; /* replica j listens on host:port ... */
    uint16_t port;
    uint8_t pubkey[TB_PUBKEY_BYTES]; /* ... and signs with this raw Ed25519 key */
} tb_member;

/* The cluster as a client knows it: members and trust anchors, filled in by
 * the caller (e.g. from the cluster file). Member j must present the
 * certificate name "replica-j", issued by the CA in ca_path. */
typedef struct tb_client_config {
    uint32_t n;
    uint32_t f; /* 3f+1 <= n */
    uint8_t cluster_id[TB_CLUSTER_ID_BYTES_MAX];
    size_t cluster_id_len;
    uint64_t epoch;
    tb_member members[TB_MEMBERS_MAX];
    const char *ca_path; /* this client's identity: CA, certificate, key (PEM) */
    const char *cert_path;
    const char *key_path;
    uint64_t first_number; /* > 0; the number of the first request */
    uint32_t timeout_ms;   /* per request or query; 0 means TB_CLIENT_TIMEOUT_MS_DEFAULT */
    /* Where the client's links report connection trouble (a refused or
     * failed handshake, a closed connection), one line at a time, at most a
     * few per second; NULL keeps them silent. */
    void (*log)(const char *line, void *arg);
    void *log_arg;
} tb_client_config;

typedef struct tb_client tb_client;

/* Connects to every member (links retry on their own, with backoff). cfg is
 * copied; the identity files are read here. TB_ERR_INVALID for a bad
 * configuration, TB_ERR_IO for unreadable identity files, TB_ERR_CRYPTO,
 * TB_ERR_NOMEM. */
int tb_client_new(struct event_base *base, const tb_client_config *cfg, tb_client **out);
/* Closes the links; outstanding calls are dropped without their callbacks.
 * NULL is allowed. libevent finishes freeing a closed link's buffers from its
 * loop (deferred callbacks hold references), so before event_base_free run
 * the base once more: event_base_loop(base, EVLOOP_NONBLOCK). */
void tb_client_free(tb_client *c);
/* This client's principal name (its certificate's common name). */
const char *tb_client_name(const tb_client *c);
/* The number the next submitted request will carry. */
uint64_t tb_client_next_number(const tb_client *c);
/* How many replicas have an open link right now. */
uint32_t tb_client_connected(const tb_client *c);

/* ---- intents ---- */

/* A completed intent. leaf: the packed twinbft.ResultLeaf f+1 replicas
 * agree on; result: the SmResult bytes inside it. cert: a packed
 * Certificate that verified against the cluster's keys, or NULL when no
 * quorum of signed replies arrived within TB_CLIENT_CERT_WAIT_MS (the
 * result still stands). */
typedef struct tb_result {
    uint64_t seq;
    uint32_t index; /* the request's position in its batch */
    const uint8_t *leaf;
    size_t leaf_len;
    const uint8_t *result;
    size_t result_len;
    const uint8_t *cert;
    size_t cert_len;
} tb_result;

/* status 0 with r set, or TB_ERR_TIMEOUT (r NULL) when fewer than f+1
 * replicas agreed in time. r's fields are those f+1 replicas' common
 * (seq, index, count, leaf, path). The callback may start the next call but
 * must not free the client nor call a *_wait (see the callback rules at the
 * top). */
typedef void (*tb_submit_cb)(int status, const tb_result *r, void *arg);

/* Sends op (copied) to every replica, once the cluster is confirmed (see
 * the top), and retransmits it every TB_CLIENT_RETRANSMIT_MS until cb
 * reports it. One intent or query is outstanding at a time: TB_ERR_STATE
 * otherwise. TB_ERR_INVALID for len 0 or a NULL cb, TB_ERR_TOO_LARGE above
 * TB_CLIENT_OP_BYTES_MAX, TB_ERR_NOMEM, TB_ERR_WRONG_CLUSTER when the
 * replicas are known to serve another cluster or epoch (nothing started).
 * cb gets TB_ERR_WRONG_CLUSTER when that becomes known while op waits for
 * the check: op was never sent. */
int tb_client_submit(tb_client *c, const uint8_t *op, size_t len, tb_submit_cb cb, void *arg);

/* ---- read-only queries ---- */

/* status 0: result is a packed SmQueryResult that a quorum of replicas
 * returned identically (ordered false; executed is the (f+1)-th highest
 * executed sequence among them, so a correct replica had executed at least
 * that far when it gave this answer), or the ordered fallback's answer
 * (ordered true, executed = its seq; a query the state machine refused
 * comes as an SmQueryResult carrying only the refusal's code, reason and
 * detail). TB_ERR_TIMEOUT when neither arrived within the timeout, which
 * counts from the call and covers the fallback. */
/* The callback rules of tb_submit_cb apply. */
typedef void (*tb_query_cb)(int status, const uint8_t *result, size_t len, uint64_t executed,
                            bool ordered, void *arg);
/* Same rules as tb_client_submit (TB_ERR_WRONG_CLUSTER included); the
 * ordered fallback uses a request number. */
int tb_client_query(tb_client *c, const uint8_t *query, size_t len, tb_query_cb cb, void *arg);

/* ---- status ---- */

typedef struct tb_replica_status {
    bool answered; /* false: no answer in time; the rest is zero */
    uint32_t id;
    uint64_t epoch;
    uint64_t view;
    uint32_t primary;
    bool in_view_change;
    uint64_t executed;
    uint64_t stable_seq;
    uint32_t peers;                        /* replicas it has an open link to */
    uint64_t peers_mask;                   /* bit j: linked to replica j */
    uint8_t state_digest[TB_DIGEST_BYTES]; /* of its last own checkpoint ... */
    uint64_t state_digest_seq;             /* ... at this seq */
    uint8_t app_digest[TB_DIGEST_BYTES];   /* the state machine's digest at executed */
    uint64_t view_changes;
    uint64_t dropped;
    uint64_t clients;
    /* Nonzero: at this checkpoint its state digest disagreed with a
     * quorum's (non-determinism or a corrupt store); it neither executes
     * nor votes until state transfer replaces its state. */
    uint64_t diverged_seq;
    uint64_t db_map_bytes;   /* its store's LMDB map (the size limit) ... */
    uint64_t db_used_bytes;  /* ... and the part of it in use */
    uint64_t history_events; /* events kept in the twins' history */
    uint64_t client_table;   /* clients in its client table */
    uint64_t history_window; /* events of the last this many seqs are kept (0: all) */
    bool disk_full;          /* holding on a full disk: neither executes nor votes, answers reads */
} tb_replica_status;

/* st[0..n): one entry per member, by id. Called once every member answered,
 * or TB_CLIENT_STATUS_GRACE_MS after a quorum did, or when the timeout
 * passed (status 0 either way; count the answered ones). The callback rules
 * of tb_submit_cb apply. */
typedef void (*tb_status_cb)(int status, const tb_replica_status *st, uint32_t n, void *arg);
/* Independent of intents and queries; one status call at a time
 * (TB_ERR_STATE otherwise). */
int tb_client_status(tb_client *c, tb_status_cb cb, void *arg);

/* ---- the cluster served ---- */

/* A cluster id and epoch, as replicas report serving them. */
typedef struct tb_served {
    uint8_t cluster_id[TB_CLUSTER_ID_BYTES_MAX];
    size_t cluster_id_len;
    uint64_t epoch;
} tb_served;

/* The cluster check (see the top), as far as it has come: 0 once f+1
 * replicas reported the configured cluster id and epoch;
 * TB_ERR_WRONG_CLUSTER once f+1 reported the same other pair;
 * TB_ERR_AGAIN before either. When settled, *out (when non-NULL) is the
 * pair they reported. */
int tb_client_served(const tb_client *c, tb_served *out);

/* ---- subscriptions ---- */

/* A certified command addressed to this client's principal. cert is a
 * packed Certificate that verified; result the SmResult inside it;
 * not_before_ms and expires_at_ms its validity window (from the
 * certificate's leaf, so an actuator need not decode it again).
 *
 * gap_before: commands between the previously delivered one (or the
 * subscription's starting point) and this one may exist that will never be
 * delivered, because too many replicas no longer keep them (pruned from
 * their outboxes or skipped by state transfer: SubscribeAck.horizon_seq).
 * Recover them by query (e.g. the history) if they matter. When false, no
 * command in between was skipped. */
typedef struct tb_command {
    uint64_t seq;
    uint32_t index;
    const uint8_t *result;
    size_t result_len;
    const uint8_t *cert;
    size_t cert_len;
    uint64_t not_before_ms;
    uint64_t expires_at_ms;
    bool gap_before;
} tb_command;

/* The callback rules of tb_submit_cb apply; unsubscribing from it is
 * allowed (no further command of this subscription is delivered). */
typedef void (*tb_command_cb)(const tb_command *cmd, void *arg);

/* Starts delivering every command addressed to this principal after
 * (after_seq, after_index), in (seq, index) order, each at most once. After a
 * link reconnects the subscription resumes from the last command delivered.
 * A command is delivered once it is certified, f+1 replicas pushed it on
 * streams the client holds completely up to it, and no earlier one that a
 * replica announced can still become certified; a command is skipped only
 * with gap_before set on the next one delivered. One subscription per
 * client (TB_ERR_STATE otherwise). TB_ERR_WRONG_CLUSTER when the replicas
 * are known to serve another cluster or epoch; a subscription started
 * before that was known delivers nothing of theirs (no certificate of
 * theirs verifies against the configuration). */
int tb_client_subscribe(tb_client *c, uint64_t after_seq, uint32_t after_index, tb_command_cb cb,
                        void *arg);
void tb_client_unsubscribe(tb_client *c);

/* ---- blocking wrappers ---- */

/* An owned copy of a result (free with tb_owned_clear). For a query, data is
 * the SmQueryResult and seq the executed sequence; for an intent data is the
 * SmResult and leaf/cert as in tb_result. */
typedef struct tb_owned {
    uint64_t seq;
    uint32_t index;
    bool ordered;
    uint8_t *data;
    size_t data_len;
    uint8_t *leaf;
    size_t leaf_len;
    uint8_t *cert; /* NULL when not certified */
    size_t cert_len;
} tb_owned;
void tb_owned_clear(tb_owned *o);

/* Each runs the client's event_base until its call completes and returns
 * its status; *out is filled on 0. From inside one of this client's
 * callbacks: TB_ERR_STATE, nothing started. When the event loop fails: the
 * call is cancelled (its callback never runs) and TB_ERR_IO returned. */
int tb_client_submit_wait(tb_client *c, const uint8_t *op, size_t len, tb_owned *out);
int tb_client_query_wait(tb_client *c, const uint8_t *query, size_t len, tb_owned *out);
/* st must have room for the cluster's n entries. */
int tb_client_status_wait(tb_client *c, tb_replica_status *st);
/* Runs the base until at least one replica link is open or timeout_ms
 * passes (TB_ERR_TIMEOUT). */
int tb_client_connect_wait(tb_client *c, uint32_t timeout_ms);

/* ---- certificates ---- */

/* What a verified certificate says; strings and buffers are malloc'd, free
 * with tb_cert_info_clear. */
typedef struct tb_cert_info {
    uint64_t seq;
    uint32_t index; /* the result's position in its batch ... */
    uint32_t count; /* ... of this many results (both covered by the signatures) */
    uint64_t timestamp_ms;
    uint64_t not_before_ms;
    uint64_t expires_at_ms;
    uint64_t number;
    char *client;
    uint8_t *result; /* packed SmResult */
    size_t result_len;
} tb_cert_info;
void tb_cert_info_clear(tb_cert_info *info);

/* Checks a packed Certificate against the members' keys in cluster (only n,
 * f, cluster_id, epoch and members[].pubkey are read), by the rules written
 * out in proto/cert.h. now_ms == 0 skips the validity window. 0 and *info
 * filled (when non-NULL); otherwise TB_ERR_INVALID (malformed),
 * TB_ERR_MISMATCH (cluster, epoch, position, path or root), TB_ERR_QUORUM
 * (too few valid member signatures), TB_ERR_EXPIRED. */
int tb_cert_verify(const tb_client_config *cluster, const uint8_t *cert, size_t len,
                   uint64_t now_ms, tb_cert_info *info);

#ifdef __cplusplus
}
#endif

#endif
