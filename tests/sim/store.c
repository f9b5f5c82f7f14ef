/* Durable records as a sorted array (tens of entries: a window of slots, a
 * few checkpoints, one record per client and one META). */
#include "tests/sim/store.h"

#include <stdlib.h>
#include <string.h>

#include "proto/tb_assert.h"
#include "proto/tb_err.h"

void sim_store_init(sim_store *s) {
    memset(s, 0, sizeof *s);
    sim_app_image_init(&s->app);
}

static void rec_free(sim_store_rec *r) {
    free(r->client);
    free(r->data);
}

void sim_store_free(sim_store *s) {
    for (size_t i = 0; i < s->n; i++) {
        rec_free(&s->recs[i]);
    }
    free(s->recs);
    sim_app_image_free(&s->app);
    memset(s, 0, sizeof *s);
}

static int key_cmp(pbft_record_kind kind, uint64_t seq, const char *client,
                   const sim_store_rec *r) {
    if (kind != r->kind) {
        return kind < r->kind ? -1 : 1;
    }
    if (kind == PBFT_REC_CLIENT) {
        return strcmp(client, r->client);
    }
    if (kind == PBFT_REC_META || kind == PBFT_REC_NEW_VIEW) {
        return 0;
    }
    return seq < r->seq ? -1 : seq > r->seq ? 1 : 0;
}

/* Index of the key, or of where it would go; *found says which. */
static size_t locate(const sim_store *s, pbft_record_kind kind, uint64_t seq, const char *client,
                     bool *found) {
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(kind, seq, client, &s->recs[mid]);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    *found = false;
    return lo;
}

static void remove_at(sim_store *s, size_t i) {
    rec_free(&s->recs[i]);
    memmove(&s->recs[i], &s->recs[i + 1], (s->n - i - 1) * sizeof *s->recs);
    s->n--;
}

static void clients_clear(sim_store *s) {
    size_t w = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->recs[i].kind == PBFT_REC_CLIENT) {
            rec_free(&s->recs[i]);
        } else {
            s->recs[w++] = s->recs[i];
        }
    }
    s->n = w;
}

void sim_store_apply(sim_store *s, const pbft_record *r) {
    if (r->kind == PBFT_REC_CLIENTS_CLEAR) {
        clients_clear(s);
        return;
    }
    TB_ASSERT(r->kind != PBFT_REC_CLIENT || r->client != NULL);
    bool found = false;
    size_t i = locate(s, r->kind, r->seq, r->client, &found);
    if (r->del) {
        if (found) {
            remove_at(s, i);
        }
        return;
    }
    uint8_t *data = malloc(r->len ? r->len : 1);
    TB_ASSERT(data != NULL);
    if (r->len > 0) {
        memcpy(data, r->data, r->len);
    }
    if (found) {
        free(s->recs[i].data);
        s->recs[i].data = data;
        s->recs[i].len = r->len;
        return;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 32;
        void *p = realloc(s->recs, cap * sizeof *s->recs);
        TB_ASSERT(p != NULL);
        s->recs = p;
        s->cap = cap;
    }
    memmove(&s->recs[i + 1], &s->recs[i], (s->n - i) * sizeof *s->recs);
    s->recs[i] = (sim_store_rec){.kind = r->kind,
                                 .seq = r->kind == PBFT_REC_META ? 0 : r->seq,
                                 .client = r->client ? strdup(r->client) : NULL,
                                 .data = data,
                                 .len = r->len};
    s->n++;
}

void sim_store_log_prune(sim_store *s, uint64_t horizon) {
    for (size_t i = 0; i < s->n;) {
        if (s->recs[i].kind == PBFT_REC_LOG && s->recs[i].seq < horizon) {
            remove_at(s, i);
        } else {
            i++;
        }
    }
}

int sim_store_log_read(void *ctx, uint64_t seq, uint8_t **data, size_t *len) {
    sim_store *s = ctx;
    bool found = false;
    size_t i = locate(s, PBFT_REC_LOG, seq, NULL, &found);
    if (!found) {
        return TB_ERR_NOT_FOUND;
    }
    *data = malloc(s->recs[i].len ? s->recs[i].len : 1);
    TB_ASSERT(*data != NULL);
    memcpy(*data, s->recs[i].data, s->recs[i].len);
    *len = s->recs[i].len;
    return 0;
}
