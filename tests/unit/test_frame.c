/* Proves framing round-trips Messages and refuses empty, oversized and malformed input. */
#include <check.h>
#include <stdbool.h>
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
