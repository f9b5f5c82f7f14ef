/* Framing: a 4-byte big-endian payload length, then one packed Message.
 * The length is checked against a maximum before anything is allocated. */
#ifndef PROTO_FRAME_H
#define PROTO_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "proto/twinbft.pb-c.h"

enum {
    PROTO_FRAME_HEADER_BYTES = 4,
    /* Largest frame: a NEW-VIEW with 2f+1 view changes each carrying a full
     * window of prepared batches must fit (see consensus/pbft.h limits). */
    PROTO_FRAME_BYTES_MAX = 64u << 20,
};

void proto_frame_header_encode(uint32_t payload_len, uint8_t hdr[PROTO_FRAME_HEADER_BYTES]);
/* Reads the length; TB_ERR_TOO_LARGE when it exceeds max (or PROTO_FRAME_BYTES_MAX,
 * which also applies when max is 0 or larger), TB_ERR_INVALID when it is zero. */
int proto_frame_header_decode(const uint8_t hdr[PROTO_FRAME_HEADER_BYTES], uint32_t max,
                              uint32_t *payload_len);

/* Packs m (without frame header) into a new malloc'd buffer. TB_ERR_INVALID
 * when m has no kind set, TB_ERR_TOO_LARGE above PROTO_FRAME_BYTES_MAX. */
int proto_message_pack(const Twinbft__Message *m, uint8_t **out, size_t *out_len);
/* Packs m with its frame header into a new malloc'd buffer. */
int proto_frame_pack(const Twinbft__Message *m, uint8_t **out, size_t *out_len);
/* Unpacks a payload (no header); NULL on malformed input, on a message with
 * no kind we know, or on len above the maximum (then nothing is read). Free
 * with twinbft__message__free_unpacked(m, NULL). */
Twinbft__Message *proto_message_unpack(const uint8_t *data, size_t len);
/* The field number of a packed Message's first field, which is its kind
 * (Message is a single oneof), or 0 when the bytes do not start with a
 * length-delimited field. Lets a Request reach the core undecoded. */
uint32_t proto_message_kind_peek(const uint8_t *data, size_t len);

#endif
