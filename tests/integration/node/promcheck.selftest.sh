#!/usr/bin/env bash
# promcheck.selftest.sh: runs promcheck.js on small inline inputs and checks its verdicts, so the
# checker the integration tests lean on is itself known to accept good and refuse bad exposition.
# Prints "N passed, M failed"; exits 1 if any case failed.
set -euo pipefail

CHECK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/promcheck.js"
passed=0
failed=0

# expect DESC CODE [LINE] INPUT: promcheck must exit with CODE; on failure (CODE 1) stdout must be
# empty and stderr must say "line LINE:".
expect() {
    local desc=$1 code=$2 line=
    if [ $# -eq 4 ]; then line=$3; shift; fi
    local input=$3 out err rc=0
    err=$(mktemp)
    out=$(printf '%s' "$input" | node "$CHECK" 2>"$err") || rc=$?
    local why=
    if [ "$rc" != "$code" ]; then
        why="exit $rc, want $code"
    elif [ "$code" = 1 ] && [ -n "$out" ]; then
        why="stdout not empty on a violation"
    elif [ -n "$line" ] && ! grep -q "^line $line: " "$err"; then
        why="want an error at line $line"
    fi
    if [ -z "$why" ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL: $desc: $why; stderr: $(cat "$err")" >&2
    fi
    rm -f "$err"
}

# ---- valid ----
expect "empty input" 0 ''
expect "counter with HELP and TYPE" 0 $'# HELP req_total Requests.\n# TYPE req_total counter\nreq_total{route="a",code="200"} 3\nreq_total{route="b",code="500",} 0 1700000000000\n'
expect "gauge, untyped, {} and special values" 0 $'# TYPE temp gauge\ntemp -1.5e3\ntemp{a="x\\\\y\\"z\\n"} NaN\nother{} +Inf\n'
expect "histogram" 0 $'# TYPE lat_seconds histogram\nlat_seconds_bucket{route="a",le="0.1"} 1\nlat_seconds_bucket{route="a",le="1"} 2\nlat_seconds_bucket{route="a",le="+Inf"} 2\nlat_seconds_sum{route="a"} 0.7\nlat_seconds_count{route="a"} 2\n'

# ---- invalid ----
expect "bad metric name" 1 1 $'9req 1\n'
expect "duplicate label" 1 1 $'m{a="1",a="2"} 1\n'
expect "bad escape in label value" 1 1 $'m{a="x\\ty"} 1\n'
expect "histogram without +Inf bucket" 1 3 $'# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="2"} 2\nh_sum 1\nh_count 2\n'
expect "decreasing bucket counts" 1 3 $'# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="2"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 2\n'
expect "count differs from +Inf bucket" 1 5 $'# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n'
expect "family split" 1 3 $'a 1\nb 1\na{x="1"} 2\n'
expect "duplicate sample" 1 2 $'m{a="1",b="2"} 1\nm{b="2",a="1"} 2\n'
expect "negative counter" 1 2 $'# TYPE c_total counter\nc_total -1\n'
expect "missing final newline" 1 2 $'g 1\ng{a="b"} 2'
expect "TYPE after sample" 1 2 $'g 1\n# TYPE g gauge\n'
expect "blank line" 1 2 $'g 1\n\n'
expect "carriage return" 1 1 $'g 1\r\n'

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
