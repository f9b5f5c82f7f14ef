/* The node: creation, dispatch of step/tick, the ready/advance pair, and
 * restart from persisted records. */
#include <string.h>

#include "consensus/internal.h"
#include "proto/frame.h"

void pbft_config_defaults(pbft_config *cfg) {
    cfg->checkpoint_interval = 64;
    cfg->log_window = 256;
    cfg->batch_requests_max = 128;
    cfg->batch_delay_ms = 2;
    cfg->inflight_batches_max = 8;
    cfg->request_timeout_ms = 2000;
    cfg->view_timeout_ms = 2000;
    cfg->clock_skew_ms_max = 2000;
    cfg->result_ttl_ms = 30000;
    cfg->transfer_chunk_bytes = 1u << 20;
    cfg->transfer_window = 8;
    cfg->epoch = 0;
    cfg->bugs = 0;
}

static int config_check(const pbft_config *c) {
    if (c->n == 0 || c->n > PBFT_REPLICAS_MAX || c->self >= c->n) {
        return TB_ERR_INVALID;
    }
    if (c->checkpoint_interval == 0 || c->log_window % c->checkpoint_interval != 0 ||
        c->log_window < 2 * c->checkpoint_interval || c->log_window > PBFT_LOG_WINDOW_MAX) {
        return TB_ERR_INVALID;
    }
    if (c->batch_requests_max == 0 || c->batch_requests_max > PBFT_BATCH_REQUESTS_MAX ||
        c->inflight_batches_max == 0 || c->view_timeout_ms == 0 || c->request_timeout_ms == 0) {
        return TB_ERR_INVALID;
    }
    if (c->cluster_id_len > 64 || c->crypto.sign == NULL || c->crypto.verify == NULL ||
        c->app.execute == NULL || c->app.digest == NULL || c->app.checkpoint == NULL ||
        c->app.release == NULL) {
        return TB_ERR_INVALID;
    }
    /* State transfer: the whole-buffer pair, or every streaming callback. */
    bool whole = c->app.snapshot != NULL && c->app.restore != NULL;
    bool stream = c->app.export_manifest != NULL && c->app.export_read != NULL &&
                  c->app.import_begin != NULL && c->app.import_write != NULL &&
                  c->app.import_finish != NULL;
    if (!whole && !stream) {
        return TB_ERR_INVALID;
    }
    if (c->transfer_chunk_bytes == 0 || c->transfer_chunk_bytes > PROTO_FRAME_BYTES_MAX / 4 ||
        c->transfer_window == 0) {
        return TB_ERR_INVALID;
    }
    return 0;
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    PBFT_ASSERT(p != NULL);
    return p;
}

int pbft_node_create(const pbft_config *cfg, uint64_t now_ms, pbft_node **out) {
    int rc = config_check(cfg);
    if (rc != 0) {
        return rc;
    }
    pbft_node *node = xcalloc(1, sizeof *node);
    node->cfg = *cfg;
    memcpy(node->cluster_id, cfg->cluster_id, cfg->cluster_id_len);
    node->cfg.cluster_id = node->cluster_id;
    node->n = cfg->n;
    node->f = pbft_f(cfg->n);
    node->q = pbft_quorum(cfg->n);
    node->now = now_ms;
    node->vc_timeout = cfg->view_timeout_ms;
    node->vcs = xcalloc(node->n, sizeof *node->vcs);
    node->seen_view = xcalloc(node->n, sizeof *node->seen_view);
    node->slots = xcalloc(cfg->log_window, sizeof *node->slots);
    for (uint32_t i = 0; i < cfg->log_window; i++) {
        node->slots[i].prepares = xcalloc(node->n, sizeof(pbft_vote));
        node->slots[i].commits = xcalloc(node->n, sizeof(pbft_vote));
    }
    node->h_proof = xcalloc(node->n, sizeof *node->h_proof);
    node->h_proof_len = xcalloc(node->n, sizeof *node->h_proof_len);
    node->n_ckpts = cfg->log_window / cfg->checkpoint_interval + 1;
    node->ckpts = xcalloc(node->n_ckpts, sizeof *node->ckpts);
    for (size_t i = 0; i < node->n_ckpts; i++) {
        node->ckpts[i].votes = xcalloc(node->n, sizeof(pbft_vote));
    }
    node->peer_ckpt = xcalloc(node->n, sizeof *node->peer_ckpt);
    node->future = xcalloc(PBFT_FUTURE_MSGS_MAX, sizeof *node->future);
    node->future_bytes = xcalloc(node->n, sizeof *node->future_bytes);
    node->fetch_served_at = xcalloc(node->n, sizeof *node->fetch_served_at);
    node->chunks_served = xcalloc(node->n, sizeof *node->chunks_served);
    node->chunks_period_at = xcalloc(node->n, sizeof *node->chunks_period_at);
    node->resent_at = xcalloc(node->n, sizeof *node->resent_at);
    node->nv_sent_at = xcalloc(node->n, sizeof *node->nv_sent_at);
    node->sroots = xcalloc(cfg->log_window, sizeof *node->sroots);
    node->next_seq = 1;
    proto_lthash_init(&node->clients_hash);
    /* The genesis checkpoint (seq 0) is the empty state; every replica agrees on it. */
    take_checkpoint(node);
    if (node->fault != 0) {
        int fault = node->fault;
        pbft_node_free(node);
        return fault;
    }
    *out = node;
    return 0;
}

void node_fault(pbft_node *node, int rc) {
    if (node->fault == 0) {
        node->fault = rc;
    }
}

int pbft_node_fault(const pbft_node *node) {
    return node->fault;
}

void pbft_node_set_wall(pbft_node *node, uint64_t wall_ms) {
    node->wall = wall_ms;
    node->wall_known = true;
}

uint64_t wall_now(const pbft_node *node) {
    return node->wall_known ? node->wall : node->now;
}

void slot_reset_view(pbft_node *node, pbft_slot *s) {
    free(s->pp);
    free(s->batch);
    s->pp = s->batch = NULL;
    s->pp_len = s->batch_len = 0;
    s->has_pp = s->waiting = s->stale_ts = s->prepared = s->sent_commit = false;
    s->pp_view = 0;
    for (uint32_t i = 0; i < node->n; i++) {
        vote_clear(&s->prepares[i]);
        vote_clear(&s->commits[i]);
    }
}

void slot_clear(pbft_node *node, pbft_slot *s) {
    slot_reset_view(node, s);
    free(s->pc);
    free(s->cc);
    free(s->cc_batch);
    pbft_vote *p = s->prepares, *c = s->commits;
    memset(s, 0, sizeof *s);
    s->prepares = p;
    s->commits = c;
}

static void ckpt_free_all(pbft_node *node) {
    for (size_t i = 0; i < node->n_ckpts; i++) {
        for (uint32_t j = 0; j < node->n; j++) {
            vote_clear(&node->ckpts[i].votes[j]);
        }
        free(node->ckpts[i].votes);
        free(node->ckpts[i].record);
    }
    free(node->ckpts);
}

void pbft_node_free(pbft_node *node) {
    if (node == NULL) {
        return;
    }
    for (uint32_t i = 0; i < node->cfg.log_window; i++) {
        slot_clear(node, &node->slots[i]);
        free(node->slots[i].prepares);
        free(node->slots[i].commits);
    }
    free(node->slots);
    for (uint32_t i = 0; i < node->n; i++) {
        vote_clear(&node->vcs[i]);
        free(node->h_proof[i]);
    }
    free(node->vcs);
    free(node->seen_view);
    free(node->h_proof);
    free(node->h_proof_len);
    free(node->nv);
    ckpt_free_all(node);
    free(node->peer_ckpt);
    for (size_t i = 0; i < node->n_clients; i++) {
        client_entry_free(&node->clients[i]);
    }
    free(node->clients);
    for (uint32_t i = 0; i < node->cfg.log_window; i++) {
        free(node->sroots[i].data);
    }
    free(node->sroots);
    for (size_t i = 0; i < node->n_pending; i++) {
        free(node->pending[i].client);
        free(node->pending[i].op);
        free(node->pending[i].prev_op);
    }
    free(node->pending);
    relay_free(node);
    for (size_t i = 0; i < node->n_future; i++) {
        free(node->future[i].data);
    }
    free(node->future);
    free(node->future_bytes);
    free(node->fetch_served_at);
    transfer_free(node);
    free(node->resent_at);
    free(node->nv_sent_at);
    restore_free(node);
    out_clear(&node->out);
    free(node->out.msgs);
    free(node->out.records);
    free(node->out.executed);
    free(node->out.stable);
    free(node);
}

uint32_t primary_of(const pbft_node *node, uint64_t view) {
    return (uint32_t)(view % node->n);
}

pbft_slot *slot_get(pbft_node *node, uint64_t seq) {
    uint64_t L = node->cfg.log_window;
    if (seq <= node->h || seq > node->h + L) {
        return NULL;
    }
    pbft_slot *s = &node->slots[seq % L];
    if (s->seq != seq) {
        PBFT_ASSERT(s->seq == 0 || s->seq <= node->h);
        slot_clear(node, s);
        s->seq = seq;
    }
    return s;
}

void meta_dirty(pbft_node *node) {
    node->out.meta_dirty = true;
}

void batch_digest(const uint8_t *batch, size_t len, uint8_t out[PROTO_DIGEST_BYTES]) {
    proto_sha256(batch, len, out);
}

/* Messages for a later view or beyond the high watermark are kept (bounded,
 * per sender) and retried when the view or the window moves, so that a
 * replica that enters a view late does not lose the prepares that raced
 * ahead of the NEW-VIEW. */
void buffer_future(pbft_node *node, const pbft_from *from, const uint8_t *data, size_t len) {
    size_t per_sender = PBFT_FUTURE_MSGS_MAX / node->n;
    if (len > PBFT_FUTURE_BYTES_PER_SENDER) {
        node->dropped++; /* no correct message for a later view is that large */
        return;
    }
    while (node->future_bytes[from->replica] + len > PBFT_FUTURE_BYTES_PER_SENDER) {
        size_t k = 0;
        while (k < node->n_future && node->future[k].from.replica != from->replica) {
            k++;
        }
        PBFT_ASSERT(k < node->n_future);
        node->future_bytes[from->replica] -= node->future[k].len;
        free(node->future[k].data);
        memmove(&node->future[k], &node->future[k + 1],
                (node->n_future - k - 1) * sizeof *node->future);
        node->n_future--;
        node->dropped++;
    }
    size_t mine = 0, oldest = SIZE_MAX;
    for (size_t i = 0; i < node->n_future; i++) {
        if (!node->future[i].from.is_client && node->future[i].from.replica == from->replica) {
            mine++;
            if (oldest == SIZE_MAX) {
                oldest = i;
            }
        }
    }
    if (mine >= per_sender) {
        /* Drop this sender's oldest: newer messages are the ones that matter. */
        node->future_bytes[from->replica] -= node->future[oldest].len;
        free(node->future[oldest].data);
        memmove(&node->future[oldest], &node->future[oldest + 1],
                (node->n_future - oldest - 1) * sizeof *node->future);
        node->n_future--;
        node->dropped++;
    }
    pbft_buffered *b = &node->future[node->n_future++];
    b->from = *from;
    b->from.client = NULL;
    b->data = dup_bytes(data, len);
    b->len = len;
    node->future_bytes[from->replica] += len;
}

void replay_future(pbft_node *node) {
    static const size_t rounds_max = 4;
    for (size_t round = 0; round < rounds_max && node->n_future > 0; round++) {
        size_t n = node->n_future;
        pbft_buffered *batch = malloc(n * sizeof *batch);
        PBFT_ASSERT(batch != NULL);
        memcpy(batch, node->future, n * sizeof *batch);
        node->n_future = 0;
        memset(node->future_bytes, 0, node->n * sizeof *node->future_bytes);
        for (size_t i = 0; i < n; i++) {
            pbft_node_step(node, &batch[i].from, batch[i].data, batch[i].len);
            free(batch[i].data);
        }
        free(batch);
        if (node->n_future >= n) {
            break; /* nothing was consumed: wait for the next change */
        }
    }
}

static void dispatch_signed(pbft_node *node, const pbft_from *from, const Twinbft__Signed *s,
                            Twinbft__Body__KindCase want) {
    Twinbft__Body *body = NULL;
    /* A NEW-VIEW proves itself (its primary's signature over q VIEW-CHANGEs),
     * so any replica may relay it: the only way a replica that missed a view
     * change gets it once the new primary has restarted and forgotten it. */
    bool relayable = want == TWINBFT__BODY__KIND_NEW_VIEW;
    if (s == NULL || (s->signer != from->replica && !relayable) ||
        verify_signed(node, s, &body) != 0) {
        node->dropped++;
        return;
    }
    if (body->kind_case != want) {
        node->dropped++;
        twinbft__body__free_unpacked(body, NULL);
        return;
    }
    size_t slen = 0;
    uint8_t *sbytes = pack_signed(s, &slen);
    switch (want) {
    case TWINBFT__BODY__KIND_CHECKPOINT:
        on_checkpoint(node, s, body, sbytes, slen);
        break;
    case TWINBFT__BODY__KIND_VIEW_CHANGE:
        on_view_change(node, s, body, sbytes, slen);
        break;
    case TWINBFT__BODY__KIND_NEW_VIEW:
        on_new_view(node, s, body, sbytes, slen);
        break;
    default:
        break;
    }
    free(sbytes);
    twinbft__body__free_unpacked(body, NULL);
}

static void dispatch(pbft_node *node, const pbft_from *from, const Twinbft__Message *m,
                     const uint8_t *data, size_t len) {
    if (m->kind_case == TWINBFT__MESSAGE__KIND_REQUEST) {
        if (from->is_client) {
            on_request(node, from, m->request);
        } else {
            node->dropped++;
        }
        return;
    }
    if (from->is_client || from->replica >= node->n || from->replica == node->cfg.self) {
        node->dropped++;
        return;
    }
    switch (m->kind_case) {
    case TWINBFT__MESSAGE__KIND_PRE_PREPARE:
        on_pre_prepare(node, from, m->pre_prepare, data, len);
        break;
    case TWINBFT__MESSAGE__KIND_PREPARE:
        on_prepare(node, from, m->prepare, data, len);
        break;
    case TWINBFT__MESSAGE__KIND_COMMIT:
        on_commit(node, from, m->commit, data, len);
        break;
    case TWINBFT__MESSAGE__KIND_CHECKPOINT:
        dispatch_signed(node, from, m->checkpoint, TWINBFT__BODY__KIND_CHECKPOINT);
        break;
    case TWINBFT__MESSAGE__KIND_VIEW_CHANGE:
        dispatch_signed(node, from, m->view_change, TWINBFT__BODY__KIND_VIEW_CHANGE);
        break;
    case TWINBFT__MESSAGE__KIND_NEW_VIEW:
        dispatch_signed(node, from, m->new_view, TWINBFT__BODY__KIND_NEW_VIEW);
        break;
    case TWINBFT__MESSAGE__KIND_FETCH:
        on_fetch(node, from, m->fetch);
        break;
    case TWINBFT__MESSAGE__KIND_FETCH_REPLY:
        on_fetch_reply(node, from, m->fetch_reply);
        break;
    case TWINBFT__MESSAGE__KIND_CHUNK_FETCH:
    case TWINBFT__MESSAGE__KIND_CHUNK:
        on_transfer_msg(node, from, m);
        break;
    case TWINBFT__MESSAGE__KIND_RELAY:
        on_relay(node, from, m->relay);
        break;
    default:
        node->dropped++;
        break;
    }
}

/* Work that must run at the top level, after a message or tick is fully
 * handled: replaying buffered messages (never from inside a handler, whose
 * state could change under it) and proposing. */
static void settle(pbft_node *node) {
    while (node->replay_pending && !node->replaying) {
        node->replay_pending = false;
        node->replaying = true;
        replay_future(node);
        node->replaying = false;
    }
    maybe_propose(node, false);
}

void pbft_node_stop(pbft_node *node) {
    node->stopped = true;
    meta_dirty(node); /* and with it every dirty slot, lazy ones too */
}

int pbft_node_step(pbft_node *node, const pbft_from *from, const uint8_t *data, size_t len) {
    if (node->stopped || node->fault != 0) {
        return TB_ERR_STATE;
    }
    if (from == NULL || (from->is_client && from->client == NULL)) {
        node->dropped++;
        return TB_ERR_INVALID;
    }
    Twinbft__Message *m = proto_message_unpack(data, len);
    if (m == NULL) {
        node->dropped++;
        return TB_ERR_INVALID;
    }
    dispatch(node, from, m, data, len);
    twinbft__message__free_unpacked(m, NULL);
    settle(node);
    return 0;
}

void pbft_node_flush(pbft_node *node) {
    if (node->stopped || node->fault != 0) {
        return;
    }
    settle(node);
    maybe_propose(node, true);
}

const char *pbft_vc_cause_text(pbft_vc_cause cause) {
    switch (cause) {
    case PBFT_VC_REQUEST_TIMEOUT:
        return "a request waited too long: it suspects the primary";
    case PBFT_VC_NEW_VIEW_TIMEOUT:
        return "a quorum changed view and the new primary did not deliver NEW-VIEW in time";
    case PBFT_VC_PEERS_ASKED:
        return "f+1 peers asked for a later view";
    case PBFT_VC_LATER_VIEW:
        return "f+1 peers were seen working in a later view";
    case PBFT_VC_RESTART:
        return "restarted during a view change";
    case PBFT_VC_PRIMARY_RESTART:
        return "restarted as this view's primary, which may have forgotten a pre-prepare and so "
               "cannot lead the view again";
    case PBFT_VC_PRIMARY_LEFT:
        return "the view's primary gave it up itself (it restarted)";
    case PBFT_VC_NONE:
        break;
    }
    return "none";
}

/* For the log line of a view change on a request timeout: which request
 * the primary did not get executed (the oldest one held). */
static void note_oldest_request(pbft_node *node) {
    const pbft_pending *old = NULL;
    for (size_t i = 0; i < node->n_pending; i++) {
        if (old == NULL || node->pending[i].arrival < old->arrival) {
            old = &node->pending[i];
        }
    }
    node->vc_request_client[0] = '\0';
    node->vc_request_number = node->vc_request_waited_ms = 0;
    if (old != NULL) {
        size_t len = strnlen(old->client, sizeof node->vc_request_client - 1);
        memcpy(node->vc_request_client, old->client, len);
        node->vc_request_client[len] = '\0';
        node->vc_request_number = old->number;
        node->vc_request_waited_ms = node->now > old->arrival_ms ? node->now - old->arrival_ms : 0;
    }
}

void pbft_node_tick(pbft_node *node, uint64_t now_ms) {
    if (node->stopped || node->fault != 0) {
        return;
    }
    if (now_ms > node->now) {
        node->now = now_ms;
    }
    if (node->in_vc && node->vc_deadline != 0 && node->now >= node->vc_deadline) {
        view_change_timeout(node);
    }
    if (node->relay_deadline != 0 && node->now >= node->relay_deadline) {
        relay_held(node);
    }
    if (node->req_deadline != 0 && node->now >= node->req_deadline) {
        if (!node->req_fetched) {
            /* First expiry: maybe we are only behind; catch up before accusing the primary. */
            node->req_fetched = true;
            request_timer_update(node);
            start_fetch(node);
        } else if (!node->in_vc) {
            note_oldest_request(node);
            start_view_change(node, node->view + 1, PBFT_VC_REQUEST_TIMEOUT);
        } else {
            node->req_deadline = 0;
        }
    }
    if (node->fetch_deadline != 0 && node->now >= node->fetch_deadline) {
        node->fetch_deadline = 0;
        start_fetch(node);
    }
    if (node->now >= xfer_deadline(node)) {
        xfer_tick(node);
    }
    log_tick(node);
    settle(node);
}

uint64_t pbft_node_next_deadline(const pbft_node *node) {
    uint64_t d = UINT64_MAX;
    if (node->in_vc && node->vc_deadline != 0 && node->vc_deadline < d) {
        d = node->vc_deadline;
    }
    if (node->req_deadline != 0 && node->req_deadline < d) {
        d = node->req_deadline;
    }
    if (node->relay_deadline != 0 && node->relay_deadline < d) {
        d = node->relay_deadline;
    }
    if (node->fetch_deadline != 0 && node->fetch_deadline < d) {
        d = node->fetch_deadline;
    }
    if (xfer_deadline(node) < d) {
        d = xfer_deadline(node);
    }
    if (node->log_q_n > 0) {
        d = node->now; /* the rest of a peer's log, in the next ready */
    }
    uint64_t b = batch_deadline(node);
    return b < d ? b : d;
}

/* Slots to persist before what they vouch for goes out (not lazy ones). */
static size_t urgent_slots(const pbft_node *node) {
    size_t n = 0;
    for (uint32_t i = 0; i < node->cfg.log_window; i++) {
        n += node->slots[i].dirty && !node->slots[i].lazy;
    }
    return n;
}

/* Whether the next ready needs a durable commit: anything but early
 * messages and lazy slots. Without one, the ready holds only the early
 * messages, and lazy slots wait for a ready that commits. */
static bool needs_commit(const pbft_node *node) {
    const pbft_out *o = &node->out;
    if (o->n_records || o->n_executed || o->n_stable || o->transferred || o->meta_dirty ||
        urgent_slots(node) > 0) {
        return true;
    }
    for (size_t i = 0; i < o->n_msgs; i++) {
        if (!o->msgs[i].early) {
            return true;
        }
    }
    return false;
}

bool pbft_node_has_ready(const pbft_node *node) {
    if (node->fault != 0) {
        return false; /* what this turn wrote may be partial: nothing is committed */
    }
    return node->out.n_msgs > 0 || needs_commit(node);
}

static uint8_t *slot_record(const pbft_slot *s, size_t *len) {
    Twinbft__SlotRecord r = TWINBFT__SLOT_RECORD__INIT;
    r.seq = s->seq;
    if (s->has_pp) {
        r.view = s->pp_view;
        r.pre_prepare = (ProtobufCBinaryData){s->pp_len, s->pp};
        r.batch = (ProtobufCBinaryData){s->batch_len, s->batch};
    }
    if (s->pc) {
        r.prepared = (ProtobufCBinaryData){s->pc_len, s->pc};
    }
    if (s->cc) {
        r.committed = (ProtobufCBinaryData){s->cc_len, s->cc};
    }
    *len = twinbft__slot_record__get_packed_size(&r);
    uint8_t *b = malloc(*len ? *len : 1);
    PBFT_ASSERT(b != NULL);
    twinbft__slot_record__pack(&r, b);
    return b;
}

static uint8_t *meta_record(const pbft_node *node, size_t *len) {
    Twinbft__MetaRecord r = TWINBFT__META_RECORD__INIT;
    r.view = node->view;
    r.in_view_change = node->in_vc;
    r.stable_seq = node->h;
    r.stable_digest = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, (uint8_t *)node->h_digest};
    r.executed = node->executed;
    r.last_timestamp_ms = node->last_ts;
    r.view_timeout_ms = node->vc_timeout;
    r.clean_stop = node->stopped;
    r.diverged_seq = node->diverged_seq;
    if (node->diverged_seq != 0) {
        r.diverged_own = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, (uint8_t *)node->diverged_own};
        r.diverged_quorum =
            (ProtobufCBinaryData){PROTO_DIGEST_BYTES, (uint8_t *)node->diverged_quorum};
    }
    Twinbft__Signed *proof[PBFT_REPLICAS_MAX];
    size_t np = 0;
    for (uint32_t i = 0; i < node->n; i++) {
        if (node->h_proof[i]) {
            proof[np] = twinbft__signed__unpack(NULL, node->h_proof_len[i], node->h_proof[i]);
            PBFT_ASSERT(proof[np] != NULL);
            np++;
        }
    }
    r.stable_proof = proof;
    r.n_stable_proof = np;
    *len = twinbft__meta_record__get_packed_size(&r);
    uint8_t *b = malloc(*len ? *len : 1);
    PBFT_ASSERT(b != NULL);
    twinbft__meta_record__pack(&r, b);
    for (size_t i = 0; i < np; i++) {
        twinbft__signed__free_unpacked(proof[i], NULL);
    }
    return b;
}

void pbft_node_ready(pbft_node *node, pbft_ready *rd) {
    bool commit = needs_commit(node);
    for (uint32_t i = 0; i < node->cfg.log_window && commit; i++) {
        pbft_slot *s = &node->slots[i];
        if (s->dirty) {
            size_t len = 0;
            uint8_t *b = slot_record(s, &len);
            out_record(node, PBFT_REC_SLOT, s->seq, NULL, false, b, len);
            s->dirty = s->lazy = false;
        }
    }
    if (node->out.meta_dirty) {
        size_t len = 0;
        uint8_t *b = meta_record(node, &len);
        out_record(node, PBFT_REC_META, 0, NULL, false, b, len);
        node->out.meta_dirty = false;
        node->meta_out = true;
        node->meta_out_id = node->ready_id + 1;
        node->meta_out_view = node->view;
        node->meta_out_in_vc = node->in_vc;
    }
    pbft_out *o = &node->out;
    *rd = (pbft_ready){.id = ++node->ready_id,
                       .records = o->records,
                       .n_records = o->n_records,
                       .msgs = o->msgs,
                       .n_msgs = o->n_msgs,
                       .executed = o->executed,
                       .n_executed = o->n_executed,
                       .stable = o->stable,
                       .n_stable = o->n_stable,
                       .transferred = o->transferred,
                       .transfer_seq = o->transfer_seq};
}

void pbft_node_durable(pbft_node *node, uint64_t ready_id) {
    /* A meta record handed out in a later ready waits for that one: the
     * durable view only ever lags, which holds early votes back, never
     * lets one out too soon. */
    if (node->meta_out && ready_id >= node->meta_out_id) {
        node->meta_out = false;
        node->durable_known = true;
        node->durable_view = node->meta_out_view;
        node->durable_in_vc = node->meta_out_in_vc;
    }
}

void pbft_node_advance(pbft_node *node, pbft_ready *rd) {
    out_clear(&node->out);
    memset(rd, 0, sizeof *rd);
}

void pbft_node_status(const pbft_node *node, pbft_status *st) {
    memset(st, 0, sizeof *st);
    st->view = node->view;
    st->primary = primary_of(node, node->view);
    st->in_view_change = node->in_vc;
    st->executed = node->executed;
    st->stable_seq = node->h;
    st->next_seq = node->next_seq;
    st->view_changes = node->view_changes;
    st->dropped = node->dropped;
    st->votes_redundant = node->votes_redundant;
    st->ts_rejected = node->ts_rejected;
    st->ts_offset_ms = node->ts_offset_ms;
    st->relays_sent = node->relays_sent;
    st->diverged_seq = node->diverged_seq;
    st->divergences = node->divergences;
    st->clients = node->n_clients;
    memcpy(st->diverged_own, node->diverged_own, PROTO_DIGEST_BYTES);
    memcpy(st->diverged_quorum, node->diverged_quorum, PROTO_DIGEST_BYTES);
    st->relays_taken = node->relays_taken;
    transfer_status(node, st);
    st->vc_cause = node->vc_cause;
    memcpy(st->vc_request_client, node->vc_request_client, sizeof st->vc_request_client);
    st->vc_request_number = node->vc_request_number;
    st->vc_request_waited_ms = node->vc_request_waited_ms;
    for (size_t i = 0; i < node->n_ckpts; i++) {
        const pbft_ckpt *c = &node->ckpts[i];
        if (c->own && c->seq >= st->state_digest_seq) {
            st->state_digest_seq = c->seq;
            memcpy(st->state_digest, c->own_digest, PROTO_DIGEST_BYTES);
        }
    }
    if (st->state_digest_seq == 0 || node->h > st->state_digest_seq) {
        st->state_digest_seq = node->h;
        memcpy(st->state_digest, node->h_digest, PROTO_DIGEST_BYTES);
    }
}
