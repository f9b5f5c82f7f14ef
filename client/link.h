/* Mutual TLS 1.3 links over TCP on a caller's libevent event_base, carrying
 * length-prefixed frames (proto/frame.h): replica <-> replica and client ->
 * replica.
 *
 * Both sides present an Ed25519 certificate issued by the cluster CA and
 * verify the other's against that CA alone; anything else is refused at the
 * handshake. After the handshake a peer is known by its certificate's
 * subject common name (proto_pki_name), which is what the callbacks report.
 *
 * Thread rules: everything runs on the thread that runs the event_base.
 * The process must ignore SIGPIPE (the daemon's main calls
 * signal(SIGPIPE, SIG_IGN)): OpenSSL writes to sockets with write(), and a
 * peer that vanishes mid-write would otherwise kill the process. */
#ifndef TB_LINK_H
#define TB_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "proto/crypto.h"
#include "proto/frame.h"
#include "client/budget.h"
#include "client/frame_reader.h"

struct event_base;

enum {
    /* Bytes queued for one link and not yet handed to the kernel. One largest
     * frame always fits into an empty buffer; beyond that the peer is not
     * keeping up and tb_tls_send pushes back with TB_ERR_AGAIN. */
    TB_LINK_OUTPUT_BYTES_MAX = PROTO_FRAME_BYTES_MAX + PROTO_FRAME_HEADER_BYTES,
    /* A connection that has not finished its TLS handshake by then is closed,
     * so half-open connections cannot pin memory and descriptors. A TLS 1.3
     * handshake is one round trip plus two Ed25519 operations: even over a
     * slow WAN it takes well under a second. */
    TB_TLS_HANDSHAKE_MS_MAX = 3000,
    /* Handshakes in progress from one address (other than a reserved one,
     * tb_tls_listener_reserve). Further connections from that address wait,
     * accepted but unread, until one of its handshakes ends (then the
     * oldest starts its own) or TB_LISTENER_WAIT_MS_MAX passes (then it is
     * closed). A waiting connection costs a descriptor and a few kernel
     * buffers and no CPU: a half-open flood that is closed at once
     * reconnects at once, and the accept-close-reconnect cycle, not the
     * connections, is what costs both sides their CPU. An honest burst from
     * one address (many clients behind one NAT) is served in order instead
     * of refused. */
    TB_HANDSHAKES_PER_SOURCE_MAX = 16,
    /* Connections waiting for a handshake slot, per listener (fewer when the
     * descriptor limit is lower, see tb_tls_listen). When it is full, the
     * oldest waiting connection is closed to make room for the newest: the
     * oldest is the likeliest to have been given up by its client, and a
     * flood larger than the room then turns over only its excess. */
    TB_LISTENER_WAITING_MAX = 4096,
    /* How long a connection may wait. Past an honest client's own handshake
     * timeout it has given up and its connection only holds a descriptor;
     * the limit returns those descriptors while keeping a flood's
     * connections from coming back more often than this. */
    TB_LISTENER_WAIT_MS_MAX = 30000,
    /* Descriptors a listener leaves to the rest of the process (peers' links,
     * the store, logs, HTTP) when it sizes its waiting room. */
    TB_LISTENER_FDS_SPARE = 256,
    /* Of TB_LISTENER_LINKS_MAX, the slots only reserved addresses may take. */
    TB_LISTENER_RESERVED_LINKS = 128,
    TB_LISTENER_RESERVED_SOURCES_MAX = 64,
    /* A frame that has begun must be complete within TB_LINK_FRAME_MS_MIN
     * plus the time its length takes at TB_LINK_FRAME_BYTES_PER_S_MIN,
     * counted from its first byte; else the link is closed. A peer that
     * sends part of a frame and then nothing, or a byte now and then, cannot
     * hold the frame's memory for long: a client's largest frame gets 11 s,
     * a replica's 64 MiB frame 17.5 minutes. A link between frames has no
     * deadline (a subscriber may rightly send nothing for hours); TCP
     * keepalive finds a peer that vanished. */
    TB_LINK_FRAME_MS_MIN = 10000,
    TB_LINK_FRAME_BYTES_PER_S_MIN = 64u << 10,
    /* Reconnection backoff of outgoing links: first delay, doubling to max. */
    TB_TLS_BACKOFF_MS_MIN = 100,
    TB_TLS_BACKOFF_MS_MAX = 5000,
    /* Connections one listener holds at once (handshaking or open); further
     * ones are closed on accept and counted. */
    TB_LISTENER_LINKS_MAX = 1024,
    /* Log lines per second per context; the rest are counted and reported. */
    TB_TLS_LOG_PER_SEC_MAX = 20,
    /* TCP keepalive on every link: first probe after this much silence,
     * then every interval; after that many unanswered the link closes. */
    TB_TCP_KEEPIDLE_S = 30,
    TB_TCP_KEEPINTVL_S = 10,
    TB_TCP_KEEPCNT = 3,
    /* Names a context can pin to keys (one per cluster member). */
    TB_TLS_PINS_MAX = 64,
    TB_TLS_RESERVED_PREFIX_BYTES_MAX = 16,
};

typedef struct tb_tls_ctx tb_tls_ctx;
typedef struct tb_tls_link tb_tls_link;
typedef struct tb_tls_listener tb_tls_listener;

/* Called on the event_base's thread. peer_name is the peer certificate's
 * common name, valid during the call. A callback may call tb_tls_send on any
 * link, tb_tls_link_free on any link (including this one) and
 * tb_tls_listener_free; the link is then freed once the callback returns.
 *
 * on_open:  the handshake succeeded (and, for outgoing links, the peer has
 *           the expected name). Outgoing links reset their backoff here.
 * on_frame: one complete frame payload (without its header), len >= 1;
 *           data is valid only during the call.
 * on_close: the connection ended, with a reason for people. Accepted links:
 *           only after on_open, and the link is freed when on_close returns.
 *           Outgoing links: after every failed attempt or ended connection
 *           (even without on_open); the link stays and retries after backoff.
 * Any callback may be NULL. */
typedef struct tb_tls_callbacks {
    void (*on_open)(tb_tls_link *link, const char *peer_name, void *arg);
    void (*on_frame)(tb_tls_link *link, const char *peer_name, const uint8_t *data, size_t len,
                     void *arg);
    void (*on_close)(tb_tls_link *link, const char *reason, void *arg);
    void *arg;
} tb_tls_callbacks;

typedef struct tb_tls_link_stats {
    uint64_t frames_in;
    uint64_t frames_out;
    uint64_t frames_dropped_full;   /* tb_tls_send returned TB_ERR_AGAIN */
    uint64_t frames_dropped_closed; /* tb_tls_send while not open */
    uint64_t connects;              /* handshakes completed */
    uint64_t attempts_failed;       /* outgoing attempts that never opened */
} tb_tls_link_stats;

/* Links of one context closed for what their peer sent (see tb_link_close's
 * callers in link.c); each such close is also logged, at a bounded rate. */
typedef struct tb_tls_ctx_stats {
    uint64_t closed_oversize; /* a frame announced above the link's maximum */
    uint64_t closed_idle;     /* a frame begun and not completed by its deadline */
    uint64_t closed_budget;   /* a frame beyond its identity's or the total memory budget */
} tb_tls_ctx_stats;

typedef struct tb_tls_listener_stats {
    uint64_t accepted;
    uint64_t refused_full;     /* TB_LISTENER_LINKS_MAX reached */
    uint64_t handshake_failed; /* bad or foreign certificate, timeout, I/O error */
    uint64_t refused_source;   /* waited, closed for a newer one: the room was full */
    uint64_t queued;           /* over TB_HANDSHAKES_PER_SOURCE_MAX: waited for a slot */
    uint64_t promoted;         /* ... and got one (counted in accepted too) */
    uint64_t waited_out;       /* ... and were closed after TB_LISTENER_WAIT_MS_MAX */
    uint32_t waiting;          /* waiting now */
} tb_tls_listener_stats;

/* A TLS 1.3-only context for one identity: trusts ca_cert alone, presents
 * cert/key, requires a certificate from the peer. Takes its own references
 * (the caller still frees its arguments). TB_ERR_INVALID when cert is not
 * issued by ca_cert or does not match key, TB_ERR_CRYPTO on other OpenSSL
 * failures. The context must outlive every link and listener using it. */
int tb_tls_ctx_new(X509 *ca_cert, X509 *cert, EVP_PKEY *key, tb_tls_ctx **out);
/* The same from PEM files (proto_pki_load_*); TB_ERR_IO when one is unreadable. */
int tb_tls_ctx_load(const char *ca_path, const char *cert_path, const char *key_path,
                    tb_tls_ctx **out);
void tb_tls_ctx_free(tb_tls_ctx *ctx);
/* This identity's name (its certificate's common name). */
const char *tb_tls_ctx_name(const tb_tls_ctx *ctx);
/* Pins a peer name to a raw Ed25519 public key: a peer that presents a
 * certificate with this name (issued by the CA, as always) but another key
 * is refused at the handshake. The cluster file names each member's
 * certificate; pinning its key means a CA that issued a second certificate
 * with a member's name (by mistake or by compromise) cannot make its holder
 * a member. TB_ERR_INVALID for a bad name, TB_ERR_TOO_LARGE past
 * TB_TLS_PINS_MAX. Call before any link uses the context. */
int tb_tls_ctx_pin(tb_tls_ctx *ctx, const char *name, const uint8_t pub[PROTO_PUBKEY_BYTES]);
/* Names that begin with prefix are reserved for pinned peers: a peer with
 * such a name that is not pinned (replica-7 in a 4-member cluster,
 * replica-01) is refused at the handshake. "" (the default) reserves none. */
int tb_tls_ctx_reserve_prefix(tb_tls_ctx *ctx, const char *prefix);
/* Where log lines go (default: stderr); log may be NULL to silence them. */
void tb_tls_ctx_set_log(tb_tls_ctx *ctx, void (*log)(const char *line, void *arg), void *arg);
tb_tls_ctx_stats tb_tls_ctx_get_stats(const tb_tls_ctx *ctx);

/* Accepts connections on host:port (numeric IPv4 or IPv6 address; port 0
 * picks a free one, see tb_tls_listener_port). Accepted links report
 * through cb (copied). TB_ERR_INVALID for a bad address, TB_ERR_IO when the
 * port cannot be bound. Its waiting room (TB_LISTENER_WAITING_MAX) is cut to
 * what the descriptor limit (RLIMIT_NOFILE) leaves after
 * TB_LISTENER_LINKS_MAX and TB_LISTENER_FDS_SPARE: raise the limit first. */
int tb_tls_listen(struct event_base *base, tb_tls_ctx *ctx, const char *host, uint16_t port,
                  const tb_tls_callbacks *cb, tb_tls_listener **out);
uint16_t tb_tls_listener_port(const tb_tls_listener *l);
tb_tls_listener_stats tb_tls_listener_get_stats(const tb_tls_listener *l);
/* Stops accepting and closes every link it accepted: each open one gets
 * on_close("listener closed") and is freed. NULL is allowed. */
void tb_tls_listener_free(tb_tls_listener *l);
/* Reserves capacity for connections from host (a numeric address, no
 * port): the cluster's members. Such connections are exempt from the
 * per-address handshake limit and may use the last
 * TB_LISTENER_RESERVED_LINKS slots, so that no flood from elsewhere cuts
 * the replicas off from each other. Until one is reserved, every address
 * is treated alike. TB_ERR_INVALID for a bad address, TB_ERR_TOO_LARGE past
 * TB_LISTENER_RESERVED_SOURCES_MAX. */
int tb_tls_listener_reserve(tb_tls_listener *l, const char *host);

/* An outgoing link to host:port (numeric address) that must present the
 * certificate name expected_peer_name. The first attempt starts from the
 * event loop; on failure or disconnection it retries after 100 ms doubling
 * to 5 s, reset once a connection opens. TB_ERR_INVALID for a bad address
 * or name. Freed only by tb_tls_link_free. */
int tb_tls_connect(struct event_base *base, tb_tls_ctx *ctx, const char *host, uint16_t port,
                   const char *expected_peer_name, const tb_tls_callbacks *cb, tb_tls_link **out);

/* Queues data as one frame (a copy is taken). TB_ERR_STATE when the link is
 * not open, TB_ERR_INVALID for len 0, TB_ERR_TOO_LARGE above
 * PROTO_FRAME_BYTES_MAX, TB_ERR_AGAIN when the link's output buffer would
 * exceed TB_LINK_OUTPUT_BYTES_MAX (the frame is dropped and counted). */
int tb_tls_send(tb_tls_link *link, const uint8_t *data, size_t len);
bool tb_tls_link_is_open(const tb_tls_link *link);
/* The peer's name once open, "" before. */
const char *tb_tls_link_peer(const tb_tls_link *link);
/* The raw Ed25519 public key of the peer's certificate while the link is
 * open, else NULL. */
const uint8_t *tb_tls_link_peer_key(const tb_tls_link *link);
/* Frames this link takes are at most max bytes (0, or more than
 * PROTO_FRAME_BYTES_MAX: that maximum, the default). A larger one is refused
 * at its header, before anything is allocated: the link is closed, counted
 * in tb_tls_ctx_stats.closed_oversize. Applies from the next frame's header
 * on and stays across reconnections; call it from on_open to cover every
 * frame of the connection. */
void tb_tls_link_set_frame_max(tb_tls_link *link, uint32_t max);
/* Each frame on this link must be complete ms_min plus its length at
 * bytes_per_s_min (0: no allowance for length) after its first byte, else
 * the link is closed, counted in tb_tls_ctx_stats.closed_idle. Default:
 * TB_LINK_FRAME_MS_MIN and TB_LINK_FRAME_BYTES_PER_S_MIN. Applies from the
 * next frame on and stays across reconnections. */
void tb_tls_link_set_frame_deadline(tb_tls_link *link, uint32_t ms_min, uint32_t bytes_per_s_min);
/* Charges the frames this link receives, from their header until they are
 * handed to on_frame, to its peer's account in budget (client/budget.h:
 * every link of one peer name shares one account). A frame the account
 * cannot take is refused at its header, before anything is allocated: the
 * link is closed, counted in tb_tls_ctx_stats.closed_budget. Call from
 * on_open, once per connection; the link leaves the account when the
 * connection ends. The budget must outlive the connection. TB_ERR_INVALID
 * for a NULL budget, TB_ERR_STATE when the link is not open or already has
 * one; errors of tb_budget_join. */
int tb_tls_link_set_budget(tb_tls_link *link, tb_budget *budget);
/* Bytes queued and not yet written to the socket. */
size_t tb_tls_link_output_bytes(const tb_tls_link *link);
tb_tls_link_stats tb_tls_link_get_stats(const tb_tls_link *link);
/* Closes the connection without calling on_close, stops reconnecting, and
 * frees the link (deferred while one of its callbacks runs). NULL is allowed. */
void tb_tls_link_free(tb_tls_link *link);

#endif
