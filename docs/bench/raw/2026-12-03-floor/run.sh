#!/bin/sh
# Reproduces results.txt: builds every module it measures into target/floor/, then runs the
# harness. From the repository root, after `cargo xtask setup` and `cargo xtask build`.
set -e
here=docs/bench/raw/2026-12-03-floor
out=target/floor
features="--enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types"
mkdir -p $out
wat2wasm xtask/src/bench/trivial.wat -o $out/trivial.wasm
wat2wasm xtask/src/bench/one_loop.wat -o $out/one_loop.wasm
wat2wasm xtask/src/bench/add_header.wat -o $out/wat_add_header.wasm
cp target/filters/add-header.wasm $out/add_header.wasm
# Synthetic code: N functions, each one loop of S load/multiply/store statements, never called.
for shape in 1x80 1x400 10x80 100x8; do
  python3 $here/gen.py ${shape%x*} ${shape#*x} $out/loops_$shape.wasm
  wat2wasm $out/loops_$shape.wat -o $out/loops_$shape.wasm
done
# add-header with parts of its code stubbed out (names from a build that keeps them).
sh $here/build-named.sh add-header $out/named.wasm
variant() { # name mode patterns...
  name=$1; shift
  python3 $here/stub.py $out/named.wasm $out/$name.named.wasm "$@"
  wasm-opt $features --strip-debug $out/$name.named.wasm -o $out/$name.wasm
}
variant all_stubbed all
variant without_json drop json
variant without_abi drop '9filterkit3abi'
# Every function the seed's configuration never runs (error paths, panics, core::fmt's
# integer and padding code), then wasm-opt removes what became unreachable.
variant cold_stubbed cold 'mismatch|invalid_type|scan_number|one_of|backticked|json5Error2at|log_invalid_config|text5quote|pad_integral|fmt3num|panick|alloc_error_handler|error..Error.*Display|parse_hex4|encode_utf8|Expected|Status6as_raw|write_decimal|assert_failed|MissingField|Display\$GT\$3fmt'
wasm-opt -Oz --one-caller-inline-max-function-size 0 --always-inline-max-function-size 15 $features \
  $out/cold_stubbed.wasm -o $out/happy_path_only.wasm
cd $out
ROUNDS=${ROUNDS:-7} python3 ../../$here/harness.py trivial.wasm one_loop.wasm wat_add_header.wasm \
  loops_1x80.wasm loops_1x400.wasm loops_10x80.wasm loops_100x8.wasm \
  all_stubbed.wasm without_json.wasm without_abi.wasm happy_path_only.wasm add_header.wasm
