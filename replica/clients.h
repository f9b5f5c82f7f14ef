/* The daemon's table of client links (internal to replica/): a principal
 * may hold several links at once (a CLI `watch` and an `actuate` under one
 * identity); replies go to all of them, pushes to the subscribed ones.
 *
 * Lookups by principal are a binary search over the principals sorted by
 * name, then a walk over that principal's few links; removal by link scans
 * the table (closing a link is rare next to replying). Everything is
 * allocated by rep_clients_create: nothing grows later.
 *
 * Threading: the daemon's event loop thread only. */
#ifndef REP_CLIENTS_H
#define REP_CLIENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consensus/pbft.h"
#include "proto/frame.h"
#include "proto/pki.h"

enum {
    REP_CLIENT_LINKS_MAX = 4096,  /* client links open at once, across principals */
    REP_PRINCIPAL_LINKS_MAX = 16, /* links one principal holds at once */
    /* The largest frame a client link takes. The largest message a client
     * sends is a Request whose op is as large as the core accepts
     * (PBFT_OP_BYTES_MAX), from a principal with the longest name
     * (PBFT_CLIENT_NAME_BYTES_MAX), wrapped in a Message: tags, lengths, a
     * 64-bit number and the priority flag add 24 bytes. A Query carries at
     * most TB_CLIENT_OP_BYTES_MAX (the same 64 KiB); Subscribe and
     * StatusRequest are a few bytes. Anything larger cannot come from a
     * correct client: its link is closed at the frame's header. Replicas'
     * links keep PROTO_FRAME_BYTES_MAX (batches, view changes, state
     * transfer). */
    REP_CLIENT_FRAME_BYTES_MAX = PBFT_OP_BYTES_MAX + PBFT_CLIENT_NAME_BYTES_MAX + 64,
    /* What unfinished client frames may hold (client/budget.h): one client
     * identity four of its largest frames at once, across all its links
     * (a correct client fills one frame per link at a time, and rarely a
     * large one); all clients together 16 MiB, 63 identities at their full
     * share at once. A frame beyond either is refused at its header and its link
     * closed; the client reconnects and retransmits. */
    REP_CLIENT_IDENTITY_BUFFER_BYTES_MAX = 4 * REP_CLIENT_FRAME_BYTES_MAX,
    REP_CLIENT_BUFFER_BYTES_MAX = 16 << 20,
};

_Static_assert((int)REP_CLIENT_FRAME_BYTES_MAX < (int)PROTO_FRAME_BYTES_MAX,
               "client frames are limited below replicas' frames");
_Static_assert(REP_CLIENT_IDENTITY_BUFFER_BYTES_MAX >= REP_CLIENT_FRAME_BYTES_MAX &&
                   REP_CLIENT_BUFFER_BYTES_MAX >= 32 * REP_CLIENT_IDENTITY_BUFFER_BYTES_MAX,
               "an identity can send its largest frame, and many identities theirs at once");

struct tb_tls_link;

/* One open client link and its subscription (see daemon.c). */
typedef struct rep_client_link {
    struct tb_tls_link *link;
    const char *principal; /* owned by the table, valid while the link is in it */
    bool subscribed;       /* a Subscribe arrived on this link */
    bool live;             /* its last SubscribeAck said more = false: new commands are pushed */
    uint64_t pos_seq;      /* the (seq, index) it has: nothing at or below is pushed */
    uint32_t pos_index;
    uint64_t opened; /* order of arrival across the table (larger: newer) */
} rep_client_link;

typedef struct rep_clients rep_clients;

/* TB_ERR_NOMEM only. */
int rep_clients_create(rep_clients **out);
void rep_clients_free(rep_clients *c);

/* Adds an open link of `principal`. TB_ERR_TOO_LARGE when the table or the
 * principal's share of it is full (the caller refuses the link),
 * TB_ERR_INVALID for a name of PROTO_NAME_BYTES_MAX bytes or more. */
int rep_clients_add(rep_clients *c, const char *principal, struct tb_tls_link *link,
                    rep_client_link **out);
/* Forgets a link; false when it is not in the table. */
bool rep_clients_remove(rep_clients *c, const struct tb_tls_link *link);
/* The links of `principal` into out (at most REP_PRINCIPAL_LINKS_MAX),
 * returning how many (0: none open). Valid until the next add or remove. */
size_t rep_clients_of(rep_clients *c, const char *principal,
                      rep_client_link *out[REP_PRINCIPAL_LINKS_MAX]);
/* The link of `principal` to give up for a new one when it holds
 * REP_PRINCIPAL_LINKS_MAX: its oldest unsubscribed link, else its oldest.
 * Connections that died without a FIN (a device behind NAT) would
 * otherwise lock the principal out for good. NULL when it has fewer. */
rep_client_link *rep_clients_victim(rep_clients *c, const char *principal);
/* The entry of one link of `principal`, or NULL. */
rep_client_link *rep_clients_find(rep_clients *c, const char *principal,
                                  const struct tb_tls_link *link);
size_t rep_clients_count(const rep_clients *c);
/* The links that have subscribed (at most cap of them) into out. */
size_t rep_clients_subscribed(rep_clients *c, struct tb_tls_link **out, size_t cap);
/* Every open link (at most cap of them) into out. */
size_t rep_clients_links(rep_clients *c, struct tb_tls_link **out, size_t cap);

#endif
