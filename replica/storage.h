/* A replica's durable storage: one LMDB environment holding the state
 * machine's tables (statemachine/sm.h) and the consensus core's records
 * (consensus/pbft.h, pbft_record), written together in one fsync'd commit
 * per ready (group commit, DESIGN.md "Storage").
 *
 * Named databases of the environment, besides the state machine's own:
 *   pbft_meta     key "meta"                    the MetaRecord
 *   pbft_slots    8-byte big-endian seq         SlotRecords
 *   pbft_ckpts    8-byte big-endian seq         CheckpointRecords
 *   pbft_clients  client name (no NUL)          ClientEntries
 *   rep_outbox    principal 0x00 seq index      the packed Reply of a command
 *   rep_outbox_seq seq index principal          (empty): the outbox by seq, to prune it
 * (seq: 8 bytes, index: 4 bytes, both big-endian.) Big-endian keys make
 * LMDB's byte order the numeric order, so restore feeds the log back in
 * seq order and a subscriber reads its commands in (seq, index) order.
 *
 * The outbox: what the subscriptions of replica/daemon.c push. A request
 * whose result is addressed to principals (sm_result_addressees: an
 * approved command's `to`, placement agents) gets one entry per
 * addressee, whose value is the requester's Reply as the core produced it
 * (leaf, index, count, path, signed root). Entries are written by the
 * persist of the ready that executed the request, in the same commit; a
 * reply the core re-sends for a duplicate request adds nothing. Retention:
 * an entry is pruned once it is more than the outbox window below the
 * executed seq, at most REP_PUSH_PRUNE_PER_COMMIT_MAX per commit (so one
 * commit's work stays bounded; the rest goes in the following commits).
 * Batches skipped by a state transfer (a snapshot) leave no entries here.
 *
 * Life of a replica:
 *   rep_storage_open → pbft_node_create with rep_storage_app() as cfg.app
 *   → rep_storage_restore → loop { step/tick; pbft_node_ready;
 *   rep_storage_persist; send rd.msgs; pbft_node_advance;
 *   pbft_node_durable (at once: every commit is synced) }
 *   → pbft_node_free → rep_storage_close.
 *
 * Errors: every function returns 0 or a negative tb_err (proto/tb_err.h)
 * and writes a message naming the directory, database and key to stderr.
 * A failed persist is fatal for the replica: the cycle's writes are lost,
 * the state is what the last commit left, and every later persist returns
 * TB_ERR_STATE; the host must stop (and restart from what is durable).
 *
 * Threading: one thread, the node's. */
#ifndef REP_STORAGE_H
#define REP_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "consensus/pbft.h"
#include "statemachine/sm.h"

enum {
    /* The named databases this module adds to the state machine's; the
     * first REP_STORAGE_RECORD_DBS hold the core's records. */
    REP_STORAGE_DBS = 7,
    REP_STORAGE_RECORD_DBS = 4,
    REP_PUSH_PRUNE_PER_COMMIT_MAX = 4096,
    /* Longest client name stored as a key (LMDB's default key limit is 511). */
    REP_STORAGE_CLIENT_KEY_BYTES_MAX = PBFT_CLIENT_NAME_BYTES_MAX,
};

_Static_assert(REP_STORAGE_CLIENT_KEY_BYTES_MAX <= 511, "client keys must fit LMDB's key limit");

typedef struct rep_storage rep_storage;

/* Counters for metrics, since open. bytes_written counts the keys and
 * values of the core's records put (not the state machine's writes, which
 * the adapter makes inside the same commit). */
typedef struct rep_storage_stats {
    uint64_t commits;         /* durable commits, one per persist */
    uint64_t records_put;     /* META/SLOT/CHECKPOINT/CLIENT puts */
    uint64_t records_deleted; /* deletes, and client records dropped by CLIENTS_CLEAR */
    uint64_t bytes_written;
    uint64_t restored; /* records fed to the node by the last restore */
} rep_storage_stats;

/* Opens (creating if needed) the environment in dir; dir itself is created
 * (mode 0700) when missing, its parent must exist. admin: the bootstrap
 * admin principal (sm_options.admin; TB_ERR_MISMATCH if an existing store
 * was created with another). map_bytes: the LMDB map size (0: the state
 * machine's default). history_window: sm_options.history_window (the
 * cluster's; 0 keeps every event). Every commit is fsync'd. *out is owned
 * by the caller (rep_storage_close). TB_ERR_IO, TB_ERR_NOMEM,
 * TB_ERR_MISMATCH. */
int rep_storage_open(const char *dir, const char *admin_principal, size_t map_bytes,
                     uint64_t history_window, rep_storage **out);

/* The retained log's length in seqs below the stable checkpoint (default
 * REP_LOG_RETAIN_DEFAULT): older LOG records are deleted over the next
 * commits, REP_PUSH_PRUNE_PER_COMMIT_MAX at a time. */
void rep_storage_set_log_retain(rep_storage *s, uint64_t seqs);
/* pbft_log.read over the retained log (ctx: the rep_storage), from a read
 * transaction: only what is durable is served. */
int rep_storage_log_read(void *ctx, uint64_t seq, uint8_t **data, size_t *len);
/* Entries in the retained log now. */
uint64_t rep_storage_log_entries(rep_storage *s);

/* State-transfer exports are made at once, in the caller's thread, not on
 * a thread of their own: for tests whose steps must not race an export. */
int rep_storage_export_inline(rep_storage *s);

/* The outbox's retention, in seqs below the executed one (default
 * REP_OUTBOX_WINDOW_DEFAULT); a smaller one takes effect over the next
 * commits, REP_PUSH_PRUNE_PER_COMMIT_MAX entries at a time. */
void rep_storage_set_outbox_window(rep_storage *s, uint64_t seqs);

/* Closes: the open transaction (writes of a cycle not persisted) is
 * aborted, as a crash would lose it. Free the node that uses
 * rep_storage_app() first. NULL is a no-op. */
void rep_storage_close(rep_storage *s);

/* The state machine as the node's application (pbft_config.app). Valid
 * until rep_storage_close. */
pbft_app rep_storage_app(rep_storage *s);

/* The state machine's store, for read-only work by the host (queries,
 * digests). Owned by s. */
sm_store *rep_storage_sm(rep_storage *s);

/* Step 1 of pbft.h's ready contract: writes rd->records, in order, into
 * the transaction in which the state machine executed this cycle, then
 * commits it durably. The caller sends rd->msgs only after 0. On error
 * see the top comment (fatal; nothing of the cycle is durable). */
int rep_storage_persist(rep_storage *s, const pbft_ready *rd);

/* Restart: after pbft_node_create and before the first step/tick, checks
 * every stored record (key well formed, record decodes, record names its
 * key), feeds them to pbft_node_restore_record (meta, checkpoints, clients,
 * slots; each database in key order), then calls pbft_node_restore_done.
 * A fresh store has no records and restores nothing. Bad stored data is
 * TB_ERR_INVALID with a message naming the database and key; the node must
 * then be freed, not used. */
int rep_storage_restore(rep_storage *s, pbft_node *node, uint64_t now_ms);

void rep_storage_stats_get(const rep_storage *s, rep_storage_stats *out);
/* Drops the cycle's writes (the state machine's and the outbox's) without
 * committing them: a turn that failed half way. */
void rep_storage_abort(rep_storage *s);

/* One outbox entry: the command at (seq, index) for principal `to`. */
typedef struct rep_push {
    const char *to;
    uint64_t seq;
    uint32_t index;
    const uint8_t *reply; /* packed Reply */
    size_t reply_len;
} rep_push;

/* The outbox entries the last successful persist wrote, in (seq, index,
 * to) order: what to push once that commit's messages are sent. *out is
 * owned by s, valid until the next persist or close. */
size_t rep_storage_new_pushes(const rep_storage *s, const rep_push **out);

/* A read transaction on the committed state, between cycles (the ready
 * is persisted and no step/tick has run since), and the seq that state
 * reflects: the executed seq committed with it, or the state machine's
 * last applied seq when that is later (a checkpoint commits state ahead
 * of the records, see sm_adapter.h). End it with mdb_txn_abort.
 * TB_ERR_IO, TB_ERR_INVALID (the meta record does not decode). */
int rep_storage_read_begin(rep_storage *s, MDB_txn **txn, uint64_t *executed);

/* The outbox's horizon (SubscribeAck.horizon_seq): at and below this seq
 * it is incomplete, because state transfer skipped those batches or
 * retention pruned them; 0 when it holds everything since genesis. It only
 * grows, in the persist commits. TB_ERR_IO. */
int rep_storage_outbox_horizon(rep_storage *s, MDB_txn *txn, uint64_t *out);

/* Calls visit for each outbox entry of `to` after (after_seq,
 * after_index), in (seq, index) order, until it returns false. The entry's
 * pointers are valid during the call. TB_ERR_IO; TB_ERR_INVALID for a
 * malformed stored key (with a message). */
typedef bool (*rep_push_visit)(void *ctx, const rep_push *p);
int rep_storage_outbox_read(rep_storage *s, MDB_txn *txn, const char *to, uint64_t after_seq,
                            uint32_t after_index, rep_push_visit visit, void *ctx);

#endif
