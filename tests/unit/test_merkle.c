/* Proves Merkle roots follow RFC 6962 and that inclusion proofs verify exactly when genuine. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/merkle.h"
#include "proto/hex.h"
#include "proto/tb_err.h"

typedef uint8_t digest[PROTO_DIGEST_BYTES];
typedef const uint8_t (*const_path)[PROTO_DIGEST_BYTES];

enum { N_MAX = 17 };

/* RFC 6962 2.1 written as the RFC says it, recursively, to check the
 * level-by-level construction against. */
static void reference_root(const digest *leaves, size_t n, uint8_t out[PROTO_DIGEST_BYTES]) {
    uint8_t buf[1 + 2 * PROTO_DIGEST_BYTES];
    size_t k = 1;
    if (n == 1) {
        memcpy(out, leaves[0], PROTO_DIGEST_BYTES);
        return;
    }
    while (2 * k < n) {
        k *= 2;
    }
    buf[0] = 0x01;
    reference_root(leaves, k, buf + 1);
    reference_root(leaves + k, n - k, buf + 1 + PROTO_DIGEST_BYTES);
    proto_sha256(buf, sizeof buf, out);
}

static void make_leaves(digest *leaves, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char text[32];
        int len = snprintf(text, sizeof text, "leaf %zu", i);
        proto_merkle_leaf_hash((const uint8_t *)text, (size_t)len, leaves[i]);
    }
}

/* The test vectors of the Certificate Transparency implementations. */
START_TEST(test_rfc6962_known_roots) {
    static const char *const inputs[] = {"",
                                         "00",
                                         "10",
                                         "2021",
                                         "3031",
                                         "40414243",
                                         "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f"};
    static const char *const roots[] = {
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    };
    digest leaves[8];
    for (size_t i = 0; i < 8; i++) {
        uint8_t bytes[16];
        size_t len = strlen(inputs[i]) / 2;
        for (size_t j = 0; j < len; j++) {
            unsigned int b = 0;
            ck_assert_int_eq(sscanf(inputs[i] + 2 * j, "%2x", &b), 1);
            bytes[j] = (uint8_t)b;
        }
        proto_merkle_leaf_hash(bytes, len, leaves[i]);
    }
    for (size_t n = 1; n <= 8; n++) {
        proto_merkle *t = NULL;
        digest root;
        char hex[2 * PROTO_DIGEST_BYTES + 1];
        ck_assert_int_eq(proto_merkle_build((const digest *)leaves, n, &t), 0);
        proto_merkle_root(t, root);
        proto_hex(root, sizeof root, hex);
        ck_assert_msg(strcmp(hex, roots[n - 1]) == 0, "n=%zu root %s", n, hex);
        proto_merkle_free(t);
    }
}
END_TEST

START_TEST(test_roots_match_reference_1_to_17) {
    digest leaves[N_MAX];
    make_leaves(leaves, N_MAX);
    for (size_t n = 1; n <= N_MAX; n++) {
        proto_merkle *t = NULL;
        digest root, expect;
        ck_assert_int_eq(proto_merkle_build((const digest *)leaves, n, &t), 0);
        proto_merkle_root(t, root);
        reference_root(leaves, n, expect);
        ck_assert_msg(memcmp(root, expect, sizeof root) == 0, "n=%zu", n);
        proto_merkle_free(t);
    }
}
END_TEST

/* For one (n, index): the genuine path verifies; every flipped byte of it,
 * every other index, a truncated and an extended path do not. */
static void check_one_proof(const digest *leaves, size_t n, size_t index, const proto_merkle *t,
                            const uint8_t root[PROTO_DIGEST_BYTES]) {
    digest path[PROTO_MERKLE_DEPTH_MAX + 1];
    size_t len = 0;
    ck_assert_int_eq(proto_merkle_path(t, index, path, &len), 0);
    ck_assert_int_le(len, PROTO_MERKLE_DEPTH_MAX);
    ck_assert_int_eq(proto_merkle_verify(leaves[index], index, n, (const_path)path, len, root), 0);
    for (size_t i = 0; i < len * PROTO_DIGEST_BYTES; i++) {
        path[i / PROTO_DIGEST_BYTES][i % PROTO_DIGEST_BYTES] ^= 0x01;
        ck_assert_msg(proto_merkle_verify(leaves[index], index, n, (const_path)path, len, root) ==
                          TB_ERR_MISMATCH,
                      "n=%zu index=%zu flipped byte %zu", n, index, i);
        path[i / PROTO_DIGEST_BYTES][i % PROTO_DIGEST_BYTES] ^= 0x01;
    }
    for (size_t other = 0; other < n; other++) {
        if (other != index) {
            ck_assert_msg(
                proto_merkle_verify(leaves[index], other, n, (const_path)path, len, root) != 0,
                "n=%zu index=%zu verified as %zu", n, index, other);
            /* Another leaf's hash at this leaf's position. */
            ck_assert(proto_merkle_verify(leaves[other], index, n, (const_path)path, len, root) !=
                      0);
        }
    }
    if (len > 0) {
        ck_assert(proto_merkle_verify(leaves[index], index, n, (const_path)path, len - 1, root) !=
                  0);
    }
    memset(path[len], 0, PROTO_DIGEST_BYTES);
    ck_assert(proto_merkle_verify(leaves[index], index, n, (const_path)path, len + 1, root) != 0);
    ck_assert_int_eq(proto_merkle_verify(leaves[index], n, n, (const_path)path, len, root),
                     TB_ERR_INVALID);
}

START_TEST(test_every_index_verifies_and_tampering_fails) {
    digest leaves[N_MAX];
    make_leaves(leaves, N_MAX);
    for (size_t n = 1; n <= N_MAX; n++) {
        proto_merkle *t = NULL;
        digest root;
        ck_assert_int_eq(proto_merkle_build((const digest *)leaves, n, &t), 0);
        proto_merkle_root(t, root);
        for (size_t index = 0; index < n; index++) {
            check_one_proof((const digest *)leaves, n, index, t, root);
        }
        proto_merkle_free(t);
    }
}
END_TEST

/* proto_merkle_path_len says how long every built path is: a verifier can
 * tell the exact length from (index, n) alone. */
START_TEST(test_path_len_matches_built_paths) {
    digest leaves[N_MAX];
    make_leaves(leaves, N_MAX);
    for (size_t n = 1; n <= N_MAX; n++) {
        proto_merkle *t = NULL;
        ck_assert_int_eq(proto_merkle_build((const digest *)leaves, n, &t), 0);
        for (size_t index = 0; index < n; index++) {
            digest path[PROTO_MERKLE_DEPTH_MAX];
            size_t len = 0;
            ck_assert_int_eq(proto_merkle_path(t, index, path, &len), 0);
            ck_assert_msg(len == proto_merkle_path_len(index, n), "n=%zu index=%zu", n, index);
        }
        proto_merkle_free(t);
    }
    ck_assert_uint_eq(proto_merkle_path_len(0, 1), 0);
    ck_assert_uint_eq(proto_merkle_path_len(10, 11), 2);
    ck_assert_uint_eq(proto_merkle_path_len(0, PROTO_MERKLE_LEAVES_MAX), 20);
    ck_assert_uint_eq(proto_merkle_path_len(PROTO_MERKLE_LEAVES_MAX - 1, PROTO_MERKLE_LEAVES_MAX),
                      20);
}
END_TEST

/* Why a certificate's count must be signed: the path of leaf 10 of 11 (both
 * hashes on the left) verifies under the same root as 3 of 4, 5 of 6, ...
 * 96 of 97, though for n = 11 itself only index 10 does. */
START_TEST(test_count_is_not_bound_by_the_path) {
    digest leaves[11], root, path[PROTO_MERKLE_DEPTH_MAX];
    size_t len = 0;
    proto_merkle *t = NULL;
    make_leaves(leaves, 11);
    ck_assert_int_eq(proto_merkle_build((const digest *)leaves, 11, &t), 0);
    proto_merkle_root(t, root);
    ck_assert_int_eq(proto_merkle_path(t, 10, path, &len), 0);
    proto_merkle_free(t);
    ck_assert_uint_eq(len, 2);
    for (size_t index = 0; index < 11; index++) {
        ck_assert_int_eq(proto_merkle_verify(leaves[10], index, 11, (const_path)path, len, root),
                         index == 10 ? 0 : TB_ERR_MISMATCH);
    }
    static const size_t also[][2] = {{3, 4}, {5, 6}, {6, 7}, {9, 10}, {96, 97}};
    for (size_t k = 0; k < sizeof also / sizeof also[0]; k++) {
        ck_assert_msg(proto_merkle_verify(leaves[10], also[k][0], also[k][1], (const_path)path, len,
                                          root) == 0,
                      "%zu of %zu", also[k][0], also[k][1]);
    }
    ck_assert_int_eq(proto_merkle_verify(leaves[10], 2, 4, (const_path)path, len, root),
                     TB_ERR_MISMATCH);
}
END_TEST

START_TEST(test_single_leaf_tree) {
    digest leaf, root;
    digest path[PROTO_MERKLE_DEPTH_MAX];
    size_t len = 99;
    proto_merkle *t = NULL;
    make_leaves(&leaf, 1);
    ck_assert_int_eq(proto_merkle_build((const digest *)&leaf, 1, &t), 0);
    proto_merkle_root(t, root);
    ck_assert_mem_eq(root, leaf, sizeof root);
    ck_assert_int_eq(proto_merkle_path(t, 0, path, &len), 0);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(proto_merkle_verify(leaf, 0, 1, (const_path)path, 0, root), 0);
    proto_merkle_free(t);
}
END_TEST

START_TEST(test_bad_arguments_rejected) {
    digest leaves[4], root;
    digest path[PROTO_MERKLE_DEPTH_MAX + 1];
    size_t len = 0;
    proto_merkle *t = (proto_merkle *)&t;
    make_leaves(leaves, 4);
    ck_assert_int_eq(proto_merkle_build((const digest *)leaves, 0, &t), TB_ERR_INVALID);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(proto_merkle_build((const digest *)leaves, PROTO_MERKLE_LEAVES_MAX + 1, &t),
                     TB_ERR_INVALID);
    ck_assert_int_eq(proto_merkle_build((const digest *)leaves, 4, &t), 0);
    proto_merkle_root(t, root);
    ck_assert_int_eq(proto_merkle_path(t, 4, path, &len), TB_ERR_INVALID);
    ck_assert_int_eq(proto_merkle_path(t, 1, path, &len), 0);
    ck_assert_int_eq(proto_merkle_verify(leaves[1], 1, 0, (const_path)path, len, root),
                     TB_ERR_INVALID);
    ck_assert_int_eq(proto_merkle_verify(leaves[1], 7, 4, (const_path)path, len, root),
                     TB_ERR_INVALID);
    ck_assert_int_eq(
        proto_merkle_verify(leaves[1], 1, PROTO_MERKLE_LEAVES_MAX + 1, (const_path)path, len, root),
        TB_ERR_INVALID);
    ck_assert_int_eq(
        proto_merkle_verify(leaves[1], 1, 4, (const_path)path, PROTO_MERKLE_DEPTH_MAX + 1, root),
        TB_ERR_INVALID);
    proto_merkle_free(t);
}
END_TEST

/* Paths stay logarithmic on a larger tree, and every one of them verifies. */
START_TEST(test_large_tree_paths_are_short) {
    enum { N = 1000 };
    digest *leaves = malloc(N * sizeof *leaves);
    digest path[PROTO_MERKLE_DEPTH_MAX], root;
    proto_merkle *t = NULL;
    ck_assert_ptr_nonnull(leaves);
    make_leaves(leaves, N);
    ck_assert_int_eq(proto_merkle_build((const digest *)leaves, N, &t), 0);
    proto_merkle_root(t, root);
    for (size_t i = 0; i < N; i++) {
        size_t len = 0;
        ck_assert_int_eq(proto_merkle_path(t, i, path, &len), 0);
        ck_assert_uint_le(len, 10); /* ceil(log2(1000)) */
        ck_assert_uint_eq(len, proto_merkle_path_len(i, N));
        ck_assert_int_eq(proto_merkle_verify(leaves[i], i, N, (const_path)path, len, root), 0);
    }
    proto_merkle_free(t);
    free(leaves);
}
END_TEST

START_TEST(test_leaf_and_node_hashes_are_domain_separated) {
    /* A leaf whose bytes are two child hashes must not hash like the node. */
    digest a, b, leaf, node;
    uint8_t pair[2 * PROTO_DIGEST_BYTES];
    digest two[2];
    proto_merkle *t = NULL;
    make_leaves(two, 2);
    memcpy(a, two[0], sizeof a);
    memcpy(b, two[1], sizeof b);
    memcpy(pair, a, sizeof a);
    memcpy(pair + sizeof a, b, sizeof b);
    proto_merkle_leaf_hash(pair, sizeof pair, leaf);
    ck_assert_int_eq(proto_merkle_build((const digest *)two, 2, &t), 0);
    proto_merkle_root(t, node);
    ck_assert(memcmp(leaf, node, sizeof leaf) != 0);
    proto_merkle_free(t);
}
END_TEST

static Suite *merkle_suite(void) {
    Suite *s = suite_create("merkle");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_rfc6962_known_roots);
    tcase_add_test(tc, test_roots_match_reference_1_to_17);
    tcase_add_test(tc, test_every_index_verifies_and_tampering_fails);
    tcase_add_test(tc, test_path_len_matches_built_paths);
    tcase_add_test(tc, test_count_is_not_bound_by_the_path);
    tcase_add_test(tc, test_single_leaf_tree);
    tcase_add_test(tc, test_bad_arguments_rejected);
    tcase_add_test(tc, test_large_tree_paths_are_short);
    tcase_add_test(tc, test_leaf_and_node_hashes_are_domain_separated);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(merkle_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
