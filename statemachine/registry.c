/* Registry of sites and compute nodes. */
#include <stdlib.h>
#include <string.h>

#include "statemachine/internal.h"

int sm_twin_get(sm_ctx *c, const char *id, Twinbft__SmTwin **out) {
    return sm_rec_get(c, SM_T_TWIN, id, strlen(id), &twinbft__sm_twin__descriptor, (void **)out);
}

int sm_node_get(sm_ctx *c, const char *id, Twinbft__SmNode **out) {
    return sm_rec_get(c, SM_T_NODE, id, strlen(id), &twinbft__sm_node__descriptor, (void **)out);
}

static int site_get(sm_ctx *c, const char *id, Twinbft__SmSite **out) {
    return sm_rec_get(c, SM_T_SITE, id, strlen(id), &twinbft__sm_site__descriptor, (void **)out);
}

static int site_put(sm_ctx *c, const Twinbft__SmSite *site) {
    return sm_rec_put(c, SM_T_SITE, site->id, strlen(site->id), site);
}

/* Adjusts a site's reference counters (nodes or twins). */
int sm_site_count(sm_ctx *c, const char *id, int nodes, int twins) {
    Twinbft__SmSite *site = NULL;
    int err = site_get(c, id, &site);
    if (err != 0) {
        return err == TB_ERR_NOT_FOUND ? TB_ERR_IO : err; /* referenced sites exist */
    }
    TB_ASSERT((int64_t)site->nodes + nodes >= 0 && (int64_t)site->twins + twins >= 0);
    site->nodes = (uint32_t)((int64_t)site->nodes + nodes);
    site->twins = (uint32_t)((int64_t)site->twins + twins);
    return site_put(c, site);
}

int sm_db_count(sm_ctx *c, int table, size_t *out) {
    MDB_stat st;
    int rc = mdb_stat(c->txn, c->s->dbi[table], &st);
    if (rc != 0) {
        return sm_lmdb_err(rc, "stat");
    }
    *out = st.ms_entries;
    return 0;
}

int sm_op_site_put(sm_ctx *c, const Twinbft__SmSitePut *op) {
    if (!sm_valid_id(op->id) || !sm_valid_text(op->name, SM_TEXT_BYTES_MAX)) {
        return sm_malformed(c, "site needs a valid id and a name of at most %d bytes",
                            SM_TEXT_BYTES_MAX);
    }
    if (!sm_authz(c, SM_ROLE_ADMIN)) {
        return 0;
    }
    Twinbft__SmSite *site = NULL;
    int err = site_get(c, op->id, &site);
    if (err == TB_ERR_NOT_FOUND) {
        size_t n = 0;
        if ((err = sm_db_count(c, SM_T_SITE, &n)) != 0) {
            return err;
        }
        if (n >= SM_SITES_MAX) {
            return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_LIMIT, "at most %d sites",
                           SM_SITES_MAX);
        }
        site = sm_arena_alloc(c->arena, sizeof *site);
        twinbft__sm_site__init(site);
        site->id = op->id;
    } else if (err != 0) {
        return err;
    }
    site->name = op->name;
    return site_put(c, site);
}

int sm_op_site_retire(sm_ctx *c, const Twinbft__SmSiteRetire *op) {
    if (!sm_valid_id(op->id)) {
        return sm_malformed(c, "site id is not valid");
    }
    if (!sm_authz(c, SM_ROLE_ADMIN)) {
        return 0;
    }
    Twinbft__SmSite *site = NULL;
    int err = site_get(c, op->id, &site);
    if (err == TB_ERR_NOT_FOUND) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_NOT_FOUND, "no site %s", op->id);
    }
    if (err != 0) {
        return err;
    }
    if (site->nodes > 0 || site->twins > 0) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_IN_USE, "site %s has %u nodes and %u twins",
                       op->id, site->nodes, site->twins);
    }
    return sm_db_del(c->s, c->txn, SM_T_SITE, op->id, strlen(op->id));
}

static int cmp_label(const void *a, const void *b) {
    return strcmp((*(Twinbft__SmLabel *const *)a)->key, (*(Twinbft__SmLabel *const *)b)->key);
}

static int cmp_latency(const void *a, const void *b) {
    return strcmp((*(Twinbft__SmLatency *const *)a)->site, (*(Twinbft__SmLatency *const *)b)->site);
}

/* Checks a node description and sorts its labels and latencies (strcmp
 * order, so the stored record does not depend on the order sent).
 * Returns false after setting the result when it is malformed. */
static bool node_normalise(sm_ctx *c, Twinbft__SmNodePut *op) {
    bool ok = sm_valid_id(op->id) && sm_valid_id(op->site) &&
              (op->tier == TWINBFT__SM_TIER__SM_TIER_EDGE ||
               op->tier == TWINBFT__SM_TIER__SM_TIER_CLOUD) &&
              (op->zone[0] == '\0' || sm_valid_id(op->zone)) &&
              (op->agent[0] == '\0' || sm_valid_principal(op->agent)) &&
              op->n_labels <= SM_NODE_LABELS_MAX && op->n_latencies <= SM_NODE_LATENCIES_MAX;
    for (size_t i = 0; ok && i < op->n_labels; i++) {
        ok =
            sm_valid_id(op->labels[i]->key) && sm_valid_text(op->labels[i]->value, SM_ID_BYTES_MAX);
    }
    for (size_t i = 0; ok && i < op->n_latencies; i++) {
        ok = sm_valid_id(op->latencies[i]->site);
    }
    if (ok) {
        if (op->n_labels > 1) {
            qsort(op->labels, op->n_labels, sizeof *op->labels, cmp_label);
        }
        if (op->n_latencies > 1) {
            qsort(op->latencies, op->n_latencies, sizeof *op->latencies, cmp_latency);
        }
        for (size_t i = 1; ok && i < op->n_labels; i++) {
            ok = cmp_label(&op->labels[i - 1], &op->labels[i]) != 0;
        }
        for (size_t i = 1; ok && i < op->n_latencies; i++) {
            ok = cmp_latency(&op->latencies[i - 1], &op->latencies[i]) != 0;
        }
    }
    if (!ok) {
        sm_malformed(c,
                     "node needs valid id, site, tier (edge|cloud), zone, agent, unique "
                     "labels (<= %d) and latencies (<= %d)",
                     SM_NODE_LABELS_MAX, SM_NODE_LATENCIES_MAX);
    }
    return ok;
}

/* A new node: within the node limit, counted at its site. */
static int node_admit(sm_ctx *c, const Twinbft__SmNodePut *op, Twinbft__SmNode **out) {
    size_t n = 0;
    int err = sm_db_count(c, SM_T_NODE, &n);
    if (err != 0) {
        return err;
    }
    if (n >= SM_NODES_MAX) {
        sm_deny(c, TWINBFT__SM_REASON__SM_REASON_LIMIT, "at most %d nodes", SM_NODES_MAX);
        return 0;
    }
    Twinbft__SmNode *node = sm_arena_alloc(c->arena, sizeof *node);
    twinbft__sm_node__init(node);
    node->id = op->id;
    *out = node;
    return sm_site_count(c, op->site, 1, 0);
}

int sm_op_node_put(sm_ctx *c, const Twinbft__SmNodePut *cop) {
    Twinbft__SmNodePut *op = (Twinbft__SmNodePut *)cop; /* normalised in place (arena copy) */
    if (!node_normalise(c, op) || !sm_authz(c, SM_ROLE_ADMIN)) {
        return 0;
    }
    Twinbft__SmSite *site = NULL;
    int err = site_get(c, op->site, &site);
    if (err == TB_ERR_NOT_FOUND) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_SITE_MISSING, "no site %s", op->site);
    }
    Twinbft__SmNode *node = NULL;
    if (err == 0) {
        err = sm_node_get(c, op->id, &node);
    }
    if (err == TB_ERR_NOT_FOUND) {
        node = NULL;
        if ((err = node_admit(c, op, &node)) != 0 || node == NULL) {
            return err;
        }
    } else if (err != 0) {
        return err;
    } else if (op->cpu_millicores < node->cpu_used || op->memory_mib < node->memory_used) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_CAPACITY,
                       "node %s already runs %llu millicores and %llu MiB", op->id,
                       (unsigned long long)node->cpu_used, (unsigned long long)node->memory_used);
    } else if (strcmp(node->site, op->site) != 0) {
        if ((err = sm_site_count(c, node->site, -1, 0)) != 0 ||
            (err = sm_site_count(c, op->site, 1, 0)) != 0) {
            return err;
        }
    }
    node->tier = op->tier;
    node->site = op->site;
    node->zone = op->zone;
    node->cpu_millicores = op->cpu_millicores;
    node->memory_mib = op->memory_mib;
    node->labels = op->labels;
    node->n_labels = op->n_labels;
    node->latencies = op->latencies;
    node->n_latencies = op->n_latencies;
    node->agent = op->agent;
    return sm_rec_put(c, SM_T_NODE, node->id, strlen(node->id), node);
}

int sm_op_node_retire(sm_ctx *c, const Twinbft__SmNodeRetire *op) {
    if (!sm_valid_id(op->id)) {
        return sm_malformed(c, "node id is not valid");
    }
    if (!sm_authz(c, SM_ROLE_ADMIN)) {
        return 0;
    }
    Twinbft__SmNode *node = NULL;
    int err = sm_node_get(c, op->id, &node);
    if (err == TB_ERR_NOT_FOUND) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_NOT_FOUND, "no node %s", op->id);
    }
    if (err != 0) {
        return err;
    }
    if (node->replicas > 0) {
        return sm_deny(c, TWINBFT__SM_REASON__SM_REASON_IN_USE, "node %s hosts %u replicas", op->id,
                       node->replicas);
    }
    if ((err = sm_site_count(c, node->site, -1, 0)) != 0) {
        return err;
    }
    return sm_db_del(c->s, c->txn, SM_T_NODE, op->id, strlen(op->id));
}
