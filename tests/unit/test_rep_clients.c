/* The daemon's client link table (replica/clients.h): several links per
 * principal, lookups by name, removal by link, and both bounds; and the
 * client frame limit, which every legitimate client message fits. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"
#include "proto/tb_err.h"
#include "replica/clients.h"
#include "twinbft/twinbft.h"

/* Links are opaque to the table: distinct addresses stand in for them. */
static char fake[REP_CLIENT_LINKS_MAX + 1];
#define LINK(i) ((struct tb_tls_link *)(void *)&fake[i])

/* Proves a principal keeps every link it opens (replies reach all of them), that
 * names do not alias ("bob" vs "bobby"), that removing one link keeps the others,
 * and that a principal disappears with its last link. */
START_TEST(test_links_per_principal) {
    rep_clients *c = NULL;
    ck_assert_int_eq(rep_clients_create(&c), 0);
    rep_client_link *l = NULL, *of[REP_PRINCIPAL_LINKS_MAX];
    ck_assert_int_eq(rep_clients_add(c, "bob", LINK(1), &l), 0);
    ck_assert_str_eq(l->principal, "bob");
    ck_assert(!l->subscribed && !l->live);
    ck_assert_int_eq(rep_clients_add(c, "bobby", LINK(2), &l), 0);
    ck_assert_int_eq(rep_clients_add(c, "alice", LINK(3), &l), 0);
    ck_assert_int_eq(rep_clients_add(c, "bob", LINK(4), &l), 0);
    l->live = true;
    ck_assert_uint_eq(rep_clients_count(c), 4);
    ck_assert_uint_eq(rep_clients_of(c, "bob", of), 2);
    ck_assert(of[0]->link == LINK(1) || of[1]->link == LINK(1));
    ck_assert(of[0]->link == LINK(4) || of[1]->link == LINK(4));
    ck_assert_uint_eq(rep_clients_of(c, "bobby", of), 1);
    ck_assert_uint_eq(rep_clients_of(c, "bo", of), 0);
    ck_assert_ptr_eq(rep_clients_find(c, "bob", LINK(4)), l);
    ck_assert_ptr_null(rep_clients_find(c, "bob", LINK(2)));

    ck_assert(rep_clients_remove(c, LINK(1)));
    ck_assert(!rep_clients_remove(c, LINK(1)));
    ck_assert_uint_eq(rep_clients_of(c, "bob", of), 1);
    ck_assert(of[0]->link == LINK(4) && of[0]->live); /* the other link's state is kept */
    ck_assert(rep_clients_remove(c, LINK(4)));
    ck_assert_uint_eq(rep_clients_of(c, "bob", of), 0);
    ck_assert_uint_eq(rep_clients_of(c, "alice", of), 1);
    ck_assert_uint_eq(rep_clients_count(c), 2);
    rep_clients_free(c);
}
END_TEST

/* Proves both bounds refuse rather than grow: REP_PRINCIPAL_LINKS_MAX links of one
 * principal, REP_CLIENT_LINKS_MAX links in all; a freed slot is usable again. */
START_TEST(test_bounds) {
    rep_clients *c = NULL;
    ck_assert_int_eq(rep_clients_create(&c), 0);
    rep_client_link *l = NULL;
    for (int i = 0; i < REP_PRINCIPAL_LINKS_MAX; i++) {
        ck_assert_int_eq(rep_clients_add(c, "one", LINK(i), &l), 0);
    }
    ck_assert_int_eq(rep_clients_add(c, "one", LINK(REP_CLIENT_LINKS_MAX), &l), TB_ERR_TOO_LARGE);
    for (int i = REP_PRINCIPAL_LINKS_MAX; i < REP_CLIENT_LINKS_MAX; i++) {
        char name[32];
        snprintf(name, sizeof name, "p%05d", i);
        ck_assert_int_eq(rep_clients_add(c, name, LINK(i), &l), 0);
    }
    ck_assert_uint_eq(rep_clients_count(c), REP_CLIENT_LINKS_MAX);
    ck_assert_int_eq(rep_clients_add(c, "late", LINK(REP_CLIENT_LINKS_MAX), &l), TB_ERR_TOO_LARGE);
    ck_assert(rep_clients_remove(c, LINK(100)));
    ck_assert_int_eq(rep_clients_add(c, "late", LINK(REP_CLIENT_LINKS_MAX), &l), 0);
    ck_assert_ptr_nonnull(rep_clients_find(c, "p04095", LINK(4095)));
    rep_clients_free(c);
}
END_TEST

/* A principal at its bound gives up its oldest unsubscribed link for a new
 * one (or its oldest link when all are subscribed), so dead connections
 * cannot lock it out; below the bound there is no victim. */
START_TEST(test_victim_oldest_unsubscribed) {
    rep_clients *c = NULL;
    ck_assert_int_eq(rep_clients_create(&c), 0);
    rep_client_link *l = NULL;
    for (int i = 0; i < REP_PRINCIPAL_LINKS_MAX; i++) {
        ck_assert_ptr_null(rep_clients_victim(c, "dev"));
        ck_assert_int_eq(rep_clients_add(c, "dev", LINK(i), &l), 0);
        l->subscribed = i < 3; /* the three oldest watch */
    }
    rep_client_link *v = rep_clients_victim(c, "dev");
    ck_assert_ptr_nonnull(v);
    ck_assert_ptr_eq(v->link, LINK(3));
    for (int i = 3; i < REP_PRINCIPAL_LINKS_MAX; i++) {
        rep_clients_find(c, "dev", LINK(i))->subscribed = true;
    }
    ck_assert_ptr_eq(rep_clients_victim(c, "dev")->link, LINK(0));
    ck_assert_ptr_null(rep_clients_victim(c, "other"));
    rep_clients_free(c);
}
END_TEST

static size_t packed_size(const Twinbft__Message *m) {
    uint8_t *b = NULL;
    size_t len = 0;
    ck_assert_int_eq(proto_message_pack(m, &b, &len), 0);
    free(b);
    return len;
}

/* The largest messages a correct client sends fit REP_CLIENT_FRAME_BYTES_MAX:
 * a Request with the largest op the core and the client library accept, the
 * longest principal name and the widest number; a Query as large as the
 * client library sends. The limit is no looser than it needs to be: the
 * largest Request comes within 64 bytes of it. */
START_TEST(test_client_frame_limit_fits_largest_messages) {
    ck_assert_int_le(TB_CLIENT_OP_BYTES_MAX, PBFT_OP_BYTES_MAX);
    ck_assert_int_le(PROTO_NAME_BYTES_MAX, PBFT_CLIENT_NAME_BYTES_MAX);
    size_t op_len = PBFT_OP_BYTES_MAX;
    uint8_t *op = malloc(op_len);
    ck_assert_ptr_nonnull(op);
    memset(op, 0xff, op_len);
    char name[PBFT_CLIENT_NAME_BYTES_MAX];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    Twinbft__Request r = TWINBFT__REQUEST__INIT;
    r.client = name;
    r.number = UINT64_MAX;
    r.op = (ProtobufCBinaryData){op_len, op};
    r.priority = true;
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_REQUEST;
    m.request = &r;
    ck_assert_uint_le(packed_size(&m), REP_CLIENT_FRAME_BYTES_MAX);
    ck_assert_uint_le(REP_CLIENT_FRAME_BYTES_MAX - packed_size(&m), 64);

    Twinbft__Query q = TWINBFT__QUERY__INIT;
    q.id = UINT64_MAX;
    q.query = (ProtobufCBinaryData){TB_CLIENT_OP_BYTES_MAX, op};
    m.kind_case = TWINBFT__MESSAGE__KIND_QUERY;
    m.query = &q;
    ck_assert_uint_le(packed_size(&m), REP_CLIENT_FRAME_BYTES_MAX);
    free(op);
}
END_TEST

static Suite *clients_suite(void) {
    Suite *s = suite_create("rep_clients");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_links_per_principal);
    tcase_add_test(tc, test_bounds);
    tcase_add_test(tc, test_victim_oldest_unsubscribed);
    tcase_add_test(tc, test_client_frame_limit_fits_largest_messages);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(clients_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
