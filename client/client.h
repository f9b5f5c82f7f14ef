/* The edge client: submits intents to every replica of one cluster over
 * mutual TLS (client/link.h) and reports each request's result once f+1
 * replicas agree on it, with the quorum certificate (proto/cert.h) when one
 * could be assembled.
 *
 * One request is outstanding at a time. Request numbers start at the
 * caller's first_number (which must exceed every number this principal has
 * used before: persist it) and grow by one per submitted request, whether it
 * completed or timed out, because a timed-out request may still execute.
 *
 * Thread rules: everything runs on the thread that runs the event_base, and
 * the process must ignore SIGPIPE (see client/link.h). */
#ifndef TB_CLIENT_H
#define TB_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/cert.h"
#include "proto/crypto.h"

struct event_base;

enum {
    TB_CLIENT_HOST_BYTES = 64,            /* numeric address, NUL included */
    TB_CLIENT_RETRANSMIT_MS = 1000,       /* resend the outstanding request this often */
    TB_CLIENT_TIMEOUT_MS_DEFAULT = 30000, /* give up on a request after this long */
    /* After f+1 matching replies, how long to wait for a quorum certificate
     * before completing without one. */
    TB_CLIENT_CERT_WAIT_MS = 2000,
    TB_CLIENT_OP_BYTES_MAX = 64u << 10, /* consensus/ caps a request's op here too */
};

typedef struct tb_member {
    char host[TB_CLIENT_HOST_BYTES]; /* replica j listens on host:port ... */
    uint16_t port;
    uint8_t pubkey[PROTO_PUBKEY_BYTES]; /* ... and signs with this raw Ed25519 key */
} tb_member;

/* What the caller knows of the cluster, filled in by the caller (e.g. from
 * the cluster file). Member j must present the certificate name "replica-j". */
typedef struct tb_client_config {
    uint32_t n;
    uint32_t f; /* 3f+1 <= n */
    uint8_t cluster_id[PROTO_CLUSTER_ID_BYTES_MAX];
    size_t cluster_id_len;
    uint64_t epoch;
    tb_member members[PROTO_MEMBERS_MAX];
    const char *ca_path; /* this client's identity: CA, certificate, key (PEM) */
    const char *cert_path;
    const char *key_path;
    uint64_t first_number; /* > 0; the number of the first request */
    uint32_t timeout_ms;   /* per request; 0 means TB_CLIENT_TIMEOUT_MS_DEFAULT */
} tb_client_config;

typedef struct tb_client tb_client;

/* Reports a request once, on the event_base's thread.
 * status 0: f+1 replicas sent the same (seq, leaf); leaf is the packed
 *   ResultLeaf they agree on. cert is a packed Certificate that verified
 *   against the cluster's keys, or NULL when no quorum of signed replies
 *   arrived within TB_CLIENT_CERT_WAIT_MS (the result still stands).
 * status TB_ERR_QUORUM: fewer than f+1 replicas agreed before the timeout;
 *   leaf and cert are NULL, seq 0.
 * Pointers are valid during the call only. The callback may submit the next
 * request but must not free the client. */
typedef void (*tb_client_cb)(int status, uint64_t seq, const uint8_t *leaf, size_t leaf_len,
                             const uint8_t *cert, size_t cert_len, void *arg);

/* Connects to every member (links retry on their own). cfg is copied.
 * TB_ERR_INVALID for a bad configuration, TB_ERR_IO for unreadable identity
 * files, TB_ERR_CRYPTO, TB_ERR_NOMEM. */
int tb_client_new(struct event_base *base, const tb_client_config *cfg, tb_client **out);
/* Closes the links; an outstanding request is dropped without its callback.
 * NULL is allowed. */
void tb_client_free(tb_client *c);
/* This client's principal name (its certificate's common name). */
const char *tb_client_name(const tb_client *c);
/* The number the next submitted request will carry. */
uint64_t tb_client_next_number(const tb_client *c);

/* Sends op (copied) to every replica and retransmits it every
 * TB_CLIENT_RETRANSMIT_MS until cb reports it. TB_ERR_STATE while a request
 * is outstanding, TB_ERR_INVALID for len 0 or a NULL cb, TB_ERR_TOO_LARGE
 * above TB_CLIENT_OP_BYTES_MAX, TB_ERR_NOMEM. */
int tb_client_submit(tb_client *c, const uint8_t *op, size_t len, bool priority, tb_client_cb cb,
                     void *arg);

#endif
