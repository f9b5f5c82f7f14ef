/* Incremental invariant checks (see check.h). */
#include "tests/sim/check.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void check_request(sim_check *ck, uint32_t r, uint64_t seq, const pbft_request *q,
                          const pbft_result *res) {
    int c = sim_client_index(q->client, ck->n_clients);
    if (c < 0 || q->number == 0 || q->number > ck->n_requests ||
        !req_at(ck, (uint32_t)c, q->number)->issued) {
        sim_check_violate(ck, "validity", seq, r, NONE,
                          "replica %u executed request (%s, %" PRIu64 ") that no client issued", r,
                          q->client ? q->client : "?", q->number);
        return;
    }
    sim_check_req *e = req_at(ck, (uint32_t)c, q->number);
    uint8_t op_hash[PROTO_DIGEST_BYTES], res_hash[PROTO_DIGEST_BYTES];
    proto_sha256(q->op, q->op_len, op_hash);
    proto_sha256(res->result, res->result_len, res_hash);
    if (q->op_len != e->op_len || memcmp(op_hash, e->op, sizeof op_hash) != 0) {
        sim_check_violate(ck, "validity", seq, r, NONE,
                          "replica %u executed request (%s, %" PRIu64
                          ") with an op the client never sent",
                          r, q->client, q->number);
        return;
    }
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
    sim_check_seq *s = seq_at(ck, seq);
    digest_agree(ck, "agreement", "state", seq, &s->has_app, &s->app_by, s->app, r, digest);
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
