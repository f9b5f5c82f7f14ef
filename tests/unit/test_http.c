/* The replica's HTTP endpoint answers /metrics in the Prometheus text format
 * and / as an HTML page with the values the daemon fills in at request time,
 * and refuses any other path with 404. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "proto/tb_err.h"
#include "replica/http.h"

static struct {
    struct event_base *base;
    int fills;
    int code;
    char body[65536];
} T;

static void fill(void *ctx, rep_http_snapshot *s) {
    (void)ctx;
    T.fills++;
    s->id = 0;
    s->n = 4;
    s->cluster_id = "plant-7";
    s->status.view = 3;
    s->status.primary = 3;
    s->status.executed = 42;
    s->status.stable_seq = 32;
    s->peer_open[1] = true;
    s->peer[1].frames_out = 17;
    s->counters.requests_executed = 99;
    s->app_digest[0] = 0xab;
}

static void on_response(struct evhttp_request *req, void *arg) {
    (void)arg;
    T.code = req != NULL ? evhttp_request_get_response_code(req) : -1;
    T.body[0] = '\0';
    if (req != NULL) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t n = evbuffer_get_length(in);
        n = n < sizeof T.body - 1 ? n : sizeof T.body - 1;
        evbuffer_remove(in, T.body, n);
        T.body[n] = '\0';
    }
    event_base_loopexit(T.base, NULL);
}

static void get(uint16_t port, const char *path) {
    struct evhttp_connection *conn = evhttp_connection_base_new(T.base, NULL, "127.0.0.1", port);
    ck_assert_ptr_nonnull(conn);
    struct evhttp_request *req = evhttp_request_new(on_response, NULL);
    ck_assert_int_eq(evhttp_make_request(conn, req, EVHTTP_REQ_GET, path), 0);
    event_base_dispatch(T.base);
    evhttp_connection_free(conn);
}

START_TEST(test_metrics_page_and_404) {
    T.base = event_base_new();
    rep_http *h = NULL;
    ck_assert_int_eq(rep_http_start(T.base, "127.0.0.1", 0, fill, NULL, &h), 0);
    uint16_t port = rep_http_port(h);
    ck_assert_uint_ne(port, 0);

    get(port, "/metrics");
    ck_assert_int_eq(T.code, 200);
    ck_assert_ptr_nonnull(strstr(T.body, "\ntwinbft_executed_seq 42\n"));
    ck_assert_ptr_nonnull(strstr(T.body, "\ntwinbft_view 3\n"));
    ck_assert_ptr_nonnull(strstr(T.body, "\ntwinbft_is_primary 0\n"));
    ck_assert_ptr_nonnull(strstr(T.body, "twinbft_peer_up{peer=\"1\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(T.body, "twinbft_peer_up{peer=\"2\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(T.body, "twinbft_peer_frames_out_total{peer=\"1\"} 17\n"));
    ck_assert_ptr_nonnull(strstr(T.body, "twinbft_requests_executed_total 99\n"));
    ck_assert_ptr_null(strstr(T.body, "peer=\"0\"")); /* not a peer of itself */
    ck_assert_ptr_nonnull(strstr(T.body, "twinbft_info{cluster=\"plant-7\",replica=\"0\""));

    get(port, "/");
    ck_assert_int_eq(T.code, 200);
    ck_assert_ptr_nonnull(strstr(T.body, "replica 0 of 4"));
    ck_assert_ptr_nonnull(strstr(T.body, "<code>ab00"));

    get(port, "/etc/passwd");
    ck_assert_int_eq(T.code, 404);
    ck_assert_int_eq(T.fills, 2); /* the 404 filled nothing */

    rep_http_free(h);
    event_base_free(T.base);
}
END_TEST

/* A port that is taken is an error, not a crash. */
START_TEST(test_port_in_use) {
    T.base = event_base_new();
    rep_http *a = NULL, *b = NULL;
    ck_assert_int_eq(rep_http_start(T.base, "127.0.0.1", 0, fill, NULL, &a), 0);
    ck_assert_int_eq(rep_http_start(T.base, "127.0.0.1", rep_http_port(a), fill, NULL, &b),
                     TB_ERR_IO);
    ck_assert_ptr_null(b);
    rep_http_free(a);
    event_base_free(T.base);
}
END_TEST

int main(void) {
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_metrics_page_and_404);
    tcase_add_test(tc, test_port_in_use);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
