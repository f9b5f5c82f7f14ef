/* State transfer (PBFT 6.2), in chunks.
 *
 * A replica that is behind sends FETCH to every peer. A peer answers with
 * the committed certificates of its log above the asker, and, when its
 * stable checkpoint h is ahead of the asker, h's MANIFEST and the 2f+1
 * signed CHECKPOINT messages that prove h's state digest.
 *
 * The manifest. A checkpoint's state digest is computed from the
 * application's digest, the client table and the agreed time; the manifest
 * carries those three (so the proof covers them) and, besides, the size of
 * the application's export and the SHA-256 of each of its chunks. The
 * export is canonical (the same bytes on every replica with the same
 * state), so every correct replica at h sends the same chunk list; the
 * list itself is not signed, and the asker believes it only when f+1
 * replicas sent the same one: at least one of them is correct.
 *
 * The chunks. The asker then asks for chunks (CHUNK-FETCH), at most
 * transfer_window at a time, spread round-robin over the peers that sent
 * the agreed list, and checks each chunk against its hash as it arrives: a
 * faulty peer's garbage is dropped at its first bad chunk (and the peer is
 * asked for nothing more in this transfer), not after the whole state. A
 * chunk not received within a quarter request timeout is asked of the next
 * peer; so a transfer survives a peer's crash or a reconnect, and never
 * holds more than the window in memory (the application spools the rest,
 * see pbft_app). Once every chunk is stored the application installs the
 * export, checking it against the certified application digest, and the
 * core installs the client table and time from the manifest.
 *
 * Why chunks of the export and not buckets of the state: a digest over
 * key-hash buckets would let a replica slightly behind fetch only the
 * buckets that changed, but it changes how every write is hashed. A replica
 * slightly behind does not need the state at all: it catches up from the
 * committed certificates of the log. The manifest costs nothing on the
 * write path and nothing at a checkpoint: a replica exports only when a
 * peer asks, and the export serves every asker of that checkpoint.
 *
 * Bounded work for faulty askers: a FETCH is answered at most once per
 * quarter request timeout per peer, and chunk requests per peer at most
 * PBFT_CHUNKS_PER_PERIOD in that period. */
#include <string.h>

#include "consensus/internal.h"
#include "proto/crypto.h"
#include "proto/frame.h"

/* A reply must fit in one frame, with room for the envelope. */
#define FETCH_REPLY_BUDGET (PROTO_FRAME_BYTES_MAX / 2)

enum {
    /* Chunk requests answered per peer per quarter request timeout: a
     * correct asker has transfer_window in flight, far fewer. */
    PBFT_CHUNKS_PER_PERIOD = 1024,
    /* A whole-buffer application (pbft_app.snapshot) keeps the export in
     * memory: no larger import is taken from peers. */
    PBFT_MEM_IMPORT_BYTES_MAX = 1u << 30,
};

/* Manifests and chunks of states up to this many chunks. A manifest
 * travels in one frame, so a larger one could not be sent anyway. */
#define PBFT_CHUNKS_MAX ((uint64_t)FETCH_REPLY_BUDGET / (PROTO_DIGEST_BYTES + 2))

static bool streaming(const pbft_node *node) {
    return node->cfg.app.export_manifest != NULL;
}

/* ---- the export, as server ------------------------------------------- */

static void served_clear(pbft_node *node);
static void log_queue_clear(pbft_node *node);

static void memx_clear(pbft_memx *x) {
    free(x->buf);
    free(x->hashes);
    memset(x, 0, sizeof *x);
}

void transfer_free(pbft_node *node) {
    for (size_t i = 0; i < 2; i++) {
        memx_clear(&node->memx[i]);
    }
    xfer_reset(node);
    served_clear(node);
    log_queue_clear(node);
    free(node->served.proof);
    free(node->served.proof_len);
    free(node->xfer.voted);
    free(node->xfer.vote);
    free(node->xfer.lists);
    free(node->xfer.list_len);
    free(node->xfer.bad);
    free(node->xfer.proof);
    free(node->xfer.proof_len);
    free(node->chunks_served);
    free(node->chunks_period_at);
}

/* A whole-buffer application's export of seq, kept in memory: the last two
 * exported stay, like the streaming contract says. */
static pbft_memx *memx_get(pbft_node *node, uint64_t seq, uint32_t chunk_bytes, int *rc) {
    for (size_t i = 0; i < 2; i++) {
        if (node->memx[i].seq == seq && node->memx[i].chunk_bytes == chunk_bytes) {
            return &node->memx[i];
        }
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    *rc = node->cfg.app.snapshot(node->cfg.app.ctx, seq, &buf, &len);
    if (*rc != 0) {
        return NULL;
    }
    pbft_memx *x = node->memx[0].seq < node->memx[1].seq ? &node->memx[0] : &node->memx[1];
    memx_clear(x);
    x->seq = seq;
    x->chunk_bytes = chunk_bytes;
    x->buf = buf;
    x->len = len;
    x->n = (len + chunk_bytes - 1) / chunk_bytes;
    x->hashes = calloc(x->n ? x->n : 1, PROTO_DIGEST_BYTES);
    PBFT_ASSERT(x->hashes != NULL);
    for (size_t i = 0; i < x->n; i++) {
        size_t off = i * chunk_bytes;
        size_t n = len - off < chunk_bytes ? len - off : chunk_bytes;
        proto_sha256(buf + off, n, x->hashes[i]);
    }
    return x;
}

/* The manifest of checkpoint seq's export: 0, TB_ERR_AGAIN (being made) or
 * another error. *hashes is malloc'd. */
static int export_manifest(pbft_node *node, uint64_t seq, uint32_t chunk_bytes, uint64_t *total,
                           uint8_t (**hashes)[PROTO_DIGEST_BYTES], size_t *n) {
    if (streaming(node)) {
        return node->cfg.app.export_manifest(node->cfg.app.ctx, seq, chunk_bytes, total, hashes, n);
    }
    int rc = 0;
    pbft_memx *x = memx_get(node, seq, chunk_bytes, &rc);
    if (x == NULL) {
        return rc;
    }
    *total = x->len;
    *n = x->n;
    *hashes = malloc(x->n ? x->n * PROTO_DIGEST_BYTES : 1);
    PBFT_ASSERT(*hashes != NULL);
    memcpy(*hashes, x->hashes, x->n * PROTO_DIGEST_BYTES);
    return 0;
}

static int export_read(pbft_node *node, uint64_t seq, uint32_t chunk_bytes, uint64_t off,
                       uint8_t *buf, size_t len) {
    if (streaming(node)) {
        return node->cfg.app.export_read(node->cfg.app.ctx, seq, off, buf, len);
    }
    int rc = 0;
    pbft_memx *x = memx_get(node, seq, chunk_bytes, &rc);
    if (x == NULL) {
        return rc;
    }
    if (off > x->len || len > x->len - off) {
        return TB_ERR_INVALID;
    }
    memcpy(buf, x->buf + off, len);
    return 0;
}

/* ---- the import, as asker -------------------------------------------- */

static int import_begin(pbft_node *node, uint64_t seq, uint64_t total) {
    if (streaming(node)) {
        return node->cfg.app.import_begin(node->cfg.app.ctx, seq, total);
    }
    if (total > PBFT_MEM_IMPORT_BYTES_MAX) {
        return TB_ERR_TOO_LARGE;
    }
    free(node->xfer.buf);
    node->xfer.buf = malloc(total ? total : 1);
    PBFT_ASSERT(node->xfer.buf != NULL);
    return 0;
}

static int import_write(pbft_node *node, uint64_t seq, uint64_t off, const uint8_t *data,
                        size_t len) {
    if (streaming(node)) {
        return node->cfg.app.import_write(node->cfg.app.ctx, seq, off, data, len);
    }
    memcpy(node->xfer.buf + off, data, len);
    return 0;
}

static int import_finish(pbft_node *node, uint64_t seq, const uint8_t *expected) {
    if (streaming(node)) {
        return node->cfg.app.import_finish(node->cfg.app.ctx, seq, expected);
    }
    int rc =
        node->cfg.app.restore(node->cfg.app.ctx, seq, node->xfer.buf, node->xfer.total, expected);
    free(node->xfer.buf);
    node->xfer.buf = NULL;
    return rc;
}

/* Forgets the transfer in progress (its per-peer arrays stay allocated). */
void xfer_reset(pbft_node *node) {
    pbft_xfer *x = &node->xfer;
    for (uint32_t i = 0; x->lists != NULL && i < node->n; i++) {
        free(x->lists[i]);
        x->lists[i] = NULL;
        free(x->proof[i]);
        x->proof[i] = NULL;
    }
    if (x->voted != NULL) {
        memset(x->voted, 0, node->n * sizeof *x->voted);
        memset(x->bad, 0, node->n * sizeof *x->bad);
    }
    free(x->meta);
    free(x->hashes);
    free(x->have);
    free(x->asked_at);
    free(x->asked_of);
    free(x->buf);
    x->meta = NULL;
    x->hashes = NULL;
    x->have = NULL;
    x->asked_at = NULL;
    x->asked_of = NULL;
    x->buf = NULL;
    x->seq = 0;
    x->adopted = false;
    x->meta_len = x->total = x->done_bytes = 0;
    x->chunk_bytes = x->n_chunks = x->received = x->outstanding = x->next = 0;
    x->deadline = x->progress_at = 0;
}

static void xfer_alloc(pbft_node *node) {
    pbft_xfer *x = &node->xfer;
    if (x->voted != NULL) {
        return;
    }
    x->voted = calloc(node->n, sizeof *x->voted);
    x->vote = calloc(node->n, sizeof *x->vote);
    x->lists = calloc(node->n, sizeof *x->lists);
    x->list_len = calloc(node->n, sizeof *x->list_len);
    x->bad = calloc(node->n, sizeof *x->bad);
    x->proof = calloc(node->n, sizeof *x->proof);
    x->proof_len = calloc(node->n, sizeof *x->proof_len);
    PBFT_ASSERT(x->voted && x->vote && x->lists && x->list_len && x->bad && x->proof &&
                x->proof_len);
}

void start_fetch(pbft_node *node) {
    if (node->fetch_deadline != 0) {
        return; /* one outstanding fetch at a time */
    }
    node->fetch_deadline = node->now + node->cfg.request_timeout_ms;
    Twinbft__Fetch f = TWINBFT__FETCH__INIT;
    f.executed = node->executed;
    /* A diverged state is replaced, never built on: it needs the state. */
    f.want_state = node->log_stalled || node->diverged_seq != 0;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_FETCH;
    m.fetch = &f;
    out_msg(node, PBFT_TO_ALL, NULL, &m);
}

void pbft_node_fetch(pbft_node *node) {
    if (node->stopped || node->fault != 0 || node->n == 1) {
        return;
    }
    start_fetch(node);
}

/* Fills mf for checkpoint seq from its checkpoint record: 0, TB_ERR_AGAIN
 * while the export is being made, another error when it cannot be. */
static int fill_manifest(pbft_node *node, uint64_t seq, const uint8_t *record, size_t record_len,
                         Twinbft__Manifest *mf, Twinbft__CheckpointRecord **rec,
                         uint8_t (**hashes_out)[PROTO_DIGEST_BYTES]) {
    uint64_t total = 0;
    uint8_t(*hashes)[PROTO_DIGEST_BYTES] = NULL;
    size_t n = 0;
    uint32_t cb = node->cfg.transfer_chunk_bytes;
    int rc = export_manifest(node, seq, cb, &total, &hashes, &n);
    if (rc != 0) {
        return rc;
    }
    *hashes_out = hashes;
    if (n > PBFT_CHUNKS_MAX || n != (total + cb - 1) / cb) {
        return TB_ERR_TOO_LARGE;
    }
    *rec = twinbft__checkpoint_record__unpack(NULL, record_len, record);
    PBFT_ASSERT(*rec != NULL);
    mf->seq = seq;
    mf->app_digest = (*rec)->app_digest;
    mf->clients = (*rec)->clients;
    mf->n_clients = (*rec)->n_clients;
    mf->last_timestamp_ms = (*rec)->last_timestamp_ms;
    mf->state_bytes = total;
    mf->chunk_bytes = cb;
    mf->n_chunk_hashes = n;
    mf->chunk_hashes = calloc(n ? n : 1, sizeof *mf->chunk_hashes);
    PBFT_ASSERT(mf->chunk_hashes != NULL);
    for (size_t i = 0; i < n; i++) {
        mf->chunk_hashes[i] = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, hashes[i]};
    }
    return 0;
}

static void served_clear(pbft_node *node) {
    pbft_served *sv = &node->served;
    for (uint32_t i = 0; sv->proof != NULL && i < node->n; i++) {
        free(sv->proof[i]);
        sv->proof[i] = NULL;
    }
    free(sv->record);
    sv->record = NULL;
    sv->seq = 0;
}

/* Remembers our stable checkpoint h, with what proves it, as the one whose
 * export we serve (on_fetch). */
static void served_keep(pbft_node *node, const uint8_t *record, size_t record_len) {
    pbft_served *sv = &node->served;
    if (sv->seq == node->h) {
        return;
    }
    served_clear(node);
    if (sv->proof == NULL) {
        sv->proof = calloc(node->n, sizeof *sv->proof);
        sv->proof_len = calloc(node->n, sizeof *sv->proof_len);
        PBFT_ASSERT(sv->proof != NULL && sv->proof_len != NULL);
    }
    sv->seq = node->h;
    sv->record = dup_bytes(record, record_len);
    sv->record_len = record_len;
    for (uint32_t i = 0; i < node->n; i++) {
        if (node->h_proof[i] != NULL) {
            sv->proof[i] = dup_bytes(node->h_proof[i], node->h_proof_len[i]);
            sv->proof_len[i] = node->h_proof_len[i];
        }
    }
}

/* The next FETCH in a quarter request timeout, not a whole one: a peer
 * answers each of ours at most that often (answer_allowed). */
static void fetch_soon(pbft_node *node) {
    uint64_t soon = node->now + node->cfg.request_timeout_ms / 4;
    if (node->fetch_deadline == 0 || node->fetch_deadline > soon) {
        node->fetch_deadline = soon;
    }
}

/* ---- the retained log ---------------------------------------------- */

void log_keep(pbft_node *node, const pbft_slot *s, uint8_t *const *proof, const size_t *proof_len) {
    if (node->cfg.log.read == NULL || s->cc == NULL) {
        return;
    }
    Twinbft__LogEntry e = TWINBFT__LOG_ENTRY__INIT;
    ProtobufCBinaryData pr[PBFT_REPLICAS_MAX];
    e.committed = (ProtobufCBinaryData){s->cc_len, s->cc};
    for (uint32_t i = 0; proof != NULL && i < node->n; i++) {
        if (proof[i] != NULL) {
            pr[e.n_checkpoint_proof++] = (ProtobufCBinaryData){proof_len[i], proof[i]};
        }
    }
    e.checkpoint_proof = pr;
    size_t len = twinbft__log_entry__get_packed_size(&e);
    uint8_t *b = malloc(len ? len : 1);
    PBFT_ASSERT(b != NULL);
    twinbft__log_entry__pack(&e, b);
    out_record(node, PBFT_REC_LOG, s->seq, NULL, false, b, len);
}

/* Whether our retained log still holds seq. */
static bool log_has(pbft_node *node, uint64_t seq) {
    uint8_t *data = NULL;
    size_t len = 0;
    if (node->cfg.log.read == NULL ||
        node->cfg.log.read(node->cfg.log.ctx, seq, &data, &len) != 0) {
        return false;
    }
    free(data);
    return true;
}

/* The entries of our retained log from seq `from` on, as far as they run
 * contiguously, up to our stable checkpoint and the reply's budget. */
static size_t log_collect(pbft_node *node, uint64_t from, Twinbft__LogEntry ***out,
                          size_t *budget) {
    *out = NULL;
    if (node->cfg.log.read == NULL || from > node->h) {
        return 0;
    }
    size_t n = 0, cap = 0;
    for (uint64_t seq = from; seq <= node->h; seq++) {
        uint8_t *data = NULL;
        size_t len = 0;
        if (node->cfg.log.read(node->cfg.log.ctx, seq, &data, &len) != 0) {
            break;
        }
        Twinbft__LogEntry *e = twinbft__log_entry__unpack(NULL, len, data);
        free(data);
        if (e == NULL || *budget + len > FETCH_REPLY_BUDGET) {
            if (e != NULL) {
                twinbft__log_entry__free_unpacked(e, NULL);
            }
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            *out = realloc(*out, cap * sizeof **out);
            PBFT_ASSERT(*out != NULL);
        }
        (*out)[n++] = e;
        *budget += len;
    }
    node->log_served += n;
    return n;
}

/* A checkpoint's proof from a log entry, taken like the CHECKPOINT messages
 * it is made of: our own checkpoint at seq is then stable (or, with another
 * digest, our state diverged: checkpoint.c says so). */
static void replay_proof(pbft_node *node, const Twinbft__LogEntry *e) {
    for (size_t i = 0; i < e->n_checkpoint_proof && i < PBFT_REPLICAS_MAX; i++) {
        const ProtobufCBinaryData *p = &e->checkpoint_proof[i];
        Twinbft__Signed *sg = twinbft__signed__unpack(NULL, p->len, p->data);
        Twinbft__Body *body = NULL;
        if (sg != NULL && verify_signed(node, sg, &body) == 0 &&
            body->kind_case == TWINBFT__BODY__KIND_CHECKPOINT) {
            on_checkpoint(node, sg, body, p->data, p->len);
        } else {
            node->dropped++;
        }
        if (body != NULL) {
            twinbft__body__free_unpacked(body, NULL);
        }
        if (sg != NULL) {
            twinbft__signed__free_unpacked(sg, NULL);
        }
    }
}

static void log_queue_clear(pbft_node *node) {
    for (size_t i = node->log_q_at; i < node->log_q_n; i++) {
        twinbft__log_entry__free_unpacked(node->log_q[i], NULL);
    }
    free(node->log_q);
    node->log_q = NULL;
    node->log_q_n = node->log_q_at = 0;
}

/* Replays queued log entries that continue what we executed, up to and
 * including the next checkpoint: one checkpoint per ready, because the
 * application commits its state at a checkpoint (sm_adapter.h), and a
 * crash before this ready's commit must not leave it more than one
 * checkpoint ahead of what the records say was executed. The rest waits
 * for the next tick (pbft_node_next_deadline says now). Each entry is a
 * committed certificate, checked like any; the window moves at each
 * checkpoint whose proof comes with it. An entry it needs but cannot take
 * (a gap, or beyond a window no proof moved) ends the replay, and the next
 * FETCH asks for the state instead (log_stalled). */
static void replay_log(pbft_node *node) {
    uint64_t before = node->executed;
    bool stuck = false, bad = false, checkpoint = false;
    while (node->log_q_at < node->log_q_n && !checkpoint && !stuck && !bad && node->fault == 0 &&
           node->diverged_seq == 0 && !node->stopped) {
        Twinbft__LogEntry *e = node->log_q[node->log_q_at];
        Twinbft__CommittedCert *cc =
            twinbft__committed_cert__unpack(NULL, e->committed.len, e->committed.data);
        uint64_t seq = 0, view = 0;
        uint8_t d[PROTO_DIGEST_BYTES];
        if (cc == NULL || validate_committed_cert(node, cc, &seq, &view, d) != 0) {
            node->dropped++;
            bad = true; /* a faulty peer's: the rest of its log goes too */
        } else if (seq > node->executed &&
                   (seq != node->executed + 1 || seq > node->h + node->cfg.log_window)) {
            stuck = true;
        } else if (seq == node->executed + 1) {
            execute_committed(node, seq, view, d, cc->batch.data, cc->batch.len);
            node->log_replayed++;
            node->log_replayed_bytes += twinbft__log_entry__get_packed_size(e);
            if (node->executed == seq && seq % node->cfg.checkpoint_interval == 0) {
                replay_proof(node, e);
                checkpoint = true; /* the next checkpoint in the next ready */
            }
        }
        if (cc != NULL) {
            twinbft__committed_cert__free_unpacked(cc, NULL);
        }
        twinbft__log_entry__free_unpacked(e, NULL);
        node->log_q_at++;
    }
    if (stuck || bad || node->log_q_at == node->log_q_n || node->fault != 0 ||
        node->diverged_seq != 0 || node->stopped) {
        log_queue_clear(node);
    }
    if (node->executed > before) {
        node->log_stalled = false;
        if (node->log_q_n == 0) {
            fetch_soon(node); /* the log may go on beyond one reply */
        }
    } else if (stuck) {
        /* A log that does not move us: the next FETCH asks for the state. */
        node->log_stalled = true;
    }
}

void log_tick(pbft_node *node) {
    if (node->log_q_n > 0) {
        replay_log(node);
        try_execute(node);
    }
}

/* Takes a peer's log into the queue, unless one is being replayed, and
 * after it the in-window certificates that came with it: those lie above
 * our window until the log's proofs move it, so they wait their turn in
 * the queue rather than be dropped. True when the reply was taken. */
static bool log_take(pbft_node *node, const Twinbft__FetchReply *r) {
    if (r->n_log == 0 || node->log_q_n > 0) {
        return false;
    }
    size_t n = r->n_log + r->n_committed;
    node->log_q = calloc(n, sizeof *node->log_q);
    PBFT_ASSERT(node->log_q != NULL);
    for (size_t i = 0; i < n; i++) {
        Twinbft__LogEntry cert = TWINBFT__LOG_ENTRY__INIT;
        const Twinbft__LogEntry *e = &cert;
        if (i < r->n_log) {
            e = r->log[i];
        } else {
            const Twinbft__CommittedCert *cc = r->committed[i - r->n_log];
            cert.committed.len = twinbft__committed_cert__get_packed_size(cc);
            cert.committed.data = malloc(cert.committed.len ? cert.committed.len : 1);
            PBFT_ASSERT(cert.committed.data != NULL);
            twinbft__committed_cert__pack(cc, cert.committed.data);
        }
        size_t len = twinbft__log_entry__get_packed_size(e);
        uint8_t *b = malloc(len ? len : 1);
        PBFT_ASSERT(b != NULL);
        twinbft__log_entry__pack(e, b);
        node->log_q[i] = twinbft__log_entry__unpack(NULL, len, b);
        PBFT_ASSERT(node->log_q[i] != NULL);
        free(b);
        free(cert.committed.data);
    }
    node->log_q_n = n;
    node->log_q_at = 0;
    replay_log(node);
    return true;
}

void on_fetch(pbft_node *node, const pbft_from *from, const Twinbft__Fetch *f) {
    /* A correct replica fetches at most once per request timeout; answering
     * more often would let a faulty one make us export in a loop. */
    if (!answer_allowed(node, &node->fetch_served_at[from->replica])) {
        node->dropped++;
        return;
    }
    Twinbft__FetchReply r = TWINBFT__FETCH_REPLY__INIT;
    Twinbft__Manifest mf = TWINBFT__MANIFEST__INIT;
    Twinbft__CheckpointRecord *rec = NULL;
    uint8_t(*hashes)[PROTO_DIGEST_BYTES] = NULL;
    Twinbft__Signed *proof[PBFT_REPLICAS_MAX];
    size_t np = 0, budget = 0;
    uint64_t from_seq = f->executed;
    /* A peer behind our stable checkpoint whose next seq our retained log
     * still holds replays the log: no manifest, no state. */
    Twinbft__LogEntry **log = NULL;
    size_t nlog = node->h > f->executed && !f->want_state
                      ? log_collect(node, f->executed + 1, &log, &budget)
                      : 0;
    if (nlog > 0) {
        r.log = log;
        r.n_log = nlog;
        from_seq = f->executed + nlog; /* the in-window certificates follow on, if contiguous */
    } else if (node->h > f->executed && node->h > 0) {
        /* The checkpoint we serve is the one whose export we last started
         * (`served`), as long as the asker is behind it and our retained
         * log goes on from it (the asker replays the rest); otherwise our
         * stable checkpoint h, whose export starts now. Exporting anew at
         * every checkpoint under load would keep the export always in the
         * making, and askers from finding f+1 peers that offer the same
         * one. Only a state the quorum certified is served: our own
         * checkpoint at h, with the digest the quorum signed. */
        pbft_served *sv = &node->served;
        bool keep = sv->seq > f->executed &&
                    (sv->seq == node->h || (sv->seq < node->h && log_has(node, sv->seq + 1)));
        if (!keep) {
            pbft_ckpt *c = ckpt_get(node, node->h, false);
            if (c != NULL && c->own && c->record != NULL && node->diverged_seq == 0 &&
                memcmp(c->own_digest, node->h_digest, PROTO_DIGEST_BYTES) == 0) {
                served_keep(node, c->record, c->record_len);
            }
        }
        r.checkpoint_seq = node->h;
        uint8_t *const *pr = node->h_proof;
        const size_t *pl = node->h_proof_len;
        int rc = sv->seq > f->executed
                     ? fill_manifest(node, sv->seq, sv->record, sv->record_len, &mf, &rec, &hashes)
                     : TB_ERR_NOT_FOUND;
        if (rc == 0) {
            r.checkpoint_seq = sv->seq;
            pr = sv->proof;
            pl = sv->proof_len;
        } else if (rc != TB_ERR_AGAIN) {
            served_clear(node); /* it cannot be exported (any more): h, next time */
        }
        if (mf.seq != 0) {
            mf.base.descriptor = &twinbft__manifest__descriptor;
            r.manifest = &mf;
        }
        for (uint32_t i = 0; i < node->n; i++) {
            if (pr[i] != NULL) {
                proof[np] = twinbft__signed__unpack(NULL, pl[i], pr[i]);
                PBFT_ASSERT(proof[np] != NULL);
                np++;
            }
        }
        r.checkpoint_proof = proof;
        r.n_checkpoint_proof = np;
        from_seq = node->h;
        budget = r.manifest != NULL ? twinbft__manifest__get_packed_size(&mf) : 0;
    }
    Twinbft__CommittedCert **ccs = calloc(node->cfg.log_window, sizeof *ccs);
    PBFT_ASSERT(ccs != NULL);
    size_t ncc = 0;
    for (uint64_t s = from_seq + 1; s <= node->h + node->cfg.log_window; s++) {
        pbft_slot *sl = slot_get(node, s);
        if (sl == NULL || sl->cc == NULL || budget + sl->cc_len > FETCH_REPLY_BUDGET) {
            break; /* only a contiguous run is useful to the asker */
        }
        ccs[ncc] = twinbft__committed_cert__unpack(NULL, sl->cc_len, sl->cc);
        PBFT_ASSERT(ccs[ncc] != NULL);
        budget += sl->cc_len;
        ncc++;
    }
    r.committed = ccs;
    r.n_committed = ncc;
    if (r.checkpoint_seq > 0 || ncc > 0 || nlog > 0) {
        Twinbft__Message m = TWINBFT__MESSAGE__INIT;
        m.kind_case = TWINBFT__MESSAGE__KIND_FETCH_REPLY;
        m.fetch_reply = &r;
        out_msg(node, from->replica, NULL, &m);
    }
    for (size_t i = 0; i < np; i++) {
        twinbft__signed__free_unpacked(proof[i], NULL);
    }
    for (size_t i = 0; i < ncc; i++) {
        twinbft__committed_cert__free_unpacked(ccs[i], NULL);
    }
    free(ccs);
    free(mf.chunk_hashes);
    free(hashes);
    for (size_t i = 0; i < nlog; i++) {
        twinbft__log_entry__free_unpacked(log[i], NULL);
    }
    free(log);
    if (rec != NULL) {
        twinbft__checkpoint_record__free_unpacked(rec, NULL);
    }
}

static void on_chunk_fetch(pbft_node *node, const pbft_from *from, const Twinbft__ChunkFetch *cf) {
    uint32_t p = from->replica;
    uint64_t period = node->cfg.request_timeout_ms / 4;
    if (node->now >= node->chunks_period_at[p] + period || node->chunks_period_at[p] == 0) {
        node->chunks_period_at[p] = node->now ? node->now : 1;
        node->chunks_served[p] = 0;
    }
    if (node->chunks_served[p] >= PBFT_CHUNKS_PER_PERIOD || cf->chunk_bytes == 0 ||
        cf->chunk_bytes > FETCH_REPLY_BUDGET) {
        node->dropped++;
        return;
    }
    node->chunks_served[p]++;
    uint64_t total = 0;
    uint8_t(*hashes)[PROTO_DIGEST_BYTES] = NULL;
    size_t n = 0;
    if (export_manifest(node, cf->seq, cf->chunk_bytes, &total, &hashes, &n) != 0) {
        return; /* not exported (any more): the asker asks another peer */
    }
    free(hashes);
    if (cf->index >= n) {
        node->dropped++;
        return;
    }
    uint64_t off = (uint64_t)cf->index * cf->chunk_bytes;
    size_t len = total - off < cf->chunk_bytes ? (size_t)(total - off) : cf->chunk_bytes;
    uint8_t *buf = malloc(len ? len : 1);
    PBFT_ASSERT(buf != NULL);
    if (export_read(node, cf->seq, cf->chunk_bytes, off, buf, len) == 0) {
        Twinbft__Chunk c = TWINBFT__CHUNK__INIT;
        c.seq = cf->seq;
        c.index = cf->index;
        c.data = (ProtobufCBinaryData){len, buf};
        Twinbft__Message m = TWINBFT__MESSAGE__INIT;
        m.kind_case = TWINBFT__MESSAGE__KIND_CHUNK;
        m.chunk = &c;
        out_msg(node, p, NULL, &m);
        node->xfer_chunks_out++;
        node->xfer_bytes_out += len;
    }
    free(buf);
}

int validate_committed_cert(pbft_node *node, const Twinbft__CommittedCert *cc, uint64_t *seq,
                            uint64_t *view, uint8_t *digest) {
    Twinbft__Body *b = NULL;
    int rc = TB_ERR_INVALID;
    if (cc->pre_prepare == NULL || verify_signed(node, cc->pre_prepare, &b) != 0) {
        return TB_ERR_INVALID;
    }
    const Twinbft__PrePrepare *pp = b->pre_prepare;
    if (b->kind_case != TWINBFT__BODY__KIND_PRE_PREPARE || !digest_ok(&pp->digest) ||
        cc->pre_prepare->signer != primary_of(node, pp->view) ||
        cc->batch.len > PBFT_BATCH_BYTES_MAX) {
        goto done;
    }
    uint8_t d[PROTO_DIGEST_BYTES];
    batch_digest(cc->batch.data, cc->batch.len, d);
    if (memcmp(d, pp->digest.data, PROTO_DIGEST_BYTES) != 0 ||
        !batch_bytes_ok(node, cc->batch.data, cc->batch.len)) {
        goto done;
    }
    uint32_t count = count_votes(node, cc->commits, cc->n_commits, TWINBFT__BODY__KIND_COMMIT,
                                 pp->view, pp->seq, d, UINT32_MAX);
    uint32_t need = PBFT_BUG(node, PBFT_BUG_QUORUM_2F) ? node->q - 1 : node->q;
    if (count >= need) {
        *seq = pp->seq;
        *view = pp->view;
        memcpy(digest, d, PROTO_DIGEST_BYTES);
        rc = 0;
    }
done:
    twinbft__body__free_unpacked(b, NULL);
    return rc;
}

/* The state digest a manifest's certified part gives; false when the
 * manifest is malformed. */
static bool manifest_state_digest(const pbft_node *node, const Twinbft__Manifest *mf,
                                  uint8_t d[PROTO_DIGEST_BYTES]) {
    uint64_t cb = mf->chunk_bytes;
    if (mf->seq == 0 || !digest_ok(&mf->app_digest) || mf->seq % node->cfg.checkpoint_interval ||
        cb == 0 || cb > FETCH_REPLY_BUDGET || mf->n_chunk_hashes > PBFT_CHUNKS_MAX ||
        mf->n_chunk_hashes != (mf->state_bytes + cb - 1) / cb) {
        return false;
    }
    for (size_t i = 0; i < mf->n_chunk_hashes; i++) {
        if (!digest_ok(&mf->chunk_hashes[i])) {
            return false;
        }
    }
    proto_lthash lt;
    proto_lthash_init(&lt);
    for (size_t i = 0; i < mf->n_clients; i++) {
        const Twinbft__ClientEntry *e = mf->clients[i];
        size_t nlen = e->client ? strnlen(e->client, PBFT_CLIENT_NAME_BYTES_MAX) : 0;
        if (nlen == 0 || nlen >= PBFT_CLIENT_NAME_BYTES_MAX ||
            (i > 0 && strcmp(mf->clients[i - 1]->client, e->client) >= 0)) {
            return false;
        }
        size_t len = twinbft__client_entry__get_packed_size(e);
        uint8_t *b = malloc(len ? len : 1);
        PBFT_ASSERT(b != NULL);
        twinbft__client_entry__pack(e, b);
        proto_lthash_add(&lt, b, len);
        free(b);
    }
    uint8_t cl[PROTO_DIGEST_BYTES];
    proto_lthash_digest(&lt, cl);
    state_digest(mf->app_digest.data, cl, mf->last_timestamp_ms, d);
    return true;
}

/* The digest a peer's chunk list votes for: size, chunk size and hashes. */
static void list_digest(const Twinbft__Manifest *mf, const uint8_t state[PROTO_DIGEST_BYTES],
                        uint8_t out[PROTO_DIGEST_BYTES]) {
    enum { HEAD = 8 + PROTO_DIGEST_BYTES + 8 + 4 };
    size_t len = HEAD + mf->n_chunk_hashes * PROTO_DIGEST_BYTES;
    uint8_t *b = malloc(len);
    PBFT_ASSERT(b != NULL);
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(mf->seq >> (56 - 8 * i));
        b[8 + PROTO_DIGEST_BYTES + i] = (uint8_t)(mf->state_bytes >> (56 - 8 * i));
    }
    memcpy(b + 8, state, PROTO_DIGEST_BYTES);
    for (int i = 0; i < 4; i++) {
        b[16 + PROTO_DIGEST_BYTES + i] = (uint8_t)(mf->chunk_bytes >> (24 - 8 * i));
    }
    for (size_t i = 0; i < mf->n_chunk_hashes; i++) {
        memcpy(b + HEAD + i * PROTO_DIGEST_BYTES, mf->chunk_hashes[i].data, PROTO_DIGEST_BYTES);
    }
    proto_sha256(b, len, out);
    free(b);
}

/* Adopts the manifest `from` sent (its stored reply: the manifest and the
 * proof checked when it came): its checkpoint is the one fetched. */
static void xfer_adopt(pbft_node *node, uint32_t from) {
    pbft_xfer *x = &node->xfer;
    Twinbft__FetchReply *r = twinbft__fetch_reply__unpack(NULL, x->list_len[from], x->lists[from]);
    PBFT_ASSERT(r != NULL && r->manifest != NULL);
    Twinbft__Manifest *mf = r->manifest;
    PBFT_ASSERT(manifest_state_digest(node, mf, x->state_digest));
    x->seq = mf->seq;
    free(x->meta);
    x->meta_len = twinbft__manifest__get_packed_size(mf);
    x->meta = malloc(x->meta_len);
    PBFT_ASSERT(x->meta != NULL);
    twinbft__manifest__pack(mf, x->meta);
    for (uint32_t i = 0; i < node->n; i++) {
        free(x->proof[i]);
        x->proof[i] = NULL;
    }
    for (size_t i = 0; i < r->n_checkpoint_proof && i < PBFT_REPLICAS_MAX; i++) {
        uint32_t sg = r->checkpoint_proof[i]->signer;
        if (sg < node->n && x->proof[sg] == NULL) {
            x->proof[sg] = pack_signed(r->checkpoint_proof[i], &x->proof_len[sg]);
        }
    }
    int rc = import_begin(node, x->seq, mf->state_bytes);
    if (rc != 0) {
        twinbft__fetch_reply__free_unpacked(r, NULL);
        if (rc != TB_ERR_TOO_LARGE) {
            node_fault(node, rc); /* a local fault: the spool cannot be written */
        }
        xfer_reset(node);
        return;
    }
    x->adopted = true;
    memcpy(x->list, x->vote[from], PROTO_DIGEST_BYTES);
    x->total = mf->state_bytes;
    x->chunk_bytes = mf->chunk_bytes;
    x->n_chunks = (uint32_t)mf->n_chunk_hashes;
    x->hashes = malloc(x->n_chunks ? x->n_chunks * (size_t)PROTO_DIGEST_BYTES : 1);
    x->have = calloc(x->n_chunks ? x->n_chunks : 1, 1);
    x->asked_at = calloc(x->n_chunks ? x->n_chunks : 1, sizeof *x->asked_at);
    x->asked_of = calloc(x->n_chunks ? x->n_chunks : 1, sizeof *x->asked_of);
    PBFT_ASSERT(x->hashes && x->have && x->asked_at && x->asked_of);
    for (uint32_t i = 0; i < x->n_chunks; i++) {
        memcpy(x->hashes[i], mf->chunk_hashes[i].data, PROTO_DIGEST_BYTES);
    }
    x->progress_at = node->now;
    twinbft__fetch_reply__free_unpacked(r, NULL);
}

/* The peers that may be asked for chunks: sent the adopted list, never a
 * bad chunk. */
static bool xfer_peer_ok(const pbft_node *node, uint32_t p) {
    const pbft_xfer *x = &node->xfer;
    return p != node->cfg.self && x->voted[p] && !x->bad[p] &&
           memcmp(x->vote[p], x->list, PROTO_DIGEST_BYTES) == 0;
}

static void finish(pbft_node *node);

/* Asks for chunks until the window is full. */
static void pump(pbft_node *node) {
    pbft_xfer *x = &node->xfer;
    if (!x->adopted) {
        return;
    }
    if (x->received == x->n_chunks) {
        finish(node);
        return;
    }
    uint32_t window = node->cfg.transfer_window;
    for (uint32_t scanned = 0; x->outstanding < window && scanned < x->n_chunks; scanned++) {
        uint32_t i = x->next;
        x->next = (x->next + 1) % x->n_chunks;
        if (x->have[i] != 0) {
            continue;
        }
        uint32_t p = UINT32_MAX;
        for (uint32_t k = 0; k < node->n; k++) {
            uint32_t cand = (x->rr + k) % node->n;
            if (xfer_peer_ok(node, cand)) {
                p = cand;
                break;
            }
        }
        if (p == UINT32_MAX) {
            xfer_reset(node); /* nobody left to ask: start over from a FETCH */
            return;
        }
        x->rr = (p + 1) % node->n;
        x->have[i] = 1;
        x->asked_at[i] = node->now;
        x->asked_of[i] = p;
        x->outstanding++;
        Twinbft__ChunkFetch cf = TWINBFT__CHUNK_FETCH__INIT;
        cf.seq = x->seq;
        cf.index = i;
        cf.chunk_bytes = x->chunk_bytes;
        Twinbft__Message m = TWINBFT__MESSAGE__INIT;
        m.kind_case = TWINBFT__MESSAGE__KIND_CHUNK_FETCH;
        m.chunk_fetch = &cf;
        out_msg(node, p, NULL, &m);
    }
}

/* Takes a manifest from peer `from`, whose proof was already checked. Each
 * peer's latest manifest is its vote, for whichever checkpoint it names:
 * peers export when first asked, and their stable checkpoints need not be
 * the same then, so the checkpoint fetched is the first one f+1 peers
 * agree on (with the retained log, any recent one will do). */
static void take_manifest(pbft_node *node, uint32_t from, const Twinbft__FetchReply *r,
                          const uint8_t d[PROTO_DIGEST_BYTES]) {
    pbft_xfer *x = &node->xfer;
    const Twinbft__Manifest *mf = r->manifest;
    if (x->adopted) {
        return; /* one transfer at a time; a later one when this one ends */
    }
    if (x->seq == 0) {
        x->deadline = node->now + node->cfg.request_timeout_ms / 4;
    }
    if (mf->seq > x->seq) {
        x->seq = mf->seq; /* the newest seen, until one is adopted */
    }
    Twinbft__FetchReply keep = TWINBFT__FETCH_REPLY__INIT;
    keep.checkpoint_seq = r->checkpoint_seq;
    keep.manifest = r->manifest;
    keep.checkpoint_proof = r->checkpoint_proof;
    keep.n_checkpoint_proof = r->n_checkpoint_proof;
    free(x->lists[from]);
    x->voted[from] = true;
    list_digest(mf, d, x->vote[from]);
    x->list_len[from] = twinbft__fetch_reply__get_packed_size(&keep);
    x->lists[from] = malloc(x->list_len[from]);
    PBFT_ASSERT(x->lists[from] != NULL);
    twinbft__fetch_reply__pack(&keep, x->lists[from]);
    uint32_t same = 0;
    for (uint32_t p = 0; p < node->n; p++) {
        same += x->voted[p] && memcmp(x->vote[p], x->vote[from], PROTO_DIGEST_BYTES) == 0;
    }
    uint32_t need = PBFT_BUG(node, PBFT_BUG_SKIP_CKPT_VERIFY) ? 1 : node->f + 1;
    if (same >= need) {
        xfer_adopt(node, from);
        pump(node);
    }
}

/* Every chunk is stored: the application installs the export, then the
 * core the rest of the checkpoint's state. */
static void finish(pbft_node *node) {
    pbft_xfer *x = &node->xfer;
    if (x->seq <= node->executed || x->seq < node->h) {
        xfer_reset(node); /* overtaken: executed from the log, or the window moved past it */
        return;
    }
    bool skip = PBFT_BUG(node, PBFT_BUG_SKIP_CKPT_VERIFY);
    Twinbft__Manifest *mf = twinbft__manifest__unpack(NULL, x->meta_len, x->meta);
    PBFT_ASSERT(mf != NULL);
    int rc = import_finish(node, x->seq, skip ? NULL : mf->app_digest.data);
    if (rc != 0) {
        /* With every chunk checked against a list f+1 replicas sent, the
         * export is a correct replica's: refusing it means a planted bug or
         * a local fault. Counted (the simulator fails on it) and retried. */
        node->xfer_refused++;
        node->dropped++;
        twinbft__manifest__free_unpacked(mf, NULL);
        xfer_reset(node);
        return;
    }
    uint64_t seq = x->seq;
    clients_replace(node, mf->clients, mf->n_clients);
    for (size_t i = 0; i < node->n_pending;) {
        pbft_client *c = client_find(node, node->pending[i].client);
        if (c != NULL && c->number >= node->pending[i].number) {
            pending_remove_upto(node, node->pending[i].client, c->number);
        } else {
            i++;
        }
    }
    node->executed = seq;
    node->seen_work = true; /* a quorum checkpointed past us: see maybe_join */
    node->last_ts = mf->last_timestamp_ms;
    node->diverged_seq = 0; /* the certified state replaced ours */
    node->xfer_completed++;
    if (seq > node->h) {
        /* Move the window first so that our own checkpoint of seq fits in it. */
        advance_stable(node, seq, x->state_digest, x->proof, x->proof_len);
    }
    take_checkpoint(node);
    node->out.transferred = true;
    node->out.transfer_seq = seq;
    twinbft__manifest__free_unpacked(mf, NULL);
    xfer_reset(node);
    meta_dirty(node);
    request_timer_update(node);
    try_execute(node); /* what committed meanwhile, in our window */
    fetch_soon(node);  /* the log after the checkpoint */
}

static void on_chunk(pbft_node *node, const pbft_from *from, const Twinbft__Chunk *c) {
    pbft_xfer *x = &node->xfer;
    if (!x->adopted || c->seq != x->seq || c->index >= x->n_chunks || x->have[c->index] == 2) {
        return; /* late, or already had: not the sender's fault */
    }
    uint32_t i = c->index;
    uint64_t off = (uint64_t)i * x->chunk_bytes;
    uint64_t want = x->total - off < x->chunk_bytes ? x->total - off : x->chunk_bytes;
    uint8_t h[PROTO_DIGEST_BYTES];
    proto_sha256(c->data.data, c->data.len, h);
    bool skip =
        PBFT_BUG(node, PBFT_BUG_SKIP_CHUNK_VERIFY) || PBFT_BUG(node, PBFT_BUG_SKIP_CKPT_VERIFY);
    if (c->data.len != want || (!skip && memcmp(h, x->hashes[i], PROTO_DIGEST_BYTES) != 0)) {
        /* A faulty peer: ask it for nothing more in this transfer. */
        x->bad[from->replica] = true;
        node->xfer_chunks_bad++;
        node->dropped++;
        if (x->have[i] == 1) {
            x->have[i] = 0;
            x->outstanding--;
        }
        pump(node);
        return;
    }
    int rc = import_write(node, x->seq, off, c->data.data, c->data.len);
    if (rc != 0) {
        node_fault(node, rc);
        return;
    }
    if (x->have[i] == 1) {
        x->outstanding--;
    }
    x->have[i] = 2;
    x->received++;
    x->done_bytes += c->data.len;
    x->progress_at = node->now;
    node->xfer_chunks_in++;
    node->xfer_bytes_in += c->data.len;
    pump(node);
}

/* Timers: re-ask chunks not received in time (of the next peer), ask for
 * manifests again until f+1 agree, give up on a transfer that stalled. */
void xfer_tick(pbft_node *node) {
    pbft_xfer *x = &node->xfer;
    if (x->seq == 0) {
        return;
    }
    if (node->executed >= x->seq || x->seq < node->h) {
        xfer_reset(node); /* caught up from the log meanwhile, or overtaken */
        return;
    }
    uint64_t quarter = node->cfg.request_timeout_ms / 4 ? node->cfg.request_timeout_ms / 4 : 1;
    if (!x->adopted) {
        if (node->now >= x->deadline) {
            x->deadline = node->now + quarter;
            node->fetch_deadline = 0;
            start_fetch(node);
        }
        return;
    }
    if (node->now >= x->progress_at + 8 * quarter) {
        xfer_reset(node); /* nobody serves it any more: start over */
        node->fetch_deadline = 0;
        start_fetch(node);
        return;
    }
    for (uint32_t i = 0; i < x->n_chunks; i++) {
        if (x->have[i] == 1 && node->now >= x->asked_at[i] + quarter) {
            x->have[i] = 0;
            x->outstanding--;
            x->rr = (x->asked_of[i] + 1) % node->n;
        }
    }
    pump(node);
}

uint64_t xfer_deadline(const pbft_node *node) {
    const pbft_xfer *x = &node->xfer;
    if (x->seq == 0) {
        return UINT64_MAX;
    }
    uint64_t quarter = node->cfg.request_timeout_ms / 4 ? node->cfg.request_timeout_ms / 4 : 1;
    if (!x->adopted) {
        return x->deadline;
    }
    uint64_t d = x->progress_at + 8 * quarter;
    for (uint32_t i = 0; i < x->n_chunks; i++) {
        if (x->have[i] == 1 && x->asked_at[i] + quarter < d) {
            d = x->asked_at[i] + quarter;
        }
    }
    return d;
}

static void install_committed(pbft_node *node, const Twinbft__CommittedCert *cc) {
    uint64_t seq = 0, view = 0;
    uint8_t d[PROTO_DIGEST_BYTES];
    if (validate_committed_cert(node, cc, &seq, &view, d) != 0) {
        node->dropped++;
        return;
    }
    pbft_slot *sl = slot_get(node, seq);
    if (sl == NULL || sl->cc != NULL || seq <= node->executed) {
        return;
    }
    sl->cc_len = twinbft__committed_cert__get_packed_size(cc);
    sl->cc = malloc(sl->cc_len);
    PBFT_ASSERT(sl->cc != NULL);
    twinbft__committed_cert__pack(cc, sl->cc);
    memcpy(sl->cc_digest, d, PROTO_DIGEST_BYTES);
    sl->cc_batch = dup_bytes(cc->batch.data, cc->batch.len);
    sl->cc_batch_len = cc->batch.len;
    sl->cc_view = view;
    sl->dirty = true;
    sl->lazy = false;
    if (view == node->view) {
        node->seen_work = true; /* the cluster commits in our view: see maybe_join */
    }
}

void on_fetch_reply(pbft_node *node, const pbft_from *from, const Twinbft__FetchReply *r) {
    uint64_t before = node->executed;
    bool logged = log_take(node, r);
    const Twinbft__Manifest *mf = r->manifest;
    if (mf != NULL && mf->seq == r->checkpoint_seq && mf->seq > node->executed &&
        mf->seq >= node->h && r->n_checkpoint_proof <= PBFT_REPLICAS_MAX) {
        uint8_t d[PROTO_DIGEST_BYTES];
        bool skip = PBFT_BUG(node, PBFT_BUG_SKIP_CKPT_VERIFY);
        if (!manifest_state_digest(node, mf, d) ||
            (!skip && verify_ckpt_proof(node, mf->seq, d, r->checkpoint_proof,
                                        r->n_checkpoint_proof) != 0)) {
            node->dropped++;
        } else {
            xfer_alloc(node);
            take_manifest(node, from->replica, r, d);
        }
    }
    if (mf == NULL && r->checkpoint_seq > node->executed && node->xfer.seq == 0) {
        fetch_soon(node); /* the peer is ahead and still exporting */
    }
    for (size_t i = 0; !logged && i < r->n_committed && i < node->cfg.log_window; i++) {
        install_committed(node, r->committed[i]);
    }
    try_execute(node);
    if (node->executed > before && r->n_log == 0) {
        node->fetch_deadline = 0; /* progress: the next fetch may go out at once */
    }
}

void on_transfer_msg(pbft_node *node, const pbft_from *from, const Twinbft__Message *m) {
    if (m->kind_case == TWINBFT__MESSAGE__KIND_CHUNK_FETCH) {
        on_chunk_fetch(node, from, m->chunk_fetch);
    } else {
        on_chunk(node, from, m->chunk);
    }
}

void transfer_status(const pbft_node *node, pbft_status *st) {
    const pbft_xfer *x = &node->xfer;
    st->xfer_seq = x->adopted ? x->seq : 0;
    st->xfer_total_bytes = x->adopted ? x->total : 0;
    st->xfer_done_bytes = x->adopted ? x->done_bytes : 0;
    st->xfer_chunks_in = node->xfer_chunks_in;
    st->xfer_chunks_bad = node->xfer_chunks_bad;
    st->xfer_completed = node->xfer_completed;
    st->xfer_refused = node->xfer_refused;
    st->xfer_bytes_in = node->xfer_bytes_in;
    st->xfer_chunks_out = node->xfer_chunks_out;
    st->xfer_bytes_out = node->xfer_bytes_out;
    st->log_replayed = node->log_replayed;
    st->log_replayed_bytes = node->log_replayed_bytes;
    st->log_served = node->log_served;
}
