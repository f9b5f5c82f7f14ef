/* The domain commands that change state: each builds one twinbft.SmOp
 * (proto/sm.proto) from its arguments and submits it as an ordered intent
 * (cli_run_op prints the result and picks the exit code). The state machine
 * checks every field again; here we only refuse what cannot be encoded or
 * was clearly mistyped, with exit 2. */
#include <inttypes.h>
#include <string.h>

#include "cmd/cli/cli.h"
#include "proto/pki.h"
#include "proto/tb_err.h"

enum {
    CLI_PAIR_KEY_BYTES = 257, /* the longest key of a K=V flag (config keys are 256) */
    CLI_INTERLOCK_BYTES = 512,
};

#define CLI_END                                                                                    \
    { NULL, NULL, 0, NULL }
#define CLI_OP(o, field, CASE, msg) ((o)->op_case = TWINBFT__SM_OP__OP_##CASE, (o)->field = (msg))

/* K=V flag values split into keys (copied here) and values (in argv). */
typedef struct cli_pairs {
    uint32_t n;
    char keys[CLI_FLAG_VALUES_MAX][CLI_PAIR_KEY_BYTES];
    const char *values[CLI_FLAG_VALUES_MAX];
} cli_pairs;

static int cli_split_pairs(const cli_ctx *c, const char *flag, cli_pairs *p) {
    p->n = cli_opt_count(c, flag);
    for (uint32_t i = 0; i < p->n; i++) {
        const char *s = cli_opt_at(c, flag, i), *eq = strchr(s, '=');
        size_t klen = eq != NULL ? (size_t)(eq - s) : 0;
        if (eq == NULL || klen == 0 || klen >= CLI_PAIR_KEY_BYTES) {
            return cli_usage_error(c, "--%s \"%s\": expected KEY=VALUE (a key of 1-%d bytes)", flag,
                                   s, CLI_PAIR_KEY_BYTES - 1);
        }
        memcpy(p->keys[i], s, klen);
        p->keys[i][klen] = '\0';
        p->values[i] = eq + 1;
    }
    return CLI_EXIT_OK;
}

static int cli_enum_arg(const cli_ctx *c, const ProtobufCEnumDescriptor *d, const char *what,
                        const char *s, int *out) {
    char names[256];
    if (cli_enum_parse(d, s, out) != 0) {
        cli_enum_names(d, names, sizeof names);
        return cli_usage_error(c, "%s \"%s\": expected one of %s", what, s, names);
    }
    return CLI_EXIT_OK;
}

/* ---- sites and nodes ---- */

static int cli_site_put(cli_ctx *c) {
    Twinbft__SmSitePut m = TWINBFT__SM_SITE_PUT__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    m.id = (char *)c->argv[0];
    m.name = (char *)(cli_opt(c, "name") ? cli_opt(c, "name") : "");
    CLI_OP(&op, site_put, SITE_PUT, &m);
    return cli_run_op(c, &op);
}

static int cli_site_retire(cli_ctx *c) {
    Twinbft__SmSiteRetire m = TWINBFT__SM_SITE_RETIRE__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    m.id = (char *)c->argv[0];
    CLI_OP(&op, site_retire, SITE_RETIRE, &m);
    return cli_run_op(c, &op);
}

static int cli_node_latencies(const cli_ctx *c, const cli_pairs *p, Twinbft__SmLatency *lat,
                              Twinbft__SmLatency **ptrs) {
    for (uint32_t i = 0; i < p->n; i++) {
        uint64_t ms = 0;
        if (cli_parse_u64(p->values[i], 0, UINT32_MAX, &ms) != 0) {
            return cli_usage_error(c, "--latency %s=%s: expected SITE=MILLISECONDS", p->keys[i],
                                   p->values[i]);
        }
        twinbft__sm_latency__init(&lat[i]);
        lat[i].site = (char *)p->keys[i];
        lat[i].rtt_ms = (uint32_t)ms;
        ptrs[i] = &lat[i];
    }
    return CLI_EXIT_OK;
}

static int cli_node_put(cli_ctx *c) {
    static cli_pairs labels, lats; /* large; commands run once per process */
    Twinbft__SmLabel lab[CLI_FLAG_VALUES_MAX], *labp[CLI_FLAG_VALUES_MAX];
    Twinbft__SmLatency lat[CLI_FLAG_VALUES_MAX], *latp[CLI_FLAG_VALUES_MAX];
    Twinbft__SmNodePut m = TWINBFT__SM_NODE_PUT__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    int tier = 0,
        rc = cli_enum_arg(c, &twinbft__sm_tier__descriptor, "--tier", cli_opt(c, "tier"), &tier);
    if (rc == CLI_EXIT_OK && tier == TWINBFT__SM_TIER__SM_TIER_ANY) {
        rc = cli_usage_error(c, "--tier: a node is edge or cloud");
    }
    rc = rc ? rc : cli_opt_u64(c, "cpu", 0, UINT64_MAX, 0, &m.cpu_millicores);
    rc = rc ? rc : cli_opt_u64(c, "memory", 0, UINT64_MAX, 0, &m.memory_mib);
    rc = rc ? rc : cli_split_pairs(c, "label", &labels);
    rc = rc ? rc : cli_split_pairs(c, "latency", &lats);
    rc = rc ? rc : cli_node_latencies(c, &lats, lat, latp);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    for (uint32_t i = 0; i < labels.n; i++) {
        twinbft__sm_label__init(&lab[i]);
        lab[i].key = labels.keys[i];
        lab[i].value = (char *)labels.values[i];
        labp[i] = &lab[i];
    }
    m.id = (char *)c->argv[0];
    m.tier = (Twinbft__SmTier)tier;
    m.site = (char *)cli_opt(c, "site");
    m.zone = (char *)(cli_opt(c, "zone") ? cli_opt(c, "zone") : "");
    m.agent = (char *)(cli_opt(c, "agent") ? cli_opt(c, "agent") : "");
    m.n_labels = labels.n, m.labels = labp;
    m.n_latencies = lats.n, m.latencies = latp;
    CLI_OP(&op, node_put, NODE_PUT, &m);
    return cli_run_op(c, &op);
}

static int cli_node_retire(cli_ctx *c) {
    Twinbft__SmNodeRetire m = TWINBFT__SM_NODE_RETIRE__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    m.id = (char *)c->argv[0];
    CLI_OP(&op, node_retire, NODE_RETIRE, &m);
    return cli_run_op(c, &op);
}

static int cli_node_state(cli_ctx *c) {
    Twinbft__SmNodeSetState m = TWINBFT__SM_NODE_SET_STATE__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    int st = 0;
    int rc = cli_enum_arg(c, &twinbft__sm_node_state__descriptor, "STATE", c->argv[1], &st);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    m.id = (char *)c->argv[0];
    m.state = (Twinbft__SmNodeState)st;
    CLI_OP(&op, node_state, NODE_STATE, &m);
    return cli_run_op(c, &op);
}

/* ---- twins, components, placement ---- */

static int cli_twin_create(cli_ctx *c) {
    Twinbft__SmTwinCreate m = TWINBFT__SM_TWIN_CREATE__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    int kind = 0;
    int rc =
        cli_enum_arg(c, &twinbft__sm_twin_kind__descriptor, "--kind", cli_opt(c, "kind"), &kind);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    if (kind == TWINBFT__SM_TWIN_KIND__SM_TWIN_KIND_SITE && !cli_opt_set(c, "site")) {
        return cli_usage_error(c, "a site twin needs --site SITE");
    }
    if (kind != TWINBFT__SM_TWIN_KIND__SM_TWIN_KIND_SITE && !cli_opt_set(c, "parent")) {
        return cli_usage_error(c, "a line, machine or component twin needs --parent TWIN");
    }
    m.id = (char *)c->argv[0];
    m.kind = (Twinbft__SmTwinKind)kind;
    m.parent = (char *)(cli_opt(c, "parent") ? cli_opt(c, "parent") : "");
    m.site = (char *)(cli_opt(c, "site") ? cli_opt(c, "site") : "");
    m.owner = (char *)(cli_opt(c, "owner") ? cli_opt(c, "owner") : "");
    CLI_OP(&op, twin_create, TWIN_CREATE, &m);
    return cli_run_op(c, &op);
}

static int cli_twin_retire(cli_ctx *c) {
    Twinbft__SmTwinRetire m = TWINBFT__SM_TWIN_RETIRE__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    m.id = (char *)c->argv[0];
    CLI_OP(&op, twin_retire, TWIN_RETIRE, &m);
    return cli_run_op(c, &op);
}

static int cli_component_put(cli_ctx *c) {
    Twinbft__SmComponentPut m = TWINBFT__SM_COMPONENT_PUT__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    int tier = 0, rc = CLI_EXIT_OK;
    if (cli_opt_set(c, "tier")) {
        rc = cli_enum_arg(c, &twinbft__sm_tier__descriptor, "--tier", cli_opt(c, "tier"), &tier);
    }
    rc = rc ? rc : cli_opt_u64(c, "cpu", 0, UINT64_MAX, 0, &m.cpu_millicores);
    rc = rc ? rc : cli_opt_u64(c, "memory", 0, UINT64_MAX, 0, &m.memory_mib);
    rc = rc ? rc : cli_opt_u32(c, "max-latency", UINT32_MAX, 0, &m.max_latency_ms);
    rc = rc ? rc : cli_opt_u32(c, "min", UINT32_MAX, 1, &m.min_replicas);
    rc = rc ? rc : cli_opt_u32(c, "max", UINT32_MAX, m.min_replicas, &m.max_replicas);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    m.twin = (char *)c->argv[0];
    m.name = (char *)c->argv[1];
    m.tier = (Twinbft__SmTier)tier;
    m.zone = (char *)(cli_opt(c, "zone") ? cli_opt(c, "zone") : "");
    CLI_OP(&op, component_put, COMPONENT_PUT, &m);
    return cli_run_op(c, &op);
}

static int cli_component_remove(cli_ctx *c) {
    Twinbft__SmComponentRemove m = TWINBFT__SM_COMPONENT_REMOVE__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    m.twin = (char *)c->argv[0];
    m.name = (char *)c->argv[1];
    CLI_OP(&op, component_remove, COMPONENT_REMOVE, &m);
    return cli_run_op(c, &op);
}

static int cli_place(cli_ctx *c) {
    Twinbft__SmPlace m = TWINBFT__SM_PLACE__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    m.twin = (char *)c->argv[0];
    CLI_OP(&op, place, PLACE, &m);
    return cli_run_op(c, &op);
}

static int cli_scale(cli_ctx *c) {
    Twinbft__SmScale m = TWINBFT__SM_SCALE__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    int rc = cli_arg_u32(c, 2, "REPLICAS", UINT32_MAX, &m.replicas);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    m.twin = (char *)c->argv[0];
    m.component = (char *)c->argv[1];
    CLI_OP(&op, scale, SCALE, &m);
    return cli_run_op(c, &op);
}

/* ---- configuration ---- */

static int cli_config_put(cli_ctx *c) {
    Twinbft__SmConfigPut m = TWINBFT__SM_CONFIG_PUT__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    int rc = cli_opt_u64(c, "expect-version", 0, UINT64_MAX, 0, &m.expected_version);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    m.key = (char *)c->argv[0];
    m.value = (ProtobufCBinaryData){strlen(c->argv[1]), (uint8_t *)c->argv[1]};
    m.cas = cli_opt_set(c, "expect-version");
    CLI_OP(&op, config_put, CONFIG_PUT, &m);
    return cli_run_op(c, &op);
}

static int cli_config_delete(cli_ctx *c) {
    Twinbft__SmConfigDelete m = TWINBFT__SM_CONFIG_DELETE__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    int rc = cli_opt_u64(c, "expect-version", 0, UINT64_MAX, 0, &m.expected_version);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    m.key = (char *)c->argv[0];
    m.cas = cli_opt_set(c, "expect-version");
    CLI_OP(&op, config_delete, CONFIG_DELETE, &m);
    return cli_run_op(c, &op);
}

/* ---- policy and actuation ---- */

/* "[TWIN] PROPERTY OP VALUE": ids hold no spaces, so the OP word tells the
 * two forms apart; VALUE is the rest of the text. */
static int cli_interlock(const cli_ctx *c, const char *s, char *buf, Twinbft__SmInterlock *il) {
    char *tok[3] = {NULL, NULL, NULL}, *save = NULL;
    int cmp = 0;
    if (strlen(s) >= CLI_INTERLOCK_BYTES) {
        return cli_usage_error(c, "--interlock is longer than %d bytes", CLI_INTERLOCK_BYTES - 1);
    }
    snprintf(buf, CLI_INTERLOCK_BYTES, "%s", s);
    twinbft__sm_interlock__init(il);
    tok[0] = strtok_r(buf, " ", &save);
    tok[1] = tok[0] ? strtok_r(NULL, " ", &save) : NULL;
    tok[2] = tok[1] ? strtok_r(NULL, " ", &save) : NULL;
    bool own = tok[1] != NULL && cli_enum_parse(&twinbft__sm_cmp__descriptor, tok[1], &cmp) == 0;
    if (!own && (tok[2] == NULL || cli_enum_parse(&twinbft__sm_cmp__descriptor, tok[2], &cmp))) {
        return cli_usage_error(c,
                               "--interlock \"%s\": expected \"[TWIN] PROPERTY OP VALUE\" with "
                               "OP one of eq|ne|lt|le|gt|ge",
                               s);
    }
    il->twin = own ? "" : tok[0];
    il->property = own ? tok[0] : tok[1];
    il->cmp = (Twinbft__SmCmp)cmp;
    il->value = own ? tok[2] : strtok_r(NULL, "", &save);
    if (il->value == NULL) {
        return cli_usage_error(c, "--interlock \"%s\": VALUE is missing", s);
    }
    return CLI_EXIT_OK;
}

static int cli_policy_numbers(const cli_ctx *c, Twinbft__SmPolicy *p) {
    int role = TWINBFT__SM_ROLE__SM_ROLE_OPERATOR;
    int rc = cli_opt_i64(c, "min", 0, &p->min);
    rc = rc ? rc : cli_opt_i64(c, "max", 0, &p->max);
    rc = rc ? rc : cli_opt_i64(c, "safe-value", p->min, &p->safe_value);
    rc = rc ? rc : cli_opt_u64(c, "max-step", 0, UINT64_MAX, 0, &p->max_step);
    rc = rc ? rc : cli_opt_ms(c, "min-interval", 0, &p->min_interval_ms);
    rc = rc ? rc : cli_opt_ms(c, "ttl", 0, &p->ttl_ms);
    if (rc == CLI_EXIT_OK && cli_opt_set(c, "role")) {
        rc = cli_enum_arg(c, &twinbft__sm_role__descriptor, "--role", cli_opt(c, "role"), &role);
    }
    p->required_role = (Twinbft__SmRole)role;
    if (rc == CLI_EXIT_OK && p->min > p->max) {
        rc = cli_usage_error(c, "--min %" PRId64 " is above --max %" PRId64, p->min, p->max);
    }
    return rc;
}

static int cli_policy_put(cli_ctx *c) {
    static char bufs[CLI_FLAG_VALUES_MAX][CLI_INTERLOCK_BYTES];
    Twinbft__SmInterlock il[CLI_FLAG_VALUES_MAX], *ilp[CLI_FLAG_VALUES_MAX];
    Twinbft__SmPolicy p = TWINBFT__SM_POLICY__INIT;
    Twinbft__SmPolicyPut m = TWINBFT__SM_POLICY_PUT__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    int rc = cli_policy_numbers(c, &p);
    uint32_t n = cli_opt_count(c, "interlock");
    for (uint32_t i = 0; rc == CLI_EXIT_OK && i < n; i++) {
        rc = cli_interlock(c, cli_opt_at(c, "interlock", i), bufs[i], &il[i]);
        ilp[i] = &il[i];
    }
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    p.twin = (char *)c->argv[0];
    p.property = (char *)c->argv[1];
    p.principal = (char *)(cli_opt(c, "principal") ? cli_opt(c, "principal") : "");
    p.n_interlocks = n, p.interlocks = ilp;
    m.policy = &p;
    CLI_OP(&op, policy_put, POLICY_PUT, &m);
    return cli_run_op(c, &op);
}

static int cli_policy_remove(cli_ctx *c) {
    Twinbft__SmPolicyRemove m = TWINBFT__SM_POLICY_REMOVE__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    m.twin = (char *)c->argv[0];
    m.property = (char *)c->argv[1];
    CLI_OP(&op, policy_remove, POLICY_REMOVE, &m);
    return cli_run_op(c, &op);
}

static int cli_actuate(cli_ctx *c) {
    Twinbft__SmActuate m = TWINBFT__SM_ACTUATE__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    m.safe_state = cli_opt_set(c, "safe-state");
    if (m.safe_state == (c->argc == 3)) {
        return cli_usage_error(c, "give either VALUE or --safe-state (not both, not neither)");
    }
    if (c->argc == 3) {
        int rc = cli_arg_i64(c, 2, "VALUE", &m.value);
        if (rc != CLI_EXIT_OK) {
            return rc;
        }
    }
    m.twin = (char *)c->argv[0];
    m.property = (char *)c->argv[1];
    CLI_OP(&op, actuate, ACTUATE, &m);
    return cli_run_op(c, &op);
}

/* ---- emergency stop ---- */

static int cli_estop_scope(const cli_ctx *c, int *scope) {
    return cli_enum_arg(c, &twinbft__sm_estop_scope__descriptor, "SCOPE", c->argv[0], scope);
}

static int cli_estop_set(cli_ctx *c) {
    Twinbft__SmEstopLatch m = TWINBFT__SM_ESTOP_LATCH__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    int scope = 0, rc = cli_estop_scope(c, &scope);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    m.scope = (Twinbft__SmEstopScope)scope;
    m.id = (char *)c->argv[1];
    m.reason = (char *)(cli_opt(c, "reason") ? cli_opt(c, "reason") : "");
    CLI_OP(&op, estop_latch, ESTOP_LATCH, &m);
    return cli_run_op(c, &op);
}

static int cli_estop_reset(cli_ctx *c) {
    Twinbft__SmEstopReset m = TWINBFT__SM_ESTOP_RESET__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    int scope = 0, rc = cli_estop_scope(c, &scope);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    m.scope = (Twinbft__SmEstopScope)scope;
    m.id = (char *)c->argv[1];
    CLI_OP(&op, estop_reset, ESTOP_RESET, &m);
    return cli_run_op(c, &op);
}

/* ---- shadow ---- */

/* report and desire share a shape: set NAME=VALUE..., remove NAME... */
static int cli_shadow_change(cli_ctx *c, bool desire) {
    static cli_pairs set;
    Twinbft__SmProperty props[CLI_FLAG_VALUES_MAX], *pp[CLI_FLAG_VALUES_MAX];
    char *rm[CLI_FLAG_VALUES_MAX];
    Twinbft__SmShadowReport rep = TWINBFT__SM_SHADOW_REPORT__INIT;
    Twinbft__SmShadowDesire des = TWINBFT__SM_SHADOW_DESIRE__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    int rc = cli_split_pairs(c, "set", &set);
    uint32_t n_rm = cli_opt_count(c, "remove");
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    if (set.n + n_rm == 0) {
        return cli_usage_error(c, "nothing to change: give --set NAME=VALUE or --remove NAME");
    }
    for (uint32_t i = 0; i < set.n; i++) {
        twinbft__sm_property__init(&props[i]);
        props[i].name = set.keys[i];
        props[i].value = (char *)set.values[i];
        pp[i] = &props[i];
    }
    for (uint32_t i = 0; i < n_rm; i++) {
        rm[i] = (char *)cli_opt_at(c, "remove", i);
    }
    if (desire) {
        des.twin = (char *)c->argv[0];
        des.n_set = set.n, des.set = pp, des.n_remove = n_rm, des.remove = rm;
        CLI_OP(&op, shadow_desire, SHADOW_DESIRE, &des);
    } else {
        rep.twin = (char *)c->argv[0];
        rep.n_set = set.n, rep.set = pp, rep.n_remove = n_rm, rep.remove = rm;
        CLI_OP(&op, shadow_report, SHADOW_REPORT, &rep);
    }
    return cli_run_op(c, &op);
}

static int cli_shadow_report(cli_ctx *c) {
    return cli_shadow_change(c, false);
}

static int cli_shadow_desire(cli_ctx *c) {
    return cli_shadow_change(c, true);
}

/* ---- access control ---- */

static int cli_acl_grant(cli_ctx *c) {
    Twinbft__SmAclGrant m = TWINBFT__SM_ACL_GRANT__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    if (cli_roles_parse(c->argv[1], &m.roles) != 0) {
        return cli_usage_error(c,
                               "ROLES \"%s\": expected a comma-separated list of admin, "
                               "operator, owner, node-agent (or none)",
                               c->argv[1]);
    }
    m.principal = (char *)c->argv[0];
    CLI_OP(&op, acl_grant, ACL_GRANT, &m);
    return cli_run_op(c, &op);
}

static int cli_acl_revoke(cli_ctx *c) {
    Twinbft__SmAclRevoke m = TWINBFT__SM_ACL_REVOKE__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    m.principal = (char *)c->argv[0];
    CLI_OP(&op, acl_revoke, ACL_REVOKE, &m);
    return cli_run_op(c, &op);
}

/* An identity is revoked for good: every replica refuses it at the
 * handshake and closes its open links (statemachine/acl.c). --cert names
 * one certificate (its key) of the name; without it the name is revoked. */
static int cli_identity_revoke(cli_ctx *c) {
    Twinbft__SmIdentityRevoke m = TWINBFT__SM_IDENTITY_REVOKE__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    uint8_t key[PROTO_PUBKEY_BYTES];
    m.principal = (char *)c->argv[0];
    const char *path = cli_opt(c, "cert");
    if (path != NULL) {
        X509 *cert = NULL;
        char name[PROTO_NAME_BYTES_MAX];
        int rc = proto_pki_load_cert(path, &cert);
        if (rc != 0) {
            return cli_fail(c, CLI_EXIT_FAILED, "cannot read the certificate %s: %s", path,
                            tb_strerror(rc));
        }
        rc = proto_pki_name(cert, name);
        rc = rc ? rc : proto_pki_pubkey(cert, key);
        X509_free(cert);
        if (rc != 0) {
            return cli_fail(c, CLI_EXIT_FAILED, "%s: not an Ed25519 certificate with a name", path);
        }
        if (strcmp(name, m.principal) != 0) {
            return cli_usage_error(c, "%s is a certificate of \"%s\", not of \"%s\"", path, name,
                                   m.principal);
        }
        m.key = (ProtobufCBinaryData){sizeof key, key};
    }
    CLI_OP(&op, identity_revoke, IDENTITY_REVOKE, &m);
    return cli_run_op(c, &op);
}

/* ---- the table ---- */

static const cli_flag cli_identity_revoke_flags[] = {
    {"cert", "FILE", 0, "revoke only this certificate's key, not the whole name"}, CLI_END};

static const cli_flag cli_site_flags[] = {{"name", "NAME", 0, "a name for people"}, CLI_END};

static const cli_flag cli_node_flags[] = {
    {"tier", "TIER", CLI_FLAG_REQUIRED, "edge or cloud"},
    {"site", "SITE", CLI_FLAG_REQUIRED, "the site it stands at"},
    {"zone", "ZONE", 0, "its privacy zone"},
    {"cpu", "MILLICORES", 0, "CPU capacity"},
    {"memory", "MIB", 0, "memory capacity"},
    {"label", "KEY=VALUE", CLI_FLAG_REPEAT, "a label"},
    {"latency", "SITE=MS", CLI_FLAG_REPEAT, "round-trip time to a site"},
    {"agent", "PRINCIPAL", 0, "its node agent (receives its placements)"},
    CLI_END,
};

static const cli_flag cli_twin_flags[] = {
    {"kind", "KIND", CLI_FLAG_REQUIRED, "site, line, machine or component"},
    {"parent", "TWIN", 0, "the twin one level up (all but site twins)"},
    {"site", "SITE", 0, "the registered site (site twins)"},
    {"owner", "PRINCIPAL", 0, "its owner"},
    CLI_END,
};

static const cli_flag cli_component_flags[] = {
    {"cpu", "MILLICORES", 0, "CPU per replica"},
    {"memory", "MIB", 0, "memory per replica"},
    {"tier", "TIER", 0, "required tier: any (default), edge or cloud"},
    {"zone", "ZONE", 0, "required privacy zone"},
    {"max-latency", "MS", 0, "latency budget to the twin's site (0: none)"},
    {"min", "N", 0, "minimum replicas (default 1)"},
    {"max", "N", 0, "maximum replicas (default: --min)"},
    CLI_END,
};

static const cli_flag cli_cas_flags[] = {
    {"expect-version", "V", 0, "compare-and-set: only if the key is at version V (0: absent)"},
    CLI_END,
};

static const cli_flag cli_policy_flags[] = {
    {"min", "N", CLI_FLAG_REQUIRED, "lowest allowed value"},
    {"max", "N", CLI_FLAG_REQUIRED, "highest allowed value"},
    {"max-step", "N", 0, "largest change from the last approved value (0: any)"},
    {"min-interval", "DURATION", 0, "least time between approvals (e.g. 500ms)"},
    {"role", "ROLE", 0, "who may actuate: operator (default), owner, admin, node-agent"},
    {"interlock", "\"[TWIN] PROP OP VALUE\"", CLI_FLAG_REPEAT,
     "a reported property that must hold,\n"
     "                           OP eq|ne|lt|le|gt|ge"},
    {"safe-value", "N", 0, "the safe-state command's value (default --min)"},
    {"ttl", "DURATION", 0, "validity of approved commands (default 10s)"},
    {"principal", "PRINCIPAL", 0, "the actuator's principal (default: the twin's owner)"},
    CLI_END,
};

static const cli_flag cli_actuate_flags[] = {
    {"safe-state", NULL, 0, "the policy's safe-state command (priority lane), instead of VALUE"},
    CLI_END,
};

static const cli_flag cli_estop_flags[] = {{"reason", "TEXT", 0, "why"}, CLI_END};

static const cli_flag cli_shadow_flags[] = {
    {"set", "NAME=VALUE", CLI_FLAG_REPEAT, "set a property"},
    {"remove", "NAME", CLI_FLAG_REPEAT, "remove a property"},
    CLI_END,
};

#define CLI_ORDERED_EXITS "Exit 0 ok, 4 denied (the reason is printed), 1 invalid.\n"
#define CLI_CAS_EXITS                                                                              \
    "Exit 0 ok, 4 denied, 1 on a compare-and-set conflict (the current entry\nis printed) or an "  \
    "invalid op.\n"
#define CLI_NEG "A negative VALUE goes after --, as in: actuate T P -- -5\n"

const cli_cmd CLI_OPS_CMDS[] = {
    {"site put", "ID", 1, 1, "Register or rename a site.", CLI_ORDERED_EXITS, cli_site_flags,
     CLI_CMD_ORDERED, cli_site_put},
    {"site retire", "ID", 1, 1, "Retire a site.", CLI_ORDERED_EXITS, NULL, CLI_CMD_ORDERED,
     cli_site_retire},
    {"node put", "ID", 1, 1, "Register a compute node or update its description.",
     CLI_ORDERED_EXITS, cli_node_flags, CLI_CMD_ORDERED, cli_node_put},
    {"node retire", "ID", 1, 1, "Retire a node.", CLI_ORDERED_EXITS, NULL, CLI_CMD_ORDERED,
     cli_node_retire},
    {"node state", "ID up|draining|down", 2, 2, "Set a node's state (draining moves its work).",
     CLI_ORDERED_EXITS, NULL, CLI_CMD_ORDERED, cli_node_state},
    {"twin create", "ID", 1, 1, "Create a twin in the site > line > machine > component tree.",
     CLI_ORDERED_EXITS, cli_twin_flags, CLI_CMD_ORDERED, cli_twin_create},
    {"twin retire", "ID", 1, 1, "Retire a twin without children.", CLI_ORDERED_EXITS, NULL,
     CLI_CMD_ORDERED, cli_twin_retire},
    {"twin component put", "TWIN NAME", 2, 2, "Add or change a twin's service component.",
     CLI_ORDERED_EXITS, cli_component_flags, CLI_CMD_ORDERED, cli_component_put},
    {"twin component remove", "TWIN NAME", 2, 2, "Remove a component (and its placements).",
     CLI_ORDERED_EXITS, NULL, CLI_CMD_ORDERED, cli_component_remove},
    {"place", "TWIN", 1, 1, "Place every unplaced replica of a twin's components on nodes.",
     CLI_ORDERED_EXITS, NULL, CLI_CMD_ORDERED, cli_place},
    {"scale", "TWIN COMPONENT REPLICAS", 3, 3, "Scale a component to REPLICAS replicas.",
     CLI_ORDERED_EXITS, NULL, CLI_CMD_ORDERED, cli_scale},
    {"config put", "KEY VALUE", 2, 2, "Set a configuration key (versioned).", CLI_CAS_EXITS,
     cli_cas_flags, CLI_CMD_ORDERED, cli_config_put},
    {"config delete", "KEY", 1, 1, "Delete a configuration key.", CLI_CAS_EXITS, cli_cas_flags,
     CLI_CMD_ORDERED, cli_config_delete},
    {"policy put", "TWIN PROPERTY", 2, 2, "Set the actuation policy of actuator (TWIN, PROPERTY).",
     CLI_ORDERED_EXITS, cli_policy_flags, CLI_CMD_ORDERED, cli_policy_put},
    {"policy remove", "TWIN PROPERTY", 2, 2, "Remove an actuation policy.", CLI_ORDERED_EXITS, NULL,
     CLI_CMD_ORDERED, cli_policy_remove},
    {"actuate", "TWIN PROPERTY [VALUE]", 2, 3,
     "Ask for an actuation; approved, it is a certified command for the actuator.",
     CLI_ORDERED_EXITS CLI_NEG, cli_actuate_flags, CLI_CMD_ORDERED, cli_actuate},
    {"estop set", "site|twin ID", 2, 2, "Latch an emergency stop over a site or twin subtree.",
     CLI_ORDERED_EXITS, cli_estop_flags, CLI_CMD_ORDERED, cli_estop_set},
    {"estop reset", "site|twin ID", 2, 2, "Reset a latched emergency stop (operators only).",
     CLI_ORDERED_EXITS, NULL, CLI_CMD_ORDERED, cli_estop_reset},
    {"shadow report", "TWIN", 1, 1, "Report a twin's device state (owners).", CLI_ORDERED_EXITS,
     cli_shadow_flags, CLI_CMD_ORDERED, cli_shadow_report},
    {"shadow desire", "TWIN", 1, 1, "Set a twin's desired state (operators).", CLI_ORDERED_EXITS,
     cli_shadow_flags, CLI_CMD_ORDERED, cli_shadow_desire},
    {"acl grant", "PRINCIPAL ROLES", 2, 2,
     "Set a principal's roles (comma-separated admin,operator,owner,node-agent).",
     CLI_ORDERED_EXITS, NULL, CLI_CMD_ORDERED, cli_acl_grant},
    {"acl revoke", "PRINCIPAL", 1, 1, "Remove a principal's roles.", CLI_ORDERED_EXITS, NULL,
     CLI_CMD_ORDERED, cli_acl_revoke},
    {"identity revoke", "PRINCIPAL", 1, 1,
     "Revoke an identity for good: replicas refuse it and close its links.", CLI_ORDERED_EXITS,
     cli_identity_revoke_flags, CLI_CMD_ORDERED, cli_identity_revoke},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, 0, NULL},
};
