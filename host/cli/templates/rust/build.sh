#!/bin/sh
# Builds the component into build/{{name}}.wasm. Extra arguments go to
# cargo (e.g. --offline).
set -eu
cd "$(dirname "$0")/.."
cargo build --release --target wasm32-wasip2 "$@"
mkdir -p build
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{crate}}.wasm" build/{{name}}.wasm
echo "built build/{{name}}.wasm"
