/* Deterministic mutation driver for builds without libFuzzer: starts from
 * the target's corpus and applies seeded bit flips, byte changes,
 * truncations, extensions and splices, so every decoder sees malformed
 * input on every CI run. Usage: fuzz_X [iterations] [seed], or
 * fuzz_X --corpus DIR to write the seed corpus for a libFuzzer run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"

enum { CORPUS_MAX = 64, INPUT_MAX = 1 << 16 };

static uint64_t rng_state;

static uint64_t rnd(void) {
    /* splitmix64: tiny, seedable, good enough to pick mutations */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t mutate(uint8_t *buf, size_t len, const fuzz_input *corpus, size_t n) {
    int rounds = 1 + (int)(rnd() % 4);
    for (int r = 0; r < rounds; r++) {
        switch (rnd() % 6) {
        case 0: /* flip a bit */
            if (len) {
                buf[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
            }
            break;
        case 1: /* set a byte to an interesting value */
            if (len) {
                static const uint8_t v[] = {0, 1, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x22};
                buf[rnd() % len] = v[rnd() % sizeof v];
            }
            break;
        case 2: /* truncate */
            if (len) {
                len = rnd() % len;
            }
            break;
        case 3: /* extend with random bytes */
            for (size_t k = rnd() % 16; k > 0 && len < INPUT_MAX; k--) {
                buf[len++] = (uint8_t)rnd();
            }
            break;
        case 4: { /* splice in part of another input */
            const fuzz_input *o = &corpus[rnd() % n];
            if (o->len && len) {
                size_t at = rnd() % len, from = rnd() % o->len;
                size_t k = o->len - from;
                if (at + k > INPUT_MAX) {
                    k = INPUT_MAX - at;
                }
                memcpy(buf + at, o->data + from, k);
                if (at + k > len) {
                    len = at + k;
                }
            }
            break;
        }
        default: /* duplicate a range */
            if (len > 1 && len < INPUT_MAX / 2) {
                size_t from = rnd() % len, k = rnd() % (len - from);
                memmove(buf + from + k, buf + from, len - from);
                len += k;
            }
            break;
        }
    }
    return len;
}

static int write_corpus(const char *dir) {
    fuzz_input corpus[CORPUS_MAX];
    size_t n = fuzz_corpus(corpus, CORPUS_MAX);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/seed-%zu", dir, i);
        FILE *f = fopen(path, "wb");
        if (f == NULL || fwrite(corpus[i].data, 1, corpus[i].len, f) != corpus[i].len) {
            fprintf(stderr, "fuzz driver: cannot write %s\n", path);
            rc = 1;
        }
        if (f != NULL) {
            fclose(f);
        }
        free(corpus[i].data);
    }
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--corpus") == 0) {
        return write_corpus(argv[2]);
    }
    long iterations = argc > 1 ? atol(argv[1]) : 20000;
    rng_state = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
    fuzz_input corpus[CORPUS_MAX];
    size_t n = fuzz_corpus(corpus, CORPUS_MAX);
    if (n == 0) {
        fprintf(stderr, "fuzz driver: empty corpus\n");
        return 1;
    }
    uint8_t *buf = malloc(INPUT_MAX);
    if (buf == NULL) {
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        LLVMFuzzerTestOneInput(corpus[i].data, corpus[i].len);
    }
    for (long it = 0; it < iterations; it++) {
        const fuzz_input *base = &corpus[rnd() % n];
        size_t len = base->len < INPUT_MAX ? base->len : INPUT_MAX;
        memcpy(buf, base->data, len);
        len = mutate(buf, len, corpus, n);
        LLVMFuzzerTestOneInput(buf, len);
    }
    for (size_t i = 0; i < n; i++) {
        free(corpus[i].data);
    }
    free(buf);
    printf("fuzz driver: %zu corpus inputs, %ld mutations, no crash\n", n, iterations);
    return 0;
}
