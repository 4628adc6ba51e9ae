#!/usr/bin/env bash
# test_durability.sh: an acknowledged write survives SIGKILL right after the answer: token create,
# policy write, revoke (including a subtree) and policy delete; repeated create+kill cycles.
set -euo pipefail
# shellcheck source=lib.sh
source "$AUTHSVC_SRC/tests/integration/lib.sh"

jv() { jq -r "$1" <<<"$BODY" 2>/dev/null || echo "<not json>"; }
st() {
    api "$1" "$2" "${3-}" "$4"
    echo "$STATUS"
}
pol() { jq -nc --arg p "{\"path\":{\"$1/*\":{\"capabilities\":[\"read\"]}}}" '{policy:$p}'; }

start_server

# ---------- token + policy survive SIGKILL ----------
api POST sys/policy/durable "$(pol durable)"
check_status 204 "write policy durable"
api POST auth/token/create '{"policies":["durable"],"display_name":"crash","meta":{"k":"v"}}'
check_status 200 "create token"
T1=$(jv '.auth.client_token')
A1=$(jv '.auth.accessor')
kill_server
restart_server
api GET auth/token/lookup-self "" "$T1"
check_status 200 "token created just before SIGKILL works after restart"
check "same accessor after restart" "$(jv '.data.accessor')" "$A1"
check "same policies after restart" "$(jv '.data.policies|tostring')" '["default","durable"]'
check "same display_name after restart" "$(jv '.data.display_name')" token-crash
check "same meta after restart" "$(jv '.data.meta|tostring')" '{"k":"v"}'
api GET sys/policy/durable
check_status 200 "policy written before SIGKILL exists after restart"
check "policy rules survive" "$(jv '.data.rules')" "$(jq -r .policy <<<"$(pol durable)")"
check "root token file unchanged by restart" "$(cat "$DATA/root-token")" "$ROOT_TOKEN"
check "root token works after restart" "$(st GET auth/token/lookup-self "" "$ROOT_TOKEN")" 200

# policy written as the very last request before SIGKILL
api POST sys/policy/last-write "$(pol last)"
check_status 204 "write policy last-write"
kill_server
restart_server
check "policy written as the last request before SIGKILL exists" "$(st GET sys/policy/last-write "" "$ROOT_TOKEN")" 200

# ---------- revoke survives SIGKILL ----------
api POST auth/token/revoke "$(jq -nc --arg t "$T1" '{token:$t}')"
check_status 204 "revoke token"
kill_server
restart_server
check "token revoked just before SIGKILL stays revoked (403)" "$(st GET auth/token/lookup-self "" "$T1")" 403
api LIST auth/token/accessors
check "revoked accessor not listed after restart" \
    "$(jq -r --arg a "$A1" '.data.keys|index($a)==null' <<<"$BODY" 2>/dev/null || echo false)" true

# revoke-self as the last request
api POST auth/token/create '{"policies":["default"]}'
check_status 200 "create token for revoke-self"
T2=$(jv '.auth.client_token')
check "revoke-self 204" "$(st POST auth/token/revoke-self '' "$T2")" 204
kill_server
restart_server
check "revoke-self just before SIGKILL stays revoked" "$(st GET auth/token/lookup-self "" "$T2")" 403

# subtree revocation
api POST sys/policy/creator '{"policy":"{\"path\":{\"auth/token/create\":{\"capabilities\":[\"update\"]}}}"}'
check_status 204 "write policy creator"
api POST auth/token/create '{"policies":["creator"]}'
check_status 200 "create parent"
TP=$(jv '.auth.client_token')
api POST auth/token/create '{}' "$TP"
check_status 200 "create child"
TC=$(jv '.auth.client_token')
api POST auth/token/create '{}' "$TC"
check_status 200 "create grandchild"
TG=$(jv '.auth.client_token')
kill_server
restart_server
check "parent/child tree survives SIGKILL (grandchild 200)" "$(st GET auth/token/lookup-self "" "$TG")" 200
check "revoke parent 204" "$(st POST auth/token/revoke "$(jq -nc --arg t "$TP" '{token:$t}')" "$ROOT_TOKEN")" 204
kill_server
restart_server
check "revoked parent stays revoked" "$(st GET auth/token/lookup-self "" "$TP")" 403
check "child of revoked parent stays revoked" "$(st GET auth/token/lookup-self "" "$TC")" 403
check "grandchild of revoked parent stays revoked" "$(st GET auth/token/lookup-self "" "$TG")" 403

# policy delete
check "delete policy durable 204" "$(st DELETE sys/policy/durable "" "$ROOT_TOKEN")" 204
kill_server
restart_server
check "policy deleted before SIGKILL stays deleted" "$(st GET sys/policy/durable "" "$ROOT_TOKEN")" 404

# ---------- repeated create + kill cycles ----------
TOKS=()
ACCS=()
for i in 1 2 3 4 5; do
    api POST "sys/policy/cycle-$i" "$(pol "cycle$i")"
    check_status 204 "cycle $i: write policy"
    api POST auth/token/create "{\"policies\":[\"cycle-$i\"]}"
    check_status 200 "cycle $i: create token"
    TOKS+=("$(jv '.auth.client_token')")
    ACCS+=("$(jv '.auth.accessor')")
    kill_server
    restart_server
    api GET auth/token/lookup-self "" "${TOKS[$((i - 1))]}"
    check_status 200 "cycle $i: token works after SIGKILL + restart"
    check "cycle $i: same accessor" "$(jv '.data.accessor')" "${ACCS[$((i - 1))]}"
    check "cycle $i: policy present" "$(st GET "sys/policy/cycle-$i" "" "$ROOT_TOKEN")" 200
done
for i in 1 2 3 4 5; do
    check "after all cycles token $i still works" "$(st GET auth/token/lookup-self "" "${TOKS[$((i - 1))]}")" 200
done
api LIST auth/token/accessors
for i in 1 2 3 4 5; do
    check "after all cycles accessor $i listed" \
        "$(jq -r --arg a "${ACCS[$((i - 1))]}" '.data.keys|index($a)!=null' <<<"$BODY" 2>/dev/null || echo false)" true
done
api LIST sys/policy
check "after all cycles every cycle policy is listed" \
    "$(jv '[.data.keys[]|select(startswith("cycle-"))]|sort|join(",")')" "cycle-1,cycle-2,cycle-3,cycle-4,cycle-5"

# ---------- SIGKILL / SIGTERM in the middle of concurrent inserts ----------
# Eight clients issue SVIDs and create tokens as fast as they can while the server is killed
# (or stopped). Every SVID and token that was answered 200 must be there after the restart:
# inserts share one transaction that the group sync commits, and nothing may be answered
# before it.
burst() {
    local n=0
    while [ ! -e "$TMP/stop" ] && [ $n -lt 400 ]; do
        n=$((n + 1))
        if [ $((n % 2)) -eq 0 ]; then
            out=$(curl -s -m 5 -H "X-Vault-Token: $ROOT_TOKEN" -w '\n%{http_code}' \
                -d "{\"spiffe_id\":\"spiffe://example.org/crash/$1\"}" "$ADDR/v1/svid/x509" || true)
            [ "${out##*$'\n'}" = 200 ] && jq -r .data.serial_number <<<"${out%$'\n'*}" >>"$TMP/acked-serials.$1"
        else
            out=$(curl -s -m 5 -H "X-Vault-Token: $ROOT_TOKEN" -w '\n%{http_code}' \
                -d '{"policies":["default"]}' "$ADDR/v1/auth/token/create" || true)
            [ "${out##*$'\n'}" = 200 ] && jq -r .auth.accessor <<<"${out%$'\n'*}" >>"$TMP/acked-accessors.$1"
        fi
    done
    return 0
}
# burst_then STOPCMD WHAT: runs the eight clients, STOPCMD (kill_server or stop_server) once
# some answers are in while they keep sending, restarts, and checks every answer is kept.
burst_then() {
    rm -f "$TMP"/acked-* "$TMP/stop"
    local bursts=() c s a missing=0
    for c in 1 2 3 4 5 6 7 8; do
        burst "$c" &
        bursts+=($!)
    done
    for _ in $(seq 100); do
        [ "$(cat "$TMP"/acked-serials.* "$TMP"/acked-accessors.* 2>/dev/null | wc -l)" -ge 40 ] && break
        sleep 0.05
    done
    "$1"
    touch "$TMP/stop"
    wait "${bursts[@]}"
    check "$2: no abort in the server log" \
        "$(grep -ci 'panic\|suspended connections\|abort' "$SRV_LOG" || true)" 0
    restart_server
    cat "$TMP"/acked-serials.* >"$TMP/acked-serials" 2>/dev/null || true
    cat "$TMP"/acked-accessors.* >"$TMP/acked-accessors" 2>/dev/null || true
    local ns na
    ns=$(wc -l <"$TMP/acked-serials")
    na=$(wc -l <"$TMP/acked-accessors")
    check "$2: some SVIDs and tokens were answered first" \
        "$([ "$ns" -gt 0 ] && [ "$na" -gt 0 ] && echo yes)" yes
    while read -r s; do
        [ "$(st GET "pki/cert/$s" "" -)" = 200 ] || missing=$((missing + 1))
    done <"$TMP/acked-serials"
    while read -r a; do
        [ "$(st POST auth/token/lookup-accessor "{\"accessor\":\"$a\"}" "$ROOT_TOKEN")" = 200 ] ||
            missing=$((missing + 1))
    done <"$TMP/acked-accessors"
    check "$2: every SVID and token answered 200 is kept ($ns + $na)" "$missing" 0
}
burst_then kill_server "SIGKILL under load"
# Stopped cleanly, answers waiting for their sync are suspended connections, which the server
# must resume before it stops (libmicrohttpd aborts otherwise): stop_server checks exit code 0.
burst_then stop_server "SIGTERM under load"

stop_server
finish
