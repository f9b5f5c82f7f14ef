/* The fault schedule of one seed: what goes wrong, when, and the heal.
 *
 * Network faults (drop, duplicate, delay, reorder) hold from the start to
 * the heal time with per-seed intensities. Partitions, crashes and clock
 * drift are drawn one at a time by the FAULT event. Crashes keep within the
 * budget: at any moment at most f replicas are faulty, counting the
 * Byzantine ones (a Byzantine replica may also crash, which costs nothing
 * more); a lone replica (n = 1) may crash as well. At the heal time the
 * network becomes healthy, partitions go and crashed replicas restart; the
 * Byzantine replicas go on misbehaving. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/tb_assert.h"
#include "tests/sim/world.h"

#define MS ((uint64_t)1000)

static uint64_t ms_range(sim_world *w, uint64_t lo_ms, uint64_t hi_ms) {
    return sim_rng_range(&w->rng, lo_ms * MS, hi_ms * MS);
}

static void push(sim_world *w, uint64_t at, sim_ev_kind kind, uint32_t a, uint32_t b,
                 uint64_t gen) {
    sim_event ev = {.time_us = at, .kind = kind, .a = a, .b = b, .gen = gen};
    sim_eventq_push(&w->q, &ev);
}

/* Clock offsets stay within +-2/5 of the allowed skew, so any two replicas
 * differ by at most 4/5 of it and a healthy link's delay still fits. */
static int64_t random_offset(sim_world *w) {
    int64_t bound = (int64_t)SIM_CLOCK_SKEW_MS * 1000 * 2 / 5;
    return (int64_t)sim_rng_below(&w->rng, (uint64_t)(2 * bound + 1)) - bound;
}

void faults_setup(sim_world *w) {
    uint64_t fault_ms = sim_rng_range(&w->rng, 3000, 8000);
    w->heal_us = SIM_T0_US + fault_ms * MS;
    w->deadline_us = w->heal_us + (uint64_t)SIM_LIVENESS_BOUND_MS * MS;
    /* Spread each client's requests over the fault phase. */
    w->think_max_us = 2 * fault_ms * MS / (w->opt.requests ? w->opt.requests : 1);
    sim_net_faults *nf = &w->net.faults;
    if (w->faults & SIM_FAULT_DROP) {
        nf->drop_permille = (uint32_t)sim_rng_range(&w->rng, 5, 100);
    }
    if (w->faults & SIM_FAULT_DUP) {
        nf->dup_permille = (uint32_t)sim_rng_range(&w->rng, 5, 80);
    }
    if (w->faults & SIM_FAULT_DELAY) {
        nf->delay_permille = (uint32_t)sim_rng_range(&w->rng, 5, 100);
        nf->delay_max_us = ms_range(w, 50, 1500);
    }
    if (w->faults & SIM_FAULT_REORDER) {
        nf->jitter_us = ms_range(w, 1, 40);
    }
    w->net.faults_on = true;
    if (w->faults & SIM_FAULT_SKEW) {
        for (uint32_t id = 0; id < w->n; id++) {
            w->replicas[id].offset_us = random_offset(w);
        }
    }
    if (w->faults & (SIM_FAULT_PARTITION | SIM_FAULT_CRASH | SIM_FAULT_SKEW)) {
        w->fault_gap_us = ms_range(w, 150, 1000);
        push(w, SIM_T0_US + sim_rng_below(&w->rng, w->fault_gap_us), SIM_EV_FAULT, 0, 0, 0);
    }
    push(w, w->heal_us, SIM_EV_HEAL, 0, 0, 0);
    push(w, w->deadline_us, SIM_EV_DEADLINE, 0, 0, 0);
    for (uint32_t id = 0; id < w->n; id++) {
        if (w->replicas[id].style == SIM_TWINS) {
            faults_twins_split(w, &w->replicas[id]);
        }
    }
}

/* ---- partitions --------------------------------------------------------- */

static void cut_both(uint8_t *cut, uint32_t n_ep, uint32_t a, uint32_t b) {
    cut[(size_t)a * n_ep + b] = 1;
    cut[(size_t)b * n_ep + a] = 1;
}

static void endpoint_name(const sim_world *w, uint32_t ep, char *out, size_t cap) {
    if (ep < w->n) {
        snprintf(out, cap, "%u", ep);
    } else {
        snprintf(out, cap, "%s", w->clients[ep - w->n].name);
    }
}

static void partition_start(sim_world *w) {
    uint32_t n = w->n, n_ep = w->n_ep;
    uint8_t *cut = calloc((size_t)n_ep * n_ep, 1);
    TB_ASSERT(cut != NULL);
    char desc[160];
    uint64_t dur = 0;
    uint64_t kind = sim_rng_below(&w->rng, 4);
    if (kind == 0) {
        /* One replica alone for long: it falls behind the stable checkpoint
         * and has to catch up by state transfer. */
        uint32_t x = (uint32_t)sim_rng_below(&w->rng, n);
        bool clients_too = sim_rng_chance(&w->rng, 500);
        for (uint32_t e = 0; e < n_ep; e++) {
            if (e != x && (e < n || clients_too)) {
                cut_both(cut, n_ep, x, e);
            }
        }
        dur = ms_range(w, 500, 4000);
        snprintf(desc, sizeof desc, "replica %u isolated%s", x,
                 clients_too ? " (clients too)" : "");
    } else if (kind == 1) {
        uint64_t side = sim_rng_next(&w->rng);
        for (uint32_t a = 0; a < n; a++) {
            for (uint32_t b = a + 1; b < n; b++) {
                if (((side >> a) & 1) != ((side >> b) & 1)) {
                    cut_both(cut, n_ep, a, b);
                }
            }
        }
        dur = ms_range(w, 100, 2000);
        int k = snprintf(desc, sizeof desc, "split {");
        for (uint32_t a = 0; a < n && k > 0 && (size_t)k < sizeof desc; a++) {
            if ((side >> a) & 1) {
                k += snprintf(desc + k, sizeof desc - (size_t)k, " %u", a);
            }
        }
        if (k > 0 && (size_t)k < sizeof desc) {
            snprintf(desc + k, sizeof desc - (size_t)k, " } from the rest");
        }
    } else if (kind == 2) {
        /* Asymmetric: some directed links between replicas cut. */
        uint32_t cuts = 0;
        for (uint32_t a = 0; a < n; a++) {
            for (uint32_t b = 0; b < n; b++) {
                if (a != b && sim_rng_chance(&w->rng, 300)) {
                    cut[(size_t)a * n_ep + b] = 1;
                    cuts++;
                }
            }
        }
        dur = ms_range(w, 100, 2000);
        snprintf(desc, sizeof desc, "%u one-way links between replicas cut", cuts);
    } else {
        uint32_t c = n + (uint32_t)sim_rng_below(&w->rng, n_ep - n);
        uint32_t cuts = 0;
        for (uint32_t r = 0; r < n; r++) {
            if (sim_rng_chance(&w->rng, 500)) {
                cut_both(cut, n_ep, c, r);
                cuts++;
            }
        }
        char name[16];
        endpoint_name(w, c, name, sizeof name);
        dur = ms_range(w, 100, 2000);
        snprintf(desc, sizeof desc, "client %s cut off from %u replicas", name, cuts);
    }
    uint64_t id = sim_net_partition_add(&w->net, cut);
    free(cut);
    say(w, "partition %" PRIu64 ": %s for %.0f ms", id, desc, (double)dur / 1000.0);
    push(w, w->now_us + dur, SIM_EV_PARTITION_END, 0, 0, id);
}

void faults_partition_end(sim_world *w, uint64_t id) {
    if (w->healed) {
        return;
    }
    sim_net_partition_remove(&w->net, id);
    say(w, "partition %" PRIu64 " heals", id);
    for (uint32_t r = 0; r < w->n; r++) {
        world_links_up(w, r);
    }
}

/* ---- crashes ------------------------------------------------------------ */

static void crash_one(sim_world *w) {
    sim_instance *cand[2 * PBFT_REPLICAS_MAX];
    uint32_t k = 0;
    /* A lone replica (n = 1, f = 0) crashes too: restarting from its durable
     * state is all it has to survive, and while it is down nothing can be
     * ordered, which the fault phase allows. */
    uint32_t faulty = w->n_byz + w->crashed_correct + w->stepped_correct;
    bool budget = faulty < w->f || (w->n == 1 && w->crashed_correct == 0);
    for (uint32_t id = 0; id < w->n; id++) {
        sim_replica *r = &w->replicas[id];
        for (uint32_t i = 0; i < r->n_inst; i++) {
            if (r->inst[i].up && (r->style != SIM_CORRECT || budget)) {
                cand[k++] = &r->inst[i];
            }
        }
    }
    if (k == 0) {
        return;
    }
    sim_instance *in = cand[sim_rng_below(&w->rng, k)];
    sim_replica *r = &w->replicas[in->id];
    uint64_t down = ms_range(w, 50, 3000);
    say(w, "replica %u%s crashes (down for %.0f ms)", r->id,
        r->n_inst > 1 ? (in->inst ? "b" : "a") : "", (double)down / 1000.0);
    world_crash(w, r, in);
    push(w, w->now_us + down, SIM_EV_RESTART, r->id, in->inst, 0);
}

/* One eligible commit in this many crashes right before it. */
enum { COMMIT_CRASH_ONE_IN = 64 };

uint64_t faults_commit_crash_due(sim_world *w, const sim_replica *r) {
    if (!(w->faults & SIM_FAULT_CRASH) || w->healed || w->n == 1) {
        return 0;
    }
    bool budget = w->n_byz + w->crashed_correct + w->stepped_correct < w->f;
    if (r->style == SIM_CORRECT && !budget) {
        return 0;
    }
    if (sim_rng_below(&w->commit_crash_rng, COMMIT_CRASH_ONE_IN) != 0) {
        return 0;
    }
    return sim_rng_range(&w->commit_crash_rng, 50 * MS, 3000 * MS);
}

void faults_restart_later(sim_world *w, const sim_replica *r, const sim_instance *in,
                          uint64_t down_us) {
    push(w, w->now_us + down_us, SIM_EV_RESTART, r->id, in->inst, 0);
}

/* ---- clock skew --------------------------------------------------------- */

/* A wall clock stepped far off (an operator's mistake, a bad NTP server):
 * +-30 s, well beyond the allowed skew, for 0.5 to 3 s. Its batches are
 * refused or its peers' are, so it counts as faulty while it lasts; its
 * timers (the timer clock) must not notice at all. */
enum { CLOCK_STEP_MS = 30000 };

static bool step_clock(sim_world *w, sim_replica *r) {
    bool budget = w->n_byz + w->crashed_correct + w->stepped_correct < w->f;
    if (r->step_us != 0 || (r->style == SIM_CORRECT && !budget) || w->n == 1) {
        return false;
    }
    r->step_us = (sim_rng_below(&w->rng, 2) ? 1 : -1) * (int64_t)CLOCK_STEP_MS * 1000;
    if (r->style == SIM_CORRECT) {
        w->stepped_correct++;
    }
    uint64_t dur = ms_range(w, 500, 3000);
    say(w, "replica %u's wall clock is stepped %+d s (for %.0f ms)", r->id,
        r->step_us > 0 ? CLOCK_STEP_MS / 1000 : -CLOCK_STEP_MS / 1000, (double)dur / 1000.0);
    push(w, w->now_us + dur, SIM_EV_CLOCK_BACK, r->id, 0, 0);
    return true;
}

void faults_clock_back(sim_world *w, sim_replica *r) {
    if (r->step_us == 0) {
        return;
    }
    r->step_us = 0;
    if (r->style == SIM_CORRECT) {
        TB_ASSERT(w->stepped_correct > 0);
        w->stepped_correct--;
    }
    say(w, "replica %u's wall clock is set right", r->id);
}

void faults_skew(sim_world *w, sim_replica *r) {
    if (sim_rng_below(&w->rng, 3) == 0 && step_clock(w, r)) {
        return;
    }
    int64_t old = r->offset_us;
    r->offset_us = random_offset(w);
    say(w, "replica %u's clock drifts from %+.1f ms to %+.1f ms", r->id, (double)old / 1000.0,
        (double)r->offset_us / 1000.0);
}

void faults_next(sim_world *w) {
    if (w->healed) {
        return;
    }
    uint32_t kinds[3], k = 0;
    if (w->faults & SIM_FAULT_PARTITION) {
        kinds[k++] = SIM_FAULT_PARTITION;
    }
    if (w->faults & SIM_FAULT_CRASH) {
        kinds[k++] = SIM_FAULT_CRASH;
    }
    if (w->faults & SIM_FAULT_SKEW) {
        kinds[k++] = SIM_FAULT_SKEW;
    }
    TB_ASSERT(k > 0);
    uint32_t kind = kinds[sim_rng_below(&w->rng, k)];
    if (kind == SIM_FAULT_PARTITION) {
        partition_start(w);
    } else if (kind == SIM_FAULT_CRASH) {
        crash_one(w);
    } else {
        faults_skew(w, &w->replicas[sim_rng_below(&w->rng, w->n)]);
    }
    uint64_t next =
        w->now_us + sim_rng_range(&w->rng, w->fault_gap_us / 2, w->fault_gap_us * 3 / 2);
    if (next < w->heal_us) {
        push(w, next, SIM_EV_FAULT, 0, 0, 0);
    }
}

void faults_heal(sim_world *w) {
    w->healed = true;
    w->net.faults_on = false;
    sim_net_partition_clear(&w->net);
    say(w, "faults stop: the network heals and crashed replicas restart (Byzantine replicas "
           "carry on)");
    for (uint32_t id = 0; id < w->n; id++) {
        sim_replica *r = &w->replicas[id];
        faults_clock_back(w, r);
        for (uint32_t i = 0; i < r->n_inst; i++) {
            if (!r->inst[i].up) {
                say(w, "replica %u%s restarts from its durable state", r->id,
                    r->n_inst > 1 ? (i ? "b" : "a") : "");
                world_restart(w, r, &r->inst[i]);
            }
        }
    }
}

/* ---- twins -------------------------------------------------------------- */

/* Which of the two instances sharing replica r's identity each other
 * endpoint talks to: disjoint halves, a random mix, or both twins. */
void faults_twins_split(sim_world *w, sim_replica *r) {
    uint64_t mode = sim_rng_below(&w->rng, 4);
    for (uint32_t e = 0; e < w->n_ep; e++) {
        uint8_t side = 3;
        if (e == r->id) {
            side = 0;
        } else if (mode <= 1) {
            side = (uint8_t)(1 + sim_rng_below(&w->rng, 2));
        } else if (mode == 2) {
            side = (uint8_t)(1 + sim_rng_below(&w->rng, 3));
        }
        r->twin_side[e] = side;
    }
    char a[128] = "", b[128] = "";
    size_t la = 0, lb = 0;
    for (uint32_t e = 0; e < w->n_ep; e++) {
        char name[16];
        endpoint_name(w, e, name, sizeof name);
        if ((r->twin_side[e] & 1) && la < sizeof a) {
            int k = snprintf(a + la, sizeof a - la, " %s", name);
            la += k > 0 ? (size_t)k : 0;
        }
        if ((r->twin_side[e] & 2) && lb < sizeof b) {
            int k = snprintf(b + lb, sizeof b - lb, " %s", name);
            lb += k > 0 ? (size_t)k : 0;
        }
    }
    say(w, "Byzantine replica %u's twins split their peers: %ua with {%s }, %ub with {%s }", r->id,
        r->id, a, r->id, b);
    push(w, w->now_us + ms_range(w, 200, 2000), SIM_EV_TWINS, r->id, 0, 0);
}
