/* The edge client: one outstanding request, sent to every replica, completed
 * by f+1 matching replies and certified by a quorum of signed ones. */
#include "client/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "client/link.h"
#include "proto/frame.h"
#include "proto/tb_assert.h"
#include "proto/tb_err.h"

_Static_assert(PROTO_MEMBERS_MAX <= PROTO_CERT_REPLIES_MAX,
               "one reply per member must fit into one certificate assembly");

struct tb_client {
    struct event_base *base;
    tb_client_config cfg;
    proto_trust trust;
    tb_tls_ctx *tls;
    tb_tls_link *links[PROTO_MEMBERS_MAX];
    struct event *retransmit;
    struct event *deadline;
    uint64_t number; /* of the outstanding request, or of the next one when idle */
    bool busy;
    bool agreed;  /* f+1 matched; waiting for a certificate until the deadline */
    uint8_t *msg; /* the packed Request message */
    size_t msg_len;
    tb_client_cb cb;
    void *cb_arg;
    Twinbft__Reply *replies[PROTO_MEMBERS_MAX]; /* by replica id; at most one each */
    size_t agreed_index;                        /* a reply of the matching f+1 */
};

static void tb_client_send_all(tb_client *c) {
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        if (c->links[j] != NULL && tb_tls_link_is_open(c->links[j])) {
            (void)tb_tls_send(c->links[j], c->msg, c->msg_len); /* retransmission covers losses */
        }
    }
}

static void tb_client_clear(tb_client *c) {
    for (uint32_t j = 0; j < PROTO_MEMBERS_MAX; j++) {
        if (c->replies[j] != NULL) {
            twinbft__reply__free_unpacked(c->replies[j], NULL);
            c->replies[j] = NULL;
        }
    }
    free(c->msg);
    c->msg = NULL;
    c->msg_len = 0;
    if (c->retransmit != NULL) {
        event_del(c->retransmit);
    }
    if (c->deadline != NULL) {
        event_del(c->deadline);
    }
    c->busy = false;
    c->agreed = false;
}

/* Ends the outstanding request and reports it; the client is idle (and may be
 * given the next request) while the callback runs. */
static void tb_client_finish(tb_client *c, int status, const uint8_t *cert, size_t cert_len) {
    uint8_t *leaf = NULL;
    size_t leaf_len = 0;
    uint64_t seq = 0;
    tb_client_cb cb = c->cb;
    void *arg = c->cb_arg;
    if (status == 0) {
        const Twinbft__Reply *r = c->replies[c->agreed_index];
        TB_ASSERT(r != NULL);
        seq = r->seq;
        leaf_len = r->leaf.len;
        leaf = malloc(leaf_len > 0 ? leaf_len : 1);
        if (leaf == NULL) {
            status = TB_ERR_NOMEM;
            leaf_len = 0;
            seq = 0;
            cert = NULL;
            cert_len = 0;
        } else {
            memcpy(leaf, r->leaf.data, leaf_len);
        }
    }
    tb_client_clear(c);
    c->number++;
    cb(status, seq, leaf, leaf_len, cert, cert_len, arg);
    free(leaf);
}

static bool tb_reply_same(const Twinbft__Reply *a, const Twinbft__Reply *b) {
    return a->seq == b->seq && a->leaf.len == b->leaf.len &&
           (a->leaf.len == 0 || memcmp(a->leaf.data, b->leaf.data, a->leaf.len) == 0);
}

/* f+1 replies from distinct replicas with the same (seq, leaf): at least one
 * of them is from a correct replica, so that is the result. */
static bool tb_client_match(tb_client *c) {
    for (uint32_t i = 0; i < c->cfg.n; i++) {
        uint32_t same = 0;
        if (c->replies[i] == NULL) {
            continue;
        }
        for (uint32_t k = 0; k < c->cfg.n; k++) {
            same += c->replies[k] != NULL && tb_reply_same(c->replies[k], c->replies[i]);
        }
        if (same >= c->cfg.f + 1) {
            c->agreed_index = i;
            return true;
        }
    }
    return false;
}

/* Completes with a certificate when a quorum of the replies agreeing with the
 * f+1 result assembles into one that verifies. */
static bool tb_client_try_cert(tb_client *c) {
    const Twinbft__Reply *group[PROTO_MEMBERS_MAX];
    size_t n = 0;
    uint8_t *cert = NULL;
    size_t cert_len = 0;
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        if (c->replies[j] != NULL && tb_reply_same(c->replies[j], c->replies[c->agreed_index])) {
            group[n++] = c->replies[j];
        }
    }
    if (proto_cert_assemble(&c->trust, group, n, &cert, &cert_len) != 0) {
        return false;
    }
    if (proto_cert_verify(&c->trust, cert, cert_len, 0, NULL) != 0) {
        free(cert);
        return false;
    }
    tb_client_finish(c, 0, cert, cert_len);
    free(cert);
    return true;
}

/* A reply counts when it comes over replica j's own link, says it is from j,
 * and carries a leaf for this client's outstanding number. */
static void tb_client_on_reply(tb_client *c, uint32_t j, Twinbft__Message *m) {
    Twinbft__Reply *r = m->reply;
    if (r->replica != j || r->leaf.len == 0) {
        return;
    }
    Twinbft__ResultLeaf *leaf = twinbft__result_leaf__unpack(NULL, r->leaf.len, r->leaf.data);
    bool mine = leaf != NULL && leaf->number == c->number && leaf->client != NULL &&
                strcmp(leaf->client, tb_tls_ctx_name(c->tls)) == 0;
    if (leaf != NULL) {
        twinbft__result_leaf__free_unpacked(leaf, NULL);
    }
    if (!mine) {
        return;
    }
    if (c->replies[j] != NULL) {
        return; /* a retransmitted answer: a replica's first one counts */
    }
    c->replies[j] = r;
    m->reply = NULL;
    m->kind_case = TWINBFT__MESSAGE__KIND__NOT_SET;
    if (!c->agreed && tb_client_match(c)) {
        c->agreed = true;
        struct timeval tv = {TB_CLIENT_CERT_WAIT_MS / 1000, (TB_CLIENT_CERT_WAIT_MS % 1000) * 1000};
        event_add(c->deadline, &tv); /* replaces the request's timeout */
    }
    if (c->agreed) {
        (void)tb_client_try_cert(c);
    }
}

static void tb_client_on_frame(tb_tls_link *link, const char *peer, const uint8_t *data, size_t len,
                               void *arg) {
    tb_client *c = arg;
    (void)peer;
    if (!c->busy) {
        return;
    }
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        if (c->links[j] == link) {
            Twinbft__Message *m = proto_message_unpack(data, len);
            if (m != NULL && m->kind_case == TWINBFT__MESSAGE__KIND_REPLY && m->reply != NULL) {
                tb_client_on_reply(c, j, m);
            }
            if (m != NULL) {
                twinbft__message__free_unpacked(m, NULL);
            }
            return;
        }
    }
}

static void tb_client_on_open(tb_tls_link *link, const char *peer, void *arg) {
    tb_client *c = arg;
    (void)peer;
    if (c->busy) {
        (void)tb_tls_send(link, c->msg, c->msg_len); /* a replica that just (re)connected */
    }
}

static void tb_client_on_retransmit(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    tb_client_send_all(arg);
}

static void tb_client_on_deadline(evutil_socket_t fd, short what, void *arg) {
    tb_client *c = arg;
    (void)fd, (void)what;
    if (c->busy) {
        tb_client_finish(c, c->agreed ? 0 : TB_ERR_QUORUM, NULL, 0);
    }
}

static int tb_client_check_config(const tb_client_config *cfg) {
    if (cfg->n == 0 || cfg->n > PROTO_MEMBERS_MAX || 3 * cfg->f + 1 > cfg->n ||
        cfg->cluster_id_len > PROTO_CLUSTER_ID_BYTES_MAX || cfg->first_number == 0 ||
        cfg->ca_path == NULL || cfg->cert_path == NULL || cfg->key_path == NULL) {
        return TB_ERR_INVALID;
    }
    for (uint32_t j = 0; j < cfg->n; j++) {
        if (memchr(cfg->members[j].host, '\0', TB_CLIENT_HOST_BYTES) == NULL ||
            cfg->members[j].port == 0) {
            return TB_ERR_INVALID;
        }
    }
    return 0;
}

static int tb_client_connect_all(tb_client *c) {
    tb_tls_callbacks cb = {tb_client_on_open, tb_client_on_frame, NULL, c};
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        char want[32];
        snprintf(want, sizeof want, "replica-%u", (unsigned)j);
        int rc = proto_pubkey_from_raw(c->cfg.members[j].pubkey, &c->trust.keys[j]);
        if (rc == 0) {
            rc = tb_tls_connect(c->base, c->tls, c->cfg.members[j].host, c->cfg.members[j].port,
                                want, &cb, &c->links[j]);
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int tb_client_new(struct event_base *base, const tb_client_config *cfg, tb_client **out) {
    tb_client *c = NULL;
    int rc = TB_ERR_INVALID;
    *out = NULL;
    if (base == NULL || cfg == NULL || tb_client_check_config(cfg) != 0) {
        return TB_ERR_INVALID;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        return TB_ERR_NOMEM;
    }
    c->base = base;
    c->cfg = *cfg;
    c->cfg.ca_path = c->cfg.cert_path = c->cfg.key_path = NULL; /* not kept past this call */
    if (c->cfg.timeout_ms == 0) {
        c->cfg.timeout_ms = TB_CLIENT_TIMEOUT_MS_DEFAULT;
    }
    c->number = cfg->first_number;
    memcpy(c->trust.cluster_id, cfg->cluster_id, cfg->cluster_id_len);
    c->trust.cluster_id_len = cfg->cluster_id_len;
    c->trust.epoch = cfg->epoch;
    c->trust.n = cfg->n;
    c->trust.f = cfg->f;
    c->retransmit = event_new(base, -1, EV_PERSIST, tb_client_on_retransmit, c);
    c->deadline = evtimer_new(base, tb_client_on_deadline, c);
    if (c->retransmit == NULL || c->deadline == NULL) {
        rc = TB_ERR_NOMEM;
        goto fail;
    }
    rc = tb_tls_ctx_load(cfg->ca_path, cfg->cert_path, cfg->key_path, &c->tls);
    if (rc != 0) {
        goto fail;
    }
    rc = tb_client_connect_all(c);
    if (rc != 0) {
        goto fail;
    }
    *out = c;
    return 0;
fail:
    tb_client_free(c);
    return rc;
}

void tb_client_free(tb_client *c) {
    if (c == NULL) {
        return;
    }
    tb_client_clear(c);
    for (uint32_t j = 0; j < PROTO_MEMBERS_MAX; j++) {
        tb_tls_link_free(c->links[j]);
        proto_pubkey_free(c->trust.keys[j]);
    }
    if (c->retransmit != NULL) {
        event_free(c->retransmit);
    }
    if (c->deadline != NULL) {
        event_free(c->deadline);
    }
    tb_tls_ctx_free(c->tls);
    free(c);
}

const char *tb_client_name(const tb_client *c) {
    return tb_tls_ctx_name(c->tls);
}

uint64_t tb_client_next_number(const tb_client *c) {
    return c->number;
}

int tb_client_submit(tb_client *c, const uint8_t *op, size_t len, bool priority, tb_client_cb cb,
                     void *arg) {
    if (c->busy) {
        return TB_ERR_STATE;
    }
    if (op == NULL || len == 0 || cb == NULL) {
        return TB_ERR_INVALID;
    }
    if (len > TB_CLIENT_OP_BYTES_MAX) {
        return TB_ERR_TOO_LARGE;
    }
    Twinbft__Request r = TWINBFT__REQUEST__INIT;
    r.client = (char *)tb_tls_ctx_name(c->tls);
    r.number = c->number;
    r.op = (ProtobufCBinaryData){len, (uint8_t *)op};
    r.priority = priority;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_REQUEST;
    m.request = &r;
    int rc = proto_message_pack(&m, &c->msg, &c->msg_len);
    if (rc != 0) {
        return rc;
    }
    c->busy = true;
    c->cb = cb;
    c->cb_arg = arg;
    struct timeval every = {TB_CLIENT_RETRANSMIT_MS / 1000,
                            (TB_CLIENT_RETRANSMIT_MS % 1000) * 1000};
    struct timeval limit = {c->cfg.timeout_ms / 1000, (c->cfg.timeout_ms % 1000) * 1000};
    event_add(c->retransmit, &every);
    event_add(c->deadline, &limit);
    tb_client_send_all(c);
    return 0;
}
