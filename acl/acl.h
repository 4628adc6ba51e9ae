/*
 * acl.h: policies, capabilities and tokens (Vault's model, SPEC §4).
 *
 * Policies: Vault's JSON policy syntax, its HCL form, and the legacy "policy =
 * read|write|deny|sudo" shorthand. An ACL is the merge of several policies; as_acl_caps answers
 * which capabilities a path is granted, with Vault's matching rules: an exact path beats every
 * glob; among globs one winner by Vault's priority rules; copies of the same pattern from several
 * policies are merged and deny among them wins; no match grants nothing.
 */
#ifndef AS_ACL_H
#define AS_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/common.h"
#include "storage/store.h"

/* ---- capabilities and policies ---- */
enum as_cap {
    AS_CAP_CREATE = 1u << 0,
    AS_CAP_READ = 1u << 1,
    AS_CAP_UPDATE = 1u << 2,
    AS_CAP_DELETE = 1u << 3,
    AS_CAP_LIST = 1u << 4,
    AS_CAP_SUDO = 1u << 5,
    AS_CAP_DENY = 1u << 6,
};
#define AS_CAP_ALL \
    (AS_CAP_CREATE | AS_CAP_READ | AS_CAP_UPDATE | AS_CAP_DELETE | AS_CAP_LIST | AS_CAP_SUDO)

#define AS_MAX_POLICY_BYTES (64 * 1024)
#define AS_MAX_POLICY_PATHS 1024

struct as_policy;

/*
 * Parses policy text: JSON ({"path": {"PATTERN": {"capabilities": [...]} | {"policy": "read"}}}),
 * or HCL (path "PATTERN" { capabilities = ["read"] } / policy = "write"). Unknown capabilities,
 * a non-string pattern, a non-object rule, an empty policy, text over AS_MAX_POLICY_BYTES and
 * duplicate JSON keys are AS_ERR_INVALID (AS_ERR_TOO_LARGE for size), with a reason in err
 * (>= 160 bytes, may be NULL). *out is freed with as_policy_free.
 */
enum as_err as_policy_parse(const char *text, size_t len, struct as_policy **out, char *err,
                            size_t errlen) AS_WUR;
void as_policy_free(struct as_policy *p);

/* Parses a capability name ("read", ...). AS_ERR_INVALID if unknown. */
enum as_err as_cap_parse(const char *name, uint32_t *cap) AS_WUR;
/* Appends capability names for the bits in caps to arr (a JSON array), in Vault's order. */
void as_caps_to_json(uint32_t caps, json_t *arr);

/* Validates a policy name: 1..128 of [A-Za-z0-9_.@-]. */
bool as_policy_name_ok(const char *name);

struct as_acl;
/*
 * Builds the merged ACL of n policies (borrowed for the call only). root=true builds the root ACL
 * that grants every capability on every path (the policies are then ignored).
 */
enum as_err as_acl_new(const struct as_policy *const *pols, size_t n, bool root,
                       struct as_acl **out) AS_WUR;
/* Drops a reference (the last one frees; NULL ok). An ACL is immutable once made, so references
 * may be used from several threads. */
void as_acl_free(struct as_acl *acl);
/* Takes another reference; returns acl. */
struct as_acl *as_acl_ref(struct as_acl *acl);
/* Capabilities granted on path (no leading slash, e.g. "sys/policy/foo"); 0 if denied/no match.
 * Never contains AS_CAP_DENY: a deny yields 0. */
uint32_t as_acl_caps(const struct as_acl *acl, const char *path);

/* ---- tokens (acl/tokens.c) ---- */
/* AS_TOKENS_API_BEGIN */
/*
 * Tokens: Vault's service tokens. Secrets are "ast." + 43 base64url chars (32 random bytes); the
 * store keeps only HMAC-SHA256(server key, secret). The server key is made once and kept in the
 * store's settings.
 */
#define AS_TOKEN_PREFIX "ast."
#define AS_TOKEN_SECRET_LEN 47            /* strlen("ast.") + 43 */
#define AS_TOKEN_MAX_TTL (768 * 3600)     /* Vault's system max_lease_ttl */
#define AS_TOKEN_DEFAULT_TTL (768 * 3600) /* Vault's default_lease_ttl */

struct as_tokens;

/* Loads (or creates once) the server HMAC key and the built-in default policy. */
enum as_err as_tokens_new(struct as_store *st, struct as_tokens **out) AS_WUR;
void as_tokens_free(struct as_tokens *tk);

/* The text of the built-in "default" policy (JSON), used when the store has none. */
const char *as_tokens_default_policy(void);

/*
 * Resolves a presented secret to its token. Anything that is not a live token of this server
 * (bad shape, unknown, expired, an expired or revoked ancestor) is AS_ERR_PERMISSION.
 * AS_ERR_STORE when the store fails. *out is freed with as_token_rec_free.
 */
enum as_err as_tokens_resolve(struct as_tokens *tk, const char *secret,
                              struct as_token_rec **out) AS_WUR;
/* Same, by accessor (for lookup-accessor and friends): AS_ERR_NOT_FOUND when not live. */
enum as_err as_tokens_by_accessor(struct as_tokens *tk, const char *accessor,
                                  struct as_token_rec **out) AS_WUR;

/* Builds the ACL of a token's policies (root policy → root ACL). Unknown policies grant nothing. */
enum as_err as_tokens_acl(struct as_tokens *tk, const struct as_token_rec *t,
                          struct as_acl **out) AS_WUR;
/* Hits and misses of the resolved-token and ACL caches since start (sys/metrics). */
void as_tokens_cache_stats(struct as_tokens *tk, uint64_t *hits, uint64_t *misses);
/* true if t carries the root policy. */
bool as_token_is_root(const struct as_token_rec *t);

/*
 * Consumes one use of a limited-use token. *last is set when this was its final use: the token
 * has then been revoked already (the current request may still proceed, as in Vault).
 */
enum as_err as_tokens_use(struct as_tokens *tk, struct as_token_rec *t, bool *last) AS_WUR;

/* Token creation parameters (Vault's auth/token/create body, already type-checked). */
struct as_token_params {
    json_t *policies;             /* array of names, or NULL to inherit the parent's */
    json_t *meta;                 /* object of strings, or NULL */
    const char *display_name;     /* NULL → "token"; else "token-<sanitized name>" */
    const char *raw_display_name; /* used as is when set (login tokens: "<mount>-<user>") */
    const char *path;             /* creation path, e.g. "auth/token/create" */
    const char *mount;            /* "token" */
    json_t *spiffe_ids;           /* array or NULL (inherit) */
    json_t *allowed_dns;          /* array or NULL (inherit) */
    int64_t ttl;                  /* seconds; used when has_ttl */
    int64_t explicit_max_ttl;     /* 0 = none */
    int64_t period;               /* 0 = none */
    int64_t num_uses;             /* 0 = unlimited */
    bool has_ttl;
    bool renewable; /* default true */
    bool no_default_policy;
    bool orphan;      /* no parent link */
    bool caller_sudo; /* the caller may set orphan-only fields */
    /* A login token (auth method): parent is NULL, the policies and identities are the role's
     * and are taken as given; the token is an orphan. */
    bool login;
    const char *login_cert; /* serial of our X.509-SVID it logged in with, or NULL */
    /* Login tokens only: the role's token_bound_cidrs (array, NULL or [] for none). Any other
     * token inherits its parent's networks. */
    json_t *bound_cidrs;
};

/*
 * Creates a token as a child of parent (NULL for a login token, p->login). Applies Vault's
 * rules: policies default to the parent's, a non-root parent may only give a subset of its own
 * policies, "default" is added unless no_default_policy, TTLs are capped at explicit_max_ttl
 * and AS_TOKEN_MAX_TTL (a warning string is appended to warnings, a JSON array, when capped),
 * spiffe_ids/allowed_dns may only narrow the parent's sets. The row is committed before return.
 * *secret (wipe with as_free_secret_str) and *out (as_token_rec_free) are new.
 * AS_ERR_INVALID with a reason in err (>= 160 bytes) for a refused request.
 */
enum as_err as_tokens_create(struct as_tokens *tk, const struct as_token_rec *parent,
                             const struct as_token_params *p, char **secret,
                             struct as_token_rec **out, json_t *warnings, char *err,
                             size_t errlen) AS_WUR;
/*
 * Whether t may be used from the client address addr (text): true when t is bound to no
 * network, else only when addr lies in one of its networks (Vault's token_bound_cidrs). Fails
 * closed: a stored list that does not parse, or an address that does not, admits no one.
 */
bool as_token_addr_ok(const struct as_token_rec *t, const char *addr);
/* Creates the root token (policies ["root"], no TTL, orphan, path auth/token/root). */
enum as_err as_tokens_create_root(struct as_tokens *tk, char **secret,
                                  struct as_token_rec **out) AS_WUR;

/*
 * Renews t: the new TTL is increment (when > 0) or the token's original TTL, capped at its
 * explicit max TTL and AS_TOKEN_MAX_TTL counted from its creation (warning appended when
 * capped). A token without expiry is left as is (*ttl = 0). Not renewable → AS_ERR_INVALID.
 * Updates t in place and commits.
 */
enum as_err as_tokens_renew(struct as_tokens *tk, struct as_token_rec *t, int64_t increment,
                            int64_t *ttl, json_t *warnings, char *err, size_t errlen) AS_WUR;

/* Revokes a token; tree=true revokes its descendants too, else they become orphans. Committed.
 * AS_ERR_NOT_FOUND if it does not exist. */
enum as_err as_tokens_revoke(struct as_tokens *tk, const char *accessor, bool tree) AS_WUR;

/* Seconds left before t expires (0 for a token without expiry, never negative). */
int64_t as_token_ttl_left(const struct as_token_rec *t, int64_t now);

/* Called whenever a policy is written or deleted, so cached ACLs are rebuilt. */
void as_tokens_policy_changed(struct as_tokens *tk);

/* HMAC-SHA256 of data under the server key (for bootstrap codes). */
enum as_err as_tokens_hmac(struct as_tokens *tk, const void *data, size_t len,
                           unsigned char out[32]) AS_WUR;
/* AS_TOKENS_API_END */

/* ---- intentions (acl/intentions.c), SPEC §7 ---- */
/*
 * An intention's source or destination: an exact SPIFFE ID, a prefix "spiffe://td/a/b/" "*" that
 * matches IDs strictly below that path on a segment boundary ("spiffe://td/ns/prod/" "*" matches
 * ".../ns/prod/a" but not ".../ns/prod" nor ".../ns/production/a"), or "*". Checks a pattern
 * (the ID part with as_spiffe_id_check-equivalent rules is the caller's; here: shape only).
 * (Prefixes are written as two adjacent literals here because slash-star would open a comment.)
 */
bool as_intention_pattern_ok(const char *pattern);

struct as_intentions;
/* One rule as the decision engine sees it (strings borrowed for the call to _build only). */
struct as_intention {
    const char *id;
    const char *source;
    const char *destination;
    bool allow;
};
/* Builds an immutable, pre-sorted rule set (copies everything). */
enum as_err as_intentions_build(const struct as_intention *rules, size_t n,
                                struct as_intentions **out) AS_WUR;
void as_intentions_free(struct as_intentions *set);
/*
 * Decides src → dst: the most specific destination wins (exact > longer prefix > "*"), then the
 * most specific source among those; at equal precedence deny wins; no match → default_allow.
 * *id (borrowed from the set, "" when no rule matched) names the deciding intention. No
 * allocation; safe to call from many threads.
 */
bool as_intentions_decide(const struct as_intentions *set, const char *src, const char *dst,
                          bool default_allow, const char **id);

#endif
