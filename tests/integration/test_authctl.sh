#!/usr/bin/env bash
# test_authctl.sh: the authctl CLI against a real authsvc (SPEC §1 authctl, §2, §4): policy
# write and read, token create/lookup/renew/revoke, generic read/write/list/delete with K=V, @FILE
# and stdin, the token from AUTHSVC_TOKEN or ~/.authsvc-token, and Vault's exit codes and messages
# (0 success, 1 API error, 2 usage error or "No value found").
set -euo pipefail
# shellcheck source=lib.sh
source "$AUTHSVC_SRC/tests/integration/lib.sh"

# ctl ARGS...: runs authctl; sets RC, OUT (stdout) and ERR (stderr) without stopping the script.
ctl() {
    RC=0
    "$AUTHCTL" "$@" >"$TMP/ctl.out" 2>"$TMP/ctl.err" || RC=$?
    OUT=$(cat "$TMP/ctl.out")
    ERR=$(cat "$TMP/ctl.err")
}
# jo FILTER: jq -r on OUT that never aborts the script
jo() { jq -r "$1" <<<"$OUT" 2>/dev/null || echo "<not json>"; }
# policies FILTER: the sorted policies at FILTER in OUT, comma-joined
policies() { jo "$1|sort|join(\",\")"; }
yn() { if "$@"; then echo yes; else echo no; fi; }
contains() { [[ "$1" == *"$2"* ]]; }
# has_line TEXT ERE: some line of TEXT matches ERE
has_line() { grep -qE -- "$2" <<<"$1"; }
in_range() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }

# A private HOME without ~/.authsvc-token, and nothing inherited from the caller's environment.
export HOME="$TMP/home"
mkdir -p "$HOME"
unset AUTHSVC_TOKEN AUTHSVC_CACERT

start_server
export AUTHSVC_TOKEN=$ROOT_TOKEN

POL=ctl-test
cat >"$TMP/policy.json" <<'EOF'
{"path": {"sys/health": {"capabilities": ["read"]},
          "sys/policy/ctl-test": {"capabilities": ["read"]}}}
EOF

# ---------- usage errors (exit 2) ----------
ctl frobnicate
check "unknown command exits 2" "$RC" 2
check "unknown command prints the usage on stderr" "$(yn contains "$ERR" "Usage: authctl")" yes
ctl token frobnicate
check "unknown token subcommand exits 2" "$RC" 2
ctl read
check "read without PATH exits 2" "$RC" 2
ctl read sys/health -no-such-flag
check "unknown flag exits 2" "$RC" 2
ctl token create -ttl=forever
check "bad duration exits 2" "$RC" 2
ctl read sys/health -format=yaml
check "bad -format exits 2" "$RC" 2

# ---------- policy write, read through the legacy API ----------
ctl policy write "$POL" "$TMP/policy.json"
check "policy write exits 0" "$RC" 0
check "policy write message" "$OUT" "Success! Uploaded policy: $POL"
api GET "sys/policies/acl/$POL"
check_status 200 "the uploaded policy is readable through the API"
check "the API returns the uploaded text" "$(jqb .data.policy)" "$(cat "$TMP/policy.json")"

ctl read "sys/policy/$POL" -format=json
check "read sys/policy/NAME -format=json exits 0" "$RC" 0
check "read shows the policy name" "$(jo .data.name)" "$POL"
check "read shows the rules" "$(jo .data.rules)" "$(cat "$TMP/policy.json")"
ctl -format=json read "sys/policy/$POL"
check "-format before the command works too" "$(jo .data.name)" "$POL"

ctl read "sys/policy/$POL"
check "table read exits 0" "$RC" 0
check "table header" "$(head -2 <<<"$OUT" | tr -s ' ')" $'Key Value\n--- -----'
check "table has the name row" "$(yn has_line "$OUT" "^name +$POL\$")" yes

ctl policy read "$POL"
check "policy read prints the text" "$OUT" "$(cat "$TMP/policy.json")"
ctl policy list
check "policy list exits 0" "$RC" 0
check "policy list names the policy" "$(yn has_line "$OUT" "^$POL\$")" yes

# ---------- token create / lookup / renew ----------
ctl token create -policy="$POL" -ttl=1h -format=json
check "token create exits 0" "$RC" 0
check "token create -format=json prints the whole envelope" \
    "$(jo 'has("request_id") and has("auth")')" true
TOK=$(jo .auth.client_token)
ACC=$(jo .auth.accessor)
check_match "token create returns a secret" "$TOK" '^ast\.[A-Za-z0-9_-]{43}$'
check "the token has the policy and default" "$(policies .auth.policies)" "ctl-test,default"
check "the token lasts 1h" "$(jo .auth.lease_duration)" 3600

AUTHSVC_TOKEN=$TOK ctl token lookup -format=json
check "lookup with the new token exits 0" "$RC" 0
check "lookup shows its policies" "$(policies .data.policies)" "ctl-test,default"
check "lookup shows its ttl" "$(yn in_range "$(jo .data.ttl)" 3500 3600)" yes
check "lookup shows the accessor" "$(jo .data.accessor)" "$ACC"
check "lookup does not print the token it was given" "$(yn contains "$OUT" "$TOK")" no

AUTHSVC_TOKEN=$TOK ctl token lookup
check "table lookup exits 0" "$RC" 0
check "table shows policies as Vault does" \
    "$(yn has_line "$OUT" '^policies +\[(ctl-test default|default ctl-test)\]$')" yes
check "table shows the ttl as a duration" "$(yn has_line "$OUT" '^ttl +(59m[0-9]+s|1h)$')" yes

ctl token lookup "$TOK" -format=json
check "root looks the token up by value" "$(jo .data.accessor)" "$ACC"
ctl token lookup -accessor "$ACC" -format=json
check "root looks the token up by accessor" "$(policies .data.policies)" "ctl-test,default"

AUTHSVC_TOKEN=$TOK ctl token renew -format=json
check "renew-self exits 0" "$RC" 0
check "renew returns a lease" "$(jo '.auth.lease_duration > 0')" true
check "renew does not print the token it was given" "$(yn contains "$OUT" "$TOK")" no
ctl token renew -increment=30m "$TOK"
check "renew TOKEN -increment exits 0" "$RC" 0
check "renew prints token_duration" "$(yn has_line "$OUT" '^token_duration +[0-9hms]+$')" yes

# ---------- generic write / list ----------
ctl write auth/token/create policies="$POL"
check "write auth/token/create exits 0" "$RC" 0
check "write prints the new token" "$(yn has_line "$OUT" '^token +ast\.')" yes
check "write prints the token policies" \
    "$(yn has_line "$OUT" '^token_policies +\[.*"ctl-test".*\]$')" yes
TOK2=$(awk '$1 == "token" { print $2 }' <<<"$OUT")
ACC2=$(awk '$1 == "token_accessor" { print $2 }' <<<"$OUT")

ctl write auth/token/create policies="$POL" ttl=10m display_name=ctl -format=json
check "K=V values are sent as strings the server accepts" "$(jo .auth.lease_duration)" 600
TOK3=$(jo .auth.client_token)

ctl list auth/token/accessors
check "list exits 0" "$RC" 0
check "list header" "$(head -2 <<<"$OUT")" $'Keys\n----'
check "list shows the accessor" "$(yn has_line "$OUT" "^$ACC\$")" yes
ctl list auth/token/accessors -format=json
check "list -format=json is the keys array" \
    "$(jq -r --arg a "$ACC2" 'any(.[]; . == $a)' <<<"$OUT" 2>/dev/null || echo bad)" true

# ---------- revoke ----------
ctl token revoke "$TOK"
check "token revoke exits 0" "$RC" 0
check "token revoke message" "$OUT" "Success! Revoked token (if it existed)"
AUTHSVC_TOKEN=$TOK ctl token lookup
check "lookup with a revoked token exits 1" "$RC" 1
check "lookup with a revoked token says permission denied" \
    "$(yn contains "$ERR" "permission denied")" yes

ctl token revoke -accessor "$ACC2"
check "revoke -accessor exits 0" "$RC" 0
AUTHSVC_TOKEN=$TOK2 ctl token lookup
check "the token revoked by accessor is gone" "$RC" 1

AUTHSVC_TOKEN=$TOK3 ctl token revoke -self
check "revoke -self exits 0" "$RC" 0
AUTHSVC_TOKEN=$TOK3 ctl token lookup
check "the self-revoked token is gone" "$RC" 1

# ---------- where the token comes from ----------
AUTHSVC_TOKEN='' ctl token lookup
check "no token exits 1" "$RC" 1
check "no token says permission denied" "$(yn contains "$ERR" "permission denied")" yes
printf '%s\n' "$ROOT_TOKEN" >"$HOME/.authsvc-token"
AUTHSVC_TOKEN='' ctl token lookup -format=json
check "the token is read from ~/.authsvc-token" "$(jo '.data.policies|join(",")')" root
rm -f "$HOME/.authsvc-token"

# ---------- other inputs and answers ----------
ctl read sys/health
check "a bare answer (sys/health) prints as a table" \
    "$(yn has_line "$OUT" '^initialized +true$')" yes
jq -n --rawfile p "$TMP/policy.json" '{policy: $p}' >"$TMP/two.json"
ctl write sys/policy/ctl-two - <"$TMP/two.json"
check "write PATH - reads JSON from stdin" "$OUT" "Success! Data written to: sys/policy/ctl-two"
ctl write sys/policy/ctl-three policy=@"$TMP/policy.json"
check "write K=@FILE exits 0" "$RC" 0
ctl read sys/policy/ctl-three -format=json
check "K=@FILE sends the file verbatim" "$(jo .data.rules)" "$(cat "$TMP/policy.json")"
ctl policy delete ctl-two
check "policy delete message" "$OUT" "Success! Deleted policy: ctl-two"
ctl policy delete ctl-three
ctl bootstrap -code=not-the-code
check "bootstrap of a bootstrapped server exits 1" "$RC" 1
check "bootstrap says already bootstrapped" "$(yn contains "$ERR" "already bootstrapped")" yes
ctl read sys/health -address=http://127.0.0.1:1
check "an unreachable server exits 1" "$RC" 1

# ---------- delete ----------
ctl delete "sys/policy/$POL"
check "delete exits 0" "$RC" 0
check "delete message" "$OUT" "Success! Data deleted (if it existed) at: sys/policy/$POL"
ctl read "sys/policy/$POL"
check "read after delete exits 2 as Vault does (404)" "$RC" 2
check "read after delete says no value found" "$ERR" "No value found at sys/policy/$POL"
ctl list "sys/no-such-path"
check "list of nothing exits 2" "$RC" 2

stop_server
finish
