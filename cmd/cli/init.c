/* cluster init (a new cluster's CA, identities and cluster file) and
 * cluster identity (one more identity issued by that CA). */

/* realpath() is an X/Open extension to the POSIX base the build selects. */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "cmd/cli/cli.h"
#include "proto/hex.h"
#include "proto/pki.h"
#include "proto/tb_err.h"

enum {
    CLI_BASE_PORT_DEFAULT = 7000,
    CLI_CLUSTER_ID_RANDOM_BYTES = 8,
};

static int cli_mkdir(const cli_ctx *c, const char *path, mode_t mode) {
    if (mkdir(path, mode) != 0 && errno != EEXIST) {
        return cli_fail(c, TB_ERR_IO, "cannot create directory %s: %s", path, strerror(errno));
    }
    return 0;
}

/* One identity in DIR/sub/: key.pem (0600) and cert.pem named cn, and a copy
 * of the CA certificate when the identity is a person's or a device's
 * (with_ca), so that --identity DIR/sub is all the CLI needs. */
static int cli_issue_identity(const cli_ctx *c, EVP_PKEY *ca_key, X509 *ca_cert, const char *dir,
                              const char *sub, const char *cn, bool with_ca) {
    char idir[CLI_PATH_BYTES_MAX], path[CLI_PATH_BYTES_MAX];
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    int rc = TB_ERR_IO;
    if (!cli_join(idir, sizeof idir, dir, sub) || cli_mkdir(c, idir, 0700) != 0) {
        return TB_ERR_IO;
    }
    rc = proto_pki_issue(ca_key, ca_cert, cn, PROTO_CERT_DAYS_DEFAULT, &key, &cert);
    if (rc != 0) {
        cli_fail(c, rc, "cannot issue a certificate for %s: %s", cn, tb_strerror(rc));
        goto fail;
    }
    if (!cli_join(path, sizeof path, idir, "key.pem") || (rc = proto_pki_save_key(key, path)) ||
        !cli_join(path, sizeof path, idir, "cert.pem") || (rc = proto_pki_save_cert(cert, path)) ||
        (with_ca && (!cli_join(path, sizeof path, idir, "ca.pem") ||
                     (rc = proto_pki_save_cert(ca_cert, path))))) {
        rc = rc != 0 ? rc : TB_ERR_TOO_LARGE;
        cli_fail(c, rc, "cannot write %s: %s", path, tb_strerror(rc));
        goto fail;
    }
    rc = 0;
fail:
    EVP_PKEY_free(key);
    X509_free(cert);
    return rc;
}

/* The cluster file cluster init writes: loopback addresses, paths relative
 * to DIR so that the directory can be moved as a whole. */
static void cli_init_cluster(const char *id, uint32_t replicas, uint32_t base, rep_cluster *cl) {
    memset(cl, 0, sizeof *cl);
    snprintf(cl->id, sizeof cl->id, "%s", id);
    snprintf(cl->ca_path, sizeof cl->ca_path, "ca.pem");
    cl->n = replicas;
    cl->history_window = REP_HISTORY_WINDOW_DEFAULT;
    cl->outbox_window = REP_OUTBOX_WINDOW_DEFAULT;
    cl->log_retain = REP_LOG_RETAIN_DEFAULT;
    for (uint32_t i = 0; i < replicas; i++) {
        rep_member *m = &cl->members[i];
        m->id = i;
        snprintf(m->host, sizeof m->host, "127.0.0.1");
        m->port = (uint16_t)(base + i);
        snprintf(m->cert_path, sizeof m->cert_path, "replica-%" PRIu32 "/cert.pem", i);
        snprintf(m->http_host, sizeof m->http_host, "127.0.0.1");
        m->http_port = (uint16_t)(base + CLI_HTTP_PORT_OFFSET + i);
    }
}

/* Everything but the cluster file, which is written last so that its
 * presence means the directory is complete. */
static int cli_init_pki(const cli_ctx *c, const char *dir, uint32_t replicas) {
    char path[CLI_PATH_BYTES_MAX], cn[PROTO_NAME_BYTES_MAX];
    EVP_PKEY *ca_key = NULL;
    X509 *ca_cert = NULL;
    int rc = proto_pki_ca_create("twinbft-ca", PROTO_CERT_DAYS_DEFAULT, &ca_key, &ca_cert);
    if (rc != 0) {
        return cli_fail(c, rc, "cannot create the CA: %s", tb_strerror(rc));
    }
    if (!cli_join(path, sizeof path, dir, "ca-key.pem") ||
        (rc = proto_pki_save_key(ca_key, path)) != 0 ||
        !cli_join(path, sizeof path, dir, "ca.pem") ||
        (rc = proto_pki_save_cert(ca_cert, path)) != 0) {
        rc = rc != 0 ? rc : TB_ERR_TOO_LARGE;
        cli_fail(c, rc, "cannot write %s: %s", path, tb_strerror(rc));
        goto fail;
    }
    for (uint32_t i = 0; i < replicas && rc == 0; i++) {
        snprintf(cn, sizeof cn, "replica-%" PRIu32, i);
        rc = cli_issue_identity(c, ca_key, ca_cert, dir, cn, cn, false);
    }
    if (rc == 0) {
        rc = cli_issue_identity(c, ca_key, ca_cert, dir, "admin", "admin", true);
    }
    if (rc == 0) {
        rc = cli_issue_identity(c, ca_key, ca_cert, dir, "operator", "operator", true);
    }
fail:
    EVP_PKEY_free(ca_key);
    X509_free(ca_cert);
    return rc;
}

static void cli_init_report(const cli_ctx *c, const char *dir, const char *cluster_id) {
    if (c->g->output == CLI_OUTPUT_JSON) {
        /* dir comes from realpath and the id is [A-Za-z0-9._-]; only a quote
         * or backslash in dir would need escaping, and realpath keeps both. */
        printf("{\"cluster_id\":\"%s\",\"cluster_file\":\"%s/cluster.conf\","
               "\"identity\":\"%s/admin\"}\n",
               cluster_id, dir, dir);
        return;
    }
    printf("Created cluster %s in %s.\n", cluster_id, dir);
    printf("To use it:\n");
    printf("  export TWINBFT_CLUSTER=%s/cluster.conf\n", dir);
    printf("  export TWINBFT_IDENTITY=%s/admin\n", dir);
    printf("Once it is up (twinbft up --dir %s), give the operator identity its role:\n", dir);
    printf("  twinbft acl grant operator operator\n");
}

/* The replica count and ports of spec, checked; the cluster id, given or random. */
static int cli_create_check(const cli_ctx *c, const cli_cluster_spec *spec, char *id) {
    const char *size_problem = rep_cluster_size_problem(spec->replicas);
    if (size_problem != NULL) {
        return cli_usage_error(c, "%s %" PRIu32 ": %s", spec->replicas_flag, spec->replicas,
                               size_problem);
    }
    uint32_t base = spec->base_port;
    if (base == 0 || base + CLI_HTTP_PORT_OFFSET + spec->replicas - 1 > UINT16_MAX) {
        return cli_usage_error(c,
                               "--base-port %" PRIu32 " leaves no room for %" PRIu32
                               " replicas and their HTTP ports (1 to %d)",
                               base, spec->replicas,
                               UINT16_MAX - CLI_HTTP_PORT_OFFSET - (int)spec->replicas + 1);
    }
    if (spec->cluster_id != NULL) {
        snprintf(id, REP_CLUSTER_ID_BYTES_MAX, "%s", spec->cluster_id);
        return CLI_EXIT_OK;
    }
    uint8_t raw[CLI_CLUSTER_ID_RANDOM_BYTES];
    if (RAND_bytes(raw, sizeof raw) != 1) {
        return cli_fail(c, CLI_EXIT_FAILED, "no randomness for a cluster id");
    }
    proto_hex(raw, sizeof raw, id);
    return CLI_EXIT_OK;
}

int cli_cluster_create(const cli_ctx *c, const char *given, const cli_cluster_spec *spec,
                       cli_cluster_made *out) {
    char real[PATH_MAX], conf[CLI_PATH_BYTES_MAX];
    int rc = cli_create_check(c, spec, out->id);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    if (cli_mkdir(c, given, 0755) != 0) {
        return CLI_EXIT_FAILED;
    }
    if (realpath(given, real) == NULL || !cli_join(conf, sizeof conf, real, "cluster.conf")) {
        return cli_fail(c, CLI_EXIT_FAILED, "cannot resolve %s: %s", given, strerror(errno));
    }
    snprintf(out->dir, sizeof out->dir, "%s", real); /* fits: conf above is longer */
    /* Re-running init would replace the CA and lock every existing member
     * and client out of the cluster. */
    if (access(conf, F_OK) == 0) {
        return cli_fail(c, CLI_EXIT_FAILED,
                        "%s already exists; refusing to overwrite a cluster (remove the "
                        "directory or choose another --dir)",
                        conf);
    }
    if (cli_init_pki(c, out->dir, spec->replicas) != 0) {
        return CLI_EXIT_FAILED;
    }
    rep_cluster *cl = malloc(sizeof *cl);
    if (cl == NULL) {
        return cli_fail(c, CLI_EXIT_FAILED, "out of memory");
    }
    cli_init_cluster(out->id, spec->replicas, spec->base_port, cl);
    rc = rep_cluster_write(cl, conf);
    free(cl);
    if (rc != 0) {
        return cli_fail(c, CLI_EXIT_FAILED, "cannot write %s: %s", conf, tb_strerror(rc));
    }
    return CLI_EXIT_OK;
}

static int cli_cluster_init(cli_ctx *c) {
    static cli_cluster_made made; /* two paths: keep them off the stack */
    cli_cluster_spec spec = {.cluster_id = cli_opt(c, "cluster-id"), .replicas_flag = "--replicas"};
    int rc = cli_opt_u32(c, "replicas", UINT32_MAX, 0, &spec.replicas);
    if (rc == CLI_EXIT_OK) {
        rc = cli_opt_u32(c, "base-port", UINT16_MAX, CLI_BASE_PORT_DEFAULT, &spec.base_port);
    }
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    if (spec.cluster_id != NULL && !rep_cluster_id_valid(spec.cluster_id)) {
        return cli_usage_error(c, "--cluster-id must be 1-%d characters of A-Z a-z 0-9 . _ -",
                               REP_CLUSTER_ID_BYTES_MAX - 1);
    }
    rc = cli_cluster_create(c, cli_opt(c, "dir"), &spec, &made);
    if (rc == CLI_EXIT_OK) {
        cli_init_report(c, made.dir, made.id);
    }
    return rc;
}

/* Names become directory names and certificate subjects: the state
 * machine's principal alphabet (printable ASCII, no space), minus '/' so
 * that DIR/NAME is one directory. */
static bool cli_identity_name_valid(const char *name) {
    size_t len = strlen(name);
    if (len == 0 || len >= PROTO_NAME_BYTES_MAX || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0 || strncmp(name, "replica-", 8) == 0) {
        return false;
    }
    for (const char *p = name; *p != '\0'; p++) {
        if (*p < 0x21 || *p > 0x7e || *p == '/') {
            return false;
        }
    }
    return true;
}

int cli_identity_issue(const cli_ctx *c, const char *ca_dir, const char *dir, const char *name) {
    char path[CLI_PATH_BYTES_MAX], idir[CLI_PATH_BYTES_MAX];
    EVP_PKEY *ca_key = NULL;
    X509 *ca_cert = NULL;
    int rc = TB_ERR_IO;
    if (!cli_join(idir, sizeof idir, dir, name) || !cli_join(path, sizeof path, idir, "cert.pem")) {
        return cli_fail(c, CLI_EXIT_FAILED, "path %s/%s is too long", dir, name);
    }
    if (access(path, F_OK) == 0) {
        return cli_fail(c, CLI_EXIT_FAILED, "%s already exists; refusing to replace an identity",
                        path);
    }
    if (!cli_join(path, sizeof path, ca_dir, "ca-key.pem") ||
        (rc = proto_pki_load_key(path, &ca_key)) != 0 ||
        !cli_join(path, sizeof path, ca_dir, "ca.pem") ||
        (rc = proto_pki_load_cert(path, &ca_cert)) != 0) {
        cli_fail(c, rc, "cannot read the CA's %s: %s (is %s a directory made by cluster init?)",
                 path, tb_strerror(rc), ca_dir);
        goto fail;
    }
    rc = cli_issue_identity(c, ca_key, ca_cert, dir, name, name, true);
fail:
    EVP_PKEY_free(ca_key);
    X509_free(ca_cert);
    return rc == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

static int cli_cluster_identity(cli_ctx *c) {
    const char *dir = cli_opt(c, "dir"), *name = cli_opt(c, "name"), *roles_s = cli_opt(c, "roles");
    uint32_t roles = 0;
    if (!cli_identity_name_valid(name)) {
        return cli_usage_error(c,
                               "--name \"%s\": expected 1-%d printable characters without space "
                               "or '/', not . or .., not replica-*",
                               name, PROTO_NAME_BYTES_MAX - 1);
    }
    if (roles_s != NULL && cli_roles_parse(roles_s, &roles) != 0) {
        return cli_usage_error(c,
                               "--roles \"%s\": expected a comma-separated list of admin, "
                               "operator, owner, node-agent",
                               roles_s);
    }
    int rc = cli_identity_issue(c, dir, dir, name);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    if (c->g->output == CLI_OUTPUT_TABLE) {
        printf("issued identity %s in %s/%s\n", name, dir, name);
    } else if (roles_s == NULL) {
        printf("{\"name\":\"%s\"}\n", name); /* the name holds no '"' or '\\' worth escaping */
    }
    if (roles_s == NULL) {
        return CLI_EXIT_OK;
    }
    Twinbft__SmAclGrant g = TWINBFT__SM_ACL_GRANT__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    g.principal = (char *)name;
    g.roles = roles;
    op.op_case = TWINBFT__SM_OP__OP_ACL_GRANT, op.acl_grant = &g;
    return cli_run_op(c, &op);
}

static const cli_flag cli_init_flags[] = {
    {"dir", "DIR", CLI_FLAG_REQUIRED, "where to create the cluster"},
    {"replicas", "N", CLI_FLAG_REQUIRED,
     "number of replicas: 1 (development, no fault tolerance) or 4 to 64\n"
     "                           (n >= 3f+1 tolerates f faulty replicas)"},
    {"base-port", "P", 0, "replica i listens on 127.0.0.1:P+i, HTTP on P+100+i (default 7000)"},
    {"cluster-id", "ID", 0, "the cluster's id (default: random hex)"},
    {NULL, NULL, 0, NULL},
};

static const cli_flag cli_identity_flags[] = {
    {"dir", "DIR", CLI_FLAG_REQUIRED, "a cluster directory made by cluster init"},
    {"name", "NAME", CLI_FLAG_REQUIRED, "the principal (certificate common name)"},
    {"roles", "ROLES", 0,
     "also grant these roles through the cluster, as --identity (an admin):\n"
     "                           comma-separated admin,operator,owner,node-agent"},
    {NULL, NULL, 0, NULL},
};

const cli_cmd CLI_INIT_CMDS[] = {
    {"cluster init", "", 0, 0,
     "Create a new cluster's CA, replica and operator identities and its cluster file.",
     "Creates DIR/ca.pem, DIR/ca-key.pem, DIR/replica-<i>/, DIR/admin/, DIR/operator/ and\n"
     "DIR/cluster.conf. Refuses a DIR that already holds a cluster.conf.\n",
     cli_init_flags, 0, cli_cluster_init},
    {"cluster identity", "", 0, 0,
     "Issue one more identity DIR/NAME/{key,cert,ca}.pem from DIR/ca-key.pem.",
     "For node agents, actuators and twin owners. Refuses to replace an existing identity.\n"
     "With --roles the roles are granted by an ordered acl grant (exit 4 if denied).\n",
     cli_identity_flags, CLI_CMD_ORDERED, cli_cluster_identity},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, 0, NULL},
};
