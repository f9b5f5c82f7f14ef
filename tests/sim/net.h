/* The simulated network: every message between two endpoints (replicas
 * 0..R-1, clients R..R+C-1) becomes a DELIVER event after a random delay.
 * Faults, when on: drops, duplicates, long delays, reordering (without it
 * each link is FIFO), and partitions: sets of directed links that are cut
 * while the partition lasts (a message is lost when its link is cut when it
 * is sent or when it would arrive). */
#ifndef SIM_NET_H
#define SIM_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tests/sim/eventq.h"
#include "tests/sim/rng.h"

typedef struct sim_net_faults {
    uint32_t drop_permille;
    uint32_t dup_permille;
    uint32_t delay_permille; /* share of messages held back for long */
    uint64_t delay_max_us;
    uint64_t jitter_us; /* reordering: extra uniform delay, links not FIFO */
} sim_net_faults;

typedef struct sim_partition {
    uint64_t id;
    uint8_t *cut; /* [n_ep * n_ep], cut[from * n_ep + to] */
} sim_partition;

typedef struct sim_net {
    uint32_t n_ep;
    sim_rng *rng;
    sim_eventq *q;
    bool faults_on;
    sim_net_faults faults;
    uint16_t *cut_count; /* [n_ep * n_ep] partitions cutting the link */
    uint64_t *link_last; /* [n_ep * n_ep] last arrival time, for FIFO links */
    sim_partition *parts;
    size_t n_parts;
    uint64_t next_part_id;
    uint64_t sent, dropped, duplicated;
} sim_net;

void sim_net_init(sim_net *net, uint32_t n_endpoints, sim_rng *rng, sim_eventq *q);
void sim_net_free(sim_net *net);
/* Schedules the delivery of a copy of data (or nothing, or two copies). */
void sim_net_send(sim_net *net, uint64_t now_us, uint32_t from, uint32_t to, const uint8_t *data,
                  size_t len);
bool sim_net_is_cut(const sim_net *net, uint32_t from, uint32_t to);
/* Adds a partition that cuts every link with cut[from * n_ep + to] != 0
 * (copied); returns its id. */
uint64_t sim_net_partition_add(sim_net *net, const uint8_t *cut);
void sim_net_partition_remove(sim_net *net, uint64_t id);
void sim_net_partition_clear(sim_net *net);

#endif
