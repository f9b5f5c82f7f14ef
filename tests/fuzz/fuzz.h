/* Fuzz targets: each defines LLVMFuzzerTestOneInput and a small corpus of
 * valid inputs. Built with clang's libFuzzer when TWINBFT_FUZZ=ON, and
 * always as a deterministic mutation smoke test (driver.c) in the unit label. */
#ifndef TB_FUZZ_H
#define TB_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Valid inputs to start mutating from. Entries are malloc'd; the driver frees them. */
typedef struct fuzz_input {
    uint8_t *data;
    size_t len;
} fuzz_input;
size_t fuzz_corpus(fuzz_input *out, size_t max);

#endif
