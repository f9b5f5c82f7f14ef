/* The PBFT core (Castro & Liskov, TOCS 2002, signature variant), sans-I/O.
 *
 * A replica is a pbft_node driven by two inputs:
 *   pbft_node_step(node, from, bytes)  a packed Message arrived on a link
 *   pbft_node_tick(node, now_ms)       the caller's clock advanced
 * It never touches sockets, files or clocks. Everything it wants done is
 * accumulated and handed out by pbft_node_ready(); the caller must act on a
 * ready in this order:
 *   1. persist: write every record in ready.records, together with whatever
 *      the application wrote while executing (pbft_app.execute is called
 *      from inside step/tick), in ONE atomic commit. It need not be durable
 *      yet (see 4);
 *   2. send: ready.msgs, in order, only once that commit is durable --
 *      except those marked early, which may go out before it (and should:
 *      they are what keeps synced commits off a request's critical path);
 *   3. call pbft_node_advance(node, &ready), which releases the ready: a
 *      host that sends after advance keeps its own copy of the messages;
 *   4. call pbft_node_durable(node, ready.id) once the commits of that
 *      ready and of every ready before it are durable (at once, for a host
 *      whose commits are synced; later, for one whose next commit or a
 *      background flush makes them durable). The node may step and tick in
 *      between: what it then lets out early relies only on what is durable.
 *
 * Early messages are a replica's PRE-PREPARE and PREPARE votes in a view
 * that its storage already records. A replica that crashes after sending
 * one and before the commit forgets that it voted; so a replica that
 * restarts from stored records abstains in the view it restarts in: it
 * proposes nothing and sends no PREPARE for a batch it had not stored,
 * until the next view (consensus/normal.c, "early votes"). It can then
 * never vote twice for one (view, seq). COMMIT, checkpoint, view-change
 * and reply messages always wait for the commit: each vouches for state
 * (a prepared certificate, an execution) that must survive a crash.
 * Nothing in a ready may be used after advance. ready.executed and
 * ready.stable report what happened (for observers, tests and metrics).
 *
 * Threading: a node is used from one thread at a time. */
#ifndef PBFT_H
#define PBFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/crypto.h"

enum {
    PBFT_REPLICAS_MAX = 64,
    PBFT_CLIENT_NAME_BYTES_MAX = 128,
    PBFT_OP_BYTES_MAX = 64 * 1024,
    PBFT_RESULT_BYTES_MAX = 64 * 1024,
    PBFT_BATCH_REQUESTS_MAX = 256,
    PBFT_BATCH_BYTES_MAX = 1024 * 1024,
    PBFT_PENDING_REQUESTS_MAX = 65536, /* per replica, across clients */
    PBFT_LOG_WINDOW_MAX = 1024,
    PBFT_FUTURE_MSGS_MAX = 1024,                     /* buffered messages for a later view/window */
    PBFT_FUTURE_BYTES_PER_SENDER = 16 * 1024 * 1024, /* and their bytes, per sender */
};

typedef struct pbft_node pbft_node;

/* Who a message came from, as the channel authenticated it. */
typedef struct pbft_from {
    bool is_client;
    uint32_t replica;   /* when !is_client */
    const char *client; /* when is_client: the principal name (NUL-terminated) */
} pbft_from;

/* Signatures are the host's: the daemon uses Ed25519 (proto/crypto.h); the
 * simulator may substitute a cheaper scheme with the same unforgeability
 * within its world. Both functions must be deterministic. */
typedef struct pbft_crypto {
    void *ctx;
    /* Sign a packed Body with this replica's key. 0 or a negative tb_err. */
    int (*sign)(void *ctx, const uint8_t *body, size_t len, uint8_t sig[PROTO_SIG_BYTES]);
    /* True iff sig is replica `signer`'s signature over the packed Body. */
    bool (*verify)(void *ctx, uint32_t signer, const uint8_t *body, size_t len, const uint8_t *sig,
                   size_t sig_len);
} pbft_crypto;

/* One request handed to the application. Pointers valid during the call. */
typedef struct pbft_request {
    const char *client;
    uint64_t number;
    const uint8_t *op;
    size_t op_len;
} pbft_request;

/* What the application produced for one request. `result` is owned by the
 * application and must stay valid until its next execute call. ttl_ms is the
 * validity window of a certified result, counted from consensus time
 * (0 = the node's default). */
typedef struct pbft_result {
    const uint8_t *result;
    size_t result_len;
    uint64_t ttl_ms;
} pbft_result;

/* The replicated application (the orchestration state machine, or a test
 * application). Every function must be deterministic: same inputs in the
 * same order give the same outputs and digests on every machine. */
typedef struct pbft_app {
    void *ctx;
    /* Execute one committed batch atomically. time_ms is the agreed
     * consensus time (monotonic across batches). Fill results[0..n). Returns
     * 0; a negative return is a local fault (e.g. storage) and stops the node. */
    int (*execute)(void *ctx, uint64_t seq, uint64_t time_ms, const pbft_request *reqs, size_t n,
                   pbft_result *results);
    /* Digest of the current state. */
    void (*digest)(void *ctx, uint8_t out[PROTO_DIGEST_BYTES]);
    /* Keep the current state (just after executing seq) so that a snapshot
     * of it can be produced later, until release(seq). */
    int (*checkpoint)(void *ctx, uint64_t seq);
    void (*release)(void *ctx, uint64_t seq);
    /* State transfer moves the export of a kept checkpoint: a byte string
     * that must be the same on every replica with the same state (canonical:
     * no local bookkeeping, a fixed order), in chunks (transfer.c).
     *
     * Either the two whole-buffer callbacks, for small states (the core
     * keeps one export and one import in memory), or all of the streaming
     * ones (then snapshot and restore are not called), which let the host
     * spool both to disk and export in the background:
     *
     * snapshot: serialise the kept state of checkpoint seq into a malloc'd
     * buffer. restore: replace the state by one, atomically, but only if
     * the result has digest `expected` (NULL: no check); on error the state
     * is unchanged. */
    int (*snapshot)(void *ctx, uint64_t seq, uint8_t **out, size_t *out_len);
    int (*restore)(void *ctx, uint64_t seq, const uint8_t *data, size_t len,
                   const uint8_t expected[PROTO_DIGEST_BYTES]);
    /* export_manifest: the size of checkpoint seq's export and the SHA-256
     * of each of its chunk_bytes chunks (a malloc'd array of n hashes).
     * TB_ERR_AGAIN while it is being made (the core asks again later),
     * TB_ERR_NOT_FOUND when seq is neither kept nor exported. An export
     * made stays readable until two newer ones are. export_read: len
     * bytes of it at off. */
    int (*export_manifest)(void *ctx, uint64_t seq, uint32_t chunk_bytes, uint64_t *total,
                           uint8_t (**hashes)[PROTO_DIGEST_BYTES], size_t *n);
    int (*export_read)(void *ctx, uint64_t seq, uint64_t off, uint8_t *buf, size_t len);
    /* import_begin drops any earlier import and starts one of total bytes;
     * import_write stores verified bytes at off; import_finish replaces the
     * state like restore, from the bytes written. */
    int (*import_begin)(void *ctx, uint64_t seq, uint64_t total);
    int (*import_write)(void *ctx, uint64_t seq, uint64_t off, const uint8_t *data, size_t len);
    int (*import_finish)(void *ctx, uint64_t seq, const uint8_t expected[PROTO_DIGEST_BYTES]);
    /* Optional (NULL: none is). True iff op belongs in the safety lane: the
     * primary proposes it without waiting out the batching delay. The
     * replica decides this from the op; a client's say-so is ignored. */
    bool (*priority)(void *ctx, const uint8_t *op, size_t len);
} pbft_app;

/* Planted bugs (tests/sim only; compiled in with PBFT_PLANTED_BUGS). */
enum pbft_bug {
    PBFT_BUG_QUORUM_2F = 1u << 0,         /* prepare/commit quorums of 2f */
    PBFT_BUG_VC_DROP_PREPARED = 1u << 1,  /* view change ignores prepared certs */
    PBFT_BUG_NO_DEDUP = 1u << 2,          /* repeated client requests re-executed */
    PBFT_BUG_SKIP_CKPT_VERIFY = 1u << 3,  /* state transfer trusts any one peer's checkpoint */
    PBFT_BUG_STALE_VIEW = 1u << 4,        /* accepts normal-case msgs of older views */
    PBFT_BUG_NO_ABSTAIN = 1u << 5,        /* votes again after a restart in its view */
    PBFT_BUG_TIMER_RESET = 1u << 6,       /* any execution restarts the request timer */
    PBFT_BUG_CLIMB_ALONE = 1u << 7,       /* a view-change timeout moves on without 2f+1 */
    PBFT_BUG_RELAY_TRUST = 1u << 8,       /* the primary takes one replica's relay */
    PBFT_BUG_SKIP_CHUNK_VERIFY = 1u << 9, /* state transfer chunks are not checked on arrival */
};

/* The retained log (optional): read returns the LogEntry a PBFT_REC_LOG
 * record stored at seq, malloc'd, or TB_ERR_NOT_FOUND once it was dropped.
 * With it, a replica answers a peer behind its stable checkpoint with the
 * batches it missed, which the peer replays, instead of the whole state;
 * without it (read NULL) no LOG records are produced. */
typedef struct pbft_log {
    void *ctx;
    int (*read)(void *ctx, uint64_t seq, uint8_t **data, size_t *len);
} pbft_log;

typedef struct pbft_config {
    uint32_t n;    /* members are replica ids 0..n-1; f = (n-1)/3 */
    uint32_t self; /* this replica's id */
    const uint8_t *cluster_id;
    size_t cluster_id_len;
    uint64_t epoch;
    uint32_t checkpoint_interval;  /* K */
    uint32_t log_window;           /* L: multiple of K, >= 2K */
    uint32_t batch_requests_max;   /* <= PBFT_BATCH_REQUESTS_MAX */
    uint32_t batch_delay_ms;       /* primary waits this long to fill a batch (see flush) */
    uint32_t inflight_batches_max; /* pipelining depth of the primary */
    uint64_t request_timeout_ms;   /* unexecuted request → fetch, then view change */
    uint64_t view_timeout_ms;      /* base; doubles per consecutive failed view */
    uint64_t clock_skew_ms_max;    /* accepted pre-prepare timestamp skew */
    uint64_t result_ttl_ms;        /* default validity window of results */
    uint32_t transfer_chunk_bytes; /* state transfer: size of one chunk */
    uint32_t transfer_window;      /* state transfer: chunks asked for and not yet received */
    pbft_crypto crypto;
    pbft_app app;
    pbft_log log;
    uint32_t bugs; /* enum pbft_bug; ignored unless built with PBFT_PLANTED_BUGS */
} pbft_config;

/* Fills the defaults for every field that has one (not n, self, crypto, app). */
void pbft_config_defaults(pbft_config *cfg);

/* What ready() asks to be stored. Keys: META and none; SLOT by seq;
 * CHECKPOINT by seq; CLIENT by client name; NEW_VIEW and none (the signed
 * NEW-VIEW of the view it entered last, so that after every replica of a
 * view restarted one can still relay it). del = remove the key.
 * CLIENTS_CLEAR drops every CLIENT record (before the CLIENT records that
 * follow it in the same ready: state transfer replaced the table). */
typedef enum pbft_record_kind {
    PBFT_REC_META = 1,
    PBFT_REC_SLOT = 2,
    PBFT_REC_CHECKPOINT = 3,
    PBFT_REC_CLIENT = 4,
    PBFT_REC_CLIENTS_CLEAR = 5,
    PBFT_REC_NEW_VIEW = 6,
    /* A committed batch that fell below the stable checkpoint (a packed
     * LogEntry, by seq), for the retained log of a host that keeps one
     * (pbft_config.log): it keeps these as long as its retention says and
     * drops older ones itself. Never fed back by restore. */
    PBFT_REC_LOG = 7,
} pbft_record_kind;

typedef struct pbft_record {
    pbft_record_kind kind;
    uint64_t seq;
    const char *client;
    bool del;
    const uint8_t *data;
    size_t len;
} pbft_record;

enum { PBFT_TO_ALL = UINT32_MAX, PBFT_TO_CLIENT = UINT32_MAX - 1 };

/* A packed Message (no frame header). to: a replica id, PBFT_TO_ALL (every
 * other replica), or PBFT_TO_CLIENT with `client` set. */
typedef struct pbft_msg {
    uint32_t to;
    const char *client;
    const uint8_t *data;
    size_t len;
    bool early; /* may be sent before this ready's commit (see the contract above) */
} pbft_msg;

/* A batch this node executed. */
typedef struct pbft_executed {
    uint64_t seq;
    uint64_t view;
    uint8_t digest[PROTO_DIGEST_BYTES]; /* batch digest (null batch included) */
    uint64_t time_ms;
    size_t n_requests;      /* requests executed (duplicates skipped) */
    pbft_request *requests; /* valid until advance */
    void *batch_owner;      /* private */
} pbft_executed;

typedef struct pbft_stable {
    uint64_t seq;
    uint8_t digest[PROTO_DIGEST_BYTES];
} pbft_stable;

typedef struct pbft_ready {
    uint64_t id; /* increasing; for pbft_node_durable */
    pbft_record *records;
    size_t n_records;
    pbft_msg *msgs;
    size_t n_msgs;
    pbft_executed *executed;
    size_t n_executed;
    pbft_stable *stable;
    size_t n_stable;
    bool transferred; /* state was replaced by a snapshot at transfer_seq */
    uint64_t transfer_seq;
} pbft_ready;

/* Why a replica started its latest view change (for logs and status). */
typedef enum pbft_vc_cause {
    PBFT_VC_NONE = 0,
    PBFT_VC_REQUEST_TIMEOUT,  /* a request it holds waited too long: it suspects the primary */
    PBFT_VC_NEW_VIEW_TIMEOUT, /* a quorum changed view, and the new primary did not deliver */
    PBFT_VC_PEERS_ASKED,      /* f+1 peers sent VIEW-CHANGEs for a later view */
    PBFT_VC_LATER_VIEW,       /* f+1 peers were seen working in a later view */
    PBFT_VC_RESTART,          /* restarted in the middle of a view change */
    PBFT_VC_PRIMARY_RESTART,  /* restarted as the primary of its view: it cannot lead it again */
    PBFT_VC_PRIMARY_LEFT,     /* the primary of the view asked for the next one itself */
} pbft_vc_cause;

const char *pbft_vc_cause_text(pbft_vc_cause cause);

typedef struct pbft_status {
    uint64_t view;
    uint32_t primary;
    bool in_view_change;
    uint64_t executed;        /* last executed seq */
    uint64_t stable_seq;      /* low watermark h */
    uint64_t next_seq;        /* primary: next seq to assign */
    uint64_t view_changes;    /* views entered since start */
    uint64_t dropped;         /* invalid messages dropped */
    uint64_t votes_redundant; /* votes beyond a quorum, dropped unverified */
    /* Pre-prepares dropped because their timestamp was ahead of our wall
     * clock by more than clock_skew_ms_max, and the offset (timestamp minus
     * our clock) of the last one so dropped, or held as too old (negative). */
    uint64_t ts_rejected;
    int64_t ts_offset_ms;
    /* Held requests relayed to the primary (relay.c), and, as primary,
     * requests taken on the relays of f+1 replicas. */
    uint64_t relays_sent;
    uint64_t relays_taken;
    /* State transfer (transfer.c). As asker: the checkpoint being fetched
     * (0: none), its export's size and how much of it arrived; chunks
     * received, chunks dropped because their hash did not match the
     * manifest (a faulty peer's), transfers completed, and transfers whose
     * assembled state was refused at the end (with correct chunk checks
     * and at most f faulty peers, never). As server: chunks sent and their
     * bytes. */
    uint64_t xfer_seq;
    uint64_t xfer_total_bytes;
    uint64_t xfer_done_bytes;
    uint64_t xfer_chunks_in;
    uint64_t xfer_chunks_bad;
    uint64_t xfer_completed;
    uint64_t xfer_refused;
    uint64_t xfer_bytes_in;
    uint64_t xfer_chunks_out;
    uint64_t xfer_bytes_out;
    /* The retained log: batches this replica replayed from peers' logs, and
     * served from its own. */
    uint64_t log_replayed;
    uint64_t log_replayed_bytes;
    uint64_t log_served;
    /* Divergence: the checkpoint at which this replica's state digest
     * disagreed with a quorum's (0: none now; it then neither executes nor
     * votes until state transfer replaces its state), both digests of the
     * last one, and how many times since start. */
    uint64_t diverged_seq;
    uint8_t diverged_own[PROTO_DIGEST_BYTES];
    uint8_t diverged_quorum[PROTO_DIGEST_BYTES];
    uint64_t divergences;
    uint64_t clients;       /* entries in the client table (PBFT 4.1) */
    pbft_vc_cause vc_cause; /* of the latest view change (PBFT_VC_NONE: none yet) */
    /* With PBFT_VC_REQUEST_TIMEOUT: the oldest request it held then, and
     * how long it had waited. */
    char vc_request_client[PBFT_CLIENT_NAME_BYTES_MAX];
    uint64_t vc_request_number;
    uint64_t vc_request_waited_ms;
    uint8_t state_digest[PROTO_DIGEST_BYTES]; /* digest of the last own checkpoint */
    uint64_t state_digest_seq;
} pbft_status;

/* Creates a node in view 0 with empty state. cfg is copied (cluster_id too).
 * TB_ERR_INVALID when the configuration breaks a limit. */
int pbft_node_create(const pbft_config *cfg, uint64_t now_ms, pbft_node **out);
void pbft_node_free(pbft_node *node);

/* Restart: feed every stored record back (any order) after create and
 * before the first step/tick, then call pbft_node_restore_done. The
 * application must already hold the durable state that was committed with
 * them. Malformed records return TB_ERR_INVALID (storage is corrupt). */
int pbft_node_restore_record(pbft_node *node, pbft_record_kind kind, uint64_t seq,
                             const char *client, const uint8_t *data, size_t len);
int pbft_node_restore_done(pbft_node *node, uint64_t now_ms);

/* A packed Message from a replica or client. Bad input is counted and
 * dropped, never fatal: the return value is 0 or a negative tb_err saying
 * why it was dropped (for logging). */
int pbft_node_step(pbft_node *node, const pbft_from *from, const uint8_t *data, size_t len);

/* The host's link to replica `peer` has just opened (again): messages sent
 * to it while it was down were lost, so the node resends what the peer
 * still needs from it (see consensus/retransmit.c). Goes into the next
 * ready like any output. */
void pbft_node_peer_connected(pbft_node *node, uint32_t peer);

/* Asks the peers for what they executed beyond this replica (committed
 * certificates, or their stable checkpoint's state). For a host that was
 * away without its links closing (a hold on a full disk): its peers have
 * no reason to resend what it missed. */
void pbft_node_fetch(pbft_node *node);

/* The host has handled every input it had for now (the end of its event
 * loop's turn): the primary proposes every request that waits, as far as
 * the pipeline (inflight_batches_max) allows, without waiting out
 * batch_delay_ms. A host that calls this before each ready gets batches
 * that grow with load and no added delay for a lone request; one that
 * never calls it batches by batch_delay_ms alone. */
void pbft_node_flush(pbft_node *node);

/* A clean stop: the next ready records every accepted pre-prepare (lazy
 * ones too) and marks the meta record clean, so that the replica, once
 * restarted from those records, knows every vote it sent and need not
 * abstain (early votes, above). After this the node takes no more input:
 * step and tick do nothing. The host persists that ready and exits. */
void pbft_node_stop(pbft_node *node);

/* 0, or the error the application returned when it could not execute a
 * batch or take a checkpoint (a local fault: the disk or the store's map
 * is full, an I/O error). The node stops there rather than diverge: that
 * batch is not executed, step and tick do nothing, and no ready follows,
 * so the host must not commit the application's pending writes (they may
 * be partial). The host stops, saying why; restarted once the fault is
 * cleared, the replica resumes from its last durable commit like after a
 * crash. pbft_node_create returns such an error directly. */
int pbft_node_fault(const pbft_node *node);

/* Advance time. Fires batching, request and view-change timers. now_ms
 * is a monotonic clock (CLOCK_MONOTONIC in a daemon): timers must neither
 * freeze when the wall clock is stepped back nor all fire when it is
 * stepped forward. The value passed to pbft_node_create and
 * pbft_node_restore_done is on the same clock. */
void pbft_node_tick(pbft_node *node, uint64_t now_ms);

/* The wall clock (CLOCK_REALTIME), which the protocol agrees on: the
 * primary stamps batches with it, and a backup accepts a stamp only within
 * clock_skew_ms_max of its own (PBFT 4.6). Set it before each step and
 * tick; until it is set the timer clock stands in (the simulator and unit
 * tests run one clock). It may go backwards; agreed time still never
 * does. */
void pbft_node_set_wall(pbft_node *node, uint64_t wall_ms);
/* Earliest time at which tick has something to do (UINT64_MAX: none). */
uint64_t pbft_node_next_deadline(const pbft_node *node);

/* True when there is something to persist, send or report. */
bool pbft_node_has_ready(const pbft_node *node);
/* Hands out the accumulated outputs; see the contract at the top. */
void pbft_node_ready(pbft_node *node, pbft_ready *rd);
void pbft_node_advance(pbft_node *node, pbft_ready *rd);
/* The commits of the ready with this id, and of every ready before it,
 * are durable (step 4 of the contract above). */
void pbft_node_durable(pbft_node *node, uint64_t ready_id);

void pbft_node_status(const pbft_node *node, pbft_status *st);

/* Quorum arithmetic. f = (n-1)/3. Two quorums must intersect in at least
 * f+1 replicas (so in one correct replica): 2q - n >= f+1, hence
 * q = ceil((n+f+1)/2). That is 2f+1 exactly when n = 3f+1, and more than
 * 2f+1 otherwise (n=5: f=1 but q=4). */
static inline uint32_t pbft_f(uint32_t n) {
    return (n - 1) / 3;
}
static inline uint32_t pbft_quorum(uint32_t n) {
    return (n + pbft_f(n) + 2) / 2;
}

#endif
