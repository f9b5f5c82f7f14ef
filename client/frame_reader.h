/* Reassembly of length-prefixed frames (proto/frame.h) from a byte stream,
 * for TLS links (client/link.h). Kept apart from the sockets so the length checks can be
 * tested byte by byte. */
#ifndef TB_FRAME_READER_H
#define TB_FRAME_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/budget.h"
#include "proto/frame.h"

/* Reassembles frames from a byte stream, checking each announced length
 * against max, and charging it to a memory budget account, before
 * allocating anything. Pure: no I/O, testable alone. */
typedef struct tb_frame_reader {
    uint32_t max; /* largest payload accepted (capped at PROTO_FRAME_BYTES_MAX) */
    uint8_t hdr[PROTO_FRAME_HEADER_BYTES];
    uint32_t hdr_have;
    uint32_t len;  /* payload length once the header is complete */
    uint32_t have; /* payload bytes received */
    uint8_t *buf;
    size_t cap;
    bool failed;
    /* The frame under way is charged to this account from its header until
     * it is handed out (NULL: no budget). The buffer kept between frames
     * (TB_FRAME_READER_KEEP_BYTES at most) is not charged: links are
     * bounded in number, and it holds no frame. */
    tb_budget_account *account;
    uint32_t charged;
} tb_frame_reader;

enum {
    /* A reader keeps a buffer this large between frames so small frames do
     * not allocate; a larger one is released after its frame. */
    TB_FRAME_READER_KEEP_BYTES = 64u << 10,
};

void tb_frame_reader_init(tb_frame_reader *r, uint32_t max);
/* Forgets any partial frame (giving its charge back) and releases the
 * buffer; max and the account stay (the reader stays usable). */
void tb_frame_reader_reset(tb_frame_reader *r);
/* Consumes data up to the end of the next complete frame and sets *used.
 * When a frame completes, *frame and *frame_len point at its payload (valid
 * until the next call); otherwise *frame is NULL and all of data was used.
 * TB_ERR_TOO_LARGE or TB_ERR_INVALID (zero length) for a bad header, found
 * before any allocation; TB_ERR_BUDGET when the account cannot take the
 * announced length (nothing charged, nothing allocated). After any error
 * the reader refuses further input. TB_ERR_NOMEM. */
int tb_frame_reader_feed(tb_frame_reader *r, const uint8_t *data, size_t len, size_t *used,
                         const uint8_t **frame, size_t *frame_len);
/* Whether a frame has begun (at least one byte of its header is in) and is
 * not complete yet. */
bool tb_frame_reader_pending(const tb_frame_reader *r);
/* The payload length the frame under way announced; 0 while its header is
 * incomplete or no frame is under way. */
uint32_t tb_frame_reader_announced(const tb_frame_reader *r);

#endif
