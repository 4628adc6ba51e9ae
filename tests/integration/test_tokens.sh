#!/usr/bin/env bash
# test_tokens.sh: Vault token API semantics (auth/token/*): create shapes and defaults, policies,
# TTLs, lookup fields, renew, revoke (self, token, accessor, tree, orphan), accessors, num_uses, expiry.
set -euo pipefail
# shellcheck source=lib.sh
source "$AUTHSVC_SRC/tests/integration/lib.sh"

jv() { jq -r "$1" <<<"$BODY" 2>/dev/null || echo "<not json>"; }
yn() { if "$@"; then echo yes; else echo no; fi; }
RFC3339='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$'
# mktoken DESC JSON [TOKEN] [PATH]: create a token, expect 200; sets TOK and ACC
mktoken() {
    api POST "${4:-auth/token/create}" "$2" "${3:-$ROOT_TOKEN}"
    check_status 200 "$1: create is 200"
    TOK=$(jv '.auth.client_token // "none"')
    ACC=$(jv '.auth.accessor // "none"')
}
# status_of METHOD PATH BODY TOKEN: echo the status only
status_of() {
    api "$1" "$2" "${3-}" "$4"
    echo "$STATUS"
}
in_range() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }

start_server

# ttl-2s tokens for the expiry check at the end (created first so no dedicated wait is needed)
mktoken "short-lived token (ttl \"2s\")" '{"ttl":"2s","policies":["default"]}'
EXP_TOK=$TOK
mktoken "short-lived token (ttl 2)" '{"ttl":2,"policies":["default"]}'
EXP_TOK2=$TOK
EXP_START=$SECONDS

# policies used below
for p in alpha zeta; do
    api POST "sys/policy/$p" "$(jq -nc --arg p "{\"path\":{\"sys/policy/$p\":{\"capabilities\":[\"read\"]}}}" '{policy:$p}')"
    check_status 204 "write policy $p"
done
api POST sys/policy/creator '{"policy":"{\"path\":{\"auth/token/create\":{\"capabilities\":[\"create\",\"update\"]}}}"}'
check_status 204 "write policy creator (create/update on auth/token/create)"

# ---------- root token ----------
api GET auth/token/lookup-self
check_status 200 "root lookup-self"
check "root policies are [root]" "$(jv '.data.policies|tostring')" '["root"]'
check "root display_name is root" "$(jv '.data.display_name')" root
check "root path is auth/token/root" "$(jv '.data.path')" auth/token/root
check "root ttl is 0" "$(jv '.data.ttl')" 0
check "root expire_time is null" "$(jv '.data.expire_time')" null
check "root orphan is true" "$(jv '.data.orphan')" true
check "root id is the root token" "$(jv '.data.id')" "$ROOT_TOKEN"
check "root type is service" "$(jv '.data.type')" service
ROOT_ACC=$(jv '.data.accessor')
check "root accessor is 24 chars" "${#ROOT_ACC}" 24

# ---------- create: shape and defaults ----------
api POST auth/token/create '{}'
check_status 200 "root create with empty body"
TOK=$(jv '.auth.client_token')
ACC=$(jv '.auth.accessor')
check_match "client_token is ast. + 43 base64url chars" "$TOK" '^ast\.[A-Za-z0-9_-]{43}$'
check "accessor is 24 chars" "${#ACC}" 24
check "accessor differs from the secret" "$(yn [ "$ACC" != "$TOK" ])" yes
check "accessor is not a substring of the secret" "$(yn test "${TOK/$ACC/}" == "$TOK")" yes
check "create answers data null" "$(jv '.data')" null
check "create envelope lease_id empty" "$(jv '.lease_id')" ""
check "create envelope wrap_info null" "$(jv '.wrap_info')" null
check "create request_id non-empty" "$(jv '.request_id|type=="string" and length>0')" true
for k in client_token accessor policies token_policies metadata lease_duration renewable entity_id token_type orphan num_uses; do
    check "create auth has $k" "$(jv ".auth|has(\"$k\")")" true
done
check "auth.entity_id is empty string" "$(jv '.auth.entity_id')" ""
check "auth.token_type is service" "$(jv '.auth.token_type')" service
check "default lease_duration is 768h (2764800)" "$(jv '.auth.lease_duration')" 2764800
check "renewable defaults to true" "$(jv '.auth.renewable')" true
check "child of root is not an orphan" "$(jv '.auth.orphan')" false
check "num_uses defaults to 0" "$(jv '.auth.num_uses')" 0
check "root child without policies inherits root" "$(jv '.auth.policies|index("root")!=null')" true
check "policies == token_policies" "$(jv '.auth.policies==.auth.token_policies')" true
api POST auth/token/lookup "$(jq -nc --arg t "$TOK" '{token:$t}')"
check_status 200 "lookup {token} by root"
check "default display_name is token" "$(jv '.data.display_name')" token
check "creation_ttl of a default token is 2764800" "$(jv '.data.creation_ttl')" 2764800
check "ttl of a fresh default token is about 768h" "$(yn in_range "$(jv '.data.ttl')" 2764780 2764800)" yes
check "lookup id is the token" "$(jv '.data.id')" "$TOK"
check "path of a created token is auth/token/create" "$(jv '.data.path')" auth/token/create

mktoken "policies given unsorted" '{"policies":["zeta","alpha"],"display_name":"myapp","meta":{"app":"web","team":"a"},"num_uses":0}'
check "policies are sorted with default added" "$(jv '.auth.policies|tostring')" '["alpha","default","zeta"]'
check "token_policies equal policies" "$(jv '.auth.token_policies|tostring')" '["alpha","default","zeta"]'
check "auth.metadata echoes meta" "$(jv '.auth.metadata|tostring')" '{"app":"web","team":"a"}'
api GET auth/token/lookup-self "" "$TOK"
check_status 200 "lookup-self of a non-root token"
for k in accessor creation_time creation_ttl display_name entity_id expire_time explicit_max_ttl id issue_time meta num_uses orphan path policies renewable ttl type spiffe_ids allowed_dns_names; do
    check "lookup data has field $k" "$(jv ".data|has(\"$k\")")" true
done
check "display_name is token-<name>" "$(jv '.data.display_name')" token-myapp
check "lookup meta" "$(jv '.data.meta|tostring')" '{"app":"web","team":"a"}'
check "lookup accessor matches create" "$(jv '.data.accessor')" "$ACC"
check "lookup policies" "$(jv '.data.policies|tostring')" '["alpha","default","zeta"]'
check "lookup type is service" "$(jv '.data.type')" service
check "lookup entity_id empty" "$(jv '.data.entity_id')" ""
check "lookup spiffe_ids is []" "$(jv '.data.spiffe_ids|tostring')" '[]'
check "lookup allowed_dns_names is []" "$(jv '.data.allowed_dns_names|tostring')" '[]'
check "creation_time is an integer" "$(jv '.data.creation_time|type=="number" and floor==.')" true
check_match "expire_time is RFC 3339" "$(jv '.data.expire_time')" "$RFC3339"
check_match "issue_time is RFC 3339" "$(jv '.data.issue_time')" "$RFC3339"
check "explicit_max_ttl defaults to 0" "$(jv '.data.explicit_max_ttl')" 0
check "lookup orphan false for child of root" "$(jv '.data.orphan')" false

mktoken "no_default_policy" '{"policies":["zeta","alpha"],"no_default_policy":true}'
check "no_default_policy leaves out default" "$(jv '.auth.policies|tostring')" '["alpha","zeta"]'
mktoken "comma-separated policies and string boolean" '{"policies":"zeta,alpha","no_default_policy":"true"}'
check "comma-separated policy string and \"true\" boolean accepted" "$(jv '.auth.policies|tostring')" '["alpha","zeta"]'

# ---------- TTLs ----------
mktoken "ttl \"1h\"" '{"ttl":"1h"}'
check "ttl \"1h\" gives lease_duration 3600" "$(jv '.auth.lease_duration')" 3600
mktoken "ttl 90" '{"ttl":90}'
check "ttl 90 gives lease_duration 90" "$(jv '.auth.lease_duration')" 90
mktoken "ttl above max" '{"ttl":"1000h"}'
check "ttl 1000h is capped to 768h" "$(jv '.auth.lease_duration')" 2764800
check "capping adds a warning containing 'capped'" "$(jv '[.warnings[]?|select(test("capped"))]|length>0')" true
mktoken "explicit_max_ttl below ttl" '{"ttl":3600,"explicit_max_ttl":60}'
check "explicit_max_ttl 60 caps ttl 3600 to 60" "$(jv '.auth.lease_duration')" 60
EMT_TOK=$TOK
api POST auth/token/lookup "$(jq -nc --arg t "$EMT_TOK" '{token:$t}')"
check "lookup explicit_max_ttl is 60" "$(jv '.data.explicit_max_ttl')" 60
check "lookup ttl is at most 60" "$(yn in_range "$(jv '.data.ttl')" 50 60)" yes

# ---------- orphans and no_parent ----------
mktoken "create-orphan by root" '{"policies":["default"]}' "$ROOT_TOKEN" auth/token/create-orphan
check "create-orphan gives orphan true" "$(jv '.auth.orphan')" true
mktoken "no_parent by root" '{"no_parent":true,"policies":["default"]}'
check "no_parent=true (root has sudo) gives orphan true" "$(jv '.auth.orphan')" true

# ---------- subset-of-parent policies ----------
mktoken "parent with creator policy" '{"policies":["creator"]}'
P=$TOK
check "creator parent policies" "$(jv '.auth.policies|tostring')" '["creator","default"]'
mktoken "non-root child without policies" '{}' "$P"
check "child without policies gets the parent's" "$(jv '.auth.policies|tostring')" '["creator","default"]'
check "child of a non-root parent is not an orphan" "$(jv '.auth.orphan')" false
mktoken "non-root child with subset [default]" '{"policies":["default"]}' "$P"
check "subset [default] allowed" "$(jv '.auth.policies|tostring')" '["default"]'
api LIST auth/token/accessors
n_before=$(jv '.data.keys|length')
api POST auth/token/create '{"policies":["alpha"]}' "$P"
check_status 400 "non-root parent cannot give a policy it lacks (alpha)"
api POST auth/token/create '{"policies":["creator","zeta"]}' "$P"
check_status 400 "non-root parent cannot give a superset (creator,zeta)"
api POST auth/token/create '{"policies":["root"]}' "$P"
check_status 400 "non-root parent cannot give root"
api POST auth/token/create '{"no_parent":true}' "$P"
check_match "no_parent without sudo is refused (4xx)" "$STATUS" '^40[03]$'
api LIST auth/token/accessors
check "refused creates stored no token" "$(jv '.data.keys|length')" "$n_before"
mktoken "default-only token" '{"policies":["default"]}'
DEF_TOK=$TOK
api POST auth/token/create '{}' "$DEF_TOK"
check_status 403 "default-policy token cannot create tokens"

# ---------- lookup variants ----------
mktoken "lookup target" '{"policies":["alpha"],"display_name":"look"}'
LT=$TOK
LA=$ACC
api POST auth/token/lookup-accessor "$(jq -nc --arg a "$LA" '{accessor:$a}')"
check_status 200 "lookup-accessor by root"
check "lookup-accessor id is empty" "$(jv '.data.id')" ""
check "lookup-accessor accessor matches" "$(jv '.data.accessor')" "$LA"
check "lookup-accessor display_name" "$(jv '.data.display_name')" token-look
check "lookup-accessor policies" "$(jv '.data.policies|tostring')" '["alpha","default"]'
api POST auth/token/lookup "$(jq -nc --arg t "$LT" '{token:$t}')" "$DEF_TOK"
check_status 403 "default-policy token cannot lookup another token"
api GET auth/token/lookup-self "" "$DEF_TOK"
check_status 200 "default policy grants lookup-self"

# ---------- renew ----------
mktoken "renewable ttl 600" '{"ttl":600,"policies":["default"]}'
RN=$TOK
RNA=$ACC
api POST auth/token/renew-self '{"increment":1200}' "$RN"
check_status 200 "renew-self with increment"
check "renew-self increment 1200 gives lease_duration 1200" "$(jv '.auth.lease_duration')" 1200
api GET auth/token/lookup-self "" "$RN"
check "ttl after renew is about 1200" "$(yn in_range "$(jv '.data.ttl')" 1190 1200)" yes
api POST auth/token/renew-self '' "$RN"
check_status 200 "renew-self without increment"
check "renew-self without increment uses the original ttl 600" "$(jv '.auth.lease_duration')" 600
api POST auth/token/renew "$(jq -nc --arg t "$RN" '{token:$t,increment:"30m"}')"
check_status 200 "renew {token, increment \"30m\"} by root"
check "renew increment 30m gives 1800" "$(jv '.auth.lease_duration')" 1800
api POST auth/token/renew-accessor "$(jq -nc --arg a "$RNA" '{accessor:$a}')"
check_status 200 "renew-accessor by root"
check "renew-accessor without increment gives the original ttl" "$(jv '.auth.lease_duration')" 600
mktoken "renewable with explicit_max_ttl 300" '{"ttl":100,"explicit_max_ttl":300,"policies":["default"]}'
api POST auth/token/renew-self '{"increment":1000}' "$TOK"
check_status 200 "renew-self beyond explicit_max_ttl"
check "renew is capped by explicit_max_ttl (290..300)" "$(yn in_range "$(jv '.auth.lease_duration')" 290 300)" yes
mktoken "non-renewable" '{"ttl":600,"renewable":false,"policies":["default"]}'
check "renewable:false is reflected" "$(jv '.auth.renewable')" false
NR=$TOK
api POST auth/token/renew-self '{}' "$NR"
check_status 400 "renew-self of a non-renewable token is 400"
api POST auth/token/renew "$(jq -nc --arg t "$NR" '{token:$t}')"
check_status 400 "renew of a non-renewable token by root is 400"

# ---------- revoke ----------
mktoken "revoke-self target" '{"policies":["default"]}'
S=$TOK
api POST auth/token/revoke-self '' "$S"
check_status 204 "revoke-self is 204"
check "revoke-self has an empty body" "$BODY" ""
api GET auth/token/lookup-self "" "$S"
check_status 403 "revoked-self token is 403"
check "revoked token error is permission denied" "$(jv '.errors[0]')" "permission denied"

mktoken "revoke target" '{"policies":["default"]}'
R=$TOK
RA=$ACC
api POST auth/token/revoke "$(jq -nc --arg t "$R" '{token:$t}')"
check_status 204 "revoke {token} by root is 204"
check "revoked token is 403" "$(status_of GET auth/token/lookup-self "" "$R")" 403
api LIST auth/token/accessors
check "revoked token's accessor no longer listed" "$(jq -r --arg a "$RA" '.data.keys|index($a)==null' <<<"$BODY" 2>/dev/null || echo false)" true

mktoken "revoke-accessor target" '{"policies":["default"]}'
RV=$TOK
api POST auth/token/revoke-accessor "$(jq -nc --arg a "$ACC" '{accessor:$a}')"
check_status 204 "revoke-accessor by root is 204"
check "token revoked by accessor is 403" "$(status_of GET auth/token/lookup-self "" "$RV")" 403

# tree: parent -> child -> grandchild
mktoken "tree parent" '{"policies":["creator"]}'
TP=$TOK
mktoken "tree child" '{}' "$TP"
TC=$TOK
mktoken "tree grandchild" '{}' "$TC"
TG=$TOK
mktoken "unrelated token" '{"policies":["creator"]}'
UN=$TOK
api POST auth/token/revoke "$(jq -nc --arg t "$TP" '{token:$t}')"
check_status 204 "revoke tree parent"
check "revoked parent is 403" "$(status_of GET auth/token/lookup-self "" "$TP")" 403
check "child of revoked parent is 403" "$(status_of GET auth/token/lookup-self "" "$TC")" 403
check "grandchild of revoked parent is 403" "$(status_of GET auth/token/lookup-self "" "$TG")" 403
check "unrelated token still 200" "$(status_of GET auth/token/lookup-self "" "$UN")" 200

# revoke-orphan: children survive as orphans
mktoken "orphan-tree parent" '{"policies":["creator"]}'
OP=$TOK
mktoken "orphan-tree child" '{}' "$OP"
OC=$TOK
mktoken "orphan-tree grandchild" '{}' "$OC"
OG=$TOK
api POST auth/token/revoke-orphan "$(jq -nc --arg t "$OP" '{token:$t}')" "$OC"
check_status 403 "revoke-orphan without sudo is 403"
api POST auth/token/revoke-orphan "$(jq -nc --arg t "$OP" '{token:$t}')"
check_status 204 "revoke-orphan by root is 204"
check "revoke-orphan revokes the parent" "$(status_of GET auth/token/lookup-self "" "$OP")" 403
api GET auth/token/lookup-self "" "$OC"
check_status 200 "child survives revoke-orphan"
check "surviving child is now an orphan" "$(jv '.data.orphan')" true
api GET auth/token/lookup-self "" "$OG"
check_status 200 "grandchild survives revoke-orphan"
check "grandchild still has its parent (not orphan)" "$(jv '.data.orphan')" false
api POST auth/token/revoke "$(jq -nc --arg t "$OC" '{token:$t}')"
check_status 204 "revoke the orphaned child"
check "grandchild dies with the orphaned child" "$(status_of GET auth/token/lookup-self "" "$OG")" 403

# ---------- accessors ----------
mktoken "listed token" '{"policies":["default"]}'
LSA=$ACC
api LIST auth/token/accessors
check_status 200 "LIST auth/token/accessors with root"
check "accessors include the root accessor" "$(jq -r --arg a "$ROOT_ACC" '.data.keys|index($a)!=null' <<<"$BODY" 2>/dev/null || echo false)" true
check "accessors include a new token's accessor" "$(jq -r --arg a "$LSA" '.data.keys|index($a)!=null' <<<"$BODY" 2>/dev/null || echo false)" true
keys_list=$(jv '.data.keys|sort|tostring')
api GET "auth/token/accessors?list=true"
check_status 200 "GET auth/token/accessors?list=true"
check "GET ?list=true equals LIST" "$(jv '.data.keys|sort|tostring')" "$keys_list"
api LIST auth/token/accessors "" "$DEF_TOK"
check_status 403 "LIST accessors with a default-policy token is 403"

# ---------- num_uses ----------
mktoken "num_uses 2" '{"num_uses":2,"policies":["default"]}'
NU=$TOK
check "auth.num_uses is 2" "$(jv '.auth.num_uses')" 2
check "num_uses use 1 is 200" "$(status_of GET auth/token/lookup-self "" "$NU")" 200
check "num_uses use 2 is 200" "$(status_of GET auth/token/lookup-self "" "$NU")" 200
check "num_uses use 3 is 403" "$(status_of GET auth/token/lookup-self "" "$NU")" 403

# ---------- expiry ----------
left=$((3 - (SECONDS - EXP_START)))
[ "$left" -gt 0 ] && sleep "$left"
api GET auth/token/lookup-self "" "$EXP_TOK"
check_status 403 "token created with ttl \"2s\" is 403 after 3 s"
check "expired token error is permission denied" "$(jv '.errors[0]')" "permission denied"
check "token created with ttl 2 is 403 after 3 s" "$(status_of GET auth/token/lookup-self "" "$EXP_TOK2")" 403
api GET auth/token/lookup-self
check_status 200 "root token unaffected"

stop_server
finish
