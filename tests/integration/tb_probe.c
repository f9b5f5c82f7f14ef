/* A test client for the integration tests: connects to every replica over
 * mutual TLS as the identity in DIR, submits COUNT state-machine intents one
 * after another (a role grant, then config puts), waits for f+1 matching
 * replies to each, and for the last one assembles the quorum certificate
 * and checks that it verifies and that a copy with one flipped byte does
 * not. Prints `completed=N` and exits 0, or exits 1 after TIMEOUT seconds.
 * (The edge client library will replace this; its tests will too.) */
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

enum { REPLIES_MAX = 64 };

static struct {
    rep_cluster cl;
    struct event_base *base;
    tb_tls_link *links[REP_MEMBERS_MAX];
    proto_trust trust;
    const char *name;
    uint64_t number, first, last;
    Twinbft__Reply *replies[REPLIES_MAX];
    size_t n_replies;
    int failed;
} P;

static void send_request(void) {
    uint8_t op[256];
    Twinbft__SmOp o = TWINBFT__SM_OP__INIT;
    Twinbft__SmAclGrant g = TWINBFT__SM_ACL_GRANT__INIT;
    Twinbft__SmConfigPut put = TWINBFT__SM_CONFIG_PUT__INIT;
    char key[32];
    if (P.number == 1) {
        g.principal = (char *)P.name;
        g.roles = TWINBFT__SM_ROLE__SM_ROLE_ADMIN | TWINBFT__SM_ROLE__SM_ROLE_OPERATOR;
        o.op_case = TWINBFT__SM_OP__OP_ACL_GRANT, o.acl_grant = &g;
    } else {
        snprintf(key, sizeof key, "probe/%llu", (unsigned long long)P.number);
        put.key = key;
        put.value = (ProtobufCBinaryData){strlen(key), (uint8_t *)key};
        o.op_case = TWINBFT__SM_OP__OP_CONFIG_PUT, o.config_put = &put;
    }
    Twinbft__Request r = TWINBFT__REQUEST__INIT;
    r.client = (char *)P.name;
    r.number = P.number;
    r.op = (ProtobufCBinaryData){twinbft__sm_op__pack(&o, op), op};
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_REQUEST, m.request = &r;
    uint8_t *b = NULL;
    size_t len = 0;
    if (proto_message_pack(&m, &b, &len) != 0) {
        abort();
    }
    for (uint32_t j = 0; j < P.cl.n; j++) {
        if (P.links[j] && tb_tls_link_is_open(P.links[j])) {
            tb_tls_send(P.links[j], b, len);
        }
    }
    free(b);
}

static void clear_replies(void) {
    for (size_t i = 0; i < P.n_replies; i++) {
        twinbft__reply__free_unpacked(P.replies[i], NULL);
    }
    P.n_replies = 0;
}

static int check_certificate(void) {
    uint8_t *cert = NULL;
    size_t len = 0;
    int rc = proto_cert_assemble(&P.trust, (const Twinbft__Reply *const *)P.replies, P.n_replies,
                                 &cert, &len);
    if (rc != 0) {
        return rc; /* fewer than a quorum answered yet: wait for more */
    }
    rc = proto_cert_verify(&P.trust, cert, len, 0, NULL);
    cert[len / 2] ^= 0x01;
    int tampered = proto_cert_verify(&P.trust, cert, len, 0, NULL);
    free(cert);
    printf("certificate: %s; tampered copy: %s\n", rc == 0 ? "valid" : tb_strerror(rc),
           tampered == 0 ? "ACCEPTED" : "rejected");
    return rc == 0 && tampered != 0 ? 0 : TB_ERR_MISMATCH;
}

/* f+1 replies from distinct replicas with the same (seq, leaf) complete a request. */
static bool complete(void) {
    for (size_t i = 0; i < P.n_replies; i++) {
        uint32_t same = 0;
        for (size_t k = 0; k < P.n_replies; k++) {
            same += P.replies[k]->seq == P.replies[i]->seq &&
                    P.replies[k]->leaf.len == P.replies[i]->leaf.len &&
                    memcmp(P.replies[k]->leaf.data, P.replies[i]->leaf.data,
                           P.replies[i]->leaf.len) == 0;
        }
        if (same >= pbft_f(P.cl.n) + 1) {
            return true;
        }
    }
    return false;
}

static void on_frame(tb_tls_link *l, const char *peer, const uint8_t *d, size_t len, void *a) {
    (void)l, (void)peer, (void)a;
    Twinbft__Message *m = proto_message_unpack(d, len);
    if (m == NULL || m->kind_case != TWINBFT__MESSAGE__KIND_REPLY) {
        goto done;
    }
    Twinbft__ResultLeaf *leaf =
        twinbft__result_leaf__unpack(NULL, m->reply->leaf.len, m->reply->leaf.data);
    bool mine = leaf && leaf->number == P.number && strcmp(leaf->client, P.name) == 0;
    if (leaf) {
        twinbft__result_leaf__free_unpacked(leaf, NULL);
    }
    for (size_t i = 0; mine && i < P.n_replies; i++) {
        mine = P.replies[i]->replica != m->reply->replica;
    }
    if (!mine || P.n_replies == REPLIES_MAX) {
        goto done;
    }
    P.replies[P.n_replies++] = m->reply;
    m->reply = NULL, m->kind_case = TWINBFT__MESSAGE__KIND__NOT_SET;
    if (P.number == P.last && complete()) {
        int rc = check_certificate();
        if (rc == 0 || P.n_replies == P.cl.n) {
            P.failed = rc != 0;
            event_base_loopexit(P.base, NULL);
        }
    } else if (complete()) {
        clear_replies();
        P.number++;
        send_request();
    }
done:
    if (m) {
        twinbft__message__free_unpacked(m, NULL);
    }
}

static void on_open(tb_tls_link *l, const char *peer, void *a) {
    (void)l, (void)peer, (void)a;
    send_request(); /* (re)send the outstanding request to whoever just connected */
}

static void on_close(tb_tls_link *l, const char *reason, void *a) {
    (void)l, (void)reason, (void)a;
}

static void on_retry(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what, (void)arg;
    send_request(); /* retransmission: replicas answer repeats from their client table */
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

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: tb_probe CLUSTER_FILE IDENTITY_DIR FIRST_NUMBER COUNT TIMEOUT_S\n");
        return 2;
    }
    char err[REP_CONFIG_ERR_BYTES], ca[600], cert[600], key[600];
    if (rep_cluster_load(argv[1], &P.cl, err, sizeof err) != 0) {
        fprintf(stderr, "tb_probe: %s\n", err);
        return 2;
    }
    snprintf(cert, sizeof cert, "%s/cert.pem", argv[2]);
    snprintf(key, sizeof key, "%s/key.pem", argv[2]);
    /* The identity's own CA copy when it has one (as `cluster init` writes
     * it): a client of another cluster then fails the handshake. */
    snprintf(ca, sizeof ca, "%s/ca.pem", argv[2]);
    FILE *f = fopen(ca, "r");
    if (f != NULL) {
        fclose(f);
    } else {
        snprintf(ca, sizeof ca, "%s", P.cl.ca_path);
    }
    P.first = P.number = strtoull(argv[3], NULL, 10);
    P.last = P.first + strtoull(argv[4], NULL, 10) - 1;
    tb_tls_ctx *tls = NULL;
    if (tb_tls_ctx_load(ca, cert, key, &tls) != 0 || load_trust() != 0) {
        fprintf(stderr, "tb_probe: cannot load the identity in %s or the members' certificates\n",
                argv[2]);
        return 2;
    }
    tb_tls_ctx_set_log(tls, NULL, NULL);
    P.name = tb_tls_ctx_name(tls);
    P.base = event_base_new();
    tb_tls_callbacks cb = {on_open, on_frame, on_close, NULL};
    for (uint32_t j = 0; j < P.cl.n; j++) {
        char want[32];
        snprintf(want, sizeof want, "replica-%u", j);
        tb_tls_connect(P.base, tls, P.cl.members[j].host, P.cl.members[j].port, want, &cb,
                       &P.links[j]);
    }
    struct event *retry = event_new(P.base, -1, EV_PERSIST, on_retry, NULL);
    struct timeval every = {1, 0}, limit = {atoi(argv[5]), 0};
    event_add(retry, &every);
    event_base_loopexit(P.base, &limit);
    P.failed = 1;
    event_base_dispatch(P.base);
    uint64_t done = P.number - P.first + (P.failed ? 0 : 1);
    printf("completed=%llu\n", (unsigned long long)done);
    event_free(retry);
    clear_replies();
    for (uint32_t j = 0; j < P.cl.n; j++) {
        tb_tls_link_free(P.links[j]);
        proto_pubkey_free(P.trust.keys[j]);
    }
    tb_tls_ctx_free(tls);
    event_base_free(P.base);
    return P.failed ? 1 : 0;
}
