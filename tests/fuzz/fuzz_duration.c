/*
 * fuzz_duration: as_duration_parse on the input as a C string (Go durations, bare seconds,
 * Vault's "d").
 *
 * Invariants: a result is never negative and never above the 1e15 s cap; a bare number of up to
 * 15 digits is exactly its decimal value; what as_duration_format prints parses back to the same
 * number of seconds (Vault echoes TTLs in that form and clients send them back).
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdbool.h>

#include "common/common.h"
#include "fuzz.h"

#define DURATION_CAP 1000000000000000LL /* the parser's 1e15 s bound */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_strndup(data, size);
    int64_t secs = -1;

    as_log_set_level(AS_LOG_ERROR);
    enum as_err r = as_duration_parse(s, &secs);
    FUZZ_CHECK(r == AS_OK || r == AS_ERR_INVALID);
    if (r != AS_OK) {
        FUZZ_CHECK(secs == -1);
        free(s);
        return 0;
    }
    FUZZ_CHECK(secs >= 0 && secs <= DURATION_CAP);

    size_t len = strlen(s);
    bool digits = len > 0;
    for (size_t i = 0; i < len; i++) {
        digits = digits && isdigit((unsigned char)s[i]);
    }
    if (digits) {
        int64_t v = 0;
        for (size_t i = 0; i < len; i++) {
            v = v * 10 + (s[i] - '0');
        }
        FUZZ_CHECK(secs == v);
    }

    char printed[32];
    int64_t back = -1;
    as_duration_format(secs, printed, sizeof printed);
    FUZZ_CHECK(as_duration_parse(printed, &back) == AS_OK);
    if (back != secs) {
        fprintf(stderr, "\"%s\" -> %" PRId64 " -> \"%s\" -> %" PRId64 "\n", s, secs, printed, back);
    }
    FUZZ_CHECK(back == secs);

    free(s);
    return 0;
}
