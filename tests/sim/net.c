/* Links, delays and partitions (see net.h). */
#include "tests/sim/net.h"

#include <stdlib.h>
#include <string.h>

#include "proto/tb_assert.h"

/* Latency of a healthy link: 0.2 to 2 ms. */
enum { NET_BASE_MIN_US = 200, NET_BASE_MAX_US = 2000 };
/* A late duplicate arrives 0.3 to 3 s after the original. */
enum { NET_REPLAY_MIN_US = 300 * 1000, NET_REPLAY_MAX_US = 3000 * 1000 };

void sim_net_init(sim_net *net, uint32_t n_endpoints, sim_rng *rng, sim_eventq *q) {
    memset(net, 0, sizeof *net);
    net->n_ep = n_endpoints;
    net->rng = rng;
    net->q = q;
    size_t links = (size_t)n_endpoints * n_endpoints;
    net->cut_count = calloc(links, sizeof *net->cut_count);
    net->link_last = calloc(links, sizeof *net->link_last);
    TB_ASSERT(net->cut_count != NULL && net->link_last != NULL);
    net->next_part_id = 1;
}

void sim_net_free(sim_net *net) {
    sim_net_partition_clear(net);
    free(net->parts);
    free(net->cut_count);
    free(net->link_last);
    memset(net, 0, sizeof *net);
}

bool sim_net_is_cut(const sim_net *net, uint32_t from, uint32_t to) {
    return net->cut_count[(size_t)from * net->n_ep + to] != 0;
}

static uint64_t delay_us(sim_net *net) {
    uint64_t d = sim_rng_range(net->rng, NET_BASE_MIN_US, NET_BASE_MAX_US);
    if (!net->faults_on) {
        return d;
    }
    const sim_net_faults *f = &net->faults;
    if (f->jitter_us > 0) {
        d += sim_rng_below(net->rng, f->jitter_us + 1);
    }
    if (f->delay_permille > 0 && f->delay_max_us > 0 &&
        sim_rng_chance(net->rng, f->delay_permille)) {
        d += sim_rng_range(net->rng, f->delay_max_us / 20, f->delay_max_us);
    }
    return d;
}

static void schedule(sim_net *net, uint64_t now_us, uint32_t from, uint32_t to, const uint8_t *data,
                     size_t len, uint64_t extra_us) {
    uint64_t at = now_us + delay_us(net) + extra_us;
    size_t link = (size_t)from * net->n_ep + to;
    /* Links are FIFO (a stream, as TCP would give) unless reordering is on; a
     * late replay travels outside the stream and holds nothing up. */
    if (extra_us == 0) {
        bool fifo = !(net->faults_on && net->faults.jitter_us > 0);
        if (fifo && at < net->link_last[link]) {
            at = net->link_last[link];
        }
        if (at > net->link_last[link]) {
            net->link_last[link] = at;
        }
    }
    uint8_t *copy = malloc(len ? len : 1);
    TB_ASSERT(copy != NULL);
    if (len > 0) {
        memcpy(copy, data, len);
    }
    sim_event ev = {
        .time_us = at, .kind = SIM_EV_DELIVER, .a = from, .b = to, .data = copy, .len = len};
    sim_eventq_push(net->q, &ev);
}

void sim_net_send(sim_net *net, uint64_t now_us, uint32_t from, uint32_t to, const uint8_t *data,
                  size_t len) {
    TB_ASSERT(from < net->n_ep && to < net->n_ep && from != to);
    net->sent++;
    if (sim_net_is_cut(net, from, to)) {
        net->dropped++;
        return;
    }
    if (net->faults_on && net->faults.drop_permille > 0 &&
        sim_rng_chance(net->rng, net->faults.drop_permille)) {
        net->dropped++;
        return;
    }
    schedule(net, now_us, from, to, data, len, 0);
    if (net->faults_on && net->faults.dup_permille > 0 &&
        sim_rng_chance(net->rng, net->faults.dup_permille)) {
        /* A third of the duplicates come back much later: a replay of an old
         * message, perhaps from a view that has since been left. */
        uint64_t late = sim_rng_chance(net->rng, 333)
                            ? sim_rng_range(net->rng, NET_REPLAY_MIN_US, NET_REPLAY_MAX_US)
                            : 0;
        net->duplicated++;
        schedule(net, now_us, from, to, data, len, late);
    }
}

uint64_t sim_net_partition_add(sim_net *net, const uint8_t *cut) {
    size_t links = (size_t)net->n_ep * net->n_ep;
    sim_partition *p = realloc(net->parts, (net->n_parts + 1) * sizeof *p);
    TB_ASSERT(p != NULL);
    net->parts = p;
    sim_partition *np = &net->parts[net->n_parts++];
    np->id = net->next_part_id++;
    np->cut = malloc(links);
    TB_ASSERT(np->cut != NULL);
    memcpy(np->cut, cut, links);
    for (size_t i = 0; i < links; i++) {
        if (cut[i]) {
            net->cut_count[i]++;
        }
    }
    return np->id;
}

static void partition_drop(sim_net *net, size_t i) {
    size_t links = (size_t)net->n_ep * net->n_ep;
    for (size_t l = 0; l < links; l++) {
        if (net->parts[i].cut[l]) {
            TB_ASSERT(net->cut_count[l] > 0);
            net->cut_count[l]--;
        }
    }
    free(net->parts[i].cut);
    memmove(&net->parts[i], &net->parts[i + 1], (net->n_parts - i - 1) * sizeof *net->parts);
    net->n_parts--;
}

void sim_net_partition_remove(sim_net *net, uint64_t id) {
    for (size_t i = 0; i < net->n_parts; i++) {
        if (net->parts[i].id == id) {
            partition_drop(net, i);
            return;
        }
    }
}

void sim_net_partition_clear(sim_net *net) {
    while (net->n_parts > 0) {
        partition_drop(net, net->n_parts - 1);
    }
}
