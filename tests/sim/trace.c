/* The run's trace: with --verbose every event is printed on one line and
 * folded into a SHA-256 over a canonical serialisation (time, kind,
 * endpoints, generation, SHA-256 of the message bytes), printed at the end
 * as trace=<hex>; equal seeds must give equal hashes. --narrate prints only
 * what a person wants to follow (say()). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "proto/hex.h"
#include "proto/tb_assert.h"
#include "tests/sim/world.h"

void trace_begin(sim_world *w) {
    w->trace = NULL;
    if (w->opt.verbose) {
        w->trace = proto_hash_begin();
        TB_ASSERT(w->trace != NULL);
    }
}

void trace_end(sim_world *w, uint8_t out[PROTO_DIGEST_BYTES]) {
    memset(out, 0, PROTO_DIGEST_BYTES);
    if (w->trace != NULL) {
        proto_hash_final(w->trace, out);
        w->trace = NULL;
    }
}

static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* The Message field a packed message starts with names its kind (every
 * kind is a field below 16, so its tag is one byte). */
static const char *msg_kind(const uint8_t *data, size_t len) {
    static const char *names[] = {"?",      "request",    "pre-prepare", "prepare",
                                  "commit", "checkpoint", "view-change", "new-view",
                                  "reply",  "fetch",      "fetch-reply"};
    unsigned field = len > 0 ? data[0] >> 3 : 0;
    return field < sizeof names / sizeof names[0] ? names[field] : "?";
}

static const char *ev_name(sim_ev_kind k) {
    switch (k) {
    case SIM_EV_DELIVER:
        return "deliver";
    case SIM_EV_TICK:
        return "tick";
    case SIM_EV_PERIODIC:
        return "periodic";
    case SIM_EV_CLIENT_TIMER:
        return "client-timer";
    case SIM_EV_CLIENT_ISSUE:
        return "client-issue";
    case SIM_EV_FAULT:
        return "fault";
    case SIM_EV_PARTITION_END:
        return "partition-end";
    case SIM_EV_RESTART:
        return "restart";
    case SIM_EV_HEAL:
        return "heal";
    case SIM_EV_DEADLINE:
        return "deadline";
    case SIM_EV_TWINS:
        return "twins-split";
    case SIM_EV_SKEW:
        return "skew";
    case SIM_EV_CLOCK_BACK:
        return "clock-back";
    }
    return "?";
}

static void endpoint(const sim_world *w, uint32_t ep, char *out, size_t cap) {
    if (ep < w->n) {
        snprintf(out, cap, "r%u", ep);
    } else if (ep < w->n_ep) {
        snprintf(out, cap, "%s", w->clients[ep - w->n].name);
    } else {
        snprintf(out, cap, "?");
    }
}

/* Why a delivery will be lost, or "". */
static const char *lost(const sim_world *w, const sim_event *ev) {
    if (sim_net_is_cut(&w->net, ev->a, ev->b)) {
        return " (link cut: lost)";
    }
    if (ev->b < w->n) {
        const sim_replica *r = &w->replicas[ev->b];
        for (uint32_t i = 0; i < r->n_inst; i++) {
            if (r->inst[i].up) {
                return "";
            }
        }
        return " (replica down: lost)";
    }
    return "";
}

void trace_event(sim_world *w, const sim_event *ev) {
    if (w->trace == NULL) {
        return;
    }
    uint8_t rec[8 + 1 + 4 + 4 + 8 + PROTO_DIGEST_BYTES];
    memset(rec, 0, sizeof rec);
    put_u64(rec, ev->time_us - SIM_T0_US);
    rec[8] = (uint8_t)ev->kind;
    put_u64(rec + 9, (uint64_t)ev->a | (uint64_t)ev->b << 32);
    put_u64(rec + 17, ev->gen);
    if (ev->data != NULL) {
        proto_sha256(ev->data, ev->len, rec + 25);
    }
    proto_hash_update(w->trace, rec, sizeof rec);
    double t = (double)(ev->time_us - SIM_T0_US) / 1000.0;
    if (ev->kind == SIM_EV_DELIVER) {
        char from[16], to[16], d[17];
        endpoint(w, ev->a, from, sizeof from);
        endpoint(w, ev->b, to, sizeof to);
        proto_hex(rec + 25, 8, d);
        fprintf(w->opt.out, "t=%.3f deliver %s->%s %s %zuB %s%s\n", t, from, to,
                msg_kind(ev->data, ev->len), ev->len, d, lost(w, ev));
    } else if (ev->kind != SIM_EV_PERIODIC && ev->kind != SIM_EV_TICK &&
               ev->kind != SIM_EV_CLIENT_TIMER) {
        fprintf(w->opt.out, "t=%.3f %s a=%u b=%u gen=%" PRIu64 "\n", t, ev_name(ev->kind), ev->a,
                ev->b, ev->gen);
    }
}

void say(sim_world *w, const char *fmt, ...) {
    if (!w->opt.narrate && !w->opt.verbose) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    fprintf(w->opt.out, "%s[%8.3f s] ", w->opt.narrate ? "" : "# ",
            (double)(w->now_us - SIM_T0_US) / 1e6);
    vfprintf(w->opt.out, fmt, ap);
    fputc('\n', w->opt.out);
    va_end(ap);
}
