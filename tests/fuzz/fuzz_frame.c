/* Fuzzes the frame header and Message decoder: every byte string must be
 * either refused or decoded into something that packs again. */
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size >= PROTO_FRAME_HEADER_BYTES) {
        uint32_t len = 0;
        (void)proto_frame_header_decode(data, 0, &len);
    }
    Twinbft__Message *m = proto_message_unpack(data, size);
    if (m != NULL) {
        uint8_t *out = NULL;
        size_t out_len = 0;
        if (proto_message_pack(m, &out, &out_len) != 0) {
            abort(); /* what decodes must encode */
        }
        free(out);
        twinbft__message__free_unpacked(m, NULL);
    }
    return 0;
}

size_t fuzz_corpus(fuzz_input *out, size_t max) {
    if (max == 0) {
        return 0;
    }
    Twinbft__Request r = TWINBFT__REQUEST__INIT;
    uint8_t op[2] = {1, 2};
    r.client = "fz", r.number = 3, r.op = (ProtobufCBinaryData){2, op};
    Twinbft__Message m = TWINBFT__MESSAGE__INIT;
    m.kind_case = TWINBFT__MESSAGE__KIND_REQUEST, m.request = &r;
    if (proto_frame_pack(&m, &out[0].data, &out[0].len) != 0) {
        abort();
    }
    return 1;
}
