#!/bin/sh
# Builds the component into build/{{name}}.wasm with the SDK's build tool
# (componentize-qjs, a devDependency, against the contract shipped in the
# nexo-sdk package). Run `npm install` first.
set -eu
cd "$(dirname "$0")/.."
exec npm run --silent build
