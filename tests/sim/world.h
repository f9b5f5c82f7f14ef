/* The simulated world, shared by the files of tests/sim that act on it:
 *   sim.c     set-up, the run loop, driving replicas (ready → storage, network)
 *   client.c  clients: requests, retransmission, accepting f+1 matching replies
 *   faults.c  the fault schedule: partitions, crashes, clock skew, twins' splits
 *   trace.c   the event trace hash, --verbose lines and --narrate lines */
#ifndef SIM_WORLD_H
#define SIM_WORLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consensus/pbft.h"
#include "tests/sim/app.h"
#include "tests/sim/app_sm.h"
#include "tests/common/sm_workload.h"
#include "tests/sim/byz.h"
#include "tests/sim/check.h"
#include "tests/sim/crypto.h"
#include "tests/sim/eventq.h"
#include "tests/sim/net.h"
#include "tests/sim/rng.h"
#include "tests/sim/sim.h"
#include "tests/sim/store.h"

/* Simulated time starts here so that replica clocks with a negative offset
 * stay positive. */
#define SIM_T0_US ((uint64_t)1000 * 1000 * 1000)
#define SIM_PERIODIC_US ((uint64_t)50 * 1000)
#define SIM_CLIENT_TIMEOUT_US ((uint64_t)800 * 1000)
/* Core timing in the simulated world (milliseconds of replica clock). */
enum {
    SIM_CHECKPOINT_INTERVAL = 4,
    SIM_LOG_WINDOW = 8,
    SIM_BATCH_DELAY_MS = 2,
    SIM_REQUEST_TIMEOUT_MS = 500,
    SIM_VIEW_TIMEOUT_MS = 1000,
    SIM_CLOCK_SKEW_MS = 200,
    SIM_REPLIES_KEPT = 4, /* distinct replies a client keeps per replica */
};

typedef enum sim_style { SIM_CORRECT = 0, SIM_TWINS, SIM_MUTATE } sim_style;

/* One running core: a replica, or one of a pair of twins. */
typedef struct sim_instance {
    uint32_t id, inst;
    bool up;
    pbft_node *node;
    sim_app app;     /* the counter app (--app counter) */
    sim_smapp smapp; /* the state machine (default) */
    char dir[320];   /* the state machine's store directory */
    sim_store store;
    uint64_t tick_at;  /* scheduled deadline tick (sim us), UINT64_MAX: none */
    uint64_t tick_gen; /* generation of that event; older ones are stale */
    uint64_t last_tick_local_ms;
    uint64_t view; /* last seen, for narration */
    bool in_vc;
    uint64_t executed;
    uint64_t crashes;
} sim_instance;

typedef struct sim_replica {
    uint32_t id;
    sim_style style;
    sim_instance inst[2]; /* [1] only for twins */
    uint32_t n_inst;
    sim_byz byz;           /* SIM_MUTATE */
    int64_t offset_us;     /* clock skew: wall clock = sim time + offset + step */
    bool censor;           /* Byzantine: never takes client 0's requests (so never orders them) */
    int64_t step_us;       /* a wall clock stepped far off (faults.c), 0 when none */
    uint64_t mono_base_us; /* timer clock = sim time + base: not the wall clock */
    uint8_t *twin_side;    /* SIM_TWINS: [n_ep] bit 0 = twin A hears/talks to it, bit 1 = twin B */
} sim_replica;

typedef struct sim_reply_seen {
    uint64_t seq;
    uint8_t leaf[PROTO_DIGEST_BYTES];   /* SHA-256 of the packed leaf */
    uint8_t result[PROTO_DIGEST_BYTES]; /* SHA-256 of the result */
    size_t result_len;
} sim_reply_seen;

typedef struct sim_client {
    uint32_t idx, ep;
    char name[16];
    uint64_t number; /* current request (0 before the first) */
    bool outstanding;
    uint8_t op[SM_WORKLOAD_OP_BYTES_MAX];
    size_t op_len;
    bool priority;
    uint64_t timer_gen;
    uint64_t sent_at_us;
    uint32_t retransmits;
    uint64_t done;
    sim_reply_seen *seen; /* [n_replicas][SIM_REPLIES_KEPT] */
    uint8_t *n_seen;      /* [n_replicas] */
    uint64_t latency_max_us;
} sim_client;

typedef struct sim_world {
    sim_options opt;
    uint32_t n, f, n_ep;
    uint64_t log_retain; /* seqs of retained log below the stable checkpoint (0: none) */
    sim_rng rng;
    /* Crashes between a ready's early messages and its commit: a stream of
     * its own, so that seeds without such a crash keep their schedules. */
    sim_rng commit_crash_rng;
    sim_eventq q;
    sim_net net;
    sim_crypto *crypto;
    sim_check check;
    sim_replica *replicas;
    sim_client *clients;
    /* The state machine's workload: principals are the clients' names. */
    char sm_root[256];
    sm_workload_names names;
    const char **principals, **grantees;
    uint64_t now_us;
    uint64_t heal_us;         /* end of the fault phase */
    uint64_t view_entered_us; /* when a correct replica last entered a view */
    uint64_t deadline_us;     /* liveness bound */
    uint64_t end_us;          /* UINT64_MAX until every client is done */
    bool healed;
    uint32_t n_byz;
    uint32_t crashed_correct;
    uint32_t stepped_correct; /* correct replicas whose wall clock is stepped far off */
    uint64_t clients_done;
    uint64_t events;
    bool stuck;
    char stuck_why[256];
    /* Faults of this seed. */
    uint32_t faults;
    uint64_t fault_gap_us;
    uint64_t think_max_us;
    /* Narration. */
    uint64_t narrated_seq;    /* highest committed seq narrated */
    uint64_t narrated_stable; /* highest stable checkpoint narrated */
    uint64_t max_view;
    /* Trace. */
    void *trace; /* proto_hash *, when verbose */
} sim_world;

/* sim.c */
void world_drive(sim_world *w, sim_replica *r, sim_instance *in);
void world_crash(sim_world *w, sim_replica *r, sim_instance *in);
void world_links_up(sim_world *w, uint32_t id);
void world_restart(sim_world *w, sim_replica *r, sim_instance *in);
/* A replica's two clocks (consensus/pbft.h): the timer clock it ticks its
 * core with, which never steps, and the wall clock it stamps batches with. */
uint64_t world_local_ms(const sim_world *w, const sim_replica *r);
uint64_t world_wall_ms(const sim_world *w, const sim_replica *r);
bool world_is_byzantine(const sim_world *w, uint32_t id);

/* client.c */
void client_init(sim_world *w, sim_client *c, uint32_t idx);
void client_free(sim_client *c);
void client_issue(sim_world *w, sim_client *c);
void client_timer(sim_world *w, sim_client *c, uint64_t gen);
void client_receive(sim_world *w, sim_client *c, uint32_t from, const uint8_t *data, size_t len);

/* faults.c */
void faults_setup(sim_world *w);
void faults_next(sim_world *w);
void faults_partition_end(sim_world *w, uint64_t id);
void faults_heal(sim_world *w);
void faults_twins_split(sim_world *w, sim_replica *r);
void faults_skew(sim_world *w, sim_replica *r);
void faults_clock_back(sim_world *w, sim_replica *r);
/* Whether the instance is to crash now, after sending a ready's early
 * messages and before its commit (the window early votes open,
 * consensus/pbft.h): 0 if not, else for how long it stays down (us). The
 * caller sends, crashes it, then calls faults_restart_later. */
uint64_t faults_commit_crash_due(sim_world *w, const sim_replica *r);
void faults_restart_later(sim_world *w, const sim_replica *r, const sim_instance *in,
                          uint64_t down_us);

/* trace.c */
void trace_begin(sim_world *w);
void trace_event(sim_world *w, const sim_event *ev);
void trace_end(sim_world *w, uint8_t out[PROTO_DIGEST_BYTES]);
void say(sim_world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
