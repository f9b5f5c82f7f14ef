/* The cluster file: who the members of a cluster are and where to reach them.
 *
 *   [cluster]
 *   id = plant-7                   ; 1..63 characters of A-Z a-z 0-9 . _ -
 *   ca = ca.pem                    ; relative to the cluster file's directory
 *   epoch = 0
 *   [replica 0]                    ; one section per member, ids 0..n-1
 *   address = 127.0.0.1:7000
 *   cert = replica-0/cert.pem
 *   http = 127.0.0.1:8000          ; optional status/metrics port
 *
 * Loading checks everything a replica or the CLI relies on (n = 1 or n >= 4,
 * ids contiguous, ports in range, paths that fit) so that later code never
 * has to; a failure leaves a message for a person in err naming the file,
 * the line and what to change. */
#ifndef REPLICA_CONFIG_H
#define REPLICA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    /* Equal to PBFT_REPLICAS_MAX; restated here so that reading a config
     * file does not pull in the consensus core. */
    REP_MEMBERS_MAX = 64,
    /* A cluster is either one replica (f = 0: development, and the
     * unreplicated baseline of benchmarks) or a BFT one, n >= 3f + 1 with
     * f >= 1. See rep_cluster_size_problem for why 2 and 3 are refused. */
    REP_MEMBERS_SINGLE = 1,
    REP_MEMBERS_BFT_MIN = 4,
    REP_CLUSTER_ID_BYTES_MAX = 64, /* including the NUL */
    REP_HOST_BYTES_MAX = 64,       /* including the NUL */
    REP_PATH_BYTES_MAX = 512,      /* including the NUL */
    REP_CLUSTER_FILE_BYTES_MAX = 256 * 1024,
    REP_CONFIG_ERR_BYTES = 1024, /* fits every message for a path of up to 500 bytes */
};

typedef struct rep_member {
    uint32_t id;
    char host[REP_HOST_BYTES_MAX];
    uint16_t port;
    char cert_path[REP_PATH_BYTES_MAX];
    char http_host[REP_HOST_BYTES_MAX]; /* empty when there is no http port */
    uint16_t http_port;                 /* 0 when absent */
} rep_member;

/* History retention ([cluster] history_window): the twins' events of the
 * last this many seqs are kept (0: all). It shapes the replicated state, so
 * it is a cluster setting. The minimum keeps every batch a replica may
 * replay after a crash (statemachine/adapter.c) within the window. */
#define REP_HISTORY_WINDOW_DEFAULT 100000
#define REP_HISTORY_WINDOW_MIN 4096

/* Outbox retention ([cluster] outbox_window): commands pushed to
 * subscribers are kept for the last this many seqs (storage.h); a
 * subscriber away for longer is told so (its horizon) and resyncs. */
#define REP_OUTBOX_WINDOW_DEFAULT 100000
#define REP_OUTBOX_WINDOW_MIN 1024

/* The retained log ([cluster] log_retain): committed batches kept below
 * the stable checkpoint, so that a replica this many seqs behind replays
 * them from a peer instead of fetching the whole state (storage.h). */
#define REP_LOG_RETAIN_DEFAULT 10000
#define REP_LOG_RETAIN_MIN 256

typedef struct rep_cluster {
    char id[REP_CLUSTER_ID_BYTES_MAX];
    uint64_t epoch;
    uint64_t history_window; /* seqs of history kept (0: all) */
    /* Seqs of pushed commands kept for subscribers (storage.h's outbox;
     * REP_OUTBOX_WINDOW_DEFAULT). Local to each replica's store, not
     * replicated state, but one setting for all is what operators expect. */
    uint64_t outbox_window;
    uint64_t log_retain; /* seqs of committed batches kept below the stable checkpoint */
    char ca_path[REP_PATH_BYTES_MAX];
    uint32_t n;
    rep_member members[REP_MEMBERS_MAX]; /* members[i].id == i for i < n */
} rep_cluster;

/* Reads and checks the cluster file at path. Relative ca and cert paths are
 * returned joined with the file's directory, so they can be opened from any
 * working directory. Returns 0, TB_ERR_IO when the file cannot be read,
 * TB_ERR_TOO_LARGE when it exceeds REP_CLUSTER_FILE_BYTES_MAX, or
 * TB_ERR_INVALID; on error, err (when err_cap > 0) holds a message such as
 * `cluster.conf:7: replica 3: address "10.0.0.7" has no port (expected
 * HOST:PORT)` and *out is unspecified. */
int rep_cluster_load(const char *path, rep_cluster *out, char *err, size_t err_cap);

/* The same for a file already in memory (text NUL-terminated). path names it
 * in messages and is the base for relative paths; it need not exist. */
int rep_cluster_parse(const char *text, const char *path, rep_cluster *out, char *err,
                      size_t err_cap);

/* NULL when a cluster of n replicas is allowed (1, or 4 to REP_MEMBERS_MAX);
 * otherwise why not and what to use instead, as a sentence fragment for a
 * message that has already named n (a static string). */
const char *rep_cluster_size_problem(uint32_t n);

/* True iff id is 1..REP_CLUSTER_ID_BYTES_MAX-1 characters of A-Z a-z 0-9 . _ -
 * (cluster ids go into signed bodies and file names). */
bool rep_cluster_id_valid(const char *id);

/* Members are known on the wire by the common name of their certificate,
 * "replica-<id>" (REP_MEMBER_NAME_PREFIX, then the id in decimal without
 * sign or leading zeros). True, with *id, iff name is exactly the name of a
 * member of a cluster of n: "replica-01", "replica-+1" and
 * "replica-4294967297" name none. */
#define REP_MEMBER_NAME_PREFIX "replica-"
bool rep_member_of_name(const char *name, uint32_t n, uint32_t *id);

/* Writes c to path in the format above, atomically (a temporary file in the
 * same directory, fsync, rename), replacing any existing file. Paths are
 * written exactly as they are in c, so give them relative to path's
 * directory (or absolute). Returns 0 or TB_ERR_IO. */
int rep_cluster_write(const rep_cluster *c, const char *path);

#endif
