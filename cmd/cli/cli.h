/* The twinbft CLI's shared definitions: exit codes, global flags, the
 * command table and its flag parser, the connection to a cluster, and
 * output. Each file in cmd/cli/ implements one group of commands and exports
 * its table (CLI_*_CMDS); main.c dispatches over all of them. */
#ifndef CLI_CLI_H
#define CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "proto/sm.pb-c.h"
#include "replica/config.h"
#include "twinbft/twinbft.h"

/* Exit codes are part of the interface: scripts branch on them. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILED = 1,
    CLI_EXIT_USAGE = 2,
    CLI_EXIT_UNREACHABLE = 3,
    CLI_EXIT_DENIED = 4,
    CLI_EXIT_HELP = -1, /* internal: --help was printed, exit 0 */
};

enum {
    CLI_TIMEOUT_MS_DEFAULT = 5000,
    CLI_TIMEOUT_MS_MAX = 24 * 3600 * 1000,
    CLI_PATH_BYTES_MAX = 4096,
    CLI_FLAGS_MAX = 24,           /* flags one command defines */
    CLI_FLAG_VALUES_MAX = 64,     /* occurrences of one repeatable flag */
    CLI_ARGS_MAX = 8,             /* positional arguments of one command */
    CLI_CMD_WORDS_MAX = 3,        /* "twin component put" */
    CLI_FILE_BYTES_MAX = 1 << 20, /* a certificate file read by verify */
    CLI_HTTP_PORT_OFFSET = 100,   /* cluster init: replica i serves HTTP on base + 100 + i */
};

typedef enum cli_output { CLI_OUTPUT_TABLE, CLI_OUTPUT_JSON } cli_output;

typedef struct cli_globals {
    const char *cluster;  /* --cluster or TWINBFT_CLUSTER; may be NULL */
    const char *identity; /* --identity or TWINBFT_IDENTITY; may be NULL */
    cli_output output;
    long timeout_ms;
    const char *argv0; /* how we were invoked, for messages */
} cli_globals;

/* A command's flag. arg names its value in --help; NULL for a switch. */
enum { CLI_FLAG_REQUIRED = 1u, CLI_FLAG_REPEAT = 2u };
typedef struct cli_flag {
    const char *name; /* without the leading "--" */
    const char *arg;
    unsigned flags;
    const char *help;
} cli_flag;

/* CLI_CMD_ORDERED: the command submits an intent (accepts --cert-out). */
enum { CLI_CMD_ORDERED = 1u };

typedef struct cli_ctx cli_ctx;
typedef struct cli_cmd {
    const char *path;     /* "config put"; NULL ends a table */
    const char *synopsis; /* positional arguments, "KEY VALUE" */
    uint32_t args_min, args_max;
    const char *summary;   /* one line for the command list */
    const char *details;   /* more --help text, or NULL */
    const cli_flag *flags; /* ends with {NULL}; NULL for none */
    unsigned kind;
    int (*run)(cli_ctx *c);
} cli_cmd;

/* One parsed command line. Values point into argv. */
struct cli_ctx {
    cli_globals *g;
    const cli_cmd *cmd;
    uint32_t argc;
    const char *argv[CLI_ARGS_MAX];
    uint32_t counts[CLI_FLAGS_MAX];
    const char *values[CLI_FLAGS_MAX][CLI_FLAG_VALUES_MAX];
    const char *cert_out; /* --cert-out FILE of an ordered command */
};

extern const cli_cmd CLI_INIT_CMDS[];
extern const cli_cmd CLI_UP_CMDS[];
extern const cli_cmd CLI_STATUS_CMDS[];
extern const cli_cmd CLI_OPS_CMDS[];
extern const cli_cmd CLI_QUERY_CMDS[];
extern const cli_cmd CLI_LOG_CMDS[];
extern const cli_cmd CLI_WATCH_CMDS[];
extern const cli_cmd CLI_VERIFY_CMDS[];
extern const cli_cmd CLI_BENCH_CMDS[];

/* ---- flags.c: parsing a command's flags and values ---- */

/* Parses argv (argv[0] is the last command word) into c for cmd. Returns
 * CLI_EXIT_OK, CLI_EXIT_HELP after printing the command's help, or
 * CLI_EXIT_USAGE after saying what is wrong. */
int cli_parse(cli_ctx *c, const cli_cmd *cmd, int argc, char **argv);
void cli_cmd_help(const cli_cmd *cmd, FILE *out);
/* "config put KEY VALUE [FLAGS]", with the required flags spelled out. */
void cli_cmd_synopsis(const cli_cmd *cmd, char *out, size_t cap);
/* Prints "twinbft CMD: MESSAGE" and a pointer to --help; returns CLI_EXIT_USAGE. */
int cli_usage_error(const cli_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "twinbft CMD: MESSAGE"; returns code. */
int cli_fail(const cli_ctx *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The last value of flag name, or NULL when absent. */
const char *cli_opt(const cli_ctx *c, const char *name);
bool cli_opt_set(const cli_ctx *c, const char *name);
uint32_t cli_opt_count(const cli_ctx *c, const char *name);
const char *cli_opt_at(const cli_ctx *c, const char *name, uint32_t i);
/* Typed values: *out = def when the flag is absent; CLI_EXIT_USAGE with a
 * message when it does not parse or is out of [lo, hi]. */
int cli_opt_u64(const cli_ctx *c, const char *name, uint64_t lo, uint64_t hi, uint64_t def,
                uint64_t *out);
int cli_opt_u32(const cli_ctx *c, const char *name, uint32_t hi, uint32_t def, uint32_t *out);
int cli_opt_i64(const cli_ctx *c, const char *name, int64_t def, int64_t *out);
int cli_opt_ms(const cli_ctx *c, const char *name, uint64_t def, uint64_t *out);
/* Positional argument i parsed the same way (what names it in messages). */
int cli_arg_u32(const cli_ctx *c, uint32_t i, const char *what, uint32_t hi, uint32_t *out);
int cli_arg_i64(const cli_ctx *c, uint32_t i, const char *what, int64_t *out);

int cli_parse_duration(const char *s, long *ms);
int cli_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);
int cli_parse_i64(const char *s, int64_t *out);
/* DIR/name into out; false when it does not fit. */
bool cli_join(char *out, size_t cap, const char *dir, const char *name);

/* Enum values by their short name (SM_TIER_EDGE: "edge", any case, '-'
 * for '_'). -1 when unknown; names lists the accepted ones. */
int cli_enum_parse(const ProtobufCEnumDescriptor *d, const char *s, int *out);
void cli_enum_names(const ProtobufCEnumDescriptor *d, char *out, size_t cap);
/* The short name of value v ("ESTOP" for SM_REASON_ESTOP), or its number. */
const char *cli_enum_name(const ProtobufCEnumDescriptor *d, int v, char *buf, size_t cap);
/* Roles: "admin,operator,owner,node-agent" into bits. */
int cli_roles_parse(const char *s, uint32_t *out);
void cli_roles_format(uint32_t roles, char *out, size_t cap);

/* ---- init.c: new clusters and identities ---- */

/* What cluster init makes: replicas on 127.0.0.1:base_port+i (HTTP on
 * base_port+CLI_HTTP_PORT_OFFSET+i). replicas_flag names where the count
 * came from, for the message that refuses it. cluster_id NULL: random. */
typedef struct cli_cluster_spec {
    uint32_t replicas;
    uint32_t base_port;
    const char *cluster_id;
    const char *replicas_flag;
} cli_cluster_spec;
typedef struct cli_cluster_made {
    char dir[CLI_PATH_BYTES_MAX]; /* absolute */
    char id[REP_CLUSTER_ID_BYTES_MAX];
} cli_cluster_made;

/* Creates a new cluster in dir (made if missing; refused when it holds a
 * cluster.conf already): its CA, replica, admin and operator identities and
 * DIR/cluster.conf, written last. Returns an exit code (message printed):
 * CLI_EXIT_USAGE for a spec that cannot make a cluster. */
int cli_cluster_create(const cli_ctx *c, const char *dir, const cli_cluster_spec *spec,
                       cli_cluster_made *out);
/* Issues identity DIR/NAME/{key,cert,ca}.pem from the CA in ca_dir
 * (ca-key.pem, ca.pem); refuses to replace one. Returns an exit code. */
int cli_identity_issue(const cli_ctx *c, const char *ca_dir, const char *dir, const char *name);

/* ---- up.c: local replicas ---- */

/* Replica i of a cluster directory: DIR/replica-i/{data,pid,log}. */
typedef struct cli_replica {
    uint32_t id;
    char dir[CLI_PATH_BYTES_MAX], data[CLI_PATH_BYTES_MAX];
    char pid_path[CLI_PATH_BYTES_MAX], log_path[CLI_PATH_BYTES_MAX];
    pid_t pid;    /* the running process; 0 when none is known */
    bool started; /* by this call of cli_up_dir: a child of this process */
} cli_replica;

/* Starts the local replicas of dir that are not running (twinbft-replica
 * from next to this executable, else from PATH) at log level `level`, and
 * waits up to timeout_ms for each one started to accept connections. Lines
 * for people go to report (NULL: none). rs[0..*n) receives every replica
 * of the cluster (REP_MEMBERS_MAX room). Returns an exit code: 1 when a
 * replica died during start-up (its log's tail is printed), 3 when one is
 * not listening in time (it keeps running). */
int cli_up_dir(const cli_ctx *c, const char *dir, const char *level, uint64_t timeout_ms,
               FILE *report, cli_replica *rs, uint32_t *n);
/* Stops every replica whose pid file in dir names a live twinbft-replica:
 * SIGTERM, up to timeout_ms for a clean exit, then SIGKILL; pid files are
 * removed. Every replica is tried. Returns an exit code. */
int cli_down_dir(const cli_ctx *c, const char *dir, uint64_t timeout_ms, FILE *report);

/* ---- conn.c: a client of the cluster ---- */

typedef struct cli_conn {
    rep_cluster *cluster; /* the cluster file (heap: it is large) */
    tb_client_config cfg;
    char ca[CLI_PATH_BYTES_MAX], cert[CLI_PATH_BYTES_MAX], key[CLI_PATH_BYTES_MAX];
    struct event_base *base;
    tb_client *client;
} cli_conn;

/* Loads the cluster file into k->cluster and k->cfg (members, keys, f).
 * Returns an exit code (message printed). */
int cli_conn_load(const cli_ctx *c, cli_conn *k);
/* Loads, then connects as identity directory dir (NULL: --identity) and
 * waits until a link is open. Returns an exit code. */
int cli_conn_open(const cli_ctx *c, cli_conn *k, const char *dir);
void cli_conn_close(cli_conn *k);
/* Submits op as an ordered intent / a read-only query; on CLI_EXIT_OK *out
 * holds the answer (tb_owned_clear it). */
int cli_submit(const cli_ctx *c, cli_conn *k, const Twinbft__SmOp *op, tb_owned *out);
int cli_query(const cli_ctx *c, cli_conn *k, const Twinbft__SmQuery *q, tb_owned *out);
/* Both in one: open, run, print, write --cert-out, close; returns the exit code. */
int cli_run_op(const cli_ctx *c, const Twinbft__SmOp *op);
int cli_run_query(const cli_ctx *c, const Twinbft__SmQuery *q);
/* The name (certificate CN) of the identity in dir. */
int cli_identity_name(const char *dir, char *name, size_t cap);

/* ---- print.c: results as table or json ---- */

/* Prints an intent's result; returns the exit code it stands for (0 ok,
 * 4 denied, 1 conflict or invalid or undecodable). */
int cli_print_result(const cli_ctx *c, const Twinbft__SmOp *op, const tb_owned *r);
/* Prints a query's answer; returns its exit code. */
int cli_print_query(const cli_ctx *c, const tb_owned *r);
/* The exit code of an SmResult's code. */
int cli_code_exit(int code);
/* One line about a result: "approved: pump-1 speed=1200 (seq 42)". */
void cli_result_line(const Twinbft__SmResult *res, uint64_t seq, char *out, size_t cap);
/* Generic protobuf → text ("field: value" lines) and → json. */
void cli_print_message(FILE *out, const ProtobufCMessage *m, int indent);
struct json_object;
struct json_object *cli_json_message(const ProtobufCMessage *m);
/* Prints obj as one line and frees it. */
void cli_json_print(struct json_object *obj);
/* The oneof case's field name of m (e.g. "config_put"), or "none". */
const char *cli_oneof_name(const ProtobufCMessage *m);

#endif
