#!/bin/sh
# Installs the locked dependencies and runs the tests of the Node client: the
# unit tests, and the end-to-end test against `tokenbroker demo` (built with
# `go build` unless TOKENBROKER_BIN names a binary).
#
# test/*.test.js rather than test/: Node 20 searches a directory given to
# --test, Node 21 and later take the argument as a glob and do not.
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
node --test test/*.test.js
