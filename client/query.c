/* Read-only queries, PBFT's read-only optimisation (Castro & Liskov, TOCS
 * 2002, 5.1.3): every replica answers from its last executed state at once;
 * a quorum of byte-identical answers is the answer, since any two quorums
 * share a correct replica. When that can no longer happen, or it does not
 * happen within TB_CLIENT_QUERY_WAIT_MS, the query is ordered as SmOp.query
 * like any other operation and answered by f+1 matching replies. */
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "proto/tb_assert.h"

/* Reports to the query's callback, counted as inside this client's callbacks. */
static void tb_query_report(tb_client *c, tb_query_cb cb, int status, const uint8_t *result,
                            size_t len, uint64_t executed, bool ordered, void *arg) {
    c->in_callback++;
    cb(status, result, len, executed, ordered, arg);
    c->in_callback--;
}

static bool tb_answer_same(const Twinbft__QueryReply *a, const Twinbft__QueryReply *b) {
    return a->result.len == b->result.len &&
           (a->result.len == 0 || memcmp(a->result.data, b->result.data, a->result.len) == 0);
}

static int tb_u64_desc(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Reports an unordered answer agreed by the replicas whose answers equal
 * `agreed`. executed is the (f+1)-th highest of their executed numbers: at
 * least one correct replica had executed that far and gave this answer. */
static void tb_query_finish_unordered(tb_client *c, const Twinbft__QueryReply *agreed) {
    uint64_t executed[TB_MEMBERS_MAX];
    uint32_t count = 0;
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        if (c->op.answers[j] != NULL && tb_answer_same(c->op.answers[j], agreed)) {
            executed[count++] = c->op.answers[j]->executed;
        }
    }
    TB_ASSERT(count >= c->cfg.f + 1);
    qsort(executed, count, sizeof executed[0], tb_u64_desc);
    size_t len = agreed->result.len;
    uint8_t *result = malloc(len);
    tb_query_cb cb = c->op.query_cb;
    void *arg = c->op.arg;
    if (result != NULL) {
        memcpy(result, agreed->result.data, len);
    }
    tb_op_clear(c);
    if (result == NULL) {
        tb_query_report(c, cb, TB_ERR_NOMEM, NULL, 0, 0, false, arg);
        return;
    }
    tb_query_report(c, cb, 0, result, len, executed[c->cfg.f], false, arg);
    free(result);
}

/* Puts the query through ordering; the overall deadline keeps running. */
static void tb_query_order(tb_client *c) {
    event_del(c->query_wait);
    for (uint32_t j = 0; j < TB_MEMBERS_MAX; j++) {
        if (c->op.answers[j] != NULL) {
            twinbft__query_reply__free_unpacked(c->op.answers[j], NULL);
            c->op.answers[j] = NULL;
        }
    }
    int rc = tb_op_start_request(c, c->op.sm_op, c->op.sm_op_len);
    if (rc != 0) {
        tb_query_cb cb = c->op.query_cb;
        void *arg = c->op.arg;
        tb_op_clear(c);
        tb_query_report(c, cb, rc, NULL, 0, 0, false, arg);
    }
}

/* After each answer: done with a quorum of equal non-empty answers, ordered
 * once no answer can reach a quorum with the replicas still silent. */
static void tb_query_decide(tb_client *c) {
    uint32_t q = tb_quorum(c), answered = 0, best = 0, best_j = 0;
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        const Twinbft__QueryReply *a = c->op.answers[j];
        if (a == NULL) {
            continue;
        }
        answered++;
        if (a->result.len == 0) {
            continue; /* a replica that could not answer agrees with nobody */
        }
        uint32_t same = 0;
        for (uint32_t k = 0; k < c->cfg.n; k++) {
            same += c->op.answers[k] != NULL && tb_answer_same(c->op.answers[k], a);
        }
        if (same > best) {
            best = same;
            best_j = j;
        }
    }
    if (best >= q) {
        tb_query_finish_unordered(c, c->op.answers[best_j]);
    } else if (best + (c->cfg.n - answered) < q) {
        tb_query_order(c);
    }
}

void tb_query_on_answer(tb_client *c, uint32_t j, Twinbft__Message *m) {
    Twinbft__QueryReply *a = m->query_reply;
    if (a->replica != j || a->id != c->op.query_id || c->op.answers[j] != NULL) {
        return; /* foreign, stale, or a repeat: a replica's first answer counts */
    }
    c->op.answers[j] = a;
    m->query_reply = NULL;
    m->kind_case = TWINBFT__MESSAGE__KIND__NOT_SET;
    tb_query_decide(c);
}

void tb_query_on_wait(tb_client *c) {
    if (c->op.kind == TB_OP_QUERY && !c->op.ordering) {
        tb_query_order(c);
    }
}

/* The ordered answer is the SmQueryResult inside SmResult.query. A result
 * without one (the state machine refused the query, e.g. for its access
 * rules) is reported as an SmQueryResult carrying the refusal's code. */
static int tb_query_result_of(const Twinbft__ResultLeaf *leaf, uint8_t **out, size_t *out_len) {
    Twinbft__SmResult *r = twinbft__sm_result__unpack(NULL, leaf->result.len, leaf->result.data);
    Twinbft__SmQueryResult refusal = TWINBFT__SM_QUERY_RESULT__INIT;
    const Twinbft__SmQueryResult *qr = &refusal;
    if (r == NULL) {
        return TB_ERR_INVALID;
    }
    if (r->payload_case == TWINBFT__SM_RESULT__PAYLOAD_QUERY && r->query != NULL) {
        qr = r->query;
    } else {
        refusal.code = r->code;
        refusal.reason = r->reason;
        refusal.detail = r->detail;
    }
    size_t len = twinbft__sm_query_result__get_packed_size(qr);
    *out = malloc(len > 0 ? len : 1);
    if (*out != NULL) {
        *out_len = twinbft__sm_query_result__pack(qr, *out);
    }
    twinbft__sm_result__free_unpacked(r, NULL);
    return *out != NULL ? 0 : TB_ERR_NOMEM;
}

void tb_query_finish_ordered(tb_client *c, const Twinbft__Reply *r) {
    tb_query_cb cb = c->op.query_cb;
    void *arg = c->op.arg;
    uint64_t seq = r->seq;
    uint8_t *result = NULL;
    size_t len = 0;
    Twinbft__ResultLeaf *leaf = twinbft__result_leaf__unpack(NULL, r->leaf.len, r->leaf.data);
    TB_ASSERT(leaf != NULL); /* checked when the reply was taken */
    int rc = tb_query_result_of(leaf, &result, &len);
    twinbft__result_leaf__free_unpacked(leaf, NULL);
    tb_op_clear(c);
    tb_query_report(c, cb, rc, result, len, rc == 0 ? seq : 0, rc == 0, arg);
    free(result);
}

void tb_query_fail(tb_client *c, int status) {
    tb_query_cb cb = c->op.query_cb;
    void *arg = c->op.arg;
    TB_ASSERT(status != 0);
    tb_op_clear(c);
    tb_query_report(c, cb, status, NULL, 0, 0, false, arg);
}

void tb_query_wait_start(tb_client *c) {
    struct timeval wait = tb_ms_timeval(TB_CLIENT_QUERY_WAIT_MS);
    event_add(c->query_wait, &wait);
}

/* The SmOp{query} the fallback orders; also checks that query is an SmQuery. */
static int tb_query_wrap(const uint8_t *query, size_t len, uint8_t **out, size_t *out_len) {
    Twinbft__SmQuery *q = twinbft__sm_query__unpack(NULL, len, query);
    if (q == NULL) {
        return TB_ERR_INVALID;
    }
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_QUERY;
    op.query = q;
    size_t n = twinbft__sm_op__get_packed_size(&op);
    int rc = TB_ERR_NOMEM;
    *out = malloc(n > 0 ? n : 1);
    if (*out != NULL) {
        *out_len = twinbft__sm_op__pack(&op, *out);
        rc = *out_len <= TB_CLIENT_OP_BYTES_MAX ? 0 : TB_ERR_TOO_LARGE;
    }
    twinbft__sm_query__free_unpacked(q, NULL);
    return rc;
}

static int tb_query_send(tb_client *c, const uint8_t *query, size_t len) {
    Twinbft__Query q = TWINBFT__QUERY__INIT;
    q.id = c->op.query_id;
    q.query = (ProtobufCBinaryData){len, (uint8_t *)query};
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_QUERY;
    m.query = &q;
    int rc = tb_msg_pack(&m, &c->op.msg, &c->op.msg_len);
    if (rc != 0) {
        return rc;
    }
    struct timeval every = tb_ms_timeval(TB_CLIENT_RETRANSMIT_MS);
    struct timeval limit = tb_ms_timeval(c->cfg.timeout_ms);
    event_add(c->retransmit, &every);
    event_add(c->deadline, &limit);
    /* The wait for unordered answers starts when the Query goes out: now,
     * or once the cluster is confirmed (tb_op_release). */
    if (c->confirm.state == TB_CONFIRM_OK) {
        tb_query_wait_start(c);
    }
    tb_op_send_all(c);
    return 0;
}

int tb_client_query(tb_client *c, const uint8_t *query, size_t len, tb_query_cb cb, void *arg) {
    int rc = tb_op_begin(c, TB_OP_QUERY, query, len, cb != NULL, arg);
    if (rc != 0) {
        return rc;
    }
    c->op.query_cb = cb;
    c->op.query_id = c->next_id++;
    rc = tb_query_wrap(query, len, &c->op.sm_op, &c->op.sm_op_len);
    if (rc == 0) {
        rc = tb_query_send(c, query, len);
    }
    if (rc != 0) {
        tb_op_clear(c);
    }
    return rc;
}
