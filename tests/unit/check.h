/*
 * check.h: a minimal unit-test harness. Each CHECK counts; the program prints
 * "N passed, N failed" at the end and exits non-zero on any failure.
 */
#ifndef AS_CHECK_H
#define AS_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int check_pass;
static int check_fail;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) {                                                                  \
            check_pass++;                                                            \
        } else {                                                                     \
            check_fail++;                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

#define CHECK_INT(a, b)                                                                   \
    do {                                                                                  \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                   \
        if (check_a_ == check_b_) {                                                       \
            check_pass++;                                                                 \
        } else {                                                                          \
            check_fail++;                                                                 \
            fprintf(stderr, "%s:%d: CHECK_INT failed: %s == %lld, expected %s == %lld\n", \
                    __FILE__, __LINE__, #a, check_a_, #b, check_b_);                      \
        }                                                                                 \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *check_a_ = (a), *check_b_ = (b);                                               \
        if (check_a_ != NULL && check_b_ != NULL && strcmp(check_a_, check_b_) == 0) {             \
            check_pass++;                                                                          \
        } else {                                                                                   \
            check_fail++;                                                                          \
            fprintf(stderr, "%s:%d: CHECK_STR failed: %s = \"%s\", expected \"%s\"\n", __FILE__,   \
                    __LINE__, #a, check_a_ ? check_a_ : "(null)", check_b_ ? check_b_ : "(null)"); \
        }                                                                                          \
    } while (0)

static inline int check_done(void)
{
    printf("%d passed, %d failed\n", check_pass, check_fail);
    return check_fail == 0 ? 0 : 1;
}

#endif
