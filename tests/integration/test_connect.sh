#!/usr/bin/env bash
# test_connect.sh: intentions and the proxy-facing checks end to end (SPEC §7): connect/intentions
# CRUD and what it refuses (nothing stored); connect/authorize with a PEM or a URI + serial, under
# root and under a proxy token holding only its target, through the precedence rules (exact >
# longer prefix > "*", destination before source, deny wins at equal precedence, prefixes on a
# segment boundary), for never-issued, mismatched, revoked, expired and foreign-CA certificates;
# connect/ext-authz (and /some/path) with the identity from X-Client-Cert, X-Forwarded-Client-Cert
# or X-Authsvc-Subject-Token, the target from ?target= or X-Authsvc-Target, for every method; sudo
# from root and from a policy; every revocation or intention change reflected by the very next
# check; and, after a restart with connect.default_action allow, the intentions kept and bad
# identities still refused.
set -euo pipefail
# shellcheck source=lib.sh
source "$AUTHSVC_SRC/tests/integration/lib.sh"

jv() { jq -r "$1" <<<"$BODY" 2>/dev/null || echo "<not json>"; }
yn() { if "$@"; then echo yes; else echo no; fi; }
contains() { [[ "$1" == *"$2"* ]]; }
UUID_RE='^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'

TD=spiffe://example.org
WEB=$TD/ns/prod/web
DB=$TD/ns/prod/db
PRODX=$TD/ns/production/web # shares the text "ns/prod" but not the segment

# intention SRC DST ACTION [DESC]: creates one with root; sets IID to its id (empty on failure)
intention() {
    api POST connect/intentions "$(jq -nc --arg s "$1" --arg d "$2" --arg a "$3" --arg x "${4-}" \
        '{source:$s,destination:$d,action:$a,description:$x}')"
    check_status 200 "create intention $1 -> $2 $3"
    IID=$(jv '.data.id // ""')
}
# intention_count: LIST connect/intentions length (0 for its empty-list 404)
intention_count() {
    api LIST connect/intentions
    if [ "$STATUS" = 200 ]; then jv '.data.keys|length'; else echo 0; fi
}
# clear_intentions: deletes every intention
clear_intentions() {
    local id
    api LIST connect/intentions
    if [ "$STATUS" = 200 ]; then
        for id in $(jv '.data.keys[]'); do
            api DELETE "connect/intentions/$id"
            check_status 204 "clear: delete intention $id"
        done
    fi
}
# svid ID [TTL] [TOKEN]: an X.509-SVID with a server-made key; sets CERT_FILE ($TMP/<n>.pem),
# SERIAL
SVID_N=0
svid() {
    local body
    body=$(jq -nc --arg id "$1" --arg ttl "${2-}" '{spiffe_id:$id} + (if $ttl=="" then {} else {ttl:$ttl} end)')
    api POST svid/x509 "$body" "${3-$ROOT_TOKEN}"
    check_status 200 "svid/x509 for $1"
    SVID_N=$((SVID_N + 1))
    CERT_FILE=$TMP/svid$SVID_N.pem
    jv '.data.certificate' >"$CERT_FILE"
    SERIAL=$(jv '.data.serial_number')
}
# authz_pem PEM_FILE TARGET [TOKEN]: connect/authorize with client_cert_pem
authz_pem() {
    api POST connect/authorize "$(jq -nc --rawfile p "$1" --arg t "$2" '{target:$t,client_cert_pem:$p}')" \
        "${3-$ROOT_TOKEN}"
}
# authz_uri URI SERIAL TARGET [TOKEN]: connect/authorize with client_cert_uri + client_cert_serial
authz_uri() {
    api POST connect/authorize "$(jq -nc --arg u "$1" --arg s "$2" --arg t "$3" \
        '{target:$t,client_cert_uri:$u,client_cert_serial:$s}')" "${4-$ROOT_TOKEN}"
}
# decision: "authorized,intention_id" of the last authorize answer (or the status when not 200)
decision() {
    if [ "$STATUS" = 200 ]; then jv '[(.data.authorized|tostring), .data.intention_id]|join(",")'; else echo "status $STATUS"; fi
}
# ext METHOD PATH [curl args...]: a call to connect/ext-authz...; sets STATUS, BODY and XID (the
# X-Authsvc-Spiffe-Id response header, empty when absent)
ext() {
    local method=$1 path=$2
    shift 2
    local args=(-s -o "$TMP/body" -D "$TMP/hdrs" -w '%{http_code}')
    if [ "$method" = HEAD ]; then args+=(--head); else args+=(-X "$method"); fi
    LAST_REQ="$method $path"
    STATUS=$(curl "${args[@]}" "$@" "$ADDR/v1/$path") || STATUS=000
    BODY=$(cat "$TMP/body")
    XID=$(sed -n 's/^[Xx]-[Aa]uthsvc-[Ss]piffe-[Ii]d: *//p' "$TMP/hdrs" | tr -d '\r')
}
# enc FILE: the URL-encoded PEM (nginx's $ssl_client_escaped_cert)
enc() { jq -sRr @uri "$1"; }

export HOME="$TMP/home"
mkdir -p "$HOME"
start_server

# An SVID that will have expired by the time it is checked (ttl 1s; checked >= 2 s later).
svid "$WEB" 1s
EXP_PEM=$CERT_FILE
EXP_SERIAL=$SERIAL
EXP_START=$SECONDS

# ---------- intentions CRUD ----------
api LIST connect/intentions
check_status 404 "an empty LIST connect/intentions is 404"
api GET "connect/intentions?list=true"
check_status 404 "GET ?list=true of the empty set is 404 too"

api POST connect/intentions "{\"source\":\"$WEB\",\"destination\":\"$DB\",\"action\":\"allow\",\"description\":\"web may call db\"}"
check_status 200 "create an intention"
ID1=$(jv '.data.id')
check_match "data.id is a UUID" "$ID1" "$UUID_RE"
api GET "connect/intentions/$ID1"
check_status 200 "GET the intention"
check "it reads back every field" "$(jv '[.data.id,.data.source,.data.destination,.data.action,.data.description]|join(",")')" \
    "$ID1,$WEB,$DB,allow,web may call db"
check "created and updated are positive integers" "$(jv '(.data.created|type=="number" and .>0) and (.data.updated|type=="number" and .>0)')" true
CREATED=$(jv '.data.created')
UPDATED=$(jv '.data.updated')
sleep 1.1
api POST "connect/intentions/$ID1" '{"action":"deny"}'
check_status 200 "a partial update (action only)"
check "  answers the same id" "$(jv '.data.id')" "$ID1"
api GET "connect/intentions/$ID1"
check "the update changed action and kept source, destination, description" \
    "$(jv '[.data.source,.data.destination,.data.action,.data.description]|join(",")')" "$WEB,$DB,deny,web may call db"
check "  created is unchanged" "$(jv '.data.created')" "$CREATED"
check "  updated moved forward" "$(jq --argjson u "$UPDATED" '.data.updated > $u' <<<"$BODY")" true
api POST "connect/intentions/$ID1" "{\"description\":\"second\",\"source\":null}"
check_status 200 "an update of the description with source:null (null means absent)"
api GET "connect/intentions/$ID1"
check "  description changed, source kept" "$(jv '[.data.source,.data.description,.data.action]|join(",")')" "$WEB,second,deny"

intention "$TD/ns/prod/*" "*" allow
ID2=$IID
check_match "a second intention (prefix source, * destination) gets a UUID" "$ID2" "$UUID_RE"
check "  distinct from the first" "$(yn [ "$ID1" != "$ID2" ])" yes
api LIST connect/intentions
check_status 200 "LIST connect/intentions"
check "  keys are both ids" "$(jv '.data.keys|sort|join(",")')" "$(printf '%s\n' "$ID1" "$ID2" | sort | paste -sd, -)"
check "  key_info has both ids" "$(jv '.data.key_info|keys|sort|join(",")')" "$(printf '%s\n' "$ID1" "$ID2" | sort | paste -sd, -)"
check "  key_info of the second shows its fields" \
    "$(jq -r --arg i "$ID2" '.data.key_info[$i]|[.id,.source,.destination,.action,.description]|join(",")' <<<"$BODY")" \
    "$ID2,$TD/ns/prod/*,*,allow,"
check "  key_info of the first shows the update" \
    "$(jq -r --arg i "$ID1" '.data.key_info[$i]|[.action,.description,(.created|tostring)]|join(",")' <<<"$BODY")" "deny,second,$CREATED"
api GET "connect/intentions?list=true"
check_status 200 "GET ?list=true lists too"

# a token without any policy on connect/intentions (the default policy only)
api POST auth/token/create '{"policies":["default"]}'
check_status 200 "create a default-policy token"
PLAIN=$(jv '.auth.client_token')
api POST connect/intentions "{\"source\":\"$WEB\",\"destination\":\"$DB\",\"action\":\"allow\"}" "$PLAIN"
check_status 403 "the default policy may not create intentions"
api LIST connect/intentions "" "$PLAIN"
check_status 403 "  nor LIST them"
api GET "connect/intentions/$ID1" "" "$PLAIN"
check_status 403 "  nor read one"
api POST "connect/intentions/$ID1" '{"action":"allow"}' "$PLAIN"
check_status 403 "  nor update one"
api DELETE "connect/intentions/$ID1" "" "$PLAIN"
check_status 403 "  nor delete one"
api LIST connect/intentions "" "-"
check_status 403 "no token: 403"
check "nothing was added or changed by the refused calls" "$(intention_count)" 2
api GET "connect/intentions/$ID1"
check "  the first is still deny/second" "$(jv '[.data.action,.data.description]|join(",")')" "deny,second"

# bad input: 400 and nothing stored
bad_create() {
    local desc=$1 body=$2
    api POST connect/intentions "$body"
    check_status 400 "create refuses $desc"
    check "  with an error message" "$(yn [ -n "$(jv '.errors[0] // ""')" ])" yes
}
bad_create 'action "maybe"' "{\"source\":\"$WEB\",\"destination\":\"$DB\",\"action\":\"maybe\"}"
bad_create "a missing action" "{\"source\":\"$WEB\",\"destination\":\"$DB\"}"
bad_create "a foreign trust domain source" "{\"source\":\"spiffe://other.org/x\",\"destination\":\"$DB\",\"action\":\"allow\"}"
bad_create "a foreign trust domain destination" "{\"source\":\"$WEB\",\"destination\":\"spiffe://other.org/ns/prod/*\",\"action\":\"allow\"}"
bad_create "a star inside the path (source)" "{\"source\":\"$TD/a/*/b\",\"destination\":\"$DB\",\"action\":\"allow\"}"
bad_create "a star inside the path (destination)" "{\"source\":\"$WEB\",\"destination\":\"$TD/a/*/b\",\"action\":\"allow\"}"
bad_create "a star not on a segment boundary" "{\"source\":\"$TD/ns/prod*\",\"destination\":\"$DB\",\"action\":\"allow\"}"
bad_create "a trailing slash" "{\"source\":\"$TD/ns/prod/\",\"destination\":\"$DB\",\"action\":\"allow\"}"
bad_create "a missing destination" "{\"source\":\"$WEB\",\"action\":\"allow\"}"
bad_create "a missing source" "{\"destination\":\"$DB\",\"action\":\"allow\"}"
bad_create "a non-SPIFFE source" "{\"source\":\"https://example.org/x\",\"destination\":\"$DB\",\"action\":\"allow\"}"
bad_create "an empty source" "{\"source\":\"\",\"destination\":\"$DB\",\"action\":\"allow\"}"
bad_create "a numeric source" "{\"source\":5,\"destination\":\"$DB\",\"action\":\"allow\"}"
bad_create "an array destination" "{\"source\":\"$WEB\",\"destination\":[\"$DB\"],\"action\":\"allow\"}"
bad_create "a boolean action" "{\"source\":\"$WEB\",\"destination\":\"$DB\",\"action\":true}"
bad_create "a numeric description" "{\"source\":\"$WEB\",\"destination\":\"$DB\",\"action\":\"allow\",\"description\":7}"
bad_create "a non-JSON body" "not json"
bad_create "a dot-dot segment" "{\"source\":\"$TD/ns/../web\",\"destination\":\"$DB\",\"action\":\"allow\"}"
bad_create "a percent-encoded segment" "{\"source\":\"$TD/ns/pr%20od\",\"destination\":\"$DB\",\"action\":\"allow\"}"
bad_create "a query in the ID" "{\"source\":\"$TD/ns/prod?x=1\",\"destination\":\"$DB\",\"action\":\"allow\"}"
bad_create "an upper-case trust domain" "{\"source\":\"spiffe://EXAMPLE.org/ns/prod/web\",\"destination\":\"$DB\",\"action\":\"allow\"}"
bad_create "a bare star suffix (spiffe://*)" "{\"source\":\"spiffe://*\",\"destination\":\"$DB\",\"action\":\"allow\"}"
bad_create "a double star" "{\"source\":\"$TD/ns/**\",\"destination\":\"$DB\",\"action\":\"allow\"}"
bad_create 'action "Allow" (case matters)' "{\"source\":\"$WEB\",\"destination\":\"$DB\",\"action\":\"Allow\"}"
bad_create "a description over 4096 bytes" "$(jq -nc --arg s "$WEB" --arg d "$DB" '{source:$s,destination:$d,action:"allow",description:("x"*4097)}')"
check "nothing was stored by the refused creates" "$(intention_count)" 2
intention "*" "$TD/*" deny "$(printf 'y%.0s' $(seq 1 4096))"
ID3=$IID
check "a 4096-byte description and the whole trust domain prefix are accepted" "$(intention_count)" 3
api GET "connect/intentions/$ID3"
check "  it reads back" "$(jv '[.data.source,.data.destination,(.data.description|length|tostring)]|join(",")')" "*,$TD/*,4096"
api DELETE "connect/intentions/$ID3"
check_status 204 "  delete it"
api POST "connect/intentions/$ID1" '{"action":"maybe"}'
check_status 400 "an update to action maybe is refused"
api POST "connect/intentions/$ID1" '{"destination":"spiffe://other.org/x"}'
check_status 400 "an update to a foreign destination is refused"
api POST "connect/intentions/$ID1" '{"source":7}'
check_status 400 "an update with a numeric source is refused"
api GET "connect/intentions/$ID1"
check "  the refused updates left the intention as it was" \
    "$(jv '[.data.source,.data.destination,.data.action,.data.description]|join(",")')" "$WEB,$DB,deny,second"

api DELETE "connect/intentions/$ID1"
check_status 204 "DELETE an intention"
check "  with no body" "$BODY" ""
api GET "connect/intentions/$ID1"
check_status 404 "GET after DELETE is 404"
api DELETE "connect/intentions/$ID1"
check_status 404 "a second DELETE is 404"
api POST "connect/intentions/$ID1" '{"action":"allow"}'
check_status 404 "an update of a deleted intention is 404"
check "  and did not create it" "$(intention_count)" 1
api DELETE "connect/intentions/$ID2"
check_status 204 "DELETE the second"
api LIST connect/intentions
check_status 404 "LIST is 404 again once every intention is gone"

# ---------- SVIDs and tokens for the checks ----------
# The proxy in front of db: holds only db, the default policy.
api POST auth/token/create "{\"spiffe_ids\":[\"$DB\"],\"policies\":[\"default\"]}"
check_status 200 "create the proxy token (spiffe_ids [db])"
PROXY=$(jv '.auth.client_token')
# web's workload token, its SVIDs obtained with it
api POST auth/token/create "{\"spiffe_ids\":[\"$WEB\"],\"policies\":[\"default\"]}"
check_status 200 "create web's workload token"
WEB_TOK=$(jv '.auth.client_token')
svid "$WEB" "" "$WEB_TOK"
WEB_PEM=$CERT_FILE
WEB_SERIAL=$SERIAL
check "web's SVID names web" "$(openssl x509 -in "$WEB_PEM" -noout -ext subjectAltName | sed -n 's/^ *URI://p')" "$WEB"
svid "$DB" "" "$PROXY"
DB_PEM=$CERT_FILE
DB_SERIAL=$SERIAL
svid "$PRODX"
PRODX_PEM=$CERT_FILE
svid "$WEB"
WEB2_PEM=$CERT_FILE # revoked in the authorize section
WEB2_SERIAL=$SERIAL
svid "$WEB"
WEB3_PEM=$CERT_FILE # revoked in the ext-authz section
WEB3_SERIAL=$SERIAL

# ---------- connect/authorize: precedence ----------
# prec DESC CLIENT_PEM EXPECTED_AUTHORIZED EXPECTED_ID: checks under root and under the proxy token
prec() {
    local desc=$1 pem=$2 want=$3 wid=$4
    authz_pem "$pem" "$DB"
    check "$desc (root)" "$(decision)" "$want,$wid"
    authz_pem "$pem" "$DB" "$PROXY"
    check "$desc (proxy token)" "$(decision)" "$want,$wid"
}
authz_pem "$WEB_PEM" "$DB"
check_status 200 "authorize with no intention answers 200"
check "  default deny" "$(jv '.data.authorized')" false
check "  the reason mentions the default" "$(yn contains "$(jv '.data.reason')" default)" yes
check "  no intention_id" "$(jv '.data.intention_id')" ""
authz_pem "$WEB_PEM" "$DB" "$PROXY"
check "the proxy token gets the same default deny" "$(decision)" "false,"

intention "$WEB" "$DB" allow "exact allow"
A=$IID
prec "exact allow web->db" "$WEB_PEM" true "$A"
check "  the reason names the intention" "$(yn contains "$(jv '.data.reason')" "$A")" yes
prec "db->db matches no intention: default deny" "$DB_PEM" false ""
intention "$WEB" "$DB" deny "exact deny"
D=$IID
prec "exact allow + exact deny: deny wins at equal precedence" "$WEB_PEM" false "$D"
clear_intentions

intention "$TD/ns/prod/*" "$DB" deny
D=$IID
intention "$WEB" "$DB" allow
A=$IID
prec "exact source allow beats a prefix source deny" "$WEB_PEM" true "$A"
prec "  the prefix deny still decides for db" "$DB_PEM" false "$D"
clear_intentions

intention "$WEB" "$TD/ns/prod/*" deny
D=$IID
intention "*" "$DB" allow
A=$IID
prec "an exact destination (source *) beats a prefix destination (exact source)" "$WEB_PEM" true "$A"
clear_intentions

intention "*" "$DB" deny
D=$IID
intention "$WEB" "$TD/ns/prod/*" allow
A=$IID
prec "an exact destination deny beats a prefix destination allow" "$WEB_PEM" false "$D"
clear_intentions

intention "$TD/ns/prod/*" "$DB" allow
A=$IID
intention "$TD/*" "$DB" deny
D=$IID
prec "the longer source prefix (allow) beats the shorter (deny)" "$WEB_PEM" true "$A"
clear_intentions

intention "$TD/ns/*" "$DB" deny
D=$IID
intention "$TD/*" "$DB" allow
A=$IID
prec "the longer source prefix (deny) beats the shorter (allow)" "$WEB_PEM" false "$D"
intention "*" "$DB" allow
prec "  and a * source allow does not change that" "$WEB_PEM" false "$D"
clear_intentions

intention "$TD/ns/prod/*" "$TD/ns/prod/*" allow
A=$IID
intention "$TD/ns/prod/*" "$TD/ns/prod/*" deny
D=$IID
prec "the same prefix pair allowed and denied: deny wins" "$WEB_PEM" false "$D"
clear_intentions

intention "$TD/ns/prod/*" "$TD/ns/prod/*" allow
A=$IID
intention "*" "$TD/*" deny
D=$IID
prec "a longer destination prefix beats a shorter one" "$WEB_PEM" true "$A"
clear_intentions

intention "$WEB" "*" allow
A=$IID
intention "*" "$TD/*" deny
D=$IID
prec "a prefix destination (source *) beats a * destination (exact source)" "$WEB_PEM" false "$D"
clear_intentions

intention "*" "*" allow
A=$IID
prec "* -> * allow" "$WEB_PEM" true "$A"
intention "*" "$DB" deny
D=$IID
prec "  an exact destination deny from * beats it" "$WEB_PEM" false "$D"
clear_intentions

intention "$TD/ns/prod/*" "$DB" allow
A=$IID
prec "a prefix source matches an ID below it" "$WEB_PEM" true "$A"
prec "  not an ID that only shares bytes (ns/production/web)" "$PRODX_PEM" false ""
intention "$TD/ns/prod/web/*" "$DB" deny
prec "  a prefix does not match the path itself (prod/web/* vs prod/web)" "$WEB_PEM" true "$A"
clear_intentions

intention "$WEB" "$TD/ns/prod/db/*" allow
A=$IID
prec "a destination prefix does not match the path itself (prod/db/* vs prod/db)" "$WEB_PEM" false ""
clear_intentions

# ---------- connect/authorize: repeated bodies ----------
# The server keeps the parse of a body it has seen (byte for byte), never an answer: the same
# bodies asked again follow every intention change, and two bodies asked in turn keep their own
# answers.
intention "$WEB" "$DB" allow
A=$IID
for i in 1 2 3; do
    authz_pem "$WEB_PEM" "$DB"
    check "repeat $i: web->db allowed" "$(decision)" "true,$A"
    authz_pem "$DB_PEM" "$DB"
    check "repeat $i: db->db denied by default" "$(decision)" "false,"
    authz_uri "$WEB" "$WEB_SERIAL" "$DB"
    check "repeat $i: web->db by URI and serial allowed" "$(decision)" "true,$A"
done
clear_intentions
authz_pem "$WEB_PEM" "$DB"
check "the same body once the allow is gone: denied" "$(decision)" "false,"
authz_uri "$WEB" "$WEB_SERIAL" "$DB"
check "the same URI body once the allow is gone: denied" "$(decision)" "false,"
intention "$WEB" "$DB" deny
D=$IID
authz_pem "$WEB_PEM" "$DB"
check "the same body under a new deny: denied by it" "$(decision)" "false,$D"
clear_intentions

# ---------- connect/authorize: identities and targets ----------
intention "$WEB" "$DB" allow
A=$IID
authz_uri "$WEB" "$WEB_SERIAL" "$DB"
check "client_cert_uri + client_cert_serial of web: allowed" "$(decision)" "true,$A"
authz_uri "$WEB" "$WEB_SERIAL" "$DB" "$PROXY"
check "  under the proxy token too" "$(decision)" "true,$A"
authz_uri "$WEB" "${WEB_SERIAL//:/-}" "$DB"
check "  the serial may be given with dashes" "$(decision)" "true,$A"
api POST connect/authorize "$(jq -nc --arg u "$WEB" --arg t "$DB" '{target:$t,client_cert_uri:$u}')"
check_status 400 "a URI without a serial is 400"
api POST connect/authorize "$(jq -nc --arg u "$WEB" --arg t "$DB" '{target:$t,client_cert_uri:$u,client_cert_serial:""}')"
check_status 400 "a URI with an empty serial is 400"
api POST connect/authorize "$(jq -nc --arg t "$DB" '{target:$t}')"
check_status 400 "no client identity is 400"
api POST connect/authorize "$(jq -nc --rawfile p "$WEB_PEM" '{client_cert_pem:$p}')"
check_status 400 "no target is 400"
api POST connect/authorize "$(jq -nc --rawfile p "$WEB_PEM" '{target:"spiffe://other.org/ns/prod/db",client_cert_pem:$p}')"
check_status 400 "a target of a foreign trust domain is 400"
api POST connect/authorize "$(jq -nc --rawfile p "$WEB_PEM" --arg u "$WEB" --arg s "$WEB_SERIAL" --arg t "$DB" \
    '{target:$t,client_cert_pem:$p,client_cert_uri:$u,client_cert_serial:$s}')"
check_status 400 "both a PEM and a URI + serial is 400"
authz_uri "$WEB" "01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10" "$DB"
check "a serial we never issued: not authorized" "$(decision)" "false,"
check "  the reason says it was not issued by this server" "$(yn contains "$(jv '.data.reason')" "was not issued by this server")" yes
authz_uri "$DB" "$WEB_SERIAL" "$DB"
check "a URI not matching the serial's record (db with web's serial): not authorized" "$(decision)" "false,"
check "  the reason says: not for that identity" "$(yn contains "$(jv '.data.reason')" "not issued by this server for that identity")" yes
authz_uri "$WEB" "$DB_SERIAL" "$DB"
check "  nor web with db's serial" "$(decision)" "false,"
api POST connect/authorize "$(jq -nc --arg t "$DB" '{target:$t,client_cert_pem:"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"}')"
check "a garbage PEM: 200 with authorized false" "$(decision)" "false,"

# targets the caller does not hold
authz_pem "$DB_PEM" "$WEB" "$PROXY"
check_status 403 "the proxy token asking about web (not held) is 403"
authz_uri "$WEB" "$WEB_SERIAL" "$PRODX" "$PROXY"
check_status 403 "  and about any other target"
authz_pem "$WEB_PEM" "$DB" "$WEB_TOK"
check_status 403 "web's own token may not ask about db"
authz_pem "$DB_PEM" "$WEB"
check "root (sudo) may ask about any target: db->web, no intention" "$(decision)" "false,"
authz_pem "$WEB_PEM" "$PRODX"
check "root may ask about a target nobody holds" "$(decision)" "false,"
authz_pem "$WEB_PEM" "$DB" "$PLAIN"
check_status 403 "a default-policy token without spiffe_ids gets 403"
authz_pem "$WEB_PEM" "$DB" "-"
check_status 403 "no token: 403"

# the expired SVID (ttl 1s)
while [ $((SECONDS - EXP_START)) -lt 2 ]; do sleep 0.2; done
sleep 1
authz_pem "$EXP_PEM" "$DB"
check "an expired SVID (PEM) is never authorized" "$(decision)" "false,"
check_match "  the reason says expired" "$(jv '.data.reason')" "expired"
authz_uri "$WEB" "$EXP_SERIAL" "$DB"
check "an expired SVID (URI + serial) is never authorized" "$(decision)" "false,"
check "  the reason says not valid at this time" "$(yn contains "$(jv '.data.reason')" "is not valid at this time")" yes

# revocation: the very next check
authz_pem "$WEB2_PEM" "$DB" "$PROXY"
check "a second web SVID is authorized before its revocation" "$(decision)" "true,$A"
api POST pki/revoke "{\"serial_number\":\"$WEB2_SERIAL\"}"
check_status 200 "revoke it"
authz_pem "$WEB2_PEM" "$DB" "$PROXY"
check "the revoked SVID (PEM) is refused at the very next check" "$(decision)" "false,"
check "  the reason says revoked" "$(yn contains "$(jv '.data.reason')" revoked)" yes
authz_uri "$WEB" "$WEB2_SERIAL" "$DB" "$PROXY"
check "the revoked SVID (URI + serial) is refused" "$(decision)" "false,"
authz_pem "$WEB_PEM" "$DB" "$PROXY"
check "web's other SVID is still authorized" "$(decision)" "true,$A"

# a foreign CA: an openssl CA and a clientAuth leaf naming web
FCA=$TMP/foreign-ca
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$FCA.key" -out "$FCA.pem" \
    -subj "/CN=Foreign CA" -days 2 -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$TMP/fleaf.key" \
    -subj "/CN=web" -out "$TMP/fleaf.csr" 2>/dev/null
cat >"$TMP/fleaf.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth,serverAuth
subjectAltName=critical,URI:$WEB
EOF
openssl x509 -req -in "$TMP/fleaf.csr" -CA "$FCA.pem" -CAkey "$FCA.key" -set_serial "0x$(tr -d : <<<"$WEB_SERIAL")" \
    -days 1 -sha256 -extfile "$TMP/fleaf.ext" -out "$TMP/fleaf.pem" 2>/dev/null
check "the foreign leaf carries web's URI" "$(openssl x509 -in "$TMP/fleaf.pem" -noout -ext subjectAltName 2>/dev/null | sed -n 's/^ *URI://p')" "$WEB"
check "  and verifies under its own CA" "$(openssl verify -CAfile "$FCA.pem" -purpose sslclient "$TMP/fleaf.pem" 2>&1)" "$TMP/fleaf.pem: OK"
authz_pem "$TMP/fleaf.pem" "$DB"
check "a foreign-CA certificate naming web (with web's serial) is never authorized" "$(decision)" "false,"
check "  the reason says unknown authority" "$(yn contains "$(jv '.data.reason')" "unknown authority")" yes
cat "$TMP/fleaf.pem" "$FCA.pem" >"$TMP/fchain.pem"
authz_pem "$TMP/fchain.pem" "$DB"
check "  not even with its CA appended" "$(decision)" "false,"

curl -s "$ADDR/v1/pki/ca/pem" >"$TMP/ca.pem"
cat "$WEB_PEM" "$TMP/ca.pem" >"$TMP/webchain.pem"
authz_pem "$TMP/webchain.pem" "$DB" "$PROXY"
check "web's SVID followed by our CA is authorized" "$(decision)" "true,$A"

# sudo granted by a policy (not root): any target; sudo is on the request path itself
api POST sys/policy/connect-sudo '{"policy":"{\"path\":{\"connect/authorize\":{\"capabilities\":[\"update\",\"sudo\"]},\"connect/ext-authz\":{\"capabilities\":[\"read\",\"update\",\"sudo\"]}}}"}'
check_status 204 "write a policy with sudo on connect/authorize and connect/ext-authz"
api POST auth/token/create '{"policies":["connect-sudo"],"no_default_policy":true}'
check_status 200 "a token with only that policy"
SUDO_TOK=$(jv '.auth.client_token')
authz_pem "$WEB_PEM" "$DB" "$SUDO_TOK"
check "a policy's sudo may ask about db without holding it" "$(decision)" "true,$A"
authz_pem "$DB_PEM" "$WEB" "$SUDO_TOK"
check "  and about web" "$(decision)" "false,"
ext GET "connect/ext-authz?target=$(jq -rn --arg t "$DB" '$t|@uri')" -H "X-Vault-Token: $SUDO_TOK" -H "X-Client-Cert: $(enc "$WEB_PEM")"
check "  ext-authz with it: 200" "$STATUS" 200
ext GET "connect/ext-authz/sub?target=$(jq -rn --arg t "$DB" '$t|@uri')" -H "X-Vault-Token: $SUDO_TOK" -H "X-Client-Cert: $(enc "$WEB_PEM")"
check "  but connect/ext-authz/sub is another path it has no capability on: 403" "$STATUS" 403

# a token that may read and list intentions but not write them
api POST sys/policy/intention-reader '{"policy":"{\"path\":{\"connect/intentions\":{\"capabilities\":[\"list\"]},\"connect/intentions/*\":{\"capabilities\":[\"read\"]}}}"}'
check_status 204 "write a read/list-only intentions policy"
api POST auth/token/create '{"policies":["intention-reader"]}'
READER=$(jv '.auth.client_token')
api LIST connect/intentions "" "$READER"
check_status 200 "the reader may LIST intentions"
api GET "connect/intentions/$A" "" "$READER"
check_status 200 "  and read one"
api POST connect/intentions "{\"source\":\"*\",\"destination\":\"*\",\"action\":\"allow\"}" "$READER"
check_status 403 "  but not create one"
api POST "connect/intentions/$A" '{"action":"deny"}' "$READER"
check_status 403 "  nor update one"
api DELETE "connect/intentions/$A" "" "$READER"
check_status 403 "  nor delete one"
check "  the intention is untouched" "$(intention_count)" 1

# an intention change: the very next check
authz_pem "$WEB_PEM" "$DB"
check "allowed before the allow is deleted" "$(decision)" "true,$A"
api DELETE "connect/intentions/$A"
check_status 204 "delete the allow"
authz_pem "$WEB_PEM" "$DB" "$PROXY"
check "the very next check is the default deny" "$(decision)" "false,"
intention "$WEB" "$DB" allow
A=$IID
authz_pem "$WEB_PEM" "$DB" "$PROXY"
check "a new allow is honoured by the very next check" "$(decision)" "true,$A"
api POST "connect/intentions/$A" '{"action":"deny"}'
authz_pem "$WEB_PEM" "$DB" "$PROXY"
check "an update to deny is honoured by the very next check" "$(decision)" "false,$A"
api POST "connect/intentions/$A" '{"action":"allow"}'
authz_pem "$WEB_PEM" "$DB" "$PROXY"
check "  and back to allow" "$(decision)" "true,$A"

# ---------- connect/ext-authz ----------
WEB_ENC=$(enc "$WEB_PEM")
DB_ENC=$(enc "$DB_PEM")
WEB3_ENC=$(enc "$WEB3_PEM")
TQ="target=$(jq -rn --arg t "$DB" '$t|@uri')"
XFCC_WEB="By=$DB;Hash=abc;Cert=\"$WEB_ENC\";URI=$WEB"
H_PROXY=(-H "X-Vault-Token: $PROXY")

for path in connect/ext-authz connect/ext-authz/some/path; do
    ext GET "$path?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $WEB_ENC"
    check "$path: X-Client-Cert web, ?target=db: 200" "$STATUS" 200
    check "  X-Authsvc-Spiffe-Id is web" "$XID" "$WEB"
    check "  data.spiffe_id is web" "$(jv '.data.spiffe_id')" "$WEB"
    ext GET "$path" "${H_PROXY[@]}" -H "X-Authsvc-Target: $DB" -H "X-Client-Cert: $WEB_ENC"
    check "$path: target from X-Authsvc-Target: 200" "$STATUS" 200
    check "  X-Authsvc-Spiffe-Id is web" "$XID" "$WEB"
    ext GET "$path?$TQ" "${H_PROXY[@]}" -H "X-Forwarded-Client-Cert: $XFCC_WEB"
    check "$path: X-Forwarded-Client-Cert with web's cert: 200" "$STATUS" 200
    check "  X-Authsvc-Spiffe-Id is web" "$XID" "$WEB"
    ext GET "$path?$TQ" "${H_PROXY[@]}" -H "X-Authsvc-Subject-Token: $WEB_TOK"
    check "$path: X-Authsvc-Subject-Token of web: 200" "$STATUS" 200
    check "  X-Authsvc-Spiffe-Id is web" "$XID" "$WEB"
    ext GET "$path?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $DB_ENC"
    check "$path: db (no intention) is denied: 403" "$STATUS" 403
    check "  no X-Authsvc-Spiffe-Id" "$XID" ""
    check "  the error mentions the default" "$(yn contains "$(jv '.errors[0]')" default)" yes
    ext GET "$path?$TQ" "${H_PROXY[@]}"
    check "$path: none of the identity headers: 403" "$STATUS" 403
    ext GET "$path?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $WEB_ENC" -H "X-Authsvc-Subject-Token: $WEB_TOK"
    check "$path: X-Client-Cert + subject token: 403" "$STATUS" 403
    check "  no X-Authsvc-Spiffe-Id" "$XID" ""
    ext GET "$path?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $WEB_ENC" -H "X-Forwarded-Client-Cert: $XFCC_WEB"
    check "$path: X-Client-Cert + XFCC: 403" "$STATUS" 403
    ext GET "$path?$TQ" "${H_PROXY[@]}" -H "X-Forwarded-Client-Cert: $XFCC_WEB" -H "X-Authsvc-Subject-Token: $WEB_TOK"
    check "$path: XFCC + subject token: 403" "$STATUS" 403
    ext GET "$path?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $WEB_ENC" -H "X-Forwarded-Client-Cert: $XFCC_WEB" \
        -H "X-Authsvc-Subject-Token: $WEB_TOK"
    check "$path: all three: 403" "$STATUS" 403
    # every method alike
    for m in GET POST PUT DELETE PATCH HEAD OPTIONS LIST; do
        extra=()
        case $m in POST | PUT | PATCH) extra=(--data-binary hello -H "Content-Type: text/plain") ;; esac
        ext "$m" "$path?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $WEB_ENC" "${extra[@]}"
        check "$path: $m allowed: 200" "$STATUS" 200
        check "  $m: X-Authsvc-Spiffe-Id is web" "$XID" "$WEB"
        ext "$m" "$path?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $DB_ENC" "${extra[@]}"
        check "$path: $m denied: 403" "$STATUS" 403
        check "  $m denied: no X-Authsvc-Spiffe-Id" "$XID" ""
        ext "$m" "$path" "${H_PROXY[@]}" -H "X-Authsvc-Target: $DB" -H "X-Authsvc-Subject-Token: $WEB_TOK" "${extra[@]}"
        check "$path: $m with X-Authsvc-Target + subject token: 200" "$STATUS" 200
    done
done

ext GET connect/ext-authz/some/path "${H_PROXY[@]}" -H "X-Authsvc-Target: $DB" \
    -H "X-Client-Cert: $WEB_ENC" --data-binary '{"target":"x","bogus":' -X POST
check "a POST body that is broken JSON is not parsed (200)" "$STATUS" 200
ext GET "connect/ext-authz?$TQ" -H "X-Client-Cert: $WEB_ENC"
check "ext-authz without a token: 403" "$STATUS" 403
ext GET "connect/ext-authz?$TQ" -H "X-Vault-Token: ast.nope" -H "X-Client-Cert: $WEB_ENC"
check "ext-authz with an invalid token: 403" "$STATUS" 403
ext GET "connect/ext-authz?$TQ" -H "Authorization: Bearer $PROXY" -H "X-Client-Cert: $WEB_ENC"
check "ext-authz with the proxy token as a Bearer: 200" "$STATUS" 200
ext GET connect/ext-authz "${H_PROXY[@]}" -H "X-Client-Cert: $WEB_ENC"
check "no target: 403" "$STATUS" 403
ext GET "connect/ext-authz?target=$(jq -rn --arg t "$WEB" '$t|@uri')" "${H_PROXY[@]}" -H "X-Client-Cert: $DB_ENC"
check "the proxy token asking about web (not held): 403" "$STATUS" 403
ext GET "connect/ext-authz?target=spiffe%3A%2F%2Fother.org%2Fns%2Fprod%2Fdb" "${H_PROXY[@]}" -H "X-Client-Cert: $WEB_ENC"
check "a foreign-trust-domain target: 403" "$STATUS" 403
ext GET "connect/ext-authz?$TQ" -H "X-Vault-Token: $ROOT_TOKEN" -H "X-Client-Cert: $WEB_ENC"
check "root (sudo) may ask about db: 200" "$STATUS" 200
check "  X-Authsvc-Spiffe-Id is web" "$XID" "$WEB"
ext GET "connect/ext-authz/x/y?$TQ" -H "X-Vault-Token: $ROOT_TOKEN" -H "X-Client-Cert: $WEB_ENC"
check "  on a sub-path too: 200" "$STATUS" 200
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Forwarded-Client-Cert: By=$DB;Hash=abc;URI=$WEB"
check "an XFCC without Cert= is 403 (URI= alone is not trusted)" "$STATUS" 403
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Forwarded-Client-Cert: By=$DB;Hash=abc;Cert=\"$DB_ENC\";URI=$WEB"
check "an XFCC whose URI= says web but whose Cert= is db's: judged as db (403)" "$STATUS" 403
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Forwarded-Client-Cert: By=$DB;Cert=\"$DB_ENC\",By=$DB;Hash=abc;Cert=\"$WEB_ENC\";URI=$WEB"
check "an XFCC with two elements: the last (web) decides: 200" "$STATUS" 200
check "  X-Authsvc-Spiffe-Id is web" "$XID" "$WEB"
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $(enc "$TMP/fleaf.pem")"
check "a foreign-CA certificate in X-Client-Cert: 403" "$STATUS" 403
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $(enc "$EXP_PEM")"
check "an expired SVID in X-Client-Cert: 403" "$STATUS" 403
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $(enc "$WEB2_PEM")"
check "a revoked SVID in X-Client-Cert: 403" "$STATUS" 403
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: not%20a%20certificate"
check "garbage in X-Client-Cert: 403" "$STATUS" 403
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: %zz"
check "bad URL encoding in X-Client-Cert: 403" "$STATUS" 403

# subject tokens
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Authsvc-Subject-Token: $PLAIN"
check "a subject token holding no SPIFFE ID: 403" "$STATUS" 403
api POST auth/token/create "{\"spiffe_ids\":[\"$WEB\",\"$PRODX\"],\"policies\":[\"default\"]}"
TWO=$(jv '.auth.client_token')
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Authsvc-Subject-Token: $TWO"
check "a subject token holding two SPIFFE IDs: 403" "$STATUS" 403
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Authsvc-Subject-Token: ast.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
check "an unknown subject token: 403" "$STATUS" 403
api POST auth/token/create "{\"spiffe_ids\":[\"$WEB\"],\"policies\":[\"default\"]}"
SUBJ=$(jv '.auth.client_token')
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Authsvc-Subject-Token: $SUBJ"
check "a second web workload token as subject: 200" "$STATUS" 200
api POST auth/token/revoke "$(jq -nc --arg t "$SUBJ" '{token:$t}')"
check_status 204 "revoke that workload token"
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Authsvc-Subject-Token: $SUBJ"
check "the revoked subject token: 403 at the next call" "$STATUS" 403
check "  no X-Authsvc-Spiffe-Id" "$XID" ""

# revocation of the client SVID: the next call
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $WEB3_ENC"
check "a third web SVID: 200 before its revocation" "$STATUS" 200
ext POST "connect/ext-authz/some/path" "${H_PROXY[@]}" -H "X-Authsvc-Target: $DB" \
    -H "X-Forwarded-Client-Cert: By=$DB;Cert=\"$WEB3_ENC\";URI=$WEB" --data-binary hello
check "  (and through XFCC)" "$STATUS" 200
api POST pki/revoke "{\"serial_number\":\"$WEB3_SERIAL\"}"
check_status 200 "revoke the third web SVID"
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $WEB3_ENC"
check "the revoked SVID via X-Client-Cert: 403 at the very next call" "$STATUS" 403
ext POST "connect/ext-authz/some/path" "${H_PROXY[@]}" -H "X-Authsvc-Target: $DB" \
    -H "X-Forwarded-Client-Cert: By=$DB;Cert=\"$WEB3_ENC\";URI=$WEB" --data-binary hello
check "  and via XFCC: 403" "$STATUS" 403
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $WEB_ENC"
check "web's first SVID still passes" "$STATUS" 200

# an intention change reaches ext-authz by the very next call
api DELETE "connect/intentions/$A"
check_status 204 "delete the web->db allow"
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $WEB_ENC"
check "ext-authz after the delete: 403 at the very next call" "$STATUS" 403
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Authsvc-Subject-Token: $WEB_TOK"
check "  for the subject token too" "$STATUS" 403
intention "$TD/ns/prod/*" "$DB" allow
A=$IID
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $DB_ENC"
check "a prefix allow ns/prod/* -> db now lets db in: 200" "$STATUS" 200
check "  X-Authsvc-Spiffe-Id is db" "$XID" "$DB"
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $(enc "$PRODX_PEM")"
check "  but not ns/production/web: 403" "$STATUS" 403

# ---------- restart with connect.default_action allow ----------
api LIST connect/intentions
BEFORE=$(jv '.data.key_info|tojson')
stop_server
echo '{"connect":{"default_action":"allow"}}' >"$TMP/allow.json"
start_server --config "$TMP/allow.json"
api LIST connect/intentions
check "the intentions survive a restart" "$(jv '.data.key_info|tojson')" "$BEFORE"
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $DB_ENC"
check "after the restart the prefix allow still lets db in" "$STATUS" 200
clear_intentions
authz_pem "$DB_PEM" "$DB" "$PROXY"
check "default_action allow: no match is authorized" "$(decision)" "true,"
check "  the reason names the default" "$(yn contains "$(jv '.data.reason')" "default action is allow")" yes
ext PATCH "connect/ext-authz/a?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $DB_ENC"
check "  ext-authz: 200" "$STATUS" 200
check "  X-Authsvc-Spiffe-Id is db" "$XID" "$DB"
intention "$WEB" "$DB" deny
D=$IID
authz_pem "$WEB_PEM" "$DB" "$PROXY"
check "default allow: an explicit deny still denies" "$(decision)" "false,$D"
authz_pem "$WEB2_PEM" "$DB" "$PROXY"
check "default allow: a revoked SVID is never authorized" "$(decision)" "false,"
authz_uri "$DB" "$WEB3_SERIAL" "$DB" "$PROXY"
check "default allow: another's serial is never authorized" "$(decision)" "false,"
authz_uri "$DB" "01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10" "$DB" "$PROXY"
check "default allow: a never-issued serial is never authorized" "$(decision)" "false,"
authz_pem "$EXP_PEM" "$DB" "$PROXY"
check "default allow: an expired SVID is never authorized" "$(decision)" "false,"
authz_pem "$TMP/fleaf.pem" "$DB" "$PROXY"
check "default allow: a foreign-CA certificate is never authorized" "$(decision)" "false,"
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $(enc "$TMP/fleaf.pem")"
check "default allow: ext-authz refuses the foreign certificate" "$STATUS" 403
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $WEB3_ENC"
check "default allow: ext-authz refuses the revoked SVID" "$STATUS" 403
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Authsvc-Subject-Token: $SUBJ"
check "default allow: ext-authz refuses the revoked subject token" "$STATUS" 403
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}"
check "default allow: no identity header is still 403" "$STATUS" 403
ext GET "connect/ext-authz?$TQ" "${H_PROXY[@]}" -H "X-Client-Cert: $DB_ENC" -H "X-Authsvc-Subject-Token: $WEB_TOK"
check "default allow: two identity headers are still 403" "$STATUS" 403

stop_server
finish
