/* twinbft bench, getting ready: the clients (one principal and one
 * tb_client each, all on one event_base), the cluster's readiness, the
 * setup scripts (registrations, role grants) run through them, and taking
 * the roles back and freeing everything at the end. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "cmd/cli/bench.h"

/* ---- clients ---- */

static void bench_on_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what, (void)arg; /* only wakes the loop up, so that it looks again */
}

/* Link trouble, from any of the clients: one line a second at most (a
 * replica that is down would otherwise be reported by every client). */
static void bench_on_link_log(const char *line, void *arg) {
    const bench_client *cl = arg;
    bench *b = cl->b;
    uint64_t now = bench_now_us();
    if (b->log_last_us != 0 && now - b->log_last_us < BENCH_LOG_EVERY_MS * 1000u) {
        b->log_suppressed++;
        return;
    }
    fprintf(stderr, "%stwinbft bench: %s: %s", b->progress_open ? "\n" : "", cl->name, line);
    if (b->log_suppressed > 0) {
        fprintf(stderr, " (%" PRIu64 " more link messages held back)", b->log_suppressed);
    }
    fputc('\n', stderr);
    b->progress_open = false;
    b->log_last_us = now;
    b->log_suppressed = 0;
}

/* Request numbers only have to grow per principal; the admin's may have
 * been used before (by the CLI), so every client starts from the realtime
 * clock as the CLI does (conn.c). */
static uint64_t bench_first_number(void) {
    struct timespec ts = {0};
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u + 1u;
}

static int bench_client_new(bench *b, bench_client *cl, const char *dir) {
    static tb_client_config cfg; /* large; the loop is single-threaded */
    char ca[CLI_PATH_BYTES_MAX], cert[CLI_PATH_BYTES_MAX], key[CLI_PATH_BYTES_MAX];
    if (!cli_join(ca, sizeof ca, dir, "ca.pem") || !cli_join(cert, sizeof cert, dir, "cert.pem") ||
        !cli_join(key, sizeof key, dir, "key.pem")) {
        return cli_fail(b->c, CLI_EXIT_FAILED, "identity path %s is too long", dir);
    }
    cfg = b->conn.cfg;
    cfg.ca_path = ca, cfg.cert_path = cert, cfg.key_path = key;
    cfg.first_number = bench_first_number();
    cfg.log = bench_on_link_log, cfg.log_arg = cl;
    cl->b = b;
    cl->rng = 0x9e3779b97f4a7c15ull * (cl->id + 1u);
    cl->value = 1;
    cl->scale_up = true;
    cl->cap = BENCH_OP_BYTES_SLACK + b->o.value_bytes;
    cl->buf = malloc(cl->cap);
    cl->timer = evtimer_new(b->base, bench_client_on_timer, cl);
    if (cl->buf == NULL || cl->timer == NULL) {
        return cli_fail(b->c, CLI_EXIT_FAILED, "out of memory");
    }
    int rc = tb_client_new(b->base, &cfg, &cl->tc);
    if (rc != 0) {
        return cli_fail(b->c, CLI_EXIT_FAILED, "cannot start a client as %s: %s", dir,
                        tb_strerror(rc));
    }
    return CLI_EXIT_OK;
}

static void bench_script_clear(bench_script *s) {
    for (uint32_t i = 0; i < s->n; i++) {
        free(s->ops[i]);
    }
    free(s->ops);
    free(s->lens);
    memset(s, 0, sizeof *s);
}

void bench_free_loop(bench *b) {
    for (uint32_t i = 0; b->cl != NULL && i < b->n_cl; i++) {
        bench_client *cl = &b->cl[i];
        tb_client_free(cl->tc);
        if (cl->timer != NULL) {
            event_free(cl->timer);
        }
        free(cl->buf);
        bench_script_clear(&cl->script);
    }
    cli_scrape_clear(&b->before);
    cli_scrape_clear(&b->after);
    struct event *evs[] = {b->tick, b->phase_ev, b->progress_ev, b->estop_ev};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++) {
        if (evs[i] != NULL) {
            event_free(evs[i]);
        }
    }
    if (b->base != NULL) {
        event_base_loop(b->base, EVLOOP_NONBLOCK); /* see tb_client_free */
        event_base_free(b->base);
    }
    free(b->cl);
    free(b->value);
    b->cl = NULL, b->base = NULL, b->tick = NULL;
    b->phase_ev = b->progress_ev = b->estop_ev = NULL;
}

/* ---- the admin's connection and the cluster's readiness ---- */

static void bench_on_status(int status, const tb_replica_status *st, uint32_t n, void *arg) {
    bench *b = arg;
    uint32_t answered = 0, meshed = 0;
    bool calm = true;
    uint64_t view = UINT64_MAX;
    for (uint32_t j = 0; j < n; j++) {
        if (!st[j].answered) {
            continue;
        }
        answered++;
        meshed += st[j].peers + 1 == n;
        calm = calm && !st[j].in_view_change && (view == UINT64_MAX || st[j].view == view);
        view = st[j].view;
    }
    /* A local cluster is ready when every replica is linked to every
     * other; a remote one when a quorum agrees on a calm view. */
    b->ready = status == 0 && calm && answered >= b->quorum &&
               (b->o.local == 0 || (answered == n && meshed == n));
    b->status_busy = false;
    b->status_next_ms = bench_now_us() / 1000u + BENCH_STATUS_EVERY_MS;
}

static bool bench_ready(bench *b) {
    if (b->ready) {
        return true;
    }
    if (!b->status_busy && bench_now_us() / 1000u >= b->status_next_ms &&
        tb_client_connected(b->admin->tc) > 0) {
        b->status_busy = tb_client_status(b->admin->tc, bench_on_status, b) == 0;
    }
    return false;
}

int bench_connect(bench *b) {
    b->n_cl = b->o.clients + 2;
    b->cl = calloc(b->n_cl, sizeof *b->cl);
    b->value = malloc(b->o.value_bytes + 1u);
    b->base = event_base_new();
    b->tick = b->base != NULL ? event_new(b->base, -1, EV_PERSIST, bench_on_tick, NULL) : NULL;
    if (b->cl == NULL || b->value == NULL || b->tick == NULL) {
        return cli_fail(b->c, CLI_EXIT_FAILED, "out of memory");
    }
    memset(b->value, 'v', b->o.value_bytes);
    struct timeval tick = bench_tv_us(BENCH_TICK_MS * 1000u);
    event_add(b->tick, &tick);
    b->probe = &b->cl[b->o.clients];
    b->admin = &b->cl[b->o.clients + 1];
    b->probe->role = BENCH_PROBE;
    b->admin->role = BENCH_ADMIN;
    snprintf(b->admin->name, sizeof b->admin->name, "admin");
    int rc = bench_client_new(b, b->admin, b->admin_dir);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    bench_wait w = bench_loop(b, BENCH_START_WAIT_MS, bench_ready);
    if (w == BENCH_WAIT_TIMEOUT) {
        return cli_fail(b->c, CLI_EXIT_UNREACHABLE,
                        "the cluster of %s was not ready within %d s (no quorum of replicas "
                        "in one calm view%s; is it up, and is %s an identity of its CA?)",
                        b->conf, BENCH_START_WAIT_MS / 1000,
                        b->o.local ? ", or not every replica linked to every other" : "",
                        b->admin_dir);
    }
    return bench_wait_exit(b, w, CLI_EXIT_UNREACHABLE, "waiting for the cluster");
}

/* ---- setup scripts ---- */

static int bench_script_add(bench *b, bench_script *s, const Twinbft__SmOp *op) {
    size_t len = twinbft__sm_op__get_packed_size(op);
    uint8_t **ops = realloc(s->ops, (s->n + 1) * sizeof *ops);
    if (ops == NULL) {
        return cli_fail(b->c, CLI_EXIT_FAILED, "out of memory");
    }
    s->ops = ops;
    size_t *lens = realloc(s->lens, (s->n + 1) * sizeof *lens);
    if (lens == NULL) {
        return cli_fail(b->c, CLI_EXIT_FAILED, "out of memory");
    }
    s->lens = lens;
    s->ops[s->n] = malloc(len ? len : 1);
    if (s->ops[s->n] == NULL) {
        return cli_fail(b->c, CLI_EXIT_FAILED, "out of memory");
    }
    twinbft__sm_op__pack(op, s->ops[s->n]);
    s->lens[s->n++] = len;
    return CLI_EXIT_OK;
}

/* A setup op succeeded, or found its object already there from an earlier
 * run against the same cluster: a twin exists, or a component does and
 * has placed replicas (it is then left as that run made it, min 1 max 2). */
static bool bench_script_ok(bench_client *cl, int status, const tb_result *r) {
    const bench_script *s = &cl->script;
    Twinbft__SmOp *op = twinbft__sm_op__unpack(NULL, s->lens[s->next - 1], s->ops[s->next - 1]);
    const char *what = op != NULL ? cli_oneof_name(&op->base) : "op";
    Twinbft__SmResult *res =
        status == 0 ? twinbft__sm_result__unpack(NULL, r->result_len, r->result) : NULL;
    bool ok = res != NULL && (res->code == TWINBFT__SM_CODE__SM_CODE_OK ||
                              res->reason == TWINBFT__SM_REASON__SM_REASON_EXISTS ||
                              (op != NULL && op->op_case == TWINBFT__SM_OP__OP_COMPONENT_PUT &&
                               res->reason == TWINBFT__SM_REASON__SM_REASON_IN_USE));
    if (!ok) {
        snprintf(cl->script_error, sizeof cl->script_error, "%s as %s: %s%s", what, cl->name,
                 status != 0   ? tb_strerror(status)
                 : res == NULL ? "undecodable result"
                               : "refused: ",
                 res != NULL ? res->detail : "");
    }
    twinbft__sm_result__free_unpacked(res, NULL);
    twinbft__sm_op__free_unpacked(op, NULL);
    return ok;
}

static void bench_script_next(bench_client *cl);

static void bench_on_script_done(int status, const tb_result *r, void *arg) {
    bench_client *cl = arg;
    cl->busy = false;
    if (!bench_script_ok(cl, status, r)) {
        cl->b->script_failed = true;
        cl->b->scripts_running--;
        return;
    }
    bench_script_next(cl);
}

static void bench_script_next(bench_client *cl) {
    bench_script *s = &cl->script;
    if (s->next == s->n) {
        cl->b->scripts_running--;
        return;
    }
    int rc = tb_client_submit(cl->tc, s->ops[s->next], s->lens[s->next], bench_on_script_done, cl);
    s->next++;
    if (rc != 0) {
        snprintf(cl->script_error, sizeof cl->script_error, "submit as %s: %s", cl->name,
                 tb_strerror(rc));
        cl->b->script_failed = true;
        cl->b->scripts_running--;
        return;
    }
    cl->busy = true;
}

static bool bench_scripts_done(bench *b) {
    return b->scripts_running == 0;
}

/* Runs the scripts of clients [first, first + count) at once. */
static int bench_scripts_run(bench *b, uint32_t first, uint32_t count, const char *what) {
    b->script_failed = false;
    for (uint32_t i = first; i < first + count; i++) {
        if (b->cl[i].script.n > 0) {
            b->scripts_running++;
            b->cl[i].script.next = 0;
            bench_script_next(&b->cl[i]);
        }
    }
    bench_wait w = bench_loop(b, BENCH_SETUP_WAIT_MS, bench_scripts_done);
    for (uint32_t i = first; i < first + count; i++) {
        if (b->cl[i].script_error[0] != '\0') {
            return cli_fail(b->c, CLI_EXIT_FAILED, "%s: %s", what, b->cl[i].script_error);
        }
    }
    return bench_wait_exit(b, w, CLI_EXIT_UNREACHABLE, what);
}

static bool bench_needs_twin(const bench *b) {
    return b->o.op != BENCH_OP_CONFIG;
}

static bool bench_does(const bench *b, bench_op op) {
    return b->o.op == op || b->o.op == BENCH_OP_MIX;
}

static int bench_site_put(bench *b, bench_script *s, const char *id) {
    Twinbft__SmSitePut m = TWINBFT__SM_SITE_PUT__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    m.id = (char *)id;
    m.name = "twinbft bench";
    op.op_case = TWINBFT__SM_OP__OP_SITE_PUT, op.site_put = &m;
    return bench_script_add(b, s, &op);
}

static int bench_node_put(bench *b, bench_script *s, uint32_t k) {
    char id[BENCH_NAME_BYTES];
    Twinbft__SmNodePut m = TWINBFT__SM_NODE_PUT__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    snprintf(id, sizeof id, "bench-node-%" PRIu32, k);
    m.id = id;
    m.tier = TWINBFT__SM_TIER__SM_TIER_EDGE;
    m.site = "bench-site";
    m.cpu_millicores = 1000000u;
    m.memory_mib = 1000000u;
    op.op_case = TWINBFT__SM_OP__OP_NODE_PUT, op.node_put = &m;
    return bench_script_add(b, s, &op);
}

static int bench_grant(bench *b, bench_script *s, const char *principal, uint32_t roles) {
    Twinbft__SmAclGrant m = TWINBFT__SM_ACL_GRANT__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    m.principal = (char *)principal;
    m.roles = roles;
    op.op_case = TWINBFT__SM_OP__OP_ACL_GRANT, op.acl_grant = &m;
    return bench_script_add(b, s, &op);
}

/* The admin's part: sites and nodes (admin only), then the operator role
 * for every bench principal (config put, twins, placement, policy and
 * estop reset all accept an operator; sm.h lists who may do what). */
static int bench_admin_script(bench *b) {
    bench_script *s = &b->admin->script;
    int rc = bench_needs_twin(b) ? bench_site_put(b, s, "bench-site") : CLI_EXIT_OK;
    if (rc == CLI_EXIT_OK && b->o.estop_probe) {
        rc = bench_site_put(b, s, "bench-estop");
    }
    b->nodes = bench_does(b, BENCH_OP_PLACE)
                   ? BENCH_NODES_MIN + 2 * b->o.clients / BENCH_NODE_REPLICAS
                   : 0;
    for (uint32_t k = 0; rc == CLI_EXIT_OK && k < b->nodes; k++) {
        rc = bench_node_put(b, s, k);
    }
    for (uint32_t i = 0; rc == CLI_EXIT_OK && i <= b->o.clients; i++) {
        if (i < b->o.clients || b->o.estop_probe) {
            rc = bench_grant(b, s, b->cl[i].name, TWINBFT__SM_ROLE__SM_ROLE_OPERATOR);
        }
    }
    return rc;
}

static int bench_twin_script(bench *b, bench_client *cl) {
    Twinbft__SmTwinCreate t = TWINBFT__SM_TWIN_CREATE__INIT;
    Twinbft__SmPolicy p = TWINBFT__SM_POLICY__INIT;
    Twinbft__SmPolicyPut pp = TWINBFT__SM_POLICY_PUT__INIT;
    Twinbft__SmComponentPut comp = TWINBFT__SM_COMPONENT_PUT__INIT;
    Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
    t.id = cl->twin, t.kind = TWINBFT__SM_TWIN_KIND__SM_TWIN_KIND_SITE;
    t.site = "bench-site", t.owner = cl->name;
    op.op_case = TWINBFT__SM_OP__OP_TWIN_CREATE, op.twin_create = &t;
    int rc = bench_script_add(b, &cl->script, &op);
    if (rc == CLI_EXIT_OK && bench_does(b, BENCH_OP_ACTUATE)) {
        /* No step, interval or interlock: every request is approved, and
         * the command goes to the client itself. */
        p.twin = cl->twin, p.property = "setpoint", p.min = 0, p.max = INT64_MAX;
        p.required_role = TWINBFT__SM_ROLE__SM_ROLE_OPERATOR, p.principal = cl->name;
        pp.policy = &p;
        op.op_case = TWINBFT__SM_OP__OP_POLICY_PUT, op.policy_put = &pp;
        rc = bench_script_add(b, &cl->script, &op);
    }
    if (rc == CLI_EXIT_OK && bench_does(b, BENCH_OP_PLACE)) {
        comp.twin = cl->twin, comp.name = "svc", comp.cpu_millicores = 1, comp.memory_mib = 1;
        comp.zone = "", comp.min_replicas = 1, comp.max_replicas = 2;
        op.op_case = TWINBFT__SM_OP__OP_COMPONENT_PUT, op.component_put = &comp;
        rc = bench_script_add(b, &cl->script, &op);
    }
    return rc;
}

/* Every client has a quorum of links, and all of them or the grace passed. */
static bool bench_linked(bench *b) {
    uint64_t *quorum_since_us = &b->links_quorum_us;
    uint32_t full = 0;
    for (uint32_t i = 0; i < b->n_cl; i++) {
        uint32_t k = b->cl[i].tc != NULL ? tb_client_connected(b->cl[i].tc) : b->n;
        if (k < b->quorum) {
            *quorum_since_us = 0;
            return false;
        }
        full += k == b->n;
    }
    uint64_t now = bench_now_us();
    *quorum_since_us = *quorum_since_us != 0 ? *quorum_since_us : now;
    return full == b->n_cl || now - *quorum_since_us >= BENCH_LINKS_GRACE_MS * 1000u;
}

static int bench_clients_new(bench *b) {
    char dir[CLI_PATH_BYTES_MAX];
    for (uint32_t i = 0; i <= b->o.clients; i++) {
        bench_client *cl = &b->cl[i];
        if (i == b->o.clients && !b->o.estop_probe) {
            continue;
        }
        int rc = cli_identity_issue(b->c, b->ca_dir, b->ids_dir, cl->name);
        if (rc == CLI_EXIT_OK && !cli_join(dir, sizeof dir, b->ids_dir, cl->name)) {
            rc = cli_fail(b->c, CLI_EXIT_FAILED, "path %s/%s is too long", b->ids_dir, cl->name);
        }
        rc = rc != CLI_EXIT_OK ? rc : bench_client_new(b, cl, dir);
        if (rc != CLI_EXIT_OK) {
            return rc;
        }
    }
    return CLI_EXIT_OK;
}

int bench_setup(bench *b) {
    for (uint32_t i = 0; i < b->o.clients; i++) {
        bench_client *cl = &b->cl[i];
        cl->id = i;
        snprintf(cl->name, sizeof cl->name, "bench-%s-%" PRIu32, b->run_id, i);
        snprintf(cl->twin, sizeof cl->twin, "bench-t%" PRIu32, i);
    }
    snprintf(b->probe->name, sizeof b->probe->name, "bench-%s-estop", b->run_id);
    b->probe->id = b->o.clients;
    /* Identities and links first: their handshakes overlap the admin's ops. */
    int rc = bench_clients_new(b);
    rc = rc != CLI_EXIT_OK ? rc : bench_admin_script(b);
    rc = rc != CLI_EXIT_OK ? rc : bench_scripts_run(b, b->o.clients + 1, 1, "setup (admin)");
    if (rc == CLI_EXIT_OK) {
        rc = bench_wait_exit(b, bench_loop(b, BENCH_START_WAIT_MS, bench_linked),
                             CLI_EXIT_UNREACHABLE, "connecting the bench clients");
    }
    for (uint32_t i = 0; rc == CLI_EXIT_OK && bench_needs_twin(b) && i < b->o.clients; i++) {
        rc = bench_twin_script(b, &b->cl[i]);
    }
    if (rc == CLI_EXIT_OK) {
        rc = bench_scripts_run(b, 0, b->o.clients, "setup (clients)");
    }
    return rc;
}

void bench_revoke(bench *b) {
    bench_script_clear(&b->admin->script);
    b->admin->script_error[0] = '\0';
    for (uint32_t i = 0; i <= b->o.clients; i++) {
        if (b->cl[i].tc == NULL) {
            continue;
        }
        Twinbft__SmAclRevoke m = TWINBFT__SM_ACL_REVOKE__INIT;
        Twinbft__SmOp op = TWINBFT__SM_OP__INIT;
        m.principal = b->cl[i].name;
        op.op_case = TWINBFT__SM_OP__OP_ACL_REVOKE, op.acl_revoke = &m;
        if (bench_script_add(b, &b->admin->script, &op) != CLI_EXIT_OK) {
            return;
        }
    }
    bench_signalled = 0; /* one ^C stops the run; the clean-up still happens */
    if (b->admin->tc != NULL && !b->admin->busy) {
        (void)bench_scripts_run(b, b->o.clients + 1, 1, "revoking the bench principals' roles");
    }
}
