/* The state machine's registry and access control: ACL, sites, nodes,
 * twins and components, every denial they can give, and each role. */
#include "test_sm_util.h"

/* Proves the bootstrap admin grants and revokes roles, and that no one else can. */
START_TEST(test_acl_grant_revoke) {
    smt t;
    smt_open(&t);
    expect_ok(op_grant(&t, "admin", "op", SM_ROLE_OPERATOR));
    expect_deny(op_grant(&t, "op", "eve", SM_ROLE_ADMIN), R(ROLE));
    expect_deny(op_grant(&t, "nobody", "eve", SM_ROLE_ADMIN), R(ROLE));
    expect_deny(op_revoke(&t, "op", "admin"), R(ROLE));
    expect_deny(op_revoke(&t, "admin", "eve"), R(NOT_FOUND));
    expect_deny(op_revoke(&t, "admin", "admin"), R(SELF));
    expect_deny(op_grant(&t, "admin", "admin", SM_ROLE_OPERATOR), R(SELF));
    expect_invalid(op_grant(&t, "admin", "has space", SM_ROLE_OPERATOR));
    expect_invalid(op_grant(&t, "admin", "x", 0x100));
    /* Roles are independent: admin alone may not reset an e-stop... */
    expect_ok(op_site(&t, "admin", "s1"));
    expect_ok(op_latch(&t, "admin", SCOPE_SITE, "s1"));
    expect_deny(op_reset(&t, "admin", SCOPE_SITE, "s1"), R(ROLE));
    /* ...but an admin may add roles to itself. */
    expect_ok(op_grant(&t, "admin", "admin", SM_ROLE_ADMIN | SM_ROLE_OPERATOR));
    expect_ok(op_reset(&t, "admin", SCOPE_SITE, "s1"));
    expect_ok(op_cfg_put(&t, "admin", "k", "v", false, 0));
    expect_ok(op_cfg_put(&t, "op", "k", "v2", false, 0));
    expect_ok(op_revoke(&t, "admin", "op"));
    expect_deny(op_cfg_put(&t, "op", "k", "v", false, 0), R(ROLE));
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    q.q_case = TWINBFT__SM_QUERY__Q_ACL_GET;
    q.acl_get = "admin";
    Twinbft__SmQueryResult *a = smt_query(&t, "admin", &q);
    ck_assert_int_eq(a->code, SM_OK);
    ck_assert_uint_eq(a->acl->roles, SM_ROLE_ADMIN | SM_ROLE_OPERATOR);
    /* Another principal's ACL is an admin's to read; one's own is one's own. */
    ck_assert_int_eq(smt_query(&t, "op", &q)->reason, R(ROLE));
    q.acl_get = "op";
    ck_assert_uint_eq(smt_query(&t, "op", &q)->acl->roles, 0);
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

static smr *op_id_revoke(smt *t, const char *who, const char *principal, const uint8_t *key) {
    Twinbft__SmIdentityRevoke m = TWINBFT__SM_IDENTITY_REVOKE__INIT;
    m.principal = (char *)principal;
    if (key != NULL) {
        m.key = (ProtobufCBinaryData){PROTO_PUBKEY_BYTES, (uint8_t *)key};
    }
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_IDENTITY_REVOKE;
    op.identity_revoke = &m;
    return smt_apply(t, who, &op);
}

static bool revoked(smt *t, const char *principal, const uint8_t *key) {
    smt_commit(t); /* sm_identity_revoked reads the committed state */
    bool r = false;
    ck_assert_int_eq(sm_identity_revoked(t->s, principal, key, &r), 0);
    return r;
}

/* Proves identity revocation: admin only, never oneself; a revoked name
 * holds no roles and gets none, a revoked key revokes that key only, roles
 * revoked afterwards keep the revocation, and all of it is in the digest
 * and survives a restart. */
START_TEST(test_identity_revoke) {
    smt t;
    smt_open(&t);
    uint8_t k1[PROTO_PUBKEY_BYTES], k2[PROTO_PUBKEY_BYTES];
    memset(k1, 1, sizeof k1);
    memset(k2, 2, sizeof k2);
    expect_ok(op_grant(&t, "admin", "bob", SM_ROLE_OPERATOR));
    expect_ok(op_grant(&t, "admin", "carol", SM_ROLE_OPERATOR));
    expect_deny(op_id_revoke(&t, "bob", "carol", NULL), R(ROLE));
    expect_deny(op_id_revoke(&t, "admin", "admin", NULL), R(SELF));
    ck_assert(!revoked(&t, "bob", k1));
    uint8_t before[PROTO_DIGEST_BYTES], after[PROTO_DIGEST_BYTES];
    smt_digest(&t, before);
    expect_ok(op_id_revoke(&t, "admin", "bob", NULL));
    smt_digest(&t, after);
    ck_assert(memcmp(before, after, sizeof before) != 0);
    ck_assert(revoked(&t, "bob", k1) && revoked(&t, "bob", NULL));
    expect_deny(op_cfg_put(&t, "bob", "k", "v", false, 0), R(ROLE));
    expect_deny(op_grant(&t, "admin", "bob", SM_ROLE_OPERATOR), R(REVOKED));
    expect_ok(op_id_revoke(&t, "admin", "bob", k1)); /* already revoked whole: no change */
    /* A key: that certificate only. */
    expect_ok(op_id_revoke(&t, "admin", "carol", k1));
    ck_assert(revoked(&t, "carol", k1));
    ck_assert(!revoked(&t, "carol", k2) && !revoked(&t, "carol", NULL));
    expect_ok(op_cfg_put(&t, "carol", "k", "v", false, 0));
    /* Revoking carol's roles keeps the revoked key; granting again too. */
    expect_ok(op_revoke(&t, "admin", "carol"));
    ck_assert(revoked(&t, "carol", k1));
    expect_ok(op_grant(&t, "admin", "carol", SM_ROLE_OPERATOR));
    ck_assert(revoked(&t, "carol", k1) && !revoked(&t, "carol", k2));
    /* A name never seen may be revoked ahead of use; a bad key is malformed. */
    expect_ok(op_id_revoke(&t, "admin", "mallory", NULL));
    ck_assert(revoked(&t, "mallory", k2));
    Twinbft__SmIdentityRevoke m = TWINBFT__SM_IDENTITY_REVOKE__INIT;
    m.principal = "dave";
    m.key = (ProtobufCBinaryData){3, k1};
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_IDENTITY_REVOKE;
    op.identity_revoke = &m;
    expect_invalid(smt_apply(&t, "admin", &op));
    smt_check_digest(&t);
    char dir[sizeof t.dir];
    snprintf(dir, sizeof dir, "%s", t.dir);
    smt_close_keep(&t);
    smt_open_in(&t, dir);
    ck_assert(revoked(&t, "bob", NULL) && revoked(&t, "carol", k1) && !revoked(&t, "carol", k2));
    smt_close(&t);
}
END_TEST

/* Proves an invalid principal or an undecodable op is an INVALID result, recorded as an event. */
START_TEST(test_malformed_ops) {
    smt t;
    smt_open(&t);
    const uint8_t junk[] = {0xff, 0xff, 0xff};
    smr *r = smt_apply_bytes(&t, "admin", junk, sizeof junk);
    expect_invalid(r);
    Twinbft__SmOp empty = TWINBFT__SM_OP__INIT;
    expect_invalid(smt_apply(&t, "admin", &empty));
    expect_invalid(op_site(&t, "bad principal", "s1"));
    expect_invalid(op_site(&t, "", "s1"));
    expect_invalid(op_site(&t, "admin", ""));
    expect_invalid(op_site(
        &t, "admin", "0123456789012345678901234567890123456789012345678901234567890123456789"));
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    Twinbft__SmHistoryQuery h = TWINBFT__SM_HISTORY_QUERY__INIT;
    h.from_start = true;
    q.q_case = TWINBFT__SM_QUERY__Q_HISTORY;
    q.history = &h;
    ck_assert_int_eq(smt_query(&t, "nobody", &q)->reason, R(ROLE)); /* needs admin or operator */
    Twinbft__SmQueryResult *a = smt_query(&t, "admin", &q);
    ck_assert_uint_eq(a->n_events, 6);
    ck_assert_str_eq(a->events[0]->principal, "admin");
    /* An identity the state machine rejects is still recorded as the channel named it. */
    ck_assert_str_eq(a->events[2]->principal, "bad principal");
    ck_assert_int_eq(a->events[2]->seq, 3);
    smt_close(&t);
}
END_TEST

/* Proves sites are admin-only, and a site in use by nodes or twins cannot be retired. */
START_TEST(test_sites) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    expect_deny(op_site(&t, "op", "s3"), R(ROLE));
    expect_deny(op_site_retire(&t, "admin", "nowhere"), R(NOT_FOUND));
    expect_deny(op_site_retire(&t, "admin", "s1"), R(IN_USE)); /* the plant twin */
    expect_ok(op_node(&t, "admin", "n1", EDGE, "s2", NULL, 1000, 1000, NULL));
    expect_deny(op_site_retire(&t, "admin", "s2"), R(IN_USE)); /* node n1 */
    expect_ok(op_node_retire(&t, "admin", "n1"));
    expect_deny(op_site_retire(&t, "op", "s2"), R(ROLE));
    expect_ok(op_site_retire(&t, "admin", "s2"));
    expect_ok(op_site(&t, "admin", "s1")); /* renaming keeps its counters */
    expect_deny(op_site_retire(&t, "admin", "s1"), R(IN_USE));
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

/* Proves the site limit is enforced with a LIMIT denial. */
START_TEST(test_site_limit) {
    smt t;
    smt_open(&t);
    char id[32];
    for (int i = 0; i < SM_SITES_MAX; i++) {
        snprintf(id, sizeof id, "site-%d", i);
        expect_ok(op_site(&t, "admin", id));
    }
    expect_deny(op_site(&t, "admin", "one-too-many"), R(LIMIT));
    smt_close(&t);
}
END_TEST

/* Proves node registration: admin-only, its site must exist, updates may not shrink below use. */
START_TEST(test_nodes) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    expect_deny(op_node(&t, "op", "n1", EDGE, "s1", NULL, 1000, 1000, NULL), R(ROLE));
    expect_deny(op_node(&t, "admin", "n1", EDGE, "s9", NULL, 1000, 1000, NULL), R(SITE_MISSING));
    expect_invalid(op_node(&t, "admin", "n1", ANY_TIER, "s1", NULL, 1000, 1000, NULL));
    expect_invalid(op_node(&t, "admin", "n1", EDGE, "s1", "bad zone", 1000, 1000, NULL));
    expect_ok(op_node(&t, "admin", "n1", EDGE, "s1", "eu", 1000, 1000, "agent-1"));
    expect_ok(op_comp(&t, "op", "m1", "ingest", 600, 600, EDGE, NULL, 0, 1, 1));
    expect_ok(op_place(&t, "op", "m1"));
    expect_deny(op_node(&t, "admin", "n1", EDGE, "s1", "eu", 500, 1000, NULL), R(CAPACITY));
    expect_deny(op_node(&t, "admin", "n1", EDGE, "s1", "eu", 1000, 599, NULL), R(CAPACITY));
    expect_ok(op_node(&t, "admin", "n1", EDGE, "s2", "eu", 2000, 1000, "agent-1")); /* moves site */
    expect_deny(op_site_retire(&t, "admin", "s2"), R(IN_USE));
    expect_deny(op_node_retire(&t, "admin", "n1"), R(IN_USE)); /* hosts a replica */
    expect_deny(op_node_retire(&t, "admin", "n2"), R(NOT_FOUND));
    expect_deny(op_node_retire(&t, "op", "n1"), R(ROLE));
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    q.q_case = TWINBFT__SM_QUERY__Q_NODE_GET;
    q.node_get = "n1";
    Twinbft__SmQueryResult *a = smt_query(&t, "bob", &q);
    ck_assert_uint_eq(a->n_nodes, 1);
    ck_assert_uint_eq(a->nodes[0]->cpu_used, 600);
    ck_assert_uint_eq(a->nodes[0]->cpu_millicores, 2000);
    ck_assert_str_eq(a->nodes[0]->site, "s2");
    ck_assert_int_eq(smt_query(&t, "nobody", &q)->reason, R(ROLE));
    expect_ok(op_comp_remove(&t, "op", "m1", "ingest"));
    expect_ok(op_node_retire(&t, "admin", "n1"));
    expect_ok(op_site_retire(&t, "admin", "s2"));
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

/* Proves node labels and latencies are stored sorted whatever order they were sent in,
 * and that duplicates are refused. */
START_TEST(test_node_normalised) {
    smt t;
    smt_open(&t);
    expect_ok(op_site(&t, "admin", "s1"));
    Twinbft__SmNodePut m = TWINBFT__SM_NODE_PUT__INIT;
    Twinbft__SmLabel l1 = TWINBFT__SM_LABEL__INIT, l2 = TWINBFT__SM_LABEL__INIT;
    Twinbft__SmLabel *labels[2] = {&l1, &l2};
    l1.key = "zeta";
    l1.value = "1";
    l2.key = "alpha";
    l2.value = "2";
    m.id = "n1";
    m.tier = EDGE;
    m.site = "s1";
    m.labels = labels;
    m.n_labels = 2;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    op.op_case = TWINBFT__SM_OP__OP_NODE_PUT;
    op.node_put = &m;
    expect_ok(smt_apply(&t, "admin", &op));
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    q.q_case = TWINBFT__SM_QUERY__Q_NODE_GET;
    q.node_get = "n1";
    Twinbft__SmQueryResult *a = smt_query(&t, "admin", &q);
    ck_assert_str_eq(a->nodes[0]->labels[0]->key, "alpha");
    ck_assert_str_eq(a->nodes[0]->labels[1]->key, "zeta");
    l2.key = "zeta";
    expect_invalid(smt_apply(&t, "admin", &op));
    smt_close(&t);
}
END_TEST

/* Proves the twin hierarchy: kinds nest one level at a time under an existing parent. */
START_TEST(test_twin_hierarchy) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    expect_deny(op_twin(&t, "op", "plant", SITE_KIND, NULL, "s1", "alice"), R(EXISTS));
    expect_deny(op_twin(&t, "op", "p2", SITE_KIND, NULL, "s9", "alice"), R(SITE_MISSING));
    expect_deny(op_twin(&t, "op", "x", LINE_KIND, "ghost", NULL, "alice"), R(PARENT_MISSING));
    expect_deny(op_twin(&t, "op", "x", MACHINE_KIND, "plant", NULL, "alice"), R(BAD_KIND));
    expect_deny(op_twin(&t, "op", "x", COMPONENT_KIND, "line1", NULL, "alice"), R(BAD_KIND));
    expect_deny(op_twin(&t, "op", "x", LINE_KIND, "c1", NULL, "alice"), R(BAD_KIND));
    expect_invalid(op_twin(&t, "op", "x", 9, "plant", NULL, "alice"));
    expect_invalid(op_twin(&t, "op", "x", SITE_KIND, "plant", "s1", "alice"));
    expect_invalid(op_twin(&t, "op", "x", LINE_KIND, "plant", NULL, ""));
    expect_ok(op_twin(&t, "admin", "line2", LINE_KIND, "plant", NULL, "alice")); /* admin manages */
    /* The site is inherited from the root; the chain is recorded. */
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    q.q_case = TWINBFT__SM_QUERY__Q_TWIN_GET;
    q.twin_get = "c1";
    Twinbft__SmQueryResult *a = smt_query(&t, "nobody", &q);
    ck_assert_int_eq(a->reason, R(ROLE));
    a = smt_query(&t, "agent-1", &q);
    ck_assert_uint_eq(a->n_twins, 1);
    ck_assert_str_eq(a->twins[0]->site, "s1");
    ck_assert_uint_eq(a->twins[0]->n_ancestors, 3);
    ck_assert_str_eq(a->twins[0]->ancestors[0], "plant");
    ck_assert_str_eq(a->twins[0]->ancestors[2], "m1");
    q.twin_get = "ghost";
    ck_assert_int_eq(smt_query(&t, "op", &q)->reason, R(NOT_FOUND));
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

/* Proves an owner acts only within its own subtree, and that owners cannot add site twins. */
START_TEST(test_twin_owner_subtree) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    expect_ok(
        op_twin(&t, "alice", "m2", MACHINE_KIND, "line1", NULL, "carol"));  /* alice owns line1 */
    expect_ok(op_twin(&t, "bob", "c2", COMPONENT_KIND, "m1", NULL, "bob")); /* bob owns m1 */
    expect_deny(op_twin(&t, "bob", "m3", MACHINE_KIND, "line1", NULL, "bob"), R(NOT_OWNER));
    expect_deny(op_twin(&t, "alice", "p2", SITE_KIND, NULL, "s1", "alice"), R(ROLE));
    expect_deny(op_twin(&t, "nobody", "m3", MACHINE_KIND, "line1", NULL, "x"), R(ROLE));
    expect_deny(op_twin(&t, "agent-1", "m3", MACHINE_KIND, "line1", NULL, "x"), R(ROLE));
    /* carol owns m2 but holds no owner role: ownership needs the role too. */
    expect_deny(op_twin_retire(&t, "carol", "m2"), R(ROLE));
    expect_ok(op_grant(&t, "admin", "carol", SM_ROLE_OWNER));
    expect_ok(op_twin_retire(&t, "carol", "m2"));
    expect_deny(op_twin_retire(&t, "bob", "line1"), R(NOT_OWNER));
    expect_ok(op_twin_retire(&t, "alice", "c2")); /* an ancestor's owner */
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

/* Proves retiring a twin with live children is refused, and that retiring cleans up after it. */
START_TEST(test_twin_retire) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    expect_ok(op_node(&t, "admin", "n1", EDGE, "s1", NULL, 4000, 4000, NULL));
    expect_deny(op_twin_retire(&t, "op", "m1"), R(HAS_CHILDREN));
    expect_deny(op_twin_retire(&t, "op", "plant"), R(HAS_CHILDREN));
    expect_deny(op_twin_retire(&t, "op", "ghost"), R(NOT_FOUND));
    expect_ok(op_comp(&t, "op", "c1", "ingest", 1000, 1000, ANY_TIER, NULL, 0, 1, 2));
    expect_ok(op_place(&t, "op", "c1"));
    expect_ok(op_report(&t, "bob", "c1", "temp", "20"));
    smr *r = op_twin_retire(&t, "op", "c1");
    expect_ok(r);
    ck_assert_int_eq(r->payload_case, TWINBFT__SM_RESULT__PAYLOAD_PLACEMENT);
    ck_assert_uint_eq(r->placement->n_removed, 1);
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    q.q_case = TWINBFT__SM_QUERY__Q_NODE_GET;
    q.node_get = "n1";
    ck_assert_uint_eq(smt_query(&t, "op", &q)->nodes[0]->cpu_used, 0); /* capacity released */
    expect_ok(op_twin_retire(&t, "op", "m1"));
    expect_ok(op_twin_retire(&t, "op", "line1"));
    expect_ok(op_twin_retire(&t, "op", "plant"));
    expect_ok(op_node_retire(&t, "admin", "n1"));
    expect_ok(op_site_retire(&t, "admin", "s1")); /* no twins or nodes left */
    /* A twin id can be reused once retired; its history stays. */
    expect_ok(op_site(&t, "admin", "s1"));
    expect_ok(op_twin(&t, "op", "plant", SITE_KIND, NULL, "s1", "alice"));
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

/* Proves listing children pages in id order, with site-level twins as children of "". */
START_TEST(test_twin_children) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    expect_ok(op_twin(&t, "op", "line3", LINE_KIND, "plant", NULL, "alice"));
    expect_ok(op_twin(&t, "op", "line2", LINE_KIND, "plant", NULL, "alice"));
    expect_ok(op_twin(&t, "op", "plant2", SITE_KIND, NULL, "s2", "bob"));
    Twinbft__SmQuery q = TWINBFT__SM_QUERY__INIT;
    Twinbft__SmListQuery l = TWINBFT__SM_LIST_QUERY__INIT;
    q.q_case = TWINBFT__SM_QUERY__Q_TWIN_CHILDREN;
    q.twin_children = &l;
    l.from = "plant";
    l.limit = 2;
    Twinbft__SmQueryResult *a = smt_query(&t, "bob", &q);
    ck_assert_uint_eq(a->n_twins, 2);
    ck_assert_str_eq(a->twins[0]->id, "line1");
    ck_assert_str_eq(a->twins[1]->id, "line2");
    ck_assert(a->more);
    l.start_after = "line2";
    a = smt_query(&t, "bob", &q);
    ck_assert_uint_eq(a->n_twins, 1);
    ck_assert_str_eq(a->twins[0]->id, "line3");
    ck_assert(!a->more);
    l.from = "";
    l.start_after = "";
    l.limit = 0;
    a = smt_query(&t, "bob", &q);
    ck_assert_uint_eq(a->n_twins, 2);
    ck_assert_str_eq(a->twins[0]->id, "plant");
    ck_assert_str_eq(a->twins[1]->id, "plant2");
    smt_close(&t);
}
END_TEST

/* Proves components: owners may add them to their twins, placed ones cannot be
 * redefined, and the per-twin limits hold. */
START_TEST(test_components) {
    smt t;
    smt_open(&t);
    smt_plant(&t);
    expect_ok(op_node(&t, "admin", "n1", EDGE, "s1", NULL, 100000, 100000, NULL));
    expect_ok(op_comp(&t, "bob", "m1", "ingest", 100, 100, EDGE, NULL, 0, 1, 3));
    expect_ok(op_comp(&t, "alice", "c1", "predict", 100, 100, ANY_TIER, "eu", 50, 0, 2));
    expect_deny(op_comp(&t, "bob", "plant", "x", 1, 1, ANY_TIER, NULL, 0, 1, 1), R(NOT_OWNER));
    expect_deny(op_comp(&t, "nobody", "m1", "x", 1, 1, ANY_TIER, NULL, 0, 1, 1), R(ROLE));
    expect_deny(op_comp(&t, "op", "ghost", "x", 1, 1, ANY_TIER, NULL, 0, 1, 1), R(NOT_FOUND));
    expect_invalid(op_comp(&t, "op", "m1", "x", 1, 1, ANY_TIER, NULL, 0, 2, 1));
    expect_invalid(op_comp(&t, "op", "m1", "x", 1, 1, ANY_TIER, NULL, 0, 0, 0));
    expect_invalid(
        op_comp(&t, "op", "m1", "x", 1, 1, ANY_TIER, NULL, 0, 1, SM_COMPONENT_REPLICAS_MAX + 1));
    expect_invalid(op_comp(&t, "op", "m1", "x", 1, 1, 7, NULL, 0, 1, 1));
    expect_ok(op_place(&t, "bob", "m1"));
    expect_deny(op_comp(&t, "bob", "m1", "ingest", 200, 100, EDGE, NULL, 0, 1, 3), R(IN_USE));
    expect_deny(op_comp_remove(&t, "bob", "m1", "ghost"), R(NOT_FOUND));
    expect_deny(op_comp_remove(&t, "alice", "plant", "ghost"), R(NOT_FOUND));
    smr *r = op_comp_remove(&t, "bob", "m1", "ingest");
    expect_ok(r);
    ck_assert_uint_eq(r->placement->n_removed, 1);
    expect_ok(op_comp(&t, "bob", "m1", "ingest", 200, 100, EDGE, NULL, 0, 1, 3));
    /* Sixteen components of four replicas each fill a twin: both limits at once. */
    char name[16];
    for (int i = 0; i < SM_TWIN_COMPONENTS_MAX; i++) {
        snprintf(name, sizeof name, "svc%02d", i);
        expect_ok(op_comp(&t, "op", "line1", name, 1, 1, ANY_TIER, NULL, 0, 0, 4));
    }
    expect_deny(op_comp(&t, "op", "line1", "svc99", 1, 1, ANY_TIER, NULL, 0, 0, 1), R(LIMIT));
    expect_ok(op_comp(&t, "op", "line1", "svc00", 1, 1, ANY_TIER, NULL, 0, 0, 4)); /* redefine */
    expect_deny(op_comp(&t, "op", "line1", "svc00", 1, 1, ANY_TIER, NULL, 0, 0, 5), R(LIMIT));
    smt_check_digest(&t);
    smt_close(&t);
}
END_TEST

static Suite *registry_suite(void) {
    Suite *s = suite_create("sm_registry");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_acl_grant_revoke);
    tcase_add_test(tc, test_identity_revoke);
    tcase_add_test(tc, test_malformed_ops);
    tcase_add_test(tc, test_sites);
    tcase_add_test(tc, test_site_limit);
    tcase_add_test(tc, test_nodes);
    tcase_add_test(tc, test_node_normalised);
    tcase_add_test(tc, test_twin_hierarchy);
    tcase_add_test(tc, test_twin_owner_subtree);
    tcase_add_test(tc, test_twin_retire);
    tcase_add_test(tc, test_twin_children);
    tcase_add_test(tc, test_components);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(registry_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
