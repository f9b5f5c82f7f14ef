/* Blocking wrappers: each starts its asynchronous call and runs the client's
 * event_base one round at a time until that call has reported. A waiter
 * lives on the wrapper's stack, so the call must never outlive it: a
 * wrapper is refused inside this client's callbacks (the base is running
 * already and event_base_loop would fail), and a failed loop cancels the
 * call before returning. */
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"

typedef struct tb_waiter {
    bool done;
    int status;
    tb_owned *out;
    tb_replica_status *st;
} tb_waiter;

/* Runs the base until *done; false when the loop failed first (e.g. it was
 * entered from a callback of the same base) or had nothing left to run. */
static bool tb_run_until(tb_client *c, const bool *done) {
    while (!*done) {
        if (event_base_loop(c->base, EVLOOP_ONCE) != 0) {
            return false;
        }
    }
    return true;
}

/* A wrapper may start only outside this client's callbacks. */
static int tb_wait_begin(const tb_client *c, tb_waiter *w, tb_owned *out, tb_replica_status *st) {
    if (c->in_callback > 0) {
        return TB_ERR_STATE;
    }
    memset(w, 0, sizeof *w);
    w->out = out;
    w->st = st;
    if (out != NULL) {
        memset(out, 0, sizeof *out);
    }
    return 0;
}

/* Finishes a wrapper whose call `started` returned: runs the base until the
 * call reports, or cancels it when the loop fails. */
static int tb_wait_end(tb_client *c, tb_waiter *w, int started, void (*cancel)(tb_client *)) {
    if (started != 0) {
        return started;
    }
    if (!tb_run_until(c, &w->done)) {
        cancel(c); /* the callback, with its pointer to *w, must never run */
        return TB_ERR_IO;
    }
    return w->status;
}

void tb_owned_clear(tb_owned *o) {
    if (o == NULL) {
        return;
    }
    free(o->data);
    free(o->leaf);
    free(o->cert);
    memset(o, 0, sizeof *o);
}

static int tb_dup(const uint8_t *src, size_t len, uint8_t **out, size_t *out_len) {
    *out = malloc(len > 0 ? len : 1);
    if (*out == NULL) {
        return TB_ERR_NOMEM;
    }
    if (len > 0) {
        memcpy(*out, src, len);
    }
    *out_len = len;
    return 0;
}

static void tb_wait_on_submit(int status, const tb_result *r, void *arg) {
    tb_waiter *w = arg;
    w->done = true;
    w->status = status;
    if (status != 0) {
        return;
    }
    tb_owned *o = w->out;
    o->seq = r->seq;
    o->index = r->index;
    o->ordered = true;
    int rc = tb_dup(r->result, r->result_len, &o->data, &o->data_len);
    if (rc == 0) {
        rc = tb_dup(r->leaf, r->leaf_len, &o->leaf, &o->leaf_len);
    }
    if (rc == 0 && r->cert != NULL) {
        rc = tb_dup(r->cert, r->cert_len, &o->cert, &o->cert_len);
    }
    if (rc != 0) {
        tb_owned_clear(o);
        w->status = rc;
    }
}

int tb_client_submit_wait(tb_client *c, const uint8_t *op, size_t len, tb_owned *out) {
    tb_waiter w;
    int rc = tb_wait_begin(c, &w, out, NULL);
    if (rc != 0) {
        return rc;
    }
    return tb_wait_end(c, &w, tb_client_submit(c, op, len, tb_wait_on_submit, &w), tb_op_clear);
}

static void tb_wait_on_query(int status, const uint8_t *result, size_t len, uint64_t executed,
                             bool ordered, void *arg) {
    tb_waiter *w = arg;
    w->done = true;
    w->status = status;
    if (status != 0) {
        return;
    }
    w->out->seq = executed;
    w->out->ordered = ordered;
    w->status = tb_dup(result, len, &w->out->data, &w->out->data_len);
}

int tb_client_query_wait(tb_client *c, const uint8_t *query, size_t len, tb_owned *out) {
    tb_waiter w;
    int rc = tb_wait_begin(c, &w, out, NULL);
    if (rc != 0) {
        return rc;
    }
    return tb_wait_end(c, &w, tb_client_query(c, query, len, tb_wait_on_query, &w), tb_op_clear);
}

static void tb_wait_on_status(int status, const tb_replica_status *st, uint32_t n, void *arg) {
    tb_waiter *w = arg;
    w->done = true;
    w->status = status;
    memcpy(w->st, st, n * sizeof st[0]);
}

int tb_client_status_wait(tb_client *c, tb_replica_status *st) {
    tb_waiter w;
    int rc = tb_wait_begin(c, &w, NULL, st);
    if (rc != 0) {
        return rc;
    }
    return tb_wait_end(c, &w, tb_client_status(c, tb_wait_on_status, &w), tb_status_cancel);
}

static void tb_wait_on_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    *(bool *)arg = true;
}

int tb_client_connect_wait(tb_client *c, uint32_t timeout_ms) {
    bool expired = false, failed = false;
    if (c->in_callback > 0) {
        return TB_ERR_STATE;
    }
    struct event *timer = evtimer_new(c->base, tb_wait_on_timer, &expired);
    if (timer == NULL) {
        return TB_ERR_NOMEM;
    }
    struct timeval limit = tb_ms_timeval(timeout_ms);
    event_add(timer, &limit);
    while (tb_client_connected(c) == 0 && !expired && !failed) {
        failed = event_base_loop(c->base, EVLOOP_ONCE) != 0;
    }
    event_free(timer); /* the timer pointed into this frame: it goes with it */
    if (tb_client_connected(c) > 0) {
        return 0;
    }
    return failed ? TB_ERR_IO : TB_ERR_TIMEOUT;
}
