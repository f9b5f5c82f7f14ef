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
    /* Decoding a Message may allocate at most this many bytes per byte of
     * input, plus PROTO_DECODE_SLACK_BYTES, temporary ones included. The
     * messages replicas and clients really send decode to at most about 4
     * bytes per byte (a Merkle path: 34 bytes of wire become a 16-byte
     * descriptor, a 32-byte copy and protobuf-c's 32-byte scan record), so 8
     * leaves room. Fields of two bytes each decode to 40 to 70 bytes each
     * (a 64 MiB frame of empty entries once took a replica to 3.2 GiB); such
     * a frame is refused as soon as its allocations pass the budget. */
    PROTO_DECODE_BYTES_PER_BYTE = 8,
    PROTO_DECODE_SLACK_BYTES = 64u << 10,
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
 * no kind we know, on len above the maximum (then nothing is read), or on a
 * message whose decoding would allocate more than proto_decode_budget(len)
 * bytes (decoding stops there). Free with
 * twinbft__message__free_unpacked(m, NULL). */
Twinbft__Message *proto_message_unpack(const uint8_t *data, size_t len);
/* The bytes proto_message_unpack may allocate for len bytes of input. */
size_t proto_decode_budget(size_t len);
/* proto_message_unpack with an explicit budget; *used (may be NULL) gets
 * the bytes the decoding allocated, freed ones included, whether or not it
 * succeeded. For tests and measurements. */
Twinbft__Message *proto_message_unpack_within(const uint8_t *data, size_t len, size_t budget,
                                              size_t *used);
/* The field number of a packed Message's first field, which is its kind
 * (Message is a single oneof), or 0 when the bytes do not start with a
 * length-delimited field. Lets a Request reach the core undecoded. */
uint32_t proto_message_kind_peek(const uint8_t *data, size_t len);

#endif
