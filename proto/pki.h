/* The cluster's own PKI (OpenSSL only, so clients and devices can use it):
 * a self-signed Ed25519 CA, and Ed25519 certificates it issues for
 * replicas and principals. An identity's name is the certificate's subject
 * common name (e.g. "replica-0", "admin", "line1-agent"); replica
 * certificates also carry the replica id as "replica-<id>".
 *
 * Files are PEM. Keys are written with mode 0600. Errors are returned as
 * negative tb_err codes; nothing is printed. */
#ifndef PROTO_PKI_H
#define PROTO_PKI_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "proto/crypto.h"

enum { PROTO_NAME_BYTES_MAX = 128, PROTO_CERT_DAYS_DEFAULT = 3650 };

/* A new CA: Ed25519 key and a self-signed certificate (CA:TRUE) named cn. */
int proto_pki_ca_create(const char *cn, unsigned days, EVP_PKEY **key, X509 **cert);
/* A new Ed25519 key and a certificate for `cn` signed by the CA (CA:FALSE,
 * client and server auth, a random 128-bit serial). */
int proto_pki_issue(EVP_PKEY *ca_key, X509 *ca_cert, const char *cn, unsigned days, EVP_PKEY **key,
                    X509 **cert);

int proto_pki_save_key(EVP_PKEY *key, const char *path);  /* PKCS#8 PEM, 0600 */
int proto_pki_save_cert(X509 *cert, const char *path);    /* PEM */
int proto_pki_load_key(const char *path, EVP_PKEY **key); /* TB_ERR_IO / TB_ERR_INVALID */
int proto_pki_load_cert(const char *path, X509 **cert);

/* 0 iff cert is signed by ca_cert and within its validity period now. */
int proto_pki_verify(X509 *ca_cert, X509 *cert);
/* The subject common name into name (NUL-terminated); TB_ERR_INVALID when
 * absent or longer than PROTO_NAME_BYTES_MAX - 1. */
int proto_pki_name(X509 *cert, char name[PROTO_NAME_BYTES_MAX]);
/* The certificate's Ed25519 public key, raw; TB_ERR_INVALID for other key types. */
int proto_pki_pubkey(X509 *cert, uint8_t pub[PROTO_PUBKEY_BYTES]);
/* The private key as a proto_key (for proto_sign_body). */
int proto_pki_key_to_proto(EVP_PKEY *key, proto_key **out);

#endif
