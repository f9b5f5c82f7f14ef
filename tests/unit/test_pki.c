/* Proves the cluster PKI issues, stores, verifies and reads Ed25519 certificates. */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "proto/crypto.h"
#include "proto/pki.h"
#include "proto/tb_err.h"

typedef struct ca_pair {
    EVP_PKEY *key;
    X509 *cert;
} ca_pair;

static ca_pair make_ca(const char *cn) {
    ca_pair ca = {0};
    ck_assert_int_eq(proto_pki_ca_create(cn, PROTO_CERT_DAYS_DEFAULT, &ca.key, &ca.cert), 0);
    return ca;
}

static void free_ca(ca_pair *ca) {
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
}

/* A fresh CA is self-signed, a CA, and verifies itself. */
START_TEST(test_ca_create_is_self_signed_ca) {
    ca_pair ca = make_ca("twinbft-ca");
    char name[PROTO_NAME_BYTES_MAX];
    ck_assert_int_eq(X509_check_ca(ca.cert), 1);
    ck_assert_int_eq(proto_pki_verify(ca.cert, ca.cert), 0);
    ck_assert_int_eq(proto_pki_name(ca.cert, name), 0);
    ck_assert_str_eq(name, "twinbft-ca");
    ck_assert_int_eq(X509_get_version(ca.cert), 2);
    free_ca(&ca);
}
END_TEST

/* An issued certificate verifies against its CA, is a leaf, and has a distinct serial. */
START_TEST(test_issue_verifies_and_is_leaf) {
    ca_pair ca = make_ca("twinbft-ca");
    EVP_PKEY *k1 = NULL, *k2 = NULL;
    X509 *c1 = NULL, *c2 = NULL;
    ck_assert_int_eq(proto_pki_issue(ca.key, ca.cert, "replica-0", 30, &k1, &c1), 0);
    ck_assert_int_eq(proto_pki_issue(ca.key, ca.cert, "replica-1", 30, &k2, &c2), 0);
    ck_assert_int_eq(proto_pki_verify(ca.cert, c1), 0);
    ck_assert_int_eq(X509_check_ca(c1), 0);
    ck_assert_int_ne(ASN1_INTEGER_cmp(X509_get0_serialNumber(c1), X509_get0_serialNumber(c2)), 0);
    /* A leaf cannot act as a CA for another leaf. */
    ck_assert_int_ne(proto_pki_verify(c1, c2), 0);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    X509_free(c1);
    X509_free(c2);
    free_ca(&ca);
}
END_TEST

/* A certificate from another CA is refused, even when the CA names are the same. */
START_TEST(test_other_ca_fails) {
    ca_pair ca = make_ca("twinbft-ca");
    ca_pair other = make_ca("twinbft-ca");
    ca_pair other_name = make_ca("evil-ca");
    EVP_PKEY *k = NULL;
    X509 *c = NULL;
    ck_assert_int_eq(proto_pki_issue(other.key, other.cert, "admin", 30, &k, &c), 0);
    ck_assert_int_eq(proto_pki_verify(ca.cert, c), TB_ERR_BAD_SIG);
    ck_assert_int_eq(proto_pki_verify(other_name.cert, c), TB_ERR_MISMATCH);
    ck_assert_int_eq(proto_pki_verify(other.cert, c), 0);
    EVP_PKEY_free(k);
    X509_free(c);
    free_ca(&ca);
    free_ca(&other);
    free_ca(&other_name);
}
END_TEST

/* Bad arguments are refused rather than producing a useless certificate. */
START_TEST(test_bad_arguments) {
    ca_pair ca = make_ca("twinbft-ca");
    EVP_PKEY *k = NULL;
    X509 *c = NULL;
    char long_cn[PROTO_NAME_BYTES_MAX + 1];
    memset(long_cn, 'a', sizeof long_cn - 1);
    long_cn[sizeof long_cn - 1] = '\0';
    ck_assert_int_eq(proto_pki_issue(ca.key, ca.cert, "", 30, &k, &c), TB_ERR_INVALID);
    ck_assert_int_eq(proto_pki_issue(ca.key, ca.cert, long_cn, 30, &k, &c), TB_ERR_INVALID);
    ck_assert_int_eq(proto_pki_issue(ca.key, ca.cert, "x", 0, &k, &c), TB_ERR_INVALID);
    ck_assert_ptr_null(k);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(proto_pki_ca_create("ca", 0, &k, &c), TB_ERR_INVALID);
    free_ca(&ca);
}
END_TEST

static void path_in(char *out, const char *dir, const char *file) {
    ck_assert_int_lt(snprintf(out, PATH_MAX, "%s/%s", dir, file), PATH_MAX);
}

/* Keys and certificates survive a save/load round trip; the key file is 0600. */
START_TEST(test_save_load_round_trip) {
    char dir[] = "/tmp/twinbft-pki-XXXXXX";
    char key_path[PATH_MAX], cert_path[PATH_MAX], ca_path[PATH_MAX];
    struct stat st;
    ca_pair ca = make_ca("twinbft-ca");
    EVP_PKEY *k = NULL, *k2 = NULL;
    X509 *c = NULL, *c2 = NULL, *ca2 = NULL;
    ck_assert_ptr_nonnull(mkdtemp(dir));
    path_in(key_path, dir, "key.pem");
    path_in(cert_path, dir, "cert.pem");
    path_in(ca_path, dir, "ca.pem");
    ck_assert_int_eq(proto_pki_issue(ca.key, ca.cert, "replica-3", 30, &k, &c), 0);
    ck_assert_int_eq(proto_pki_save_key(k, key_path), 0);
    ck_assert_int_eq(proto_pki_save_cert(c, cert_path), 0);
    ck_assert_int_eq(proto_pki_save_cert(ca.cert, ca_path), 0);
    ck_assert_int_eq(stat(key_path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);

    ck_assert_int_eq(proto_pki_load_key(key_path, &k2), 0);
    ck_assert_int_eq(proto_pki_load_cert(cert_path, &c2), 0);
    ck_assert_int_eq(proto_pki_load_cert(ca_path, &ca2), 0);
    ck_assert_int_eq(EVP_PKEY_eq(k, k2), 1);
    ck_assert_int_eq(X509_cmp(c, c2), 0);
    ck_assert_int_eq(proto_pki_verify(ca2, c2), 0);

    /* Missing files are I/O errors; a certificate is not a key. */
    EVP_PKEY *bad_key = NULL;
    X509 *bad_cert = NULL;
    ck_assert_int_eq(proto_pki_load_key(cert_path, &bad_key), TB_ERR_INVALID);
    ck_assert_int_eq(proto_pki_load_cert(key_path, &bad_cert), TB_ERR_INVALID);
    ck_assert_int_eq(unlink(key_path), 0);
    ck_assert_int_eq(proto_pki_load_key(key_path, &bad_key), TB_ERR_IO);
    ck_assert_ptr_null(bad_key);
    ck_assert_ptr_null(bad_cert);

    ck_assert_int_eq(unlink(cert_path), 0);
    ck_assert_int_eq(unlink(ca_path), 0);
    ck_assert_int_eq(rmdir(dir), 0);
    EVP_PKEY_free(k);
    EVP_PKEY_free(k2);
    X509_free(c);
    X509_free(c2);
    X509_free(ca2);
    free_ca(&ca);
}
END_TEST

/* The certificate's name and raw public key match the key, and a body signed with the
 * converted key verifies under the public key read from the certificate. */
START_TEST(test_name_pubkey_and_signing) {
    ca_pair ca = make_ca("twinbft-ca");
    EVP_PKEY *k = NULL;
    X509 *c = NULL;
    proto_key *pk = NULL;
    proto_pubkey *pub = NULL;
    char name[PROTO_NAME_BYTES_MAX];
    uint8_t from_cert[PROTO_PUBKEY_BYTES], from_key[PROTO_PUBKEY_BYTES];
    uint8_t sig[PROTO_SIG_BYTES];
    const uint8_t body[] = "a packed body";

    ck_assert_int_eq(proto_pki_issue(ca.key, ca.cert, "line1-agent", 30, &k, &c), 0);
    ck_assert_int_eq(proto_pki_name(c, name), 0);
    ck_assert_str_eq(name, "line1-agent");
    ck_assert_int_eq(proto_pki_pubkey(c, from_cert), 0);
    ck_assert_int_eq(proto_pki_key_to_proto(k, &pk), 0);
    ck_assert_int_eq(proto_key_public(pk, from_key), 0);
    ck_assert_mem_eq(from_cert, from_key, PROTO_PUBKEY_BYTES);

    ck_assert_int_eq(proto_sign_body(pk, body, sizeof body, sig), 0);
    ck_assert_int_eq(proto_pubkey_from_raw(from_cert, &pub), 0);
    ck_assert(proto_verify_body(pub, body, sizeof body, sig, sizeof sig));
    sig[0] ^= 1;
    ck_assert(!proto_verify_body(pub, body, sizeof body, sig, sizeof sig));

    /* The CA's key is another key: its public key differs from the leaf's. */
    ck_assert_int_eq(proto_pki_pubkey(ca.cert, from_key), 0);
    ck_assert_mem_ne(from_cert, from_key, PROTO_PUBKEY_BYTES);

    proto_pubkey_free(pub);
    proto_key_free(pk);
    EVP_PKEY_free(k);
    X509_free(c);
    free_ca(&ca);
}
END_TEST

static Suite *pki_suite(void) {
    Suite *s = suite_create("pki");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_ca_create_is_self_signed_ca);
    tcase_add_test(tc, test_issue_verifies_and_is_leaf);
    tcase_add_test(tc, test_other_ca_fails);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_save_load_round_trip);
    tcase_add_test(tc, test_name_pubkey_and_signing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(pki_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
