/* Relaying held requests to the primary (PBFT 4.1, 4.5.2).
 *
 * Clients send each request to every replica, so a request normally
 * reaches the primary on the client's own channel. When it does not (the
 * client cannot reach the primary, its link there is down, or the primary's
 * listener is full), the backups hold a request the primary never saw, and
 * without a relay the only way out is a view change after two request
 * timeouts. So a backup that has held a request for half the timeout
 * without seeing it executed relays it to the primary, once per view.
 *
 * A relayed request is vouched for only by the replica that relays it: the
 * client's channel authentication stays with the replica that received it.
 * A Byzantine backup could relay requests no client sent; a primary that
 * ordered them would stall every correct backup, which accepts a
 * pre-prepare only with requests it received itself or that f+1 backups
 * prepared (normal.c requests_known, slot_progress). So the primary takes
 * a relayed request only once f+1 distinct replicas relayed the very same
 * one (client, number and operation): at least one of them is correct and
 * had it from the client, and the batch then gathers the f+1 prepares that
 * let every correct backup accept it. No signature is made or checked: the
 * replica links are authenticated, and a vouch proves nothing to a third
 * party, nor needs to.
 *
 * The primary keeps, per relaying replica, the digests of the last
 * PBFT_RELAY_RING requests it relayed (a backup relays at most
 * PBFT_RELAY_MAX at a time, so the vouches of one burst stay in the ring).
 * A faulty replica can fill only its own ring. A censoring primary ignores
 * relays like it ignores the client: then the request ages at the backups
 * and, at twice the timeout, forces the view change (requests.c). */
#include <stdlib.h>
#include <string.h>

#include "consensus/internal.h"

/* What a vouch is for: the client, the request number and the operation. */
static void relay_digest(const Twinbft__Request *r, uint8_t out[PROTO_DIGEST_BYTES]) {
    proto_hash *h = proto_hash_begin();
    PBFT_ASSERT(h != NULL);
    uint8_t num[8];
    for (int i = 0; i < 8; i++) {
        num[i] = (uint8_t)(r->number >> (56 - 8 * i));
    }
    proto_hash_update(h, r->client, strlen(r->client) + 1);
    proto_hash_update(h, num, sizeof num);
    proto_hash_update(h, r->op.data, r->op.len);
    proto_hash_final(h, out);
}

static uint64_t digest_tag(const uint8_t d[PROTO_DIGEST_BYTES]) {
    uint64_t t = 0;
    memcpy(&t, d, sizeof t);
    return t;
}

static bool ring_has(const pbft_relay_ring *ring, const uint8_t d[PROTO_DIGEST_BYTES]) {
    uint64_t tag = digest_tag(d);
    for (size_t i = 0; i < ring->used; i++) {
        if (ring->tag[i] == tag && memcmp(ring->digest[i], d, PROTO_DIGEST_BYTES) == 0) {
            return true;
        }
    }
    return false;
}

static void ring_put(pbft_relay_ring *ring, const uint8_t d[PROTO_DIGEST_BYTES]) {
    if (ring->tag == NULL) {
        ring->tag = calloc(PBFT_RELAY_RING, sizeof *ring->tag);
        ring->digest = calloc(PBFT_RELAY_RING, sizeof *ring->digest);
        PBFT_ASSERT(ring->tag != NULL && ring->digest != NULL);
    }
    ring->tag[ring->next] = digest_tag(d);
    memcpy(ring->digest[ring->next], d, PROTO_DIGEST_BYTES);
    ring->next = (ring->next + 1) % PBFT_RELAY_RING;
    if (ring->used < PBFT_RELAY_RING) {
        ring->used++;
    }
}

void relay_free(pbft_node *node) {
    if (node->relay == NULL) {
        return;
    }
    for (uint32_t i = 0; i < node->n; i++) {
        free(node->relay[i].tag);
        free(node->relay[i].digest);
    }
    free(node->relay);
    node->relay = NULL;
}

/* A held request counts as waiting from its arrival or the start of the
 * view, whichever is later (as for the request timer). */
static uint64_t held_since(const pbft_node *node, const pbft_pending *p) {
    return p->arrival_ms > node->req_since ? p->arrival_ms : node->req_since;
}

bool relays(const pbft_node *node) {
    return node->n > 1 && !node->in_vc && node->diverged_seq == 0 &&
           primary_of(node, node->view) != node->cfg.self;
}

uint64_t relay_deadline(const pbft_node *node) {
    if (!relays(node)) {
        return 0;
    }
    uint64_t oldest = UINT64_MAX;
    for (size_t i = 0; i < node->n_pending; i++) {
        const pbft_pending *p = &node->pending[i];
        uint64_t since = held_since(node, p);
        if (p->relayed != node->view + 1 && since < oldest) {
            oldest = since;
        }
    }
    return oldest == UINT64_MAX ? 0 : oldest + node->cfg.request_timeout_ms / 2;
}

static int cmp_arrival(const void *a, const void *b) {
    const pbft_pending *x = *(pbft_pending *const *)a, *y = *(pbft_pending *const *)b;
    return (x->arrival > y->arrival) - (x->arrival < y->arrival);
}

static void relay_send(pbft_node *node, Twinbft__Request **reqs, size_t n) {
    Twinbft__Relay relay = TWINBFT__RELAY__INIT;
    relay.requests = reqs;
    relay.n_requests = n;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_RELAY;
    m.relay = &relay;
    out_msg(node, primary_of(node, node->view), NULL, &m);
}

/* Relays, oldest first, the held requests that waited half the request
 * timeout and were not relayed in this view: at most PBFT_RELAY_MAX, in
 * messages of at most a batch's requests and bytes. */
void relay_held(pbft_node *node) {
    uint64_t half = node->cfg.request_timeout_ms / 2;
    size_t n = 0;
    pbft_pending **due = NULL;
    if (relays(node) && node->n_pending > 0) {
        due = malloc(node->n_pending * sizeof *due);
        PBFT_ASSERT(due != NULL);
        for (size_t i = 0; i < node->n_pending; i++) {
            pbft_pending *p = &node->pending[i];
            if (p->relayed != node->view + 1 && held_since(node, p) + half <= node->now) {
                due[n++] = p;
            }
        }
    }
    if (n > PBFT_RELAY_MAX) {
        qsort(due, n, sizeof *due, cmp_arrival);
        n = PBFT_RELAY_MAX;
    }
    Twinbft__Request reqs[PBFT_BATCH_REQUESTS_MAX];
    Twinbft__Request *ptrs[PBFT_BATCH_REQUESTS_MAX];
    size_t k = 0, bytes = 0;
    for (size_t i = 0; i < n; i++) {
        pbft_pending *p = due[i];
        Twinbft__Request *r = &reqs[k];
        twinbft__request__init(r);
        r->client = p->client;
        r->number = p->number;
        r->op = (ProtobufCBinaryData){p->op_len, p->op};
        ptrs[k++] = r;
        bytes += p->op_len;
        p->relayed = node->view + 1;
        node->relays_sent++;
        if (k == PBFT_BATCH_REQUESTS_MAX || bytes >= PBFT_BATCH_BYTES_MAX || i + 1 == n) {
            relay_send(node, ptrs, k);
            k = bytes = 0;
        }
    }
    free(due);
    node->relay_deadline = relay_deadline(node);
}

void on_relay(pbft_node *node, const pbft_from *from, const Twinbft__Relay *m) {
    if (m->n_requests > PBFT_BATCH_REQUESTS_MAX) {
        node->dropped++;
        return;
    }
    /* Not the primary (any more): a relay may cross a view change. */
    if (node->n == 1 || node->in_vc || primary_of(node, node->view) != node->cfg.self) {
        return;
    }
    if (node->relay == NULL) {
        node->relay = calloc(node->n, sizeof *node->relay);
        PBFT_ASSERT(node->relay != NULL);
    }
    bool taken = false;
    for (size_t i = 0; i < m->n_requests; i++) {
        const Twinbft__Request *r = m->requests[i];
        if (!request_wellformed(r)) {
            node->dropped++;
            continue;
        }
        const pbft_client *c = client_find(node, r->client);
        const pbft_pending *p = pending_find(node, r->client);
        if ((c != NULL && r->number <= c->number) || (p != NULL && r->number <= p->number)) {
            continue; /* executed, held already, or the client has moved on */
        }
        uint8_t d[PROTO_DIGEST_BYTES];
        relay_digest(r, d);
        pbft_relay_ring *own = &node->relay[from->replica];
        if (ring_has(own, d)) {
            continue; /* the same replica again: still one vouch */
        }
        ring_put(own, d);
        uint32_t vouches = 0;
        for (uint32_t j = 0; j < node->n; j++) {
            vouches += j != node->cfg.self && ring_has(&node->relay[j], d);
        }
        uint32_t needed = PBFT_BUG(node, PBFT_BUG_RELAY_TRUST) ? 1 : node->f + 1;
        if (vouches >= needed && pending_put(node, r)) {
            node->relays_taken++;
            taken = true;
        }
    }
    if (taken) {
        request_timer_update(node);
    }
}
