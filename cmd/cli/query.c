/* The read-only commands: each builds one twinbft.SmQuery and asks it with
 * tb_client_query_wait (a quorum of identical unordered answers, or the
 * ordered fallback). */
#include <string.h>

#include "cmd/cli/cli.h"

#define CLI_END                                                                                    \
    { NULL, NULL, 0, NULL }
#define CLI_Q(q, field, CASE, v) ((q)->q_case = TWINBFT__SM_QUERY__Q_##CASE, (q)->field = (v))

static int cli_query_string(cli_ctx *c, Twinbft__SmQuery__QCase qcase) {
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    char *arg = (char *)c->argv[0];
    switch (qcase) {
    case TWINBFT__SM_QUERY__Q_TWIN_GET:
        CLI_Q(&q, twin_get, TWIN_GET, arg);
        break;
    case TWINBFT__SM_QUERY__Q_NODE_GET:
        CLI_Q(&q, node_get, NODE_GET, arg);
        break;
    case TWINBFT__SM_QUERY__Q_CONFIG_GET:
        CLI_Q(&q, config_get, CONFIG_GET, arg);
        break;
    case TWINBFT__SM_QUERY__Q_SHADOW_GET:
        CLI_Q(&q, shadow_get, SHADOW_GET, arg);
        break;
    case TWINBFT__SM_QUERY__Q_PLACEMENT_LIST:
        CLI_Q(&q, placement_list, PLACEMENT_LIST, arg);
        break;
    case TWINBFT__SM_QUERY__Q_ACL_GET:
        CLI_Q(&q, acl_get, ACL_GET, arg);
        break;
    case TWINBFT__SM_QUERY__Q_NODE_PLACEMENTS:
        CLI_Q(&q, node_placements, NODE_PLACEMENTS, arg);
        break;
    default:
        return cli_fail(c, CLI_EXIT_FAILED, "not a by-name query");
    }
    return cli_run_query(c, &q);
}

static int cli_query_list(cli_ctx *c, Twinbft__SmQuery__QCase qcase) {
    Twinbft__SmListQuery l = TWINBFT__SM_LIST_QUERY__INIT;
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    int rc = cli_opt_u32(c, "limit", UINT32_MAX, 0, &l.limit);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    l.from = (char *)(c->argc > 0 ? c->argv[0] : "");
    l.start_after = (char *)(cli_opt(c, "start-after") ? cli_opt(c, "start-after") : "");
    switch (qcase) {
    case TWINBFT__SM_QUERY__Q_TWIN_CHILDREN:
        CLI_Q(&q, twin_children, TWIN_CHILDREN, &l);
        break;
    case TWINBFT__SM_QUERY__Q_NODE_LIST:
        CLI_Q(&q, node_list, NODE_LIST, &l);
        break;
    case TWINBFT__SM_QUERY__Q_CONFIG_LIST:
        CLI_Q(&q, config_list, CONFIG_LIST, &l);
        break;
    default:
        return cli_fail(c, CLI_EXIT_FAILED, "not a listing query");
    }
    return cli_run_query(c, &q);
}

static int cli_twin_get(cli_ctx *c) {
    return cli_query_string(c, TWINBFT__SM_QUERY__Q_TWIN_GET);
}
static int cli_twin_children(cli_ctx *c) {
    return cli_query_list(c, TWINBFT__SM_QUERY__Q_TWIN_CHILDREN);
}
static int cli_twin_placements(cli_ctx *c) {
    return cli_query_string(c, TWINBFT__SM_QUERY__Q_PLACEMENT_LIST);
}
static int cli_node_get(cli_ctx *c) {
    return cli_query_string(c, TWINBFT__SM_QUERY__Q_NODE_GET);
}
static int cli_node_list(cli_ctx *c) {
    return cli_query_list(c, TWINBFT__SM_QUERY__Q_NODE_LIST);
}
static int cli_node_placements(cli_ctx *c) {
    return cli_query_string(c, TWINBFT__SM_QUERY__Q_NODE_PLACEMENTS);
}
static int cli_config_get(cli_ctx *c) {
    return cli_query_string(c, TWINBFT__SM_QUERY__Q_CONFIG_GET);
}
static int cli_config_list(cli_ctx *c) {
    return cli_query_list(c, TWINBFT__SM_QUERY__Q_CONFIG_LIST);
}
static int cli_shadow_get(cli_ctx *c) {
    return cli_query_string(c, TWINBFT__SM_QUERY__Q_SHADOW_GET);
}
static int cli_acl_get(cli_ctx *c) {
    return cli_query_string(c, TWINBFT__SM_QUERY__Q_ACL_GET);
}

static const cli_flag cli_list_flags[] = {
    {"start-after", "ITEM", 0, "continue a listing after this item (exclusive)"},
    {"limit", "N", 0, "at most N items (0: the cluster's maximum, 256)"},
    CLI_END,
};

#define CLI_READ_EXITS "Exit 0 found, 1 not found, 4 denied (not allowed to read it).\n"
#define CLI_JSON_BYTES "With -w json, configuration values are base64 (protobuf's JSON mapping).\n"

const cli_cmd CLI_QUERY_CMDS[] = {
    {"twin get", "ID", 1, 1, "Show a twin.", CLI_READ_EXITS, NULL, 0, cli_twin_get},
    {"twin children", "[PARENT]", 0, 1, "List a twin's children (no PARENT: site twins).",
     CLI_READ_EXITS, cli_list_flags, 0, cli_twin_children},
    {"twin placements", "TWIN", 1, 1, "List where a twin's component replicas run.", CLI_READ_EXITS,
     NULL, 0, cli_twin_placements},
    {"node get", "ID", 1, 1, "Show a node.", CLI_READ_EXITS, NULL, 0, cli_node_get},
    {"node list", "", 0, 0, "List nodes.", CLI_READ_EXITS, cli_list_flags, 0, cli_node_list},
    {"node placements", "ID", 1, 1, "List what a node's agent should be running.", CLI_READ_EXITS,
     NULL, 0, cli_node_placements},
    {"config get", "KEY", 1, 1, "Show a configuration key, its value and version.",
     CLI_READ_EXITS CLI_JSON_BYTES, NULL, 0, cli_config_get},
    {"config list", "[PREFIX]", 0, 1, "List configuration keys starting with PREFIX.",
     CLI_READ_EXITS CLI_JSON_BYTES, cli_list_flags, 0, cli_config_list},
    {"shadow get", "TWIN", 1, 1, "Show a twin's reported and desired state and the delta.",
     CLI_READ_EXITS, NULL, 0, cli_shadow_get},
    {"acl get", "PRINCIPAL", 1, 1, "Show a principal's roles.", CLI_READ_EXITS, NULL, 0,
     cli_acl_get},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, 0, NULL},
};
