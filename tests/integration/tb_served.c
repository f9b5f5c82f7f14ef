/* A test client for what the replica daemon serves itself (no ordering):
 * status, unordered queries and subscriptions; and, to have something to
 * subscribe to, a fixed run of intents that ends in two approved
 * actuations addressed to a given principal. Connects to every replica over
 * mutual TLS as the identity in DIR. One line per answer on stdout; exits 0
 * when every replica answered as the mode wants, 1 after TIMEOUT seconds.
 *
 *   tb_served CLUSTER DIR TIMEOUT status
 *   tb_served CLUSTER DIR TIMEOUT query CONFIG_KEY
 *   tb_served CLUSTER DIR TIMEOUT intents FIRST_NUMBER ADDRESSEE
 *   tb_served CLUSTER DIR TIMEOUT subscribe AFTER_SEQ COUNT
 *
 * status:    a StatusReply from every replica.
 * query:     every replica returns the same result bytes at the same seq.
 * intents:   site s1, site twin "plant", a policy on plant/setpoint whose
 *            principal is ADDRESSEE, then actuations to 5 and 7; each with
 *            f+1 matching OK results.
 * subscribe: from every replica, COUNT pushes after AFTER_SEQ and a final
 *            ack with more = false (asking again while more is set); each
 *            command is then checked as a quorum certificate. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "client/link.h"
#include "consensus/pbft.h"
#include "proto/cert.h"
#include "proto/frame.h"
#include "proto/pki.h"
#include "proto/sm.pb-c.h"
#include "proto/tb_err.h"
#include "replica/config.h"

enum { PUSHES_MAX = 16, INTENTS = 5 };

typedef struct push_set {
    uint64_t seq;
    uint32_t index;
    Twinbft__Reply *replies[REP_MEMBERS_MAX]; /* by replica */
} push_set;

static struct {
    rep_cluster cl;
    struct event_base *base;
    tb_tls_link *links[REP_MEMBERS_MAX];
    proto_trust trust;
    const char *name, *mode, *arg;
    bool done[REP_MEMBERS_MAX];
    uint64_t id;
    /* query */
    Twinbft__QueryReply *answers[REP_MEMBERS_MAX];
    /* intents */
    uint64_t number, first;
    Twinbft__Reply *replies[REP_MEMBERS_MAX];
    /* subscribe */
    uint64_t after_seq[REP_MEMBERS_MAX];
    uint32_t after_index[REP_MEMBERS_MAX], got[REP_MEMBERS_MAX], want;
    push_set pushes[PUSHES_MAX];
    size_t n_pushes;
    int failed;
} P;

static void send_msg(uint32_t j, const Twinbft__Message *m) {
    uint8_t *b = NULL;
    size_t len = 0;
    if (proto_message_pack(m, &b, &len) != 0) {
        abort();
    }
    if (P.links[j] != NULL && tb_tls_link_is_open(P.links[j])) {
        tb_tls_send(P.links[j], b, len);
    }
    free(b);
}

static bool all_done(void) {
    for (uint32_t j = 0; j < P.cl.n; j++) {
        if (!P.done[j]) {
            return false;
        }
    }
    return true;
}

/* ---- status ---- */

static void ask_status(uint32_t j) {
    Twinbft__StatusRequest q = TWINBFT__STATUS_REQUEST__INIT;
    q.id = ++P.id;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_STATUS_REQUEST, m.status_request = &q;
    send_msg(j, &m);
}

static void on_status(uint32_t j, const Twinbft__StatusReply *r) {
    bool ours = r->cluster_id.len == strlen(P.cl.id) &&
                memcmp(r->cluster_id.data, P.cl.id, r->cluster_id.len) == 0;
    printf("status replica=%u view=%" PRIu64 " primary=%u executed=%" PRIu64 " stable=%" PRIu64
           " peers=%zu clients=%" PRIu64 " app_digest=%zuB cluster=%s\n",
           r->replica, r->view, r->primary, r->executed, r->stable_seq, r->n_peers, r->clients,
           r->app_digest.len, ours ? "ours" : "OTHER");
    P.failed |= !ours || r->replica != j || r->app_digest.len != PROTO_DIGEST_BYTES;
    P.done[j] = true;
}

/* ---- query ---- */

static void ask_query(uint32_t j) {
    Twinbft__SmQuery sq = TWINBFT__SM_QUERY__INIT;
    sq.q_case = TWINBFT__SM_QUERY__Q_CONFIG_GET, sq.config_get = (char *)P.arg;
    uint8_t qb[512];
    Twinbft__Query q = TWINBFT__QUERY__INIT;
    q.id = ++P.id;
    q.query = (ProtobufCBinaryData){twinbft__sm_query__pack(&sq, qb), qb};
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_QUERY, m.query = &q;
    send_msg(j, &m);
}

/* Done when every replica's latest answer is the same non-empty bytes at the same seq. */
static void on_query(uint32_t j, Twinbft__Message *m) {
    if (P.answers[j] != NULL) {
        twinbft__query_reply__free_unpacked(P.answers[j], NULL);
    }
    P.answers[j] = m->query_reply;
    m->query_reply = NULL, m->kind_case = TWINBFT__MESSAGE__KIND__NOT_SET;
    const Twinbft__QueryReply *a = P.answers[0];
    for (uint32_t k = 0; k < P.cl.n; k++) {
        const Twinbft__QueryReply *b = P.answers[k];
        if (a == NULL || b == NULL || b->result.len == 0 || b->executed != a->executed ||
            b->result.len != a->result.len ||
            memcmp(b->result.data, a->result.data, a->result.len) != 0) {
            return;
        }
    }
    Twinbft__SmQueryResult *res =
        twinbft__sm_query_result__unpack(NULL, a->result.len, a->result.data);
    for (uint32_t k = 0; k < P.cl.n; k++) {
        printf("query replica=%u executed=%" PRIu64 " result=%zuB\n", P.answers[k]->replica,
               P.answers[k]->executed, P.answers[k]->result.len);
        P.done[k] = true;
    }
    bool found = res != NULL && res->n_configs == 1;
    printf("query %s: %u replicas agree: %s%.*s\n", P.arg, P.cl.n, found ? "value=" : "no entry",
           found ? (int)res->configs[0]->value.len : 0,
           found ? (const char *)res->configs[0]->value.data : "");
    P.failed |= !found;
    twinbft__sm_query_result__free_unpacked(res, NULL);
}

/* ---- intents ---- */

static size_t intent_op(uint64_t k, uint8_t *out) {
    Twinbft__SmOp o = TWINBFT__SM_OP__INIT;
    Twinbft__SmSitePut site = TWINBFT__SM_SITE_PUT__INIT;
    Twinbft__SmTwinCreate twin = TWINBFT__SM_TWIN_CREATE__INIT;
    Twinbft__SmPolicy pol = TWINBFT__SM_POLICY__INIT;
    Twinbft__SmPolicyPut put = TWINBFT__SM_POLICY_PUT__INIT;
    Twinbft__SmActuate act = TWINBFT__SM_ACTUATE__INIT;
    if (k == 0) {
        site.id = "s1", site.name = "integration site";
        o.op_case = TWINBFT__SM_OP__OP_SITE_PUT, o.site_put = &site;
    } else if (k == 1) {
        twin.id = "plant", twin.kind = TWINBFT__SM_TWIN_KIND__SM_TWIN_KIND_SITE;
        twin.site = "s1", twin.owner = (char *)P.name;
        o.op_case = TWINBFT__SM_OP__OP_TWIN_CREATE, o.twin_create = &twin;
    } else if (k == 2) {
        pol.twin = "plant", pol.property = "setpoint", pol.max = 100;
        pol.required_role = TWINBFT__SM_ROLE__SM_ROLE_OPERATOR;
        pol.principal = (char *)P.arg;
        put.policy = &pol;
        o.op_case = TWINBFT__SM_OP__OP_POLICY_PUT, o.policy_put = &put;
    } else {
        act.twin = "plant", act.property = "setpoint", act.value = k == 3 ? 5 : 7;
        o.op_case = TWINBFT__SM_OP__OP_ACTUATE, o.actuate = &act;
    }
    return twinbft__sm_op__pack(&o, out);
}

static void send_intent(uint32_t j) {
    uint8_t op[512];
    Twinbft__Request r = TWINBFT__REQUEST__INIT;
    r.client = (char *)P.name;
    r.number = P.number;
    r.op = (ProtobufCBinaryData){intent_op(P.number - P.first, op), op};
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_REQUEST, m.request = &r;
    send_msg(j, &m);
}

static void clear_replies(void) {
    for (uint32_t j = 0; j < REP_MEMBERS_MAX; j++) {
        if (P.replies[j] != NULL) {
            twinbft__reply__free_unpacked(P.replies[j], NULL);
            P.replies[j] = NULL;
        }
    }
}

static void on_reply(uint32_t j, Twinbft__Message *m) {
    Twinbft__ResultLeaf *leaf =
        twinbft__result_leaf__unpack(NULL, m->reply->leaf.len, m->reply->leaf.data);
    bool mine = leaf && leaf->number == P.number && strcmp(leaf->client, P.name) == 0;
    if (!mine || P.replies[j] != NULL) {
        twinbft__result_leaf__free_unpacked(leaf, NULL);
        return;
    }
    P.replies[j] = m->reply;
    m->reply = NULL, m->kind_case = TWINBFT__MESSAGE__KIND__NOT_SET;
    uint32_t same = 0;
    for (uint32_t k = 0; k < P.cl.n; k++) {
        same +=
            P.replies[k] && P.replies[k]->leaf.len == P.replies[j]->leaf.len &&
            memcmp(P.replies[k]->leaf.data, P.replies[j]->leaf.data, P.replies[j]->leaf.len) == 0;
    }
    if (same >= pbft_f(P.cl.n) + 1) {
        Twinbft__SmResult *res =
            twinbft__sm_result__unpack(NULL, leaf->result.len, leaf->result.data);
        bool ok = res != NULL && res->code == TWINBFT__SM_CODE__SM_CODE_OK;
        printf("intent %" PRIu64 " (number %" PRIu64 ") at seq %" PRIu64 ": %s %s\n",
               P.number - P.first, P.number, P.replies[j]->seq, ok ? "OK" : "NOT OK",
               res ? res->detail : "undecodable");
        twinbft__sm_result__free_unpacked(res, NULL);
        clear_replies();
        P.failed |= !ok;
        if (++P.number - P.first == INTENTS || !ok) {
            memset(P.done, 1, sizeof P.done);
        } else {
            for (uint32_t k = 0; k < P.cl.n; k++) {
                send_intent(k);
            }
        }
    }
    twinbft__result_leaf__free_unpacked(leaf, NULL);
}

/* ---- subscribe ---- */

static void subscribe(uint32_t j) {
    Twinbft__Subscribe s = TWINBFT__SUBSCRIBE__INIT;
    s.after_seq = P.after_seq[j];
    s.after_index = P.after_index[j];
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_SUBSCRIBE, m.subscribe = &s;
    send_msg(j, &m);
}

static void on_push(uint32_t j, Twinbft__Message *m) {
    Twinbft__Reply *r = m->push->reply;
    bool ordered =
        r->seq > P.after_seq[j] || (r->seq == P.after_seq[j] && r->index > P.after_index[j]);
    if (!ordered || strcmp(m->push->to, P.name) != 0) {
        printf("push replica=%u seq=%" PRIu64 " index=%u to=%s: OUT OF ORDER or not ours\n", j,
               r->seq, r->index, m->push->to);
        P.failed = 1;
        return;
    }
    P.after_seq[j] = r->seq;
    P.after_index[j] = r->index;
    P.got[j]++;
    size_t i = 0;
    while (i < P.n_pushes && (P.pushes[i].seq != r->seq || P.pushes[i].index != r->index)) {
        i++;
    }
    if (i == P.n_pushes && P.n_pushes < PUSHES_MAX) {
        P.pushes[P.n_pushes++] = (push_set){.seq = r->seq, .index = r->index};
    }
    if (i < PUSHES_MAX && P.pushes[i].replies[j] == NULL) {
        P.pushes[i].replies[j] = r;
        m->push->reply = NULL;
    }
}

static void on_ack(uint32_t j, const Twinbft__SubscribeAck *a) {
    printf("ack replica=%u last=%" PRIu64 "/%u more=%d executed=%" PRIu64 "\n", a->replica,
           a->last_seq, a->last_index, (int)a->more, a->executed);
    fflush(stdout);
    if (a->more) {
        subscribe(j); /* from the last one we got */
    }
}

static void check_sub_done(uint32_t j) {
    P.done[j] = P.got[j] >= P.want;
}

/* Each command is a certified one: a quorum of the pushed replies assembles. */
static void check_pushes(void) {
    for (size_t i = 0; i < P.n_pushes; i++) {
        const Twinbft__Reply *rs[REP_MEMBERS_MAX];
        size_t n = 0;
        for (uint32_t j = 0; j < P.cl.n; j++) {
            if (P.pushes[i].replies[j] != NULL) {
                rs[n++] = P.pushes[i].replies[j];
            }
        }
        uint8_t *cert = NULL;
        size_t len = 0;
        int rc = proto_cert_assemble(&P.trust, rs, n, &cert, &len);
        rc = rc ? rc : proto_cert_verify(&P.trust, cert, len, 0, NULL);
        Twinbft__ResultLeaf *leaf =
            twinbft__result_leaf__unpack(NULL, rs[0]->leaf.len, rs[0]->leaf.data);
        Twinbft__SmResult *res =
            leaf ? twinbft__sm_result__unpack(NULL, leaf->result.len, leaf->result.data) : NULL;
        bool cmd = res && res->payload_case == TWINBFT__SM_RESULT__PAYLOAD_COMMAND;
        printf("command seq=%" PRIu64 " index=%u to=%s value=%" PRId64 " from=%zu replicas "
               "certificate=%s\n",
               P.pushes[i].seq, P.pushes[i].index, cmd ? res->command->to : "?",
               cmd ? res->command->value : 0, n, rc == 0 ? "valid" : tb_strerror(rc));
        P.failed |= rc != 0 || !cmd || strcmp(res->command->to, P.name) != 0;
        twinbft__sm_result__free_unpacked(res, NULL);
        twinbft__result_leaf__free_unpacked(leaf, NULL);
        free(cert);
    }
}

/* ---- links ---- */

static uint32_t replica_index(const char *peer) {
    unsigned j = 0;
    return sscanf(peer, "replica-%u", &j) == 1 && j < P.cl.n ? j : UINT32_MAX;
}

static void start_mode(uint32_t j) {
    if (P.done[j]) {
        return;
    }
    if (strcmp(P.mode, "status") == 0) {
        ask_status(j);
    } else if (strcmp(P.mode, "query") == 0) {
        ask_query(j);
    } else if (strcmp(P.mode, "intents") == 0) {
        send_intent(j);
    } else {
        subscribe(j);
    }
}

static void on_open(tb_tls_link *l, const char *peer, void *a) {
    (void)l, (void)a;
    uint32_t j = replica_index(peer);
    if (j != UINT32_MAX) {
        start_mode(j);
    }
}

static void on_frame(tb_tls_link *l, const char *peer, const uint8_t *d, size_t len, void *a) {
    (void)l, (void)a;
    uint32_t j = replica_index(peer);
    Twinbft__Message *m = proto_message_unpack(d, len);
    if (m == NULL || j == UINT32_MAX) {
        goto done;
    }
    if (m->kind_case == TWINBFT__MESSAGE__KIND_STATUS_REPLY) {
        on_status(j, m->status_reply);
    } else if (m->kind_case == TWINBFT__MESSAGE__KIND_QUERY_REPLY) {
        on_query(j, m);
    } else if (m->kind_case == TWINBFT__MESSAGE__KIND_REPLY && strcmp(P.mode, "intents") == 0) {
        on_reply(j, m);
    } else if (m->kind_case == TWINBFT__MESSAGE__KIND_PUSH) {
        on_push(j, m);
        check_sub_done(j);
    } else if (m->kind_case == TWINBFT__MESSAGE__KIND_SUBSCRIBE_ACK) {
        on_ack(j, m->subscribe_ack);
        check_sub_done(j);
    }
    if (all_done()) {
        event_base_loopbreak(P.base);
    }
done:
    if (m != NULL) {
        twinbft__message__free_unpacked(m, NULL);
    }
}

static void on_retry(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what, (void)arg;
    for (uint32_t j = 0; j < P.cl.n; j++) {
        /* Queries again until the replicas agree; intents are retransmitted
         * (answered from the client table). Subscriptions stand. */
        if (strcmp(P.mode, "query") == 0 || strcmp(P.mode, "intents") == 0 ||
            strcmp(P.mode, "status") == 0) {
            start_mode(j);
        }
    }
}

static int load_trust(void) {
    memcpy(P.trust.cluster_id, P.cl.id, strlen(P.cl.id));
    P.trust.cluster_id_len = strlen(P.cl.id);
    P.trust.epoch = P.cl.epoch;
    P.trust.n = P.cl.n;
    P.trust.f = pbft_f(P.cl.n);
    for (uint32_t j = 0; j < P.cl.n; j++) {
        X509 *c = NULL;
        uint8_t pub[PROTO_PUBKEY_BYTES];
        if (proto_pki_load_cert(P.cl.members[j].cert_path, &c) || proto_pki_pubkey(c, pub) ||
            proto_pubkey_from_raw(pub, &P.trust.keys[j])) {
            X509_free(c);
            return TB_ERR_INVALID;
        }
        X509_free(c);
    }
    return 0;
}

static int parse_mode(int argc, char **argv) {
    P.mode = argv[4];
    if (strcmp(P.mode, "status") == 0 && argc == 5) {
        return 0;
    }
    if (strcmp(P.mode, "query") == 0 && argc == 6) {
        P.arg = argv[5];
        return 0;
    }
    if (strcmp(P.mode, "intents") == 0 && argc == 7) {
        P.first = P.number = strtoull(argv[5], NULL, 10);
        P.arg = argv[6];
        return 0;
    }
    if (strcmp(P.mode, "subscribe") == 0 && argc == 7) {
        for (uint32_t j = 0; j < REP_MEMBERS_MAX; j++) {
            P.after_seq[j] = strtoull(argv[5], NULL, 10);
        }
        P.want = (uint32_t)strtoul(argv[6], NULL, 10);
        return 0;
    }
    return -1;
}

int main(int argc, char **argv) {
    char err[REP_CONFIG_ERR_BYTES], ca[600], cert[600], key[600];
    if (argc < 5 || parse_mode(argc, argv) != 0) {
        fprintf(stderr,
                "usage: tb_served CLUSTER_FILE IDENTITY_DIR TIMEOUT_S "
                "status | query KEY | intents FIRST ADDRESSEE | subscribe AFTER_SEQ COUNT\n");
        return 2;
    }
    if (rep_cluster_load(argv[1], &P.cl, err, sizeof err) != 0) {
        fprintf(stderr, "tb_served: %s\n", err);
        return 2;
    }
    snprintf(cert, sizeof cert, "%s/cert.pem", argv[2]);
    snprintf(key, sizeof key, "%s/key.pem", argv[2]);
    snprintf(ca, sizeof ca, "%s", P.cl.ca_path);
    tb_tls_ctx *tls = NULL;
    if (tb_tls_ctx_load(ca, cert, key, &tls) != 0 || load_trust() != 0) {
        fprintf(stderr, "tb_served: cannot load the identity in %s or the members' certificates\n",
                argv[2]);
        return 2;
    }
    tb_tls_ctx_set_log(tls, NULL, NULL);
    P.name = tb_tls_ctx_name(tls);
    P.base = event_base_new();
    tb_tls_callbacks cb = {on_open, on_frame, NULL, NULL};
    for (uint32_t j = 0; j < P.cl.n; j++) {
        char want[32];
        snprintf(want, sizeof want, "replica-%u", j);
        tb_tls_connect(P.base, tls, P.cl.members[j].host, P.cl.members[j].port, want, &cb,
                       &P.links[j]);
    }
    struct event *retry = event_new(P.base, -1, EV_PERSIST, on_retry, NULL);
    struct timeval every = {0, 300 * 1000}, limit = {atoi(argv[3]), 0};
    event_add(retry, &every);
    event_base_loopexit(P.base, &limit);
    event_base_dispatch(P.base);
    bool complete = all_done();
    if (complete && strcmp(P.mode, "subscribe") == 0) {
        check_pushes();
    }
    printf("%s: %s\n", P.mode, complete && !P.failed ? "ok" : "FAILED");
    event_free(retry);
    clear_replies();
    for (uint32_t j = 0; j < REP_MEMBERS_MAX; j++) {
        if (P.answers[j] != NULL) {
            twinbft__query_reply__free_unpacked(P.answers[j], NULL);
        }
        for (size_t i = 0; i < P.n_pushes; i++) {
            if (P.pushes[i].replies[j] != NULL) {
                twinbft__reply__free_unpacked(P.pushes[i].replies[j], NULL);
            }
        }
    }
    for (uint32_t j = 0; j < P.cl.n; j++) {
        tb_tls_link_free(P.links[j]);
        proto_pubkey_free(P.trust.keys[j]);
    }
    /* Deferred callbacks of the links still hold references to their
     * buffers: let them run so libevent can finish freeing them. */
    event_base_loop(P.base, EVLOOP_NONBLOCK);
    tb_tls_ctx_free(tls);
    event_base_free(P.base);
    return complete && !P.failed ? 0 : 1;
}
