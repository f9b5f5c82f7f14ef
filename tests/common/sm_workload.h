/* A generator of random state-machine operations for tests and the
 * simulator: every kind of op, with ids drawn from small pools so that ops
 * meet (a twin is created, placed, actuated, retired...). Deterministic:
 * the same seed and pools give the same ops. */
#ifndef TB_SM_WORKLOAD_H
#define TB_SM_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "proto/sm.pb-c.h"

typedef struct sm_workload_names {
    const char *const *principals; /* owners of twins */
    size_t n_principals;
    const char *const *grantees; /* principals whose roles may change */
    size_t n_grantees;
    const char *const *twins;
    size_t n_twins;
    const char *const *nodes;
    size_t n_nodes;
    const char *const *sites;
    size_t n_sites;
    const char *const *comps;
    size_t n_comps;
    const char *const *keys;
    size_t n_keys;
    const char *const *props;
    size_t n_props;
    const char *const *values;
    size_t n_values;
    const char *agent; /* node agents' principal */
} sm_workload_names;

/* The default pools (principals admin, op, alice, bob, agent-1, nobody). */
extern const sm_workload_names sm_workload_default_names;

typedef struct sm_workload {
    uint64_t x; /* xorshift64 state, never 0 */
    const sm_workload_names *names;
} sm_workload;

enum { SM_WORKLOAD_SCRATCH_BYTES = 4096, SM_WORKLOAD_OP_BYTES_MAX = 1024 };

uint64_t sm_workload_next(sm_workload *r);
/* Fills op (pointing into scratch, SM_WORKLOAD_SCRATCH_BYTES) with one random op. */
void sm_workload_op(sm_workload *r, Twinbft__SmOp *op, void *scratch);
/* One random op, packed into out (SM_WORKLOAD_OP_BYTES_MAX); returns its length. */
size_t sm_workload_packed(sm_workload *r, uint8_t *out);

#endif
