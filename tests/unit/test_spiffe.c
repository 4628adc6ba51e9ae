/*
 * Unit tests for pki/spiffe.c: SPIFFE IDs (SPIFFE-ID standard §2 as go-spiffe applies it), path
 * segments, DNS names and the allowed_dns_names glob. Tables of refused inputs with the reason
 * each must give, and accepted inputs that sit right next to them.
 */
#include <stdlib.h>

#include "check.h"
#include "common/common.h"
#include "pki/pki.h"

#define TD "example.org"

struct id_case {
    const char *id;
    const char *td;  /* NULL: any trust domain */
    const char *why; /* expected substring of the reason */
};

static void expect_refused(const char *id, const char *td, const char *want, int row)
{
    char why[128];
    memset(why, 'x', sizeof why);
    why[sizeof why - 1] = '\0';
    enum as_err r = as_spiffe_id_check(id, td, why, sizeof why);
    bool ok = r == AS_ERR_INVALID && strstr(why, want) != NULL;
    if (!ok) {
        fprintf(stderr, "row %d: \"%.80s\": got %s, \"%s\"; expected \"%s\"\n", row,
                id != NULL ? id : "(null)", as_strerror(r), why, want);
    }
    CHECK(ok);
}

static void expect_accepted(const char *id, const char *td, int row)
{
    char why[128] = "";
    enum as_err r = as_spiffe_id_check(id, td, why, sizeof why);
    if (r != AS_OK) {
        fprintf(stderr, "row %d: \"%.80s\" refused: %s\n", row, id, why);
    }
    CHECK_INT(r, AS_OK);
}

/* "spiffe://" + a trust domain of tdlen bytes (labels of 63 'a' joined by dots) + "/" + path
 * of 'p' so that the whole ID is idlen bytes (idlen 0: path "/x"). Caller frees. */
static char *make_id(size_t tdlen, size_t idlen)
{
    size_t cap = idlen > 0 ? idlen : 9 + tdlen + 2;
    char *s = malloc(cap + 1);
    size_t o = 0;
    memcpy(s, "spiffe://", 9);
    o = 9;
    for (size_t i = 0; i < tdlen; i++) {
        s[o++] = (i % 64 == 63) ? '.' : 'a';
    }
    s[o++] = '/';
    while (o < cap) {
        s[o++] = 'p';
    }
    if (idlen == 0) {
        s[o - 1] = 'x';
    }
    s[o] = '\0';
    return s;
}

static void test_refused_ids(void)
{
    static const struct id_case cases[] = {
        {"SPIFFE://example.org/a", NULL, "scheme is missing or invalid"},
        {"Spiffe://example.org/a", NULL, "scheme is missing or invalid"},
        {"spiffe:/x", NULL, "scheme is missing or invalid"},
        {"spiffe:example.org/a", NULL, "scheme is missing or invalid"},
        {"http://example.org/a", NULL, "scheme is missing or invalid"},
        {"https://example.org/a", NULL, "scheme is missing or invalid"},
        {"example.org/a", NULL, "scheme is missing or invalid"},
        {" spiffe://example.org/a", NULL, "scheme is missing or invalid"},
        {"", NULL, "cannot be empty"},
        {"spiffe://", NULL, "trust domain is missing"},
        {"spiffe:///a", NULL, "trust domain is missing"},
        {"spiffe://Example.org/a", NULL, "trust domain characters are limited to lowercase"},
        {"spiffe://EXAMPLE.ORG/a", NULL, "trust domain characters are limited to lowercase"},
        {"spiffe://exa mple.org/a", NULL, "trust domain characters are limited"},
        {"spiffe://ex\xc3\xa4mple.org/a", NULL, "trust domain characters are limited"},
        {"spiffe://[::1]/a", NULL, "trust domain characters are limited"},
        {"spiffe://example.org:8080/a", NULL, "port is not allowed"},
        {"spiffe://example.org:/a", NULL, "port is not allowed"},
        {"spiffe://user@example.org/a", NULL, "userinfo is not allowed"},
        {"spiffe://user:pw@example.org/a", NULL, "userinfo is not allowed"},
        {"spiffe://example%2Eorg/a", NULL, "percent-encoding is not allowed"},
        {"spiffe://example.org/a%2Fb", NULL, "percent-encoding is not allowed"},
        {"spiffe://example.org/%2e%2e", NULL, "percent-encoding is not allowed"},
        {"spiffe://example.org/a?x=1", NULL, "query is not allowed"},
        {"spiffe://example.org?x=1", NULL, "query is not allowed"},
        {"spiffe://example.org/a#frag", NULL, "fragment is not allowed"},
        {"spiffe://example.org#frag", NULL, "fragment is not allowed"},
        {"spiffe://example.org/a/", NULL, "path cannot have a trailing slash"},
        {"spiffe://example.org/", NULL, "path cannot have a trailing slash"},
        {"spiffe://example.org", NULL, "SPIFFE ID is the bare trust domain"},
        {"spiffe://example.org/a//b", NULL, "path cannot contain empty segments"},
        {"spiffe://example.org//a", NULL, "path cannot contain empty segments"},
        {"spiffe://example.org/./a", NULL, "path cannot contain dot segments"},
        {"spiffe://example.org/a/..", NULL, "path cannot contain dot segments"},
        {"spiffe://example.org/a/../b", NULL, "path cannot contain dot segments"},
        {"spiffe://example.org/.", NULL, "path cannot contain dot segments"},
        {"spiffe://example.org/a!b", NULL, "path segment characters are limited"},
        {"spiffe://example.org/a b", NULL, "path segment characters are limited"},
        {"spiffe://example.org/\xc3\xbc", NULL, "path segment characters are limited"},
        {"spiffe://example.org/a*", NULL, "path segment characters are limited"},
        {"spiffe://example.org/a:b", NULL, "path segment characters are limited"},
        {"spiffe://example.org/a\\b", NULL, "path segment characters are limited"},
        {"spiffe://example.org/a\tb", NULL, "path segment characters are limited"},
        {"spiffe://a..b/x", NULL, "trust domain cannot contain empty labels"},
        {"spiffe://.example.org/x", NULL, "trust domain cannot contain empty labels"},
        {"spiffe://example.org./x", NULL, "trust domain cannot contain empty labels"},
        {"spiffe://other.org/a", TD, "not a member of trust domain example.org"},
        {"spiffe://example.org.evil/a", TD, "not a member of trust domain example.org"},
        {"spiffe://example.or/a", TD, "not a member of trust domain example.org"},
        {"spiffe://sub.example.org/a", TD, "not a member of trust domain example.org"},
    };
    size_t n = sizeof cases / sizeof cases[0];
    CHECK(n >= 30);
    for (size_t i = 0; i < n; i++) {
        expect_refused(cases[i].id, cases[i].td, cases[i].why, (int)i);
    }

    /* Lengths: a 256-byte trust domain, a 2049-byte ID, and a 100 KiB one (bounded scan). */
    char *long_td = make_id(256, 0);
    expect_refused(long_td, NULL, "trust domain is too long", __LINE__);
    free(long_td);
    char *long_id = make_id(11, AS_SPIFFE_MAX_ID + 1);
    expect_refused(long_id, NULL, "SPIFFE ID is too long", __LINE__);
    free(long_id);
    char *huge = make_id(11, 100 * 1024);
    expect_refused(huge, NULL, "SPIFFE ID is too long", __LINE__);
    free(huge);

    /* NULL, and why may be NULL or short. */
    char why[128];
    CHECK_INT(as_spiffe_id_check(NULL, NULL, why, sizeof why), AS_ERR_INVALID);
    CHECK_INT(as_spiffe_id_check("spiffe://example.org", NULL, NULL, 0), AS_ERR_INVALID);
    char tiny[8];
    CHECK_INT(as_spiffe_id_check("spiffe://example.org", NULL, tiny, sizeof tiny), AS_ERR_INVALID);
    CHECK_INT((int)strlen(tiny), 7);
}

static void test_accepted_ids(void)
{
    static const struct id_case cases[] = {
        {"spiffe://example.org/a", NULL, NULL},
        {"spiffe://example.org/a", TD, NULL},
        {"spiffe://example.org/ns/prod/sa/web", TD, NULL},
        {"spiffe://example.org/Aa.-_09", NULL, NULL},
        {"spiffe://example.org/WEB/Server", NULL, NULL},
        {"spiffe://example.org/.a/..b/a.b/...", NULL, NULL},
        {"spiffe://a-b_c.0.example/x", NULL, NULL},
        {"spiffe://1.2.3.4/x", NULL, NULL},
        {"spiffe://x/y", NULL, NULL},
        {"spiffe://example.org/123/456", NULL, NULL},
        {"spiffe://example.org/_", NULL, NULL},
        {"spiffe://example.org/-", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_accepted(cases[i].id, cases[i].td, (int)i);
    }
    /* Exactly at the limits: a 255-byte trust domain and a 2048-byte ID. */
    char *td255 = make_id(AS_SPIFFE_MAX_TD, 0);
    expect_accepted(td255, NULL, __LINE__);
    /* Its own trust domain, given explicitly. */
    char td_only[AS_SPIFFE_MAX_TD + 1];
    memcpy(td_only, td255 + 9, AS_SPIFFE_MAX_TD);
    td_only[AS_SPIFFE_MAX_TD] = '\0';
    expect_accepted(td255, td_only, __LINE__);
    free(td255);
    char *id2048 = make_id(11, AS_SPIFFE_MAX_ID);
    CHECK_INT((int)strlen(id2048), AS_SPIFFE_MAX_ID);
    expect_accepted(id2048, NULL, __LINE__);
    free(id2048);
    /* why may be NULL on success too. */
    CHECK_INT(as_spiffe_id_check("spiffe://example.org/a", TD, NULL, 0), AS_OK);
}

static void test_segments(void)
{
    static const char *good[] = {"a", "A", "0", "a.b", "..a", "...", "_", "-", "web-1_X.y"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        CHECK(as_spiffe_segment_ok(good[i], strlen(good[i])));
    }
    static const char *bad[] = {"", ".", "..", "a/b", "a b", "a%2F", "\xc3\xbc", "a?", "a#", "*"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (as_spiffe_segment_ok(bad[i], strlen(bad[i]))) {
            fprintf(stderr, "segment \"%s\" accepted\n", bad[i]);
        }
        CHECK(!as_spiffe_segment_ok(bad[i], strlen(bad[i])));
    }
    /* The length is what counts, not a NUL: "ab" cut to 1 is "a"; "a\0b" is refused. */
    CHECK(as_spiffe_segment_ok("a/", 1));
    CHECK(!as_spiffe_segment_ok("a\0b", 3));
    CHECK(!as_spiffe_segment_ok(NULL, 0));
}

static void test_dns_names(void)
{
    char label63[64];
    char label64[65];
    memset(label63, 'a', 63);
    label63[63] = '\0';
    memset(label64, 'a', 64);
    label64[64] = '\0';
    /* 253 and 254 characters: labels of 63 with dots. */
    char n253[260];
    char n254[260];
    snprintf(n253, sizeof n253, "%s.%s.%s.%.61s", label63, label63, label63, label63);
    snprintf(n254, sizeof n254, "%s.%s.%s.%.62s", label63, label63, label63, label63);
    CHECK_INT((int)strlen(n253), 253);
    CHECK_INT((int)strlen(n254), 254);

    const char *good[] = {
        "a",      "localhost",     "example.org", "a-b.example.org",       "A.Example.ORG",
        "a--b.x", "0.example.org", "1a.2b",       "xn--bcher-kva.example", label63,
        n253};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (!as_dns_name_ok(good[i])) {
            fprintf(stderr, "DNS name \"%.40s\" refused\n", good[i]);
        }
        CHECK(as_dns_name_ok(good[i]));
    }
    const char *bad[] = {"",
                         "-a.org",
                         "a-.org",
                         "a..b",
                         ".a",
                         "a.",
                         "a_b.org",
                         "*.example.org",
                         "a b",
                         "a/b",
                         "\xc3\xbc.org",
                         "a.-b",
                         "example.org.",
                         "a,b",
                         "1.2.3.4:80",
                         label64,
                         n254,
                         "."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (as_dns_name_ok(bad[i])) {
            fprintf(stderr, "DNS name \"%.40s\" accepted\n", bad[i]);
        }
        CHECK(!as_dns_name_ok(bad[i]));
    }
    CHECK(!as_dns_name_ok(NULL));
}

struct glob_case {
    const char *glob;
    const char *name;
    bool match;
};

static void test_dns_globs(void)
{
    static const struct glob_case cases[] = {
        /* Positive twins first, each negative right after its positive. */
        {"*.example.org", "a.example.org", true},
        {"*.example.org", "a.b.example.org", false},
        {"*.example.org", "A.EXAMPLE.org", true},
        {"*.example.org", "example.org", false},
        {"example.org", "EXAMPLE.ORG", true},
        {"example.org", "a.example.org", false},
        {"web-*.example.org", "web-1.example.org", true},
        {"web-*.example.org", "db-1.example.org", false},
        {"*-db.example.org", "main-db.example.org", true},
        {"*-db.example.org", "main-db2.example.org", false},
        {"*", "localhost", true},
        {"*", "a.b", false},
        {"a.*.example.org", "a.b.example.org", true},
        {"a.*.example.org", "a.b.c.example.org", false},
        {"w*b.example.org", "wb.example.org", true},
        {"w*b.example.org", "w.b.example.org", false},
        {"*.*.example.org", "a.b.example.org", true},
        {"*.*.example.org", "a.example.org", false},
        {"a*b*c.x", "aXbYc.x", true},
        {"a*b*c.x", "aXbYd.x", false},
        {"a*b*c.x", "abc.x", true},
        {"a*b*c.x", "ab.x", false},
        {"a.example.org", "a.example.org", true},
        {"a.example.org", "a.example.org.evil", false},
        {"*.example.org", "x.example.org", true},
        {"*.example.org", ".example.org", false},
        {"*.example.org", "a.example.org.", false},
        {"*.example.org", "a..example.org", false},
        {"*.example.org", "a.example.com", false},
        {"*.example.org.", "a.example.org", false},
        {"", "", false},
        {"*", "", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool got = as_dns_glob_match(cases[i].glob, cases[i].name);
        if (got != cases[i].match) {
            fprintf(stderr, "glob row %zu: \"%s\" ~ \"%s\" gave %d\n", i, cases[i].glob,
                    cases[i].name, got);
        }
        CHECK(got == cases[i].match);
    }
    CHECK(!as_dns_glob_match(NULL, "a"));
    CHECK(!as_dns_glob_match("*", NULL));
    /* Many stars against a long label stays cheap and right. */
    char label[64];
    memset(label, 'a', 63);
    label[63] = '\0';
    CHECK(!as_dns_glob_match("*a*a*a*a*a*a*a*a*a*a*b", label));
    CHECK(as_dns_glob_match("*a*a*a*a*a*a*a*a*a*a*", label));
}

int main(void)
{
    test_refused_ids();
    test_accepted_ids();
    test_segments();
    test_dns_names();
    test_dns_globs();
    return check_done();
}
