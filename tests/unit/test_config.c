/* Proves the cluster file loader accepts a valid file and names the line and fix for each error. */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/tb_err.h"
#include "replica/config.h"

static const char valid_text[] = "; a four-replica cluster\n"
                                 "[cluster]\n"
                                 "id = plant-7\n"
                                 "ca = ca.pem   ; the cluster CA\n"
                                 "epoch = 3\n"
                                 "[replica 0]\n"
                                 "address = 127.0.0.1:7000\n"
                                 "cert = replica-0/cert.pem\n"
                                 "http = 127.0.0.1:8000\n"
                                 "[replica 1]\n"
                                 "address = [::1]:7001\n"
                                 "cert = /abs/replica-1.pem\n"
                                 "[replica 3]\n"
                                 "address = host-3.example:7003\n"
                                 "cert = replica-3/cert.pem\n"
                                 "[replica 2]\n"
                                 "address = 10.0.0.2:7002\n"
                                 "cert = replica-2/cert.pem\n";

/* The text of a four-replica cluster with `line` replacing line number `n` (1-based). */
static char *with_line(int n, const char *line) {
    static char buf[4096];
    const char *s = valid_text;
    size_t used = 0;
    for (int i = 1; *s != '\0'; i++) {
        const char *nl = strchr(s, '\n');
        size_t len = (size_t)(nl - s) + 1;
        if (i == n) {
            used += (size_t)snprintf(buf + used, sizeof buf - used, "%s\n", line);
        } else {
            memcpy(buf + used, s, len);
            used += len;
        }
        s += len;
    }
    buf[used] = '\0';
    return buf;
}

static void expect_error(const char *text, const char *want) {
    rep_cluster c;
    char err[REP_CONFIG_ERR_BYTES] = "";
    ck_assert_int_eq(rep_cluster_parse(text, "conf/cluster.conf", &c, err, sizeof err),
                     TB_ERR_INVALID);
    ck_assert_msg(strcmp(err, want) == 0, "got  \"%s\"\nwant \"%s\"", err, want);
}

/* A valid file yields every field, paths joined with the file's directory. */
START_TEST(test_valid_file) {
    rep_cluster c;
    char err[REP_CONFIG_ERR_BYTES] = "";
    ck_assert_int_eq(rep_cluster_parse(valid_text, "conf/cluster.conf", &c, err, sizeof err), 0);
    ck_assert_str_eq(err, "");
    ck_assert_str_eq(c.id, "plant-7");
    ck_assert_uint_eq(c.epoch, 3);
    ck_assert_uint_eq(c.history_window, REP_HISTORY_WINDOW_DEFAULT); /* not given */
    ck_assert_uint_eq(c.outbox_window, REP_OUTBOX_WINDOW_DEFAULT);   /* not given */
    ck_assert_uint_eq(c.log_retain, REP_LOG_RETAIN_DEFAULT);
    ck_assert_str_eq(c.ca_path, "conf/ca.pem");
    ck_assert_uint_eq(c.n, 4);
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(c.members[i].id, i);
    }
    ck_assert_str_eq(c.members[0].host, "127.0.0.1");
    ck_assert_uint_eq(c.members[0].port, 7000);
    ck_assert_str_eq(c.members[0].cert_path, "conf/replica-0/cert.pem");
    ck_assert_str_eq(c.members[0].http_host, "127.0.0.1");
    ck_assert_uint_eq(c.members[0].http_port, 8000);
    ck_assert_str_eq(c.members[1].host, "::1");
    ck_assert_uint_eq(c.members[1].port, 7001);
    ck_assert_str_eq(c.members[1].cert_path, "/abs/replica-1.pem");
    ck_assert_uint_eq(c.members[1].http_port, 0);
    ck_assert_str_eq(c.members[3].host, "host-3.example");
    /* A file in the working directory keeps its relative paths as they are. */
    ck_assert_int_eq(rep_cluster_parse(valid_text, "cluster.conf", &c, err, sizeof err), 0);
    ck_assert_str_eq(c.ca_path, "ca.pem");
}
END_TEST

/* Addresses without a port, host or valid port are refused with the fix. */
START_TEST(test_address_errors) {
    expect_error(with_line(7, "address = 10.0.0.7"),
                 "conf/cluster.conf:7: replica 0: address \"10.0.0.7\" has no port (expected "
                 "HOST:PORT)");
    expect_error(with_line(7, "address = :7000"),
                 "conf/cluster.conf:7: replica 0: address \":7000\" has no host (expected "
                 "HOST:PORT)");
    expect_error(with_line(17, "address = 10.0.0.2:70000"),
                 "conf/cluster.conf:17: replica 2: port 70000 in address \"10.0.0.2:70000\" is "
                 "out of range (expected 1-65535)");
    expect_error(with_line(17, "address = 10.0.0.2:0"),
                 "conf/cluster.conf:17: replica 2: port 0 in address \"10.0.0.2:0\" is out of "
                 "range (expected 1-65535)");
    expect_error(with_line(9, "http = 127.0.0.1:http"),
                 "conf/cluster.conf:9: replica 0: http address \"127.0.0.1:http\" has a port "
                 "that is not a number");
    expect_error(with_line(11, "address = [::1]"),
                 "conf/cluster.conf:11: replica 1: address \"[::1]\" has no port (expected "
                 "[HOST]:PORT)");
}
END_TEST

/* Unknown keys and sections, and keys outside sections, are named. */
START_TEST(test_unknown_key_and_section) {
    expect_error(with_line(7, "adress = 127.0.0.1:7000"),
                 "conf/cluster.conf:7: replica 0: unknown key \"adress\" (expected address, cert "
                 "or http)");
    expect_error(with_line(5, "epoc = 3"),
                 "conf/cluster.conf:5: [cluster]: unknown key \"epoc\" (expected id, ca, epoch, "
                 "history_window, outbox_window or log_retain)");
    expect_error(with_line(10, "[replicas 1]"),
                 "conf/cluster.conf:10: unknown section [replicas 1] (expected [cluster] or "
                 "[replica N])");
    expect_error(with_line(10, "[replica x]"),
                 "conf/cluster.conf:10: [replica x]: replica id must be a number from 0 to 63");
    expect_error(with_line(10, "[replica 64]"),
                 "conf/cluster.conf:10: [replica 64]: replica id must be a number from 0 to 63");
    expect_error(with_line(1, "id = early"),
                 "conf/cluster.conf:1: key \"id\" is outside any section (put it under [cluster] "
                 "or [replica N])");
    expect_error(with_line(7, "this is not ini"),
                 "conf/cluster.conf:7: syntax error (expected [SECTION], KEY = VALUE or a ; "
                 "comment)");
}
END_TEST

/* A replica or [cluster] defined twice is refused, also when the headers are adjacent. */
START_TEST(test_duplicates) {
    expect_error(with_line(13, "[replica 1]"),
                 "conf/cluster.conf:13: duplicate replica 1 (first defined on line 10)");
    expect_error(with_line(10, "[replica 0]"),
                 "conf/cluster.conf:10: duplicate replica 0 (first defined on line 6)");
    expect_error(with_line(6, "[cluster]"),
                 "conf/cluster.conf:6: [cluster] appears twice (give it once)");
    expect_error(with_line(8, "address = 127.0.0.1:7000"),
                 "conf/cluster.conf:8: replica 0: address is given twice");
}
END_TEST

/* The cluster id and ca are required and the id is checked. */
START_TEST(test_cluster_section_errors) {
    expect_error(with_line(3, "; no id"),
                 "conf/cluster.conf: no cluster id (add a [cluster] section with id = NAME)");
    expect_error(with_line(4, "; no ca"),
                 "conf/cluster.conf: no CA certificate (add ca = ca.pem to [cluster])");
    expect_error(with_line(3, "id = two words"),
                 "conf/cluster.conf:3: [cluster]: id \"two words\" must be 1-63 characters of "
                 "A-Z a-z 0-9 . _ -");
    expect_error(
        with_line(3, "id = 0123456789012345678901234567890123456789012345678901234567890123"),
        "conf/cluster.conf:3: [cluster]: id "
        "\"0123456789012345678901234567890123456789012345678901234567890123\" must be "
        "1-63 characters of A-Z a-z 0-9 . _ -");
    expect_error(with_line(5, "epoch = -1"),
                 "conf/cluster.conf:5: [cluster]: epoch \"-1\" is not a number (expected 0 to "
                 "18446744073709551615)");
    expect_error(with_line(5, "history_window = 100"),
                 "conf/cluster.conf:5: [cluster]: history_window \"100\" must be 0 (keep every "
                 "event) or a number of seqs from 4096 up");
    expect_error(with_line(5, "history_window = x"),
                 "conf/cluster.conf:5: [cluster]: history_window \"x\" must be 0 (keep every "
                 "event) or a number of seqs from 4096 up");
    expect_error(with_line(5, "outbox_window = 0"),
                 "conf/cluster.conf:5: [cluster]: outbox_window \"0\" must be a number of seqs "
                 "from 1024 up");
    expect_error(with_line(5, "outbox_window = 2048k"),
                 "conf/cluster.conf:5: [cluster]: outbox_window \"2048k\" must be a number of "
                 "seqs from 1024 up");
    expect_error(with_line(5, "log_retain = 100"),
                 "conf/cluster.conf:5: [cluster]: log_retain \"100\" must be a number of seqs "
                 "from 256 up");
}
END_TEST

/* Member ids must run from 0 without gaps, every member needs address and cert, and n is 1 or
 * at least 4: 2 and 3 are refused with why and what to use instead. */
START_TEST(test_member_set_errors) {
    expect_error(with_line(16, "[replica 4]"),
                 "conf/cluster.conf: replica ids must be contiguous from 0: [replica 2] is "
                 "missing (or has no keys)");
    expect_error(with_line(14, "; no address"),
                 "conf/cluster.conf:13: replica 3: no address (add address = HOST:PORT)");
    expect_error(with_line(15, "; no cert"),
                 "conf/cluster.conf:13: replica 3: no cert (add cert = replica-3/cert.pem)");
    char two[sizeof valid_text];
    memcpy(two, valid_text, sizeof valid_text);
    *strstr(two, "[replica 3]") = '\0';
    expect_error(two, "conf/cluster.conf: 2 replicas defined: 2 or 3 replicas tolerate no faulty "
                      "replica (f = 0, as 1 does) yet every request waits for 2 of them; use 1 "
                      "replica for development, or 4 or more (n >= 3f+1, f >= 1) to tolerate "
                      "faults");
    char three[sizeof valid_text];
    memcpy(three, valid_text, sizeof valid_text);
    char *r3 = strstr(three, "[replica 3]"), *r2 = strstr(three, "[replica 2]");
    memmove(r3, r2, strlen(r2) + 1);
    expect_error(three, "conf/cluster.conf: 3 replicas defined: 2 or 3 replicas tolerate no "
                        "faulty replica (f = 0, as 1 does) yet every request waits for 2 of "
                        "them; use 1 replica for development, or 4 or more (n >= 3f+1, f >= 1) "
                        "to tolerate faults");
    char none[sizeof valid_text];
    memcpy(none, valid_text, sizeof valid_text);
    *strstr(none, "[replica 0]") = '\0';
    expect_error(none, "conf/cluster.conf: 0 replicas defined: a cluster has 1 replica "
                       "(development, no fault tolerance) or 4 to 64 (n >= 3f+1 with f >= 1)");
}
END_TEST

/* A single replica (f = 0) is a cluster, for development and as the unreplicated baseline. */
START_TEST(test_single_replica) {
    char one[sizeof valid_text];
    memcpy(one, valid_text, sizeof valid_text);
    *strstr(one, "[replica 1]") = '\0';
    rep_cluster c;
    char err[REP_CONFIG_ERR_BYTES] = "";
    ck_assert_int_eq(rep_cluster_parse(one, "conf/cluster.conf", &c, err, sizeof err), 0);
    ck_assert_uint_eq(c.n, 1);
    ck_assert_uint_eq(c.members[0].port, 7000);
    ck_assert_ptr_null(rep_cluster_size_problem(1));
    ck_assert_ptr_nonnull(rep_cluster_size_problem(0));
    ck_assert_ptr_nonnull(rep_cluster_size_problem(2));
    ck_assert_ptr_nonnull(rep_cluster_size_problem(3));
    ck_assert_ptr_null(rep_cluster_size_problem(4));
    ck_assert_ptr_null(rep_cluster_size_problem(REP_MEMBERS_MAX));
    ck_assert_ptr_nonnull(rep_cluster_size_problem(REP_MEMBERS_MAX + 1));
}
END_TEST

/* Paths that do not fit once joined, and lines too long for the parser, are refused. */
START_TEST(test_too_long) {
    char line[300];
    char want[1024];
    memset(line, 'p', sizeof line);
    memcpy(line, "cert = ", 7);
    line[190] = '\0';
    /* A 183-character cert path fits a line; joined with a long directory it does not fit. */
    char dir[400];
    memset(dir, 'd', sizeof dir);
    dir[sizeof dir - 20] = '\0';
    strcat(dir, "/cluster.conf");
    rep_cluster c;
    char err[REP_CONFIG_ERR_BYTES] = "";
    ck_assert_int_eq(rep_cluster_parse(with_line(8, line), dir, &c, err, sizeof err),
                     TB_ERR_INVALID);
    snprintf(want, sizeof want,
             "%s:8: replica 0: cert path is too long (at most 511 bytes once joined with the "
             "cluster file's directory; move the files closer to it)",
             dir);
    ck_assert_str_eq(err, want);
    line[190] = 'p';
    line[250] = '\0';
    expect_error(with_line(8, line), "conf/cluster.conf:8: line is longer than 198 characters");
}
END_TEST

/* What rep_cluster_write writes, rep_cluster_load reads back unchanged; a missing file is IO. */
START_TEST(test_write_load_round_trip) {
    char dir[] = "/tmp/twinbft-config-XXXXXX";
    char path[PATH_MAX], err[REP_CONFIG_ERR_BYTES];
    rep_cluster a, b;
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/cluster.conf", dir);
    ck_assert_int_eq(rep_cluster_parse(valid_text, "cluster.conf", &a, err, sizeof err), 0);
    a.history_window = 0;
    a.outbox_window = 5000;
    a.log_retain = 777;
    ck_assert_int_eq(rep_cluster_write(&a, path), 0);
    ck_assert_int_eq(rep_cluster_load(path, &b, err, sizeof err), 0);
    ck_assert_str_eq(b.id, a.id);
    ck_assert_uint_eq(b.epoch, a.epoch);
    ck_assert_uint_eq(b.history_window, 0);
    ck_assert_uint_eq(b.outbox_window, 5000);
    ck_assert_uint_eq(b.log_retain, 777);
    ck_assert_uint_eq(b.n, a.n);
    for (uint32_t i = 0; i < a.n; i++) {
        ck_assert_str_eq(b.members[i].host, a.members[i].host);
        ck_assert_uint_eq(b.members[i].port, a.members[i].port);
        ck_assert_str_eq(b.members[i].http_host, a.members[i].http_host);
        ck_assert_uint_eq(b.members[i].http_port, a.members[i].http_port);
    }
    /* Relative paths come back joined with the directory the file was written to. */
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s/replica-0/cert.pem", dir);
    ck_assert_str_eq(b.members[0].cert_path, want);
    ck_assert_str_eq(b.members[1].cert_path, "/abs/replica-1.pem");
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(rep_cluster_load(path, &b, err, sizeof err), TB_ERR_IO);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
    ck_assert_str_eq(err, want);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* Member names are parsed strictly: only the exact decimal name of a
 * member of the cluster names it. */
START_TEST(test_member_names_strict) {
    uint32_t id = 99;
    ck_assert(rep_member_of_name("replica-0", 4, &id) && id == 0);
    ck_assert(rep_member_of_name("replica-3", 4, &id) && id == 3);
    ck_assert(rep_member_of_name("replica-63", 64, &id) && id == 63);
    const char *bad[] = {"replica-4",   "replica-01",
                         "replica-+1",  "replica--1",
                         "replica- 1",  "replica-4294967297",
                         "replica-",    "replica-1x",
                         " replica-1",  "Replica-1",
                         "replica-0x1", "replica-1 ",
                         "replica1",    ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        id = 99;
        ck_assert_msg(!rep_member_of_name(bad[i], 4, &id), "\"%s\" taken as a member", bad[i]);
        ck_assert_uint_eq(id, 99);
    }
}
END_TEST

static Suite *config_suite(void) {
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_valid_file);
    tcase_add_test(tc, test_address_errors);
    tcase_add_test(tc, test_unknown_key_and_section);
    tcase_add_test(tc, test_duplicates);
    tcase_add_test(tc, test_cluster_section_errors);
    tcase_add_test(tc, test_member_set_errors);
    tcase_add_test(tc, test_single_replica);
    tcase_add_test(tc, test_too_long);
    tcase_add_test(tc, test_write_load_round_trip);
    tcase_add_test(tc, test_member_names_strict);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
