/* Proves framing round-trips Messages and refuses empty, oversized and malformed input, and
 * input that would decode to far more memory than its size. */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"
#include "proto/tb_err.h"
#include "guard_page.h"

static void make_request(Twinbft__Message *m, Twinbft__Request *r, uint8_t *op, size_t op_len) {
    *r = (Twinbft__Request)TWINBFT__REQUEST__INIT;
    r->client = "edge-7";
    r->number = 123456789012345ull;
    r->op.data = op;
    r->op.len = op_len;
    r->priority = true;
    *m = (Twinbft__Message)TWINBFT__MESSAGE__INIT;
    m->kind_case = TWINBFT__MESSAGE__KIND_REQUEST;
    m->request = r;
}

static void assert_request(const Twinbft__Message *m, const uint8_t *op, size_t op_len) {
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(m->kind_case, TWINBFT__MESSAGE__KIND_REQUEST);
    ck_assert_str_eq(m->request->client, "edge-7");
    ck_assert_uint_eq(m->request->number, 123456789012345ull);
    ck_assert_uint_eq(m->request->op.len, op_len);
    ck_assert_mem_eq(m->request->op.data, op, op_len);
    ck_assert(m->request->priority);
}

START_TEST(test_header_is_big_endian) {
    uint8_t hdr[PROTO_FRAME_HEADER_BYTES];
    uint32_t len = 0;
    proto_frame_header_encode(0x01020304u, hdr);
    ck_assert_uint_eq(hdr[0], 0x01);
    ck_assert_uint_eq(hdr[1], 0x02);
    ck_assert_uint_eq(hdr[2], 0x03);
    ck_assert_uint_eq(hdr[3], 0x04);
    ck_assert_int_eq(proto_frame_header_decode(hdr, 0, &len), 0);
    ck_assert_uint_eq(len, 0x01020304u);
}
END_TEST

START_TEST(test_header_limits) {
    uint8_t hdr[PROTO_FRAME_HEADER_BYTES];
    uint32_t len = 7;
    proto_frame_header_encode(0, hdr);
    ck_assert_int_eq(proto_frame_header_decode(hdr, 100, &len), TB_ERR_INVALID);
    ck_assert_uint_eq(len, 0);
    proto_frame_header_encode(100, hdr);
    ck_assert_int_eq(proto_frame_header_decode(hdr, 100, &len), 0);
    ck_assert_uint_eq(len, 100);
    proto_frame_header_encode(101, hdr);
    ck_assert_int_eq(proto_frame_header_decode(hdr, 100, &len), TB_ERR_TOO_LARGE);
    /* The global maximum applies even when the caller asks for more. */
    proto_frame_header_encode(PROTO_FRAME_BYTES_MAX, hdr);
    ck_assert_int_eq(proto_frame_header_decode(hdr, UINT32_MAX, &len), 0);
    proto_frame_header_encode(PROTO_FRAME_BYTES_MAX + 1u, hdr);
    ck_assert_int_eq(proto_frame_header_decode(hdr, UINT32_MAX, &len), TB_ERR_TOO_LARGE);
    ck_assert_int_eq(proto_frame_header_decode(hdr, 0, &len), TB_ERR_TOO_LARGE);
    proto_frame_header_encode(UINT32_MAX, hdr);
    ck_assert_int_eq(proto_frame_header_decode(hdr, 0, &len), TB_ERR_TOO_LARGE);
}
END_TEST

START_TEST(test_unpack_rejects_oversize_before_reading) {
    /* A complete message followed by an unreadable page, passed with a
     * length above any frame's: the decoder would read on into the page
     * (and fault) if the length were not refused first. */
    uint8_t op[] = {9};
    uint8_t *packed = NULL;
    size_t len = 0;
    Twinbft__Message m;
    Twinbft__Request r;
    make_request(&m, &r, op, sizeof op);
    ck_assert_int_eq(proto_message_pack(&m, &packed, &len), 0);
    uint8_t *guarded = guard_copy(packed, len);
    ck_assert_ptr_null(proto_message_unpack(guarded, (size_t)PROTO_FRAME_BYTES_MAX + 1));
    ck_assert_ptr_null(proto_message_unpack(guarded, SIZE_MAX));
    Twinbft__Message *back = proto_message_unpack(guarded, len);
    ck_assert_ptr_nonnull(back);
    twinbft__message__free_unpacked(back, NULL);
    guard_free(guarded, len);
    free(packed);
}
END_TEST

START_TEST(test_unpack_rejects_empty) {
    uint8_t b = 0;
    ck_assert_ptr_null(proto_message_unpack(&b, 0));
    ck_assert_ptr_null(proto_message_unpack(NULL, 0));
}
END_TEST

START_TEST(test_message_round_trip) {
    uint8_t op[300];
    uint8_t *buf = NULL;
    size_t len = 0;
    Twinbft__Message m;
    Twinbft__Request r;
    for (size_t i = 0; i < sizeof op; i++) {
        op[i] = (uint8_t)(i * 31);
    }
    make_request(&m, &r, op, sizeof op);
    ck_assert_int_eq(proto_message_pack(&m, &buf, &len), 0);
    ck_assert_uint_eq(len, twinbft__message__get_packed_size(&m));
    Twinbft__Message *back = proto_message_unpack(buf, len);
    assert_request(back, op, sizeof op);
    twinbft__message__free_unpacked(back, NULL);
    free(buf);
}
END_TEST

START_TEST(test_frame_round_trip) {
    uint8_t op[] = {1, 2, 3};
    uint8_t *buf = NULL;
    size_t len = 0;
    uint32_t payload = 0;
    Twinbft__Message m;
    Twinbft__Request r;
    make_request(&m, &r, op, sizeof op);
    ck_assert_int_eq(proto_frame_pack(&m, &buf, &len), 0);
    ck_assert_int_eq(proto_frame_header_decode(buf, 0, &payload), 0);
    ck_assert_uint_eq(payload + PROTO_FRAME_HEADER_BYTES, len);
    Twinbft__Message *back = proto_message_unpack(buf + PROTO_FRAME_HEADER_BYTES, payload);
    assert_request(back, op, sizeof op);
    twinbft__message__free_unpacked(back, NULL);
    free(buf);
}
END_TEST

START_TEST(test_pack_rejects_message_without_kind) {
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    uint8_t *buf = (uint8_t *)&m;
    size_t len = 5;
    ck_assert_int_eq(proto_message_pack(&m, &buf, &len), TB_ERR_INVALID);
    ck_assert_ptr_null(buf);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(proto_frame_pack(&m, &buf, &len), TB_ERR_INVALID);
}
END_TEST

START_TEST(test_garbage_returns_null) {
    static const uint8_t ff[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    /* Field 1 (request), length-delimited, claiming 100 bytes of 2. */
    static const uint8_t overrun[] = {0x0a, 100, 0x08, 0x01};
    /* Only an unknown field 99: parses, but carries no kind we know. */
    static const uint8_t unknown[] = {0x98, 0x06, 0x01};
    ck_assert_ptr_null(proto_message_unpack(ff, sizeof ff));
    ck_assert_ptr_null(proto_message_unpack(overrun, sizeof overrun));
    ck_assert_ptr_null(proto_message_unpack(unknown, sizeof unknown));
}
END_TEST

START_TEST(test_every_truncation_returns_null) {
    uint8_t op[] = "set temperature 21.5";
    uint8_t *buf = NULL;
    size_t len = 0;
    Twinbft__Message m;
    Twinbft__Request r;
    make_request(&m, &r, op, sizeof op);
    ck_assert_int_eq(proto_message_pack(&m, &buf, &len), 0);
    for (size_t cut = 1; cut < len; cut++) {
        /* Any read past the cut faults. */
        uint8_t *copy = guard_copy(buf, cut);
        ck_assert_msg(proto_message_unpack(copy, cut) == NULL, "prefix of %zu bytes parsed", cut);
        guard_free(copy, cut);
    }
    free(buf);
}
END_TEST

START_TEST(test_random_bytes_never_crash) {
    /* Seeded, so a failure reproduces. Results do not matter; the
     * sanitizers judge the decoder. */
    uint32_t x = 12345;
    uint8_t buf[64];
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = 1 + (size_t)(iter % (int)sizeof buf);
        for (size_t i = 0; i < len; i++) {
            x = x * 1664525u + 1013904223u;
            buf[i] = (uint8_t)(x >> 24);
        }
        Twinbft__Message *m = proto_message_unpack(buf, len);
        if (m != NULL) {
            ck_assert_int_ne(m->kind_case, TWINBFT__MESSAGE__KIND__NOT_SET);
            twinbft__message__free_unpacked(m, NULL);
        }
    }
}
END_TEST

/* A packed Message of exactly len bytes: the length-delimited field `kind`
 * whose body repeats the two-byte field `pair` (an empty entry, or an
 * unknown field). */
static uint8_t *amplifying(uint32_t kind, const uint8_t pair[2], size_t len) {
    uint8_t *b = malloc(len);
    ck_assert_ptr_nonnull(b);
    size_t body = len - 4; /* tag byte and a three-byte length */
    body -= body % 2;
    ck_assert_uint_lt(body, 1u << 21);
    b[0] = (uint8_t)(kind << 3 | 2);
    b[1] = (uint8_t)(body | 0x80);
    b[2] = (uint8_t)((body >> 7) | 0x80);
    b[3] = (uint8_t)(body >> 14);
    for (size_t i = 0; i < body; i += 2) {
        memcpy(b + 4 + i, pair, 2);
    }
    return b;
}

/* Frames of two-byte fields decode to 20 to 70 times their size (once 3.2
 * GiB from 64 MiB): they are refused, and the decoder stops once its
 * allocations reach the budget instead of going on to allocate the rest. */
START_TEST(test_amplifying_frames_refused) {
    static const uint8_t empty_cert[2] = {0x22, 0x00}; /* FetchReply.committed = {} */
    static const uint8_t unknown[2] = {0x78, 0x00};    /* field 15 = 0, unknown */
    static const uint8_t empty_path[2] = {0x3a, 0x00}; /* Reply.path = "" */
    const struct {
        uint32_t kind;
        const uint8_t *pair;
    } cases[] = {{TWINBFT__MESSAGE__KIND_FETCH_REPLY, empty_cert},
                 {TWINBFT__MESSAGE__KIND_REQUEST, unknown},
                 {TWINBFT__MESSAGE__KIND_QUERY, unknown},
                 {TWINBFT__MESSAGE__KIND_REPLY, empty_path}};
    const size_t len = 2u << 20;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *b = amplifying(cases[i].kind, cases[i].pair, len);
        Twinbft__Message *m = proto_message_unpack(b, len);
        ck_assert_msg(m == NULL, "kind %u: a 2 MiB frame of two-byte fields decoded",
                      (unsigned)cases[i].kind);
        free(b);
    }
}
END_TEST

/* The budget is a hard cap: a decode never allocates past it, however the
 * input is built; a small amplifying frame within the budget decodes. */
START_TEST(test_decode_stops_at_budget) {
    static const uint8_t empty_cert[2] = {0x22, 0x00};
    size_t used = 0;
    const size_t len = 1u << 20;
    uint8_t *b = amplifying(TWINBFT__MESSAGE__KIND_FETCH_REPLY, empty_cert, len);
    ck_assert_ptr_null(proto_message_unpack_within(b, len, proto_decode_budget(len), &used));
    ck_assert_uint_le(used, proto_decode_budget(len));
    ck_assert_uint_gt(used, 0);
    free(b);
    /* 100 empty entries (200 bytes) fit into the slack. */
    b = amplifying(TWINBFT__MESSAGE__KIND_FETCH_REPLY, empty_cert, 4 + 200);
    Twinbft__Message *m =
        proto_message_unpack_within(b, 4 + 200, proto_decode_budget(4 + 200), &used);
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_eq(m->fetch_reply->n_committed, 100);
    ck_assert_uint_le(used, proto_decode_budget(4 + 200));
    twinbft__message__free_unpacked(m, NULL);
    free(b);
}
END_TEST

/* A Signed as replicas make them: a packed body and a 64-byte signature. */
static Twinbft__Signed *signed_new(size_t body_len) {
    Twinbft__Signed *s = calloc(1, sizeof *s);
    ck_assert_ptr_nonnull(s);
    twinbft__signed__init(s);
    s->body.len = body_len;
    s->body.data = calloc(1, body_len);
    s->signature.len = 64;
    s->signature.data = calloc(1, 64);
    ck_assert(s->body.data != NULL && s->signature.data != NULL);
    s->signer = 63;
    return s;
}

static void signed_free(Twinbft__Signed *s) {
    free(s->body.data);
    free(s->signature.data);
    free(s);
}

/* Decodes a packed m and returns allocated bytes per input byte, checking
 * the legitimate message stays within half its budget. */
static double decode_ratio(const Twinbft__Message *m, const char *what) {
    uint8_t *b = NULL;
    size_t len = 0, used = 0;
    ck_assert_int_eq(proto_message_pack(m, &b, &len), 0);
    Twinbft__Message *back = proto_message_unpack_within(b, len, proto_decode_budget(len), &used);
    ck_assert_msg(back != NULL, "%s (%zu bytes) does not decode within its budget", what, len);
    ck_assert_msg(used <= proto_decode_budget(len) / 2, "%s: %zu bytes for %zu of input", what,
                  used, len);
    twinbft__message__free_unpacked(back, NULL);
    free(b);
    return (double)used / (double)len;
}

/* The largest and most fragmented messages replicas and clients really
 * send decode within half their budget: a state-transfer answer with a
 * full window of committed certificates (64 replicas, 43 commits each), a
 * reply with a 32-hash Merkle path, a request with the largest op. */
START_TEST(test_legitimate_messages_within_budget) {
    enum { CERTS = 128, COMMITS = 43, PATH = 32 };
    Twinbft__Signed *sigs[COMMITS];
    for (size_t i = 0; i < COMMITS; i++) {
        sigs[i] = signed_new(60);
    }
    Twinbft__CommittedCert cc = TWINBFT__COMMITTED_CERT__INIT;
    Twinbft__CommittedCert *ccs[CERTS];
    uint8_t batch[200] = {0};
    cc.pre_prepare = sigs[0];
    cc.batch = (ProtobufCBinaryData){sizeof batch, batch};
    cc.n_commits = COMMITS;
    cc.commits = sigs;
    for (size_t i = 0; i < CERTS; i++) {
        ccs[i] = &cc;
    }
    Twinbft__FetchReply fr = TWINBFT__FETCH_REPLY__INIT;
    fr.n_checkpoint_proof = COMMITS;
    fr.checkpoint_proof = sigs;
    fr.n_committed = CERTS;
    fr.committed = ccs;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_FETCH_REPLY;
    m.fetch_reply = &fr;
    double r1 = decode_ratio(&m, "a FetchReply");

    uint8_t hash[PATH][32];
    ProtobufCBinaryData path[PATH];
    for (size_t i = 0; i < PATH; i++) {
        memset(hash[i], (int)i, sizeof hash[i]);
        path[i] = (ProtobufCBinaryData){32, hash[i]};
    }
    uint8_t leaf[100] = {0};
    Twinbft__Reply reply = TWINBFT__REPLY__INIT;
    reply.leaf = (ProtobufCBinaryData){sizeof leaf, leaf};
    reply.n_path = PATH;
    reply.path = path;
    reply.root = sigs[0];
    m.kind_case = TWINBFT__MESSAGE__KIND_REPLY;
    m.reply = &reply;
    double r2 = decode_ratio(&m, "a Reply");

    uint8_t *op = calloc(1, 64u << 10);
    ck_assert_ptr_nonnull(op);
    Twinbft__Request req;
    make_request(&m, &req, op, 64u << 10);
    double r3 = decode_ratio(&m, "a Request");
    free(op);
    for (size_t i = 0; i < COMMITS; i++) {
        signed_free(sigs[i]);
    }
    if (getenv("TB_TEST_VERBOSE") != NULL) {
        fprintf(stderr, "decode bytes per byte: FetchReply %.2f, Reply %.2f, Request %.2f\n", r1,
                r2, r3);
    }
}
END_TEST

static Suite *frame_suite(void) {
    Suite *s = suite_create("frame");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_header_is_big_endian);
    tcase_add_test(tc, test_header_limits);
    tcase_add_test(tc, test_unpack_rejects_oversize_before_reading);
    tcase_add_test(tc, test_unpack_rejects_empty);
    tcase_add_test(tc, test_message_round_trip);
    tcase_add_test(tc, test_frame_round_trip);
    tcase_add_test(tc, test_pack_rejects_message_without_kind);
    tcase_add_test(tc, test_garbage_returns_null);
    tcase_add_test(tc, test_every_truncation_returns_null);
    tcase_add_test(tc, test_random_bytes_never_crash);
    tcase_add_test(tc, test_amplifying_frames_refused);
    tcase_add_test(tc, test_decode_stops_at_budget);
    tcase_add_test(tc, test_legitimate_messages_within_budget);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(frame_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
