/*
 * fuzz_url_path: as_url_path_canonical (the path that is routed, authorized and logged) and
 * as_pct_decode under it.
 *
 * Invariants of a canonical path: no "//", "/./", "/../", no "." or ".." segment at either end,
 * no leading or trailing '/', no NUL, control character or backslash, and it fits the buffer;
 * canonicalizing "/v1/" + a canonical path without '%' gives it back unchanged; the answer does
 * not depend on the output buffer beyond "too small". as_pct_decode never writes past outlen,
 * never decodes a NUL, never grows its input, and leaves text without '%' as it was.
 */
#include <stdbool.h>

#include "common/common.h"
#include "fuzz.h"

/* authsvc/server.h: struct as_req's path buffer. */
#define SERVER_PATH_BUF 1024

static bool is_dot_segment(const char *seg, size_t n)
{
    return (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.');
}

static void check_canonical(const char *out, size_t outlen)
{
    size_t n = strlen(out);
    FUZZ_CHECK(n > 0 && n < outlen);
    FUZZ_CHECK(out[0] != '/' && out[n - 1] != '/');
    FUZZ_CHECK(strstr(out, "//") == NULL);
    FUZZ_CHECK(strstr(out, "/./") == NULL && strstr(out, "/../") == NULL);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        FUZZ_CHECK(c >= 0x20 && c != 0x7f && c != '\\');
    }
    /* Every segment, first and last included, is neither empty nor a dot segment. */
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || out[i] == '/') {
            FUZZ_CHECK(i > start);
            FUZZ_CHECK(!is_dot_segment(out + start, i - start));
            start = i + 1;
        }
    }
}

static void fuzz_canonical(const char *url, size_t tight)
{
    char out[SERVER_PATH_BUF];
    enum as_err r = as_url_path_canonical(url, out, sizeof out);
    FUZZ_CHECK(r == AS_OK || r == AS_ERR_INVALID || r == AS_ERR_NOT_FOUND);
    if (r != AS_OK) {
        return;
    }
    check_canonical(out, sizeof out);
    size_t n = strlen(out);

    /* Idempotent: the canonical path, routed again, is itself (when no '%' re-decodes). */
    if (strchr(out, '%') == NULL) {
        char again_url[SERVER_PATH_BUF + 8];
        char again[SERVER_PATH_BUF];
        snprintf(again_url, sizeof again_url, "/v1/%s", out);
        FUZZ_CHECK(as_url_path_canonical(again_url, again, sizeof again) == AS_OK);
        FUZZ_CHECK(strcmp(again, out) == 0);
    }

    /* An exactly sized heap buffer: ASan sees any write past it. Too small is INVALID. */
    char *small = fuzz_xmalloc(tight);
    r = as_url_path_canonical(url, small, tight);
    if (tight > n + 1) {
        /* Room for the path, its NUL and the separator the writer reserves. */
        FUZZ_CHECK(r == AS_OK && strcmp(small, out) == 0);
    } else {
        FUZZ_CHECK(r == AS_OK || r == AS_ERR_INVALID);
        if (r == AS_OK) {
            FUZZ_CHECK(strcmp(small, out) == 0);
        }
    }
    free(small);
}

static void fuzz_decode(const char *in, size_t n, size_t outlen)
{
    char *out = fuzz_xmalloc(outlen);
    size_t written = (size_t)-1;
    if (!as_pct_decode(in, n, out, outlen, &written)) {
        free(out);
        return;
    }
    FUZZ_CHECK(written < outlen && written <= n);
    FUZZ_CHECK(out[written] == '\0');
    /* An encoded NUL is refused; a raw one (callers pass C strings, so never) passes through. */
    if (memchr(in, '\0', n) == NULL) {
        FUZZ_CHECK(memchr(out, '\0', written) == NULL);
    }
    if (memchr(in, '%', n) == NULL) {
        FUZZ_CHECK(written == n && memcmp(out, in, n) == 0);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    as_log_set_level(AS_LOG_ERROR);
    /* The first byte sizes the tight buffers; the rest is the URL. */
    size_t tight = size > 0 ? (size_t)data[0] + 1 : 1;
    const uint8_t *rest = size > 0 ? data + 1 : data;
    size_t rest_len = size > 0 ? size - 1 : 0;

    char *url = fuzz_strndup(rest, rest_len);
    fuzz_canonical(url, tight);
    free(url);

    /* The decoder over the raw bytes (NULs included, no terminator), as a query value is. */
    char *raw = fuzz_xmalloc(rest_len);
    if (rest_len > 0) {
        memcpy(raw, rest, rest_len);
    }
    fuzz_decode(raw, rest_len, tight);
    fuzz_decode(raw, rest_len, rest_len + 1);
    free(raw);
    return 0;
}
