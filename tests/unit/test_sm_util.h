/* Shared by the state machine's unit tests: a store in a temporary
 * directory, one call per operation (each applied as its own sequence
 * number, results decoded), queries, and a standard plant. */
#ifndef TEST_SM_UTIL_H
#define TEST_SM_UTIL_H

#define _XOPEN_SOURCE 700
#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/tb_err.h"
#include "statemachine/sm.h"

enum { SMT_OP_BYTES_MAX = 64 * 1024 };

typedef Twinbft__SmResult smr;

typedef struct smt {
    char dir[512];
    sm_store *s;
    MDB_txn *txn;
    uint64_t seq;
    uint64_t time_ms;
    smr *res;                  /* the last op's result */
    Twinbft__SmQueryResult *q; /* the last query's answer */
    sm_output out;
    uint8_t op[SMT_OP_BYTES_MAX];
    size_t op_len;
} smt;

static inline int smt_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void smt_mkdir(char *dir, size_t cap) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, cap, "%s/twinbft-sm-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static inline void smt_rmdir(const char *dir) {
    nftw(dir, smt_rm, 16, FTW_DEPTH | FTW_PHYS);
}

static inline sm_options smt_options(void) {
    sm_options o = {.admin = "admin", .map_bytes = (size_t)256 << 20, .no_sync = true};
    return o;
}

/* Opens a store in `dir` (made if empty). */
static inline void smt_open_in(smt *t, const char *dir) {
    memset(t, 0, sizeof *t);
    if (dir == NULL) {
        smt_mkdir(t->dir, sizeof t->dir);
    } else {
        snprintf(t->dir, sizeof t->dir, "%s", dir);
    }
    sm_options o = smt_options();
    ck_assert_int_eq(sm_store_open(t->dir, &o, &t->s), 0);
    t->seq = sm_store_applied(t->s);
    t->time_ms = 1000000;
}

static inline void smt_open(smt *t) {
    smt_open_in(t, NULL);
}

static inline MDB_txn *smt_txn(smt *t) {
    if (t->txn == NULL) {
        ck_assert_int_eq(sm_txn_begin(t->s, &t->txn), 0);
    }
    return t->txn;
}

static inline void smt_commit(smt *t) {
    if (t->txn != NULL) {
        ck_assert_int_eq(sm_txn_commit(t->s, t->txn), 0);
        t->txn = NULL;
    }
}

/* Closes the store, keeping its directory (for reopening). */
static inline void smt_close_keep(smt *t) {
    smt_commit(t);
    sm_store_close(t->s);
    t->s = NULL;
    if (t->res != NULL) {
        twinbft__sm_result__free_unpacked(t->res, NULL);
        t->res = NULL;
    }
    if (t->q != NULL) {
        twinbft__sm_query_result__free_unpacked(t->q, NULL);
        t->q = NULL;
    }
}

static inline void smt_close(smt *t) {
    smt_close_keep(t);
    smt_rmdir(t->dir);
}

/* Applies packed op bytes as the next sequence number. */
static inline smr *smt_apply_bytes(smt *t, const char *who, const uint8_t *op, size_t len) {
    t->seq++;
    t->time_ms += 1000;
    ck_assert_int_eq(sm_apply(t->s, smt_txn(t), t->seq, 0, t->time_ms, who, op, len, &t->out), 0);
    if (t->res != NULL) {
        twinbft__sm_result__free_unpacked(t->res, NULL);
    }
    t->res = twinbft__sm_result__unpack(NULL, t->out.result_len, t->out.result);
    ck_assert_ptr_nonnull(t->res);
    ck_assert_int_eq((int)t->res->code, t->out.code);
    return t->res;
}

static inline smr *smt_apply(smt *t, const char *who, const Twinbft__SmOp *op) {
    t->op_len = twinbft__sm_op__get_packed_size(op);
    ck_assert_uint_le(t->op_len, sizeof t->op);
    twinbft__sm_op__pack(op, t->op);
    return smt_apply_bytes(t, who, t->op, t->op_len);
}

static inline Twinbft__SmQueryResult *smt_query(smt *t, const char *who,
                                                const Twinbft__SmQuery *q) {
    uint8_t buf[4096], *out = NULL;
    size_t len = twinbft__sm_query__get_packed_size(q), out_len = 0;
    ck_assert_uint_le(len, sizeof buf);
    twinbft__sm_query__pack(q, buf);
    ck_assert_int_eq(sm_query(t->s, smt_txn(t), who, buf, len, &out, &out_len), 0);
    if (t->q != NULL) {
        twinbft__sm_query_result__free_unpacked(t->q, NULL);
    }
    t->q = twinbft__sm_query_result__unpack(NULL, out_len, out);
    free(out);
    ck_assert_ptr_nonnull(t->q);
    return t->q;
}

static inline void smt_digest(smt *t, uint8_t out[PROTO_DIGEST_BYTES]) {
    ck_assert_int_eq(sm_digest(t->s, t->txn, out), 0);
}

/* The incremental digest equals the one recomputed from every entry. */
static inline void smt_check_digest(smt *t) {
    uint8_t a[PROTO_DIGEST_BYTES], b[PROTO_DIGEST_BYTES];
    smt_digest(t, a);
    ck_assert_int_eq(sm_digest_recompute(t->s, smt_txn(t), b), 0);
    ck_assert_mem_eq(a, b, sizeof a);
}

/* Each evaluates its operation exactly once. */
#define expect_ok(r)                                                                               \
    do {                                                                                           \
        const smr *r_ = (r);                                                                       \
        ck_assert_msg((int)r_->code == SM_OK, "denied: %s (%s)", sm_reason_name((int)r_->reason),  \
                      r_->detail);                                                                 \
    } while (0)
#define expect_deny(r, why)                                                                        \
    do {                                                                                           \
        const smr *r_ = (r);                                                                       \
        ck_assert_msg((int)r_->code == SM_DENIED && (int)r_->reason == (int)(why),                 \
                      "expected %s, got %s/%s (%s)", sm_reason_name(why),                          \
                      sm_code_name((int)r_->code), sm_reason_name((int)r_->reason), r_->detail);   \
    } while (0)
#define expect_invalid(r)                                                                          \
    do {                                                                                           \
        const smr *r_ = (r);                                                                       \
        ck_assert_msg((int)r_->code == SM_INVALID &&                                               \
                          (int)r_->reason == TWINBFT__SM_REASON__SM_REASON_MALFORMED,              \
                      "expected malformed, got %s (%s)", sm_code_name((int)r_->code), r_->detail); \
    } while (0)

#define R(name) TWINBFT__SM_REASON__SM_REASON_##name

/* ---- one function per operation ---- */

static inline smr *op_grant(smt *t, const char *who, const char *principal, uint32_t roles) {
    Twinbft__SmAclGrant m = TWINBFT__SM_ACL_GRANT__INIT;
    m.principal = (char *)principal;
    m.roles = roles;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_ACL_GRANT;
    op.acl_grant = &m;
    return smt_apply(t, who, &op);
}

static inline smr *op_revoke(smt *t, const char *who, const char *principal) {
    Twinbft__SmAclRevoke m = TWINBFT__SM_ACL_REVOKE__INIT;
    m.principal = (char *)principal;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_ACL_REVOKE;
    op.acl_revoke = &m;
    return smt_apply(t, who, &op);
}

static inline smr *op_site(smt *t, const char *who, const char *id) {
    Twinbft__SmSitePut m = TWINBFT__SM_SITE_PUT__INIT;
    m.id = (char *)id;
    m.name = "a site";
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_SITE_PUT;
    op.site_put = &m;
    return smt_apply(t, who, &op);
}

static inline smr *op_site_retire(smt *t, const char *who, const char *id) {
    Twinbft__SmSiteRetire m = TWINBFT__SM_SITE_RETIRE__INIT;
    m.id = (char *)id;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_SITE_RETIRE;
    op.site_retire = &m;
    return smt_apply(t, who, &op);
}

/* A node with a latency to one other site (lat_site NULL: none). */
static inline smr *op_node_lat(smt *t, const char *who, const char *id, int tier, const char *site,
                               const char *zone, uint64_t cpu, uint64_t mem, const char *agent,
                               const char *lat_site, uint32_t lat_ms) {
    Twinbft__SmNodePut m = TWINBFT__SM_NODE_PUT__INIT;
    Twinbft__SmLatency lat = TWINBFT__SM_LATENCY__INIT, *lats[1] = {&lat};
    m.id = (char *)id;
    m.tier = (Twinbft__SmTier)tier;
    m.site = (char *)site;
    m.zone = (char *)(zone ? zone : "");
    m.cpu_millicores = cpu;
    m.memory_mib = mem;
    m.agent = (char *)(agent ? agent : "");
    if (lat_site != NULL) {
        lat.site = (char *)lat_site;
        lat.rtt_ms = lat_ms;
        m.latencies = lats;
        m.n_latencies = 1;
    }
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_NODE_PUT;
    op.node_put = &m;
    return smt_apply(t, who, &op);
}

static inline smr *op_node(smt *t, const char *who, const char *id, int tier, const char *site,
                           const char *zone, uint64_t cpu, uint64_t mem, const char *agent) {
    return op_node_lat(t, who, id, tier, site, zone, cpu, mem, agent, NULL, 0);
}

static inline smr *op_node_retire(smt *t, const char *who, const char *id) {
    Twinbft__SmNodeRetire m = TWINBFT__SM_NODE_RETIRE__INIT;
    m.id = (char *)id;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_NODE_RETIRE;
    op.node_retire = &m;
    return smt_apply(t, who, &op);
}

static inline smr *op_node_state(smt *t, const char *who, const char *id, int state) {
    Twinbft__SmNodeSetState m = TWINBFT__SM_NODE_SET_STATE__INIT;
    m.id = (char *)id;
    m.state = (Twinbft__SmNodeState)state;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_NODE_STATE;
    op.node_state = &m;
    return smt_apply(t, who, &op);
}

static inline smr *op_twin(smt *t, const char *who, const char *id, int kind, const char *parent,
                           const char *site, const char *owner) {
    Twinbft__SmTwinCreate m = TWINBFT__SM_TWIN_CREATE__INIT;
    m.id = (char *)id;
    m.kind = (Twinbft__SmTwinKind)kind;
    m.parent = (char *)(parent ? parent : "");
    m.site = (char *)(site ? site : "");
    m.owner = (char *)owner;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_TWIN_CREATE;
    op.twin_create = &m;
    return smt_apply(t, who, &op);
}

static inline smr *op_twin_retire(smt *t, const char *who, const char *id) {
    Twinbft__SmTwinRetire m = TWINBFT__SM_TWIN_RETIRE__INIT;
    m.id = (char *)id;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_TWIN_RETIRE;
    op.twin_retire = &m;
    return smt_apply(t, who, &op);
}

static inline smr *op_comp(smt *t, const char *who, const char *twin, const char *name,
                           uint64_t cpu, uint64_t mem, int tier, const char *zone, uint32_t max_lat,
                           uint32_t min, uint32_t max) {
    Twinbft__SmComponentPut m = TWINBFT__SM_COMPONENT_PUT__INIT;
    m.twin = (char *)twin;
    m.name = (char *)name;
    m.cpu_millicores = cpu;
    m.memory_mib = mem;
    m.tier = (Twinbft__SmTier)tier;
    m.zone = (char *)(zone ? zone : "");
    m.max_latency_ms = max_lat;
    m.min_replicas = min;
    m.max_replicas = max;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_COMPONENT_PUT;
    op.component_put = &m;
    return smt_apply(t, who, &op);
}

static inline smr *op_comp_remove(smt *t, const char *who, const char *twin, const char *name) {
    Twinbft__SmComponentRemove m = TWINBFT__SM_COMPONENT_REMOVE__INIT;
    m.twin = (char *)twin;
    m.name = (char *)name;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_COMPONENT_REMOVE;
    op.component_remove = &m;
    return smt_apply(t, who, &op);
}

static inline smr *op_place(smt *t, const char *who, const char *twin) {
    Twinbft__SmPlace m = TWINBFT__SM_PLACE__INIT;
    m.twin = (char *)twin;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_PLACE;
    op.place = &m;
    return smt_apply(t, who, &op);
}

static inline smr *op_scale(smt *t, const char *who, const char *twin, const char *comp,
                            uint32_t n) {
    Twinbft__SmScale m = TWINBFT__SM_SCALE__INIT;
    m.twin = (char *)twin;
    m.component = (char *)comp;
    m.replicas = n;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_SCALE;
    op.scale = &m;
    return smt_apply(t, who, &op);
}

static inline smr *op_cfg_put(smt *t, const char *who, const char *key, const char *val, bool cas,
                              uint64_t expected) {
    Twinbft__SmConfigPut m = TWINBFT__SM_CONFIG_PUT__INIT;
    m.key = (char *)key;
    m.value = (ProtobufCBinaryData){strlen(val), (uint8_t *)val};
    m.cas = cas;
    m.expected_version = expected;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_CONFIG_PUT;
    op.config_put = &m;
    return smt_apply(t, who, &op);
}

static inline smr *op_cfg_del(smt *t, const char *who, const char *key, bool cas,
                              uint64_t expected) {
    Twinbft__SmConfigDelete m = TWINBFT__SM_CONFIG_DELETE__INIT;
    m.key = (char *)key;
    m.cas = cas;
    m.expected_version = expected;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_CONFIG_DELETE;
    op.config_delete = &m;
    return smt_apply(t, who, &op);
}

static inline smr *op_policy(smt *t, const char *who, Twinbft__SmPolicy *p) {
    Twinbft__SmPolicyPut m = TWINBFT__SM_POLICY_PUT__INIT;
    m.policy = p;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_POLICY_PUT;
    op.policy_put = &m;
    return smt_apply(t, who, &op);
}

static inline smr *op_policy_remove(smt *t, const char *who, const char *twin, const char *prop) {
    Twinbft__SmPolicyRemove m = TWINBFT__SM_POLICY_REMOVE__INIT;
    m.twin = (char *)twin;
    m.property = (char *)prop;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_POLICY_REMOVE;
    op.policy_remove = &m;
    return smt_apply(t, who, &op);
}

static inline smr *op_actuate(smt *t, const char *who, const char *twin, const char *prop,
                              int64_t value, bool safe) {
    Twinbft__SmActuate m = TWINBFT__SM_ACTUATE__INIT;
    m.twin = (char *)twin;
    m.property = (char *)prop;
    m.value = value;
    m.safe_state = safe;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_ACTUATE;
    op.actuate = &m;
    return smt_apply(t, who, &op);
}

static inline smr *op_latch(smt *t, const char *who, int scope, const char *id) {
    Twinbft__SmEstopLatch m = TWINBFT__SM_ESTOP_LATCH__INIT;
    m.scope = (Twinbft__SmEstopScope)scope;
    m.id = (char *)id;
    m.reason = "test";
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_ESTOP_LATCH;
    op.estop_latch = &m;
    return smt_apply(t, who, &op);
}

static inline smr *op_reset(smt *t, const char *who, int scope, const char *id) {
    Twinbft__SmEstopReset m = TWINBFT__SM_ESTOP_RESET__INIT;
    m.scope = (Twinbft__SmEstopScope)scope;
    m.id = (char *)id;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_ESTOP_RESET;
    op.estop_reset = &m;
    return smt_apply(t, who, &op);
}

/* Reports (or, desire = true, sets desired) one property; value NULL removes it. */
static inline smr *op_shadow(smt *t, const char *who, bool desire, const char *twin,
                             const char *name, const char *value) {
    Twinbft__SmProperty p = TWINBFT__SM_PROPERTY__INIT, *ps[1] = {&p};
    char *rm[1] = {(char *)name};
    p.name = (char *)name;
    p.value = (char *)(value ? value : "");
    Twinbft__SmShadowReport rep = TWINBFT__SM_SHADOW_REPORT__INIT;
    Twinbft__SmShadowDesire des = TWINBFT__SM_SHADOW_DESIRE__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    if (desire) {
        des.twin = (char *)twin;
        des.set = value ? ps : NULL;
        des.n_set = value ? 1 : 0;
        des.remove = value ? NULL : rm;
        des.n_remove = value ? 0 : 1;
        op.op_case = TWINBFT__SM_OP__OP_SHADOW_DESIRE;
        op.shadow_desire = &des;
    } else {
        rep.twin = (char *)twin;
        rep.set = value ? ps : NULL;
        rep.n_set = value ? 1 : 0;
        rep.remove = value ? NULL : rm;
        rep.n_remove = value ? 0 : 1;
        op.op_case = TWINBFT__SM_OP__OP_SHADOW_REPORT;
        op.shadow_report = &rep;
    }
    return smt_apply(t, who, &op);
}

static inline smr *op_report(smt *t, const char *who, const char *twin, const char *name,
                             const char *value) {
    return op_shadow(t, who, false, twin, name, value);
}

static inline smr *op_desire(smt *t, const char *who, const char *twin, const char *name,
                             const char *value) {
    return op_shadow(t, who, true, twin, name, value);
}

/* ---- the standard plant ----
 * principals: admin (bootstrap), op (operator), alice and bob (owners),
 * agent-1 (node agent of edge-1), nobody (no role).
 * sites s1, s2. twins: plant (site twin at s1, alice) > line1 (alice) >
 * m1 (bob) > c1 (bob). */
#define SITE_KIND TWINBFT__SM_TWIN_KIND__SM_TWIN_KIND_SITE
#define LINE_KIND TWINBFT__SM_TWIN_KIND__SM_TWIN_KIND_LINE
#define MACHINE_KIND TWINBFT__SM_TWIN_KIND__SM_TWIN_KIND_MACHINE
#define COMPONENT_KIND TWINBFT__SM_TWIN_KIND__SM_TWIN_KIND_COMPONENT
#define EDGE TWINBFT__SM_TIER__SM_TIER_EDGE
#define CLOUD TWINBFT__SM_TIER__SM_TIER_CLOUD
#define ANY_TIER TWINBFT__SM_TIER__SM_TIER_ANY
#define SCOPE_SITE TWINBFT__SM_ESTOP_SCOPE__SM_ESTOP_SITE
#define SCOPE_TWIN TWINBFT__SM_ESTOP_SCOPE__SM_ESTOP_TWIN

static inline void smt_plant(smt *t) {
    expect_ok(op_grant(t, "admin", "op", SM_ROLE_OPERATOR));
    expect_ok(op_grant(t, "admin", "alice", SM_ROLE_OWNER));
    expect_ok(op_grant(t, "admin", "bob", SM_ROLE_OWNER));
    expect_ok(op_grant(t, "admin", "agent-1", SM_ROLE_NODE_AGENT));
    expect_ok(op_site(t, "admin", "s1"));
    expect_ok(op_site(t, "admin", "s2"));
    expect_ok(op_twin(t, "op", "plant", SITE_KIND, NULL, "s1", "alice"));
    expect_ok(op_twin(t, "op", "line1", LINE_KIND, "plant", NULL, "alice"));
    expect_ok(op_twin(t, "op", "m1", MACHINE_KIND, "line1", NULL, "bob"));
    expect_ok(op_twin(t, "op", "c1", COMPONENT_KIND, "m1", NULL, "bob"));
}

#endif
