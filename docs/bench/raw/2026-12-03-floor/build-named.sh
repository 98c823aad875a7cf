#!/bin/sh
# build-named.sh FILTER OUT: the filter as `cargo xtask build` ships it, with its name section
# kept (target/names, so the shipped build is untouched). Run from the repository root.
set -e
lib=$(echo "filter_$1" | tr - _)
features="--enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types"
CARGO_PROFILE_WASM_RELEASE_STRIP=debuginfo cargo build -q -p "filter-$1" --target wasm32-wasip1 --profile wasm-release --target-dir target/names
wasm-opt -Oz --one-caller-inline-max-function-size 0 --always-inline-max-function-size 15 $features -g \
  "target/names/wasm32-wasip1/wasm-release/$lib.wasm" -o "$2"
