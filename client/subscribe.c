/* Subscriptions: certified commands addressed to this principal, delivered
 * in (seq, index) order, each once, without gaps (proto/twinbft.proto,
 * Subscribe/Push/SubscribeAck).
 *
 * Every replica streams its pushes in order, so replica j's highest pushed
 * position head[j] says j has passed everything below it. A pending command
 * is certified once a quorum of signed replies assembles into a certificate
 * that verifies. It is dead once f+1 replicas have passed it without pushing
 * it: one of them is correct, correct replicas agree on what is addressed to
 * whom, so no correct replica will push it and it can never gather a quorum.
 * The lowest certified command is delivered once everything pending below it
 * is dead; anything not yet pushed by anyone below it cannot exist, because
 * the quorum that pushed it includes a correct replica that would have
 * pushed the earlier one first. */
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "proto/tb_assert.h"

enum { TB_SUB_ITEMS_INITIAL = 64 };
_Static_assert((int)TB_SUB_ITEMS_INITIAL <= (int)TB_SUBSCRIPTION_PENDING_MAX,
               "initial room within max");

static int tb_pos_cmp(tb_pos a, tb_pos b) {
    if (a.seq != b.seq) {
        return a.seq < b.seq ? -1 : 1;
    }
    return a.index < b.index ? -1 : a.index > b.index ? 1 : 0;
}

static void tb_sub_item_clear(tb_sub_item *it) {
    for (uint32_t j = 0; j < TB_MEMBERS_MAX; j++) {
        if (it->replies[j] != NULL) {
            twinbft__reply__free_unpacked(it->replies[j], NULL);
        }
    }
    free(it->cert);
    proto_cert_info_clear(&it->info);
    memset(it, 0, sizeof *it);
}

/* Removes and clears items[i], keeping the rest in order. */
static void tb_sub_remove(tb_subscription *s, size_t i) {
    TB_ASSERT(i < s->count);
    tb_sub_item_clear(&s->items[i]);
    memmove(&s->items[i], &s->items[i + 1], (s->count - i - 1) * sizeof s->items[0]);
    s->count--;
}

void tb_sub_free(tb_client *c) {
    tb_subscription *s = &c->sub;
    while (s->count > 0) {
        tb_sub_remove(s, s->count - 1);
    }
    free(s->items);
    memset(s, 0, sizeof *s);
}

static void tb_sub_send(tb_client *c, uint32_t j, tb_pos after) {
    Twinbft__Subscribe sub = TWINBFT__SUBSCRIBE__INIT;
    sub.after_seq = after.seq;
    sub.after_index = after.index;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_SUBSCRIBE;
    m.subscribe = &sub;
    uint8_t *msg = NULL;
    size_t len = 0;
    if (tb_msg_pack(&m, &msg, &len) == 0) {
        tb_link_send(c, j, msg, len); /* lost with the link: the reopen asks again */
    }
    free(msg);
}

/* A (re)opened link is a new stream that starts after the last delivered
 * command; what j pushed on the old one is kept (signed replies stay valid),
 * but its position restarts. */
void tb_sub_on_open(tb_client *c, uint32_t j) {
    c->sub.head[j] = c->sub.delivered;
    c->sub.head_frozen[j] = false;
    tb_sub_send(c, j, c->sub.delivered);
}

void tb_sub_on_ack(tb_client *c, uint32_t j, const Twinbft__SubscribeAck *a) {
    if (a->replica != j || !a->more) {
        return;
    }
    tb_pos last = {a->last_seq, a->last_index};
    tb_sub_send(c, j, last);
}

static bool tb_sub_dead(const tb_client *c, const tb_sub_item *it) {
    uint32_t passed = 0;
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        passed += (it->pushed & (1ull << j)) == 0 && tb_pos_cmp(it->pos, c->sub.head[j]) < 0;
    }
    return passed >= c->cfg.f + 1;
}

/* Drops every uncertified item that is dead: it can never be delivered. */
static void tb_sub_prune(tb_client *c) {
    tb_subscription *s = &c->sub;
    for (size_t i = s->count; i-- > 0;) {
        if (s->items[i].cert == NULL && tb_sub_dead(c, &s->items[i])) {
            tb_sub_remove(s, i);
        }
    }
}

/* Delivers while the lowest pending item is certified (after pruning, every
 * uncertified item below a certified one is alive, so that one must wait). */
static void tb_sub_deliver(tb_client *c) {
    tb_subscription *s = &c->sub;
    if (s->delivering) {
        return;
    }
    s->delivering = true;
    tb_sub_prune(c);
    while (s->active && s->count > 0 && s->items[0].cert != NULL) {
        tb_sub_item it = s->items[0];
        memmove(&s->items[0], &s->items[1], (s->count - 1) * sizeof s->items[0]);
        s->count--;
        s->delivered = it.pos;
        tb_command cmd = {it.pos.seq,         it.pos.index, it.info.result,
                          it.info.result_len, it.cert,      it.cert_len};
        tb_command_cb cb = s->cb;
        cb(&cmd, s->arg);
        tb_sub_item_clear(&it);
        if (s->active) {
            tb_sub_prune(c); /* the new delivered position may have settled more */
        }
    }
    s->delivering = false;
}

static void tb_sub_certify(tb_client *c, tb_sub_item *it) {
    const Twinbft__Reply *group[TB_MEMBERS_MAX];
    size_t n = 0;
    uint8_t *cert = NULL;
    size_t cert_len = 0;
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        if (it->replies[j] != NULL) {
            group[n++] = it->replies[j];
        }
    }
    if (n < tb_quorum(c) || proto_cert_assemble(&c->trust, group, n, &cert, &cert_len) != 0) {
        return;
    }
    if (proto_cert_verify(&c->trust, cert, cert_len, 0, &it->info) != 0) {
        free(cert);
        return;
    }
    it->cert = cert;
    it->cert_len = cert_len;
}

/* The item at pos, inserted in order when new; NULL when there is no room. */
static tb_sub_item *tb_sub_item_at(tb_client *c, tb_pos pos) {
    tb_subscription *s = &c->sub;
    size_t lo = 0, hi = s->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = tb_pos_cmp(s->items[mid].pos, pos);
        if (cmp == 0) {
            return &s->items[mid];
        }
        if (cmp < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (s->count == s->cap) {
        size_t cap = s->cap == 0 ? TB_SUB_ITEMS_INITIAL : 2 * s->cap;
        cap = cap > TB_SUBSCRIPTION_PENDING_MAX ? TB_SUBSCRIPTION_PENDING_MAX : cap;
        tb_sub_item *items = cap > s->cap ? realloc(s->items, cap * sizeof *items) : NULL;
        if (items == NULL) {
            return NULL;
        }
        s->items = items;
        s->cap = cap;
    }
    memmove(&s->items[lo + 1], &s->items[lo], (s->count - lo) * sizeof s->items[0]);
    s->count++;
    memset(&s->items[lo], 0, sizeof s->items[lo]);
    s->items[lo].pos = pos;
    return &s->items[lo];
}

/* A push counts only from replica j's own link, with j's own reply, for
 * this principal, after the last delivered command. */
void tb_sub_on_push(tb_client *c, uint32_t j, Twinbft__Message *m) {
    tb_subscription *s = &c->sub;
    Twinbft__Reply *r = m->push->reply;
    if (r == NULL || r->replica != j || r->leaf.len == 0 || m->push->to == NULL ||
        strcmp(m->push->to, tb_client_name(c)) != 0) {
        return;
    }
    tb_pos pos = {r->seq, r->index};
    if (tb_pos_cmp(pos, s->delivered) <= 0) {
        return;
    }
    tb_sub_item *it = tb_sub_item_at(c, pos);
    if (it == NULL) {
        tb_sub_prune(c); /* dead items make room */
        it = tb_sub_item_at(c, pos);
    }
    if (it == NULL) {
        s->dropped++;
        s->head_frozen[j] = true; /* never take the dropped one as passed over by j */
        return;
    }
    if (!s->head_frozen[j] && tb_pos_cmp(s->head[j], pos) < 0) {
        s->head[j] = pos;
    }
    if (it->replies[j] == NULL) {
        it->replies[j] = r;
        it->pushed |= 1ull << j;
        m->push->reply = NULL;
        if (it->cert == NULL) {
            tb_sub_certify(c, it);
        }
    }
    tb_sub_deliver(c);
}

int tb_client_subscribe(tb_client *c, uint64_t after_seq, uint32_t after_index, tb_command_cb cb,
                        void *arg) {
    tb_subscription *s = &c->sub;
    if (s->active) {
        return TB_ERR_STATE;
    }
    if (cb == NULL) {
        return TB_ERR_INVALID;
    }
    tb_sub_free(c);
    s->active = true;
    s->cb = cb;
    s->arg = arg;
    s->delivered = (tb_pos){after_seq, after_index};
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        s->head[j] = s->delivered;
        tb_sub_send(c, j, s->delivered);
    }
    return 0;
}

void tb_client_unsubscribe(tb_client *c) {
    if (c->sub.delivering) {
        /* Inside a delivery: the loop sees active == false and stops; the
         * items go now, the array with the next subscribe or free. */
        tb_subscription *s = &c->sub;
        while (s->count > 0) {
            tb_sub_remove(s, s->count - 1);
        }
        s->active = false;
        return;
    }
    tb_sub_free(c);
}
