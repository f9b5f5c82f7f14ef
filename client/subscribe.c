/* Subscriptions: certified commands addressed to this principal, delivered
 * in (seq, index) order, each once (proto/twinbft.proto,
 * Subscribe/Push/SubscribeAck).
 *
 * Every replica streams its pushes in order, so once the client holds every
 * push of replica j's stream up to head[j], j has passed each command at or
 * below it that it did not push. A replica's outbox is complete only above
 * its horizon (SubscribeAck.horizon_seq), so passing counts only above it.
 * A pending command is
 *   - certified once a quorum of signed replies assembles into a certificate
 *     that verifies;
 *   - dead once f+1 replicas passed it above their horizons: one of them is
 *     correct, correct replicas agree on what is addressed to whom, so it
 *     does not exist;
 *   - unreachable once too few replicas pushed it or may still push it to
 *     make a quorum: given up, and the next delivery above it says
 *     gap_before.
 * The lowest certified command is delivered once everything pending below it
 * is dead or given up and f+1 replicas pushed it on streams held up to it:
 * one of those is correct and pushed every earlier command first, so none
 * can be missing, unless that replica's outbox did not reach back to the
 * last delivered command (then gap_before says so). While rounds under way
 * may still bring f+1 such replicas, it waits, but for
 * TB_SUBSCRIPTION_SOON_WAIT_MS at most (a replica may never answer).
 *
 * A new subscription's rounds share the links with the earlier one's (there
 * is no Unsubscribe): the earlier acks are counted off, and head moves only
 * to what the new round's own ack reports.
 *
 * A push the client cannot keep (sub_table.c) is lost: j's head drops below
 * it and j is asked to replay its stream from there. Pushes from the old
 * stream may still arrive meanwhile, so head waits for that round's ack,
 * which vouches for everything up to its last position. */
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "proto/merkle.h"
#include "proto/tb_assert.h"

_Static_assert((int)TB_SUBSCRIPTION_PATH_MAX >= (int)PROTO_MERKLE_DEPTH_MAX,
               "a path of any batch fits");

/* Forgets the subscription but not what the links still carry: the count
 * of unanswered Subscribes and whether a replica is frozen stay with the
 * link (tb_sub_on_open resets them), as do the timer and `active`. */
static void tb_sub_reset(tb_client *c) {
    tb_subscription *s = &c->sub;
    tb_subscription keep = *s;
    tb_sub_clear_items(c);
    free(s->items);
    if (s->soon_wait != NULL) {
        evtimer_del(s->soon_wait);
    }
    memset(s, 0, sizeof *s);
    s->generation = keep.generation + 1;
    s->active = keep.active;
    s->soon_wait = keep.soon_wait;
    for (uint32_t j = 0; j < TB_MEMBERS_MAX; j++) {
        s->streams[j].subscribes = keep.streams[j].subscribes;
        s->streams[j].frozen = keep.streams[j].frozen;
    }
}

void tb_sub_free(tb_client *c) {
    tb_sub_reset(c);
    if (c->sub.soon_wait != NULL) {
        event_free(c->sub.soon_wait);
        c->sub.soon_wait = NULL;
    }
}

static tb_pos tb_pos_max(tb_pos a, tb_pos b) {
    return tb_pos_cmp(a, b) < 0 ? b : a;
}

/* The position just below pos (pos is above the start, so above (0, 0)). */
static tb_pos tb_pos_pred(tb_pos pos) {
    TB_ASSERT(pos.seq > 0 || pos.index > 0);
    if (pos.index > 0) {
        return (tb_pos){pos.seq, pos.index - 1};
    }
    return (tb_pos){pos.seq - 1, UINT32_MAX};
}

/* Asks j for its stream after `after`; head[j] starts there (what lies at
 * or below it was either held or delivered). A Subscribe lost with the
 * link is asked again by the reopen. */
static void tb_sub_send(tb_client *c, uint32_t j, tb_pos after) {
    Twinbft__Subscribe sub = TWINBFT__SUBSCRIBE__INIT;
    sub.after_seq = after.seq;
    sub.after_index = after.index;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_SUBSCRIBE;
    m.subscribe = &sub;
    uint8_t *msg = NULL;
    size_t len = 0;
    c->sub.streams[j].head = after;
    if (tb_msg_pack(&m, &msg, &len) == 0 && c->links[j] != NULL &&
        tb_tls_link_is_open(c->links[j]) && tb_tls_send(c->links[j], msg, len) == 0) {
        c->sub.streams[j].subscribes++;
    }
    free(msg);
}

/* A (re)opened link is a new stream that starts after the last delivered
 * command; what j pushed on the old one is kept (signed replies stay valid),
 * but j vouches for it again only when its new stream reaches it. */
void tb_sub_on_open(tb_client *c, uint32_t j) {
    tb_sub_stream *st = &c->sub.streams[j];
    st->resync = st->resync_again = st->frozen = st->starved = false;
    st->subscribes = 0; /* the old link's rounds are gone with it */
    if (!c->sub.subscribed) {
        return;
    }
    st->confirmed = c->sub.delivered;
    tb_sub_send(c, j, c->sub.delivered);
}

/* j's head and confirmed position drop below its lost push at pos. */
static void tb_sub_lower(tb_sub_stream *st, tb_pos pos) {
    if (tb_pos_cmp(st->head, pos) >= 0) {
        st->head = tb_pos_pred(pos);
    }
    if (tb_pos_cmp(st->confirmed, pos) >= 0) {
        st->confirmed = tb_pos_pred(pos);
    }
}

/* j's push at pos was refused for want of room or quota: its stream waits
 * for room (tb_sub_resume_starved) before it is replayed. */
static void tb_sub_stream_starve(tb_client *c, uint32_t j, tb_pos pos) {
    tb_sub_stream *st = &c->sub.streams[j];
    tb_sub_lower(st, pos);
    if (!st->frozen) {
        st->starved = st->resync = true; /* head waits for the replay's ack */
    }
}

/* Replays the streams that wait for room once the table has some for them. */
static void tb_sub_resume_starved(tb_client *c) {
    tb_subscription *s = &c->sub;
    if (s->count >= TB_SUBSCRIPTION_PENDING_MAX) {
        return;
    }
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        tb_sub_stream *st = &s->streams[j];
        if (st->starved && st->solo < TB_SUBSCRIPTION_PENDING_MAX / c->cfg.n) {
            st->starved = st->resync_again = false;
            tb_sub_send(c, j, tb_pos_max(st->head, s->delivered));
        }
    }
}

void tb_sub_stream_lost(tb_client *c, uint32_t j, tb_pos pos) {
    tb_sub_stream *st = &c->sub.streams[j];
    tb_sub_lower(st, pos);
    if (st->frozen || st->starved) {
        return; /* ignored, or its replay already waits for room */
    }
    if (st->resync) {
        st->resync_again = true; /* the round under way cannot vouch for its range */
        return;
    }
    st->resync = true;
    tb_sub_send(c, j, tb_pos_max(st->head, c->sub.delivered));
}

/* How far j's stream counts: all of it when no round is under way (the
 * horizon is current), else what the last answered round covered. */
static tb_pos tb_sub_counted(const tb_sub_stream *st) {
    return st->subscribes == 0 ? st->head : st->confirmed;
}

/* Whether j's counted stream reaches the item without having carried it. */
static bool tb_sub_passed(const tb_client *c, uint32_t j, const tb_sub_item *it) {
    return (it->pushed & (1ull << j)) == 0 &&
           tb_pos_cmp(it->pos, tb_sub_counted(&c->sub.streams[j])) <= 0;
}

typedef enum tb_fate { TB_FATE_ALIVE, TB_FATE_DEAD, TB_FATE_UNREACHABLE } tb_fate;

static tb_fate tb_sub_fate(const tb_client *c, const tb_sub_item *it) {
    uint32_t passed = 0, may = 0;
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        bool whole = it->pos.seq > c->sub.streams[j].horizon;
        if (tb_sub_passed(c, j, it)) {
            passed += whole;
        } else if ((it->pushed & (1ull << j)) != 0 || whole) {
            may++; /* pushed it, or has not got there and still keeps it */
        }
    }
    if (passed >= c->cfg.f + 1) {
        return TB_FATE_DEAD;
    }
    return may < tb_quorum(c) ? TB_FATE_UNREACHABLE : TB_FATE_ALIVE;
}

static void tb_sub_note_gap(tb_subscription *s, tb_pos pos) {
    if (!s->gap || tb_pos_cmp(pos, s->gap_low) < 0) {
        s->gap_low = pos;
    }
    if (!s->gap || tb_pos_cmp(pos, s->gap_high) > 0) {
        s->gap_high = pos;
    }
    s->gap = true;
}

/* Whether delivering at pos skips a given-up item, and what is left to
 * report after it: the given-up items above pos are not remembered one by
 * one, so the next delivery reports one for sure (more often than needed,
 * never less). */
static bool tb_sub_take_gap(tb_subscription *s, tb_pos pos) {
    if (!s->gap || tb_pos_cmp(s->gap_low, pos) >= 0) {
        return false;
    }
    if (tb_pos_cmp(s->gap_high, pos) <= 0) {
        s->gap = false;
    } else {
        s->gap_low = pos;
    }
    return true;
}

/* Drops every uncertified item that is dead or can no longer be certified. */
static void tb_sub_prune(tb_client *c) {
    tb_subscription *s = &c->sub;
    for (size_t i = s->count; i-- > 0;) {
        if (s->items[i].cert != NULL) {
            continue;
        }
        tb_fate fate = tb_sub_fate(c, &s->items[i]);
        if (fate == TB_FATE_UNREACHABLE) {
            tb_sub_note_gap(s, s->items[i].pos);
        }
        if (fate != TB_FATE_ALIVE) {
            tb_sub_remove(c, i);
        }
    }
}

/* Who vouches for an item: of the replicas that pushed it, those whose
 * counted stream reaches it (`counted`), of those the ones whose outbox
 * reaches back past the last delivered command (`whole`), and pushers of
 * the latter kind whose round is still under way (`soon`). */
typedef struct tb_vouch {
    uint32_t counted;
    uint32_t whole;
    uint32_t soon;
} tb_vouch;

static tb_vouch tb_sub_vouch(const tb_client *c, const tb_sub_item *it) {
    uint64_t first_seq = c->sub.delivered.seq > 0 ? c->sub.delivered.seq : 1;
    tb_vouch v = {0, 0, 0};
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        const tb_sub_stream *st = &c->sub.streams[j];
        if ((it->pushed & (1ull << j)) == 0) {
            continue;
        }
        bool reached = tb_pos_cmp(it->pos, tb_sub_counted(st)) <= 0;
        bool whole = st->horizon < first_seq;
        v.counted += reached;
        v.whole += reached && whole;
        v.soon += !reached && whole;
    }
    return v;
}

/* The lowest item can go once it is certified and f+1 replicas vouch for
 * it, but not while rounds under way may still show that it skips
 * nothing (then gap_before would be set needlessly). */
/* Whether the lowest item is certified and f+1 replicas vouch for it, but
 * only rounds under way can make it skip nothing for sure. */
static bool tb_sub_waits_soon(const tb_client *c) {
    const tb_subscription *s = &c->sub;
    if (!s->subscribed || s->count == 0 || s->items[0].cert == NULL) {
        return false;
    }
    tb_vouch v = tb_sub_vouch(c, &s->items[0]);
    uint32_t enough = c->cfg.f + 1;
    return v.counted >= enough && v.whole < enough && v.whole + v.soon >= enough;
}

/* The lowest item can go once it is certified and f+1 replicas vouch for
 * it, but not while rounds under way may still show that it skips
 * nothing (then gap_before would be set needlessly), and such a wait lasts
 * TB_SUBSCRIPTION_SOON_WAIT_MS at most: a replica can keep its round
 * unanswered for ever. */
static bool tb_sub_ready(const tb_client *c) {
    const tb_subscription *s = &c->sub;
    if (!s->subscribed || s->count == 0 || s->items[0].cert == NULL) {
        return false;
    }
    tb_vouch v = tb_sub_vouch(c, &s->items[0]);
    uint32_t enough = c->cfg.f + 1;
    if (v.counted < enough) {
        return false;
    }
    if (v.whole >= enough || v.whole + v.soon < enough) {
        return true;
    }
    return s->soon_due && tb_pos_cmp(s->soon_pos, s->items[0].pos) == 0;
}

/* Starts the bounded wait when the lowest item waits for rounds under way
 * (a wait already running for the same item goes on), stops it otherwise. */
static void tb_sub_arm_soon(tb_client *c) {
    tb_subscription *s = &c->sub;
    if (!tb_sub_waits_soon(c)) {
        evtimer_del(s->soon_wait);
        s->soon_due = false;
        return;
    }
    if (tb_pos_cmp(s->soon_pos, s->items[0].pos) == 0 &&
        (s->soon_due || evtimer_pending(s->soon_wait, NULL))) {
        return;
    }
    s->soon_pos = s->items[0].pos;
    s->soon_due = false;
    struct timeval tv = tb_ms_timeval(TB_SUBSCRIPTION_SOON_WAIT_MS);
    evtimer_add(s->soon_wait, &tv);
}

/* Delivers while the lowest pending item is ready (after pruning, every
 * uncertified item below a certified one is alive, so that one must wait).
 * The callback may unsubscribe (and subscribe again): the generation says
 * the loop's subscription is gone. */
static void tb_sub_deliver(tb_client *c) {
    tb_subscription *s = &c->sub;
    if (s->delivering) {
        return;
    }
    uint64_t generation = s->generation;
    s->delivering = true;
    tb_sub_prune(c);
    while (s->generation == generation && tb_sub_ready(c)) {
        bool whole = tb_sub_vouch(c, &s->items[0]).whole >= c->cfg.f + 1;
        bool gap = tb_sub_take_gap(s, s->items[0].pos) || !whole;
        tb_sub_item it;
        tb_sub_take_first(c, &it);
        s->delivered = it.pos;
        tb_command cmd = {
            .seq = it.pos.seq,
            .index = it.pos.index,
            .result = it.info.result,
            .result_len = it.info.result_len,
            .cert = it.cert,
            .cert_len = it.cert_len,
            .not_before_ms = it.info.not_before_ms,
            .expires_at_ms = it.info.expires_at_ms,
            .gap_before = gap,
        };
        c->in_callback++;
        s->cb(&cmd, s->arg);
        c->in_callback--;
        tb_sub_item_clear(&it);
        if (s->generation == generation) {
            tb_sub_prune(c); /* the new delivered position may have settled more */
        }
    }
    s->delivering = false;
    if (s->subscribed) {
        tb_sub_resume_starved(c);
        tb_sub_arm_soon(c);
    }
}

static void tb_sub_on_soon_wait(evutil_socket_t fd, short what, void *arg) {
    tb_client *c = arg;
    (void)fd, (void)what;
    tb_subscription *s = &c->sub;
    if (s->subscribed && s->count > 0 && tb_pos_cmp(s->soon_pos, s->items[0].pos) == 0) {
        s->soon_due = true;
    }
    tb_sub_deliver(c);
}

void tb_sub_on_ack(tb_client *c, uint32_t j, const Twinbft__SubscribeAck *a) {
    tb_sub_stream *st = &c->sub.streams[j];
    if (a->replica != j) {
        return;
    }
    bool latest = st->subscribes == 0 || --st->subscribes == 0;
    if (!c->sub.subscribed) {
        return; /* an unsubscribed round's: counted, nothing more */
    }
    st->horizon = a->horizon_seq;
    st->executed = a->executed > st->executed ? a->executed : st->executed;
    if (!latest) {
        return; /* a later Subscribe is out: its round answers for the stream */
    }
    if (st->frozen) {
        return;
    }
    if (st->starved) {
        tb_sub_deliver(c); /* the round missed a refused push: the replay answers */
        return;
    }
    tb_pos last = {a->last_seq, a->last_index};
    if (st->resync && st->resync_again) {
        st->resync_again = false;
        tb_sub_send(c, j, tb_pos_max(st->head, c->sub.delivered));
        return;
    }
    if (st->resync) {
        st->resync = false; /* the round pushed all of j's commands up to last */
        st->head = tb_pos_max(st->head, last);
    }
    st->confirmed = st->head;
    if (a->more) {
        /* Never from before what j already streamed or what was delivered:
         * an empty round (last (0, 0)) must not replay the outbox. */
        tb_sub_send(c, j, tb_pos_max(tb_pos_max(last, st->head), c->sub.delivered));
    }
    tb_sub_deliver(c); /* a new horizon or head may settle pending items */
}

/* Certifies an item once a quorum of its replies agree and carry valid
 * signatures, each verified once (tb_sig_group); the certificate built is
 * checked in every other way but not verified again. */
static void tb_sub_certify(tb_client *c, tb_sub_item *it) {
    const Twinbft__Reply *group[TB_MEMBERS_MAX];
    uint8_t *cert = NULL;
    size_t cert_len = 0;
    size_t n = tb_sig_group(c, it->replies, &it->sigs, NULL, group);
    if (n < tb_quorum(c) ||
        proto_cert_assemble_checked(&c->trust, group, n, &cert, &cert_len, &it->info) != 0) {
        return;
    }
    it->cert = cert;
    it->cert_len = cert_len;
}

/* Whether a reply is small enough to keep; correct replicas never send
 * larger ones. */
static bool tb_sub_reply_fits(const Twinbft__Reply *r) {
    if (r->leaf.len > TB_SUBSCRIPTION_LEAF_BYTES_MAX || r->n_path > TB_SUBSCRIPTION_PATH_MAX) {
        return false;
    }
    for (size_t k = 0; k < r->n_path; k++) {
        if (r->path[k].len != TB_DIGEST_BYTES) {
            return false;
        }
    }
    return twinbft__reply__get_packed_size(r) <= TB_SUBSCRIPTION_REPLY_BYTES_MAX;
}

/* Stores j's push at pos (r is taken when kept); false when it was lost. */
static bool tb_sub_store(tb_client *c, uint32_t j, tb_pos pos, Twinbft__Message *m) {
    tb_subscription *s = &c->sub;
    if (s->count == TB_SUBSCRIPTION_PENDING_MAX) {
        tb_sub_prune(c); /* dead items make room first */
    }
    bool full = false;
    tb_sub_item *it = tb_sub_item_at(c, j, pos, &full);
    if (it == NULL) {
        s->refused++;
        if (full) {
            tb_sub_stream_starve(c, j, pos);
        } else {
            tb_sub_stream_lost(c, j, pos);
        }
        return false;
    }
    if (it->replies[j] == NULL) {
        tb_sub_item_add(c, it, j, m->push->reply);
        m->push->reply = NULL;
        if (it->cert == NULL) {
            tb_sub_certify(c, it);
        }
    }
    return true;
}

/* A push counts only from replica j's own link, with j's own reply, for
 * this principal, after the last delivered command. */
void tb_sub_on_push(tb_client *c, uint32_t j, Twinbft__Message *m) {
    tb_subscription *s = &c->sub;
    tb_sub_stream *st = &s->streams[j];
    Twinbft__Reply *r = m->push->reply;
    if (!s->subscribed || r == NULL || r->replica != j || r->leaf.len == 0 || m->push->to == NULL ||
        strcmp(m->push->to, tb_client_name(c)) != 0 || st->frozen) {
        return;
    }
    tb_pos pos = {r->seq, r->index};
    if (tb_pos_cmp(pos, s->delivered) <= 0) {
        return;
    }
    if (!tb_sub_reply_fits(r)) {
        s->refused++;
        st->frozen = true;             /* j is ignored until its link reopens ... */
        tb_sub_stream_lost(c, j, pos); /* ... and its head stays below this */
        return;
    }
    st->executed = r->seq > st->executed ? r->seq : st->executed; /* j claims to have run it */
    if (!tb_sub_store(c, j, pos, m)) {
        return;
    }
    if (!st->resync && tb_pos_cmp(st->head, pos) < 0) {
        st->head = pos;
    }
    tb_sub_deliver(c);
}

int tb_client_subscribe(tb_client *c, uint64_t after_seq, uint32_t after_index, tb_command_cb cb,
                        void *arg) {
    tb_subscription *s = &c->sub;
    if (s->subscribed) {
        return TB_ERR_STATE;
    }
    if (cb == NULL) {
        return TB_ERR_INVALID;
    }
    /* A subscription sends nothing to be ordered, so it does not wait for
     * the cluster check; but once that check says this is not the cluster
     * the configuration names, none of its certificates could verify. */
    if (c->confirm.state == TB_CONFIRM_REFUSED) {
        return TB_ERR_WRONG_CLUSTER;
    }
    if (s->soon_wait == NULL) {
        s->soon_wait = evtimer_new(c->base, tb_sub_on_soon_wait, c);
        if (s->soon_wait == NULL) {
            return TB_ERR_NOMEM;
        }
    }
    tb_sub_reset(c);
    s->active = s->subscribed = true;
    s->cb = cb;
    s->arg = arg;
    s->delivered = (tb_pos){after_seq, after_index};
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        /* Pushes of an earlier subscription's live stream may still be on
         * the way: like after a lost push, head moves only to what this
         * round's own ack reports. */
        s->streams[j].resync = true;
        s->streams[j].confirmed = s->delivered;
        tb_sub_send(c, j, s->delivered);
    }
    return 0;
}

void tb_client_unsubscribe(tb_client *c) {
    tb_subscription *s = &c->sub;
    if (s->delivering) {
        /* Inside a delivery: the loop sees the new generation and stops; the
         * items go now, the array with the next subscribe or free. */
        tb_sub_clear_items(c);
        s->subscribed = false;
        s->generation++;
        evtimer_del(s->soon_wait);
        return;
    }
    tb_sub_reset(c);
}
