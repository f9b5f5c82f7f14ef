/* Execution strictly in sequence order, exactly once per client request
 * number, and the replies: one signature per batch over the Merkle root of
 * the batch's results; each reply carries its leaf's inclusion path. */
#include <string.h>

#include "consensus/internal.h"
#include "proto/merkle.h"

_Static_assert((size_t)PBFT_BATCH_REQUESTS_MAX <= (size_t)PROTO_MERKLE_LEAVES_MAX,
               "every batch's results fit in one signed Merkle tree");

void try_execute(pbft_node *node) {
    /* A diverged state is not built on: it waits to be replaced. */
    while (node->fault == 0 && node->diverged_seq == 0) {
        uint64_t next = node->executed + 1;
        if (next > node->h + node->cfg.log_window) {
            return;
        }
        pbft_slot *sl = &node->slots[next % node->cfg.log_window];
        if (sl->seq != next || sl->cc == NULL) {
            return;
        }
        execute_committed(node, next, sl->cc_view, sl->cc_digest, sl->cc_batch, sl->cc_batch_len);
    }
}

/* A request is fresh if its number is above the client's last executed one
 * and above any earlier occurrence of the same client in this batch. */
static bool fresh(pbft_node *node, const Twinbft__Batch *b, size_t i) {
    const Twinbft__Request *r = b->requests[i];
    if (PBFT_BUG(node, PBFT_BUG_NO_DEDUP)) {
        return true;
    }
    pbft_client *c = client_find(node, r->client);
    if (c != NULL && r->number <= c->number) {
        return false;
    }
    for (size_t j = 0; j < i; j++) {
        if (strcmp(b->requests[j]->client, r->client) == 0 && b->requests[j]->number >= r->number) {
            return false;
        }
    }
    return true;
}

static uint8_t *pack_leaf(const pbft_request *r, const pbft_result *res, uint64_t time_ms,
                          uint64_t ttl_default, size_t *len) {
    Twinbft__ResultLeaf leaf = TWINBFT__RESULT_LEAF__INIT;
    leaf.client = (char *)r->client;
    leaf.number = r->number;
    leaf.result = (ProtobufCBinaryData){res->result_len, (uint8_t *)res->result};
    leaf.not_before_ms = time_ms;
    leaf.expires_at_ms = time_ms + (res->ttl_ms ? res->ttl_ms : ttl_default);
    *len = twinbft__result_leaf__get_packed_size(&leaf);
    uint8_t *b = malloc(*len ? *len : 1);
    PBFT_ASSERT(b != NULL);
    twinbft__result_leaf__pack(&leaf, b);
    return b;
}

/* The one signature of a batch's replies: over the cluster, epoch, seq, the
 * results' Merkle root, the consensus time and the number of leaves (which
 * a path alone does not fix, proto/merkle.h). */
static uint8_t *sign_root(pbft_node *node, uint64_t seq, const uint8_t *root, uint32_t count,
                          uint64_t ts, size_t *slen) {
    PBFT_ASSERT(count >= 1 && count <= PROTO_MERKLE_LEAVES_MAX);
    Twinbft__ResultRoot rr = TWINBFT__RESULT_ROOT__INIT;
    rr.cluster_id = (ProtobufCBinaryData){node->cfg.cluster_id_len, node->cluster_id};
    rr.epoch = node->cfg.epoch;
    rr.seq = seq;
    rr.root = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, (uint8_t *)root};
    rr.timestamp_ms = ts;
    rr.count = count;
    Twinbft__Body body = TWINBFT__BODY__INIT;
    body.kind_case = TWINBFT__BODY__KIND_RESULT_ROOT;
    body.result_root = &rr;
    uint8_t *sb = NULL;
    PBFT_ASSERT(out_sign(node, &body, &sb, slen) == 0);
    return sb;
}

/* Sends the reply described by a client-table entry, with a signed root. */
static void send_reply(pbft_node *node, const Twinbft__ClientEntry *e, const uint8_t *sroot,
                       size_t sroot_len) {
    Twinbft__Signed *root = twinbft__signed__unpack(NULL, sroot_len, sroot);
    PBFT_ASSERT(root != NULL);
    Twinbft__Reply r = TWINBFT__REPLY__INIT;
    r.replica = node->cfg.self;
    r.view = node->view;
    r.seq = e->seq;
    r.leaf = e->leaf;
    r.index = e->index;
    r.count = e->count;
    r.path = e->path;
    r.n_path = e->n_path;
    r.root = root;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_REPLY;
    m.reply = &r;
    out_msg(node, PBFT_TO_CLIENT, e->client, &m);
    twinbft__signed__free_unpacked(root, NULL);
}

/* A client that repeats its last request (it missed replies) gets the
 * reply again. The signed root comes from the recent batches' ring, or
 * from the client's own cache: without them, each repeat cost a fresh
 * Ed25519 signature, and a client could make a replica sign without limit.
 * Now it costs at most one per executed request. */
void resend_reply(pbft_node *node, pbft_client *c) {
    Twinbft__ClientEntry *e = twinbft__client_entry__unpack(NULL, c->entry_len, c->entry);
    PBFT_ASSERT(e != NULL);
    if (e->root.len == PROTO_DIGEST_BYTES) {
        const pbft_sroot *r = &node->sroots[e->seq % node->cfg.log_window];
        if (r->seq == e->seq && r->data != NULL) {
            send_reply(node, e, r->data, r->len);
        } else {
            if (c->sroot == NULL) {
                c->sroot =
                    sign_root(node, e->seq, e->root.data, e->count, e->timestamp_ms, &c->sroot_len);
            }
            send_reply(node, e, c->sroot, c->sroot_len);
        }
    }
    twinbft__client_entry__free_unpacked(e, NULL);
}

/* Keeps a batch's signed root for resend_reply; takes ownership. */
static void sroot_keep(pbft_node *node, uint64_t seq, uint8_t *data, size_t len) {
    pbft_sroot *r = &node->sroots[seq % node->cfg.log_window];
    free(r->data);
    *r = (pbft_sroot){seq, data, len};
}

/* Records each executed request in the client table and replies to it. */
static void reply_all(pbft_node *node, uint64_t seq, uint64_t time_ms, const pbft_request *reqs,
                      const pbft_result *res, size_t n) {
    uint8_t(*hashes)[PROTO_DIGEST_BYTES] = malloc(n * sizeof *hashes);
    uint8_t **leaves = malloc(n * sizeof *leaves);
    size_t *leaf_len = malloc(n * sizeof *leaf_len);
    PBFT_ASSERT(hashes != NULL && leaves != NULL && leaf_len != NULL);
    for (size_t i = 0; i < n; i++) {
        leaves[i] = pack_leaf(&reqs[i], &res[i], time_ms, node->cfg.result_ttl_ms, &leaf_len[i]);
        proto_merkle_leaf_hash(leaves[i], leaf_len[i], hashes[i]);
    }
    proto_merkle *tree = NULL;
    PBFT_ASSERT(proto_merkle_build((const uint8_t(*)[PROTO_DIGEST_BYTES])hashes, n, &tree) == 0);
    uint8_t root[PROTO_DIGEST_BYTES];
    proto_merkle_root(tree, root);
    size_t sroot_len = 0;
    uint8_t *sroot = sign_root(node, seq, root, (uint32_t)n, time_ms, &sroot_len);
    for (size_t i = 0; i < n; i++) {
        uint8_t path[PROTO_MERKLE_DEPTH_MAX][PROTO_DIGEST_BYTES];
        size_t plen = 0;
        PBFT_ASSERT(proto_merkle_path(tree, i, path, &plen) == 0);
        ProtobufCBinaryData pd[PROTO_MERKLE_DEPTH_MAX];
        for (size_t k = 0; k < plen; k++) {
            pd[k] = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, path[k]};
        }
        Twinbft__ClientEntry e = TWINBFT__CLIENT_ENTRY__INIT;
        e.client = (char *)reqs[i].client;
        e.number = reqs[i].number;
        e.seq = seq;
        e.leaf = (ProtobufCBinaryData){leaf_len[i], leaves[i]};
        e.index = (uint32_t)i;
        e.count = (uint32_t)n;
        e.path = pd;
        e.n_path = plen;
        e.root = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, root};
        e.timestamp_ms = time_ms;
        size_t elen = twinbft__client_entry__get_packed_size(&e);
        uint8_t *eb = malloc(elen);
        PBFT_ASSERT(eb != NULL);
        twinbft__client_entry__pack(&e, eb);
        client_update(node, reqs[i].client, reqs[i].number, eb, elen);
        send_reply(node, &e, sroot, sroot_len);
        pending_remove_upto(node, reqs[i].client, reqs[i].number);
        free(leaves[i]);
    }
    sroot_keep(node, seq, sroot, sroot_len);
    proto_merkle_free(tree);
    free(hashes);
    free(leaves);
    free(leaf_len);
}

static void report_executed(pbft_node *node, uint64_t seq, uint64_t view, const uint8_t *digest,
                            uint64_t time_ms, Twinbft__Batch *b, pbft_request *reqs, size_t n) {
    pbft_out *o = &node->out;
    if (o->n_executed == o->cap_executed) {
        o->cap_executed = o->cap_executed ? o->cap_executed * 2 : 16;
        o->executed = realloc(o->executed, o->cap_executed * sizeof *o->executed);
        PBFT_ASSERT(o->executed != NULL);
    }
    pbft_executed *e = &o->executed[o->n_executed++];
    memset(e, 0, sizeof *e);
    e->seq = seq;
    e->view = view;
    memcpy(e->digest, digest, PROTO_DIGEST_BYTES);
    e->time_ms = time_ms;
    e->n_requests = n;
    e->requests = reqs;
    e->batch_owner = b;
}

void execute_committed(pbft_node *node, uint64_t seq, uint64_t view, const uint8_t *digest,
                       const uint8_t *batch, size_t batch_len) {
    PBFT_ASSERT(seq == node->executed + 1);
    Twinbft__Batch *b = NULL;
    if (batch_len > 0) {
        b = twinbft__batch__unpack(NULL, batch_len, batch);
        PBFT_ASSERT(b != NULL); /* its digest was agreed, and it decoded when accepted */
    }
    size_t nb = b ? b->n_requests : 0, n = 0;
    uint64_t time_ms = node->last_ts;
    if (b && b->timestamp_ms > time_ms) {
        time_ms = b->timestamp_ms; /* consensus time never runs backwards */
    }
    pbft_request *reqs = calloc(nb ? nb : 1, sizeof *reqs);
    pbft_result *res = calloc(nb ? nb : 1, sizeof *res);
    PBFT_ASSERT(reqs != NULL && res != NULL);
    for (size_t i = 0; i < nb; i++) {
        if (fresh(node, b, i)) {
            const Twinbft__Request *r = b->requests[i];
            reqs[n++] = (pbft_request){r->client, r->number, r->op.data, r->op.len};
        }
    }
    if (n > 0) {
        int rc = node->cfg.app.execute(node->cfg.app.ctx, seq, time_ms, reqs, n, res);
        if (rc != 0) {
            /* A local fault (storage): not executed, and nothing more is,
             * rather than diverge from the others. */
            node_fault(node, rc);
            free(reqs);
            free(res);
            twinbft__batch__free_unpacked(b, NULL);
            return;
        }
    }
    node->executed = seq;
    node->last_ts = time_ms;
    meta_dirty(node);
    if (n > 0) {
        reply_all(node, seq, time_ms, reqs, res, n);
        /* The request timer follows the oldest request still held (see
         * request_timer_update), and a view that executes requests has
         * succeeded, so the view-change timeout resets. */
        if (PBFT_BUG(node, PBFT_BUG_TIMER_RESET)) {
            node->req_fetched = false; /* the old rule: any progress restarts it */
            node->req_since = node->now;
        }
        request_timer_update(node);
        if (!node->in_vc) {
            /* Only execution in a working view proves it: batches that
             * arrive by state transfer during a view change do not. */
            node->vc_timeout = node->cfg.view_timeout_ms;
        }
    }
    free(res);
    report_executed(node, seq, view, digest, time_ms, b, reqs, n);
    if (seq % node->cfg.checkpoint_interval == 0) {
        take_checkpoint(node);
    }
}
