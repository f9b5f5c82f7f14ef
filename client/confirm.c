/* The cluster check: before a client sends anything to be ordered (an
 * intent, or a query, which may fall back to ordering), f+1 replicas must
 * say that they serve the cluster id and epoch its configuration names.
 * Without it, a client with a stale or wrong cluster file had its writes
 * executed and learned only afterwards, when no certificate would verify,
 * that they were not the cluster's it meant (and a script that retried
 * applied them twice).
 *
 * The question is a StatusRequest, asked of every replica on its own link
 * once it opens (and again every TB_CLIENT_RETRANSMIT_MS until answered:
 * a replica sheds requests when a link's output is full); the answer is
 * the StatusReply's cluster_id and epoch.
 *
 * What a Byzantine replica can do here. Each answer comes over replica j's
 * mutual-TLS link, whose peer the handshake pinned to j's key, so it is
 * j's own word; nothing is forwarded to anyone, so no signature is needed.
 * Up to f replicas may lie, and f+1 equal answers include a correct
 * replica's. So liars alone can neither confirm a wrong configuration (a
 * correct replica must say the configured pair) nor refuse a right one
 * (f+1 must say the same other pair). They can stay silent or contradict:
 * if too few correct replicas are reachable, the check does not settle
 * and what waits for it times out, as it would have anyway (an intent
 * needs f+1 matching replies). Correct replicas that disagree (started
 * from different cluster files) settle it by whichever pair f+1 of them
 * report first.
 *
 * What this does not cover: the answer is kept for the client's life. A
 * replica's cluster id and epoch come from the cluster file it was started
 * with and do not change while it runs; if epochs come to change at run
 * time, a client must check again at an epoch boundary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "proto/tb_assert.h"

static bool tb_served_same(const tb_served *a, const tb_served *b) {
    return a->epoch == b->epoch && a->cluster_id_len == b->cluster_id_len &&
           memcmp(a->cluster_id, b->cluster_id, a->cluster_id_len) == 0;
}

static tb_served tb_served_configured(const tb_client *c) {
    tb_served s;
    memset(&s, 0, sizeof s);
    memcpy(s.cluster_id, c->cfg.cluster_id, c->cfg.cluster_id_len);
    s.cluster_id_len = c->cfg.cluster_id_len;
    s.epoch = c->cfg.epoch;
    return s;
}

/* How many replicas' usable answers equal s. */
static uint32_t tb_confirm_count(const tb_client *c, const tb_served *s) {
    uint32_t same = 0;
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        same += (c->confirm.usable >> j & 1) != 0 && tb_served_same(&c->confirm.said[j], s);
    }
    return same;
}

/* `cluster "ID" epoch N`, with bytes that do not print as '?'. */
static void tb_served_describe(const tb_served *s, char *out, size_t cap) {
    char id[TB_CLUSTER_ID_BYTES_MAX + 1];
    for (size_t i = 0; i < s->cluster_id_len; i++) {
        uint8_t b = s->cluster_id[i];
        id[i] = b >= 0x20 && b < 0x7f && b != '"' ? (char)b : '?';
    }
    id[s->cluster_id_len] = '\0';
    snprintf(out, cap, "cluster \"%s\" epoch %llu", id, (unsigned long long)s->epoch);
}

static void tb_confirm_settle(tb_client *c, tb_confirm_state state) {
    tb_confirm *k = &c->confirm;
    TB_ASSERT(k->state == TB_CONFIRM_PENDING && state != TB_CONFIRM_PENDING);
    k->state = state;
    event_del(k->retry);
    free(k->msg);
    k->msg = NULL;
    k->msg_len = 0;
}

static void tb_confirm_refuse(tb_client *c, const tb_served *served) {
    tb_served want = tb_served_configured(c);
    c->confirm.served = *served;
    tb_confirm_settle(c, TB_CONFIRM_REFUSED);
    if (c->cfg.log != NULL) {
        char have[128], named[128], line[384];
        tb_served_describe(served, have, sizeof have);
        tb_served_describe(&want, named, sizeof named);
        snprintf(line, sizeof line,
                 "f+1 replicas serve %s, but the configuration names %s: nothing is submitted",
                 have, named);
        c->cfg.log(line, c->cfg.log_arg);
    }
    tb_op_refuse(c);
}

/* Settles once f+1 usable answers agree: on the configured pair, or on
 * another one. */
static void tb_confirm_decide(tb_client *c) {
    tb_served want = tb_served_configured(c);
    if (tb_confirm_count(c, &want) >= c->cfg.f + 1) {
        tb_confirm_settle(c, TB_CONFIRM_OK);
        tb_op_release(c);
        return;
    }
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        const tb_served *s = &c->confirm.said[j];
        if ((c->confirm.usable >> j & 1) != 0 && tb_confirm_count(c, s) >= c->cfg.f + 1) {
            tb_served other = *s; /* the refusal ends the op, whose callback may go on */
            tb_confirm_refuse(c, &other);
            return;
        }
    }
}

bool tb_confirm_on_reply(tb_client *c, uint32_t j, const Twinbft__StatusReply *r) {
    tb_confirm *k = &c->confirm;
    if (r->id != k->id) {
        return false;
    }
    uint64_t bit = 1ull << j;
    if (k->state != TB_CONFIRM_PENDING || r->replica != j || (k->answered & bit) != 0) {
        return true; /* late, foreign or a repeat: a replica's first answer counts */
    }
    k->answered |= bit;
    /* An id longer than any cluster's is no answer at all (a correct
     * replica never sends one); the replica is not asked again. */
    if (r->cluster_id.len > TB_CLUSTER_ID_BYTES_MAX) {
        return true;
    }
    tb_served *s = &k->said[j];
    memset(s, 0, sizeof *s);
    if (r->cluster_id.len > 0) {
        memcpy(s->cluster_id, r->cluster_id.data, r->cluster_id.len);
    }
    s->cluster_id_len = r->cluster_id.len;
    s->epoch = r->epoch;
    k->usable |= bit;
    tb_confirm_decide(c);
    return true;
}

void tb_confirm_on_open(tb_client *c, uint32_t j) {
    tb_confirm *k = &c->confirm;
    if (k->state == TB_CONFIRM_PENDING && (k->answered >> j & 1) == 0) {
        tb_link_send(c, j, k->msg, k->msg_len);
    }
}

static void tb_confirm_on_retry(evutil_socket_t fd, short what, void *arg) {
    tb_client *c = arg;
    (void)fd, (void)what;
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        tb_confirm_on_open(c, j);
    }
}

int tb_confirm_init(tb_client *c) {
    tb_confirm *k = &c->confirm;
    k->retry = event_new(c->base, -1, EV_PERSIST, tb_confirm_on_retry, c);
    if (k->retry == NULL) {
        return TB_ERR_NOMEM;
    }
    Twinbft__StatusRequest r = TWINBFT__STATUS_REQUEST__INIT;
    r.id = c->next_id++;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_STATUS_REQUEST;
    m.status_request = &r;
    int rc = tb_msg_pack(&m, &k->msg, &k->msg_len);
    if (rc != 0) {
        return rc;
    }
    k->id = r.id;
    struct timeval every = tb_ms_timeval(TB_CLIENT_RETRANSMIT_MS);
    event_add(k->retry, &every);
    return 0;
}

void tb_confirm_free(tb_client *c) {
    tb_confirm *k = &c->confirm;
    if (k->retry != NULL) {
        event_free(k->retry);
    }
    free(k->msg);
    memset(k, 0, sizeof *k);
}

int tb_client_served(const tb_client *c, tb_served *out) {
    switch (c->confirm.state) {
    case TB_CONFIRM_OK:
        if (out != NULL) {
            *out = tb_served_configured(c);
        }
        return 0;
    case TB_CONFIRM_REFUSED:
        if (out != NULL) {
            *out = c->confirm.served;
        }
        return TB_ERR_WRONG_CLUSTER;
    default:
        return TB_ERR_AGAIN;
    }
}
