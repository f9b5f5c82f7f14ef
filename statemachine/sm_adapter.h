/* The state machine as the consensus core's replicated application.
 *
 * The callbacks below have exactly the signatures of consensus/pbft.h's
 * pbft_app, with sm_request and sm_reply standing in for pbft_request and
 * pbft_result (same fields, same order, same meaning). statemachine/ may not
 * include consensus/ (DESIGN.md, layers), so the host builds its pbft_app
 * from these with a few lines of glue that copy the request and result
 * fields; tests/unit/test_sm_adapter.c shows that glue, driving a real
 * pbft_node.
 *
 * Transactions. The adapter begins an LMDB write transaction lazily, at
 * the first callback of a ready cycle that writes, and keeps it open so
 * that everything the node executes in one step/tick lands in it. The
 * host, when it persists a ready (pbft.h: "persist ... in ONE durable
 * commit"), writes its own records into sm_adapter_txn() (in its own named
 * databases of sm_store_env(), see sm_options.extra_dbs) and then calls
 * sm_adapter_commit(); or sm_adapter_abort() to drop the cycle.
 *
 * Checkpoints. checkpoint(seq) is called right after executing seq, at a
 * batch boundary: the adapter commits the open transaction there and opens
 * a read transaction on the committed state, which is the checkpoint's
 * state until release(seq); snapshot(seq) exports from it. Committing at
 * the checkpoint means the state may be durable ahead of the host's record
 * of what was executed (by at most the batches up to that checkpoint).
 * After a crash in that window the node re-executes those batches; the
 * adapter recognises them (seq <= sm_store_applied) and answers them from
 * the event history, which holds every result, without applying anything
 * twice. Kept checkpoints are read transactions and do not survive a
 * restart: snapshot() of one taken before it returns TB_ERR_NOT_FOUND,
 * and the node serves no snapshot until its next checkpoint.
 *
 * Restore commits the cycle's transaction first (the same window as a
 * checkpoint) and imports in a transaction of its own, which it aborts on
 * any error, so a refused snapshot leaves the state as it was.
 *
 * Threading: one thread, the node's (an export spooled in the background
 * runs on its own, on a read transaction it owns). Free the adapter before
 * closing the store. */
#ifndef SM_ADAPTER_H
#define SM_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "proto/crypto.h"
#include "statemachine/sm.h"

enum {
    SM_ADAPTER_CHECKPOINTS_MAX = 32, /* kept at once; the oldest but one is dropped beyond */
};

/* pbft_request's fields. */
typedef struct sm_request {
    const char *client; /* the principal */
    uint64_t number;
    const uint8_t *op;
    size_t op_len;
} sm_request;

/* pbft_result's fields. result is owned by the adapter and valid until its
 * next execute. */
typedef struct sm_reply {
    const uint8_t *result;
    size_t result_len;
    uint64_t ttl_ms;
} sm_reply;

typedef struct sm_adapter sm_adapter;

/* The adapter uses the store (which must outlive it) and owns nothing of
 * it. TB_ERR_NOMEM only. */
int sm_adapter_create(sm_store *store, sm_adapter **out);
/* Aborts an open transaction and releases every kept checkpoint. */
void sm_adapter_free(sm_adapter *a);

/* The write transaction of this cycle (begun if needed), for the host's
 * records. NULL only when LMDB cannot begin one. */
MDB_txn *sm_adapter_txn(sm_adapter *a);
/* Commits the cycle's transaction durably (nothing to do when none is
 * open). On error the cycle's changes are lost and the state is what the
 * last commit left; the host must stop. */
int sm_adapter_commit(sm_adapter *a);
void sm_adapter_abort(sm_adapter *a);

/* The pbft_app callbacks; ctx is the sm_adapter. */
int sm_adapter_execute(void *ctx, uint64_t seq, uint64_t time_ms, const sm_request *reqs, size_t n,
                       sm_reply *results);
void sm_adapter_digest(void *ctx, uint8_t out[PROTO_DIGEST_BYTES]);
int sm_adapter_checkpoint(void *ctx, uint64_t seq);
void sm_adapter_release(void *ctx, uint64_t seq);
int sm_adapter_snapshot(void *ctx, uint64_t seq, uint8_t **out, size_t *out_len);
int sm_adapter_restore(void *ctx, uint64_t seq, const uint8_t *data, size_t len,
                       const uint8_t expected[PROTO_DIGEST_BYTES]);

/* State transfer spooled to disk: pbft_app's streaming callbacks (see
 * statemachine/spool.c). dir is created if missing and holds the exports
 * (kept across restarts: a restarted replica serves its last export at
 * once) and the import in progress. background: exports run on a thread
 * of their own (a replica, so it keeps ordering while it exports); false:
 * at once (tests, the simulator). Until this is called the streaming
 * callbacks find nothing to serve. */
int sm_adapter_spool(sm_adapter *a, const char *dir, bool background);
int sm_adapter_export_manifest(void *ctx, uint64_t seq, uint32_t chunk_bytes, uint64_t *total,
                               uint8_t (**hashes)[PROTO_DIGEST_BYTES], size_t *n);
int sm_adapter_export_read(void *ctx, uint64_t seq, uint64_t off, uint8_t *buf, size_t len);
int sm_adapter_import_begin(void *ctx, uint64_t seq, uint64_t total);
int sm_adapter_import_write(void *ctx, uint64_t seq, uint64_t off, const uint8_t *data, size_t len);
int sm_adapter_import_finish(void *ctx, uint64_t seq, const uint8_t expected[PROTO_DIGEST_BYTES]);

#endif
