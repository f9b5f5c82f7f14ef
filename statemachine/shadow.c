/* The device shadow: reported properties (written by the twin's owner),
 * desired properties (written by operators and by approved commands),
 * each side with its own version. The delta is computed by queries. */
#include <string.h>

#include "statemachine/internal.h"

const char *sm_props_find(Twinbft__SmProperty *const *props, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++) {
        if (strcmp(props[i]->name, name) == 0) {
            return props[i]->value;
        }
    }
    return NULL;
}

static int shadow_load(sm_ctx *c, const char *twin, Twinbft__SmShadow **out) {
    int err = sm_rec_get(c, SM_T_SHADOW, twin, strlen(twin), &twinbft__sm_shadow__descriptor,
                         (void **)out);
    if (err == TB_ERR_NOT_FOUND) {
        *out = sm_arena_alloc(c->arena, sizeof **out);
        twinbft__sm_shadow__init(*out);
        (*out)->twin = (char *)twin;
        err = 0;
    }
    return err;
}

/* One side of a shadow as a sorted array with room to grow. */
typedef struct sm_props {
    Twinbft__SmProperty **p;
    size_t n, cap;
} sm_props;

static void props_open(sm_ctx *c, sm_props *ps, Twinbft__SmProperty **p, size_t n, size_t more) {
    ps->cap = n + more;
    ps->p = sm_arena_alloc(c->arena, (ps->cap ? ps->cap : 1) * sizeof *ps->p);
    if (n > 0) {
        memcpy(ps->p, p, n * sizeof *p);
    }
    ps->n = n;
}

static void props_remove(sm_props *ps, const char *name) {
    for (size_t i = 0; i < ps->n; i++) {
        if (strcmp(ps->p[i]->name, name) == 0) {
            memmove(&ps->p[i], &ps->p[i + 1], (ps->n - i - 1) * sizeof *ps->p);
            ps->n--;
            return;
        }
    }
}

/* Inserts or replaces, keeping the array sorted by name (strcmp). */
static void props_set(sm_props *ps, Twinbft__SmProperty *prop) {
    size_t i = 0;
    while (i < ps->n && strcmp(ps->p[i]->name, prop->name) < 0) {
        i++;
    }
    if (i < ps->n && strcmp(ps->p[i]->name, prop->name) == 0) {
        ps->p[i] = prop;
        return;
    }
    TB_ASSERT(ps->n < ps->cap);
    memmove(&ps->p[i + 1], &ps->p[i], (ps->n - i) * sizeof *ps->p);
    ps->p[i] = prop;
    ps->n++;
}

static bool changes_valid(Twinbft__SmProperty *const *set, size_t n_set, char *const *remove,
                          size_t n_remove) {
    if (n_set + n_remove > SM_SHADOW_CHANGES_MAX) {
        return false;
    }
    for (size_t i = 0; i < n_set; i++) {
        if (!sm_valid_id(set[i]->name) || !sm_valid_text(set[i]->value, SM_TEXT_BYTES_MAX)) {
            return false;
        }
    }
    for (size_t i = 0; i < n_remove; i++) {
        if (!sm_valid_id(remove[i])) {
            return false;
        }
    }
    return true;
}

/* Applies removals, then sets (in op order, so the last set of a name
 * wins) to one side; false when it would exceed SM_SHADOW_PROPS_MAX. */
static bool merge(sm_ctx *c, Twinbft__SmProperty ***side, size_t *n_side, Twinbft__SmProperty **set,
                  size_t n_set, char **remove, size_t n_remove) {
    sm_props ps;
    props_open(c, &ps, *side, *n_side, n_set);
    for (size_t i = 0; i < n_remove; i++) {
        props_remove(&ps, remove[i]);
    }
    for (size_t i = 0; i < n_set; i++) {
        props_set(&ps, set[i]);
    }
    if (ps.n > SM_SHADOW_PROPS_MAX) {
        sm_deny(c, TWINBFT__SM_REASON__SM_REASON_LIMIT, "a shadow holds at most %d properties",
                SM_SHADOW_PROPS_MAX);
        return false;
    }
    *side = ps.p;
    *n_side = ps.n;
    return true;
}

/* The twin must exist; sets the denial otherwise. */
static bool twin_exists(sm_ctx *c, const char *id, Twinbft__SmTwin **t, int *err) {
    *err = sm_twin_get(c, id, t);
    if (*err == TB_ERR_NOT_FOUND) {
        *err = 0;
        sm_deny(c, TWINBFT__SM_REASON__SM_REASON_NOT_FOUND, "no twin %s", id);
        return false;
    }
    return *err == 0;
}

static int shadow_store(sm_ctx *c, Twinbft__SmShadow *sh) {
    c->res->payload_case = TWINBFT__SM_RESULT__PAYLOAD_SHADOW;
    c->res->shadow = sh;
    return sm_rec_put(c, SM_T_SHADOW, sh->twin, strlen(sh->twin), sh);
}

int sm_op_shadow_report(sm_ctx *c, const Twinbft__SmShadowReport *op) {
    if (!sm_valid_id(op->twin) || !changes_valid(op->set, op->n_set, op->remove, op->n_remove)) {
        return sm_malformed(c, "report needs a valid twin and at most %d valid changes",
                            SM_SHADOW_CHANGES_MAX);
    }
    Twinbft__SmTwin *t = NULL;
    Twinbft__SmShadow *sh = NULL;
    int err = 0;
    /* Reported state is the device's word: only the owner writes it. */
    if (!twin_exists(c, op->twin, &t, &err) || !sm_authz_twin(c, 0, true, t, &err) ||
        (err = shadow_load(c, op->twin, &sh)) != 0) {
        return err;
    }
    if (!merge(c, &sh->reported, &sh->n_reported, op->set, op->n_set, op->remove, op->n_remove)) {
        return 0;
    }
    sh->reported_version++;
    return shadow_store(c, sh);
}

int sm_op_shadow_desire(sm_ctx *c, const Twinbft__SmShadowDesire *op) {
    if (!sm_valid_id(op->twin) || !changes_valid(op->set, op->n_set, op->remove, op->n_remove)) {
        return sm_malformed(c, "desire needs a valid twin and at most %d valid changes",
                            SM_SHADOW_CHANGES_MAX);
    }
    Twinbft__SmTwin *t = NULL;
    Twinbft__SmShadow *sh = NULL;
    int err = 0;
    if (!sm_authz(c, SM_ROLE_OPERATOR) || !twin_exists(c, op->twin, &t, &err) ||
        (err = shadow_load(c, op->twin, &sh)) != 0) {
        return err;
    }
    if (!merge(c, &sh->desired, &sh->n_desired, op->set, op->n_set, op->remove, op->n_remove)) {
        return 0;
    }
    sh->desired_version++;
    return shadow_store(c, sh);
}

int sm_shadow_desire_one(sm_ctx *c, const char *twin, const char *name, const char *value) {
    Twinbft__SmShadow *sh = NULL;
    int err = shadow_load(c, twin, &sh);
    if (err != 0) {
        return err;
    }
    Twinbft__SmProperty *prop = sm_arena_alloc(c->arena, sizeof *prop);
    twinbft__sm_property__init(prop);
    prop->name = sm_arena_strndup(c->arena, name, strlen(name));
    prop->value = sm_arena_strndup(c->arena, value, strlen(value));
    sm_props ps;
    props_open(c, &ps, sh->desired, sh->n_desired, 1);
    props_set(&ps, prop);
    if (ps.n > SM_SHADOW_PROPS_MAX) {
        return 0; /* the shadow is full: the approved command still stands */
    }
    sh->desired = ps.p;
    sh->n_desired = ps.n;
    sh->desired_version++;
    return sm_rec_put(c, SM_T_SHADOW, twin, strlen(twin), sh);
}
