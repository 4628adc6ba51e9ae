/*
 * intentions.c: the service-to-service decision engine (SPEC §7, Consul-style intentions).
 *
 * A rule set is built once from the stored intentions and is immutable afterwards, so any number
 * of threads may decide against it without locks. Building sorts the rules into precedence order
 * (most specific destination first, then most specific source, then deny before allow); a
 * decision is then a scan that stops at the first rule whose destination and source both match.
 * The first match is exactly the rule SPEC §7 selects: no rule after it can have a more specific
 * destination, nor an equally specific destination with a more specific source, and at equal
 * precedence a deny sorts ahead of an allow.
 *
 * Precedence of one pattern: "*" < any prefix < any exact ID. Among prefixes, a longer one is more
 * specific, measured in path segments (the segments the prefix fixes before its final "*"). Bytes
 * would order matching prefixes the same way: two prefixes that both match one ID are both
 * leading parts of it ending on a "/", so the one with more bytes also has more segments. Two
 * matching patterns of equal precedence are therefore the same pattern.
 *
 * Patterns are written here as a stem plus "*", because a slash followed by a star would end
 * this comment: a prefix is a "spiffe://" ID path followed by the segment "*".
 */
#include <stdlib.h>
#include <string.h>

#include "acl/acl.h"

/* A SPIFFE ID is at most 2048 bytes (SPIFFE-ID §2.3); a prefix pattern adds its "/" and "*". */
#define AS_INTENTION_MAX_PATTERN 2050
/* Ids are UUIDs (36 bytes); the cap only keeps a damaged row from sizing the arena. */
#define AS_INTENTION_MAX_ID 128

#define SPIFFE_SCHEME "spiffe://"
#define SPIFFE_SCHEME_LEN (sizeof SPIFFE_SCHEME - 1)

enum pat_kind { PAT_ANY, PAT_PREFIX, PAT_EXACT };

/* Precedence of an exact ID: above every prefix, whatever its length. */
#define PREC_EXACT UINT32_MAX

struct pattern {
    const char *text; /* in the arena; for a prefix, the stem (ending in "/") plus the "*" */
    size_t len;       /* bytes to compare: the whole ID, or the stem without the "*" */
    uint32_t prec;    /* 0 for "*", 1 + fixed segments for a prefix, PREC_EXACT for an ID */
    enum pat_kind kind;
};

struct rule {
    const char *id; /* in the arena */
    struct pattern src;
    struct pattern dst;
    bool allow;
};

struct as_intentions {
    struct rule *rules; /* in precedence order */
    size_t n;
    char *arena; /* every string of every rule, NUL-terminated */
};

bool as_intention_pattern_ok(const char *pattern)
{
    const char *rest, *star;
    size_t len;

    if (pattern == NULL) {
        return false;
    }
    len = strnlen(pattern, AS_INTENTION_MAX_PATTERN + 1);
    if (len > AS_INTENTION_MAX_PATTERN) {
        return false;
    }
    if (strcmp(pattern, "*") == 0) {
        return true;
    }
    if (strncmp(pattern, SPIFFE_SCHEME, SPIFFE_SCHEME_LEN) != 0) {
        return false;
    }
    /* A trust domain must follow the scheme; its validity is the caller's to check. */
    rest = pattern + SPIFFE_SCHEME_LEN;
    if (rest[0] == '\0' || rest[0] == '/' || rest[0] == '*') {
        return false;
    }
    /*
     * The only star allowed is a whole last segment: one star, the final byte, right after a
     * slash. Since the trust domain is not empty, that slash ends at least one byte of it.
     */
    star = strchr(rest, '*');
    if (star == NULL) {
        return true;
    }
    return star[1] == '\0' && star[-1] == '/';
}

/* Classifies a pattern already accepted by as_intention_pattern_ok. */
static struct pattern pattern_make(const char *text)
{
    struct pattern p = {.text = text, .len = strlen(text)};
    uint32_t slashes = 0;

    if (strcmp(text, "*") == 0) {
        p.kind = PAT_ANY;
        p.prec = 0;
        return p;
    }
    if (text[p.len - 1] != '*') {
        p.kind = PAT_EXACT;
        p.prec = PREC_EXACT;
        return p;
    }
    p.kind = PAT_PREFIX;
    p.len--; /* compare the stem, which keeps its trailing "/" as the segment boundary */
    for (size_t i = SPIFFE_SCHEME_LEN; i < p.len; i++) {
        slashes += text[i] == '/';
    }
    /*
     * The stem's slashes after the scheme are the fixed segments plus the one closing the trust
     * domain, so the stem of the whole trust domain ranks 1 and each segment adds one. The
     * length cap keeps this far below PREC_EXACT.
     */
    p.prec = slashes;
    return p;
}

/*
 * Whether s matches p. A prefix requires at least one more non-empty segment after the stem:
 * the stem ends in "/", so comparing it as a leading part already enforces the segment boundary
 * (".../ns/prod/" is not a leading part of ".../ns/production/a"), and the path itself
 * (".../ns/prod") is shorter than the stem.
 */
static bool pattern_match(const struct pattern *p, const char *s)
{
    switch (p->kind) {
    case PAT_ANY:
        return true;
    case PAT_EXACT:
        return strcmp(p->text, s) == 0;
    case PAT_PREFIX:
        return strncmp(p->text, s, p->len) == 0 && s[p->len] != '\0' && s[p->len] != '/';
    }
    return false;
}

/* Higher precedence first, so the scan meets the most specific rule first. */
static int prec_cmp(uint32_t a, uint32_t b)
{
    return a > b ? -1 : a < b ? 1 : 0;
}

/*
 * Destination precedence, then source precedence, then deny before allow: the order of SPEC §7.
 * The remaining keys only make the order total, so that the same rules always produce the same
 * decision and the same deciding id, whatever order the store returned them in.
 */
static int rule_cmp(const void *a, const void *b)
{
    const struct rule *x = a, *y = b;
    int c;

    if ((c = prec_cmp(x->dst.prec, y->dst.prec)) != 0 ||
        (c = prec_cmp(x->src.prec, y->src.prec)) != 0) {
        return c;
    }
    if (x->allow != y->allow) {
        return x->allow ? 1 : -1;
    }
    if ((c = strcmp(x->id, y->id)) != 0 || (c = strcmp(x->dst.text, y->dst.text)) != 0) {
        return c;
    }
    return strcmp(x->src.text, y->src.text);
}

/* Adds strlen(s) + 1 to *total; false on overflow. */
static bool size_add(size_t *total, const char *s)
{
    size_t n = strlen(s) + 1;

    if (n > SIZE_MAX - *total) {
        return false;
    }
    *total += n;
    return true;
}

/* Copies s into the arena at *pos and advances it; the arena was sized by size_add. */
static const char *arena_put(char **pos, const char *s)
{
    size_t n = strlen(s) + 1;
    char *dst = *pos;

    memcpy(dst, s, n);
    *pos += n;
    return dst;
}

enum as_err as_intentions_build(const struct as_intention *rules, size_t n,
                                struct as_intentions **out)
{
    enum as_err r = AS_OK;
    struct as_intentions *set = NULL;
    size_t total = 0, idlen;
    char *pos;

    if (out == NULL) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    if (rules == NULL && n > 0) {
        return AS_ERR_INVALID;
    }
    /*
     * Validate everything before allocating. An empty id is refused because "" is what a
     * decision reports when no rule matched.
     */
    for (size_t i = 0; i < n; i++) {
        const struct as_intention *in = &rules[i];
        if (in->id == NULL || !as_intention_pattern_ok(in->source) ||
            !as_intention_pattern_ok(in->destination)) {
            return AS_ERR_INVALID;
        }
        idlen = strnlen(in->id, AS_INTENTION_MAX_ID + 1);
        if (idlen == 0 || idlen > AS_INTENTION_MAX_ID) {
            return AS_ERR_INVALID;
        }
        if (!size_add(&total, in->id) || !size_add(&total, in->source) ||
            !size_add(&total, in->destination)) {
            return AS_ERR_TOO_LARGE;
        }
    }
    set = calloc(1, sizeof *set);
    if (set == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (n > 0) {
        set->rules = calloc(n, sizeof *set->rules);
        set->arena = malloc(total);
        if (set->rules == NULL || set->arena == NULL) {
            r = AS_ERR_NOMEM;
            goto out;
        }
    }
    pos = set->arena;
    for (size_t i = 0; i < n; i++) {
        struct rule *ru = &set->rules[i];
        ru->id = arena_put(&pos, rules[i].id);
        ru->src = pattern_make(arena_put(&pos, rules[i].source));
        ru->dst = pattern_make(arena_put(&pos, rules[i].destination));
        ru->allow = rules[i].allow;
    }
    set->n = n;
    if (n > 1) {
        qsort(set->rules, n, sizeof *set->rules, rule_cmp);
    }
    *out = set;
    set = NULL;
out:
    as_intentions_free(set);
    return r;
}

void as_intentions_free(struct as_intentions *set)
{
    if (set == NULL) {
        return;
    }
    free(set->rules);
    free(set->arena);
    free(set);
}

bool as_intentions_decide(const struct as_intentions *set, const char *src, const char *dst,
                          bool default_allow, const char **id)
{
    if (id != NULL) {
        *id = "";
    }
    /* A missing identity is a caller bug; it fails closed even when the default is allow. */
    if (src == NULL || dst == NULL) {
        return false;
    }
    /* No rule set loaded is the same as no rules: the configured default decides. */
    if (set == NULL) {
        return default_allow;
    }
    /* Destination first: it is the more selective test and the primary sort key. */
    for (size_t i = 0; i < set->n; i++) {
        const struct rule *ru = &set->rules[i];
        if (pattern_match(&ru->dst, dst) && pattern_match(&ru->src, src)) {
            if (id != NULL) {
                *id = ru->id;
            }
            return ru->allow;
        }
    }
    return default_allow;
}
