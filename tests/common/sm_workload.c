#include "tests/common/sm_workload.h"

#include <string.h>

#define N(a) (sizeof(a) / sizeof(a)[0])

static const char *const principals[] = {"admin", "op", "alice", "bob", "agent-1", "nobody"};
/* Roles change at random, but never the bootstrap admin's. */
static const char *const grantees[] = {"op", "alice", "bob", "agent-1", "nobody"};
static const char *const twins[] = {"plant", "line1", "m1", "c1", "m2", "m3", "c2", "ghost"};
static const char *const nodes[] = {"n1", "n2", "n3", "n4"};
static const char *const sites[] = {"s1", "s2", "s3"};
static const char *const comps[] = {"ingest", "predict"};
static const char *const keys[] = {"k1", "k2", "k3", "a/b", "a/c"};
static const char *const props[] = {"p1", "p2", "guard_door"};
static const char *const values[] = {"1", "2", "closed", "open", "-3"};

const sm_workload_names sm_workload_default_names = {
    principals, N(principals), grantees, N(grantees), twins,    N(twins), nodes,
    N(nodes),   sites,         N(sites), comps,       N(comps), keys,     N(keys),
    props,      N(props),      values,   N(values),   "agent-1"};

uint64_t sm_workload_next(sm_workload *r) {
    r->x ^= r->x << 13;
    r->x ^= r->x >> 7;
    r->x ^= r->x << 17;
    return r->x;
}

static const char *pick(sm_workload *r, const char *const *from, size_t n) {
    return from[sm_workload_next(r) % n];
}

/* One random op of any kind, with ids from small pools so that ops meet. */
void sm_workload_op(sm_workload *r, Twinbft__SmOp *op, void *scratch) {
    struct {
        Twinbft__SmAclGrant g;
        Twinbft__SmAclRevoke rv;
        Twinbft__SmSitePut sp;
        Twinbft__SmSiteRetire sr;
        Twinbft__SmNodePut np;
        Twinbft__SmNodeRetire nr;
        Twinbft__SmNodeSetState ns;
        Twinbft__SmTwinCreate tc;
        Twinbft__SmTwinRetire tr;
        Twinbft__SmComponentPut cp;
        Twinbft__SmComponentRemove cr;
        Twinbft__SmPlace pl;
        Twinbft__SmScale sc;
        Twinbft__SmConfigPut kp;
        Twinbft__SmConfigDelete kd;
        Twinbft__SmPolicyPut pp;
        Twinbft__SmPolicy pol;
        Twinbft__SmPolicyRemove pr;
        Twinbft__SmActuate ac;
        Twinbft__SmEstopLatch el;
        Twinbft__SmEstopReset er;
        Twinbft__SmShadowReport rep;
        Twinbft__SmShadowDesire des;
        Twinbft__SmProperty prop;
        Twinbft__SmProperty *props1[1];
    } *m = scratch;
    memset(m, 0, sizeof *m);
    twinbft__sm_op__init(op);
    int kind = (int)(sm_workload_next(r) % 22) + 1;
    op->op_case = (Twinbft__SmOp__OpCase)kind;
    switch (kind) {
    case TWINBFT__SM_OP__OP_ACL_GRANT:
        twinbft__sm_acl_grant__init(&m->g);
        m->g.principal = (char *)pick(r, r->names->grantees, r->names->n_grantees);
        m->g.roles = (uint32_t)(sm_workload_next(r) % 16);
        op->acl_grant = &m->g;
        break;
    case TWINBFT__SM_OP__OP_ACL_REVOKE:
        twinbft__sm_acl_revoke__init(&m->rv);
        m->rv.principal = (char *)pick(r, r->names->grantees, r->names->n_grantees);
        op->acl_revoke = &m->rv;
        break;
    case TWINBFT__SM_OP__OP_SITE_PUT:
        twinbft__sm_site_put__init(&m->sp);
        m->sp.id = (char *)pick(r, r->names->sites, r->names->n_sites);
        op->site_put = &m->sp;
        break;
    case TWINBFT__SM_OP__OP_SITE_RETIRE:
        twinbft__sm_site_retire__init(&m->sr);
        m->sr.id = (char *)pick(r, r->names->sites, r->names->n_sites);
        op->site_retire = &m->sr;
        break;
    case TWINBFT__SM_OP__OP_NODE_PUT:
        twinbft__sm_node_put__init(&m->np);
        m->np.id = (char *)pick(r, r->names->nodes, r->names->n_nodes);
        m->np.tier = (Twinbft__SmTier)(1 + sm_workload_next(r) % 2);
        m->np.site = (char *)pick(r, r->names->sites, r->names->n_sites);
        m->np.cpu_millicores = 1000 + sm_workload_next(r) % 4000;
        m->np.memory_mib = 1000 + sm_workload_next(r) % 4000;
        m->np.agent = (char *)r->names->agent;
        op->node_put = &m->np;
        break;
    case TWINBFT__SM_OP__OP_NODE_RETIRE:
        twinbft__sm_node_retire__init(&m->nr);
        m->nr.id = (char *)pick(r, r->names->nodes, r->names->n_nodes);
        op->node_retire = &m->nr;
        break;
    case TWINBFT__SM_OP__OP_NODE_STATE:
        twinbft__sm_node_set_state__init(&m->ns);
        m->ns.id = (char *)pick(r, r->names->nodes, r->names->n_nodes);
        m->ns.state = (Twinbft__SmNodeState)(sm_workload_next(r) % 3);
        op->node_state = &m->ns;
        break;
    case TWINBFT__SM_OP__OP_TWIN_CREATE:
        twinbft__sm_twin_create__init(&m->tc);
        m->tc.id = (char *)pick(r, r->names->twins, r->names->n_twins);
        m->tc.kind = (Twinbft__SmTwinKind)(1 + sm_workload_next(r) % 4);
        m->tc.parent = m->tc.kind == 1 ? "" : (char *)pick(r, r->names->twins, r->names->n_twins);
        m->tc.site = m->tc.kind == 1 ? (char *)pick(r, r->names->sites, r->names->n_sites) : "";
        m->tc.owner = (char *)pick(r, r->names->principals, r->names->n_principals);
        op->twin_create = &m->tc;
        break;
    case TWINBFT__SM_OP__OP_TWIN_RETIRE:
        twinbft__sm_twin_retire__init(&m->tr);
        m->tr.id = (char *)pick(r, r->names->twins, r->names->n_twins);
        op->twin_retire = &m->tr;
        break;
    case TWINBFT__SM_OP__OP_COMPONENT_PUT:
        twinbft__sm_component_put__init(&m->cp);
        m->cp.twin = (char *)pick(r, r->names->twins, r->names->n_twins);
        m->cp.name = (char *)pick(r, r->names->comps, r->names->n_comps);
        m->cp.cpu_millicores = 100 + sm_workload_next(r) % 1500;
        m->cp.memory_mib = 100 + sm_workload_next(r) % 1500;
        m->cp.tier = (Twinbft__SmTier)(sm_workload_next(r) % 3);
        m->cp.min_replicas = (uint32_t)(sm_workload_next(r) % 2);
        m->cp.max_replicas = 1 + (uint32_t)(sm_workload_next(r) % 3);
        op->component_put = &m->cp;
        break;
    case TWINBFT__SM_OP__OP_COMPONENT_REMOVE:
        twinbft__sm_component_remove__init(&m->cr);
        m->cr.twin = (char *)pick(r, r->names->twins, r->names->n_twins);
        m->cr.name = (char *)pick(r, r->names->comps, r->names->n_comps);
        op->component_remove = &m->cr;
        break;
    case TWINBFT__SM_OP__OP_PLACE:
        twinbft__sm_place__init(&m->pl);
        m->pl.twin = (char *)pick(r, r->names->twins, r->names->n_twins);
        op->place = &m->pl;
        break;
    case TWINBFT__SM_OP__OP_SCALE:
        twinbft__sm_scale__init(&m->sc);
        m->sc.twin = (char *)pick(r, r->names->twins, r->names->n_twins);
        m->sc.component = (char *)pick(r, r->names->comps, r->names->n_comps);
        m->sc.replicas = (uint32_t)(sm_workload_next(r) % 4);
        op->scale = &m->sc;
        break;
    case TWINBFT__SM_OP__OP_CONFIG_PUT:
        twinbft__sm_config_put__init(&m->kp);
        m->kp.key = (char *)pick(r, r->names->keys, r->names->n_keys);
        m->kp.value.data = (uint8_t *)pick(r, r->names->values, r->names->n_values);
        m->kp.value.len = strlen((const char *)m->kp.value.data);
        m->kp.cas = sm_workload_next(r) % 2;
        m->kp.expected_version = sm_workload_next(r) % 3;
        op->config_put = &m->kp;
        break;
    case TWINBFT__SM_OP__OP_CONFIG_DELETE:
        twinbft__sm_config_delete__init(&m->kd);
        m->kd.key = (char *)pick(r, r->names->keys, r->names->n_keys);
        op->config_delete = &m->kd;
        break;
    case TWINBFT__SM_OP__OP_POLICY_PUT:
        twinbft__sm_policy_put__init(&m->pp);
        twinbft__sm_policy__init(&m->pol);
        m->pol.twin = (char *)pick(r, r->names->twins, r->names->n_twins);
        m->pol.property = (char *)pick(r, r->names->props, r->names->n_props);
        m->pol.min = -5;
        m->pol.max = 5;
        m->pol.max_step = sm_workload_next(r) % 4;
        m->pol.min_interval_ms = sm_workload_next(r) % 3000;
        m->pol.required_role = (Twinbft__SmRole)(1u << (sm_workload_next(r) % 4));
        m->pp.policy = &m->pol;
        op->policy_put = &m->pp;
        break;
    case TWINBFT__SM_OP__OP_POLICY_REMOVE:
        twinbft__sm_policy_remove__init(&m->pr);
        m->pr.twin = (char *)pick(r, r->names->twins, r->names->n_twins);
        m->pr.property = (char *)pick(r, r->names->props, r->names->n_props);
        op->policy_remove = &m->pr;
        break;
    case TWINBFT__SM_OP__OP_ACTUATE:
        twinbft__sm_actuate__init(&m->ac);
        m->ac.twin = (char *)pick(r, r->names->twins, r->names->n_twins);
        m->ac.property = (char *)pick(r, r->names->props, r->names->n_props);
        m->ac.value = (int64_t)(sm_workload_next(r) % 13) - 6;
        m->ac.safe_state = sm_workload_next(r) % 5 == 0;
        op->actuate = &m->ac;
        break;
    case TWINBFT__SM_OP__OP_ESTOP_LATCH:
        twinbft__sm_estop_latch__init(&m->el);
        m->el.scope = (Twinbft__SmEstopScope)(sm_workload_next(r) % 2);
        m->el.id = (char *)(m->el.scope ? pick(r, r->names->twins, r->names->n_twins)
                                        : pick(r, r->names->sites, r->names->n_sites));
        op->estop_latch = &m->el;
        break;
    case TWINBFT__SM_OP__OP_ESTOP_RESET:
        twinbft__sm_estop_reset__init(&m->er);
        m->er.scope = (Twinbft__SmEstopScope)(sm_workload_next(r) % 2);
        m->er.id = (char *)(m->er.scope ? pick(r, r->names->twins, r->names->n_twins)
                                        : pick(r, r->names->sites, r->names->n_sites));
        op->estop_reset = &m->er;
        break;
    default: {
        twinbft__sm_property__init(&m->prop);
        m->prop.name = (char *)pick(r, r->names->props, r->names->n_props);
        m->prop.value = (char *)pick(r, r->names->values, r->names->n_values);
        m->props1[0] = &m->prop;
        if (kind == TWINBFT__SM_OP__OP_SHADOW_REPORT) {
            twinbft__sm_shadow_report__init(&m->rep);
            m->rep.twin = (char *)pick(r, r->names->twins, r->names->n_twins);
            m->rep.set = m->props1;
            m->rep.n_set = 1;
            op->shadow_report = &m->rep;
        } else {
            twinbft__sm_shadow_desire__init(&m->des);
            m->des.twin = (char *)pick(r, r->names->twins, r->names->n_twins);
            m->des.set = m->props1;
            m->des.n_set = 1;
            op->shadow_desire = &m->des;
        }
    }
    }
}

size_t sm_workload_packed(sm_workload *r, uint8_t *out) {
    uint8_t scratch[SM_WORKLOAD_SCRATCH_BYTES];
    Twinbft__SmOp op;
    sm_workload_op(r, &op, scratch);
    size_t len = twinbft__sm_op__get_packed_size(&op);
    if (len > SM_WORKLOAD_OP_BYTES_MAX) {
        return 0; /* cannot happen with bounded pools; callers treat 0 as "no op" */
    }
    return twinbft__sm_op__pack(&op, out);
}
