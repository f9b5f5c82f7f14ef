/* Length-prefixed framing of packed Messages. */
#include "proto/frame.h"

#include <stdlib.h>

#include "proto/tb_err.h"

void proto_frame_header_encode(uint32_t payload_len, uint8_t hdr[PROTO_FRAME_HEADER_BYTES]) {
    hdr[0] = (uint8_t)(payload_len >> 24);
    hdr[1] = (uint8_t)(payload_len >> 16);
    hdr[2] = (uint8_t)(payload_len >> 8);
    hdr[3] = (uint8_t)payload_len;
}

int proto_frame_header_decode(const uint8_t hdr[PROTO_FRAME_HEADER_BYTES], uint32_t max,
                              uint32_t *payload_len) {
    uint32_t len =
        (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | (uint32_t)hdr[3];
    uint32_t limit = (max == 0 || max > PROTO_FRAME_BYTES_MAX) ? PROTO_FRAME_BYTES_MAX : max;
    *payload_len = 0;
    /* Every Message has its oneof set, so it packs to at least two bytes;
     * an empty frame is a broken or hostile peer. */
    if (len == 0) {
        return TB_ERR_INVALID;
    }
    if (len > limit) {
        return TB_ERR_TOO_LARGE;
    }
    *payload_len = len;
    return 0;
}

/* Packs m after `header` spare bytes at the front of a new buffer. */
static int proto_message_pack_at(const Twinbft__Message *m, size_t header, uint8_t **out,
                                 size_t *out_len) {
    size_t len = 0;
    uint8_t *buf = NULL;
    *out = NULL;
    *out_len = 0;
    if (m->kind_case == TWINBFT__MESSAGE__KIND__NOT_SET) {
        return TB_ERR_INVALID;
    }
    len = twinbft__message__get_packed_size(m);
    if (len == 0) {
        return TB_ERR_INVALID;
    }
    if (len > PROTO_FRAME_BYTES_MAX) {
        return TB_ERR_TOO_LARGE;
    }
    buf = malloc(header + len);
    if (buf == NULL) {
        return TB_ERR_NOMEM;
    }
    if (twinbft__message__pack(m, buf + header) != len) {
        free(buf);
        return TB_ERR_INVALID;
    }
    if (header > 0) {
        proto_frame_header_encode((uint32_t)len, buf);
    }
    *out = buf;
    *out_len = header + len;
    return 0;
}

int proto_message_pack(const Twinbft__Message *m, uint8_t **out, size_t *out_len) {
    return proto_message_pack_at(m, 0, out, out_len);
}

int proto_frame_pack(const Twinbft__Message *m, uint8_t **out, size_t *out_len) {
    return proto_message_pack_at(m, PROTO_FRAME_HEADER_BYTES, out, out_len);
}

size_t proto_decode_budget(size_t len) {
    return len * PROTO_DECODE_BYTES_PER_BYTE + PROTO_DECODE_SLACK_BYTES;
}

/* protobuf-c allocates through this while it decodes: every allocation,
 * its temporary scan records included, counts against the budget, and
 * what is freed is not given back, so the budget bounds the whole work of
 * one decode. Blocks come from malloc, so the message is freed as usual
 * (twinbft__message__free_unpacked(m, NULL)). */
typedef struct proto_decode_meter {
    size_t left;
    size_t used;
} proto_decode_meter;

static void *proto_decode_alloc(void *arg, size_t size) {
    proto_decode_meter *meter = arg;
    if (size > meter->left) {
        return NULL;
    }
    meter->left -= size;
    meter->used += size;
    return malloc(size);
}

static void proto_decode_free(void *arg, void *p) {
    (void)arg;
    free(p);
}

Twinbft__Message *proto_message_unpack_within(const uint8_t *data, size_t len, size_t budget,
                                              size_t *used) {
    proto_decode_meter meter = {.left = budget};
    ProtobufCAllocator alloc = {proto_decode_alloc, proto_decode_free, &meter};
    Twinbft__Message *m = NULL;
    if (used != NULL) {
        *used = 0;
    }
    if (data == NULL || len == 0 || len > PROTO_FRAME_BYTES_MAX) {
        return NULL;
    }
    m = twinbft__message__unpack(&alloc, len, data);
    if (used != NULL) {
        *used = meter.used;
    }
    if (m == NULL) {
        return NULL;
    }
    /* A message of an unknown kind (a newer peer, or noise that happens to
     * parse) carries nothing we can act on; callers need not check. */
    if (m->kind_case == TWINBFT__MESSAGE__KIND__NOT_SET) {
        twinbft__message__free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

Twinbft__Message *proto_message_unpack(const uint8_t *data, size_t len) {
    if (len > PROTO_FRAME_BYTES_MAX) {
        return NULL; /* before proto_decode_budget, which could overflow */
    }
    return proto_message_unpack_within(data, len, proto_decode_budget(len), NULL);
}

uint32_t proto_message_kind_peek(const uint8_t *data, size_t len) {
    uint64_t tag = 0;
    for (size_t i = 0; i < len && i < 5; i++) {
        tag |= (uint64_t)(data[i] & 0x7f) << (7 * i);
        if ((data[i] & 0x80) == 0) {
            return (tag & 7) == 2 ? (uint32_t)(tag >> 3) : 0;
        }
    }
    return 0;
}
