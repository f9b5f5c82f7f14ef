/* Placement of component replicas onto nodes, scaling, and re-placement
 * when a node drains or goes down.
 *
 * For each replica every node is checked, in node-id order, against the
 * hard constraints in this order (the first one it fails is its rejection
 * class): state up, tier, privacy zone, latency to the twin's site within
 * the budget, no other replica of the same component, a free replica slot,
 * free CPU, free memory. Among the feasible nodes the score is, in order:
 *   1. lowest round-trip latency to the twin's site (a node's own site
 *      counts as 0 ms unless it lists another value; unknown latency is
 *      worst),
 *   2. most free CPU after placing, then most free memory after placing,
 *   3. lowest node id (byte order): the explicit tie-break.
 * All of it is integer arithmetic over records read in key order. An op
 * that places several replicas plans them one after another against the
 * capacity the earlier ones took, and writes nothing unless all fit. */
#include <string.h>

#include "statemachine/internal.h"

/* A node that lists no latency to a site and is not at it. */
static const uint32_t sm_latency_unknown = UINT32_MAX;

/* A node with the changes this op has planned on it so far. */
typedef struct sm_cand {
    Twinbft__SmNode *node;
    int64_t cpu_delta, mem_delta;
    int32_t replicas_delta;
} sm_cand;

typedef struct sm_fleet {
    sm_cand *c;
    size_t n;
} sm_fleet;

/* One replica's placement: where it goes and the rejection tally if nowhere. */
typedef struct sm_pick {
    size_t node; /* index into the fleet, or SIZE_MAX */
    uint32_t count[TWINBFT__SM_REJECT__SM_REJECT_MEMORY + 1];
    const char *first[TWINBFT__SM_REJECT__SM_REJECT_MEMORY + 1];
} sm_pick;

static int load_fleet(sm_ctx *c, sm_fleet *f) {
    sm_iter it;
    f->c = sm_arena_alloc(c->arena, SM_NODES_MAX * sizeof *f->c);
    f->n = 0;
    int err = sm_iter_open(c->s, c->txn, SM_T_NODE, "", 0, &it);
    while (err == 0 && (err = sm_iter_next(&it)) == 1) {
        TB_ASSERT(f->n < SM_NODES_MAX);
        Twinbft__SmNode *node = twinbft__sm_node__unpack(&c->arena->pb, it.v.mv_size, it.v.mv_data);
        if (node == NULL) {
            err = TB_ERR_IO;
            break;
        }
        f->c[f->n++] = (sm_cand){.node = node};
        err = 0;
    }
    sm_iter_close(&it);
    return err;
}

static uint32_t latency_to(const Twinbft__SmNode *n, const char *site) {
    for (size_t i = 0; i < n->n_latencies; i++) {
        if (strcmp(n->latencies[i]->site, site) == 0) {
            return n->latencies[i]->rtt_ms;
        }
    }
    return strcmp(n->site, site) == 0 ? 0 : sm_latency_unknown;
}

static uint64_t free_of(uint64_t cap, uint64_t used, int64_t delta) {
    int64_t u = (int64_t)used + delta;
    TB_ASSERT(u >= 0);
    return (uint64_t)u >= cap ? 0 : cap - (uint64_t)u;
}

/* The first constraint the node fails for this replica (NONE: feasible). */
static int reject_of(const sm_cand *cd, const Twinbft__SmComponent *comp, const char *site,
                     char *const *hosts, size_t n_hosts) {
    const Twinbft__SmNode *n = cd->node;
    if (n->state != TWINBFT__SM_NODE_STATE__SM_NODE_UP) {
        return TWINBFT__SM_REJECT__SM_REJECT_STATE;
    }
    if (comp->tier != TWINBFT__SM_TIER__SM_TIER_ANY && n->tier != comp->tier) {
        return TWINBFT__SM_REJECT__SM_REJECT_TIER;
    }
    if (comp->zone[0] != '\0' && strcmp(n->zone, comp->zone) != 0) {
        return TWINBFT__SM_REJECT__SM_REJECT_ZONE;
    }
    if (comp->max_latency_ms > 0 && latency_to(n, site) > comp->max_latency_ms) {
        return TWINBFT__SM_REJECT__SM_REJECT_LATENCY;
    }
    for (size_t i = 0; i < n_hosts; i++) {
        if (strcmp(hosts[i], n->id) == 0) {
            return TWINBFT__SM_REJECT__SM_REJECT_AFFINITY;
        }
    }
    if ((int64_t)n->replicas + cd->replicas_delta >= SM_NODE_REPLICAS_MAX) {
        return TWINBFT__SM_REJECT__SM_REJECT_SLOTS;
    }
    if (free_of(n->cpu_millicores, n->cpu_used, cd->cpu_delta) < comp->cpu_millicores) {
        return TWINBFT__SM_REJECT__SM_REJECT_CPU;
    }
    if (free_of(n->memory_mib, n->memory_used, cd->mem_delta) < comp->memory_mib) {
        return TWINBFT__SM_REJECT__SM_REJECT_MEMORY;
    }
    return TWINBFT__SM_REJECT__SM_REJECT_NONE;
}

/* True iff feasible node a scores strictly better than b (see the top). */
static bool better(const sm_cand *a, const sm_cand *b, const char *site) {
    uint32_t la = latency_to(a->node, site), lb = latency_to(b->node, site);
    if (la != lb) {
        return la < lb;
    }
    uint64_t ca = free_of(a->node->cpu_millicores, a->node->cpu_used, a->cpu_delta);
    uint64_t cb = free_of(b->node->cpu_millicores, b->node->cpu_used, b->cpu_delta);
    if (ca != cb) {
        return ca > cb; /* both exceed the demand, so free-after-placing orders the same */
    }
    uint64_t ma = free_of(a->node->memory_mib, a->node->memory_used, a->mem_delta);
    uint64_t mb = free_of(b->node->memory_mib, b->node->memory_used, b->mem_delta);
    return ma > mb; /* equal: the earlier (lower) node id stays */
}

static void pick(const sm_fleet *f, const Twinbft__SmComponent *comp, const char *site,
                 char *const *hosts, size_t n_hosts, sm_pick *p) {
    memset(p, 0, sizeof *p);
    p->node = SIZE_MAX;
    for (size_t i = 0; i < f->n; i++) {
        int r = reject_of(&f->c[i], comp, site, hosts, n_hosts);
        if (r != TWINBFT__SM_REJECT__SM_REJECT_NONE) {
            if (p->count[r]++ == 0) {
                p->first[r] = f->c[i].node->id;
            }
        } else if (p->node == SIZE_MAX || better(&f->c[i], &f->c[p->node], site)) {
            p->node = i;
        }
    }
}

static int deny_no_node(sm_ctx *c, const Twinbft__SmComponent *comp, uint32_t replica,
                        const sm_pick *p) {
    Twinbft__SmPlacementDenial *d = sm_arena_alloc(c->arena, sizeof *d);
    twinbft__sm_placement_denial__init(d);
    d->component = comp->name;
    d->replica = replica;
    d->rejections =
        sm_arena_alloc(c->arena, sizeof p->count / sizeof p->count[0] * sizeof *d->rejections);
    for (size_t r = 1; r < sizeof p->count / sizeof p->count[0]; r++) {
        if (p->count[r] == 0) {
            continue;
        }
        Twinbft__SmRejection *rj = sm_arena_alloc(c->arena, sizeof *rj);
        twinbft__sm_rejection__init(rj);
        rj->reject = (Twinbft__SmReject)r;
        rj->nodes = p->count[r];
        rj->first_node = (char *)p->first[r];
        d->rejections[d->n_rejections++] = rj;
    }
    sm_deny(c, TWINBFT__SM_REASON__SM_REASON_NO_FEASIBLE_NODE,
            "no feasible node for replica %u of %s/%s", replica, comp->twin, comp->name);
    c->res->payload_case = TWINBFT__SM_RESULT__PAYLOAD_DENIAL;
    c->res->denial = d;
    return 0;
}

/* ---- placement records ---- */

typedef struct sm_replicas {
    Twinbft__SmPlacement *p[SM_COMPONENT_REPLICAS_MAX];
    size_t n;
} sm_replicas;

/* twin \0 component \0 replica (be32): a component's replicas in order. */
static size_t place_key(uint8_t *buf, const char *twin, const char *comp, uint32_t replica) {
    size_t len = sm_key2(buf, twin, comp);
    buf[len] = 0;
    sm_be32(buf + len + 1, replica);
    return len + 5;
}

/* The placements of one component, indexed by replica number. */
static int load_replicas(sm_ctx *c, const char *twin, const char *comp, sm_replicas *r) {
    memset(r, 0, sizeof *r);
    uint8_t prefix[SM_KEY_BYTES_MAX + 1];
    size_t plen = sm_key2(prefix, twin, comp);
    prefix[plen++] = 0;
    sm_iter it;
    int err = sm_iter_open(c->s, c->txn, SM_T_PLACE, prefix, plen, &it);
    while (err == 0 && (err = sm_iter_next(&it)) == 1) {
        Twinbft__SmPlacement *p =
            twinbft__sm_placement__unpack(&c->arena->pb, it.v.mv_size, it.v.mv_data);
        if (p == NULL || p->replica >= SM_COMPONENT_REPLICAS_MAX) {
            err = TB_ERR_IO;
            break;
        }
        r->p[p->replica] = p;
        r->n = p->replica + 1 > r->n ? p->replica + 1 : r->n;
        err = 0;
    }
    sm_iter_close(&it);
    return err;
}

/* Nodes that host a replica of the component other than `skip`. */
static size_t hosts_of(const sm_replicas *r, uint32_t skip, char **hosts) {
    size_t n = 0;
    for (uint32_t i = 0; i < r->n; i++) {
        if (i != skip && r->p[i] != NULL && r->p[i]->node[0] != '\0') {
            hosts[n++] = r->p[i]->node;
        }
    }
    return n;
}

static size_t fleet_find(const sm_fleet *f, const char *id) {
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->c[i].node->id, id) == 0) {
            return i;
        }
    }
    return SIZE_MAX;
}

static void charge(sm_cand *cd, uint64_t cpu, uint64_t mem, int sign) {
    cd->cpu_delta += sign * (int64_t)cpu;
    cd->mem_delta += sign * (int64_t)mem;
    cd->replicas_delta += sign;
}

/* Writes back every node this op changed. */
static int write_fleet(sm_ctx *c, sm_fleet *f, size_t always) {
    int err = 0;
    for (size_t i = 0; err == 0 && i < f->n; i++) {
        sm_cand *cd = &f->c[i];
        if (cd->cpu_delta == 0 && cd->mem_delta == 0 && cd->replicas_delta == 0 && i != always) {
            continue;
        }
        Twinbft__SmNode *n = cd->node;
        TB_ASSERT((int64_t)n->cpu_used + cd->cpu_delta >= 0 &&
                  (int64_t)n->memory_used + cd->mem_delta >= 0 &&
                  (int64_t)n->replicas + cd->replicas_delta >= 0);
        n->cpu_used = (uint64_t)((int64_t)n->cpu_used + cd->cpu_delta);
        n->memory_used = (uint64_t)((int64_t)n->memory_used + cd->mem_delta);
        n->replicas = (uint32_t)((int64_t)n->replicas + cd->replicas_delta);
        cd->cpu_delta = cd->mem_delta = cd->replicas_delta = 0;
        err = sm_rec_put(c, SM_T_NODE, n->id, strlen(n->id), n);
    }
    return err;
}

Twinbft__SmPlacementResult *sm_placement_payload(sm_ctx *c) {
    sm_arena *a = c->arena;
    Twinbft__SmPlacementResult *pr = sm_arena_alloc(a, sizeof *pr);
    twinbft__sm_placement_result__init(pr);
    pr->added = sm_arena_alloc(a, SM_NODE_REPLICAS_MAX * sizeof *pr->added);
    pr->removed = sm_arena_alloc(a, SM_NODE_REPLICAS_MAX * sizeof *pr->removed);
    pr->unplaced = sm_arena_alloc(a, SM_NODE_REPLICAS_MAX * sizeof *pr->unplaced);
    c->res->payload_case = TWINBFT__SM_RESULT__PAYLOAD_PLACEMENT;
    c->res->placement = pr;
    return pr;
}

static Twinbft__SmPlacementChange *change(sm_ctx *c, Twinbft__SmPlacement *p, const char *from) {
    Twinbft__SmPlacementChange *ch = sm_arena_alloc(c->arena, sizeof *ch);
    twinbft__sm_placement_change__init(ch);
    ch->placement = p;
    ch->from_node = (char *)(from ? from : "");
    return ch;
}

/* Deletes one placement, releasing its node in the fleet (f NULL: the
 * caller already did). */
static int drop_replica(sm_ctx *c, sm_fleet *f, Twinbft__SmPlacement *p,
                        Twinbft__SmPlacementResult *pr) {
    uint8_t key[SM_KEY_BYTES_MAX + 1];
    int err = 0;
    if (p->node[0] != '\0') {
        if (f != NULL) {
            size_t i = fleet_find(f, p->node);
            TB_ASSERT(i != SIZE_MAX); /* a node with replicas cannot be retired */
            charge(&f->c[i], p->cpu_millicores, p->memory_mib, -1);
        }
        size_t len = sm_key3(key, p->node, p->twin, p->component, p->replica);
        err = sm_db_del(c->s, c->txn, SM_T_NODE_PLACE, key, len);
    }
    if (err == 0) {
        size_t len = place_key(key, p->twin, p->component, p->replica);
        err = sm_db_del(c->s, c->txn, SM_T_PLACE, key, len);
    }
    if (err == 0 && pr != NULL) {
        TB_ASSERT(pr->n_removed < SM_NODE_REPLICAS_MAX);
        pr->removed[pr->n_removed++] = change(c, p, NULL);
    }
    return err;
}

int sm_unplace_component(sm_ctx *c, const char *twin, const char *comp,
                         Twinbft__SmPlacementResult *removed) {
    sm_fleet f;
    sm_replicas r;
    int err = load_fleet(c, &f);
    if (err == 0) {
        err = load_replicas(c, twin, comp, &r);
    }
    for (uint32_t i = 0; err == 0 && i < r.n; i++) {
        if (r.p[i] != NULL) {
            err = drop_replica(c, &f, r.p[i], removed);
        }
    }
    return err != 0 ? err : write_fleet(c, &f, SIZE_MAX);
}

/* Writes a placement (new or moved) and its node index entry. */
static int put_placement(sm_ctx *c, Twinbft__SmPlacement *p) {
    uint8_t key[SM_KEY_BYTES_MAX + 1];
    size_t len = place_key(key, p->twin, p->component, p->replica);
    int err = sm_rec_put(c, SM_T_PLACE, key, len, p);
    if (err == 0 && p->node[0] != '\0') {
        len = sm_key3(key, p->node, p->twin, p->component, p->replica);
        err = sm_db_put(c->s, c->txn, SM_T_NODE_PLACE, key, len, "", 0);
    }
    return err;
}

static Twinbft__SmPlacement *new_placement(sm_ctx *c, const Twinbft__SmComponent *comp,
                                           uint32_t replica) {
    Twinbft__SmPlacement *p = sm_arena_alloc(c->arena, sizeof *p);
    twinbft__sm_placement__init(p);
    p->twin = comp->twin;
    p->component = comp->name;
    p->replica = replica;
    p->cpu_millicores = comp->cpu_millicores;
    p->memory_mib = comp->memory_mib;
    return p;
}

/* Plans replicas [0, want) of a component that have no node, against the
 * fleet; on success appends the new placements to `plan`. Returns false
 * (with the denial set) when one cannot be placed. */
static bool plan_component(sm_ctx *c, sm_fleet *f, const char *site,
                           const Twinbft__SmComponent *comp, sm_replicas *r, uint32_t want,
                           Twinbft__SmPlacement **plan, size_t *n_plan) {
    for (uint32_t i = 0; i < want; i++) {
        if (r->p[i] != NULL && r->p[i]->node[0] != '\0') {
            continue;
        }
        char *hosts[SM_COMPONENT_REPLICAS_MAX];
        size_t n_hosts = hosts_of(r, i, hosts);
        sm_pick pk;
        pick(f, comp, site, hosts, n_hosts, &pk);
        if (pk.node == SIZE_MAX) {
            deny_no_node(c, comp, i, &pk);
            return false;
        }
        sm_cand *cd = &f->c[pk.node];
        charge(cd, comp->cpu_millicores, comp->memory_mib, 1);
        Twinbft__SmPlacement *p = new_placement(c, comp, i);
        p->node = cd->node->id;
        p->agent = cd->node->agent;
        r->p[i] = p; /* later replicas see it for anti-affinity */
        r->n = i + 1 > r->n ? i + 1 : r->n;
        TB_ASSERT(*n_plan < SM_TWIN_REPLICAS_MAX);
        plan[(*n_plan)++] = p;
    }
    return true;
}

static int write_plan(sm_ctx *c, sm_fleet *f, Twinbft__SmPlacement **plan, size_t n,
                      Twinbft__SmPlacementResult *pr) {
    int err = 0;
    for (size_t i = 0; err == 0 && i < n; i++) {
        err = put_placement(c, plan[i]);
        pr->added[pr->n_added++] = change(c, plan[i], NULL);
    }
    return err != 0 ? err : write_fleet(c, f, SIZE_MAX);
}

/* Loads the twin and authorises an op on its placement. */
static bool twin_for_placement(sm_ctx *c, const char *id, Twinbft__SmTwin **t, int *err) {
    *err = sm_twin_get(c, id, t);
    if (*err == TB_ERR_NOT_FOUND) {
        *err = 0;
        sm_deny(c, TWINBFT__SM_REASON__SM_REASON_NOT_FOUND, "no twin %s", id);
        return false;
    }
    return *err == 0 && sm_authz_twin(c, SM_ROLES_MANAGE, true, *t, err);
}

int sm_op_place(sm_ctx *c, const Twinbft__SmPlace *op) {
    if (!sm_valid_id(op->twin)) {
        return sm_malformed(c, "twin id is not valid");
    }
    Twinbft__SmTwin *t = NULL;
    int err = 0;
    if (!twin_for_placement(c, op->twin, &t, &err)) {
        return err;
    }
    char *names[SM_TWIN_COMPONENTS_MAX];
    size_t n_names = 0;
    sm_fleet f;
    if ((err = sm_comp_names(c, t->id, names, &n_names)) != 0 || (err = load_fleet(c, &f)) != 0) {
        return err;
    }
    Twinbft__SmPlacement *plan[SM_TWIN_REPLICAS_MAX];
    size_t n_plan = 0;
    for (size_t i = 0; i < n_names; i++) {
        Twinbft__SmComponent *comp = NULL;
        sm_replicas r;
        if ((err = sm_comp_get(c, t->id, names[i], &comp)) != 0 ||
            (err = load_replicas(c, t->id, names[i], &r)) != 0) {
            return err;
        }
        if (!plan_component(c, &f, t->site, comp, &r, comp->desired_replicas, plan, &n_plan)) {
            return 0; /* denied: nothing written */
        }
    }
    return write_plan(c, &f, plan, n_plan, sm_placement_payload(c));
}

int sm_op_scale(sm_ctx *c, const Twinbft__SmScale *op) {
    if (!sm_valid_id(op->twin) || !sm_valid_id(op->component)) {
        return sm_malformed(c, "scale needs a valid twin and component");
    }
    Twinbft__SmTwin *t = NULL;
    Twinbft__SmComponent *comp = NULL;
    int err = 0;
    if (!twin_for_placement(c, op->twin, &t, &err)) {
        return err;
    }
    if ((err = sm_comp_get(c, op->twin, op->component, &comp)) == TB_ERR_NOT_FOUND) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_NOT_FOUND, "no component %s of twin %s",
                       op->component, op->twin);
    }
    if (err != 0) {
        return err;
    }
    if (op->replicas < comp->min_replicas || op->replicas > comp->max_replicas) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_REPLICAS_RANGE,
                       "%u replicas is outside [%u, %u]", op->replicas, comp->min_replicas,
                       comp->max_replicas);
    }
    sm_fleet f;
    sm_replicas r;
    if ((err = load_fleet(c, &f)) != 0 || (err = load_replicas(c, t->id, comp->name, &r)) != 0) {
        return err;
    }
    /* Scale-in first, in the plan only, so that freed capacity counts. */
    Twinbft__SmPlacement *drop[SM_COMPONENT_REPLICAS_MAX];
    size_t n_drop = 0;
    for (uint32_t i = op->replicas; i < r.n; i++) {
        if (r.p[i] != NULL) {
            drop[n_drop++] = r.p[i];
            if (r.p[i]->node[0] != '\0') {
                size_t at = fleet_find(&f, r.p[i]->node);
                TB_ASSERT(at != SIZE_MAX);
                charge(&f.c[at], r.p[i]->cpu_millicores, r.p[i]->memory_mib, -1);
            }
            r.p[i] = NULL;
        }
    }
    Twinbft__SmPlacement *plan[SM_TWIN_REPLICAS_MAX];
    size_t n_plan = 0;
    if (!plan_component(c, &f, t->site, comp, &r, op->replicas, plan, &n_plan)) {
        return 0;
    }
    Twinbft__SmPlacementResult *pr = sm_placement_payload(c);
    for (size_t i = 0; err == 0 && i < n_drop; i++) {
        err = drop_replica(c, NULL, drop[i], pr);
    }
    comp->desired_replicas = op->replicas;
    uint8_t key[SM_KEY_BYTES_MAX + 1];
    size_t len = sm_key2(key, t->id, comp->name);
    if (err == 0) {
        err = sm_rec_put(c, SM_T_COMP, key, len, comp);
    }
    return err != 0 ? err : write_plan(c, &f, plan, n_plan, pr);
}

/* Moves one replica off node `from` (index in the fleet) to the best other
 * node, or leaves it pending when none is feasible. Written at once, so
 * the next replica of the same component sees where this one went. */
static int evacuate(sm_ctx *c, sm_fleet *f, size_t from, const char *twin, const char *comp_name,
                    uint32_t replica, Twinbft__SmPlacementResult *pr) {
    Twinbft__SmTwin *t = NULL;
    Twinbft__SmComponent *comp = NULL;
    sm_replicas r;
    int err = sm_twin_get(c, twin, &t);
    if (err == 0 && (err = sm_comp_get(c, twin, comp_name, &comp)) == 0) {
        err = load_replicas(c, twin, comp_name, &r);
    }
    if (err != 0) {
        return err == TB_ERR_NOT_FOUND ? TB_ERR_IO : err; /* the index names live records */
    }
    Twinbft__SmPlacement *p = r.p[replica];
    TB_ASSERT(p != NULL && strcmp(p->node, f->c[from].node->id) == 0);
    uint8_t key[SM_KEY_BYTES_MAX + 1];
    size_t len = sm_key3(key, p->node, twin, comp_name, replica);
    if ((err = sm_db_del(c->s, c->txn, SM_T_NODE_PLACE, key, len)) != 0) {
        return err;
    }
    charge(&f->c[from], p->cpu_millicores, p->memory_mib, -1);
    char *hosts[SM_COMPONENT_REPLICAS_MAX];
    size_t n_hosts = hosts_of(&r, replica, hosts);
    sm_pick pk;
    pick(f, comp, t->site, hosts, n_hosts, &pk);
    if (pk.node == SIZE_MAX) {
        p->node = "";
        p->agent = "";
        pr->unplaced[pr->n_unplaced++] = p;
        return put_placement(c, p);
    }
    sm_cand *cd = &f->c[pk.node];
    charge(cd, p->cpu_millicores, p->memory_mib, 1);
    pr->added[pr->n_added++] = change(c, p, f->c[from].node->id);
    p->node = cd->node->id;
    p->agent = cd->node->agent;
    return put_placement(c, p);
}

/* The (twin, component, replica) of a node index key node \0 twin \0 comp \0 be32. */
static void parse_node_place(sm_ctx *c, const uint8_t *k, size_t len, size_t skip, char **twin,
                             char **comp, uint32_t *replica) {
    TB_ASSERT(len > skip + 4);
    const uint8_t *p = k + skip, *end = k + len - 4;
    const uint8_t *z1 = memchr(p, 0, (size_t)(end - p));
    TB_ASSERT(z1 != NULL);
    const uint8_t *z2 = memchr(z1 + 1, 0, (size_t)(end - z1 - 1));
    TB_ASSERT(z2 != NULL && z2 + 1 == end);
    *twin = sm_arena_strndup(c->arena, p, (size_t)(z1 - p));
    *comp = sm_arena_strndup(c->arena, z1 + 1, (size_t)(z2 - z1 - 1));
    *replica = sm_get_be32(end);
}

/* Every replica on the node, from its index, moved elsewhere in key order. */
static int evacuate_all(sm_ctx *c, sm_fleet *f, size_t from, Twinbft__SmPlacementResult *pr) {
    uint8_t prefix[SM_KEY_BYTES_MAX + 1];
    size_t plen = sm_key2(prefix, f->c[from].node->id, "");
    char *twins[SM_NODE_REPLICAS_MAX], *comps[SM_NODE_REPLICAS_MAX];
    uint32_t replicas[SM_NODE_REPLICAS_MAX];
    size_t n = 0;
    sm_iter it;
    int err = sm_iter_open(c->s, c->txn, SM_T_NODE_PLACE, prefix, plen, &it);
    while (err == 0 && (err = sm_iter_next(&it)) == 1) {
        TB_ASSERT(n < SM_NODE_REPLICAS_MAX);
        parse_node_place(c, it.k.mv_data, it.k.mv_size, plen, &twins[n], &comps[n], &replicas[n]);
        n++;
        err = 0;
    }
    sm_iter_close(&it);
    for (size_t i = 0; err == 0 && i < n; i++) {
        err = evacuate(c, f, from, twins[i], comps[i], replicas[i], pr);
    }
    return err;
}

int sm_op_node_state(sm_ctx *c, const Twinbft__SmNodeSetState *op) {
    if (!sm_valid_id(op->id) || (op->state != TWINBFT__SM_NODE_STATE__SM_NODE_UP &&
                                 op->state != TWINBFT__SM_NODE_STATE__SM_NODE_DRAINING &&
                                 op->state != TWINBFT__SM_NODE_STATE__SM_NODE_DOWN)) {
        return sm_malformed(c, "node state needs a valid node id and state");
    }
    Twinbft__SmNode *node = NULL;
    int err = sm_node_get(c, op->id, &node);
    if (err == TB_ERR_NOT_FOUND) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_NOT_FOUND, "no node %s", op->id);
    }
    if (err != 0) {
        return err;
    }
    bool agent = (c->roles & SM_ROLE_NODE_AGENT) != 0 && strcmp(node->agent, c->principal) == 0;
    if (!agent && !sm_authz(c, SM_ROLES_MANAGE)) {
        return 0;
    }
    sm_fleet f;
    if ((err = load_fleet(c, &f)) != 0) {
        return err;
    }
    size_t self = fleet_find(&f, op->id);
    TB_ASSERT(self != SIZE_MAX);
    f.c[self].node->state = op->state;
    Twinbft__SmPlacementResult *pr = sm_placement_payload(c);
    if (op->state != TWINBFT__SM_NODE_STATE__SM_NODE_UP) {
        err = evacuate_all(c, &f, self, pr);
    }
    return err != 0 ? err : write_fleet(c, &f, self);
}
