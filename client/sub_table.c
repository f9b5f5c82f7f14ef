/* A subscription's table of pending commands (pushed, not delivered yet),
 * sorted by position, and what keeps one faulty replica from filling it:
 * a quota of items that it alone pushed, a limit on how far ahead of the
 * replicas' reported execution a new item may lie, and, when the table is
 * full all the same, eviction of the highest item of the replica that alone
 * pushed the most (never one that f+1 pushed, so never one a correct
 * replica vouches for). */
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "proto/tb_assert.h"

enum { TB_SUB_ITEMS_INITIAL = 64 };
_Static_assert((int)TB_SUB_ITEMS_INITIAL <= (int)TB_SUBSCRIPTION_PENDING_MAX,
               "initial room within max");
_Static_assert((int)TB_SUBSCRIPTION_PENDING_MAX >= (int)TB_MEMBERS_MAX,
               "every replica's quota of pending items is at least one");

int tb_pos_cmp(tb_pos a, tb_pos b) {
    if (a.seq != b.seq) {
        return a.seq < b.seq ? -1 : 1;
    }
    return a.index < b.index ? -1 : a.index > b.index ? 1 : 0;
}

static uint32_t tb_popcount(uint64_t mask) {
    return (uint32_t)__builtin_popcountll(mask);
}

/* The replica whose quota an item counts against: its only pusher. */
static void tb_sub_solo_adjust(tb_client *c, uint64_t pushed, int delta) {
    if (tb_popcount(pushed) == 1) {
        uint32_t j = (uint32_t)__builtin_ctzll(pushed);
        TB_ASSERT(delta > 0 || c->sub.streams[j].solo > 0);
        c->sub.streams[j].solo = (uint32_t)((int)c->sub.streams[j].solo + delta);
    }
}

void tb_sub_item_clear(tb_sub_item *it) {
    for (uint32_t j = 0; j < TB_MEMBERS_MAX; j++) {
        if (it->replies[j] != NULL) {
            twinbft__reply__free_unpacked(it->replies[j], NULL);
        }
    }
    free(it->cert);
    proto_cert_info_clear(&it->info);
    memset(it, 0, sizeof *it);
}

void tb_sub_remove(tb_client *c, size_t i) {
    tb_subscription *s = &c->sub;
    TB_ASSERT(i < s->count);
    tb_sub_solo_adjust(c, s->items[i].pushed, -1);
    tb_sub_item_clear(&s->items[i]);
    memmove(&s->items[i], &s->items[i + 1], (s->count - i - 1) * sizeof s->items[0]);
    s->count--;
}

void tb_sub_take_first(tb_client *c, tb_sub_item *out) {
    tb_subscription *s = &c->sub;
    TB_ASSERT(s->count > 0);
    *out = s->items[0];
    tb_sub_solo_adjust(c, out->pushed, -1);
    memmove(&s->items[0], &s->items[1], (s->count - 1) * sizeof s->items[0]);
    s->count--;
}

void tb_sub_clear_items(tb_client *c) {
    while (c->sub.count > 0) {
        tb_sub_remove(c, c->sub.count - 1);
    }
}

void tb_sub_item_add(tb_client *c, tb_sub_item *it, uint32_t j, Twinbft__Reply *r) {
    TB_ASSERT(it->replies[j] == NULL && (it->pushed & (1ull << j)) == 0);
    tb_sub_solo_adjust(c, it->pushed, -1);
    it->replies[j] = r;
    it->pushed |= 1ull << j;
    tb_sub_solo_adjust(c, it->pushed, +1);
}

/* The highest seq a new item may have: the (f+1)-th highest executed seq
 * the replicas claimed (at least one correct replica executed that far)
 * plus TB_SUBSCRIPTION_AHEAD_SEQS_MAX. */
static uint64_t tb_sub_seq_bound(const tb_client *c) {
    uint64_t top[TB_MEMBERS_MAX];
    uint32_t k = c->cfg.f + 1;
    for (uint32_t i = 0; i < k; i++) {
        top[i] = 0;
    }
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        uint64_t e = c->sub.streams[j].executed;
        for (uint32_t i = 0; i < k; i++) { /* top[0..k) stays sorted, highest first */
            if (e > top[i]) {
                uint64_t t = top[i];
                top[i] = e;
                e = t;
            }
        }
    }
    uint64_t bound = top[k - 1] + TB_SUBSCRIPTION_AHEAD_SEQS_MAX;
    return bound < top[k - 1] ? UINT64_MAX : bound;
}

/* The replica holding the most items it alone pushed, j counting the new
 * one (j when none holds more): a flood of made-up items is its own. */
static uint32_t tb_sub_most_solo(const tb_client *c, uint32_t j) {
    uint32_t most = j;
    uint32_t count = c->sub.streams[j].solo + 1;
    for (uint32_t k = 0; k < c->cfg.n; k++) {
        if (c->sub.streams[k].solo > count) {
            most = k;
            count = c->sub.streams[k].solo;
        }
    }
    return most;
}

/* The item to evict for j's new one at pos, or count when the new one ranks
 * lowest itself: the highest item of the replica holding the most lone
 * items, whatever its position (else a flood just above the others' heads
 * could never be evicted), unless that replica is j and the new item is
 * above all of its own; with no lone items, of those fewer than f+1 pushed
 * the one with the fewest pushers, of equals the highest above pos.
 * Certified items and items f+1 replicas pushed are never chosen. */
static size_t tb_sub_victim(const tb_client *c, uint32_t j, tb_pos pos) {
    const tb_subscription *s = &c->sub;
    uint32_t most = tb_sub_most_solo(c, j);
    for (size_t i = s->count; c->cfg.f > 0 && s->streams[most].solo > 0 && i-- > 0;) {
        const tb_sub_item *it = &s->items[i];
        if (it->pushed == (1ull << most) && it->cert == NULL) {
            if (most != j || tb_pos_cmp(it->pos, pos) > 0) {
                return i;
            }
            break; /* j's own are all below its new one */
        }
    }
    size_t victim = s->count;
    uint32_t fewest = 1;
    tb_pos at = pos;
    for (size_t i = 0; i < s->count; i++) {
        const tb_sub_item *it = &s->items[i];
        uint32_t pushers = tb_popcount(it->pushed);
        if (it->cert != NULL || pushers > c->cfg.f) {
            continue;
        }
        if (pushers < fewest || (pushers == fewest && tb_pos_cmp(it->pos, at) > 0)) {
            victim = i;
            fewest = pushers;
            at = it->pos;
        }
    }
    return victim;
}

/* Evicts items[i]: the replies its pushers sent are gone, so each of their
 * streams is replayed from before it. */
static void tb_sub_evict(tb_client *c, size_t i) {
    uint64_t pushed = c->sub.items[i].pushed;
    tb_pos pos = c->sub.items[i].pos;
    tb_sub_remove(c, i);
    c->sub.evicted++;
    for (uint32_t k = 0; k < c->cfg.n; k++) {
        if ((pushed & (1ull << k)) != 0) {
            tb_sub_stream_lost(c, k, pos);
        }
    }
}

/* Room for one more item: the array grows up to the maximum, and a full
 * table evicts (or refuses the newcomer, false). */
static bool tb_sub_make_room(tb_client *c, uint32_t j, tb_pos pos) {
    tb_subscription *s = &c->sub;
    if (s->count == TB_SUBSCRIPTION_PENDING_MAX) {
        size_t victim = tb_sub_victim(c, j, pos);
        if (victim == s->count) {
            return false;
        }
        tb_sub_evict(c, victim);
    }
    if (s->count == s->cap) {
        size_t cap = s->cap == 0 ? TB_SUB_ITEMS_INITIAL : 2 * s->cap;
        cap = cap > TB_SUBSCRIPTION_PENDING_MAX ? TB_SUBSCRIPTION_PENDING_MAX : cap;
        tb_sub_item *items = realloc(s->items, cap * sizeof *items);
        if (items == NULL) {
            return false;
        }
        s->items = items;
        s->cap = cap;
    }
    return true;
}

/* The index of the first item at or after pos. */
static size_t tb_sub_lower_bound(const tb_subscription *s, tb_pos pos) {
    size_t lo = 0, hi = s->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tb_pos_cmp(s->items[mid].pos, pos) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

tb_sub_item *tb_sub_item_at(tb_client *c, uint32_t j, tb_pos pos, bool *full) {
    tb_subscription *s = &c->sub;
    size_t at = tb_sub_lower_bound(s, pos);
    *full = false;
    if (at < s->count && tb_pos_cmp(s->items[at].pos, pos) == 0) {
        return &s->items[at];
    }
    if (pos.seq > tb_sub_seq_bound(c)) {
        return NULL;
    }
    if (s->streams[j].solo >= TB_SUBSCRIPTION_PENDING_MAX / c->cfg.n ||
        !tb_sub_make_room(c, j, pos)) {
        *full = true;
        return NULL;
    }
    at = tb_sub_lower_bound(s, pos); /* an eviction may have moved it */
    memmove(&s->items[at + 1], &s->items[at], (s->count - at) * sizeof s->items[0]);
    s->count++;
    memset(&s->items[at], 0, sizeof s->items[at]);
    s->items[at].pos = pos;
    return &s->items[at];
}
