/*
 * Unit tests for pki/template.c: spiffe_id_template (SPEC §5). A check-time table of templates
 * a role write accepts or refuses, and an expansion table where claims, role names and
 * certificate fields try to give the ID another shape. Each accepted row sits next to a refused
 * twin that differs in one thing.
 */
#include <stdlib.h>

#include "check.h"
#include "common/common.h"
#include "pki/pki.h"

#define TD "example.org"
#define SPEC_EXAMPLE \
    "spiffe://{{trust_domain}}/ns/{{claim:/kubernetes.io/namespace}}/sa/{{claim:sub}}"

/* The caps of pki/template.c, restated: the tests pin them. */
#define MAX_BYTES 1024
#define MAX_PLACEHOLDERS 16

struct check_case {
    const char *tmpl;
    bool jwt;
    const char *why; /* NULL: accepted; else an expected substring of the reason */
};

static void run_check(const char *tmpl, bool jwt, const char *want, int row)
{
    char why[512];
    memset(why, 'x', sizeof why);
    why[sizeof why - 1] = '\0';
    enum as_err r = as_spiffe_template_check(tmpl, jwt, why, sizeof why);
    bool ok = want == NULL ? r == AS_OK : r == AS_ERR_INVALID && strstr(why, want) != NULL;
    if (!ok) {
        fprintf(stderr, "check row %d: \"%.100s\" jwt=%d: got %s, \"%s\"; expected %s \"%s\"\n",
                row, tmpl != NULL ? tmpl : "(null)", jwt, as_strerror(r), r == AS_OK ? "" : why,
                want == NULL ? "ok" : "refused,", want ? want : "");
    }
    CHECK(ok);
}

static void test_check_table(void)
{
    static const struct check_case cases[] = {
        /* The SPEC example, in a jwt role; a cert role has no claims. */
        {SPEC_EXAMPLE, true, NULL},
        {SPEC_EXAMPLE, false,
         "claim \"/kubernetes.io/namespace\" at offset 29 is only allowed in a role of the jwt "
         "auth method"},
        /* {{role}} in either method; it takes no argument. */
        {"spiffe://{{trust_domain}}/role/{{role}}", false, NULL},
        {"spiffe://{{trust_domain}}/role/{{role:x}}", false, "takes no argument"},
        {"spiffe://{{trust_domain}}/role/{{role}}", true, NULL},
        {"spiffe://{{trust_domain}}/role/{{trust_domain}}", true,
         "{{trust_domain}} at offset 31 is only allowed as the authority"},
        /* {{cert:cn}} only in a cert role; {{claim:x}} only in a jwt role. */
        {"spiffe://{{trust_domain}}/host/{{cert:cn}}", false, NULL},
        {"spiffe://{{trust_domain}}/host/{{cert:cn}}", true,
         "{{cert:cn}} at offset 31 is only allowed in a role of the cert auth method"},
        {"spiffe://{{trust_domain}}/x/{{claim:x}}", true, NULL},
        {"spiffe://{{trust_domain}}/x/{{claim:x}}", false, "only allowed in a role of the jwt"},
        {"spiffe://{{trust_domain}}/host/{{cert:dn}}", false, "certificate fields are cn and uri"},
        {"spiffe://{{trust_domain}}/{{claim:sub}}/{{cert:cn}}", true, "cannot be mixed"},
        {"spiffe://{{trust_domain}}/{{cert:cn}}-{{claim:sub}}", false, "cannot be mixed"},
        /* {{cert:uri}} stands alone, and only in a cert role. */
        {"{{cert:uri}}", false, NULL},
        {"{{cert:uri}}", true, "{{cert:uri}} at offset 0 is only allowed in a role of the cert"},
        {"{{cert:uri}}/x", false, "{{cert:uri}} must stand alone"},
        {"spiffe://{{trust_domain}}/{{cert:uri}}", false, "{{cert:uri}} must stand alone"},
        {"{{cert:uri}}{{cert:uri}}", false, "{{cert:uri}} must stand alone"},
        /* Unknown placeholders and wrong spellings. */
        {"spiffe://{{trust_domain}}/a/{{claim:sub}}", true, NULL},
        {"spiffe://{{trust_domain}}/a/{{subject}}", true, "unknown placeholder \"{{subject}}\""},
        {"spiffe://{{trust_domain}}/a/{{ROLE}}", true, "unknown placeholder \"{{ROLE}}\""},
        {"spiffe://{{trust_domain}}/a/{{claim}}", true, "needs a claim name"},
        {"spiffe://{{trust_domain}}/a/{{claim:}}", true, "needs a claim name"},
        {"spiffe://{{trust_domain}}/a/{{}}", true, "empty placeholder"},
        {"spiffe://{{trust_domain}}/a/{{ role }}", true, "spaces are not allowed"},
        {"spiffe://{{trust_domain}}/a/{{claim: sub}}", true, "spaces are not allowed"},
        {"spiffe://{{trust_domain}}/a/{{claim:s\xc3\xbc}}", true, "non-ASCII byte (0xc3)"},
        /* Balanced braces only. */
        {"spiffe://{{trust_domain}}/a/{{role}}", true, NULL},
        {"spiffe://{{trust_domain}}/a/{{role}", true,
         "unbalanced braces: the placeholder at offset 28 ends with a single '}'"},
        {"spiffe://{{trust_domain}}/a/{{role", true,
         "unbalanced braces: the '{{' at offset 28 is never closed"},
        {"spiffe://{{trust_domain}}/a/{role}}", true, "unbalanced braces: a single '{'"},
        {"spiffe://{{trust_domain}}/a/{{role}}}", true, "unbalanced braces: '}' at offset 36"},
        {"spiffe://{{trust_domain}}/a/{{{role}}", true, "unbalanced braces: '{' inside"},
        {"spiffe://{{trust_domain}}/a}b", true, "unbalanced braces: '}' at offset 27"},
        {"spiffe://{{trust_domain}}/a/{{claim:a}b}}", true, "ends with a single '}'"},
        /* The authority is {{trust_domain}}, whole and alone. */
        {"spiffe://{{trust_domain}}/x", true, NULL},
        {"spiffe://{{role}}/x", true, "{{role}} at offset 9 is not allowed in the authority"},
        {"spiffe://{{claim:iss}}/x", true,
         "claim \"iss\" at offset 9 is not allowed in the authority"},
        {"spiffe://{{trust_domain}}{{role}}/x", true,
         "{{role}} at offset 25 is not allowed in the authority"},
        {"spiffe://x.{{trust_domain}}/x", true, "the authority must be exactly {{trust_domain}}"},
        {"spiffe://{{trust_domain}}.evil.org/x", true,
         "must be exactly {{trust_domain}} followed by '/'"},
        {"spiffe://{{trust_domain}}:443/x", true, "followed by '/'"},
        {"spiffe://example.org/x", true, "not a literal trust domain"},
        {"spiffe://", true, "the authority must be exactly {{trust_domain}}"},
        /* The scheme is spiffe://, literally. */
        {"http://{{trust_domain}}/x", true, "must start with \"spiffe://{{trust_domain}}/\""},
        {"SPIFFE://{{trust_domain}}/x", true, "must start with \"spiffe://"},
        {"{{role}}://{{trust_domain}}/x", true, "must start with \"spiffe://"},
        {"spiffe:{{trust_domain}}/x", true, "must start with \"spiffe://"},
        /* The path: no trailing slash, no empty or dot segments, only segment characters. */
        {"spiffe://{{trust_domain}}/a/b", true, NULL},
        {"spiffe://{{trust_domain}}/a/b/", true, "path cannot have a trailing slash"},
        {"spiffe://{{trust_domain}}/", true, "path cannot have a trailing slash"},
        {"spiffe://{{trust_domain}}", true, "needs a path after {{trust_domain}}"},
        {"spiffe://{{trust_domain}}/a//b", true, "path cannot contain empty segments"},
        {"spiffe://{{trust_domain}}//{{role}}", true, "path cannot contain empty segments"},
        {"spiffe://{{trust_domain}}/a/../b", true, "path cannot contain dot segments"},
        {"spiffe://{{trust_domain}}/a/.", true, "path cannot contain dot segments"},
        {"spiffe://{{trust_domain}}/../{{role}}", true, "path cannot contain dot segments"},
        {"spiffe://{{trust_domain}}/..{{role}}/.a/...", true, NULL},
        {"spiffe://{{trust_domain}}/a%2Fb", true, "percent-encoding is not allowed"},
        {"spiffe://{{trust_domain}}/a?b", true, "query is not allowed"},
        {"spiffe://{{trust_domain}}/a#b", true, "fragment is not allowed"},
        {"spiffe://{{trust_domain}}/a b", true, "' ' at offset 27 is not allowed"},
        {"spiffe://{{trust_domain}}/\xc3\xbc", true, "byte 0xc3 at offset 26 is not allowed"},
        /* Placeholders fill a whole segment or part of one. */
        {"spiffe://{{trust_domain}}/sa-{{claim:sub}}", true, NULL},
        {"spiffe://{{trust_domain}}/sa-{{claim:sub}}:x", true, "':' at offset 42 is not allowed"},
        {"spiffe://{{trust_domain}}/{{claim:a}}{{claim:b}}.{{role}}", true, NULL},
        {"spiffe://{{trust_domain}}/{{claim:a}}//{{claim:b}}", true, "empty segments"},
        /* Claim names and JSON pointers (RFC 6901). */
        {"spiffe://{{trust_domain}}/{{claim:https://example.com/team}}", true, NULL},
        {"spiffe://{{trust_domain}}/{{claim:/a~1b~0c/0}}", true, NULL},
        {"spiffe://{{trust_domain}}/{{claim:/a/}}", true, "has an empty reference token"},
        {"spiffe://{{trust_domain}}/{{claim:/a//b}}", true, "has an empty reference token"},
        {"spiffe://{{trust_domain}}/{{claim:/}}", true, "has an empty reference token"},
        {"spiffe://{{trust_domain}}/{{claim:/a~2}}", true, "has a '~' not followed by '0' or '1'"},
        {"spiffe://{{trust_domain}}/{{claim:/a~}}", true, "has a '~' not followed by '0' or '1'"},
        /* Nothing at all. */
        {"", true, "template is empty"},
        {NULL, true, "template is empty"},
    };
    size_t n = sizeof cases / sizeof cases[0];
    CHECK(n >= 20);
    for (size_t i = 0; i < n; i++) {
        run_check(cases[i].tmpl, cases[i].jwt, cases[i].why, (int)i);
    }
    /* why may be NULL or tiny. */
    CHECK_INT(as_spiffe_template_check("{{x}}", true, NULL, 0), AS_ERR_INVALID);
    char tiny[8];
    CHECK_INT(as_spiffe_template_check("{{x}}", true, tiny, sizeof tiny), AS_ERR_INVALID);
    CHECK_INT((int)strlen(tiny), 7);
    CHECK_INT(as_spiffe_template_check(SPEC_EXAMPLE, true, NULL, 0), AS_OK);
}

/* "spiffe://{{trust_domain}}/" then 'a' up to len bytes. Caller frees. */
static char *long_template(size_t len)
{
    static const char head[] = "spiffe://{{trust_domain}}/";
    char *s = malloc(len + 1);
    memcpy(s, head, sizeof head - 1);
    memset(s + sizeof head - 1, 'a', len - (sizeof head - 1));
    s[len] = '\0';
    return s;
}

/* "spiffe://{{trust_domain}}" then n times "/{{role}}": n + 1 placeholders. */
static char *many_placeholders(size_t n)
{
    struct as_buf b;
    as_buf_init(&b, 4096);
    enum as_err r = as_buf_printf(&b, "spiffe://{{trust_domain}}");
    for (size_t i = 0; r == AS_OK && i < n; i++) {
        r = as_buf_printf(&b, "/{{role}}");
    }
    CHECK_INT(r, AS_OK);
    return b.data;
}

static void test_check_limits(void)
{
    /* Oversize: exactly 1024 bytes is fine, 1025 is not, nor is 100 KiB (bounded scan). */
    char *t = long_template(MAX_BYTES);
    run_check(t, true, NULL, __LINE__);
    free(t);
    t = long_template(MAX_BYTES + 1);
    run_check(t, true, "template is longer than 1024 bytes", __LINE__);
    free(t);
    t = long_template(100 * 1024);
    run_check(t, true, "template is longer than 1024 bytes", __LINE__);
    free(t);

    /* Sixteen placeholders are fine, seventeen are too many. */
    t = many_placeholders(MAX_PLACEHOLDERS - 1);
    run_check(t, true, NULL, __LINE__);
    free(t);
    t = many_placeholders(MAX_PLACEHOLDERS);
    run_check(t, true, "more than 16 placeholders", __LINE__);
    free(t);
}

struct expand_case {
    const char *tmpl;
    const char *claims; /* JSON object text, or NULL for no claims */
    const char *role;
    const char *cn;
    const char *uri;
    const char *want; /* the expected ID, or NULL when refused */
    const char *why;  /* refused: an expected substring of the reason */
};

static void run_expand(const struct expand_case *c, int row)
{
    json_error_t jerr;
    json_t *claims = NULL;
    if (c->claims != NULL) {
        claims = json_loads(c->claims, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
        if (claims == NULL) {
            fprintf(stderr, "expand row %d: bad claims JSON: %s\n", row, jerr.text);
        }
        CHECK(claims != NULL);
    }
    struct as_template_ctx ctx = {TD, c->role, claims, c->cn, c->uri};
    char why[512];
    memset(why, 'x', sizeof why);
    why[sizeof why - 1] = '\0';
    char *out = (char *)"untouched";
    enum as_err r = as_spiffe_template_expand(c->tmpl, &ctx, &out, why, sizeof why);
    bool ok;
    if (c->want != NULL) {
        ok = r == AS_OK && out != NULL && strcmp(out, c->want) == 0;
    } else {
        ok = r == AS_ERR_INVALID && out == NULL && strstr(why, c->why) != NULL;
    }
    if (!ok) {
        fprintf(stderr, "expand row %d: \"%s\": got %s, out \"%s\", why \"%s\"; expected %s\n", row,
                c->tmpl, as_strerror(r), r == AS_OK && out != NULL ? out : "(none)",
                r == AS_OK ? "" : why, c->want != NULL ? c->want : c->why);
    }
    CHECK(ok);
    if (r == AS_OK) {
        /* What expand returns is always an ID of our trust domain. */
        CHECK_INT(as_spiffe_id_check(out, TD, NULL, 0), AS_OK);
        free(out);
    }
    json_decref(claims);
}

#define SEG_RULE "is not a valid SPIFFE path segment"
#define K8S "{\"kubernetes.io\":{\"namespace\":\"prod\"},\"sub\":\"web\"}"

static void test_expand_table(void)
{
    static const struct expand_case cases[] = {
        /* The SPEC example: "/kubernetes.io/namespace" is the member "namespace" of the member
         * "kubernetes.io" (RFC 6901); a flat "kubernetes.io/namespace" key needs ~1. */
        {SPEC_EXAMPLE, K8S, NULL, NULL, NULL, "spiffe://example.org/ns/prod/sa/web", NULL},
        {SPEC_EXAMPLE, "{\"kubernetes.io/namespace\":\"prod\",\"sub\":\"web\"}", NULL, NULL, NULL,
         NULL, "claim \"/kubernetes.io/namespace\" is missing from the token"},
        {"spiffe://{{trust_domain}}/ns/{{claim:/kubernetes.io~1namespace}}",
         "{\"kubernetes.io/namespace\":\"prod\"}", NULL, NULL, NULL, "spiffe://example.org/ns/prod",
         NULL},
        {"spiffe://{{trust_domain}}/ns/{{claim:/kubernetes.io~1namespace}}", K8S, NULL, NULL, NULL,
         NULL, "claim \"/kubernetes.io~1namespace\" is missing"},
        /* ~0 is '~', and "~01" is "~1", never "/" (RFC 6901 §4). */
        {"spiffe://{{trust_domain}}/{{claim:/a~0b}}", "{\"a~b\":\"x\"}", NULL, NULL, NULL,
         "spiffe://example.org/x", NULL},
        {"spiffe://{{trust_domain}}/{{claim:/a~01}}", "{\"a/\":\"x\",\"a~1\":\"y\"}", NULL, NULL,
         NULL, "spiffe://example.org/y", NULL},
        /* Injection attempts: every value must be one segment by itself. */
        {"spiffe://{{trust_domain}}/sa/{{claim:sub}}", "{\"sub\":\"a.b\"}", NULL, NULL, NULL,
         "spiffe://example.org/sa/a.b", NULL},
        {"spiffe://{{trust_domain}}/sa/{{claim:sub}}", "{\"sub\":\"a/b\"}", NULL, NULL, NULL, NULL,
         "claim \"sub\" expands to a value that " SEG_RULE},
        {"spiffe://{{trust_domain}}/sa/{{claim:sub}}", "{\"sub\":\".\"}", NULL, NULL, NULL, NULL,
         "claim \"sub\" expands to a value that " SEG_RULE},
        {"spiffe://{{trust_domain}}/sa/{{claim:sub}}", "{\"sub\":\"..\"}", NULL, NULL, NULL, NULL,
         "it is a dot segment"},
        {"spiffe://{{trust_domain}}/sa/{{claim:sub}}", "{\"sub\":\"...\"}", NULL, NULL, NULL,
         "spiffe://example.org/sa/...", NULL},
        {"spiffe://{{trust_domain}}/sa/{{claim:sub}}", "{\"sub\":\"%2F\"}", NULL, NULL, NULL, NULL,
         "it holds a character outside"},
        {"spiffe://{{trust_domain}}/sa/{{claim:sub}}", "{\"sub\":\"..%2F..\"}", NULL, NULL, NULL,
         NULL, SEG_RULE},
        {"spiffe://{{trust_domain}}/sa/{{claim:sub}}", "{\"sub\":\"a?b\"}", NULL, NULL, NULL, NULL,
         SEG_RULE},
        {"spiffe://{{trust_domain}}/sa/{{claim:sub}}", "{\"sub\":\"a#b\"}", NULL, NULL, NULL, NULL,
         SEG_RULE},
        {"spiffe://{{trust_domain}}/sa/{{claim:sub}}", "{\"sub\":\"a b\"}", NULL, NULL, NULL, NULL,
         SEG_RULE},
        {"spiffe://{{trust_domain}}/sa/{{claim:sub}}", "{\"sub\":\"\\u00fc\"}", NULL, NULL, NULL,
         NULL, SEG_RULE},
        {"spiffe://{{trust_domain}}/sa/{{claim:sub}}", "{\"sub\":\"a\\u0000/b\"}", NULL, NULL, NULL,
         NULL, SEG_RULE},
        {"spiffe://{{trust_domain}}/sa/{{claim:sub}}", "{\"sub\":\"\"}", NULL, NULL, NULL, NULL,
         "it is empty"},
        /* Part of a segment: the value alone must still be a segment ("sa-." would pass). */
        {"spiffe://{{trust_domain}}/sa-{{claim:sub}}", "{\"sub\":\"web\"}", NULL, NULL, NULL,
         "spiffe://example.org/sa-web", NULL},
        {"spiffe://{{trust_domain}}/sa-{{claim:sub}}", "{\"sub\":\".\"}", NULL, NULL, NULL, NULL,
         "claim \"sub\" expands to a value that " SEG_RULE},
        {"spiffe://{{trust_domain}}/sa-{{claim:sub}}", "{\"sub\":\"\"}", NULL, NULL, NULL, NULL,
         "it is empty"},
        {"spiffe://{{trust_domain}}/{{claim:a}}.{{claim:b}}", "{\"a\":\"x\",\"b\":\"y\"}", NULL,
         NULL, NULL, "spiffe://example.org/x.y", NULL},
        /* Missing claims and claims that are not strings. */
        {"spiffe://{{trust_domain}}/sa/{{claim:sub}}", "{\"sud\":\"web\"}", NULL, NULL, NULL, NULL,
         "claim \"sub\" is missing from the token"},
        {"spiffe://{{trust_domain}}/sa/{{claim:sub}}", NULL, NULL, NULL, NULL, NULL,
         "claim \"sub\": this login has no token claims"},
        {"spiffe://{{trust_domain}}/n/{{claim:n}}", "{\"n\":42}", NULL, NULL, NULL,
         "spiffe://example.org/n/42", NULL},
        {"spiffe://{{trust_domain}}/n/{{claim:n}}", "{\"n\":-7}", NULL, NULL, NULL,
         "spiffe://example.org/n/-7", NULL},
        {"spiffe://{{trust_domain}}/n/{{claim:n}}", "{\"n\":4.5}", NULL, NULL, NULL, NULL,
         "claim \"n\" is a real number"},
        {"spiffe://{{trust_domain}}/n/{{claim:n}}", "{\"n\":1e3}", NULL, NULL, NULL, NULL,
         "is a real number"},
        {"spiffe://{{trust_domain}}/n/{{claim:n}}", "{\"n\":true}", NULL, NULL, NULL, NULL,
         "claim \"n\" is a boolean"},
        {"spiffe://{{trust_domain}}/n/{{claim:n}}", "{\"n\":false}", NULL, NULL, NULL, NULL,
         "is a boolean"},
        {"spiffe://{{trust_domain}}/n/{{claim:n}}", "{\"n\":null}", NULL, NULL, NULL, NULL,
         "claim \"n\" is null"},
        {"spiffe://{{trust_domain}}/n/{{claim:n}}", "{\"n\":{\"a\":\"b\"}}", NULL, NULL, NULL, NULL,
         "claim \"n\" is an object"},
        {"spiffe://{{trust_domain}}/n/{{claim:n}}", "{\"n\":[\"a\"]}", NULL, NULL, NULL, NULL,
         "claim \"n\" is an array"},
        /* Arrays by decimal index without leading zeros; "-" addresses nothing. */
        {"spiffe://{{trust_domain}}/g/{{claim:/groups/1}}", "{\"groups\":[\"a\",\"b\"]}", NULL,
         NULL, NULL, "spiffe://example.org/g/b", NULL},
        {"spiffe://{{trust_domain}}/g/{{claim:/groups/01}}", "{\"groups\":[\"a\",\"b\"]}", NULL,
         NULL, NULL, NULL, "claim \"/groups/01\" is missing"},
        {"spiffe://{{trust_domain}}/g/{{claim:/groups/2}}", "{\"groups\":[\"a\",\"b\"]}", NULL,
         NULL, NULL, NULL, "is missing"},
        {"spiffe://{{trust_domain}}/g/{{claim:/groups/-}}", "{\"groups\":[\"a\",\"b\"]}", NULL,
         NULL, NULL, NULL, "is missing"},
        {"spiffe://{{trust_domain}}/g/{{claim:/groups/99999999999999999999999}}",
         "{\"groups\":[\"a\"]}", NULL, NULL, NULL, NULL, "is missing"},
        {"spiffe://{{trust_domain}}/g/{{claim:/groups/0/x}}", "{\"groups\":[\"a\"]}", NULL, NULL,
         NULL, NULL, "is missing"},
        {"spiffe://{{trust_domain}}/g/{{claim:/o/0}}", "{\"o\":{\"0\":\"z\"}}", NULL, NULL, NULL,
         "spiffe://example.org/g/z", NULL},
        /* A top-level name is taken literally, '/' and ':' included. */
        {"spiffe://{{trust_domain}}/t/{{claim:https://example.com/team}}",
         "{\"https://example.com/team\":\"blue\"}", NULL, NULL, NULL, "spiffe://example.org/t/blue",
         NULL},
        {"spiffe://{{trust_domain}}/t/{{claim:https://example.com/team}}",
         "{\"https:\":{\"example.com\":{\"team\":\"blue\"}}}", NULL, NULL, NULL, NULL,
         "is missing"},
        /* {{role}}. */
        {"spiffe://{{trust_domain}}/role/{{role}}", NULL, "web", NULL, NULL,
         "spiffe://example.org/role/web", NULL},
        {"spiffe://{{trust_domain}}/role/{{role}}", NULL, "a/b", NULL, NULL, NULL,
         "{{role}} expands to a value that " SEG_RULE},
        {"spiffe://{{trust_domain}}/role/{{role}}", NULL, NULL, NULL, NULL, NULL,
         "{{role}} has no value"},
        /* {{cert:cn}}. */
        {"spiffe://{{trust_domain}}/host/{{cert:cn}}", NULL, NULL, "host-1.example", NULL,
         "spiffe://example.org/host/host-1.example", NULL},
        {"spiffe://{{trust_domain}}/host/{{cert:cn}}", NULL, NULL, ".", NULL, NULL,
         "{{cert:cn}} expands to a value that " SEG_RULE},
        {"spiffe://{{trust_domain}}/host/{{cert:cn}}", NULL, NULL, "..", NULL, NULL,
         "it is a dot segment"},
        {"spiffe://{{trust_domain}}/host/{{cert:cn}}", NULL, NULL, "CN=a, O=b", NULL, NULL,
         SEG_RULE},
        {"spiffe://{{trust_domain}}/host/{{cert:cn}}", NULL, NULL, NULL, NULL, NULL,
         "{{cert:cn}} has no value"},
        /* {{cert:uri}}: a SPIFFE ID of our trust domain, whole. */
        {"{{cert:uri}}", NULL, NULL, NULL, "spiffe://example.org/ns/prod",
         "spiffe://example.org/ns/prod", NULL},
        {"{{cert:uri}}", NULL, NULL, NULL, "spiffe://evil.org/ns/prod", NULL,
         "{{cert:uri}} is not a SPIFFE ID of trust domain example.org: not a member"},
        {"{{cert:uri}}", NULL, NULL, NULL, "spiffe://example.org.evil.org/x", NULL,
         "not a member of trust domain example.org"},
        {"{{cert:uri}}", NULL, NULL, NULL, "spiffe://example.org/a/../b", NULL,
         "path cannot contain dot segments"},
        {"{{cert:uri}}", NULL, NULL, NULL, "spiffe://example.org", NULL, "bare trust domain"},
        {"{{cert:uri}}", NULL, NULL, NULL, "https://example.org/x", NULL, "scheme"},
        {"{{cert:uri}}", NULL, NULL, NULL, NULL, NULL, "the certificate has no URI SAN"},
        /* A template the check refuses is refused by the expansion too. */
        {"spiffe://{{trust_domain}}/x", NULL, NULL, NULL, NULL, "spiffe://example.org/x", NULL},
        {"spiffe://{{role}}/x", NULL, "example.org", NULL, NULL, NULL,
         "not allowed in the authority"},
        {"spiffe://{{trust_domain}}/{{trust_domain}}", NULL, NULL, NULL, NULL, NULL,
         "only allowed as the authority"},
        {"spiffe://{{trust_domain}}/{{cert:uri}}", NULL, NULL, NULL, "spiffe://example.org/x", NULL,
         "must stand alone"},
        {"spiffe://{{trust_domain}}/a/{{role}}/", NULL, "web", NULL, NULL, NULL, "trailing slash"},
        {"spiffe://{{trust_domain}}/{{claim:sub}}/{{cert:cn}}", K8S, NULL, "host", NULL, NULL,
         "cannot be mixed"},
    };
    size_t n = sizeof cases / sizeof cases[0];
    CHECK(n >= 25);
    for (size_t i = 0; i < n; i++) {
        run_expand(&cases[i], (int)i);
    }
}

/* Lengths at expansion: a long value, and an ID past AS_SPIFFE_MAX_ID. */
static void test_expand_limits(void)
{
    char *v = malloc(AS_SPIFFE_MAX_ID + 2);
    memset(v, 'a', AS_SPIFFE_MAX_ID + 1);
    v[AS_SPIFFE_MAX_ID + 1] = '\0';
    json_t *claims = json_object();
    CHECK_INT(json_object_set_new(claims, "long", json_string(v)), 0);
    /* 1000 bytes: two segments of it fit in 2048 bytes ... */
    v[1000] = '\0';
    CHECK_INT(json_object_set_new(claims, "k", json_string(v)), 0);
    struct as_template_ctx ctx = {TD, NULL, claims, NULL, NULL};
    char why[256] = "";
    char *out = NULL;
    CHECK_INT(as_spiffe_template_expand("spiffe://{{trust_domain}}/{{claim:k}}/{{claim:k}}", &ctx,
                                        &out, why, sizeof why),
              AS_OK);
    CHECK(out != NULL && strlen(out) == 9 + strlen(TD) + 2 + 2000);
    free(out);
    out = NULL;
    /* ... three do not. */
    CHECK_INT(
        as_spiffe_template_expand("spiffe://{{trust_domain}}/{{claim:k}}/{{claim:k}}/{{claim:k}}",
                                  &ctx, &out, why, sizeof why),
        AS_ERR_INVALID);
    CHECK(out == NULL);
    CHECK(strstr(why, "longer than 2048 bytes") != NULL);
    /* A single value over 2048 bytes is no segment. */
    CHECK_INT(as_spiffe_template_expand("spiffe://{{trust_domain}}/{{claim:long}}", &ctx, &out, why,
                                        sizeof why),
              AS_ERR_INVALID);
    CHECK(strstr(why, "claim \"long\" expands to a value that " SEG_RULE) != NULL);
    CHECK(out == NULL);

    /* No trust domain, no context: the caller's mistake, not the client's. */
    struct as_template_ctx no_td = {NULL, "web", NULL, NULL, NULL};
    CHECK_INT(as_spiffe_template_expand("spiffe://{{trust_domain}}/{{role}}", &no_td, &out, why,
                                        sizeof why),
              AS_ERR_INTERNAL);
    CHECK(out == NULL);
    out = (char *)"stale";
    CHECK_INT(as_spiffe_template_expand("spiffe://{{trust_domain}}/{{role}}", NULL, &out, why,
                                        sizeof why),
              AS_ERR_INTERNAL);
    CHECK(out == NULL);
    CHECK_INT(as_spiffe_template_expand("spiffe://{{trust_domain}}/{{role}}", &no_td, NULL, why,
                                        sizeof why),
              AS_ERR_INTERNAL);
    /* A trust domain that is not one fails the final as_spiffe_id_check. */
    struct as_template_ctx bad_td = {"Example.org", "web", NULL, NULL, NULL};
    CHECK_INT(as_spiffe_template_expand("spiffe://{{trust_domain}}/{{role}}", &bad_td, &out, why,
                                        sizeof why),
              AS_ERR_INVALID);
    CHECK(strstr(why, "the expanded SPIFFE ID is invalid: trust domain characters") != NULL);
    CHECK(out == NULL);
    /* why may be NULL. */
    struct as_template_ctx role = {TD, "web", NULL, NULL, NULL};
    CHECK_INT(as_spiffe_template_expand("spiffe://{{trust_domain}}/{{role}}", &role, &out, NULL, 0),
              AS_OK);
    CHECK_STR(out, "spiffe://example.org/web");
    free(out);
    out = NULL;
    CHECK_INT(
        as_spiffe_template_expand("spiffe://{{trust_domain}}/{{role}}/", &role, &out, NULL, 0),
        AS_ERR_INVALID);
    CHECK(out == NULL);
    /* Oversize templates are refused by the expansion as well. */
    char *t = long_template(MAX_BYTES + 1);
    CHECK_INT(as_spiffe_template_expand(t, &role, &out, why, sizeof why), AS_ERR_INVALID);
    CHECK(strstr(why, "longer than 1024 bytes") != NULL);
    free(t);
    t = long_template(MAX_BYTES);
    CHECK_INT(as_spiffe_template_expand(t, &role, &out, why, sizeof why), AS_OK);
    free(out);
    free(t);
    json_decref(claims);
    free(v);
}

int main(void)
{
    test_check_table();
    test_check_limits();
    test_expand_table();
    test_expand_limits();
    return check_done();
}
