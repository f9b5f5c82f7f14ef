/* twinbft: the operator CLI, one binary with subcommands in etcdctl's manner.
 * This file only parses arguments, wires calls together and picks exit codes. */

/* realpath() is an X/Open extension to the POSIX base the build selects. */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "proto/hex.h"
#include "proto/pki.h"
#include "proto/tb_err.h"
#include "replica/config.h"

/* Exit codes are part of the interface: scripts branch on them. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILED = 1,
    CLI_EXIT_USAGE = 2,
    CLI_EXIT_UNREACHABLE = 3,
    CLI_EXIT_DENIED = 4,
};

enum {
    CLI_TIMEOUT_MS_DEFAULT = 5000,
    CLI_TIMEOUT_MS_MAX = 24 * 3600 * 1000,
    CLI_BASE_PORT_DEFAULT = 7000,
    CLI_HTTP_PORT_OFFSET = 100, /* replica i serves HTTP on base + 100 + i */
    CLI_CLUSTER_ID_RANDOM_BYTES = 8,
    CLI_PATH_BYTES_MAX = 4096,
};

typedef enum cli_output { CLI_OUTPUT_TABLE, CLI_OUTPUT_JSON } cli_output;

typedef struct cli_globals {
    const char *cluster;  /* --cluster or TWINBFT_CLUSTER; may be NULL */
    const char *identity; /* --identity or TWINBFT_IDENTITY; may be NULL */
    cli_output output;
    long timeout_ms;
} cli_globals;

static void cli_usage(FILE *out) {
    fprintf(out, "usage: twinbft [GLOBAL FLAGS] COMMAND [ARGS]\n"
                 "\n"
                 "Operates a twinbft cluster.\n"
                 "\n"
                 "Commands:\n"
                 "  cluster init --dir DIR --replicas N [--base-port P] [--cluster-id ID]\n"
                 "        Create a new cluster's CA, replica and operator identities and its\n"
                 "        cluster file in DIR.\n"
                 "\n"
                 "Global flags:\n"
                 "  --cluster FILE       the cluster file (default: $TWINBFT_CLUSTER)\n"
                 "  --identity DIR       the directory holding key.pem, cert.pem and ca.pem of\n"
                 "                       who you are (default: $TWINBFT_IDENTITY)\n"
                 "  -w, --write-out FMT  output format: table (default) or json\n"
                 "  --timeout DURATION   how long to wait for the cluster, e.g. 500ms, 5s, 1m\n"
                 "                       (default 5s)\n"
                 "  -h, --help           this help\n"
                 "\n"
                 "Exit codes:\n"
                 "  0  success\n"
                 "  1  the command failed\n"
                 "  2  bad arguments\n"
                 "  3  the cluster could not be reached\n"
                 "  4  the cluster refused the request (permission denied)\n");
}

static void cli_commands_hint(void) {
    fprintf(stderr, "available commands: cluster init (see twinbft --help)\n");
}

/* "500ms", "5s", "2m" or a bare number of seconds into milliseconds. */
static int cli_parse_duration(const char *s, long *ms) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    long scale = 0;
    if (end == s || errno != 0 || v < 0) {
        return TB_ERR_INVALID;
    }
    if (strcmp(end, "ms") == 0) {
        scale = 1;
    } else if (strcmp(end, "s") == 0 || *end == '\0') {
        scale = 1000;
    } else if (strcmp(end, "m") == 0) {
        scale = 60 * 1000;
    } else {
        return TB_ERR_INVALID;
    }
    if (v > CLI_TIMEOUT_MS_MAX / scale) {
        return TB_ERR_INVALID;
    }
    *ms = v * scale;
    return 0;
}

static int cli_parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out) {
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v < lo || v > hi) {
        return TB_ERR_INVALID;
    }
    *out = (uint32_t)v;
    return 0;
}

/* DIR/name into out; false when it does not fit. */
static bool cli_join(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap;
}

static int cli_mkdir(const char *path, mode_t mode) {
    if (mkdir(path, mode) != 0 && errno != EEXIST) {
        fprintf(stderr, "twinbft: cluster init: cannot create directory %s: %s\n", path,
                strerror(errno));
        return TB_ERR_IO;
    }
    return 0;
}

typedef struct cli_init_args {
    const char *dir;
    uint32_t replicas;
    uint32_t base_port;
    char cluster_id[REP_CLUSTER_ID_BYTES_MAX];
} cli_init_args;

/* One identity in DIR/sub/: key.pem (0600) and cert.pem named cn, and a copy
 * of the CA certificate when the identity is a person's (with_ca), so that
 * --identity DIR/sub is all the CLI needs. */
static int cli_issue_identity(EVP_PKEY *ca_key, X509 *ca_cert, const char *dir, const char *sub,
                              const char *cn, bool with_ca) {
    char idir[CLI_PATH_BYTES_MAX], path[CLI_PATH_BYTES_MAX];
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    int rc = TB_ERR_IO;
    if (!cli_join(idir, sizeof idir, dir, sub) || cli_mkdir(idir, 0700) != 0) {
        return TB_ERR_IO;
    }
    rc = proto_pki_issue(ca_key, ca_cert, cn, PROTO_CERT_DAYS_DEFAULT, &key, &cert);
    if (rc != 0) {
        fprintf(stderr, "twinbft: cluster init: cannot issue a certificate for %s: %s\n", cn,
                tb_strerror(rc));
        goto fail;
    }
    if (!cli_join(path, sizeof path, idir, "key.pem") || (rc = proto_pki_save_key(key, path)) ||
        !cli_join(path, sizeof path, idir, "cert.pem") || (rc = proto_pki_save_cert(cert, path)) ||
        (with_ca && (!cli_join(path, sizeof path, idir, "ca.pem") ||
                     (rc = proto_pki_save_cert(ca_cert, path))))) {
        rc = rc != 0 ? rc : TB_ERR_TOO_LARGE;
        fprintf(stderr, "twinbft: cluster init: cannot write %s: %s\n", path, tb_strerror(rc));
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
static void cli_init_cluster(const cli_init_args *a, rep_cluster *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->id, sizeof c->id, "%s", a->cluster_id);
    snprintf(c->ca_path, sizeof c->ca_path, "ca.pem");
    c->n = a->replicas;
    for (uint32_t i = 0; i < a->replicas; i++) {
        rep_member *m = &c->members[i];
        m->id = i;
        snprintf(m->host, sizeof m->host, "127.0.0.1");
        m->port = (uint16_t)(a->base_port + i);
        snprintf(m->cert_path, sizeof m->cert_path, "replica-%" PRIu32 "/cert.pem", i);
        snprintf(m->http_host, sizeof m->http_host, "127.0.0.1");
        m->http_port = (uint16_t)(a->base_port + CLI_HTTP_PORT_OFFSET + i);
    }
}

/* Everything but the cluster file, which is written last so that its
 * presence means the directory is complete. */
static int cli_init_pki(const char *dir, uint32_t replicas) {
    char path[CLI_PATH_BYTES_MAX], cn[PROTO_NAME_BYTES_MAX];
    EVP_PKEY *ca_key = NULL;
    X509 *ca_cert = NULL;
    int rc = proto_pki_ca_create("twinbft-ca", PROTO_CERT_DAYS_DEFAULT, &ca_key, &ca_cert);
    if (rc != 0) {
        fprintf(stderr, "twinbft: cluster init: cannot create the CA: %s\n", tb_strerror(rc));
        return rc;
    }
    if (!cli_join(path, sizeof path, dir, "ca-key.pem") ||
        (rc = proto_pki_save_key(ca_key, path)) != 0 ||
        !cli_join(path, sizeof path, dir, "ca.pem") ||
        (rc = proto_pki_save_cert(ca_cert, path)) != 0) {
        rc = rc != 0 ? rc : TB_ERR_TOO_LARGE;
        fprintf(stderr, "twinbft: cluster init: cannot write %s: %s\n", path, tb_strerror(rc));
        goto fail;
    }
    for (uint32_t i = 0; i < replicas && rc == 0; i++) {
        snprintf(cn, sizeof cn, "replica-%" PRIu32, i);
        rc = cli_issue_identity(ca_key, ca_cert, dir, cn, cn, false);
    }
    if (rc == 0) {
        rc = cli_issue_identity(ca_key, ca_cert, dir, "admin", "admin", true);
    }
    if (rc == 0) {
        rc = cli_issue_identity(ca_key, ca_cert, dir, "operator", "operator", true);
    }
fail:
    EVP_PKEY_free(ca_key);
    X509_free(ca_cert);
    return rc;
}

static void cli_init_report(const cli_globals *g, const char *dir, const char *cluster_id) {
    if (g->output == CLI_OUTPUT_JSON) {
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
}

static int cli_init_parse(int argc, char **argv, cli_init_args *a) {
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"replicas", required_argument, NULL, 'n'},
        {"base-port", required_argument, NULL, 'p'},
        {"cluster-id", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch = 0;
    a->base_port = CLI_BASE_PORT_DEFAULT;
    optind = 0; /* glibc: 0 restarts getopt for the subcommand's arguments */
    while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            a->dir = optarg;
            break;
        case 'n':
            if (cli_parse_u32(optarg, REP_MEMBERS_MIN, REP_MEMBERS_MAX, &a->replicas) != 0) {
                fprintf(stderr,
                        "twinbft: cluster init: --replicas must be %d to %d (BFT needs "
                        "n >= 3f+1 with f >= 1)\n",
                        REP_MEMBERS_MIN, REP_MEMBERS_MAX);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'p':
            if (cli_parse_u32(optarg, 1, UINT16_MAX, &a->base_port) != 0) {
                fprintf(stderr, "twinbft: cluster init: --base-port must be 1 to 65535\n");
                return CLI_EXIT_USAGE;
            }
            break;
        case 'i':
            if (!rep_cluster_id_valid(optarg)) {
                fprintf(stderr,
                        "twinbft: cluster init: --cluster-id must be 1-%d characters "
                        "of A-Z a-z 0-9 . _ -\n",
                        REP_CLUSTER_ID_BYTES_MAX - 1);
                return CLI_EXIT_USAGE;
            }
            snprintf(a->cluster_id, sizeof a->cluster_id, "%s", optarg);
            break;
        case 'h':
            printf("usage: twinbft cluster init --dir DIR --replicas N [--base-port P] "
                   "[--cluster-id ID]\n"
                   "Creates DIR/ca.pem, DIR/ca-key.pem, DIR/replica-<i>/, DIR/admin/,\n"
                   "DIR/operator/ and DIR/cluster.conf. Replica i listens on 127.0.0.1:P+i\n"
                   "(default P = %d) and serves HTTP on 127.0.0.1:P+%d+i.\n",
                   CLI_BASE_PORT_DEFAULT, CLI_HTTP_PORT_OFFSET);
            return -1;
        default:
            return CLI_EXIT_USAGE; /* getopt_long has printed what was wrong */
        }
    }
    if (optind < argc) {
        fprintf(stderr, "twinbft: cluster init: unexpected argument \"%s\"\n", argv[optind]);
        return CLI_EXIT_USAGE;
    }
    if (a->dir == NULL || a->replicas == 0) {
        fprintf(stderr, "twinbft: cluster init: --dir and --replicas are required\n");
        return CLI_EXIT_USAGE;
    }
    if (a->base_port + CLI_HTTP_PORT_OFFSET + a->replicas - 1 > UINT16_MAX) {
        fprintf(stderr,
                "twinbft: cluster init: --base-port %" PRIu32 " leaves no room for %" PRIu32
                " replicas and their HTTP ports (at most %d)\n",
                a->base_port, a->replicas,
                UINT16_MAX - CLI_HTTP_PORT_OFFSET - (int)a->replicas + 1);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

static int cli_cluster_init(const cli_globals *g, int argc, char **argv) {
    cli_init_args a = {0};
    char dir[PATH_MAX], conf[CLI_PATH_BYTES_MAX];
    rep_cluster *c = NULL;
    int rc = cli_init_parse(argc, argv, &a);
    if (rc != CLI_EXIT_OK) {
        return rc < 0 ? CLI_EXIT_OK : rc;
    }
    if (a.cluster_id[0] == '\0') {
        uint8_t raw[CLI_CLUSTER_ID_RANDOM_BYTES];
        if (RAND_bytes(raw, sizeof raw) != 1) {
            fprintf(stderr, "twinbft: cluster init: no randomness for a cluster id\n");
            return CLI_EXIT_FAILED;
        }
        proto_hex(raw, sizeof raw, a.cluster_id);
    }
    if (cli_mkdir(a.dir, 0755) != 0) {
        return CLI_EXIT_FAILED;
    }
    if (realpath(a.dir, dir) == NULL || !cli_join(conf, sizeof conf, dir, "cluster.conf")) {
        fprintf(stderr, "twinbft: cluster init: cannot resolve %s: %s\n", a.dir, strerror(errno));
        return CLI_EXIT_FAILED;
    }
    /* Re-running init would replace the CA and lock every existing member
     * and client out of the cluster. */
    if (access(conf, F_OK) == 0) {
        fprintf(stderr,
                "twinbft: cluster init: %s already exists; refusing to overwrite a "
                "cluster (remove the directory or choose another --dir)\n",
                conf);
        return CLI_EXIT_FAILED;
    }
    if (cli_init_pki(dir, a.replicas) != 0) {
        return CLI_EXIT_FAILED;
    }
    c = malloc(sizeof *c);
    if (c == NULL) {
        fprintf(stderr, "twinbft: cluster init: out of memory\n");
        return CLI_EXIT_FAILED;
    }
    cli_init_cluster(&a, c);
    rc = rep_cluster_write(c, conf);
    free(c);
    if (rc != 0) {
        fprintf(stderr, "twinbft: cluster init: cannot write %s: %s\n", conf, tb_strerror(rc));
        return CLI_EXIT_FAILED;
    }
    cli_init_report(g, dir, a.cluster_id);
    return CLI_EXIT_OK;
}

static int cli_cluster(const cli_globals *g, int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "init") == 0) {
        return cli_cluster_init(g, argc - 1, argv + 1);
    }
    fprintf(stderr, "twinbft: cluster: unknown or missing subcommand%s%s\n", argc >= 2 ? " " : "",
            argc >= 2 ? argv[1] : "");
    cli_commands_hint();
    return CLI_EXIT_USAGE;
}

/* Global flags stop at the first non-flag, the command: what follows it
 * belongs to the command (getopt's "+"). */
static int cli_parse_globals(int argc, char **argv, cli_globals *g) {
    static const struct option opts[] = {
        {"cluster", required_argument, NULL, 'c'},
        {"identity", required_argument, NULL, 'I'},
        {"write-out", required_argument, NULL, 'w'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch = 0;
    g->cluster = getenv("TWINBFT_CLUSTER");
    g->identity = getenv("TWINBFT_IDENTITY");
    g->output = CLI_OUTPUT_TABLE;
    g->timeout_ms = CLI_TIMEOUT_MS_DEFAULT;
    while ((ch = getopt_long(argc, argv, "+w:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            g->cluster = optarg;
            break;
        case 'I':
            g->identity = optarg;
            break;
        case 'w':
            if (strcmp(optarg, "table") == 0) {
                g->output = CLI_OUTPUT_TABLE;
            } else if (strcmp(optarg, "json") == 0) {
                g->output = CLI_OUTPUT_JSON;
            } else {
                fprintf(stderr, "twinbft: -w \"%s\": expected table or json\n", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 't':
            if (cli_parse_duration(optarg, &g->timeout_ms) != 0) {
                fprintf(stderr,
                        "twinbft: --timeout \"%s\": expected a duration such as 500ms, "
                        "5s or 1m (at most 24h)\n",
                        optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'h':
            cli_usage(stdout);
            return -1;
        default:
            return CLI_EXIT_USAGE;
        }
    }
    return CLI_EXIT_OK;
}

int main(int argc, char **argv) {
    cli_globals g;
    int rc = cli_parse_globals(argc, argv, &g);
    if (rc != CLI_EXIT_OK) {
        return rc < 0 ? CLI_EXIT_OK : rc;
    }
    if (optind >= argc) {
        fprintf(stderr, "twinbft: no command given\n");
        cli_commands_hint();
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[optind];
    if (strcmp(cmd, "cluster") == 0) {
        return cli_cluster(&g, argc - optind, argv + optind);
    }
    fprintf(stderr, "twinbft: unknown command \"%s\"\n", cmd);
    cli_commands_hint();
    return CLI_EXIT_USAGE;
}
