/* libtwinbft: the client object, its links to every replica, and the
 * dispatch of what comes back over them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "proto/frame.h"
#include "proto/tb_assert.h"

uint32_t tb_quorum(const tb_client *c) {
    return (c->cfg.n + c->cfg.f + 2) / 2;
}

struct timeval tb_ms_timeval(uint32_t ms) {
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

void tb_link_send(tb_client *c, uint32_t j, const uint8_t *msg, size_t len) {
    TB_ASSERT(j < c->cfg.n);
    if (c->links[j] != NULL && tb_tls_link_is_open(c->links[j])) {
        (void)tb_tls_send(c->links[j], msg, len); /* retransmission or reopen covers losses */
    }
}

void tb_link_send_all(tb_client *c, const uint8_t *msg, size_t len) {
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        tb_link_send(c, j, msg, len);
    }
}

int tb_msg_pack(const Twinbft__Message *m, uint8_t **out, size_t *out_len) {
    return proto_message_pack(m, out, out_len);
}

static int tb_link_index(const tb_client *c, const tb_tls_link *link) {
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        if (c->links[j] == link) {
            return (int)j;
        }
    }
    return -1;
}

/* Everything counts only from replica j's own link; each handler also checks
 * that the message says it is from j. */
static void tb_client_dispatch(tb_client *c, uint32_t j, Twinbft__Message *m) {
    switch (m->kind_case) {
    case TWINBFT__MESSAGE__KIND_REPLY:
        /* Before the cluster is confirmed no Request went out: no reply can be an answer. */
        if (c->op.ordering && c->confirm.state == TB_CONFIRM_OK && m->reply != NULL) {
            tb_op_on_reply(c, j, m);
        }
        break;
    case TWINBFT__MESSAGE__KIND_QUERY_REPLY:
        if (c->op.kind == TB_OP_QUERY && !c->op.ordering && c->confirm.state == TB_CONFIRM_OK &&
            m->query_reply != NULL) {
            tb_query_on_answer(c, j, m);
        }
        break;
    case TWINBFT__MESSAGE__KIND_STATUS_REPLY:
        if (m->status_reply != NULL && !tb_confirm_on_reply(c, j, m->status_reply) &&
            c->status.busy) {
            tb_status_on_reply(c, j, m->status_reply);
        }
        break;
    case TWINBFT__MESSAGE__KIND_PUSH:
        if (c->sub.active && m->push != NULL) {
            tb_sub_on_push(c, j, m);
        }
        break;
    case TWINBFT__MESSAGE__KIND_SUBSCRIBE_ACK:
        if (c->sub.active && m->subscribe_ack != NULL) {
            tb_sub_on_ack(c, j, m->subscribe_ack);
        }
        break;
    default:
        break; /* nothing else is for a client */
    }
}

static void tb_client_on_frame(tb_tls_link *link, const char *peer, const uint8_t *data, size_t len,
                               void *arg) {
    tb_client *c = arg;
    (void)peer;
    int j = tb_link_index(c, link);
    if (j < 0) {
        return;
    }
    Twinbft__Message *m = proto_message_unpack(data, len);
    if (m == NULL) {
        return; /* malformed: dropped */
    }
    tb_client_dispatch(c, (uint32_t)j, m);
    twinbft__message__free_unpacked(m, NULL);
}

/* A replica that just (re)connected is asked which cluster it serves (until
 * that is settled), gets what is outstanding (once it is), and the
 * subscription restarts its stream there. */
static void tb_client_on_open(tb_tls_link *link, const char *peer, void *arg) {
    tb_client *c = arg;
    (void)peer;
    int j = tb_link_index(c, link);
    if (j < 0) {
        return;
    }
    tb_confirm_on_open(c, (uint32_t)j);
    tb_op_send_to(c, (uint32_t)j);
    if (c->status.busy) {
        tb_status_on_open(c, (uint32_t)j);
    }
    if (c->sub.active) {
        tb_sub_on_open(c, (uint32_t)j);
    }
}

static void tb_client_on_retransmit(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    tb_op_send_all(arg);
}

static void tb_client_on_deadline(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    tb_op_on_deadline(arg);
}

static void tb_client_on_query_wait(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    tb_query_on_wait(arg);
}

static int tb_client_check_config(const tb_client_config *cfg) {
    if (cfg->n == 0 || cfg->n > TB_MEMBERS_MAX || 3 * cfg->f + 1 > cfg->n ||
        cfg->cluster_id_len > TB_CLUSTER_ID_BYTES_MAX || cfg->first_number == 0 ||
        cfg->ca_path == NULL || cfg->cert_path == NULL || cfg->key_path == NULL) {
        return TB_ERR_INVALID;
    }
    for (uint32_t j = 0; j < cfg->n; j++) {
        if (memchr(cfg->members[j].host, '\0', TB_HOST_BYTES) == NULL ||
            cfg->members[j].port == 0) {
            return TB_ERR_INVALID;
        }
    }
    return 0;
}

static int tb_client_connect_all(tb_client *c) {
    tb_tls_callbacks cb = {tb_client_on_open, tb_client_on_frame, NULL, c};
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        char want[32];
        snprintf(want, sizeof want, "replica-%u", (unsigned)j);
        int rc = proto_pubkey_from_raw(c->cfg.members[j].pubkey, &c->trust.keys[j]);
        /* The replica we dial must hold the key its certificates are
         * checked with, not merely a CA-issued certificate with its name. */
        rc = rc ? rc : tb_tls_ctx_pin(c->tls, want, c->cfg.members[j].pubkey);
        if (rc == 0) {
            rc = tb_tls_connect(c->base, c->tls, c->cfg.members[j].host, c->cfg.members[j].port,
                                want, &cb, &c->links[j]);
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int tb_client_events(tb_client *c) {
    c->retransmit = event_new(c->base, -1, EV_PERSIST, tb_client_on_retransmit, c);
    c->deadline = evtimer_new(c->base, tb_client_on_deadline, c);
    c->query_wait = evtimer_new(c->base, tb_client_on_query_wait, c);
    if (c->retransmit == NULL || c->deadline == NULL || c->query_wait == NULL) {
        return TB_ERR_NOMEM;
    }
    int rc = tb_status_init(c);
    return rc != 0 ? rc : tb_confirm_init(c);
}

int tb_client_new(struct event_base *base, const tb_client_config *cfg, tb_client **out) {
    tb_client *c = NULL;
    int rc = TB_ERR_INVALID;
    if (out == NULL) {
        return TB_ERR_INVALID;
    }
    *out = NULL;
    if (base == NULL || cfg == NULL || tb_client_check_config(cfg) != 0) {
        return TB_ERR_INVALID;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        return TB_ERR_NOMEM;
    }
    c->base = base;
    c->cfg = *cfg;
    c->cfg.ca_path = c->cfg.cert_path = c->cfg.key_path = NULL; /* not kept past this call */
    if (c->cfg.timeout_ms == 0) {
        c->cfg.timeout_ms = TB_CLIENT_TIMEOUT_MS_DEFAULT;
    }
    c->number = cfg->first_number;
    c->next_id = 1;
    memcpy(c->trust.cluster_id, cfg->cluster_id, cfg->cluster_id_len);
    c->trust.cluster_id_len = cfg->cluster_id_len;
    c->trust.epoch = cfg->epoch;
    c->trust.n = cfg->n;
    c->trust.f = cfg->f;
    rc = tb_client_events(c);
    if (rc == 0) {
        rc = tb_tls_ctx_load(cfg->ca_path, cfg->cert_path, cfg->key_path, &c->tls);
    }
    if (rc == 0) {
        tb_tls_ctx_set_log(c->tls, cfg->log, cfg->log_arg);
        rc = tb_client_connect_all(c);
    }
    if (rc != 0) {
        tb_client_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void tb_client_free(tb_client *c) {
    if (c == NULL) {
        return;
    }
    tb_op_clear(c);
    tb_confirm_free(c);
    tb_status_free(c);
    tb_sub_free(c);
    for (uint32_t j = 0; j < TB_MEMBERS_MAX; j++) {
        tb_tls_link_free(c->links[j]);
        proto_pubkey_free(c->trust.keys[j]);
    }
    if (c->retransmit != NULL) {
        event_free(c->retransmit);
    }
    if (c->deadline != NULL) {
        event_free(c->deadline);
    }
    if (c->query_wait != NULL) {
        event_free(c->query_wait);
    }
    tb_tls_ctx_free(c->tls);
    free(c);
}

const char *tb_client_name(const tb_client *c) {
    return tb_tls_ctx_name(c->tls);
}

uint64_t tb_client_next_number(const tb_client *c) {
    return c->number;
}

uint32_t tb_client_connected(const tb_client *c) {
    uint32_t open = 0;
    for (uint32_t j = 0; j < c->cfg.n; j++) {
        open += c->links[j] != NULL && tb_tls_link_is_open(c->links[j]);
    }
    return open;
}
