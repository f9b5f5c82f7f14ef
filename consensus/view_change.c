/* View changes (PBFT 4.4, signature variant). A replica that suspects the
 * primary moves to view v+1 and sends VIEW-CHANGE with its stable
 * checkpoint proof and, per sequence number above it, the prepared
 * certificate of the highest view it prepared in. The new primary collects
 * q of them and sends NEW-VIEW re-issuing, for every seq between the
 * highest stable checkpoint (min-s) and the highest prepared seq (max-s),
 * the batch of the highest-view certificate or the null batch. Every
 * replica recomputes that choice from the same view changes, so a primary
 * cannot drop a request that may have committed. */
#include <string.h>

#include "consensus/internal.h"

/* What a set of view changes implies for the new view. */
typedef struct nv_plan {
    uint64_t min_s, max_s;
    uint8_t stable_digest[PROTO_DIGEST_BYTES];
    const Twinbft__ViewChange *stable_from; /* the VC whose proof proves min_s */
    /* Per seq in (min_s, max_s]: the chosen certificate (NULL: null batch). */
    const Twinbft__PreparedCert **chosen;
    uint64_t *chosen_view;
    uint8_t (*digest)[PROTO_DIGEST_BYTES];
} nv_plan;

static void plan_free(nv_plan *p) {
    free(p->chosen);
    free(p->chosen_view);
    free(p->digest);
}

int validate_prepared_cert(pbft_node *node, const Twinbft__PreparedCert *pc, uint64_t vc_view,
                           uint64_t low, uint64_t *seq, uint64_t *view, uint8_t *digest) {
    Twinbft__Body *b = NULL;
    int rc = TB_ERR_INVALID;
    if (pc->pre_prepare == NULL || verify_signed(node, pc->pre_prepare, &b) != 0) {
        return TB_ERR_INVALID;
    }
    const Twinbft__PrePrepare *pp = b->pre_prepare;
    if (b->kind_case != TWINBFT__BODY__KIND_PRE_PREPARE || !digest_ok(&pp->digest) ||
        pc->pre_prepare->signer != primary_of(node, pp->view) || pp->view >= vc_view ||
        pp->seq <= low || pp->seq > low + node->cfg.log_window ||
        pc->batch.len > PBFT_BATCH_BYTES_MAX) {
        goto done;
    }
    uint8_t d[PROTO_DIGEST_BYTES];
    batch_digest(pc->batch.data, pc->batch.len, d);
    if (memcmp(d, pp->digest.data, PROTO_DIGEST_BYTES) != 0 ||
        !batch_bytes_ok(node, pc->batch.data, pc->batch.len)) {
        goto done;
    }
    /* PBFT 4.4: 2f prepares from backups (q - 1 in general), not from the primary. */
    uint32_t count = count_votes(node, pc->prepares, pc->n_prepares, TWINBFT__BODY__KIND_PREPARE,
                                 pp->view, pp->seq, d, primary_of(node, pp->view));
    uint32_t need = node->q - 1; /* none when n = 1 */
    if (PBFT_BUG(node, PBFT_BUG_QUORUM_2F) && need > 0) {
        need--;
    }
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

static int validate_vc(pbft_node *node, const Twinbft__ViewChange *vc) {
    uint64_t K = node->cfg.checkpoint_interval;
    /* A proof has at most one entry per member, and none for the genesis. */
    if (vc->stable_seq % K != 0 || !digest_ok(&vc->stable_digest) ||
        vc->n_prepared > node->cfg.log_window || vc->n_checkpoint_proof > node->n ||
        (vc->stable_seq == 0 && vc->n_checkpoint_proof != 0)) {
        return TB_ERR_INVALID;
    }
    if (vc->stable_seq > 0 &&
        verify_ckpt_proof(node, vc->stable_seq, vc->stable_digest.data, vc->checkpoint_proof,
                          vc->n_checkpoint_proof) != 0) {
        return TB_ERR_QUORUM;
    }
    uint64_t last = vc->stable_seq;
    for (size_t i = 0; i < vc->n_prepared; i++) {
        uint64_t seq = 0, view = 0;
        uint8_t d[PROTO_DIGEST_BYTES];
        if (validate_prepared_cert(node, vc->prepared[i], vc->view, vc->stable_seq, &seq, &view,
                                   d) != 0 ||
            seq <= last) {
            return TB_ERR_INVALID; /* certificates must be valid and in ascending seq */
        }
        last = seq;
    }
    return 0;
}

/* Certificates were validated with the view changes that carry them. */
static void pc_fields(const Twinbft__PreparedCert *pc, uint64_t *seq, uint64_t *view,
                      uint8_t *digest) {
    Twinbft__Body *b =
        twinbft__body__unpack(NULL, pc->pre_prepare->body.len, pc->pre_prepare->body.data);
    PBFT_ASSERT(b != NULL && b->kind_case == TWINBFT__BODY__KIND_PRE_PREPARE);
    *seq = b->pre_prepare->seq;
    *view = b->pre_prepare->view;
    memcpy(digest, b->pre_prepare->digest.data, PROTO_DIGEST_BYTES);
    twinbft__body__free_unpacked(b, NULL);
}

static void plan_compute(pbft_node *node, Twinbft__ViewChange *const *vcs, size_t n, nv_plan *p) {
    memset(p, 0, sizeof *p);
    for (size_t i = 0; i < n; i++) {
        if (p->stable_from == NULL || vcs[i]->stable_seq > p->min_s) {
            p->min_s = vcs[i]->stable_seq;
            p->stable_from = vcs[i];
            memcpy(p->stable_digest, vcs[i]->stable_digest.data, PROTO_DIGEST_BYTES);
        }
    }
    p->max_s = p->min_s;
    size_t L = node->cfg.log_window;
    p->chosen = calloc(L, sizeof *p->chosen);
    p->chosen_view = calloc(L, sizeof *p->chosen_view);
    p->digest = calloc(L, sizeof *p->digest);
    PBFT_ASSERT(p->chosen && p->chosen_view && p->digest);
    if (PBFT_BUG(node, PBFT_BUG_VC_DROP_PREPARED)) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < vcs[i]->n_prepared; j++) {
            uint64_t seq = 0, view = 0;
            uint8_t d[PROTO_DIGEST_BYTES];
            pc_fields(vcs[i]->prepared[j], &seq, &view, d);
            if (seq <= p->min_s || seq > p->min_s + L) {
                continue;
            }
            size_t k = seq - p->min_s - 1;
            /* Highest view wins; equal views cannot disagree unless quorums
             * failed, but break the tie by digest so the choice is a function. */
            if (p->chosen[k] == NULL || view > p->chosen_view[k] ||
                (view == p->chosen_view[k] && memcmp(d, p->digest[k], PROTO_DIGEST_BYTES) < 0)) {
                p->chosen[k] = vcs[i]->prepared[j];
                p->chosen_view[k] = view;
                memcpy(p->digest[k], d, PROTO_DIGEST_BYTES);
            }
            if (seq > p->max_s) {
                p->max_s = seq;
            }
        }
    }
    for (uint64_t s = p->min_s + 1; s <= p->max_s; s++) {
        if (p->chosen[s - p->min_s - 1] == NULL) {
            batch_digest(NULL, 0, p->digest[s - p->min_s - 1]); /* the null batch */
        }
    }
}

static uint8_t *build_vc(pbft_node *node, size_t *slen) {
    Twinbft__ViewChange vc = TWINBFT__VIEW_CHANGE__INIT;
    vc.view = node->view;
    vc.stable_seq = node->h;
    vc.stable_digest = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, node->h_digest};
    Twinbft__Signed *proof[PBFT_REPLICAS_MAX];
    size_t np = 0;
    for (uint32_t i = 0; i < node->n; i++) {
        if (node->h_proof[i]) {
            proof[np] = twinbft__signed__unpack(NULL, node->h_proof_len[i], node->h_proof[i]);
            PBFT_ASSERT(proof[np] != NULL);
            np++;
        }
    }
    vc.checkpoint_proof = proof;
    vc.n_checkpoint_proof = node->h > 0 ? np : 0;
    Twinbft__PreparedCert **pcs = calloc(node->cfg.log_window, sizeof *pcs);
    PBFT_ASSERT(pcs != NULL);
    size_t npc = 0;
    for (uint64_t s = node->h + 1; s <= node->h + node->cfg.log_window; s++) {
        pbft_slot *sl = &node->slots[s % node->cfg.log_window];
        if (sl->seq == s && sl->pc != NULL) {
            pcs[npc] = twinbft__prepared_cert__unpack(NULL, sl->pc_len, sl->pc);
            PBFT_ASSERT(pcs[npc] != NULL);
            npc++;
        }
    }
    vc.prepared = pcs;
    vc.n_prepared = npc;
    Twinbft__Body body = TWINBFT__BODY__INIT;
    body.kind_case = TWINBFT__BODY__KIND_VIEW_CHANGE;
    body.view_change = &vc;
    uint8_t *sb = NULL;
    PBFT_ASSERT(out_sign(node, &body, &sb, slen) == 0);
    for (size_t i = 0; i < np; i++) {
        twinbft__signed__free_unpacked(proof[i], NULL);
    }
    for (size_t i = 0; i < npc; i++) {
        twinbft__prepared_cert__free_unpacked(pcs[i], NULL);
    }
    free(pcs);
    return sb;
}

static void try_new_view(pbft_node *node);

/* Leaves the current view's normal operation: what was only pre-prepared or
 * prepared in it is kept as certificates, everything else restarts. */
static void reset_for_view(pbft_node *node) {
    for (uint32_t i = 0; i < node->cfg.log_window; i++) {
        pbft_slot *s = &node->slots[i];
        if (s->seq != 0) {
            slot_reset_view(node, s);
        }
    }
    for (size_t i = 0; i < node->n_pending; i++) {
        node->pending[i].proposed = 0;
    }
    free(node->nv);
    node->nv = NULL;
    node->nv_len = 0;
    node->req_deadline = 0;
    node->req_fetched = false;
    node->relay_deadline = 0;
    node->req_since = node->now; /* each view gets a fresh chance to order what waits */
}

/* Traffic of the view we are changing to means its NEW-VIEW exists but
 * did not reach us: show the primary our VIEW-CHANGE once, which makes it
 * send the NEW-VIEW again (see on_view_change). */
void nudge_primary(pbft_node *node, uint64_t view) {
    if (!node->in_vc || view != node->view || node->nudged || !node->vcs[node->cfg.self].has) {
        return;
    }
    node->nudged = true;
    pbft_vote *own = &node->vcs[node->cfg.self];
    out_signed(node, primary_of(node, view), TWINBFT__MESSAGE__KIND_VIEW_CHANGE, own->sbytes,
               own->slen);
}

/* A replica that missed a whole view change (it was down, or cut off)
 * sees signed pre-prepares, prepares and commits of a later view but no
 * VIEW-CHANGEs to join (PBFT 4.5.2's f+1 rule needs those). Such traffic
 * from f+1 replicas means at least one correct replica is in that view:
 * move to the smallest view f+1 of them have reached, so that our
 * VIEW-CHANGE makes its primary resend the NEW-VIEW (on_view_change).
 * Faulty replicas alone (f) cannot move anyone. */
void note_later_view(pbft_node *node, uint32_t from, uint64_t view) {
    if (from >= node->n || from == node->cfg.self || view <= node->view) {
        return;
    }
    if (view > node->seen_view[from]) {
        node->seen_view[from] = view;
    }
    uint64_t top[PBFT_REPLICAS_MAX];
    uint32_t count = 0;
    for (uint32_t i = 0; i < node->n; i++) {
        if (i != node->cfg.self && node->seen_view[i] > node->view) {
            top[count++] = node->seen_view[i];
        }
    }
    if (count < node->f + 1) {
        return;
    }
    /* The (f+1)-th largest: f+1 replicas have reached at least this view. */
    for (uint32_t k = 0; k <= node->f; k++) {
        for (uint32_t i = k + 1; i < count; i++) {
            if (top[i] > top[k]) {
                uint64_t t = top[k];
                top[k] = top[i];
                top[i] = t;
            }
        }
    }
    start_view_change(node, top[node->f], PBFT_VC_LATER_VIEW);
}

void start_view_change(pbft_node *node, uint64_t view, pbft_vc_cause cause) {
    if (view < node->view || (view == node->view && node->in_vc)) {
        return;
    }
    node->vc_cause = cause;
    node->view = view;
    node->in_vc = true;
    node->nudged = false;
    node->view_changes++;
    node->vc_deadline = node->now + node->vc_timeout;
    if (node->vc_timeout < (UINT64_MAX >> 2)) {
        node->vc_timeout *= 2; /* PBFT 4.5.2: wait longer for each consecutive view */
    }
    reset_for_view(node);
    meta_dirty(node); /* durable before the VIEW-CHANGE that promises it */
    size_t slen = 0;
    uint8_t *sb = build_vc(node, &slen);
    out_signed(node, PBFT_TO_ALL, TWINBFT__MESSAGE__KIND_VIEW_CHANGE, sb, slen);
    vote_set(&node->vcs[node->cfg.self], view, NULL, sb, slen);
    try_new_view(node);
}

/* PBFT 4.5.2: the new primary did not deliver in time. Try the next view
 * only if a quorum is changing to this one (2f+1 VIEW-CHANGEs, ours among
 * them): then its primary is what failed. Without a quorum the fault may
 * be ours (cut off, restarted, a clock gone wrong), and climbing views
 * alone would strand us above the view the others run in, with no fault
 * margin left for them until they climbed as high. So stay, and show our
 * VIEW-CHANGE again: peers that missed it count it (and f+1 of them pull
 * the rest along, maybe_join), and once the others change view for their
 * own reasons we are already there. */
void view_change_timeout(pbft_node *node) {
    uint32_t support = 0;
    for (uint32_t i = 0; i < node->n; i++) {
        support += node->vcs[i].has && node->vcs[i].view == node->view;
    }
    if (support >= node->q || PBFT_BUG(node, PBFT_BUG_CLIMB_ALONE)) {
        start_view_change(node, node->view + 1, PBFT_VC_NEW_VIEW_TIMEOUT);
        return;
    }
    node->vc_deadline = node->now + node->vc_timeout;
    const pbft_vote *own = &node->vcs[node->cfg.self];
    if (own->has && own->view == node->view) {
        out_signed(node, PBFT_TO_ALL, TWINBFT__MESSAGE__KIND_VIEW_CHANGE, own->sbytes, own->slen);
    }
}

/* Unpacks the stored VIEW-CHANGEs for the current view, at most q of them,
 * lowest replica ids first (ours always included). */
static size_t collect_vcs(pbft_node *node, Twinbft__Signed **ss, Twinbft__Body **bodies) {
    size_t n = 0;
    for (uint32_t i = 0; i < node->n && n < node->q; i++) {
        pbft_vote *v = &node->vcs[i];
        if (!v->has || v->view != node->view) {
            continue;
        }
        ss[n] = twinbft__signed__unpack(NULL, v->slen, v->sbytes);
        PBFT_ASSERT(ss[n] != NULL);
        bodies[n] = twinbft__body__unpack(NULL, ss[n]->body.len, ss[n]->body.data);
        PBFT_ASSERT(bodies[n] != NULL);
        n++;
    }
    return n;
}

static void enter_view(pbft_node *node, uint64_t view, const nv_plan *p,
                       Twinbft__Signed *const *pps);

static void try_new_view(pbft_node *node) {
    if (!node->in_vc || primary_of(node, node->view) != node->cfg.self) {
        return;
    }
    Twinbft__Signed *ss[PBFT_REPLICAS_MAX];
    Twinbft__Body *bodies[PBFT_REPLICAS_MAX];
    size_t n = collect_vcs(node, ss, bodies);
    if (n >= node->q) {
        Twinbft__ViewChange *vcs[PBFT_REPLICAS_MAX];
        for (size_t i = 0; i < n; i++) {
            vcs[i] = bodies[i]->view_change;
        }
        nv_plan p;
        plan_compute(node, vcs, n, &p);
        size_t npp = p.max_s - p.min_s;
        Twinbft__Signed **pps = calloc(npp + 1, sizeof *pps);
        PBFT_ASSERT(pps != NULL);
        for (size_t k = 0; k < npp; k++) {
            Twinbft__PrePrepare pp = TWINBFT__PRE_PREPARE__INIT;
            pp.view = node->view;
            pp.seq = p.min_s + 1 + k;
            pp.digest = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, p.digest[k]};
            Twinbft__Body body = TWINBFT__BODY__INIT;
            body.kind_case = TWINBFT__BODY__KIND_PRE_PREPARE;
            body.pre_prepare = &pp;
            uint8_t *sb = NULL;
            size_t slen = 0;
            PBFT_ASSERT(out_sign(node, &body, &sb, &slen) == 0);
            pps[k] = twinbft__signed__unpack(NULL, slen, sb);
            PBFT_ASSERT(pps[k] != NULL);
            free(sb);
        }
        Twinbft__NewView nv = TWINBFT__NEW_VIEW__INIT;
        nv.view = node->view;
        nv.view_changes = ss;
        nv.n_view_changes = n;
        nv.pre_prepares = pps;
        nv.n_pre_prepares = npp;
        Twinbft__Body body = TWINBFT__BODY__INIT;
        body.kind_case = TWINBFT__BODY__KIND_NEW_VIEW;
        body.new_view = &nv;
        uint8_t *sb = NULL;
        size_t slen = 0;
        PBFT_ASSERT(out_sign(node, &body, &sb, &slen) == 0);
        out_signed(node, PBFT_TO_ALL, TWINBFT__MESSAGE__KIND_NEW_VIEW, sb, slen);
        enter_view(node, node->view, &p, pps);
        node->nv = sb;
        node->nv_len = slen;
        out_record(node, PBFT_REC_NEW_VIEW, 0, NULL, false, dup_bytes(sb, slen), slen);
        for (size_t k = 0; k < npp; k++) {
            twinbft__signed__free_unpacked(pps[k], NULL);
        }
        free(pps);
        plan_free(&p);
    }
    for (size_t i = 0; i < n; i++) {
        twinbft__body__free_unpacked(bodies[i], NULL);
        twinbft__signed__free_unpacked(ss[i], NULL);
    }
}

/* Adopts the plan's stable checkpoint and installs the re-issued
 * pre-prepares; backups prepare each of them. */
static void enter_view(pbft_node *node, uint64_t view, const nv_plan *p,
                       Twinbft__Signed *const *pps) {
    if (view > node->view || !node->in_vc) {
        reset_for_view(node);
    }
    if (view > node->view) {
        node->view_changes++;
    }
    node->view = view;
    node->in_vc = false;
    node->vc_deadline = 0;
    node->seen_work = true;
    meta_dirty(node);
    if (p->min_s > node->h && node->executed >= p->min_s) {
        pbft_ckpt *c = ckpt_get(node, p->min_s, false);
        if (c != NULL && c->own &&
            memcmp(c->own_digest, p->stable_digest, PROTO_DIGEST_BYTES) == 0) {
            uint8_t *proof[PBFT_REPLICAS_MAX] = {0};
            size_t proof_len[PBFT_REPLICAS_MAX] = {0};
            const Twinbft__ViewChange *vc = p->stable_from;
            for (size_t i = 0; i < vc->n_checkpoint_proof && i < node->n; i++) {
                uint32_t sg = vc->checkpoint_proof[i]->signer;
                if (sg < node->n && proof[sg] == NULL) {
                    proof[sg] = pack_signed(vc->checkpoint_proof[i], &proof_len[sg]);
                }
            }
            advance_stable(node, p->min_s, p->stable_digest, proof, proof_len);
            for (uint32_t i = 0; i < node->n; i++) {
                free(proof[i]);
            }
        }
    } else if (p->min_s > node->executed) {
        start_fetch(node); /* the new view starts above what we have */
    }
    bool primary = primary_of(node, view) == node->cfg.self;
    for (uint64_t s = p->min_s + 1; s <= p->max_s; s++) {
        pbft_slot *sl = slot_get(node, s);
        if (sl == NULL) {
            continue;
        }
        size_t k = s - p->min_s - 1;
        const Twinbft__PreparedCert *pc = p->chosen[k];
        size_t slen = 0;
        uint8_t *sb = pack_signed(pps[k], &slen);
        accept_pre_prepare(node, sl, view, p->digest[k], sb, slen, pc ? pc->batch.data : NULL,
                           pc ? pc->batch.len : 0);
        if (!primary) {
            Twinbft__Prepare pr = TWINBFT__PREPARE__INIT;
            pr.view = view;
            pr.seq = s;
            pr.digest = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, p->digest[k]};
            Twinbft__Body body = TWINBFT__BODY__INIT;
            body.kind_case = TWINBFT__BODY__KIND_PREPARE;
            body.prepare = &pr;
            uint8_t *pb = NULL;
            size_t plen = 0;
            PBFT_ASSERT(out_sign(node, &body, &pb, &plen) == 0);
            Twinbft__Signed *ps = twinbft__signed__unpack(NULL, plen, pb);
            PBFT_ASSERT(ps != NULL);
            Twinbft__Message m = TWINBFT__MESSAGE__INIT;
            m.kind_case = TWINBFT__MESSAGE__KIND_PREPARE;
            m.prepare = ps;
            out_msg(node, PBFT_TO_ALL, NULL, &m);
            twinbft__signed__free_unpacked(ps, NULL);
            vote_set(&sl->prepares[node->cfg.self], view, p->digest[k], pb, plen);
        }
    }
    uint64_t next = p->max_s > node->h ? p->max_s + 1 : node->h + 1;
    node->next_seq = next > node->executed ? next : node->executed + 1;
    /* The new primary's chance starts now, not when the view change did. */
    node->req_since = node->now;
    node->req_fetched = false;
    request_timer_update(node);
    view_entered_progress(node);
}

void view_entered_progress(pbft_node *node) {
    for (uint64_t s = node->h + 1; s <= node->h + node->cfg.log_window; s++) {
        pbft_slot *sl = &node->slots[s % node->cfg.log_window];
        if (sl->seq == s && sl->has_pp) {
            slot_progress(node, sl);
        }
    }
    node->replay_pending = true;
}

static void maybe_join(pbft_node *node) {
    /* PBFT 4.5.2: f+1 replicas want a later view, so at least one correct
     * replica suspects the primary; join the smallest such view. */
    uint32_t count = 0;
    uint64_t smallest = UINT64_MAX;
    for (uint32_t i = 0; i < node->n; i++) {
        pbft_vote *v = &node->vcs[i];
        if (i != node->cfg.self && v->has && v->view > node->view) {
            count++;
            if (v->view < smallest) {
                smallest = v->view;
            }
        }
    }
    if (count >= node->f + 1) {
        start_view_change(node, smallest, PBFT_VC_PEERS_ASKED);
        return;
    }
    /* The primary of our view asks for the next view itself: it will not
     * order in this one (it restarted: see pbft_node_restore_done), so
     * waiting for a request to time out is only lost time. That is the
     * case after a restart of the whole cluster, when no backup has seen
     * anything since it started. A backup that has seen the cluster work
     * waits for f+1 as above: otherwise a faulty primary could send its
     * VIEW-CHANGE to f chosen backups alone and lead the rest without
     * them, leaving the cluster no fault margin (found by review). */
    const pbft_vote *p = &node->vcs[primary_of(node, node->view)];
    if (!node->in_vc && !node->seen_work && p->has && p->view == node->view + 1 &&
        primary_of(node, node->view) != node->cfg.self) {
        start_view_change(node, node->view + 1, PBFT_VC_PRIMARY_LEFT);
    }
}

void on_view_change(pbft_node *node, const Twinbft__Signed *s, const Twinbft__Body *body,
                    const uint8_t *sbytes, size_t slen) {
    const Twinbft__ViewChange *vc = body->view_change;
    uint32_t from = s->signer;
    if (vc->view < node->view || (vc->view == node->view && !node->in_vc)) {
        if (vc->view == node->view && node->nv != NULL &&
            answer_allowed(node, &node->nv_sent_at[from])) {
            /* It missed the NEW-VIEW: send it again. Every replica of the
             * view keeps it, as the primary may have restarted since. */
            out_signed(node, from, TWINBFT__MESSAGE__KIND_NEW_VIEW, node->nv, node->nv_len);
        }
        return;
    }
    if (node->vcs[from].has && node->vcs[from].view >= vc->view) {
        return;
    }
    if (validate_vc(node, vc) != 0) {
        node->dropped++;
        return;
    }
    vote_set(&node->vcs[from], vc->view, NULL, dup_bytes(sbytes, slen), slen);
    maybe_join(node);
    try_new_view(node);
}

/* Checks every VIEW-CHANGE a NEW-VIEW carries (reusing ones we validated
 * before) and returns their bodies; NULL entries mark invalid ones. */
static size_t nv_valid_vcs(pbft_node *node, const Twinbft__NewView *nv, Twinbft__Body **bodies) {
    bool seen[PBFT_REPLICAS_MAX] = {false};
    size_t count = 0;
    for (size_t i = 0; i < nv->n_view_changes && i < PBFT_REPLICAS_MAX; i++) {
        bodies[i] = NULL;
        Twinbft__Body *b = NULL;
        const Twinbft__Signed *s = nv->view_changes[i];
        if (verify_signed(node, s, &b) != 0) {
            continue;
        }
        if (b->kind_case != TWINBFT__BODY__KIND_VIEW_CHANGE || b->view_change->view != nv->view ||
            seen[s->signer]) {
            twinbft__body__free_unpacked(b, NULL);
            continue;
        }
        size_t plen = 0;
        uint8_t *packed = pack_signed(s, &plen);
        pbft_vote *known = &node->vcs[s->signer];
        bool cached = known->has && known->slen == plen && memcmp(known->sbytes, packed, plen) == 0;
        free(packed);
        if (!cached && validate_vc(node, b->view_change) != 0) {
            twinbft__body__free_unpacked(b, NULL);
            continue;
        }
        seen[s->signer] = true;
        bodies[count++] = b;
    }
    return count;
}

static bool nv_pre_prepares_match(pbft_node *node, const Twinbft__NewView *nv, const nv_plan *p) {
    if (nv->n_pre_prepares != p->max_s - p->min_s) {
        return false;
    }
    for (size_t k = 0; k < nv->n_pre_prepares; k++) {
        Twinbft__Body *b = NULL;
        const Twinbft__Signed *s = nv->pre_prepares[k];
        if (s == NULL || s->signer != primary_of(node, nv->view) || verify_signed(node, s, &b)) {
            return false;
        }
        const Twinbft__PrePrepare *pp = b->pre_prepare;
        bool ok = b->kind_case == TWINBFT__BODY__KIND_PRE_PREPARE && pp->view == nv->view &&
                  pp->seq == p->min_s + 1 + k && digest_ok(&pp->digest) &&
                  memcmp(pp->digest.data, p->digest[k], PROTO_DIGEST_BYTES) == 0;
        twinbft__body__free_unpacked(b, NULL);
        if (!ok) {
            return false;
        }
    }
    return true;
}

void on_new_view(pbft_node *node, const Twinbft__Signed *s, const Twinbft__Body *body,
                 const uint8_t *sbytes, size_t slen) {
    const Twinbft__NewView *nv = body->new_view;
    if (s->signer != primary_of(node, nv->view) || nv->view < node->view ||
        (nv->view == node->view && !node->in_vc) || nv->n_view_changes > PBFT_REPLICAS_MAX) {
        return;
    }
    Twinbft__Body *bodies[PBFT_REPLICAS_MAX];
    size_t n = nv_valid_vcs(node, nv, bodies);
    if (n >= node->q && n == nv->n_view_changes) {
        Twinbft__ViewChange *vcs[PBFT_REPLICAS_MAX];
        for (size_t i = 0; i < n; i++) {
            vcs[i] = bodies[i]->view_change;
        }
        nv_plan p;
        plan_compute(node, vcs, n, &p);
        if (nv_pre_prepares_match(node, nv, &p)) {
            enter_view(node, nv->view, &p, nv->pre_prepares);
            free(node->nv);
            node->nv = dup_bytes(sbytes, slen); /* for replicas that missed it */
            node->nv_len = slen;
            out_record(node, PBFT_REC_NEW_VIEW, 0, NULL, false, dup_bytes(sbytes, slen), slen);
        } else {
            node->dropped++;
        }
        plan_free(&p);
    } else {
        node->dropped++;
    }
    for (size_t i = 0; i < n; i++) {
        twinbft__body__free_unpacked(bodies[i], NULL);
    }
}
