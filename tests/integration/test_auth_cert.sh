#!/usr/bin/env bash
# test_auth_cert.sh: the cert auth method end to end (SPEC §3 auth/:cert/certs/:name and
# auth/:cert/login, §5): a role trusting authsvc's own bundle turns an X.509-SVID presented as
# the TLS client certificate into a token for that SVID's ID (curl --cert against the HTTPS
# listener); revoking that SVID revokes the login token and what it obtained (CRL); refusals
# with Vault's texts and no token created (no certificate, revoked, expired, foreign CA,
# serverAuth only, URI SAN outside allowed_uri_sans, plain HTTP); a role trusting a foreign CA
# with {{cert:cn}}; a pinned leaf; role write refusals; logins across a CA rotation; authctl
# login -method=cert. Part 2: the same under an upstream CA (root anchor, our CAs intermediates).
set -euo pipefail
# shellcheck source=lib.sh
source "$AUTHSVC_SRC/tests/integration/lib.sh"

jv() { jq -r "$1" <<<"$BODY" 2>/dev/null || echo "<not json>"; }
yn() { if "$@"; then echo yes; else echo no; fi; }
contains() { [[ "$1" == *"$2"* ]]; }
# hexnorm SERIAL: upper-case hex without colons or leading zeros (how openssl prints serials)
hexnorm() { tr -d ':-' <<<"$1" | tr a-f A-F | sed 's/^0*//;s/^$/0/'; }
# crl_serials FILE: the serials of every CRL in a PEM file of concatenated CRLs
crl_serials() {
    local f
    rm -f "$TMP"/crlsplit.*
    awk -v d="$TMP" '/BEGIN X509 CRL/ { n++ } n { print > (d "/crlsplit." n) }' "$1"
    for f in "$TMP"/crlsplit.*; do
        if [ -e "$f" ]; then
            openssl crl -in "$f" -noout -text 2>/dev/null | sed -n 's/^ *Serial Number: *//p' |
                while read -r s; do hexnorm "$s"; done
        fi
    done
}
in_crls() { crl_serials "$2" | grep -x "$(hexnorm "$1")" >/dev/null; }
issuer_of() { openssl x509 -in "$1" -noout -issuer; }

export HOME="$TMP/home"
mkdir -p "$HOME"
unset AUTHSVC_TOKEN AUTHSVC_CACERT

start_server
WL_ID=spiffe://example.org/ns/prod/sa/web

fetch_bundle() { curl -s "$ADDR/v1/pki/bundle/pem" >"$TMP/bundle.pem"; }
fetch_bundle

# tls CERT KEY METHOD PATH [BODY] [TOKEN]: a request on the HTTPS listener (as localhost, verified
# against the bundle), with CERT/KEY as the client certificate ("" for none); sets STATUS, BODY.
tls() {
    local cert=$1 key=$2 method=$3 path=$4 body=${5-} token=${6-}
    LAST_REQ="$method $path (TLS)"
    local args=(-s -o "$TMP/body" -w '%{http_code}' --cacert "$TMP/bundle.pem"
        --resolve "localhost:$TLS_PORT:127.0.0.1" -X "$method")
    if [ -n "$cert" ]; then args+=(--cert "$cert" --key "$key"); fi
    if [ -n "$token" ]; then args+=(-H "X-Vault-Token: $token"); fi
    if [ -n "$body" ]; then args+=(-H 'Content-Type: application/json' --data-binary "$body"); fi
    STATUS=$(curl "${args[@]}" "https://localhost:$TLS_PORT/v1/$path") || STATUS=000
    BODY=$(cat "$TMP/body" 2>/dev/null || true)
}
# login CERT KEY [BODY]: POST auth/cert/login with that client certificate
login() { tls "$1" "$2" POST auth/cert/login "${3-}"; }
# accessors: how many tokens exist (LIST auth/token/accessors)
accessors() {
    api LIST auth/token/accessors
    jv '.data.keys|length'
}
# refused DESC STATUS TEXT: the last login failed with STATUS, an error containing TEXT, no auth
# block, and the token count is still $N0.
refused() {
    check_status "$2" "$1: status"
    check "$1: error text" "$(yn contains "$(jv '.errors[0]')" "$3")" yes
    if ! contains "$(jv '.errors[0]')" "$3"; then echo "  error: $(jv '.errors[0]')" >&2; fi
    check "$1: no auth block" "$(jv '.auth')" null
    check "$1: no token created" "$(accessors)" "$N0"
}
# svid NAME TOKEN [BODY]: svid/x509 with a server-generated key into NAME.pem / NAME.key
svid() {
    api POST svid/x509 "${3:-{\}}" "$2"
    check_status 200 "svid/x509 for $1"
    jv '.data.certificate' >"$TMP/$1.pem"
    jv '.data.private_key' >"$TMP/$1.key"
    chmod 600 "$TMP/$1.key"
}
role_body() { jq -nc --rawfile c "$1" "{certificate:\$c} + ${2:-{\}}"; }

# ---- mount and role ----
api POST sys/auth/cert '{"type":"cert"}'
check_status 204 "enable a cert mount"
api POST auth/cert/certs/svid '{"trust_own_bundle":true,
  "allowed_uri_sans":["spiffe://example.org/*"], "spiffe_id_template":"{{cert:uri}}",
  "token_policies":"default","display_name":"workload"}'
check_status 204 "role svid: trust_own_bundle, {{cert:uri}}"
api GET auth/cert/certs/svid
check_status 200 "read role svid"
check "role: trust_own_bundle" "$(jv '.data.trust_own_bundle')" true
check "role: certificate empty" "$(jv '.data.certificate')" ""
check "role: allowed_uri_sans" "$(jv '.data.allowed_uri_sans|join(",")')" "spiffe://example.org/*"
check "role: token_policies normalized to a list" "$(jv '.data.token_policies|join(",")')" default
check "role: template" "$(jv '.data.spiffe_id_template')" "{{cert:uri}}"
api LIST auth/cert/certs
check "LIST certs" "$(jv '.data.keys|join(",")')" svid

# ---- a workload token, its SVID, and a login with it ----
api POST auth/token/create "{\"spiffe_ids\":[\"$WL_ID\"],\"policies\":[\"default\"]}"
check_status 200 "root creates the workload token"
WTOK=$(jv '.auth.client_token')
svid svid1 "$WTOK"
S1=$(jv '.data.serial_number')

N0=$(accessors)
login "$TMP/svid1.pem" "$TMP/svid1.key"
check_status 200 "login with the SVID as the TLS client certificate"
LTOK=$(jv '.auth.client_token')
check "login: policies" "$(jv '.auth.policies|join(",")')" default
check "login: meta.role" "$(jv '.auth.metadata.role')" svid
check "login: meta.cert_serial" "$(jv '.auth.metadata.cert_serial')" "$S1"
check "login: meta.subject is the URI SAN (an SVID has no CN)" "$(jv '.auth.metadata.subject')" \
    "$WL_ID"
check "login: renewable orphan" "$(jv '.auth.renewable'),$(jv '.auth.orphan')" "true,true"
check "login: default ttl 1h" "$(jv '.auth.lease_duration')" 3600
check "login created one token" "$(accessors)" $((N0 + 1))
api GET auth/token/lookup-self "" "$LTOK"
check_status 200 "lookup-self of the login token"
check "lookup: spiffe_ids = the SVID's ID" "$(jv '.data.spiffe_ids|join(",")')" "$WL_ID"
check "lookup: meta.cert_serial" "$(jv '.data.meta.cert_serial')" "$S1"
check "lookup: display_name" "$(jv '.data.display_name')" "cert-workload"
check "lookup: path" "$(jv '.data.path')" "auth/cert/login"
check "lookup: orphan" "$(jv '.data.orphan')" true
# Login by name, and over the same TLS connection style with the token in the header too.
login "$TMP/svid1.pem" "$TMP/svid1.key" '{"name":"SVID"}'
check_status 200 "login naming the role (case-insensitive)"
LTOK_B=$(jv '.auth.client_token')
login "$TMP/svid1.pem" "$TMP/svid1.key" '{"name":"nope"}'
check_status 400 "login naming an unknown role"
check "unknown role text" "$(jv '.errors[0]')" 'role "nope" could not be found'

# The login token gets an SVID of its own.
svid svid2 "$LTOK"
S2=$(jv '.data.serial_number')
check "the login token's SVID carries the same ID" "$(jv '.data.spiffe_id')" "$WL_ID"
api POST svid/x509 '{"spiffe_id":"spiffe://example.org/ns/prod/sa/other"}' "$LTOK"
check_status 403 "the login token cannot get another ID"

# ---- revoking the SVID revokes the login tokens and what they obtained ----
api POST pki/revoke "{\"serial_number\":\"$S1\"}"
check_status 200 "revoke the SVID used for the login"
api GET auth/token/lookup-self "" "$LTOK"
check_status 403 "the login token is revoked with its certificate"
api GET auth/token/lookup-self "" "$LTOK_B"
check_status 403 "the second login token too"
api GET auth/token/lookup-self "" "$WTOK"
check_status 200 "the token that obtained the SVID is untouched"
curl -s "$ADDR/v1/pki/crl/pem" >"$TMP/crl.pem"
check "the revoked SVID is in the CRL" "$(yn in_crls "$S1" "$TMP/crl.pem")" yes
check "the SVID the login token obtained is in the CRL" "$(yn in_crls "$S2" "$TMP/crl.pem")" yes
api GET "pki/cert/$S2"
check "pki/cert shows the obtained SVID revoked" \
    "$(yn [ "$(jv '.data.revocation_time')" -gt 0 ])" yes

# ---- refusals: Vault's texts, no token created ----
N0=$(accessors)
login "" ""
refused "no client certificate" 400 "client certificate must be supplied"
login "$TMP/svid1.pem" "$TMP/svid1.key"
refused "a revoked SVID" 400 "client certificate has been revoked"
login "$TMP/svid2.pem" "$TMP/svid2.key"
refused "an SVID revoked in cascade" 400 "client certificate has been revoked"

svid short "$WTOK" '{"ttl":"1s"}'
sleep 2.5
login "$TMP/short.pem" "$TMP/short.key"
refused "an expired SVID" 400 "failed to verify client's certificate: x509: certificate has expired"

# A foreign CA (self-signed, CA:TRUE) and a clientAuth leaf of it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$TMP/fca.key" \
    -out "$TMP/fca.pem" -subj "/CN=Foreign Test CA" -days 2 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
# leaf NAME CA EKU [SAN]: a P-256 leaf CN=NAME signed by CA.pem/CA.key with that extKeyUsage
leaf() {
    local name=$1 ca=$2 eku=$3 san=${4-}
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$TMP/$name.key" \
        -out "$TMP/$name.csr" -subj "/CN=$name" 2>/dev/null
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature"
        echo "extendedKeyUsage=$eku"
        echo "subjectKeyIdentifier=hash"
        echo "authorityKeyIdentifier=keyid"
        if [ -n "$san" ]; then echo "subjectAltName=$san"; fi
    } >"$TMP/$name.ext"
    openssl x509 -req -in "$TMP/$name.csr" -CA "$TMP/$ca.pem" -CAkey "$TMP/$ca.key" \
        -set_serial "0x$(openssl rand -hex 12)" -days 1 -sha256 -extfile "$TMP/$name.ext" \
        -out "$TMP/$name.pem" 2>/dev/null
}
leaf foreign-client fca clientAuth "URI:spiffe://example.org/ns/prod/sa/web"
login "$TMP/foreign-client.pem" "$TMP/foreign-client.key"
refused "a foreign-CA certificate (even naming our ID)" 400 \
    "invalid certificate or no client certificate supplied"
# A self-signed client certificate with our SVID's subject and ID is just as foreign.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$TMP/selfsig.key" \
    -out "$TMP/selfsig.pem" -subj "/CN=selfsig" -days 1 \
    -addext "extendedKeyUsage=clientAuth" -addext "subjectAltName=URI:$WL_ID" 2>/dev/null
login "$TMP/selfsig.pem" "$TMP/selfsig.key"
refused "a self-signed certificate" 400 "invalid certificate or no client certificate supplied"

# A partner CA given as a role's certificate; its serverAuth-only leaf is no client certificate.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$TMP/pca.key" \
    -out "$TMP/pca.pem" -subj "/CN=Partner Test CA" -days 2 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
api POST auth/cert/certs/partner "$(role_body "$TMP/pca.pem" '{token_policies:["default"]}')"
check_status 204 "role partner trusting a partner CA"
leaf partner-server pca serverAuth
N0=$(accessors)
login "$TMP/partner-server.pem" "$TMP/partner-server.key" '{"name":"partner"}'
refused "a serverAuth-only certificate" 400 "incompatible key usage"
login "$TMP/partner-server.pem" "$TMP/partner-server.key"
refused "a serverAuth-only certificate, every role tried" 400 "incompatible key usage"
leaf partner-client pca clientAuth
login "$TMP/partner-client.pem" "$TMP/partner-client.key" '{"name":"svid"}'
refused "a partner certificate on the svid role" 400 \
    "invalid certificate or no client certificate supplied"

# An SVID of ours whose URI SAN is outside a role's allowed_uri_sans.
api POST auth/cert/certs/narrow '{"trust_own_bundle":true,
  "allowed_uri_sans":"spiffe://example.org/ns/dev/*", "spiffe_id_template":"{{cert:uri}}"}'
check_status 204 "role narrow (allowed_uri_sans as a comma string)"
svid svid3 "$WTOK"
N0=$(accessors)
login "$TMP/svid3.pem" "$TMP/svid3.key" '{"name":"narrow"}'
refused "a URI SAN outside allowed_uri_sans" 400 \
    "no chain matching all constraints could be found for this login certificate"
api POST auth/cert/certs/cn-bound '{"trust_own_bundle":true,"allowed_common_names":["admin-*"]}'
check_status 204 "role cn-bound"
login "$TMP/svid3.pem" "$TMP/svid3.key" '{"name":"cn-bound"}'
refused "a certificate without the allowed common name" 400 "no chain matching all constraints"

# Plain HTTP: no TLS, so no certificate can be there.
api POST auth/cert/login '{}' -
refused "login over plain HTTP" 400 "tls connection required"
api POST auth/cert/login '{"name":"svid"}' -
refused "login over plain HTTP naming a role" 400 "client certificate must be supplied over TLS"

# A role with CIDRs that exclude us: 403.
api POST auth/cert/certs/svid-cidr '{"trust_own_bundle":true,"token_bound_cidrs":["10.0.0.0/8"]}'
check_status 204 "role with token_bound_cidrs"
login "$TMP/svid3.pem" "$TMP/svid3.key" '{"name":"svid-cidr"}'
refused "a role bound to other addresses" 403 "permission denied"
# A role bound to us: the token it gives is bound too, and refused from another address of the
# same loopback (127.0.0.2), as Vault binds a role's token_bound_cidrs to its tokens.
api POST auth/cert/certs/svid-here '{"trust_own_bundle":true,"token_bound_cidrs":["127.0.0.1/32"]}'
check_status 204 "role bound to 127.0.0.1/32"
login "$TMP/svid3.pem" "$TMP/svid3.key" '{"name":"svid-here"}'
check_status 200 "login from 127.0.0.1 on it"
HTOK=$(jv '.auth.client_token')
api GET auth/token/lookup-self "" "$HTOK"
check "  its token works from 127.0.0.1" "$STATUS" 200
check "  and shows its networks" "$(jv '.data.bound_cidrs|join(",")')" "127.0.0.1/32"
check "  its token from 127.0.0.2: 403" "$(curl -s -o "$TMP/body" -w '%{http_code}' \
    --interface 127.0.0.2 -H "X-Vault-Token: $HTOK" "$ADDR/v1/auth/token/lookup-self")" 403
api POST auth/token/revoke-self "" "$HTOK"
check_status 204 "  revoked"

# ---- a role trusting the foreign CA, with {{cert:cn}} ----
api POST auth/cert/certs/foreign "$(role_body "$TMP/fca.pem" \
    '{spiffe_id_template:"spiffe://{{trust_domain}}/ext/{{cert:cn}}",token_policies:"default",
      allowed_common_names:["foreign-*"],allowed_dns_names:["*.ext.example.org"]}')"
check_status 204 "role foreign with {{cert:cn}}"
api GET auth/cert/certs/foreign
check "the role keeps the CA PEM" "$(jv '.data.certificate' | openssl x509 -noout -subject)" \
    "subject=CN = Foreign Test CA"
N0=$(accessors)
login "$TMP/foreign-client.pem" "$TMP/foreign-client.key"
check_status 200 "the foreign leaf logs in (roles tried in name order)"
FTOK=$(jv '.auth.client_token')
check "foreign login: meta.role" "$(jv '.auth.metadata.role')" foreign
check "foreign login: meta.subject is the CN" "$(jv '.auth.metadata.subject')" foreign-client
check "foreign login: one token" "$(accessors)" $((N0 + 1))
api GET auth/token/lookup-self "" "$FTOK"
check "foreign lookup: {{cert:cn}} expanded" "$(jv '.data.spiffe_ids|join(",")')" \
    "spiffe://example.org/ext/foreign-client"
check "foreign lookup: allowed_dns_names" "$(jv '.data.allowed_dns_names|join(",")')" \
    "*.ext.example.org"
check "foreign lookup: display_name defaults to the role name" "$(jv '.data.display_name')" \
    "cert-foreign"
svid fsvid "$FTOK" '{"dns_names":["a.ext.example.org"]}'
check "the foreign login's SVID" "$(jv '.data.spiffe_id')" "spiffe://example.org/ext/foreign-client"
# More than 8 certificates in the presented chain: refused before any is parsed.
cat "$TMP/foreign-client.pem" "$TMP/fca.pem" "$TMP/fca.pem" "$TMP/fca.pem" "$TMP/fca.pem" \
    "$TMP/fca.pem" "$TMP/fca.pem" "$TMP/fca.pem" "$TMP/fca.pem" >"$TMP/chain9.pem"
N0=$(accessors)
login "$TMP/chain9.pem" "$TMP/foreign-client.key"
refused "a chain of 9 certificates" 400 "at most 8 are accepted"
# A CN the template cannot use (a '.' is fine, a space is not a path segment).
leaf "bad name" fca clientAuth
N0=$(accessors)
api POST auth/cert/certs/foreign-any "$(role_body "$TMP/fca.pem" \
    '{spiffe_id_template:"spiffe://{{trust_domain}}/ext/{{cert:cn}}"}')"
check_status 204 "role foreign-any"
login "$TMP/bad name.pem" "$TMP/bad name.key" '{"name":"foreign-any"}'
refused "a CN that is no SPIFFE path segment" 400 "error expanding spiffe_id_template"

# ---- a pinned leaf ----
api POST auth/cert/certs/pinned \
    "$(role_body "$TMP/partner-client.pem" '{token_policies:"default"}')"
check_status 204 "role pinned to one leaf"
login "$TMP/partner-client.pem" "$TMP/partner-client.key" '{"name":"pinned"}'
check_status 200 "the pinned leaf logs in"
check "pinned: meta.subject" "$(jv '.auth.metadata.subject')" partner-client
leaf partner-client2 pca clientAuth
N0=$(accessors)
login "$TMP/partner-client2.pem" "$TMP/partner-client2.key" '{"name":"pinned"}'
refused "another leaf of the same CA on the pinned role" 400 \
    "invalid certificate or no client certificate supplied"
api POST auth/cert/certs/pinned-srv "$(role_body "$TMP/partner-server.pem")"
check_status 400 "a pinned serverAuth-only leaf is refused at write"
check "pinned serverAuth text" "$(jv '.errors[0]')" \
    "nonCA certificates should have TLS client authentication set as an extended key usage"

# ---- role write refusals ----
api POST auth/cert/certs/bad '{"trust_own_bundle":true,"spiffe_id_template":"{{cert:uri}}"}'
check_status 400 "{{cert:uri}} without allowed_uri_sans"
check "{{cert:uri}} text" \
    "$(yn contains "$(jv '.errors[0]')" "requires a non-empty allowed_uri_sans")" yes
api POST auth/cert/certs/bad "$(role_body "$TMP/fca.pem" '{trust_own_bundle:true}')"
check_status 400 "both certificate and trust_own_bundle"
check "both: text" "$(yn contains "$(jv '.errors[0]')" "exactly one of")" yes
api POST auth/cert/certs/bad '{"token_policies":"default"}'
check_status 400 "neither certificate nor trust_own_bundle"
check "neither: text" "$(yn contains "$(jv '.errors[0]')" "exactly one of")" yes
api POST auth/cert/certs/bad \
    '{"trust_own_bundle":true,"spiffe_id_template":"spiffe://{{trust_domain}}/{{claim:sub}}"}'
check_status 400 "a claim placeholder in a cert role"
check "claim placeholder: text" "$(yn contains "$(jv '.errors[0]')" "jwt")" yes
api POST auth/cert/certs/bad \
    '{"certificate":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}'
check_status 400 "a PEM that does not parse"
check "bad PEM: Vault's text" \
    "$(yn contains "$(jv '.errors[0]')" "failed to parse certificate")" yes
api POST auth/cert/certs/bad '{"trust_own_bundle":true,"allowed_names":["x"]}'
check_status 400 "allowed_names (not implemented) is refused, not ignored"
api POST auth/cert/certs/bad '{"trust_own_bundle":true,"token_ttl":"2h","token_max_ttl":"1h"}'
check_status 400 "token_ttl over token_max_ttl"
api GET auth/cert/certs/bad
check_status 404 "no refused role was stored"
api POST auth/cert/role/svid '{"role_type":"jwt","user_claim":"sub","bound_subject":"x"}'
check_status 404 "a cert mount has no jwt role path"
api DELETE auth/cert/certs/cn-bound
check_status 204 "delete a role"

# ---- logins keep working across a CA rotation (trust_own_bundle follows the bundle) ----
svid old "$WTOK"
api POST pki/rotate '{"activate_after":"1s"}'
check_status 200 "pki/rotate with activate_after 1s"
sleep 3
fetch_bundle
check "the bundle holds both generations" "$(grep -c 'BEGIN CERTIFICATE' "$TMP/bundle.pem")" 2
svid new "$WTOK"
check "the new SVID comes from the new CA" \
    "$(yn [ "$(issuer_of "$TMP/new.pem")" != "$(issuer_of "$TMP/old.pem")" ])" yes
login "$TMP/old.pem" "$TMP/old.key" '{"name":"svid"}'
check_status 200 "an SVID of the old CA still logs in after the rotation"
OLD_SERIAL=$(openssl x509 -in "$TMP/old.pem" -noout -serial | cut -d= -f2 | tr A-F a-f |
    sed 's/../&:/g;s/:$//')
check "old-CA login: meta.cert_serial" "$(jv '.auth.metadata.cert_serial')" "$OLD_SERIAL"
login "$TMP/new.pem" "$TMP/new.key"
check_status 200 "an SVID of the new CA logs in"
check "new-CA login picks role svid" "$(jv '.auth.metadata.role')" svid

# ---- authctl login -method=cert (SPEC §1) ----
RC=0
AUTHSVC_ADDR="https://localhost:$TLS_PORT" AUTHSVC_CACERT="$TMP/bundle.pem" \
    "$AUTHCTL" login -method=cert -mount=cert -role=svid -client-cert="$TMP/new.pem" \
    -client-key="$TMP/new.key" >"$TMP/ctl.out" 2>"$TMP/ctl.err" || RC=$?
check "authctl login -method=cert" "$RC" 0
if [ "$RC" != 0 ]; then cat "$TMP/ctl.err" >&2; fi
CTOK=$(cat "$HOME/.authsvc-token" 2>/dev/null || true)
api GET auth/token/lookup-self "" "$CTOK"
check_status 200 "authctl stored the cert login's token"
check "authctl's token: spiffe_ids" "$(jv '.data.spiffe_ids|join(",")')" "$WL_ID"
RC=0
AUTHSVC_ADDR="https://localhost:$TLS_PORT" AUTHSVC_CACERT="$TMP/bundle.pem" \
    "$AUTHCTL" login -method=cert -mount=cert -role=svid -client-cert="$TMP/svid1.pem" \
    -client-key="$TMP/svid1.key" >"$TMP/ctl.out" 2>"$TMP/ctl.err" || RC=$?
check "authctl login with a revoked SVID fails" "$RC" 1
check "authctl shows the server's reason" \
    "$(yn contains "$(cat "$TMP/ctl.err")" "client certificate has been revoked")" yes

stop_server

# ======== part 2: under an upstream CA (the root is the anchor, our CAs intermediates) ========
unset DATA PORT TLS_PORT
DATA=$TMP/data2
UP=$TMP/upstream
mkdir -p "$UP"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/O=Upstream Corp/CN=Upstream Root" -keyout "$UP/root.key" -out "$UP/root.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
chmod 600 "$UP/root.key"
cat >"$TMP/config.json" <<JSON
{"trust_domain": "example.org",
 "ca": {"upstream_cert_file": "$UP/root.pem", "upstream_key_file": "$UP/root.key"}}
JSON
start_server --config "$TMP/config.json"
fetch_bundle
check "upstream: the bundle is the root alone" "$(grep -c 'BEGIN CERTIFICATE' "$TMP/bundle.pem")" 1
api POST sys/auth/cert '{"type":"cert"}'
check_status 204 "upstream: enable a cert mount"
api POST auth/cert/certs/svid '{"trust_own_bundle":true,
  "allowed_uri_sans":["spiffe://example.org/*"], "spiffe_id_template":"{{cert:uri}}",
  "token_policies":"default"}'
check_status 204 "upstream: role svid"
api POST auth/token/create "{\"spiffe_ids\":[\"$WL_ID\"],\"policies\":[\"default\"]}"
WTOK=$(jv '.auth.client_token')
svid up1 "$WTOK"
U1=$(jv '.data.serial_number')
jv '.data.ca_chain[]' >"$TMP/up1-chain.pem"
cat "$TMP/up1.pem" "$TMP/up1-chain.pem" >"$TMP/up1-full.pem"
login "$TMP/up1.pem" "$TMP/up1.key"
check_status 200 "upstream: the leaf alone logs in (our intermediates are known)"
UTOK=$(jv '.auth.client_token')
check "upstream: meta.cert_serial" "$(jv ".auth.metadata.cert_serial")" "$U1"
login "$TMP/up1-full.pem" "$TMP/up1.key"
check_status 200 "upstream: leaf + intermediate logs in"
UTOK2=$(jv '.auth.client_token')
# A leaf signed by the upstream root directly chains to the bundle too (the root is the anchor),
# but it is none of our SVIDs.
cp "$UP/root.pem" "$TMP/uproot.pem"
cp "$UP/root.key" "$TMP/uproot.key"
leaf up-direct uproot clientAuth "URI:spiffe://example.org/ns/direct"
login "$TMP/up-direct.pem" "$TMP/up-direct.key"
check_status 200 "upstream: a clientAuth leaf of the root itself is trusted by trust_own_bundle"
api POST pki/rotate '{"activate_after":"1s"}'
check_status 200 "upstream: pki/rotate"
sleep 3
svid up2 "$WTOK"
check "upstream: a new intermediate signs now" \
    "$(yn [ "$(issuer_of "$TMP/up2.pem")" != "$(issuer_of "$TMP/up1.pem")" ])" yes
login "$TMP/up1.pem" "$TMP/up1.key"
check_status 200 "upstream: the old generation's SVID still logs in after the rotation"
login "$TMP/up2.pem" "$TMP/up2.key"
check_status 200 "upstream: the new generation's SVID logs in"
api POST pki/revoke "{\"serial_number\":\"$U1\"}"
check_status 200 "upstream: revoke the first SVID"
api GET auth/token/lookup-self "" "$UTOK"
check_status 403 "upstream: its login token is revoked"
api GET auth/token/lookup-self "" "$UTOK2"
check_status 403 "upstream: the login with the full chain too"
N0=$(accessors)
login "$TMP/up1-full.pem" "$TMP/up1.key"
refused "upstream: the revoked SVID" 400 "client certificate has been revoked"

stop_server
finish
