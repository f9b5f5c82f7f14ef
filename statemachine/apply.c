/* sm_apply: decode one op, authorise and execute it, then record its event.
 * Handlers fill the result (a denial is a result) and return a negative
 * tb_err only for local faults. */
#include <string.h>

#include "statemachine/internal.h"

/* Runs the handler of the op's case; the result is in c->res afterwards. */
static int dispatch(sm_ctx *c, const Twinbft__SmOp *op) {
    switch (op->op_case) {
    case TWINBFT__SM_OP__OP_ACL_GRANT:
        return sm_op_acl_grant(c, op->acl_grant);
    case TWINBFT__SM_OP__OP_ACL_REVOKE:
        return sm_op_acl_revoke(c, op->acl_revoke);
    case TWINBFT__SM_OP__OP_SITE_PUT:
        return sm_op_site_put(c, op->site_put);
    case TWINBFT__SM_OP__OP_SITE_RETIRE:
        return sm_op_site_retire(c, op->site_retire);
    case TWINBFT__SM_OP__OP_NODE_PUT:
        return sm_op_node_put(c, op->node_put);
    case TWINBFT__SM_OP__OP_NODE_RETIRE:
        return sm_op_node_retire(c, op->node_retire);
    case TWINBFT__SM_OP__OP_NODE_STATE:
        return sm_op_node_state(c, op->node_state);
    case TWINBFT__SM_OP__OP_TWIN_CREATE:
        return sm_op_twin_create(c, op->twin_create);
    case TWINBFT__SM_OP__OP_TWIN_RETIRE:
        return sm_op_twin_retire(c, op->twin_retire);
    case TWINBFT__SM_OP__OP_COMPONENT_PUT:
        return sm_op_component_put(c, op->component_put);
    case TWINBFT__SM_OP__OP_COMPONENT_REMOVE:
        return sm_op_component_remove(c, op->component_remove);
    case TWINBFT__SM_OP__OP_PLACE:
        return sm_op_place(c, op->place);
    case TWINBFT__SM_OP__OP_SCALE:
        return sm_op_scale(c, op->scale);
    case TWINBFT__SM_OP__OP_CONFIG_PUT:
        return sm_op_config_put(c, op->config_put);
    case TWINBFT__SM_OP__OP_CONFIG_DELETE:
        return sm_op_config_delete(c, op->config_delete);
    case TWINBFT__SM_OP__OP_POLICY_PUT:
        return sm_op_policy_put(c, op->policy_put);
    case TWINBFT__SM_OP__OP_POLICY_REMOVE:
        return sm_op_policy_remove(c, op->policy_remove);
    case TWINBFT__SM_OP__OP_ACTUATE:
        return sm_op_actuate(c, op->actuate);
    case TWINBFT__SM_OP__OP_ESTOP_LATCH:
        return sm_op_estop_latch(c, op->estop_latch);
    case TWINBFT__SM_OP__OP_ESTOP_RESET:
        return sm_op_estop_reset(c, op->estop_reset);
    case TWINBFT__SM_OP__OP_SHADOW_REPORT:
        return sm_op_shadow_report(c, op->shadow_report);
    case TWINBFT__SM_OP__OP_SHADOW_DESIRE:
        return sm_op_shadow_desire(c, op->shadow_desire);
    case TWINBFT__SM_OP__OP_QUERY:
        return sm_op_query(c, op->query);
    case TWINBFT__SM_OP__OP_IDENTITY_REVOKE:
        return sm_op_identity_revoke(c, op->identity_revoke);
    default:
        return sm_malformed(c, "op has no operation set");
    }
}

/* The twin an op is about, for the history index (NULL: none). */
static const char *twin_of(const Twinbft__SmOp *op) {
    switch (op->op_case) {
    case TWINBFT__SM_OP__OP_TWIN_CREATE:
        return op->twin_create->id;
    case TWINBFT__SM_OP__OP_TWIN_RETIRE:
        return op->twin_retire->id;
    case TWINBFT__SM_OP__OP_COMPONENT_PUT:
        return op->component_put->twin;
    case TWINBFT__SM_OP__OP_COMPONENT_REMOVE:
        return op->component_remove->twin;
    case TWINBFT__SM_OP__OP_PLACE:
        return op->place->twin;
    case TWINBFT__SM_OP__OP_SCALE:
        return op->scale->twin;
    case TWINBFT__SM_OP__OP_POLICY_PUT:
        return op->policy_put->policy ? op->policy_put->policy->twin : NULL;
    case TWINBFT__SM_OP__OP_POLICY_REMOVE:
        return op->policy_remove->twin;
    case TWINBFT__SM_OP__OP_ACTUATE:
        return op->actuate->twin;
    case TWINBFT__SM_OP__OP_ESTOP_LATCH:
        return op->estop_latch->scope == TWINBFT__SM_ESTOP_SCOPE__SM_ESTOP_TWIN
                   ? op->estop_latch->id
                   : NULL;
    case TWINBFT__SM_OP__OP_ESTOP_RESET:
        return op->estop_reset->scope == TWINBFT__SM_ESTOP_SCOPE__SM_ESTOP_TWIN
                   ? op->estop_reset->id
                   : NULL;
    case TWINBFT__SM_OP__OP_SHADOW_REPORT:
        return op->shadow_report->twin;
    case TWINBFT__SM_OP__OP_SHADOW_DESIRE:
        return op->shadow_desire->twin;
    default:
        return NULL;
    }
}

/* Decodes the op and runs it. */
static int execute(sm_ctx *c, const uint8_t *op_bytes, size_t op_len) {
    if (op_len > SM_OP_BYTES_MAX) {
        return sm_malformed(c, "op of %zu bytes exceeds %d", op_len, SM_OP_BYTES_MAX);
    }
    Twinbft__SmOp *op = twinbft__sm_op__unpack(&c->arena->pb, op_len, op_bytes);
    if (op == NULL) {
        return sm_malformed(c, "op does not decode");
    }
    const char *twin = twin_of(op);
    /* Only a valid id goes into the history index key. */
    c->twin = twin != NULL && sm_valid_id(twin) ? twin : NULL;
    int err = 0;
    c->roles = sm_roles_of(c, c->principal, &err);
    if (err != 0) {
        return err;
    }
    return dispatch(c, op);
}

/* Appends the event and its history-index entry, and extends the chain. */
static int record_event(sm_ctx *c, const uint8_t *op, size_t op_len, const uint8_t *res,
                        size_t res_len) {
    sm_store *s = c->s;
    Twinbft__SmEvent ev = TWINBFT__SM_EVENT__INIT;
    ev.seq = c->seq;
    ev.index = c->index;
    ev.time_ms = c->time_ms;
    ev.principal = (char *)c->principal;
    ev.twin = (char *)(c->twin ? c->twin : "");
    ev.op = (ProtobufCBinaryData){op_len, (uint8_t *)op};
    ev.result = (ProtobufCBinaryData){res_len, (uint8_t *)res};
    size_t n = twinbft__sm_event__get_packed_size(&ev);
    TB_ASSERT(n <= SM_EVENT_BYTES_MAX);
    twinbft__sm_event__pack(&ev, s->event_buf);
    uint8_t key[SM_EVENT_KEY_BYTES];
    sm_be64(key, c->seq);
    sm_be32(key + 8, c->index);
    MDB_val k = {sizeof key, key}, v = {n, s->event_buf};
    /* Events arrive in key order, so appending is both fast and a check. */
    int rc = mdb_put(c->txn, s->dbi[SM_T_EVENT], &k, &v, MDB_APPEND);
    if (rc != 0) {
        return sm_lmdb_err(rc, "append event");
    }
    sm_hist_chain(s->hist, key, sizeof key, s->event_buf, n);
    s->hist_dirty = true;
    if (c->twin != NULL) {
        uint8_t hk[SM_KEY_BYTES_MAX + 1];
        size_t tl = strlen(c->twin);
        memcpy(hk, c->twin, tl);
        hk[tl] = 0;
        memcpy(hk + tl + 1, key, sizeof key);
        int err = sm_db_put(s, c->txn, SM_T_TWIN_HIST, hk, tl + 1 + sizeof key, "", 0);
        if (err != 0) {
            return err;
        }
    }
    return 0;
}

/* History retention (sm_options.history_window): as the first request of
 * batch seq applies, the events of seqs at or below seq - window go, oldest
 * first, each folded into the chain's base, with their twin-history index
 * entries. Every replica applies the same batches, so every replica drops
 * the same events at the same seq: the state stays deterministic. The
 * event table is not in the lattice hash (the chain head is), the base is
 * (META "hist_base"), so a snapshot proves its events from the base. */
static int history_compact(sm_store *s, MDB_txn *txn, uint64_t seq) {
    if (s->history_window == 0 || seq <= s->history_window) {
        return 0;
    }
    uint64_t upto = seq - s->history_window;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, s->dbi[SM_T_EVENT], &cur);
    if (rc != 0) {
        return sm_lmdb_err(rc, "cursor");
    }
    uint8_t base[SM_HIST_BYTES] = {0};
    bool have_base = false;
    size_t dropped = 0;
    int err = 0;
    MDB_val k, v;
    /* At most SM_COMPACT_PER_BATCH_MAX a batch (the rest at the next ones,
     * alike on every replica): a window turned on over a long history, or
     * shortened, must not make one batch delete it all at once. */
    while (err == 0 && dropped < SM_COMPACT_PER_BATCH_MAX &&
           (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0 && k.mv_size == SM_EVENT_KEY_BYTES &&
           sm_get_be64(k.mv_data) <= upto) {
        if (!have_base) {
            MDB_val b;
            err = sm_db_get(s, txn, SM_T_META, SM_HIST_BASE_KEY, strlen(SM_HIST_BASE_KEY), &b);
            if (err == 0 && b.mv_size == SM_HIST_BYTES) {
                memcpy(base, b.mv_data, SM_HIST_BYTES);
            } else if (err != TB_ERR_NOT_FOUND) {
                err = err != 0 ? err : TB_ERR_IO;
                break;
            }
            err = 0;
            have_base = true;
        }
        sm_hist_chain(base, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
        Twinbft__SmEvent *e = twinbft__sm_event__unpack(NULL, v.mv_size, v.mv_data);
        if (e == NULL) {
            err = TB_ERR_IO;
            break;
        }
        if (e->twin[0] != '\0' && sm_valid_id(e->twin)) {
            uint8_t hk[SM_KEY_BYTES_MAX + 1];
            size_t tl = strlen(e->twin);
            memcpy(hk, e->twin, tl);
            hk[tl] = 0;
            memcpy(hk + tl + 1, k.mv_data, SM_EVENT_KEY_BYTES);
            MDB_val ik = {tl + 1 + SM_EVENT_KEY_BYTES, hk};
            rc = mdb_del(txn, s->dbi[SM_T_TWIN_HIST], &ik, NULL);
            if (rc != 0 && rc != MDB_NOTFOUND) {
                err = sm_lmdb_err(rc, "compact history index");
            }
        }
        twinbft__sm_event__free_unpacked(e, NULL);
        rc = err == 0 ? mdb_cursor_del(cur, 0) : 0;
        if (rc != 0) {
            err = sm_lmdb_err(rc, "compact history");
        }
        dropped++;
    }
    mdb_cursor_close(cur);
    if (err == 0 && rc != 0 && rc != MDB_NOTFOUND) {
        err = sm_lmdb_err(rc, "cursor get");
    }
    if (err == 0 && dropped > 0) {
        err = sm_db_put(s, txn, SM_T_META, SM_HIST_BASE_KEY, strlen(SM_HIST_BASE_KEY), base,
                        SM_HIST_BYTES);
        s->stats.events_compacted += dropped;
    }
    return err;
}

int sm_apply(sm_store *s, MDB_txn *txn, uint64_t seq, uint32_t index, uint64_t time_ms,
             const char *principal, const uint8_t *op, size_t op_len, sm_output *out) {
    TB_ASSERT(!s->events_any || seq > s->last_seq || (seq == s->last_seq && index > s->last_index));
    if (s->wtxn == NULL) {
        s->wtxn = txn;
    }
    TB_ASSERT(s->wtxn == txn);
    if (index == 0) {
        int cerr = history_compact(s, txn, seq);
        if (cerr != 0) {
            return cerr;
        }
    }
    sm_arena_reset(&s->arena);
    s->read_cache.valid = false;
    Twinbft__SmResult *res = sm_arena_alloc(&s->arena, sizeof *res);
    twinbft__sm_result__init(res);
    sm_ctx c = {.s = s,
                .txn = txn,
                .arena = &s->arena,
                .cached = true,
                .seq = seq,
                .index = index,
                .time_ms = time_ms,
                .principal = principal,
                .res = res};
    int err = 0;
    if (principal == NULL || !sm_valid_principal(principal)) {
        sm_malformed(&c, "principal is not a valid identity");
        c.principal = principal != NULL && strnlen(principal, SM_PRINCIPAL_BYTES_MAX + 1) <=
                                               SM_PRINCIPAL_BYTES_MAX
                          ? principal
                          : "";
    } else {
        err = execute(&c, op, op_len);
    }
    if (err != 0) {
        return err;
    }
    size_t n = twinbft__sm_result__get_packed_size(res);
    TB_ASSERT(n <= SM_RESULT_BYTES_MAX); /* the limits in sm.h make this hold */
    twinbft__sm_result__pack(res, s->result_buf);
    /* An op above the limit is recorded without its bytes (none can arrive through
     * consensus, whose PBFT_OP_BYTES_MAX is the same limit). */
    err = record_event(&c, op, op_len > SM_OP_BYTES_MAX ? 0 : op_len, s->result_buf, n);
    if (err != 0) {
        return err;
    }
    s->applied = seq;
    s->last_seq = seq;
    s->last_index = index;
    s->events_any = true;
    s->stats.ops_applied++;
    *out = (sm_output){.result = s->result_buf,
                       .result_len = n,
                       .ttl_ms = c.ttl_ms,
                       .code = (int)res->code,
                       .reason = (int)res->reason};
    return 0;
}

bool sm_op_is_priority(const uint8_t *op, size_t len) {
    if (len > SM_OP_BYTES_MAX) {
        return false;
    }
    Twinbft__SmOp *m = twinbft__sm_op__unpack(NULL, len, op);
    if (m == NULL) {
        return false;
    }
    bool p = m->op_case == TWINBFT__SM_OP__OP_ESTOP_LATCH ||
             (m->op_case == TWINBFT__SM_OP__OP_ACTUATE && m->actuate->safe_state);
    twinbft__sm_op__free_unpacked(m, NULL);
    return p;
}

const char *sm_code_name(int code) {
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&twinbft__sm_code__descriptor, code);
    return v != NULL ? v->name : "unknown";
}

const char *sm_reason_name(int reason) {
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&twinbft__sm_reason__descriptor, reason);
    return v != NULL ? v->name : "unknown";
}
