/* Hashing and signatures (OpenSSL EVP only).
 *
 * Signed bodies: a replica signs SHA-256("twinbft/v1/signed" || 0x00 || body)
 * with Ed25519, so the same key can never be tricked into signing something
 * that parses as another kind of message of ours, and large bodies are
 * hashed once rather than copied. */
#ifndef PROTO_CRYPTO_H
#define PROTO_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    PROTO_DIGEST_BYTES = 32,
    PROTO_SIG_BYTES = 64,
    PROTO_PUBKEY_BYTES = 32,
    PROTO_SEED_BYTES = 32,
};

/* SHA-256 of one buffer. */
void proto_sha256(const void *data, size_t len, uint8_t out[PROTO_DIGEST_BYTES]);

/* Incremental SHA-256. begin returns NULL only when out of memory. */
typedef struct proto_hash proto_hash;
proto_hash *proto_hash_begin(void);
void proto_hash_update(proto_hash *h, const void *data, size_t len);
/* Writes the digest and frees h. */
void proto_hash_final(proto_hash *h, uint8_t out[PROTO_DIGEST_BYTES]);

/* An Ed25519 private key. Keys and public keys may be used from several
 * threads at once; errors set *out to NULL. */
typedef struct proto_key proto_key;
/* A fresh random key. */
int proto_key_generate(proto_key **out);
/* A key derived from a 32-byte seed (deterministic; for tests and the simulator). */
int proto_key_from_seed(const uint8_t seed[PROTO_SEED_BYTES], proto_key **out);
/* PEM (PKCS#8, unencrypted) file. TB_ERR_IO when the file cannot be opened
 * or written, TB_ERR_INVALID when it holds no Ed25519 private key. Nothing
 * is printed: the caller names the path in its message. save writes the
 * file with mode 0600. */
int proto_key_load_pem(const char *path, proto_key **out);
int proto_key_save_pem(const proto_key *k, const char *path);
void proto_key_free(proto_key *k);
int proto_key_public(const proto_key *k, uint8_t pub[PROTO_PUBKEY_BYTES]);

/* An Ed25519 public key, parsed once and reused for every verification. */
typedef struct proto_pubkey proto_pubkey;
int proto_pubkey_from_raw(const uint8_t raw[PROTO_PUBKEY_BYTES], proto_pubkey **out);
void proto_pubkey_free(proto_pubkey *k);

/* Sign a packed Body (domain-separated, see above). */
int proto_sign_body(const proto_key *k, const uint8_t *body, size_t len,
                    uint8_t sig[PROTO_SIG_BYTES]);
/* True iff sig is a valid signature by k over the packed Body. */
bool proto_verify_body(const proto_pubkey *k, const uint8_t *body, size_t len, const uint8_t *sig,
                       size_t sig_len);

/* proto_verify_body through a cache, per thread, of the signatures found
 * valid: (public key, signing digest of the body, signature) triples,
 * compared in full, so another key (of another cluster, or the same
 * member index with a new key) or other bytes never hit. A triple is kept
 * only once it verified, so a hit answers what a verification would, and a
 * bad signature is verified (and refused) every time. The oldest of the
 * PROTO_VERIFIED_CACHE_ENTRIES is replaced first. Meant for certificates:
 * the replies of one batch carry the same signed root, so a thread that
 * handles many requests of a batch verifies each signer's root once. */
enum { PROTO_VERIFIED_CACHE_ENTRIES = 128 };
bool proto_verify_body_cached(const proto_pubkey *k, const uint8_t *body, size_t len,
                              const uint8_t *sig, size_t sig_len);
/* The calling thread's counts: answers from the cache (hits) and
 * signatures verified (misses), since it started. */
void proto_verified_cache_stats(uint64_t *hits, uint64_t *misses);
/* Forgets the calling thread's entries (the counts stay). For tests. */
void proto_verified_cache_clear(void);

/* The calling thread's Ed25519 operations since it started: signatures made
 * and signatures verified (cache hits are not verifications). A replica is
 * one thread, so these are its totals, exported as metrics. */
void proto_ed25519_stats(uint64_t *signs, uint64_t *verifies);

#endif
