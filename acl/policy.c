/*
 * policy.c: Vault ACL policies (SPEC §4).
 *
 * Parsing accepts three spellings of the same thing: Vault's JSON syntax (with "path" either an
 * object or, as HCL-to-JSON converters produce it, an array of objects), the legacy
 * "policy = read|write|deny|sudo" shorthand, and the subset of HCL that Vault policies use. JSON
 * goes through jansson; the HCL subset has a small tokenizer of its own, bounded by the policy
 * size cap.
 *
 * An ACL is the merge of several policies, precomputed so that as_acl_caps (called on every
 * request) is a binary search over the exact patterns followed by a walk over the glob patterns in
 * priority order, without allocating.
 */
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl/acl.h"

/* ---- capabilities ---- */

/* In Vault's order, which is also the order of as_caps_to_json. */
static const struct {
    const char *name;
    uint32_t bit;
} cap_names[] = {
    {"create", AS_CAP_CREATE}, {"read", AS_CAP_READ}, {"update", AS_CAP_UPDATE},
    {"delete", AS_CAP_DELETE}, {"list", AS_CAP_LIST}, {"sudo", AS_CAP_SUDO},
    {"deny", AS_CAP_DENY},
};

#define CAPS_WRITE (AS_CAP_CREATE | AS_CAP_READ | AS_CAP_UPDATE | AS_CAP_DELETE | AS_CAP_LIST)

/* The legacy "policy" shorthand, expanded as Vault does (vault/policy.go). */
static const struct {
    const char *name;
    uint32_t caps;
} legacy_policies[] = {
    {"deny", AS_CAP_DENY},
    {"read", AS_CAP_READ | AS_CAP_LIST},
    {"write", CAPS_WRITE},
    {"sudo", CAPS_WRITE | AS_CAP_SUDO},
};

/*
 * Rule keys Vault knows that authsvc does not enforce. They are accepted so that policies written
 * for Vault load unchanged; note that parameter constraints and wrapping TTLs only ever narrow a
 * grant in Vault, so here the capabilities of such a rule apply without them.
 */
static const char *const ignored_rule_keys[] = {
    "comment",          "allowed_parameters", "denied_parameters", "required_parameters",
    "min_wrapping_ttl", "max_wrapping_ttl",
};

/*
 * Enterprise rule keys that make a grant conditional (MFA, approvals). Ignoring them would widen
 * access silently, so a policy that uses them is refused instead.
 */
static const char *const unsupported_rule_keys[] = {"mfa_methods", "control_group"};

enum as_err as_cap_parse(const char *name, uint32_t *cap)
{
    if (name == NULL || cap == NULL) {
        return AS_ERR_INVALID;
    }
    for (size_t i = 0; i < sizeof cap_names / sizeof cap_names[0]; i++) {
        if (strcmp(name, cap_names[i].name) == 0) {
            *cap = cap_names[i].bit;
            return AS_OK;
        }
    }
    return AS_ERR_INVALID;
}

void as_caps_to_json(uint32_t caps, json_t *arr)
{
    if (arr == NULL) {
        return;
    }
    for (size_t i = 0; i < sizeof cap_names / sizeof cap_names[0]; i++) {
        if ((caps & cap_names[i].bit) != 0) {
            /* The function has no error path; a failed append only shortens the list. */
            (void)json_array_append_new(arr, json_string(cap_names[i].name));
        }
    }
}

bool as_policy_name_ok(const char *name)
{
    if (name == NULL) {
        return false;
    }
    size_t n = 0;
    for (const char *p = name; *p != '\0'; p++, n++) {
        unsigned char c = (unsigned char)*p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '@' || c == '-';
        if (!ok || n >= 128) {
            return false;
        }
    }
    return n >= 1;
}

static bool in_list(const char *key, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(key, list[i]) == 0) {
            return true;
        }
    }
    return false;
}

static bool key_ignored(const char *key)
{
    return in_list(key, ignored_rule_keys, sizeof ignored_rule_keys / sizeof ignored_rule_keys[0]);
}

static bool key_unsupported(const char *key)
{
    return in_list(key, unsupported_rule_keys,
                   sizeof unsupported_rule_keys / sizeof unsupported_rule_keys[0]);
}

static enum as_err legacy_parse(const char *name, uint32_t *caps)
{
    for (size_t i = 0; i < sizeof legacy_policies / sizeof legacy_policies[0]; i++) {
        if (strcmp(name, legacy_policies[i].name) == 0) {
            *caps = legacy_policies[i].caps;
            return AS_OK;
        }
    }
    return AS_ERR_INVALID;
}

/* ---- parsed policies ---- */

struct path_rule {
    char *pattern; /* leading '/' stripped; owned */
    uint32_t caps; /* AS_CAP_* bits; exactly AS_CAP_DENY when the rule denies */
};

struct as_policy {
    struct path_rule *rules;
    size_t n;
    size_t cap;
};

void as_policy_free(struct as_policy *p)
{
    if (p == NULL) {
        return;
    }
    for (size_t i = 0; i < p->n; i++) {
        free(p->rules[i].pattern);
    }
    free(p->rules);
    free(p);
}

/* Writes "failed to parse policy: <reason>" to err (which may be NULL), as Vault words it. */
static void set_err(char *err, size_t errlen, const char *fmt, ...) AS_PRINTF(3, 4);
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) {
        return;
    }
    int n = snprintf(err, errlen, "failed to parse policy: ");
    if (n < 0 || (size_t)n >= errlen) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

/*
 * Appends one rule. Patterns are printed in errors cut at 64 characters so that the reason fits
 * the caller's 160-byte buffer.
 */
static enum as_err policy_add(struct as_policy *p, const char *pattern, size_t plen, uint32_t caps,
                              char *err, size_t errlen)
{
    if (memchr(pattern, '\0', plen) != NULL) {
        set_err(err, errlen, "path contains a NUL character");
        return AS_ERR_INVALID;
    }
    if (p->n >= AS_MAX_POLICY_PATHS) {
        set_err(err, errlen, "more than %d paths", AS_MAX_POLICY_PATHS);
        return AS_ERR_TOO_LARGE;
    }
    /* Paths in Vault start after the '/' of the API path, so one leading '/' is dropped. */
    if (plen > 0 && pattern[0] == '/') {
        pattern++;
        plen--;
    }
    /* Vault refuses "+*": a segment wildcard followed by a glob has no defined meaning. */
    for (size_t i = 0; i + 1 < plen; i++) {
        if (pattern[i] == '+' && pattern[i + 1] == '*') {
            set_err(err, errlen, "path \"%.64s\": invalid use of wildcards ('+*' is forbidden)",
                    pattern);
            return AS_ERR_INVALID;
        }
    }
    if (p->n == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 8;
        struct path_rule *nr = realloc(p->rules, ncap * sizeof *nr);
        if (nr == NULL) {
            return AS_ERR_NOMEM;
        }
        p->rules = nr;
        p->cap = ncap;
    }
    char *copy = strndup(pattern, plen);
    if (copy == NULL) {
        return AS_ERR_NOMEM;
    }
    /* "deny" overrides every other capability of the same rule. */
    p->rules[p->n].pattern = copy;
    p->rules[p->n].caps = (caps & AS_CAP_DENY) != 0 ? AS_CAP_DENY : caps;
    p->n++;
    return AS_OK;
}

/* ---- JSON ---- */

static enum as_err json_rule(const char *pattern, json_t *rule, uint32_t *out, char *err,
                             size_t errlen)
{
    uint32_t caps = 0;
    const char *key;
    size_t key_len;
    json_t *val;
    json_object_keylen_foreach(rule, key, key_len, val)
    {
        if (strlen(key) != key_len) {
            /* "capabilities\u0000x" must not pass for a second "capabilities". */
            set_err(err, errlen, "path \"%.64s\": key contains a NUL character", pattern);
            return AS_ERR_INVALID;
        }
        if (strcmp(key, "capabilities") == 0) {
            if (!json_is_array(val)) {
                set_err(err, errlen, "path \"%.64s\": capabilities must be a list", pattern);
                return AS_ERR_INVALID;
            }
            size_t i;
            json_t *c;
            json_array_foreach(val, i, c)
            {
                uint32_t bit = 0;
                const char *name = json_string_value(c);
                if (name == NULL || strlen(name) != json_string_length(c) ||
                    as_cap_parse(name, &bit) != AS_OK) {
                    set_err(err, errlen, "path \"%.64s\": invalid capability \"%.32s\"", pattern,
                            name ? name : "(not a string)");
                    return AS_ERR_INVALID;
                }
                caps |= bit;
            }
        } else if (strcmp(key, "policy") == 0) {
            uint32_t lcaps = 0;
            const char *name = json_string_value(val);
            if (name == NULL || strlen(name) != json_string_length(val) ||
                legacy_parse(name, &lcaps) != AS_OK) {
                set_err(err, errlen, "path \"%.64s\": invalid policy \"%.32s\"", pattern,
                        name ? name : "(not a string)");
                return AS_ERR_INVALID;
            }
            caps |= lcaps;
        } else if (key_unsupported(key)) {
            set_err(err, errlen, "path \"%.64s\": unsupported key \"%s\"", pattern, key);
            return AS_ERR_INVALID;
        } else if (!key_ignored(key)) {
            set_err(err, errlen, "path \"%.64s\": invalid key \"%.32s\"", pattern, key);
            return AS_ERR_INVALID;
        }
    }
    *out = caps;
    return AS_OK;
}

/* One {"PATTERN": {rule}, ...} object. */
static enum as_err json_paths(struct as_policy *p, json_t *obj, char *err, size_t errlen)
{
    for (void *it = json_object_iter(obj); it != NULL; it = json_object_iter_next(obj, it)) {
        const char *pattern = json_object_iter_key(it);
        size_t plen = json_object_iter_key_len(it);
        json_t *rule = json_object_iter_value(it);
        if (!json_is_object(rule)) {
            set_err(err, errlen, "path \"%.64s\": rule must be an object", pattern);
            return AS_ERR_INVALID;
        }
        uint32_t caps = 0;
        enum as_err r = json_rule(pattern, rule, &caps, err, errlen);
        if (r != AS_OK) {
            return r;
        }
        if ((r = policy_add(p, pattern, plen, caps, err, errlen)) != AS_OK) {
            return r;
        }
    }
    return AS_OK;
}

static enum as_err json_parse(const char *text, size_t len, struct as_policy *p, char *err,
                              size_t errlen)
{
    json_t *root = NULL;
    char jerr[160];
    enum as_err r = as_json_parse_object(text, len, &root, jerr, sizeof jerr);
    if (r != AS_OK) {
        set_err(err, errlen, "%s", jerr);
        goto out;
    }
    const char *key;
    size_t key_len;
    json_t *val;
    json_object_keylen_foreach(root, key, key_len, val)
    {
        if (strlen(key) != key_len) {
            set_err(err, errlen, "key contains a NUL character");
            r = AS_ERR_INVALID;
            goto out;
        }
        if (strcmp(key, "name") == 0) {
            /* Vault's top level allows "name"; the name that counts is the one in the URL. */
            continue;
        }
        if (strcmp(key, "path") != 0) {
            set_err(err, errlen, "invalid key \"%.32s\"", key);
            r = AS_ERR_INVALID;
            goto out;
        }
        if (json_is_object(val)) {
            r = json_paths(p, val, err, errlen);
        } else if (json_is_array(val)) {
            size_t i;
            json_t *elem;
            json_array_foreach(val, i, elem)
            {
                if (!json_is_object(elem)) {
                    set_err(err, errlen, "\"path\" list items must be objects");
                    r = AS_ERR_INVALID;
                    goto out;
                }
                if ((r = json_paths(p, elem, err, errlen)) != AS_OK) {
                    goto out;
                }
            }
        } else {
            set_err(err, errlen, "\"path\" must be an object");
            r = AS_ERR_INVALID;
        }
        if (r != AS_OK) {
            goto out;
        }
    }
out:
    json_decref(root);
    return r;
}

/* ---- HCL subset ---- */

enum tok {
    TOK_EOF,
    TOK_STRING, /* "..." with its escapes decoded into lexer.text */
    TOK_WORD,   /* identifier, number, true/false, in lexer.text */
    TOK_EQUALS,
    TOK_LBRACE,
    TOK_RBRACE,
    TOK_LBRACKET,
    TOK_RBRACKET,
    TOK_COMMA,
};

struct lexer {
    const char *s;
    size_t len;
    size_t pos;
    unsigned line;
    struct as_buf text; /* text of the last STRING or WORD token */
    char *err;
    size_t errlen;
};

static const char *lex_text(const struct lexer *lx)
{
    return lx->text.data != NULL ? lx->text.data : "";
}

static bool is_word_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '-' || c == '.';
}

/* Skips blanks and the three comment forms HCL has: '#' and '//' to end of line, and block. */
static enum as_err lex_skip(struct lexer *lx)
{
    while (lx->pos < lx->len) {
        char c = lx->s[lx->pos];
        char d = lx->pos + 1 < lx->len ? lx->s[lx->pos + 1] : '\0';
        if (c == '\n') {
            lx->line++;
            lx->pos++;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f') {
            lx->pos++;
        } else if (c == '#' || (c == '/' && d == '/')) {
            while (lx->pos < lx->len && lx->s[lx->pos] != '\n') {
                lx->pos++;
            }
        } else if (c == '/' && d == '*') {
            unsigned start = lx->line;
            lx->pos += 2;
            for (;;) {
                if (lx->pos + 1 >= lx->len) {
                    set_err(lx->err, lx->errlen, "line %u: unterminated comment", start);
                    return AS_ERR_INVALID;
                }
                if (lx->s[lx->pos] == '*' && lx->s[lx->pos + 1] == '/') {
                    lx->pos += 2;
                    break;
                }
                if (lx->s[lx->pos] == '\n') {
                    lx->line++;
                }
                lx->pos++;
            }
        } else {
            break;
        }
    }
    return AS_OK;
}

static enum as_err lex_string(struct lexer *lx)
{
    unsigned start = lx->line;
    enum as_err r;
    lx->pos++; /* opening quote */
    for (;;) {
        if (lx->pos >= lx->len || lx->s[lx->pos] == '\n') {
            set_err(lx->err, lx->errlen, "line %u: unterminated string", start);
            return AS_ERR_INVALID;
        }
        char c = lx->s[lx->pos++];
        if (c == '"') {
            return AS_OK;
        }
        if (c == '\\') {
            char e = lx->pos < lx->len ? lx->s[lx->pos++] : '\0';
            switch (e) {
            case '"':
            case '\\':
            case '/':
                c = e;
                break;
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            default:
                set_err(lx->err, lx->errlen, "line %u: unsupported escape in string", lx->line);
                return AS_ERR_INVALID;
            }
        } else if ((unsigned char)c < 0x20 && c != '\t') {
            /* Includes NUL, which would silently cut a pattern short later. */
            set_err(lx->err, lx->errlen, "line %u: control character in string", lx->line);
            return AS_ERR_INVALID;
        }
        if ((r = as_buf_append(&lx->text, &c, 1)) != AS_OK) {
            return r;
        }
    }
}

static enum as_err lex_next(struct lexer *lx, enum tok *t)
{
    enum as_err r = lex_skip(lx);
    if (r != AS_OK) {
        return r;
    }
    lx->text.len = 0;
    if (lx->text.data != NULL) {
        lx->text.data[0] = '\0';
    }
    if (lx->pos >= lx->len) {
        *t = TOK_EOF;
        return AS_OK;
    }
    unsigned char c = (unsigned char)lx->s[lx->pos];
    static const struct {
        char c;
        enum tok t;
    } punct[] = {
        {'=', TOK_EQUALS},   {'{', TOK_LBRACE},   {'}', TOK_RBRACE},
        {'[', TOK_LBRACKET}, {']', TOK_RBRACKET}, {',', TOK_COMMA},
    };
    for (size_t i = 0; i < sizeof punct / sizeof punct[0]; i++) {
        if (c == (unsigned char)punct[i].c) {
            lx->pos++;
            *t = punct[i].t;
            return AS_OK;
        }
    }
    if (c == '"') {
        *t = TOK_STRING;
        return lex_string(lx);
    }
    if (is_word_char(c)) {
        size_t start = lx->pos;
        while (lx->pos < lx->len && is_word_char((unsigned char)lx->s[lx->pos])) {
            lx->pos++;
        }
        *t = TOK_WORD;
        return as_buf_append(&lx->text, lx->s + start, lx->pos - start);
    }
    if (isprint(c)) {
        set_err(lx->err, lx->errlen, "line %u: unexpected character '%c'", lx->line, c);
    } else {
        set_err(lx->err, lx->errlen, "line %u: unexpected byte 0x%02x", lx->line, c);
    }
    return AS_ERR_INVALID;
}

/* Reads the next token and requires it to be `want`; `what` names it in the error. */
static enum as_err lex_expect(struct lexer *lx, enum tok want, const char *what)
{
    enum tok t;
    enum as_err r = lex_next(lx, &t);
    if (r != AS_OK) {
        return r;
    }
    if (t == want) {
        return AS_OK;
    }
    if (t == TOK_EOF) {
        set_err(lx->err, lx->errlen, "line %u: unexpected end of policy, expected %s", lx->line,
                what);
    } else {
        set_err(lx->err, lx->errlen, "line %u: expected %s", lx->line, what);
    }
    return AS_ERR_INVALID;
}

/*
 * Skips the value of an ignored key whose first token is t: a string, a word, a list of values or
 * an object of key = value / key { ... } entries. Nesting is bounded like JSON's.
 */
static enum as_err hcl_skip_value(struct lexer *lx, enum tok t, int depth)
{
    enum as_err r;
    if (depth > AS_MAX_JSON_DEPTH) {
        set_err(lx->err, lx->errlen, "line %u: nesting deeper than %d", lx->line,
                AS_MAX_JSON_DEPTH);
        return AS_ERR_INVALID;
    }
    switch (t) {
    case TOK_STRING:
    case TOK_WORD:
        return AS_OK;
    case TOK_LBRACKET:
        for (;;) {
            if ((r = lex_next(lx, &t)) != AS_OK) {
                return r;
            }
            if (t == TOK_RBRACKET) {
                return AS_OK;
            }
            if ((r = hcl_skip_value(lx, t, depth + 1)) != AS_OK) {
                return r;
            }
            if ((r = lex_next(lx, &t)) != AS_OK) {
                return r;
            }
            if (t == TOK_RBRACKET) {
                return AS_OK;
            }
            if (t != TOK_COMMA) {
                set_err(lx->err, lx->errlen, "line %u: expected ',' or ']'", lx->line);
                return AS_ERR_INVALID;
            }
        }
    case TOK_LBRACE:
        for (;;) {
            if ((r = lex_next(lx, &t)) != AS_OK) {
                return r;
            }
            if (t == TOK_RBRACE) {
                return AS_OK;
            }
            if (t == TOK_COMMA) {
                continue;
            }
            if (t != TOK_STRING && t != TOK_WORD) {
                set_err(lx->err, lx->errlen, "line %u: expected a key or '}'", lx->line);
                return AS_ERR_INVALID;
            }
            if ((r = lex_next(lx, &t)) != AS_OK) {
                return r;
            }
            if (t == TOK_EQUALS) {
                if ((r = lex_next(lx, &t)) != AS_OK) {
                    return r;
                }
            } else if (t != TOK_LBRACE) {
                set_err(lx->err, lx->errlen, "line %u: expected '=' or '{'", lx->line);
                return AS_ERR_INVALID;
            }
            if ((r = hcl_skip_value(lx, t, depth + 1)) != AS_OK) {
                return r;
            }
        }
    case TOK_EOF:
        set_err(lx->err, lx->errlen, "line %u: unexpected end of policy, expected a value",
                lx->line);
        return AS_ERR_INVALID;
    case TOK_EQUALS:
    case TOK_RBRACE:
    case TOK_RBRACKET:
    case TOK_COMMA:
        break;
    }
    set_err(lx->err, lx->errlen, "line %u: expected a value", lx->line);
    return AS_ERR_INVALID;
}

/* capabilities = ["read", ...] after the key. */
static enum as_err hcl_capabilities(struct lexer *lx, const char *pattern, uint32_t *caps)
{
    enum as_err r;
    enum tok t;
    if ((r = lex_expect(lx, TOK_EQUALS, "'='")) != AS_OK ||
        (r = lex_expect(lx, TOK_LBRACKET, "'['")) != AS_OK) {
        return r;
    }
    for (;;) {
        if ((r = lex_next(lx, &t)) != AS_OK) {
            return r;
        }
        if (t == TOK_RBRACKET) {
            return AS_OK;
        }
        if (t != TOK_STRING) {
            set_err(lx->err, lx->errlen, "line %u: path \"%.64s\": expected a capability string",
                    lx->line, pattern);
            return AS_ERR_INVALID;
        }
        uint32_t bit = 0;
        if (as_cap_parse(lex_text(lx), &bit) != AS_OK) {
            set_err(lx->err, lx->errlen, "path \"%.64s\": invalid capability \"%.32s\"", pattern,
                    lex_text(lx));
            return AS_ERR_INVALID;
        }
        *caps |= bit;
        if ((r = lex_next(lx, &t)) != AS_OK) {
            return r;
        }
        if (t == TOK_RBRACKET) {
            return AS_OK;
        }
        if (t != TOK_COMMA) {
            set_err(lx->err, lx->errlen, "line %u: expected ',' or ']'", lx->line);
            return AS_ERR_INVALID;
        }
    }
}

/* The body of path "PATTERN" { ... } after its '{', up to and including the '}'. */
static enum as_err hcl_rule(struct lexer *lx, const char *pattern, uint32_t *out)
{
    enum as_err r;
    enum tok t;
    uint32_t caps = 0;
    bool have_caps = false;
    bool have_policy = false;
    char key[40];
    for (;;) {
        if ((r = lex_next(lx, &t)) != AS_OK) {
            return r;
        }
        if (t == TOK_RBRACE) {
            break;
        }
        if (t == TOK_COMMA) {
            continue;
        }
        if (t == TOK_EOF) {
            set_err(lx->err, lx->errlen, "line %u: path \"%.64s\": missing '}'", lx->line, pattern);
            return AS_ERR_INVALID;
        }
        if ((t != TOK_WORD && t != TOK_STRING) || lx->text.len >= sizeof key) {
            set_err(lx->err, lx->errlen, "line %u: path \"%.64s\": expected a key", lx->line,
                    pattern);
            return AS_ERR_INVALID;
        }
        memcpy(key, lex_text(lx), lx->text.len + 1);
        if (strcmp(key, "capabilities") == 0 || strcmp(key, "policy") == 0) {
            bool *seen = key[0] == 'c' ? &have_caps : &have_policy;
            if (*seen) {
                /* Duplicate keys are refused, as JSON_REJECT_DUPLICATES does for JSON. */
                set_err(lx->err, lx->errlen, "line %u: path \"%.64s\": duplicate key \"%s\"",
                        lx->line, pattern, key);
                return AS_ERR_INVALID;
            }
            *seen = true;
        }
        if (strcmp(key, "capabilities") == 0) {
            if ((r = hcl_capabilities(lx, pattern, &caps)) != AS_OK) {
                return r;
            }
        } else if (strcmp(key, "policy") == 0) {
            uint32_t lcaps = 0;
            if ((r = lex_expect(lx, TOK_EQUALS, "'='")) != AS_OK ||
                (r = lex_expect(lx, TOK_STRING, "a policy string")) != AS_OK) {
                return r;
            }
            if (legacy_parse(lex_text(lx), &lcaps) != AS_OK) {
                set_err(lx->err, lx->errlen, "path \"%.64s\": invalid policy \"%.32s\"", pattern,
                        lex_text(lx));
                return AS_ERR_INVALID;
            }
            caps |= lcaps;
        } else if (key_ignored(key)) {
            if ((r = lex_next(lx, &t)) != AS_OK) {
                return r;
            }
            if (t == TOK_EQUALS && (r = lex_next(lx, &t)) != AS_OK) {
                return r;
            }
            if ((r = hcl_skip_value(lx, t, 1)) != AS_OK) {
                return r;
            }
        } else if (key_unsupported(key)) {
            set_err(lx->err, lx->errlen, "path \"%.64s\": unsupported key \"%s\"", pattern, key);
            return AS_ERR_INVALID;
        } else {
            set_err(lx->err, lx->errlen, "path \"%.64s\": invalid key \"%.32s\"", pattern, key);
            return AS_ERR_INVALID;
        }
    }
    *out = caps;
    return AS_OK;
}

/*
 * The grammar accepted: { 'path' STRING '{' { KEY '=' VALUE [','] } '}' | 'name' '=' STRING }.
 * Every step consumes input, so the parse is linear in the (capped) text size.
 */
static enum as_err hcl_parse(const char *text, size_t len, struct as_policy *p, char *err,
                             size_t errlen)
{
    enum as_err r = AS_OK;
    char *pattern = NULL;
    struct lexer lx = {.s = text, .len = len, .line = 1, .err = err, .errlen = errlen};
    as_buf_init(&lx.text, AS_MAX_POLICY_BYTES);
    for (;;) {
        enum tok t;
        if ((r = lex_next(&lx, &t)) != AS_OK) {
            goto out;
        }
        if (t == TOK_EOF) {
            break;
        }
        if (t == TOK_WORD && strcmp(lex_text(&lx), "name") == 0) {
            if ((r = lex_expect(&lx, TOK_EQUALS, "'='")) != AS_OK ||
                (r = lex_expect(&lx, TOK_STRING, "a name string")) != AS_OK) {
                goto out;
            }
            continue;
        }
        if (t != TOK_WORD || strcmp(lex_text(&lx), "path") != 0) {
            if (t == TOK_WORD) {
                set_err(err, errlen, "line %u: invalid key \"%.32s\"", lx.line, lex_text(&lx));
            } else {
                set_err(err, errlen, "line %u: expected 'path'", lx.line);
            }
            r = AS_ERR_INVALID;
            goto out;
        }
        if ((r = lex_expect(&lx, TOK_STRING, "a quoted path")) != AS_OK) {
            goto out;
        }
        size_t plen = lx.text.len;
        pattern = strndup(lex_text(&lx), plen);
        if (pattern == NULL) {
            r = AS_ERR_NOMEM;
            goto out;
        }
        if ((r = lex_expect(&lx, TOK_LBRACE, "'{'")) != AS_OK) {
            goto out;
        }
        uint32_t caps = 0;
        if ((r = hcl_rule(&lx, pattern, &caps)) != AS_OK) {
            goto out;
        }
        if ((r = policy_add(p, pattern, plen, caps, err, errlen)) != AS_OK) {
            goto out;
        }
        free(pattern);
        pattern = NULL;
    }
out:
    free(pattern);
    as_buf_free(&lx.text, false);
    return r;
}

enum as_err as_policy_parse(const char *text, size_t len, struct as_policy **out, char *err,
                            size_t errlen)
{
    enum as_err r = AS_OK;
    struct as_policy *p = NULL;
    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    if (out == NULL || (text == NULL && len > 0)) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    if (len > AS_MAX_POLICY_BYTES) {
        set_err(err, errlen, "policy is larger than %d bytes", AS_MAX_POLICY_BYTES);
        return AS_ERR_TOO_LARGE;
    }
    if ((p = calloc(1, sizeof *p)) == NULL) {
        return AS_ERR_NOMEM;
    }
    size_t i = 0;
    while (i < len && isspace((unsigned char)text[i])) {
        i++;
    }
    if (i < len && text[i] == '{') {
        r = json_parse(text, len, p, err, errlen);
    } else {
        r = hcl_parse(text, len, p, err, errlen);
    }
    if (r == AS_OK && p->n == 0) {
        /* Vault would store it, but a policy without paths is always a mistake here. */
        set_err(err, errlen, "policy has no paths");
        r = AS_ERR_INVALID;
    }
    if (r != AS_OK) {
        goto out;
    }
    *out = p;
    p = NULL;
out:
    as_policy_free(p);
    return r;
}

/* ---- the merged ACL ---- */

struct exact_rule {
    char *pattern; /* owned */
    uint32_t caps;
};

/*
 * A glob pattern with what Vault's priority rules look at, computed once. '+' is a wildcard only
 * when it is a whole segment (as in Vault, which compares segments to "+"); '*' only as the last
 * character. Elsewhere both are literal.
 */
struct glob_rule {
    char *pattern;   /* owned, including the trailing '*' if any */
    size_t core_len; /* length without the trailing '*' */
    size_t first_wc; /* offset of the first '+' segment, else of the trailing '*' */
    size_t n_wc;     /* number of '+' segments */
    bool prefix;     /* ends in '*' */
    uint32_t caps;
};

struct as_acl {
    _Atomic unsigned refs; /* shared by the ACL cache and the requests using it */
    bool root;
    struct exact_rule *exact; /* sorted by strcmp for binary search */
    size_t n_exact;
    struct glob_rule *globs; /* sorted by priority, highest first */
    size_t n_globs;
};

struct as_acl *as_acl_ref(struct as_acl *acl)
{
    if (acl != NULL) {
        atomic_fetch_add(&acl->refs, 1);
    }
    return acl;
}

void as_acl_free(struct as_acl *acl)
{
    if (acl == NULL || atomic_fetch_sub(&acl->refs, 1) != 1) {
        return;
    }
    for (size_t i = 0; i < acl->n_exact; i++) {
        free(acl->exact[i].pattern);
    }
    for (size_t i = 0; i < acl->n_globs; i++) {
        free(acl->globs[i].pattern);
    }
    free(acl->exact);
    free(acl->globs);
    free(acl);
}

static bool is_wc_segment(const char *core, size_t core_len, size_t i)
{
    return core[i] == '+' && (i == 0 || core[i - 1] == '/') &&
           (i + 1 == core_len || core[i + 1] == '/');
}

/* Fills everything but pattern and caps; returns whether the pattern is a glob. */
static bool glob_shape(const char *pattern, struct glob_rule *g)
{
    size_t len = strlen(pattern);
    g->prefix = len > 0 && pattern[len - 1] == '*';
    g->core_len = g->prefix ? len - 1 : len;
    g->first_wc = g->core_len;
    g->n_wc = 0;
    for (size_t i = 0; i < g->core_len; i++) {
        if (is_wc_segment(pattern, g->core_len, i)) {
            if (g->n_wc == 0) {
                g->first_wc = i;
            }
            g->n_wc++;
        }
    }
    return g->prefix || g->n_wc > 0;
}

/*
 * Vault's priority order ("Priority matching" in its policy docs): P1 is lower priority when its
 * first '+' or '*' comes earlier, when it ends in '*' and P2 does not, when it has more '+'
 * segments, when it is shorter, and when it is smaller lexicographically. qsort puts the highest
 * priority first. Patterns are unique after merging, so the order is total.
 */
static int glob_cmp(const void *a, const void *b)
{
    const struct glob_rule *x = a;
    const struct glob_rule *y = b;
    if (x->first_wc != y->first_wc) {
        return x->first_wc > y->first_wc ? -1 : 1;
    }
    if (x->prefix != y->prefix) {
        return x->prefix ? 1 : -1;
    }
    if (x->n_wc != y->n_wc) {
        return x->n_wc < y->n_wc ? -1 : 1;
    }
    if (x->core_len != y->core_len) {
        return x->core_len > y->core_len ? -1 : 1;
    }
    int c = memcmp(x->pattern, y->pattern, x->core_len);
    return c > 0 ? -1 : (c < 0 ? 1 : 0);
}

struct merge_ent {
    const char *pattern; /* borrowed from a policy for the duration of as_acl_new */
    uint32_t caps;
};

static int merge_cmp(const void *a, const void *b)
{
    return strcmp(((const struct merge_ent *)a)->pattern, ((const struct merge_ent *)b)->pattern);
}

/* Merges the rules of pols[0..n) into acl (NULL entries are skipped). */
static enum as_err acl_build(struct as_acl *acl, const struct as_policy *const *pols, size_t n)
{
    enum as_err r = AS_OK;
    struct merge_ent *ents = NULL;
    struct glob_rule shape;
    size_t total = 0;
    size_t k = 0;
    size_t m = 0;
    size_t n_glob = 0;
    for (size_t i = 0; i < n; i++) {
        if (pols[i] == NULL) {
            continue;
        }
        if (pols[i]->n > SIZE_MAX / sizeof *ents - total) {
            r = AS_ERR_NOMEM;
            goto out;
        }
        total += pols[i]->n;
    }
    if (total == 0) {
        goto out;
    }
    if ((ents = calloc(total, sizeof *ents)) == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; pols[i] != NULL && j < pols[i]->n; j++) {
            ents[k].pattern = pols[i]->rules[j].pattern;
            ents[k].caps = pols[i]->rules[j].caps;
            k++;
        }
    }
    /*
     * Copies of one pattern (from several policies, or repeated in one) become one rule: the union
     * of their capabilities, or deny alone if any of them denies (vault/acl.go NewACL).
     */
    qsort(ents, total, sizeof *ents, merge_cmp);
    for (size_t i = 0; i < total; i++) {
        if (m > 0 && strcmp(ents[m - 1].pattern, ents[i].pattern) == 0) {
            uint32_t u = ents[m - 1].caps | ents[i].caps;
            ents[m - 1].caps = (u & AS_CAP_DENY) != 0 ? AS_CAP_DENY : u;
            continue;
        }
        ents[m++] = ents[i];
        if (glob_shape(ents[i].pattern, &shape)) {
            n_glob++;
        }
    }
    if ((acl->exact = calloc(m - n_glob + 1, sizeof *acl->exact)) == NULL ||
        (acl->globs = calloc(n_glob + 1, sizeof *acl->globs)) == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    /* ents is in strcmp order, so the exact rules come out sorted for the binary search. */
    for (size_t i = 0; i < m; i++) {
        char *copy = strdup(ents[i].pattern);
        if (copy == NULL) {
            r = AS_ERR_NOMEM;
            goto out;
        }
        if (glob_shape(copy, &shape)) {
            shape.pattern = copy;
            shape.caps = ents[i].caps;
            acl->globs[acl->n_globs++] = shape;
        } else {
            acl->exact[acl->n_exact].pattern = copy;
            acl->exact[acl->n_exact].caps = ents[i].caps;
            acl->n_exact++;
        }
    }
    qsort(acl->globs, acl->n_globs, sizeof *acl->globs, glob_cmp);
out:
    free(ents);
    return r;
}

enum as_err as_acl_new(const struct as_policy *const *pols, size_t n, bool root,
                       struct as_acl **out)
{
    enum as_err r = AS_OK;
    struct as_acl *acl = NULL;
    if (out == NULL || (pols == NULL && n > 0)) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    if ((acl = calloc(1, sizeof *acl)) == NULL) {
        return AS_ERR_NOMEM;
    }
    /* The root ACL ignores the policies: it grants everything, as Vault's root policy does. */
    acl->root = root;
    atomic_init(&acl->refs, 1);
    if (!root && (r = acl_build(acl, pols, n)) != AS_OK) {
        goto out;
    }
    *out = acl;
    acl = NULL;
out:
    as_acl_free(acl);
    return r;
}

/*
 * Whether path matches g: literal characters compare equal, a '+' segment consumes one or more
 * characters up to the next '/', and after the core the path must end unless g is a prefix glob.
 * '+' segments are always followed by '/' or the end of the core, so consuming the whole segment
 * never needs to backtrack.
 */
static bool glob_match(const struct glob_rule *g, const char *path)
{
    const char *s = path;
    for (size_t i = 0; i < g->core_len; i++) {
        if (g->n_wc > 0 && is_wc_segment(g->pattern, g->core_len, i)) {
            if (*s == '\0' || *s == '/') {
                return false;
            }
            while (*s != '\0' && *s != '/') {
                s++;
            }
            continue;
        }
        if (*s != g->pattern[i]) {
            return false;
        }
        s++;
    }
    return g->prefix || *s == '\0';
}

static uint32_t granted(uint32_t caps)
{
    return (caps & AS_CAP_DENY) != 0 ? 0 : (caps & AS_CAP_ALL);
}

uint32_t as_acl_caps(const struct as_acl *acl, const char *path)
{
    if (acl == NULL || path == NULL) {
        return 0;
    }
    if (acl->root) {
        return AS_CAP_ALL;
    }
    /* Vault strips leading slashes from request paths too, as defence in depth. */
    while (*path == '/') {
        path++;
    }
    /* An exact pattern wins outright, even over a glob that denies. */
    size_t lo = 0;
    size_t hi = acl->n_exact;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(path, acl->exact[mid].pattern);
        if (c == 0) {
            return granted(acl->exact[mid].caps);
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    for (size_t i = 0; i < acl->n_globs; i++) {
        if (glob_match(&acl->globs[i], path)) {
            return granted(acl->globs[i].caps);
        }
    }
    return 0;
}
