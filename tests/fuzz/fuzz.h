/*
 * fuzz.h: what the fuzz targets of tests/fuzz/ share.
 *
 * Each target is one file defining LLVMFuzzerTestOneInput. It is linked either with libFuzzer
 * (-Dfuzzing=true, clang) or with replay.c, which runs it over the seed corpus as an ordinary
 * test. A target must never crash, leak or trip a sanitizer on any input; a broken invariant is
 * a bug, and FUZZ_CHECK turns it into an abort() that both drivers report.
 */
#ifndef AS_FUZZ_H
#define AS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of the code under test: on failure, say which and abort (a fuzzer "crash"). */
#define FUZZ_CHECK(cond)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

/* The harness itself ran out of memory: not a finding, but nothing sensible is left to do. */
static inline void *fuzz_xmalloc(size_t n)
{
    void *p = malloc(n > 0 ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "fuzz: out of memory\n");
        abort();
    }
    return p;
}

/* A NUL-terminated copy of the input (cut at its first NUL, as any C string would be). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
    char *s = fuzz_xmalloc(size + 1);
    if (size > 0) {
        memcpy(s, data, size);
    }
    s[size] = '\0';
    return s;
}

#endif
