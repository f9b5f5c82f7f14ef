/* Frame reassembly: header first, length checked, only then a buffer. */
#include "client/frame_reader.h"

#include <stdlib.h>
#include <string.h>

#include "proto/tb_assert.h"
#include "proto/tb_err.h"

void tb_frame_reader_init(tb_frame_reader *r, uint32_t max) {
    memset(r, 0, sizeof *r);
    r->max = (max == 0 || max > PROTO_FRAME_BYTES_MAX) ? PROTO_FRAME_BYTES_MAX : max;
}

/* Gives back what the frame under way was charged. */
static void tb_frame_reader_uncharge(tb_frame_reader *r) {
    if (r->charged > 0) {
        TB_ASSERT(r->account != NULL);
        tb_budget_put(r->account, r->charged);
        r->charged = 0;
    }
}

void tb_frame_reader_reset(tb_frame_reader *r) {
    uint32_t max = r->max;
    tb_budget_account *account = r->account;
    tb_frame_reader_uncharge(r);
    free(r->buf);
    tb_frame_reader_init(r, max);
    r->account = account;
}

/* Makes room for a payload of r->len bytes. Small frames share one kept
 * buffer; a large one gets its own, released again by the next small frame,
 * so a single burst does not pin megabytes for the life of a link. */
static int tb_frame_reader_reserve(tb_frame_reader *r) {
    bool small = r->len <= TB_FRAME_READER_KEEP_BYTES;
    size_t want = small ? TB_FRAME_READER_KEEP_BYTES : r->len;
    if (small ? r->cap == want : r->cap >= want) {
        return 0;
    }
    free(r->buf);
    r->cap = 0;
    r->buf = malloc(want);
    if (r->buf == NULL) {
        return TB_ERR_NOMEM;
    }
    r->cap = want;
    return 0;
}

/* Takes header bytes; once all four are in, validates the length. */
static int tb_frame_reader_header(tb_frame_reader *r, const uint8_t *data, size_t len,
                                  size_t *used) {
    size_t n = PROTO_FRAME_HEADER_BYTES - r->hdr_have;
    int rc = 0;
    if (n > len) {
        n = len;
    }
    memcpy(r->hdr + r->hdr_have, data, n);
    r->hdr_have += (uint32_t)n;
    *used = n;
    if (r->hdr_have < PROTO_FRAME_HEADER_BYTES) {
        return 0;
    }
    rc = proto_frame_header_decode(r->hdr, r->max, &r->len);
    if (rc < 0) {
        return rc;
    }
    if (r->account != NULL) {
        if (!tb_budget_take(r->account, r->len)) {
            return TB_ERR_BUDGET;
        }
        r->charged = r->len;
    }
    r->have = 0;
    return tb_frame_reader_reserve(r);
}

int tb_frame_reader_feed(tb_frame_reader *r, const uint8_t *data, size_t len, size_t *used,
                         const uint8_t **frame, size_t *frame_len) {
    size_t off = 0;
    int rc = 0;
    *used = 0;
    *frame = NULL;
    *frame_len = 0;
    if (r->failed) {
        return TB_ERR_STATE;
    }
    while (off < len) {
        if (r->hdr_have < PROTO_FRAME_HEADER_BYTES) {
            size_t n = 0;
            rc = tb_frame_reader_header(r, data + off, len - off, &n);
            off += n;
            if (rc < 0) {
                goto fail;
            }
            continue;
        }
        size_t n = r->len - r->have;
        if (n > len - off) {
            n = len - off;
        }
        memcpy(r->buf + r->have, data + off, n);
        r->have += (uint32_t)n;
        off += n;
        if (r->have == r->len) {
            break;
        }
    }
    *used = off;
    if (r->hdr_have == PROTO_FRAME_HEADER_BYTES && r->have == r->len) {
        TB_ASSERT(r->len > 0 && r->len <= r->cap);
        *frame = r->buf;
        *frame_len = r->len;
        tb_frame_reader_uncharge(r); /* handed out: the caller's until the next call */
        r->hdr_have = 0;
        r->have = 0;
        r->len = 0;
    }
    return 0;
fail:
    *used = off;
    r->failed = true;
    return rc;
}

bool tb_frame_reader_pending(const tb_frame_reader *r) {
    return !r->failed && r->hdr_have > 0;
}

uint32_t tb_frame_reader_announced(const tb_frame_reader *r) {
    return tb_frame_reader_pending(r) && r->hdr_have == PROTO_FRAME_HEADER_BYTES ? r->len : 0;
}
