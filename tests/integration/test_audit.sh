#!/usr/bin/env bash
# test_audit.sh: the server's audit device (SPEC §8, issue 6) against the real server.
#   - the lines of a login, an X.509-SVID and a JWT-SVID issuance, revocations by serial and by
#     token, a denied request and denied proxy checks: which fields are clear and which HMAC'd,
#     each HMAC checked against sys/audit-hash; allowed checks and sys/health not audited;
#   - no raw token secret, JWT or private key anywhere in the audit file or the server log, and
#     every log line has a level and its request's id;
#   - the chain verified by `authctl audit verify -head` (head from sys/audit/head) across a
#     restart, a SIGHUP rotation, lines written after the recorded head (adopted), a file that
#     does not continue the chain (refused), a FIFO without a reader and /dev/full (full disk):
#     while the log cannot take lines, audited requests are 500 and change nothing.
set -euo pipefail
# shellcheck source=lib.sh
source "$AUTHSVC_SRC/tests/integration/lib.sh"

NODE_DIR=$AUTHSVC_SRC/tests/integration/node
if [ ! -d "$NODE_DIR/node_modules/jose" ]; then
    echo "FAIL: $NODE_DIR/node_modules/jose is missing: run tools/test, or npm ci in $NODE_DIR" >&2
    exit 1
fi
READER_PID=""
stop_reader() {
    if [ -n "$READER_PID" ] && kill -0 "$READER_PID" 2>/dev/null; then
        kill "$READER_PID" 2>/dev/null || true
        wait "$READER_PID" 2>/dev/null || true
    fi
    READER_PID=""
}
trap 'stop_reader; cleanup' EXIT

jv() { jq -r "$1" <<<"$BODY" 2>/dev/null || echo "<not json>"; }
yn() { if "$@"; then echo yes; else echo no; fi; }
# call METHOD PATH [BODY] [TOKEN] [extra curl args...]: like api, and REQID from X-Request-Id
call() {
    local method=$1 path=$2 body=${3-} token=${4-$ROOT_TOKEN}
    shift 4 || shift $#
    local args=(-s -o "$TMP/body" -D "$TMP/hdr" -w '%{http_code}' -X "$method")
    if [ "$token" != "-" ] && [ -n "$token" ]; then args+=(-H "X-Vault-Token: $token"); fi
    if [ -n "$body" ]; then args+=(-H 'Content-Type: application/json' --data-binary "$body"); fi
    STATUS=$(curl "${args[@]}" "$@" "$ADDR/v1/$path") || STATUS=000
    BODY=$(cat "$TMP/body")
    REQID=$(sed -n 's/^X-Request-Id: *\([^\r]*\).*/\1/Ip' "$TMP/hdr" | tail -1)
}
# aline TYPE: the audit line of type request|response of the last call (compact JSON, or "")
aline() { jq -c --arg id "$REQID" --arg t "$1" 'select(.request.id == $id and .type == $t)' "$AL"; }
# af TYPE FILTER: a field of that line
af() { aline "$1" | jq -r "$2"; }
# nlines_for: how many audit lines the last call wrote
nlines_for() { jq -c --arg id "$REQID" 'select(.request.id == $id)' "$AL" | wc -l | tr -d ' '; }
# ahash VALUE: sys/audit-hash of VALUE (root), without touching BODY/STATUS of the caller
ahash() {
    curl -s -H "X-Vault-Token: $ROOT_TOKEN" --data-binary "$(jq -nc --arg v "$1" '{input:$v}')" \
        "$ADDR/v1/sys/audit-hash" | jq -r '.data.hash'
}
# ahash_of FILTER: sys/audit-hash of a string in BODY, byte for byte (a PEM keeps its newline)
ahash_of() {
    curl -s -H "X-Vault-Token: $ROOT_TOKEN" --data-binary "$(jq -c "{input: ($1)}" <<<"$BODY")" \
        "$ADDR/v1/sys/audit-hash" | jq -r '.data.hash'
}
# head_point: "hash:line" from sys/audit/head
head_point() {
    curl -s -H "X-Vault-Token: $ROOT_TOKEN" "$ADDR/v1/sys/audit/head" |
        jq -r '.data.hash + ":" + (.data.line|tostring)'
}
# verify [-head=...] FILES...: authctl audit verify; sets RC, OUT, ERR
verify() {
    RC=0
    "$AUTHCTL" audit verify "$@" >"$TMP/v.out" 2>"$TMP/v.err" || RC=$?
    OUT=$(cat "$TMP/v.out")
    ERR=$(cat "$TMP/v.err")
}
hash_last() { tail -n 1 "$1" | tr -d '\n' | sha256sum | cut -d' ' -f1; }
# hup: SIGHUP, then wait until the server has logged the reopen attempt that followed it
hup() {
    local before
    before=$(grep -c 'audit: reopened\|audit: cannot reopen' "$SRV_LOG" || true)
    kill -HUP "$SRV_PID"
    for _ in $(seq 1 100); do
        [ "$(grep -c 'audit: reopened\|audit: cannot reopen' "$SRV_LOG" || true)" -gt "$before" ] && return 0
        sleep 0.05
    done
    echo "no reopen logged after SIGHUP" >&2
}

start_server
AL=$DATA/audit.log
check "the default audit file is <data_dir>/audit.log" "$(yn test -f "$AL")" yes
check "the audit file is 0600" "$(stat -c %a "$AL")" 600

# ---------- sys/health is never audited ----------
call GET sys/health "" -
check_status 200 "sys/health"
check "sys/health wrote no audit line" "$(grep -c '"path":"sys/health"' "$AL" || true)" 0

# ---------- a login ----------
K=$TMP/keys
mkdir -p "$K"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$K/rsa.key" 2>/dev/null
openssl pkey -in "$K/rsa.key" -pubout -out "$K/rsa.pub"
call POST sys/auth/jwt '{"type":"jwt"}'
check_status 204 "mount jwt/"
call POST auth/jwt/config "$(jq -nc --rawfile k "$K/rsa.pub" '{jwt_validation_pubkeys:[$k]}')"
check_status 204 "jwt/ config"
call POST auth/jwt/role/app '{"role_type":"jwt","user_claim":"sub","bound_audiences":["aud1"],
    "token_policies":["default"],"spiffe_id_template":"spiffe://{{trust_domain}}/app/{{claim:sub}}"}'
check_status 204 "jwt/ role app"
JWT=$(node "$NODE_DIR/mint_jwt.js" "$(jq -nc --arg k "$K/rsa.key" \
    '{key:$k, claims:{sub:"web", aud:"aud1", iat:"$now", exp:"$now+600"}}')")
call POST auth/jwt/login "$(jq -nc --arg j "$JWT" '{role:"app", jwt:$j}')" -
check_status 200 "jwt login"
LT=$(jv '.auth.client_token')
LACC=$(jv '.auth.accessor')
check "login: one request and one response line" "$(nlines_for)" 2
check "login request: the path is clear" "$(af request .request.path)" auth/jwt/login
check "login request: the role is clear" "$(af request .request.data.role)" app
check "login request: the JWT is HMAC'd under the audit salt" "$(af request .request.data.jwt)" \
    "$(ahash "$JWT")"
check "login request: operation update, remote address" \
    "$(af request '.request.operation + " " + .request.remote_address')" "update 127.0.0.1"
check "login response: status 200" "$(af response .response.status)" 200
check "login response: the new token is HMAC'd" "$(af response .response.auth.client_token)" \
    "$(ahash "$LT")"
check "login response: its accessor is clear" "$(af response .response.auth.accessor)" "$LACC"
check "login response: its policies are clear" "$(af response '.response.auth.policies|join(",")')" \
    default
check_match "audit lines start with prev_hash and carry Vault's members" \
    "$(af response 'keys_unsorted|join(",")')" '^prev_hash,time,type,auth,request,response,error$'
check_match "time is RFC 3339 with nanoseconds" "$(af response .time)" \
    '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{9}Z$'

# ---------- an X.509-SVID from a CSR, a generated-key SVID and a JWT-SVID ----------
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$K/w.key" 2>/dev/null
openssl req -new -key "$K/w.key" -subj / -out "$K/w.csr" 2>/dev/null
call POST svid/x509 "$(jq -nc --rawfile c "$K/w.csr" '{csr:$c}')" "$LT"
check_status 200 "svid/x509 from a CSR with the login token"
SERIAL=$(jv .data.serial_number)
jv .data.certificate >"$K/w.pem"
check "svid request: the caller's accessor is clear" "$(af request .auth.accessor)" "$LACC"
check "svid request: the caller's token is HMAC'd" "$(af request .auth.client_token)" \
    "$(ahash "$LT")"
check "svid request: the CSR is HMAC'd" "$(af request .request.data.csr)" \
    "$(ahash "$(cat "$K/w.csr")
")"
check "svid response: the serial is clear" "$(af response .response.data.serial_number)" "$SERIAL"
check "svid response: the SPIFFE ID is clear" "$(af response .response.data.spiffe_id)" \
    spiffe://example.org/app/web
check "svid response: the certificate is HMAC'd" "$(af response .response.data.certificate)" \
    "$(ahash_of .data.certificate)"
check "svid response: the expiration number is kept" \
    "$(af response .response.data.expiration)" "$(jv .data.expiration)"
call POST svid/x509 '{"spiffe_id":"spiffe://example.org/app/gen"}'
check_status 200 "svid/x509 with a server-generated key (root)"
PRIV=$(jv .data.private_key)
SERIAL2=$(jv .data.serial_number)
check "svid response: the private key is HMAC'd" "$(af response .response.data.private_key)" \
    "$(ahash_of .data.private_key)"
call POST svid/jwt '{"audience":"db"}' "$LT"
check_status 200 "svid/jwt"
JSVID=$(jv .data.token)
check "jwt-svid request: the audience is clear" "$(af request .request.data.audience)" db
check "jwt-svid response: the token is HMAC'd" "$(af response .response.data.token)" \
    "$(ahash "$JSVID")"

# ---------- proxy checks: allowed ones are not audited, denied ones are ----------
call POST connect/intentions '{"source":"*","destination":"spiffe://example.org/app/web","action":"allow"}'
check_status 200 "intention allow * -> app/web"
call POST connect/authorize "$(jq -nc --rawfile p "$K/w.pem" \
    '{target:"spiffe://example.org/app/web", client_cert_pem:$p}')"
check "authorize allowed" "$(jv .data.authorized)" true
check "an allowed check writes no audit line" "$(nlines_for)" 0
call POST connect/authorize "$(jq -nc --rawfile p "$K/w.pem" \
    '{target:"spiffe://example.org/app/other", client_cert_pem:$p}')"
check "authorize denied (no intention, default deny)" "$(jv .data.authorized)" false
check "a denied check writes its request and response lines" "$(nlines_for)" 2
check "denied check: the decision is clear" "$(af response .response.data.authorized)" false
check "denied check: the source SPIFFE ID is clear" "$(af response .response.data.source)" \
    spiffe://example.org/app/web
check "denied check: the target is clear" "$(af request .request.data.target)" \
    spiffe://example.org/app/other
check "denied check: the reason is clear" "$(af response .response.data.reason)" "$(jv .data.reason)"
ENC=$(jq -rn --rawfile p "$K/w.pem" '$p|@uri')
call GET "connect/ext-authz?target=spiffe://example.org/app/other" "" "$ROOT_TOKEN" \
    -H "X-Client-Cert: $ENC"
check_status 403 "ext-authz denied"
check "ext-authz denial audited with status 403" "$(af response .response.status)" 403
check "ext-authz denial names the source" "$(af response .response.data.source)" \
    spiffe://example.org/app/web
call GET "connect/ext-authz?target=spiffe://example.org/app/web" "" "$ROOT_TOKEN" \
    -H "X-Client-Cert: $ENC"
check_status 200 "ext-authz allowed"
check "an allowed ext-authz writes no audit line" "$(nlines_for)" 0

# ---------- revocations ----------
call POST pki/revoke "$(jq -nc --arg s "$SERIAL2" '{serial_number:$s}')"
check_status 200 "pki/revoke"
check "revoke request: the serial is clear" "$(af request .request.data.serial_number)" "$SERIAL2"
check "revoke response: the revocation time" "$(af response .response.data.revocation_time)" \
    "$(jv .data.revocation_time)"
call POST auth/token/create '{"policies":["default"]}'
CT=$(jv .auth.client_token)
CACC=$(jv .auth.accessor)
check "token create response: the secret is HMAC'd" "$(af response .response.auth.client_token)" \
    "$(ahash "$CT")"
call POST auth/token/revoke "$(jq -nc --arg t "$CT" '{token:$t}')"
check_status 204 "auth/token/revoke by secret"
check "token revoke request: the secret is HMAC'd" "$(af request .request.data.token)" "$(ahash "$CT")"
check "token revoke response: names the revoked accessor in clear" \
    "$(af response .response.data.accessor)" "$CACC"
check "token revoke response: status 204" "$(af response .response.status)" 204

# ---------- denied requests ----------
call GET sys/identities "" "$LT"
check_status 403 "sys/identities with a default-policy token"
check "denied request: request line with the error" "$(af request .error)" "permission denied"
check "denied request: response status 403" "$(af response .response.status)" 403
check "denied request: the caller's accessor is clear" "$(af request .auth.accessor)" "$LACC"
BOGUS=ast.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
call GET auth/token/lookup-self "" "$BOGUS"
check_status 403 "an unknown token"
check "unknown token: its HMAC is logged so an admin can find it" \
    "$(af request .request.client_token)" "$(ahash "$BOGUS")"
call POST sys/audit-hash '{"input":"x"}' "$LT"
check_status 403 "sys/audit-hash needs sudo"
call GET sys/audit/head "" "$LT"
check_status 403 "sys/audit/head needs sudo"
check "a refused sys/audit/head is audited" "$(nlines_for)" 2
call GET no/such/path
check_status 404 "an unknown path"
check "an unknown path is audited" "$(af response .response.status)" 404
call POST sys/audit-hash '{}'
check_status 400 "sys/audit-hash without input"

# ---------- a route that changes nothing: both lines in one write ----------
# lookup-self's request line is written with its response line, in one write, so under
# concurrent requests (lookups and sys/audit-hash calls from parallel clients) nothing comes
# between them. Written as two appends, other requests' lines landed between them.
call GET auth/token/lookup-self "" "$LT"
check_status 200 "lookup-self"
check "lookup-self: a request and a response line" "$(nlines_for)" 2
check "lookup-self request: the caller's accessor is clear" "$(af request .auth.accessor)" "$LACC"
check "lookup-self response: the token's secret is HMAC'd" "$(af response .response.data.id)" \
    "$(ahash "$LT")"
lines_before=$(wc -l <"$AL")
size_before=$(stat -c %s "$AL")
# What this script read of the file is in the page cache; out with it (GNU dd's way of calling
# posix_fadvise DONTNEED), so that what is resident below is what the server left there.
dd if="$AL" iflag=nocache count=0 status=none
urls=()
for i in $(seq 1 200); do
    urls+=(-o /dev/null "$ADDR/v1/auth/token/lookup-self")
done
curls=()
for c in 1 2 3 4; do
    curl -s -Z --parallel-max 8 -H "X-Vault-Token: $LT" -w '%{http_code}\n' "${urls[@]}" \
        >"$TMP/ro-codes.$c" &
    curls+=($!)
done
for c in 1 2; do
    (for i in $(seq 1 40); do
        curl -s -o /dev/null -w '%{http_code}\n' -H "X-Vault-Token: $ROOT_TOKEN" \
            -d '{"input":"x"}' "$ADDR/v1/sys/audit-hash"
    done >"$TMP/ro-hash.$c") &
    curls+=($!)
done
wait "${curls[@]}"
# Synced lines leave the page cache (audit.c, lead_sync): within the main loop's second, only
# the file's tail may still be resident, not the ~1.8 MB the load wrote. Checked before
# anything here reads the file again.
for _ in $(seq 1 50); do
    res=$(fincore --bytes --noheadings --output RES "$AL" | tr -d ' ')
    [ "$res" -le 262144 ] && break
    sleep 0.1
done
check "synced audit lines leave the page cache ($(($(stat -c %s "$AL") - size_before)) bytes written)" \
    "$(yn test "$(($(stat -c %s "$AL") - size_before))" -gt 1048576 -a "$res" -le 262144)" yes
check "lookup-self under load: every answer 200" \
    "$(cat "$TMP"/ro-codes.* "$TMP"/ro-hash.* | sort | uniq -c | tr -s ' ')" " 880 200"
# Each lookup-self request line must be followed at once by the response line of its request.
apart=$(tail -n +"$((lines_before + 1))" "$AL" | jq -r '"\(.type) \(.request.id) \(.request.path)"' |
    awk 'want != "" && ($1 != "response" || $2 != want) { bad++ }
         { want = ($1 == "request" && $3 == "auth/token/lookup-self") ? $2 : "" }
         END { print bad + 0 }')
nro=$(tail -n +"$((lines_before + 1))" "$AL" | grep -c '"path":"auth/token/lookup-self"' || true)
check "lookup-self under load: 800 requests, 1600 lines" "$nro" 1600
check "lookup-self under load: no line between a request's two lines" "$apart" 0

# ---------- no secret in the audit file or the server log ----------
for pair in "root token:$ROOT_TOKEN" "login token:$LT" "child token:$CT" "login JWT:$JWT" \
    "JWT-SVID:$JSVID" "bogus token:$BOGUS"; do
    name=${pair%%:*}
    val=${pair#*:}
    check "the $name is not in the audit file" "$(grep -cF -- "$val" "$AL" || true)" 0
    check "the $name is not in the server log" "$(grep -cF -- "$val" "$SRV_LOG" || true)" 0
done
KEYLINE=$(sed -n 2p <<<"$PRIV")
check "the generated private key is not in the audit file" "$(grep -cF -- "$KEYLINE" "$AL" || true)" 0
check "the generated private key is not in the server log" \
    "$(grep -cF -- "$KEYLINE" "$SRV_LOG" || true)" 0

# ---------- log lines: a level each, and the request id ----------
check "every server log line has a timestamp and a level" \
    "$(grep -cvE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z \[(debug|info|warn|error)\] ' "$SRV_LOG" || true)" 0
call POST svid/x509 '{"spiffe_id":"spiffe://example.org/app/logged"}'
check "the issuance log line carries the request id" \
    "$(grep -c "req=$REQID x509-svid" "$SRV_LOG" || true)" 1
check "the request log line carries the request id" \
    "$(grep -c "req=$REQID POST /v1/svid/x509 200" "$SRV_LOG" || true)" 1

# ---------- the chain and its head ----------
HEAD=$(head_point)
check "sys/audit/head counts every line of the file" "${HEAD#*:}" "$(wc -l <"$AL" | tr -d ' ')"
check "sys/audit/head is the hash of the last line" "${HEAD%%:*}" "$(hash_last "$AL")"
verify -head="$HEAD" "$AL"
check "audit verify -head on the live log" "$RC $ERR" "0 "
check "the first line starts from the genesis" "$(head -1 "$AL" | jq -r .prev_hash)" \
    0000000000000000000000000000000000000000000000000000000000000000

# A restart continues the chain in the same file.
stop_server
restart_server
call GET auth/token/lookup-self
HEAD=$(head_point)
verify -head="$HEAD" "$AL"
check "the chain continues across a restart" "$RC $ERR" "0 "

# SIGHUP after a rotation: the chain continues in a new file.
mv "$AL" "$AL.1"
hup
call GET auth/token/lookup-self
check_status 200 "a request after SIGHUP"
check "the new file has that request's two lines" "$(wc -l <"$AL" | tr -d ' ')" 2
check "its first line continues the rotated file" "$(head -1 "$AL" | jq -r .prev_hash)" \
    "$(hash_last "$AL.1")"
check "the new file is 0600" "$(stat -c %a "$AL")" 600
HEAD=$(head_point)
verify -head="$HEAD" "$AL.1" "$AL"
check "audit verify across the rotated files" "$RC $ERR" "0 "

# Lines written after the recorded head (a crash between the write and the head's update) are
# adopted at the next start; a file that does not continue the chain is refused.
stop_server
PREV=$(hash_last "$AL")
jq -nc --arg p "$PREV" '{prev_hash:$p, time:"2026-01-01T00:00:00.000000000Z", type:"request",
    auth:{}, request:{id:"written-before-a-crash", path:"x"}, error:""}' >>"$AL"
restart_server
check "the server noticed the line after the head" \
    "$(grep -c 'lines after the recorded head' "$SRV_LOG" || true)" 1
call GET auth/token/lookup-self
HEAD=$(head_point)
verify -head="$HEAD" "$AL.1" "$AL"
check "the adopted line is part of the verified chain" "$RC $ERR" "0 "
check "the head counts it" "${HEAD#*:}" "$(($(cat "$AL.1" "$AL" | wc -l)))"
call POST auth/token/create '{"policies":["default"],"num_uses":2}'
UT=$(jv .auth.client_token)
stop_server
cp "$AL" "$TMP/al.good"
sed -i '$ s/"request"/"response"/' "$AL"
RC=0
timeout 20 "$AUTHSVC" server --dev --data-dir "$DATA" --listen "127.0.0.1:$PORT" \
    --tls-listen "127.0.0.1:$TLS_PORT" >/dev/null 2>"$TMP/refused.log" || RC=$?
check "a file whose last line was edited: the server refuses to start" "$RC" 1
check "...and says why" "$(grep -c 'does not continue the audit chain' "$TMP/refused.log" || true)" 1
cp "$TMP/al.good" "$AL"

# ---------- a FIFO without a reader: audited requests fail with 500 and change nothing ----------
mkfifo "$TMP/audit.fifo"
jq -nc --arg p "$TMP/audit.fifo" '{audit:{path:$p}}' >"$TMP/fifo.json"
SRV_EXTRA=(--config "$TMP/fifo.json")
restart_server
check "the server starts and says the log is not writable" \
    "$(grep -c 'audited requests fail until it is' "$SRV_LOG" || true)" 1
call GET sys/health "" -
check_status 200 "sys/health still answers (not audited)"
call POST auth/token/create '{"policies":["default"]}'
check_status 500 "token create while the log cannot take lines"
check "a 500 without details" "$(jv '.errors[0]')" "internal error"
call POST pki/revoke "$(jq -nc --arg s "$SERIAL" '{serial_number:$s}')"
check_status 500 "pki/revoke while the log cannot take lines"
JWT2=$(node "$NODE_DIR/mint_jwt.js" "$(jq -nc --arg k "$K/rsa.key" \
    '{key:$k, claims:{sub:"web", aud:"aud1", iat:"$now", exp:"$now+600"}}')")
call POST auth/jwt/login "$(jq -nc --arg j "$JWT2" '{role:"app", jwt:$j}')" -
check_status 500 "a login while the log cannot take lines"
call POST connect/authorize "$(jq -nc --rawfile p "$K/w.pem" \
    '{target:"spiffe://example.org/app/other", client_cert_pem:$p}')"
check_status 500 "a denied check cannot be recorded: 500, still no"
# A lookup only reads, so its request line is written after the handler, with the response
# line; but with a limited-use token it spends a use, so its request line goes first.
call GET auth/token/lookup-self "" "$UT"
check_status 500 "a lookup with a limited-use token while the log cannot take lines"
cat "$TMP/audit.fifo" >"$TMP/fifo.out" &
READER_PID=$!
kill -HUP "$SRV_PID"
for _ in $(seq 1 100); do
    call GET auth/token/lookup-self
    [ "$STATUS" = 200 ] && break
    sleep 0.05
done
check_status 200 "with a reader and SIGHUP the log takes lines again"
call GET auth/token/lookup-self "" "$UT"
check_status 200 "the limited-use token's first use"
call GET auth/token/lookup-self "" "$UT"
check_status 200 "...and its second: the lookup that failed spent none"
call LIST auth/token/accessors
ACCS=$(jv '.data.keys|join(",")')
check "the failed create and login made no token" "$(yn grep -q "$CACC" <<<"$ACCS")" no
check "tokens: root and the login token" "$(jv '.data.keys|length')" 2
call GET "pki/cert/$SERIAL"
check "the failed revoke did not revoke" "$(jv .data.revocation_time)" 0
api GET sys/metrics
check_match "the failures are counted" "$(grep '^authsvc_audit_failures_total ' <<<"$BODY")" \
    '^authsvc_audit_failures_total [1-9][0-9]*$'

# ---------- a full disk (/dev/full behind a symlink), then a new file ----------
mkdir "$TMP/alog"
ln -s "$TMP/alog/a1.log" "$TMP/alog/cur"
jq -nc --arg p "$TMP/alog/cur" '{audit:{path:$p}}' >"$TMP/link.json"
stop_server
stop_reader
SRV_EXTRA=(--config "$TMP/link.json")
restart_server
call POST auth/token/create '{"policies":["default"]}'
check_status 200 "token create with the log on a.log"
N_BEFORE=$(api LIST auth/token/accessors && jv '.data.keys|length')
ln -sfn /dev/full "$TMP/alog/cur"
hup
call POST auth/token/create '{"policies":["default"]}'
check_status 500 "token create when the disk is full"
call POST svid/x509 '{"spiffe_id":"spiffe://example.org/app/full"}'
check_status 500 "svid/x509 when the disk is full"
ln -sfn "$TMP/alog/a2.log" "$TMP/alog/cur"
hup
call GET auth/token/lookup-self
check_status 200 "a new file after SIGHUP"
check "no token was made while the disk was full" \
    "$(api LIST auth/token/accessors && jv '.data.keys|length')" "$N_BEFORE"
call GET sys/identities
check "no SVID was recorded while the disk was full" \
    "$(jv '[.data.identities[]|select(.spiffe_id == "spiffe://example.org/app/full")]|length')" 0
HEAD=$(head_point)
verify -head="$HEAD" "$AL.1" "$AL" "$TMP/fifo.out" "$TMP/alog/a1.log" "$TMP/alog/a2.log"
check "the whole chain verifies across five files" "$RC $ERR" "0 "

# ---------- rotations while clients write ----------
# Six clients create tokens (each answer waits for its lines and its row to be synced, in
# groups shared with the others) while the file is rotated three times. Every request must
# succeed, every token answered must have its lines in some file, and the chain must verify.
writer() {
    local n=0
    while [ ! -e "$TMP/stop-writers" ] && [ $n -lt 300 ]; do
        n=$((n + 1))
        out=$(curl -s -m 10 -H "X-Vault-Token: $ROOT_TOKEN" -w '\n%{http_code}' \
            -d '{"policies":["default"]}' "$ADDR/v1/auth/token/create" || true)
        code=${out##*$'\n'}
        if [ "$code" = 200 ]; then
            jq -r .auth.accessor <<<"${out%$'\n'*}" >>"$TMP/rot-acc.$1"
        else
            echo "$code" >>"$TMP/rot-bad.$1"
        fi
    done
    return 0
}
WRITERS=()
for c in 1 2 3 4 5 6; do
    writer "$c" &
    WRITERS+=($!)
done
for f in a3 a4 a5; do
    sleep 0.3
    ln -sfn "$TMP/alog/$f.log" "$TMP/alog/cur"
    hup
done
sleep 0.3
touch "$TMP/stop-writers"
wait "${WRITERS[@]}"
NACC=$(cat "$TMP"/rot-acc.* 2>/dev/null | wc -l)
check "rotations under load: no request failed" "$(cat "$TMP"/rot-bad.* 2>/dev/null | sort | uniq -c | tr -s ' ')" ""
check "rotations under load: tokens were made in every file" \
    "$(for f in a2 a3 a4 a5; do grep -c '"path":"auth/token/create"' "$TMP/alog/$f.log" || true; done | grep -c '^0$')" 0
missing=0
while read -r acc; do
    grep -q -- "\"accessor\":\"$acc\"" "$TMP"/alog/a[2-5].log || missing=$((missing + 1))
done < <(cat "$TMP"/rot-acc.*)
check "rotations under load: every token answered has its audit lines ($NACC tokens)" "$missing" 0
HEAD=$(head_point)
verify -head="$HEAD" "$AL.1" "$AL" "$TMP/fifo.out" "$TMP"/alog/a[1-5].log
check "rotations under load: the chain verifies across all the files" "$RC $ERR" "0 "
stop_server

finish
