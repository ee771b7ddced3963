#!/bin/sh
# Runs Nexo's conformance kit against the built component: spec, check,
# read (paging, resuming, no loops), write (idempotent creates, updates,
# refusals, deletes), injected faults and the sandbox checks.
#
#   API_TOKEN=... sh scripts/test.sh                      # against the API in config.json
#   sh scripts/test.sh --replay fixtures/                 # offline, recorded answers
#   API_TOKEN=... sh scripts/test.sh --record fixtures/   # record them (secrets redacted)
set -eu
cd "$(dirname "$0")/.."
NEXO="${NEXO:-nexo}"
CONFIG="${CONFIG:-config.json}"
[ -f "$CONFIG" ] || CONFIG=config.example.json
ORIGIN="${ORIGIN:-$(sed -n 's/.*"base_url": *"\([^"]*\)".*/\1/p' "$CONFIG")}"
# COMPONENT: what to test (default the build; the packed bundle works too).
exec "$NEXO" plugin test "${COMPONENT:-build/{{name}}.wasm}" --suite nexo-test.toml \
    --config "$CONFIG" \
    --secret api_token=env:API_TOKEN \
    --grant-private-http "$ORIGIN" \
    "$@"
