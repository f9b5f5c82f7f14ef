/* The replica's durable storage (see storage.h): the consensus core's
 * records ride in the state machine's write transaction of the cycle, so
 * one fsync'd commit makes both durable together. */
#include "replica/storage.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "proto/tb_assert.h"
#include "proto/tb_err.h"
#include "proto/twinbft.pb-c.h"
#include "replica/config.h"
#include "replica/outbox.h"
#include "statemachine/sm_adapter.h"

enum {
    REP_STORAGE_DIR_BYTES_MAX = 4096,
    SEQ_KEY_BYTES = 8,
    KEY_TEXT_BYTES = 2 * 64 + 16, /* a described key: hex of at most 64 bytes, and more */
};

/* The order restore feeds them back in: the core applies meta first and
 * checkpoints before the log anyway, and this order makes a log of the
 * feed read the same way. */
enum rep_db { DB_META, DB_CKPTS, DB_CLIENTS, DB_SLOTS, DB_OUTBOX, DB_OUTBOX_SEQ, DB_LOG };
_Static_assert(DB_LOG + 1 == REP_STORAGE_DBS, "one named database per enum rep_db");
_Static_assert(DB_SLOTS + 1 == REP_STORAGE_RECORD_DBS, "the core's records come first");

static const char *const db_names[REP_STORAGE_DBS] = {
    [DB_META] = "pbft_meta",   [DB_CKPTS] = "pbft_ckpts",  [DB_CLIENTS] = "pbft_clients",
    [DB_SLOTS] = "pbft_slots", [DB_OUTBOX] = "rep_outbox", [DB_OUTBOX_SEQ] = "rep_outbox_seq",
    [DB_LOG] = "pbft_log",
};

static const pbft_record_kind db_kinds[REP_STORAGE_RECORD_DBS] = {
    [DB_META] = PBFT_REC_META,
    [DB_CKPTS] = PBFT_REC_CHECKPOINT,
    [DB_CLIENTS] = PBFT_REC_CLIENT,
    [DB_SLOTS] = PBFT_REC_SLOT,
};

#define META_KEY "meta"
#define NEW_VIEW_KEY "new_view"

struct rep_storage {
    char dir[REP_STORAGE_DIR_BYTES_MAX];
    sm_store *store;
    sm_adapter *adapter;
    rep_outbox *outbox;
    MDB_dbi dbi[REP_STORAGE_DBS];
    bool failed;         /* a persist failed: nothing more may be written */
    uint64_t log_retain; /* seqs of the retained log below the stable checkpoint */
    rep_storage_stats stats;
    /* The glue's copies of one batch, here so execute does not allocate. */
    sm_request reqs[PBFT_BATCH_REQUESTS_MAX];
    sm_reply reps[PBFT_BATCH_REQUESTS_MAX];
};

/* ---- keys ---- */

static void seq_key(uint64_t seq, uint8_t key[SEQ_KEY_BYTES]) {
    for (int i = SEQ_KEY_BYTES - 1; i >= 0; i--) {
        key[i] = (uint8_t)seq;
        seq >>= 8;
    }
}

static uint64_t seq_from_key(const uint8_t key[SEQ_KEY_BYTES]) {
    uint64_t seq = 0;
    for (int i = 0; i < SEQ_KEY_BYTES; i++) {
        seq = seq << 8 | key[i];
    }
    return seq;
}

/* A key for a person: "seq N" for a well-formed seq key, the text in
 * quotes when printable, hex otherwise (stored keys may be garbage). */
static void describe_key(enum rep_db db, const MDB_val *k, char out[KEY_TEXT_BYTES]) {
    const uint8_t *p = k->mv_data;
    size_t n = k->mv_size < 64 ? k->mv_size : 64;
    bool printable = k->mv_size > 0 && k->mv_size <= 64;
    for (size_t i = 0; i < n; i++) {
        printable = printable && p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"';
    }
    if ((db == DB_SLOTS || db == DB_CKPTS) && k->mv_size == SEQ_KEY_BYTES) {
        snprintf(out, KEY_TEXT_BYTES, "seq %llu", (unsigned long long)seq_from_key(p));
    } else if (printable) {
        snprintf(out, KEY_TEXT_BYTES, "\"%.*s\"", (int)n, (const char *)p);
    } else {
        size_t w = (size_t)snprintf(out, KEY_TEXT_BYTES, "%zu bytes 0x", k->mv_size);
        for (size_t i = 0; i < n && w + 3 < KEY_TEXT_BYTES; i++) {
            w += (size_t)snprintf(out + w, KEY_TEXT_BYTES - w, "%02x", p[i]);
        }
    }
}

static int lmdb_fail(const rep_storage *s, const char *what, enum rep_db db, const MDB_val *k,
                     int rc) {
    char key[KEY_TEXT_BYTES] = "-";
    if (k != NULL) {
        describe_key(db, k, key);
    }
    fprintf(stderr, "storage %s: %s %s key %s: %s%s\n", s->dir, what, db_names[db], key,
            mdb_strerror(rc), rc == MDB_MAP_FULL ? " (raise the map size)" : "");
    return TB_ERR_IO;
}

static int corrupt(const rep_storage *s, enum rep_db db, const MDB_val *k, const char *why) {
    char key[KEY_TEXT_BYTES];
    describe_key(db, k, key);
    fprintf(stderr,
            "storage %s: %s key %s: %s (the store is corrupt: restore it from a backup or "
            "rebuild this replica by state transfer)\n",
            s->dir, db_names[db], key, why);
    return TB_ERR_INVALID;
}

/* ---- the application: the adapter behind pbft_app (see sm_adapter.h) ---- */

static int app_execute(void *ctx, uint64_t seq, uint64_t time_ms, const pbft_request *reqs,
                       size_t n, pbft_result *results) {
    rep_storage *s = ctx;
    if (n > PBFT_BATCH_REQUESTS_MAX) {
        return TB_ERR_TOO_LARGE;
    }
    for (size_t i = 0; i < n; i++) {
        s->reqs[i] = (sm_request){reqs[i].client, reqs[i].number, reqs[i].op, reqs[i].op_len};
    }
    int rc = sm_adapter_execute(s->adapter, seq, time_ms, s->reqs, n, s->reps);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        results[i] = (pbft_result){s->reps[i].result, s->reps[i].result_len, s->reps[i].ttl_ms};
    }
    return rc;
}

static void app_digest(void *ctx, uint8_t out[PROTO_DIGEST_BYTES]) {
    sm_adapter_digest(((rep_storage *)ctx)->adapter, out);
}

static int app_checkpoint(void *ctx, uint64_t seq) {
    return sm_adapter_checkpoint(((rep_storage *)ctx)->adapter, seq);
}

static void app_release(void *ctx, uint64_t seq) {
    sm_adapter_release(((rep_storage *)ctx)->adapter, seq);
}

static int app_export_manifest(void *ctx, uint64_t seq, uint32_t chunk_bytes, uint64_t *total,
                               uint8_t (**hashes)[PROTO_DIGEST_BYTES], size_t *n) {
    return sm_adapter_export_manifest(((rep_storage *)ctx)->adapter, seq, chunk_bytes, total,
                                      hashes, n);
}

static int app_export_read(void *ctx, uint64_t seq, uint64_t off, uint8_t *buf, size_t len) {
    return sm_adapter_export_read(((rep_storage *)ctx)->adapter, seq, off, buf, len);
}

static int app_import_begin(void *ctx, uint64_t seq, uint64_t total) {
    return sm_adapter_import_begin(((rep_storage *)ctx)->adapter, seq, total);
}

static int app_import_write(void *ctx, uint64_t seq, uint64_t off, const uint8_t *data,
                            size_t len) {
    return sm_adapter_import_write(((rep_storage *)ctx)->adapter, seq, off, data, len);
}

static int app_import_finish(void *ctx, uint64_t seq, const uint8_t expected[PROTO_DIGEST_BYTES]) {
    return sm_adapter_import_finish(((rep_storage *)ctx)->adapter, seq, expected);
}

/* E-stops and safe-state actuations skip the batching delay (sm.h). */
static bool app_priority(void *ctx, const uint8_t *op, size_t len) {
    (void)ctx;
    return sm_op_is_priority(op, len);
}

int rep_storage_export_inline(rep_storage *s) {
    char spool[REP_STORAGE_DIR_BYTES_MAX + 16];
    snprintf(spool, sizeof spool, "%s/transfer", s->dir);
    return sm_adapter_spool(s->adapter, spool, false);
}

pbft_app rep_storage_app(rep_storage *s) {
    return (pbft_app){.ctx = s,
                      .execute = app_execute,
                      .digest = app_digest,
                      .checkpoint = app_checkpoint,
                      .release = app_release,
                      .export_manifest = app_export_manifest,
                      .export_read = app_export_read,
                      .import_begin = app_import_begin,
                      .import_write = app_import_write,
                      .import_finish = app_import_finish,
                      .priority = app_priority};
}

sm_store *rep_storage_sm(rep_storage *s) {
    return s->store;
}

/* ---- open and close ---- */

/* The named databases are created in the adapter's transaction, so that
 * the environment sees one writer only, and committed at once: a handle
 * opened in a transaction is usable by later ones only after it commits. */
static int open_dbs(rep_storage *s) {
    MDB_txn *txn = sm_adapter_txn(s->adapter);
    if (txn == NULL) {
        fprintf(stderr, "storage %s: cannot begin a write transaction\n", s->dir);
        return TB_ERR_IO;
    }
    for (int db = 0; db < REP_STORAGE_DBS; db++) {
        int rc = mdb_dbi_open(txn, db_names[db], MDB_CREATE, &s->dbi[db]);
        if (rc != 0) {
            sm_adapter_abort(s->adapter);
            return lmdb_fail(s, "opening", (enum rep_db)db, NULL, rc);
        }
    }
    int rc = sm_adapter_commit(s->adapter);
    if (rc != 0) {
        fprintf(stderr, "storage %s: cannot commit its databases: %s\n", s->dir, tb_strerror(rc));
    }
    return rc;
}

void rep_storage_set_outbox_window(rep_storage *s, uint64_t seqs) {
    rep_outbox_set_retention(s->outbox, seqs);
}

void rep_storage_set_log_retain(rep_storage *s, uint64_t seqs) {
    s->log_retain = seqs;
}

int rep_storage_log_read(void *ctx, uint64_t seq, uint8_t **data, size_t *len) {
    rep_storage *s = ctx;
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(sm_store_env(s->store), NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        return TB_ERR_IO;
    }
    uint8_t key[SEQ_KEY_BYTES];
    seq_key(seq, key);
    MDB_val k = {SEQ_KEY_BYTES, key}, v;
    rc = mdb_get(txn, s->dbi[DB_LOG], &k, &v);
    if (rc == 0) {
        *data = malloc(v.mv_size ? v.mv_size : 1);
        if (*data == NULL) {
            rc = TB_ERR_NOMEM;
        } else {
            memcpy(*data, v.mv_data, v.mv_size);
            *len = v.mv_size;
        }
    } else {
        rc = rc == MDB_NOTFOUND ? TB_ERR_NOT_FOUND : TB_ERR_IO;
    }
    mdb_txn_abort(txn);
    return rc;
}

uint64_t rep_storage_log_entries(rep_storage *s) {
    MDB_txn *txn = NULL;
    MDB_stat st = {0};
    if (mdb_txn_begin(sm_store_env(s->store), NULL, MDB_RDONLY, &txn) == 0) {
        (void)mdb_stat(txn, s->dbi[DB_LOG], &st);
        mdb_txn_abort(txn);
    }
    return st.ms_entries;
}

/* Deletes retained-log entries more than log_retain seqs below the stable
 * checkpoint, oldest first, a bounded number per commit. */
static int log_prune(rep_storage *s, MDB_txn *txn, uint64_t stable) {
    if (stable <= s->log_retain) {
        return 0;
    }
    uint64_t horizon = stable - s->log_retain;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, s->dbi[DB_LOG], &cur);
    MDB_val k, v;
    for (int n = 0; rc == 0 && n < REP_PUSH_PRUNE_PER_COMMIT_MAX; n++) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        if (rc != 0 || k.mv_size != SEQ_KEY_BYTES || seq_from_key(k.mv_data) >= horizon) {
            break;
        }
        rc = mdb_cursor_del(cur, 0);
        s->stats.records_deleted += rc == 0;
    }
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : lmdb_fail(s, "pruning", DB_LOG, NULL, rc);
}

int rep_storage_open(const char *dir, const char *admin_principal, size_t map_bytes,
                     uint64_t history_window, rep_storage **out) {
    *out = NULL;
    if (dir == NULL || admin_principal == NULL || strlen(dir) >= REP_STORAGE_DIR_BYTES_MAX) {
        fprintf(stderr,
                "storage: a data directory (shorter than %d bytes) and an admin "
                "principal are required\n",
                REP_STORAGE_DIR_BYTES_MAX);
        return TB_ERR_INVALID;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "storage %s: cannot create the directory: %s\n", dir, strerror(errno));
        return TB_ERR_IO;
    }
    int rc = TB_ERR_NOMEM;
    rep_storage *s = calloc(1, sizeof *s);
    if (s == NULL) {
        goto fail;
    }
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    sm_options opt = {.admin = admin_principal,
                      .map_bytes = map_bytes,
                      .extra_dbs = REP_STORAGE_DBS,
                      .history_window = history_window};
    rc = sm_store_open(dir, &opt, &s->store);
    if (rc != 0) {
        goto fail;
    }
    s->log_retain = REP_LOG_RETAIN_DEFAULT;
    rc = sm_adapter_create(s->store, &s->adapter);
    rc = rc ? rc : rep_outbox_create(&s->outbox);
    if (rc != 0) {
        goto fail;
    }
    /* State transfer spools to "transfer" in the data directory, exporting
     * on a thread of its own (statemachine/spool.c). */
    char spool[REP_STORAGE_DIR_BYTES_MAX + 16];
    snprintf(spool, sizeof spool, "%s/transfer", dir);
    rc = sm_adapter_spool(s->adapter, spool, true);
    if (rc != 0) {
        fprintf(stderr, "storage %s: cannot use %s for state transfer: %s\n", dir, spool,
                tb_strerror(rc));
        goto fail;
    }
    rc = open_dbs(s);
    if (rc != 0) {
        goto fail;
    }
    *out = s;
    return 0;
fail:
    rep_storage_close(s);
    return rc;
}

void rep_storage_close(rep_storage *s) {
    if (s == NULL) {
        return;
    }
    if (s->adapter != NULL) {
        sm_adapter_free(s->adapter); /* aborts the cycle's transaction */
    }
    if (s->store != NULL) {
        sm_store_close(s->store);
    }
    rep_outbox_free(s->outbox);
    free(s);
}

void rep_storage_abort(rep_storage *s) {
    sm_adapter_abort(s->adapter);
    rep_outbox_forget(s->outbox);
}

void rep_storage_stats_get(const rep_storage *s, rep_storage_stats *out) {
    *out = s->stats;
}

/* ---- persist ---- */

static int clients_clear(rep_storage *s, MDB_txn *txn) {
    MDB_stat st;
    int rc = mdb_stat(txn, s->dbi[DB_CLIENTS], &st);
    if (rc == 0) {
        rc = mdb_drop(txn, s->dbi[DB_CLIENTS], 0); /* 0: empty it, keep the handle */
    }
    if (rc != 0) {
        return lmdb_fail(s, "clearing", DB_CLIENTS, NULL, rc);
    }
    s->stats.records_deleted += st.ms_entries;
    return 0;
}

/* Where a record goes: its database and key (in buf for seq keys). */
static int record_key(const pbft_record *r, enum rep_db *db, MDB_val *k,
                      uint8_t buf[SEQ_KEY_BYTES]) {
    switch (r->kind) {
    case PBFT_REC_META:
        *db = DB_META;
        *k = (MDB_val){strlen(META_KEY), (void *)META_KEY};
        return 0;
    case PBFT_REC_NEW_VIEW:
        *db = DB_META;
        *k = (MDB_val){strlen(NEW_VIEW_KEY), (void *)NEW_VIEW_KEY};
        return 0;
    case PBFT_REC_SLOT:
    case PBFT_REC_CHECKPOINT:
    case PBFT_REC_LOG:
        *db = r->kind == PBFT_REC_SLOT ? DB_SLOTS : r->kind == PBFT_REC_LOG ? DB_LOG : DB_CKPTS;
        seq_key(r->seq, buf);
        *k = (MDB_val){SEQ_KEY_BYTES, buf};
        return 0;
    case PBFT_REC_CLIENT: {
        size_t len = r->client != NULL ? strlen(r->client) : 0;
        *db = DB_CLIENTS;
        *k = (MDB_val){len, (void *)r->client};
        return len > 0 && len <= REP_STORAGE_CLIENT_KEY_BYTES_MAX ? 0 : TB_ERR_INVALID;
    }
    case PBFT_REC_CLIENTS_CLEAR:
        break;
    }
    return TB_ERR_INVALID;
}

static int write_record(rep_storage *s, MDB_txn *txn, const pbft_record *r) {
    static uint8_t empty[1];
    if (r->kind == PBFT_REC_CLIENTS_CLEAR) {
        return clients_clear(s, txn);
    }
    enum rep_db db = DB_META;
    uint8_t buf[SEQ_KEY_BYTES];
    MDB_val k;
    if (record_key(r, &db, &k, buf) != 0) {
        /* The core made it: a bad kind or client name is our own bug. */
        fprintf(stderr, "storage %s: record of kind %d has no valid key\n", s->dir, (int)r->kind);
        return TB_ERR_INVALID;
    }
    if (r->del) {
        int rc = mdb_del(txn, s->dbi[db], &k, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND) {
            return lmdb_fail(s, "deleting from", db, &k, rc);
        }
        s->stats.records_deleted += rc == 0;
        return 0;
    }
    MDB_val v = {r->len, r->len > 0 ? (void *)r->data : empty};
    int rc = mdb_put(txn, s->dbi[db], &k, &v, 0);
    if (rc != 0) {
        return lmdb_fail(s, "writing to", db, &k, rc);
    }
    s->stats.records_put++;
    s->stats.bytes_written += k.mv_size + v.mv_size;
    return 0;
}

static rep_outbox_dbs outbox_dbs(const rep_storage *s) {
    return (rep_outbox_dbs){s->dbi[DB_OUTBOX], s->dbi[DB_OUTBOX_SEQ]};
}

int rep_storage_persist(rep_storage *s, const pbft_ready *rd) {
    if (s->failed) {
        return TB_ERR_STATE;
    }
    int rc = 0;
    if (rd->n_records > 0) {
        MDB_txn *txn = sm_adapter_txn(s->adapter);
        if (txn == NULL) {
            fprintf(stderr, "storage %s: cannot begin a write transaction\n", s->dir);
            rc = TB_ERR_IO;
            goto fail;
        }
        for (size_t i = 0; i < rd->n_records; i++) {
            rc = write_record(s, txn, &rd->records[i]);
            if (rc != 0) {
                goto fail;
            }
        }
    }
    if (rd->n_stable > 0) {
        MDB_txn *txn = sm_adapter_txn(s->adapter);
        rc = txn == NULL ? TB_ERR_IO : log_prune(s, txn, rd->stable[rd->n_stable - 1].seq);
        if (rc != 0) {
            goto fail;
        }
    }
    if (rd->n_executed > 0 || rd->transferred) {
        /* The commands executed in this cycle, in its commit: pushed after it. */
        MDB_txn *txn = sm_adapter_txn(s->adapter);
        rc = txn == NULL ? TB_ERR_IO : rep_outbox_write(s->outbox, txn, outbox_dbs(s), rd);
        if (rc != 0) {
            goto fail;
        }
    } else {
        rep_outbox_forget(s->outbox);
    }
    /* Also when there are no records: what the state machine executed in
     * this cycle must be durable before its replies go out. */
    rc = sm_adapter_commit(s->adapter);
    if (rc != 0) {
        fprintf(stderr, "storage %s: commit failed: %s\n", s->dir, tb_strerror(rc));
        goto fail;
    }
    s->stats.commits++;
    return 0;
fail:
    sm_adapter_abort(s->adapter);
    rep_outbox_forget(s->outbox);
    s->failed = true;
    return rc;
}

/* ---- restore ---- */

/* Checks that a stored record is what its key says, beyond what the core
 * checks itself: the core cannot tell which key a record came from. On
 * success *seq and name (CLIENT) are what to hand to the core. */
static bool key_is(const MDB_val *k, const char *name) {
    return k->mv_size == strlen(name) && memcmp(k->mv_data, name, k->mv_size) == 0;
}

static const char *check_record(enum rep_db db, const MDB_val *k, const MDB_val *v, uint64_t *seq,
                                char name[REP_STORAGE_CLIENT_KEY_BYTES_MAX + 1],
                                pbft_record_kind *kind) {
    const uint8_t *d = v->mv_data;
    *seq = 0;
    name[0] = '\0';
    *kind = db_kinds[db];
    if (db == DB_META && key_is(k, NEW_VIEW_KEY)) {
        *kind = PBFT_REC_NEW_VIEW;
        Twinbft__Signed *s = twinbft__signed__unpack(NULL, v->mv_size, d);
        bool ok = s != NULL;
        twinbft__signed__free_unpacked(s, NULL);
        return ok ? NULL : "the stored NEW-VIEW does not decode";
    }
    if (db == DB_META) {
        if (!key_is(k, META_KEY)) {
            return "unexpected key (the keys are \"meta\" and \"new_view\")";
        }
        Twinbft__MetaRecord *m = twinbft__meta_record__unpack(NULL, v->mv_size, d);
        bool ok = m != NULL;
        twinbft__meta_record__free_unpacked(m, NULL);
        return ok ? NULL : "the meta record does not decode";
    }
    if (db == DB_CLIENTS) {
        if (k->mv_size == 0 || k->mv_size > REP_STORAGE_CLIENT_KEY_BYTES_MAX ||
            memchr(k->mv_data, '\0', k->mv_size) != NULL) {
            return "a client key must be a name of 1..128 bytes without NUL";
        }
        memcpy(name, k->mv_data, k->mv_size);
        name[k->mv_size] = '\0';
        Twinbft__ClientEntry *e = twinbft__client_entry__unpack(NULL, v->mv_size, d);
        bool ok = e != NULL;
        bool same = ok && e->client != NULL && strcmp(e->client, name) == 0;
        twinbft__client_entry__free_unpacked(e, NULL);
        if (!ok) {
            return "the client entry does not decode";
        }
        return same ? NULL : "the client entry names another client";
    }
    if (k->mv_size != SEQ_KEY_BYTES) {
        return "a seq key must be 8 bytes";
    }
    *seq = seq_from_key(k->mv_data);
    uint64_t rec_seq = 0;
    bool ok = false;
    if (db == DB_SLOTS) {
        Twinbft__SlotRecord *r = twinbft__slot_record__unpack(NULL, v->mv_size, d);
        ok = r != NULL;
        rec_seq = ok ? r->seq : 0;
        twinbft__slot_record__free_unpacked(r, NULL);
    } else {
        Twinbft__CheckpointRecord *r = twinbft__checkpoint_record__unpack(NULL, v->mv_size, d);
        ok = r != NULL;
        rec_seq = ok ? r->seq : 0;
        twinbft__checkpoint_record__free_unpacked(r, NULL);
    }
    if (!ok) {
        return "the record does not decode";
    }
    return rec_seq == *seq ? NULL : "the record is for another seq than its key";
}

/* Walks one database in key order: checks every record and, when node is
 * not NULL, feeds it to the node. */
static int restore_db(rep_storage *s, MDB_txn *txn, enum rep_db db, pbft_node *node) {
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, s->dbi[db], &cur);
    if (rc != 0) {
        return lmdb_fail(s, "reading", db, NULL, rc);
    }
    MDB_val k, v;
    char name[REP_STORAGE_CLIENT_KEY_BYTES_MAX + 1];
    int lrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (; lrc == 0; lrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t seq = 0;
        pbft_record_kind kind = db_kinds[db];
        const char *why = check_record(db, &k, &v, &seq, name, &kind);
        if (why != NULL) {
            rc = corrupt(s, db, &k, why);
            goto done;
        }
        if (node == NULL) {
            continue;
        }
        rc = pbft_node_restore_record(node, kind, seq, db == DB_CLIENTS ? name : NULL, v.mv_data,
                                      v.mv_size);
        if (rc != 0) {
            rc = corrupt(s, db, &k, "the consensus core refused the record");
            goto done;
        }
        s->stats.restored++;
    }
    if (lrc != MDB_NOTFOUND) {
        rc = lmdb_fail(s, "reading", db, NULL, lrc);
    }
done:
    mdb_cursor_close(cur);
    return rc;
}

int rep_storage_restore(rep_storage *s, pbft_node *node, uint64_t now_ms) {
    MDB_txn *txn = NULL;
    s->stats.restored = 0;
    /* A read transaction of its own: the records are committed, and the
     * adapter may hold the cycle's write transaction (MDB_NOTLS allows both
     * on one thread). */
    int rc = mdb_txn_begin(sm_store_env(s->store), NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        return lmdb_fail(s, "reading", DB_META, NULL, rc);
    }
    /* Two passes: every record is checked before the first reaches the
     * node, so bad data leaves the node untouched (it holds what it was fed
     * until restore_done). */
    for (int pass = 0; pass < 2; pass++) {
        for (int db = 0; db < REP_STORAGE_RECORD_DBS; db++) {
            rc = restore_db(s, txn, (enum rep_db)db, pass == 0 ? NULL : node);
            if (rc != 0) {
                goto fail;
            }
        }
    }
    mdb_txn_abort(txn);
    txn = NULL;
    rc = pbft_node_restore_done(node, now_ms);
    if (rc != 0) {
        fprintf(stderr,
                "storage %s: the consensus core refused the %llu stored records as a whole "
                "(%s): the store is corrupt\n",
                s->dir, (unsigned long long)s->stats.restored, tb_strerror(rc));
    }
    return rc;
fail:
    mdb_txn_abort(txn);
    return rc;
}

/* ---- the outbox and reads between cycles ---- */

size_t rep_storage_new_pushes(const rep_storage *s, const rep_push **out) {
    return rep_outbox_new(s->outbox, out);
}

int rep_storage_read_begin(rep_storage *s, MDB_txn **txn, uint64_t *executed) {
    *executed = 0;
    int rc = mdb_txn_begin(sm_store_env(s->store), NULL, MDB_RDONLY, txn);
    if (rc != 0) {
        *txn = NULL;
        return lmdb_fail(s, "reading", DB_META, NULL, rc);
    }
    MDB_val k = {strlen(META_KEY), (void *)META_KEY}, v;
    rc = mdb_get(*txn, s->dbi[DB_META], &k, &v);
    if (rc == 0) {
        Twinbft__MetaRecord *m = twinbft__meta_record__unpack(NULL, v.mv_size, v.mv_data);
        if (m == NULL) {
            mdb_txn_abort(*txn);
            *txn = NULL;
            return corrupt(s, DB_META, &k, "the meta record does not decode");
        }
        *executed = m->executed;
        twinbft__meta_record__free_unpacked(m, NULL);
    } else if (rc != MDB_NOTFOUND) {
        mdb_txn_abort(*txn);
        *txn = NULL;
        return lmdb_fail(s, "reading", DB_META, &k, rc);
    }
    /* Between cycles the state machine's bookkeeping is as committed. */
    uint64_t applied = sm_store_applied(s->store);
    *executed = applied > *executed ? applied : *executed;
    return 0;
}

int rep_storage_outbox_horizon(rep_storage *s, MDB_txn *txn, uint64_t *out) {
    return rep_outbox_horizon(txn, outbox_dbs(s), out);
}

int rep_storage_outbox_read(rep_storage *s, MDB_txn *txn, const char *to, uint64_t after_seq,
                            uint32_t after_index, rep_push_visit visit, void *ctx) {
    return rep_outbox_read(txn, outbox_dbs(s), to, after_seq, after_index, visit, ctx);
}
