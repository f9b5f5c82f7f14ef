/* A replica's simulated durable storage: the records the core asked to
 * persist, keyed by (kind, seq or client name), and the application image
 * committed with them. It is all that survives a crash. */
#ifndef SIM_STORE_H
#define SIM_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "consensus/pbft.h"
#include "tests/sim/app.h"

typedef struct sim_store_rec {
    pbft_record_kind kind;
    uint64_t seq;
    char *client; /* CLIENT records only */
    uint8_t *data;
    size_t len;
} sim_store_rec;

typedef struct sim_store {
    sim_store_rec *recs; /* sorted by key */
    size_t n, cap;
    sim_app_image app;
    uint64_t commits;
} sim_store;

void sim_store_init(sim_store *s);
void sim_store_free(sim_store *s);
/* Applies one record of a ready (put, del, or CLIENTS_CLEAR). */
void sim_store_apply(sim_store *s, const pbft_record *r);
/* The retained log (PBFT_REC_LOG records): drops entries below horizon,
 * like a replica's retention; read is pbft_log.read (ctx: the store). */
void sim_store_log_prune(sim_store *s, uint64_t horizon);
int sim_store_log_read(void *ctx, uint64_t seq, uint8_t **data, size_t *len);

#endif
