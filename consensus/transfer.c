/* State transfer. A replica that is behind asks its peers for everything
 * above what it executed. A peer answers with its stable checkpoint's
 * snapshot (when that is ahead of the asker) plus the 2f+1... more exactly
 * q signed CHECKPOINT messages that prove its digest, and the committed
 * certificates of the log after it. The asker trusts none of it until it
 * has checked the proof, the snapshot's digest and every certificate. */
#include <string.h>

#include "consensus/internal.h"
#include "proto/frame.h"

/* A reply must fit in one frame, with room for the envelope. */
#define FETCH_REPLY_BUDGET (PROTO_FRAME_BYTES_MAX / 2)

void start_fetch(pbft_node *node) {
    if (node->fetch_deadline != 0) {
        return; /* one outstanding fetch at a time */
    }
    node->fetch_deadline = node->now + node->cfg.request_timeout_ms;
    Twinbft__Fetch f = TWINBFT__FETCH__INIT;
    f.executed = node->executed;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_FETCH;
    m.fetch = &f;
    out_msg(node, PBFT_TO_ALL, NULL, &m);
}

static uint8_t *snapshot_of(pbft_node *node, size_t *len) {
    pbft_ckpt *c = ckpt_get(node, node->h, false);
    if (c == NULL || !c->own || c->record == NULL) {
        return NULL;
    }
    Twinbft__CheckpointRecord *r =
        twinbft__checkpoint_record__unpack(NULL, c->record_len, c->record);
    PBFT_ASSERT(r != NULL);
    uint8_t *app = NULL;
    size_t app_len = 0;
    uint8_t *out = NULL;
    if (node->cfg.app.snapshot(node->cfg.app.ctx, node->h, &app, &app_len) == 0) {
        Twinbft__Snapshot s = TWINBFT__SNAPSHOT__INIT;
        s.seq = node->h;
        s.app_digest = r->app_digest;
        s.app_state = (ProtobufCBinaryData){app_len, app};
        s.clients = r->clients;
        s.n_clients = r->n_clients;
        s.last_timestamp_ms = r->last_timestamp_ms;
        *len = twinbft__snapshot__get_packed_size(&s);
        out = malloc(*len ? *len : 1);
        PBFT_ASSERT(out != NULL);
        twinbft__snapshot__pack(&s, out);
    }
    free(app);
    twinbft__checkpoint_record__free_unpacked(r, NULL);
    return out;
}

void pbft_node_fetch(pbft_node *node) {
    if (node->stopped || node->fault != 0 || node->n == 1) {
        return;
    }
    start_fetch(node);
}

void on_fetch(pbft_node *node, const pbft_from *from, const Twinbft__Fetch *f) {
    /* A correct replica fetches at most once per request timeout; answering
     * more often would let a faulty one make us export snapshots in a loop. */
    if (!answer_allowed(node, &node->fetch_served_at[from->replica])) {
        node->dropped++;
        return;
    }
    Twinbft__FetchReply r = TWINBFT__FETCH_REPLY__INIT;
    Twinbft__Signed *proof[PBFT_REPLICAS_MAX];
    size_t np = 0, budget = 0;
    uint8_t *snap = NULL;
    uint64_t from_seq = f->executed;
    if (node->h > f->executed && node->h > 0 && node->oversize_seq == node->h) {
        node->snapshots_oversize++; /* known too large: not exported again */
    } else if (node->h > f->executed && node->h > 0) {
        size_t len = 0;
        snap = snapshot_of(node, &len);
        if (snap != NULL && len >= FETCH_REPLY_BUDGET) {
            /* Chunked transfer of larger states is not built: say so (the
             * status and the log show it) rather than fail in silence. */
            node->snapshots_oversize++;
            node->oversize_seq = node->h;
            node->oversize_bytes = len;
        }
        if (snap != NULL && len < FETCH_REPLY_BUDGET) {
            r.checkpoint_seq = node->h;
            r.snapshot = (ProtobufCBinaryData){len, snap};
            for (uint32_t i = 0; i < node->n; i++) {
                if (node->h_proof[i]) {
                    proof[np] =
                        twinbft__signed__unpack(NULL, node->h_proof_len[i], node->h_proof[i]);
                    PBFT_ASSERT(proof[np] != NULL);
                    np++;
                }
            }
            r.checkpoint_proof = proof;
            r.n_checkpoint_proof = np;
            from_seq = node->h;
            budget = len;
        }
    }
    Twinbft__CommittedCert **ccs = calloc(node->cfg.log_window, sizeof *ccs);
    PBFT_ASSERT(ccs != NULL);
    size_t ncc = 0;
    for (uint64_t s = from_seq + 1; s <= node->h + node->cfg.log_window; s++) {
        pbft_slot *sl = slot_get(node, s);
        if (sl == NULL || sl->cc == NULL || budget + sl->cc_len > FETCH_REPLY_BUDGET) {
            break; /* only a contiguous run is useful to the asker */
        }
        ccs[ncc] = twinbft__committed_cert__unpack(NULL, sl->cc_len, sl->cc);
        PBFT_ASSERT(ccs[ncc] != NULL);
        budget += sl->cc_len;
        ncc++;
    }
    r.committed = ccs;
    r.n_committed = ncc;
    if (r.snapshot.len > 0 || ncc > 0) {
        Twinbft__Message m = TWINBFT__MESSAGE__INIT;
        m.kind_case = TWINBFT__MESSAGE__KIND_FETCH_REPLY;
        m.fetch_reply = &r;
        out_msg(node, from->replica, NULL, &m);
    }
    for (size_t i = 0; i < np; i++) {
        twinbft__signed__free_unpacked(proof[i], NULL);
    }
    for (size_t i = 0; i < ncc; i++) {
        twinbft__committed_cert__free_unpacked(ccs[i], NULL);
    }
    free(ccs);
    free(snap);
}

int validate_committed_cert(pbft_node *node, const Twinbft__CommittedCert *cc, uint64_t *seq,
                            uint64_t *view, uint8_t *digest) {
    Twinbft__Body *b = NULL;
    int rc = TB_ERR_INVALID;
    if (cc->pre_prepare == NULL || verify_signed(node, cc->pre_prepare, &b) != 0) {
        return TB_ERR_INVALID;
    }
    const Twinbft__PrePrepare *pp = b->pre_prepare;
    if (b->kind_case != TWINBFT__BODY__KIND_PRE_PREPARE || !digest_ok(&pp->digest) ||
        cc->pre_prepare->signer != primary_of(node, pp->view) ||
        cc->batch.len > PBFT_BATCH_BYTES_MAX) {
        goto done;
    }
    uint8_t d[PROTO_DIGEST_BYTES];
    batch_digest(cc->batch.data, cc->batch.len, d);
    if (memcmp(d, pp->digest.data, PROTO_DIGEST_BYTES) != 0 ||
        !batch_bytes_ok(node, cc->batch.data, cc->batch.len)) {
        goto done;
    }
    uint32_t count = count_votes(node, cc->commits, cc->n_commits, TWINBFT__BODY__KIND_COMMIT,
                                 pp->view, pp->seq, d, UINT32_MAX);
    uint32_t need = PBFT_BUG(node, PBFT_BUG_QUORUM_2F) ? node->q - 1 : node->q;
    if (count >= need) {
        *seq = pp->seq;
        *view = pp->view;
        memcpy(digest, d, PROTO_DIGEST_BYTES);
        rc = 0;
    }
done:
    twinbft__body__free_unpacked(b, NULL);
    return rc;
}

/* Checks the snapshot against the checkpoint certificate, then installs it. */
static int install_snapshot(pbft_node *node, const Twinbft__FetchReply *r) {
    bool skip = PBFT_BUG(node, PBFT_BUG_SKIP_CKPT_VERIFY);
    Twinbft__Snapshot *s = twinbft__snapshot__unpack(NULL, r->snapshot.len, r->snapshot.data);
    if (s == NULL || s->seq != r->checkpoint_seq || !digest_ok(&s->app_digest) ||
        s->seq % node->cfg.checkpoint_interval != 0) {
        goto fail;
    }
    proto_lthash lt;
    proto_lthash_init(&lt);
    for (size_t i = 0; i < s->n_clients; i++) {
        const Twinbft__ClientEntry *e = s->clients[i];
        if (e->client == NULL || strnlen(e->client, PBFT_CLIENT_NAME_BYTES_MAX) == 0 ||
            strnlen(e->client, PBFT_CLIENT_NAME_BYTES_MAX) >= PBFT_CLIENT_NAME_BYTES_MAX) {
            goto fail;
        }
        size_t len = twinbft__client_entry__get_packed_size(e);
        uint8_t *b = malloc(len ? len : 1);
        PBFT_ASSERT(b != NULL);
        twinbft__client_entry__pack(e, b);
        proto_lthash_add(&lt, b, len);
        free(b);
    }
    uint8_t cl[PROTO_DIGEST_BYTES], d[PROTO_DIGEST_BYTES];
    proto_lthash_digest(&lt, cl);
    state_digest(s->app_digest.data, cl, s->last_timestamp_ms, d);
    if (!skip &&
        verify_ckpt_proof(node, s->seq, d, r->checkpoint_proof, r->n_checkpoint_proof) != 0) {
        goto fail;
    }
    if (node->cfg.app.restore(node->cfg.app.ctx, s->seq, s->app_state.data, s->app_state.len,
                              skip ? NULL : s->app_digest.data) != 0) {
        goto fail;
    }
    clients_replace(node, s->clients, s->n_clients);
    for (size_t i = 0; i < node->n_pending;) {
        pbft_client *c = client_find(node, node->pending[i].client);
        if (c != NULL && c->number >= node->pending[i].number) {
            pending_remove_upto(node, node->pending[i].client, c->number);
        } else {
            i++;
        }
    }
    node->executed = s->seq;
    node->seen_work = true; /* a quorum checkpointed past us: see maybe_join */
    node->last_ts = s->last_timestamp_ms;
    node->diverged_seq = 0; /* the certified state replaced ours */
    uint8_t *proof[PBFT_REPLICAS_MAX] = {0};
    size_t proof_len[PBFT_REPLICAS_MAX] = {0};
    for (size_t i = 0; i < r->n_checkpoint_proof && i < PBFT_REPLICAS_MAX; i++) {
        uint32_t sg = r->checkpoint_proof[i]->signer;
        if (sg < node->n && proof[sg] == NULL) {
            proof[sg] = pack_signed(r->checkpoint_proof[i], &proof_len[sg]);
        }
    }
    if (s->seq > node->h) {
        /* Move the window first so that our own checkpoint of seq fits in it. */
        advance_stable(node, s->seq, d, proof, proof_len);
    }
    take_checkpoint(node);
    for (uint32_t i = 0; i < node->n; i++) {
        free(proof[i]);
    }
    node->out.transferred = true;
    node->out.transfer_seq = s->seq;
    meta_dirty(node);
    request_timer_update(node);
    twinbft__snapshot__free_unpacked(s, NULL);
    return 0;
fail:
    node->dropped++;
    if (s) {
        twinbft__snapshot__free_unpacked(s, NULL);
    }
    return TB_ERR_MISMATCH;
}

static void install_committed(pbft_node *node, const Twinbft__CommittedCert *cc) {
    uint64_t seq = 0, view = 0;
    uint8_t d[PROTO_DIGEST_BYTES];
    if (validate_committed_cert(node, cc, &seq, &view, d) != 0) {
        node->dropped++;
        return;
    }
    pbft_slot *sl = slot_get(node, seq);
    if (sl == NULL || sl->cc != NULL || seq <= node->executed) {
        return;
    }
    sl->cc_len = twinbft__committed_cert__get_packed_size(cc);
    sl->cc = malloc(sl->cc_len);
    PBFT_ASSERT(sl->cc != NULL);
    twinbft__committed_cert__pack(cc, sl->cc);
    memcpy(sl->cc_digest, d, PROTO_DIGEST_BYTES);
    sl->cc_batch = dup_bytes(cc->batch.data, cc->batch.len);
    sl->cc_batch_len = cc->batch.len;
    sl->cc_view = view;
    sl->dirty = true;
    sl->lazy = false;
    if (view == node->view) {
        node->seen_work = true; /* the cluster commits in our view: see maybe_join */
    }
}

void on_fetch_reply(pbft_node *node, const Twinbft__FetchReply *r) {
    uint64_t before = node->executed;
    if (r->snapshot.len > 0 && r->checkpoint_seq > node->executed &&
        r->n_checkpoint_proof <= PBFT_REPLICAS_MAX) {
        install_snapshot(node, r);
    }
    for (size_t i = 0; i < r->n_committed && i < node->cfg.log_window; i++) {
        install_committed(node, r->committed[i]);
    }
    try_execute(node);
    if (node->executed > before) {
        node->fetch_deadline = 0; /* progress: the next fetch may go out at once */
    }
}
