/* Status: every replica's own account of itself, for operators. Nothing
 * here is agreed on; each entry is what replica j said over its own link. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/internal.h"
#include "proto/tb_assert.h"

void tb_status_cancel(tb_client *c) {
    tb_status_call *s = &c->status;
    event_del(s->deadline);
    free(s->msg);
    s->msg = NULL;
    s->msg_len = 0;
    s->busy = false;
    s->cb = NULL;
    s->arg = NULL;
}

static uint64_t tb_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void tb_status_finish(tb_client *c) {
    tb_status_call *s = &c->status;
    tb_replica_status st[TB_MEMBERS_MAX];
    tb_status_cb cb = s->cb;
    void *arg = s->arg;
    memcpy(st, s->st, sizeof st);
    tb_status_cancel(c);
    c->in_callback++;
    cb(0, st, c->cfg.n, arg);
    c->in_callback--;
}

static void tb_status_on_deadline(evutil_socket_t fd, short what, void *arg) {
    tb_client *c = arg;
    (void)fd, (void)what;
    if (c->status.busy) {
        tb_status_finish(c);
    }
}

int tb_status_init(tb_client *c) {
    c->status.deadline = evtimer_new(c->base, tb_status_on_deadline, c);
    return c->status.deadline != NULL ? 0 : TB_ERR_NOMEM;
}

void tb_status_free(tb_client *c) {
    if (c->status.deadline != NULL) {
        event_free(c->status.deadline);
    }
    free(c->status.msg);
    memset(&c->status, 0, sizeof c->status);
}

static void tb_copy_digest(uint8_t out[TB_DIGEST_BYTES], const ProtobufCBinaryData *d) {
    memset(out, 0, TB_DIGEST_BYTES);
    if (d->len > 0) {
        memcpy(out, d->data, d->len < TB_DIGEST_BYTES ? d->len : TB_DIGEST_BYTES);
    }
}

void tb_status_on_reply(tb_client *c, uint32_t j, const Twinbft__StatusReply *r) {
    tb_status_call *s = &c->status;
    TB_ASSERT(s->busy);
    if (r->replica != j || r->id != s->id || s->st[j].answered) {
        return; /* foreign, stale, or a repeat */
    }
    tb_replica_status *e = &s->st[j];
    e->answered = true;
    e->id = j;
    e->epoch = r->epoch;
    e->view = r->view;
    e->primary = r->primary;
    e->in_view_change = r->in_view_change;
    e->executed = r->executed;
    e->stable_seq = r->stable_seq;
    for (size_t i = 0; i < r->n_peers && i < TB_MEMBERS_MAX; i++) {
        if (r->peers[i] < c->cfg.n && (e->peers_mask & (1ull << r->peers[i])) == 0) {
            e->peers_mask |= 1ull << r->peers[i];
            e->peers++;
        }
    }
    tb_copy_digest(e->state_digest, &r->state_digest);
    e->state_digest_seq = r->state_digest_seq;
    tb_copy_digest(e->app_digest, &r->app_digest);
    e->view_changes = r->view_changes;
    e->dropped = r->dropped;
    e->diverged_seq = r->diverged_seq;
    e->db_map_bytes = r->db_map_bytes;
    e->db_used_bytes = r->db_used_bytes;
    e->history_events = r->history_events;
    e->client_table = r->client_table;
    e->history_window = r->history_window;
    e->disk_full = r->disk_full;
    e->clients = r->clients;
    if (++s->answered == c->cfg.n) {
        tb_status_finish(c);
        return;
    }
    /* A quorum is in: give the rest a short grace, not the whole timeout. */
    uint64_t now = tb_mono_ms();
    if (s->answered == (c->cfg.n + c->cfg.f + 2) / 2 &&
        now + TB_CLIENT_STATUS_GRACE_MS < s->deadline_ms) {
        s->deadline_ms = now + TB_CLIENT_STATUS_GRACE_MS;
        struct timeval grace = tb_ms_timeval(TB_CLIENT_STATUS_GRACE_MS);
        event_add(s->deadline, &grace);
    }
}

void tb_status_on_open(tb_client *c, uint32_t j) {
    if (!c->status.st[j].answered && c->status.msg != NULL) {
        tb_link_send(c, j, c->status.msg, c->status.msg_len);
    }
}

int tb_client_status(tb_client *c, tb_status_cb cb, void *arg) {
    tb_status_call *s = &c->status;
    if (s->busy) {
        return TB_ERR_STATE;
    }
    if (cb == NULL) {
        return TB_ERR_INVALID;
    }
    Twinbft__StatusRequest r = TWINBFT__STATUS_REQUEST__INIT;
    r.id = c->next_id++;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_STATUS_REQUEST;
    m.status_request = &r;
    int rc = tb_msg_pack(&m, &s->msg, &s->msg_len);
    if (rc != 0) {
        return rc;
    }
    memset(s->st, 0, sizeof s->st);
    s->answered = 0;
    s->id = r.id;
    s->cb = cb;
    s->arg = arg;
    s->busy = true;
    struct timeval limit = tb_ms_timeval(c->cfg.timeout_ms);
    event_add(s->deadline, &limit);
    s->deadline_ms = tb_mono_ms() + c->cfg.timeout_ms;
    tb_link_send_all(c, s->msg, s->msg_len);
    return 0;
}
