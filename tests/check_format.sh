#!/usr/bin/env bash
# check_format.sh SRC_DIR BUILD_DIR: STYLE.md §8, checked. Fails if a C source or header differs
# from what clang-format writes with SRC_DIR/.clang-format (4 spaces, 100 columns), or if an if,
# else, for, while or do body is not in braces (clang-tidy's readability-braces-around-statements,
# over the C files of BUILD_DIR/compile_commands.json and the headers they include).
#
# The reference is Debian 12's LLVM 14, which tools/test installs: another major version lays some
# constructs out differently, so with one the check is skipped (exit 77), not failed. Tables that
# read by rows sit between /* clang-format off */ and /* clang-format on */.
# To fix a layout failure: git ls-files '*.c' '*.h' | xargs clang-format -i
set -euo pipefail
src=$1
build=$(cd "$2" && pwd)
cd "$src"
for tool in clang-format clang-tidy; do
    if ! command -v $tool >/dev/null 2>&1; then
        echo "FAIL: $tool is not installed (tools/test installs it: tools/deps --format)" >&2
        exit 1
    fi
    version=$($tool --version)
    if [[ $version != *" version 14."* ]]; then
        echo "SKIP: $tool is not version 14, the version .clang-format is checked with: $version" >&2
        exit 77
    fi
done
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t files < <(git ls-files '*.c' '*.h')
else
    mapfile -t files < <(find . -path './build*' -prune -o -name '*.[ch]' -print | sort)
fi
if [ ${#files[@]} -eq 0 ]; then
    echo "FAIL: no C sources found under $src" >&2
    exit 1
fi
clang-format --dry-run --Werror "${files[@]}"
echo "layout: ${#files[@]} files as .clang-format says"

# Braces: only that check's findings count (the compile flags' own warnings are the build's).
mapfile -t cfiles < <(printf '%s\n' "${files[@]}" | grep '\.c$')
out=$(printf '%s\n' "${cfiles[@]}" | xargs -P 2 -n 8 clang-tidy -p "$build" --quiet \
    --extra-arg=-Wno-error --checks='-*,readability-braces-around-statements' --header-filter="^$PWD/" 2>&1 || true)
found=$(grep -E '\[readability-braces-around-statements\]' <<<"$out" | sort -u || true)
if [ -n "$found" ]; then
    echo "FAIL: statements without braces:" >&2
    echo "$found" >&2
    exit 1
fi
if grep -q 'Error while processing\|Could not auto-detect compilation database' <<<"$out"; then
    echo "FAIL: clang-tidy could not read every file:" >&2
    echo "$out" >&2
    exit 1
fi
echo "braces: ${#cfiles[@]} C files (and their headers) with braces around every body"
