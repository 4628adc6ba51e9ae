#!/usr/bin/env bash
# test_svid.sh: X.509-SVIDs and JWT-SVIDs end to end (SPEC §1 authctl svid/bundle/identities, §3, §6,
# §8): `authctl svid x509` files and modes, the SPIFFE X509-SVID leaf profile field by field as
# openssl sees it, server-generated keys, RSA keys, refused CSRs (no record added), what a CSR may
# not choose, identity and DNS authorization, ttl capping; JWT-SVIDs verified by the npm `jose`
# package against the public bundle and by svid/jwt/validate; the bundle JSON shape; revocation
# (CRL, pki/cert, openssl -crl_check), token revocation cascading to its SVIDs; sys/identities
# filters and paging; everything surviving a restart.
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
jv() { jq -r "$1" <<<"$BODY" 2>/dev/null || echo "<not json>"; }
jo() { jq -r "$1" <<<"$OUT" 2>/dev/null || echo "<not json>"; }
yn() { if "$@"; then echo yes; else echo no; fi; }
# quiet CMD...: runs CMD with its output discarded (for yn)
quiet() { "$@" >/dev/null 2>&1; }
contains() { [[ "$1" == *"$2"* ]]; }
in_range() { [[ "$1" =~ ^-?[0-9]+$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
RFC3339='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$'
SERIAL_RE='^[0-9a-f]{2}(:[0-9a-f]{2})*$'

# csr_body FILE [JQ_OBJECT]: {"csr": <FILE>} merged with JQ_OBJECT (e.g. '{ttl:"2h"}')
csr_body() { jq -nc --rawfile csr "$1" "{csr:\$csr} + ${2:-{\}}"; }
# ec_csr NAME [CURVE] [openssl req args...]: a key NAME.key and a CSR NAME.csr under $TMP
ec_csr() {
    local name=$1 curve=${2:-prime256v1}
    shift 2 || shift $#
    openssl ecparam -name "$curve" -genkey -noout -out "$TMP/$name.key" 2>/dev/null
    openssl req -new -key "$TMP/$name.key" -subj "/CN=ignored" -sha256 "$@" -out "$TMP/$name.csr"
}
# rsa_csr NAME BITS [openssl req args...]
rsa_csr() {
    local name=$1 bits=$2
    shift 2
    openssl req -new -newkey "rsa:$bits" -nodes -keyout "$TMP/$name.key" -subj "/CN=ignored" \
        -sha256 "$@" -out "$TMP/$name.csr" 2>/dev/null
}
# cert_count: how many serials LIST pki/certs reports (0 for its empty-list 404)
cert_count() {
    api LIST pki/certs
    if [ "$STATUS" = 200 ]; then jv '.data.keys|length'; else echo 0; fi
}
# save_cert FILE: writes data.certificate of BODY to FILE
save_cert() { jq -r '.data.certificate' <<<"$BODY" >"$1"; }
# ext FILE NAME: `openssl x509 -ext NAME` of FILE (header line and values)
ext() { openssl x509 -in "$1" -noout -ext "$2" 2>/dev/null; }
# san_uris FILE: the URI SANs, comma-joined
san_uris() { ext "$1" subjectAltName | tr ',' '\n' | sed -n 's/^ *URI://p' | paste -sd, -; }
san_dns() { ext "$1" subjectAltName | tr ',' '\n' | sed -n 's/^ *DNS://p' | sort | paste -sd, -; }
# epoch_of "notBefore=..." line of openssl x509
not_before() { date -d "$(openssl x509 -in "$1" -noout -startdate | cut -d= -f2)" +%s; }
not_after() { date -d "$(openssl x509 -in "$1" -noout -enddate | cut -d= -f2)" +%s; }
# pub_of_cert FILE / pub_of_key FILE: the SubjectPublicKeyInfo PEM, for comparison
pub_of_cert() { openssl x509 -in "$1" -noout -pubkey 2>/dev/null; }
pub_of_key() { openssl pkey -in "$1" -pubout 2>/dev/null; }
# hexnorm SERIAL: upper-case hex without colons or leading zeros (how openssl prints serials)
hexnorm() { tr -d ':-' <<<"$1" | tr a-f A-F | sed 's/^0*//;s/^$/0/'; }
# openssl_crl_serials FILE: the serials `openssl crl -text` lists for the first CRL of FILE
openssl_crl_serials() {
    openssl crl -in "$1" -noout -text 2>/dev/null | sed -n 's/^ *Serial Number: *//p' |
        while read -r s; do hexnorm "$s"; done
}
# crl_serials FILE: the serials of every CRL in a PEM file of concatenated CRLs
crl_serials() {
    local f
    rm -f "$TMP"/crlsplit.*
    awk -v d="$TMP" '/BEGIN X509 CRL/ { n++ } n { print > (d "/crlsplit." n) }' "$1"
    for f in "$TMP"/crlsplit.*; do
        if [ -e "$f" ]; then openssl_crl_serials "$f"; fi
    done
}
# b64url_dec TEXT: decodes base64url without padding (a JWT segment)
b64url_dec() {
    local s=${1//-/+}
    s=${s//_//}
    while [ $((${#s} % 4)) -ne 0 ]; do s="$s="; done
    base64 -d <<<"$s" 2>/dev/null || true
}
# revoked_in_crls SERIAL FILE: yes when any CRL in the PEM FILE lists SERIAL
# (grep reads everything: an early exit would fail the pipeline under pipefail)
revoked_in_crls() { crl_serials "$2" | grep -x "$(hexnorm "$1")" >/dev/null; }
# flip_last_byte IN OUT: OUT is IN with the last byte's low bit flipped (the end of the signature)
flip_last_byte() { perl -0777 -pe 'substr($_, -1, 1) ^= "\x01"' <"$1" >"$2"; }
# pem_wrap LABEL DER_FILE
pem_wrap() {
    echo "-----BEGIN $1-----"
    base64 -w 64 <"$2"
    echo "-----END $1-----"
}

# A private HOME without ~/.authsvc-token, and nothing inherited from the caller's environment.
export HOME="$TMP/home"
mkdir -p "$HOME"
unset AUTHSVC_TOKEN AUTHSVC_CACERT

start_server
T_START=$(date +%s)

WL_ID=spiffe://example.org/ns/prod/sa/web
API_ID=spiffe://example.org/ns/prod/sa/api

# An SVID that will be expired by the time sys/identities is asked for its expired ones.
api POST svid/x509 '{"spiffe_id":"spiffe://example.org/ns/dev/sa/short","ttl":"2s"}'
check_status 200 "root obtains a 2s X.509-SVID for the expired-state check"
SHORT_SERIAL=$(jv '.data.serial_number')
SHORT_START=$SECONDS

# The workload token: one identity, DNS names under *.web.internal, the default policy only.
api POST auth/token/create "{\"spiffe_ids\":[\"$WL_ID\"],\"allowed_dns_names\":[\"*.web.internal\"],\"policies\":[\"default\"]}"
check_status 200 "root creates the workload token"
WTOK=$(jv '.auth.client_token')
WACC=$(jv '.auth.accessor')
check "the workload token has only the default policy" "$(jv '.auth.policies|tostring')" '["default"]'

api LIST pki/certs/revoked
check_status 404 "LIST pki/certs/revoked is 404 before any revocation"

# ---------- authctl svid x509 ----------
OUT_DIR=$TMP/svid-out
N0=$(cert_count)
T0=$(date +%s)
AUTHSVC_TOKEN=$WTOK ctl svid x509 -dns=api.web.internal -dns=db.web.internal -out-dir "$OUT_DIR"
T1=$(date +%s)
check "authctl svid x509 exits 0" "$RC" 0
[ "$RC" = 0 ] || echo "  stderr: $ERR" >&2
check "the out dir was created 0700" "$(stat -c %a "$OUT_DIR" 2>/dev/null)" 700
check "svid_key.pem is mode 0600" "$(stat -c %a "$OUT_DIR/svid_key.pem" 2>/dev/null)" 600
check "svid.pem is mode 0644" "$(stat -c %a "$OUT_DIR/svid.pem" 2>/dev/null)" 644
check "bundle.pem is mode 0644" "$(stat -c %a "$OUT_DIR/bundle.pem" 2>/dev/null)" 644
check "the out dir holds exactly the three files (no temp file left)" "$(ls -A "$OUT_DIR" | sort | paste -sd, -)" \
    "bundle.pem,svid.pem,svid_key.pem"
check "the summary names the SPIFFE ID" "$(yn contains "$OUT" "$WL_ID")" yes
check "the summary has the serial_number row" "$(yn grep -qE '^serial_number +[0-9a-f]{2}(:[0-9a-f]{2})+$' <<<"$OUT")" yes
check "the summary has the expiration row" "$(yn grep -qE '^expiration +[0-9]{4}-' <<<"$OUT")" yes
check "authctl never prints a private key" "$(yn contains "$OUT$ERR" "PRIVATE KEY")" no
check "one record was added" "$(cert_count)" $((N0 + 1))
LEAF=$TMP/leaf.pem
openssl x509 -in "$OUT_DIR/svid.pem" -out "$LEAF" 2>/dev/null
SERIAL=$(sed -n 's/^serial_number *//p' <<<"$OUT")
check_match "serial_number is lowercase colon hex" "$SERIAL" "$SERIAL_RE"
check "svid.pem holds the leaf only (the CA is a root: empty ca_chain)" "$(grep -c 'BEGIN CERTIFICATE' "$OUT_DIR/svid.pem")" 1
check "svid_key.pem is PKCS#8" "$(head -1 "$OUT_DIR/svid_key.pem")" "-----BEGIN PRIVATE KEY-----"
check "svid_key.pem is a P-256 key" "$(yn grep -q 'prime256v1' < <(openssl pkey -in "$OUT_DIR/svid_key.pem" -noout -text 2>/dev/null))" yes
check "the private key matches the certificate" "$(pub_of_key "$OUT_DIR/svid_key.pem")" "$(pub_of_cert "$LEAF")"
curl -s "$ADDR/v1/pki/bundle/pem" >"$TMP/bundle-api.pem"
check "bundle.pem is pki/bundle/pem" "$(cat "$OUT_DIR/bundle.pem")" "$(cat "$TMP/bundle-api.pem")"
check "openssl verify -purpose sslclient" "$(openssl verify -CAfile "$OUT_DIR/bundle.pem" -purpose sslclient "$LEAF" 2>&1)" "$LEAF: OK"
check "openssl verify -purpose sslserver" "$(openssl verify -CAfile "$OUT_DIR/bundle.pem" -purpose sslserver "$LEAF" 2>&1)" "$LEAF: OK"

# ---------- the leaf profile (SPIFFE X509-SVID, SPEC §6) ----------
TEXT=$(openssl x509 -in "$LEAF" -noout -text)
check "version 3" "$(yn grep -q 'Version: 3 (0x2)' <<<"$TEXT")" yes
check "the subject is empty" "$(openssl x509 -in "$LEAF" -noout -subject)" "subject="
check "the CSR's subject (CN=ignored) was not copied" "$(yn contains "$TEXT" ignored)" no
SAN=$(ext "$LEAF" subjectAltName)
check "the SAN extension is critical" "$(head -1 <<<"$SAN")" "X509v3 Subject Alternative Name: critical"
check "the SAN holds exactly one URI, the ID" "$(san_uris "$LEAF")" "$WL_ID"
check "the SAN holds the DNS names" "$(san_dns "$LEAF")" "api.web.internal,db.web.internal"
check "the SAN holds nothing else" "$(sed -n 2p <<<"$SAN" | tr ',' '\n' | grep -cvE '^ *(URI|DNS):')" 0
BC=$(ext "$LEAF" basicConstraints)
check "basicConstraints is critical" "$(head -1 <<<"$BC")" "X509v3 Basic Constraints: critical"
check "basicConstraints is CA:FALSE" "$(sed -n 2p <<<"$BC" | tr -d ' ')" "CA:FALSE"
KU=$(ext "$LEAF" keyUsage)
check "keyUsage is critical" "$(head -1 <<<"$KU")" "X509v3 Key Usage: critical"
check "keyUsage is Digital Signature only (EC key)" "$(sed -n 2p <<<"$KU" | sed 's/^ *//')" "Digital Signature"
EKU=$(ext "$LEAF" extendedKeyUsage)
check "extKeyUsage is serverAuth + clientAuth" "$(sed -n 2p <<<"$EKU" | tr ',' '\n' | sed 's/^ *//' | sort | paste -sd, -)" \
    "TLS Web Client Authentication,TLS Web Server Authentication"
check "a Subject Key Identifier is present" "$(yn grep -q 'X509v3 Subject Key Identifier' <<<"$TEXT")" yes
AKI=$(ext "$LEAF" authorityKeyIdentifier)
check "the Authority Key Identifier is present and not critical" "$(head -1 <<<"$AKI")" "X509v3 Authority Key Identifier: "
curl -s "$ADDR/v1/pki/ca/pem" >"$TMP/ca.pem"
CA_SKI=$(openssl x509 -in "$TMP/ca.pem" -noout -ext subjectKeyIdentifier | sed -n 2p | tr -d ' ')
check "the AKID is the CA's SKID" "$(sed -n 2p <<<"$AKI" | tr -d ' ' | sed 's/^keyid://')" "$CA_SKI"
check "the issuer is the active CA's subject" "$(openssl x509 -in "$LEAF" -noout -issuer | cut -d= -f2-)" \
    "$(openssl x509 -in "$TMP/ca.pem" -noout -subject | cut -d= -f2-)"
CERT_SERIAL=$(openssl x509 -in "$LEAF" -noout -serial | cut -d= -f2)
check "serial_number is the certificate's serial" "$(hexnorm "$SERIAL")" "$(hexnorm "$CERT_SERIAL")"
check "the serial is positive" "$(yn [ "${CERT_SERIAL:0:1}" != "-" ])" yes
check "the serial is non-zero" "$(yn [ "$(hexnorm "$CERT_SERIAL")" != 0 ])" yes
check "the serial is at most 16 bytes" "$(yn [ ${#CERT_SERIAL} -le 32 ])" yes
SERIAL_DER_LEN=$(openssl asn1parse -in "$LEAF" 2>/dev/null | grep -m2 'prim: INTEGER' | tail -1 | sed -E 's/.* l= *([0-9]+) .*/\1/')
check "the serial's DER content is at most 17 bytes (16 + sign pad)" "$(yn in_range "$SERIAL_DER_LEN" 1 17)" yes
NB=$(not_before "$LEAF")
NA=$(not_after "$LEAF")
check "notBefore is backdated 10 s (±1)" "$(yn in_range "$NB" $((T0 - 11)) $((T1 - 9)))" yes
check "notAfter - notBefore is the 1h default + 10 s (±2)" "$(yn in_range $((NA - NB)) 3608 3612)" yes
check "the signature is ecdsa-with-SHA256" "$(grep -m1 'Signature Algorithm' <<<"$TEXT" | sed 's/^ *//')" \
    "Signature Algorithm: ecdsa-with-SHA256"
check "no other extension than the profile's" \
    "$(grep -oE 'X509v3 [A-Za-z ]+:' <<<"$TEXT" | grep -v 'X509v3 extensions' | sort | paste -sd, -)" \
    "X509v3 Authority Key Identifier:,X509v3 Basic Constraints:,X509v3 Extended Key Usage:,X509v3 Key Usage:,X509v3 Subject Alternative Name:,X509v3 Subject Key Identifier:"

# -format=json: the answer without a private key
OUT_DIR2=$TMP/svid-json
AUTHSVC_TOKEN=$WTOK ctl svid x509 -out-dir "$OUT_DIR2" -format=json
check "svid x509 -format=json exits 0" "$RC" 0
check "the JSON names the SPIFFE ID" "$(jo '.data.spiffe_id')" "$WL_ID"
check_match "the JSON serial_number is colon hex" "$(jo '.data.serial_number')" "$SERIAL_RE"
check "the JSON has an integer expiration" "$(jo '.data.expiration|type')" number
check "the JSON ca_chain is []" "$(jo '.data.ca_chain|tostring')" "[]"
check "the JSON has no private_key" "$(jo '.data|has("private_key")')" false
check "the JSON certificate is svid.pem's leaf" "$(jo '.data.certificate' | openssl x509 -noout -fingerprint 2>/dev/null)" \
    "$(openssl x509 -in "$OUT_DIR2/svid.pem" -noout -fingerprint)"
check "expiration is the certificate's notAfter" "$(jo '.data.expiration')" "$(not_after "$OUT_DIR2/svid.pem")"
check "the same SVID has a fresh key each time" "$(yn [ "$(pub_of_key "$OUT_DIR/svid_key.pem")" != "$(pub_of_key "$OUT_DIR2/svid_key.pem")" ])" yes
check "serials are distinct" "$(yn [ "$(jo '.data.serial_number')" != "$SERIAL" ])" yes

# authctl failures: usage (2), API refusal (1) and nothing written
AUTHSVC_TOKEN=$WTOK ctl svid x509
check "svid x509 without -out-dir exits 2" "$RC" 2
AUTHSVC_TOKEN=$WTOK ctl svid x509 -out-dir "$TMP/x" -ttl=forever
check "svid x509 with a bad -ttl exits 2" "$RC" 2
AUTHSVC_TOKEN=$WTOK ctl svid x509 -out-dir "$TMP/denied" -spiffe-id=$API_ID
check "svid x509 for an ID the token lacks exits 1" "$RC" 1
check "  with the server's message" "$(yn contains "$ERR" "Error:")" yes
check "  and writes no file" "$(ls -A "$TMP/denied" 2>/dev/null | wc -l)" 0
AUTHSVC_TOKEN=$WTOK ctl svid x509 -out-dir "$TMP/denied-dns" -dns=evil.example.com
check "svid x509 with a DNS name outside the globs exits 1" "$RC" 1
check "  and writes no file" "$(ls -A "$TMP/denied-dns" 2>/dev/null | wc -l)" 0
AUTHSVC_TOKEN=$WTOK ctl svid x509 -out-dir "$TMP/capped" -ttl=48h
check "svid x509 -ttl=48h exits 0" "$RC" 0
check "  the capping warning is shown on stderr" "$(yn grep -qi capped <<<"$ERR")" yes

# ---------- server-generated key (no CSR) ----------
api POST svid/x509 '{}' "$WTOK"
check_status 200 "svid/x509 without a CSR"
check "private_key is returned" "$(jv '.data.private_key|type')" string
jv '.data.private_key' >"$TMP/srv.key"
save_cert "$TMP/srv.pem"
SRV_SERIAL=$(jv '.data.serial_number')
check "the server key is PKCS#8" "$(head -1 "$TMP/srv.key")" "-----BEGIN PRIVATE KEY-----"
check "the server key is P-256" "$(yn grep -q prime256v1 < <(openssl pkey -in "$TMP/srv.key" -noout -text 2>/dev/null))" yes
check "the server key matches its certificate" "$(pub_of_key "$TMP/srv.key")" "$(pub_of_cert "$TMP/srv.pem")"
check "spiffe_id defaults to the token's only ID" "$(jv '.data.spiffe_id')" "$WL_ID"
check "the server-keyed SVID verifies" "$(openssl verify -CAfile "$TMP/bundle-api.pem" -purpose sslclient "$TMP/srv.pem" 2>&1)" "$TMP/srv.pem: OK"
check "bundle in the answer is pki/bundle/pem" "$(jv '.data.bundle')" "$(cat "$TMP/bundle-api.pem")"

# ---------- CSR key types ----------
rsa_csr rsa2048 2048
api POST svid/x509 "$(csr_body "$TMP/rsa2048.csr")" "$WTOK"
check_status 200 "an RSA-2048 CSR is accepted"
save_cert "$TMP/rsa.pem"
check "an RSA leaf has Digital Signature + Key Encipherment" "$(ext "$TMP/rsa.pem" keyUsage | sed -n 2p | sed 's/^ *//')" \
    "Digital Signature, Key Encipherment"
check "the RSA leaf is for the CSR's key" "$(pub_of_key "$TMP/rsa2048.key")" "$(pub_of_cert "$TMP/rsa.pem")"
check "the RSA leaf is still signed ecdsa-with-SHA256" "$(openssl x509 -in "$TMP/rsa.pem" -noout -text | grep -m1 'Signature Algorithm' | sed 's/^ *//')" \
    "Signature Algorithm: ecdsa-with-SHA256"
check "private_key is absent when a CSR was sent" "$(jv '.data|has("private_key")')" false
ec_csr p384 secp384r1
api POST svid/x509 "$(csr_body "$TMP/p384.csr")" "$WTOK"
check_status 200 "a P-384 CSR is accepted"

# ---------- refused CSRs: 400 with a reason, nothing recorded ----------
N1=$(cert_count)
ec_csr good
# truncated: the PEM cut off in the middle of the base64, no END line
head -c 300 "$TMP/good.csr" >"$TMP/trunc1.csr"
# truncated DER inside a complete PEM envelope
openssl req -in "$TMP/good.csr" -outform DER -out "$TMP/good.der"
head -c 100 "$TMP/good.der" >"$TMP/trunc.der"
pem_wrap "CERTIFICATE REQUEST" "$TMP/trunc.der" >"$TMP/trunc2.csr"
# a wrong signature: the last byte of the ECDSA signature changed
flip_last_byte "$TMP/good.der" "$TMP/badsig.der"
pem_wrap "CERTIFICATE REQUEST" "$TMP/badsig.der" >"$TMP/badsig.csr"
check "(the tampered CSR still parses but fails openssl req -verify)" \
    "$(openssl req -in "$TMP/badsig.csr" -noout -verify 2>&1 | grep -c 'verify failure')" 1
rsa_csr rsa1024 1024
ec_csr p192 prime192v1
printf 'this is not a certificate request\n' >"$TMP/garbage.csr"
for c in garbage trunc1 trunc2 badsig rsa1024 p192; do
    api POST svid/x509 "$(csr_body "$TMP/$c.csr")" "$WTOK"
    check_status 400 "CSR $c is refused with 400"
    check "CSR $c: the error gives a reason about the csr" "$(yn grep -qi csr <<<"$(jv '.errors[0]')")" yes
done
api POST svid/x509 '{"csr":""}' "$WTOK"
check_status 400 "an empty csr string is refused"
api POST svid/x509 '{"csr":42}' "$WTOK"
check_status 400 "a csr that is not a string is refused"
check "no refused CSR left a record" "$(cert_count)" "$N1"

# ---------- what a CSR cannot choose ----------
ec_csr greedy prime256v1 -addext "subjectAltName=URI:spiffe://example.org/ns/prod/sa/admin,DNS:evil.example.com" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
api POST svid/x509 "$(csr_body "$TMP/greedy.csr")" "$WTOK"
check_status 200 "a CSR asking for another ID and CA:TRUE is still answered"
save_cert "$TMP/greedy.pem"
check "  the certificate carries only the authorized ID" "$(san_uris "$TMP/greedy.pem")" "$WL_ID"
check "  and none of the CSR's DNS names" "$(san_dns "$TMP/greedy.pem")" ""
check "  and CA:FALSE" "$(ext "$TMP/greedy.pem" basicConstraints | sed -n 2p | tr -d ' ')" "CA:FALSE"
check "  and no Certificate Sign" "$(ext "$TMP/greedy.pem" keyUsage | sed -n 2p | sed 's/^ *//')" "Digital Signature"
check "  the answer's spiffe_id is the authorized one" "$(jv '.data.spiffe_id')" "$WL_ID"

# ---------- identity and DNS authorization ----------
api POST svid/x509 "$(csr_body "$TMP/good.csr" "{spiffe_id:\"$API_ID\"}")" "$WTOK"
check_status 403 "a spiffe_id the token does not hold is 403"
api POST svid/x509 "$(csr_body "$TMP/good.csr" '{dns_names:["evil.example.com"]}')" "$WTOK"
check_status 403 "a DNS name outside *.web.internal is 403"
api POST svid/x509 "$(csr_body "$TMP/good.csr" '{dns_names:["web.internal"]}')" "$WTOK"
check_status 403 "the bare web.internal does not match *.web.internal"
api POST svid/x509 "$(csr_body "$TMP/good.csr" '{dns_names:["x.web.internal.evil.com"]}')" "$WTOK"
check_status 403 "a name with the allowed one as a prefix is 403"
api POST svid/x509 "$(csr_body "$TMP/good.csr" "{spiffe_id:\"$WL_ID\",dns_names:\"a.web.internal,b.web.internal\"}")" "$WTOK"
check_status 200 "the token's own ID and matching DNS names (comma-separated string)"
save_cert "$TMP/dns.pem"
check "  both DNS names are in the SAN" "$(san_dns "$TMP/dns.pem")" "a.web.internal,b.web.internal"
api POST auth/token/create "{\"spiffe_ids\":[\"$API_ID\"],\"policies\":[\"default\"]}"
NODNS_TOK=$(jv '.auth.client_token')
api POST svid/x509 "$(csr_body "$TMP/good.csr" '{dns_names:["a.web.internal"]}')" "$NODNS_TOK"
check_status 403 "a token without allowed_dns_names may put no DNS name"
api POST svid/x509 "$(csr_body "$TMP/good.csr" '{}')" "-"
check_status 403 "no token is 403"
# root (sudo on svid/x509) may name any ID of the trust domain and any DNS name
api POST svid/x509 "$(csr_body "$TMP/good.csr" '{spiffe_id:"spiffe://example.org/anything/x",dns_names:["anything.example"]}')"
check_status 200 "root may name any ID of the trust domain and any DNS name"
save_cert "$TMP/root.pem"
check "  the root-named ID is in the certificate" "$(san_uris "$TMP/root.pem")" "spiffe://example.org/anything/x"
ROOT_SERIAL=$(jv '.data.serial_number')
api POST svid/x509 "$(csr_body "$TMP/good.csr")"
check_status 400 "root without spiffe_id (it holds no identity) is 400"
for bad in "spiffe://example.org/ns/prod/sa/web/" "spiffe://other.org/ns/prod/sa/web" "https://example.org/ns/prod" \
    "spiffe://example.org" "spiffe://example.org/ns/../x" "spiffe://example.org/ns//x" "spiffe://example.org/a?b=c" \
    "spiffe://EXAMPLE.org/ns/x" "spiffe://example.org/ns/sp ace"; do
    api POST svid/x509 "$(csr_body "$TMP/good.csr" "$(jq -nc --arg id "$bad" '{spiffe_id:$id}')")"
    check_status 400 "invalid spiffe_id $bad is 400"
    check "  the reason names the spiffe_id" "$(yn grep -qi spiffe_id <<<"$(jv '.errors[0]')")" yes
done

# ---------- ttl capping ----------
T0=$(date +%s)
api POST svid/x509 "$(csr_body "$TMP/good.csr" '{ttl:"48h"}')" "$WTOK"
check_status 200 "ttl 48h is accepted"
save_cert "$TMP/ttl48.pem"
check "  capped to 24h (+10 s backdating)" "$(yn in_range $(($(not_after "$TMP/ttl48.pem") - $(not_before "$TMP/ttl48.pem"))) 86408 86412)" yes
check "  with a warning containing \"capped\"" "$(jv '[.warnings[]?|select(test("capped"))]|length>0')" true
api POST svid/x509 "$(csr_body "$TMP/good.csr" '{ttl:"10m"}')" "$WTOK"
save_cert "$TMP/ttl10m.pem"
check "ttl 10m is honoured" "$(yn in_range $(($(not_after "$TMP/ttl10m.pem") - $(not_before "$TMP/ttl10m.pem"))) 608 612)" yes
check "  without a warning" "$(jv '.warnings|length')" 0
api POST auth/token/create "{\"spiffe_ids\":[\"$WL_ID\"],\"policies\":[\"default\"],\"ttl\":\"120s\"}"
SHORT_TOK=$(jv '.auth.client_token')
T0=$(date +%s)
api POST svid/x509 "$(csr_body "$TMP/good.csr" '{ttl:"1h"}')" "$SHORT_TOK"
check_status 200 "a 120s token asks for 1h"
save_cert "$TMP/tokcap.pem"
NA=$(not_after "$TMP/tokcap.pem")
check "  notAfter is capped at the token's expiry" "$(yn in_range "$NA" $((T0 + 115)) $((T0 + 122)))" yes
check "  expiration matches notAfter" "$(jv '.data.expiration')" "$NA"

# ---------- JWT-SVID ----------
NODE_DIR=$AUTHSVC_SRC/tests/integration/node
AUTHSVC_TOKEN=$WTOK ctl svid jwt -audience=svc-b
check "authctl svid jwt exits 0" "$RC" 0
check "the table has the token" "$(yn grep -qE '^token +[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' <<<"$OUT")" yes
check "the table has the SPIFFE ID" "$(yn grep -qE "^spiffe_id +$WL_ID\$" <<<"$OUT")" yes
check "the table has the expiration" "$(yn grep -qE '^expiration +[0-9]{4}-' <<<"$OUT")" yes
AUTHSVC_TOKEN=$WTOK ctl svid jwt -audience=svc-b -format=json
check "authctl svid jwt -format=json exits 0" "$RC" 0
JWT=$(jo '.data.token')
check "the JSON spiffe_id" "$(jo '.data.spiffe_id')" "$WL_ID"
check "the JSON expiration is an integer" "$(jo '.data.expiration|type')" number
if ! command -v node >/dev/null 2>&1 || [ ! -d "$NODE_DIR/node_modules/jose" ]; then
    check "node and the jose package are installed (tools/test, or npm ci in $NODE_DIR)" no yes
else
    NODE_RC=0
    NODE_OUT=$(cd "$NODE_DIR" && AUTHSVC_ADDR=$ADDR JWT_SVID=$JWT EXPECT_AUD=svc-b EXPECT_SUB=$WL_ID \
        node verify_jwt_svid.js 2>&1) || NODE_RC=$?
    check "jose verifies the JWT-SVID against the bundle's jwt-svid keys" "$NODE_RC" 0
    [ "$NODE_RC" = 0 ] || echo "$NODE_OUT" >&2
    check_match "  the node script reports no failure" "$(tail -1 <<<"$NODE_OUT")" '^[1-9][0-9]* passed, 0 failed$'
fi
JHDR=$(b64url_dec "$(cut -d. -f1 <<<"$JWT")")
check "header alg ES256 and typ JWT" "$(jq -r '[.alg,.typ]|join(",")' <<<"$JHDR")" "ES256,JWT"
JCLAIMS=$(b64url_dec "$(cut -d. -f2 <<<"$JWT")")
check "claims are exactly aud, exp, iat, jti, sub" "$(jq -r 'keys|join(",")' <<<"$JCLAIMS")" "aud,exp,iat,jti,sub"
check "default JWT ttl is 5m" "$(jq -r '.exp - .iat' <<<"$JCLAIMS")" 300
JTI=$(jq -r .jti <<<"$JCLAIMS")
api POST svid/jwt/validate "$(jq -nc --arg t "$JWT" '{token:$t,audience:"svc-b"}')" "$WTOK"
check_status 200 "svid/jwt/validate accepts it"
check "  spiffe_id" "$(jv '.data.spiffe_id')" "$WL_ID"
check "  claims.sub" "$(jv '.data.claims.sub')" "$WL_ID"
check "  claims.jti" "$(jv '.data.claims.jti')" "$JTI"
api POST svid/jwt/validate "$(jq -nc --arg t "$JWT" '{token:$t,audience:"svc-c"}')" "$WTOK"
check_status 400 "a wrong audience is 400"
check "  with a reason" "$(yn [ -n "$(jv '.errors[0] // ""')" ])" yes
SIG=$(cut -d. -f3 <<<"$JWT")
FIRST=${SIG:0:1}
if [ "$FIRST" = A ]; then REPL=B; else REPL=A; fi
TAMPERED="$(cut -d. -f1-2 <<<"$JWT").${REPL}${SIG:1}"
api POST svid/jwt/validate "$(jq -nc --arg t "$TAMPERED" '{token:$t,audience:"svc-b"}')" "$WTOK"
check_status 400 "a tampered signature is 400"
FORGED="$(cut -d. -f1 <<<"$JWT").$(jq -c '.sub="spiffe://example.org/ns/prod/sa/admin"' <<<"$JCLAIMS" | base64 -w0 | tr '+/' '-_' | tr -d '=').$SIG"
api POST svid/jwt/validate "$(jq -nc --arg t "$FORGED" '{token:$t,audience:"svc-b"}')" "$WTOK"
check_status 400 "an edited payload is 400"
api POST svid/jwt/validate '{"token":"not.a.jwt","audience":"svc-b"}' "$WTOK"
check_status 400 "garbage is 400"
api POST svid/jwt '{"audience":["a","b"],"ttl":"2h"}' "$WTOK"
check_status 200 "two audiences and ttl 2h"
MCLAIMS=$(b64url_dec "$(jv '.data.token' | cut -d. -f2)")
check "  aud has both" "$(jq -r '[.aud]|flatten|sort|join(",")' <<<"$MCLAIMS")" "a,b"
check "  ttl capped at 1h" "$(yn in_range "$(jq -r '.exp - .iat' <<<"$MCLAIMS")" 1 3600)" yes
api POST svid/jwt '{}' "$WTOK"
check_status 400 "svid/jwt without audience is 400"
api POST svid/jwt "{\"audience\":\"x\",\"spiffe_id\":\"$API_ID\"}" "$WTOK"
check_status 403 "a JWT-SVID for an ID the token lacks is 403"
AUTHSVC_TOKEN=$WTOK ctl svid jwt
check "svid jwt without -audience exits 2" "$RC" 2

# ---------- bundles ----------
api GET svid/bundle "" "-"
check_status 200 "svid/bundle without a token"
BUNDLE=$BODY
check "x509-svid keys: exactly one x5c, no kid, EC P-256 with x and y" \
    "$(jq '[.keys[]|select(.use=="x509-svid")|(.x5c|length)==1 and (has("kid")|not) and .kty=="EC" and .crv=="P-256" and (.x|length)>0 and (.y|length)>0]|(length>0 and all)' <<<"$BUNDLE")" true
check "jwt-svid keys: kid, EC P-256 with x and y" \
    "$(jq '[.keys[]|select(.use=="jwt-svid")|(.kid|type)=="string" and .kty=="EC" and .crv=="P-256" and (.x|length)>0 and (.y|length)>0]|(length>0 and all)' <<<"$BUNDLE")" true
check "jwt-svid kids are unique" "$(jq '[.keys[]|select(.use=="jwt-svid").kid]|length==(unique|length)' <<<"$BUNDLE")" true
check "every key is x509-svid or jwt-svid" "$(jq '[.keys[]|.use]-["x509-svid","jwt-svid"]|length' <<<"$BUNDLE")" 0
check "spiffe_sequence is an integer" "$(jq '.spiffe_sequence|type=="number" and floor==.' <<<"$BUNDLE")" true
check "spiffe_refresh_hint is 300" "$(jq '.spiffe_refresh_hint' <<<"$BUNDLE")" 300
check "the JWT's kid is in the bundle" "$(jq --arg k "$(jq -r .kid <<<"$JHDR")" '[.keys[]|select(.use=="jwt-svid" and .kid==$k)]|length' <<<"$BUNDLE")" 1
curl -s "$ADDR/v1/pki/ca" -o "$TMP/ca.der"
check "pki/ca (DER) is pki/ca/pem" "$(openssl x509 -inform DER -in "$TMP/ca.der" -noout -fingerprint 2>&1)" \
    "$(openssl x509 -in "$TMP/ca.pem" -noout -fingerprint)"
check "the x509-svid x5c is the active CA" "$(jq -r '.keys[]|select(.use=="x509-svid").x5c[0]' <<<"$BUNDLE" | grep -c "$(base64 -w0 "$TMP/ca.der")")" 1
check "pki/ca_chain starts with the active CA" "$(curl -s "$ADDR/v1/pki/ca_chain" | openssl x509 -noout -fingerprint 2>&1)" \
    "$(openssl x509 -in "$TMP/ca.pem" -noout -fingerprint)"
check "pki/bundle/pem holds as many CAs as x509-svid keys" "$(grep -c 'BEGIN CERTIFICATE' "$TMP/bundle-api.pem")" \
    "$(jq '[.keys[]|select(.use=="x509-svid")]|length' <<<"$BUNDLE")"
ctl bundle
check "authctl bundle exits 0 (no token)" "$RC" 0
check "authctl bundle prints pki/bundle/pem" "$OUT" "$(cat "$TMP/bundle-api.pem")"
ctl bundle -format=jwks
check "authctl bundle -format=jwks exits 0" "$RC" 0
check "authctl bundle -format=jwks is svid/bundle" "$(jo -c .)" "$(jq -c . <<<"$BUNDLE")"
ctl bundle -format=yaml
check "authctl bundle -format=yaml exits 2" "$RC" 2

# ---------- revocation ----------
REVOKED_LEAF=$LEAF
api POST pki/revoke "{\"serial_number\":\"$SERIAL\"}" "$WTOK"
check_status 403 "the default policy cannot revoke"
api POST pki/revoke "{\"serial_number\":\"$SERIAL\"}"
check_status 200 "root revokes $SERIAL"
check "revocation_time is a positive integer" "$(jv '.data.revocation_time|type=="number" and .>0')" true
check_match "revocation_time_rfc3339" "$(jv '.data.revocation_time_rfc3339')" "$RFC3339"
REV_TIME=$(jv '.data.revocation_time')
curl -s "$ADDR/v1/pki/crl/pem" >"$TMP/crl.pem"
check "pki/crl/pem is PEM CRLs" "$(yn grep -q 'BEGIN X509 CRL' "$TMP/crl.pem")" yes
check "openssl crl -text lists the serial" "$(yn grep -qx "$(hexnorm "$SERIAL")" < <(openssl_crl_serials "$TMP/crl.pem"))" yes
check "the CRL is signed by a bundle CA" "$(openssl crl -in "$TMP/crl.pem" -CAfile "$TMP/bundle-api.pem" -noout 2>&1)" "verify OK"
check "the CRL has a nextUpdate" "$(yn grep -q 'Next Update' < <(openssl crl -in "$TMP/crl.pem" -noout -text))" yes
check "one CRL per bundle CA" "$(grep -c 'BEGIN X509 CRL' "$TMP/crl.pem")" "$(grep -c 'BEGIN CERTIFICATE' "$TMP/bundle-api.pem")"
curl -s "$ADDR/v1/pki/crl" -o "$TMP/crl.der"
check "pki/crl (DER) lists the serial too" \
    "$(yn grep -qx "$(hexnorm "$SERIAL")" < <(openssl crl -inform DER -in "$TMP/crl.der" -noout -text 2>/dev/null | sed -n 's/^ *Serial Number: *//p' | while read -r s; do hexnorm "$s"; done))" yes
check "openssl verify -crl_check fails for the revoked SVID" \
    "$(yn quiet openssl verify -crl_check -CRLfile "$TMP/crl.pem" -CAfile "$TMP/bundle-api.pem" -purpose sslclient "$REVOKED_LEAF")" no
check "  with 'certificate revoked'" "$(yn grep -q 'certificate revoked' < <(openssl verify -crl_check -CRLfile "$TMP/crl.pem" -CAfile "$TMP/bundle-api.pem" "$REVOKED_LEAF" 2>&1))" yes
check "openssl verify -crl_check passes for an SVID not revoked" \
    "$(openssl verify -crl_check -CRLfile "$TMP/crl.pem" -CAfile "$TMP/bundle-api.pem" -purpose sslclient "$TMP/srv.pem" 2>&1)" "$TMP/srv.pem: OK"
api GET "pki/cert/$SERIAL" "" "-"
check_status 200 "pki/cert/:serial without a token"
check "  revocation_time" "$(jv '.data.revocation_time')" "$REV_TIME"
check_match "  revocation_time_rfc3339" "$(jv '.data.revocation_time_rfc3339')" "$RFC3339"
check "  spiffe_id" "$(jv '.data.spiffe_id')" "$WL_ID"
check "  certificate is the leaf" "$(jv '.data.certificate' | openssl x509 -noout -fingerprint 2>&1)" "$(openssl x509 -in "$REVOKED_LEAF" -noout -fingerprint)"
api GET "pki/cert/${SERIAL//:/-}" "" "-"
check_status 200 "pki/cert/:serial with dashes"
check "  same certificate" "$(jv '.data.spiffe_id')" "$WL_ID"
api GET "pki/cert/$SRV_SERIAL" "" "-"
check_status 200 "pki/cert of an SVID not revoked"
check "  revocation_time 0" "$(jv '.data.revocation_time')" 0
check "  revocation_time_rfc3339 empty" "$(jv '.data.revocation_time_rfc3339')" ""
api GET "pki/cert/01:02:03:04" "" "-"
check_status 404 "pki/cert of an unknown serial is 404"
api LIST pki/certs/revoked
check_status 200 "LIST pki/certs/revoked"
check "  has the revoked serial" "$(jq -r --arg s "$SERIAL" '.data.keys|index($s)!=null' <<<"$BODY")" true
api LIST pki/certs
check "LIST pki/certs has every serial (revoked included)" "$(jq -r --arg a "$SERIAL" --arg b "$ROOT_SERIAL" '(.data.keys|index($a)!=null) and (.data.keys|index($b)!=null)' <<<"$BODY")" true
api LIST pki/certs "" "$WTOK"
check_status 403 "the default policy cannot LIST pki/certs"
api POST sys/policy/cert-lister '{"policy":"{\"path\":{\"pki/certs\":{\"capabilities\":[\"list\"]},\"pki/certs/revoked\":{\"capabilities\":[\"list\"]}}}"}'
check_status 204 "write a policy with list on pki/certs and pki/certs/revoked"
api POST auth/token/create '{"policies":["cert-lister"]}'
LISTER=$(jv '.auth.client_token')
api LIST pki/certs "" "$LISTER"
check_status 200 "a token with list on pki/certs may LIST it"
api LIST pki/certs/revoked "" "$LISTER"
check_status 200 "  and pki/certs/revoked"

# ---------- token revocation revokes its SVIDs ----------
api POST auth/token/create "{\"spiffe_ids\":[\"$API_ID\"],\"policies\":[\"default\"]}"
T2=$(jv '.auth.client_token')
T2ACC=$(jv '.auth.accessor')
api POST svid/x509 '{}' "$T2"
check_status 200 "token 2 obtains an X.509-SVID"
S2=$(jv '.data.serial_number')
save_cert "$TMP/t2.pem"
api POST svid/jwt '{"audience":"svc-c"}' "$T2"
check_status 200 "token 2 obtains a JWT-SVID"
J2=$(jv '.data.token')
J2_JTI=$(b64url_dec "$(cut -d. -f2 <<<"$J2")" | jq -r .jti)
api POST svid/jwt/validate "$(jq -nc --arg t "$J2" '{token:$t,audience:"svc-c"}')" "$WTOK"
check_status 200 "its JWT-SVID validates before the revocation"
api POST auth/token/revoke "$(jq -nc --arg t "$T2" '{token:$t}')"
check_status 204 "root revokes token 2"
curl -s "$ADDR/v1/pki/crl/pem" >"$TMP/crl2.pem"
check "token 2's serial is in the next CRL" "$(yn revoked_in_crls "$S2" "$TMP/crl2.pem")" yes
check "  (and openssl crl -text of the active CA's CRL lists it)" "$(yn grep -qx "$(hexnorm "$S2")" < <(openssl_crl_serials "$TMP/crl2.pem"))" yes
check "openssl verify -crl_check fails for token 2's SVID" \
    "$(yn quiet openssl verify -crl_check -CRLfile "$TMP/crl2.pem" -CAfile "$TMP/bundle-api.pem" "$TMP/t2.pem")" no
api GET "pki/cert/$S2" "" "-"
check "pki/cert shows token 2's SVID revoked" "$(jv '.data.revocation_time>0')" true
api POST svid/jwt/validate "$(jq -nc --arg t "$J2" '{token:$t,audience:"svc-c"}')" "$WTOK"
check_status 400 "validate refuses the revoked token's JWT-SVID"
check "  with a reason" "$(yn [ -n "$(jv '.errors[0] // ""')" ])" yes
api LIST pki/certs/revoked
check "LIST pki/certs/revoked has token 2's serial" "$(jq -r --arg s "$S2" '.data.keys|index($s)!=null' <<<"$BODY")" true

# ---------- sys/identities ----------
while [ $((SECONDS - SHORT_START)) -lt 4 ]; do sleep 0.5; done
api GET sys/identities
check_status 200 "sys/identities (root)"
ALL=$BODY
TOTAL=$(jq '.data.identities|length' <<<"$ALL")
check "it lists every X.509-SVID issued" "$(yn [ "$TOTAL" -ge "$(cert_count)" ])" yes
check "newest first" "$(jq '[.data.identities[].issued]|. == (sort|reverse)' <<<"$ALL")" true
for k in serial kind spiffe_id dns_names issued expires state revoked_at token_accessor auth_mount role login_subject ca_generation; do
    check "every identity has $k" "$(jq --arg k "$k" '[.data.identities[]|has($k)]|all' <<<"$ALL")" true
done
check "the first authctl SVID: kind x509, the workload's accessor, mount token, its DNS names" \
    "$(jq -c --arg s "$SERIAL" '.data.identities[]|select(.serial==$s)|[.kind,.spiffe_id,.token_accessor,.auth_mount,(.dns_names|sort)]' <<<"$ALL")" \
    "[\"x509\",\"$WL_ID\",\"$WACC\",\"token\",[\"api.web.internal\",\"db.web.internal\"]]"
check "  its state is revoked with revoked_at" "$(jq -r --arg s "$SERIAL" '.data.identities[]|select(.serial==$s)|[.state,(.revoked_at>0)]|join(",")' <<<"$ALL")" "revoked,true"
check "the JWT-SVID is recorded with kind jwt" "$(jq -r --arg j "$JTI" '[.data.identities[]|select(.serial==$j)|.kind,.spiffe_id]|join(",")' <<<"$ALL")" "jwt,$WL_ID"
check "token 2's JWT-SVID is revoked" "$(jq -r --arg j "$J2_JTI" '[.data.identities[]|select(.serial==$j)|.state,.token_accessor]|join(",")' <<<"$ALL")" "revoked,$T2ACC"
api GET "sys/identities?state=revoked"
check_status 200 "state=revoked"
check "  only revoked ones" "$(jv '[.data.identities[].state]|unique|tostring')" '["revoked"]'
check "  including both revoked serials and the revoked JWT" "$(jq --arg a "$SERIAL" --arg b "$S2" --arg j "$J2_JTI" '[.data.identities[].serial] as $s|($s|index($a)!=null) and ($s|index($b)!=null) and ($s|index($j)!=null)' <<<"$BODY")" true
api GET "sys/identities?state=active"
check "state=active lists only active ones" "$(jv '[.data.identities[].state]|unique|tostring')" '["active"]'
check "  not the revoked serial" "$(jq --arg a "$SERIAL" '[.data.identities[].serial]|index($a)==null' <<<"$BODY")" true
api GET "sys/identities?state=expired"
check "state=expired has the 2s SVID" "$(jq --arg a "$SHORT_SERIAL" '[.data.identities[].serial]|index($a)!=null' <<<"$BODY")" true
check "  only expired ones" "$(jv '[.data.identities[].state]|unique|tostring')" '["expired"]'
GLOB=$(jq -rn '"spiffe://example.org/ns/prod/*"|@uri')
api GET "sys/identities?spiffe_id=$GLOB"
check_status 200 "spiffe_id glob"
check "  every ID is under ns/prod/" "$(jv '[.data.identities[].spiffe_id|startswith("spiffe://example.org/ns/prod/")]|all')" true
check "  the web and api IDs are there" "$(jv '[.data.identities[].spiffe_id]|unique|tostring')" "[\"$API_ID\",\"$WL_ID\"]"
check "  the root-issued anything/x is not" "$(jq --arg a "$ROOT_SERIAL" '[.data.identities[].serial]|index($a)==null' <<<"$BODY")" true
GLOB_COUNT=$(jv '.data.identities|length')
# paging with limit=3: no duplicate, nothing missing
SEEN=()
AFTER=""
PAGES=0
while [ "$PAGES" -lt 100 ]; do
    Q="limit=3"
    [ -n "$AFTER" ] && Q="$Q&after=$(jq -rn --arg a "$AFTER" '$a|@uri')"
    api GET "sys/identities?$Q"
    [ "$STATUS" = 200 ] || break
    PAGES=$((PAGES + 1))
    mapfile -t -O "${#SEEN[@]}" SEEN < <(jv '.data.identities[].serial')
    N=$(jv '.data.identities|length')
    if [ "$N" -gt 3 ]; then check "a page holds at most limit entries" "$N" "<=3"; fi
    AFTER=$(jv '.data.next // ""')
    if [ "$N" -lt 3 ]; then
        check "a short page has no next" "$AFTER" ""
    fi
    [ -n "$AFTER" ] || break
done
check_status 200 "every page answers 200"
check "paging returns every identity" "${#SEEN[@]}" "$TOTAL"
check "paging returns no duplicate" "$(printf '%s\n' "${SEEN[@]}" | sort | uniq -d | wc -l)" 0
check "paging keeps the newest-first order" "$(printf '%s\n' "${SEEN[@]}" | paste -sd, -)" "$(jq -r '[.data.identities[].serial]|join(",")' <<<"$ALL")"
check "paging took several pages" "$(yn [ "$PAGES" -ge 3 ])" yes
api GET sys/identities "" "$WTOK"
check_status 403 "a token without sudo gets 403"
api GET "sys/identities?since=$(($(date +%s) + 3600))"
check "since in the future: nothing" "$(jv '.data.identities|length')" 0
api GET "sys/identities?until=1000"
check "until long ago: nothing" "$(jv '.data.identities|length')" 0
api GET "sys/identities?since=$T_START"
check "since the test's start: everything" "$(jv '.data.identities|length')" "$TOTAL"
# authctl identities
AUTHSVC_TOKEN=$ROOT_TOKEN ctl identities -format=json
check "authctl identities -format=json exits 0" "$RC" 0
check "  prints every identity" "$(jo 'length')" "$TOTAL"
AUTHSVC_TOKEN=$ROOT_TOKEN ctl identities -limit=2 -format=json
check "authctl identities -limit=2 follows every page" "$(jo 'length')" "$TOTAL"
check "  without duplicates" "$(jo '[.[].serial]|length==(unique|length)')" true
AUTHSVC_TOKEN=$ROOT_TOKEN ctl identities -spiffe-id='spiffe://example.org/ns/prod/*' -format=json
check "authctl identities -spiffe-id=GLOB matches the API" "$(jo 'length')" "$GLOB_COUNT"
AUTHSVC_TOKEN=$ROOT_TOKEN ctl identities -spiffe-id='spiffe://example.org/ns/prod/*' -state=revoked
check "authctl identities table exits 0" "$RC" 0
check "  header row" "$(head -1 <<<"$OUT" | tr -s ' ')" "Serial SPIFFE ID Kind Issued Expires State Token Accessor Auth Mount Role Login Subject"
check "  one row per revoked ns/prod identity" "$(tail -n +2 <<<"$OUT" | wc -l)" 3
check "  rows show the accessor and mount" "$(yn grep -qE "^$SERIAL +$WL_ID +x509 +.* revoked +$WACC +token " <<<"$OUT")" yes
AUTHSVC_TOKEN=$WTOK ctl identities
check "authctl identities without sudo exits 1" "$RC" 1
AUTHSVC_TOKEN=$ROOT_TOKEN ctl identities -state=bogus
check "authctl identities -state=bogus exits 2" "$RC" 2

# ---------- restart: CA, records and revocations survive ----------
api GET sys/identities
BEFORE_IDS=$(jq -c '[.data.identities[]|[.serial,.state]]' <<<"$BODY")
api LIST pki/certs
BEFORE_CERTS=$(jq -c '.data.keys|sort' <<<"$BODY")
api LIST pki/certs/revoked
BEFORE_REVOKED=$(jq -c '.data.keys|sort' <<<"$BODY")
BEFORE_BUNDLE=$(curl -s "$ADDR/v1/svid/bundle" | jq -c '.keys')
stop_server
restart_server
check "the CA is the same after a restart" "$(curl -s "$ADDR/v1/pki/ca/pem")" "$(cat "$TMP/ca.pem")"
check "pki/bundle/pem is the same" "$(curl -s "$ADDR/v1/pki/bundle/pem")" "$(cat "$TMP/bundle-api.pem")"
check "the bundle keys are the same" "$(curl -s "$ADDR/v1/svid/bundle" | jq -c '.keys')" "$BEFORE_BUNDLE"
api LIST pki/certs
check "LIST pki/certs is the same" "$(jq -c '.data.keys|sort' <<<"$BODY")" "$BEFORE_CERTS"
api LIST pki/certs/revoked
check "LIST pki/certs/revoked is the same" "$(jq -c '.data.keys|sort' <<<"$BODY")" "$BEFORE_REVOKED"
api GET sys/identities
check "sys/identities is the same" "$(jq -c '[.data.identities[]|[.serial,.state]]' <<<"$BODY")" "$BEFORE_IDS"
api GET "pki/cert/$SERIAL" "" "-"
check "pki/cert keeps the revocation time" "$(jv '.data.revocation_time')" "$REV_TIME"
curl -s "$ADDR/v1/pki/crl/pem" >"$TMP/crl3.pem"
check "the CRL still lists both revoked serials" "$(yn revoked_in_crls "$SERIAL" "$TMP/crl3.pem")$(yn revoked_in_crls "$S2" "$TMP/crl3.pem")" yesyes
api POST svid/jwt/validate "$(jq -nc --arg t "$J2" '{token:$t,audience:"svc-c"}')" "$WTOK"
check_status 400 "the revoked JWT-SVID stays refused"
api POST svid/jwt/validate "$(jq -nc --arg t "$JWT" '{token:$t,audience:"svc-b"}')" "$WTOK"
check_status 200 "a JWT-SVID from before the restart still validates"
check "an SVID from before the restart still verifies" \
    "$(openssl verify -CAfile <(curl -s "$ADDR/v1/pki/bundle/pem") -purpose sslclient "$TMP/srv.pem" 2>&1 | sed 's/^.*: //')" OK
AUTHSVC_TOKEN=$WTOK ctl svid x509 -out-dir "$TMP/after-restart"
check "authctl svid x509 works after the restart" "$RC" 0
check "  and its SVID verifies" "$(openssl verify -CAfile "$TMP/after-restart/bundle.pem" -purpose sslserver "$TMP/after-restart/svid.pem" 2>&1 | sed 's/^.*: //')" OK

stop_server
finish
