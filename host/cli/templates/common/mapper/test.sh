#!/bin/sh
# Runs Nexo's conformance kit against the built mapper: deterministic (same
# input, same output), total (every input mapped, skipped or refused) and
# within its time budget on a batch of 1 000.
set -eu
cd "$(dirname "$0")/.."
NEXO="${NEXO:-nexo}"
# COMPONENT: what to test (default the build; the packed bundle works too).
exec "$NEXO" plugin test "${COMPONENT:-build/{{name}}.wasm}" --suite nexo-test.toml --config config.example.json "$@"
