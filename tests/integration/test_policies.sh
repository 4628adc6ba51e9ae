#!/usr/bin/env bash
# test_policies.sh: capabilities granted by policies (exact beats glob, deny merging, + globs, sudo),
# live policy updates, revocation, policy syntaxes (JSON, HCL, legacy) and the sys/policy and
# sys/policies/acl API shapes and error cases.
set -euo pipefail
# shellcheck source=lib.sh
source "$AUTHSVC_SRC/tests/integration/lib.sh"

jv() { jq -r "$1" <<<"$BODY" 2>/dev/null || echo "<not json>"; }
# st METHOD PATH BODY TOKEN: echo the status only
st() {
    api "$1" "$2" "${3-}" "$4"
    echo "$STATUS"
}
# body_policy TEXT: {"policy": TEXT}
body_policy() { jq -nc --arg p "$1" '{policy:$p}'; }
# write_policy NAME TEXT: via sys/policy, expect 204
write_policy() {
    api POST "sys/policy/$1" "$(body_policy "$2")"
    check_status 204 "write policy $1"
}
# mktoken JSON: root-created token, sets TOK
mktoken() {
    api POST auth/token/create "$1"
    check_status 200 "create token $1"
    TOK=$(jv '.auth.client_token // "none"')
}
has_key() { jq -r --arg k "$2" "$1|index(\$k)!=null" <<<"$BODY" 2>/dev/null || echo false; }

start_server

P_READ='{"path":{"sys/policy/*":{"capabilities":["read"]},"sys/policies/acl/*":{"capabilities":["read"]}}}'
write_policy p-read "$P_READ"
write_policy alpha '{"path":{"nothing/here":{"capabilities":["read"]}}}'
X_POL='{"path":{"x/*":{"capabilities":["read"]}}}'

# ---------- a token holds exactly what its policies grant ----------
mktoken '{"policies":["p-read"]}'
T1=$TOK
check "p-read token: GET sys/policy/default is 200" "$(st GET sys/policy/default "" "$T1")" 200
check "p-read token: GET sys/policies/acl/default is 200" "$(st GET sys/policies/acl/default "" "$T1")" 200
api POST sys/policies/acl/x "$(body_policy "$X_POL")" "$T1"
check_status 403 "p-read token: POST sys/policies/acl/x is 403"
check "p-read token: 403 says permission denied" "$(jv '.errors[0]')" "permission denied"
check "refused write stored nothing (root GET sys/policies/acl/x is 404)" "$(st GET sys/policies/acl/x "" "$ROOT_TOKEN")" 404
check "p-read token: POST sys/policy/x is 403" "$(st POST sys/policy/x "$(body_policy "$X_POL")" "$T1")" 403
check "p-read token: DELETE sys/policy/alpha is 403" "$(st DELETE sys/policy/alpha "" "$T1")" 403
check "p-read token: LIST auth/token/accessors is 403" "$(st LIST auth/token/accessors "" "$T1")" 403
check "p-read token: POST auth/token/create is 403" "$(st POST auth/token/create '{}' "$T1")" 403
check "p-read token: lookup-self (default policy) is 200" "$(st GET auth/token/lookup-self "" "$T1")" 200
check "p-read token: lookup of another token is 403" \
    "$(st POST auth/token/lookup "$(jq -nc --arg t "$ROOT_TOKEN" '{token:$t}')" "$T1")" 403

mktoken '{"policies":["default"]}'
TD=$TOK
check "default token: GET sys/policy/default is 403" "$(st GET sys/policy/default "" "$TD")" 403
check "default token: LIST sys/policy is 403" "$(st LIST sys/policy "" "$TD")" 403
check "default token: renew-self is 200" "$(st POST auth/token/renew-self '' "$TD")" 200
check "default token: revoke-self is 204" "$(st POST auth/token/revoke-self '' "$TD")" 204

# ---------- grant via another policy ----------
write_policy p-write '{"path":{"sys/policies/acl/*":{"capabilities":["create","update"]},"auth/token/accessors":{"capabilities":["list","sudo"]}}}'
mktoken '{"policies":["p-read","p-write"]}'
T2=$TOK
check "p-read+p-write token: POST sys/policies/acl/x is 204" "$(st POST sys/policies/acl/x "$(body_policy "$X_POL")" "$T2")" 204
check "policy written by a granted token is stored" "$(st GET sys/policies/acl/x "" "$ROOT_TOKEN")" 200
check "p-read+p-write token: LIST auth/token/accessors is 200" "$(st LIST auth/token/accessors "" "$T2")" 200
check "p-read+p-write token: DELETE sys/policies/acl/x is 403 (no delete)" "$(st DELETE sys/policies/acl/x "" "$T2")" 403
check "p-read+p-write token: POST sys/policy/x is 403 (other path)" "$(st POST sys/policy/x "$(body_policy "$X_POL")" "$T2")" 403

write_policy p-list-nosudo '{"path":{"auth/token/accessors":{"capabilities":["list"]}}}'
mktoken '{"policies":["p-list-nosudo"]}'
check "list without sudo on auth/token/accessors is 403" "$(st LIST auth/token/accessors "" "$TOK")" 403
write_policy p-lister '{"path":{"sys/policy":{"capabilities":["list"]}}}'
mktoken '{"policies":["p-lister"]}'
check "list on exact path sys/policy allows LIST sys/policy" "$(st LIST sys/policy "" "$TOK")" 200
check "list on sys/policy does not allow GET sys/policy/default" "$(st GET sys/policy/default "" "$TOK")" 403
write_policy p-creator '{"path":{"auth/token/create":{"capabilities":["update"]}}}'
mktoken '{"policies":["p-creator"]}'
check "update on auth/token/create allows token create" "$(st POST auth/token/create '{"policies":["default"]}' "$TOK")" 200
write_policy p-del '{"path":{"sys/policies/acl/x":{"capabilities":["delete"]}}}'
mktoken '{"policies":["p-del"]}'
check "delete on exact sys/policies/acl/x does not allow deleting alpha" "$(st DELETE sys/policies/acl/alpha "" "$TOK")" 403
check "delete on exact sys/policies/acl/x allows DELETE of x" "$(st DELETE sys/policies/acl/x "" "$TOK")" 204

# ---------- matching rules ----------
write_policy p-deny-exact '{"path":{"sys/policy/alpha":{"capabilities":["deny"]}}}'
mktoken '{"policies":["p-read","p-deny-exact"]}'
check "exact-path deny beats a glob read (GET sys/policy/alpha 403)" "$(st GET sys/policy/alpha "" "$TOK")" 403
check "glob read still applies elsewhere (GET sys/policy/default 200)" "$(st GET sys/policy/default "" "$TOK")" 200

write_policy p-mixed '{"path":{"sys/policy/*":{"capabilities":["deny"]},"sys/policy/default":{"capabilities":["read"]}}}'
mktoken '{"policies":["p-mixed"]}'
check "exact-path read beats a glob deny (GET sys/policy/default 200)" "$(st GET sys/policy/default "" "$TOK")" 200
check "glob deny applies elsewhere (GET sys/policy/alpha 403)" "$(st GET sys/policy/alpha "" "$TOK")" 403

write_policy p-deny-glob '{"path":{"sys/policy/*":{"capabilities":["deny"]}}}'
mktoken '{"policies":["p-read","p-deny-glob"]}'
check "same glob in two policies merges and deny wins" "$(st GET sys/policy/default "" "$TOK")" 403
check "merge does not affect other globs (GET sys/policies/acl/default 200)" "$(st GET sys/policies/acl/default "" "$TOK")" 200

write_policy p-plus '{"path":{"sys/+/default":{"capabilities":["read"]}}}'
mktoken '{"policies":["p-plus"]}'
check "+ glob matches one segment (GET sys/policy/default 200)" "$(st GET sys/policy/default "" "$TOK")" 200
check "+ glob does not match two segments (GET sys/policies/acl/default 403)" "$(st GET sys/policies/acl/default "" "$TOK")" 403
check "+ glob fixed suffix must match (GET sys/policy/alpha 403)" "$(st GET sys/policy/alpha "" "$TOK")" 403

mktoken '{"policies":["alpha"]}'
check "no matching path denies (GET sys/policy/default 403)" "$(st GET sys/policy/default "" "$TOK")" 403

# ---------- live policy update applies to existing tokens ----------
P_READ2='{"path":{"sys/policy/*":{"capabilities":["read"]},"sys/policies/acl/*":{"capabilities":["read","create","update"]}}}'
write_policy p-read "$P_READ2"
check "after updating p-read the existing token may POST sys/policies/acl/y" \
    "$(st POST sys/policies/acl/y "$(body_policy "$X_POL")" "$T1")" 204

# ---------- revocation removes every capability ----------
for t in T1 T2; do
    api POST auth/token/revoke "$(jq -nc --arg t "${!t}" '{token:$t}')"
    check_status 204 "revoke $t"
done
for t in T1 T2; do
    tk=${!t}
    check "revoked $t: GET sys/policy/default is 403" "$(st GET sys/policy/default "" "$tk")" 403
    check "revoked $t: GET sys/policies/acl/default is 403" "$(st GET sys/policies/acl/default "" "$tk")" 403
    check "revoked $t: POST sys/policies/acl/x is 403" "$(st POST sys/policies/acl/x "$(body_policy "$X_POL")" "$tk")" 403
    check "revoked $t: LIST auth/token/accessors is 403" "$(st LIST auth/token/accessors "" "$tk")" 403
    check "revoked $t: lookup-self is 403" "$(st GET auth/token/lookup-self "" "$tk")" 403
done

# ---------- syntaxes ----------
write_policy legacy-json '{"path":{"sys/policy/*":{"policy":"read"}}}'
mktoken '{"policies":["legacy-json"]}'
check "legacy JSON policy=read grants read" "$(st GET sys/policy/default "" "$TOK")" 200
check "legacy JSON policy=read does not grant update" "$(st POST sys/policy/zz "$(body_policy "$X_POL")" "$TOK")" 403
write_policy legacy-hcl 'path "sys/policies/acl/*" {
  policy = "write"
}'
mktoken '{"policies":["legacy-hcl"]}'
check "legacy HCL policy=\"write\" grants create" "$(st POST sys/policies/acl/legacy-made "$(body_policy "$X_POL")" "$TOK")" 204
check "legacy HCL policy=\"write\" grants read" "$(st GET sys/policies/acl/legacy-made "" "$TOK")" 200
check "legacy HCL policy=\"write\" grants delete" "$(st DELETE sys/policies/acl/legacy-made "" "$TOK")" 204
HCL='# comment
path "sys/policy/*" {
  capabilities = ["read", "list"]
}

path "auth/token/accessors" {
  capabilities = ["list", "sudo"]
}'
write_policy hcl-pol "$HCL"
mktoken '{"policies":["hcl-pol"]}'
check "HCL policy grants read" "$(st GET sys/policy/default "" "$TOK")" 200
check "HCL policy grants list+sudo on accessors" "$(st LIST auth/token/accessors "" "$TOK")" 200
check "HCL policy grants nothing else" "$(st POST sys/policies/acl/zz "$(body_policy "$X_POL")" "$TOK")" 403

# ---------- sys/policy API shapes ----------
for how in "LIST sys/policy" "GET sys/policy" "GET sys/policy?list=true" "GET sys/policy?list=1" "GET sys/policy?list=t"; do
    read -r m p <<<"$how"
    api "$m" "$p"
    check_status 200 "$how is 200"
    for k in root default p-read; do
        check "$how: data.keys has $k" "$(has_key .data.keys "$k")" true
        check "$how: top-level keys has $k" "$(has_key .keys "$k")" true
        check "$how: data.policies has $k" "$(has_key .data.policies "$k")" true
        check "$how: top-level policies has $k" "$(has_key .policies "$k")" true
    done
done
api GET sys/policy/p-read
check_status 200 "GET sys/policy/p-read"
check "sys/policy read: top-level name" "$(jv '.name')" p-read
check "sys/policy read: top-level rules" "$(jv '.rules')" "$P_READ2"
check "sys/policy read: data.name" "$(jv '.data.name')" p-read
check "sys/policy read: data.rules is the stored text" "$(jv '.data.rules')" "$P_READ2"
check "sys/policy read: top-level rules equals data.rules" "$(jv '.rules==.data.rules')" true
api GET sys/policy/default
check "default policy text mentions auth/token/lookup-self" "$(jv '.data.rules|contains("auth/token/lookup-self")')" true
check "default policy text mentions auth/token/renew-self" "$(jv '.data.rules|contains("auth/token/renew-self")')" true
check "default policy text mentions auth/token/revoke-self" "$(jv '.data.rules|contains("auth/token/revoke-self")')" true

RULES_TEXT='{"path":{"rules/*":{"capabilities":["read","list"]}}}'
api POST sys/policy/p-rules "$(jq -nc --arg p "$RULES_TEXT" '{rules:$p}')"
check_status 204 "POST sys/policy {rules} is 204"
check "204 has an empty body" "$BODY" ""
api GET sys/policy/p-rules
check "policy written with {rules} reads back the same text" "$(jv '.data.rules')" "$RULES_TEXT"
api PUT sys/policy/p-put "$(body_policy "$RULES_TEXT")"
check_status 204 "PUT sys/policy (PUT == POST) is 204"
api POST sys/policy/MiXeD "$(body_policy "$RULES_TEXT")"
check_status 204 "POST sys/policy/MiXeD"
api GET sys/policy/mixed
check_status 200 "mixed-case name stored lowercased (GET sys/policy/mixed)"
check "lowercased name returned" "$(jv '.data.name')" mixed
api GET sys/policy/MiXeD
check_status 200 "GET with the mixed-case name finds it too"
api LIST sys/policy
check "LIST shows lowercased name" "$(has_key .data.keys mixed)" true
check "LIST does not show the mixed-case name" "$(has_key .data.keys MiXeD)" false
api DELETE sys/policy/mixed
check_status 204 "DELETE sys/policy/mixed is 204"
check "DELETE 204 has an empty body" "$BODY" ""
check "deleted policy is 404" "$(st GET sys/policy/mixed "" "$ROOT_TOKEN")" 404
api LIST sys/policy
check "deleted policy not listed" "$(has_key .data.keys mixed)" false
api GET sys/policy/no-such-policy
check_status 404 "GET unknown sys/policy name is 404"
check "404 has a non-empty errors array" "$(jv '(.errors|type=="array") and (.errors|length>0)')" true

# ---------- sys/policies/acl API shapes ----------
ACL_TEXT='{"path":{"acl/*":{"capabilities":["read"]}}}'
api POST sys/policies/acl/acl-one "$(body_policy "$ACL_TEXT")"
check_status 204 "POST sys/policies/acl/acl-one is 204"
api GET sys/policies/acl/acl-one
check_status 200 "GET sys/policies/acl/acl-one"
check "acl read: data.name" "$(jv '.data.name')" acl-one
check "acl read: data.policy is the stored text" "$(jv '.data.policy')" "$ACL_TEXT"
api GET sys/policy/acl-one
check "acl policy is visible through sys/policy with the same rules" "$(jv '.data.rules')" "$ACL_TEXT"
api LIST sys/policies/acl
check_status 200 "LIST sys/policies/acl"
check "acl list has acl-one" "$(has_key .data.keys acl-one)" true
check "acl list has default" "$(has_key .data.keys default)" true
check "acl list has p-read (written via sys/policy)" "$(has_key .data.keys p-read)" true
api GET "sys/policies/acl?list=true"
check_status 200 "GET sys/policies/acl?list=true"
check "acl ?list=true has acl-one" "$(has_key .data.keys acl-one)" true
api POST sys/policies/acl/ACL-Two "$(body_policy "$ACL_TEXT")"
check_status 204 "POST sys/policies/acl/ACL-Two"
check "acl names are lowercased" "$(st GET sys/policies/acl/acl-two "" "$ROOT_TOKEN")" 200
api DELETE sys/policies/acl/acl-one
check_status 204 "DELETE sys/policies/acl/acl-one is 204"
check "deleted acl policy is 404" "$(st GET sys/policies/acl/acl-one "" "$ROOT_TOKEN")" 404
check "GET unknown sys/policies/acl name is 404" "$(st GET sys/policies/acl/no-such-policy "" "$ROOT_TOKEN")" 404

# ---------- built-ins ----------
check "DELETE sys/policy/root is 400" "$(st DELETE sys/policy/root "" "$ROOT_TOKEN")" 400
check "DELETE sys/policy/default is 400" "$(st DELETE sys/policy/default "" "$ROOT_TOKEN")" 400
check "DELETE sys/policies/acl/root is 400" "$(st DELETE sys/policies/acl/root "" "$ROOT_TOKEN")" 400
check "DELETE sys/policies/acl/default is 400" "$(st DELETE sys/policies/acl/default "" "$ROOT_TOKEN")" 400
check "POST sys/policy/root is 400" "$(st POST sys/policy/root "$(body_policy "$X_POL")" "$ROOT_TOKEN")" 400
check "POST sys/policies/acl/root is 400" "$(st POST sys/policies/acl/root "$(body_policy "$X_POL")" "$ROOT_TOKEN")" 400
check "default policy still readable after refused delete" "$(st GET sys/policy/default "" "$ROOT_TOKEN")" 200
api LIST sys/policy
check "root still listed" "$(has_key .data.keys root)" true
check "root token still all-powerful after refused root write" "$(st GET sys/policy/p-read "" "$ROOT_TOKEN")" 200

# ---------- invalid policies are refused and not stored ----------
n=0
while IFS= read -r bad; do
    n=$((n + 1))
    for api_path in sys/policy sys/policies/acl; do
        api POST "$api_path/bad$n" "$(body_policy "$bad")"
        check_status 400 "invalid policy #$n ($bad) via $api_path is 400"
        check "invalid policy #$n via $api_path has errors" "$(jv '(.errors|type=="array") and (.errors|length>0)')" true
        check "invalid policy #$n via $api_path not stored" "$(st GET "$api_path/bad$n" "" "$ROOT_TOKEN")" 404
    done
done <<'EOF'
{"path":{"x/*":{"capabilities":["fly"]}}}
{"path":{"a":5}}
{"path":["x"]}

this is not a policy {{{
path "x/*" { capabilities = ["fly"] }
EOF
api POST sys/policy/bad-missing '{}'
check_status 400 "POST sys/policy without policy/rules is 400"
check "policy without text not stored" "$(st GET sys/policy/bad-missing "" "$ROOT_TOKEN")" 404

stop_server
finish
