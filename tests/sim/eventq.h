/* The simulator's agenda: a binary min-heap of events ordered by
 * (time, insertion counter). The counter breaks ties in the order events
 * were scheduled, so the order of events never depends on the heap's
 * internals or on memory addresses: the same pushes give the same pops. */
#ifndef SIM_EVENTQ_H
#define SIM_EVENTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum sim_ev_kind {
    SIM_EV_DELIVER = 1,   /* a message arrives: from endpoint a to endpoint b */
    SIM_EV_TICK,          /* replica a (instance b) reached its next deadline */
    SIM_EV_PERIODIC,      /* the coarse tick of every live replica */
    SIM_EV_CLIENT_TIMER,  /* client a's retransmission timer (generation gen) */
    SIM_EV_CLIENT_ISSUE,  /* client a issues its next request */
    SIM_EV_FAULT,         /* the fault scheduler picks the next fault */
    SIM_EV_PARTITION_END, /* partition gen is lifted */
    SIM_EV_RESTART,       /* replica a (instance b) restarts */
    SIM_EV_HEAL,          /* the fault phase ends */
    SIM_EV_DEADLINE,      /* the liveness bound */
    SIM_EV_TWINS,         /* the twins' split of their peers changes */
    SIM_EV_SKEW,          /* replica a's clock offset drifts */
    SIM_EV_CLOCK_BACK,    /* replica a's stepped wall clock is set right */
} sim_ev_kind;

typedef struct sim_event {
    uint64_t time_us;
    uint64_t order; /* set by push */
    sim_ev_kind kind;
    uint32_t a, b;
    uint64_t gen;
    uint8_t *data; /* owned by the event (DELIVER: the packed Message) */
    size_t len;
} sim_event;

typedef struct sim_eventq {
    sim_event *heap;
    size_t n, cap;
    uint64_t pushed;
} sim_eventq;

void sim_eventq_init(sim_eventq *q);
/* Frees the queue and the data of every event still in it. */
void sim_eventq_free(sim_eventq *q);
/* Takes ownership of ev->data. */
void sim_eventq_push(sim_eventq *q, const sim_event *ev);
/* The earliest event, which the caller then owns; false when empty. */
bool sim_eventq_pop(sim_eventq *q, sim_event *out);

#endif
