/* Internal to statemachine/: the store, its tables, the per-op arena, the
 * digest's change set, and the helpers every operation file uses. */
#ifndef SM_INTERNAL_H
#define SM_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "proto/lthash.h"
#include "proto/tb_assert.h"
#include "proto/tb_err.h"
#include "statemachine/sm.h"

/* Table ids are part of every digest element and of the snapshot format:
 * never renumber. Digested tables are SM_T_FIRST_DIGESTED..SM_T_LAST_DIGESTED;
 * the event table is covered by the hash chain in SM_T_META; the derived
 * indexes are functions of the primary tables, rebuilt on import; SM_T_SYS
 * holds this replica's bookkeeping (lanes, applied seq). */
enum sm_table {
    SM_T_SYS = 0,
    SM_T_META = 1,
    SM_T_ACL = 2,
    SM_T_SITE = 3,
    SM_T_NODE = 4,
    SM_T_TWIN = 5,
    SM_T_COMP = 6,
    SM_T_PLACE = 7,
    SM_T_CONFIG = 8,
    SM_T_POLICY = 9,
    SM_T_ACTSTATE = 10,
    SM_T_ESTOP = 11,
    SM_T_SHADOW = 12,
    SM_T_EVENT = 13,
    SM_T_CHILD = 14,      /* derived: parent \0 child */
    SM_T_NODE_PLACE = 15, /* derived: node \0 twin \0 component \0 replica(be32) */
    SM_T_TWIN_HIST = 16,  /* derived: twin \0 seq(be64) index(be32) */
    SM_TABLES = 17,
    SM_T_FIRST_DIGESTED = SM_T_META,
    SM_T_LAST_DIGESTED = SM_T_SHADOW,
};

/* The roles that run the plant's registry, placement and configuration. */
#define SM_ROLES_MANAGE (SM_ROLE_ADMIN | SM_ROLE_OPERATOR)

static inline bool sm_table_digested(int t) {
    return t >= SM_T_FIRST_DIGESTED && t <= SM_T_LAST_DIGESTED;
}

enum {
    SM_KEY_BYTES_MAX = 511,                 /* LMDB's default maximum key size */
    SM_ARENA_CHUNK_BYTES = 1024 * 1024,     /* the apply path's arenas */
    SM_QUERY_ARENA_BYTES = 64 * 1024,       /* one query's arena (grows if needed) */
    SM_DIRTY_SLOTS = 1 << 15,               /* open-addressing slots of the change set */
    SM_DIRTY_KEYS_MAX = SM_DIRTY_SLOTS / 2, /* flush early beyond this */
    SM_HIST_BYTES = PROTO_DIGEST_BYTES + 8, /* chain head, event count */
    SM_EVENT_BYTES_MAX = SM_OP_BYTES_MAX + SM_RESULT_BYTES_MAX + 1024,
    SM_EVENT_KEY_BYTES = 12,
    SM_ROLE_CACHE_SLOTS = 256,
};

/* The value the last record read saw, so that the write that usually
 * follows need not read it again to capture the digest's old value. Any
 * tracked write or fold forgets it. */
typedef struct sm_read_cache {
    bool valid, present;
    uint8_t table;
    uint8_t key[SM_KEY_BYTES_MAX];
    size_t key_len;
    uint8_t *val;
    size_t val_len, val_cap;
} sm_read_cache;

/* Roles by principal, as of the open write transaction: a pure cache of the
 * ACL table, emptied by any ACL write, abort or import. Used by sm_apply's
 * thread only. */
typedef struct sm_role_cache {
    bool valid;
    uint32_t roles;
    char principal[SM_PRINCIPAL_BYTES_MAX + 1];
} sm_role_cache;

_Static_assert((int)SM_ID_BYTES_MAX * 3 + 8 < (int)SM_KEY_BYTES_MAX,
               "composite keys must fit LMDB keys");
_Static_assert((int)SM_CONFIG_KEY_BYTES_MAX < (int)SM_KEY_BYTES_MAX,
               "config keys must fit LMDB keys");

/* A bump allocator: chunks are kept across resets, so steady-state ops do
 * not call malloc. Allocation failure is a local fault and aborts. */
typedef struct sm_arena_chunk {
    struct sm_arena_chunk *next;
    size_t cap, used;
    uint8_t data[];
} sm_arena_chunk;

typedef struct sm_arena {
    size_t chunk_bytes;
    sm_arena_chunk *head; /* first chunk */
    sm_arena_chunk *cur;  /* chunk being filled */
    ProtobufCAllocator pb;
} sm_arena;

void sm_arena_init(sm_arena *a, size_t chunk_bytes);
void sm_arena_free(sm_arena *a);
void sm_arena_reset(sm_arena *a);
void *sm_arena_alloc(sm_arena *a, size_t n);
void *sm_arena_dup(sm_arena *a, const void *p, size_t n);
char *sm_arena_strndup(sm_arena *a, const void *p, size_t n);

/* One key changed since the last flush: its value then (old) and now (new). */
typedef struct sm_dirty_entry {
    uint64_t hash;
    uint32_t slot;
    uint8_t table;
    bool has_old, has_new;
    uint8_t *key;
    size_t key_len;
    uint8_t *old_val;
    size_t old_len;
    uint8_t *new_val;
    size_t new_len, new_cap;
} sm_dirty_entry;

typedef struct sm_dirty {
    int32_t *slots;          /* index into entries, -1 = empty */
    sm_dirty_entry *entries; /* in first-touch order */
    size_t n;
    sm_arena mem; /* keys and values, reset at each flush */
} sm_dirty;

/* META key of the event chain's value over the compacted events (absent:
 * none compacted, the chain starts from zero). */
#define SM_HIST_BASE_KEY "hist_base"

struct sm_store {
    MDB_env *env;
    MDB_dbi dbi[SM_TABLES];
    char admin[SM_PRINCIPAL_BYTES_MAX + 1];
    /* Digest state including pending changes, and as of the last commit
     * (restored on abort). */
    proto_lthash lanes, lanes_committed;
    uint8_t hist[SM_HIST_BYTES], hist_committed[SM_HIST_BYTES];
    bool hist_dirty;
    uint64_t history_window; /* sm_options.history_window */
    uint64_t applied, applied_committed;
    uint64_t last_seq;   /* (last_seq, last_index): the last event applied */
    uint32_t last_index; /* valid when events_any */
    bool events_any;
    MDB_txn *wtxn; /* the write txn pending changes belong to */
    sm_dirty dirty;
    sm_read_cache read_cache;
    sm_role_cache roles[SM_ROLE_CACHE_SLOTS];
    sm_arena arena;   /* per op */
    uint8_t *scratch; /* digest elements and packed records */
    size_t scratch_cap;
    uint8_t *result_buf; /* SM_RESULT_BYTES_MAX */
    uint8_t *event_buf;  /* SM_EVENT_BYTES_MAX */
    sm_stats stats;
};

/* ---- storage (store.c) ---- */

/* Raw LMDB access on a table. get: 0, TB_ERR_NOT_FOUND or TB_ERR_IO. */
int sm_db_get(sm_store *s, MDB_txn *txn, int table, const void *key, size_t key_len, MDB_val *out);
/* Tracked writes: digested tables record the change for the next flush. */
int sm_db_put(sm_store *s, MDB_txn *txn, int table, const void *key, size_t key_len,
              const void *val, size_t val_len);
/* 0, TB_ERR_NOT_FOUND or TB_ERR_IO. */
int sm_db_del(sm_store *s, MDB_txn *txn, int table, const void *key, size_t key_len);
/* Deletes (tracked) every key that starts with prefix. */
int sm_db_del_prefix(sm_store *s, MDB_txn *txn, int table, const void *prefix, size_t len);
/* True iff some key starts with prefix. */
int sm_db_has_prefix(sm_store *s, MDB_txn *txn, int table, const void *prefix, size_t len,
                     bool *out);
int sm_lmdb_err(int rc, const char *what);
void *sm_scratch(sm_store *s, size_t n);

/* ---- digest (digest.c) ---- */

void sm_dirty_init(sm_dirty *d);
void sm_dirty_free(sm_dirty *d);
/* Records the first-touch value of a key about to change (reads it). */
int sm_dirty_touch(sm_store *s, MDB_txn *txn, int table, const void *key, size_t key_len,
                   sm_dirty_entry **out);
void sm_dirty_set_new(sm_store *s, sm_dirty_entry *e, const void *val, size_t len);
/* Folds the change set into s->lanes and clears it. */
void sm_dirty_fold(sm_store *s);
/* Forgets the change set without folding (its transaction was aborted). */
void sm_dirty_clear(sm_dirty *d);
/* Remembers the value a record read saw (present or not). */
void sm_read_cache_set(sm_store *s, int table, const void *key, size_t key_len, const MDB_val *val);
/* Empties the caches of state (after an abort or import). */
void sm_caches_clear(sm_store *s);
/* The lattice-hash element of one entry, in s->scratch. */
const uint8_t *sm_element(sm_store *s, int table, const void *key, size_t key_len, const void *val,
                          size_t val_len, size_t *len);
/* Appends one event to the hash chain head. */
void sm_hist_chain(uint8_t hist[SM_HIST_BYTES], const uint8_t *key, size_t key_len,
                   const uint8_t *val, size_t val_len);

/* ---- per-op context (apply.c) ---- */

typedef struct sm_ctx {
    sm_store *s;
    MDB_txn *txn;
    sm_arena *arena; /* everything decoded or built for this op */
    uint64_t seq;
    uint32_t index;
    uint64_t time_ms;
    const char *principal;
    uint32_t roles;
    Twinbft__SmResult *res;
    const char *twin; /* the twin the op is about, for the history index */
    bool cached;      /* sm_apply's thread: the store's caches may be used */
    uint64_t ttl_ms;
} sm_ctx;

/* Sets a denial (or other non-OK code) with a formatted detail; returns 0
 * so handlers can `return sm_deny(...)`. */
int sm_result(sm_ctx *c, int code, int reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define sm_deny(c, reason, ...) sm_result((c), SM_DENIED, (reason), __VA_ARGS__)
#define sm_malformed(c, ...)                                                                       \
    sm_result((c), SM_INVALID, TWINBFT__SM_REASON__SM_REASON_MALFORMED, __VA_ARGS__)

/* Validation of names (printable ASCII 0x21..0x7e, 1..max bytes). */
bool sm_valid_id(const char *s);
bool sm_valid_principal(const char *s);
bool sm_valid_text(const char *s, size_t max); /* any bytes but NUL, <= max (may be empty) */

/* Records: get and decode into the op's arena / encode and put. get returns
 * TB_ERR_NOT_FOUND when absent; a stored record that does not decode is
 * corrupt storage (TB_ERR_IO). */
int sm_rec_get(sm_ctx *c, int table, const void *key, size_t key_len,
               const ProtobufCMessageDescriptor *desc, void **out);
int sm_rec_put(sm_ctx *c, int table, const void *key, size_t key_len, const void *msg);

/* Composite keys: parts joined by NUL (ids never contain NUL), into buf of
 * SM_KEY_BYTES_MAX + 1 bytes; returns the length. */
size_t sm_key2(uint8_t *buf, const char *a, const char *b);
size_t sm_key3(uint8_t *buf, const char *a, const char *b, const char *c, uint32_t n);
/* Iteration over the keys that start with a prefix, in key order. next
 * returns 1 with it->k/it->v set (valid until the next write in the
 * transaction), 0 at the end, or a negative tb_err. seek positions the
 * next call at the first key >= key. */
typedef struct sm_iter {
    MDB_cursor *cur;
    uint8_t prefix[SM_KEY_BYTES_MAX];
    size_t prefix_len;
    MDB_val k, v;
    bool started, pending;
} sm_iter;
int sm_iter_open(sm_store *s, MDB_txn *txn, int table, const void *prefix, size_t len, sm_iter *it);
int sm_iter_seek(sm_iter *it, const void *key, size_t len);
int sm_iter_next(sm_iter *it);
void sm_iter_close(sm_iter *it);

void sm_be32(uint8_t *p, uint32_t v);
void sm_be64(uint8_t *p, uint64_t v);
uint32_t sm_get_be32(const uint8_t *p);
uint64_t sm_get_be64(const uint8_t *p);

/* ---- access control (acl.c) ---- */

uint32_t sm_roles_of(sm_ctx *c, const char *principal, int *err);
/* True iff the principal holds the owner role and owns `twin` or one of
 * its ancestors. *err: local fault. */
bool sm_owns(sm_ctx *c, const Twinbft__SmTwin *twin, int *err);
/* Allowed for holders of any role in `roles`, or (when owners may) for an
 * owner of the twin's subtree. On refusal sets the denial and returns
 * false; *err for local faults. */
bool sm_authz_twin(sm_ctx *c, uint32_t roles, bool owners, const Twinbft__SmTwin *twin, int *err);
bool sm_authz(sm_ctx *c, uint32_t roles);
int sm_op_acl_grant(sm_ctx *c, const Twinbft__SmAclGrant *op);
int sm_op_acl_revoke(sm_ctx *c, const Twinbft__SmAclRevoke *op);
int sm_op_identity_revoke(sm_ctx *c, const Twinbft__SmIdentityRevoke *op);

/* ---- registry (registry.c, twins.c) ---- */

int sm_twin_get(sm_ctx *c, const char *id, Twinbft__SmTwin **out);
int sm_node_get(sm_ctx *c, const char *id, Twinbft__SmNode **out);
int sm_comp_get(sm_ctx *c, const char *twin, const char *name, Twinbft__SmComponent **out);
/* The names of a twin's components in key order (at most SM_TWIN_COMPONENTS_MAX). */
int sm_comp_names(sm_ctx *c, const char *twin, char **names, size_t *n);
/* Adjusts a site's counters of nodes and site-level twins. */
int sm_site_count(sm_ctx *c, const char *id, int nodes, int twins);
int sm_db_count(sm_ctx *c, int table, size_t *out);
int sm_op_site_put(sm_ctx *c, const Twinbft__SmSitePut *op);
int sm_op_site_retire(sm_ctx *c, const Twinbft__SmSiteRetire *op);
int sm_op_node_put(sm_ctx *c, const Twinbft__SmNodePut *op);
int sm_op_node_retire(sm_ctx *c, const Twinbft__SmNodeRetire *op);
int sm_op_twin_create(sm_ctx *c, const Twinbft__SmTwinCreate *op);
int sm_op_twin_retire(sm_ctx *c, const Twinbft__SmTwinRetire *op);
int sm_op_component_put(sm_ctx *c, const Twinbft__SmComponentPut *op);
int sm_op_component_remove(sm_ctx *c, const Twinbft__SmComponentRemove *op);

/* ---- placement (placement.c) ---- */

int sm_op_node_state(sm_ctx *c, const Twinbft__SmNodeSetState *op);
/* Sets an empty placement payload (room for SM_NODE_REPLICAS_MAX entries per list). */
Twinbft__SmPlacementResult *sm_placement_payload(sm_ctx *c);
int sm_op_place(sm_ctx *c, const Twinbft__SmPlace *op);
int sm_op_scale(sm_ctx *c, const Twinbft__SmScale *op);
/* Removes every placement of one component (releasing node capacity),
 * appending them to `removed` when not NULL. */
int sm_unplace_component(sm_ctx *c, const char *twin, const char *comp,
                         Twinbft__SmPlacementResult *removed);

/* ---- configuration (config.c) ---- */

int sm_op_config_put(sm_ctx *c, const Twinbft__SmConfigPut *op);
int sm_op_config_delete(sm_ctx *c, const Twinbft__SmConfigDelete *op);

/* ---- actuation, e-stop, shadow (actuation.c, shadow.c) ---- */

int sm_op_policy_put(sm_ctx *c, const Twinbft__SmPolicyPut *op);
int sm_op_policy_remove(sm_ctx *c, const Twinbft__SmPolicyRemove *op);
int sm_op_actuate(sm_ctx *c, const Twinbft__SmActuate *op);
int sm_op_estop_latch(sm_ctx *c, const Twinbft__SmEstopLatch *op);
int sm_op_estop_reset(sm_ctx *c, const Twinbft__SmEstopReset *op);
int sm_op_shadow_report(sm_ctx *c, const Twinbft__SmShadowReport *op);
int sm_op_shadow_desire(sm_ctx *c, const Twinbft__SmShadowDesire *op);

/* ---- queries (query.c) ---- */

/* An ordered query (SmOp.query): the answer as the result's payload. */
int sm_op_query(sm_ctx *c, const Twinbft__SmQuery *op);
/* Sets desired[name] = value on the twin's shadow (approved commands). */
int sm_shadow_desire_one(sm_ctx *c, const char *twin, const char *name, const char *value);
/* Deletes a twin's shadow, policies, actuator states and e-stop latch. */
int sm_twin_forget(sm_ctx *c, const char *twin);
/* A property's reported value or NULL. */
const char *sm_props_find(Twinbft__SmProperty *const *props, size_t n, const char *name);

/* spool.c: state transfer spooled to disk (see sm_adapter_spool). */
typedef struct sm_spool sm_spool;
int sm_spool_open(sm_store *s, const char *dir, bool background, sm_spool **out);
void sm_spool_close(sm_spool *sp);
/* take_kept hands over the read transaction of kept checkpoint seq (NULL:
 * not kept); the export owns it from then on. */
int sm_spool_manifest(sm_spool *sp, MDB_txn *(*take_kept)(void *, uint64_t), void *ctx,
                      uint64_t seq, uint32_t chunk_bytes, uint64_t *total,
                      uint8_t (**hashes)[PROTO_DIGEST_BYTES], size_t *n);
int sm_spool_read(sm_spool *sp, uint64_t seq, uint64_t off, uint8_t *buf, size_t len);
int sm_spool_import_begin(sm_spool *sp, uint64_t seq, uint64_t total);
int sm_spool_import_write(sm_spool *sp, uint64_t seq, uint64_t off, const uint8_t *data,
                          size_t len);
int sm_spool_import_map(sm_spool *sp, uint64_t seq, const uint8_t **data, size_t *len);
void sm_spool_import_done(sm_spool *sp, const uint8_t *data, size_t len);

#endif
