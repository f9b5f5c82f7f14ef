/* log: the event history (SmQuery.history), one row per applied
 * operation, paged through with `more`. */
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "cmd/cli/cli.h"

enum {
    CLI_LOG_PAGE = 256, /* SM_QUERY_ITEMS_MAX: the most one answer holds */
    CLI_TIME_BYTES = 32,
};

static void cli_time_ms(uint64_t ms, char *out, size_t cap) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    char buf[CLI_TIME_BYTES - 8];
    if (gmtime_r(&s, &tm) == NULL || strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        snprintf(out, cap, "%" PRIu64, ms);
        return;
    }
    snprintf(out, cap, "%s.%03uZ", buf, (unsigned)(ms % 1000));
}

static void cli_log_event(const cli_ctx *c, const Twinbft__SmEvent *e) {
    char when[CLI_TIME_BYTES], line[1024];
    Twinbft__SmOp *op = twinbft__sm_op__unpack(NULL, e->op.len, e->op.data);
    Twinbft__SmResult *res = twinbft__sm_result__unpack(NULL, e->result.len, e->result.data);
    const char *kind = op != NULL ? cli_oneof_name(&op->base) : "(undecodable)";
    cli_time_ms(e->time_ms, when, sizeof when);
    if (res != NULL) {
        cli_result_line(res, e->seq, line, sizeof line);
    } else {
        snprintf(line, sizeof line, "(undecodable result)");
    }
    if (c->g->output == CLI_OUTPUT_JSON) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "seq", json_object_new_uint64(e->seq));
        json_object_object_add(o, "index", json_object_new_int64(e->index));
        json_object_object_add(o, "time", json_object_new_string(when));
        json_object_object_add(o, "time_ms", json_object_new_uint64(e->time_ms));
        json_object_object_add(o, "principal", json_object_new_string(e->principal));
        json_object_object_add(o, "twin", json_object_new_string(e->twin));
        json_object_object_add(o, "op_kind", json_object_new_string(kind));
        json_object_object_add(o, "op", op != NULL ? cli_json_message(&op->base) : NULL);
        json_object_object_add(o, "result", res != NULL ? cli_json_message(&res->base) : NULL);
        cli_json_print(o);
    } else {
        printf("%-8" PRIu64 " %-5" PRIu32 " %-24s %-12s %-12s %-16s %s\n", e->seq, e->index, when,
               e->principal, e->twin[0] ? e->twin : "-", kind, line);
    }
    if (op != NULL) {
        twinbft__sm_op__free_unpacked(op, NULL);
    }
    if (res != NULL) {
        twinbft__sm_result__free_unpacked(res, NULL);
    }
}

/* One page: prints its events, moves h past them, counts down *left (0 =
 * unlimited is kept as UINT64_MAX by the caller). *more: another page. */
static int cli_log_page(const cli_ctx *c, cli_conn *k, Twinbft__SmHistoryQuery *h, uint64_t *left,
                        bool *more) {
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    tb_owned r = {0};
    h->limit = (uint32_t)(*left < CLI_LOG_PAGE ? *left : CLI_LOG_PAGE);
    q.q_case = TWINBFT__SM_QUERY__Q_HISTORY, q.history = h;
    int rc = cli_query(c, k, &q, &r);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    Twinbft__SmQueryResult *res = twinbft__sm_query_result__unpack(NULL, r.data_len, r.data);
    if (res == NULL || res->code != TWINBFT__SM_CODE__SM_CODE_OK) {
        rc = res == NULL ? cli_fail(c, CLI_EXIT_FAILED, "the cluster's answer does not decode")
                         : cli_print_query(c, &r);
        goto done;
    }
    for (size_t i = 0; i<res->n_events && * left> 0; i++, (*left)--) {
        cli_log_event(c, res->events[i]);
        h->after_seq = res->events[i]->seq;
        h->after_index = res->events[i]->index;
        h->from_start = false;
    }
    *more = res->more && res->n_events > 0 && *left > 0;
done:
    if (res != NULL) {
        twinbft__sm_query_result__free_unpacked(res, NULL);
    }
    tb_owned_clear(&r);
    return rc;
}

static int cli_log(cli_ctx *c) {
    Twinbft__SmHistoryQuery h = TWINBFT__SM_HISTORY_QUERY__INIT;
    uint64_t from = 0, left = 0;
    bool more = true;
    cli_conn k;
    int rc = cli_opt_u64(c, "from", 0, UINT64_MAX, 0, &from);
    rc = rc ? rc : cli_opt_u64(c, "limit", 0, UINT64_MAX, 0, &left);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    left = left == 0 ? UINT64_MAX : left;
    h.twin = (char *)(cli_opt(c, "twin") ? cli_opt(c, "twin") : "");
    /* --from SEQ includes SEQ: start after the last index of SEQ - 1. */
    h.from_start = from <= 1;
    h.after_seq = from > 1 ? from - 1 : 0;
    h.after_index = from > 1 ? UINT32_MAX : 0;
    rc = cli_conn_open(c, &k, NULL);
    if (rc == CLI_EXIT_OK && c->g->output == CLI_OUTPUT_TABLE) {
        printf("%-8s %-5s %-24s %-12s %-12s %-16s %s\n", "SEQ", "INDEX", "TIME", "PRINCIPAL",
               "TWIN", "OP", "RESULT");
    }
    while (rc == CLI_EXIT_OK && more) {
        rc = cli_log_page(c, &k, &h, &left, &more);
    }
    cli_conn_close(&k);
    return rc;
}

static const cli_flag cli_log_flags[] = {
    {"twin", "TWIN", 0, "only events about this twin"},
    {"from", "SEQ", 0, "start at sequence number SEQ (default: the first event)"},
    {"limit", "N", 0, "at most N events (default: all)"},
    {NULL, NULL, 0, NULL},
};

const cli_cmd CLI_LOG_CMDS[] = {
    {"log", "", 0, 0, "Show the event history: every applied operation and its result.",
     "Table: SEQ INDEX TIME PRINCIPAL TWIN OP RESULT. -w json: one object per event per line\n"
     "(with the decoded op and result). Reading all history needs admin or operator.\n",
     cli_log_flags, 0, cli_log},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, 0, NULL},
};
