/* Binary min-heap keyed by (time, insertion counter). */
#include "tests/sim/eventq.h"

#include <stdlib.h>

#include "proto/tb_assert.h"

static bool before(const sim_event *x, const sim_event *y) {
    if (x->time_us != y->time_us) {
        return x->time_us < y->time_us;
    }
    return x->order < y->order;
}

void sim_eventq_init(sim_eventq *q) {
    q->heap = NULL;
    q->n = q->cap = 0;
    q->pushed = 0;
}

void sim_eventq_free(sim_eventq *q) {
    for (size_t i = 0; i < q->n; i++) {
        free(q->heap[i].data);
    }
    free(q->heap);
    sim_eventq_init(q);
}

void sim_eventq_push(sim_eventq *q, const sim_event *ev) {
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 256;
        sim_event *h = realloc(q->heap, cap * sizeof *h);
        TB_ASSERT(h != NULL);
        q->heap = h;
        q->cap = cap;
    }
    sim_event e = *ev;
    e.order = q->pushed++;
    size_t i = q->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&e, &q->heap[parent])) {
            break;
        }
        q->heap[i] = q->heap[parent];
        i = parent;
    }
    q->heap[i] = e;
}

bool sim_eventq_pop(sim_eventq *q, sim_event *out) {
    if (q->n == 0) {
        return false;
    }
    *out = q->heap[0];
    sim_event last = q->heap[--q->n];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= q->n) {
            break;
        }
        if (child + 1 < q->n && before(&q->heap[child + 1], &q->heap[child])) {
            child++;
        }
        if (!before(&q->heap[child], &last)) {
            break;
        }
        q->heap[i] = q->heap[child];
        i = child;
    }
    if (q->n > 0) {
        q->heap[i] = last;
    }
    return true;
}
