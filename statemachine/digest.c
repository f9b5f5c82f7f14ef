/* The incremental state digest.
 *
 * The digest is LtHash over one element per entry of the digested tables:
 *   table (1 byte) || key length (be32) || key || value length (be32) || value
 * so two stores with the same entries have the same lanes however they got
 * there. A changed key is remembered (with its value at the last flush)
 * in a change set until the next flush, which removes the old element and
 * adds the new one: a key written many times in a batch costs two
 * expansions, and a key rewritten with the same bytes costs none. The
 * change set is a hash table; the order in which it is folded cannot
 * matter because lattice-hash addition commutes. */
#include <stdlib.h>
#include <string.h>

#include "statemachine/internal.h"

void sm_dirty_init(sm_dirty *d) {
    d->slots = malloc(SM_DIRTY_SLOTS * sizeof *d->slots);
    d->entries = malloc(SM_DIRTY_KEYS_MAX * sizeof *d->entries);
    TB_ASSERT(d->slots != NULL && d->entries != NULL);
    memset(d->slots, 0xff, SM_DIRTY_SLOTS * sizeof *d->slots);
    d->n = 0;
    sm_arena_init(&d->mem, SM_ARENA_CHUNK_BYTES);
}

void sm_dirty_free(sm_dirty *d) {
    free(d->slots);
    free(d->entries);
    sm_arena_free(&d->mem);
}

/* FNV-1a: only for finding a key again, never for a decision. */
static uint64_t key_hash(int table, const uint8_t *key, size_t len) {
    uint64_t h = 1469598103934665603ull ^ (uint64_t)table;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ key[i]) * 1099511628211ull;
    }
    return h;
}

static sm_dirty_entry *dirty_find(sm_dirty *d, uint64_t h, int table, const void *key, size_t len,
                                  size_t *slot) {
    size_t i = h & (SM_DIRTY_SLOTS - 1);
    for (;;) {
        int32_t at = d->slots[i];
        if (at < 0) {
            *slot = i;
            return NULL;
        }
        sm_dirty_entry *e = &d->entries[at];
        if (e->hash == h && e->table == table && e->key_len == len &&
            memcmp(e->key, key, len) == 0) {
            *slot = i;
            return e;
        }
        i = (i + 1) & (SM_DIRTY_SLOTS - 1);
    }
}

int sm_dirty_touch(sm_store *s, MDB_txn *txn, int table, const void *key, size_t key_len,
                   sm_dirty_entry **out) {
    sm_dirty *d = &s->dirty;
    uint64_t h = key_hash(table, key, key_len);
    size_t slot = 0;
    sm_dirty_entry *e = dirty_find(d, h, table, key, key_len, &slot);
    if (e != NULL) {
        *out = e;
        return 0;
    }
    if (d->n == SM_DIRTY_KEYS_MAX) {
        /* Bounded memory: fold what we have; a later fold continues from here. */
        sm_dirty_fold(s);
        (void)dirty_find(d, h, table, key, key_len, &slot);
    }
    MDB_val old;
    int err = 0;
    sm_read_cache *rc = &s->read_cache;
    if (rc->valid && rc->table == table && rc->key_len == key_len &&
        memcmp(rc->key, key, key_len) == 0) {
        old = (MDB_val){rc->val_len, rc->val};
        err = rc->present ? 0 : TB_ERR_NOT_FOUND;
    } else if ((err = sm_db_get(s, txn, table, key, key_len, &old)) != 0 &&
               err != TB_ERR_NOT_FOUND) {
        return err;
    }
    e = &d->entries[d->n];
    *e = (sm_dirty_entry){.hash = h, .table = (uint8_t)table, .key_len = key_len};
    e->key = sm_arena_dup(&d->mem, key, key_len);
    e->has_old = err == 0;
    e->has_new = e->has_old;
    if (e->has_old) {
        e->old_val = sm_arena_dup(&d->mem, old.mv_data, old.mv_size);
        e->old_len = old.mv_size;
    }
    e->slot = (uint32_t)slot;
    d->slots[slot] = (int32_t)d->n++;
    *out = e;
    return 0;
}

void sm_dirty_set_new(sm_store *s, sm_dirty_entry *e, const void *val, size_t len) {
    if (len > e->new_cap) {
        e->new_val = sm_arena_alloc(&s->dirty.mem, len);
        e->new_cap = len;
    }
    if (len > 0) {
        memcpy(e->new_val, val, len);
    }
    e->new_len = len;
    e->has_new = true;
}

const uint8_t *sm_element(sm_store *s, int table, const void *key, size_t key_len, const void *val,
                          size_t val_len, size_t *len) {
    *len = 1 + 4 + key_len + 4 + val_len;
    uint8_t *p = sm_scratch(s, *len);
    p[0] = (uint8_t)table;
    sm_be32(p + 1, (uint32_t)key_len);
    memcpy(p + 5, key, key_len);
    sm_be32(p + 5 + key_len, (uint32_t)val_len);
    if (val_len > 0) {
        memcpy(p + 9 + key_len, val, val_len);
    }
    return p;
}

static void fold_entry(sm_store *s, const sm_dirty_entry *e) {
    if (e->has_old && e->has_new && e->old_len == e->new_len &&
        memcmp(e->old_val, e->new_val, e->old_len) == 0) {
        return; /* rewritten with the same bytes */
    }
    size_t len = 0;
    if (e->has_old) {
        const uint8_t *el =
            sm_element(s, e->table, e->key, e->key_len, e->old_val, e->old_len, &len);
        proto_lthash_remove(&s->lanes, el, len);
        s->stats.changes_folded++;
    }
    if (e->has_new) {
        const uint8_t *el =
            sm_element(s, e->table, e->key, e->key_len, e->new_val, e->new_len, &len);
        proto_lthash_add(&s->lanes, el, len);
        s->stats.changes_folded++;
    }
}

void sm_read_cache_set(sm_store *s, int table, const void *key, size_t key_len,
                       const MDB_val *val) {
    sm_read_cache *rc = &s->read_cache;
    rc->valid = false;
    if (!sm_table_digested(table) || key_len > SM_KEY_BYTES_MAX) {
        return;
    }
    if (val != NULL && val->mv_size > rc->val_cap) {
        uint8_t *p = realloc(rc->val, val->mv_size);
        TB_ASSERT(p != NULL);
        rc->val = p;
        rc->val_cap = val->mv_size;
    }
    rc->table = (uint8_t)table;
    memcpy(rc->key, key, key_len);
    rc->key_len = key_len;
    rc->present = val != NULL;
    rc->val_len = val ? val->mv_size : 0;
    if (val != NULL && val->mv_size > 0) {
        memcpy(rc->val, val->mv_data, val->mv_size);
    }
    rc->valid = true;
}

void sm_caches_clear(sm_store *s) {
    s->read_cache.valid = false;
    for (size_t i = 0; i < SM_ROLE_CACHE_SLOTS; i++) {
        s->roles[i].valid = false;
    }
}

void sm_dirty_fold(sm_store *s) {
    sm_dirty *d = &s->dirty;
    s->read_cache.valid = false;
    for (size_t i = 0; i < d->n; i++) {
        fold_entry(s, &d->entries[i]);
    }
    s->stats.keys_folded += d->n;
    sm_dirty_clear(d);
}

void sm_dirty_clear(sm_dirty *d) {
    /* Entries never move once inserted, so each one's slot is known. */
    for (size_t i = 0; i < d->n; i++) {
        d->slots[d->entries[i].slot] = -1;
    }
    d->n = 0;
    sm_arena_reset(&d->mem);
}

void sm_hist_chain(uint8_t hist[SM_HIST_BYTES], const uint8_t *key, size_t key_len,
                   const uint8_t *val, size_t val_len) {
    uint8_t lens[8];
    sm_be32(lens, (uint32_t)key_len);
    sm_be32(lens + 4, (uint32_t)val_len);
    proto_hash *h = proto_hash_begin();
    TB_ASSERT(h != NULL);
    proto_hash_update(h, hist, PROTO_DIGEST_BYTES);
    proto_hash_update(h, lens, sizeof lens);
    proto_hash_update(h, key, key_len);
    proto_hash_update(h, val, val_len);
    proto_hash_final(h, hist);
    sm_be64(hist + PROTO_DIGEST_BYTES, sm_get_be64(hist + PROTO_DIGEST_BYTES) + 1);
}

int sm_digest(sm_store *s, MDB_txn *txn, uint8_t out[PROTO_DIGEST_BYTES]) {
    if (s->dirty.n > 0 || s->hist_dirty) {
        TB_ASSERT(txn != NULL && txn == s->wtxn);
        int err = sm_flush(s, txn);
        if (err != 0) {
            return err;
        }
    }
    proto_lthash_digest(&s->lanes, out);
    return 0;
}

int sm_digest_recompute(sm_store *s, MDB_txn *txn, uint8_t out[PROTO_DIGEST_BYTES]) {
    proto_lthash h;
    proto_lthash_init(&h);
    for (int t = SM_T_FIRST_DIGESTED; t <= SM_T_LAST_DIGESTED; t++) {
        MDB_cursor *cur = NULL;
        int rc = mdb_cursor_open(txn, s->dbi[t], &cur);
        if (rc != 0) {
            return sm_lmdb_err(rc, "cursor");
        }
        MDB_val k, v;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            size_t len = 0;
            const uint8_t *el = sm_element(s, t, k.mv_data, k.mv_size, v.mv_data, v.mv_size, &len);
            proto_lthash_add(&h, el, len);
        }
        mdb_cursor_close(cur);
        if (rc != MDB_NOTFOUND) {
            return sm_lmdb_err(rc, "cursor get");
        }
    }
    proto_lthash_digest(&h, out);
    return 0;
}
