/* The simulator's replicated application: sixteen counters.
 *
 * An op is 10 bytes: a kind ('i' = increment, 'p' = put), a key (0..15) and
 * a little-endian u64 argument; its result is the key's new value (8 bytes,
 * little-endian). The digest is SHA-256 over the serialised state (the
 * entries in key order plus the number of ops applied), so any difference in
 * what was executed shows. Checkpoints keep serialised copies by seq.
 *
 * Durability: the live image (state and kept checkpoints) is what execute
 * changes; sim.c copies it to the replica's durable image in the same step
 * as the node's records, and a restarted replica's app starts from that
 * durable image and nothing else. */
#ifndef SIM_APP_H
#define SIM_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consensus/pbft.h"

enum {
    SIM_APP_KEYS = 16,
    SIM_APP_OP_BYTES = 10,
    SIM_APP_RESULT_BYTES = 8,
    SIM_APP_STATE_BYTES = 8 + 8 + 8 * SIM_APP_KEYS,
};

typedef struct sim_app_state {
    uint64_t applied;
    uint64_t v[SIM_APP_KEYS];
} sim_app_state;

typedef struct sim_app_ckpt {
    uint64_t seq;
    sim_app_state state;
} sim_app_ckpt;

/* What survives a crash, or what is live in memory. */
typedef struct sim_app_image {
    sim_app_state state;
    sim_app_ckpt *ckpts; /* sorted by seq */
    size_t n_ckpts, cap_ckpts;
} sim_app_image;

void sim_app_image_init(sim_app_image *im);
void sim_app_image_free(sim_app_image *im);
void sim_app_image_copy(sim_app_image *dst, const sim_app_image *src);

/* Told about every execute (the requests, their results and the state
 * digest after the batch, NULL when replayed) and every successful restore (the digest of the
 * installed state). */
typedef struct sim_app_observer {
    void *ctx;
    void (*executed)(void *ctx, uint32_t replica, uint32_t instance, uint64_t seq,
                     const pbft_request *reqs, size_t n, const pbft_result *results,
                     const uint8_t digest[PROTO_DIGEST_BYTES]);
    void (*restored)(void *ctx, uint32_t replica, uint32_t instance, uint64_t seq,
                     const uint8_t digest[PROTO_DIGEST_BYTES]);
} sim_app_observer;

typedef struct sim_app {
    sim_app_image live;
    bool dirty; /* live changed since the last sim_app_persist */
    uint32_t replica, instance;
    sim_app_observer observer;
    uint8_t (*results)[SIM_APP_RESULT_BYTES];
    size_t cap_results;
} sim_app;

/* Starts from `durable` (copied) or from the empty state when NULL. */
void sim_app_init(sim_app *app, const sim_app_image *durable, uint32_t replica, uint32_t instance,
                  const sim_app_observer *observer);
void sim_app_free(sim_app *app);
/* The pbft_app callbacks on this app. */
pbft_app sim_app_callbacks(sim_app *app);
/* Copies the live image to `durable` if it changed. */
void sim_app_persist(sim_app *app, sim_app_image *durable);
void sim_app_digest_of(const sim_app_state *s, uint8_t out[PROTO_DIGEST_BYTES]);

/* Ops and results. */
void sim_app_op_encode(uint8_t kind, uint8_t key, uint64_t arg, uint8_t op[SIM_APP_OP_BYTES]);
/* The counter app's safety lane (what its replicas put first): puts to key 0. */
bool sim_app_op_is_priority(const uint8_t *op, size_t len);
bool sim_app_result_decode(const uint8_t *r, size_t len, uint64_t *value);

#endif
