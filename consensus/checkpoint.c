/* Checkpoints (PBFT 4.3): every K executed sequence numbers a replica
 * signs CHECKPOINT(seq, state digest); q matching ones make it stable, the
 * low watermark moves there and the log below it is discarded. */
#include <string.h>

#include "consensus/internal.h"

void state_digest(const uint8_t app[PROTO_DIGEST_BYTES], const uint8_t clients[PROTO_DIGEST_BYTES],
                  uint64_t last_ts, uint8_t out[PROTO_DIGEST_BYTES]) {
    static const char domain[] = "twinbft/v1/state";
    uint8_t ts[8];
    for (int i = 0; i < 8; i++) {
        ts[i] = (uint8_t)(last_ts >> (8 * i));
    }
    proto_hash *h = proto_hash_begin();
    PBFT_ASSERT(h != NULL);
    proto_hash_update(h, domain, sizeof domain);
    proto_hash_update(h, app, PROTO_DIGEST_BYTES);
    proto_hash_update(h, clients, PROTO_DIGEST_BYTES);
    proto_hash_update(h, ts, sizeof ts);
    proto_hash_final(h, out);
}

pbft_ckpt *ckpt_get(pbft_node *node, uint64_t seq, bool create) {
    uint64_t K = node->cfg.checkpoint_interval;
    if (seq % K != 0 || seq < node->h || seq > node->h + node->cfg.log_window) {
        return NULL;
    }
    pbft_ckpt *c = &node->ckpts[(seq / K) % node->n_ckpts];
    if (c->used && c->seq == seq) {
        return c;
    }
    if (!create) {
        return NULL;
    }
    PBFT_ASSERT(!c->used || c->seq < node->h);
    for (uint32_t i = 0; i < node->n; i++) {
        vote_clear(&c->votes[i]);
    }
    free(c->record);
    pbft_vote *votes = c->votes;
    memset(c, 0, sizeof *c);
    c->votes = votes;
    c->used = true;
    c->seq = seq;
    return c;
}

static void ckpt_release(pbft_node *node, pbft_ckpt *c) {
    if (c->own) {
        node->cfg.app.release(node->cfg.app.ctx, c->seq);
        out_record(node, PBFT_REC_CHECKPOINT, c->seq, NULL, true, NULL, 0);
    }
    for (uint32_t i = 0; i < node->n; i++) {
        vote_clear(&c->votes[i]);
    }
    free(c->record);
    c->record = NULL;
    c->used = false;
    c->own = false;
}

/* The record that lets us serve this checkpoint to a lagging peer. */
static uint8_t *checkpoint_record(pbft_node *node, const uint8_t *d, const uint8_t *app,
                                  size_t *len) {
    Twinbft__CheckpointRecord r = TWINBFT__CHECKPOINT_RECORD__INIT;
    r.seq = node->executed;
    r.state_digest = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, (uint8_t *)d};
    r.app_digest = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, (uint8_t *)app};
    r.last_timestamp_ms = node->last_ts;
    Twinbft__ClientEntry **entries = calloc(node->n_clients + 1, sizeof *entries);
    PBFT_ASSERT(entries != NULL);
    for (size_t i = 0; i < node->n_clients; i++) {
        entries[i] =
            twinbft__client_entry__unpack(NULL, node->clients[i].entry_len, node->clients[i].entry);
        PBFT_ASSERT(entries[i] != NULL);
    }
    r.clients = entries;
    r.n_clients = node->n_clients;
    *len = twinbft__checkpoint_record__get_packed_size(&r);
    uint8_t *b = malloc(*len ? *len : 1);
    PBFT_ASSERT(b != NULL);
    twinbft__checkpoint_record__pack(&r, b);
    for (size_t i = 0; i < node->n_clients; i++) {
        twinbft__client_entry__free_unpacked(entries[i], NULL);
    }
    free(entries);
    return b;
}

static void check_stable(pbft_node *node, pbft_ckpt *c);

/* A quorum signed another state digest for a checkpoint we took: our state
 * is not the one the cluster agreed on. Only non-determinism in execution
 * or a corrupted store can do that, and carrying on would sign replies and
 * checkpoints for a state no quorum holds. So the replica says so (status,
 * and the host's log), stops executing and stops sending anything but
 * FETCH, and fetches the certified state: once the others' stable
 * checkpoint passes what it executed, state transfer replaces its state
 * (install_snapshot), and it takes part again. Persisted in the meta
 * record, so that a restart does not resume voting on the bad state. */
static void diverge(pbft_node *node, uint64_t seq, const uint8_t *own, const uint8_t *quorum) {
    if (node->diverged_seq != 0) {
        return;
    }
    node->diverged_seq = seq;
    node->divergences++;
    memcpy(node->diverged_own, own, PROTO_DIGEST_BYTES);
    memcpy(node->diverged_quorum, quorum, PROTO_DIGEST_BYTES);
    meta_dirty(node);
    request_timer_update(node); /* off while diverged */
    start_fetch(node);
}

/* Called with the state just after executing node->executed (a multiple of K). */
void take_checkpoint(pbft_node *node) {
    uint64_t seq = node->executed;
    uint8_t app[PROTO_DIGEST_BYTES], cl[PROTO_DIGEST_BYTES], d[PROTO_DIGEST_BYTES];
    node->cfg.app.digest(node->cfg.app.ctx, app);
    clients_digest(node, cl);
    state_digest(app, cl, node->last_ts, d);
    int rc = node->cfg.app.checkpoint(node->cfg.app.ctx, seq);
    if (rc != 0) {
        node_fault(node, rc);
        return;
    }
    pbft_ckpt *c = ckpt_get(node, seq, true);
    PBFT_ASSERT(c != NULL);
    c->own = true;
    memcpy(c->own_digest, d, PROTO_DIGEST_BYTES);
    c->record = checkpoint_record(node, d, app, &c->record_len);
    out_record(node, PBFT_REC_CHECKPOINT, seq, NULL, false, dup_bytes(c->record, c->record_len),
               c->record_len);
    if (seq == 0) {
        memcpy(node->h_digest, d, PROTO_DIGEST_BYTES); /* genesis: stable by definition */
        return;
    }
    Twinbft__Checkpoint ck = TWINBFT__CHECKPOINT__INIT;
    ck.seq = seq;
    ck.state_digest = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, d};
    Twinbft__Body body = TWINBFT__BODY__INIT;
    body.kind_case = TWINBFT__BODY__KIND_CHECKPOINT;
    body.checkpoint = &ck;
    uint8_t *sb = NULL;
    size_t slen = 0;
    PBFT_ASSERT(out_sign(node, &body, &sb, &slen) == 0);
    out_signed(node, PBFT_TO_ALL, TWINBFT__MESSAGE__KIND_CHECKPOINT, sb, slen);
    vote_set(&c->votes[node->cfg.self], 0, d, sb, slen);
    check_stable(node, c);
}

/* Only a quorum that agrees with our own digest makes a checkpoint stable
 * here; a quorum ahead of us means we are behind and must fetch. */
static void check_stable(pbft_node *node, pbft_ckpt *c) {
    for (uint32_t i = 0; i < node->n; i++) {
        if (!c->votes[i].has) {
            continue;
        }
        uint8_t *proof[PBFT_REPLICAS_MAX] = {0};
        size_t proof_len[PBFT_REPLICAS_MAX] = {0};
        uint32_t count = 0;
        for (uint32_t j = 0; j < node->n; j++) {
            if (c->votes[j].has &&
                memcmp(c->votes[j].digest, c->votes[i].digest, PROTO_DIGEST_BYTES) == 0) {
                proof[j] = c->votes[j].sbytes;
                proof_len[j] = c->votes[j].slen;
                count++;
            }
        }
        if (count < node->q) {
            continue;
        }
        if (node->executed < c->seq) {
            start_fetch(node);
            return;
        }
        if (c->own && memcmp(c->own_digest, c->votes[i].digest, PROTO_DIGEST_BYTES) == 0) {
            advance_stable(node, c->seq, c->own_digest, proof, proof_len);
        } else if (c->own) {
            diverge(node, c->seq, c->own_digest, c->votes[i].digest);
        }
        return;
    }
}

/* Moves the low watermark to seq and discards everything below it. proof
 * is copied (entries may be NULL). */
void advance_stable(pbft_node *node, uint64_t seq, const uint8_t *digest, uint8_t **proof,
                    size_t *proof_len) {
    if (seq <= node->h && !(seq == 0 && node->h == 0)) {
        return;
    }
    PBFT_ASSERT(node->executed >= seq);
    uint8_t d[PROTO_DIGEST_BYTES];
    memcpy(d, digest, PROTO_DIGEST_BYTES);
    for (uint32_t i = 0; i < node->n; i++) {
        free(node->h_proof[i]);
        node->h_proof[i] = proof && proof[i] ? dup_bytes(proof[i], proof_len[i]) : NULL;
        node->h_proof_len[i] = proof && proof[i] ? proof_len[i] : 0;
    }
    for (uint32_t i = 0; i < node->cfg.log_window; i++) {
        pbft_slot *s = &node->slots[i];
        if (s->seq != 0 && s->seq <= seq) {
            out_record(node, PBFT_REC_SLOT, s->seq, NULL, true, NULL, 0);
            log_keep(node, s, s->seq == seq ? proof : NULL, proof_len);
            slot_clear(node, s);
        }
    }
    node->h = seq;
    memcpy(node->h_digest, d, PROTO_DIGEST_BYTES);
    for (size_t i = 0; i < node->n_ckpts; i++) {
        pbft_ckpt *c = &node->ckpts[i];
        if (c->used && c->seq < seq) {
            ckpt_release(node, c);
        }
    }
    if (node->next_seq <= seq) {
        node->next_seq = seq + 1;
    }
    pbft_out *o = &node->out;
    if (o->n_stable == o->cap_stable) {
        o->cap_stable = o->cap_stable ? o->cap_stable * 2 : 8;
        o->stable = realloc(o->stable, o->cap_stable * sizeof *o->stable);
        PBFT_ASSERT(o->stable != NULL);
    }
    o->stable[o->n_stable].seq = seq;
    memcpy(o->stable[o->n_stable].digest, d, PROTO_DIGEST_BYTES);
    o->n_stable++;
    meta_dirty(node);
    node->replay_pending = true; /* the window moved: retry what was beyond it */
}

static void maybe_fetch_ahead(pbft_node *node) {
    /* f+1 replicas claim a checkpoint a full interval beyond what we
     * executed: at least one correct replica is ahead, so catch up. */
    uint32_t ahead = 0;
    for (uint32_t i = 0; i < node->n; i++) {
        ahead += node->peer_ckpt[i] >= node->executed + node->cfg.checkpoint_interval;
    }
    if (ahead >= node->f + 1) {
        start_fetch(node);
    }
}

void on_checkpoint(pbft_node *node, const Twinbft__Signed *s, const Twinbft__Body *body,
                   const uint8_t *sbytes, size_t slen) {
    const Twinbft__Checkpoint *ck = body->checkpoint;
    if (!digest_ok(&ck->state_digest) || ck->seq == 0 ||
        ck->seq % node->cfg.checkpoint_interval != 0) {
        node->dropped++;
        return;
    }
    if (ck->seq > node->peer_ckpt[s->signer]) {
        node->peer_ckpt[s->signer] = ck->seq;
    }
    if (ck->seq <= node->h) {
        return;
    }
    pbft_ckpt *c = ckpt_get(node, ck->seq, true);
    if (c == NULL) {
        maybe_fetch_ahead(node);
        return;
    }
    vote_set(&c->votes[s->signer], 0, ck->state_digest.data, dup_bytes(sbytes, slen), slen);
    check_stable(node, c);
    maybe_fetch_ahead(node);
}

int verify_ckpt_proof(pbft_node *node, uint64_t seq, const uint8_t *digest,
                      Twinbft__Signed *const *proof, size_t n) {
    bool seen[PBFT_REPLICAS_MAX] = {false};
    uint32_t count = 0;
    for (size_t i = 0; i < n && i < PBFT_REPLICAS_MAX; i++) {
        Twinbft__Body *b = NULL;
        if (verify_signed(node, proof[i], &b) != 0) {
            continue;
        }
        const Twinbft__Checkpoint *ck = b->checkpoint;
        if (b->kind_case == TWINBFT__BODY__KIND_CHECKPOINT && ck->seq == seq &&
            digest_ok(&ck->state_digest) &&
            memcmp(ck->state_digest.data, digest, PROTO_DIGEST_BYTES) == 0 &&
            !seen[proof[i]->signer]) {
            seen[proof[i]->signer] = true;
            count++;
        }
        twinbft__body__free_unpacked(b, NULL);
    }
    return count >= node->q ? 0 : TB_ERR_QUORUM;
}
