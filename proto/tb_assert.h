/* TB_ASSERT: checks our own invariants, on in every build (unlike assert()).
 * A broken invariant means our state can no longer be trusted, so the
 * process stops rather than continuing with corrupt state. Bad input from
 * the network is never asserted on: it is an error code. Header-only so
 * that any layer can use it without a link dependency. */
#ifndef TB_ASSERT_H
#define TB_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

#define TB_ASSERT(expr)                                                                            \
    ((expr)                                                                                        \
         ? (void)0                                                                                 \
         : (fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #expr), abort()))

#endif
