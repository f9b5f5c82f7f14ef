/* twinbft-sim: one seeded run of a whole cluster in one process.
 *
 * R replicas run the real consensus core (built with the planted bugs
 * available) on a simulated clock, network and durable storage; C clients
 * issue requests; up to B replicas are Byzantine (Twins-style duplicated
 * identity or message mutation). One PRNG seeded with the seed drives every
 * choice, so a seed replays exactly. Faults run from the start until the
 * heal time T_fault (3-8 s of simulated time, drawn per seed); after it the
 * network is healthy, crashed replicas are back, and only the Byzantine
 * replicas still misbehave, so every client must finish all its requests
 * by T_fault + SIM_LIVENESS_BOUND_MS or the run is "stuck". */
#ifndef SIM_SIM_H
#define SIM_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/crypto.h"

enum {
    SIM_LIVENESS_BOUND_MS = 60000,
    /* Once faults stop, no request may wait longer than this (from its
     * sending or the heal) while a later request of another client
     * executes: room for the request timer (twice the request timeout) and
     * a few view changes to a correct primary. A primary that orders
     * everyone but one client may stay within the overall bound when the
     * others soon finish; this catches it. */
    SIM_STARVE_MS = 8000,
    SIM_STARVE_CALM_MS = 4000,        /* the same for a run without faults */
    SIM_EVENTS_MAX = 5000000,         /* per seed; more is reported as stuck */
    SIM_EVENTS_PENDING_MAX = 1000000, /* scheduled but not yet run */
    SIM_CLIENTS_MAX = 64,
    SIM_REQUESTS_MAX = 100000,
};

enum sim_fault {
    SIM_FAULT_DROP = 1u << 0,
    SIM_FAULT_DELAY = 1u << 1,
    SIM_FAULT_DUP = 1u << 2,
    SIM_FAULT_REORDER = 1u << 3,
    SIM_FAULT_PARTITION = 1u << 4,
    SIM_FAULT_CRASH = 1u << 5,
    SIM_FAULT_SKEW = 1u << 6,
    SIM_FAULT_ALL = (1u << 7) - 1,
};

/* "drop,delay,..." / "all" / "none" to a mask; -1 names an unknown fault. */
int sim_faults_parse(const char *list, uint32_t *mask);
/* The canonical list for a mask ("all", "none" or comma-separated names). */
void sim_faults_format(uint32_t mask, char *out, size_t cap);
/* A planted bug's pbft_bug flag by its CLI name; 0 when unknown. */
uint32_t sim_bug_parse(const char *name);

typedef struct sim_options {
    uint64_t seed;
    uint32_t replicas;
    uint32_t byzantine;
    uint32_t clients;
    uint32_t requests; /* per client */
    uint32_t faults;   /* enum sim_fault */
    uint32_t bugs;     /* enum pbft_bug */
    bool ed25519;
    bool counter_app; /* the sixteen-counter app instead of the state machine */
    bool verbose;     /* per-event trace and the trace hash */
    bool narrate;     /* the important things, for people */
    bool censor_only; /* Byzantine replicas only censor client 0; replica 0 is one */
    FILE *out;
} sim_options;

typedef struct sim_result {
    bool violation;
    bool stuck;
    char what[640]; /* "violation=agreement seq=17 replicas=1,2: ..." or "stuck: ..." */
    uint8_t trace[PROTO_DIGEST_BYTES];
    uint64_t events;
    uint64_t sim_ms;
    uint64_t completed; /* client requests completed */
    uint64_t max_view;
    uint64_t max_seq;
} sim_result;

/* Runs one seed. Returns 0 (the outcome is in *res) or a negative tb_err
 * when the world could not be set up. */
int sim_run(const sim_options *opt, sim_result *res);

#endif
