#!/usr/bin/env bash
# test_auth_jwt.sh: the jwt auth method end to end (SPEC §1 authctl login, §3 sys/auth and
# auth/:jwt/*, §5), with every JWT minted by an independent implementation (the npm `jose` package,
# tests/integration/node/mint_jwt.js) and a local JWKS issuer (node/jwks_server.js, re-reading its
# file on each request so that keys can be rotated under the server's feet):
#   - sys/auth mount, list, re-mount, unknown type, unmount (tokens revoked, their SVIDs in the CRL);
#   - config: static PEM keys (RS256 + ES256) and a JWKS URL; exactly one of them; bad PEM; http
#     only to loopback;
#   - role write rules;
#   - logins: policies, metadata, claim mappings, display_name, orphan, TTLs, the SPIFFE ID from
#     spiffe_id_template and what the token may then obtain;
#   - JWKS rotation: refetch on an unknown kid, at most once per 10 s;
#   - a table of bad tokens, each with its status and error text, none leaving a token behind;
#   - the per-source login rate limit (a second server with limits.login_per_second 5);
#   - node-vault's write('auth/jwt/login') (node/jwt_login.js) and `authctl login`.
set -euo pipefail
# shellcheck source=lib.sh
source "$AUTHSVC_SRC/tests/integration/lib.sh"

NODE_DIR=$AUTHSVC_SRC/tests/integration/node
if ! command -v node >/dev/null 2>&1; then
    echo "FAIL: node is not installed (tools/test installs it)" >&2
    exit 1
fi
for m in jose node-vault; do
    if [ ! -d "$NODE_DIR/node_modules/$m" ]; then
        echo "FAIL: $NODE_DIR/node_modules/$m is missing: run tools/test, or npm ci in $NODE_DIR" >&2
        exit 1
    fi
done

# ctl ARGS...: runs authctl; sets RC, OUT (stdout) and ERR (stderr) without stopping the script.
ctl() {
    RC=0
    "$AUTHCTL" "$@" >"$TMP/ctl.out" 2>"$TMP/ctl.err" || RC=$?
    OUT=$(cat "$TMP/ctl.out")
    ERR=$(cat "$TMP/ctl.err")
}
jv() { jq -r "$1" <<<"$BODY" 2>/dev/null || echo "<not json>"; }
jo() { jq -r "$1" <<<"$OUT" 2>/dev/null || echo "<not json>"; }
yn() { if "$@"; then echo yes; else echo no; fi; }
contains() { [[ "$1" == *"$2"* ]]; }
err0() { jq -r '.errors[0] // empty' <<<"$BODY" 2>/dev/null || true; }
# accessor_count: how many tokens LIST auth/token/accessors reports (sets STATUS)
accessor_count() {
    api LIST auth/token/accessors
    if [ "$STATUS" = 200 ]; then jv '.data.keys|length'; else echo "status-$STATUS"; fi
}
# jwks_fetches: how many requests the local JWKS server has answered
jwks_fetches() { if [ -f "$JWKS_LOG" ]; then wc -l <"$JWKS_LOG" | tr -d ' '; else echo 0; fi; }
# login MOUNT ROLE TOKEN: POST auth/MOUNT/login {role, jwt} without a token
login() { api POST "auth/$1/login" "$(jq -nc --arg r "$2" --arg j "$3" '{role:$r, jwt:$j}')" -; }
# hexnorm SERIAL: upper-case hex without colons or leading zeros (how openssl prints serials)
hexnorm() { tr -d ':-' <<<"$1" | tr a-f A-F | sed 's/^0*//;s/^$/0/'; }
# crl_serials FILE: the serials of every CRL in a PEM file of concatenated CRLs
crl_serials() {
    local f
    rm -f "$TMP"/crlsplit.*
    awk -v d="$TMP" '/BEGIN X509 CRL/ { n++ } n { print > (d "/crlsplit." n) }' "$1"
    for f in "$TMP"/crlsplit.*; do
        [ -e "$f" ] || continue
        openssl crl -in "$f" -noout -text 2>/dev/null | sed -n 's/^ *Serial Number: *//p' |
            while read -r s; do hexnorm "$s"; done
    done
}
# wait_until EPOCH: sleeps until the wall clock reaches EPOCH
wait_until() {
    local now
    now=$(date +%s)
    if [ "$now" -lt "$1" ]; then sleep $(($1 - now)); fi
}

export HOME="$TMP/home"
mkdir -p "$HOME"
unset AUTHSVC_TOKEN AUTHSVC_CACERT

# ---------- keys and the local JWKS issuer ----------
K=$TMP/keys
mkdir -p "$K"
for k in rsa1 rsa2 rsa3; do
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$K/$k.key" 2>/dev/null
done
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$K/ec1.key" 2>/dev/null
for k in rsa1 rsa2 rsa3 ec1; do openssl pkey -in "$K/$k.key" -pubout -out "$K/$k.pub"; done
# mint_jwks FILE:KID...: the JWKS of those keys, written to the file the issuer serves (atomically)
JWKS_FILE=$TMP/jwks.json
JWKS_LOG=$TMP/jwks.log
mint_jwks() {
    node "$NODE_DIR/mint_jwt.js" jwks "$@" >"$JWKS_FILE.tmp"
    mv "$JWKS_FILE.tmp" "$JWKS_FILE"
}
mint_jwks "$K/rsa1.key:k1" "$K/ec1.key:e1"
node "$NODE_DIR/jwks_server.js" "$JWKS_FILE" "$TMP/jwks.port" "$JWKS_LOG" 2>>"$TMP/jwks.err" &
JWKS_PID=$!
RL_PID=""
stop_helpers() {
    local p
    for p in "$JWKS_PID" "$RL_PID"; do
        if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
}
trap 'stop_helpers; cleanup' EXIT
for _ in $(seq 1 100); do
    [ -s "$TMP/jwks.port" ] && break
    sleep 0.05
done
JWKS_URL="http://127.0.0.1:$(cat "$TMP/jwks.port")/keys"
check "the local JWKS issuer answers" "$(curl -s -o /dev/null -w '%{http_code}' "$JWKS_URL")" 200
: >"$JWKS_LOG"

# shellcheck disable=SC2119 # no extra server flags
start_server
ISS=https://issuer.test
TD=example.org

# ---------- sys/auth: mount, list, unmount rules ----------
api GET sys/auth
check_status 200 "GET sys/auth"
check "before any mount only token/ is listed" "$(jv '.data|keys|join(",")')" "token/"
check "token/ has type token" "$(jv '.data["token/"].type')" token
for m in jwt jwks gone; do
    api POST "sys/auth/$m" '{"type":"jwt","description":"test mount"}'
    check_status 204 "mount $m/ (type jwt)"
done
api GET sys/auth
check "sys/auth lists gone/, jwks/, jwt/ and token/" "$(jv '.data|keys|join(",")')" "gone/,jwks/,jwt/,token/"
check "jwt/ has type jwt" "$(jv '.data["jwt/"].type')" jwt
check "jwt/ keeps its description" "$(jv '.data["jwt/"].description')" "test mount"
check_match "jwt/ has an accessor auth_jwt_..." "$(jv '.data["jwt/"].accessor')" '^auth_jwt_[0-9a-f]+$'
check "the accessors of the mounts are distinct" "$(jv '[.data[].accessor]|unique|length')" 4
check "data keys are copied to the top level (Vault clients read them there)" "$(jv '.["jwt/"].type')" jwt
check "jwt/ config has default_lease_ttl and max_lease_ttl" \
    "$(jv '.data["jwt/"].config|has("default_lease_ttl") and has("max_lease_ttl")')" true
api POST sys/auth/jwt '{"type":"jwt"}'
check_status 400 "mounting jwt/ again"
check "re-mount names the path in use" "$(err0)" "path is already in use at jwt/"
api POST sys/auth/ldap '{"type":"ldap"}'
check_status 400 "an unknown method type"
check "unknown type error" "$(yn contains "$(err0)" 'unknown auth method type "ldap"')" yes
api POST sys/auth/other '{}'
check_status 400 "a mount without type"
api POST sys/auth/token '{"type":"jwt"}'
check_status 400 "mounting at token/"
api POST sys/auth/Bad%20Path '{"type":"jwt"}'
check_status 400 "a mount path outside [a-z0-9._-]"
api POST sys/auth/jwt2 '{"type":"jwt"}' -
check_status 403 "mounting without a token"
api POST auth/nomount/login '{"role":"x","jwt":"y"}' -
check_status 404 "login at a path with no mount"

# ---------- config ----------
RSA1_PUB=$(cat "$K/rsa1.pub")
EC1_PUB=$(cat "$K/ec1.pub")
cfg_static() { jq -nc --arg a "$RSA1_PUB" --arg b "$EC1_PUB" --arg iss "$ISS" \
    '{jwt_validation_pubkeys:[$a,$b], bound_issuer:$iss}'; }
api GET auth/jwt/config
check_status 404 "reading the config of an unconfigured mount"
api POST auth/jwt/login '{"role":"app","jwt":"x.y.z"}' -
check_status 400 "login on an unconfigured mount"
check "unconfigured mount error" "$(err0)" "could not load configuration"
api POST auth/jwt/config "$(cfg_static)"
check_status 204 "config with static keys (RS256 and ES256 PEMs)"
api GET auth/jwt/config
check_status 200 "read the config back"
check "two PEM keys kept" "$(jv '.data.jwt_validation_pubkeys|length')" 2
check "bound_issuer kept" "$(jv '.data.bound_issuer')" "$ISS"
check "jwks_url empty" "$(jv '.data.jwks_url')" ""
api POST auth/gone/config "$(cfg_static)"
check_status 204 "config of gone/"
api POST auth/jwks/config "$(jq -nc --arg u "$JWKS_URL" --arg iss "$ISS" '{jwks_url:$u, bound_issuer:$iss}')"
check_status 204 "config with a JWKS URL on http://127.0.0.1"
T_FETCH1=$(date +%s)
check "the config write fetched the JWKS once" "$(jwks_fetches)" 1
api POST auth/jwt2/config '{}'
check_status 404 "config of a mount that does not exist"
api POST auth/jwks/config "$(jq -nc --arg u "$JWKS_URL" --arg a "$RSA1_PUB" '{jwks_url:$u, jwt_validation_pubkeys:[$a]}')"
check_status 400 "both jwks_url and jwt_validation_pubkeys"
check "exactly-one rule text" "$(err0)" "exactly one of 'jwt_validation_pubkeys', 'jwks_url' must be set"
api POST auth/jwks/config '{"bound_issuer":"x"}'
check_status 400 "neither jwks_url nor jwt_validation_pubkeys"
check "exactly-one rule text (neither)" "$(err0)" "exactly one of 'jwt_validation_pubkeys', 'jwks_url' must be set"
api POST auth/jwks/config '{"jwt_validation_pubkeys":["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]}'
check_status 400 "a PEM that is no public key"
check "bad PEM error" "$(yn contains "$(err0)" "error checking keys: public key 0 is not a PEM SubjectPublicKeyInfo")" yes
api POST auth/jwks/config "$(jq -nc --arg a "$(openssl rsa -pubin -in "$K/rsa1.pub" -RSAPublicKey_out 2>/dev/null)" '{jwt_validation_pubkeys:[$a]}')"
check_status 400 "a PKCS#1 RSA PUBLIC KEY PEM (only SubjectPublicKeyInfo)"
api POST auth/jwks/config '{"jwks_url":"http://jwks.example.com/keys"}'
check_status 400 "an http JWKS URL to a non-loopback host"
check "non-loopback http error" "$(err0)" "jwks_url must use https (http only to a loopback address)"
api POST auth/jwks/config '{"jwks_url":"ftp://127.0.0.1/keys"}'
check_status 400 "an ftp JWKS URL"
DEAD_PORT=$(free_port)
api POST auth/jwks/config "{\"jwks_url\":\"http://127.0.0.1:$DEAD_PORT/keys\"}"
check_status 400 "a JWKS URL where nothing listens"
check "unreachable JWKS error" "$(yn contains "$(err0)" "error checking keys: fetching keys failed")" yes
api POST auth/jwks/config '{"jwks_url":"http://127.0.0.1:1/keys","jwt_supported_algs":["HS256"]}'
check_status 400 "jwt_supported_algs with HS256"
api GET auth/jwks/config
check "the refused writes left the JWKS config in place" "$(jv '.data.jwks_url')" "$JWKS_URL"
check "no refused write fetched the JWKS" "$(jwks_fetches)" 1

# ---------- roles ----------
TMPL='spiffe://{{trust_domain}}/ns/{{claim:/kubernetes.io/namespace}}/sa/{{claim:sub}}'
APP_ROLE=$(jq -nc --arg t "$TMPL" '{role_type:"jwt", user_claim:"sub", bound_audiences:["authsvc"],
    bound_claims:{"/kubernetes.io/namespace":["prod","staging"]},
    claim_mappings:{"/kubernetes.io/namespace":"namespace", email:"email"},
    token_policies:["app-pol"], spiffe_id_template:$t}')
api POST auth/jwt/role/app '{"bound_audiences":["authsvc"]}'
check_status 400 "a role without user_claim"
check "missing user_claim text" "$(err0)" "a user claim must be defined on the role"
api POST auth/jwt/role/app '{"user_claim":"sub"}'
check_status 400 "a role without any bound constraint"
check "no bound constraint text" "$(err0)" "must have at least one bound constraint when creating/updating a role"
api POST auth/jwt/role/app '{"user_claim":"sub","bound_audiences":["authsvc"],"spiffe_id_template":"spiffe://{{trust_domain}}/cn/{{cert:cn}}"}'
check_status 400 "a jwt role with {{cert:cn}}"
check "{{cert:cn}} text" "$(yn contains "$(err0)" "is only allowed in a role of the cert auth method")" yes
api POST auth/jwt/role/app '{"user_claim":"sub","bound_audiences":["authsvc"],"spiffe_id_template":"{{cert:uri}}"}'
check_status 400 "a jwt role with {{cert:uri}}"
api POST auth/jwt/role/app '{"user_claim":"sub","bound_audiences":["authsvc"],"token_policies":["default","root"]}'
check_status 400 "root in token_policies"
check "root policy text" "$(err0)" 'invalid token_policies entry "root"'
api POST auth/jwt/role/app '{"user_claim":"sub","bound_audiences":["authsvc"],"role_type":"oidc"}'
check_status 400 "an oidc role"
api POST auth/jwt/role/app '{"user_claim":"sub","bound_audiences":["authsvc"],"token_ttl":"2h","token_max_ttl":"1h"}'
check_status 400 "token_ttl above token_max_ttl"
api POST auth/jwt/role/app '{"user_claim":"sub","token_bound_cidrs":["10.0.0.0/33"]}'
check_status 400 "a bad CIDR"
api GET auth/jwt/role/app
check_status 404 "no refused write created the role"
for m in jwt jwks gone; do
    api POST "auth/$m/role/app" "$APP_ROLE"
    check_status 204 "role app on $m/"
done
api POST auth/jwks/role/ttl '{"user_claim":"sub","bound_audiences":["authsvc"],"token_ttl":"10m","token_max_ttl":"20m","token_policies":"a-pol,b-pol"}'
check_status 204 "role ttl (10m / 20m, policies as a comma string)"
api POST auth/jwks/role/cidr '{"user_claim":"sub","bound_audiences":["authsvc"],"token_bound_cidrs":["10.0.0.0/8","192.168.1.1"]}'
check_status 204 "role cidr (10.0.0.0/8)"
api POST auth/jwks/role/cidrok '{"user_claim":"sub","bound_audiences":["authsvc"],"token_bound_cidrs":["127.0.0.0/8"]}'
check_status 204 "role cidrok (127.0.0.0/8)"
api POST auth/jwks/role/noaud '{"user_claim":"sub","bound_subject":"web"}'
check_status 204 "role noaud (bound_subject only)"
api POST auth/jwks/role/subj '{"user_claim":"sub","bound_subject":"web","bound_audiences":["authsvc"]}'
check_status 204 "role subj"
api POST auth/jwks/role/glob '{"user_claim":"sub","bound_audiences":["authsvc"],"bound_claims_type":"glob","bound_claims":{"email":["*@example.org","admin@*"]}}'
check_status 204 "role glob (bound_claims_type glob)"
api POST auth/jwks/role/glob2 '{"user_claim":"sub","bound_claims_type":"regex","bound_claims":{"email":"x"}}'
check_status 400 "bound_claims_type other than string or glob"
api POST auth/jwks/role/uc '{"user_claim":"email","bound_audiences":["authsvc"]}'
check_status 204 "role uc (user_claim email)"
api GET auth/jwt/role/app
check_status 200 "read role app"
check "role app: user_claim" "$(jv '.data.user_claim')" sub
check "role app: token_policies" "$(jv '.data.token_policies|join(",")')" app-pol
check "role app: clock_skew_leeway default (0 = 60 s)" "$(jv '.data.clock_skew_leeway')" 0
check "role app: template kept" "$(jv '.data.spiffe_id_template')" "$TMPL"
api LIST auth/jwks/role
check "LIST auth/jwks/role" "$(jv '.data.keys|sort|join(",")')" "app,cidr,cidrok,glob,noaud,subj,ttl,uc"
api PUT sys/policies/acl/app-pol '{"policy":"{\"path\":{\"sys/health\":{\"capabilities\":[\"read\"]}}}"}'
check_status 204 "policy app-pol"

# ---------- mint every token at once ----------
NOW=$(date +%s)
BASE=$(jq -nc --arg iss "$ISS" '{iss:$iss, aud:"authsvc", sub:"web", "kubernetes.io":{namespace:"prod"},
    email:"web@example.org", iat:"$now", exp:"$now+300"}')
RAWBASE=$(jq -nc --arg iss "$ISS" --argjson now "$NOW" '{iss:$iss, aud:"authsvc", sub:"web",
    "kubernetes.io":{namespace:"prod"}, iat:$now, exp:($now+300)}')
DEEP=$(printf '%.0s[' $(seq 1 40))1$(printf '%.0s]' $(seq 1 40))
declare -A SPEC
# spec NAME KEY KID JQ_CLAIMS_PATCH [JQ_SPEC_PATCH]: a token signed by KEY with the BASE claims
# patched by the jq object (null deletes a claim), kid KID ("-": none), then the spec patched by
# JQ_SPEC_PATCH, which may use $k (the key dir) and $raw (the RAW variable: a payload text)
spec() {
    local name=$1 key=$2 kid=$3 patch=$4 extra=${5-'{}'}
    SPEC[$name]=$(jq -nc --argjson b "$BASE" --arg key "$K/$key.key" --arg kid "$kid" --arg k "$K" \
        --arg raw "${RAW-}" "{key:\$key, claims:(\$b + $patch | with_entries(select(.value != null)))}
         + (if \$kid == \"-\" then {} else {kid:\$kid} end) + $extra")
}
spec good_rs rsa1 k1 '{}'
spec good_es ec1 e1 '{}'
spec good_rs_foreign_kid rsa1 whatever '{}'
spec good_skew rsa1 k1 '{iat:"$now-200", exp:"$now-30"}'
spec good_staging rsa1 k1 '{sub:"api", "kubernetes.io":{namespace:"staging"}}'
spec good_k2 rsa2 k2 '{sub:"rotated"}'
spec good_k3 rsa3 k3 '{sub:"third"}'
spec gone1 rsa1 k1 '{sub:"gone1"}'
spec gone2 ec1 - '{sub:"gone2"}'
spec alg_none rsa1 k1 '{}' '{variant:"none"}'
spec hs256_pem rsa1 k1 '{}' '{variant:"hs_pem", hmac_key_file:($k + "/rsa1.pub")}'
spec expired rsa1 k1 '{iat:"$now-600", exp:"$now-120"}'
spec nbf_future rsa1 k1 '{iat:null, nbf:"$now+600", exp:"$now+1200"}'
spec iat_future rsa1 k1 '{nbf:"$now-10", iat:"$now+600", exp:"$now+1200"}'
spec iat_only_future rsa1 k1 '{iat:"$now+600", exp:"$now+1200"}'
spec no_times rsa1 k1 '{iat:null, exp:null}'
spec wrong_aud rsa1 k1 '{aud:["other","another"]}'
spec missing_aud rsa1 k1 '{aud:null}'
spec wrong_iss rsa1 k1 '{iss:"https://evil.test"}'
spec unknown_key rsa3 nope '{}'
spec tampered rsa1 k1 '{}' '{variant:"tamper", tamper_claims:{sub:"admin"}}'
spec stripped rsa1 k1 '{}' '{variant:"strip_sig"}'
spec two_seg rsa1 k1 '{}' '{variant:"two_segments"}'
spec four_seg rsa1 k1 '{}' '{variant:"four_segments"}'
spec bad_b64 rsa1 k1 '{}' '{variant:"bad_b64"}'
spec der_sig ec1 e1 '{}' '{variant:"der_sig"}'
spec es_hdr_rsa_key ec1 k1 '{}'
spec other_key_same_kid rsa3 k1 '{}'
spec crit rsa1 k1 '{}' '{header:{crit:["x-ext"], "x-ext":1}}'
spec string_exp rsa1 k1 '{exp:"1999999999"}'
spec no_email rsa1 k1 '{email:null}'
spec num_email rsa1 k1 '{email:42}'
spec ns_dev rsa1 k1 '{"kubernetes.io":{namespace:"dev"}}'
spec sub_api rsa1 k1 '{sub:"api"}'
spec email_evil rsa1 k1 '{email:"web@example.org.evil.test"}'
spec sub_slash rsa1 k1 '{sub:"a/b"}'
spec sub_dotdot rsa1 k1 '{sub:".."}'
spec sub_pct rsa1 k1 '{sub:"%2F"}'
spec sub_space rsa1 k1 '{sub:"a b"}'
spec sub_umlaut rsa1 k1 '{sub:"ü"}'
spec sub_empty rsa1 k1 '{sub:""}'
# The payload texts jose signs as they are: sub given twice; an array nested 40 deep.
RAW="${RAWBASE%\}},\"sub\":\"admin\"}" spec dup_keys rsa1 k1 '{}' '{payload_raw:$raw}'
spec oversize rsa1 k1 '{}' '{pad:17000}'
RAW="${RAWBASE%\}},\"deep\":$DEEP}" spec deep rsa1 k1 '{}' '{payload_raw:$raw}'
NAMES=("${!SPEC[@]}")
{
    printf '['
    sep=""
    for n in "${NAMES[@]}"; do
        printf '%s%s' "$sep" "${SPEC[$n]}"
        sep=","
    done
    printf ']'
} >"$TMP/specs.json"
declare -A TOK
i=0
while IFS= read -r t; do
    TOK[${NAMES[$i]}]=$t
    i=$((i + 1))
done < <(node "$NODE_DIR/mint_jwt.js" <"$TMP/specs.json")
check "jose minted every token" "$i" "${#NAMES[@]}"
check "the duplicate-key payload really holds sub twice" \
    "$(cut -d. -f2 <<<"${TOK[dup_keys]}" | tr '_-' '/+' | base64 -d 2>/dev/null | grep -o '"sub"' | wc -l)" 2
check "the oversize token is over 16 KiB" "$(yn [ "${#TOK[oversize]}" -gt 16384 ])" yes

# ---------- successful logins ----------
A0=$(accessor_count)
login jwt app "${TOK[good_rs]}"
check_status 200 "login with an RS256 token (static keys)"
T_RS=$(jv '.auth.client_token')
check_match "client_token is ast. + 43 characters" "$T_RS" '^ast\.[A-Za-z0-9_-]{43}$'
check "policies are the role's plus default" "$(jv '.auth.policies|sort|join(",")')" "app-pol,default"
check "token_policies likewise" "$(jv '.auth.token_policies|sort|join(",")')" "app-pol,default"
check "metadata.role" "$(jv '.auth.metadata.role')" app
check "metadata.namespace (claim_mappings with a JSON pointer)" "$(jv '.auth.metadata.namespace')" prod
check "metadata.email (claim_mappings)" "$(jv '.auth.metadata.email')" "web@example.org"
check "lease_duration 3600 by default" "$(jv '.auth.lease_duration')" 3600
check "renewable" "$(jv '.auth.renewable')" true
check "orphan" "$(jv '.auth.orphan')" true
check "envelope lease_duration 0" "$(jv '.lease_duration')" 0
WEB_ID=spiffe://$TD/ns/prod/sa/web
api GET auth/token/lookup-self "" "$T_RS"
check_status 200 "lookup-self with the login token"
check "display_name is <mount>-<user>" "$(jv '.data.display_name')" "jwt-web"
check "path is auth/jwt/login" "$(jv '.data.path')" "auth/jwt/login"
check "spiffe_ids from spiffe_id_template" "$(jv '.data.spiffe_ids|join(",")')" "$WEB_ID"
check "orphan in lookup" "$(jv '.data.orphan')" true
check "explicit_max_ttl 24h by default" "$(jv '.data.explicit_max_ttl')" 86400
check "meta.role in lookup" "$(jv '.data.meta.role')" app
check "one new token in the store" "$(accessor_count)" $((A0 + 1))
api POST svid/x509 "{\"spiffe_id\":\"$WEB_ID\"}" "$T_RS"
check_status 200 "the login token obtains an X.509-SVID for its ID"
check "the SVID names that ID" "$(jv '.data.spiffe_id')" "$WEB_ID"
api POST svid/x509 '{}' "$T_RS"
check_status 200 "the SVID's ID defaults to the token's only identity"
api POST svid/x509 "{\"spiffe_id\":\"spiffe://$TD/ns/prod/sa/other\"}" "$T_RS"
check_status 403 "the login token is refused another ID"
api POST svid/jwt '{"audience":"db"}' "$T_RS"
check_status 200 "the login token obtains a JWT-SVID"
check "the JWT-SVID's ID" "$(jv '.data.spiffe_id')" "$WEB_ID"

login jwt app "${TOK[good_es]}"
check_status 200 "login with an ES256 token (static keys)"
login jwt app "${TOK[good_rs_foreign_kid]}"
check_status 200 "static keys ignore the kid (every key of the type is tried, as Vault)"
login jwks app "${TOK[good_rs]}"
check_status 200 "login with an RS256 token (JWKS)"
login jwks app "${TOK[good_es]}"
check_status 200 "login with an ES256 token (JWKS)"
api GET auth/token/lookup-self "" "$(jv '.auth.client_token')"
check "display_name on the jwks mount" "$(jv '.data.display_name')" "jwks-web"
login jwks app "${TOK[good_skew]}"
check_status 200 "a token expired 30 s ago passes within the 60 s clock skew leeway"
login jwks app "${TOK[good_staging]}"
check_status 200 "bound_claims: any listed value matches"
api GET auth/token/lookup-self "" "$(jv '.auth.client_token')"
check "the staging token's ID" "$(jv '.data.spiffe_ids|join(",")')" "spiffe://$TD/ns/staging/sa/api"
login jwks APP "${TOK[good_rs]}"
check_status 200 "role names are case-insensitive (Vault lower-cases them)"
login jwks ttl "${TOK[good_rs]}"
check_status 200 "login on role ttl"
check "token_ttl 10m honoured" "$(jv '.auth.lease_duration')" 600
check "comma-string token_policies" "$(jv '.auth.policies|sort|join(",")')" "a-pol,b-pol,default"
check "metadata.role is ttl" "$(jv '.auth.metadata.role')" ttl
api GET auth/token/lookup-self "" "$(jv '.auth.client_token')"
check "token_max_ttl 20m honoured" "$(jv '.data.explicit_max_ttl')" 1200
check "no template: empty spiffe_ids" "$(jv '.data.spiffe_ids|length')" 0
login jwks glob "${TOK[good_rs]}"
check_status 200 "bound_claims glob *@example.org matches web@example.org"
login jwks cidrok "${TOK[good_rs]}"
check_status 200 "token_bound_cidrs 127.0.0.0/8 admits 127.0.0.1"

# ---------- the bad token table ----------
# NAME|MOUNT|ROLE|STATUS|ERROR SUBSTRING   (token "-": no jwt in the body)
BAD_CASES=$(
    cat <<'EOF'
alg_none|jwks|app|400|error verifying token: alg none refused
alg_none|jwt|app|400|error parsing token: alg none refused
hs256_pem|jwks|app|400|error verifying token: HMAC alg refused
hs256_pem|jwt|app|400|error parsing token: HMAC alg refused
expired|jwks|app|400|error validating claims: validation failed, token is expired (exp)
nbf_future|jwks|app|400|error validating claims: validation failed, token not valid yet (nbf)
iat_future|jwks|app|400|error validating claims: validation field, token issued in the future (iat)
iat_only_future|jwks|app|400|token not valid yet (nbf)
no_times|jwks|app|400|no issue time, notbefore, or expiration time encoded in token
wrong_aud|jwks|app|400|error validating claims: aud claim does not match any bound audience
missing_aud|jwks|app|400|error validating claims: aud claim does not match any bound audience
good_rs|jwks|noaud|400|audience claim found in JWT but no audiences bound to the role
wrong_iss|jwks|app|400|error validating claims: validation failed, invalid issuer claim (iss)
unknown_key|jwt|app|400|no known key successfully validated the token signature
other_key_same_kid|jwks|app|400|error verifying token: signature does not verify
tampered|jwks|app|400|error verifying token: signature does not verify
tampered|jwt|app|400|no known key successfully validated the token signature
stripped|jwks|app|400|error verifying token: token has an empty payload or signature part
two_seg|jwks|app|400|error verifying token: token must have exactly three parts
four_seg|jwks|app|400|error verifying token: token must have exactly three parts
bad_b64|jwks|app|400|error verifying token: payload is not strict base64url
der_sig|jwks|app|400|error verifying token: signature is not of the key's size
der_sig|jwt|app|400|no known key successfully validated the token signature
es_hdr_rsa_key|jwks|app|400|error verifying token: alg does not match the type, curve or alg of the key
crit|jwks|app|400|error verifying token: crit header refused
string_exp|jwks|app|400|error parsing token: exp, nbf and iat must be numeric dates
no_email|jwks|uc|400|claim "email" not found in token
num_email|jwks|uc|400|claim "email" could not be converted to string
ns_dev|jwks|app|400|error validating claims: claim "/kubernetes.io/namespace" does not match any associated bound claim values
email_evil|jwks|glob|400|error validating claims: claim "email" does not match any associated bound claim values
sub_api|jwks|subj|400|error validating claims: validation failed, invalid subject claim (sub)
sub_slash|jwks|app|400|error expanding spiffe_id_template: claim "sub" expands to a value that is not a valid SPIFFE path segment
sub_dotdot|jwks|app|400|error expanding spiffe_id_template: claim "sub" expands to a value that is not a valid SPIFFE path segment
sub_pct|jwks|app|400|error expanding spiffe_id_template: claim "sub" expands to a value that is not a valid SPIFFE path segment
sub_space|jwks|app|400|error expanding spiffe_id_template: claim "sub" expands to a value that is not a valid SPIFFE path segment
sub_umlaut|jwks|app|400|error expanding spiffe_id_template: claim "sub" expands to a value that is not a valid SPIFFE path segment
sub_empty|jwks|app|400|error expanding spiffe_id_template: claim "sub" expands to a value that is not a valid SPIFFE path segment
dup_keys|jwks|app|400|error verifying token: claims are not a JSON object
oversize|jwks|app|400|error parsing token: token is larger than 16384 bytes
deep|jwks|app|400|error verifying token: claims are not a JSON object
good_rs|jwks|cidr|403|permission denied
good_rs|jwks|nosuch|400|role "nosuch" could not be found
-|jwks|app|400|missing token
good_rs|jwks||400|missing role
EOF
)
A0=$(accessor_count)
F0=$(jwks_fetches)
NCASES=0
RESULTS=$TMP/bad-results.txt
: >"$RESULTS"
while IFS='|' read -r name mount role want text; do
    [ -n "$name" ] || continue
    NCASES=$((NCASES + 1))
    if [ "$name" = - ]; then
        api POST "auth/$mount/login" "$(jq -nc --arg r "$role" '{role:$r}')" -
    else
        login "$mount" "$role" "${TOK[$name]}"
    fi
    got_text=$(err0)
    check "bad token $name on $mount/$role: status" "$STATUS" "$want"
    check "bad token $name on $mount/$role: error text has \"$text\" (got \"$got_text\")" \
        "$(yn contains "$got_text" "$text")" yes
    api LIST auth/token/accessors
    check "bad token $name on $mount/$role: the server is up (LIST accessors)" "$STATUS" 200
    check "bad token $name on $mount/$role: no token was created" "$(jv '.data.keys|length')" "$A0"
    printf '%s|%s|%s|%s|%s\n' "$name" "$mount" "$role" "$want" "$got_text" >>"$RESULTS"
done <<<"$BAD_CASES"
check "at least 30 bad tokens were tried" "$(yn [ "$NCASES" -ge 30 ])" yes
check "no bad token (all with a known kid or none) made the server fetch the JWKS" "$(jwks_fetches)" "$F0"
check "the server process is alive after the bad tokens" "$(yn kill -0 "$SRV_PID")" yes
api GET sys/health "" -
check_status 200 "sys/health after the bad tokens"
api POST auth/jwks/login '{"role":"app","jwt":5}' -
check_status 400 "a non-string jwt"

# ---------- unmount: tokens revoked, their SVIDs in the CRL ----------
login gone app "${TOK[gone1]}"
check_status 200 "login on gone/ (1)"
G1=$(jv '.auth.client_token')
login gone app "${TOK[gone2]}"
check_status 200 "login on gone/ (2)"
G2=$(jv '.auth.client_token')
api POST svid/x509 '{}' "$G1"
check_status 200 "a gone/ token obtains an X.509-SVID"
G_SERIAL=$(jv '.data.serial_number')
api POST svid/jwt '{"audience":"db"}' "$G2"
check_status 200 "a gone/ token obtains a JWT-SVID"
G_JWT=$(jv '.data.token')
A0=$(accessor_count)
api DELETE sys/auth/gone "" -
check_status 403 "unmount without a token"
api DELETE sys/auth/gone
check_status 204 "unmount gone/"
api GET sys/auth
check "gone/ is no longer listed" "$(jv '.data|keys|join(",")')" "jwks/,jwt/,token/"
api GET auth/token/lookup-self "" "$G1"
check_status 403 "the first token of gone/ is revoked"
api GET auth/token/lookup-self "" "$G2"
check_status 403 "the second token of gone/ is revoked"
check "two tokens left the store" "$(accessor_count)" $((A0 - 2))
api GET auth/token/lookup-self "" "$T_RS"
check_status 200 "a token of jwt/ is untouched"
curl -s "$ADDR/v1/pki/crl/pem" >"$TMP/crl.pem"
check "the SVID of a gone/ token is in the CRL" \
    "$(yn grep -qx "$(hexnorm "$G_SERIAL")" <(crl_serials "$TMP/crl.pem"))" yes
api GET "pki/cert/$G_SERIAL" "" -
check "pki/cert shows it revoked" "$(yn [ "$(jv '.data.revocation_time')" != 0 ])" yes
api POST svid/jwt/validate "$(jq -nc --arg t "$G_JWT" '{token:$t, audience:"db"}')"
check_status 400 "the JWT-SVID of a gone/ token no longer validates"
api POST auth/gone/login "$(jq -nc --arg j "${TOK[gone1]}" '{role:"app", jwt:$j}')" -
check_status 404 "login on the unmounted path"
api GET auth/gone/role/app
check_status 404 "the unmounted path has no roles"
api DELETE sys/auth/gone
check_status 204 "unmounting again is a no-op 204"
api POST sys/auth/gone '{"type":"jwt"}'
check_status 204 "the path can be mounted again"
api GET auth/gone/role/app
check_status 404 "a re-mount starts without the old roles"
api GET auth/gone/config
check_status 404 "a re-mount starts without the old config"

# ---------- token_bound_cidrs bind the token, not only the login ----------
# As in Vault, a role's networks go with the token it gives: it works from 127.0.0.1 and is
# refused from 127.0.0.2 (the same loopback, another source address), and so is every token it
# makes, after a crash too. A proxy presenting it as a subject token cannot vouch for its
# holder's address, so ext-authz refuses it.
# from ADDR METHOD PATH TOKEN [BODY]: the status of a request from source address ADDR (body in
# $TMP/body)
from() {
    local args=(-s -o "$TMP/body" -w '%{http_code}' --interface "$1" -X "$2" -H "X-Vault-Token: $4")
    if [ -n "${5-}" ]; then args+=(-H 'Content-Type: application/json' --data-binary "$5"); fi
    curl "${args[@]}" "$ADDR/v1/$3" || echo 000
}
check "127.0.0.2 reaches the server" "$(from 127.0.0.2 GET sys/health -)" 200
api PUT sys/policies/acl/tok-create '{"policy":"{\"path\":{\"auth/token/create\":{\"capabilities\":[\"update\"]}}}"}'
check_status 204 "policy tok-create"
api POST auth/jwks/role/here "$(jq -nc '{user_claim:"sub", bound_audiences:["authsvc"],
    token_bound_cidrs:["127.0.0.1/32"], token_policies:["tok-create"],
    spiffe_id_template:"spiffe://{{trust_domain}}/sa/{{claim:sub}}"}')"
check_status 204 "role here (127.0.0.1/32)"
login jwks here "${TOK[good_rs]}"
check_status 200 "login from 127.0.0.1 on role here"
BOUND=$(jv '.auth.client_token')
api GET auth/token/lookup-self "" "$BOUND"
check "the bound token works from 127.0.0.1" "$STATUS" 200
check "  lookup shows bound_cidrs" "$(jv '.data.bound_cidrs|join(",")')" "127.0.0.1/32"
BOUND_ID=$(jv '.data.spiffe_ids[0]')
check "the bound token from 127.0.0.2: 403" "$(from 127.0.0.2 GET auth/token/lookup-self "$BOUND")" 403
check "  permission denied" "$(jq -r '.errors[0]' "$TMP/body")" "permission denied"
check "  nor an SVID from 127.0.0.2" "$(from 127.0.0.2 POST svid/x509 "$BOUND" '{}')" 403
check "  nor renew-self from 127.0.0.2" "$(from 127.0.0.2 POST auth/token/renew-self "$BOUND" '{}')" 403
api POST auth/token/create '{"policies":["default"]}' "$BOUND"
check_status 200 "the bound token makes a child (from 127.0.0.1)"
CHILD=$(jv '.auth.client_token')
check "  the child from 127.0.0.2: 403" "$(from 127.0.0.2 GET auth/token/lookup-self "$CHILD")" 403
check "  the child from 127.0.0.1: 200" "$(from 127.0.0.1 GET auth/token/lookup-self "$CHILD")" 200
check "  the child is bound alike" "$(jq -r '.data.bound_cidrs|join(",")' "$TMP/body")" "127.0.0.1/32"
login jwks ttl "${TOK[good_rs]}"
check "a token of an unbound role works from 127.0.0.2" \
    "$(from 127.0.0.2 GET auth/token/lookup-self "$(jv '.auth.client_token')")" 200
check "ext-authz refuses the bound token as a subject token" "$(curl -s -o "$TMP/body" -w '%{http_code}' \
    -H "X-Vault-Token: $ROOT_TOKEN" -H "X-Authsvc-Subject-Token: $BOUND" \
    "$ADDR/v1/connect/ext-authz?target=$(jq -rn --arg t "$BOUND_ID" '$t|@uri')")" 403
check "  saying why" "$(yn contains "$(jq -r '.errors[0]' "$TMP/body")" "bound to networks")" yes
# (After a crash the bindings still hold: at the end, once the JWKS timing checks are done.)

# ---------- role and mount changes reach the very next login (they are cached in memory) ----------
login jwt app "${TOK[good_rs]}"
check_status 200 "a login fills the mount and role cache"
login jwt app "${TOK[good_rs]}"
check_status 200 "the same login again (from the cache)"
api GET auth/jwt/role/app
ROLE_BEFORE=$(jq -c .data <<<"$BODY")
api POST auth/jwt/role/app "$(jq -c '.bound_audiences = ["someone-else"]' <<<"$ROLE_BEFORE")"
check_status 204 "the role now wants another audience"
login jwt app "${TOK[good_rs]}"
check_status 400 "the next login sees the changed role"
check "with the audience error" "$(yn contains "$(err0)" "aud claim does not match any bound audience")" yes
api POST auth/jwt/role/app "$ROLE_BEFORE"
check_status 204 "the role restored"
login jwt app "${TOK[good_rs]}"
check_status 200 "the next login sees the restored role"
api POST auth/jwt/role/gone-soon "$ROLE_BEFORE"
login jwt gone-soon "${TOK[good_rs]}"
check_status 200 "a login with a second role"
api DELETE auth/jwt/role/gone-soon
check_status 204 "that role deleted"
login jwt gone-soon "${TOK[good_rs]}"
check_status 400 "the next login does not find the deleted role"
check "with Vault's text" "$(err0)" 'role "gone-soon" could not be found'
api POST auth/jwt/config "$(jq -nc --arg b "$EC1_PUB" --arg iss "$ISS" '{jwt_validation_pubkeys:[$b], bound_issuer:$iss}')"
check_status 204 "the mount's config now has only the EC key"
login jwt app "${TOK[good_rs]}"
check_status 400 "the next RS256 login sees the changed config"
api POST auth/jwt/config "$(cfg_static)"
check_status 204 "the config restored"
login jwt app "${TOK[good_rs]}"
check_status 200 "the next login sees the restored config"
api POST sys/auth/cached '{"type":"jwt"}'
api POST auth/cached/config "$(cfg_static)"
api POST auth/cached/role/app "$ROLE_BEFORE"
login cached app "${TOK[good_rs]}"
check_status 200 "a login on a third mount"
api DELETE sys/auth/cached
check_status 204 "that mount unmounted"
login cached app "${TOK[good_rs]}"
check_status 404 "the next login finds no mount"

# ---------- node-vault ----------
printf '%s\n' "${TOK[good_rs]}" >"$TMP/web.jwt"
rc=0
(cd "$NODE_DIR" && AUTHSVC_ADDR=$ADDR JWT_FILE=$TMP/web.jwt ROLE=app MOUNT=jwt \
    EXPECT_POLICIES=app-pol,default EXPECT_LEASE=3600 EXPECT_SPIFFE_ID=$WEB_ID \
    node jwt_login.js) >"$TMP/node.out" 2>&1 || rc=$?
check "node-vault jwt_login.js passes" "$rc" 0
if [ "$rc" != 0 ]; then sed 's/^/  /' "$TMP/node.out" >&2; fi

# ---------- authctl login ----------
ctl login -method=jwt -role=app -jwt=@"$TMP/web.jwt"
check "authctl login -method=jwt exits 0" "$RC" 0
[ "$RC" = 0 ] || echo "  stderr: $ERR" >&2
check "it says it authenticated" "$(head -1 <<<"$OUT" | cut -c1-36)" "Success! You are now authenticated. "
check "it shows token_accessor" "$(yn grep -qE '^token_accessor +[^ ]+' <<<"$OUT")" yes
check "it shows the policies" "$(grep -E '^token_policies ' <<<"$OUT" | sed 's/  */ /g')" 'token_policies ["app-pol" "default"]'
check "it shows token_meta_role" "$(grep -E '^token_meta_role ' <<<"$OUT" | sed 's/  */ /g')" "token_meta_role app"
check "it shows token_duration 1h" "$(grep -E '^token_duration ' <<<"$OUT" | sed 's/  */ /g')" "token_duration 1h"
check "it does not print the token" "$(yn grep -q 'ast\.' <<<"$OUT$ERR")" no
check "HOME/.authsvc-token is mode 0600" "$(stat -c %a "$HOME/.authsvc-token" 2>/dev/null)" 600
check_match "HOME/.authsvc-token holds one token line" "$(cat "$HOME/.authsvc-token")" '^ast\.[A-Za-z0-9_-]{43}$'
check "no temp file left in HOME" "$(ls -A "$HOME" | paste -sd, -)" ".authsvc-token"
STORED=$(cat "$HOME/.authsvc-token")
ctl token lookup -format=json
check "authctl token lookup uses the stored token" "$RC" 0
check "lookup: display_name" "$(jo '.data.display_name')" "jwt-web"
check "lookup: path" "$(jo '.data.path')" "auth/jwt/login"
check "lookup: spiffe_ids" "$(jo '.data.spiffe_ids|join(",")')" "$WEB_ID"
ctl login -method=jwt -mount=jwt -role=app -jwt="${TOK[good_es]}" -no-store
check "authctl login -jwt=TOKEN -no-store exits 0" "$RC" 0
check_match "-no-store prints the token" "$(grep -E '^token ' <<<"$OUT" | sed 's/  */ /g')" '^token ast\.[A-Za-z0-9_-]{43}$'
check "-no-store leaves ~/.authsvc-token alone" "$(cat "$HOME/.authsvc-token")" "$STORED"
ctl login -method=jwt -mount=jwks -role=ttl -jwt=- -format=json <"$TMP/web.jwt"
check "authctl login -format=json (JWT on stdin) exits 0" "$RC" 0
check "-format=json prints the answer" "$(jo '.auth.lease_duration')" 600
check "-format=json stores that token" "$(cat "$HOME/.authsvc-token")" "$(jo '.auth.client_token')"
AUTHSVC_TOKEN=$STORED ctl login -method=jwt -role=app -jwt=@"$TMP/web.jwt"
check "login with AUTHSVC_TOKEN set still succeeds" "$RC" 0
check "and warns that AUTHSVC_TOKEN takes precedence" "$(yn contains "$ERR" "AUTHSVC_TOKEN")" yes
printf '%s\n' "${TOK[expired]}" >"$TMP/expired.jwt"
cp "$HOME/.authsvc-token" "$TMP/token.before"
ctl login -method=jwt -mount=jwks -role=app -jwt=@"$TMP/expired.jwt"
check "a refused login exits 1" "$RC" 1
check "with the server's error" "$(yn contains "$ERR" "token is expired (exp)")" yes
check "a refused login leaves the stored token" "$(cat "$HOME/.authsvc-token")" "$(cat "$TMP/token.before")"
ctl login -role=app -jwt=@"$TMP/web.jwt"
check "login without -method is a usage error" "$RC" 2
ctl login -method=userpass
check "an unknown -method is a usage error" "$RC" 2
ctl login -method=jwt -role=app
check "-method=jwt without -jwt is a usage error" "$RC" 2
ctl login -method=jwt -role=app -jwt=@"$TMP/nonexistent.jwt"
check "an unreadable -jwt file exits 1" "$RC" 1
: >"$TMP/empty.jwt"
ctl login -method=jwt -role=app -jwt=@"$TMP/empty.jwt"
check "an empty -jwt file is a usage error" "$RC" 2
ctl login -method=cert -client-cert="$TMP/x.pem" -client-key="$TMP/x.key"
check "-method=cert against an http:// address is a usage error" "$RC" 2
check "it says https is needed" "$(yn contains "$ERR" "https://")" yes
ctl login -method=cert
check "-method=cert without -client-cert is a usage error" "$RC" 2
ctl login -method=jwt -role=app -jwt=@"$TMP/web.jwt" -spiffe-id=x
check "a flag of another command is a usage error" "$RC" 2
# cert: the client certificate goes into the TLS handshake of the HTTPS listener. Mounted nowhere
# here, so the answer is the 404 of the login path: proof of a TLS round trip with the certificate.
api POST svid/x509 '{}' "$T_RS"
jv '.data.certificate' >"$TMP/client.pem"
jv '.data.private_key' >"$TMP/client.key"
curl -s "$ADDR/v1/pki/bundle/pem" >"$TMP/bundle.pem"
AUTHSVC_ADDR=$TLS_ADDR AUTHSVC_CACERT=$TMP/bundle.pem ctl login -method=cert -mount=nocert \
    -client-cert="$TMP/client.pem" -client-key="$TMP/client.key"
check "login -method=cert over HTTPS reaches the server (no mount: exit 1)" "$RC" 1
check "with the server's 404 text" "$(yn contains "$ERR" "no auth method mounted at auth/nocert")" yes

# ---------- JWKS rotation ----------
# The issuer rotates: k2 is published next to k1. The config write fetched at T_FETCH1, and a
# refetch needs 10 s since the last fetch.
mint_jwks "$K/rsa1.key:k1" "$K/ec1.key:e1" "$K/rsa2.key:k2"
wait_until $((T_FETCH1 + 11))
F0=$(jwks_fetches)
login jwks app "${TOK[good_k2]}"
check_status 200 "a token signed with the rotated-in key k2 logs in, no config write needed"
check "the rotated token's subject" "$(jv '.auth.metadata.subject')" rotated
check "the unknown kid made exactly one refetch" "$(jwks_fetches)" $((F0 + 1))
F1=$(jwks_fetches)
for _ in 1 2 3 4 5 6; do
    login jwks app "${TOK[good_k3]}"
done
check_status 400 "an unknown kid k3 within 10 s of the last fetch is refused"
check "refused for its kid" "$(yn contains "$(err0)" "error verifying token: kid names no key of the key set")" yes
check "six logins with an unknown kid caused no fetch (no refetch storm)" "$(jwks_fetches)" "$F1"
login jwks app "${TOK[good_rs]}"
check_status 200 "k1 still works after the rotation"
# Now the issuer publishes k3 and drops k1: within 10 s of the last fetch nothing changes.
mint_jwks "$K/rsa2.key:k2" "$K/rsa3.key:k3"
T_FETCH3=$(date +%s)
login jwks app "${TOK[good_k3]}"
check_status 400 "k3 published, but within 10 s of the last fetch: still refused"
check "still no fetch" "$(jwks_fetches)" "$F1"

# ---------- login rate limit (a second server: limits.login_per_second 5) ----------
RL_PORT=$(free_port)
RL_TLS=$(free_port)
RL_ADDR=http://127.0.0.1:$RL_PORT
jq -n --arg d "$TMP/rl-data" --arg l "127.0.0.1:$RL_PORT" --arg t "127.0.0.1:$RL_TLS" \
    '{trust_domain:"example.org", data_dir:$d, listen:$l, tls_listen:$t, limits:{login_per_second:5}}' \
    >"$TMP/rl.json"
"$AUTHSVC" server --config "$TMP/rl.json" >"$TMP/rl.out" 2>"$TMP/rl.log" &
RL_PID=$!
for _ in $(seq 1 200); do
    curl -s -o /dev/null "$RL_ADDR/v1/sys/health" 2>/dev/null && break
    sleep 0.05
done
RL_ROOT=$(curl -s -X POST -d "$(jq -nc --arg c "$(cat "$TMP/rl-data/bootstrap-code")" '{code:$c}')" \
    "$RL_ADDR/v1/sys/bootstrap" | jq -r '.auth.client_token')
check_match "the second server bootstraps" "$RL_ROOT" '^ast\.'
rl_api() { curl -s -o /dev/null -w '%{http_code}' -X "$1" -H "X-Vault-Token: $RL_ROOT" --data-binary "$3" "$RL_ADDR/v1/$2"; }
check "second server: mount jwt/" "$(rl_api POST sys/auth/jwt '{"type":"jwt"}')" 204
check "second server: config" "$(rl_api POST auth/jwt/config "$(cfg_static)")" 204
check "second server: role" "$(rl_api POST auth/jwt/role/app "$APP_ROLE")" 204
BADBODY=$(jq -nc --arg j "${TOK[tampered]}" '{role:"app", jwt:$j}')
: >"$TMP/rl-codes"
for n in $(seq 1 40); do
    curl -s -o "$TMP/rl-body.$n" -D "$TMP/rl-hdr.$n" -w '%{http_code}\n' -X POST \
        --data-binary "$BADBODY" "$RL_ADDR/v1/auth/jwt/login" >>"$TMP/rl-codes"
done
N429=$(grep -c '^429$' "$TMP/rl-codes" || true)
N400=$(grep -c '^400$' "$TMP/rl-codes" || true)
check "40 quick bad logins: some are 429" "$(yn [ "$N429" -gt 0 ])" yes
check "40 quick bad logins: the burst is answered (400)" "$(yn [ "$N400" -ge 5 ])" yes
check "40 quick bad logins: nothing but 400 and 429" "$((N429 + N400))" 40
FIRST429=$(grep -n '^429$' "$TMP/rl-codes" | head -1 | cut -d: -f1)
if [ -n "$FIRST429" ]; then
    RA=$(tr -d '\r' <"$TMP/rl-hdr.$FIRST429" | sed -n 's/^[Rr]etry-[Aa]fter: *//p')
    check_match "a 429 carries Retry-After in whole seconds" "$RA" '^[1-9][0-9]*$'
    check "the 429 error text" "$(yn contains "$(jq -r '.errors[0]' <"$TMP/rl-body.$FIRST429")" "too many logins")" yes
fi
sleep 2
GOODBODY=$(jq -nc --arg j "${TOK[good_rs]}" '{role:"app", jwt:$j}')
check "after 2 s a login works again" \
    "$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary "$GOODBODY" "$RL_ADDR/v1/auth/jwt/login")" 200
check "the main server (default limit 100/s) was never limited" "$(grep -c 'too many logins' "$SRV_LOG" || true)" 0
kill -TERM "$RL_PID"
rc=0
wait "$RL_PID" || rc=$?
RL_PID=""
check "the second server stops cleanly" "$rc" 0

# ---------- JWKS rotation, continued: 10 s later the new key is fetched ----------
wait_until $((T_FETCH3 + 11))
# Eight logins at once with the unknown kid k3: they share one fetch.
K3BODY=$(jq -nc --arg j "${TOK[good_k3]}" '{role:"app", jwt:$j}')
PAR_PIDS=()
for n in 1 2 3 4 5 6 7 8; do
    curl -s -o /dev/null -w '%{http_code}\n' -X POST --data-binary "$K3BODY" \
        "$ADDR/v1/auth/jwks/login" >"$TMP/par.$n" &
    PAR_PIDS+=($!)
done
wait "${PAR_PIDS[@]}" || true
check "10 s later, eight concurrent logins with the new kid k3 all succeed" "$(cat "$TMP"/par.* | sort | uniq -c | sed 's/^ *//')" "8 200"
check "they caused exactly one fetch" "$(jwks_fetches)" $((F1 + 1))
login jwks app "${TOK[good_rs]}"
check_status 400 "k1, dropped by the issuer, is refused after the refetch"
check "a dropped key's kid is unknown" "$(yn contains "$(err0)" "kid names no key of the key set")" yes

# ---------- token_bound_cidrs after a crash: the bindings come back from the store ----------
kill_server
restart_server
check "after kill -9: the bound token from 127.0.0.2: 403" \
    "$(from 127.0.0.2 GET auth/token/lookup-self "$BOUND")" 403
check "  from 127.0.0.1: 200" "$(from 127.0.0.1 GET auth/token/lookup-self "$BOUND")" 200
check "  its child from 127.0.0.2: 403" "$(from 127.0.0.2 GET auth/token/lookup-self "$CHILD")" 403

# ---------- the table, for the record ----------
echo "bad token results (name|mount|role|status|error):"
sed 's/^/  /' "$RESULTS"

stop_helpers
stop_server
finish
