/* libtwinbft's insides, shared by the files of client/ and by nothing else:
 * the client struct, the outstanding operation (an intent, or a query and
 * its ordered fallback), the status call and the subscription.
 *
 * Data flows: client.c owns the links and hands every frame from replica j's
 * own link to the handler of its kind (submit.c, query.c, status.c,
 * subscribe.c); wait.c runs the base for the blocking wrappers; verify.c
 * needs the trust anchors only. */
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

/* The one outstanding intent or query. */
typedef struct tb_op {
    tb_op_kind kind;
    bool ordering; /* a Request is out (an intent, or a query's fallback) */
    bool agreed;   /* f+1 replies matched; an intent waits for its certificate */
    uint8_t *msg;  /* the packed Message being (re)sent: Request or Query */
    size_t msg_len;
    Twinbft__Reply *replies[TB_MEMBERS_MAX]; /* by replica id; a replica's first counts */
    uint32_t agreed_index;                   /* a reply of the matching f+1 */
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
    tb_status_cb cb;
    void *arg;
    struct event *deadline;
} tb_status_call;

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
    uint8_t *cert; /* once certified: a packed Certificate that verified ... */
    size_t cert_len;
    proto_cert_info info; /* ... and what it says */
} tb_sub_item;

typedef struct tb_subscription {
    bool active;
    tb_command_cb cb;
    void *arg;
    tb_pos delivered; /* the last delivered (or the caller's starting point) */
    /* Per replica: the highest position it pushed on its current stream.
     * Replicas push in order, so j has passed everything below head[j]. */
    tb_pos head[TB_MEMBERS_MAX];
    /* A push from j was dropped for lack of room: head[j] stops moving
     * until j's stream restarts, so the dropped one is never taken as
     * passed over by j. */
    bool head_frozen[TB_MEMBERS_MAX];
    tb_sub_item *items; /* sorted by pos, at most TB_SUBSCRIPTION_PENDING_MAX */
    size_t count;
    size_t cap;
    uint64_t dropped; /* pushes refused for lack of room */
    bool delivering;  /* inside cb: delivery does not recurse */
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
    tb_status_call status;
    tb_subscription sub;
};

/* quorum q = ceil((n+f+1)/2), as proto/cert.c counts it (2f+1 when n = 3f+1). */
uint32_t tb_quorum(const tb_client *c);
struct timeval tb_ms_timeval(uint32_t ms);
/* Sends msg on replica j's link if it is open (losses are covered by
 * retransmission or by the next reopen). */
void tb_link_send(tb_client *c, uint32_t j, const uint8_t *msg, size_t len);
void tb_link_send_all(tb_client *c, const uint8_t *msg, size_t len);
/* Packs m into a malloc'd buffer (*out). */
int tb_msg_pack(const Twinbft__Message *m, uint8_t **out, size_t *out_len);

/* submit.c: the Request path, shared by intents and the query fallback. */
int tb_op_start_request(tb_client *c, const uint8_t *op, size_t len);
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
void tb_query_finish_timeout(tb_client *c);

/* status.c */
void tb_status_on_reply(tb_client *c, uint32_t j, const Twinbft__StatusReply *r);
void tb_status_on_open(tb_client *c, uint32_t j);
int tb_status_init(tb_client *c);
void tb_status_free(tb_client *c);

/* subscribe.c */
void tb_sub_on_open(tb_client *c, uint32_t j);
void tb_sub_on_push(tb_client *c, uint32_t j, Twinbft__Message *m);
void tb_sub_on_ack(tb_client *c, uint32_t j, const Twinbft__SubscribeAck *a);
void tb_sub_free(tb_client *c);

#endif
