/* status: what every replica says about itself, one row each. */
#include <inttypes.h>
#include <string.h>

#include <json-c/json.h>

#include "cmd/cli/cli.h"
#include "proto/hex.h"

enum { CLI_DIGEST_SHORT_HEX = 12 };

static json_object *cli_status_json(const rep_member *m, const tb_replica_status *s) {
    char hex[2 * TB_DIGEST_BYTES + 1], addr[REP_HOST_BYTES_MAX + 8];
    json_object *o = json_object_new_object();
    snprintf(addr, sizeof addr, "%s:%u", m->host, (unsigned)m->port);
    json_object_object_add(o, "id", json_object_new_int64(m->id));
    json_object_object_add(o, "address", json_object_new_string(addr));
    json_object_object_add(o, "answered", json_object_new_boolean(s->answered));
    if (!s->answered) {
        return o;
    }
    json_object_object_add(o, "view", json_object_new_uint64(s->view));
    json_object_object_add(o, "primary", json_object_new_boolean(s->primary == s->id));
    json_object_object_add(o, "primary_id", json_object_new_int64(s->primary));
    json_object_object_add(o, "in_view_change", json_object_new_boolean(s->in_view_change));
    json_object_object_add(o, "executed", json_object_new_uint64(s->executed));
    json_object_object_add(o, "stable_checkpoint", json_object_new_uint64(s->stable_seq));
    json_object_object_add(o, "epoch", json_object_new_uint64(s->epoch));
    json_object_object_add(o, "peers", json_object_new_int64(s->peers));
    json_object_object_add(o, "peers_mask", json_object_new_uint64(s->peers_mask));
    proto_hex(s->app_digest, TB_DIGEST_BYTES, hex);
    json_object_object_add(o, "app_digest", json_object_new_string(hex));
    proto_hex(s->state_digest, TB_DIGEST_BYTES, hex);
    json_object_object_add(o, "state_digest", json_object_new_string(hex));
    json_object_object_add(o, "state_digest_seq", json_object_new_uint64(s->state_digest_seq));
    json_object_object_add(o, "view_changes", json_object_new_uint64(s->view_changes));
    json_object_object_add(o, "dropped", json_object_new_uint64(s->dropped));
    json_object_object_add(o, "diverged_seq", json_object_new_uint64(s->diverged_seq));
    json_object_object_add(o, "db_map_bytes", json_object_new_uint64(s->db_map_bytes));
    json_object_object_add(o, "db_used_bytes", json_object_new_uint64(s->db_used_bytes));
    json_object_object_add(o, "history_events", json_object_new_uint64(s->history_events));
    json_object_object_add(o, "client_table", json_object_new_uint64(s->client_table));
    json_object_object_add(o, "history_window", json_object_new_uint64(s->history_window));
    json_object_object_add(o, "disk_full", json_object_new_boolean(s->disk_full));
    json_object_object_add(o, "clients", json_object_new_uint64(s->clients));
    return o;
}

/* 12K, 340M, 64G: bytes in binary units, for a column. */
static void cli_bytes_short(uint64_t v, char *out, size_t len) {
    static const char units[] = "BKMGTP";
    size_t u = 0;
    while (v >= 10240 && u + 1 < sizeof units - 1) {
        v /= 1024;
        u++;
    }
    snprintf(out, len, "%" PRIu64 "%c", v, units[u]);
}

static void cli_status_row(const rep_member *m, const tb_replica_status *s) {
    char hex[2 * TB_DIGEST_BYTES + 1], addr[REP_HOST_BYTES_MAX + 8];
    snprintf(addr, sizeof addr, "%s:%u", m->host, (unsigned)m->port);
    if (!s->answered) {
        printf("%-3" PRIu32 " %-21s (no answer)\n", m->id, addr);
        return;
    }
    proto_hex(s->app_digest, TB_DIGEST_BYTES, hex);
    hex[CLI_DIGEST_SHORT_HEX] = '\0';
    char diverged[48] = "", used[24], map[24], db[56];
    if (s->diverged_seq != 0) {
        snprintf(diverged, sizeof diverged, " DIVERGED at %" PRIu64, s->diverged_seq);
    } else if (s->disk_full) {
        snprintf(diverged, sizeof diverged, " DISK FULL (not voting)");
    }
    cli_bytes_short(s->db_used_bytes, used, sizeof used);
    cli_bytes_short(s->db_map_bytes, map, sizeof map);
    snprintf(db, sizeof db, "%s/%s", used, map);
    printf("%-3" PRIu32 " %-21s %-6" PRIu64 " %-7s %-9" PRIu64 " %-7" PRIu64 " %-6" PRIu64
           " %-6" PRIu32 " %-11s %s%s\n",
           m->id, addr, s->view, s->primary == s->id ? (s->in_view_change ? "yes*" : "yes") : "no",
           s->executed, s->stable_seq, s->epoch, s->peers, db, hex, diverged);
}

static int cli_status(cli_ctx *c) {
    static tb_replica_status st[TB_MEMBERS_MAX];
    cli_conn k;
    uint32_t answered = 0;
    int rc = cli_conn_open(c, &k, NULL);
    if (rc == CLI_EXIT_OK && (rc = tb_client_status_wait(k.client, st)) != 0) {
        rc = cli_fail(c, CLI_EXIT_FAILED, "status failed: %s", tb_strerror(rc));
    }
    if (rc != CLI_EXIT_OK) {
        cli_conn_close(&k);
        return rc;
    }
    json_object *arr = c->g->output == CLI_OUTPUT_JSON ? json_object_new_array() : NULL;
    if (arr == NULL) {
        printf("%-3s %-21s %-6s %-7s %-9s %-7s %-6s %-6s %-11s %s\n", "ID", "ADDRESS", "VIEW",
               "PRIMARY", "EXECUTED", "STABLE", "EPOCH", "PEERS", "DB", "DIGEST");
    }
    for (uint32_t j = 0; j < k.cfg.n; j++) {
        answered += st[j].answered;
        if (arr != NULL) {
            json_object_array_add(arr, cli_status_json(&k.cluster->members[j], &st[j]));
        } else {
            cli_status_row(&k.cluster->members[j], &st[j]);
        }
    }
    if (arr != NULL) {
        cli_json_print(arr);
    }
    /* The protocol's quorum, ceil((n+f+1)/2): 2f+1 when n = 3f+1, more
     * otherwise (n = 5 needs 4). */
    uint32_t quorum = (k.cfg.n + k.cfg.f + 2) / 2;
    if (answered < quorum) {
        rc = cli_fail(c, CLI_EXIT_UNREACHABLE,
                      "only %" PRIu32 " of %" PRIu32 " replicas answered; a quorum is %" PRIu32,
                      answered, k.cfg.n, quorum);
    }
    cli_conn_close(&k);
    return rc;
}

const cli_cmd CLI_STATUS_CMDS[] = {
    {"status", "", 0, 0, "Show every replica's view, progress, checkpoint and state digest.",
     "Table: one row per replica (PRIMARY yes* = primary in a view change; DB = its store in\n"
     "use / its map, the most it may grow to; DIGEST = the first 12 hex digits of the state\n"
     "machine's digest; DIVERGED at S: its state digest disagreed with a quorum's at\n"
     "checkpoint S, and it neither executes nor votes until state transfer replaces its\n"
     "state; DISK FULL: it cannot commit, so it neither executes nor votes until space\n"
     "returns, and then resumes by itself). -w json: an array of one object per replica\n"
     "with the full digests, the history kept and the client table's size. Exit 3 when fewer\n"
     "than a quorum (2f+1 for n = 3f+1) answer.\n",
     NULL, 0, cli_status},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, 0, NULL},
};
