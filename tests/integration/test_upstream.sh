#!/usr/bin/env bash
# An upstream CA: authsvc's CA becomes an intermediate under it. Peers trust only the upstream
# root; SVIDs and the HTTPS listener carry the intermediate; rotation keeps the root.
source "$AUTHSVC_SRC/tests/integration/lib.sh"

UP=$TMP/upstream
mkdir -p "$UP"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/O=Upstream Corp/CN=Upstream Root" -keyout "$UP/root.key" -out "$UP/root.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
chmod 600 "$UP/root.key"
cat >"$TMP/config.json" <<JSON
{"trust_domain": "example.org",
 "ca": {"ttl": "30s", "upstream_cert_file": "$UP/root.pem", "upstream_key_file": "$UP/root.key"}}
JSON
start_server --config "$TMP/config.json"

curl -s "$ADDR/v1/pki/bundle/pem" >"$TMP/bundle.pem"
check "the bundle is the upstream root" "$(openssl x509 -in "$TMP/bundle.pem" -noout -subject)" \
    "$(openssl x509 -in "$UP/root.pem" -noout -subject)"
curl -s "$ADDR/v1/pki/ca/pem" >"$TMP/ca.pem"
check "our CA is issued by the upstream" "$(openssl x509 -in "$TMP/ca.pem" -noout -issuer | sed 's/^issuer=//')" \
    "$(openssl x509 -in "$UP/root.pem" -noout -subject | sed 's/^subject=//')"
check "our CA verifies against the upstream root" \
    "$(openssl verify -CAfile "$UP/root.pem" "$TMP/ca.pem" 2>&1 | tail -1)" "$TMP/ca.pem: OK"
curl -s "$ADDR/v1/pki/ca_chain" >"$TMP/chain.pem"
check "pki/ca_chain holds our CA then the upstream root" "$(grep -c 'BEGIN CERTIFICATE' "$TMP/chain.pem")" 2

api GET svid/bundle "" -
check "svid/bundle: one x509-svid key (the root)" "$(jqb '[.keys[]|select(.use=="x509-svid")]|length')" 1
ROOT_B64=$(openssl x509 -in "$UP/root.pem" -outform DER | base64 -w0)
check "its x5c is the upstream root" "$(jqb '[.keys[]|select(.use=="x509-svid")][0].x5c[0]')" "$ROOT_B64"

# An X.509-SVID: leaf + intermediate from authctl; verifies with only the root trusted.
api POST auth/token/create '{"spiffe_ids":["spiffe://example.org/web"],"policies":["default"]}'
WL=$(jqb .auth.client_token)
AUTHSVC_TOKEN=$WL "$AUTHCTL" svid x509 -out-dir="$TMP/svid" >/dev/null
check "svid.pem holds the leaf and our intermediate" "$(grep -c 'BEGIN CERTIFICATE' "$TMP/svid/svid.pem")" 2
openssl x509 -in "$TMP/svid/svid.pem" -out "$TMP/leaf.pem"
awk 'n>=1{print} /END CERTIFICATE/{n++}' "$TMP/svid/svid.pem" >"$TMP/inter.pem"
for purpose in sslclient sslserver; do
    check "SVID verifies against the root alone ($purpose)" \
        "$(openssl verify -CAfile "$TMP/svid/bundle.pem" -untrusted "$TMP/inter.pem" -purpose $purpose "$TMP/leaf.pem" 2>&1 | tail -1)" \
        "$TMP/leaf.pem: OK"
done
check "without the intermediate it does not verify" \
    "$(openssl verify -CAfile "$TMP/svid/bundle.pem" "$TMP/leaf.pem" >/dev/null 2>&1 && echo ok || echo refused)" refused

api POST svid/x509 '{}' "$WL"
check_status 200 "svid/x509 with a generated key"
check "ca_chain holds one intermediate" "$(jqb '.data.ca_chain|length')" 1
check "ca_chain[0] is our CA" "$(jqb '.data.ca_chain[0]')" "$(cat "$TMP/ca.pem")"

# The HTTPS listener serves leaf + intermediate; curl trusts only the upstream root.
check "HTTPS listener verifies against the upstream root" \
    "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$UP/root.pem" "https://localhost:$TLS_PORT/v1/sys/health" --resolve "localhost:$TLS_PORT:127.0.0.1")" 200

# Rotation under the upstream: the trust bundle keeps the root, the intermediate changes.
api POST pki/rotate '{"activate_after":"1s"}'
check_status 200 "pki/rotate"
sleep 3
curl -s "$ADDR/v1/pki/ca/pem" >"$TMP/ca2.pem"
check "a new intermediate is active" "$(cmp -s "$TMP/ca.pem" "$TMP/ca2.pem" && echo same || echo new)" new
check "it is issued by the upstream too" \
    "$(openssl verify -CAfile "$UP/root.pem" "$TMP/ca2.pem" 2>&1 | tail -1)" "$TMP/ca2.pem: OK"
check "the bundle is still the root" "$(curl -s "$ADDR/v1/pki/bundle/pem" | openssl x509 -noout -subject)" \
    "$(openssl x509 -in "$UP/root.pem" -noout -subject)"
AUTHSVC_TOKEN=$WL "$AUTHCTL" svid x509 -out-dir="$TMP/svid2" >/dev/null
openssl x509 -in "$TMP/svid2/svid.pem" -out "$TMP/leaf2.pem"
awk 'n>=1{print} /END CERTIFICATE/{n++}' "$TMP/svid2/svid.pem" >"$TMP/inter2.pem"
check "an SVID from the new intermediate verifies against the same root" \
    "$(openssl verify -CAfile "$UP/root.pem" -untrusted "$TMP/inter2.pem" "$TMP/leaf2.pem" 2>&1 | tail -1)" \
    "$TMP/leaf2.pem: OK"

# Restart: the intermediates are loaded under the upstream again.
stop_server
restart_server
check "after a restart the active intermediate is the same" "$(curl -s "$ADDR/v1/pki/ca/pem")" "$(cat "$TMP/ca2.pem")"

# A broken upstream stops the server at start with exit 2 (bad config).
stop_server
chmod 644 "$UP/root.key"
rc=0
"$AUTHSVC" server --dev --data-dir "$DATA" --listen "127.0.0.1:$PORT" --tls-listen "127.0.0.1:$TLS_PORT" \
    --config "$TMP/config.json" >/dev/null 2>"$TMP/bad.log" || rc=$?
check "an upstream key readable by others is refused at start (exit 2)" "$rc" 2
finish
