/* Client requests: admission, the table of requests seen but not yet
 * executed (which drives the request timer, PBFT 4.5.2), and the client
 * table that makes execution exactly-once (PBFT 4.1: a request whose number
 * is not above the client's last executed one is not executed again). */
#include <stddef.h>
#include <string.h>

#include "consensus/internal.h"

/* Binary search in an array sorted by name, whose elements (of `size`
 * bytes) hold their name as a char * at offset name_off. Returns the index
 * of the match, or where it would be inserted. */
static ptrdiff_t name_search(const void *base, size_t n, size_t size, size_t name_off,
                             const char *name, bool *found) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *at = NULL;
        memcpy(&at, (const char *)base + mid * size + name_off, sizeof at);
        int c = strcmp(at, name);
        if (c == 0) {
            *found = true;
            return (ptrdiff_t)mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = false;
    return (ptrdiff_t)lo;
}

static ptrdiff_t client_index(const pbft_node *node, const char *name, bool *found) {
    return name_search(node->clients, node->n_clients, sizeof(pbft_client),
                       offsetof(pbft_client, name), name, found);
}

pbft_client *client_find(pbft_node *node, const char *client) {
    bool found = false;
    ptrdiff_t i = client_index(node, client, &found);
    return found ? &node->clients[i] : NULL;
}

/* The client table's digest is an LtHash over the entries (order-free,
 * so the table can be digested without sorting or rehashing it whole).
 * Folding an entry in costs a 2 KiB SHAKE128 expansion, and every executed
 * request rewrites its client's entry: done per request, that was a tenth
 * of a backup's CPU under load. The digest is only read at checkpoints and
 * state transfer, so an update only marks the client stale, and
 * clients_digest folds each stale client once (remove the hashed entry,
 * add the current one): a client that sent a hundred requests between two
 * checkpoints costs two expansions, not two hundred. LtHash addition is
 * commutative, so the result is exactly the eager one. */
void client_entry_free(pbft_client *c) {
    if (c->hashed != c->entry) {
        free(c->hashed);
    }
    free(c->entry);
    free(c->name);
    free(c->sroot);
}

void client_update(pbft_node *node, const char *client, uint64_t number, uint8_t *entry,
                   size_t len) {
    bool found = false;
    ptrdiff_t i = client_index(node, client, &found);
    if (!found) {
        if (node->n_clients == node->cap_clients) {
            node->cap_clients = node->cap_clients ? node->cap_clients * 2 : 16;
            node->clients = realloc(node->clients, node->cap_clients * sizeof *node->clients);
            PBFT_ASSERT(node->clients != NULL);
        }
        memmove(&node->clients[i + 1], &node->clients[i],
                (node->n_clients - (size_t)i) * sizeof *node->clients);
        node->n_clients++;
        node->clients[i] = (pbft_client){.name = (char *)dup_bytes(client, strlen(client) + 1)};
    } else if (node->clients[i].entry != node->clients[i].hashed) {
        free(node->clients[i].entry); /* never hashed: the hash still holds c->hashed */
    }
    pbft_client *c = &node->clients[i];
    if (!c->stale) {
        c->stale = true;
        node->n_clients_stale++;
    }
    free(c->sroot); /* it signed the old entry's batch */
    c->sroot = NULL;
    c->sroot_len = 0;
    c->number = number;
    c->entry = entry;
    c->entry_len = len;
    out_record(node, PBFT_REC_CLIENT, 0, client, false, dup_bytes(entry, len), len);
}

/* State transfer: the table becomes exactly the snapshot's. */
void clients_replace(pbft_node *node, Twinbft__ClientEntry **entries, size_t n) {
    for (size_t i = 0; i < node->n_clients; i++) {
        client_entry_free(&node->clients[i]);
    }
    node->n_clients = 0;
    node->n_clients_stale = 0;
    proto_lthash_init(&node->clients_hash);
    out_record(node, PBFT_REC_CLIENTS_CLEAR, 0, NULL, false, NULL, 0);
    for (size_t i = 0; i < n; i++) {
        size_t len = twinbft__client_entry__get_packed_size(entries[i]);
        uint8_t *b = malloc(len ? len : 1);
        PBFT_ASSERT(b != NULL);
        twinbft__client_entry__pack(entries[i], b);
        client_update(node, entries[i]->client, entries[i]->number, b, len);
    }
}

void clients_digest(pbft_node *node, uint8_t out[PROTO_DIGEST_BYTES]) {
    for (size_t i = 0; node->n_clients_stale > 0 && i < node->n_clients; i++) {
        pbft_client *c = &node->clients[i];
        if (!c->stale) {
            continue;
        }
        if (c->hashed != NULL) {
            proto_lthash_remove(&node->clients_hash, c->hashed, c->hashed_len);
            free(c->hashed);
        }
        proto_lthash_add(&node->clients_hash, c->entry, c->entry_len);
        c->hashed = c->entry;
        c->hashed_len = c->entry_len;
        c->stale = false;
        node->n_clients_stale--;
    }
    PBFT_ASSERT(node->n_clients_stale == 0);
    proto_lthash_digest(&node->clients_hash, out);
}

static ptrdiff_t pending_index(const pbft_node *node, const char *name, bool *found) {
    return name_search(node->pending, node->n_pending, sizeof(pbft_pending),
                       offsetof(pbft_pending, client), name, found);
}

pbft_pending *pending_find(pbft_node *node, const char *client) {
    bool found = false;
    ptrdiff_t i = pending_index(node, client, &found);
    return found ? &node->pending[i] : NULL;
}

void pending_remove_upto(pbft_node *node, const char *client, uint64_t number) {
    bool found = false;
    ptrdiff_t i = pending_index(node, client, &found);
    if (!found) {
        return;
    }
    pbft_pending *p = &node->pending[i];
    if (p->number > number) {
        if (p->prev_number != 0 && p->prev_number <= number) {
            free(p->prev_op); /* executed: no batch can need it any more */
            p->prev_op = NULL;
            p->prev_op_len = 0;
            p->prev_number = 0;
        }
        return;
    }
    free(node->pending[i].client);
    free(node->pending[i].op);
    free(node->pending[i].prev_op);
    memmove(&node->pending[i], &node->pending[i + 1],
            (node->n_pending - (size_t)i - 1) * sizeof *node->pending);
    node->n_pending--;
}

/* PBFT 4.5.2: a replica that holds a request it has not executed runs a
 * timer. Each request ages on its own, from its arrival or the start of
 * the view, whichever is later: the timer is due when the oldest request
 * held has waited request_timeout_ms (then the replica fetches, in case it
 * is only behind) and again at twice that (then it suspects the primary).
 * Executing other requests does not restart it, or a primary that orders
 * everyone but one client could censor that client for ever while the
 * cluster looked healthy. A lone replica (n = 1) runs no timer: the only
 * primary it could suspect is itself. */
void request_timer_update(pbft_node *node) {
    node->relay_deadline = relay_deadline(node);
    /* A diverged replica executes nothing until its state is replaced
     * (checkpoint.c diverge): what it holds cannot execute, and suspecting
     * the primary for it would take it into a view change alone. */
    if (node->n_pending == 0 || node->n == 1 || node->diverged_seq != 0) {
        node->req_deadline = 0;
        node->req_fetched = false;
        return;
    }
    uint64_t oldest = UINT64_MAX;
    for (size_t i = 0; i < node->n_pending; i++) {
        uint64_t a = node->pending[i].arrival_ms;
        oldest = a < oldest ? a : oldest;
    }
    if (oldest < node->req_since) {
        oldest = node->req_since;
    }
    uint64_t t = node->cfg.request_timeout_ms;
    if (node->req_fetched && oldest + t > node->now) {
        node->req_fetched = false; /* what was overdue has executed */
    }
    node->req_deadline = oldest + (node->req_fetched ? 2 * t : t);
}

bool request_wellformed(const Twinbft__Request *r) {
    size_t len = r->client ? strnlen(r->client, PBFT_CLIENT_NAME_BYTES_MAX) : 0;
    return len > 0 && len < PBFT_CLIENT_NAME_BYTES_MAX && r->number > 0 &&
           r->op.len <= PBFT_OP_BYTES_MAX;
}

static bool request_valid(const pbft_from *from, const Twinbft__Request *r) {
    return request_wellformed(r) && strcmp(r->client, from->client) == 0;
}

bool pending_put(pbft_node *node, const Twinbft__Request *r) {
    bool found = false;
    ptrdiff_t i = pending_index(node, r->client, &found);
    if (!found) {
        if (node->n_pending >= PBFT_PENDING_REQUESTS_MAX) {
            node->dropped++;
            return false;
        }
        if (node->n_pending == node->cap_pending) {
            node->cap_pending = node->cap_pending ? node->cap_pending * 2 : 16;
            node->pending = realloc(node->pending, node->cap_pending * sizeof *node->pending);
            PBFT_ASSERT(node->pending != NULL);
        }
        memmove(&node->pending[i + 1], &node->pending[i],
                (node->n_pending - (size_t)i) * sizeof *node->pending);
        node->n_pending++;
        node->pending[i] =
            (pbft_pending){.client = (char *)dup_bytes(r->client, strlen(r->client) + 1)};
    } else {
        pbft_pending *old = &node->pending[i];
        free(old->prev_op);
        old->prev_number = old->number; /* see pbft_pending.prev_number */
        old->prev_op = old->op;
        old->prev_op_len = old->op_len;
    }
    pbft_pending *p = &node->pending[i];
    p->number = r->number;
    p->op = dup_bytes(r->op.data, r->op.len);
    p->op_len = r->op.len;
    p->priority = node->cfg.app.priority != NULL &&
                  node->cfg.app.priority(node->cfg.app.ctx, r->op.data, r->op.len);
    p->arrival = ++node->arrivals;
    p->arrival_ms = node->now;
    p->proposed = 0;
    p->relayed = 0;
    return true;
}

void on_request(pbft_node *node, const pbft_from *from, const Twinbft__Request *r) {
    if (!request_valid(from, r)) {
        node->dropped++;
        return;
    }
    pbft_client *c = client_find(node, r->client);
    if (c != NULL && r->number <= c->number && !PBFT_BUG(node, PBFT_BUG_NO_DEDUP)) {
        if (r->number == c->number) {
            resend_reply(node, c); /* the client missed our reply */
        }
        return;
    }
    pbft_pending *p = pending_find(node, r->client);
    if (p != NULL && r->number < p->number) {
        return; /* the client has moved on */
    }
    if (p != NULL && r->number == p->number) {
        if (p->op_len != r->op.len || memcmp(p->op, r->op.data, p->op_len) != 0) {
            node->dropped++; /* same number, other operation: keep the first */
        }
        return;
    }
    pending_put(node, r);
    if (p != NULL || node->req_deadline == 0 || (node->relay_deadline == 0 && relays(node))) {
        request_timer_update(node); /* a new arrival is the youngest: unless it replaced one */
    }
    recheck_waiting(node);
}
