#!/usr/bin/env bash
# test_audit_verify.sh: `authctl audit verify` (SPEC §8) on audit logs built here with jq -c and
# sha256sum, an implementation of the chain independent of common/auditchain.c: the intact log,
# rotated files, and copies with a line edited, dropped, swapped, inserted, a truncated tail, files
# out of order and lines that are not audit lines, each reported at its line with exit 1. No
# server is needed.
set -euo pipefail
# shellcheck source=lib.sh
source "$AUTHSVC_SRC/tests/integration/lib.sh"

GENESIS=0000000000000000000000000000000000000000000000000000000000000000

# ctl ARGS...: runs authctl; sets RC, OUT (stdout) and ERR (stderr) without stopping the script.
ctl() {
    RC=0
    "$AUTHCTL" "$@" >"$TMP/ctl.out" 2>"$TMP/ctl.err" || RC=$?
    OUT=$(cat "$TMP/ctl.out")
    ERR=$(cat "$TMP/ctl.err")
}
# verify_fails DESC EXPECTED_STDERR_REGEX ARGS...: exit 1, nothing on stdout, the message.
verify_fails() {
    local desc=$1 re=$2
    shift 2
    ctl audit verify "$@"
    check "$desc: exit code" "$RC" 1
    check "$desc: stdout" "$OUT" ""
    check_match "$desc: message" "$ERR" "$re"
}
# hash_line N FILE: SHA-256 of line N of FILE without its newline.
hash_line() { sed -n "${1}p" "$2" | tr -d '\n' | sha256sum | cut -d' ' -f1; }

# seal PREV < objects: writes each JSON object of stdin as a chained line, prev_hash first, and
# leaves the hash of the last line in $TMP/last_hash.
seal() {
    local prev=$1 obj line
    while IFS= read -r obj; do
        line=$(jq -c --arg p "$prev" '{prev_hash: $p} + .' <<<"$obj")
        printf '%s\n' "$line"
        prev=$(printf '%s' "$line" | sha256sum | cut -d' ' -f1)
    done
    echo "$prev" >"$TMP/last_hash"
}

# Fifty Vault-shaped records: requests and responses, nested objects, escapes and non-ASCII.
records() {
    local i
    for i in $(seq 1 50); do
        jq -cn --argjson i "$i" '{
            time: ("2026-01-01T00:00:" + (if $i < 10 then "0" else "" end) + ($i|tostring) + "Z"),
            type: (if $i % 2 == 1 then "request" else "response" end),
            auth: {accessor: "acc-\($i)", display_name: "token \"ops\" é", policies: ["default"],
                   metadata: {n: $i}},
            request: {id: "req-\($i)", operation: "update", path: "secret/\($i)",
                      remote_address: "127.0.0.1", data: {key: "hmac-sha256:\($i * 7919)"}},
            error: (if $i == 13 then "permission denied\nline two" else "" end)}'
    done
}

L=$TMP/audit.log
records | seal "$GENESIS" >"$L"
HEAD=$(cat "$TMP/last_hash")
check "the generated log has 50 lines" "$(wc -l <"$L")" 50
check "the last line's hash" "$(hash_line 50 "$L")" "$HEAD"

# ---- intact ----
ctl audit verify "$L"
check "intact: exit code" "$RC" 0
check "intact: output" "$OUT" "OK: 50 lines, head $HEAD"
check "intact: stderr" "$ERR" ""
ctl audit verify -head="$HEAD" "$L"
check "intact with -head: exit code" "$RC" 0
check "intact with -head: output" "$OUT" "OK: 50 lines, head $HEAD"
ctl audit verify -head="$HEAD:50" "$L"
check "intact with -head=HASH:LINE: exit code" "$RC" 0
ctl audit verify -head "${HEAD^^}" "$L"
check "-head in upper case: exit code" "$RC" 0
RC=0
OUT=$("$AUTHCTL" audit verify - <"$L") || RC=$?
check "standard input: exit code" "$RC" 0
check "standard input: output" "$OUT" "OK: 50 lines, head $HEAD"

# ---- a line edited ----
cp "$L" "$TMP/edited.log"
sed -i '17s/"operation":"update"/"operation":"delete"/' "$TMP/edited.log"
check "line 17 was edited" "$(cmp -s "$L" "$TMP/edited.log" && echo same || echo differs)" differs
BEFORE='\(a line was edited, dropped, inserted or reordered before this point\)'
verify_fails "edited line 17" \
    "^$TMP/edited.log:18: prev_hash does not match line 17 $BEFORE$" "$TMP/edited.log"
# Its own prev_hash edited: found at the line itself.
# replace_line N TEXT FILE: line N of FILE becomes TEXT.
replace_line() {
    # The text through the environment: awk -v would interpret its backslashes.
    T=$2 awk -v n="$1" 'NR == n { print ENVIRON["T"]; next } { print }' "$3" >"$3.new"
    mv "$3.new" "$3"
}
cp "$L" "$TMP/edited2.log"
LINE17=$(sed -n '17p' "$L")
if [ "${LINE17:14:1}" = 0 ]; then FLIP=1; else FLIP=0; fi
replace_line 17 "${LINE17:0:14}$FLIP${LINE17:15}" "$TMP/edited2.log"
check "only line 17's prev_hash was edited" "$(diff "$L" "$TMP/edited2.log" | grep -c '^[<>]')" 2
verify_fails "edited prev_hash of line 17" \
    "^$TMP/edited2.log:17: prev_hash does not match line 16 " "$TMP/edited2.log"
# The last line edited: only the head shows it.
cp "$L" "$TMP/edited3.log"
sed -i '50s/"req-50"/"req-51"/' "$TMP/edited3.log"
ctl audit verify "$TMP/edited3.log"
check "edited last line without -head: exit code" "$RC" 0
verify_fails "edited last line with -head=HASH:LINE" \
    "^$TMP/edited3.log:50: the last line does not match the recorded head \(line 50\): it was" \
    -head="$HEAD:50" "$TMP/edited3.log"

# ---- a line dropped ----
sed '20d' "$L" >"$TMP/dropped.log"
verify_fails "dropped line 20" "^$TMP/dropped.log:20: prev_hash does not match line 19 " \
    "$TMP/dropped.log"
sed '1d' "$L" >"$TMP/dropped1.log"
verify_fails "dropped first line" \
    "^$TMP/dropped1.log:1: the first line must have prev_hash of 64 zeros .*-from-hash" \
    "$TMP/dropped1.log"

# ---- two lines swapped ----
{ sed -n '1,29p' "$L"; sed -n '31p' "$L"; sed -n '30p' "$L"; sed -n '32,$p' "$L"; } \
    >"$TMP/swapped.log"
check "swapped copy has 50 lines" "$(wc -l <"$TMP/swapped.log")" 50
verify_fails "lines 30 and 31 swapped" "^$TMP/swapped.log:30: prev_hash does not match line 29 " \
    "$TMP/swapped.log"

# ---- a line inserted ----
# A replayed copy of line 10 after line 25.
{ sed -n '1,25p' "$L"; sed -n '10p' "$L"; sed -n '26,$p' "$L"; } >"$TMP/inserted.log"
verify_fails "line 10 replayed after line 25" \
    "^$TMP/inserted.log:26: prev_hash does not match line 25 " "$TMP/inserted.log"
# A forged line that follows line 25 correctly: the chain breaks at the line after it.
FORGED=$(jq -cn '{type: "request", request: {path: "sys/forged"}}' | seal "$(hash_line 25 "$L")")
{ sed -n '1,25p' "$L"; echo "$FORGED"; sed -n '26,$p' "$L"; } >"$TMP/forged.log"
verify_fails "forged line inserted after line 25" \
    "^$TMP/forged.log:27: prev_hash does not match line 26 " "$TMP/forged.log"

# ---- rotation: three files, oldest first ----
sed -n '1,20p' "$L" >"$TMP/audit.log.2"
sed -n '21,35p' "$L" >"$TMP/audit.log.1"
sed -n '36,$p' "$L" >"$TMP/audit.log.0"
ctl audit verify "$TMP/audit.log.2" "$TMP/audit.log.1" "$TMP/audit.log.0"
check "rotated: exit code" "$RC" 0
check "rotated: output" "$OUT" "OK: 50 lines, head $HEAD"
ctl audit verify -head="$HEAD:50" "$TMP/audit.log.2" "$TMP/audit.log.1" "$TMP/audit.log.0"
check "rotated with -head: exit code" "$RC" 0
# An empty file just rotated in is no break.
: >"$TMP/empty.log"
ctl audit verify "$TMP/audit.log.2" "$TMP/audit.log.1" "$TMP/audit.log.0" "$TMP/empty.log"
check "rotated plus an empty new file: exit code" "$RC" 0
check "rotated plus an empty new file: output" "$OUT" "OK: 50 lines, head $HEAD"
# Older files deleted: continue from the hash of the last deleted line.
H20=$(hash_line 20 "$L")
ctl audit verify -from-hash="$H20" "$TMP/audit.log.1" "$TMP/audit.log.0"
check "-from-hash: exit code" "$RC" 0
check "-from-hash: output" "$OUT" "OK: 30 lines, head $HEAD"
ctl audit verify -from-hash="$H20:20" -head="$HEAD:50" "$TMP/audit.log.1" "$TMP/audit.log.0"
check "-from-hash=HASH:LINE: exit code" "$RC" 0
check "-from-hash=HASH:LINE: output" "$OUT" "OK: 30 lines (lines 21 to 50 of the chain), head $HEAD"
verify_fails "-from-hash of another line" \
    "^$TMP/audit.log.1:1: prev_hash does not match -from-hash" \
    -from-hash="$(hash_line 19 "$L")" "$TMP/audit.log.1" "$TMP/audit.log.0"
verify_fails "older files missing without -from-hash" \
    "^$TMP/audit.log.1:1: the first line must have prev_hash of 64 zeros" \
    "$TMP/audit.log.1" "$TMP/audit.log.0"

# ---- files in the wrong order ----
verify_fails "newest file first" \
    "^$TMP/audit.log.1:1: the first line must have prev_hash of 64 zeros" \
    "$TMP/audit.log.1" "$TMP/audit.log.2" "$TMP/audit.log.0"
verify_fails "middle files swapped" \
    "^$TMP/audit.log.0:1: prev_hash does not match the last line of $TMP/audit.log.2 \(line 20\)" \
    "$TMP/audit.log.2" "$TMP/audit.log.0" "$TMP/audit.log.1"
verify_fails "a file given twice" \
    "^$TMP/audit.log.1:1: prev_hash does not match the last line of $TMP/audit.log.1 \(line 15\)" \
    "$TMP/audit.log.2" "$TMP/audit.log.1" "$TMP/audit.log.1" "$TMP/audit.log.0"

# ---- a truncated tail ----
sed -n '1,45p' "$L" >"$TMP/truncated.log"
ctl audit verify "$TMP/truncated.log"
check "truncated without -head: exit code" "$RC" 0
check "truncated without -head: output" "$OUT" "OK: 45 lines, head $(hash_line 45 "$L")"
TRUNC='the log ends before the recorded head: lines were removed from the end \(truncated tail\)'
verify_fails "truncated with -head" "^$TMP/truncated.log:45: $TRUNC" \
    -head="$HEAD" "$TMP/truncated.log"
verify_fails "truncated with -head=HASH:LINE" \
    "truncated tail\): 45 lines, the head is line 50$" -head="$HEAD:50" "$TMP/truncated.log"
# The newest rotated file deleted.
verify_fails "newest rotated file missing, with -head" "truncated tail" -head="$HEAD" \
    "$TMP/audit.log.2" "$TMP/audit.log.1"
# Lines after the recorded head (a head from before the last lines were written).
verify_fails "lines after the recorded head" \
    "^$L:50: the log continues past the recorded head \($L:45\): 5 lines were appended after it$" \
    -head="$(hash_line 45 "$L")" "$L"

# ---- lines that are not audit lines ----
sed '5s/.*/garbage/' "$L" >"$TMP/notjson.log"
verify_fails "a line that is not JSON" "^$TMP/notjson.log:5: not a JSON object" "$TMP/notjson.log"
sed '12G' "$L" >"$TMP/emptyline.log"
check "the empty line was added" "$(sed -n '13p' "$TMP/emptyline.log")" ""
verify_fails "an empty line" "^$TMP/emptyline.log:13: empty line$" "$TMP/emptyline.log"
sed '8s/^{"prev_hash":"\([0-9a-f]*\)"/{"prev_hash":"\1","prev_hash":"\1"/' "$L" >"$TMP/dup.log"
verify_fails "duplicate prev_hash" "^$TMP/dup.log:8: not a JSON object .*duplicate" "$TMP/dup.log"
sed '8s/^{"prev_hash":"\([0-9a-f]*\)"/{"prev_hash":"\U\1"/' "$L" >"$TMP/upper.log"
verify_fails "prev_hash in upper case" \
    "^$TMP/upper.log:8: prev_hash is not 64 lowercase hex digits$" "$TMP/upper.log"
sed '8s/^{"prev_hash":"\([0-9a-f]*\)",\(.*\)}$/{\2,"prev_hash":"\1"}/' "$L" >"$TMP/moved.log"
verify_fails "prev_hash not first" \
    "^$TMP/moved.log:8: the line does not begin with" "$TMP/moved.log"
sed '3s/"prev_hash":"[0-9a-f]*",//' "$L" >"$TMP/noprev.log"
verify_fails "no prev_hash" "^$TMP/noprev.log:3: no prev_hash member$" "$TMP/noprev.log"
sed 's/$/\r/' "$L" >"$TMP/crlf.log"
verify_fails "CRLF line ends" "^$TMP/crlf.log:1: the line does not end with" "$TMP/crlf.log"
# A second log appended to the first: its genesis line is not the first line.
cat "$L" "$L" >"$TMP/twice.log"
verify_fails "a second chain appended" "^$TMP/twice.log:51: prev_hash is the genesis value" \
    "$TMP/twice.log"
# A line over 1 MiB (the line cap), streamed rather than read whole.
{
    sed -n '1,3p' "$L"
    printf '{"prev_hash":"%s","x":"' "$(hash_line 3 "$L")"
    head -c 1100000 /dev/zero | tr '\0' a
    printf '"}\n'
} >"$TMP/long.log"
verify_fails "a line over 1 MiB" "^$TMP/long.log:4: line longer than 1048576 bytes$" "$TMP/long.log"

# ---- newlines at the ends of files ----
head -c -1 "$TMP/audit.log.2" >"$TMP/cut.log.2"
verify_fails "no newline at the end of a non-final file" \
    "^$TMP/cut.log.2:20: no newline at the end of the file, but more files follow" \
    "$TMP/cut.log.2" "$TMP/audit.log.1" "$TMP/audit.log.0"
head -c -1 "$L" >"$TMP/nonl.log"
ctl audit verify "$TMP/nonl.log"
check "no newline at the end of the last file: exit code" "$RC" 0
check "no newline at the end of the last file: output" "$OUT" "OK: 50 lines, head $HEAD"
check_match "no newline at the end of the last file: warning" "$ERR" \
    "^warning: $TMP/nonl.log:50: no newline"
# A line cut short by a crash in mid-write.
head -c -20 "$L" >"$TMP/partial.log"
verify_fails "a partial last line" "^$TMP/partial.log:50: not a JSON object" "$TMP/partial.log"

# ---- usage and I/O errors ----
ctl audit verify
check "no file: exit code" "$RC" 2
ctl audit verify -head=abc "$L"
check "bad -head: exit code" "$RC" 2
check_match "bad -head: message" "$ERR" "invalid -head"
ctl audit verify -head="$HEAD:x" "$L"
check "bad -head line: exit code" "$RC" 2
ctl audit verify -from-hash="${HEAD}0" "$L"
check "bad -from-hash: exit code" "$RC" 2
ctl audit verify -from-hash="$H20" -head="$HEAD:50" "$TMP/audit.log.1"
check "-head=HASH:LINE with -from-hash=HASH: exit code" "$RC" 2
ctl audit verify -bogus "$L"
check "unknown flag: exit code" "$RC" 2
ctl audit verify -address=http://127.0.0.1:1 "$L"
check "-address: exit code" "$RC" 2
ctl audit frobnicate "$L"
check "unknown audit subcommand: exit code" "$RC" 2
ctl audit verify "$TMP/does-not-exist.log"
check "missing file: exit code" "$RC" 1
check_match "missing file: message" "$ERR" "cannot open $TMP/does-not-exist.log"
ctl audit verify -help
check "-help: exit code" "$RC" 0
check_match "-help: usage" "$OUT" "Usage: authctl audit verify"

finish
