/* The world of one seeded run: set-up, the run loop, and driving replicas
 * (a ready becomes durable records, network sends and checker reports). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/frame.h"
#include "proto/tb_assert.h"
#include "proto/tb_err.h"
#include "tests/sim/world.h"

static const uint8_t sim_cluster_id[] = {'s', 'i', 'm'};

/* A ready loop that never drains means the core keeps producing output by
 * itself; stop rather than spin. */
enum { DRIVE_ROUNDS_MAX = 100000, DRAIN_US = 2 * 1000 * 1000 };

bool world_is_byzantine(const sim_world *w, uint32_t id) {
    return id < w->n && w->replicas[id].style != SIM_CORRECT;
}

uint64_t world_local_ms(const sim_world *w, const sim_replica *r) {
    return (w->now_us + r->mono_base_us) / 1000;
}

uint64_t world_wall_ms(const sim_world *w, const sim_replica *r) {
    return (uint64_t)((int64_t)w->now_us + r->offset_us + r->step_us) / 1000;
}

/* ---- observers: what correct replicas did, to the checker ---------------- */

static void on_app_executed(void *ctx, uint32_t replica, uint32_t instance, uint64_t seq,
                            const pbft_request *reqs, size_t n, const pbft_result *results,
                            const uint8_t digest[PROTO_DIGEST_BYTES]) {
    sim_world *w = ctx;
    (void)instance;
    if (!world_is_byzantine(w, replica)) {
        sim_check_app_execute(&w->check, replica, seq, reqs, n, results, digest);
    }
}

static void on_app_restored(void *ctx, uint32_t replica, uint32_t instance, uint64_t seq,
                            const uint8_t digest[PROTO_DIGEST_BYTES]) {
    sim_world *w = ctx;
    (void)instance;
    if (!world_is_byzantine(w, replica)) {
        sim_check_transferred(&w->check, replica, seq, digest);
    }
}

static void observe_ready(sim_world *w, const sim_replica *r, sim_instance *in,
                          const pbft_ready *rd) {
    bool correct = r->style == SIM_CORRECT;
    for (size_t i = 0; i < rd->n_executed; i++) {
        const pbft_executed *e = &rd->executed[i];
        in->executed = e->seq;
        if (correct && sim_check_executed(&w->check, r->id, e) && e->seq > w->narrated_seq) {
            w->narrated_seq = e->seq;
            if (e->n_requests > 0) {
                say(w, "seq %" PRIu64 " committed in view %" PRIu64 ": %zu request%s", e->seq,
                    e->view, e->n_requests, e->n_requests == 1 ? "" : "s");
            } else {
                say(w, "seq %" PRIu64 " committed in view %" PRIu64 ": null batch", e->seq,
                    e->view);
            }
        }
    }
    for (size_t i = 0; i < rd->n_stable; i++) {
        const pbft_stable *s = &rd->stable[i];
        if (correct && sim_check_stable(&w->check, r->id, s->seq, s->digest) &&
            s->seq > w->narrated_stable) {
            w->narrated_stable = s->seq;
            say(w, "checkpoint %" PRIu64 " stable (first at replica %u)", s->seq, r->id);
        }
    }
    if (rd->transferred) {
        in->executed = rd->transfer_seq;
        say(w, "replica %u%s caught up by state transfer to checkpoint %" PRIu64, r->id,
            r->n_inst > 1 ? (in->inst ? "b" : "a") : "", rd->transfer_seq);
    }
}

/* ---- sending ------------------------------------------------------------ */

/* Receivers of one output, as endpoints; 0 when none is valid. */
static uint32_t receivers(const sim_world *w, const sim_replica *r, const sim_instance *in,
                          const pbft_msg *m, uint32_t *to) {
    uint32_t k = 0;
    if (m->to == PBFT_TO_ALL) {
        for (uint32_t j = 0; j < w->n; j++) {
            if (j != r->id) {
                to[k++] = j;
            }
        }
    } else if (m->to == PBFT_TO_CLIENT) {
        int c = sim_client_index(m->client, w->opt.clients);
        if (c >= 0) {
            to[k++] = w->n + (uint32_t)c;
        }
    } else if (m->to < w->n && m->to != r->id) {
        to[k++] = m->to;
    }
    if (r->style == SIM_TWINS) {
        uint32_t kept = 0;
        for (uint32_t i = 0; i < k; i++) {
            if (r->twin_side[to[i]] & (1u << in->inst)) {
                to[kept++] = to[i];
            }
        }
        k = kept;
    }
    return k;
}

enum { SEND_ALL, SEND_EARLY };

static bool has_early(const pbft_ready *rd) {
    for (size_t i = 0; i < rd->n_msgs; i++) {
        if (rd->msgs[i].early) {
            return true;
        }
    }
    return false;
}

/* A ready with something to make durable (else the host skips the commit). */
static bool commits(const pbft_ready *rd) {
    return rd->n_records > 0 || rd->n_executed > 0 || rd->n_stable > 0 || rd->transferred;
}

/* Sends a ready's messages (SEND_ALL, in order) or only its early ones. */
static void send_ready(sim_world *w, sim_replica *r, sim_instance *in, const pbft_ready *rd,
                       int which) {
    uint32_t to[PBFT_REPLICAS_MAX];
    for (size_t i = 0; i < rd->n_msgs; i++) {
        const pbft_msg *m = &rd->msgs[i];
        if (which == SEND_EARLY && !m->early) {
            continue;
        }
        if (r->style == SIM_CORRECT) {
            sim_check_sent(&w->check, r->id, m->data, m->len);
        }
        uint32_t k = receivers(w, r, in, m, to);
        if (k == 0) {
            continue;
        }
        if (r->style != SIM_MUTATE) {
            for (uint32_t j = 0; j < k; j++) {
                sim_net_send(&w->net, w->now_us, r->id, to[j], m->data, m->len);
            }
            continue;
        }
        sim_byz_plan plan;
        sim_byz_plan_msg(&r->byz, &w->rng, m->data, m->len, k, &plan);
        for (uint32_t j = 0; j < k; j++) {
            uint64_t bit = (uint64_t)1 << j;
            if (plan.omit_mask & bit) {
                continue;
            }
            if (plan.mutate_mask & bit) {
                sim_net_send(&w->net, w->now_us, r->id, to[j], plan.mutated, plan.mutated_len);
            } else {
                sim_net_send(&w->net, w->now_us, r->id, to[j], m->data, m->len);
            }
        }
        if (plan.desc[0] != '\0') {
            uint64_t mask = plan.omit_mask ? plan.omit_mask : plan.mutate_mask;
            uint32_t hit = (uint32_t)__builtin_popcountll(mask);
            say(w, "Byzantine replica %u %s%s (%u of %u receivers)", r->id,
                plan.omit_mask ? "" : "sends a ", plan.desc, hit, k);
        }
        free(plan.mutated);
    }
}

/* ---- driving a core ----------------------------------------------------- */

static void narrate_status(sim_world *w, const sim_replica *r, sim_instance *in,
                           const char *cause) {
    pbft_status st;
    pbft_node_status(in->node, &st);
    if (st.view > w->max_view) {
        w->max_view = st.view;
    }
    if (st.diverged_seq != 0 && r->style == SIM_CORRECT && !w->check.v.set) {
        /* Execution here is deterministic: a correct replica whose digest a
         * quorum contradicts means the core or the application lost state. */
        sim_check_violate(&w->check, "agreement", st.diverged_seq, r->id, UINT32_MAX,
                          "correct replica %u found its state digest at checkpoint %" PRIu64
                          " contradicted by a quorum",
                          r->id, st.diverged_seq);
    }
    if (st.xfer_refused != 0 && r->style == SIM_CORRECT && !w->check.v.set) {
        /* Every chunk was checked against a list f+1 replicas agreed on, so
         * the assembled state is a correct replica's: refusing it at the
         * end means a chunk check let garbage through. */
        sim_check_violate(&w->check, "transfer", st.executed, r->id, UINT32_MAX,
                          "correct replica %u assembled a state transfer that its application "
                          "refused (%" PRIu64 " times)",
                          r->id, st.xfer_refused);
    }
    if (st.view == in->view && st.in_view_change == in->in_vc) {
        return;
    }
    const char *who = r->style == SIM_TWINS ? (in->inst ? "b" : "a") : "";
    if (st.in_view_change && (!in->in_vc || st.view != in->view)) {
        const char *why = in->in_vc ? "the new primary did not deliver NEW-VIEW in time"
                          : strcmp(cause, "tick") == 0
                              ? "a request waited too long: it suspects the primary"
                              : "enough peers asked for it";
        say(w, "replica %u%s starts a view change to view %" PRIu64 " (%s)", r->id, who, st.view,
            why);
    } else if (!st.in_view_change) {
        if (r->style == SIM_CORRECT) {
            w->view_entered_us = w->now_us; /* see check_starvation */
        }
        say(w, "replica %u%s enters view %" PRIu64 " (primary %u)", r->id, who, st.view,
            st.primary);
    }
    in->view = st.view;
    in->in_vc = st.in_view_change;
}

static void schedule_tick(sim_world *w, const sim_replica *r, sim_instance *in) {
    uint64_t d = pbft_node_next_deadline(in->node);
    if (d == UINT64_MAX) {
        return;
    }
    /* The replica's timer clock reads d at sim time d - base; ticking again
     * in the same millisecond of its clock could do nothing new. */
    int64_t at = (int64_t)d * 1000 - (int64_t)r->mono_base_us;
    int64_t next_ms = (int64_t)(in->last_tick_local_ms + 1) * 1000 - (int64_t)r->mono_base_us;
    if (at < next_ms) {
        at = next_ms;
    }
    if (at < (int64_t)w->now_us) {
        at = (int64_t)w->now_us;
    }
    if (in->tick_at != UINT64_MAX && in->tick_at <= (uint64_t)at) {
        return;
    }
    in->tick_gen++;
    in->tick_at = (uint64_t)at;
    sim_event ev = {.time_us = (uint64_t)at,
                    .kind = SIM_EV_TICK,
                    .a = r->id,
                    .b = in->inst,
                    .gen = in->tick_gen};
    sim_eventq_push(&w->q, &ev);
}

static void app_persist(sim_world *w, sim_instance *in) {
    if (w->opt.counter_app) {
        sim_app_persist(&in->app, &in->store.app);
    } else {
        sim_smapp_persist(&in->smapp);
    }
}

static void drive_cause(sim_world *w, sim_replica *r, sim_instance *in, const char *cause) {
    for (int rounds = 0; in->up && pbft_node_has_ready(in->node); rounds++) {
        TB_ASSERT(rounds < DRIVE_ROUNDS_MAX);
        pbft_ready rd;
        pbft_node_ready(in->node, &rd);
        /* 0. A crash may fall between the early messages and the commit. */
        uint64_t down = has_early(&rd) && commits(&rd) ? faults_commit_crash_due(w, r) : 0;
        if (down != 0) {
            say(w,
                "replica %u%s crashes after sending its early votes, before their commit (down "
                "for %.0f ms)",
                r->id, r->n_inst > 1 ? (in->inst ? "b" : "a") : "", (double)down / 1000.0);
            send_ready(w, r, in, &rd, SEND_EARLY);
            if (r->style == SIM_CORRECT) {
                sim_check_undo(&w->check, r->id, in->executed);
            }
            world_crash(w, r, in); /* rd goes with the core */
            faults_restart_later(w, r, in, down);
            return;
        }
        /* 1. persist: the records and the application state, one commit. */
        for (size_t i = 0; i < rd.n_records; i++) {
            sim_store_apply(&in->store, &rd.records[i]);
        }
        if (rd.n_stable > 0) {
            uint64_t stable = rd.stable[rd.n_stable - 1].seq;
            sim_store_log_prune(&in->store, stable > w->log_retain ? stable - w->log_retain : 0);
        }
        app_persist(w, in);
        in->store.commits++;
        /* 2. send, 3. report, 4. advance. */
        send_ready(w, r, in, &rd, SEND_ALL);
        observe_ready(w, r, in, &rd);
        uint64_t ready_id = rd.id;
        pbft_node_advance(in->node, &rd);
        pbft_node_durable(in->node, ready_id); /* the commit above is synced */
    }
    if (in->up) {
        narrate_status(w, r, in, cause);
        schedule_tick(w, r, in);
    }
}

void world_drive(sim_world *w, sim_replica *r, sim_instance *in) {
    drive_cause(w, r, in, "step");
}

static void tick_instance(sim_world *w, sim_replica *r, sim_instance *in) {
    uint64_t local = world_local_ms(w, r);
    if (local > in->last_tick_local_ms) {
        in->last_tick_local_ms = local;
    }
    pbft_node_set_wall(in->node, world_wall_ms(w, r));
    pbft_node_tick(in->node, local);
    drive_cause(w, r, in, "tick");
}

/* ---- starting, crashing, restarting ------------------------------------- */

/* Feeds the durable records back into a fresh core. A Byzantine replica
 * that fails to restart just stays down; a correct one is a violation. */
static int restore_from_store(sim_world *w, sim_replica *r, sim_instance *in, uint64_t local) {
    sim_check *ck = r->style == SIM_CORRECT ? &w->check : NULL;
    for (size_t i = 0; i < in->store.n; i++) {
        const sim_store_rec *rec = &in->store.recs[i];
        if (rec->kind == PBFT_REC_LOG) {
            continue; /* the retained log is read on demand, never restored */
        }
        int rc = pbft_node_restore_record(in->node, rec->kind, rec->seq, rec->client, rec->data,
                                          rec->len);
        if (rc != 0 && ck != NULL) {
            sim_check_violate(ck, "durability", rec->seq, r->id, UINT32_MAX,
                              "replica %u cannot restart: its stored record (kind %d, seq "
                              "%" PRIu64 ") was refused: %s",
                              r->id, (int)rec->kind, rec->seq, tb_strerror(rc));
            return rc;
        }
    }
    int rc = pbft_node_restore_done(in->node, local);
    if (rc != 0) {
        sim_check_violate(&w->check, "durability", 0, r->id, UINT32_MAX,
                          "replica %u cannot restart: restoring its %zu stored records failed: %s",
                          r->id, in->store.n, tb_strerror(rc));
    }
    return rc;
}

/* Starts the instance's application from its durable state (or empty). */
static void app_start(sim_world *w, sim_replica *r, sim_instance *in, bool from_storage) {
    sim_app_observer obs = {.ctx = w, .executed = on_app_executed, .restored = on_app_restored};
    if (w->opt.counter_app) {
        sim_app_init(&in->app, from_storage ? &in->store.app : NULL, r->id, in->inst, &obs);
    } else {
        int rc = sim_smapp_init(&in->smapp, in->dir, !from_storage, w->names.principals[0], r->id,
                                in->inst, &obs);
        if (rc != 0) {
            fprintf(stderr, "twinbft-sim: cannot open the state machine store in %s: %s\n", in->dir,
                    tb_strerror(rc));
            abort(); /* the harness, not the protocol, failed */
        }
    }
}

/* A crash: the application loses what it had not persisted. */
static void app_stop(sim_world *w, sim_instance *in) {
    if (w->opt.counter_app) {
        sim_app_free(&in->app);
    } else {
        sim_smapp_free(&in->smapp);
    }
}

static pbft_app app_callbacks(sim_world *w, sim_instance *in) {
    return w->opt.counter_app ? sim_app_callbacks(&in->app) : sim_smapp_callbacks(&in->smapp);
}

static void instance_start(sim_world *w, sim_replica *r, sim_instance *in, bool from_storage) {
    app_start(w, r, in, from_storage);
    pbft_config cfg;
    memset(&cfg, 0, sizeof cfg);
    pbft_config_defaults(&cfg);
    cfg.n = w->n;
    cfg.self = r->id;
    cfg.cluster_id = sim_cluster_id;
    cfg.cluster_id_len = sizeof sim_cluster_id;
    cfg.checkpoint_interval = SIM_CHECKPOINT_INTERVAL;
    cfg.log_window = SIM_LOG_WINDOW;
    cfg.batch_delay_ms = SIM_BATCH_DELAY_MS;
    cfg.request_timeout_ms = SIM_REQUEST_TIMEOUT_MS;
    cfg.view_timeout_ms = SIM_VIEW_TIMEOUT_MS;
    cfg.clock_skew_ms_max = SIM_CLOCK_SKEW_MS;
    /* Chunks of a few dozen bytes up to one that holds the whole state, by
     * seed (not by rng, so that seeds keep their schedules): transfers of
     * many chunks, a few, and one. */
    static const uint32_t chunk_bytes[] = {48, 300, 1u << 20};
    cfg.transfer_chunk_bytes = chunk_bytes[w->opt.seed % 3];
    cfg.transfer_window = 1 + (uint32_t)(w->opt.seed / 3 % 4);
    cfg.crypto = sim_crypto_for(w->crypto, r->id);
    cfg.app = app_callbacks(w, in);
    if (w->log_retain != 0) {
        cfg.log = (pbft_log){&in->store, sim_store_log_read};
    }
    cfg.bugs = w->opt.bugs;
    uint64_t local = world_local_ms(w, r);
    TB_ASSERT(pbft_node_create(&cfg, local, &in->node) == 0);
    pbft_node_set_wall(in->node, world_wall_ms(w, r));
    if (from_storage && restore_from_store(w, r, in, local) != 0) {
        /* The core refused what it had itself asked to persist: a replica
         * that cannot restart is a failure of the run, not of the harness. */
        pbft_node_free(in->node);
        in->node = NULL;
        app_stop(w, in);
        return;
    }
    in->up = true;
    in->tick_at = UINT64_MAX;
    in->last_tick_local_ms = local;
    pbft_status st;
    pbft_node_status(in->node, &st);
    in->view = st.view;
    in->in_vc = st.in_view_change;
    drive_cause(w, r, in, "start");
}

void world_crash(sim_world *w, sim_replica *r, sim_instance *in) {
    TB_ASSERT(in->up);
    pbft_node_free(in->node);
    in->node = NULL;
    app_stop(w, in);
    in->up = false;
    in->tick_gen++;
    in->tick_at = UINT64_MAX;
    in->crashes++;
    if (r->style == SIM_CORRECT) {
        w->crashed_correct++;
    }
}

void world_restart(sim_world *w, sim_replica *r, sim_instance *in) {
    TB_ASSERT(!in->up);
    if (r->style == SIM_CORRECT) {
        TB_ASSERT(w->crashed_correct > 0);
        w->crashed_correct--;
    }
    instance_start(w, r, in, true);
    world_links_up(w, r->id);
}

/* What the daemon does when its links to and from replica `id` open again
 * (a restart, a healed partition): each side resends what the other may
 * have missed (pbft_node_peer_connected). */
void world_links_up(sim_world *w, uint32_t id) {
    for (uint32_t j = 0; j < w->n; j++) {
        if (j == id) {
            continue;
        }
        uint32_t pair[2][2] = {{id, j}, {j, id}};
        for (uint32_t k = 0; k < 2; k++) {
            sim_replica *r = &w->replicas[pair[k][0]];
            for (uint32_t i = 0; i < r->n_inst; i++) {
                if (r->inst[i].up) {
                    pbft_node_peer_connected(r->inst[i].node, pair[k][1]);
                    world_drive(w, r, &r->inst[i]);
                }
            }
        }
    }
}

/* ---- events ------------------------------------------------------------- */

/* A censoring replica drops c0's requests, and relays that carry one. */
static bool censored(const sim_world *w, uint32_t from, const uint8_t *data, size_t len) {
    if (from >= w->n) {
        return from == w->n;
    }
    if (proto_message_kind_peek(data, len) != TWINBFT__MESSAGE__KIND_RELAY) {
        return false;
    }
    bool hit = false;
    Twinbft__Message *m = proto_message_unpack(data, len);
    for (size_t i = 0; m != NULL && m->relay != NULL && i < m->relay->n_requests; i++) {
        const char *c = m->relay->requests[i]->client;
        hit |= c != NULL && strcmp(c, w->clients[0].name) == 0;
    }
    if (m != NULL) {
        twinbft__message__free_unpacked(m, NULL);
    }
    return hit;
}

static void deliver_to_replica(sim_world *w, uint32_t from, sim_replica *r, const uint8_t *data,
                               size_t len) {
    pbft_from pf = {.is_client = from >= w->n, .replica = from, .client = NULL};
    if (r->censor && censored(w, from, data, len)) {
        return;
    }
    if (pf.is_client) {
        pf.replica = 0;
        pf.client = w->clients[from - w->n].name;
    }
    for (uint32_t i = 0; i < r->n_inst; i++) {
        sim_instance *in = &r->inst[i];
        if (!in->up || (r->style == SIM_TWINS && !(r->twin_side[from] & (1u << i)))) {
            continue;
        }
        uint64_t local = world_local_ms(w, r);
        if (local > in->last_tick_local_ms) {
            /* The replica's clock moved since it last looked: let it see the
             * time before the message, as a daemon's event loop would. */
            in->last_tick_local_ms = local;
            pbft_node_set_wall(in->node, world_wall_ms(w, r));
            pbft_node_tick(in->node, local);
        }
        pbft_node_set_wall(in->node, world_wall_ms(w, r));
        (void)pbft_node_step(in->node, &pf, data, len);
        drive_cause(w, r, in, "step");
        if (w->check.v.set) {
            return;
        }
    }
}

static void periodic(sim_world *w) {
    for (uint32_t id = 0; id < w->n && !w->check.v.set; id++) {
        sim_replica *r = &w->replicas[id];
        for (uint32_t i = 0; i < r->n_inst; i++) {
            if (r->inst[i].up) {
                tick_instance(w, r, &r->inst[i]);
            }
        }
    }
    sim_event ev = {.time_us = w->now_us + SIM_PERIODIC_US, .kind = SIM_EV_PERIODIC};
    sim_eventq_push(&w->q, &ev);
}

static void liveness_deadline(sim_world *w) {
    if (w->clients_done == w->opt.clients) {
        return;
    }
    uint64_t total = (uint64_t)w->opt.clients * w->opt.requests, done = 0;
    const sim_client *late = NULL;
    for (uint32_t c = 0; c < w->opt.clients; c++) {
        done += w->clients[c].done;
        const sim_client *cl = &w->clients[c];
        if (cl->outstanding && (late == NULL || cl->sent_at_us < late->sent_at_us)) {
            late = cl; /* the one waiting longest */
        }
    }
    w->stuck = true;
    int n = snprintf(w->stuck_why, sizeof w->stuck_why,
                     "liveness: %" PRIu64 " of %" PRIu64 " requests done %u ms after the faults "
                     "stopped (max view %" PRIu64 ")",
                     done, total, SIM_LIVENESS_BOUND_MS, w->max_view);
    if (late != NULL && n > 0 && (size_t)n < sizeof w->stuck_why) {
        snprintf(w->stuck_why + n, sizeof w->stuck_why - (size_t)n,
                 "; %s has waited %" PRIu64 " ms for request %" PRIu64, late->name,
                 (w->now_us - late->sent_at_us) / 1000, late->number);
    }
}

/* Stale deadline ticks (superseded or for a crashed core) are not events of
 * the run: they are skipped before they are traced or counted. */
static bool stale(const sim_world *w, const sim_event *ev) {
    if (ev->kind != SIM_EV_TICK) {
        return false;
    }
    const sim_instance *in = &w->replicas[ev->a].inst[ev->b];
    return !in->up || ev->gen != in->tick_gen;
}

static void handle(sim_world *w, const sim_event *ev) {
    switch (ev->kind) {
    case SIM_EV_DELIVER:
        if (sim_net_is_cut(&w->net, ev->a, ev->b)) {
            break;
        }
        if (ev->b >= w->n) {
            client_receive(w, &w->clients[ev->b - w->n], ev->a, ev->data, ev->len);
        } else {
            deliver_to_replica(w, ev->a, &w->replicas[ev->b], ev->data, ev->len);
        }
        break;
    case SIM_EV_TICK: {
        sim_replica *r = &w->replicas[ev->a];
        r->inst[ev->b].tick_at = UINT64_MAX;
        tick_instance(w, r, &r->inst[ev->b]);
        break;
    }
    case SIM_EV_PERIODIC:
        periodic(w);
        break;
    case SIM_EV_CLIENT_TIMER:
        client_timer(w, &w->clients[ev->a], ev->gen);
        break;
    case SIM_EV_CLIENT_ISSUE:
        client_issue(w, &w->clients[ev->a]);
        break;
    case SIM_EV_FAULT:
        faults_next(w);
        break;
    case SIM_EV_PARTITION_END:
        faults_partition_end(w, ev->gen);
        break;
    case SIM_EV_RESTART: {
        sim_replica *r = &w->replicas[ev->a];
        if (!r->inst[ev->b].up) {
            say(w, "replica %u%s restarts from its durable state", r->id,
                r->n_inst > 1 ? (ev->b ? "b" : "a") : "");
            world_restart(w, r, &r->inst[ev->b]);
        }
        break;
    }
    case SIM_EV_HEAL:
        faults_heal(w);
        break;
    case SIM_EV_DEADLINE:
        liveness_deadline(w);
        break;
    case SIM_EV_TWINS:
        faults_twins_split(w, &w->replicas[ev->a]);
        break;
    case SIM_EV_SKEW:
        faults_skew(w, &w->replicas[ev->a]);
        break;
    case SIM_EV_CLOCK_BACK:
        faults_clock_back(w, &w->replicas[ev->a]);
        break;
    }
}

/* ---- set-up and tear-down ----------------------------------------------- */

static void choose_byzantine(sim_world *w) {
    uint32_t nb = w->opt.byzantine;
    /* With B = f no correct replica could ever crash within the budget of f
     * faulty replicas; one seed in four gives that budget to a crash. */
    if (nb > 0 && nb == w->f && (w->faults & SIM_FAULT_CRASH) && sim_rng_chance(&w->rng, 250)) {
        nb--;
    }
    w->n_byz = nb;
    uint32_t chosen = 0;
    /* A Byzantine primary is the interesting case: half the seeds have one
     * (every seed with --censor). */
    if (nb > 0 && (w->opt.censor_only || sim_rng_chance(&w->rng, 500))) {
        w->replicas[0].style = SIM_TWINS;
        chosen++;
    }
    while (chosen < nb) {
        uint32_t id = (uint32_t)sim_rng_below(&w->rng, w->n);
        if (w->replicas[id].style == SIM_CORRECT) {
            w->replicas[id].style = SIM_TWINS;
            chosen++;
        }
    }
    for (uint32_t id = 0; id < w->n; id++) {
        sim_replica *r = &w->replicas[id];
        if (r->style == SIM_CORRECT) {
            continue;
        }
        /* Half censor: as primary, such a replica orders everyone's
         * requests but client 0's, which only per-request timers catch.
         * With --censor that is all they do (they mutate nothing). */
        r->censor = w->opt.censor_only || sim_rng_chance(&w->rng, 500);
        if (w->opt.censor_only) {
            r->style = SIM_MUTATE;
            sim_byz_init(&r->byz, id, w->crypto, 0);
        } else if (sim_rng_chance(&w->rng, 500)) {
            r->n_inst = 2;
            r->twin_side = calloc(w->n_ep, 1);
            TB_ASSERT(r->twin_side != NULL);
        } else {
            r->style = SIM_MUTATE;
            sim_byz_init(&r->byz, id, w->crypto, (uint32_t)sim_rng_range(&w->rng, 100, 600));
        }
    }
}

static void world_free(sim_world *w) {
    if (w->replicas != NULL) {
        for (uint32_t id = 0; id < w->n; id++) {
            sim_replica *r = &w->replicas[id];
            for (uint32_t i = 0; i < r->n_inst; i++) {
                sim_instance *in = &r->inst[i];
                if (in->up) {
                    pbft_node_free(in->node);
                    app_stop(w, in);
                }
                sim_store_free(&in->store);
                if (in->dir[0] != '\0') {
                    sim_smapp_remove_dir(in->dir);
                }
            }
            if (r->style == SIM_MUTATE) {
                sim_byz_free(&r->byz);
            }
            free(r->twin_side);
        }
        free(w->replicas);
    }
    if (w->clients != NULL) {
        for (uint32_t c = 0; c < w->opt.clients; c++) {
            client_free(&w->clients[c]);
        }
        free(w->clients);
    }
    if (w->sm_root[0] != '\0') {
        rmdir(w->sm_root);
    }
    free(w->principals);
    free(w->grantees);
    sim_check_free(&w->check);
    sim_net_free(&w->net);
    sim_eventq_free(&w->q);
    sim_crypto_free(w->crypto);
}

/* The state machine's world: a store directory per instance, and the
 * workload's name pools built from the clients' names (c0 is the
 * bootstrap admin; the others gain roles through the workload's grants). */
static int sm_setup(sim_world *w) {
    const char *tmp = getenv("TMPDIR");
    snprintf(w->sm_root, sizeof w->sm_root, "%s/twinbft-sim-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(w->sm_root) == NULL) {
        fprintf(stderr, "twinbft-sim: cannot create a directory under %s\n", tmp ? tmp : "/tmp");
        w->sm_root[0] = '\0';
        return TB_ERR_IO;
    }
    for (uint32_t id = 0; id < w->n; id++) {
        sim_replica *r = &w->replicas[id];
        for (uint32_t i = 0; i < r->n_inst; i++) {
            sim_instance *in = &r->inst[i];
            snprintf(in->dir, sizeof in->dir, "%s/r%u-%u", w->sm_root, id, i);
            if (mkdir(in->dir, 0700) != 0) {
                fprintf(stderr, "twinbft-sim: cannot create %s\n", in->dir);
                in->dir[0] = '\0';
                return TB_ERR_IO;
            }
        }
    }
    uint32_t nc = w->opt.clients;
    w->principals = calloc(nc + 2, sizeof *w->principals);
    w->grantees = calloc(nc + 2, sizeof *w->grantees);
    TB_ASSERT(w->principals != NULL && w->grantees != NULL);
    size_t np = 0, ng = 0;
    for (uint32_t c = 0; c < nc; c++) {
        w->principals[np++] = w->clients[c].name;
        if (c > 0) {
            w->grantees[ng++] = w->clients[c].name;
        }
    }
    w->principals[np++] = "agent-1";
    w->grantees[ng++] = "agent-1";
    w->principals[np++] = "nobody";
    w->grantees[ng++] = "nobody";
    w->names = sm_workload_default_names;
    w->names.principals = w->principals;
    w->names.n_principals = np;
    w->names.grantees = w->grantees;
    w->names.n_grantees = ng;
    return 0;
}

/* w is zeroed, with opt and the trace already set. */
static int world_setup(sim_world *w, const sim_options *opt) {
    w->n = opt->replicas;
    w->f = pbft_f(w->n);
    w->n_ep = w->n + opt->clients;
    w->faults = opt->faults;
    w->end_us = UINT64_MAX;
    w->now_us = SIM_T0_US;
    sim_rng_seed(&w->rng, opt->seed);
    /* The retained log by seed (not by rng, so that seeds keep their
     * schedules): none (state transfer only), shorter than two windows (a
     * replica far behind transfers, one a little behind replays), or long. */
    static const uint64_t log_retain[] = {0, 2 * SIM_LOG_WINDOW, 64 * SIM_LOG_WINDOW};
    w->log_retain = log_retain[opt->seed / 12 % 3];
    sim_rng_seed(&w->commit_crash_rng, opt->seed ^ 0x636f6d6d69746372ull);
    sim_eventq_init(&w->q);
    sim_net_init(&w->net, w->n_ep, &w->rng, &w->q);
    int rc = sim_crypto_create(opt->seed, w->n, opt->ed25519, &w->crypto);
    if (rc != 0) {
        return rc;
    }
    sim_check_init(&w->check, w->n, opt->clients, opt->requests);
    w->replicas = calloc(w->n, sizeof *w->replicas);
    w->clients = calloc(opt->clients, sizeof *w->clients);
    TB_ASSERT(w->replicas != NULL && w->clients != NULL);
    for (uint32_t id = 0; id < w->n; id++) {
        sim_replica *r = &w->replicas[id];
        r->id = id;
        r->n_inst = 1;
        /* Timer clocks start anywhere (boot time), far from the wall clock,
         * so that code mixing the two shows. */
        r->mono_base_us = (uint64_t)(id + 1) * 977 * 1000 * 1000;
        for (uint32_t i = 0; i < 2; i++) {
            r->inst[i].id = id;
            r->inst[i].inst = i;
            sim_store_init(&r->inst[i].store);
        }
    }
    choose_byzantine(w);
    for (uint32_t c = 0; c < opt->clients; c++) {
        client_init(w, &w->clients[c], c);
    }
    if (!opt->counter_app && sm_setup(w) != 0) {
        return TB_ERR_IO;
    }
    faults_setup(w);
    for (uint32_t id = 0; id < w->n; id++) {
        sim_replica *r = &w->replicas[id];
        for (uint32_t i = 0; i < r->n_inst; i++) {
            instance_start(w, r, &r->inst[i], false);
        }
    }
    sim_event ev = {.time_us = w->now_us + SIM_PERIODIC_US, .kind = SIM_EV_PERIODIC};
    sim_eventq_push(&w->q, &ev);
    for (uint32_t c = 0; c < opt->clients; c++) {
        sim_event ce = {.time_us = w->now_us + sim_rng_below(&w->rng, w->think_max_us + 1),
                        .kind = SIM_EV_CLIENT_ISSUE,
                        .a = c};
        sim_eventq_push(&w->q, &ce);
    }
    return 0;
}

static void describe_world(sim_world *w) {
    char byz[256] = "";
    size_t at = 0;
    for (uint32_t id = 0; id < w->n && at < sizeof byz; id++) {
        const sim_replica *r = &w->replicas[id];
        if (r->style != SIM_CORRECT) {
            int k = snprintf(byz + at, sizeof byz - at, "%s%u (%s)", at ? ", " : "", id,
                             r->style == SIM_TWINS ? "twins" : "mutating");
            at += k > 0 ? (size_t)k : 0;
        }
    }
    say(w, "%u replica%s (f = %u), %u clients x %u requests, Byzantine: %s; faults until %.3f s",
        w->n, w->n == 1 ? "" : "s", w->f, w->opt.clients, w->opt.requests, at ? byz : "none",
        (double)(w->heal_us - SIM_T0_US) / 1e6);
}

static void fill_result(sim_world *w, sim_result *res) {
    res->events = w->events;
    res->sim_ms = (w->now_us - SIM_T0_US) / 1000;
    res->max_view = w->max_view;
    res->max_seq = w->check.max_exec;
    for (uint32_t c = 0; c < w->opt.clients; c++) {
        res->completed += w->clients[c].done;
    }
    if (w->check.v.set) {
        const sim_violation *v = &w->check.v;
        char reps[32] = "-";
        if (v->replica_a != UINT32_MAX && v->replica_b != UINT32_MAX) {
            snprintf(reps, sizeof reps, "%u,%u", v->replica_a, v->replica_b);
        } else if (v->replica_a != UINT32_MAX) {
            snprintf(reps, sizeof reps, "%u", v->replica_a);
        }
        res->violation = true;
        snprintf(res->what, sizeof res->what, "violation=%s seq=%" PRIu64 " replicas=%s: %s",
                 v->what, v->seq, reps, v->detail);
    } else if (w->stuck) {
        res->stuck = true;
        snprintf(res->what, sizeof res->what, "stuck: %s", w->stuck_why);
    }
}

static void run_loop(sim_world *w) {
    sim_event ev;
    while (sim_eventq_pop(&w->q, &ev)) {
        if (stale(w, &ev)) {
            free(ev.data);
            continue;
        }
        if (ev.time_us > w->end_us) {
            free(ev.data);
            break;
        }
        w->now_us = ev.time_us;
        if (++w->events > SIM_EVENTS_MAX || w->q.n > SIM_EVENTS_PENDING_MAX) {
            free(ev.data);
            w->stuck = true;
            snprintf(w->stuck_why, sizeof w->stuck_why,
                     "event cap: more than %d events run or %d pending by %.3f s of simulated "
                     "time (a message storm?)",
                     SIM_EVENTS_MAX, SIM_EVENTS_PENDING_MAX, (double)(w->now_us - SIM_T0_US) / 1e6);
            return;
        }
        trace_event(w, &ev);
        handle(w, &ev);
        free(ev.data);
        if (w->check.v.set || w->stuck) {
            return;
        }
        if (w->clients_done == w->opt.clients && w->end_us == UINT64_MAX) {
            /* Everyone is served; run a little longer so that lagging
             * replicas catch up under the checker's eyes. */
            w->end_us = w->now_us + DRAIN_US;
            say(w, "all %u clients finished their %u requests", w->opt.clients, w->opt.requests);
        }
    }
    if (w->end_us == UINT64_MAX && !w->stuck) {
        w->stuck = true;
        snprintf(w->stuck_why, sizeof w->stuck_why, "no events left");
    }
}

/* Liveness of each replica, not only of the cluster: once the run drained
 * (every client served, then DRAIN_US more), every correct replica that is
 * not changing views is in the same view, and every correct replica has
 * executed as far as the furthest. One that fell behind and never caught
 * up, or sits in an older view, leaves the cluster without its fault
 * margin, and is caught here even though the clients were served. A
 * replica that timed out waiting for a NEW-VIEW just before it came may
 * wait in the change to the next view until the others move (PBFT 4.5.2:
 * it cannot take back its VIEW-CHANGE), but only in that next view; the
 * climbing alone of issue 9 is caught. */
static void check_converged(sim_world *w) {
    if (w->stuck || w->check.v.set || w->end_us == UINT64_MAX) {
        return;
    }
    pbft_status st[PBFT_REPLICAS_MAX];
    bool live[PBFT_REPLICAS_MAX] = {false};
    uint64_t view = 0, executed = 0;
    bool any = false;
    for (uint32_t id = 0; id < w->n; id++) {
        const sim_replica *r = &w->replicas[id];
        if (r->style != SIM_CORRECT || !r->inst[0].up) {
            continue;
        }
        live[id] = true;
        pbft_node_status(r->inst[0].node, &st[id]);
        if (!st[id].in_view_change && (!any || st[id].view > view)) {
            view = st[id].view;
            any = true;
        }
        executed = st[id].executed > executed ? st[id].executed : executed;
    }
    for (uint32_t id = 0; id < w->n && any; id++) {
        if (!live[id]) {
            continue;
        }
        const pbft_status *s = &st[id];
        bool ok =
            s->executed == executed && (s->in_view_change ? s->view == view + 1 : s->view == view);
        if (!ok) {
            w->stuck = true;
            snprintf(w->stuck_why, sizeof w->stuck_why,
                     "convergence: %u ms after the last client finished, correct replica %u is "
                     "in view %" PRIu64 "%s with %" PRIu64 " executed, while the others work "
                     "in view %" PRIu64 " with %" PRIu64 " executed",
                     DRAIN_US / 1000, id, s->view, s->in_view_change ? " (changing)" : "",
                     s->executed, view, executed);
            return;
        }
    }
}

int sim_run(const sim_options *opt, sim_result *res) {
    memset(res, 0, sizeof *res);
    sim_world *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return TB_ERR_NOMEM;
    }
    w->opt = *opt;
    trace_begin(w);
    int rc = world_setup(w, opt);
    if (rc != 0) {
        trace_end(w, res->trace);
        world_free(w);
        free(w);
        return rc;
    }
    describe_world(w);
    run_loop(w);
    check_converged(w);
    fill_result(w, res);
    trace_end(w, res->trace);
    world_free(w);
    free(w);
    return 0;
}
