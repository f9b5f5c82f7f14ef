/* Read-only queries, served by one replica on a read transaction without
 * ordering. Authorisation: any principal holding a role may read the
 * registry (twins, nodes) and configuration; shadows, placements and a
 * twin's history need admin, operator, or ownership of the twin's
 * subtree; the history by sequence range needs admin or operator; a node's
 * placements are readable by admins, operators and the node's agent; an ACL
 * entry is readable by admins and by the principal itself.
 *
 * The same queries run through ordering (SmOp.query, sm_op_query) on the
 * write transaction, with an answer bounded so that the SmResult carrying
 * it fits SM_RESULT_BYTES_MAX. */
#include <stdlib.h>
#include <string.h>

#include "statemachine/internal.h"

typedef struct sm_q {
    sm_ctx c;
    Twinbft__SmQueryResult *out;
    size_t budget; /* bytes of items still allowed (SM_QUERY_BYTES_MAX, or
                    * SM_ORDERED_QUERY_BYTES_MAX through ordering) */
} sm_q;

static size_t limit_of(uint32_t limit) {
    return limit == 0 || limit > SM_QUERY_ITEMS_MAX ? SM_QUERY_ITEMS_MAX : limit;
}

static bool any_role(sm_q *q) {
    return sm_authz(&q->c, SM_ROLES_ALL);
}

/* Loads the twin and authorises reading its subtree's data. */
static bool twin_readable(sm_q *q, const char *id, Twinbft__SmTwin **t, int *err) {
    if (!sm_valid_id(id)) {
        sm_malformed(&q->c, "twin id is not valid");
        return false;
    }
    *err = sm_twin_get(&q->c, id, t);
    if (*err == TB_ERR_NOT_FOUND) {
        *err = 0;
        sm_deny(&q->c, TWINBFT__SM_REASON__SM_REASON_NOT_FOUND, "no twin %s", id);
        return false;
    }
    return *err == 0 && sm_authz_twin(&q->c, SM_ROLES_MANAGE, true, *t, err);
}

/* Byte order, as LMDB compares keys. */
static int key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl) {
    int r = memcmp(a, b, al < bl ? al : bl);
    return r != 0 ? r : (al > bl) - (al < bl);
}

/* A listing over the keys that start with prefix and sort after
 * start_after (a full key; "" = from the start), decoding each value with
 * desc and appending it to items. */
static int list(sm_q *q, int table, const uint8_t *prefix, size_t plen, const char *start_after,
                uint32_t limit, const ProtobufCMessageDescriptor *desc, void ***items, size_t *n) {
    size_t max = limit_of(limit);
    const uint8_t *after = (const uint8_t *)start_after;
    size_t alen = strlen(start_after);
    *items = sm_arena_alloc(q->c.arena, max * sizeof **items);
    *n = 0;
    sm_iter it;
    int err = sm_iter_open(q->c.s, q->c.txn, table, prefix, plen, &it);
    if (err == 0 && alen > 0 && key_cmp(after, alen, prefix, plen) > 0) {
        err = sm_iter_seek(&it, after, alen);
    }
    while (err == 0 && (err = sm_iter_next(&it)) == 1) {
        err = 0;
        if (alen > 0 && key_cmp(it.k.mv_data, it.k.mv_size, after, alen) <= 0) {
            continue;
        }
        if (*n == max || it.v.mv_size > q->budget) {
            q->out->more = true;
            break;
        }
        q->budget -= it.v.mv_size;
        (*items)[*n] = protobuf_c_message_unpack(desc, &q->c.arena->pb, it.v.mv_size, it.v.mv_data);
        if ((*items)[(*n)++] == NULL) {
            err = TB_ERR_IO;
        }
    }
    sm_iter_close(&it);
    return err;
}

static int q_twin_children(sm_q *q, const Twinbft__SmListQuery *l) {
    if (l->from[0] != '\0' && !sm_valid_id(l->from)) {
        return sm_malformed(&q->c, "parent id is not valid");
    }
    if (!any_role(q)) {
        return 0;
    }
    uint8_t prefix[SM_KEY_BYTES_MAX + 1];
    size_t plen = sm_key2(prefix, l->from, "");
    size_t max = limit_of(l->limit);
    q->out->twins = sm_arena_alloc(q->c.arena, max * sizeof *q->out->twins);
    sm_iter it;
    int err = sm_iter_open(q->c.s, q->c.txn, SM_T_CHILD, prefix, plen, &it);
    if (err == 0 && l->start_after[0] != '\0') {
        uint8_t seek[SM_KEY_BYTES_MAX + 1];
        size_t slen = sm_key2(seek, l->from, l->start_after);
        seek[slen++] = 0; /* just past start_after itself */
        err = sm_iter_seek(&it, seek, slen);
    }
    while (err == 0 && (err = sm_iter_next(&it)) == 1) {
        if (q->out->n_twins == max) {
            q->out->more = true;
            err = 0;
            break;
        }
        char *id =
            sm_arena_strndup(q->c.arena, (const uint8_t *)it.k.mv_data + plen, it.k.mv_size - plen);
        Twinbft__SmTwin *t = NULL;
        err = sm_twin_get(&q->c, id, &t);
        err = err == TB_ERR_NOT_FOUND ? TB_ERR_IO : err;
        size_t size = err == 0 ? twinbft__sm_twin__get_packed_size(t) : 0;
        if (err == 0 && size > q->budget) {
            q->out->more = true;
            break;
        }
        q->budget -= size;
        q->out->twins[q->out->n_twins++] = t;
    }
    sm_iter_close(&it);
    return err;
}

static int q_shadow(sm_q *q, const char *id) {
    Twinbft__SmTwin *t = NULL;
    int err = 0;
    if (!twin_readable(q, id, &t, &err)) {
        return err;
    }
    Twinbft__SmShadowView *view = sm_arena_alloc(q->c.arena, sizeof *view);
    twinbft__sm_shadow_view__init(view);
    err = sm_rec_get(&q->c, SM_T_SHADOW, id, strlen(id), &twinbft__sm_shadow__descriptor,
                     (void **)&view->shadow);
    if (err == TB_ERR_NOT_FOUND) {
        view->shadow = sm_arena_alloc(q->c.arena, sizeof *view->shadow);
        twinbft__sm_shadow__init(view->shadow);
        view->shadow->twin = t->id;
        err = 0;
    }
    Twinbft__SmShadow *sh = view->shadow;
    view->delta = sm_arena_alloc(q->c.arena, (sh->n_desired + 1) * sizeof *view->delta);
    for (size_t i = 0; i < sh->n_desired; i++) {
        const char *have = sm_props_find(sh->reported, sh->n_reported, sh->desired[i]->name);
        if (have == NULL || strcmp(have, sh->desired[i]->value) != 0) {
            view->delta[view->n_delta++] = sh->desired[i];
        }
    }
    q->out->shadow = view;
    return err;
}

/* Appends the event stored at an event key; false when the budget is spent. */
static int add_event(sm_q *q, const uint8_t *key, size_t max, bool *full) {
    MDB_val v;
    int err = sm_db_get(q->c.s, q->c.txn, SM_T_EVENT, key, SM_EVENT_KEY_BYTES, &v);
    if (err != 0) {
        return err == TB_ERR_NOT_FOUND ? TB_ERR_IO : err; /* the index names live events */
    }
    /* An event larger than the whole budget, first in line, goes out
     * without its op and result; otherwise a pager would ask for it again
     * and again and never get past it. */
    bool elide = v.mv_size > q->budget && q->out->n_events == 0;
    if (q->out->n_events == max || (v.mv_size > q->budget && !elide)) {
        q->out->more = true;
        *full = true;
        return 0;
    }
    Twinbft__SmEvent *e = twinbft__sm_event__unpack(&q->c.arena->pb, v.mv_size, v.mv_data);
    if (e == NULL) {
        return TB_ERR_IO;
    }
    if (elide) {
        e->op = (ProtobufCBinaryData){0, NULL};
        e->result = (ProtobufCBinaryData){0, NULL};
        e->elided = true;
        q->budget = 0; /* nothing else joins it */
    } else {
        q->budget -= v.mv_size;
    }
    q->out->events[q->out->n_events++] = e;
    return 0;
}

/* History by twin (its index) or by sequence range (the event table). */
static int q_history(sm_q *q, const Twinbft__SmHistoryQuery *h) {
    Twinbft__SmTwin *t = NULL;
    int err = 0;
    bool by_twin = h->twin[0] != '\0';
    /* A retired twin's history stays readable for audits, by admins and operators. */
    bool retired = by_twin && sm_valid_id(h->twin) && (q->c.roles & SM_ROLES_MANAGE) != 0 &&
                   sm_twin_get(&q->c, h->twin, &t) == TB_ERR_NOT_FOUND;
    if (!retired &&
        (by_twin ? !twin_readable(q, h->twin, &t, &err) : !sm_authz(&q->c, SM_ROLES_MANAGE))) {
        return err;
    }
    uint8_t prefix[SM_KEY_BYTES_MAX + 1], seek[SM_KEY_BYTES_MAX + 1];
    size_t plen = by_twin ? sm_key2(prefix, h->twin, "") : 0;
    size_t max = limit_of(h->limit);
    q->out->events = sm_arena_alloc(q->c.arena, max * sizeof *q->out->events);
    memcpy(seek, prefix, plen);
    sm_be64(seek + plen, h->after_seq);
    sm_be32(seek + plen + 8, h->after_index);
    sm_iter it;
    err = sm_iter_open(q->c.s, q->c.txn, by_twin ? SM_T_TWIN_HIST : SM_T_EVENT, prefix, plen, &it);
    if (err == 0 && !h->from_start) {
        err = sm_iter_seek(&it, seek, plen + SM_EVENT_KEY_BYTES);
    }
    bool full = false;
    while (err == 0 && !full && (err = sm_iter_next(&it)) == 1) {
        err = 0;
        const uint8_t *ek = (const uint8_t *)it.k.mv_data + plen;
        if (it.k.mv_size != plen + SM_EVENT_KEY_BYTES) {
            err = TB_ERR_IO;
        } else if (!h->from_start && memcmp(ek, seek + plen, SM_EVENT_KEY_BYTES) == 0) {
            continue; /* the one we were told to start after */
        } else if (h->seq_to != 0 && sm_get_be64(ek) > h->seq_to) {
            break;
        } else {
            uint8_t key[SM_EVENT_KEY_BYTES];
            memcpy(key, ek, sizeof key); /* the cursor's memory may not outlive the next read */
            err = add_event(q, key, max, &full);
        }
    }
    sm_iter_close(&it);
    return err;
}

static int q_placements(sm_q *q, const char *id) {
    Twinbft__SmTwin *t = NULL;
    int err = 0;
    if (!twin_readable(q, id, &t, &err)) {
        return err;
    }
    uint8_t prefix[SM_KEY_BYTES_MAX + 1];
    size_t plen = sm_key2(prefix, id, "");
    return list(q, SM_T_PLACE, prefix, plen, "", SM_QUERY_ITEMS_MAX,
                &twinbft__sm_placement__descriptor, (void ***)&q->out->placements,
                &q->out->n_placements);
}

/* The placements on one node, from its index, in key order. */
static int q_node_placements(sm_q *q, const char *id) {
    Twinbft__SmNode *node = NULL;
    int err = sm_node_get(&q->c, id, &node);
    if (err == TB_ERR_NOT_FOUND) {
        return sm_deny(&q->c, TWINBFT__SM_REASON__SM_REASON_NOT_FOUND, "no node %s", id);
    }
    bool agent = (q->c.roles & SM_ROLE_NODE_AGENT) != 0 && err == 0 &&
                 strcmp(node->agent, q->c.principal) == 0;
    if (err != 0 || (!agent && !sm_authz(&q->c, SM_ROLES_MANAGE))) {
        return err;
    }
    uint8_t prefix[SM_KEY_BYTES_MAX + 1];
    size_t plen = sm_key2(prefix, id, "");
    q->out->placements = sm_arena_alloc(q->c.arena, SM_NODE_REPLICAS_MAX * sizeof(void *));
    sm_iter it;
    err = sm_iter_open(q->c.s, q->c.txn, SM_T_NODE_PLACE, prefix, plen, &it);
    while (err == 0 && (err = sm_iter_next(&it)) == 1) {
        /* node \0 twin \0 component \0 replica: the placement key is what follows. */
        const uint8_t *k = (const uint8_t *)it.k.mv_data + plen;
        size_t klen = it.k.mv_size - plen;
        TB_ASSERT(q->out->n_placements < SM_NODE_REPLICAS_MAX);
        err = sm_rec_get(&q->c, SM_T_PLACE, k, klen, &twinbft__sm_placement__descriptor,
                         (void **)&q->out->placements[q->out->n_placements++]);
        err = err == TB_ERR_NOT_FOUND ? TB_ERR_IO : err;
    }
    sm_iter_close(&it);
    return err;
}

static int q_get(sm_q *q, int table, const char *id, const ProtobufCMessageDescriptor *desc,
                 void ***items, size_t *n) {
    if (!any_role(q)) {
        return 0;
    }
    *items = sm_arena_alloc(q->c.arena, sizeof **items);
    int err = sm_rec_get(&q->c, table, id, strlen(id), desc, &(*items)[0]);
    if (err == TB_ERR_NOT_FOUND) {
        return sm_deny(&q->c, TWINBFT__SM_REASON__SM_REASON_NOT_FOUND, "no %s", id);
    }
    *n = err == 0 ? 1 : 0;
    return err;
}

static int q_acl(sm_q *q, const char *principal) {
    if (strcmp(principal, q->c.principal) != 0 && !sm_authz(&q->c, SM_ROLE_ADMIN)) {
        return 0;
    }
    Twinbft__SmAcl *acl = NULL;
    int err = sm_rec_get(&q->c, SM_T_ACL, principal, strlen(principal),
                         &twinbft__sm_acl__descriptor, (void **)&acl);
    if (err == TB_ERR_NOT_FOUND) {
        acl = sm_arena_alloc(q->c.arena, sizeof *acl);
        twinbft__sm_acl__init(acl);
        acl->principal = (char *)principal;
        err = 0;
    }
    q->out->acl = acl;
    return err;
}

static bool config_key_valid(const char *k) {
    return k[0] != '\0' && strnlen(k, SM_CONFIG_KEY_BYTES_MAX + 1) <= SM_CONFIG_KEY_BYTES_MAX &&
           sm_valid_text(k, SM_CONFIG_KEY_BYTES_MAX);
}

static int q_dispatch(sm_q *q, const Twinbft__SmQuery *m) {
    Twinbft__SmQueryResult *o = q->out;
    switch (m->q_case) {
    case TWINBFT__SM_QUERY__Q_TWIN_GET:
        return !sm_valid_id(m->twin_get)
                   ? sm_malformed(&q->c, "twin id is not valid")
                   : q_get(q, SM_T_TWIN, m->twin_get, &twinbft__sm_twin__descriptor,
                           (void ***)&o->twins, &o->n_twins);
    case TWINBFT__SM_QUERY__Q_TWIN_CHILDREN:
        return q_twin_children(q, m->twin_children);
    case TWINBFT__SM_QUERY__Q_NODE_GET:
        return !sm_valid_id(m->node_get)
                   ? sm_malformed(&q->c, "node id is not valid")
                   : q_get(q, SM_T_NODE, m->node_get, &twinbft__sm_node__descriptor,
                           (void ***)&o->nodes, &o->n_nodes);
    case TWINBFT__SM_QUERY__Q_NODE_LIST:
        if (!sm_valid_text(m->node_list->start_after, SM_ID_BYTES_MAX)) {
            return sm_malformed(&q->c, "start_after is not a node id");
        }
        return !any_role(q) ? 0
                            : list(q, SM_T_NODE, (const uint8_t *)"", 0, m->node_list->start_after,
                                   m->node_list->limit, &twinbft__sm_node__descriptor,
                                   (void ***)&o->nodes, &o->n_nodes);
    case TWINBFT__SM_QUERY__Q_CONFIG_GET:
        return !config_key_valid(m->config_get)
                   ? sm_malformed(&q->c, "config key is not valid")
                   : q_get(q, SM_T_CONFIG, m->config_get, &twinbft__sm_config_entry__descriptor,
                           (void ***)&o->configs, &o->n_configs);
    case TWINBFT__SM_QUERY__Q_CONFIG_LIST:
        if (!sm_valid_text(m->config_list->from, SM_CONFIG_KEY_BYTES_MAX) ||
            !sm_valid_text(m->config_list->start_after, SM_CONFIG_KEY_BYTES_MAX)) {
            return sm_malformed(&q->c, "config prefix is not valid");
        }
        return !any_role(q) ? 0
                            : list(q, SM_T_CONFIG, (const uint8_t *)m->config_list->from,
                                   strlen(m->config_list->from), m->config_list->start_after,
                                   m->config_list->limit, &twinbft__sm_config_entry__descriptor,
                                   (void ***)&o->configs, &o->n_configs);
    case TWINBFT__SM_QUERY__Q_SHADOW_GET:
        return q_shadow(q, m->shadow_get);
    case TWINBFT__SM_QUERY__Q_HISTORY:
        return q_history(q, m->history);
    case TWINBFT__SM_QUERY__Q_PLACEMENT_LIST:
        return q_placements(q, m->placement_list);
    case TWINBFT__SM_QUERY__Q_NODE_PLACEMENTS:
        return !sm_valid_id(m->node_placements) ? sm_malformed(&q->c, "node id is not valid")
                                                : q_node_placements(q, m->node_placements);
    case TWINBFT__SM_QUERY__Q_ACL_GET:
        return !sm_valid_principal(m->acl_get) ? sm_malformed(&q->c, "principal is not valid")
                                               : q_acl(q, m->acl_get);
    default:
        return sm_malformed(&q->c, "query has no question set");
    }
}

/* Answers m as base's principal on base's transaction into res (code,
 * reason and detail included; a denial carries no partial answer), with
 * `budget` bytes of items. Allocations go to base's arena. */
static int answer(const sm_ctx *base, const Twinbft__SmQuery *m, size_t budget,
                  Twinbft__SmQueryResult *res) {
    Twinbft__SmResult status = TWINBFT__SM_RESULT__INIT;
    sm_q q = {.c = *base, .out = res, .budget = budget};
    q.c.res = &status;
    int err = 0;
    q.c.roles = sm_roles_of(&q.c, q.c.principal, &err);
    if (err == 0) {
        err = q_dispatch(&q, m);
    }
    if (err == 0 && (int)status.code != SM_OK) {
        Twinbft__SmQueryResult denied = TWINBFT__SM_QUERY_RESULT__INIT;
        *res = denied;
    }
    res->code = status.code;
    res->reason = status.reason;
    res->detail = status.detail;
    return err;
}

int sm_query(sm_store *s, MDB_txn *txn, const char *principal, const uint8_t *query, size_t len,
             uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    sm_arena arena;
    sm_arena_init(&arena, SM_QUERY_ARENA_BYTES); /* per call: queries may run on several threads */
    Twinbft__SmResult status = TWINBFT__SM_RESULT__INIT;
    Twinbft__SmQueryResult res = TWINBFT__SM_QUERY_RESULT__INIT;
    sm_ctx c = {.s = s, .txn = txn, .arena = &arena, .principal = principal, .res = &status};
    Twinbft__SmQuery *m =
        len <= SM_OP_BYTES_MAX ? twinbft__sm_query__unpack(&arena.pb, len, query) : NULL;
    int err = 0;
    if (principal != NULL && sm_valid_principal(principal) && m != NULL) {
        err = answer(&c, m, SM_QUERY_BYTES_MAX, &res);
    } else {
        sm_malformed(&c, m == NULL ? "query does not decode" : "principal is not a valid identity");
        res.code = status.code;
        res.reason = status.reason;
        res.detail = status.detail;
    }
    if (err == 0) {
        *out_len = twinbft__sm_query_result__get_packed_size(&res);
        *out = malloc(*out_len ? *out_len : 1);
        err = *out == NULL ? TB_ERR_NOMEM : 0;
    }
    if (err == 0) {
        twinbft__sm_query_result__pack(&res, *out);
    }
    sm_arena_free(&arena);
    return err;
}

/* Drops the last item of the answer's last non-empty list; false when
 * every list is empty. */
static bool drop_last_item(Twinbft__SmQueryResult *r) {
    size_t *lists[] = {&r->n_placements, &r->n_events, &r->n_configs, &r->n_nodes, &r->n_twins};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        if (*lists[i] > 0) {
            (*lists[i])--;
            return true;
        }
    }
    return false;
}

int sm_op_query(sm_ctx *c, const Twinbft__SmQuery *op) {
    Twinbft__SmQueryResult *res = sm_arena_alloc(c->arena, sizeof *res);
    twinbft__sm_query_result__init(res);
    int err = answer(c, op, SM_ORDERED_QUERY_BYTES_MAX, res);
    if (err != 0) {
        return err;
    }
    c->res->payload_case = TWINBFT__SM_RESULT__PAYLOAD_QUERY;
    c->res->query = res;
    /* The budget counts stored bytes, not their framing, and a few lists
     * (a node's placements) have no budget: trim until the result fits
     * the ordered result's hard limit; `more` tells the client. */
    while (twinbft__sm_result__get_packed_size(c->res) > SM_RESULT_BYTES_MAX) {
        if (!drop_last_item(res)) {
            /* Cannot happen within sm.h's limits (a shadow is the largest
             * single answer); refuse rather than break the result limit. */
            c->res->payload_case = TWINBFT__SM_RESULT__PAYLOAD__NOT_SET;
            c->res->query = NULL;
            return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_LIMIT, "answer too large to order");
        }
        res->more = true;
    }
    return 0;
}
