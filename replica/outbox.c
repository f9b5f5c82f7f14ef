/* The outbox (see storage.h and outbox.h). */
#include "replica/outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"
#include "proto/tb_assert.h"
#include "proto/tb_err.h"
#include "replica/config.h"
#include "statemachine/sm.h"

enum {
    POS_BYTES = 12, /* seq (8) and index (4), big-endian */
    BOX_KEY_BYTES_MAX = SM_PRINCIPAL_BYTES_MAX + 1 + POS_BYTES,
};
_Static_assert(BOX_KEY_BYTES_MAX <= 511, "outbox keys must fit LMDB's key limit");

typedef struct new_push {
    char to[SM_PRINCIPAL_BYTES_MAX + 1];
    uint64_t seq;
    uint32_t index;
    size_t off, len; /* of the packed Reply in bytes */
} new_push;

struct rep_outbox {
    new_push *pending; /* this persist's entries */
    size_t n, cap;
    uint8_t *bytes; /* their Replies, back to back */
    size_t used, bytes_cap;
    rep_push *out; /* the public view of pending, after sorting */
    size_t out_cap;
    sm_principal names[SM_RESULT_ADDRESSEES_MAX];
    uint64_t retain_seqs; /* see rep_outbox_set_retention */
};

int rep_outbox_create(rep_outbox **out) {
    *out = calloc(1, sizeof **out);
    if (*out == NULL) {
        return TB_ERR_NOMEM;
    }
    (*out)->retain_seqs = REP_OUTBOX_WINDOW_DEFAULT;
    return 0;
}

void rep_outbox_set_retention(rep_outbox *o, uint64_t seqs) {
    o->retain_seqs = seqs;
}

void rep_outbox_free(rep_outbox *o) {
    if (o != NULL) {
        free(o->pending);
        free(o->bytes);
        free(o->out);
        free(o);
    }
}

static void put_pos(uint8_t *p, uint64_t seq, uint32_t index) {
    for (int i = 7; i >= 0; i--, seq >>= 8) {
        p[i] = (uint8_t)seq;
    }
    for (int i = 11; i >= 8; i--, index >>= 8) {
        p[i] = (uint8_t)index;
    }
}

static void get_pos(const uint8_t *p, uint64_t *seq, uint32_t *index) {
    *seq = 0;
    *index = 0;
    for (int i = 0; i < 8; i++) {
        *seq = *seq << 8 | p[i];
    }
    for (int i = 8; i < 12; i++) {
        *index = *index << 8 | p[i];
    }
}

static size_t box_key(uint8_t key[BOX_KEY_BYTES_MAX], const char *to, uint64_t seq,
                      uint32_t index) {
    size_t n = strlen(to);
    TB_ASSERT(n <= SM_PRINCIPAL_BYTES_MAX);
    memcpy(key, to, n);
    key[n] = 0; /* principals hold no NUL: "bob" never reads "bobby"'s entries */
    put_pos(key + n + 1, seq, index);
    return n + 1 + POS_BYTES;
}

static void grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) {
        return;
    }
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        c *= 2;
    }
    void *q = realloc(*p, c * elem);
    TB_ASSERT(q != NULL);
    *p = q;
    *cap = c;
}

static bool executed_in(const pbft_ready *rd, uint64_t seq) {
    for (size_t i = 0; i < rd->n_executed; i++) {
        if (rd->executed[i].seq == seq) {
            return true;
        }
    }
    return false;
}

/* Queues one entry per addressee of a reply's result. */
static void collect_reply(rep_outbox *o, const Twinbft__Reply *r) {
    Twinbft__ResultLeaf *leaf = twinbft__result_leaf__unpack(NULL, r->leaf.len, r->leaf.data);
    TB_ASSERT(leaf != NULL); /* the core packed it */
    size_t n = 0;
    int rc = sm_result_addressees(leaf->result.data, leaf->result.len, o->names, &n);
    twinbft__result_leaf__free_unpacked(leaf, NULL);
    if (rc == TB_ERR_INVALID || n == 0) {
        return; /* a test application's result, or nobody's command */
    }
    size_t len = twinbft__reply__get_packed_size(r);
    grow((void **)&o->bytes, &o->bytes_cap, o->used + len, 1);
    twinbft__reply__pack(r, o->bytes + o->used);
    grow((void **)&o->pending, &o->cap, o->n + n, sizeof *o->pending);
    for (size_t i = 0; i < n; i++) {
        new_push *p = &o->pending[o->n++];
        snprintf(p->to, sizeof p->to, "%s", o->names[i]);
        p->seq = r->seq;
        p->index = r->index;
        p->off = o->used;
        p->len = len;
    }
    o->used += len;
}

static int cmp_push(const void *x, const void *y) {
    const new_push *a = x, *b = y;
    if (a->seq != b->seq) {
        return a->seq < b->seq ? -1 : 1;
    }
    if (a->index != b->index) {
        return a->index < b->index ? -1 : 1;
    }
    return strcmp(a->to, b->to);
}

static int put_entry(MDB_txn *txn, rep_outbox_dbs dbs, const rep_push *p) {
    uint8_t key[BOX_KEY_BYTES_MAX], skey[BOX_KEY_BYTES_MAX];
    size_t klen = box_key(key, p->to, p->seq, p->index);
    put_pos(skey, p->seq, p->index);
    memcpy(skey + POS_BYTES, p->to, klen - 1 - POS_BYTES);
    MDB_val k = {klen, key}, v = {p->reply_len, (void *)p->reply};
    MDB_val sk = {klen - 1, skey}, sv = {0, ""};
    int rc = mdb_put(txn, dbs.box, &k, &v, 0);
    rc = rc ? rc : mdb_put(txn, dbs.by_seq, &sk, &sv, 0);
    if (rc != 0) {
        fprintf(stderr, "storage: writing the outbox of %s: %s\n", p->to, mdb_strerror(rc));
        return TB_ERR_IO;
    }
    return 0;
}

/* Deletes entries below the retention horizon, oldest first. */
static int prune(MDB_txn *txn, rep_outbox_dbs dbs, uint64_t executed, uint64_t retain) {
    if (executed <= retain) {
        return 0;
    }
    uint64_t horizon = executed - retain;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, dbs.by_seq, &cur);
    MDB_val k, v;
    for (int n = 0; rc == 0 && n < REP_PUSH_PRUNE_PER_COMMIT_MAX; n++) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        if (rc != 0) {
            break; /* empty */
        }
        if (k.mv_size <= POS_BYTES || k.mv_size > BOX_KEY_BYTES_MAX - 1) {
            /* Pruning stops here until an operator repairs the store: say so
             * (once per commit), since the outbox grows meanwhile. */
            fprintf(stderr,
                    "storage: the outbox's seq index holds a malformed key (%zu bytes); "
                    "pruning is stuck until the store is repaired or rebuilt by state transfer\n",
                    k.mv_size);
            break;
        }
        uint64_t seq = 0;
        uint32_t index = 0;
        get_pos(k.mv_data, &seq, &index);
        if (seq >= horizon) {
            break;
        }
        uint8_t key[BOX_KEY_BYTES_MAX];
        size_t tl = k.mv_size - POS_BYTES;
        memcpy(key, (const uint8_t *)k.mv_data + POS_BYTES, tl);
        key[tl] = 0;
        memcpy(key + tl + 1, k.mv_data, POS_BYTES);
        MDB_val bk = {tl + 1 + POS_BYTES, key};
        rc = mdb_cursor_del(cur, 0);
        if (rc == 0) {
            rc = mdb_del(txn, dbs.box, &bk, NULL);
            rc = rc == MDB_NOTFOUND ? 0 : rc;
        }
    }
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        fprintf(stderr, "storage: pruning the outbox: %s\n", mdb_strerror(rc));
        return TB_ERR_IO;
    }
    return 0;
}

/* The horizon lives in the box database under a key no principal can have
 * (principals are never empty): 0x00 "horizon" -> 8-byte big-endian seq. */
static const uint8_t HORIZON_KEY[] = {0, 'h', 'o', 'r', 'i', 'z', 'o', 'n'};

int rep_outbox_horizon(MDB_txn *txn, rep_outbox_dbs dbs, uint64_t *out) {
    MDB_val k = {sizeof HORIZON_KEY, (void *)HORIZON_KEY}, v;
    *out = 0;
    int rc = mdb_get(txn, dbs.box, &k, &v);
    if (rc == MDB_NOTFOUND) {
        return 0;
    }
    if (rc != 0 || v.mv_size != 8) {
        fprintf(stderr, "storage: the outbox horizon: %s\n",
                rc != 0 ? mdb_strerror(rc) : "not 8 bytes (the store is corrupt)");
        return TB_ERR_IO;
    }
    uint32_t unused = 0;
    uint8_t pos[POS_BYTES] = {0};
    memcpy(pos, v.mv_data, 8);
    get_pos(pos, out, &unused);
    return 0;
}

/* Raises the horizon to h (never lowers it), in txn. */
static int horizon_raise(MDB_txn *txn, rep_outbox_dbs dbs, uint64_t h) {
    uint64_t cur = 0;
    int rc = rep_outbox_horizon(txn, dbs, &cur);
    if (rc != 0 || h <= cur) {
        return rc;
    }
    uint8_t pos[POS_BYTES];
    put_pos(pos, h, 0);
    MDB_val k = {sizeof HORIZON_KEY, (void *)HORIZON_KEY}, v = {8, pos};
    rc = mdb_put(txn, dbs.box, &k, &v, 0);
    if (rc != 0) {
        fprintf(stderr, "storage: writing the outbox horizon: %s\n", mdb_strerror(rc));
        return TB_ERR_IO;
    }
    return 0;
}

void rep_outbox_forget(rep_outbox *o) {
    o->n = 0;
    o->used = 0;
}

int rep_outbox_write(rep_outbox *o, MDB_txn *txn, rep_outbox_dbs dbs, const pbft_ready *rd) {
    rep_outbox_forget(o);
    uint64_t executed = rd->transferred ? rd->transfer_seq : 0;
    for (size_t i = 0; i < rd->n_executed; i++) {
        executed = rd->executed[i].seq > executed ? rd->executed[i].seq : executed;
    }
    for (size_t i = 0; rd->n_executed > 0 && i < rd->n_msgs; i++) {
        const pbft_msg *m = &rd->msgs[i];
        if (m->to != PBFT_TO_CLIENT) {
            continue;
        }
        Twinbft__Message *msg = proto_message_unpack(m->data, m->len);
        TB_ASSERT(msg != NULL); /* the core packed it */
        if (msg->kind_case == TWINBFT__MESSAGE__KIND_REPLY && executed_in(rd, msg->reply->seq)) {
            collect_reply(o, msg->reply);
        }
        twinbft__message__free_unpacked(msg, NULL);
    }
    if (o->n > 0) {
        qsort(o->pending, o->n, sizeof *o->pending, cmp_push);
    }
    grow((void **)&o->out, &o->out_cap, o->n, sizeof *o->out);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < o->n; i++) {
        const new_push *p = &o->pending[i];
        o->out[i] = (rep_push){p->to, p->seq, p->index, o->bytes + p->off, p->len};
        rc = put_entry(txn, dbs, &o->out[i]);
    }
    rc = rc != 0 ? rc : prune(txn, dbs, executed, o->retain_seqs);
    /* Below the horizon the outbox cannot vouch for commands: what state
     * transfer skipped was never written, what retention reached is gone. */
    uint64_t horizon = rd->transferred ? rd->transfer_seq : 0;
    if (executed > o->retain_seqs && executed - o->retain_seqs - 1 > horizon) {
        horizon = executed - o->retain_seqs - 1;
    }
    return rc != 0 ? rc : horizon_raise(txn, dbs, horizon);
}

size_t rep_outbox_new(const rep_outbox *o, const rep_push **out) {
    *out = o->out;
    return o->n;
}

int rep_outbox_read(MDB_txn *txn, rep_outbox_dbs dbs, const char *to, uint64_t after_seq,
                    uint32_t after_index, rep_push_visit visit, void *ctx) {
    if (strlen(to) > SM_PRINCIPAL_BYTES_MAX) {
        return 0; /* no such addressee can have entries */
    }
    uint8_t key[BOX_KEY_BYTES_MAX];
    size_t klen = box_key(key, to, after_seq, after_index), plen = klen - POS_BYTES;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, dbs.box, &cur);
    if (rc != 0) {
        fprintf(stderr, "storage: reading the outbox of %s: %s\n", to, mdb_strerror(rc));
        return TB_ERR_IO;
    }
    MDB_val k = {klen, key}, v;
    int lrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    for (; lrc == 0; lrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < plen || memcmp(k.mv_data, key, plen) != 0) {
            break; /* past this addressee's entries */
        }
        if (k.mv_size != klen) {
            fprintf(stderr, "storage: an outbox key of %s has %zu bytes, not %zu\n", to, k.mv_size,
                    klen);
            rc = TB_ERR_INVALID;
            break;
        }
        rep_push p = {to, 0, 0, v.mv_data, v.mv_size};
        get_pos((const uint8_t *)k.mv_data + plen, &p.seq, &p.index);
        if (p.seq == after_seq && p.index == after_index) {
            continue; /* exclusive */
        }
        if (!visit(ctx, &p)) {
            break;
        }
    }
    if (rc == 0 && lrc != 0 && lrc != MDB_NOTFOUND) {
        fprintf(stderr, "storage: reading the outbox of %s: %s\n", to, mdb_strerror(lrc));
        rc = TB_ERR_IO;
    }
    mdb_cursor_close(cur);
    return rc;
}
