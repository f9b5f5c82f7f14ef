/* Twins (site > line > machine > component) and their components, the
 * workloads that placement puts on nodes. */
#include <string.h>

#include "statemachine/internal.h"

int sm_comp_get(sm_ctx *c, const char *twin, const char *name, Twinbft__SmComponent **out) {
    uint8_t key[SM_KEY_BYTES_MAX + 1];
    size_t len = sm_key2(key, twin, name);
    return sm_rec_get(c, SM_T_COMP, key, len, &twinbft__sm_component__descriptor, (void **)out);
}

static bool twin_create_valid(const Twinbft__SmTwinCreate *op) {
    if (!sm_valid_id(op->id) || !sm_valid_principal(op->owner) ||
        op->kind < TWINBFT__SM_TWIN_KIND__SM_TWIN_KIND_SITE ||
        op->kind > TWINBFT__SM_TWIN_KIND__SM_TWIN_KIND_COMPONENT) {
        return false;
    }
    if (op->kind == TWINBFT__SM_TWIN_KIND__SM_TWIN_KIND_SITE) {
        return op->parent[0] == '\0' && sm_valid_id(op->site);
    }
    return sm_valid_id(op->parent);
}

/* Authorises a create and finds where the twin goes: its parent, NULL for
 * a site-level twin (whose site must exist). Returns false when the op is
 * denied (result set) or on a local fault (*err). */
static bool twin_create_check(sm_ctx *c, const Twinbft__SmTwinCreate *op,
                              Twinbft__SmTwin **parent_out, int *err) {
    Twinbft__SmTwin *parent = NULL;
    *parent_out = NULL;
    if (op->kind == TWINBFT__SM_TWIN_KIND__SM_TWIN_KIND_SITE) {
        /* Site-level twins are plant structure: not an owner's to add. */
        if (!sm_authz(c, SM_ROLES_MANAGE)) {
            return false;
        }
    } else {
        *err = sm_twin_get(c, op->parent, &parent);
        if (*err == TB_ERR_NOT_FOUND) {
            *err = 0;
            sm_deny(c, TWINBFT__SM_REASON__SM_REASON_PARENT_MISSING, "no parent twin %s",
                    op->parent);
            return false;
        }
        if (*err != 0 || !sm_authz_twin(c, SM_ROLES_MANAGE, true, parent, err)) {
            return false;
        }
    }
    MDB_val v;
    *err = sm_db_get(c->s, c->txn, SM_T_TWIN, op->id, strlen(op->id), &v);
    if (*err != TB_ERR_NOT_FOUND) {
        if (*err == 0) {
            sm_deny(c, TWINBFT__SM_REASON__SM_REASON_EXISTS, "twin %s exists", op->id);
        }
        return false;
    }
    *err = 0;
    if (parent != NULL && (int)parent->kind + 1 != (int)op->kind) {
        sm_deny(c, TWINBFT__SM_REASON__SM_REASON_BAD_KIND,
                "a twin of kind %d cannot be a child of kind %d", (int)op->kind, (int)parent->kind);
        return false;
    }
    if (parent == NULL) {
        *err = sm_db_get(c->s, c->txn, SM_T_SITE, op->site, strlen(op->site), &v);
        if (*err == TB_ERR_NOT_FOUND) {
            *err = 0;
            sm_deny(c, TWINBFT__SM_REASON__SM_REASON_SITE_MISSING, "no site %s", op->site);
            return false;
        }
        return *err == 0;
    }
    *parent_out = parent;
    return true;
}

/* The new twin's chain: its parent's ancestors and owners, extended. */
static void twin_chain(sm_ctx *c, Twinbft__SmTwin *t, const Twinbft__SmTwin *parent) {
    size_t n = parent ? parent->n_ancestors + 1 : 0;
    TB_ASSERT(n < SM_TWIN_DEPTH_MAX);
    t->ancestors = sm_arena_alloc(c->arena, (n + 1) * sizeof *t->ancestors);
    t->owners = sm_arena_alloc(c->arena, (n + 1) * sizeof *t->owners);
    for (size_t i = 0; parent != NULL && i < parent->n_ancestors; i++) {
        t->ancestors[i] = parent->ancestors[i];
        t->owners[i] = parent->owners[i];
    }
    if (parent != NULL) {
        TB_ASSERT(parent->n_owners == n);
        t->ancestors[n - 1] = parent->id;
        t->owners[n - 1] = parent->owner;
    }
    t->n_ancestors = n;
    t->owners[n] = t->owner;
    t->n_owners = n + 1;
}

int sm_op_twin_create(sm_ctx *c, const Twinbft__SmTwinCreate *op) {
    if (!twin_create_valid(op)) {
        return sm_malformed(c, "twin needs a valid id, owner and kind; a parent unless it is a "
                               "site twin, which names a site instead");
    }
    Twinbft__SmTwin *parent = NULL;
    int err = 0;
    if (!twin_create_check(c, op, &parent, &err)) {
        return err;
    }
    const char *site = parent ? parent->site : op->site;
    Twinbft__SmTwin t = TWINBFT__SM_TWIN__INIT;
    t.id = op->id;
    t.kind = op->kind;
    t.parent = op->parent;
    t.site = (char *)site;
    t.owner = op->owner;
    t.created_seq = c->seq;
    twin_chain(c, &t, parent);
    if ((err = sm_rec_put(c, SM_T_TWIN, t.id, strlen(t.id), &t)) != 0) {
        return err;
    }
    if (op->kind == TWINBFT__SM_TWIN_KIND__SM_TWIN_KIND_SITE &&
        (err = sm_site_count(c, site, 0, 1)) != 0) {
        return err;
    }
    /* Site-level twins are indexed as children of "" so that they can be listed. */
    uint8_t key[SM_KEY_BYTES_MAX + 1];
    size_t len = sm_key2(key, op->parent, op->id);
    return sm_db_put(c->s, c->txn, SM_T_CHILD, key, len, "", 0);
}

/* The names of a twin's components, in key order (at most
 * SM_TWIN_COMPONENTS_MAX), copied into the arena. */
int sm_comp_names(sm_ctx *c, const char *twin, char **names, size_t *n) {
    uint8_t prefix[SM_KEY_BYTES_MAX + 1];
    size_t plen = sm_key2(prefix, twin, "");
    sm_iter it;
    int err = sm_iter_open(c->s, c->txn, SM_T_COMP, prefix, plen, &it);
    *n = 0;
    while (err == 0 && (err = sm_iter_next(&it)) == 1) {
        TB_ASSERT(*n < SM_TWIN_COMPONENTS_MAX);
        names[(*n)++] =
            sm_arena_strndup(c->arena, (const uint8_t *)it.k.mv_data + plen, it.k.mv_size - plen);
        err = 0;
    }
    sm_iter_close(&it);
    return err;
}

/* Removes the twin's components (and their placements) and everything
 * else that hangs off it. */
static int twin_cascade(sm_ctx *c, const Twinbft__SmTwin *t) {
    char *names[SM_TWIN_COMPONENTS_MAX];
    size_t n = 0;
    int err = sm_comp_names(c, t->id, names, &n);
    Twinbft__SmPlacementResult *pr = sm_placement_payload(c);
    for (size_t i = 0; err == 0 && i < n; i++) {
        uint8_t key[SM_KEY_BYTES_MAX + 1];
        size_t len = sm_key2(key, t->id, names[i]);
        err = sm_unplace_component(c, t->id, names[i], pr);
        if (err == 0) {
            err = sm_db_del(c->s, c->txn, SM_T_COMP, key, len);
        }
    }
    return err != 0 ? err : sm_twin_forget(c, t->id);
}

int sm_op_twin_retire(sm_ctx *c, const Twinbft__SmTwinRetire *op) {
    if (!sm_valid_id(op->id)) {
        return sm_malformed(c, "twin id is not valid");
    }
    Twinbft__SmTwin *t = NULL;
    int err = sm_twin_get(c, op->id, &t);
    if (err == TB_ERR_NOT_FOUND) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_NOT_FOUND, "no twin %s", op->id);
    }
    if (err != 0 || !sm_authz_twin(c, SM_ROLES_MANAGE, true, t, &err)) {
        return err;
    }
    uint8_t key[SM_KEY_BYTES_MAX + 1];
    size_t len = sm_key2(key, t->id, "");
    bool children = false;
    if ((err = sm_db_has_prefix(c->s, c->txn, SM_T_CHILD, key, len, &children)) != 0) {
        return err;
    }
    if (children) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_HAS_CHILDREN, "twin %s has live children",
                       t->id);
    }
    if ((err = twin_cascade(c, t)) != 0) {
        return err;
    }
    if (t->kind == TWINBFT__SM_TWIN_KIND__SM_TWIN_KIND_SITE) {
        err = sm_site_count(c, t->site, 0, -1);
    }
    len = sm_key2(key, t->parent, t->id);
    if (err == 0) {
        err = sm_db_del(c->s, c->txn, SM_T_CHILD, key, len);
    }
    return err != 0 ? err : sm_db_del(c->s, c->txn, SM_T_TWIN, t->id, strlen(t->id));
}

static bool component_valid(const Twinbft__SmComponentPut *op) {
    return sm_valid_id(op->twin) && sm_valid_id(op->name) &&
           (op->tier == TWINBFT__SM_TIER__SM_TIER_ANY ||
            op->tier == TWINBFT__SM_TIER__SM_TIER_EDGE ||
            op->tier == TWINBFT__SM_TIER__SM_TIER_CLOUD) &&
           (op->zone[0] == '\0' || sm_valid_id(op->zone)) && op->max_replicas >= 1 &&
           op->min_replicas <= op->max_replicas && op->max_replicas <= SM_COMPONENT_REPLICAS_MAX;
}

/* The twin's other components must leave room for this one. */
static int component_budget(sm_ctx *c, const Twinbft__SmComponentPut *op, bool *fits) {
    char *names[SM_TWIN_COMPONENTS_MAX];
    size_t n = 0;
    int err = sm_comp_names(c, op->twin, names, &n);
    size_t count = 1, replicas = op->max_replicas;
    for (size_t i = 0; err == 0 && i < n; i++) {
        if (strcmp(names[i], op->name) == 0) {
            continue;
        }
        Twinbft__SmComponent *other = NULL;
        err = sm_comp_get(c, op->twin, names[i], &other);
        count++;
        replicas += err == 0 ? other->max_replicas : 0;
    }
    *fits = count <= SM_TWIN_COMPONENTS_MAX && replicas <= SM_TWIN_REPLICAS_MAX;
    return err;
}

int sm_op_component_put(sm_ctx *c, const Twinbft__SmComponentPut *op) {
    if (!component_valid(op)) {
        return sm_malformed(c,
                            "component needs valid names, tier and zone, and 1 <= max "
                            "replicas <= %d with min <= max",
                            SM_COMPONENT_REPLICAS_MAX);
    }
    Twinbft__SmTwin *t = NULL;
    int err = sm_twin_get(c, op->twin, &t);
    if (err == TB_ERR_NOT_FOUND) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_NOT_FOUND, "no twin %s", op->twin);
    }
    if (err != 0 || !sm_authz_twin(c, SM_ROLES_MANAGE, true, t, &err)) {
        return err;
    }
    uint8_t key[SM_KEY_BYTES_MAX + 1];
    size_t len = sm_key2(key, op->twin, op->name);
    key[len++] = 0; /* the prefix of the component's placements */
    bool placed = false, fits = false;
    if ((err = sm_db_has_prefix(c->s, c->txn, SM_T_PLACE, key, len, &placed)) != 0) {
        return err;
    }
    if (placed) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_IN_USE,
                       "component %s of %s has placed replicas (scale it in or remove it first)",
                       op->name, op->twin);
    }
    if ((err = component_budget(c, op, &fits)) != 0) {
        return err;
    }
    if (!fits) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_LIMIT,
                       "a twin has at most %d components and %d replicas in all",
                       SM_TWIN_COMPONENTS_MAX, SM_TWIN_REPLICAS_MAX);
    }
    Twinbft__SmComponent comp = TWINBFT__SM_COMPONENT__INIT;
    comp.twin = op->twin;
    comp.name = op->name;
    comp.cpu_millicores = op->cpu_millicores;
    comp.memory_mib = op->memory_mib;
    comp.tier = op->tier;
    comp.zone = op->zone;
    comp.max_latency_ms = op->max_latency_ms;
    comp.min_replicas = op->min_replicas;
    comp.max_replicas = op->max_replicas;
    comp.desired_replicas = op->min_replicas;
    len = sm_key2(key, op->twin, op->name);
    return sm_rec_put(c, SM_T_COMP, key, len, &comp);
}

int sm_op_component_remove(sm_ctx *c, const Twinbft__SmComponentRemove *op) {
    if (!sm_valid_id(op->twin) || !sm_valid_id(op->name)) {
        return sm_malformed(c, "component needs a valid twin and name");
    }
    Twinbft__SmTwin *t = NULL;
    Twinbft__SmComponent *comp = NULL;
    int err = sm_twin_get(c, op->twin, &t);
    if (err == 0) {
        err = sm_comp_get(c, op->twin, op->name, &comp);
    }
    if (err == TB_ERR_NOT_FOUND) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_NOT_FOUND, "no component %s of twin %s",
                       op->name, op->twin);
    }
    if (err != 0 || !sm_authz_twin(c, SM_ROLES_MANAGE, true, t, &err)) {
        return err;
    }
    if ((err = sm_unplace_component(c, op->twin, op->name, sm_placement_payload(c))) != 0) {
        return err;
    }
    uint8_t key[SM_KEY_BYTES_MAX + 1];
    size_t len = sm_key2(key, op->twin, op->name);
    return sm_db_del(c->s, c->txn, SM_T_COMP, key, len);
}
