/* Buffers that end right before an unreadable page, for tests that prove a
 * decoder reads nothing past (or, for refused lengths, nothing of) its input.
 * The sanitizers cannot show that on their own: the decoders run inside
 * libprotobuf-c, which is not instrumented. A read past the end faults. */
#ifndef TESTS_GUARD_PAGE_H
#define TESTS_GUARD_PAGE_H

#include <check.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static inline size_t guard_span(size_t len, size_t *page) {
    *page = (size_t)sysconf(_SC_PAGESIZE);
    return (len + *page - 1) / *page * *page + *page;
}

/* A copy of data[0..len) followed by an unreadable page. */
static inline uint8_t *guard_copy(const void *data, size_t len) {
    size_t page = 0;
    size_t span = guard_span(len, &page);
    /* /dev/zero rather than MAP_ANONYMOUS, which POSIX 2008 lacks. */
    int fd = open("/dev/zero", O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint8_t *base = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    ck_assert(base != MAP_FAILED);
    ck_assert_int_eq(mprotect(base + span - page, page, PROT_NONE), 0);
    uint8_t *p = base + span - page - len;
    if (len > 0) {
        memcpy(p, data, len);
    }
    return p;
}

static inline void guard_free(uint8_t *p, size_t len) {
    size_t page = 0;
    size_t span = guard_span(len, &page);
    ck_assert_int_eq(munmap(p + len + page - span, span), 0);
}

#endif
