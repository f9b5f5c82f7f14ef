/* Snapshot export and import, for state transfer.
 *
 * Format (all integers big-endian):
 *   "TBSMSNP1"  seq (8)
 *   records: table (1) key length (4) key value length (4) value
 *            digested tables in table order, then the event table; keys
 *            strictly ascending within a table
 *   0xFF  digest (32): the state digest of the exported view
 * Derived indexes and this replica's bookkeeping are not exported. Import
 * checks everything (order, lengths, the event hash chain against the
 * digested chain head, the digest) before it writes anything. The chain
 * starts from META "hist_base" when the history was compacted (its value
 * over the events dropped), from zero otherwise. */
#include <stdlib.h>
#include <string.h>

#include "statemachine/internal.h"

static const uint8_t snap_magic[8] = {'T', 'B', 'S', 'M', 'S', 'N', 'P', '1'};

enum {
    SM_SNAP_END = 0xff,
    SM_SNAP_HEADER_BYTES = 16,
    SM_SNAP_BUFFER_BYTES = 64 * 1024,
    SM_SNAP_VALUE_BYTES_MAX = SM_EVENT_BYTES_MAX,
};

typedef struct sm_out {
    sm_write_fn write;
    void *ctx;
    uint8_t buf[SM_SNAP_BUFFER_BYTES];
    size_t n;
    int err;
} sm_out;

static void out_flush(sm_out *o) {
    if (o->err == 0 && o->n > 0) {
        o->err = o->write(o->ctx, o->buf, o->n);
    }
    o->n = 0;
}

static void out_put(sm_out *o, const void *p, size_t len) {
    if (len > sizeof o->buf - o->n) {
        out_flush(o);
        if (len > sizeof o->buf) {
            o->err = o->err ? o->err : o->write(o->ctx, p, len);
            return;
        }
    }
    memcpy(o->buf + o->n, p, len);
    o->n += len;
}

static int export_table(sm_store *s, MDB_txn *txn, int t, sm_out *o) {
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, s->dbi[t], &cur);
    if (rc != 0) {
        return sm_lmdb_err(rc, "cursor");
    }
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && o->err == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint8_t hdr[5], vl[4];
        hdr[0] = (uint8_t)t;
        sm_be32(hdr + 1, (uint32_t)k.mv_size);
        sm_be32(vl, (uint32_t)v.mv_size);
        out_put(o, hdr, sizeof hdr);
        out_put(o, k.mv_data, k.mv_size);
        out_put(o, vl, sizeof vl);
        out_put(o, v.mv_data, v.mv_size);
    }
    mdb_cursor_close(cur);
    return rc == 0 || rc == MDB_NOTFOUND ? o->err : sm_lmdb_err(rc, "cursor get");
}

int sm_export(sm_store *s, MDB_txn *txn, uint64_t seq, sm_write_fn write, void *ctx) {
    sm_out *o = malloc(sizeof *o);
    if (o == NULL) {
        return TB_ERR_NOMEM;
    }
    *o = (sm_out){.write = write, .ctx = ctx};
    uint8_t hdr[SM_SNAP_HEADER_BYTES];
    memcpy(hdr, snap_magic, sizeof snap_magic);
    sm_be64(hdr + 8, seq);
    out_put(o, hdr, sizeof hdr);
    int err = 0;
    for (int t = SM_T_FIRST_DIGESTED; err == 0 && t <= SM_T_LAST_DIGESTED; t++) {
        err = export_table(s, txn, t, o);
    }
    if (err == 0) {
        err = export_table(s, txn, SM_T_EVENT, o);
    }
    /* The digest of this view: the lanes this view's last flush stored. */
    MDB_val v;
    if (err == 0 && (err = sm_db_get(s, txn, SM_T_SYS, "lanes", 5, &v)) == 0 &&
        v.mv_size != 2 * PROTO_LTHASH_LANES) {
        err = TB_ERR_IO;
    }
    if (err == 0) {
        proto_lthash h;
        for (size_t i = 0; i < PROTO_LTHASH_LANES; i++) {
            const uint8_t *b = v.mv_data;
            h.lanes[i] = (uint16_t)(b[2 * i] | b[2 * i + 1] << 8);
        }
        uint8_t trailer[1 + PROTO_DIGEST_BYTES];
        trailer[0] = SM_SNAP_END;
        proto_lthash_digest(&h, trailer + 1);
        out_put(o, trailer, sizeof trailer);
        out_flush(o);
        err = o->err;
    }
    free(o);
    return err;
}

typedef struct sm_membuf {
    uint8_t *p;
    size_t n, cap;
} sm_membuf;

static int membuf_write(void *ctx, const void *data, size_t len) {
    sm_membuf *m = ctx;
    if (len > m->cap - m->n) {
        size_t cap = m->cap ? m->cap : SM_SNAP_BUFFER_BYTES;
        while (cap - m->n < len) {
            cap *= 2;
        }
        uint8_t *p = realloc(m->p, cap);
        if (p == NULL) {
            return TB_ERR_NOMEM;
        }
        m->p = p;
        m->cap = cap;
    }
    memcpy(m->p + m->n, data, len);
    m->n += len;
    return 0;
}

int sm_export_buf(sm_store *s, MDB_txn *txn, uint64_t seq, uint8_t **out, size_t *out_len) {
    sm_membuf m = {0};
    int err = sm_export(s, txn, seq, membuf_write, &m);
    if (err != 0) {
        free(m.p);
        return err;
    }
    *out = m.p;
    *out_len = m.n;
    return 0;
}

typedef struct sm_rec {
    int table;
    const uint8_t *k, *v;
    size_t klen, vlen;
} sm_rec;

typedef struct sm_parse {
    const uint8_t *p, *end;
} sm_parse;

/* The next record: 1, or 0 at the end marker, or TB_ERR_INVALID. */
static int next_rec(sm_parse *ps, sm_rec *r) {
    if (ps->p == ps->end) {
        return TB_ERR_INVALID;
    }
    r->table = *ps->p++;
    if (r->table == SM_SNAP_END) {
        return 0;
    }
    if ((size_t)(ps->end - ps->p) < 4) {
        return TB_ERR_INVALID;
    }
    r->klen = sm_get_be32(ps->p);
    ps->p += 4;
    if (r->klen == 0 || r->klen > SM_KEY_BYTES_MAX || (size_t)(ps->end - ps->p) < r->klen + 4) {
        return TB_ERR_INVALID;
    }
    r->k = ps->p;
    ps->p += r->klen;
    r->vlen = sm_get_be32(ps->p);
    ps->p += 4;
    if (r->vlen > SM_SNAP_VALUE_BYTES_MAX || (size_t)(ps->end - ps->p) < r->vlen) {
        return TB_ERR_INVALID;
    }
    r->v = ps->p;
    ps->p += r->vlen;
    return 1;
}

static int key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl) {
    int r = memcmp(a, b, al < bl ? al : bl);
    return r != 0 ? r : (al > bl) - (al < bl);
}

/* What checking a snapshot established. */
typedef struct sm_checked {
    proto_lthash lanes;
    uint8_t chain[SM_HIST_BYTES]; /* recomputed over the events */
    uint8_t head[SM_HIST_BYTES];  /* the digested chain head it names */
    uint8_t trailer[PROTO_DIGEST_BYTES];
    bool events_any;
    uint64_t last_seq;
    uint32_t last_index;
} sm_checked;

static int check_rec(sm_store *s, const sm_rec *r, const sm_rec *prev, sm_checked *ck) {
    bool order = prev->table < r->table ||
                 (prev->table == r->table && key_cmp(prev->k, prev->klen, r->k, r->klen) < 0);
    if (!order || r->table < SM_T_FIRST_DIGESTED || r->table > SM_T_EVENT) {
        return TB_ERR_INVALID;
    }
    if (r->table != SM_T_EVENT) {
        size_t len = 0;
        const uint8_t *el = sm_element(s, r->table, r->k, r->klen, r->v, r->vlen, &len);
        proto_lthash_add(&ck->lanes, el, len);
        if (r->table == SM_T_META && r->klen == 4 && memcmp(r->k, "hist", 4) == 0) {
            if (r->vlen != SM_HIST_BYTES) {
                return TB_ERR_INVALID;
            }
            memcpy(ck->head, r->v, SM_HIST_BYTES);
        }
        /* The events compacted away (sm_options.history_window): the chain
         * over the events that follow starts from their value. */
        if (r->table == SM_T_META && r->klen == strlen(SM_HIST_BASE_KEY) &&
            memcmp(r->k, SM_HIST_BASE_KEY, r->klen) == 0) {
            if (r->vlen != SM_HIST_BYTES) {
                return TB_ERR_INVALID;
            }
            memcpy(ck->chain, r->v, SM_HIST_BYTES);
        }
        return 0;
    }
    if (r->klen != SM_EVENT_KEY_BYTES) {
        return TB_ERR_INVALID;
    }
    sm_hist_chain(ck->chain, r->k, r->klen, r->v, r->vlen);
    ck->events_any = true;
    ck->last_seq = sm_get_be64(r->k);
    ck->last_index = sm_get_be32(r->k + 8);
    return 0;
}

/* Pass one: structure, chain and digest, without writing anything. */
static int check_snapshot(sm_store *s, const uint8_t *data, size_t len, uint64_t seq,
                          const uint8_t *expected, sm_checked *ck) {
    memset(ck, 0, sizeof *ck);
    proto_lthash_init(&ck->lanes);
    if (len < SM_SNAP_HEADER_BYTES || memcmp(data, snap_magic, sizeof snap_magic) != 0 ||
        sm_get_be64(data + 8) != seq) {
        return TB_ERR_INVALID;
    }
    sm_parse ps = {data + SM_SNAP_HEADER_BYTES, data + len};
    sm_rec r, prev = {.table = 0};
    int more = 0;
    while ((more = next_rec(&ps, &r)) == 1) {
        int err = check_rec(s, &r, &prev, ck);
        if (err != 0) {
            return err;
        }
        prev = r;
    }
    if (more < 0 || (size_t)(ps.end - ps.p) != PROTO_DIGEST_BYTES) {
        return TB_ERR_INVALID;
    }
    memcpy(ck->trailer, ps.p, PROTO_DIGEST_BYTES);
    /* The events must be exactly the history the digested head commits to. */
    if (memcmp(ck->chain, ck->head, SM_HIST_BYTES) != 0) {
        return TB_ERR_MISMATCH;
    }
    uint8_t d[PROTO_DIGEST_BYTES];
    proto_lthash_digest(&ck->lanes, d);
    return memcmp(d, expected ? expected : ck->trailer, PROTO_DIGEST_BYTES) == 0 ? 0
                                                                                 : TB_ERR_MISMATCH;
}

/* The derived index entries of one imported record. */
static int derive(sm_store *s, MDB_txn *txn, sm_arena *a, const sm_rec *r) {
    uint8_t key[SM_KEY_BYTES_MAX + 1];
    size_t len = 0;
    int table = -1;
    if (r->table == SM_T_TWIN) {
        Twinbft__SmTwin *t = twinbft__sm_twin__unpack(&a->pb, r->vlen, r->v);
        if (t == NULL || !sm_valid_id(t->id) || (t->parent[0] != '\0' && !sm_valid_id(t->parent))) {
            return TB_ERR_INVALID;
        }
        len = sm_key2(key, t->parent, t->id);
        table = SM_T_CHILD;
    } else if (r->table == SM_T_PLACE) {
        Twinbft__SmPlacement *p = twinbft__sm_placement__unpack(&a->pb, r->vlen, r->v);
        if (p == NULL || !sm_valid_id(p->twin) || !sm_valid_id(p->component) ||
            (p->node[0] != '\0' && !sm_valid_id(p->node))) {
            return TB_ERR_INVALID;
        }
        if (p->node[0] != '\0') {
            len = sm_key3(key, p->node, p->twin, p->component, p->replica);
            table = SM_T_NODE_PLACE;
        }
    } else if (r->table == SM_T_EVENT) {
        Twinbft__SmEvent *e = twinbft__sm_event__unpack(&a->pb, r->vlen, r->v);
        if (e == NULL || (e->twin[0] != '\0' && !sm_valid_id(e->twin))) {
            return TB_ERR_INVALID;
        }
        if (e->twin[0] != '\0') {
            len = sm_key2(key, e->twin, "");
            memcpy(key + len, r->k, SM_EVENT_KEY_BYTES);
            len += SM_EVENT_KEY_BYTES;
            table = SM_T_TWIN_HIST;
        }
    }
    if (table < 0) {
        return 0;
    }
    MDB_val k = {len, key}, v = {0, ""};
    int rc = mdb_put(txn, s->dbi[table], &k, &v, 0);
    return rc == 0 ? 0 : sm_lmdb_err(rc, "import index");
}

static int write_sys(sm_store *s, MDB_txn *txn, const proto_lthash *lanes, uint64_t seq) {
    uint8_t lb[2 * PROTO_LTHASH_LANES], ab[8];
    for (size_t i = 0; i < PROTO_LTHASH_LANES; i++) {
        lb[2 * i] = (uint8_t)(lanes->lanes[i] & 0xff);
        lb[2 * i + 1] = (uint8_t)(lanes->lanes[i] >> 8);
    }
    sm_be64(ab, seq);
    MDB_val k1 = {5, "lanes"}, v1 = {sizeof lb, lb};
    MDB_val k2 = {7, "applied"}, v2 = {sizeof ab, ab};
    MDB_val k3 = {5, "admin"}, v3 = {strlen(s->admin), s->admin};
    int rc = mdb_put(txn, s->dbi[SM_T_SYS], &k1, &v1, 0);
    rc = rc ? rc : mdb_put(txn, s->dbi[SM_T_SYS], &k2, &v2, 0);
    rc = rc ? rc : mdb_put(txn, s->dbi[SM_T_SYS], &k3, &v3, 0);
    return rc == 0 ? 0 : sm_lmdb_err(rc, "import sys");
}

/* Pass two: empty every table, append the records, rebuild the derived
 * indexes. */
static int write_snapshot(sm_store *s, MDB_txn *txn, const uint8_t *data, size_t len,
                          const sm_checked *ck, uint64_t seq) {
    int rc = 0;
    for (int t = 0; t < SM_TABLES && rc == 0; t++) {
        rc = mdb_drop(txn, s->dbi[t], 0);
    }
    if (rc != 0) {
        return sm_lmdb_err(rc, "import drop");
    }
    sm_arena a;
    sm_arena_init(&a, SM_QUERY_ARENA_BYTES);
    sm_parse ps = {data + SM_SNAP_HEADER_BYTES, data + len};
    sm_rec r;
    int err = 0;
    while (err == 0 && next_rec(&ps, &r) == 1) {
        MDB_val k = {r.klen, (void *)r.k}, v = {r.vlen, (void *)r.v};
        rc = mdb_put(txn, s->dbi[r.table], &k, &v, MDB_APPEND);
        err = rc == 0 ? derive(s, txn, &a, &r) : sm_lmdb_err(rc, "import put");
        sm_arena_reset(&a);
    }
    sm_arena_free(&a);
    return err != 0 ? err : write_sys(s, txn, &ck->lanes, seq);
}

int sm_import(sm_store *s, MDB_txn *txn, uint64_t seq, const uint8_t *data, size_t len,
              const uint8_t expected[PROTO_DIGEST_BYTES]) {
    TB_ASSERT(s->wtxn == NULL || s->wtxn == txn);
    sm_checked *ck = malloc(sizeof *ck);
    if (ck == NULL) {
        return TB_ERR_NOMEM;
    }
    int err = check_snapshot(s, data, len, seq, expected, ck);
    if (err == 0) {
        /* Only storage faults can fail from here on; the caller aborts then. */
        s->wtxn = txn;
        err = write_snapshot(s, txn, data, len, ck, seq);
    }
    if (err == 0) {
        /* The imported state supersedes whatever txn had pending. */
        sm_dirty_clear(&s->dirty);
        sm_caches_clear(s);
        s->lanes = ck->lanes;
        memcpy(s->hist, ck->chain, SM_HIST_BYTES);
        s->hist_dirty = false;
        s->applied = seq;
        s->events_any = ck->events_any;
        s->last_seq = ck->last_seq;
        s->last_index = ck->last_index;
    }
    free(ck);
    return err;
}
