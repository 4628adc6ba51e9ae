#!/usr/bin/env bash
# test_nginx.sh: a real nginx (Debian's, on loopback ports) in front of a service, with authsvc
# and the agent, end to end (SPEC §7, §9; the README's nginx section is this test's config):
#   - the server runs with short lives: CA 90 s (the next CA is published at ~40 s and activates
#     at ~74 s after the start), SVIDs 30 s, CRLs 20 s, bundle refresh hint 5 s;
#   - two workloads each run `authctl agent` (ttl 30s, crl_file): "api" behind nginx (its agent
#     reloads nginx with `nginx -s reload` once its files are in place) and "web", the client;
#   - nginx terminates mTLS with api's SVID, key, bundle and CRL (ssl_verify_client on, ssl_crl)
#     and asks connect/ext-authz through auth_request, with its own proxy token; the app behind it
#     echoes the X-Authsvc-Spiffe-Id nginx passes on;
#   - curl presents web's SVID: no intention (default deny) -> 403; allow -> 200 with web's ID;
#     deny -> 403 at once; allow again -> 200; identity headers sent by the client reach neither
#     authsvc nor the app; no client certificate -> 400;
#   - a revoked certificate: 403 from ext-authz at once, then 400 from nginx itself (TLS
#     verification) once the agent has brought the new CRL and reloaded nginx;
#   - a steady loop (one request every 0.2 s, bounded to 105 s, no retries) across >= 2 SVID
#     rotations of both workloads and the activation of the next CA (pki/ca/pem, the issuer of
#     both SVIDs and the certificate nginx presents all change) sees only 200s;
#   - the web SVID in use is revoked: the next request is refused; once the agent has renewed it,
#     requests succeed again;
#   - with authsvc stopped, nginx answers 500 (auth_request fails closed).
# About 2 minutes, most of it waiting for the CA rotation (the first CA's life is fixed by then).
# Skips (exit 77) when /usr/sbin/nginx is missing; tools/deps installs it for tools/test.
set -euo pipefail

NGINX=${NGINX:-/usr/sbin/nginx}
if [ ! -x "$NGINX" ]; then
    echo "SKIP: $NGINX not found (Debian's nginx package; tools/deps installs it)"
    exit 77
fi

# shellcheck source=lib.sh
source "$AUTHSVC_SRC/tests/integration/lib.sh"

export HOME="$TMP/home"
mkdir -p "$HOME"
unset AUTHSVC_TOKEN AUTHSVC_CACERT

TD=spiffe://example.org
API_ID=$TD/ns/prod/api
WEB_ID=$TD/ns/prod/web
NGX=$TMP/nginx
API_DIR=$TMP/api
WEB_DIR=$TMP/web
CL=$TMP/client # the client's private copies of web's files (see snap)

AGENT_PIDS=()
NGX_MASTER=""
# stop_agents: SIGTERM and wait; AGENT_RCS gets their exit codes
stop_agents() {
    local p rc
    AGENT_RCS=""
    for p in "${AGENT_PIDS[@]}"; do
        if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null || true
            rc=0
            wait "$p" 2>/dev/null || rc=$?
            AGENT_RCS="$AGENT_RCS $rc"
        fi
    done
    AGENT_PIDS=()
}
stop_nginx() {
    # nginx daemonizes: its master is not our child; stop it by the pid it wrote.
    if [ -n "$NGX_MASTER" ] && kill -0 "$NGX_MASTER" 2>/dev/null; then
        kill -TERM "$NGX_MASTER" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$NGX_MASTER" 2>/dev/null || break
            sleep 0.1
        done
    fi
    NGX_MASTER=""
}
trap 'stop_agents; stop_nginx; cleanup' EXIT

jv() { jq -r "$1" <<<"$BODY" 2>/dev/null || echo "<not json>"; }
yn() { if "$@" >/dev/null 2>&1; then echo yes; else echo no; fi; }
contains() { [[ "$1" == *"$2"* ]]; }
serial_of() { openssl x509 -in "$1" -noout -serial 2>/dev/null | sed 's/^serial=//' || true; }
issuer_of() { openssl x509 -in "$1" -noout -issuer 2>/dev/null || true; }
colon_serial() { tr A-F a-f <<<"$1" | sed 's/../&:/g;s/:$//'; }
el() { echo "$((SECONDS - T0))"; }
note() { echo "[t+$(el)s] $*" >&2; }
# wait_for SECONDS COMMAND...: polls every 0.1 s until COMMAND succeeds; false on timeout
wait_for() {
    local n=$(($1 * 10))
    shift
    while [ "$n" -gt 0 ]; do
        if "$@"; then return 0; fi
        sleep 0.1
        n=$((n - 1))
    done
    return 1
}

# ---------- the server: short lives everywhere ----------
# (start_server passes the data dir and the ports as flags, which win over the file.)
cat >"$TMP/server.json" <<EOF
{"trust_domain": "example.org",
 "ca": {"ttl": "90s"},
 "svid": {"default_ttl": "30s", "max_ttl": "1h", "bundle_refresh_hint": "5s"},
 "crl": {"ttl": "20s"}}
EOF
T0=$SECONDS
start_server --config "$TMP/server.json"
CA_START=$(curl -s "$ADDR/v1/pki/ca/pem")

# ---------- tokens ----------
# token_for ID [EXTRA_JSON]: a default-policy workload token holding ID; sets TOK
token_for() {
    local extra=${2:-'{}'}
    api POST auth/token/create "$(jq -nc --arg id "$1" --argjson x "$extra" \
        '{policies:["default"], ttl:"1h", spiffe_ids:[$id]} + $x')"
    check_status 200 "root creates a token for $1"
    TOK=$(jv '.auth.client_token')
}
token_for "$API_ID" '{"allowed_dns_names":["localhost"]}'
API_TOK=$TOK
token_for "$WEB_ID"
WEB_TOK=$TOK
token_for "$API_ID" # the proxy token: nginx asks connect/ext-authz with it
PROXY_TOK=$TOK
umask 077
printf '%s\n' "$API_TOK" >"$TMP/api.token"
printf '%s\n' "$WEB_TOK" >"$TMP/web.token"
umask 022

# ---------- nginx config ----------
mkdir -p "$NGX/logs" "$NGX/tmp" "$CL"
cat >"$TMP/nginx-reload.sh" <<EOF
#!/bin/sh
# Run by the api agent once its files are in place. Before nginx is up there is nothing to reload.
[ -s "$NGX/nginx.pid" ] || exit 0
echo "\$(date +%s.%N)" >>"$TMP/nginx-reloads.log"
exec "$NGINX" -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/logs/error.log" -s reload
EOF
chmod +x "$TMP/nginx-reload.sh"
# write_nginx_conf: nginx.conf for NGX_PORT (mTLS, in front of the app) and APP_PORT (the app).
# The user directive only matters when nginx starts as root (as in CI): keep the workers as us.
write_nginx_conf() {
    cat >"$NGX/nginx.conf" <<EOF
daemon on;
user $(id -un) $(id -gn);
worker_processes 1;
pid $NGX/nginx.pid;
error_log $NGX/logs/error.log info;
events { worker_connections 256; }
http {
    access_log $NGX/logs/access.log;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    default_type text/plain;

    # The README's config (tests/integration/test_nginx.sh): only paths, ports, token differ.
    server {
        listen 127.0.0.1:$NGX_PORT ssl;
        ssl_certificate        $API_DIR/svid.pem;
        ssl_certificate_key    $API_DIR/svid_key.pem;
        ssl_client_certificate $API_DIR/bundle.pem;
        ssl_crl                $API_DIR/crl.pem;
        ssl_verify_client      on;
        ssl_verify_depth       2;

        location / {
            auth_request     /_authsvc;
            auth_request_set \$authsvc_id \$upstream_http_x_authsvc_spiffe_id;
            proxy_set_header X-Client-Cert "";
            proxy_set_header X-Forwarded-Client-Cert "";
            proxy_set_header X-Authsvc-Subject-Token "";
            proxy_set_header X-Authsvc-Spiffe-Id \$authsvc_id;
            proxy_pass       http://127.0.0.1:$APP_PORT;
        }

        location = /_authsvc {
            internal;
            proxy_pass http://127.0.0.1:$PORT/v1/connect/ext-authz?target=$API_ID;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Vault-Token "$PROXY_TOK";
            proxy_set_header X-Client-Cert \$ssl_client_escaped_cert;
            proxy_set_header X-Forwarded-Client-Cert "";
            proxy_set_header X-Authsvc-Subject-Token "";
            proxy_set_header X-Authsvc-Target "";
        }
    }

    # The app behind nginx: echoes the identity nginx passed on, and any identity header of the
    # client's that got through (there must be none).
    server {
        listen 127.0.0.1:$APP_PORT;
        location / {
            return 200 "hello \$http_x_authsvc_spiffe_id [\$http_x_client_cert][\$http_x_forwarded_client_cert][\$http_x_authsvc_subject_token]\n";
        }
    }
}
EOF
}

# ---------- the agents ----------
# agent_start NAME CONFIG: runs the agent in the background, log in $TMP/NAME.log
agent_start() {
    "$AUTHCTL" agent -config="$2" 2>"$TMP/$1.log" &
    AGENT_PIDS+=("$!")
}
jq -n --arg a "$ADDR" --arg t "$TMP/api.token" --arg o "$API_DIR" --arg r "$TMP/nginx-reload.sh" \
    '{address:$a, token_file:$t, out_dir:$o, crl_file:"crl.pem", ttl:"30s",
      dns_names:["localhost"], reload_command:$r}' >"$TMP/api-agent.json"
jq -n --arg a "$ADDR" --arg t "$TMP/web.token" --arg o "$WEB_DIR" \
    '{address:$a, token_file:$t, out_dir:$o, crl_file:"crl.pem", ttl:"30s"}' >"$TMP/web-agent.json"
agent_start api-agent "$TMP/api-agent.json"
API_AGENT=${AGENT_PIDS[-1]}
agent_start web-agent "$TMP/web-agent.json"
WEB_AGENT=${AGENT_PIDS[-1]}
files_ready() {
    local f
    for f in svid.pem svid_key.pem bundle.pem crl.pem; do
        [ -s "$1/$f" ] || return 1
    done
}
check "the api agent wrote its files" "$(yn wait_for 10 files_ready "$API_DIR")" yes
check "the web agent wrote its files" "$(yn wait_for 10 files_ready "$WEB_DIR")" yes
check "api's SVID carries DNS:localhost" \
    "$(openssl x509 -in "$API_DIR/svid.pem" -noout -ext subjectAltName 2>/dev/null |
        grep -c 'DNS:localhost')" 1

# ---------- nginx ----------
# Two free ports; another test may take one before nginx binds it: then try two others.
NGX_PORT=""
APP_PORT=""
NGX_RC=1
NGX_OUT=""
for _ in 1 2 3 4 5; do
    NGX_PORT=$(free_port)
    APP_PORT=$(free_port)
    if [ "$NGX_PORT" == "$APP_PORT" ]; then continue; fi
    write_nginx_conf
    : >"$NGX/logs/error.log" # a bind failure of an earlier try is not an error of this run
    NGX_RC=0
    NGX_OUT=$("$NGINX" -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/logs/error.log" 2>&1) || NGX_RC=$?
    if [ "$NGX_RC" == 0 ] || ! contains "$NGX_OUT" "Address already in use"; then break; fi
done
check "nginx starts" "$NGX_RC" 0
if [ "$NGX_RC" != 0 ]; then echo "$NGX_OUT" >&2; fi
wait_for 5 test -s "$NGX/nginx.pid" || true
NGX_MASTER=$(cat "$NGX/nginx.pid" 2>/dev/null || true)
check "nginx wrote its pid" "$(yn test -n "$NGX_MASTER")" yes
nginx_up() { (exec 3<>"/dev/tcp/127.0.0.1/$NGX_PORT") 2>/dev/null; }
check "nginx listens" "$(yn wait_for 5 nginx_up)" yes
note "nginx up on 127.0.0.1:$NGX_PORT"

# ---------- the client ----------
# snap: the client's own copy of web's SVID, key and bundle. The agent renames the key, then the
# certificate; curl opens the two files one after the other, so reading them in place could pair
# an old certificate with a new key. Like any reader of the agent's files, the client takes them
# as a pair: certificate, key, certificate again (same both times), keys matching.
SNAP_LAST=""
SNAP_SERIAL=""
SNAP_ISSUER=""
snap() {
    local c1 k c2
    for _ in $(seq 1 100); do
        c1=$(cat "$WEB_DIR/svid.pem" 2>/dev/null || true)
        k=$(cat "$WEB_DIR/svid_key.pem" 2>/dev/null || true)
        c2=$(cat "$WEB_DIR/svid.pem" 2>/dev/null || true)
        if [ -n "$c1" ] && [ "$c1" == "$c2" ]; then
            if [ "$c1$k" == "$SNAP_LAST" ]; then
                break
            fi
            if [ "$(openssl x509 -noout -pubkey <<<"$c1" 2>/dev/null)" == \
                "$(openssl pkey -pubout <<<"$k" 2>/dev/null || echo no-key)" ]; then
                printf '%s\n' "$c1" >"$CL/svid.pem"
                (umask 077 && printf '%s\n' "$k" >"$CL/svid_key.pem")
                SNAP_LAST=$c1$k
                SNAP_SERIAL=$(serial_of "$CL/svid.pem")
                SNAP_ISSUER=$(issuer_of "$CL/svid.pem")
                break
            fi
        fi
        sleep 0.02
    done
    cp "$WEB_DIR/bundle.pem" "$CL/bundle.pem"
}
# req [--cert-pair CERT KEY] [curl args...]: one request to nginx as the client (no retry);
# sets CODE (the HTTP status, or curl-N when curl failed with exit code N) and RBODY
req() {
    local cert=$CL/svid.pem key=$CL/svid_key.pem rc=0
    if [ "${1-}" == --cert-pair ]; then
        cert=$2
        key=$3
        shift 3
    fi
    snap
    CODE=$(curl -s -o "$TMP/resp" -w '%{http_code}' --max-time 5 \
        --resolve "localhost:$NGX_PORT:127.0.0.1" --cacert "$CL/bundle.pem" \
        --cert "$cert" --key "$key" "$@" "https://localhost:$NGX_PORT/") || rc=$?
    if [ "$rc" != 0 ]; then CODE=curl-$rc; fi
    RBODY=$(cat "$TMP/resp" 2>/dev/null || true)
}
HELLO_WEB="hello $WEB_ID [][][]"

# ---------- intentions ----------
req
check "no intention (default deny): 403" "$CODE" 403
api POST connect/intentions "$(jq -nc --arg s "$WEB_ID" --arg d "$API_ID" \
    '{source:$s, destination:$d, action:"allow", description:"web calls api"}')"
check_status 200 "create the intention web -> api allow"
IID=$(jv '.data.id')
req
check "allowed: 200" "$CODE" 200
check "the app sees web's SPIFFE ID from ext-authz, and no client identity header" \
    "$RBODY" "$HELLO_WEB"
# Every identity header a client may send is dropped or replaced, towards authsvc (else
# ext-authz would see two identities, or api's, and refuse) and towards the app.
API_ENC=$(jq -sRr @uri "$API_DIR/svid.pem")
req -H "X-Client-Cert: $API_ENC" -H "X-Forwarded-Client-Cert: Cert=\"$API_ENC\"" \
    -H "X-Authsvc-Subject-Token: $API_TOK" -H "X-Authsvc-Spiffe-Id: $TD/ns/prod/admin" \
    -H "X-Authsvc-Target: $TD/ns/prod/other"
check "client identity headers: still 200 as web" "$CODE" 200
check "client identity headers reach neither authsvc nor the app" "$RBODY" "$HELLO_WEB"
req -X POST --data-binary 'a body nginx does not forward to authsvc'
check "a POST with a body: 200" "$CODE" 200
NOCERT=$(curl -s -o "$TMP/resp" -w '%{http_code}' --max-time 5 \
    --resolve "localhost:$NGX_PORT:127.0.0.1" --cacert "$CL/bundle.pem" \
    "https://localhost:$NGX_PORT/" || true)
check "no client certificate: 400 from nginx" "$NOCERT" 400

api POST "connect/intentions/$IID" '{"action":"deny"}'
check_status 200 "change the intention to deny"
req
check "denied: 403 at once" "$CODE" 403
api POST "connect/intentions/$IID" '{"action":"allow"}'
check_status 200 "change it back to allow"
req
check "allowed again: 200 at once" "$CODE" 200
note "intentions checked"

# ---------- a revoked certificate: ext-authz at once, then nginx's CRL ----------
api POST svid/x509 '{"ttl":"30s"}' "$WEB_TOK"
check_status 200 "web's token obtains an extra SVID (server-made key)"
jv '.data.certificate' >"$TMP/extra.pem"
(umask 077 && jv '.data.private_key' >"$TMP/extra_key.pem")
EXTRA_SERIAL=$(serial_of "$TMP/extra.pem")
req --cert-pair "$TMP/extra.pem" "$TMP/extra_key.pem"
check "the extra SVID is allowed: 200" "$CODE" 200
api POST pki/revoke "{\"serial_number\":\"$(colon_serial "$EXTRA_SERIAL")\"}"
check_status 200 "revoke the extra SVID"
req --cert-pair "$TMP/extra.pem" "$TMP/extra_key.pem"
check "revoked: the next request is 403 (ext-authz)" "$CODE" 403
in_api_crl() {
    openssl crl -in "$API_DIR/crl.pem" -noout -text 2>/dev/null |
        grep -q "Serial Number: $EXTRA_SERIAL"
}
check "the api agent brings the new CRL within 8 s" "$(yn wait_for 8 in_api_crl)" yes
# Until nginx has reloaded the new CRL, ext-authz refuses it; then nginx does, before asking.
CODES=""
for _ in $(seq 1 25); do
    req --cert-pair "$TMP/extra.pem" "$TMP/extra_key.pem"
    CODES="$CODES $CODE"
    if [ "$CODE" != 403 ]; then break; fi
    sleep 0.2
done
check "then nginx itself refuses it (400, TLS verification) within 5 s" "$CODE" 400
check "never 200 meanwhile (codes:$CODES)" "$(yn contains "$CODES" 200)" no
check "nginx's answer is the SSL certificate error" \
    "$(yn contains "$RBODY" "The SSL certificate error")" yes
check "nginx logs the revocation" \
    "$(yn grep -q 'certificate revoked' "$NGX/logs/error.log")" yes
req
check "web's own SVID is still fine: 200" "$CODE" 200
note "revoked extra SVID, codes until nginx refused it:$CODES"

# ---------- the steady loop: SVID rotations and a CA rotation ----------
# served_serial: the serial of the certificate nginx presents now
served_serial() {
    openssl s_client -connect "127.0.0.1:$NGX_PORT" -servername localhost \
        -cert "$CL/svid.pem" -key "$CL/svid_key.pem" </dev/null 2>/dev/null |
        openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//' || true
}
declare -A API_SEEN=() WEB_SEEN=() SERVED=()
API_ISS0=$(issuer_of "$API_DIR/svid.pem")
WEB_ISS0=$(issuer_of "$CL/svid.pem")
API_LAST=""
API_SERIAL=""
CA_CHANGED=no
CA_DROPPED=no
API_NEW_CA=no
WEB_NEW_CA=no
SERVED_NEW_CA=no
N=0
BAD=0
RELOADS0=$(grep -c . "$TMP/nginx-reloads.log" 2>/dev/null || true)
LOOP0=$SECONDS
note "steady loop starts"
while [ $((SECONDS - LOOP0)) -lt 105 ]; do
    req
    N=$((N + 1))
    if [ "$CODE" != 200 ] || [ "$RBODY" != "$HELLO_WEB" ]; then
        BAD=$((BAD + 1))
        if [ "$BAD" -le 5 ]; then note "request $N failed: $CODE $RBODY"; fi
    fi
    # What the client presented (snap's copy) and what nginx has on disk.
    if [ -n "$SNAP_SERIAL" ]; then WEB_SEEN[$SNAP_SERIAL]=1; fi
    if [ "$WEB_NEW_CA" == no ] && [ "$SNAP_ISSUER" != "$WEB_ISS0" ]; then
        WEB_NEW_CA=yes
        note "web presents an SVID from the new CA"
    fi
    a=$(cat "$API_DIR/svid.pem" 2>/dev/null || true)
    if [ "$a" != "$API_LAST" ]; then
        API_LAST=$a
        API_SERIAL=$(serial_of "$API_DIR/svid.pem")
        if [ -n "$API_SERIAL" ]; then API_SEEN[$API_SERIAL]=1; fi
        if [ "$API_NEW_CA" == no ] && [ "$(issuer_of "$API_DIR/svid.pem")" != "$API_ISS0" ]; then
            API_NEW_CA=yes
            note "api's SVID is from the new CA"
        fi
    fi
    if [ $((N % 10)) == 0 ] || { [ "$API_NEW_CA" == yes ] && [ "$SERVED_NEW_CA" == no ]; }; then
        s=$(served_serial)
        if [ -n "$s" ]; then SERVED[$s]=1; fi
        if [ "$API_NEW_CA" == yes ] && [ "$s" == "$API_SERIAL" ] && [ "$SERVED_NEW_CA" == no ]; then
            SERVED_NEW_CA=yes
            note "nginx presents api's SVID from the new CA"
        fi
    fi
    if [ "$CA_CHANGED" == no ] && [ $((N % 5)) == 0 ] &&
        [ "$(curl -s "$ADDR/v1/pki/ca/pem")" != "$CA_START" ]; then
        CA_CHANGED=yes
        note "pki/ca/pem changed: the next CA is active"
    fi
    if [ "$CA_DROPPED" == no ] && ! contains "$(cat "$API_DIR/bundle.pem")" "$CA_START"; then
        CA_DROPPED=yes
        note "the first CA left api's bundle.pem"
    fi
    # Done after two rotations of both SVIDs (3 serials each), the next CA active and in use on
    # both sides and in nginx, and the first CA out of the bundle nginx trusts.
    if [ ${#API_SEEN[@]} -ge 3 ] && [ ${#WEB_SEEN[@]} -ge 3 ] && [ "$CA_CHANGED" == yes ] &&
        [ "$API_NEW_CA" == yes ] && [ "$WEB_NEW_CA" == yes ] && [ "$SERVED_NEW_CA" == yes ] &&
        [ "$CA_DROPPED" == yes ]; then
        break
    fi
    sleep 0.2
done
LOOP_S=$((SECONDS - LOOP0))
RELOADS=$(($(grep -c . "$TMP/nginx-reloads.log" 2>/dev/null || true) - RELOADS0))
note "steady loop: $N requests in $LOOP_S s, $BAD failed; api serials ${#API_SEEN[@]}," \
    "web serials ${#WEB_SEEN[@]}, served serials ${#SERVED[@]}, nginx reloads $RELOADS"
check "the loop made many requests" "$(yn test "$N" -ge 200)" yes
check "zero failed requests in the loop ($N requests)" "$BAD" 0
check "api's SVID rotated at least twice (serials seen >= 3)" "$(yn test ${#API_SEEN[@]} -ge 3)" yes
check "web's SVID rotated at least twice (serials presented >= 3)" \
    "$(yn test ${#WEB_SEEN[@]} -ge 3)" yes
check "nginx presented at least 3 different certificates" "$(yn test ${#SERVED[@]} -ge 3)" yes
check "the next CA became active (pki/ca/pem changed)" "$CA_CHANGED" yes
check "api's SVID came from the new CA" "$API_NEW_CA" yes
check "web presented an SVID from the new CA" "$WEB_NEW_CA" yes
check "nginx presented api's SVID from the new CA" "$SERVED_NEW_CA" yes
check "the first CA left the bundle nginx trusts" "$CA_DROPPED" yes
check "the agent reloaded nginx during the loop" "$(yn test "$RELOADS" -ge 3)" yes
check "no failed reload" "$(grep -c 'reload command failed' "$TMP/api-agent.log" || true)" 0

# ---------- revoke the web SVID in use ----------
# Not just before the agent renews it (else the next request could carry the new one): the agent
# renews at 0.45..0.55 of the life, counted from the request (notBefore + 10 s, SPEC §6).
unix_time_of() { date -d "$(openssl x509 -in "$WEB_DIR/svid.pem" -noout "$1" | cut -d= -f2)" +%s; }
renewal_not_soon() {
    local issued not_after
    issued=$(($(unix_time_of -startdate) + 10))
    not_after=$(unix_time_of -enddate)
    [ $(($(date +%s) + 3)) -lt $((issued + (not_after - issued) * 45 / 100)) ]
}
check "web's SVID is not about to be renewed" "$(yn wait_for 20 renewal_not_soon)" yes
snap
REVOKED=$SNAP_SERIAL
api POST pki/revoke "{\"serial_number\":\"$(colon_serial "$REVOKED")\"}"
check_status 200 "revoke the web SVID in use"
T_REV=$SECONDS
req
check "with the revoked SVID the next request is refused" "$(yn test "$CODE" != 200)" yes
note "after the revocation: $CODE"
REFUSED_CODES=""
renewed() {
    local s
    s=$(serial_of "$WEB_DIR/svid.pem")
    [ -n "$s" ] && [ "$s" != "$REVOKED" ]
}
# Until the agent renews, every request with the revoked SVID is refused (ext-authz 403, or
# nginx's 400 once it has the new CRL).
while ! renewed && [ $((SECONDS - T_REV)) -lt 25 ]; do
    req
    if [ "$SNAP_SERIAL" == "$REVOKED" ]; then
        REFUSED_CODES="$REFUSED_CODES $CODE"
    fi
    sleep 0.5
done
check "the web agent renewed its SVID within 25 s" "$(yn renewed)" yes
check "until then every request was refused (codes:$REFUSED_CODES)" \
    "$(yn contains "$REFUSED_CODES" 200)" no
req
check "with the renewed SVID: 200" "$CODE" 200
check "... as web" "$RBODY" "$HELLO_WEB"
note "recovered $((SECONDS - T_REV)) s after the revocation; codes meanwhile:$REFUSED_CODES"

# ---------- the end ----------
check "the api agent is still running" "$(yn kill -0 "$API_AGENT")" yes
check "the web agent is still running" "$(yn kill -0 "$WEB_AGENT")" yes
check "the agents never logged a token" \
    "$(cat "$TMP/api-agent.log" "$TMP/web-agent.log" | grep -cF -e "$API_TOK" -e "$WEB_TOK" || true)" 0
check "nginx logged no emergency or config error" \
    "$(grep -cE '\[emerg\]' "$NGX/logs/error.log" || true)" 0

# ---------- authsvc away: auth_request fails closed ----------
stop_agents
check "both agents stop with exit 0 on SIGTERM" "$AGENT_RCS" " 0 0"
stop_server
req
check "with authsvc stopped nginx answers 500 (auth_request fails closed)" "$CODE" 500
stop_nginx
if [ "$FAILED" -gt 0 ]; then
    echo "--- nginx error.log (warn and above, last 30) ---" >&2
    grep -E '\[(warn|error|crit|alert|emerg)\]' "$NGX/logs/error.log" | tail -30 >&2 || true
    echo "--- api agent log (last 20) ---" >&2
    tail -20 "$TMP/api-agent.log" >&2 || true
    echo "--- web agent log (last 20) ---" >&2
    tail -20 "$TMP/web-agent.log" >&2 || true
fi
note "done"
finish
