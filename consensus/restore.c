/* Restart from persisted records. The caller feeds back every record it
 * stored (any order); restore_done applies them in dependency order: meta
 * (view, watermark), then checkpoints, the client table and the log. */
#include <string.h>

#include "consensus/internal.h"

typedef struct pbft_saved {
    pbft_record_kind kind;
    uint64_t seq;
    uint8_t *data;
    size_t len;
} pbft_saved;

struct pbft_restore {
    pbft_saved *recs;
    size_t n, cap;
};

int pbft_node_restore_record(pbft_node *node, pbft_record_kind kind, uint64_t seq,
                             const char *client, const uint8_t *data, size_t len) {
    (void)client; /* CLIENT records carry the name inside the entry */
    if (kind < PBFT_REC_META || kind > PBFT_REC_NEW_VIEW || kind == PBFT_REC_CLIENTS_CLEAR) {
        return TB_ERR_INVALID;
    }
    if (node->restore == NULL) {
        node->restore = calloc(1, sizeof *node->restore);
        PBFT_ASSERT(node->restore != NULL);
    }
    struct pbft_restore *r = node->restore;
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->recs = realloc(r->recs, r->cap * sizeof *r->recs);
        PBFT_ASSERT(r->recs != NULL);
    }
    r->recs[r->n++] = (pbft_saved){kind, seq, dup_bytes(data, len), len};
    return 0;
}

static int apply_meta(pbft_node *node, const uint8_t *data, size_t len) {
    Twinbft__MetaRecord *m = twinbft__meta_record__unpack(NULL, len, data);
    if (m == NULL || !digest_ok(&m->stable_digest) || m->executed < m->stable_seq ||
        m->n_stable_proof > node->n) {
        if (m) {
            twinbft__meta_record__free_unpacked(m, NULL);
        }
        return TB_ERR_INVALID;
    }
    node->view = m->view;
    node->in_vc = m->in_view_change;
    node->h = m->stable_seq;
    memcpy(node->h_digest, m->stable_digest.data, PROTO_DIGEST_BYTES);
    for (size_t i = 0; i < m->n_stable_proof; i++) {
        uint32_t sg = m->stable_proof[i]->signer;
        if (sg < node->n && node->h_proof[sg] == NULL) {
            node->h_proof[sg] = pack_signed(m->stable_proof[i], &node->h_proof_len[sg]);
        }
    }
    node->executed = m->executed;
    node->last_ts = m->last_timestamp_ms;
    node->vc_timeout = m->view_timeout_ms ? m->view_timeout_ms : node->cfg.view_timeout_ms;
    node->restored_clean = m->clean_stop;
    node->diverged_seq = m->diverged_seq;
    node->divergences = m->diverged_seq != 0; /* still in it: counted since this start */
    if (m->diverged_seq != 0 && digest_ok(&m->diverged_own) && digest_ok(&m->diverged_quorum)) {
        memcpy(node->diverged_own, m->diverged_own.data, PROTO_DIGEST_BYTES);
        memcpy(node->diverged_quorum, m->diverged_quorum.data, PROTO_DIGEST_BYTES);
    }
    twinbft__meta_record__free_unpacked(m, NULL);
    return 0;
}

static int apply_checkpoint(pbft_node *node, const uint8_t *data, size_t len) {
    Twinbft__CheckpointRecord *r = twinbft__checkpoint_record__unpack(NULL, len, data);
    if (r == NULL || !digest_ok(&r->state_digest)) {
        if (r) {
            twinbft__checkpoint_record__free_unpacked(r, NULL);
        }
        return TB_ERR_INVALID;
    }
    pbft_ckpt *c = ckpt_get(node, r->seq, true);
    if (c != NULL) {
        c->own = true;
        memcpy(c->own_digest, r->state_digest.data, PROTO_DIGEST_BYTES);
        c->record = dup_bytes(data, len);
        c->record_len = len;
    }
    twinbft__checkpoint_record__free_unpacked(r, NULL);
    return 0;
}

static int apply_client(pbft_node *node, const uint8_t *data, size_t len) {
    Twinbft__ClientEntry *e = twinbft__client_entry__unpack(NULL, len, data);
    if (e == NULL || e->client == NULL || e->client[0] == '\0') {
        if (e) {
            twinbft__client_entry__free_unpacked(e, NULL);
        }
        return TB_ERR_INVALID;
    }
    client_update(node, e->client, e->number, dup_bytes(data, len), len);
    twinbft__client_entry__free_unpacked(e, NULL);
    return 0;
}

static int apply_slot(pbft_node *node, const uint8_t *data, size_t len) {
    Twinbft__SlotRecord *r = twinbft__slot_record__unpack(NULL, len, data);
    if (r == NULL) {
        return TB_ERR_INVALID;
    }
    pbft_slot *sl = slot_get(node, r->seq);
    int rc = 0;
    if (sl == NULL) {
        goto done; /* below the watermark: garbage we had not deleted yet */
    }
    /* A pre-prepare of an older view was abandoned at the view change (only
     * its certificates live on); the stored record may still hold it. */
    if (r->pre_prepare.len > 0 && r->view == node->view) {
        if (r->batch.len > 0) {
            Twinbft__Batch *b = twinbft__batch__unpack(NULL, r->batch.len, r->batch.data);
            if (b == NULL) {
                rc = TB_ERR_INVALID;
                goto done;
            }
            sl->ts = 0;
            twinbft__batch__free_unpacked(b, NULL);
        }
        Twinbft__Signed *s = twinbft__signed__unpack(NULL, r->pre_prepare.len, r->pre_prepare.data);
        Twinbft__Body *body = s ? twinbft__body__unpack(NULL, s->body.len, s->body.data) : NULL;
        if (body == NULL || body->kind_case != TWINBFT__BODY__KIND_PRE_PREPARE ||
            !digest_ok(&body->pre_prepare->digest)) {
            rc = TB_ERR_INVALID;
        } else {
            accept_pre_prepare(node, sl, r->view, body->pre_prepare->digest.data,
                               dup_bytes(r->pre_prepare.data, r->pre_prepare.len),
                               r->pre_prepare.len, r->batch.data, r->batch.len);
        }
        if (body) {
            twinbft__body__free_unpacked(body, NULL);
        }
        if (s) {
            twinbft__signed__free_unpacked(s, NULL);
        }
    }
    if (rc == 0 && r->prepared.len > 0) {
        Twinbft__PreparedCert *pc =
            twinbft__prepared_cert__unpack(NULL, r->prepared.len, r->prepared.data);
        uint64_t seq = 0, view = 0;
        /* Our own storage: the certificate was valid when stored; re-check
         * it anyway, since a corrupt one would poison a view change. */
        if (pc == NULL ||
            validate_prepared_cert(node, pc, UINT64_MAX, node->h, &seq, &view, sl->pc_digest) !=
                0 ||
            seq != r->seq) {
            rc = TB_ERR_INVALID;
        } else {
            sl->pc = dup_bytes(r->prepared.data, r->prepared.len);
            sl->pc_len = r->prepared.len;
            sl->pc_view = view;
            sl->prepared = sl->has_pp && sl->pp_view == view;
            sl->sent_commit = sl->prepared;
        }
        if (pc) {
            twinbft__prepared_cert__free_unpacked(pc, NULL);
        }
    }
    if (rc == 0 && r->committed.len > 0) {
        Twinbft__CommittedCert *cc =
            twinbft__committed_cert__unpack(NULL, r->committed.len, r->committed.data);
        uint64_t seq = 0, view = 0;
        if (cc == NULL || validate_committed_cert(node, cc, &seq, &view, sl->cc_digest) != 0 ||
            seq != r->seq) {
            rc = TB_ERR_INVALID;
        } else {
            sl->cc = dup_bytes(r->committed.data, r->committed.len);
            sl->cc_len = r->committed.len;
            sl->cc_batch = dup_bytes(cc->batch.data, cc->batch.len);
            sl->cc_batch_len = cc->batch.len;
            sl->cc_view = view;
        }
        if (cc) {
            twinbft__committed_cert__free_unpacked(cc, NULL);
        }
    }
    sl->dirty = sl->lazy = false;
done:
    twinbft__slot_record__free_unpacked(r, NULL);
    return rc;
}

/* The NEW-VIEW of the view the meta record names, kept to relay it: one
 * that is not that view's, not signed by its primary or does not verify
 * is ignored (a record from before a later view change began). */
static int apply_new_view(pbft_node *node, const uint8_t *data, size_t len) {
    uint32_t signer = 0;
    Twinbft__Body *b = NULL;
    if (verify_signed_bytes(node, data, len, &signer, &b) != 0) {
        return 0;
    }
    if (b->kind_case == TWINBFT__BODY__KIND_NEW_VIEW && b->new_view->view == node->view &&
        !node->in_vc && node->view > 0 && signer == primary_of(node, node->view)) {
        free(node->nv);
        node->nv = dup_bytes(data, len);
        node->nv_len = len;
    }
    twinbft__body__free_unpacked(b, NULL);
    return 0;
}

static int apply_all(pbft_node *node, pbft_record_kind kind) {
    struct pbft_restore *r = node->restore;
    for (size_t i = 0; i < r->n; i++) {
        pbft_saved *s = &r->recs[i];
        if (s->kind != kind) {
            continue;
        }
        int rc = kind == PBFT_REC_META         ? apply_meta(node, s->data, s->len)
                 : kind == PBFT_REC_CHECKPOINT ? apply_checkpoint(node, s->data, s->len)
                 : kind == PBFT_REC_CLIENT     ? apply_client(node, s->data, s->len)
                 : kind == PBFT_REC_NEW_VIEW   ? apply_new_view(node, s->data, s->len)
                                               : apply_slot(node, s->data, s->len);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

void restore_free(pbft_node *node) {
    if (node->restore == NULL) {
        return;
    }
    for (size_t i = 0; i < node->restore->n; i++) {
        free(node->restore->recs[i].data);
    }
    free(node->restore->recs);
    free(node->restore);
    node->restore = NULL;
}

/* Recovers what is derived: timestamps held, the primary's next seq, and
 * our own view-change if we crashed in the middle of one. */
static void restore_derived(pbft_node *node) {
    uint64_t next = node->executed > node->h ? node->executed : node->h;
    for (uint64_t s = node->h + 1; s <= node->h + node->cfg.log_window; s++) {
        pbft_slot *sl = &node->slots[s % node->cfg.log_window];
        if (sl->seq != s || !sl->has_pp) {
            continue;
        }
        if (sl->batch_len > 0) {
            Twinbft__Batch *b = twinbft__batch__unpack(NULL, sl->batch_len, sl->batch);
            PBFT_ASSERT(b != NULL);
            sl->ts = b->timestamp_ms;
            if (sl->ts > node->pp_ts_max) {
                node->pp_ts_max = sl->ts;
            }
            twinbft__batch__free_unpacked(b, NULL);
        }
        if (sl->pp_view == node->view && s > next) {
            next = s;
        }
    }
    node->next_seq = next + 1;
}

int pbft_node_restore_done(pbft_node *node, uint64_t now_ms) {
    node->now = now_ms > node->now ? now_ms : node->now;
    if (node->restore == NULL) {
        return 0; /* nothing stored: a fresh replica */
    }
    /* Forget the genesis checkpoint create() took: storage knows better. */
    out_clear(&node->out);
    node->out.meta_dirty = false;
    for (size_t i = 0; i < node->n_ckpts; i++) {
        pbft_ckpt *c = &node->ckpts[i];
        for (uint32_t j = 0; j < node->n; j++) {
            vote_clear(&c->votes[j]);
        }
        free(c->record);
        c->record = NULL;
        c->used = c->own = false;
    }
    node->cfg.app.release(node->cfg.app.ctx, 0);
    int rc = apply_all(node, PBFT_REC_META);
    if (rc == 0) {
        rc = apply_all(node, PBFT_REC_CHECKPOINT);
    }
    if (rc == 0) {
        rc = apply_all(node, PBFT_REC_CLIENT);
    }
    if (rc == 0) {
        rc = apply_all(node, PBFT_REC_SLOT);
    }
    if (rc == 0) {
        rc = apply_all(node, PBFT_REC_NEW_VIEW);
    }
    restore_free(node);
    if (rc != 0) {
        return rc;
    }
    /* Re-registering clients queued CLIENT records; they are stored already. */
    out_clear(&node->out);
    restore_derived(node);
    /* Early votes (normal.c): it may have voted in this view and not stored
     * the vote. Not when the stored meta record says it was changing views:
     * early votes need a view entered (NEW-VIEW done) on disk, so none went
     * out in this one. Nor after a clean stop (pbft_node_stop): the records
     * hold every vote. */
    node->restarted = !node->in_vc && !node->restored_clean;
    node->abstain_view = node->view;
    node->durable_known = true;
    node->durable_view = node->view;
    node->durable_in_vc = node->in_vc;
    if (node->restored_clean) {
        /* The stored record says clean until a new one says otherwise:
         * no early vote before that one is durable (pbft_node_durable). */
        node->durable_known = false;
        meta_dirty(node);
    }
    if (node->in_vc) {
        node->in_vc = false;
        start_view_change(node, node->view, PBFT_VC_RESTART); /* re-send our VIEW-CHANGE */
    } else if (abstains(node, node->view) && primary_of(node, node->view) == node->cfg.self) {
        /* A primary that restarted abstains in its view (it may have
         * forgotten a pre-prepare), so the view cannot order anything
         * again. Waiting for the backups' request timers cost every restart
         * of a primary, and of the whole cluster, two request timeouts
         * before the first write; asking for the next view now lets its
         * backups follow at once (maybe_join). */
        start_view_change(node, node->view + 1, PBFT_VC_PRIMARY_RESTART);
    }
    if (node->diverged_seq != 0) {
        request_timer_update(node);
        start_fetch(node); /* still waiting for the certified state */
    }
    try_execute(node);
    return node->fault;
}
