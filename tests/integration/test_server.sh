#!/usr/bin/env bash
# test_server.sh: health, envelope, token headers, routing errors, data-dir files, HTTPS listener and
# PKI reads, restart with the same CA, clean SIGTERM stop, non-dev bootstrap and config/flag errors.
set -euo pipefail
# shellcheck source=lib.sh
source "$AUTHSVC_SRC/tests/integration/lib.sh"

ND_PID=""
extra_cleanup() {
    if [ -n "$ND_PID" ] && kill -0 "$ND_PID" 2>/dev/null; then
        kill -KILL "$ND_PID" 2>/dev/null || true
        wait "$ND_PID" 2>/dev/null || true
    fi
}
trap 'extra_cleanup; cleanup' EXIT

# req METHOD URL [curl args...]: raw request; sets STATUS, BODY (HEAD uses curl -I)
req() {
    local method=$1 url=$2
    shift 2
    LAST_REQ="$method $url"
    local args=(-s -o "$TMP/body" -w '%{http_code}')
    if [ "$method" = HEAD ]; then args+=(-I); else args+=(-X "$method"); fi
    STATUS=$(curl "${args[@]}" "$@" "$url") || STATUS=000
    BODY=$(cat "$TMP/body" 2>/dev/null || true)
}
# jv FILTER: jq -r on BODY that never aborts the script
jv() { jq -r "$1" <<<"$BODY" 2>/dev/null || echo "<not json>"; }
errors_ok() { jq -r '(.errors|type=="array") and (.errors|length>0) and all(.errors[]; type=="string")' <<<"$BODY" 2>/dev/null || echo false; }
perms() { stat -c '%a' "$1" 2>/dev/null || echo missing; }

start_server

# ---------- health ----------
req GET "$ADDR/v1/sys/health"
check_status 200 "GET sys/health without a token is 200"
check "health.initialized is true" "$(jv '.initialized')" true
check "health.sealed is false" "$(jv '.sealed')" false
check "health.standby is false" "$(jv '.standby')" false
check "health.version is a non-empty string" "$(jv '(.version|type=="string") and (.version|length>0)')" true
check "health.server_time_utc is an integer" "$(jv '(.server_time_utc|type=="number") and (.server_time_utc|floor==.)')" true
now=$(date +%s)
st=$(jv '.server_time_utc // 0')
check "health.server_time_utc is within 60 s of the local clock" \
    "$([[ "$st" =~ ^[0-9]+$ ]] && [ $((st - now)) -le 60 ] && [ $((now - st)) -le 60 ] && echo yes || echo no)" yes
check "health.trust_domain is example.org" "$(jv '.trust_domain')" example.org
check "health is a bare object, not the envelope (no request_id, no data)" \
    "$(jv 'has("request_id") or has("data")')" false

req HEAD "$ADDR/v1/sys/health"
check_status 200 "HEAD sys/health without a token is 200"

req GET "$ADDR/v1/sys/health" -H "X-Vault-Token: not-a-token"
check_status 200 "GET sys/health with an invalid token is still 200 (no auth needed)"

# ---------- envelope and request ids ----------
api GET auth/token/lookup-self
check_status 200 "root lookup-self is 200"
for k in request_id lease_id renewable lease_duration data wrap_info warnings auth; do
    check "success envelope has key $k" "$(jv "has(\"$k\")")" true
done
check "envelope lease_id is empty string" "$(jv '.lease_id')" ""
check "envelope renewable is false" "$(jv '.renewable')" false
check "envelope lease_duration is 0" "$(jv '.lease_duration')" 0
check "envelope wrap_info is null" "$(jv '.wrap_info')" null
check "envelope keys in Vault's order" "$(jq -c 'keys_unsorted' <<<"$BODY")" \
    '["request_id","lease_id","renewable","lease_duration","data","wrap_info","warnings","auth"]'
check "envelope warnings null when there are none" "$(jv '.warnings')" null
check "envelope auth null on a lookup" "$(jv '.auth')" null
rid1=$(jv '.request_id')
api GET auth/token/lookup-self
rid2=$(jv '.request_id')
check "request_id is a non-empty string" "$([ -n "$rid1" ] && [ "$rid1" != null ] && echo yes || echo no)" yes
check_match "request_id is a UUID (version 4, RFC 4122 variant)" "$rid2" \
    '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'
check "request_id differs between two requests" "$([ "$rid1" != "$rid2" ] && echo yes || echo no)" yes

# ---------- data dir, root token file, stdout vs log ----------
check "data dir mode is 0700" "$(perms "$DATA")" 700
check "root-token file mode is 0600" "$(perms "$DATA/root-token")" 600
check "ca.pem exists in the data dir" "$([ -s "$DATA/ca.pem" ] && echo yes || echo no)" yes
check "ca-key.pem mode is 0600" "$(perms "$DATA/ca-key.pem")" 600
check "root-token file is the token followed by exactly one newline" \
    "$(wc -l <"$DATA/root-token" | tr -d ' ')/$(tail -c1 "$DATA/root-token" | od -An -c | tr -d ' ')" '1/\n'
check_match "root token has the ast.<43 base64url> shape" "$ROOT_TOKEN" '^ast\.[A-Za-z0-9_-]{43}$'
check "server stdout contains the root token from the root-token file" \
    "$(grep -qF "$ROOT_TOKEN" "$TMP/server.out" && echo yes || echo no)" yes
check "root token equals the token printed on stdout" \
    "$(grep -oE 'ast\.[A-Za-z0-9_-]{43}' "$TMP/server.out" | head -n1)" "$ROOT_TOKEN"

# ---------- token headers ----------
req GET "$ADDR/v1/auth/token/lookup-self" -H "Authorization: Bearer $ROOT_TOKEN"
check_status 200 "Authorization: Bearer with the root token is accepted"
check "Bearer lookup-self returns the root token id" "$(jv '.data.id')" "$ROOT_TOKEN"
req GET "$ADDR/v1/auth/token/lookup-self" -H "Authorization: Bearer ast.bogusbogusbogus" -H "X-Vault-Token: $ROOT_TOKEN"
check_status 200 "bad Bearer + good X-Vault-Token is 200 (X-Vault-Token wins)"
req GET "$ADDR/v1/auth/token/lookup-self" -H "Authorization: Bearer $ROOT_TOKEN" -H "X-Vault-Token: ast.bogusbogusbogus"
check_status 403 "good Bearer + bad X-Vault-Token is 403 (X-Vault-Token wins)"
check "403 error text is permission denied" "$(jv '.errors[0]')" "permission denied"
req GET "$ADDR/v1/auth/token/lookup-self"
check_status 403 "lookup-self without any token is 403"
check "missing-token error is permission denied" "$(jv '.errors[0]')" "permission denied"
req GET "$ADDR/v1/auth/token/lookup-self" -H "X-Vault-Token: $ROOT_TOKEN" -H "X-Vault-Namespace;"
check_status 200 "an empty X-Vault-Namespace header is ignored"

# ---------- routing errors ----------
api GET sys/no-such-endpoint
check_status 404 "GET unknown path sys/no-such-endpoint is 404"
check "404 body has a non-empty errors array" "$(errors_ok)" true
api GET auth/token/no-such-endpoint
check_status 404 "GET unknown path auth/token/no-such-endpoint is 404"
req GET "$ADDR/v2/sys/health"
check_status 404 "a path outside /v1 is 404"
req PATCH "$ADDR/v1/sys/health"
check_status 405 "PATCH sys/health is 405"
check "405 body has a non-empty errors array" "$(errors_ok)" true
api DELETE auth/token/lookup-self
check_status 405 "DELETE auth/token/lookup-self is 405"
req HEAD "$ADDR/v1/sys/policy" -H "X-Vault-Token: $ROOT_TOKEN"
check_status 405 "HEAD sys/policy is 405 (HEAD only on sys/health)"
req HEAD "$ADDR/v1/auth/token/lookup-self" -H "X-Vault-Token: $ROOT_TOKEN"
check_status 405 "HEAD auth/token/lookup-self is 405"

# ---------- HTTPS listener and PKI reads ----------
curl -s -o "$TMP/ca.pem" "$ADDR/v1/pki/ca/pem" || true
check "pki/ca/pem (no token) is a PEM certificate" \
    "$(openssl x509 -in "$TMP/ca.pem" -noout >/dev/null 2>&1 && echo yes || echo no)" yes
STATUS=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TMP/ca.pem" \
    --resolve "localhost:$TLS_PORT:127.0.0.1" "https://localhost:$TLS_PORT/v1/sys/health") || STATUS=000
check "HTTPS health by name localhost verifies against pki/ca/pem" "$STATUS" 200
STATUS=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TMP/ca.pem" "$TLS_ADDR/v1/sys/health") || STATUS=000
check "HTTPS health by 127.0.0.1 verifies against pki/ca/pem" "$STATUS" 200
rc=0
curl -s -o /dev/null "$TLS_ADDR/v1/sys/health" || rc=$?
check "HTTPS without the CA fails verification (curl exit 60)" "$rc" 60
STATUS=$(curl -s -o "$TMP/body" -w '%{http_code}' --cacert "$TMP/ca.pem" \
    -H "X-Vault-Token: $ROOT_TOKEN" "$TLS_ADDR/v1/auth/token/lookup-self") || STATUS=000
check "API over HTTPS works (root lookup-self 200)" "$STATUS" 200

served=$(timeout 10 openssl s_client -connect "127.0.0.1:$TLS_PORT" -servername localhost </dev/null 2>/dev/null |
    openssl x509 2>/dev/null || true)
printf '%s\n' "$served" >"$TMP/served.pem"
san=$(openssl x509 -in "$TMP/served.pem" -noout -ext subjectAltName 2>/dev/null || true)
check_match "served TLS cert SAN has DNS:localhost" "$san" 'DNS:localhost'
check_match "served TLS cert SAN has IP Address:127.0.0.1" "$san" 'IP Address:127\.0\.0\.1'
check_match "served TLS cert SAN has IP Address ::1" "$san" 'IP Address:0:0:0:0:0:0:0:1'
check "served TLS cert is issued by the pki/ca/pem CA (openssl verify)" \
    "$(openssl verify -CAfile "$TMP/ca.pem" "$TMP/served.pem" 2>/dev/null | tail -n1)" "$TMP/served.pem: OK"

ext=$(openssl x509 -in "$TMP/ca.pem" -noout -ext basicConstraints,keyUsage,subjectAltName 2>/dev/null || true)
check_match "CA basicConstraints is critical with CA:TRUE" "$ext" 'Basic Constraints: critical[[:space:]]+CA:TRUE'
check_match "CA keyUsage is Certificate Sign, CRL Sign" "$ext" 'Key Usage:( critical)?[[:space:]]+Certificate Sign, CRL Sign'
check_match "CA has SAN URI:spiffe://example.org" "$ext" 'URI:spiffe://example\.org'
check "CA file in data dir is the served CA" \
    "$(openssl x509 -in "$DATA/ca.pem" -noout -fingerprint -sha256 2>/dev/null || echo a)" \
    "$(openssl x509 -in "$TMP/ca.pem" -noout -fingerprint -sha256 2>/dev/null || echo b)"

curl -s -o "$TMP/ca.der" "$ADDR/v1/pki/ca" || true
openssl x509 -in "$TMP/ca.pem" -outform DER -out "$TMP/ca-conv.der" 2>/dev/null || true
check "pki/ca DER equals pki/ca/pem converted with openssl" \
    "$(cmp -s "$TMP/ca.der" "$TMP/ca-conv.der" && [ -s "$TMP/ca.der" ] && echo same || echo differ)" same
chain=$(curl -s "$ADDR/v1/pki/ca_chain" || true)
capem=$(cat "$TMP/ca.pem")
check "pki/ca_chain contains the CA PEM" "$([[ "$chain" == *"$capem"* ]] && echo yes || echo no)" yes
fp1=$(openssl x509 -in "$TMP/ca.pem" -noout -fingerprint -sha256 2>/dev/null || echo none1)

# ---------- clean stop, restart keeps CA and root token ----------
stop_server
check "root token never appears in the server log" \
    "$(grep -qF "$ROOT_TOKEN" "$SRV_LOG" && echo leaked || echo clean)" clean
restart_server
fp2=$(curl -s "$ADDR/v1/pki/ca/pem" | openssl x509 -noout -fingerprint -sha256 2>/dev/null || echo none2)
check "CA fingerprint is the same after a restart" "$fp2" "$fp1"
STATUS=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TMP/ca.pem" "$TLS_ADDR/v1/sys/health") || STATUS=000
check "after restart HTTPS still verifies against the original CA" "$STATUS" 200
api GET auth/token/lookup-self
check_status 200 "root token still works after restart"
check "root-token file unchanged by the restart" "$(cat "$DATA/root-token")" "$ROOT_TOKEN"
check "restart does not print the root token again on stdout" \
    "$(grep -qF "$ROOT_TOKEN" "$TMP/server.out" && echo printed || echo quiet)" quiet
stop_server
check "root token never appears in the server log (after restart)" \
    "$(grep -qF "$ROOT_TOKEN" "$SRV_LOG" && echo leaked || echo clean)" clean

# ---------- non-dev mode with a config file ----------
ND_DATA=$TMP/nd-data
ND_PORT=$(free_port)
ND_TLS=$(free_port)
ND_ADDR="http://127.0.0.1:$ND_PORT"
cat >"$TMP/nd.json" <<EOF
{"data_dir": "$ND_DATA", "listen": "127.0.0.1:$ND_PORT", "tls_listen": "127.0.0.1:$ND_TLS",
 "trust_domain": "nondev.example"}
EOF
start_nondev() {
    "$AUTHSVC" server --config "$TMP/nd.json" >>"$TMP/nd.out" 2>>"$TMP/nd.log" &
    ND_PID=$!
    for _ in $(seq 1 200); do
        if curl -s -o /dev/null "$ND_ADDR/v1/sys/health" 2>/dev/null; then return 0; fi
        if ! kill -0 "$ND_PID" 2>/dev/null; then
            echo "non-dev server exited early; log:" >&2
            cat "$TMP/nd.log" >&2
            return 1
        fi
        sleep 0.05
    done
    echo "non-dev server did not become ready" >&2
    return 1
}
stop_nondev() {
    local rc=0
    kill -TERM "$ND_PID" 2>/dev/null || true
    wait "$ND_PID" || rc=$?
    ND_PID=""
    check "non-dev server exit code after SIGTERM" "$rc" 0
}
if start_nondev; then
    req GET "$ND_ADDR/v1/sys/health"
    check_status 501 "non-dev health before bootstrap is 501"
    check "non-dev health before bootstrap has initialized:false" "$(jv '.initialized')" false
    req HEAD "$ND_ADDR/v1/sys/health"
    check_status 501 "non-dev HEAD health before bootstrap is 501"
    for _ in $(seq 1 40); do [ -s "$ND_DATA/bootstrap-code" ] && break; sleep 0.05; done
    check "bootstrap-code file mode is 0600" "$(perms "$ND_DATA/bootstrap-code")" 600
    check "non-dev data dir mode is 0700" "$(perms "$ND_DATA")" 700
    code=$(tr -d '\n' <"$ND_DATA/bootstrap-code" 2>/dev/null || true)
    req POST "$ND_ADDR/v1/sys/bootstrap" -H 'Content-Type: application/json' --data-binary '{"code":"wrong-code"}'
    check_status 403 "sys/bootstrap with a wrong code is 403"
    check "wrong-code bootstrap body has a non-empty errors array" "$(errors_ok)" true
    req GET "$ND_ADDR/v1/sys/health"
    check_status 501 "health is still 501 after a wrong bootstrap code"
    req POST "$ND_ADDR/v1/sys/bootstrap" -H 'Content-Type: application/json' \
        --data-binary "$(jq -nc --arg c "$code" '{code:$c}')"
    check_status 200 "sys/bootstrap with the right code is 200"
    nd_root=$(jv '.auth.client_token')
    check_match "bootstrap returns auth.client_token with the ast. shape" "$nd_root" '^ast\.[A-Za-z0-9_-]{43}$'
    req GET "$ND_ADDR/v1/auth/token/lookup-self" -H "X-Vault-Token: $nd_root"
    check_status 200 "bootstrapped root token works (lookup-self 200)"
    check "bootstrapped token has policies [root]" "$(jv '.data.policies|tostring')" '["root"]'
    req POST "$ND_ADDR/v1/sys/bootstrap" -H 'Content-Type: application/json' \
        --data-binary "$(jq -nc --arg c "$code" '{code:$c}')"
    check_status 400 "second sys/bootstrap (right code) is 400"
    check_match "second bootstrap error says already bootstrapped" "$(jv '.errors[0]')" 'already bootstrapped'
    req POST "$ND_ADDR/v1/sys/bootstrap" -H 'Content-Type: application/json' --data-binary '{"code":"wrong-code"}'
    check_status 400 "sys/bootstrap with a wrong code after bootstrap is 400"
    check_match "late wrong-code bootstrap says already bootstrapped" "$(jv '.errors[0]')" 'already bootstrapped'
    req GET "$ND_ADDR/v1/sys/health"
    check_status 200 "non-dev health after bootstrap is 200"
    check "non-dev health initialized:true after bootstrap" "$(jv '.initialized')" true
    check "non-dev health trust_domain comes from the config file" "$(jv '.trust_domain')" nondev.example
    stop_nondev
    check "non-dev root token never appears in the log" \
        "$(grep -qF "$nd_root" "$TMP/nd.log" && echo leaked || echo clean)" clean
    if start_nondev; then
        req GET "$ND_ADDR/v1/sys/health"
        check_status 200 "non-dev server stays initialized after restart"
        req GET "$ND_ADDR/v1/auth/token/lookup-self" -H "X-Vault-Token: $nd_root"
        check_status 200 "bootstrapped root token still works after restart"
        stop_nondev
    else
        check "non-dev server restarts" failed ok
    fi
else
    check "non-dev server starts with a config file" failed ok
fi

# ---------- config and flag errors ----------
BAD_PORT=$(free_port)
cat >"$TMP/bad.json" <<EOF
{"data_dir": "$TMP/bad-data", "listen": "127.0.0.1:$BAD_PORT", "no_such_key_xyz": true}
EOF
rc=0
timeout 15 "$AUTHSVC" server --config "$TMP/bad.json" >/dev/null 2>"$TMP/bad.err" || rc=$?
check "config with an unknown top-level key exits 2" "$rc" 2
check "stderr names the unknown key no_such_key_xyz" \
    "$(grep -q 'no_such_key_xyz' "$TMP/bad.err" && echo named || echo missing)" named
cat >"$TMP/bad2.json" <<EOF
{"data_dir": "$TMP/bad-data2", "listen": "127.0.0.1:$BAD_PORT", "audit": {"nested_bogus_key": 1}}
EOF
rc=0
timeout 15 "$AUTHSVC" server --config "$TMP/bad2.json" >/dev/null 2>"$TMP/bad2.err" || rc=$?
check "config with an unknown nested key exits 2" "$rc" 2
check "stderr names the unknown nested key" \
    "$(grep -q 'nested_bogus_key' "$TMP/bad2.err" && echo named || echo missing)" named
rc=0
timeout 15 "$AUTHSVC" server --dev --bogus-flag --data-dir "$TMP/flag-data" \
    --listen "127.0.0.1:$BAD_PORT" --tls-listen "127.0.0.1:$(free_port)" >/dev/null 2>"$TMP/flag.err" || rc=$?
check "--bogus-flag exits 2" "$rc" 2
rc=0
timeout 15 "$AUTHSVC" server --dev --log-level=loud --data-dir "$TMP/flag-data" \
    --listen "127.0.0.1:$BAD_PORT" --tls-listen "127.0.0.1:$(free_port)" >/dev/null 2>"$TMP/flag.err" || rc=$?
check "--log-level=loud exits 2" "$rc" 2
check "stderr names --log-level" "$(grep -c -- '--log-level: "loud"' "$TMP/flag.err" || true)" 1
rc=0
AUTHSVC_LOG_LEVEL=loud timeout 15 "$AUTHSVC" server --dev --data-dir "$TMP/flag-data" \
    --listen "127.0.0.1:$BAD_PORT" --tls-listen "127.0.0.1:$(free_port)" >/dev/null 2>"$TMP/flag.err" || rc=$?
check "AUTHSVC_LOG_LEVEL=loud exits 2" "$rc" 2
check "stderr names AUTHSVC_LOG_LEVEL" "$(grep -c 'AUTHSVC_LOG_LEVEL: "loud"' "$TMP/flag.err" || true)" 1

# ---------- log levels: per-request lines only at debug ----------
# At the default level (info) a request leaves no line of its own (the audit log has it); at
# debug it does; the flag wins over the environment.
for lv in default debug flag-info; do
    DATA=$TMP/lv-$lv
    case $lv in
        default) AUTHSVC_LOG_LEVEL='' start_server ;;
        debug) AUTHSVC_LOG_LEVEL=debug start_server ;;
        flag-info) AUTHSVC_LOG_LEVEL=debug start_server --log-level info ;;
    esac
    from=$(wc -l <"$SRV_LOG")
    api POST svid/x509 '{"spiffe_id":"spiffe://example.org/lv/'"$lv"'"}'
    check_status 200 "log level $lv: an issuance"
    api GET sys/policy/no-such-policy
    check_status 404 "log level $lv: a 404"
    stop_server
    lines=$(tail -n +"$((from + 1))" "$SRV_LOG")
    want=0
    [ "$lv" = debug ] && want=1
    check "log level $lv: the issuance's request line" \
        "$(grep -c 'POST /v1/svid/x509 200' <<<"$lines" || true)" "$want"
    check "log level $lv: the issuance's x509-svid line" \
        "$(grep -c "x509-svid .* issued for spiffe://example.org/lv/$lv" <<<"$lines" || true)" "$want"
    check "log level $lv: the 404's request line" \
        "$(grep -c 'GET /v1/sys/policy/no-such-policy 404' <<<"$lines" || true)" "$want"
    check "log level $lv: every line has a level" \
        "$(grep -cvE '\[(debug|info|warn|error)\] ' <<<"$lines" || true)" 0
done

finish
