/* The simulator's application backed by the real orchestration state
 * machine (statemachine/, through its pbft adapter).
 *
 * Each replica instance has an LMDB store in a directory of its own. What
 * the store has committed is the instance's durable application state: the
 * simulator commits when it persists a ready (together with the node's
 * records), and the adapter also commits at checkpoints and restores (see
 * statemachine/sm_adapter.h). A crash aborts the open transaction and
 * closes the store; a restart reopens it. Stores run without fsync: the
 * simulated crash is a process crash, which LMDB survives without it. */
#ifndef SIM_APP_SM_H
#define SIM_APP_SM_H

#include <stdbool.h>
#include <stdint.h>

#include "consensus/pbft.h"
#include "statemachine/sm.h"
#include "statemachine/sm_adapter.h"
#include "tests/sim/app.h"

typedef struct sim_smapp {
    sm_store *store;
    sm_adapter *adapter;
    uint32_t replica, instance;
    sim_app_observer observer;
    sm_request reqs[PBFT_BATCH_REQUESTS_MAX];
    sm_reply reps[PBFT_BATCH_REQUESTS_MAX];
} sim_smapp;

/* Opens the store in dir (which exists). fresh: start from the empty state,
 * deleting what an earlier run left there. admin: the bootstrap admin. */
int sim_smapp_init(sim_smapp *a, const char *dir, bool fresh, const char *admin, uint32_t replica,
                   uint32_t instance, const sim_app_observer *observer);
/* A crash: the open transaction is lost. */
void sim_smapp_free(sim_smapp *a);
pbft_app sim_smapp_callbacks(sim_smapp *a);
/* The durable commit of a ready. */
void sim_smapp_persist(sim_smapp *a);

/* Removes a store directory and its files (world teardown). */
void sim_smapp_remove_dir(const char *dir);

#endif
