/* The replica daemon (see daemon.h): start-up, the ready loop, links. */
#include "replica/daemon.h"

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <time.h>

#include <event2/event.h>
#include <lmdb.h>

#include "client/link.h"
#include "consensus/pbft.h"
#include "proto/crypto.h"
#include "proto/frame.h"
#include "proto/hex.h"
#include "proto/pki.h"
#include "proto/tb_assert.h"
#include "proto/tb_err.h"
#include "replica/clients.h"
#include "replica/config.h"
#include "replica/http.h"
#include "replica/storage.h"
#include "statemachine/sm.h"

/* The LMDB map: address space, not disk (without MDB_WRITEMAP the file
 * grows only as pages are written). It bounds the store, so it is made
 * large enough that the disk fills first: a million twins with months of
 * history need several GiB, and 1 GiB (the old size) ended in MAP_FULL. */
#define REP_MAP_BYTES ((size_t)64 << 30)

enum {
    REP_CLOCK_LOG_MS = 10000, /* clock trouble and revoked clients are logged at most this often */
    /* Below this much free space, an I/O error of a commit is taken for a
     * full disk (LMDB turns a short write into EIO). */
    REP_DISK_LOW_MIB = 4,
    /* A replica holding on a full disk resumes once this much is free, and
     * looks every REP_HOLD_CHECK_MS. A hold within REP_HOLD_AGAIN_MS of the
     * last resume means the space was not enough (a catch-up needs more
     * than a turn): the next resume waits for twice as much, up to
     * REP_DISK_RESUME_MIB_MAX, instead of cycling every second. */
    REP_DISK_RESUME_MIB = 4 * REP_DISK_LOW_MIB,
    REP_DISK_RESUME_MIB_MAX = 1024,
    REP_HOLD_CHECK_MS = 1000,
    REP_HOLD_AGAIN_MS = 60000,
    REP_TICK_MS_MAX = 100, /* the core is ticked at least this often */
    /* One Subscribe is answered with at most this many pushes, and fewer
     * once this much is queued on the link; the ack then says more = true
     * and the subscriber asks again from the last one it got. */
    REP_SUBSCRIBE_PUSHES_MAX = 1024,
    /* Answers (queries, status, subscription rounds) queued on one client
     * link and not yet taken by the client: beyond this, queries and status
     * requests on that link are dropped unanswered (the client asks again)
     * and subscription rounds end early, so that a client pipelining
     * queries it never reads cannot hold the loop or gigabytes of memory. */
    REP_CLIENT_OUTPUT_BYTES_MAX = 8 * 1024 * 1024,
    REP_SUBSCRIBE_OUTPUT_BYTES_MAX = REP_CLIENT_OUTPUT_BYTES_MAX,
    /* Group commit: the frames of one event-loop turn are stepped into the
     * core and then persisted in one durable commit, whose messages go out
     * together. A turn ends when no link has more to read, or after this
     * many frames or milliseconds, so a link that never runs dry cannot
     * hold back the commit (and every reply behind it). */
    REP_TURN_FRAMES_MAX = 1024,
    REP_TURN_MS_MAX = 2,
    /* Frames that arrive while a turn's commit waits for its early
     * messages to be written are held, up to this many bytes; beyond it
     * they are dropped (peers resend, clients retry). */
    REP_HELD_BYTES_MAX = 64 * 1024 * 1024,
    /* Event priorities: links and timers run first; the group commit and
     * the links' coalesced writes run when nothing more is readable. */
    /* What a member's unfinished frames may hold (client/budget.h): two of
     * the largest, its link and the one that replaces it when it reconnects
     * before this replica has seen the old one close. A faulty member
     * opening many links gains nothing by it. */
    REP_MEMBER_BUFFER_BYTES_MAX = 2 * PROTO_FRAME_BYTES_MAX,
    REP_PRIORITIES = 3,
    REP_PRIORITY_DRIVE = REP_PRIORITIES - 1,
};

/* A frame held while a commit is pending (see daemon.commit_pending). */
typedef struct held_frame {
    struct held_frame *next;
    size_t len;
    uint8_t *data; /* after the peer's name, in the same allocation */
    char peer[];
} held_frame;

_Static_assert(REP_MEMBERS_MAX <= 64, "daemon.reconnected has a bit per replica");

typedef struct daemon {
    rep_daemon_options opt;
    rep_cluster cluster;
    struct event_base *base;
    struct event *timer, *sig_term, *sig_int;
    struct event *drive_ev; /* the end of a turn: persist, send, advance */
    bool drive_pending;     /* drive_ev is active */
    /* A turn in two halves (drive, then finish_commit): the ready is out
     * and its early messages are written while commit_ev waits; the core
     * is not touched until the commit is done. */
    struct event *commit_ev;
    bool commit_pending;
    uint64_t commit_wait_ms; /* when commit_ev was made active */
    pbft_ready rd;
    struct held_frame *held, **held_tail; /* frames that arrived meanwhile, in order */
    size_t held_bytes;
    uint64_t held_dropped;
    bool tick_due; /* the timer fired meanwhile */
    /* Holding on a full disk (enter_hold): the core is not fed, reads and
     * status are still answered, hold_ev looks for free space. */
    bool holding;
    struct event *hold_ev;
    uint64_t holds;         /* times it held since start */
    uint32_t resume_mib;    /* free space the next resume waits for */
    uint64_t resumed_ms;    /* monotonic time of the last resume (0: none) */
    uint64_t reconnected;   /* peers whose link opened meanwhile, one bit per id */
    uint32_t turn_frames;   /* frames stepped since the last drive */
    uint64_t turn_start_ms; /* when the first of them was */
    tb_tls_ctx *tls;
    tb_tls_listener *listener;
    tb_tls_link *peers[REP_MEMBERS_MAX]; /* our outgoing link to each replica */
    rep_clients *clients;                /* incoming client links, by principal */
    tb_budget *client_budget;            /* unfinished frames of client links */
    tb_budget *member_budget;            /* ... of members' links */
    proto_key *key;
    proto_pubkey *pubs[REP_MEMBERS_MAX];
    uint8_t pubs_raw[REP_MEMBERS_MAX][PROTO_PUBKEY_BYTES]; /* the same, pinned on links */
    rep_storage *storage;
    pbft_node *node;
    rep_http *http;
    rep_counters counters;
    uint64_t started_ms;
    uint64_t skew_ms;               /* the core's clock_skew_ms_max */
    uint64_t revocations_seen;      /* sm_stats.revocations when links were last swept */
    uint64_t revoked_refused;       /* handshakes of revoked identities refused */
    uint64_t revoked_log_ms;        /* when the last of them was logged */
    uint64_t refused_log_ms;        /* when a refused client frame was last logged */
    uint64_t logged_ts_rejected;    /* timestamp rejections last reported in the log */
    uint64_t logged_clock_ms;       /* when (timer clock) */
    uint64_t logged_xfer_seq;       /* state transfer: the checkpoint last named, */
    uint64_t logged_xfer_completed; /* ... transfers, bad chunks and refusals */
    uint64_t logged_xfer_bad;       /* last reported in the log */
    uint64_t logged_xfer_refused;
    uint64_t logged_relays_sent;  /* relays last reported in the log, sent ... */
    uint64_t logged_relays_taken; /* ... and taken as primary */
    uint64_t logged_relays_ms;    /* when (timer clock) */
    uint64_t logged_diverged_seq; /* the divergence last reported in the log (0: none) */
    uint64_t logged_view;         /* the view (and view-change state) last reported in the log */
    bool logged_in_vc;
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

/* Two clocks (pbft.h): timers run on CLOCK_MONOTONIC, so that a wall
 * clock stepped back does not freeze them and one stepped forward does not
 * fire them all; the wall clock only stamps batches, which backups compare
 * with theirs. */
static uint64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Tells the core the wall clock; returns the timer clock, for a tick. */
static uint64_t core_clock(daemon *d) {
    pbft_node_set_wall(d->node, wall_ms());
    return mono_ms();
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

/* The link layer has checked that a peer with a member's name holds the
 * key the cluster file names for it (open_links pins them), and refused
 * every other name with the members' prefix. */
static bool replica_of(const daemon *d, const char *name, uint32_t *id) {
    return rep_member_of_name(name, d->cluster.n, id);
}

/* ---- served by the daemon itself: queries, status, subscriptions ---- */

static void drive(daemon *d);
static void schedule_drive(daemon *d);
static void close_revoked(daemon *d);
static void settle(daemon *d);
static void step_core_now(daemon *d, const char *peer, const uint8_t *data, size_t len);
static void step_core(daemon *d, const char *peer, const uint8_t *data, size_t len);

static bool served_here(uint32_t kind) {
    return kind == TWINBFT__MESSAGE__KIND_QUERY || kind == TWINBFT__MESSAGE__KIND_STATUS_REQUEST ||
           kind == TWINBFT__MESSAGE__KIND_SUBSCRIBE;
}

/* What a client may send: requests for the core, the rest served here. */
static bool client_kind(uint32_t kind) {
    return kind == TWINBFT__MESSAGE__KIND_REQUEST || served_here(kind);
}

static int send_msg(tb_tls_link *link, const Twinbft__Message *m) {
    uint8_t *b = NULL;
    size_t len = 0;
    int rc = proto_message_pack(m, &b, &len);
    if (rc == 0) {
        rc = tb_tls_send(link, b, len);
        free(b);
    }
    return rc;
}

/* Message.push{reply, to} for one outbox entry. A stored Reply that does
 * not decode is skipped (logged): it can never be sent. */
static int send_push(daemon *d, tb_tls_link *link, const rep_push *p) {
    Twinbft__Reply *r = twinbft__reply__unpack(NULL, p->reply_len, p->reply);
    if (r == NULL) {
        logf_(d, 0, "outbox entry (%" PRIu64 ", %u) of %s does not decode: skipped", p->seq,
              p->index, p->to);
        return 0;
    }
    Twinbft__Push push = TWINBFT__PUSH__INIT;
    push.reply = r;
    push.to = (char *)p->to;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_PUSH;
    m.push = &push;
    int rc = send_msg(link, &m);
    twinbft__reply__free_unpacked(r, NULL);
    return rc;
}

static bool after_pos(const rep_client_link *c, uint64_t seq, uint32_t index) {
    return seq > c->pos_seq || (seq == c->pos_seq && index > c->pos_index);
}

/* After the commit that wrote them is durable and the cycle's messages
 * are sent: each new command to every live subscription of its addressee.
 * A live link that cannot take one (its output is full) would get a gap,
 * so it is closed instead; its subscriber reconnects and subscribes again
 * from the last command it got. */
static void push_new(daemon *d) {
    const rep_push *np = NULL;
    size_t n = rep_storage_new_pushes(d->storage, &np);
    for (size_t i = 0; i < n; i++) {
        rep_client_link *links[REP_PRINCIPAL_LINKS_MAX];
        size_t k = rep_clients_of(d->clients, np[i].to, links);
        for (size_t j = 0; j < k; j++) {
            rep_client_link *c = links[j];
            if (!c->live || !after_pos(c, np[i].seq, np[i].index)) {
                continue;
            }
            int rc = send_push(d, c->link, &np[i]);
            if (rc != 0) {
                logf_(d, 1, "subscriber %s cannot take a push (%s): link closed", c->principal,
                      tb_strerror(rc));
                tb_tls_link *link = c->link;
                rep_clients_remove(d->clients, link);
                tb_tls_link_free(link);
                continue;
            }
            c->pos_seq = np[i].seq;
            c->pos_index = np[i].index;
            d->counters.pushes_sent++;
        }
    }
}

/* State transfer jumped over batches whose commands this replica's outbox
 * will never hold, and its live subscribers still trust the horizon of
 * their last ack. Close their links: each reconnects and subscribes again,
 * and that round's ack carries the new horizon. Transfers are rare. */
static void drop_subscribers(daemon *d) {
    static tb_tls_link *links[REP_CLIENT_LINKS_MAX];
    size_t n = rep_clients_subscribed(d->clients, links, REP_CLIENT_LINKS_MAX);
    for (size_t i = 0; i < n; i++) {
        rep_clients_remove(d->clients, links[i]);
        tb_tls_link_free(links[i]);
    }
    if (n > 0) {
        logf_(d, 2, "state transfer: closed %zu subscriber links (they resubscribe)", n);
    }
}

static void serve_query(daemon *d, tb_tls_link *link, const char *peer, const Twinbft__Query *q) {
    MDB_txn *txn = NULL;
    uint64_t executed = 0;
    uint8_t *res = NULL;
    size_t res_len = 0;
    int rc = rep_storage_read_begin(d->storage, &txn, &executed);
    if (rc == 0) {
        rc = sm_query(rep_storage_sm(d->storage), txn, peer, q->query.data, q->query.len, &res,
                      &res_len);
        mdb_txn_abort(txn);
    }
    if (rc != 0) {
        logf_(d, 1, "query %" PRIu64 " of %s not answered: %s", q->id, peer, tb_strerror(rc));
        free(res);
        res = NULL;
        res_len = 0;
    }
    Twinbft__QueryReply r = TWINBFT__QUERY_REPLY__INIT;
    r.id = q->id;
    r.replica = d->opt.id;
    r.executed = executed;
    r.result = (ProtobufCBinaryData){res_len, res};
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_QUERY_REPLY;
    m.query_reply = &r;
    (void)send_msg(link, &m); /* full or closed: counted by the link; the client asks again */
    d->counters.queries_served++;
    free(res);
}

static void serve_status(daemon *d, tb_tls_link *link, const Twinbft__StatusRequest *q) {
    pbft_status st;
    pbft_node_status(d->node, &st);
    uint32_t peers[REP_MEMBERS_MAX];
    size_t n_peers = 0;
    for (uint32_t j = 0; j < d->cluster.n; j++) {
        if (j != d->opt.id && d->peers[j] != NULL && tb_tls_link_is_open(d->peers[j])) {
            peers[n_peers++] = j;
        }
    }
    settle(d);
    uint8_t app[PROTO_DIGEST_BYTES];
    int rc = sm_digest(rep_storage_sm(d->storage), NULL, app); /* settle: no write is pending */
    if (rc != 0) {
        logf_(d, 1, "status: the state machine's digest: %s", tb_strerror(rc));
    }
    Twinbft__StatusReply r = TWINBFT__STATUS_REPLY__INIT;
    r.id = q->id;
    r.replica = d->opt.id;
    r.cluster_id = (ProtobufCBinaryData){strlen(d->cluster.id), (uint8_t *)d->cluster.id};
    r.epoch = d->cluster.epoch;
    r.view = st.view;
    r.primary = st.primary;
    r.in_view_change = st.in_view_change;
    r.executed = st.executed;
    r.stable_seq = st.stable_seq;
    r.peers = peers;
    r.n_peers = n_peers;
    r.state_digest = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, st.state_digest};
    r.state_digest_seq = st.state_digest_seq;
    r.app_digest = (ProtobufCBinaryData){rc == 0 ? PROTO_DIGEST_BYTES : 0, app};
    r.view_changes = st.view_changes;
    r.dropped = st.dropped;
    r.clients = rep_clients_count(d->clients);
    r.diverged_seq = st.diverged_seq;
    sm_space space;
    (void)sm_store_space(rep_storage_sm(d->storage), &space); /* zeros when it fails */
    r.db_map_bytes = space.map_bytes;
    r.db_used_bytes = space.used_bytes;
    r.history_events = space.history_events;
    r.client_table = st.clients;
    r.history_window = d->cluster.history_window;
    r.disk_full = d->holding;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_STATUS_REPLY;
    m.status_reply = &r;
    (void)send_msg(link, &m);
    d->counters.status_served++;
}

typedef struct sub_round {
    daemon *d;
    rep_client_link *c;
    uint32_t sent;
    bool more;
} sub_round;

static bool push_kept(void *ctx, const rep_push *p) {
    sub_round *r = ctx;
    if (r->sent == REP_SUBSCRIBE_PUSHES_MAX ||
        tb_tls_link_output_bytes(r->c->link) > REP_SUBSCRIBE_OUTPUT_BYTES_MAX ||
        send_push(r->d, r->c->link, p) != 0) {
        r->more = true; /* this one was not sent: the next round starts before it */
        return false;
    }
    r->c->pos_seq = p->seq;
    r->c->pos_index = p->index;
    r->sent++;
    r->d->counters.pushes_sent++;
    return true;
}

/* Sends what the outbox kept for the link's principal after the given
 * position, then SubscribeAck. The link is live (gets new commands as
 * they execute) only after an ack with more = false went out; new
 * commands cannot slip in between, as nothing executes meanwhile. */
static void serve_subscribe(daemon *d, tb_tls_link *link, const char *peer,
                            const Twinbft__Subscribe *s) {
    rep_client_link *c = rep_clients_find(d->clients, peer, link);
    if (c == NULL) {
        return; /* refused at open */
    }
    c->subscribed = true;
    c->live = false;
    c->pos_seq = s->after_seq;
    c->pos_index = s->after_index;
    sub_round r = {.d = d, .c = c};
    MDB_txn *txn = NULL;
    uint64_t executed = 0;
    int rc = rep_storage_read_begin(d->storage, &txn, &executed);
    uint64_t horizon = 0;
    if (rc == 0) {
        rc = rep_storage_outbox_horizon(d->storage, txn, &horizon);
        rc = rc ? rc
                : rep_storage_outbox_read(d->storage, txn, peer, s->after_seq, s->after_index,
                                          push_kept, &r);
        mdb_txn_abort(txn);
    }
    if (rc != 0) {
        logf_(d, 1, "subscription of %s: the outbox: %s", peer, tb_strerror(rc));
        r.more = true;
    }
    Twinbft__SubscribeAck a = TWINBFT__SUBSCRIBE_ACK__INIT;
    a.replica = d->opt.id;
    a.last_seq = r.sent > 0 ? c->pos_seq : 0;
    a.last_index = r.sent > 0 ? c->pos_index : 0;
    a.more = r.more;
    a.executed = executed;
    a.horizon_seq = horizon;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_SUBSCRIBE_ACK;
    m.subscribe_ack = &a;
    c->live = send_msg(link, &m) == 0 && !r.more;
}

/* A Query, StatusRequest or Subscribe from a client: answered from the
 * committed state, between cycles (nothing of a ready is pending, so a
 * read transaction sees exactly what was persisted). */
static void serve(daemon *d, tb_tls_link *link, const char *peer, const uint8_t *data, size_t len) {
    if (pbft_node_has_ready(d->node)) {
        drive(d);
    }
    if (d->failed != 0) {
        return; /* the storage failed: nothing is answered from it */
    }
    /* A Subscribe is never shed: its round is bounded by itself (push_kept)
     * and a subscriber whose Subscribe went unanswered would wait forever. */
    if (proto_message_kind_peek(data, len) != TWINBFT__MESSAGE__KIND_SUBSCRIBE &&
        tb_tls_link_output_bytes(link) > REP_CLIENT_OUTPUT_BYTES_MAX) {
        d->counters.answers_shed++;
        logf_(d, 3, "%s has %zu bytes of answers waiting: request dropped", peer,
              tb_tls_link_output_bytes(link));
        return;
    }
    Twinbft__Message *m = proto_message_unpack(data, len);
    if (m == NULL) {
        logf_(d, 3, "dropped an undecodable message from %s", peer);
        return;
    }
    switch (m->kind_case) {
    case TWINBFT__MESSAGE__KIND_QUERY:
        serve_query(d, link, peer, m->query);
        break;
    case TWINBFT__MESSAGE__KIND_STATUS_REQUEST:
        serve_status(d, link, m->status_request);
        break;
    case TWINBFT__MESSAGE__KIND_SUBSCRIBE:
        serve_subscribe(d, link, peer, m->subscribe);
        break;
    default:
        step_core(d, peer, data, len); /* a later field overrode the first: the core judges it */
        break;
    }
    twinbft__message__free_unpacked(m, NULL);
}

/* ---- the ready loop ---- */

static void send_to(tb_tls_link *link, const pbft_msg *m) {
    if (link != NULL && tb_tls_link_is_open(link)) {
        (void)tb_tls_send(link, m->data, m->len); /* full or closed: counted by the link */
    }
}

/* Sends the ready's messages that are early (or those that are not);
 * returns how many there were. */
static size_t send_all(daemon *d, const pbft_ready *rd, bool early) {
    size_t n_sent = 0;
    for (size_t i = 0; i < rd->n_msgs; i++) {
        const pbft_msg *m = &rd->msgs[i];
        if (m->early != early) {
            continue;
        }
        n_sent++;
        if (m->to == PBFT_TO_CLIENT) {
            /* Every open link of the principal: any of them may be waiting. */
            rep_client_link *links[REP_PRINCIPAL_LINKS_MAX];
            size_t n = rep_clients_of(d->clients, m->client, links);
            for (size_t k = 0; k < n; k++) {
                send_to(links[k]->link, m);
            }
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
    return n_sent;
}

static void arm_timer(daemon *d) {
    uint64_t deadline = pbft_node_next_deadline(d->node), now = mono_ms();
    uint64_t wait = deadline > now ? deadline - now : 0;
    if (wait > REP_TICK_MS_MAX) {
        wait = REP_TICK_MS_MAX;
    }
    struct timeval tv = {.tv_sec = (time_t)(wait / 1000),
                         .tv_usec = (suseconds_t)(wait % 1000) * 1000};
    evtimer_add(d->timer, &tv);
}

/* Operators read view changes from the log: one line per transition. */
static void log_view(daemon *d, const pbft_status *st) {
    if (st->view == d->logged_view && st->in_view_change == d->logged_in_vc) {
        return;
    }
    d->logged_view = st->view;
    d->logged_in_vc = st->in_view_change;
    if (st->in_view_change && st->vc_cause == PBFT_VC_REQUEST_TIMEOUT &&
        st->vc_request_client[0] != '\0') {
        logf_(d, 2,
              "changing to view %" PRIu64 " (primary %u): %s (oldest: %s #%" PRIu64
              ", held %" PRIu64 " ms)",
              st->view, st->primary, pbft_vc_cause_text(st->vc_cause), st->vc_request_client,
              st->vc_request_number, st->vc_request_waited_ms);
    } else if (st->in_view_change) {
        logf_(d, 2, "changing to view %" PRIu64 " (primary %u): %s", st->view, st->primary,
              pbft_vc_cause_text(st->vc_cause));
    } else {
        logf_(d, 2, "in view %" PRIu64 ", primary %u%s, executed %" PRIu64, st->view, st->primary,
              st->primary == d->opt.id ? " (this replica)" : "", st->executed);
    }
}

/* A primary whose batch timestamps are beyond the skew limit from our
 * clock is not just ignored: one clock is wrong, and the operator is told
 * which way and by how much, at most every REP_CLOCK_LOG_MS. */
static void log_clock(daemon *d, const pbft_status *st) {
    uint64_t now = mono_ms();
    if (st->ts_rejected == d->logged_ts_rejected ||
        (d->logged_clock_ms != 0 && now - d->logged_clock_ms < REP_CLOCK_LOG_MS)) {
        return;
    }
    logf_(d, 1,
          "dropped %" PRIu64 " pre-prepares whose timestamps were ahead of this replica's clock "
          "(the last by %" PRId64 " ms; the limit is %" PRIu64 " ms): this clock or the "
          "primary's is off; check time synchronisation (NTP)",
          st->ts_rejected - d->logged_ts_rejected, st->ts_offset_ms, d->skew_ms);
    d->logged_ts_rejected = st->ts_rejected;
    d->logged_clock_ms = now;
}

/* A state digest that a quorum contradicts is non-determinism or a
 * corrupted store: the loudest line this replica writes, once per
 * divergence, and one more when the certified state has replaced it. */
static void log_divergence(daemon *d, const pbft_status *st) {
    if (st->diverged_seq == d->logged_diverged_seq) {
        return;
    }
    if (st->diverged_seq != 0) {
        char own[2 * PROTO_DIGEST_BYTES + 1], quorum[2 * PROTO_DIGEST_BYTES + 1];
        proto_hex(st->diverged_own, PROTO_DIGEST_BYTES, own);
        proto_hex(st->diverged_quorum, PROTO_DIGEST_BYTES, quorum);
        logf_(d, 0,
              "STATE DIVERGED at checkpoint %" PRIu64 ": this replica's state digest is %.16s..., "
              "a quorum signed %.16s...; execution is not deterministic or this store is "
              "corrupt. The replica stopped executing and voting and fetches the certified "
              "state from its peers; keep its data directory for diagnosis",
              st->diverged_seq, own, quorum);
    } else {
        logf_(d, 1,
              "the certified state replaced the diverged one (executed %" PRIu64 "): voting again",
              st->executed);
    }
    d->logged_diverged_seq = st->diverged_seq;
}

/* State transfer as it goes: a transfer that starts (with its size), one
 * that completes, and chunks a peer served that did not match the list
 * f+1 replicas agreed on (a faulty peer's, dropped on arrival). */
static void log_transfer(daemon *d, const pbft_status *st) {
    if (st->xfer_seq != 0 && st->xfer_seq != d->logged_xfer_seq) {
        logf_(d, 2,
              "state transfer: fetching checkpoint %" PRIu64 " (%.1f MiB) from the peers "
              "that agree on its manifest",
              st->xfer_seq, (double)st->xfer_total_bytes / (1024.0 * 1024.0));
        d->logged_xfer_seq = st->xfer_seq;
    }
    if (st->xfer_completed != d->logged_xfer_completed) {
        logf_(d, 2,
              "state transfer: installed the certified state of checkpoint %" PRIu64
              " (%.1f MiB received in %" PRIu64 " chunks since start)",
              st->executed, (double)st->xfer_bytes_in / (1024.0 * 1024.0), st->xfer_chunks_in);
        d->logged_xfer_completed = st->xfer_completed;
    }
    if (st->xfer_chunks_bad != d->logged_xfer_bad) {
        logf_(d, 0,
              "state transfer: %" PRIu64 " chunk(s) did not match the agreed manifest and "
              "were dropped; the peer that sent them is not asked again in this transfer",
              st->xfer_chunks_bad - d->logged_xfer_bad);
        d->logged_xfer_bad = st->xfer_chunks_bad;
    }
    if (st->xfer_refused != d->logged_xfer_refused) {
        logf_(d, 0, "state transfer: the assembled state was refused (%" PRIu64 " so far)",
              st->xfer_refused);
        d->logged_xfer_refused = st->xfer_refused;
    }
}

/* Relays mean clients that cannot reach the primary (or a primary that
 * ignores them): both sides say so, at most every REP_CLOCK_LOG_MS. */
static void log_relays(daemon *d, const pbft_status *st) {
    uint64_t now = mono_ms();
    bool sent = st->relays_sent != d->logged_relays_sent,
         taken = st->relays_taken != d->logged_relays_taken;
    if ((!sent && !taken) ||
        (d->logged_relays_ms != 0 && now - d->logged_relays_ms < REP_CLOCK_LOG_MS)) {
        return;
    }
    if (sent) {
        logf_(d, 1,
              "relayed %" PRIu64 " client requests to primary %" PRIu32 " that it had not ordered "
              "within half the request timeout: their clients may not reach it",
              st->relays_sent - d->logged_relays_sent, st->primary);
    }
    if (taken) {
        logf_(d, 1,
              "ordered %" PRIu64 " client requests relayed by f+1 backups: their clients did not "
              "reach this replica directly; check its address and listener",
              st->relays_taken - d->logged_relays_taken);
    }
    d->logged_relays_sent = st->relays_sent;
    d->logged_relays_taken = st->relays_taken;
    d->logged_relays_ms = now;
}

/* A ready with nothing to make durable (only messages). */
static bool ready_is_messages(const pbft_ready *rd) {
    return rd->n_records == 0 && rd->n_executed == 0 && rd->n_stable == 0 && !rd->transferred;
}

/* Steps what waited for the commit: held frames, a timer that fired, links
 * that opened. The caller drives afterwards. */
static void release_held(daemon *d) {
    held_frame *h = d->held;
    d->held = NULL;
    d->held_tail = &d->held;
    d->held_bytes = 0;
    while (h != NULL) {
        held_frame *next = h->next;
        step_core_now(d, h->peer, h->data, h->len);
        free(h);
        h = next;
    }
    for (uint32_t j = 0; d->reconnected != 0 && j < d->cluster.n; j++) {
        if (d->reconnected & ((uint64_t)1 << j)) {
            pbft_node_peer_connected(d->node, j);
        }
    }
    d->reconnected = 0;
    if (d->tick_due) {
        d->tick_due = false;
        pbft_node_tick(d->node, core_clock(d));
    }
}

/* Free space on the data directory's file system, in MiB (-1: unknown). */
static double free_space_mib(const daemon *d) {
    struct statvfs vfs;
    if (statvfs(d->opt.data_dir, &vfs) != 0) {
        return -1;
    }
    return (double)vfs.f_bavail * (double)vfs.f_frsize / (1024.0 * 1024.0);
}

static void hold_check_later(daemon *d) {
    struct timeval tv = {REP_HOLD_CHECK_MS / 1000, (REP_HOLD_CHECK_MS % 1000) * 1000};
    evtimer_add(d->hold_ev, &tv);
}

/* A full disk is not the end: the replica drops the turn (nothing of it was
 * committed), stops executing and voting (its peers see it as silent, one
 * of the f faults the cluster tolerates), keeps answering status and reads
 * from its last commit, and resumes by itself once space returns
 * (on_hold), from its last commit as after a restart. */
static void enter_hold(daemon *d, const char *what, const char *space) {
    uint64_t now = mono_ms();
    if (d->resumed_ms != 0 && now - d->resumed_ms < REP_HOLD_AGAIN_MS &&
        d->resume_mib < REP_DISK_RESUME_MIB_MAX) {
        d->resume_mib *= 2;
    } else if (d->resumed_ms == 0 || now - d->resumed_ms >= REP_HOLD_AGAIN_MS) {
        d->resume_mib = REP_DISK_RESUME_MIB;
    }
    logf_(d, 0,
          "%s in %s failed: no space left on the disk%s. Holding: nothing of this turn was "
          "committed; until %d MiB are free there this replica neither executes nor votes (it "
          "still answers status and reads from its last commit); free space there and it "
          "resumes by itself",
          what, d->opt.data_dir, space, (int)d->resume_mib);
    rep_storage_abort(d->storage);
    /* Frames held for the failed turn's commit go: the core that would
     * have taken them is replaced on resume. */
    for (held_frame *h = d->held, *next = NULL; h != NULL; h = next) {
        next = h->next;
        free(h);
    }
    d->held = NULL;
    d->held_tail = &d->held;
    d->held_bytes = 0;
    d->holding = true;
    d->holds++;
    if (d->drive_pending) {
        event_del(d->drive_ev);
        d->drive_pending = false;
    }
    event_del(d->timer);
    hold_check_later(d);
}

/* A storage fault stops the replica with a line an operator can act on:
 * which directory, what went wrong, how much space is left. Nothing of the
 * turn is committed (the state machine's writes may be partial), so a
 * restart resumes from the last durable commit, as after a crash. */
static void storage_failed(daemon *d, const char *what, int rc) {
    char space[160] = "";
    double free_mib = free_space_mib(d);
    if (free_mib >= 0) {
        /* LMDB reports a write cut short by a full disk as EIO. */
        if (rc == TB_ERR_IO && free_mib < REP_DISK_LOW_MIB) {
            rc = TB_ERR_NOSPACE;
        }
        snprintf(space, sizeof space, "; %.1f MiB free on its file system", free_mib);
    }
    if (rc == TB_ERR_NOSPACE) {
        enter_hold(d, what, space);
        return;
    }
    const char *todo = rc == TB_ERR_READONLY ? "make the directory writable and restart the replica"
                                             : "check the disk and restart the replica";
    logf_(d, 0,
          "%s in %s failed: %s%s. Stopping; nothing of this turn was committed: %s, which resumes "
          "from its last commit",
          what, d->opt.data_dir, tb_strerror(rc), space, todo);
    d->failed = rc;
    event_base_loopbreak(d->base);
}

/* The core stopped on an application fault (pbft_node_fault). */
static bool core_failed(daemon *d) {
    int rc = pbft_node_fault(d->node);
    if (rc != 0 && d->failed == 0 && !d->holding) {
        storage_failed(d, "executing a batch or taking a checkpoint", rc);
    }
    return rc != 0;
}

/* The second half of a turn: the durable commit, the messages that wait
 * for it, advance. */
static void finish_commit(daemon *d) {
    if (!d->commit_pending) {
        return;
    }
    event_del(d->commit_ev);
    pbft_ready *rd = &d->rd;
    int rc = rep_storage_persist(d->storage, rd);
    if (rc != 0) {
        storage_failed(d, "the durable commit of a turn", rc);
        pbft_node_advance(d->node, rd);
        d->commit_pending = false;
        return;
    }
    send_all(d, rd, false);
    if (rd->transferred) {
        drop_subscribers(d);
    }
    push_new(d);
    d->counters.messages_sent += rd->n_msgs;
    d->counters.batches_executed += rd->n_executed;
    for (size_t i = 0; i < rd->n_executed; i++) {
        d->counters.requests_executed += rd->executed[i].n_requests;
    }
    for (size_t i = 0; i < rd->n_stable; i++) {
        logf_(d, 3, "checkpoint %" PRIu64 " stable", rd->stable[i].seq);
    }
    uint64_t ready_id = rd->id;
    pbft_node_advance(d->node, rd);
    pbft_node_durable(d->node, ready_id); /* the commit above was synced */
    d->commit_pending = false;
    pbft_status st; /* one read for every log line that follows it */
    pbft_node_status(d->node, &st);
    log_view(d, &st);
    log_clock(d, &st);
    log_relays(d, &st);
    log_transfer(d, &st);
    log_divergence(d, &st);
    close_revoked(d);
    release_held(d);
}

/* The core's contract: persist (one durable commit), then send, then
 * advance. Called at the end of a turn, so that one commit covers every
 * slot and phase the turn's frames produced. Early messages (votes the
 * core allows out before the commit, pbft.h) are handed to the links
 * first; unless sync, the commit then waits for commit_ev, which has the
 * lowest priority, so the loop writes them to the sockets (libevent defers
 * link writes) and the peers work while this replica syncs. */
static void drive_turn(daemon *d, bool sync) {
    if (d->drive_pending) {
        event_del(d->drive_ev);
        d->drive_pending = false;
    }
    while (!d->commit_pending && d->failed == 0 && !d->holding && !core_failed(d)) {
        d->turn_frames = 0;
        pbft_node_flush(d->node);
        if (!pbft_node_has_ready(d->node)) {
            break;
        }
        pbft_node_ready(d->node, &d->rd);
        size_t early = send_all(d, &d->rd, true);
        if (early == d->rd.n_msgs && ready_is_messages(&d->rd)) {
            /* Only early messages (lazy records wait in the core): no commit. */
            d->counters.messages_sent += d->rd.n_msgs;
            pbft_node_advance(d->node, &d->rd);
            continue;
        }
        d->commit_pending = true;
        if (early > 0 && !sync) {
            d->commit_wait_ms = mono_ms();
            event_active(d->commit_ev, EV_TIMEOUT, 1);
            return; /* on_commit finishes the turn and drives again */
        }
        finish_commit(d);
    }
    if (!d->commit_pending && d->failed == 0 && !d->holding) {
        arm_timer(d);
    }
}

static void drive(daemon *d) {
    drive_turn(d, false);
}

static void on_commit(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    daemon *d = arg;
    finish_commit(d);
    drive(d);
}

/* Frames stepped this turn may have executed batches whose writes wait
 * for the turn's commit. A reader of the state machine outside the core
 * (status, metrics, shutdown) finishes the turn first, so it sees
 * committed state and no write is pending. */
static void settle(daemon *d) {
    finish_commit(d);
    if (d->drive_pending || pbft_node_has_ready(d->node)) {
        drive_turn(d, true);
    }
}

static void on_drive(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    daemon *d = arg;
    d->drive_pending = false;
    drive(d);
}

/* A frame was stepped: the turn's commit runs once nothing more is
 * readable (drive_ev has the lowest priority), or now, when the turn has
 * gone on too long. */
static void schedule_drive(daemon *d) {
    uint64_t now = mono_ms();
    if (d->turn_frames == 0) {
        d->turn_start_ms = now;
    }
    d->turn_frames++;
    if (d->turn_frames >= REP_TURN_FRAMES_MAX || now - d->turn_start_ms >= REP_TURN_MS_MAX) {
        drive(d);
        return;
    }
    if (!d->drive_pending) {
        event_active(d->drive_ev, EV_TIMEOUT, 1);
        d->drive_pending = true;
    }
}

/* drive_ev and commit_ev have the lowest priority: they run once no link
 * has more to read. A client that streams frames which are never stepped
 * (refused unread, or answered here) keeps its link readable all the time,
 * and would hold the turn open, and every reply behind it, for as long as
 * it streams. Every frame therefore also ends a turn that has waited
 * longer than REP_TURN_MS_MAX. */
static void end_overdue_turn(daemon *d) {
    if (!d->commit_pending && !d->drive_pending) {
        return;
    }
    uint64_t now = mono_ms();
    if (d->commit_pending && now - d->commit_wait_ms >= REP_TURN_MS_MAX) {
        finish_commit(d);
        drive(d);
    } else if (!d->commit_pending && now - d->turn_start_ms >= REP_TURN_MS_MAX) {
        drive(d);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    daemon *d = arg;
    if (d->holding) {
        return;
    }
    if (d->commit_pending) {
        d->tick_due = true; /* release_held ticks once the commit is done */
        return;
    }
    pbft_node_tick(d->node, core_clock(d));
    drive(d);
}

static int open_node(daemon *d);

/* Holding on a full disk: once space returns, the core and the store are
 * opened again from the last commit, exactly as a restart would, and the
 * peers are told our links are open so that they resend what we missed. */
static void on_hold(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    daemon *d = arg;
    double free_mib = free_space_mib(d);
    if (free_mib < d->resume_mib) {
        hold_check_later(d);
        return;
    }
    logf_(d, 1, "%.1f MiB free in %s again: resuming from the last commit", free_mib,
          d->opt.data_dir);
    drop_subscribers(d); /* their rounds read the store being reopened */
    pbft_node_free(d->node);
    d->node = NULL;
    rep_storage_close(d->storage);
    d->storage = NULL;
    d->commit_pending = d->tick_due = false;
    d->reconnected = 0;
    d->logged_ts_rejected = d->logged_relays_sent = d->logged_relays_taken = 0;
    d->logged_diverged_seq = d->revocations_seen = 0;
    d->logged_xfer_seq = d->logged_xfer_completed = d->logged_xfer_bad = 0;
    d->logged_xfer_refused = 0;
    int rc = open_node(d);
    if (rc != 0) {
        d->failed = rc;
        event_base_loopbreak(d->base);
        return;
    }
    d->holding = false;
    d->resumed_ms = mono_ms();
    for (uint32_t j = 0; j < d->cluster.n; j++) {
        if (d->peers[j] != NULL && tb_tls_link_is_open(d->peers[j])) {
            pbft_node_peer_connected(d->node, j);
        }
    }
    /* The peers' links to us stayed open while we held, so they resend
     * nothing by themselves: ask them for what we missed. */
    pbft_node_fetch(d->node);
    drive(d);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)what;
    daemon *d = arg;
    logf_(d, 2, "signal %d: shutting down", (int)sig);
    settle(d); /* what was decided is durable (and its replies out) before we go */
    if (d->failed == 0 && !d->holding) {
        /* A clean stop: every vote on disk, so the restart need not abstain. */
        pbft_node_stop(d->node);
        settle(d);
    }
    event_base_loopexit(d->base, NULL);
}

/* ---- links ---- */

/* Whether a client's identity (its name, or the key of its certificate)
 * is revoked in the committed state. A store that cannot say refuses. */
static bool client_revoked(daemon *d, const char *peer, const tb_tls_link *link) {
    bool revoked = false;
    int rc =
        sm_identity_revoked(rep_storage_sm(d->storage), peer, tb_tls_link_peer_key(link), &revoked);
    if (rc != 0) {
        logf_(d, 1, "cannot read the revocations (%s): refusing %s", tb_strerror(rc), peer);
        return true;
    }
    return revoked;
}

/* After a revocation executed: the open links it revokes are closed. */
static void close_revoked(daemon *d) {
    sm_stats st;
    sm_store_stats(rep_storage_sm(d->storage), &st);
    if (st.revocations == d->revocations_seen) {
        return;
    }
    d->revocations_seen = st.revocations;
    size_t n = rep_clients_count(d->clients);
    tb_tls_link **all = calloc(n ? n : 1, sizeof *all);
    if (all == NULL) {
        return;
    }
    n = rep_clients_links(d->clients, all, n);
    for (size_t i = 0; i < n; i++) {
        const char *peer = tb_tls_link_peer(all[i]);
        if (client_revoked(d, peer, all[i])) {
            logf_(d, 1, "closing a link of %s: its identity was revoked", peer);
            rep_clients_remove(d->clients, all[i]);
            tb_tls_link_free(all[i]);
        }
    }
    free(all);
}

static void on_open(tb_tls_link *link, const char *peer, void *arg) {
    daemon *d = arg;
    uint32_t j = 0;
    if (replica_of(d, peer, &j)) {
        logf_(d, 2, "link with %s open", peer);
        /* One account per member name, at most REP_MEMBERS_MAX of them. */
        int rc = tb_tls_link_set_budget(link, d->member_budget);
        TB_ASSERT(rc == 0);
        if (link == d->peers[j]) {
            /* Our own link to j: what we sent while it was down is lost. */
            if (d->commit_pending) {
                d->reconnected |= (uint64_t)1 << j; /* release_held tells the core */
            } else {
                pbft_node_peer_connected(d->node, j);
                schedule_drive(d);
            }
        }
        return;
    }
    /* Before any of its frames is read: a client's frames are small, and
     * what its links hold in unfinished frames is budgeted per identity. */
    tb_tls_link_set_frame_max(link, REP_CLIENT_FRAME_BYTES_MAX);
    int rc = tb_tls_link_set_budget(link, d->client_budget);
    if (rc != 0) {
        logf_(d, 1, "client %s refused: no memory budget account for it (%s)", peer,
              tb_strerror(rc));
        tb_tls_link_free(link);
        return;
    }
    if (client_revoked(d, peer, link)) {
        /* A revoked client keeps reconnecting: one line per REP_CLOCK_LOG_MS. */
        uint64_t now = mono_ms();
        d->revoked_refused++;
        if (d->revoked_log_ms == 0 || now - d->revoked_log_ms >= REP_CLOCK_LOG_MS) {
            logf_(d, 1, "client %s refused: its identity is revoked (%" PRIu64 " refusals so far)",
                  peer, d->revoked_refused);
            d->revoked_log_ms = now;
        }
        tb_tls_link_free(link);
        return;
    }
    rep_client_link *c = NULL;
    rep_client_link *victim = rep_clients_victim(d->clients, peer);
    if (victim != NULL) {
        logf_(d, 2, "client %s holds %d links: closing its oldest%s for the new one", peer,
              REP_PRINCIPAL_LINKS_MAX, victim->subscribed ? "" : " unsubscribed one");
        tb_tls_link *old = victim->link;
        rep_clients_remove(d->clients, old);
        tb_tls_link_free(old);
    }
    rc = rep_clients_add(d->clients, peer, link, &c);
    if (rc != 0) {
        logf_(d, 1, "client %s refused: %s", peer,
              rc == TB_ERR_INVALID ? "its name is too long" : "the replica's client table is full");
        tb_tls_link_free(link);
    }
}

static void on_close(tb_tls_link *link, const char *reason, void *arg) {
    daemon *d = arg;
    if (!rep_clients_remove(d->clients, link)) {
        logf_(d, 3, "link closed: %s", reason);
    }
}

/* While a commit is pending the core is not touched: the frame waits. */
static void hold_frame(daemon *d, const char *peer, const uint8_t *data, size_t len) {
    size_t name_len = strlen(peer) + 1;
    held_frame *h = NULL;
    if (d->held_bytes + len <= REP_HELD_BYTES_MAX) {
        h = malloc(sizeof *h + name_len + len);
    }
    if (h == NULL) {
        d->held_dropped++;
        logf_(d, 3, "dropped a frame from %s: %zu bytes already wait for a commit", peer,
              d->held_bytes);
        return;
    }
    memcpy(h->peer, peer, name_len);
    h->data = (uint8_t *)h->peer + name_len;
    memcpy(h->data, data, len);
    h->len = len;
    h->next = NULL;
    *d->held_tail = h;
    d->held_tail = &h->next;
    d->held_bytes += len;
}

static void step_core(daemon *d, const char *peer, const uint8_t *data, size_t len) {
    if (d->holding) {
        return; /* on a full disk: neither executes nor votes (enter_hold) */
    }
    if (d->commit_pending) {
        hold_frame(d, peer, data, len);
        return;
    }
    step_core_now(d, peer, data, len);
    schedule_drive(d);
}

static void step_core_now(daemon *d, const char *peer, const uint8_t *data, size_t len) {
    pbft_node_set_wall(d->node, wall_ms());
    pbft_from from = {.is_client = true, .client = peer};
    uint32_t j = 0;
    if (replica_of(d, peer, &j)) {
        from = (pbft_from){.is_client = false, .replica = j};
    }
    int rc = pbft_node_step(d->node, &from, data, len);
    if (rc != 0) {
        logf_(d, 3, "dropped a message from %s: %s", peer, tb_strerror(rc));
    }
}

/* A client sent a kind only replicas send (a FetchReply, a NEW-VIEW): it is
 * dropped by its first tag, before anything is decoded. A client can send
 * such frames as fast as its link carries them: one line per
 * REP_CLOCK_LOG_MS, the rest counted in the metric. */
static void refuse_client_frame(daemon *d, const char *peer, uint32_t kind, size_t len) {
    uint64_t now = mono_ms();
    d->counters.client_frames_refused++;
    if (d->refused_log_ms == 0 || now - d->refused_log_ms >= REP_CLOCK_LOG_MS) {
        logf_(d, 1,
              "client %s sent a frame of kind %u (%zu bytes), which clients do not send: dropped "
              "unread (%" PRIu64 " such frames so far)",
              peer, (unsigned)kind, len, d->counters.client_frames_refused);
        d->refused_log_ms = now;
    }
}

#if TWINBFT_FAULT_INJECTION
/* Byzantine on purpose (--byzantine censor:P): P's requests are never
 * taken, from P itself or relayed by a backup. */
static bool censored(const daemon *d, const char *peer, bool from_replica, const uint8_t *data,
                     size_t len) {
    uint32_t kind = proto_message_kind_peek(data, len);
    if (d->opt.censor == NULL) {
        return false;
    }
    if (!from_replica) {
        return kind == TWINBFT__MESSAGE__KIND_REQUEST && strcmp(peer, d->opt.censor) == 0;
    }
    if (kind != TWINBFT__MESSAGE__KIND_RELAY) {
        return false;
    }
    bool hit = false;
    Twinbft__Message *m = proto_message_unpack(data, len);
    for (size_t i = 0; m != NULL && m->relay != NULL && i < m->relay->n_requests; i++) {
        const char *c = m->relay->requests[i]->client;
        hit |= c != NULL && strcmp(c, d->opt.censor) == 0;
    }
    if (m != NULL) {
        twinbft__message__free_unpacked(m, NULL);
    }
    return hit;
}
#endif

static void on_frame(tb_tls_link *link, const char *peer, const uint8_t *data, size_t len,
                     void *arg) {
    daemon *d = arg;
    uint32_t j = 0;
    end_overdue_turn(d);
    bool from_replica = replica_of(d, peer, &j);
#if TWINBFT_FAULT_INJECTION
    if (censored(d, peer, from_replica, data, len)) {
        return;
    }
#endif
    if (from_replica) {
        step_core(d, peer, data, len);
        return;
    }
    uint32_t kind = proto_message_kind_peek(data, len);
    if (!client_kind(kind)) {
        refuse_client_frame(d, peer, kind, len);
    } else if (served_here(kind)) {
        serve(d, link, peer, data, len);
    } else {
        step_core(d, peer, data, len); /* Requests are decoded once, by the core */
    }
}

/* ---- status page and metrics ---- */

static void fill_snapshot(void *ctx, rep_http_snapshot *s) {
    daemon *d = ctx;
    settle(d);
    s->id = d->opt.id;
    s->n = d->cluster.n;
    s->cluster_id = d->cluster.id;
    s->epoch = d->cluster.epoch;
    s->uptime_ms = mono_ms() - d->started_ms;
    pbft_node_status(d->node, &s->status);
    rep_storage_stats_get(d->storage, &s->storage);
    (void)sm_store_space(rep_storage_sm(d->storage), &s->space); /* zeros when it fails */
    s->history_window = d->cluster.history_window;
    s->outbox_window = d->cluster.outbox_window;
    s->log_retain = d->cluster.log_retain;
    s->log_entries = rep_storage_log_entries(d->storage);
    s->holding = d->holding;
    s->holds = d->holds;
    sm_stats sms;
    sm_store_stats(rep_storage_sm(d->storage), &sms);
    s->events_compacted = sms.events_compacted;
    s->counters = d->counters;
    proto_ed25519_stats(&s->counters.ed25519_signs, &s->counters.ed25519_verifies);
    s->client_links = (uint32_t)rep_clients_count(d->clients);
    s->listener = tb_tls_listener_get_stats(d->listener);
    s->links = tb_tls_ctx_get_stats(d->tls);
    s->client_frame_bytes = tb_budget_used(d->client_budget);
    for (uint32_t j = 0; j < d->cluster.n; j++) {
        if (d->peers[j] != NULL) {
            s->peer_open[j] = tb_tls_link_is_open(d->peers[j]);
            s->peer[j] = tb_tls_link_get_stats(d->peers[j]);
        }
    }
    /* settle() above: no write is pending, so the digest needs no transaction. */
    if (sm_digest(rep_storage_sm(d->storage), NULL, s->app_digest) != 0) {
        memset(s->app_digest, 0, sizeof s->app_digest);
    }
}

static int open_http(daemon *d) {
    const rep_member *me = &d->cluster.members[d->opt.id];
    if (me->http_port == 0) {
        return 0; /* the cluster file gives this replica no http address */
    }
    int rc = rep_http_start(d->base, me->http_host, me->http_port, fill_snapshot, d, &d->http);
    if (rc != 0) {
        logf_(d, 0,
              "cannot serve HTTP on %s:%u: %s (free the port or change this replica's "
              "http address in the cluster file)",
              me->http_host, me->http_port, tb_strerror(rc));
        return rc;
    }
    logf_(d, 2, "status page on http://%s:%u/ (metrics at /metrics)", me->http_host, me->http_port);
    return 0;
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
            memcpy(d->pubs_raw[j], pub, sizeof pub);
        } else {
            logf_(d, 0, "cannot read %s: %s", path, tb_strerror(rc));
        }
        X509_free(cert);
    }
    X509_free(ca);
    return rc;
}

/* The links' own lines (handshake failures, closed connections; already
 * rate-limited by the link layer) go through the daemon's levelled log. */
static void link_log(const char *line, void *arg) {
    logf_(arg, 2, "%s", line);
}

/* The listener's links and waiting room need more descriptors than the
 * usual soft limit of 1,024: raise it toward the hard limit, and say so
 * when even that leaves the waiting room short (tb_tls_listen sizes it). */
static void raise_fd_limit(daemon *d) {
    struct rlimit rl;
    rlim_t want = (rlim_t)TB_LISTENER_LINKS_MAX + TB_LISTENER_WAITING_MAX + TB_LISTENER_FDS_SPARE;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want) {
        return;
    }
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want) {
        logf_(d, 1,
              "open file limit is %llu (hard): fewer connections than %u can wait for a "
              "handshake slot; raise it to %llu",
              (unsigned long long)rl.rlim_cur, (unsigned)TB_LISTENER_WAITING_MAX,
              (unsigned long long)want);
    }
}

static int open_links(daemon *d, const char *key_path) {
    const rep_member *me = &d->cluster.members[d->opt.id];
    int rc = tb_tls_ctx_load(d->cluster.ca_path, me->cert_path, key_path, &d->tls);
    if (rc != 0) {
        logf_(d, 0, "TLS identity from %s and %s: %s", me->cert_path, key_path, tb_strerror(rc));
        return rc;
    }
    tb_tls_ctx_set_log(d->tls, link_log, d);
    rc = tb_tls_ctx_reserve_prefix(d->tls, REP_MEMBER_NAME_PREFIX);
    for (uint32_t j = 0; j < d->cluster.n && rc == 0; j++) {
        char name[32];
        snprintf(name, sizeof name, REP_MEMBER_NAME_PREFIX "%u", j);
        rc = tb_tls_ctx_pin(d->tls, name, d->pubs_raw[j]);
    }
    if (rc != 0) {
        logf_(d, 0, "cannot pin the members' keys: %s", tb_strerror(rc));
        return rc;
    }
    tb_tls_callbacks cb = {on_open, on_frame, on_close, d};
    raise_fd_limit(d);
    rc = tb_tls_listen(d->base, d->tls, me->host, me->port, &cb, &d->listener);
    if (rc != 0) {
        logf_(d, 0, "cannot listen on %s:%u: %s", me->host, me->port, tb_strerror(rc));
        return rc;
    }
    /* The members' addresses keep capacity of their own: a flood of
     * connections from elsewhere cannot cut the replicas off. */
    for (uint32_t j = 0; j < d->cluster.n; j++) {
        if (j != d->opt.id &&
            tb_tls_listener_reserve(d->listener, d->cluster.members[j].host) != 0) {
            logf_(d, 1, "replica %u's address %s is not numeric: no capacity reserved for it", j,
                  d->cluster.members[j].host);
        }
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
    int rc = rep_storage_open(d->opt.data_dir, REP_ADMIN_PRINCIPAL, REP_MAP_BYTES,
                              d->cluster.history_window, &d->storage);
    if (rc != 0) {
        logf_(d, 0, "cannot open storage in %s: %s", d->opt.data_dir, tb_strerror(rc));
        return rc;
    }
    rep_storage_set_outbox_window(d->storage, d->cluster.outbox_window);
    rep_storage_set_log_retain(d->storage, d->cluster.log_retain);
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
    cfg.log = (pbft_log){d->storage, rep_storage_log_read};
    uint64_t now = mono_ms();
    d->skew_ms = cfg.clock_skew_ms_max;
    rc = pbft_node_create(&cfg, now, &d->node);
    if (rc == 0) {
        pbft_node_set_wall(d->node, wall_ms());
    }
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
    d->logged_view = st.view;
    d->logged_in_vc = st.in_view_change;
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
    d->base = event_base_new();
    if (rep_clients_create(&d->clients) != 0 || d->base == NULL ||
        event_base_priority_init(d->base, REP_PRIORITIES) != 0) {
        return TB_ERR_NOMEM;
    }
    /* Client links all come through the listener: no more identities hold
     * an account at once than it has links. */
    rc = tb_budget_new(REP_CLIENT_IDENTITY_BUFFER_BYTES_MAX, REP_CLIENT_BUFFER_BYTES_MAX,
                       TB_LISTENER_LINKS_MAX, &d->client_budget);
    rc = rc ? rc
            : tb_budget_new(REP_MEMBER_BUFFER_BYTES_MAX,
                            (size_t)d->cluster.n * REP_MEMBER_BUFFER_BYTES_MAX, REP_MEMBERS_MAX,
                            &d->member_budget);
    if (rc != 0) {
        return rc;
    }
    d->held_tail = &d->held;
    d->drive_ev = event_new(d->base, -1, 0, on_drive, d);
    d->commit_ev = event_new(d->base, -1, 0, on_commit, d);
    if (d->drive_ev == NULL || event_priority_set(d->drive_ev, REP_PRIORITY_DRIVE) != 0 ||
        d->commit_ev == NULL || event_priority_set(d->commit_ev, REP_PRIORITY_DRIVE) != 0) {
        return TB_ERR_NOMEM;
    }
    d->timer = evtimer_new(d->base, on_timer, d);
    d->hold_ev = evtimer_new(d->base, on_hold, d);
    d->sig_term = evsignal_new(d->base, SIGTERM, on_signal, d);
    d->sig_int = evsignal_new(d->base, SIGINT, on_signal, d);
    if (d->timer == NULL || d->hold_ev == NULL || d->sig_term == NULL || d->sig_int == NULL ||
        evsignal_add(d->sig_term, NULL) != 0 || evsignal_add(d->sig_int, NULL) != 0) {
        return TB_ERR_NOMEM;
    }
    rc = load_members(d);
    rc = rc ? rc : open_node(d);
    rc = rc ? rc : open_links(d, key_path);
    rc = rc ? rc : open_http(d);
    return rc;
}

static void stop(daemon *d) {
    /* Our own events go first, so that nothing of ours can run in the last
     * loop pass below. */
    if (d->timer) {
        event_free(d->timer);
    }
    if (d->hold_ev) {
        event_free(d->hold_ev);
    }
    if (d->drive_ev) {
        event_free(d->drive_ev);
    }
    if (d->commit_ev) {
        event_free(d->commit_ev);
    }
    if (d->commit_pending) {
        /* Stopped on a failure with a commit pending: like a crash after
         * the early messages, which the core allows (pbft.h). */
        pbft_node_advance(d->node, &d->rd);
        d->commit_pending = false;
    }
    for (held_frame *h = d->held, *next = NULL; h != NULL; h = next) {
        next = h->next;
        free(h);
    }
    d->held = NULL;
    if (d->sig_term) {
        event_free(d->sig_term);
    }
    if (d->sig_int) {
        event_free(d->sig_int);
    }
    rep_http_free(d->http); /* before the links and the node it reads */
    for (uint32_t j = 0; j < REP_MEMBERS_MAX; j++) {
        if (d->peers[j]) {
            tb_tls_link_free(d->peers[j]);
        }
        proto_pubkey_free(d->pubs[j]);
    }
    if (d->listener) {
        tb_tls_listener_free(d->listener); /* closes the client links it accepted */
    }
    if (d->base) {
        /* Deferred link callbacks hold references to the links' buffers:
         * one more pass lets libevent finish freeing them. */
        event_base_loop(d->base, EVLOOP_NONBLOCK);
    }
    /* Every link has left its account by now. */
    tb_budget_free(d->client_budget);
    tb_budget_free(d->member_budget);
    tb_tls_ctx_free(d->tls);
    pbft_node_free(d->node);
    if (d->storage) {
        rep_storage_close(d->storage);
    }
    proto_key_free(d->key);
    if (d->base) {
        event_base_free(d->base);
    }
    rep_clients_free(d->clients);
}

int rep_daemon_run(const rep_daemon_options *opt) {
    signal(SIGPIPE, SIG_IGN); /* a peer that hangs up must not kill the replica */
    daemon *d = calloc(1, sizeof *d);
    if (d == NULL) {
        return TB_ERR_NOMEM;
    }
    d->opt = *opt;
    d->started_ms = mono_ms();
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
