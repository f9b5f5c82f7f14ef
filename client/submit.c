/* Intents: one outstanding Request, sent to every replica, completed by f+1
 * matching replies and certified by a quorum of signed ones. A query that
 * falls back to ordering goes through the same Request path. */
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "proto/tb_assert.h"

void tb_op_clear(tb_client *c) {
    tb_op *o = &c->op;
    if (o->ordering) {
        c->number++; /* a request that went out may still execute: never reuse its number */
    }
    for (uint32_t j = 0; j < TB_MEMBERS_MAX; j++) {
        if (o->replies[j] != NULL) {
            twinbft__reply__free_unpacked(o->replies[j], NULL);
        }
        if (o->answers[j] != NULL) {
            twinbft__query_reply__free_unpacked(o->answers[j], NULL);
        }
    }
    free(o->msg);
    free(o->sm_op);
    if (c->retransmit != NULL) {
        event_del(c->retransmit);
    }
    if (c->deadline != NULL) {
        event_del(c->deadline);
    }
    if (c->query_wait != NULL) {
        event_del(c->query_wait);
    }
    memset(o, 0, sizeof *o);
}

int tb_op_start_request(tb_client *c, const uint8_t *op, size_t len) {
    Twinbft__Request r = TWINBFT__REQUEST__INIT;
    r.client = (char *)tb_tls_ctx_name(c->tls);
    r.number = c->number;
    r.op = (ProtobufCBinaryData){len, (uint8_t *)op};
    /* Request.priority stays unset: replicas choose the safety lane from the op. */
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_REQUEST;
    m.request = &r;
    uint8_t *msg = NULL;
    size_t msg_len = 0;
    int rc = tb_msg_pack(&m, &msg, &msg_len);
    if (rc != 0) {
        return rc;
    }
    free(c->op.msg);
    c->op.msg = msg;
    c->op.msg_len = msg_len;
    c->op.ordering = true;
    struct timeval every = tb_ms_timeval(TB_CLIENT_RETRANSMIT_MS);
    event_add(c->retransmit, &every);
    tb_op_send_all(c);
    return 0;
}

/* The one gate: an op's message reaches no replica before f+1 replicas
 * confirmed the configured cluster id and epoch (confirm.c). */
static bool tb_op_may_send(const tb_client *c) {
    return c->confirm.state == TB_CONFIRM_OK && c->op.kind != TB_OP_NONE && c->op.msg != NULL;
}

void tb_op_send_all(tb_client *c) {
    if (tb_op_may_send(c)) {
        tb_link_send_all(c, c->op.msg, c->op.msg_len);
    }
}

void tb_op_send_to(tb_client *c, uint32_t j) {
    if (tb_op_may_send(c)) {
        tb_link_send(c, j, c->op.msg, c->op.msg_len);
    }
}

void tb_op_release(tb_client *c) {
    TB_ASSERT(c->confirm.state == TB_CONFIRM_OK);
    if (c->op.kind == TB_OP_QUERY && !c->op.ordering) {
        tb_query_wait_start(c);
    }
    tb_op_send_all(c);
}

/* Ends an intent and reports it; the client is idle (and may be given the
 * next call) while the callback runs. */
static void tb_intent_finish(tb_client *c, int status, const uint8_t *cert, size_t cert_len) {
    tb_submit_cb cb = c->op.submit_cb;
    void *arg = c->op.arg;
    Twinbft__Reply *r = NULL;
    Twinbft__ResultLeaf *leaf = NULL;
    if (status == 0) {
        r = c->op.replies[c->op.agreed_index];
        c->op.replies[c->op.agreed_index] = NULL; /* kept past tb_op_clear */
        TB_ASSERT(r != NULL);
        leaf = twinbft__result_leaf__unpack(NULL, r->leaf.len, r->leaf.data);
        TB_ASSERT(leaf != NULL); /* checked when the reply was taken */
    }
    tb_op_clear(c);
    c->in_callback++;
    if (status != 0) {
        cb(status, NULL, arg);
        c->in_callback--;
        return;
    }
    tb_result res = {
        .seq = r->seq,
        .index = r->index,
        .leaf = r->leaf.data,
        .leaf_len = r->leaf.len,
        .result = leaf->result.data,
        .result_len = leaf->result.len,
        .cert = cert,
        .cert_len = cert != NULL ? cert_len : 0,
    };
    cb(0, &res, arg);
    c->in_callback--;
    twinbft__result_leaf__free_unpacked(leaf, NULL);
    twinbft__reply__free_unpacked(r, NULL);
}

static bool tb_bytes_same(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b) {
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* Whether two replies agree on everything the result reports: seq, index,
 * count, leaf and path (correct replicas build the same ones). */
bool tb_reply_same(const Twinbft__Reply *a, const Twinbft__Reply *b) {
    if (a->seq != b->seq || a->index != b->index || a->count != b->count ||
        a->n_path != b->n_path || !tb_bytes_same(&a->leaf, &b->leaf)) {
        return false;
    }
    for (size_t k = 0; k < a->n_path; k++) {
        if (!tb_bytes_same(&a->path[k], &b->path[k])) {
            return false;
        }
    }
    return true;
}

size_t tb_sig_group(tb_client *c, Twinbft__Reply *const *replies, tb_sig_marks *marks,
                    const Twinbft__Reply *like, const Twinbft__Reply **out) {
    uint64_t candidates = 0;
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        uint64_t bit = 1ull << j;
        bool bad = (marks->checked & bit) != 0 && (marks->ok & bit) == 0;
        if (replies[j] != NULL && !bad && (like == NULL || tb_reply_same(replies[j], like))) {
            candidates |= bit;
        }
    }
    if ((uint32_t)__builtin_popcountll(candidates) < tb_quorum(c)) {
        return 0; /* no certificate yet: verify nothing */
    }
    size_t n = 0;
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        uint64_t bit = 1ull << j;
        if ((candidates & bit) == 0) {
            continue;
        }
        if ((marks->checked & bit) == 0) {
            marks->checked |= bit;
            if (proto_reply_signature_ok(&c->trust, replies[j])) {
                marks->ok |= bit;
            }
        }
        if (marks->ok & bit) {
            out[n++] = replies[j];
        }
    }
    return n;
}

/* f+1 replies from distinct replicas that agree (tb_reply_same): at least
 * one of them is from a correct replica, so that is the result, and any of
 * them reports it. */
static bool tb_op_match(tb_client *c) {
    for (uint32_t i = 0; i < c->cfg.n; i++) {
        uint32_t same = 0;
        if (c->op.replies[i] == NULL) {
            continue;
        }
        for (uint32_t k = 0; k < c->cfg.n; k++) {
            same += c->op.replies[k] != NULL && tb_reply_same(c->op.replies[k], c->op.replies[i]);
        }
        if (same >= c->cfg.f + 1) {
            c->op.agreed_index = i;
            return true;
        }
    }
    return false;
}

/* Completes with a certificate when a quorum of the replies agreeing with the
 * f+1 result carry valid signatures and assemble into one. Each signature
 * is verified once (tb_sig_group), and the certificate built from them is
 * checked in every other way but not verified again. */
static void tb_intent_try_cert(tb_client *c) {
    const Twinbft__Reply *group[TB_MEMBERS_MAX];
    const Twinbft__Reply *agreed = c->op.replies[c->op.agreed_index];
    uint8_t *cert = NULL;
    size_t cert_len = 0;
    size_t n = tb_sig_group(c, c->op.replies, &c->op.sigs, agreed, group);
    if (n < tb_quorum(c) ||
        proto_cert_assemble_checked(&c->trust, group, n, &cert, &cert_len, NULL) != 0) {
        return;
    }
    tb_intent_finish(c, 0, cert, cert_len);
    free(cert);
}

/* Whether a reply's leaf is this client's outstanding request. */
static bool tb_reply_mine(const tb_client *c, const Twinbft__Reply *r) {
    Twinbft__ResultLeaf *leaf = twinbft__result_leaf__unpack(NULL, r->leaf.len, r->leaf.data);
    bool mine = leaf != NULL && leaf->number == c->number && leaf->client != NULL &&
                strcmp(leaf->client, tb_tls_ctx_name(c->tls)) == 0;
    if (leaf != NULL) {
        twinbft__result_leaf__free_unpacked(leaf, NULL);
    }
    return mine;
}

/* A reply counts when it comes over replica j's own link, says it is from j,
 * and carries a leaf for this client's outstanding number. */
void tb_op_on_reply(tb_client *c, uint32_t j, Twinbft__Message *m) {
    Twinbft__Reply *r = m->reply;
    TB_ASSERT(c->op.ordering);
    if (r->replica != j || r->leaf.len == 0 || c->op.replies[j] != NULL || !tb_reply_mine(c, r)) {
        return; /* foreign, stale, or a retransmitted answer: a replica's first one counts */
    }
    c->op.replies[j] = r;
    m->reply = NULL;
    m->kind_case = TWINBFT__MESSAGE__KIND__NOT_SET;
    if (c->op.agreed || !tb_op_match(c)) {
        if (c->op.agreed) {
            tb_intent_try_cert(c);
        }
        return;
    }
    c->op.agreed = true;
    if (c->op.kind == TB_OP_QUERY) {
        tb_query_finish_ordered(c, c->op.replies[c->op.agreed_index]);
        return;
    }
    struct timeval wait = tb_ms_timeval(TB_CLIENT_CERT_WAIT_MS);
    event_add(c->deadline, &wait); /* replaces the request's timeout */
    tb_intent_try_cert(c);
}

void tb_op_on_deadline(tb_client *c) {
    if (c->op.kind == TB_OP_QUERY) {
        tb_query_fail(c, TB_ERR_TIMEOUT);
    } else if (c->op.kind == TB_OP_INTENT) {
        tb_intent_finish(c, c->op.agreed ? 0 : TB_ERR_TIMEOUT, NULL, 0);
    }
}

void tb_op_refuse(tb_client *c) {
    TB_ASSERT(c->confirm.state == TB_CONFIRM_REFUSED);
    /* Nothing was sent, so no number was used (tb_op_clear advances it
     * all the same: numbers need only grow). */
    if (c->op.kind == TB_OP_QUERY) {
        tb_query_fail(c, TB_ERR_WRONG_CLUSTER);
    } else if (c->op.kind == TB_OP_INTENT) {
        tb_intent_finish(c, TB_ERR_WRONG_CLUSTER, NULL, 0);
    }
}

int tb_op_begin(tb_client *c, tb_op_kind kind, const uint8_t *data, size_t len, bool has_cb,
                void *arg) {
    TB_ASSERT(kind != TB_OP_NONE);
    if (c->op.kind != TB_OP_NONE) {
        return TB_ERR_STATE;
    }
    if (data == NULL || len == 0 || !has_cb) {
        return TB_ERR_INVALID;
    }
    if (len > TB_CLIENT_OP_BYTES_MAX) {
        return TB_ERR_TOO_LARGE;
    }
    if (c->confirm.state == TB_CONFIRM_REFUSED) {
        return TB_ERR_WRONG_CLUSTER;
    }
    c->op.kind = kind;
    c->op.arg = arg;
    return 0;
}

int tb_client_submit(tb_client *c, const uint8_t *op, size_t len, tb_submit_cb cb, void *arg) {
    int rc = tb_op_begin(c, TB_OP_INTENT, op, len, cb != NULL, arg);
    if (rc != 0) {
        return rc;
    }
    c->op.submit_cb = cb;
    rc = tb_op_start_request(c, op, len);
    if (rc != 0) {
        tb_op_clear(c);
        return rc;
    }
    struct timeval limit = tb_ms_timeval(c->cfg.timeout_ms);
    event_add(c->deadline, &limit);
    return 0;
}
