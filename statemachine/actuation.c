/* Actuation approval against per-actuator policy, and the emergency-stop
 * latch.
 *
 * A request is checked in this order, and the first failure is the
 * reason: policy exists, role, e-stop, range, step from the last approved
 * value, minimum interval since the last approval, interlocks. The
 * safe-state command (SmActuate.safe_state) sets the policy's safe value
 * and skips everything after the role check: a latched e-stop must never
 * keep a plant from reaching its safe state. */
#include <string.h>

#include "statemachine/internal.h"

enum { SM_ESTOP_KEY_BYTES = 1 + SM_ID_BYTES_MAX };

static size_t estop_key(uint8_t *buf, int scope, const char *id) {
    size_t n = strlen(id);
    buf[0] = scope == TWINBFT__SM_ESTOP_SCOPE__SM_ESTOP_SITE ? 's' : 't';
    memcpy(buf + 1, id, n);
    return n + 1;
}

/* A latch over the twin: on its site, an ancestor, or itself. */
static int estop_over(sm_ctx *c, const Twinbft__SmTwin *t, bool *latched, const char **where) {
    uint8_t key[SM_ESTOP_KEY_BYTES];
    MDB_val v;
    *where = t->site;
    int err = sm_db_get(c->s, c->txn, SM_T_ESTOP, key,
                        estop_key(key, TWINBFT__SM_ESTOP_SCOPE__SM_ESTOP_SITE, t->site), &v);
    for (size_t i = 0; err == TB_ERR_NOT_FOUND && i <= t->n_ancestors; i++) {
        *where = i < t->n_ancestors ? t->ancestors[i] : t->id;
        err = sm_db_get(c->s, c->txn, SM_T_ESTOP, key,
                        estop_key(key, TWINBFT__SM_ESTOP_SCOPE__SM_ESTOP_TWIN, *where), &v);
    }
    *latched = err == 0;
    return err == TB_ERR_NOT_FOUND ? 0 : err;
}

static bool role_valid(uint32_t r) {
    return r == SM_ROLE_ADMIN || r == SM_ROLE_OPERATOR || r == SM_ROLE_OWNER ||
           r == SM_ROLE_NODE_AGENT;
}

static bool policy_valid(const Twinbft__SmPolicy *p) {
    if (p == NULL || !sm_valid_id(p->twin) || !sm_valid_id(p->property) || p->min > p->max ||
        p->safe_value < p->min || p->safe_value > p->max || !role_valid(p->required_role) ||
        p->n_interlocks > SM_INTERLOCKS_MAX ||
        (p->principal[0] != '\0' && !sm_valid_principal(p->principal))) {
        return false;
    }
    for (size_t i = 0; i < p->n_interlocks; i++) {
        const Twinbft__SmInterlock *il = p->interlocks[i];
        if (!sm_valid_id(il->property) || (il->twin[0] != '\0' && !sm_valid_id(il->twin)) ||
            il->cmp > TWINBFT__SM_CMP__SM_CMP_GE || !sm_valid_text(il->value, SM_TEXT_BYTES_MAX)) {
            return false;
        }
    }
    return true;
}

int sm_op_policy_put(sm_ctx *c, const Twinbft__SmPolicyPut *op) {
    const Twinbft__SmPolicy *p = op->policy;
    if (!policy_valid(p)) {
        return sm_malformed(c,
                            "policy needs valid names, min <= safe value <= max, one role and "
                            "at most %d valid interlocks",
                            SM_INTERLOCKS_MAX);
    }
    if (!sm_authz(c, SM_ROLE_OPERATOR)) {
        return 0;
    }
    Twinbft__SmTwin *t = NULL;
    int err = sm_twin_get(c, p->twin, &t);
    if (err == TB_ERR_NOT_FOUND) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_NOT_FOUND, "no twin %s", p->twin);
    }
    uint8_t key[SM_KEY_BYTES_MAX + 1], prefix[SM_KEY_BYTES_MAX + 1];
    size_t len = sm_key2(key, p->twin, p->property);
    size_t plen = sm_key2(prefix, p->twin, "");
    MDB_val v;
    if (err == 0 &&
        (err = sm_db_get(c->s, c->txn, SM_T_POLICY, key, len, &v)) == TB_ERR_NOT_FOUND) {
        size_t n = 0;
        sm_iter it;
        err = sm_iter_open(c->s, c->txn, SM_T_POLICY, prefix, plen, &it);
        while (err == 0 && (err = sm_iter_next(&it)) == 1) {
            n++;
            err = 0;
        }
        sm_iter_close(&it);
        if (err == 0 && n >= SM_TWIN_POLICIES_MAX) {
            return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_LIMIT, "at most %d actuators per twin",
                           SM_TWIN_POLICIES_MAX);
        }
    }
    return err != 0 ? err : sm_rec_put(c, SM_T_POLICY, key, len, p);
}

int sm_op_policy_remove(sm_ctx *c, const Twinbft__SmPolicyRemove *op) {
    if (!sm_valid_id(op->twin) || !sm_valid_id(op->property)) {
        return sm_malformed(c, "policy needs a valid twin and property");
    }
    if (!sm_authz(c, SM_ROLE_OPERATOR)) {
        return 0;
    }
    uint8_t key[SM_KEY_BYTES_MAX + 1];
    size_t len = sm_key2(key, op->twin, op->property);
    int err = sm_db_del(c->s, c->txn, SM_T_POLICY, key, len);
    if (err == TB_ERR_NOT_FOUND) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_NOT_FOUND, "no policy for %s.%s", op->twin,
                       op->property);
    }
    if (err == 0) {
        err = sm_db_del(c->s, c->txn, SM_T_ACTSTATE, key, len);
    }
    return err == TB_ERR_NOT_FOUND ? 0 : err;
}

/* Strict decimal int64: an optional '-' and 1..19 digits, no overflow. */
static bool parse_i64(const char *s, int64_t *out) {
    bool neg = *s == '-';
    const char *p = s + neg;
    uint64_t v = 0;
    size_t n = 0;
    for (; p[n] != '\0'; n++) {
        if (p[n] < '0' || p[n] > '9' || n >= 19) {
            return false;
        }
        v = v * 10 + (uint64_t)(p[n] - '0');
    }
    if (n == 0 || v > (uint64_t)INT64_MAX + neg) {
        return false;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

static bool compare(const char *have, int cmp, const char *want) {
    if (cmp == TWINBFT__SM_CMP__SM_CMP_EQ || cmp == TWINBFT__SM_CMP__SM_CMP_NE) {
        return (strcmp(have, want) == 0) == (cmp == TWINBFT__SM_CMP__SM_CMP_EQ);
    }
    int64_t a = 0, b = 0;
    if (!parse_i64(have, &a) || !parse_i64(want, &b)) {
        return false;
    }
    switch (cmp) {
    case TWINBFT__SM_CMP__SM_CMP_LT:
        return a < b;
    case TWINBFT__SM_CMP__SM_CMP_LE:
        return a <= b;
    case TWINBFT__SM_CMP__SM_CMP_GT:
        return a > b;
    default:
        return a >= b;
    }
}

/* The first interlock that does not hold on reported properties, or NULL. */
static int interlock_failing(sm_ctx *c, const Twinbft__SmPolicy *p,
                             const Twinbft__SmInterlock **out) {
    *out = NULL;
    for (size_t i = 0; i < p->n_interlocks; i++) {
        const Twinbft__SmInterlock *il = p->interlocks[i];
        const char *twin = il->twin[0] != '\0' ? il->twin : p->twin;
        Twinbft__SmShadow *sh = NULL;
        int err = sm_rec_get(c, SM_T_SHADOW, twin, strlen(twin), &twinbft__sm_shadow__descriptor,
                             (void **)&sh);
        if (err != 0 && err != TB_ERR_NOT_FOUND) {
            return err;
        }
        const char *have = sh ? sm_props_find(sh->reported, sh->n_reported, il->property) : NULL;
        if (have == NULL || !compare(have, (int)il->cmp, il->value)) {
            *out = il;
            return 0;
        }
    }
    return 0;
}

/* Range, step and interval of a normal (not safe-state) request. */
static bool limits_hold(sm_ctx *c, const Twinbft__SmPolicy *p, const Twinbft__SmActuatorState *st,
                        int64_t v) {
    if (v < p->min || v > p->max) {
        sm_deny(c, TWINBFT__SM_REASON__SM_REASON_RANGE, "%lld is outside [%lld, %lld]",
                (long long)v, (long long)p->min, (long long)p->max);
        return false;
    }
    if (st->approvals > 0 && p->max_step > 0) {
        /* Unsigned difference of two's-complement values: exact for any pair. */
        uint64_t step = v >= st->last_value ? (uint64_t)v - (uint64_t)st->last_value
                                            : (uint64_t)st->last_value - (uint64_t)v;
        if (step > p->max_step) {
            sm_deny(c, TWINBFT__SM_REASON__SM_REASON_STEP, "step %llu from %lld exceeds %llu",
                    (unsigned long long)step, (long long)st->last_value,
                    (unsigned long long)p->max_step);
            return false;
        }
    }
    if (st->approvals > 0 && p->min_interval_ms > 0 && c->time_ms >= st->last_time_ms &&
        c->time_ms - st->last_time_ms < p->min_interval_ms) {
        sm_deny(c, TWINBFT__SM_REASON__SM_REASON_INTERVAL,
                "%llu ms since the last approval, needs %llu",
                (unsigned long long)(c->time_ms - st->last_time_ms),
                (unsigned long long)p->min_interval_ms);
        return false;
    }
    return true;
}

/* The policy's required role (an owner must own the twin's subtree); the
 * safe-state command is open to operators as well. */
static bool actuate_allowed(sm_ctx *c, const Twinbft__SmPolicy *p, const Twinbft__SmTwin *t,
                            bool safe, int *err) {
    if (safe && (c->roles & SM_ROLE_OPERATOR) != 0) {
        return true;
    }
    if ((uint32_t)p->required_role == SM_ROLE_OWNER) {
        return sm_authz_twin(c, 0, true, t, err);
    }
    return sm_authz(c, p->required_role);
}

static int approve(sm_ctx *c, const Twinbft__SmPolicy *p, const Twinbft__SmTwin *t,
                   Twinbft__SmActuatorState *st, int64_t v, bool safe) {
    uint8_t key[SM_KEY_BYTES_MAX + 1];
    size_t len = sm_key2(key, p->twin, p->property);
    st->last_value = v;
    st->last_time_ms = c->time_ms;
    st->last_seq = c->seq;
    st->approvals++;
    char text[24];
    snprintf(text, sizeof text, "%lld", (long long)v);
    int err = sm_rec_put(c, SM_T_ACTSTATE, key, len, st);
    if (err == 0) {
        err = sm_shadow_desire_one(c, p->twin, p->property, text);
    }
    Twinbft__SmCommand *cmd = sm_arena_alloc(c->arena, sizeof *cmd);
    twinbft__sm_command__init(cmd);
    cmd->to = p->principal[0] != '\0' ? p->principal : t->owner;
    cmd->twin = p->twin;
    cmd->property = p->property;
    cmd->value = v;
    cmd->safe_state = safe;
    c->ttl_ms = p->ttl_ms > 0 ? p->ttl_ms : SM_COMMAND_TTL_MS_DEFAULT;
    cmd->not_before_ms = c->time_ms;
    cmd->expires_at_ms = c->time_ms + c->ttl_ms;
    cmd->nonce = c->seq;
    cmd->index = c->index;
    c->res->payload_case = TWINBFT__SM_RESULT__PAYLOAD_COMMAND;
    c->res->command = cmd;
    return err;
}

/* Checks a normal request past the role: e-stop, limits, interlocks. */
static int actuate_checks(sm_ctx *c, const Twinbft__SmPolicy *p, const Twinbft__SmTwin *t,
                          const Twinbft__SmActuatorState *st, int64_t v, bool *ok) {
    bool latched = false;
    const char *where = NULL;
    const Twinbft__SmInterlock *il = NULL;
    *ok = false;
    int err = estop_over(c, t, &latched, &where);
    if (err != 0) {
        return err;
    }
    if (latched) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_ESTOP, "emergency stop latched on %s",
                       where);
    }
    if (!limits_hold(c, p, st, v) || (err = interlock_failing(c, p, &il)) != 0) {
        return err;
    }
    if (il != NULL) {
        sm_deny(c, TWINBFT__SM_REASON__SM_REASON_INTERLOCK, "interlock on %s.%s does not hold",
                il->twin[0] != '\0' ? il->twin : p->twin, il->property);
        c->res->payload_case = TWINBFT__SM_RESULT__PAYLOAD_INTERLOCK;
        c->res->interlock = (Twinbft__SmInterlock *)il;
        return 0;
    }
    *ok = true;
    return 0;
}

int sm_op_actuate(sm_ctx *c, const Twinbft__SmActuate *op) {
    if (!sm_valid_id(op->twin) || !sm_valid_id(op->property)) {
        return sm_malformed(c, "actuation needs a valid twin and property");
    }
    uint8_t key[SM_KEY_BYTES_MAX + 1];
    size_t len = sm_key2(key, op->twin, op->property);
    Twinbft__SmPolicy *p = NULL;
    Twinbft__SmTwin *t = NULL;
    int err = sm_rec_get(c, SM_T_POLICY, key, len, &twinbft__sm_policy__descriptor, (void **)&p);
    if (err == TB_ERR_NOT_FOUND) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_NO_POLICY, "no policy for %s.%s", op->twin,
                       op->property);
    }
    if (err == 0 && (err = sm_twin_get(c, op->twin, &t)) == TB_ERR_NOT_FOUND) {
        err = TB_ERR_IO; /* retiring a twin removes its policies */
    }
    if (err != 0 || !actuate_allowed(c, p, t, op->safe_state, &err)) {
        return err;
    }
    Twinbft__SmActuatorState *st = NULL;
    err = sm_rec_get(c, SM_T_ACTSTATE, key, len, &twinbft__sm_actuator_state__descriptor,
                     (void **)&st);
    if (err == TB_ERR_NOT_FOUND) {
        st = sm_arena_alloc(c->arena, sizeof *st);
        twinbft__sm_actuator_state__init(st);
    } else if (err != 0) {
        return err;
    }
    if (op->safe_state) {
        return approve(c, p, t, st, p->safe_value, true);
    }
    bool ok = false;
    if ((err = actuate_checks(c, p, t, st, op->value, &ok)) != 0 || !ok) {
        return err;
    }
    return approve(c, p, t, st, op->value, false);
}

int sm_op_estop_latch(sm_ctx *c, const Twinbft__SmEstopLatch *op) {
    bool site = op->scope == TWINBFT__SM_ESTOP_SCOPE__SM_ESTOP_SITE;
    if ((!site && op->scope != TWINBFT__SM_ESTOP_SCOPE__SM_ESTOP_TWIN) || !sm_valid_id(op->id) ||
        !sm_valid_text(op->reason, SM_TEXT_BYTES_MAX)) {
        return sm_malformed(c, "e-stop needs a scope, a valid id and a short reason");
    }
    MDB_val v;
    Twinbft__SmTwin *t = NULL;
    int err = site ? sm_db_get(c->s, c->txn, SM_T_SITE, op->id, strlen(op->id), &v)
                   : sm_twin_get(c, op->id, &t);
    if (err == TB_ERR_NOT_FOUND) {
        return sm_deny(c,
                       site ? TWINBFT__SM_REASON__SM_REASON_SITE_MISSING
                            : TWINBFT__SM_REASON__SM_REASON_NOT_FOUND,
                       "no %s %s", site ? "site" : "twin", op->id);
    }
    /* Anyone who may run the plant may stop it; an owner its own subtree. */
    if (err != 0 || (site ? !sm_authz(c, SM_ROLES_MANAGE)
                          : !sm_authz_twin(c, SM_ROLES_MANAGE, true, t, &err))) {
        return err;
    }
    uint8_t key[SM_ESTOP_KEY_BYTES];
    size_t len = estop_key(key, (int)op->scope, op->id);
    if ((err = sm_db_get(c->s, c->txn, SM_T_ESTOP, key, len, &v)) == 0) {
        return sm_result(c, SM_OK, TWINBFT__SM_REASON__SM_REASON_NONE, "already latched");
    }
    if (err != TB_ERR_NOT_FOUND) {
        return err;
    }
    Twinbft__SmEstop e = TWINBFT__SM_ESTOP__INIT;
    e.scope = op->scope;
    e.id = op->id;
    e.by = (char *)c->principal;
    e.reason = op->reason;
    e.seq = c->seq;
    e.time_ms = c->time_ms;
    return sm_rec_put(c, SM_T_ESTOP, key, len, &e);
}

int sm_op_estop_reset(sm_ctx *c, const Twinbft__SmEstopReset *op) {
    if ((op->scope != TWINBFT__SM_ESTOP_SCOPE__SM_ESTOP_SITE &&
         op->scope != TWINBFT__SM_ESTOP_SCOPE__SM_ESTOP_TWIN) ||
        !sm_valid_id(op->id)) {
        return sm_malformed(c, "e-stop reset needs a scope and a valid id");
    }
    /* Only an operator may reset: not an admin, not an owner. */
    if (!sm_authz(c, SM_ROLE_OPERATOR)) {
        return 0;
    }
    uint8_t key[SM_ESTOP_KEY_BYTES];
    size_t len = estop_key(key, (int)op->scope, op->id);
    int err = sm_db_del(c->s, c->txn, SM_T_ESTOP, key, len);
    if (err == TB_ERR_NOT_FOUND) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_NOT_FOUND, "no e-stop latched on %s",
                       op->id);
    }
    return err;
}

int sm_twin_forget(sm_ctx *c, const char *twin) {
    uint8_t key[SM_KEY_BYTES_MAX + 1];
    size_t len = sm_key2(key, twin, "");
    int err = sm_db_del_prefix(c->s, c->txn, SM_T_POLICY, key, len);
    if (err == 0) {
        err = sm_db_del_prefix(c->s, c->txn, SM_T_ACTSTATE, key, len);
    }
    if (err == 0) {
        len = estop_key(key, TWINBFT__SM_ESTOP_SCOPE__SM_ESTOP_TWIN, twin);
        err = sm_db_del(c->s, c->txn, SM_T_ESTOP, key, len);
    }
    if (err == 0 || err == TB_ERR_NOT_FOUND) {
        err = sm_db_del(c->s, c->txn, SM_T_SHADOW, twin, strlen(twin));
    }
    return err == TB_ERR_NOT_FOUND ? 0 : err;
}
