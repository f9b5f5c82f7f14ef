/* libtwinbft's insides, shared by the files of client/ and by nothing else:
 * the client struct, the outstanding operation (an intent, or a query and
 * its ordered fallback), the status call and the subscription.
 *
 * Data flows: client.c owns the links and hands every frame from replica j's
 * own link to the handler of its kind (confirm.c, submit.c, query.c,
 * status.c, subscribe.c); confirm.c holds every intent and query back until
 * f+1 replicas confirm the configured cluster id and epoch; wait.c runs the
 * base for the blocking wrappers; verify.c needs the trust anchors only. */
#ifndef TB_CLIENT_INTERNAL_H
#define TB_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "twinbft/twinbft.h"
#include "client/link.h"
#include "proto/cert.h"
#include "proto/sm.pb-c.h"
#include "proto/twinbft.pb-c.h"

_Static_assert((int)TB_MEMBERS_MAX == (int)PROTO_MEMBERS_MAX, "one members limit for API and wire");
_Static_assert((int)TB_CLUSTER_ID_BYTES_MAX == (int)PROTO_CLUSTER_ID_BYTES_MAX,
               "one cluster id limit");
_Static_assert((int)TB_PUBKEY_BYTES == (int)PROTO_PUBKEY_BYTES, "raw Ed25519 keys");
_Static_assert((int)TB_DIGEST_BYTES == (int)PROTO_DIGEST_BYTES, "SHA-256 digests");
_Static_assert((int)TB_MEMBERS_MAX <= (int)PROTO_CERT_REPLIES_MAX,
               "one reply per member must fit into one certificate assembly");
_Static_assert(TB_MEMBERS_MAX <= 64, "member sets are 64-bit masks");

typedef enum tb_op_kind {
    TB_OP_NONE = 0,
    TB_OP_INTENT, /* tb_client_submit */
    TB_OP_QUERY,  /* tb_client_query, unordered or (ordering set) its fallback */
} tb_op_kind;

/* Which replies' signatures were verified (checked) and found valid (ok),
 * bit j for replica j's: each is verified at most once, however often a
 * certificate is tried (tb_sig_group). */
typedef struct tb_sig_marks {
    uint64_t checked;
    uint64_t ok;
} tb_sig_marks;

/* The one outstanding intent or query. */
typedef struct tb_op {
    tb_op_kind kind;
    bool ordering; /* a Request is out (an intent, or a query's fallback) */
    bool agreed;   /* f+1 replies matched; an intent waits for its certificate */
    uint8_t *msg;  /* the packed Message being (re)sent: Request or Query */
    size_t msg_len;
    Twinbft__Reply *replies[TB_MEMBERS_MAX]; /* by replica id; a replica's first counts */
    uint32_t agreed_index;                   /* a reply of the matching f+1 */
    tb_sig_marks sigs;                       /* of replies[] */
    /* queries */
    uint64_t query_id;
    uint8_t *sm_op; /* the SmOp{query} that the fallback orders */
    size_t sm_op_len;
    Twinbft__QueryReply *answers[TB_MEMBERS_MAX]; /* by replica id; the first counts */
    tb_submit_cb submit_cb;
    tb_query_cb query_cb;
    void *arg;
} tb_op;

typedef struct tb_status_call {
    bool busy;
    uint64_t id;
    uint8_t *msg; /* the packed StatusRequest, also sent to links that open meanwhile */
    size_t msg_len;
    tb_replica_status st[TB_MEMBERS_MAX];
    uint32_t answered;
    uint64_t deadline_ms; /* monotonic */
    tb_status_cb cb;
    void *arg;
    struct event *deadline;
} tb_status_call;

/* The cluster check (confirm.c): pending until f+1 replicas report the
 * same (cluster id, epoch), then settled for the client's life. */
typedef enum tb_confirm_state {
    TB_CONFIRM_PENDING = 0,
    TB_CONFIRM_OK,      /* f+1 report the configured pair: intents and queries go out */
    TB_CONFIRM_REFUSED, /* f+1 report another pair (served): they never do */
} tb_confirm_state;

typedef struct tb_confirm {
    tb_confirm_state state;
    uint64_t id;  /* of its StatusRequest */
    uint8_t *msg; /* that packed StatusRequest, while pending */
    size_t msg_len;
    uint64_t answered;              /* bit j: replica j answered (its first answer counts) */
    uint64_t usable;                /* bit j: ... and said[j] holds what it said */
    tb_served said[TB_MEMBERS_MAX]; /* by replica id */
    tb_served served;               /* refused: the pair f+1 replicas reported */
    struct event *retry;            /* asks the replicas that have not answered again */
} tb_confirm;

/* A command's position: ordered by seq, then index in the batch. */
typedef struct tb_pos {
    uint64_t seq;
    uint32_t index;
} tb_pos;

/* One command some replica pushed, not delivered yet. */
typedef struct tb_sub_item {
    tb_pos pos;
    uint64_t pushed; /* bit j: replica j pushed it (replies[j] is set) */
    Twinbft__Reply *replies[TB_MEMBERS_MAX];
    tb_sig_marks sigs; /* of replies[] */
    uint8_t *cert;     /* once certified: a packed Certificate, checked ... */
    size_t cert_len;
    proto_cert_info info; /* ... and what it says */
} tb_sub_item;

/* What the subscription knows of replica j's stream of pushes. */
typedef struct tb_sub_stream {
    /* The client holds every push of j's current stream up to here: j
     * pushes in order, so j has passed every command at or below head
     * without pushing it unless it pushed it. Lowered when one of j's
     * pushes is lost (refused or evicted). */
    tb_pos head;
    /* head as of j's last answered Subscribe: while a round is under way its
     * horizon is not known yet, so only this much of the stream counts. */
    tb_pos confirmed;
    /* One of j's pushes was lost, and a Subscribe from head is out to
     * replay the stream from there: head waits for that round's ack, which
     * covers everything it pushed (pushes that raced with it included). */
    bool resync;
    bool resync_again; /* another push was lost meanwhile: one more round */
    /* A push was refused for want of room or of j's quota: asking again
     * before room frees up would only have it refused again, so the replay
     * (resync) waits for that, and acks meanwhile vouch for nothing. */
    bool starved;
    /* j sent what no correct replica sends (an oversized reply): its pushes
     * are ignored until its link reopens. */
    bool frozen;
    /* Subscribes sent on j's current link, not acknowledged yet, by this
     * subscription or an earlier one (there is no Unsubscribe on the wire,
     * so j answers them all, in order): kept across unsubscribe, reset only
     * when the link reopens, so an earlier round's ack is known as such. */
    uint32_t subscribes;
    uint64_t executed; /* the highest seq j claimed executed (acks, pushes) */
    uint64_t horizon;  /* j's latest SubscribeAck.horizon_seq (0 until one) */
    uint32_t solo;     /* pending items that j alone pushed */
} tb_sub_stream;

typedef struct tb_subscription {
    /* Subscribes went out on the links: their pushes and acks are handed
     * here (client.c), also after an unsubscribe, so that the acks of the
     * earlier rounds are still counted (tb_sub_stream.subscribes). */
    bool active;
    bool subscribed; /* the caller's subscription is on (cb is called) */
    tb_command_cb cb;
    void *arg;
    tb_pos delivered; /* the last delivered (or the caller's starting point) */
    tb_sub_stream streams[TB_MEMBERS_MAX];
    tb_sub_item *items; /* sorted by pos, at most TB_SUBSCRIPTION_PENDING_MAX */
    size_t count;
    size_t cap;
    /* Items were given up although fewer than f+1 replicas vouched that
     * they do not exist, the lowest at gap_low and the highest at gap_high:
     * a delivery above gap_low reports gap_before. */
    bool gap;
    tb_pos gap_low;
    tb_pos gap_high;
    uint64_t refused;    /* pushes refused (size, distance, quota, room) */
    uint64_t evicted;    /* items dropped to make room */
    uint64_t generation; /* bumped by every subscribe and unsubscribe */
    bool delivering;     /* inside cb: delivery does not recurse */
    /* The lowest item waits for rounds under way (tb_sub_ready): soon_wait,
     * a timer on the client's base, bounds that wait for the item at
     * soon_pos, and soon_due says it ran out. */
    struct event *soon_wait;
    tb_pos soon_pos;
    bool soon_due;
} tb_subscription;

struct tb_client {
    struct event_base *base;
    tb_client_config cfg;
    proto_trust trust;
    tb_tls_ctx *tls;
    tb_tls_link *links[TB_MEMBERS_MAX];
    uint64_t number;  /* of the outstanding request, or of the next one */
    uint64_t next_id; /* Query and StatusRequest ids */
    tb_op op;
    struct event *retransmit; /* resends op.msg */
    struct event *deadline;   /* op's timeout, then (agreed intent) its certificate wait */
    struct event *query_wait; /* TB_CLIENT_QUERY_WAIT_MS for unordered answers */
    tb_confirm confirm;
    tb_status_call status;
    tb_subscription sub;
    /* Callbacks of this client running now: a *_wait inside one would run
     * the base reentrantly, so it is refused. */
    uint32_t in_callback;
};

/* quorum q = ceil((n+f+1)/2), as proto/cert.c counts it (2f+1 when n = 3f+1). */
uint32_t tb_quorum(const tb_client *c);
/* submit.c, for subscribe.c too: puts into out the candidates (replies[j]
 * set and, when `like` is non-NULL, agreeing with it as tb_reply_same says)
 * whose signatures are valid, verifying those not checked before, but none
 * while fewer than a quorum of candidates could be valid. Returns how many
 * it put there; a certificate needs tb_quorum of them. */
size_t tb_sig_group(tb_client *c, Twinbft__Reply *const *replies, tb_sig_marks *marks,
                    const Twinbft__Reply *like, const Twinbft__Reply **out);
/* Whether two replies agree on seq, index, count, leaf and path. */
bool tb_reply_same(const Twinbft__Reply *a, const Twinbft__Reply *b);
struct timeval tb_ms_timeval(uint32_t ms);
/* Sends msg on replica j's link if it is open (losses are covered by
 * retransmission or by the next reopen). */
void tb_link_send(tb_client *c, uint32_t j, const uint8_t *msg, size_t len);
void tb_link_send_all(tb_client *c, const uint8_t *msg, size_t len);
/* Packs m into a malloc'd buffer (*out). */
int tb_msg_pack(const Twinbft__Message *m, uint8_t **out, size_t *out_len);

/* confirm.c */
/* Packs the check's StatusRequest and starts asking; TB_ERR_NOMEM. */
int tb_confirm_init(tb_client *c);
void tb_confirm_free(tb_client *c);
void tb_confirm_on_open(tb_client *c, uint32_t j);
/* True when r answers the check (and is consumed by it). */
bool tb_confirm_on_reply(tb_client *c, uint32_t j, const Twinbft__StatusReply *r);

/* submit.c: the Request path, shared by intents and the query fallback. */
/* Checks a new intent's or query's arguments (shared rules of
 * tb_client_submit and tb_client_query) and makes it the outstanding one. */
int tb_op_begin(tb_client *c, tb_op_kind kind, const uint8_t *data, size_t len, bool has_cb,
                void *arg);
int tb_op_start_request(tb_client *c, const uint8_t *op, size_t len);
/* Send the outstanding op's message (Request or Query) to every replica,
 * or to replica j; nothing goes out until the cluster is confirmed. */
void tb_op_send_all(tb_client *c);
void tb_op_send_to(tb_client *c, uint32_t j);
/* The check confirmed the cluster: what was held back goes out now. */
void tb_op_release(tb_client *c);
/* The check refused the cluster: the outstanding op (if any) ends with
 * TB_ERR_WRONG_CLUSTER through its callback. */
void tb_op_refuse(tb_client *c);
void tb_op_on_reply(tb_client *c, uint32_t j, Twinbft__Message *m);
void tb_op_on_deadline(tb_client *c);
/* Ends the outstanding operation: timers stop, buffers go, the number
 * advances when a Request went out. */
void tb_op_clear(tb_client *c);

/* query.c */
void tb_query_on_answer(tb_client *c, uint32_t j, Twinbft__Message *m);
void tb_query_on_wait(tb_client *c);
/* The fallback's f+1 answer, from submit.c. */
void tb_query_finish_ordered(tb_client *c, const Twinbft__Reply *r);
/* Ends the query with status (TB_ERR_TIMEOUT, TB_ERR_WRONG_CLUSTER). */
void tb_query_fail(tb_client *c, int status);
/* Starts the wait for unordered answers (once the Query is out). */
void tb_query_wait_start(tb_client *c);

/* status.c */
void tb_status_on_reply(tb_client *c, uint32_t j, const Twinbft__StatusReply *r);
void tb_status_on_open(tb_client *c, uint32_t j);
int tb_status_init(tb_client *c);
/* Ends the status call without its callback. */
void tb_status_cancel(tb_client *c);
void tb_status_free(tb_client *c);

/* subscribe.c */
void tb_sub_on_open(tb_client *c, uint32_t j);
void tb_sub_on_push(tb_client *c, uint32_t j, Twinbft__Message *m);
void tb_sub_on_ack(tb_client *c, uint32_t j, const Twinbft__SubscribeAck *a);
void tb_sub_free(tb_client *c);

/* sub_table.c: the pending items of a subscription. */
int tb_pos_cmp(tb_pos a, tb_pos b);
/* Removes and clears items[i], keeping the rest in order. */
void tb_sub_remove(tb_client *c, size_t i);
/* Moves items[0] out into *out (the caller clears it). */
void tb_sub_take_first(tb_client *c, tb_sub_item *out);
void tb_sub_item_clear(tb_sub_item *it);
/* Clears every item (the array stays). */
void tb_sub_clear_items(tb_client *c);
/* The item at pos, inserted in order when new (j the replica pushing it);
 * NULL when a new one is refused: too far ahead, or (*full set) j's quota
 * is used up or the table is full and nothing may make room. An eviction
 * lowers the heads of the evicted item's pushers (see tb_sub_stream_lost). */
tb_sub_item *tb_sub_item_at(tb_client *c, uint32_t j, tb_pos pos, bool *full);
/* Records j's reply r (taken) for it. */
void tb_sub_item_add(tb_client *c, tb_sub_item *it, uint32_t j, Twinbft__Reply *r);

/* subscribe.c, for sub_table.c: j's push at pos is lost to the client; j's
 * head drops below it and its stream is replayed from there. */
void tb_sub_stream_lost(tb_client *c, uint32_t j, tb_pos pos);

#endif
