/* Unit tests for acl/policy.c: the three policy spellings, and Vault's matching and merging. */
#include <stdlib.h>

#include "acl/acl.h"
#include "check.h"

#define R AS_CAP_READ
#define L AS_CAP_LIST
#define C AS_CAP_CREATE
#define U AS_CAP_UPDATE
#define D AS_CAP_DELETE
#define S AS_CAP_SUDO
#define W (C | R | U | D | L)

/* A literal with embedded NULs and its length, for the parser's length argument. */
#define WITH_LEN(s) s, sizeof(s) - 1

static struct as_policy *parse_ok(const char *text)
{
    struct as_policy *p = NULL;
    char err[160] = "";
    enum as_err r = as_policy_parse(text, strlen(text), &p, err, sizeof err);
    if (r != AS_OK) {
        fprintf(stderr, "policy refused (%s): %s\n%s\n", as_strerror(r), err, text);
    }
    return p;
}

/* Builds the ACL of up to three policies, in the given or the reversed order. */
static struct as_acl *acl_of(const char *const texts[3], bool reversed)
{
    struct as_policy *pols[3] = {NULL, NULL, NULL};
    const struct as_policy *cpols[3];
    struct as_acl *acl = NULL;
    size_t n = 0;
    while (n < 3 && texts[n] != NULL) {
        n++;
    }
    for (size_t i = 0; i < n; i++) {
        pols[i] = parse_ok(texts[reversed ? n - 1 - i : i]);
        cpols[i] = pols[i];
        if (pols[i] == NULL) {
            goto out;
        }
    }
    if (as_acl_new(cpols, n, false, &acl) != AS_OK) {
        acl = NULL;
    }
out:
    for (size_t i = 0; i < n; i++) {
        as_policy_free(pols[i]);
    }
    return acl;
}

static void test_matching(void)
{
    static const struct {
        const char *pols[3];
        const char *path;
        uint32_t want;
    } rows[] = {
        /* Vault docs: exact beats glob, even when the glob denies ... */
        {{"path \"secret/*\" { capabilities = [\"deny\"] }\n"
          "path \"secret/foo\" { capabilities = [\"read\"] }"},
         "secret/foo",
         R},
        {{"path \"secret/*\" { capabilities = [\"deny\"] }\n"
          "path \"secret/foo\" { capabilities = [\"read\"] }"},
         "secret/bar",
         0},
        /* ... and an exact deny beats a glob that allows (docs: secret/super-secret). */
        {{"path \"secret/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", "
          "\"list\"] }\npath \"secret/super-secret\" { capabilities = [\"deny\"] }"},
         "secret/super-secret",
         0},
        {{"path \"secret/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", "
          "\"list\"] }\npath \"secret/super-secret\" { capabilities = [\"deny\"] }"},
         "secret/other",
         W},
        /* An exact rule with no capabilities still wins, and grants nothing. */
        {{"path \"secret/*\" { capabilities = [\"read\"] }\n"
          "path \"secret/foo\" { capabilities = [] }"},
         "secret/foo",
         0},
        /* Docs: "secret/foo" does not give secret/food or secret/foo/bar. */
        {{"path \"secret/foo\" { capabilities = [\"read\"] }"}, "secret/food", 0},
        {{"path \"secret/foo\" { capabilities = [\"read\"] }"}, "secret/foo/bar", 0},
        /* Docs: "secret/bar/" + '*' reaches every depth but not secret/bars/. */
        {{"path \"secret/bar/*\" { capabilities = [\"read\"] }"}, "secret/bar/zip/zap", R},
        {{"path \"secret/bar/*\" { capabilities = [\"read\"] }"}, "secret/bars/zip", 0},
        {{"path \"secret/bar/*\" { capabilities = [\"read\"] }"}, "secret/bar", 0},
        {{"path \"secret/bar/*\" { capabilities = [\"read\"] }"}, "secret/bar/", R},
        /* Docs: secret/zip-* is a prefix within a segment. */
        {{"path \"secret/zip-*\" { capabilities = [\"read\"] }"}, "secret/zip-zap/zong", R},
        {{"path \"secret/zip-*\" { capabilities = [\"read\"] }"}, "secret/zip/zap", 0},
        /* Docs: + is exactly one segment; the segment count must agree. */
        {{"path \"secret/+/teamb\" { capabilities = [\"read\"] }"}, "secret/foo/teamb", R},
        {{"path \"secret/+/teamb\" { capabilities = [\"read\"] }"}, "secret/foo/bar/teamb", 0},
        {{"path \"secret/+/teamb\" { capabilities = [\"read\"] }"}, "secret/teamb", 0},
        {{"path \"secret/+/teamb\" { capabilities = [\"read\"] }"}, "secret//teamb", 0},
        {{"path \"secret/+/+/teamb\" { capabilities = [\"read\"] }"}, "secret/foo/bar/teamb", R},
        {{"path \"secret/+\" { capabilities = [\"read\"] }"}, "secret/a/b", 0},
        {{"path \"+\" { capabilities = [\"read\"] }"}, "sys", R},
        {{"path \"+\" { capabilities = [\"read\"] }"}, "sys/x", 0},
        /* + vs *: same first wildcard, the one ending in '*' loses (rule 2). */
        {{"path \"secret/+/foo\" { capabilities = [\"read\"] }\n"
          "path \"secret/*\" { capabilities = [\"update\"] }"},
         "secret/a/foo",
         R},
        {{"path \"secret/+/foo\" { capabilities = [\"read\"] }\n"
          "path \"secret/*\" { capabilities = [\"update\"] }"},
         "secret/a/bar",
         U},
        {{"path \"foo/+\" { capabilities = [\"read\"] }\n"
          "path \"foo/*\" { capabilities = [\"update\"] }"},
         "foo/x",
         R},
        /* Rule 1: the later first wildcard wins (foo/a* over foo/+). */
        {{"path \"foo/+\" { capabilities = [\"update\"] }\n"
          "path \"foo/a*\" { capabilities = [\"read\"] }"},
         "foo/abc",
         R},
        {{"path \"foo/+/bar/baz\" { capabilities = [\"update\"] }\n"
          "path \"foo/bar/+/baz\" { capabilities = [\"read\"] }"},
         "foo/bar/bar/baz",
         R},
        {{"path \"+/kv/foo\" { capabilities = [\"read\"] }\n"
          "path \"secret/*\" { capabilities = [\"update\"] }"},
         "secret/kv/foo",
         U},
        /* Rule 1 among plain prefixes: the longest prefix wins. */
        {{"path \"secret/*\" { capabilities = [\"read\"] }\n"
          "path \"secret/foo*\" { capabilities = [\"deny\"] }"},
         "secret/foobar",
         0},
        /* Rule 2 with '+' on both sides: foo/+/bar over foo/+/ba*. */
        {{"path \"foo/+/ba*\" { capabilities = [\"update\"] }\n"
          "path \"foo/+/bar\" { capabilities = [\"read\"] }"},
         "foo/x/bar",
         R},
        /* Rule 3, the docs' example: "secret/+/+/foo/" + '*' loses to "secret/" + '*'. */
        {{"path \"secret/+/+/foo/*\" { capabilities = [\"update\"] }\n"
          "path \"secret/*\" { capabilities = [\"read\"] }"},
         "secret/a/b/foo/c",
         R},
        {{"path \"foo/+/+/*\" { capabilities = [\"update\"] }\n"
          "path \"foo/+/*\" { capabilities = [\"read\"] }"},
         "foo/a/b/c",
         R},
        /* Rule 4: the longer wins (foo/+/bar/ba* over foo/+/bar/b*). */
        {{"path \"foo/+/bar/b*\" { capabilities = [\"update\"] }\n"
          "path \"foo/+/bar/ba*\" { capabilities = [\"read\"] }"},
         "foo/x/bar/baz",
         R},
        /* Rule 5: everything else equal, the lexicographically larger wins ('a' > '+'). */
        {{"path \"+/+/b\" { capabilities = [\"update\"] }\n"
          "path \"+/a/+\" { capabilities = [\"read\"] }"},
         "x/a/b",
         R},
        /* Several '+' and a trailing glob. */
        {{"path \"secret/+/+/foo/*\" { capabilities = [\"read\"] }"}, "secret/a/b/foo/x/y", R},
        {{"path \"secret/+/+/foo/*\" { capabilities = [\"read\"] }"}, "secret/a/foo/x", 0},
        {{"path \"secret/+/foo*\" { capabilities = [\"read\"] }"}, "secret/a/foobar/baz", R},
        /* '*' in the middle and '+' inside a segment are literal, as in Vault. */
        {{"path \"a*/b\" { capabilities = [\"read\"] }"}, "a*/b", R},
        {{"path \"a*/b\" { capabilities = [\"read\"] }"}, "ab/b", 0},
        {{"path \"a+b/c\" { capabilities = [\"read\"] }"}, "a+b/c", R},
        {{"path \"a+b/c\" { capabilities = [\"read\"] }"}, "axb/c", 0},
        /* '*' alone matches everything, and still loses to an exact path. */
        {{"path \"*\" { capabilities = [\"read\"] }\npath \"x\" { capabilities = [\"list\"] }"},
         "anything/at/all",
         R},
        {{"path \"*\" { capabilities = [\"read\"] }\npath \"x\" { capabilities = [\"list\"] }"},
         "x",
         L},
        /* Same pattern in two policies: deny wins, whatever the order ... */
        {{"path \"secret/*\" { capabilities = [\"read\", \"sudo\"] }",
          "{\"path\": {\"secret/*\": {\"capabilities\": [\"deny\"]}}}"},
         "secret/x",
         0},
        /* ... otherwise the union; exact patterns merge the same way. */
        {{"path \"secret/*\" { capabilities = [\"read\"] }",
          "path \"secret/*\" { capabilities = [\"update\", \"list\"] }"},
         "secret/x",
         R | U | L},
        {{"path \"a/b\" { capabilities = [\"read\"] }",
          "path \"a/b\" { capabilities = [\"create\"] }",
          "path \"a/*\" { capabilities = [\"deny\"] }"},
         "a/b",
         R | C},
        /* A deny for one pattern does not leak into a different pattern. */
        {{"path \"secret/*\" { capabilities = [\"deny\"] }",
          "path \"secret/foo/*\" { capabilities = [\"read\"] }"},
         "secret/foo/x",
         R},
        /* Repeated in one policy: merged like copies from several. */
        {{"path \"k/*\" { capabilities = [\"read\"] }\npath \"k/*\" { capabilities = [\"list\"] }"},
         "k/1",
         R | L},
        /* Legacy shorthand and its mix with capabilities (docs: secret/foo read + create,sudo). */
        {{"path \"l/w\" { policy = \"write\" }"}, "l/w", W},
        {{"path \"l/s\" { policy = \"sudo\" }"}, "l/s", W | S},
        {{"path \"l/r\" { policy = \"read\" }"}, "l/r", R | L},
        {{"path \"l/*\" { policy = \"write\" }\npath \"l/d\" { policy = \"deny\" }"}, "l/d", 0},
        {{"path \"secret/foo\" { policy = \"read\"\n capabilities = [\"create\", \"sudo\"] }"},
         "secret/foo",
         C | R | L | S},
        {{"path \"m\" { policy = \"deny\"\n capabilities = [\"read\"] }"}, "m", 0},
        {{"path \"m\" { capabilities = [\"read\", \"deny\", \"list\"] }"}, "m", 0},
        /* A leading '/' is dropped from patterns and from request paths. */
        {{"path \"/secret/x\" { capabilities = [\"read\"] }"}, "secret/x", R},
        {{"path \"secret/x\" { capabilities = [\"read\"] }"}, "/secret/x", R},
        /* No match grants nothing. */
        {{"path \"secret/*\" { capabilities = [\"read\"] }"}, "other/x", 0},
        {{"path \"secret/*\" { capabilities = [\"read\"] }"}, "", 0},
        /* JSON, in both the object and the HCL-to-JSON array form. */
        {{"{\"path\": {\"svid/*\": {\"capabilities\": [\"update\"]}}}"}, "svid/x509", U},
        {{"{\"path\": [{\"a/+\": {\"capabilities\": [\"read\"]}}, "
          "{\"a/*\": {\"policy\": \"write\"}}]}"},
         "a/b",
         R},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        for (int rev = 0; rev < 2; rev++) {
            struct as_acl *acl = acl_of(rows[i].pols, rev != 0);
            CHECK(acl != NULL);
            uint32_t got = as_acl_caps(acl, rows[i].path);
            if (got != rows[i].want) {
                fprintf(stderr, "row %zu%s: path \"%s\": caps 0x%x, expected 0x%x\n", i,
                        rev ? " (reversed)" : "", rows[i].path, got, rows[i].want);
            }
            CHECK_INT(got, rows[i].want);
            as_acl_free(acl);
        }
    }
}

static void test_acl_edges(void)
{
    struct as_acl *acl = NULL;
    CHECK_INT(as_acl_new(NULL, 0, true, &acl), AS_OK);
    CHECK_INT(as_acl_caps(acl, "sys/policy/x"), AS_CAP_ALL);
    CHECK_INT(as_acl_caps(acl, ""), AS_CAP_ALL);
    CHECK((as_acl_caps(acl, "x") & AS_CAP_DENY) == 0);
    as_acl_free(acl);

    /* root ignores the policies it is given, deny included. */
    struct as_policy *deny = parse_ok("path \"*\" { capabilities = [\"deny\"] }");
    const struct as_policy *pols[2] = {deny, NULL};
    CHECK_INT(as_acl_new(pols, 1, true, &acl), AS_OK);
    CHECK_INT(as_acl_caps(acl, "a"), AS_CAP_ALL);
    as_acl_free(acl);
    /* A NULL entry is skipped; the ACL outlives its policies. */
    CHECK_INT(as_acl_new(pols, 2, false, &acl), AS_OK);
    as_policy_free(deny);
    CHECK_INT(as_acl_caps(acl, "a"), 0);
    as_acl_free(acl);

    CHECK_INT(as_acl_new(NULL, 0, false, &acl), AS_OK);
    CHECK_INT(as_acl_caps(acl, "a"), 0);
    as_acl_free(acl);
    CHECK_INT(as_acl_new(NULL, 1, false, &acl), AS_ERR_INVALID);
    CHECK_INT(as_acl_caps(NULL, "a"), 0);
    as_acl_free(NULL);
    as_policy_free(NULL);
}

/* Positive cases, each followed by negative twins. */
static void test_parse(void)
{
    static const char *ok[] = {
        "{\"path\": {\"secret/*\": {\"capabilities\": [\"read\", \"list\"]}}}",
        "{\"path\": [{\"a\": {\"capabilities\": [\"read\"]}}, {\"b\": {\"policy\": \"sudo\"}}]}",
        "{\"path\": {\"a\": {\"policy\": \"read\", \"capabilities\": [\"create\"]}}}",
        "{\"name\": \"x\", \"path\": {\"a\": {\"capabilities\": [], \"allowed_parameters\": "
        "{\"foo\": [], \"bar\": [\"zip\"]}, \"min_wrapping_ttl\": \"1s\", \"max_wrapping_ttl\": "
        "90, \"required_parameters\": [\"a\"], \"denied_parameters\": {}, \"comment\": \"c\"}}}",
        "  \n{\"path\": {\"\": {\"capabilities\": [\"read\"]}}}",
        "path \"secret/*\" { capabilities = [\"read\", \"list\"] }",
        "path \"secret/*\" {\n  capabilities = [\"read\", \"list\",]\n}\n",
        "path \"a\" { policy = \"write\" }",
        "path \"a\" { policy = \"read\", capabilities = [\"sudo\"] }",
        "# comment with \"quote\" and {brace\n// another } one\n/* block\n \" [ */"
        "path \"a\" { /* inline */ capabilities = [\"read\"] # trailing\n}",
        "name = \"x\"\npath \"a\" {\n capabilities = [\"read\"]\n allowed_parameters = {\n"
        "  \"foo\" = []\n  \"bar\" = [\"zip\", \"zap\"]\n }\n denied_parameters {\n  baz = []\n"
        " }\n required_parameters = [\"a\"]\n min_wrapping_ttl = \"1s\"\n"
        " max_wrapping_ttl = 3600\n comment = \"why\"\n}",
        "path \"se\\\"cret\\\\x\" { capabilities = [\"read\"] }",
        "path \"a\" { capabilities = [] }",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct as_policy *p = parse_ok(ok[i]);
        CHECK(p != NULL);
        as_policy_free(p);
    }

    static const struct {
        const char *text;
        size_t len; /* 0: strlen */
        enum as_err want;
        const char *reason; /* substring of the error, or NULL */
    } bad[] = {
        /* Duplicate JSON keys, at both levels. */
        {"{\"path\": {\"a\": {\"capabilities\": [\"read\"]}}, \"path\": {}}", 0, AS_ERR_INVALID,
         "duplicate"},
        {"{\"path\": {\"a\": {\"capabilities\": [\"read\"], \"capabilities\": [\"sudo\"]}}}", 0,
         AS_ERR_INVALID, "duplicate"},
        {"{\"path\": {\"a\": {}, \"a\": {}}}", 0, AS_ERR_INVALID, "duplicate"},
        {"path \"a\" { capabilities = [\"read\"]\ncapabilities = [\"sudo\"] }", 0, AS_ERR_INVALID,
         "duplicate"},
        /* Unknown capability names, JSON and HCL; "patch" has no bit in authsvc. */
        {"{\"path\": {\"a\": {\"capabilities\": [\"read\", \"bogus\"]}}}", 0, AS_ERR_INVALID,
         "invalid capability \"bogus\""},
        {"path \"a\" { capabilities = [\"root\"] }", 0, AS_ERR_INVALID,
         "invalid capability \"root\""},
        {"path \"a\" { capabilities = [\"deny\", \"patch\"] }", 0, AS_ERR_INVALID,
         "invalid capability \"patch\""},
        {"{\"path\": {\"a\": {\"capabilities\": [5]}}}", 0, AS_ERR_INVALID, "invalid capability"},
        {"{\"path\": {\"a\": {\"capabilities\": \"read\"}}}", 0, AS_ERR_INVALID, "list"},
        {"{\"path\": {\"a\": {\"capabilities\": [\"re\\u0000ad\"]}}}", 0, AS_ERR_INVALID,
         "invalid capability"},
        /* Non-object rules and non-string patterns. */
        {"{\"path\": {\"a\": 5}}", 0, AS_ERR_INVALID, "object"},
        {"{\"path\": {\"a\": [{\"capabilities\": [\"read\"]}]}}", 0, AS_ERR_INVALID, "object"},
        {"{\"path\": [\"x\"]}", 0, AS_ERR_INVALID, "object"},
        {"{\"path\": 5}", 0, AS_ERR_INVALID, "object"},
        {"{\"path\": \"a\"}", 0, AS_ERR_INVALID, "object"},
        {"path a { capabilities = [\"read\"] }", 0, AS_ERR_INVALID, "quoted path"},
        {"path 5 { capabilities = [\"read\"] }", 0, AS_ERR_INVALID, "quoted path"},
        {"{\"path\": {\"a\\u0000b\": {\"capabilities\": [\"read\"]}}}", 0, AS_ERR_INVALID, "NUL"},
        {"{\"path\": {\"a\": {\"capabilities\\u0000\": [\"sudo\"]}}}", 0, AS_ERR_INVALID, "NUL"},
        /* Legacy shorthand with an unknown level or a wrong type. */
        {"{\"path\": {\"a\": {\"policy\": \"admin\"}}}", 0, AS_ERR_INVALID, "invalid policy"},
        {"{\"path\": {\"a\": {\"policy\": [\"read\"]}}}", 0, AS_ERR_INVALID, "invalid policy"},
        {"path \"a\" { policy = \"root\" }", 0, AS_ERR_INVALID, "invalid policy \"root\""},
        {"path \"a\" { policy = read }", 0, AS_ERR_INVALID, "policy string"},
        /* Unknown keys, and Enterprise keys that would narrow a grant. */
        {"{\"path\": {\"a\": {\"capability\": [\"read\"]}}}", 0, AS_ERR_INVALID, "invalid key"},
        {"{\"paths\": {\"a\": {\"capabilities\": [\"read\"]}}}", 0, AS_ERR_INVALID, "invalid key"},
        {"path \"a\" { capabilities = [\"read\"] mfa_methods = [\"m\"] }", 0, AS_ERR_INVALID,
         "unsupported key"},
        {"{\"path\": {\"a\": {\"control_group\": {}}}}", 0, AS_ERR_INVALID, "unsupported key"},
        {"paths \"a\" { capabilities = [\"read\"] }", 0, AS_ERR_INVALID, "invalid key"},
        {"path \"a\" { capability = [\"read\"] }", 0, AS_ERR_INVALID, "invalid key"},
        /* '+*' is refused as in Vault. */
        {"path \"a/+*\" { capabilities = [\"read\"] }", 0, AS_ERR_INVALID, "+*"},
        /* Empty policies. */
        {"", 0, AS_ERR_INVALID, "no paths"},
        {"  \n\t", 0, AS_ERR_INVALID, "no paths"},
        {"{}", 0, AS_ERR_INVALID, "no paths"},
        {"{\"path\": {}}", 0, AS_ERR_INVALID, "no paths"},
        {"{\"path\": []}", 0, AS_ERR_INVALID, "no paths"},
        {"{\"name\": \"x\"}", 0, AS_ERR_INVALID, "no paths"},
        {"# only a comment\n/* and another */", 0, AS_ERR_INVALID, "no paths"},
        {"name = \"x\"", 0, AS_ERR_INVALID, "no paths"},
        /* Garbage. */
        {"garbage", 0, AS_ERR_INVALID, "invalid key"},
        {"{not json", 0, AS_ERR_INVALID, NULL},
        {"{\"path\": {\"a\": {\"capabilities\": [\"read\"]}}} trailing", 0, AS_ERR_INVALID, NULL},
        {"[1]", 0, AS_ERR_INVALID, "expected 'path'"},
        {"path", 0, AS_ERR_INVALID, "end of policy"},
        {"path \"a\"", 0, AS_ERR_INVALID, "end of policy"},
        {"path \"a\" capabilities", 0, AS_ERR_INVALID, "'{'"},
        {"path \"a\" { capabilities = \"read\" }", 0, AS_ERR_INVALID, "'['"},
        {"path \"a\" { capabilities = [\"read\" \"list\"] }", 0, AS_ERR_INVALID, "','"},
        {"path \"a\" { capabilities = [,] }", 0, AS_ERR_INVALID, "capability string"},
        {"path \"a\" { : }", 0, AS_ERR_INVALID, "unexpected character ':'"},
        {"path \"a\" { comment = }", 0, AS_ERR_INVALID, "expected a value"},
        {"path \"a\" { allowed_parameters = { \"x\" [] } }", 0, AS_ERR_INVALID, "'=' or '{'"},
        {"\x01\x02", 0, AS_ERR_INVALID, "0x01"},
        {"path \"a\\q\" { }", 0, AS_ERR_INVALID, "escape"},
        {"path \"a\x01\" { }", 0, AS_ERR_INVALID, "control character"},
        {WITH_LEN("path \"a\0b\" { capabilities = [\"read\"] }"), AS_ERR_INVALID,
         "control character"},
        {WITH_LEN("path \"a\" { capabilities = [\"read\"] }\0"), AS_ERR_INVALID, "0x00"},
        /* Unterminated strings, braces, lists and comments. */
        {"path \"a { capabilities = [\"read\"] }", 0, AS_ERR_INVALID, NULL},
        {"path \"a\n\" { capabilities = [\"read\"] }", 0, AS_ERR_INVALID, "unterminated string"},
        {"path \"a\" { capabilities = [\"read\"] ", 0, AS_ERR_INVALID, "missing '}'"},
        {"path \"a\" { capabilities = [\"read\"", 0, AS_ERR_INVALID, NULL},
        {"path \"a\" { comment = [\"x\", ", 0, AS_ERR_INVALID, "end of policy"},
        {"path \"a\" { capabilities = [\"read\"] } /* unterminated", 0, AS_ERR_INVALID,
         "unterminated comment"},
        {"path \"a\" { capabilities = [\"read\"] }\n/", 0, AS_ERR_INVALID, "'/'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct as_policy *p = NULL;
        char err[160] = "";
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].text);
        enum as_err r = as_policy_parse(bad[i].text, len, &p, err, sizeof err);
        if (r != bad[i].want || (bad[i].reason != NULL && strstr(err, bad[i].reason) == NULL)) {
            fprintf(stderr, "bad[%zu]: got %s \"%s\", expected %s \"%s\"\n", i, as_strerror(r), err,
                    as_strerror(bad[i].want), bad[i].reason ? bad[i].reason : "");
        }
        CHECK_INT(r, bad[i].want);
        CHECK(bad[i].reason == NULL || strstr(err, bad[i].reason) != NULL);
        CHECK(p == NULL);
        CHECK(err[0] != '\0');
        /* err may be NULL. */
        CHECK_INT(as_policy_parse(bad[i].text, len, &p, NULL, 0), bad[i].want);
    }

    /* NULL text with length 0 is an empty policy; a missing out-parameter is refused. */
    struct as_policy *none = NULL;
    CHECK_INT(as_policy_parse(NULL, 0, &none, NULL, 0), AS_ERR_INVALID);
    CHECK_INT(as_policy_parse(NULL, 5, &none, NULL, 0), AS_ERR_INVALID);
    CHECK_INT(as_policy_parse("path \"a\" {}", 12, NULL, NULL, 0), AS_ERR_INVALID);
    CHECK(none == NULL);

    /* An HCL escape decodes into the pattern. */
    struct as_policy *p = parse_ok("path \"se\\\"cret\" { capabilities = [\"read\"] }");
    const struct as_policy *cp = p;
    struct as_acl *acl = NULL;
    CHECK_INT(as_acl_new(&cp, 1, false, &acl), AS_OK);
    CHECK_INT(as_acl_caps(acl, "se\"cret"), R);
    as_acl_free(acl);
    as_policy_free(p);
}

/* Size and count caps: exactly at the limit is fine, one past it is AS_ERR_TOO_LARGE. */
static void test_limits(void)
{
    const char *rule = "path \"a\" { capabilities = [\"read\"] }";
    size_t n = AS_MAX_POLICY_BYTES + 1;
    char *big = malloc(n + 1);
    CHECK(big != NULL);
    if (big == NULL) {
        return;
    }
    memset(big, ' ', n);
    memcpy(big, rule, strlen(rule));
    big[n] = '\0';
    struct as_policy *p = NULL;
    char err[160] = "";
    CHECK_INT(as_policy_parse(big, n, &p, err, sizeof err), AS_ERR_TOO_LARGE);
    CHECK(p == NULL);
    CHECK(strstr(err, "larger") != NULL);
    CHECK_INT(as_policy_parse(big, n - 1, &p, err, sizeof err), AS_OK);
    as_policy_free(p);
    p = NULL;
    big[0] = '{';
    CHECK_INT(as_policy_parse(big, n, &p, err, sizeof err), AS_ERR_TOO_LARGE);
    free(big);

    /* AS_MAX_POLICY_PATHS rules, then one more. */
    struct as_buf b;
    as_buf_init(&b, 2 * AS_MAX_POLICY_BYTES);
    for (int i = 0; i < AS_MAX_POLICY_PATHS; i++) {
        CHECK_INT(as_buf_printf(&b, "path \"p/%d/+\" {policy=\"read\"}\n", i), AS_OK);
    }
    CHECK(b.len <= AS_MAX_POLICY_BYTES);
    CHECK_INT(as_policy_parse(b.data, b.len, &p, err, sizeof err), AS_OK);
    const struct as_policy *cp = p;
    struct as_acl *acl = NULL;
    CHECK_INT(as_acl_new(&cp, 1, false, &acl), AS_OK);
    CHECK_INT(as_acl_caps(acl, "p/1023/x"), R | L);
    CHECK_INT(as_acl_caps(acl, "p/1024/x"), 0);
    as_acl_free(acl);
    as_policy_free(p);
    p = NULL;
    CHECK_INT(as_buf_printf(&b, "path \"q\" {policy=\"read\"}\n"), AS_OK);
    CHECK_INT(as_policy_parse(b.data, b.len, &p, err, sizeof err), AS_ERR_TOO_LARGE);
    CHECK(strstr(err, "paths") != NULL);
    CHECK(p == NULL);
    as_buf_free(&b, false);

    /* Deep nesting in an ignored HCL value is bounded. */
    as_buf_init(&b, AS_MAX_POLICY_BYTES);
    CHECK_INT(as_buf_printf(&b, "path \"a\" { comment = "), AS_OK);
    for (int i = 0; i < 100; i++) {
        CHECK_INT(as_buf_append(&b, "[", 1), AS_OK);
    }
    CHECK_INT(as_policy_parse(b.data, b.len, &p, err, sizeof err), AS_ERR_INVALID);
    CHECK(strstr(err, "nesting") != NULL);
    as_buf_free(&b, false);
}

static void test_caps_and_names(void)
{
    static const struct {
        const char *name;
        uint32_t bit;
    } caps[] = {
        {"create", AS_CAP_CREATE}, {"read", AS_CAP_READ}, {"update", AS_CAP_UPDATE},
        {"delete", AS_CAP_DELETE}, {"list", AS_CAP_LIST}, {"sudo", AS_CAP_SUDO},
        {"deny", AS_CAP_DENY},
    };
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        uint32_t bit = 0;
        CHECK_INT(as_cap_parse(caps[i].name, &bit), AS_OK);
        CHECK_INT(bit, caps[i].bit);
    }
    uint32_t bit = 0;
    CHECK_INT(as_cap_parse("Read", &bit), AS_ERR_INVALID);
    CHECK_INT(as_cap_parse("patch", &bit), AS_ERR_INVALID);
    CHECK_INT(as_cap_parse("", &bit), AS_ERR_INVALID);
    CHECK_INT(as_cap_parse(NULL, &bit), AS_ERR_INVALID);

    json_t *arr = json_array();
    as_caps_to_json(AS_CAP_ALL | AS_CAP_DENY, arr);
    char *s = json_dumps(arr, JSON_COMPACT);
    CHECK_STR(s, "[\"create\",\"read\",\"update\",\"delete\",\"list\",\"sudo\",\"deny\"]");
    free(s);
    json_array_clear(arr);
    as_caps_to_json(AS_CAP_LIST | AS_CAP_READ | AS_CAP_SUDO, arr);
    s = json_dumps(arr, JSON_COMPACT);
    CHECK_STR(s, "[\"read\",\"list\",\"sudo\"]");
    free(s);
    json_array_clear(arr);
    as_caps_to_json(0, arr);
    CHECK_INT(json_array_size(arr), 0);
    json_decref(arr);

    char long_name[130];
    memset(long_name, 'a', sizeof long_name);
    long_name[128] = '\0';
    CHECK(as_policy_name_ok(long_name));
    long_name[128] = 'a';
    long_name[129] = '\0';
    CHECK(!as_policy_name_ok(long_name));
    static const char *good[] = {"default", "root", "a", "A.b-c_d@e", "0"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        CHECK(as_policy_name_ok(good[i]));
    }
    static const char *badn[] = {"", "a b", "a/b", "a*", "a+b", "caf\xc3\xa9", "a\n", "a:b"};
    for (size_t i = 0; i < sizeof badn / sizeof badn[0]; i++) {
        CHECK(!as_policy_name_ok(badn[i]));
    }
    CHECK(!as_policy_name_ok(NULL));
}

int main(void)
{
    test_matching();
    test_acl_edges();
    test_parse();
    test_limits();
    test_caps_and_names();
    return check_done();
}
