/* Clients: each issues its requests one at a time to every replica,
 * retransmits to every replica on a timeout, and accepts a result once f+1
 * distinct replicas (by the authenticated channel, so at least one correct)
 * sent replies with the same seq and the same result leaf. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"
#include "proto/tb_assert.h"
#include "tests/sim/world.h"

void client_init(sim_world *w, sim_client *c, uint32_t idx) {
    memset(c, 0, sizeof *c);
    c->idx = idx;
    c->ep = w->n + idx;
    snprintf(c->name, sizeof c->name, "c%u", idx);
    c->seen = calloc((size_t)w->n * SIM_REPLIES_KEPT, sizeof *c->seen);
    c->n_seen = calloc(w->n, sizeof *c->n_seen);
    TB_ASSERT(c->seen != NULL && c->n_seen != NULL);
}

void client_free(sim_client *c) {
    free(c->seen);
    free(c->n_seen);
    memset(c, 0, sizeof *c);
}

static void arm_timer(sim_world *w, sim_client *c) {
    c->timer_gen++;
    sim_event ev = {.time_us = w->now_us + SIM_CLIENT_TIMEOUT_US,
                    .kind = SIM_EV_CLIENT_TIMER,
                    .a = c->idx,
                    .gen = c->timer_gen};
    sim_eventq_push(&w->q, &ev);
}

static void send_request(sim_world *w, sim_client *c) {
    Twinbft__Request rq = TWINBFT__REQUEST__INIT;
    rq.client = c->name;
    rq.number = c->number;
    rq.op = (ProtobufCBinaryData){c->op_len, c->op};
    rq.priority = c->priority;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_REQUEST;
    m.request = &rq;
    uint8_t *buf = NULL;
    size_t len = 0;
    TB_ASSERT(proto_message_pack(&m, &buf, &len) == 0);
    for (uint32_t j = 0; j < w->n; j++) {
        sim_net_send(&w->net, w->now_us, c->ep, j, buf, len);
    }
    free(buf);
}

void client_issue(sim_world *w, sim_client *c) {
    if (c->outstanding || c->number >= w->opt.requests) {
        return;
    }
    c->number++;
    if (w->opt.counter_app) {
        bool inc = sim_rng_chance(&w->rng, 600);
        uint8_t key = (uint8_t)sim_rng_below(&w->rng, SIM_APP_KEYS);
        uint64_t arg = inc ? sim_rng_range(&w->rng, 1, 9) : sim_rng_below(&w->rng, 1000);
        sim_app_op_encode(inc ? 'i' : 'p', key, arg, c->op);
        c->op_len = SIM_APP_OP_BYTES;
        /* The safety lane, as the replicas decide it (the flag is only a hint). */
        c->priority = sim_app_op_is_priority(c->op, c->op_len);
    } else {
        /* A random twin-workload op (registry, placement, config, actuation,
         * e-stop, shadow, ACL), drawn from the world's PRNG. */
        sm_workload g = {sim_rng_next(&w->rng) | 1, &w->names};
        c->op_len = sm_workload_packed(&g, c->op);
        TB_ASSERT(c->op_len > 0);
        /* E-stops and safe-state commands take the safety lane, as in the replica. */
        c->priority = sm_op_is_priority(c->op, c->op_len);
    }
    sim_check_issued(&w->check, c->idx, c->number, c->op, c->op_len);
    c->outstanding = true;
    c->sent_at_us = w->now_us;
    memset(c->n_seen, 0, w->n);
    send_request(w, c);
    arm_timer(w, c);
}

void client_timer(sim_world *w, sim_client *c, uint64_t gen) {
    if (!c->outstanding || gen != c->timer_gen) {
        return;
    }
    c->retransmits++;
    send_request(w, c);
    arm_timer(w, c);
}

/* Liveness for each client, not only for the cluster: after the heal, a
 * request of c's that was sent later than another client's and executed
 * first shows the cluster ordering around it; one that has waited longer
 * than (uint64_t)SIM_STARVE_MS * 1000 meanwhile is being starved (censored). A cluster that
 * is merely slow to recover executes the older requests first. */
static void check_starvation(sim_world *w, const sim_client *c) {
    if ((!w->healed && w->faults != 0) || w->stuck) {
        return;
    }
    for (uint32_t i = 0; i < w->opt.clients; i++) {
        const sim_client *o = &w->clients[i];
        /* Without faults the whole run is fault-free. Each new view gives its
         * primary a fresh chance: a view change that took long to finish
         * after the heal is slow recovery, not starvation, and a censoring
         * primary keeps its view for as long as it starves the client. */
        uint64_t since = w->faults == 0 ? 0 : w->heal_us;
        since = o->sent_at_us > since ? o->sent_at_us : since;
        since = w->view_entered_us > since ? w->view_entered_us : since;
        uint64_t bound = (uint64_t)(w->faults == 0 ? SIM_STARVE_CALM_MS : SIM_STARVE_MS) * 1000;
        if (o == c || !o->outstanding || c->sent_at_us <= since || w->now_us - since <= bound) {
            continue;
        }
        w->stuck = true;
        snprintf(w->stuck_why, sizeof w->stuck_why,
                 "starvation: %s has waited %" PRIu64 " ms for request %" PRIu64
                 " since the faults stopped while %s's requests executed (max view %" PRIu64 ")",
                 o->name, (w->now_us - since) / 1000, o->number, c->name, w->max_view);
        return;
    }
}

static void accept(sim_world *w, sim_client *c, uint64_t seq, const sim_reply_seen *s) {
    sim_check_accepted(&w->check, c->idx, c->number, seq, s->result, s->result_len);
    check_starvation(w, c); /* before c->sent_at_us is reused */
    uint64_t latency = w->now_us - c->sent_at_us;
    if (latency > c->latency_max_us) {
        c->latency_max_us = latency;
    }
    c->done++;
    c->outstanding = false;
    c->timer_gen++; /* cancels the retransmission timer */
    if (c->done == w->opt.requests) {
        w->clients_done++;
        say(w, "client %s finished: %" PRIu64 " requests, %u retransmissions, slowest %.1f ms",
            c->name, c->done, c->retransmits, (double)c->latency_max_us / 1000.0);
        return;
    }
    sim_event ev = {.time_us = w->now_us + sim_rng_below(&w->rng, w->think_max_us + 1),
                    .kind = SIM_EV_CLIENT_ISSUE,
                    .a = c->idx};
    sim_eventq_push(&w->q, &ev);
}

/* Remembers the reply of `from` (kept: the last few distinct ones); returns
 * how many distinct replicas sent the same (seq, leaf). */
static uint32_t remember(sim_world *w, sim_client *c, uint32_t from, const sim_reply_seen *s) {
    sim_reply_seen *mine = &c->seen[(size_t)from * SIM_REPLIES_KEPT];
    bool have = false;
    for (uint32_t i = 0; i < c->n_seen[from]; i++) {
        have |= mine[i].seq == s->seq && memcmp(mine[i].leaf, s->leaf, sizeof s->leaf) == 0;
    }
    if (!have) {
        if (c->n_seen[from] == SIM_REPLIES_KEPT) {
            memmove(&mine[0], &mine[1], (SIM_REPLIES_KEPT - 1) * sizeof *mine);
            c->n_seen[from]--;
        }
        mine[c->n_seen[from]++] = *s;
    }
    uint32_t matching = 0;
    for (uint32_t j = 0; j < w->n; j++) {
        const sim_reply_seen *theirs = &c->seen[(size_t)j * SIM_REPLIES_KEPT];
        for (uint32_t i = 0; i < c->n_seen[j]; i++) {
            if (theirs[i].seq == s->seq && memcmp(theirs[i].leaf, s->leaf, sizeof s->leaf) == 0) {
                matching++;
                break;
            }
        }
    }
    return matching;
}

void client_receive(sim_world *w, sim_client *c, uint32_t from, const uint8_t *data, size_t len) {
    if (!c->outstanding || from >= w->n) {
        return;
    }
    Twinbft__Message *m = proto_message_unpack(data, len);
    if (m == NULL) {
        return;
    }
    Twinbft__ResultLeaf *leaf = NULL;
    if (m->kind_case != TWINBFT__MESSAGE__KIND_REPLY || m->reply->replica != from) {
        goto done;
    }
    const Twinbft__Reply *rp = m->reply;
    leaf = twinbft__result_leaf__unpack(NULL, rp->leaf.len, rp->leaf.data);
    if (leaf == NULL || strcmp(leaf->client, c->name) != 0 || leaf->number != c->number) {
        goto done;
    }
    sim_reply_seen s = {.seq = rp->seq, .result_len = leaf->result.len};
    proto_sha256(rp->leaf.data, rp->leaf.len, s.leaf);
    proto_sha256(leaf->result.data, leaf->result.len, s.result);
    if (remember(w, c, from, &s) >= w->f + 1) {
        accept(w, c, rp->seq, &s);
    }
done:
    if (leaf != NULL) {
        twinbft__result_leaf__free_unpacked(leaf, NULL);
    }
    twinbft__message__free_unpacked(m, NULL);
}
