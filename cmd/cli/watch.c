/* watch: subscribe to the certified commands addressed to one principal
 * and print each as it arrives, until SIGINT/SIGTERM or --count. A
 * subscription is always for the client's own principal (the replicas
 * know who it is from its certificate), so watching P means connecting as
 * P: the --identity itself, or the identity directory P beside it (as
 * `cluster identity` lays them out). */
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "cmd/cli/cli.h"
#include "proto/pki.h"

typedef struct cli_watch {
    const cli_ctx *c;
    struct event_base *base;
    uint64_t left; /* commands still to print; UINT64_MAX: no --count */
    uint64_t printed;
} cli_watch;

static void cli_watch_print(const cli_ctx *c, const tb_command *cmd) {
    char line[1024];
    Twinbft__SmResult *res = twinbft__sm_result__unpack(NULL, cmd->result_len, cmd->result);
    if (cmd->gap_before && c->g->output != CLI_OUTPUT_JSON) {
        printf("(commands before seq %" PRIu64 " may be missing: the replicas pruned them or "
               "skipped them by state transfer; twinbft log shows the history)\n",
               cmd->seq);
    }
    if (c->g->output == CLI_OUTPUT_JSON) {
        json_object *o = res != NULL ? cli_json_message(&res->base) : json_object_new_object();
        json_object_object_add(o, "seq", json_object_new_uint64(cmd->seq));
        json_object_object_add(o, "index", json_object_new_int64(cmd->index));
        json_object_object_add(o, "cert_bytes", json_object_new_uint64(cmd->cert_len));
        json_object_object_add(o, "gap_before", json_object_new_boolean(cmd->gap_before));
        cli_json_print(o);
    } else if (res != NULL && res->payload_case == TWINBFT__SM_RESULT__PAYLOAD_COMMAND) {
        const Twinbft__SmCommand *m = res->command;
        printf("seq %" PRIu64 ".%" PRIu32 " to %s: %s%s %s=%" PRId64 " valid %" PRIu64 "..%" PRIu64
               " ms\n",
               cmd->seq, cmd->index, m->to, m->safe_state ? "safe state " : "", m->twin,
               m->property, m->value, m->not_before_ms, m->expires_at_ms);
    } else if (res != NULL) {
        cli_result_line(res, cmd->seq, line, sizeof line);
        printf("seq %" PRIu64 ".%" PRIu32 ": %s\n", cmd->seq, cmd->index, line);
    } else {
        printf("seq %" PRIu64 ".%" PRIu32 ": (undecodable result, %zu bytes)\n", cmd->seq,
               cmd->index, cmd->result_len);
    }
    fflush(stdout);
    if (res != NULL) {
        twinbft__sm_result__free_unpacked(res, NULL);
    }
}

static void cli_watch_command(const tb_command *cmd, void *arg) {
    cli_watch *w = arg;
    if (w->left == 0) {
        return;
    }
    cli_watch_print(w->c, cmd);
    w->printed++;
    if (w->left != UINT64_MAX && --w->left == 0) {
        event_base_loopbreak(w->base);
    }
}

static void cli_watch_signal(evutil_socket_t sig, short what, void *arg) {
    (void)sig, (void)what;
    event_base_loopbreak(((cli_watch *)arg)->base);
}

/* The identity directory to connect as, to watch principal p. */
static int cli_watch_identity(const cli_ctx *c, const char *p, char *dir, size_t cap) {
    char name[PROTO_NAME_BYTES_MAX], cert[CLI_PATH_BYTES_MAX];
    const char *id = c->g->identity;
    if (id == NULL || id[0] == '\0') {
        return cli_usage_error(c, "no identity: give --identity DIR or set TWINBFT_IDENTITY");
    }
    if (cli_identity_name(id, name, sizeof name) == 0 && strcmp(name, p) == 0) {
        snprintf(dir, cap, "%s", id);
        return CLI_EXIT_OK;
    }
    /* The parent of the identity directory, trailing slashes ignored. */
    size_t len = strlen(id);
    while (len > 1 && id[len - 1] == '/') {
        len--;
    }
    while (len > 0 && id[len - 1] != '/') {
        len--;
    }
    int n =
        len == 0 ? snprintf(dir, cap, "./%s", p) : snprintf(dir, cap, "%.*s%s", (int)len, id, p);
    if (n < 0 || (size_t)n >= cap || !cli_join(cert, sizeof cert, dir, "cert.pem") ||
        access(cert, R_OK) != 0 || cli_identity_name(dir, name, sizeof name) != 0 ||
        strcmp(name, p) != 0) {
        return cli_usage_error(c,
                               "--principal %s: a subscription is for the connecting identity's "
                               "own principal; %s is not %s and there is no identity %s beside it",
                               p, id, p, dir);
    }
    return CLI_EXIT_OK;
}

static int cli_watch_run(const cli_ctx *c, cli_watch *w, uint64_t after_seq, uint32_t after_idx,
                         const char *dir) {
    cli_conn k;
    struct event *sigs[2] = {NULL, NULL};
    int rc = cli_conn_open(c, &k, dir);
    if (rc != CLI_EXIT_OK) {
        cli_conn_close(&k);
        return rc;
    }
    w->base = k.base;
    sigs[0] = evsignal_new(k.base, SIGINT, cli_watch_signal, w);
    sigs[1] = evsignal_new(k.base, SIGTERM, cli_watch_signal, w);
    if (sigs[0] == NULL || sigs[1] == NULL || event_add(sigs[0], NULL) != 0 ||
        event_add(sigs[1], NULL) != 0) {
        rc = cli_fail(c, CLI_EXIT_FAILED, "cannot catch SIGINT/SIGTERM");
    } else if ((rc = tb_client_subscribe(k.client, after_seq, after_idx, cli_watch_command, w))) {
        rc = cli_fail(c, CLI_EXIT_FAILED, "cannot subscribe: %s", tb_strerror(rc));
    } else if (event_base_dispatch(k.base) < 0) {
        rc = cli_fail(c, CLI_EXIT_FAILED, "the event loop failed");
    }
    for (int i = 0; i < 2; i++) {
        if (sigs[i] != NULL) {
            event_free(sigs[i]);
        }
    }
    tb_client_unsubscribe(k.client);
    cli_conn_close(&k);
    return rc;
}

static int cli_watch_cmd(cli_ctx *c) {
    char dir[CLI_PATH_BYTES_MAX];
    uint64_t from = 0, count = 0;
    cli_watch w = {.c = c};
    int rc = cli_opt_u64(c, "from", 0, UINT64_MAX, 0, &from);
    rc = rc ? rc : cli_opt_u64(c, "count", 1, UINT64_MAX, UINT64_MAX, &count);
    rc = rc ? rc : cli_watch_identity(c, cli_opt(c, "principal"), dir, sizeof dir);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    w.left = count;
    /* --from SEQ includes SEQ: start after the last index of SEQ - 1. */
    return cli_watch_run(c, &w, from > 1 ? from - 1 : 0, from > 1 ? UINT32_MAX : 0, dir);
}

static const cli_flag cli_watch_flags[] = {
    {"principal", "P", CLI_FLAG_REQUIRED,
     "whose commands: the --identity's name, or an identity directory P\n"
     "                           beside --identity"},
    {"from", "SEQ", 0, "start at sequence number SEQ (default: the first)"},
    {"count", "N", 0, "exit 0 after N commands (default: until SIGINT/SIGTERM)"},
    {NULL, NULL, 0, NULL},
};

const cli_cmd CLI_WATCH_CMDS[] = {
    {"watch", "", 0, 0, "Print the certified commands addressed to a principal as they arrive.",
     "One line (or -w json: one object) per command, flushed, in (seq, index) order, each\n"
     "verified against the cluster's keys by the client library before it is shown.\n",
     cli_watch_flags, 0, cli_watch_cmd},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, 0, NULL},
};
