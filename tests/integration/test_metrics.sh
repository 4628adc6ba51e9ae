#!/usr/bin/env bash
# test_metrics.sh: GET sys/metrics (Prometheus text format 0.0.4, authsvc/metrics.c):
#   - every scrape passes a strict exposition-format parser (node/promcheck.js), with the right
#     content type; the endpoint wants read on sys/metrics (default policy and no token: 403);
#   - counters move with the requests made, always compared between two scrapes (deltas), never
#     as absolute values: requests by route and code (including _unmatched and a 403), request
#     latency histogram counts, SVIDs by kind, jwt logins by result, revocations by kind;
#   - the CA notAfter gauge equals the notAfter of the certificate pki/ca/pem serves;
#   - the store commit histogram grows with writes; process RSS is positive;
#   - the jwks and intentions cache counters grow with logins and connect/authorize checks.
set -euo pipefail
# shellcheck source=lib.sh
source "$AUTHSVC_SRC/tests/integration/lib.sh"

NODE_DIR=$AUTHSVC_SRC/tests/integration/node
if ! command -v node >/dev/null 2>&1; then
    echo "FAIL: node is not installed (tools/test installs it)" >&2
    exit 1
fi
if [ ! -d "$NODE_DIR/node_modules/jose" ]; then
    echo "FAIL: $NODE_DIR/node_modules/jose is missing: run tools/test, or npm ci in $NODE_DIR" >&2
    exit 1
fi

jv() { jq -r "$1" <<<"$BODY" 2>/dev/null || echo "<not json>"; }
yn() { if "$@"; then echo yes; else echo no; fi; }

# scrape NAME [TOKEN]: GET sys/metrics into $TMP/NAME.prom (headers in $TMP/NAME.hdr), checks the
# status, the content type and that promcheck accepts it; its JSON goes to $TMP/NAME.json.
# Default token: root. A failed scrape leaves an empty sample list so later deltas fail loudly.
scrape() {
    local name=$1 token=${2:-$ROOT_TOKEN} code rc=0
    code=$(curl -s -o "$TMP/$name.prom" -D "$TMP/$name.hdr" -w '%{http_code}' \
        -H "X-Vault-Token: $token" "$ADDR/v1/sys/metrics") || code=000
    check "scrape $name: status" "$code" 200
    check "scrape $name: content type" \
        "$(tr -d '\r' <"$TMP/$name.hdr" | sed -n 's/^[Cc]ontent-[Tt]ype: *//p')" \
        "text/plain; version=0.0.4; charset=utf-8"
    node "$NODE_DIR/promcheck.js" "$TMP/$name.prom" >"$TMP/$name.json" 2>"$TMP/$name.err" || rc=$?
    check "scrape $name: promcheck accepts it" "$rc" 0
    if [ "$rc" -ne 0 ]; then
        echo "  promcheck: $(cat "$TMP/$name.err")" >&2
        echo '{"samples":[],"types":{}}' >"$TMP/$name.json"
    fi
}
# val NAME METRIC LABELS_JSON: the value of the sample with exactly those labels in scrape NAME;
# 0 when absent (counters are only printed once non-zero), "many" if the labels are ambiguous.
val() {
    jq -r --arg n "$2" --argjson l "$3" \
        '[.samples[] | select(.name == $n and .labels == $l) | .value] |
         if length == 0 then 0 elif length == 1 then .[0] else "many" end' "$TMP/$1.json"
}
# delta A B METRIC LABELS_JSON: val in scrape B minus val in scrape A (integers: counters)
delta() {
    local a b
    a=$(val "$1" "$3" "$4")
    b=$(val "$2" "$3" "$4")
    if [[ "$a" =~ ^[0-9]+$ ]] && [[ "$b" =~ ^[0-9]+$ ]]; then echo $((b - a)); else echo "[$a -> $b]"; fi
}
# check_delta DESC A B METRIC LABELS_JSON EXPECTED
check_delta() { check "$1" "$(delta "$2" "$3" "$4" "$5")" "$6"; }
# cache_lookups SCRAPE CACHE: hits + misses of one cache
cache_lookups() {
    local h m
    h=$(val "$1" authsvc_cache_requests_total "{\"cache\":\"$2\",\"result\":\"hit\"}")
    m=$(val "$1" authsvc_cache_requests_total "{\"cache\":\"$2\",\"result\":\"miss\"}")
    echo $((h + m))
}
# login_result STATUS: the result label the server documents for a login answered with STATUS
login_result() {
    case $1 in
    200) echo success ;; 400) echo invalid ;; 403) echo denied ;;
    429) echo rate_limited ;; 500) echo error ;; 503) echo store_unavailable ;; *) echo other ;;
    esac
}
# login ROLE JWT: POST auth/jwt/login without a token
login() { api POST auth/jwt/login "$(jq -nc --arg r "$1" --arg j "$2" '{role:$r, jwt:$j}')" -; }

# Keys first (RSA generation is the slow part), then the server.
K=$TMP/keys
mkdir -p "$K"
for k in rsa1 rsa2; do
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$K/$k.key" 2>/dev/null
done
openssl pkey -in "$K/rsa1.key" -pubout -out "$K/rsa1.pub"
# good: signed by the configured key; badsig: same claims signed by a key the mount does not know;
# wrongaud: right key, audience not bound by the role.
# shellcheck disable=SC2016 # "$now" is mint_jwt.js syntax, not a shell expansion
claims='{iss:"https://issuer.test", sub:"web", aud:"aud1", iat:"$now", nbf:"$now-5", exp:"$now+600"}'
jq -nc --arg k1 "$K/rsa1.key" --arg k2 "$K/rsa2.key" "
    [{key:\$k1, kid:\"k1\", claims:$claims},
     {key:\$k2, kid:\"k1\", claims:$claims},
     {key:\$k1, kid:\"k1\", claims:($claims + {aud:\"other\"})}]" >"$TMP/specs.json"
mapfile -t JWTS < <(node "$NODE_DIR/mint_jwt.js" <"$TMP/specs.json")
check "jose minted three tokens" "${#JWTS[@]}" 3
JWT_GOOD=${JWTS[0]:-}
JWT_BADSIG=${JWTS[1]:-}
JWT_WRONGAUD=${JWTS[2]:-}

# shellcheck disable=SC2119 # no extra server flags
start_server
ID=spiffe://example.org/m/a
X509_BODY="{\"spiffe_id\":\"$ID\"}"

# ---------- access ----------
api POST auth/token/create '{"policies":["default"]}'
check_status 200 "create a default-policy token"
DEF_TOK=$(jv '.auth.client_token')
# A policy granting read on sys/metrics is enough (no root needed).
api POST sys/policy/metrics-reader '{"policy":"{\"path\":{\"sys/metrics\":{\"capabilities\":[\"read\"]}}}"}'
check_status 204 "write policy metrics-reader"
api POST auth/token/create '{"policies":["metrics-reader"]}'
check_status 200 "create a metrics-reader token"
READER_TOK=$(jv '.auth.client_token')
scrape sa
api GET sys/metrics "" "$DEF_TOK"
check_status 403 "a default-policy token may not read sys/metrics"
api GET sys/metrics "" -
check_status 403 "no token may not read sys/metrics"
api GET sys/metrics "" "ast.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
check_status 403 "an unknown token may not read sys/metrics"
check "a refused scrape carries no metrics" "$(yn grep -q authsvc_ <<<"$BODY")" no

# ---------- requests, latency, SVIDs ----------
scrape s0 "$READER_TOK"
check "the scrape is served whole (ends with a newline)" "$(tail -c1 "$TMP/s0.prom" | od -An -c | tr -d ' ')" '\n'
check "requests_total is typed counter" "$(jq -r '.types.authsvc_requests_total' "$TMP/s0.json")" counter
check "request_duration_seconds is typed histogram" \
    "$(jq -r '.types.authsvc_request_duration_seconds' "$TMP/s0.json")" histogram
check "ca_not_after_seconds is typed gauge" "$(jq -r '.types.authsvc_ca_not_after_seconds' "$TMP/s0.json")" gauge
check_delta "the three refused scrapes: requests_total{sys/metrics,403} +3" \
    sa s0 authsvc_requests_total '{"route":"sys/metrics","code":"403"}' 3
for _ in 1 2 3; do
    api POST svid/x509 "$X509_BODY"
    check_status 200 "POST svid/x509 (server-generated key)"
done
SERIAL=$(jv '.data.serial_number')
api POST svid/jwt "{\"audience\":\"x\",\"spiffe_id\":\"$ID\"}"
check_status 200 "POST svid/jwt"
api GET no/such/path
check_status 404 "GET /v1/no/such/path"
api POST svid/x509 "$X509_BODY" -
check_status 403 "POST svid/x509 without a token"
scrape s1
R='{"route":"svid/x509"}'
check_delta "requests_total{svid/x509,200} +3" s0 s1 authsvc_requests_total '{"route":"svid/x509","code":"200"}' 3
check_delta "svids_issued_total{x509} +3" s0 s1 authsvc_svids_issued_total '{"kind":"x509"}' 3
check_delta "request_duration_seconds_count{svid/x509} +4 (three 200s and the 403)" \
    s0 s1 authsvc_request_duration_seconds_count "$R" 4
check_delta "svids_issued_total{jwt} +1" s0 s1 authsvc_svids_issued_total '{"kind":"jwt"}' 1
check_delta "requests_total{svid/jwt,200} +1" s0 s1 authsvc_requests_total '{"route":"svid/jwt","code":"200"}' 1
check_delta "requests_total{_unmatched,404} +1" s0 s1 authsvc_requests_total '{"route":"_unmatched","code":"404"}' 1
check_delta "requests_total{svid/x509,403} +1" s0 s1 authsvc_requests_total '{"route":"svid/x509","code":"403"}' 1
check_delta "a refused request issues no SVID (x509 still +3 only)" s0 s1 authsvc_svids_issued_total '{"kind":"x509"}' 3
# The scrape does not count itself: s1 sees s0 (one 200 on sys/metrics) but not s1.
check_delta "requests_total{sys/metrics,200}: the earlier scrape only" \
    s0 s1 authsvc_requests_total '{"route":"sys/metrics","code":"200"}' 1
check "the raw request path is no label value" "$(yn grep -q 'no/such/path' "$TMP/s1.prom")" no
# Histogram buckets are cumulative: the le="0.005"... series never decreases along le.
check "request_duration buckets of svid/x509 are non-decreasing" \
    "$(jq -r '[.samples[] | select(.name=="authsvc_request_duration_seconds_bucket" and .labels.route=="svid/x509") | .value] as $v
        | [range(1; $v|length) | select($v[.] < $v[. - 1])] | length' "$TMP/s1.json")" 0

# ---------- logins ----------
api POST sys/auth/jwt '{"type":"jwt"}'
check_status 204 "mount jwt/"
api POST auth/jwt/config "$(jq -nc --rawfile a "$K/rsa1.pub" '{jwt_validation_pubkeys:[$a], bound_issuer:"https://issuer.test"}')"
check_status 204 "config jwt/ with a static RS256 key"
api POST auth/jwt/role/app '{"role_type":"jwt","user_claim":"sub","bound_audiences":["aud1"],"token_policies":["default"]}'
check_status 204 "role app"
scrape s2
login app "$JWT_GOOD"
check_status 200 "a good login"
login app "$JWT_BADSIG"
BADSIG_STATUS=$STATUS
check_match "a login signed by an unknown key is refused with 400 or 403" "$STATUS" '^40[03]$'
login app "$JWT_WRONGAUD"
WRONGAUD_STATUS=$STATUS
check_match "a login with a wrong audience is refused with 400 or 403" "$STATUS" '^40[03]$'
login nosuchrole "$JWT_GOOD"
NOROLE_STATUS=$STATUS
check_match "a login to an unknown role is refused with 400, 403 or 404" "$STATUS" '^40[034]$'
echo "login statuses: bad signature $BADSIG_STATUS, wrong audience $WRONGAUD_STATUS, unknown role $NOROLE_STATUS"
# A second good login: the jwks cache counter is checked against it below.
login app "$JWT_GOOD"
check_status 200 "a second good login with the same key"
scrape s3
L() { echo "{\"mount\":\"jwt\",\"result\":\"$1\"}"; }
check_delta "logins_total{jwt,success} +2" s2 s3 authsvc_logins_total "$(L success)" 2
# The three refusals, each counted under the result its status maps to.
declare -A WANT=([success]=2)
for s in "$BADSIG_STATUS" "$WRONGAUD_STATUS" "$NOROLE_STATUS"; do
    r=$(login_result "$s")
    WANT[$r]=$((${WANT[$r]:-0} + 1))
done
for r in success invalid denied rate_limited error store_unavailable other; do
    check_delta "logins_total{jwt,$r} +${WANT[$r]:-0}" s2 s3 authsvc_logins_total "$(L "$r")" "${WANT[$r]:-0}"
done
# Logins at paths where nothing is mounted are not counted by mount: a client must not be able
# to grow the output (or put bytes in it that are not UTF-8) through the URL.
login_at() { api POST "auth/$1/login" '{"role":"app","jwt":"x.y.z"}' -; }
for m in nomount1 nomount2 "$(printf 'a%.0s' $(seq 1 70))"; do
    login_at "$m"
    check_status 404 "a login where nothing is mounted (${m:0:10})"
done
api POST "auth/%ff%fe/login" '{"role":"app","jwt":"x.y.z"}' -
check_status 400 "a login path that is not UTF-8 is refused"
check "...with a JSON error" "$(jv '.errors[0]')" "invalid request path"
scrape s3
check "logins_total has only mount jwt" \
    "$(jq -r '[.samples[] | select(.name=="authsvc_logins_total") | .labels.mount] | unique | join(",")' "$TMP/s3.json")" jwt
check_delta "requests_total{auth/:mount/login,200} +2" s2 s3 authsvc_requests_total \
    '{"route":"auth/:mount/login","code":"200"}' 2
check "jwks cache: hits + misses grew with the logins" \
    "$(yn [ "$(cache_lookups s3 jwks)" -gt "$(cache_lookups s2 jwks)" ])" yes
# The second login found the keys cached: at least one hit between the scrapes.
check "jwks cache: the repeat login hit" \
    "$(yn [ "$(delta s2 s3 authsvc_cache_requests_total '{"cache":"jwks","result":"hit"}')" -ge 1 ])" yes

# ---------- revocations ----------
api POST auth/token/create '{"policies":["default"]}'
check_status 200 "create a token to revoke"
REV_ACC=$(jv '.auth.accessor')
scrape s4
api POST auth/token/revoke-accessor "$(jq -nc --arg a "$REV_ACC" '{accessor:$a}')"
check_status 204 "revoke-accessor"
api POST pki/revoke "$(jq -nc --arg s "$SERIAL" '{serial_number:$s}')"
check_status 200 "pki/revoke the last X.509-SVID"
scrape s5
check_delta "revocations_total{token} +1" s4 s5 authsvc_revocations_total '{"kind":"token"}' 1
check_delta "revocations_total{certificate} +1" s4 s5 authsvc_revocations_total '{"kind":"certificate"}' 1
# Revoking again changes nothing: the counter says "took effect", not "was asked".
api POST auth/token/revoke-accessor "$(jq -nc --arg a "$REV_ACC" '{accessor:$a}')"
REREV_TOKEN_STATUS=$STATUS
api POST pki/revoke "$(jq -nc --arg s "$SERIAL" '{serial_number:$s}')"
check_status 200 "pki/revoke of an already revoked serial"
scrape s6
check_delta "a second revoke-accessor of the same token is not counted (status $REREV_TOKEN_STATUS)" \
    s5 s6 authsvc_revocations_total '{"kind":"token"}' 0
check_delta "a second pki/revoke of the same serial is not counted" \
    s5 s6 authsvc_revocations_total '{"kind":"certificate"}' 0

# ---------- CA notAfter ----------
curl -s -o "$TMP/ca.pem" "$ADDR/v1/pki/ca/pem"
CA_END=$(openssl x509 -in "$TMP/ca.pem" -noout -enddate | sed 's/^notAfter=//')
CA_END_S=$(date -d "$CA_END" +%s)
check "ca_not_after_seconds{1,active,in_bundle} == notAfter of pki/ca/pem" \
    "$(val s6 authsvc_ca_not_after_seconds '{"generation":"1","state":"active","in_bundle":"true"}')" "$CA_END_S"
check "one CA generation reported" \
    "$(jq -r '[.samples[] | select(.name=="authsvc_ca_not_after_seconds")] | length' "$TMP/s6.json")" 1

# ---------- store commits, histograms, process ----------
# s0 -> s6 saw many writes (tokens, SVID records, mounts, revocations): each one a commit.
check "store_commit_duration_seconds_count grew with the writes" \
    "$(yn [ "$(delta s0 s6 authsvc_store_commit_duration_seconds_count '{}')" -gt 0 ])" yes
check "store commits have no labels on their buckets but le" \
    "$(jq -r '[.samples[] | select(.name=="authsvc_store_commit_duration_seconds_bucket") | .labels | keys | join(",")] | unique | join(" ")' "$TMP/s6.json")" le
# promcheck enforces _count == +Inf bucket; this checks the same from its output, every histogram.
check "every histogram's _count equals its +Inf bucket" \
    "$(jq -r '.samples as $s | [$s[] | select(.name | endswith("_count")) | . as $c
        | ($c.name | sub("_count$"; "_bucket")) as $b
        | [$s[] | select(.name == $b and .labels.le == "+Inf" and (.labels | del(.le)) == $c.labels) | .value]
        | select(. != [$c.value])] | length' "$TMP/s6.json")" 0
RSS=$(val s6 process_resident_memory_bytes '{}')
check "process_resident_memory_bytes > 0" "$(yn [ "$RSS" -gt 0 ])" yes
check_match "process_cpu_seconds_total is a number" "$(val s6 process_cpu_seconds_total '{}')" '^[0-9]+(\.[0-9]+)?(e[-+]?[0-9]+)?$'
check "audit_failures_total is 0" "$(val s6 authsvc_audit_failures_total '{}')" 0
check "audit_head_line is present (audit on by default)" \
    "$(yn [ "$(val s6 authsvc_audit_head_line '{}')" -gt 0 ])" yes

# ---------- intentions cache ----------
api POST connect/intentions "{\"source\":\"*\",\"destination\":\"$ID\",\"action\":\"allow\"}"
check_status 200 "create an intention"
# The leaf of the last svid/x509 was revoked above, so issue a fresh one for the checks.
api POST svid/x509 "$X509_BODY"
check_status 200 "a fresh X.509-SVID for connect/authorize"
jv '.data.certificate' >"$TMP/leaf2.pem"
AUTHZ=$(jq -nc --rawfile p "$TMP/leaf2.pem" --arg t "$ID" '{target:$t, client_cert_pem:$p}')
scrape s7
for n in 1 2; do
    api POST connect/authorize "$AUTHZ"
    check_status 200 "connect/authorize $n"
    check "connect/authorize $n is authorized" "$(jv '.data.authorized')" true
done
scrape s8
check "intentions cache: hits + misses +2 over two checks" \
    "$(($(cache_lookups s8 intentions) - $(cache_lookups s7 intentions)))" 2
# The intention write made the cached rule set stale; the second check finds it rebuilt.
check "intentions cache: the second check hit" \
    "$(yn [ "$(delta s7 s8 authsvc_cache_requests_total '{"cache":"intentions","result":"hit"}')" -ge 1 ])" yes
RATIO=$(val s8 authsvc_cache_hit_ratio '{"cache":"intentions"}')
check "cache_hit_ratio{intentions} is hits/(hits+misses)" "$RATIO" \
    "$(jq -nr --argjson h "$(val s8 authsvc_cache_requests_total '{"cache":"intentions","result":"hit"}')" \
        --argjson m "$(val s8 authsvc_cache_requests_total '{"cache":"intentions","result":"miss"}')" \
        '($h / ($h + $m) * 1000000 | round) / 1000000')"

stop_server
finish
