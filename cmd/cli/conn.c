/* The CLI as a client of the cluster: the cluster file becomes a
 * tb_client_config, an identity directory becomes the client's TLS
 * identity, and the blocking libtwinbft calls become exit codes. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "cmd/cli/cli.h"
#include "proto/pki.h"
#include "proto/tb_assert.h"

_Static_assert((int)TB_MEMBERS_MAX >= (int)REP_MEMBERS_MAX, "every member of a cluster file fits");
_Static_assert((int)TB_HOST_BYTES >= (int)REP_HOST_BYTES_MAX, "every host of a cluster file fits");
_Static_assert((int)TB_CLUSTER_ID_BYTES_MAX >= (int)REP_CLUSTER_ID_BYTES_MAX, "cluster ids fit");

int cli_identity_name(const char *dir, char *name, size_t cap) {
    char path[CLI_PATH_BYTES_MAX], cn[PROTO_NAME_BYTES_MAX];
    X509 *cert = NULL;
    int rc = cli_join(path, sizeof path, dir, "cert.pem") ? proto_pki_load_cert(path, &cert)
                                                          : TB_ERR_TOO_LARGE;
    if (rc == 0) {
        rc = proto_pki_name(cert, cn);
    }
    X509_free(cert);
    if (rc == 0 && (size_t)snprintf(name, cap, "%s", cn) >= cap) {
        rc = TB_ERR_TOO_LARGE;
    }
    return rc;
}

/* Member j's raw Ed25519 key, from the certificate the cluster file names. */
static int cli_member_key(const cli_ctx *c, const rep_member *m, uint8_t pub[TB_PUBKEY_BYTES]) {
    X509 *cert = NULL;
    int rc = proto_pki_load_cert(m->cert_path, &cert);
    if (rc == 0) {
        rc = proto_pki_pubkey(cert, pub);
    }
    X509_free(cert);
    if (rc != 0) {
        cli_fail(c, rc, "replica %" PRIu32 ": cannot read its public key from %s: %s", m->id,
                 m->cert_path, tb_strerror(rc));
    }
    return rc;
}

int cli_conn_load(const cli_ctx *c, cli_conn *k) {
    char err[REP_CONFIG_ERR_BYTES];
    memset(k, 0, sizeof *k);
    if (c->g->cluster == NULL || c->g->cluster[0] == '\0') {
        return cli_usage_error(c, "no cluster file: give --cluster FILE or set TWINBFT_CLUSTER");
    }
    k->cluster = malloc(sizeof *k->cluster);
    if (k->cluster == NULL) {
        return cli_fail(c, CLI_EXIT_FAILED, "out of memory");
    }
    if (rep_cluster_load(c->g->cluster, k->cluster, err, sizeof err) != 0) {
        return cli_fail(c, CLI_EXIT_FAILED, "%s", err);
    }
    const rep_cluster *cl = k->cluster;
    tb_client_config *cfg = &k->cfg;
    cfg->n = cl->n;
    cfg->f = (cl->n - 1) / 3;
    cfg->cluster_id_len = strlen(cl->id);
    memcpy(cfg->cluster_id, cl->id, cfg->cluster_id_len);
    cfg->epoch = cl->epoch;
    for (uint32_t j = 0; j < cl->n; j++) {
        snprintf(cfg->members[j].host, sizeof cfg->members[j].host, "%s", cl->members[j].host);
        cfg->members[j].port = cl->members[j].port;
        if (cli_member_key(c, &cl->members[j], cfg->members[j].pubkey) != 0) {
            return CLI_EXIT_FAILED;
        }
    }
    cfg->timeout_ms = (uint32_t)c->g->timeout_ms;
    return CLI_EXIT_OK;
}

/* Request numbers must grow strictly across runs of the CLI as the same
 * principal, and each run is a new process with no memory of the last. The
 * realtime clock in microseconds does that without a state file: starting
 * a process and connecting takes far longer than a microsecond, so two runs
 * one after the other get increasing numbers, and NTP slews rather than
 * steps the clock in normal operation. Should it step backwards, the
 * replicas ignore the stale numbers and the command times out rather than
 * executing twice. */
static uint64_t cli_first_number(void) {
    struct timespec ts = {0};
    int rc = clock_gettime(CLOCK_REALTIME, &ts);
    TB_ASSERT(rc == 0); /* CLOCK_REALTIME always exists */
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u + 1u;
}

static int cli_identity_paths(const cli_ctx *c, cli_conn *k, const char *dir) {
    if (dir == NULL || dir[0] == '\0') {
        return cli_usage_error(c, "no identity: give --identity DIR or set TWINBFT_IDENTITY");
    }
    if (!cli_join(k->ca, sizeof k->ca, dir, "ca.pem") ||
        !cli_join(k->cert, sizeof k->cert, dir, "cert.pem") ||
        !cli_join(k->key, sizeof k->key, dir, "key.pem")) {
        return cli_fail(c, CLI_EXIT_FAILED, "identity path %s is too long", dir);
    }
    k->cfg.ca_path = k->ca;
    k->cfg.cert_path = k->cert;
    k->cfg.key_path = k->key;
    return CLI_EXIT_OK;
}

int cli_conn_open(const cli_ctx *c, cli_conn *k, const char *dir) {
    int rc = cli_conn_load(c, k);
    if (rc == CLI_EXIT_OK) {
        rc = cli_identity_paths(c, k, dir != NULL ? dir : c->g->identity);
    }
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    k->cfg.first_number = cli_first_number();
    k->base = event_base_new();
    if (k->base == NULL) {
        return cli_fail(c, CLI_EXIT_FAILED, "cannot create an event loop");
    }
    rc = tb_client_new(k->base, &k->cfg, &k->client);
    if (rc != 0) {
        return cli_fail(c, CLI_EXIT_FAILED, "cannot start a client as %s: %s",
                        dir != NULL ? dir : c->g->identity, tb_strerror(rc));
    }
    rc = tb_client_connect_wait(k->client, (uint32_t)c->g->timeout_ms);
    if (rc != 0) {
        return cli_fail(c, CLI_EXIT_UNREACHABLE,
                        "no replica of %s reachable within %ld ms (are they up? is the "
                        "identity from this cluster's CA?)",
                        c->g->cluster, c->g->timeout_ms);
    }
    return CLI_EXIT_OK;
}

void cli_conn_close(cli_conn *k) {
    tb_client_free(k->client);
    if (k->base != NULL) {
        event_base_loop(k->base, EVLOOP_NONBLOCK); /* see tb_client_free */
        event_base_free(k->base);
    }
    free(k->cluster);
    memset(k, 0, sizeof *k);
}

/* `cluster "ID" epoch N`, with bytes that do not print as '?'. */
static void cli_served_describe(const uint8_t *id, size_t id_len, uint64_t epoch, char *out,
                                size_t cap) {
    char text[TB_CLUSTER_ID_BYTES_MAX + 1];
    size_t len = id_len < TB_CLUSTER_ID_BYTES_MAX ? id_len : TB_CLUSTER_ID_BYTES_MAX;
    for (size_t i = 0; i < len; i++) {
        text[i] = id[i] >= 0x20 && id[i] < 0x7f && id[i] != '"' ? (char)id[i] : '?';
    }
    text[len] = '\0';
    snprintf(out, cap, "cluster \"%s\" epoch %" PRIu64, text, epoch);
}

/* The replicas are not the cluster the cluster file names: say which is
 * which. libtwinbft refused before sending anything to be ordered. */
static int cli_wrong_cluster(const cli_ctx *c, const cli_conn *k, const char *what) {
    tb_served s;
    char have[128], named[128];
    if (tb_client_served(k->client, &s) != TB_ERR_WRONG_CLUSTER) {
        s.cluster_id_len = 0;
        s.epoch = 0;
    }
    cli_served_describe(s.cluster_id, s.cluster_id_len, s.epoch, have, sizeof have);
    cli_served_describe(k->cfg.cluster_id, k->cfg.cluster_id_len, k->cfg.epoch, named,
                        sizeof named);
    return cli_fail(c, CLI_EXIT_FAILED,
                    "the replicas serve %s, but %s names %s: the %s was not submitted (use the "
                    "cluster's current cluster file)",
                    have, c->g->cluster, named, what);
}

static int cli_call_exit(const cli_ctx *c, const cli_conn *k, int rc, const char *what) {
    if (rc == 0) {
        return CLI_EXIT_OK;
    }
    if (rc == TB_ERR_WRONG_CLUSTER) {
        return cli_wrong_cluster(c, k, what);
    }
    if (rc == TB_ERR_TIMEOUT) {
        return cli_fail(c, CLI_EXIT_UNREACHABLE,
                        "no answer from f+1 agreeing replicas within %ld ms (the %s may still "
                        "execute later)",
                        c->g->timeout_ms, what);
    }
    return cli_fail(c, CLI_EXIT_FAILED, "%s failed: %s", what, tb_strerror(rc));
}

int cli_submit(const cli_ctx *c, cli_conn *k, const Twinbft__SmOp *op, tb_owned *out) {
    size_t len = twinbft__sm_op__get_packed_size(op);
    if (len > TB_CLIENT_OP_BYTES_MAX) {
        return cli_fail(c, CLI_EXIT_USAGE, "the operation is %zu bytes, above the limit of %d", len,
                        TB_CLIENT_OP_BYTES_MAX);
    }
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        return cli_fail(c, CLI_EXIT_FAILED, "out of memory");
    }
    twinbft__sm_op__pack(op, buf);
    int rc = tb_client_submit_wait(k->client, buf, len, out);
    free(buf);
    return cli_call_exit(c, k, rc, "intent");
}

int cli_query(const cli_ctx *c, cli_conn *k, const Twinbft__SmQuery *q, tb_owned *out) {
    size_t len = twinbft__sm_query__get_packed_size(q);
    if (len > TB_CLIENT_OP_BYTES_MAX) {
        return cli_fail(c, CLI_EXIT_USAGE, "the query is %zu bytes, above the limit of %d", len,
                        TB_CLIENT_OP_BYTES_MAX);
    }
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        return cli_fail(c, CLI_EXIT_FAILED, "out of memory");
    }
    twinbft__sm_query__pack(q, buf);
    int rc = tb_client_query_wait(k->client, buf, len, out);
    free(buf);
    return cli_call_exit(c, k, rc, "query");
}

static int cli_write_cert(const cli_ctx *c, const tb_owned *r) {
    if (r->cert == NULL) {
        return cli_fail(c, CLI_EXIT_FAILED,
                        "--cert-out %s: the result came without a certificate (fewer than a "
                        "quorum of signed replies within %d ms)",
                        c->cert_out, TB_CLIENT_CERT_WAIT_MS);
    }
    FILE *f = fopen(c->cert_out, "wb");
    bool ok = f != NULL && fwrite(r->cert, 1, r->cert_len, f) == r->cert_len;
    ok = f != NULL && fclose(f) == 0 && ok;
    if (!ok) {
        return cli_fail(c, CLI_EXIT_FAILED, "--cert-out %s: cannot write the certificate",
                        c->cert_out);
    }
    return CLI_EXIT_OK;
}

int cli_run_op(const cli_ctx *c, const Twinbft__SmOp *op) {
    cli_conn k;
    tb_owned r = {0};
    int rc = cli_conn_open(c, &k, NULL);
    if (rc == CLI_EXIT_OK) {
        rc = cli_submit(c, &k, op, &r);
    }
    if (rc == CLI_EXIT_OK) {
        rc = cli_print_result(c, op, &r);
        int wrc = c->cert_out != NULL ? cli_write_cert(c, &r) : CLI_EXIT_OK;
        rc = rc == CLI_EXIT_OK ? wrc : rc;
    }
    tb_owned_clear(&r);
    cli_conn_close(&k);
    return rc;
}

int cli_run_query(const cli_ctx *c, const Twinbft__SmQuery *q) {
    cli_conn k;
    tb_owned r = {0};
    int rc = cli_conn_open(c, &k, NULL);
    if (rc == CLI_EXIT_OK) {
        rc = cli_query(c, &k, q, &r);
    }
    if (rc == CLI_EXIT_OK) {
        rc = cli_print_query(c, &r);
    }
    tb_owned_clear(&r);
    cli_conn_close(&k);
    return rc;
}
