/* Outputs of the core (messages to send, records to persist) and the
 * helpers that sign and verify what replicas exchange. */
#include <string.h>

#include "consensus/internal.h"
#include "proto/frame.h"

#define GROW(arr, n, cap)                                                                          \
    do {                                                                                           \
        if ((n) == (cap)) {                                                                        \
            size_t ncap = (cap) ? (cap)*2 : 16;                                                    \
            void *p = realloc((arr), ncap * sizeof(*(arr)));                                       \
            PBFT_ASSERT(p != NULL);                                                                \
            (arr) = p;                                                                             \
            (cap) = ncap;                                                                          \
        }                                                                                          \
    } while (0)

uint8_t *dup_bytes(const void *p, size_t len) {
    uint8_t *d = malloc(len ? len : 1);
    PBFT_ASSERT(d != NULL);
    if (len) {
        memcpy(d, p, len);
    }
    return d;
}

bool digest_ok(const ProtobufCBinaryData *d) {
    return d->len == PROTO_DIGEST_BYTES;
}

/* A lone replica (n = 1) has nobody to send replica messages to; its
 * signed votes are still made and kept, as certificates need them. */
/* Nothing goes out to no peer (n = 1), and a replica whose state diverged
 * from a quorum's says nothing at all (checkpoint.c diverge): its votes and
 * replies would vouch for a state no quorum holds. It only fetches. */
static bool out_to_nobody(const pbft_node *node, uint32_t to) {
    return (to == PBFT_TO_ALL && node->n == 1) || node->diverged_seq != 0;
}

void out_msg(pbft_node *node, uint32_t to, const char *client, const Twinbft__Message *m) {
    bool fetch = (m->kind_case == TWINBFT__MESSAGE__KIND_FETCH ||
                  m->kind_case == TWINBFT__MESSAGE__KIND_CHUNK_FETCH) &&
                 node->n > 1;
    if (out_to_nobody(node, to) && !fetch) {
        return;
    }
    pbft_out *o = &node->out;
    uint8_t *data = NULL;
    size_t len = 0;
    if (proto_message_pack(m, &data, &len) != 0) {
        /* Larger than a frame (e.g. a NEW-VIEW over huge view changes): not
         * sendable. Dropping it costs liveness of this step, never safety,
         * and a replica must not be crashable by what peers make it send. */
        node->dropped++;
        node->oversize++;
        return;
    }
    GROW(o->msgs, o->n_msgs, o->cap_msgs);
    o->msgs[o->n_msgs++] =
        (pbft_msg){.to = to,
                   .client = client ? (const char *)dup_bytes(client, strlen(client) + 1) : NULL,
                   .data = data,
                   .len = len,
                   .early = node->out_early};
}

bool answer_allowed(const pbft_node *node, uint64_t *at) {
    if (*at != 0 && node->now < *at + node->cfg.request_timeout_ms / 4) {
        return false;
    }
    *at = node->now;
    return true;
}

void out_signed(pbft_node *node, uint32_t to, Twinbft__Message__KindCase kind, const uint8_t *sb,
                size_t slen) {
    if (out_to_nobody(node, to)) {
        return;
    }
    Twinbft__Signed *s = twinbft__signed__unpack(NULL, slen, sb);
    PBFT_ASSERT(s != NULL); /* we packed it ourselves */
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = kind;
    switch (kind) {
    case TWINBFT__MESSAGE__KIND_PREPARE:
        m.prepare = s;
        break;
    case TWINBFT__MESSAGE__KIND_COMMIT:
        m.commit = s;
        break;
    case TWINBFT__MESSAGE__KIND_CHECKPOINT:
        m.checkpoint = s;
        break;
    case TWINBFT__MESSAGE__KIND_VIEW_CHANGE:
        m.view_change = s;
        break;
    case TWINBFT__MESSAGE__KIND_NEW_VIEW:
        m.new_view = s;
        break;
    default:
        PBFT_ASSERT(!"out_signed: not a Signed message kind");
    }
    out_msg(node, to, NULL, &m);
    twinbft__signed__free_unpacked(s, NULL);
}

void out_record(pbft_node *node, pbft_record_kind kind, uint64_t seq, const char *client, bool del,
                uint8_t *data, size_t len) {
    pbft_out *o = &node->out;
    GROW(o->records, o->n_records, o->cap_records);
    o->records[o->n_records++] =
        (pbft_record){.kind = kind,
                      .seq = seq,
                      .client = client ? (const char *)dup_bytes(client, strlen(client) + 1) : NULL,
                      .del = del,
                      .data = data,
                      .len = len};
}

void out_clear(pbft_out *o) {
    for (size_t i = 0; i < o->n_msgs; i++) {
        free((void *)o->msgs[i].client);
        free((void *)o->msgs[i].data);
    }
    for (size_t i = 0; i < o->n_records; i++) {
        free((void *)o->records[i].client);
        free((void *)o->records[i].data);
    }
    for (size_t i = 0; i < o->n_executed; i++) {
        pbft_executed *e = &o->executed[i];
        free(e->requests);
        twinbft__batch__free_unpacked(e->batch_owner, NULL);
    }
    o->n_msgs = o->n_records = o->n_executed = o->n_stable = 0;
    o->transferred = false;
    o->transfer_seq = 0;
}

uint8_t *pack_signed(const Twinbft__Signed *s, size_t *len) {
    *len = twinbft__signed__get_packed_size(s);
    uint8_t *b = malloc(*len ? *len : 1);
    PBFT_ASSERT(b != NULL);
    twinbft__signed__pack(s, b);
    return b;
}

/* Packs and signs a Body as this replica; returns a packed Signed. */
int out_sign(pbft_node *node, const Twinbft__Body *body, uint8_t **sbytes, size_t *slen) {
    size_t blen = twinbft__body__get_packed_size(body);
    uint8_t *b = malloc(blen ? blen : 1);
    PBFT_ASSERT(b != NULL);
    twinbft__body__pack(body, b);
    uint8_t sig[PROTO_SIG_BYTES];
    int rc = node->cfg.crypto.sign(node->cfg.crypto.ctx, b, blen, sig);
    if (rc != 0) {
        free(b);
        return rc;
    }
    Twinbft__Signed s = TWINBFT__SIGNED__INIT;
    s.body.data = b;
    s.body.len = blen;
    s.signer = node->cfg.self;
    s.signature.data = sig;
    s.signature.len = sizeof sig;
    *sbytes = pack_signed(&s, slen);
    free(b);
    return 0;
}

/* Checks a Signed: known signer, valid signature, decodable Body. */
int verify_signature(pbft_node *node, const Twinbft__Signed *s) {
    if (s == NULL || s->signer >= node->n || s->signature.len != PROTO_SIG_BYTES) {
        return TB_ERR_INVALID;
    }
    if (!node->cfg.crypto.verify(node->cfg.crypto.ctx, s->signer, s->body.data, s->body.len,
                                 s->signature.data, s->signature.len)) {
        return TB_ERR_BAD_SIG;
    }
    return 0;
}

int verify_signed(pbft_node *node, const Twinbft__Signed *s, Twinbft__Body **body) {
    int rc = verify_signature(node, s);
    if (rc != 0) {
        return rc;
    }
    *body = twinbft__body__unpack(NULL, s->body.len, s->body.data);
    return *body ? 0 : TB_ERR_INVALID;
}

int verify_signed_bytes(pbft_node *node, const uint8_t *sbytes, size_t slen, uint32_t *signer,
                        Twinbft__Body **body) {
    Twinbft__Signed *s = twinbft__signed__unpack(NULL, slen, sbytes);
    if (s == NULL) {
        return TB_ERR_INVALID;
    }
    int rc = verify_signed(node, s, body);
    *signer = s->signer;
    twinbft__signed__free_unpacked(s, NULL);
    return rc;
}

void vote_set(pbft_vote *v, uint64_t view, const uint8_t *digest, uint8_t *sbytes, size_t slen) {
    free(v->sbytes);
    v->has = true;
    v->view = view;
    if (digest) {
        memcpy(v->digest, digest, PROTO_DIGEST_BYTES);
    } else {
        memset(v->digest, 0, PROTO_DIGEST_BYTES);
    }
    v->sbytes = sbytes;
    v->slen = slen;
}

void vote_clear(pbft_vote *v) {
    free(v->sbytes);
    memset(v, 0, sizeof *v);
}

/* Counts distinct signers (other than `skip`) among votes that are valid
 * signed Prepare or Commit bodies for exactly (view, seq, digest). */
uint32_t count_votes(pbft_node *node, Twinbft__Signed *const *votes, size_t n,
                     Twinbft__Body__KindCase kind, uint64_t view, uint64_t seq,
                     const uint8_t *digest, uint32_t skip) {
    bool seen[PBFT_REPLICAS_MAX] = {false};
    uint32_t count = 0;
    for (size_t i = 0; i < n && i < PBFT_REPLICAS_MAX; i++) {
        Twinbft__Body *b = NULL;
        const Twinbft__Signed *s = votes[i];
        if (s == NULL || s->signer == skip || verify_signed(node, s, &b) != 0) {
            continue;
        }
        /* Prepare and Commit have the same fields; read the one present. */
        uint64_t v = 0, q = 0;
        const ProtobufCBinaryData *d = NULL;
        if (b->kind_case == kind && kind == TWINBFT__BODY__KIND_PREPARE) {
            v = b->prepare->view, q = b->prepare->seq, d = &b->prepare->digest;
        } else if (b->kind_case == kind && kind == TWINBFT__BODY__KIND_COMMIT) {
            v = b->commit->view, q = b->commit->seq, d = &b->commit->digest;
        }
        if (d != NULL && v == view && q == seq && digest_ok(d) &&
            memcmp(d->data, digest, PROTO_DIGEST_BYTES) == 0 && !seen[s->signer]) {
            seen[s->signer] = true;
            count++;
        }
        twinbft__body__free_unpacked(b, NULL);
    }
    return count;
}
