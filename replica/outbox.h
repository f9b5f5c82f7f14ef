/* The outbox of storage.h (internal to replica/): which executed replies
 * are commands for whom, written into the cycle's transaction, pruned by
 * retention, and read back per addressee in (seq, index) order. */
#ifndef REP_OUTBOX_H
#define REP_OUTBOX_H

#include <lmdb.h>

#include "consensus/pbft.h"
#include "replica/storage.h"

typedef struct rep_outbox rep_outbox;

/* The two databases: entries by addressee, and the same keys by seq. */
typedef struct rep_outbox_dbs {
    MDB_dbi box, by_seq;
} rep_outbox_dbs;

int rep_outbox_create(rep_outbox **out);
/* Entries more than seqs below the executed seq are pruned (default
 * REP_OUTBOX_WINDOW_DEFAULT). */
void rep_outbox_set_retention(rep_outbox *o, uint64_t seqs);
void rep_outbox_free(rep_outbox *o);

/* Adds an entry per addressee of every Reply in rd->msgs for a batch in
 * rd->executed, into txn, then prunes by retention (storage.h). The
 * entries become rep_outbox_new's list (even if the caller's commit then
 * fails: it must not use them then). TB_ERR_IO on an LMDB failure. */
int rep_outbox_write(rep_outbox *o, MDB_txn *txn, rep_outbox_dbs dbs, const pbft_ready *rd);
size_t rep_outbox_new(const rep_outbox *o, const rep_push **out);
void rep_outbox_forget(rep_outbox *o);

/* The seq at and below which the outbox is incomplete (0: complete). */
int rep_outbox_horizon(MDB_txn *txn, rep_outbox_dbs dbs, uint64_t *out);

int rep_outbox_read(MDB_txn *txn, rep_outbox_dbs dbs, const char *to, uint64_t after_seq,
                    uint32_t after_index, rep_push_visit visit, void *ctx);

#endif
