/* The safety invariants, checked incrementally as the world reports what
 * correct replicas and clients did (the caller never reports Byzantine
 * replicas, twins included):
 *   agreement   no two correct replicas execute different batches at one
 *               seq, and the application digest after each seq is the same;
 *   validity    every executed request was issued by that client with that
 *               number and op, and so was every request a correct primary
 *               proposed; a request executes at one seq only; a replica
 *               executes seqs in increasing order, each at most once;
 *   checkpoint  stable checkpoint digests agree per seq;
 *   reply       every result a client accepted is what correct replicas
 *               executed for that request, at that seq.
 * The first violation is kept; the caller stops the run when one is set. */
#ifndef SIM_CHECK_H
#define SIM_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consensus/pbft.h"

typedef struct sim_check_seq {
    uint8_t has_batch, has_app, has_stable;
    uint32_t batch_by, app_by, stable_by;
    uint8_t batch[PROTO_DIGEST_BYTES];
    uint8_t app[PROTO_DIGEST_BYTES];
    uint8_t stable[PROTO_DIGEST_BYTES];
} sim_check_seq;

typedef struct sim_check_req {
    bool issued;
    uint8_t op[PROTO_DIGEST_BYTES]; /* SHA-256 of the op the client sent */
    size_t op_len;
    uint64_t exec_seq; /* 0: not executed by a correct replica yet */
    uint32_t exec_by;
    uint8_t result[PROTO_DIGEST_BYTES]; /* SHA-256 of the result */
    size_t result_len;
    bool accepted;
    uint64_t accepted_seq;
    uint8_t accepted_result[PROTO_DIGEST_BYTES]; /* SHA-256 */
    size_t accepted_len;
} sim_check_req;

typedef struct sim_violation {
    bool set;
    const char *what; /* agreement, validity, checkpoint, reply */
    uint64_t seq;
    uint32_t replica_a, replica_b; /* UINT32_MAX: none */
    char detail[256];
} sim_violation;

/* A PRE-PREPARE or PREPARE a correct replica signed (see sim_check_vote). */
typedef struct sim_vote {
    bool used;
    uint8_t kind; /* 1 pre-prepare, 2 prepare */
    uint32_t replica;
    uint64_t view, seq;
    uint8_t digest[PROTO_DIGEST_BYTES];
} sim_vote;

typedef struct sim_check {
    uint32_t n_replicas, n_clients, n_requests;
    sim_vote *votes; /* open addressing, by (replica, kind, view, seq) */
    size_t cap_votes, n_votes;
    sim_check_seq *seqs; /* indexed by seq */
    size_t cap_seqs;
    sim_check_req *reqs; /* [client][number], numbers 1..n_requests */
    uint64_t *last_exec; /* [replica] highest seq executed (or transferred) */
    uint64_t max_exec;   /* highest seq any correct replica executed */
    uint64_t max_stable;
    sim_violation v;
} sim_check;

void sim_check_init(sim_check *ck, uint32_t n_replicas, uint32_t n_clients, uint32_t n_requests);
void sim_check_free(sim_check *ck);

/* Client index of a name "c<i>", or -1. */
int sim_client_index(const char *name, uint32_t n_clients);

void sim_check_issued(sim_check *ck, uint32_t client, uint64_t number, const uint8_t *op,
                      size_t len);
/* The application of correct replica r executed one batch (from app.c's
 * observer); digest is the state after it, or NULL for a batch replayed
 * from the history (its state was already committed before a crash). */
void sim_check_app_execute(sim_check *ck, uint32_t r, uint64_t seq, const pbft_request *reqs,
                           size_t n, const pbft_result *results,
                           const uint8_t digest[PROTO_DIGEST_BYTES]);
/* ready.executed of correct replica r. True when r is the first to report seq. */
bool sim_check_executed(sim_check *ck, uint32_t r, const pbft_executed *e);
/* A message correct replica r sends (packed Message): a PRE-PREPARE or
 * PREPARE must never name another digest than one r signed before for the
 * same view and seq -- not even across a crash (early votes, pbft.h). */
void sim_check_sent(sim_check *ck, uint32_t r, const uint8_t *data, size_t len);
/* Replica r crashed before the commit of what it had executed past
 * durable_seq: those executions are undone (nothing of them went out), and
 * it will execute them again, which must then agree with what it did. */
void sim_check_undo(sim_check *ck, uint32_t r, uint64_t durable_seq);
/* ready.stable of correct replica r. True when r is the first to report seq. */
bool sim_check_stable(sim_check *ck, uint32_t r, uint64_t seq,
                      const uint8_t digest[PROTO_DIGEST_BYTES]);
/* Correct replica r replaced its state by a snapshot at seq; app_digest is
 * its application digest right after. */
void sim_check_transferred(sim_check *ck, uint32_t r, uint64_t seq,
                           const uint8_t app_digest[PROTO_DIGEST_BYTES]);
/* Records a violation found by the world itself (e.g. a correct replica
 * that cannot restart from its own durable state). Keeps the first one. */
void sim_check_violate(sim_check *ck, const char *what, uint64_t seq, uint32_t a, uint32_t b,
                       const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* A client accepted (seq, result) for its request `number`; result_hash
 * is the SHA-256 of the result bytes, len their length. */
void sim_check_accepted(sim_check *ck, uint32_t client, uint64_t number, uint64_t seq,
                        const uint8_t result_hash[PROTO_DIGEST_BYTES], size_t len);

#endif
