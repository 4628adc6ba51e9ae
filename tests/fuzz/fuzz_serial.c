/*
 * fuzz_serial: as_serial_normalize, which turns the serial a caller types (revocation, lookup)
 * into the one spelling the store keys records by.
 *
 * Invariants: the output is 1..20 lowercase hex byte groups joined by ':', with no leading zero
 * byte unless the serial is zero; normalizing it again gives it back; it is the same integer as
 * the input's hex digits (checked against OpenSSL's BN_hex2bn); an output buffer under 64 bytes
 * is refused without being written past.
 */
#include <ctype.h>
#include <stdbool.h>

#include <openssl/bn.h>

#include "common/common.h"
#include "fuzz.h"
#include "pki/pki.h"

#define OUT_LEN 64

static void check_shape(const char *out)
{
    size_t n = strlen(out);
    FUZZ_CHECK(n >= 2 && n <= 59 && (n + 1) % 3 == 0);
    for (size_t i = 0; i < n; i++) {
        if (i % 3 == 2) {
            FUZZ_CHECK(out[i] == ':');
        } else {
            FUZZ_CHECK(isdigit((unsigned char)out[i]) || (out[i] >= 'a' && out[i] <= 'f'));
        }
    }
    FUZZ_CHECK(n == 2 || !(out[0] == '0' && out[1] == '0'));
}

/* The hex digits of in with its separators dropped, as one integer. */
static BIGNUM *value_of(const char *in)
{
    size_t n = strlen(in);
    char *digits = fuzz_xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (isxdigit((unsigned char)in[i])) {
            digits[k++] = in[i];
        }
    }
    digits[k] = '\0';
    BIGNUM *bn = NULL;
    FUZZ_CHECK(k > 0 && BN_hex2bn(&bn, digits) == (int)k);
    free(digits);
    return bn;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    as_log_set_level(AS_LOG_ERROR);
    char *in = fuzz_strndup(data, size);
    char *out = fuzz_xmalloc(OUT_LEN);
    enum as_err r = as_serial_normalize(in, out, OUT_LEN);
    FUZZ_CHECK(r == AS_OK || r == AS_ERR_INVALID);

    /* Too small a buffer is refused, whatever the input. */
    char *small = fuzz_xmalloc(OUT_LEN - 1);
    FUZZ_CHECK(as_serial_normalize(in, small, OUT_LEN - 1) == AS_ERR_INVALID);
    free(small);

    if (r == AS_OK) {
        check_shape(out);
        char again[OUT_LEN];
        FUZZ_CHECK(as_serial_normalize(out, again, sizeof again) == AS_OK);
        FUZZ_CHECK(strcmp(again, out) == 0);
        BIGNUM *a = value_of(in);
        BIGNUM *b = value_of(out);
        FUZZ_CHECK(BN_cmp(a, b) == 0);
        BN_free(a);
        BN_free(b);
    }
    free(out);
    free(in);
    return 0;
}
