#!/usr/bin/env bash
# test_rotation.sh: CA rotation without a gap (SPEC §1 HTTPS listener, §6 CA rotation and bundles).
# Part 1: a server with a 40 s CA and 8 s SVIDs is driven for up to ~70 s: every ~0.5 s a workload
# fetches the bundle, obtains an X.509-SVID for a fresh CSR and verifies it against that bundle
# (SPIRE's promise: the next CA is in the bundle before it signs anything), and an older SVID still
# valid must verify too (an old CA stays until its last SVID expires). Two automatic rotations
# must be seen (3 issuers), spiffe_sequence must increase and change with every key change, and
# the HTTPS listener must still verify against the bundle. Part 2: pki/rotate with activate_after,
# then a restart keeping the CA generations and the active CA.
set -euo pipefail
# shellcheck source=lib.sh
source "$AUTHSVC_SRC/tests/integration/lib.sh"

jv() { jq -r "$1" <<<"$BODY" 2>/dev/null || echo "<not json>"; }
yn() { if "$@"; then echo yes; else echo no; fi; }
in_range() { [[ "$1" =~ ^-?[0-9]+$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
RFC3339='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$'
# new_csr: a fresh P-256 key and CSR in $TMP/w.key, $TMP/w.csr; prints the JSON body
new_csr() {
    openssl ecparam -name prime256v1 -genkey -noout -out "$TMP/w.key" 2>/dev/null
    openssl req -new -key "$TMP/w.key" -subj "/CN=w" -out "$TMP/w.csr" 2>/dev/null
    jq -nc --rawfile csr "$TMP/w.csr" '{csr:$csr}'
}
# issuer FILE / subject FILE: the DN of a certificate
issuer() { openssl x509 -in "$1" -noout -issuer 2>/dev/null | cut -d= -f2-; }
subject() { openssl x509 -in "$1" -noout -subject 2>/dev/null | cut -d= -f2-; }
not_after() { date -d "$(openssl x509 -in "$1" -noout -enddate | cut -d= -f2)" +%s; }
# bundle_subjects FILE: the subjects of every certificate in a PEM bundle, one a line, sorted
bundle_subjects() {
    openssl crl2pkcs7 -nocrl -certfile "$1" 2>/dev/null | openssl pkcs7 -print_certs -noout 2>/dev/null |
        sed -n 's/^subject=//p' | sort
}
# bundle_count FILE: how many certificates a PEM file holds
bundle_count() { grep -c 'BEGIN CERTIFICATE' "$1" || true; }
# split_bundle FILE DIR: one file per certificate of FILE into DIR, named by subject hash
split_bundle() {
    local f
    rm -rf "$2.tmp"
    mkdir -p "$2" "$2.tmp"
    awk -v d="$2.tmp" '/BEGIN CERTIFICATE/ { n++ } n { print > (d "/c." n) }' "$1"
    for f in "$2.tmp"/c.*; do
        if [ -e "$f" ]; then cp "$f" "$2/$(openssl x509 -in "$f" -noout -subject_hash).pem"; fi
    done
    rm -rf "$2.tmp"
}
# listener_issuer: the issuer DN of the HTTPS listener's certificate
listener_issuer() {
    openssl s_client -connect "127.0.0.1:$TLS_PORT" -servername localhost </dev/null 2>/dev/null |
        openssl x509 -noout -issuer 2>/dev/null | cut -d= -f2-
}
# now_ms: the wall clock in milliseconds
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
# pace START_MS: sleeps what is left of 500 ms since START_MS
pace() {
    local left=$((500 - ($(now_ms) - $1)))
    if [ "$left" -gt 0 ]; then sleep "0.$(printf '%03d' "$left")"; fi
}
mktoken() {
    api POST auth/token/create '{"spiffe_ids":["spiffe://example.org/ns/prod/sa/web"],"policies":["default"]}'
    check_status 200 "root creates the workload token"
    WTOK=$(jv '.auth.client_token')
}

# ======== part 1: automatic rotation under load ========
DATA=$TMP/data1
PORT=$(free_port)
TLS_PORT=$(free_port)
cat >"$TMP/config.json" <<EOF
{"trust_domain": "example.org", "data_dir": "$DATA",
 "listen": "127.0.0.1:$PORT", "tls_listen": "127.0.0.1:$TLS_PORT",
 "ca": {"ttl": "40s"}, "svid": {"default_ttl": "8s"}}
EOF
start_server --config "$TMP/config.json"
START=$SECONDS
mktoken

ITER=0
REQ_FAIL=0
VERIFY_FAIL=0
OLD_VERIFY=0
OLD_FAIL=0
LIFE_FAIL=0
CAP_FAIL=0
SEQ_DECREASE=0
SEQ_STALE=0
FIRST_SEQ=""
LAST_SEQ=""
LAST_KEYS=""
MAX_BUNDLE=0
declare -A ISSUERS=()
LEAVES=()
mkdir -p "$TMP/leaves" "$TMP/cas"
# Until three issuers were seen and a few seconds more passed (to verify old SVIDs across the
# last switch), at most 72 s.
SWITCH_AT=""
while [ $((SECONDS - START)) -lt 72 ]; do
    ITER=$((ITER + 1))
    ITER_START=$(now_ms)
    # the bundle first, as a workload does before it trusts what it is about to get
    if ! curl -sf -o "$TMP/b.pem" "$ADDR/v1/pki/bundle/pem"; then
        REQ_FAIL=$((REQ_FAIL + 1))
        echo "iteration $ITER: GET pki/bundle/pem failed" >&2
        pace "$ITER_START"
        continue
    fi
    split_bundle "$TMP/b.pem" "$TMP/cas"
    n=$(bundle_count "$TMP/b.pem")
    if [ "$n" -gt "$MAX_BUNDLE" ]; then MAX_BUNDLE=$n; fi
    if api GET svid/bundle "" "-" && [ "$STATUS" = 200 ]; then
        seq=$(jv '.spiffe_sequence')
        keys=$(jq -c '[.keys[]|tostring]|sort' <<<"$BODY")
        if [ -z "$FIRST_SEQ" ]; then FIRST_SEQ=$seq; fi
        if [ -n "$LAST_SEQ" ] && [ "$seq" -lt "$LAST_SEQ" ]; then
            SEQ_DECREASE=$((SEQ_DECREASE + 1))
            echo "iteration $ITER: spiffe_sequence went from $LAST_SEQ to $seq" >&2
        fi
        if [ -n "$LAST_KEYS" ] && [ "$keys" != "$LAST_KEYS" ] && [ "$seq" = "$LAST_SEQ" ]; then
            SEQ_STALE=$((SEQ_STALE + 1))
            echo "iteration $ITER: the bundle keys changed but spiffe_sequence stayed $seq" >&2
        fi
        LAST_SEQ=$seq
        LAST_KEYS=$keys
    else
        REQ_FAIL=$((REQ_FAIL + 1))
        echo "iteration $ITER: GET svid/bundle: $STATUS $BODY" >&2
    fi
    api POST svid/x509 "$(new_csr)" "$WTOK"
    if [ "$STATUS" != 200 ]; then
        REQ_FAIL=$((REQ_FAIL + 1))
        echo "iteration $ITER: POST svid/x509: $STATUS $BODY" >&2
        pace "$ITER_START"
        continue
    fi
    leaf=$TMP/leaves/$ITER.pem
    jq -r '.data.certificate' <<<"$BODY" >"$leaf"
    if ! out=$(openssl verify -CAfile "$TMP/b.pem" -purpose sslclient "$leaf" 2>&1); then
        VERIFY_FAIL=$((VERIFY_FAIL + 1))
        echo "iteration $ITER (t=$((SECONDS - START))s): the new SVID does not verify against the bundle fetched just before: $out" >&2
        echo "  issuer: $(issuer "$leaf"); bundle: $(bundle_subjects "$TMP/b.pem" | paste -sd'|' -)" >&2
    fi
    iss=$(issuer "$leaf")
    if [ -z "${ISSUERS[$iss]+x}" ]; then
        ISSUERS[$iss]=$((SECONDS - START))
        echo "t=$((SECONDS - START))s: new issuer $iss (bundle holds $n CAs, sequence $LAST_SEQ)"
        if [ "${#ISSUERS[@]}" -ge 3 ] && [ -z "$SWITCH_AT" ]; then SWITCH_AT=$SECONDS; fi
    fi
    now=$(date +%s)
    na=$(not_after "$leaf")
    nb=$(date -d "$(openssl x509 -in "$leaf" -noout -startdate | cut -d= -f2)" +%s)
    # the 8 s default (+10 s backdating), or less when capped at the CA's notAfter
    if ! in_range $((na - nb)) 1 18; then
        LIFE_FAIL=$((LIFE_FAIL + 1))
        echo "iteration $ITER: SVID life $((na - nb))s, expected at most 8 s + 10 s" >&2
    fi
    ca_file=$TMP/cas/$(openssl x509 -in "$leaf" -noout -issuer_hash).pem
    if [ -e "$ca_file" ] && [ "$na" -gt "$(not_after "$ca_file")" ]; then
        CAP_FAIL=$((CAP_FAIL + 1))
        echo "iteration $ITER: SVID notAfter $na is after its CA's $(not_after "$ca_file")" >&2
    fi
    LEAVES+=("$leaf:$na")
    # the oldest SVID still valid for 1 s more must verify against the current bundle
    for e in "${LEAVES[@]}"; do
        f=${e%:*}
        t=${e##*:}
        if [ "$t" -gt $((now + 1)) ]; then
            OLD_VERIFY=$((OLD_VERIFY + 1))
            if ! out=$(openssl verify -CAfile "$TMP/b.pem" -purpose sslclient "$f" 2>&1); then
                OLD_FAIL=$((OLD_FAIL + 1))
                echo "iteration $ITER: an SVID valid until $t (now $now) no longer verifies against the bundle: $out" >&2
                echo "  issuer: $(issuer "$f"); bundle: $(bundle_subjects "$TMP/b.pem" | paste -sd'|' -)" >&2
            fi
            break
        fi
    done
    if [ -n "$SWITCH_AT" ] && [ $((SECONDS - SWITCH_AT)) -ge 5 ]; then break; fi
    pace "$ITER_START"
done
echo "loop: $ITER iterations in $((SECONDS - START)) s, ${#ISSUERS[@]} issuers, sequence $FIRST_SEQ -> $LAST_SEQ, at most $MAX_BUNDLE CAs in the bundle"
check "every request of the loop succeeded" "$REQ_FAIL" 0
check "every new SVID verified against the bundle fetched before it" "$VERIFY_FAIL" 0
check "every older SVID still valid verified against the current bundle" "$OLD_FAIL" 0
check "older SVIDs were checked" "$(yn [ "$OLD_VERIFY" -ge 10 ])" yes
check "every SVID lived at most the 8 s default (+10 s backdating)" "$LIFE_FAIL" 0
check "no SVID outlived its CA" "$CAP_FAIL" 0
check "at least 3 distinct issuers (two rotations)" "$(yn [ "${#ISSUERS[@]}" -ge 3 ])" yes
check "spiffe_sequence never decreased" "$SEQ_DECREASE" 0
check "spiffe_sequence changed with every change of the bundle keys" "$SEQ_STALE" 0
check "spiffe_sequence increased at least twice" "$(yn [ "$((LAST_SEQ - FIRST_SEQ))" -ge 2 ])" yes
# Coverage, not speed: at most one iteration per 0.5 s, each ~0.3 s of openssl work, slower under
# ASan on a loaded box; 40 over ~50 s still means the rotations were crossed while issuing.
check "enough iterations ran (at most one every ~0.5 s)" "$(yn [ "$ITER" -ge 40 ])" yes

# the bundle does not keep CAs that expired long ago (an old CA leaves after its last SVID)
curl -s "$ADDR/v1/pki/bundle/pem" >"$TMP/b.pem"
split_bundle "$TMP/b.pem" "$TMP/final"
STALE=0
for f in "$TMP/final"/*.pem; do
    if [ "$(not_after "$f")" -lt $(($(date +%s) - 15)) ]; then
        STALE=$((STALE + 1))
        echo "the bundle still holds $(subject "$f"), expired at $(not_after "$f")" >&2
    fi
done
check "the bundle holds no CA expired more than 15 s ago" "$STALE" 0
check "every generation in the bundle has a distinct subject" "$(bundle_subjects "$TMP/b.pem" | uniq -d | wc -l)" 0
api GET svid/bundle "" "-"
check "svid/bundle has one x509-svid key per bundle CA" "$(jv '[.keys[]|select(.use=="x509-svid")]|length')" "$(bundle_count "$TMP/b.pem")"

# the HTTPS listener after two rotations
check "the HTTPS listener verifies against the bundle after rotations" \
    "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TMP/b.pem" "https://127.0.0.1:$TLS_PORT/v1/sys/health" || true)" 200
check "the HTTPS listener verifies as localhost" \
    "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TMP/b.pem" --resolve "localhost:$TLS_PORT:127.0.0.1" "https://localhost:$TLS_PORT/v1/sys/health" || true)" 200
curl -s "$ADDR/v1/pki/ca/pem" >"$TMP/active.pem"
check "the HTTPS listener's certificate was re-issued by the active CA" "$(listener_issuer)" "$(subject "$TMP/active.pem")"
api GET pki/crl/pem "" "-"
check "one CRL per CA generation in the bundle" "$(grep -c 'BEGIN X509 CRL' <<<"$BODY")" "$(bundle_count "$TMP/b.pem")"

stop_server

# ======== part 2: pki/rotate and a restart ========
unset DATA PORT TLS_PORT
DATA=$TMP/data2
start_server
mktoken
curl -s "$ADDR/v1/pki/ca/pem" >"$TMP/ca1.pem"
CA1=$(subject "$TMP/ca1.pem")
api GET svid/bundle "" "-"
SEQ0=$(jv '.spiffe_sequence')
check "a fresh server's bundle holds one CA" "$(curl -s "$ADDR/v1/pki/bundle/pem" | grep -c 'BEGIN CERTIFICATE')" 1
api POST svid/x509 "$(new_csr)" "$WTOK"
jq -r '.data.certificate' <<<"$BODY" >"$TMP/before.pem"

api POST pki/rotate '{"activate_after":"2s"}' "$WTOK"
check_status 403 "pki/rotate needs sudo"
T0=$(date +%s)
api POST pki/rotate '{"activate_after":"2s"}'
check_status 200 "root rotates with activate_after 2s"
ACT_AT=$(jv '.data.activate_at')
check "activate_at is now + 2 s" "$(yn in_range "$ACT_AT" $((T0 + 1)) $((T0 + 3)))" yes
check_match "activate_at_rfc3339" "$(jv '.data.activate_at_rfc3339')" "$RFC3339"
check "the answer's spiffe_sequence increased" "$(yn [ "$(jv '.data.spiffe_sequence')" -gt "$SEQ0" ])" yes
SEQ1=$(jv '.data.spiffe_sequence')
curl -s "$ADDR/v1/pki/bundle/pem" >"$TMP/b2.pem"
check "the bundle gains the next CA at once" "$(bundle_count "$TMP/b2.pem")" 2
CA2=$(bundle_subjects "$TMP/b2.pem" | grep -vxF "$CA1" || true)
check "the next CA has a distinct subject" "$(yn [ -n "$CA2" ])" yes
api GET svid/bundle "" "-"
check "svid/bundle has two x509-svid keys" "$(jv '[.keys[]|select(.use=="x509-svid")]|length')" 2
check "svid/bundle's sequence is the one pki/rotate returned" "$(jv '.spiffe_sequence')" "$SEQ1"
api POST svid/x509 "$(new_csr)" "$WTOK"
jq -r '.data.certificate' <<<"$BODY" >"$TMP/pending.pem"
check "before activate_at, SVIDs still come from the old CA" "$(issuer "$TMP/pending.pem")" "$CA1"
check "pki/ca/pem is still the old CA" "$(subject <(curl -s "$ADDR/v1/pki/ca/pem"))" "$CA1"
while [ "$(date +%s)" -le $((ACT_AT + 1)) ]; do sleep 0.2; done
api POST svid/x509 "$(new_csr)" "$WTOK"
check_status 200 "an SVID after activation"
jq -r '.data.certificate' <<<"$BODY" >"$TMP/after.pem"
check "after activate_at, new SVIDs come from the new CA" "$(issuer "$TMP/after.pem")" "$CA2"
check "pki/ca/pem is the new CA" "$(subject <(curl -s "$ADDR/v1/pki/ca/pem"))" "$CA2"
curl -s "$ADDR/v1/pki/bundle/pem" >"$TMP/b3.pem"
check "the old CA is still in the bundle" "$(yn grep -qxF "$CA1" < <(bundle_subjects "$TMP/b3.pem"))" yes
check "the answer's bundle has both CAs" "$(jv '.data.bundle' | grep -c 'BEGIN CERTIFICATE')" 2
check "an SVID of the old CA verifies against the bundle" "$(openssl verify -CAfile "$TMP/b3.pem" -purpose sslclient "$TMP/before.pem" 2>&1 | sed 's/^.*: //')" OK
check "an SVID of the new CA verifies against the bundle" "$(openssl verify -CAfile "$TMP/b3.pem" -purpose sslclient "$TMP/after.pem" 2>&1 | sed 's/^.*: //')" OK
check "the HTTPS listener verifies against the bundle after pki/rotate" \
    "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TMP/b3.pem" "https://127.0.0.1:$TLS_PORT/v1/sys/health" || true)" 200
check "the HTTPS listener's certificate comes from the new CA" "$(listener_issuer)" "$CA2"
check "pki/crl/pem has a CRL per generation" "$(curl -s "$ADDR/v1/pki/crl/pem" | grep -c 'BEGIN X509 CRL')" 2

# a rotation with the default activate_after: the bundle refresh hint (300 s)
T0=$(date +%s)
api POST pki/rotate '{}'
check_status 200 "pki/rotate with no activate_after"
check "the default activate_after is the 300 s refresh hint" "$(yn in_range "$(($(jv '.data.activate_at') - T0))" 299 301)" yes
curl -s "$ADDR/v1/pki/bundle/pem" >"$TMP/b4.pem"
check "the bundle holds three generations" "$(bundle_count "$TMP/b4.pem")" 3
api GET svid/bundle "" "-"
BEFORE_KEYS=$(jq -c '[.keys[]|tostring]|sort' <<<"$BODY")
BEFORE_SEQ=$(jv '.spiffe_sequence')
ACTIVE_BEFORE=$(subject <(curl -s "$ADDR/v1/pki/ca/pem"))

# a restart keeps the generations, the pending one and the active CA
stop_server
restart_server
check "after a restart, the bundle has the same generations" "$(bundle_subjects <(curl -s "$ADDR/v1/pki/bundle/pem"))" \
    "$(bundle_subjects "$TMP/b4.pem")"
check "after a restart, the active CA is the same" "$(subject <(curl -s "$ADDR/v1/pki/ca/pem"))" "$ACTIVE_BEFORE"
api GET svid/bundle "" "-"
check "after a restart, the bundle keys are the same" "$(jq -c '[.keys[]|tostring]|sort' <<<"$BODY")" "$BEFORE_KEYS"
check "after a restart, spiffe_sequence is the same" "$(jv '.spiffe_sequence')" "$BEFORE_SEQ"
api POST svid/x509 "$(new_csr)" "$WTOK"
check_status 200 "an SVID after the restart"
jq -r '.data.certificate' <<<"$BODY" >"$TMP/restarted.pem"
check "  from the same active CA" "$(issuer "$TMP/restarted.pem")" "$ACTIVE_BEFORE"
check "  and it verifies" "$(openssl verify -CAfile "$TMP/b4.pem" -purpose sslclient "$TMP/restarted.pem" 2>&1 | sed 's/^.*: //')" OK
check "the HTTPS listener verifies after the restart" \
    "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TMP/b4.pem" "https://127.0.0.1:$TLS_PORT/v1/sys/health" || true)" 200

stop_server
finish
