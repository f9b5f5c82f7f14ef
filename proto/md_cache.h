/* Internal to proto/: digest algorithms fetched from the OpenSSL provider
 * once per process. OpenSSL 3 otherwise repeats the provider lookup (a
 * locked table search) on every digest init, which dominates the cost of
 * hashing the small inputs we hash most (Merkle nodes, lattice-hash
 * elements). The returned objects live until exit and are safe to share
 * between threads. */
#ifndef PROTO_MD_CACHE_H
#define PROTO_MD_CACHE_H

#include <openssl/evp.h>

const EVP_MD *proto_md_sha256(void);
const EVP_MD *proto_md_shake128(void);

#endif
