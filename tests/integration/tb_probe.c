/* A test client for the integration tests, on libtwinbft: connects to every
 * replica as the identity in DIR, submits COUNT state-machine intents one
 * after another (a role grant, then config puts), each completed by f+1
 * matching replies, and checks that the last one comes with a quorum
 * certificate that verifies (tb_cert_verify) while a copy with one flipped
 * byte does not. Prints `completed=N` and exits 0, or exits 1 after TIMEOUT
 * seconds. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "consensus/pbft.h"
#include "proto/pki.h"
#include "proto/sm.pb-c.h"
#include "replica/config.h"
#include "twinbft/twinbft.h"

static struct {
    rep_cluster cl;
    tb_client_config cfg;
    struct event_base *base;
    tb_client *client;
    uint64_t number, first, last;
    int failed;
} P;

static size_t pack_op(uint64_t number, uint8_t *op) {
    Twinbft__SmOp o = TWINBFT__SM_OP__INIT;
    Twinbft__SmAclGrant g = TWINBFT__SM_ACL_GRANT__INIT;
    Twinbft__SmConfigPut put = TWINBFT__SM_CONFIG_PUT__INIT;
    char key[32];
    if (number == 1) {
        g.principal = (char *)tb_client_name(P.client);
        g.roles = TWINBFT__SM_ROLE__SM_ROLE_ADMIN | TWINBFT__SM_ROLE__SM_ROLE_OPERATOR;
        o.op_case = TWINBFT__SM_OP__OP_ACL_GRANT, o.acl_grant = &g;
    } else {
        snprintf(key, sizeof key, "probe/%llu", (unsigned long long)number);
        put.key = key;
        put.value = (ProtobufCBinaryData){strlen(key), (uint8_t *)key};
        o.op_case = TWINBFT__SM_OP__OP_CONFIG_PUT, o.config_put = &put;
    }
    return twinbft__sm_op__pack(&o, op);
}

static int check_certificate(const tb_result *r) {
    if (r->cert == NULL) {
        printf("certificate: none within the wait\n");
        return TB_ERR_QUORUM;
    }
    int rc = tb_cert_verify(&P.cfg, r->cert, r->cert_len, 0, NULL);
    uint8_t *copy = malloc(r->cert_len);
    if (copy == NULL) {
        return TB_ERR_NOMEM;
    }
    memcpy(copy, r->cert, r->cert_len);
    copy[r->cert_len / 2] ^= 0x01;
    int tampered = tb_cert_verify(&P.cfg, copy, r->cert_len, 0, NULL);
    free(copy);
    printf("certificate: %s; tampered copy: %s\n", rc == 0 ? "valid" : tb_strerror(rc),
           tampered == 0 ? "ACCEPTED" : "rejected");
    return rc == 0 && tampered != 0 ? 0 : TB_ERR_MISMATCH;
}

static void submit_next(void);

static void on_result(int status, const tb_result *r, void *arg) {
    (void)arg;
    if (status != 0) {
        /* Timed out (the library gives up after the whole TIMEOUT): report it. */
        fprintf(stderr, "tb_probe: request %llu: %s\n", (unsigned long long)P.number,
                tb_strerror(status));
        event_base_loopexit(P.base, NULL);
        return;
    }
    if (P.number == P.last) {
        P.failed = check_certificate(r) != 0;
        event_base_loopexit(P.base, NULL);
        return;
    }
    P.number++;
    submit_next();
}

static void submit_next(void) {
    uint8_t op[256];
    size_t len = pack_op(P.number, op);
    if (tb_client_submit(P.client, op, len, on_result, NULL) != 0) {
        abort(); /* the probe has one request outstanding at a time */
    }
}

static int load_config(const char *ca, const char *cert, const char *key, uint32_t timeout_s) {
    tb_client_config *c = &P.cfg;
    c->n = P.cl.n;
    c->f = pbft_f(P.cl.n);
    c->cluster_id_len = strlen(P.cl.id);
    memcpy(c->cluster_id, P.cl.id, c->cluster_id_len);
    c->epoch = P.cl.epoch;
    for (uint32_t j = 0; j < P.cl.n; j++) {
        X509 *x = NULL;
        size_t host_len = strlen(P.cl.members[j].host);
        if (host_len >= sizeof c->members[j].host) {
            return TB_ERR_TOO_LARGE;
        }
        memcpy(c->members[j].host, P.cl.members[j].host, host_len + 1);
        c->members[j].port = P.cl.members[j].port;
        if (proto_pki_load_cert(P.cl.members[j].cert_path, &x) ||
            proto_pki_pubkey(x, c->members[j].pubkey)) {
            X509_free(x);
            return TB_ERR_INVALID;
        }
        X509_free(x);
    }
    c->ca_path = ca;
    c->cert_path = cert;
    c->key_path = key;
    c->first_number = P.first;
    c->timeout_ms = timeout_s * 1000;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: tb_probe CLUSTER_FILE IDENTITY_DIR FIRST_NUMBER COUNT TIMEOUT_S\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
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
    uint32_t timeout_s = (uint32_t)atoi(argv[5]);
    P.base = event_base_new();
    if (P.first == 0 || timeout_s == 0 || load_config(ca, cert, key, timeout_s) != 0 ||
        tb_client_new(P.base, &P.cfg, &P.client) != 0) {
        fprintf(stderr, "tb_probe: cannot load the identity in %s or the members' certificates\n",
                argv[2]);
        return 2;
    }
    struct timeval limit = {timeout_s, 0};
    event_base_loopexit(P.base, &limit);
    P.failed = 1;
    submit_next();
    event_base_dispatch(P.base);
    uint64_t done = P.number - P.first + (P.failed ? 0 : 1);
    printf("completed=%llu\n", (unsigned long long)done);
    tb_client_free(P.client);
    event_base_loop(P.base, EVLOOP_NONBLOCK); /* see tb_client_free */
    event_base_free(P.base);
    return P.failed ? 1 : 0;
}
