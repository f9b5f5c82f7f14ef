/* Private state of the PBFT core, shared by the files of consensus/.
 * Files, in the order messages flow through them:
 *   node.c        creation, dispatch of step/tick, ready/advance, restore
 *   out.c         outputs (messages, records) and signing helpers
 *   requests.c    client requests, the pending table and the client table
 *   normal.c      pre-prepare, prepare, commit (PBFT 4.2)
 *   execute.c     in-order execution, replies, certificates of results
 *   checkpoint.c  checkpoints, stability, garbage collection (PBFT 4.3)
 *   view_change.c view change and new view (PBFT 4.4)
 *   retransmit.c  resending to a peer whose link came back
 *   transfer.c    state transfer (PBFT 6.2) in chunks checked on arrival */
#ifndef PBFT_INTERNAL_H
#define PBFT_INTERNAL_H

#include <stdio.h>
#include <stdlib.h>

#include "consensus/pbft.h"
#include "proto/lthash.h"
#include "proto/tb_err.h"
#include "proto/twinbft.pb-c.h"

/* Invariant checks stay on in release builds: a replica that notices it has
 * broken its own invariant must stop rather than continue with bad state. */
#define PBFT_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#ifdef PBFT_PLANTED_BUGS
#define PBFT_BUG(node, b) (((node)->cfg.bugs & (b)) != 0)
#else
#define PBFT_BUG(node, b) 0
#endif

/* A signed message we keep: its packed Signed bytes and what it says. */
typedef struct pbft_vote {
    bool has;
    uint64_t view;
    uint8_t digest[PROTO_DIGEST_BYTES];
    uint8_t *sbytes; /* packed Signed */
    size_t slen;
} pbft_vote;

typedef struct pbft_slot {
    uint64_t seq; /* 0: unused */
    /* Current-view state (reset on view change). */
    bool has_pp;
    bool waiting;  /* pre-prepare held until its requests arrive from clients */
    bool stale_ts; /* ... or, also, because its timestamp was older than the
                    * clock skew allows when it reached us (normal.c) */
    uint64_t pp_view;
    uint64_t ts; /* batch timestamp (0 for the null batch) */
    uint8_t digest[PROTO_DIGEST_BYTES];
    uint8_t *pp; /* packed Signed pre-prepare */
    size_t pp_len;
    uint8_t *batch;
    size_t batch_len;
    pbft_vote *prepares; /* [n], by sender */
    pbft_vote *commits;  /* [n], by sender */
    bool sent_commit;
    bool prepared; /* in pp_view */
    /* Across views. */
    uint8_t *pc; /* packed PreparedCert of the highest view, or NULL */
    size_t pc_len;
    uint64_t pc_view;
    uint8_t pc_digest[PROTO_DIGEST_BYTES];
    uint8_t *cc; /* packed CommittedCert once committed-local, or NULL */
    size_t cc_len;
    uint8_t cc_digest[PROTO_DIGEST_BYTES];
    uint8_t *cc_batch; /* the committed batch */
    size_t cc_batch_len;
    uint64_t cc_view;
    bool dirty; /* must be persisted in the next ready */
    bool lazy;  /* dirty with nothing that needs a commit of its own: only an
                 * accepted pre-prepare, which early votes never rely on
                 * (normal.c); written with the next ready that commits */
} pbft_slot;

/* A checkpoint at one seq: ours (once executed) and peers' signed votes. */
typedef struct pbft_ckpt {
    bool used;
    uint64_t seq;
    bool own;
    uint8_t own_digest[PROTO_DIGEST_BYTES];
    uint8_t *record; /* packed CheckpointRecord (serves state transfer) */
    size_t record_len;
    pbft_vote *votes; /* [n] */
} pbft_ckpt;

typedef struct pbft_client {
    char *name;
    uint64_t number; /* last executed request number */
    uint8_t *entry;  /* packed ClientEntry */
    size_t entry_len;
    /* The entry that clients_hash holds for this client (NULL: none), which
     * may be older than entry: the hash is brought up to date only when a
     * digest is asked for (clients_digest), see requests.c. */
    uint8_t *hashed;
    size_t hashed_len;
    bool stale; /* entry is not the one hashed */
    /* Our signed ResultRoot for entry's batch, kept once a retransmission
     * made us sign it (NULL: none yet): a client that repeats its last
     * request gets the same reply, not a fresh signature each time. Local,
     * like every signature: not in the digest, not persisted. */
    uint8_t *sroot;
    size_t sroot_len;
} pbft_client;

/* A signed ResultRoot kept for retransmissions (seq 0: empty). */
typedef struct pbft_sroot {
    uint64_t seq;
    uint8_t *data;
    size_t len;
} pbft_sroot;

typedef struct pbft_pending {
    char *client;
    uint64_t number;
    uint8_t *op;
    size_t op_len;
    bool priority;
    uint64_t arrival;    /* arrival order, for FIFO batching */
    uint64_t arrival_ms; /* for the batching delay */
    uint64_t proposed;   /* seq it was proposed at by us as primary, 0 if not */
    uint64_t relayed;    /* 1 + the view in which we relayed it to the primary (0: not yet) */
    /* The request this one replaced before we executed it (0: none). A
     * client sends its next request once a quorum answered the last, so a
     * replica behind the quorum may hold the next one while a batch still
     * in flight names the last: that batch must not wait for it. */
    uint64_t prev_number;
    uint8_t *prev_op;
    size_t prev_op_len;
} pbft_pending;

/* The requests one replica relayed to us as primary (relay.c): digests of
 * the last PBFT_RELAY_RING, the oldest overwritten first. tag holds each
 * digest's first 8 bytes, for the scan. Allocated on its first relay. */
enum { PBFT_RELAY_MAX = 1024, PBFT_RELAY_RING = 2 * PBFT_RELAY_MAX };
typedef struct pbft_relay_ring {
    uint64_t *tag;
    uint8_t (*digest)[PROTO_DIGEST_BYTES];
    size_t next, used;
} pbft_relay_ring;

typedef struct pbft_buffered {
    pbft_from from;
    char client[PBFT_CLIENT_NAME_BYTES_MAX];
    uint8_t *data;
    size_t len;
} pbft_buffered;

/* State transfer as asker (transfer.c): the checkpoint being fetched, its
 * proof and manifest, each peer's chunk list (until f+1 agree), and which
 * chunks are stored, asked for (of whom, when) or missing. */
typedef struct pbft_xfer {
    uint64_t seq; /* 0: none */
    uint8_t state_digest[PROTO_DIGEST_BYTES];
    uint8_t **proof; /* [n] packed Signed checkpoints proving it */
    size_t *proof_len;
    uint8_t *meta; /* the first proven packed Manifest */
    size_t meta_len;
    bool *voted;                         /* [n] sent a manifest for seq */
    uint8_t (*vote)[PROTO_DIGEST_BYTES]; /* [n] digest of its chunk list */
    uint8_t **lists;                     /* [n] its packed Manifest */
    size_t *list_len;
    bool *bad;         /* [n] sent a chunk that did not match */
    uint64_t deadline; /* before adoption: when to ask for manifests again */
    bool adopted;      /* f+1 sent the same list: chunks are being fetched */
    uint8_t list[PROTO_DIGEST_BYTES];
    uint64_t total, done_bytes;
    uint32_t chunk_bytes, n_chunks, received, outstanding, next, rr;
    uint8_t (*hashes)[PROTO_DIGEST_BYTES];
    uint8_t *have; /* [n_chunks] 0 missing, 1 asked for, 2 stored */
    uint64_t *asked_at;
    uint32_t *asked_of;
    uint64_t progress_at; /* the last chunk stored */
    uint8_t *buf;         /* the import, for a whole-buffer application */
} pbft_xfer;

/* The last stable checkpoint whose manifest we served, with what proves
 * it (transfer.c served_keep). */
typedef struct pbft_served {
    uint64_t seq;    /* 0: none */
    uint8_t *record; /* packed CheckpointRecord */
    size_t record_len;
    uint8_t **proof; /* [n] packed Signed */
    size_t *proof_len;
} pbft_served;

/* The export of one checkpoint, for a whole-buffer application. */
typedef struct pbft_memx {
    uint64_t seq; /* 0: none */
    uint32_t chunk_bytes;
    uint8_t *buf;
    size_t len, n;
    uint8_t (*hashes)[PROTO_DIGEST_BYTES];
} pbft_memx;

typedef struct pbft_out {
    pbft_msg *msgs;
    size_t n_msgs, cap_msgs;
    pbft_record *records;
    size_t n_records, cap_records;
    pbft_executed *executed;
    size_t n_executed, cap_executed;
    pbft_stable *stable;
    size_t n_stable, cap_stable;
    bool transferred;
    uint64_t transfer_seq;
    bool meta_dirty;
} pbft_out;

struct pbft_node {
    pbft_config cfg;
    uint8_t cluster_id[64];
    uint32_t n, f, q;
    uint64_t now; /* the timer clock (pbft_node_tick): monotonic */
    /* The wall clock (pbft_node_set_wall), for batch timestamps only; the
     * timer clock stands in until a host sets it. */
    uint64_t wall;
    bool wall_known;
    uint64_t ts_rejected; /* pre-prepares dropped for their timestamp */
    int64_t ts_offset_ms; /* of the last one: its timestamp minus our wall clock */

    /* Views. */
    uint64_t view;
    bool in_vc;
    bool nudged; /* in view change: asked the new primary to resend NEW-VIEW */
    /* Since it started, this node took a primary's pre-prepare, entered a
     * view by NEW-VIEW, or fetched a batch committed in its view: it has
     * seen the cluster work, so the primary of its view asking for the
     * next view alone does not move it (maybe_join). */
    bool seen_work;
    uint64_t vc_deadline; /* in view change: when to give up on this view */
    uint64_t vc_timeout;  /* current (doubling) view-change timeout */
    uint64_t view_changes;
    pbft_vote *vcs;      /* [n] latest valid VIEW-CHANGE per replica (view in .view) */
    uint64_t *seen_view; /* [n] highest view of signed normal-case traffic from each replica */
    uint8_t *nv;         /* packed Signed NEW-VIEW of the current view, for resends (every replica
                          * of the view keeps it: the primary may restart and lose it) */
    size_t nv_len;

    /* Log: slots for h < seq <= h + L, indexed by seq % L. */
    pbft_slot *slots;
    uint64_t h;
    uint8_t h_digest[PROTO_DIGEST_BYTES];
    uint8_t **h_proof; /* packed Signed checkpoints proving h, [n] */
    size_t *h_proof_len;
    uint64_t executed;
    uint64_t last_ts;   /* consensus time of the executed prefix */
    uint64_t next_seq;  /* primary: next seq to assign */
    uint64_t pp_ts_max; /* highest batch timestamp proposed or accepted */

    /* Checkpoints in (h, h + L], indexed by (seq / K) % (L / K + 1). */
    pbft_ckpt *ckpts;
    size_t n_ckpts;
    uint64_t *peer_ckpt; /* [n] highest checkpoint seq each peer has signed */

    /* Clients. */
    pbft_client *clients; /* sorted by name */
    size_t n_clients, cap_clients;
    proto_lthash clients_hash; /* over the hashed entries, see pbft_client */
    size_t n_clients_stale;
    /* The signed roots of the last log_window executed batches, indexed by
     * seq % log_window, so that a retransmitted request costs no signature
     * (execute.c resend_reply). */
    pbft_sroot *sroots;
    pbft_pending *pending; /* sorted by client name; one per client */
    size_t n_pending, cap_pending;
    uint64_t arrivals;
    uint64_t req_deadline;   /* 0: no request timer */
    uint64_t req_since;      /* waiting counts from here in this view (its start) */
    bool req_fetched;        /* the timer fired once: we fetched, next fire = view change */
    uint64_t relay_deadline; /* 0: nothing to relay to the primary (relay.c) */
    pbft_relay_ring *relay;  /* [n] as primary: what each replica relayed */
    uint64_t relays_sent;    /* requests we relayed */
    uint64_t relays_taken;   /* requests we took as primary on f+1 relays */

    /* State transfer. */
    uint64_t fetch_deadline; /* 0: no fetch outstanding */
    pbft_xfer xfer;          /* as asker */
    pbft_memx memx[2];       /* as server, for a whole-buffer application */
    pbft_served served;      /* as server */
    uint64_t xfer_chunks_in, xfer_chunks_bad, xfer_completed, xfer_refused, xfer_bytes_in;
    uint64_t xfer_chunks_out, xfer_bytes_out;
    uint64_t log_replayed, log_replayed_bytes, log_served;
    bool log_stalled;          /* a peer's log did not move us: the next FETCH asks for state */
    Twinbft__LogEntry **log_q; /* a peer's log being replayed, a checkpoint per ready */
    size_t log_q_n, log_q_at;
    uint32_t *chunks_served;    /* [n] chunk requests answered this period, per peer */
    uint64_t *chunks_period_at; /* [n] when that period began */

    /* Messages for a later view or beyond the window, retried later. */
    pbft_buffered *future;
    size_t n_future;

    pbft_out out;
    uint64_t dropped;
    uint64_t votes_redundant; /* votes beyond a quorum, dropped unverified */
    pbft_vc_cause vc_cause;   /* why the latest view change started */
    char vc_request_client[PBFT_CLIENT_NAME_BYTES_MAX];
    uint64_t vc_request_number, vc_request_waited_ms;
    uint64_t oversize;         /* outgoing messages too large for a frame */
    size_t *future_bytes;      /* [n] bytes buffered per sender */
    uint64_t *fetch_served_at; /* [n] when we last answered each peer's FETCH */
    uint64_t *resent_at;       /* [n] when we last resent to each peer (its link opened) */
    uint64_t *nv_sent_at;      /* [n] when we last answered each peer's late VIEW-CHANGE */
    /* Early votes (pbft.h): the view of the last meta record handed out in
     * a ready, durable once the host says that ready is (pbft_node_durable);
     * and the view a restart from storage abstains in. */
    uint64_t ready_id;      /* of the last ready handed out */
    bool meta_out;          /* a meta record was handed out and is not known durable */
    uint64_t meta_out_id;   /* the ready that holds it */
    uint64_t meta_out_view; /* its view */
    bool meta_out_in_vc;    /* and whether it was in a view change */
    bool durable_known;     /* a meta record is durable */
    uint64_t durable_view;  /* the view of the last durable meta record */
    bool durable_in_vc;     /* it says: in a view change to durable_view */
    bool restarted;         /* restored from stored records */
    uint64_t abstain_view;  /* when restarted: the view it restarted in */
    bool out_early;         /* messages queued now are early (out_msg) */
    bool stopped;           /* pbft_node_stop: no more input; meta says clean */
    int fault;              /* pbft_node_fault: the application failed; no more input */
    /* Divergence (checkpoint.c diverge): the checkpoint at which our state
     * digest disagreed with a quorum's (0: none since the last transfer),
     * our digest and theirs, and how often it happened. */
    uint64_t diverged_seq;
    uint8_t diverged_own[PROTO_DIGEST_BYTES], diverged_quorum[PROTO_DIGEST_BYTES];
    uint64_t divergences;
    bool restored_clean; /* the stored meta record said clean_stop */
    bool replaying;      /* inside replay_future: do not start another */
    bool replay_pending; /* view or window moved: replay buffered messages at top level */

    /* Records handed to pbft_node_restore_record, applied by restore_done. */
    struct pbft_restore *restore;
};

/* out.c */
void out_msg(pbft_node *node, uint32_t to, const char *client, const Twinbft__Message *m);
/* Bulk answers to one peer (a FETCH reply, resends, a NEW-VIEW) at most once
 * per quarter request timeout, so that a faulty peer cannot make us repeat
 * them in a loop: true (and *at = now) when one may go out now. */
bool answer_allowed(const pbft_node *node, uint64_t *at);
/* A packed Signed of ours (sb) as a Message of that kind (prepare, commit,
 * checkpoint, view change, new view) to `to`. */
void out_signed(pbft_node *node, uint32_t to, Twinbft__Message__KindCase kind, const uint8_t *sb,
                size_t slen);
void send_pre_prepare(pbft_node *node, uint32_t to, const pbft_slot *sl);
void out_record(pbft_node *node, pbft_record_kind kind, uint64_t seq, const char *client, bool del,
                uint8_t *data, size_t len); /* takes data */
int out_sign(pbft_node *node, const Twinbft__Body *body, uint8_t **sbytes, size_t *slen);
/* The signature alone (the body stays packed). */
int verify_signature(pbft_node *node, const Twinbft__Signed *s);
int verify_signed(pbft_node *node, const Twinbft__Signed *s, Twinbft__Body **body);
int verify_signed_bytes(pbft_node *node, const uint8_t *sbytes, size_t slen, uint32_t *signer,
                        Twinbft__Body **body);
uint8_t *pack_signed(const Twinbft__Signed *s, size_t *len);
uint32_t count_votes(pbft_node *node, Twinbft__Signed *const *votes, size_t n,
                     Twinbft__Body__KindCase kind, uint64_t view, uint64_t seq,
                     const uint8_t *digest, uint32_t skip);
void out_clear(pbft_out *out);
void vote_set(pbft_vote *v, uint64_t view, const uint8_t *digest, uint8_t *sbytes, size_t slen);
void vote_clear(pbft_vote *v);
bool digest_ok(const ProtobufCBinaryData *d);
uint8_t *dup_bytes(const void *p, size_t len);

/* node.c */
uint32_t primary_of(const pbft_node *node, uint64_t view);
pbft_slot *slot_get(pbft_node *node, uint64_t seq); /* NULL outside (h, h+L] */
void slot_reset_view(pbft_node *node, pbft_slot *s);
void slot_clear(pbft_node *node, pbft_slot *s);
void meta_dirty(pbft_node *node);
void buffer_future(pbft_node *node, const pbft_from *from, const uint8_t *data, size_t len);
void replay_future(pbft_node *node);
void batch_digest(const uint8_t *batch, size_t len, uint8_t out[PROTO_DIGEST_BYTES]);

/* requests.c */
void on_request(pbft_node *node, const pbft_from *from, const Twinbft__Request *r);
pbft_pending *pending_find(pbft_node *node, const char *client);
void pending_remove_upto(pbft_node *node, const char *client, uint64_t number);
pbft_client *client_find(pbft_node *node, const char *client);
void client_update(pbft_node *node, const char *client, uint64_t number, uint8_t *entry,
                   size_t len); /* takes entry */
void clients_replace(pbft_node *node, Twinbft__ClientEntry **entries, size_t n);
void clients_digest(pbft_node *node, uint8_t out[PROTO_DIGEST_BYTES]);
void client_entry_free(pbft_client *c);
void request_timer_update(pbft_node *node);
/* A request's well-formedness, whoever brought it. */
bool request_wellformed(const Twinbft__Request *r);
/* Holds r for ordering (one per client: it replaces an older one); false
 * when the table is full. */
bool pending_put(pbft_node *node, const Twinbft__Request *r);
void resend_reply(pbft_node *node, pbft_client *c);

/* relay.c */
/* When the oldest request not yet relayed in this view has waited half the
 * request timeout (0: none, or we are the primary or changing view). */
uint64_t relay_deadline(const pbft_node *node);
/* Whether this replica relays now (a backup, not changing view, not diverged). */
bool relays(const pbft_node *node);
void relay_held(pbft_node *node);
void on_relay(pbft_node *node, const pbft_from *from, const Twinbft__Relay *m);
void relay_free(pbft_node *node);

/* normal.c */
/* Proposes full batches, the safety lane, and requests that waited out the
 * batching delay; with flush, every request that waits (as far as the
 * pipeline window allows). */
void maybe_propose(pbft_node *node, bool flush);
uint64_t batch_deadline(const pbft_node *node);
void on_pre_prepare(pbft_node *node, const pbft_from *from, const Twinbft__PrePrepareMsg *m,
                    const uint8_t *raw, size_t raw_len);
void on_prepare(pbft_node *node, const pbft_from *from, const Twinbft__Signed *s,
                const uint8_t *raw, size_t raw_len);
void on_commit(pbft_node *node, const pbft_from *from, const Twinbft__Signed *s, const uint8_t *raw,
               size_t raw_len);
void accept_pre_prepare(pbft_node *node, pbft_slot *sl, uint64_t view, const uint8_t *digest,
                        uint8_t *pp, size_t pp_len, const uint8_t *batch, size_t batch_len);
void recheck_waiting(pbft_node *node);
bool batch_bytes_ok(const pbft_node *node, const uint8_t *data, size_t len);
/* Early votes: true when this replica must not vote PRE-PREPARE or PREPARE
 * in view (it restarted in it and may have forgotten a vote); true from
 * early_ok when a vote in view may go out before the ready's commit. */
bool abstains(const pbft_node *node, uint64_t view);
bool early_ok(const pbft_node *node, uint64_t view);
void slot_progress(pbft_node *node, pbft_slot *sl);

/* execute.c */
void try_execute(pbft_node *node);
void execute_committed(pbft_node *node, uint64_t seq, uint64_t view, const uint8_t *digest,
                       const uint8_t *batch, size_t batch_len);

/* checkpoint.c */
void take_checkpoint(pbft_node *node);
/* The application reported a local fault (storage): see pbft_node_fault. */
void node_fault(pbft_node *node, int rc);
uint64_t wall_now(const pbft_node *node);
void on_checkpoint(pbft_node *node, const Twinbft__Signed *s, const Twinbft__Body *body,
                   const uint8_t *sbytes, size_t slen);
pbft_ckpt *ckpt_get(pbft_node *node, uint64_t seq, bool create);
void advance_stable(pbft_node *node, uint64_t seq, const uint8_t *digest, uint8_t **proof,
                    size_t *proof_len);
int verify_ckpt_proof(pbft_node *node, uint64_t seq, const uint8_t *digest,
                      Twinbft__Signed *const *proof, size_t n);
void state_digest(const uint8_t app[PROTO_DIGEST_BYTES], const uint8_t clients[PROTO_DIGEST_BYTES],
                  uint64_t last_ts, uint8_t out[PROTO_DIGEST_BYTES]);

/* view_change.c */
void start_view_change(pbft_node *node, uint64_t view, pbft_vc_cause cause);
void view_change_timeout(pbft_node *node);
void nudge_primary(pbft_node *node, uint64_t view);
void note_later_view(pbft_node *node, uint32_t from, uint64_t view);
void on_view_change(pbft_node *node, const Twinbft__Signed *s, const Twinbft__Body *body,
                    const uint8_t *sbytes, size_t slen);
void on_new_view(pbft_node *node, const Twinbft__Signed *s, const Twinbft__Body *body,
                 const uint8_t *sbytes, size_t slen);
void view_entered_progress(pbft_node *node);
int validate_prepared_cert(pbft_node *node, const Twinbft__PreparedCert *pc, uint64_t vc_view,
                           uint64_t low, uint64_t *seq, uint64_t *view, uint8_t *digest);

/* restore.c */
void restore_free(pbft_node *node); /* records fed but never applied */

/* transfer.c */
void start_fetch(pbft_node *node);
void on_fetch(pbft_node *node, const pbft_from *from, const Twinbft__Fetch *f);
void on_fetch_reply(pbft_node *node, const pbft_from *from, const Twinbft__FetchReply *r);
/* CHUNK-FETCH and CHUNK. */
void on_transfer_msg(pbft_node *node, const pbft_from *from, const Twinbft__Message *m);
void xfer_reset(pbft_node *node);
void xfer_tick(pbft_node *node);
uint64_t xfer_deadline(const pbft_node *node); /* UINT64_MAX: none */
void transfer_status(const pbft_node *node, pbft_status *st);
void transfer_free(pbft_node *node);
/* Replays the next checkpoint's worth of a peer's log (a tick is due at
 * once while some is left: log_pending). */
void log_tick(pbft_node *node);
/* A committed slot falling below the stable checkpoint goes to the retained
 * log (a PBFT_REC_LOG record), with the checkpoint's proof when given. */
void log_keep(pbft_node *node, const pbft_slot *s, uint8_t *const *proof, const size_t *proof_len);
int validate_committed_cert(pbft_node *node, const Twinbft__CommittedCert *cc, uint64_t *seq,
                            uint64_t *view, uint8_t *digest);

#endif
