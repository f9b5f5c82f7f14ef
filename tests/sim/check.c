/* Incremental invariant checks (see check.h). */
#include "tests/sim/check.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"
#include "proto/hex.h"
#include "proto/tb_assert.h"

enum { NONE = UINT32_MAX };

void sim_check_init(sim_check *ck, uint32_t n_replicas, uint32_t n_clients, uint32_t n_requests) {
    memset(ck, 0, sizeof *ck);
    ck->n_replicas = n_replicas;
    ck->n_clients = n_clients;
    ck->n_requests = n_requests;
    ck->reqs = calloc((size_t)n_clients * (n_requests + 1), sizeof *ck->reqs);
    ck->last_exec = calloc(n_replicas, sizeof *ck->last_exec);
    TB_ASSERT(ck->reqs != NULL && ck->last_exec != NULL);
}

void sim_check_free(sim_check *ck) {
    free(ck->votes);
    free(ck->seqs);
    free(ck->reqs);
    free(ck->last_exec);
    memset(ck, 0, sizeof *ck);
}

int sim_client_index(const char *name, uint32_t n_clients) {
    /* "c0", "c1", ...: no sign, no leading zero, below n_clients. */
    if (name == NULL || name[0] != 'c' || name[1] == '\0' || (name[1] == '0' && name[2] != '\0')) {
        return -1;
    }
    uint64_t i = 0;
    for (const char *p = name + 1; *p; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }
        i = i * 10 + (uint64_t)(*p - '0');
        if (i >= n_clients) {
            return -1;
        }
    }
    return (int)i;
}

void sim_check_violate(sim_check *ck, const char *what, uint64_t seq, uint32_t a, uint32_t b,
                       const char *fmt, ...) {
    if (ck->v.set) {
        return;
    }
    ck->v.set = true;
    ck->v.what = what;
    ck->v.seq = seq;
    ck->v.replica_a = a;
    ck->v.replica_b = b;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ck->v.detail, sizeof ck->v.detail, fmt, ap);
    va_end(ap);
}

static sim_check_seq *seq_at(sim_check *ck, uint64_t seq) {
    if (seq >= ck->cap_seqs) {
        size_t cap = ck->cap_seqs ? ck->cap_seqs : 256;
        while (cap <= seq) {
            cap *= 2;
        }
        sim_check_seq *p = realloc(ck->seqs, cap * sizeof *p);
        TB_ASSERT(p != NULL);
        memset(p + ck->cap_seqs, 0, (cap - ck->cap_seqs) * sizeof *p);
        ck->seqs = p;
        ck->cap_seqs = cap;
    }
    return &ck->seqs[seq];
}

static sim_check_req *req_at(sim_check *ck, uint32_t client, uint64_t number) {
    TB_ASSERT(client < ck->n_clients && number >= 1 && number <= ck->n_requests);
    return &ck->reqs[(size_t)client * (ck->n_requests + 1) + number];
}

static void short_hex(const uint8_t d[PROTO_DIGEST_BYTES], char out[17]) {
    proto_hex(d, 8, out);
}

void sim_check_issued(sim_check *ck, uint32_t client, uint64_t number, const uint8_t *op,
                      size_t len) {
    sim_check_req *q = req_at(ck, client, number);
    q->issued = true;
    proto_sha256(op, len, q->op);
    q->op_len = len;
}

/* Compares one digest kind at seq with what the first reporter recorded. */
static bool digest_agree(sim_check *ck, const char *what, const char *name, uint64_t seq,
                         uint8_t *has, uint32_t *by, uint8_t *stored, uint32_t r,
                         const uint8_t digest[PROTO_DIGEST_BYTES]) {
    if (!*has) {
        *has = 1;
        *by = r;
        memcpy(stored, digest, PROTO_DIGEST_BYTES);
        return true;
    }
    if (memcmp(stored, digest, PROTO_DIGEST_BYTES) != 0) {
        char x[17], y[17];
        short_hex(stored, x);
        short_hex(digest, y);
        sim_check_violate(ck, what, seq, *by, r,
                          "%s digest at seq %" PRIu64 ": replica %u has %s..., "
                          "replica %u has %s...",
                          name, seq, *by, x, r, y);
    }
    return false;
}

/* The client's record of (client, number) when it issued exactly that op;
 * otherwise a validity violation of `what` (executed, proposed) is set. */
static sim_check_req *issued_as(sim_check *ck, uint32_t r, uint64_t seq, const char *what,
                                const char *client, uint64_t number, const uint8_t *op,
                                size_t op_len) {
    int c = client ? sim_client_index(client, ck->n_clients) : -1;
    if (c < 0 || number == 0 || number > ck->n_requests ||
        !req_at(ck, (uint32_t)c, number)->issued) {
        sim_check_violate(ck, "validity", seq, r, NONE,
                          "replica %u %s request (%s, %" PRIu64 ") that no client issued", r, what,
                          client ? client : "?", number);
        return NULL;
    }
    sim_check_req *e = req_at(ck, (uint32_t)c, number);
    uint8_t op_hash[PROTO_DIGEST_BYTES];
    proto_sha256(op, op_len, op_hash);
    if (op_len != e->op_len || memcmp(op_hash, e->op, sizeof op_hash) != 0) {
        sim_check_violate(ck, "validity", seq, r, NONE,
                          "replica %u %s request (%s, %" PRIu64
                          ") with an op the client never sent",
                          r, what, client, number);
        return NULL;
    }
    return e;
}

static void check_request(sim_check *ck, uint32_t r, uint64_t seq, const pbft_request *q,
                          const pbft_result *res) {
    sim_check_req *e = issued_as(ck, r, seq, "executed", q->client, q->number, q->op, q->op_len);
    if (e == NULL) {
        return;
    }
    uint8_t res_hash[PROTO_DIGEST_BYTES];
    proto_sha256(res->result, res->result_len, res_hash);
    if (e->exec_seq == 0) {
        e->exec_seq = seq;
        e->exec_by = r;
        memcpy(e->result, res_hash, sizeof res_hash);
        e->result_len = res->result_len;
    } else if (e->exec_seq != seq) {
        sim_check_violate(ck, "validity", seq, e->exec_by, r,
                          "request (%s, %" PRIu64 ") executed twice: at seq %" PRIu64
                          " by replica %u and "
                          "at seq %" PRIu64 " by replica %u",
                          q->client, q->number, e->exec_seq, e->exec_by, seq, r);
        return;
    } else if (e->result_len != res->result_len ||
               memcmp(e->result, res_hash, sizeof res_hash) != 0) {
        sim_check_violate(ck, "agreement", seq, e->exec_by, r,
                          "request (%s, %" PRIu64 ") at seq %" PRIu64 " gave different results",
                          q->client, q->number, seq);
        return;
    }
    if (e->accepted && (e->accepted_seq != e->exec_seq || e->accepted_len != e->result_len ||
                        memcmp(e->accepted_result, e->result, sizeof e->result) != 0)) {
        sim_check_violate(ck, "reply", seq, r, NONE,
                          "client %s accepted a result for %" PRIu64 " at seq %" PRIu64
                          " that differs from what replica %u executed at seq %" PRIu64,
                          q->client, q->number, e->accepted_seq, r, e->exec_seq);
    }
}

void sim_check_app_execute(sim_check *ck, uint32_t r, uint64_t seq, const pbft_request *reqs,
                           size_t n, const pbft_result *results,
                           const uint8_t digest[PROTO_DIGEST_BYTES]) {
    TB_ASSERT(r < ck->n_replicas);
    if (seq <= ck->last_exec[r]) {
        sim_check_violate(ck, "validity", seq, r, NONE,
                          "replica %u executed seq %" PRIu64 " after it had reached seq %" PRIu64,
                          r, seq, ck->last_exec[r]);
        return;
    }
    ck->last_exec[r] = seq;
    if (seq > ck->max_exec) {
        ck->max_exec = seq;
    }
    for (size_t i = 0; i < n && !ck->v.set; i++) {
        check_request(ck, r, seq, &reqs[i], &results[i]);
    }
    if (digest != NULL) {
        sim_check_seq *s = seq_at(ck, seq);
        digest_agree(ck, "agreement", "state", seq, &s->has_app, &s->app_by, s->app, r, digest);
    }
}

/* ---- votes: no correct replica signs two digests for one (view, seq) ---- */

static size_t vote_slot(const sim_check *ck, const sim_vote *v) {
    uint64_t h = v->seq * 0x9e3779b97f4a7c15ull ^ v->view * 0xc2b2ae3d27d4eb4full ^
                 ((uint64_t)v->replica << 8 | v->kind) * 0x165667b19e3779f9ull;
    size_t i = (size_t)(h ^ h >> 29) & (ck->cap_votes - 1);
    while (ck->votes[i].used &&
           !(ck->votes[i].kind == v->kind && ck->votes[i].replica == v->replica &&
             ck->votes[i].view == v->view && ck->votes[i].seq == v->seq)) {
        i = (i + 1) & (ck->cap_votes - 1);
    }
    return i;
}

static void votes_grow(sim_check *ck) {
    sim_vote *old = ck->votes;
    size_t old_cap = ck->cap_votes;
    ck->cap_votes = old_cap ? old_cap * 2 : 1024;
    ck->votes = calloc(ck->cap_votes, sizeof *ck->votes);
    TB_ASSERT(ck->votes != NULL);
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].used) {
            ck->votes[vote_slot(ck, &old[i])] = old[i];
        }
    }
    free(old);
}

static void check_vote(sim_check *ck, const sim_vote *v) {
    if (2 * (ck->n_votes + 1) > ck->cap_votes) {
        votes_grow(ck);
    }
    sim_vote *e = &ck->votes[vote_slot(ck, v)];
    if (!e->used) {
        *e = *v;
        ck->n_votes++;
        return;
    }
    if (memcmp(e->digest, v->digest, PROTO_DIGEST_BYTES) != 0) {
        char a[17], b[17];
        short_hex(e->digest, a);
        short_hex(v->digest, b);
        sim_check_violate(ck, "equivocation", v->seq, v->replica, NONE,
                          "correct replica %u signed %s for view %" PRIu64 " seq %" PRIu64
                          " with digest %s and again with %s",
                          v->replica, v->kind == 1 ? "a PRE-PREPARE" : "a PREPARE", v->view, v->seq,
                          a, b);
    }
}

void sim_check_sent(sim_check *ck, uint32_t r, const uint8_t *data, size_t len) {
    uint32_t kind = proto_message_kind_peek(data, len);
    if (kind != TWINBFT__MESSAGE__KIND_PRE_PREPARE && kind != TWINBFT__MESSAGE__KIND_PREPARE) {
        return;
    }
    Twinbft__Message *m = proto_message_unpack(data, len);
    TB_ASSERT(m != NULL); /* a correct replica's own message */
    const Twinbft__Signed *s = m->kind_case == TWINBFT__MESSAGE__KIND_PRE_PREPARE
                                   ? (m->pre_prepare ? m->pre_prepare->pre_prepare : NULL)
                                   : m->prepare;
    Twinbft__Body *b = s ? twinbft__body__unpack(NULL, s->body.len, s->body.data) : NULL;
    TB_ASSERT(b != NULL);
    sim_vote v = {.used = true, .replica = r};
    const ProtobufCBinaryData *d = NULL;
    if (b->kind_case == TWINBFT__BODY__KIND_PRE_PREPARE) {
        v.kind = 1, v.view = b->pre_prepare->view, v.seq = b->pre_prepare->seq;
        d = &b->pre_prepare->digest;
    } else if (b->kind_case == TWINBFT__BODY__KIND_PREPARE) {
        v.kind = 2, v.view = b->prepare->view, v.seq = b->prepare->seq;
        d = &b->prepare->digest;
    }
    TB_ASSERT(d != NULL && d->len == PROTO_DIGEST_BYTES);
    memcpy(v.digest, d->data, PROTO_DIGEST_BYTES);
    if (v.kind == 1 && m->pre_prepare->batch.len > 0) {
        /* A correct primary proposes only what clients sent: what it got on
         * their channels, or on the word of f+1 replicas (relay.c). */
        Twinbft__Batch *batch =
            twinbft__batch__unpack(NULL, m->pre_prepare->batch.len, m->pre_prepare->batch.data);
        TB_ASSERT(batch != NULL);
        for (size_t i = 0; i < batch->n_requests && !ck->v.set; i++) {
            const Twinbft__Request *q = batch->requests[i];
            (void)issued_as(ck, r, v.seq, "proposed", q->client, q->number, q->op.data, q->op.len);
        }
        twinbft__batch__free_unpacked(batch, NULL);
    }
    twinbft__body__free_unpacked(b, NULL);
    twinbft__message__free_unpacked(m, NULL);
    check_vote(ck, &v);
}

void sim_check_undo(sim_check *ck, uint32_t r, uint64_t durable_seq) {
    TB_ASSERT(r < ck->n_replicas);
    if (durable_seq < ck->last_exec[r]) {
        ck->last_exec[r] = durable_seq;
    }
}

bool sim_check_executed(sim_check *ck, uint32_t r, const pbft_executed *e) {
    sim_check_seq *s = seq_at(ck, e->seq);
    return digest_agree(ck, "agreement", "batch", e->seq, &s->has_batch, &s->batch_by, s->batch, r,
                        e->digest);
}

bool sim_check_stable(sim_check *ck, uint32_t r, uint64_t seq,
                      const uint8_t digest[PROTO_DIGEST_BYTES]) {
    sim_check_seq *s = seq_at(ck, seq);
    if (seq > ck->max_stable) {
        ck->max_stable = seq;
    }
    return digest_agree(ck, "checkpoint", "stable checkpoint", seq, &s->has_stable, &s->stable_by,
                        s->stable, r, digest);
}

void sim_check_transferred(sim_check *ck, uint32_t r, uint64_t seq,
                           const uint8_t app_digest[PROTO_DIGEST_BYTES]) {
    if (seq < ck->last_exec[r]) {
        sim_check_violate(ck, "validity", seq, r, NONE,
                          "replica %u went back from seq %" PRIu64 " to a snapshot at seq %" PRIu64,
                          r, ck->last_exec[r], seq);
        return;
    }
    ck->last_exec[r] = seq;
    sim_check_seq *s = seq_at(ck, seq);
    digest_agree(ck, "agreement", "state (after state transfer)", seq, &s->has_app, &s->app_by,
                 s->app, r, app_digest);
}

void sim_check_accepted(sim_check *ck, uint32_t client, uint64_t number, uint64_t seq,
                        const uint8_t result_hash[PROTO_DIGEST_BYTES], size_t len) {
    sim_check_req *e = req_at(ck, client, number);
    e->accepted = true;
    e->accepted_seq = seq;
    memcpy(e->accepted_result, result_hash, PROTO_DIGEST_BYTES);
    e->accepted_len = len;
    if (e->exec_seq != 0 && (e->exec_seq != seq || e->result_len != len ||
                             memcmp(e->result, result_hash, PROTO_DIGEST_BYTES) != 0)) {
        sim_check_violate(ck, "reply", seq, e->exec_by, NONE,
                          "client c%u accepted a result for %" PRIu64 " at seq %" PRIu64
                          " that differs from what replica %u executed at seq %" PRIu64,
                          client, number, seq, e->exec_by, e->exec_seq);
    }
}
