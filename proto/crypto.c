/* SHA-256 and Ed25519 through OpenSSL 3's EVP interface. */
#include "proto/crypto.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "proto/md_cache.h"
#include "proto/tb_assert.h"
#include "proto/tb_err.h"

/* Contexts kept with a key and reused by its operations, because building
 * them per operation (EVP_MD_CTX, EVP_PKEY_CTX, the provider's signature
 * context) cost 2 us of the 27 us of a signature here. `sig` is set up with
 * the key on first use and re-initialised without it (OpenSSL keeps the
 * key) before each one; `hash` computes the signing digest. One thread at
 * a time holds a slot (busy); another that finds it taken builds fresh
 * contexts, as every operation did before, so keys stay shareable across
 * threads and no thread ever waits. */
typedef struct proto_ctx_slot {
    atomic_flag busy;
    bool sig_ready; /* sig is initialised with the key */
    EVP_MD_CTX *sig;
    EVP_MD_CTX *hash;
} proto_ctx_slot;

struct proto_key {
    EVP_PKEY *pkey;
    proto_ctx_slot *slot; /* NULL when it could not be allocated: fresh contexts */
};

struct proto_pubkey {
    EVP_PKEY *pkey;
    uint8_t raw[PROTO_PUBKEY_BYTES]; /* what the verified-signature cache compares */
    proto_ctx_slot *slot;
};

/* The signing domain: the NUL that ends the string literal is the 0x00
 * separator of the contract in crypto.h, so it is part of what is hashed. */
static const char proto_sign_domain[] = "twinbft/v1/signed";
_Static_assert(sizeof proto_sign_domain == 18, "domain is 17 characters and a 0x00 separator");

static pthread_once_t proto_md_once = PTHREAD_ONCE_INIT;
static EVP_MD *proto_md_sha256_fetched;
static EVP_MD *proto_md_shake128_fetched;

static void proto_md_fetch(void) {
    proto_md_sha256_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
    proto_md_shake128_fetched = EVP_MD_fetch(NULL, "SHAKE128", NULL);
}

const EVP_MD *proto_md_sha256(void) {
    TB_ASSERT(pthread_once(&proto_md_once, proto_md_fetch) == 0);
    /* Without a provider for SHA-256 nothing in twinbft can work. */
    TB_ASSERT(proto_md_sha256_fetched != NULL);
    return proto_md_sha256_fetched;
}

const EVP_MD *proto_md_shake128(void) {
    TB_ASSERT(pthread_once(&proto_md_once, proto_md_fetch) == 0);
    TB_ASSERT(proto_md_shake128_fetched != NULL);
    return proto_md_shake128_fetched;
}

void proto_sha256(const void *data, size_t len, uint8_t out[PROTO_DIGEST_BYTES]) {
    unsigned int out_len = 0;
    /* EVP_Digest fails only when out of memory, which the void contract
     * cannot report; stopping beats returning an unset digest. */
    TB_ASSERT(EVP_Digest(data, len, out, &out_len, proto_md_sha256(), NULL) == 1);
    TB_ASSERT(out_len == PROTO_DIGEST_BYTES);
}

/* A proto_hash is an EVP_MD_CTX under another name: the wrapper type only
 * keeps OpenSSL out of the header. */
proto_hash *proto_hash_begin(void) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return NULL;
    }
    if (EVP_DigestInit_ex2(ctx, proto_md_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    return (proto_hash *)ctx;
}

void proto_hash_update(proto_hash *h, const void *data, size_t len) {
    TB_ASSERT(h != NULL);
    TB_ASSERT(EVP_DigestUpdate((EVP_MD_CTX *)h, data, len) == 1);
}

void proto_hash_final(proto_hash *h, uint8_t out[PROTO_DIGEST_BYTES]) {
    unsigned int out_len = 0;
    TB_ASSERT(h != NULL);
    TB_ASSERT(EVP_DigestFinal_ex((EVP_MD_CTX *)h, out, &out_len) == 1);
    TB_ASSERT(out_len == PROTO_DIGEST_BYTES);
    EVP_MD_CTX_free((EVP_MD_CTX *)h);
}

static proto_ctx_slot *proto_slot_new(void) {
    proto_ctx_slot *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    atomic_flag_clear(&s->busy);
    s->sig = EVP_MD_CTX_new();
    s->hash = EVP_MD_CTX_new();
    if (s->sig == NULL || s->hash == NULL) {
        EVP_MD_CTX_free(s->sig);
        EVP_MD_CTX_free(s->hash);
        free(s);
        return NULL;
    }
    return s;
}

static void proto_slot_free(proto_ctx_slot *s) {
    if (s != NULL) {
        EVP_MD_CTX_free(s->sig);
        EVP_MD_CTX_free(s->hash);
        free(s);
    }
}

/* The slot, held by this thread until proto_slot_give, or NULL when there
 * is none or another thread holds it. */
static proto_ctx_slot *proto_slot_take(proto_ctx_slot *s) {
    if (s == NULL || atomic_flag_test_and_set_explicit(&s->busy, memory_order_acquire)) {
        return NULL;
    }
    return s;
}

static void proto_slot_give(proto_ctx_slot *s) {
    if (s != NULL) {
        atomic_flag_clear_explicit(&s->busy, memory_order_release);
    }
}

static int proto_key_wrap(EVP_PKEY *pkey, proto_key **out) {
    proto_key *k = malloc(sizeof *k);
    if (k == NULL) {
        EVP_PKEY_free(pkey);
        return TB_ERR_NOMEM;
    }
    k->pkey = pkey;
    k->slot = proto_slot_new();
    *out = k;
    return 0;
}

int proto_key_generate(proto_key **out) {
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    *out = NULL;
    if (pkey == NULL) {
        return TB_ERR_CRYPTO;
    }
    return proto_key_wrap(pkey, out);
}

int proto_key_from_seed(const uint8_t seed[PROTO_SEED_BYTES], proto_key **out) {
    /* An Ed25519 private key is its 32-byte seed (RFC 8032 5.1.5). */
    EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key_ex(NULL, "ED25519", NULL, seed, PROTO_SEED_BYTES);
    *out = NULL;
    if (pkey == NULL) {
        return TB_ERR_CRYPTO;
    }
    return proto_key_wrap(pkey, out);
}

/* Key files are never encrypted; refusing a passphrase here keeps OpenSSL
 * from prompting on the terminal of a daemon. */
static int proto_no_passphrase(char *buf, int size, int rwflag, void *u) {
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

int proto_key_load_pem(const char *path, proto_key **out) {
    EVP_PKEY *pkey = NULL;
    FILE *fp = fopen(path, "r");
    *out = NULL;
    if (fp == NULL) {
        return TB_ERR_IO;
    }
    pkey = PEM_read_PrivateKey(fp, NULL, proto_no_passphrase, NULL);
    fclose(fp);
    if (pkey == NULL) {
        return TB_ERR_INVALID;
    }
    if (!EVP_PKEY_is_a(pkey, "ED25519")) {
        EVP_PKEY_free(pkey);
        return TB_ERR_INVALID;
    }
    return proto_key_wrap(pkey, out);
}

int proto_key_save_pem(const proto_key *k, const char *path) {
    int rc = TB_ERR_IO;
    FILE *fp = NULL;
    /* Private keys are readable by their owner only, also when the file
     * already existed with wider permissions. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        return TB_ERR_IO;
    }
    if (fchmod(fd, 0600) != 0 || (fp = fdopen(fd, "w")) == NULL) {
        close(fd);
        return TB_ERR_IO;
    }
    /* PEM_write_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY"). */
    if (PEM_write_PrivateKey(fp, k->pkey, NULL, NULL, 0, NULL, NULL) != 1) {
        rc = TB_ERR_CRYPTO;
    } else if (fflush(fp) == 0 && fsync(fileno(fp)) == 0) {
        rc = 0;
    }
    /* fclose reports write errors that fflush may not have seen. */
    if (fclose(fp) != 0 && rc == 0) {
        rc = TB_ERR_IO;
    }
    return rc;
}

void proto_key_free(proto_key *k) {
    if (k == NULL) {
        return;
    }
    proto_slot_free(k->slot);
    EVP_PKEY_free(k->pkey);
    free(k);
}

int proto_key_public(const proto_key *k, uint8_t pub[PROTO_PUBKEY_BYTES]) {
    size_t len = PROTO_PUBKEY_BYTES;
    if (EVP_PKEY_get_raw_public_key(k->pkey, pub, &len) != 1 || len != PROTO_PUBKEY_BYTES) {
        return TB_ERR_CRYPTO;
    }
    return 0;
}

int proto_pubkey_from_raw(const uint8_t raw[PROTO_PUBKEY_BYTES], proto_pubkey **out) {
    proto_pubkey *k = NULL;
    EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, raw, PROTO_PUBKEY_BYTES);
    *out = NULL;
    if (pkey == NULL) {
        return TB_ERR_INVALID;
    }
    k = malloc(sizeof *k);
    if (k == NULL) {
        EVP_PKEY_free(pkey);
        return TB_ERR_NOMEM;
    }
    k->pkey = pkey;
    memcpy(k->raw, raw, PROTO_PUBKEY_BYTES);
    k->slot = proto_slot_new();
    *out = k;
    return 0;
}

void proto_pubkey_free(proto_pubkey *k) {
    if (k == NULL) {
        return;
    }
    proto_slot_free(k->slot);
    EVP_PKEY_free(k->pkey);
    free(k);
}

/* SHA-256("twinbft/v1/signed" || 0x00 || body), with h (a slot's) or, when
 * h is NULL, a fresh context. */
static void proto_sign_digest(EVP_MD_CTX *h, const uint8_t *body, size_t len,
                              uint8_t out[PROTO_DIGEST_BYTES]) {
    unsigned int out_len = 0;
    EVP_MD_CTX *fresh = h == NULL ? EVP_MD_CTX_new() : NULL;
    EVP_MD_CTX *ctx = h != NULL ? h : fresh;
    /* Fails only when out of memory, which no caller could report. */
    TB_ASSERT(ctx != NULL);
    TB_ASSERT(EVP_DigestInit_ex2(ctx, proto_md_sha256(), NULL) == 1);
    TB_ASSERT(EVP_DigestUpdate(ctx, proto_sign_domain, sizeof proto_sign_domain) == 1);
    TB_ASSERT(EVP_DigestUpdate(ctx, body, len) == 1);
    TB_ASSERT(EVP_DigestFinal_ex(ctx, out, &out_len) == 1);
    TB_ASSERT(out_len == PROTO_DIGEST_BYTES);
    EVP_MD_CTX_free(fresh);
}

/* Readies a slot's signature context for one more operation with pkey:
 * the first time with the key, then by re-initialising it without one.
 * false when OpenSSL refuses (the caller falls back to a fresh context). */
static bool proto_slot_ready(proto_ctx_slot *s, EVP_PKEY *pkey, bool sign) {
    EVP_PKEY *with = s->sig_ready ? NULL : pkey;
    /* Ed25519 is one-shot and hashes internally: no message digest here. */
    int rc = sign ? EVP_DigestSignInit_ex(s->sig, NULL, NULL, NULL, NULL, with, NULL)
                  : EVP_DigestVerifyInit_ex(s->sig, NULL, NULL, NULL, NULL, with, NULL);
    s->sig_ready = rc == 1;
    return rc == 1;
}

static int proto_ed25519_sign(EVP_MD_CTX *ctx, const uint8_t digest[PROTO_DIGEST_BYTES],
                              uint8_t sig[PROTO_SIG_BYTES]) {
    size_t sig_len = PROTO_SIG_BYTES;
    if (EVP_DigestSign(ctx, sig, &sig_len, digest, PROTO_DIGEST_BYTES) != 1 ||
        sig_len != PROTO_SIG_BYTES) {
        return TB_ERR_CRYPTO;
    }
    return 0;
}

/* Ed25519 operations of this thread (proto_ed25519_stats). */
static _Thread_local uint64_t proto_signs, proto_verifies;

void proto_ed25519_stats(uint64_t *signs, uint64_t *verifies) {
    *signs = proto_signs;
    *verifies = proto_verifies;
}

int proto_sign_body(const proto_key *k, const uint8_t *body, size_t len,
                    uint8_t sig[PROTO_SIG_BYTES]) {
    int rc = TB_ERR_CRYPTO;
    proto_signs++;
    uint8_t digest[PROTO_DIGEST_BYTES];
    proto_ctx_slot *slot = proto_slot_take(k->slot);
    proto_sign_digest(slot != NULL ? slot->hash : NULL, body, len, digest);
    if (slot != NULL && proto_slot_ready(slot, k->pkey, true)) {
        rc = proto_ed25519_sign(slot->sig, digest, sig);
        proto_slot_give(slot);
        return rc;
    }
    proto_slot_give(slot);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return TB_ERR_NOMEM;
    }
    if (EVP_DigestSignInit_ex(ctx, NULL, NULL, NULL, NULL, k->pkey, NULL) == 1) {
        rc = proto_ed25519_sign(ctx, digest, sig);
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* Verifies sig over a signing digest, in k's slot when this thread holds it
 * (slot != NULL), else with a fresh context. */
static bool proto_verify_digest(const proto_pubkey *k, proto_ctx_slot *slot,
                                const uint8_t digest[PROTO_DIGEST_BYTES], const uint8_t *sig) {
    proto_verifies++;
    if (slot != NULL && proto_slot_ready(slot, k->pkey, false)) {
        return EVP_DigestVerify(slot->sig, sig, PROTO_SIG_BYTES, digest, PROTO_DIGEST_BYTES) == 1;
    }
    bool ok = false;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx != NULL && EVP_DigestVerifyInit_ex(ctx, NULL, NULL, NULL, NULL, k->pkey, NULL) == 1) {
        ok = EVP_DigestVerify(ctx, sig, PROTO_SIG_BYTES, digest, PROTO_DIGEST_BYTES) == 1;
    }
    EVP_MD_CTX_free(ctx);
    return ok;
}

bool proto_verify_body(const proto_pubkey *k, const uint8_t *body, size_t len, const uint8_t *sig,
                       size_t sig_len) {
    uint8_t digest[PROTO_DIGEST_BYTES];
    if (k == NULL || sig == NULL || sig_len != PROTO_SIG_BYTES) {
        return false;
    }
    proto_ctx_slot *slot = proto_slot_take(k->slot);
    proto_sign_digest(slot != NULL ? slot->hash : NULL, body, len, digest);
    bool ok = proto_verify_digest(k, slot, digest, sig);
    proto_slot_give(slot);
    return ok;
}

/* ---- the per-thread cache of verified signatures (see crypto.h) ---- */

typedef struct proto_verified {
    uint8_t pub[PROTO_PUBKEY_BYTES];
    uint8_t digest[PROTO_DIGEST_BYTES]; /* the signing digest: covers every signed byte */
    uint8_t sig[PROTO_SIG_BYTES];
} proto_verified;

/* 16 KiB per thread that uses it: a ring, the oldest entry replaced first. */
typedef struct proto_verified_cache {
    proto_verified e[PROTO_VERIFIED_CACHE_ENTRIES];
    uint32_t used; /* entries filled, up to PROTO_VERIFIED_CACHE_ENTRIES */
    uint32_t next; /* the entry the next insertion replaces */
    uint64_t hits, misses;
} proto_verified_cache;

_Static_assert(PROTO_VERIFIED_CACHE_ENTRIES >= 64 && PROTO_VERIFIED_CACHE_ENTRIES <= 256,
               "room for the signers of a few batches in flight, scanned in well under a "
               "verification");

static _Thread_local proto_verified_cache proto_vcache;

static bool proto_vcache_find(const proto_verified *want) {
    const proto_verified_cache *c = &proto_vcache;
    for (uint32_t i = 0; i < c->used; i++) {
        /* The signature first: it differs in its first bytes from any other. */
        if (memcmp(c->e[i].sig, want->sig, PROTO_SIG_BYTES) == 0 &&
            memcmp(c->e[i].digest, want->digest, PROTO_DIGEST_BYTES) == 0 &&
            memcmp(c->e[i].pub, want->pub, PROTO_PUBKEY_BYTES) == 0) {
            return true;
        }
    }
    return false;
}

static void proto_vcache_add(const proto_verified *v) {
    proto_verified_cache *c = &proto_vcache;
    TB_ASSERT(c->next < PROTO_VERIFIED_CACHE_ENTRIES && c->used <= PROTO_VERIFIED_CACHE_ENTRIES);
    c->e[c->next] = *v;
    c->next = (c->next + 1) % PROTO_VERIFIED_CACHE_ENTRIES;
    if (c->used < PROTO_VERIFIED_CACHE_ENTRIES) {
        c->used++;
    }
}

bool proto_verify_body_cached(const proto_pubkey *k, const uint8_t *body, size_t len,
                              const uint8_t *sig, size_t sig_len) {
    proto_verified v;
    if (k == NULL || sig == NULL || sig_len != PROTO_SIG_BYTES) {
        return false;
    }
    proto_ctx_slot *slot = proto_slot_take(k->slot);
    proto_sign_digest(slot != NULL ? slot->hash : NULL, body, len, v.digest);
    memcpy(v.pub, k->raw, PROTO_PUBKEY_BYTES);
    memcpy(v.sig, sig, PROTO_SIG_BYTES);
    bool ok = proto_vcache_find(&v);
    if (ok) {
        proto_vcache.hits++;
    } else {
        proto_vcache.misses++;
        ok = proto_verify_digest(k, slot, v.digest, sig);
        if (ok) {
            proto_vcache_add(&v);
        }
    }
    proto_slot_give(slot);
    return ok;
}

void proto_verified_cache_stats(uint64_t *hits, uint64_t *misses) {
    *hits = proto_vcache.hits;
    *misses = proto_vcache.misses;
}

void proto_verified_cache_clear(void) {
    proto_vcache.used = 0;
    proto_vcache.next = 0;
    memset(proto_vcache.e, 0, sizeof proto_vcache.e);
}
