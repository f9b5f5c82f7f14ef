/* The state machine behind the consensus core's application interface
 * (see sm_adapter.h for the transaction and checkpoint contract). */
#include <stdlib.h>
#include <string.h>

#include "statemachine/internal.h"
#include "statemachine/sm_adapter.h"

typedef struct sm_kept {
    uint64_t seq;
    MDB_txn *rtxn;
} sm_kept;

struct sm_adapter {
    sm_store *s;
    MDB_txn *txn;
    sm_kept kept[SM_ADAPTER_CHECKPOINTS_MAX]; /* sorted by seq */
    size_t n_kept;
    uint8_t *buf; /* the last execute's results, back to back */
    size_t cap;
    size_t *offsets;
    size_t cap_offsets;
    sm_spool *spool; /* NULL: whole-buffer state transfer only */
};

int sm_adapter_create(sm_store *store, sm_adapter **out) {
    sm_adapter *a = calloc(1, sizeof *a);
    if (a == NULL) {
        return TB_ERR_NOMEM;
    }
    a->s = store;
    *out = a;
    return 0;
}

static void kept_drop(sm_adapter *a, size_t i) {
    mdb_txn_abort(a->kept[i].rtxn);
    memmove(&a->kept[i], &a->kept[i + 1], (a->n_kept - i - 1) * sizeof *a->kept);
    a->n_kept--;
}

void sm_adapter_free(sm_adapter *a) {
    if (a == NULL) {
        return;
    }
    sm_adapter_abort(a);
    sm_spool_close(a->spool); /* waits for an export that is running */
    while (a->n_kept > 0) {
        kept_drop(a, a->n_kept - 1);
    }
    free(a->buf);
    free(a->offsets);
    free(a);
}

MDB_txn *sm_adapter_txn(sm_adapter *a) {
    if (a->txn == NULL && sm_txn_begin(a->s, &a->txn) != 0) {
        a->txn = NULL;
    }
    return a->txn;
}

int sm_adapter_commit(sm_adapter *a) {
    if (a->txn == NULL) {
        return 0;
    }
    MDB_txn *txn = a->txn;
    a->txn = NULL;
    return sm_txn_commit(a->s, txn);
}

void sm_adapter_abort(sm_adapter *a) {
    if (a->txn != NULL) {
        sm_txn_abort(a->s, a->txn);
        a->txn = NULL;
    }
}

/* Appends one result to the batch buffer; pointers are fixed up at the end
 * because the buffer may move while it grows. */
static void keep_result(sm_adapter *a, size_t i, const uint8_t *r, size_t len, size_t *used) {
    if (*used + len > a->cap) {
        size_t cap = a->cap ? a->cap : 64 * 1024;
        while (cap < *used + len) {
            cap *= 2;
        }
        uint8_t *p = realloc(a->buf, cap);
        TB_ASSERT(p != NULL);
        a->buf = p;
        a->cap = cap;
    }
    if (len > 0) {
        memcpy(a->buf + *used, r, len);
    }
    a->offsets[i] = *used;
    *used += len;
}

/* A batch applied before a crash (its state committed at a checkpoint,
 * the host's records lost): its results come from the history. */
static int replay(sm_adapter *a, uint64_t seq, const sm_request *reqs, size_t n, sm_reply *results,
                  size_t *used) {
    for (size_t i = 0; i < n; i++) {
        uint8_t key[SM_EVENT_KEY_BYTES];
        sm_be64(key, seq);
        sm_be32(key + 8, (uint32_t)i);
        MDB_val v;
        int err = sm_db_get(a->s, a->txn, SM_T_EVENT, key, sizeof key, &v);
        if (err != 0) {
            return err == TB_ERR_NOT_FOUND ? TB_ERR_STATE : err;
        }
        Twinbft__SmEvent *e = twinbft__sm_event__unpack(NULL, v.mv_size, v.mv_data);
        if (e == NULL) {
            return TB_ERR_IO;
        }
        /* The same committed batch: the same principal at the same place. */
        TB_ASSERT(strcmp(e->principal, reqs[i].client) == 0 || !sm_valid_principal(reqs[i].client));
        Twinbft__SmResult *r = twinbft__sm_result__unpack(NULL, e->result.len, e->result.data);
        uint64_t ttl = 0;
        if (r != NULL && r->payload_case == TWINBFT__SM_RESULT__PAYLOAD_COMMAND) {
            ttl = r->command->expires_at_ms - r->command->not_before_ms;
        }
        twinbft__sm_result__free_unpacked(r, NULL);
        keep_result(a, i, e->result.data, e->result.len, used);
        results[i].ttl_ms = ttl;
        twinbft__sm_event__free_unpacked(e, NULL);
    }
    return 0;
}

int sm_adapter_execute(void *ctx, uint64_t seq, uint64_t time_ms, const sm_request *reqs, size_t n,
                       sm_reply *results) {
    sm_adapter *a = ctx;
    if (sm_adapter_txn(a) == NULL) {
        return TB_ERR_IO;
    }
    if (n > a->cap_offsets) {
        size_t *p = realloc(a->offsets, n * sizeof *p);
        TB_ASSERT(p != NULL);
        a->offsets = p;
        a->cap_offsets = n;
    }
    size_t used = 0;
    int err = 0;
    if (seq <= sm_store_applied(a->s)) {
        err = replay(a, seq, reqs, n, results, &used);
    } else {
        for (size_t i = 0; err == 0 && i < n; i++) {
            sm_output o;
            TB_ASSERT(i <= UINT32_MAX);
            err = sm_apply(a->s, a->txn, seq, (uint32_t)i, time_ms, reqs[i].client, reqs[i].op,
                           reqs[i].op_len, &o);
            if (err == 0) {
                keep_result(a, i, o.result, o.result_len, &used);
                results[i].ttl_ms = o.ttl_ms;
            }
        }
    }
    for (size_t i = 0; err == 0 && i < n; i++) {
        size_t end = i + 1 < n ? a->offsets[i + 1] : used;
        results[i].result = a->buf + a->offsets[i];
        results[i].result_len = end - a->offsets[i];
    }
    return err;
}

void sm_adapter_digest(void *ctx, uint8_t out[PROTO_DIGEST_BYTES]) {
    sm_adapter *a = ctx;
    /* The void contract cannot report a storage fault, and a wrong digest
     * would split the replicas: stop instead. */
    TB_ASSERT(sm_digest(a->s, a->txn, out) == 0);
}

int sm_adapter_checkpoint(void *ctx, uint64_t seq) {
    sm_adapter *a = ctx;
    int err = sm_adapter_commit(a);
    if (err != 0) {
        return err;
    }
    for (size_t i = 0; i < a->n_kept; i++) {
        if (a->kept[i].seq == seq) {
            kept_drop(a, i); /* taken again (after a transfer): the newer state wins */
            break;
        }
    }
    if (a->n_kept == SM_ADAPTER_CHECKPOINTS_MAX) {
        kept_drop(a, 1); /* keep the oldest: it is the stable one peers fetch */
    }
    MDB_txn *r = NULL;
    int rc = mdb_txn_begin(sm_store_env(a->s), NULL, MDB_RDONLY, &r);
    if (rc != 0) {
        return sm_lmdb_err(rc, "checkpoint read txn");
    }
    size_t i = a->n_kept;
    while (i > 0 && a->kept[i - 1].seq > seq) {
        a->kept[i] = a->kept[i - 1];
        i--;
    }
    a->kept[i] = (sm_kept){.seq = seq, .rtxn = r};
    a->n_kept++;
    return 0;
}

void sm_adapter_release(void *ctx, uint64_t seq) {
    sm_adapter *a = ctx;
    for (size_t i = 0; i < a->n_kept; i++) {
        if (a->kept[i].seq == seq) {
            kept_drop(a, i);
            return;
        }
    }
}

int sm_adapter_snapshot(void *ctx, uint64_t seq, uint8_t **out, size_t *out_len) {
    sm_adapter *a = ctx;
    for (size_t i = 0; i < a->n_kept; i++) {
        if (a->kept[i].seq == seq) {
            return sm_export_buf(a->s, a->kept[i].rtxn, seq, out, out_len);
        }
    }
    return TB_ERR_NOT_FOUND;
}

int sm_adapter_restore(void *ctx, uint64_t seq, const uint8_t *data, size_t len,
                       const uint8_t expected[PROTO_DIGEST_BYTES]) {
    sm_adapter *a = ctx;
    /* Commit what this cycle executed first, so that a storage fault in the
     * import can be undone by aborting the import alone ("on error the
     * state is unchanged"). The window this opens is the one checkpoints
     * open: see sm_adapter.h. */
    int err = sm_adapter_commit(a);
    if (err != 0 || sm_adapter_txn(a) == NULL) {
        return err != 0 ? err : TB_ERR_IO;
    }
    err = sm_import(a->s, a->txn, seq, data, len, expected);
    if (err != 0) {
        sm_adapter_abort(a);
    }
    return err;
}

int sm_adapter_spool(sm_adapter *a, const char *dir, bool background) {
    sm_spool_close(a->spool);
    a->spool = NULL;
    return sm_spool_open(a->s, dir, background, &a->spool);
}

/* The export takes the kept read transaction over: release(seq) then finds
 * nothing to release, and the export aborts it when done. */
static MDB_txn *take_kept(void *ctx, uint64_t seq) {
    sm_adapter *a = ctx;
    for (size_t i = 0; i < a->n_kept; i++) {
        if (a->kept[i].seq == seq) {
            MDB_txn *r = a->kept[i].rtxn;
            memmove(&a->kept[i], &a->kept[i + 1], (a->n_kept - i - 1) * sizeof *a->kept);
            a->n_kept--;
            return r;
        }
    }
    return NULL;
}

int sm_adapter_export_manifest(void *ctx, uint64_t seq, uint32_t chunk_bytes, uint64_t *total,
                               uint8_t (**hashes)[PROTO_DIGEST_BYTES], size_t *n) {
    sm_adapter *a = ctx;
    if (a->spool == NULL) {
        return TB_ERR_NOT_FOUND;
    }
    return sm_spool_manifest(a->spool, take_kept, a, seq, chunk_bytes, total, hashes, n);
}

int sm_adapter_export_read(void *ctx, uint64_t seq, uint64_t off, uint8_t *buf, size_t len) {
    sm_adapter *a = ctx;
    return a->spool == NULL ? TB_ERR_NOT_FOUND : sm_spool_read(a->spool, seq, off, buf, len);
}

int sm_adapter_import_begin(void *ctx, uint64_t seq, uint64_t total) {
    sm_adapter *a = ctx;
    return a->spool == NULL ? TB_ERR_INVALID : sm_spool_import_begin(a->spool, seq, total);
}

int sm_adapter_import_write(void *ctx, uint64_t seq, uint64_t off, const uint8_t *data,
                            size_t len) {
    sm_adapter *a = ctx;
    return a->spool == NULL ? TB_ERR_INVALID : sm_spool_import_write(a->spool, seq, off, data, len);
}

int sm_adapter_import_finish(void *ctx, uint64_t seq, const uint8_t expected[PROTO_DIGEST_BYTES]) {
    sm_adapter *a = ctx;
    const uint8_t *data = NULL;
    size_t len = 0;
    if (a->spool == NULL) {
        return TB_ERR_INVALID;
    }
    int rc = sm_spool_import_map(a->spool, seq, &data, &len);
    if (rc == 0) {
        rc = sm_adapter_restore(a, seq, data, len, expected);
    }
    sm_spool_import_done(a->spool, data, len);
    return rc;
}
