/* Fuzzes pbft_node_step: a sequence of messages from replicas and a
 * client, with ticks in between, into a node whose signature checks always
 * pass, so mutated input reaches the protocol logic instead of stopping at
 * signature verification. Input: chunks of [sender][len16][message bytes];
 * sender 0..3 = replica, 4 = client "fz", 5 = tick (no body). The first
 * byte picks which replica the node is (0 = primary of view 0, or 1). */
#include <stdlib.h>
#include <string.h>

#include "consensus/pbft.h"
#include "proto/frame.h"
#include "tests/fuzz/fuzz.h"

static int sign_zero(void *ctx, const uint8_t *b, size_t len, uint8_t sig[PROTO_SIG_BYTES]) {
    (void)ctx, (void)b, (void)len;
    memset(sig, 0, PROTO_SIG_BYTES);
    return 0;
}

static bool verify_any(void *ctx, uint32_t signer, const uint8_t *b, size_t len, const uint8_t *sig,
                       size_t sig_len) {
    (void)ctx, (void)signer, (void)b, (void)len, (void)sig;
    return sig_len == PROTO_SIG_BYTES;
}

static uint64_t counter;
static uint8_t result[8];

static int app_execute(void *ctx, uint64_t seq, uint64_t t, const pbft_request *r, size_t n,
                       pbft_result *res) {
    (void)ctx, (void)seq, (void)t, (void)r;
    for (size_t i = 0; i < n; i++) {
        counter++;
        memcpy(result, &counter, sizeof result);
        res[i] = (pbft_result){result, sizeof result, 0};
    }
    return 0;
}
static void app_digest(void *ctx, uint8_t out[PROTO_DIGEST_BYTES]) {
    (void)ctx;
    memset(out, 0, PROTO_DIGEST_BYTES);
    memcpy(out, &counter, sizeof counter);
}
static int app_checkpoint(void *ctx, uint64_t seq) {
    (void)ctx, (void)seq;
    return 0;
}
static void app_release(void *ctx, uint64_t seq) {
    (void)ctx, (void)seq;
}
static int app_snapshot(void *ctx, uint64_t seq, uint8_t **out, size_t *len) {
    (void)ctx, (void)seq;
    *out = malloc(sizeof counter);
    memcpy(*out, &counter, sizeof counter);
    *len = sizeof counter;
    return 0;
}
static int app_restore(void *ctx, uint64_t seq, const uint8_t *d, size_t len,
                       const uint8_t expected[PROTO_DIGEST_BYTES]) {
    (void)ctx, (void)seq, (void)expected;
    if (len != sizeof counter) {
        return -1;
    }
    memcpy(&counter, d, sizeof counter);
    return 0;
}

static pbft_node *make_node(uint32_t self) {
    pbft_config cfg;
    memset(&cfg, 0, sizeof cfg);
    pbft_config_defaults(&cfg);
    cfg.n = 4;
    cfg.self = self;
    cfg.cluster_id = (const uint8_t *)"fz";
    cfg.cluster_id_len = 2;
    cfg.checkpoint_interval = 2;
    cfg.log_window = 4;
    cfg.batch_delay_ms = 0;
    cfg.request_timeout_ms = 100;
    cfg.view_timeout_ms = 100;
    cfg.crypto = (pbft_crypto){NULL, sign_zero, verify_any};
    cfg.app = (pbft_app){.ctx = NULL,
                         .execute = app_execute,
                         .digest = app_digest,
                         .checkpoint = app_checkpoint,
                         .release = app_release,
                         .snapshot = app_snapshot,
                         .restore = app_restore,
                         .priority = NULL};
    pbft_node *node = NULL;
    if (pbft_node_create(&cfg, 1000, &node) != 0) {
        abort();
    }
    return node;
}

static void drain(pbft_node *node) {
    while (pbft_node_has_ready(node)) {
        pbft_ready rd;
        pbft_node_ready(node, &rd);
        uint64_t ready_id = rd.id;
        pbft_node_advance(node, &rd);
        pbft_node_durable(node, ready_id);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) {
        return 0;
    }
    counter = 0;
    pbft_node *node = make_node(data[0] & 1);
    uint64_t now = 1000;
    size_t at = 1;
    while (at < size) {
        uint8_t sender = data[at++] % 6;
        if (sender == 5) {
            now += 60;
            pbft_node_tick(node, now);
            drain(node);
            continue;
        }
        if (at + 2 > size) {
            break;
        }
        size_t len = (size_t)data[at] << 8 | data[at + 1];
        at += 2;
        if (len > size - at) {
            len = size - at;
        }
        pbft_from from = {.is_client = sender == 4, .replica = sender, .client = "fz"};
        pbft_node_step(node, &from, data + at, len);
        drain(node);
        at += len;
    }
    pbft_node_free(node);
    return 0;
}

/* ---- corpus: one full normal-case round, a view change, a state fetch ---- */

typedef struct corpus_buf {
    uint8_t *data;
    size_t len, cap;
} corpus_buf;

static void put(corpus_buf *b, uint8_t sender, const Twinbft__Message *m) {
    uint8_t *msg = NULL;
    size_t len = 0;
    if (m != NULL && proto_message_pack(m, &msg, &len) != 0) {
        abort();
    }
    size_t need = b->len + 3 + len;
    if (need > b->cap) {
        b->cap = need * 2;
        b->data = realloc(b->data, b->cap);
    }
    b->data[b->len++] = sender;
    if (m != NULL) {
        b->data[b->len++] = (uint8_t)(len >> 8);
        b->data[b->len++] = (uint8_t)len;
        memcpy(b->data + b->len, msg, len);
        b->len += len;
    }
    free(msg);
}

/* A Signed with a zero signature around a Body. */
static Twinbft__Signed *sign_body(const Twinbft__Body *body, uint32_t signer) {
    static uint8_t zero[PROTO_SIG_BYTES];
    Twinbft__Signed *s = malloc(sizeof *s);
    twinbft__signed__init(s);
    s->body.len = twinbft__body__get_packed_size(body);
    s->body.data = malloc(s->body.len);
    twinbft__body__pack(body, s->body.data);
    s->signer = signer;
    s->signature = (ProtobufCBinaryData){PROTO_SIG_BYTES, zero};
    return s;
}

static void signed_free(Twinbft__Signed *s) {
    free(s->body.data);
    free(s);
}

static Twinbft__Signed *phase(Twinbft__Body__KindCase kind, uint64_t view, uint64_t seq,
                              uint8_t *digest, uint32_t signer) {
    ProtobufCBinaryData d = {PROTO_DIGEST_BYTES, digest};
    Twinbft__PrePrepare pp = TWINBFT__PRE_PREPARE__INIT;
    Twinbft__Prepare p = TWINBFT__PREPARE__INIT;
    Twinbft__Commit c = TWINBFT__COMMIT__INIT;
    Twinbft__Body body = TWINBFT__BODY__INIT;
    pp.view = p.view = c.view = view;
    pp.seq = p.seq = c.seq = seq;
    pp.digest = p.digest = c.digest = d;
    body.kind_case = kind;
    if (kind == TWINBFT__BODY__KIND_PRE_PREPARE) {
        body.pre_prepare = &pp;
    } else if (kind == TWINBFT__BODY__KIND_PREPARE) {
        body.prepare = &p;
    } else {
        body.commit = &c;
    }
    return sign_body(&body, signer);
}

static void add_input(fuzz_input *out, size_t *n, size_t max, corpus_buf *b) {
    if (*n < max) {
        out[(*n)++] = (fuzz_input){b->data, b->len};
    } else {
        free(b->data);
    }
    memset(b, 0, sizeof *b);
}

size_t fuzz_corpus(fuzz_input *out, size_t max) {
    size_t n = 0;
    uint8_t op[1] = {7};
    Twinbft__Request req = TWINBFT__REQUEST__INIT;
    req.client = "fz", req.number = 1, req.op = (ProtobufCBinaryData){1, op};
    Twinbft__Request *reqs[1] = {&req};
    Twinbft__Batch batch = TWINBFT__BATCH__INIT;
    batch.timestamp_ms = 1000, batch.requests = reqs, batch.n_requests = 1;
    uint8_t bbytes[256];
    size_t blen = twinbft__batch__pack(&batch, bbytes);
    uint8_t digest[PROTO_DIGEST_BYTES];
    proto_sha256(bbytes, blen, digest);

    /* The normal case seen by backup 1: request, pre-prepare, prepares, commits. */
    corpus_buf b = {0};
    b.len = 1, b.cap = 1, b.data = malloc(1), b.data[0] = 1;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_REQUEST, m.request = &req;
    put(&b, 4, &m);
    Twinbft__PrePrepareMsg pm = TWINBFT__PRE_PREPARE_MSG__INIT;
    pm.pre_prepare = phase(TWINBFT__BODY__KIND_PRE_PREPARE, 0, 1, digest, 0);
    pm.batch = (ProtobufCBinaryData){blen, bbytes};
    m.kind_case = TWINBFT__MESSAGE__KIND_PRE_PREPARE, m.pre_prepare = &pm;
    put(&b, 0, &m);
    Twinbft__Signed *votes[8];
    size_t nv = 0;
    for (uint32_t r = 2; r <= 3; r++) {
        votes[nv] = phase(TWINBFT__BODY__KIND_PREPARE, 0, 1, digest, r);
        m.kind_case = TWINBFT__MESSAGE__KIND_PREPARE, m.prepare = votes[nv++];
        put(&b, (uint8_t)r, &m);
    }
    Twinbft__Signed *commits[3];
    for (uint32_t r = 0; r < 3; r++) {
        uint32_t who = r == 0 ? 0 : r + 1;
        commits[r] = phase(TWINBFT__BODY__KIND_COMMIT, 0, 1, digest, who);
        m.kind_case = TWINBFT__MESSAGE__KIND_COMMIT, m.commit = commits[r];
        put(&b, (uint8_t)who, &m);
    }
    put(&b, 5, NULL);
    add_input(out, &n, max, &b);

    /* A view change to view 2 (primary 2) carrying a prepared certificate, then NEW-VIEW. */
    b.len = 1, b.cap = 1, b.data = malloc(1), b.data[0] = 1;
    Twinbft__PreparedCert pc = TWINBFT__PREPARED_CERT__INIT;
    pc.pre_prepare = pm.pre_prepare, pc.batch = pm.batch, pc.prepares = votes, pc.n_prepares = nv;
    Twinbft__PreparedCert *pcs[1] = {&pc};
    uint8_t zero_digest[PROTO_DIGEST_BYTES] = {0};
    Twinbft__Signed *vcs[3];
    for (uint32_t r = 0; r < 3; r++) {
        Twinbft__ViewChange vc = TWINBFT__VIEW_CHANGE__INIT;
        vc.view = 2, vc.stable_digest = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, zero_digest};
        vc.prepared = pcs, vc.n_prepared = 1;
        Twinbft__Body body = TWINBFT__BODY__INIT;
        body.kind_case = TWINBFT__BODY__KIND_VIEW_CHANGE, body.view_change = &vc;
        vcs[r] = sign_body(&body, r == 0 ? 0 : r + 1);
        m.kind_case = TWINBFT__MESSAGE__KIND_VIEW_CHANGE, m.view_change = vcs[r];
        put(&b, (uint8_t)(r == 0 ? 0 : r + 1), &m);
    }
    Twinbft__Signed *nvpp[1] = {phase(TWINBFT__BODY__KIND_PRE_PREPARE, 2, 1, digest, 2)};
    Twinbft__NewView nvw = TWINBFT__NEW_VIEW__INIT;
    nvw.view = 2, nvw.view_changes = vcs, nvw.n_view_changes = 3;
    nvw.pre_prepares = nvpp, nvw.n_pre_prepares = 1;
    Twinbft__Body nvb = TWINBFT__BODY__INIT;
    nvb.kind_case = TWINBFT__BODY__KIND_NEW_VIEW, nvb.new_view = &nvw;
    Twinbft__Signed *nvs = sign_body(&nvb, 2);
    m.kind_case = TWINBFT__MESSAGE__KIND_NEW_VIEW, m.new_view = nvs;
    put(&b, 2, &m);
    add_input(out, &n, max, &b);

    /* A fetch, and a fetch reply with a committed certificate and a checkpoint. */
    b.len = 1, b.cap = 1, b.data = malloc(1), b.data[0] = 0;
    Twinbft__Fetch fetch = TWINBFT__FETCH__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_FETCH, m.fetch = &fetch;
    put(&b, 3, &m);
    Twinbft__CommittedCert cc = TWINBFT__COMMITTED_CERT__INIT;
    cc.pre_prepare = pm.pre_prepare, cc.batch = pm.batch, cc.commits = commits, cc.n_commits = 3;
    Twinbft__CommittedCert *ccs[1] = {&cc};
    Twinbft__FetchReply fr = TWINBFT__FETCH_REPLY__INIT;
    fr.committed = ccs, fr.n_committed = 1;
    m.kind_case = TWINBFT__MESSAGE__KIND_FETCH_REPLY, m.fetch_reply = &fr;
    put(&b, 2, &m);
    Twinbft__Checkpoint ck = TWINBFT__CHECKPOINT__INIT;
    ck.seq = 2, ck.state_digest = (ProtobufCBinaryData){PROTO_DIGEST_BYTES, zero_digest};
    Twinbft__Body ckb = TWINBFT__BODY__INIT;
    ckb.kind_case = TWINBFT__BODY__KIND_CHECKPOINT, ckb.checkpoint = &ck;
    Twinbft__Signed *cks = sign_body(&ckb, 3);
    m.kind_case = TWINBFT__MESSAGE__KIND_CHECKPOINT, m.checkpoint = cks;
    put(&b, 3, &m);
    add_input(out, &n, max, &b);

    signed_free(pm.pre_prepare);
    for (size_t i = 0; i < nv; i++) {
        signed_free(votes[i]);
    }
    for (int i = 0; i < 3; i++) {
        signed_free(commits[i]);
        signed_free(vcs[i]);
    }
    signed_free(nvpp[0]);
    signed_free(nvs);
    signed_free(cks);
    return n;
}
