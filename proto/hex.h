/* Lowercase hexadecimal for logs and traces. */
#ifndef PROTO_HEX_H
#define PROTO_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Writes 2 * len hex digits and a terminating NUL to out, which must hold
 * 2 * len + 1 bytes. */
void proto_hex(const uint8_t *in, size_t len, char *out);

#endif
