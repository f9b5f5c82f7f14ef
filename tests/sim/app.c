/* Sixteen counters as a deterministic pbft_app (see app.h). */
#include "tests/sim/app.h"

#include <stdlib.h>
#include <string.h>

#include "proto/tb_assert.h"
#include "proto/tb_err.h"

static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

static const uint8_t state_magic[8] = {'s', 'i', 'm', 'a', 'p', 'p', '1', 0};

static void state_encode(const sim_app_state *s, uint8_t out[SIM_APP_STATE_BYTES]) {
    memcpy(out, state_magic, sizeof state_magic);
    put_u64(out + 8, s->applied);
    for (int k = 0; k < SIM_APP_KEYS; k++) {
        put_u64(out + 16 + 8 * k, s->v[k]);
    }
}

static int state_decode(const uint8_t *data, size_t len, sim_app_state *s) {
    if (len != SIM_APP_STATE_BYTES || memcmp(data, state_magic, sizeof state_magic) != 0) {
        return TB_ERR_INVALID;
    }
    s->applied = get_u64(data + 8);
    for (int k = 0; k < SIM_APP_KEYS; k++) {
        s->v[k] = get_u64(data + 16 + 8 * k);
    }
    return 0;
}

void sim_app_digest_of(const sim_app_state *s, uint8_t out[PROTO_DIGEST_BYTES]) {
    uint8_t buf[SIM_APP_STATE_BYTES];
    state_encode(s, buf);
    proto_sha256(buf, sizeof buf, out);
}

void sim_app_op_encode(uint8_t kind, uint8_t key, uint64_t arg, uint8_t op[SIM_APP_OP_BYTES]) {
    op[0] = kind;
    op[1] = key;
    put_u64(op + 2, arg);
}

bool sim_app_result_decode(const uint8_t *r, size_t len, uint64_t *value) {
    if (len != SIM_APP_RESULT_BYTES) {
        return false;
    }
    *value = get_u64(r);
    return true;
}

void sim_app_image_init(sim_app_image *im) {
    memset(im, 0, sizeof *im);
}

void sim_app_image_free(sim_app_image *im) {
    free(im->ckpts);
    sim_app_image_init(im);
}

void sim_app_image_copy(sim_app_image *dst, const sim_app_image *src) {
    dst->state = src->state;
    if (dst->cap_ckpts < src->n_ckpts) {
        sim_app_ckpt *c = realloc(dst->ckpts, src->n_ckpts * sizeof *c);
        TB_ASSERT(c != NULL);
        dst->ckpts = c;
        dst->cap_ckpts = src->n_ckpts;
    }
    if (src->n_ckpts > 0) {
        memcpy(dst->ckpts, src->ckpts, src->n_ckpts * sizeof *src->ckpts);
    }
    dst->n_ckpts = src->n_ckpts;
}

static sim_app_ckpt *ckpt_find(sim_app_image *im, uint64_t seq) {
    for (size_t i = 0; i < im->n_ckpts; i++) {
        if (im->ckpts[i].seq == seq) {
            return &im->ckpts[i];
        }
    }
    return NULL;
}

/* One op on the state; writes the result. Unknown ops change nothing and
 * produce an empty result (clients never send them). */
static size_t apply_op(sim_app_state *s, const uint8_t *op, size_t len,
                       uint8_t out[SIM_APP_RESULT_BYTES]) {
    if (len != SIM_APP_OP_BYTES || op[1] >= SIM_APP_KEYS || (op[0] != 'i' && op[0] != 'p')) {
        return 0;
    }
    uint64_t arg = get_u64(op + 2);
    uint64_t *v = &s->v[op[1]];
    *v = op[0] == 'i' ? *v + arg : arg;
    s->applied++;
    put_u64(out, *v);
    return SIM_APP_RESULT_BYTES;
}

static int app_execute(void *ctx, uint64_t seq, uint64_t time_ms, const pbft_request *reqs,
                       size_t n, pbft_result *results) {
    sim_app *app = ctx;
    (void)time_ms;
    if (n > app->cap_results) {
        void *p = realloc(app->results, n * sizeof *app->results);
        TB_ASSERT(p != NULL);
        app->results = p;
        app->cap_results = n;
    }
    for (size_t i = 0; i < n; i++) {
        size_t rlen = apply_op(&app->live.state, reqs[i].op, reqs[i].op_len, app->results[i]);
        results[i] = (pbft_result){.result = app->results[i], .result_len = rlen, .ttl_ms = 0};
    }
    app->dirty = true;
    if (app->observer.executed != NULL) {
        uint8_t d[PROTO_DIGEST_BYTES];
        sim_app_digest_of(&app->live.state, d);
        app->observer.executed(app->observer.ctx, app->replica, app->instance, seq, reqs, n,
                               results, d);
    }
    return 0;
}

static void app_digest(void *ctx, uint8_t out[PROTO_DIGEST_BYTES]) {
    const sim_app *app = ctx;
    sim_app_digest_of(&app->live.state, out);
}

static int app_checkpoint(void *ctx, uint64_t seq) {
    sim_app *app = ctx;
    sim_app_image *im = &app->live;
    sim_app_ckpt *c = ckpt_find(im, seq);
    if (c == NULL) {
        if (im->n_ckpts == im->cap_ckpts) {
            size_t cap = im->cap_ckpts ? 2 * im->cap_ckpts : 8;
            void *p = realloc(im->ckpts, cap * sizeof *im->ckpts);
            TB_ASSERT(p != NULL);
            im->ckpts = p;
            im->cap_ckpts = cap;
        }
        size_t i = im->n_ckpts++;
        while (i > 0 && im->ckpts[i - 1].seq > seq) {
            im->ckpts[i] = im->ckpts[i - 1];
            i--;
        }
        c = &im->ckpts[i];
    }
    c->seq = seq;
    c->state = im->state;
    app->dirty = true;
    return 0;
}

static void app_release(void *ctx, uint64_t seq) {
    sim_app *app = ctx;
    sim_app_image *im = &app->live;
    sim_app_ckpt *c = ckpt_find(im, seq);
    if (c == NULL) {
        return;
    }
    size_t i = (size_t)(c - im->ckpts);
    memmove(&im->ckpts[i], &im->ckpts[i + 1], (im->n_ckpts - i - 1) * sizeof *im->ckpts);
    im->n_ckpts--;
    app->dirty = true;
}

static int app_snapshot(void *ctx, uint64_t seq, uint8_t **out, size_t *out_len) {
    sim_app *app = ctx;
    const sim_app_ckpt *c = ckpt_find(&app->live, seq);
    if (c == NULL) {
        return TB_ERR_NOT_FOUND;
    }
    uint8_t *b = malloc(SIM_APP_STATE_BYTES);
    if (b == NULL) {
        return TB_ERR_NOMEM;
    }
    state_encode(&c->state, b);
    *out = b;
    *out_len = SIM_APP_STATE_BYTES;
    return 0;
}

static int app_restore(void *ctx, uint64_t seq, const uint8_t *data, size_t len,
                       const uint8_t expected[PROTO_DIGEST_BYTES]) {
    sim_app *app = ctx;
    sim_app_state tmp;
    (void)seq;
    int rc = state_decode(data, len, &tmp);
    if (rc != 0) {
        return rc;
    }
    if (expected != NULL) {
        uint8_t d[PROTO_DIGEST_BYTES];
        sim_app_digest_of(&tmp, d);
        if (memcmp(d, expected, PROTO_DIGEST_BYTES) != 0) {
            return TB_ERR_MISMATCH;
        }
    }
    app->live.state = tmp;
    app->dirty = true;
    if (app->observer.restored != NULL) {
        uint8_t d[PROTO_DIGEST_BYTES];
        sim_app_digest_of(&tmp, d);
        app->observer.restored(app->observer.ctx, app->replica, app->instance, seq, d);
    }
    return 0;
}

bool sim_app_op_is_priority(const uint8_t *op, size_t len) {
    return len == SIM_APP_OP_BYTES && op[0] == 'p' && op[1] == 0;
}

static bool app_priority(void *ctx, const uint8_t *op, size_t len) {
    (void)ctx;
    return sim_app_op_is_priority(op, len);
}

pbft_app sim_app_callbacks(sim_app *app) {
    return (pbft_app){.ctx = app,
                      .execute = app_execute,
                      .digest = app_digest,
                      .checkpoint = app_checkpoint,
                      .release = app_release,
                      .snapshot = app_snapshot,
                      .restore = app_restore,
                      .priority = app_priority};
}

void sim_app_init(sim_app *app, const sim_app_image *durable, uint32_t replica, uint32_t instance,
                  const sim_app_observer *observer) {
    memset(app, 0, sizeof *app);
    sim_app_image_init(&app->live);
    if (durable != NULL) {
        sim_app_image_copy(&app->live, durable);
    }
    app->replica = replica;
    app->instance = instance;
    if (observer != NULL) {
        app->observer = *observer;
    }
}

void sim_app_free(sim_app *app) {
    sim_app_image_free(&app->live);
    free(app->results);
    app->results = NULL;
    app->cap_results = 0;
}

void sim_app_persist(sim_app *app, sim_app_image *durable) {
    if (app->dirty) {
        sim_app_image_copy(durable, &app->live);
        app->dirty = false;
    }
}
