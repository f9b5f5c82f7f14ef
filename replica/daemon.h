/* The replica daemon: one libevent loop that turns the consensus core's
 * inputs and outputs into TLS links, LMDB commits and timers.
 *
 *   frames from peers and clients ──► pbft_node_step ─┐
 *   timer (next deadline)         ──► pbft_node_tick ─┤
 *                                                     ▼
 *   ready: records + state machine writes ──► one fsync'd LMDB commit
 *          messages ──► TLS links (only after that commit), then advance
 *
 * Identities come from certificates issued by the cluster CA: a peer whose
 * certificate names "replica-<j>" is replica j; any other name is a client
 * principal. The principal named REP_ADMIN_PRINCIPAL is the state
 * machine's bootstrap admin (`twinbft cluster init` issues it). */
#ifndef REPLICA_DAEMON_H
#define REPLICA_DAEMON_H

#include <stdint.h>

#define REP_ADMIN_PRINCIPAL "admin"

typedef struct rep_daemon_options {
    const char *config_path; /* the cluster file */
    uint32_t id;             /* this replica */
    const char *data_dir;    /* its LMDB environment (created if missing) */
    const char *key_path;    /* NULL: key.pem next to the member's cert */
    int log_level;           /* 0 error, 1 warn, 2 info, 3 debug */
#if TWINBFT_FAULT_INJECTION
    /* Tests only (--byzantine censor:PRINCIPAL): the replica never takes
     * that client's requests, so as primary it orders everyone else's. */
    const char *censor;
#endif
} rep_daemon_options;

/* Runs until SIGTERM or SIGINT. Returns 0 after a clean shutdown, or a
 * negative tb_err when start-up failed (with a message on stderr) or the
 * storage failed (the replica stops rather than run on lost durability). */
int rep_daemon_run(const rep_daemon_options *opt);

#endif
