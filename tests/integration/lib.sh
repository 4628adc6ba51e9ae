# lib.sh: shared helpers for integration tests. Source it; it starts the real authsvc on free
# Tests run in parallel (meson is_parallel): everything here is per-test (ports, temp dir).
# loopback ports with a temporary data dir and talks to it with curl.
#
#   start_server [extra server args]   sets ADDR, TLS_ADDR, PORT, TLS_PORT, DATA, ROOT_TOKEN,
#                                      SRV_PID, SRV_LOG; exports AUTHSVC_ADDR
#   stop_server                        SIGTERM and wait (fails the test on a non-zero exit)
#   kill_server                        SIGKILL (crash simulation)
#   restart_server                     start again on the same data dir and ports
#   api METHOD PATH [JSON_BODY] [TOKEN]   sets STATUS and BODY (TOKEN defaults to ROOT_TOKEN;
#                                      pass "-" for no token)
#   jqb FILTER                         jq -r FILTER on BODY
#   check DESC ACTUAL EXPECTED         one assertion
#   check_status N [DESC]              asserts STATUS
#   finish                             prints "N passed, N failed", exits non-zero on failure
set -euo pipefail

: "${AUTHSVC_BUILD:?AUTHSVC_BUILD must point to the meson build dir}"
: "${AUTHSVC_SRC:?AUTHSVC_SRC must point to the source dir}"
AUTHSVC="$AUTHSVC_BUILD/authsvc/authsvc"
# Servers log at debug in tests: the per-request, per-login and per-SVID lines are then written,
# so every "never in the server log" check sees them too (test_server.sh checks the default).
export AUTHSVC_LOG_LEVEL=${AUTHSVC_LOG_LEVEL-debug}
AUTHCTL="$AUTHSVC_BUILD/tools/authctl"
TMP=$(mktemp -d /tmp/authsvc-it.XXXXXX)
PASSED=0
FAILED=0
SRV_PID=""
SRV_EXTRA=()

cleanup() {
    if [ -n "$SRV_PID" ] && kill -0 "$SRV_PID" 2>/dev/null; then
        kill -TERM "$SRV_PID" 2>/dev/null || true
        wait "$SRV_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
    local p
    for _ in $(seq 1 100); do
        # Below the kernel's ephemeral range (32768+), so no client socket holds the port.
        p=$((RANDOM % 12000 + 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    echo "no free port" >&2
    return 1
}

check() {
    local desc=$1 actual=$2 expected=$3
    if [ "$actual" == "$expected" ]; then
        PASSED=$((PASSED + 1))
    else
        FAILED=$((FAILED + 1))
        echo "FAIL: $desc: got [$actual], expected [$expected]" >&2
    fi
}

# check_match DESC ACTUAL REGEX
check_match() {
    local desc=$1 actual=$2 re=$3
    if [[ "$actual" =~ $re ]]; then
        PASSED=$((PASSED + 1))
    else
        FAILED=$((FAILED + 1))
        echo "FAIL: $desc: [$actual] does not match /$re/" >&2
    fi
}

check_status() {
    check "${2:-status of $LAST_REQ}" "$STATUS" "$1"
    if [ "$STATUS" != "$1" ]; then
        echo "  body: $BODY" >&2
    fi
}

finish() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit $?
}

# Waits until the server started last (SRV_PID) says it is ready in its own log lines (those
# after line $1 of SRV_LOG). Asking over HTTP instead could reach another test's server that
# holds the port when tests run in parallel. Returns 2 when it could not bind its ports.
wait_ready() {
    local from=${1:-0}
    for _ in $(seq 1 400); do
        if tail -n +"$((from + 1))" "$SRV_LOG" 2>/dev/null | grep -q ' ready (trust domain'; then
            return 0
        fi
        if ! kill -0 "$SRV_PID" 2>/dev/null; then
            wait "$SRV_PID" 2>/dev/null || true
            if tail -n +"$((from + 1))" "$SRV_LOG" | grep -q 'cannot listen'; then
                return 2
            fi
            echo "server exited early; log:" >&2
            cat "$SRV_LOG" >&2
            return 1
        fi
        sleep 0.05
    done
    echo "server did not become ready; log:" >&2
    cat "$SRV_LOG" >&2
    return 1
}

start_server() {
    DATA=${DATA:-$TMP/data}
    local fixed=0
    [ -n "${PORT:-}" ] && fixed=1
    SRV_LOG=$TMP/server.log
    SRV_OUT=$TMP/server.out
    SRV_EXTRA=("$@")
    touch "$SRV_LOG"
    local attempt rc
    for attempt in 1 2 3 4 5; do
        if [ "$fixed" -eq 0 ]; then
            PORT=$(free_port)
            TLS_PORT=$(free_port)
        fi
        ADDR="http://127.0.0.1:$PORT"
        TLS_ADDR="https://127.0.0.1:$TLS_PORT"
        local from
        from=$(wc -l <"$SRV_LOG")
        "$AUTHSVC" server --dev --data-dir "$DATA" --listen "127.0.0.1:$PORT" \
            --tls-listen "127.0.0.1:$TLS_PORT" "$@" >"$SRV_OUT" 2>>"$SRV_LOG" &
        SRV_PID=$!
        rc=0
        wait_ready "$from" || rc=$?
        # Another test may have taken a port between our check and the bind: try others.
        if [ "$rc" -eq 2 ] && [ "$fixed" -eq 0 ] && [ "$attempt" -lt 5 ]; then
            SRV_PID=""
            continue
        fi
        [ "$rc" -eq 0 ] || return 1
        break
    done
    ROOT_TOKEN=$(cat "$DATA/root-token")
    export AUTHSVC_ADDR=$ADDR
}

restart_server() {
    local from
    from=$(wc -l <"$SRV_LOG")
    "$AUTHSVC" server --dev --data-dir "$DATA" --listen "127.0.0.1:$PORT" \
        --tls-listen "127.0.0.1:$TLS_PORT" "${SRV_EXTRA[@]}" >"$SRV_OUT" 2>>"$SRV_LOG" &
    SRV_PID=$!
    wait_ready "$from"
}

stop_server() {
    kill -TERM "$SRV_PID"
    local rc=0
    wait "$SRV_PID" || rc=$?
    SRV_PID=""
    check "server exit code after SIGTERM" "$rc" 0
}

kill_server() {
    kill -KILL "$SRV_PID"
    wait "$SRV_PID" 2>/dev/null || true
    SRV_PID=""
}

api() {
    local method=$1 path=$2 body=${3-} token=${4-$ROOT_TOKEN}
    LAST_REQ="$method $path"
    local args=(-s -o "$TMP/body" -w '%{http_code}' -X "$method")
    if [ "$token" != "-" ] && [ -n "$token" ]; then
        args+=(-H "X-Vault-Token: $token")
    fi
    if [ -n "$body" ]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$body")
    fi
    STATUS=$(curl "${args[@]}" "$ADDR/v1/$path") || STATUS=000
    BODY=$(cat "$TMP/body")
}

jqb() {
    jq -r "$1" <<<"$BODY"
}
