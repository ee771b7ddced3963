#!/bin/sh
# Builds the component into build/{{name}}.wasm with the SDK's build tool
# (componentize-py against the contract shipped in the nexo-sdk wheel).
# PYTHON: the interpreter that has nexo-sdk and componentize-py (default:
# .venv/bin/python, else python3).
set -eu
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
mkdir -p build
exec "$PYTHON" -m nexo_sdk.build . -o build/{{name}}.wasm
