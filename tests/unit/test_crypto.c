/* Proves SHA-256 and the domain-separated Ed25519 body signatures meet their contract. */
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "proto/crypto.h"
#include "proto/hex.h"
#include "proto/tb_err.h"

static void unhex(const char *hex, uint8_t *out, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned int byte = 0;
        ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &byte), 1);
        out[i] = (uint8_t)byte;
    }
}

START_TEST(test_sha256_known_answers) {
    uint8_t d[PROTO_DIGEST_BYTES];
    char hex[2 * PROTO_DIGEST_BYTES + 1];
    proto_sha256("abc", 3, d);
    proto_hex(d, sizeof d, hex);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    proto_sha256("", 0, d);
    proto_hex(d, sizeof d, hex);
    ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}
END_TEST

START_TEST(test_hash_incremental_matches_one_shot) {
    uint8_t data[1000];
    uint8_t one[PROTO_DIGEST_BYTES];
    uint8_t inc[PROTO_DIGEST_BYTES];
    for (size_t i = 0; i < sizeof data; i++) {
        data[i] = (uint8_t)(i * 7 + 3);
    }
    proto_sha256(data, sizeof data, one);
    proto_hash *h = proto_hash_begin();
    ck_assert_ptr_nonnull(h);
    /* Uneven chunks, including an empty one. */
    proto_hash_update(h, data, 1);
    proto_hash_update(h, data + 1, 0);
    proto_hash_update(h, data + 1, 500);
    proto_hash_update(h, data + 501, 499);
    proto_hash_final(h, inc);
    ck_assert_mem_eq(one, inc, PROTO_DIGEST_BYTES);
}
END_TEST

/* RFC 8032 7.1, test 1: the seed determines the public key. */
START_TEST(test_from_seed_rfc8032_public_key) {
    uint8_t seed[PROTO_SEED_BYTES];
    uint8_t pub[PROTO_PUBKEY_BYTES];
    char hex[2 * PROTO_PUBKEY_BYTES + 1];
    proto_key *k = NULL;
    unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", seed, sizeof seed);
    ck_assert_int_eq(proto_key_from_seed(seed, &k), 0);
    ck_assert_int_eq(proto_key_public(k, pub), 0);
    proto_hex(pub, sizeof pub, hex);
    ck_assert_str_eq(hex, "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    proto_key_free(k);
}
END_TEST

static proto_key *key_from_byte(uint8_t b) {
    uint8_t seed[PROTO_SEED_BYTES];
    proto_key *k = NULL;
    memset(seed, b, sizeof seed);
    ck_assert_int_eq(proto_key_from_seed(seed, &k), 0);
    return k;
}

static proto_pubkey *pub_of(const proto_key *k) {
    uint8_t raw[PROTO_PUBKEY_BYTES];
    proto_pubkey *p = NULL;
    ck_assert_int_eq(proto_key_public(k, raw), 0);
    ck_assert_int_eq(proto_pubkey_from_raw(raw, &p), 0);
    return p;
}

START_TEST(test_from_seed_is_deterministic) {
    static const uint8_t body[] = "a body";
    uint8_t s1[PROTO_SIG_BYTES], s2[PROTO_SIG_BYTES];
    uint8_t p1[PROTO_PUBKEY_BYTES], p2[PROTO_PUBKEY_BYTES], p3[PROTO_PUBKEY_BYTES];
    proto_key *a = key_from_byte(1), *b = key_from_byte(1), *c = key_from_byte(2);
    ck_assert_int_eq(proto_key_public(a, p1), 0);
    ck_assert_int_eq(proto_key_public(b, p2), 0);
    ck_assert_int_eq(proto_key_public(c, p3), 0);
    ck_assert_mem_eq(p1, p2, sizeof p1);
    ck_assert(memcmp(p1, p3, sizeof p1) != 0);
    /* Ed25519 signatures are deterministic too. */
    ck_assert_int_eq(proto_sign_body(a, body, sizeof body, s1), 0);
    ck_assert_int_eq(proto_sign_body(b, body, sizeof body, s2), 0);
    ck_assert_mem_eq(s1, s2, sizeof s1);
    proto_key_free(a);
    proto_key_free(b);
    proto_key_free(c);
}
END_TEST

START_TEST(test_sign_verify_round_trip_and_wrong_key) {
    uint8_t body[40];
    uint8_t sig[PROTO_SIG_BYTES];
    proto_key *k = key_from_byte(7), *other = key_from_byte(8);
    proto_pubkey *pk = pub_of(k), *pother = pub_of(other);
    for (size_t i = 0; i < sizeof body; i++) {
        body[i] = (uint8_t)i;
    }
    ck_assert_int_eq(proto_sign_body(k, body, sizeof body, sig), 0);
    ck_assert(proto_verify_body(pk, body, sizeof body, sig, sizeof sig));
    ck_assert(!proto_verify_body(pother, body, sizeof body, sig, sizeof sig));
    /* An empty body is signable too. */
    ck_assert_int_eq(proto_sign_body(k, NULL, 0, sig), 0);
    ck_assert(proto_verify_body(pk, NULL, 0, sig, sizeof sig));
    ck_assert(!proto_verify_body(pk, body, 1, sig, sizeof sig));
    proto_key_free(k);
    proto_key_free(other);
    proto_pubkey_free(pk);
    proto_pubkey_free(pother);
}
END_TEST

START_TEST(test_every_flipped_bit_fails) {
    uint8_t body[40];
    uint8_t sig[PROTO_SIG_BYTES];
    proto_key *k = key_from_byte(9);
    proto_pubkey *pk = pub_of(k);
    memset(body, 0x5a, sizeof body);
    ck_assert_int_eq(proto_sign_body(k, body, sizeof body, sig), 0);
    for (size_t bit = 0; bit < 8 * sizeof body; bit++) {
        body[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        ck_assert_msg(!proto_verify_body(pk, body, sizeof body, sig, sizeof sig), "body bit %zu",
                      bit);
        body[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    for (size_t bit = 0; bit < 8 * sizeof sig; bit++) {
        sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        ck_assert_msg(!proto_verify_body(pk, body, sizeof body, sig, sizeof sig), "sig bit %zu",
                      bit);
        sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    ck_assert(proto_verify_body(pk, body, sizeof body, sig, sizeof sig));
    proto_key_free(k);
    proto_pubkey_free(pk);
}
END_TEST

START_TEST(test_verify_rejects_wrong_sig_length) {
    static const uint8_t body[] = "x";
    uint8_t sig[PROTO_SIG_BYTES + 1];
    proto_key *k = key_from_byte(3);
    proto_pubkey *pk = pub_of(k);
    ck_assert_int_eq(proto_sign_body(k, body, sizeof body, sig), 0);
    sig[PROTO_SIG_BYTES] = 0;
    ck_assert(proto_verify_body(pk, body, sizeof body, sig, PROTO_SIG_BYTES));
    ck_assert(!proto_verify_body(pk, body, sizeof body, sig, PROTO_SIG_BYTES - 1));
    ck_assert(!proto_verify_body(pk, body, sizeof body, sig, PROTO_SIG_BYTES + 1));
    ck_assert(!proto_verify_body(pk, body, sizeof body, sig, 0));
    ck_assert(!proto_verify_body(pk, body, sizeof body, NULL, PROTO_SIG_BYTES));
    proto_key_free(k);
    proto_pubkey_free(pk);
}
END_TEST

/* The signature is plain Ed25519 over SHA-256("twinbft/v1/signed" || 0x00 ||
 * body), checked here with OpenSSL directly rather than through our code. */
START_TEST(test_signature_is_over_domain_hash) {
    static const uint8_t body[] = {1, 2, 3, 4, 5};
    static const char domain[] = "twinbft/v1/signed";
    uint8_t msg[sizeof domain + sizeof body];
    uint8_t digest[PROTO_DIGEST_BYTES];
    uint8_t sig[PROTO_SIG_BYTES];
    uint8_t raw[PROTO_PUBKEY_BYTES];
    proto_key *k = key_from_byte(4);
    ck_assert_int_eq(proto_sign_body(k, body, sizeof body, sig), 0);
    ck_assert_int_eq(proto_key_public(k, raw), 0);
    memcpy(msg, domain, sizeof domain); /* includes the 0x00 separator */
    memcpy(msg + sizeof domain, body, sizeof body);
    proto_sha256(msg, sizeof msg, digest);
    EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, sizeof raw);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    ck_assert_ptr_nonnull(pkey);
    ck_assert_int_eq(EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey), 1);
    ck_assert_int_eq(EVP_DigestVerify(ctx, sig, sizeof sig, digest, sizeof digest), 1);
    EVP_MD_CTX_free(ctx);
    ctx = EVP_MD_CTX_new();
    ck_assert_int_eq(EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey), 1);
    ck_assert_int_ne(EVP_DigestVerify(ctx, sig, sizeof sig, body, sizeof body), 1);
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    proto_key_free(k);
}
END_TEST

START_TEST(test_generate_gives_distinct_working_keys) {
    static const uint8_t body[] = "generated";
    uint8_t p1[PROTO_PUBKEY_BYTES], p2[PROTO_PUBKEY_BYTES];
    uint8_t sig[PROTO_SIG_BYTES];
    proto_key *a = NULL, *b = NULL;
    ck_assert_int_eq(proto_key_generate(&a), 0);
    ck_assert_int_eq(proto_key_generate(&b), 0);
    ck_assert_int_eq(proto_key_public(a, p1), 0);
    ck_assert_int_eq(proto_key_public(b, p2), 0);
    ck_assert(memcmp(p1, p2, sizeof p1) != 0);
    proto_pubkey *pa = pub_of(a);
    ck_assert_int_eq(proto_sign_body(a, body, sizeof body, sig), 0);
    ck_assert(proto_verify_body(pa, body, sizeof body, sig, sizeof sig));
    proto_pubkey_free(pa);
    proto_key_free(a);
    proto_key_free(b);
}
END_TEST

/* A key's reused contexts give what fresh ones give: the same (deterministic)
 * signature on every use, and a verify context that refuses a bad signature
 * still accepts a good one next. */
START_TEST(test_reused_contexts_match_fresh) {
    static const uint8_t body[] = "reused";
    uint8_t first[PROTO_SIG_BYTES], sig[PROTO_SIG_BYTES], bad[PROTO_SIG_BYTES];
    proto_key *k = key_from_byte(11);
    proto_pubkey *pk = pub_of(k);
    ck_assert_int_eq(proto_sign_body(k, body, sizeof body, first), 0);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(proto_sign_body(k, body, sizeof body, sig), 0);
        ck_assert_mem_eq(sig, first, sizeof sig);
        memcpy(bad, sig, sizeof bad);
        bad[i] ^= 0x40;
        ck_assert(!proto_verify_body(pk, body, sizeof body, bad, sizeof bad));
        ck_assert(proto_verify_body(pk, body, sizeof body, sig, sizeof sig));
    }
    proto_key *again = key_from_byte(11); /* a new key object: fresh contexts */
    ck_assert_int_eq(proto_sign_body(again, body, sizeof body, sig), 0);
    ck_assert_mem_eq(sig, first, sizeof sig);
    proto_key_free(again);
    proto_key_free(k);
    proto_pubkey_free(pk);
}
END_TEST

typedef struct shared_keys {
    proto_key *k;
    proto_pubkey *pk;
    int failures;
} shared_keys;

static void *sign_verify_loop(void *arg) {
    shared_keys *sk = arg;
    uint8_t body[16], sig[PROTO_SIG_BYTES];
    for (int i = 0; i < 200; i++) {
        memset(body, i, sizeof body);
        bool ok = proto_sign_body(sk->k, body, sizeof body, sig) == 0 &&
                  proto_verify_body(sk->pk, body, sizeof body, sig, sizeof sig);
        sig[0] ^= 1;
        ok = ok && !proto_verify_body(sk->pk, body, sizeof body, sig, sizeof sig);
        if (!ok) {
            __atomic_add_fetch(&sk->failures, 1, __ATOMIC_RELAXED);
        }
    }
    return NULL;
}

/* Keys stay usable from several threads at once: the one that finds a key's
 * contexts taken uses fresh ones, and every answer is right. */
START_TEST(test_keys_shared_across_threads) {
    shared_keys sk = {key_from_byte(12), NULL, 0};
    sk.pk = pub_of(sk.k);
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_create(&th[i], NULL, sign_verify_loop, &sk), 0);
    }
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    }
    ck_assert_int_eq(sk.failures, 0);
    proto_key_free(sk.k);
    proto_pubkey_free(sk.pk);
}
END_TEST

static uint64_t cache_misses(void) {
    uint64_t hits = 0, misses = 0;
    proto_verified_cache_stats(&hits, &misses);
    return misses;
}

/* proto_ed25519_stats counts every signature made and every full
 * verification, good or bad; a cache hit is not a verification. */
START_TEST(test_ed25519_stats) {
    static const uint8_t body[] = "counted";
    uint8_t sig[PROTO_SIG_BYTES];
    proto_key *k = key_from_byte(15);
    proto_pubkey *pk = pub_of(k);
    proto_verified_cache_clear();
    uint64_t s0 = 0, v0 = 0, s = 0, v = 0;
    proto_ed25519_stats(&s0, &v0);
    ck_assert_int_eq(proto_sign_body(k, body, sizeof body, sig), 0);
    ck_assert(proto_verify_body(pk, body, sizeof body, sig, sizeof sig));
    sig[3] ^= 1;
    ck_assert(!proto_verify_body(pk, body, sizeof body, sig, sizeof sig));
    sig[3] ^= 1;
    ck_assert(proto_verify_body_cached(pk, body, sizeof body, sig, sizeof sig));
    ck_assert(proto_verify_body_cached(pk, body, sizeof body, sig, sizeof sig)); /* a hit */
    proto_ed25519_stats(&s, &v);
    ck_assert_uint_eq(s - s0, 1);
    ck_assert_uint_eq(v - v0, 3);
    proto_pubkey_free(pk);
    proto_key_free(k);
}
END_TEST

/* The per-thread cache of verified signatures: a hit gives the answer a
 * verification gives; a bad signature is verified (and refused) every time,
 * never remembered; another key (even where a certificate would give it the
 * same signer index), another body or another signature misses; the oldest
 * entry goes first once PROTO_VERIFIED_CACHE_ENTRIES are held. */
START_TEST(test_verified_cache) {
    static const uint8_t body[] = "cached root";
    uint8_t sig[PROTO_SIG_BYTES], bad[PROTO_SIG_BYTES], other[PROTO_SIG_BYTES];
    proto_key *k = key_from_byte(13), *k2 = key_from_byte(14);
    proto_pubkey *pk = pub_of(k), *pk2 = pub_of(k2);
    proto_verified_cache_clear();
    ck_assert_int_eq(proto_sign_body(k, body, sizeof body, sig), 0);
    uint64_t m0 = cache_misses();
    ck_assert(proto_verify_body_cached(pk, body, sizeof body, sig, sizeof sig));
    ck_assert_uint_eq(cache_misses(), m0 + 1);
    ck_assert(proto_verify_body_cached(pk, body, sizeof body, sig, sizeof sig)); /* a hit */
    ck_assert_uint_eq(cache_misses(), m0 + 1);
    memcpy(bad, sig, sizeof bad);
    bad[7] ^= 1;
    for (int i = 0; i < 3; i++) {
        ck_assert(!proto_verify_body_cached(pk, body, sizeof body, bad, sizeof bad));
        ck_assert_uint_eq(cache_misses(), m0 + 2 + (uint64_t)i);
    }
    ck_assert(!proto_verify_body_cached(pk2, body, sizeof body, sig, sizeof sig));
    ck_assert(!proto_verify_body_cached(pk2, body, sizeof body, sig, sizeof sig));
    ck_assert(!proto_verify_body_cached(pk, body, sizeof body - 1, sig, sizeof sig));
    ck_assert(!proto_verify_body_cached(pk, body, sizeof body, sig, sizeof sig - 1));
    ck_assert(!proto_verify_body_cached(NULL, body, sizeof body, sig, sizeof sig));
    ck_assert_uint_eq(cache_misses(), m0 + 7); /* the last two were refused unchecked */
    /* The other key's own signature over the same body is its own entry. */
    ck_assert_int_eq(proto_sign_body(k2, body, sizeof body, other), 0);
    ck_assert(proto_verify_body_cached(pk2, body, sizeof body, other, sizeof other));
    ck_assert(proto_verify_body_cached(pk2, body, sizeof body, other, sizeof other));
    ck_assert(proto_verify_body_cached(pk, body, sizeof body, sig, sizeof sig));
    ck_assert_uint_eq(cache_misses(), m0 + 8);
    /* PROTO_VERIFIED_CACHE_ENTRIES newer entries push the first one out. */
    for (uint32_t i = 0; i < PROTO_VERIFIED_CACHE_ENTRIES; i++) {
        uint8_t b[4] = {(uint8_t)i, (uint8_t)(i >> 8), 0xee, 0xff};
        ck_assert_int_eq(proto_sign_body(k2, b, sizeof b, other), 0);
        ck_assert(proto_verify_body_cached(pk2, b, sizeof b, other, sizeof other));
    }
    uint64_t m1 = cache_misses();
    ck_assert(proto_verify_body_cached(pk, body, sizeof body, sig, sizeof sig));
    ck_assert_uint_eq(cache_misses(), m1 + 1);
    proto_verified_cache_clear();
    ck_assert(proto_verify_body_cached(pk, body, sizeof body, sig, sizeof sig));
    ck_assert_uint_eq(cache_misses(), m1 + 2);
    proto_key_free(k);
    proto_key_free(k2);
    proto_pubkey_free(pk);
    proto_pubkey_free(pk2);
}
END_TEST

static char tmpdir[64];

static void tmpdir_make(void) {
    strcpy(tmpdir, "/tmp/test_crypto.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void tmpdir_path(const char *name, char *out, size_t cap) {
    ck_assert_int_lt(snprintf(out, cap, "%s/%s", tmpdir, name), (int)cap);
}

START_TEST(test_pem_round_trip) {
    char path[128];
    struct stat st;
    uint8_t p1[PROTO_PUBKEY_BYTES], p2[PROTO_PUBKEY_BYTES];
    proto_key *k = key_from_byte(5), *loaded = NULL;
    tmpdir_make();
    tmpdir_path("key.pem", path, sizeof path);
    ck_assert_int_eq(proto_key_save_pem(k, path), 0);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    ck_assert_int_eq(proto_key_load_pem(path, &loaded), 0);
    ck_assert_int_eq(proto_key_public(k, p1), 0);
    ck_assert_int_eq(proto_key_public(loaded, p2), 0);
    ck_assert_mem_eq(p1, p2, sizeof p1);
    /* PKCS#8, the form openssl genpkey -algorithm ed25519 writes. */
    FILE *fp = fopen(path, "r");
    char line[64] = {0};
    ck_assert_ptr_nonnull(fgets(line, sizeof line, fp));
    ck_assert_str_eq(line, "-----BEGIN PRIVATE KEY-----\n");
    fclose(fp);
    unlink(path);
    rmdir(tmpdir);
    proto_key_free(k);
    proto_key_free(loaded);
}
END_TEST

START_TEST(test_pem_errors) {
    char path[128];
    proto_key *k = (proto_key *)&k; /* must be reset to NULL on error */
    tmpdir_make();
    tmpdir_path("missing.pem", path, sizeof path);
    ck_assert_int_eq(proto_key_load_pem(path, &k), TB_ERR_IO);
    ck_assert_ptr_null(k);
    /* Not PEM at all. */
    tmpdir_path("garbage.pem", path, sizeof path);
    FILE *fp = fopen(path, "w");
    fputs("not a key\n", fp);
    fclose(fp);
    ck_assert_int_eq(proto_key_load_pem(path, &k), TB_ERR_INVALID);
    unlink(path);
    /* A valid PKCS#8 key of another algorithm. */
    tmpdir_path("ec.pem", path, sizeof path);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ck_assert_ptr_nonnull(ec);
    fp = fopen(path, "w");
    ck_assert_int_eq(PEM_write_PrivateKey(fp, ec, NULL, NULL, 0, NULL, NULL), 1);
    fclose(fp);
    EVP_PKEY_free(ec);
    ck_assert_int_eq(proto_key_load_pem(path, &k), TB_ERR_INVALID);
    unlink(path);
    /* Saving into a directory that does not exist. */
    proto_key *good = key_from_byte(6);
    tmpdir_path("no/such/dir.pem", path, sizeof path);
    ck_assert_int_eq(proto_key_save_pem(good, path), TB_ERR_IO);
    proto_key_free(good);
    rmdir(tmpdir);
}
END_TEST

static Suite *crypto_suite(void) {
    Suite *s = suite_create("crypto");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_sha256_known_answers);
    tcase_add_test(tc, test_hash_incremental_matches_one_shot);
    tcase_add_test(tc, test_from_seed_rfc8032_public_key);
    tcase_add_test(tc, test_from_seed_is_deterministic);
    tcase_add_test(tc, test_sign_verify_round_trip_and_wrong_key);
    tcase_add_test(tc, test_every_flipped_bit_fails);
    tcase_add_test(tc, test_verify_rejects_wrong_sig_length);
    tcase_add_test(tc, test_signature_is_over_domain_hash);
    tcase_add_test(tc, test_generate_gives_distinct_working_keys);
    tcase_add_test(tc, test_reused_contexts_match_fresh);
    tcase_add_test(tc, test_keys_shared_across_threads);
    tcase_add_test(tc, test_verified_cache);
    tcase_add_test(tc, test_ed25519_stats);
    tcase_add_test(tc, test_pem_round_trip);
    tcase_add_test(tc, test_pem_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(crypto_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
