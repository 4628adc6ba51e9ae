/*
 * acl.h: policies, capabilities and tokens (Vault's model, SPEC §4).
 *
 * Policies: Vault's JSON policy syntax, its HCL form, and the legacy "policy = read|write|deny|sudo"
 * shorthand. An ACL is the merge of several policies; as_acl_caps answers which capabilities a
 * path is granted, with Vault's matching rules: an exact path beats every glob; among globs one
 * winner by Vault's priority rules; copies of the same pattern from several policies are merged
 * and deny among them wins; no match grants nothing.
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
#define AS_CAP_ALL                                                                      \
    (AS_CAP_CREATE | AS_CAP_READ | AS_CAP_UPDATE | AS_CAP_DELETE | AS_CAP_LIST |        \
     AS_CAP_SUDO)

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

/* Validates a policy name: 1..128 of [A-Za-z0-9_.@-], not "root" when for_write. */
bool as_policy_name_ok(const char *name);

struct as_acl;
/*
 * Builds the merged ACL of n policies (borrowed for the call only). root=true builds the root ACL
 * that grants every capability on every path (the policies are then ignored).
 */
enum as_err as_acl_new(const struct as_policy *const *pols, size_t n, bool root,
                       struct as_acl **out) AS_WUR;
void as_acl_free(struct as_acl *acl);
/* Capabilities granted on path (no leading slash, e.g. "sys/policy/foo"); 0 if denied/no match.
 * Never contains AS_CAP_DENY: a deny yields 0. */
uint32_t as_acl_caps(const struct as_acl *acl, const char *path);

/* ---- tokens (acl/tokens.c) ---- */
/* AS_TOKENS_API_BEGIN */
/* AS_TOKENS_API_END */

#endif
