/* The state machine as the simulator's application (see app_sm.h). */
#include "tests/sim/app_sm.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "proto/tb_assert.h"
#include "proto/tb_err.h"

/* Small stores: a seed applies a few hundred ops. The map is sparse. */
#define SIM_SM_MAP_BYTES ((size_t)64 << 20)
/* Events of this many seqs are kept (sm_options.history_window): runs are
 * long enough that replicas compact their history and snapshots carry a
 * compacted one. Three of the simulator's log windows, so that a batch
 * replayed after a crash (statemachine/adapter.c) still finds its events. */
#define SIM_SM_HISTORY_WINDOW 24

static void remove_files(const char *dir) {
    static const char *const files[] = {"data.mdb", "lock.mdb"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
}

/* The state-transfer spool (statemachine/spool.c) keeps its files in
 * "transfer" under the store's directory. */
static void remove_spool(const char *dir) {
    char spool[512];
    snprintf(spool, sizeof spool, "%s/transfer", dir);
    DIR *d = opendir(spool);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] != '.') {
                char path[1024];
                snprintf(path, sizeof path, "%s/%s", spool, e->d_name);
                unlink(path);
            }
        }
        closedir(d);
    }
    rmdir(spool);
}

void sim_smapp_remove_dir(const char *dir) {
    remove_files(dir);
    remove_spool(dir);
    rmdir(dir);
}

int sim_smapp_init(sim_smapp *a, const char *dir, bool fresh, const char *admin, uint32_t replica,
                   uint32_t instance, const sim_app_observer *observer) {
    memset(a, 0, sizeof *a);
    a->replica = replica;
    a->instance = instance;
    a->observer = *observer;
    if (fresh) {
        remove_files(dir);
        remove_spool(dir);
    }
    sm_options opt = {.admin = admin,
                      .map_bytes = SIM_SM_MAP_BYTES,
                      .no_sync = true,
                      .history_window = SIM_SM_HISTORY_WINDOW};
    int rc = sm_store_open(dir, &opt, &a->store);
    if (rc != 0) {
        return rc;
    }
    rc = sm_adapter_create(a->store, &a->adapter);
    if (rc == 0) {
        /* Exports at once, not on a thread: the simulator stays deterministic. */
        char spool[512];
        snprintf(spool, sizeof spool, "%s/transfer", dir);
        rc = sm_adapter_spool(a->adapter, spool, false);
        if (rc != 0) {
            sm_adapter_free(a->adapter);
            a->adapter = NULL;
        }
    }
    if (rc != 0) {
        sm_store_close(a->store);
        a->store = NULL;
    }
    return rc;
}

void sim_smapp_free(sim_smapp *a) {
    if (a->adapter != NULL) {
        sm_adapter_free(a->adapter); /* aborts the open transaction */
    }
    if (a->store != NULL) {
        sm_store_close(a->store);
    }
    a->adapter = NULL;
    a->store = NULL;
}

void sim_smapp_persist(sim_smapp *a) {
    TB_ASSERT(sm_adapter_commit(a->adapter) == 0);
}

static int app_execute(void *ctx, uint64_t seq, uint64_t time_ms, const pbft_request *reqs,
                       size_t n, pbft_result *results) {
    sim_smapp *a = ctx;
    if (n > PBFT_BATCH_REQUESTS_MAX) {
        return TB_ERR_TOO_LARGE;
    }
    for (size_t i = 0; i < n; i++) {
        a->reqs[i] = (sm_request){reqs[i].client, reqs[i].number, reqs[i].op, reqs[i].op_len};
    }
    /* A batch whose state a checkpoint committed before a crash lost the
     * host's records is replayed from the history (statemachine/adapter.c):
     * its results are checked, but the state is already past it, so its
     * digest says nothing about seq. */
    bool replayed = seq <= sm_store_applied(a->store);
    int rc = sm_adapter_execute(a->adapter, seq, time_ms, a->reqs, n, a->reps);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        results[i] = (pbft_result){a->reps[i].result, a->reps[i].result_len, a->reps[i].ttl_ms};
    }
    uint8_t digest[PROTO_DIGEST_BYTES];
    sm_adapter_digest(a->adapter, digest);
    a->observer.executed(a->observer.ctx, a->replica, a->instance, seq, reqs, n, results,
                         replayed ? NULL : digest);
    return 0;
}

static void app_digest(void *ctx, uint8_t out[PROTO_DIGEST_BYTES]) {
    sm_adapter_digest(((sim_smapp *)ctx)->adapter, out);
}

static int app_checkpoint(void *ctx, uint64_t seq) {
    return sm_adapter_checkpoint(((sim_smapp *)ctx)->adapter, seq);
}

static void app_release(void *ctx, uint64_t seq) {
    sm_adapter_release(((sim_smapp *)ctx)->adapter, seq);
}

static int app_export_manifest(void *ctx, uint64_t seq, uint32_t chunk_bytes, uint64_t *total,
                               uint8_t (**hashes)[PROTO_DIGEST_BYTES], size_t *n) {
    return sm_adapter_export_manifest(((sim_smapp *)ctx)->adapter, seq, chunk_bytes, total, hashes,
                                      n);
}

static int app_export_read(void *ctx, uint64_t seq, uint64_t off, uint8_t *buf, size_t len) {
    return sm_adapter_export_read(((sim_smapp *)ctx)->adapter, seq, off, buf, len);
}

static int app_import_begin(void *ctx, uint64_t seq, uint64_t total) {
    return sm_adapter_import_begin(((sim_smapp *)ctx)->adapter, seq, total);
}

static int app_import_write(void *ctx, uint64_t seq, uint64_t off, const uint8_t *data,
                            size_t len) {
    return sm_adapter_import_write(((sim_smapp *)ctx)->adapter, seq, off, data, len);
}

static int app_import_finish(void *ctx, uint64_t seq, const uint8_t expected[PROTO_DIGEST_BYTES]) {
    sim_smapp *a = ctx;
    int rc = sm_adapter_import_finish(a->adapter, seq, expected);
    if (rc == 0) {
        uint8_t digest[PROTO_DIGEST_BYTES];
        sm_adapter_digest(a->adapter, digest);
        a->observer.restored(a->observer.ctx, a->replica, a->instance, seq, digest);
    }
    return rc;
}

/* The replicas' safety lane, as the daemon decides it (replica/storage.c). */
static bool app_priority(void *ctx, const uint8_t *op, size_t len) {
    (void)ctx;
    return sm_op_is_priority(op, len);
}

pbft_app sim_smapp_callbacks(sim_smapp *a) {
    return (pbft_app){.ctx = a,
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
