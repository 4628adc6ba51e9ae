#!/usr/bin/env bash
# test_badinput.sh: malformed and hostile requests get the right status, a Vault-style errors array,
# and leave the store unchanged (snapshot = LIST sys/policy keys + LIST auth/token/accessors keys).
set -euo pipefail
# shellcheck source=lib.sh
source "$AUTHSVC_SRC/tests/integration/lib.sh"

P2_PID=""
extra_cleanup() {
    if [ -n "$P2_PID" ] && kill -0 "$P2_PID" 2>/dev/null; then
        kill -KILL "$P2_PID" 2>/dev/null || true
        wait "$P2_PID" 2>/dev/null || true
    fi
}
trap 'extra_cleanup; cleanup' EXIT

jv() { jq -r "$1" <<<"$BODY" 2>/dev/null || echo "<not json>"; }
# req METHOD URL [curl args...]: raw request with the root token unless -H given; sets STATUS, BODY
req() {
    local method=$1 url=$2
    shift 2
    LAST_REQ="$method $url"
    STATUS=$(curl -s -o "$TMP/body" -w '%{http_code}' -X "$method" "$@" "$url") || STATUS=000
    BODY=$(cat "$TMP/body" 2>/dev/null || true)
}
IGNORE_ACC=""
# snapshot: policy names + token accessors (minus IGNORE_ACC, an expired token the server may reap)
snapshot() {
    local s b=$BODY st=$STATUS lr=${LAST_REQ-}
    api LIST sys/policy
    s="policies=$(jv '.data.keys|sort|join(",")') status=$STATUS"
    api LIST auth/token/accessors
    s="$s accessors=$(jq -r --arg i "$IGNORE_ACC" '.data.keys|map(select(. != $i))|sort|join(",")' <<<"$BODY" 2>/dev/null || echo "<bad>") status=$STATUS"
    BODY=$b
    STATUS=$st
    LAST_REQ=$lr
    echo "$s"
}
# expect DESC STATUS [ERRPREFIX]: assert status, errors array, optional errors[0] prefix, unchanged store
expect() {
    local desc=$1 want=$2 prefix=${3-}
    check "$desc: status" "$STATUS" "$want"
    [ "$STATUS" != "$want" ] && echo "  body: $BODY" >&2
    check "$desc: errors is a non-empty array of strings" \
        "$(jv '(.errors|type=="array") and (.errors|length>0) and all(.errors[]; type=="string")')" true
    if [ -n "$prefix" ]; then
        check "$desc: errors[0] starts with '$prefix'" "$(jq -r --arg p "$prefix" '.errors[0]|startswith($p)' <<<"$BODY" 2>/dev/null || echo false)" true
    fi
    local now
    now=$(snapshot)
    check "$desc: store unchanged" "$now" "$SNAP"
    SNAP=$now
}
PARSE='failed to parse JSON input'
VALID_POL='{"path":{"ok/*":{"capabilities":["read"]}}}'

start_server

# tokens used as bad credentials, prepared before the baseline snapshot
api POST auth/token/create '{"policies":["default"]}'
check_status 200 "create token to revoke"
REVOKED=$(jv '.auth.client_token')
api POST auth/token/revoke-self '' "$REVOKED"
check_status 204 "revoke it"
api POST auth/token/create '{"ttl":"2s","policies":["default"]}'
check_status 200 "create ttl-2s token"
EXPIRED=$(jv '.auth.client_token')
IGNORE_ACC=$(jv '.auth.accessor')
EXP_START=$SECONDS
api POST auth/token/create '{"policies":["default"]}'
check_status 200 "create a live default token"
LIVE=$(jv '.auth.client_token')
NEVER="ast.$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"

# a second server with its own data dir: its root token must mean nothing here
P2_DATA=$TMP/data2
P2_PORT=$(free_port)
"$AUTHSVC" server --dev --data-dir "$P2_DATA" --listen "127.0.0.1:$P2_PORT" \
    --tls-listen "127.0.0.1:$(free_port)" >"$TMP/server2.out" 2>"$TMP/server2.log" &
P2_PID=$!
for _ in $(seq 1 200); do
    curl -s -o /dev/null "http://127.0.0.1:$P2_PORT/v1/sys/health" && break
    sleep 0.05
done
OTHER_ROOT=$(cat "$P2_DATA/root-token" 2>/dev/null || echo "ast.missing-second-server-token")
STATUS=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Vault-Token: $OTHER_ROOT" \
    "http://127.0.0.1:$P2_PORT/v1/auth/token/lookup-self") || STATUS=000
check "second server's root token works on the second server" "$STATUS" 200
kill -TERM "$P2_PID" 2>/dev/null || true
rc=0
wait "$P2_PID" || rc=$?
P2_PID=""
check "second server stops cleanly" "$rc" 0
check "the two servers have different root tokens" "$([ "$OTHER_ROOT" != "$ROOT_TOKEN" ] && echo yes || echo no)" yes

SNAP=$(snapshot)
check_match "baseline snapshot lists policies and accessors" "$SNAP" '^policies=.*default.*root.* status=200 accessors=.+ status=200$'

# ---------- malformed JSON ----------
api POST sys/policy/bad1 '{"policy": '
expect "truncated JSON to sys/policy" 400 "$PARSE"
api POST auth/token/create '{"policies":["default"],'
expect "truncated JSON to auth/token/create" 400 "$PARSE"
api POST sys/policies/acl/bad2 '{"policy": "x" trailing}'
expect "JSON with trailing garbage to sys/policies/acl" 400 "$PARSE"
api POST auth/token/create "{'policies': ['default']}"
expect "single-quoted pseudo-JSON to auth/token/create" 400 "$PARSE"

# ---------- duplicate keys ----------
api POST sys/policy/dup "$(printf '{"policy":%s,"policy":%s}' "$(jq -nc --arg p "$VALID_POL" '$p')" "$(jq -nc --arg p "$VALID_POL" '$p')")"
expect "duplicate key policy in sys/policy body" 400 "$PARSE"
api POST auth/token/create '{"ttl":"1h","ttl":"2h"}'
expect "duplicate key ttl in auth/token/create body" 400 "$PARSE"
api POST auth/token/create '{"meta":{"a":"1","a":"2"}}'
expect "duplicate nested key in meta" 400 "$PARSE"

# ---------- invalid policies ----------
api POST sys/policy/badcap "$(jq -nc --arg p '{"path":{"x/*":{"capabilities":["read","fly"]}}}' '{policy:$p}')"
expect "unknown capability fly" 400
api POST sys/policies/acl/badcap "$(jq -nc --arg p '{"path":{"x/*":{"capabilities":["fly"]}}}' '{policy:$p}')"
expect "unknown capability via sys/policies/acl" 400
api POST sys/policy/badpath "$(jq -nc --arg p '{"path":{"a":5}}' '{policy:$p}')"
expect "policy path rule that is a number" 400
api POST sys/policy/badpath2 "$(jq -nc --arg p '{"path":["x"]}' '{policy:$p}')"
expect "policy path that is an array, not an object of strings" 400
api POST sys/policy/badpol '{"policy":5}'
expect "policy field that is not a string" 400

# ---------- oversize bodies ----------
{
    printf '{"policy":"'
    head -c $((1048576 + 1 - 13)) /dev/zero | tr '\0' 'a'
    printf '"}'
} >"$TMP/big.json"
check "oversize body file is 1 MiB + 1 byte" "$(stat -c %s "$TMP/big.json")" 1048577
req POST "$ADDR/v1/sys/policy/big" -H "X-Vault-Token: $ROOT_TOKEN" -H 'Content-Type: application/json' \
    -H 'Expect: 100-continue' --data-binary "@$TMP/big.json"
expect "body of 1 MiB + 1 with Expect: 100-continue" 413
# The 413 must come from Content-Length, before the body: no "100 Continue" may precede it.
hdrs=$(curl -sv -o /dev/null -H "X-Vault-Token: $ROOT_TOKEN" -H 'Expect: 100-continue' \
    --data-binary "@$TMP/big.json" "$ADDR/v1/sys/policy/big" 2>&1 | grep '^< HTTP/' | tr -d '\r' || true)
check "oversize Content-Length answered without reading the body (one status line, 413)" \
    "$(wc -l <<<"$hdrs") $(cut -c1-14 <<<"$hdrs")" "1 < HTTP/1.1 413"
req POST "$ADDR/v1/auth/token/create" -H "X-Vault-Token: $ROOT_TOKEN" -H 'Content-Type: application/json' \
    -H 'Expect: 100-continue' --data-binary "@$TMP/big.json"
expect "body of 1 MiB + 1 to auth/token/create" 413
req POST "$ADDR/v1/sys/policy/big" -H "X-Vault-Token: $ROOT_TOKEN" -H 'Content-Type: application/json' \
    -H 'Transfer-Encoding: chunked' --data-binary "@$TMP/big.json"
expect "chunked body of 1 MiB + 1" 413
{
    printf '{"policy":"'
    head -c $((1048576 - 11)) /dev/zero | tr '\0' 'a'
} >"$TMP/edge.json"
check "edge body file is exactly 1 MiB" "$(stat -c %s "$TMP/edge.json")" 1048576
req POST "$ADDR/v1/sys/policy/edge" -H "X-Vault-Token: $ROOT_TOKEN" -H 'Content-Type: application/json' \
    --data-binary "@$TMP/edge.json"
expect "exactly 1 MiB of malformed JSON is read and rejected as JSON (not 413)" 400 "$PARSE"
api GET auth/token/lookup-self
check_status 200 "server still answers after oversize bodies"

# ---------- bad credentials ----------
for name in REVOKED NEVER OTHER_ROOT garbage; do
    if [ "$name" = garbage ]; then tk="not-a-token"; else tk=${!name}; fi
    api GET auth/token/lookup-self "" "$tk"
    expect "$name token: lookup-self" 403
    check "$name token: error is permission denied" "$(jv '.errors[0]')" "permission denied"
    api POST sys/policy/evil "$(jq -nc --arg p "$VALID_POL" '{policy:$p}')" "$tk"
    expect "$name token: write sys/policy/evil" 403
    api POST auth/token/create '{}' "$tk"
    expect "$name token: create token" 403
    api POST auth/token/revoke "$(jq -nc --arg t "$LIVE" '{token:$t}')" "$tk"
    expect "$name token: revoke another token" 403
done
req GET "$ADDR/v1/auth/token/lookup-self" -H "Authorization: Bearer $NEVER"
expect "never-issued token as Bearer" 403
check "live token still works (was not revoked by bad credentials)" \
    "$(api GET auth/token/lookup-self "" "$LIVE"; echo "$STATUS")" 200

left=$((3 - (SECONDS - EXP_START)))
[ "$left" -gt 0 ] && sleep "$left"
api GET auth/token/lookup-self "" "$EXPIRED"
expect "expired token: lookup-self" 403
check "expired token: error is permission denied" "$(jv '.errors[0]')" "permission denied"
api POST sys/policy/evil "$(jq -nc --arg p "$VALID_POL" '{policy:$p}')" "$EXPIRED"
expect "expired token: write sys/policy/evil" 403
api POST auth/token/renew-self '{}' "$EXPIRED"
expect "expired token: renew-self" 403

# ---------- hostile paths ----------
PB=$(jq -nc --arg p "$VALID_POL" '{policy:$p}')
hp() { # hp DESC PATH : POST a valid policy body to a raw path, expect 400
    req POST "$ADDR$2" --path-as-is -H "X-Vault-Token: $ROOT_TOKEN" -H 'Content-Type: application/json' --data-binary "$PB"
    expect "$1" 400
}
hp "path with .. segment" "/v1/sys/policy/x/../evil"
hp "path with .. escaping to a sibling" "/v1/sys/policies/../policy/evil"
hp "path with . segment" "/v1/sys/policy/./evil"
hp "path ending in .." "/v1/sys/policy/evil/.."
hp "path with %2F" "/v1/sys/policy/evil%2Fx"
hp "path with %2f" "/v1/sys/policy/evil%2fx"
hp "path with %00" "/v1/sys/policy/evil%00"
hp "path with // (empty segment)" "/v1/sys//policy/evil"
hp "path with trailing empty segment after //" "/v1/sys/policy//evil"
req GET "$ADDR/v1/sys/../sys/health" --path-as-is
expect "GET sys/health via .. without a token" 400
req GET "$ADDR/v1/auth/token/./lookup-self" --path-as-is -H "X-Vault-Token: $ROOT_TOKEN"
expect "GET lookup-self via . segment" 400

api GET auth/token/lookup-self
check_status 200 "server healthy at the end"
stop_server
finish
