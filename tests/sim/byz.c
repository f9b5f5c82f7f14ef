/* Mutation of a Byzantine replica's outgoing messages (see byz.h).
 *
 * Messages are decoded with protobuf-c, changed in place, re-signed and
 * re-packed. Every pointer swapped into a decoded message is swapped back
 * before the message is freed, so protobuf-c only ever frees its own memory. */
#include "tests/sim/byz.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"
#include "proto/tb_assert.h"

void sim_byz_init(sim_byz *b, uint32_t id, sim_crypto *crypto, uint32_t rate_permille) {
    memset(b, 0, sizeof *b);
    b->id = id;
    b->crypto = crypto;
    b->rate_permille = rate_permille;
}

void sim_byz_free(sim_byz *b) {
    for (size_t i = 0; i < SIM_BYZ_FETCHES; i++) {
        free(b->fetches[i]);
    }
    memset(b, 0, sizeof *b);
}

static uint8_t *pack_any(const ProtobufCMessage *m, size_t *len) {
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *p = malloc(*len ? *len : 1);
    TB_ASSERT(p != NULL);
    protobuf_c_message_pack(m, p);
    return p;
}

/* ---- history ---------------------------------------------------------- */

static void remember_digest(sim_byz *b, uint64_t seq, const ProtobufCBinaryData *d) {
    if (d->len != PROTO_DIGEST_BYTES) {
        return;
    }
    for (size_t i = 0; i < b->n_digests; i++) {
        if (memcmp(b->digests[i], d->data, PROTO_DIGEST_BYTES) == 0) {
            return;
        }
    }
    memcpy(b->digests[b->next_digest], d->data, PROTO_DIGEST_BYTES);
    b->digest_seq[b->next_digest] = seq;
    b->next_digest = (b->next_digest + 1) % SIM_BYZ_DIGESTS;
    if (b->n_digests < SIM_BYZ_DIGESTS) {
        b->n_digests++;
    }
}

static void remember_state(sim_byz *b, const ProtobufCBinaryData *d) {
    if (d->len != PROTO_DIGEST_BYTES) {
        return;
    }
    memcpy(b->states[b->next_state], d->data, PROTO_DIGEST_BYTES);
    b->next_state = (b->next_state + 1) % SIM_BYZ_STATES;
    if (b->n_states < SIM_BYZ_STATES) {
        b->n_states++;
    }
}

static void remember_fetch(sim_byz *b, const Twinbft__FetchReply *fr, const uint8_t *data,
                           size_t len) {
    if (fr->manifest == NULL) {
        return;
    }
    size_t i = b->next_fetch;
    free(b->fetches[i]);
    b->fetches[i] = malloc(len);
    TB_ASSERT(b->fetches[i] != NULL);
    memcpy(b->fetches[i], data, len);
    b->fetch_len[i] = len;
    b->fetch_seq[i] = fr->checkpoint_seq;
    b->next_fetch = (i + 1) % SIM_BYZ_FETCHES;
    if (b->n_fetches < SIM_BYZ_FETCHES) {
        b->n_fetches++;
    }
}

static void observe_signed(sim_byz *b, const Twinbft__Signed *s) {
    if (s == NULL) {
        return;
    }
    Twinbft__Body *body = twinbft__body__unpack(NULL, s->body.len, s->body.data);
    if (body == NULL) {
        return;
    }
    switch (body->kind_case) {
    case TWINBFT__BODY__KIND_PRE_PREPARE:
        remember_digest(b, body->pre_prepare->seq, &body->pre_prepare->digest);
        break;
    case TWINBFT__BODY__KIND_PREPARE:
        remember_digest(b, body->prepare->seq, &body->prepare->digest);
        break;
    case TWINBFT__BODY__KIND_COMMIT:
        remember_digest(b, body->commit->seq, &body->commit->digest);
        break;
    case TWINBFT__BODY__KIND_CHECKPOINT:
        remember_state(b, &body->checkpoint->state_digest);
        break;
    default:
        break;
    }
    twinbft__body__free_unpacked(body, NULL);
}

static void observe(sim_byz *b, const Twinbft__Message *m, const uint8_t *data, size_t len) {
    switch (m->kind_case) {
    case TWINBFT__MESSAGE__KIND_PRE_PREPARE:
        observe_signed(b, m->pre_prepare->pre_prepare);
        break;
    case TWINBFT__MESSAGE__KIND_PREPARE:
        observe_signed(b, m->prepare);
        break;
    case TWINBFT__MESSAGE__KIND_COMMIT:
        observe_signed(b, m->commit);
        break;
    case TWINBFT__MESSAGE__KIND_CHECKPOINT:
        observe_signed(b, m->checkpoint);
        break;
    case TWINBFT__MESSAGE__KIND_FETCH_REPLY:
        remember_fetch(b, m->fetch_reply, data, len);
        break;
    default:
        break;
    }
}

/* An older digest than `cur` that this replica sent, or NULL. */
static const uint8_t *older_digest(sim_byz *b, sim_rng *rng, const ProtobufCBinaryData *cur) {
    if (b->n_digests == 0) {
        return NULL;
    }
    size_t i = (size_t)sim_rng_below(rng, b->n_digests);
    if (cur->len == PROTO_DIGEST_BYTES && memcmp(b->digests[i], cur->data, cur->len) == 0) {
        return NULL;
    }
    return b->digests[i];
}

/* ---- re-signing --------------------------------------------------------- */

/* Swaps a re-signed body into s; resign_end puts the original back. */
typedef struct resign {
    Twinbft__Signed *s;
    ProtobufCBinaryData old_body, old_sig;
    uint32_t old_signer;
    uint8_t *body;
    uint8_t sig[PROTO_SIG_BYTES];
} resign;

static void resign_begin(sim_byz *b, Twinbft__Signed *s, const Twinbft__Body *body, resign *r) {
    size_t len = 0;
    r->body = pack_any(&body->base, &len);
    TB_ASSERT(sim_crypto_sign(b->crypto, b->id, r->body, len, r->sig) == 0);
    r->s = s;
    r->old_body = s->body;
    r->old_sig = s->signature;
    r->old_signer = s->signer;
    s->body = (ProtobufCBinaryData){len, r->body};
    s->signature = (ProtobufCBinaryData){PROTO_SIG_BYTES, r->sig};
    s->signer = b->id;
}

static void resign_end(resign *r) {
    r->s->body = r->old_body;
    r->s->signature = r->old_sig;
    r->s->signer = r->old_signer;
    free(r->body);
}

/* ---- mutations ---------------------------------------------------------- */

typedef struct vsd {
    uint64_t *view; /* NULL when the kind has none */
    uint64_t *seq;
    ProtobufCBinaryData *digest;
    const char *name;
} vsd;

static bool body_fields(Twinbft__Body *body, vsd *f) {
    memset(f, 0, sizeof *f);
    switch (body->kind_case) {
    case TWINBFT__BODY__KIND_PRE_PREPARE:
        *f = (vsd){&body->pre_prepare->view, &body->pre_prepare->seq, &body->pre_prepare->digest,
                   "pre-prepare"};
        return true;
    case TWINBFT__BODY__KIND_PREPARE:
        *f = (vsd){&body->prepare->view, &body->prepare->seq, &body->prepare->digest, "prepare"};
        return true;
    case TWINBFT__BODY__KIND_COMMIT:
        *f = (vsd){&body->commit->view, &body->commit->seq, &body->commit->digest, "commit"};
        return true;
    case TWINBFT__BODY__KIND_CHECKPOINT:
        *f = (vsd){NULL, &body->checkpoint->seq, &body->checkpoint->state_digest, "checkpoint"};
        return true;
    default:
        return false;
    }
}

static void bump(sim_rng *rng, uint64_t *x, const char *what, const char *name, char *desc) {
    uint64_t old = *x;
    *x = (old == 0 || sim_rng_chance(rng, 500)) ? old + 1 : old - 1;
    snprintf(desc, SIM_BYZ_DESC_BYTES, "%s %s %" PRIu64 " -> %" PRIu64, name, what, old, *x);
}

/* Rewrites the batch of a pre-prepare without one of its requests (a
 * conflicting proposal for the same seq), with the matching digest. The
 * caller owns *batch_out. */
static bool rewrite_batch(sim_rng *rng, Twinbft__PrePrepareMsg *pm, uint8_t digest[32],
                          uint8_t **batch_out, size_t *batch_len) {
    Twinbft__Batch *batch = twinbft__batch__unpack(NULL, pm->batch.len, pm->batch.data);
    if (batch == NULL || batch->n_requests == 0) {
        if (batch != NULL) {
            twinbft__batch__free_unpacked(batch, NULL);
        }
        return false;
    }
    size_t n = batch->n_requests;
    size_t drop = (size_t)sim_rng_below(rng, n);
    Twinbft__Request *tmp = batch->requests[drop];
    batch->requests[drop] = batch->requests[n - 1];
    batch->requests[n - 1] = tmp;
    batch->n_requests = n - 1;
    *batch_out = pack_any(&batch->base, batch_len);
    batch->n_requests = n;
    batch->requests[n - 1] = batch->requests[drop];
    batch->requests[drop] = tmp;
    twinbft__batch__free_unpacked(batch, NULL);
    proto_sha256(*batch_out, *batch_len, digest);
    return true;
}

/* A stale digest for field f: an older state digest for checkpoints, an
 * older batch digest otherwise; NULL when there is none that differs. */
static const uint8_t *stale_digest(sim_byz *b, sim_rng *rng, const Twinbft__Body *body,
                                   const ProtobufCBinaryData *cur) {
    const uint8_t *old = NULL;
    if (body->kind_case == TWINBFT__BODY__KIND_CHECKPOINT) {
        old = b->n_states ? b->states[sim_rng_below(rng, b->n_states)] : NULL;
    } else {
        old = older_digest(b, rng, cur);
    }
    if (old != NULL && cur->len == PROTO_DIGEST_BYTES &&
        memcmp(old, cur->data, PROTO_DIGEST_BYTES) == 0) {
        return NULL;
    }
    return old;
}

/* What mutate_signed swapped into a decoded body and must put back. */
typedef struct body_swap {
    ProtobufCBinaryData *digest_field;
    ProtobufCBinaryData digest_saved;
    Twinbft__ViewChange *vc;
    size_t vc_prepared_saved;
    Twinbft__PrePrepareMsg *pm;
    ProtobufCBinaryData batch_saved;
    uint8_t *new_batch;
    uint8_t new_digest[PROTO_DIGEST_BYTES];
} body_swap;

static void swap_digest(body_swap *sw, ProtobufCBinaryData *field, const uint8_t *d) {
    memcpy(sw->new_digest, d, PROTO_DIGEST_BYTES);
    sw->digest_field = field;
    sw->digest_saved = *field;
    *field = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, sw->new_digest};
}

static void swap_undo(body_swap *sw) {
    if (sw->digest_field != NULL) {
        *sw->digest_field = sw->digest_saved;
    }
    if (sw->vc != NULL) {
        sw->vc->n_prepared = sw->vc_prepared_saved;
    }
    if (sw->pm != NULL) {
        sw->pm->batch = sw->batch_saved;
        free(sw->new_batch);
    }
}

/* view, seq or digest of a pre-prepare, prepare, commit or checkpoint. */
static void mutate_vsd(sim_byz *b, sim_rng *rng, Twinbft__Message *m, Twinbft__Body *body, vsd *f,
                       body_swap *sw, char *desc) {
    bool is_pp = m->kind_case == TWINBFT__MESSAGE__KIND_PRE_PREPARE;
    uint64_t pick = sim_rng_below(rng, is_pp ? 4 : 3);
    if (pick == 0 && f->view != NULL) {
        bump(rng, f->view, "view", f->name, desc);
        return;
    }
    if (pick == 3) {
        uint8_t d[PROTO_DIGEST_BYTES];
        size_t blen = 0;
        if (rewrite_batch(rng, m->pre_prepare, d, &sw->new_batch, &blen)) {
            swap_digest(sw, f->digest, d);
            sw->pm = m->pre_prepare;
            sw->batch_saved = m->pre_prepare->batch;
            m->pre_prepare->batch = (ProtobufCBinaryData){blen, sw->new_batch};
            snprintf(desc, SIM_BYZ_DESC_BYTES, "pre-prepare seq %" PRIu64 " with a rewritten batch",
                     *f->seq);
            return;
        }
    }
    if (pick >= 2) {
        const uint8_t *old = stale_digest(b, rng, body, f->digest);
        if (old != NULL) {
            swap_digest(sw, f->digest, old);
            snprintf(desc, SIM_BYZ_DESC_BYTES, "%s seq %" PRIu64 " with an older digest", f->name,
                     *f->seq);
            return;
        }
    }
    bump(rng, f->seq, "seq", f->name, desc);
}

/* Mutates the Signed body inside m (s points into m), re-signs it and
 * packs m; NULL when the body has nothing to mutate. */
static uint8_t *mutate_signed(sim_byz *b, sim_rng *rng, Twinbft__Message *m, Twinbft__Signed *s,
                              size_t *out_len, char *desc) {
    Twinbft__Body *body = twinbft__body__unpack(NULL, s->body.len, s->body.data);
    if (body == NULL) {
        return NULL;
    }
    body_swap sw;
    memset(&sw, 0, sizeof sw);
    vsd f;
    if (body_fields(body, &f)) {
        mutate_vsd(b, rng, m, body, &f, &sw, desc);
    } else if (body->kind_case == TWINBFT__BODY__KIND_VIEW_CHANGE) {
        Twinbft__ViewChange *vc = body->view_change;
        if (vc->n_prepared > 0 && sim_rng_chance(rng, 600)) {
            snprintf(desc, SIM_BYZ_DESC_BYTES,
                     "view change to %" PRIu64 " without its %zu prepared certificates", vc->view,
                     vc->n_prepared);
            sw.vc = vc;
            sw.vc_prepared_saved = vc->n_prepared;
            vc->n_prepared = 0;
        } else {
            bump(rng, &vc->view, "view", "view change", desc);
        }
    } else if (body->kind_case == TWINBFT__BODY__KIND_NEW_VIEW) {
        bump(rng, &body->new_view->view, "view", "new view", desc);
    } else {
        twinbft__body__free_unpacked(body, NULL);
        return NULL;
    }
    resign r;
    resign_begin(b, s, body, &r);
    uint8_t *out = pack_any(&m->base, out_len);
    resign_end(&r);
    swap_undo(&sw);
    twinbft__body__free_unpacked(body, NULL);
    return out;
}

static uint8_t *mutate_reply(sim_rng *rng, Twinbft__Message *m, size_t *out_len, char *desc) {
    Twinbft__Reply *rp = m->reply;
    if (sim_rng_chance(rng, 500)) {
        uint64_t old = rp->seq;
        bump(rng, &rp->seq, "seq", "reply", desc);
        uint8_t *out = pack_any(&m->base, out_len);
        rp->seq = old;
        return out;
    }
    Twinbft__ResultLeaf *leaf = twinbft__result_leaf__unpack(NULL, rp->leaf.len, rp->leaf.data);
    if (leaf == NULL) {
        return NULL;
    }
    uint8_t res[8] = {0};
    size_t n = leaf->result.len < sizeof res ? leaf->result.len : sizeof res;
    if (n > 0) {
        memcpy(res, leaf->result.data, n);
    }
    res[0] ^= (uint8_t)(1 + sim_rng_below(rng, 255));
    ProtobufCBinaryData saved = leaf->result;
    leaf->result = (ProtobufCBinaryData){sizeof res, res};
    size_t leaf_len = 0;
    uint8_t *new_leaf = pack_any(&leaf->base, &leaf_len);
    leaf->result = saved;
    snprintf(desc, SIM_BYZ_DESC_BYTES, "reply to %s for %" PRIu64 " with a wrong result",
             leaf->client, leaf->number);
    twinbft__result_leaf__free_unpacked(leaf, NULL);
    ProtobufCBinaryData saved_leaf = rp->leaf;
    rp->leaf = (ProtobufCBinaryData){leaf_len, new_leaf};
    uint8_t *out = pack_any(&m->base, out_len);
    rp->leaf = saved_leaf;
    free(new_leaf);
    return out;
}

/* A relay with one request forged: another operation, or the next
 * number. The primary must not order it on this replica's word alone. */
static uint8_t *mutate_relay(sim_rng *rng, Twinbft__Message *m, size_t *out_len, char *desc) {
    Twinbft__Relay *rl = m->relay;
    if (rl->n_requests == 0) {
        return NULL;
    }
    Twinbft__Request *r = rl->requests[sim_rng_below(rng, (uint32_t)rl->n_requests)];
    ProtobufCBinaryData saved = r->op;
    uint64_t number = r->number;
    uint8_t op[64] = {0};
    if (sim_rng_chance(rng, 500) || r->op.len == 0) {
        r->number++;
        snprintf(desc, SIM_BYZ_DESC_BYTES, "relays %s's request %" PRIu64 " under number %" PRIu64,
                 r->client, number, r->number);
    } else {
        size_t n = r->op.len < sizeof op ? r->op.len : sizeof op;
        memcpy(op, r->op.data, n);
        op[0] ^= (uint8_t)(1 + sim_rng_below(rng, 255));
        r->op = (ProtobufCBinaryData){n, op};
        snprintf(desc, SIM_BYZ_DESC_BYTES, "relays %s's request %" PRIu64 " with a forged op",
                 r->client, number);
    }
    uint8_t *out = pack_any(&m->base, out_len);
    r->op = saved;
    r->number = number;
    return out;
}

/* A manifest with one chunk hash changed (only f+1 agreeing lists are
 * believed), or with its certified part changed (the proof exposes it). */
static uint8_t *corrupt_manifest(sim_rng *rng, Twinbft__Message *m, size_t *out_len, char *desc) {
    Twinbft__Manifest *mf = m->fetch_reply->manifest;
    uint8_t *out = NULL;
    if (mf->n_chunk_hashes > 0 && sim_rng_chance(rng, 600)) {
        size_t i = (size_t)sim_rng_below(rng, mf->n_chunk_hashes);
        ProtobufCBinaryData saved = mf->chunk_hashes[i];
        uint8_t h[PROTO_DIGEST_BYTES];
        memcpy(h, saved.data, saved.len < sizeof h ? saved.len : sizeof h);
        h[sim_rng_below(rng, sizeof h)] ^= (uint8_t)(1 + sim_rng_below(rng, 255));
        mf->chunk_hashes[i] = (ProtobufCBinaryData){sizeof h, h};
        out = pack_any(&m->base, out_len);
        mf->chunk_hashes[i] = saved;
        snprintf(desc, SIM_BYZ_DESC_BYTES,
                 "manifest of checkpoint %" PRIu64 " with the hash of chunk %zu changed", mf->seq,
                 i);
        return out;
    }
    uint64_t saved_ts = mf->last_timestamp_ms;
    mf->last_timestamp_ms += 1 + sim_rng_below(rng, 1000);
    out = pack_any(&m->base, out_len);
    mf->last_timestamp_ms = saved_ts;
    snprintf(desc, SIM_BYZ_DESC_BYTES, "manifest of checkpoint %" PRIu64 " with a later time",
             mf->seq);
    return out;
}

static uint8_t *mutate_fetch_reply(sim_byz *b, sim_rng *rng, Twinbft__Message *m, size_t *out_len,
                                   char *desc) {
    Twinbft__FetchReply *fr = m->fetch_reply;
    if (sim_rng_chance(rng, 333) && b->n_fetches > 0) {
        size_t i = (size_t)sim_rng_below(rng, b->n_fetches);
        Twinbft__Message *old = proto_message_unpack(b->fetches[i], b->fetch_len[i]);
        if (old != NULL && old->kind_case == TWINBFT__MESSAGE__KIND_FETCH_REPLY &&
            old->fetch_reply->checkpoint_seq != fr->checkpoint_seq) {
            /* The older manifest and proof, presented as the current checkpoint. */
            Twinbft__FetchReply *of = old->fetch_reply;
            uint64_t saved_seq = of->checkpoint_seq;
            of->checkpoint_seq = fr->checkpoint_seq;
            uint8_t *out = pack_any(&old->base, out_len);
            of->checkpoint_seq = saved_seq;
            snprintf(desc, SIM_BYZ_DESC_BYTES,
                     "fetch reply at checkpoint %" PRIu64
                     " with the manifest of checkpoint %" PRIu64,
                     fr->checkpoint_seq, saved_seq);
            twinbft__message__free_unpacked(old, NULL);
            return out;
        }
        if (old != NULL) {
            twinbft__message__free_unpacked(old, NULL);
        }
    }
    if (fr->manifest == NULL) {
        return NULL;
    }
    return corrupt_manifest(rng, m, out_len, desc);
}

/* A chunk with one byte changed, or of another index: a peer serving
 * garbage, which the asker must drop on arrival. */
static uint8_t *mutate_chunk(sim_rng *rng, Twinbft__Message *m, size_t *out_len, char *desc) {
    Twinbft__Chunk *c = m->chunk;
    if (c->data.len == 0) {
        return NULL;
    }
    uint8_t *data = malloc(c->data.len);
    TB_ASSERT(data != NULL);
    memcpy(data, c->data.data, c->data.len);
    size_t at = (size_t)sim_rng_below(rng, c->data.len);
    data[at] ^= (uint8_t)(1 + sim_rng_below(rng, 255));
    ProtobufCBinaryData saved = c->data;
    c->data = (ProtobufCBinaryData){saved.len, data};
    uint8_t *out = pack_any(&m->base, out_len);
    c->data = saved;
    free(data);
    snprintf(desc, SIM_BYZ_DESC_BYTES,
             "chunk %" PRIu32 " of checkpoint %" PRIu64 " with byte %zu changed", c->index, c->seq,
             at);
    return out;
}

static uint8_t *mutate(sim_byz *b, sim_rng *rng, Twinbft__Message *m, size_t *out_len, char *desc) {
    switch (m->kind_case) {
    case TWINBFT__MESSAGE__KIND_PRE_PREPARE:
        return mutate_signed(b, rng, m, m->pre_prepare->pre_prepare, out_len, desc);
    case TWINBFT__MESSAGE__KIND_PREPARE:
        return mutate_signed(b, rng, m, m->prepare, out_len, desc);
    case TWINBFT__MESSAGE__KIND_COMMIT:
        return mutate_signed(b, rng, m, m->commit, out_len, desc);
    case TWINBFT__MESSAGE__KIND_CHECKPOINT:
        return mutate_signed(b, rng, m, m->checkpoint, out_len, desc);
    case TWINBFT__MESSAGE__KIND_VIEW_CHANGE:
        return mutate_signed(b, rng, m, m->view_change, out_len, desc);
    case TWINBFT__MESSAGE__KIND_NEW_VIEW:
        return mutate_signed(b, rng, m, m->new_view, out_len, desc);
    case TWINBFT__MESSAGE__KIND_REPLY:
        return mutate_reply(rng, m, out_len, desc);
    case TWINBFT__MESSAGE__KIND_FETCH_REPLY:
        return mutate_fetch_reply(b, rng, m, out_len, desc);
    case TWINBFT__MESSAGE__KIND_CHUNK:
        return mutate_chunk(rng, m, out_len, desc);
    case TWINBFT__MESSAGE__KIND_RELAY:
        return mutate_relay(rng, m, out_len, desc);
    default:
        return NULL;
    }
}

static uint64_t random_subset(sim_rng *rng, uint32_t k) {
    uint64_t all = k >= 64 ? UINT64_MAX : ((uint64_t)1 << k) - 1;
    uint64_t mask = sim_rng_next(rng) & all;
    return mask != 0 ? mask : all;
}

static const char *kind_name(Twinbft__Message__KindCase k) {
    switch (k) {
    case TWINBFT__MESSAGE__KIND_PRE_PREPARE:
        return "pre-prepare";
    case TWINBFT__MESSAGE__KIND_PREPARE:
        return "prepare";
    case TWINBFT__MESSAGE__KIND_COMMIT:
        return "commit";
    case TWINBFT__MESSAGE__KIND_CHECKPOINT:
        return "checkpoint";
    case TWINBFT__MESSAGE__KIND_VIEW_CHANGE:
        return "view change";
    case TWINBFT__MESSAGE__KIND_NEW_VIEW:
        return "new view";
    case TWINBFT__MESSAGE__KIND_REPLY:
        return "reply";
    case TWINBFT__MESSAGE__KIND_FETCH:
        return "fetch";
    case TWINBFT__MESSAGE__KIND_FETCH_REPLY:
        return "fetch reply";
    case TWINBFT__MESSAGE__KIND_CHUNK_FETCH:
        return "chunk fetch";
    case TWINBFT__MESSAGE__KIND_CHUNK:
        return "chunk";
    case TWINBFT__MESSAGE__KIND_RELAY:
        return "relay";
    default:
        return "message";
    }
}

void sim_byz_plan_msg(sim_byz *b, sim_rng *rng, const uint8_t *data, size_t len, uint32_t k,
                      sim_byz_plan *plan) {
    TB_ASSERT(k >= 1 && k <= 64);
    memset(plan, 0, sizeof *plan);
    Twinbft__Message *m = proto_message_unpack(data, len);
    if (m == NULL) {
        return;
    }
    /* Fetch replies and chunks are where state transfer can be fooled:
     * misbehave on them more often than on the steady stream of votes. */
    bool xfer = m->kind_case == TWINBFT__MESSAGE__KIND_FETCH_REPLY ||
                m->kind_case == TWINBFT__MESSAGE__KIND_CHUNK;
    uint32_t rate = xfer ? 700 : b->rate_permille;
    if (sim_rng_chance(rng, rate)) {
        if (sim_rng_chance(rng, 250)) {
            plan->omit_mask = random_subset(rng, k);
            b->omitted++;
            snprintf(plan->desc, sizeof plan->desc, "withholds a %s", kind_name(m->kind_case));
        } else {
            plan->mutated = mutate(b, rng, m, &plan->mutated_len, plan->desc);
            if (plan->mutated != NULL) {
                plan->mutate_mask = random_subset(rng, k);
                b->mutated++;
            } else {
                plan->desc[0] = '\0';
            }
        }
    }
    observe(b, m, data, len);
    twinbft__message__free_unpacked(m, NULL);
}
