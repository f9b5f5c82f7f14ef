/* The orchestration state machine: registry (sites, nodes, twins,
 * components), placement, scaling, versioned configuration, actuation
 * approval, emergency stop, device shadow, access control and the event
 * history, over LMDB.
 *
 * Operations are packed twinbft.SmOp messages (proto/sm.proto); each yields
 * a packed twinbft.SmResult. A denial is a result (SM_CODE_DENIED and a
 * reason), never an error: the functions below return a negative tb_err
 * only for local faults (storage, memory), after which the caller must abort
 * the write transaction.
 *
 * Determinism: the result and the state digest depend only on the store's
 * state and the arguments of sm_apply (seq, index, consensus time, principal,
 * op bytes). No wall clock, randomness, floating point or unordered
 * iteration reaches a decision; every scan is an LMDB cursor in key order.
 *
 * Transactions: the store never begins a write transaction on its own
 * during apply. The caller begins one (sm_txn_begin, or its own
 * mdb_txn_begin on sm_store_env() so that its records ride in the same
 * commit), applies a batch, and ends with sm_txn_commit or sm_txn_abort
 * (or sm_flush + its own mdb_txn_commit + sm_txn_committed). One write
 * transaction is open at a time.
 *
 * State digest: LtHash (proto/lthash.h) over every entry of the digested
 * tables, kept up to date per change, so a digest costs O(changes). Writes
 * are deduplicated per key until the next flush: a key written k times costs
 * one removal of its value at the last flush and one addition of its final
 * value. The event history is covered by a SHA-256 hash chain whose head is
 * a digested entry, so appending an event costs one SHA-256 update, not a
 * lattice-hash element. Indexes derived from other tables (children of a
 * twin, placements by node, history by twin) are not digested or exported;
 * import rebuilds them.
 *
 * Authorisation (roles are independent bits; "owner" means holding the
 * owner role and owning the twin or one of its ancestors):
 *   ACL grant/revoke, sites, node put/retire ........ admin
 *   node state ...................................... admin, operator, the node's agent
 *   twin create/retire, components, place, scale .... admin, operator, owner
 *                                                     (site-level twins: admin, operator)
 *   config put/delete ............................... admin, operator
 *   policy put/remove, shadow desire ................ operator
 *   shadow report ................................... owner
 *   actuate ......................................... the policy's role (owner: of the
 *                                                     twin); safe-state also operators
 *   e-stop latch .................................... admin, operator; owner (twin scope)
 *   e-stop reset .................................... operator only
 *   query (SmOp.query, ordered) ..................... what sm_query allows (query.c);
 *                                                     it changes nothing but the history
 *
 * Threading: apply, flush, commit, import, digest and recompute run on one
 * thread at a time. sm_query and sm_export may run on other threads at the
 * same time, each on its own read transaction (the environment is opened
 * with MDB_NOTLS). */
#ifndef SM_H
#define SM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "proto/crypto.h"
#include "proto/sm.pb-c.h"

/* Limits. Each is checked where input arrives; exceeding one is a result
 * (SM_REASON_LIMIT or SM_REASON_MALFORMED), never growth. */
enum {
    SM_ID_BYTES_MAX = 64,         /* site, node, twin, component, property names */
    SM_PRINCIPAL_BYTES_MAX = 127, /* certificate identities */
    SM_REVOKED_KEYS_MAX = 32,     /* revoked keys of one name (then revoke the name) */
    SM_OP_BYTES_MAX = 64 * 1024,
    SM_RESULT_BYTES_MAX = 64 * 1024,
    SM_TEXT_BYTES_MAX = 256,       /* site names, e-stop reasons, property values */
    SM_CONFIG_KEY_BYTES_MAX = 256, /* printable ASCII */
    SM_CONFIG_VALUE_BYTES_MAX = 16 * 1024,
    SM_SITES_MAX = 1024,
    SM_NODES_MAX = 1024,
    SM_NODE_LABELS_MAX = 16,
    SM_NODE_LATENCIES_MAX = 64, /* sites a node knows its round trip to */
    SM_NODE_REPLICAS_MAX = 128, /* replicas one node may host */
    SM_TWIN_DEPTH_MAX = 4,      /* site > line > machine > component */
    SM_TWIN_COMPONENTS_MAX = 16,
    SM_COMPONENT_REPLICAS_MAX = 16,
    SM_TWIN_REPLICAS_MAX = 64,  /* sum of max_replicas over a twin's components */
    SM_SHADOW_PROPS_MAX = 64,   /* per side (reported, desired) */
    SM_SHADOW_CHANGES_MAX = 64, /* set + remove entries in one op */
    SM_INTERLOCKS_MAX = 8,
    SM_TWIN_POLICIES_MAX = 32, /* actuators per twin */
    SM_QUERY_ITEMS_MAX = 256,
    SM_QUERY_BYTES_MAX = 1024 * 1024, /* soft budget of one query answer */
    /* The same for a query put through ordering (SmOp.query), whose answer
     * travels in an SmResult: what SM_RESULT_BYTES_MAX leaves after the
     * result's own fields. The answer is trimmed further if needed. */
    SM_ORDERED_QUERY_BYTES_MAX = SM_RESULT_BYTES_MAX - 4 * 1024,
    SM_COMMAND_TTL_MS_DEFAULT = 10 * 1000,
};

enum {
    /* Distinct addressees of one result: a placement result lists at most
     * SM_NODE_REPLICAS_MAX changes in each of added and removed. */
    SM_RESULT_ADDRESSEES_MAX = 2 * SM_NODE_REPLICAS_MAX,
};

/* A placement change encodes in at most 448 bytes (ids, agent, numbers). */
_Static_assert(SM_NODE_REPLICAS_MAX * 448 + 1024 < SM_RESULT_BYTES_MAX,
               "a drained node's moves must fit in one result");
_Static_assert(SM_TWIN_REPLICAS_MAX * 448 + 1024 < SM_RESULT_BYTES_MAX,
               "a twin's placements must fit in one result");

/* Short names for the wire enums of proto/sm.proto. Macros of type int
 * rather than enumerators, so that comparing them with the generated enum
 * fields does not mix enum types. */
#define SM_OK ((int)TWINBFT__SM_CODE__SM_CODE_OK)
#define SM_DENIED ((int)TWINBFT__SM_CODE__SM_CODE_DENIED)
#define SM_CONFLICT ((int)TWINBFT__SM_CODE__SM_CODE_CONFLICT)
#define SM_INVALID ((int)TWINBFT__SM_CODE__SM_CODE_INVALID)

#define SM_ROLE_ADMIN ((uint32_t)TWINBFT__SM_ROLE__SM_ROLE_ADMIN)
#define SM_ROLE_OPERATOR ((uint32_t)TWINBFT__SM_ROLE__SM_ROLE_OPERATOR)
#define SM_ROLE_OWNER ((uint32_t)TWINBFT__SM_ROLE__SM_ROLE_OWNER)
#define SM_ROLE_NODE_AGENT ((uint32_t)TWINBFT__SM_ROLE__SM_ROLE_NODE_AGENT)
#define SM_ROLES_ALL (SM_ROLE_ADMIN | SM_ROLE_OPERATOR | SM_ROLE_OWNER | SM_ROLE_NODE_AGENT)

typedef struct sm_store sm_store;

typedef struct sm_options {
    /* Bootstrap: this principal holds the admin role in a new store. Every
     * replica must be given the same name (it is part of the state). */
    const char *admin;
    /* LMDB map size (0: 1 GiB): the most the store can hold. The data file
     * is sparse but shows this size (the map is written in place). */
    size_t map_bytes;
    unsigned extra_dbs;   /* named databases the host will open in the same environment */
    unsigned readers_max; /* concurrent read transactions (0: 126) */
    /* false (the default) = every commit is fsync'd. true = MDB_NOSYNC:
     * a crash may lose recent commits; only for benchmarks and tests. */
    bool no_sync;
    /* History retention: keep the events of the last history_window seqs
     * (0: keep every event). Older events, and their twin-history index
     * entries, are deleted as each batch starts, and the event chain's
     * value over them is kept as its base (META "hist_base"), so a
     * snapshot still proves the events it carries. It shapes the state:
     * every replica must be given the same. At most
     * SM_COMPACT_PER_BATCH_MAX events go per batch (a window turned on
     * over a long history is caught up over the following batches). */
    uint64_t history_window;
} sm_options;

#define SM_COMPACT_PER_BATCH_MAX 1024

/* Opens (creating if needed) the store in directory dir (which must
 * exist). A new store gets the bootstrap admin; an existing one must have
 * been created with the same admin name (TB_ERR_MISMATCH otherwise).
 * TB_ERR_IO when LMDB fails, with a message on stderr naming dir. */
int sm_store_open(const char *dir, const sm_options *opt, sm_store **out);
/* Aborts an open write transaction, if any, and closes the environment. */
void sm_store_close(sm_store *s);
/* The LMDB environment, for hosts that keep their own tables in it. */
MDB_env *sm_store_env(sm_store *s);
/* The last seq applied (or imported) in the state as of the last flush. */
uint64_t sm_store_applied(const sm_store *s);

int sm_txn_begin(sm_store *s, MDB_txn **out);
/* Flushes (see sm_flush) and commits. On error the transaction is aborted
 * and the store's in-memory digest is back at the last commit. */
int sm_txn_commit(sm_store *s, MDB_txn *txn);
void sm_txn_abort(sm_store *s, MDB_txn *txn);
/* For hosts that commit the transaction themselves: sm_flush folds pending
 * changes into the digest and writes the digest state into txn; after the
 * host's mdb_txn_commit succeeds it calls sm_txn_committed, after an
 * abort sm_txn_aborted (which forgets everything applied in txn). */
int sm_flush(sm_store *s, MDB_txn *txn);
void sm_txn_committed(sm_store *s);
void sm_txn_aborted(sm_store *s);

/* What one applied op produced. result points into the store and is
 * valid until the next sm_apply. ttl_ms: validity window of the result
 * (an approved command's), 0 otherwise. */
typedef struct sm_output {
    const uint8_t *result;
    size_t result_len;
    uint64_t ttl_ms;
    int code;   /* enum sm_code */
    int reason; /* Twinbft__SmReason */
} sm_output;

/* Applies one op (request `index` of the batch at `seq`, consensus time
 * time_ms) on behalf of `principal`, and appends its event. (seq, index)
 * must increase strictly across calls. A malformed op is a result
 * (SM_CODE_INVALID), not an error. Returns 0, or a negative tb_err on a
 * local fault (abort txn). */
int sm_apply(sm_store *s, MDB_txn *txn, uint64_t seq, uint32_t index, uint64_t time_ms,
             const char *principal, const uint8_t *op, size_t op_len, sm_output *out);

/* The state digest. Pending changes are folded first, which needs the
 * write transaction they belong to (txn; NULL when none is pending). */
int sm_digest(sm_store *s, MDB_txn *txn, uint8_t out[PROTO_DIGEST_BYTES]);
/* The digest recomputed from every entry visible in txn (read or write),
 * O(state): for tests and audits of the incremental digest. */
int sm_digest_recompute(sm_store *s, MDB_txn *txn, uint8_t out[PROTO_DIGEST_BYTES]);

/* Counters for benchmarks and metrics. */
typedef struct sm_stats {
    uint64_t ops_applied;
    uint64_t changes_folded;   /* lattice-hash elements removed or added */
    uint64_t keys_folded;      /* distinct keys folded */
    uint64_t revocations;      /* identity revocations applied (see sm_identity_revoked) */
    uint64_t events_compacted; /* history events dropped by the retention window */
} sm_stats;
void sm_store_stats(const sm_store *s, sm_stats *out);

/* The store's size, for operators: the LMDB map (its limit), the part of
 * it in use (the file's high-water mark: freed pages are reused, not
 * returned), and the events kept in the history. */
typedef struct sm_space {
    uint64_t map_bytes;
    uint64_t used_bytes;
    uint64_t history_events;
} sm_space;
int sm_store_space(sm_store *s, sm_space *out);

/* Whether the identity `principal` holding the raw Ed25519 public key `key`
 * (NULL: not known) is revoked, in the committed state (a read transaction
 * of its own). Replicas ask at every client handshake, and for each open
 * client link after a revocation executed (sm_stats.revocations grew). */
int sm_identity_revoked(sm_store *s, const char *principal, const uint8_t key[PROTO_PUBKEY_BYTES],
                        bool *revoked);

/* Snapshot export: the state visible in txn (normally a read transaction
 * kept since a checkpoint), streamed through write() in one deterministic
 * byte sequence (same state, same bytes). Derived indexes are not
 * exported; import rebuilds them. */
typedef int (*sm_write_fn)(void *ctx, const void *data, size_t len);
int sm_export(sm_store *s, MDB_txn *txn, uint64_t seq, sm_write_fn write, void *ctx);
/* The same into a malloc'd buffer (*out, freed by the caller). */
int sm_export_buf(sm_store *s, MDB_txn *txn, uint64_t seq, uint8_t **out, size_t *out_len);

/* Replaces the whole state by a snapshot, inside txn, at seq. The snapshot
 * is checked completely before anything is written: structure, the event
 * hash chain, and its digest against `expected` (NULL: against the digest
 * the snapshot names). TB_ERR_INVALID for a malformed snapshot,
 * TB_ERR_MISMATCH for a digest mismatch: in both cases nothing was
 * written. A storage error (TB_ERR_IO) can happen after writing began; the
 * caller must then abort txn. On success pending changes of txn are
 * superseded. */
int sm_import(sm_store *s, MDB_txn *txn, uint64_t seq, const uint8_t *data, size_t len,
              const uint8_t expected[PROTO_DIGEST_BYTES]);

/* A read-only query (packed SmQuery) by `principal` on the state visible
 * in txn (read or write). Writes a packed SmQueryResult into a malloc'd
 * buffer (*out, freed by the caller). Denials are results. A negative
 * tb_err only for a local fault. */
int sm_query(sm_store *s, MDB_txn *txn, const char *principal, const uint8_t *query, size_t len,
             uint8_t **out, size_t *out_len);

/* The principals a packed SmResult is addressed to, each once, sorted:
 * an approved actuation's command.to, and the agent of every placement in
 * a placement result's added and removed lists (empty agents skipped).
 * Pure: no store needed. TB_ERR_INVALID when the result does not decode,
 * TB_ERR_TOO_LARGE when there would be more than SM_RESULT_ADDRESSEES_MAX
 * (out then holds the first ones; cannot happen within sm.h's limits). */
typedef char sm_principal[SM_PRINCIPAL_BYTES_MAX + 1];
int sm_result_addressees(const uint8_t *result, size_t len,
                         sm_principal out[SM_RESULT_ADDRESSEES_MAX], size_t *n);

/* True iff the op may use the replicas' priority lane (no batching delay):
 * an emergency-stop latch or a safe-state actuation. */
bool sm_op_is_priority(const uint8_t *op, size_t len);

/* Names for people (static strings, never NULL). */
const char *sm_code_name(int code);
const char *sm_reason_name(int reason);

#endif
