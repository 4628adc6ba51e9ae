#!/usr/bin/env bash
# Vault wire compatibility through a real Vault client: runs tests/integration/node/vault_compat.js
# (the node-vault npm package, installed by tools/test) against a fresh dev server.
# shellcheck source=tests/integration/lib.sh
source "$AUTHSVC_SRC/tests/integration/lib.sh"

NODE_DIR=$AUTHSVC_SRC/tests/integration/node
if ! command -v node >/dev/null 2>&1; then
    echo "FAIL: node is not installed (tools/test installs it)" >&2
    exit 1
fi
if [ ! -d "$NODE_DIR/node_modules/node-vault" ]; then
    echo "FAIL: $NODE_DIR/node_modules/node-vault is missing: run tools/test, or npm ci in $NODE_DIR" >&2
    exit 1
fi

# shellcheck disable=SC2119 # no extra server flags
start_server

rc=0
(cd "$NODE_DIR" && AUTHSVC_ADDR=$ADDR ROOT_TOKEN=$ROOT_TOKEN node vault_compat.js) || rc=$?

# A clean SIGTERM exit too (in the ASan build this is where leaks are reported).
stop_server
if [ "$FAILED" -ne 0 ]; then
    rc=1
fi
exit "$rc"
