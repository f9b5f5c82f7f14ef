/* The normal case (PBFT 4.2): the primary batches requests into
 * PRE-PREPAREs; backups check and PREPARE; a replica that is prepared
 * (pre-prepare + q-1 matching prepares from backups) COMMITs; one with q
 * matching commits is committed-local and executes in sequence order. */
#include <string.h>

#include "consensus/internal.h"

/* The pre-prepare stands for the primary's vote, so q - 1 prepares from
 * backups: 2f when n = 3f+1, and none at all for a lone replica (n = 1,
 * q = 1), which is prepared as soon as it proposes. */
static uint32_t prepare_quorum(const pbft_node *node) {
    uint32_t need = node->q - 1;
    return PBFT_BUG(node, PBFT_BUG_QUORUM_2F) && need > 0 ? need - 1 : need;
}

static uint32_t commit_quorum(const pbft_node *node) {
    return PBFT_BUG(node, PBFT_BUG_QUORUM_2F) ? node->q - 1 : node->q;
}

/* ---- primary: batching ---- */

static size_t unproposed(const pbft_node *node, bool *priority, uint64_t *oldest_ms) {
    size_t n = 0;
    *priority = false;
    *oldest_ms = UINT64_MAX;
    for (size_t i = 0; i < node->n_pending; i++) {
        const pbft_pending *p = &node->pending[i];
        if (p->proposed != 0) {
            continue;
        }
        n++;
        *priority |= p->priority;
        if (p->arrival_ms < *oldest_ms) {
            *oldest_ms = p->arrival_ms;
        }
    }
    return n;
}

/* ---- early votes ----
 *
 * A PRE-PREPARE or PREPARE may leave before the commit of the ready that
 * holds it (pbft.h), so that a request's path holds two synced commits (the
 * prepared certificate before COMMIT, the execution before the reply)
 * rather than four. The cost is memory: a replica that crashes between
 * sending and committing does not know, after the restart, that it voted.
 * Were it to accept another batch for the same (view, seq) -- a faulty
 * primary offers one, or it is the primary and proposes anew -- it would
 * have voted for two, which is the one thing a correct replica never does.
 * So a replica that restarts from storage abstains in the view it restarts
 * in: no proposal and no PREPARE there (a PREPARE it had stored with the
 * pre-prepare is not lost, but it is not needed either: the quorum of the
 * others suffices, and the next view change ends the abstention). A vote
 * goes out early only in a view its storage already records as entered
 * (NEW-VIEW done), so the view a replica restarts in is never below one it
 * voted in early, and a new primary's NEW-VIEW always precedes its early
 * proposals. COMMITs wait:
 * a commit quorum is safe across view changes only because every member
 * keeps its prepared certificate, and that must be durable first. A lone
 * replica (n = 1) sends nothing and could not end an abstention with a view
 * change, so neither applies to it. */
bool abstains(const pbft_node *node, uint64_t view) {
    return node->n > 1 && node->restarted && view == node->abstain_view &&
           !PBFT_BUG(node, PBFT_BUG_NO_ABSTAIN);
}

bool early_ok(const pbft_node *node, uint64_t view) {
    return node->n > 1 && node->durable_known && node->durable_view == view && !node->durable_in_vc;
}

static bool may_propose(const pbft_node *node) {
    return !node->in_vc && !abstains(node, node->view) &&
           primary_of(node, node->view) == node->cfg.self &&
           node->next_seq <= node->h + node->cfg.log_window &&
           node->next_seq - 1 < node->executed + node->cfg.inflight_batches_max;
}

uint64_t batch_deadline(const pbft_node *node) {
    if (!may_propose(node)) {
        return UINT64_MAX;
    }
    bool prio = false;
    uint64_t oldest = 0;
    if (unproposed(node, &prio, &oldest) == 0) {
        return UINT64_MAX;
    }
    return prio ? node->now : oldest + node->cfg.batch_delay_ms;
}

/* The safety lane first (an e-stop must not wait behind full batches of
 * routine work), then arrival order. Only the primary sorts; backups follow
 * the batch as proposed, so this is no matter of determinism. */
static int cmp_lane_arrival(const void *a, const void *b) {
    const pbft_pending *x = *(pbft_pending *const *)a, *y = *(pbft_pending *const *)b;
    if (x->priority != y->priority) {
        return x->priority ? -1 : 1;
    }
    return x->arrival < y->arrival ? -1 : x->arrival > y->arrival;
}

/* Picks up to batch_requests_max unproposed requests, priority ones first,
 * then oldest first, within PBFT_BATCH_BYTES_MAX, and packs them with the
 * agreed timestamp. */
static uint8_t *build_batch(pbft_node *node, uint64_t ts, size_t *len) {
    pbft_pending **pick = malloc((node->n_pending ? node->n_pending : 1) * sizeof *pick);
    PBFT_ASSERT(pick != NULL);
    size_t np = 0;
    for (size_t i = 0; i < node->n_pending; i++) {
        if (node->pending[i].proposed == 0) {
            pick[np++] = &node->pending[i];
        }
    }
    qsort(pick, np, sizeof *pick, cmp_lane_arrival);
    size_t max = node->cfg.batch_requests_max, bytes = 0, nr = 0;
    Twinbft__Request *reqs = calloc(max, sizeof *reqs);
    Twinbft__Request **rp = calloc(max, sizeof *rp);
    PBFT_ASSERT(reqs != NULL && rp != NULL);
    for (size_t i = 0; i < np && nr < max; i++) {
        size_t sz = pick[i]->op_len + strlen(pick[i]->client) + 32;
        if (nr > 0 && bytes + sz > PBFT_BATCH_BYTES_MAX) {
            break;
        }
        bytes += sz;
        twinbft__request__init(&reqs[nr]);
        reqs[nr].client = pick[i]->client;
        reqs[nr].number = pick[i]->number;
        reqs[nr].op = (ProtobufCBinaryData){pick[i]->op_len, pick[i]->op};
        reqs[nr].priority = pick[i]->priority;
        rp[nr] = &reqs[nr];
        pick[i]->proposed = node->next_seq;
        nr++;
    }
    Twinbft__Batch b = TWINBFT__BATCH__INIT;
    b.timestamp_ms = ts;
    b.requests = rp;
    b.n_requests = nr;
    *len = twinbft__batch__get_packed_size(&b);
    uint8_t *out = malloc(*len ? *len : 1);
    PBFT_ASSERT(out != NULL);
    twinbft__batch__pack(&b, out);
    free(reqs);
    free(rp);
    free(pick);
    return out;
}

static uint8_t *sign_phase(pbft_node *node, Twinbft__Body__KindCase kind, uint64_t view,
                           uint64_t seq, const uint8_t *digest, size_t *slen) {
    Twinbft__PrePrepare pp = TWINBFT__PRE_PREPARE__INIT;
    Twinbft__Prepare p = TWINBFT__PREPARE__INIT;
    Twinbft__Commit c = TWINBFT__COMMIT__INIT;
    Twinbft__Body body = TWINBFT__BODY__INIT;
    ProtobufCBinaryData d = {PROTO_DIGEST_BYTES, (uint8_t *)digest};
    body.kind_case = kind;
    if (kind == TWINBFT__BODY__KIND_PRE_PREPARE) {
        pp.view = view, pp.seq = seq, pp.digest = d;
        body.pre_prepare = &pp;
    } else if (kind == TWINBFT__BODY__KIND_PREPARE) {
        p.view = view, p.seq = seq, p.digest = d;
        body.prepare = &p;
    } else {
        c.view = view, c.seq = seq, c.digest = d;
        body.commit = &c;
    }
    uint8_t *sb = NULL;
    PBFT_ASSERT(out_sign(node, &body, &sb, slen) == 0);
    return sb;
}

void send_pre_prepare(pbft_node *node, uint32_t to, const pbft_slot *sl) {
    Twinbft__Signed *s = twinbft__signed__unpack(NULL, sl->pp_len, sl->pp);
    PBFT_ASSERT(s != NULL);
    Twinbft__PrePrepareMsg pm = TWINBFT__PRE_PREPARE_MSG__INIT;
    pm.pre_prepare = s;
    pm.batch = (ProtobufCBinaryData){sl->batch_len, sl->batch};
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_PRE_PREPARE;
    m.pre_prepare = &pm;
    out_msg(node, to, NULL, &m);
    twinbft__signed__free_unpacked(s, NULL);
}

void maybe_propose(pbft_node *node, bool flush) {
    while (may_propose(node)) {
        bool prio = false;
        uint64_t oldest = 0;
        size_t n = unproposed(node, &prio, &oldest);
        if (n == 0 || (n < node->cfg.batch_requests_max && !prio && !flush &&
                       oldest + node->cfg.batch_delay_ms > node->now)) {
            return;
        }
        /* Agreed time never runs backwards, even across primaries (PBFT 4.6). */
        uint64_t ts = wall_now(node);
        if (node->pp_ts_max > ts) {
            ts = node->pp_ts_max;
        }
        if (node->last_ts > ts) {
            ts = node->last_ts;
        }
        size_t blen = 0;
        uint8_t *batch = build_batch(node, ts, &blen);
        uint8_t digest[PROTO_DIGEST_BYTES];
        batch_digest(batch, blen, digest);
        pbft_slot *sl = slot_get(node, node->next_seq);
        PBFT_ASSERT(sl != NULL && !sl->has_pp);
        size_t slen = 0;
        uint8_t *sb =
            sign_phase(node, TWINBFT__BODY__KIND_PRE_PREPARE, node->view, sl->seq, digest, &slen);
        accept_pre_prepare(node, sl, node->view, digest, sb, slen, batch, blen);
        sl->ts = ts;
        free(batch);
        node->out_early = early_ok(node, node->view);
        send_pre_prepare(node, PBFT_TO_ALL, sl);
        node->out_early = false;
        node->next_seq++;
        slot_progress(node, sl);
    }
}

/* ---- backups: checking a pre-prepare ---- */

void accept_pre_prepare(pbft_node *node, pbft_slot *sl, uint64_t view, const uint8_t *digest,
                        uint8_t *pp, size_t pp_len, const uint8_t *batch, size_t batch_len) {
    PBFT_ASSERT(sl->seq > node->h && sl->seq <= node->h + node->cfg.log_window);
    free(sl->pp);
    free(sl->batch);
    sl->has_pp = true;
    sl->waiting = sl->stale_ts = false;
    sl->prepared = false;
    sl->sent_commit = false;
    sl->pp_view = view;
    memcpy(sl->digest, digest, PROTO_DIGEST_BYTES);
    sl->pp = pp;
    sl->pp_len = pp_len;
    sl->batch = dup_bytes(batch, batch_len);
    sl->batch_len = batch_len;
    sl->ts = 0;
    if (!sl->dirty) {
        sl->lazy = true; /* see pbft_slot.lazy */
    }
    sl->dirty = true;
}

/* Every request in a fresh batch must be one we received from its client
 * ourselves (channel-authenticated), or one already executed: a primary
 * cannot invent requests. Unknown ones make the pre-prepare wait. */
static bool requests_known(pbft_node *node, const Twinbft__Batch *b) {
    for (size_t i = 0; i < b->n_requests; i++) {
        const Twinbft__Request *r = b->requests[i];
        pbft_client *c = client_find(node, r->client);
        if (c != NULL && r->number <= c->number) {
            continue;
        }
        pbft_pending *p = pending_find(node, r->client);
        bool latest = p != NULL && p->number == r->number && p->op_len == r->op.len &&
                      memcmp(p->op, r->op.data, p->op_len) == 0;
        bool prev = p != NULL && p->prev_number == r->number && p->prev_op_len == r->op.len &&
                    memcmp(p->prev_op, r->op.data, p->prev_op_len) == 0;
        if (!latest && !prev) {
            return false;
        }
    }
    return true;
}

static bool batch_wellformed(const pbft_node *node, const Twinbft__Batch *b) {
    if (b->n_requests == 0 || b->n_requests > node->cfg.batch_requests_max) {
        return false;
    }
    for (size_t i = 0; i < b->n_requests; i++) {
        if (!request_wellformed(b->requests[i])) {
            return false;
        }
    }
    return true;
}

/* PBFT 4.6: the primary's timestamp must be close to our clock and
 * monotonic with the other batches we hold. A timestamp that is only too
 * old (*stale) may be a pre-prepare that reached us late: a link that
 * was down, a resend, a loop that fell behind. Dropping it would stall
 * the seq for good, since no one sends it again unasked, so it is held
 * instead (see slot_progress). */
static bool timestamp_ok(pbft_node *node, uint64_t seq, uint64_t ts, bool *stale) {
    uint64_t skew = node->cfg.clock_skew_ms_max, wall = wall_now(node);
    *stale = false;
    /* Agreed time never runs backwards, so when the clocks are stepped back
     * the primary stamps what was agreed already: a stamp no later than one
     * this replica accepted (when its clock allowed it) is fine. Time then
     * stands still until the clocks catch up, and no primary can move it. */
    uint64_t ahead_bound = wall + skew > node->pp_ts_max ? wall + skew : node->pp_ts_max;
    if (ts > ahead_bound) {
        /* Ahead of our clock by more than the skew allows: the primary's
         * clock or ours is wrong. Counted, with the offset, for the log. */
        node->ts_rejected++;
        node->ts_offset_ms = (int64_t)(ts - wall);
        return false;
    }
    if (ts < node->last_ts) {
        return false;
    }
    if (ts + skew < wall) {
        *stale = true;
        node->ts_offset_ms = -(int64_t)(wall - ts);
    }
    for (uint64_t s = node->h + 1; s <= node->h + node->cfg.log_window; s++) {
        pbft_slot *o = &node->slots[s % node->cfg.log_window];
        if (o->seq != s || !o->has_pp || o->ts == 0 || s == seq) {
            continue;
        }
        if ((s < seq && o->ts > ts) || (s > seq && o->ts < ts)) {
            return false;
        }
    }
    return true;
}

static void send_prepare(pbft_node *node, pbft_slot *sl) {
    if (abstains(node, sl->pp_view)) {
        return; /* early votes: it may have voted here before a crash */
    }
    size_t slen = 0;
    uint8_t *sb =
        sign_phase(node, TWINBFT__BODY__KIND_PREPARE, sl->pp_view, sl->seq, sl->digest, &slen);
    node->out_early = early_ok(node, sl->pp_view);
    out_signed(node, PBFT_TO_ALL, TWINBFT__MESSAGE__KIND_PREPARE, sb, slen);
    node->out_early = false;
    vote_set(&sl->prepares[node->cfg.self], sl->pp_view, sl->digest, sb, slen);
}

/* Accepts a view filter result: 1 = process (view may be rewritten by the
 * stale-view planted bug), 0 = drop, -1 = keep for later. */
static int view_filter(pbft_node *node, uint64_t *view) {
    if (*view > node->view || (*view == node->view && node->in_vc)) {
        return -1;
    }
    if (*view < node->view) {
        if (PBFT_BUG(node, PBFT_BUG_STALE_VIEW) && !node->in_vc) {
            *view = node->view;
            return 1;
        }
        return 0;
    }
    return 1;
}

static int seq_filter(const pbft_node *node, uint64_t seq) {
    if (seq <= node->h) {
        return 0;
    }
    return seq > node->h + node->cfg.log_window ? -1 : 1;
}

/* A batch carried inside a certificate: the null batch, or one that
 * decodes and is well-formed. Signatures prove others accepted it; this
 * keeps a corrupt or forged one from reaching execution anyway. */
bool batch_bytes_ok(const pbft_node *node, const uint8_t *data, size_t len) {
    if (len == 0) {
        return true;
    }
    if (len > PBFT_BATCH_BYTES_MAX) {
        return false;
    }
    Twinbft__Batch *b = twinbft__batch__unpack(NULL, len, data);
    bool ok = b != NULL && batch_wellformed(node, b);
    if (b != NULL) {
        twinbft__batch__free_unpacked(b, NULL);
    }
    return ok;
}

static Twinbft__Batch *check_batch(pbft_node *node, const ProtobufCBinaryData *batch,
                                   const uint8_t *digest) {
    if (batch->len == 0 || batch->len > PBFT_BATCH_BYTES_MAX) {
        return NULL;
    }
    uint8_t d[PROTO_DIGEST_BYTES];
    batch_digest(batch->data, batch->len, d);
    if (memcmp(d, digest, PROTO_DIGEST_BYTES) != 0) {
        return NULL;
    }
    Twinbft__Batch *b = twinbft__batch__unpack(NULL, batch->len, batch->data);
    if (b != NULL && !batch_wellformed(node, b)) {
        twinbft__batch__free_unpacked(b, NULL);
        return NULL;
    }
    return b;
}

void on_pre_prepare(pbft_node *node, const pbft_from *from, const Twinbft__PrePrepareMsg *m,
                    const uint8_t *raw, size_t raw_len) {
    Twinbft__Body *body = NULL;
    const Twinbft__Signed *s = m->pre_prepare;
    if (s == NULL || s->signer != from->replica || verify_signed(node, s, &body) != 0) {
        node->dropped++;
        return;
    }
    Twinbft__Batch *b = NULL;
    const Twinbft__PrePrepare *pp = body->pre_prepare;
    if (body->kind_case != TWINBFT__BODY__KIND_PRE_PREPARE || !digest_ok(&pp->digest) ||
        s->signer != primary_of(node, pp->view)) {
        node->dropped++;
        goto done;
    }
    uint64_t view = pp->view;
    int vf = view_filter(node, &view), sf = seq_filter(node, pp->seq);
    if (vf < 0 || (vf > 0 && sf < 0)) {
        buffer_future(node, from, raw, raw_len);
        nudge_primary(node, view);
        note_later_view(node, s->signer, view);
        goto done;
    }
    if (vf == 0 || sf == 0) {
        goto done;
    }
    pbft_slot *sl = slot_get(node, pp->seq);
    if (sl->has_pp && sl->pp_view == view) {
        goto done; /* a duplicate, or equivocation: keep the first */
    }
    if (sl->cc != NULL && memcmp(sl->cc_digest, pp->digest.data, PROTO_DIGEST_BYTES) != 0) {
        node->dropped++; /* contradicts what this seq already committed */
        goto done;
    }
    b = check_batch(node, &m->batch, pp->digest.data);
    bool stale = false;
    if (b == NULL || !timestamp_ok(node, pp->seq, b->timestamp_ms, &stale)) {
        node->dropped++;
        goto done;
    }
    size_t slen = 0;
    uint8_t *sb = pack_signed(s, &slen);
    accept_pre_prepare(node, sl, view, pp->digest.data, sb, slen, m->batch.data, m->batch.len);
    node->seen_work = true;
    sl->ts = b->timestamp_ms;
    if (sl->ts > node->pp_ts_max) {
        node->pp_ts_max = sl->ts;
    }
    if (stale) {
        sl->waiting = sl->stale_ts = true;
        slot_progress(node, sl); /* the vouching prepares may be here already */
        goto done;
    }
    if (!requests_known(node, b)) {
        sl->waiting = true;
        slot_progress(node, sl);
        goto done;
    }
    send_prepare(node, sl);
    slot_progress(node, sl);
done:
    if (b) {
        twinbft__batch__free_unpacked(b, NULL);
    }
    twinbft__body__free_unpacked(body, NULL);
}

/* requests_known for the batch a slot holds. */
static bool requests_known_slot(pbft_node *node, const pbft_slot *sl) {
    if (sl->batch_len == 0) {
        return true;
    }
    Twinbft__Batch *b = twinbft__batch__unpack(NULL, sl->batch_len, sl->batch);
    PBFT_ASSERT(b != NULL);
    bool known = requests_known(node, b);
    twinbft__batch__free_unpacked(b, NULL);
    return known;
}

void recheck_waiting(pbft_node *node) {
    for (uint64_t s = node->h + 1; s <= node->h + node->cfg.log_window; s++) {
        pbft_slot *sl = &node->slots[s % node->cfg.log_window];
        if (sl->seq != s || !sl->has_pp || !sl->waiting || node->in_vc) {
            continue;
        }
        if (sl->stale_ts) {
            slot_progress(node, sl); /* the requests were what the vouch waited for */
            continue;
        }
        if (requests_known_slot(node, sl)) {
            sl->waiting = false;
            send_prepare(node, sl);
            slot_progress(node, sl);
        }
    }
}

/* ---- prepares and commits ---- */

/* A vote for a slot that already holds what votes of its kind build in
 * that view (a prepared certificate, a committed one) changes nothing:
 * it is dropped before paying for its signature. Only its unverified body
 * decides that, and only to drop it, so a forged one can cost nothing but
 * itself. With n = 4 this is one PREPARE and one COMMIT per batch at each
 * replica, the ones beyond the quorum. */
static bool vote_redundant(const pbft_node *node, uint64_t view, uint64_t seq, bool is_commit) {
    const pbft_slot *sl = &node->slots[seq % node->cfg.log_window];
    return seq > node->h && sl->seq == seq && sl->has_pp && sl->pp_view == view &&
           view == node->view && (is_commit ? sl->cc != NULL : sl->prepared);
}

static void on_vote(pbft_node *node, const pbft_from *from, const Twinbft__Signed *s,
                    const uint8_t *raw, size_t raw_len, bool is_commit) {
    if (s == NULL || s->signer != from->replica) {
        node->dropped++;
        return;
    }
    Twinbft__Body *body = twinbft__body__unpack(NULL, s->body.len, s->body.data);
    if (body == NULL) {
        node->dropped++;
        return;
    }
    Twinbft__Body__KindCase want =
        is_commit ? TWINBFT__BODY__KIND_COMMIT : TWINBFT__BODY__KIND_PREPARE;
    uint64_t view = 0, seq = 0;
    const ProtobufCBinaryData *digest = NULL;
    if (body->kind_case == want && is_commit) {
        view = body->commit->view, seq = body->commit->seq, digest = &body->commit->digest;
    } else if (body->kind_case == want) {
        view = body->prepare->view, seq = body->prepare->seq, digest = &body->prepare->digest;
    }
    if (digest == NULL || !digest_ok(digest) ||
        (!is_commit && s->signer == primary_of(node, view))) {
        node->dropped++;
        goto done;
    }
    if (vote_redundant(node, view, seq, is_commit)) {
        node->votes_redundant++;
        goto done;
    }
    if (verify_signature(node, s) != 0) {
        node->dropped++;
        goto done;
    }
    int vf = view_filter(node, &view), sf = seq_filter(node, seq);
    if (vf < 0 || (vf > 0 && sf < 0)) {
        buffer_future(node, from, raw, raw_len);
        nudge_primary(node, view);
        note_later_view(node, s->signer, view);
        goto done;
    }
    if (vf == 0 || sf == 0) {
        goto done;
    }
    pbft_slot *sl = slot_get(node, seq);
    size_t slen = 0;
    uint8_t *sb = pack_signed(s, &slen);
    vote_set(is_commit ? &sl->commits[s->signer] : &sl->prepares[s->signer], view, digest->data, sb,
             slen);
    slot_progress(node, sl);
done:
    twinbft__body__free_unpacked(body, NULL);
}

void on_prepare(pbft_node *node, const pbft_from *from, const Twinbft__Signed *s,
                const uint8_t *raw, size_t raw_len) {
    on_vote(node, from, s, raw, raw_len, false);
}

void on_commit(pbft_node *node, const pbft_from *from, const Twinbft__Signed *s, const uint8_t *raw,
               size_t raw_len) {
    on_vote(node, from, s, raw, raw_len, true);
}

/* Collects the matching votes of (view, digest); skip = a replica not counted. */
static size_t matching(const pbft_node *node, const pbft_vote *votes, uint64_t view,
                       const uint8_t *digest, uint32_t skip, Twinbft__Signed **out) {
    size_t n = 0;
    for (uint32_t i = 0; i < node->n; i++) {
        const pbft_vote *v = &votes[i];
        if (i == skip || !v->has || v->view != view ||
            memcmp(v->digest, digest, PROTO_DIGEST_BYTES) != 0) {
            continue;
        }
        if (out != NULL) {
            out[n] = twinbft__signed__unpack(NULL, v->slen, v->sbytes);
            PBFT_ASSERT(out[n] != NULL);
        }
        n++;
    }
    return n;
}

static void free_signed_array(Twinbft__Signed **a, size_t n) {
    for (size_t i = 0; i < n; i++) {
        twinbft__signed__free_unpacked(a[i], NULL);
    }
}

static void make_prepared_cert(pbft_node *node, pbft_slot *sl) {
    Twinbft__Signed *votes[PBFT_REPLICAS_MAX];
    size_t nv =
        matching(node, sl->prepares, sl->pp_view, sl->digest, primary_of(node, sl->pp_view), votes);
    Twinbft__PreparedCert pc = TWINBFT__PREPARED_CERT__INIT;
    pc.pre_prepare = twinbft__signed__unpack(NULL, sl->pp_len, sl->pp);
    PBFT_ASSERT(pc.pre_prepare != NULL);
    pc.batch = (ProtobufCBinaryData){sl->batch_len, sl->batch};
    pc.prepares = votes;
    pc.n_prepares = nv;
    free(sl->pc);
    sl->pc_len = twinbft__prepared_cert__get_packed_size(&pc);
    sl->pc = malloc(sl->pc_len);
    PBFT_ASSERT(sl->pc != NULL);
    twinbft__prepared_cert__pack(&pc, sl->pc);
    sl->pc_view = sl->pp_view;
    memcpy(sl->pc_digest, sl->digest, PROTO_DIGEST_BYTES);
    twinbft__signed__free_unpacked(pc.pre_prepare, NULL);
    free_signed_array(votes, nv);
}

static void make_committed_cert(pbft_node *node, pbft_slot *sl) {
    Twinbft__Signed *votes[PBFT_REPLICAS_MAX];
    size_t nv = matching(node, sl->commits, sl->pp_view, sl->digest, UINT32_MAX, votes);
    Twinbft__CommittedCert cc = TWINBFT__COMMITTED_CERT__INIT;
    cc.pre_prepare = twinbft__signed__unpack(NULL, sl->pp_len, sl->pp);
    PBFT_ASSERT(cc.pre_prepare != NULL);
    cc.batch = (ProtobufCBinaryData){sl->batch_len, sl->batch};
    cc.commits = votes;
    cc.n_commits = nv;
    sl->cc_len = twinbft__committed_cert__get_packed_size(&cc);
    sl->cc = malloc(sl->cc_len);
    PBFT_ASSERT(sl->cc != NULL);
    twinbft__committed_cert__pack(&cc, sl->cc);
    memcpy(sl->cc_digest, sl->digest, PROTO_DIGEST_BYTES);
    sl->cc_batch = dup_bytes(sl->batch, sl->batch_len);
    sl->cc_batch_len = sl->batch_len;
    sl->cc_view = sl->pp_view;
    twinbft__signed__free_unpacked(cc.pre_prepare, NULL);
    free_signed_array(votes, nv);
}

void slot_progress(pbft_node *node, pbft_slot *sl) {
    if (!sl->has_pp || node->in_vc) {
        return;
    }
    uint32_t primary = primary_of(node, sl->pp_view);
    size_t vouched =
        sl->waiting ? matching(node, sl->prepares, sl->pp_view, sl->digest, primary, NULL) : 0;
    if (sl->waiting && vouched >= node->f + 1) {
        /* f+1 backups prepared the batch, so at least one correct replica
         * had every request in it from the client's own channel: it is no
         * invention of the primary. A client that reached only some of us
         * (a short-lived CLI, a flaky link) must not stall this slot until
         * a fetch or a view change. The same f+1 vouch for its timestamp. */
        sl->waiting = sl->stale_ts = false;
        send_prepare(node, sl);
    } else if (sl->waiting && sl->stale_ts && vouched >= node->f && requests_known_slot(node, sl)) {
        /* Only the timestamp held it: the primary that signed it and f
         * backups that prepared it are f+1 replicas, so at least one
         * correct one found it fresh. (Seen at 256 clients: a pre-prepare
         * that reached two backups 2 s late stalled its seq until a view
         * change.) */
        sl->waiting = sl->stale_ts = false;
        send_prepare(node, sl);
    }
    if (sl->waiting) {
        return;
    }
    if (!sl->prepared && matching(node, sl->prepares, sl->pp_view, sl->digest, primary, NULL) >=
                             prepare_quorum(node)) {
        sl->prepared = true;
        make_prepared_cert(node, sl);
        sl->dirty = true; /* durable before the commit that depends on it */
        sl->lazy = false;
    }
    if (sl->prepared && !sl->sent_commit) {
        sl->sent_commit = true;
        size_t slen = 0;
        uint8_t *sb =
            sign_phase(node, TWINBFT__BODY__KIND_COMMIT, sl->pp_view, sl->seq, sl->digest, &slen);
        out_signed(node, PBFT_TO_ALL, TWINBFT__MESSAGE__KIND_COMMIT, sb, slen);
        vote_set(&sl->commits[node->cfg.self], sl->pp_view, sl->digest, sb, slen);
    }
    if (sl->prepared && sl->cc == NULL &&
        matching(node, sl->commits, sl->pp_view, sl->digest, UINT32_MAX, NULL) >=
            commit_quorum(node)) {
        make_committed_cert(node, sl);
        sl->dirty = true;
        sl->lazy = false;
        try_execute(node);
    }
}
