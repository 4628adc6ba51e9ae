/*
 * fuzz_spiffe_id: as_spiffe_id_check, as_spiffe_segment_ok, as_dns_name_ok and
 * as_dns_glob_match. The input is split at its first NUL: an ID (or glob) before it, a trust
 * domain (or name) after it.
 *
 * Invariants: an ID accepted for a trust domain is accepted without one; an accepted ID starts
 * with "spiffe://", belongs to the trust domain it names and to no shorter or longer one, has no
 * empty, "." or ".." segment, no trailing '/', nothing of the URI syntax that SPIFFE forbids and
 * at most 2048 bytes; a refusal says why. A glob without '*' matches exactly the names equal to
 * it ignoring case; a match never depends on the case of the name, never lets '*' cross a dot,
 * and never matches a name with an empty label; every valid DNS name matches itself.
 */
#include <ctype.h>
#include <stdbool.h>
#include <strings.h>

#include "common/common.h"
#include "fuzz.h"
#include "pki/pki.h"

#define TD "example.org"
#define SCHEME "spiffe://"
#define SCHEME_LEN (sizeof SCHEME - 1)

static size_t count_char(const char *s, char c)
{
    size_t n = 0;
    for (; *s != '\0'; s++) {
        n += *s == c;
    }
    return n;
}

static bool has_empty_label(const char *s)
{
    size_t n = strlen(s);
    return n == 0 || s[0] == '.' || s[n - 1] == '.' || strstr(s, "..") != NULL;
}

static void check_id(const char *id, const char *td)
{
    char why[128];
    char why2[128];
    why[0] = '\0';
    enum as_err any = as_spiffe_id_check(id, NULL, why, sizeof why);
    FUZZ_CHECK(any == AS_OK || any == AS_ERR_INVALID);
    FUZZ_CHECK(any == AS_OK || why[0] != '\0');
    FUZZ_CHECK(as_spiffe_id_check(id, NULL, NULL, 0) == any);

    why2[0] = '\0';
    enum as_err in_td = as_spiffe_id_check(id, td, why2, sizeof why2);
    FUZZ_CHECK(in_td == AS_OK || in_td == AS_ERR_INVALID);
    FUZZ_CHECK(in_td == AS_OK || why2[0] != '\0');
    FUZZ_CHECK(in_td != AS_OK || any == AS_OK);
    enum as_err in_ex = as_spiffe_id_check(id, TD, NULL, 0);
    FUZZ_CHECK(in_ex != AS_OK || any == AS_OK);
    if (any != AS_OK) {
        return;
    }

    size_t len = strlen(id);
    FUZZ_CHECK(len <= AS_SPIFFE_MAX_ID && len > SCHEME_LEN);
    FUZZ_CHECK(memcmp(id, SCHEME, SCHEME_LEN) == 0);
    const char *authority = id + SCHEME_LEN;
    const char *path = strchr(authority, '/');
    FUZZ_CHECK(path != NULL && path > authority);
    size_t alen = (size_t)(path - authority);
    FUZZ_CHECK(alen <= AS_SPIFFE_MAX_TD);
    FUZZ_CHECK(strpbrk(id + SCHEME_LEN, "%?#@:\\ ") == NULL);
    FUZZ_CHECK(strstr(path, "//") == NULL && id[len - 1] != '/');
    FUZZ_CHECK(strstr(path, "/./") == NULL && strstr(path, "/../") == NULL);
    /* Each segment passes the segment check on its own. */
    const char *seg = path + 1;
    for (;;) {
        const char *end = strchr(seg, '/');
        size_t slen = end != NULL ? (size_t)(end - seg) : strlen(seg);
        FUZZ_CHECK(as_spiffe_segment_ok(seg, slen));
        if (end == NULL) {
            break;
        }
        seg = end + 1;
    }

    /* Member of the trust domain it names, and of no prefix or extension of it. */
    char own[AS_SPIFFE_MAX_TD + 2];
    memcpy(own, authority, alen);
    own[alen] = '\0';
    FUZZ_CHECK(as_spiffe_id_check(id, own, NULL, 0) == AS_OK);
    FUZZ_CHECK((in_td == AS_OK) == (strcmp(td, own) == 0));
    FUZZ_CHECK((in_ex == AS_OK) == (strcmp(TD, own) == 0));
    own[alen - 1] = '\0';
    FUZZ_CHECK(as_spiffe_id_check(id, own, NULL, 0) != AS_OK);
    own[alen - 1] = authority[alen - 1];
    own[alen] = 'x';
    own[alen + 1] = '\0';
    FUZZ_CHECK(as_spiffe_id_check(id, own, NULL, 0) != AS_OK);
}

static void check_glob(const char *glob, const char *name)
{
    bool m = as_dns_glob_match(glob, name);
    if (m) {
        FUZZ_CHECK(!has_empty_label(name) && !has_empty_label(glob));
        FUZZ_CHECK(count_char(glob, '.') == count_char(name, '.'));
        FUZZ_CHECK(strlen(name) <= 253 && strlen(glob) <= 253);
    }
    if (strchr(glob, '*') == NULL) {
        FUZZ_CHECK(m ==
                   (strcasecmp(glob, name) == 0 && !has_empty_label(name) && strlen(name) <= 253));
    }
    /* Case of the name does not matter. */
    size_t n = strlen(name);
    char *flipped = fuzz_xmalloc(n + 1);
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)name[i];
        flipped[i] = (char)(islower(c) ? toupper(c) : tolower(c));
    }
    FUZZ_CHECK(as_dns_glob_match(glob, flipped) == m);
    free(flipped);
}

static void check_dns_name(const char *name)
{
    if (!as_dns_name_ok(name)) {
        return;
    }
    size_t n = strlen(name);
    FUZZ_CHECK(n > 0 && n <= 253 && !has_empty_label(name));
    FUZZ_CHECK(strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") ==
               n);
    FUZZ_CHECK(as_dns_glob_match(name, name));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    as_log_set_level(AS_LOG_ERROR);
    const uint8_t *nul = memchr(data, '\0', size);
    size_t alen = nul != NULL ? (size_t)(nul - data) : size;
    char *a = fuzz_strndup(data, alen);
    char *b = nul != NULL ? fuzz_strndup(nul + 1, size - alen - 1) : fuzz_strndup(data, 0);

    check_id(a, b);
    /* The segment check over raw bytes, with no terminator to lean on. */
    char *raw = fuzz_xmalloc(alen);
    memcpy(raw, data, alen);
    (void)as_spiffe_segment_ok(raw, alen);
    free(raw);

    check_dns_name(a);
    check_dns_name(b);
    check_glob(a, b);
    check_glob(b, a);

    free(a);
    free(b);
    return 0;
}
