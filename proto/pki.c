/* The cluster's PKI: an Ed25519 CA and the certificates it issues, through
 * OpenSSL 3 alone so that a device can verify without the rest of twinbft. */
#include "proto/pki.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "proto/tb_err.h"

enum {
    PKI_SERIAL_BYTES = 16,
    /* A hundred years: enough for any deployment, and small enough that
     * days * 86400 cannot overflow a long on any platform we build for. */
    PKI_DAYS_MAX = 36500,
    PKI_SECONDS_PER_DAY = 86400,
    /* Certificates are valid from a little before they are made, so a peer
     * whose clock is slightly behind ours still accepts a fresh one. */
    PKI_BACKDATE_SECONDS = 300,
};

/* A random positive 128-bit serial (RFC 5280 4.1.2.2: positive, at most 20
 * octets), unpredictable so that serials cannot be chosen by an attacker. */
static int pki_set_serial(X509 *cert) {
    uint8_t raw[PKI_SERIAL_BYTES];
    int rc = TB_ERR_CRYPTO;
    BIGNUM *bn = NULL;
    if (RAND_bytes(raw, sizeof raw) != 1) {
        return TB_ERR_CRYPTO;
    }
    raw[0] &= 0x7f; /* positive in DER's two's complement */
    raw[0] |= 0x40; /* never zero, always 16 octets */
    bn = BN_bin2bn(raw, sizeof raw, NULL);
    if (bn == NULL) {
        return TB_ERR_NOMEM;
    }
    ASN1_INTEGER *serial = BN_to_ASN1_INTEGER(bn, NULL);
    if (serial != NULL && X509_set_serialNumber(cert, serial) == 1) {
        rc = 0;
    }
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return rc;
}

static int pki_set_name(X509_NAME *name, const char *cn) {
    size_t len = strlen(cn);
    if (len == 0 || len >= PROTO_NAME_BYTES_MAX) {
        return TB_ERR_INVALID;
    }
    /* OpenSSL also enforces X.520's 64-character bound on a common name. */
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                   0) != 1) {
        return TB_ERR_INVALID;
    }
    return 0;
}

static int pki_add_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value) {
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    int ok = 0;
    if (ext == NULL) {
        return TB_ERR_CRYPTO;
    }
    ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : TB_ERR_CRYPTO;
}

/* The extensions that make the certificate a CA or a TLS peer identity.
 * issuer is cert itself for the self-signed CA. */
static int pki_add_extensions(X509 *cert, X509 *issuer, bool ca) {
    X509V3_CTX ctx;
    int rc = 0;
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    if (ca) {
        rc = pki_add_ext(cert, &ctx, NID_basic_constraints, "critical,CA:TRUE");
        if (rc == 0) {
            rc = pki_add_ext(cert, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
        }
        if (rc == 0) {
            rc = pki_add_ext(cert, &ctx, NID_subject_key_identifier, "hash");
        }
        return rc;
    }
    rc = pki_add_ext(cert, &ctx, NID_basic_constraints, "critical,CA:FALSE");
    if (rc == 0) {
        rc = pki_add_ext(cert, &ctx, NID_key_usage, "critical,digitalSignature");
    }
    if (rc == 0) {
        rc = pki_add_ext(cert, &ctx, NID_ext_key_usage, "serverAuth,clientAuth");
    }
    if (rc == 0) {
        rc = pki_add_ext(cert, &ctx, NID_subject_key_identifier, "hash");
    }
    if (rc == 0) {
        rc = pki_add_ext(cert, &ctx, NID_authority_key_identifier, "keyid:always");
    }
    return rc;
}

/* A certificate for subject_key named cn, signed by issuer_key. For the
 * self-signed CA issuer_cert is NULL and the issuer is the subject. */
static int pki_build(EVP_PKEY *subject_key, const char *cn, X509 *issuer_cert, EVP_PKEY *issuer_key,
                     unsigned days, X509 **out) {
    int rc = TB_ERR_CRYPTO;
    bool ca = issuer_cert == NULL;
    X509 *cert = X509_new();
    *out = NULL;
    if (cert == NULL) {
        return TB_ERR_NOMEM;
    }
    /* Version 3 (the value is zero-based) is what carries extensions. */
    if (X509_set_version(cert, 2) != 1 || X509_set_pubkey(cert, subject_key) != 1) {
        goto fail;
    }
    if ((rc = pki_set_serial(cert)) != 0 ||
        (rc = pki_set_name(X509_get_subject_name(cert), cn)) != 0) {
        goto fail;
    }
    rc = TB_ERR_CRYPTO;
    X509_NAME *issuer_name = ca ? X509_get_subject_name(cert) : X509_get_subject_name(issuer_cert);
    if (X509_set_issuer_name(cert, issuer_name) != 1) {
        goto fail;
    }
    if (X509_gmtime_adj(X509_getm_notBefore(cert), -PKI_BACKDATE_SECONDS) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(cert), (long)days * PKI_SECONDS_PER_DAY) == NULL) {
        goto fail;
    }
    if ((rc = pki_add_extensions(cert, ca ? cert : issuer_cert, ca)) != 0) {
        goto fail;
    }
    /* Ed25519 hashes internally: the digest argument must be NULL. */
    if (X509_sign(cert, issuer_key, NULL) <= 0) {
        rc = TB_ERR_CRYPTO;
        goto fail;
    }
    *out = cert;
    return 0;
fail:
    X509_free(cert);
    return rc;
}

int proto_pki_ca_create(const char *cn, unsigned days, EVP_PKEY **key, X509 **cert) {
    int rc = 0;
    EVP_PKEY *k = NULL;
    *key = NULL;
    *cert = NULL;
    if (days == 0 || days > PKI_DAYS_MAX) {
        return TB_ERR_INVALID;
    }
    k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (k == NULL) {
        return TB_ERR_CRYPTO;
    }
    if ((rc = pki_build(k, cn, NULL, k, days, cert)) != 0) {
        EVP_PKEY_free(k);
        return rc;
    }
    *key = k;
    return 0;
}

int proto_pki_issue(EVP_PKEY *ca_key, X509 *ca_cert, const char *cn, unsigned days, EVP_PKEY **key,
                    X509 **cert) {
    int rc = 0;
    EVP_PKEY *k = NULL;
    *key = NULL;
    *cert = NULL;
    if (days == 0 || days > PKI_DAYS_MAX || ca_key == NULL || ca_cert == NULL) {
        return TB_ERR_INVALID;
    }
    k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (k == NULL) {
        return TB_ERR_CRYPTO;
    }
    if ((rc = pki_build(k, cn, ca_cert, ca_key, days, cert)) != 0) {
        EVP_PKEY_free(k);
        return rc;
    }
    *key = k;
    return 0;
}

/* Opens path for writing with the given mode, also when the file already
 * existed with wider permissions. */
static FILE *pki_open_write(const char *path, mode_t mode) {
    FILE *fp = NULL;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0) {
        return NULL;
    }
    if (fchmod(fd, mode) != 0 || (fp = fdopen(fd, "w")) == NULL) {
        close(fd);
        return NULL;
    }
    return fp;
}

/* Flushes to disk and closes; a key or certificate that a crash could leave
 * half-written would lock a replica out of its cluster. */
static int pki_close_write(FILE *fp, int rc) {
    if (rc == 0 && (fflush(fp) != 0 || fsync(fileno(fp)) != 0)) {
        rc = TB_ERR_IO;
    }
    if (fclose(fp) != 0 && rc == 0) {
        rc = TB_ERR_IO;
    }
    return rc;
}

int proto_pki_save_key(EVP_PKEY *key, const char *path) {
    FILE *fp = pki_open_write(path, 0600);
    if (fp == NULL) {
        return TB_ERR_IO;
    }
    /* PEM_write_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY"), unencrypted. */
    int rc = PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL) == 1 ? 0 : TB_ERR_CRYPTO;
    return pki_close_write(fp, rc);
}

int proto_pki_save_cert(X509 *cert, const char *path) {
    FILE *fp = pki_open_write(path, 0644);
    if (fp == NULL) {
        return TB_ERR_IO;
    }
    int rc = PEM_write_X509(fp, cert) == 1 ? 0 : TB_ERR_CRYPTO;
    return pki_close_write(fp, rc);
}

/* Key files are never encrypted; refusing a passphrase keeps OpenSSL from
 * prompting on the terminal of a daemon. */
static int pki_no_passphrase(char *buf, int size, int rwflag, void *u) {
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

int proto_pki_load_key(const char *path, EVP_PKEY **key) {
    EVP_PKEY *k = NULL;
    FILE *fp = fopen(path, "r");
    *key = NULL;
    if (fp == NULL) {
        return TB_ERR_IO;
    }
    k = PEM_read_PrivateKey(fp, NULL, pki_no_passphrase, NULL);
    fclose(fp);
    if (k == NULL) {
        return TB_ERR_INVALID;
    }
    if (!EVP_PKEY_is_a(k, "ED25519")) {
        EVP_PKEY_free(k);
        return TB_ERR_INVALID;
    }
    *key = k;
    return 0;
}

int proto_pki_load_cert(const char *path, X509 **cert) {
    X509 *c = NULL;
    FILE *fp = fopen(path, "r");
    *cert = NULL;
    if (fp == NULL) {
        return TB_ERR_IO;
    }
    c = PEM_read_X509(fp, NULL, pki_no_passphrase, NULL);
    fclose(fp);
    if (c == NULL) {
        return TB_ERR_INVALID;
    }
    *cert = c;
    return 0;
}

int proto_pki_verify(X509 *ca_cert, X509 *cert) {
    EVP_PKEY *ca_pub = NULL;
    if (ca_cert == NULL || cert == NULL) {
        return TB_ERR_INVALID;
    }
    /* A certificate that is not a CA's cannot vouch for anyone. */
    if (X509_check_ca(ca_cert) == 0) {
        return TB_ERR_INVALID;
    }
    if (X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(ca_cert)) != 0) {
        return TB_ERR_MISMATCH;
    }
    ca_pub = X509_get0_pubkey(ca_cert);
    if (ca_pub == NULL || X509_verify(cert, ca_pub) != 1) {
        return TB_ERR_BAD_SIG;
    }
    /* X509_cmp_current_time: -1 when the time is before now, 1 after, 0 on
     * a malformed time, which must not count as valid. */
    if (X509_cmp_current_time(X509_get0_notBefore(cert)) != -1 ||
        X509_cmp_current_time(X509_get0_notAfter(cert)) != 1) {
        return TB_ERR_EXPIRED;
    }
    return 0;
}

int proto_pki_name(X509 *cert, char name[PROTO_NAME_BYTES_MAX]) {
    unsigned char *utf8 = NULL;
    int rc = TB_ERR_INVALID;
    name[0] = '\0';
    X509_NAME *subject = X509_get_subject_name(cert);
    int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (i < 0) {
        return TB_ERR_INVALID;
    }
    ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
    int len = ASN1_STRING_to_UTF8(&utf8, data);
    /* An embedded NUL would let "admin\0x" pass as "admin". */
    if (len > 0 && len < PROTO_NAME_BYTES_MAX && memchr(utf8, '\0', (size_t)len) == NULL) {
        memcpy(name, utf8, (size_t)len);
        name[len] = '\0';
        rc = 0;
    }
    OPENSSL_free(utf8);
    return rc;
}

int proto_pki_pubkey(X509 *cert, uint8_t pub[PROTO_PUBKEY_BYTES]) {
    size_t len = PROTO_PUBKEY_BYTES;
    EVP_PKEY *k = X509_get0_pubkey(cert);
    if (k == NULL || !EVP_PKEY_is_a(k, "ED25519")) {
        return TB_ERR_INVALID;
    }
    if (EVP_PKEY_get_raw_public_key(k, pub, &len) != 1 || len != PROTO_PUBKEY_BYTES) {
        return TB_ERR_INVALID;
    }
    return 0;
}

int proto_pki_key_to_proto(EVP_PKEY *key, proto_key **out) {
    /* proto_key is opaque to this file; an Ed25519 private key is its seed
     * (RFC 8032 5.1.5), so the seed carries the key across exactly. */
    uint8_t seed[PROTO_SEED_BYTES];
    size_t len = sizeof seed;
    int rc = 0;
    *out = NULL;
    if (key == NULL || !EVP_PKEY_is_a(key, "ED25519")) {
        return TB_ERR_INVALID;
    }
    if (EVP_PKEY_get_raw_private_key(key, seed, &len) != 1 || len != sizeof seed) {
        rc = TB_ERR_INVALID;
    } else {
        rc = proto_key_from_seed(seed, out);
    }
    OPENSSL_cleanse(seed, sizeof seed);
    return rc;
}
