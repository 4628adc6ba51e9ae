/*
 * template.c: spiffe_id_template (SPEC §5, pki.h): checked when a role is written, expanded at
 * login into the SPIFFE ID of the workload.
 *
 * A template is cut into tokens once (literal runs and placeholders) by one bounded pass; the
 * check and the expansion both work on that token list, so a template the check accepts is
 * expanded by exactly the rules the check applied. The shape is fixed:
 *
 *     spiffe://{{trust_domain}}/seg(/seg)*    where each seg mixes [A-Za-z0-9._-] and placeholders
 *     {{cert:uri}}                            alone, as the whole template
 *
 * Placeholders never produce structure: each expanded value must by itself be one valid SPIFFE
 * path segment (SPIFFE-ID §2.2), so a claim holding "a/b", ".", "..", "%2F", "a?b" or "" cannot
 * add a segment, climb out of one, or smuggle a query. The result is checked once more with
 * as_spiffe_id_check against the trust domain before anyone sees it.
 *
 * Decisions beyond SPEC §5:
 * - The authority is always {{trust_domain}}: a literal trust domain is refused at check time
 *   (the check does not know ours, and a role that names it would break when it is renamed).
 * - {{claim:NAME}} with NAME not starting with '/' is the top-level claim NAME taken literally
 *   (so "https://example.com/groups" names a namespaced claim); with a leading '/' it is an
 *   RFC 6901 JSON Pointer ("~1" is '/', "~0" is '~'). RFC 6901 reads "/a/" as the member ""
 *   of "a"; no issuer names a claim "", and a trailing or doubled slash is far likelier a typo,
 *   so an empty reference token is refused at check time. Array elements are addressed by a
 *   decimal index without leading zeros (RFC 6901 §4); "-" and anything else address nothing.
 * - Claim names are printable ASCII without braces or spaces, so a name can be quoted in a
 *   reason without escaping. Values from a token are never quoted back.
 * - Claim and cert placeholders never share a template (no login has both), and the expansion
 *   applies that rule too, so it does not rely on the caller passing only one of them.
 * - Integer claims are written in decimal ("-7" is a valid segment); reals, booleans, null,
 *   objects and arrays are refused.
 * - A template over TEMPLATE_MAX_BYTES or with more than TEMPLATE_MAX_PLACEHOLDERS is
 *   AS_ERR_INVALID, not AS_ERR_TOO_LARGE: SPEC §5 answers every template problem with 400.
 *   An expansion without a context, out pointer or trust domain is the caller's mistake:
 *   AS_ERR_INTERNAL.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pki/pki.h"

/* Hard caps on what a role may store (STYLE.md §4). */
#define TEMPLATE_MAX_BYTES 1024
#define TEMPLATE_MAX_PLACEHOLDERS 16
/* Literal runs only sit between placeholders: at most one more of them than placeholders. */
#define TEMPLATE_MAX_TOKENS (2 * TEMPLATE_MAX_PLACEHOLDERS + 1)

static const char scheme[] = "spiffe://";
#define SCHEME_LEN (sizeof scheme - 1)

static const char seg_rule[] = "[A-Za-z0-9._-], not \".\" or \"..\"";

enum tok_kind { TOK_LITERAL, TOK_TRUST_DOMAIN, TOK_ROLE, TOK_CLAIM, TOK_CERT_CN, TOK_CERT_URI };

struct tok {
    enum tok_kind kind;
    const char *p; /* TOK_LITERAL: the text; TOK_CLAIM: the claim name or JSON pointer */
    size_t len;
    size_t off; /* offset of the token in the template, for reasons */
};

struct tpl {
    struct tok tok[TEMPLATE_MAX_TOKENS];
    size_t n;
    size_t nph;
};

/* What may follow the name of a placeholder. */
enum arg_rule { ARG_NONE, ARG_CLAIM, ARG_CN, ARG_URI };

/* The placeholders of SPEC §5; {{cert:...}} has one row per field. */
static const struct {
    const char *name;
    enum arg_rule arg;
    enum tok_kind kind;
} placeholders[] = {
    {"trust_domain", ARG_NONE, TOK_TRUST_DOMAIN},
    {"role", ARG_NONE, TOK_ROLE},
    {"claim", ARG_CLAIM, TOK_CLAIM},
    {"cert", ARG_CN, TOK_CERT_CN},
    {"cert", ARG_URI, TOK_CERT_URI},
};

static bool seg_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

static bool same(const char *p, size_t len, const char *s)
{
    return strlen(s) == len && memcmp(p, s, len) == 0;
}

/* The placeholder as a reason names it: claim "sub", {{role}}, {{cert:cn}}. */
static void describe(const struct tok *k, char *out, size_t outlen)
{
    switch (k->kind) {
    case TOK_CLAIM:
        snprintf(out, outlen, "claim \"%.*s\"", (int)k->len, k->p);
        return;
    case TOK_TRUST_DOMAIN:
        snprintf(out, outlen, "{{trust_domain}}");
        return;
    case TOK_ROLE:
        snprintf(out, outlen, "{{role}}");
        return;
    case TOK_CERT_CN:
        snprintf(out, outlen, "{{cert:cn}}");
        return;
    case TOK_CERT_URI:
        snprintf(out, outlen, "{{cert:uri}}");
        return;
    case TOK_LITERAL:
        snprintf(out, outlen, "literal text");
        return;
    }
    snprintf(out, outlen, "placeholder");
}

/*
 * RFC 6901 §3: json-pointer = *( "/" reference-token ), escaped = "~" ( "0" / "1" ). p[0] is
 * '/'. Empty reference tokens are refused (see the top of this file).
 */
static const char *pointer_problem(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '/') {
            if (i + 1 == len || p[i + 1] == '/') {
                return "has an empty reference token (\"/a/\" or \"a//b\"; the member \"\" is not "
                       "addressable)";
            }
            continue;
        }
        if (p[i] == '~' && (i + 1 == len || (p[i + 1] != '0' && p[i + 1] != '1'))) {
            return "has a '~' not followed by '0' or '1' (RFC 6901 §3: '~' is written ~0, '/' ~1)";
        }
    }
    return NULL;
}

/* The text between "{{" and "}}" (c, len; no braces in it) at offset off of the template. */
static enum as_err parse_placeholder(const char *c, size_t len, size_t off, struct tok *k,
                                     char *why, size_t whylen)
{
    if (len == 0) {
        as_why(why, whylen, "empty placeholder {{}} at offset %zu", off);
        return AS_ERR_INVALID;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)c[i];
        if (ch == ' ' || (ch >= '\t' && ch <= '\r')) {
            as_why(why, whylen,
                   "spaces are not allowed inside the placeholder at offset %zu (write {{name}} or "
                   "{{name:arg}})",
                   off);
            return AS_ERR_INVALID;
        }
        if (ch < 0x21 || ch > 0x7e) {
            as_why(why, whylen,
                   "the placeholder at offset %zu holds a control or non-ASCII byte (0x%02x)", off,
                   ch);
            return AS_ERR_INVALID;
        }
    }
    const char *colon = memchr(c, ':', len);
    size_t nlen = colon != NULL ? (size_t)(colon - c) : len;
    const char *arg = colon != NULL ? colon + 1 : NULL;
    size_t alen = colon != NULL ? len - nlen - 1 : 0;
    bool known = false;
    for (size_t i = 0; i < sizeof placeholders / sizeof placeholders[0]; i++) {
        if (!same(c, nlen, placeholders[i].name)) {
            continue;
        }
        known = true;
        bool fits = false;
        switch (placeholders[i].arg) {
        case ARG_NONE:
            fits = arg == NULL;
            break;
        case ARG_CLAIM:
            fits = arg != NULL && alen > 0;
            break;
        case ARG_CN:
            fits = arg != NULL && same(arg, alen, "cn");
            break;
        case ARG_URI:
            fits = arg != NULL && same(arg, alen, "uri");
            break;
        }
        if (!fits) {
            continue;
        }
        if (placeholders[i].arg == ARG_CLAIM && arg[0] == '/') {
            const char *problem = pointer_problem(arg, alen);
            if (problem != NULL) {
                as_why(why, whylen, "the JSON pointer of claim \"%.*s\" %s", (int)alen, arg,
                       problem);
                return AS_ERR_INVALID;
            }
        }
        k->kind = placeholders[i].kind;
        k->p = placeholders[i].arg == ARG_CLAIM ? arg : c;
        k->len = placeholders[i].arg == ARG_CLAIM ? alen : len;
        k->off = off;
        return AS_OK;
    }
    if (!known) {
        as_why(why, whylen,
               "unknown placeholder \"{{%.*s}}\" at offset %zu (known: {{trust_domain}}, {{role}}, "
               "{{claim:NAME}}, {{claim:/json/pointer}}, {{cert:cn}}, {{cert:uri}})",
               (int)len, c, off);
    } else if (same(c, nlen, "claim")) {
        as_why(why, whylen,
               "\"{{%.*s}}\" at offset %zu needs a claim name: {{claim:NAME}} or "
               "{{claim:/json/pointer}}",
               (int)len, c, off);
    } else if (same(c, nlen, "cert")) {
        as_why(why, whylen, "\"{{%.*s}}\" at offset %zu: the certificate fields are cn and uri",
               (int)len, c, off);
    } else {
        as_why(why, whylen, "\"{{%.*s}}\" at offset %zu takes no argument (write {{%.*s}})",
               (int)len, c, off, (int)nlen, c);
    }
    return AS_ERR_INVALID;
}

static enum as_err push(struct tpl *t, const struct tok *k, char *why, size_t whylen)
{
    /* Unreachable with the placeholder cap below; kept so that the array can never overflow. */
    if (t->n == TEMPLATE_MAX_TOKENS) {
        as_why(why, whylen, "template has too many parts");
        return AS_ERR_INTERNAL;
    }
    t->tok[t->n++] = *k;
    return AS_OK;
}

/*
 * Cuts t (len bytes) into literal runs and placeholders. A placeholder is exactly "{{" name
 * [":" arg] "}}"; any other brace is unbalanced, because neither '{' nor '}' may appear in a
 * SPIFFE ID.
 */
static enum as_err tokenize(const char *t, size_t len, struct tpl *out, char *why, size_t whylen)
{
    enum as_err r = AS_OK;
    size_t lit = 0;
    size_t i = 0;
    out->n = 0;
    out->nph = 0;
    while (i < len) {
        if (t[i] == '}') {
            as_why(why, whylen, "unbalanced braces: '}' at offset %zu is outside a placeholder", i);
            return AS_ERR_INVALID;
        }
        if (t[i] != '{') {
            i++;
            continue;
        }
        if (i + 1 == len || t[i + 1] != '{') {
            as_why(why, whylen,
                   "unbalanced braces: a single '{' at offset %zu (placeholders are written "
                   "{{name}} or {{name:arg}})",
                   i);
            return AS_ERR_INVALID;
        }
        size_t start = i + 2;
        size_t j = start;
        while (j < len && t[j] != '{' && t[j] != '}') {
            j++;
        }
        if (j == len) {
            as_why(why, whylen, "unbalanced braces: the '{{' at offset %zu is never closed by '}}'",
                   i);
            return AS_ERR_INVALID;
        }
        if (t[j] == '{') {
            as_why(why, whylen, "unbalanced braces: '{' inside the placeholder at offset %zu", i);
            return AS_ERR_INVALID;
        }
        if (j + 1 == len || t[j + 1] != '}') {
            as_why(why, whylen,
                   "unbalanced braces: the placeholder at offset %zu ends with a single '}'", i);
            return AS_ERR_INVALID;
        }
        if (i > lit) {
            struct tok l = {TOK_LITERAL, t + lit, i - lit, lit};
            if ((r = push(out, &l, why, whylen)) != AS_OK) {
                return r;
            }
        }
        if (out->nph == TEMPLATE_MAX_PLACEHOLDERS) {
            as_why(why, whylen, "template has more than %d placeholders",
                   TEMPLATE_MAX_PLACEHOLDERS);
            return AS_ERR_INVALID;
        }
        struct tok k;
        if ((r = parse_placeholder(t + start, j - start, i, &k, why, whylen)) != AS_OK) {
            return r;
        }
        if ((r = push(out, &k, why, whylen)) != AS_OK) {
            return r;
        }
        out->nph++;
        i = j + 2;
        lit = i;
    }
    if (len > lit) {
        struct tok l = {TOK_LITERAL, t + lit, len - lit, lit};
        r = push(out, &l, why, whylen);
    }
    return r;
}

/* A literal byte of the path that is not a segment character: named the way spiffe.c does. */
static void say_bad_literal(char *why, size_t whylen, unsigned char c, size_t off)
{
    if (c == '%') {
        as_why(why, whylen, "percent-encoding is not allowed (offset %zu)", off);
    } else if (c == '?') {
        as_why(why, whylen, "query is not allowed (offset %zu)", off);
    } else if (c == '#') {
        as_why(why, whylen, "fragment is not allowed (offset %zu)", off);
    } else if (c >= 0x20 && c < 0x7f) {
        as_why(why, whylen, "'%c' at offset %zu is not allowed in a SPIFFE path segment (%s)", c,
               off, seg_rule);
    } else {
        as_why(why, whylen,
               "byte 0x%02x at offset %zu is not allowed in a SPIFFE path segment (%s)", c, off,
               seg_rule);
    }
}

/*
 * The path: tokens from first on, the first a literal starting with '/'. Segments are
 * non-empty; a segment of literal text only must not be "." or ".."; placeholders other than
 * {{trust_domain}} may fill a segment or part of one.
 */
static enum as_err check_path(const struct tpl *t, size_t first, char *why, size_t whylen)
{
    size_t seg_len = 0;     /* literal bytes in the current segment */
    bool seg_ph = false;    /* the current segment holds a placeholder */
    const char *seg = NULL; /* its literal text when it holds no placeholder */
    bool started = false;
    for (size_t n = first; n < t->n; n++) {
        const struct tok *k = &t->tok[n];
        if (k->kind == TOK_TRUST_DOMAIN) {
            as_why(
                why, whylen,
                "{{trust_domain}} at offset %zu is only allowed as the authority, not in the path",
                k->off);
            return AS_ERR_INVALID;
        }
        if (k->kind != TOK_LITERAL) {
            seg_ph = true;
            continue;
        }
        for (size_t i = 0; i < k->len; i++) {
            unsigned char c = (unsigned char)k->p[i];
            size_t off = k->off + i;
            if (c == '/') {
                if (started && seg_len == 0 && !seg_ph) {
                    as_why(why, whylen, "path cannot contain empty segments (offset %zu)", off);
                    return AS_ERR_INVALID;
                }
                if (started && !seg_ph && (same(seg, seg_len, ".") || same(seg, seg_len, ".."))) {
                    as_why(why, whylen, "path cannot contain dot segments (offset %zu)", off);
                    return AS_ERR_INVALID;
                }
                started = true;
                seg_len = 0;
                seg_ph = false;
                seg = k->p + i + 1;
                continue;
            }
            if (!seg_char_ok(c)) {
                say_bad_literal(why, whylen, c, off);
                return AS_ERR_INVALID;
            }
            seg_len++;
        }
    }
    if (seg_len == 0 && !seg_ph) {
        as_why(why, whylen, "path cannot have a trailing slash");
        return AS_ERR_INVALID;
    }
    if (!seg_ph && (same(seg, seg_len, ".") || same(seg, seg_len, ".."))) {
        as_why(why, whylen, "path cannot contain dot segments");
        return AS_ERR_INVALID;
    }
    return AS_OK;
}

/* SPEC §5 shape: "{{cert:uri}}" alone, or "spiffe://{{trust_domain}}/path". */
static enum as_err check_shape(const struct tpl *t, char *why, size_t whylen)
{
    /* tokenize makes at least one token of a non-empty template; said here, not assumed. */
    if (t->n == 0) {
        as_why(why, whylen, "template is empty");
        return AS_ERR_INVALID;
    }
    for (size_t n = 0; n < t->n; n++) {
        if (t->tok[n].kind == TOK_CERT_URI && t->n != 1) {
            as_why(why, whylen,
                   "{{cert:uri}} must stand alone as the whole template (it is a whole SPIFFE ID)");
            return AS_ERR_INVALID;
        }
    }
    if (t->n == 1 && t->tok[0].kind == TOK_CERT_URI) {
        return AS_OK;
    }
    /* No login has both claims and a certificate: such a template fits no role, and the
     * expansion refuses it too rather than trust the caller to pass only one of them. */
    const struct tok *claim = NULL;
    const struct tok *cert = NULL;
    for (size_t n = 0; n < t->n; n++) {
        if (t->tok[n].kind == TOK_CLAIM && claim == NULL) {
            claim = &t->tok[n];
        } else if (t->tok[n].kind == TOK_CERT_CN && cert == NULL) {
            cert = &t->tok[n];
        }
    }
    if (claim != NULL && cert != NULL) {
        as_why(why, whylen,
               "claim placeholders (jwt roles) and cert placeholders (cert roles) cannot be mixed: "
               "offsets %zu and %zu",
               claim->off, cert->off);
        return AS_ERR_INVALID;
    }
    const struct tok *k = &t->tok[0];
    if (k->kind != TOK_LITERAL || k->len < SCHEME_LEN || memcmp(k->p, scheme, SCHEME_LEN) != 0) {
        as_why(why, whylen,
               "template must start with \"spiffe://{{trust_domain}}/\" (lowercase scheme, no "
               "placeholder in it) or be {{cert:uri}}");
        return AS_ERR_INVALID;
    }
    if (k->len > SCHEME_LEN || t->n < 2) {
        as_why(why, whylen,
               "the authority must be exactly {{trust_domain}}, not a literal trust domain");
        return AS_ERR_INVALID;
    }
    k = &t->tok[1];
    if (k->kind != TOK_TRUST_DOMAIN) {
        char what[64];
        describe(k, what, sizeof what);
        as_why(why, whylen,
               "%s at offset %zu is not allowed in the authority: the authority must be exactly "
               "{{trust_domain}}",
               what, k->off);
        return AS_ERR_INVALID;
    }
    if (t->n < 3) {
        as_why(why, whylen,
               "template needs a path after {{trust_domain}} (the bare trust domain "
               "is not a workload ID)");
        return AS_ERR_INVALID;
    }
    k = &t->tok[2];
    if (k->kind != TOK_LITERAL) {
        char what[64];
        describe(k, what, sizeof what);
        as_why(why, whylen,
               "%s at offset %zu is not allowed in the authority: the authority must be exactly "
               "{{trust_domain}}",
               what, k->off);
        return AS_ERR_INVALID;
    }
    if (k->p[0] != '/') {
        as_why(why, whylen,
               "the authority must be exactly {{trust_domain}} followed by '/' (offset %zu: no "
               "port, userinfo, query or more labels)",
               k->off);
        return AS_ERR_INVALID;
    }
    return check_path(t, 2, why, whylen);
}

/* Bounds, tokens and shape: everything both the check and the expansion require. */
static enum as_err parse(const char *tmpl, struct tpl *t, char *why, size_t whylen)
{
    if (tmpl == NULL || tmpl[0] == '\0') {
        as_why(why, whylen, "template is empty");
        return AS_ERR_INVALID;
    }
    /* Bounded before anything else looks at it: a role body may hold a huge string. */
    size_t len = strnlen(tmpl, TEMPLATE_MAX_BYTES + 1);
    if (len > TEMPLATE_MAX_BYTES) {
        as_why(why, whylen, "template is longer than %d bytes", TEMPLATE_MAX_BYTES);
        return AS_ERR_INVALID;
    }
    enum as_err r = tokenize(tmpl, len, t, why, whylen);
    if (r != AS_OK) {
        return r;
    }
    return check_shape(t, why, whylen);
}

enum as_err as_spiffe_template_check(const char *tmpl, bool jwt, char *why, size_t whylen)
{
    struct tpl t;
    enum as_err r = parse(tmpl, &t, why, whylen);
    if (r != AS_OK) {
        return r;
    }
    /* Claims exist only in a jwt login, a certificate only in a cert login (SPEC §5). */
    for (size_t n = 0; n < t.n; n++) {
        const struct tok *k = &t.tok[n];
        bool is_claim = k->kind == TOK_CLAIM;
        bool is_cert = k->kind == TOK_CERT_CN || k->kind == TOK_CERT_URI;
        if ((is_claim && !jwt) || (is_cert && jwt)) {
            char what[TEMPLATE_MAX_BYTES + 16];
            describe(k, what, sizeof what);
            as_why(why, whylen, "%s at offset %zu is only allowed in a role of the %s auth method",
                   what, k->off, is_claim ? "jwt" : "cert");
            return AS_ERR_INVALID;
        }
    }
    return AS_OK;
}

/*
 * RFC 6901 §4 array index: "0" or a decimal number without leading zeros. "-" (the element
 * after the last) and anything else address nothing.
 */
static bool array_index(const char *s, size_t len, size_t *out)
{
    if (len == 0 || (len > 1 && s[0] == '0')) {
        return false;
    }
    size_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        size_t d = (size_t)(s[i] - '0');
        if (v > (SIZE_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/*
 * The claim a {{claim:...}} token names, or NULL. A plain name is a top-level member; a JSON
 * pointer is walked reference token by reference token, unescaping in one left-to-right pass so
 * that "~01" is "~1" and not "/" (RFC 6901 §4).
 */
static json_t *claim_lookup(json_t *claims, const struct tok *k)
{
    /* The template is at most TEMPLATE_MAX_BYTES, so no name or reference token is longer. */
    char key[TEMPLATE_MAX_BYTES + 1];
    if (k->p[0] != '/') {
        memcpy(key, k->p, k->len);
        key[k->len] = '\0';
        return json_object_get(claims, key);
    }
    json_t *cur = claims;
    size_t i = 0;
    while (cur != NULL && i < k->len) {
        i++; /* the '/' */
        size_t klen = 0;
        while (i < k->len && k->p[i] != '/') {
            char c = k->p[i];
            if (c == '~') {
                /* The check made sure that "0" or "1" follows. */
                c = k->p[i + 1] == '0' ? '~' : '/';
                i += 2;
            } else {
                i++;
            }
            key[klen++] = c;
        }
        key[klen] = '\0';
        size_t idx = 0;
        if (json_is_object(cur)) {
            cur = json_object_get(cur, key);
        } else if (json_is_array(cur) && array_index(key, klen, &idx)) {
            cur = json_array_get(cur, idx);
        } else {
            cur = NULL;
        }
    }
    return cur;
}

/* Why v cannot be a path segment; NULL when it can. */
static const char *segment_problem(const char *v, size_t len)
{
    if (as_spiffe_segment_ok(v, len)) {
        return NULL;
    }
    if (len == 0) {
        return "it is empty";
    }
    if (same(v, len, ".") || same(v, len, "..")) {
        return "it is a dot segment";
    }
    if (len > AS_SPIFFE_MAX_ID) {
        return "it is longer than 2048 bytes";
    }
    return "it holds a character outside [A-Za-z0-9._-]";
}

/*
 * The value of one placeholder of the path: *val (vlen bytes, not NUL-terminated) points into
 * ctx, the claims or num (>= 32 bytes, for integers).
 */
static enum as_err value_of(const struct tok *k, const struct as_template_ctx *ctx, char *num,
                            size_t numlen, const char **val, size_t *vlen, char *why, size_t whylen)
{
    char what[TEMPLATE_MAX_BYTES + 16];
    describe(k, what, sizeof what);
    const char *s = NULL;
    switch (k->kind) {
    case TOK_ROLE:
        s = ctx->role;
        break;
    case TOK_CERT_CN:
        s = ctx->cert_cn;
        break;
    case TOK_CLAIM:
        break;
    case TOK_LITERAL:
    case TOK_TRUST_DOMAIN:
    case TOK_CERT_URI:
        /* check_shape keeps these out of the path. */
        as_why(why, whylen, "%s cannot fill a path segment", what);
        return AS_ERR_INTERNAL;
    }
    if (k->kind != TOK_CLAIM) {
        if (s == NULL) {
            as_why(why, whylen, "%s has no value in this login", what);
            return AS_ERR_INVALID;
        }
        *val = s;
        /* One past the longest segment is enough to refuse it. */
        *vlen = strnlen(s, AS_SPIFFE_MAX_ID + 1);
        return AS_OK;
    }
    if (!json_is_object(ctx->claims)) {
        as_why(why, whylen, "%s: this login has no token claims", what);
        return AS_ERR_INVALID;
    }
    json_t *v = claim_lookup(ctx->claims, k);
    if (v == NULL) {
        as_why(why, whylen, "%s is missing from the token", what);
        return AS_ERR_INVALID;
    }
    const char *type = NULL;
    switch (json_typeof(v)) {
    case JSON_STRING:
        /* With its length: a "\u0000" inside must be seen, not cut the value short. */
        *val = json_string_value(v);
        *vlen = json_string_length(v);
        return AS_OK;
    case JSON_INTEGER:
        snprintf(num, numlen, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        *val = num;
        *vlen = strlen(num);
        return AS_OK;
    case JSON_REAL:
        type = "a real number";
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        type = "a boolean";
        break;
    case JSON_NULL:
        type = "null";
        break;
    case JSON_OBJECT:
        type = "an object";
        break;
    case JSON_ARRAY:
        type = "an array";
        break;
    }
    as_why(why, whylen, "%s is %s; only strings and integers can fill a path segment", what,
           type != NULL ? type : "of an unknown type");
    return AS_ERR_INVALID;
}

/* {{cert:uri}}: the certificate's URI SAN, itself a SPIFFE ID of our trust domain. */
static enum as_err expand_cert_uri(const struct as_template_ctx *ctx, char **out, char *why,
                                   size_t whylen)
{
    char reason[128];
    if (ctx->cert_uri == NULL) {
        as_why(why, whylen, "{{cert:uri}}: the certificate has no URI SAN");
        return AS_ERR_INVALID;
    }
    if (as_spiffe_id_check(ctx->cert_uri, ctx->trust_domain, reason, sizeof reason) != AS_OK) {
        as_why(why, whylen, "{{cert:uri}} is not a SPIFFE ID of trust domain %.64s: %s",
               ctx->trust_domain, reason);
        return AS_ERR_INVALID;
    }
    *out = strdup(ctx->cert_uri);
    return *out != NULL ? AS_OK : AS_ERR_NOMEM;
}

enum as_err as_spiffe_template_expand(const char *tmpl, const struct as_template_ctx *ctx,
                                      char **out, char *why, size_t whylen)
{
    enum as_err r = AS_OK;
    struct as_buf b;
    struct tpl t;
    as_buf_init(&b, AS_SPIFFE_MAX_ID);
    if (out != NULL) {
        *out = NULL;
    }
    if (out == NULL || ctx == NULL) {
        as_why(why, whylen, "no template context");
        r = AS_ERR_INTERNAL;
        goto out;
    }
    /* Every ID we make is checked against the trust domain; without one nothing is. */
    if (ctx->trust_domain == NULL) {
        as_why(why, whylen, "no trust domain to expand {{trust_domain}} with");
        r = AS_ERR_INTERNAL;
        goto out;
    }
    if ((r = parse(tmpl, &t, why, whylen)) != AS_OK) {
        goto out;
    }
    if (t.tok[0].kind == TOK_CERT_URI) {
        r = expand_cert_uri(ctx, out, why, whylen);
        goto out;
    }
    /* check_shape: "spiffe://", {{trust_domain}}, then the path. */
    if ((r = as_buf_append(&b, scheme, SCHEME_LEN)) != AS_OK ||
        (r = as_buf_append(&b, ctx->trust_domain,
                           strnlen(ctx->trust_domain, AS_SPIFFE_MAX_TD + 1))) != AS_OK) {
        goto out;
    }
    /* Where the segment being built starts in b; the path's first '/' opens the first one. */
    size_t seg_start = SIZE_MAX;
    for (size_t n = 2; n < t.n; n++) {
        const struct tok *k = &t.tok[n];
        if (k->kind == TOK_LITERAL) {
            /* Segment by segment, so that each one is checked whole, literals included. */
            for (size_t i = 0; i < k->len; i++) {
                if (k->p[i] == '/' && seg_start != SIZE_MAX &&
                    !as_spiffe_segment_ok(b.data + seg_start, b.len - seg_start)) {
                    as_why(why, whylen,
                           "path segment at offset %zu expands to an invalid SPIFFE "
                           "path segment (%s)",
                           k->off + i, seg_rule);
                    r = AS_ERR_INVALID;
                    goto out;
                }
                if ((r = as_buf_append(&b, k->p + i, 1)) != AS_OK) {
                    goto out;
                }
                if (k->p[i] == '/') {
                    seg_start = b.len;
                }
            }
            continue;
        }
        char num[32];
        const char *val = NULL;
        size_t vlen = 0;
        if ((r = value_of(k, ctx, num, sizeof num, &val, &vlen, why, whylen)) != AS_OK) {
            goto out;
        }
        const char *problem = segment_problem(val, vlen);
        if (problem != NULL) {
            char what[TEMPLATE_MAX_BYTES + 16];
            describe(k, what, sizeof what);
            as_why(why, whylen,
                   "%s expands to a value that is not a valid SPIFFE path segment (%s): %s", what,
                   seg_rule, problem);
            r = AS_ERR_INVALID;
            goto out;
        }
        if ((r = as_buf_append(&b, val, vlen)) != AS_OK) {
            goto out;
        }
    }
    if (!as_spiffe_segment_ok(b.data + seg_start, b.len - seg_start)) {
        as_why(why, whylen, "the last path segment expands to an invalid SPIFFE path segment (%s)",
               seg_rule);
        r = AS_ERR_INVALID;
        goto out;
    }
    /* The final word belongs to the one SPIFFE ID parser every other path uses. */
    char reason[128];
    if (as_spiffe_id_check(b.data, ctx->trust_domain, reason, sizeof reason) != AS_OK) {
        as_why(why, whylen, "the expanded SPIFFE ID is invalid: %s", reason);
        r = AS_ERR_INVALID;
        goto out;
    }
    *out = b.data;
    b.data = NULL;
out:
    if (r == AS_ERR_TOO_LARGE) {
        as_why(why, whylen, "the expanded SPIFFE ID is longer than %d bytes", AS_SPIFFE_MAX_ID);
        r = AS_ERR_INVALID;
    }
    as_buf_free(&b, false);
    return r;
}
